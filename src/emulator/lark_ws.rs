//! The emulated long connection: `POST /callback/ws/endpoint` hands out a one-time
//! `ws://…/ws/v2?…&ticket=…` URL on the emulator's own port, and the WebSocket there speaks
//! `pbbp2` frames. It answers pings with pongs (carrying the configured ClientConfig), records
//! every frame the bot sends, and lets a test push frames or whole events, drop the
//! connection, or make the endpoint or the handshake fail with a given code.
//!
//! Events go out as Lark really sends them (`protocol/lark-websocket.md` §6.4, §6.5): plain v2
//! JSON with `header.token: ""`, no `encrypt`, no signature, in `type=event` data frames with
//! `message_id`, `sum`, `seq` and `trace_id` headers (as in `vectors/ws_frames.json`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Recorded;
use super::lark::LarkEmulator;
use crate::lark::ws::frame::{Frame, Header, Kind, METHOD_CONTROL, METHOD_DATA};

/// The `service_id` the emulator puts in its URLs (the one in the shared vectors).
pub const SERVICE_ID: i32 = 33_554_678;

/// Lark's real defaults, until a test sets its own.
fn default_client_config() -> Value {
    json!({"PingInterval": 120, "ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30})
}

enum Command {
    Send(Vec<u8>),
    /// End the connection without a close handshake, like a network failure.
    Drop,
}

struct HubState {
    client_config: Value,
    /// Codes the next endpoint requests answer with, instead of a URL.
    endpoint_faults: VecDeque<i64>,
    /// `(Handshake-Status, Handshake-Autherrcode)` the next handshakes are refused with.
    handshake_faults: VecDeque<(u16, Option<i64>)>,
    /// Issued and not yet used.
    tickets: HashSet<String>,
    /// Every ticket ever issued, so a test can look for them where they must not be.
    issued: Vec<String>,
    endpoint_calls: u32,
    connections: u32,
    /// Open connections by number.
    open: HashMap<u32, mpsc::UnboundedSender<Command>>,
    /// Every frame the bot sent, with the connection it came on.
    received: Vec<(u32, Frame)>,
    /// How many connections the bot closed with a close frame.
    closed_by_bot: u32,
}

/// The long-connection side of the Lark emulator.
#[derive(Clone)]
pub struct WsHub {
    inner: Arc<Mutex<HubState>>,
}

impl Default for WsHub {
    fn default() -> Self {
        WsHub {
            inner: Arc::new(Mutex::new(HubState {
                client_config: default_client_config(),
                endpoint_faults: VecDeque::new(),
                handshake_faults: VecDeque::new(),
                tickets: HashSet::new(),
                issued: Vec::new(),
                endpoint_calls: 0,
                connections: 0,
                open: HashMap::new(),
                received: Vec::new(),
                closed_by_bot: 0,
            })),
        }
    }
}

impl WsHub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ClientConfig the endpoint hands out and pongs carry (numbers in seconds).
    pub fn set_client_config(&self, config: Value) {
        self.state().client_config = config;
    }

    /// The next endpoint request answers `{"code": code}` and no URL.
    pub fn push_endpoint_fault(&self, code: i64) {
        self.state().endpoint_faults.push_back(code);
    }

    /// The next WebSocket handshake (with a valid ticket) is refused with HTTP `status`,
    /// `Handshake-Status: status` and, when given, `Handshake-Autherrcode` (§6.1.1). Which
    /// HTTP status Lark itself answers is not documented; the SDKs read only the headers.
    pub fn push_handshake_fault(&self, status: u16, autherrcode: Option<i64>) {
        self.state()
            .handshake_faults
            .push_back((status, autherrcode));
    }

    /// Every ticket the endpoint handed out so far.
    pub fn issued_tickets(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// Pushes `event` (a v2 envelope) on the newest open connection as Lark does: its
    /// `header.token` set to `""` (§6.5), split into `parts` data frames under frame-message
    /// id `frame_id` (§6.4). False when no connection is open.
    pub fn push_event(&self, event: &Value, frame_id: &str, parts: usize) -> bool {
        let mut event = event.clone();
        if let Some(header) = event.get_mut("header").and_then(Value::as_object_mut) {
            header.insert("token".into(), Value::String(String::new()));
        }
        data_frames(frame_id, event.to_string().as_bytes(), parts)
            .iter()
            .all(|f| self.push(f))
    }

    /// Sends a frame on the newest open connection; false when none is open.
    pub fn push(&self, frame: &Frame) -> bool {
        let s = self.state();
        let newest = s.open.keys().max().and_then(|k| s.open.get(k));
        newest.is_some_and(|tx| tx.send(Command::Send(frame.to_bytes())).is_ok())
    }

    /// Drops every open connection without a close handshake.
    pub fn drop_connections(&self) {
        for tx in self.state().open.values() {
            let _ = tx.send(Command::Drop);
        }
    }

    pub fn endpoint_calls(&self) -> u32 {
        self.state().endpoint_calls
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.state().connections
    }

    pub fn open_connections(&self) -> usize {
        self.state().open.len()
    }

    pub fn closed_by_bot(&self) -> u32 {
        self.state().closed_by_bot
    }

    /// Every frame the bot sent, with its connection number (from 1).
    pub fn received(&self) -> Vec<(u32, Frame)> {
        self.state().received.clone()
    }
}

/// `payload` in `parts` (at least one) `type=event` data frames, the way Lark splits a message.
pub fn data_frames(frame_id: &str, payload: &[u8], parts: usize) -> Vec<Frame> {
    let size = payload.len().div_ceil(parts.max(1)).max(1);
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let sum = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(seq, chunk)| Frame {
            seq_id: 0,
            log_id: 0,
            service: SERVICE_ID,
            method: METHOD_DATA,
            headers: vec![
                Header::new("type", "event"),
                Header::new("message_id", frame_id),
                Header::new("sum", sum.to_string()),
                Header::new("seq", seq.to_string()),
                Header::new("trace_id", format!("trace-{frame_id}")),
            ],
            payload: Some(chunk.to_vec()),
            ..Frame::default()
        })
        .collect()
}

#[derive(serde::Deserialize)]
pub struct ConnectQuery {
    #[serde(default)]
    ticket: String,
}

/// `POST /callback/ws/endpoint`: checks the app credentials, then a one-time URL.
pub async fn endpoint(
    State(emu): State<LarkEmulator>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let credentials_ok = {
        let mut s = emu.state();
        s.requests
            .push(Recorded::new("POST", uri.to_string(), &headers, &body));
        json_body.get("AppID").and_then(Value::as_str) == Some(s.app_id.as_str())
            && json_body.get("AppSecret").and_then(Value::as_str) == Some(s.app_secret.as_str())
    };
    let hub = emu.ws();
    let mut s = hub.state();
    s.endpoint_calls += 1;
    if let Some(code) = s.endpoint_faults.pop_front() {
        return Json(json!({"code": code, "msg": "injected failure"})).into_response();
    }
    if !credentials_ok {
        return Json(json!({"code": 514, "msg": "auth failed"})).into_response();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let ticket = format!("{:032x}", rand::random::<u128>());
    s.tickets.insert(ticket.clone());
    s.issued.push(ticket.clone());
    let n = s.endpoint_calls;
    let url = format!(
        "ws://{host}/ws/v2?fpid=1&device_id=emu-{n}&access_key=emulated&service_id={SERVICE_ID}&ticket={ticket}"
    );
    Json(json!({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": s.client_config}}))
        .into_response()
}

/// `GET /ws/v2`: the WebSocket, for a ticket issued and not used yet.
pub async fn connect(
    State(emu): State<LarkEmulator>,
    Query(q): Query<ConnectQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = emu.ws();
    let fault = {
        let mut s = hub.state();
        if !s.tickets.remove(&q.ticket) {
            return refuse_handshake(403, None, "invalid ticket");
        }
        s.handshake_faults.pop_front()
    };
    if let Some((status, code)) = fault {
        return refuse_handshake(status, code, "injected failure");
    }
    upgrade.on_upgrade(move |socket| serve(hub, socket))
}

/// A refused upgrade: the `Handshake-*` headers the SDKs read (§6.1.1), in lower case as
/// HTTP/1 allows (Go writes `Handshake-Status`, Python reads `handshake-status`).
fn refuse_handshake(status: u16, autherrcode: Option<i64>, msg: &'static str) -> Response {
    let http = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = http.into_response();
    let headers = response.headers_mut();
    headers.insert("handshake-status", status.into());
    headers.insert("handshake-msg", axum::http::HeaderValue::from_static(msg));
    if let Some(code) = autherrcode {
        headers.insert("handshake-autherrcode", code.into());
    }
    response
}

async fn serve(hub: WsHub, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut s = hub.state();
        s.connections += 1;
        let id = s.connections;
        s.open.insert(id, tx);
        id
    };
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Send(bytes)) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Command::Drop) | None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    let Ok(frame) = Frame::decode_bytes(&bytes) else { continue };
                    let pong = (frame.kind() == Kind::Ping).then(|| Frame {
                        service: frame.service,
                        method: METHOD_CONTROL,
                        headers: vec![Header::new("type", "pong")],
                        payload: Some(hub.state().client_config.to_string().into_bytes()),
                        ..Frame::default()
                    });
                    hub.state().received.push((id, frame));
                    if let Some(pong) = pong
                        && socket.send(Message::Binary(pong.to_bytes().into())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    hub.state().closed_by_bot += 1;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    hub.state().open.remove(&id);
}

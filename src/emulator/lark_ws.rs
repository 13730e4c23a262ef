//! The emulated long connection: `POST /callback/ws/endpoint` hands out a one-time
//! `ws://…/ws/v2?…&ticket=…` URL on the emulator's own port, and the WebSocket there speaks
//! `pbbp2` frames. It answers pings with pongs (carrying the configured ClientConfig), records
//! every frame the bot sends, and lets a test push frames, drop the connection, or make the
//! endpoint fail with a given code.

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
use crate::lark::ws::frame::{Frame, Header, Kind, METHOD_CONTROL};

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
    /// Issued and not yet used.
    tickets: HashSet<String>,
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
                tickets: HashSet::new(),
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
    if !hub.state().tickets.remove(&q.ticket) {
        return (
            StatusCode::FORBIDDEN,
            [
                ("handshake-status", "403"),
                ("handshake-msg", "invalid ticket"),
            ],
        )
            .into_response();
    }
    upgrade.on_upgrade(move |socket| serve(hub, socket))
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

//! The long connection itself: ask Lark for an endpoint, connect with tokio-tungstenite, run
//! [`run_session`] until it ends, and reconnect (a fresh endpoint every time) with jitter.
//!
//! The endpoint URL carries one-time credentials in its query (`access_key`, `ticket`), so
//! it is never logged: only its host, `device_id` and `service_id` are.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;
use url::Url;

use super::{
    ClientConfig, ClientConfigPatch, EventHandler, SessionEnd, SessionLimits, run_session, stopped,
};
use crate::lark::client::{LarkClient, LarkError};

/// Endpoint and handshake codes after which retrying cannot help (`ws/const.py`): the
/// connection limit is reached (1000040350), authentication failed (514), forbidden (403).
pub const FATAL_CODES: &[i64] = &[1_000_040_350, 514, 403];

/// Failed attempts are never retried faster than this, whatever ReconnectInterval says.
const MIN_RETRY: Duration = Duration::from_secs(1);
/// How long the WebSocket handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("the endpoint request failed: {0}")]
    Endpoint(#[from] LarkError),
    #[error("the endpoint answer is unusable: {0}")]
    BadEndpoint(&'static str),
    #[error("the WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("Lark refused the connection with code {code} ({msg}); not retrying")]
    Refused { code: i64, msg: String },
    #[error("gave up after {0} failed reconnect attempts (ReconnectCount)")]
    GaveUp(u32),
}

impl WsError {
    /// True when reconnecting cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            WsError::Endpoint(e) => e.code().is_some_and(|c| FATAL_CODES.contains(&c)),
            WsError::Refused { .. } | WsError::GaveUp(_) => true,
            WsError::BadEndpoint(_) | WsError::Handshake(_) => false,
        }
    }
}

/// A connection address handed out by `POST /callback/ws/endpoint`.
pub struct Endpoint {
    /// Secret-bearing; see the module doc.
    url: Url,
    /// The connection's id, for logs.
    pub device_id: String,
    /// Echoed in every frame's `service` field.
    pub service_id: i32,
    pub config: ClientConfigPatch,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.url.host_str())
            .field("device_id", &self.device_id)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Reads the endpoint answer's `data`: `URL` (ws or wss, with `service_id` in its query)
    /// and the optional `ClientConfig`.
    pub fn from_data(data: &Value) -> Result<Endpoint, WsError> {
        let raw = data
            .get("URL")
            .and_then(Value::as_str)
            .ok_or(WsError::BadEndpoint("no URL"))?;
        let url = Url::parse(raw).map_err(|_| WsError::BadEndpoint("URL does not parse"))?;
        if !matches!(url.scheme(), "ws" | "wss") || url.host().is_none() {
            return Err(WsError::BadEndpoint("URL is not ws:// or wss://"));
        }
        let query = |key: &str| {
            url.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let service_id = query("service_id")
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or(WsError::BadEndpoint("URL has no numeric service_id"))?;
        let device_id = query("device_id").unwrap_or_default();
        let config = data
            .get("ClientConfig")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        Ok(Endpoint {
            url,
            device_id,
            service_id,
            config,
        })
    }

    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }
}

/// Asks Lark for a fresh endpoint (also what `abort-bot check` tries).
pub async fn fetch_endpoint(lark: &LarkClient) -> Result<Endpoint, WsError> {
    Endpoint::from_data(&lark.ws_endpoint().await?)
}

/// Where the long connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not open yet, or lost and being reopened.
    Connecting,
    Open,
    /// Stopped for good (a fatal refusal, ReconnectCount ran out, or shutdown).
    Stopped,
}

/// The long connection's [`LinkState`], shared with `/readyz`: in websocket mode no event
/// arrives unless it is open. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus(Arc<AtomicU8>);

impl LinkStatus {
    pub fn get(&self) -> LinkState {
        match self.0.load(Ordering::Acquire) {
            1 => LinkState::Open,
            2 => LinkState::Stopped,
            _ => LinkState::Connecting,
        }
    }

    fn set(&self, state: LinkState) {
        let v = match state {
            LinkState::Connecting => 0,
            LinkState::Open => 1,
            LinkState::Stopped => 2,
        };
        self.0.store(v, Ordering::Release);
    }
}

/// Keeps one long connection open until shutdown.
pub struct LongConnection<H> {
    lark: Arc<LarkClient>,
    handler: Arc<H>,
    limits: SessionLimits,
    status: LinkStatus,
}

impl<H: EventHandler> LongConnection<H> {
    /// `status` is kept up to date from here on.
    pub fn new(
        lark: Arc<LarkClient>,
        handler: Arc<H>,
        limits: SessionLimits,
        status: LinkStatus,
    ) -> Self {
        LongConnection {
            lark,
            handler,
            limits,
            status,
        }
    }

    /// Connects, runs, reconnects. Returns `Ok` on shutdown (also when the shutdown sender
    /// is dropped) and an error only when retrying cannot help or ReconnectCount ran out.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), WsError> {
        let status = self.status.clone();
        let result = self.reconnect_loop(shutdown).await;
        status.set(LinkState::Stopped);
        result
    }

    async fn reconnect_loop(self, mut shutdown: watch::Receiver<bool>) -> Result<(), WsError> {
        let mut config = ClientConfig::default();
        let mut failures: u32 = 0;
        let mut wait = Duration::ZERO;
        loop {
            if !wait.is_zero() {
                tokio::select! {
                    _ = stopped(&mut shutdown) => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let connected = tokio::select! {
                _ = stopped(&mut shutdown) => return Ok(()),
                c = self.connect(&mut config) => c,
            };
            match connected {
                Ok((socket, endpoint)) => {
                    failures = 0;
                    self.status.set(LinkState::Open);
                    tracing::info!(host = endpoint.host(), device_id = %endpoint.device_id, service_id = endpoint.service_id, "long connection open");
                    let (sink, stream) = socket.split();
                    let end = run_session(
                        sink,
                        stream,
                        endpoint.service_id,
                        &mut config,
                        self.limits,
                        self.handler.clone(),
                        &mut shutdown,
                    )
                    .await;
                    self.status.set(LinkState::Connecting);
                    match end {
                        SessionEnd::Shutdown => {
                            tracing::info!(device_id = %endpoint.device_id, "long connection closed for shutdown");
                            return Ok(());
                        }
                        other => {
                            tracing::warn!(device_id = %endpoint.device_id, end = ?other, "long connection lost; reconnecting");
                            wait = jitter(config.reconnect_nonce);
                        }
                    }
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if config.reconnect_count >= 0 && i64::from(failures) > config.reconnect_count {
                        return Err(WsError::GaveUp(failures));
                    }
                    wait =
                        config.reconnect_interval.max(MIN_RETRY) + jitter(config.reconnect_nonce);
                    tracing::warn!(error = %e, failures, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "cannot open the long connection");
                }
            }
        }
    }

    /// One attempt: a fresh endpoint (its ClientConfig applied), then the handshake.
    async fn connect(
        &self,
        config: &mut ClientConfig,
    ) -> Result<
        (
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
            Endpoint,
        ),
        WsError,
    > {
        let endpoint = fetch_endpoint(&self.lark).await?;
        config.apply(&endpoint.config);
        let handshake = tokio_tungstenite::connect_async(endpoint.url.as_str());
        let (socket, _response) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| WsError::Handshake("timed out".into()))?
            .map_err(handshake_error)?;
        Ok((socket, endpoint))
    }
}

/// A refused handshake says why in `handshake-*` headers; the fatal codes stop retries.
fn handshake_error(e: tungstenite::Error) -> WsError {
    let tungstenite::Error::Http(response) = &e else {
        return WsError::Handshake(e.to_string());
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let msg = header("handshake-msg").unwrap_or_default();
    match header("handshake-autherrcode").and_then(|c| c.trim().parse::<i64>().ok()) {
        Some(code) if FATAL_CODES.contains(&code) => WsError::Refused { code, msg },
        code => WsError::Handshake(format!(
            "HTTP {} (code {}, {msg})",
            response.status().as_u16(),
            code.map_or_else(|| "none".to_owned(), |c| c.to_string())
        )),
    }
}

/// A random wait in `0..=max`, so a fleet of bots does not reconnect in step.
fn jitter(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_answer_is_read_and_its_url_never_printed() {
        let data = json!({"URL": "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&device_id=7362&access_key=SECRETKEY&service_id=33554678&ticket=SECRETTICKET",
                          "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 90}});
        let ep = Endpoint::from_data(&data).expect("valid");
        assert_eq!(ep.service_id, 33_554_678);
        assert_eq!(ep.device_id, "7362");
        assert_eq!(ep.host(), "msg-frontier.feishu.cn");
        let mut c = ClientConfig::default();
        c.apply(&ep.config);
        assert_eq!(c.ping_interval, Duration::from_secs(90));
        let shown = format!("{ep:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn bad_endpoint_answers_are_refused() {
        for data in [
            json!({}),
            json!({"URL": "https://x/ws?service_id=1"}),
            json!({"URL": "wss://x/ws?device_id=1"}),
            json!({"URL": "not a url"}),
        ] {
            assert!(Endpoint::from_data(&data).is_err(), "{data}");
        }
    }

    #[test]
    fn only_the_documented_codes_stop_retries() {
        let api = |code| {
            WsError::Endpoint(LarkError::Api {
                code,
                msg: String::new(),
                status: 200,
            })
        };
        for code in [1_000_040_350, 514, 403] {
            assert!(api(code).is_fatal());
        }
        for code in [1, 1_000_040_343] {
            assert!(!api(code).is_fatal());
        }
        assert!(!WsError::Endpoint(LarkError::Timeout).is_fatal());
        assert!(!WsError::Handshake("x".into()).is_fatal());
    }

    #[test]
    fn fatal_handshake_headers_stop_retries() {
        let response = |code: &str| {
            let mut r = tungstenite::http::Response::new(None);
            *r.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            r.headers_mut()
                .insert("handshake-autherrcode", code.parse().expect("header value"));
            r.headers_mut()
                .insert("handshake-msg", "nope".parse().expect("header value"));
            tungstenite::Error::Http(Box::new(r))
        };
        assert!(handshake_error(response("514")).is_fatal());
        assert!(!handshake_error(response("1")).is_fatal());
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }
}

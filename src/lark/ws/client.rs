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
use crate::metrics::Metrics;

/// Endpoint answers that are retried (§6.1.1, Python/Go `getConnURL`): 1 (system busy) and
/// 1000040343 (internal error). Any other non-zero `code` in an HTTP 200 answer is final
/// (no credential, forbidden, auth failed, connection limit, a token error such as 99991665).
const RETRIED_ENDPOINT_CODES: &[i64] = &[1, 1_000_040_343];
/// `Handshake-Status` values (§6.1.1): 403 is final; 514 is final only with
/// `Handshake-Autherrcode` [`CONNECTION_LIMIT`].
const HANDSHAKE_FORBIDDEN: i64 = 403;
const HANDSHAKE_AUTH_FAILED: i64 = 514;
/// Too many connections for the app (Lark allows 50).
const CONNECTION_LIMIT: i64 = 1_000_040_350;

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
    /// True when reconnecting cannot help (§6.1.1, following Python and Go): an endpoint
    /// answer with HTTP 200 and a code other than 0, 1 or 1000040343; a handshake refused
    /// with 403, or with 514 and the connection limit; or ReconnectCount ran out.
    pub fn is_fatal(&self) -> bool {
        match self {
            WsError::Endpoint(LarkError::Api {
                code, status: 200, ..
            }) => !RETRIED_ENDPOINT_CODES.contains(code),
            WsError::Endpoint(_) => false,
            WsError::Refused { .. } | WsError::GaveUp(_) => true,
            WsError::BadEndpoint(_) | WsError::Handshake(_) => false,
        }
    }

    /// The metric label of a final failure.
    fn stop_reason(&self) -> &'static str {
        match self {
            WsError::Refused {
                code: HANDSHAKE_FORBIDDEN,
                ..
            } => "forbidden",
            WsError::Refused { .. } => "connection_limit",
            WsError::GaveUp(_) => "gave_up",
            WsError::Endpoint(_) | WsError::BadEndpoint(_) | WsError::Handshake(_) => {
                "endpoint_refused"
            }
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

impl LinkState {
    /// Its value as stored and as the `long_connection_state` gauge shows it.
    pub fn gauge(self) -> i64 {
        match self {
            LinkState::Connecting => 0,
            LinkState::Open => 1,
            LinkState::Stopped => 2,
        }
    }
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
        let v = u8::try_from(state.gauge()).unwrap_or(0);
        self.0.store(v, Ordering::Release);
    }
}

/// Keeps one long connection open until shutdown.
pub struct LongConnection<H> {
    lark: Arc<LarkClient>,
    handler: Arc<H>,
    limits: SessionLimits,
    status: LinkStatus,
    metrics: Arc<Metrics>,
}

impl<H: EventHandler> LongConnection<H> {
    /// `status` is kept up to date from here on; reconnects and a final stop are counted in
    /// `metrics`.
    pub fn new(
        lark: Arc<LarkClient>,
        handler: Arc<H>,
        limits: SessionLimits,
        status: LinkStatus,
        metrics: Arc<Metrics>,
    ) -> Self {
        LongConnection {
            lark,
            handler,
            limits,
            status,
            metrics,
        }
    }

    /// Connects, runs, reconnects. Returns `Ok` on shutdown (also when the shutdown sender
    /// is dropped) and an error only when retrying cannot help or ReconnectCount ran out.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), WsError> {
        let status = self.status.clone();
        let metrics = self.metrics.clone();
        let result = self.reconnect_loop(shutdown).await;
        status.set(LinkState::Stopped);
        metrics.long_connection_state(LinkState::Stopped.gauge());
        if let Err(e) = &result {
            metrics.long_connection_stopped(e.stop_reason());
        }
        result
    }

    /// Tells `/readyz` and the `long_connection_state` gauge.
    fn set_state(&self, state: LinkState) {
        self.status.set(state);
        self.metrics.long_connection_state(state.gauge());
    }

    async fn reconnect_loop(self, mut shutdown: watch::Receiver<bool>) -> Result<(), WsError> {
        let mut config = ClientConfig::default();
        let mut failures: u32 = 0;
        let mut wait = Duration::ZERO;
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                self.metrics.long_connection_reconnect();
            }
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
                    self.set_state(LinkState::Open);
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
                    self.set_state(LinkState::Connecting);
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

/// A refused handshake says why in `handshake-*` headers (read case-insensitively, §6.1.1):
/// `Handshake-Status` 403, or 514 with `Handshake-Autherrcode` 1000040350, stops retries;
/// anything else, or no headers at all, is retried.
fn handshake_error(e: tungstenite::Error) -> WsError {
    let tungstenite::Error::Http(response) = &e else {
        return WsError::Handshake(e.to_string());
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    let number = |name: &str| header(name).and_then(|v| v.parse::<i64>().ok());
    let msg = header("handshake-msg").unwrap_or_default();
    let status = number("handshake-status");
    let code = number("handshake-autherrcode");
    match (status, code) {
        (Some(HANDSHAKE_FORBIDDEN), _) => WsError::Refused {
            code: HANDSHAKE_FORBIDDEN,
            msg,
        },
        (Some(HANDSHAKE_AUTH_FAILED), Some(CONNECTION_LIMIT)) => WsError::Refused {
            code: CONNECTION_LIMIT,
            msg,
        },
        _ => {
            let shown = |v: Option<i64>| v.map_or_else(|| "none".to_owned(), |c| c.to_string());
            WsError::Handshake(format!(
                "HTTP {} (handshake status {}, code {}, {msg})",
                response.status().as_u16(),
                shown(status),
                shown(code)
            ))
        }
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
    fn endpoint_codes_are_final_except_busy_and_internal_error() {
        let api = |code, status| {
            WsError::Endpoint(LarkError::Api {
                code,
                msg: String::new(),
                status,
            })
        };
        // §6.1.1: any code other than 0 / 1 / 1000040343 in an HTTP 200 answer is final.
        for code in [1_000_040_350, 1_000_040_344, 514, 403, 99_991_665] {
            assert!(api(code, 200).is_fatal(), "{code}");
        }
        for code in [1, 1_000_040_343] {
            assert!(!api(code, 200).is_fatal(), "{code}");
        }
        // HTTP status other than 200: "system busy", retried.
        assert!(!api(99_991_400, 429).is_fatal());
        assert!(!api(514, 500).is_fatal());
        assert!(!WsError::Endpoint(LarkError::Timeout).is_fatal());
        assert!(!WsError::Handshake("x".into()).is_fatal());
    }

    /// A refused upgrade with these `(name, value)` headers.
    fn refused(headers: &[(&'static str, &str)]) -> tungstenite::Error {
        let mut r = tungstenite::http::Response::new(None);
        *r.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name");
            r.headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        tungstenite::Error::Http(Box::new(r))
    }

    #[test]
    fn handshake_403_and_514_with_the_connection_limit_are_final() {
        // Header names in either case (Go writes them capitalised); §6.1.1 table.
        let final_ones = [
            vec![("Handshake-Status", "403"), ("Handshake-Msg", "banned")],
            vec![("handshake-status", "403"), ("handshake-autherrcode", "1")],
            vec![
                ("handshake-status", "514"),
                ("handshake-autherrcode", "1000040350"),
            ],
        ];
        for headers in final_ones {
            let e = handshake_error(refused(&headers));
            assert!(e.is_fatal(), "{headers:?}: {e}");
        }
        assert_eq!(
            handshake_error(refused(&[("handshake-status", "403")])).stop_reason(),
            "forbidden"
        );
        let retried = [
            vec![("handshake-status", "514"), ("handshake-autherrcode", "1")],
            vec![("handshake-status", "514")],
            vec![("handshake-autherrcode", "1000040350")],
            vec![("handshake-status", "500")],
            vec![],
        ];
        for headers in retried {
            let e = handshake_error(refused(&headers));
            assert!(!e.is_fatal(), "{headers:?}: {e}");
        }
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }
}

//! The gate every Lark request passes before anything else happens: timestamp window,
//! signature (raw bytes, constant time), strict decryption, verification token. A request that
//! fails here is refused with no side effect at all.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::crypto::{self, constant_time_eq};
use super::envelope::{CardActionEnvelope, EventEnvelope, Inbound, str_at};
use crate::clock::SharedClock;

/// Lark's limit on how far ahead a request timestamp may be.
const MAX_FUTURE_SECS: i64 = 300;

/// Why a request was refused; the status says which kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The three signature headers, as received.
#[derive(Debug, Clone, Default)]
pub struct SignatureHeaders {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
}

impl SignatureHeaders {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            timestamp: get("x-lark-request-timestamp"),
            nonce: get("x-lark-request-nonce"),
            signature: get("x-lark-signature"),
        }
    }

    fn is_empty(&self) -> bool {
        self.timestamp.is_none() && self.nonce.is_none() && self.signature.is_none()
    }
}

/// Verifies and opens requests from Lark.
#[derive(Clone)]
pub struct Verifier {
    verification_token: SecretString,
    encrypt_key: Option<SecretString>,
    retention: Duration,
    clock: SharedClock,
}

impl Verifier {
    pub fn new(
        verification_token: SecretString,
        encrypt_key: Option<SecretString>,
        retention: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            verification_token,
            encrypt_key,
            retention,
            clock,
        }
    }

    /// `POST /lark/events`: events, 2.0 callbacks and the challenge.
    pub fn open_event(&self, headers: &SignatureHeaders, body: &[u8]) -> Result<Inbound, Refusal> {
        let json = match &self.encrypt_key {
            Some(key) => {
                let signed = !headers.is_empty();
                if signed {
                    self.check_timestamp(headers)?;
                    let expected = crypto::event_signature(
                        headers.timestamp.as_deref().unwrap_or_default(),
                        headers.nonce.as_deref().unwrap_or_default(),
                        key.expose_secret(),
                        body,
                    );
                    check_signature(headers, &expected)?;
                }
                let outer: Value = serde_json::from_slice(body)
                    .map_err(|_| Refusal::BadRequest("body is not JSON"))?;
                let encrypted = outer
                    .get("encrypt")
                    .and_then(Value::as_str)
                    .ok_or(Refusal::BadRequest("expected an encrypted body"))?;
                let plain = crypto::decrypt(key.expose_secret(), encrypted)
                    .map_err(|_| Refusal::BadRequest("body does not decrypt"))?;
                let inner: Value = serde_json::from_str(&plain)
                    .map_err(|_| Refusal::BadRequest("decrypted body is not JSON"))?;
                // Unsigned requests are allowed only for the challenge, which Lark may send bare.
                if !signed && !is_challenge(&inner) {
                    return Err(Refusal::Unauthorized("missing signature headers"));
                }
                inner
            }
            None => {
                if headers.timestamp.is_some() {
                    self.check_timestamp(headers)?;
                }
                let json: Value = serde_json::from_slice(body)
                    .map_err(|_| Refusal::BadRequest("body is not JSON"))?;
                if json.get("encrypt").is_some() {
                    return Err(Refusal::BadRequest(
                        "encrypted body but no LARK_ENCRYPT_KEY is configured",
                    ));
                }
                json
            }
        };
        self.classify(json)
    }

    /// `POST /lark/cards`: a body with `schema` or `encrypt` is a 2.0 callback (event rules);
    /// anything else is the legacy card request URL, signed with SHA-1 over the token.
    pub fn open_card(&self, headers: &SignatureHeaders, body: &[u8]) -> Result<Inbound, Refusal> {
        let json: Value =
            serde_json::from_slice(body).map_err(|_| Refusal::BadRequest("body is not JSON"))?;
        if json.get("schema").is_some() || json.get("encrypt").is_some() {
            return self.open_event(headers, body);
        }
        if is_challenge(&json) && headers.signature.is_none() {
            return self.classify(json);
        }
        self.check_timestamp(headers)?;
        let expected = crypto::card_signature(
            headers.timestamp.as_deref().unwrap_or_default(),
            headers.nonce.as_deref().unwrap_or_default(),
            self.verification_token.expose_secret(),
            body,
        );
        check_signature(headers, &expected)?;
        if is_challenge(&json) {
            return self.classify(json);
        }
        // The top-level `token` here is the card-update token, never the verification token.
        if json.get("action").is_none() {
            return Err(Refusal::BadRequest("not a card callback"));
        }
        Ok(Inbound::LegacyCardAction(json))
    }

    /// A long-connection payload: plain v2 JSON with no signature and no token to compare.
    /// Lark authenticated the app when it handed out the connection URL, real payloads carry
    /// `header.token: ""`, and the official SDKs never compare it there
    /// (`protocol/lark-websocket.md` §6.5): whatever `header.token` holds is accepted.
    pub fn open_plain(&self, body: &[u8]) -> Result<Inbound, Refusal> {
        let json: Value =
            serde_json::from_slice(body).map_err(|_| Refusal::BadRequest("body is not JSON"))?;
        if json.get("encrypt").is_some() {
            return Err(Refusal::BadRequest(
                "encrypted payload on the long connection",
            ));
        }
        self.classify_with(json, Token::Ignore)
    }

    fn check_timestamp(&self, headers: &SignatureHeaders) -> Result<(), Refusal> {
        let ts: i64 = headers
            .timestamp
            .as_deref()
            .and_then(|t| t.parse().ok())
            .ok_or(Refusal::Unauthorized(
                "missing or malformed X-Lark-Request-Timestamp",
            ))?;
        let now = self.clock.now_secs();
        let oldest =
            now.saturating_sub(i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX));
        if ts < oldest {
            return Err(Refusal::Unauthorized("request timestamp too old"));
        }
        if ts > now.saturating_add(MAX_FUTURE_SECS) {
            return Err(Refusal::Unauthorized("request timestamp in the future"));
        }
        Ok(())
    }

    fn check_token(&self, token: Option<&str>) -> Result<(), Refusal> {
        match token {
            Some(t) if constant_time_eq(t, self.verification_token.expose_secret()) => Ok(()),
            _ => Err(Refusal::Unauthorized("verification token mismatch")),
        }
    }

    /// An HTTP delivery: the verification token must match.
    fn classify(&self, json: Value) -> Result<Inbound, Refusal> {
        self.classify_with(json, Token::Compare)
    }

    fn classify_with(&self, json: Value, token: Token) -> Result<Inbound, Refusal> {
        let check_token = |at: &str| match token {
            Token::Compare => self.check_token(str_at(&json, at)),
            Token::Ignore => Ok(()),
        };
        if is_challenge(&json) {
            check_token("/token")?;
            let challenge = str_at(&json, "/challenge")
                .ok_or(Refusal::BadRequest("challenge without a challenge"))?
                .to_owned();
            return Ok(Inbound::Challenge { challenge });
        }
        if json.get("schema").and_then(Value::as_str) == Some("2.0") {
            check_token("/header/token")?;
            let event_id = str_at(&json, "/header/event_id")
                .ok_or(Refusal::BadRequest("event without header.event_id"))?
                .to_owned();
            let event_type = str_at(&json, "/header/event_type")
                .ok_or(Refusal::BadRequest("event without header.event_type"))?
                .to_owned();
            if event_type == "card.action.trigger" {
                return Ok(Inbound::CardAction(CardActionEnvelope {
                    event_id,
                    body: json,
                }));
            }
            return Ok(Inbound::Event(EventEnvelope {
                event_id,
                event_type,
                body: json,
            }));
        }
        if json.get("type").and_then(Value::as_str) == Some("event_callback") {
            check_token("/token")?;
            let event_id = str_at(&json, "/uuid")
                .ok_or(Refusal::BadRequest("1.0 event without uuid"))?
                .to_owned();
            let event_type = str_at(&json, "/event/type").unwrap_or("unknown").to_owned();
            return Ok(Inbound::Event(EventEnvelope {
                event_id,
                event_type,
                body: json,
            }));
        }
        Err(Refusal::BadRequest("not a Lark event"))
    }
}

/// Compares `X-Lark-Signature`, exactly as received, with the expected lowercase hex digest.
fn check_signature(headers: &SignatureHeaders, expected: &str) -> Result<(), Refusal> {
    let given = headers
        .signature
        .as_deref()
        .ok_or(Refusal::Unauthorized("missing X-Lark-Signature"))?;
    if constant_time_eq(given, expected) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized("signature mismatch"))
    }
}

/// Whether a delivery's verification token is compared: over HTTP always, over the long
/// connection never (the connection the bot opened is the authentication).
#[derive(Debug, Clone, Copy)]
enum Token {
    Compare,
    Ignore,
}

fn is_challenge(json: &Value) -> bool {
    json.get("type").and_then(Value::as_str) == Some("url_verification")
}

/// Shared handle used by the routes.
pub type SharedVerifier = Arc<Verifier>;

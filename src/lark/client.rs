//! HTTP client for the Lark Open Platform APIs the bot calls: tenant token, bot info, reply,
//! send, PATCH of a card, delayed card update and the contact lookup.
//!
//! The tenant token is cached until 10 minutes before expiry, single flight, and dropped and
//! refetched once on a token error (99991661/99991663/99991664/99991665). Rate limits (HTTP
//! 429, 99991400, 230020), 5xx and transport failures are retried with jittered backoff; a
//! rate limit that says how long to wait (`x-ogw-ratelimit-reset`) is retried no sooner
//! than that. Lark reports business errors with HTTP 400 and a JSON body, so the body is read
//! on every status.
//!
//! Every message the bot sends or changes (send, reply, PATCH, delayed update) waits its turn
//! first, so that the bot stays under Lark's limits instead of living on its refusals
//! (`protocol/lark.md` §4.2/§4.3): at most 5 per second into one chat or to one user, at most
//! 50 per second and 1000 per minute for the whole app. A Lark that keeps failing after the
//! retries trips a [`Circuit`]: calls then fail at once with [`LarkError::Unavailable`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use moka::future::Cache;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use url::Url;

use crate::circuit::{Circuit, CircuitConfig, CircuitOpen, Verdict};
use crate::clock::SharedClock;
use crate::metrics::{CacheName, Metrics, UpstreamCall, UpstreamOutcome};
use crate::retry::RetryPolicy;
use crate::token::TokenCache;

/// Token errors after which the cached tenant token is dropped and the call made once more:
/// no token (99991661), invalid or expired (99991663, `protocol/lark.md` §4.1/§4.2), and the
/// invalid app / tenant access token codes 99991664 / 99991665 of the generic error-code page
/// (https://open.feishu.cn/document/server-docs/api-call-guide/generic-error-code).
const TOKEN_INVALID: &[i64] = &[99_991_661, 99_991_663, 99_991_664, 99_991_665];
const RETRYABLE: &[i64] = &[99_991_400, 230_020];
/// The longest wait a rate-limit answer can impose on one retry; a handler should not stall
/// longer than this for a chat message.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);
/// The gap between two messages into one chat (or to one user): 5 QPS per chat, shared by all
/// bots in a group (`protocol/lark.md` §4.2, §4.3), spaced 210 ms rather than 200 ms so that
/// jitter on the way never puts a sixth into one of Lark's seconds.
const CHAT_GAP: Duration = Duration::from_millis(210);
/// The gap between two messages of the app: 50/s per app (§4.2, §4.3), with the same margin.
const APP_GAP: Duration = Duration::from_millis(21);
/// The app's minute budget: 1000/min per app (§4.2, §4.3). A burst of 90 and then one every
/// 66 ms keep any 60 s within 90 + 909 = 999 messages.
const MINUTE_GAP: Duration = Duration::from_millis(66);
const MINUTE_BURST: NonZeroU32 = NonZeroU32::new(90).unwrap();
/// Above this many chats in the per-chat limiter, the ones idle long enough to be back at a
/// full allowance are dropped (a chat's state is fresh again 210 ms after its last message).
const PRUNE_CHATS_AT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LarkError {
    #[error("Lark answered {code} ({msg}) with HTTP {status}")]
    Api { code: i64, msg: String, status: u16 },
    /// A rate limit whose answer said how long to wait (`x-ogw-ratelimit-reset`).
    #[error("Lark answered {code} ({msg}) with HTTP {status}; retry after {retry_after:?}")]
    RateLimited {
        code: i64,
        msg: String,
        status: u16,
        retry_after: Duration,
    },
    #[error("Lark could not be reached: {0}")]
    Transport(&'static str),
    #[error("Lark did not answer in time")]
    Timeout,
    #[error("Lark sent an unreadable answer (HTTP {status})")]
    Malformed { status: u16 },
    /// Not called: it kept failing lately and its circuit is open.
    #[error(transparent)]
    Unavailable(#[from] CircuitOpen),
}

impl LarkError {
    pub fn code(&self) -> Option<i64> {
        match self {
            LarkError::Api { code, .. } | LarkError::RateLimited { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            LarkError::Api { code, status, .. } => {
                RETRYABLE.contains(code) || *status == 429 || *status >= 500
            }
            LarkError::RateLimited { .. }
            | LarkError::Transport(_)
            | LarkError::Timeout
            | LarkError::Unavailable(_) => true,
            LarkError::Malformed { status } => *status == 429 || *status >= 500,
        }
    }

    /// The delay before the next retry: the backoff's, stretched to what a rate limit asked
    /// for (at most [`MAX_RATE_LIMIT_WAIT`]). None (retries used up) stays None.
    fn next_delay(&self, backoff: Option<Duration>) -> Option<Duration> {
        match self {
            LarkError::RateLimited { retry_after, .. } => {
                backoff.map(|d| d.max((*retry_after).min(MAX_RATE_LIMIT_WAIT)))
            }
            _ => backoff,
        }
    }

    /// The call's outcome class, for the latency histogram.
    fn outcome(&self) -> UpstreamOutcome {
        match self {
            LarkError::RateLimited { .. } => UpstreamOutcome::RateLimited,
            LarkError::Api { code, status, .. } => {
                if *status == 429 || RETRYABLE.contains(code) {
                    UpstreamOutcome::RateLimited
                } else if *status >= 500 {
                    UpstreamOutcome::ServerError
                } else {
                    UpstreamOutcome::Refused
                }
            }
            LarkError::Malformed { status } if *status == 429 => UpstreamOutcome::RateLimited,
            LarkError::Malformed { status } if *status >= 500 => UpstreamOutcome::ServerError,
            LarkError::Malformed { .. } => UpstreamOutcome::Malformed,
            LarkError::Transport(_) | LarkError::Timeout | LarkError::Unavailable(_) => {
                UpstreamOutcome::NoAnswer
            }
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            LarkError::Timeout
        } else if e.is_connect() {
            LarkError::Transport("connection failed")
        } else {
            LarkError::Transport("request failed")
        }
    }
}

/// Lark's answer to one call: its `data`-bearing body when `code` is 0, else the error it says.
fn read_answer(status: u16, bytes: &[u8], reset: Option<Duration>) -> Result<Value, LarkError> {
    let answer: Value =
        serde_json::from_slice(bytes).map_err(|_| LarkError::Malformed { status })?;
    let code = answer.get("code").and_then(Value::as_i64).unwrap_or(-1);
    if code != 0 {
        let msg = answer
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rate_limited = status == 429 || RETRYABLE.contains(&code);
        return Err(match reset.filter(|_| rate_limited) {
            Some(retry_after) => LarkError::RateLimited {
                code,
                msg,
                status,
                retry_after,
            },
            None => LarkError::Api { code, msg, status },
        });
    }
    if status >= 400 {
        return Err(LarkError::Malformed { status });
    }
    Ok(answer)
}

/// What the contact API tells about a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub union_id: Option<String>,
    pub email: Option<String>,
    /// Display name, for telling one person who else already clicked.
    pub name: Option<String>,
}

pub struct LarkClientConfig {
    pub base_url: Url,
    pub app_id: String,
    pub app_secret: SecretString,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
}

pub struct LarkClient {
    http: reqwest::Client,
    base: Url,
    app_id: String,
    app_secret: SecretString,
    token: TokenCache,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    bot_open_id: OnceCell<String>,
    contacts: Cache<String, Contact>,
    /// message_id → the chat it is in, for the messages the bot sent (to pace their updates).
    chats: Cache<String, String>,
    pacer: Pacer,
    circuit: Circuit,
}

struct Call {
    method: Method,
    endpoint: &'static str,
    path: String,
    body: Option<Value>,
    /// The chat (or user) a message goes to, when the call sends or changes one.
    paced: Option<String>,
}

/// Lark's send limits, kept on the bot's side (`protocol/lark.md` §4.2, §4.3).
struct Pacer {
    chat: DefaultKeyedRateLimiter<String>,
    app_second: DefaultDirectRateLimiter,
    app_minute: DefaultDirectRateLimiter,
}

impl Pacer {
    fn new() -> Self {
        let gap = |d: Duration| {
            Quota::with_period(d).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        };
        Self {
            chat: DefaultKeyedRateLimiter::keyed(gap(CHAT_GAP)),
            app_second: DefaultDirectRateLimiter::direct(gap(APP_GAP)),
            app_minute: DefaultDirectRateLimiter::direct(gap(MINUTE_GAP).allow_burst(MINUTE_BURST)),
        }
    }

    /// Waits until one more message may go into `chat` and out of the app.
    async fn wait(&self, chat: &str) {
        self.prune(PRUNE_CHATS_AT);
        self.chat.until_key_ready(&chat.to_owned()).await;
        self.app_minute.until_ready().await;
        self.app_second.until_ready().await;
    }

    /// Above `at` chats, forgets those back at a full allowance: the state stays bounded by
    /// the chats written to in the last [`CHAT_GAP`] (at most 50/s of them app-wide).
    fn prune(&self, at: usize) {
        if self.chat.len() > at {
            self.chat.retain_recent();
            self.chat.shrink_to_fit();
        }
    }
}

impl LarkClient {
    pub fn new(cfg: LarkClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("abort-bot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: cfg.base_url,
            app_id: cfg.app_id,
            app_secret: cfg.app_secret,
            token: TokenCache::new(Duration::from_secs(600), cfg.clock.clone()),
            retry: cfg.retry,
            metrics: cfg.metrics.clone(),
            bot_open_id: OnceCell::new(),
            contacts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(6 * 3600))
                .build(),
            // Lark lets a card be updated for 14 days (230031, §4.3); most updates come within
            // the hour, and a chat not remembered still gets the app-wide pacing.
            chats: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            pacer: Pacer::new(),
            circuit: Circuit::new("lark", CircuitConfig::default(), cfg.clock, cfg.metrics),
        })
    }

    /// The pacing key of an update to a message: its chat when known, else the message.
    async fn chat_of(&self, message_id: &str) -> String {
        self.metrics
            .cached(
                CacheName::LarkMessageChats,
                self.chats.get(message_id).await,
            )
            .unwrap_or_else(|| format!("message:{message_id}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    async fn send_raw(
        &self,
        method: Method,
        endpoint: &'static str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, LarkError> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let started = Instant::now();
        let mut status = 0;
        let answer = match req.send().await {
            Ok(resp) => {
                status = resp.status().as_u16();
                let reset = ratelimit_reset(resp.headers());
                match resp.bytes().await {
                    Ok(bytes) => read_answer(status, &bytes, reset),
                    Err(e) => Err(LarkError::from_reqwest(&e)),
                }
            }
            Err(e) => Err(LarkError::from_reqwest(&e)),
        };
        self.metrics.upstream(
            endpoint,
            UpstreamCall {
                service: "lark",
                method: method_name(&method),
                path: path.split('?').next().unwrap_or(path).to_owned(),
                status,
                latency: started.elapsed(),
                outcome: match &answer {
                    Ok(_) => UpstreamOutcome::Ok,
                    Err(e) => e.outcome(),
                },
            },
        );
        answer
    }

    /// The tenant_access_token, fetched when missing or about to expire.
    pub async fn tenant_token(&self) -> Result<String, LarkError> {
        self.token
            .get(|| async {
                let path = "/open-apis/auth/v3/tenant_access_token/internal";
                let answer = self
                    .send_raw(
                        Method::POST,
                        path,
                        path,
                        None,
                        Some(&json!({
                            "app_id": self.app_id,
                            "app_secret": self.app_secret.expose_secret(),
                        })),
                    )
                    .await?;
                let token = answer
                    .get("tenant_access_token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or(LarkError::Malformed { status: 200 })?;
                let expire = answer.get("expire").and_then(Value::as_u64).unwrap_or(7200);
                self.metrics.token_refreshed("lark");
                Ok((token.to_owned(), Duration::from_secs(expire)))
            })
            .await
    }

    /// One logical call through the circuit: refused at once while it is open; the outcome
    /// after all retries tells it whether Lark is healthy.
    async fn call(&self, call: Call) -> Result<Value, LarkError> {
        let pass = self.circuit.admit()?;
        let result = self.call_retrying(&call).await;
        pass.finish(match &result {
            Err(e) if e.is_retryable() => Verdict::Failing,
            _ => Verdict::Healthy,
        });
        result
    }

    async fn call_retrying(&self, call: &Call) -> Result<Value, LarkError> {
        let attempt = || async {
            let token = self.tenant_token().await?;
            let send = |token: String| async move {
                if let Some(chat) = &call.paced {
                    self.pacer.wait(chat).await;
                }
                self.send_raw(
                    call.method.clone(),
                    call.endpoint,
                    &call.path,
                    Some(&token),
                    call.body.as_ref(),
                )
                .await
            };
            match send(token.clone()).await {
                Err(e) if e.code().is_some_and(|c| TOKEN_INVALID.contains(&c)) => {
                    self.token.invalidate(&token).await;
                    send(self.tenant_token().await?).await
                }
                other => other,
            }
        };
        attempt
            .retry(self.retry.backoff())
            .when(LarkError::is_retryable)
            .adjust(|e, backoff| e.next_delay(backoff))
            .notify(|e, after| {
                tracing::warn!(error = %e, retry_in = ?after, endpoint = call.endpoint, "retrying Lark call");
            })
            .await
    }

    /// The bot's own open_id (to see whether a group message mentions it); fetched once.
    /// `POST /callback/ws/endpoint`: a fresh long-connection URL and its ClientConfig (the
    /// answer's `data`). Authenticated by the app credentials in the body, no bearer token.
    /// Not retried here: the long-connection client has its own reconnect schedule.
    pub async fn ws_endpoint(&self) -> Result<Value, LarkError> {
        let path = "/callback/ws/endpoint";
        let body = json!({"AppID": self.app_id, "AppSecret": self.app_secret.expose_secret()});
        let answer = self
            .send_raw(Method::POST, path, path, None, Some(&body))
            .await?;
        answer
            .get("data")
            .filter(|d| d.is_object())
            .cloned()
            .ok_or(LarkError::Malformed { status: 200 })
    }

    pub async fn bot_open_id(&self) -> Result<String, LarkError> {
        self.bot_open_id
            .get_or_try_init(|| async {
                let answer = self
                    .call(Call {
                        method: Method::GET,
                        endpoint: "/open-apis/bot/v3/info",
                        path: "/open-apis/bot/v3/info".into(),
                        body: None,
                        paced: None,
                    })
                    .await?;
                answer
                    .pointer("/bot/open_id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or(LarkError::Malformed { status: 200 })
            })
            .await
            .cloned()
    }

    /// Replies to a message in `chat_id` with a card; `uuid` makes Lark drop a repeat within
    /// an hour. The reply counts for that chat's 5 per second.
    pub async fn reply_card(
        &self,
        chat_id: &str,
        message_id: &str,
        card: &Value,
        in_thread: bool,
        uuid: &str,
    ) -> Result<String, LarkError> {
        let answer = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open-apis/im/v1/messages/:message_id/reply",
                path: format!("/open-apis/im/v1/messages/{message_id}/reply"),
                body: Some(json!({
                    "msg_type": "interactive",
                    "content": card.to_string(),
                    "reply_in_thread": in_thread,
                    "uuid": uuid,
                })),
                paced: Some(chat_id.to_owned()),
            })
            .await?;
        let sent = sent_message_id(&answer);
        self.chats.insert(sent.clone(), chat_id.to_owned()).await;
        Ok(sent)
    }

    /// Sends a card to a chat (`receive_id_type` = chat_id, open_id, …); paced per receiver
    /// (5 per second to one group or one user, §4.3).
    pub async fn send_card(
        &self,
        receive_id_type: &str,
        receive_id: &str,
        card: &Value,
        uuid: &str,
    ) -> Result<String, LarkError> {
        let answer = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open-apis/im/v1/messages",
                path: format!("/open-apis/im/v1/messages?receive_id_type={receive_id_type}"),
                body: Some(json!({
                    "receive_id": receive_id,
                    "msg_type": "interactive",
                    "content": card.to_string(),
                    "uuid": uuid,
                })),
                paced: Some(match receive_id_type {
                    "chat_id" => receive_id.to_owned(),
                    _ => format!("{receive_id_type}:{receive_id}"),
                }),
            })
            .await?;
        let sent = sent_message_id(&answer);
        // The answer names the chat the message landed in (a p2p send: the bot↔user chat).
        let chat = answer
            .pointer("/data/chat_id")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .or_else(|| (receive_id_type == "chat_id").then(|| receive_id.to_owned()));
        if let Some(chat) = chat {
            self.chats.insert(sent.clone(), chat).await;
        }
        Ok(sent)
    }

    /// Replaces the card of a message the bot sent; paced with the message's chat.
    pub async fn patch_card(&self, message_id: &str, card: &Value) -> Result<(), LarkError> {
        self.call(Call {
            method: Method::PATCH,
            endpoint: "/open-apis/im/v1/messages/:message_id",
            path: format!("/open-apis/im/v1/messages/{message_id}"),
            body: Some(json!({ "content": card.to_string() })),
            paced: Some(self.chat_of(message_id).await),
        })
        .await
        .map(|_| ())
    }

    /// Delayed update with a callback's card token (valid 30 min, at most 2 uses); paced with
    /// the chat of the clicked message when it is known, else app-wide only.
    pub async fn delayed_update(
        &self,
        card_token: &str,
        message_id: Option<&str>,
        card: &Value,
    ) -> Result<(), LarkError> {
        let paced = match message_id {
            Some(id) => self.chat_of(id).await,
            None => format!("card_token:{card_token}"),
        };
        self.call(Call {
            method: Method::POST,
            endpoint: "/open-apis/interactive/v1/card/update",
            path: "/open-apis/interactive/v1/card/update".into(),
            body: Some(json!({ "token": card_token, "card": card })),
            paced: Some(paced),
        })
        .await
        .map(|_| ())
    }

    /// The name of a user when a contact lookup already brought it (no call is made).
    pub async fn known_name(&self, open_id: &str) -> Option<String> {
        self.contacts.get(open_id).await.and_then(|c| c.name)
    }

    /// Makes the viewers of the previews `preview_tokens` (1–10) fetch them again
    /// (`protocol/lark.md` §10.4); `open_ids` (at most 100) limits who re-fetches, all members
    /// of the link's chat when empty. Paced by the caller (each token once per 5 s, 5 calls/s).
    pub async fn refresh_previews(
        &self,
        preview_tokens: &[String],
        open_ids: &[String],
    ) -> Result<(), LarkError> {
        let mut body = json!({ "preview_tokens": preview_tokens });
        if !open_ids.is_empty() {
            body["open_ids"] = json!(open_ids);
        }
        self.call(Call {
            method: Method::POST,
            endpoint: "/open-apis/im/v2/url_previews/batch_update",
            path: "/open-apis/im/v2/url_previews/batch_update".into(),
            body: Some(body),
            paced: None,
        })
        .await
        .map(|_| ())
    }

    /// union_id and enterprise email of a user by open_id (cached).
    pub async fn contact(&self, open_id: &str) -> Result<Contact, LarkError> {
        if let Some(c) = self
            .metrics
            .cached(CacheName::LarkContacts, self.contacts.get(open_id).await)
        {
            return Ok(c);
        }
        let answer = self
            .call(Call {
                method: Method::GET,
                endpoint: "/open-apis/contact/v3/users/:open_id",
                path: format!("/open-apis/contact/v3/users/{open_id}?user_id_type=open_id"),
                body: None,
                paced: None,
            })
            .await?;
        let get = |p: &str| {
            answer
                .pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let contact = Contact {
            union_id: get("/data/user/union_id"),
            email: get("/data/user/enterprise_email").or_else(|| get("/data/user/email")),
            name: get("/data/user/name"),
        };
        self.contacts
            .insert(open_id.to_owned(), contact.clone())
            .await;
        Ok(contact)
    }
}

/// `x-ogw-ratelimit-reset`: whole seconds until the gateway's window resets.
fn ratelimit_reset(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("x-ogw-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn sent_message_id(answer: &Value) -> String {
    answer
        .pointer("/data/message_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "POST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_answer_is_classed_for_the_latency_histogram() {
        let api = |code, status| LarkError::Api {
            code,
            msg: String::new(),
            status,
        };
        let cases = [
            (api(230_002, 400), UpstreamOutcome::Refused),
            (api(230_020, 400), UpstreamOutcome::RateLimited),
            (api(99_991_400, 200), UpstreamOutcome::RateLimited),
            (api(0, 429), UpstreamOutcome::RateLimited),
            (api(1, 503), UpstreamOutcome::ServerError),
            (
                LarkError::Malformed { status: 502 },
                UpstreamOutcome::ServerError,
            ),
            (
                LarkError::Malformed { status: 200 },
                UpstreamOutcome::Malformed,
            ),
            (LarkError::Timeout, UpstreamOutcome::NoAnswer),
            (
                LarkError::Transport("connection failed"),
                UpstreamOutcome::NoAnswer,
            ),
        ];
        for (error, outcome) in cases {
            assert_eq!(error.outcome(), outcome, "{error}");
        }
    }

    fn limited(secs: u64) -> LarkError {
        LarkError::RateLimited {
            code: 99_991_400,
            msg: "request trigger frequency limit".into(),
            status: 429,
            retry_after: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn the_per_chat_state_is_pruned_to_the_chats_written_to_lately() {
        let pacer = Pacer::new();
        for n in 0..100 {
            pacer.chat.until_key_ready(&format!("oc_{n}")).await;
        }
        pacer.prune(1000);
        assert_eq!(pacer.chat.len(), 100, "under the bound: kept");
        // Once a chat's gap has passed, its state is that of a chat never seen.
        tokio::time::sleep(CHAT_GAP * 2).await;
        pacer.chat.until_key_ready(&"oc_now".to_owned()).await;
        pacer.prune(50);
        assert_eq!(pacer.chat.len(), 1, "only the chat written to just now");
    }

    #[test]
    fn a_rate_limit_keeps_its_code_and_is_retried() {
        assert_eq!(limited(1).code(), Some(99_991_400));
        assert!(limited(1).is_retryable());
    }

    #[test]
    fn the_reset_stretches_the_backoff_within_the_cap_and_the_budget() {
        let ms = Duration::from_millis;
        assert_eq!(limited(1).next_delay(Some(ms(20))), Some(ms(1000)));
        assert_eq!(
            limited(0).next_delay(Some(ms(20))),
            Some(ms(20)),
            "never shorter"
        );
        assert_eq!(
            limited(3600).next_delay(Some(ms(20))),
            Some(MAX_RATE_LIMIT_WAIT)
        );
        assert_eq!(limited(1).next_delay(None), None, "no retries left");
        assert_eq!(LarkError::Timeout.next_delay(Some(ms(20))), Some(ms(20)));
    }

    #[test]
    fn the_reset_header_is_whole_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(ratelimit_reset(&h), None);
        h.insert(
            "x-ogw-ratelimit-reset",
            " 2 ".parse().expect("header value"),
        );
        assert_eq!(ratelimit_reset(&h), Some(Duration::from_secs(2)));
        h.insert(
            "x-ogw-ratelimit-reset",
            "soon".parse().expect("header value"),
        );
        assert_eq!(ratelimit_reset(&h), None);
    }
}

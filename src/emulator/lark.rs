//! An emulated Lark Open Platform: tenant token, bot info, reply/send/PATCH of cards, delayed
//! card update and the contact API. It checks tokens and bodies like the real one, keeps the
//! messages the bot sent (and their updates), and drops a repeated `uuid` as Lark does.
//! Sends and replies are held to Lark's limits (`protocol/lark.md` §4.2, §4.3): more than 5
//! in a second into one chat (or to one user) is refused with 230020 (HTTP 400), more than
//! 50 in a second or 1000 in a minute for the app with 99991400 (HTTP 429) and
//! `x-ogw-ratelimit-reset`; each refusal is recorded.
//! The long connection (endpoint and WebSocket) lives in [`super::lark_ws`], link previews
//! (`url.preview.get` and their refresh) in [`super::lark_preview`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Recorded, card_rules};

/// A Lark user known to the emulator (the contact API).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub open_id: String,
    pub union_id: String,
    pub email: String,
    pub name: String,
}

/// A card message the bot sent.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub message_id: String,
    /// The message it answers (reply), if any.
    pub reply_to: Option<String>,
    /// The chat it was sent to (send), if any.
    pub chat_id: Option<String>,
    pub in_thread: bool,
    pub card: Value,
    /// How many times it was updated (PATCH or delayed update).
    pub updates: u32,
}

/// A card Lark refused (§4.3 codes), kept for tests and the sandbox's log.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub endpoint: Endpoint,
    pub code: i64,
    pub msg: String,
}

/// A send or reply Lark refused for going over a rate limit (§4.2, §4.3).
#[derive(Debug, Clone, Serialize)]
pub struct RateRefusal {
    pub endpoint: Endpoint,
    pub code: i64,
    /// The chat (or `open_id:…` user) it went to, when known.
    pub chat: Option<String>,
}

/// Messages into one chat or to one user per second (§4.2: 5 QPS per group, per user).
const CHAT_PER_SECOND: usize = 5;
/// Messages of the app per second and per minute (§4.2: 50/s, 1000/min).
const APP_PER_SECOND: usize = 50;
const APP_PER_MINUTE: usize = 1000;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The sends and replies Lark took lately, for its rate limits.
#[derive(Debug, Default)]
struct SendLog {
    app: VecDeque<Instant>,
    chats: HashMap<String, VecDeque<Instant>>,
}

impl SendLog {
    /// Takes one message into `chat` now, or says which limit refuses it: 99991400 with the
    /// seconds to wait (the app's gateway limit) or 230020 (the chat's IM limit).
    fn admit(&mut self, chat: Option<&str>, now: Instant) -> Result<(), (i64, Option<u64>)> {
        while self
            .app
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            self.app.pop_front();
        }
        let in_second = self
            .app
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) < SECOND)
            .count();
        if in_second >= APP_PER_SECOND {
            return Err((99_991_400, Some(1)));
        }
        if self.app.len() >= APP_PER_MINUTE {
            let wait = self
                .app
                .front()
                .map(|t| MINUTE.saturating_sub(now.duration_since(*t)).as_secs() + 1);
            return Err((99_991_400, wait));
        }
        if let Some(chat) = chat {
            let times = self.chats.entry(chat.to_owned()).or_default();
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= SECOND)
            {
                times.pop_front();
            }
            if times.len() >= CHAT_PER_SECOND {
                return Err((230_020, None));
            }
            times.push_back(now);
        }
        self.app.push_back(now);
        Ok(())
    }
}

/// What the emulator tells watchers (the sandbox page) as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    Sent { message: Message },
    Updated { message: Message },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Endpoint {
    Token,
    BotInfo,
    Reply,
    Send,
    Patch,
    CardUpdate,
    Contact,
    PreviewUpdate,
    /// Not an API: the card in a bot's answer to a click, which the client shows.
    CallbackAnswer,
}

#[derive(Debug)]
pub struct LarkState {
    pub app_id: String,
    pub app_secret: String,
    pub bot_open_id: String,
    pub token_lifetime: u64,
    tokens: Vec<String>,
    /// Every tenant token ever handed out, expired ones included.
    issued: Vec<String>,
    pub users: Vec<User>,
    pub messages: BTreeMap<String, Message>,
    uuids: HashMap<String, String>,
    /// Uses of each delayed-update token.
    card_token_uses: HashMap<String, u32>,
    /// Card update token → the message it updates (set by whoever issues a click).
    pub card_tokens: HashMap<String, String>,
    /// Scripted failures: endpoint, status, code, and an `x-ogw-ratelimit-reset` to send.
    pub faults: VecDeque<(Endpoint, u16, i64, Option<u64>)>,
    /// The contact API answers after this long while set (a slow directory).
    pub contact_delay: Option<std::time::Duration>,
    pub requests: Vec<Recorded>,
    /// Cards refused for breaking Lark's card rules or size limit.
    pub refusals: Vec<Refusal>,
    /// Sends and replies refused for going over a rate limit.
    pub rate_refusals: Vec<RateRefusal>,
    /// message_id → its chat, for the messages people sent (as told) and the bot's own.
    chat_of: HashMap<String, String>,
    sends: SendLog,
    next_id: u64,
    /// Link previews: where they are fetched from, what each viewer was shown, refreshes.
    pub previews: super::lark_preview::PreviewSide,
}

#[derive(Clone)]
pub struct LarkEmulator {
    state: Arc<Mutex<LarkState>>,
    activity: broadcast::Sender<Activity>,
    ws: super::lark_ws::WsHub,
}

/// The delayed-update API takes a token at most this many times.
const CARD_TOKEN_USES: u32 = 2;

impl LarkEmulator {
    pub fn new(app_id: &str, app_secret: &str, bot_open_id: &str) -> Self {
        let (activity, _) = broadcast::channel(256);
        Self {
            state: Arc::new(Mutex::new(LarkState {
                app_id: app_id.to_owned(),
                app_secret: app_secret.to_owned(),
                bot_open_id: bot_open_id.to_owned(),
                token_lifetime: 7200,
                tokens: Vec::new(),
                issued: Vec::new(),
                users: Vec::new(),
                messages: BTreeMap::new(),
                uuids: HashMap::new(),
                card_token_uses: HashMap::new(),
                card_tokens: HashMap::new(),
                faults: VecDeque::new(),
                contact_delay: None,
                requests: Vec::new(),
                refusals: Vec::new(),
                rate_refusals: Vec::new(),
                chat_of: HashMap::new(),
                sends: SendLog::default(),
                next_id: 1,
                previews: Default::default(),
            })),
            activity,
            ws: super::lark_ws::WsHub::default(),
        }
    }

    /// The long-connection side: endpoint, socket, frames pushed and received.
    pub fn ws(&self) -> super::lark_ws::WsHub {
        self.ws.clone()
    }

    pub fn state(&self) -> MutexGuard<'_, LarkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Activity> {
        self.activity.subscribe()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/callback/ws/endpoint",
                axum::routing::post(super::lark_ws::endpoint),
            )
            .route("/ws/v2", axum::routing::get(super::lark_ws::connect))
            .fallback(handle)
            .with_state(self.clone())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        super::matching(&self.state().requests, method, path_prefix)
    }

    /// The cards refused so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.state().refusals.clone()
    }

    /// The sends and replies refused for a rate limit so far.
    pub fn rate_refusals(&self) -> Vec<RateRefusal> {
        self.state().rate_refusals.clone()
    }

    /// Tells the emulator which chat a person's message is in (Lark knows; the emulator only
    /// sees the bot's side), so that replies to it count for that chat.
    pub fn note_message(&self, message_id: &str, chat_id: &str) {
        self.state()
            .chat_of
            .insert(message_id.to_owned(), chat_id.to_owned());
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    pub fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    pub fn push_fault(&self, endpoint: Endpoint, status: u16, code: i64) {
        self.state()
            .faults
            .push_back((endpoint, status, code, None));
    }

    /// A rate-limit answer as the gateway sends it: HTTP 429, 99991400, and how many seconds
    /// to wait in `x-ogw-ratelimit-reset`.
    pub fn push_rate_limit(&self, endpoint: Endpoint, reset_secs: u64) {
        self.state()
            .faults
            .push_back((endpoint, 429, 99_991_400, Some(reset_secs)));
    }

    /// The replies sent to a message.
    pub fn replies_to(&self, message_id: &str) -> Vec<Message> {
        self.state()
            .messages
            .values()
            .filter(|m| m.reply_to.as_deref() == Some(message_id))
            .cloned()
            .collect()
    }

    pub fn message(&self, message_id: &str) -> Option<Message> {
        self.state().messages.get(message_id).cloned()
    }

    pub fn add_user(&self, user: User) {
        self.state().users.push(user);
    }

    /// Every token Lark handed out: tenant tokens (expired ones too) and the delayed-update
    /// tokens of clicks (used or not).
    pub fn issued_tokens(&self) -> Vec<String> {
        let s = self.state();
        let mut all = s.issued.clone();
        all.extend(s.card_tokens.keys().cloned());
        all.extend(s.card_token_uses.keys().cloned());
        all
    }

    /// Issues a fresh `c-…` delayed-update token for a click on `message_id`, as Lark does
    /// with every `card.action.trigger`.
    pub fn issue_card_token(&self, message_id: &str) -> String {
        let token = super::inbound::new_card_token();
        self.state()
            .card_tokens
            .insert(token.clone(), message_id.to_owned());
        token
    }

    /// Shows the card a bot answered a click with (`{"card": {"type": "raw", "data": …}}`) in
    /// place of the message's card, as the Lark client does; None for an unknown message or a
    /// card that breaks the card rules (recorded as a refusal, like a refused update).
    pub fn apply_callback_card(&self, message_id: &str, card: Value) -> Option<Message> {
        let message = {
            let mut s = self.state();
            let size = crate::cards::content_size(&card);
            if refuse_card(&mut s, Endpoint::CallbackAnswer, size, &card).is_some() {
                return None;
            }
            let m = s.messages.get_mut(message_id)?;
            m.card = card;
            m.updates += 1;
            m.clone()
        };
        let _ = self.activity.send(Activity::Updated {
            message: message.clone(),
        });
        Some(message)
    }
}

fn answer(status: u16, code: i64, msg: &str, extra: Value) -> Response {
    let mut body = json!({ "code": code, "msg": msg });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn endpoint_of(method: &Method, segments: &[&str]) -> Option<Endpoint> {
    match (method.as_str(), segments) {
        ("POST", ["open-apis", "auth", "v3", "tenant_access_token", "internal"]) => {
            Some(Endpoint::Token)
        }
        ("GET", ["open-apis", "bot", "v3", "info"]) => Some(Endpoint::BotInfo),
        ("POST", ["open-apis", "im", "v1", "messages", _, "reply"]) => Some(Endpoint::Reply),
        ("POST", ["open-apis", "im", "v1", "messages"]) => Some(Endpoint::Send),
        ("PATCH", ["open-apis", "im", "v1", "messages", _]) => Some(Endpoint::Patch),
        ("POST", ["open-apis", "interactive", "v1", "card", "update"]) => {
            Some(Endpoint::CardUpdate)
        }
        ("GET", ["open-apis", "contact", "v3", "users", _]) => Some(Endpoint::Contact),
        ("POST", ["open-apis", "im", "v2", "url_previews", "batch_update"]) => {
            Some(Endpoint::PreviewUpdate)
        }
        _ => None,
    }
}

/// Who a send goes to, for the per-chat limit: the chat, or the user (`open_id:…`), whose
/// 5 QPS are counted apart (§4.2).
fn receiver(query: &str, body: &Value) -> Option<String> {
    let kind = query
        .split('&')
        .find_map(|p| p.strip_prefix("receive_id_type="))?;
    let id = body.get("receive_id").and_then(Value::as_str)?;
    Some(match kind {
        "chat_id" => id.to_owned(),
        _ => format!("{kind}:{id}"),
    })
}

/// A rate-limit refusal as Lark sends it (§4.2, §4.3): the gateway's 99991400 with HTTP 429,
/// `x-ogw-ratelimit-limit` and `x-ogw-ratelimit-reset`; the IM limit's 230020 with HTTP 400.
fn rate_limited(code: i64, reset: Option<u64>) -> Response {
    if code == 230_020 {
        return answer(
            400,
            code,
            "The message frequency limit is triggered",
            json!({}),
        );
    }
    let mut response = answer(429, code, "request trigger frequency limit", json!({}));
    let headers = response.headers_mut();
    headers.insert("x-ogw-ratelimit-limit", APP_PER_SECOND.into());
    if let Some(reset) = reset {
        headers.insert("x-ogw-ratelimit-reset", reset.into());
    }
    response
}

/// A card body is a JSON string holding a Card JSON 2.0 object.
fn parse_card_content(body: &Value) -> Option<Value> {
    let content = body.get("content")?.as_str()?;
    let card: Value = serde_json::from_str(content).ok()?;
    (card.get("schema").and_then(Value::as_str) == Some("2.0")).then_some(card)
}

/// Lark's checks on a card it is asked to show (`protocol/lark.md` §4.3, §5.3): the request
/// body within 30 KB (230025), then the card by the component table (230099 with the
/// sub-code, path and message in `msg`). Both HTTP 400. A refusal is recorded.
fn refuse_card(
    s: &mut LarkState,
    endpoint: Endpoint,
    body_len: usize,
    card: &Value,
) -> Option<Response> {
    let error = card_rules::check_size(body_len)
        .and_then(|()| card_rules::check(card))
        .err()?;
    let msg = error.lark_msg();
    s.refusals.push(Refusal {
        endpoint,
        code: error.code(),
        msg: msg.clone(),
    });
    Some(answer(400, error.code(), &msg, json!({})))
}

async fn handle(
    State(emu): State<LarkEmulator>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let endpoint = endpoint_of(&method, &segments);
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delay = {
        let mut s = emu.state();
        s.requests.push(Recorded::new(
            method.as_str(),
            uri.to_string(),
            &headers,
            &body,
        ));
        match endpoint {
            Some(Endpoint::Contact) => s.contact_delay,
            _ => None,
        }
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let (response, activity) = {
        let mut s = emu.state();
        emu_answer(
            &mut s,
            endpoint,
            &segments,
            &query,
            &headers,
            (&json_body, body.len()),
        )
    };
    if let Some(a) = activity {
        let _ = emu.activity.send(a);
    }
    if endpoint == Some(Endpoint::PreviewUpdate) && response.status() == StatusCode::OK {
        // The clients of the listed viewers fetch the previews again (§10.4).
        let fetches = emu.state().previews.take_fetches();
        for (viewer, link) in fetches {
            let emu = emu.clone();
            tokio::spawn(async move {
                if let Err(e) = emu.fetch_preview(&viewer, &link).await {
                    tracing::warn!(error = %e, "an emulated client could not re-fetch a preview");
                }
            });
        }
    }
    response
}

fn emu_answer(
    s: &mut LarkState,
    endpoint: Option<Endpoint>,
    segments: &[&str],
    query: &str,
    headers: &HeaderMap,
    (body, body_len): (&Value, usize),
) -> (Response, Option<Activity>) {
    let Some(endpoint) = endpoint else {
        return (answer(404, 404, "not found", json!({})), None);
    };
    if let Some(i) = s.faults.iter().position(|(e, ..)| *e == endpoint)
        && let Some((_, status, code, reset)) = s.faults.remove(i)
    {
        let mut response = answer(status, code, "injected failure", json!({}));
        if let Some(reset) = reset {
            response
                .headers_mut()
                .insert("x-ogw-ratelimit-reset", reset.into());
        }
        return (response, None);
    }
    if endpoint == Endpoint::Token {
        if body.get("app_id").and_then(Value::as_str) != Some(s.app_id.as_str())
            || body.get("app_secret").and_then(Value::as_str) != Some(s.app_secret.as_str())
        {
            return (answer(400, 10014, "app secret invalid", json!({})), None);
        }
        let token = format!("t-emulated-{}", s.requests.len());
        s.tokens.push(token.clone());
        s.issued.push(token.clone());
        let extra = json!({"tenant_access_token": token, "expire": s.token_lifetime});
        return (answer(200, 0, "ok", extra), None);
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match auth {
        None => {
            return (
                answer(
                    400,
                    99_991_661,
                    "Missing access token for authorization",
                    json!({}),
                ),
                None,
            );
        }
        Some(t) if !s.tokens.iter().any(|v| v == t) => {
            return (
                answer(
                    400,
                    99_991_663,
                    "Invalid access token for authorization",
                    json!({}),
                ),
                None,
            );
        }
        Some(_) => {}
    }
    match endpoint {
        Endpoint::BotInfo => {
            let extra = json!({"bot": {"open_id": s.bot_open_id, "app_name": "abort-bot", "activate_status": 2, "ip_white_list": []}});
            (answer(200, 0, "ok", extra), None)
        }
        Endpoint::Reply | Endpoint::Send => {
            let chat = if endpoint == Endpoint::Reply {
                segments.get(4).and_then(|m| s.chat_of.get(*m)).cloned()
            } else {
                receiver(query, body)
            };
            if let Err((code, reset)) = s.sends.admit(chat.as_deref(), Instant::now()) {
                s.rate_refusals.push(RateRefusal {
                    endpoint,
                    code,
                    chat,
                });
                return (rate_limited(code, reset), None);
            }
            if body.get("msg_type").and_then(Value::as_str) != Some("interactive") {
                return (answer(400, 230_001, "invalid msg_type", json!({})), None);
            }
            let Some(card) = parse_card_content(body) else {
                return (
                    answer(400, 230_099, "card content could not be created", json!({})),
                    None,
                );
            };
            if let Some(refused) = refuse_card(s, endpoint, body_len, &card) {
                return (refused, None);
            }
            let uuid = body.get("uuid").and_then(Value::as_str).unwrap_or_default();
            if uuid.len() > 50 {
                return (answer(400, 230_001, "uuid longer than 50", json!({})), None);
            }
            if let Some(existing) = s.uuids.get(uuid).filter(|_| !uuid.is_empty()) {
                let extra = json!({"data": {"message_id": existing}});
                return (answer(200, 0, "success", extra), None);
            }
            let (reply_to, chat_id, in_thread) = if endpoint == Endpoint::Reply {
                let in_thread = match body.get("reply_in_thread") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return (
                            answer(400, 230_001, "reply_in_thread must be a bool", json!({})),
                            None,
                        );
                    }
                };
                (segments.get(4).map(|s| (*s).to_owned()), None, in_thread)
            } else {
                if !query.contains("receive_id_type=") {
                    return (
                        answer(400, 230_001, "receive_id_type is required", json!({})),
                        None,
                    );
                }
                let chat = body
                    .get("receive_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (None, chat, false)
            };
            s.next_id += 1;
            let message_id = format!("om_emulated_{:06}", s.next_id);
            if !uuid.is_empty() {
                s.uuids.insert(uuid.to_owned(), message_id.clone());
            }
            if let Some(chat) = &chat {
                s.chat_of.insert(message_id.clone(), chat.clone());
            }
            let message = Message {
                message_id: message_id.clone(),
                reply_to,
                chat_id,
                in_thread,
                card,
                updates: 0,
            };
            s.messages.insert(message_id.clone(), message.clone());
            let mut extra = json!({"data": {"message_id": message_id, "msg_type": "interactive"}});
            if let (Some(chat), Some(data)) = (&chat, extra["data"].as_object_mut()) {
                data.insert("chat_id".into(), json!(chat));
            }
            (
                answer(200, 0, "success", extra),
                Some(Activity::Sent { message }),
            )
        }
        Endpoint::Patch => {
            let id = segments.get(4).copied().unwrap_or_default();
            let Some(card) = parse_card_content(body) else {
                return (
                    answer(400, 230_099, "card content could not be created", json!({})),
                    None,
                );
            };
            if let Some(refused) = refuse_card(s, endpoint, body_len, &card) {
                return (refused, None);
            }
            let Some(m) = s.messages.get_mut(id) else {
                return (
                    answer(
                        400,
                        230_011,
                        "message not found or not sent by the bot",
                        json!({}),
                    ),
                    None,
                );
            };
            m.card = card;
            m.updates += 1;
            let message = m.clone();
            (
                answer(200, 0, "success", json!({})),
                Some(Activity::Updated { message }),
            )
        }
        Endpoint::CardUpdate => {
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some(card) = body.get("card").filter(|c| c.is_object()).cloned() else {
                return (answer(400, 230_099, "card is required", json!({})), None);
            };
            if let Some(refused) = refuse_card(s, endpoint, body_len, &card) {
                return (refused, None);
            }
            let Some(message_id) = s.card_tokens.get(&token).cloned() else {
                return (
                    answer(400, 10_002, "card token invalid or expired", json!({})),
                    None,
                );
            };
            let uses = s.card_token_uses.entry(token).or_insert(0);
            if *uses >= CARD_TOKEN_USES {
                return (answer(400, 10_002, "card token used up", json!({})), None);
            }
            *uses += 1;
            let Some(m) = s.messages.get_mut(&message_id) else {
                return (answer(400, 230_011, "message not found", json!({})), None);
            };
            m.card = card;
            m.updates += 1;
            let message = m.clone();
            (
                answer(200, 0, "success", json!({})),
                Some(Activity::Updated { message }),
            )
        }
        Endpoint::PreviewUpdate => match s.previews.admit(body) {
            Ok(()) => (answer(200, 0, "success", json!({"data": {}})), None),
            Err((status, code, msg)) => (answer(status, code, msg, json!({})), None),
        },
        Endpoint::Contact => {
            let open_id = segments.get(4).copied().unwrap_or_default();
            match s.users.iter().find(|u| u.open_id == open_id) {
                Some(u) => {
                    let extra = json!({"data": {"user": {"open_id": u.open_id, "union_id": u.union_id, "enterprise_email": u.email, "name": u.name}}});
                    (answer(200, 0, "success", extra), None)
                }
                None => (
                    answer(400, 41_050, "no user authority error", json!({})),
                    None,
                ),
            }
        }
        Endpoint::Token | Endpoint::CallbackAnswer => {
            (answer(404, 404, "not found", json!({})), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_takes_fifty_a_second_and_a_thousand_a_minute() {
        let mut log = SendLog::default();
        let t0 = Instant::now();
        for n in 0..50 {
            assert!(
                log.admit(Some(&format!("oc_{n}")), t0).is_ok(),
                "message {n}"
            );
        }
        assert_eq!(log.admit(Some("oc_other"), t0), Err((99_991_400, Some(1))));
        assert_eq!(
            log.admit(None, t0),
            Err((99_991_400, Some(1))),
            "chat unknown"
        );
        // A second later the next fifty go, until a thousand in the minute.
        let mut at = t0;
        for second in 1..20 {
            at = t0 + SECOND * second;
            for n in 0..50 {
                assert!(
                    log.admit(Some(&format!("oc_{n}")), at).is_ok(),
                    "{second}/{n}"
                );
            }
        }
        let refused = log.admit(Some("oc_late"), at + SECOND);
        assert_eq!(refused, Err((99_991_400, Some(41))), "1000 in the minute");
        assert!(
            log.admit(Some("oc_late"), t0 + MINUTE).is_ok(),
            "the first fifty left the minute"
        );
    }

    #[test]
    fn one_chat_takes_five_a_second() {
        let mut log = SendLog::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(log.admit(Some("oc_1"), t0).is_ok());
        }
        assert_eq!(log.admit(Some("oc_1"), t0), Err((230_020, None)));
        assert!(log.admit(Some("oc_2"), t0).is_ok(), "another chat");
        assert!(
            log.admit(Some("oc_1"), t0 + SECOND).is_ok(),
            "a second later"
        );
    }

    #[test]
    fn the_refusals_look_like_larks() {
        let gateway = rate_limited(99_991_400, Some(3));
        assert_eq!(gateway.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(gateway.headers()["x-ogw-ratelimit-reset"], "3");
        assert_eq!(gateway.headers()["x-ogw-ratelimit-limit"], "50");
        let im = rate_limited(230_020, None);
        assert_eq!(im.status(), StatusCode::BAD_REQUEST);
    }
}

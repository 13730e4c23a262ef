//! The page's JSON API. Messages and clicks are turned into exactly what Lark would send the
//! bot (encrypted, signed events to `/lark/events`), and what the bot answers a click with is
//! applied to the card as the Lark client applies it.
//!
//! - `GET /api/state`: users, chats, messages, items, request log, switches.
//! - `GET /api/events`: server-sent events, one JSON [`PageEvent`] each.
//! - `GET /api/items/{space}/{type}/{id}`: one work item, named as a card's link names it.
//! - `POST /api/messages` `{user, chat: "group"|"p2p", text}`.
//! - `POST /api/clicks` `{user, message_id, tag, name?, value, option?, input_value?, form_value?}`.
//! - `POST /api/switches` `{rate_limited?, slow_ms?}`; `POST /api/reset`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::hub::{Hub, ItemPage, PageEvent};
use super::people::{self, Person};
use super::{DELIVERY_TIMEOUT, MAX_ANSWER_BYTES};
use crate::clock::{Clock, SystemClock};
use crate::emulator::inbound::{
    ChatRef, Click, LarkApp, MentionRef, Sender, new_event_id, new_message_id,
};
use crate::emulator::lark::LarkEmulator;

/// The longest message the page may send (Lark allows more; nobody types this much).
const MAX_TEXT_CHARS: usize = 4000;
/// How a person writes the bot's mention on the page; Lark turns it into `@_user_1`.
const BOT_MENTION: &str = "@abort-bot";

#[derive(Clone)]
pub struct ApiState {
    hub: Hub,
    lark: LarkEmulator,
    app: LarkApp,
    events_url: String,
    http: reqwest::Client,
    /// Turns true when the sandbox stops, so open event streams end.
    stopping: watch::Receiver<bool>,
}

impl ApiState {
    pub fn new(
        hub: Hub,
        lark: LarkEmulator,
        app: LarkApp,
        bot_addr: SocketAddr,
        stopping: watch::Receiver<bool>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            hub,
            lark,
            app,
            events_url: format!("http://{bot_addr}/lark/events"),
            http: reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .no_proxy()
                .build()?,
            stopping,
        })
    }
}

/// What the API refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such user `{0}`; pick one of alice, bob, carol, dave")]
    UnknownUser(String),
    #[error("no bot message `{0}`")]
    UnknownMessage(String),
    #[error("the message is empty")]
    EmptyText,
    #[error("the message is longer than {MAX_TEXT_CHARS} characters")]
    TooLong,
    #[error("no work item {id} of type `{type_key}` in space `{space}`")]
    UnknownItem {
        space: String,
        type_key: String,
        id: String,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::UnknownMessage(_) | ApiError::UnknownItem { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/state", get(get_state))
        .route("/api/events", get(events))
        .route("/api/items/{space}/{type_key}/{id}", get(get_item))
        .route("/api/messages", post(post_message))
        .route("/api/clicks", post(post_click))
        .route("/api/switches", post(post_switches))
        .route("/api/reset", post(post_reset))
        .with_state(state)
}

/// Refuses requests whose `Host` is not a loopback name, so that a web page elsewhere cannot
/// reach the sandbox through a DNS name pointed at 127.0.0.1.
pub async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "the sandbox answers only to 127.0.0.1 or localhost",
        )
            .into_response()
    }
}

/// The page routes plus the API, behind the loopback Host check.
pub fn with_host_check(router: Router) -> Router {
    router.layer(middleware::from_fn(loopback_host_only))
}

fn person(key: &str) -> Result<&'static Person, ApiError> {
    people::person(key).ok_or_else(|| ApiError::UnknownUser(key.to_owned()))
}

fn now_ms() -> i64 {
    SystemClock.now_millis()
}

async fn get_state(State(s): State<ApiState>) -> Json<Value> {
    let users: Vec<Value> = people::PEOPLE
        .iter()
        .map(|p| json!({"key": p.key, "name": p.name, "open_id": p.open_id, "about": p.about, "p2p_chat": p.p2p_chat}))
        .collect();
    Json(json!({
        "bot": {"name": people::BOT_NAME, "open_id": people::BOT_OPEN_ID},
        "group": {"chat_id": people::GROUP_CHAT, "name": people::GROUP_NAME},
        "users": users,
        "messages": s.hub.chat(),
        "items": s.hub.items(),
        "log": s.hub.log(),
        "switches": s.hub.switches(),
    }))
}

async fn get_item(
    State(s): State<ApiState>,
    Path((space, type_key, id)): Path<(String, String, String)>,
) -> Result<Json<ItemPage>, ApiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| s.hub.item_page(&space, &type_key, n))
        .map(Json)
        .ok_or_else(|| ApiError::UnknownItem {
            space: shown(&space),
            type_key: shown(&type_key),
            id: shown(&id),
        })
}

/// A path segment as an error message repeats it: at most 64 characters.
fn shown(segment: &str) -> String {
    segment.chars().take(64).collect()
}

async fn events(State(s): State<ApiState>) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let stream = futures_util::stream::unfold(
        (s.hub.subscribe(), s.stopping.clone()),
        |(mut rx, mut stopping)| async move {
            let event = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => return None,
                next = rx.recv() => match next {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => PageEvent::Resync,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((Event::default().json_data(&event), (rx, stopping)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
pub struct PostMessage {
    pub user: String,
    /// `group` (default) or `p2p`.
    #[serde(default)]
    pub chat: Option<String>,
    pub text: String,
}

/// Replaces each `@abort-bot` (any case) with Lark's placeholder; true when there was one.
fn mention_bot(text: &str) -> (String, bool) {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut found = false;
    for (at, _) in lower.match_indices(BOT_MENTION) {
        out.push_str(&text[rest..at]);
        out.push_str("@_user_1");
        rest = at + BOT_MENTION.len();
        found = true;
    }
    out.push_str(&text[rest..]);
    (out, found)
}

async fn post_message(
    State(s): State<ApiState>,
    Json(req): Json<PostMessage>,
) -> Result<Json<Value>, ApiError> {
    let who = person(&req.user)?;
    let text = req.text.trim();
    if text.is_empty() {
        return Err(ApiError::EmptyText);
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::TooLong);
    }
    let group = req.chat.as_deref() != Some("p2p");
    let chat_id = people::chat_id(group, who);
    let message_id = new_message_id();
    let (wire_text, mentioned) = mention_bot(text);
    if group && !mentioned {
        let note = "Not sent to abort-bot: in a group, Lark delivers only messages that @mention the bot. Start with @abort-bot.";
        s.hub
            .user_message(&message_id, chat_id, who.key, text, Some(note.into()));
        return Ok(Json(
            json!({"message_id": message_id, "delivered": false, "note": note}),
        ));
    }
    s.hub
        .user_message(&message_id, chat_id, who.key, text, None);
    // Replies to it count for its chat's send limit, as in Lark.
    s.lark.note_message(&message_id, chat_id);
    let mentions = if mentioned {
        vec![MentionRef {
            key: "@_user_1".into(),
            open_id: people::BOT_OPEN_ID.into(),
            union_id: people::BOT_UNION_ID.into(),
            name: people::BOT_NAME.into(),
            mentioned_type: "bot".into(),
        }]
    } else {
        Vec::new()
    };
    let now = now_ms();
    let envelope = s.app.message_event(
        &new_event_id(),
        &message_id,
        Sender {
            open_id: who.open_id,
            union_id: who.union_id,
        },
        ChatRef {
            chat_id,
            chat_type: if group { "group" } else { "p2p" },
            thread_id: None,
        },
        &wire_text,
        &mentions,
        now,
    );
    let delivery = deliver(&s, &envelope, now).await;
    s.hub.inbound(
        "/lark/events",
        delivery.status,
        delivery.started,
        format!(
            "im.message.receive_v1 from {} (encrypted, signed)",
            who.name
        ),
    );
    Ok(Json(json!({
        "message_id": message_id,
        "delivered": delivery.status == 200,
        "status": delivery.status,
        "answer": delivery.answer,
    })))
}

/// What the bot answered a request from "Lark".
struct Delivery {
    /// 0 when it did not answer in time.
    status: u16,
    /// The answer body, if it was JSON.
    answer: Option<Value>,
    started: Instant,
}

async fn deliver(s: &ApiState, envelope: &Value, now_ms: i64) -> Delivery {
    let sealed = s.app.seal(envelope, now_ms.div_euclid(1000));
    let mut request = s
        .http
        .post(&s.events_url)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(sealed.body);
    for (name, value) in sealed.headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let (status, answer) = match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let answer = match resp.bytes().await {
                Ok(b) if b.len() <= MAX_ANSWER_BYTES => serde_json::from_slice(&b).ok(),
                _ => None,
            };
            (status, answer)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the bot did not answer the sandbox in time");
            (0, None)
        }
    };
    Delivery {
        status,
        answer,
        started,
    }
}

#[derive(Debug, Deserialize)]
pub struct PostClick {
    pub user: String,
    pub message_id: String,
    /// `button` (default), `select_static`, `input`, …
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The component's callback value, exactly as the card holds it.
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub option: Option<String>,
    #[serde(default)]
    pub input_value: Option<String>,
    #[serde(default)]
    pub form_value: Option<Value>,
}

/// A client-side error the Lark client shows when a callback goes wrong (codes from the
/// card-callback documentation).
fn client_error(code: u32, en: &str, zh: &str) -> Value {
    json!({"type": "error", "content": format!("{en} ({code})"),
           "i18n": {"en_us": format!("{en} ({code})"), "zh_cn": format!("{zh}（{code}）")}})
}

async fn post_click(
    State(s): State<ApiState>,
    Json(req): Json<PostClick>,
) -> Result<Json<Value>, ApiError> {
    let who = person(&req.user)?;
    if s.lark.message(&req.message_id).is_none() {
        return Err(ApiError::UnknownMessage(req.message_id));
    }
    let chat_id = s
        .hub
        .chat_of(&req.message_id)
        .unwrap_or_else(|| people::GROUP_CHAT.to_owned());
    let token = s.lark.issue_card_token(&req.message_id);
    let click = Click {
        value: req.value,
        tag: req.tag.unwrap_or_else(|| "button".into()),
        name: req.name,
        option: req.option,
        input_value: req.input_value,
        form_value: req.form_value,
    };
    let now = now_ms();
    let envelope = s.app.card_action_event(
        &new_event_id(),
        Sender {
            open_id: who.open_id,
            union_id: who.union_id,
        },
        &token,
        &req.message_id,
        &chat_id,
        &click,
        now,
    );
    let delivery = deliver(&s, &envelope, now).await;
    s.hub.inbound(
        "/lark/events",
        delivery.status,
        delivery.started,
        format!(
            "card.action.trigger: {} used a {} (encrypted, signed)",
            who.name, click.tag
        ),
    );
    let (toast, card_updated) = match (delivery.status, &delivery.answer) {
        (0, _) => (
            Some(client_error(
                200_341,
                "The bot did not answer within 3 s",
                "机器人未在 3 秒内响应",
            )),
            false,
        ),
        (200, Some(answer)) => apply_answer(&s, &req.message_id, answer),
        (200, None) => (
            Some(client_error(
                200_672,
                "The bot's answer is not valid",
                "机器人的响应格式错误",
            )),
            false,
        ),
        _ => (
            Some(client_error(
                200_671,
                "The bot refused the click",
                "机器人返回了错误",
            )),
            false,
        ),
    };
    Ok(Json(json!({
        "status": delivery.status,
        "toast": toast,
        "card_updated": card_updated,
        "answer": delivery.answer,
    })))
}

/// Applies `{toast, card}` as the Lark client does: a raw 2.0 card replaces the message's card.
fn apply_answer(s: &ApiState, message_id: &str, answer: &Value) -> (Option<Value>, bool) {
    let toast = answer.get("toast").filter(|t| t.is_object()).cloned();
    let Some(card) = answer.get("card").filter(|c| !c.is_null()) else {
        return (toast, false);
    };
    let data = card.get("data").filter(|d| d.is_object());
    match (card.get("type").and_then(Value::as_str), data) {
        (Some("raw"), Some(data)) if data.get("schema").and_then(Value::as_str) == Some("2.0") => {
            let applied = s
                .lark
                .apply_callback_card(message_id, data.clone())
                .is_some();
            (toast, applied)
        }
        (Some("raw"), Some(_)) => (
            Some(client_error(
                200_830,
                "A JSON 2.0 card can only be updated with a JSON 2.0 card",
                "JSON 2.0 卡片只能更新为 JSON 2.0 卡片",
            )),
            false,
        ),
        (Some("template"), _) => (
            Some(client_error(
                200_673,
                "Template cards are not emulated in the sandbox",
                "沙盒不支持模板卡片",
            )),
            false,
        ),
        _ => (
            Some(client_error(
                200_673,
                "The card in the bot's answer is not valid",
                "响应中的卡片无效",
            )),
            false,
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct PostSwitches {
    #[serde(default)]
    pub rate_limited: Option<bool>,
    #[serde(default)]
    pub slow_ms: Option<u64>,
}

/// The slowest answer the switch allows: past the bot's 10 s timeout it only shows retries.
const MAX_SLOW_MS: u64 = 15_000;

async fn post_switches(State(s): State<ApiState>, Json(req): Json<PostSwitches>) -> Json<Value> {
    let switches = s
        .hub
        .set_switches(req.rate_limited, req.slow_ms.map(|ms| ms.min(MAX_SLOW_MS)));
    Json(json!(switches))
}

async fn post_reset(State(s): State<ApiState>) -> Json<Value> {
    s.hub.reset();
    Json(json!({"reset": true}))
}

#[cfg(test)]
mod tests {
    use super::mention_bot;

    #[test]
    fn the_bot_mention_becomes_the_placeholder() {
        assert_eq!(
            mention_bot("@abort-bot /abort 1 repeat"),
            ("@_user_1 /abort 1 repeat".to_owned(), true)
        );
        assert_eq!(
            mention_bot("hi @Abort-Bot"),
            ("hi @_user_1".to_owned(), true)
        );
        assert_eq!(
            mention_bot("/abort 1 repeat"),
            ("/abort 1 repeat".to_owned(), false)
        );
        assert_eq!(
            mention_bot("终止 @abort-bot"),
            ("终止 @_user_1".to_owned(), true)
        );
    }
}

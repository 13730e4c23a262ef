//! `POST /lark/events` and `POST /lark/cards`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::lark::card_action::CardClick;
use crate::lark::envelope::Inbound;
use crate::lark::message::ReceivedMessage;
use crate::lark::verify::{Refusal, SignatureHeaders};
use crate::store::{Accepted, InboxItem};

pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let opened = state
        .verifier
        .open_event(&SignatureHeaders::from_headers(&headers), &body);
    respond(&state, "events", opened).await
}

pub async fn cards(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let opened = state
        .verifier
        .open_card(&SignatureHeaders::from_headers(&headers), &body);
    respond(&state, "cards", opened).await
}

fn refuse(state: &AppState, route: &'static str, refusal: &Refusal) -> Response {
    state.metrics.inbound(route, "refused");
    tracing::warn!(route, reason = %refusal, "refused a request");
    (
        refusal.status(),
        Json(json!({ "msg": refusal.to_string() })),
    )
        .into_response()
}

fn store_failed(state: &AppState, route: &'static str, e: &dyn std::fmt::Display) -> Response {
    // Not acknowledged: Lark will deliver it again.
    state.metrics.inbound(route, "store_error");
    tracing::error!(route, error = %e, "could not store an event; asking Lark to retry");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "msg": "temporarily unavailable" })),
    )
        .into_response()
}

fn success() -> Response {
    Json(json!({ "msg": "success" })).into_response()
}

async fn respond(
    state: &AppState,
    route: &'static str,
    opened: Result<Inbound, Refusal>,
) -> Response {
    let inbound = match opened {
        Ok(i) => i,
        Err(r) => return refuse(state, route, &r),
    };
    match inbound {
        Inbound::Challenge { challenge } => {
            state.metrics.inbound(route, "challenge");
            Json(json!({ "challenge": challenge })).into_response()
        }
        Inbound::Event(env) if env.event_type == "im.message.receive_v1" => {
            let msg = match ReceivedMessage::from_event(&env.body) {
                Ok(m) => m,
                Err(e) => return malformed(state, route, &e),
            };
            let payload = env.body.to_string();
            let accepted = state
                .store
                .accept_message(
                    env.event_id,
                    msg.message_id,
                    payload.clone(),
                    state.clock.now_secs(),
                )
                .await;
            match accepted {
                Ok(Accepted::New(id)) => {
                    state.metrics.inbound(route, "accepted");
                    let _ = state.queue.send(InboxItem {
                        id,
                        kind: "message".into(),
                        payload,
                        attempts: 0,
                    });
                    success()
                }
                Ok(Accepted::DuplicateEvent | Accepted::DuplicateMessage) => {
                    state.metrics.inbound(route, "duplicate");
                    success()
                }
                Err(e) => store_failed(state, route, &e),
            }
        }
        Inbound::Event(env) => {
            // Other subscriptions (bot added to a chat, …) need no action.
            state.metrics.inbound(route, "ignored");
            tracing::debug!(event_type = %env.event_type, "ignoring an event type the bot does not act on");
            success()
        }
        Inbound::CardAction(env) => match CardClick::from_v2(&env) {
            Ok(click) => click_answer(state, route, &click).await,
            Err(e) => malformed(state, route, &e),
        },
        Inbound::LegacyCardAction(body) => match CardClick::from_legacy(&body) {
            Ok(click) => click_answer(state, route, &click).await,
            Err(e) => malformed(state, route, &e),
        },
    }
}

fn malformed(state: &AppState, route: &'static str, e: &dyn std::fmt::Display) -> Response {
    state.metrics.inbound(route, "refused");
    tracing::warn!(error = %e, "refused a malformed request");
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "msg": e.to_string() })),
    )
        .into_response()
}

/// A click is stored under its dedup key before anything acts on it, then answered inline.
async fn click_answer(state: &AppState, route: &'static str, click: &CardClick) -> Response {
    match state
        .store
        .mark_seen(click.click_id.clone(), state.clock.now_secs())
        .await
    {
        Ok(first) => {
            state
                .metrics
                .inbound(route, if first { "card_action" } else { "duplicate" });
            let answer = state.interact.handle(click).await;
            Json(answer.to_body(click.form)).into_response()
        }
        Err(e) => store_failed(state, route, &e),
    }
}

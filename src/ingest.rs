//! What happens to a verified delivery from Lark, whichever transport brought it (the
//! webhook routes or the long connection): store it durably under its dedup keys and wake
//! the worker (the store is the queue), or answer a card click inline. Each transport only maps the [`Ingested`] outcome to
//! its own reply (an HTTP response, an ack frame), so both behave the same by construction.

use serde_json::{Value, json};
use tracing::Instrument;

use crate::lark::card_action::CardClick;
use crate::lark::envelope::Inbound;
use crate::lark::message::ReceivedMessage;
use crate::lark::url_preview::{self, PreviewRequest};
use crate::lark::verify::Refusal;
use crate::lark::ws::EventHandler;
use crate::lark::ws::frame::Ack;
use crate::routes::AppState;
use crate::store::Accepted;

/// The outcome of one delivery; metrics and logs are already done.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// `url_verification`: echo the challenge.
    Challenge(String),
    /// Stored durably and queued, or already stored (a redelivery), or nothing to do.
    Acknowledged,
    /// A card click's answer body (toast and/or card).
    Answer(Value),
    /// Failed verification: nothing stored, the event_id stays unseen.
    Refused(Refusal),
    /// Verified but not the shape it should be.
    Malformed(String),
    /// Not stored: the sender must deliver it again.
    StoreFailed,
}

/// Stores and dedups one delivery (waking the worker), or answers it (challenge, card click).
pub async fn ingest(
    state: &AppState,
    route: &'static str,
    opened: Result<Inbound, Refusal>,
) -> Ingested {
    let inbound = match opened {
        Ok(i) => i,
        Err(r) => {
            state.metrics.inbound(route, "refused");
            tracing::warn!(route, reason = %r, "refused a request");
            return Ingested::Refused(r);
        }
    };
    match inbound {
        Inbound::Challenge { challenge } => {
            state.metrics.inbound(route, "challenge");
            Ingested::Challenge(challenge)
        }
        Inbound::Event(env) if env.event_type == "im.message.receive_v1" => {
            let msg = match ReceivedMessage::from_event(&env.body) {
                Ok(m) => m,
                Err(e) => return malformed(state, route, &e),
            };
            // What the worker needs, typed and compact; not the whole envelope.
            let payload = match serde_json::to_string(&msg) {
                Ok(p) => p,
                Err(e) => return malformed(state, route, &e),
            };
            let now = state.clock.now_secs();
            let accepted = state
                .store
                .accept_message(env.event_id, msg.message_id.clone(), payload, now)
                .instrument(event_span(&msg))
                .await;
            match accepted {
                Ok(Accepted::New(_)) => {
                    state.metrics.inbound(route, "accepted");
                    state.queue.wake();
                    Ingested::Acknowledged
                }
                Ok(Accepted::DuplicateEvent | Accepted::DuplicateMessage) => {
                    state.metrics.inbound(route, "duplicate");
                    Ingested::Acknowledged
                }
                Err(e) => store_failed(state, route, &e),
            }
        }
        Inbound::Event(env) if env.event_type == url_preview::EVENT_TYPE => {
            match PreviewRequest::from_event(&env) {
                Ok(req) => {
                    // Changes nothing: a redelivery is answered again, the same way.
                    state.metrics.inbound(route, "url_preview");
                    Ingested::Answer(state.previews.handle(&req).await.to_body())
                }
                Err(e) => malformed(state, route, &e),
            }
        }
        Inbound::Event(env) => {
            // Other subscriptions (bot added to a chat, …) need no action.
            state.metrics.inbound(route, "ignored");
            tracing::debug!(event_type = %env.event_type, "ignoring an event type the bot does not act on");
            Ingested::Acknowledged
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

/// The span of one message event, from its arrival to its answer's delivery: the worker and
/// the outbox open one with the same fields. `items` is filled in once the command is read.
pub fn event_span(msg: &ReceivedMessage) -> tracing::Span {
    tracing::info_span!(
        "event",
        event_id = %msg.event_id,
        message_id = %msg.message_id,
        chat = %msg.chat_id,
        actor = msg.sender.open_id.as_deref().unwrap_or_default(),
        items = tracing::field::Empty,
    )
}

/// The span of one card click (its dedup key as `event_id`); `items` is filled in once the
/// button's value is verified. The click's card token is never a field.
fn click_span(click: &CardClick) -> tracing::Span {
    tracing::info_span!(
        "click",
        event_id = %click.click_id,
        message_id = click.open_message_id.as_deref().unwrap_or_default(),
        chat = click.open_chat_id.as_deref().unwrap_or_default(),
        actor = click.operator.open_id.as_deref().unwrap_or_default(),
        items = tracing::field::Empty,
    )
}

fn store_failed(state: &AppState, route: &'static str, e: &dyn std::fmt::Display) -> Ingested {
    state.metrics.inbound(route, "store_error");
    tracing::error!(route, error = %e, "could not store an event; asking Lark to retry");
    Ingested::StoreFailed
}

fn malformed(state: &AppState, route: &'static str, e: &dyn std::fmt::Display) -> Ingested {
    state.metrics.inbound(route, "refused");
    tracing::warn!(error = %e, "refused a malformed request");
    Ingested::Malformed(e.to_string())
}

/// A click is stored under its dedup key before anything acts on it, then answered inline.
async fn click_answer(state: &AppState, route: &'static str, click: &CardClick) -> Ingested {
    match state
        .store
        .mark_seen(click.click_id.clone(), state.clock.now_secs())
        .await
    {
        Ok(first) => {
            state
                .metrics
                .inbound(route, if first { "card_action" } else { "duplicate" });
            let answer = state
                .interact
                .handle(click)
                .instrument(click_span(click))
                .await;
            Ingested::Answer(answer.to_body(click.form))
        }
        Err(e) => store_failed(state, route, &e),
    }
}

/// The long connection's handler: the same path as the webhook, acked with `{"code":200}`
/// (a click's answer as `data`), or `{"code":500}` so Lark pushes it again. The token rule
/// differs per transport: here `header.token` is never compared (real payloads carry `""`,
/// `protocol/lark-websocket.md` §6.5), over HTTP it must match. A payload that cannot be
/// read is acked 500, like the webhook's 4xx: nothing was stored, so a correct push still works.
impl EventHandler for AppState {
    async fn handle(&self, payload: Vec<u8>) -> Ack {
        let opened = self.verifier.open_plain(&payload);
        match ingest(self, "ws", opened).await {
            Ingested::Acknowledged => Ack::ok(),
            Ingested::Answer(body) => Ack::with_data(body.to_string().as_bytes()),
            Ingested::Challenge(c) => {
                Ack::with_data(json!({ "challenge": c }).to_string().as_bytes())
            }
            Ingested::Refused(_) | Ingested::Malformed(_) | Ingested::StoreFailed => Ack::failed(),
        }
    }
}

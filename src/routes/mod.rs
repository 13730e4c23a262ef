//! The HTTP edge. Handlers verify, store durably and acknowledge; messages are worked on later
//! by the [`crate::worker`], card clicks inline by [`crate::interact`] (Lark waits for their
//! answer). Nothing that fails verification reaches the store.

mod events;
mod health;
mod listener;

pub use listener::{ListenerLimits, READ_TIMEOUT, serve};

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::interact::Interact;
use crate::lark::verify::Verifier;
use crate::lark::ws::client::LinkStatus;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::Queue;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

/// Lark bodies are small; reading stops at this size and the request is refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub verifier: Arc<Verifier>,
    pub store: Store,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// Answers card clicks, inline and within Lark's 3 s.
    pub interact: Arc<Interact>,
    /// Answers link previews, inline and within Lark's 3 s.
    pub previews: Arc<crate::preview::Previews>,
    /// The long connection's state, in `websocket` mode (for `/readyz`).
    pub link: Option<LinkStatus>,
}

/// The bot's routes, as the contract names them. In `websocket` mode the webhook routes do
/// not exist (404): the only way in is the connection the bot opened itself. Every request's
/// body must arrive within `body_timeout`.
pub fn router(state: AppState, body_timeout: Duration) -> Router {
    let deadline = listener::BodyDeadline {
        timeout: body_timeout,
        metrics: state.metrics.clone(),
    };
    let webhook = Router::new()
        .route("/lark/events", post(events::events))
        .route("/lark/cards", post(events::cards));
    let routes = if state.link.is_some() {
        Router::new()
    } else {
        webhook
    };
    routes
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(axum::middleware::from_fn_with_state(
            deadline,
            listener::body_deadline,
        ))
        .with_state(state)
}

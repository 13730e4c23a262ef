//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use crate::lark::ws::client::LinkState;

/// The process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store answers and, in `websocket` mode, the long connection is open: without it no
/// event arrives (configuration was validated before the server started).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.link.as_ref().map(|l| l.get()) {
        Some(LinkState::Connecting) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "long connection not open");
        }
        Some(LinkState::Stopped) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "long connection stopped");
        }
        Some(LinkState::Open) | None => {}
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

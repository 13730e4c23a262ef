//! `POST /lark/events` and `POST /lark/cards`: verify, then [`ingest`] (shared with the long
//! connection) and turn its outcome into the HTTP answer Lark expects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::ingest::{Ingested, ingest};
use crate::lark::verify::SignatureHeaders;

pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let opened = state
        .verifier
        .open_event(&SignatureHeaders::from_headers(&headers), &body);
    respond(ingest(&state, "events", opened).await)
}

pub async fn cards(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let opened = state
        .verifier
        .open_card(&SignatureHeaders::from_headers(&headers), &body);
    respond(ingest(&state, "cards", opened).await)
}

fn respond(ingested: Ingested) -> Response {
    match ingested {
        Ingested::Challenge(challenge) => Json(json!({ "challenge": challenge })).into_response(),
        Ingested::Acknowledged => Json(json!({ "msg": "success" })).into_response(),
        Ingested::Answer(body) => Json(body).into_response(),
        Ingested::Refused(refusal) => (
            refusal.status(),
            Json(json!({ "msg": refusal.to_string() })),
        )
            .into_response(),
        Ingested::Malformed(msg) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "msg": msg }))).into_response()
        }
        // Not acknowledged: Lark will deliver it again.
        Ingested::StoreFailed => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "msg": "temporarily unavailable" })),
        )
            .into_response(),
    }
}

//! In-process emulations of the Lark Open Platform and Feishu Project OpenAPI, strict about
//! what they accept (tokens, headers, bodies) and faithful about how they fail (the real error
//! codes and statuses). The sandbox runs the bot against them; the tests do too, and read the
//! requests they recorded.

pub mod card_rules;
pub mod inbound;
pub mod lark;
pub mod lark_preview;
pub mod lark_ws;
pub mod project;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;

/// One request as an emulator received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or Null.
    pub body: Value,
    /// When it arrived, for checking pacing and retry delays as the server sees them.
    #[serde(skip)]
    pub received_at: Instant,
}

impl Recorded {
    pub fn new(method: &str, path: String, headers: &HeaderMap, body: &[u8]) -> Self {
        Self {
            method: method.to_owned(),
            path,
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            received_at: Instant::now(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The recorded requests with this method whose path starts with `path_prefix`.
pub fn matching(requests: &[Recorded], method: &str, path_prefix: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(path_prefix))
        .cloned()
        .collect()
}

/// Serves a router on an ephemeral loopback port.
pub async fn serve_on_loopback(router: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "emulator stopped");
        }
    });
    Ok(addr)
}

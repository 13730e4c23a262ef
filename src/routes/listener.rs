//! The HTTP listener: hyper's HTTP/1 server over an accept loop that holds at most
//! `ABORT_BOT_MAX_CONNECTIONS` connections, closes one that sends no complete request headers
//! in time (hyper's `header_read_timeout`) and answers 408 and closes one whose body does not
//! arrive in time ([`body_deadline`]). Every refusal is counted and logged, rate-limited, by
//! [`Metrics::http_refused`].
//!
//! A connection over the cap is accepted and closed at once rather than left waiting in the
//! kernel's queue: a load balancer or client then sees the refusal immediately and can try
//! another replica, instead of holding a connection open until its own timeout while the bot
//! is saturated (and a health probe fails fast instead of hanging).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::MAX_BODY_BYTES;
use crate::metrics::{HttpRefusal, Metrics};

/// The contract's default for both read timeouts.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed `accept` (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How the listener bounds its connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// From accepting (or the previous response) to complete request headers.
    pub header_timeout: Duration,
    /// From complete headers to the complete body.
    pub body_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// What [`body_deadline`] needs.
#[derive(Clone)]
pub(super) struct BodyDeadline {
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Reads the whole request body (at most [`MAX_BODY_BYTES`]) within the body timeout before
/// the handler runs. Too slow: 408 and the connection closes, the handler never runs. Too
/// large: 413.
pub(super) async fn body_deadline(
    State(deadline): State<BodyDeadline>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read =
        tokio::time::timeout(deadline.timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
            } else {
                close_with(StatusCode::BAD_REQUEST, "request body could not be read")
            }
        }
        Err(_) => {
            deadline.metrics.http_refused(HttpRefusal::BodyTimeout);
            close_with(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )
        }
    }
}

/// An answer after which hyper closes the connection.
fn close_with(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONNECTION, "close")], text).into_response()
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets every
/// connection finish its request in flight (idle ones close at once) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(max as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    metrics.http_refused(HttpRefusal::AcceptFailed);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.http_refused(HttpRefusal::OverCapacity);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Requests served on this connection: a header timeout after one is an idle
        // keep-alive connection closing, not a refusal.
        let served = Arc::new(AtomicU64::new(0));
        let counted = served.clone();
        let service = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |request| {
            counted.fetch_add(1, Ordering::Relaxed);
            hyper::service::Service::call(&service, request)
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_rx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            match result {
                Err(e) if e.is_timeout() && served.load(Ordering::Relaxed) == 0 => {
                    metrics.http_refused(HttpRefusal::HeaderTimeout);
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit: all of them back means all connections are done.
    let _ = permits.acquire_many(max).await;
}

/// Resolves once `stop` turns true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|s| *s).await;
}

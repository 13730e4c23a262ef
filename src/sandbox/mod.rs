//! `abort-bot sandbox`: the real bot (the same [`App`] as `serve`), an emulated Lark and an
//! emulated Feishu Project on loopback ports, and a web chat page that talks to the bot the
//! way Lark does. Needs no credentials: the sandbox app's keys are fixed and reach nothing real.
//!
//! - [`people`]: the users, chats and the fixed sandbox credentials.
//! - [`hub`]: what the page shows (chat, request log, items, switches), pushed live.
//! - [`api`]: the page's JSON API: messages and clicks in, state and events out.
//! - [`page`]: the static pages (plain HTML/CSS/JS, compiled into the binary): the chat, and
//!   each work item's own page, where the links in the bot's cards lead.

pub mod api;
pub mod hub;
pub mod page;
pub mod people;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, Overrides, StartError};
use crate::config::{Settings, Sources};
use crate::emulator::inbound::LarkApp;
use crate::emulator::lark::{LarkEmulator, User as LarkUser};
use crate::emulator::project::ProjectEmulator;
use crate::emulator::serve_on_loopback;

use hub::{Asked, Hub, Platform};

/// Where the page listens unless `ABORT_BOT_LISTEN` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

/// What can stop the sandbox from starting.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the sandbox listens on loopback only, and {0} is not a loopback address (try 127.0.0.1:3000)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot start an emulator on loopback: {0}")]
    Emulator(#[source] std::io::Error),
    #[error("the sandbox configuration is invalid: {0}")]
    Settings(String),
    #[error("cannot start the bot: {0}")]
    Bot(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A started sandbox: every server is bound; nothing is served until [`Sandbox::run_until_stopped`].
pub struct Sandbox {
    app: App,
    page: TcpListener,
    page_addr: SocketAddr,
    bot_addr: SocketAddr,
    lark: LarkEmulator,
    project: ProjectEmulator,
    hub: Hub,
    lark_app: LarkApp,
}

impl Sandbox {
    /// Starts the emulators (seeded), builds the bot against them and binds the page on
    /// `listen`, which must be a loopback address (port 0 picks one).
    pub async fn start(listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        if !listen.ip().is_loopback() {
            return Err(SandboxError::NotLoopback(listen));
        }
        let lark = LarkEmulator::new(people::APP_ID, people::APP_SECRET, people::BOT_OPEN_ID);
        for p in people::PEOPLE {
            lark.add_user(LarkUser {
                open_id: p.open_id.into(),
                union_id: p.union_id.into(),
                email: p.email.into(),
                name: p.name.into(),
            });
        }
        let project = ProjectEmulator::new(people::PLUGIN_ID, people::PLUGIN_SECRET);
        project.seed_demo();
        let hub = Hub::new(project.clone());
        let lark_addr = serve_on_loopback(watched(lark.router(), hub.clone(), Platform::Lark))
            .await
            .map_err(SandboxError::Emulator)?;
        let project_addr =
            serve_on_loopback(watched(project.router(), hub.clone(), Platform::Project))
                .await
                .map_err(SandboxError::Emulator)?;

        // The page is bound first so that the bot's links point at it: cards link to the
        // sandbox's own view of an item (`/<space>/<type>/detail/<id>`, the shape of a real
        // Feishu Project link), never to the real project.feishu.cn.
        let page = TcpListener::bind(listen)
            .await
            .map_err(|source| SandboxError::Listen {
                addr: listen,
                source,
            })?;
        let page_addr = page.local_addr().map_err(|source| SandboxError::Listen {
            addr: listen,
            source,
        })?;

        let mut src = Sources::default();
        src.set("LARK_APP_ID", people::APP_ID)
            .set("LARK_APP_SECRET", people::APP_SECRET)
            .set("LARK_VERIFICATION_TOKEN", people::VERIFICATION_TOKEN)
            .set("LARK_ENCRYPT_KEY", people::ENCRYPT_KEY)
            .set("LARK_BASE_URL", format!("http://{lark_addr}"))
            .set("FEISHU_PROJECT_PLUGIN_ID", people::PLUGIN_ID)
            .set("FEISHU_PROJECT_PLUGIN_SECRET", people::PLUGIN_SECRET)
            .set("FEISHU_PROJECT_BASE_URL", format!("http://{project_addr}"))
            .set("FEISHU_PROJECT_WEB_URL", format!("http://{page_addr}"))
            .set("ABORT_BOT_DEFAULT_PROJECT", "doc")
            .set("ABORT_BOT_LISTEN", "127.0.0.1:0")
            .set("ABORT_BOT_STORE", "sqlite::memory:");
        let settings = Settings::from_sources(&src).map_err(|e| {
            SandboxError::Settings(
                e.problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let tap_hub = hub.clone();
        let overrides = Overrides {
            tap: Some(Arc::new(move |call| tap_hub.upstream_call(call))),
            ..Overrides::default()
        };
        let app = App::build(&settings, overrides).await?;
        let bot_addr = app.local_addr().map_err(|source| SandboxError::Listen {
            addr: settings.listen,
            source,
        })?;
        Ok(Sandbox {
            app,
            page,
            page_addr,
            bot_addr,
            lark,
            project,
            hub,
            lark_app: LarkApp {
                app_id: people::APP_ID.into(),
                verification_token: people::VERIFICATION_TOKEN.into(),
                encrypt_key: Some(people::ENCRYPT_KEY.into()),
                tenant_key: people::TENANT_KEY.into(),
            },
        })
    }

    /// The page's address, e.g. `http://127.0.0.1:3000/`.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.page_addr)
    }

    pub fn page_addr(&self) -> SocketAddr {
        self.page_addr
    }

    /// Where the bot itself listens (its `/lark/events`).
    pub fn bot_addr(&self) -> SocketAddr {
        self.bot_addr
    }

    pub fn lark(&self) -> LarkEmulator {
        self.lark.clone()
    }

    pub fn project(&self) -> ProjectEmulator {
        self.project.clone()
    }

    /// Serves the page and runs the bot until `shutdown` completes; then open event streams
    /// end, the page stops, and the bot drains like `serve` does.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let trigger = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let watcher = tokio::spawn(watch_lark(
            self.lark.clone(),
            self.hub.clone(),
            stopped(stop_rx.clone()),
        ));
        let bot = tokio::spawn(self.app.run_until_stopped(stopped(stop_rx.clone())));
        let state = api::ApiState::new(
            self.hub.clone(),
            self.lark.clone(),
            self.lark_app.clone(),
            self.bot_addr,
            stop_rx.clone(),
        )
        .map_err(std::io::Error::other)?;
        let router = api::with_host_check(page::router().merge(api::router(state)));
        let served = axum::serve(self.page, router)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .await;
        trigger.abort();
        let _ = watcher.await;
        match bot.await {
            Ok(result) => result?,
            Err(_) => tracing::error!("the bot stopped abnormally"),
        }
        served
    }
}

/// Follows what the emulated Lark does with bot messages until told to stop.
async fn watch_lark(lark: LarkEmulator, hub: Hub, stop: impl Future<Output = ()>) {
    let mut activity = lark.subscribe();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            next = activity.recv() => match next {
                Ok(a) => hub.bot_activity(&a),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Catch up from the emulator's own record.
                    let messages: Vec<_> = lark.state().messages.values().cloned().collect();
                    for message in messages {
                        hub.bot_activity(&crate::emulator::lark::Activity::Updated { message });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Largest emulator answer read back for its code; they are small JSON documents.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Largest request body read to tell an abort from a restore; the emulator's own limit
/// (axum's default for its `Bytes` extractor).
const MAX_ASKED_BYTES: usize = 2 * 1024 * 1024;

/// Wraps an emulator so that the code of each answer (`code` for Lark, `err_code` for
/// Feishu Project) reaches the request log, and so does what a Feishu Project
/// `PUT …/abort` asked for: it aborts or restores, as its body says.
fn watched(router: Router, hub: Hub, platform: Platform) -> Router {
    router.layer(middleware::from_fn_with_state(
        (hub, platform),
        record_answer_code,
    ))
}

async fn record_answer_code(
    State((hub, platform)): State<(Hub, Platform)>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let request = if platform == Platform::Project && method == "PUT" && path.ends_with("/abort") {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_ASKED_BYTES).await else {
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        };
        if let Some(asked) = Asked::of_abort_body(&bytes) {
            hub.emulator_asked(platform, &method, &path, asked);
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let code = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        v.get("err_code")
            .or_else(|| v.get("code"))
            .or_else(|| v.pointer("/error/code"))
            .and_then(Value::as_i64)
    });
    if let Some(code) = code {
        hub.emulator_answered(platform, &method, &path, code);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// How long the sandbox waits for the bot to take a message (Lark's own limit is 3 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

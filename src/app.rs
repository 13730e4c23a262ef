//! Start-up and shutdown: builds the clients, store, worker and routes from [`Settings`],
//! binds the listener (port 0 in tests), and runs until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::card_value::Signer;
use crate::chat::Chat;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Mode, Settings, StoreUrl};
use crate::interact::{DEFAULT_BUDGET, Interact};
use crate::lark::client::{LarkClient, LarkClientConfig};
use crate::lark::verify::Verifier;
use crate::lark::ws::SessionLimits;
use crate::lark::ws::client::{LinkStatus, LongConnection};
use crate::limits::Limits;
use crate::metrics::{Metrics, Tap};
use crate::outbox::{Outbox, Schedule, Sender};
use crate::preview::{CHANGE_QUEUE, DEFAULT_BUDGET as PREVIEW_BUDGET, Previews};
use crate::project::client::{ProjectClient, ProjectClientConfig};
use crate::retry::RetryPolicy;
use crate::routes::{AppState, ListenerLimits, READ_TIMEOUT, router, serve};
use crate::service::{Changes, Service};
use crate::store::{Store, StoreError};
use crate::worker::{DRAIN, LEASE, POLL, Queue, RETRY_PAUSE_MAX, STATS_EVERY, Worker};

/// What start-up can fail on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Things tests and the sandbox swap out.
pub struct Overrides {
    pub clock: SharedClock,
    pub retry: RetryPolicy,
    pub upstream_timeout: Duration,
    pub tap: Option<Tap>,
    /// How often the worker reads the inbox for work nobody woke it for.
    pub inbox_poll: Duration,
    /// How long the worker's claim on an event lasts before another process may take it.
    pub inbox_lease: Duration,
    /// How long shutdown lets running events finish before handing them back.
    pub inbox_drain: Duration,
    /// How often the inbox gauges are read from the store.
    pub inbox_stats_every: Duration,
    /// The longest pause before an event that failed in a way that can pass is tried again.
    pub inbox_retry_max: Duration,
    /// How long the listener waits for a request's headers, then for its body.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How often the outbox is read for deliveries that became due.
    pub outbox_poll: Duration,
    /// The outbox's pause after a first failed try (it doubles after each one).
    pub outbox_first_pause: Duration,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            upstream_timeout: Duration::from_secs(10),
            tap: None,
            inbox_poll: POLL,
            inbox_lease: LEASE,
            inbox_drain: DRAIN,
            inbox_stats_every: STATS_EVERY,
            inbox_retry_max: RETRY_PAUSE_MAX,
            header_timeout: READ_TIMEOUT,
            body_timeout: READ_TIMEOUT,
            outbox_poll: Duration::from_secs(1),
            outbox_first_pause: crate::outbox::FIRST_PAUSE,
        }
    }
}

/// The clients, built from settings; `check` uses them without starting a server.
pub struct Clients {
    pub lark: Arc<LarkClient>,
    pub project: Arc<ProjectClient>,
    pub metrics: Arc<Metrics>,
}

impl Clients {
    pub fn build(settings: &Settings, o: &Overrides) -> Result<Clients, reqwest::Error> {
        let metrics = Arc::new(Metrics::new(o.tap.clone()));
        let lark = Arc::new(LarkClient::new(LarkClientConfig {
            base_url: settings.lark.base_url.clone(),
            app_id: settings.lark.app_id.clone(),
            app_secret: settings.lark.app_secret.clone(),
            retry: o.retry,
            timeout: o.upstream_timeout,
            clock: o.clock.clone(),
            metrics: metrics.clone(),
        })?);
        let project = Arc::new(ProjectClient::new(ProjectClientConfig {
            base_url: settings.project.base_url.clone(),
            plugin_id: settings.project.plugin_id.clone(),
            plugin_secret: settings.project.plugin_secret.clone(),
            retry: o.retry,
            timeout: o.upstream_timeout,
            clock: o.clock.clone(),
            metrics: metrics.clone(),
        })?);
        Ok(Clients {
            lark,
            project,
            metrics,
        })
    }
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    worker: Worker,
    sender: Sender,
    /// The long connection, in `websocket` mode.
    ws: Option<LongConnection<AppState>>,
    limits: ListenerLimits,
}

impl App {
    /// Opens the store, builds everything and binds the listen address.
    pub async fn build(settings: &Settings, o: Overrides) -> Result<App, StartError> {
        let store = match &settings.store {
            StoreUrl::Sqlite(path) => Store::open(path)?,
            StoreUrl::Memory => Store::in_memory()?,
            StoreUrl::Redis(url) => {
                Store::open_redis_waiting(url, settings.dedup_retention, settings.redis_wait)
                    .await?
            }
        };
        for warning in store.warnings().await {
            tracing::warn!("{warning}");
        }
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let clients = Clients::build(settings, &o)?;
        let lark = clients.lark.clone();
        let (changes_tx, changes_rx) = mpsc::channel(CHANGE_QUEUE);
        let service = Arc::new(Service {
            project: clients.project,
            lark: clients.lark,
            store: store.clone(),
            default_project: settings.default_project.clone(),
            web_url: settings.project.web_url.clone(),
            clock: o.clock.clone(),
            metrics: clients.metrics.clone(),
            limits: Limits::new(settings.max_items, settings.user_rate, o.clock.clone()),
            changes: Changes::new(changes_tx),
        });
        let signer = Arc::new(Signer::new(settings.card_secret.clone()));
        let previews = Previews::start(service.clone(), signer.clone(), PREVIEW_BUDGET, changes_rx);
        let outbox = Outbox::new(store.clone(), o.clock.clone());
        // What a crash left pending stays in the store: the worker claims it a page at a
        // time, like anything else.
        let queue = Queue::new(o.inbox_lease);
        let interact = Arc::new(Interact {
            service: service.clone(),
            signer: signer.clone(),
            budget: DEFAULT_BUDGET,
            outbox: outbox.clone(),
            queue: queue.clone(),
        });
        let verifier = Arc::new(Verifier::new(
            settings.lark.verification_token.clone(),
            settings.lark.encrypt_key.clone(),
            settings.dedup_retention,
            o.clock.clone(),
        ));
        let state = AppState {
            verifier,
            store: store.clone(),
            queue: queue.clone(),
            metrics: clients.metrics.clone(),
            clock: o.clock.clone(),
            interact,
            previews,
            link: (settings.mode == Mode::Websocket).then(LinkStatus::default),
        };
        let ws = state.link.clone().map(|link| {
            LongConnection::new(
                lark,
                Arc::new(state.clone()),
                SessionLimits::default(),
                link,
                state.metrics.clone(),
            )
        });
        let sender = Sender {
            outbox: outbox.clone(),
            lark: service.lark.clone(),
            metrics: state.metrics.clone(),
            schedule: Schedule {
                give_up_after: settings.reply_retry,
                first_pause: o.outbox_first_pause,
            },
            poll: o.outbox_poll,
        };
        let worker = Worker {
            outbox,
            store,
            chat: Arc::new(Chat {
                service,
                signer,
                batch_confirm: settings.batch_confirm,
                budget: DEFAULT_BUDGET,
            }),
            interact: state.interact.clone(),
            clock: o.clock,
            retention: settings.dedup_retention,
            audit_retention: settings.audit_retention,
            queue,
            poll: o.inbox_poll,
            drain: o.inbox_drain,
            metrics: clients.metrics,
            give_up_after: settings.reply_retry,
            stats_every: o.inbox_stats_every,
            retry_pause_max: o.inbox_retry_max,
        };
        Ok(App {
            listener,
            state,
            worker,
            sender,
            ws,
            limits: ListenerLimits {
                header_timeout: o.header_timeout,
                body_timeout: o.body_timeout,
                max_connections: settings.max_connections,
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes: then stops accepting, lets requests and in-flight
    /// events finish, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // The outbox stops after the worker, so the answers of the events it finishes at
        // shutdown still go out (or stay stored for the next start).
        let (sender_stop_tx, sender_stop_rx) = watch::channel(false);
        let sender = tokio::spawn(self.sender.run(sender_stop_rx));
        let worker = tokio::spawn(self.worker.run(stop_rx));
        // The long connection stops with the server (dropping the sender stops it too).
        let (ws_stop_tx, ws_stop_rx) = watch::channel(false);
        let ws = self.ws.map(|ws| {
            tokio::spawn(async move {
                if let Err(e) = ws.run(ws_stop_rx).await {
                    tracing::error!(error = %e, "the long connection stopped; no events will arrive until a restart");
                }
            })
        });
        let shutdown = async move {
            shutdown.await;
            let _ = ws_stop_tx.send(true);
        };
        let metrics = self.state.metrics.clone();
        let app = router(self.state, self.limits.body_timeout);
        serve(self.listener, app, self.limits, metrics, shutdown).await;
        if let Some(ws) = ws
            && ws.await.is_err()
        {
            tracing::error!("the long connection stopped abnormally");
        }
        let _ = stop_tx.send(true);
        if worker.await.is_err() {
            tracing::error!("the worker stopped abnormally");
        }
        let _ = sender_stop_tx.send(true);
        if sender.await.is_err() {
            tracing::error!("the outbox stopped abnormally");
        }
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: no new requests; finishing in-flight work");
}

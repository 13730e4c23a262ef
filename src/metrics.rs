//! Prometheus metrics served on `GET /metrics`, kept in a registry per app (no global state,
//! so tests can run several bots in one process), plus an optional tap that sees every
//! upstream call (the sandbox shows them to people).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InboundLabels {
    pub route: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub service: &'static str,
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub service: &'static str,
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

/// How one upstream call ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// Answered with success.
    Ok,
    /// Answered with an error code of the platform (no permission, not found, …).
    Refused,
    /// Answered with a rate limit (HTTP 429 or the platform's rate-limit code).
    RateLimited,
    /// Answered with a 5xx, or a platform code that says it is overloaded.
    ServerError,
    /// No answer: timeout, refused or dropped connection.
    NoAnswer,
    /// An answer that could not be read.
    Malformed,
}

impl UpstreamOutcome {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamOutcome::Ok => "ok",
            UpstreamOutcome::Refused => "refused",
            UpstreamOutcome::RateLimited => "rate_limited",
            UpstreamOutcome::ServerError => "server_error",
            UpstreamOutcome::NoAnswer => "no_answer",
            UpstreamOutcome::Malformed => "malformed",
        }
    }
}

/// The bot's caches, each a `cache` label of `abort_bot_cache_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheName {
    /// Lark: open_id → union_id and email.
    LarkContacts,
    /// Lark: a sent message → its chat (for pacing its updates).
    LarkMessageChats,
    /// Feishu Project: union_id or email → user_key.
    ProjectUserKeys,
    /// Feishu Project: (user_key, space key) → the space.
    ProjectSpaces,
    /// Feishu Project: a space → its work item types.
    ProjectTypes,
    /// Feishu Project: (space, id) → the item's type.
    ProjectItemTypes,
    /// Feishu Project: (user_key, space, id) → the item as that person read it.
    ProjectItems,
    /// Feishu Project: a space → its 终止原因 options.
    ProjectAbortReasons,
}

impl CacheName {
    pub const ALL: [CacheName; 8] = [
        CacheName::LarkContacts,
        CacheName::LarkMessageChats,
        CacheName::ProjectUserKeys,
        CacheName::ProjectSpaces,
        CacheName::ProjectTypes,
        CacheName::ProjectItemTypes,
        CacheName::ProjectItems,
        CacheName::ProjectAbortReasons,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CacheName::LarkContacts => "lark_contacts",
            CacheName::LarkMessageChats => "lark_message_chats",
            CacheName::ProjectUserKeys => "project_user_keys",
            CacheName::ProjectSpaces => "project_spaces",
            CacheName::ProjectTypes => "project_types",
            CacheName::ProjectItemTypes => "project_item_types",
            CacheName::ProjectItems => "project_items",
            CacheName::ProjectAbortReasons => "project_abort_reasons",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Why the HTTP listener closed a connection without serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRefusal {
    /// `ABORT_BOT_MAX_CONNECTIONS` connections were already open.
    OverCapacity,
    /// No complete request headers within the header timeout.
    HeaderTimeout,
    /// Request headers, but no complete body within the body timeout.
    BodyTimeout,
    /// Accepting failed (out of file descriptors, say).
    AcceptFailed,
}

impl HttpRefusal {
    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            HttpRefusal::OverCapacity => "over_capacity",
            HttpRefusal::HeaderTimeout => "header_timeout",
            HttpRefusal::BodyTimeout => "body_timeout",
            HttpRefusal::AcceptFailed => "accept_failed",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            HttpRefusal::OverCapacity => {
                "closed a new HTTP connection: ABORT_BOT_MAX_CONNECTIONS are already open"
            }
            HttpRefusal::HeaderTimeout => {
                "closed an HTTP connection that sent no complete request headers in time"
            }
            HttpRefusal::BodyTimeout => {
                "closed an HTTP connection that sent no complete request body in time"
            }
            HttpRefusal::AcceptFailed => "could not accept an HTTP connection",
        }
    }
}

/// The two upstream platforms, as the `upstream` / `platform` / `service` label says them.
const PLATFORMS: [&str; 2] = ["lark", "feishu_project"];
/// Why the long connection stops for good (the `reason` of `long_connection_stopped`).
const WS_STOP_REASONS: [&str; 4] = [
    "forbidden",
    "connection_limit",
    "endpoint_refused",
    "gave_up",
];
/// The limits a command or click is refused by (`refused_by_limit`).
const LIMITS: [&str; 3] = ["limit_items", "limit_reason", "limit_rate"];
/// The `command` label of `commands`.
const COMMANDS: [&str; 5] = ["abort", "restore", "bind", "help", "unparsed"];

/// At most one log line per refusal reason per this long; the line says how many were
/// left out since the last one, so a flood of refusals cannot flood the log.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Decides which events of each kind get a log line: the first, then at most one per
/// `every`. Bounded: one entry per kind, and kinds are a fixed set.
pub struct LogLimiter {
    every: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(left_out)` when an event of `kind` at `now` gets a line (`left_out` events of
    /// that kind were not logged since the previous line); `None` when it is left out.
    pub fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(kind) {
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
            Some((at, left_out)) if now.saturating_duration_since(*at) >= self.every => {
                let n = *left_out;
                *at = now;
                *left_out = 0;
                Some(n)
            }
            Some((_, left_out)) => {
                *left_out = left_out.saturating_add(1);
                None
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub upstream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub limit: &'static str,
}

/// One upstream HTTP call, as the tap sees it.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub service: &'static str,
    pub method: &'static str,
    /// The real path (ids included), for people reading a log.
    pub path: String,
    /// 0 when no HTTP answer came back.
    pub status: u16,
    pub latency: Duration,
    pub outcome: UpstreamOutcome,
}

pub type Tap = Arc<dyn Fn(&UpstreamCall) + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    inbound: Family<InboundLabels, Counter>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_seconds: Family<LatencyLabels, Histogram>,
    outcomes: Family<OutcomeLabels, Counter>,
    http_refused: Family<ReasonLabels, Counter>,
    refusal_log: LogLimiter,
    ws_reconnects: Counter,
    ws_stopped: Family<ReasonLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    inbox_pending: Gauge,
    inbox_oldest_age: Gauge,
    inbox_claimed: Counter,
    inbox_takeovers: Counter,
    inbox_leases_lost: Counter,
    inbox_handed_back: Counter,
    circuit_state: Family<CircuitLabels, Gauge>,
    circuit_opened: Family<CircuitLabels, Counter>,
    circuit_closed: Family<CircuitLabels, Counter>,
    outbox_waiting: Gauge,
    outbox_given_up: Family<CodeLabels, Counter>,
    cache_lookups: Family<CacheLabels, Counter>,
    token_refreshes: Family<PlatformLabels, Counter>,
    ws_state: Gauge,
    commands: Family<CommandLabels, Counter>,
    tap: Option<Tap>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    pub fn new(tap: Option<Tap>) -> Self {
        let mut registry = Registry::with_prefix("abort_bot");
        let inbound = Family::<InboundLabels, Counter>::default();
        let upstream = Family::<UpstreamLabels, Counter>::default();
        let upstream_seconds = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "inbound_requests",
            "Requests from Lark by route and result",
            inbound.clone(),
        );
        registry.register(
            "upstream_calls",
            "Calls to Lark and Feishu Project",
            upstream.clone(),
        );
        registry.register(
            "upstream_call_seconds",
            "Latency of calls to Lark and Feishu Project, by endpoint template and outcome (ok, refused, rate_limited, server_error, no_answer, malformed)",
            upstream_seconds.clone(),
        );
        registry.register("outcomes", "Abort and restore outcomes", outcomes.clone());
        let http_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed unserved: over_capacity, header_timeout, body_timeout, accept_failed",
            http_refused.clone(),
        );
        let ws_reconnects = Counter::default();
        registry.register(
            "long_connection_reconnects",
            "Attempts to reopen the long connection after it was lost or an attempt failed",
            ws_reconnects.clone(),
        );
        let ws_stopped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "long_connection_stopped",
            "Times the long connection stopped for good: forbidden, connection_limit, endpoint_refused, gave_up",
            ws_stopped.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "refused_by_limit",
            "Commands and clicks refused by a limit, before any upstream call",
            refused.clone(),
        );
        let inbox_pending = Gauge::default();
        registry.register(
            "inbox_pending",
            "Accepted events and clicks not yet finished (waiting, running, or pausing before a retry)",
            inbox_pending.clone(),
        );
        let inbox_oldest_age = Gauge::default();
        registry.register(
            "inbox_oldest_age_seconds",
            "Age of the oldest unfinished event in the inbox (0 when it is empty)",
            inbox_oldest_age.clone(),
        );
        let inbox_claimed = Counter::default();
        registry.register(
            "inbox_claimed",
            "Events this process claimed from the inbox (takeovers included)",
            inbox_claimed.clone(),
        );
        let inbox_takeovers = Counter::default();
        registry.register(
            "inbox_takeovers",
            "Events claimed from an expired lease: their holder stopped or stalled",
            inbox_takeovers.clone(),
        );
        let inbox_leases_lost = Counter::default();
        registry.register(
            "inbox_leases_lost",
            "Leases found taken over while their event still ran here",
            inbox_leases_lost.clone(),
        );
        let inbox_handed_back = Counter::default();
        registry.register(
            "inbox_handed_back",
            "Events still running at shutdown and handed back to the store",
            inbox_handed_back.clone(),
        );
        let circuit_state = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "circuit_state",
            "Circuit per upstream (lark, feishu_project): 0 closed, 1 open, 2 half open",
            circuit_state.clone(),
        );
        let circuit_opened = Family::<CircuitLabels, Counter>::default();
        registry.register(
            "circuit_opened",
            "Times a circuit opened because its upstream kept failing",
            circuit_opened.clone(),
        );
        let circuit_closed = Family::<CircuitLabels, Counter>::default();
        registry.register(
            "circuit_closed",
            "Times an open circuit closed again after a successful probe",
            circuit_closed.clone(),
        );
        let outbox_waiting = Gauge::default();
        registry.register(
            "outbox_waiting",
            "Replies and card updates stored and not yet delivered (waiting for a try or a retry)",
            outbox_waiting.clone(),
        );
        let outbox_given_up = Family::<CodeLabels, Counter>::default();
        registry.register(
            "outbox_given_up",
            "Replies and card updates dropped, by Lark's error code (or `expired` after ABORT_BOT_REPLY_RETRY)",
            outbox_given_up.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Lookups in the bot's caches, by cache and result (hit, miss)",
            cache_lookups.clone(),
        );
        let token_refreshes = Family::<PlatformLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Access tokens fetched, by platform (lark: tenant_access_token, feishu_project: plugin_token)",
            token_refreshes.clone(),
        );
        let ws_state = Gauge::default();
        registry.register(
            "long_connection_state",
            "The long connection (websocket mode): 0 connecting, 1 open, 2 stopped",
            ws_state.clone(),
        );
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Chat commands by command (abort, restore, bind, help, unparsed) and result (answered, refused)",
            commands.clone(),
        );
        let metrics = Self {
            registry,
            inbox_pending,
            inbox_oldest_age,
            cache_lookups,
            token_refreshes,
            ws_state,
            commands,
            outbox_waiting,
            outbox_given_up,
            inbound,
            upstream,
            upstream_seconds,
            outcomes,
            http_refused,
            refusal_log: LogLimiter::new(REFUSAL_LOG_EVERY),
            ws_reconnects,
            ws_stopped,
            refused,
            inbox_claimed,
            inbox_takeovers,
            inbox_leases_lost,
            inbox_handed_back,
            circuit_state,
            circuit_opened,
            circuit_closed,
            tap,
        };
        metrics.zero_known_series();
        metrics
    }

    pub fn inbound(&self, route: &'static str, result: &'static str) {
        self.inbound
            .get_or_create(&InboundLabels { route, result })
            .inc();
    }

    /// Counts a connection the listener closed unserved, and logs it (rate-limited).
    pub fn http_refused(&self, refusal: HttpRefusal) {
        let reason = refusal.reason();
        self.http_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
        if let Some(left_out) = self.refusal_log.admit(reason, Instant::now()) {
            tracing::warn!(
                reason,
                left_out,
                every_secs = REFUSAL_LOG_EVERY.as_secs(),
                "{}",
                refusal.describe()
            );
        }
    }

    pub fn long_connection_reconnect(&self) {
        self.ws_reconnects.inc();
    }

    pub fn long_connection_stopped(&self, reason: &'static str) {
        self.ws_stopped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn outcome(&self, action: &'static str, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { action, outcome })
            .inc();
    }

    /// A command or click refused by `limit` (`limit_items`, `limit_reason`, `limit_rate`).
    pub fn refused(&self, limit: &'static str) {
        self.refused.get_or_create(&RefusedLabels { limit }).inc();
    }

    /// The inbox holds `pending` unfinished events, the oldest accepted `oldest_age_secs` ago.
    pub fn inbox(&self, pending: u64, oldest_age_secs: i64) {
        self.inbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.inbox_oldest_age.set(oldest_age_secs);
    }

    /// One claim took `claimed` events, `taken_over` of them from expired leases.
    pub fn inbox_claimed(&self, claimed: usize, taken_over: usize) {
        self.inbox_claimed
            .inc_by(u64::try_from(claimed).unwrap_or(u64::MAX));
        self.inbox_takeovers
            .inc_by(u64::try_from(taken_over).unwrap_or(u64::MAX));
    }

    pub fn inbox_lease_lost(&self) {
        self.inbox_leases_lost.inc();
    }

    pub fn inbox_handed_back(&self, n: usize) {
        self.inbox_handed_back
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn circuit_state(&self, upstream: &'static str, state: crate::circuit::CircuitState) {
        self.circuit_state
            .get_or_create(&CircuitLabels { upstream })
            .set(state.gauge());
    }

    pub fn circuit_opened(&self, upstream: &'static str) {
        self.circuit_opened
            .get_or_create(&CircuitLabels { upstream })
            .inc();
    }

    pub fn circuit_closed(&self, upstream: &'static str) {
        self.circuit_closed
            .get_or_create(&CircuitLabels { upstream })
            .inc();
    }

    /// How many deliveries wait in the outbox.
    pub fn outbox_waiting(&self, n: u64) {
        self.outbox_waiting
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A delivery dropped with `code`.
    pub fn outbox_given_up(&self, code: &str) {
        self.outbox_given_up
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts a lookup in `cache` and hands its result back.
    pub fn cached<T>(&self, cache: CacheName, found: Option<T>) -> Option<T> {
        let result = if found.is_some() { "hit" } else { "miss" };
        self.cache_lookups
            .get_or_create(&CacheLabels {
                cache: cache.label(),
                result,
            })
            .inc();
        found
    }

    /// Creates every series whose labels are known in advance, at zero: each family is in
    /// the first scrape (a dashboard finds its metric), and `rate()` sees the first increase.
    fn zero_known_series(&self) {
        for refusal in [
            HttpRefusal::OverCapacity,
            HttpRefusal::HeaderTimeout,
            HttpRefusal::BodyTimeout,
            HttpRefusal::AcceptFailed,
        ] {
            let _ = self.http_refused.get_or_create(&ReasonLabels {
                reason: refusal.reason(),
            });
        }
        for reason in WS_STOP_REASONS {
            let _ = self.ws_stopped.get_or_create(&ReasonLabels { reason });
        }
        for limit in LIMITS {
            let _ = self.refused.get_or_create(&RefusedLabels { limit });
        }
        for upstream in PLATFORMS {
            let _ = self
                .circuit_state
                .get_or_create(&CircuitLabels { upstream });
            let _ = self
                .circuit_opened
                .get_or_create(&CircuitLabels { upstream });
            let _ = self
                .circuit_closed
                .get_or_create(&CircuitLabels { upstream });
            let _ = self
                .token_refreshes
                .get_or_create(&PlatformLabels { platform: upstream });
        }
        let _ = self.outbox_given_up.get_or_create(&CodeLabels {
            code: "expired".to_owned(),
        });
        for cache in CacheName::ALL {
            for result in ["hit", "miss"] {
                let _ = self.cache_lookups.get_or_create(&CacheLabels {
                    cache: cache.label(),
                    result,
                });
            }
        }
        for command in COMMANDS {
            for result in ["answered", "refused"] {
                let _ = self
                    .commands
                    .get_or_create(&CommandLabels { command, result });
            }
        }
    }

    /// A fresh access token was fetched for `platform` (`lark`, `feishu_project`).
    pub fn token_refreshed(&self, platform: &'static str) {
        self.token_refreshes
            .get_or_create(&PlatformLabels { platform })
            .inc();
    }

    /// The long connection's state: 0 connecting, 1 open, 2 stopped.
    pub fn long_connection_state(&self, state: i64) {
        self.ws_state.set(state);
    }

    /// A chat command (`abort`, `restore`, `bind`, `help`, `unparsed`) was `answered` or
    /// `refused` by a limit.
    pub fn command(&self, command: &'static str, result: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { command, result })
            .inc();
    }

    pub fn upstream(&self, endpoint: &'static str, call: UpstreamCall) {
        let labels = UpstreamLabels {
            service: call.service,
            endpoint,
            status: call.status,
        };
        tracing::debug!(
            service = call.service,
            endpoint,
            status = call.status,
            outcome = call.outcome.label(),
            latency_ms = u64::try_from(call.latency.as_millis()).unwrap_or(u64::MAX),
            "upstream call"
        );
        self.upstream.get_or_create(&labels).inc();
        self.upstream_seconds
            .get_or_create(&LatencyLabels {
                service: call.service,
                endpoint,
                outcome: call.outcome.label(),
            })
            .observe(call.latency.as_secs_f64());
        if let Some(tap) = &self.tap {
            tap(&call);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_left_out() {
        let limiter = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(limiter.admit("a", at(0)), Some(0));
        for s in 1..=5 {
            assert_eq!(limiter.admit("a", at(s)), None);
        }
        // Another kind has its own allowance.
        assert_eq!(limiter.admit("b", at(3)), Some(0));
        assert_eq!(limiter.admit("a", at(59)), None);
        assert_eq!(limiter.admit("a", at(60)), Some(6));
        assert_eq!(limiter.admit("a", at(61)), None);
        assert_eq!(limiter.admit("a", at(200)), Some(1));
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let m = Metrics::default();
        m.http_refused(HttpRefusal::OverCapacity);
        m.http_refused(HttpRefusal::OverCapacity);
        m.http_refused(HttpRefusal::HeaderTimeout);
        let text = m.render();
        assert!(
            text.contains(r#"abort_bot_http_connections_refused_total{reason="over_capacity"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"abort_bot_http_connections_refused_total{reason="header_timeout"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn the_inbox_gauges_and_lease_counters_are_exposed() {
        let m = Metrics::default();
        m.inbox(3, 42);
        m.inbox_claimed(5, 2);
        m.inbox_claimed(1, 0);
        m.inbox_lease_lost();
        m.inbox_handed_back(4);
        let text = m.render();
        for line in [
            "abort_bot_inbox_pending 3",
            "abort_bot_inbox_oldest_age_seconds 42",
            "abort_bot_inbox_claimed_total 6",
            "abort_bot_inbox_takeovers_total 2",
            "abort_bot_inbox_leases_lost_total 1",
            "abort_bot_inbox_handed_back_total 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        // A later reading replaces the gauges.
        m.inbox(0, 0);
        assert!(m.render().lines().any(|l| l == "abort_bot_inbox_pending 0"));
    }
}

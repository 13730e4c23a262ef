//! Prometheus metrics served on `GET /metrics`, kept in a registry per app (no global state,
//! so tests can run several bots in one process), plus an optional tap that sees every
//! upstream call (the sandbox shows them to people).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
pub struct OutcomeLabels {
    pub action: &'static str,
    pub outcome: &'static str,
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
}

pub type Tap = Arc<dyn Fn(&UpstreamCall) + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    inbound: Family<InboundLabels, Counter>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_seconds: Family<UpstreamLabels, Histogram>,
    outcomes: Family<OutcomeLabels, Counter>,
    sweeps: Counter,
    swept: Counter,
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
        let upstream_seconds = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
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
            "Latency of calls to Lark and Feishu Project",
            upstream_seconds.clone(),
        );
        registry.register("outcomes", "Abort and restore outcomes", outcomes.clone());
        let sweeps = Counter::default();
        let swept = Counter::default();
        registry.register(
            "inbox_sweeps",
            "Completed sweeps of the inbox for pending events nobody queued",
            sweeps.clone(),
        );
        registry.register(
            "inbox_swept",
            "Pending events a sweep found and queued",
            swept.clone(),
        );
        Self {
            registry,
            inbound,
            upstream,
            upstream_seconds,
            outcomes,
            sweeps,
            swept,
            tap,
        }
    }

    pub fn inbound(&self, route: &'static str, result: &'static str) {
        self.inbound
            .get_or_create(&InboundLabels { route, result })
            .inc();
    }

    pub fn outcome(&self, action: &'static str, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels { action, outcome })
            .inc();
    }

    /// One sweep of the inbox finished, having queued `queued` events.
    pub fn sweep(&self, queued: usize) {
        self.swept.inc_by(u64::try_from(queued).unwrap_or(u64::MAX));
        self.sweeps.inc();
    }

    pub fn upstream(&self, endpoint: &'static str, call: UpstreamCall) {
        let labels = UpstreamLabels {
            service: call.service,
            endpoint,
            status: call.status,
        };
        self.upstream.get_or_create(&labels).inc();
        self.upstream_seconds
            .get_or_create(&labels)
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

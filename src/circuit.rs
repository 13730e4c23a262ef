//! A circuit breaker per upstream (Lark, Feishu Project).
//!
//! An upstream that keeps failing in a way a retry is meant to fix (5xx, timeouts, refused
//! connections, rate limits still refused after the client's own retries) is not asked
//! again for a while: after [`CircuitConfig::threshold`] such failures in a row, all within
//! [`CircuitConfig::window`], the circuit opens and every call fails at once, without a
//! request, for [`CircuitConfig::cool_down`]. Then it is half open: one call goes through as
//! a probe while the others still fail at once; the probe's success closes the circuit, its
//! failure opens it again. A business error (a permission refused, an item not found) is an
//! answer from a healthy upstream: it closes the circuit like a success does.
//!
//! Time comes from the app's [`Clock`](crate::clock::Clock), so tests move past the cool-down
//! without sleeping.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::metrics::Metrics;

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Retryable failures in a row that open the circuit.
    pub threshold: u32,
    /// The failures must all fall within this span (from the first of the run).
    pub window: Duration,
    /// How long an open circuit refuses calls before it lets one probe through.
    pub cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::from_secs(30),
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The state a circuit is in, as the `circuit_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The gauge's value: 0 closed, 1 open, 2 half open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// The call was not made: the upstream has been failing and the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{upstream} has been failing; not calling it for up to {retry_in:?}")]
pub struct CircuitOpen {
    pub upstream: &'static str,
    /// Until the next probe may go through (zero while a probe is under way).
    pub retry_in: Duration,
}

/// How one call through the circuit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered (success or a business error).
    Healthy,
    /// A failure a retry is meant to fix.
    Failing,
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
        /// When the first failure of the current run happened (ms).
        since: i64,
    },
    Open {
        until: i64,
    },
    HalfOpen {
        probing: bool,
    },
}

pub struct Circuit {
    upstream: &'static str,
    cfg: CircuitConfig,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

/// Leave to make one call; tell how it ended with [`Pass::finish`]. A pass dropped unfinished
/// (the call was cancelled) tells nothing, but frees the probe slot.
#[must_use = "finish the pass with the call's verdict"]
pub struct Pass<'a> {
    circuit: &'a Circuit,
    probe: bool,
    finished: bool,
}

impl Pass<'_> {
    pub fn finish(mut self, verdict: Verdict) {
        self.finished = true;
        self.circuit.record(self.probe, verdict);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            let mut inner = self.circuit.lock();
            if let Inner::HalfOpen { probing } = &mut *inner {
                *probing = false;
            }
        }
    }
}

impl Circuit {
    pub fn new(
        upstream: &'static str,
        cfg: CircuitConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.circuit_state(upstream, CircuitState::Closed);
        Self {
            upstream,
            cfg,
            clock,
            metrics,
            inner: Mutex::new(Inner::Closed {
                failures: 0,
                since: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state now (an open circuit whose cool-down has passed counts as half open).
    pub fn state(&self) -> CircuitState {
        match &*self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if self.clock.now_millis() < *until => CircuitState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Leave to call the upstream, or at once the reason not to.
    pub fn admit(&self) -> Result<Pass<'_>, CircuitOpen> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        let probe = match &mut *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if now < *until => {
                let left = u64::try_from(*until - now).unwrap_or(0);
                return Err(self.refusal(Duration::from_millis(left)));
            }
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen { probing: true };
                self.metrics
                    .circuit_state(self.upstream, CircuitState::HalfOpen);
                true
            }
            Inner::HalfOpen { probing: true } => return Err(self.refusal(Duration::ZERO)),
            Inner::HalfOpen { probing } => {
                *probing = true;
                true
            }
        };
        Ok(Pass {
            circuit: self,
            probe,
            finished: false,
        })
    }

    fn refusal(&self, retry_in: Duration) -> CircuitOpen {
        CircuitOpen {
            upstream: self.upstream,
            retry_in,
        }
    }

    fn record(&self, probe: bool, verdict: Verdict) {
        let now = self.clock.now_millis();
        let window = i64::try_from(self.cfg.window.as_millis()).unwrap_or(i64::MAX);
        let cool_down = i64::try_from(self.cfg.cool_down.as_millis()).unwrap_or(i64::MAX);
        let mut inner = self.lock();
        let next = match (&*inner, verdict) {
            // A call admitted before the circuit opened ends after it opened: the state
            // stays as the probe and the cool-down decide.
            (Inner::Open { .. }, _) => return,
            (Inner::HalfOpen { .. }, _) if !probe => return,
            (Inner::Closed { failures: 0, .. }, Verdict::Healthy) => return,
            (_, Verdict::Healthy) => Inner::Closed {
                failures: 0,
                since: now,
            },
            (Inner::HalfOpen { .. }, Verdict::Failing) => Inner::Open {
                until: now.saturating_add(cool_down),
            },
            (Inner::Closed { failures, since }, Verdict::Failing) => {
                let (failures, since) = if *failures == 0 || now - *since > window {
                    (1, now)
                } else {
                    (failures + 1, *since)
                };
                if failures >= self.cfg.threshold {
                    Inner::Open {
                        until: now.saturating_add(cool_down),
                    }
                } else {
                    Inner::Closed { failures, since }
                }
            }
        };
        let before = state_of(&inner);
        *inner = next;
        let after = state_of(&inner);
        drop(inner);
        if before != after {
            self.metrics.circuit_state(self.upstream, after);
            match after {
                CircuitState::Open => {
                    self.metrics.circuit_opened(self.upstream);
                    tracing::warn!(
                        upstream = self.upstream,
                        cool_down = ?self.cfg.cool_down,
                        "upstream keeps failing; circuit opened, calls fail at once until a probe succeeds"
                    );
                }
                CircuitState::Closed => {
                    self.metrics.circuit_closed(self.upstream);
                    tracing::info!(
                        upstream = self.upstream,
                        "upstream answers again; circuit closed"
                    );
                }
                CircuitState::HalfOpen => {}
            }
        }
    }
}

fn state_of(inner: &Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { .. } => CircuitState::Open,
        Inner::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn circuit(clock: &ManualClock) -> (Circuit, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let cfg = CircuitConfig {
            threshold: 3,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(30),
        };
        let c = Circuit::new("test", cfg, Arc::new(clock.clone()), metrics.clone());
        (c, metrics)
    }

    fn call(c: &Circuit, verdict: Verdict) -> Result<(), CircuitOpen> {
        c.admit().map(|pass| pass.finish(verdict))
    }

    #[test]
    fn opens_after_the_threshold_in_a_row_and_refuses_at_once() {
        let clock = ManualClock::at_secs(1000);
        let (c, metrics) = circuit(&clock);
        for _ in 0..2 {
            assert!(call(&c, Verdict::Failing).is_ok());
            assert_eq!(c.state(), CircuitState::Closed);
        }
        assert!(call(&c, Verdict::Failing).is_ok());
        assert_eq!(c.state(), CircuitState::Open);
        let refused = c.admit().err().expect("open circuit refuses");
        assert_eq!(refused.retry_in, Duration::from_secs(30));
        let text = metrics.render();
        assert!(
            text.contains("abort_bot_circuit_state{upstream=\"test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("abort_bot_circuit_opened_total{upstream=\"test\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_healthy_answer_or_a_gap_longer_than_the_window_resets_the_run() {
        let clock = ManualClock::at_secs(1000);
        let (c, _) = circuit(&clock);
        call(&c, Verdict::Failing).ok();
        call(&c, Verdict::Failing).ok();
        call(&c, Verdict::Healthy).ok();
        call(&c, Verdict::Failing).ok();
        call(&c, Verdict::Failing).ok();
        assert_eq!(c.state(), CircuitState::Closed, "the run was broken");
        clock.advance_secs(11);
        call(&c, Verdict::Failing).ok();
        assert_eq!(c.state(), CircuitState::Closed, "the run started again");
        call(&c, Verdict::Failing).ok();
        call(&c, Verdict::Failing).ok();
        assert_eq!(c.state(), CircuitState::Open);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_decides() {
        let clock = ManualClock::at_secs(1000);
        let (c, metrics) = circuit(&clock);
        for _ in 0..3 {
            call(&c, Verdict::Failing).ok();
        }
        clock.advance_secs(30);
        assert_eq!(c.state(), CircuitState::HalfOpen);
        let probe = c.admit().expect("the probe");
        assert!(c.admit().is_err(), "one probe at a time");
        probe.finish(Verdict::Failing);
        assert_eq!(c.state(), CircuitState::Open, "a failed probe opens again");
        clock.advance_secs(30);
        let probe = c.admit().expect("the next probe");
        drop(probe);
        let probe = c.admit().expect("a cancelled probe frees the slot");
        probe.finish(Verdict::Healthy);
        assert_eq!(c.state(), CircuitState::Closed);
        assert!(call(&c, Verdict::Healthy).is_ok());
        let text = metrics.render();
        assert!(
            text.contains("abort_bot_circuit_opened_total{upstream=\"test\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("abort_bot_circuit_closed_total{upstream=\"test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("abort_bot_circuit_state{upstream=\"test\"} 0"),
            "{text}"
        );
    }
}

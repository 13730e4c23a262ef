//! The backoff used for upstream calls that failed in a way a retry can fix (rate limits,
//! overload, 5xx, timeouts). Business errors are never retried.

use std::time::Duration;

use backon::ExponentialBuilder;

/// How hard to retry; tests shorten the delays.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(4),
            max_retries: 3,
        }
    }
}

impl RetryPolicy {
    /// Fast retries for tests and the sandbox.
    pub fn quick() -> Self {
        Self {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retries: 3,
        }
    }

    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
    }
}

//! What one command or click may ask for before anything reaches Feishu Project: at most
//! `ABORT_BOT_MAX_ITEMS` refs, a reason of at most [`MAX_REASON_CHARS`] characters, and at
//! most `ABORT_BOT_USER_RATE` requests per person in any 60 s (a sliding window). A refusal
//! costs nothing upstream and is not counted against the person.
//!
//! The window lives in this process's memory, bounded: at most `rate` instants per person and
//! at most [`MAX_PEOPLE`] people (the one idle longest is forgotten first). Several replicas
//! each keep their own window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::clock::SharedClock;
use crate::lark::message::UserIds;

/// Longest reason accepted (characters), the same bound a button value may carry.
pub const MAX_REASON_CHARS: usize = crate::card_value::MAX_REASON_CHARS;
/// The length of the rate window.
pub const WINDOW_MILLIS: i64 = 60_000;
/// People whose recent requests are remembered at once.
pub const MAX_PEOPLE: usize = 10_000;

/// Why a request was refused before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More refs than the limit.
    TooManyItems { count: usize, limit: usize },
    /// A reason longer than the limit (characters).
    ReasonTooLong { chars: usize, limit: usize },
    /// The person already made `limit` requests in the last minute.
    RateLimited { limit: usize, retry_after_secs: u64 },
}

impl Refusal {
    /// The key of its words in `cards/messages.json`.
    pub fn key(&self) -> &'static str {
        match self {
            Refusal::TooManyItems { .. } => "limit_items",
            Refusal::ReasonTooLong { .. } => "limit_reason",
            Refusal::RateLimited { .. } => "limit_rate",
        }
    }
}

/// The limits of one bot.
pub struct Limits {
    pub max_items: usize,
    rate: usize,
    clock: SharedClock,
    recent: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Limits {
    pub fn new(max_items: usize, rate: usize, clock: SharedClock) -> Self {
        Self {
            max_items,
            rate: rate.max(1),
            clock,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a request of `items` refs with `reason`; when it passes, it counts against the
    /// person. A request by nobody known (no open_id, no union_id) is only size-checked.
    pub fn admit(&self, who: &UserIds, items: usize, reason: &str) -> Result<(), Refusal> {
        self.check_size(items, reason)?;
        let Some(person) = who.open_id.as_deref().or(who.union_id.as_deref()) else {
            return Ok(());
        };
        self.take(person)
    }

    /// The item and reason limits alone (nothing is counted).
    pub fn check_size(&self, items: usize, reason: &str) -> Result<(), Refusal> {
        if items > self.max_items {
            return Err(Refusal::TooManyItems {
                count: items,
                limit: self.max_items,
            });
        }
        let chars = reason.trim().chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(Refusal::ReasonTooLong {
                chars,
                limit: MAX_REASON_CHARS,
            });
        }
        Ok(())
    }

    /// Counts one request by `person`, unless the window is full.
    fn take(&self, person: &str) -> Result<(), Refusal> {
        let now = self.clock.now_millis();
        let since = now - WINDOW_MILLIS;
        // Each update is one call: the map stays consistent even if a holder panicked.
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if !recent.contains_key(person) && recent.len() >= MAX_PEOPLE {
            recent.retain(|_, hits| hits.back().is_some_and(|&t| t > since));
            if recent.len() >= MAX_PEOPLE {
                let idlest = recent
                    .iter()
                    .min_by_key(|(_, hits)| hits.back().copied().unwrap_or(i64::MIN))
                    .map(|(k, _)| k.clone());
                if let Some(k) = idlest {
                    recent.remove(&k);
                }
            }
        }
        let hits = recent.entry(person.to_owned()).or_default();
        while hits.front().is_some_and(|&t| t <= since) {
            hits.pop_front();
        }
        if hits.len() >= self.rate {
            let oldest = hits.front().copied().unwrap_or(now);
            let wait_millis = (oldest + WINDOW_MILLIS - now).max(1);
            let retry_after_secs = u64::try_from(wait_millis).unwrap_or(0).div_ceil(1000);
            return Err(Refusal::RateLimited {
                limit: self.rate,
                retry_after_secs,
            });
        }
        hits.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn person(open_id: &str) -> UserIds {
        UserIds {
            open_id: Some(open_id.into()),
            ..UserIds::default()
        }
    }

    #[test]
    fn the_window_slides_and_refusals_do_not_count() {
        let clock = ManualClock::at_secs(1000);
        let limits = Limits::new(50, 3, Arc::new(clock.clone()));
        let alice = person("ou_a");
        for _ in 0..3 {
            assert_eq!(limits.admit(&alice, 1, ""), Ok(()));
        }
        clock.advance_secs(20);
        assert_eq!(
            limits.admit(&alice, 1, ""),
            Err(Refusal::RateLimited {
                limit: 3,
                retry_after_secs: 40
            })
        );
        assert_eq!(limits.admit(&person("ou_b"), 1, ""), Ok(()), "per person");
        clock.advance_secs(40);
        // The three from t=1000 left the window; the refusal at t=1020 never entered it.
        for _ in 0..3 {
            assert_eq!(limits.admit(&alice, 1, ""), Ok(()));
        }
        assert!(limits.admit(&alice, 1, "").is_err());
    }

    #[test]
    fn size_limits_come_first_and_cost_nothing() {
        let clock = ManualClock::at_secs(0);
        let limits = Limits::new(2, 1, Arc::new(clock));
        let alice = person("ou_a");
        assert_eq!(
            limits.admit(&alice, 3, ""),
            Err(Refusal::TooManyItems { count: 3, limit: 2 })
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            limits.admit(&alice, 1, &long),
            Err(Refusal::ReasonTooLong {
                chars: MAX_REASON_CHARS + 1,
                limit: MAX_REASON_CHARS
            })
        );
        let longest = "理".repeat(MAX_REASON_CHARS);
        assert_eq!(
            limits.admit(&alice, 2, &longest),
            Ok(()),
            "characters, not bytes"
        );
        assert!(matches!(
            limits.admit(&alice, 1, ""),
            Err(Refusal::RateLimited { .. })
        ));
    }

    #[test]
    fn memory_stays_bounded() {
        let clock = ManualClock::at_secs(0);
        let limits = Limits::new(50, 2, Arc::new(clock.clone()));
        for i in 0..MAX_PEOPLE + 10 {
            assert_eq!(limits.admit(&person(&format!("ou_{i}")), 1, ""), Ok(()));
        }
        let recent = limits.recent.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(recent.len(), MAX_PEOPLE);
        assert!(recent.values().all(|hits| hits.len() <= 2));
    }
}

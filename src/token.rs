//! An access token cached until shortly before it expires, refreshed by exactly one request
//! even when many callers need it at once, and dropped when the server says it is invalid.
//! Both the Lark tenant token and the Feishu Project plugin token use it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{Mutex, RwLock};

use crate::clock::SharedClock;

#[derive(Clone)]
struct Cached {
    token: String,
    /// Unix millis after which the token is no longer handed out.
    refresh_at: i64,
}

pub struct TokenCache {
    current: RwLock<Option<Cached>>,
    /// Held by the one caller that refreshes; others wait and then read its result.
    refreshing: Mutex<()>,
    /// Refresh this long before the server's expiry.
    margin: Duration,
    clock: SharedClock,
}

impl TokenCache {
    pub fn new(margin: Duration, clock: SharedClock) -> Self {
        Self {
            current: RwLock::new(None),
            refreshing: Mutex::new(()),
            margin,
            clock,
        }
    }

    async fn valid(&self) -> Option<String> {
        let now = self.clock.now_millis();
        self.current
            .read()
            .await
            .as_ref()
            .filter(|c| c.refresh_at > now)
            .map(|c| c.token.clone())
    }

    /// The cached token, or a new one from `fetch`, which returns the token and its lifetime.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<String, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), E>>,
    {
        if let Some(t) = self.valid().await {
            return Ok(t);
        }
        let _guard = self.refreshing.lock().await;
        // Someone else may have refreshed while this caller waited for the lock.
        if let Some(t) = self.valid().await {
            return Ok(t);
        }
        let (token, lifetime) = fetch().await?;
        let usable = lifetime.saturating_sub(self.margin);
        let refresh_at = self
            .clock
            .now_millis()
            .saturating_add(i64::try_from(usable.as_millis()).unwrap_or(i64::MAX));
        *self.current.write().await = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets `stale` if it is still the cached token (a newer one is kept).
    pub async fn invalidate(&self, stale: &str) {
        let mut current = self.current.write().await;
        if current.as_ref().is_some_and(|c| c.token == stale) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cache(clock: &ManualClock) -> Arc<TokenCache> {
        Arc::new(TokenCache::new(
            Duration::from_secs(180),
            Arc::new(clock.clone()),
        ))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let clock = ManualClock::at_secs(1_000);
        let cache = cache(&clock);
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(("t1".to_string(), Duration::from_secs(7200)))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok("t1".to_string()));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_before_expiry_and_after_invalidation() {
        let clock = ManualClock::at_secs(1_000);
        let cache = cache(&clock);
        let n = AtomicUsize::new(0);
        let fetch = || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>((format!("t{i}"), Duration::from_secs(7200)))
        };
        assert_eq!(cache.get(fetch).await, Ok("t0".into()));
        clock.advance_secs(7200 - 181);
        assert_eq!(cache.get(fetch).await, Ok("t0".into()), "still valid");
        clock.advance_secs(2);
        assert_eq!(cache.get(fetch).await, Ok("t1".into()), "inside the margin");
        cache.invalidate("t0").await;
        assert_eq!(
            cache.get(fetch).await,
            Ok("t1".into()),
            "stale token ignored"
        );
        cache.invalidate("t1").await;
        assert_eq!(cache.get(fetch).await, Ok("t2".into()));
    }
}

//! Runs stored events after they were acknowledged. The store is the queue: waiting events
//! stay there, and this loop claims a bounded page at a time, each under a lease (owner +
//! expiry, kept by the store's own clock) that it renews while the event runs and hands back
//! on shutdown. No event travels through memory between the routes and here: a route only
//! wakes the loop ([`Queue::wake`]), and a short poll finds what others left (another bot's
//! expired lease, a retry whose pause has passed, an event whose route never woke anyone).
//!
//! At most [`SLOTS`] events run at once, and a page never asks for more than the free
//! slots, so memory does not grow with the backlog, and start-up reads no more than a page.
//! Shutdown is one branch of every wait: stop claiming, let what runs finish (renewing its
//! leases) for up to [`DRAIN`], then hand what is left back to the store, due at once for the
//! next process.
//!
//! An event ends in the same store write that puts its answer in the outbox
//! ([`crate::outbox`]), so the work is never run again and the answer is never lost. A
//! failure that can pass is a retry in the store (attempts + 1, due after a pause), never a
//! sleeping task; the attempts live in the store, so a restart does not reset them. A lease
//! that expired (its holder stalled past it) may be taken over while its holder still runs
//! the event: the holder logs it and still stores its result. Both acting is harmless: the PUT
//! carries a derived idempotency key (`X-IDEM-UUID`), and the outbox stores an answer's key
//! once.
//!
//! Card clicks that outlive their answer are inbox items too (kind `click`, see
//! [`crate::interact`]): the process that answered holds them under a lease through the same
//! [`Queue`], so they are renewed, waited for and handed back like the worker's own, and a
//! process that claims one after a crash resumes it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chat::Chat;
use crate::clock::SharedClock;
use crate::interact::Interact;
use crate::lark::message::ReceivedMessage;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::store::{Finish, InboxItem, Store};

/// Attempts (retries and takeovers, as the store counts them) after which an event that was
/// taken over again is given up on (and logged as failed): each of its holders stopped while
/// running it, so it may be what stops them.
const MAX_ATTEMPTS: i64 = 5;
/// The longest pause between two tries of an event that failed in a way that can pass.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_secs(60);
/// Events run at once.
pub const SLOTS: usize = 32;
/// Events claimed in one store call at most.
const PAGE: usize = 32;
/// Clicks past their answer held at once (beyond them a click is handed to the worker).
const MAX_CLICKS: usize = 256;
/// How long a claim holds an event before another process may take it over; renewed every
/// third of it. With the poll, a dead holder's work is taken over within about 31 s.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the store is read for work nobody woke the loop for.
pub const POLL: Duration = Duration::from_secs(1);
/// How long shutdown waits for what runs before handing it back (the contract's 30 s to
/// exit leaves room for the listener before and the outbox after).
pub const DRAIN: Duration = Duration::from_secs(20);
/// How often the inbox gauges are refreshed.
pub const STATS_EVERY: Duration = Duration::from_secs(5);

/// What the routes and the card handler share with the worker: the wake-up, and the leases
/// this process holds (so they are renewed and, at shutdown, waited for or handed back).
/// Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Shared>,
}

struct Shared {
    /// This process's name on its leases: unique per start.
    owner: String,
    /// How long a lease lasts ([`LEASE`]).
    lease: Duration,
    wake: Notify,
    held: Mutex<HashSet<i64>>,
    /// Notified whenever a held lease ends here.
    released: Notify,
}

impl Queue {
    /// A queue whose leases last `lease` ([`LEASE`]; shorter in tests).
    pub fn new(lease: Duration) -> Queue {
        let owner = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Queue {
            inner: Arc::new(Shared {
                owner,
                lease,
                wake: Notify::new(),
                held: Mutex::default(),
                released: Notify::new(),
            }),
        }
    }

    /// The owner this process's leases carry.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How long each lease taken through this queue lasts.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// Something new is waiting in the store: the worker claims at once if a slot is free.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Holds the lease of a click that goes on past its answer; false when [`MAX_CLICKS`]
    /// are already held (the caller then hands it to the worker through the store).
    pub fn hold_click(&self, id: i64) -> bool {
        let mut held = self.lock();
        if held.len() >= SLOTS + MAX_CLICKS {
            return false;
        }
        held.insert(id);
        true
    }

    /// The lease on `id` ended here (finished, retried or handed back).
    pub fn done(&self, id: i64) {
        self.lock().remove(&id);
        self.inner.released.notify_waiters();
    }

    fn hold(&self, id: i64) {
        self.lock().insert(id);
    }

    fn held(&self) -> Vec<i64> {
        self.lock().iter().copied().collect()
    }

    fn holds(&self, id: i64) -> bool {
        self.lock().contains(&id)
    }

    /// Resolves once no lease is held here.
    async fn idle(&self) {
        loop {
            let released = self.inner.released.notified();
            if self.lock().is_empty() {
                return;
            }
            released.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // The set stays consistent even if a holder panicked: each update is one call.
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Worker {
    pub store: Store,
    pub chat: Arc<Chat>,
    /// Resumes clicks that outlived their answer.
    pub interact: Arc<Interact>,
    /// Where the answers go.
    pub outbox: Outbox,
    pub clock: SharedClock,
    pub retention: Duration,
    /// The leases held here, and how long each lasts.
    pub queue: Queue,
    /// How often to look for work nobody woke the loop for ([`POLL`]).
    pub poll: Duration,
    /// How long shutdown lets what runs finish ([`DRAIN`]).
    pub drain: Duration,
    pub metrics: Arc<Metrics>,
    /// How long audit lines are kept (ABORT_BOT_AUDIT_RETENTION).
    pub audit_retention: Duration,
    /// `ABORT_BOT_REPLY_RETRY`: how long, from its arrival, an event that fails in a way that
    /// can pass (Lark unreachable while the bot's identity is unknown) is tried again; as
    /// long as an answer is retried.
    pub give_up_after: Duration,
    /// How often the inbox gauges are read from the store ([`STATS_EVERY`]).
    pub stats_every: Duration,
    /// The longest pause between two tries ([`RETRY_PAUSE_MAX`]).
    pub retry_pause_max: Duration,
}

impl Worker {
    /// Runs until `shutdown` turns true, then finishes or hands back what is in flight.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut tasks = JoinSet::new();
        let mut purge = tokio::time::interval(Duration::from_secs(3600));
        let mut poll = tokio::time::interval(this.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let renew_every = (this.queue.lease() / 3).max(Duration::from_millis(10));
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats = tokio::time::interval(this.stats_every);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut claim = true;
        loop {
            if claim {
                claim = false;
                this.claim_into(&mut tasks).await;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    while tasks.try_join_next().is_some() {}
                    claim = true;
                }
                () = this.queue.inner.wake.notified() => claim = true,
                _ = poll.tick() => claim = true,
                _ = renew.tick() => this.renew().await,
                _ = stats.tick() => this.stats().await,
                _ = purge.tick() => {
                    let before = this.clock.now_secs()
                        - i64::try_from(this.retention.as_secs()).unwrap_or(i64::MAX);
                    if let Err(e) = this.store.purge(before).await {
                        tracing::warn!(error = %e, "purging old dedup keys failed");
                    }
                    let keep = i64::try_from(this.audit_retention.as_millis()).unwrap_or(i64::MAX);
                    let before_ms = this.clock.now_millis().saturating_sub(keep);
                    if let Err(e) = this.store.purge_audit(before_ms).await {
                        tracing::warn!(error = %e, "purging old audit lines failed");
                    }
                }
            }
        }
        this.drain(tasks, renew).await;
    }

    /// Claims pages while slots are free and the store has due work.
    async fn claim_into(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        loop {
            let free = SLOTS.saturating_sub(tasks.len());
            if free == 0 {
                return;
            }
            let want = free.min(PAGE);
            let items = match self
                .store
                .claim_inbox(self.queue.owner(), want, self.queue.lease())
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim events from the inbox");
                    return;
                }
            };
            let got = items.len();
            let took = items.iter().filter(|i| i.taken_over).count();
            self.metrics.inbox_claimed(got, took);
            if took > 0 {
                tracing::warn!(
                    count = took,
                    "took over events whose lease had expired (their holder stopped)"
                );
            }
            for item in items {
                self.queue.hold(item.id);
                let this = self.clone();
                tasks.spawn(async move {
                    let id = item.id;
                    this.process(item).await;
                    this.queue.done(id);
                });
            }
            if got < want {
                return;
            }
        }
    }

    /// Extends every lease held here; one that was lost is logged (its result is still
    /// stored: the PUT's idempotency key and the outbox's key make a second run harmless).
    async fn renew(&self) {
        let ids = self.queue.held();
        match self
            .store
            .renew_inbox(self.queue.owner(), &ids, self.queue.lease())
            .await
        {
            Ok(lost) => {
                for id in lost.into_iter().filter(|id| self.queue.holds(*id)) {
                    self.metrics.inbox_lease_lost();
                    tracing::warn!(
                        inbox_id = id,
                        "lost the lease on an event still running here; another process may \
                         run it too (the PUT is idempotent and the answer stored once)"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the leases held here"),
        }
    }

    async fn stats(&self) {
        match self.store.inbox_stats().await {
            Ok(stats) => {
                let age = stats
                    .oldest_received_at
                    .map_or(0, |at| self.clock.now_secs().saturating_sub(at).max(0));
                self.metrics.inbox(stats.pending, age);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the inbox's size"),
        }
    }

    /// Shutdown: no more claims; what runs (here and in clicks past their answer) may finish
    /// for up to its drain limit, its leases renewed meanwhile; what is left is handed back.
    async fn drain(&self, mut tasks: JoinSet<()>, mut renew: tokio::time::Interval) {
        let held = self.queue.held().len();
        if held > 0 {
            tracing::info!(in_flight = held, "finishing in-flight events");
        }
        let deadline = tokio::time::sleep(self.drain);
        tokio::pin!(deadline);
        let idle = self.queue.idle();
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = &mut idle => break,
                () = &mut deadline => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = renew.tick() => self.renew().await,
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left = self.queue.held();
        if left.is_empty() {
            return;
        }
        match self.store.release_inbox(self.queue.owner(), &left).await {
            Ok(()) => {
                self.metrics.inbox_handed_back(left.len());
                tracing::warn!(
                    count = left.len(),
                    "in-flight events did not finish in time; handed back to the store"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                count = left.len(),
                "cannot hand in-flight events back; another process takes them over when \
                 their lease expires"
            ),
        }
        for id in left {
            self.queue.done(id);
        }
    }

    async fn process(&self, item: InboxItem) {
        // Only a takeover can end it here: tries that failed in a way that can pass are bounded
        // by time instead (they count attempts too, so a long outage followed by a takeover
        // also ends here).
        if item.taken_over && item.attempts >= MAX_ATTEMPTS {
            tracing::error!(
                inbox_id = item.id,
                attempts = item.attempts,
                "an event was taken over too often (each holder stopped while running it); \
                 giving up on it"
            );
            self.finish(item.id, Finish::Failed).await;
            return;
        }
        if item.kind == "click" {
            self.interact.resume(item.id, &item.payload).await;
            return;
        }
        // Stored as a ReceivedMessage; a whole envelope is still read (stored by older versions).
        let msg = serde_json::from_str::<ReceivedMessage>(&item.payload)
            .ok()
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&item.payload)
                    .ok()
                    .and_then(|v| ReceivedMessage::from_event(&v).ok())
            });
        let Some(msg) = msg else {
            tracing::error!(
                inbox_id = item.id,
                "stored event is not a readable message; dropping it"
            );
            self.finish(item.id, Finish::Failed).await;
            return;
        };
        let span = crate::ingest::event_span(&msg);
        self.handle(item, msg).instrument(span).await;
    }

    /// Runs one readable message, inside its event's span.
    async fn handle(&self, item: InboxItem, msg: ReceivedMessage) {
        match self.chat.handle(&msg).await {
            Ok(Some(answer)) => {
                let key = format!("message:{}", msg.message_id);
                let stored = self
                    .outbox
                    .finish_with(item.id, key, &answer.delivery, answer.audit)
                    .await;
                if let Err(e) = stored {
                    tracing::error!(error = %e, inbox_id = item.id, "cannot store the answer; the event runs again once its lease expires");
                }
            }
            Ok(None) => self.finish(item.id, Finish::Done).await,
            // A failure that can pass is tried again for as long as an answer would be
            // (`give_up_after`), the pause doubling up to a minute, waiting in the store.
            Err(e) if e.is_retryable() && !self.expired(&item) => {
                tracing::warn!(error = %e, attempt = item.attempts + 1, "message failed; will retry");
                let pause =
                    Duration::from_secs(2u64.pow(u32::try_from(item.attempts).unwrap_or(0).min(6)))
                        .min(self.retry_pause_max);
                match self
                    .store
                    .retry_inbox(self.queue.owner(), item.id, pause)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        inbox_id = item.id,
                        "the lease was lost before the retry was stored; its new holder runs it"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store the retry; the event runs again once its lease expires")
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "message failed for good");
                self.finish(item.id, Finish::Failed).await;
            }
        }
    }

    /// Whether `give_up_after` has passed since the event arrived (by the bot's clock).
    fn expired(&self, item: &InboxItem) -> bool {
        let limit = i64::try_from(self.give_up_after.as_secs()).unwrap_or(i64::MAX);
        self.clock.now_secs().saturating_sub(item.received_at) > limit
    }

    async fn finish(&self, id: i64, how: Finish) {
        if let Err(e) = self.store.finish(id, how, self.clock.now_secs()).await {
            tracing::error!(error = %e, inbox_id = id, "cannot mark the event finished; it runs again once its lease expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn held_leases_are_bounded_and_waited_for() {
        use futures_util::FutureExt;
        let queue = Queue::new(LEASE);
        for id in 0..i64::try_from(SLOTS + MAX_CLICKS).unwrap_or(0) {
            assert!(queue.hold_click(id));
        }
        assert!(!queue.hold_click(-1), "no more than the bound is held");
        let mut idle = Box::pin(queue.idle());
        let mut ids = queue.held();
        let last = ids.pop().unwrap_or_default();
        for id in ids {
            queue.done(id);
        }
        assert!(
            (&mut idle).now_or_never().is_none(),
            "one lease is still held"
        );
        queue.done(last);
        assert!(idle.now_or_never().is_some(), "idle once every lease ended");
        assert!(queue.held().is_empty());
    }

    #[test]
    fn each_start_has_its_own_owner() {
        assert_ne!(Queue::new(LEASE).owner(), Queue::new(LEASE).owner());
    }
}

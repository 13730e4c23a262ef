//! Runs stored events after they were acknowledged. New events arrive on a [`Queue`] from the
//! routes; whatever a crash left pending was put on the same queue at start-up, and a
//! periodic sweep queues anything else still pending (an event whose store write succeeded
//! but whose answer was lost, so its redelivery was taken for a duplicate). An event ends in
//! the same store write that puts its answer in the outbox ([`crate::outbox`]), so the work
//! is never run again and the answer is never lost; sending it is the outbox's job. A re-run
//! after a crash mid-work cannot act twice: the PUT carries a derived idempotency key. An
//! event that fails in a way that can pass (Lark unreachable while the bot's own identity is
//! not yet known) is tried again once in memory, then waits pending in the store for the
//! sweeps, for as long as `ABORT_BOT_REPLY_RETRY` from its arrival.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chat::Chat;
use crate::clock::SharedClock;
use crate::lark::message::ReceivedMessage;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::store::{Finish, InboxItem, Store};

/// Tries of an event that failed in a way that can pass made in memory, a short pause apart;
/// after them the event waits in the store, and each sweep tries it again.
const TRIES_IN_MEMORY: i64 = 2;
/// Events handled at once.
const CONCURRENCY: usize = 32;
/// How long shutdown waits for in-flight events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// How often the store is swept for pending events nobody queued.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Events younger than this (by `received_at`) are left to their route: it may be about to
/// queue them. The in-flight set already prevents a double queue; this keeps the sweep off
/// the hot path entirely.
pub const SWEEP_GRACE: Duration = Duration::from_secs(30);

/// The ids this process has queued and not yet finished (also while a retry waits), and
/// those finished since the current sweep began, whose pending row the sweep may have read
/// just before they were finished.
#[derive(Default)]
struct Tracked {
    in_flight: HashSet<i64>,
    finished: HashSet<i64>,
}

/// The way into the worker: every item sent is tracked until the worker finishes it, so the
/// sweep (or anyone else) can never queue the same event twice. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<InboxItem>,
    tracked: Arc<Mutex<Tracked>>,
}

impl Queue {
    /// A queue and the receiver to hand to [`Worker::run`].
    pub fn new() -> (Queue, mpsc::UnboundedReceiver<InboxItem>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracked = Arc::default();
        (Queue { tx, tracked }, rx)
    }

    /// Queues `item` unless it is already in flight (or was finished during the current
    /// sweep); true if it was queued.
    pub fn send(&self, item: InboxItem) -> bool {
        let id = item.id;
        {
            let mut t = self.lock();
            if t.finished.contains(&id) || !t.in_flight.insert(id) {
                return false;
            }
        }
        if self.tx.send(item).is_err() {
            self.lock().in_flight.remove(&id);
            return false;
        }
        true
    }

    /// Puts an item that is already in flight back on the channel (a retry).
    fn resend(&self, item: InboxItem) {
        let id = item.id;
        if self.tx.send(item).is_err() {
            self.lock().in_flight.remove(&id);
        }
    }

    /// The item is no longer in flight; a sweep under way must not queue it either.
    fn finished(&self, id: i64) {
        let mut t = self.lock();
        t.in_flight.remove(&id);
        t.finished.insert(id);
    }

    /// Called before a sweep reads the store: what was finished before that read is no
    /// longer pending there, so only finishes from now on need remembering.
    fn sweep_begins(&self) {
        self.lock().finished.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        // The set stays consistent even if a holder panicked: each update is one call.
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Worker {
    pub store: Store,
    pub chat: Arc<Chat>,
    /// Where the answers go.
    pub outbox: Outbox,
    pub clock: SharedClock,
    pub retention: Duration,
    /// How often to sweep the store for pending events ([`SWEEP_EVERY`]; shorter in tests).
    pub sweep_every: Duration,
    /// How old a pending event must be before the sweep queues it ([`SWEEP_GRACE`]).
    pub sweep_grace: Duration,
    /// Counts sweeps and what they queued.
    pub metrics: Arc<Metrics>,
    /// `ABORT_BOT_REPLY_RETRY`: how long, from its arrival, an event that fails in a way that
    /// can pass (Lark unreachable while the bot's identity is unknown) is tried again; as
    /// long as an answer is retried.
    pub give_up_after: Duration,
}

impl Worker {
    /// Runs until `shutdown` turns true, then finishes what is in flight.
    pub async fn run(
        self,
        mut queue: mpsc::UnboundedReceiver<InboxItem>,
        requeue: Queue,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        let mut purge = tokio::time::interval(Duration::from_secs(3600));
        // Start-up already queued everything pending: the first sweep waits a full interval.
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + this.sweep_every,
            this.sweep_every,
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                item = queue.recv() => {
                    let Some(item) = item else { break };
                    let Ok(permit) = limit.clone().acquire_owned().await else { break };
                    let this = this.clone();
                    let requeue = requeue.clone();
                    tasks.spawn(async move {
                        this.process(item, requeue).await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = purge.tick() => {
                    let before = this.clock.now_secs()
                        - i64::try_from(this.retention.as_secs()).unwrap_or(i64::MAX);
                    if let Err(e) = this.store.purge(before).await {
                        tracing::warn!(error = %e, "purging old dedup keys failed");
                    }
                }
                _ = sweep.tick() => this.sweep(&requeue).await,
            }
        }
        if !tasks.is_empty() {
            tracing::info!(in_flight = tasks.len(), "finishing in-flight events");
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "in-flight events did not finish in time; they stay pending for the next start"
            );
        }
    }

    /// Queues pending events that are old enough and not in flight here.
    async fn sweep(&self, queue: &Queue) {
        queue.sweep_begins();
        let pending = match self.store.pending(usize::MAX).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot sweep the inbox for pending events");
                return;
            }
        };
        let grace = i64::try_from(self.sweep_grace.as_secs()).unwrap_or(i64::MAX);
        let before = self.clock.now_secs().saturating_sub(grace);
        let mut queued = 0_usize;
        for item in pending {
            if item.received_at <= before && queue.send(item) {
                queued += 1;
            }
        }
        if queued > 0 {
            tracing::warn!(
                count = queued,
                "queued pending events nothing else had queued"
            );
        }
        self.metrics.sweep(queued);
    }

    async fn process(&self, item: InboxItem, requeue: Queue) {
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
            self.finish(item.id, Finish::Failed, &requeue).await;
            return;
        };
        let span =
            tracing::info_span!("message", message_id = %msg.message_id, chat_id = %msg.chat_id);
        match self.chat.handle(&msg).instrument(span).await {
            Ok(Some(answer)) => {
                let key = format!("message:{}", msg.message_id);
                if let Err(e) = self.outbox.finish_with(item.id, key, &answer).await {
                    tracing::error!(error = %e, inbox_id = item.id, "cannot store the answer; a later sweep runs the event again");
                }
                requeue.finished(item.id);
            }
            Ok(None) => self.finish(item.id, Finish::Done, &requeue).await,
            Err(e) if e.is_retryable() && !self.expired(&item) => {
                if let Err(e) = self.store.note_attempt(item.id).await {
                    tracing::error!(error = %e, "cannot count the attempt");
                }
                let attempts = item.attempts + 1;
                if attempts >= TRIES_IN_MEMORY {
                    // Nothing of it is held here while it waits: it stays pending in the store
                    // and the next sweep runs it again.
                    tracing::warn!(error = %e, attempt = attempts, "message failed; it waits in the inbox for the next sweep");
                    requeue.finished(item.id);
                    return;
                }
                tracing::warn!(error = %e, attempt = attempts, "message failed; will retry");
                let next = InboxItem { attempts, ..item };
                // Still in flight while it waits, so the sweep leaves it alone.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    requeue.resend(next);
                });
            }
            Err(e) if e.is_retryable() => {
                tracing::error!(error = %e, "message failed until ABORT_BOT_REPLY_RETRY ran out; dropped");
                self.finish(item.id, Finish::Failed, &requeue).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "message failed for good");
                self.finish(item.id, Finish::Failed, &requeue).await;
            }
        }
    }

    /// Whether `give_up_after` has passed since the event arrived (by the bot's clock).
    fn expired(&self, item: &InboxItem) -> bool {
        let limit = i64::try_from(self.give_up_after.as_secs()).unwrap_or(i64::MAX);
        self.clock.now_secs().saturating_sub(item.received_at) > limit
    }

    async fn finish(&self, id: i64, how: Finish, queue: &Queue) {
        if let Err(e) = self.store.finish(id, how, self.clock.now_secs()).await {
            tracing::error!(error = %e, inbox_id = id, "cannot mark the event finished; a later sweep runs it again");
        }
        // Only after the store write: a sweep must not read it as pending and find it idle.
        queue.finished(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64) -> InboxItem {
        InboxItem {
            id,
            kind: "message".into(),
            payload: "{}".into(),
            attempts: 0,
            received_at: 0,
        }
    }

    #[test]
    fn an_item_in_flight_is_not_queued_again() {
        let (queue, mut rx) = Queue::new();
        assert!(queue.send(item(1)));
        assert!(!queue.send(item(1)), "queued, not yet finished");
        assert_eq!(rx.try_recv().map(|i| i.id), Ok(1));
        assert!(!queue.send(item(1)), "received, not yet finished");
        // A retry goes back on the channel while staying in flight.
        queue.resend(item(1));
        assert_eq!(rx.try_recv().map(|i| i.id), Ok(1));
        assert!(!queue.send(item(1)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_item_finished_during_a_sweep_is_not_queued_by_it() {
        let (queue, mut rx) = Queue::new();
        assert!(queue.send(item(7)));
        let _ = rx.try_recv();
        queue.sweep_begins();
        // The sweep read 7 as pending, then the worker finished it.
        queue.finished(7);
        assert!(!queue.send(item(7)));
        // The next sweep reads the store afresh: if 7 is still pending there (its finish
        // was lost), it runs again.
        queue.sweep_begins();
        assert!(queue.send(item(7)));
    }

    #[test]
    fn nothing_stays_in_flight_once_the_worker_is_gone() {
        let (queue, rx) = Queue::new();
        drop(rx);
        assert!(!queue.send(item(3)));
        assert!(queue.lock().in_flight.is_empty());
    }
}

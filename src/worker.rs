//! Runs stored events after they were acknowledged. New events arrive on a channel from the
//! routes; whatever a crash left pending was put on the same channel at start-up. Each
//! event is finished in the store only after its reply went out, so nothing is lost; a
//! redelivery cannot act twice because the PUT and the reply carry derived idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chat::Chat;
use crate::clock::SharedClock;
use crate::lark::message::ReceivedMessage;
use crate::store::{Finish, InboxItem, Store};

/// Attempts before an event is given up on (and logged as failed).
const MAX_ATTEMPTS: i64 = 5;
/// Events handled at once.
const CONCURRENCY: usize = 32;
/// How long shutdown waits for in-flight events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

pub struct Worker {
    pub store: Store,
    pub chat: Arc<Chat>,
    pub clock: SharedClock,
    pub retention: Duration,
}

impl Worker {
    /// Runs until `shutdown` turns true, then finishes what is in flight.
    pub async fn run(
        self,
        mut queue: mpsc::UnboundedReceiver<InboxItem>,
        requeue: mpsc::UnboundedSender<InboxItem>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        let mut purge = tokio::time::interval(Duration::from_secs(3600));
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

    async fn process(&self, item: InboxItem, requeue: mpsc::UnboundedSender<InboxItem>) {
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
        let span =
            tracing::info_span!("message", message_id = %msg.message_id, chat_id = %msg.chat_id);
        match self.chat.handle(&msg).instrument(span).await {
            Ok(_) => self.finish(item.id, Finish::Done).await,
            Err(e) if e.is_retryable() && item.attempts + 1 < MAX_ATTEMPTS => {
                tracing::warn!(error = %e, attempt = item.attempts + 1, "message failed; will retry");
                if let Err(e) = self.store.note_attempt(item.id).await {
                    tracing::error!(error = %e, "cannot count the attempt");
                }
                let delay =
                    Duration::from_secs(2u64.pow(u32::try_from(item.attempts).unwrap_or(0).min(6)));
                let next = InboxItem {
                    attempts: item.attempts + 1,
                    ..item
                };
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = requeue.send(next);
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "message failed for good");
                self.finish(item.id, Finish::Failed).await;
            }
        }
    }

    async fn finish(&self, id: i64, how: Finish) {
        if let Err(e) = self.store.finish(id, how, self.clock.now_secs()).await {
            tracing::error!(error = %e, inbox_id = id, "cannot mark the event finished; it will run again after a restart");
        }
    }
}

//! Delivery of the cards the bot answers with, as a step of its own. The work (the PUT) ends
//! by storing its card in the outbox, in the same store write that finishes the event, and is
//! never run again; this loop then sends what is due, retrying a failure that can pass
//! (network, 5xx, rate limit) with jittered backoff (pauses of at most 60 s in the first hour,
//! at most 10 min after) for `ABORT_BOT_REPLY_RETRY`. A failure that can never pass
//! (withdrawn message, bot not in the chat, a card Lark refuses) is recorded with its code and
//! dropped. The loop reads the outbox in bounded pages; each entry it takes is leased, so a
//! crash mid-try leaves it due again after the lease, and a restart delivers it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::lark::client::{LarkClient, LarkError};
use crate::metrics::Metrics;
use crate::store::{AuditRecord, NewDelivery, OutboxItem, Store, StoreError};

/// Entries taken per page (and sent at once).
const PAGE: usize = 32;
/// How long a taken entry is not due again: longer than one try can take (three upstream
/// timeouts and their backoff), shorter than the contract's 60 s pause.
const LEASE: Duration = Duration::from_secs(45);
/// How long a page under way at shutdown may go on.
const FINAL_GRACE: Duration = Duration::from_secs(3);
/// A delayed-update token is valid this long after the click (lark.md §3.4).
pub const CARD_TOKEN_VALID: Duration = Duration::from_secs(30 * 60);
/// A delayed-update token takes at most this many uses (lark.md §3.4: "plan for 2").
const CARD_TOKEN_USES: i64 = 2;

/// One card to deliver, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delivery {
    /// A reply to message `to`; `uuid` makes Lark drop a repeat within an hour (§4.2). With
    /// `patch_after`, the message Lark answers with is then PATCHed with the same card: an
    /// "in progress" reply with this uuid may have landed though its answer was lost, and
    /// Lark then names that message instead of sending a new one.
    Reply {
        /// The chat of message `to`: replies are paced per chat (`protocol/lark.md` §4.3).
        chat: String,
        to: String,
        uuid: String,
        in_thread: bool,
        card: Value,
        patch_after: bool,
    },
    /// A PATCH of a card the bot sent (§3.3).
    Patch { message_id: String, card: Value },
    /// The result of a click: the delayed-update API with the click's `token` while it is
    /// valid (until `token_until`, Unix ms; ≤ 2 uses, §3.4), else a PATCH of `message_id`.
    Update {
        token: Option<String>,
        token_until: i64,
        message_id: Option<String>,
        card: Value,
    },
    /// A card sent to a person or chat (`receive_id_type` open_id, chat_id, …; §4.3).
    Send {
        receive_id_type: String,
        receive_id: String,
        uuid: String,
        card: Value,
    },
}

impl Delivery {
    /// The message it answers or changes and the chat it goes to, as far as it says (for the
    /// delivery's span; empty when unknown). Never the click's card token.
    fn names(&self) -> (&str, &str) {
        match self {
            Delivery::Reply { chat, to, .. } => (to, chat),
            Delivery::Patch { message_id, .. } => (message_id, ""),
            Delivery::Update { message_id, .. } => (message_id.as_deref().unwrap_or_default(), ""),
            Delivery::Send {
                receive_id_type,
                receive_id,
                ..
            } => (
                "",
                if receive_id_type == "chat_id" {
                    receive_id
                } else {
                    ""
                },
            ),
        }
    }

    /// The entry to store under `key`.
    pub fn stored_as(&self, key: String) -> NewDelivery {
        NewDelivery {
            key,
            payload: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// How long and how often a failed delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// `ABORT_BOT_REPLY_RETRY`: after this long since it was stored, a delivery is dropped.
    pub give_up_after: Duration,
    /// The pause after the first failure; it doubles with each one after.
    pub first_pause: Duration,
}

/// The longest pause between two tries during the first hour, and after it (the contract).
const MAX_PAUSE_FIRST_HOUR: Duration = Duration::from_secs(60);
const MAX_PAUSE_AFTER: Duration = Duration::from_secs(600);
const FIRST_HOUR: Duration = Duration::from_secs(3600);

/// The pause after a first failed try.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);

impl Schedule {
    /// The pause before the next try after `attempts` failed tries (this one included),
    /// `age` after the entry was stored: doubling, capped, jittered down to half, and at least
    /// what a rate limit asked for (still under the cap).
    pub fn pause(&self, attempts: i64, age: Duration, at_least: Option<Duration>) -> Duration {
        let cap = if age < FIRST_HOUR {
            MAX_PAUSE_FIRST_HOUR
        } else {
            MAX_PAUSE_AFTER
        };
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let full = self
            .first_pause
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(cap);
        let jittered = full.mul_f64(rand::rng().random_range(0.5..=1.0));
        jittered.max(at_least.unwrap_or_default()).min(cap)
    }
}

/// What producers use to put a card in the outbox and wake the loop. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    clock: SharedClock,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Stores a delivery under `key` (once) and wakes the loop.
    pub async fn add(&self, key: String, delivery: &Delivery) -> Result<(), StoreError> {
        self.store
            .add_delivery(delivery.stored_as(key), self.clock.now_millis())
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Finishes inbox item `id` as done, storing its answer and the audit lines of what it
    /// did in the same write; wakes the loop.
    pub async fn finish_with(
        &self,
        id: i64,
        key: String,
        delivery: &Delivery,
        audit: Vec<AuditRecord>,
    ) -> Result<(), StoreError> {
        self.store
            .finish_delivering(id, delivery.stored_as(key), audit, self.clock.now_millis())
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The loop that sends what the outbox holds.
pub struct Sender {
    pub outbox: Outbox,
    pub lark: Arc<LarkClient>,
    pub metrics: Arc<Metrics>,
    pub schedule: Schedule,
    /// How often to look for entries that became due (besides being woken).
    pub poll: Duration,
}

/// How one try ended.
enum Tried {
    Delivered,
    /// Can pass: try again later (at least this long, when a rate limit said so).
    Retry(String, Option<Duration>),
    /// Can never succeed: the code to record.
    Final(String),
}

impl Sender {
    /// Sends until `shutdown` turns true, then for at most [`FINAL_GRACE`] more: the page
    /// under way, and what became due meanwhile (the answers of the events the worker
    /// finished at shutdown). What is left stays in the store (a cut-short try is due again
    /// after its lease) for the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut tick = tokio::time::interval(this.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut page = Box::pin(this.clone().page());
        loop {
            let taken = tokio::select! {
                taken = &mut page => taken,
                _ = shutdown.changed() => break,
            };
            if taken < PAGE {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => {
                        page = Box::pin(this.clone().page());
                        break;
                    }
                    () = this.outbox.wake.notified() => {}
                    _ = tick.tick() => {}
                }
            }
            page = Box::pin(this.clone().page());
        }
        let deadline = tokio::time::Instant::now() + FINAL_GRACE;
        while let Ok(taken) = tokio::time::timeout_at(deadline, &mut page).await {
            if taken == 0 {
                break;
            }
            page = Box::pin(this.clone().page());
        }
    }

    /// Takes one page of due entries and tries each; how many it took.
    async fn page(self: Arc<Self>) -> usize {
        let store = &self.outbox.store;
        let now = self.outbox.clock.now_millis();
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let items = match store.due_deliveries(now, lease, PAGE).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return 0;
            }
        };
        let taken = items.len();
        let mut tries = JoinSet::new();
        for item in items {
            let this = self.clone();
            tries.spawn(async move { this.deliver(item).await });
        }
        while tries.join_next().await.is_some() {}
        match store.deliveries_waiting().await {
            Ok(n) => self.metrics.outbox_waiting(n),
            Err(e) => tracing::warn!(error = %e, "cannot count the outbox"),
        }
        taken
    }

    async fn deliver(&self, item: OutboxItem) {
        let store = &self.outbox.store;
        let clock = &self.outbox.clock;
        let tried = match serde_json::from_str::<Delivery>(&item.payload) {
            Ok(d) => {
                let (message_id, chat) = d.names();
                let span = tracing::info_span!(
                    "delivery",
                    key = %item.key,
                    attempt = item.attempts + 1,
                    message_id,
                    chat,
                );
                self.try_once(&d, item.attempts).instrument(span).await
            }
            Err(_) => Tried::Final("unreadable".into()),
        };
        let now = clock.now_millis();
        let age = Duration::from_millis(u64::try_from(now - item.created_at).unwrap_or(0));
        let ended = match tried {
            Tried::Delivered => {
                store
                    .end_delivery(item.id, None, now.div_euclid(1000))
                    .await
            }
            Tried::Final(code) => {
                tracing::warn!(key = %item.key, code = %code, "a reply can never be delivered; dropped");
                self.metrics.outbox_given_up(&code);
                store
                    .end_delivery(item.id, Some(code), now.div_euclid(1000))
                    .await
            }
            Tried::Retry(code, _) if age >= self.schedule.give_up_after => {
                tracing::error!(key = %item.key, code = %code, attempts = item.attempts + 1,
                    "a reply failed until ABORT_BOT_REPLY_RETRY ran out; dropped");
                self.metrics.outbox_given_up("expired");
                store
                    .end_delivery(
                        item.id,
                        Some(format!("expired:{code}")),
                        now.div_euclid(1000),
                    )
                    .await
            }
            Tried::Retry(code, at_least) => {
                let pause = self.schedule.pause(item.attempts + 1, age, at_least);
                tracing::warn!(key = %item.key, code = %code, attempt = item.attempts + 1,
                    pause_ms = pause.as_millis(), "a reply failed; will retry");
                let next = now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(0));
                store.retry_delivery(item.id, next).await
            }
        };
        if let Err(e) = ended {
            // The lease runs out and the entry is tried again: a reply carries its uuid and a
            // PATCH sets the same card, so a second try does not double anything.
            tracing::error!(error = %e, key = %item.key, "cannot record how a delivery went");
        }
    }

    async fn try_once(&self, d: &Delivery, attempts: i64) -> Tried {
        let lark = &self.lark;
        let result = match d {
            Delivery::Reply {
                chat,
                to,
                uuid,
                in_thread,
                card,
                patch_after,
            } => match lark.reply_card(chat, to, card, *in_thread, uuid).await {
                Ok(id) if *patch_after => lark.patch_card(&id, card).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            Delivery::Patch { message_id, card } => lark.patch_card(message_id, card).await,
            Delivery::Update {
                token,
                token_until,
                message_id,
                card,
            } => {
                let usable = token
                    .as_deref()
                    .filter(|_| self.outbox.clock.now_millis() < *token_until)
                    .filter(|_| attempts < CARD_TOKEN_USES);
                let by_token = match usable {
                    Some(t) => Some(lark.delayed_update(t, message_id.as_deref(), card).await),
                    None => None,
                };
                match (by_token, message_id) {
                    (Some(Ok(())), _) => Ok(()),
                    (Some(Err(e)), Some(id)) => {
                        tracing::warn!(error = %e, "delayed card update failed; patching instead");
                        lark.patch_card(id, card).await
                    }
                    (Some(Err(e)), None) => Err(e),
                    (None, Some(id)) => lark.patch_card(id, card).await,
                    (None, None) => return Tried::Final("no_target".into()),
                }
            }
            Delivery::Send {
                receive_id_type,
                receive_id,
                uuid,
                card,
            } => lark
                .send_card(receive_id_type, receive_id, card, uuid)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Tried::Delivered,
            Err(e) => judge(&e),
        }
    }
}

/// Whether a failed send can pass. Lark's IM business errors (lark.md §4.2, §4.3: 230002 bot
/// not in the chat, 230011/230110 message withdrawn or deleted, 230031 message older than 14
/// days, 230013/230029/230035/230053 the person cannot be messaged, 230025/230099 the card is
/// refused, 230001 bad parameters) never pass by waiting; network failures, timeouts, 5xx and
/// rate limits (429, 99991400, 230020) do ([`LarkError::is_retryable`]).
fn judge(e: &LarkError) -> Tried {
    let code = error_code(e);
    if !e.is_retryable() {
        return Tried::Final(code);
    }
    let at_least = match e {
        LarkError::RateLimited { retry_after, .. } => Some(*retry_after),
        // No try before the circuit lets a probe through.
        LarkError::Unavailable(open) => Some(open.retry_in),
        _ => None,
    };
    Tried::Retry(code, at_least)
}

/// The code recorded for a failure: Lark's `code`, else what kind of failure it was.
fn error_code(e: &LarkError) -> String {
    match e {
        LarkError::Api {
            code: 0, status, ..
        } => format!("http_{status}"),
        LarkError::Api { code, .. } | LarkError::RateLimited { code, .. } => code.to_string(),
        LarkError::Transport(_) => "network".into(),
        LarkError::Timeout => "timeout".into(),
        LarkError::Malformed { status } => format!("http_{status}"),
        LarkError::Unavailable(_) => "circuit_open".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_within_the_contract_caps() {
        let s = Schedule {
            give_up_after: Duration::from_secs(86_400),
            first_pause: FIRST_PAUSE,
        };
        let early = Duration::from_secs(10);
        for attempts in 1..40 {
            let p = s.pause(attempts, early, None);
            assert!(p <= MAX_PAUSE_FIRST_HOUR, "{attempts}: {p:?}");
            let full = Duration::from_secs(1 << (attempts - 1).min(20)).min(MAX_PAUSE_FIRST_HOUR);
            assert!(p >= full / 2, "{attempts}: {p:?} under half of {full:?}");
        }
        let late = Duration::from_secs(2 * 3600);
        let p = s.pause(30, late, None);
        assert!(
            p > MAX_PAUSE_FIRST_HOUR / 2 && p <= MAX_PAUSE_AFTER,
            "{p:?}"
        );
        assert!(p >= MAX_PAUSE_AFTER / 2, "{p:?}");
    }

    #[test]
    fn a_rate_limit_stretches_the_pause_but_not_past_the_cap() {
        let s = Schedule {
            give_up_after: Duration::from_secs(86_400),
            first_pause: FIRST_PAUSE,
        };
        let early = Duration::from_secs(10);
        assert!(s.pause(1, early, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(
            s.pause(1, early, Some(Duration::from_secs(3600))),
            MAX_PAUSE_FIRST_HOUR
        );
    }

    #[test]
    fn final_codes_are_not_retried_and_passing_ones_are() {
        let api = |code, status| LarkError::Api {
            code,
            msg: String::new(),
            status,
        };
        for code in [230_002, 230_011, 230_110, 230_031, 230_053, 230_099] {
            assert!(
                matches!(judge(&api(code, 400)), Tried::Final(c) if c == code.to_string()),
                "{code}"
            );
        }
        assert!(matches!(judge(&api(1, 503)), Tried::Retry(..)));
        assert!(matches!(judge(&LarkError::Timeout), Tried::Retry(c, None) if c == "timeout"));
        let limited = LarkError::RateLimited {
            code: 99_991_400,
            msg: String::new(),
            status: 429,
            retry_after: Duration::from_secs(7),
        };
        assert!(matches!(judge(&limited), Tried::Retry(_, Some(d)) if d == Duration::from_secs(7)));
    }

    #[test]
    fn a_delivery_reads_back_as_stored() {
        let d = Delivery::Reply {
            chat: "oc_1".into(),
            to: "om_1".into(),
            uuid: "u".into(),
            in_thread: true,
            card: serde_json::json!({"schema": "2.0"}),
            patch_after: false,
        };
        let stored = d.stored_as("message:om_1".into());
        assert_eq!(stored.key, "message:om_1");
        assert_eq!(
            serde_json::from_str::<Delivery>(&stored.payload).ok(),
            Some(d)
        );
    }
}

//! The durable store: the inbox of accepted events, dedup keys, chat bindings, the record
//! of sent PUTs, the cards sent before their result, who used each interactive card, the
//! outbox of cards waiting to be delivered, and the audit trail.
//!
//! [`Store`] is one handle over two backends, chosen by `ABORT_BOT_STORE`: SQLite (`sqlite`,
//! the default: one file, nothing to run beside the bot) and Redis (`redis`, for hosts
//! without a durable disk; its module doc lists the keys). Both give the same guarantees: a
//! caller hears back only once its write is durable, and every multi-key operation is
//! atomic, so the routes and the worker never need to know which one they talk to.
//!
//! The inbox is the queue. Nothing waits in a process's memory: the worker claims a bounded
//! page of due events with [`Store::claim_inbox`], each leased to it (owner + expiry), renews
//! its leases while it works ([`Store::renew_inbox`]), hands them back on shutdown
//! ([`Store::release_inbox`]) and stores a retry's pause with the event
//! ([`Store::retry_inbox`]); finishing an event drops its lease. An event under a live lease
//! is claimed by nobody else, and one whose lease expired (its holder died) is taken over by
//! the next claim and counted as an attempt. Lease times are read from the store's own clock
//! (the Redis server's `TIME`; for SQLite, one process per file, the host's), never compared
//! with a bot's, so bots whose clocks disagree cannot both hold an event.

mod redis;
mod redis_url;
mod sqlite;
mod sqlite_lock;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use redis_url::{RedisUrl, redact as redact_store_url};

pub use self::redis::RedisWait;

use self::redis::RedisStore;
use self::sqlite::SqliteStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Sqlite(String),
    /// The message never holds the Redis password.
    #[error("redis store error: {0}")]
    Redis(String),
    #[error("the store has shut down")]
    Closed,
    /// Another process has the SQLite database open (one process per file).
    #[error(
        "{database} is in use by another abort-bot process{}: SQLite allows one process per \
         database file; stop that process, give this one its own ABORT_BOT_STORE, or use a \
         redis:// store to run several",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        database: String,
        holder: Option<u32>,
    },
}

/// What happened to an event offered to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored; the worker will run it.
    New(i64),
    /// This event_id was seen before.
    DuplicateEvent,
    /// A different event_id carried a message already stored (one message = one command).
    DuplicateMessage,
}

/// A stored event waiting to be run (`message`: a command; `click`: a card click that
/// outlived its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Tries that ended in a retry, and takeovers of a lease whose holder died, so far.
    pub attempts: i64,
    /// When it was accepted (Unix seconds, the bot's clock).
    pub received_at: i64,
    /// Claimed from a lease that had expired (its holder died or stalled), not from the
    /// queue of waiting items.
    pub taken_over: bool,
}

/// How many events wait in the inbox, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxStats {
    /// Not yet finished: waiting, leased, or pausing before a retry.
    pub pending: u64,
    /// When the oldest of them was accepted (Unix seconds), if any.
    pub oldest_received_at: Option<i64>,
}

/// How a stored event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Done,
    Failed,
}

/// Who took a card's one action, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardClaim {
    /// The click that took it (a redelivery of that click carries the same id).
    pub click_id: String,
    /// `go` or `cancel`.
    pub kind: String,
    pub by_open_id: String,
    pub claimed_at: i64,
    /// The card that shows the result, once there is one.
    pub result: Option<String>,
}

/// The answer to a claim on a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This click may act.
    Granted,
    /// Someone (or this very click, delivered before) already did.
    Held(CardClaim),
}

/// A claim on a card: the nonce its buttons share and the click that wants to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub nonce: String,
    pub click_id: String,
    pub kind: String,
    pub by_open_id: String,
    pub now: i64,
    /// After this the card cannot be clicked any more, so the claim can be forgotten.
    pub expires_at: i64,
    /// An unfinished claim taken before this is taken over (its holder crashed): acting
    /// again is safe because the PUT's idempotency key comes from the card and the clicker,
    /// not the click, and an item already changed answers a second person's PUT with
    /// 20007/20008.
    pub stale_before: i64,
}

/// A card to deliver, offered to the outbox once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// What it answers (`message:<message_id>`, `click:<nonce>`, …): the same key is stored
    /// only once.
    pub key: String,
    /// The delivery, as the outbox loop reads it back.
    pub payload: String,
}

/// A stored delivery that is due, taken for one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub key: String,
    pub payload: String,
    /// Tries that failed so far.
    pub attempts: i64,
    /// When it was stored (Unix milliseconds, the bot's clock).
    pub created_at: i64,
}

/// One line of the audit trail, as stored: text and numbers only (what they mean is the
/// business of `crate::audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Names the line: a line written again under the same key is kept once.
    pub key: String,
    /// When it was decided (Unix milliseconds, the bot's clock).
    pub at_ms: i64,
    /// The chat it came from, when known (for filtering).
    pub chat_id: Option<String>,
    pub actor_open_id: String,
    pub actor_name: Option<String>,
    pub project_key: String,
    pub work_item_type: String,
    pub work_item_id: String,
    pub work_item_name: Option<String>,
    pub action: String,
    pub option: String,
    pub reason: String,
    pub outcome: String,
    pub code: Option<i64>,
    pub source: String,
    pub source_id: String,
}

/// A page of the audit trail: lines at or after `since_ms` (and after the cursor `after`,
/// the `(at_ms, key)` of the last line of the previous page), oldest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub since_ms: i64,
    pub chat_id: Option<String>,
    pub actor_open_id: Option<String>,
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether a line passes the chat and actor filters.
    fn admits(&self, r: &AuditRecord) -> bool {
        self.chat_id
            .as_ref()
            .is_none_or(|c| r.chat_id.as_ref() == Some(c))
            && self
                .actor_open_id
                .as_ref()
                .is_none_or(|a| &r.actor_open_id == a)
    }
}

/// A duration in whole milliseconds, as the stores count lease times.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

/// Calls the same method on whichever backend this store is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(b) => b.$method($($arg),*).await,
            Backend::Redis(b) => b.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens (or creates) the SQLite database file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::open(path)?),
        })
    }

    /// A store that lives in memory only (the sandbox).
    pub fn in_memory() -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(SqliteStore::in_memory()?),
        })
    }

    /// Connects to Redis; dedup keys live for `retention` (ABORT_BOT_DEDUP_RETENTION).
    pub async fn open_redis(url: &RedisUrl, retention: Duration) -> Result<Store, StoreError> {
        Self::open_redis_waiting(url, retention, None).await
    }

    /// Like [`Store::open_redis`]; with `wait`, every write that acknowledges a delivery
    /// waits for that many replicas (ABORT_BOT_REDIS_WAIT_REPLICAS).
    pub async fn open_redis_waiting(
        url: &RedisUrl,
        retention: Duration,
        wait: Option<RedisWait>,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Redis(RedisStore::open(url, retention, wait).await?),
        })
    }

    /// What about the store's server could lose or evict an acknowledged event, or make every
    /// delivery fail, when that can be known: a Redis server without `appendfsync always`,
    /// with an eviction policy, refusing `CONFIG GET`, or with fewer replicas than waited
    /// for. SQLite: nothing (its file is fsynced on every commit).
    pub async fn warnings(&self) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite(_) => Vec::new(),
            Backend::Redis(b) => b.warnings().await,
        }
    }

    /// Stores a message event unless its event_id or its message was seen before.
    pub async fn accept_message(
        &self,
        event_id: String,
        message_id: String,
        payload: String,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        dispatch!(self.accept_message(event_id, message_id, payload, now))
    }

    /// Marks an event_id seen; false if it was already.
    pub async fn mark_seen(&self, event_id: String, now: i64) -> Result<bool, StoreError> {
        dispatch!(self.mark_seen(event_id, now))
    }

    /// Stores a card click that outlived its answer as an inbox item of kind `click`, leased
    /// to `owner` for `lease` (the process answering it goes on working on it; if it dies,
    /// another claims it once the lease expires). `Some(id)` when stored; `None` when this
    /// click was stored before.
    pub async fn hold_click(
        &self,
        owner: &str,
        click_id: String,
        payload: String,
        now: i64,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let owner = owner.to_owned();
        let lease_ms = millis(lease);
        dispatch!(self.hold_click(owner, click_id, payload, now, lease_ms))
    }

    /// Up to `limit` unfinished events, oldest first, without claiming them (for tests and
    /// tools; the worker claims with [`Store::claim_inbox`]).
    pub async fn pending(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        dispatch!(self.pending(limit))
    }

    /// Claims up to `limit` events that are due (new, handed back, or a retry whose pause has
    /// passed) or whose lease has expired (a takeover, counted as an attempt), oldest due
    /// first; each is leased to `owner` until the store's clock passes now + `lease`. An
    /// event under a live lease is never claimed by anyone.
    pub async fn claim_inbox(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<InboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        let lease_ms = millis(lease);
        dispatch!(self.claim_inbox(owner, limit, lease_ms))
    }

    /// Extends `owner`'s leases on `ids` to now + `lease`; answers the ids whose lease this
    /// owner no longer holds (expired and taken over, or finished).
    pub async fn renew_inbox(
        &self,
        owner: &str,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        let ids = ids.to_vec();
        let lease_ms = millis(lease);
        dispatch!(self.renew_inbox(owner, ids, lease_ms))
    }

    /// Hands `owner`'s leases on `ids` back (shutdown): those events are due again at once,
    /// for any process.
    pub async fn release_inbox(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let owner = owner.to_owned();
        let ids = ids.to_vec();
        dispatch!(self.release_inbox(owner, ids))
    }

    /// A try at event `id` failed for a reason that can pass: counts the attempt, drops
    /// `owner`'s lease, and makes it due again after `pause` (the wait lives in the store).
    /// False if `owner` no longer held it (nothing changed).
    pub async fn retry_inbox(
        &self,
        owner: &str,
        id: i64,
        pause: Duration,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        let pause_ms = millis(pause);
        dispatch!(self.retry_inbox(owner, id, pause_ms))
    }

    /// How many events are unfinished, and when the oldest of them was accepted.
    pub async fn inbox_stats(&self) -> Result<InboxStats, StoreError> {
        dispatch!(self.inbox_stats())
    }

    /// Ends an event (and drops any lease on it).
    pub async fn finish(&self, id: i64, how: Finish, now: i64) -> Result<(), StoreError> {
        dispatch!(self.finish(id, how, now))
    }

    /// Finishes an inbox item as done (dropping any lease on it) and stores the card that
    /// answers it and the audit lines of what it did, in one write: the work is never run
    /// again, its answer is never lost, and nothing it did goes unrecorded. `now_ms` in
    /// milliseconds.
    pub async fn finish_delivering(
        &self,
        id: i64,
        delivery: NewDelivery,
        audit: Vec<AuditRecord>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.finish_delivering(id, delivery, audit, now_ms))
    }

    /// Stores a card to deliver, due at once, unless its key was stored before; true if new.
    pub async fn add_delivery(
        &self,
        delivery: NewDelivery,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.add_delivery(delivery, now_ms))
    }

    /// At most `limit` deliveries due at `now_ms`, oldest due first; each is taken for
    /// `lease_ms` (not due again until then, so a second process or a crash mid-try cannot
    /// lose or double it).
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        dispatch!(self.due_deliveries(now_ms, lease_ms, limit))
    }

    /// A try failed for a reason that can pass: counts it and makes it due at `next_at_ms`.
    pub async fn retry_delivery(&self, id: i64, next_at_ms: i64) -> Result<(), StoreError> {
        dispatch!(self.retry_delivery(id, next_at_ms))
    }

    /// Ends a delivery: `None` = delivered, `Some(code)` = given up with that error code
    /// (kept, like finished inbox items, until purged). `now` in Unix seconds.
    pub async fn end_delivery(
        &self,
        id: i64,
        given_up: Option<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.end_delivery(id, given_up, now))
    }

    /// How many deliveries are waiting (due or not).
    pub async fn deliveries_waiting(&self) -> Result<u64, StoreError> {
        dispatch!(self.deliveries_waiting())
    }

    /// When the next waiting delivery is due (Unix ms), if any is waiting.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        dispatch!(self.next_delivery_due())
    }

    /// The error code a delivery was given up with (None: waiting, delivered, or unknown).
    pub async fn delivery_given_up(&self, key: String) -> Result<Option<String>, StoreError> {
        dispatch!(self.delivery_given_up(key))
    }

    /// Records that a PUT with this idempotency key is about to be sent.
    /// False means it was sent before (a retry after a crash, or a redelivery).
    pub async fn record_put(&self, idem_uuid: String, now: i64) -> Result<bool, StoreError> {
        dispatch!(self.record_put(idem_uuid, now))
    }

    /// Takes a card's one action for a click, unless another click holds it.
    pub async fn claim_card(&self, req: ClaimRequest) -> Result<Claim, StoreError> {
        dispatch!(self.claim_card(req))
    }

    /// Stores the card that shows a claimed action's result, and the audit lines of that
    /// action, in one write.
    pub async fn finish_card(
        &self,
        nonce: String,
        result: String,
        audit: Vec<AuditRecord>,
    ) -> Result<(), StoreError> {
        dispatch!(self.finish_card(nonce, result, audit))
    }

    /// Adds audit lines of decisions that changed nothing and finish nothing (a click refused
    /// for who clicked it); a line whose key is stored already is kept once.
    pub async fn record_audit(&self, audit: Vec<AuditRecord>) -> Result<(), StoreError> {
        dispatch!(self.record_audit(audit))
    }

    /// One page of the audit trail ([`AuditQuery`]), oldest first.
    pub async fn audit_page(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        dispatch!(self.audit_page(query))
    }

    /// Forgets audit lines older than `before_ms` (ABORT_BOT_AUDIT_RETENTION).
    pub async fn purge_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        dispatch!(self.purge_audit(before_ms))
    }

    /// Gives a card's one action back, durably, when `click_id` holds it and has not
    /// finished: the click failed for the clicker alone, so the card stays usable. True if
    /// released.
    pub async fn release_card(&self, nonce: String, click_id: String) -> Result<bool, StoreError> {
        dispatch!(self.release_card(nonce, click_id))
    }

    /// Remembers the message_id of the card that answers a command (sent before the result
    /// was known), so a retry or a restart updates that card instead of replying again.
    pub async fn remember_reply(
        &self,
        message_id: String,
        reply_id: String,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.remember_reply(message_id, reply_id, now))
    }

    /// The card already sent in answer to a command, if any.
    pub async fn reply_of(&self, message_id: String) -> Result<Option<String>, StoreError> {
        dispatch!(self.reply_of(message_id))
    }

    pub async fn binding(&self, chat_id: String) -> Result<Option<String>, StoreError> {
        dispatch!(self.binding(chat_id))
    }

    pub async fn bind(
        &self,
        chat_id: String,
        space: String,
        bound_by: String,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.bind(chat_id, space, bound_by, now))
    }

    /// Forgets dedup keys and finished events older than `before` (Unix seconds).
    pub async fn purge(&self, before: i64) -> Result<usize, StoreError> {
        dispatch!(self.purge(before))
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }
}

/// Reads the audit trail without disturbing a running bot: SQLite is opened read-only
/// (taking no lock, so the one-process rule does not refuse it while `serve` runs); Redis is
/// read through an ordinary connection.
pub struct AuditReader {
    backend: ReaderBackend,
}

enum ReaderBackend {
    Sqlite(sqlite::ReadOnly),
    Store(Store),
}

impl AuditReader {
    /// Opens a SQLite database file read-only; it must exist.
    pub fn open_sqlite(path: &Path) -> Result<AuditReader, StoreError> {
        Ok(AuditReader {
            backend: ReaderBackend::Sqlite(sqlite::ReadOnly::open(path)?),
        })
    }

    /// Reads through an open store (Redis, or a store this process holds).
    pub fn of(store: Store) -> AuditReader {
        AuditReader {
            backend: ReaderBackend::Store(store),
        }
    }

    /// One page of the audit trail, oldest first.
    pub async fn page(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        match &self.backend {
            ReaderBackend::Sqlite(r) => r.audit_page(query).await,
            ReaderBackend::Store(s) => s.audit_page(query).await,
        }
    }
}

//! The SQLite backend: one file, one writer thread.
//!
//! The writer thread owns the connection. Requests queue up while a commit is under way and
//! are then applied together in one transaction (group commit). A request of several statements
//! runs in its own savepoint, so a failure undoes only its own writes (a single statement is
//! atomic by itself). A caller hears back only after the commit: an acknowledged event is on disk
//! (WAL, `synchronous = FULL`). One process per database file: see `sqlite_lock`.
//!
//! The inbox is a leased queue: `due_at` (ms) is when an unfinished event may next be
//! claimed, and a claim sets it to the lease's end, with `lease_owner` and `lease_until`.
//! So one indexed range (`status = 'pending' AND due_at <= now`, oldest due first) finds both
//! what waits and what an expired lease left, and a page of claims is one write through the
//! writer thread. Lease times come from this host's clock: one process per file, so there
//! is no other clock to disagree with. At open every lease still recorded belongs to a
//! process that is gone (the file lock proves it), so those events are made due at once (an
//! attempt each, as a takeover is).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::oneshot;

use super::sqlite_lock::{self, ProcessLock};
use super::{
    Accepted, AuditQuery, AuditRecord, CardClaim, Claim, ClaimRequest, Finish, InboxItem,
    InboxStats, NewDelivery, OutboxItem, StoreError,
};

/// How many queued requests one transaction takes at most.
const MAX_BATCH: usize = 512;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// The SQLite backend's handle; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: std_mpsc::Sender<Job>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    finished_at INTEGER,
    due_at      INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (status, id);
CREATE TABLE IF NOT EXISTS bindings (
    chat_id  TEXT PRIMARY KEY,
    space    TEXT NOT NULL,
    bound_by TEXT NOT NULL,
    bound_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_puts (
    idem_uuid TEXT PRIMARY KEY,
    sent_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replies (
    message_id TEXT PRIMARY KEY,
    reply_id   TEXT NOT NULL,
    sent_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'waiting',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    code        TEXT,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_at);
CREATE TABLE IF NOT EXISTS card_claims (
    nonce      TEXT PRIMARY KEY,
    click_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    by_open_id TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    result     TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id             INTEGER PRIMARY KEY,
    line_key       TEXT NOT NULL UNIQUE,
    at_ms          INTEGER NOT NULL,
    chat_id        TEXT,
    actor_open_id  TEXT NOT NULL,
    actor_name     TEXT,
    project_key    TEXT NOT NULL,
    work_item_type TEXT NOT NULL,
    work_item_id   TEXT NOT NULL,
    work_item_name TEXT,
    action         TEXT NOT NULL,
    option         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    code           INTEGER,
    source         TEXT NOT NULL,
    source_id      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (at_ms, line_key);
CREATE INDEX IF NOT EXISTS audit_chat ON audit (chat_id, at_ms, line_key);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor_open_id, at_ms, line_key);
";

impl SqliteStore {
    /// Opens (or creates) the database file, unless another process has it open.
    pub(super) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let (lock, fresh) = sqlite_lock::acquire(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate_inbox(&conn)?;
        if fresh {
            // Whoever held these leases is gone: the file lock admits one process at a time
            // (a second store of this same process shares the leases it holds).
            // As a takeover, each counts as an attempt: an event that kills whoever runs it
            // ends after a few.
            conn.execute(
                "UPDATE inbox SET lease_owner = NULL, lease_until = NULL, due_at = ?1,
                     attempts = attempts + 1
                 WHERE status = 'pending' AND lease_owner IS NOT NULL",
                [now_ms()],
            )?;
        }
        Self::start(conn, Some(lock))
    }

    /// A store that lives in memory only (the sandbox).
    pub(super) fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::start(Connection::open_in_memory()?, None)
    }

    /// Starts the writer thread; it holds the file's lock for as long as it holds the
    /// connection.
    fn start(conn: Connection, lock: Option<Arc<ProcessLock>>) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate_inbox(&conn)?;
        let (jobs, rx) = std_mpsc::channel::<Job>();
        thread::Builder::new()
            .name("abort-bot-store".into())
            .spawn(move || {
                writer(conn, rx);
                drop(lock);
            })
            .map_err(|e| StoreError::Sqlite(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteStore { jobs })
    }

    /// Runs `f` (one statement, or only reads) in the writer's next transaction and answers
    /// after the commit.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(f).await
    }

    /// Like [`Self::run`], for `f` of several writes: they apply all or not at all.
    async fn run_atomic<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(move |conn| in_savepoint(conn, f)).await
    }

    async fn submit<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn).map_err(StoreError::from);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = tx.send(committed.and(result));
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a message event unless its event_id or its message was seen before.
    pub(super) async fn accept_message(
        &self,
        event_id: String,
        message_id: String,
        payload: String,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        self.run_atomic(move |c| {
            if !insert_seen(c, &event_id, now)? {
                return Ok(Accepted::DuplicateEvent);
            }
            let inserted = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO inbox (dedup_key, kind, payload, received_at, due_at)
                     VALUES (?1, 'message', ?2, ?3, ?4)",
                )?
                .execute(params![
                    format!("message:{message_id}"),
                    payload,
                    now,
                    now_ms()
                ])?;
            if inserted == 0 {
                return Ok(Accepted::DuplicateMessage);
            }
            Ok(Accepted::New(c.last_insert_rowid()))
        })
        .await
    }

    /// Marks an event_id seen; false if it was already.
    pub(super) async fn mark_seen(&self, event_id: String, now: i64) -> Result<bool, StoreError> {
        self.run(move |c| insert_seen(c, &event_id, now)).await
    }

    pub(super) async fn hold_click(
        &self,
        owner: String,
        click_id: String,
        payload: String,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.run(move |c| {
            let until = now_ms().saturating_add(lease_ms);
            let inserted = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO inbox
                         (dedup_key, kind, payload, received_at, due_at, lease_owner, lease_until)
                     VALUES (?1, 'click', ?2, ?3, ?4, ?5, ?4)",
                )?
                .execute(params![
                    format!("click:{click_id}"),
                    payload,
                    now,
                    until,
                    owner
                ])?;
            Ok((inserted == 1).then(|| c.last_insert_rowid()))
        })
        .await
    }

    pub(super) async fn pending(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, payload, attempts, received_at FROM inbox
                 WHERE status = 'pending' ORDER BY id LIMIT ?1",
            )?;
            let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(InboxItem {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    payload: r.get(2)?,
                    attempts: r.get(3)?,
                    received_at: r.get(4)?,
                    taken_over: false,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(super) async fn claim_inbox(
        &self,
        owner: String,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.run_atomic(move |c| {
            let now = now_ms();
            let mut items: Vec<InboxItem> = {
                let mut stmt = c.prepare_cached(
                    "SELECT id, kind, payload, attempts, received_at, lease_owner IS NOT NULL
                     FROM inbox WHERE status = 'pending' AND due_at <= ?1
                     ORDER BY due_at, id LIMIT ?2",
                )?;
                let rows = stmt.query_map(
                    params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        Ok(InboxItem {
                            id: r.get(0)?,
                            kind: r.get(1)?,
                            payload: r.get(2)?,
                            attempts: r.get(3)?,
                            received_at: r.get(4)?,
                            taken_over: r.get(5)?,
                        })
                    },
                )?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let until = now.saturating_add(lease_ms);
            let mut lease = c.prepare_cached(
                "UPDATE inbox SET due_at = ?2, lease_owner = ?3, lease_until = ?2,
                     attempts = attempts + ?4
                 WHERE id = ?1",
            )?;
            for item in &mut items {
                // A takeover counts as an attempt: an event that kills whoever runs it ends.
                let took = i64::from(item.taken_over);
                lease.execute(params![item.id, until, owner, took])?;
                item.attempts += took;
            }
            Ok(items)
        })
        .await
    }

    pub(super) async fn renew_inbox(
        &self,
        owner: String,
        ids: Vec<i64>,
        lease_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.run_atomic(move |c| {
            let until = now_ms().saturating_add(lease_ms);
            let mut renew = c.prepare_cached(
                "UPDATE inbox SET due_at = ?2, lease_until = ?2
                 WHERE id = ?1 AND status = 'pending' AND lease_owner = ?3",
            )?;
            let mut lost = Vec::new();
            for id in ids {
                if renew.execute(params![id, until, owner])? == 0 {
                    lost.push(id);
                }
            }
            Ok(lost)
        })
        .await
    }

    pub(super) async fn release_inbox(
        &self,
        owner: String,
        ids: Vec<i64>,
    ) -> Result<(), StoreError> {
        self.run_atomic(move |c| {
            let now = now_ms();
            let mut release = c.prepare_cached(
                "UPDATE inbox SET due_at = ?2, lease_owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND status = 'pending' AND lease_owner = ?3",
            )?;
            for id in ids {
                release.execute(params![id, now, owner])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn retry_inbox(
        &self,
        owner: String,
        id: i64,
        pause_ms: i64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE inbox SET attempts = attempts + 1, due_at = ?2, lease_owner = NULL,
                     lease_until = NULL
                 WHERE id = ?1 AND status = 'pending' AND lease_owner = ?3",
            )?
            .execute(params![id, now_ms().saturating_add(pause_ms), owner])
            .map(|n| n == 1)
        })
        .await
    }

    pub(super) async fn inbox_stats(&self) -> Result<InboxStats, StoreError> {
        self.run(|c| {
            c.prepare_cached(
                "SELECT COUNT(*), MIN(received_at) FROM inbox WHERE status = 'pending'",
            )?
            .query_row([], |r| {
                Ok(InboxStats {
                    pending: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    oldest_received_at: r.get(1)?,
                })
            })
        })
        .await
    }

    pub(super) async fn finish(&self, id: i64, how: Finish, now: i64) -> Result<(), StoreError> {
        let status = match how {
            Finish::Done => "done",
            Finish::Failed => "failed",
        };
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE inbox SET status = ?2, finished_at = ?3, lease_owner = NULL,
                     lease_until = NULL
                 WHERE id = ?1",
            )?
            .execute(params![id, status, now])
            .map(|_| ())
        })
        .await
    }

    /// Finishes an inbox item as done and stores its answer and audit lines, all or nothing.
    pub(super) async fn finish_delivering(
        &self,
        id: i64,
        delivery: NewDelivery,
        audit: Vec<AuditRecord>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.run_atomic(move |c| {
            c.prepare_cached(
                "UPDATE inbox SET status = 'done', finished_at = ?2, lease_owner = NULL,
                     lease_until = NULL
                 WHERE id = ?1",
            )?
            .execute(params![id, now_ms.div_euclid(1000)])?;
            insert_audit(c, &audit)?;
            insert_delivery(c, &delivery, now_ms).map(|_| ())
        })
        .await
    }

    pub(super) async fn add_delivery(
        &self,
        delivery: NewDelivery,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.run(move |c| insert_delivery(c, &delivery, now_ms))
            .await
    }

    pub(super) async fn due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.run_atomic(move |c| {
            let items: Vec<OutboxItem> = {
                let mut stmt = c.prepare_cached(
                    "SELECT id, dedup_key, payload, attempts, created_at FROM outbox
                     WHERE status = 'waiting' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
                )?;
                let rows = stmt.query_map(
                    params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        Ok(OutboxItem {
                            id: r.get(0)?,
                            key: r.get(1)?,
                            payload: r.get(2)?,
                            attempts: r.get(3)?,
                            created_at: r.get(4)?,
                        })
                    },
                )?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut lease = c.prepare_cached("UPDATE outbox SET next_at = ?2 WHERE id = ?1")?;
            for item in &items {
                lease.execute(params![item.id, now_ms.saturating_add(lease_ms)])?;
            }
            Ok(items)
        })
        .await
    }

    pub(super) async fn retry_delivery(&self, id: i64, next_at_ms: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2
                 WHERE id = ?1 AND status = 'waiting'",
            )?
            .execute(params![id, next_at_ms])
            .map(|_| ())
        })
        .await
    }

    pub(super) async fn end_delivery(
        &self,
        id: i64,
        given_up: Option<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        let status = if given_up.is_some() {
            "given_up"
        } else {
            "delivered"
        };
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET status = ?2, code = ?3, finished_at = ?4
                 WHERE id = ?1 AND status = 'waiting'",
            )?
            .execute(params![id, status, given_up, now])
            .map(|_| ())
        })
        .await
    }

    pub(super) async fn deliveries_waiting(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 'waiting'")?
                .query_row([], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        self.run(|c| {
            c.prepare_cached("SELECT MIN(next_at) FROM outbox WHERE status = 'waiting'")?
                .query_row([], |r| r.get(0))
        })
        .await
    }

    pub(super) async fn delivery_given_up(
        &self,
        key: String,
    ) -> Result<Option<String>, StoreError> {
        self.run(move |c| {
            c.query_row(
                "SELECT code FROM outbox WHERE dedup_key = ?1 AND status = 'given_up'",
                [key],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    /// Records that a PUT with this idempotency key is about to be sent.
    /// False means it was sent before (a retry after a crash, or a redelivery).
    pub(super) async fn record_put(&self, idem_uuid: String, now: i64) -> Result<bool, StoreError> {
        self.run(move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO sent_puts (idem_uuid, sent_at) VALUES (?1, ?2)",
            )?
            .execute(params![idem_uuid, now])
            .map(|n| n == 1)
        })
        .await
    }

    /// Takes a card's one action for a click, unless another click holds it.
    pub(super) async fn claim_card(&self, req: ClaimRequest) -> Result<Claim, StoreError> {
        self.run(move |c| {
            let held = c
                .query_row(
                    "SELECT click_id, kind, by_open_id, claimed_at, result FROM card_claims
                     WHERE nonce = ?1",
                    [&req.nonce],
                    |r| {
                        Ok(CardClaim {
                            click_id: r.get(0)?,
                            kind: r.get(1)?,
                            by_open_id: r.get(2)?,
                            claimed_at: r.get(3)?,
                            result: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            match held {
                Some(h) if h.result.is_some() || h.claimed_at >= req.stale_before => {
                    return Ok(Claim::Held(h));
                }
                Some(h) if h.click_id == req.click_id => return Ok(Claim::Held(h)),
                _ => {}
            }
            c.execute(
                "INSERT INTO card_claims (nonce, click_id, kind, by_open_id, claimed_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (nonce) DO UPDATE SET click_id = ?2, kind = ?3, by_open_id = ?4,
                     claimed_at = ?5",
                params![
                    req.nonce,
                    req.click_id,
                    req.kind,
                    req.by_open_id,
                    req.now,
                    req.expires_at
                ],
            )?;
            Ok(Claim::Granted)
        })
        .await
    }

    /// Stores the card that shows a claimed action's result and its audit lines, all or
    /// nothing.
    pub(super) async fn finish_card(
        &self,
        nonce: String,
        result: String,
        audit: Vec<AuditRecord>,
    ) -> Result<(), StoreError> {
        self.run_atomic(move |c| {
            c.execute(
                "UPDATE card_claims SET result = ?2 WHERE nonce = ?1",
                params![nonce, result],
            )?;
            insert_audit(c, &audit)
        })
        .await
    }

    pub(super) async fn record_audit(&self, audit: Vec<AuditRecord>) -> Result<(), StoreError> {
        self.run_atomic(move |c| insert_audit(c, &audit)).await
    }

    pub(super) async fn audit_page(
        &self,
        query: AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.run(move |c| select_audit(c, &query)).await
    }

    pub(super) async fn purge_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.run(move |c| c.execute("DELETE FROM audit WHERE at_ms < ?1", [before_ms]))
            .await
    }

    /// Gives a card's one action back when this click holds it unfinished.
    pub(super) async fn release_card(
        &self,
        nonce: String,
        click_id: String,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            c.execute(
                "DELETE FROM card_claims WHERE nonce = ?1 AND click_id = ?2 AND result IS NULL",
                params![nonce, click_id],
            )
            .map(|n| n == 1)
        })
        .await
    }

    pub(super) async fn remember_reply(
        &self,
        message_id: String,
        reply_id: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO replies (message_id, reply_id, sent_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (message_id) DO UPDATE SET reply_id = ?2, sent_at = ?3",
                params![message_id, reply_id, now],
            )
            .map(|_| ())
        })
        .await
    }

    pub(super) async fn reply_of(&self, message_id: String) -> Result<Option<String>, StoreError> {
        self.run(move |c| {
            c.query_row(
                "SELECT reply_id FROM replies WHERE message_id = ?1",
                [message_id],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    pub(super) async fn binding(&self, chat_id: String) -> Result<Option<String>, StoreError> {
        self.run(move |c| {
            c.query_row(
                "SELECT space FROM bindings WHERE chat_id = ?1",
                [chat_id],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    pub(super) async fn bind(
        &self,
        chat_id: String,
        space: String,
        bound_by: String,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO bindings (chat_id, space, bound_by, bound_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (chat_id) DO UPDATE SET space = ?2, bound_by = ?3, bound_at = ?4",
                params![chat_id, space, bound_by, now],
            )
            .map(|_| ())
        })
        .await
    }

    /// Forgets dedup keys and finished events older than `before` (Unix seconds).
    pub(super) async fn purge(&self, before: i64) -> Result<usize, StoreError> {
        self.run_atomic(move |c| {
            let a = c.execute("DELETE FROM seen_events WHERE seen_at < ?1", [before])?;
            let b = c.execute(
                "DELETE FROM inbox WHERE status != 'pending' AND finished_at < ?1",
                [before],
            )?;
            let d = c.execute("DELETE FROM sent_puts WHERE sent_at < ?1", [before])?
                + c.execute("DELETE FROM replies WHERE sent_at < ?1", [before])?;
            // A card past its interaction window can no longer be clicked.
            let e = c.execute("DELETE FROM card_claims WHERE expires_at < ?1", [before])?;
            let f = c.execute(
                "DELETE FROM outbox WHERE status != 'waiting' AND finished_at < ?1",
                [before],
            )?;
            Ok(a + b + d + e + f)
        })
        .await
    }

    /// Whether the store answers (for `/readyz`).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

/// A read-only connection to a database file another process may be writing: it takes no
/// lock and changes nothing (WAL lets it read while the writer commits).
pub(super) struct ReadOnly {
    conn: Arc<std::sync::Mutex<Connection>>,
}

impl ReadOnly {
    pub(super) fn open(path: &Path) -> Result<ReadOnly, StoreError> {
        if !path.exists() {
            return Err(StoreError::Sqlite(format!(
                "{}: no such database file",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(ReadOnly {
            conn: Arc::new(std::sync::Mutex::new(conn)),
        })
    }

    pub(super) async fn audit_page(
        &self,
        query: AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A database written by a version without the audit table has no lines yet.
            let has_table = conn
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'",
                    [],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !has_table {
                return Ok(Vec::new());
            }
            select_audit(&conn, &query).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Sqlite(format!("the reader stopped: {e}")))?
    }
}

/// Adds audit lines; a line whose key is there already is kept as it was.
fn insert_audit(c: &Connection, lines: &[AuditRecord]) -> rusqlite::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut stmt = c.prepare_cached(
        "INSERT OR IGNORE INTO audit (line_key, at_ms, chat_id, actor_open_id, actor_name,
             project_key, work_item_type, work_item_id, work_item_name, action, option, reason,
             outcome, code, source, source_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    for l in lines {
        stmt.execute(params![
            l.key,
            l.at_ms,
            l.chat_id,
            l.actor_open_id,
            l.actor_name,
            l.project_key,
            l.work_item_type,
            l.work_item_id,
            l.work_item_name,
            l.action,
            l.option,
            l.reason,
            l.outcome,
            l.code,
            l.source,
            l.source_id
        ])?;
    }
    Ok(())
}

/// One page of audit lines, by the index that fits the filters.
fn select_audit(c: &Connection, q: &AuditQuery) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut sql = String::from(
        "SELECT line_key, at_ms, chat_id, actor_open_id, actor_name, project_key,
             work_item_type, work_item_id, work_item_name, action, option, reason, outcome,
             code, source, source_id
         FROM audit WHERE at_ms >= ?1",
    );
    let mut args: Vec<rusqlite::types::Value> = vec![q.since_ms.into()];
    if let Some(chat) = &q.chat_id {
        args.push(chat.clone().into());
        let _ = write!(sql, " AND chat_id = ?{}", args.len());
    }
    if let Some(actor) = &q.actor_open_id {
        args.push(actor.clone().into());
        let _ = write!(sql, " AND actor_open_id = ?{}", args.len());
    }
    if let Some((at_ms, key)) = &q.after {
        args.push((*at_ms).into());
        args.push(key.clone().into());
        let _ = write!(
            sql,
            " AND (at_ms, line_key) > (?{}, ?{})",
            args.len() - 1,
            args.len()
        );
    }
    args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    let _ = write!(sql, " ORDER BY at_ms, line_key LIMIT ?{}", args.len());
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(AuditRecord {
            key: r.get(0)?,
            at_ms: r.get(1)?,
            chat_id: r.get(2)?,
            actor_open_id: r.get(3)?,
            actor_name: r.get(4)?,
            project_key: r.get(5)?,
            work_item_type: r.get(6)?,
            work_item_id: r.get(7)?,
            work_item_name: r.get(8)?,
            action: r.get(9)?,
            option: r.get(10)?,
            reason: r.get(11)?,
            outcome: r.get(12)?,
            code: r.get(13)?,
            source: r.get(14)?,
            source_id: r.get(15)?,
        })
    })?;
    rows.collect()
}

/// Now on this host's clock, in Unix milliseconds: what lease and retry times count in.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Brings an inbox of an older file up to the leased layout: the lease columns are added,
/// every waiting event is due from when it was received, and the claim query gets its index.
fn migrate_inbox(c: &Connection) -> rusqlite::Result<()> {
    let has_due_at = c
        .prepare("SELECT 1 FROM pragma_table_info('inbox') WHERE name = 'due_at'")?
        .exists([])?;
    if !has_due_at {
        c.execute_batch(
            "BEGIN;
             ALTER TABLE inbox ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE inbox ADD COLUMN lease_owner TEXT;
             ALTER TABLE inbox ADD COLUMN lease_until INTEGER;
             UPDATE inbox SET due_at = received_at * 1000;
             COMMIT;",
        )?;
    }
    c.execute_batch("CREATE INDEX IF NOT EXISTS inbox_due ON inbox (status, due_at, id);")
}

/// Stores a delivery due at once; false if its key was stored before.
fn insert_delivery(c: &Connection, d: &NewDelivery, now_ms: i64) -> rusqlite::Result<bool> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO outbox (dedup_key, payload, created_at, next_at)
         VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![d.key, d.payload, now_ms])
    .map(|n| n == 1)
}

fn insert_seen(c: &Connection, event_id: &str, now: i64) -> rusqlite::Result<bool> {
    c.prepare_cached("INSERT OR IGNORE INTO seen_events (event_id, seen_at) VALUES (?1, ?2)")?
        .execute(params![event_id, now])
        .map(|n| n == 1)
}

/// Runs `f` inside a savepoint: on error its writes are rolled back, and the transaction
/// (shared with other requests) goes on.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    // Prepared once and reused: these run for every multi-statement request.
    let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    exec("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            exec("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            exec("ROLLBACK TO job")?;
            exec("RELEASE job")?;
            Err(e)
        }
    }
}

/// The writer loop: take what is queued, apply it in one transaction, commit, answer.
/// A job that cannot run is dropped, which its caller hears as [`StoreError::Closed`].
fn writer(mut conn: Connection, rx: std_mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Ok(tx) = conn.transaction() else {
            tracing::error!(
                "store: cannot begin a transaction; refusing {} requests",
                batch.len()
            );
            continue;
        };
        let dones: Vec<Done> = batch.into_iter().map(|job| job(&tx)).collect();
        let committed = tx.commit().map_err(StoreError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "store: commit failed");
        }
        for done in dones {
            done(committed.clone());
        }
    }
}

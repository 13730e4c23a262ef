//! The Redis backend, for hosts without a durable local disk.
//!
//! Every write is one command or one Lua script (atomic: nothing else runs in between, and a
//! script that could not run for lack of memory runs not at all), and a caller hears back
//! only after Redis has answered. That answer means "durable" only if the server runs with
//! `appendonly yes` and `appendfsync always`: then Redis writes and fsyncs its append-only
//! file before it replies. Start-up and `abort-bot check` warn when the server says
//! otherwise, when its `maxmemory-policy` lets it evict keys (anything but `noeviction`: a
//! full Redis would then drop pending events or dedup keys instead of refusing writes), and
//! when it refuses `CONFIG GET` so none of that can be checked.
//!
//! With [`RedisWait`] (`ABORT_BOT_REDIS_WAIT_REPLICAS`), the writes that acknowledge a
//! delivery (an accepted message, a seen click) also wait until that many replicas have
//! them: each is sent with `WAIT` in one pipeline on connections of their own (`WAIT` blocks
//! its connection, and the worker's traffic must not queue behind it). Fewer replicas in
//! time is an error, so the delivery gets a 5xx and Lark pushes it again; the write itself
//! stays on the primary, so the push that follows is a duplicate and nothing runs twice. Needs Redis 7 or later (or Valkey), standalone or a primary with replicas:
//! the scripts derive key names, so Redis Cluster is refused.
//!
//! Any number of bots may share one database: the inbox is a leased queue. Every unfinished
//! event is in exactly one of two sorted sets: `inbox:ready` (scored by when it is due: at
//! once, or after a retry's pause) or `inbox:leased` (scored by when its lease ends, its
//! owner in the item's hash). `claim_inbox.lua` moves a bounded page from one to the other,
//! taking expired leases first (a takeover: the holder died or stalled); the holder renews
//! its leases while it works and hands them back on shutdown. Every lease time is read from
//! the server's clock (`TIME` inside the scripts; Redis 7 replicates scripts by their
//! effects, so that is allowed), never from a bot's: bots whose clocks disagree by minutes
//! still never hold the same event at once.
//!
//! Why sorted sets and Lua rather than a Stream with a consumer group: a retry must wait
//! out its pause in the store, and a Stream entry cannot be hidden until a time (it would
//! need a second structure anyway); claiming, the message-id dedup and finishing together
//! with storing the answer must each be one atomic step over the item's hash and the outbox,
//! which scripts give and `XACK` beside them would not; `XAUTOCLAIM` counts deliveries, not
//! our attempts (a hand-back on shutdown is no attempt, a retry is), and a consumer group
//! keeps every entry until `XDEL`, so a second index for the purge and the metrics would be
//! needed regardless. Sorted sets give due times, leases, takeovers and counts in one place.
//!
//! Key layout (`abort-bot:` prefix; TTL = ABORT_BOT_DEDUP_RETENTION unless noted):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `abort-bot:schema` | string | layout version, `2` (a layout `1` database is migrated at open) |
//! | `abort-bot:seen:<event_id>` | string, TTL | seen_at of an event or click |
//! | `abort-bot:message:<message_id>` | string | inbox id of the message's command; TTL once finished |
//! | `abort-bot:inbox:next-id` | string | the last inbox id handed out |
//! | `abort-bot:click:<click_id>` | string | inbox id of a click that outlived its answer; TTL once finished |
//! | `abort-bot:inbox:<id>` | hash | kind (`message`, `click`), payload, attempts, status, received_at, finished_at, dedup, owner (while leased); TTL once finished |
//! | `abort-bot:inbox:pending` | sorted set | ids not yet finished, scored by id (oldest first) |
//! | `abort-bot:inbox:ready` | sorted set | unfinished ids nobody holds, scored by when they are due (ms, server clock) |
//! | `abort-bot:inbox:leased` | sorted set | unfinished ids someone holds, scored by when the lease ends (ms, server clock) |
//! | `abort-bot:put:<idem_uuid>` | string, TTL | sent_at of a PUT about to be sent |
//! | `abort-bot:card:<nonce>` | hash, TTL until expiry + retention | click_id, kind, by_open_id, claimed_at, expires_at, result |
//! | `abort-bot:reply:<message_id>` | string, TTL | message_id of the card that answers a command, once sent |
//! | `abort-bot:outbox:next-id` | string | the last outbox id handed out |
//! | `abort-bot:outbox:<id>` | hash | key, payload, attempts, created_at (ms), status, code, finished_at; TTL once ended |
//! | `abort-bot:outbox:due` | sorted set | ids of waiting deliveries, scored by when they are due (ms) |
//! | `abort-bot:outbox-key:<key>` | string | outbox id of a delivery's key (`message:<id>`, …); TTL once ended |
//! | `abort-bot:binding:<chat_id>` | hash, no TTL | space, bound_by, bound_at |
//! | `abort-bot:index:{seen,puts,cards,finished}` | sorted sets | what purge forgets, scored by the time it counts from |
//! | `abort-bot:audit:<line key>` | string (JSON), no TTL | one audit line; purged after ABORT_BOT_AUDIT_RETENTION |
//! | `abort-bot:index:audit` | sorted set | audit line keys, scored by their time (ms) |
//!
//! The TTLs keep Redis bounded even if purge never runs; the indexes let purge follow the
//! bot's (injectable) clock exactly as the SQLite store does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::AsyncConnectionConfig;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, ErrorKind, RedisError, Script, ServerErrorKind};

use super::redis_url::RedisUrl;
use super::{
    Accepted, AuditQuery, AuditRecord, CardClaim, Claim, ClaimRequest, Finish, InboxItem,
    InboxStats, NewDelivery, OutboxItem, StoreError,
};

/// Prefix of every key.
const PREFIX: &str = "abort-bot:";
/// Version of the key layout above (`1`: the inbox before leases, migrated at open).
const SCHEMA: &str = "2";
/// Members each purge step forgets per index, so one script never blocks Redis for long.
const PURGE_BATCH: usize = 1000;
/// How long one command may take before the caller hears an error (Lark waits 3 s).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnects a command waits for when the connection was lost (the first one at once, the
/// next after [`RECONNECT_PAUSE`]): with Redis gone a command fails within about a second
/// (two connect timeouts at worst), so a delivery gets its 5xx and `/readyz` its 503 while
/// Lark still waits for the answer. The next command tries again.
const RECONNECT_RETRIES: usize = 1;
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// At start-up Redis may still be starting beside the bot: the first connection is tried
/// this many times, the pause doubling from [`RECONNECT_PAUSE`] (about 12 s in all).
const START_TRIES: u32 = 7;

static REMEMBER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/remember.lua")));
static ACCEPT_MESSAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/accept_message.lua")));
static PENDING: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/pending.lua")));
static HOLD_CLICK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hold_click.lua")));
static CLAIM_INBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_inbox.lua")));
static RENEW_INBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/renew_inbox.lua")));
static RELEASE_INBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release_inbox.lua")));
static RETRY_INBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/retry_inbox.lua")));
static INBOX_STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/inbox_stats.lua")));
static MIGRATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/migrate.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/finish.lua")));
static CLAIM_CARD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_card.lua")));
static FINISH_CARD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/finish_card.lua")));
static RELEASE_CARD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release_card.lua")));
static FINISH_DELIVERING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/finish_delivering.lua")));
static ADD_DELIVERY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/add_delivery.lua")));
static DUE_DELIVERIES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/due_deliveries.lua")));
static RETRY_DELIVERY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/retry_delivery.lua")));
static END_DELIVERY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/end_delivery.lua")));
static DELIVERY_GIVEN_UP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delivery_given_up.lua")));
static PURGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/purge.lua")));
static ADD_AUDIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/add_audit.lua")));
static AUDIT_PAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/audit_page.lua")));
static PURGE_AUDIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/purge_audit.lua")));

fn key(parts: &[&str]) -> String {
    let mut k = String::from(PREFIX);
    k.push_str(&parts.join(":"));
    k
}

/// Waiting for replicas before a delivery is acknowledged (Redis `WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisWait {
    /// How many replicas must have the write.
    pub replicas: u32,
    /// How long Redis may wait for them.
    pub timeout: Duration,
}

/// The connections acknowledging writes go through when they wait for replicas. `WAIT`
/// blocks its connection, so one connection would make concurrent acknowledgements wait one
/// after another; Redis releases every client waiting for an offset the replicas reached at
/// once, so a few connections let them wait together.
#[derive(Clone)]
struct Acks {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
    wait: RedisWait,
}

/// How many connections acknowledging writes share when they wait for replicas.
const ACK_CONNECTIONS: usize = 8;

impl Acks {
    /// The next connection, round robin.
    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

/// The Redis backend's handle; cheap to clone (multiplexed, self-reconnecting connections).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// Set when acknowledging writes wait for replicas.
    acks: Option<Acks>,
    /// ABORT_BOT_DEDUP_RETENTION in whole seconds (at least 1).
    ttl: u64,
    /// For masking the password in errors.
    url: Arc<RedisUrl>,
}

/// A claim as `claim_card.lua` returns it.
type ClaimReply = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// How every connection to Redis is kept: commands time out after `response_timeout`, and a
/// lost connection is waited for only briefly ([`RECONNECT_RETRIES`]).
fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(RECONNECT_PAUSE)
        .set_max_delay(RECONNECT_PAUSE)
}

/// A connection manager, its first connection tried [`START_TRIES`] times while Redis is
/// unreachable (it may be starting); any other error fails at once.
async fn manager(
    client: &::redis::Client,
    config: ConnectionManagerConfig,
) -> Result<ConnectionManager, RedisError> {
    let mut pause = RECONNECT_PAUSE;
    for _ in 1..START_TRIES {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Err(e) if e.is_io_error() || e.is_timeout() => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    ConnectionManager::new_with_config(client.clone(), config).await
}

impl RedisStore {
    /// Connects (retrying a few times), checks the key layout, and answers once Redis does.
    pub(super) async fn open(
        url: &RedisUrl,
        retention: Duration,
        wait: Option<RedisWait>,
    ) -> Result<RedisStore, StoreError> {
        let url = Arc::new(url.clone());
        let fail =
            |e: RedisError| StoreError::Redis(format!("{url}: {}", url.scrub(&e.to_string())));
        let client = ::redis::Client::open(url.expose()).map_err(fail)?;
        // One plain attempt first: a wrong password fails at once instead of being retried
        // like an unreachable server (which may just be starting beside the bot).
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        match client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
        {
            Err(e) if !e.is_io_error() && !e.is_timeout() => return Err(fail(e)),
            _ => {}
        }
        let conn = manager(&client, manager_config(RESPONSE_TIMEOUT))
            .await
            .map_err(fail)?;
        let acks = match wait {
            None => None,
            Some(wait) => {
                // Redis answers once WAIT ends; the connection gives it a second more.
                let config = manager_config(wait.timeout + Duration::from_secs(1));
                let mut conns = Vec::with_capacity(ACK_CONNECTIONS);
                for _ in 0..ACK_CONNECTIONS {
                    let conn = manager(&client, config.clone()).await.map_err(fail)?;
                    conns.push(conn);
                }
                Some(Acks {
                    conns: conns.into(),
                    next: Arc::new(AtomicUsize::new(0)),
                    wait,
                })
            }
        };
        let store = RedisStore {
            conn,
            acks,
            ttl: retention.as_secs().max(1),
            url: url.clone(),
        };
        let found: String = store
            .run(
                &MIGRATE,
                &[
                    &key(&["schema"]),
                    &key(&["inbox", "pending"]),
                    &key(&["inbox", "ready"]),
                ],
                &[&PREFIX],
            )
            .await?;
        if found != SCHEMA {
            return Err(StoreError::Redis(format!(
                "{url}: holds abort-bot keys of layout {found} but this version uses layout {SCHEMA}"
            )));
        }
        Ok(store)
    }

    fn err(&self, e: RedisError) -> StoreError {
        StoreError::Redis(self.url.scrub(&e.to_string()))
    }

    /// What about the server could lose or evict an acknowledged event, or make every
    /// delivery fail: its persistence and eviction settings, whether `CONFIG GET` can read
    /// them at all (managed services often refuse it), and, when acknowledgements wait for
    /// replicas, whether that many are connected.
    pub(super) async fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut c = self.conn.clone();
        let config: Result<HashMap<String, String>, _> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .arg("maxmemory-policy")
            .query_async(&mut c)
            .await;
        let setting = |config: &HashMap<String, String>, name: &str| {
            config
                .get(name)
                .cloned()
                .unwrap_or_else(|| "(unset)".into())
        };
        match config {
            Ok(config) => {
                let appendonly = setting(&config, "appendonly");
                let appendfsync = setting(&config, "appendfsync");
                if appendonly != "yes" || appendfsync != "always" {
                    warnings.push(format!(
                        "the Redis server runs with appendonly {appendonly} and appendfsync \
                         {appendfsync}: an acknowledged event can be lost if Redis crashes; set \
                         `appendonly yes` and `appendfsync always` on the server"
                    ));
                }
                let policy = setting(&config, "maxmemory-policy");
                if policy != "noeviction" {
                    warnings.push(format!(
                        "the Redis server runs with maxmemory-policy {policy}: when it is full \
                         it can evict the bot's keys (pending events, dedup keys), losing a \
                         command or running one twice; set `maxmemory-policy noeviction` (a full \
                         Redis then refuses writes and Lark delivers again later)"
                    ));
                }
            }
            Err(e) => warnings.push(format!(
                "the Redis server refuses CONFIG GET ({}), as managed services often do: cannot \
                 check that it runs with appendonly yes, appendfsync always and \
                 maxmemory-policy noeviction; make sure it does, or an acknowledged event can be \
                 lost or evicted",
                self.url.scrub(&e.to_string())
            )),
        }
        if let Some(acks) = &self.acks {
            let info: Result<String, _> = ::redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await;
            let connected = info.ok().and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            });
            let wanted = acks.wait.replicas;
            match connected {
                Some(n) if n >= wanted => {}
                Some(n) => warnings.push(format!(
                    "ABORT_BOT_REDIS_WAIT_REPLICAS is {wanted} but the Redis server has {n} \
                     connected replicas: every delivery gets a 5xx (and is pushed again) until \
                     {wanted} are connected"
                )),
                None => warnings.push(format!(
                    "ABORT_BOT_REDIS_WAIT_REPLICAS is {wanted} but INFO replication does not say \
                     how many replicas the Redis server has"
                )),
            }
        }
        warnings
    }

    /// Runs one acknowledging script: with [`RedisWait`], in one pipeline with `WAIT` on the
    /// acknowledging connection, and an error unless enough replicas have the write in time.
    async fn run_acked<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&dyn ToArg],
    ) -> Result<T, StoreError> {
        let Some(acks) = &self.acks else {
            return self.run(script, keys, args).await;
        };
        let mut eval = ::redis::cmd("EVALSHA");
        eval.arg(script.get_hash()).arg(keys.len()).arg(keys);
        for a in args {
            a.add_to_cmd(&mut eval);
        }
        let wait = acks.wait;
        let timeout_ms = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = ::redis::pipe();
        pipe.add_command(eval)
            .cmd("WAIT")
            .arg(wait.replicas)
            .arg(timeout_ms);
        let mut c = acks.conn();
        let reply: Result<(T, u32), RedisError> = pipe.query_async(&mut c).await;
        let (value, reached) = match reply {
            // A server that has not seen the script yet (or lost it in a restart).
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(&mut c).await.map_err(|e| self.err(e))?;
                pipe.query_async(&mut c).await.map_err(|e| self.err(e))?
            }
            other => other.map_err(|e| self.err(e))?,
        };
        if reached < wait.replicas {
            return Err(StoreError::Redis(format!(
                "the write reached {reached} of the {} replicas ABORT_BOT_REDIS_WAIT_REPLICAS \
                 asks for within {timeout_ms} ms",
                wait.replicas
            )));
        }
        Ok(value)
    }

    /// Runs one script; its reply, or the error with the password masked.
    async fn run<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&dyn ToArg],
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            a.add_to(&mut inv);
        }
        let mut c = self.conn.clone();
        inv.invoke_async(&mut c).await.map_err(|e| self.err(e))
    }

    pub(super) async fn accept_message(
        &self,
        event_id: String,
        message_id: String,
        payload: String,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        let id: i64 = self
            .run_acked(
                &ACCEPT_MESSAGE,
                &[
                    &key(&["seen", &event_id]),
                    &key(&["index", "seen"]),
                    &key(&["message", &message_id]),
                    &key(&["inbox", "next-id"]),
                    &key(&["inbox", "pending"]),
                    &key(&["inbox", "ready"]),
                ],
                &[&event_id, &now, &self.ttl, &payload, &PREFIX],
            )
            .await?;
        Ok(match id {
            -1 => Accepted::DuplicateEvent,
            -2 => Accepted::DuplicateMessage,
            id => Accepted::New(id),
        })
    }

    /// A seen click acknowledges its delivery, so it waits for replicas when asked to.
    pub(super) async fn mark_seen(&self, event_id: String, now: i64) -> Result<bool, StoreError> {
        let new: i64 = self
            .run_acked(
                &REMEMBER,
                &[&key(&["seen", &event_id]), &key(&["index", "seen"])],
                &[&event_id, &now, &self.ttl],
            )
            .await?;
        Ok(new == 1)
    }

    /// Sets the PUT's dedup key with its TTL and indexes it for purge; false if it was there.
    pub(super) async fn record_put(&self, idem_uuid: String, now: i64) -> Result<bool, StoreError> {
        let new: i64 = self
            .run(
                &REMEMBER,
                &[&key(&["put", &idem_uuid]), &key(&["index", "puts"])],
                &[&idem_uuid, &now, &self.ttl],
            )
            .await?;
        Ok(new == 1)
    }

    /// A held click acknowledges its answer ("working on it"), so it waits for replicas
    /// when asked to.
    pub(super) async fn hold_click(
        &self,
        owner: String,
        click_id: String,
        payload: String,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let id: i64 = self
            .run_acked(
                &HOLD_CLICK,
                &[
                    &key(&["click", &click_id]),
                    &key(&["inbox", "next-id"]),
                    &key(&["inbox", "pending"]),
                    &key(&["inbox", "leased"]),
                ],
                &[&PREFIX, &payload, &now, &owner, &lease_ms],
            )
            .await?;
        Ok((id > 0).then_some(id))
    }

    pub(super) async fn pending(&self, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = i64::try_from(limit - 1).unwrap_or(-1);
        let rows: Vec<(i64, String, String, i64, i64)> = self
            .run(&PENDING, &[&key(&["inbox", "pending"])], &[&PREFIX, &last])
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, payload, attempts, received_at)| InboxItem {
                id,
                kind,
                payload,
                attempts,
                received_at,
                taken_over: false,
            })
            .collect())
    }

    pub(super) async fn claim_inbox(
        &self,
        owner: String,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let rows: Vec<(i64, String, String, i64, i64, i64)> = self
            .run(
                &CLAIM_INBOX,
                &[
                    &key(&["inbox", "ready"]),
                    &key(&["inbox", "leased"]),
                    &key(&["inbox", "pending"]),
                ],
                &[&PREFIX, &owner, &lease_ms, &limit],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, kind, payload, attempts, received_at, took)| InboxItem {
                    id,
                    kind,
                    payload,
                    attempts,
                    received_at,
                    taken_over: took == 1,
                },
            )
            .collect())
    }

    pub(super) async fn renew_inbox(
        &self,
        owner: String,
        ids: Vec<i64>,
        lease_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut args: Vec<&dyn ToArg> = vec![&PREFIX, &owner, &lease_ms];
        args.extend(ids.iter().map(|id| id as &dyn ToArg));
        self.run(&RENEW_INBOX, &[&key(&["inbox", "leased"])], &args)
            .await
    }

    pub(super) async fn release_inbox(
        &self,
        owner: String,
        ids: Vec<i64>,
    ) -> Result<(), StoreError> {
        let mut args: Vec<&dyn ToArg> = vec![&PREFIX, &owner];
        args.extend(ids.iter().map(|id| id as &dyn ToArg));
        self.run::<i64>(
            &RELEASE_INBOX,
            &[&key(&["inbox", "ready"]), &key(&["inbox", "leased"])],
            &args,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn retry_inbox(
        &self,
        owner: String,
        id: i64,
        pause_ms: i64,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .run(
                &RETRY_INBOX,
                &[
                    &key(&["inbox", &id.to_string()]),
                    &key(&["inbox", "ready"]),
                    &key(&["inbox", "leased"]),
                ],
                &[&id, &owner, &pause_ms],
            )
            .await?;
        Ok(done == 1)
    }

    pub(super) async fn inbox_stats(&self) -> Result<InboxStats, StoreError> {
        let (pending, oldest_received_at): (u64, Option<i64>) = self
            .run(&INBOX_STATS, &[&key(&["inbox", "pending"])], &[&PREFIX])
            .await?;
        Ok(InboxStats {
            pending,
            oldest_received_at,
        })
    }

    pub(super) async fn finish(&self, id: i64, how: Finish, now: i64) -> Result<(), StoreError> {
        let status = match how {
            Finish::Done => "done",
            Finish::Failed => "failed",
        };
        let item = key(&["inbox", &id.to_string()]);
        self.run::<i64>(
            &FINISH,
            &[
                &item,
                &key(&["inbox", "pending"]),
                &key(&["index", "finished"]),
                &key(&["inbox", "ready"]),
                &key(&["inbox", "leased"]),
            ],
            &[&id, &status, &now, &self.ttl],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn finish_delivering(
        &self,
        id: i64,
        delivery: NewDelivery,
        audit: Vec<AuditRecord>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let item = key(&["inbox", &id.to_string()]);
        let now = now_ms.div_euclid(1000);
        let lines = audit_args(&audit)?;
        let mut args: Vec<&dyn ToArg> = vec![
            &id,
            &now,
            &self.ttl,
            &PREFIX,
            &delivery.key,
            &delivery.payload,
            &now_ms,
        ];
        args.extend(lines.iter().map(|a| a as &dyn ToArg));
        self.run::<i64>(
            &FINISH_DELIVERING,
            &[
                &item,
                &key(&["inbox", "pending"]),
                &key(&["index", "finished"]),
                &key(&["outbox-key", &delivery.key]),
                &key(&["outbox", "next-id"]),
                &key(&["outbox", "due"]),
                &key(&["inbox", "ready"]),
                &key(&["inbox", "leased"]),
            ],
            &args,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn add_delivery(
        &self,
        delivery: NewDelivery,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let id: i64 = self
            .run(
                &ADD_DELIVERY,
                &[
                    &key(&["outbox-key", &delivery.key]),
                    &key(&["outbox", "next-id"]),
                    &key(&["outbox", "due"]),
                ],
                &[&PREFIX, &delivery.key, &delivery.payload, &now_ms],
            )
            .await?;
        Ok(id > 0)
    }

    pub(super) async fn due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, String, i64, i64)> = self
            .run(
                &DUE_DELIVERIES,
                &[&key(&["outbox", "due"])],
                &[&PREFIX, &now_ms, &lease_ms, &limit],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, payload, attempts, created_at)| OutboxItem {
                id,
                key,
                payload,
                attempts,
                created_at,
            })
            .collect())
    }

    pub(super) async fn retry_delivery(&self, id: i64, next_at_ms: i64) -> Result<(), StoreError> {
        self.run::<i64>(
            &RETRY_DELIVERY,
            &[&key(&["outbox", &id.to_string()]), &key(&["outbox", "due"])],
            &[&id, &next_at_ms],
        )
        .await?;
        Ok(())
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
        let code = given_up.unwrap_or_default();
        self.run::<i64>(
            &END_DELIVERY,
            &[&key(&["outbox", &id.to_string()]), &key(&["outbox", "due"])],
            &[&id, &status, &code, &now, &self.ttl, &PREFIX],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn deliveries_waiting(&self) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        c.zcard(key(&["outbox", "due"]))
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let mut c = self.conn.clone();
        let first: Vec<(i64, i64)> = c
            .zrange_withscores(key(&["outbox", "due"]), 0, 0)
            .await
            .map_err(|e| self.err(e))?;
        Ok(first.first().map(|(_, due)| *due))
    }

    pub(super) async fn delivery_given_up(&self, k: String) -> Result<Option<String>, StoreError> {
        self.run(&DELIVERY_GIVEN_UP, &[&key(&["outbox-key", &k])], &[&PREFIX])
            .await
    }

    pub(super) async fn claim_card(&self, req: ClaimRequest) -> Result<Claim, StoreError> {
        // Kept until the card can no longer be clicked, plus the retention, like SQLite.
        let left = u64::try_from(req.expires_at.saturating_sub(req.now)).unwrap_or(0);
        let ttl = left.saturating_add(self.ttl);
        let reply: ClaimReply = self
            .run(
                &CLAIM_CARD,
                &[&key(&["card", &req.nonce]), &key(&["index", "cards"])],
                &[
                    &req.nonce,
                    &req.click_id,
                    &req.kind,
                    &req.by_open_id,
                    &req.now,
                    &req.expires_at,
                    &req.stale_before,
                    &ttl,
                ],
            )
            .await?;
        Ok(match reply {
            (1, ..) => Claim::Granted,
            (_, click_id, kind, by_open_id, claimed_at, result) => Claim::Held(CardClaim {
                click_id: click_id.unwrap_or_default(),
                kind: kind.unwrap_or_default(),
                by_open_id: by_open_id.unwrap_or_default(),
                claimed_at: claimed_at.unwrap_or_default(),
                result,
            }),
        })
    }

    pub(super) async fn finish_card(
        &self,
        nonce: String,
        result: String,
        audit: Vec<AuditRecord>,
    ) -> Result<(), StoreError> {
        let lines = audit_args(&audit)?;
        let mut args: Vec<&dyn ToArg> = vec![&result, &PREFIX];
        args.extend(lines.iter().map(|a| a as &dyn ToArg));
        self.run::<i64>(&FINISH_CARD, &[&key(&["card", &nonce])], &args)
            .await?;
        Ok(())
    }

    pub(super) async fn record_audit(&self, audit: Vec<AuditRecord>) -> Result<(), StoreError> {
        if audit.is_empty() {
            return Ok(());
        }
        let lines = audit_args(&audit)?;
        let mut args: Vec<&dyn ToArg> = vec![&PREFIX];
        args.extend(lines.iter().map(|a| a as &dyn ToArg));
        self.run::<i64>(&ADD_AUDIT, &[], &args).await?;
        Ok(())
    }

    /// Reads the time-ordered index page by page in one script per page, then keeps the
    /// lines that pass the filters; memory stays within a page.
    pub(super) async fn audit_page(
        &self,
        query: AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after = query.after.clone();
        while out.len() < query.limit {
            let (after_at, after_key) = match &after {
                Some((at, k)) => (at.to_string(), k.clone()),
                None => (String::new(), String::new()),
            };
            let raw: Vec<String> = self
                .run(
                    &AUDIT_PAGE,
                    &[],
                    &[
                        &PREFIX,
                        &query.since_ms,
                        &after_at,
                        &after_key,
                        &query.limit,
                    ],
                )
                .await?;
            let Some(last) = raw.last() else { break };
            let last = parse_line(last)?;
            after = Some((last.at_ms, last.key));
            let full = raw.len() == query.limit;
            for line in &raw {
                let line = parse_line(line)?;
                if query.admits(&line) && out.len() < query.limit {
                    out.push(line);
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn purge_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (removed, more): (usize, i64) = self
                .run(&PURGE_AUDIT, &[], &[&PREFIX, &before_ms, &PURGE_BATCH])
                .await?;
            total += removed;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    pub(super) async fn release_card(
        &self,
        nonce: String,
        click_id: String,
    ) -> Result<bool, StoreError> {
        let released: i64 = self
            .run(
                &RELEASE_CARD,
                &[&key(&["card", &nonce]), &key(&["index", "cards"])],
                &[&nonce, &click_id],
            )
            .await?;
        Ok(released == 1)
    }

    pub(super) async fn remember_reply(
        &self,
        message_id: String,
        reply_id: String,
        _now: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.set_ex::<_, _, ()>(key(&["reply", &message_id]), reply_id, self.ttl)
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn reply_of(&self, message_id: String) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        c.get(key(&["reply", &message_id]))
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn binding(&self, chat_id: String) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        c.hget(key(&["binding", &chat_id]), "space")
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn bind(
        &self,
        chat_id: String,
        space: String,
        bound_by: String,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.hset_multiple::<_, _, _, ()>(
            key(&["binding", &chat_id]),
            &[
                ("space", space),
                ("bound_by", bound_by),
                ("bound_at", now.to_string()),
            ],
        )
        .await
        .map_err(|e| self.err(e))
    }

    pub(super) async fn purge(&self, before: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (removed, more): (usize, i64) = self
                .run(&PURGE, &[], &[&PREFIX, &before, &PURGE_BATCH])
                .await?;
            total += removed;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        ::redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// Audit lines as the scripts take them: triples of line key, time (ms) and the line as JSON.
fn audit_args(lines: &[AuditRecord]) -> Result<Vec<String>, StoreError> {
    let mut args = Vec::with_capacity(lines.len() * 3);
    for l in lines {
        let json = serde_json::to_string(l)
            .map_err(|e| StoreError::Redis(format!("cannot encode an audit line: {e}")))?;
        args.push(l.key.clone());
        args.push(l.at_ms.to_string());
        args.push(json);
    }
    Ok(args)
}

fn parse_line(raw: &str) -> Result<AuditRecord, StoreError> {
    serde_json::from_str(raw)
        .map_err(|e| StoreError::Redis(format!("an audit line is not readable: {e}")))
}

/// A script argument of any of the few types the scripts take.
trait ToArg: Sync {
    fn add_to(&self, inv: &mut ::redis::ScriptInvocation<'_>);
    fn add_to_cmd(&self, cmd: &mut ::redis::Cmd);
}

impl<T: ::redis::ToRedisArgs + Sync> ToArg for T {
    fn add_to(&self, inv: &mut ::redis::ScriptInvocation<'_>) {
        inv.arg(self);
    }

    fn add_to_cmd(&self, cmd: &mut ::redis::Cmd) {
        cmd.arg(self);
    }
}

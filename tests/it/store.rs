//! Backend conformance: the same scenarios run against the SQLite store and the Redis store
//! (a real `redis-server` per test), through the public [`Store`] API the bot uses. Then a
//! few things only Redis has: a server crash, reconnection, the warnings, and a
//! password that must never show.

use std::sync::Arc;
use std::time::Duration;

use abort_bot::store::{
    Accepted, Claim, ClaimRequest, Finish, InboxStats, NewDelivery, OutboxItem, RedisUrl, Store,
};

use super::redis_server::RedisServer;

/// A store that can be opened again on the same data (a restart).
enum Backing {
    Sqlite(tempfile::TempDir),
    Redis(Arc<RedisServer>),
}

const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A lease no test outlives.
const LONG: Duration = Duration::from_secs(600);
/// A lease a test sees expire.
const SHORT: Duration = Duration::from_millis(150);

impl Backing {
    fn sqlite() -> Self {
        Backing::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    fn redis() -> Self {
        Backing::Redis(RedisServer::start())
    }

    async fn open(&self) -> Store {
        match self {
            Backing::Sqlite(dir) => Store::open(&dir.path().join("store.db")).expect("sqlite"),
            Backing::Redis(server) => redis_store(&server.url()).await,
        }
    }
}

async fn redis_store(url: &str) -> Store {
    let url = RedisUrl::parse(url).expect("redis url");
    Store::open_redis(&url, RETENTION).await.expect("redis")
}

/// Runs each scenario once per backend: `store::sqlite::<name>` and `store::redis::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backing::sqlite()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backing::redis()).await;
                }
            )*
        }
    };
}

conformance!(
    a_message_is_accepted_once_per_event_and_once_per_message,
    pending_work_survives_a_reopen_oldest_first,
    finishing_takes_an_item_off_the_inbox_but_keeps_its_message_seen,
    a_put_is_recorded_once,
    a_click_is_seen_once,
    bindings_are_kept_and_replaced,
    a_card_is_claimed_once_and_keeps_its_result,
    an_unfinished_claim_whose_holder_died_is_taken_over,
    purge_forgets_exactly_what_is_older_than_the_cut,
    a_claim_given_back_frees_the_card_for_the_next_click,
    the_card_that_answers_a_command_is_remembered,
    an_answer_is_stored_with_the_end_of_its_event_once,
    a_due_delivery_is_leased_retried_later_and_survives_a_reopen,
    an_ended_delivery_is_never_due_again_and_a_given_up_one_keeps_its_code,
    the_outbox_is_read_in_bounded_pages_oldest_due_first,
    the_inbox_is_claimed_in_bounded_pages_and_never_twice,
    an_expired_lease_is_taken_over_once_and_counted_as_an_attempt,
    a_renewed_lease_holds_and_a_released_one_is_due_at_once,
    a_retry_waits_out_its_pause_in_the_store,
    finishing_drops_the_lease_and_the_stats_follow,
    a_held_click_is_leased_to_its_holder_until_it_expires,
);

fn event(n: u32) -> String {
    format!("ev_{n}")
}

async fn a_message_is_accepted_once_per_event_and_once_per_message(b: Backing) {
    let s = b.open().await;
    let first = s
        .accept_message(event(1), "om_1".into(), "{\"p\":1}".into(), 1000)
        .await;
    let Ok(Accepted::New(id1)) = first else {
        panic!("first delivery must be stored: {first:?}");
    };
    assert_eq!(
        s.accept_message(event(1), "om_1".into(), "{\"p\":1}".into(), 1001)
            .await,
        Ok(Accepted::DuplicateEvent)
    );
    assert_eq!(
        s.accept_message(event(2), "om_1".into(), "{\"p\":1}".into(), 1002)
            .await,
        Ok(Accepted::DuplicateMessage)
    );
    // The second event_id is seen now, even though its message was a duplicate.
    assert_eq!(s.mark_seen(event(2), 1003).await, Ok(false));
    let Ok(Accepted::New(id2)) = s
        .accept_message(event(3), "om_2".into(), "{\"p\":2}".into(), 1004)
        .await
    else {
        panic!("another message is new");
    };
    assert!(id2 > id1, "ids grow: {id1} then {id2}");
    let pending = s.pending(usize::MAX).await.expect("pending");
    let ids: Vec<i64> = pending.iter().map(|i| i.id).collect();
    assert_eq!(ids, [id1, id2]);
    assert_eq!(pending[0].kind, "message");
}

async fn pending_work_survives_a_reopen_oldest_first(b: Backing) {
    let s = b.open().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        match s
            .accept_message(event(n), format!("om_{n}"), format!("{{\"n\":{n}}}"), 1000)
            .await
        {
            Ok(Accepted::New(id)) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    // Two tries at the first one end in a retry (due at once again); the others are handed
    // back untried.
    for attempt in 0..2 {
        let claimed = s.claim_inbox("a", 3, LONG).await.expect("claim");
        let first = claimed.iter().find(|i| i.id == ids[0]).expect("claimed");
        assert_eq!(first.attempts, attempt);
        assert!(
            s.retry_inbox("a", ids[0], Duration::ZERO)
                .await
                .expect("retry")
        );
        s.release_inbox("a", &ids[1..]).await.expect("release");
    }
    s.finish(ids[1], Finish::Done, 1001).await.expect("finish");
    // A retry of an unknown item, or of one not held, changes nothing.
    assert!(
        !s.retry_inbox("a", 9_999, Duration::ZERO)
            .await
            .expect("retry")
    );
    assert!(
        !s.retry_inbox("a", ids[2], Duration::ZERO)
            .await
            .expect("retry")
    );
    drop(s);

    let s = b.open().await;
    let pending = s.pending(usize::MAX).await.expect("pending");
    let seen: Vec<(i64, &str, i64)> = pending
        .iter()
        .map(|i| (i.id, i.payload.as_str(), i.attempts))
        .collect();
    assert_eq!(seen, [(ids[0], "{\"n\":1}", 2), (ids[2], "{\"n\":3}", 0)]);
    let first = s.pending(1).await.expect("pending");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, ids[0]);
    assert!(s.pending(0).await.expect("pending").is_empty());
    // Dedup survived too.
    assert_eq!(
        s.accept_message(event(1), "om_1".into(), "{}".into(), 1002)
            .await,
        Ok(Accepted::DuplicateEvent)
    );
}

async fn finishing_takes_an_item_off_the_inbox_but_keeps_its_message_seen(b: Backing) {
    let s = b.open().await;
    let Ok(Accepted::New(done)) = s
        .accept_message(event(1), "om_1".into(), "{}".into(), 1000)
        .await
    else {
        panic!("new");
    };
    let Ok(Accepted::New(failed)) = s
        .accept_message(event(2), "om_2".into(), "{}".into(), 1000)
        .await
    else {
        panic!("new");
    };
    s.finish(done, Finish::Done, 1001).await.expect("finish");
    s.finish(failed, Finish::Failed, 1001)
        .await
        .expect("finish");
    // Finishing something unknown is not an error and creates nothing.
    s.finish(9_999, Finish::Done, 1001).await.expect("finish");
    assert!(s.pending(usize::MAX).await.expect("pending").is_empty());
    for m in ["om_1", "om_2"] {
        assert_eq!(
            s.accept_message(format!("late_{m}"), m.into(), "{}".into(), 1002)
                .await,
            Ok(Accepted::DuplicateMessage),
            "{m} stays one command after it ran"
        );
    }
}

async fn a_put_is_recorded_once(b: Backing) {
    let s = b.open().await;
    assert_eq!(s.record_put("uuid-1".into(), 1000).await, Ok(true));
    assert_eq!(s.record_put("uuid-1".into(), 1001).await, Ok(false));
    assert_eq!(s.record_put("uuid-2".into(), 1001).await, Ok(true));
    drop(s);
    let s = b.open().await;
    assert_eq!(s.record_put("uuid-1".into(), 1002).await, Ok(false));
}

async fn a_click_is_seen_once(b: Backing) {
    let s = b.open().await;
    assert_eq!(s.mark_seen("click-1".into(), 1000).await, Ok(true));
    assert_eq!(s.mark_seen("click-1".into(), 1001).await, Ok(false));
    // Clicks and events share the one seen set, as in Lark (both have event_ids).
    assert_eq!(
        s.accept_message("click-1".into(), "om_x".into(), "{}".into(), 1002)
            .await,
        Ok(Accepted::DuplicateEvent)
    );
    s.ping().await.expect("ping");
}

async fn bindings_are_kept_and_replaced(b: Backing) {
    let s = b.open().await;
    assert_eq!(s.binding("oc_1".into()).await, Ok(None));
    s.bind("oc_1".into(), "space_a".into(), "ou_a".into(), 1000)
        .await
        .expect("bind");
    s.bind("oc_2".into(), "space_b".into(), "ou_a".into(), 1000)
        .await
        .expect("bind");
    s.bind("oc_1".into(), "space_c".into(), "ou_b".into(), 1001)
        .await
        .expect("rebind");
    drop(s);
    let s = b.open().await;
    assert_eq!(s.binding("oc_1".into()).await, Ok(Some("space_c".into())));
    assert_eq!(s.binding("oc_2".into()).await, Ok(Some("space_b".into())));
    // Bindings are not dedup keys: purge leaves them.
    s.purge(i64::MAX).await.expect("purge");
    assert_eq!(s.binding("oc_2".into()).await, Ok(Some("space_b".into())));
}

fn claim(click: &str, by: &str, now: i64) -> ClaimRequest {
    ClaimRequest {
        nonce: "n1".into(),
        click_id: click.into(),
        kind: "go".into(),
        by_open_id: by.into(),
        now,
        expires_at: now + 100,
        stale_before: now - 60,
    }
}

async fn a_card_is_claimed_once_and_keeps_its_result(b: Backing) {
    let s = b.open().await;
    // A result for a card nobody claimed is dropped, not turned into a claim.
    s.finish_card("n1".into(), "{\"card\":0}".into(), Vec::new())
        .await
        .expect("finish unclaimed");
    assert_eq!(
        s.claim_card(claim("c1", "ou_a", 1000)).await,
        Ok(Claim::Granted)
    );
    let Ok(Claim::Held(h)) = s.claim_card(claim("c2", "ou_b", 1001)).await else {
        panic!("second click must not act");
    };
    assert_eq!(
        (h.click_id.as_str(), h.kind.as_str(), h.by_open_id.as_str()),
        ("c1", "go", "ou_a")
    );
    assert_eq!((h.claimed_at, h.result), (1000, None));
    // The same click, redelivered long after (stale), is still its own claim, not a takeover.
    let Ok(Claim::Held(h)) = s.claim_card(claim("c1", "ou_a", 1500)).await else {
        panic!("a redelivered click does not act twice");
    };
    assert_eq!(h.click_id, "c1");
    s.finish_card("n1".into(), "{\"card\":1}".into(), Vec::new())
        .await
        .expect("finish");
    drop(s);
    let s = b.open().await;
    let Ok(Claim::Held(h)) = s.claim_card(claim("c3", "ou_b", 5000)).await else {
        panic!("a finished card stays held, even when old");
    };
    assert_eq!(h.result.as_deref(), Some("{\"card\":1}"));
    assert_eq!(h.click_id, "c1");
}

async fn an_unfinished_claim_whose_holder_died_is_taken_over(b: Backing) {
    let s = b.open().await;
    assert_eq!(
        s.claim_card(claim("c1", "ou_a", 1000)).await,
        Ok(Claim::Granted)
    );
    assert!(matches!(
        s.claim_card(claim("c2", "ou_b", 1030)).await,
        Ok(Claim::Held(_))
    ));
    // At 1100 the claim from 1000 is older than stale_before (1040): taken over.
    assert_eq!(
        s.claim_card(claim("c2", "ou_b", 1100)).await,
        Ok(Claim::Granted)
    );
    let Ok(Claim::Held(h)) = s.claim_card(claim("c3", "ou_a", 1101)).await else {
        panic!("the new holder holds it");
    };
    assert_eq!(
        (h.click_id.as_str(), h.by_open_id.as_str(), h.claimed_at),
        ("c2", "ou_b", 1100)
    );
    // The takeover kept the first claim's expiry (1100): forgotten once that is past.
    assert_eq!(s.purge(1000 + 100 + 1).await, Ok(1));
    assert_eq!(
        s.claim_card(claim("c4", "ou_a", 1102)).await,
        Ok(Claim::Granted)
    );
}

async fn a_claim_given_back_frees_the_card_for_the_next_click(b: Backing) {
    let s = b.open().await;
    assert_eq!(
        s.claim_card(claim("c1", "ou_a", 1000)).await,
        Ok(Claim::Granted)
    );
    // Only the holder gives it back.
    assert_eq!(s.release_card("n1".into(), "c2".into()).await, Ok(false));
    assert!(matches!(
        s.claim_card(claim("c2", "ou_b", 1001)).await,
        Ok(Claim::Held(_))
    ));
    assert_eq!(s.release_card("n1".into(), "c1".into()).await, Ok(true));
    // Durably: a reopened store has forgotten it too.
    drop(s);
    let s = b.open().await;
    assert_eq!(
        s.claim_card(claim("c2", "ou_b", 1002)).await,
        Ok(Claim::Granted)
    );
    s.finish_card("n1".into(), "{\"card\":2}".into(), Vec::new())
        .await
        .expect("finish");
    // A finished card keeps its one action.
    assert_eq!(s.release_card("n1".into(), "c2".into()).await, Ok(false));
    let Ok(Claim::Held(h)) = s.claim_card(claim("c3", "ou_a", 1003)).await else {
        panic!("a finished card stays held");
    };
    assert_eq!(h.click_id, "c2");
}

async fn the_card_that_answers_a_command_is_remembered(b: Backing) {
    let s = b.open().await;
    assert_eq!(s.reply_of("om_1".into()).await, Ok(None));
    s.remember_reply("om_1".into(), "om_reply_1".into(), 1000)
        .await
        .expect("remember");
    drop(s);
    let s = b.open().await;
    assert_eq!(
        s.reply_of("om_1".into()).await,
        Ok(Some("om_reply_1".to_owned()))
    );
    assert_eq!(s.reply_of("om_2".into()).await, Ok(None));
}

async fn purge_forgets_exactly_what_is_older_than_the_cut(b: Backing) {
    let s = b.open().await;
    let Ok(Accepted::New(finished)) = s
        .accept_message(event(1), "om_1".into(), "{}".into(), 1000)
        .await
    else {
        panic!("new");
    };
    let Ok(Accepted::New(pending)) = s
        .accept_message(event(2), "om_2".into(), "{}".into(), 1000)
        .await
    else {
        panic!("new");
    };
    assert_eq!(s.mark_seen("click-1".into(), 1000).await, Ok(true));
    assert_eq!(s.record_put("uuid-1".into(), 1000).await, Ok(true));
    let mut card = claim("c1", "ou_a", 1000);
    card.expires_at = 1500;
    assert_eq!(s.claim_card(card).await, Ok(Claim::Granted));
    s.finish(finished, Finish::Done, 1000)
        .await
        .expect("finish");

    assert_eq!(s.purge(1000).await, Ok(0), "the cut is exclusive");
    // 3 seen ids (two events, one click), 1 finished item, 1 PUT; the card lives to 1500.
    assert_eq!(s.purge(1001).await, Ok(5));
    assert_eq!(s.purge(1001).await, Ok(0), "nothing twice");

    assert_eq!(s.mark_seen(event(1), 2000).await, Ok(true));
    assert_eq!(s.mark_seen("click-1".into(), 2000).await, Ok(true));
    assert_eq!(s.record_put("uuid-1".into(), 2000).await, Ok(true));
    // The finished message is forgotten; the pending one is not.
    assert!(matches!(
        s.accept_message(event(3), "om_1".into(), "{}".into(), 2000)
            .await,
        Ok(Accepted::New(_))
    ));
    assert_eq!(
        s.accept_message(event(4), "om_2".into(), "{}".into(), 2000)
            .await,
        Ok(Accepted::DuplicateMessage)
    );
    let ids: Vec<i64> = s
        .pending(usize::MAX)
        .await
        .expect("pending")
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids.first(), Some(&pending));
    assert_eq!(ids.len(), 2);
    assert!(matches!(
        s.claim_card(claim("c2", "ou_b", 1010)).await,
        Ok(Claim::Held(_))
    ));
    assert_eq!(s.purge(1501).await, Ok(1), "the expired card");
}

// ---- Redis only ----

#[tokio::test]
async fn an_acknowledged_event_survives_a_redis_crash_and_the_handle_reconnects() {
    let server = RedisServer::start();
    let s = redis_store(&server.url()).await;
    let Ok(Accepted::New(id)) = s
        .accept_message(event(1), "om_1".into(), "{\"kept\":true}".into(), 1000)
        .await
    else {
        panic!("new");
    };
    s.bind("oc_1".into(), "space_a".into(), "ou_a".into(), 1000)
        .await
        .expect("bind");
    server.crash_and_restart();
    // The same handle: the connection manager reconnects on its own.
    let mut back = false;
    for _ in 0..100 {
        if s.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the store reconnects after Redis restarts");
    let pending = s.pending(usize::MAX).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, pending[0].payload.as_str()),
        (id, "{\"kept\":true}")
    );
    assert_eq!(
        s.accept_message(event(1), "om_1".into(), "{}".into(), 1001)
            .await,
        Ok(Accepted::DuplicateEvent)
    );
    assert_eq!(s.binding("oc_1".into()).await, Ok(Some("space_a".into())));
}

#[tokio::test]
async fn dedup_keys_expire_after_the_retention() {
    let server = RedisServer::start();
    let url = RedisUrl::parse(&server.url()).expect("url");
    let s = Store::open_redis(&url, Duration::from_secs(1))
        .await
        .expect("redis");
    assert_eq!(s.mark_seen("e1".into(), 1000).await, Ok(true));
    assert_eq!(s.record_put("u1".into(), 1000).await, Ok(true));
    assert_eq!(s.mark_seen("e1".into(), 1000).await, Ok(false));
    // Redis expires the keys on its own clock: wait (bounded) until it has.
    let mut expired = false;
    for _ in 0..100 {
        let left = server.command("EXISTS abort-bot:seen:e1 abort-bot:put:u1");
        if left.trim() == ":0" {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(expired, "the keys expire after the 1 s retention");
    assert_eq!(s.mark_seen("e1".into(), 1000).await, Ok(true));
    assert_eq!(s.record_put("u1".into(), 1000).await, Ok(true));
}

#[tokio::test]
async fn a_server_that_can_lose_or_evict_keys_is_warned_about() {
    let server = RedisServer::start();
    let s = redis_store(&server.url()).await;
    assert_eq!(s.warnings().await, Vec::<String>::new());
    let set = |line: &str| assert!(server.command(line).starts_with("+OK"), "{line}");
    set("CONFIG SET appendfsync everysec");
    let warnings = s.warnings().await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("appendfsync always"), "{warnings:?}");
    set("CONFIG SET appendfsync always");
    set("CONFIG SET maxmemory-policy allkeys-lru");
    let warnings = s.warnings().await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("maxmemory-policy allkeys-lru") && warnings[0].contains("noeviction"),
        "{warnings:?}"
    );
    set("CONFIG SET appendonly no");
    assert_eq!(s.warnings().await.len(), 2);
    // CONFIG disabled (as on managed services): said so, and the store still works.
    let locked = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let s = redis_store(&locked.url()).await;
    let warnings = s.warnings().await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("refuses CONFIG GET") && warnings[0].contains("noeviction"),
        "{warnings:?}"
    );
    assert_eq!(s.mark_seen("e".into(), 1).await, Ok(true));
    let sqlite_dir = tempfile::tempdir().expect("dir");
    let sqlite = Store::open(&sqlite_dir.path().join("s.db")).expect("sqlite");
    assert_eq!(sqlite.warnings().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_password_works_and_never_appears_in_an_error() {
    let server = RedisServer::start_with(&["--requirepass", "right-pw-123"]);
    let port = server.port();
    let good = RedisUrl::parse(&format!("redis://:right-pw-123@127.0.0.1:{port}/1")).expect("url");
    let s = Store::open_redis(&good, RETENTION)
        .await
        .expect("with the password");
    assert_eq!(s.mark_seen("e".into(), 1).await, Ok(true));
    assert!(!format!("{good:?} {good}").contains("right-pw-123"));

    let bad = RedisUrl::parse(&format!("redis://:wrong-pw-456@127.0.0.1:{port}")).expect("url");
    let err = match Store::open_redis(&bad, RETENTION).await {
        Ok(_) => panic!("a wrong password must not connect"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains("wrong-pw-456"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
}

fn delivery(key: &str) -> NewDelivery {
    NewDelivery {
        key: key.into(),
        payload: format!("{{\"for\":\"{key}\"}}"),
    }
}

fn keys(items: &[OutboxItem]) -> Vec<&str> {
    items.iter().map(|i| i.key.as_str()).collect()
}

async fn an_answer_is_stored_with_the_end_of_its_event_once(b: Backing) {
    let s = b.open().await;
    let Ok(Accepted::New(id)) = s
        .accept_message(event(1), "om_1".into(), "{}".into(), 1000)
        .await
    else {
        panic!("accepted")
    };
    s.finish_delivering(id, delivery("message:om_1"), Vec::new(), 1_000_500)
        .await
        .expect("finish with its answer");
    assert_eq!(s.pending(10).await, Ok(vec![]), "the event is done");
    // The same answer offered again (a re-run) is not stored twice.
    assert_eq!(
        s.add_delivery(delivery("message:om_1"), 1_000_600).await,
        Ok(false)
    );
    assert_eq!(
        s.add_delivery(delivery("click:n1"), 1_000_600).await,
        Ok(true)
    );
    assert_eq!(s.deliveries_waiting().await, Ok(2));
    let due = s.due_deliveries(1_000_600, 45_000, 10).await.expect("due");
    assert_eq!(keys(&due), ["message:om_1", "click:n1"]);
    assert_eq!(due[0].payload, "{\"for\":\"message:om_1\"}");
    assert_eq!((due[0].attempts, due[0].created_at), (0, 1_000_500));
}

async fn a_due_delivery_is_leased_retried_later_and_survives_a_reopen(b: Backing) {
    let s = b.open().await;
    s.add_delivery(delivery("message:om_1"), 1_000_000)
        .await
        .expect("add");
    assert_eq!(s.next_delivery_due().await, Ok(Some(1_000_000)));
    let due = s.due_deliveries(1_000_000, 45_000, 10).await.expect("due");
    assert_eq!(keys(&due), ["message:om_1"]);
    // Taken: not due again within its lease (a second process, or this one, leaves it be)...
    assert_eq!(s.due_deliveries(1_044_999, 45_000, 10).await, Ok(vec![]));
    // ...and due again after it, as after a crash mid-try.
    let again = s.due_deliveries(1_045_000, 45_000, 10).await.expect("due");
    assert_eq!(keys(&again), ["message:om_1"]);
    s.retry_delivery(again[0].id, 1_050_000)
        .await
        .expect("retry");
    assert_eq!(s.next_delivery_due().await, Ok(Some(1_050_000)));
    assert_eq!(s.due_deliveries(1_049_999, 45_000, 10).await, Ok(vec![]));
    drop(s);
    let s = b.open().await;
    assert_eq!(s.deliveries_waiting().await, Ok(1));
    let due = s.due_deliveries(1_050_000, 45_000, 10).await.expect("due");
    assert_eq!(keys(&due), ["message:om_1"]);
    assert_eq!(due[0].attempts, 1, "the failed try was counted");
    assert_eq!(due[0].created_at, 1_000_000);
}

async fn an_ended_delivery_is_never_due_again_and_a_given_up_one_keeps_its_code(b: Backing) {
    let s = b.open().await;
    for k in ["message:a", "message:b"] {
        s.add_delivery(delivery(k), 1_000_000).await.expect("add");
    }
    let due = s.due_deliveries(1_000_000, 45_000, 10).await.expect("due");
    s.end_delivery(due[0].id, None, 1000)
        .await
        .expect("delivered");
    s.end_delivery(due[1].id, Some("230011".into()), 1000)
        .await
        .expect("given up");
    // A late retry of an ended one changes nothing.
    s.retry_delivery(due[1].id, 1_000_001).await.expect("retry");
    assert_eq!(s.deliveries_waiting().await, Ok(0));
    assert_eq!(s.next_delivery_due().await, Ok(None));
    assert_eq!(s.due_deliveries(9_000_000, 45_000, 10).await, Ok(vec![]));
    assert_eq!(s.delivery_given_up("message:a".into()).await, Ok(None));
    assert_eq!(
        s.delivery_given_up("message:b".into()).await,
        Ok(Some("230011".to_owned()))
    );
    // Still stored under its key: offering it again does not bring it back.
    assert_eq!(
        s.add_delivery(delivery("message:b"), 1_000_002).await,
        Ok(false)
    );
}

async fn the_outbox_is_read_in_bounded_pages_oldest_due_first(b: Backing) {
    let s = b.open().await;
    for n in 0..7 {
        s.add_delivery(delivery(&format!("message:{n}")), 1_000_000 + 6 - n)
            .await
            .expect("add");
    }
    let first = s.due_deliveries(2_000_000, 45_000, 3).await.expect("due");
    assert_eq!(keys(&first), ["message:6", "message:5", "message:4"]);
    let second = s.due_deliveries(2_000_000, 45_000, 3).await.expect("due");
    assert_eq!(keys(&second), ["message:3", "message:2", "message:1"]);
    let last = s.due_deliveries(2_000_000, 45_000, 3).await.expect("due");
    assert_eq!(keys(&last), ["message:0"]);
    assert_eq!(s.deliveries_waiting().await, Ok(7), "leased, still waiting");
}

/// Accepts `n` messages (received at 1000, 1001, …); their ids, oldest first.
async fn accept(s: &Store, n: u32) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 1..=n {
        match s
            .accept_message(
                event(i),
                format!("om_{i}"),
                format!("{{\"n\":{i}}}"),
                999 + i64::from(i),
            )
            .await
        {
            Ok(Accepted::New(id)) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    ids
}

fn ids_of(items: &[abort_bot::store::InboxItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

/// Claims for `owner` (bounded: 5 s) until the store hands something over.
async fn claim_when_due(
    s: &Store,
    owner: &str,
    lease: Duration,
) -> Vec<abort_bot::store::InboxItem> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = s.claim_inbox(owner, 10, lease).await.expect("claim");
        if !got.is_empty() {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing came due within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_inbox_is_claimed_in_bounded_pages_and_never_twice(b: Backing) {
    let s = b.open().await;
    let ids = accept(&s, 5).await;
    assert!(s.claim_inbox("a", 0, LONG).await.expect("claim").is_empty());
    let first = s.claim_inbox("a", 2, LONG).await.expect("claim");
    assert_eq!(ids_of(&first), ids[..2], "a bounded page, oldest first");
    assert!(
        first
            .iter()
            .all(|i| !i.taken_over && i.attempts == 0 && i.kind == "message")
    );
    assert_eq!(first[0].payload, "{\"n\":1}");
    assert_eq!(first[0].received_at, 1000);
    let rest = s.claim_inbox("b", 10, LONG).await.expect("claim");
    assert_eq!(
        ids_of(&rest),
        ids[2..],
        "another owner gets only what nobody holds"
    );
    assert!(
        s.claim_inbox("a", 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        s.claim_inbox("b", 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
    // Reading what is pending claims nothing and shows all five.
    assert_eq!(ids_of(&s.pending(10).await.expect("pending")), ids);
}

async fn an_expired_lease_is_taken_over_once_and_counted_as_an_attempt(b: Backing) {
    let s = b.open().await;
    let ids = accept(&s, 1).await;
    assert_eq!(
        ids_of(&s.claim_inbox("a", 10, SHORT).await.expect("claim")),
        ids
    );
    // Its holder stops renewing: once the lease ends, one other owner takes it over.
    let taken = claim_when_due(&s, "b", LONG).await;
    assert_eq!(ids_of(&taken), ids);
    assert!(taken[0].taken_over);
    assert_eq!(taken[0].attempts, 1, "a takeover counts as an attempt");
    assert!(
        s.claim_inbox("c", 10, LONG)
            .await
            .expect("claim")
            .is_empty(),
        "not twice"
    );
    // The first holder hears it lost the lease, and can no longer retry or release it.
    assert_eq!(s.renew_inbox("a", &ids, LONG).await.expect("renew"), ids);
    assert!(
        !s.retry_inbox("a", ids[0], Duration::ZERO)
            .await
            .expect("retry")
    );
    s.release_inbox("a", &ids).await.expect("release");
    assert!(
        s.claim_inbox("c", 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
    // The new holder still holds it.
    assert!(
        s.renew_inbox("b", &ids, LONG)
            .await
            .expect("renew")
            .is_empty()
    );
}

async fn a_renewed_lease_holds_and_a_released_one_is_due_at_once(b: Backing) {
    let s = b.open().await;
    let ids = accept(&s, 2).await;
    assert_eq!(
        ids_of(&s.claim_inbox("a", 10, SHORT).await.expect("claim")),
        ids
    );
    // The first is renewed for long, the second left to expire.
    assert!(
        s.renew_inbox("a", &ids[..1], LONG)
            .await
            .expect("renew")
            .is_empty()
    );
    let taken = claim_when_due(&s, "b", LONG).await;
    assert_eq!(
        ids_of(&taken),
        ids[1..],
        "only the lease left to expire was taken over"
    );
    // Handed back: due at once for anyone, and not an attempt.
    s.release_inbox("a", &ids[..1]).await.expect("release");
    let again = s.claim_inbox("c", 10, LONG).await.expect("claim");
    assert_eq!(ids_of(&again), ids[..1]);
    assert!(!again[0].taken_over);
    assert_eq!(again[0].attempts, 0);
    // A renewal by the owner that handed it back finds it lost.
    assert_eq!(
        s.renew_inbox("a", &ids[..1], LONG).await.expect("renew"),
        ids[..1]
    );
}

async fn a_retry_waits_out_its_pause_in_the_store(b: Backing) {
    let s = b.open().await;
    let ids = accept(&s, 1).await;
    s.claim_inbox("a", 10, LONG).await.expect("claim");
    assert!(
        s.retry_inbox("a", ids[0], Duration::from_millis(300))
            .await
            .expect("retry")
    );
    assert!(
        s.claim_inbox("b", 10, LONG)
            .await
            .expect("claim")
            .is_empty(),
        "not due during its pause"
    );
    let again = claim_when_due(&s, "b", LONG).await;
    assert_eq!(ids_of(&again), ids);
    assert_eq!(again[0].attempts, 1);
    assert!(!again[0].taken_over, "a retry is no takeover");
}

async fn finishing_drops_the_lease_and_the_stats_follow(b: Backing) {
    let s = b.open().await;
    assert_eq!(s.inbox_stats().await, Ok(InboxStats::default()));
    let ids = accept(&s, 3).await;
    assert_eq!(
        s.inbox_stats().await,
        Ok(InboxStats {
            pending: 3,
            oldest_received_at: Some(1000)
        })
    );
    s.claim_inbox("a", 2, LONG).await.expect("claim");
    s.finish(ids[0], Finish::Done, 1005).await.expect("finish");
    s.finish_delivering(ids[1], delivery("message:om_2"), Vec::new(), 1_005_000)
        .await
        .expect("finish");
    assert_eq!(
        s.renew_inbox("a", &ids[..2], LONG).await.expect("renew"),
        ids[..2],
        "finished: no lease left"
    );
    assert_eq!(
        s.inbox_stats().await,
        Ok(InboxStats {
            pending: 1,
            oldest_received_at: Some(1002)
        })
    );
    assert_eq!(
        ids_of(&s.claim_inbox("b", 10, LONG).await.expect("claim")),
        ids[2..]
    );
    assert!(
        s.claim_inbox("c", 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
}

async fn a_held_click_is_leased_to_its_holder_until_it_expires(b: Backing) {
    let s = b.open().await;
    let held = s
        .hold_click("a", "click_1".into(), "{\"c\":1}".into(), 1000, SHORT)
        .await
        .expect("hold");
    let Some(id) = held else {
        panic!("a new click is stored");
    };
    assert_eq!(
        s.hold_click("b", "click_1".into(), "{}".into(), 1001, LONG)
            .await,
        Ok(None),
        "the same click is stored once"
    );
    assert!(
        s.claim_inbox("b", 10, LONG)
            .await
            .expect("claim")
            .is_empty(),
        "held by a"
    );
    assert_eq!(s.inbox_stats().await.map(|st| st.pending), Ok(1));
    // Its holder stops: another takes it over once the lease ends.
    let taken = claim_when_due(&s, "b", LONG).await;
    assert_eq!(ids_of(&taken), [id]);
    assert_eq!(
        (taken[0].kind.as_str(), taken[0].payload.as_str()),
        ("click", "{\"c\":1}")
    );
    assert!(taken[0].taken_over);
}

#[tokio::test]
async fn an_older_sqlite_file_is_migrated_and_a_dead_process_leases_are_cleared() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    {
        // The inbox as versions before leases wrote it, with two events waiting (one of them
        // tried twice) and one done.
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE inbox (
                 id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                 payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0, received_at INTEGER NOT NULL,
                 finished_at INTEGER);
             CREATE INDEX inbox_pending ON inbox (status, id);
             INSERT INTO inbox (dedup_key, kind, payload, attempts, received_at)
                 VALUES ('message:om_1', 'message', '{\"n\":1}', 2, 1000),
                        ('message:om_2', 'message', '{\"n\":2}', 0, 1001);
             INSERT INTO inbox (dedup_key, kind, payload, status, received_at, finished_at)
                 VALUES ('message:om_3', 'message', '{}', 'done', 1002, 1003);",
        )
        .expect("old layout");
    }
    let s = Store::open(&path).expect("opens and migrates");
    let claimed = s.claim_inbox("a", 10, LONG).await.expect("claim");
    let seen: Vec<(i64, &str, i64, bool)> = claimed
        .iter()
        .map(|i| (i.id, i.payload.as_str(), i.attempts, i.taken_over))
        .collect();
    assert_eq!(
        seen,
        [(1, "{\"n\":1}", 2, false), (2, "{\"n\":2}", 0, false)]
    );
    assert_eq!(
        s.accept_message("ev_x".into(), "om_3".into(), "{}".into(), 1004)
            .await,
        Ok(Accepted::DuplicateMessage),
        "the dedup of the old rows holds"
    );
    drop(s);
    drop(claimed);

    // A file whose process died holding leases: the next process (which takes the file
    // lock) finds them due at once, each counted as an attempt. Written as that process left
    // it: no store of this process has had it open.
    let path = dir.path().join("crashed.db");
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE inbox (
                 id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                 payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                 attempts INTEGER NOT NULL DEFAULT 0, received_at INTEGER NOT NULL,
                 finished_at INTEGER, due_at INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,
                 lease_until INTEGER);
             INSERT INTO inbox (dedup_key, kind, payload, received_at, due_at, lease_owner,
                                lease_until)
                 VALUES ('click:c1', 'click', '{}', 1000, 99999999999999, 'dead-1',
                         99999999999999);",
        )
        .expect("a dead process's lease");
    }
    let s = Store::open(&path).expect("opens");
    let claimed = s.claim_inbox("a", 10, LONG).await.expect("claim");
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        (claimed[0].kind.as_str(), claimed[0].attempts),
        ("click", 1)
    );
}

#[tokio::test]
async fn a_layout_1_redis_is_migrated_at_open_and_an_unknown_layout_refused() {
    let server = RedisServer::start();
    for line in [
        "SET abort-bot:schema 1",
        "SET abort-bot:inbox:next-id 2",
        "HSET abort-bot:inbox:1 kind message payload p1 attempts 2 status pending received_at 1000 dedup abort-bot:message:om_1",
        "SET abort-bot:message:om_1 1",
        "HSET abort-bot:inbox:2 kind message payload p2 attempts 0 status pending received_at 1001 dedup abort-bot:message:om_2",
        "SET abort-bot:message:om_2 2",
        "ZADD abort-bot:inbox:pending 1 1 2 2",
    ] {
        let reply = server.command(line);
        assert!(!reply.starts_with('-'), "{line}: {reply}");
    }
    let s = redis_store(&server.url()).await;
    assert_eq!(server.command("GET abort-bot:schema"), "$1\r\n2\r\n");
    let claimed = s.claim_inbox("a", 10, LONG).await.expect("claim");
    let seen: Vec<(i64, &str, i64)> = claimed
        .iter()
        .map(|i| (i.id, i.payload.as_str(), i.attempts))
        .collect();
    assert_eq!(seen, [(1, "p1", 2), (2, "p2", 0)]);
    let next = s
        .accept_message("ev_3".into(), "om_3".into(), "{}".into(), 1002)
        .await;
    assert_eq!(next, Ok(Accepted::New(3)), "ids go on from the old counter");
    // Opening again changes nothing (already layout 2).
    let again = redis_store(&server.url()).await;
    assert_eq!(
        ids_of(&again.claim_inbox("b", 10, LONG).await.expect("claim")),
        [3]
    );

    let other = RedisServer::start();
    other.command("SET abort-bot:schema 9");
    let url = RedisUrl::parse(&other.url()).expect("url");
    let refused = Store::open_redis(&url, RETENTION).await;
    let Err(e) = refused else {
        panic!("a layout from the future is refused");
    };
    assert!(e.to_string().contains("layout 9"), "{e}");
}

//! Real faults, one bot: Lark unreachable from a cold start (the bot cannot yet tell whether it
//! was mentioned), Feishu Project failing in every way it can (error bursts, answers slower
//! than the timeout, connections closed, bodies that are not JSON), and the store going away
//! (a real redis-server stopped, then started again). Each command still ends in exactly one
//! answer, no item changes twice, and nothing acknowledged is lost.

use std::time::Duration;

use abort_bot::emulator::lark::Endpoint as LarkEndpoint;
use abort_bot::emulator::project::{Endpoint, Fault};

use super::helpers::*;
use super::redis_server::RedisServer;

/// Enough injected failures for any outage a test runs (each is one refused request).
const OUTAGE: usize = 20_000;

/// Lark answers 503 to everything the bot calls: the tenant token, bot info and replies.
fn lark_down(app: &TestApp) {
    for endpoint in [
        LarkEndpoint::Token,
        LarkEndpoint::BotInfo,
        LarkEndpoint::Reply,
    ] {
        for _ in 0..OUTAGE {
            app.lark.push_fault(endpoint, 503, 0);
        }
    }
}

/// Waits (bounded) until the one pending event has failed twice.
async fn tried_twice(app: &TestApp, store: &abort_bot::store::Store) {
    for _ in 0..500 {
        if app
            .pending(store)
            .await
            .first()
            .is_some_and(|i| i.attempts >= 2)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "not tried twice within 10 s: {:?}",
        app.pending(store).await
    );
}

/// Moves the bot's clock on by `secs` in 5 min steps; after each, waits (bounded) until the
/// one pending event was tried again (or is no longer pending).
async fn pass_time(app: &TestApp, store: &abort_bot::store::Store, secs: i64) {
    let mut left = secs;
    while left > 0 {
        let before = app.pending(store).await.first().map(|i| i.attempts);
        let step = left.min(300);
        app.clock.advance_secs(step);
        let mut tried = false;
        for _ in 0..500 {
            let now = app.pending(store).await.first().map(|i| i.attempts);
            if now.is_none() || now > before {
                tried = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(tried, "not tried again within 10 s of {step} s passing");
        left -= step;
    }
}

/// A group command that arrives while Lark is down at a cold start: the bot cannot tell
/// whether it was mentioned, so it keeps the command pending (in the store, not in memory)
/// and tries it again after a pause kept in the store for as long as replies are retried.
#[tokio::test]
async fn a_group_command_at_a_cold_start_waits_out_a_lark_outage_and_runs_once() {
    // The pause between tries lives in the store and counts in real time: keep it short.
    let app = spawn_with(Options {
        inbox_retry_max: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    lark_down(&app);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let direct = app.send(BOB, Chat::P2p, "/abort 12346 repeat").await;
    // A direct message needs no bot info: it runs now and its answer waits in the outbox.
    wait_for_puts(&app, 1).await;
    // The group command failed, and its next try waits in the store.
    let store = app.open_store().await;
    tried_twice(&app, &store).await;
    // Half an hour of the bot's clock, well past the five tries that used to drop it.
    pass_time(&app, &store, 30 * 60).await;
    let pending = app.pending(&store).await;
    assert_eq!(pending.len(), 1, "kept: {pending:?}");
    assert!(
        pending[0].attempts > 5,
        "it was kept and tried again: {} attempts",
        pending[0].attempts
    );
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert!(app.lark.replies_to(&message_id).is_empty());
    assert!(!app.project.item(12345).expect("item").aborted);

    // Lark is back: the next try runs it (a probe through Lark's circuit once it is due).
    app.lark.state().faults.clear();
    for _ in 0..200 {
        if !app.lark.replies_to(&message_id).is_empty() && !app.lark.replies_to(&direct).is_empty()
        {
            break;
        }
        app.clock.advance_secs(5);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    assert_eq!(card_color(&app.reply_to(&direct).await.card), "green");
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(app.lark.replies_to(&direct).len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 2);
    assert_eq!(app.project.item(12345).expect("item").reason_option, "test");
}

/// Past `ABORT_BOT_REPLY_RETRY` from its arrival the command is dropped, logged, and never
/// acts later.
#[tokio::test]
async fn a_group_command_still_unrunnable_after_abort_bot_reply_retry_is_dropped() {
    let app = spawn_with(Options {
        extra: vec![("ABORT_BOT_REPLY_RETRY", "10m".into())],
        ..Options::default()
    })
    .await;
    lark_down(&app);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let store = app.open_store().await;
    tried_twice(&app, &store).await;
    pass_time(&app, &store, 9 * 60).await;
    assert_eq!(app.pending(&store).await.len(), 1, "kept within its 10 min");
    pass_time(&app, &store, 2 * 60).await;
    assert!(app.pending(&store).await.is_empty(), "dropped after 10 min");
    app.lark.state().faults.clear();
    pass_time(&app, &store, 60).await;
    assert!(app.settled_replies(&message_id).await.is_empty());
    assert!(app.project.requests_to("PUT", "/open_api/").is_empty());
}

/// One way Feishu Project fails an abort, and what the command must end in.
struct Case {
    what: &'static str,
    faults: Vec<(Endpoint, Fault)>,
    /// The final card's colour, and a phrase it must say.
    color: &'static str,
    says: &'static str,
    /// Whether the item ends aborted (changed once) or untouched.
    aborted: bool,
}

fn burst(endpoint: Endpoint, n: usize, fault: &Fault) -> Vec<(Endpoint, Fault)> {
    vec![(endpoint, fault.clone()); n]
}

/// `protocol/feishu-project.md` §7.3: 500 `50006` is a momentary overload; §7.2: 429 `10429`
/// the rate limit. The client tries a call 4 times (1 + 3 retries): a burst of 3 passes, a
/// burst of 4 does not.
fn cases() -> Vec<Case> {
    let overload = Fault::Error {
        status: 500,
        code: 50006,
        msg: "openapi system err, please try again later".into(),
    };
    let limited = Fault::Error {
        status: 429,
        code: 10429,
        msg: "API Request Frequency Limit".into(),
    };
    // Longer than the bot's timeout (500 ms in these tests).
    let slow = Fault::Delay(Duration::from_millis(1500));
    let done = ("green", "Aborted", true);
    let case = |what, faults, (color, says, aborted)| Case {
        what,
        faults,
        color,
        says,
        aborted,
    };
    vec![
        case(
            "3 × 500/50006 on the PUT",
            burst(Endpoint::Abort, 3, &overload),
            done,
        ),
        case(
            "3 × 429/10429 on the PUT",
            burst(Endpoint::Abort, 3, &limited),
            done,
        ),
        case(
            "500/50006, 10429 and a non-JSON page on the lookups",
            [
                burst(Endpoint::UserQuery, 1, &overload),
                burst(Endpoint::Query, 1, &limited),
                burst(Endpoint::Query, 1, &Fault::NotJson { status: 502 }),
                burst(Endpoint::AllTypes, 2, &Fault::NotJson { status: 504 }),
            ]
            .concat(),
            done,
        ),
        case(
            "3 × a non-JSON 502 page on the PUT",
            burst(Endpoint::Abort, 3, &Fault::NotJson { status: 502 }),
            done,
        ),
        case(
            "a 200 that is not JSON on the PUT: read back, not guessed",
            burst(Endpoint::Abort, 1, &Fault::NotJson { status: 200 }),
            ("orange", "the item is **not aborted**", false),
        ),
        case(
            "the PUT slower than the timeout",
            burst(Endpoint::Abort, 1, &slow),
            done,
        ),
        case(
            "the PUT applied, its answer never sent",
            burst(Endpoint::Abort, 1, &Fault::Hang { apply: true }),
            done,
        ),
        case(
            "the connection closed after the PUT was applied",
            burst(Endpoint::Abort, 1, &Fault::Close { apply: true }),
            done,
        ),
        case(
            "the connection closed before the PUT was applied",
            burst(Endpoint::Abort, 2, &Fault::Close { apply: false }),
            done,
        ),
        case(
            "every try closed, the first one applied: read back",
            [
                burst(Endpoint::Abort, 1, &Fault::Close { apply: true }),
                burst(Endpoint::Abort, 3, &Fault::Close { apply: false }),
            ]
            .concat(),
            ("orange", "the item is **aborted**", true),
        ),
        case(
            "4 × 500/50006 on the PUT: a 5xx may have landed, read back",
            burst(Endpoint::Abort, 4, &overload),
            ("orange", "the item is **not aborted**", false),
        ),
        case(
            "4 × 429/10429 on the PUT: refused, nothing changed",
            burst(Endpoint::Abort, 4, &limited),
            ("orange", "nothing was changed", false),
        ),
        case(
            "every try closed, none applied",
            burst(Endpoint::Abort, 4, &Fault::Close { apply: false }),
            ("orange", "the item is **not aborted**", false),
        ),
        case(
            "every try slower than the timeout",
            burst(Endpoint::Abort, 4, &slow),
            ("orange", "the item is **not aborted**", false),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_feishu_project_fails_ends_in_one_correct_card_and_at_most_one_change() {
    // A bot of its own for each case (a failing case must not open the circuit for the
    // next), all at once.
    let mut runs = tokio::task::JoinSet::new();
    let count = cases().len();
    for case in cases() {
        runs.spawn(run_case(case));
    }
    let mut puts = 0;
    while let Some(run) = runs.join_next().await {
        puts += run.expect("a case ran to its end");
    }
    println!("Feishu Project faults: {count} cases, {puts} PUTs sent");
}

/// Runs one case; returns how many PUTs were sent.
async fn run_case(case: Case) -> usize {
    let app = spawn_with(Options {
        upstream_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    for (endpoint, fault) in case.faults {
        app.project.push_fault(endpoint, fault);
    }
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    let reply = app.reply_to(&message_id).await;
    let mut card = reply.card;
    if card_color(&card) == "wathet" {
        // Slow work answers "in progress" first; the result replaces that card.
        wait_within(case.what, Duration::from_secs(20), || {
            app.lark
                .message(&reply.message_id)
                .is_some_and(|m| m.updates > 0)
        })
        .await;
        card = app.lark.message(&reply.message_id).expect("reply").card;
    }
    let text = card_text(&card);
    assert_eq!(card_color(&card), case.color, "{}: {text}", case.what);
    assert!(text.contains(case.says), "{}: {text}", case.what);
    assert_eq!(
        app.settled_replies(&message_id).await.len(),
        1,
        "{}: one reply",
        case.what
    );
    assert!(
        app.project.state().faults.is_empty(),
        "{}: every fault met",
        case.what
    );
    let item = app.project.item(12345).expect("item");
    assert_eq!(item.aborted, case.aborted, "{}", case.what);
    assert_eq!(
        app.project.changes(12345),
        u32::from(case.aborted),
        "{}: changed at most once",
        case.what
    );
    if case.aborted {
        assert_eq!(item.reason_option, "repeat", "{}", case.what);
    }
    app.project.requests_to("PUT", "/open_api/").len()
}

/// Redis goes away while acknowledged commands are mid-work, and comes back: while it is gone
/// every new delivery gets a 5xx (so Lark pushes it again) and `/readyz` says why; afterwards
/// the acknowledged commands end (their PUT's repeat is recognised as the bot's own) and the
/// pushed-again ones run, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_deliveries_get_a_5xx_and_nothing_acknowledged_is_lost() {
    let redis = RedisServer::start();
    let app = spawn_with(Options {
        redis: Some(redis.clone()),
        ..Options::default()
    })
    .await;
    app.say(ALICE, Chat::Group, "/help").await;
    app.project.add_stories(70001, 8);
    // Two acknowledged commands are in the middle of their PUT when Redis goes.
    for _ in 0..2 {
        app.project
            .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(1500)));
    }
    let acked = [
        app.send(ALICE, Chat::Group, "/abort 70001 test").await,
        app.send(BOB, Chat::Group, "/abort 70002 test").await,
    ];
    wait_for_puts(&app, 2).await;
    redis.crash();
    assert_eq!(
        app.readyz().await,
        (503, "store unavailable".to_owned()),
        "not ready without the store"
    );
    let mut refused = Vec::new();
    for id in 70003..70009 {
        let message_id = new_message_id();
        let event = message_event(
            &new_event_id(),
            &message_id,
            ALICE,
            Chat::Group,
            &format!("/abort {id} repeat"),
        );
        let status = app.post_event(&event).await.status();
        assert!(status.is_server_error(), "{id}: {status}");
        refused.push((message_id, event));
    }
    // The two in flight finished their PUT but could not store the outcome.
    wait_until("the delayed PUTs answered", || {
        app.project.changes(70001) == 1 && app.project.changes(70002) == 1
    })
    .await;

    redis.start_again();
    for _ in 0..250 {
        if app.readyz().await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.readyz().await, (200, "ready".to_owned()));
    // Lark pushes the refused deliveries again.
    for (_, event) in &refused {
        assert_eq!(app.post_event(event).await.status(), 200);
    }
    // The acknowledged ones are still pending in Redis; once they are old enough on the bot's
    // clock, they are taken up again.
    app.clock.advance_secs(60);
    let all: Vec<&String> = acked.iter().chain(refused.iter().map(|(m, _)| m)).collect();
    for m in &all {
        let reply = app.reply_to(m).await;
        assert_eq!(
            card_color(&reply.card),
            "green",
            "{m}: {}",
            card_text(&reply.card)
        );
    }
    app.settled().await;
    for m in &all {
        assert_eq!(app.lark.replies_to(m).len(), 1, "one reply to {m}");
    }
    let puts = app.project.requests_to("PUT", "/open_api/");
    for id in 70001..70009_u64 {
        assert_eq!(app.project.changes(id), 1, "{id} changed once");
        let to_it: Vec<_> = puts
            .iter()
            .filter(|r| r.path.ends_with(&format!("/{id}/abort")))
            .collect();
        // One mid-work when Redis went may have been sent again after it came back (its
        // outcome could not be stored), always with its own key; the others once.
        let most = if id <= 70002 { 2 } else { 1 };
        assert!(
            (1..=most).contains(&to_it.len()),
            "{id}: {} PUTs",
            to_it.len()
        );
        assert!(
            to_it
                .iter()
                .all(|r| r.header("x-idem-uuid") == to_it[0].header("x-idem-uuid")),
            "{id}: one key"
        );
    }
    println!(
        "store outage: {} acknowledged mid-work, {} refused and pushed again, 0 lost, 0 doubled, {} PUTs",
        acked.len(),
        refused.len(),
        puts.len()
    );
}

//! Real faults, one bot: Lark unreachable from a cold start (the bot cannot yet tell whether it
//! was mentioned), Feishu Project failing in every way it can (error bursts, answers slower
//! than the timeout, connections closed, bodies that are not JSON), and the store going away
//! (a real redis-server stopped, then started again). Each command still ends in exactly one
//! answer, no item changes twice, and nothing acknowledged is lost.

use std::time::Duration;

use abort_bot::clock::Clock;
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

/// Waits (bounded) until the one pending event has failed twice (its tries in memory).
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

/// Moves the bot's clock on by `secs` in 5 min steps, letting two sweeps pass at each.
async fn pass_time(app: &TestApp, secs: i64) {
    let mut left = secs;
    while left > 0 {
        let step = left.min(300);
        app.clock.advance_secs(step);
        app.sweeps_pass(2).await;
        left -= step;
    }
}

/// A group command that arrives while Lark is down at a cold start: the bot cannot tell
/// whether it was mentioned, so it keeps the command pending (in the store, not in memory)
/// and the sweeps try it again for as long as replies are retried.
#[tokio::test]
async fn a_group_command_at_a_cold_start_waits_out_a_lark_outage_and_runs_once() {
    let app = spawn_app().await;
    lark_down(&app);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let direct = app.send(BOB, Chat::P2p, "/abort 12346 repeat").await;
    // A direct message needs no bot info: it runs now and its answer waits in the outbox.
    wait_for_puts(&app, 1).await;
    // The group command was tried in memory, then handed back to the store.
    let store = app.open_store().await;
    tried_twice(&app, &store).await;
    // Half an hour of the bot's clock, well past the five tries that used to drop it.
    pass_time(&app, 30 * 60).await;
    let pending = app.pending(&store).await;
    assert_eq!(pending.len(), 1, "kept: {pending:?}");
    assert!(
        pending[0].attempts > 5,
        "the sweeps kept trying it: {} attempts",
        pending[0].attempts
    );
    assert!(app.swept().await >= 3, "each try came from a sweep");
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert!(app.lark.replies_to(&message_id).is_empty());
    assert!(!app.project.item(12345).expect("item").aborted);

    // Lark is back: the next sweep runs it (a probe through Lark's circuit once it is due).
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
    pass_time(&app, 9 * 60).await;
    assert_eq!(app.pending(&store).await.len(), 1, "kept within its 10 min");
    pass_time(&app, 2 * 60).await;
    assert!(app.pending(&store).await.is_empty(), "dropped after 10 min");
    app.lark.state().faults.clear();
    pass_time(&app, 60).await;
    assert!(app.settled_replies(&message_id).await.is_empty());
    assert!(app.project.requests_to("PUT", "/open_api/").is_empty());
}

//! The outcome is stored once; delivery is its own retried step. With Lark failing, the
//! answers wait in the outbox (not in memory), are tried on the contract's schedule on the
//! bot's clock, and go out once Lark is back; the work (the PUT) never runs again. A failure
//! that can never pass is recorded with its code and dropped. A crash or a stop leaves the
//! answers in the store, and the next start delivers them once.

use std::time::Duration;

use abort_bot::clock::Clock;
use abort_bot::emulator::lark::Endpoint;
use abort_bot::store::Store;

use super::helpers::*;
use super::redis_server::RedisServer;

/// Enough injected failures for any outage a test runs (each is one refused request).
const OUTAGE: usize = 20_000;

fn lark_down(app: &TestApp, endpoint: Endpoint) {
    for _ in 0..OUTAGE {
        app.lark.push_fault(endpoint, 503, 0);
    }
}

fn lark_back(app: &TestApp) {
    app.lark.state().faults.clear();
}

/// Moves the bot's clock on to `millis` (rounded up to its whole second), never back.
fn move_to(app: &TestApp, millis: i64) {
    let secs = millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) > 0);
    if secs > app.clock.now_secs() {
        app.clock.set_secs(secs);
    }
}

fn reply_calls(app: &TestApp, message_id: &str) -> usize {
    app.lark
        .requests_to(
            "POST",
            &format!("/open-apis/im/v1/messages/{message_id}/reply"),
        )
        .len()
}

async fn metrics(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Polls the store every 20 ms for at most 10 s until `done` holds for what it read.
async fn store_until<T: std::fmt::Debug>(
    what: &str,
    store: &Store,
    read: impl AsyncFn(&Store) -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let mut last = None;
    for _ in 0..500 {
        let value = read(store).await;
        if done(&value) {
            return value;
        }
        last = Some(value);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what} (last read {last:?})");
}

async fn waiting(store: &Store) -> u64 {
    store.deliveries_waiting().await.expect("outbox count")
}

async fn next_due(store: &Store) -> Option<i64> {
    store.next_delivery_due().await.expect("next due")
}

#[tokio::test]
async fn lark_down_for_five_minutes_then_every_reply_goes_out_once_and_no_put_repeats() {
    let app = spawn_with(Options {
        outbox_first_pause: abort_bot::outbox::FIRST_PAUSE,
        ..Options::default()
    })
    .await;
    // Bot info is fetched (and cached) before the outage: only sending fails.
    app.say(ALICE, Chat::Group, "/help").await;
    lark_down(&app, Endpoint::Reply);
    let messages = [
        app.send(ALICE, Chat::Group, "/abort 12345 test").await,
        app.send(BOB, Chat::Group, "/abort 12346 repeat").await,
        app.send(ALICE, Chat::Thread, "/abort 12347 test").await,
    ];
    wait_for_puts(&app, 3).await;
    let store = app.open_store().await;
    store_until("three answers waiting", &store, waiting, |n| *n == 3).await;
    // Five minutes of the bot's clock: each time nothing is due, move to when something is.
    let started = app.clock.now_millis();
    let mut longest_pause = 0;
    let mut steps = 0;
    while app.clock.now_millis() - started < 5 * 60 * 1000 {
        let now = app.clock.now_millis();
        let due = store_until(
            "the due answers tried and put back",
            &store,
            next_due,
            |d| d.is_some_and(|d| d > now),
        )
        .await
        .unwrap_or(now);
        longest_pause = longest_pause.max(due - now);
        move_to(&app, due);
        steps += 1;
    }
    let mut calls = 0;
    for m in &messages {
        assert!(app.lark.replies_to(m).is_empty(), "nothing got through");
        // Each answer's first try is the client's own 1 + 3 retries.
        assert!(
            reply_calls(&app, m) >= 4,
            "{m}: {} calls",
            reply_calls(&app, m)
        );
        calls += reply_calls(&app, m);
    }
    // After five failed tries in a row Lark's circuit opens: tries fail at once without a
    // call, and every 30 s one goes through as a probe. Over 5 minutes: the first tries, then
    // at least one probe a minute.
    assert!(calls >= 3 * 4 + 5, "{calls} reply calls in all");
    assert!(longest_pause <= 60_000, "a pause of {longest_pause} ms");
    assert!(steps >= 5, "{steps} steps");
    let text = metrics(&app).await;
    assert!(text.contains("abort_bot_outbox_waiting 3"), "{text}");
    lark_back(&app);
    let all_replied = || messages.iter().all(|m| !app.lark.replies_to(m).is_empty());
    for _ in 0..500 {
        if all_replied() {
            break;
        }
        if let Some(due) = next_due(&store).await {
            move_to(&app, due);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for m in &messages {
        let reply = app.reply_to(m).await;
        assert_eq!(
            card_color(&reply.card),
            "green",
            "{}",
            card_text(&reply.card)
        );
    }
    store_until("the outbox emptied", &store, waiting, |n| *n == 0).await;
    for m in &messages {
        assert_eq!(
            app.settled_replies(m).await.len(),
            1,
            "exactly one reply to {m}"
        );
    }
    assert_eq!(
        app.project.requests_to("PUT", "/open_api/").len(),
        3,
        "no PUT repeated"
    );
    let thread = app.lark.replies_to(&messages[2]);
    assert!(thread[0].in_thread, "the retried reply keeps its thread");
    let text = metrics(&app).await;
    assert!(text.contains("abort_bot_outbox_waiting 0"), "{text}");
}

#[tokio::test]
async fn a_withdrawn_message_is_recorded_with_its_code_and_never_retried() {
    let app = spawn_app().await;
    // lark.md §4.3: 230011, the message was recalled; no try can ever succeed.
    app.lark.push_fault(Endpoint::Reply, 400, 230_011);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let store = app.open_store().await;
    let key = format!("message:{message_id}");
    let code = store_until(
        "the answer given up",
        &store,
        async |s: &Store| s.delivery_given_up(key.clone()).await.expect("read"),
        Option::is_some,
    )
    .await;
    assert_eq!(code.as_deref(), Some("230011"));
    assert_eq!(waiting(&store).await, 0, "nothing left to retry");
    assert_eq!(next_due(&store).await, None);
    // Later on the bot's clock there is still nothing due, so nothing more is sent.
    app.clock.advance_secs(3600);
    assert_eq!(app.settled_replies(&message_id).await.len(), 0);
    assert_eq!(reply_calls(&app, &message_id), 1, "one try, no retry");
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"abort_bot_outbox_given_up_total{code="230011"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_reply_failing_past_abort_bot_reply_retry_is_dropped_as_expired() {
    let app = spawn_with(Options {
        extra: vec![("ABORT_BOT_REPLY_RETRY", "10m".into())],
        ..Options::default()
    })
    .await;
    app.say(ALICE, Chat::Group, "/help").await;
    lark_down(&app, Endpoint::Reply);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let store = app.open_store().await;
    wait_until("one whole try failed", || {
        reply_calls(&app, &message_id) >= 4
    })
    .await;
    assert_eq!(
        waiting(&store).await,
        1,
        "still waiting, within its 10 minutes"
    );
    app.clock.advance_secs(11 * 60);
    let key = format!("message:{message_id}");
    let code = store_until(
        "the answer given up",
        &store,
        async |s: &Store| s.delivery_given_up(key.clone()).await.expect("read"),
        Option::is_some,
    )
    .await;
    assert_eq!(code.as_deref(), Some("expired:http_503"));
    assert_eq!(waiting(&store).await, 0);
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"abort_bot_outbox_given_up_total{code="expired"} 1"#),
        "{text}"
    );
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

/// Answers stored while Lark is down outlive the process (a crash, or a stop), and the next
/// start delivers each once without running the work again.
async fn answers_outlive_the_process(mut app: TestApp, crash: bool) {
    app.say(ALICE, Chat::Group, "/help").await;
    lark_down(&app, Endpoint::Reply);
    let messages = [
        app.send(ALICE, Chat::Group, "/abort 12345 test").await,
        app.send(BOB, Chat::P2p, "/abort 12346 repeat").await,
    ];
    wait_for_puts(&app, 2).await;
    {
        let store = app.open_store().await;
        store_until("two answers waiting", &store, waiting, |n| *n == 2).await;
    }
    if crash {
        app.crash();
    } else {
        app.stop().await.expect("a clean stop while Lark is down");
    }
    lark_back(&app);
    let app = app.restart().await;
    // A try cut short by the crash is due again after its lease.
    app.clock.advance_secs(60);
    for m in &messages {
        let reply = app.reply_to(m).await;
        assert_eq!(
            card_color(&reply.card),
            "green",
            "{}",
            card_text(&reply.card)
        );
    }
    let store = app.open_store().await;
    store_until("the outbox emptied", &store, waiting, |n| *n == 0).await;
    for m in &messages {
        assert_eq!(
            app.settled_replies(m).await.len(),
            1,
            "exactly one reply to {m}"
        );
    }
    assert_eq!(
        app.project.requests_to("PUT", "/open_api/").len(),
        2,
        "the restart did not run the work again"
    );
}

#[tokio::test]
async fn answers_left_by_a_crash_are_delivered_once_after_restart() {
    answers_outlive_the_process(spawn_app().await, true).await;
}

#[tokio::test]
async fn answers_left_at_a_stop_are_delivered_once_after_restart() {
    answers_outlive_the_process(spawn_app().await, false).await;
}

#[tokio::test]
async fn on_redis_answers_left_by_a_crash_are_delivered_once_after_restart() {
    let redis = RedisServer::start();
    let app = spawn_with(Options {
        redis: Some(redis.clone()),
        ..Options::default()
    })
    .await;
    answers_outlive_the_process(app, true).await;
}

#[tokio::test]
async fn a_slow_click_whose_result_cannot_land_ends_green_after_a_crash() {
    let mut app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    app.project.push_fault(
        abort_bot::emulator::project::Endpoint::Abort,
        abort_bot::emulator::project::Fault::Delay(Duration::from_millis(3000)),
    );
    // Neither the delayed update nor the PATCH of the card gets through.
    lark_down(&app, Endpoint::CardUpdate);
    lark_down(&app, Endpoint::Patch);
    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &message_id, "go")
                .form(serde_json::json!({"option": "repeat", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "info", "{}", clicked.body);
    wait_for_puts(&app, 1).await;
    {
        let store = app.open_store().await;
        store_until("the click's result waiting", &store, waiting, |n| *n == 1).await;
    }
    wait_until("the result tried", || {
        !app.lark
            .requests_to("PATCH", "/open-apis/im/v1/messages/")
            .is_empty()
    })
    .await;
    assert_eq!(
        card_color(&app.lark.message(&message_id).expect("card").card),
        "blue",
        "nothing landed yet"
    );
    app.crash();
    lark_back(&app);
    let app = app.restart().await;
    app.clock.advance_secs(60);
    wait_until("the card shows the result", || {
        app.lark
            .message(&message_id)
            .is_some_and(|m| card_color(&m.card) == "green")
    })
    .await;
    let store = app.open_store().await;
    store_until("the outbox emptied", &store, waiting, |n| *n == 0).await;
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

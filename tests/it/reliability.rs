//! Nothing lost, nothing doubled: dedup, crash recovery, token refresh, steady-state costs,
//! graceful shutdown, and the edges of the HTTP surface.

use std::time::Duration;

use super::helpers::*;
use abort_bot::emulator::project::{Endpoint, Fault};
use serde_json::json;

#[tokio::test]
async fn a_redelivered_event_acts_and_replies_once() {
    let app = spawn_app().await;
    let (event_id, message_id) = (new_event_id(), new_message_id());
    let event = message_event(
        &event_id,
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    for _ in 0..3 {
        assert_eq!(app.post_event(&event).await.status(), 200);
    }
    app.reply_to(&message_id).await;
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    let reply_calls = app.lark.requests_to(
        "POST",
        &format!("/open-apis/im/v1/messages/{message_id}/reply"),
    );
    assert_eq!(reply_calls.len(), 1);
}

#[tokio::test]
async fn the_same_message_under_two_event_ids_is_one_command() {
    let app = spawn_app().await;
    let message_id = new_message_id();
    for _ in 0..2 {
        let event = message_event(
            &new_event_id(),
            &message_id,
            ALICE,
            Chat::Group,
            "/abort 12345 test",
        );
        assert_eq!(app.post_event(&event).await.status(), 200);
    }
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

#[tokio::test]
async fn a_crash_after_the_put_landed_aborts_exactly_once() {
    crash_after_the_put_landed(spawn_app().await).await;
}

/// The first PUT lands but the bot dies before hearing the answer; after a restart on the same
/// store the pending event runs again, and the repeated PUT is recognised as the bot's own.
/// Shared with the Redis store's tests.
pub async fn crash_after_the_put_landed(mut app: TestApp) {
    // The first PUT is applied by the server, but the bot dies before hearing the answer.
    app.project
        .push_fault(Endpoint::Abort, Fault::Hang { apply: true });
    let message_id = new_message_id();
    let event = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 repeat",
    );
    assert_eq!(
        app.post_event(&event).await.status(),
        200,
        "acked after the durable write"
    );
    wait_for_puts(&app, 1).await;
    app.crash();
    assert!(app.lark.replies_to(&message_id).is_empty());

    let app = app.restart().await;
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert_eq!(
        puts.len(),
        2,
        "the pending event ran again after the restart"
    );
    assert_eq!(puts[0].header("x-idem-uuid"), puts[1].header("x-idem-uuid"));
    let item = app.project.item(12345).expect("item");
    assert!(item.aborted);
    assert_eq!(item.reason_option, "repeat");
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
}

#[tokio::test]
async fn a_stored_event_nobody_woke_the_worker_for_is_run_once() {
    stored_but_never_queued(spawn_app().await).await;
}

/// The store took an event but no route woke the worker (its answer was lost, so Lark's
/// redelivery was a duplicate): the worker's poll claims it from the store and runs it,
/// exactly once. Nothing else can run it: no route woke anyone and the bot does not restart.
/// Shared with the Redis store's tests.
pub async fn stored_but_never_queued(app: TestApp) {
    let store = app.open_store().await;
    let message_id = new_message_id();
    let event = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 repeat",
    );
    let msg = abort_bot::lark::message::ReceivedMessage::from_event(&event).expect("message");
    let payload = serde_json::to_string(&msg).expect("payload");
    let accepted = store
        .accept_message(new_event_id(), message_id.clone(), payload, NOW)
        .await;
    let Ok(abort_bot::store::Accepted::New(_)) = accepted else {
        panic!("stored: {accepted:?}");
    };
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    app.settled().await;
    assert_eq!(app.claimed().await, 1, "claimed once, from the store");
    assert_eq!(app.lark.replies_to(&message_id).len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert_eq!(
        app.project.item(12345).expect("item").reason_option,
        "repeat"
    );
}

#[tokio::test]
async fn a_renewed_lease_keeps_a_slow_event_from_a_second_run() {
    // A lease far shorter than the slow PUT: only its renewals (every 0.5 s) keep the event
    // this bot's.
    let app = spawn_with(Options {
        inbox_lease: Duration::from_millis(1500),
        upstream_timeout: Duration::from_secs(15),
        ..Options::default()
    })
    .await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_secs(5)));
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    app.reply_to(&message_id).await;
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(
        app.claimed().await,
        1,
        "claimed once: polls passed while it ran"
    );
    assert_eq!(app.takeovers().await, 0);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

#[tokio::test]
async fn a_retry_waits_in_the_store_and_runs_once() {
    let app = spawn_app().await;
    // Whether the bot was mentioned cannot be told (bot info fails through the client's own
    // retries): the worker stores a retry due 1 s later and runs the event again then.
    for _ in 0..4 {
        app.lark
            .push_fault(abort_bot::emulator::lark::Endpoint::BotInfo, 500, 0);
    }
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    app.reply_to(&message_id).await;
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    // The first try and the retry; no poll claimed it while its pause ran.
    assert_eq!(app.claimed().await, 2);
    let store = app.open_store().await;
    assert_eq!(
        store.inbox_stats().await.expect("stats").pending,
        0,
        "finished"
    );
    assert_eq!(
        app.project.requests_to("PUT", "/open_api/").len(),
        1,
        "the retry acted once"
    );
}

#[tokio::test]
async fn a_crash_before_the_put_loses_nothing() {
    let mut app = spawn_app().await;
    // The bot dies while looking the user up: nothing was sent yet.
    app.project
        .push_fault(Endpoint::UserQuery, Fault::Hang { apply: false });
    let message_id = app.send(ALICE, Chat::Group, "/abort 12346 cancel").await;
    wait_until("user lookup", || {
        !app.project
            .requests_to("POST", "/open_api/user/query")
            .is_empty()
    })
    .await;
    app.crash();
    let app = app.restart().await;
    app.reply_to(&message_id).await;
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert!(app.project.item(12346).expect("item").aborted);
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_work() {
    let mut app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(400)));
    let message_id = app.send(ALICE, Chat::Group, "/abort 12347 test").await;
    wait_for_puts(&app, 1).await;
    app.stop().await.expect("clean stop");
    assert_eq!(
        app.lark.replies_to(&message_id).len(),
        1,
        "the reply went out before exit"
    );
    assert!(
        app.http.get(app.url("/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn an_expired_plugin_token_is_dropped_and_refetched_once() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    app.project.expire_tokens();
    app.project.clear_requests();
    let card = app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    assert_eq!(card_color(&card), "green");
    let paths: Vec<String> = app.project.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            format!("/open_api/{PROJECT_KEY}/work_item/story/12345/abort"),
            "/open_api/authen/plugin_token".to_string(),
            format!("/open_api/{PROJECT_KEY}/work_item/story/12345/abort"),
        ],
        "10022, one new token, the same PUT again"
    );
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    // 7200 s tokens: refreshed 3 min (plugin) and 10 min (tenant) early.
    app.clock.advance_secs(7200 - 170);
    app.project.clear_requests();
    app.lark.clear_requests();
    app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    assert_eq!(
        app.project
            .requests_to("POST", "/open_api/authen/plugin_token")
            .len(),
        1
    );
    assert_eq!(
        app.lark
            .requests_to("POST", "/open-apis/auth/v3/tenant_access_token/internal")
            .len(),
        1
    );
}

#[tokio::test]
async fn an_invalid_tenant_token_is_refetched_once() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/help").await;
    app.lark.expire_tokens();
    app.lark.clear_requests();
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, ALICE, Chat::P2p, "/help");
    app.post_event(&event).await;
    app.reply_to(&message_id).await;
    let paths: Vec<String> = app.lark.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            format!("/open-apis/im/v1/messages/{message_id}/reply"),
            "/open-apis/auth/v3/tenant_access_token/internal".to_string(),
            format!("/open-apis/im/v1/messages/{message_id}/reply"),
        ]
    );
}

#[tokio::test]
async fn steady_state_costs_one_put_and_one_reply() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    app.project.clear_requests();
    app.lark.clear_requests();
    app.say(ALICE, Chat::Group, "/restore 12345 rollback").await;
    let project: Vec<String> = app
        .project
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        project,
        [format!(
            "PUT /open_api/{PROJECT_KEY}/work_item/story/12345/abort"
        )]
    );
    let lark: Vec<String> = app.lark.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(lark, ["POST"], "only the reply");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused() {
    let app = spawn_app().await;
    let big = format!("{{\"encrypt\":\"{}\"}}", "A".repeat(1024 * 1024 + 1));
    let resp = app.post_raw("/lark/events", &[], big).await;
    assert_eq!(resp.status(), 413);
    assert!(app.lark.requests().is_empty() && app.project.requests().is_empty());
}

#[tokio::test]
async fn unsigned_events_are_refused_when_an_encrypt_key_is_set() {
    let app = spawn_app().await;
    let event = message_event(
        &new_event_id(),
        &new_message_id(),
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    let encrypted =
        json!({"encrypt": abort_bot::lark::crypto::encrypt(EK, &event.to_string(), [1; 16])});
    let resp = app
        .post_raw("/lark/events", &[], encrypted.to_string())
        .await;
    assert_eq!(resp.status(), 401);
    let plain = app.post_raw("/lark/events", &[], event.to_string()).await;
    assert!(plain.status() == 401 || plain.status() == 400);
    app.assert_untouched("unsigned events").await;
}

#[tokio::test]
async fn without_an_encrypt_key_the_token_is_the_check() {
    let app = spawn_with(Options {
        encrypt_key: None,
        ..Options::default()
    })
    .await;
    let mut event = message_event(
        &new_event_id(),
        &new_message_id(),
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    event["header"]["token"] = "wrong".into();
    assert_eq!(app.post_event(&event).await.status(), 401);
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    app.reply_to(&message_id).await;
    // A schema 1.0 envelope is checked on its top-level token too.
    let v1 = json!({"uuid": "u-1", "token": "wrong", "ts": "1", "type": "event_callback", "event": {"type": "message"}});
    assert_eq!(app.post_event(&v1).await.status(), 401);
    let v1 = json!({"uuid": "u-2", "token": VT, "ts": "1", "type": "event_callback", "event": {"type": "message"}});
    assert_eq!(app.post_event(&v1).await.status(), 200);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    let get = |p: &str| app.http.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .contains("abort_bot_inbound_requests_total{route=\"events\",result=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("abort_bot_outcomes_total{action=\"abort\",outcome=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("service=\"feishu_project\""), "{metrics}");
}

#[tokio::test]
async fn a_failed_reply_is_retried_later_without_a_second_abort() {
    let app = spawn_app().await;
    // The reply fails through every one of the client's own retries; the outbox sends the
    // stored answer again, and the work (the PUT) is not run again.
    for _ in 0..4 {
        app.lark
            .push_fault(abort_bot::emulator::lark::Endpoint::Reply, 500, 0);
    }
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    let reply_path = format!("/open-apis/im/v1/messages/{message_id}/reply");
    assert_eq!(
        app.lark.requests_to("POST", &reply_path).len(),
        5,
        "4 failed, 1 sent"
    );
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert_eq!(app.project.item(12345).expect("item").reason_option, "test");
}

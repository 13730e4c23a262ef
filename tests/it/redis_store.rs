//! The whole bot on `ABORT_BOT_STORE=redis://…` (a real redis-server per test): a command and
//! its redeliveries act once, and a crash of the bot, or of Redis itself, loses nothing and
//! doubles nothing.

use super::helpers::*;
use super::redis_server::RedisServer;
use abort_bot::emulator::project::{Endpoint, Fault};

async fn spawn_on_redis() -> (TestApp, std::sync::Arc<RedisServer>) {
    let redis = RedisServer::start();
    let app = spawn_with(Options {
        redis: Some(redis.clone()),
        ..Options::default()
    })
    .await;
    (app, redis)
}

#[tokio::test]
async fn a_command_and_its_redeliveries_act_and_reply_once() {
    let (app, redis) = spawn_on_redis().await;
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
    // The same message under another event_id is the same command.
    let again = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    assert_eq!(app.post_event(&again).await.status(), 200);
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert!(app.project.item(12345).expect("item").aborted);
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    // It really was Redis that kept the command.
    let kept = redis.command(&format!("EXISTS abort-bot:message:{message_id}"));
    assert_eq!(kept.trim(), ":1");
}

#[tokio::test]
async fn a_binding_lives_in_redis_across_a_restart() {
    let (app, _redis) = spawn_on_redis().await;
    let card = app
        .say(ALICE, Chat::Group, &format!("/bind {PROJECT_KEY}"))
        .await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    let app = app.restart().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
}

#[tokio::test]
async fn a_stored_event_nobody_woke_the_worker_for_is_run_once() {
    let (app, _redis) = spawn_on_redis().await;
    super::reliability::stored_but_never_queued(app).await;
}

#[tokio::test]
async fn a_crash_after_the_put_landed_aborts_exactly_once() {
    let (app, _redis) = spawn_on_redis().await;
    super::reliability::crash_after_the_put_landed(app).await;
}

#[tokio::test]
async fn an_acknowledged_event_survives_a_crash_of_the_bot_and_of_redis() {
    let (mut app, redis) = spawn_on_redis().await;
    // The bot dies while looking the user up: nothing was sent yet.
    app.project
        .push_fault(Endpoint::UserQuery, Fault::Hang { apply: false });
    let message_id = new_message_id();
    let event = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12346 cancel",
    );
    assert_eq!(app.post_event(&event).await.status(), 200);
    wait_until("user lookup", || {
        !app.project
            .requests_to("POST", "/open_api/user/query")
            .is_empty()
    })
    .await;
    app.crash();
    // Redis is killed too (no shutdown save): only its append-only file remains.
    redis.crash_and_restart();
    let app = app.restart().await;
    app.reply_to(&message_id).await;
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
    assert!(app.project.item(12346).expect("item").aborted);
    // And its dedup key survived: a late redelivery does nothing.
    assert_eq!(app.post_event(&event).await.status(), 200);
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

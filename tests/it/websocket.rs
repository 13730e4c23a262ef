//! `ABORT_BOT_MODE=websocket`: the real bot dials the emulated Lark long connection, which
//! pushes pbbp2 frames and reads the bot's acks and pings.

use std::time::Duration;

use abort_bot::emulator::lark_ws::SERVICE_ID;
use abort_bot::lark::ws::frame::{Frame, Header, Kind, METHOD_DATA};
use base64::Engine as _;
use serde_json::{Value, json};

use super::helpers::*;

async fn ws_app() -> TestApp {
    let app = spawn_with(Options {
        websocket: true,
        ..Options::default()
    })
    .await;
    connected(&app, 1).await;
    app
}

/// Waits until the bot has opened its `n`-th connection and it is the only one open.
async fn connected(app: &TestApp, n: u32) {
    let ws = app.lark.ws();
    wait_until(&format!("connection {n} open"), || {
        ws.connections() >= n && ws.open_connections() == 1
    })
    .await;
}

/// `payload` as Lark sends it: data frames of type `event`, split into `parts` fragments.
fn data_frames(frame_id: &str, payload: &[u8], parts: usize) -> Vec<Frame> {
    let size = payload.len().div_ceil(parts);
    payload
        .chunks(size)
        .enumerate()
        .map(|(seq, chunk)| Frame {
            seq_id: 0,
            log_id: 0,
            service: SERVICE_ID,
            method: METHOD_DATA,
            headers: vec![
                Header::new("type", "event"),
                Header::new("message_id", frame_id),
                Header::new("sum", parts.to_string()),
                Header::new("seq", seq.to_string()),
                Header::new("trace_id", format!("trace-{frame_id}")),
            ],
            payload: Some(chunk.to_vec()),
            ..Frame::default()
        })
        .collect()
}

fn push(app: &TestApp, frames: &[Frame]) {
    for f in frames {
        assert!(app.lark.ws().push(f), "a connection is open");
    }
}

/// The acks the bot sent for frame-message `frame_id`.
fn acks_for(app: &TestApp, frame_id: &str) -> Vec<Frame> {
    app.lark
        .ws()
        .received()
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.method == METHOD_DATA && f.header("message_id") == Some(frame_id))
        .collect()
}

/// Waits (bounded) for the `n`-th ack of `frame_id`.
async fn ack(app: &TestApp, frame_id: &str, n: usize) -> Frame {
    wait_until(&format!("ack {n} of {frame_id}"), || {
        acks_for(app, frame_id).len() >= n
    })
    .await;
    acks_for(app, frame_id).swap_remove(n - 1)
}

/// The ack payload, with `data` decoded from base64 JSON.
fn ack_json(f: &Frame) -> Value {
    let mut v: Value =
        serde_json::from_slice(f.payload.as_deref().expect("ack payload")).expect("JSON");
    if let Some(d) = v.get("data").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d)
            .expect("base64");
        v["data"] = serde_json::from_slice(&bytes).expect("data is JSON");
    }
    v
}

fn puts(app: &TestApp) -> Vec<abort_bot::emulator::Recorded> {
    app.project.requests_to("PUT", "/open_api/")
}

/// Pushes a text message from `who` over the long connection in `parts` fragments.
fn say_over_ws(app: &TestApp, who: Person, text: &str, frame_id: &str, parts: usize) -> String {
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, who, Chat::Group, text);
    push(
        app,
        &data_frames(frame_id, event.to_string().as_bytes(), parts),
    );
    message_id
}

#[tokio::test]
async fn a_fragmented_message_event_aborts_as_the_sender_and_is_acked_200() {
    let app = ws_app().await;
    let message_id = say_over_ws(&app, ALICE, "/abort 12345 repeat duplicate", "f-1", 2);
    let ack = ack(&app, "f-1", 1).await;
    assert_eq!(ack_json(&ack), json!({"code": 200}));
    assert_eq!(
        ack.header("seq"),
        Some("1"),
        "one ack, from the last fragment"
    );
    assert_eq!(ack.header("trace_id"), Some("trace-f-1"));
    assert_eq!(ack.service, SERVICE_ID);
    let biz_rt: i64 = ack.header("biz_rt").expect("biz_rt").parse().expect("ms");
    assert!(
        (0..3000).contains(&biz_rt),
        "acked within Lark's 3 s: {biz_rt}"
    );

    let reply = app.reply_to(&message_id).await;
    assert_eq!(card_color(&reply.card), "green");
    let puts = puts(&app);
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].path,
        format!("/open_api/{PROJECT_KEY}/work_item/story/12345/abort")
    );
    assert_eq!(puts[0].header("x-user-key"), Some(ALICE.user_key));
    assert_eq!(acks_for(&app, "f-1").len(), 1);
}

#[tokio::test]
async fn a_redelivered_event_acts_once_and_every_delivery_is_acked() {
    let app = ws_app().await;
    let message_id = new_message_id();
    let event = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    let bytes = event.to_string().into_bytes();
    push(&app, &data_frames("r-1", &bytes, 1));
    assert_eq!(ack_json(&ack(&app, "r-1", 1).await)["code"], 200);
    app.reply_to(&message_id).await;
    // Lark pushes again: the same frame, then under a new frame id, split differently.
    push(&app, &data_frames("r-1", &bytes, 1));
    push(&app, &data_frames("r-2", &bytes, 3));
    assert_eq!(ack_json(&ack(&app, "r-1", 2).await)["code"], 200);
    assert_eq!(ack_json(&ack(&app, "r-2", 1).await)["code"], 200);
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_card_click_over_the_long_connection_is_answered_in_the_ack() {
    let app = ws_app().await;
    let message_id = say_over_ws(&app, ALICE, "/abort 12345", "c-1", 1);
    let picker = app.reply_to(&message_id).await;
    assert!(puts(&app).is_empty(), "the picker changes nothing");

    let click = ClickOn::button(&app, BOB, &picker.message_id, "go")
        .form(json!({"option": "repeat", "reason": "dup of 12001"}));
    let card_token = app.lark.issue_card_token(&picker.message_id);
    let callback = envelope(
        &click.event_id,
        "card.action.trigger",
        json!({
            "operator": {"tenant_key": "2ca1d211f64f6438", "user_id": "",
                         "open_id": BOB.open_id, "union_id": BOB.union_id},
            "token": card_token,
            "action": {"value": click.value, "tag": "button", "name": "go", "form_value": click.form},
            "host": "im_message", "delivery_type": "",
            "context": {"open_message_id": picker.message_id, "open_chat_id": GROUP_CHAT}
        }),
    );
    let frames = data_frames("c-2", callback.to_string().as_bytes(), 1);
    push(&app, &frames);
    let answer = ack_json(&ack(&app, "c-2", 1).await);
    assert_eq!(answer["code"], 200);
    assert_eq!(answer["data"]["toast"]["type"], "success", "{answer}");
    assert_eq!(answer["data"]["toast"]["content"], "Aborted: 12345");
    let card = &answer["data"]["card"]["data"];
    assert_eq!(card_color(card), "green");
    assert!(card_text(card).contains(BOB.open_id), "the clicker acts");
    let p = puts(&app);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].header("x-user-key"), Some(BOB.user_key));

    // A redelivered click changes nothing more and is still answered.
    push(&app, &frames);
    let again = ack_json(&ack(&app, "c-2", 2).await);
    assert_eq!(again["code"], 200);
    assert_ne!(again["data"]["toast"]["type"], "success", "{again}");
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_acked_500_and_stores_nothing() {
    let app = ws_app().await;
    let message_id = new_message_id();
    let event_id = new_event_id();
    let mut event = message_event(
        &event_id,
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    event["header"]["token"] = json!("not-the-verification-token");
    push(&app, &data_frames("t-1", event.to_string().as_bytes(), 1));
    assert_eq!(ack_json(&ack(&app, "t-1", 1).await), json!({"code": 500}));
    assert!(app.settled_replies(&message_id).await.is_empty());
    // The event_id stayed unseen: the genuine delivery is processed.
    let genuine = message_event(
        &event_id,
        &message_id,
        ALICE,
        Chat::Group,
        "/abort 12345 test",
    );
    push(&app, &data_frames("t-2", genuine.to_string().as_bytes(), 1));
    assert_eq!(ack_json(&ack(&app, "t-2", 1).await)["code"], 200);
    app.reply_to(&message_id).await;
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn legacy_card_frames_get_no_ack() {
    let app = ws_app().await;
    let mut frames = data_frames("k-1", br#"{"open_id":"ou_x","action":{"value":{}}}"#, 1);
    frames[0].headers[0] = Header::new("type", "card");
    push(&app, &frames);
    // An event pushed after it is acked; the card frame never is.
    say_over_ws(&app, ALICE, "/help", "k-2", 1);
    ack(&app, "k-2", 1).await;
    assert!(acks_for(&app, "k-1").is_empty());
}

#[tokio::test]
async fn a_dropped_connection_reconnects_with_a_fresh_endpoint_and_keeps_working() {
    let app = ws_app().await;
    let ws = app.lark.ws();
    assert_eq!(ws.endpoint_calls(), 1);
    ws.drop_connections();
    connected(&app, 2).await;
    assert_eq!(
        ws.endpoint_calls(),
        2,
        "a fresh endpoint (one-time ticket) per connection"
    );
    let message_id = say_over_ws(&app, ALICE, "/abort 12345 repeat", "d-1", 2);
    assert_eq!(ack_json(&ack(&app, "d-1", 1).await)["code"], 200);
    app.reply_to(&message_id).await;
    let on_second = ws
        .received()
        .into_iter()
        .any(|(conn, f)| conn == 2 && f.header("message_id") == Some("d-1"));
    assert!(on_second, "acked on the new connection");
}

#[tokio::test]
async fn a_busy_endpoint_is_retried_after_the_reconnect_interval() {
    let app = ws_app().await;
    let ws = app.lark.ws();
    ws.push_endpoint_fault(1);
    ws.drop_connections();
    connected(&app, 2).await;
    assert_eq!(ws.endpoint_calls(), 3);
}

#[tokio::test]
async fn a_connection_limit_refusal_stops_retrying_but_not_the_server() {
    let mut app = ws_app().await;
    let ws = app.lark.ws();
    ws.push_endpoint_fault(1_000_040_350);
    ws.drop_connections();
    wait_until("the refused endpoint call", || ws.endpoint_calls() == 2).await;
    // The long connection has stopped for good: no further attempt can come.
    readyz_becomes(&app, 503, "long connection stopped").await;
    assert_eq!(ws.endpoint_calls(), 2);
    assert_eq!(ws.connections(), 1);
    let health = app.http.get(app.url("/healthz")).send().await.expect("up");
    assert_eq!(health.status(), 200);
    app.stop().await.expect("graceful stop");
}

/// Polls `/readyz` (bounded) until it answers `status` and `reason`.
async fn readyz_becomes(app: &TestApp, status: u16, reason: &str) {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = app.readyz().await;
        if last.0 == status && last.1 == reason {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz never answered {status} {reason}; last {last:?}");
}

#[tokio::test]
async fn readiness_follows_the_long_connection() {
    let app = ws_app().await;
    readyz_becomes(&app, 200, "ready").await;
    let ws = app.lark.ws();
    // Lost, and the first reconnect is refused for now: not ready until it is back.
    ws.push_endpoint_fault(1);
    ws.drop_connections();
    wait_until("the refused endpoint call", || ws.endpoint_calls() == 2).await;
    assert_eq!(
        app.readyz().await,
        (503, "long connection not open".to_owned()),
        "the next attempt is a ReconnectInterval (1 s) away"
    );
    connected(&app, 2).await;
    readyz_becomes(&app, 200, "ready").await;
    // Refused for good: not ready, and it stays so.
    ws.push_endpoint_fault(1_000_040_350);
    ws.drop_connections();
    wait_until("the fatal endpoint call", || ws.endpoint_calls() == 4).await;
    readyz_becomes(&app, 503, "long connection stopped").await;
    // Stopped means its reconnect loop has returned: the count is final.
    assert_eq!(ws.endpoint_calls(), 4);
    assert_eq!(
        app.readyz().await,
        (503, "long connection stopped".to_owned())
    );
}

#[tokio::test]
async fn pings_follow_the_ping_interval_from_the_endpoint() {
    let app = ws_app().await;
    let ws = app.lark.ws();
    let pings = || {
        ws.received()
            .into_iter()
            .filter(|(_, f)| f.kind() == Kind::Ping)
            .map(|(_, f)| f)
            .collect::<Vec<_>>()
    };
    // One at once, then every PingInterval (1 s): three within about 2 s.
    wait_until("three pings", || pings().len() >= 3).await;
    for p in pings() {
        assert_eq!(p.to_bytes(), Frame::ping(SERVICE_ID).to_bytes());
    }
}

#[tokio::test]
async fn graceful_stop_closes_the_connection_and_does_not_reconnect() {
    let mut app = ws_app().await;
    // The webhook routes keep working beside the long connection.
    let message_id = app.send(ALICE, Chat::Group, "/help").await;
    app.reply_to(&message_id).await;

    let ws = app.lark.ws();
    app.stop().await.expect("graceful stop");
    // `stop` returned only after the long connection's task ended: nothing can reconnect.
    wait_until("the bot's close frame", || ws.closed_by_bot() == 1).await;
    assert_eq!(ws.connections(), 1);
    assert_eq!(ws.open_connections(), 0);
}

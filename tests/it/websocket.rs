//! `ABORT_BOT_MODE=websocket`: the real bot dials the emulated Lark long connection, which
//! pushes pbbp2 frames and reads the bot's acks and pings.

use std::time::Duration;

use abort_bot::emulator::lark_ws::{SERVICE_ID, data_frames};
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

/// Pushes a text message from `who` over the long connection in `parts` fragments, as Lark
/// sends it (`header.token: ""`).
fn say_over_ws(app: &TestApp, who: Person, text: &str, frame_id: &str, parts: usize) -> String {
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, who, Chat::Group, text);
    assert!(app.lark.ws().push_event(&event, frame_id, parts));
    message_id
}

/// Pushes `event` exactly as given (its `header.token` untouched).
fn push_as_is(app: &TestApp, event: &Value, frame_id: &str) {
    push(app, &data_frames(frame_id, event.to_string().as_bytes(), 1));
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
    let ws = app.lark.ws();
    assert!(ws.push_event(&event, "r-1", 1));
    assert_eq!(ack_json(&ack(&app, "r-1", 1).await)["code"], 200);
    app.reply_to(&message_id).await;
    // Lark pushes again: the same frame, then under a new frame id, split differently.
    assert!(ws.push_event(&event, "r-1", 1));
    assert!(ws.push_event(&event, "r-2", 3));
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
    assert!(app.lark.ws().push_event(&callback, "c-2", 1));
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
    assert!(app.lark.ws().push_event(&callback, "c-2", 1));
    let again = ack_json(&ack(&app, "c-2", 2).await);
    assert_eq!(again["code"], 200);
    assert_ne!(again["data"]["toast"]["type"], "success", "{again}");
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn any_token_is_accepted_over_the_long_connection() {
    // §6.5: real payloads carry "", and the token is never compared on this path: an empty,
    // missing, null or wrong one is all the same.
    let app = ws_app().await;
    let tokens = [
        Some(json!("")),
        None,
        Some(Value::Null),
        Some(json!("not-the-verification-token")),
    ];
    for (i, token) in tokens.into_iter().enumerate() {
        let message_id = new_message_id();
        let mut event = message_event(
            &new_event_id(),
            &message_id,
            ALICE,
            Chat::Group,
            "/abort 12345 test",
        );
        match token {
            Some(t) => event["header"]["token"] = t,
            None => {
                event["header"]
                    .as_object_mut()
                    .expect("header")
                    .remove("token");
            }
        }
        let frame_id = format!("t-{i}");
        push_as_is(&app, &event, &frame_id);
        assert_eq!(
            ack_json(&ack(&app, &frame_id, 1).await),
            json!({"code": 200}),
            "{}",
            event["header"]
        );
        app.reply_to(&message_id).await;
    }
    // Each was accepted as its own command, acting as its sender.
    let p = puts(&app);
    assert_eq!(p.len(), 4);
    assert!(
        p.iter()
            .all(|r| r.header("x-user-key") == Some(ALICE.user_key))
    );
}

#[tokio::test]
async fn over_http_a_wrong_or_empty_token_is_still_refused() {
    let app = spawn_app().await;
    for token in [json!(""), json!("not-the-verification-token")] {
        let message_id = new_message_id();
        let mut event = message_event(
            &new_event_id(),
            &message_id,
            ALICE,
            Chat::Group,
            "/abort 12345 test",
        );
        event["header"]["token"] = token;
        let resp = app.post_event(&event).await;
        assert_eq!(resp.status(), 401, "{}", event["header"]);
        assert!(app.settled_replies(&message_id).await.is_empty());
    }
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn the_shared_vector_event_with_the_token_lark_really_sends_acts_as_its_sender() {
    // vectors/ws_frames.json: the generator put the verification token in the payload; Lark
    // sends "" (its note, §6.5). The frame is sent as recorded, with that one field as Lark
    // has it.
    let vectors = shared_vectors("ws_frames.json");
    let vector = vectors["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["name"] == "data-event im.message.receive_v1")
        .expect("the data-event vector");
    let mut frame = Frame::decode_bytes(
        &hex::decode(vector["hex"].as_str().expect("hex")).expect("hex decodes"),
    )
    .expect("frame decodes");
    let mut event: Value =
        serde_json::from_slice(frame.payload.as_deref().expect("payload")).expect("JSON");
    assert_eq!(event["header"]["token"], VT, "the vector as generated");
    event["header"]["token"] = json!("");
    frame.payload = Some(event.to_string().into_bytes());
    let message_id = event["event"]["message"]["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();

    let app = ws_app().await;
    push(&app, &[frame.clone()]);
    let ack = ack(&app, "msg-ws-0001", 1).await;
    assert_eq!(ack_json(&ack), json!({"code": 200}));
    // The ack carries the frame's own headers, plus biz_rt, as the SDKs' reply frames do.
    let sdk_reply = Frame::decode_bytes(
        &hex::decode(
            vector["python_sdk_reply_frames"][0]["hex"]
                .as_str()
                .expect("reply hex"),
        )
        .expect("hex decodes"),
    )
    .expect("reply decodes");
    let keys = |f: &Frame| f.headers.iter().map(|h| h.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&ack), keys(&sdk_reply));
    assert_eq!(
        (ack.seq_id, ack.log_id, ack.service, ack.method),
        (frame.seq_id, frame.log_id, frame.service, frame.method)
    );
    let reply = app.reply_to(&message_id).await;
    assert_eq!(card_color(&reply.card), "green");
    let p = puts(&app);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].header("x-user-key"), Some(ALICE.user_key));
}

#[tokio::test]
async fn in_websocket_mode_the_webhook_routes_answer_404() {
    let app = ws_app().await;
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, ALICE, Chat::Group, "/help");
    for path in ["/lark/events", "/lark/cards"] {
        let resp = app.post_envelope(path, &event, &NOW.to_string()).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = app.http.get(app.url(path)).send().await.expect("up");
        assert_eq!(resp.status(), 200, "{path}");
    }
    assert!(app.settled_replies(&message_id).await.is_empty());
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
    // "Stopped" is only shown once the reconnect loop has returned: no attempt can follow.
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
    let message_id = say_over_ws(&app, ALICE, "/help", "g-1", 1);
    app.reply_to(&message_id).await;

    let ws = app.lark.ws();
    app.stop().await.expect("graceful stop");
    // `stop` returned only after the long connection's task ended: nothing can reconnect.
    wait_until("the bot's close frame", || ws.closed_by_bot() == 1).await;
    assert_eq!(ws.connections(), 1);
    assert_eq!(ws.open_connections(), 0);
}

/// `/metrics` as text.
async fn metrics(app: &TestApp) -> String {
    let resp = app.http.get(app.url("/metrics")).send().await.expect("up");
    resp.text().await.expect("text")
}

#[tokio::test]
async fn a_forbidden_handshake_is_final_and_visible() {
    let app = ws_app().await;
    let ws = app.lark.ws();
    ws.push_handshake_fault(403, None);
    ws.drop_connections();
    readyz_becomes(&app, 503, "long connection stopped").await;
    assert_eq!(ws.endpoint_calls(), 2);
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"abort_bot_long_connection_stopped_total{reason="forbidden"} 1"#),
        "{text}"
    );
    // "Stopped" is only shown once the reconnect loop has returned: no attempt can follow.
    assert_eq!(ws.connections(), 1);
}

#[tokio::test]
async fn a_514_handshake_is_retried_unless_it_names_the_connection_limit() {
    let app = ws_app().await;
    let ws = app.lark.ws();
    ws.push_handshake_fault(514, Some(1));
    ws.drop_connections();
    connected(&app, 2).await;
    assert_eq!(
        ws.endpoint_calls(),
        3,
        "refused once, then a fresh endpoint"
    );
    ws.push_handshake_fault(514, Some(1_000_040_350));
    ws.drop_connections();
    readyz_becomes(&app, 503, "long connection stopped").await;
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"abort_bot_long_connection_stopped_total{reason="connection_limit"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("abort_bot_long_connection_reconnects_total 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_token_error_from_the_endpoint_is_final() {
    // §6.1.1: any endpoint code other than 0 / 1 / 1000040343 stops retries.
    let app = ws_app().await;
    let ws = app.lark.ws();
    ws.push_endpoint_fault(99_991_665);
    ws.drop_connections();
    readyz_becomes(&app, 503, "long connection stopped").await;
    assert_eq!(ws.endpoint_calls(), 2);
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"abort_bot_long_connection_stopped_total{reason="endpoint_refused"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_99991665_answer_refetches_the_tenant_token_once() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/help").await;
    app.lark
        .push_fault(abort_bot::emulator::lark::Endpoint::Reply, 400, 99_991_665);
    app.lark.clear_requests();
    let message_id = app.send(ALICE, Chat::P2p, "/help").await;
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

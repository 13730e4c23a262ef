//! Outbound discipline: the bot keeps under Lark's send limits on its own (the emulated Lark
//! refuses what Lark refuses, `protocol/lark.md` §4.2/§4.3), and an upstream that keeps
//! failing trips a circuit that answers "busy" at once instead of calling it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use abort_bot::circuit::CircuitConfig;
use abort_bot::clock::ManualClock;
use abort_bot::emulator::lark::Endpoint;
use abort_bot::lark::client::{LarkClient, LarkClientConfig, LarkError};
use abort_bot::metrics::Metrics;
use abort_bot::retry::RetryPolicy;
use serde_json::{Value, json};

use super::helpers::*;

/// Polls `done` every 20 ms for at most 30 s (paced replies take seconds to drain).
async fn wait_long(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 30 s: {what}");
}

/// When the emulated Lark took each reply (in order).
fn reply_times(app: &TestApp) -> Vec<Instant> {
    let mut times: Vec<Instant> = app
        .lark
        .requests_to("POST", "/open-apis/im/v1/messages/")
        .into_iter()
        .filter(|r| r.path.ends_with("/reply"))
        .map(|r| r.received_at)
        .collect();
    times.sort();
    times
}

/// A `/help` command from Alice in a group chat of its own.
fn help_in(chat_id: &str) -> (String, Value) {
    let message_id = new_message_id();
    let mut event = message_event(&new_event_id(), &message_id, ALICE, Chat::Group, "/help");
    event["event"]["message"]["chat_id"] = json!(chat_id);
    (message_id, event)
}

#[tokio::test]
async fn thirty_commands_in_one_chat_are_all_answered_at_five_a_second_and_never_refused() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut posts = Vec::new();
    for _ in 0..30 {
        let (id, event) = help_in(GROUP_CHAT);
        ids.push(id);
        posts.push(event);
    }
    for event in &posts {
        assert_eq!(app.post_event(event).await.status(), 200, "accepted");
    }
    wait_long("a reply to every command", || {
        ids.iter().all(|id| !app.lark.replies_to(id).is_empty())
    })
    .await;
    for id in &ids {
        assert_eq!(app.lark.replies_to(id).len(), 1, "one reply to {id}");
    }
    let refused = app.lark.rate_refusals();
    assert!(refused.is_empty(), "Lark refused {refused:?}");
    let times = reply_times(&app);
    assert_eq!(times.len(), 30, "no reply needed a second try");
    for w in times.windows(6) {
        assert!(
            w[5] - w[0] >= Duration::from_secs(1),
            "six replies into one chat within {:?}",
            w[5] - w[0]
        );
    }
}

#[tokio::test]
async fn a_hundred_and_twenty_chats_at_once_stay_under_the_app_limit() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut posts = Vec::new();
    for n in 0..120 {
        let (id, event) = help_in(&format!("oc_pacing_{n:03}"));
        ids.push(id);
        posts.push(event);
    }
    for event in &posts {
        assert_eq!(app.post_event(event).await.status(), 200, "accepted");
    }
    wait_long("a reply in every chat", || {
        ids.iter().all(|id| !app.lark.replies_to(id).is_empty())
    })
    .await;
    let refused = app.lark.rate_refusals();
    assert!(refused.is_empty(), "Lark refused {refused:?}");
    let times = reply_times(&app);
    assert_eq!(times.len(), 120, "no reply needed a second try");
    for w in times.windows(51) {
        assert!(
            w[50] - w[0] >= Duration::from_secs(1),
            "51 replies of the app within {:?}",
            w[50] - w[0]
        );
    }
}

/// A token from the emulated Lark, for speaking to it directly.
async fn lark_token(http: &reqwest::Client, base: &str) -> String {
    let answer: Value = http
        .post(format!(
            "{base}/open-apis/auth/v3/tenant_access_token/internal"
        ))
        .json(&json!({"app_id": APP_ID, "app_secret": APP_SECRET}))
        .send()
        .await
        .expect("token call")
        .json()
        .await
        .expect("token answer");
    answer["tenant_access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn card_body(receive_id: &str, uuid: &str) -> Value {
    let card = json!({"schema": "2.0", "body": {"elements": []}});
    json!({"receive_id": receive_id, "msg_type": "interactive",
           "content": card.to_string(), "uuid": uuid})
}

#[tokio::test]
async fn the_emulated_lark_refuses_a_sixth_message_into_one_chat() {
    let (lark, lark_addr, _project, _) = emulators().await;
    let base = format!("http://{lark_addr}");
    let http = reqwest::Client::new();
    let token = lark_token(&http, &base).await;
    let send = |chat: String, uuid: String| {
        let http = http.clone();
        let url = format!("{base}/open-apis/im/v1/messages?receive_id_type=chat_id");
        let token = token.clone();
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&card_body(&chat, &uuid))
                .send()
                .await
                .expect("send")
        }
    };
    // Six at once into one chat: five taken, the sixth refused by the IM limit (230020, 400).
    let mut answers = Vec::new();
    for n in 0..6 {
        answers.push(send("oc_one".into(), format!("one-{n}")).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 400], "{statuses:?}");
    let last: Value = answers.pop().expect("sixth").json().await.expect("json");
    assert_eq!(last["code"], 230_020, "{last}");
    let refused = lark.rate_refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].chat.as_deref(), Some("oc_one"));
    // Another chat still takes messages: the limit is per chat.
    assert_eq!(send("oc_two".into(), "two-0".into()).await.status(), 200);
}

#[tokio::test]
async fn a_feishu_project_that_keeps_failing_gets_busy_cards_at_once_until_it_recovers() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    app.project.state().failing = true;
    let threshold = CircuitConfig::default().threshold;
    // Each of these fails after its retries (a 500 to the PUT may have landed: the card says
    // so), and each counts once towards the threshold.
    for _ in 0..threshold {
        let card = app.say(ALICE, Chat::Group, "/restore 12345 rollback").await;
        assert_ne!(card_color(&card), "green", "{}", card_text(&card));
    }
    app.project.clear_requests();
    let card = app.say(ALICE, Chat::Group, "/restore 12345 rollback").await;
    let text = card_text(&card);
    assert!(text.contains("Feishu Project is busy"), "{text}");
    assert!(
        app.project.requests().is_empty(),
        "no call while the circuit is open: {:?}",
        app.project.requests()
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("abort_bot_circuit_state{upstream=\"feishu_project\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("abort_bot_circuit_opened_total{upstream=\"feishu_project\"} 1"),
        "{metrics}"
    );
    // Recovered, and the cool-down has passed: the next command is the probe, and it acts.
    app.project.state().failing = false;
    let cool_down = i64::try_from(CircuitConfig::default().cool_down.as_secs()).expect("secs");
    app.clock.advance_secs(cool_down);
    let card = app.say(ALICE, Chat::Group, "/restore 12345 rollback").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert!(!app.project.item(12345).expect("item").aborted);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("abort_bot_circuit_state{upstream=\"feishu_project\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("abort_bot_circuit_closed_total{upstream=\"feishu_project\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_lark_that_keeps_failing_is_not_called_until_the_cool_down_has_passed() {
    let (lark, lark_addr, _project, _) = emulators().await;
    let clock = ManualClock::at_secs(NOW);
    let client = LarkClient::new(LarkClientConfig {
        base_url: format!("http://{lark_addr}").parse().expect("url"),
        app_id: APP_ID.into(),
        app_secret: APP_SECRET.to_owned().into(),
        retry: RetryPolicy::quick(),
        timeout: Duration::from_secs(5),
        clock: Arc::new(clock.clone()),
        metrics: Arc::new(Metrics::new(None)),
    })
    .expect("client");
    let card = json!({"schema": "2.0", "body": {"elements": []}});
    let cfg = CircuitConfig::default();
    let tries = RetryPolicy::quick().max_retries + 1;
    for _ in 0..cfg.threshold as usize * tries {
        lark.push_fault(Endpoint::Send, 500, 500);
    }
    for n in 0..cfg.threshold {
        let sent = client
            .send_card("chat_id", GROUP_CHAT, &card, &format!("down-{n}"))
            .await;
        assert!(
            matches!(sent, Err(LarkError::Api { status: 500, .. })),
            "{sent:?}"
        );
    }
    lark.clear_requests();
    let sent = client.send_card("chat_id", GROUP_CHAT, &card, "open").await;
    assert!(matches!(sent, Err(LarkError::Unavailable(_))), "{sent:?}");
    assert!(
        sent.is_err_and(|e| e.is_retryable()),
        "a reply waits and is tried again"
    );
    assert!(lark.requests().is_empty(), "{:?}", lark.requests());
    clock.advance_secs(i64::try_from(cfg.cool_down.as_secs()).expect("secs"));
    let sent = client
        .send_card("chat_id", GROUP_CHAT, &card, "probe")
        .await;
    assert!(
        sent.is_ok_and(|id| !id.is_empty()),
        "the probe goes through"
    );
    assert!(
        client
            .send_card("chat_id", GROUP_CHAT, &card, "closed")
            .await
            .is_ok(),
        "closed again"
    );
}

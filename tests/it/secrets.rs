//! Secrets never show: not in `Debug`, not in a configuration error, not in a log line, even
//! at TRACE with every dependency crate's events captured.

use std::io::Write;
use std::sync::{Arc, Mutex};

use abort_bot::config::{LogFormat, Settings, Sources};
use abort_bot::telemetry;
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use super::helpers::*;

const APP_SECRET_V: &str = "app-secret-3f9a1c";
const VT_V: &str = "verif-token-77b2e0";
const EK_V: &str = "encrypt-key-a41d9c";
const PLUGIN_SECRET_V: &str = "plugin-secret-c0ffee";
const CARD_SECRET_V: &str = "card-secret-5e5e5e";
const REDIS_PW: &str = "redis-pw-8d1f4b";

fn secrets() -> [&'static str; 6] {
    [
        APP_SECRET_V,
        VT_V,
        EK_V,
        PLUGIN_SECRET_V,
        CARD_SECRET_V,
        REDIS_PW,
    ]
}

fn sources() -> Sources {
    let mut src = Sources::default();
    src.set("LARK_APP_ID", APP_ID)
        .set("LARK_APP_SECRET", APP_SECRET_V)
        .set("LARK_VERIFICATION_TOKEN", VT_V)
        .set("LARK_ENCRYPT_KEY", EK_V)
        .set("FEISHU_PROJECT_PLUGIN_ID", PLUGIN_ID)
        .set("FEISHU_PROJECT_PLUGIN_SECRET", PLUGIN_SECRET_V)
        .set("ABORT_BOT_CARD_SECRET", CARD_SECRET_V)
        .set(
            "ABORT_BOT_STORE",
            format!("redis://:{REDIS_PW}@cache.internal:6379/2"),
        );
    src
}

fn assert_no_secret(what: &str, shown: &str) {
    for secret in secrets() {
        assert!(!shown.contains(secret), "{what} shows {secret}: {shown}");
    }
}

#[test]
fn debug_of_the_configuration_never_shows_a_secret() {
    let src = sources();
    assert_no_secret("Sources", &format!("{src:?}"));
    let settings = Settings::from_sources(&src).expect("valid settings");
    let shown = format!("{settings:?} {:?} {:#?}", settings.store, settings);
    assert!(shown.contains("cache.internal:6379/2"), "{shown}");
    assert_no_secret("Settings", &shown);
    // The clients and the verifier that hold these secrets have no Debug at all.
}

#[test]
fn a_redis_url_that_does_not_parse_never_echoes_its_password() {
    for bad in [
        format!("redis://:{REDIS_PW}@"),
        format!("redis://:{REDIS_PW}@cache:port"),
        format!("redis://:{REDIS_PW}@cache/notadb"),
        format!("redis://:{REDIS_PW}@[::1"),
        format!("REDIS://:{REDIS_PW}@cache:6379"),
        format!("redis:/:{REDIS_PW}@cache:6379"),
        format!("redis//:{REDIS_PW}@cache:6379"),
        format!("rediss://user:{REDIS_PW}@cache:99999"),
    ] {
        let mut src = sources();
        src.set("ABORT_BOT_STORE", bad.clone());
        let err = Settings::from_sources(&src).expect_err(&bad);
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("ABORT_BOT_STORE"), "{shown}");
        assert!(!shown.contains(REDIS_PW), "{bad}: {shown}");
    }
}

/// Everything written to it, kept in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test]
async fn the_long_connection_ticket_never_reaches_a_log_even_at_trace() {
    // Dependency crates (tungstenite) log through `log`: bring those events in too.
    let _ = tracing_log::LogTracer::init();
    let capture = Capture::default();
    let subscriber =
        telemetry::subscriber(LogFormat::Json, EnvFilter::new("trace"), capture.clone());
    let app = spawn_with(Options {
        websocket: true,
        log: Some(tracing::Dispatch::new(subscriber)),
        ..Options::default()
    })
    .await;
    let ws = app.lark.ws();
    wait_until("connection 1 open", || ws.open_connections() == 1).await;
    // An event over it, then a reconnect: two handshakes, two tickets.
    let message_id = new_message_id();
    let event = message_event(&new_event_id(), &message_id, ALICE, Chat::Group, "/help");
    assert!(ws.push_event(&event, "s-1", 1));
    app.reply_to(&message_id).await;
    ws.drop_connections();
    wait_until("connection 2 open", || {
        ws.connections() >= 2 && ws.open_connections() == 1
    })
    .await;

    let logs = capture.text();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let has = |target: &str, level: &str| {
        lines.iter().any(|l| {
            l["target"].as_str().is_some_and(|t| t.starts_with(target)) && l["level"] == level
        })
    };
    // The capture is real: the bot's own events and tungstenite's, down to TRACE.
    assert!(logs.contains("long connection open"));
    assert!(
        has("tungstenite::handshake::client", "DEBUG"),
        "handshake done"
    );
    assert!(has("tungstenite::protocol", "TRACE"), "frames traced");
    let tickets = ws.issued_tickets();
    assert!(tickets.len() >= 2, "{tickets:?}");
    for ticket in &tickets {
        assert!(
            !logs.contains(ticket.as_str()),
            "ticket {ticket} in a log line: {}",
            logs.lines()
                .find(|l| l.contains(ticket.as_str()))
                .unwrap_or_default()
        );
    }
}

/// The spans of a JSON log line, outermost first.
fn spans(line: &Value) -> Vec<&Value> {
    line["spans"]
        .as_array()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// The log lines of upstream calls made inside a span called `name` whose `field` is `value`.
fn calls_in<'a>(lines: &'a [Value], name: &str, field: &str, value: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == "upstream call")
        .filter(|l| {
            spans(l)
                .iter()
                .any(|s| s["name"] == name && s[field] == value)
        })
        .collect()
}

#[tokio::test]
async fn a_full_run_logs_no_secret_nor_any_token_the_platforms_issued() {
    let _ = tracing_log::LogTracer::init();
    let capture = Capture::default();
    let log = tracing::Dispatch::new(telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        capture.clone(),
    ));
    let app = spawn_with(Options {
        log: Some(log.clone()),
        extra: vec![("ABORT_BOT_CARD_SECRET", CARD_SECRET_V.into())],
        ..Options::default()
    })
    .await;

    // Typed commands with every kind of answer.
    app.say_final(ALICE, Chat::P2p, "/help").await;
    app.say_final(ALICE, Chat::Group, "/bind doc").await;
    let done_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    app.reply_to(&done_id).await;
    for (who, text) in [
        (ALICE, "/abort 12348 cancel"),
        (ALICE, "/abort 99999 test"),
        (ALICE, "/abort 32001 cancel"),
        (CAROL, "/abort 12346 cancel"),
        (DAVE, "/abort 12346 cancel"),
        (ALICE, "/abort 12346 other"),
        (
            ALICE,
            "/abort 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 cancel",
        ),
        (ALICE, "/nonsense"),
    ] {
        app.say_final(who, Chat::Group, text).await;
    }
    // Feishu Project down: busy, after retries.
    app.project.state().failing = true;
    app.say_final(ALICE, Chat::Group, "/abort 12346 test").await;
    app.project.state().failing = false;
    // A reply Lark refuses at first is retried from the outbox.
    app.lark
        .push_fault(abort_bot::emulator::lark::Endpoint::Reply, 503, 0);
    app.say_final(ALICE, Chat::Group, "/help").await;

    // Clicks: a picker confirmed by someone else, then Undo.
    let (picker, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12346").await;
    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &picker, "go")
                .form(serde_json::json!({"option": "repeat", "reason": "dup"})),
        )
        .await;
    assert_eq!(clicked.toast_en(), "Aborted: 12346", "{}", clicked.body);
    let undo = app
        .click(
            &ClickOn::button(&app, BOB, &picker, "go")
                .form(serde_json::json!({"option": "rollback", "reason": ""})),
        )
        .await;
    assert_eq!(undo.toast_en(), "Restored: 12346", "{}", undo.body);
    // A slow click: its result goes through the delayed-update API with the click's token.
    let (slow, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12346").await;
    app.project.push_fault(
        abort_bot::emulator::project::Endpoint::Abort,
        abort_bot::emulator::project::Fault::Delay(std::time::Duration::from_millis(3500)),
    );
    let working = app
        .click(
            &ClickOn::button(&app, ALICE, &slow, "go")
                .form(serde_json::json!({"option": "cancel", "reason": ""})),
        )
        .await;
    assert!(
        working.toast_en().contains("Working on it"),
        "{}",
        working.body
    );
    wait_within(
        "the delayed update",
        std::time::Duration::from_secs(10),
        || {
            !app.lark
                .requests_to("POST", "/open-apis/interactive/v1/card/update")
                .is_empty()
        },
    )
    .await;
    app.settled().await;

    // The long connection: an event over it, then a reconnect.
    let ws_app = spawn_with(Options {
        websocket: true,
        log: Some(log),
        ..Options::default()
    })
    .await;
    let ws = ws_app.lark.ws();
    wait_until("connection open", || ws.open_connections() == 1).await;
    let ws_message = new_message_id();
    let event = message_event(
        &new_event_id(),
        &ws_message,
        BOB,
        Chat::Group,
        "/abort 12347 test",
    );
    assert!(ws.push_event(&event, "s-1", 1));
    ws_app.reply_to(&ws_message).await;
    ws.drop_connections();
    wait_until("connection 2 open", || {
        ws.connections() >= 2 && ws.open_connections() == 1
    })
    .await;
    ws_app.settled().await;

    let logs = capture.text();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert!(lines.len() > 200, "a full run at TRACE: {}", lines.len());

    // Nothing secret: the configuration's secrets, and every token either platform issued.
    let mut tokens = app.lark.issued_tokens();
    tokens.extend(app.project.issued_tokens());
    tokens.extend(ws_app.lark.issued_tokens());
    tokens.extend(ws_app.project.issued_tokens());
    tokens.extend(ws.issued_tickets());
    assert!(tokens.iter().any(|t| t.starts_with("t-")), "{tokens:?}");
    assert!(tokens.iter().any(|t| t.starts_with("p-")), "{tokens:?}");
    assert!(tokens.iter().any(|t| t.starts_with("c-")), "{tokens:?}");
    assert!(ws.issued_tickets().len() >= 2, "{tokens:?}");
    let configured = [APP_SECRET, VT, EK, PLUGIN_SECRET, CARD_SECRET_V];
    for secret in configured
        .iter()
        .copied()
        .chain(tokens.iter().map(String::as_str))
    {
        assert!(
            !logs.contains(secret),
            "{secret} in a log line: {}",
            logs.lines()
                .find(|l| l.contains(secret))
                .unwrap_or_default()
        );
    }

    // One span per event, its fields on every line inside it: the PUT of the typed command,
    // the delivery of its answer, and the PUT a click made.
    let put = "/open_api/:project_key/work_item/:type/:id/abort";
    let in_event = calls_in(&lines, "event", "message_id", &done_id);
    let event_put = in_event
        .iter()
        .find(|l| l["fields"]["endpoint"] == put)
        .unwrap_or_else(|| panic!("no PUT inside the event's span: {in_event:?}"));
    let event_span = spans(event_put)
        .into_iter()
        .find(|s| s["name"] == "event")
        .expect("the event span");
    assert!(
        event_span["event_id"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{event_span}"
    );
    assert_eq!(event_span["chat"], GROUP_CHAT, "{event_span}");
    assert_eq!(event_span["actor"], ALICE.open_id, "{event_span}");
    assert_eq!(event_span["items"], "12345", "{event_span}");
    assert!(
        calls_in(&lines, "delivery", "message_id", &done_id)
            .iter()
            .any(|l| l["fields"]["service"] == "lark"),
        "the reply's call inside the delivery's span"
    );
    let click_puts: Vec<&Value> = calls_in(&lines, "click", "actor", BOB.open_id)
        .into_iter()
        .filter(|l| l["fields"]["endpoint"] == put)
        .collect();
    assert!(
        click_puts
            .iter()
            .any(|l| spans(l).iter().any(|s| s["name"] == "click"
                && s["items"] == "story/12346"
                && s["message_id"] == picker.as_str())),
        "the click's PUT inside its span: {click_puts:?}"
    );
    assert!(
        !calls_in(&lines, "event", "message_id", &ws_message).is_empty(),
        "the long connection's event has its span too"
    );
}

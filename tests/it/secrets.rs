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

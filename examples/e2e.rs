//! End-to-end load for the benchmark: runs the emulated Lark and Feishu Project on fixed
//! loopback ports, waits for a bot to be ready, then offers it `RATE` `/abort` commands per
//! second for `SECONDS` seconds (group messages that mention the bot, each on its own work
//! item, encrypted and signed as Lark sends them), and measures at the emulators, which record
//! when each request arrived: event → PUT (the abort reaching Feishu Project) and event →
//! reply (the answer card reaching Lark). Prints one `E2E …` line for `bench/run.sh`.
//!
//! The offered load stays under the platforms' limits: Lark's 1000 messages a minute per app
//! and 5/s per chat (`protocol/lark.md` §4.2, enforced by the emulator) and Feishu Project's
//! 15 QPS per endpoint (`protocol/feishu-project.md` §7): at most 15/s, over 10 chats.
//! The bot needs `ABORT_BOT_USER_RATE` raised, as every command comes from one person.
//! `cargo run --profile dist --example e2e -- 3111 3112 http://127.0.0.1:3110 10 20`

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abort_bot::emulator::lark::{LarkEmulator, User as LarkUser};
use abort_bot::emulator::project::{Item, ProjectEmulator};
use abort_bot::lark::crypto;
use serde_json::json;

const ENCRYPT_KEY: &str = "bench-encrypt-key";
const VERIFICATION_TOKEN: &str = "bench-verification-token";
const BOT_OPEN_ID: &str = "ou_bench_bot_000000000000000000000";
/// Alice of the seeded space: a member, known to both emulators.
const SENDER_OPEN_ID: &str = "ou_bench_alice";
const SENDER_UNION_ID: &str = "on_8ed6aa67826108097d9ee143816345";
const PROJECT_KEY: &str = "60acd5610444ba031b503055";
const CHATS: usize = 10;
/// Feishu Project's per-endpoint limit (Lark's 1000/min allows 16/s).
const MAX_RATE: u64 = 15;
/// The first work item the load acts on; the seeded ones stay below.
const FIRST_ITEM: u64 = 900_000;
/// How long to wait for the bot, and for the last answers.
const READY_WITHIN: Duration = Duration::from_secs(30);
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// One command sent, and what came of it.
struct Sent {
    message_id: String,
    item: u64,
    at: Instant,
    acked: Option<Duration>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lark_port: u16 = args.next().as_deref().unwrap_or("3111").parse()?;
    let project_port: u16 = args.next().as_deref().unwrap_or("3112").parse()?;
    let bot = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3110".into());
    let rate: u64 = args.next().as_deref().unwrap_or("10").parse()?;
    let seconds: u64 = args.next().as_deref().unwrap_or("20").parse()?;
    if rate == 0 || rate > MAX_RATE || seconds == 0 || seconds > 600 {
        return Err(format!("rate must be 1..={MAX_RATE} per second, seconds 1..=600").into());
    }
    let count = rate * seconds;

    let lark = LarkEmulator::new("cli_bench", "bench-app-secret", BOT_OPEN_ID);
    lark.add_user(LarkUser {
        open_id: SENDER_OPEN_ID.into(),
        union_id: SENDER_UNION_ID.into(),
        email: "alice@example.com".into(),
        name: "alice".into(),
    });
    let project = ProjectEmulator::new("MII_BENCH", "bench-plugin-secret");
    project.seed_demo();
    {
        let mut s = project.state();
        for id in FIRST_ITEM..FIRST_ITEM + count {
            s.items.insert(
                id,
                Item {
                    id,
                    project_key: PROJECT_KEY.into(),
                    type_key: "story".into(),
                    name: format!("Benchmark item {id}"),
                    pattern: "Node".into(),
                    aborted: false,
                    reason: String::new(),
                    reason_option: String::new(),
                    intercepted: false,
                    changed_by: String::new(),
                },
            );
        }
    }
    let lark_listener = tokio::net::TcpListener::bind(("127.0.0.1", lark_port)).await?;
    let project_listener = tokio::net::TcpListener::bind(("127.0.0.1", project_port)).await?;
    tokio::spawn(axum::serve(lark_listener, lark.router()).into_future());
    tokio::spawn(axum::serve(project_listener, project.router()).into_future());

    let http = reqwest::Client::new();
    wait_ready(&http, &bot).await?;

    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        let due = start + Duration::from_micros(i * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let item = FIRST_ITEM + i;
        let message_id = format!("om_e2e_{ts}_{i:06}");
        let chat_id = format!("oc_e2e_{:02}", i as usize % CHATS);
        // Lark knows the chat of every message; the emulator only sees the bot's side.
        lark.note_message(&message_id, &chat_id);
        let (body, nonce) = delivery(&ts, i, &message_id, &chat_id, item);
        let sig = crypto::event_signature(&ts, &nonce, ENCRYPT_KEY, body.as_bytes());
        let request = http
            .post(format!("{bot}/lark/events"))
            .header("content-type", "application/json; charset=utf-8")
            .header("x-lark-request-timestamp", &ts)
            .header("x-lark-request-nonce", nonce)
            .header("x-lark-signature", sig)
            .body(body);
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let acked = match request.send().await {
                Ok(r) if r.status().is_success() => Some(at.elapsed()),
                _ => None,
            };
            Sent {
                message_id,
                item,
                at,
                acked,
            }
        }));
    }
    let offered_for = start.elapsed();
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await?);
    }

    // Wait, bounded, until every accepted command has its answer at Lark.
    let accepted = sent.iter().filter(|s| s.acked.is_some()).count();
    let deadline = Instant::now() + SETTLE_WITHIN;
    while replies(&lark).len() < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let replied = replies(&lark);
    let puts: HashMap<u64, Instant> = {
        let mut first = HashMap::new();
        for r in project.requests_to("PUT", "/open_api/") {
            if let Some(id) = put_item(&r.path) {
                first.entry(id).or_insert(r.received_at);
            }
        }
        first
    };
    let (mut ack, mut to_put, mut to_reply) = (Vec::new(), Vec::new(), Vec::new());
    for s in &sent {
        if let Some(a) = s.acked {
            ack.push(a);
        }
        if let Some(p) = puts.get(&s.item) {
            to_put.push(p.saturating_duration_since(s.at));
        }
        if let Some(r) = replied.get(&s.message_id) {
            to_reply.push(r.saturating_duration_since(s.at));
        }
    }
    let refused = lark.rate_refusals().len();
    println!(
        "E2E offered={count} rate={rate}/s over={:.1}s accepted={accepted} puts={} replies={} \
         lark_rate_refusals={refused} ack_p50_ms={} ack_p99_ms={} put_p50_ms={} put_p99_ms={} \
         reply_p50_ms={} reply_p99_ms={} reply_max_ms={}",
        offered_for.as_secs_f64(),
        to_put.len(),
        to_reply.len(),
        ms(percentile(&mut ack, 50)),
        ms(percentile(&mut ack, 99)),
        ms(percentile(&mut to_put, 50)),
        ms(percentile(&mut to_put, 99)),
        ms(percentile(&mut to_reply, 50)),
        ms(percentile(&mut to_reply, 99)),
        ms(percentile(&mut to_reply, 100)),
    );
    if to_reply.len() < count as usize {
        return Err(format!(
            "{} of {count} commands got no answer",
            count as usize - to_reply.len()
        )
        .into());
    }
    Ok(())
}

/// A group message that mentions the bot and asks it to abort `item`, as Lark delivers it.
fn delivery(ts: &str, i: u64, message_id: &str, chat_id: &str, item: u64) -> (String, String) {
    let envelope = json!({
        "schema": "2.0",
        "header": {"event_id": format!("e2e-{ts}-{i:06}"), "event_type": "im.message.receive_v1",
                   "create_time": format!("{ts}000"), "token": VERIFICATION_TOKEN,
                   "app_id": "cli_bench", "tenant_key": "bench"},
        "event": {
            "sender": {"sender_id": {"union_id": SENDER_UNION_ID, "user_id": "", "open_id": SENDER_OPEN_ID},
                       "sender_type": "user", "tenant_key": "bench"},
            "message": {"message_id": message_id, "root_id": "", "parent_id": "",
                        "create_time": format!("{ts}000"), "update_time": format!("{ts}000"),
                        "chat_id": chat_id, "thread_id": "", "chat_type": "group",
                        "message_type": "text",
                        "content": json!({"text": format!("@_user_1 /abort story/{item} repeat benchmark")}).to_string(),
                        "mentions": [{"key": "@_user_1",
                                      "id": {"union_id": "on_bench_bot", "user_id": "", "open_id": BOT_OPEN_ID},
                                      "name": "abort-bot", "tenant_key": "bench", "mentioned_type": "bot"}]}
        }
    });
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&i.to_le_bytes());
    iv[8] = 0xe2;
    let body =
        json!({ "encrypt": crypto::encrypt(ENCRYPT_KEY, &envelope.to_string(), iv) }).to_string();
    (body, format!("e{i}"))
}

async fn wait_ready(http: &reqwest::Client, bot: &str) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(r) = http.get(format!("{bot}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{bot} not ready within {READY_WITHIN:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When the first reply to each message reached Lark.
fn replies(lark: &LarkEmulator) -> HashMap<String, Instant> {
    let mut first = HashMap::new();
    for r in lark.requests_to("POST", "/open-apis/im/v1/messages/") {
        let mut parts = r.path.split('/').skip(5);
        if let (Some(message_id), Some("reply")) = (parts.next(), parts.next()) {
            first.entry(message_id.to_owned()).or_insert(r.received_at);
        }
    }
    first
}

/// The work item of `/open_api/{project}/work_item/{type}/{id}/abort`.
fn put_item(path: &str) -> Option<u64> {
    let mut parts = path.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some("abort"), Some(id)) => id.parse().ok(),
        _ => None,
    }
}

fn percentile(v: &mut [Duration], p: usize) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (v.len() * p).div_ceil(100).clamp(1, v.len());
    Some(v[rank - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

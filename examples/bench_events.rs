//! Writes N distinct `im.message.receive_v1` deliveries, encrypted and signed exactly as Lark
//! sends them, one per line: `timestamp nonce signature body`. The benchmark replays them.
//! `cargo run --release --example bench_events -- 60000 target/bench/events.txt`

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use abort_bot::lark::crypto;
use serde_json::json;

const ENCRYPT_KEY: &str = "bench-encrypt-key";
const VERIFICATION_TOKEN: &str = "bench-verification-token";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().as_deref().unwrap_or("60000").parse()?;
    let path = args
        .next()
        .unwrap_or_else(|| "target/bench/events.txt".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for i in 0..count {
        let envelope = json!({
            "schema": "2.0",
            "header": {"event_id": format!("bench-{ts}-{i:08}"), "event_type": "im.message.receive_v1",
                       "create_time": format!("{ts}000"), "token": VERIFICATION_TOKEN,
                       "app_id": "cli_bench", "tenant_key": "bench"},
            "event": {
                "sender": {"sender_id": {"union_id": "on_bench", "user_id": "", "open_id": "ou_bench_user"},
                           "sender_type": "user", "tenant_key": "bench"},
                "message": {"message_id": format!("om_bench_{ts}_{i:08}"), "root_id": "", "parent_id": "",
                            "create_time": format!("{ts}000"), "update_time": format!("{ts}000"),
                            "chat_id": "oc_bench", "thread_id": "", "chat_type": "group",
                            "message_type": "text",
                            "content": json!({"text": format!("status update number {i} for the team")}).to_string(),
                            "mentions": []}
            }
        });
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let body = json!({ "encrypt": crypto::encrypt(ENCRYPT_KEY, &envelope.to_string(), iv) })
            .to_string();
        let nonce = format!("n{i}");
        let sig = crypto::event_signature(&ts, &nonce, ENCRYPT_KEY, body.as_bytes());
        writeln!(out, "{ts} {nonce} {sig} {body}")?;
    }
    out.flush()?;
    eprintln!("wrote {count} deliveries to {path}");
    Ok(())
}

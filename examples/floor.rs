//! The benchmark's floors: the least a receiver of Lark events can do, built from the bot's
//! own parts so that the comparison is fair.
//!
//! - `floor <port>`: verify (timestamp, signature, token), decrypt and parse each
//!   `im.message.receive_v1` delivery with the bot's code, then answer 200. Nothing is stored.
//! - `floor <port> <db>`: the same, plus a durable write before the 200: SQLite with the bot's
//!   settings (WAL, `synchronous = FULL`), dedup on event_id, one writer thread taking
//!   everything queued into one transaction (group commit). With this storage no receiver can
//!   acknowledge more durably stored events per second.
//!
//! Same HTTP stack as the bot (hyper's HTTP/1 server on tokio, mimalloc). Loopback only.
//! `cargo run --profile dist --example floor -- 3104 target/bench/floor.db`

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use abort_bot::clock::SystemClock;
use abort_bot::lark::envelope::Inbound;
use abort_bot::lark::message::ReceivedMessage;
use abort_bot::lark::verify::{SignatureHeaders, Verifier};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, params};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENCRYPT_KEY: &str = "bench-encrypt-key";
const VERIFICATION_TOKEN: &str = "bench-verification-token";
/// The bot's limit on a request body.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The bot's limit on one transaction.
const MAX_BATCH: usize = 512;

/// One event for the writer, and where to say it is on disk.
struct Write {
    event_id: String,
    payload: String,
    done: oneshot::Sender<bool>,
}

struct Floor {
    verifier: Verifier,
    writes: Option<std_mpsc::Sender<Write>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().as_deref().unwrap_or("3104").parse()?;
    let writes = match args.next() {
        Some(path) => Some(start_writer(Connection::open(path)?)?),
        None => None,
    };
    let floor = Arc::new(Floor {
        verifier: Verifier::new(
            SecretString::from(VERIFICATION_TOKEN),
            Some(SecretString::from(ENCRYPT_KEY)),
            Duration::from_secs(3 * 24 * 3600),
            Arc::new(SystemClock),
        ),
        writes,
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let floor = floor.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let floor = floor.clone();
                async move { Ok::<_, Infallible>(floor.receive(req).await) }
            }),
        );
        tokio::spawn(conn);
    }
}

impl Floor {
    async fn receive(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let headers = SignatureHeaders::from_headers(req.headers());
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return answer(StatusCode::BAD_REQUEST, "unreadable body"),
        };
        let env = match self.verifier.open_event(&headers, &body) {
            Ok(Inbound::Event(env)) if env.event_type == "im.message.receive_v1" => env,
            Ok(_) => return answer(StatusCode::BAD_REQUEST, "not a message event"),
            Err(r) => return answer(r.status(), "refused"),
        };
        let Ok(msg) = ReceivedMessage::from_event(&env.body) else {
            return answer(StatusCode::BAD_REQUEST, "malformed message");
        };
        let Ok(payload) = serde_json::to_string(&msg) else {
            return answer(StatusCode::BAD_REQUEST, "malformed message");
        };
        if let Some(writes) = &self.writes {
            let (done, stored) = oneshot::channel();
            let write = Write {
                event_id: env.event_id,
                payload,
                done,
            };
            if writes.send(write).is_err() || stored.await != Ok(true) {
                return answer(StatusCode::INTERNAL_SERVER_ERROR, "not stored");
            }
        }
        answer(StatusCode::OK, "success")
    }
}

fn answer(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!("{{\"msg\":\"{msg}\"}}"))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

/// The group-commit writer: takes what is queued (at most [`MAX_BATCH`]), inserts it in one
/// transaction, commits, then answers every caller.
fn start_writer(conn: Connection) -> rusqlite::Result<std_mpsc::Sender<Write>> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, payload TEXT NOT NULL)
         WITHOUT ROWID",
    )?;
    let (tx, rx) = std_mpsc::channel::<Write>();
    std::thread::spawn(move || {
        let mut conn = conn;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let stored = write_batch(&mut conn, &batch).is_ok();
            for w in batch {
                let _ = w.done.send(stored);
            }
        }
    });
    Ok(tx)
}

fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO events (event_id, payload) VALUES (?1, ?2)")?;
        for w in batch {
            insert.execute(params![w.event_id, w.payload])?;
        }
    }
    tx.commit()
}

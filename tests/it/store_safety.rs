//! The store as it is really run: `abort-bot serve` and `check` as real processes (one SQLite
//! file per process; a Redis that could lose or evict keys is warned about), and
//! acknowledgements that wait for a real Redis replica (`ABORT_BOT_REDIS_WAIT_REPLICAS`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::helpers::*;
use super::redis_server::RedisServer;

/// How long a bot process gets to come up or to exit: a bound, not a measurement.
const PROCESS_BOUND: Duration = Duration::from_secs(30);

/// An `abort-bot` process with its output collected line by line; killed when dropped.
/// (Also the replicas of [`super::replicas`].)
pub struct Bot {
    pub child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The threads reading both streams; they end at the process's end of output.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The variables every run needs; upstream hosts as given (nothing listens on port 9).
pub fn base_env(lark: &str, project: &str, store: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LARK_APP_ID", APP_ID.into()),
        ("LARK_APP_SECRET", APP_SECRET.into()),
        ("LARK_VERIFICATION_TOKEN", VT.into()),
        ("LARK_BASE_URL", lark.into()),
        ("FEISHU_PROJECT_PLUGIN_ID", PLUGIN_ID.into()),
        ("FEISHU_PROJECT_PLUGIN_SECRET", PLUGIN_SECRET.into()),
        ("FEISHU_PROJECT_BASE_URL", project.into()),
        ("ABORT_BOT_LISTEN", "127.0.0.1:0".into()),
        ("ABORT_BOT_STORE", store.into()),
    ]
}

fn sqlite_env(db: &Path) -> Vec<(&'static str, String)> {
    base_env(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &format!("sqlite://{}", db.display()),
    )
}

fn collect(
    stream: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("output lock").push(line);
        }
    });
    (lines, reader)
}

impl Bot {
    pub fn start(command: &str, env: &[(&'static str, String)]) -> Bot {
        let mut child = Command::new(env!("CARGO_BIN_EXE_abort-bot"))
            .arg(command)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the abort-bot binary");
        let (stdout, out_reader) = collect(child.stdout.take().expect("stdout"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("stderr"));
        Bot {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("output lock").clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("output lock").clone()
    }

    /// Waits for the "listening" log line and returns the address in it.
    pub fn listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PROCESS_BOUND;
        loop {
            let found = self.stdout().iter().find_map(|l| {
                l.contains("abort-bot listening")
                    .then(|| l.split("addr=").nth(1))
                    .flatten()
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|a| a.parse().ok())
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "abort-bot exited ({status}) before listening: {:?} {:?}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "abort-bot did not listen: {:?}",
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own.
    pub fn exited(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for abort-bot") {
                // Every line is read once both readers have met the end of the output.
                for reader in self.readers.drain(..) {
                    reader.join().expect("output reader");
                }
                return status;
            }
            assert!(Instant::now() < deadline, "abort-bot did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no cleanup, like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status line of `GET path` (a plain HTTP/1.1 request over loopback).
fn get_status(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the bot");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_second_serve_on_one_sqlite_file_refuses_and_the_lock_dies_with_its_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bot.db");
    let env = sqlite_env(&db);
    let mut first = Bot::start("serve", &env);
    let addr = first.listening();

    let mut second = Bot::start("serve", &env);
    let status = second.exited();
    assert!(!status.success(), "the second serve must fail: {status}");
    let said: Vec<String> = second
        .stderr()
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(said.len(), 1, "one clear line: {said:?}");
    let line = &said[0];
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(
        line.contains(&format!(
            "another abort-bot process (pid {})",
            first.child.id()
        )),
        "{line}"
    );
    assert!(
        line.contains("stop that process") && line.contains("ABORT_BOT_STORE"),
        "{line}"
    );
    assert!(
        !second.stdout().iter().any(|l| l.contains("listening")),
        "it never listened"
    );

    // The first one is untouched and still serves.
    assert!(first.running());
    assert!(get_status(addr, "/readyz").contains(" 200 "), "ready");
    // A read-only opener (`abort-bot audit`) is not refused by the lock.
    let reader = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open read-only beside serve");
    let count: i64 = reader
        .query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
        .expect("read beside serve");
    assert_eq!(count, 0);
    // `check` says the file is taken, and fails: a serve with this configuration would.
    let mut check = Bot::start("check", &env);
    assert!(!check.exited().success());
    assert!(
        check
            .stdout()
            .iter()
            .any(|l| l.starts_with("problem: ABORT_BOT_STORE:") && l.contains("in use")),
        "{:?}",
        check.stdout()
    );

    // A crash releases the lock: the next serve starts.
    first.kill();
    let mut third = Bot::start("serve", &env);
    let addr = third.listening();
    assert!(get_status(addr, "/healthz").contains(" 200 "));
    assert!(third.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_serve_warn_about_a_redis_that_can_evict_or_lose_keys() {
    let (_lark, lark_addr, _project, project_addr) = emulators().await;
    let redis = RedisServer::start_with(&[
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let env = base_env(
        &format!("http://{lark_addr}"),
        &format!("http://{project_addr}"),
        &redis.url(),
    );
    let check = tokio::task::spawn_blocking({
        let env = env.clone();
        move || {
            let mut check = Bot::start("check", &env);
            (check.exited(), check.stdout())
        }
    })
    .await
    .expect("join");
    let (status, out) = check;
    assert!(status.success(), "warnings do not fail check: {out:?}");
    assert!(out.iter().any(|l| l == "redis store: ok"), "{out:?}");
    let warnings: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("warning: ABORT_BOT_STORE:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{out:?}");
    assert!(warnings[0].contains("appendfsync everysec"), "{warnings:?}");
    assert!(
        warnings[1].contains("maxmemory-policy allkeys-lru"),
        "{warnings:?}"
    );

    let logged = tokio::task::spawn_blocking(move || {
        let mut serve = Bot::start("serve", &env);
        serve.listening();
        serve.stdout()
    })
    .await
    .expect("join");
    for what in ["appendfsync everysec", "maxmemory-policy allkeys-lru"] {
        assert!(
            logged
                .iter()
                .any(|l| l.contains(" WARN ") && l.contains(what)),
            "{what} not warned at start-up: {logged:?}"
        );
    }
}

/// A replica of `primary`, once the primary counts it as connected and in sync.
fn replica_of(primary: &RedisServer) -> Arc<RedisServer> {
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + PROCESS_BOUND;
    while !(replica
        .command("INFO replication")
        .contains("master_link_status:up")
        && primary
            .command("INFO replication")
            .contains("connected_slaves:1"))
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_for_a_replica_and_without_one_lark_must_push_again() {
    let primary = RedisServer::start();
    let replica = tokio::task::spawn_blocking({
        let primary = primary.clone();
        move || replica_of(&primary)
    })
    .await
    .expect("join");
    let app = spawn_with(Options {
        redis: Some(primary.clone()),
        extra: vec![
            ("ABORT_BOT_REDIS_WAIT_REPLICAS", "1".into()),
            ("ABORT_BOT_REDIS_WAIT_TIMEOUT", "300ms".into()),
        ],
        ..Options::default()
    })
    .await;
    assert!(app.open_store().await.warnings().await.is_empty());

    // Acknowledged = on the replica too, at the moment of the 2xx.
    let first = app.send(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(
        replica.command(&format!("EXISTS abort-bot:message:{first}")),
        ":1\r\n"
    );
    assert_eq!(card_color(&app.reply_to(&first).await.card), "green");

    // The replica is gone: WAIT times out and the delivery is refused with a 5xx ...
    drop(replica);
    let (event_id, second) = (new_event_id(), new_message_id());
    let event = message_event(&event_id, &second, ALICE, Chat::Group, "/abort 12346 test");
    let refused = app.post_event(&event).await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    // ... yet nothing is lost: the primary kept it.
    assert_eq!(
        primary.command(&format!("EXISTS abort-bot:message:{second}")),
        ":1\r\n"
    );

    // A replica again, and Lark's push of the same delivery: one action, one reply.
    let replica = tokio::task::spawn_blocking({
        let primary = primary.clone();
        move || replica_of(&primary)
    })
    .await
    .expect("join");
    assert_eq!(app.post_event(&event).await.status(), 200);
    // Stored but nobody woke the worker for it (its first delivery was refused): the
    // worker's poll claims it from the store.
    assert_eq!(card_color(&app.reply_to(&second).await.card), "green");
    wait_for_puts(&app, 2).await;
    assert_eq!(app.settled_replies(&second).await.len(), 1);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 2);
    assert!(app.project.item(12346).expect("item").aborted);
    assert_eq!(
        replica.command(&format!("EXISTS abort-bot:message:{second}")),
        ":1\r\n"
    );
}

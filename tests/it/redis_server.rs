//! A throwaway Redis server per test: its own loopback port, directory and append-only file
//! (fsync on every write, as production should run), killed when dropped. If `redis-server`
//! is not installed the test fails and names the package: it never skips quietly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Debian package that provides `redis-server` (CI installs it).
pub const PACKAGE: &str = "redis-server";

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    pub fn start() -> Arc<RedisServer> {
        Self::start_with(&[])
    }

    /// A server with extra `--option value` arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Arc<RedisServer> {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        // The port is free when probed but another test may take it first: try a few.
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("temp dir for redis");
            let port = free_port();
            let mut child = spawn(port, dir.path(), &extra);
            if wait_ready(port, &mut child) {
                return Arc::new(RedisServer {
                    port,
                    dir,
                    extra,
                    child: Mutex::new(Some(child)),
                });
            }
            stop(&mut child);
        }
        panic!("redis-server did not come up on a free loopback port after 10 tries");
    }

    /// `redis://127.0.0.1:<port>` (without a password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (SIGKILL, no shutdown save) and starts it again on the same
    /// port and files: what survives is what the append-only file had.
    pub fn crash_and_restart(&self) {
        self.crash();
        self.start_again();
    }

    /// Kills the server at once (SIGKILL): it is gone until [`RedisServer::start_again`].
    pub fn crash(&self) {
        if let Some(mut child) = self.child.lock().expect("redis child lock").take() {
            stop(&mut child);
        }
    }

    /// Starts a crashed server again on the same port and files.
    pub fn start_again(&self) {
        let mut guard = self.child.lock().expect("redis child lock");
        assert!(guard.is_none(), "redis-server is still running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = spawn(self.port, self.dir.path(), &self.extra);
            if wait_ready(self.port, &mut child) {
                *guard = Some(child);
                return;
            }
            stop(&mut child);
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one command over a raw connection and returns the reply's text (for setting the
    /// server up; inline commands, so no spaces inside arguments).
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        s.write_all(format!("{line}\r\n").as_bytes())
            .expect("write to redis");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read from redis");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            stop(&mut child);
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe address").port()
}

fn spawn(port: u16, dir: &Path, extra: &[String]) -> Child {
    let log = dir.join("redis.log");
    let spawned = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not installed, and the Redis store tests start their own: \
             install the Debian package `{PACKAGE}` (apt-get install -y {PACKAGE})"
        ),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// Whether the server answers PING (or asks for a password, which also means it is up).
fn wait_ready(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 64];
            if s.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = s.read(&mut buf)
            {
                let reply = String::from_utf8_lossy(&buf[..n]);
                if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                    // A server that lost the port race exits at once; the one that answered
                    // was then another test's.
                    std::thread::sleep(Duration::from_millis(100));
                    return matches!(child.try_wait(), Ok(None));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

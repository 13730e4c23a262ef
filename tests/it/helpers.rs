//! Starting the bot against the emulators, and building signed, encrypted Lark requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abort_bot::app::{App, Overrides};
use abort_bot::clock::ManualClock;
use abort_bot::config::{Settings, Sources};
use abort_bot::emulator::lark::{LarkEmulator, Message, User as LarkUser};
use abort_bot::emulator::project::ProjectEmulator;
use abort_bot::emulator::serve_on_loopback;
use abort_bot::lark::crypto;
use abort_bot::retry::RetryPolicy;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

pub const APP_ID: &str = "cli_a5f0c2d9e1b2c003";
pub const APP_SECRET: &str = "app-secret-for-tests";
pub const VT: &str = "vT0kenFixture9f8e7d6c5b4a3210";
pub const EK: &str = "eKeyFixtureQm1Zx7Lp2Rt9Vw4Ny6Hc";
pub const PLUGIN_ID: &str = "MII_0123456789ABCDEF";
pub const PLUGIN_SECRET: &str = "plugin-secret-for-tests";
/// The bot's open_id in the shared vectors' mentions.
pub const BOT_OPEN_ID: &str = "ou_7d8a6e6df7621556ce0d21922b676706";
/// The vectors' timestamp: "now" for every test unless changed.
pub const NOW: i64 = 1_716_883_201;
pub const PROJECT_KEY: &str = "60acd5610444ba031b503055";

/// A Lark user of the tests.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    pub open_id: &'static str,
    pub union_id: &'static str,
    pub user_key: &'static str,
    pub email: &'static str,
}

/// The sender in the shared vectors; a member of the space.
pub const ALICE: Person = Person {
    open_id: "ou_84aad35d084aa403a838cf73ee18467",
    union_id: "on_8ed6aa67826108097d9ee143816345",
    user_key: "7012514555133820947",
    email: "alice@example.com",
};
pub const BOB: Person = Person {
    open_id: "ou_bob0000000000000000000000000000",
    union_id: "on_bob00000000000000000000000000",
    user_key: "7012514555133820948",
    email: "bob@example.com",
};
/// A Feishu Project user who is not a member of the space.
pub const CAROL: Person = Person {
    open_id: "ou_carol00000000000000000000000000",
    union_id: "on_carol0000000000000000000000000",
    user_key: "7012514555133820949",
    email: "carol@example.com",
};
/// A Lark user with no Feishu Project account.
pub const DAVE: Person = Person {
    open_id: "ou_dave000000000000000000000000000",
    union_id: "on_dave00000000000000000000000000",
    user_key: "",
    email: "dave@example.com",
};

/// How to start a test bot.
#[derive(Clone)]
pub struct Options {
    pub encrypt_key: Option<&'static str>,
    pub default_project: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            encrypt_key: Some(EK),
            default_project: Some("doc"),
        }
    }
}

/// A running bot, its emulators, and its (manual) clock.
pub struct TestApp {
    pub addr: SocketAddr,
    pub lark: LarkEmulator,
    pub project: ProjectEmulator,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub options: Options,
    pub store_path: PathBuf,
    lark_addr: SocketAddr,
    project_addr: SocketAddr,
    _dir: Arc<tempfile::TempDir>,
    runtime: Option<Runtime>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<std::io::Result<()>>>,
}

/// The emulators, seeded, on loopback ports.
pub async fn emulators() -> (LarkEmulator, SocketAddr, ProjectEmulator, SocketAddr) {
    let lark = LarkEmulator::new(APP_ID, APP_SECRET, BOT_OPEN_ID);
    for p in [ALICE, BOB, CAROL, DAVE] {
        lark.add_user(LarkUser {
            open_id: p.open_id.into(),
            union_id: p.union_id.into(),
            email: p.email.into(),
            name: p.email.split('@').next().unwrap_or_default().into(),
        });
    }
    let project = ProjectEmulator::new(PLUGIN_ID, PLUGIN_SECRET);
    project.seed_demo();
    let lark_addr = serve_on_loopback(lark.router())
        .await
        .expect("lark emulator");
    let project_addr = serve_on_loopback(project.router())
        .await
        .expect("project emulator");
    (lark, lark_addr, project, project_addr)
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    let (lark, lark_addr, project, project_addr) = emulators().await;
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let store_path = dir.path().join("bot.db");
    start(
        options,
        lark,
        lark_addr,
        project,
        project_addr,
        store_path,
        dir,
        ManualClock::at_secs(NOW),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn start(
    options: Options,
    lark: LarkEmulator,
    lark_addr: SocketAddr,
    project: ProjectEmulator,
    project_addr: SocketAddr,
    store_path: PathBuf,
    dir: Arc<tempfile::TempDir>,
    clock: ManualClock,
) -> TestApp {
    let mut src = Sources::default();
    src.set("LARK_APP_ID", APP_ID)
        .set("LARK_APP_SECRET", APP_SECRET)
        .set("LARK_VERIFICATION_TOKEN", VT)
        .set("LARK_BASE_URL", format!("http://{lark_addr}"))
        .set("FEISHU_PROJECT_PLUGIN_ID", PLUGIN_ID)
        .set("FEISHU_PROJECT_PLUGIN_SECRET", PLUGIN_SECRET)
        .set("FEISHU_PROJECT_BASE_URL", format!("http://{project_addr}"))
        .set("FEISHU_PROJECT_WEB_URL", "https://project.feishu.cn")
        .set("ABORT_BOT_LISTEN", "127.0.0.1:0")
        .set(
            "ABORT_BOT_STORE",
            format!("sqlite://{}", store_path.display()),
        );
    if let Some(k) = options.encrypt_key {
        src.set("LARK_ENCRYPT_KEY", k);
    }
    if let Some(p) = options.default_project {
        src.set("ABORT_BOT_DEFAULT_PROJECT", p);
    }
    let settings = Settings::from_sources(&src).expect("test settings");
    // Each bot gets its own runtime, so a test can kill it mid-work like a crash.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let overrides = Overrides {
        clock: Arc::new(clock.clone()),
        retry: RetryPolicy::quick(),
        upstream_timeout: Duration::from_secs(5),
        tap: None,
    };
    let app = runtime
        .spawn(async move { App::build(&settings, overrides).await })
        .await
        .expect("join")
        .expect("app builds");
    let addr = app.local_addr().expect("addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel();
    runtime.spawn(async move {
        let result = app
            .run_until_stopped(async {
                let _ = stop_rx.await;
            })
            .await;
        let _ = done_tx.send(result);
    });
    TestApp {
        addr,
        lark,
        project,
        clock,
        http: reqwest::Client::new(),
        options,
        store_path,
        lark_addr,
        project_addr,
        _dir: dir,
        runtime: Some(runtime),
        stop: Some(stop_tx),
        done: Some(done_rx),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the bot gracefully and waits for it.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Kills the bot at once, like a crash: no draining, no shutdown.
    pub fn crash(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// A new bot on the same store, emulators and clock (after a crash or a stop).
    pub async fn restart(mut self) -> TestApp {
        self.crash();
        start(
            self.options.clone(),
            self.lark.clone(),
            self.lark_addr,
            self.project.clone(),
            self.project_addr,
            self.store_path.clone(),
            self._dir.clone(),
            self.clock.clone(),
        )
        .await
    }

    /// Posts a Lark envelope to `/lark/events` as Lark would: encrypted and signed when the
    /// bot has an encrypt key, with the clock's timestamp.
    pub async fn post_event(&self, envelope: &Value) -> reqwest::Response {
        let ts = self.clock.now_secs_string();
        self.post_envelope("/lark/events", envelope, &ts).await
    }

    pub async fn post_envelope(&self, path: &str, envelope: &Value, ts: &str) -> reqwest::Response {
        let (body, headers) = match self.options.encrypt_key {
            Some(key) => {
                let iv: [u8; 16] = rand::random();
                let body = json!({ "encrypt": crypto::encrypt(key, &envelope.to_string(), iv) })
                    .to_string();
                let nonce = format!("nonce-{}", rand::random::<u32>());
                let sig = crypto::event_signature(ts, &nonce, key, body.as_bytes());
                (
                    body,
                    vec![
                        ("X-Lark-Request-Timestamp", ts.to_owned()),
                        ("X-Lark-Request-Nonce", nonce),
                        ("X-Lark-Signature", sig),
                    ],
                )
            }
            None => (envelope.to_string(), Vec::new()),
        };
        self.post_raw(path, &headers, body).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("request reaches the bot")
    }

    /// Sends `text` as `who`, in a group (mentioning the bot) or p2p, and returns the reply
    /// card once it arrives.
    pub async fn say(&self, who: Person, chat: Chat, text: &str) -> Value {
        let message_id = new_message_id();
        let event = message_event(&new_event_id(), &message_id, who, chat, text);
        let resp = self.post_event(&event).await;
        assert_eq!(resp.status(), 200, "event accepted");
        self.reply_to(&message_id).await.card
    }

    /// Waits (bounded) for the bot's reply to a message.
    pub async fn reply_to(&self, message_id: &str) -> Message {
        for _ in 0..250 {
            if let Some(m) = self.lark.replies_to(message_id).into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no reply to {message_id} within 5 s");
    }

    /// Waits until the bot has been idle for a moment, then returns the replies to a message
    /// (for asserting that there is none, or exactly one).
    pub async fn settled_replies(&self, message_id: &str) -> Vec<Message> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.lark.replies_to(message_id)
    }
}

/// Where a test message is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chat {
    /// A group chat, the bot mentioned as `@_user_1`.
    Group,
    /// A group chat, the bot not mentioned.
    GroupUnmentioned,
    P2p,
    /// A thread in a group, bot mentioned.
    Thread,
}

pub const GROUP_CHAT: &str = "oc_5ce6d572455d361153b7cb51da133945";
pub const P2P_CHAT: &str = "oc_84983ff6516d731e5b5f68d4ea2e1da5";

pub fn new_message_id() -> String {
    format!("om_test_{:032x}", rand::random::<u128>())
}

pub fn new_event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An `im.message.receive_v1` envelope (schema 2.0) with a text message.
pub fn message_event(
    event_id: &str,
    message_id: &str,
    who: Person,
    chat: Chat,
    text: &str,
) -> Value {
    let (chat_id, chat_type) = match chat {
        Chat::P2p => (P2P_CHAT, "p2p"),
        _ => (GROUP_CHAT, "group"),
    };
    let mentioned = matches!(chat, Chat::Group | Chat::Thread);
    let text = if mentioned {
        format!("@_user_1 {text}")
    } else {
        text.to_owned()
    };
    let mentions = if mentioned {
        json!([{"key": "@_user_1", "id": {"union_id": "on_bot", "user_id": "", "open_id": BOT_OPEN_ID}, "name": "abort-bot", "tenant_key": "2ca1d211f64f6438", "mentioned_type": "bot"}])
    } else {
        json!([])
    };
    let thread_id = if chat == Chat::Thread {
        "omt_1a2b3c"
    } else {
        ""
    };
    envelope(
        event_id,
        "im.message.receive_v1",
        json!({
            "sender": {"sender_id": {"union_id": who.union_id, "user_id": "", "open_id": who.open_id}, "sender_type": "user", "tenant_key": "2ca1d211f64f6438"},
            "message": {
                "message_id": message_id, "root_id": "", "parent_id": "",
                "create_time": "1716883200000", "update_time": "1716883200000",
                "chat_id": chat_id, "thread_id": thread_id, "chat_type": chat_type,
                "message_type": "text",
                "content": json!({ "text": text }).to_string(),
                "mentions": mentions
            }
        }),
    )
}

/// A schema-2.0 envelope around `event`.
pub fn envelope(event_id: &str, event_type: &str, event: Value) -> Value {
    json!({
        "schema": "2.0",
        "header": {"event_id": event_id, "event_type": event_type, "create_time": "1716883200123",
                   "token": VT, "app_id": APP_ID, "tenant_key": "2ca1d211f64f6438"},
        "event": event
    })
}

/// The shared vectors, read from the folder beside the checkout.
pub fn shared_vectors(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector file is JSON")
}

/// All text of a card (every `content` string), for asserting on what it says.
pub fn card_text(card: &Value) -> String {
    let mut out = String::new();
    collect_text(card, &mut out);
    out
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_text(x, out)),
        _ => {}
    }
}

/// The header colour of a card.
pub fn card_color(card: &Value) -> &str {
    card.pointer("/header/template")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub trait ClockExt {
    fn now_secs_string(&self) -> String;
}

impl ClockExt for ManualClock {
    fn now_secs_string(&self) -> String {
        use abort_bot::clock::Clock;
        self.now_secs().to_string()
    }
}

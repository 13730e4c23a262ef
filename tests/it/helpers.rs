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
/// How often test bots read their inbox for work nobody woke them for.
pub const INBOX_POLL: Duration = Duration::from_millis(50);
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
    /// Store everything in this Redis server instead of a SQLite file.
    pub redis: Option<Arc<crate::redis_server::RedisServer>>,
    /// `ABORT_BOT_MODE=websocket`: events come over the emulated long connection, which
    /// hands out a 1 s PingInterval and reconnects at once.
    pub websocket: bool,
    /// More variables, set last.
    pub extra: Vec<(&'static str, String)>,
    /// The listener's header and body read timeouts.
    pub read_timeouts: Duration,
    /// `ABORT_BOT_MAX_CONNECTIONS`, when set.
    pub max_connections: Option<usize>,
    /// Where everything the bot's threads log goes (nowhere by default).
    pub log: Option<tracing::Dispatch>,
    /// How long the bot waits for one upstream answer.
    pub upstream_timeout: Duration,
    /// The outbox's first pause after a failed delivery, on the bot's (manual) clock. Zero
    /// by default: a failed reply is tried again at the next poll, since the clock of most
    /// tests stands still.
    pub outbox_first_pause: Duration,
    /// How long the worker's claim on an event lasts (renewed every third of it).
    pub inbox_lease: Duration,
    /// How long a stop lets running events finish before handing them back.
    pub inbox_drain: Duration,
    /// The longest pause before a failed event is tried again (real time: the store's clock).
    pub inbox_retry_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            encrypt_key: Some(EK),
            default_project: Some("doc"),
            redis: None,
            websocket: false,
            extra: Vec::new(),
            read_timeouts: Duration::from_secs(10),
            max_connections: None,
            log: None,
            upstream_timeout: Duration::from_secs(5),
            outbox_first_pause: Duration::ZERO,
            // Short, so a restart after a crash takes the dead bot's work over soon; renewed
            // every third of it, so a busy machine does not lose it.
            inbox_lease: Duration::from_secs(2),
            inbox_drain: abort_bot::worker::DRAIN,
            inbox_retry_max: abort_bot::worker::RETRY_PAUSE_MAX,
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
            match &options.redis {
                Some(redis) => redis.url(),
                None => format!("sqlite://{}", store_path.display()),
            },
        );
    if let Some(k) = options.encrypt_key {
        src.set("LARK_ENCRYPT_KEY", k);
    }
    if let Some(p) = options.default_project {
        src.set("ABORT_BOT_DEFAULT_PROJECT", p);
    }
    if let Some(n) = options.max_connections {
        src.set("ABORT_BOT_MAX_CONNECTIONS", n.to_string());
    }
    if options.websocket {
        src.set("ABORT_BOT_MODE", "websocket");
        lark.ws()
            .set_client_config(json!({"PingInterval": 1, "ReconnectCount": -1,
                                           "ReconnectInterval": 1, "ReconnectNonce": 0}));
    }
    for (name, value) in &options.extra {
        src.set(name, value.clone());
    }
    let settings = Settings::from_sources(&src).expect("test settings");
    // Each bot gets its own runtime, so a test can kill it mid-work like a crash.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    if let Some(log) = options.log.clone() {
        // Every thread of this bot logs there, for as long as the thread lives.
        builder.on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&log)));
    }
    let runtime = builder.build().expect("runtime");
    let overrides = Overrides {
        clock: Arc::new(clock.clone()),
        retry: RetryPolicy::quick(),
        upstream_timeout: options.upstream_timeout,
        tap: None,
        // Every test runs beside a busy poll: it must never double anything.
        inbox_poll: INBOX_POLL,
        inbox_lease: options.inbox_lease,
        inbox_drain: options.inbox_drain,
        // The gauges follow the store closely, so a test sees an event at work.
        inbox_stats_every: Duration::from_millis(50),
        inbox_retry_max: options.inbox_retry_max,
        header_timeout: options.read_timeouts,
        body_timeout: options.read_timeouts,
        outbox_poll: Duration::from_millis(20),
        outbox_first_pause: options.outbox_first_pause,
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
        http: client_for(&options),
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

/// The test's HTTP client. With short read timeouts the bot closes idle keep-alive
/// connections quickly, so the client keeps none (a pooled one could be closed under it).
fn client_for(options: &Options) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if options.read_timeouts < Duration::from_secs(10) {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("HTTP client")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl TestApp {
    /// A URL on the emulated Lark.
    pub fn lark_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.lark_addr)
    }

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

    /// Like [`TestApp::restart`], with more variables set.
    pub async fn restart_with(mut self, env: Vec<(&'static str, &'static str)>) -> TestApp {
        self.options
            .extra
            .extend(env.into_iter().map(|(k, v)| (k, v.to_owned())));
        self.restart().await
    }

    /// A second handle on the bot's store (the same SQLite file or Redis database), for
    /// storing what no route queued.
    pub async fn open_store(&self) -> abort_bot::store::Store {
        match &self.options.redis {
            Some(redis) => {
                let url = abort_bot::store::RedisUrl::parse(&redis.url()).expect("redis url");
                abort_bot::store::Store::open_redis(&url, Duration::from_secs(3600))
                    .await
                    .expect("redis store")
            }
            None => abort_bot::store::Store::open(&self.store_path).expect("sqlite store"),
        }
    }

    /// `/readyz`: its status and plain-text reason.
    pub async fn readyz(&self) -> (u16, String) {
        let resp = self
            .http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Posts a Lark envelope to `/lark/events` as Lark would: encrypted and signed when the
    /// bot has an encrypt key, with the clock's timestamp.
    pub async fn post_event(&self, envelope: &Value) -> reqwest::Response {
        let ts = self.clock.now_secs_string();
        self.post_envelope("/lark/events", envelope, &ts).await
    }

    pub async fn post_envelope(&self, path: &str, envelope: &Value, ts: &str) -> reqwest::Response {
        // Lark knows which chat a person's message is in; tell the emulator, so that replies
        // to it count for that chat's rate limit.
        if let (Some(id), Some(chat)) = (
            envelope
                .pointer("/event/message/message_id")
                .and_then(Value::as_str),
            envelope
                .pointer("/event/message/chat_id")
                .and_then(Value::as_str),
        ) {
            self.lark.note_message(id, chat);
        }
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

    /// Like [`TestApp::say`], but when the first answer is the "in progress" card, waits
    /// (bounded, 30 s) for the result that replaces it and returns that.
    pub async fn say_final(&self, who: Person, chat: Chat, text: &str) -> Value {
        self.say_for_final_card(who, chat, text).await.1
    }

    /// Like [`TestApp::say_for_card`], but past an "in progress" card: the reply's id and the
    /// card that replaced it (bounded, 30 s).
    pub async fn say_for_final_card(&self, who: Person, chat: Chat, text: &str) -> (String, Value) {
        let message_id = self.send(who, chat, text).await;
        let reply = self.reply_to(&message_id).await;
        if card_color(&reply.card) != "wathet" {
            return (reply.message_id, reply.card);
        }
        for _ in 0..1500 {
            if let Some(m) = self.lark.message(&reply.message_id)
                && m.updates > 0
            {
                return (reply.message_id, m.card);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the in-progress card for {message_id} was not updated within 30 s");
    }

    /// Sends `text` as `who` (like [`TestApp::say`]) without waiting for the reply; returns the
    /// message_id.
    pub async fn send(&self, who: Person, chat: Chat, text: &str) -> String {
        let message_id = new_message_id();
        let event = message_event(&new_event_id(), &message_id, who, chat, text);
        assert_eq!(
            self.post_event(&event).await.status(),
            200,
            "event accepted"
        );
        message_id
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

    /// Waits until the bot has finished every event it stored and delivered every answer, then
    /// returns the replies to a message (for asserting that there is none, or exactly one). An
    /// answer leaves the outbox only after Lark took it, so once nothing is pending or waiting
    /// what the emulated Lark recorded is all there will be.
    pub async fn settled_replies(&self, message_id: &str) -> Vec<Message> {
        self.settled().await;
        self.lark.replies_to(message_id)
    }

    /// Waits (bounded, 15 s) until the inbox holds nothing pending and the outbox nothing
    /// waiting.
    pub async fn settled(&self) {
        let store = self.open_store().await;
        // An event is finished when its answer is in the outbox; the answer is delivered
        // after that, so both must be empty.
        let waiting = async || store.deliveries_waiting().await.expect("the store answers");
        for _ in 0..750 {
            if self.pending(&store).await.is_empty() && waiting().await == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "still pending after 15 s: {:?}, {} answers waiting",
            self.pending(&store).await,
            waiting().await
        );
    }

    /// The inbox items not yet finished.
    pub async fn pending(
        &self,
        store: &abort_bot::store::Store,
    ) -> Vec<abort_bot::store::InboxItem> {
        store.pending(usize::MAX).await.expect("the store answers")
    }

    /// Asserts that nothing was stored to run and that neither emulator was called: what a
    /// refused request must leave behind. The refusal is answered before anything is stored,
    /// so this holds the moment the answer is in.
    pub async fn assert_untouched(&self, what: &str) {
        let store = self.open_store().await;
        assert!(
            self.pending(&store).await.is_empty(),
            "{what}: nothing stored"
        );
        assert!(
            self.project.requests().is_empty(),
            "{what}: no Feishu Project call: {:?}",
            self.project.requests()
        );
        assert!(
            self.lark.requests().is_empty(),
            "{what}: no Lark call: {:?}",
            self.lark.requests()
        );
    }

    /// A counter from `/metrics` (0 when it has no sample yet).
    pub async fn counter(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().expect("a counter value"))
    }

    /// How many events this bot claimed from its inbox (takeovers included).
    pub async fn claimed(&self) -> u64 {
        self.counter("abort_bot_inbox_claimed_total").await
    }

    /// How many of them it took over from an expired lease.
    pub async fn takeovers(&self) -> u64 {
        self.counter("abort_bot_inbox_takeovers_total").await
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

/// The first component in a card (depth first) whose `name` is `name` (a form field or a
/// button in a form) or, for a button outside a form, which may carry no name, whose
/// `element_id` is `name`.
pub fn find_named<'a>(card: &'a Value, name: &str) -> Option<&'a Value> {
    match card {
        Value::Object(o) => {
            let named = o.get("name").or_else(|| o.get("element_id"));
            if named.and_then(Value::as_str) == Some(name) && o.contains_key("tag") {
                return Some(card);
            }
            o.values().find_map(|v| find_named(v, name))
        }
        Value::Array(a) => a.iter().find_map(|v| find_named(v, name)),
        _ => None,
    }
}

/// The callback value of the button named `name` on a card.
pub fn button_value(card: &Value, name: &str) -> Value {
    find_named(card, name)
        .and_then(|b| b.pointer("/behaviors/0/value"))
        .cloned()
        .unwrap_or_else(|| panic!("no button `{name}` on the card: {card}"))
}

/// What the bot answered to a click.
#[derive(Debug)]
pub struct Clicked {
    pub status: u16,
    pub body: Value,
    /// How long the bot took to answer (Lark gives up after 3 s).
    pub elapsed: Duration,
    /// The card token Lark issued with the click (for the delayed-update API).
    pub card_token: String,
}

impl Clicked {
    /// The card in a 2.0 answer (`card.data`).
    pub fn card(&self) -> Option<&Value> {
        self.body.pointer("/card/data")
    }

    pub fn toast_en(&self) -> &str {
        self.body
            .pointer("/toast/content")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn toast_type(&self) -> &str {
        self.body
            .pointer("/toast/type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// One click as Lark reports it: who, on which message, what the button and form sent.
#[derive(Debug, Clone)]
pub struct ClickOn<'a> {
    pub who: Person,
    pub message_id: &'a str,
    pub value: Value,
    pub form: Value,
    /// The callback's `header.event_id` (a redelivery repeats it).
    pub event_id: String,
    /// The clicked component's `name`.
    pub button: String,
}

impl<'a> ClickOn<'a> {
    /// A click on the button named `button` of the message's current card.
    pub fn button(app: &TestApp, who: Person, message_id: &'a str, button: &str) -> Self {
        let card = app
            .lark
            .message(message_id)
            .unwrap_or_else(|| panic!("no message {message_id}"))
            .card;
        Self {
            who,
            message_id,
            value: button_value(&card, button),
            form: json!({}),
            event_id: new_event_id(),
            button: button.to_owned(),
        }
    }

    pub fn form(mut self, form: Value) -> Self {
        self.form = form;
        self
    }
}

impl TestApp {
    /// Clicks as Lark does with a 2.0 `card.action.trigger` callback, encrypted and signed,
    /// on `path`. Like Lark, a card in the answer replaces the message's card.
    pub async fn click_on(&self, path: &str, click: &ClickOn<'_>) -> Clicked {
        let card_token = format!("c-{:040x}", rand::random::<u128>());
        self.lark
            .state()
            .card_tokens
            .insert(card_token.clone(), click.message_id.to_owned());
        let event = json!({
            "operator": {"tenant_key": "2ca1d211f64f6438", "user_id": "",
                         "open_id": click.who.open_id, "union_id": click.who.union_id},
            "token": card_token,
            "action": {"value": click.value, "tag": "button", "name": click.button, "form_value": click.form},
            "host": "im_message",
            "delivery_type": "",
            "context": {"open_message_id": click.message_id, "open_chat_id": GROUP_CHAT}
        });
        let envelope = envelope(&click.event_id, "card.action.trigger", event);
        let started = std::time::Instant::now();
        let resp = self
            .post_envelope(path, &envelope, &self.clock.now_secs_string())
            .await;
        let elapsed = started.elapsed();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if let Some(card) = body.pointer("/card/data") {
            self.show_card(click.message_id, card.clone());
        }
        Clicked {
            status,
            body,
            elapsed,
            card_token,
        }
    }

    /// A 2.0 click on `/lark/events`.
    pub async fn click(&self, click: &ClickOn<'_>) -> Clicked {
        self.click_on("/lark/events", click).await
    }

    /// Clicks as the legacy card request URL does: plain JSON with the clicker's open_id
    /// only, signed with SHA-1 over the verification token, on `/lark/cards`. The answer is
    /// the new card itself (or a `{toast}`).
    pub async fn legacy_click(&self, click: &ClickOn<'_>, signature: Option<&str>) -> Clicked {
        let card_token = format!("c-{:040x}", rand::random::<u128>());
        self.lark
            .state()
            .card_tokens
            .insert(card_token.clone(), click.message_id.to_owned());
        let body = json!({
            "open_id": click.who.open_id, "user_id": "", "open_message_id": click.message_id,
            "open_chat_id": GROUP_CHAT, "tenant_key": "2ca1d211f64f6438", "token": card_token,
            "action": {"value": click.value, "tag": "button", "form_value": click.form}
        })
        .to_string();
        let ts = self.clock.now_secs_string();
        let nonce = format!("legacy-{}", rand::random::<u32>());
        let sig = signature
            .map(str::to_owned)
            .unwrap_or_else(|| crypto::card_signature(&ts, &nonce, VT, body.as_bytes()));
        let headers = [
            ("X-Lark-Request-Timestamp", ts),
            ("X-Lark-Request-Nonce", nonce),
            ("X-Lark-Signature", sig),
        ];
        let started = std::time::Instant::now();
        let resp = self.post_raw("/lark/cards", &headers, body).await;
        let elapsed = started.elapsed();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if body.get("schema").is_some() {
            self.show_card(click.message_id, body.clone());
        }
        Clicked {
            status,
            body,
            elapsed,
            card_token,
        }
    }

    /// What Lark does with a card in a callback answer: it replaces the message's card, if
    /// the card passes Lark's card rules (every answer in every test is held to them).
    fn show_card(&self, message_id: &str, card: Value) {
        assert_eq!(
            abort_bot::emulator::card_rules::check(&card),
            Ok(()),
            "Lark would refuse the card in the answer: {card}"
        );
        assert!(
            abort_bot::cards::content_size(&card) <= abort_bot::cards::CARD_BUDGET,
            "the card in the answer is too large"
        );
        if let Some(m) = self.lark.state().messages.get_mut(message_id) {
            m.card = card;
        }
    }

    /// Sends `text` and returns the id of the bot's reply and its card.
    pub async fn say_for_card(&self, who: Person, chat: Chat, text: &str) -> (String, Value) {
        let message_id = new_message_id();
        let event = message_event(&new_event_id(), &message_id, who, chat, text);
        assert_eq!(
            self.post_event(&event).await.status(),
            200,
            "event accepted"
        );
        let reply = self.reply_to(&message_id).await;
        (reply.message_id, reply.card)
    }
}

/// Polls `done` every 20 ms for at most 5 s; panics naming `what` if it never holds.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    wait_within(what, Duration::from_secs(5), done).await;
}

/// Polls `done` every 20 ms for at most `within` (for work slowed or paced on purpose);
/// panics naming `what` if it never holds.
pub async fn wait_within(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the emulated Feishu Project has seen `n` PUTs.
pub async fn wait_for_puts(app: &TestApp, n: usize) {
    wait_until(&format!("{n} PUTs"), || {
        app.project.requests_to("PUT", "/open_api/").len() >= n
    })
    .await;
}

/// Every outcome, `busy` and `unexpected` carrying the given details; the `match` fails to
/// compile when an outcome is added, so every card test that uses this covers it.
pub fn every_outcome(busy: &str, unexpected: &str) -> Vec<abort_bot::service::Outcome> {
    use abort_bot::service::Outcome;
    let all = vec![
        Outcome::Done,
        Outcome::AlreadyAborted,
        Outcome::AlreadyRestored,
        Outcome::NotFound,
        Outcome::StateFlow,
        Outcome::Intercepted,
        Outcome::ReasonMissing,
        Outcome::NoPermission,
        Outcome::UnknownSpace,
        Outcome::NoSpace,
        Outcome::NotAUser,
        Outcome::Busy(busy.to_owned()),
        Outcome::Unconfirmed(Some(true)),
        Outcome::Unconfirmed(Some(false)),
        Outcome::Unconfirmed(None),
        Outcome::Unexpected(unexpected.to_owned()),
    ];
    for o in &all {
        match o {
            Outcome::Done
            | Outcome::AlreadyAborted
            | Outcome::AlreadyRestored
            | Outcome::NotFound
            | Outcome::StateFlow
            | Outcome::Intercepted
            | Outcome::ReasonMissing
            | Outcome::NoPermission
            | Outcome::UnknownSpace
            | Outcome::NoSpace
            | Outcome::NotAUser
            | Outcome::Busy(_)
            | Outcome::Unconfirmed(_)
            | Outcome::Unexpected(_) => {}
        }
    }
    all
}

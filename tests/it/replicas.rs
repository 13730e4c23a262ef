//! Several `abort-bot serve` processes on one real Redis act as one bot, while replicas are
//! killed (SIGKILL, no shutdown) and started again. The test is the load balancer in front
//! of them: it hands each signed, encrypted delivery to two replicas at once and, like Lark,
//! pushes a delivery again until some replica acknowledges it. Kills are random but seeded:
//! the seed is printed, and `ABORT_BOT_FAULT_SEED=<seed>` runs the same schedule again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use abort_bot::emulator::lark::LarkEmulator;
use abort_bot::emulator::project::ProjectEmulator;
use abort_bot::lark::crypto;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::helpers::*;
use super::redis_server::RedisServer;
use super::store_safety::{Bot, base_env};

/// How long everything acknowledged may take to be answered once the deliveries end: past
/// the outbox's lease (45 s) of a try cut short by a kill. A bound, not a measurement.
const SETTLE_BOUND: Duration = Duration::from_secs(120);

/// The replicas, each a real process, and how to start another like them.
struct Replicas {
    env: Vec<(&'static str, String)>,
    bots: Vec<(Bot, SocketAddr)>,
    http: reqwest::Client,
    kills: usize,
}

impl Replicas {
    async fn start(n: usize, env: Vec<(&'static str, String)>) -> Replicas {
        let mut bots = Vec::with_capacity(n);
        for _ in 0..n {
            bots.push(start_one(env.clone()).await);
        }
        Replicas {
            env,
            bots,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
            kills: 0,
        }
    }

    /// SIGKILL replica `i`, then start a new process in its place on the same Redis.
    async fn kill_and_restart(&mut self, i: usize) {
        self.bots[i].0.kill();
        self.kills += 1;
        self.bots[i] = start_one(self.env.clone()).await;
    }

    /// Posts one delivery to replica `i`: its status, or None when nothing answered (a
    /// replica killed under it).
    async fn post(&self, i: usize, body: &str, headers: &[(&'static str, String)]) -> Option<u16> {
        post(
            self.http.clone(),
            self.bots[i].1,
            body.to_owned(),
            headers.to_vec(),
        )
        .await
    }

    /// Hands the delivery to replicas `a` and `b` at once; true if either acknowledged it.
    async fn post_to_two(&self, a: usize, b: usize, envelope: &Value) -> bool {
        let (body_a, headers_a) = signed(envelope);
        let (body_b, headers_b) = signed(envelope);
        let (x, y) = tokio::join!(
            self.post(a, &body_a, &headers_a),
            self.post(b, &body_b, &headers_b)
        );
        [x, y].into_iter().flatten().any(|s| s == 200)
    }

    /// What Lark does with a delivery nobody acknowledged: pushes it again (here to each
    /// replica in turn) until one does.
    async fn push_until_acknowledged(&self, envelope: &Value) {
        for attempt in 0..200 {
            let (body, headers) = signed(envelope);
            if self.post(attempt % self.bots.len(), &body, &headers).await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no replica acknowledged a delivery in 200 pushes");
    }
}

async fn post(
    http: reqwest::Client,
    addr: SocketAddr,
    body: String,
    headers: Vec<(&'static str, String)>,
) -> Option<u16> {
    let mut req = http
        .post(format!("http://{addr}/lark/events"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.ok().map(|r| r.status().as_u16())
}

async fn start_one(env: Vec<(&'static str, String)>) -> (Bot, SocketAddr) {
    tokio::task::spawn_blocking(move || {
        let mut bot = Bot::start("serve", &env);
        let addr = bot.listening();
        (bot, addr)
    })
    .await
    .expect("join")
}

/// The body and headers of a delivery as Lark sends it now: encrypted, signed over the
/// current time (a real bot checks the timestamp against its own clock).
fn signed(envelope: &Value) -> (String, Vec<(&'static str, String)>) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let iv: [u8; 16] = rand::random();
    let body = json!({ "encrypt": crypto::encrypt(EK, &envelope.to_string(), iv) }).to_string();
    let nonce = format!("nonce-{}", rand::random::<u32>());
    let sig = crypto::event_signature(&ts, &nonce, EK, body.as_bytes());
    (
        body,
        vec![
            ("X-Lark-Request-Timestamp", ts),
            ("X-Lark-Request-Nonce", nonce),
            ("X-Lark-Signature", sig),
        ],
    )
}

/// The seed of this run's random choices: `ABORT_BOT_FAULT_SEED`, or a new one (printed).
fn seeded(test: &str) -> StdRng {
    let seed = std::env::var("ABORT_BOT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("{test}: ABORT_BOT_FAULT_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// The emulators, a Redis, and the variables of a replica on them.
async fn setup() -> (
    LarkEmulator,
    ProjectEmulator,
    std::sync::Arc<RedisServer>,
    Vec<(&'static str, String)>,
) {
    let (lark, lark_addr, project, project_addr) = emulators().await;
    let redis = RedisServer::start();
    let mut env = base_env(
        &format!("http://{lark_addr}"),
        &format!("http://{project_addr}"),
        &redis.url(),
    );
    env.extend([
        ("LARK_ENCRYPT_KEY", EK.to_owned()),
        ("ABORT_BOT_DEFAULT_PROJECT", "doc".to_owned()),
        // One sender issues every command here: the per-person limit is not under test.
        ("ABORT_BOT_USER_RATE", "1000000".to_owned()),
    ]);
    (lark, project, redis, env)
}

/// A group command (the bot mentioned) in chat `chat`.
fn command(message_id: &str, chat: usize, text: &str) -> Value {
    let mut event = message_event(&new_event_id(), message_id, ALICE, Chat::Group, text);
    event["event"]["message"]["chat_id"] = format!("oc_replicas_{chat:02}").into();
    event
}

/// Waits (bounded) until the inbox in Redis holds nothing pending and its outbox nothing
/// waiting: every replica has finished and delivered all it will.
async fn settled(redis: &RedisServer) {
    let url = abort_bot::store::RedisUrl::parse(&redis.url()).expect("redis url");
    let store = abort_bot::store::Store::open_redis(&url, Duration::from_secs(3600))
        .await
        .expect("redis store");
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        let pending = store.pending(usize::MAX).await.expect("pending").len();
        let waiting = store.deliveries_waiting().await.expect("waiting");
        if pending == 0 && waiting == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {SETTLE_BOUND:?}: {pending} pending, {waiting} answers waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first reply to a message (bounded wait).
async fn wait_for_reply(
    lark: &LarkEmulator,
    message_id: &str,
) -> abort_bot::emulator::lark::Message {
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        if let Some(r) = lark.replies_to(message_id).into_iter().next() {
            return r;
        }
        assert!(Instant::now() < deadline, "no reply to {message_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reply_calls(lark: &LarkEmulator, message_id: &str) -> usize {
    lark.requests_to(
        "POST",
        &format!("/open-apis/im/v1/messages/{message_id}/reply"),
    )
    .len()
}

async fn three_replicas_with_kills(commands: u64, kills: usize) {
    let mut rng = seeded("replicas");
    let (lark, project, redis, env) = setup().await;
    const FIRST: u64 = 80_001;
    project.add_stories(FIRST, commands);
    // Every Feishu Project answer takes a while, so a kill finds commands mid-work.
    project.state().slow = Some(Duration::from_millis(100));
    let mut replicas = Replicas::start(3, env).await;
    let mut kill_at: Vec<u64> = (0..kills)
        .map(|_| rng.random_range(commands / 10..commands * 9 / 10))
        .collect();
    kill_at.sort_unstable();
    let mut messages = Vec::new();
    for n in 0..commands {
        while kill_at.first() == Some(&n) {
            kill_at.remove(0);
            let victim = rng.random_range(0..3);
            replicas.kill_and_restart(victim).await;
        }
        let message_id = new_message_id();
        let chat = usize::try_from(n % 20).expect("small");
        let event = command(&message_id, chat, &format!("/abort {} test", FIRST + n));
        let a = rng.random_range(0..3);
        let b = (a + rng.random_range(1..3)) % 3;
        if !replicas.post_to_two(a, b, &event).await {
            replicas.push_until_acknowledged(&event).await;
        }
        messages.push(message_id);
    }
    let deadline = Instant::now() + SETTLE_BOUND;
    while messages.iter().any(|m| lark.replies_to(m).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "{} commands unanswered",
            messages
                .iter()
                .filter(|m| lark.replies_to(m).is_empty())
                .count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settled(&redis).await;
    let mut doubled = 0;
    for (n, m) in messages.iter().enumerate() {
        let replies = lark.replies_to(m);
        assert_eq!(
            card_color(&replies[0].card),
            "green",
            "{}",
            card_text(&replies[0].card)
        );
        let id = FIRST + u64::try_from(n).expect("small");
        if replies.len() != 1 || project.changes(id) != 1 {
            doubled += 1;
        }
        assert_eq!(replies.len(), 1, "one reply to {m}");
        assert_eq!(project.changes(id), 1, "{id} changed once");
        assert!(project.item(id).expect("item").aborted);
    }
    let puts = project.requests_to("PUT", "/open_api/").len();
    let calls: usize = messages.iter().map(|m| reply_calls(&lark, m)).sum();
    println!(
        "replicas: 3 replicas, {} kills, {commands} commands × 2 deliveries, {puts} PUTs, \
         {calls} reply calls, {} replies, 0 lost, {doubled} doubled",
        replicas.kills,
        messages
            .iter()
            .map(|m| lark.replies_to(m).len())
            .sum::<usize>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_at_random_change_each_item_once_and_reply_once() {
    three_replicas_with_kills(200, 4).await;
}

async fn redeliveries_over_replicas(deliveries: usize, kills: usize) {
    let mut rng = seeded("redeliveries");
    let (lark, project, redis, env) = setup().await;
    let mut replicas = Replicas::start(3, env).await;
    let message_id = new_message_id();
    let event = command(&message_id, 0, "/abort 12345 repeat");
    project.state().slow = Some(Duration::from_millis(100));
    // The first tenth reaches all three while the command runs; the kills come after it
    // ended (a kill mid-work is the other test's), so a restart must not run it again.
    let first = deliveries / 10;
    let mut kill_at: Vec<usize> = (0..kills)
        .map(|_| rng.random_range(first..deliveries - 1))
        .collect();
    kill_at.sort_unstable();
    let mut acknowledged = 0;
    let mut sent = 0;
    let mut answered = false;
    while sent < deliveries {
        if sent >= first && !answered {
            wait_for_reply(&lark, &message_id).await;
            answered = true;
        }
        while kill_at.first().is_some_and(|k| *k <= sent) {
            kill_at.remove(0);
            let victim = rng.random_range(0..3);
            replicas.kill_and_restart(victim).await;
        }
        // Ten at a time, each to a replica picked at random.
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (body, headers) = signed(&event);
            let addr = replicas.bots[rng.random_range(0..3)].1;
            batch.spawn(post(replicas.http.clone(), addr, body, headers));
        }
        let answers = batch.join_all().await;
        for answer in &answers {
            assert_eq!(*answer, Some(200), "a redelivery is acknowledged");
            acknowledged += 1;
        }
        sent += answers.len();
    }
    let reply = wait_for_reply(&lark, &message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "green",
        "{}",
        card_text(&reply.card)
    );
    settled(&redis).await;
    let puts = project.requests_to("PUT", "/open_api/").len();
    let calls = reply_calls(&lark, &message_id);
    println!(
        "redeliveries: 3 replicas, {} kills, {sent} deliveries ({acknowledged} acknowledged), \
         {puts} PUTs, {calls} reply calls, {} replies",
        replicas.kills,
        lark.replies_to(&message_id).len()
    );
    assert_eq!(lark.replies_to(&message_id).len(), 1, "one reply");
    assert_eq!(project.changes(12345), 1, "changed once");
    assert_eq!(puts, 1, "one PUT");
    assert_eq!(calls, 1, "one reply call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_redeliveries_over_replicas_and_restarts_put_once_and_reply_once() {
    redeliveries_over_replicas(1000, 3).await;
}

/// The long run: `cargo test --test it replicas::long_ -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the long run; about two minutes"]
async fn long_three_replicas_with_twenty_kills_over_a_thousand_commands() {
    three_replicas_with_kills(1000, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the long run"]
async fn long_ten_thousand_redeliveries_over_replicas_and_ten_restarts() {
    redeliveries_over_replicas(10_000, 10).await;
}

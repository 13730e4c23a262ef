//! `abort-bot sandbox` driven over HTTP the way its page drives it: chat messages and clicks in
//! through the page API, the emulated platforms' records and the page's event stream out.

use std::time::Duration;

use abort_bot::emulator::lark::LarkEmulator;
use abort_bot::emulator::project::ProjectEmulator;
use abort_bot::sandbox::{Sandbox, SandboxError, people};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// A sandbox on an ephemeral loopback port, stopped when dropped.
struct Running {
    base: String,
    /// The bot behind the page (its `/metrics` say what reached it).
    bot: String,
    project: ProjectEmulator,
    lark: LarkEmulator,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

async fn start() -> Running {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("the sandbox starts");
    let base = format!("http://{}", sandbox.page_addr());
    let bot = format!("http://{}", sandbox.bot_addr());
    let project = sandbox.project();
    let lark = sandbox.lark();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sandbox.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Running {
        base,
        bot,
        project,
        lark,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("the page API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the page API answers")
            .json()
            .await
            .expect("JSON")
    }

    async fn say(&self, user: &str, chat: &str, text: &str) -> Value {
        let (status, answer) = self
            .post(
                "/api/messages",
                json!({"user": user, "chat": chat, "text": text}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Opens the page's event stream (subscribed once this returns).
    async fn events(&self) -> Events {
        let resp = self
            .http
            .get(format!("{}/api/events", self.base))
            .send()
            .await
            .expect("event stream opens");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/event-stream"))
        );
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The bot's reply card to a page message, waited for (bounded).
    /// The card that answers a message, once it shows the result: a command slower than
    /// the bot's budget is answered "in progress" first and that card is then updated.
    async fn reply_card(&self, message_id: &str) -> Value {
        for _ in 0..400 {
            if let Some(m) = self.lark.replies_to(message_id).into_iter().next()
                && color(&m.card) != "wathet"
            {
                return m.card;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no reply to {message_id} with a result within 10 s");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = timeout(Duration::from_secs(10), task)
                .await
                .expect("the sandbox stops within 10 s, even with an event stream open");
            result.expect("join").expect("clean stop");
        }
    }
}

/// The page's server-sent events, read frame by frame.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    /// The first event that `pred` accepts, within `within`.
    async fn until(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&data).expect("event data is JSON");
                if pred(&event) {
                    return event;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no matching page event within {within:?}");
            match timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) => panic!("the event stream ended"),
                Ok(Err(e)) => panic!("the event stream failed: {e}"),
                Err(_) => panic!("no matching page event within {within:?}"),
            }
        }
    }
}

fn text_of(card: &Value) -> String {
    let mut out = String::new();
    collect(card, &mut out);
    out
}

fn collect(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect(x, out)),
        _ => {}
    }
}

fn color(card: &Value) -> &str {
    card.pointer("/header/template")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

const ABORT_12345: &str = "/open_api/60acd5610444ba031b503055/work_item/story/12345/abort";

#[tokio::test]
async fn a_page_message_aborts_the_item_and_the_page_stream_delivers_the_card() {
    let sb = start().await;
    let mut events = sb.events().await;
    let sent = sb
        .say(
            "alice",
            "group",
            "@abort-bot /abort 12345 repeat duplicate of 12001",
        )
        .await;
    assert_eq!(sent["delivered"], true, "{sent}");
    let message_id = sent["message_id"].as_str().expect("message id").to_owned();

    // The item panel changes first (after the PUT), then the card arrives (after the reply).
    let items = events
        .until(Duration::from_secs(10), |e| e["kind"] == "items")
        .await;
    let row = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == 12345)
        .expect("12345 listed")
        .clone();
    assert_eq!(row["aborted"], true);
    assert_eq!(row["changed_by"], "Alice");
    let bot = events
        .until(Duration::from_secs(10), |e| {
            e["kind"] == "message" && e["message"]["from"] == "bot"
        })
        .await;
    let message = &bot["message"];
    assert_eq!(message["reply_to"], message_id.as_str());
    assert_eq!(message["chat_id"], people::GROUP_CHAT);
    let card = &message["card"];
    assert_eq!(card["schema"], "2.0");
    assert_eq!(color(card), "green", "{card}");
    assert!(text_of(card).contains("Export a space as PDF"), "{card}");

    // The emulated Feishu Project saw the PUT, as Alice, with the chosen option.
    let puts = sb.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, ABORT_12345);
    assert_eq!(puts[0].header("x-user-key"), Some("7012514555133820947"));
    assert_eq!(
        puts[0].body,
        json!({"is_aborted": true, "reason": "duplicate of 12001", "reason_option": "repeat"})
    );
    // The event really went encrypted and signed: the bot's mention check and the sender
    // came through verification.
    let item = sb.project.item(12345).expect("item");
    assert!(item.aborted);

    // The request log followed.
    let state = sb.get("/api/state").await;
    let log = state["log"].as_array().expect("log");
    let put = log
        .iter()
        .find(|l| l["method"] == "PUT")
        .expect("the PUT is in the request log");
    assert_eq!(put["service"], "feishu_project");
    assert_eq!(put["path"], ABORT_12345);
    assert_eq!(put["status"], 200);
    assert_eq!(put["code"], 0);
    assert!(put["latency_ms"].as_f64().is_some());
    assert!(
        log.iter()
            .any(|l| l["service"] == "bot" && l["path"] == "/lark/events" && l["status"] == 200),
        "the delivery to the bot is logged: {log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l["service"] == "lark"
                && l["path"].as_str().is_some_and(|p| p.ends_with("/reply"))),
        "the reply is logged: {log:?}"
    );
    sb.stop().await;
}

#[tokio::test]
async fn a_group_message_without_the_mention_never_reaches_the_bot() {
    let sb = start().await;
    let sent = sb.say("bob", "group", "/abort 12345 repeat").await;
    assert_eq!(sent["delivered"], false);
    assert!(
        sent["note"]
            .as_str()
            .is_some_and(|n| n.contains("@abort-bot"))
    );
    // The page decided before answering: the bot was never sent anything.
    let metrics = sb
        .http
        .get(format!("{}/metrics", sb.bot))
        .send()
        .await
        .expect("the bot's metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics.contains("abort_bot_inbound_requests_total{"),
        "no request reached the bot: {metrics}"
    );
    assert!(sb.project.requests().is_empty());
    assert!(sb.lark.requests().is_empty());
    let state = sb.get("/api/state").await;
    let messages = state["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["from"], "user");
    assert!(messages[0]["note"].is_string());
}

#[tokio::test]
async fn a_direct_message_needs_no_mention_and_is_answered_in_that_chat() {
    let sb = start().await;
    let mut events = sb.events().await;
    let sent = sb.say("bob", "p2p", "/restore 12348 restart").await;
    assert_eq!(sent["delivered"], true);
    let bot = events
        .until(Duration::from_secs(10), |e| {
            e["kind"] == "message" && e["message"]["from"] == "bot"
        })
        .await;
    assert_eq!(
        bot["message"]["chat_id"],
        "oc_b0b00000000000000000000000000b0b"
    );
    assert_eq!(color(&bot["message"]["card"]), "green");
    let item = sb.project.item(12348).expect("item");
    assert!(!item.aborted);
    assert_eq!(item.changed_by, "7012514555133820948");
}

#[tokio::test]
async fn the_real_error_answers_show_as_their_cards() {
    let sb = start().await;
    let cases = [
        (
            "@abort-bot /abort 22003 cancel",
            "orange",
            "Already aborted",
            20007,
        ),
        ("@abort-bot /abort 99999 cancel", "red", "not found", 30005),
        ("@abort-bot /abort 32001 cancel", "red", "state flow", 20056),
        ("@abort-bot /abort 12349 test", "red", "space rule", 20090),
    ];
    for (text, want_color, want_text, code) in cases {
        let sent = sb.say("alice", "group", text).await;
        let card = sb
            .reply_card(sent["message_id"].as_str().expect("id"))
            .await;
        assert_eq!(color(&card), want_color, "{text}: {card}");
        assert!(text_of(&card).contains(want_text), "{text}: {card}");
        let state = sb.get("/api/state").await;
        assert!(
            state["log"]
                .as_array()
                .expect("log")
                .iter()
                .any(|l| l["service"] == "feishu_project" && l["code"] == code),
            "{text}: err_code {code} is in the request log"
        );
    }
    // Carol is not a member of the space; Dave has no Feishu Project account.
    let sent = sb
        .say("carol", "group", "@abort-bot /abort 12346 test")
        .await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert!(text_of(&card).contains("No permission"), "{card}");
    let sent = sb
        .say("dave", "group", "@abort-bot /abort 12346 test")
        .await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert!(
        text_of(&card).contains("not a Feishu Project user"),
        "{card}"
    );
    assert!(!sb.project.item(12346).expect("item").aborted);
}

#[tokio::test]
async fn the_rate_limit_switch_gives_10429_and_the_busy_card() {
    let sb = start().await;
    let (status, switches) = sb
        .post("/api/switches", json!({"rate_limited": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(switches, json!({"rate_limited": true, "slow_ms": 0}));
    let sent = sb
        .say("alice", "group", "@abort-bot /abort 12345 repeat")
        .await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert_eq!(color(&card), "orange", "{card}");
    assert!(text_of(&card).contains("busy"), "{card}");
    assert!(!sb.project.item(12345).expect("item").aborted);
    let state = sb.get("/api/state").await;
    let limited: Vec<&Value> = state["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|l| l["status"] == 429 && l["code"] == 10429)
        .collect();
    assert!(limited.len() >= 2, "retried with backoff: {limited:?}");
    assert_eq!(state["switches"]["rate_limited"], true);

    // Switched off, the same command goes through.
    sb.post("/api/switches", json!({"rate_limited": false}))
        .await;
    let sent = sb
        .say("alice", "group", "@abort-bot /abort 12345 repeat")
        .await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert_eq!(color(&card), "green", "{card}");
}

#[tokio::test]
async fn the_slow_switch_delays_every_feishu_project_answer() {
    let sb = start().await;
    let (_, switches) = sb.post("/api/switches", json!({"slow_ms": 250})).await;
    assert_eq!(switches["slow_ms"], 250);
    let sent = sb.say("alice", "p2p", "/abort 12347 test").await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert_eq!(color(&card), "green", "{card}");
    let state = sb.get("/api/state").await;
    let put = state["log"]
        .as_array()
        .expect("log")
        .iter()
        .find(|l| l["method"] == "PUT")
        .cloned()
        .expect("PUT logged");
    assert!(
        put["latency_ms"].as_f64().expect("latency") >= 250.0,
        "{put}"
    );
}

#[tokio::test]
async fn a_click_goes_to_the_bot_as_a_signed_card_action_with_a_card_token() {
    let sb = start().await;
    let sent = sb.say("alice", "group", "@abort-bot /abort 12345").await;
    let message_id = sent["message_id"].as_str().expect("id").to_owned();
    let reply = {
        for _ in 0..200 {
            if !sb.lark.replies_to(&message_id).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sb.lark
            .replies_to(&message_id)
            .into_iter()
            .next()
            .expect("the bot replied")
    };
    let updates_before = reply.updates;
    let (status, answer) = sb
        .post(
            "/api/clicks",
            json!({"user": "bob", "message_id": reply.message_id, "tag": "button",
                   "value": {"cmd": "cancel"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // 200 from the bot means it decrypted the body and accepted the signature and token.
    assert_eq!(answer["status"], 200, "{answer}");
    // The click carried a fresh card token, registered for this message.
    let tokens: Vec<String> = sb
        .lark
        .state()
        .card_tokens
        .iter()
        .filter(|(_, m)| **m == reply.message_id)
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].starts_with("c-"));
    // Whatever card the bot answered with is what the message now shows.
    let now = sb.lark.message(&reply.message_id).expect("message");
    match answer["answer"]["card"]["data"].as_object() {
        Some(data) => {
            assert_eq!(answer["card_updated"], true);
            assert_eq!(now.card, Value::Object(data.clone()));
            assert_eq!(now.updates, updates_before + 1);
        }
        None => assert_eq!(answer["card_updated"], false),
    }
    let state = sb.get("/api/state").await;
    assert!(
        state["log"]
            .as_array()
            .expect("log")
            .iter()
            .any(|l| l["service"] == "bot"
                && l["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("card.action.trigger"))),
        "the click is in the request log"
    );
}

#[tokio::test]
async fn the_page_api_refuses_what_lark_could_not_send() {
    let sb = start().await;
    let (status, body) = sb
        .post(
            "/api/messages",
            json!({"user": "mallory", "chat": "group", "text": "@abort-bot /help"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("mallory"))
    );
    let (status, _) = sb
        .post(
            "/api/messages",
            json!({"user": "alice", "chat": "group", "text": "   "}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = sb
        .post(
            "/api/clicks",
            json!({"user": "alice", "message_id": "om_nope", "value": {}}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(sb.project.requests().is_empty());
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_and_only_to_loopback_names() {
    let sb = start().await;
    let page = sb
        .http
        .get(format!("{}/", sb.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("abort-bot sandbox"));
    for asset in ["/assets/app.js", "/assets/card.js", "/assets/style.css"] {
        let r = sb
            .http
            .get(format!("{}{asset}", sb.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        assert!(!r.text().await.expect("body").is_empty(), "{asset}");
    }
    let state = sb.get("/api/state").await;
    assert_eq!(state["users"].as_array().map(Vec::len), Some(4));
    assert_eq!(state["items"].as_array().map(Vec::len), Some(12));
    assert_eq!(state["bot"]["open_id"], people::BOT_OPEN_ID);
    // A page on another site that resolves a name to 127.0.0.1 is refused.
    let rebound = sb
        .http
        .get(format!("{}/api/state", sb.base))
        .header("Host", "attacker.example:3000")
        .send()
        .await
        .expect("answer");
    assert_eq!(rebound.status(), 403);
}

#[tokio::test]
async fn reset_puts_the_items_back_and_empties_the_chat() {
    let sb = start().await;
    let sent = sb
        .say("alice", "group", "@abort-bot /abort 12345 repeat")
        .await;
    sb.reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    assert!(sb.project.item(12345).expect("item").aborted);
    let mut events = sb.events().await;
    let (status, _) = sb.post("/api/reset", json!({})).await;
    assert_eq!(status, 200);
    events
        .until(Duration::from_secs(5), |e| e["kind"] == "resync")
        .await;
    assert!(!sb.project.item(12345).expect("item").aborted);
    let state = sb.get("/api/state").await;
    assert_eq!(state["messages"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn the_sandbox_refuses_a_non_loopback_address() {
    let refused = Sandbox::start("0.0.0.0:0".parse().expect("addr")).await;
    assert!(matches!(refused, Err(SandboxError::NotLoopback(_))));
}

/// The first form in a card: its name, its select's name, and its submit button's name and
/// callback value.
fn picker_form(card: &Value) -> Option<(String, String, Value)> {
    let form = card["body"]["elements"]
        .as_array()?
        .iter()
        .find(|e| e["tag"] == "form")?;
    let mut select = None;
    let mut submit = None;
    let mut stack: Vec<&Value> = form["elements"].as_array()?.iter().collect();
    while let Some(e) = stack.pop() {
        match e["tag"].as_str() {
            Some("select_static") => select = e["name"].as_str().map(str::to_owned),
            Some("button")
                if e["form_action_type"] == "submit"
                    && submit.is_none()
                    && e["type"] != "default" =>
            {
                let value = e["behaviors"]
                    .as_array()?
                    .iter()
                    .find(|b| b["type"] == "callback")?["value"]
                    .clone();
                submit = Some((e["name"].as_str().unwrap_or_default().to_owned(), value));
            }
            _ => {}
        }
        for key in ["elements", "columns"] {
            if let Some(children) = e[key].as_array() {
                stack.extend(children.iter());
            }
        }
    }
    let (button, value) = submit?;
    Some((select?, button, value))
}

#[tokio::test]
async fn submitting_the_picker_form_as_lark_would_aborts_the_item_and_updates_the_card() {
    let sb = start().await;
    let mut events = sb.events().await;
    let sent = sb.say("alice", "group", "@abort-bot /abort 12345").await;
    let message_id = sent["message_id"].as_str().expect("id").to_owned();
    let picker = events
        .until(Duration::from_secs(10), |e| {
            e["kind"] == "message" && e["message"]["reply_to"] == message_id.as_str()
        })
        .await;
    let card_id = picker["message"]["id"].as_str().expect("id").to_owned();
    let (select, button, value) =
        picker_form(&picker["message"]["card"]).expect("the picker card has a form to submit");
    assert!(sb.project.requests_to("PUT", "/open_api/").is_empty());

    // Bob confirms: the click acts as him, with the form's values keyed by component name.
    let (status, answer) = sb
        .post(
            "/api/clicks",
            json!({"user": "bob", "message_id": card_id, "tag": "button", "name": button,
                   "value": value, "form_value": {select: "repeat"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], 200, "{answer}");
    let updated = events
        .until(Duration::from_secs(10), |e| {
            e["kind"] == "message"
                && e["message"]["id"] == card_id.as_str()
                && e["message"]["updates"] != 0
        })
        .await;
    let puts = sb.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, ABORT_12345);
    assert_eq!(puts[0].header("x-user-key"), Some("7012514555133820948"));
    assert_eq!(puts[0].body["reason_option"], "repeat");
    assert!(sb.project.item(12345).expect("item").aborted);
    assert_eq!(color(&updated["message"]["card"]), "green");
}

/// Every URL in a card.
fn urls_in(card: &Value) -> Vec<String> {
    text_of(card)
        .lines()
        .flat_map(|l| l.split(['(', ')', ' ', '\'', '"']))
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_card_links_to_the_item_on_the_sandbox_page_never_to_the_real_project() {
    let sb = start().await;
    let sent = sb
        .say("alice", "group", "@abort-bot /abort 12345 repeat")
        .await;
    let card = sb
        .reply_card(sent["message_id"].as_str().expect("id"))
        .await;
    let link = format!("{}/doc/story/detail/12345", sb.base);
    let urls = urls_in(&card);
    assert!(
        !urls.is_empty() && urls.iter().all(|u| u == &link),
        "every link in the card opens {link}: {urls:?}"
    );
    assert!(!text_of(&card).contains("project.feishu.cn"));

    // The link opens the sandbox's item page, which reads the item from the page API.
    let page = sb.http.get(&link).send().await.expect("item page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("/assets/item.js"), "{html}");
    let script = sb
        .http
        .get(format!("{}/assets/item.js", sb.base))
        .send()
        .await
        .expect("item.js");
    assert_eq!(script.status(), 200);
    let item = sb.get("/api/items/doc/story/12345").await;
    assert_eq!(item["id"], 12345);
    assert_eq!(item["aborted"], true);
    assert_eq!(item["reason_option"], "repeat");
    assert_eq!(item["simple_name"], "doc");
    assert_eq!(item["changed_by"], "Alice");
    // Named by project_key, as a link may name the space, it is the same item.
    let by_key = sb
        .get(&format!(
            "/api/items/{}/story/12345",
            item["project_key"].as_str().expect("project_key")
        ))
        .await;
    assert_eq!(by_key["id"], 12345);

    // A link to no item (or to the wrong type) is a 404 that says which, and nothing else.
    for path in [
        "/api/items/doc/story/99999",
        "/api/items/doc/issue/12345",
        "/api/items/doc/story/not-a-number",
    ] {
        let r = sb
            .http
            .get(format!("{}{path}", sb.base))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.expect("JSON");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no work item ")),
            "{path}: {body}"
        );
    }
    sb.stop().await;
}

#[tokio::test]
async fn the_request_log_labels_a_restore_as_one_though_its_path_says_abort() {
    let sb = start().await;
    for (text, action) in [
        ("@abort-bot /abort 12345 repeat", "abort"),
        ("@abort-bot /restore 12345 restart", "restore"),
    ] {
        let sent = sb.say("alice", "group", text).await;
        let card = sb
            .reply_card(sent["message_id"].as_str().expect("id"))
            .await;
        assert_eq!(color(&card), "green", "{text}: {}", text_of(&card));
        let state = sb.get("/api/state").await;
        let puts: Vec<&Value> = state["log"]
            .as_array()
            .expect("log")
            .iter()
            .filter(|l| l["method"] == "PUT" && l["path"] == ABORT_12345)
            .collect();
        let last = puts.last().expect("the PUT is in the log");
        assert_eq!(last["action"], action, "{text}: {last}");
        assert_eq!(last["code"], 0);
        let option = if action == "abort" {
            "is_aborted: true, reason_option: repeat"
        } else {
            "is_aborted: false, reason_option: restart"
        };
        assert_eq!(last["detail"], option);
    }
    assert!(!sb.project.item(12345).expect("item").aborted);
    sb.stop().await;
}

//! A real browser on the sandbox page: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) types a command into the chat, answers the bot's card, and sees the work
//! item change in the item panel. It clicks the card's Confirm or fails: it never types the
//! option instead. It leaves a screenshot at `target/sandbox-screenshot.png`.
//!
//! CI installs Chromium, so a missing browser fails this test instead of skipping it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use abort_bot::sandbox::Sandbox;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::sync::oneshot;

const PACKAGES: &str = "apt-get install -y chromium chromium-driver";

/// `CHROMIUM` / `CHROMEDRIVER` override Debian's paths.
fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// chromedriver, killed when the test ends however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver(chromedriver: &Path) -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{url}/status")).send().await
            && r.status().is_success()
        {
            return (driver, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start within 10 s");
}

async fn open_browser(driver_url: &str, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,1100",
                "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS set-up for the WebDriver client")
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("chromedriver opens a Chromium session")
}

/// Polls `check` every 100 ms for at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {secs} s");
}

async fn send(client: &Client, text: &str) {
    let input = client
        .find(Locator::Css("#composer-input"))
        .await
        .expect("composer");
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
    client
        .find(Locator::Css("#composer-send"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
}

async fn bot_cards(client: &Client) -> usize {
    client
        .find_all(Locator::Css(".msg-bot .lark-card"))
        .await
        .map_or(0, |v| v.len())
}

async fn item_aborted(client: &Client, id: u64) -> Option<String> {
    let row = client
        .find(Locator::Css(&format!("#items tr[data-id=\"{id}\"]")))
        .await
        .ok()?;
    row.attr("data-aborted").await.ok().flatten()
}

async fn save_screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("target dir");
    let path = dir.join(name);
    std::fs::write(&path, &png).expect("write screenshot");
    path
}

/// On the bot's latest card: pick `repeat` in its select and press Confirm. The card must
/// offer both; anything else fails the test.
async fn confirm_on_card(client: &Client) {
    let select = client
        .find(Locator::Css(".msg-bot:last-child .lark-card select"))
        .await
        .expect("the bot's card offers the options in a select");
    select
        .select_by_value("repeat")
        .await
        .expect("the select offers `repeat`");
    client
        .find(Locator::XPath(
            "(//div[contains(@class,'msg-bot')])[last()]//button[starts-with(normalize-space(.),'Confirm')]",
        ))
        .await
        .expect("the bot's card has a Confirm button")
        .click()
        .await
        .expect("click Confirm");
}

/// Waits until the page runs no animation (a changed row flashes for 2 s), so a screenshot
/// shows the settled page.
async fn animations_done(client: &Client) {
    eventually(10, "the page's animations finish", || async {
        client
            .execute("return document.getAnimations().length", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_aborts_an_item_from_the_chat_page_in_headless_chromium() {
    let chromium = tool("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("CHROMEDRIVER", "/usr/bin/chromedriver");
    assert!(
        chromium.exists() && chromedriver.exists(),
        "headless Chromium is needed for this test and is missing ({} / {}); install Debian's packages: {PACKAGES}",
        chromium.display(),
        chromedriver.display()
    );

    let sandbox = Sandbox::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("the sandbox starts");
    let page = sandbox.page_url();
    let project = sandbox.project();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(sandbox.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let profile = tempfile::tempdir().expect("profile dir");
    let (_driver, driver_url) = start_driver(&chromedriver).await;
    let client = open_browser(&driver_url, &chromium, profile.path()).await;

    client.goto(&page).await.expect("the page loads");
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("body[data-ready=\"true\"]"))
        .await
        .expect("the page loaded its state");
    assert_eq!(item_aborted(&client, 12345).await.as_deref(), Some("false"));

    // The renderer decodes the entities Lark decodes in markdown, and only as text: an
    // escaped `*` is a star, not emphasis; an escaped `&` keeps a typed entity as typed.
    let shown = client
        .execute(
            "return LarkCard.markdown(arguments[0]).textContent",
            vec![serde_json::json!(
                "PDF export (first attempt) &#42;x&#42; &#91;l&#93;(u) &#38;#40; &#60;at id=all&#62;"
            )],
        )
        .await
        .expect("the renderer runs");
    assert_eq!(
        shown.as_str(),
        Some("PDF export (first attempt) *x* [l](u) &#40; <at id=all>")
    );

    // Ask without an option: the bot answers with a card that offers them.
    send(&client, "@abort-bot /abort 12345").await;
    eventually(10, "the bot's card appears", || async {
        bot_cards(&client).await >= 1
    })
    .await;
    // The command named no option, so nothing but the card's Confirm can abort the item.
    assert!(!project.item(12345).expect("item").aborted);
    confirm_on_card(&client).await;

    eventually(
        15,
        "item 12345 shows as aborted in the item panel",
        || async { item_aborted(&client, 12345).await.as_deref() == Some("true") },
    )
    .await;
    let item = project.item(12345).expect("item");
    assert!(item.aborted);
    assert_eq!(
        item.reason_option, "repeat",
        "the option picked on the card"
    );
    eventually(10, "a green result card is shown", || async {
        client
            .find(Locator::Css(".msg-bot .lark-card .lc-tpl-green"))
            .await
            .is_ok()
    })
    .await;
    let log = client
        .find(Locator::Css("#log"))
        .await
        .expect("log")
        .text()
        .await
        .expect("log text");
    assert!(
        log.contains("PUT") && log.contains("/work_item/story/12345/abort"),
        "the request log lists the PUT: {log}"
    );
    assert!(
        log.contains("card.action.trigger"),
        "the click reached the bot as a card callback: {log}"
    );

    animations_done(&client).await;
    let shot = save_screenshot(&client, "sandbox-screenshot.png").await;

    // An error card: the state-flow ticket (20056).
    send(&client, "@abort-bot /abort 32001 cancel").await;
    eventually(10, "the state-flow card is shown", || async {
        client
            .find(Locator::Css(".msg-bot .lark-card .lc-tpl-red"))
            .await
            .is_ok()
    })
    .await;
    assert!(!project.item(32001).expect("item").aborted);
    animations_done(&client).await;
    let errors = save_screenshot(&client, "sandbox-screenshot-error.png").await;
    eprintln!("screenshots: {} and {}", shot.display(), errors.display());

    client.close().await.expect("browser closes");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

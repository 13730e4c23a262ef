//! A real browser on the sandbox page, on a laptop's screen (a 1440×860 viewport): headless
//! Chromium (Debian's `chromium` and `chromium-driver`) types a command into the chat, answers
//! the bot's card, undoes it from the result card, and sees the work item change in the item
//! panel. It clicks the card's Confirm and Undo or fails: it never types the option instead.
//! On the way it checks the layout (the request log keeps a usable height, follows new
//! requests, no column runs into another), the toasts (never more than three), the direct
//! chat's empty composer, the restore's label in the log and where a card's link leads (the
//! sandbox's own item page). It leaves a screenshot of the page after the abort and the
//! restore at `target/sandbox-screenshot.png` (`docs/sandbox.png` is a copy of it).
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

/// A laptop's screen: the page's viewport in every check below.
const WIDTH: u32 = 1440;
const HEIGHT: u32 = 860;
/// The most toasts the page shows at once.
const MAX_TOASTS: u64 = 3;

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
                "--disable-dev-shm-usage",
                format!("--window-size={WIDTH},{HEIGHT}"),
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

/// Sets the window so that the page's viewport is exactly `WIDTH`×`HEIGHT` (the window may
/// add a frame around it), and checks it is.
async fn laptop_viewport(client: &Client) {
    let inner = |client: &Client| {
        let client = client.clone();
        async move {
            let v = client
                .execute("return [window.innerWidth, window.innerHeight]", vec![])
                .await
                .expect("the page reports its viewport");
            (
                v[0].as_u64().expect("innerWidth"),
                v[1].as_u64().expect("innerHeight"),
            )
        }
    };
    let (w, h) = inner(client).await;
    if (w, h) != (u64::from(WIDTH), u64::from(HEIGHT)) {
        let (ow, oh) = client.get_window_size().await.expect("window size");
        let frame_w = ow.saturating_sub(w);
        let frame_h = oh.saturating_sub(h);
        client
            .set_window_size(
                WIDTH + u32::try_from(frame_w).expect("a small frame"),
                HEIGHT + u32::try_from(frame_h).expect("a small frame"),
            )
            .await
            .expect("resize the window");
    }
    assert_eq!(
        inner(client).await,
        (u64::from(WIDTH), u64::from(HEIGHT)),
        "the viewport is a laptop's 1440×860"
    );
}

async fn composer_value(client: &Client) -> String {
    client
        .find(Locator::Css("#composer-input"))
        .await
        .expect("composer")
        .prop("value")
        .await
        .expect("composer value")
        .unwrap_or_default()
}

async fn open_chat(client: &Client, tab: &str) {
    client
        .find(Locator::Css(tab))
        .await
        .expect("chat tab")
        .click()
        .await
        .expect("open the chat");
}

/// The request log's rows as the page shows them, newest last.
async fn log_rows(client: &Client) -> Vec<String> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('#log .log-row')).map(r => r.innerText)",
            vec![],
        )
        .await
        .expect("log rows");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels (`abort`, `restore`) the log puts on each Feishu Project PUT `…/abort`.
async fn put_labels(client: &Client) -> Vec<String> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('#log .log-row'))
               .filter(r => r.querySelector('.log-method').textContent === 'PUT')
               .map(r => { const a = r.querySelector('.log-action'); return a ? a.textContent : ''; })",
            vec![],
        )
        .await
        .expect("PUT labels");
    serde_json::from_value(v).expect("a list of labels")
}

/// Where the request log is, how it is scrolled, and every place where something in a row
/// runs out of its column or into another.
async fn log_layout(client: &Client) -> serde_json::Value {
    client
        .execute(
            r#"
            const log = document.getElementById("log");
            const box = log.getBoundingClientRect();
            const rows = Array.from(log.querySelectorAll(".log-row"));
            const textBox = (el) => {
              const r = document.createRange();
              r.selectNodeContents(el);
              return r.getBoundingClientRect();
            };
            const meets = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
              && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
            const problems = [];
            rows.forEach((row, n) => {
              const cells = Array.from(row.children).filter((c) => !c.classList.contains("log-detail"));
              for (const c of cells) {
                const cell = c.getBoundingClientRect();
                const text = textBox(c);
                if (text.width > 0 && (text.left < cell.left - 0.5 || text.right > cell.right + 0.5)) {
                  problems.push(`row ${n}: the text of .${c.className.split(" ")[0]} runs out of its column`);
                }
              }
              for (let i = 0; i < cells.length; i++) {
                for (let j = i + 1; j < cells.length; j++) {
                  if (meets(cells[i].getBoundingClientRect(), cells[j].getBoundingClientRect())) {
                    problems.push(`row ${n}: .${cells[i].className.split(" ")[0]} overlaps .${cells[j].className.split(" ")[0]}`);
                  }
                }
              }
              const path = row.querySelector(".log-path");
              const status = row.querySelector(".log-status");
              if (!path || !status) problems.push(`row ${n}: no path or no status`);
              else if (meets(textBox(path), textBox(status))) problems.push(`row ${n}: path and status overlap`);
            });
            const last = rows.length ? rows[rows.length - 1].getBoundingClientRect() : null;
            return {
              top: box.top, bottom: box.bottom, height: box.height,
              viewport: window.innerHeight,
              rows: rows.length,
              overflows: log.scrollHeight > log.clientHeight,
              from_end: log.scrollHeight - log.scrollTop - log.clientHeight,
              last_bottom: last ? last.bottom : null,
              problems,
            };
            "#,
            vec![],
        )
        .await
        .expect("the log's layout")
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// The log keeps a usable height on screen, shows its newest row, and no cell runs into
/// another.
async fn check_log_layout(client: &Client) {
    let l = log_layout(client).await;
    assert!(
        num(&l, "height") >= 200.0,
        "the request log keeps a usable height: {l}"
    );
    assert!(
        num(&l, "top") >= 0.0 && num(&l, "bottom") <= num(&l, "viewport"),
        "the whole request log is on screen, its bottom included: {l}"
    );
    assert!(
        num(&l, "rows") >= 10.0 && l["overflows"] == json!(true),
        "enough requests that the log scrolls: {l}"
    );
    assert!(
        num(&l, "from_end") <= 2.0 && num(&l, "last_bottom") <= num(&l, "bottom") + 1.0,
        "the log is scrolled to its newest row: {l}"
    );
    assert_eq!(l["problems"], json!([]), "log rows: {l}");
}

async fn log_scroll(client: &Client, to: &str) -> f64 {
    client
        .execute(
            &format!("const l = document.getElementById('log'); {to}; return l.scrollTop;"),
            vec![],
        )
        .await
        .expect("scroll the log")
        .as_f64()
        .expect("scrollTop")
}

/// Counts the toasts as they come and go: the most shown at once, and how many came.
async fn watch_toasts(client: &Client) {
    client
        .execute(
            "const area = document.getElementById('toasts');
             window.toastWatch = { most: area.childElementCount, came: 0 };
             new MutationObserver((changes) => {
               for (const c of changes) window.toastWatch.came += c.addedNodes.length;
               window.toastWatch.most = Math.max(window.toastWatch.most, area.childElementCount);
             }).observe(area, { childList: true });",
            vec![],
        )
        .await
        .expect("watch the toasts");
}

async fn toast_watch(client: &Client) -> (u64, u64) {
    let v = client
        .execute("return window.toastWatch", vec![])
        .await
        .expect("toast counts");
    (
        v["most"].as_u64().expect("most"),
        v["came"].as_u64().expect("came"),
    )
}

/// The href of each link in the bot's cards.
async fn card_links(client: &Client) -> Vec<String> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll('.msg-bot .lark-card a')).map(a => a.href)",
            vec![],
        )
        .await
        .expect("card links");
    serde_json::from_value(v).expect("a list of links")
}

/// Every string in a card's JSON.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

async fn click_button(client: &Client, xpath: &str, what: &str) {
    client
        .find(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {what}: {e}"));
}

/// On the bot's latest card: pick `option` in the card's select and press the button whose
/// label starts with `button`.
async fn submit_on_card(client: &Client, option: &str, button: &str) {
    let select = client
        .find(Locator::Css(".msg-bot:last-child .lark-card select"))
        .await
        .expect("the bot's card offers the options in a select");
    select
        .select_by_value(option)
        .await
        .unwrap_or_else(|e| panic!("the select offers `{option}`: {e}"));
    click_button(
        client,
        &format!(
            "(//div[contains(@class,'msg-bot')])[last()]//button[starts-with(normalize-space(.),'{button}')]"
        ),
        &format!("the bot's card has a {button} button"),
    )
    .await;
}

async fn toasts_shown(client: &Client) -> usize {
    client
        .find_all(Locator::Css("#toasts .toast"))
        .await
        .map_or(usize::MAX, |v| v.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_aborts_and_restores_an_item_from_the_chat_page_on_a_laptop_screen() {
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
    let lark = sandbox.lark();
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
    laptop_viewport(&client).await;
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

    // The group's composer starts with the bot's mention; the direct chat needs none and
    // starts empty, and what was typed moves along without it.
    assert_eq!(composer_value(&client).await, "@abort-bot ");
    open_chat(&client, "#tab-p2p").await;
    assert_eq!(
        composer_value(&client).await,
        "",
        "the direct chat's composer is empty"
    );
    let input = client
        .find(Locator::Css("#composer-input"))
        .await
        .expect("composer");
    input.send_keys("/help").await.expect("type");
    open_chat(&client, "#tab-group").await;
    assert_eq!(composer_value(&client).await, "@abort-bot /help");
    open_chat(&client, "#tab-p2p").await;
    assert_eq!(composer_value(&client).await, "/help");
    input.clear().await.expect("clear");
    open_chat(&client, "#tab-group").await;
    assert_eq!(composer_value(&client).await, "@abort-bot ");

    // Ask without an option: the bot answers with a card that offers them.
    send(&client, "@abort-bot /abort 12345").await;
    eventually(10, "the bot's card appears", || async {
        bot_cards(&client).await >= 1
    })
    .await;
    // The command named no option, so nothing but the card's Confirm can abort the item.
    assert!(!project.item(12345).expect("item").aborted);
    submit_on_card(&client, "repeat", "Confirm").await;

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

    // The result card links to the item on the sandbox's own page, and so does every URL
    // in every card the bot sent (the "Open in Feishu Project" button's included).
    let item_link = format!("{page}doc/story/detail/12345");
    let links = card_links(&client).await;
    assert!(
        !links.is_empty() && links.iter().all(|l| l == &item_link),
        "the card's links open the sandbox's item page {item_link}: {links:?}"
    );
    let mut sent = Vec::new();
    for m in lark.state().messages.values() {
        strings(&m.card, &mut sent);
    }
    let urls: Vec<&String> = sent.iter().filter(|s| s.contains("://")).collect();
    assert!(
        !urls.is_empty() && urls.iter().all(|u| u.contains(&item_link)),
        "every URL in the bot's cards leads to the sandbox: {urls:?}"
    );

    // Undo on the result card restores the item, as whoever clicks, and the log labels that
    // PUT `…/abort` a restore (its body says `is_aborted: false`).
    submit_on_card(&client, "restart", "Undo").await;
    eventually(
        15,
        "item 12345 shows as active again in the item panel",
        || async { item_aborted(&client, 12345).await.as_deref() == Some("false") },
    )
    .await;
    let item = project.item(12345).expect("item");
    assert!(!item.aborted);
    assert_eq!(item.reason_option, "restart");
    eventually(10, "the log labels the abort and the restore", || async {
        put_labels(&client).await == ["abort", "restore"]
    })
    .await;
    eventually(10, "the card shows the restore", || async {
        client
            .find(Locator::XPath(
                "(//div[contains(@class,'msg-bot')])[last()]//div[contains(@class,'lc-tpl-green')]//*[starts-with(normalize-space(.),'Restored')]",
            ))
            .await
            .is_ok()
    })
    .await;

    // On the laptop's screen the log is usable, scrolled to the newest request, and its
    // columns stay apart.
    check_log_layout(&client).await;

    // Toasts fade, and the screenshot shows the settled page.
    eventually(10, "the toasts fade", || async {
        toasts_shown(&client).await == 0
    })
    .await;
    animations_done(&client).await;
    let shot = save_screenshot(&client, "sandbox-screenshot.png").await;

    // The log follows new requests while at its end, and stays put while scrolled up.
    let rows = log_rows(&client).await.len();
    assert_eq!(log_scroll(&client, "l.scrollTop = 0").await, 0.0);
    send(&client, "@abort-bot /help").await;
    eventually(10, "the /help requests reach the log", || async {
        log_rows(&client).await.len() > rows
    })
    .await;
    assert_eq!(
        log_scroll(&client, "").await,
        0.0,
        "scrolled up to read, the log stays where it is"
    );
    log_scroll(&client, "l.scrollTop = l.scrollHeight").await;
    let rows = log_rows(&client).await.len();
    send(&client, "@abort-bot /help").await;
    eventually(10, "the second /help's requests reach the log", || async {
        log_rows(&client).await.len() > rows
    })
    .await;
    check_log_layout(&client).await;

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

    // Four clicks in a row, four different toasts: never more than three on screen.
    let items = [12346u64, 12347, 12350, 22001];
    for (n, id) in items.iter().enumerate() {
        send(&client, &format!("@abort-bot /abort {id}")).await;
        eventually(10, "the picker appears", || async {
            client
                .find_all(Locator::XPath(
                    "//div[contains(@class,'msg-bot')]//button[starts-with(normalize-space(.),'Confirm')]",
                ))
                .await
                .map_or(0, |v| v.len())
                > n
        })
        .await;
    }
    watch_toasts(&client).await;
    let pickers = client
        .find_all(Locator::XPath(
            "//div[contains(@class,'msg-bot')][.//button[starts-with(normalize-space(.),'Confirm')]]",
        ))
        .await
        .expect("the pickers");
    assert_eq!(pickers.len(), items.len());
    for picker in &pickers {
        picker
            .find(Locator::Css("select"))
            .await
            .expect("the picker's select")
            .select_by_value("repeat")
            .await
            .expect("`repeat`");
        picker
            .find(Locator::XPath(
                ".//button[starts-with(normalize-space(.),'Confirm')]",
            ))
            .await
            .expect("the picker's Confirm")
            .click()
            .await
            .expect("click Confirm");
    }
    eventually(20, "every item is aborted", || async {
        items
            .iter()
            .all(|id| project.item(*id).is_some_and(|i| i.aborted))
    })
    .await;
    eventually(10, "every click's toast came", || async {
        toast_watch(&client).await.1 >= 4
    })
    .await;
    let (most, came) = toast_watch(&client).await;
    eprintln!("toasts: {came} came, at most {most} at once");
    assert!(
        most <= MAX_TOASTS,
        "{came} toasts came, at most {MAX_TOASTS} at once, not {most}"
    );
    assert!(toasts_shown(&client).await <= usize::try_from(MAX_TOASTS).expect("small"));

    // The card's link opens the item on the sandbox's page, with its state now.
    client.goto(&item_link).await.expect("the item page loads");
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("body[data-ready=\"true\"]"))
        .await
        .expect("the item page loaded the item");
    let text = |css: &'static str| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Css(css))
                .await
                .expect(css)
                .text()
                .await
                .expect("text")
        }
    };
    assert_eq!(text("#item-id").await, "#12345");
    assert_eq!(
        text("#item-name").await,
        project.item(12345).expect("item").name
    );
    assert_eq!(
        client
            .find(Locator::Css("#item-state"))
            .await
            .expect("state")
            .attr("data-aborted")
            .await
            .expect("attr")
            .as_deref(),
        Some("false")
    );
    assert!(text("#item-fields").await.contains("restart"));
    // A link to no item says so.
    client
        .goto(&format!("{page}doc/story/detail/99999"))
        .await
        .expect("the item page loads");
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("body[data-ready=\"true\"]"))
        .await
        .expect("the item page answered");
    assert!(
        text("#item-missing")
            .await
            .contains("no work item 99999 of type `story` in space `doc`")
    );

    client.close().await.expect("browser closes");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

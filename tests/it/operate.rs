//! What an operator watches and runs: the metrics (as the README names them and as the
//! Grafana dashboard queries them), and `abort-bot check` and `serve` as real processes.

use std::collections::BTreeSet;
use std::time::Duration;

use abort_bot::emulator::project::{Endpoint, Fault};
use serde_json::Value;

use super::helpers::*;
use super::store_safety::{Bot, base_env};

async fn scrape(app: &TestApp) -> String {
    app.http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Every metric name a scrape can be queried by: each family's samples (`_total` of a
/// counter, `_bucket`/`_sum`/`_count` of a histogram, a gauge as it is), read from the
/// `# TYPE` lines, which the bot writes for a family even before it has a sample.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The `abort_bot_…` names an expression refers to.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("abort_bot_"))
        .map(str::to_owned)
        .collect()
}

fn dashboard() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/abort-bot.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

#[tokio::test]
async fn the_dashboard_is_grafana_json_and_queries_only_metrics_the_bot_exports() {
    let app = spawn_app().await;
    app.say_final(ALICE, Chat::Group, "/abort 12345 repeat")
        .await;
    let names = exported(&scrape(&app).await);
    assert!(
        names.contains("abort_bot_inbound_requests_total"),
        "{names:?}"
    );

    let d = dashboard();
    assert_eq!(d["uid"], "abort-bot");
    assert!(d["title"].is_string() && d["schemaVersion"].as_u64() >= Some(30));
    let variables = d["templating"]["list"].as_array().expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "{title}: ids are unique"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: a panel with no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().expect("refId")), "{title}");
            let expr = t["expr"].as_str().expect("expr");
            let in_expr = metric_names(expr);
            assert!(!in_expr.is_empty(), "{title}: {expr} names no metric");
            for name in in_expr {
                assert!(
                    names.contains(&name),
                    "{title}: {name} is not exported by the bot"
                );
                used.insert(name);
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
    // What the dashboard is for: ingest rate, backlog, outcome mix, upstream errors and
    // latency, reconnects.
    for needed in [
        "abort_bot_inbound_requests_total",
        "abort_bot_inbox_pending",
        "abort_bot_inbox_oldest_age_seconds",
        "abort_bot_outbox_waiting",
        "abort_bot_outcomes_total",
        "abort_bot_commands_total",
        "abort_bot_upstream_call_seconds_count",
        "abort_bot_upstream_call_seconds_bucket",
        "abort_bot_long_connection_reconnects_total",
        "abort_bot_long_connection_state",
        "abort_bot_cache_lookups_total",
        "abort_bot_token_refreshes_total",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}

#[tokio::test]
async fn every_exported_metric_is_named_in_the_readme() {
    let app = spawn_app().await;
    app.say_final(ALICE, Chat::Group, "/abort 12345 repeat")
        .await;
    let text = scrape(&app).await;
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
        .collect();
    assert!(families.len() >= 20, "{families:?}");
    for family in families {
        assert!(readme.contains(family), "README does not name {family}");
    }
}

#[tokio::test]
async fn caches_tokens_commands_and_upstream_outcomes_are_counted() {
    let app = spawn_app().await;
    app.say_final(ALICE, Chat::Group, "/abort 12345 repeat")
        .await;
    app.say_final(ALICE, Chat::Group, "/restore 12345 restart")
        .await;
    // 20007: the item is already aborted, a refusal by Feishu Project.
    app.say_final(ALICE, Chat::Group, "/abort 12348 cancel")
        .await;
    app.say_final(ALICE, Chat::Group, "/help").await;
    app.say_final(ALICE, Chat::Group, "/abort 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 cancel")
        .await;

    // One token per platform for the whole run.
    assert_eq!(
        app.counter(r#"abort_bot_token_refreshes_total{platform="lark"}"#)
            .await,
        1
    );
    assert_eq!(
        app.counter(r#"abort_bot_token_refreshes_total{platform="feishu_project"}"#)
            .await,
        1
    );
    // Alice's user_key and the space are looked up once, then found in the caches.
    for cache in ["project_user_keys", "project_spaces"] {
        let miss = app
            .counter(&format!(
                r#"abort_bot_cache_lookups_total{{cache="{cache}",result="miss"}}"#
            ))
            .await;
        let hit = app
            .counter(&format!(
                r#"abort_bot_cache_lookups_total{{cache="{cache}",result="hit"}}"#
            ))
            .await;
        assert!(miss >= 1 && hit >= 2, "{cache}: {hit} hits, {miss} misses");
    }
    assert_eq!(
        app.counter(r#"abort_bot_commands_total{command="abort",result="answered"}"#)
            .await,
        2
    );
    assert_eq!(
        app.counter(r#"abort_bot_commands_total{command="abort",result="refused"}"#)
            .await,
        1
    );
    assert_eq!(
        app.counter(r#"abort_bot_commands_total{command="restore",result="answered"}"#)
            .await,
        1
    );
    assert_eq!(
        app.counter(r#"abort_bot_commands_total{command="help",result="answered"}"#)
            .await,
        1
    );
    let put = "/open_api/:project_key/work_item/:type/:id/abort";
    assert_eq!(
        app.counter(&format!(
            r#"abort_bot_upstream_call_seconds_count{{service="feishu_project",endpoint="{put}",outcome="ok"}}"#
        ))
        .await,
        2
    );
    assert_eq!(
        app.counter(&format!(
            r#"abort_bot_upstream_call_seconds_count{{service="feishu_project",endpoint="{put}",outcome="refused"}}"#
        ))
        .await,
        1,
        "{}",
        scrape(&app).await
    );
}

#[tokio::test]
async fn upstream_outages_are_told_apart_from_refusals() {
    let app = spawn_app().await;
    app.project.state().failing = true;
    let card = app
        .say_final(ALICE, Chat::Group, "/abort 12345 repeat")
        .await;
    assert_eq!(card_color(&card), "orange", "{}", card_text(&card));
    let text = scrape(&app).await;
    let server_errors: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("abort_bot_upstream_call_seconds_count{service=\"feishu_project\"")
                && l.contains("outcome=\"server_error\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(server_errors >= 1, "{text}");
    assert!(!text.contains("outcome=\"refused\""), "{text}");
}

/// Polls a sample of `/metrics` until it has `value` (bounded: 10 s).
async fn wait_for_sample(app: &TestApp, sample: &str, value: u64) {
    for _ in 0..500 {
        if app.counter(sample).await == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{sample} never became {value}: {}",
        app.counter(sample).await
    );
}

#[tokio::test]
async fn the_inbox_gauges_show_an_event_still_at_work() {
    let app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(4000)));
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    // The gauges are read from the store while the event is being worked on.
    wait_for_sample(&app, "abort_bot_inbox_pending", 1).await;
    app.reply_to(&message_id).await;
    app.settled().await;
    wait_for_sample(&app, "abort_bot_inbox_pending", 0).await;
    assert_eq!(app.counter("abort_bot_inbox_oldest_age_seconds").await, 0);
}

#[tokio::test]
async fn the_long_connection_state_is_a_gauge() {
    let app = spawn_with(Options {
        websocket: true,
        ..Options::default()
    })
    .await;
    let ws = app.lark.ws();
    wait_until("connection open", || ws.open_connections() == 1).await;
    wait_for_sample(&app, "abort_bot_long_connection_state", 1).await;
    ws.drop_connections();
    wait_until("connection 2 open", || {
        ws.connections() >= 2 && ws.open_connections() == 1
    })
    .await;
    wait_for_sample(&app, "abort_bot_long_connection_state", 1).await;
    assert!(
        app.counter("abort_bot_long_connection_reconnects_total")
            .await
            >= 1
    );
    // The endpoint refused for good (too many connections): stopped, counted by its reason.
    ws.push_endpoint_fault(1_000_040_350);
    ws.drop_connections();
    wait_for_sample(&app, "abort_bot_long_connection_state", 2).await;
    assert_eq!(
        app.counter(r#"abort_bot_long_connection_stopped_total{reason="endpoint_refused"}"#)
            .await,
        1
    );
}

/// `abort-bot check` with `env`, run to its end: exit status and what it printed.
async fn run_check(env: Vec<(&'static str, String)>) -> (bool, Vec<String>, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut check = Bot::start("check", &env);
        let status = check.exited();
        (status.success(), check.stdout(), check.stderr())
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_summary_warns_about_a_missing_encrypt_key_and_says_what_next() {
    let (_lark, lark_addr, _project, project_addr) = emulators().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bot.db");
    let env = base_env(
        &format!("http://{lark_addr}"),
        &format!("http://{project_addr}"),
        &format!("sqlite://{}", db.display()),
    );
    let (ok, out, err) = run_check(env.clone()).await;
    assert!(ok, "a warning does not fail check: {out:?} {err:?}");
    let text = out.join("\n");
    for line in [
        "  mode            webhook: Lark calls POST /lark/events and /lark/cards",
        "  listening on    127.0.0.1:0 (/lark/events, /lark/cards, /healthz, /readyz, /metrics)",
        &format!("  store           SQLite file {}", db.display()),
        &format!("  Lark app        {APP_ID} at http://{lark_addr}/"),
        "  events          plain, checked by the verification token only",
        "lark tenant_access_token: ok",
        "feishu project plugin_token: ok",
        "Everything checked works. Next:",
    ] {
        assert!(
            out.iter().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    let warnings: Vec<&String> = out.iter().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("LARK_ENCRYPT_KEY is empty"), "{text}");
    assert!(
        text.contains("/lark/events") && text.contains("/help"),
        "{text}"
    );
    assert!(!text.contains("Settings {"), "no debug dump: {text}");
    for secret in [APP_SECRET, VT, PLUGIN_SECRET] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }

    // With the key set, no warning; with a wrong plugin secret, a problem and exit 1.
    let mut env = env;
    env.push(("LARK_ENCRYPT_KEY", EK.into()));
    env.push(("FEISHU_PROJECT_PLUGIN_SECRET", "wrong-plugin-secret".into()));
    let (ok, out, _) = run_check(env).await;
    let text = out.join("\n");
    assert!(!ok, "{text}");
    assert!(
        out.iter()
            .any(|l| l == "  events          encrypted and signed (LARK_ENCRYPT_KEY is set)"),
        "{text}"
    );
    assert!(!text.contains("warning:"), "{text}");
    let problems: Vec<&String> = out.iter().filter(|l| l.starts_with("problem:")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].contains("FEISHU_PROJECT_PLUGIN_SECRET"),
        "{text}"
    );
    assert!(
        text.contains("Fix them and run `abort-bot check` again"),
        "{text}"
    );
    assert!(
        !text.contains("wrong-plugin-secret") && !text.contains(EK),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_configuration_names_every_variable_and_what_next() {
    let (ok, out, _) = run_check(Vec::new()).await;
    let text = out.join("\n");
    assert!(!ok);
    for name in [
        "LARK_APP_ID",
        "LARK_APP_SECRET",
        "LARK_VERIFICATION_TOKEN",
        "FEISHU_PROJECT_PLUGIN_ID",
        "FEISHU_PROJECT_PLUGIN_SECRET",
    ] {
        assert!(
            out.iter()
                .any(|l| l.starts_with(&format!("problem: {name}:"))),
            "{name}: {text}"
        );
    }
    assert!(text.contains("then run `abort-bot check` again"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let (lark, lark_addr, _project, project_addr) = emulators().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = base_env(
        &format!("http://{lark_addr}"),
        &format!("http://{project_addr}"),
        &format!("sqlite://{}", dir.path().join("bot.db").display()),
    );
    env.push(("ABORT_BOT_MODE", "websocket".into()));
    // The long connection logs at INFO and WARN: levels are what text logs colour.
    lark.ws()
        .set_client_config(serde_json::json!({"PingInterval": 1, "ReconnectCount": -1,
                                              "ReconnectInterval": 1, "ReconnectNonce": 0}));
    let ws = lark.ws();
    let (out, err) = tokio::task::spawn_blocking(move || {
        let mut serve = Bot::start("serve", &env);
        serve.listening();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !serve
            .stdout()
            .iter()
            .any(|l| l.contains("long connection open"))
        {
            assert!(std::time::Instant::now() < deadline, "{:?}", serve.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
        ws.drop_connections();
        while !serve.stdout().iter().any(|l| l.contains(" WARN ")) {
            assert!(std::time::Instant::now() < deadline, "{:?}", serve.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
        (serve.stdout(), serve.stderr())
    })
    .await
    .expect("join");
    assert!(out.iter().any(|l| l.contains(" INFO ")), "{out:?}");
    for line in out.iter().chain(&err) {
        assert!(!line.contains('\u{1b}'), "a colour code: {line:?}");
    }
}

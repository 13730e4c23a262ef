//! The audit trail. In both stores: lines are written with the outcome they record, once,
//! filtered and paged oldest first, and purged after their retention. Then a full scenario
//! against the real bot (typed commands, clicks, a PUT whose answer was lost, a retried reply)
//! and the real binary's `abort-bot audit` over the store it left, in every format, with
//! every filter, while the bot still holds its SQLite file.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use abort_bot::emulator::lark::Endpoint as LarkEndpoint;
use abort_bot::emulator::project::{Endpoint, Fault};
use abort_bot::store::{
    Accepted, AuditQuery, AuditReader, AuditRecord, Claim, ClaimRequest, NewDelivery, RedisUrl,
    Store,
};
use serde_json::{Value, json};

use super::helpers::*;
use super::redis_server::RedisServer;

enum Backing {
    Sqlite(tempfile::TempDir),
    Redis(Arc<RedisServer>),
}

impl Backing {
    async fn open(&self) -> Store {
        match self {
            Backing::Sqlite(dir) => Store::open(&dir.path().join("store.db")).expect("sqlite"),
            Backing::Redis(server) => {
                let url = RedisUrl::parse(&server.url()).expect("redis url");
                Store::open_redis(&url, Duration::from_secs(3600))
                    .await
                    .expect("redis")
            }
        }
    }
}

/// Runs each scenario once per backend.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    super::$name(super::Backing::Sqlite(dir)).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = super::RedisServer::start();
                    super::$name(super::Backing::Redis(server)).await;
                }
            )*
        }
    };
}

both_stores!(
    lines_are_stored_with_the_answer_and_kept_once,
    a_card_result_carries_its_lines_and_a_refusal_is_recorded_alone,
    pages_follow_time_then_key_and_filters_apply,
    purge_forgets_only_lines_older_than_the_cut,
);

fn line(key: &str, at_ms: i64, chat: &str, actor: &str) -> AuditRecord {
    AuditRecord {
        key: key.into(),
        at_ms,
        chat_id: Some(chat.into()),
        actor_open_id: actor.into(),
        actor_name: None,
        project_key: "p".into(),
        work_item_type: "story".into(),
        work_item_id: "1".into(),
        work_item_name: Some("导出 PDF".into()),
        action: "abort".into(),
        option: "test".into(),
        reason: "why, \"quoted\"".into(),
        outcome: "done".into(),
        code: Some(0),
        source: "message".into(),
        source_id: "om_1".into(),
    }
}

fn everything() -> AuditQuery {
    AuditQuery {
        since_ms: 0,
        chat_id: None,
        actor_open_id: None,
        after: None,
        limit: 1000,
    }
}

async fn all_keys(store: &Store, query: AuditQuery) -> Vec<String> {
    store
        .audit_page(query)
        .await
        .expect("audit page")
        .into_iter()
        .map(|l| l.key)
        .collect()
}

async fn lines_are_stored_with_the_answer_and_kept_once(b: Backing) {
    let s = b.open().await;
    let Accepted::New(id) = s
        .accept_message("ev1".into(), "om_1".into(), "{}".into(), 1_000)
        .await
        .expect("accept")
    else {
        panic!("a new message");
    };
    let answer = NewDelivery {
        key: "message:om_1".into(),
        payload: "{}".into(),
    };
    let lines = vec![
        line("message:om_1:0", 1_000_500, "oc_1", "ou_a"),
        line("message:om_1:1", 1_000_500, "oc_1", "ou_a"),
    ];
    s.finish_delivering(id, answer.clone(), lines.clone(), 1_000_500)
        .await
        .expect("finish");
    let stored = s.audit_page(everything()).await.expect("page");
    assert_eq!(stored, lines, "every field as written");
    assert!(s.pending(10).await.expect("pending").is_empty());
    assert_eq!(s.deliveries_waiting().await.expect("waiting"), 1);
    // A second finish of the same work (a re-run whose first finish was not seen) doubles
    // nothing.
    s.finish_delivering(id, answer, lines, 1_000_900)
        .await
        .expect("finish again");
    assert_eq!(
        all_keys(&s, everything()).await,
        ["message:om_1:0", "message:om_1:1"]
    );
    // A reopened store still has them.
    drop(s);
    let s = b.open().await;
    assert_eq!(all_keys(&s, everything()).await.len(), 2);
}

async fn a_card_result_carries_its_lines_and_a_refusal_is_recorded_alone(b: Backing) {
    let s = b.open().await;
    let claim = ClaimRequest {
        nonce: "n1".into(),
        click_id: "click:e1".into(),
        kind: "go".into(),
        by_open_id: "ou_b".into(),
        now: 100,
        expires_at: 10_000,
        stale_before: 0,
    };
    assert_eq!(s.claim_card(claim).await.expect("claim"), Claim::Granted);
    s.finish_card(
        "n1".into(),
        "{\"card\":1}".into(),
        vec![line("click:e1:0", 100_000, "oc_1", "ou_b")],
    )
    .await
    .expect("finish card");
    // A result for a claim that is gone (purged) still records what was done.
    s.finish_card(
        "gone".into(),
        "{}".into(),
        vec![line("click:e2:0", 100_001, "oc_1", "ou_b")],
    )
    .await
    .expect("finish a forgotten card");
    s.record_audit(vec![line("click:e3:0", 100_002, "oc_1", "ou_c")])
        .await
        .expect("record");
    s.record_audit(Vec::new()).await.expect("nothing to record");
    assert_eq!(
        all_keys(&s, everything()).await,
        ["click:e1:0", "click:e2:0", "click:e3:0"]
    );
}

async fn pages_follow_time_then_key_and_filters_apply(b: Backing) {
    let s = b.open().await;
    // Written out of order; three share one millisecond (one command's items).
    let lines = vec![
        line("message:c:0", 3_000, "oc_2", "ou_a"),
        line("message:a:1", 1_000, "oc_1", "ou_a"),
        line("message:a:0", 1_000, "oc_1", "ou_a"),
        line("click:b:0", 2_000, "oc_1", "ou_b"),
        line("message:a:2", 1_000, "oc_1", "ou_a"),
        line("message:d:0", 4_000, "oc_2", "ou_b"),
    ];
    s.record_audit(lines).await.expect("record");
    let oldest_first = [
        "message:a:0",
        "message:a:1",
        "message:a:2",
        "click:b:0",
        "message:c:0",
        "message:d:0",
    ];
    assert_eq!(all_keys(&s, everything()).await, oldest_first);
    // Pages of two, each after the last line of the one before: all lines, once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .audit_page(AuditQuery {
                after: after.take(),
                limit: 2,
                ..everything()
            })
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some((last.at_ms, last.key.clone()));
        paged.extend(page.into_iter().map(|l| l.key));
    }
    assert_eq!(paged, oldest_first);
    let since = AuditQuery {
        since_ms: 2_000,
        ..everything()
    };
    assert_eq!(
        all_keys(&s, since).await,
        ["click:b:0", "message:c:0", "message:d:0"]
    );
    let chat = AuditQuery {
        chat_id: Some("oc_2".into()),
        ..everything()
    };
    assert_eq!(all_keys(&s, chat).await, ["message:c:0", "message:d:0"]);
    let user = AuditQuery {
        actor_open_id: Some("ou_b".into()),
        ..everything()
    };
    assert_eq!(all_keys(&s, user).await, ["click:b:0", "message:d:0"]);
    // Filters and paging together: one matching line per page.
    let both = AuditQuery {
        actor_open_id: Some("ou_a".into()),
        chat_id: Some("oc_1".into()),
        since_ms: 1_000,
        after: Some((1_000, "message:a:0".into())),
        limit: 1,
    };
    assert_eq!(all_keys(&s, both).await, ["message:a:1"]);
}

async fn purge_forgets_only_lines_older_than_the_cut(b: Backing) {
    let s = b.open().await;
    let lines = (0..5)
        .map(|i| line(&format!("message:m{i}:0"), 1_000 * i, "oc_1", "ou_a"))
        .collect();
    s.record_audit(lines).await.expect("record");
    assert_eq!(s.purge_audit(3_000).await.expect("purge"), 3);
    assert_eq!(
        all_keys(&s, everything()).await,
        ["message:m3:0", "message:m4:0"]
    );
    assert_eq!(s.purge_audit(3_000).await.expect("purge again"), 0);
}

#[tokio::test]
async fn a_read_only_reader_sees_what_the_writer_committed_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bot.db");
    assert!(
        AuditReader::open_sqlite(&path).is_err(),
        "no file: an error, not a new empty database"
    );
    assert!(!path.exists());
    let s = Store::open(&path).expect("sqlite");
    let reader = AuditReader::open_sqlite(&path).expect("read-only beside the writer");
    assert!(reader.page(everything()).await.expect("page").is_empty());
    s.record_audit(vec![line("message:x:0", 5, "oc_1", "ou_a")])
        .await
        .expect("record");
    let seen: Vec<String> = reader
        .page(everything())
        .await
        .expect("page")
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(seen, ["message:x:0"]);
    // The writer goes on writing while the reader is open.
    s.record_audit(vec![line("message:y:0", 6, "oc_1", "ou_a")])
        .await
        .expect("record beside a reader");
    assert_eq!(reader.page(everything()).await.expect("page").len(), 2);
}

// ---------------------------------------------------------------------------------------
// A full scenario, then the binary.

/// The contract's keys of a JSON line.
const KEYS: [&str; 14] = [
    "time",
    "actor_open_id",
    "actor_name",
    "project_key",
    "work_item_type",
    "work_item_id",
    "work_item_name",
    "action",
    "option",
    "reason",
    "outcome",
    "code",
    "source",
    "source_id",
];

/// A minute of the bot's clock per step, so the lines' order is the steps' order.
fn step(app: &TestApp, n: i64) {
    app.clock.set_secs(NOW + 60 * n);
}

/// One expected line: (source_id, work_item_id, action, option, outcome, code, actor).
type Expected = (
    String,
    String,
    &'static str,
    &'static str,
    &'static str,
    Value,
    String,
);

/// What the scenario did, to check the audit against.
struct Scenario {
    /// In the order the audit lists them.
    expected: Vec<Expected>,
    /// The message posted in the p2p chat.
    p2p_message: String,
    /// The time of step 6, RFC 3339.
    step6: String,
}

fn puts_to(app: &TestApp, id: u64) -> usize {
    app.project
        .requests_to("PUT", "/open_api/")
        .iter()
        .filter(|r| r.path.contains(&format!("/{id}/abort")))
        .count()
}

/// Typed abort done, already aborted, no permission, not a user, a picker confirmed by a
/// click, a restore (p2p), a PUT whose first answer was lost then 10430, a batch confirmed by
/// a click, a reply that had to be retried.
async fn scenario(app: &TestApp) -> Scenario {
    let mut expected = Vec::new();
    let mut typed = async |n: i64,
                           who: Person,
                           chat: Chat,
                           text: &str,
                           item: u64,
                           action: &'static str,
                           option: &'static str,
                           outcome: &'static str,
                           code: Value| {
        step(app, n);
        let message_id = app.send(who, chat, text).await;
        app.settled().await;
        assert!(
            !app.lark.replies_to(&message_id).is_empty(),
            "{text} was answered"
        );
        expected.push((
            message_id.clone(),
            item.to_string(),
            action,
            option,
            outcome,
            code,
            who.open_id.to_owned(),
        ));
        message_id
    };
    typed(
        1,
        ALICE,
        Chat::Group,
        "/abort 12345 repeat dup of 12001",
        12345,
        "abort",
        "repeat",
        "done",
        json!(0),
    )
    .await;
    typed(
        2,
        ALICE,
        Chat::Group,
        "/abort 12345 repeat again",
        12345,
        "abort",
        "repeat",
        "already_aborted",
        json!(20007),
    )
    .await;
    // Carol's lookup is refused (10001): no PUT, so no code.
    typed(
        3,
        CAROL,
        Chat::Group,
        "/abort 12346 test",
        12346,
        "abort",
        "test",
        "no_permission",
        Value::Null,
    )
    .await;
    typed(
        4,
        DAVE,
        Chat::Group,
        "/abort 12346 test",
        12346,
        "abort",
        "test",
        "not_a_user",
        Value::Null,
    )
    .await;
    assert_eq!(puts_to(app, 12346), 0);

    // A picker (no line: nothing decided), confirmed by Bob's click.
    step(app, 5);
    let (picker, _) = app.say_for_card(BOB, Chat::Group, "/abort 12346").await;
    let click = ClickOn::button(app, BOB, &picker, "go")
        .form(json!({"option": "test", "reason": "via the card"}));
    let clicked = app.click(&click).await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    let picker_line = (
        click.event_id.clone(),
        "12346".to_owned(),
        "abort",
        "test",
        "done",
        json!(0),
        BOB.open_id.to_owned(),
    );

    let p2p_message = typed(
        6,
        ALICE,
        Chat::P2p,
        "/restore 12345 rollback oops",
        12345,
        "restore",
        "rollback",
        "done",
        json!(0),
    )
    .await;

    // The PUT lands but its answer is lost; the retry with the same X-IDEM-UUID meets 10430.
    app.project
        .push_fault(Endpoint::Abort, Fault::Hang { apply: true });
    typed(
        7,
        ALICE,
        Chat::Group,
        "/abort 12347 test",
        12347,
        "abort",
        "test",
        "done",
        json!(0),
    )
    .await;
    assert_eq!(puts_to(app, 12347), 2, "the first answer was lost");

    // A batch: a confirmation first (no line), then Bob's click acts on all six.
    step(app, 8);
    let (confirm, _) = app
        .say_for_card(
            ALICE,
            Chat::Group,
            "/abort 12348 12349 12350 22001 22002 12001 test cleanup",
        )
        .await;
    let batch = ClickOn::button(app, BOB, &confirm, "go");
    let clicked = app.click(&batch).await;
    assert_eq!(clicked.status, 200, "{}", clicked.body);
    let batch_lines: Vec<_> = [
        (12348, "already_aborted", json!(20007)),
        (12349, "intercepted", json!(20090)),
        (12350, "done", json!(0)),
        (22001, "done", json!(0)),
        (22002, "done", json!(0)),
        (12001, "done", json!(0)),
    ]
    .into_iter()
    .map(|(id, outcome, code)| {
        (
            batch.event_id.clone(),
            id.to_string(),
            "abort",
            "test",
            outcome,
            code,
            BOB.open_id.to_owned(),
        )
    })
    .collect();

    // Lark refuses the first try of the reply; the outbox tries again.
    app.lark.push_fault(LarkEndpoint::Reply, 503, 0);
    let retried = typed(
        9,
        ALICE,
        Chat::Group,
        "/restore 12347 restart",
        12347,
        "restore",
        "restart",
        "done",
        json!(0),
    )
    .await;
    let tries = app
        .lark
        .requests_to(
            "POST",
            &format!("/open-apis/im/v1/messages/{retried}/reply"),
        )
        .len();
    assert_eq!(tries, 2, "the reply was retried");

    // In time order: steps 1–4, the picker's click (5), 6, 7, the batch (8), 9.
    let mut ordered: Vec<_> = expected.drain(..4).collect();
    ordered.push(picker_line);
    ordered.extend(expected.drain(..2));
    ordered.extend(batch_lines);
    ordered.append(&mut expected);
    Scenario {
        expected: ordered,
        p2p_message,
        step6: abort_bot::audit::rfc3339((NOW + 360) * 1000),
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `abort-bot audit <args>` on `store` with only `ABORT_BOT_STORE` (and `TZ`) set.
async fn audit(store: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abort-bot"));
    cmd.arg("audit")
        .args(args)
        .env_clear()
        .env("ABORT_BOT_STORE", store)
        .env("TZ", "Asia/Shanghai");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run abort-bot audit");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 errors"),
    }
}

const SINCE_START: &str = "2024-05-28T00:00:00Z";

async fn json_lines(store: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--format", "json"];
    if !extra.contains(&"--since") {
        args.extend(["--since", SINCE_START]);
    }
    args.extend_from_slice(extra);
    let out = audit(store, &args).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn summary(lines: &[Value]) -> Vec<Expected> {
    lines
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (
                s("source_id"),
                s("work_item_id"),
                match l["action"].as_str() {
                    Some("abort") => "abort",
                    Some("restore") => "restore",
                    other => panic!("action {other:?}"),
                },
                match l["option"].as_str() {
                    Some("repeat") => "repeat",
                    Some("test") => "test",
                    Some("rollback") => "rollback",
                    Some("restart") => "restart",
                    other => panic!("option {other:?}"),
                },
                match s("outcome").as_str() {
                    "done" => "done",
                    "already_aborted" => "already_aborted",
                    "no_permission" => "no_permission",
                    "not_a_user" => "not_a_user",
                    "intercepted" => "intercepted",
                    other => panic!("outcome {other}"),
                },
                l["code"].clone(),
                s("actor_open_id"),
            )
        })
        .collect()
}

/// Everything the binary prints about the scenario, in every format and filter.
async fn check_audit(store: &str, s: &Scenario) {
    let all = json_lines(store, &[]).await;
    assert_eq!(
        summary(&all),
        s.expected,
        "every decision, once, oldest first"
    );
    for l in &all {
        let keys: Vec<&str> = l
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want, "exactly the contract's keys: {l}");
        // The space as resolved; for Carol, who may not see it, the one she asked for; for
        // Dave, whom Feishu Project does not know, none was resolved.
        let space = match l["outcome"].as_str() {
            Some("no_permission") => "doc",
            Some("not_a_user") => "",
            _ => PROJECT_KEY,
        };
        assert_eq!(l["project_key"], space, "{l}");
        assert!(
            l["time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2024-05-28T08:")),
            "{l}"
        );
        let source = if l["source_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("om_"))
        {
            "message"
        } else {
            "click"
        };
        assert_eq!(l["source"], source, "{l}");
    }
    let first = &all[0];
    assert_eq!(first["work_item_type"], "story");
    assert_eq!(first["work_item_name"], "Export a space as PDF");
    assert_eq!(first["reason"], "dup of 12001");
    assert_eq!(
        first["actor_name"],
        Value::Null,
        "no name was looked up for Alice"
    );
    assert_eq!(all[0]["time"], "2024-05-28T08:01:01.000Z");
    assert_eq!(
        all[3]["actor_name"], "dave",
        "the email fallback brought Dave's name"
    );
    assert_eq!(
        all[2]["work_item_name"],
        Value::Null,
        "Carol learns nothing of the item"
    );

    let bob = json_lines(store, &["--user", BOB.open_id]).await;
    assert_eq!(bob.len(), 7);
    assert!(
        bob.iter()
            .all(|l| l["actor_open_id"] == BOB.open_id && l["source"] == "click")
    );

    let p2p = json_lines(store, &["--chat", P2P_CHAT]).await;
    assert_eq!(summary(&p2p), [s.expected[5].clone()]);
    assert_eq!(p2p[0]["source_id"], s.p2p_message.as_str());

    let since = json_lines(store, &["--since", &s.step6]).await;
    assert_eq!(summary(&since), s.expected[5..], "from step 6 on");

    // csv: a BOM, the keys as header, a row per line, RFC 4180 quoting.
    let out = audit(store, &["--format", "csv", "--since", SINCE_START]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let body = out
        .stdout
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark");
    let mut rows = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = rows
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, KEYS);
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("a csv row")).collect();
    assert_eq!(records.len(), all.len());
    for (row, json) in records.iter().zip(&all) {
        for (i, key) in KEYS.iter().enumerate() {
            let want = match &json[*key] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(&row[i], want, "{key} of {json}");
        }
    }

    // table: a header, a row per line, local time, aligned columns, names when known.
    let out = audit(store, &["--since", SINCE_START]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), all.len() + 1, "{}", out.stdout);
    assert!(
        rows[0].starts_with("TIME (Asia/Shanghai)"),
        "{}",
        out.stdout
    );
    assert!(
        rows[1].starts_with("2024-05-28 16:01:01"),
        "08:01 UTC is 16:01 in Shanghai: {}",
        out.stdout
    );
    let column = |row: &str, header: &str| {
        let at = rows[0].find(header).expect("a header");
        row.chars().take(rows[0][..at].chars().count()).count()
    };
    let action_at = column(rows[0], "ACTION");
    for row in &rows[1..] {
        let cell: String = row.chars().skip(action_at).take(7).collect();
        assert!(
            cell.starts_with("abort ") || cell.starts_with("restore"),
            "the ACTION column lines up: {row}\n{}",
            out.stdout
        );
    }
    assert!(rows[4].contains("dave"), "a name when known: {}", rows[4]);
    assert!(
        rows[1].contains(ALICE.open_id),
        "else the open_id: {}",
        rows[1]
    );
    assert!(rows[1].contains("done (0)") && rows[2].contains("already_aborted (20007)"));

    let none = audit(store, &["--since", "24h"]).await;
    assert_eq!(none.code, Some(0), "{}", none.stderr);
    assert!(
        none.stdout.starts_with("No abort or restore since"),
        "{}",
        none.stdout
    );

    let bad = audit(store, &["--since", "last week"]).await;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
    assert!(bad.stdout.is_empty());
}

#[tokio::test]
async fn the_audit_command_lists_a_full_scenario_from_sqlite_beside_the_running_bot() {
    let mut app = spawn_with(Options {
        upstream_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let s = scenario(&app).await;
    let store = format!("sqlite://{}", app.store_path.display());
    // The bot holds the file (one process per database); the audit reads it read-only.
    check_audit(&store, &s).await;
    // The bot is undisturbed: it goes on acting and recording.
    step(&app, 10);
    let card = app.say_final(BOB, Chat::Group, "/restore 12350 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert_eq!(json_lines(&store, &[]).await.len(), s.expected.len() + 1);
    // Stopped, its file is read the same way.
    app.stop().await.expect("stop");
    assert_eq!(json_lines(&store, &[]).await.len(), s.expected.len() + 1);
}

#[tokio::test]
async fn the_audit_command_lists_a_full_scenario_from_redis() {
    let redis = RedisServer::start();
    let app = spawn_with(Options {
        upstream_timeout: Duration::from_secs(1),
        redis: Some(redis.clone()),
        ..Options::default()
    })
    .await;
    let s = scenario(&app).await;
    check_audit(&redis.url(), &s).await;
}

#[tokio::test]
async fn the_audit_command_needs_no_secrets_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = audit(&missing, &["--format", "json"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("ABORT_BOT_STORE") && out.stderr.contains("none.db"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("none.db").exists(), "nothing was created");
    let out = audit("postgres://u:secret@h/db", &[]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("ABORT_BOT_STORE") && !out.stderr.contains("secret"),
        "{}",
        out.stderr
    );
    // An empty store: csv is its header alone.
    let path = dir.path().join("bot.db");
    drop(Store::open(&path).expect("create"));
    let out = audit(
        &format!("sqlite://{}", path.display()),
        &["--format", "csv"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, format!("\u{feff}{}\n", KEYS.join(",")));
}

/// Polls the audit trail (bounded, 10 s) until it holds `n` lines; returns them.
async fn audit_lines(store: &Store, n: usize) -> Vec<AuditRecord> {
    let mut last = Vec::new();
    for _ in 0..500 {
        last = store.audit_page(everything()).await.expect("audit page");
        if last.len() >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not {n} audit lines within 10 s: {last:?}");
}

#[tokio::test]
async fn a_click_refused_for_its_clicker_and_a_slow_click_are_both_recorded() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    // Carol may not see the item: the card stays usable, and her try is recorded.
    let carol = ClickOn::button(&app, CAROL, &message_id, "go")
        .form(json!({"option": "repeat", "reason": ""}));
    let clicked = app.click(&carol).await;
    assert!(clicked.card().is_none(), "{}", clicked.body);
    // Bob's click outlasts the answer: the result comes later, with its line.
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(3000)));
    step(&app, 1);
    let bob = ClickOn::button(&app, BOB, &message_id, "go")
        .form(json!({"option": "repeat", "reason": "dup"}));
    let clicked = app.click(&bob).await;
    assert!(
        clicked.toast_en().contains("Working on it"),
        "{}",
        clicked.body
    );
    let store = app.open_store().await;
    let lines = audit_lines(&store, 2).await;
    let got: Vec<(&str, &str, &str, Option<i64>, &str)> = lines
        .iter()
        .map(|l| {
            (
                l.source_id.as_str(),
                l.actor_open_id.as_str(),
                l.outcome.as_str(),
                l.code,
                l.source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                carol.event_id.as_str(),
                CAROL.open_id,
                "no_permission",
                None,
                "click"
            ),
            (bob.event_id.as_str(), BOB.open_id, "done", Some(0), "click"),
        ]
    );
    assert_eq!(lines[1].chat_id.as_deref(), Some(GROUP_CHAT));
    assert_eq!(lines[1].reason, "dup");
    assert!(app.project.item(12345).expect("item").aborted);
    app.settled().await;
    assert_eq!(store.audit_page(everything()).await.expect("page").len(), 2);
}

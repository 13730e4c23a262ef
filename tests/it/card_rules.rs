//! Every card the bot can send, checked against Lark's card rules (`protocol/lark.md` §5.3, the
//! 30 KB and 200-component limits of §4.3) with the same checker the emulated Lark runs on
//! every send, reply, PATCH and delayed update: every template in `cards/`, every outcome,
//! both actions, a batch of 1, 2 and the maximum of 50, and the longest inputs: a reason of
//! 1000 wide CJK characters (the contract's maximum), item names of 500 CJK characters (no
//! documented maximum was found for a work item name; 500 is a generous one), 64-character
//! space and type keys (the longest the bot accepts), long upstream error texts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use abort_bot::card_value::{CardStamp, Signer};
use abort_bot::cards::{CARD_BUDGET, content_size};
use abort_bot::command::ParseError;
use abort_bot::domain::{Action, ReasonChoice, ReasonMenu, ReasonOption, WorkItemRef};
use abort_bot::emulator::card_rules::{self, MAX_BODY_BYTES};
use abort_bot::emulator::project::Item;
use abort_bot::limits::Refusal;
use abort_bot::project::{Space, WorkItem};
use abort_bot::service::{ActReport, Found, ItemReport, Outcome};
use abort_bot::views::{self, BatchRequest, Picker};
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

/// The most refs one command may name (contract, third edition: ABORT_BOT_MAX_ITEMS).
const MAX_ITEMS: usize = 50;
const ACTOR: &str = "ou_84aad35d084aa403a838cf73ee18467";
/// What a send/reply body holds besides the card: ids, `msg_type`, `uuid` (at most 50 chars).
const ENVELOPE_BYTES: usize = 300;

fn reason() -> String {
    "终".repeat(1000)
}

fn long_name(i: u64) -> String {
    format!("{i}{}", "需求名称很长".repeat(84))
}

/// Every outcome, with the longest details a card may have to show.
fn outcomes() -> Vec<Outcome> {
    let detail = format!("10429 {}", "请求过于频繁 rate limited ".repeat(25));
    every_outcome(&detail, &detail)
}

fn parse_errors() -> Vec<ParseError> {
    let word = "命".repeat(1000);
    vec![
        ParseError::NotACommand,
        ParseError::UnknownCommand(word.clone()),
        ParseError::MissingRefs("abort"),
        ParseError::MissingSpace,
        ParseError::BadSpace(word.clone()),
        ParseError::ExtraWords(word),
    ]
}

fn stamp() -> CardStamp<'static> {
    static SIGNER: std::sync::LazyLock<Signer> =
        std::sync::LazyLock::new(|| Signer::new("card rules secret".to_owned().into()));
    CardStamp::fixed(&SIGNER, "00112233445566778899aabbccddeeff", 1_716_883_201)
}

fn web() -> Url {
    Url::parse("https://project.feishu.cn").expect("url")
}

fn long_key() -> String {
    "k".repeat(64)
}

fn space() -> Space {
    Space {
        project_key: "60acd5610444ba031b503055".into(),
        name: "文档团队".repeat(25),
        simple_name: long_key(),
    }
}

fn item_ref(id: u64) -> WorkItemRef {
    WorkItemRef {
        space: Some(long_key()),
        type_key: Some(long_key()),
        id,
    }
}

fn found(id: u64) -> Found {
    Found {
        item_ref: item_ref(id),
        space_key: long_key(),
        space: space(),
        item: WorkItem {
            id,
            name: long_name(id),
            work_item_type_key: long_key(),
            project_key: space().project_key,
            simple_name: long_key(),
            pattern: "Node".into(),
            is_aborted: Some(false),
            type_name: "需求类型".repeat(12),
        },
    }
}

fn reported(id: u64, outcome: Outcome, with_item: bool) -> ItemReport {
    let f = found(id);
    ItemReport {
        item_ref: f.item_ref,
        space_key: Some(f.space_key),
        space: Some(f.space),
        item: with_item.then_some(f.item),
        outcome,
        code: None,
    }
}

fn report(action: Action, items: Vec<ItemReport>) -> ActReport {
    ActReport {
        action,
        option: action.options()[action.options().len() - 1].clone(),
        option_label: None,
        opposite_menu: Some(space_menu(action.opposite())),
        reason: reason(),
        actor_open_id: Some(ACTOR.into()),
        items,
    }
}

/// A space's own options, as many and as long as a generous space could configure (Feishu
/// Project documents no maximum for either): 12 options with labels of 100 wide characters.
fn space_menu(action: Action) -> ReasonMenu {
    let choices = (0..12)
        .map(|i| ReasonChoice {
            option: ReasonOption::parse_key(&format!("space_option_{i}")).expect("option value"),
            label: Some(format!("{i}{}", "预算削减".repeat(25))),
        })
        .collect();
    ReasonMenu::configured(action, choices)
}

/// Every card the views can make, by the template it comes from.
fn every_card() -> BTreeMap<&'static str, Vec<(String, Value)>> {
    let mut cards: BTreeMap<&'static str, Vec<(String, Value)>> = BTreeMap::new();
    let mut add = |template: &'static str, what: String, card: Value| {
        cards.entry(template).or_default().push((what, card));
    };
    let ids: Vec<u64> = (40_001..40_001 + MAX_ITEMS as u64).collect();
    for action in [Action::Abort, Action::Restore] {
        for outcome in outcomes() {
            for with_item in [true, false] {
                let r = report(action, vec![reported(12345, outcome.clone(), with_item)]);
                add(
                    "outcome",
                    format!("{action} {} item {with_item}", outcome.key()),
                    views::act_report(&r, &web(), &stamp()),
                );
            }
            add(
                "outcome",
                format!("{action} {} alone", outcome.key()),
                views::outcome_only(&outcome, action, Some(ACTOR)),
            );
            add(
                "outcome",
                format!("bind {}", outcome.key()),
                views::bound(&Err(outcome.clone()), &long_key(), Some(ACTOR)),
            );
        }
        // Batches: 2, and the maximum with every outcome in turn, all done, all retryable.
        let all = outcomes();
        let mixed: Vec<ItemReport> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| reported(*id, all[i % all.len()].clone(), i % 3 != 0))
            .collect();
        add(
            "batch",
            format!("{action} 2"),
            views::act_report(&report(action, mixed[..2].to_vec()), &web(), &stamp()),
        );
        add(
            "batch",
            format!("{action} {MAX_ITEMS} mixed"),
            views::act_report(&report(action, mixed), &web(), &stamp()),
        );
        for outcome in [Outcome::Done, Outcome::Busy("10429 limit".into())] {
            let items = ids
                .iter()
                .map(|id| reported(*id, outcome.clone(), true))
                .collect();
            add(
                "batch",
                format!("{action} {MAX_ITEMS} {}", outcome.key()),
                views::act_report(&report(action, items), &web(), &stamp()),
            );
        }
        // Pickers: one item, the maximum, some not found, nothing to act on, did you mean.
        let typed = "命".repeat(1000);
        let mut many: Vec<Result<Found, ItemReport>> = Vec::new();
        for id in &ids {
            many.push(if id % 7 == 0 {
                Err(reported(*id, Outcome::NotFound, false))
            } else {
                Ok(found(*id))
            });
        }
        let none = vec![Err(reported(12345, Outcome::NotAUser, false))];
        let space_options = space_menu(action);
        let picker = Picker {
            action,
            menu: &space_options,
            lookups: &many,
            did_you_mean: None,
            reason: &reason(),
            actor_open_id: Some(ACTOR),
        };
        add(
            "picker",
            format!("{action} many with the space's options"),
            views::picker(&picker, &web(), &stamp()),
        );
        let one = vec![Ok(found(12345))];
        for (what, lookups, did_you_mean) in [
            ("one", &one, None),
            ("many", &many, None),
            ("nothing", &none, None),
            (
                "did you mean",
                &one,
                Some((typed.as_str(), &action.options()[0])),
            ),
        ] {
            let picker = Picker {
                action,
                menu: &ReasonMenu::defaults(action),
                lookups,
                did_you_mean,
                reason: &reason(),
                actor_open_id: Some(ACTOR),
            };
            add(
                "picker",
                format!("{action} {what}"),
                views::picker(&picker, &web(), &stamp()),
            );
        }
        // The batch confirmation, for a few and for the maximum.
        let long_label = "预算削减".repeat(25);
        for n in [6, MAX_ITEMS] {
            let refs: Vec<WorkItemRef> = ids[..n].iter().map(|id| item_ref(*id)).collect();
            // Every name as long as can be, but one the sender's lookup did not find.
            let names: Vec<Option<String>> = ids[..n]
                .iter()
                .map(|id| (id % 7 != 0).then(|| long_name(*id)))
                .collect();
            let req = BatchRequest {
                action,
                option: action.options()[action.options().len() - 1].clone(),
                option_label: Some(&long_label),
                reason: &reason(),
                refs: &refs,
                names: &names,
                actor_open_id: Some(ACTOR),
                limit: 5,
            };
            add(
                "confirm_batch",
                format!("{action} {n}"),
                views::confirm_batch(&req, &stamp()),
            );
        }
        for n in [1, MAX_ITEMS] {
            let refs: Vec<WorkItemRef> = ids[..n].iter().map(|id| item_ref(*id)).collect();
            add(
                "progress",
                format!("{action} {n}"),
                views::progress(action, &refs, Some(ACTOR)),
            );
            add(
                "cancelled",
                format!("{action} {n}"),
                views::cancelled(action, &refs, Some(ACTOR)),
            );
        }
    }
    add("progress", "lookup".into(), views::progress_lookup());
    for refusal in [
        Refusal::TooManyItems {
            count: 100_000,
            limit: MAX_ITEMS,
        },
        Refusal::ReasonTooLong {
            chars: 1_000_000,
            limit: 1000,
        },
        Refusal::RateLimited {
            limit: 20,
            retry_after_secs: 60,
        },
    ] {
        add(
            "refused",
            refusal.key().into(),
            views::refused(&refusal, Some(ACTOR)),
        );
    }
    add("help", "plain".into(), views::help(None));
    for e in parse_errors() {
        add("help", format!("{e:?}"), views::help(Some(&e)));
    }
    add(
        "bound",
        "bound".into(),
        views::bound(&Ok(space()), &long_key(), Some(ACTOR)),
    );
    for aborted in [Some(false), Some(true), None] {
        let action = if aborted == Some(true) {
            Action::Restore
        } else {
            Action::Abort
        };
        let mut item = found(12345);
        item.item.is_aborted = aborted;
        for (menu, which) in [
            (ReasonMenu::defaults(action), "defaults"),
            (space_menu(action), "space options"),
        ] {
            add(
                "preview",
                format!("{action} aborted {aborted:?} {which}"),
                views::preview_card(&item, action, &menu, &web(), &stamp()),
            );
        }
    }
    cards
}

/// The templates in `cards/` (not the parts, which are pieces of them, nor the words).
fn templates() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cards");
    std::fs::read_dir(&dir)
        .expect("cards/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .filter(|n| n != "messages")
        .collect()
}

/// All callback values of a card, depth first.
fn values(card: &Value, out: &mut Vec<Value>) {
    match card {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("callback")
                && let Some(v) = o.get("value")
            {
                out.push(v.clone());
            }
            o.values().for_each(|v| values(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| values(v, out)),
        _ => {}
    }
}

/// Every translated text has words in both languages.
fn both_languages(card: &Value, name: &str) {
    match card {
        Value::Object(o) => {
            if let Some(i18n) = o.get("i18n_content") {
                for lang in ["zh_cn", "en_us"] {
                    let words = i18n.get(lang).and_then(Value::as_str).unwrap_or_default();
                    assert!(!words.trim().is_empty(), "{name}: no {lang} in {card}");
                }
            }
            o.values().for_each(|v| both_languages(v, name));
        }
        Value::Array(a) => a.iter().for_each(|v| both_languages(v, name)),
        _ => {}
    }
}

/// The card without its buttons' callback values: what a person reads.
fn without_values(card: &Value) -> Value {
    match card {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "behaviors")
                .map(|(k, v)| (k.clone(), without_values(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_values).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_card_the_bot_can_send_passes_larks_rules() {
    let cards = every_card();
    let covered: BTreeSet<String> = cards.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(
        covered,
        templates(),
        "every template in cards/ needs its cases here (and only real templates)"
    );
    let mut largest = (0, String::new());
    for (template, cases) in &cards {
        for (what, card) in cases {
            let name = format!("{template}: {what}");
            assert_eq!(card_rules::check(card), Ok(()), "{name}: {card}");
            let size = content_size(card);
            assert!(size <= CARD_BUDGET, "{name}: {size} bytes");
            assert_eq!(
                card_rules::check_size(size + ENVELOPE_BYTES),
                Ok(()),
                "{name}"
            );
            let text = card.to_string();
            assert!(
                !text.contains("&#40;"),
                "{name}: parentheses are not escaped"
            );
            assert!(!text.contains("{{"), "{name}: a placeholder left: {text}");
            both_languages(card, &name);
            if size > largest.0 {
                largest = (size, name);
            }
        }
    }
    eprintln!(
        "largest card: {} ({} bytes of {MAX_BODY_BYTES})",
        largest.1, largest.0
    );
}

#[test]
fn a_batch_too_big_to_show_whole_shows_its_first_rows_and_a_count_but_acts_on_all() {
    let cards = every_card();
    let (_, card) = cards["batch"]
        .iter()
        .find(|(what, _)| what == "abort 50 done")
        .expect("the 50-item batch");
    let text = card_text(card);
    assert!(text.contains("more work items"), "{text}");
    assert!(text.contains("另有"), "{text}");
    assert!(
        text.contains("40001 · 40001需求名称"),
        "the first row: {text}"
    );
    assert!(
        !text.contains("40050 · "),
        "the last row is counted, not shown"
    );
    let mut found = Vec::new();
    values(card, &mut found);
    assert!(!found.is_empty());
    for v in &found {
        assert_eq!(
            v["i"].as_array().map(Vec::len),
            Some(MAX_ITEMS),
            "every button acts on all 50: {v}"
        );
    }
    // A reason is cut on the card, never in the value the button carries for the PUT.
    let (_, retry) = cards["batch"]
        .iter()
        .find(|(what, _)| what == "abort 50 busy")
        .expect("the retryable batch");
    let mut found = Vec::new();
    values(retry, &mut found);
    assert!(found.iter().any(|v| v["r"] == reason()), "the full reason");
    assert!(
        !card_text(&without_values(retry)).contains(&reason()),
        "the card shows less"
    );
}

#[test]
fn the_words_tell_the_cancel_option_from_the_cancel_button() {
    let cards = every_card();
    let (_, picker) = cards["picker"]
        .iter()
        .find(|(what, _)| what == "abort one")
        .expect("the picker for one item");
    let text = card_text(picker);
    assert!(text.contains("Cancelled (no longer needed)"), "{text}");
    assert!(
        text.contains("Keep as is") && text.contains("Confirm abort"),
        "{text}"
    );
    assert!(
        text.contains("取消（不再需要）") && text.contains("取消操作"),
        "{text}"
    );
    assert!(text.contains("确认终止"), "{text}");
    assert_eq!(
        picker.pointer("/header/subtitle/i18n_content"),
        Some(&json!({"zh_cn": "飞书项目", "en_us": "Feishu Project"}))
    );
}

fn seed_many(app: &TestApp, ids: &[u64]) {
    let project_key = app
        .project
        .item(12345)
        .map(|i| i.project_key)
        .expect("seeded");
    let mut s = app.project.state();
    for id in ids {
        s.items.insert(
            *id,
            Item {
                id: *id,
                project_key: project_key.clone(),
                type_key: "story".into(),
                name: long_name(*id),
                pattern: "Node".into(),
                aborted: false,
                reason: String::new(),
                reason_option: String::new(),
                intercepted: false,
                changed_by: String::new(),
            },
        );
    }
}

/// Long enough for 50 paced PUTs (15 a second) and the card that follows.
const PACED: Duration = Duration::from_secs(30);

fn put_count(app: &TestApp) -> usize {
    app.project.requests_to("PUT", "/open_api/").len()
}

#[tokio::test]
async fn the_buttons_of_a_50_item_batch_work() {
    let app = spawn_app().await;
    let ids: Vec<u64> = (40_001..40_001 + MAX_ITEMS as u64).collect();
    seed_many(&app, &ids);
    let refs: Vec<String> = ids.iter().map(u64::to_string).collect();
    let text = format!("/abort {} other {}", refs.join(" "), reason());
    // Listing 50 items by name means looking each up as the sender: past the budget the
    // confirmation replaces an "in progress" card.
    let (message_id, card) = app.say_for_final_card(ALICE, Chat::Group, &text).await;
    assert!(card_text(&card).contains("50 work items?"), "{card}");
    assert_eq!(put_count(&app), 0, "nothing before the confirmation");

    // Confirm: the value decodes and acts on all 50, as the person who clicked.
    let clicked = app
        .click(&ClickOn::button(&app, BOB, &message_id, "go"))
        .await;
    assert_eq!(clicked.status, 200, "{}", clicked.body);
    wait_within("50 PUTs", PACED, || put_count(&app) == MAX_ITEMS).await;
    wait_within("the result card", PACED, || {
        app.lark
            .message(&message_id)
            .is_some_and(|m| card_text(&m.card).contains("Undo"))
    })
    .await;
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert!(
        puts.iter()
            .all(|p| p.header("x-user-key") == Some(BOB.user_key))
    );
    assert!(
        puts.iter().all(|p| p.body["reason"] == reason()),
        "the full reason"
    );
    assert!(
        ids.iter()
            .all(|id| app.project.item(*id).is_some_and(|i| i.aborted))
    );

    // Undo on the 50-row result: its form's button decodes and restores all 50.
    let result = app.lark.message(&message_id).expect("message").card;
    assert_eq!(card_rules::check(&result), Ok(()));
    let undo = ClickOn::button(&app, BOB, &message_id, "go")
        .form(json!({"option": "rollback", "reason": ""}));
    let clicked = app.click(&undo).await;
    assert_eq!(clicked.status, 200, "{}", clicked.body);
    wait_within("50 more PUTs", PACED, || put_count(&app) == 2 * MAX_ITEMS).await;
    wait_within("all restored", PACED, || {
        ids.iter()
            .all(|id| app.project.item(*id).is_some_and(|i| !i.aborted))
    })
    .await;
    assert_eq!(app.lark.refusals().len(), 0, "Lark took every card");
}

#[tokio::test]
async fn text_shows_as_typed_on_the_card() {
    let app = spawn_app().await;
    let (_, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12001").await;
    let json = card.to_string();
    assert!(json.contains("PDF export (first attempt)"), "{json}");
    assert!(!json.contains("&#40;") && !json.contains("&#41;"), "{json}");
}

#[tokio::test]
async fn the_emulated_lark_refuses_what_lark_refuses() {
    let app = spawn_app().await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let token = app.lark.issue_card_token(&message_id);
    let client = reqwest::Client::new();
    let tenant = client
        .post(app.lark_url("/open-apis/auth/v3/tenant_access_token/internal"))
        .json(&json!({"app_id": APP_ID, "app_secret": APP_SECRET}))
        .send()
        .await
        .expect("token")
        .json::<Value>()
        .await
        .expect("json");
    let bearer = format!(
        "Bearer {}",
        tenant["tenant_access_token"].as_str().unwrap_or_default()
    );
    // A standalone button with a name: an unknown property there (230099 / 200621).
    let mut named = card.clone();
    named["body"]["elements"]
        .as_array_mut()
        .expect("elements")
        .push(
            json!({"tag": "button", "name": "x", "text": {"tag": "plain_text", "content": "x"},
                     "behaviors": [{"type": "callback", "value": {}}]}),
        );
    // Over 30 KB of body (230025).
    let mut big = card.clone();
    big["body"]["elements"]
        .as_array_mut()
        .expect("elements")
        .push(json!({"tag": "markdown", "content": "终".repeat(11_000)}));
    let patch = app.lark_url(&format!("/open-apis/im/v1/messages/{message_id}"));
    for (card, code, endpoint) in [(&named, 230_099, "patch"), (&big, 230_025, "patch")] {
        let resp = client
            .patch(&patch)
            .header("authorization", &bearer)
            .json(&json!({"content": card.to_string()}))
            .send()
            .await
            .expect("patch");
        assert_eq!(resp.status().as_u16(), 400, "{endpoint}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], code, "{body}");
        if code == 230_099 {
            let msg = body["msg"].as_str().unwrap_or_default();
            assert!(msg.contains("ErrCode: 200621"), "{msg}");
            assert!(msg.contains("(tag: button) -> name"), "{msg}");
        }
    }
    let resp = client
        .post(app.lark_url("/open-apis/interactive/v1/card/update"))
        .header("authorization", &bearer)
        .json(&json!({"token": token, "card": named}))
        .send()
        .await
        .expect("update");
    assert_eq!(resp.status().as_u16(), 400);
    let refusals = app.lark.refusals();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert_eq!(
        app.lark.message(&message_id).map(|m| m.updates),
        Some(0),
        "nothing refused was shown"
    );
}

#[test]
fn typed_words_in_code_spans_show_as_typed() {
    // Inside `…` nothing is markup and entities are not decoded: no escaping there.
    let card = views::help(Some(&ParseError::BadSpace("my_space*1".into())));
    let text = card_text(&card);
    assert!(text.contains("`my_space*1`"), "{text}");
    let outcome = views::outcome_only(&Outcome::UnknownSpace, Action::Abort, Some(ACTOR));
    assert_eq!(card_rules::check(&outcome), Ok(()));
}

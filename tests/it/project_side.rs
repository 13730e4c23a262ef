//! The Feishu Project side as the platform behaves: bare-id search over enabled types, PUTs
//! whose answer was lost, a space's own abort reasons, access per person, and state read fresh.

use std::time::Duration;

use super::helpers::*;
use abort_bot::emulator::project::{Endpoint, Fault};

const OPS_ITEM: &str = "https://project.feishu.cn/ops/story/detail/41001";

fn queries(app: &TestApp) -> Vec<String> {
    app.project
        .requests_to("POST", &format!("/open_api/{PROJECT_KEY}/work_item/"))
        .into_iter()
        .map(|r| r.path)
        .collect()
}

fn puts(app: &TestApp) -> Vec<abort_bot::emulator::Recorded> {
    app.project.requests_to("PUT", "/open_api/")
}

fn offered(card: &serde_json::Value) -> Vec<(String, String)> {
    let select = find_named(card, "option").expect("a select of the options");
    select["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| {
            (
                o["value"].as_str().unwrap_or_default().to_owned(),
                o["text"]["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn unexpected(code: i64, msg: &str) -> Fault {
    Fault::Error {
        status: 400,
        code,
        msg: msg.into(),
    }
}

#[tokio::test]
async fn a_bare_id_search_skips_disabled_types_and_survives_a_failing_type() {
    let app = spawn_app().await;
    // The first type tried (story) answers an error the bot has no words for.
    app.project
        .push_fault(Endpoint::Query, unexpected(9999, "Invalid Param"));
    let card = app.say(ALICE, Chat::Group, "/abort 22001 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert!(app.project.item(22001).expect("item").aborted);
    assert_eq!(
        queries(&app),
        [
            format!("/open_api/{PROJECT_KEY}/work_item/story/query"),
            format!("/open_api/{PROJECT_KEY}/work_item/issue/query"),
        ],
        "the disabled type `epic` is never tried; issue is tried after story failed"
    );
}

#[tokio::test]
async fn no_type_has_it_but_one_failed_is_not_called_not_found() {
    let app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Query, unexpected(9999, "Invalid Param"));
    let card = app.say(ALICE, Chat::Group, "/abort 99999 test").await;
    let text = card_text(&card);
    assert!(!text.contains("has no work item"), "{text}");
    assert!(text.contains("9999"), "the failure is named: {text}");
    assert_eq!(queries(&app).len(), 3, "story, issue and ticket were tried");
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_is_done_with_the_actor() {
    let app = spawn_with(Options {
        upstream_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    // The server applies the PUT, but its answer never comes back before the timeout.
    app.project
        .push_fault(Endpoint::Abort, Fault::Hang { apply: true });
    let card = app.say(ALICE, Chat::Group, "/abort 12345 repeat").await;
    let text = card_text(&card);
    assert_eq!(card_color(&card), "green", "{text}");
    assert!(
        text.contains(&format!("<at id={}></at>", ALICE.open_id)),
        "{text}"
    );
    let puts = puts(&app);
    assert_eq!(puts.len(), 2, "the retry met 10430: the first PUT landed");
    assert_eq!(puts[0].header("x-idem-uuid"), puts[1].header("x-idem-uuid"));
    let item = app.project.item(12345).expect("item");
    assert!(item.aborted);
    assert_eq!(item.reason_option, "repeat");
}

#[tokio::test]
async fn a_put_never_answered_does_not_claim_nothing_changed() {
    let app = spawn_with(Options {
        upstream_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    for _ in 0..4 {
        app.project
            .push_fault(Endpoint::Abort, Fault::Hang { apply: false });
    }
    let card = app.say_final(ALICE, Chat::Group, "/abort 12345 test").await;
    let text = card_text(&card);
    assert!(text.contains("Not confirmed: 12345"), "{text}");
    assert!(
        text.contains("the item is **not aborted**"),
        "read back: {text}"
    );
    assert!(!text.contains("nothing was changed"), "{text}");
    assert!(
        find_named(&card, "retry").is_some(),
        "a Retry button: {card}"
    );
}

#[tokio::test]
async fn the_idempotency_key_is_refused_on_a_repeat_per_token_and_endpoint() {
    let (_lark, _, project, project_addr) = emulators().await;
    let http = reqwest::Client::new();
    let base = format!("http://{project_addr}");
    let token: serde_json::Value = http
        .post(format!("{base}/open_api/authen/plugin_token"))
        .json(&serde_json::json!({"plugin_id": PLUGIN_ID, "plugin_secret": PLUGIN_SECRET}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["data"]["token"].as_str().expect("token").to_owned();
    let put = |id: u64, idem: &'static str| {
        http.put(format!(
            "{base}/open_api/{PROJECT_KEY}/work_item/story/{id}/abort"
        ))
        .header("X-PLUGIN-TOKEN", &token)
        .header("X-USER-KEY", ALICE.user_key)
        .header("X-IDEM-UUID", idem)
        .json(&serde_json::json!({"is_aborted": true, "reason": "", "reason_option": "test"}))
        .send()
    };
    let first = put(12345, "same-key").await.expect("put");
    assert_eq!(first.status(), 200);
    let again = put(12346, "same-key").await.expect("put");
    assert_eq!(again.status(), 429);
    let body: serde_json::Value = again.json().await.expect("json");
    assert_eq!(body["err_code"], 10430);
    assert!(
        !project.item(12346).expect("item").aborted,
        "a refused repeat changes nothing"
    );
}

#[tokio::test]
async fn a_space_with_its_own_abort_reasons_offers_them_in_the_picker() {
    let app = spawn_app().await;
    app.project.seed_space_with_own_abort_reasons();
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM}"))
        .await;
    assert_eq!(
        offered(&card),
        [
            ("budget_cut".to_owned(), "预算削减".to_owned()),
            ("won_t_fix".to_owned(), "Won't fix".to_owned()),
            ("other".to_owned(), "其他".to_owned()),
        ],
        "label shown, value sent"
    );
    // The default `cancel` is not one of this space's options: it is offered the picker.
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM} cancel"))
        .await;
    assert!(
        find_named(&card, "option").is_some(),
        "{}",
        card_text(&card)
    );
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn a_space_option_is_accepted_by_value_or_label_and_the_card_shows_its_label() {
    let app = spawn_app().await;
    app.project.seed_space_with_own_abort_reasons();
    let card = app
        .say(
            ALICE,
            Chat::Group,
            &format!("/abort {OPS_ITEM} 预算削减 no budget this quarter"),
        )
        .await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert!(
        card_text(&card).contains("预算削减"),
        "{}",
        card_text(&card)
    );
    let item = app.project.item(41001).expect("item");
    assert_eq!(
        (item.reason_option.as_str(), item.reason.as_str()),
        ("budget_cut", "no budget this quarter")
    );
    app.say(ALICE, Chat::Group, &format!("/restore {OPS_ITEM} restart"))
        .await;
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM} budget_ct"))
        .await;
    assert!(
        card_text(&card).contains("Did you mean `budget_cut`?"),
        "{}",
        card_text(&card)
    );
    app.say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM} WON_T_FIX"))
        .await;
    assert_eq!(
        app.project.item(41001).expect("item").reason_option,
        "won_t_fix"
    );
    assert_eq!(
        app.project
            .requests_to("POST", "/open_api/6f1e2d3c4b5a697887766554/field/all")
            .len(),
        1,
        "the space's options are read once and cached"
    );
    // `other` still needs a reason, whatever the space calls it.
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM} 其他"))
        .await;
    assert!(
        card_text(&card).contains("needs a reason"),
        "{}",
        card_text(&card)
    );
}

#[tokio::test]
async fn an_unreadable_reason_field_falls_back_to_the_four_defaults() {
    let app = spawn_app().await;
    app.project.seed_space_with_own_abort_reasons();
    app.project
        .push_fault(Endpoint::FieldAll, unexpected(10001, "No Permission"));
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM}"))
        .await;
    let values: Vec<String> = offered(&card).into_iter().map(|(v, _)| v).collect();
    assert_eq!(values, ["cancel", "repeat", "test", "other"]);
    // The fallback holds for the cache period: no read on every command.
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM}"))
        .await;
    assert_eq!(offered(&card)[0].0, "cancel");
    assert_eq!(
        app.project
            .requests_to("POST", "/open_api/6f1e2d3c4b5a697887766554/field/all")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_space_without_the_field_gets_the_four_defaults() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345").await;
    let values: Vec<String> = offered(&card).into_iter().map(|(v, _)| v).collect();
    assert_eq!(values, ["cancel", "repeat", "test", "other"]);
    assert_eq!(
        app.project
            .requests_to("POST", &format!("/open_api/{PROJECT_KEY}/field/all"))
            .len(),
        1,
        "the field list was read"
    );
}

#[tokio::test]
async fn carol_learns_nothing_after_alice_looked_the_item_up() {
    let app = spawn_app().await;
    let alice = app.say(ALICE, Chat::Group, "/abort 12345").await;
    assert!(card_text(&alice).contains("Export a space as PDF"));
    let name_of = |card: &serde_json::Value| card_text(card).contains("Export a space as PDF");
    for text in [
        "/abort 12345 test",
        "/abort 12345",
        "/abort story/12345 test",
    ] {
        let card = app.say(CAROL, Chat::Group, text).await;
        assert!(!name_of(&card), "{text}: {}", card_text(&card));
        assert!(
            card_text(&card).contains("no permission"),
            "{text}: {}",
            card_text(&card)
        );
    }
    let carol_calls = app
        .project
        .requests()
        .into_iter()
        .filter(|r| r.header("x-user-key") == Some(CAROL.user_key))
        .count();
    assert!(carol_calls > 0, "Carol's lookups were made as Carol");
    assert!(puts(&app).is_empty());
    assert!(!app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn bind_by_a_non_member_of_the_space_is_refused() {
    let app = spawn_with(Options {
        default_project: None,
        ..Options::default()
    })
    .await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("/bind"), "no space yet");
    let card = app.say(ALICE, Chat::Group, "/bind doc").await;
    assert!(card_text(&card).contains("Docs Team"));
    let card = app.say(CAROL, Chat::P2p, "/bind doc").await;
    let text = card_text(&card);
    assert!(text.contains("no permission"), "{text}");
    assert!(!text.contains("Docs Team"), "{text}");
    let card = app.say(CAROL, Chat::P2p, "/abort 12345 test").await;
    assert!(
        card_text(&card).contains("/bind"),
        "Carol's chat stays unbound"
    );
}

#[tokio::test]
async fn the_state_shown_is_read_fresh_and_the_picker_offers_the_way_back() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12001").await;
    assert!(card_text(&card).contains("currently not aborted"));
    // Someone aborts it in Feishu Project itself.
    app.project.set_aborted(12001, true);
    let card = app.say(ALICE, Chat::Group, "/abort 12001").await;
    let text = card_text(&card);
    assert!(text.contains("currently aborted"), "{text}");
    assert!(text.contains("Restore 12001?"), "{text}");
    let values: Vec<String> = offered(&card).into_iter().map(|(v, _)| v).collect();
    assert_eq!(values, ["restart", "rollback", "test", "other"]);
    // A command with its option: the PUT's own answer tells the truth.
    let card = app.say(ALICE, Chat::Group, "/abort 12001 test").await;
    assert!(
        card_text(&card).contains("was already aborted"),
        "{}",
        card_text(&card)
    );
    app.project.set_aborted(12001, false);
    let card = app.say(ALICE, Chat::Group, "/restore 12001").await;
    assert!(
        card_text(&card).contains("Abort 12001?"),
        "{}",
        card_text(&card)
    );
}

#[tokio::test]
async fn steady_state_with_a_space_option_is_one_put_and_one_reply() {
    let app = spawn_app().await;
    app.project.seed_space_with_own_abort_reasons();
    app.say(ALICE, Chat::Group, &format!("/abort {OPS_ITEM} budget_cut"))
        .await;
    app.say(ALICE, Chat::Group, &format!("/restore {OPS_ITEM} restart"))
        .await;
    app.project.clear_requests();
    app.lark.clear_requests();
    app.say(
        ALICE,
        Chat::Group,
        &format!("/abort {OPS_ITEM} 预算削减 again"),
    )
    .await;
    let project: Vec<String> = app
        .project
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        project,
        ["PUT /open_api/6f1e2d3c4b5a697887766554/work_item/story/41001/abort"]
    );
    let lark: Vec<String> = app.lark.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(lark, ["POST"], "only the reply");
}

#[tokio::test]
async fn a_restore_that_landed_before_a_crash_is_done_after_the_restart() {
    let mut app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Hang { apply: true });
    let message_id = new_message_id();
    let event = message_event(
        &new_event_id(),
        &message_id,
        ALICE,
        Chat::Group,
        "/restore 12348 rollback",
    );
    assert_eq!(app.post_event(&event).await.status(), 200);
    wait_for_puts(&app, 1).await;
    app.crash();
    assert!(!app.project.item(12348).expect("item").aborted, "it landed");

    let app = app.restart().await;
    let reply = app.reply_to(&message_id).await;
    let text = card_text(&reply.card);
    assert_eq!(card_color(&reply.card), "green", "{text}");
    assert!(!text.contains("is not aborted"), "20008 was ours: {text}");
    let puts = puts(&app);
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0].header("x-idem-uuid"), puts[1].header("x-idem-uuid"));
}

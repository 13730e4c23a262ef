//! The contract's limits through the real routes: too many refs, a reason too long, too many
//! commands and clicks by one person in a minute. Each gets a card (or, for a click, a toast)
//! at once, and nothing reaches Feishu Project.

use std::time::Duration;

use super::helpers::*;
use abort_bot::emulator::Recorded;
use serde_json::json;

/// Every Feishu Project call except the plugin token (the warm-up the contract allows).
fn project_calls(app: &TestApp) -> Vec<Recorded> {
    app.project
        .requests()
        .into_iter()
        .filter(|r| !r.path.contains("/authen/plugin_token"))
        .collect()
}

fn puts(app: &TestApp) -> Vec<Recorded> {
    app.project.requests_to("PUT", "/open_api/")
}

fn refs(n: u64) -> String {
    (1..=n)
        .map(|i| (12000 + i).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn more_refs_than_the_limit_get_a_card_naming_it_and_no_call() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {} test", refs(51)))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let text = card_text(&card);
    assert!(text.contains("Too many work items"), "{text}");
    assert!(
        text.contains("names 51 work items") && text.contains("at most 50"),
        "{text}"
    );
    assert!(text.contains("工作项太多"), "zh_cn too: {text}");
    assert_eq!(card_color(&card), "red");
    assert!(project_calls(&app).is_empty(), "{:?}", project_calls(&app));

    // Before the batch confirmation too: 51 with no option is not a picker either.
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort {}", refs(51)))
        .await;
    assert!(card_text(&card).contains("Too many work items"));
    // The limit itself is allowed: 50 refs ask for the batch confirmation.
    let card = app
        .say_final(ALICE, Chat::Group, &format!("/abort {} test", refs(50)))
        .await;
    assert!(
        card_text(&card).contains("50 work items?"),
        "{}",
        card_text(&card)
    );
    // The confirmation lists the items as the sender can see them; nothing changes before
    // Confirm.
    assert!(puts(&app).is_empty(), "{:?}", puts(&app));
}

#[tokio::test]
async fn a_reason_over_1000_characters_gets_a_card_and_no_put() {
    let app = spawn_app().await;
    let long = "长".repeat(1001);
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort 12345 other {long}"))
        .await;
    let text = card_text(&card);
    assert!(text.contains("The reason is too long"), "{text}");
    assert!(
        text.contains("1001 characters") && text.contains("at most 1000"),
        "{text}"
    );
    assert!(project_calls(&app).is_empty());

    let exactly = "长".repeat(1000);
    let card = app
        .say(ALICE, Chat::Group, &format!("/abort 12345 other {exactly}"))
        .await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert_eq!(puts(&app).len(), 1);
    assert_eq!(puts(&app)[0].body["reason"], exactly.as_str());
}

#[tokio::test]
async fn the_21st_command_in_a_minute_is_refused_with_when_to_try_again() {
    let app = spawn_app().await;
    // Neither /help nor refused commands count.
    for _ in 0..5 {
        app.say(ALICE, Chat::Group, "/help").await;
    }
    app.say(ALICE, Chat::Group, &format!("/abort {} test", refs(51)))
        .await;
    for _ in 0..19 {
        let card = app.say(ALICE, Chat::Group, "/bind doc").await;
        assert_eq!(card_color(&card), "green");
    }
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green", "the 20th: {}", card_text(&card));
    assert_eq!(puts(&app).len(), 1);
    let calls = project_calls(&app).len();

    let card = app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    let text = card_text(&card);
    assert!(text.contains("Too many requests"), "{text}");
    assert!(text.contains("Try again in 60 s"), "{text}");
    assert!(text.contains("请在 60 秒后再试"), "{text}");
    assert_eq!(project_calls(&app).len(), calls, "no call at all");
    // Someone else is not limited by Alice.
    let card = app.say(BOB, Chat::Group, "/bind doc").await;
    assert_eq!(card_color(&card), "green");

    app.clock.advance_secs(30);
    let card = app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    assert!(card_text(&card).contains("Try again in 30 s"));
    let card = app.say(ALICE, Chat::Group, "/help").await;
    assert!(
        !card_text(&card).contains("Too many requests"),
        "/help always answers"
    );

    // A full minute after the first twenty, twenty more: the two refusals never counted.
    app.clock.advance_secs(30);
    for _ in 0..19 {
        let card = app.say(ALICE, Chat::Group, "/bind doc").await;
        assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    }
    let card = app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert_eq!(puts(&app).len(), 2);
    assert!(
        app.lark
            .requests()
            .iter()
            .all(|r| !r.path.contains("/contact/")),
        "no lookup for a refusal either"
    );
}

#[tokio::test]
async fn a_click_over_the_rate_gets_a_toast_and_leaves_the_card_to_the_others() {
    let app = spawn_with(Options {
        extra: vec![("ABORT_BOT_USER_RATE", "2".into())],
        ..Options::default()
    })
    .await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    app.say(BOB, Chat::Group, "/bind doc").await;
    app.say(BOB, Chat::Group, "/bind doc").await;
    let patches_before = app.lark.requests_to("PATCH", "/open-apis/").len();

    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &message_id, "go")
                .form(json!({"option": "repeat", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.status, 200);
    assert_eq!(clicked.toast_type(), "warning", "{}", clicked.body);
    assert!(
        clicked.toast_en().contains("try again in 60 s"),
        "{}",
        clicked.toast_en()
    );
    assert!(clicked.card().is_none(), "the card is not replaced");
    assert_eq!(app.lark.message(&message_id).expect("card").card, card);
    assert!(puts(&app).is_empty());
    assert_eq!(
        app.lark.requests_to("PATCH", "/open-apis/").len(),
        patches_before
    );

    // The card's one action was not taken: Alice can still use it.
    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "repeat", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    assert_eq!(puts(&app).len(), 1);
    assert_eq!(puts(&app)[0].header("x-user-key"), Some(ALICE.user_key));
}

#[tokio::test]
async fn a_click_with_a_reason_over_the_limit_gets_a_toast_and_no_put() {
    let app = spawn_app().await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let long = "x".repeat(1001);
    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "other", "reason": long})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "warning", "{}", clicked.body);
    assert!(clicked.toast_en().contains("1001 characters"));
    assert!(clicked.card().is_none());
    assert_eq!(app.lark.message(&message_id).expect("card").card, card);
    assert!(puts(&app).is_empty());
    // Shortened, it acts.
    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "other", "reason": "x".repeat(1000)})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_card_with_more_items_than_the_limit_acts_on_none() {
    let app = spawn_with(Options {
        extra: vec![("ABORT_BOT_BATCH_CONFIRM", "1".into())],
        ..Options::default()
    })
    .await;
    let (message_id, _) = app
        .say_for_card(ALICE, Chat::Group, "/abort 12345 12346 test")
        .await;
    // The limit is lowered while the card waits for its confirmation.
    let app = app.restart_with(vec![("ABORT_BOT_MAX_ITEMS", "1")]).await;
    let clicked = app
        .click(&ClickOn::button(&app, ALICE, &message_id, "go"))
        .await;
    assert_eq!(clicked.toast_type(), "warning", "{}", clicked.body);
    assert!(
        clicked.toast_en().contains("2 work items") && clicked.toast_en().contains("at most 1"),
        "{}",
        clicked.toast_en()
    );
    assert!(puts(&app).is_empty());
}

//! Interactive cards through the real routes: the picker, Confirm as another person, Undo,
//! double clicks, forged and expired values, a slow upstream, batches, and the legacy
//! callback form.

use std::time::Duration;

use super::helpers::*;
use abort_bot::emulator::Recorded;
use abort_bot::emulator::project::{Endpoint, Fault};
use serde_json::json;

fn puts(app: &TestApp) -> Vec<Recorded> {
    app.project.requests_to("PUT", "/open_api/")
}

fn put_path(id: u64) -> String {
    format!("/open_api/{PROJECT_KEY}/work_item/story/{id}/abort")
}

#[tokio::test]
async fn the_picker_offers_the_options_and_confirm_acts_as_the_person_who_clicks() {
    let app = spawn_app().await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let text = card_text(&card);
    assert!(
        text.contains("Export a space as PDF"),
        "the item's name: {text}"
    );
    assert!(text.contains("currently not aborted"), "its state: {text}");
    assert!(text.contains("重复/合并"), "zh_cn labels: {text}");
    assert_eq!(card["config"]["update_multi"], true);
    assert!(puts(&app).is_empty(), "the picker changes nothing");

    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &message_id, "go")
                .form(json!({"option": "repeat", "reason": "dup of 12001"})),
        )
        .await;
    assert_eq!(clicked.status, 200);
    assert!(clicked.elapsed < Duration::from_secs(3));
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    assert_eq!(clicked.toast_en(), "Aborted: 12345");
    let result = clicked.card().expect("the result card replaces the picker");
    assert_eq!(card_color(result), "green");
    assert!(
        card_text(result).contains(BOB.open_id),
        "the clicker is the actor"
    );

    let puts = puts(&app);
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].path, put_path(12345));
    assert_eq!(
        puts[0].header("x-user-key"),
        Some(BOB.user_key),
        "not Alice's"
    );
    assert_eq!(
        puts[0].body,
        json!({"is_aborted": true, "reason": "dup of 12001", "reason_option": "repeat"})
    );
    assert_eq!(
        app.project.item(12345).expect("item").changed_by,
        BOB.user_key
    );
}

#[tokio::test]
async fn undo_restores_in_place_and_then_offers_abort_again() {
    let app = spawn_app().await;
    let (message_id, card) = app
        .say_for_card(ALICE, Chat::Group, "/abort 12345 repeat")
        .await;
    assert!(app.project.item(12345).expect("item").aborted);
    assert!(card_text(&card).contains("Undo"));
    let restore_options: Vec<&str> =
        find_named(&card, "option").expect("undo asks an option")["options"]
            .as_array()
            .expect("options")
            .iter()
            .filter_map(|o| o["value"].as_str())
            .collect();
    assert_eq!(restore_options, ["restart", "rollback", "test", "other"]);

    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "rollback", "reason": "wrong item"})),
        )
        .await;
    assert_eq!(clicked.toast_en(), "Restored: 12345", "{}", clicked.body);
    let puts = puts(&app);
    assert_eq!(puts.len(), 2);
    assert_eq!(
        puts[1].body,
        json!({"is_aborted": false, "reason": "wrong item", "reason_option": "rollback"})
    );
    assert_ne!(
        puts[0].header("x-idem-uuid"),
        puts[1].header("x-idem-uuid"),
        "the undo is a request of its own"
    );
    assert!(!app.project.item(12345).expect("item").aborted);
    let card = clicked.card().expect("card");
    assert!(
        card_text(card).contains("Abort again"),
        "{}",
        card_text(card)
    );
}

#[tokio::test]
async fn other_without_a_reason_is_refused_on_the_card_and_can_then_be_fixed() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12346").await;
    let refused = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "other", "reason": "  "})),
        )
        .await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.toast_type(), "warning");
    assert!(
        refused.toast_en().contains("needs a reason"),
        "{}",
        refused.body
    );
    assert!(refused.card().is_none(), "the form stays as it is");
    let no_option = app
        .click(&ClickOn::button(&app, ALICE, &message_id, "go").form(json!({"reason": "x"})))
        .await;
    assert!(no_option.toast_en().contains("Pick a reason option"));
    assert!(puts(&app).is_empty());

    let fixed = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "other", "reason": "budget cut"})),
        )
        .await;
    assert_eq!(fixed.toast_type(), "success", "{}", fixed.body);
    assert_eq!(puts(&app)[0].body["reason"], "budget cut");
}

#[tokio::test]
async fn double_clicks_and_a_second_person_act_once() {
    let app = spawn_app().await;
    let (message_id, picker) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let click =
        ClickOn::button(&app, BOB, &message_id, "go").form(json!({"option": "test", "reason": ""}));
    let first = app.click(&click).await;
    assert_eq!(first.toast_type(), "success");

    // Lark redelivers the same callback: the same answer, nothing done again.
    let again = app.click(&click).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.card(), first.card(), "the same card again");

    // Bob clicks the old Confirm again (a new callback), then Alice does.
    let mut stale = click.clone();
    stale.event_id = new_event_id();
    let bob_again = app.click(&stale).await;
    assert!(
        bob_again.toast_en().contains("You already did this"),
        "{}",
        bob_again.body
    );
    let mut alice = stale.clone();
    alice.who = ALICE;
    alice.event_id = new_event_id();
    alice.value = button_value(&picker, "go");
    let second = app.click(&alice).await;
    assert_eq!(second.toast_type(), "warning");
    assert_eq!(
        second.toast_en(),
        "Already done by bob; nothing was done twice."
    );
    assert_eq!(second.card(), first.card(), "and she sees the result");

    let puts = puts(&app);
    assert_eq!(puts.len(), 1, "one PUT for the card: {puts:?}");
    assert_eq!(puts[0].header("x-user-key"), Some(BOB.user_key));
}

#[tokio::test]
async fn two_simultaneous_clicks_send_one_put() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12347").await;
    let form = json!({"option": "cancel", "reason": ""});
    let a = ClickOn::button(&app, ALICE, &message_id, "go").form(form.clone());
    let b = ClickOn::button(&app, BOB, &message_id, "go").form(form);
    let (ra, rb) = tokio::join!(app.click(&a), app.click(&b));
    let toasts = [ra.toast_type(), rb.toast_type()];
    assert!(
        toasts.contains(&"success") && toasts.contains(&"warning"),
        "one acts, the other is told: {toasts:?}"
    );
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_forged_or_foreign_value_does_nothing() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let mut forged = ClickOn::button(&app, BOB, &message_id, "go")
        .form(json!({"option": "repeat", "reason": ""}));
    forged.value["i"] = json!([format!("{PROJECT_KEY}/story/12346")]);
    let answer = app.click(&forged).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.toast_type(), "error");
    assert!(answer.toast_en().contains("not valid"), "{}", answer.body);
    assert!(answer.card().is_none());

    let mut foreign = forged.clone();
    foreign.event_id = new_event_id();
    foreign.value = json!({"cmd": "abort", "work_item_id": "12345", "mode": "repeat"});
    assert!(app.click(&foreign).await.toast_en().contains("not valid"));

    assert!(puts(&app).is_empty());
    assert!(!app.project.item(12346).expect("item").aborted);
    // The real button still works: the forged clicks claimed nothing.
    let real = ClickOn::button(&app, BOB, &message_id, "go")
        .form(json!({"option": "repeat", "reason": ""}));
    assert_eq!(app.click(&real).await.toast_type(), "success");
}

#[tokio::test]
async fn a_card_past_the_interaction_window_does_nothing() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let click = ClickOn::button(&app, ALICE, &message_id, "go")
        .form(json!({"option": "repeat", "reason": ""}));
    app.clock.advance_secs(14 * 24 * 3600 + 1);
    let answer = app.click(&click).await;
    assert_eq!(answer.toast_type(), "warning");
    assert!(
        answer.toast_en().contains("more than 14 days old"),
        "{}",
        answer.body
    );
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn a_card_inside_the_window_still_works() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    app.clock.advance_secs(13 * 24 * 3600);
    let click = ClickOn::button(&app, ALICE, &message_id, "go")
        .form(json!({"option": "repeat", "reason": ""}));
    assert_eq!(app.click(&click).await.toast_type(), "success");
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_slow_upstream_answers_in_progress_then_uses_the_delayed_update() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(3800)));
    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &message_id, "go")
                .form(json!({"option": "repeat", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.status, 200);
    assert!(
        clicked.elapsed < Duration::from_secs(3),
        "answered within Lark's 3 s: {:?}",
        clicked.elapsed
    );
    assert_eq!(clicked.toast_type(), "info", "{}", clicked.body);
    assert!(
        clicked.toast_en().contains("Working on it"),
        "{}",
        clicked.body
    );
    // The shared card stays as it was until the result is known: if the action turns out
    // to be the clicker's to fail, the others can still use it.
    assert!(clicked.card().is_none(), "{}", clicked.body);
    assert_eq!(
        card_color(&app.lark.message(&message_id).expect("card").card),
        "blue"
    );

    wait_within("the delayed update", Duration::from_secs(8), || {
        !app.lark
            .requests_to("POST", "/open-apis/interactive/v1/card/update")
            .is_empty()
    })
    .await;
    let updates = app
        .lark
        .requests_to("POST", "/open-apis/interactive/v1/card/update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body["token"], clicked.card_token.as_str());
    assert_eq!(card_color(&updates[0].body["card"]), "green");
    let message = app.lark.message(&message_id).expect("message");
    assert_eq!(
        card_color(&message.card),
        "green",
        "the card shows the result"
    );
    assert_eq!(puts(&app).len(), 1);
    assert_eq!(puts(&app)[0].header("x-user-key"), Some(BOB.user_key));
}

#[tokio::test]
async fn without_a_usable_card_token_the_late_result_is_patched_onto_the_message() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    app.project
        .push_fault(Endpoint::Abort, Fault::Delay(Duration::from_millis(3000)));
    let clicked = app
        .click_on(
            "/lark/cards",
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "test", "reason": ""})),
        )
        .await;
    assert!(clicked.elapsed < Duration::from_secs(3));
    // Lark no longer knows the token (expired, used up): the update is refused.
    app.lark.state().card_tokens.clear();
    let patch_path = format!("/open-apis/im/v1/messages/{message_id}");
    wait_within("the PATCH", Duration::from_secs(8), || {
        !app.lark.requests_to("PATCH", &patch_path).is_empty()
    })
    .await;
    let message = app.lark.message(&message_id).expect("message");
    assert_eq!(message.updates, 1);
    assert_eq!(card_color(&message.card), "green");
}

#[tokio::test]
async fn a_batch_with_mixed_outcomes_has_a_row_each_undo_and_retry() {
    let app = spawn_app().await;
    // Feishu Project is rate limiting the first PUT through every retry.
    for _ in 0..4 {
        app.project.push_fault(
            Endpoint::Abort,
            Fault::Error {
                status: 429,
                code: 10429,
                msg: "API Request Frequency Limit".into(),
            },
        );
    }
    let (message_id, card) = app
        .say_for_card(
            ALICE,
            Chat::Group,
            "/abort 12345 12346 12348 12349 32001 repeat",
        )
        .await;
    let text = card_text(&card);
    for row in [
        "12345 · Export a space as PDF",
        "busy, try again",
        "12346 · Dark mode for the board",
        "already aborted",
        "blocked by a rule",
        "state flow",
    ] {
        assert!(text.contains(row), "{row}: {text}");
    }
    assert!(text.contains("Undo"), "12346 was aborted: {text}");
    let retry = button_value(&card, "retry");
    assert_eq!(
        retry["i"],
        json!([format!("{PROJECT_KEY}/story/12345")]),
        "Retry only what a retry can help"
    );
    assert_eq!(
        button_value(&card, "go")["i"],
        json!([format!("{PROJECT_KEY}/story/12346")])
    );

    let before = puts(&app).len();
    let clicked = app
        .click(&ClickOn::button(&app, BOB, &message_id, "retry"))
        .await;
    assert_eq!(clicked.toast_en(), "Aborted: 12345", "{}", clicked.body);
    let after = puts(&app);
    assert_eq!(after.len(), before + 1, "one more PUT, for 12345 only");
    let last = after.last().expect("put");
    assert_eq!(last.path, put_path(12345));
    assert_eq!(last.header("x-user-key"), Some(BOB.user_key));
    assert_eq!(last.body["reason_option"], "repeat");
    assert!(app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn a_batch_above_the_limit_asks_first_then_acts_as_the_confirmer() {
    let app = spawn_app().await;
    let (message_id, card) = app
        .say_for_card(
            ALICE,
            Chat::Group,
            "/abort 12345 12346 12347 12350 22001 22002 test cleanup",
        )
        .await;
    assert!(
        card_text(&card).contains("6 work items?"),
        "{}",
        card_text(&card)
    );
    assert!(card_text(&card).contains("more than 5"));
    // The items are listed with their names, as Alice's own lookup found them.
    assert!(
        card_text(&card).contains("**12345** Export a space as PDF"),
        "{}",
        card_text(&card)
    );
    assert!(puts(&app).is_empty(), "nothing before the confirmation");

    let clicked = app
        .click(&ClickOn::button(&app, BOB, &message_id, "go"))
        .await;
    assert_eq!(clicked.status, 200);
    let puts = puts(&app);
    assert_eq!(puts.len(), 6);
    assert!(
        puts.iter()
            .all(|p| p.header("x-user-key") == Some(BOB.user_key))
    );
    assert!(puts.iter().all(|p| p.body["reason"] == "cleanup"));
    let result = clicked.card().expect("card");
    assert!(
        card_text(result).contains("6 work items"),
        "{}",
        card_text(result)
    );
}

#[tokio::test]
async fn cancel_closes_the_card_and_a_later_confirm_is_told_who_cancelled() {
    let app = spawn_app().await;
    let (message_id, picker) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let cancelled = app
        .click(&ClickOn::button(&app, ALICE, &message_id, "cancel"))
        .await;
    let card = cancelled.card().expect("card");
    assert_eq!(card_color(card), "grey");
    assert!(card_text(card).contains("nothing was changed"));

    // Bob still sees the picker and clicks its Confirm.
    let late = ClickOn {
        who: BOB,
        message_id: &message_id,
        value: button_value(&picker, "go"),
        form: json!({"option": "repeat", "reason": ""}),
        event_id: new_event_id(),
        button: "go".into(),
    };
    let answer = app.click(&late).await;
    assert_eq!(answer.toast_en(), "Already cancelled by alice.");
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn a_legacy_callback_acts_as_its_open_id_and_answers_with_the_card() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12346").await;
    let click = ClickOn::button(&app, BOB, &message_id, "go")
        .form(json!({"option": "cancel", "reason": "not now"}));

    let forged = app.legacy_click(&click, Some(&"0".repeat(40))).await;
    assert_eq!(forged.status, 401, "the SHA-1 signature is checked");
    assert!(puts(&app).is_empty());

    let contact = format!("/open-apis/contact/v3/users/{}", BOB.open_id);
    let before = app.lark.requests_to("GET", &contact).len();
    let answer = app.legacy_click(&click, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.elapsed < Duration::from_secs(3));
    assert_eq!(
        answer.body["schema"], "2.0",
        "the answer is the card itself"
    );
    assert_eq!(card_color(&answer.body), "green");
    assert!(
        app.lark.requests_to("GET", &contact).len() > before,
        "only an open_id: the union_id comes from the contact API"
    );
    let puts = puts(&app);
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].header("x-user-key"), Some(BOB.user_key));
    assert_eq!(puts[0].body["reason"], "not now");

    // The same click again (no event_id: same message, person and value) acts once.
    let again = app.legacy_click(&click, None).await;
    assert_eq!(again.status, 200);
    assert_eq!(app.project.requests_to("PUT", "/open_api/").len(), 1);
}

#[tokio::test]
async fn a_legacy_click_with_a_foreign_value_gets_a_toast() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12346").await;
    let mut click = ClickOn::button(&app, BOB, &message_id, "go");
    click.value = json!({"cmd": "abort", "id": "12346"});
    let answer = app.legacy_click(&click, None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["toast"]["type"], "error", "{}", answer.body);
    assert!(puts(&app).is_empty());
}

#[tokio::test]
async fn a_picker_for_an_unknown_item_says_so_and_offers_nothing() {
    let app = spawn_app().await;
    let (_, card) = app.say_for_card(ALICE, Chat::Group, "/abort 99999").await;
    let text = card_text(&card);
    assert!(text.contains("99999"), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert!(find_named(&card, "go").is_none(), "no Confirm for nothing");
    assert_eq!(card["schema"], "2.0");
}

/// Every request that could change a card already sent: a PATCH or a delayed update.
fn card_updates(app: &TestApp) -> usize {
    app.lark
        .requests_to("PATCH", "/open-apis/im/v1/messages/")
        .len()
        + app
            .lark
            .requests_to("POST", "/open-apis/interactive/v1/card/update")
            .len()
}

#[tokio::test]
async fn a_click_without_permission_answers_the_clicker_and_leaves_the_card_to_the_others() {
    let app = spawn_app().await;
    let (message_id, card) = app
        .say_for_card(BOB, Chat::Group, "/abort 12345 repeat")
        .await;
    assert_eq!(card_color(&card), "green");
    assert_eq!(puts(&app).len(), 1);

    // Carol is a Feishu Project user but not a member of the space.
    let clicked = app
        .click(
            &ClickOn::button(&app, CAROL, &message_id, "go")
                .form(json!({"option": "rollback", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.status, 200);
    assert!(clicked.elapsed < Duration::from_secs(3));
    assert_eq!(clicked.toast_type(), "error", "{}", clicked.body);
    assert!(
        clicked.toast_en().contains("no permission"),
        "{}",
        clicked.toast_en()
    );
    assert!(clicked.card().is_none(), "the card is not replaced");
    assert_eq!(
        app.lark.message(&message_id).expect("card").card,
        card,
        "Bob's card is as it was for the whole group"
    );
    assert_eq!(card_updates(&app), 0, "no PATCH, no delayed update");
    assert!(
        puts(&app)
            .iter()
            .skip(1)
            .all(|p| p.header("x-user-key") == Some(CAROL.user_key)),
        "only Carol's own try, which Feishu Project refused"
    );
    assert!(app.project.item(12345).expect("item").aborted);

    // The card's one action is still there: Bob undoes.
    let clicked = app
        .click(
            &ClickOn::button(&app, BOB, &message_id, "go")
                .form(json!({"option": "rollback", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    assert_eq!(clicked.toast_en(), "Restored: 12345");
    let bobs: Vec<_> = puts(&app)
        .into_iter()
        .filter(|p| p.header("x-user-key") == Some(BOB.user_key))
        .collect();
    assert_eq!(bobs.len(), 2, "Bob's abort, then Bob's undo");
    assert!(!app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn a_click_by_someone_feishu_project_does_not_know_takes_nothing() {
    let app = spawn_app().await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let clicked = app
        .click(
            &ClickOn::button(&app, DAVE, &message_id, "go")
                .form(json!({"option": "test", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "error", "{}", clicked.body);
    assert!(
        clicked.toast_en().contains("not a Feishu Project user"),
        "{}",
        clicked.toast_en()
    );
    assert!(clicked.card().is_none());
    assert_eq!(app.lark.message(&message_id).expect("card").card, card);
    assert!(puts(&app).is_empty());

    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "test", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn already_used_answers_within_the_budget_when_the_contact_api_is_slow() {
    let app = spawn_app().await;
    let (message_id, _) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    let go = ClickOn::button(&app, ALICE, &message_id, "go");
    let first = app
        .click(&go.clone().form(json!({"option": "test", "reason": ""})))
        .await;
    assert_eq!(first.toast_type(), "success", "{}", first.body);

    app.lark.state().contact_delay = Some(Duration::from_secs(6));
    // Bob clicks the button of the card as it was (his client had not refreshed yet).
    let second = app
        .click(&ClickOn {
            who: BOB,
            event_id: new_event_id(),
            ..go.form(json!({"option": "test", "reason": ""}))
        })
        .await;
    assert_eq!(second.status, 200);
    assert!(
        second.elapsed < Duration::from_secs(3),
        "answered within Lark's 3 s: {:?}",
        second.elapsed
    );
    assert_eq!(second.toast_type(), "warning", "{}", second.body);
    assert_eq!(
        second.toast_en(),
        "Already done by someone else; nothing was done twice."
    );
    assert!(
        !app.lark
            .requests_to("GET", "/open-apis/contact/")
            .is_empty(),
        "the name was asked for, within the budget"
    );
    assert_eq!(puts(&app).len(), 1);
}

#[tokio::test]
async fn a_slow_click_that_fails_for_the_clicker_tells_them_alone() {
    let app = spawn_app().await;
    let (message_id, card) = app.say_for_card(ALICE, Chat::Group, "/abort 12345").await;
    // Carol's identity lookup is slow: past the budget, the answer is "working on it".
    app.project.push_fault(
        Endpoint::UserQuery,
        Fault::Delay(Duration::from_millis(3000)),
    );
    let clicked = app
        .click(
            &ClickOn::button(&app, CAROL, &message_id, "go")
                .form(json!({"option": "test", "reason": ""})),
        )
        .await;
    assert!(clicked.elapsed < Duration::from_secs(3));
    assert_eq!(clicked.toast_type(), "info", "{}", clicked.body);
    wait_within("a direct message to Carol", Duration::from_secs(8), || {
        app.lark
            .requests_to("POST", "/open-apis/im/v1/messages?receive_id_type=open_id")
            .iter()
            .any(|r| r.body["receive_id"] == CAROL.open_id)
    })
    .await;
    let sent = app
        .lark
        .requests_to("POST", "/open-apis/im/v1/messages?receive_id_type=open_id");
    assert_eq!(sent.len(), 1);
    let dm: serde_json::Value =
        serde_json::from_str(sent[0].body["content"].as_str().unwrap_or_default()).expect("a card");
    assert!(
        card_text(&dm).contains("No permission"),
        "{}",
        card_text(&dm)
    );
    assert_eq!(card_updates(&app), 0);
    assert_eq!(app.lark.message(&message_id).expect("card").card, card);

    let clicked = app
        .click(
            &ClickOn::button(&app, ALICE, &message_id, "go")
                .form(json!({"option": "test", "reason": ""})),
        )
        .await;
    assert_eq!(clicked.toast_type(), "success", "{}", clicked.body);
    let alices = puts(&app)
        .into_iter()
        .filter(|p| p.header("x-user-key") == Some(ALICE.user_key))
        .count();
    assert_eq!(alices, 1);
}

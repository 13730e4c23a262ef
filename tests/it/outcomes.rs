//! Every outcome the contract lists, each answered with its own card.

use super::helpers::*;
use abort_bot::emulator::project::{Endpoint, Fault};

fn fault(status: u16, code: i64, msg: &str) -> Fault {
    Fault::Error {
        status,
        code,
        msg: msg.into(),
    }
}

fn puts(app: &TestApp) -> usize {
    app.project.requests_to("PUT", "/open_api/").len()
}

#[tokio::test]
async fn already_aborted_and_already_restored() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12348 cancel").await;
    assert_eq!(card_color(&card), "orange");
    assert!(card_text(&card).contains("was already aborted"));
    assert!(
        card_text(&card).contains("/restore 12348 restart"),
        "what to do next"
    );
    let card = app.say(ALICE, Chat::Group, "/restore 12345 restart").await;
    assert!(card_text(&card).contains("is not aborted"));
    assert_eq!(puts(&app), 2);
}

#[tokio::test]
async fn unknown_id_is_not_found_without_a_put() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 99999 test").await;
    assert_eq!(card_color(&card), "red");
    assert!(card_text(&card).contains("has no work item 99999"));
    assert_eq!(puts(&app), 0);
}

#[tokio::test]
async fn not_found_at_the_put_too() {
    let app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Abort, fault(404, 30005, "WorkItem Not Found"));
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("not found"));
}

#[tokio::test]
async fn state_flow_items_cannot_be_aborted() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 32001 cancel").await;
    assert!(
        card_text(&card).contains("uses a state flow"),
        "{}",
        card_text(&card)
    );
    assert_eq!(puts(&app), 1);
}

#[tokio::test]
async fn intercepted_by_a_space_rule_and_not_retried() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12349 cancel").await;
    assert!(card_text(&card).contains("interception rule"));
    assert_eq!(puts(&app), 1, "business errors are never retried");
}

#[tokio::test]
async fn reason_missing_from_the_server() {
    let app = spawn_app().await;
    app.project.push_fault(
        Endpoint::Abort,
        fault(400, 20009, "Abort Or Restore WorkItem No Reason"),
    );
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("needs a reason"));
}

#[tokio::test]
async fn no_permission_for_a_non_member_and_on_10301() {
    let app = spawn_app().await;
    let card = app.say(CAROL, Chat::Group, "/abort 12345 test").await;
    assert!(
        card_text(&card).contains("no permission"),
        "{}",
        card_text(&card)
    );
    assert_eq!(puts(&app), 0);
    app.project.push_fault(
        Endpoint::Abort,
        fault(401, 10301, "Check Token Perm Failed"),
    );
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("no permission"));
    assert!(!app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn unknown_space_in_a_url_ref() {
    let app = spawn_app().await;
    let card = app
        .say(
            ALICE,
            Chat::Group,
            "/abort https://project.feishu.cn/nowhere/story/detail/12345 test",
        )
        .await;
    assert!(
        card_text(&card).contains("Space `nowhere` does not exist"),
        "{}",
        card_text(&card)
    );
    assert_eq!(puts(&app), 0);
}

#[tokio::test]
async fn a_lark_user_without_a_feishu_project_account() {
    let app = spawn_app().await;
    let card = app.say(DAVE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("not a Feishu Project user"));
    let queries = app.project.requests_to("POST", "/open_api/user/query");
    assert_eq!(queries.len(), 2, "by union_id, then by email");
    assert_eq!(
        queries[0].body,
        serde_json::json!({"out_ids": [DAVE.union_id]})
    );
    assert_eq!(queries[1].body, serde_json::json!({"emails": [DAVE.email]}));
    assert_eq!(puts(&app), 0);
}

#[tokio::test]
async fn the_email_fallback_finds_a_user_whose_union_id_is_unknown() {
    let app = spawn_app().await;
    let erin = Person {
        open_id: "ou_erin000000000000000000000000000",
        union_id: "on_erin_from_another_developer_00",
        user_key: BOB.user_key,
        email: BOB.email,
    };
    app.lark.add_user(abort_bot::emulator::lark::User {
        open_id: erin.open_id.into(),
        union_id: erin.union_id.into(),
        email: erin.email.into(),
        name: "erin".into(),
    });
    let card = app.say(erin, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    let put = &app.project.requests_to("PUT", "/open_api/")[0];
    assert_eq!(put.header("x-user-key"), Some(BOB.user_key));
}

#[tokio::test]
async fn rate_limited_then_success_sends_the_same_idempotency_key() {
    let app = spawn_app().await;
    app.project.push_fault(
        Endpoint::Abort,
        fault(429, 10429, "API Request Frequency Limit"),
    );
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green");
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0].header("x-idem-uuid"), puts[1].header("x-idem-uuid"));
    assert!(app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn busy_after_retries_says_try_again_and_changes_nothing() {
    let app = spawn_app().await;
    for _ in 0..4 {
        app.project.push_fault(
            Endpoint::Abort,
            fault(429, 10429, "API Request Frequency Limit"),
        );
    }
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    let text = card_text(&card);
    assert!(text.contains("Feishu Project is busy"), "{text}");
    assert!(text.contains("10429"), "{text}");
    assert_eq!(puts(&app), 4, "one try and three retries");
    assert!(!app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn upstream_down_is_retried_then_reported() {
    let app = spawn_app().await;
    app.project
        .push_fault(Endpoint::Abort, fault(503, 50006, "openapi system err"));
    app.project.push_fault(Endpoint::Abort, fault(502, 0, ""));
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert_eq!(card_color(&card), "green", "{}", card_text(&card));
    assert_eq!(puts(&app), 3);
    for _ in 0..4 {
        app.project.push_fault(Endpoint::Abort, fault(502, 0, ""));
    }
    let card = app
        .say_final(ALICE, Chat::Group, "/restore 12345 rollback")
        .await;
    // A 502 may come from a gateway after the server took the PUT: the item is read back.
    let text = card_text(&card);
    assert!(text.contains("Not confirmed: 12345"), "{text}");
    assert!(text.contains("the item is **aborted**"), "{text}");
    assert!(
        find_named(&card, "retry").is_some(),
        "a Retry button: {card}"
    );
}

#[tokio::test]
async fn an_unknown_error_code_is_shown_with_its_code() {
    let app = spawn_app().await;
    app.project.push_fault(
        Endpoint::Abort,
        fault(400, 20044, "work item type disabled"),
    );
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("20044 work item type disabled"));
}

//! Link previews through the real routes: `url.preview.get` fetched by the emulated Lark as a
//! given viewer (signed and encrypted over HTTP, or over the long connection), answered in
//! time, looked up as the viewer, and refreshed with the batch update API when the bot
//! changes the item.

use std::sync::Arc;
use std::time::Duration;

use abort_bot::emulator::card_rules;
use abort_bot::emulator::inbound::LarkApp;
use abort_bot::emulator::lark_preview::{PreviewLink, PreviewTarget, Shown};
use abort_bot::emulator::project::{Endpoint, Fault};
use serde_json::{Value, json};

use super::helpers::*;

const ITEM_URL: &str = "https://project.feishu.cn/doc/story/detail/12345";

fn app_keys(app: &TestApp) -> LarkApp {
    LarkApp {
        app_id: APP_ID.into(),
        verification_token: VT.into(),
        encrypt_key: app.options.encrypt_key.map(str::to_owned),
        tenant_key: "2ca1d211f64f6438".into(),
    }
}

/// A bot with an Encrypt Key whose previews the emulated clients fetch over HTTP.
async fn spawn_http() -> TestApp {
    let app = spawn_with(Options {
        encrypt_key: Some(EK),
        ..Options::default()
    })
    .await;
    app.lark.set_preview_target(PreviewTarget::Http {
        url: app.url("/lark/events"),
        app: app_keys(&app),
        clock: Arc::new(app.clock.clone()),
    });
    app
}

fn link(token: &str) -> PreviewLink {
    PreviewLink {
        url: ITEM_URL.into(),
        preview_token: Some(token.into()),
        message_id: Some(new_message_id()),
        chat_id: Some(GROUP_CHAT.into()),
    }
}

fn inline(answer: &Value) -> (String, String) {
    let t = |lang: &str| {
        answer
            .pointer(&format!("/inline/i18n_title/{lang}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (t("zh_cn"), t("en_us"))
}

fn preview_card(answer: &Value) -> Option<&Value> {
    (answer.pointer("/card/type") == Some(&json!("raw")))
        .then(|| answer.pointer("/card/data"))
        .flatten()
}

/// Waits (bounded) until `viewer` has fetched preview `token` `n` times; what it shows then.
async fn fetched(app: &TestApp, token: &str, viewer: Person, n: u32) -> Shown {
    wait_within(
        &format!("{} fetched {token} {n} times", viewer.open_id),
        Duration::from_secs(20),
        || {
            app.lark
                .shown_preview(token, viewer.open_id)
                .is_some_and(|s| s.fetches >= n)
        },
    )
    .await;
    app.lark
        .shown_preview(token, viewer.open_id)
        .expect("shown")
}

/// A click on the preview card's submit button as Lark sends it for a preview (§10.5).
fn preview_click(who: Person, link: &PreviewLink, card: &Value, form: Value) -> Value {
    envelope(
        &new_event_id(),
        "card.action.trigger",
        json!({
            "operator": {"tenant_key": "2ca1d211f64f6438", "open_id": who.open_id,
                         "union_id": who.union_id},
            "token": format!("c-{:040x}", rand::random::<u128>()),
            "action": {"value": button_value(card, "go"), "tag": "button", "name": "go",
                       "form_value": form},
            "host": "im_message",
            "delivery_type": "url_preview",
            "context": {"url": link.url, "preview_token": link.preview_token,
                        "open_message_id": link.message_id, "open_chat_id": link.chat_id}
        }),
    )
}

#[tokio::test]
async fn a_work_item_link_gets_its_title_and_a_card_looked_up_as_the_viewer() {
    let app = spawn_http().await;
    let l = link("pt_alice");
    let answer = app
        .lark
        .fetch_preview(ALICE.open_id, &l)
        .await
        .expect("answered");
    let shown = app
        .lark
        .shown_preview("pt_alice", ALICE.open_id)
        .expect("shown");
    assert!(shown.took < Duration::from_secs(3), "took {:?}", shown.took);
    assert_eq!(
        inline(&answer),
        (
            "Export a space as PDF · 需求 · 进行中".to_owned(),
            "Export a space as PDF · 需求 · Active".to_owned()
        )
    );
    assert_eq!(
        answer["inline"]["title"],
        "Export a space as PDF · 需求 · Active"
    );
    let card = preview_card(&answer).expect("a card for a viewer who may see the item");
    card_rules::check(card).expect("Lark accepts the card");
    let text = card_text(card);
    for part in ["Export a space as PDF", "Docs Team", "Active", "Abort"] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(
        find_named(card, "option").is_some() && find_named(card, "reason").is_some(),
        "the option and reason form"
    );
    let queries = app.project.requests_to("POST", "/open_api/");
    assert!(
        queries
            .iter()
            .filter(|r| r.path.contains("/work_item/"))
            .all(|r| r.header("x-user-key") == Some(ALICE.user_key)),
        "looked up as the viewer"
    );
    assert!(app.project.requests_to("PUT", "/open_api/").is_empty());
    assert!(app.lark.requests_to("PATCH", "/open-apis/").is_empty());
}

#[tokio::test]
async fn a_viewer_without_access_sees_only_what_the_link_says() {
    let app = spawn_http().await;
    for who in [CAROL, DAVE] {
        let answer = app
            .lark
            .fetch_preview(who.open_id, &link("pt_out"))
            .await
            .expect("answered");
        assert_eq!(
            inline(&answer),
            (
                "飞书项目 doc · story #12345".to_owned(),
                "Feishu Project doc · story #12345".to_owned()
            ),
            "{}",
            who.open_id
        );
        assert!(answer.get("card").is_none(), "no card: {answer}");
        assert!(
            !answer.to_string().contains("Export a space"),
            "not the item's name"
        );
    }
    assert!(app.project.requests_to("PUT", "/open_api/").is_empty());
}

#[tokio::test]
async fn a_link_that_names_no_work_item_gets_a_plain_title_and_a_malformed_callback_a_4xx() {
    let app = spawn_http().await;
    let answer = app
        .lark
        .fetch_preview(
            ALICE.open_id,
            &PreviewLink {
                url: "https://project.feishu.cn/doc/overview".into(),
                ..link("pt_home")
            },
        )
        .await
        .expect("answered");
    assert_eq!(
        inline(&answer),
        ("飞书项目链接".to_owned(), "Feishu Project link".to_owned())
    );
    assert!(app.project.requests().is_empty(), "nothing looked up");
    let bad = envelope(
        &new_event_id(),
        "url.preview.get",
        json!({"operator": {"open_id": ALICE.open_id}, "context": {}}),
    );
    assert_eq!(app.post_event(&bad).await.status(), 400);
}

#[tokio::test]
async fn slow_feishu_project_is_answered_in_time_with_the_links_title_then_refreshed() {
    let app = spawn_http().await;
    app.project
        .push_fault(Endpoint::Query, Fault::Delay(Duration::from_secs(4)));
    let l = link("pt_slow");
    let first = app
        .lark
        .fetch_preview(ALICE.open_id, &l)
        .await
        .expect("answered");
    let shown = app
        .lark
        .shown_preview("pt_slow", ALICE.open_id)
        .expect("shown");
    assert!(
        shown.took < Duration::from_secs(3),
        "answered in {:?}",
        shown.took
    );
    assert_eq!(inline(&first).1, "Feishu Project doc · story #12345");
    assert!(first.get("card").is_none());
    // The lookup finishes; the bot refreshes this viewer's preview, which is re-fetched.
    let refreshed = fetched(&app, "pt_slow", ALICE, 2).await;
    assert_eq!(
        inline(&refreshed.answer).1,
        "Export a space as PDF · 需求 · Active"
    );
    assert!(preview_card(&refreshed.answer).is_some());
    assert!(refreshed.took < Duration::from_secs(3));
    let calls = app.lark.preview_refreshes();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].preview_tokens, vec!["pt_slow".to_owned()]);
    assert_eq!(calls[0].open_ids, vec![ALICE.open_id.to_owned()]);
    assert!(app.lark.preview_refusals().is_empty());
}

#[tokio::test]
async fn a_click_on_the_preview_acts_as_the_clicker_and_the_result_replaces_the_form() {
    let app = spawn_http().await;
    let l = link("pt_click");
    app.lark
        .fetch_preview(ALICE.open_id, &l)
        .await
        .expect("answered");
    let bobs = app
        .lark
        .fetch_preview(BOB.open_id, &l)
        .await
        .expect("answered");
    let card = preview_card(&bobs).expect("card").clone();
    let click = preview_click(
        BOB,
        &l,
        &card,
        json!({"option": "repeat", "reason": "dup of 12001"}),
    );
    let resp = app.post_event(&click).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["toast"]["type"], "success", "{body}");
    assert!(
        body.get("card").is_none(),
        "a preview is refreshed, not replaced by the answer: {body}"
    );
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].header("x-user-key"), Some(BOB.user_key));
    assert_eq!(
        puts[0].body,
        json!({"is_aborted": true, "reason": "dup of 12001", "reason_option": "repeat"})
    );
    for who in [ALICE, BOB] {
        let shown = fetched(&app, "pt_click", who, 2).await;
        assert_eq!(
            inline(&shown.answer).1,
            "Export a space as PDF · 需求 · Aborted"
        );
        let card = preview_card(&shown.answer).expect("card");
        assert!(card_text(card).contains("Restore"), "{}", card_text(card));
    }
    assert!(
        app.lark.requests_to("PATCH", "/open-apis/").is_empty(),
        "the message is the person's: never PATCHed"
    );
    assert!(
        app.lark
            .requests_to("POST", "/open-apis/interactive/v1/card/update")
            .is_empty()
    );
    let calls = app.lark.preview_refreshes();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].preview_tokens, vec!["pt_click".to_owned()]);
    let mut viewers = calls[0].open_ids.clone();
    viewers.sort();
    let mut expected = vec![ALICE.open_id.to_owned(), BOB.open_id.to_owned()];
    expected.sort();
    assert_eq!(viewers, expected);
}

#[tokio::test]
async fn an_abort_from_another_chat_refreshes_the_previews_of_the_item() {
    let app = spawn_http().await;
    let (a, b) = (link("pt_a"), link("pt_b"));
    app.lark.fetch_preview(ALICE.open_id, &a).await.expect("a");
    app.lark.fetch_preview(BOB.open_id, &b).await.expect("b");
    let other = PreviewLink {
        url: "https://project.feishu.cn/doc/story/detail/12346".into(),
        ..link("pt_other")
    };
    app.lark
        .fetch_preview(ALICE.open_id, &other)
        .await
        .expect("other");
    let card = app.say_final(BOB, Chat::P2p, "/abort 12345 repeat").await;
    assert_eq!(card_color(&card), "green");
    let shown_a = fetched(&app, "pt_a", ALICE, 2).await;
    let shown_b = fetched(&app, "pt_b", BOB, 2).await;
    for shown in [shown_a, shown_b] {
        assert_eq!(
            inline(&shown.answer).1,
            "Export a space as PDF · 需求 · Aborted"
        );
    }
    let calls = app.lark.preview_refreshes();
    let tokens: Vec<&String> = calls.iter().flat_map(|c| &c.preview_tokens).collect();
    assert_eq!(tokens.len(), 2, "one refresh per token: {calls:?}");
    assert!(
        !tokens.iter().any(|t| *t == "pt_other"),
        "not another item's"
    );
    assert!(
        calls
            .iter()
            .all(|c| (1..=10).contains(&c.preview_tokens.len()))
    );
    assert_eq!(
        app.lark
            .shown_preview("pt_other", ALICE.open_id)
            .expect("shown")
            .fetches,
        1
    );
    assert!(app.lark.preview_refusals().is_empty());
}

#[tokio::test]
async fn over_the_long_connection_a_preview_is_answered_in_the_ack() {
    let app = spawn_with(Options {
        websocket: true,
        ..Options::default()
    })
    .await;
    let ws = app.lark.ws();
    wait_until("connected", || ws.open_connections() == 1).await;
    app.lark.set_preview_target(PreviewTarget::Ws {
        app: app_keys(&app),
        clock: Arc::new(app.clock.clone()),
    });
    let l = link("pt_ws");
    let answer = app
        .lark
        .fetch_preview(ALICE.open_id, &l)
        .await
        .expect("answered in the ack");
    assert_eq!(inline(&answer).1, "Export a space as PDF · 需求 · Active");
    let card = preview_card(&answer).expect("card").clone();
    // A click over the long connection, then the refresh re-fetches over it too.
    let click = preview_click(BOB, &l, &card, json!({"option": "repeat", "reason": ""}));
    assert!(ws.push_event(&click, "click-frame", 1));
    let shown = fetched(&app, "pt_ws", ALICE, 2).await;
    assert_eq!(
        inline(&shown.answer).1,
        "Export a space as PDF · 需求 · Aborted"
    );
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].header("x-user-key"), Some(BOB.user_key));
}

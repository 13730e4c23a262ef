//! Every command form, end to end: Lark event in, Feishu Project call out, card back.

use super::helpers::*;
use serde_json::Value;

fn abort_puts(app: &TestApp) -> Vec<abort_bot::emulator::Recorded> {
    app.project.requests_to("PUT", "/open_api/")
}

#[tokio::test]
async fn group_abort_acts_as_the_sender_and_replies_with_a_result_card() {
    let app = spawn_app().await;
    let card = app
        .say(ALICE, Chat::Group, "/abort 12345 repeat duplicate of 12001")
        .await;
    let puts = abort_puts(&app);
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    assert_eq!(
        put.path,
        format!("/open_api/{PROJECT_KEY}/work_item/story/12345/abort")
    );
    assert_eq!(put.header("x-user-key"), Some(ALICE.user_key));
    assert!(
        put.header("x-plugin-token")
            .is_some_and(|t| t.starts_with("p-"))
    );
    assert_eq!(put.header("x-idem-uuid").map(str::len), Some(36));
    assert_eq!(
        put.body,
        serde_json::json!({"is_aborted": true, "reason": "duplicate of 12001", "reason_option": "repeat"})
    );
    let item = app.project.item(12345).expect("item");
    assert!(item.aborted);
    assert_eq!(item.changed_by, ALICE.user_key);
    assert_eq!(card_color(&card), "green");
    let text = card_text(&card);
    assert!(text.contains("Export a space as PDF"), "{text}");
    assert!(
        text.contains("https://project.feishu.cn/doc/story/detail/12345"),
        "{text}"
    );
    assert!(text.contains("duplicate of 12001"), "{text}");
    assert!(text.contains(ALICE.open_id), "actor shown: {text}");
    assert!(text.contains("重复/合并"), "zh_cn text: {text}");
}

#[tokio::test]
async fn the_reply_is_an_interactive_card_with_a_uuid_and_a_tenant_token() {
    let app = spawn_app().await;
    let message_id = app.send(ALICE, Chat::P2p, "/help").await;
    app.reply_to(&message_id).await;
    let replies = app.lark.requests_to(
        "POST",
        &format!("/open-apis/im/v1/messages/{message_id}/reply"),
    );
    assert_eq!(replies.len(), 1);
    let r = &replies[0];
    assert!(
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer t-"))
    );
    assert_eq!(r.body["msg_type"], "interactive");
    assert_eq!(r.body["reply_in_thread"], false);
    let uuid = r.body["uuid"].as_str().expect("uuid");
    assert!(!uuid.is_empty() && uuid.len() <= 50);
    let card: Value = serde_json::from_str(r.body["content"].as_str().expect("content string"))
        .expect("content is card JSON");
    assert_eq!(card["schema"], "2.0");
    assert!(card_text(&card).contains("/abort"));
}

#[tokio::test]
async fn p2p_restore_with_chinese_alias_and_label() {
    let app = spawn_app().await;
    let card = app.say(BOB, Chat::P2p, "/恢复 12348 重启 回来继续做").await;
    let puts = abort_puts(&app);
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].header("x-user-key"), Some(BOB.user_key));
    assert_eq!(
        puts[0].body,
        serde_json::json!({"is_aborted": false, "reason": "回来继续做", "reason_option": "restart"})
    );
    assert!(!app.project.item(12348).expect("item").aborted);
    assert_eq!(card_color(&card), "green");
}

#[tokio::test]
async fn type_and_url_refs_go_straight_to_their_type() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort issue/22001 test").await;
    app.say(
        ALICE,
        Chat::Group,
        "/abort https://project.feishu.cn/doc/issue/detail/22002 cancel",
    )
    .await;
    let queries = app
        .project
        .requests_to("POST", &format!("/open_api/{PROJECT_KEY}/work_item/"));
    assert!(
        queries.iter().all(|q| q.path.contains("/work_item/issue/")),
        "no other type was tried: {queries:?}"
    );
    assert!(app.project.item(22001).expect("item").aborted);
    assert!(app.project.item(22002).expect("item").aborted);
}

#[tokio::test]
async fn a_bare_id_is_found_by_trying_each_type_and_remembered() {
    let app = spawn_app().await;
    app.say(ALICE, Chat::Group, "/abort 22001 test").await;
    assert!(app.project.item(22001).expect("item").aborted);
    let tried: Vec<String> = app
        .project
        .requests_to("POST", &format!("/open_api/{PROJECT_KEY}/work_item/"))
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        tried,
        [
            format!("/open_api/{PROJECT_KEY}/work_item/story/query"),
            format!("/open_api/{PROJECT_KEY}/work_item/issue/query"),
        ]
    );
    assert_eq!(
        app.project.requests_to("GET", "/open_api/").len(),
        1,
        "all-types fetched once"
    );
}

#[tokio::test]
async fn a_post_message_in_a_thread_is_answered_in_the_thread() {
    let app = spawn_app().await;
    let message_id = new_message_id();
    let mut event = message_event(&new_event_id(), &message_id, ALICE, Chat::Thread, "");
    let post = serde_json::json!({"title": "", "content": [[
        {"tag": "at", "user_id": "@_user_1", "user_name": "abort-bot", "style": []},
        {"tag": "text", "text": " /abort 12346 cancel", "style": []}
    ]]});
    event["event"]["message"]["message_type"] = "post".into();
    event["event"]["message"]["content"] = post.to_string().into();
    assert_eq!(app.post_event(&event).await.status(), 200);
    let reply = app.reply_to(&message_id).await;
    assert!(reply.in_thread);
    assert!(app.project.item(12346).expect("item").aborted);
}

#[tokio::test]
async fn group_messages_that_do_not_mention_the_bot_are_ignored() {
    let app = spawn_app().await;
    let message_id = app
        .send(ALICE, Chat::GroupUnmentioned, "/abort 12345 repeat")
        .await;
    assert!(app.settled_replies(&message_id).await.is_empty());
    assert!(abort_puts(&app).is_empty());
    assert_eq!(
        app.lark.requests_to("GET", "/open-apis/bot/v3/info").len(),
        1,
        "the bot's own open_id is fetched to tell"
    );
}

#[tokio::test]
async fn no_option_offers_the_options_and_makes_no_put() {
    let app = spawn_app().await;
    let card = app
        .say(ALICE, Chat::Group, "/abort 12345 because it is late")
        .await;
    let select = find_named(&card, "option").expect("a select of the options");
    let offered: Vec<&str> = select["options"]
        .as_array()
        .expect("options")
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert_eq!(offered, ["cancel", "repeat", "test", "other"]);
    let reason = find_named(&card, "reason").expect("a reason input");
    assert_eq!(reason["default_value"], "because it is late");
    assert!(abort_puts(&app).is_empty());
}

#[tokio::test]
async fn a_mistyped_option_gets_did_you_mean() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 repat").await;
    let text = card_text(&card);
    assert!(text.contains("Did you mean `repeat`?"), "{text}");
    assert!(abort_puts(&app).is_empty());
}

#[tokio::test]
async fn other_without_a_reason_is_refused_before_any_put() {
    let app = spawn_app().await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 other").await;
    assert!(card_text(&card).contains("needs a reason"));
    assert!(abort_puts(&app).is_empty());
}

#[tokio::test]
async fn malformed_commands_get_the_help_card() {
    let app = spawn_app().await;
    for (text, says) in [
        ("/abort repeat", "needs at least one work item"),
        ("/frobnicate 1", "is not a command"),
        ("hello there", "the message has no command"),
        ("/bind", "needs a simple_name"),
    ] {
        let card = app.say(ALICE, Chat::Group, text).await;
        let t = card_text(&card);
        assert!(t.contains(says), "{text}: {t}");
        assert!(t.contains("/restore <item>"), "help text: {t}");
    }
    assert!(app.project.requests_to("PUT", "/").is_empty());
}

#[tokio::test]
async fn bind_stores_the_space_for_the_chat() {
    let app = spawn_with(Options {
        default_project: None,
        ..Options::default()
    })
    .await;
    let card = app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(card_text(&card).contains("/bind"), "asks for a space first");
    let card = app.say(ALICE, Chat::Group, "/bind doc").await;
    assert!(
        card_text(&card).contains("Docs Team"),
        "{}",
        card_text(&card)
    );
    app.say(ALICE, Chat::Group, "/abort 12345 test").await;
    assert!(app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn several_refs_give_one_card_with_a_row_each() {
    let app = spawn_app().await;
    let card = app
        .say(ALICE, Chat::Group, "/abort 12345 12348 99999 repeat merged")
        .await;
    let text = card_text(&card);
    assert!(text.contains("3 work items"), "{text}");
    assert!(text.contains("12345 · Export a space as PDF"), "{text}");
    assert!(text.contains("already aborted"), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert_eq!(
        abort_puts(&app).len(),
        2,
        "12345 and 12348; 99999 is not found"
    );
}

#[tokio::test]
async fn a_slow_command_answers_in_progress_at_once_then_updates_that_card() {
    let app = spawn_app().await;
    // Each of the five calls (user, space, types, item, PUT) takes 700 ms: 3.5 s in all.
    app.project.state().slow = Some(std::time::Duration::from_millis(700));
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    let reply = app.reply_to(&message_id).await;
    assert_eq!(
        card_color(&reply.card),
        "wathet",
        "{}",
        card_text(&reply.card)
    );
    assert!(
        card_text(&reply.card).contains("Aborting 12345"),
        "{}",
        card_text(&reply.card)
    );
    assert!(abort_puts(&app).is_empty(), "in progress before the PUT");

    let patch_path = format!("/open-apis/im/v1/messages/{}", reply.message_id);
    wait_within(
        "the result on the same card",
        std::time::Duration::from_secs(10),
        || !app.lark.requests_to("PATCH", &patch_path).is_empty(),
    )
    .await;
    let message = app.lark.message(&reply.message_id).expect("the reply");
    assert_eq!(
        card_color(&message.card),
        "green",
        "{}",
        card_text(&message.card)
    );
    assert_eq!(message.updates, 1);
    assert_eq!(app.settled_replies(&message_id).await.len(), 1, "one reply");
    assert_eq!(app.lark.requests_to("PATCH", "/open-apis/").len(), 1);
    assert_eq!(abort_puts(&app).len(), 1);
}

#[tokio::test]
async fn a_failed_update_is_retried_on_the_same_card_never_a_second_reply() {
    let app = spawn_app().await;
    app.project.state().slow = Some(std::time::Duration::from_millis(700));
    // The first update fails through every retry of the client; the worker tries again.
    for _ in 0..4 {
        app.lark
            .push_fault(abort_bot::emulator::lark::Endpoint::Patch, 503, 1_000_503);
    }
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    let reply = app.reply_to(&message_id).await;
    assert_eq!(card_color(&reply.card), "wathet");
    wait_within(
        "the result on the same card",
        std::time::Duration::from_secs(20),
        || {
            app.lark
                .message(&reply.message_id)
                .is_some_and(|m| card_color(&m.card) == "green")
        },
    )
    .await;
    assert_eq!(app.settled_replies(&message_id).await.len(), 1, "one reply");
    let puts = abort_puts(&app);
    assert!(!puts.is_empty());
    assert!(
        puts.iter()
            .all(|p| p.header("x-idem-uuid") == puts[0].header("x-idem-uuid")),
        "a repeated PUT carries the same key"
    );
    assert!(app.project.item(12345).expect("item").aborted);
}

#[tokio::test]
async fn after_a_lost_answer_the_card_says_what_the_item_is_now() {
    let app = spawn_with(Options {
        upstream_timeout: std::time::Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    // The PUT lands but no try of it is ever answered.
    app.project.push_fault(
        abort_bot::emulator::project::Endpoint::Abort,
        abort_bot::emulator::project::Fault::Hang { apply: true },
    );
    for _ in 0..3 {
        app.project.push_fault(
            abort_bot::emulator::project::Endpoint::Abort,
            abort_bot::emulator::project::Fault::Hang { apply: false },
        );
    }
    let message_id = app.send(ALICE, Chat::Group, "/abort 12345 repeat").await;
    let reply = app.reply_to(&message_id).await;
    assert_eq!(card_color(&reply.card), "wathet", "in progress first");
    wait_within(
        "the result on the same card",
        std::time::Duration::from_secs(15),
        || {
            app.lark
                .message(&reply.message_id)
                .is_some_and(|m| m.updates > 0)
        },
    )
    .await;
    let card = app.lark.message(&reply.message_id).expect("reply").card;
    let text = card_text(&card);
    assert!(text.contains("Not confirmed: 12345"), "{text}");
    assert!(text.contains("it may have gone through"), "{text}");
    assert!(
        text.contains("the item is **aborted**"),
        "read back: {text}"
    );
    assert!(!text.contains("nothing was changed"), "{text}");
    let queries = app.project.requests_to("POST", "/open_api/");
    assert!(
        queries
            .iter()
            .filter(|r| r.path.ends_with("/work_item/story/query"))
            .count()
            >= 2,
        "looked up, then read back"
    );
    assert_eq!(app.settled_replies(&message_id).await.len(), 1);
    assert!(app.project.item(12345).expect("item").aborted);
}

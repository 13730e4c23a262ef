//! Every card and toast of the interactive side, snapshotted (zh_cn and en_us side by side in
//! each `i18n_content` / toast `i18n`). Button values are signed with a fixed secret and nonce
//! so the snapshots are stable. Review changes with `cargo insta review`.

use abort_bot::card_value::{CardStamp, Signer};
use abort_bot::cards::Vars;
use abort_bot::domain::{Action, ReasonMenu, ReasonOption, WorkItemRef};
use abort_bot::project::{Space, WorkItem};
use abort_bot::service::{ActReport, Found, ItemReport, Outcome};
use abort_bot::views::{self, BatchRequest, Picker};
use serde_json::{Map, Value};
use url::Url;

const ACTOR: &str = "ou_84aad35d084aa403a838cf73ee18467";

fn stamp() -> CardStamp<'static> {
    static SIGNER: std::sync::LazyLock<Signer> =
        std::sync::LazyLock::new(|| Signer::new("snapshot card secret".to_owned().into()));
    CardStamp::fixed(&SIGNER, "fedcba9876543210fedcba9876543210", 1_716_883_201)
}

fn web() -> Url {
    Url::parse("https://project.feishu.cn").expect("url")
}

fn id_ref(id: u64) -> WorkItemRef {
    WorkItemRef {
        space: None,
        type_key: None,
        id,
    }
}

fn space() -> Space {
    Space {
        project_key: "60acd5610444ba031b503055".into(),
        name: "Docs Team".into(),
        simple_name: "doc".into(),
    }
}

fn found(id: u64, name: &str, aborted: Option<bool>) -> Found {
    Found {
        item_ref: id_ref(id),
        space_key: "doc".into(),
        space: space(),
        item: WorkItem {
            id,
            name: name.into(),
            work_item_type_key: "story".into(),
            project_key: space().project_key,
            simple_name: "doc".into(),
            pattern: "Node".into(),
            is_aborted: aborted,
            type_name: "需求".into(),
        },
    }
}

fn reported(id: u64, outcome: Outcome) -> ItemReport {
    let f = found(id, "Export a space as PDF", Some(false));
    ItemReport {
        item_ref: f.item_ref,
        space_key: Some(f.space_key),
        space: Some(f.space),
        item: Some(f.item),
        outcome,
        code: None,
    }
}

#[test]
fn picker_for_one_item_with_a_prefilled_reason() {
    let lookups = [Ok(found(12345, "Export a space as PDF", Some(false)))];
    let picker = Picker {
        action: Action::Abort,
        menu: &ReasonMenu::defaults(Action::Abort),
        lookups: &lookups,
        did_you_mean: None,
        reason: "because it is late",
        actor_open_id: Some(ACTOR),
    };
    insta::assert_json_snapshot!(views::picker(&picker, &web(), &stamp()));
}

#[test]
fn restore_picker_for_several_items_one_not_found() {
    let lookups = [
        Ok(found(12348, "Old onboarding flow", Some(true))),
        Ok(found(12001, "PDF export (first attempt)", None)),
        Err(ItemReport::failed(
            &id_ref(99999),
            Some("doc".into()),
            Some(space()),
            Outcome::NotFound,
        )),
    ];
    let picker = Picker {
        action: Action::Restore,
        menu: &ReasonMenu::defaults(Action::Restore),
        lookups: &lookups,
        did_you_mean: None,
        reason: "",
        actor_open_id: Some(ACTOR),
    };
    insta::assert_json_snapshot!(views::picker(&picker, &web(), &stamp()));
}

#[test]
fn picker_with_nothing_to_act_on() {
    let lookups = [Err(ItemReport::failed(
        &id_ref(12345),
        None,
        None,
        Outcome::NotAUser,
    ))];
    let picker = Picker {
        action: Action::Abort,
        menu: &ReasonMenu::defaults(Action::Abort),
        lookups: &lookups,
        did_you_mean: None,
        reason: "",
        actor_open_id: Some(ACTOR),
    };
    insta::assert_json_snapshot!(views::picker(&picker, &web(), &stamp()));
}

#[test]
fn batch_confirmation() {
    let refs: Vec<WorkItemRef> = (12345..12351)
        .map(|id| WorkItemRef {
            space: Some("doc".into()),
            ..id_ref(id)
        })
        .collect();
    let card = views::confirm_batch(
        &BatchRequest {
            action: Action::Abort,
            option: ReasonOption::OTHER,
            option_label: None,
            reason: "quarterly clean-up",
            refs: &refs,
            names: &[
                Some("Export a space as PDF".into()),
                None,
                Some("PDF export (first attempt)".into()),
            ],
            actor_open_id: Some(ACTOR),
            limit: 5,
        },
        &stamp(),
    );
    insta::assert_json_snapshot!(card);
}

#[test]
fn batch_result_with_undo_and_retry() {
    let report = ActReport {
        action: Action::Abort,
        option: ReasonOption::REPEAT,
        option_label: None,
        opposite_menu: None,
        reason: "merged".into(),
        actor_open_id: Some(ACTOR.into()),
        items: vec![
            reported(12345, Outcome::Done),
            reported(
                12346,
                Outcome::Busy("10429 API Request Frequency Limit".into()),
            ),
            reported(12349, Outcome::Intercepted),
        ],
    };
    insta::assert_json_snapshot!(views::act_report(&report, &web(), &stamp()));
}

#[test]
fn in_progress_and_cancelled() {
    let items = [id_ref(12345)];
    insta::assert_json_snapshot!(
        "progress",
        views::progress(Action::Restore, &items, Some(ACTOR))
    );
    insta::assert_json_snapshot!(
        "cancelled",
        views::cancelled(Action::Abort, &items, Some(ACTOR))
    );
}

#[test]
fn refusals_and_lookup_in_progress() {
    use abort_bot::limits::Refusal;
    let refusals = [
        Refusal::TooManyItems {
            count: 51,
            limit: 50,
        },
        Refusal::ReasonTooLong {
            chars: 1001,
            limit: 1000,
        },
        Refusal::RateLimited {
            limit: 20,
            retry_after_secs: 37,
        },
    ];
    for refusal in refusals {
        insta::assert_json_snapshot!(refusal.key(), views::refused(&refusal, Some(ACTOR)));
    }
    let toasts: Map<String, Value> = refusals
        .iter()
        .map(|r| (r.key().to_owned(), views::toast_refused(r).to_json()))
        .chain([
            (
                "personal_no_permission".to_owned(),
                views::toast_personal(&Outcome::NoPermission).to_json(),
            ),
            (
                "personal_not_a_user".to_owned(),
                views::toast_personal(&Outcome::NotAUser).to_json(),
            ),
            (
                "working".to_owned(),
                views::toast("info", "toast_working", &Vars::new()).to_json(),
            ),
        ])
        .collect();
    insta::assert_json_snapshot!("refusal_toasts", Value::Object(toasts));
    insta::assert_json_snapshot!("progress_lookup", views::progress_lookup());
}

#[test]
fn toasts() {
    let mut all = Map::new();
    let mut add = |name: &str, toast: abort_bot::lark::card_action::Toast| {
        all.insert(name.to_owned(), toast.to_json());
    };
    for key in [
        "toast_invalid",
        "toast_expired",
        "toast_pick_option",
        "toast_reason_needed",
        "toast_in_progress",
        "toast_cancelled",
        "toast_error",
    ] {
        add(key, views::toast("info", key, &Vars::new()));
    }
    add(
        "done_by_bob",
        views::toast_already(false, Some("Bob"), false),
    );
    add("done_by_you", views::toast_already(false, None, true));
    add(
        "cancelled_by_someone",
        views::toast_already(true, None, false),
    );
    let report = |items| ActReport {
        action: Action::Abort,
        option: ReasonOption::TEST,
        option_label: None,
        opposite_menu: None,
        reason: String::new(),
        actor_open_id: None,
        items,
    };
    add(
        "result_done",
        views::toast_result(&report(vec![reported(12345, Outcome::Done)])),
    );
    add(
        "result_failed",
        views::toast_result(&report(vec![reported(
            12345,
            Outcome::Unexpected("20044 type disabled".into()),
        )])),
    );
    add(
        "result_partly",
        views::toast_result(&report(vec![
            reported(12345, Outcome::Done),
            reported(12346, Outcome::StateFlow),
        ])),
    );
    add(
        "result_none",
        views::toast_result(&report(vec![
            reported(12345, Outcome::NoPermission),
            reported(12346, Outcome::StateFlow),
        ])),
    );
    insta::assert_json_snapshot!(Value::Object(all));
}

#[test]
fn preview_of_an_active_item_offers_abort() {
    let f = found(12345, "Export a space as PDF", Some(false));
    let card = views::preview_card(
        &f,
        Action::Abort,
        &ReasonMenu::defaults(Action::Abort),
        &web(),
        &stamp(),
    );
    let title = views::preview_title(&f.item);
    insta::assert_json_snapshot!(serde_json::json!({
        "inline": {"zh_cn": title.zh, "en_us": title.en},
        "card": card,
    }));
}

#[test]
fn preview_of_an_aborted_item_offers_restore() {
    let f = found(12348, "Old onboarding flow", Some(true));
    let card = views::preview_card(
        &f,
        Action::Restore,
        &ReasonMenu::defaults(Action::Restore),
        &web(),
        &stamp(),
    );
    let title = views::preview_title(&f.item);
    insta::assert_json_snapshot!(serde_json::json!({
        "inline": {"zh_cn": title.zh, "en_us": title.en},
        "card": card,
    }));
}

#[test]
fn preview_titles_made_from_the_link_alone() {
    let r = WorkItemRef {
        space: Some("doc".into()),
        type_key: Some("story".into()),
        id: 12345,
    };
    let from_url = views::preview_url_title(Some(&r));
    let other = views::preview_url_title(None);
    insta::assert_json_snapshot!(serde_json::json!({
        "item": {"zh_cn": from_url.zh, "en_us": from_url.en},
        "not_an_item": {"zh_cn": other.zh, "en_us": other.en},
    }));
}

//! Every card the text path sends, snapshotted (zh_cn and en_us live side by side in each
//! card's `i18n_content`). Review changes with `cargo insta review`.

use abort_bot::card_value::{CardStamp, Signer};
use abort_bot::command::ParseError;
use abort_bot::domain::{Action, ReasonMenu, ReasonOption, WorkItemRef};
use abort_bot::project::{Space, WorkItem};
use abort_bot::service::{ActReport, Found, ItemReport, Outcome};
use abort_bot::views;

use crate::helpers::every_outcome;
use url::Url;

/// Button values are signed and carry the card's nonce: fixed here so snapshots are stable.
fn stamp() -> CardStamp<'static> {
    static SIGNER: std::sync::LazyLock<Signer> =
        std::sync::LazyLock::new(|| Signer::new("snapshot card secret".to_owned().into()));
    CardStamp::fixed(&SIGNER, "0123456789abcdef0123456789abcdef", 1_716_883_201)
}

fn web() -> Url {
    Url::parse("https://project.feishu.cn").expect("url")
}

fn space() -> Space {
    Space {
        project_key: "60acd5610444ba031b503055".into(),
        name: "Docs Team".into(),
        simple_name: "doc".into(),
    }
}

fn item(id: u64, name: &str) -> WorkItem {
    WorkItem {
        id,
        name: name.into(),
        work_item_type_key: "story".into(),
        project_key: "60acd5610444ba031b503055".into(),
        simple_name: "doc".into(),
        pattern: "Node".into(),
        is_aborted: Some(false),
        type_name: "需求".into(),
    }
}

fn item_report(id: u64, outcome: Outcome) -> ItemReport {
    ItemReport {
        item_ref: WorkItemRef {
            space: None,
            type_key: None,
            id,
        },
        space_key: Some("doc".into()),
        space: Some(space()),
        item: Some(item(id, "Export a space as *PDF* <b>")),
        outcome,
        code: None,
    }
}

fn report(action: Action, option: ReasonOption, items: Vec<ItemReport>) -> ActReport {
    ActReport {
        action,
        option,
        option_label: None,
        opposite_menu: None,
        reason: "duplicate of 12001".into(),
        actor_open_id: Some("ou_84aad35d084aa403a838cf73ee18467".into()),
        items,
    }
}

#[test]
fn outcome_cards() {
    let outcomes = every_outcome(
        "10429 API Request Frequency Limit",
        "20044 work item type disabled",
    );
    for outcome in outcomes {
        let name = format!("outcome_{}", outcome.key());
        let mut r = item_report(12345, outcome.clone());
        if matches!(
            outcome,
            Outcome::NotFound | Outcome::NoSpace | Outcome::UnknownSpace | Outcome::NotAUser
        ) {
            r.item = None;
        }
        let card = views::act_report(
            &report(Action::Abort, ReasonOption::REPEAT, vec![r]),
            &web(),
            &stamp(),
        );
        insta::assert_json_snapshot!(name, card);
    }
}

#[test]
fn restore_done_card() {
    let card = views::act_report(
        &report(
            Action::Restore,
            ReasonOption::ROLLBACK,
            vec![item_report(12348, Outcome::Done)],
        ),
        &web(),
        &stamp(),
    );
    insta::assert_json_snapshot!(card);
}

#[test]
fn batch_card() {
    let card = views::act_report(
        &report(
            Action::Abort,
            ReasonOption::REPEAT,
            vec![
                item_report(12345, Outcome::Done),
                item_report(12348, Outcome::AlreadyAborted),
                ItemReport {
                    item: None,
                    ..item_report(99999, Outcome::NotFound)
                },
            ],
        ),
        &web(),
        &stamp(),
    );
    insta::assert_json_snapshot!(card);
}

#[test]
fn help_cards() {
    insta::assert_json_snapshot!("help", views::help(None));
    insta::assert_json_snapshot!(
        "help_unknown_command",
        views::help(Some(&ParseError::UnknownCommand("/frobnicate".into())))
    );
}

#[test]
fn picker_card() {
    let found = Found {
        item_ref: WorkItemRef {
            space: None,
            type_key: None,
            id: 12345,
        },
        space_key: "doc".into(),
        space: space(),
        item: item(12345, "Export a space as *PDF* <b>"),
    };
    let picker = views::Picker {
        action: Action::Abort,
        menu: &ReasonMenu::defaults(Action::Abort),
        lookups: &[Ok(found)],
        did_you_mean: Some(("repat", &ReasonOption::REPEAT)),
        reason: "late",
        actor_open_id: Some("ou_1"),
    };
    insta::assert_json_snapshot!(
        "picker_did_you_mean",
        views::picker(&picker, &web(), &stamp())
    );
}

#[test]
fn bound_card() {
    insta::assert_json_snapshot!(views::bound(&Ok(space()), "doc", Some("ou_1")));
}

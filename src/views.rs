//! What each card shows: typed results → template variables → Card JSON 2.0.
//! The words live in `cards/messages.json`; this module only chooses and fills them.

use serde_json::Value;

use crate::cards::{self, Var, Vars, add_message, md_escape, set};
use crate::command::{ActCommand, ParseError};
use crate::domain::{Action, ReasonOption, WorkItemRef, item_link};
use crate::service::{ActReport, BindResult, ItemReport, Outcome};
use url::Url;

const SUBTITLE: &str = "Feishu Project";

fn base_vars(action: Action, actor_open_id: Option<&str>) -> Vars {
    let mut vars = Vars::new();
    set(&mut vars, "subtitle", SUBTITLE);
    set(&mut vars, "action_key", action.key());
    set(&mut vars, "opposite_key", action.opposite().key());
    set(
        &mut vars,
        "actor_open_id",
        actor_open_id.unwrap_or_default(),
    );
    add_message(&mut vars, &format!("action_{}", action.key()), "action_");
    vars
}

fn add_option(vars: &mut Vars, option: ReasonOption) {
    set(vars, "option_key", option.key());
    add_message(vars, &format!("option_{}", option.key()), "option_");
}

/// Variables that describe one item's result.
fn item_vars(vars: &mut Vars, item: &ItemReport, web_url: &Url) {
    set(vars, "item_id", item.item_ref.id.to_string());
    set(vars, "item_ref", md_escape(&item.item_ref.to_string()));
    set(
        vars,
        "space_key",
        md_escape(item.space_key.as_deref().unwrap_or_default()),
    );
    let space_name = item
        .space
        .as_ref()
        .map(|s| {
            if s.name.is_empty() {
                &s.simple_name
            } else {
                &s.name
            }
        })
        .or(item.space_key.as_ref())
        .cloned()
        .unwrap_or_default();
    set(vars, "space_name", md_escape(&space_name));
    if let Some(w) = &item.item {
        let name = if w.name.is_empty() {
            w.id.to_string()
        } else {
            w.name.clone()
        };
        set(vars, "item_name", md_escape(&name));
        set(vars, "type_name", md_escape(&w.type_name));
        let simple = if w.simple_name.is_empty() {
            &w.project_key
        } else {
            &w.simple_name
        };
        set(
            vars,
            "link",
            item_link(web_url, simple, &w.work_item_type_key, w.id),
        );
    }
    set(
        vars,
        "detail",
        md_escape(item.outcome.detail().unwrap_or_default()),
    );
}

/// The reply to `/abort` or `/restore` with an option: one card for one item, a row per item
/// for several.
pub fn act_report(report: &ActReport, web_url: &Url) -> Value {
    let mut vars = base_vars(report.action, report.actor_open_id.as_deref());
    add_option(&mut vars, report.option);
    let reason = if report.reason.trim().is_empty() {
        "—".to_owned()
    } else {
        md_escape(report.reason.trim())
    };
    set(&mut vars, "reason", reason);
    if let [item] = report.items.as_slice() {
        item_vars(&mut vars, item, web_url);
        add_message(&mut vars, item.outcome.key(), "");
        return cards::render("outcome", &vars);
    }
    set(&mut vars, "count", report.items.len().to_string());
    let rows = report
        .items
        .iter()
        .map(|item| {
            let mut row = vars.clone();
            item_vars(&mut row, item, web_url);
            add_message(&mut row, item.outcome.key(), "");
            let label = match &item.item {
                Some(w) if !w.name.is_empty() => {
                    format!("{} · {}", item.item_ref.id, md_escape(&w.name))
                }
                _ => item.item_ref.id.to_string(),
            };
            let mut out = Vars::new();
            set(&mut out, "row_label", label);
            for key in ["icon", "short_en", "short_zh"] {
                if let Some(Var::Text(t)) = row.get(key) {
                    set(&mut out, &format!("row_{key}"), t.clone());
                }
            }
            out
        })
        .collect();
    vars.insert("rows".into(), Var::List(rows));
    add_message(&mut vars, "batch", "");
    if report.reason.trim().is_empty() {
        vars.remove("reason");
    }
    cards::render("batch", &vars)
}

/// The help card, with what was wrong with the command if anything.
pub fn help(problem: Option<&ParseError>) -> Value {
    let mut vars = Vars::new();
    if let Some(p) = problem {
        let (key, word) = match p {
            ParseError::NotACommand => ("problem_not_a_command", String::new()),
            ParseError::UnknownCommand(w) => ("problem_unknown_command", w.clone()),
            ParseError::MissingRefs(a) => ("problem_missing_refs", (*a).to_owned()),
            ParseError::MissingSpace => ("problem_missing_space", String::new()),
            ParseError::BadSpace(w) => ("problem_bad_space", w.clone()),
            ParseError::ExtraWords(w) => ("problem_extra_words", w.clone()),
        };
        set(&mut vars, "word", md_escape(&word));
        add_message(&mut vars, key, "problem_");
    }
    add_message(&mut vars, "help", "");
    cards::render("help", &vars)
}

/// No option (or a mistyped one): offer each option as a ready-to-send command.
pub fn picker(
    cmd: &ActCommand,
    did_you_mean: Option<(&str, ReasonOption)>,
    reason: &str,
    actor_open_id: Option<&str>,
) -> Value {
    let mut vars = base_vars(cmd.action, actor_open_id);
    let refs: Vec<String> = cmd.refs.iter().map(WorkItemRef::to_string).collect();
    set(&mut vars, "refs", refs.join(" "));
    let reason = reason.trim();
    let suffix = if reason.is_empty() {
        String::new()
    } else {
        format!(" {}", md_escape(reason).replace('`', "'"))
    };
    set(&mut vars, "reason_suffix", suffix);
    if let Some((typed, suggestion)) = did_you_mean {
        set(&mut vars, "typed", md_escape(typed));
        set(&mut vars, "suggestion", suggestion.key());
    }
    let options = cmd
        .action
        .options()
        .iter()
        .map(|o| {
            let mut row = Vars::new();
            set(&mut row, "opt_key", o.key());
            add_message(&mut row, &format!("option_{}", o.key()), "opt_");
            row
        })
        .collect();
    vars.insert("options".into(), Var::List(options));
    add_message(&mut vars, "picker", "");
    cards::render("picker", &vars)
}

/// The answer to `/bind`.
pub fn bound(result: &BindResult, space_key: &str, actor_open_id: Option<&str>) -> Value {
    let mut vars = base_vars(Action::Abort, actor_open_id);
    set(&mut vars, "space_key", md_escape(space_key));
    match result {
        Ok(space) => {
            let name = if space.name.is_empty() {
                &space.simple_name
            } else {
                &space.name
            };
            set(&mut vars, "space_name", md_escape(name));
            set(
                &mut vars,
                "space_simple_name",
                md_escape(&space.simple_name),
            );
            add_message(&mut vars, "bound", "");
            cards::render("bound", &vars)
        }
        Err(outcome) => {
            set(&mut vars, "space_name", md_escape(space_key));
            set(
                &mut vars,
                "detail",
                md_escape(outcome.detail().unwrap_or_default()),
            );
            add_message(&mut vars, outcome.key(), "");
            cards::render("outcome", &vars)
        }
    }
}

/// A card for an outcome that concerns no particular item (the sender is not a user, …).
pub fn outcome_only(outcome: &Outcome, action: Action, actor_open_id: Option<&str>) -> Value {
    let mut vars = base_vars(action, actor_open_id);
    set(
        &mut vars,
        "detail",
        md_escape(outcome.detail().unwrap_or_default()),
    );
    add_message(&mut vars, outcome.key(), "");
    cards::render("outcome", &vars)
}

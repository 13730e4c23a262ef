//! What each card shows: typed results → template variables → Card JSON 2.0.
//! The words live in `cards/messages.json`; this module only chooses and fills them.

use serde_json::Value;
use url::Url;

use crate::card_value::{CardStamp, Kind};
use crate::cards::{self, Var, Vars, add_message, code_text, md_escape, set, shorten};
use crate::command::ParseError;
use crate::domain::{Action, ReasonMenu, ReasonOption, WorkItemRef, item_link};
use crate::lark::card_action::Toast;
use crate::lark::url_preview::Title;
use crate::limits::Refusal;
use crate::project::WorkItem;
use crate::service::{ActReport, BindResult, Found, ItemReport, Outcome};

/// How much of the text typed by people or coming from Feishu Project a card shows. A card
/// is made with the first of [`FITS`] whose result stays within [`cards::CARD_BUDGET`]
/// (Lark refuses a card message over 30 KB, `protocol/lark.md` §4.3); button values, which
/// carry what the PUT will send, are never cut.
#[derive(Debug, Clone, Copy)]
struct Shown {
    /// Characters of an item, space or type name.
    name: usize,
    /// Characters of a reason.
    reason: usize,
    /// Rows of a list of items; the rest is counted in an "and N more" line.
    rows: usize,
    /// Characters of the label of a space's own option in a select (its value is never cut).
    label: usize,
}

const FITS: [Shown; 6] = [
    Shown {
        name: 200,
        reason: 1000,
        rows: usize::MAX,
        label: 60,
    },
    Shown {
        name: 80,
        reason: 300,
        rows: usize::MAX,
        label: 40,
    },
    Shown {
        name: 40,
        reason: 200,
        rows: 30,
        label: 30,
    },
    Shown {
        name: 30,
        reason: 150,
        rows: 20,
        label: 24,
    },
    Shown {
        name: 20,
        reason: 100,
        rows: 10,
        label: 16,
    },
    Shown {
        name: 16,
        reason: 60,
        rows: 5,
        label: 12,
    },
];

/// Characters shown of a word the sender typed that the bot did not understand.
const TYPED_CHARS: usize = 40;

/// The card `build` makes with the most text that fits the budget.
fn fitted(build: impl Fn(Shown) -> Value) -> Value {
    let mut card = Value::Null;
    for shown in FITS {
        card = build(shown);
        if cards::content_size(&card) <= cards::CARD_BUDGET {
            break;
        }
    }
    card
}

/// Text from people or Feishu Project for a markdown element: cut, then escaped.
fn md_text(text: &str, max: usize) -> String {
    md_escape(&shorten(text, max))
}

/// `more` and its words when `total` rows were cut to `shown`.
fn add_more(vars: &mut Vars, total: usize, shown: usize) {
    if total > shown {
        set(vars, "more", (total - shown).to_string());
        add_message(vars, "more_rows", "more_");
    }
}

fn base_vars(action: Action, actor_open_id: Option<&str>) -> Vars {
    let mut vars = Vars::new();
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

/// The option's words: the space's label for an option it configured, else the documented
/// option's words (or its bare value).
fn add_option(vars: &mut Vars, option: &ReasonOption, label: Option<&str>) {
    set(vars, "option_key", md_escape(option.key()));
    match label {
        Some(label) if !option.is_documented() => {
            set(vars, "option_label_zh", md_escape(label));
            set(vars, "option_label_en", md_escape(label));
        }
        _ if option.is_documented() => {
            add_message(vars, &format!("option_{}", option.key()), "option_");
        }
        _ => {
            set(vars, "option_label_zh", md_escape(option.key()));
            set(vars, "option_label_en", md_escape(option.key()));
        }
    }
}

/// Variables that describe one item's result.
fn item_vars(vars: &mut Vars, item: &ItemReport, web_url: &Url, shown: Shown) {
    set(vars, "item_id", item.item_ref.id.to_string());
    set(
        vars,
        "item_ref",
        md_text(&item.item_ref.to_string(), shown.name),
    );
    let space_key = item.space_key.as_deref().unwrap_or_default();
    set(
        vars,
        "space_key",
        code_text(&shorten(space_key, shown.name)),
    );
    set(vars, "space_key_text", shorten(space_key, shown.name));
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
    set(vars, "space_name", md_text(&space_name, shown.name));
    if let Some(w) = &item.item {
        let name = if w.name.is_empty() {
            w.id.to_string()
        } else {
            w.name.clone()
        };
        set(vars, "item_name", md_text(&name, shown.name));
        set(vars, "type_name", md_text(&w.type_name, shown.name));
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
        md_text(item.outcome.detail().unwrap_or_default(), shown.reason),
    );
}

/// The result of `/abort` or `/restore` (typed or clicked): one card for one item, a row per
/// item for several. Items that were changed get the opposite action (Undo / Abort again,
/// asking for its option in place); items that failed for a passing reason get Retry.
pub fn act_report(report: &ActReport, web_url: &Url, stamp: &CardStamp<'_>) -> Value {
    fitted(|shown| act_report_shown(report, web_url, stamp, shown))
}

fn act_report_shown(
    report: &ActReport,
    web_url: &Url,
    stamp: &CardStamp<'_>,
    shown: Shown,
) -> Value {
    let mut vars = base_vars(report.action, report.actor_open_id.as_deref());
    add_option(&mut vars, &report.option, report.option_label.as_deref());
    let reason = if report.reason.trim().is_empty() {
        "—".to_owned()
    } else {
        md_text(report.reason.trim(), shown.reason)
    };
    set(&mut vars, "reason", reason);
    add_result_controls(&mut vars, report, stamp, shown);
    if let [item] = report.items.as_slice() {
        item_vars(&mut vars, item, web_url, shown);
        add_message(&mut vars, item.outcome.key(), "");
        return cards::render("outcome", &vars);
    }
    set(&mut vars, "count", report.items.len().to_string());
    add_more(&mut vars, report.items.len(), shown.rows);
    let rows = report
        .items
        .iter()
        .take(shown.rows)
        .map(|item| {
            let mut row = vars.clone();
            item_vars(&mut row, item, web_url, shown);
            add_message(&mut row, item.outcome.key(), "");
            let label = match &item.item {
                Some(w) if !w.name.is_empty() => {
                    format!("{} · {}", item.item_ref.id, md_text(&w.name, shown.name))
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
        set(&mut vars, "word", code_text(&shorten(&word, TYPED_CHARS)));
        add_message(&mut vars, key, "problem_");
    }
    add_message(&mut vars, "help", "");
    cards::render("help", &vars)
}

/// What a picker card offers, and to whom.
#[derive(Debug, Clone, Copy)]
pub struct Picker<'a> {
    /// The action offered (see `Service::offered_action`).
    pub action: Action,
    /// The options of the items' space for that action.
    pub menu: &'a ReasonMenu,
    /// Each ref as the sender's lookup found it (or why not).
    pub lookups: &'a [Result<Found, ItemReport>],
    /// The mistyped word and the option it was probably meant to be (preselected).
    pub did_you_mean: Option<(&'a str, &'a ReasonOption)>,
    /// Text after the refs, prefilled as the reason.
    pub reason: &'a str,
    pub actor_open_id: Option<&'a str>,
}

/// No option (or a mistyped one): the items as found, a select of the options, a reason
/// input and Confirm / Cancel. Whoever clicks Confirm acts, as themselves.
pub fn picker(p: &Picker<'_>, web_url: &Url, stamp: &CardStamp<'_>) -> Value {
    fitted(|shown| picker_shown(p, web_url, stamp, shown))
}

fn picker_shown(p: &Picker<'_>, web_url: &Url, stamp: &CardStamp<'_>, shown: Shown) -> Value {
    let Picker {
        action,
        menu,
        lookups,
        did_you_mean,
        reason,
        actor_open_id,
    } = *p;
    let mut vars = base_vars(action, actor_open_id);
    let refs: Vec<WorkItemRef> = lookups
        .iter()
        .map(|l| match l {
            Ok(f) => f.item_ref.clone(),
            Err(r) => r.item_ref.clone(),
        })
        .collect();
    add_subject(&mut vars, &refs);
    if let Some((typed, suggestion)) = did_you_mean {
        set(&mut vars, "typed", code_text(&shorten(typed, TYPED_CHARS)));
        set(&mut vars, "suggestion", suggestion.key());
    }
    add_more(&mut vars, lookups.len(), shown.rows);
    let rows = lookups
        .iter()
        .take(shown.rows)
        .map(|l| {
            let mut row = vars.clone();
            match l {
                Ok(found) => {
                    let found_report = ItemReport {
                        item_ref: found.item_ref.clone(),
                        space_key: Some(found.space_key.clone()),
                        space: Some(found.space.clone()),
                        item: Some(found.item.clone()),
                        outcome: Outcome::Done,
                        code: None,
                    };
                    item_vars(&mut row, &found_report, web_url, shown);
                    let state = match found.item.is_aborted {
                        Some(true) => "state_aborted",
                        Some(false) => "state_active",
                        None => "state_unknown",
                    };
                    add_message(&mut row, state, "state_");
                    add_message(&mut row, "picker_row", "row_");
                }
                Err(failed) => {
                    item_vars(&mut row, failed, web_url, shown);
                    add_message(&mut row, failed.outcome.key(), "");
                    add_message(&mut row, "picker_problem_row", "row_");
                }
            }
            let mut out = Vars::new();
            for key in ["row_text_en", "row_text_zh"] {
                if let Some(Var::Text(t)) = row.get(key) {
                    set(&mut out, key, t.clone());
                }
            }
            out
        })
        .collect();
    vars.insert("rows".into(), Var::List(rows));
    let found: Vec<WorkItemRef> = lookups
        .iter()
        .filter_map(|l| l.as_ref().ok().map(Found::resolved_ref))
        .collect();
    if !found.is_empty() {
        let go = stamp.value(Kind::Go, action, None, None, found.clone());
        let cancel = stamp.value(Kind::Cancel, action, None, None, found);
        add_form(
            &mut vars,
            &labels_cut(menu, shown.label),
            did_you_mean.map(|(_, o)| o),
            reason.trim(),
            go,
            Some(cancel),
            "form_confirm",
        );
    }
    add_message(&mut vars, "picker", "");
    cards::render("picker", &vars)
}

/// More refs than the configured batch size: ask before acting on all of them.
pub struct BatchRequest<'a> {
    pub action: Action,
    pub option: ReasonOption,
    /// The space's label of the option, when it configured its own.
    pub option_label: Option<&'a str>,
    pub reason: &'a str,
    /// With the space each will use already filled in.
    pub refs: &'a [WorkItemRef],
    /// The name of each ref as the sender's lookup found it (same order; None where it found
    /// nothing, and the list may be shorter than `refs`).
    pub names: &'a [Option<String>],
    pub actor_open_id: Option<&'a str>,
    /// The configured batch size that was exceeded.
    pub limit: usize,
}

/// The items are listed by id and, where the sender's lookup found them, by name.
pub fn confirm_batch(req: &BatchRequest<'_>, stamp: &CardStamp<'_>) -> Value {
    fitted(|shown| confirm_batch_shown(req, stamp, shown))
}

fn confirm_batch_shown(req: &BatchRequest<'_>, stamp: &CardStamp<'_>, shown: Shown) -> Value {
    let mut vars = base_vars(req.action, req.actor_open_id);
    add_option(&mut vars, &req.option, req.option_label);
    let reason = req.reason.trim();
    if !reason.is_empty() {
        set(&mut vars, "reason", md_text(reason, shown.reason));
    }
    set(&mut vars, "count", req.refs.len().to_string());
    set(&mut vars, "limit", req.limit.to_string());
    add_more(&mut vars, req.refs.len(), shown.rows);
    let listed: Vec<String> = req
        .refs
        .iter()
        .enumerate()
        .take(shown.rows)
        .map(|(i, r)| {
            let id = md_text(&r.to_string(), shown.name);
            match req.names.get(i).and_then(Option::as_deref) {
                Some(name) => format!("**{id}** {}", md_text(name, shown.name)),
                None => format!("**{id}**"),
            }
        })
        .collect();
    set(&mut vars, "refs", listed.join("\n"));
    let go = stamp.value(
        Kind::Go,
        req.action,
        Some(req.option.clone()),
        Some(reason),
        req.refs.to_vec(),
    );
    let cancel = stamp.value(Kind::Cancel, req.action, None, None, req.refs.to_vec());
    vars.insert("go_value".into(), Var::Json(go));
    vars.insert("cancel_value".into(), Var::Json(cancel));
    add_button_words(&mut vars, req.action, "form_confirm");
    add_message(&mut vars, "confirm_batch", "");
    cards::render("confirm_batch", &vars)
}

/// The card shown while a clicked action outlasts the callback's time budget.
pub fn progress(action: Action, items: &[WorkItemRef], clicker_open_id: Option<&str>) -> Value {
    let mut vars = base_vars(action, clicker_open_id);
    add_subject(&mut vars, items);
    add_message(&mut vars, "progress", "");
    cards::render("progress", &vars)
}

/// The card shown while a typed command that only looks things up (the picker, `/bind`)
/// outlasts its time budget.
pub fn progress_lookup() -> Value {
    let mut vars = Vars::new();
    add_message(&mut vars, "progress_lookup", "");
    cards::render("progress", &vars)
}

/// The numbers a refusal's words name.
fn refusal_vars(refusal: &Refusal) -> Vars {
    let mut vars = Vars::new();
    match *refusal {
        Refusal::TooManyItems { count, limit } => {
            set(&mut vars, "count", count.to_string());
            set(&mut vars, "limit", limit.to_string());
        }
        Refusal::ReasonTooLong { chars, limit } => {
            set(&mut vars, "chars", chars.to_string());
            set(&mut vars, "limit", limit.to_string());
        }
        Refusal::RateLimited {
            limit,
            retry_after_secs,
        } => {
            set(&mut vars, "limit", limit.to_string());
            set(&mut vars, "retry_after", retry_after_secs.to_string());
        }
    }
    vars
}

/// A typed command refused by a limit: which one, and what to do (for the rate: when).
pub fn refused(refusal: &Refusal, actor_open_id: Option<&str>) -> Value {
    let mut vars = refusal_vars(refusal);
    set(
        &mut vars,
        "actor_open_id",
        actor_open_id.unwrap_or_default(),
    );
    add_message(&mut vars, refusal.key(), "");
    cards::render("refused", &vars)
}

/// A click refused by a limit: the clicker alone hears it, the card stays.
pub fn toast_refused(refusal: &Refusal) -> Toast {
    toast(
        "warning",
        &format!("toast_{}", refusal.key()),
        &refusal_vars(refusal),
    )
}

/// A click that failed for the clicker alone (no permission, not a user): the card stays.
pub fn toast_personal(outcome: &Outcome) -> Toast {
    let mut vars = Vars::new();
    add_message(&mut vars, outcome.key(), "");
    toast("error", "toast_personal", &vars)
}

/// The card after Cancel: nothing was changed.
pub fn cancelled(action: Action, items: &[WorkItemRef], clicker_open_id: Option<&str>) -> Value {
    let mut vars = base_vars(action, clicker_open_id);
    add_subject(&mut vars, items);
    add_message(&mut vars, "cancelled", "");
    cards::render("cancelled", &vars)
}

/// A toast whose words are the `text` of `key` in `cards/messages.json`.
pub fn toast(kind: &'static str, key: &str, vars: &Vars) -> Toast {
    let mut vars = vars.clone();
    add_message(&mut vars, key, "toast_");
    let text = |lang: &str| match vars.get(&format!("toast_text_{lang}")) {
        Some(Var::Text(t)) => t.clone(),
        _ => String::new(),
    };
    Toast {
        kind,
        zh: text("zh"),
        en: text("en"),
    }
}

/// The toast for a card someone already used: who, and whether they acted or cancelled.
pub fn toast_already(cancelled: bool, by_name: Option<&str>, by_you: bool) -> Toast {
    let mut vars = Vars::new();
    let key = match (by_you, cancelled) {
        (true, false) => "toast_done_by_you",
        (true, true) => "toast_cancelled_by_you",
        (false, false) => "toast_done_by",
        (false, true) => "toast_cancelled_by",
    };
    match by_name {
        // Toasts are plain text: the name needs no escaping.
        Some(name) => {
            set(&mut vars, "name_zh", name);
            set(&mut vars, "name_en", name);
        }
        None => add_message(&mut vars, "someone", ""),
    }
    toast("warning", key, &vars)
}

/// The toast that goes with a result card: what happened, in one line.
pub fn toast_result(report: &ActReport) -> Toast {
    let mut vars = base_vars(report.action, report.actor_open_id.as_deref());
    let refs: Vec<WorkItemRef> = report.items.iter().map(|i| i.item_ref.clone()).collect();
    add_subject(&mut vars, &refs);
    let done = report
        .items
        .iter()
        .filter(|i| i.outcome == Outcome::Done)
        .count();
    set(&mut vars, "done", done.to_string());
    set(&mut vars, "count", report.items.len().to_string());
    match (done, report.items.as_slice()) {
        (d, items) if d == items.len() && d > 0 => toast("success", "toast_done", &vars),
        (0, [item]) => {
            // Toasts are plain text: the detail is shown as is.
            set(
                &mut vars,
                "detail",
                item.outcome.detail().unwrap_or_default(),
            );
            add_message(&mut vars, item.outcome.key(), "");
            toast("error", "toast_failed_one", &vars)
        }
        (0, _) => toast("error", "toast_none", &vars),
        _ => toast("warning", "toast_partly", &vars),
    }
}

/// `subject_zh`/`subject_en`: the item id for one item, "N work items" for several.
fn add_subject(vars: &mut Vars, refs: &[WorkItemRef]) {
    if let [one] = refs {
        set(vars, "subject_zh", one.id.to_string());
        set(vars, "subject_en", one.id.to_string());
    } else {
        set(vars, "count", refs.len().to_string());
        add_message(vars, "subject_many", "");
    }
}

/// `menu` with a space's own labels cut to `chars` for a select (the values stay whole).
fn labels_cut(menu: &ReasonMenu, chars: usize) -> ReasonMenu {
    let mut menu = menu.clone();
    for choice in &mut menu.choices {
        if let Some(label) = &mut choice.label {
            *label = shorten(label, chars);
        }
    }
    menu
}

/// The words and style of a form's main button (`form_button_zh/en`, `form_intro_zh/en`).
fn add_button_words(vars: &mut Vars, action: Action, words: &str) {
    let style = match action {
        Action::Abort => "danger",
        Action::Restore => "primary",
    };
    set(vars, "form_button_type", style);
    add_message(vars, words, "form_");
}

/// The variables of the shared action form (`cards/parts/action_form.json`): the menu's
/// options, label shown and value sent.
fn add_form(
    vars: &mut Vars,
    menu: &ReasonMenu,
    initial: Option<&ReasonOption>,
    reason: &str,
    go: Value,
    cancel: Option<Value>,
    words: &str,
) {
    let action = menu.action;
    let options = menu
        .choices
        .iter()
        .map(|c| {
            let mut row = Vars::new();
            set(&mut row, "opt_key", c.option.key());
            match &c.label {
                // Plain text in a select option: no escaping (cut to fit by `labels_cut`).
                Some(label) => {
                    set(&mut row, "opt_label_zh", label.as_str());
                    set(&mut row, "opt_label_en", label.as_str());
                }
                None => add_message(&mut row, &format!("option_{}", c.option.key()), "opt_"),
            }
            row
        })
        .collect();
    vars.insert("form_options".into(), Var::List(options));
    set(
        vars,
        "form_initial",
        initial
            .map(ReasonOption::key)
            .unwrap_or_default()
            .to_owned(),
    );
    // An input's default value is plain text, not markdown: no escaping.
    set(vars, "form_reason", reason);
    vars.insert("go_value".into(), Var::Json(go));
    if let Some(cancel) = cancel {
        vars.insert("cancel_value".into(), Var::Json(cancel));
    }
    add_button_words(vars, action, words);
}

/// Undo / Abort again for the items that changed, Retry for those that may succeed later.
fn add_result_controls(vars: &mut Vars, report: &ActReport, stamp: &CardStamp<'_>, shown: Shown) {
    let done: Vec<WorkItemRef> = report
        .items
        .iter()
        .filter(|i| i.outcome == Outcome::Done)
        .map(ItemReport::resolved_ref)
        .collect();
    if !done.is_empty() {
        let opposite = report.action.opposite();
        let go = stamp.value(Kind::Go, opposite, None, None, done);
        let words = match opposite {
            Action::Restore => "form_undo",
            Action::Abort => "form_abort_again",
        };
        // The opposite's options: restore's are fixed; an abort again offers the space's.
        let menu = match &report.opposite_menu {
            Some(m) if m.action == opposite => m.clone(),
            _ => ReasonMenu::defaults(opposite),
        };
        add_form(
            vars,
            &labels_cut(&menu, shown.label),
            None,
            "",
            go,
            None,
            words,
        );
    }
    let retry: Vec<WorkItemRef> = report
        .items
        .iter()
        .filter(|i| i.outcome.is_retryable())
        .map(ItemReport::resolved_ref)
        .collect();
    if !retry.is_empty() {
        let value = stamp.value(
            Kind::Go,
            report.action,
            Some(report.option.clone()),
            Some(report.reason.trim()),
            retry,
        );
        vars.insert("retry_value".into(), Var::Json(value));
    }
}

/// The answer to `/bind`.
pub fn bound(result: &BindResult, space_key: &str, actor_open_id: Option<&str>) -> Value {
    let shown = FITS[1];
    let mut vars = base_vars(Action::Abort, actor_open_id);
    set(
        &mut vars,
        "space_key",
        code_text(&shorten(space_key, shown.name)),
    );
    set(&mut vars, "space_key_text", shorten(space_key, shown.name));
    match result {
        Ok(space) => {
            let name = if space.name.is_empty() {
                &space.simple_name
            } else {
                &space.name
            };
            set(&mut vars, "space_name", md_text(name, shown.name));
            set(&mut vars, "space_name_text", shorten(name, shown.name));
            set(
                &mut vars,
                "space_simple_name",
                code_text(&shorten(&space.simple_name, shown.name)),
            );
            add_message(&mut vars, "bound", "");
            cards::render("bound", &vars)
        }
        Err(outcome) => {
            set(&mut vars, "space_name", md_text(space_key, shown.name));
            set(
                &mut vars,
                "detail",
                md_text(outcome.detail().unwrap_or_default(), shown.reason),
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
        md_text(outcome.detail().unwrap_or_default(), FITS[1].reason),
    );
    add_message(&mut vars, outcome.key(), "");
    cards::render("outcome", &vars)
}

/// Characters of an item or type name in a link preview's inline title.
const INLINE_CHARS: usize = 80;

/// The words of an item's state in a link preview (`preview_state_*`, as `state_label_*`).
fn add_preview_state(vars: &mut Vars, is_aborted: Option<bool>) {
    let state = match is_aborted {
        Some(true) => "preview_state_aborted",
        Some(false) => "preview_state_active",
        None => "preview_state_unknown",
    };
    add_message(vars, state, "state_");
}

fn title_of(vars: &Vars, field: &str) -> Title {
    let text = |suffix: &str| match vars.get(&format!("preview_{field}_{suffix}")) {
        Some(Var::Text(t)) => t.clone(),
        _ => String::new(),
    };
    Title {
        zh: text("zh"),
        en: text("en"),
    }
}

/// A link preview's inline title for an item the viewer can see: name · type · state.
pub fn preview_title(item: &WorkItem) -> Title {
    let mut vars = Vars::new();
    let name = if item.name.is_empty() {
        item.id.to_string()
    } else {
        item.name.clone()
    };
    set(&mut vars, "name", shorten(&name, INLINE_CHARS));
    set(&mut vars, "type", shorten(&item.type_name, INLINE_CHARS));
    add_preview_state(&mut vars, item.is_aborted);
    add_message(&mut vars, "preview", "preview_");
    title_of(&vars, "inline")
}

/// The inline title made from the link alone (space, type, id as the URL names them): what a
/// viewer who may not see the item sees, and what answers while Feishu Project is slow.
pub fn preview_url_title(item_ref: Option<&WorkItemRef>) -> Title {
    let mut vars = Vars::new();
    let Some(r) = item_ref else {
        add_message(&mut vars, "preview", "preview_");
        return title_of(&vars, "link");
    };
    set(
        &mut vars,
        "space",
        shorten(r.space.as_deref().unwrap_or_default(), INLINE_CHARS),
    );
    set(
        &mut vars,
        "type",
        shorten(r.type_key.as_deref().unwrap_or_default(), INLINE_CHARS),
    );
    set(&mut vars, "id", r.id.to_string());
    add_message(&mut vars, "preview", "preview_");
    title_of(&vars, "from_url")
}

/// A link preview's card: the item's name, type, state, space and link as the viewer sees
/// them, and the form of the action that applies (Abort… for an active item, Restore… for an
/// aborted one) with the space's options. Whoever submits it acts, as themselves.
pub fn preview_card(
    found: &Found,
    action: Action,
    menu: &ReasonMenu,
    web_url: &Url,
    stamp: &CardStamp<'_>,
) -> Value {
    fitted(|shown| {
        let mut vars = base_vars(action, None);
        let report = ItemReport {
            item_ref: found.item_ref.clone(),
            space_key: Some(found.space_key.clone()),
            space: Some(found.space.clone()),
            item: Some(found.item.clone()),
            outcome: Outcome::Done,
            code: None,
        };
        item_vars(&mut vars, &report, web_url, shown);
        let name = if found.item.name.is_empty() {
            found.item.id.to_string()
        } else {
            found.item.name.clone()
        };
        // A plain_text header: cut, not escaped.
        set(&mut vars, "item_title", shorten(&name, shown.name));
        add_preview_state(&mut vars, found.item.is_aborted);
        let color = if found.item.is_aborted == Some(true) {
            "preview_color_aborted"
        } else {
            "preview_color_active"
        };
        add_message(&mut vars, "preview", "preview_");
        if let Some(Var::Text(c)) = vars.get(color).cloned() {
            set(&mut vars, "color", c);
        }
        for lang in ["zh", "en"] {
            if let Some(v) = vars.get(&format!("preview_fields_{lang}")).cloned() {
                vars.insert(format!("fields_{lang}"), v);
            }
        }
        let items = vec![found.resolved_ref()];
        let go = stamp.value(Kind::Go, action, None, None, items);
        add_form(
            &mut vars,
            &labels_cut(menu, shown.label),
            None,
            "",
            go,
            None,
            "form_preview",
        );
        cards::render("preview", &vars)
    })
}

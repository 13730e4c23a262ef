//! The validated vocabulary of the bot: what can be done to which work item, and why.
//! Everything here is parsed from outside text once, so the rest of the code never sees an
//! invalid action, option or reference.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// Abort (终止) or restore (恢复): one endpoint, told apart by `is_aborted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Abort,
    Restore,
}

impl Action {
    pub fn key(self) -> &'static str {
        match self {
            Action::Abort => "abort",
            Action::Restore => "restore",
        }
    }

    /// The opposite action, offered on a result card (Undo / Abort again).
    pub fn opposite(self) -> Action {
        match self {
            Action::Abort => Action::Restore,
            Action::Restore => Action::Abort,
        }
    }

    /// The documented options for this action, in display order. Abort: the defaults of the
    /// space's 终止原因 field (a space may configure others, see [`ReasonMenu`]); restore: fixed.
    pub fn options(self) -> &'static [ReasonOption] {
        match self {
            Action::Abort => &[
                ReasonOption::CANCEL,
                ReasonOption::REPEAT,
                ReasonOption::TEST,
                ReasonOption::OTHER,
            ],
            Action::Restore => &[
                ReasonOption::RESTART,
                ReasonOption::ROLLBACK,
                ReasonOption::TEST,
                ReasonOption::OTHER,
            ],
        }
    }

    /// Whether a value can be an option of this action at all: restore options are fixed;
    /// abort options are whatever the space configured (Feishu Project is the judge), except
    /// the restore-only ones.
    pub fn accepts(self, option: &ReasonOption) -> bool {
        match self {
            Action::Abort => ![ReasonOption::RESTART, ReasonOption::ROLLBACK].contains(option),
            Action::Restore => self.options().contains(option),
        }
    }

    /// Reads an option word against the documented options (see [`ReasonMenu::parse`]).
    pub fn parse_option(self, word: &str) -> Option<ReasonOption> {
        ReasonMenu::defaults(self).parse(word)
    }

    /// A documented option a mistyped word was probably meant to be (`repat` → `repeat`).
    pub fn suggest_option(self, word: &str) -> Option<ReasonOption> {
        ReasonMenu::defaults(self).suggest(word)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A `reason_option` value, as sent in the PUT. Abort: the documented defaults of the space's
/// 终止原因 field (cancel / repeat / test / other) or a value the space configured for it;
/// restore (fixed): restart / rollback / test / other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ReasonOption(Cow<'static, str>);

/// The longest option value accepted from a space's configuration or a button.
const MAX_OPTION_CHARS: usize = 100;

impl ReasonOption {
    pub const CANCEL: ReasonOption = ReasonOption(Cow::Borrowed("cancel"));
    pub const REPEAT: ReasonOption = ReasonOption(Cow::Borrowed("repeat"));
    pub const RESTART: ReasonOption = ReasonOption(Cow::Borrowed("restart"));
    pub const ROLLBACK: ReasonOption = ReasonOption(Cow::Borrowed("rollback"));
    pub const TEST: ReasonOption = ReasonOption(Cow::Borrowed("test"));
    pub const OTHER: ReasonOption = ReasonOption(Cow::Borrowed("other"));

    /// The value sent as `reason_option`.
    pub fn key(&self) -> &str {
        &self.0
    }

    /// Chinese words accepted in chat for a documented option.
    fn zh_words(&self) -> &'static [&'static str] {
        match self.key() {
            "cancel" => &["取消"],
            "repeat" => &["重复/合并", "重复", "合并"],
            "restart" => &["重启"],
            "rollback" => &["误操作回退", "回退"],
            "test" => &["测试"],
            "other" => &["其他"],
            _ => &[],
        }
    }

    /// Whether its words live in `cards/messages.json` (a documented option).
    pub fn is_documented(&self) -> bool {
        Action::Abort.options().contains(self) || Action::Restore.options().contains(self)
    }

    /// `other` is accepted only with a reason (Feishu Project answers 20009 otherwise).
    pub fn needs_reason(&self) -> bool {
        self.key() == "other"
    }

    /// A value from outside (a button, a space's configuration): non-empty, printable, short.
    pub fn parse_key(key: &str) -> Option<ReasonOption> {
        let ok = !key.is_empty()
            && key.chars().count() <= MAX_OPTION_CHARS
            && !key.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok {
            return None;
        }
        Some(
            Action::Abort
                .options()
                .iter()
                .chain(Action::Restore.options())
                .find(|o| o.key() == key)
                .cloned()
                .unwrap_or_else(|| ReasonOption(Cow::Owned(key.to_owned()))),
        )
    }
}

/// One option a picker offers: the value sent, and the space's label for it (None for a
/// documented option, whose words are in `cards/messages.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonChoice {
    pub option: ReasonOption,
    pub label: Option<String>,
}

/// The options of one action in one space, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonMenu {
    pub action: Action,
    pub choices: Vec<ReasonChoice>,
}

impl ReasonMenu {
    /// The documented options.
    pub fn defaults(action: Action) -> Self {
        Self {
            action,
            choices: action
                .options()
                .iter()
                .map(|o| ReasonChoice {
                    option: o.clone(),
                    label: None,
                })
                .collect(),
        }
    }

    /// A space's own abort options; empty → the documented defaults.
    pub fn configured(action: Action, choices: Vec<ReasonChoice>) -> Self {
        if choices.is_empty() || action == Action::Restore {
            return Self::defaults(action);
        }
        Self { action, choices }
    }

    /// Only the options every menu offers (a command whose items are in several spaces).
    pub fn intersect(mut self, other: &ReasonMenu) -> Self {
        self.choices
            .retain(|c| other.choices.iter().any(|o| o.option == c.option));
        self
    }

    /// The space's label of an option, when it has one.
    pub fn label(&self, option: &ReasonOption) -> Option<&str> {
        self.choices
            .iter()
            .find(|c| &c.option == option)
            .and_then(|c| c.label.as_deref())
    }

    /// The words a person may type for a choice: its value, its label, and for a documented
    /// option its Chinese words; all lower case.
    fn words(c: &ReasonChoice) -> impl Iterator<Item = String> + '_ {
        std::iter::once(c.option.key().to_lowercase())
            .chain(c.label.iter().map(|l| l.to_lowercase()))
            .chain(c.option.zh_words().iter().map(|w| (*w).to_owned()))
    }

    /// Reads an option word: a value or a label, case-insensitive.
    pub fn parse(&self, word: &str) -> Option<ReasonOption> {
        let lower = word.to_lowercase();
        self.choices
            .iter()
            .find(|c| Self::words(c).any(|w| w == lower))
            .map(|c| c.option.clone())
    }

    /// An option a mistyped word was probably meant to be (`repat` → `repeat`).
    pub fn suggest(&self, word: &str) -> Option<ReasonOption> {
        let lower = word.to_lowercase();
        if lower.chars().count() < 3 {
            return None;
        }
        self.choices
            .iter()
            .flat_map(|c| Self::words(c).map(move |w| (c, w)))
            .map(|(c, w)| {
                let len = w.chars().count();
                (edit_distance(&lower, &w), len, c)
            })
            .filter(|(d, len, _)| *d <= 2 && *d < len / 2 + 1)
            .min_by_key(|(d, _, _)| *d)
            .map(|(_, _, c)| c.option.clone())
    }
}

/// A work item as the user named it; the space and type may still be unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkItemRef {
    /// project_key or simple_name, when the ref was a URL.
    pub space: Option<String>,
    /// type_key or api_name, when given.
    pub type_key: Option<String>,
    pub id: u64,
}

impl fmt::Display for WorkItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.type_key {
            Some(t) => write!(f, "{t}/{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// Web hosts whose work item URLs are accepted as refs, besides the configured one.
const KNOWN_WEB_HOSTS: &[&str] = &["project.feishu.cn", "meegle.com", "www.meegle.com"];

impl WorkItemRef {
    /// `12345`, `story/12345`, or `https://<web host>/<space>/<type>/detail/<id>`.
    pub fn parse(word: &str, web_url: &Url) -> Option<WorkItemRef> {
        let word = word.trim_matches(|c| matches!(c, '<' | '>' | '(' | ')' | ',' | '，'));
        if let Some(id) = parse_id(word) {
            return Some(WorkItemRef {
                space: None,
                type_key: None,
                id,
            });
        }
        if word.starts_with("http://") || word.starts_with("https://") {
            return Self::parse_url(word, web_url);
        }
        let (type_key, id) = word.split_once('/')?;
        if !is_type_key(type_key) {
            return None;
        }
        Some(WorkItemRef {
            space: None,
            type_key: Some(type_key.to_owned()),
            id: parse_id(id)?,
        })
    }

    fn parse_url(word: &str, web_url: &Url) -> Option<WorkItemRef> {
        let url = Url::parse(word).ok()?;
        let host = url.host_str()?;
        if Some(host) != web_url.host_str() && !KNOWN_WEB_HOSTS.contains(&host) {
            return None;
        }
        let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
        // A web URL configured with a path prefix keeps that prefix before the space.
        let prefix: Vec<&str> = if Some(host) == web_url.host_str() {
            web_url
                .path_segments()
                .map(|s| s.filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let rest = segments.strip_prefix(prefix.as_slice())?;
        match rest {
            [space, type_key, "detail", id] if is_space_key(space) && is_type_key(type_key) => {
                Some(WorkItemRef {
                    space: Some((*space).to_owned()),
                    type_key: Some((*type_key).to_owned()),
                    id: parse_id(id)?,
                })
            }
            _ => None,
        }
    }
}

fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|id| *id > 0)
}

/// A type_key or api_name: letters, digits, `_` and `-`.
fn is_type_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A project_key or simple_name as it may appear in a path segment.
pub fn is_space_key(s: &str) -> bool {
    is_type_key(s)
}

/// Levenshtein distance, for "did you mean" on option words (a handful of short strings).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The link to a work item in the Feishu Project web UI.
pub fn item_link(web_url: &Url, simple_name: &str, type_key: &str, id: u64) -> String {
    let base = web_url.as_str().trim_end_matches('/');
    format!("{base}/{simple_name}/{type_key}/detail/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Url {
        Url::parse("https://project.feishu.cn").expect("url")
    }

    #[test]
    fn refs_in_every_form() {
        let id = WorkItemRef::parse("12345", &web()).expect("id");
        assert_eq!((id.space, id.type_key, id.id), (None, None, 12345));
        let typed = WorkItemRef::parse("story/12345", &web()).expect("typed");
        assert_eq!(typed.type_key.as_deref(), Some("story"));
        let url = WorkItemRef::parse(
            "https://project.feishu.cn/doc/issue/detail/987?tab=1",
            &web(),
        )
        .expect("url");
        assert_eq!(
            (url.space.as_deref(), url.type_key.as_deref(), url.id),
            (Some("doc"), Some("issue"), 987)
        );
        let meegle =
            WorkItemRef::parse("https://meegle.com/space1/story/detail/5", &web()).expect("meegle");
        assert_eq!(meegle.space.as_deref(), Some("space1"));
    }

    #[test]
    fn not_refs() {
        for w in [
            "repeat",
            "0",
            "-1",
            "12a",
            "story/",
            "/12",
            "https://evil.example/doc/story/detail/1",
            "https://project.feishu.cn/doc/story/1",
            "99999999999999999999",
        ] {
            assert_eq!(WorkItemRef::parse(w, &web()), None, "{w}");
        }
    }

    #[test]
    fn options_by_key_and_chinese_label() {
        assert_eq!(
            Action::Abort.parse_option("REPEAT"),
            Some(ReasonOption::REPEAT)
        );
        assert_eq!(
            Action::Abort.parse_option("重复"),
            Some(ReasonOption::REPEAT)
        );
        assert_eq!(
            Action::Abort.parse_option("重复/合并"),
            Some(ReasonOption::REPEAT)
        );
        assert_eq!(
            Action::Restore.parse_option("误操作回退"),
            Some(ReasonOption::ROLLBACK)
        );
        assert_eq!(Action::Abort.parse_option("restart"), None);
        assert_eq!(Action::Restore.parse_option("cancel"), None);
    }

    #[test]
    fn close_words_get_a_suggestion() {
        assert_eq!(
            Action::Abort.suggest_option("repat"),
            Some(ReasonOption::REPEAT)
        );
        assert_eq!(
            Action::Abort.suggest_option("cancl"),
            Some(ReasonOption::CANCEL)
        );
        assert_eq!(
            Action::Restore.suggest_option("rollbak"),
            Some(ReasonOption::ROLLBACK)
        );
        assert_eq!(Action::Abort.suggest_option("because"), None);
        assert_eq!(Action::Abort.suggest_option("te"), None);
    }

    #[test]
    fn a_space_menu_reads_value_or_label_and_suggests() {
        let choice = |value: &str, label: &str| ReasonChoice {
            option: ReasonOption::parse_key(value).expect("value"),
            label: Some(label.to_owned()),
        };
        let menu = ReasonMenu::configured(
            Action::Abort,
            vec![
                choice("budget_cut", "预算削减"),
                choice("wontfix", "Won't Fix"),
                choice("other", "其他"),
            ],
        );
        let budget = ReasonOption::parse_key("budget_cut").expect("value");
        assert_eq!(menu.parse("BUDGET_CUT"), Some(budget.clone()));
        assert_eq!(menu.parse("预算削减"), Some(budget.clone()));
        assert_eq!(
            menu.parse("won't fix").map(|o| o.key().to_owned()),
            Some("wontfix".into())
        );
        assert_eq!(
            menu.parse("cancel"),
            None,
            "not one of this space's options"
        );
        assert_eq!(menu.suggest("budget_ct"), Some(budget.clone()));
        assert_eq!(menu.label(&budget), Some("预算削减"));
        assert!(menu.parse("其他").is_some_and(|o| o.needs_reason()));
        assert_eq!(
            ReasonMenu::configured(Action::Abort, Vec::new()),
            ReasonMenu::defaults(Action::Abort)
        );
        let common = menu.intersect(&ReasonMenu::defaults(Action::Abort));
        assert_eq!(common.choices.len(), 1, "only `other` is in both");
    }

    #[test]
    fn option_values_from_outside_are_checked() {
        assert_eq!(
            ReasonOption::parse_key("repeat"),
            Some(ReasonOption::REPEAT)
        );
        for bad in ["", "two words", "tab\t", &"x".repeat(101)] {
            assert_eq!(ReasonOption::parse_key(bad), None, "{bad:?}");
        }
        assert!(Action::Abort.accepts(&ReasonOption::parse_key("budget_cut").expect("value")));
        assert!(!Action::Abort.accepts(&ReasonOption::RESTART));
        assert!(!Action::Restore.accepts(&ReasonOption::CANCEL));
    }

    #[test]
    fn link_shape() {
        assert_eq!(
            item_link(&web(), "doc", "story", 7),
            "https://project.feishu.cn/doc/story/detail/7"
        );
    }
}

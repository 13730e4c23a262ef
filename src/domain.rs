//! The validated vocabulary of the bot: what can be done to which work item, and why.
//! Everything here is parsed from outside text once, so the rest of the code never sees an
//! invalid action, option or reference.

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

    /// The options Feishu Project accepts for this action, in display order.
    pub fn options(self) -> &'static [ReasonOption] {
        match self {
            Action::Abort => &[
                ReasonOption::Cancel,
                ReasonOption::Repeat,
                ReasonOption::Test,
                ReasonOption::Other,
            ],
            Action::Restore => &[
                ReasonOption::Restart,
                ReasonOption::Rollback,
                ReasonOption::Test,
                ReasonOption::Other,
            ],
        }
    }

    /// Reads an option word: the key or its Chinese label, case-insensitive.
    pub fn parse_option(self, word: &str) -> Option<ReasonOption> {
        let lower = word.to_lowercase();
        self.options()
            .iter()
            .copied()
            .find(|o| o.key() == lower || o.zh_words().contains(&lower.as_str()))
    }

    /// An option a mistyped word was probably meant to be (`repat` → `repeat`).
    pub fn suggest_option(self, word: &str) -> Option<ReasonOption> {
        let lower = word.to_lowercase();
        if lower.chars().count() < 3 {
            return None;
        }
        self.options()
            .iter()
            .copied()
            .map(|o| (edit_distance(&lower, o.key()), o))
            .filter(|(d, o)| *d <= 2 && *d < o.key().len() / 2 + 1)
            .min_by_key(|(d, _)| *d)
            .map(|(_, o)| o)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A `reason_option` value. Abort: cancel / repeat / test / other (the defaults of the space's
/// 终止原因 field). Restore (fixed): restart / rollback / test / other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonOption {
    Cancel,
    Repeat,
    Restart,
    Rollback,
    Test,
    Other,
}

impl ReasonOption {
    pub fn key(self) -> &'static str {
        match self {
            ReasonOption::Cancel => "cancel",
            ReasonOption::Repeat => "repeat",
            ReasonOption::Restart => "restart",
            ReasonOption::Rollback => "rollback",
            ReasonOption::Test => "test",
            ReasonOption::Other => "other",
        }
    }

    /// Chinese words accepted for this option in chat.
    fn zh_words(self) -> &'static [&'static str] {
        match self {
            ReasonOption::Cancel => &["取消"],
            ReasonOption::Repeat => &["重复/合并", "重复", "合并"],
            ReasonOption::Restart => &["重启"],
            ReasonOption::Rollback => &["误操作回退", "回退"],
            ReasonOption::Test => &["测试"],
            ReasonOption::Other => &["其他"],
        }
    }

    /// `other` is accepted only with a reason (Feishu Project answers 20009 otherwise).
    pub fn needs_reason(self) -> bool {
        self == ReasonOption::Other
    }

    pub fn parse_key(key: &str) -> Option<ReasonOption> {
        [
            ReasonOption::Cancel,
            ReasonOption::Repeat,
            ReasonOption::Restart,
            ReasonOption::Rollback,
            ReasonOption::Test,
            ReasonOption::Other,
        ]
        .into_iter()
        .find(|o| o.key() == key)
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
            Some(ReasonOption::Repeat)
        );
        assert_eq!(
            Action::Abort.parse_option("重复"),
            Some(ReasonOption::Repeat)
        );
        assert_eq!(
            Action::Abort.parse_option("重复/合并"),
            Some(ReasonOption::Repeat)
        );
        assert_eq!(
            Action::Restore.parse_option("误操作回退"),
            Some(ReasonOption::Rollback)
        );
        assert_eq!(Action::Abort.parse_option("restart"), None);
        assert_eq!(Action::Restore.parse_option("cancel"), None);
    }

    #[test]
    fn close_words_get_a_suggestion() {
        assert_eq!(
            Action::Abort.suggest_option("repat"),
            Some(ReasonOption::Repeat)
        );
        assert_eq!(
            Action::Abort.suggest_option("cancl"),
            Some(ReasonOption::Cancel)
        );
        assert_eq!(
            Action::Restore.suggest_option("rollbak"),
            Some(ReasonOption::Rollback)
        );
        assert_eq!(Action::Abort.suggest_option("because"), None);
        assert_eq!(Action::Abort.suggest_option("te"), None);
    }

    #[test]
    fn link_shape() {
        assert_eq!(
            item_link(&web(), "doc", "story", 7),
            "https://project.feishu.cn/doc/story/detail/7"
        );
    }
}

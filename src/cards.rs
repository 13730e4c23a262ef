//! Renders the Card JSON 2.0 templates kept in `cards/` (data, compiled into the binary).
//!
//! A template is ordinary card JSON with three additions:
//! - `{{name}}` inside any string is replaced by the variable's text, in one pass, so text that
//!   came from a user can never expand into another placeholder;
//! - an object with `"$if": "name"` is kept only when `name` is set and non-empty
//!   (`"$unless"` the opposite); the key itself is removed;
//! - an array entry `{"$each": "rows", "$item": {…}}` repeats `$item` once per row of a list;
//! - an object `{"$include": "part"}` is replaced by the part `cards/parts/part.json`, rendered
//!   with the same variables (pieces shared by several cards, such as the action form);
//! - a string that is exactly `"{{name}}"` where `name` is a JSON variable becomes that JSON
//!   (button callback values);
//! - a key ending in `?` is kept (without the `?`) only when its value renders non-empty, for
//!   properties Lark refuses when empty (`initial_option`, `default_value`).
//!
//! `cards/messages.json` holds the words of every outcome in zh_cn and en_us; the caller picks
//! an entry and its strings are rendered like a template before they fill one.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

/// A template variable: text, a list of rows for `$each`, or JSON placed whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    Text(String),
    List(Vec<Vars>),
    Json(Value),
}

pub type Vars = BTreeMap<String, Var>;

/// Convenience for building [`Vars`].
pub fn set(vars: &mut Vars, name: &str, text: impl Into<String>) {
    vars.insert(name.to_owned(), Var::Text(text.into()));
}

static TEMPLATES: &[(&str, &str)] = &[
    ("outcome", include_str!("../cards/outcome.json")),
    ("batch", include_str!("../cards/batch.json")),
    ("help", include_str!("../cards/help.json")),
    ("picker", include_str!("../cards/picker.json")),
    ("bound", include_str!("../cards/bound.json")),
    ("confirm_batch", include_str!("../cards/confirm_batch.json")),
    ("progress", include_str!("../cards/progress.json")),
    ("cancelled", include_str!("../cards/cancelled.json")),
    ("refused", include_str!("../cards/refused.json")),
    ("preview", include_str!("../cards/preview.json")),
    (
        "parts/action_form",
        include_str!("../cards/parts/action_form.json"),
    ),
];

static MESSAGES: &str = include_str!("../cards/messages.json");

struct Library {
    templates: BTreeMap<&'static str, Value>,
    messages: Value,
}

/// Parsed once; the files are part of the build and checked by the tests below.
static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library {
    templates: TEMPLATES
        .iter()
        .map(|(name, text)| (*name, serde_json::from_str(text).unwrap_or(Value::Null)))
        .collect(),
    messages: serde_json::from_str(MESSAGES).unwrap_or(Value::Null),
});

/// Renders template `name` with `vars`. An unknown template renders as `null`.
pub fn render(name: &str, vars: &Vars) -> Value {
    let mut vars = vars.clone();
    add_message(&mut vars, "ui", "ui_");
    LIBRARY
        .templates
        .get(name)
        .map(|t| fill(t, &vars))
        .and_then(|v| v.into_iter().next())
        .unwrap_or(Value::Null)
}

/// Adds the words of message `key` to `vars`: every string field `f` of the entry becomes
/// `{prefix}f_zh` / `{prefix}f_en` (for `{zh_cn, en_us}` objects) or `{prefix}f`, each rendered
/// with `vars` first.
pub fn add_message(vars: &mut Vars, key: &str, prefix: &str) {
    let Some(entry) = LIBRARY.messages.get(key).and_then(Value::as_object) else {
        return;
    };
    let mut words = Vars::new();
    for (field, value) in entry {
        match value {
            Value::String(s) => set(&mut words, &format!("{prefix}{field}"), substitute(s, vars)),
            Value::Object(langs) => {
                for (lang, suffix) in [("zh_cn", "zh"), ("en_us", "en")] {
                    if let Some(s) = langs.get(lang).and_then(Value::as_str) {
                        set(
                            &mut words,
                            &format!("{prefix}{field}_{suffix}"),
                            substitute(s, vars),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    vars.extend(words);
}

/// Escapes text from users or upstream for a markdown element, so it shows as typed and
/// cannot add links, mentions, emoji or formatting. Only what Lark's markdown gives a meaning
/// to is written as `&#N;` (the HTML entity form Lark decodes, `protocol/lark.md` §5.3 and the
/// rich-text page's "特殊字符转义说明"): `<` `>` (tags, quotes), `*` `_` `~` (emphasis), `` ` ``
/// (code), `[` `]` (links and images: without them `(`, `)` and `!` mean nothing), `\`
/// (escapes), `:` (`:EMOJI:`), and `&` (so a typed entity stays as typed). Line breaks become
/// spaces, so typed text stays on the line the template puts it on, always after a label,
/// where `#`, `-`, `+` or `1.` mean nothing. Parentheses and the rest are left as they are.
pub fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' | '>' | '*' | '_' | '~' | '`' | '[' | ']' | '\\' | ':' | '&' => {
                out.push_str(&format!("&#{};", u32::from(c)));
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text from users or upstream for inside a markdown code span (`` `…` ``), where nothing
/// is markup and entities are not decoded (CommonMark, which Lark's markdown follows,
/// `protocol/lark.md` §5.3): shown as typed, except that a backtick, which would end the span,
/// becomes `ˋ` and a line break a space.
pub fn code_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' => 'ˋ',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// `text` cut to at most `max` characters, ending in `…` when cut. For what a card shows of
/// a name or a reason; what is sent to Feishu Project is never cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What the bot allows a card's `content` string to weigh, in bytes: Lark refuses a card
/// message over 30 KB of request body (`protocol/lark.md` §4.3); this leaves about 1 KB for
/// the rest of the body and holds under either reading of "KB".
pub const CARD_BUDGET: usize = 29_000;

/// The size of `card` as it travels in a message's `content` field: the card's JSON text,
/// itself written as a JSON string (quotes and backslashes escaped; UTF-8).
pub fn content_size(card: &Value) -> usize {
    Value::String(card.to_string()).to_string().len()
}

fn text_of<'a>(vars: &'a Vars, name: &str) -> Option<&'a str> {
    match vars.get(name) {
        Some(Var::Text(t)) if !t.is_empty() => Some(t),
        _ => None,
    }
}

fn is_set(vars: &Vars, name: &str) -> bool {
    match vars.get(name) {
        Some(Var::Text(t)) => !t.is_empty(),
        Some(Var::List(l)) => !l.is_empty(),
        Some(Var::Json(v)) => !v.is_null(),
        None => false,
    }
}

/// Replaces `{{name}}` in one pass; unknown names become empty.
fn substitute(s: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                out.push_str(text_of(vars, name).unwrap_or_default());
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `name` when `s` is exactly `{{name}}`.
fn whole_placeholder(s: &str) -> Option<&str> {
    let name = s.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!name.is_empty() && !name.contains('{') && !name.contains('}')).then_some(name)
}

/// Renders one node; an object dropped by `$if`/`$unless` gives nothing, `$each` gives many.
fn fill(node: &Value, vars: &Vars) -> Vec<Value> {
    match node {
        Value::String(s) => {
            if let Some(Var::Json(v)) = whole_placeholder(s).and_then(|name| vars.get(name)) {
                return vec![v.clone()];
            }
            vec![Value::String(substitute(s, vars))]
        }
        Value::Array(items) => vec![Value::Array(
            items.iter().flat_map(|item| fill(item, vars)).collect(),
        )],
        Value::Object(obj) => {
            if let Some(cond) = obj.get("$if").and_then(Value::as_str)
                && !is_set(vars, cond)
            {
                return Vec::new();
            }
            if let Some(cond) = obj.get("$unless").and_then(Value::as_str)
                && is_set(vars, cond)
            {
                return Vec::new();
            }
            if let Some(list) = obj.get("$each").and_then(Value::as_str) {
                let Some(item) = obj.get("$item") else {
                    return Vec::new();
                };
                let rows = match vars.get(list) {
                    Some(Var::List(rows)) => rows.as_slice(),
                    _ => &[],
                };
                return rows
                    .iter()
                    .flat_map(|row| {
                        let mut scoped = vars.clone();
                        scoped.extend(row.clone());
                        fill(item, &scoped)
                    })
                    .collect();
            }
            if let Some(part) = obj.get("$include").and_then(Value::as_str) {
                return LIBRARY
                    .templates
                    .get(format!("parts/{part}").as_str())
                    .map(|t| fill(t, vars))
                    .unwrap_or_default();
            }
            let mut out = Map::new();
            for (k, v) in obj {
                if k == "$if" || k == "$unless" {
                    continue;
                }
                let Some(v) = fill(v, vars).into_iter().next() else {
                    continue;
                };
                match k.strip_suffix('?') {
                    Some(_) if v.as_str().is_some_and(str::is_empty) => {}
                    Some(key) => {
                        out.insert(key.to_owned(), v);
                    }
                    None => {
                        out.insert(k.clone(), v);
                    }
                }
            }
            vec![Value::Object(out)]
        }
        other => vec![other.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_parses() {
        for (name, text) in TEMPLATES {
            let parsed: Result<Value, _> = serde_json::from_str(text);
            assert!(parsed.is_ok(), "cards/{name}.json: {parsed:?}");
        }
        let parsed: Result<Value, _> = serde_json::from_str(MESSAGES);
        assert!(parsed.is_ok(), "cards/messages.json: {parsed:?}");
    }

    #[test]
    fn substitution_is_one_pass() {
        let mut vars = Vars::new();
        set(&mut vars, "a", "{{b}}");
        set(&mut vars, "b", "secret");
        assert_eq!(substitute("x {{a}} {{missing}} y", &vars), "x {{b}}  y");
        assert_eq!(substitute("open {{a", &vars), "open {{a");
    }

    #[test]
    fn conditions_and_lists() {
        let template: Value = serde_json::json!({"elements": [
            {"$if": "shown", "tag": "a"},
            {"$unless": "shown", "tag": "b"},
            {"$each": "rows", "$item": {"tag": "{{n}}"}}
        ]});
        let mut vars = Vars::new();
        set(&mut vars, "shown", "yes");
        let mut r1 = Vars::new();
        set(&mut r1, "n", "1");
        let mut r2 = Vars::new();
        set(&mut r2, "n", "2");
        vars.insert("rows".into(), Var::List(vec![r1, r2]));
        assert_eq!(
            fill(&template, &vars),
            vec![serde_json::json!({"elements": [{"tag": "a"}, {"tag": "1"}, {"tag": "2"}]})]
        );
    }

    #[test]
    fn json_variables_optional_keys_and_parts() {
        let template: Value = serde_json::json!({
            "value": "{{v}}", "text": "x {{v}}", "a?": "{{empty}}", "b?": "{{full}}"
        });
        let mut vars = Vars::new();
        vars.insert("v".into(), Var::Json(serde_json::json!({"k": 1})));
        set(&mut vars, "full", "yes");
        assert_eq!(
            fill(&template, &vars),
            vec![serde_json::json!({"value": {"k": 1}, "text": "x ", "b": "yes"})]
        );
        let part: Value = serde_json::json!([{"$include": "action_form"}]);
        let rendered = fill(&part, &vars);
        assert_eq!(rendered[0][0]["tag"], "form");
        let unknown: Value = serde_json::json!([{"$include": "nope"}]);
        assert_eq!(fill(&unknown, &vars), vec![serde_json::json!([])]);
    }

    #[test]
    fn escaping_neutralises_markdown() {
        assert_eq!(
            md_escape("<at id=all></at> **x** [l](u) _i_ ~~s~~ `c` \\ :OK: &#42;"),
            "&#60;at id=all&#62;&#60;/at&#62; &#42;&#42;x&#42;&#42; &#91;l&#93;(u) &#95;i&#95; \
             &#126;&#126;s&#126;&#126; &#96;c&#96; &#92; &#58;OK&#58; &#38;#42;"
        );
        assert_eq!(md_escape("# a\n- b\r\n> c"), "# a - b  &#62; c");
    }

    #[test]
    fn text_shows_as_typed() {
        let shown = md_escape("PDF export (first attempt) #2 - v1.0 + more! 50% \"q\" 'a' $5 /x");
        assert_eq!(
            shown,
            "PDF export (first attempt) #2 - v1.0 + more! 50% \"q\" 'a' $5 /x"
        );
        assert!(!shown.contains("&#40;"));
    }

    #[test]
    fn code_spans_keep_text_as_typed() {
        assert_eq!(code_text("my_space *x* <at>"), "my_space *x* <at>");
        assert_eq!(code_text("a`b\nc"), "aˋb c");
    }

    #[test]
    fn shortening_counts_characters() {
        assert_eq!(shorten("终止原因", 4), "终止原因");
        assert_eq!(shorten("终止原因说明", 4), "终止原…");
        assert_eq!(shorten("abc", 0), "…");
    }

    #[test]
    fn content_size_is_the_escaped_string() {
        assert_eq!(content_size(&serde_json::json!({"a": "终"})), 17);
    }
}

//! Lark's rules for a Card JSON 2.0 card, as the official component table states them
//! (`protocol/lark.md` §5.3, with the limits of §4.3 and the structure of §5.1). The emulated
//! Lark refuses every reply, send, PATCH and delayed update that breaks one, with the error
//! Lark gives; the tests check every card the bot can make with the same function.
//!
//! What is checked, per §5.3:
//! - per tag, only the documented properties (2.0 refuses unknown ones: 230099 / 200621), the
//!   required ones present, enum values among the documented ones;
//! - the removed 1.0 tags `action` and `note` (230099 / 200861);
//! - `name` and `form_action_type` on a button only inside a form; `required` only inside a
//!   form; every interactive child of a form named, names unique in the card; a form only
//!   directly in `body.elements`, never holding a form, and with a submit button;
//! - `element_id` shape and uniqueness; `margin` values in [-99, 99] px;
//! - at most 200 components (text objects count: §5.3 "text elements such as `plain_text`
//!   count"; 230099 / 11310), containers nested at most 5 deep;
//! - button text at most 100 characters, input placeholder at most 100, `max_length` 1–1000.
//!
//! Size is checked apart ([`check_size`]): Lark limits a card message to 30 KB of *request
//! body* (§4.3: "card and post ≤ 30 KB of request body"), so what counts is the body as sent,
//! where the card sits inside `content` as a JSON string (its quotes escaped, UTF-8, so one
//! CJK character is 3 bytes); `cards::content_size` gives that figure for a card alone.
//! The page says "30 KB" without saying 1000 or 1024; the emulator takes 30 × 1024 bytes and
//! the bot keeps its cards under `cards::CARD_BUDGET`, which leaves room for either reading
//! and for the rest of the body (ids, uuid).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Lark's limit on a card message's request body (§4.3), in bytes.
pub const MAX_BODY_BYTES: usize = 30 * 1024;
/// Components per card (§4.3, §5.3).
pub const MAX_ELEMENTS: usize = 200;
/// Container levels (§5.3 global rules).
pub const MAX_NESTING: usize = 5;
/// Characters of a button's text (§5.3 button row).
pub const MAX_BUTTON_TEXT: usize = 100;

/// Why Lark refuses a card. `path` is in Lark's own `ErrPath` form, e.g.
/// `ROOT -> body -> elements -> [3](tag: button) -> name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("the request body is {bytes} bytes, over the 30 KB card limit")]
    TooLarge { bytes: usize },
    #[error("{path}: unknown property")]
    Unknown { path: String },
    #[error("{path}: required property missing")]
    Missing { path: String },
    #[error("{path}: `{value}` is not an allowed value")]
    Enum { path: String, value: String },
    #[error("{path}: {what}")]
    Invalid { path: String, what: &'static str },
    #[error("{path}: cards of schema V2 no longer support this capability; unsupported tag {tag}")]
    Unsupported { path: String, tag: String },
    #[error("element exceeds the limit: {count} components, at most 200")]
    TooManyElements { count: usize },
}

impl CardError {
    /// The `code` Lark answers with (all HTTP 400, §4.3).
    pub fn code(&self) -> i64 {
        match self {
            CardError::TooLarge { .. } => 230_025,
            _ => 230_099,
        }
    }

    /// The `ErrCode` inside a 230099 answer's `ext` (§4.3 table).
    pub fn sub_code(&self) -> Option<u32> {
        match self {
            CardError::TooLarge { .. } => None,
            CardError::Unsupported { .. } => Some(200_861),
            CardError::TooManyElements { .. } => Some(11_310),
            _ => Some(200_621),
        }
    }

    /// The `msg` of Lark's answer: for 230099, `ext=ErrCode: <sub>; ErrPath: …; ErrMsg: …`.
    pub fn lark_msg(&self) -> String {
        match (self.sub_code(), self) {
            (None, _) => "message body too long".to_owned(),
            (Some(sub), e) => format!(
                "Failed to create card content, ext=ErrCode: {sub}; ErrPath: {}; ErrMsg: {e}",
                e.path()
            ),
        }
    }

    fn path(&self) -> &str {
        match self {
            CardError::Unknown { path }
            | CardError::Missing { path }
            | CardError::Enum { path, .. }
            | CardError::Invalid { path, .. }
            | CardError::Unsupported { path, .. } => path,
            CardError::TooLarge { .. } | CardError::TooManyElements { .. } => "ROOT",
        }
    }
}

/// The 30 KB limit on a request body (§4.3).
pub fn check_size(body_bytes: usize) -> Result<(), CardError> {
    if body_bytes > MAX_BODY_BYTES {
        return Err(CardError::TooLarge { bytes: body_bytes });
    }
    Ok(())
}

/// Checks a Card JSON 2.0 card against the component table.
pub fn check(card: &Value) -> Result<(), CardError> {
    let mut c = Checker::default();
    c.root(card)?;
    if c.count > MAX_ELEMENTS {
        return Err(CardError::TooManyElements { count: c.count });
    }
    Ok(())
}

const LANGUAGES: &[&str] = &[
    "zh_cn", "en_us", "zh_hk", "zh_tw", "ja_jp", "id_id", "vi_vn", "th_th", "pt_br", "es_es",
    "ko_kr", "de_de", "fr_fr", "it_it", "ru_ru", "ms_my",
];
const COLOURS: &[&str] = &[
    "blue",
    "wathet",
    "turquoise",
    "green",
    "yellow",
    "orange",
    "red",
    "carmine",
    "violet",
    "purple",
    "indigo",
    "grey",
    "default",
];
const BUTTON_TYPES: &[&str] = &[
    "default",
    "primary",
    "danger",
    "text",
    "primary_text",
    "danger_text",
    "primary_filled",
    "danger_filled",
    "laser",
];
const SPACINGS: &[&str] = &["small", "medium", "large", "extra_large"];
/// Keys every component may carry besides its own (§5.3 global rules).
const COMMON: &[&str] = &["tag", "element_id", "margin"];

#[derive(Default)]
struct Checker {
    path: Vec<String>,
    names: HashSet<String>,
    element_ids: HashSet<String>,
    count: usize,
}

/// Where a component sits, for the rules that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Directly in `body.elements`.
    BodyRoot,
    /// Somewhere inside a form.
    InForm,
    /// Anywhere else (in a column, outside any form).
    Nested,
}

type Res = Result<(), CardError>;

impl Checker {
    fn at(&self, key: &str) -> String {
        let mut p = String::from("ROOT");
        for seg in &self.path {
            p.push_str(" -> ");
            p.push_str(seg);
        }
        if !key.is_empty() {
            p.push_str(" -> ");
            p.push_str(key);
        }
        p
    }

    fn enter<T>(
        &mut self,
        seg: String,
        f: impl FnOnce(&mut Self) -> Result<T, CardError>,
    ) -> Result<T, CardError> {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }

    fn object<'a>(&self, v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, CardError> {
        v.as_object().ok_or_else(|| CardError::Invalid {
            path: self.at(key),
            what: "must be an object",
        })
    }

    fn only(&self, obj: &Map<String, Value>, allowed: &[&[&str]]) -> Res {
        for k in obj.keys() {
            if !allowed.iter().any(|set| set.contains(&k.as_str())) {
                return Err(CardError::Unknown { path: self.at(k) });
            }
        }
        Ok(())
    }

    fn required(&self, obj: &Map<String, Value>, key: &str) -> Res {
        if obj.contains_key(key) {
            Ok(())
        } else {
            Err(CardError::Missing { path: self.at(key) })
        }
    }

    fn string<'a>(
        &self,
        obj: &'a Map<String, Value>,
        key: &str,
    ) -> Result<Option<&'a str>, CardError> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(CardError::Invalid {
                path: self.at(key),
                what: "must be a string",
            }),
        }
    }

    fn one_of(&self, obj: &Map<String, Value>, key: &str, allowed: &[&str]) -> Res {
        match self.string(obj, key)? {
            Some(s) if !allowed.contains(&s) => Err(CardError::Enum {
                path: self.at(key),
                value: s.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn boolean(&self, obj: &Map<String, Value>, key: &str) -> Res {
        match obj.get(key) {
            None | Some(Value::Bool(_)) => Ok(()),
            Some(_) => Err(CardError::Invalid {
                path: self.at(key),
                what: "must be a boolean",
            }),
        }
    }

    fn int_in(&self, obj: &Map<String, Value>, key: &str, lo: i64, hi: i64) -> Res {
        match obj.get(key) {
            None => Ok(()),
            Some(v) => match v.as_i64() {
                Some(n) if (lo..=hi).contains(&n) => Ok(()),
                _ => Err(CardError::Invalid {
                    path: self.at(key),
                    what: "must be an integer in the documented range",
                }),
            },
        }
    }

    /// `small` … `extra_large` or `Npx` with N in [0, 99].
    fn spacing(&self, obj: &Map<String, Value>, key: &str) -> Res {
        match self.string(obj, key)? {
            Some(s) if !SPACINGS.contains(&s) && px(s).is_none_or(|n| !(0..=99).contains(&n)) => {
                Err(CardError::Enum {
                    path: self.at(key),
                    value: s.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// `padding` / `margin`: one to four `Npx` (or `0`) values, each in `range`.
    fn box_values(&self, obj: &Map<String, Value>, key: &str, lo: i64, hi: i64) -> Res {
        let Some(s) = self.string(obj, key)? else {
            return Ok(());
        };
        let parts: Vec<&str> = s.split_whitespace().collect();
        let ok = (1..=4).contains(&parts.len())
            && parts.iter().all(|p| {
                let n = if *p == "0" { Some(0) } else { px(p) };
                n.is_some_and(|n| (lo..=hi).contains(&n))
            });
        if ok {
            Ok(())
        } else {
            Err(CardError::Enum {
                path: self.at(key),
                value: s.to_owned(),
            })
        }
    }

    fn i18n_map(&self, obj: &Map<String, Value>, key: &str) -> Res {
        let Some(v) = obj.get(key) else {
            return Ok(());
        };
        let map = self.object(v, key)?;
        for (lang, text) in map {
            if !LANGUAGES.contains(&lang.as_str()) {
                return Err(CardError::Enum {
                    path: format!("{} -> {lang}", self.at(key)),
                    value: lang.clone(),
                });
            }
            if !text.is_string() {
                return Err(CardError::Invalid {
                    path: format!("{} -> {lang}", self.at(key)),
                    what: "must be a string",
                });
            }
        }
        Ok(())
    }

    /// A text object: `{tag, content, i18n_content?}`; `tags` lists the allowed `tag` values.
    /// Counts as a component (§5.3). Returns the longest of its texts, in characters.
    fn text(&mut self, v: &Value, key: &str, tags: &[&str]) -> Result<usize, CardError> {
        self.count += 1;
        let obj = self.object(v, key)?;
        self.enter(key.to_owned(), |c| {
            c.only(obj, &[&["tag", "content", "i18n_content"]])?;
            c.required(obj, "tag")?;
            c.one_of(obj, "tag", tags)?;
            c.required(obj, "content")?;
            c.string(obj, "content")?;
            c.i18n_map(obj, "i18n_content")?;
            let mut longest = obj
                .get("content")
                .and_then(Value::as_str)
                .map_or(0, |s| s.chars().count());
            if let Some(m) = obj.get("i18n_content").and_then(Value::as_object) {
                for s in m.values().filter_map(Value::as_str) {
                    longest = longest.max(s.chars().count());
                }
            }
            Ok(longest)
        })
    }

    fn icon(&mut self, obj: &Map<String, Value>) -> Res {
        let Some(v) = obj.get("icon") else {
            return Ok(());
        };
        let icon = self.object(v, "icon")?;
        self.enter("icon".into(), |c| {
            c.only(icon, &[&["tag", "token", "color", "img_key"]])?;
            c.required(icon, "tag")?;
            c.one_of(icon, "tag", &["standard_icon", "custom_icon"])
        })
    }

    fn element_id(&mut self, obj: &Map<String, Value>) -> Res {
        let Some(id) = self.string(obj, "element_id")? else {
            return Ok(());
        };
        let mut chars = id.chars();
        let shaped = id.len() <= 20
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !shaped {
            return Err(CardError::Invalid {
                path: self.at("element_id"),
                what: "must match ^[A-Za-z][A-Za-z0-9_]{0,19}$",
            });
        }
        if !self.element_ids.insert(id.to_owned()) {
            return Err(CardError::Invalid {
                path: self.at("element_id"),
                what: "must be unique in the card",
            });
        }
        Ok(())
    }

    fn root(&mut self, card: &Value) -> Res {
        let obj = self.object(card, "")?;
        self.only(obj, &[&["schema", "config", "card_link", "header", "body"]])?;
        match obj.get("schema").and_then(Value::as_str) {
            Some("2.0") => {}
            _ => {
                return Err(CardError::Enum {
                    path: self.at("schema"),
                    value: obj.get("schema").map(Value::to_string).unwrap_or_default(),
                });
            }
        }
        if let Some(config) = obj.get("config") {
            self.enter("config".into(), |c| c.config(config))?;
        }
        if let Some(link) = obj.get("card_link") {
            let l = self.object(link, "card_link")?;
            self.enter("card_link".into(), |c| {
                c.only(l, &[&["url", "pc_url", "ios_url", "android_url"]])
            })?;
        }
        if let Some(header) = obj.get("header") {
            self.enter("header".into(), |c| c.header(header))?;
        }
        self.required(obj, "body")?;
        let body = obj.get("body").unwrap_or(&Value::Null);
        self.enter("body".into(), |c| c.body(body))
    }

    fn config(&mut self, v: &Value) -> Res {
        let obj = self.object(v, "")?;
        self.only(
            obj,
            &[&[
                "streaming_mode",
                "streaming_config",
                "summary",
                "locales",
                "enable_forward",
                "update_multi",
                "width_mode",
                "use_custom_translation",
                "enable_forward_interaction",
                "style",
            ]],
        )?;
        if obj
            .get("update_multi")
            .is_some_and(|u| u != &Value::Bool(true))
        {
            return Err(CardError::Enum {
                path: self.at("update_multi"),
                value: obj
                    .get("update_multi")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            });
        }
        self.one_of(obj, "width_mode", &["default", "compact", "fill"])?;
        for key in [
            "streaming_mode",
            "enable_forward",
            "use_custom_translation",
            "enable_forward_interaction",
        ] {
            self.boolean(obj, key)?;
        }
        if let Some(locales) = obj.get("locales") {
            let ok = locales.as_array().is_some_and(|l| {
                l.iter()
                    .all(|x| x.as_str().is_some_and(|s| LANGUAGES.contains(&s)))
            });
            if !ok {
                return Err(CardError::Invalid {
                    path: self.at("locales"),
                    what: "must be a list of language keys",
                });
            }
        }
        if let Some(summary) = obj.get("summary") {
            let s = self.object(summary, "summary")?;
            self.enter("summary".into(), |c| {
                c.only(s, &[&["content", "i18n_content"]])?;
                c.i18n_map(s, "i18n_content")
            })?;
        }
        if let Some(style) = obj.get("style") {
            let s = self.object(style, "style")?;
            self.enter("style".into(), |c| c.only(s, &[&["text_size", "color"]]))?;
        }
        Ok(())
    }

    fn header(&mut self, v: &Value) -> Res {
        let obj = self.object(v, "")?;
        self.only(
            obj,
            &[&[
                "title",
                "subtitle",
                "text_tag_list",
                "i18n_text_tag_list",
                "template",
                "icon",
                "padding",
            ]],
        )?;
        self.required(obj, "title")?;
        for key in ["title", "subtitle"] {
            if let Some(t) = obj.get(key) {
                self.text(t, key, &["plain_text", "lark_md"])?;
            }
        }
        self.one_of(obj, "template", COLOURS)?;
        self.icon(obj)?;
        self.box_values(obj, "padding", 0, 99)?;
        if let Some(tags) = obj.get("text_tag_list") {
            let list =
                tags.as_array()
                    .filter(|l| l.len() <= 3)
                    .ok_or_else(|| CardError::Invalid {
                        path: self.at("text_tag_list"),
                        what: "must be a list of at most 3 text tags",
                    })?;
            for (i, tag) in list.iter().enumerate() {
                self.enter(format!("text_tag_list -> [{i}]"), |c| {
                    let t = c.object(tag, "")?;
                    c.only(t, &[&["tag", "element_id", "text", "color"]])?;
                    c.one_of(t, "tag", &["text_tag"])?;
                    c.required(t, "text")?;
                    c.text(
                        t.get("text").unwrap_or(&Value::Null),
                        "text",
                        &["plain_text"],
                    )?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn body(&mut self, v: &Value) -> Res {
        let obj = self.object(v, "")?;
        self.only(
            obj,
            &[&[
                "direction",
                "padding",
                "horizontal_spacing",
                "horizontal_align",
                "vertical_spacing",
                "vertical_align",
                "elements",
            ]],
        )?;
        self.required(obj, "elements")?;
        self.one_of(obj, "direction", &["vertical", "horizontal"])?;
        self.spacing(obj, "horizontal_spacing")?;
        self.spacing(obj, "vertical_spacing")?;
        self.one_of(obj, "horizontal_align", &["left", "center", "right"])?;
        self.one_of(obj, "vertical_align", &["top", "center", "bottom"])?;
        self.box_values(obj, "padding", 0, 99)?;
        self.elements(obj, Place::BodyRoot, 0)
    }

    fn elements(&mut self, obj: &Map<String, Value>, place: Place, depth: usize) -> Res {
        let Some(v) = obj.get("elements") else {
            return Ok(());
        };
        let list = v.as_array().ok_or_else(|| CardError::Invalid {
            path: self.at("elements"),
            what: "must be a list",
        })?;
        self.enter("elements".into(), |c| {
            for (i, el) in list.iter().enumerate() {
                let tag = el.get("tag").and_then(Value::as_str).unwrap_or_default();
                c.enter(format!("[{i}](tag: {tag})"), |c| {
                    c.component(el, place, depth)
                })?;
            }
            Ok(())
        })
    }

    fn component(&mut self, v: &Value, place: Place, depth: usize) -> Res {
        self.count += 1;
        let obj = self.object(v, "")?;
        self.required(obj, "tag")?;
        let tag = self.string(obj, "tag")?.unwrap_or_default();
        self.element_id(obj)?;
        self.box_values(obj, "margin", -99, 99)?;
        match tag {
            "markdown" => self.markdown(obj),
            "div" => self.div(obj),
            "hr" => self.only(obj, &[COMMON]),
            "column_set" => self.column_set(obj, place, depth + 1),
            "button" => self.button(obj, place),
            "form" => self.form(obj, place, depth + 1),
            "input" => self.input(obj, place),
            "select_static" => self.select_static(obj, place),
            "person" => self.person(obj),
            "action" | "note" => Err(CardError::Unsupported {
                path: self.at(""),
                tag: tag.to_owned(),
            }),
            other => Err(CardError::Enum {
                path: self.at("tag"),
                value: other.to_owned(),
            }),
        }
    }

    fn markdown(&mut self, obj: &Map<String, Value>) -> Res {
        self.only(
            obj,
            &[
                COMMON,
                &["content", "i18n_content", "text_align", "text_size", "icon"],
            ],
        )?;
        self.required(obj, "content")?;
        self.string(obj, "content")?;
        self.i18n_map(obj, "i18n_content")?;
        self.one_of(obj, "text_align", &["left", "center", "right"])?;
        // An unknown text_size renders as normal (§5.3): not an error, but it must be text.
        self.string(obj, "text_size")?;
        self.icon(obj)
    }

    fn div(&mut self, obj: &Map<String, Value>) -> Res {
        self.only(obj, &[COMMON, &["width", "text", "icon"]])?;
        self.width(obj, &["fill", "auto"], 16, 999)?;
        self.icon(obj)?;
        let Some(t) = obj.get("text") else {
            return Ok(());
        };
        self.count += 1;
        let text = self.object(t, "text")?;
        self.enter("text".into(), |c| {
            c.only(
                text,
                &[&[
                    "tag",
                    "element_id",
                    "content",
                    "i18n_content",
                    "text_size",
                    "text_color",
                    "text_align",
                    "lines",
                ]],
            )?;
            c.required(text, "tag")?;
            c.one_of(text, "tag", &["plain_text", "lark_md"])?;
            c.required(text, "content")?;
            c.i18n_map(text, "i18n_content")?;
            if text.contains_key("text_color")
                && text.get("tag").and_then(Value::as_str) != Some("plain_text")
            {
                return Err(CardError::Unknown {
                    path: c.at("text_color"),
                });
            }
            c.one_of(text, "text_align", &["left", "center", "right"])?;
            c.int_in(text, "lines", 1, i64::MAX)
        })
    }

    /// `width`: one of `named`, or `Npx` with N in [lo, hi].
    fn width(&self, obj: &Map<String, Value>, named: &[&str], lo: i64, hi: i64) -> Res {
        match self.string(obj, "width")? {
            Some(w) if !named.contains(&w) && px(w).is_none_or(|n| n < lo || n > hi) => {
                Err(CardError::Enum {
                    path: self.at("width"),
                    value: w.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    fn nesting(&self, depth: usize) -> Res {
        if depth > MAX_NESTING {
            return Err(CardError::Invalid {
                path: self.at(""),
                what: "containers nest at most 5 levels",
            });
        }
        Ok(())
    }

    fn column_set(&mut self, obj: &Map<String, Value>, place: Place, depth: usize) -> Res {
        self.nesting(depth)?;
        self.only(
            obj,
            &[
                COMMON,
                &[
                    "horizontal_spacing",
                    "horizontal_align",
                    "flex_mode",
                    "background_style",
                    "action",
                    "columns",
                ],
            ],
        )?;
        self.required(obj, "columns")?;
        self.one_of(
            obj,
            "flex_mode",
            &["none", "stretch", "flow", "bisect", "trisect"],
        )?;
        self.spacing(obj, "horizontal_spacing")?;
        self.one_of(obj, "horizontal_align", &["left", "center", "right"])?;
        self.one_of(obj, "background_style", COLOURS)?;
        self.action(obj)?;
        let columns = obj
            .get("columns")
            .and_then(Value::as_array)
            .ok_or_else(|| CardError::Invalid {
                path: self.at("columns"),
                what: "must be a list",
            })?;
        let inner = if place == Place::InForm {
            Place::InForm
        } else {
            Place::Nested
        };
        for (i, col) in columns.iter().enumerate() {
            self.enter(format!("columns -> [{i}](tag: column)"), |c| {
                c.count += 1;
                let col = c.object(col, "")?;
                c.only(
                    col,
                    &[
                        COMMON,
                        &[
                            "background_style",
                            "width",
                            "weight",
                            "horizontal_spacing",
                            "horizontal_align",
                            "vertical_align",
                            "vertical_spacing",
                            "direction",
                            "padding",
                            "elements",
                            "action",
                        ],
                    ],
                )?;
                if col.get("tag").and_then(Value::as_str) != Some("column") {
                    return Err(CardError::Missing { path: c.at("tag") });
                }
                c.element_id(col)?;
                c.box_values(col, "margin", -99, 99)?;
                c.width(col, &["auto", "weighted"], 16, 600)?;
                c.int_in(col, "weight", 1, 5)?;
                c.one_of(col, "background_style", COLOURS)?;
                c.one_of(col, "horizontal_align", &["left", "center", "right"])?;
                c.one_of(col, "vertical_align", &["top", "center", "bottom"])?;
                c.one_of(col, "direction", &["vertical", "horizontal"])?;
                c.spacing(col, "horizontal_spacing")?;
                c.spacing(col, "vertical_spacing")?;
                c.box_values(col, "padding", 0, 99)?;
                c.action(col)?;
                c.elements(col, inner, depth)
            })?;
        }
        Ok(())
    }

    fn action(&mut self, obj: &Map<String, Value>) -> Res {
        let Some(a) = obj.get("action") else {
            return Ok(());
        };
        let a = self.object(a, "action")?;
        self.enter("action".into(), |c| {
            c.only(a, &[&["multi_url"]])?;
            let Some(m) = a.get("multi_url") else {
                return Ok(());
            };
            let m = c.object(m, "multi_url")?;
            c.enter("multi_url".into(), |c| {
                c.only(m, &[&["url", "pc_url", "ios_url", "android_url"]])
            })
        })
    }

    /// `behaviors`: callbacks with an object value, and `open_url` where `open_url` is allowed.
    fn behaviors(&mut self, obj: &Map<String, Value>, open_url: bool) -> Res {
        let Some(b) = obj.get("behaviors") else {
            return Ok(());
        };
        let list = b.as_array().ok_or_else(|| CardError::Invalid {
            path: self.at("behaviors"),
            what: "must be a list",
        })?;
        for (i, item) in list.iter().enumerate() {
            self.enter(format!("behaviors -> [{i}]"), |c| {
                let item = c.object(item, "")?;
                match item.get("type").and_then(Value::as_str) {
                    Some("callback") => {
                        c.only(item, &[&["type", "value"]])?;
                        if !item.get("value").is_some_and(Value::is_object) {
                            return Err(CardError::Invalid {
                                path: c.at("value"),
                                what: "must be an object",
                            });
                        }
                        Ok(())
                    }
                    Some("open_url") if open_url => {
                        c.only(
                            item,
                            &[&["type", "default_url", "android_url", "ios_url", "pc_url"]],
                        )?;
                        c.required(item, "default_url")
                    }
                    other => Err(CardError::Enum {
                        path: c.at("type"),
                        value: other.unwrap_or_default().to_owned(),
                    }),
                }
            })?;
        }
        Ok(())
    }

    fn confirm(&mut self, obj: &Map<String, Value>) -> Res {
        let Some(v) = obj.get("confirm") else {
            return Ok(());
        };
        let confirm = self.object(v, "confirm")?;
        self.enter("confirm".into(), |c| {
            c.only(confirm, &[&["title", "text"]])?;
            for key in ["title", "text"] {
                c.required(confirm, key)?;
                c.text(
                    confirm.get(key).unwrap_or(&Value::Null),
                    key,
                    &["plain_text"],
                )?;
            }
            Ok(())
        })
    }

    /// A form child's `name`: required there, unique in the card.
    fn name(&mut self, obj: &Map<String, Value>, place: Place) -> Res {
        let name = self.string(obj, "name")?;
        if place == Place::InForm && name.is_none_or(str::is_empty) {
            return Err(CardError::Missing {
                path: self.at("name"),
            });
        }
        if let Some(name) = name
            && !self.names.insert(name.to_owned())
        {
            return Err(CardError::Invalid {
                path: self.at("name"),
                what: "must be unique in the card",
            });
        }
        Ok(())
    }

    fn required_flag(&self, obj: &Map<String, Value>, place: Place) -> Res {
        if obj.contains_key("required") && place != Place::InForm {
            return Err(CardError::Invalid {
                path: self.at("required"),
                what: "is allowed only inside a form",
            });
        }
        self.boolean(obj, "required")
    }

    fn button(&mut self, obj: &Map<String, Value>, place: Place) -> Res {
        let own: &[&str] = &[
            "type",
            "size",
            "width",
            "text",
            "icon",
            "hover_tips",
            "disabled",
            "disabled_tips",
            "confirm",
            "behaviors",
        ];
        if place == Place::InForm {
            self.only(obj, &[COMMON, own, &["name", "form_action_type"]])?;
            self.required(obj, "form_action_type")?;
            self.one_of(obj, "form_action_type", &["submit", "reset"])?;
        } else {
            // §5.3: `name` and `form_action_type` are documented only for a button in a form.
            self.only(obj, &[COMMON, own])?;
            self.required(obj, "behaviors")?;
        }
        self.name(obj, place)?;
        self.one_of(obj, "type", BUTTON_TYPES)?;
        self.one_of(obj, "size", &["tiny", "small", "medium", "large"])?;
        self.width(obj, &["default", "fill"], 100, i64::MAX)?;
        self.boolean(obj, "disabled")?;
        self.icon(obj)?;
        if let Some(t) = obj.get("text") {
            let longest = self.text(t, "text", &["plain_text"])?;
            if longest > MAX_BUTTON_TEXT {
                return Err(CardError::Invalid {
                    path: self.at("text"),
                    what: "button text is at most 100 characters",
                });
            }
        }
        for key in ["hover_tips", "disabled_tips"] {
            if let Some(t) = obj.get(key) {
                self.text(t, key, &["plain_text"])?;
            }
        }
        self.confirm(obj)?;
        self.behaviors(obj, true)
    }

    fn form(&mut self, obj: &Map<String, Value>, place: Place, depth: usize) -> Res {
        if place != Place::BodyRoot {
            return Err(CardError::Invalid {
                path: self.at(""),
                what: "a form may sit only directly in body.elements",
            });
        }
        self.nesting(depth)?;
        self.only(
            obj,
            &[
                COMMON,
                &[
                    "name",
                    "elements",
                    "direction",
                    "padding",
                    "horizontal_spacing",
                    "horizontal_align",
                    "vertical_spacing",
                    "vertical_align",
                ],
            ],
        )?;
        self.name(obj, Place::InForm)?;
        self.required(obj, "elements")?;
        self.one_of(obj, "direction", &["vertical", "horizontal"])?;
        self.spacing(obj, "horizontal_spacing")?;
        self.spacing(obj, "vertical_spacing")?;
        self.one_of(obj, "horizontal_align", &["left", "center", "right"])?;
        self.one_of(obj, "vertical_align", &["top", "center", "bottom"])?;
        self.box_values(obj, "padding", 0, 99)?;
        self.elements(obj, Place::InForm, depth)?;
        if !has_submit(obj.get("elements").unwrap_or(&Value::Null)) {
            return Err(CardError::Invalid {
                path: self.at("elements"),
                what: "a form needs a button with form_action_type submit",
            });
        }
        Ok(())
    }

    fn input(&mut self, obj: &Map<String, Value>, place: Place) -> Res {
        self.only(
            obj,
            &[
                COMMON,
                &[
                    "name",
                    "required",
                    "placeholder",
                    "default_value",
                    "i18n_default_value",
                    "disabled",
                    "disabled_tips",
                    "width",
                    "behaviors",
                    "max_length",
                    "input_type",
                    "show_icon",
                    "rows",
                    "auto_resize",
                    "max_rows",
                    "label",
                    "label_position",
                    "confirm",
                ],
            ],
        )?;
        self.name(obj, place)?;
        self.required_flag(obj, place)?;
        if let Some(p) = obj.get("placeholder")
            && self.text(p, "placeholder", &["plain_text"])? > 100
        {
            return Err(CardError::Invalid {
                path: self.at("placeholder"),
                what: "placeholder is at most 100 characters",
            });
        }
        self.string(obj, "default_value")?;
        self.i18n_map(obj, "i18n_default_value")?;
        self.int_in(obj, "max_length", 1, 1000)?;
        self.one_of(obj, "input_type", &["text", "multiline_text", "password"])?;
        self.one_of(obj, "label_position", &["top", "left"])?;
        self.int_in(obj, "rows", 1, i64::MAX)?;
        self.int_in(obj, "max_rows", 1, i64::MAX)?;
        for key in ["disabled", "show_icon", "auto_resize"] {
            self.boolean(obj, key)?;
        }
        self.width(obj, &["default", "fill"], 100, i64::MAX)?;
        for key in ["label", "disabled_tips"] {
            if let Some(t) = obj.get(key) {
                self.text(t, key, &["plain_text"])?;
            }
        }
        self.confirm(obj)?;
        self.behaviors(obj, false)
    }

    fn select_static(&mut self, obj: &Map<String, Value>, place: Place) -> Res {
        self.only(
            obj,
            &[
                COMMON,
                &[
                    "type",
                    "name",
                    "required",
                    "disabled",
                    "initial_option",
                    "initial_index",
                    "placeholder",
                    "width",
                    "behaviors",
                    "options",
                    "confirm",
                ],
            ],
        )?;
        self.name(obj, place)?;
        self.required_flag(obj, place)?;
        // §5.3: outside a form a select needs its callback; inside, the submit carries it.
        if place != Place::InForm {
            self.required(obj, "behaviors")?;
        }
        self.one_of(obj, "type", &["default", "text"])?;
        self.boolean(obj, "disabled")?;
        self.string(obj, "initial_option")?;
        self.int_in(obj, "initial_index", 0, i64::MAX)?;
        self.width(obj, &["default", "fill"], 100, i64::MAX)?;
        if let Some(p) = obj.get("placeholder") {
            self.text(p, "placeholder", &["plain_text"])?;
        }
        let options = match obj.get("options") {
            None => &Vec::new(),
            Some(Value::Array(o)) => o,
            Some(_) => {
                return Err(CardError::Invalid {
                    path: self.at("options"),
                    what: "must be a list",
                });
            }
        };
        let mut values = HashSet::new();
        for (i, option) in options.iter().enumerate() {
            self.enter(format!("options -> [{i}]"), |c| {
                let o = c.object(option, "")?;
                c.only(o, &[&["text", "icon", "value"]])?;
                c.required(o, "text")?;
                c.required(o, "value")?;
                c.text(
                    o.get("text").unwrap_or(&Value::Null),
                    "text",
                    &["plain_text"],
                )?;
                c.icon(o)?;
                let value = c.string(o, "value")?.unwrap_or_default();
                if !values.insert(value.to_owned()) {
                    return Err(CardError::Invalid {
                        path: c.at("value"),
                        what: "option values must be unique",
                    });
                }
                Ok(())
            })?;
        }
        self.confirm(obj)?;
        self.behaviors(obj, false)
    }

    fn person(&mut self, obj: &Map<String, Value>) -> Res {
        self.only(
            obj,
            &[
                COMMON,
                &["size", "show_avatar", "show_name", "style", "user_id"],
            ],
        )?;
        self.required(obj, "user_id")?;
        self.string(obj, "user_id")?;
        self.one_of(obj, "size", &["extra_small", "small", "medium", "large"])?;
        self.one_of(obj, "style", &["normal", "capsule"])?;
        self.boolean(obj, "show_avatar")?;
        self.boolean(obj, "show_name")
    }
}

/// `N` of `"Npx"`.
fn px(s: &str) -> Option<i64> {
    s.strip_suffix("px")?.parse().ok()
}

/// Whether a form's elements hold a submit button (at any depth, e.g. in a column).
fn has_submit(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_submit),
        Value::Object(o) => {
            (o.get("tag").and_then(Value::as_str) == Some("button")
                && o.get("form_action_type").and_then(Value::as_str) == Some("submit"))
                || o.get("elements").is_some_and(has_submit)
                || o.get("columns").is_some_and(has_submit)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn card(elements: Value) -> Value {
        json!({"schema": "2.0", "config": {"update_multi": true, "width_mode": "fill"},
               "header": {"title": {"tag": "plain_text", "content": "t",
                                    "i18n_content": {"zh_cn": "标", "en_us": "t"}},
                          "template": "blue"},
               "body": {"elements": elements}})
    }

    fn button() -> Value {
        json!({"tag": "button", "type": "primary", "text": {"tag": "plain_text", "content": "Go"},
               "behaviors": [{"type": "callback", "value": {"k": "go"}}]})
    }

    fn form(children: Value) -> Value {
        json!({"tag": "form", "name": "f", "elements": children})
    }

    fn submit(name: &str) -> Value {
        json!({"tag": "button", "name": name, "form_action_type": "submit",
               "text": {"tag": "plain_text", "content": "Go"},
               "behaviors": [{"type": "callback", "value": {}}]})
    }

    fn err(card: &Value) -> CardError {
        match check(card) {
            Err(e) => e,
            Ok(()) => panic!("accepted: {card}"),
        }
    }

    #[test]
    fn a_good_card_passes() {
        let good = card(json!([
            {"tag": "markdown", "content": "**x**", "text_size": "notation", "element_id": "m1"},
            {"tag": "hr", "margin": "4px 0"},
            button(),
            {"tag": "column_set", "flex_mode": "none", "columns": [
                {"tag": "column", "width": "auto", "elements": [button()]}]},
            form(json!([
                {"tag": "select_static", "name": "option", "required": true,
                 "options": [{"text": {"tag": "plain_text", "content": "A"}, "value": "a"}]},
                {"tag": "input", "name": "reason", "max_length": 1000},
                {"tag": "column_set", "columns": [{"tag": "column", "elements": [submit("go")]}]}
            ])),
            {"tag": "person", "user_id": "ou_1"}
        ]));
        assert_eq!(check(&good), Ok(()));
    }

    #[test]
    fn unknown_properties_are_refused_with_their_path() {
        let mut b = button();
        b["name"] = json!("retry");
        let e = err(&card(json!([{"tag": "hr"}, b])));
        assert_eq!(
            e,
            CardError::Unknown {
                path: "ROOT -> body -> elements -> [1](tag: button) -> name".into()
            }
        );
        assert_eq!((e.code(), e.sub_code()), (230_099, Some(200_621)));
        assert!(
            e.lark_msg()
                .contains("ErrCode: 200621; ErrPath: ROOT -> body")
        );
        let mut c = card(json!([]));
        c["config"]["wide_screen_mode"] = json!(true);
        assert!(
            matches!(err(&c), CardError::Unknown { path } if path == "ROOT -> config -> wide_screen_mode")
        );
        let mut c = card(json!([]));
        c["elements"] = json!([]);
        assert!(matches!(err(&c), CardError::Unknown { .. }));
        let md = json!({"tag": "markdown", "content": "x", "name": "n"});
        assert!(matches!(err(&card(json!([md]))), CardError::Unknown { .. }));
    }

    #[test]
    fn enums_are_checked() {
        let mut b = button();
        b["type"] = json!("loud");
        assert!(matches!(err(&card(json!([b]))), CardError::Enum { value, .. } if value == "loud"));
        let mut c = card(json!([]));
        c["header"]["template"] = json!("pink");
        assert!(matches!(err(&c), CardError::Enum { .. }));
        let mut c = card(json!([]));
        c["config"]["update_multi"] = json!(false);
        assert!(matches!(err(&c), CardError::Enum { .. }));
        let mut c = card(json!([]));
        c["header"]["title"]["i18n_content"]["klingon"] = json!("x");
        assert!(matches!(err(&c), CardError::Enum { .. }));
        let cs = json!({"tag": "column_set", "flex_mode": "wide", "columns": []});
        assert!(matches!(err(&card(json!([cs]))), CardError::Enum { .. }));
    }

    #[test]
    fn required_fields_are_checked() {
        let mut c = card(json!([]));
        c["header"].as_object_mut().map(|h| h.remove("title"));
        assert!(
            matches!(err(&c), CardError::Missing { path } if path == "ROOT -> header -> title")
        );
        assert!(matches!(
            err(&card(json!([{"tag": "markdown"}]))),
            CardError::Missing { .. }
        ));
        let mut b = button();
        b.as_object_mut().map(|o| o.remove("behaviors"));
        assert!(matches!(err(&card(json!([b]))), CardError::Missing { .. }));
        let no_body = json!({"schema": "2.0"});
        assert!(matches!(err(&no_body), CardError::Missing { .. }));
        let v1 = json!({"elements": []});
        assert!(matches!(
            err(&v1),
            CardError::Unknown { .. } | CardError::Enum { .. }
        ));
    }

    #[test]
    fn deprecated_tags_give_200861() {
        let e = err(&card(json!([{"tag": "action", "actions": []}])));
        assert_eq!(e.sub_code(), Some(200_861));
        assert!(e.lark_msg().contains("[0](tag: action)"));
    }

    #[test]
    fn form_rules() {
        // Names unique card-wide.
        let dup = form(json!([{"tag": "input", "name": "x"}, submit("x")]));
        assert!(
            matches!(err(&card(json!([dup]))), CardError::Invalid { what, .. } if what.contains("unique"))
        );
        // Every interactive child named.
        let unnamed = form(json!([{"tag": "input"}, submit("go")]));
        assert!(matches!(
            err(&card(json!([unnamed]))),
            CardError::Missing { .. }
        ));
        // A submit button is needed.
        let reset_only = form(
            json!([{"tag": "button", "name": "r", "form_action_type": "reset",
                                      "text": {"tag": "plain_text", "content": "R"}}]),
        );
        assert!(matches!(
            err(&card(json!([reset_only]))),
            CardError::Invalid { .. }
        ));
        // Only at the body root; never inside a column or another form.
        let in_column = json!({"tag": "column_set", "columns": [
            {"tag": "column", "elements": [form(json!([submit("go")]))]}]});
        assert!(matches!(
            err(&card(json!([in_column]))),
            CardError::Invalid { .. }
        ));
        let nested = form(json!([form(json!([submit("a")])), submit("b")]));
        assert!(matches!(
            err(&card(json!([nested]))),
            CardError::Invalid { .. }
        ));
        // `required` only inside a form.
        let loose = json!({"tag": "input", "required": true});
        assert!(matches!(
            err(&card(json!([loose]))),
            CardError::Invalid { .. }
        ));
        // form_action_type outside a form is not a documented property.
        let mut b = button();
        b["form_action_type"] = json!("submit");
        assert!(matches!(err(&card(json!([b]))), CardError::Unknown { .. }));
    }

    #[test]
    fn element_ids_are_shaped_and_unique() {
        let bad = json!({"tag": "hr", "element_id": "1abc"});
        assert!(matches!(
            err(&card(json!([bad]))),
            CardError::Invalid { .. }
        ));
        let long = json!({"tag": "hr", "element_id": "a".repeat(21)});
        assert!(matches!(
            err(&card(json!([long]))),
            CardError::Invalid { .. }
        ));
        let twice = json!([{"tag": "hr", "element_id": "a"}, {"tag": "hr", "element_id": "a"}]);
        assert!(matches!(err(&card(twice)), CardError::Invalid { .. }));
        let margin = json!({"tag": "hr", "margin": "100px"});
        assert!(matches!(
            err(&card(json!([margin]))),
            CardError::Enum { .. }
        ));
    }

    #[test]
    fn at_most_200_components() {
        let many: Vec<Value> = (0..200).map(|_| json!({"tag": "hr"})).collect();
        // 200 hr plus the title's text object.
        let e = err(&card(Value::Array(many.clone())));
        assert_eq!(e, CardError::TooManyElements { count: 201 });
        assert_eq!(e.sub_code(), Some(11_310));
        assert_eq!(check(&card(Value::Array(many[..199].to_vec()))), Ok(()));
    }

    #[test]
    fn nesting_at_most_5() {
        let mut inner = json!({"tag": "markdown", "content": "x"});
        for _ in 0..6 {
            inner =
                json!({"tag": "column_set", "columns": [{"tag": "column", "elements": [inner]}]});
        }
        assert!(
            matches!(err(&card(json!([inner]))), CardError::Invalid { what, .. } if what.contains("5 levels"))
        );
        let mut ok = json!({"tag": "markdown", "content": "x"});
        for _ in 0..5 {
            ok = json!({"tag": "column_set", "columns": [{"tag": "column", "elements": [ok]}]});
        }
        assert_eq!(check(&card(json!([ok]))), Ok(()));
    }

    #[test]
    fn button_text_at_most_100_characters() {
        let mut b = button();
        b["text"]["content"] = json!("终".repeat(100));
        assert_eq!(check(&card(json!([b.clone()]))), Ok(()));
        b["text"]["i18n_content"] = json!({"zh_cn": "终".repeat(101)});
        assert!(matches!(err(&card(json!([b]))), CardError::Invalid { .. }));
    }

    #[test]
    fn behaviors_and_options() {
        let mut b = button();
        b["behaviors"] = json!([{"type": "callback", "value": "string"}]);
        assert!(matches!(err(&card(json!([b]))), CardError::Invalid { .. }));
        let open = json!([{"type": "open_url"}]);
        let mut b = button();
        b["behaviors"] = open.clone();
        assert!(matches!(err(&card(json!([b]))), CardError::Missing { .. }));
        let select = json!({"tag": "select_static", "behaviors": [{"type": "open_url", "default_url": "https://x"}],
                            "options": []});
        assert!(matches!(
            err(&card(json!([select]))),
            CardError::Enum { .. }
        ));
        let twice = json!({"tag": "select_static", "behaviors": [{"type": "callback", "value": {}}],
                           "options": [{"text": {"tag": "plain_text", "content": "a"}, "value": "a"},
                                       {"text": {"tag": "plain_text", "content": "b"}, "value": "a"}]});
        assert!(matches!(
            err(&card(json!([twice]))),
            CardError::Invalid { .. }
        ));
    }

    #[test]
    fn size_is_the_request_body_against_30_kb() {
        assert_eq!(check_size(MAX_BODY_BYTES), Ok(()));
        let e = check_size(MAX_BODY_BYTES + 1).err();
        assert_eq!(e.as_ref().map(CardError::code), Some(230_025));
    }
}

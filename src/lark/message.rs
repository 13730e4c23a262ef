//! `im.message.receive_v1`: the fields the bot needs, and the command text taken from `text`
//! and rich-text `post` content.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{str_at, value_at};

/// The ids Lark gives a user; which ones are present depends on the event and the scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIds {
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    pub user_id: Option<String>,
}

impl UserIds {
    pub fn from_value(v: Option<&Value>) -> Self {
        let get = |k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Self {
            open_id: get("open_id"),
            union_id: get("union_id"),
            user_id: get("user_id"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatType {
    P2p,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub key: String,
    pub open_id: Option<String>,
    pub name: String,
}

/// A received message, reduced to what a command needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// The envelope's `header.event_id` (for logs; empty when stored by an older version).
    #[serde(default)]
    pub event_id: String,
    pub message_id: String,
    pub chat_id: String,
    pub chat_type: ChatType,
    /// Present when the message belongs to a thread (话题): the answer goes there too.
    pub thread_id: Option<String>,
    pub sender: UserIds,
    /// The command text (mention placeholders still in it), or None for a message type
    /// that cannot carry a command (image, file, …).
    pub text: Option<String>,
    pub mentions: Vec<Mention>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed im.message.receive_v1 event: missing {0}")]
pub struct MessageError(&'static str);

impl ReceivedMessage {
    /// Reads a schema-2.0 `im.message.receive_v1` envelope.
    pub fn from_event(body: &Value) -> Result<Self, MessageError> {
        let message_id = str_at(body, "/event/message/message_id")
            .ok_or(MessageError("message.message_id"))?
            .to_owned();
        let chat_id = str_at(body, "/event/message/chat_id")
            .ok_or(MessageError("message.chat_id"))?
            .to_owned();
        let chat_type = match str_at(body, "/event/message/chat_type") {
            Some("p2p") => ChatType::P2p,
            Some(_) => ChatType::Group,
            None => return Err(MessageError("message.chat_type")),
        };
        let message_type = str_at(body, "/event/message/message_type").unwrap_or_default();
        let content = str_at(body, "/event/message/content").unwrap_or_default();
        let mentions = value_at(body, "/event/message/mentions")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|m| Mention {
                        key: str_at(m, "/key").unwrap_or_default().to_owned(),
                        open_id: str_at(m, "/id/open_id").map(str::to_owned),
                        name: str_at(m, "/name").unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            event_id: str_at(body, "/header/event_id")
                .unwrap_or_default()
                .to_owned(),
            message_id,
            chat_id,
            chat_type,
            thread_id: str_at(body, "/event/message/thread_id").map(str::to_owned),
            sender: UserIds::from_value(value_at(body, "/event/sender/sender_id")),
            text: command_text(message_type, content),
            mentions,
        })
    }

    /// Whether the bot (by its open_id) is among the mentions.
    pub fn mentions_open_id(&self, open_id: &str) -> bool {
        self.mentions
            .iter()
            .any(|m| m.open_id.as_deref() == Some(open_id))
    }
}

/// The text of a `text` or `post` message's content (a JSON string), or None for other types.
pub fn command_text(message_type: &str, content: &str) -> Option<String> {
    let content: Value = serde_json::from_str(content).ok()?;
    match message_type {
        "text" => content
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_owned),
        "post" => Some(post_text(&content)),
        _ => None,
    }
}

/// Joins the `text` and `a` runs of a received post, paragraph by paragraph; `at` elements
/// (mentions) and media are dropped. Accepts the locale-wrapped send shape too.
fn post_text(content: &Value) -> String {
    let post = if content.get("content").is_some() {
        content
    } else {
        content
            .as_object()
            .and_then(|o| o.values().find(|v| v.get("content").is_some()))
            .unwrap_or(content)
    };
    let paragraphs = post
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    paragraphs
        .iter()
        .filter_map(Value::as_array)
        .map(|elements| {
            elements
                .iter()
                .filter(|e| matches!(e.get("tag").and_then(Value::as_str), Some("text" | "a")))
                .filter_map(|e| e.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_content() {
        assert_eq!(
            command_text("text", r#"{"text":"@_user_1 /abort 1 repeat"}"#).as_deref(),
            Some("@_user_1 /abort 1 repeat")
        );
        assert_eq!(command_text("image", r#"{"image_key":"x"}"#), None);
        assert_eq!(command_text("text", "not json"), None);
    }

    #[test]
    fn post_content_drops_mentions_and_media() {
        let content = r#"{"title":"","content":[[{"tag":"at","user_id":"@_user_1","user_name":"Bot"},{"tag":"text","text":" /abort 12345 "},{"tag":"a","text":"repeat","href":"x"}],[{"tag":"img","image_key":"k"}],[{"tag":"text","text":"dup"}]]}"#;
        assert_eq!(
            command_text("post", content).as_deref(),
            Some(" /abort 12345 repeat\n\ndup")
        );
    }

    #[test]
    fn post_content_with_locale_wrapper() {
        let content = r#"{"zh_cn":{"title":"t","content":[[{"tag":"text","text":"/help"}]]}}"#;
        assert_eq!(command_text("post", content).as_deref(), Some("/help"));
    }
}

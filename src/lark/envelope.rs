//! What a verified request from Lark turns out to be.

use serde_json::Value;

/// A verified, decrypted request, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `url_verification`: answer `{"challenge": …}` at once.
    Challenge { challenge: String },
    /// A schema-2.0 event (or a 1.0 `event_callback`), keyed for dedup.
    Event(EventEnvelope),
    /// A schema-2.0 `card.action.trigger` callback.
    CardAction(CardActionEnvelope),
    /// A legacy message-card callback (no event_id, no union_id).
    LegacyCardAction(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// `header.event_id` (2.0) or `uuid` (1.0).
    pub event_id: String,
    /// `header.event_type` (2.0) or `event.type` (1.0).
    pub event_type: String,
    /// The whole decrypted envelope.
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardActionEnvelope {
    pub event_id: String,
    pub body: Value,
}

/// A string field at a path of object keys written like a JSON pointer (`/event/message/chat_id`),
/// if present and non-empty. Keys are taken literally: no `~` escapes, which also keeps this
/// off `Value::pointer`'s per-segment allocations on the hot path.
pub fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    value_at(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The value at a path of object keys (see [`str_at`]).
pub fn value_at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').skip(1).try_fold(v, |v, key| v.get(key))
}

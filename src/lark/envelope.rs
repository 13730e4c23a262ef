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

/// A string field at a JSON pointer, if present and non-empty.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

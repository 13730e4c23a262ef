//! The link-preview callback `url.preview.get` and its answer (`protocol/lark.md` §10.2,
//! §10.3).
//!
//! The request names the viewer (`event.operator`: open_id, no union_id) and the link
//! (`event.context`: url, preview_token, open_message_id, open_chat_id). While a person is
//! still typing there is no preview_token and no message or chat. The answer always carries
//! `inline` (the title shown in place of the link, mandatory per the guide); the card is
//! optional, and whether Lark accepts a raw JSON 2.0 card there is UNCONFIRMED, so a refused
//! card still leaves the right title.

use serde_json::{Value, json};

use super::envelope::{EventEnvelope, str_at};
use super::message::UserIds;

/// The `header.event_type` of the callback.
pub const EVENT_TYPE: &str = "url.preview.get";

/// One viewer's request for the preview of one link.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRequest {
    pub event_id: String,
    /// Who is looking: the lookup is made as this person.
    pub viewer: UserIds,
    pub url: String,
    /// The same for every viewer of this link in this message; absent while typing.
    pub preview_token: Option<String>,
    pub open_message_id: Option<String>,
    pub open_chat_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed url.preview.get callback: missing {0}")]
pub struct PreviewError(&'static str);

impl PreviewRequest {
    pub fn from_event(env: &EventEnvelope) -> Result<Self, PreviewError> {
        let event = env.body.get("event").ok_or(PreviewError("event"))?;
        let viewer = UserIds::from_value(event.get("operator"));
        if viewer.open_id.is_none() && viewer.union_id.is_none() {
            return Err(PreviewError("event.operator"));
        }
        let url = str_at(event, "/context/url").ok_or(PreviewError("event.context.url"))?;
        let owned = |path: &str| str_at(event, path).map(str::to_owned);
        Ok(Self {
            event_id: env.event_id.clone(),
            viewer,
            url: url.to_owned(),
            preview_token: owned("/context/preview_token"),
            open_message_id: owned("/context/open_message_id"),
            open_chat_id: owned("/context/open_chat_id"),
        })
    }
}

/// A title in both languages (plain text, not markdown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title {
    pub zh: String,
    pub en: String,
}

/// What the viewer sees: the inline title always, a card when the viewer may see the item.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewAnswer {
    pub title: Title,
    pub card: Option<Value>,
}

impl PreviewAnswer {
    /// `{inline: {title, i18n_title}, card: {type: raw, data}}`: `i18n_title` wins over
    /// `title` in the clients that read it (§10.3); `title` is there for those that do not.
    pub fn to_body(&self) -> Value {
        let mut body = json!({"inline": {
            "title": self.title.en,
            "i18n_title": {"zh_cn": self.title.zh, "en_us": self.title.en},
        }});
        if let Some(card) = &self.card {
            body["card"] = json!({"type": "raw", "data": card});
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(event: Value) -> EventEnvelope {
        EventEnvelope {
            event_id: "e1".into(),
            event_type: EVENT_TYPE.into(),
            body: json!({"schema": "2.0", "header": {"event_id": "e1"}, "event": event}),
        }
    }

    #[test]
    fn reads_viewer_link_and_token() {
        let r = PreviewRequest::from_event(&env(json!({
            "operator": {"tenant_key": "t", "open_id": "ou_1"},
            "host": "im_message", "delivery_type": "url_preview",
            "context": {"url": "https://project.feishu.cn/a/story/detail/1",
                        "preview_token": "pt_1", "open_message_id": "om_1", "open_chat_id": "oc_1"}
        })))
        .expect("request");
        assert_eq!(r.viewer.open_id.as_deref(), Some("ou_1"));
        assert_eq!(r.viewer.union_id, None);
        assert_eq!(r.preview_token.as_deref(), Some("pt_1"));
        assert_eq!(r.open_chat_id.as_deref(), Some("oc_1"));
    }

    #[test]
    fn while_typing_there_is_no_token_and_empty_context_is_absent() {
        let r = PreviewRequest::from_event(&env(json!({
            "operator": {"open_id": "ou_1"},
            "context": {"url": "https://x.example/a", "open_message_id": "", "open_chat_id": ""}
        })))
        .expect("request");
        assert_eq!(r.preview_token, None);
        assert_eq!(r.open_message_id, None);
        assert_eq!(
            PreviewRequest::from_event(&env(json!({"operator": {"open_id": "ou_1"}}))),
            Err(PreviewError("event.context.url"))
        );
        assert_eq!(
            PreviewRequest::from_event(&env(json!({"context": {"url": "u"}}))),
            Err(PreviewError("event.operator"))
        );
    }

    #[test]
    fn answer_always_has_inline() {
        let title = Title {
            zh: "标题".into(),
            en: "Title".into(),
        };
        let only = PreviewAnswer {
            title: title.clone(),
            card: None,
        };
        assert_eq!(
            only.to_body(),
            json!({"inline": {"title": "Title", "i18n_title": {"zh_cn": "标题", "en_us": "Title"}}})
        );
        let with = PreviewAnswer {
            title,
            card: Some(json!({"schema": "2.0"})),
        };
        assert_eq!(
            with.to_body()["card"],
            json!({"type": "raw", "data": {"schema": "2.0"}})
        );
    }
}

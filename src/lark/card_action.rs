//! A card click, from either callback form, reduced to what the bot needs, and the shape of
//! the answer each form expects.
//!
//! - 2.0 `card.action.trigger` (`/lark/events` or `/lark/cards`): the clicker is
//!   `event.operator` (union_id included), the delayed-update token is `event.token`, the
//!   message is `event.context.open_message_id`; it is deduplicated on `header.event_id`.
//! - Legacy card request URL (`/lark/cards`): the clicker is the top-level `open_id` only, the
//!   top-level `token` is the delayed-update token; there is no event id, so the dedup key is
//!   derived from (open_message_id, open_id, what was clicked).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::envelope::{CardActionEnvelope, str_at};
use super::message::UserIds;

/// Which callback form a click came in, which decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackForm {
    V2,
    Legacy,
}

/// One click, verified by [`super::verify`] and read here.
#[derive(Debug, Clone, PartialEq)]
pub struct CardClick {
    pub form: CallbackForm,
    /// The durable dedup key of this click: the same for a redelivery of it.
    pub click_id: String,
    pub operator: UserIds,
    /// `c-…`: the delayed-update token (30 min, at most 2 uses).
    pub card_token: Option<String>,
    pub open_message_id: Option<String>,
    pub open_chat_id: Option<String>,
    /// The clicked component's callback value, as sent (outside input until verified).
    pub value: Value,
    /// A `select_static`'s choice outside a form.
    pub option: Option<String>,
    /// An `input`'s text outside a form.
    pub input_value: Option<String>,
    /// On a form submit: each named child's value.
    pub form_value: Map<String, Value>,
    /// Set on a click on a link preview's card (`delivery_type: url_preview`,
    /// `protocol/lark.md` §10.5): the preview to refresh, since the message is not the bot's.
    pub preview_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed card callback: missing {0}")]
pub struct ClickError(&'static str);

impl CardClick {
    /// Reads a 2.0 `card.action.trigger` envelope.
    pub fn from_v2(env: &CardActionEnvelope) -> Result<Self, ClickError> {
        let event = env.body.get("event").ok_or(ClickError("event"))?;
        let operator = UserIds::from_value(event.get("operator"));
        if operator.open_id.is_none() && operator.union_id.is_none() {
            return Err(ClickError("event.operator"));
        }
        let action = event.get("action").ok_or(ClickError("event.action"))?;
        Ok(Self {
            form: CallbackForm::V2,
            click_id: format!("click:{}", env.event_id),
            operator,
            card_token: str_at(event, "/token").map(str::to_owned),
            open_message_id: str_at(event, "/context/open_message_id").map(str::to_owned),
            open_chat_id: str_at(event, "/context/open_chat_id").map(str::to_owned),
            preview_token: str_at(event, "/context/preview_token").map(str::to_owned),
            ..read_action(action)
        })
    }

    /// Reads a legacy card callback (already authenticated by its SHA-1 signature).
    pub fn from_legacy(body: &Value) -> Result<Self, ClickError> {
        let open_id = str_at(body, "/open_id").ok_or(ClickError("open_id"))?;
        let action = body.get("action").ok_or(ClickError("action"))?;
        let open_message_id = str_at(body, "/open_message_id");
        let mut click = read_action(action);
        // Everything that was clicked or typed, so a second submit with a corrected form is
        // a new click while a double click of the same thing is not.
        let clicked = json!([
            click.value,
            click.option,
            click.input_value,
            click.form_value
        ]);
        let mut h = Sha256::new();
        for part in [
            open_message_id.unwrap_or_default(),
            open_id,
            &clicked.to_string(),
        ] {
            h.update(part.len().to_string().as_bytes());
            h.update(b":");
            h.update(part.as_bytes());
        }
        click.click_id = format!("legacy:{}", hex::encode(h.finalize()));
        click.operator = UserIds {
            open_id: Some(open_id.to_owned()),
            union_id: None,
            user_id: str_at(body, "/user_id").map(str::to_owned),
        };
        click.card_token = str_at(body, "/token").map(str::to_owned);
        click.open_message_id = open_message_id.map(str::to_owned);
        click.open_chat_id = str_at(body, "/open_chat_id").map(str::to_owned);
        Ok(click)
    }

    /// A text field of the submitted form, or the component's own input outside a form.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form_value.get(name).and_then(Value::as_str)
    }
}

fn read_action(action: &Value) -> CardClick {
    CardClick {
        form: CallbackForm::Legacy,
        click_id: String::new(),
        operator: UserIds::default(),
        card_token: None,
        open_message_id: None,
        open_chat_id: None,
        value: action.get("value").cloned().unwrap_or(Value::Null),
        option: str_at(action, "/option").map(str::to_owned),
        input_value: str_at(action, "/input_value").map(str::to_owned),
        form_value: action
            .get("form_value")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        preview_token: None,
    }
}

/// A toast: the type Lark shows it with, and its words in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    /// `info`, `success`, `warning` or `error`.
    pub kind: &'static str,
    pub zh: String,
    pub en: String,
}

impl Toast {
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "content": self.en, "i18n": {"zh_cn": self.zh, "en_us": self.en}})
    }
}

/// The answer to a click: a toast, the card that replaces the clicked one, both or neither.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallbackAnswer {
    pub toast: Option<Toast>,
    pub card: Option<Value>,
}

impl CallbackAnswer {
    /// The HTTP body for the form the click came in. 2.0: `{toast, card: {type: raw, data}}`.
    /// Legacy: the card JSON itself when there is one (what the legacy page documents),
    /// otherwise `{toast}`.
    pub fn to_body(&self, form: CallbackForm) -> Value {
        let toast = self.toast.as_ref().map(Toast::to_json);
        match (form, &self.card) {
            (CallbackForm::Legacy, Some(card)) => card.clone(),
            (CallbackForm::V2, Some(card)) => {
                let mut body = json!({"card": {"type": "raw", "data": card}});
                if let Some(t) = toast {
                    body["toast"] = t;
                }
                body
            }
            (_, None) => toast.map_or_else(|| json!({}), |t| json!({ "toast": t })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(value: Value, form: Value) -> Value {
        json!({"open_id": "ou_1", "user_id": "u1", "open_message_id": "om_1",
               "open_chat_id": "oc_1", "tenant_key": "t", "token": "c-1",
               "action": {"value": value, "tag": "button", "form_value": form}})
    }

    #[test]
    fn v2_click_reads_operator_token_and_form() {
        let env = CardActionEnvelope {
            event_id: "e1".into(),
            body: json!({"schema": "2.0", "header": {"event_id": "e1"}, "event": {
                "operator": {"open_id": "ou_1", "union_id": "on_1"},
                "token": "c-1",
                "action": {"value": {"k": "go"}, "tag": "button", "name": "go",
                           "form_value": {"option": "repeat", "reason": "dup"}},
                "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"}}}),
        };
        let c = CardClick::from_v2(&env).expect("click");
        assert_eq!(c.click_id, "click:e1");
        assert_eq!(c.operator.union_id.as_deref(), Some("on_1"));
        assert_eq!(c.card_token.as_deref(), Some("c-1"));
        assert_eq!(c.field("option"), Some("repeat"));
        assert_eq!(c.field("reason"), Some("dup"));
        assert_eq!(c.open_message_id.as_deref(), Some("om_1"));
        let no_operator = CardActionEnvelope {
            event_id: "e2".into(),
            body: json!({"event": {"action": {}}}),
        };
        assert_eq!(
            CardClick::from_v2(&no_operator),
            Err(ClickError("event.operator"))
        );
    }

    #[test]
    fn legacy_click_key_covers_what_was_clicked_and_typed() {
        let a =
            CardClick::from_legacy(&legacy(json!({"k": 1}), json!({"reason": ""}))).expect("click");
        let same =
            CardClick::from_legacy(&legacy(json!({"k": 1}), json!({"reason": ""}))).expect("click");
        let typed = CardClick::from_legacy(&legacy(json!({"k": 1}), json!({"reason": "x"})))
            .expect("click");
        assert_eq!(a.click_id, same.click_id);
        assert_ne!(a.click_id, typed.click_id);
        assert!(a.click_id.starts_with("legacy:"));
        assert_eq!(a.operator.union_id, None);
        assert_eq!(a.card_token.as_deref(), Some("c-1"));
    }

    #[test]
    fn answer_shapes() {
        let t = Toast {
            kind: "info",
            zh: "好".into(),
            en: "ok".into(),
        };
        let card = json!({"schema": "2.0"});
        let both = CallbackAnswer {
            toast: Some(t.clone()),
            card: Some(card.clone()),
        };
        assert_eq!(
            both.to_body(CallbackForm::V2),
            json!({"toast": {"type": "info", "content": "ok", "i18n": {"zh_cn": "好", "en_us": "ok"}},
                   "card": {"type": "raw", "data": card}})
        );
        assert_eq!(both.to_body(CallbackForm::Legacy), card);
        let toast_only = CallbackAnswer {
            toast: Some(t),
            card: None,
        };
        assert_eq!(
            toast_only.to_body(CallbackForm::Legacy)["toast"]["type"],
            "info"
        );
        assert_eq!(
            CallbackAnswer::default().to_body(CallbackForm::V2),
            json!({})
        );
    }
}

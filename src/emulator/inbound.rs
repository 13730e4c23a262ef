//! What the Lark Open Platform sends to a bot: `im.message.receive_v1` events and
//! `card.action.trigger` callbacks, built field for field as Lark builds them, then encrypted
//! and signed with the app's Encrypt Key. The sandbox page and the tests both use these, so
//! the bot sees exactly what production Lark would send it.

use serde_json::{Value, json};

use crate::lark::crypto;

/// The app a request is addressed to: what Lark puts in every envelope and signs with.
#[derive(Debug, Clone)]
pub struct LarkApp {
    pub app_id: String,
    pub verification_token: String,
    /// None: plain bodies and no signature headers, as Lark does without an Encrypt Key.
    pub encrypt_key: Option<String>,
    pub tenant_key: String,
}

/// A chat user as events name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender<'a> {
    pub open_id: &'a str,
    pub union_id: &'a str,
}

/// Where a message was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatRef<'a> {
    pub chat_id: &'a str,
    /// `p2p` or `group`.
    pub chat_type: &'a str,
    /// `omt_…` when the message is in a thread.
    pub thread_id: Option<&'a str>,
}

/// An @mention: `key` is the `@_user_N` placeholder that stands in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionRef {
    pub key: String,
    pub open_id: String,
    pub union_id: String,
    pub name: String,
    /// `bot` or `user`.
    pub mentioned_type: String,
}

/// A click on a card component, as `event.action` carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Click {
    /// The component's callback `value` (opaque to Lark, echoed back).
    pub value: Value,
    /// `button`, `select_static`, `input`, …
    pub tag: String,
    /// The component's `name`, if it has one.
    pub name: Option<String>,
    /// The chosen option of a `select_static` outside a form.
    pub option: Option<String>,
    /// The text of an `input` outside a form.
    pub input_value: Option<String>,
    /// On a form submit: every named child's value.
    pub form_value: Option<Value>,
}

/// A request ready to POST: the raw body and the headers Lark sends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl LarkApp {
    /// A schema-2.0 envelope around `event`; `create_time` as Lark writes it for that type.
    pub fn envelope(
        &self,
        event_id: &str,
        event_type: &str,
        create_time: &str,
        event: Value,
    ) -> Value {
        json!({
            "schema": "2.0",
            "header": {"event_id": event_id, "event_type": event_type, "create_time": create_time,
                       "token": self.verification_token, "app_id": self.app_id,
                       "tenant_key": self.tenant_key},
            "event": event
        })
    }

    /// An `im.message.receive_v1` envelope for a text message; `text` already carries the
    /// `@_user_N` placeholders of `mentions`. `now_ms` is the send time.
    #[allow(clippy::too_many_arguments)]
    pub fn message_event(
        &self,
        event_id: &str,
        message_id: &str,
        sender: Sender<'_>,
        chat: ChatRef<'_>,
        text: &str,
        mentions: &[MentionRef],
        now_ms: i64,
    ) -> Value {
        let mentions: Vec<Value> = mentions
            .iter()
            .map(|m| {
                json!({"key": m.key, "id": {"union_id": m.union_id, "user_id": "", "open_id": m.open_id},
                       "name": m.name, "tenant_key": self.tenant_key, "mentioned_type": m.mentioned_type})
            })
            .collect();
        let mut message = json!({
            "message_id": message_id, "root_id": "", "parent_id": "",
            "create_time": now_ms.to_string(), "update_time": now_ms.to_string(),
            "chat_id": chat.chat_id, "chat_type": chat.chat_type,
            "message_type": "text",
            "content": json!({ "text": text }).to_string(),
            "mentions": mentions
        });
        if let (Some(thread), Some(m)) = (chat.thread_id, message.as_object_mut()) {
            m.insert("thread_id".into(), Value::String(thread.to_owned()));
        }
        self.envelope(
            event_id,
            "im.message.receive_v1",
            &now_ms.to_string(),
            json!({
                "sender": {"sender_id": {"union_id": sender.union_id, "user_id": "", "open_id": sender.open_id},
                           "sender_type": "user", "tenant_key": self.tenant_key},
                "message": message
            }),
        )
    }

    /// A `card.action.trigger` envelope (its `create_time` is in microseconds). `card_token`
    /// is the `c-…` delayed-update token Lark issues with each click.
    #[allow(clippy::too_many_arguments)]
    pub fn card_action_event(
        &self,
        event_id: &str,
        operator: Sender<'_>,
        card_token: &str,
        open_message_id: &str,
        open_chat_id: &str,
        click: &Click,
        now_ms: i64,
    ) -> Value {
        let mut action = serde_json::Map::new();
        action.insert("value".into(), click.value.clone());
        action.insert("tag".into(), Value::String(click.tag.clone()));
        if let Some(name) = &click.name {
            action.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(option) = &click.option {
            action.insert("option".into(), Value::String(option.clone()));
        }
        if let Some(input) = &click.input_value {
            action.insert("input_value".into(), Value::String(input.clone()));
        }
        if let Some(form) = &click.form_value {
            action.insert("form_value".into(), form.clone());
        }
        self.envelope(
            event_id,
            "card.action.trigger",
            &now_ms.saturating_mul(1000).to_string(),
            json!({
                "operator": {"tenant_key": self.tenant_key, "open_id": operator.open_id,
                             "union_id": operator.union_id},
                "token": card_token,
                "action": Value::Object(action),
                "host": "im_message",
                "delivery_type": "",
                "context": {"open_message_id": open_message_id, "open_chat_id": open_chat_id}
            }),
        )
    }

    /// Encrypts and signs an envelope as Lark does when the app has an Encrypt Key:
    /// `{"encrypt": base64(IV ‖ AES-256-CBC)}` and `X-Lark-Signature` over the raw body.
    pub fn seal(&self, envelope: &Value, timestamp_secs: i64) -> Sealed {
        let Some(key) = &self.encrypt_key else {
            return Sealed {
                body: envelope.to_string(),
                headers: Vec::new(),
            };
        };
        let iv: [u8; 16] = rand::random();
        let body =
            json!({ "encrypt": crypto::encrypt(key, &envelope.to_string(), iv) }).to_string();
        let ts = timestamp_secs.to_string();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let signature = crypto::event_signature(&ts, &nonce, key, body.as_bytes());
        Sealed {
            body,
            headers: vec![
                ("X-Lark-Request-Timestamp", ts),
                ("X-Lark-Request-Nonce", nonce),
                ("X-Lark-Signature", signature),
            ],
        }
    }
}

/// A fresh id in Lark's shapes: `om_…` messages, 32-hex event ids, `c-…` card tokens.
pub fn new_message_id() -> String {
    format!("om_{:032x}", rand::random::<u128>())
}

pub fn new_event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn new_card_token() -> String {
    format!("c-{:040x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lark::crypto;

    fn app(key: Option<&str>) -> LarkApp {
        LarkApp {
            app_id: "cli_x".into(),
            verification_token: "vt".into(),
            encrypt_key: key.map(str::to_owned),
            tenant_key: "tk".into(),
        }
    }

    #[test]
    fn sealed_body_decrypts_and_the_signature_covers_it() {
        let a = app(Some("k"));
        let env = a.envelope("e1", "x", "1", json!({"a": 1}));
        let sealed = a.seal(&env, 1_700_000_000);
        let outer: Value = serde_json::from_str(&sealed.body).expect("json");
        let plain =
            crypto::decrypt("k", outer["encrypt"].as_str().expect("encrypt")).expect("decrypts");
        assert_eq!(serde_json::from_str::<Value>(&plain).expect("json"), env);
        let h = |n: &str| {
            sealed
                .headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .expect("header")
        };
        assert_eq!(h("X-Lark-Request-Timestamp"), "1700000000");
        assert_eq!(
            h("X-Lark-Signature"),
            crypto::event_signature(
                "1700000000",
                &h("X-Lark-Request-Nonce"),
                "k",
                sealed.body.as_bytes()
            )
        );
    }

    #[test]
    fn without_a_key_the_body_is_plain_and_unsigned() {
        let a = app(None);
        let env = a.envelope("e1", "x", "1", json!({}));
        let sealed = a.seal(&env, 1);
        assert_eq!(sealed.body, env.to_string());
        assert!(sealed.headers.is_empty());
    }

    #[test]
    fn card_action_carries_form_value_and_microsecond_time() {
        let a = app(None);
        let click = Click {
            value: json!({"cmd": "go"}),
            tag: "button".into(),
            name: Some("submit".into()),
            form_value: Some(json!({"reason": "dup"})),
            ..Click::default()
        };
        let who = Sender {
            open_id: "ou_1",
            union_id: "on_1",
        };
        let env = a.card_action_event("e", who, "c-1", "om_1", "oc_1", &click, 1_000);
        assert_eq!(env["header"]["create_time"], "1000000");
        assert_eq!(env["header"]["event_type"], "card.action.trigger");
        assert_eq!(env["event"]["action"]["form_value"]["reason"], "dup");
        assert_eq!(env["event"]["action"]["name"], "submit");
        assert!(env["event"]["action"].get("option").is_none());
        assert_eq!(env["event"]["context"]["open_message_id"], "om_1");
        assert_eq!(env["event"]["operator"]["union_id"], "on_1");
    }
}

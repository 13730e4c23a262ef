//! Button values: what a card's buttons carry back to the bot, bound to their card.
//!
//! Lark echoes a button's callback `value` unchanged, but anyone who can craft a callback could
//! write any value, so a value is treated as outside input and carries an HMAC-SHA256 under
//! the card secret (`ABORT_BOT_CARD_SECRET`, derived from the app secret when unset). It holds
//! only what is needed to act:
//!
//! ```json
//! {"v":1,"k":"go","a":"abort","o":"repeat","r":"dup","i":["60ac…/story/12345"],
//!  "n":"<card nonce>","t":1716883201,"s":"<hex HMAC>"}
//! ```
//! `k` is what the button does (`go` runs the action, `cancel` closes the card), `a` the
//! action, `o`/`r` a preset option and reason (absent when the card's form asks for them), `i`
//! the items as `space/type/id` (space and type may be empty), `n` a random nonce shared by
//! every button of one card (a card acts at most once), `t` when the card was made (Unix
//! seconds, for the interaction window). The MAC covers a canonical, length-prefixed encoding
//! of every field, so no field can be changed or moved into another.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::domain::{Action, ReasonOption, WorkItemRef, is_space_key};
use crate::lark::crypto::constant_time_eq;

/// Version of the value format; a value of another version is refused.
const VERSION: u8 = 1;
/// More items than this in one value is refused (cards stay small, values too).
pub const MAX_ITEMS: usize = 100;
/// Longest preset reason a value may carry.
pub const MAX_REASON_CHARS: usize = 1000;

/// What a button does when clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Run the action on the items (Confirm, Undo, Abort again, Retry, batch Confirm).
    Go,
    /// Close the card without doing anything.
    Cancel,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Go => "go",
            Kind::Cancel => "cancel",
        }
    }
}

/// A button value's content, checked: the items parse, the option fits the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonValue {
    pub kind: Kind,
    pub action: Action,
    /// Set when the option was chosen before the card was made (Retry, batch Confirm).
    pub option: Option<ReasonOption>,
    pub reason: Option<String>,
    pub items: Vec<WorkItemRef>,
    /// Shared by every button of the card; the card's one action is claimed under it.
    pub nonce: String,
    /// When the card was made (Unix seconds).
    pub issued_at: i64,
}

/// Why a value was refused. Each is shown to the clicker as "this button is not valid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a value this bot made")]
    Shape,
    #[error("value version {0} is not supported")]
    Version(u8),
    #[error("the signature does not match")]
    Signature,
    #[error("malformed item `{0}`")]
    Item(String),
    #[error("option `{0}` does not fit the action")]
    Option(String),
    #[error("too many items or too long a reason")]
    TooLarge,
}

/// The wire form, read strictly: an unknown or missing field is refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    k: Kind,
    a: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    i: Vec<String>,
    n: String,
    t: i64,
    #[serde(default)]
    s: String,
}

impl Wire {
    /// The bytes the MAC covers: every field, each length-prefixed, in a fixed order.
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |s: &str| {
            out.extend_from_slice(s.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        };
        field("abort-bot button");
        field(&self.v.to_string());
        field(self.k.key());
        field(self.a.key());
        field(self.o.as_deref().unwrap_or("-"));
        match &self.r {
            Some(r) => field(&format!("+{r}")),
            None => field("-"),
        }
        field(&self.i.len().to_string());
        for item in &self.i {
            field(item);
        }
        field(&self.n);
        field(&self.t.to_string());
        out
    }
}

/// Signs and checks button values with the card secret.
pub struct Signer {
    key: SecretString,
}

impl Signer {
    pub fn new(card_secret: SecretString) -> Self {
        Self { key: card_secret }
    }

    fn mac_hex(&self, bytes: &[u8]) -> String {
        // HMAC accepts keys of any length; the error arm cannot happen but must not panic.
        match Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()) {
            Ok(mut mac) => {
                mac.update(bytes);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// The signed JSON value of a button.
    pub fn sign(&self, value: &ButtonValue) -> Value {
        let mut wire = Wire {
            v: VERSION,
            k: value.kind,
            a: value.action,
            o: value.option.as_ref().map(|o| o.key().to_owned()),
            r: value.reason.clone(),
            i: value.items.iter().map(encode_item).collect(),
            n: value.nonce.clone(),
            t: value.issued_at,
            s: String::new(),
        };
        wire.s = self.mac_hex(&wire.canonical());
        serde_json::to_value(&wire).unwrap_or(Value::Null)
    }

    /// Reads a clicked value back; anything not made and signed by this bot is refused.
    pub fn verify(&self, value: &Value) -> Result<ButtonValue, ValueError> {
        let wire: Wire = serde_json::from_value(value.clone()).map_err(|_| ValueError::Shape)?;
        if wire.v != VERSION {
            return Err(ValueError::Version(wire.v));
        }
        let expected = self.mac_hex(&wire.canonical());
        if expected.is_empty() || !constant_time_eq(&wire.s, &expected) {
            return Err(ValueError::Signature);
        }
        if wire.i.len() > MAX_ITEMS
            || wire
                .r
                .as_ref()
                .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(ValueError::TooLarge);
        }
        let option = match &wire.o {
            None => None,
            Some(o) => Some(
                ReasonOption::parse_key(o)
                    .filter(|opt| wire.a.accepts(opt))
                    .ok_or_else(|| ValueError::Option(o.clone()))?,
            ),
        };
        let items = wire
            .i
            .iter()
            .map(|s| decode_item(s).ok_or_else(|| ValueError::Item(s.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ButtonValue {
            kind: wire.k,
            action: wire.a,
            option,
            reason: wire.r,
            items,
            nonce: wire.n,
            issued_at: wire.t,
        })
    }
}

/// `space/type/id`, with empty segments for what is not known.
fn encode_item(r: &WorkItemRef) -> String {
    format!(
        "{}/{}/{}",
        r.space.as_deref().unwrap_or_default(),
        r.type_key.as_deref().unwrap_or_default(),
        r.id
    )
}

fn decode_item(s: &str) -> Option<WorkItemRef> {
    let mut parts = s.split('/');
    let (space, type_key, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let optional = |p: &str| -> Option<Option<String>> {
        if p.is_empty() {
            Some(None)
        } else if is_space_key(p) {
            Some(Some(p.to_owned()))
        } else {
            None
        }
    };
    // Digits only, no leading zero: one item has one spelling.
    if id.is_empty() || id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = id.parse().ok()?;
    Some(WorkItemRef {
        space: optional(space)?,
        type_key: optional(type_key)?,
        id,
    })
}

/// The buttons of one card being made: every value gets the card's nonce and time.
pub struct CardStamp<'a> {
    signer: &'a Signer,
    nonce: String,
    issued_at: i64,
}

impl<'a> CardStamp<'a> {
    /// A new card, made `now` (Unix seconds), with a fresh nonce.
    pub fn new(signer: &'a Signer, now: i64) -> Self {
        Self::fixed(signer, &new_nonce(), now)
    }

    /// A card with a given nonce (snapshots need stable values).
    pub fn fixed(signer: &'a Signer, nonce: &str, issued_at: i64) -> Self {
        Self {
            signer,
            nonce: nonce.to_owned(),
            issued_at,
        }
    }

    /// A signed button value for this card. A longer preset reason is cut to
    /// [`MAX_REASON_CHARS`].
    pub fn value(
        &self,
        kind: Kind,
        action: Action,
        option: Option<ReasonOption>,
        reason: Option<&str>,
        items: Vec<WorkItemRef>,
    ) -> Value {
        self.signer.sign(&ButtonValue {
            kind,
            action,
            option,
            reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
            items,
            nonce: self.nonce.clone(),
            issued_at: self.issued_at,
        })
    }
}

/// A fresh card nonce: 128 random bits.
pub fn new_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signer() -> Signer {
        Signer::new(SecretString::from("test card secret"))
    }

    fn sample() -> ButtonValue {
        ButtonValue {
            kind: Kind::Go,
            action: Action::Abort,
            option: Some(ReasonOption::REPEAT),
            reason: Some("dup of 1".into()),
            items: vec![
                WorkItemRef {
                    space: Some("60acd5610444ba031b503055".into()),
                    type_key: Some("story".into()),
                    id: 12345,
                },
                WorkItemRef {
                    space: None,
                    type_key: None,
                    id: 7,
                },
            ],
            nonce: "abc".into(),
            issued_at: 1_716_883_201,
        }
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let v = s.sign(&sample());
        assert_eq!(
            v["i"],
            json!(["60acd5610444ba031b503055/story/12345", "//7"])
        );
        assert_eq!(s.verify(&v), Ok(sample()));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let s = signer();
        let v = s.sign(&sample());
        for (field, new) in [
            ("k", json!("cancel")),
            ("a", json!("restore")),
            ("o", json!("cancel")),
            ("r", json!("other reason")),
            ("i", json!(["60acd5610444ba031b503055/story/12346", "//7"])),
            ("n", json!("abd")),
            ("t", json!(1_716_883_202)),
        ] {
            let mut forged = v.clone();
            forged[field] = new;
            assert!(s.verify(&forged).is_err(), "{field}");
        }
        let mut no_reason = v.clone();
        no_reason.as_object_mut().expect("object").remove("r");
        assert_eq!(s.verify(&no_reason), Err(ValueError::Signature));
    }

    #[test]
    fn another_secret_or_shape_is_refused() {
        let v = signer().sign(&sample());
        assert_eq!(
            Signer::new(SecretString::from("other")).verify(&v),
            Err(ValueError::Signature)
        );
        let mut extra = v.clone();
        extra["x"] = json!(1);
        assert_eq!(signer().verify(&extra), Err(ValueError::Shape));
        let vector = json!({"cmd": "abort", "work_item_id": "12345", "mode": "repeat"});
        assert_eq!(signer().verify(&vector), Err(ValueError::Shape));
        assert_eq!(signer().verify(&json!("text")), Err(ValueError::Shape));
        let mut upper = v.clone();
        upper["s"] = json!(v["s"].as_str().expect("sig").to_uppercase());
        assert_eq!(signer().verify(&upper), Err(ValueError::Signature));
    }

    #[test]
    fn items_are_checked() {
        for bad in [
            "1/2", "a/b/c", "a/b/0", "a/b/007", "a b/c/1", "a/b/1/2", "//-1",
        ] {
            assert_eq!(decode_item(bad), None, "{bad}");
        }
        assert!(decode_item("doc//5").is_some());
    }
}

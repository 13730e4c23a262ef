//! The parts of Feishu Project answers the bot reads. Unknown fields are ignored, as the
//! platform asks of its clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A space (空间): its id, display name and URL segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    pub project_key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub simple_name: String,
}

/// An entry of `work_item/all-types`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItemType {
    pub type_key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_name: String,
    #[serde(default)]
    pub is_disable: i64,
}

/// A work item as `work_item/:type/query` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub work_item_type_key: String,
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub simple_name: String,
    /// `Node` (node flow, can be aborted) or `State` (state flow, cannot).
    #[serde(default)]
    pub pattern: String,
    /// From the `aborted` field entry, when the answer carries it.
    #[serde(default)]
    pub is_aborted: Option<bool>,
    /// The display name of its type, filled in from the space's type list.
    #[serde(default)]
    pub type_name: String,
}

impl WorkItem {
    /// Reads one entry of a query answer, including the `aborted` field if present.
    pub fn from_value(v: &Value) -> Option<WorkItem> {
        let mut item: WorkItem = serde_json::from_value(v.clone()).ok()?;
        item.is_aborted = v
            .get("fields")
            .and_then(Value::as_array)
            .and_then(|fields| {
                fields
                    .iter()
                    .find(|f| f.get("field_key").and_then(Value::as_str) == Some("aborted"))
            })
            .and_then(|f| f.pointer("/field_value/is_aborted"))
            .and_then(Value::as_bool);
        Some(item)
    }
}

/// An entry of `POST /open_api/:project_key/field/all` (`protocol/feishu-project.md` §11.1,
/// Go SDK v2 `SimpleField`), as far as the abort reasons need it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SimpleField {
    #[serde(default)]
    pub field_key: String,
    #[serde(default)]
    pub field_alias: String,
    #[serde(default)]
    pub field_name: String,
    #[serde(default)]
    pub field_type_key: String,
    #[serde(default)]
    pub is_obsoleted: bool,
    #[serde(default)]
    pub options: Vec<FieldOption>,
}

/// An option of a select-like field (§11.1, Go SDK v2 `Option`): `label` is shown, `value` is
/// what the APIs take.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FieldOption {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub order: i64,
    /// An int64 whose 1/2 meaning is unconfirmed (§11.1); 1 is read as "disabled".
    #[serde(default)]
    pub is_disabled: i64,
}

/// Names and aliases the 终止原因 field may go by. Its key is unconfirmed (§11.2): the field is
/// found by its key or type `aborted`, or by one of these names, never by a guessed key.
const ABORT_REASON_NAMES: &[&str] = &[
    "终止原因",
    "terminate reason",
    "termination reason",
    "abort reason",
];

impl SimpleField {
    /// Whether this is the space's 终止原因 field (§11.2 step 1).
    pub fn is_abort_reason(&self) -> bool {
        let named = |s: &str| {
            let s = s.trim().to_lowercase();
            ABORT_REASON_NAMES.contains(&s.as_str())
        };
        !self.is_obsoleted
            && (self.field_key == "aborted"
                || self.field_type_key == "aborted"
                || named(&self.field_name)
                || named(&self.field_alias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abort_reason_field_is_found_by_key_type_name_or_alias() {
        let field = |key: &str, alias: &str, name: &str, type_key: &str| SimpleField {
            field_key: key.into(),
            field_alias: alias.into(),
            field_name: name.into(),
            field_type_key: type_key.into(),
            ..SimpleField::default()
        };
        assert!(field("aborted", "", "", "aborted").is_abort_reason());
        assert!(field("field_5a7c1e", "", "终止原因", "select").is_abort_reason());
        assert!(field("field_1", "", " Terminate Reason ", "select").is_abort_reason());
        assert!(field("field_2", "终止原因", "Why", "select").is_abort_reason());
        assert!(!field("priority", "priority", "优先级", "select").is_abort_reason());
        let obsolete = SimpleField {
            is_obsoleted: true,
            ..field("field_3", "", "终止原因", "select")
        };
        assert!(!obsolete.is_abort_reason());
    }
}

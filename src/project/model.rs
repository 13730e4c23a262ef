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

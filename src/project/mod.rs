//! The Feishu Project (飞书项目 / Meegle) OpenAPI client: plugin token, user and space lookups,
//! finding a work item by its bare id, and the abort/restore PUT.

pub mod client;
pub mod model;

pub use client::{Freshness, ProjectClient, ProjectError, PutAnswer};
pub use model::{SimpleField, Space, WorkItem, WorkItemType};

//! Integration tests: the real bot on an ephemeral loopback port, talking to the emulated Lark
//! and Feishu Project, which record every request it makes.

mod helpers;
mod redis_server;

mod audit;
mod backlog;
mod card_rules;
mod card_snapshots;
mod commands;
mod deploy;
mod faults;
mod interactive;
mod limits;
mod listener;
mod operate;
mod outbox;
mod outcomes;
mod pacing;
mod preview;
mod project_side;
mod props;
mod rate_limits;
mod redis_store;
mod reliability;
mod replicas;
mod sandbox;
mod secrets;
mod snapshots;
mod store;
mod store_safety;
mod vectors;
mod websocket;

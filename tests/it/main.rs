//! Integration tests: the real bot on an ephemeral loopback port, talking to the emulated Lark
//! and Feishu Project, which record every request it makes.

mod helpers;
mod redis_server;

mod card_snapshots;
mod commands;
mod interactive;
mod outcomes;
mod props;
mod rate_limits;
mod redis_store;
mod reliability;
mod sandbox;
mod snapshots;
mod store;
mod vectors;
mod websocket;

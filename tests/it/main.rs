//! Integration tests: the real bot on an ephemeral loopback port, talking to the emulated Lark
//! and Feishu Project, which record every request it makes.

mod helpers;

mod card_snapshots;
mod commands;
mod interactive;
mod outcomes;
mod reliability;
mod sandbox;
mod snapshots;
mod vectors;

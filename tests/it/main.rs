//! Integration tests: the real bot on an ephemeral loopback port, talking to the emulated Lark
//! and Feishu Project, which record every request it makes.

mod helpers;

mod commands;
mod outcomes;
mod reliability;
mod snapshots;
mod vectors;

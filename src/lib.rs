//! abort-bot: abort and restore Feishu Project work items from a Lark chat.
//!
//! The pipeline, one module per concept:
//! - [`lark`]: everything spoken with the Lark Open Platform: verifying and decrypting what it
//!   sends ([`lark::verify`]), the envelopes and messages ([`lark::envelope`], [`lark::message`]),
//!   and the API client used to answer ([`lark::client`]).
//! - [`routes`]: the HTTP edge; it only verifies, stores durably and acknowledges.
//! - [`ingest`]: what both transports (webhook, [`lark::ws`] long connection) do with a
//!   verified delivery: store durably, dedup and wake the worker, or answer a card click.
//! - [`store`]: the durable inbox (a leased queue), dedup keys, chat bindings and the record
//!   of sent PUTs, in SQLite or Redis.
//! - [`worker`]: claims stored events from the inbox a bounded page at a time, under leases,
//!   and runs them, after the ack.
//! - [`outbox`]: the cards the work answers with, stored once and delivered (retried with
//!   backoff for `ABORT_BOT_REPLY_RETRY`) as a step of their own.
//! - [`command`]: chat text → [`command::Command`]; [`domain`] holds the validated vocabulary.
//! - [`service`]: the one place that decides what an abort/restore does, free of HTTP;
//!   [`limits`] bounds what one request (and one person per minute) may ask of it.
//! - [`project`]: the Feishu Project OpenAPI client (plugin token, lookups, the abort PUT).
//! - [`circuit`]: a circuit breaker per upstream, so a failing one is not called for a while.
//! - [`cards`]: renders the JSON templates in `cards/` into Card JSON 2.0; [`views`] fills them.
//! - [`interact`]: card clicks (both callback forms, read by [`lark::card_action`]): checks the
//!   button value ([`card_value`], HMAC-bound to its card), claims the card once, and acts
//!   through the [`service`] as the person who clicked.
//! - [`audit`]: the audit trail's lines (written with each outcome) and `abort-bot audit`.
//! - [`preview`]: link previews of work items (`url.preview.get`, read by
//!   [`lark::url_preview`]): looked up as the viewer, with the action's form, refreshed when
//!   the bot changes the item.
//! - [`app`]: wiring, start-up and graceful shutdown.
//! - [`emulator`]: in-process Lark and Feishu Project for tests and the sandbox.
//! - [`sandbox`]: `abort-bot sandbox`, the bot and both emulators behind a web chat page.

pub mod app;
pub mod audit;
pub mod card_value;
pub mod cards;
pub mod chat;
pub mod circuit;
pub mod clock;
pub mod command;
pub mod config;
pub mod domain;
pub mod emulator;
pub mod ingest;
pub mod interact;
pub mod lark;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod preview;
pub mod project;
pub mod retry;
pub mod routes;
pub mod sandbox;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod views;
pub mod worker;

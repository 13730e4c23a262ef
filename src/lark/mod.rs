//! The Lark / Feishu Open Platform side: what arrives (verified and decrypted by [`verify`],
//! typed by [`envelope`] and [`message`]) and what the bot sends back ([`client`]); [`ws`] is
//! the long-connection transport that brings the same events without a public webhook.

pub mod card_action;
pub mod client;
pub mod crypto;
pub mod envelope;
pub mod message;
pub mod url_preview;
pub mod verify;
pub mod ws;

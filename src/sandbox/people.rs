//! Who is in the sandbox: the bot, the group chat, and four Lark users. Alice, Bob and Carol
//! have the union_ids of the seeded Feishu Project users (Carol is not a member of the
//! space); Dave has no Feishu Project account, so every kind of user answer can be seen.

use serde::Serialize;

/// A Lark user the page can act as.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Person {
    /// The short name the page API uses (`alice`).
    pub key: &'static str,
    pub name: &'static str,
    pub open_id: &'static str,
    pub union_id: &'static str,
    pub email: &'static str,
    /// Their one-to-one chat with the bot.
    pub p2p_chat: &'static str,
    /// What makes them interesting, for the page.
    pub about: &'static str,
}

pub const PEOPLE: [Person; 4] = [
    Person {
        key: "alice",
        name: "Alice",
        open_id: "ou_84aad35d084aa403a838cf73ee18467",
        union_id: "on_8ed6aa67826108097d9ee143816345",
        email: "alice@example.com",
        p2p_chat: "oc_84983ff6516d731e5b5f68d4ea2e1da5",
        about: "member of the Docs Team space",
    },
    Person {
        key: "bob",
        name: "Bob",
        open_id: "ou_bob0000000000000000000000000000",
        union_id: "on_bob00000000000000000000000000",
        email: "bob@example.com",
        p2p_chat: "oc_b0b00000000000000000000000000b0b",
        about: "member of the Docs Team space",
    },
    Person {
        key: "carol",
        name: "Carol",
        open_id: "ou_carol00000000000000000000000000",
        union_id: "on_carol0000000000000000000000000",
        email: "carol@example.com",
        p2p_chat: "oc_ca100000000000000000000000000ca1",
        about: "Feishu Project user, not a member of the space",
    },
    Person {
        key: "dave",
        name: "Dave",
        open_id: "ou_dave000000000000000000000000000",
        union_id: "on_dave00000000000000000000000000",
        email: "dave@example.com",
        p2p_chat: "oc_da0e000000000000000000000000da0e",
        about: "Lark user without a Feishu Project account",
    },
];

/// The group chat the page shows; its members are everyone above and the bot.
pub const GROUP_CHAT: &str = "oc_5ce6d572455d361153b7cb51da133945";
pub const GROUP_NAME: &str = "Docs Team";

pub const BOT_NAME: &str = "abort-bot";
pub const BOT_OPEN_ID: &str = "ou_7d8a6e6df7621556ce0d21922b676706";
pub const BOT_UNION_ID: &str = "on_abortbot0000000000000000000000";

/// The fixed sandbox app: nothing here grants access to anything real.
pub const APP_ID: &str = "cli_sandbox0000000001";
pub const APP_SECRET: &str = "sandbox-app-secret";
pub const VERIFICATION_TOKEN: &str = "sandboxVerificationToken0001";
pub const ENCRYPT_KEY: &str = "sandboxEncryptKey0000000000000001";
pub const TENANT_KEY: &str = "sandbox_tenant";
pub const PLUGIN_ID: &str = "MII_SANDBOX00000001";
pub const PLUGIN_SECRET: &str = "sandbox-plugin-secret";

pub fn person(key: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.key.eq_ignore_ascii_case(key))
}

pub fn by_open_id(open_id: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.open_id == open_id)
}

/// The chat a page view posts to: the group, or `who`'s one-to-one chat with the bot.
pub fn chat_id(group: bool, who: &Person) -> &'static str {
    if group { GROUP_CHAT } else { who.p2p_chat }
}

//! The address of the Redis store: `redis://` or `rediss://` (TLS), an optional password and
//! an optional `/db`. It may carry a password, so it is held as a secret and only ever shown,
//! logged or put in an error with the password masked.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// What a masked password looks like.
const MASK: &str = "***";

/// A validated Redis URL; `Debug` and `Display` mask the password.
#[derive(Clone)]
pub struct RedisUrl {
    url: SecretString,
    /// The same URL with the password masked.
    shown: String,
}

impl RedisUrl {
    /// Validates a `redis://` or `rediss://` URL. The message of an error never repeats the
    /// URL, which may hold a password.
    pub fn parse(raw: &str) -> Result<RedisUrl, String> {
        const SHAPE: &str = "redis://[:password@]host:port[/db] or rediss://…";
        let url = Url::parse(raw)
            .map_err(|e| format!("malformed: the Redis URL does not parse ({e}); use {SHAPE}"))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!(
                "malformed: the Redis URL must start with redis:// or rediss://; use {SHAPE}"
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("malformed: the Redis URL has no host; use {SHAPE}"));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!(
                "malformed: the Redis database `/{db}` is not a number; use {SHAPE}"
            ));
        }
        let mut masked = url.clone();
        // Setting these cannot fail: the URL has a host, so it can carry userinfo.
        if url.password().is_some() {
            let _ = masked.set_password(Some(MASK));
        } else if !url.username().is_empty() {
            // `redis://secret@host`: a lone userinfo part may well be the password.
            let _ = masked.set_username(MASK);
        }
        let parsed = RedisUrl {
            url: SecretString::from(raw.to_owned()),
            shown: masked.to_string(),
        };
        // The client's own checks (TLS support, the userinfo encoding), without connecting.
        ::redis::Client::open(raw).map_err(|e| {
            format!(
                "malformed: {} is not a usable Redis URL: {}",
                parsed.shown,
                parsed.scrub(&e.to_string())
            )
        })?;
        Ok(parsed)
    }

    /// The full URL, password included: for the Redis client only.
    pub(crate) fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// `text` with every form of the password (as written, and percent-decoded) masked, for
    /// messages that might repeat it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let Some(written) = Url::parse(self.expose())
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
        else {
            return text.to_owned();
        };
        let decoded = url::form_urlencoded::parse(format!("p={written}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut out = text.replace(&written, MASK);
        if !decoded.is_empty() {
            out = out.replace(&decoded, MASK);
        }
        out
    }
}

/// `raw`, a store address that may not even parse, with everything between `://` and the
/// last `@` masked: for messages about a value that could not be read as a URL.
pub fn redact(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}{MASK}{}", &rest[at..]),
        None => raw.to_owned(),
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.shown).finish()
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for RedisUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_everywhere_it_is_shown() {
        let url = RedisUrl::parse("redis://:s%40cret-pw@cache.internal:6380/2").expect("valid");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("cret-pw"), "{shown}");
            assert!(shown.contains("cache.internal:6380/2"), "{shown}");
        }
        assert_eq!(
            url.scrub("auth failed for s@cret-pw and s%40cret-pw"),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn tls_users_and_plain_hosts_are_accepted() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://localhost",
            "rediss://user:pw@redis.example.com:6380/0",
        ] {
            assert!(RedisUrl::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_without_repeating_them() {
        for bad in [
            "redis://:hunter2@",
            "redis://:hunter2@host/abc",
            "redis//x",
            "redis://:hunter2@host:port",
            "redis://:hun ter2@host",
            "redis://:hunter2@[::1",
            "redis://u:hunter2@host:6379/0#frag",
            "rediss://:hunter2@host:99999",
            "redis://:hunter2@ho%st",
            "redis://hunter2@/0",
        ] {
            match RedisUrl::parse(bad) {
                Err(err) => assert!(!err.contains("hunter2"), "{bad}: {err}"),
                Ok(url) => {
                    for shown in [url.to_string(), format!("{url:?}")] {
                        assert!(!shown.contains("hunter2"), "{bad}: {shown}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_lone_userinfo_part_is_masked_too() {
        let url = RedisUrl::parse("redis://hunter2@cache:6379").expect("valid");
        assert_eq!(url.to_string(), "redis://***@cache:6379");
    }

    #[test]
    fn an_unreadable_address_is_shown_without_its_userinfo() {
        assert_eq!(redact("REDIS://:hunter2@host"), "REDIS://***@host");
        assert_eq!(redact("redis:/:p@ss@host:1"), "***@host:1");
        assert_eq!(redact("sqlite:abort-bot.db"), "sqlite:abort-bot.db");
    }
}

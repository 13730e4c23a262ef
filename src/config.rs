//! Configuration: environment variables, optionally layered over a TOML file named by
//! `ABORT_BOT_CONFIG` whose keys are the variable names in lower case. The environment wins.
//!
//! Loading never stops at the first problem: every missing or malformed variable is collected,
//! so that one run of `abort-bot check` (or a failed `serve`) names all of them at once.
//! Secrets are kept in [`SecretString`] and never printed.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// Every variable the bot reads, in the order they are reported.
pub const VARIABLES: &[&str] = &[
    "LARK_APP_ID",
    "LARK_APP_SECRET",
    "LARK_VERIFICATION_TOKEN",
    "LARK_ENCRYPT_KEY",
    "LARK_BASE_URL",
    "FEISHU_PROJECT_PLUGIN_ID",
    "FEISHU_PROJECT_PLUGIN_SECRET",
    "FEISHU_PROJECT_BASE_URL",
    "FEISHU_PROJECT_WEB_URL",
    "ABORT_BOT_DEFAULT_PROJECT",
    "ABORT_BOT_LISTEN",
    "ABORT_BOT_STORE",
    "ABORT_BOT_DEDUP_RETENTION",
    "ABORT_BOT_MODE",
    "ABORT_BOT_CARD_SECRET",
    "ABORT_BOT_BATCH_CONFIRM",
    "ABORT_BOT_MAX_ITEMS",
    "ABORT_BOT_USER_RATE",
    "ABORT_BOT_LOG_FORMAT",
    "ABORT_BOT_REDIS_WAIT_REPLICAS",
    "ABORT_BOT_REDIS_WAIT_TIMEOUT",
    "ABORT_BOT_MAX_CONNECTIONS",
    "ABORT_BOT_REPLY_RETRY",
    "ABORT_BOT_AUDIT_RETENTION",
];

/// The longest `ABORT_BOT_REDIS_WAIT_TIMEOUT`: Lark gives up on a delivery after 3 s, and the
/// answer must reach it before that.
pub const MAX_REDIS_WAIT: Duration = Duration::from_secs(2);

/// Lark Open Platform settings.
#[derive(Clone)]
pub struct LarkSettings {
    pub app_id: String,
    pub app_secret: SecretString,
    pub verification_token: SecretString,
    /// When set, bodies arrive as `{"encrypt": …}` and `X-Lark-Signature` is required.
    pub encrypt_key: Option<SecretString>,
    pub base_url: Url,
}

/// Feishu Project plugin settings.
#[derive(Clone)]
pub struct ProjectSettings {
    pub plugin_id: String,
    pub plugin_secret: SecretString,
    pub base_url: Url,
    /// Host of work item links in cards and of URL refs.
    pub web_url: Url,
}

/// Where the inbox, dedup keys and bindings live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// An in-memory SQLite database: nothing survives a restart (sandbox and tests only).
    Memory,
    /// `redis://` or `rediss://`; its `Debug` masks the password.
    Redis(crate::store::RedisUrl),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Webhook,
    /// Lark's long connection: the bot dials out, so it needs no public address.
    Websocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole, validated configuration.
#[derive(Clone)]
pub struct Settings {
    pub lark: LarkSettings,
    pub project: ProjectSettings,
    pub default_project: Option<String>,
    pub listen: SocketAddr,
    pub store: StoreUrl,
    /// How long seen event ids are kept; also the oldest request timestamp accepted.
    pub dedup_retention: Duration,
    pub mode: Mode,
    /// Key that binds button values to their card.
    pub card_secret: SecretString,
    pub batch_confirm: usize,
    /// Refs one command (or one click) may act on.
    pub max_items: usize,
    /// Commands and clicks that reach Feishu Project, per person per minute.
    pub user_rate: usize,
    pub log_format: LogFormat,
    /// Replicas an acknowledging Redis write waits for (`WAIT`); None = do not wait.
    pub redis_wait: Option<crate::store::RedisWait>,
    /// Open HTTP connections held at once; one more is closed at once.
    pub max_connections: usize,
    /// How long a reply or card update that failed for a passing reason is retried.
    pub reply_retry: Duration,
    /// How long audit lines are kept.
    pub audit_retention: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("lark_app_id", &self.lark.app_id)
            .field("lark_base_url", &self.lark.base_url.as_str())
            .field("lark_encrypted", &self.lark.encrypt_key.is_some())
            .field("feishu_project_plugin_id", &self.project.plugin_id)
            .field("feishu_project_base_url", &self.project.base_url.as_str())
            .field("feishu_project_web_url", &self.project.web_url.as_str())
            .field("default_project", &self.default_project)
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("dedup_retention", &self.dedup_retention)
            .field("mode", &self.mode)
            .field("batch_confirm", &self.batch_confirm)
            .field("max_items", &self.max_items)
            .field("user_rate", &self.user_rate)
            .field("log_format", &self.log_format)
            .field("redis_wait", &self.redis_wait)
            .field("max_connections", &self.max_connections)
            .field("reply_retry", &self.reply_retry)
            .field("audit_retention", &self.audit_retention)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// What `abort-bot check` shows of this configuration: one labelled line per setting that
    /// decides how the bot runs. No secret, only whether it is set.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let mode = match self.mode {
            Mode::Webhook => "webhook: Lark calls POST /lark/events and /lark/cards".to_owned(),
            Mode::Websocket => {
                "websocket: the bot opens Lark's long connection (no inbound URL)".to_owned()
            }
        };
        let routes = match self.mode {
            Mode::Webhook => "/lark/events, /lark/cards, /healthz, /readyz, /metrics",
            Mode::Websocket => "/healthz, /readyz, /metrics",
        };
        let store = match &self.store {
            StoreUrl::Sqlite(path) => format!("SQLite file {}", path.display()),
            StoreUrl::Memory => "in memory (nothing survives a restart)".to_owned(),
            StoreUrl::Redis(url) => match &self.redis_wait {
                Some(w) => format!(
                    "Redis {url}, each acknowledgement waits for {} replica(s)",
                    w.replicas
                ),
                None => format!("Redis {url}"),
            },
        };
        let events = match (&self.mode, &self.lark.encrypt_key) {
            (Mode::Websocket, _) => "over the long connection (no Encrypt Key used)",
            (Mode::Webhook, Some(_)) => "encrypted and signed (LARK_ENCRYPT_KEY is set)",
            (Mode::Webhook, None) => "plain, checked by the verification token only",
        };
        vec![
            ("mode", mode),
            ("listening on", format!("{} ({routes})", self.listen)),
            ("store", store),
            (
                "Lark app",
                format!("{} at {}", self.lark.app_id, self.lark.base_url),
            ),
            ("events", events.to_owned()),
            (
                "Feishu Project",
                format!(
                    "plugin {} at {}, links to {}",
                    self.project.plugin_id, self.project.base_url, self.project.web_url
                ),
            ),
            (
                "default space",
                self.default_project.clone().unwrap_or_else(|| {
                    "none: a chat needs /bind, or commands need a link".to_owned()
                }),
            ),
            (
                "limits",
                format!(
                    "{} items per command, confirmation above {}, {} per person per minute",
                    self.max_items, self.batch_confirm, self.user_rate
                ),
            ),
            (
                "logs",
                match self.log_format {
                    LogFormat::Text => "text".to_owned(),
                    LogFormat::Json => "JSON lines".to_owned(),
                },
            ),
        ]
    }

    /// What deserves a warning without being wrong.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode == Mode::Webhook && self.lark.encrypt_key.is_none() {
            out.push(
                "LARK_ENCRYPT_KEY is empty: Lark's requests arrive unencrypted and unsigned, \
                 checked by the verification token alone. Set an Encrypt Key in the developer \
                 console (Events & Callbacks → Encryption Strategy) and the same value here."
                    .to_owned(),
            );
        }
        out
    }
}

/// One thing wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// Every problem found while loading, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Raw values by variable name, before validation. Its `Debug` names the variables set,
/// never their values (some are secrets).
#[derive(Default, Clone)]
pub struct Sources {
    values: HashMap<&'static str, String>,
    /// Problems found while gathering (an unreadable TOML file, say).
    problems: Vec<Problem>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set: Vec<&str> = self.values.keys().copied().collect();
        set.sort_unstable();
        f.debug_struct("Sources")
            .field("set", &set)
            .field("problems", &self.problems.len())
            .finish()
    }
}

impl Sources {
    /// Reads the process environment and, if `ABORT_BOT_CONFIG` names one, the TOML file.
    pub fn from_process_env() -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_env_map(&env)
    }

    /// Like [`Sources::from_process_env`], from a given map (tests).
    pub fn from_env_map(env: &HashMap<String, String>) -> Self {
        let mut sources = Sources::default();
        if let Some(path) = env.get("ABORT_BOT_CONFIG").filter(|p| !p.is_empty()) {
            sources.load_toml_file(path);
        }
        for name in VARIABLES {
            if let Some(v) = env.get(*name) {
                sources.values.insert(name, v.clone());
            }
        }
        sources
    }

    fn load_toml_file(&mut self, path: &str) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(Problem {
                    variable: "ABORT_BOT_CONFIG",
                    message: format!("cannot read the configuration file: {e}"),
                });
                return;
            }
        };
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(Problem {
                    variable: "ABORT_BOT_CONFIG",
                    message: format!("the configuration file is not valid TOML: {}", e.message()),
                });
                return;
            }
        };
        for (key, value) in table {
            let Some(name) = VARIABLES
                .iter()
                .find(|v| v.eq_ignore_ascii_case(&key) && key == v.to_ascii_lowercase())
            else {
                self.problems.push(Problem {
                    variable: "ABORT_BOT_CONFIG",
                    message: format!("unknown key `{key}` in the configuration file"),
                });
                continue;
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    self.problems.push(Problem {
                        variable: name,
                        message: format!("`{key}` in the configuration file must be a string"),
                    });
                    continue;
                }
            };
            self.values.insert(name, text);
        }
    }

    /// Sets one value (tests and the sandbox).
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.values.insert(name, value.into());
        self
    }

    fn get(&self, name: &'static str) -> Option<&str> {
        self.values
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// Collects values and problems in one pass.
struct Reader<'a> {
    sources: &'a Sources,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn problem(&mut self, variable: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            message: message.into(),
        });
    }

    fn required(&mut self, name: &'static str, meaning: &str) -> String {
        match self.sources.get(name) {
            Some(v) => v.to_owned(),
            None => {
                self.problem(name, format!("missing: set it to {meaning}"));
                String::new()
            }
        }
    }

    fn optional(&self, name: &'static str) -> Option<String> {
        self.sources.get(name).map(str::to_owned)
    }

    /// A whole number of at least 1, `default` when unset.
    fn count(&mut self, name: &'static str, default: usize) -> usize {
        let Some(raw) = self.optional(name) else {
            return default;
        };
        match raw.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                self.problem(
                    name,
                    format!("malformed: `{raw}` is not a whole number of at least 1"),
                );
                default
            }
        }
    }

    /// A duration of at least 1m, `default` when unset.
    fn duration(&mut self, name: &'static str, default_raw: &str, default: Duration) -> Duration {
        let raw = self
            .optional(name)
            .unwrap_or_else(|| default_raw.to_owned());
        match parse_duration(&raw) {
            Some(d) if d >= Duration::from_secs(60) => d,
            _ => {
                self.problem(
                    name,
                    format!(
                        "malformed: `{raw}` is not a duration of at least 1m such as {default_raw}"
                    ),
                );
                default
            }
        }
    }

    fn url(&mut self, name: &'static str, default: &str) -> Url {
        let raw = self.sources.get(name).unwrap_or(default);
        match Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => {
                self.problem(
                    name,
                    format!("malformed: `{raw}` is not an http(s) URL such as {default}"),
                );
                Url::parse(default).expect("defaults are valid URLs")
            }
        }
    }
}

/// Parses `24h`, `90m`, `3600s`, `2d` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    humantime::parse_duration(raw).ok()
}

/// The web host derived from the API host when `FEISHU_PROJECT_WEB_URL` is not set.
pub fn derive_web_url(api: &Url) -> Url {
    let derived = match api.host_str() {
        Some("project.feishu.cn") => "https://project.feishu.cn",
        Some("project.larksuite.com") => "https://meegle.com",
        _ => return api.clone(),
    };
    Url::parse(derived).unwrap_or_else(|_| api.clone())
}

/// The card secret derived from the app secret: an HMAC, so the app secret itself never
/// signs anything a user can see.
pub fn derive_card_secret(app_secret: &SecretString) -> SecretString {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"abort-bot card secret v1");
    SecretString::from(hex::encode(mac.finalize().into_bytes()))
}

impl Settings {
    /// Validates every variable and returns all problems at once.
    pub fn from_sources(sources: &Sources) -> Result<Settings, ConfigError> {
        let mut r = Reader {
            sources,
            problems: sources.problems.clone(),
        };
        let app_id = r.required("LARK_APP_ID", "the App ID of your Lark app (cli_…)");
        let app_secret = r.required("LARK_APP_SECRET", "the App Secret of your Lark app");
        let verification_token = r.required(
            "LARK_VERIFICATION_TOKEN",
            "the Verification Token from the app's Events & Callbacks page",
        );
        let encrypt_key = r.optional("LARK_ENCRYPT_KEY");
        let lark_base = r.url("LARK_BASE_URL", "https://open.feishu.cn");
        let plugin_id = r.required(
            "FEISHU_PROJECT_PLUGIN_ID",
            "the Plugin ID of your Feishu Project plugin (MII_…)",
        );
        let plugin_secret = r.required(
            "FEISHU_PROJECT_PLUGIN_SECRET",
            "the Plugin Secret of your Feishu Project plugin",
        );
        let project_base = r.url("FEISHU_PROJECT_BASE_URL", "https://project.feishu.cn");
        let web_url = if r.sources.get("FEISHU_PROJECT_WEB_URL").is_some() {
            r.url("FEISHU_PROJECT_WEB_URL", "https://project.feishu.cn")
        } else {
            derive_web_url(&project_base)
        };
        let default_project = r.optional("ABORT_BOT_DEFAULT_PROJECT");
        if let Some(p) = &default_project
            && !crate::domain::is_space_key(p)
        {
            r.problem(
                "ABORT_BOT_DEFAULT_PROJECT",
                format!("malformed: `{p}` is not a project_key or simple_name"),
            );
        }
        let listen_raw = r
            .optional("ABORT_BOT_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:3000".into());
        let listen = listen_raw.parse().unwrap_or_else(|_| {
            r.problem(
                "ABORT_BOT_LISTEN",
                format!("malformed: `{listen_raw}` is not host:port such as 0.0.0.0:3000"),
            );
            SocketAddr::from(([0, 0, 0, 0], 3000))
        });
        let store_raw = r
            .optional("ABORT_BOT_STORE")
            .unwrap_or_else(|| "sqlite://abort-bot.db".into());
        let store = match parse_store(&store_raw) {
            Ok(s) => s,
            Err(message) => {
                r.problem("ABORT_BOT_STORE", message);
                StoreUrl::Memory
            }
        };
        let retention_raw = r
            .optional("ABORT_BOT_DEDUP_RETENTION")
            .unwrap_or_else(|| "24h".into());
        let dedup_retention = match parse_duration(&retention_raw) {
            Some(d) if d >= Duration::from_secs(60) => d,
            _ => {
                r.problem(
                    "ABORT_BOT_DEDUP_RETENTION",
                    format!(
                        "malformed: `{retention_raw}` is not a duration of at least 1m such as 24h"
                    ),
                );
                Duration::from_secs(24 * 3600)
            }
        };
        let audit_retention = r.duration(
            "ABORT_BOT_AUDIT_RETENTION",
            "400d",
            Duration::from_secs(400 * 24 * 3600),
        );
        let reply_retry_raw = r
            .optional("ABORT_BOT_REPLY_RETRY")
            .unwrap_or_else(|| "24h".into());
        let reply_retry = match parse_duration(&reply_retry_raw) {
            Some(d) if d >= Duration::from_secs(60) => d,
            _ => {
                r.problem(
                    "ABORT_BOT_REPLY_RETRY",
                    format!(
                        "malformed: `{reply_retry_raw}` is not a duration of at least 1m such as 24h"
                    ),
                );
                Duration::from_secs(24 * 3600)
            }
        };
        let mode = match r.optional("ABORT_BOT_MODE").as_deref() {
            None | Some("webhook") => Mode::Webhook,
            Some("websocket") => Mode::Websocket,
            Some(other) => {
                r.problem(
                    "ABORT_BOT_MODE",
                    format!("malformed: `{other}` is neither `webhook` nor `websocket`"),
                );
                Mode::Webhook
            }
        };
        let batch_confirm = r.count("ABORT_BOT_BATCH_CONFIRM", 5);
        let max_items = r.count("ABORT_BOT_MAX_ITEMS", 50);
        let user_rate = r.count("ABORT_BOT_USER_RATE", 20);
        let log_format = match r.optional("ABORT_BOT_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                r.problem(
                    "ABORT_BOT_LOG_FORMAT",
                    format!("malformed: `{other}` is neither `text` nor `json`"),
                );
                LogFormat::Text
            }
        };
        let redis_wait = redis_wait(&mut r, &store);
        let connections_raw = r
            .optional("ABORT_BOT_MAX_CONNECTIONS")
            .unwrap_or_else(|| "4096".into());
        let max_connections = match connections_raw.parse::<usize>() {
            // The semaphore that holds them counts in u32.
            Ok(n) if n >= 1 && u32::try_from(n).is_ok() => n,
            _ => {
                r.problem(
                    "ABORT_BOT_MAX_CONNECTIONS",
                    format!("malformed: `{connections_raw}` is not a whole number of at least 1"),
                );
                4096
            }
        };
        let app_secret = SecretString::from(app_secret);
        let card_secret = match r.optional("ABORT_BOT_CARD_SECRET") {
            Some(s) => SecretString::from(s),
            None => derive_card_secret(&app_secret),
        };
        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
            });
        }
        Ok(Settings {
            lark: LarkSettings {
                app_id,
                app_secret,
                verification_token: SecretString::from(verification_token),
                encrypt_key: encrypt_key.map(SecretString::from),
                base_url: lark_base,
            },
            project: ProjectSettings {
                plugin_id,
                plugin_secret: SecretString::from(plugin_secret),
                base_url: project_base,
                web_url,
            },
            default_project,
            listen,
            store,
            dedup_retention,
            reply_retry,
            audit_retention,
            mode,
            card_secret,
            batch_confirm,
            max_items,
            user_rate,
            log_format,
            redis_wait,
            max_connections,
        })
    }
}

/// `ABORT_BOT_STORE` alone: all that `abort-bot audit` needs (it reads no secrets).
pub fn store_from_sources(sources: &Sources) -> Result<StoreUrl, ConfigError> {
    let mut problems = sources.problems.clone();
    let raw = sources
        .get("ABORT_BOT_STORE")
        .unwrap_or("sqlite://abort-bot.db");
    match parse_store(raw) {
        Ok(store) if problems.is_empty() => Ok(store),
        Ok(_) => Err(ConfigError { problems }),
        Err(message) => {
            problems.push(Problem {
                variable: "ABORT_BOT_STORE",
                message,
            });
            Err(ConfigError { problems })
        }
    }
}

/// `ABORT_BOT_REDIS_WAIT_REPLICAS` and `ABORT_BOT_REDIS_WAIT_TIMEOUT`.
fn redis_wait(r: &mut Reader<'_>, store: &StoreUrl) -> Option<crate::store::RedisWait> {
    let replicas_raw = r
        .optional("ABORT_BOT_REDIS_WAIT_REPLICAS")
        .unwrap_or_else(|| "0".into());
    let Ok(replicas) = replicas_raw.parse::<u32>() else {
        r.problem(
            "ABORT_BOT_REDIS_WAIT_REPLICAS",
            format!("malformed: `{replicas_raw}` is not a number of replicas such as 1 (0 = off)"),
        );
        return None;
    };
    let timeout_raw = r
        .optional("ABORT_BOT_REDIS_WAIT_TIMEOUT")
        .unwrap_or_else(|| "1s".into());
    let timeout = match parse_duration(&timeout_raw) {
        Some(d) if !d.is_zero() && d <= MAX_REDIS_WAIT => d,
        _ => {
            r.problem(
                "ABORT_BOT_REDIS_WAIT_TIMEOUT",
                format!(
                    "malformed: `{timeout_raw}` is not a duration from 1ms to 2s such as 500ms \
                     (Lark waits 3 s for the answer)"
                ),
            );
            return None;
        }
    };
    if replicas == 0 {
        return None;
    }
    if !matches!(store, StoreUrl::Redis(_)) {
        r.problem(
            "ABORT_BOT_REDIS_WAIT_REPLICAS",
            "needs a redis:// ABORT_BOT_STORE (a SQLite store has no replicas to wait for)",
        );
        return None;
    }
    Some(crate::store::RedisWait { replicas, timeout })
}

fn parse_store(raw: &str) -> Result<StoreUrl, String> {
    if raw == "sqlite::memory:" || raw == "sqlite://:memory:" {
        return Ok(StoreUrl::Memory);
    }
    if let Some(path) = raw.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(
                "malformed: `sqlite://` needs a file path, e.g. sqlite://abort-bot.db".into(),
            );
        }
        return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
    }
    if raw.starts_with("redis://") || raw.starts_with("rediss://") {
        return crate::store::RedisUrl::parse(raw).map(StoreUrl::Redis);
    }
    // Not a URL this reads, so its password (if any) cannot be told apart: mask the userinfo.
    Err(format!(
        "malformed: `{}` is neither sqlite://path nor redis://host:port",
        crate::store::redact_store_url(raw)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Sources {
        let mut s = Sources::default();
        s.set("LARK_APP_ID", "cli_a")
            .set("LARK_APP_SECRET", "app-secret-value")
            .set("LARK_VERIFICATION_TOKEN", "vt")
            .set("FEISHU_PROJECT_PLUGIN_ID", "MII_1")
            .set("FEISHU_PROJECT_PLUGIN_SECRET", "plugin-secret-value");
        s
    }

    #[test]
    fn empty_environment_names_every_required_variable() {
        let err = Settings::from_sources(&Sources::default()).err();
        let names: Vec<_> = err
            .map(|e| e.problems.iter().map(|p| p.variable).collect())
            .unwrap_or_default();
        assert_eq!(
            names,
            [
                "LARK_APP_ID",
                "LARK_APP_SECRET",
                "LARK_VERIFICATION_TOKEN",
                "FEISHU_PROJECT_PLUGIN_ID",
                "FEISHU_PROJECT_PLUGIN_SECRET"
            ]
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_sources(&full()).expect("valid settings");
        assert_eq!(s.lark.base_url.as_str(), "https://open.feishu.cn/");
        assert_eq!(s.project.base_url.as_str(), "https://project.feishu.cn/");
        assert_eq!(s.project.web_url.as_str(), "https://project.feishu.cn/");
        assert_eq!(s.listen.port(), 3000);
        assert_eq!(s.store, StoreUrl::Sqlite("abort-bot.db".into()));
        assert_eq!(s.dedup_retention, Duration::from_secs(86_400));
        assert_eq!(s.batch_confirm, 5);
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.max_items, 50);
        assert_eq!(s.user_rate, 20);
        assert_eq!(s.reply_retry, Duration::from_secs(86_400));
        assert_eq!(s.audit_retention, Duration::from_secs(400 * 86_400));
        assert!(s.lark.encrypt_key.is_none());
    }

    #[test]
    fn the_audit_command_needs_only_the_store() {
        let mut src = Sources::default();
        assert_eq!(
            store_from_sources(&src),
            Ok(StoreUrl::Sqlite(PathBuf::from("abort-bot.db")))
        );
        src.set("ABORT_BOT_STORE", "sqlite:///var/lib/abort-bot/bot.db");
        assert_eq!(
            store_from_sources(&src),
            Ok(StoreUrl::Sqlite(PathBuf::from("/var/lib/abort-bot/bot.db")))
        );
        src.set("ABORT_BOT_STORE", "postgres://u:pw@h/db");
        let text = store_from_sources(&src)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("ABORT_BOT_STORE") && !text.contains("pw"),
            "{text}"
        );
    }

    #[test]
    fn meegle_api_host_links_to_meegle_web() {
        let mut src = full();
        src.set("FEISHU_PROJECT_BASE_URL", "https://project.larksuite.com");
        let web = Settings::from_sources(&src).map(|s| s.project.web_url.to_string());
        assert_eq!(web.ok().as_deref(), Some("https://meegle.com/"));
    }

    #[test]
    fn malformed_values_are_all_reported_without_secrets() {
        let mut src = full();
        src.set("ABORT_BOT_LISTEN", "nope")
            .set("ABORT_BOT_DEDUP_RETENTION", "forever")
            .set("LARK_BASE_URL", "ftp:/x")
            .set("ABORT_BOT_BATCH_CONFIRM", "0")
            .set("ABORT_BOT_MAX_CONNECTIONS", "0")
            .set("ABORT_BOT_MAX_ITEMS", "many")
            .set("ABORT_BOT_USER_RATE", "-3")
            .set("ABORT_BOT_REPLY_RETRY", "soon")
            .set("ABORT_BOT_AUDIT_RETENTION", "a year");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert_eq!(text.lines().count(), 9, "{text}");
        for name in [
            "ABORT_BOT_LISTEN",
            "ABORT_BOT_DEDUP_RETENTION",
            "LARK_BASE_URL",
            "ABORT_BOT_BATCH_CONFIRM",
            "ABORT_BOT_MAX_CONNECTIONS",
            "ABORT_BOT_MAX_ITEMS",
            "ABORT_BOT_USER_RATE",
            "ABORT_BOT_REPLY_RETRY",
            "ABORT_BOT_AUDIT_RETENTION",
        ] {
            assert!(text.contains(name), "{name} missing in {text}");
        }
        assert!(!text.contains("app-secret-value") && !text.contains("plugin-secret-value"));
    }

    #[test]
    fn toml_file_is_read_and_environment_wins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bot.toml");
        let written = std::fs::write(
            &path,
            "lark_app_id = \"cli_from_file\"\nlark_app_secret = \"s\"\nlark_verification_token = \"t\"\nfeishu_project_plugin_id = \"p\"\nfeishu_project_plugin_secret = \"q\"\nabort_bot_batch_confirm = 9\nabort_bot_user_rate = 7\n",
        );
        written.expect("write config file");
        let mut env = HashMap::new();
        env.insert(
            "ABORT_BOT_CONFIG".to_string(),
            path.to_string_lossy().into_owned(),
        );
        env.insert("LARK_APP_ID".to_string(), "cli_from_env".to_string());
        let s = Settings::from_sources(&Sources::from_env_map(&env));
        let s = s.map(|s| (s.lark.app_id, s.batch_confirm, s.user_rate));
        assert_eq!(s.ok(), Some(("cli_from_env".to_string(), 9, 7)));
    }

    #[test]
    fn websocket_mode_still_needs_the_verification_token() {
        let mut src = full();
        src.set("ABORT_BOT_MODE", "websocket");
        assert_eq!(
            Settings::from_sources(&src).map(|s| s.mode).ok(),
            Some(Mode::Websocket)
        );
        let mut src = Sources::default();
        src.set("ABORT_BOT_MODE", "websocket");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("LARK_VERIFICATION_TOKEN"));
    }

    #[test]
    fn a_redis_store_is_accepted_and_its_password_never_shown() {
        let mut src = full();
        src.set("ABORT_BOT_STORE", "redis://:redis-pw-value@10.0.0.5:6379/3");
        let s = Settings::from_sources(&src).expect("valid settings");
        assert!(matches!(s.store, StoreUrl::Redis(_)), "{:?}", s.store);
        let shown = format!("{s:?}");
        assert!(shown.contains("10.0.0.5:6379/3"), "{shown}");
        assert!(!shown.contains("redis-pw-value"), "{shown}");
        src.set("ABORT_BOT_STORE", "redis://:redis-pw-value@/x");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("ABORT_BOT_STORE") && !err.contains("redis-pw-value"),
            "{err}"
        );
    }

    #[test]
    fn waiting_for_redis_replicas_is_off_by_default_and_needs_redis() {
        assert_eq!(
            Settings::from_sources(&full())
                .ok()
                .and_then(|s| s.redis_wait),
            None
        );
        let mut src = full();
        src.set("ABORT_BOT_STORE", "redis://127.0.0.1:6379")
            .set("ABORT_BOT_REDIS_WAIT_REPLICAS", "2")
            .set("ABORT_BOT_REDIS_WAIT_TIMEOUT", "250ms");
        assert_eq!(
            Settings::from_sources(&src).ok().and_then(|s| s.redis_wait),
            Some(crate::store::RedisWait {
                replicas: 2,
                timeout: Duration::from_millis(250)
            })
        );
        src.set("ABORT_BOT_REDIS_WAIT_TIMEOUT", "5s");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        assert!(
            err.unwrap_or_default()
                .contains("ABORT_BOT_REDIS_WAIT_TIMEOUT")
        );
        let mut src = full();
        src.set("ABORT_BOT_REDIS_WAIT_REPLICAS", "1");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("ABORT_BOT_REDIS_WAIT_REPLICAS") && err.contains("redis://"),
            "{err}"
        );
        src.set("ABORT_BOT_REDIS_WAIT_REPLICAS", "-1");
        let err = Settings::from_sources(&src).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("malformed"));
    }

    #[test]
    fn an_empty_encrypt_key_is_warned_about_in_webhook_mode_only() {
        let s = Settings::from_sources(&full()).expect("valid settings");
        let warnings = s.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("LARK_ENCRYPT_KEY is empty"));
        let mut src = full();
        src.set("LARK_ENCRYPT_KEY", "ek");
        assert!(Settings::from_sources(&src).map(|s| s.warnings()).ok() == Some(Vec::new()));
        let mut src = full();
        src.set("ABORT_BOT_MODE", "websocket");
        assert!(Settings::from_sources(&src).map(|s| s.warnings()).ok() == Some(Vec::new()));
    }

    #[test]
    fn the_summary_names_every_setting_and_shows_no_secret() {
        let mut src = full();
        src.set("ABORT_BOT_STORE", "redis://:redis-pw-value@10.0.0.5:6379/3");
        let s = Settings::from_sources(&src).expect("valid settings");
        let summary = s.summary();
        let labels: Vec<&str> = summary.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            labels,
            [
                "mode",
                "listening on",
                "store",
                "Lark app",
                "events",
                "Feishu Project",
                "default space",
                "limits",
                "logs"
            ]
        );
        let text = format!("{summary:?}");
        assert!(
            text.contains("10.0.0.5:6379/3") && text.contains("cli_a"),
            "{text}"
        );
        for secret in ["redis-pw-value", "app-secret-value", "plugin-secret-value"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
    }

    #[test]
    fn card_secret_is_derived_and_differs_from_the_app_secret() {
        let s = Settings::from_sources(&full()).ok();
        let secret = s.map(|s| s.card_secret.expose_secret().to_owned());
        assert_eq!(secret.as_ref().map(String::len), Some(64));
        assert_ne!(secret.as_deref(), Some("app-secret-value"));
    }
}

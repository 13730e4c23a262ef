//! HTTP client for the Feishu Project OpenAPI.
//!
//! Every call carries the plugin token (`X-PLUGIN-TOKEN`), cached until 3 minutes before it
//! expires and refetched once when the server calls it invalid (10022, 10211). Calls that act
//! or read on behalf of someone carry that person's `X-USER-KEY`. Rate limits (10429),
//! overload (50006), 5xx and timeouts are retried with jittered backoff; business errors never
//! are. Lookups that do not change (user keys, spaces, type lists, an item's type) are cached.
//! Requests are paced per endpoint template so the bot itself stays under the documented
//! 15 QPS per token per endpoint, rather than relying on 10429 retries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use governor::{DefaultKeyedRateLimiter, Quota};
use moka::future::Cache;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::model::{Space, WorkItem, WorkItemType};
use crate::clock::SharedClock;
use crate::domain::{Action, ReasonOption};
use crate::metrics::{Metrics, UpstreamCall};
use crate::retry::RetryPolicy;
use crate::token::TokenCache;

/// Codes that mean "the plugin token is no good": drop it and try once with a new one.
const TOKEN_INVALID: &[i64] = &[10021, 10022, 10211];
/// Codes a retry can fix.
const RETRYABLE: &[i64] = &[10429, 50006];
/// Feishu Project allows 15 requests per second per token per endpoint (10429 beyond).
pub const ENDPOINT_QPS: NonZeroU32 = NonZeroU32::new(15).unwrap();

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    #[error("Feishu Project answered {code} ({msg}) with HTTP {status}")]
    Api { code: i64, msg: String, status: u16 },
    #[error("Feishu Project could not be reached: {0}")]
    Transport(String),
    #[error("Feishu Project did not answer in time")]
    Timeout,
    #[error("Feishu Project sent an unreadable answer (HTTP {status})")]
    Malformed { status: u16 },
}

impl ProjectError {
    pub fn code(&self) -> Option<i64> {
        match self {
            ProjectError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Worth another try: rate limited, overloaded, 5xx, or no answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProjectError::Api { code, status, .. } => RETRYABLE.contains(code) || *status >= 500,
            ProjectError::Transport(_) | ProjectError::Timeout => true,
            ProjectError::Malformed { status } => *status >= 500,
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            ProjectError::Timeout
        } else {
            // The URL may carry ids but never a secret; still, keep only the kind of failure.
            ProjectError::Transport(
                if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                }
                .to_owned(),
            )
        }
    }
}

/// Builder-style settings for [`ProjectClient`].
pub struct ProjectClientConfig {
    pub base_url: Url,
    pub plugin_id: String,
    pub plugin_secret: SecretString,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
}

pub struct ProjectClient {
    http: reqwest::Client,
    base: Url,
    plugin_id: String,
    plugin_secret: SecretString,
    token: TokenCache,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    /// `union:<id>` / `email:<addr>` → user_key.
    user_keys: Cache<String, String>,
    /// project_key or simple_name → space.
    spaces: Cache<String, Space>,
    /// project_key → its work item types.
    types: Cache<String, Arc<Vec<WorkItemType>>>,
    /// (project_key, id) → the item; its type never changes.
    items: Cache<(String, u64), WorkItem>,
    /// Paces requests per endpoint template (all calls share one plugin token).
    limiter: DefaultKeyedRateLimiter<&'static str>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    data: Option<TokenData>,
    error: Option<TokenErr>,
}

#[derive(Deserialize)]
struct TokenData {
    token: String,
    expire_time: u64,
}

#[derive(Deserialize)]
struct TokenErr {
    code: i64,
    #[serde(default)]
    msg: String,
}

/// One request, described once so it can be retried.
struct Call<'a> {
    method: Method,
    /// The path template, for metrics (`/open_api/:project_key/...`).
    endpoint: &'static str,
    path: String,
    body: Option<Value>,
    user_key: Option<&'a str>,
    idem: Option<&'a str>,
}

impl ProjectClient {
    pub fn new(cfg: ProjectClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("abort-bot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let day = Duration::from_secs(24 * 3600);
        Ok(Self {
            http,
            base: cfg.base_url,
            plugin_id: cfg.plugin_id,
            plugin_secret: cfg.plugin_secret,
            token: TokenCache::new(Duration::from_secs(180), cfg.clock),
            retry: cfg.retry,
            metrics: cfg.metrics,
            user_keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(6 * 3600))
                .build(),
            spaces: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            types: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            items: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(day)
                .build(),
            limiter: DefaultKeyedRateLimiter::keyed(endpoint_quota(ENDPOINT_QPS)),
        })
    }

    /// Paces each endpoint to `per_second` instead of [`ENDPOINT_QPS`] (tests, a slower
    /// tenant quota).
    pub fn with_endpoint_quota(mut self, per_second: NonZeroU32) -> Self {
        self.limiter = DefaultKeyedRateLimiter::keyed(endpoint_quota(per_second));
        self
    }

    /// Waits until `endpoint` may take one more request; every send, retries included, passes here.
    async fn pace(&self, endpoint: &'static str) {
        self.limiter.until_key_ready(&endpoint).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The plugin token, fetched when missing or about to expire.
    pub async fn plugin_token(&self) -> Result<String, ProjectError> {
        self.token.get(|| self.fetch_plugin_token()).await
    }

    async fn fetch_plugin_token(&self) -> Result<(String, Duration), ProjectError> {
        let path = "/open_api/authen/plugin_token";
        self.pace(path).await;
        let started = Instant::now();
        let sent = self
            .http
            .post(self.url(path))
            .json(&json!({
                "plugin_id": self.plugin_id,
                "plugin_secret": self.plugin_secret.expose_secret(),
                "type": 0,
            }))
            .send()
            .await;
        let (status, bytes) = self.finish(path, path, "POST", started, sent).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|_| ProjectError::Malformed { status })?;
        match (answer.error, answer.data) {
            (Some(e), _) if e.code != 0 => Err(ProjectError::Api {
                code: e.code,
                msg: e.msg,
                status,
            }),
            (_, Some(d)) if !d.token.is_empty() => {
                Ok((d.token, Duration::from_secs(d.expire_time)))
            }
            _ => Err(ProjectError::Malformed { status }),
        }
    }

    /// Reads the body of an answer, recording the call.
    async fn finish(
        &self,
        endpoint: &'static str,
        path: &str,
        method: &'static str,
        started: Instant,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(u16, bytes::Bytes), ProjectError> {
        let result = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.bytes()
                    .await
                    .map(|b| (status, b))
                    .map_err(|e| ProjectError::from_reqwest(&e))
            }
            Err(e) => Err(ProjectError::from_reqwest(&e)),
        };
        self.metrics.upstream(
            endpoint,
            UpstreamCall {
                service: "feishu_project",
                method,
                path: path.to_owned(),
                status: result.as_ref().map(|(s, _)| *s).unwrap_or(0),
                latency: started.elapsed(),
            },
        );
        result
    }

    async fn send_once(&self, token: &str, call: &Call<'_>) -> Result<Value, ProjectError> {
        let mut req = self
            .http
            .request(call.method.clone(), self.url(&call.path))
            .header("X-PLUGIN-TOKEN", token);
        if let Some(user_key) = call.user_key {
            req = req.header("X-USER-KEY", user_key);
        }
        if let Some(idem) = call.idem {
            req = req.header("X-IDEM-UUID", idem);
        }
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        let method = if call.method == Method::PUT {
            "PUT"
        } else if call.method == Method::GET {
            "GET"
        } else {
            "POST"
        };
        self.pace(call.endpoint).await;
        let started = Instant::now();
        let sent = req.send().await;
        let (status, bytes) = self
            .finish(call.endpoint, &call.path, method, started, sent)
            .await?;
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|_| ProjectError::Malformed { status })?;
        let code = answer.get("err_code").and_then(Value::as_i64).unwrap_or(0);
        if code != 0 {
            let msg = answer
                .get("err_msg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Err(ProjectError::Api { code, msg, status });
        }
        if status >= 400 {
            return Err(ProjectError::Malformed { status });
        }
        Ok(answer.get("data").cloned().unwrap_or(Value::Null))
    }

    /// One logical call: token, one refetch on an invalid token, retries with backoff.
    async fn call(&self, call: Call<'_>) -> Result<Value, ProjectError> {
        let attempt = || async {
            let token = self.plugin_token().await?;
            match self.send_once(&token, &call).await {
                Err(e) if e.code().is_some_and(|c| TOKEN_INVALID.contains(&c)) => {
                    self.token.invalidate(&token).await;
                    let token = self.plugin_token().await?;
                    self.send_once(&token, &call).await
                }
                other => other,
            }
        };
        attempt
            .retry(self.retry.backoff())
            .when(ProjectError::is_retryable)
            .notify(|e, after| {
                tracing::warn!(error = %e, retry_in = ?after, endpoint = call.endpoint, "retrying Feishu Project call");
            })
            .await
    }

    /// The user_key of a Lark user, by union_id (`out_ids`); None if Feishu Project has nobody.
    pub async fn user_key_by_union_id(
        &self,
        union_id: &str,
    ) -> Result<Option<String>, ProjectError> {
        self.user_key_by("out_ids", "union", union_id).await
    }

    /// The user_key of a user by enterprise email; None if nobody matches.
    pub async fn user_key_by_email(&self, email: &str) -> Result<Option<String>, ProjectError> {
        self.user_key_by("emails", "email", email).await
    }

    async fn user_key_by(
        &self,
        field: &str,
        kind: &str,
        value: &str,
    ) -> Result<Option<String>, ProjectError> {
        let key = format!("{kind}:{value}");
        if let Some(k) = self.user_keys.get(&key).await {
            return Ok(Some(k));
        }
        let result = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open_api/user/query",
                path: "/open_api/user/query".into(),
                body: Some(json!({ field: [value] })),
                user_key: None,
                idem: None,
            })
            .await;
        let data = match result {
            Ok(d) => d,
            Err(e) if e.code() == Some(30006) => return Ok(None),
            Err(e) => return Err(e),
        };
        let found = data
            .as_array()
            .and_then(|users| users.iter().find_map(|u| u.get("user_key")?.as_str()))
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        if let Some(k) = &found {
            self.user_keys.insert(key, k.clone()).await;
        }
        Ok(found)
    }

    /// A space by project_key or simple_name; None if no such space is visible.
    pub async fn space(&self, key: &str, user_key: &str) -> Result<Option<Space>, ProjectError> {
        if let Some(s) = self.spaces.get(key).await {
            return Ok(Some(s));
        }
        let list = if looks_like_project_key(key) {
            "project_keys"
        } else {
            "simple_names"
        };
        let result = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open_api/projects/detail",
                path: "/open_api/projects/detail".into(),
                body: Some(json!({ "user_key": user_key, list: [key] })),
                user_key: Some(user_key),
                idem: None,
            })
            .await;
        let data = match result {
            Ok(d) => d,
            Err(e) if matches!(e.code(), Some(30006 | 1_000_052_062)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let found = data.as_object().and_then(|spaces| {
            spaces
                .values()
                .filter_map(|v| serde_json::from_value::<Space>(v.clone()).ok())
                .find(|s| s.project_key == key || s.simple_name == key)
        });
        if let Some(space) = &found {
            // Remember it under every name it can be asked for by.
            for name in [key, &space.project_key, &space.simple_name] {
                if !name.is_empty() {
                    self.spaces.insert(name.to_owned(), space.clone()).await;
                }
            }
        }
        Ok(found)
    }

    /// The work item types of a space (cached for a while; types are rarely added).
    pub async fn work_item_types(
        &self,
        project_key: &str,
        user_key: &str,
    ) -> Result<Arc<Vec<WorkItemType>>, ProjectError> {
        if let Some(t) = self.types.get(project_key).await {
            return Ok(t);
        }
        let data = self
            .call(Call {
                method: Method::GET,
                endpoint: "/open_api/:project_key/work_item/all-types",
                path: format!("/open_api/{project_key}/work_item/all-types"),
                body: None,
                user_key: Some(user_key),
                idem: None,
            })
            .await?;
        let types: Vec<WorkItemType> = serde_json::from_value(data).unwrap_or_default();
        let types = Arc::new(types);
        self.types
            .insert(project_key.to_owned(), types.clone())
            .await;
        Ok(types)
    }

    /// One item by type and id; None when this type has no such id.
    async fn query_item(
        &self,
        project_key: &str,
        type_key: &str,
        id: u64,
        user_key: &str,
    ) -> Result<Option<WorkItem>, ProjectError> {
        let result = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open_api/:project_key/work_item/:type/query",
                path: format!("/open_api/{project_key}/work_item/{type_key}/query"),
                body: Some(json!({ "work_item_ids": [id] })),
                user_key: Some(user_key),
                idem: None,
            })
            .await;
        match result {
            Ok(data) => Ok(data
                .as_array()
                .and_then(|items| items.iter().find_map(WorkItem::from_value))
                .filter(|item| item.id == id)),
            Err(e) if matches!(e.code(), Some(30005 | 20014 | 30014 | 20003)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Finds an item: by the given type, by its remembered type, or by trying each type of
    /// the space. None when no type has it.
    pub async fn find_item(
        &self,
        space: &Space,
        type_hint: Option<&str>,
        id: u64,
        user_key: &str,
    ) -> Result<Option<WorkItem>, ProjectError> {
        let cache_key = (space.project_key.clone(), id);
        if let Some(item) = self.items.get(&cache_key).await {
            let matches_hint = type_hint.is_none_or(|t| t == item.work_item_type_key);
            if matches_hint {
                return Ok(Some(item));
            }
        }
        let found = match type_hint {
            Some(t) => self.query_item(&space.project_key, t, id, user_key).await?,
            None => {
                let types = self.work_item_types(&space.project_key, user_key).await?;
                let mut found = None;
                for t in types.iter() {
                    if let Some(item) = self
                        .query_item(&space.project_key, &t.type_key, id, user_key)
                        .await?
                    {
                        found = Some(item);
                        break;
                    }
                }
                found
            }
        };
        let Some(mut item) = found else {
            return Ok(None);
        };
        if item.work_item_type_key.is_empty() {
            item.work_item_type_key = type_hint.unwrap_or_default().to_owned();
        }
        if item.project_key.is_empty() {
            item.project_key = space.project_key.clone();
        }
        if item.simple_name.is_empty() {
            item.simple_name = space.simple_name.clone();
        }
        // The type's display name is for the card only: a failed lookup leaves the key.
        if let Ok(types) = self.work_item_types(&space.project_key, user_key).await {
            item.type_name = types
                .iter()
                .find(|t| {
                    t.type_key == item.work_item_type_key || t.api_name == item.work_item_type_key
                })
                .map(|t| t.name.clone())
                .unwrap_or_default();
        }
        if item.type_name.is_empty() {
            item.type_name = item.work_item_type_key.clone();
        }
        self.items.insert(cache_key, item.clone()).await;
        Ok(Some(item))
    }

    /// An item's aborted state read afresh (never from the cache), as `user_key`: after a PUT
    /// whose answer was lost, what the item is now. None when the answer does not say.
    pub async fn read_aborted(
        &self,
        item: &WorkItem,
        user_key: &str,
    ) -> Result<Option<bool>, ProjectError> {
        let found = self
            .query_item(
                &item.project_key,
                &item.work_item_type_key,
                item.id,
                user_key,
            )
            .await?;
        Ok(found.and_then(|w| w.is_aborted))
    }

    /// Remembers an item's new aborted state after a successful PUT.
    pub async fn remember_aborted(&self, item: &WorkItem, aborted: bool) {
        let mut item = item.clone();
        item.is_aborted = Some(aborted);
        self.items
            .insert((item.project_key.clone(), item.id), item)
            .await;
    }

    /// `PUT /open_api/:project_key/work_item/:type/:id/abort` as `user_key`.
    pub async fn abort(
        &self,
        item: &WorkItem,
        action: Action,
        option: ReasonOption,
        reason: &str,
        user_key: &str,
        idem_uuid: &str,
    ) -> Result<(), ProjectError> {
        self.call(Call {
            method: Method::PUT,
            endpoint: "/open_api/:project_key/work_item/:type/:id/abort",
            path: format!(
                "/open_api/{}/work_item/{}/{}/abort",
                item.project_key, item.work_item_type_key, item.id
            ),
            body: Some(json!({
                "is_aborted": action == Action::Abort,
                "reason": reason,
                "reason_option": option.key(),
            })),
            user_key: Some(user_key),
            idem: Some(idem_uuid),
        })
        .await
        .map(|_| ())
    }
}

/// Evenly spaced requests, at most `per_second` in any second. The server counts them as they
/// arrive, so the spacing is a twentieth wider than the bare quota: network jitter then cannot
/// squeeze one more into the server's second.
fn endpoint_quota(per_second: NonZeroU32) -> Quota {
    Quota::with_period(Duration::from_millis(1050) / per_second.get())
        .unwrap_or_else(|| Quota::per_second(per_second))
}

/// project_keys are 24 hex digits; anything else is taken as a simple_name.
fn looks_like_project_key(key: &str) -> bool {
    key.len() == 24 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

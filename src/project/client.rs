//! HTTP client for the Feishu Project OpenAPI.
//!
//! Every call carries the plugin token (`X-PLUGIN-TOKEN`), cached until 3 minutes before it
//! expires and refetched once when the server calls it invalid (10022, 10211). Calls that act
//! or read on behalf of someone carry that person's `X-USER-KEY`. Rate limits (10429),
//! overload (50006), 5xx and timeouts are retried with jittered backoff; business errors never
//! are. Only what does not depend on who asks is shared between people (user keys, a space's
//! type list and abort options, an item's type); what does (a space's existence, an item's
//! details) is cached per user_key, and an item's state is never cached at all.
//! Requests are paced per endpoint template so the bot itself stays under the documented
//! 15 QPS per token per endpoint, rather than relying on 10429 retries. A Feishu Project
//! that keeps failing after those retries trips a [`Circuit`]: calls then fail at once with
//! [`ProjectError::Unavailable`] (a "busy" answer) instead of waiting on more retries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable;
use governor::{DefaultKeyedRateLimiter, Quota};
use moka::future::Cache;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::model::{SimpleField, Space, WorkItem, WorkItemType};
use crate::circuit::{Circuit, CircuitConfig, CircuitOpen, Verdict};
use crate::clock::SharedClock;
use crate::domain::{Action, ReasonChoice, ReasonOption};
use crate::metrics::{CacheName, Metrics, UpstreamCall, UpstreamOutcome};
use crate::retry::RetryPolicy;
use crate::token::TokenCache;

/// Codes that mean "the plugin token is no good": drop it and try once with a new one.
const TOKEN_INVALID: &[i64] = &[10021, 10022, 10211];
/// The transport error of a connection that was never made.
const CONNECT_FAILED: &str = "connection failed";
/// Codes a retry can fix.
const RETRYABLE: &[i64] = &[10429, 50006];
/// Feishu Project allows 15 requests per second per token per endpoint (10429 beyond).
pub const ENDPOINT_QPS: NonZeroU32 = NonZeroU32::new(15).unwrap();
/// A space's abort options are read again after this (contract: at most 10 min).
const ABORT_REASONS_TTL: Duration = Duration::from_secs(600);
/// An item's name and type as a person read them, for a command that names its option.
const ITEM_DETAILS_TTL: Duration = Duration::from_secs(600);
/// Codes of a type query that mean "not in this type" (§6.1; 20044: the type is disabled, §7.3).
const NOT_IN_TYPE: &[i64] = &[30005, 20014, 30014, 20003, 20044];
/// Codes that are about the person or the space, not one type: no other type will answer
/// differently, so the search stops (§7.3).
const ABOUT_THE_PERSON: &[i64] = &[10001, 10404, 10301, 10302, 20039, 20042, 10023, 30006];

/// How fresh an item lookup must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// What this person read lately is good enough: the card will show no state of its own
    /// (a command that names its option: the PUT's answer says what happened).
    Remembered,
    /// Read now, as this person: the card shows the item's current state.
    Fresh,
}

/// The answer to the abort PUT, and whether some try of it went unanswered (timeout, dropped
/// connection, 5xx): then the server may have applied it, whatever a later try says.
#[derive(Debug)]
pub struct PutAnswer {
    pub result: Result<(), ProjectError>,
    pub unanswered: bool,
}

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
    /// Not called: it kept failing lately and its circuit is open.
    #[error(transparent)]
    Unavailable(#[from] CircuitOpen),
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
            ProjectError::Transport(_) | ProjectError::Timeout | ProjectError::Unavailable(_) => {
                true
            }
            ProjectError::Malformed { status } => *status >= 500,
        }
    }

    /// No answer that says what the server did: it may have applied the request.
    pub fn may_have_landed(&self) -> bool {
        match self {
            ProjectError::Timeout => true,
            // A refused connection never reached the server.
            ProjectError::Transport(what) => what != CONNECT_FAILED,
            ProjectError::Api { status, .. } => *status >= 500,
            // An unreadable success may be the server's own answer (or a proxy's after it):
            // it says nothing of what was done.
            ProjectError::Malformed { status } => *status >= 500 || (200..300).contains(status),
            ProjectError::Unavailable(_) => false,
        }
    }

    /// The call's outcome class, for the latency histogram (10429: rate limited, 50006:
    /// overloaded).
    fn outcome(&self) -> UpstreamOutcome {
        match self {
            ProjectError::Api { code: 10429, .. } => UpstreamOutcome::RateLimited,
            ProjectError::Api { status: 429, .. } | ProjectError::Malformed { status: 429 } => {
                UpstreamOutcome::RateLimited
            }
            ProjectError::Api { code: 50006, .. } => UpstreamOutcome::ServerError,
            ProjectError::Api { status, .. } | ProjectError::Malformed { status }
                if *status >= 500 =>
            {
                UpstreamOutcome::ServerError
            }
            ProjectError::Api { .. } => UpstreamOutcome::Refused,
            ProjectError::Malformed { .. } => UpstreamOutcome::Malformed,
            ProjectError::Transport(_) | ProjectError::Timeout | ProjectError::Unavailable(_) => {
                UpstreamOutcome::NoAnswer
            }
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            ProjectError::Timeout
        } else {
            // The URL may carry ids but never a secret; still, keep only the kind of failure.
            ProjectError::Transport(
                if e.is_connect() {
                    CONNECT_FAILED
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
    /// (user_key, project_key or simple_name) → the space as that person sees it.
    spaces: Cache<(String, String), Space>,
    /// project_key → its work item types.
    types: Cache<String, Arc<Vec<WorkItemType>>>,
    /// (project_key, id) → the item's type_key, which never changes.
    item_types: Cache<(String, u64), String>,
    /// (user_key, project_key, id) → the item as that person read it, without its state.
    items: Cache<(String, String, u64), WorkItem>,
    /// project_key → the options of its 终止原因 field (empty: the space has none readable).
    abort_reasons: Cache<String, Arc<Vec<ReasonChoice>>>,
    /// project_keys whose fallback to the default options was logged in this period.
    fallback_logged: Cache<String, ()>,
    /// Paces requests per endpoint template (all calls share one plugin token).
    limiter: DefaultKeyedRateLimiter<&'static str>,
    /// Opens when calls keep failing after their retries.
    circuit: Circuit,
}

/// The plugin token and its lifetime, from the answer to `/open_api/authen/plugin_token`.
fn read_token_answer(status: u16, bytes: &[u8]) -> Result<(String, Duration), ProjectError> {
    let answer: TokenAnswer =
        serde_json::from_slice(bytes).map_err(|_| ProjectError::Malformed { status })?;
    match (answer.error, answer.data) {
        (Some(e), _) if e.code != 0 => Err(ProjectError::Api {
            code: e.code,
            msg: e.msg,
            status,
        }),
        (_, Some(d)) if !d.token.is_empty() => Ok((d.token, Duration::from_secs(d.expire_time))),
        _ => Err(ProjectError::Malformed { status }),
    }
}

/// The `data` of an answer whose `err_code` is 0, else the error it names.
fn read_answer(status: u16, bytes: &[u8]) -> Result<Value, ProjectError> {
    let answer: Value =
        serde_json::from_slice(bytes).map_err(|_| ProjectError::Malformed { status })?;
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
            token: TokenCache::new(Duration::from_secs(180), cfg.clock.clone()),
            retry: cfg.retry,
            metrics: cfg.metrics.clone(),
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
            item_types: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(day)
                .build(),
            items: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ITEM_DETAILS_TTL)
                .build(),
            abort_reasons: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ABORT_REASONS_TTL)
                .build(),
            fallback_logged: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ABORT_REASONS_TTL)
                .build(),
            limiter: DefaultKeyedRateLimiter::keyed(endpoint_quota(ENDPOINT_QPS)),
            circuit: Circuit::new(
                "feishu_project",
                CircuitConfig::default(),
                cfg.clock,
                cfg.metrics,
            ),
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
        let body = Self::read_body(sent).await;
        let status = body.as_ref().map_or(0, |(s, _)| *s);
        let answer = body.and_then(|(status, bytes)| read_token_answer(status, &bytes));
        self.record(path, path, "POST", started, status, &answer);
        if answer.is_ok() {
            self.metrics.token_refreshed("feishu_project");
        }
        answer
    }

    /// Reads the body of an answer.
    async fn read_body(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(u16, bytes::Bytes), ProjectError> {
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.bytes()
                    .await
                    .map(|b| (status, b))
                    .map_err(|e| ProjectError::from_reqwest(&e))
            }
            Err(e) => Err(ProjectError::from_reqwest(&e)),
        }
    }

    /// Records one call: its HTTP status (0: none) and how it ended.
    fn record<T>(
        &self,
        endpoint: &'static str,
        path: &str,
        method: &'static str,
        started: Instant,
        status: u16,
        answer: &Result<T, ProjectError>,
    ) {
        self.metrics.upstream(
            endpoint,
            UpstreamCall {
                service: "feishu_project",
                method,
                path: path.to_owned(),
                status,
                latency: started.elapsed(),
                outcome: match answer {
                    Ok(_) => UpstreamOutcome::Ok,
                    Err(e) => e.outcome(),
                },
            },
        );
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
        let body = Self::read_body(sent).await;
        let status = body.as_ref().map_or(0, |(s, _)| *s);
        let answer = body.and_then(|(status, bytes)| read_answer(status, &bytes));
        self.record(call.endpoint, &call.path, method, started, status, &answer);
        answer
    }

    /// One logical call: token, one refetch on an invalid token, retries with backoff.
    async fn call(&self, call: Call<'_>) -> Result<Value, ProjectError> {
        self.call_noting(call, &AtomicBool::new(false)).await
    }

    /// [`Self::call`], setting `unanswered` when a try may have reached the server without
    /// its answer reaching us. Goes through the circuit: refused at once while it is open,
    /// and the outcome after all retries tells it whether Feishu Project is healthy.
    async fn call_noting(
        &self,
        call: Call<'_>,
        unanswered: &AtomicBool,
    ) -> Result<Value, ProjectError> {
        let pass = self.circuit.admit()?;
        let result = self.call_retrying(&call, unanswered).await;
        pass.finish(match &result {
            Err(e) if e.is_retryable() => Verdict::Failing,
            _ => Verdict::Healthy,
        });
        result
    }

    async fn call_retrying(
        &self,
        call: &Call<'_>,
        unanswered: &AtomicBool,
    ) -> Result<Value, ProjectError> {
        let attempt = || async {
            let token = self.plugin_token().await?;
            let result = match self.send_once(&token, call).await {
                Err(e) if e.code().is_some_and(|c| TOKEN_INVALID.contains(&c)) => {
                    self.token.invalidate(&token).await;
                    let token = self.plugin_token().await?;
                    self.send_once(&token, call).await
                }
                other => other,
            };
            if result.as_ref().is_err_and(ProjectError::may_have_landed) {
                unanswered.store(true, Ordering::Relaxed);
            }
            result
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
        if let Some(k) = self
            .metrics
            .cached(CacheName::ProjectUserKeys, self.user_keys.get(&key).await)
        {
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

    /// A space by project_key or simple_name, as `user_key` sees it; None if no such space is
    /// visible. Cached per person: whether a space can be seen depends on who asks.
    pub async fn space(&self, key: &str, user_key: &str) -> Result<Option<Space>, ProjectError> {
        let cached = self
            .spaces
            .get(&(user_key.to_owned(), key.to_owned()))
            .await;
        if let Some(s) = self.metrics.cached(CacheName::ProjectSpaces, cached) {
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
                    self.spaces
                        .insert((user_key.to_owned(), name.to_owned()), space.clone())
                        .await;
                }
            }
        }
        Ok(found)
    }

    /// The options of a space's 终止原因 field (`protocol/feishu-project.md` §11), label shown
    /// and value sent; None when the field cannot be read or has no options, and the four
    /// documented defaults apply. The field's key is unconfirmed (§11.2), so it is found by
    /// [`SimpleField::is_abort_reason`]. The answer is cached per space for 10 min, the
    /// fallback too unless the read failed for this person's sake (not a member: it may work
    /// for the next one); the fallback is logged once per space per period.
    pub async fn abort_reasons(
        &self,
        space: &Space,
        user_key: &str,
    ) -> Option<Arc<Vec<ReasonChoice>>> {
        let project_key = &space.project_key;
        let cached = self.abort_reasons.get(project_key).await;
        let read = match self.metrics.cached(CacheName::ProjectAbortReasons, cached) {
            Some(choices) => Ok(choices),
            None => {
                let read = self.read_abort_reasons(project_key, user_key).await;
                // The fallback is kept for the period too (no read on every command while the
                // plugin cannot see the field), unless the failure is about this person.
                let about_the_person = read
                    .as_ref()
                    .err()
                    .and_then(ProjectError::code)
                    .is_some_and(|c| c != 10001 && ABOUT_THE_PERSON.contains(&c));
                if !about_the_person {
                    let kept = read.as_ref().cloned().unwrap_or_default();
                    self.abort_reasons.insert(project_key.clone(), kept).await;
                }
                read
            }
        };
        let why = match read {
            Ok(choices) if !choices.is_empty() => return Some(choices),
            Ok(_) => "the space has no 终止原因 field with options".to_owned(),
            Err(e) => e.to_string(),
        };
        if self.fallback_logged.get(project_key).await.is_none() {
            self.fallback_logged.insert(project_key.clone(), ()).await;
            tracing::warn!(project_key = %project_key, reason = %why,
                "offering the default abort options: cancel, repeat, test, other");
        }
        None
    }

    async fn read_abort_reasons(
        &self,
        project_key: &str,
        user_key: &str,
    ) -> Result<Arc<Vec<ReasonChoice>>, ProjectError> {
        let data = self
            .call(Call {
                method: Method::POST,
                endpoint: "/open_api/:project_key/field/all",
                path: format!("/open_api/{project_key}/field/all"),
                // No work_item_type_key: every field of the space (§11.1).
                body: Some(json!({})),
                user_key: Some(user_key),
                idem: None,
            })
            .await?;
        let fields: Vec<SimpleField> = data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| serde_json::from_value(f.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let Some(field) = fields.into_iter().find(SimpleField::is_abort_reason) else {
            return Ok(Arc::new(Vec::new()));
        };
        let mut options = field.options;
        options.sort_by_key(|o| o.order);
        let choices = options
            .into_iter()
            // 1/2 of is_disabled is unconfirmed (§11.1): only 1 is taken as "disabled".
            .filter(|o| o.is_disabled != 1)
            .filter_map(|o| {
                let option = ReasonOption::parse_key(o.value.trim())?;
                let label = o.label.trim();
                Some(ReasonChoice {
                    option,
                    label: (!label.is_empty()).then(|| label.to_owned()),
                })
            })
            .collect();
        Ok(Arc::new(choices))
    }

    /// The work item types of a space (cached for a while; types are rarely added).
    pub async fn work_item_types(
        &self,
        project_key: &str,
        user_key: &str,
    ) -> Result<Arc<Vec<WorkItemType>>, ProjectError> {
        if let Some(t) = self
            .metrics
            .cached(CacheName::ProjectTypes, self.types.get(project_key).await)
        {
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

    /// One item by type and id, read now as `user_key`; None when this type has no such id.
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
            Err(e) if e.code().is_some_and(|c| NOT_IN_TYPE.contains(&c)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tries each enabled type of the space. A type that fails for a reason of its own does
    /// not end the search; if no type has the item and some failed, the first failure is the
    /// answer (the item may be in the type that could not be read, so "not found" would be
    /// a guess).
    async fn search_types(
        &self,
        space: &Space,
        id: u64,
        user_key: &str,
    ) -> Result<Option<WorkItem>, ProjectError> {
        let types = self.work_item_types(&space.project_key, user_key).await?;
        let mut failed = None;
        // `is_disable` 1 = disabled is the community reading, unconfirmed (§4, §10 #5): only
        // 1 is skipped, any other value is tried.
        for t in types.iter().filter(|t| t.is_disable != 1) {
            match self
                .query_item(&space.project_key, &t.type_key, id, user_key)
                .await
            {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => {}
                Err(e) if e.code().is_some_and(|c| ABOUT_THE_PERSON.contains(&c)) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, project_key = %space.project_key,
                        type_key = %t.type_key, id, "one type could not be searched; trying the others");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Finds an item as `user_key`: by the given type, by its remembered type, or by trying
    /// each type of the space. None when no type has it. With [`Freshness::Remembered`] what
    /// this person read lately is used as is (without its state).
    pub async fn find_item(
        &self,
        space: &Space,
        type_hint: Option<&str>,
        id: u64,
        user_key: &str,
        freshness: Freshness,
    ) -> Result<Option<WorkItem>, ProjectError> {
        let details_key = (user_key.to_owned(), space.project_key.clone(), id);
        if freshness == Freshness::Remembered
            && let Some(item) = self
                .metrics
                .cached(CacheName::ProjectItems, self.items.get(&details_key).await)
            && type_hint.is_none_or(|t| t == item.work_item_type_key)
        {
            return Ok(Some(item));
        }
        let type_key = match type_hint {
            Some(t) => Some(t.to_owned()),
            None => {
                let cached = self.item_types.get(&(space.project_key.clone(), id)).await;
                self.metrics.cached(CacheName::ProjectItemTypes, cached)
            }
        };
        let found = match &type_key {
            Some(t) => self.query_item(&space.project_key, t, id, user_key).await?,
            None => self.search_types(space, id, user_key).await?,
        };
        let Some(mut item) = found else {
            return Ok(None);
        };
        if item.work_item_type_key.is_empty() {
            item.work_item_type_key = type_key.unwrap_or_default();
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
        self.item_types
            .insert(
                (space.project_key.clone(), id),
                item.work_item_type_key.clone(),
            )
            .await;
        // The state changes elsewhere: it is never remembered.
        let details = WorkItem {
            is_aborted: None,
            ..item.clone()
        };
        self.items.insert(details_key, details).await;
        Ok(Some(item))
    }

    /// An item's aborted state read afresh (never from a cache), as `user_key`: after a PUT
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

    /// `PUT /open_api/:project_key/work_item/:type/:id/abort` as `user_key`.
    pub async fn abort(
        &self,
        item: &WorkItem,
        action: Action,
        option: &ReasonOption,
        reason: &str,
        user_key: &str,
        idem_uuid: &str,
    ) -> PutAnswer {
        let unanswered = AtomicBool::new(false);
        let result = self
            .call_noting(
                Call {
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
                },
                &unanswered,
            )
            .await
            .map(|_| ());
        PutAnswer {
            unanswered: unanswered.load(Ordering::Relaxed),
            result,
        }
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

//! An emulated Feishu Project OpenAPI with a seeded space, strict about tokens and headers,
//! answering with the documented error codes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::Recorded;

/// A user of the emulated Feishu Project.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub user_key: String,
    pub union_id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Space {
    pub project_key: String,
    pub simple_name: String,
    pub name: String,
    pub types: Vec<ItemType>,
    /// user_keys that may act in the space.
    pub members: Vec<String>,
    /// The options of the space's 终止原因 field as (value, label); None: `field/all` has no
    /// such field (the bot then offers the documented four).
    pub abort_reasons: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemType {
    pub type_key: String,
    pub api_name: String,
    pub name: String,
    /// Switched off in the space: `is_disable` 1 in all-types, 20044 on a query.
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: u64,
    pub project_key: String,
    pub type_key: String,
    pub name: String,
    /// `Node` or `State`.
    pub pattern: String,
    pub aborted: bool,
    pub reason: String,
    pub reason_option: String,
    /// A space rule that intercepts every abort/restore of this item (20090).
    pub intercepted: bool,
    /// Who changed it last (user_key), for people reading the sandbox.
    pub changed_by: String,
}

/// Which endpoint a scripted fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Endpoint {
    Token,
    UserQuery,
    ProjectDetail,
    AllTypes,
    Query,
    Abort,
    FieldAll,
}

/// What a scripted fault does to the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and err_code.
    Error { status: u16, code: i64, msg: String },
    /// Take the request (apply it if `apply`) and never answer, like a crash mid-call or an
    /// answer lost past the client's timeout.
    Hang { apply: bool },
    /// Answer after this delay.
    Delay(Duration),
    /// Take the request (apply it if `apply`), then close the connection without an answer,
    /// as a proxy or a server dying mid-request does.
    Close { apply: bool },
    /// Answer with this status and a body that is not JSON, as a gateway in front of the API
    /// can (an HTML error page). The gateway's own error shape is UNCONFIRMED
    /// (`protocol/feishu-project.md` §7.1): the bot must fail safe on whatever it gets.
    NotJson { status: u16 },
}

#[derive(Debug)]
pub struct ProjectState {
    pub plugin_id: String,
    pub plugin_secret: String,
    /// Lifetime of issued tokens (seconds).
    pub token_lifetime: u64,
    tokens: Vec<String>,
    /// Every plugin token ever handed out, expired ones included.
    issued: Vec<String>,
    pub users: Vec<User>,
    pub spaces: Vec<Space>,
    pub items: BTreeMap<u64, Item>,
    pub faults: VecDeque<(Endpoint, Fault)>,
    /// Every call answers 10429 while set (the sandbox switch).
    pub rate_limited: bool,
    /// Every call waits this long (the sandbox switch).
    pub slow: Option<Duration>,
    /// Every call, the token's included, answers HTTP 500 with `50006 openapi system err`
    /// while set (an outage; `protocol/feishu-project.md` §7.3, "Server").
    pub failing: bool,
    pub requests: Vec<Recorded>,
    /// How many times a PUT changed each item (by id): what "changed at most once" counts.
    pub changes: HashMap<u64, u32>,
    /// (X-PLUGIN-TOKEN, endpoint, X-IDEM-UUID) → when first taken (§2.4).
    idem: HashMap<(String, Endpoint, String), Instant>,
}

/// How long an X-IDEM-UUID is remembered. The real window is unconfirmed
/// (`protocol/feishu-project.md` §2.4, §10 #1); an hour is the emulator's assumption.
const IDEM_WINDOW: Duration = Duration::from_secs(3600);

/// Handle to the emulator; clone it freely.
#[derive(Clone)]
pub struct ProjectEmulator {
    state: Arc<Mutex<ProjectState>>,
}

impl ProjectEmulator {
    pub fn new(plugin_id: &str, plugin_secret: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(ProjectState {
                plugin_id: plugin_id.to_owned(),
                plugin_secret: plugin_secret.to_owned(),
                token_lifetime: 7200,
                tokens: Vec::new(),
                issued: Vec::new(),
                users: Vec::new(),
                spaces: Vec::new(),
                items: BTreeMap::new(),
                faults: VecDeque::new(),
                rate_limited: false,
                slow: None,
                failing: false,
                changes: HashMap::new(),
                requests: Vec::new(),
                idem: HashMap::new(),
            })),
        }
    }

    /// Locks the state (a poisoned lock is still usable: the data is plain).
    pub fn state(&self) -> MutexGuard<'_, ProjectState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Every recorded request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Recorded requests whose path starts with `prefix` and method matches.
    pub fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        super::matching(&self.state().requests, method, path_prefix)
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    pub fn push_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state().faults.push_back((endpoint, fault));
    }

    /// Every plugin token handed out, expired ones included.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// Expires every issued token, as if two hours had passed.
    pub fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    pub fn item(&self, id: u64) -> Option<Item> {
        self.state().items.get(&id).cloned()
    }

    /// How many times a PUT changed the item.
    pub fn changes(&self, id: u64) -> u32 {
        self.state().changes.get(&id).copied().unwrap_or(0)
    }

    /// Adds `count` more active stories to the first space, ids from `first` on, each named
    /// after its id (for runs that need many distinct items).
    pub fn add_stories(&self, first: u64, count: u64) {
        let mut s = self.state();
        let Some(project_key) = s.spaces.first().map(|sp| sp.project_key.clone()) else {
            return;
        };
        for id in first..first + count {
            s.items.insert(
                id,
                Item {
                    id,
                    project_key: project_key.clone(),
                    type_key: "story".into(),
                    name: format!("Story {id}"),
                    pattern: "Node".into(),
                    aborted: false,
                    reason: String::new(),
                    reason_option: String::new(),
                    intercepted: false,
                    changed_by: String::new(),
                },
            );
        }
    }

    /// Adds the space `ops` (Alice is a member), whose 终止原因 field has options of its own, and
    /// its item 41001 (a story).
    pub fn seed_space_with_own_abort_reasons(&self) {
        let mut s = self.state();
        let project_key = "6f1e2d3c4b5a697887766554";
        let alice = s
            .users
            .first()
            .map(|u| u.user_key.clone())
            .unwrap_or_default();
        s.spaces.push(Space {
            project_key: project_key.into(),
            simple_name: "ops".into(),
            name: "Operations".into(),
            types: vec![ItemType {
                type_key: "story".into(),
                api_name: "story".into(),
                name: "需求".into(),
                disabled: false,
            }],
            members: vec![alice],
            abort_reasons: Some(vec![
                ("budget_cut".into(), "预算削减".into()),
                ("won_t_fix".into(), "Won't fix".into()),
                ("other".into(), "其他".into()),
            ]),
        });
        s.items.insert(
            41001,
            Item {
                id: 41001,
                project_key: project_key.into(),
                type_key: "story".into(),
                name: "Migrate the on-call rota".into(),
                pattern: "Node".into(),
                aborted: false,
                reason: String::new(),
                reason_option: String::new(),
                intercepted: false,
                changed_by: String::new(),
            },
        );
    }

    /// Changes an item's state directly, as someone using Feishu Project itself would.
    pub fn set_aborted(&self, id: u64, aborted: bool) {
        if let Some(item) = self.state().items.get_mut(&id) {
            item.aborted = aborted;
            item.changed_by = String::new();
        }
    }

    /// A space with the usual types (story, issue; `ticket` uses a state flow), three users,
    /// and a dozen items in various states.
    pub fn seed_demo(&self) {
        let mut s = self.state();
        let users = [
            (
                "7012514555133820947",
                "on_8ed6aa67826108097d9ee143816345",
                "alice@example.com",
                "Alice",
            ),
            (
                "7012514555133820948",
                "on_bob00000000000000000000000000",
                "bob@example.com",
                "Bob",
            ),
            (
                "7012514555133820949",
                "on_carol0000000000000000000000000",
                "carol@example.com",
                "Carol",
            ),
        ];
        s.users = users
            .iter()
            .map(|(k, u, e, n)| User {
                user_key: (*k).into(),
                union_id: (*u).into(),
                email: (*e).into(),
                name: (*n).into(),
            })
            .collect();
        let project_key = "60acd5610444ba031b503055";
        let t = |k: &str, a: &str, n: &str| ItemType {
            type_key: k.into(),
            api_name: a.into(),
            name: n.into(),
            disabled: false,
        };
        s.spaces = vec![Space {
            project_key: project_key.into(),
            simple_name: "doc".into(),
            name: "Docs Team".into(),
            types: vec![
                // Switched off: a bare-id search must not try it.
                ItemType {
                    disabled: true,
                    ..t("epic", "epic", "史诗")
                },
                t("story", "story", "需求"),
                t("issue", "issue", "缺陷"),
                t("ticket", "ticket", "工单"),
            ],
            // Carol is not a member: her calls get 10001.
            members: vec![users[0].0.into(), users[1].0.into()],
            abort_reasons: None,
        }];
        let items = [
            (
                12345,
                "story",
                "Export a space as PDF",
                "Node",
                false,
                false,
            ),
            (
                12346,
                "story",
                "Dark mode for the board",
                "Node",
                false,
                false,
            ),
            (12347, "story", "Bulk edit of owners", "Node", false, false),
            (12348, "story", "Old onboarding flow", "Node", true, false),
            (
                12349,
                "story",
                "Release checklist template",
                "Node",
                false,
                true,
            ),
            (
                12001,
                "story",
                "PDF export (first attempt)",
                "Node",
                false,
                false,
            ),
            (
                22001,
                "issue",
                "Crash when a title has emoji",
                "Node",
                false,
                false,
            ),
            (
                22002,
                "issue",
                "Search misses archived items",
                "Node",
                false,
                false,
            ),
            (22003, "issue", "Duplicate of 22001", "Node", true, false),
            (
                32001,
                "ticket",
                "Access request for finance",
                "State",
                false,
                false,
            ),
            (32002, "ticket", "New laptop", "State", false, false),
            (12350, "story", "Calendar sync", "Node", false, false),
        ];
        s.items = items
            .iter()
            .map(|(id, ty, name, pattern, aborted, intercepted)| {
                (
                    *id,
                    Item {
                        id: *id,
                        project_key: project_key.into(),
                        type_key: (*ty).into(),
                        name: (*name).into(),
                        pattern: (*pattern).into(),
                        aborted: *aborted,
                        reason: String::new(),
                        reason_option: if *aborted {
                            "cancel".into()
                        } else {
                            String::new()
                        },
                        intercepted: *intercepted,
                        changed_by: String::new(),
                    },
                )
            })
            .collect();
    }
}

/// `POST /open_api/:project_key/field/all` (§11.1): a few system fields, and the 终止原因 field
/// when the space has one. Its key is unconfirmed (§11.2): here it has a generated key and is
/// known only by its name, the hardest case for a client.
fn field_all(space: &Space, type_key: Option<&str>) -> Response {
    let scopes: Vec<&str> = match type_key {
        None => space.types.iter().map(|t| t.type_key.as_str()).collect(),
        Some(k) => match space
            .types
            .iter()
            .find(|t| t.type_key == k || t.api_name == k)
        {
            Some(t) => vec![t.type_key.as_str()],
            None => return envelope(404, 30001, "Data Not Found", Value::Null),
        },
    };
    let field =
        |key: &str, alias: &str, name: &str, type_key: &str, custom: bool, options: Value| {
            json!({"field_key": key, "field_alias": alias, "field_name": name,
               "field_type_key": type_key, "is_custom_field": custom, "is_obsoleted": false,
               "work_item_scopes": scopes, "value_generate_mode": "Default", "relation_id": "",
               "options": options})
        };
    let mut fields = vec![
        field("name", "name", "名称", "text", false, json!([])),
        field("owner", "owner", "创建者", "user", false, json!([])),
        field(
            "priority",
            "priority",
            "优先级",
            "select",
            false,
            json!([
                {"label": "P0", "value": "0", "order": 1, "color": "#F54A45", "is_visibility": 1, "is_disabled": 2},
                {"label": "P1", "value": "1", "order": 2, "color": "#FF8800", "is_visibility": 1, "is_disabled": 2},
            ]),
        ),
    ];
    if let Some(reasons) = &space.abort_reasons {
        let options: Vec<Value> = reasons
            .iter()
            .enumerate()
            .map(|(n, (value, label))| {
                json!({"label": label, "value": value, "order": n + 1, "color": "",
                       "is_visibility": 1, "is_disabled": 2, "work_item_type_key": ""})
            })
            .collect();
        fields.push(field(
            "field_5a7c1e",
            "",
            "终止原因",
            "select",
            false,
            Value::Array(options),
        ));
    }
    ok(Value::Array(fields))
}

fn envelope(status: u16, code: i64, msg: &str, data: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let err = if code == 0 {
        json!({})
    } else {
        json!({ "code": code, "msg": msg })
    };
    (
        status,
        axum::Json(json!({ "data": data, "err": err, "err_msg": if code == 0 { "" } else { msg }, "err_code": code })),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    envelope(200, 0, "", data)
}

/// The strings of a JSON array field (missing or malformed: none).
fn strings(body: &Value, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn endpoint_of(method: &Method, segments: &[&str]) -> Option<Endpoint> {
    match (method.as_str(), segments) {
        ("POST", ["open_api", "authen", "plugin_token"]) => Some(Endpoint::Token),
        ("POST", ["open_api", "user", "query"]) => Some(Endpoint::UserQuery),
        ("POST", ["open_api", "projects", "detail"]) => Some(Endpoint::ProjectDetail),
        ("GET", ["open_api", _, "work_item", "all-types"]) => Some(Endpoint::AllTypes),
        ("POST", ["open_api", _, "work_item", _, "query"]) => Some(Endpoint::Query),
        ("PUT", ["open_api", _, "work_item", _, _, "abort"]) => Some(Endpoint::Abort),
        ("POST", ["open_api", _, "field", "all"]) => Some(Endpoint::FieldAll),
        _ => None,
    }
}

async fn handle(
    State(emu): State<ProjectEmulator>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let endpoint = endpoint_of(&method, &segments);
    let (fault, slow) = {
        let mut s = emu.state();
        s.requests.push(Recorded::new(
            method.as_str(),
            uri.to_string(),
            &headers,
            &body,
        ));
        let fault = match endpoint {
            Some(e) => match s.faults.iter().position(|(fe, _)| *fe == e) {
                Some(i) => s.faults.remove(i).map(|(_, f)| f),
                None => None,
            },
            None => None,
        };
        if s.failing {
            return envelope(
                500,
                50006,
                "openapi system err, please try again later",
                Value::Null,
            );
        }
        (fault, s.slow)
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    match fault {
        Some(Fault::Error { status, code, msg }) => return envelope(status, code, &msg, json!({})),
        Some(Fault::Hang { apply }) => {
            if apply {
                let _ = emu.answer(endpoint, &segments, &headers, &body);
            }
            std::future::pending::<()>().await;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Close { apply }) => {
            if apply {
                let _ = emu.answer(endpoint, &segments, &headers, &body);
            }
            return closed();
        }
        Some(Fault::NotJson { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page = format!("<html><body><h1>{status}</h1></body></html>");
            return (
                status,
                [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page,
            )
                .into_response();
        }
        None => {}
    }
    emu.answer(endpoint, &segments, &headers, &body)
}

/// A response whose body fails before its first byte: the server drops the connection, and
/// the client sees it closed with no complete answer.
fn closed() -> Response {
    let broken = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "closed by the emulated server",
        ))
    });
    Response::new(axum::body::Body::from_stream(broken))
}

impl ProjectEmulator {
    fn answer(
        &self,
        endpoint: Option<Endpoint>,
        segments: &[&str],
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let Some(endpoint) = endpoint else {
            return envelope(404, 404, "Not Found", Value::Null);
        };
        let mut s = self.state();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let content_json =
            header("content-type").is_some_and(|c| c.starts_with("application/json"));
        if endpoint != Endpoint::AllTypes && !content_json {
            return envelope(
                400,
                20006,
                "Invalid Param: Content-Type must be application/json",
                Value::Null,
            );
        }
        if endpoint == Endpoint::Token {
            let id = json_body.get("plugin_id").and_then(Value::as_str);
            let secret = json_body.get("plugin_secret").and_then(Value::as_str);
            if id != Some(s.plugin_id.as_str()) || secret != Some(s.plugin_secret.as_str()) {
                return (
                    StatusCode::OK,
                    axum::Json(json!({"data": null, "error": {"code": 10211, "msg": "plugin id or secret is wrong"}})),
                )
                    .into_response();
            }
            let token = format!("p-emulated-{}", s.tokens.len() + s.requests.len());
            s.tokens.push(token.clone());
            s.issued.push(token.clone());
            return (
                StatusCode::OK,
                axum::Json(json!({"data": {"token": token, "expire_time": s.token_lifetime}, "error": {"code": 0, "msg": ""}})),
            )
                .into_response();
        }
        if s.rate_limited {
            return envelope(429, 10429, "API Request Frequency Limit", Value::Null);
        }
        let token = match header("x-plugin-token") {
            None => return envelope(401, 10021, "Token Not Exist", Value::Null),
            Some(t) if !s.tokens.iter().any(|v| v == t) => {
                return envelope(401, 10022, "Check Token Failed", Value::Null);
            }
            Some(t) => t.to_owned(),
        };
        if endpoint == Endpoint::UserQuery {
            let out_ids = strings(&json_body, "out_ids");
            let emails = strings(&json_body, "emails");
            let found: Vec<Value> = s
                .users
                .iter()
                .filter(|u| out_ids.contains(&u.union_id) || emails.contains(&u.email))
                .map(|u| json!({"user_key": u.user_key, "out_id": u.union_id, "email": u.email, "name_cn": u.name, "name_en": u.name, "status": "activated"}))
                .collect();
            if found.is_empty() {
                return envelope(404, 30006, "User Not Found", json!([]));
            }
            return ok(Value::Array(found));
        }
        // Everything else acts as someone.
        let Some(user_key) = header("x-user-key").map(str::to_owned) else {
            return envelope(400, 20039, "X-USER-KEY is required", Value::Null);
        };
        if !s.users.iter().any(|u| u.user_key == user_key) {
            return envelope(400, 20042, "X-User-Key is wrong", Value::Null);
        }
        if endpoint == Endpoint::ProjectDetail {
            let keys = strings(&json_body, "project_keys");
            let simple = strings(&json_body, "simple_names");
            let asked: Vec<&Space> = s
                .spaces
                .iter()
                .filter(|sp| keys.contains(&sp.project_key) || simple.contains(&sp.simple_name))
                .collect();
            // A space the user is not a member of is not shown to them; asked only for such
            // spaces, the answer is 10404 No Project Permission (§7.3).
            let visible: Vec<&Space> = asked
                .iter()
                .copied()
                .filter(|sp| sp.members.contains(&user_key))
                .collect();
            if visible.is_empty() && !asked.is_empty() {
                return envelope(403, 10404, "No Project Permission", Value::Null);
            }
            let found: serde_json::Map<String, Value> = visible
                .into_iter()
                .map(|sp| {
                    (
                        sp.project_key.clone(),
                        json!({"project_key": sp.project_key, "name": sp.name, "simple_name": sp.simple_name, "administrators": []}),
                    )
                })
                .collect();
            return ok(Value::Object(found));
        }
        let space_key = segments.get(1).copied().unwrap_or_default();
        let Some(space) = s
            .spaces
            .iter()
            .find(|sp| sp.project_key == space_key || sp.simple_name == space_key)
            .cloned()
        else {
            return envelope(401, 10301, "Check Token Perm Failed", Value::Null);
        };
        let member = space.members.contains(&user_key);
        let type_of = |key: &str| {
            space
                .types
                .iter()
                .find(|t| t.type_key == key || t.api_name == key)
                .cloned()
        };
        match endpoint {
            Endpoint::AllTypes => {
                if !member {
                    return envelope(403, 10404, "No Project Permission", Value::Null);
                }
                // is_disable: 1 = disabled, 2 = enabled (the community reading, §4).
                let types: Vec<Value> = space
                    .types
                    .iter()
                    .map(|t| {
                        json!({"type_key": t.type_key, "name": t.name, "api_name": t.api_name,
                                    "is_disable": if t.disabled { 1 } else { 2 },
                                    "enable_model_resource_lib": false})
                    })
                    .collect();
                ok(Value::Array(types))
            }
            Endpoint::Query => {
                if !member {
                    return envelope(403, 10404, "No Project Permission", Value::Null);
                }
                let Some(ty) = type_of(segments.get(3).copied().unwrap_or_default()) else {
                    return envelope(400, 20003, "Wrong WorkItemType Param", Value::Null);
                };
                if ty.disabled {
                    return envelope(400, 20044, "WorkItem Type Is Disabled", Value::Null);
                }
                let ids: Vec<u64> = json_body
                    .get("work_item_ids")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                if ids.is_empty() {
                    return envelope(400, 20005, "Missing Param", Value::Null);
                }
                let found: Vec<Value> = ids
                    .iter()
                    .filter_map(|id| s.items.get(id))
                    .filter(|i| i.project_key == space.project_key && i.type_key == ty.type_key)
                    .map(|i| {
                        json!({
                            "id": i.id, "name": i.name, "work_item_type_key": i.type_key,
                            "project_key": space.project_key, "simple_name": space.simple_name,
                            "pattern": i.pattern,
                            "fields": [{"field_key": "aborted", "field_type_key": "aborted",
                                        "field_value": {"is_aborted": i.aborted, "reason": i.reason}}]
                        })
                    })
                    .collect();
                if found.is_empty() {
                    return envelope(404, 30005, "WorkItem Not Found", Value::Null);
                }
                ok(Value::Array(found))
            }
            Endpoint::Abort => {
                // Idempotency is judged per (X-PLUGIN-TOKEN, endpoint) (§2.4): a repeat of a
                // key inside the window is refused with 10430 and changes nothing.
                if let Some(idem) = header("x-idem-uuid") {
                    let now = Instant::now();
                    s.idem.retain(|_, at| now.duration_since(*at) < IDEM_WINDOW);
                    let key = (token.clone(), endpoint, idem.to_owned());
                    if s.idem.contains_key(&key) {
                        return envelope(429, 10430, "API Request Idempotent Limit", Value::Null);
                    }
                    s.idem.insert(key, now);
                }
                let ty = type_of(segments.get(3).copied().unwrap_or_default());
                let id: Option<u64> = segments.get(4).and_then(|i| i.parse().ok());
                let Some(is_aborted) = json_body.get("is_aborted").and_then(Value::as_bool) else {
                    return envelope(400, 20005, "Missing Param: is_aborted", Value::Null);
                };
                let option = json_body
                    .get("reason_option")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let reason = json_body
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                // Abort options are the space's 终止原因 options (the defaults unless it has its
                // own); restore options are fixed (seed page; §11.2).
                let configured: Vec<&str> = space
                    .abort_reasons
                    .iter()
                    .flatten()
                    .map(|(value, _)| value.as_str())
                    .collect();
                let allowed: &[&str] = if !is_aborted {
                    &["restart", "rollback", "test", "other"]
                } else if configured.is_empty() {
                    &["cancel", "repeat", "test", "other"]
                } else {
                    &configured
                };
                let item = match (ty, id) {
                    (Some(ty), Some(id)) => s
                        .items
                        .get(&id)
                        .filter(|i| i.project_key == space.project_key && i.type_key == ty.type_key)
                        .cloned(),
                    _ => None,
                };
                let Some(item) = item else {
                    return envelope(404, 30005, "WorkItem Not Found", Value::Null);
                };
                if !member {
                    return envelope(403, 10001, "No Permission", Value::Null);
                }
                if !option.is_empty() && !allowed.contains(&option.as_str()) {
                    return envelope(400, 20006, "Invalid Param: reason_option", Value::Null);
                }
                if option == "other" && reason.trim().is_empty() {
                    return envelope(
                        400,
                        20009,
                        "Abort Or Restore WorkItem No Reason",
                        Value::Null,
                    );
                }
                if item.pattern == "State" {
                    return envelope(
                        400,
                        20056,
                        "Only WorkFlow Mode Can Be Aborted Or Restored",
                        Value::Null,
                    );
                }
                if item.intercepted {
                    return envelope(
                        400,
                        20090,
                        "Your request has been intercepted.",
                        Value::Null,
                    );
                }
                if is_aborted && item.aborted {
                    return envelope(400, 20007, "WorkItem Is Already Aborted", Value::Null);
                }
                if !is_aborted && !item.aborted {
                    return envelope(400, 20008, "WorkItem Is Already Restored", Value::Null);
                }
                if let Some(i) = s.items.get_mut(&item.id) {
                    i.aborted = is_aborted;
                    i.reason = reason;
                    i.reason_option = option;
                    i.changed_by = user_key;
                }
                *s.changes.entry(item.id).or_default() += 1;
                ok(json!({}))
            }
            Endpoint::FieldAll => {
                if !member {
                    return envelope(403, 10404, "No Project Permission", Value::Null);
                }
                field_all(
                    &space,
                    json_body.get("work_item_type_key").and_then(Value::as_str),
                )
            }
            Endpoint::Token | Endpoint::UserQuery | Endpoint::ProjectDetail => {
                envelope(404, 404, "Not Found", Value::Null)
            }
        }
    }
}

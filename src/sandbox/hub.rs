//! What the page shows, kept in one place and pushed to every open page as it changes: the
//! chat (people's messages and the bot's cards), the request log, the work items, and the
//! fault switches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::emulator::lark::{Activity, Message};
use crate::emulator::project::{Item, ProjectEmulator, ProjectState};
use crate::metrics::UpstreamCall;

use super::people;

/// The most chat entries and log lines kept (oldest dropped first).
const MAX_CHAT: usize = 500;
const MAX_LOG: usize = 1000;
/// Err codes seen by an emulator, waiting for the bot's side of the same call.
const MAX_PENDING_CODES: usize = 64;
/// Paths with notes waiting before stale ones are dropped, and how old a note gets stale
/// (longer than the bot's slowest call with its retries).
const MAX_PENDING_PATHS: usize = 256;
const STALE_NOTE: Duration = Duration::from_secs(120);

/// One message in a chat, from a person or the bot.
#[derive(Debug, Clone, Serialize)]
pub struct ChatEntry {
    pub id: String,
    pub chat_id: String,
    /// `user` or `bot`.
    pub from: &'static str,
    /// The person's key (`alice`), for `user` entries.
    pub sender: Option<String>,
    pub text: Option<String>,
    /// The Card JSON 2.0 of a bot message, as last sent or updated.
    pub card: Option<Value>,
    pub reply_to: Option<String>,
    pub updates: u32,
    /// Why a message did not reach the bot, if it did not.
    pub note: Option<String>,
    pub at_ms: i64,
}

/// One request between the bot and a platform (or from Lark to the bot).
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub seq: u64,
    /// When the request started (Unix ms, fractional), so the page can order a request
    /// before the calls it caused even though it finished after them.
    pub at_ms: f64,
    /// `lark`, `feishu_project` (the bot calling out) or `bot` (Lark calling the bot).
    pub service: String,
    pub method: String,
    pub path: String,
    /// 0 when no HTTP answer came back (timeout, refused).
    pub status: u16,
    /// The platform's `code` / `err_code`, when the answer carried one.
    pub code: Option<i64>,
    pub latency_ms: f64,
    /// `abort` or `restore` for a Feishu Project PUT `…/abort`, which does either, as its
    /// body's `is_aborted` says; the path alone cannot tell them apart.
    pub action: Option<&'static str>,
    pub detail: Option<String>,
}

/// What an emulator was asked to do, read from a request's body, for its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub action: &'static str,
    pub detail: String,
}

impl Asked {
    /// The body of `PUT /open_api/:project_key/work_item/:type/:id/abort`:
    /// `{"is_aborted": bool, "reason": str, "reason_option": str}`
    /// (`protocol/feishu-project.md` §8, 终止/恢复). None when it is not one.
    pub fn of_abort_body(body: &[u8]) -> Option<Asked> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let aborted = v.get("is_aborted")?.as_bool()?;
        let option = v.get("reason_option").and_then(Value::as_str).unwrap_or("");
        Some(Asked {
            action: if aborted { "abort" } else { "restore" },
            detail: format!("is_aborted: {aborted}, reason_option: {option}"),
        })
    }
}

/// A work item as the panel shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub id: u64,
    pub type_key: String,
    pub type_name: String,
    pub name: String,
    pub pattern: String,
    pub aborted: bool,
    pub reason_option: String,
    pub reason: String,
    /// Name of who changed it last through the bot.
    pub changed_by: Option<String>,
}

/// A work item on its own page in the sandbox, where the links in the bot's cards lead.
#[derive(Debug, Clone, Serialize)]
pub struct ItemPage {
    #[serde(flatten)]
    pub item: ItemView,
    pub project_key: String,
    pub simple_name: String,
    pub space_name: String,
}

fn item_view(s: &ProjectState, i: &Item) -> ItemView {
    let type_name = s
        .spaces
        .iter()
        .flat_map(|sp| sp.types.iter())
        .find(|t| t.type_key == i.type_key)
        .map_or_else(|| i.type_key.clone(), |t| t.name.clone());
    let changed_by = s
        .users
        .iter()
        .find(|u| u.user_key == i.changed_by)
        .map(|u| u.name.clone());
    ItemView {
        id: i.id,
        type_key: i.type_key.clone(),
        type_name,
        name: i.name.clone(),
        pattern: i.pattern.clone(),
        aborted: i.aborted,
        reason_option: i.reason_option.clone(),
        reason: i.reason.clone(),
        changed_by,
    }
}

/// The fault switches of the emulated Feishu Project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Switches {
    pub rate_limited: bool,
    pub slow_ms: u64,
}

/// What an open page is told, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PageEvent {
    /// A new chat entry, or a new version of one (same id).
    Message {
        message: ChatEntry,
    },
    Log {
        line: LogLine,
    },
    Items {
        items: Vec<ItemView>,
    },
    Switches {
        switches: Switches,
    },
    /// The page fell behind or the sandbox was reset: fetch `/api/state` again.
    Resync,
}

/// Which emulator answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Lark,
    Project,
}

impl Platform {
    fn of_service(service: &str) -> Option<Platform> {
        match service {
            "lark" => Some(Platform::Lark),
            "feishu_project" => Some(Platform::Project),
            _ => None,
        }
    }
}

type CodeKey = (Platform, String, String);

#[derive(Default)]
struct HubState {
    chat: VecDeque<ChatEntry>,
    log: VecDeque<LogLine>,
    next_seq: u64,
    /// Codes the emulators answered with, per (platform, method, path), oldest first.
    codes: HashMap<CodeKey, VecDeque<(Instant, i64)>>,
    /// What the emulators were asked, noted as each request arrived, oldest first.
    asked: HashMap<CodeKey, VecDeque<(Instant, Asked)>>,
}

/// Drops what was noted before `started`: it belongs to calls the bot gave up on.
fn drop_before<T>(queue: &mut VecDeque<(Instant, T)>, started: Instant) {
    while queue.front().is_some_and(|(at, _)| *at < started) {
        queue.pop_front();
    }
}

fn note<T>(map: &mut HashMap<CodeKey, VecDeque<(Instant, T)>>, key: CodeKey, value: T) {
    let queue = map.entry(key).or_default();
    queue.push_back((Instant::now(), value));
    while queue.len() > MAX_PENDING_CODES {
        queue.pop_front();
    }
    // Each path is a key (a typed id makes a new one): notes nobody took are dropped once
    // they are older than any call can last, so the map stays small.
    if map.len() > MAX_PENDING_PATHS {
        map.retain(|_, q| q.back().is_some_and(|(at, _)| at.elapsed() < STALE_NOTE));
    }
    // Still too many (a flood of fresh ones): the log loses a few codes, memory stays bounded.
    if map.len() > MAX_PENDING_PATHS {
        map.clear();
    }
}

/// Takes the note for a call that started at `started` (none if `answered` is false: a call
/// without an answer has no code), dropping older ones, and forgets the path once empty.
fn take<T>(
    map: &mut HashMap<CodeKey, VecDeque<(Instant, T)>>,
    key: &CodeKey,
    started: Instant,
    answered: bool,
) -> Option<T> {
    let queue = map.get_mut(key)?;
    drop_before(queue, started);
    let taken = if answered {
        queue.pop_front().map(|(_, t)| t)
    } else {
        None
    };
    if queue.is_empty() {
        map.remove(key);
    }
    taken
}

/// Shared by the API handlers, the bot's tap and the emulator watchers; clone freely.
#[derive(Clone)]
pub struct Hub {
    state: Arc<Mutex<HubState>>,
    events: broadcast::Sender<PageEvent>,
    project: ProjectEmulator,
    clock_origin: (Instant, i64),
}

fn now_ms() -> i64 {
    use crate::clock::{Clock, SystemClock};
    SystemClock.now_millis()
}

impl Hub {
    pub fn new(project: ProjectEmulator) -> Self {
        let (events, _) = broadcast::channel(512);
        Self {
            state: Arc::new(Mutex::new(HubState::default())),
            events,
            project,
            clock_origin: (Instant::now(), now_ms()),
        }
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn at_ms(&self, at: Instant) -> f64 {
        let (origin, origin_ms) = self.clock_origin;
        let since = at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        // Unix milliseconds fit an f64 exactly for the next few hundred thousand years.
        let origin_ms = origin_ms as f64;
        origin_ms + since
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PageEvent> {
        self.events.subscribe()
    }

    fn publish(&self, event: PageEvent) {
        // No page open is fine.
        let _ = self.events.send(event);
    }

    pub fn chat(&self) -> Vec<ChatEntry> {
        self.state().chat.iter().cloned().collect()
    }

    pub fn log(&self) -> Vec<LogLine> {
        self.state().log.iter().cloned().collect()
    }

    /// The chat a message belongs to, if the page has seen it.
    pub fn chat_of(&self, message_id: &str) -> Option<String> {
        self.state()
            .chat
            .iter()
            .find(|e| e.id == message_id)
            .map(|e| e.chat_id.clone())
    }

    /// Records a message a person wrote on the page.
    pub fn user_message(
        &self,
        id: &str,
        chat_id: &str,
        sender: &str,
        text: &str,
        note: Option<String>,
    ) -> ChatEntry {
        let entry = ChatEntry {
            id: id.to_owned(),
            chat_id: chat_id.to_owned(),
            from: "user",
            sender: Some(sender.to_owned()),
            text: Some(text.to_owned()),
            card: None,
            reply_to: None,
            updates: 0,
            note,
            at_ms: now_ms(),
        };
        self.upsert(entry.clone());
        entry
    }

    /// Records what the emulated Lark did with a bot message (sent, or updated).
    pub fn bot_activity(&self, activity: &Activity) {
        let message: &Message = match activity {
            Activity::Sent { message } | Activity::Updated { message } => message,
        };
        let chat_id = message
            .chat_id
            .clone()
            .or_else(|| message.reply_to.as_deref().and_then(|r| self.chat_of(r)))
            .unwrap_or_else(|| people::GROUP_CHAT.to_owned());
        let at_ms = self
            .state()
            .chat
            .iter()
            .find(|e| e.id == message.message_id)
            .map_or_else(now_ms, |e| e.at_ms);
        self.upsert(ChatEntry {
            id: message.message_id.clone(),
            chat_id,
            from: "bot",
            sender: None,
            text: None,
            card: Some(message.card.clone()),
            reply_to: message.reply_to.clone(),
            updates: message.updates,
            note: None,
            at_ms,
        });
    }

    fn upsert(&self, entry: ChatEntry) {
        {
            let mut s = self.state();
            match s.chat.iter_mut().find(|e| e.id == entry.id) {
                Some(existing) => *existing = entry.clone(),
                None => {
                    s.chat.push_back(entry.clone());
                    while s.chat.len() > MAX_CHAT {
                        s.chat.pop_front();
                    }
                }
            }
        }
        self.publish(PageEvent::Message { message: entry });
    }

    /// Notes the code an emulator answered a request with, for the log line the bot's side
    /// of the same call writes moments later.
    pub fn emulator_answered(&self, platform: Platform, method: &str, path: &str, code: i64) {
        let key = (platform, method.to_owned(), path.to_owned());
        note(&mut self.state().codes, key, code);
    }

    /// Notes what an emulator was asked as the request arrives (before any slow answer), for
    /// the log line of the same call.
    pub fn emulator_asked(&self, platform: Platform, method: &str, path: &str, asked: Asked) {
        let key = (platform, method.to_owned(), path.to_owned());
        note(&mut self.state().asked, key, asked);
    }

    /// The bot's tap: one upstream call finished.
    pub fn upstream_call(&self, call: &UpstreamCall) {
        let ended = Instant::now();
        let started = ended.checked_sub(call.latency).unwrap_or(ended);
        let (code, asked) = Platform::of_service(call.service).map_or((None, None), |p| {
            let key = (p, call.method.to_owned(), call.path.clone());
            let mut s = self.state();
            // A request that got no answer still arrived, and says what it asked for; it has
            // no code, and a later call's code stays for that call.
            let asked = take(&mut s.asked, &key, started, true);
            let code = take(&mut s.codes, &key, started, call.status != 0);
            (code, asked)
        });
        let (action, detail) = asked.map_or((None, None), |a| (Some(a.action), Some(a.detail)));
        self.push_log(
            call.service,
            call.method,
            &call.path,
            call.status,
            code,
            started,
            call.latency,
            action,
            detail,
        );
        if call.service == "feishu_project" && call.method == "PUT" {
            self.items_changed();
        }
    }

    /// Logs one request Lark (the page) made to the bot, started at `started`.
    pub fn inbound(&self, path: &str, status: u16, started: Instant, detail: String) {
        let latency = started.elapsed();
        self.push_log(
            "bot",
            "POST",
            path,
            status,
            None,
            started,
            latency,
            None,
            Some(detail),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push_log(
        &self,
        service: &str,
        method: &str,
        path: &str,
        status: u16,
        code: Option<i64>,
        started: Instant,
        latency: Duration,
        action: Option<&'static str>,
        detail: Option<String>,
    ) {
        let line = {
            let mut s = self.state();
            s.next_seq += 1;
            let line = LogLine {
                seq: s.next_seq,
                at_ms: self.at_ms(started),
                service: service.to_owned(),
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                code,
                latency_ms: (latency.as_secs_f64() * 10_000.0).round() / 10.0,
                action,
                detail,
            };
            s.log.push_back(line.clone());
            while s.log.len() > MAX_LOG {
                s.log.pop_front();
            }
            line
        };
        self.publish(PageEvent::Log { line });
    }

    /// The work items as they are now.
    pub fn items(&self) -> Vec<ItemView> {
        let s = self.project.state();
        s.items.values().map(|i| item_view(&s, i)).collect()
    }

    /// One work item as its page shows it, found the way a Feishu Project link names it:
    /// the space by project_key or simple_name, the type by type_key or api_name.
    pub fn item_page(&self, space: &str, type_key: &str, id: u64) -> Option<ItemPage> {
        let s = self.project.state();
        let item = s.items.get(&id)?;
        let sp = s.spaces.iter().find(|sp| {
            sp.project_key == item.project_key
                && (sp.project_key == space || sp.simple_name == space)
        })?;
        sp.types.iter().find(|t| {
            t.type_key == item.type_key && (t.type_key == type_key || t.api_name == type_key)
        })?;
        Some(ItemPage {
            item: item_view(&s, item),
            project_key: sp.project_key.clone(),
            simple_name: sp.simple_name.clone(),
            space_name: sp.name.clone(),
        })
    }

    pub fn items_changed(&self) {
        self.publish(PageEvent::Items {
            items: self.items(),
        });
    }

    pub fn switches(&self) -> Switches {
        let s = self.project.state();
        Switches {
            rate_limited: s.rate_limited,
            slow_ms: s
                .slow
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    pub fn set_switches(&self, rate_limited: Option<bool>, slow_ms: Option<u64>) -> Switches {
        {
            let mut s = self.project.state();
            if let Some(r) = rate_limited {
                s.rate_limited = r;
            }
            if let Some(ms) = slow_ms {
                s.slow = (ms > 0).then(|| Duration::from_millis(ms));
            }
        }
        let switches = self.switches();
        self.publish(PageEvent::Switches { switches });
        switches
    }

    /// Puts the items back as seeded and empties the chat and the log.
    pub fn reset(&self) {
        self.project.seed_demo();
        {
            let mut s = self.state();
            s.chat.clear();
            s.log.clear();
            s.codes.clear();
            s.asked.clear();
        }
        self.publish(PageEvent::Resync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::UpstreamOutcome;

    fn hub() -> Hub {
        let project = ProjectEmulator::new("MII_TEST", "secret");
        project.seed_demo();
        Hub::new(project)
    }

    fn put(path: &str, status: u16, latency: Duration) -> UpstreamCall {
        UpstreamCall {
            service: "feishu_project",
            method: "PUT",
            path: path.to_owned(),
            status,
            latency,
            outcome: if status == 200 {
                UpstreamOutcome::Ok
            } else {
                UpstreamOutcome::Refused
            },
        }
    }

    #[test]
    fn an_abort_body_says_whether_it_aborts_or_restores() {
        let restore = br#"{"is_aborted": false, "reason": "", "reason_option": "restart"}"#;
        assert_eq!(
            Asked::of_abort_body(restore),
            Some(Asked {
                action: "restore",
                detail: "is_aborted: false, reason_option: restart".into(),
            })
        );
        let abort = br#"{"is_aborted": true, "reason": "dup", "reason_option": "repeat"}"#;
        assert_eq!(Asked::of_abort_body(abort).map(|a| a.action), Some("abort"));
        assert_eq!(Asked::of_abort_body(br#"{"is_aborted": "no"}"#), None);
        assert_eq!(Asked::of_abort_body(b"not json"), None);
    }

    #[test]
    fn a_put_is_logged_as_the_restore_its_body_asked_for() {
        let hub = hub();
        let path = "/open_api/p/work_item/story/12345/abort";
        // A note from before the call started belongs to an earlier call and is dropped.
        hub.emulator_asked(
            Platform::Project,
            "PUT",
            path,
            Asked::of_abort_body(br#"{"is_aborted": true, "reason_option": "repeat"}"#)
                .expect("an abort"),
        );
        std::thread::sleep(Duration::from_millis(5));
        let started = Instant::now();
        hub.emulator_asked(
            Platform::Project,
            "PUT",
            path,
            Asked::of_abort_body(br#"{"is_aborted": false, "reason_option": "restart"}"#)
                .expect("a restore"),
        );
        hub.emulator_answered(Platform::Project, "PUT", path, 0);
        hub.upstream_call(&put(path, 200, started.elapsed()));
        let log = hub.log();
        let line = log.last().expect("a log line");
        assert_eq!(line.action, Some("restore"));
        assert_eq!(
            line.detail.as_deref(),
            Some("is_aborted: false, reason_option: restart")
        );
        assert_eq!(line.code, Some(0));
    }

    #[test]
    fn a_put_without_an_answer_still_says_what_it_asked_and_leaves_codes_for_later_calls() {
        let hub = hub();
        let path = "/open_api/p/work_item/story/12345/abort";
        let started = Instant::now();
        hub.emulator_asked(
            Platform::Project,
            "PUT",
            path,
            Asked::of_abort_body(br#"{"is_aborted": true, "reason_option": "cancel"}"#)
                .expect("an abort"),
        );
        hub.upstream_call(&put(path, 0, started.elapsed()));
        // The emulator answers the next call; its code is that call's.
        let second = Instant::now();
        hub.emulator_answered(Platform::Project, "PUT", path, 20007);
        hub.upstream_call(&put(path, 200, second.elapsed()));
        let log = hub.log();
        assert_eq!(log.len(), 2);
        assert_eq!((log[0].action, log[0].code), (Some("abort"), None));
        assert_eq!((log[1].action, log[1].code), (None, Some(20007)));
        let s = hub.state();
        assert!(
            s.asked.is_empty() && s.codes.is_empty(),
            "a path is forgotten once its notes are taken"
        );
    }

    #[test]
    fn notes_nobody_takes_stay_bounded() {
        let hub = hub();
        for id in 0..(MAX_PENDING_PATHS * 3) {
            let path = format!("/open_api/p/work_item/story/{id}/abort");
            hub.emulator_answered(Platform::Project, "PUT", &path, 30005);
        }
        assert!(hub.state().codes.len() <= MAX_PENDING_PATHS);
    }

    #[test]
    fn an_item_page_is_found_as_a_link_names_it() {
        let hub = hub();
        let (project_key, simple_name, type_key, api_name, id) = {
            let s = hub.project.state();
            let item = s.items.values().next().expect("a seeded item");
            let space = s
                .spaces
                .iter()
                .find(|sp| sp.project_key == item.project_key)
                .expect("its space");
            let ty = space
                .types
                .iter()
                .find(|t| t.type_key == item.type_key)
                .expect("its type");
            (
                space.project_key.clone(),
                space.simple_name.clone(),
                ty.type_key.clone(),
                ty.api_name.clone(),
                item.id,
            )
        };
        for (space, ty) in [
            (&simple_name, &type_key),
            (&project_key, &type_key),
            (&simple_name, &api_name),
        ] {
            let page = hub.item_page(space, ty, id).expect("found");
            assert_eq!(page.item.id, id);
            assert_eq!(page.simple_name, simple_name);
        }
        assert!(hub.item_page("elsewhere", &type_key, id).is_none());
        assert!(hub.item_page(&simple_name, "no_such_type", id).is_none());
        assert!(
            hub.item_page(&simple_name, &type_key, 999_999_999)
                .is_none()
        );
    }
}

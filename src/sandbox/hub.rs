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
use crate::emulator::project::ProjectEmulator;
use crate::metrics::UpstreamCall;

use super::people;

/// The most chat entries and log lines kept (oldest dropped first).
const MAX_CHAT: usize = 500;
const MAX_LOG: usize = 1000;
/// Err codes seen by an emulator, waiting for the bot's side of the same call.
const MAX_PENDING_CODES: usize = 64;

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
    pub detail: Option<String>,
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
        let mut s = self.state();
        let queue = s
            .codes
            .entry((platform, method.to_owned(), path.to_owned()))
            .or_default();
        queue.push_back((Instant::now(), code));
        while queue.len() > MAX_PENDING_CODES {
            queue.pop_front();
        }
    }

    /// The bot's tap: one upstream call finished.
    pub fn upstream_call(&self, call: &UpstreamCall) {
        let ended = Instant::now();
        let started = ended.checked_sub(call.latency).unwrap_or(ended);
        let code = Platform::of_service(call.service).and_then(|p| {
            let mut s = self.state();
            let queue = s
                .codes
                .get_mut(&(p, call.method.to_owned(), call.path.clone()))?;
            // Answers from before this call started belong to calls the bot gave up on.
            while queue.front().is_some_and(|(at, _)| *at < started) {
                queue.pop_front();
            }
            if call.status == 0 {
                return None;
            }
            queue.pop_front().map(|(_, c)| c)
        });
        self.push_log(
            call.service,
            call.method,
            &call.path,
            call.status,
            code,
            started,
            call.latency,
            None,
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
        let type_name = |key: &str| {
            s.spaces
                .iter()
                .flat_map(|sp| sp.types.iter())
                .find(|t| t.type_key == key)
                .map_or_else(|| key.to_owned(), |t| t.name.clone())
        };
        let user_name = |user_key: &str| {
            s.users
                .iter()
                .find(|u| u.user_key == user_key)
                .map(|u| u.name.clone())
        };
        s.items
            .values()
            .map(|i| ItemView {
                id: i.id,
                type_key: i.type_key.clone(),
                type_name: type_name(&i.type_key),
                name: i.name.clone(),
                pattern: i.pattern.clone(),
                aborted: i.aborted,
                reason_option: i.reason_option.clone(),
                reason: i.reason.clone(),
                changed_by: user_name(&i.changed_by),
            })
            .collect()
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
        }
        self.publish(PageEvent::Resync);
    }
}

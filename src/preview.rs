//! Link previews that act: a Feishu Project work item link posted in a chat is answered
//! (`url.preview.get`, `protocol/lark.md` §10) with an inline title (name · type · state) and a
//! card with the item's fields and the form of the action that applies. Everything shown is
//! looked up as the viewer (the callback's `operator`): someone who may not see the item gets
//! only what the link itself says.
//!
//! Lark waits 3 s. The lookup runs under a 2.5 s budget; past it the answer carries the title
//! made from the link, the lookup goes on, its result is kept for the viewer a short while
//! and that viewer's preview is refreshed, so the re-fetch is answered with it at once.
//!
//! Every preview_token seen is kept per item (at most [`TOKENS_PER_ITEM`] per item, for
//! [`MAX_ITEMS`] items, each for [`TOKEN_TTL_SECS`], with at most [`VIEWERS_PER_TOKEN`] viewers)
//! in memory: a token lost at a restart only means that preview shows its old state until it
//! is next fetched. When the bot changes an item (from any chat, card or preview) its previews
//! are refreshed with the batch update API (§10.4): at most 10 tokens a call, each token at
//! most once per 5 s, at most 5 calls a second, only for the viewers who fetched them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::card_value::{CardStamp, Signer};
use crate::clock::SharedClock;
use crate::domain::{Action, WorkItemRef};
use crate::lark::client::LarkClient;
use crate::lark::url_preview::{PreviewAnswer, PreviewRequest};
use crate::service::{Changed, Service};
use crate::views;

/// Lark waits 3 s for the answer (§10.3); this leaves room for the network.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(2500);
/// Preview tokens kept per item (the newest).
pub const TOKENS_PER_ITEM: usize = 50;
/// Items whose preview tokens are kept (the least recently seen is forgotten first).
pub const MAX_ITEMS: usize = 10_000;
/// How long a preview token is kept after its last fetch.
pub const TOKEN_TTL_SECS: i64 = 7 * 24 * 3600;
/// Viewers kept per token: the most the refresh API takes in one call (§10.4).
pub const VIEWERS_PER_TOKEN: usize = 100;
/// Tokens in one refresh call (§10.4).
pub const TOKENS_PER_CALL: usize = 10;
/// A token is refreshed at most once in this long (§10.4).
pub const TOKEN_GAP: Duration = Duration::from_secs(5);
/// The refresh API takes 5 calls a second (§10.4).
const CALL_GAP: Duration = Duration::from_millis(200);
/// Refreshes waiting to be sent, at most.
const MAX_PENDING: usize = 10_000;
/// Tries of one refresh that fails for a reason that can pass.
const REFRESH_TRIES: u32 = 3;
/// How long a lookup that finished after its answer is kept for the viewer's re-fetch.
const READY_TTL: Duration = Duration::from_secs(60);
/// Late lookups kept at once.
const MAX_READY: usize = 1000;
/// Items changed whose news waits for the refresher, at most.
pub const CHANGE_QUEUE: usize = 1024;

/// What the item of a link is known as: its space (as the link or Feishu Project names it) and id.
type ItemKey = (String, u64);

struct TokenEntry {
    token: String,
    viewers: VecDeque<String>,
    seen_at: i64,
}

/// The preview tokens of each item, bounded and expiring.
#[derive(Default)]
struct TokenBook {
    items: HashMap<ItemKey, Vec<TokenEntry>>,
}

impl TokenBook {
    fn note(&mut self, key: ItemKey, token: &str, viewer: Option<&str>, now: i64) {
        if !self.items.contains_key(&key) && self.items.len() >= MAX_ITEMS {
            self.expire(now);
            if self.items.len() >= MAX_ITEMS {
                let oldest = self
                    .items
                    .iter()
                    .min_by_key(|(_, t)| t.iter().map(|e| e.seen_at).max().unwrap_or(i64::MIN))
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.items.remove(&k);
                }
            }
        }
        let tokens = self.items.entry(key).or_default();
        let entry = match tokens.iter().position(|e| e.token == token) {
            Some(i) => &mut tokens[i],
            None => {
                if tokens.len() >= TOKENS_PER_ITEM
                    && let Some(i) = tokens
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.seen_at)
                        .map(|(i, _)| i)
                {
                    tokens.swap_remove(i);
                }
                tokens.push(TokenEntry {
                    token: token.to_owned(),
                    viewers: VecDeque::new(),
                    seen_at: now,
                });
                let last = tokens.len() - 1;
                &mut tokens[last]
            }
        };
        entry.seen_at = now;
        if let Some(v) = viewer {
            entry.viewers.retain(|x| x != v);
            if entry.viewers.len() >= VIEWERS_PER_TOKEN {
                entry.viewers.pop_front();
            }
            entry.viewers.push_back(v.to_owned());
        }
    }

    fn expire(&mut self, now: i64) {
        self.items.retain(|_, tokens| {
            tokens.retain(|e| now.saturating_sub(e.seen_at) <= TOKEN_TTL_SECS);
            !tokens.is_empty()
        });
    }

    /// The live tokens of an item and who viewed each.
    fn of(&self, key: &ItemKey, now: i64) -> Vec<(String, Vec<String>)> {
        self.items
            .get(key)
            .into_iter()
            .flatten()
            .filter(|e| now.saturating_sub(e.seen_at) <= TOKEN_TTL_SECS)
            .map(|e| (e.token.clone(), e.viewers.iter().cloned().collect()))
            .collect()
    }
}

/// One refresh to send: a token, for these viewers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refresh {
    token: String,
    viewers: Vec<String>,
}

pub struct Previews {
    service: Arc<Service>,
    signer: Arc<Signer>,
    budget: Duration,
    book: Arc<Mutex<TokenBook>>,
    /// (viewer, url) → the answer a late lookup made, for the re-fetch it asked for.
    ready: Mutex<HashMap<(String, String), (Instant, PreviewAnswer)>>,
    refresh: mpsc::Sender<Refresh>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The space and id a link names, lower-cased space for matching.
fn key_of(space: &str, id: u64) -> ItemKey {
    (space.to_ascii_lowercase(), id)
}

impl Previews {
    /// The handler, and the refresher that runs until `changes` closes (the service is gone).
    pub fn start(
        service: Arc<Service>,
        signer: Arc<Signer>,
        budget: Duration,
        changes: mpsc::Receiver<Changed>,
    ) -> Arc<Previews> {
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let book = Arc::new(Mutex::new(TokenBook::default()));
        let previews = Arc::new(Previews {
            service: service.clone(),
            signer,
            budget,
            book: book.clone(),
            ready: Mutex::new(HashMap::new()),
            refresh: tx,
        });
        tokio::spawn(refresher(
            service.lark.clone(),
            service.clock.clone(),
            book,
            changes,
            rx,
        ));
        previews
    }

    /// Answers one `url.preview.get` within the budget.
    pub async fn handle(self: &Arc<Self>, req: &PreviewRequest) -> PreviewAnswer {
        let started = Instant::now();
        let web_url = &self.service.web_url;
        let item_ref = WorkItemRef::parse(&req.url, web_url)
            .filter(|r| r.space.is_some() && r.type_key.is_some());
        let Some(item_ref) = item_ref else {
            // A link on a Feishu Project host that names no work item: the title says what it is.
            return PreviewAnswer {
                title: views::preview_url_title(None),
                card: None,
            };
        };
        let now = self.service.clock.now_secs();
        let viewer = req.viewer.open_id.clone();
        if let Some(token) = &req.preview_token {
            let space = item_ref.space.as_deref().unwrap_or_default();
            lock(&self.book).note(key_of(space, item_ref.id), token, viewer.as_deref(), now);
        }
        let ready_key = (viewer.clone().unwrap_or_default(), req.url.clone());
        if let Some((at, answer)) = lock(&self.ready).remove(&ready_key)
            && at.elapsed() <= READY_TTL
        {
            return answer;
        }
        let this = self.clone();
        let (r, request) = (item_ref.clone(), req.clone());
        let mut work = tokio::spawn(async move { this.look(&r, &request).await });
        let left = self.budget.saturating_sub(started.elapsed());
        let from_url = PreviewAnswer {
            title: views::preview_url_title(Some(&item_ref)),
            card: None,
        };
        match tokio::time::timeout(left, &mut work).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a link preview lookup failed");
                from_url
            }
            Err(_) => {
                // Answer with the link's own words now; the data follows by a refresh.
                let this = self.clone();
                let token = req.preview_token.clone();
                tokio::spawn(async move {
                    let Ok(answer) = work.await else { return };
                    if answer.card.is_none() {
                        return;
                    }
                    let Some(token) = token else { return };
                    {
                        let mut ready = lock(&this.ready);
                        ready.retain(|_, (at, _)| at.elapsed() <= READY_TTL);
                        if ready.len() >= MAX_READY {
                            tracing::warn!(
                                "too many late link previews; this one keeps the link's title"
                            );
                            return;
                        }
                        ready.insert(ready_key.clone(), (Instant::now(), answer));
                    }
                    let viewers = ready_key
                        .0
                        .is_empty()
                        .then(Vec::new)
                        .unwrap_or_else(|| vec![ready_key.0.clone()]);
                    this.ask_refresh(Refresh { token, viewers });
                });
                from_url
            }
        }
    }

    fn ask_refresh(&self, refresh: Refresh) {
        if self.refresh.try_send(refresh).is_err() {
            tracing::warn!(
                "too many link preview refreshes waiting; one preview keeps its old state"
            );
        }
    }

    /// The preview as the viewer may see it: the item's title and card, or the link's words.
    async fn look(&self, item_ref: &WorkItemRef, req: &PreviewRequest) -> PreviewAnswer {
        let service = &self.service;
        let from_url = || PreviewAnswer {
            title: views::preview_url_title(Some(item_ref)),
            card: None,
        };
        let user_key = service.user_key(&req.viewer).await;
        if user_key.is_err() {
            return from_url();
        }
        let refs = std::slice::from_ref(item_ref);
        let chat_id = req.open_chat_id.as_deref();
        let lookups = service.lookup(refs, chat_id, &user_key).await;
        let Some(Ok(found)) = lookups.first() else {
            // No access, not found, or Feishu Project failing: only what the link says.
            return from_url();
        };
        if let Some(token) = &req.preview_token {
            // Known by its project_key too, which is what a change names.
            let now = service.clock.now_secs();
            lock(&self.book).note(
                key_of(&found.item.project_key, found.item.id),
                token,
                req.viewer.open_id.as_deref(),
                now,
            );
        }
        let action = if found.item.is_aborted == Some(true) {
            Action::Restore
        } else {
            Action::Abort
        };
        let menu = service.reason_menu(action, refs, chat_id, &user_key).await;
        let stamp = CardStamp::new(&self.signer, service.clock.now_secs());
        PreviewAnswer {
            title: views::preview_title(&found.item),
            card: Some(views::preview_card(
                found,
                action,
                &menu,
                &service.web_url,
                &stamp,
            )),
        }
    }
}

/// A refresh waiting for its token's turn.
struct Pending {
    viewers: BTreeSet<String>,
    due: Instant,
    tries: u32,
}

/// Sends the refreshes: for each changed item, every live token it has; each token at most
/// once per [`TOKEN_GAP`], up to [`TOKENS_PER_CALL`] tokens and [`VIEWERS_PER_TOKEN`] viewers a
/// call, one call per [`CALL_GAP`].
async fn refresher(
    lark: Arc<LarkClient>,
    clock: SharedClock,
    book: Arc<Mutex<TokenBook>>,
    mut changes: mpsc::Receiver<Changed>,
    mut asked: mpsc::Receiver<Refresh>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut last: HashMap<String, Instant> = HashMap::new();
    let add =
        |pending: &mut HashMap<String, Pending>, last: &HashMap<String, Instant>, r: Refresh| {
            let earliest = last
                .get(&r.token)
                .map_or_else(Instant::now, |t| *t + TOKEN_GAP)
                .max(Instant::now());
            if !pending.contains_key(&r.token) && pending.len() >= MAX_PENDING {
                tracing::warn!(
                    "too many link preview refreshes waiting; one preview keeps its old state"
                );
                return;
            }
            let p = pending.entry(r.token).or_insert_with(|| Pending {
                viewers: BTreeSet::new(),
                due: earliest,
                tries: 0,
            });
            p.viewers.extend(r.viewers);
        };
    loop {
        let next = pending.values().map(|p| p.due).min();
        tokio::select! {
            changed = changes.recv() => {
                let Some(c) = changed else { break };
                let now = clock.now_secs();
                let mut tokens = Vec::new();
                {
                    let book = lock(&book);
                    for key in [key_of(&c.project_key, c.id), key_of(&c.simple_name, c.id)] {
                        for t in book.of(&key, now) {
                            if !tokens.iter().any(|(x, _)| *x == t.0) {
                                tokens.push(t);
                            }
                        }
                    }
                }
                for (token, viewers) in tokens {
                    add(&mut pending, &last, Refresh { token, viewers });
                }
            }
            r = asked.recv() => {
                let Some(r) = r else { break };
                add(&mut pending, &last, r);
            }
            () = sleep_until(next) => {}
        }
        let now = Instant::now();
        last.retain(|_, t| now.duration_since(*t) < TOKEN_GAP);
        // Due tokens, oldest first, into one call within its limits.
        let mut due: Vec<(&String, &Pending)> =
            pending.iter().filter(|(_, p)| p.due <= now).collect();
        if due.is_empty() {
            continue;
        }
        due.sort_by_key(|(_, p)| p.due);
        let mut tokens: Vec<String> = Vec::new();
        let mut viewers: BTreeSet<String> = BTreeSet::new();
        for (token, p) in due {
            if tokens.len() >= TOKENS_PER_CALL {
                break;
            }
            let union: BTreeSet<String> = viewers.union(&p.viewers).cloned().collect();
            if !tokens.is_empty() && union.len() > VIEWERS_PER_TOKEN {
                break;
            }
            viewers = union;
            tokens.push(token.clone());
        }
        let sent: Vec<(String, Pending)> = tokens
            .iter()
            .filter_map(|t| pending.remove_entry(t))
            .collect();
        let open_ids: Vec<String> = viewers.into_iter().take(VIEWERS_PER_TOKEN).collect();
        match lark.refresh_previews(&tokens, &open_ids).await {
            Ok(()) => {
                let at = Instant::now();
                for t in tokens {
                    last.insert(t, at);
                }
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "a link preview refresh failed; trying again");
                for (token, mut p) in sent {
                    p.tries += 1;
                    if p.tries < REFRESH_TRIES {
                        p.due = Instant::now() + TOKEN_GAP;
                        pending.insert(token, p);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a link preview refresh was refused; those previews keep their old state");
            }
        }
        tokio::time::sleep(CALL_GAP).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_is_bounded_per_item_and_per_token_and_expires() {
        let mut book = TokenBook::default();
        let key = key_of("Space", 1);
        for i in 0..(TOKENS_PER_ITEM + 5) {
            book.note(key.clone(), &format!("t{i}"), Some("ou_1"), i as i64);
        }
        let tokens = book.of(&key_of("space", 1), 100);
        assert_eq!(tokens.len(), TOKENS_PER_ITEM);
        assert!(
            !tokens.iter().any(|(t, _)| t == "t0"),
            "the oldest went first"
        );
        for v in 0..(VIEWERS_PER_TOKEN + 3) {
            book.note(key.clone(), "t54", Some(&format!("ou_v{v}")), 100);
        }
        let (_, viewers) = book
            .of(&key, 100)
            .into_iter()
            .find(|(t, _)| t == "t54")
            .expect("token kept");
        assert_eq!(viewers.len(), VIEWERS_PER_TOKEN);
        assert!(viewers.contains(&format!("ou_v{}", VIEWERS_PER_TOKEN + 2)));
        assert!(
            book.of(&key, 100 + TOKEN_TTL_SECS + 60).is_empty(),
            "expired"
        );
    }

    #[test]
    fn the_book_forgets_the_least_recent_item_when_full() {
        let mut book = TokenBook::default();
        for i in 0..MAX_ITEMS as u64 {
            book.note(key_of("s", i), "t", None, 10 + i as i64);
        }
        // Nothing has expired yet: the least recently seen item makes room.
        let now = 20 + MAX_ITEMS as i64;
        book.note(key_of("s", u64::MAX), "t", None, now);
        assert_eq!(book.items.len(), MAX_ITEMS);
        assert!(book.of(&key_of("s", 0), now).is_empty());
        assert_eq!(book.of(&key_of("s", 1), now).len(), 1);
        assert_eq!(book.of(&key_of("s", u64::MAX), now).len(), 1);
    }
}

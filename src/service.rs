//! The command core: the one place that decides what an abort or restore does, whoever asked
//! (a chat message or, later, a card click). Free of HTTP: it speaks to the Feishu Project and
//! Lark clients and the store, and returns typed outcomes that the views turn into cards.

use std::sync::Arc;

use serde::Serialize;
use url::Url;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::domain::{Action, ReasonMenu, ReasonOption, WorkItemRef};
use crate::lark::client::LarkClient;
use crate::lark::message::UserIds;
use crate::limits::{Limits, Refusal};
use crate::metrics::Metrics;
use crate::project::{Freshness, ProjectClient, ProjectError, PutAnswer, Space, WorkItem};
use crate::store::Store;

/// Namespace of the bot's derived ids (X-IDEM-UUID, Lark `uuid`).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a3f_1c2e_9b7d_4e5f_8a1b_2c3d_4e5f_6a7b);

/// What became of one work item. Each has a card that says what happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    AlreadyAborted,
    AlreadyRestored,
    NotFound,
    StateFlow,
    Intercepted,
    ReasonMissing,
    NoPermission,
    UnknownSpace,
    /// No space: the chat is not bound and the ref names none.
    NoSpace,
    NotAUser,
    /// Rate limited, overloaded or down, after retries; the PUT (if any) was refused.
    Busy(String),
    /// The PUT was sent but its answer never came: it may have gone through. Holds the
    /// item's aborted state as read back afterwards, when that read succeeded.
    Unconfirmed(Option<bool>),
    /// An error the bot has no better words for.
    Unexpected(String),
}

/// Which lookup an error came from; 10301 means different things on a space and on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    User,
    Space,
    Item,
}

impl Outcome {
    /// The key of its words in `cards/messages.json`.
    pub fn key(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyAborted => "already_aborted",
            Outcome::AlreadyRestored => "already_restored",
            Outcome::NotFound => "not_found",
            Outcome::StateFlow => "state_flow",
            Outcome::Intercepted => "intercepted",
            Outcome::ReasonMissing => "reason_missing",
            Outcome::NoPermission => "no_permission",
            Outcome::UnknownSpace => "unknown_space",
            Outcome::NoSpace => "no_space",
            Outcome::NotAUser => "not_a_user",
            Outcome::Busy(_) => "busy",
            Outcome::Unconfirmed(Some(true)) => "unconfirmed_aborted",
            Outcome::Unconfirmed(Some(false)) => "unconfirmed_active",
            Outcome::Unconfirmed(None) => "unconfirmed_unknown",
            Outcome::Unexpected(_) => "unexpected",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Busy(d) | Outcome::Unexpected(d) => Some(d),
            _ => None,
        }
    }

    /// Whether sending the same command again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Busy(_) | Outcome::Unconfirmed(_))
    }

    /// A failure that belongs to the person who asked, not to the items: someone else asking
    /// the same may succeed.
    pub fn is_personal(&self) -> bool {
        matches!(self, Outcome::NoPermission | Outcome::NotAUser)
    }

    fn from_error(e: &ProjectError, stage: Stage) -> Outcome {
        if e.is_retryable() {
            return Outcome::Busy(short_error(e));
        }
        match e.code() {
            Some(20007) => Outcome::AlreadyAborted,
            Some(20008) => Outcome::AlreadyRestored,
            Some(30005 | 20014) => Outcome::NotFound,
            Some(20056) => Outcome::StateFlow,
            Some(20090) => Outcome::Intercepted,
            Some(20009) => Outcome::ReasonMissing,
            Some(10301 | 30006) if stage == Stage::Space => Outcome::UnknownSpace,
            Some(1_000_052_062) => Outcome::UnknownSpace,
            Some(10001 | 10404 | 10301) => Outcome::NoPermission,
            Some(30006 | 10302 | 20039 | 20042 | 10023) => Outcome::NotAUser,
            _ => Outcome::Unexpected(short_error(e)),
        }
    }
}

fn short_error(e: &ProjectError) -> String {
    match e {
        ProjectError::Api { code, msg, .. } if msg.is_empty() => format!("error {code}"),
        ProjectError::Api { code, msg, .. } => format!("{code} {msg}"),
        ProjectError::Timeout => "timeout".into(),
        ProjectError::Transport(what) => what.clone(),
        ProjectError::Malformed { status } => format!("HTTP {status}"),
        ProjectError::Unavailable(_) => "failing lately, not called".into(),
    }
}

/// One abort/restore request, from whatever channel.
#[derive(Debug, Clone)]
pub struct ActRequest {
    pub action: Action,
    pub option: ReasonOption,
    pub reason: String,
    pub refs: Vec<WorkItemRef>,
    /// The chat it came from, for the space binding.
    pub chat_id: Option<String>,
    /// What makes the request unique (the message_id, or a click's event_id): the PUT's
    /// X-IDEM-UUID is derived from it, so a redelivery can never act twice.
    pub origin: String,
    /// The acting person: the sender of the message, or the clicker.
    pub actor: UserIds,
}

/// What happened to one ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemReport {
    pub item_ref: WorkItemRef,
    /// The space key that was used (or tried).
    pub space_key: Option<String>,
    pub space: Option<Space>,
    pub item: Option<WorkItem>,
    pub outcome: Outcome,
    /// The err_code Feishu Project answered to the PUT (0: it succeeded); None when no PUT
    /// was sent, or none was answered.
    pub code: Option<i64>,
}

impl ItemReport {
    /// A ref that did not get as far as the PUT.
    pub fn failed(
        r: &WorkItemRef,
        space_key: Option<String>,
        space: Option<Space>,
        outcome: Outcome,
    ) -> Self {
        Self {
            item_ref: r.clone(),
            space_key,
            space,
            item: None,
            outcome,
            code: None,
        }
    }

    /// The ref as fully resolved (`project_key/type/id`) when the item was found, so that a
    /// button acting on it later needs no lookup of space or type.
    pub fn resolved_ref(&self) -> WorkItemRef {
        match &self.item {
            Some(w) => WorkItemRef {
                space: Some(w.project_key.clone()),
                type_key: Some(w.work_item_type_key.clone()),
                id: w.id,
            },
            None => WorkItemRef {
                space: self
                    .space_key
                    .clone()
                    .or_else(|| self.item_ref.space.clone()),
                ..self.item_ref.clone()
            },
        }
    }
}

/// A ref that was looked up and found, before anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub item_ref: WorkItemRef,
    pub space_key: String,
    pub space: Space,
    pub item: WorkItem,
}

impl Found {
    /// `project_key/type/id`: what a button acting on this item carries.
    pub fn resolved_ref(&self) -> WorkItemRef {
        WorkItemRef {
            space: Some(self.item.project_key.clone()),
            type_key: Some(self.item.work_item_type_key.clone()),
            id: self.item.id,
        }
    }
}

/// What happened to a whole request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActReport {
    pub action: Action,
    pub option: ReasonOption,
    /// The space's label of the option, when it configured its own (shown instead of the
    /// documented option's words).
    pub option_label: Option<String>,
    /// The options of the opposite action in the items' space, for Undo / Abort again.
    pub opposite_menu: Option<ReasonMenu>,
    pub reason: String,
    pub actor_open_id: Option<String>,
    pub items: Vec<ItemReport>,
}

impl ActReport {
    /// A request refused as a whole, before any lookup: every ref gets `outcome`.
    pub fn refused(req: &ActRequest, outcome: Outcome) -> ActReport {
        ActReport {
            action: req.action,
            option: req.option.clone(),
            option_label: None,
            opposite_menu: None,
            reason: req.reason.clone(),
            actor_open_id: req.actor.open_id.clone(),
            items: req
                .refs
                .iter()
                .map(|r| ItemReport::failed(r, r.space.clone(), None, outcome.clone()))
                .collect(),
        }
    }
}

/// The result of `/bind`.
pub type BindResult = Result<Space, Outcome>;

pub struct Service {
    pub project: Arc<ProjectClient>,
    pub lark: Arc<LarkClient>,
    pub store: Store,
    pub default_project: Option<String>,
    pub web_url: Url,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Refs per request, reason length, requests per person per minute.
    pub limits: Limits,
    /// Told of every item the bot changed (the link previews of it are refreshed).
    pub changes: Changes,
}

/// An item the bot just changed: its space (key and simple name, as links name it) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub project_key: String,
    pub simple_name: String,
    pub id: u64,
}

/// Where [`Changed`] goes: a bounded queue, never waited on. A full queue drops the news
/// (a preview then shows the old state until it is next fetched) and says so in the log.
#[derive(Debug, Clone, Default)]
pub struct Changes(Option<tokio::sync::mpsc::Sender<Changed>>);

impl Changes {
    pub fn new(tx: tokio::sync::mpsc::Sender<Changed>) -> Self {
        Self(Some(tx))
    }

    fn tell(&self, changed: Changed) {
        if let Some(tx) = &self.0
            && tx.try_send(changed).is_err()
        {
            tracing::warn!("the change queue is full; a link preview keeps its old state");
        }
    }
}

/// The PUT's `X-IDEM-UUID`: the same request on the same item always gives the same value.
pub fn idem_uuid(origin: &str, project_key: &str, id: u64, action: Action) -> String {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("put|{origin}|{project_key}|{id}|{}", action.key()).as_bytes(),
    )
    .to_string()
}

/// The Lark `uuid` of the reply to a message (Lark drops a repeat within an hour).
pub fn reply_uuid(message_id: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, format!("reply|{message_id}").as_bytes()).to_string()
}

impl Service {
    /// Admits a request of `items` refs with `reason` by `who` before anything reaches
    /// Feishu Project; a refusal is not counted against the person.
    pub fn admit(&self, who: &UserIds, items: usize, reason: &str) -> Result<(), Refusal> {
        let admitted = self.limits.admit(who, items, reason);
        if let Err(refusal) = &admitted {
            self.metrics.refused(refusal.key());
        }
        admitted
    }

    /// The acting person's Feishu Project user_key: by union_id, then by enterprise email.
    pub async fn user_key(&self, actor: &UserIds) -> Result<String, Outcome> {
        let mut union_id = actor.union_id.clone();
        if union_id.is_none()
            && let Some(open_id) = &actor.open_id
        {
            union_id = self
                .lark
                .contact(open_id)
                .await
                .ok()
                .and_then(|c| c.union_id);
        }
        if let Some(union_id) = &union_id {
            match self.project.user_key_by_union_id(union_id).await {
                Ok(Some(k)) => return Ok(k),
                Ok(None) => {}
                Err(e) => return Err(Outcome::from_error(&e, Stage::User)),
            }
        }
        let Some(open_id) = &actor.open_id else {
            return Err(Outcome::NotAUser);
        };
        let email = match self.lark.contact(open_id).await {
            Ok(c) => c.email,
            Err(e) => {
                tracing::warn!(error = %e, "contact lookup for the email fallback failed");
                None
            }
        };
        if let Some(email) = email {
            match self.project.user_key_by_email(&email).await {
                Ok(Some(k)) => return Ok(k),
                Ok(None) => {}
                Err(e) => return Err(Outcome::from_error(&e, Stage::User)),
            }
        }
        Err(Outcome::NotAUser)
    }

    /// The space a ref refers to: its own, the chat's binding, or the default.
    async fn space_key(&self, r: &WorkItemRef, bound: Option<&str>) -> Option<String> {
        r.space
            .clone()
            .or_else(|| bound.map(str::to_owned))
            .or_else(|| self.default_project.clone())
    }

    async fn binding(&self, chat_id: Option<&str>) -> Option<String> {
        let chat_id = chat_id?;
        match self.store.binding(chat_id.to_owned()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the chat binding failed");
                None
            }
        }
    }

    /// Runs an abort or restore on every ref, as the actor.
    pub async fn act(&self, req: &ActRequest) -> ActReport {
        let user_key = self.user_key(&req.actor).await;
        self.act_as(req, user_key).await
    }

    /// [`Self::act`] with the actor's user_key already looked up (or why there is none).
    pub async fn act_as(&self, req: &ActRequest, user_key: Result<String, Outcome>) -> ActReport {
        let mut report = ActReport {
            action: req.action,
            option: req.option.clone(),
            option_label: None,
            opposite_menu: None,
            reason: req.reason.clone(),
            actor_open_id: req.actor.open_id.clone(),
            items: Vec::with_capacity(req.refs.len()),
        };
        let bound = self.binding(req.chat_id.as_deref()).await;
        for r in &req.refs {
            let item = match &user_key {
                Ok(user_key) => self.act_one(req, r, bound.as_deref(), user_key).await,
                Err(outcome) => ItemReport::failed(r, None, None, outcome.clone()),
            };
            self.metrics.outcome(req.action.key(), item.outcome.key());
            if item.outcome == Outcome::Done
                && let Some(w) = &item.item
            {
                self.changes.tell(Changed {
                    project_key: w.project_key.clone(),
                    simple_name: w.simple_name.clone(),
                    id: w.id,
                });
            }
            report.items.push(item);
        }
        if let (Ok(user_key), Some(space)) = (
            &user_key,
            report.items.iter().find_map(|i| i.space.as_ref()),
        ) {
            report.option_label = self
                .space_menu(req.action, space, user_key)
                .await
                .label(&req.option)
                .map(str::to_owned);
            report.opposite_menu = Some(
                self.space_menu(req.action.opposite(), space, user_key)
                    .await,
            );
        }
        report
    }

    /// The options of `action` in a space: its own 终止原因 options, or the documented ones.
    async fn space_menu(&self, action: Action, space: &Space, user_key: &str) -> ReasonMenu {
        if action == Action::Restore {
            return ReasonMenu::defaults(action);
        }
        match self.project.abort_reasons(space, user_key).await {
            Some(choices) => ReasonMenu::configured(action, choices.to_vec()),
            None => ReasonMenu::defaults(action),
        }
    }

    /// The options a command on `refs` offers and accepts: those of the refs' space (only the
    /// common ones when they span several). A space that cannot be resolved adds nothing; its
    /// refs get their own answer when the command runs.
    pub async fn reason_menu(
        &self,
        action: Action,
        refs: &[WorkItemRef],
        chat_id: Option<&str>,
        user_key: &Result<String, Outcome>,
    ) -> ReasonMenu {
        if action == Action::Restore {
            return ReasonMenu::defaults(action);
        }
        let Ok(user_key) = user_key else {
            return ReasonMenu::defaults(action);
        };
        let bound = self.binding(chat_id).await;
        let mut keys: Vec<String> = Vec::new();
        for r in refs {
            if let Some(k) = self.space_key(r, bound.as_deref()).await
                && !keys.contains(&k)
            {
                keys.push(k);
            }
        }
        let mut menu: Option<ReasonMenu> = None;
        for key in keys {
            let Ok(Some(space)) = self.project.space(&key, user_key).await else {
                continue;
            };
            let this = self.space_menu(action, &space, user_key).await;
            menu = Some(match menu {
                None => this,
                Some(m) => m.intersect(&this),
            });
        }
        // Spaces with nothing in common: each item's PUT is judged by its own space.
        menu.filter(|m| !m.choices.is_empty())
            .unwrap_or_else(|| ReasonMenu::defaults(action))
    }

    /// The action a picker offers for these items: the one asked for, unless every item found
    /// already is in that state (a picker for aborted items offers Restore, and vice versa).
    pub fn offered_action(action: Action, lookups: &[Result<Found, ItemReport>]) -> Action {
        let mut found = lookups.iter().filter_map(|l| l.as_ref().ok()).peekable();
        let target = action == Action::Abort;
        if found.peek().is_some() && found.all(|f| f.item.is_aborted == Some(target)) {
            action.opposite()
        } else {
            action
        }
    }

    /// Looks up every ref as the actor, changing nothing: what a picker card shows.
    pub async fn lookup(
        &self,
        refs: &[WorkItemRef],
        chat_id: Option<&str>,
        user_key: &Result<String, Outcome>,
    ) -> Vec<Result<Found, ItemReport>> {
        let bound = self.binding(chat_id).await;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            out.push(match user_key {
                Ok(user_key) => {
                    self.locate(r, bound.as_deref(), user_key, Freshness::Fresh)
                        .await
                }
                Err(outcome) => Err(ItemReport::failed(r, None, None, outcome.clone())),
            });
        }
        out
    }

    /// The names of `refs` as the sender can see them (None where their lookup found nothing),
    /// for a batch confirmation: looked up as the sender, the details kept for a while per
    /// person, so the confirmer's own PUTs then need no second lookup when it is the same person.
    pub async fn names(
        &self,
        refs: &[WorkItemRef],
        chat_id: Option<&str>,
        user_key: &Result<String, Outcome>,
    ) -> Vec<Option<String>> {
        let Ok(user_key) = user_key else {
            return vec![None; refs.len()];
        };
        let bound = self.binding(chat_id).await;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let found = self
                .locate(r, bound.as_deref(), user_key, Freshness::Remembered)
                .await;
            out.push(found.ok().map(|f| f.item.name));
        }
        out
    }

    /// The refs with the space each would use filled in (from the chat binding or the
    /// default), so that a card made now acts on the same space whichever chat it is clicked in.
    pub async fn with_spaces(
        &self,
        refs: &[WorkItemRef],
        chat_id: Option<&str>,
    ) -> Vec<WorkItemRef> {
        let bound = self.binding(chat_id).await;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            out.push(WorkItemRef {
                space: self.space_key(r, bound.as_deref()).await,
                ..r.clone()
            });
        }
        out
    }

    /// Finds the space and the item a ref names, as `user_key`.
    async fn locate(
        &self,
        r: &WorkItemRef,
        bound: Option<&str>,
        user_key: &str,
        freshness: Freshness,
    ) -> Result<Found, ItemReport> {
        let Some(space_key) = self.space_key(r, bound).await else {
            return Err(ItemReport::failed(r, None, None, Outcome::NoSpace));
        };
        let space = match self.project.space(&space_key, user_key).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(ItemReport::failed(
                    r,
                    Some(space_key),
                    None,
                    Outcome::UnknownSpace,
                ));
            }
            Err(e) => {
                let outcome = Outcome::from_error(&e, Stage::Space);
                return Err(ItemReport::failed(r, Some(space_key), None, outcome));
            }
        };
        let item = match self
            .project
            .find_item(&space, r.type_key.as_deref(), r.id, user_key, freshness)
            .await
        {
            Ok(Some(item)) => item,
            Ok(None) => {
                return Err(ItemReport::failed(
                    r,
                    Some(space_key),
                    Some(space),
                    Outcome::NotFound,
                ));
            }
            Err(e) => {
                let outcome = Outcome::from_error(&e, Stage::Item);
                return Err(ItemReport::failed(r, Some(space_key), Some(space), outcome));
            }
        };
        Ok(Found {
            item_ref: r.clone(),
            space_key,
            space,
            item,
        })
    }

    async fn act_one(
        &self,
        req: &ActRequest,
        r: &WorkItemRef,
        bound: Option<&str>,
        user_key: &str,
    ) -> ItemReport {
        // The result card shows no state of its own: the PUT's answer says what happened.
        let found = match self.locate(r, bound, user_key, Freshness::Remembered).await {
            Ok(found) => found,
            Err(report) => return report,
        };
        let Found {
            space_key,
            space,
            item,
            ..
        } = found;
        let mut report = ItemReport {
            item_ref: r.clone(),
            space_key: Some(space_key),
            space: Some(space.clone()),
            item: Some(item.clone()),
            outcome: Outcome::Done,
            code: None,
        };
        if req.option.needs_reason() && req.reason.trim().is_empty() {
            report.outcome = Outcome::ReasonMissing;
            return report;
        }
        let idem = idem_uuid(&req.origin, &space.project_key, item.id, req.action);
        // Recorded before sending: after a crash, the retry knows its first PUT may have landed.
        let first_try = match self
            .store
            .record_put(idem.clone(), self.clock.now_secs())
            .await
        {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(error = %e, "recording the PUT failed; not sending it");
                report.outcome = Outcome::Busy("store unavailable".into());
                return report;
            }
        };
        let answer = self
            .project
            .abort(
                &item,
                req.action,
                &req.option,
                req.reason.trim(),
                user_key,
                &idem,
            )
            .await;
        report.code = match &answer.result {
            Ok(()) => Some(0),
            Err(e) => e.code(),
        };
        report.outcome = match put_outcome(&answer, req.action, first_try) {
            Some(outcome) => outcome,
            // Sent, but nobody can say whether it landed: say what the item is now.
            None => match self.project.read_aborted(&item, user_key).await {
                Ok(state) => Outcome::Unconfirmed(state),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the item back after a lost answer failed");
                    Outcome::Unconfirmed(None)
                }
            },
        };
        report
    }

    /// `/bind`: checks the space exists for this user, then stores it for the chat.
    pub async fn bind(&self, chat_id: &str, space_key: &str, actor: &UserIds) -> BindResult {
        let user_key = self.user_key(actor).await?;
        let space = match self.project.space(space_key, &user_key).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Outcome::UnknownSpace),
            Err(e) => return Err(Outcome::from_error(&e, Stage::Space)),
        };
        let by = actor.open_id.clone().unwrap_or_default();
        if let Err(e) = self
            .store
            .bind(
                chat_id.to_owned(),
                space.project_key.clone(),
                by,
                self.clock.now_secs(),
            )
            .await
        {
            tracing::error!(error = %e, "storing the binding failed");
            return Err(Outcome::Busy("store unavailable".into()));
        }
        Ok(space)
    }
}

/// What the PUT's answer means; None when nobody can say whether it was applied (then the
/// item is read back). A PUT whose answer was lost (an earlier try of this command, or of an
/// earlier attempt at it after a crash or a redelivery, may have landed) is `done` when the
/// server says the item is already in the target state (20007 / 20008) or that it already took
/// a PUT with this very X-IDEM-UUID (10430, `protocol/feishu-project.md` §2.4).
fn put_outcome(answer: &PutAnswer, action: Action, first_try: bool) -> Option<Outcome> {
    let Err(e) = &answer.result else {
        return Some(Outcome::Done);
    };
    let ours_landed = !first_try || answer.unanswered;
    match (Outcome::from_error(e, Stage::Item), action) {
        (Outcome::AlreadyAborted, Action::Abort) | (Outcome::AlreadyRestored, Action::Restore)
            if ours_landed =>
        {
            Some(Outcome::Done)
        }
        _ if ours_landed && e.code() == Some(10430) => Some(Outcome::Done),
        // Ours may have landed, and no try since said so.
        (Outcome::Busy(_), _) if ours_landed => None,
        // The last answer itself says nothing of what was done (unreadable, yet a success).
        _ if e.may_have_landed() => None,
        // 10430 on a first, answered try: what a duplicate returns is unconfirmed
        // (`protocol/feishu-project.md` §2.4), so the item is read rather than guessed.
        _ if e.code() == Some(10430) => None,
        (outcome, _) => Some(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = idem_uuid("om_1", "p", 1, Action::Abort);
        assert_eq!(a, idem_uuid("om_1", "p", 1, Action::Abort));
        assert_ne!(a, idem_uuid("om_1", "p", 1, Action::Restore));
        assert_ne!(a, idem_uuid("om_1", "p", 2, Action::Abort));
        assert_ne!(a, idem_uuid("om_2", "p", 1, Action::Abort));
        assert!(reply_uuid("om_1").len() <= 50);
    }

    #[test]
    fn a_put_whose_answer_was_lost_is_done() {
        let api = |code| ProjectError::Api {
            code,
            msg: String::new(),
            status: 400,
        };
        let answer = |result, unanswered| PutAnswer { result, unanswered };
        // Inside one command's retries: an earlier try timed out.
        for code in [10430, 20007] {
            assert_eq!(
                put_outcome(&answer(Err(api(code)), true), Action::Abort, true),
                Some(Outcome::Done),
                "{code}"
            );
        }
        // Across attempts (crash, redelivery): the PUT was recorded before.
        for (code, action) in [
            (10430, Action::Abort),
            (20007, Action::Abort),
            (20008, Action::Restore),
        ] {
            assert_eq!(
                put_outcome(&answer(Err(api(code)), false), action, false),
                Some(Outcome::Done),
                "{code}"
            );
        }
        // A first, answered try: the item really was in that state already.
        assert_eq!(
            put_outcome(&answer(Err(api(20007)), false), Action::Abort, true),
            Some(Outcome::AlreadyAborted)
        );
        assert_eq!(
            put_outcome(&answer(Err(api(20008)), true), Action::Abort, true),
            Some(Outcome::AlreadyRestored),
            "the opposite state is not ours"
        );
        // An unreadable success says nothing of what was done: read back, not an error.
        assert_eq!(
            put_outcome(
                &answer(Err(ProjectError::Malformed { status: 200 }), true),
                Action::Abort,
                true
            ),
            None
        );
        // Never answered: neither done nor "nothing changed", but read back.
        assert_eq!(
            put_outcome(
                &answer(Err(ProjectError::Timeout), true),
                Action::Abort,
                true
            ),
            None
        );
        // 10430 on a first, answered try: read back too.
        assert_eq!(
            put_outcome(&answer(Err(api(10430)), false), Action::Abort, true),
            None
        );
        assert!(matches!(
            put_outcome(&answer(Err(api(10429)), false), Action::Abort, true),
            Some(Outcome::Busy(_))
        ));
    }

    #[test]
    fn error_codes_map_to_outcomes() {
        let api = |code| ProjectError::Api {
            code,
            msg: String::new(),
            status: 400,
        };
        let cases = [
            (20007, Outcome::AlreadyAborted),
            (20008, Outcome::AlreadyRestored),
            (30005, Outcome::NotFound),
            (20014, Outcome::NotFound),
            (20056, Outcome::StateFlow),
            (20090, Outcome::Intercepted),
            (20009, Outcome::ReasonMissing),
            (10001, Outcome::NoPermission),
            (10404, Outcome::NoPermission),
            (10301, Outcome::NoPermission),
            (30006, Outcome::NotAUser),
        ];
        for (code, outcome) in cases {
            assert_eq!(
                Outcome::from_error(&api(code), Stage::Item),
                outcome,
                "{code}"
            );
        }
        assert_eq!(
            Outcome::from_error(&api(10301), Stage::Space),
            Outcome::UnknownSpace
        );
        assert!(matches!(
            Outcome::from_error(&api(10429), Stage::Item),
            Outcome::Busy(_)
        ));
        assert!(matches!(
            Outcome::from_error(&ProjectError::Timeout, Stage::Item),
            Outcome::Busy(_)
        ));
        assert!(matches!(
            Outcome::from_error(&api(12345), Stage::Item),
            Outcome::Unexpected(_)
        ));
    }
}

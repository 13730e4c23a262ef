//! What a card click does: check the button value, claim the card, run the action through
//! the same [`Service`] as a typed command (as the person who clicked), and answer within
//! Lark's 3 seconds.
//!
//! The order matters. The click is already stored under its dedup key by the route. Then:
//! the value's HMAC and age are checked (a forged, unknown or expired value changes nothing);
//! the form is checked (`other` needs a reason) and the limits (items, reason length, the
//! clicker's rate) before anything is stored, so the clicker can fix it and click again; the
//! clicker's Feishu Project identity is looked up; only then is the card's one action claimed
//! durably under the card's nonce, so a double click, a redelivery or a second person gets a
//! toast saying who already acted. A failure that belongs to the clicker (not a user, no
//! permission) gives the claim back and answers that person alone: the shared card stays as
//! it was, usable by the others. The work runs under a 2.5 s budget; 0.5 s before its end
//! the click is first stored durably as an inbox item of kind `click` (leased to this
//! process, renewed and handed back by the worker's [`Queue`]), and only then does the
//! clicker hear "working on it". The work goes on; its result is stored in the outbox ([`crate::outbox`]) in the same
//! write that finishes the item, and the outbox delivers it with the delayed-update API while
//! the click's token is valid, or a PATCH. If this process stops or dies first, whoever
//! claims the item next resumes it ([`Interact::resume`]): the card's claim is still held by
//! that very click and unfinished, so it acts again (the same `X-IDEM-UUID`: Feishu Project
//! changes the item once) and delivers the result. A card is never left "in progress".

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::audit::{self, Origin, Source};
use crate::card_value::{ButtonValue, CardStamp, Kind, Signer};
use crate::cards::Vars;
use crate::domain::ReasonOption;
use crate::lark::card_action::{CallbackAnswer, CallbackForm, CardClick, Toast};
use crate::lark::message::UserIds;
use crate::outbox::{CARD_TOKEN_VALID, Delivery, Outbox};
use crate::service::{ActReport, ActRequest, Outcome, Service, reply_uuid};
use crate::store::{AuditRecord, CardClaim, Claim, ClaimRequest, Finish};
use crate::views;
use crate::worker::Queue;

/// JSON 2.0 cards can be used for 14 days after they were sent.
pub const INTERACTION_WINDOW_SECS: i64 = 14 * 24 * 3600;
/// Lark waits 3 s for an answer; this leaves room for the network.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(2500);
/// An unfinished claim older than this belongs to a click whose process died.
const STALE_CLAIM_SECS: i64 = 120;
/// What the budget keeps for storing a click that outlives it, before the answer goes out.
const HOLD_ROOM: Duration = Duration::from_millis(500);
/// The pause before a slow click whose store write failed is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// The delayed update must come after Lark has the callback's answer; the answer leaves as
/// soon as the handler returns, so waiting this long after it is enough.
const AFTER_ANSWER: Duration = Duration::from_millis(300);

pub struct Interact {
    pub service: Arc<Service>,
    pub signer: Arc<Signer>,
    /// How long a click may work before the answer goes out without the result.
    pub budget: Duration,
    /// Where a result that outlives the answer goes.
    pub outbox: Outbox,
    /// Holds the lease of a click that outlives its answer.
    pub queue: Queue,
}

/// A click that outlived its answer, as stored in the inbox (kind `click`): everything needed
/// to run it again after a restart. The value is stored as sent and verified again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldClick {
    click_id: String,
    operator: UserIds,
    card_token: Option<String>,
    open_message_id: Option<String>,
    open_chat_id: Option<String>,
    value: Value,
    option: Option<String>,
    input_value: Option<String>,
    form_value: Map<String, Value>,
    /// Until when (Unix ms) the delayed-update token is valid.
    token_until: i64,
    /// Set when the click came from a link preview.
    #[serde(default)]
    preview_token: Option<String>,
}

impl HeldClick {
    fn of(click: &CardClick, token_until: i64) -> Self {
        Self {
            click_id: click.click_id.clone(),
            operator: click.operator.clone(),
            card_token: click.card_token.clone(),
            open_message_id: click.open_message_id.clone(),
            open_chat_id: click.open_chat_id.clone(),
            value: click.value.clone(),
            option: click.option.clone(),
            input_value: click.input_value.clone(),
            form_value: click.form_value.clone(),
            token_until,
            preview_token: click.preview_token.clone(),
        }
    }

    fn click(&self) -> CardClick {
        CardClick {
            form: CallbackForm::V2,
            click_id: self.click_id.clone(),
            operator: self.operator.clone(),
            card_token: self.card_token.clone(),
            open_message_id: self.open_message_id.clone(),
            open_chat_id: self.open_chat_id.clone(),
            value: self.value.clone(),
            option: self.option.clone(),
            input_value: self.input_value.clone(),
            form_value: self.form_value.clone(),
            preview_token: self.preview_token.clone(),
        }
    }
}

/// How a Go click ended.
enum Step {
    /// Acted: the toast and the card that shows the result (stored with the claim).
    Acted(Toast, Value),
    /// Resuming a click whose result was stored before its process stopped: that card.
    Shown(Value),
    /// Failed for the clicker alone; the card's action was not taken (or was given back).
    Personal(Outcome),
    /// Someone (or this very click, delivered before) already took the card's action.
    Held(CardClaim),
    /// The store failed; nothing was done.
    Failed,
}

impl Interact {
    /// Answers one click (already stored under its dedup key). A click on a link preview's
    /// card gets the toast only: the message is the person's who posted the link, so the card
    /// is never PATCHed; the preview shows the result when it is refreshed, as every item the
    /// bot changes is (`protocol/lark.md` §10.5).
    pub async fn handle(&self, click: &CardClick) -> CallbackAnswer {
        let mut answer = self.answer(click).await;
        if click.preview_token.is_some() {
            answer.card = None;
        }
        answer
    }

    async fn answer(&self, click: &CardClick) -> CallbackAnswer {
        let started = Instant::now();
        let now = self.service.clock.now_secs();
        let value = match self.signer.verify(&click.value) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "refused a card click with an invalid value");
                return toast_only("error", "toast_invalid");
            }
        };
        if now.saturating_sub(value.issued_at) > INTERACTION_WINDOW_SECS {
            return toast_only("warning", "toast_expired");
        }
        if value.kind == Kind::Cancel {
            return self.cancel(click, &value, started).await;
        }
        let (option, reason) = match choose(&value, click) {
            Ok(choice) => choice,
            Err(refusal) => return toast_only("warning", refusal),
        };
        let admitted = self
            .service
            .admit(&click.operator, value.items.len(), &reason);
        if let Err(refusal) = admitted {
            return CallbackAnswer {
                toast: Some(views::toast_refused(&refusal)),
                card: None,
            };
        }
        crate::chat::record_items(&value.items);
        self.go(click, value, option, reason, started).await
    }

    /// Cancel: claims the card and closes it; nothing reaches Feishu Project.
    async fn cancel(
        &self,
        click: &CardClick,
        value: &ButtonValue,
        started: Instant,
    ) -> CallbackAnswer {
        let claim = claim_request(click, value, self.service.clock.now_secs());
        match self.service.store.claim_card(claim).await {
            Ok(Claim::Granted) => {}
            Ok(Claim::Held(held)) => return self.already(click, &held, started).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim a card; nothing done");
                return toast_only("error", "toast_error");
            }
        }
        let clicker = click.operator.open_id.as_deref();
        let card = views::cancelled(value.action, &value.items, clicker);
        self.finish(&value.nonce, &card).await;
        CallbackAnswer {
            toast: Some(views::toast("info", "toast_cancelled", &Vars::new())),
            card: Some(card),
        }
    }

    /// Runs the action; answers with the result, or with "working on it" past the budget.
    async fn go(
        &self,
        click: &CardClick,
        value: ButtonValue,
        option: ReasonOption,
        reason: String,
        started: Instant,
    ) -> CallbackAnswer {
        let req = act_request(click, &value, option, reason);
        let claim = claim_request(click, &value, self.service.clock.now_secs());
        let mut work = tokio::spawn(
            work(self.service.clone(), self.signer.clone(), req, claim, false).in_current_span(),
        );
        // Past the budget (less the room to store the click durably) the answer goes out.
        let left = self
            .budget
            .saturating_sub(HOLD_ROOM)
            .saturating_sub(started.elapsed());
        match tokio::time::timeout(left, &mut work).await {
            Ok(Ok(Step::Acted(toast, card))) => CallbackAnswer {
                toast: Some(toast),
                card: Some(card),
            },
            Ok(Ok(Step::Shown(card))) => CallbackAnswer {
                toast: None,
                card: Some(card),
            },
            Ok(Ok(Step::Personal(outcome))) => CallbackAnswer {
                toast: Some(views::toast_personal(&outcome)),
                card: None,
            },
            Ok(Ok(Step::Held(held))) => self.already(click, &held, started).await,
            Ok(Ok(Step::Failed)) => toast_only("error", "toast_error"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a card action failed");
                toast_only("error", "toast_error")
            }
            Err(_) => {
                // Durable before the clicker hears anything: from here a stop or a crash
                // cannot leave the card "in progress" (the next holder resumes it).
                let held = self.hold(click).await;
                let answered = Instant::now();
                let late = Late {
                    service: self.service.clone(),
                    outbox: self.outbox.clone(),
                    queue: self.queue.clone(),
                    nonce: value.nonce.clone(),
                    action: value.action,
                    preview: click.preview_token.is_some(),
                };
                let click = click.clone();
                tokio::spawn(
                    async move {
                        let step = match work.await {
                            Ok(step) => step,
                            Err(e) => {
                                tracing::error!(error = %e, "a slow card action failed");
                                Step::Failed
                            }
                        };
                        if matches!(step, Step::Acted(..)) {
                            // The delayed update must come after Lark has the answer (§3.4).
                            tokio::time::sleep_until(answered + AFTER_ANSWER).await;
                        }
                        match held {
                            Some((id, click)) => late.settle(id, &click, step).await,
                            None => {
                                late.settle_unheld(click_token_until(&late.service), click, step)
                                    .await
                            }
                        }
                    }
                    .in_current_span(),
                );
                toast_only("info", "toast_working")
            }
        }
    }

    /// Stores a click that outlives its answer as a leased inbox item, held here; `None`
    /// when it could not be stored (logged: its result then goes to the outbox alone).
    async fn hold(&self, click: &CardClick) -> Option<(i64, HeldClick)> {
        let held = HeldClick::of(click, click_token_until(&self.service));
        let payload = match serde_json::to_string(&held) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot write a slow click down");
                return None;
            }
        };
        let stored = self
            .service
            .store
            .hold_click(
                self.queue.owner(),
                click.click_id.clone(),
                payload,
                self.service.clock.now_secs(),
                self.queue.lease(),
            )
            .await;
        match stored {
            Ok(Some(id)) => {
                if !self.queue.hold_click(id) {
                    // Too many held here: the lease is renewed by nobody, so another claim
                    // takes it over once it expires, and acting twice is harmless.
                    tracing::warn!(
                        inbox_id = id,
                        "too many slow clicks held; this one is left to its lease"
                    );
                }
                Some((id, held))
            }
            Ok(None) => {
                tracing::warn!("a slow click was stored before; its first holder finishes it");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a slow click; if this process stops before it ends, the card keeps its buttons");
                None
            }
        }
    }

    /// Runs a click that outlived its answer again, after its holder stopped (inbox item `id`,
    /// claimed by the worker): acts as the click would have (the same idempotency key), then
    /// finishes the item with the result to deliver.
    pub async fn resume(&self, id: i64, payload: &str) {
        let mut late = Late {
            service: self.service.clone(),
            outbox: self.outbox.clone(),
            queue: self.queue.clone(),
            nonce: String::new(),
            action: crate::domain::Action::Abort,
            preview: false,
        };
        let Ok(held) = serde_json::from_str::<HeldClick>(payload) else {
            tracing::error!(inbox_id = id, "a stored click is not readable; dropping it");
            late.end(id, Finish::Failed).await;
            return;
        };
        late.preview = held.preview_token.is_some();
        let click = held.click();
        let Ok(value) = self.signer.verify(&click.value) else {
            tracing::error!(
                inbox_id = id,
                "a stored click's value no longer verifies; dropping it"
            );
            late.end(id, Finish::Failed).await;
            return;
        };
        let Ok((option, reason)) = choose(&value, &click) else {
            tracing::error!(
                inbox_id = id,
                "a stored click has no usable choice; dropping it"
            );
            late.end(id, Finish::Failed).await;
            return;
        };
        tracing::info!(
            inbox_id = id,
            "resuming a card click its first holder did not finish"
        );
        let late = Late {
            nonce: value.nonce.clone(),
            action: value.action,
            ..late
        };
        let req = act_request(&click, &value, option, reason);
        let claim = claim_request(&click, &value, self.service.clock.now_secs());
        let step = work(self.service.clone(), self.signer.clone(), req, claim, true).await;
        late.settle(id, &held, step).await;
    }

    /// The answer when the card was used before: by this very click (a redelivery: the same
    /// answer again), or by someone else (who, and the card as it is now). The name of who
    /// acted is looked up only within what is left of the budget; past it the toast says
    /// "someone else".
    async fn already(
        &self,
        click: &CardClick,
        held: &CardClaim,
        started: Instant,
    ) -> CallbackAnswer {
        let card = held
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok());
        if held.click_id == click.click_id {
            return match card {
                Some(card) => CallbackAnswer {
                    toast: None,
                    card: Some(card),
                },
                None => toast_only("info", "toast_in_progress"),
            };
        }
        let by_you = click.operator.open_id.as_deref() == Some(held.by_open_id.as_str());
        let name = if by_you || held.by_open_id.is_empty() {
            None
        } else {
            let left = self.budget.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.service.lark.contact(&held.by_open_id)).await {
                Ok(Ok(contact)) => contact.name,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot name who used the card");
                    None
                }
                Err(_) => None,
            }
        };
        CallbackAnswer {
            toast: Some(views::toast_already(
                held.kind == Kind::Cancel.key(),
                name.as_deref(),
                by_you,
            )),
            card,
        }
    }

    /// Stores the card a Cancel leaves; it decided nothing for any item, so it has no audit line.
    async fn finish(&self, nonce: &str, card: &Value) {
        if let Err(e) = self
            .service
            .store
            .finish_card(nonce.to_owned(), card.to_string(), Vec::new())
            .await
        {
            tracing::error!(error = %e, "cannot store a card's result");
        }
    }
}

/// The audit lines of a click's report: the click's event_id names them (a legacy click, which
/// has none, by the id the bot derives from it).
async fn audit_lines(
    service: &Service,
    report: &ActReport,
    req: &ActRequest,
    click_id: &str,
) -> Vec<AuditRecord> {
    let source_id = click_id.strip_prefix("click:").unwrap_or(click_id);
    let actor_name = match &req.actor.open_id {
        Some(open_id) => service.lark.known_name(open_id).await,
        None => None,
    };
    audit::lines(
        report,
        &Origin {
            source: Source::Click,
            source_id,
            chat_id: req.chat_id.as_deref(),
            actor_name: actor_name.as_deref(),
            at_ms: service.clock.now_millis(),
        },
    )
}

/// Until when (Unix ms) a click's delayed-update token is valid, counted from now.
fn click_token_until(service: &Service) -> i64 {
    service
        .clock
        .now_millis()
        .saturating_add(i64::try_from(CARD_TOKEN_VALID.as_millis()).unwrap_or(i64::MAX))
}

/// The request a Go click makes of Feishu Project.
fn act_request(
    click: &CardClick,
    value: &ButtonValue,
    option: ReasonOption,
    reason: String,
) -> ActRequest {
    ActRequest {
        action: value.action,
        option,
        reason,
        refs: value.items.clone(),
        chat_id: click.open_chat_id.clone(),
        // One card acts once, so the card and the clicker (not the click) name the
        // request: a double click can never produce a second X-IDEM-UUID, and a try that
        // Feishu Project refused the clicker does not use up the key of whoever clicks next.
        origin: format!(
            "card:{}:{}",
            value.nonce,
            click.operator.open_id.as_deref().unwrap_or_default()
        ),
        actor: click.operator.clone(),
    }
}

/// A Go click's work: who the clicker is, the card's claim, the action, the result card.
/// `resuming`: this click's own unfinished claim (its process stopped mid-way) lets it act
/// again, and its own finished one is shown as it is.
async fn work(
    service: Arc<Service>,
    signer: Arc<Signer>,
    req: ActRequest,
    claim: ClaimRequest,
    resuming: bool,
) -> Step {
    // Who the clicker is, before the card's one action is taken: someone Feishu
    // Project does not know leaves the card to the others.
    let (nonce, click_id) = (claim.nonce.clone(), claim.click_id.clone());
    let user_key = match service.user_key(&req.actor).await {
        Ok(k) => k,
        Err(outcome) => {
            let report = ActReport::refused(&req, outcome.clone());
            let lines = audit_lines(&service, &report, &req, &click_id).await;
            if let Err(e) = service.store.record_audit(lines).await {
                tracing::error!(error = %e, "cannot record a refused click in the audit trail");
            }
            return Step::Personal(outcome);
        }
    };
    match service.store.claim_card(claim).await {
        Ok(Claim::Granted) => {}
        Ok(Claim::Held(held)) if resuming && held.click_id == click_id => {
            if let Some(card) = held
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
            {
                return Step::Shown(card);
            }
        }
        Ok(Claim::Held(held)) => return Step::Held(held),
        Err(e) => {
            tracing::error!(error = %e, "cannot claim a card; nothing done");
            return Step::Failed;
        }
    }
    let report = service.act_as(&req, Ok(user_key)).await;
    let lines = audit_lines(&service, &report, &req, &click_id).await;
    if let Some(outcome) = personal(&report) {
        // Nothing changed, and only because of who clicked: the card is theirs no more.
        if let Err(e) = service.store.release_card(nonce, click_id).await {
            tracing::error!(error = %e, "cannot give a card's action back");
        }
        if let Err(e) = service.store.record_audit(lines).await {
            tracing::error!(error = %e, "cannot record a refused click in the audit trail");
        }
        return Step::Personal(outcome);
    }
    let stamp = CardStamp::new(&signer, service.clock.now_secs());
    let card = views::act_report(&report, &service.web_url, &stamp);
    let stored = service
        .store
        .finish_card(nonce, card.to_string(), lines)
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot store a card's result");
    }
    Step::Acted(views::toast_result(&report), card)
}

/// What ends a click past its answer: its result goes to the outbox, in the write that
/// finishes its inbox item.
struct Late {
    service: Arc<Service>,
    outbox: Outbox,
    queue: Queue,
    nonce: String,
    action: crate::domain::Action,
    /// The click came from a link preview: its card is refreshed with the item's change
    /// (`protocol/lark.md` §10.5), never updated.
    preview: bool,
}

impl Late {
    /// The card to deliver for `step`, under its outbox key, if any.
    fn delivery(&self, held: &HeldClick, step: Step) -> Result<Option<(String, Delivery)>, ()> {
        Ok(match step {
            Step::Acted(..) | Step::Shown(_) if self.preview => None,
            Step::Acted(_, card) | Step::Shown(card) => Some((
                format!("click:{}", self.nonce),
                Delivery::Update {
                    token: held.card_token.clone(),
                    token_until: held.token_until,
                    message_id: held.open_message_id.clone(),
                    card,
                },
            )),
            // The clicker heard only "working on it": tell them alone, in a direct message;
            // the shared card was never touched.
            Step::Personal(outcome) => match held.operator.open_id.clone() {
                Some(open_id) => {
                    let card = views::outcome_only(&outcome, self.action, Some(&open_id));
                    let send = Delivery::Send {
                        receive_id_type: "open_id".into(),
                        uuid: reply_uuid(&format!("personal|{}", held.click_id)),
                        receive_id: open_id,
                        card,
                    };
                    Some((format!("personal:{}", held.click_id), send))
                }
                None => {
                    tracing::warn!("a slow click failed for a clicker with no open_id");
                    None
                }
            },
            // Someone else's click took the card; its own answer shows the result.
            Step::Held(_) => None,
            Step::Failed => return Err(()),
        })
    }

    /// Finishes held item `id` with the result of `step`; a failure of the store leaves it
    /// to be tried again.
    async fn settle(&self, id: i64, held: &HeldClick, step: Step) {
        match self.delivery(held, step) {
            Ok(Some((key, delivery))) => {
                if let Err(e) = self
                    .outbox
                    .finish_with(id, key, &delivery, Vec::new())
                    .await
                {
                    tracing::error!(error = %e, inbox_id = id, "cannot store a click's late result; the click runs again once its lease expires");
                }
                self.queue.done(id);
            }
            Ok(None) => self.end(id, Finish::Done).await,
            Err(()) => {
                match self
                    .service
                    .store
                    .retry_inbox(self.queue.owner(), id, RETRY_PAUSE)
                    .await
                {
                    Ok(_) => tracing::warn!(
                        inbox_id = id,
                        "a slow card action failed; it is tried again"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, inbox_id = id, "a slow card action failed; it runs again once its lease expires")
                    }
                }
                self.queue.done(id);
            }
        }
    }

    /// A click past its answer that could not be stored: its result goes to the outbox alone.
    async fn settle_unheld(&self, token_until: i64, click: CardClick, step: Step) {
        let held = HeldClick::of(&click, token_until);
        match self.delivery(&held, step) {
            Ok(Some((key, delivery))) => {
                if let Err(e) = self.outbox.add(key, &delivery).await {
                    tracing::error!(error = %e, "cannot store a click's late result; the card stays as it was");
                }
            }
            Ok(None) => {}
            Err(()) => tracing::error!("a slow card action failed; the card stays as it was"),
        }
    }

    async fn end(&self, id: i64, how: Finish) {
        let now = self.service.clock.now_secs();
        if let Err(e) = self.service.store.finish(id, how, now).await {
            tracing::error!(error = %e, inbox_id = id, "cannot finish a stored click; it runs again once its lease expires");
        }
        self.queue.done(id);
    }
}

/// The option and reason a Go click acts with: preset in the value (Retry, batch Confirm) or
/// chosen on the card's form. Err is the toast that says what is missing.
fn choose(value: &ButtonValue, click: &CardClick) -> Result<(ReasonOption, String), &'static str> {
    let option = match &value.option {
        Some(o) => o.clone(),
        None => {
            let picked = click.field("option").or(click.option.as_deref());
            let Some(picked) = picked.filter(|p| !p.is_empty()) else {
                return Err("toast_pick_option");
            };
            // The select offers the action's options (a space's own abort options among them);
            // anything else was not a choice. Feishu Project judges a space's values.
            ReasonOption::parse_key(picked)
                .filter(|o| value.action.accepts(o))
                .ok_or("toast_pick_option")?
        }
    };
    let reason = match &value.reason {
        Some(r) => r.clone(),
        None => click
            .field("reason")
            .or(click.input_value.as_deref())
            .unwrap_or_default()
            .to_owned(),
    };
    if option.needs_reason() && reason.trim().is_empty() {
        return Err("toast_reason_needed");
    }
    Ok((option, reason.trim().to_owned()))
}

/// The claim a click makes on its card.
fn claim_request(click: &CardClick, value: &ButtonValue, now: i64) -> ClaimRequest {
    ClaimRequest {
        nonce: value.nonce.clone(),
        click_id: click.click_id.clone(),
        kind: value.kind.key().to_owned(),
        by_open_id: click.operator.open_id.clone().unwrap_or_default(),
        now,
        expires_at: value.issued_at.saturating_add(INTERACTION_WINDOW_SECS),
        stale_before: now - STALE_CLAIM_SECS,
    }
}

/// The outcome when every item failed for a reason that belongs to the clicker.
fn personal(report: &ActReport) -> Option<Outcome> {
    let first = report.items.first()?;
    report
        .items
        .iter()
        .all(|i| i.outcome.is_personal())
        .then(|| first.outcome.clone())
}

fn toast_only(kind: &'static str, key: &str) -> CallbackAnswer {
    CallbackAnswer {
        toast: Some(views::toast(kind, key, &Vars::new())),
        card: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Action;
    use crate::lark::card_action::CallbackForm;
    use crate::lark::message::UserIds;
    use serde_json::{Map, json};

    fn click(form: Value) -> CardClick {
        CardClick {
            form: CallbackForm::V2,
            click_id: "click:e".into(),
            operator: UserIds::default(),
            card_token: None,
            open_message_id: None,
            open_chat_id: None,
            value: Value::Null,
            option: None,
            input_value: None,
            form_value: form.as_object().cloned().unwrap_or_else(Map::new),
            preview_token: None,
        }
    }

    fn value(action: Action, option: Option<ReasonOption>) -> ButtonValue {
        ButtonValue {
            kind: Kind::Go,
            action,
            option,
            reason: None,
            items: Vec::new(),
            nonce: "n".into(),
            issued_at: 0,
        }
    }

    #[test]
    fn the_form_decides_option_and_reason() {
        let v = value(Action::Abort, None);
        assert_eq!(
            choose(&v, &click(json!({"option": "repeat", "reason": " dup "}))),
            Ok((ReasonOption::REPEAT, "dup".into()))
        );
        assert_eq!(choose(&v, &click(json!({}))), Err("toast_pick_option"));
        assert_eq!(
            choose(&v, &click(json!({"option": "restart"}))),
            Err("toast_pick_option"),
            "a restore option on an abort card"
        );
        assert_eq!(
            choose(&v, &click(json!({"option": "other", "reason": "  "}))),
            Err("toast_reason_needed")
        );
        let preset = ButtonValue {
            reason: Some("why".into()),
            ..value(Action::Restore, Some(ReasonOption::ROLLBACK))
        };
        assert_eq!(
            choose(&preset, &click(json!({"option": "restart"}))),
            Ok((ReasonOption::ROLLBACK, "why".into())),
            "a preset option is not overridden by the form"
        );
    }
}

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
//! it was, usable by the others. The work runs under a 2.5 s budget; past it the clicker
//! hears "working on it" and the result is stored in the outbox ([`crate::outbox`]), which
//! delivers it with the delayed-update API while the click's token is valid, or a PATCH, and
//! keeps trying across a stop or a crash until it lands.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::card_value::{ButtonValue, CardStamp, Kind, Signer};
use crate::cards::Vars;
use crate::domain::ReasonOption;
use crate::lark::card_action::{CallbackAnswer, CardClick, Toast};
use crate::outbox::{CARD_TOKEN_VALID, Delivery, Outbox};
use crate::service::{ActReport, ActRequest, Outcome, Service, reply_uuid};
use crate::store::{CardClaim, Claim, ClaimRequest};
use crate::views;

/// JSON 2.0 cards can be used for 14 days after they were sent.
pub const INTERACTION_WINDOW_SECS: i64 = 14 * 24 * 3600;
/// Lark waits 3 s for an answer; this leaves room for the network.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(2500);
/// An unfinished claim older than this belongs to a click whose process died.
const STALE_CLAIM_SECS: i64 = 120;
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
}

/// How a Go click ended.
enum Step {
    /// Acted: the toast and the card that shows the result (stored with the claim).
    Acted(Toast, Value),
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
        let req = ActRequest {
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
        };
        let service = self.service.clone();
        let signer = self.signer.clone();
        let claim = claim_request(click, &value, service.clock.now_secs());
        let mut work = tokio::spawn(async move {
            // Who the clicker is, before the card's one action is taken: someone Feishu
            // Project does not know leaves the card to the others.
            let user_key = match service.user_key(&req.actor).await {
                Ok(k) => k,
                Err(outcome) => return Step::Personal(outcome),
            };
            let (nonce, click_id) = (claim.nonce.clone(), claim.click_id.clone());
            match service.store.claim_card(claim).await {
                Ok(Claim::Granted) => {}
                Ok(Claim::Held(held)) => return Step::Held(held),
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a card; nothing done");
                    return Step::Failed;
                }
            }
            let report = service.act_as(&req, Ok(user_key)).await;
            if let Some(outcome) = personal(&report) {
                // Nothing changed, and only because of who clicked: the card is theirs no more.
                if let Err(e) = service.store.release_card(nonce, click_id).await {
                    tracing::error!(error = %e, "cannot give a card's action back");
                }
                return Step::Personal(outcome);
            }
            let stamp = CardStamp::new(&signer, service.clock.now_secs());
            let card = views::act_report(&report, &service.web_url, &stamp);
            if let Err(e) = service.store.finish_card(nonce, card.to_string()).await {
                tracing::error!(error = %e, "cannot store a card's result");
            }
            Step::Acted(views::toast_result(&report), card)
        });
        let left = self.budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, &mut work).await {
            Ok(Ok(Step::Acted(toast, card))) => CallbackAnswer {
                toast: Some(toast),
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
                let answered = Instant::now();
                let outbox = self.outbox.clone();
                let token_until = self.service.clock.now_millis().saturating_add(
                    i64::try_from(CARD_TOKEN_VALID.as_millis()).unwrap_or(i64::MAX),
                );
                let token = click.card_token.clone();
                let message_id = click.open_message_id.clone();
                let clicker = click.operator.open_id.clone();
                let click_id = click.click_id.clone();
                let nonce = value.nonce.clone();
                let action = value.action;
                let preview = click.preview_token.is_some();
                tokio::spawn(async move {
                    let (key, delivery) = match work.await {
                        // A preview is refreshed with the item's change, never updated.
                        Ok(Step::Acted(..)) if preview => return,
                        Ok(Step::Acted(_, card)) => {
                            // The delayed update must come after Lark has the answer (§3.4).
                            tokio::time::sleep_until(answered + AFTER_ANSWER).await;
                            let update = Delivery::Update {
                                token,
                                token_until,
                                message_id,
                                card,
                            };
                            (format!("click:{nonce}"), update)
                        }
                        // The clicker heard only "working on it": tell them alone, in a
                        // direct message; the shared card was never touched.
                        Ok(Step::Personal(outcome)) => {
                            let Some(open_id) = clicker else {
                                tracing::warn!("a slow click failed for a clicker with no open_id");
                                return;
                            };
                            let card = views::outcome_only(&outcome, action, Some(&open_id));
                            let send = Delivery::Send {
                                receive_id_type: "open_id".into(),
                                uuid: reply_uuid(&format!("personal|{click_id}")),
                                receive_id: open_id,
                                card,
                            };
                            (format!("personal:{click_id}"), send)
                        }
                        // Someone else's click took the card; its own answer shows the result.
                        Ok(Step::Held(_)) => return,
                        Ok(Step::Failed) | Err(_) => {
                            tracing::error!("a slow card action failed; the card stays as it was");
                            return;
                        }
                    };
                    if let Err(e) = outbox.add(key, &delivery).await {
                        tracing::error!(error = %e, "cannot store a click's late result; the card stays as it was");
                    }
                });
                toast_only("info", "toast_working")
            }
        }
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

    async fn finish(&self, nonce: &str, card: &Value) {
        if let Err(e) = self
            .service
            .store
            .finish_card(nonce.to_owned(), card.to_string())
            .await
        {
            tracing::error!(error = %e, "cannot store a card's result");
        }
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

//! What the bot does with one chat message: decide whether it is addressed, parse the command,
//! check it against the limits, run it through the service, and make the card that answers it
//! in the same place (thread included). That card is not sent here: it is the [`Delivery`]
//! the worker stores in the outbox with the event's end, together with the audit lines of
//! what the command did. Work that outlasts the budget gets
//! an "in progress" reply at once; the result then replaces that card.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::audit::{self, Origin, Source};
use crate::card_value::{CardStamp, Signer};
use crate::command::{self, ActCommand, Command, OptionChoice};
use crate::domain::{ReasonMenu, ReasonOption};
use crate::lark::client::LarkError;
use crate::lark::message::{ChatType, ReceivedMessage};
use crate::outbox::Delivery;
use crate::service::{ActRequest, Outcome, Service, reply_uuid};
use crate::store::AuditRecord;
use crate::views::{self, BatchRequest};

/// What a message is answered with: the card, and the audit lines of the decisions it made
/// (none for help, a picker or a batch confirmation), stored together.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub delivery: Delivery,
    pub audit: Vec<AuditRecord>,
}

impl Answer {
    fn card_only(delivery: Delivery) -> Answer {
        Answer {
            delivery,
            audit: Vec::new(),
        }
    }
}

pub struct Chat {
    pub service: Arc<Service>,
    /// Signs the values of the buttons on the cards the bot replies with.
    pub signer: Arc<Signer>,
    /// A command with more refs than this asks for confirmation first.
    pub batch_confirm: usize,
    /// How long a command may work before an "in progress" card answers it.
    pub budget: Duration,
}

/// Why a message could not be handled (nothing was done); [`Self::is_retryable`] says
/// whether it is worth another go later.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("could not tell whether the bot was mentioned: {0}")]
    BotInfo(#[source] LarkError),
}

impl HandleError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandleError::BotInfo(e) => e.is_retryable(),
        }
    }
}

impl Chat {
    /// Handles one message: the card that answers it, or None when it was not meant for the
    /// bot.
    pub async fn handle(&self, msg: &ReceivedMessage) -> Result<Option<Answer>, HandleError> {
        let service = &self.service;
        if msg.chat_type == ChatType::Group {
            let bot = service
                .lark
                .bot_open_id()
                .await
                .map_err(HandleError::BotInfo)?;
            if !msg.mentions_open_id(&bot) {
                return Ok(None);
            }
        }
        let actor = &msg.sender;
        let open_id = actor.open_id.as_deref();
        let parsed = msg
            .text
            .as_deref()
            .map(|t| command::parse(t, &service.web_url));
        let metrics = &service.metrics;
        let answer = match parsed {
            None => {
                metrics.command("unparsed", "answered");
                let card = views::help(Some(&command::ParseError::NotACommand));
                Answer::card_only(reply(msg, card))
            }
            Some(Err(e)) => {
                metrics.command("unparsed", "answered");
                Answer::card_only(reply(msg, views::help(Some(&e))))
            }
            Some(Ok(Command::Help)) => {
                metrics.command("help", "answered");
                Answer::card_only(reply(msg, views::help(None)))
            }
            Some(Ok(Command::Bind { space })) => {
                if let Err(refusal) = service.admit(actor, 0, "") {
                    metrics.command("bind", "refused");
                    let card = views::refused(&refusal, open_id);
                    return Ok(Some(Answer::card_only(reply(msg, card))));
                }
                metrics.command("bind", "answered");
                let work = async {
                    let result = service.bind(&msg.chat_id, &space, actor).await;
                    (views::bound(&result, &space, open_id), Vec::new())
                };
                self.answer(msg, work, views::progress_lookup()).await
            }
            Some(Ok(Command::Act(cmd))) => {
                let reason = match &cmd.choice {
                    OptionChoice::Chosen { reason, .. }
                    | OptionChoice::Missing { reason }
                    | OptionChoice::DidYouMean { reason, .. } => reason,
                };
                if let Err(refusal) = service.admit(actor, cmd.refs.len(), reason) {
                    metrics.command(cmd.action.key(), "refused");
                    let card = views::refused(&refusal, open_id);
                    return Ok(Some(Answer::card_only(reply(msg, card))));
                }
                metrics.command(cmd.action.key(), "answered");
                record_items(&cmd.refs);
                // Only a command that acts says it is acting; a picker or a batch confirmation
                // is still looking its items up.
                let progress = match &cmd.choice {
                    OptionChoice::Chosen { .. } if cmd.refs.len() <= self.batch_confirm => {
                        views::progress(cmd.action, &cmd.refs, open_id)
                    }
                    _ => views::progress_lookup(),
                };
                self.answer(msg, self.act(msg, &cmd), progress).await
            }
        };
        Ok(Some(answer))
    }

    /// The card an abort or restore command answers with, and the audit lines of what it did.
    async fn act(&self, msg: &ReceivedMessage, cmd: &ActCommand) -> (Value, Vec<AuditRecord>) {
        let service = &self.service;
        let actor = &msg.sender;
        let web_url = &service.web_url;
        let stamp = CardStamp::new(&self.signer, service.clock.now_secs());
        let chat_id = Some(msg.chat_id.as_str());
        // The sender is looked up once for the whole command.
        let user_key = service.user_key(actor).await;
        // The option word is read against the options of the items' space.
        let menu = service
            .reason_menu(cmd.action, &cmd.refs, chat_id, &user_key)
            .await;
        match &cmd.choice_with(&menu) {
            OptionChoice::Chosen { option, reason } if cmd.refs.len() > self.batch_confirm => {
                let refs = service.with_spaces(&cmd.refs, chat_id).await;
                let names = service.names(&cmd.refs, chat_id, &user_key).await;
                let card = views::confirm_batch(
                    &BatchRequest {
                        action: cmd.action,
                        option: option.clone(),
                        option_label: menu.label(option),
                        reason,
                        refs: &refs,
                        names: &names,
                        actor_open_id: actor.open_id.as_deref(),
                        limit: self.batch_confirm,
                    },
                    &stamp,
                );
                (card, Vec::new())
            }
            OptionChoice::Chosen { option, reason } => {
                let report = service
                    .act_as(
                        &ActRequest {
                            action: cmd.action,
                            option: option.clone(),
                            reason: reason.clone(),
                            refs: cmd.refs.clone(),
                            chat_id: Some(msg.chat_id.clone()),
                            origin: msg.message_id.clone(),
                            actor: actor.clone(),
                        },
                        user_key,
                    )
                    .await;
                let actor_name = match &actor.open_id {
                    Some(open_id) => service.lark.known_name(open_id).await,
                    None => None,
                };
                let audit = audit::lines(
                    &report,
                    &Origin {
                        source: Source::Message,
                        source_id: &msg.message_id,
                        chat_id: Some(&msg.chat_id),
                        actor_name: actor_name.as_deref(),
                        at_ms: service.clock.now_millis(),
                    },
                );
                (views::act_report(&report, web_url, &stamp), audit)
            }
            OptionChoice::Missing { reason } => {
                let ask = Ask {
                    user_key: &user_key,
                    menu,
                    did_you_mean: None,
                    reason,
                };
                (self.picker(msg, cmd, ask, &stamp).await, Vec::new())
            }
            OptionChoice::DidYouMean {
                typed,
                suggestion,
                reason,
            } => {
                let ask = Ask {
                    user_key: &user_key,
                    menu,
                    did_you_mean: Some((typed.as_str(), suggestion)),
                    reason,
                };
                (self.picker(msg, cmd, ask, &stamp).await, Vec::new())
            }
        }
    }

    /// The answer `work` makes. Past the budget an "in progress" card (`progress`) is sent
    /// at once, its id stored before the work goes on, and the answer is a PATCH of it; a
    /// re-run after a crash finds that id and PATCHes the same card, never replying twice.
    async fn answer(
        &self,
        msg: &ReceivedMessage,
        work: impl Future<Output = (Value, Vec<AuditRecord>)>,
        progress: Value,
    ) -> Answer {
        let service = &self.service;
        let earlier = match service.store.reply_of(msg.message_id.clone()).await {
            Ok(earlier) => earlier,
            Err(e) => {
                // Replying is still safe: the reply's uuid makes Lark drop a repeat.
                tracing::error!(error = %e, "cannot read whether this command was answered");
                None
            }
        };
        if let Some(message_id) = earlier {
            let (card, audit) = work.await;
            let delivery = Delivery::Patch { message_id, card };
            return Answer { delivery, audit };
        }
        let mut work = std::pin::pin!(work);
        if let Ok((card, audit)) = tokio::time::timeout(self.budget, &mut work).await {
            let delivery = reply(msg, card);
            return Answer { delivery, audit };
        }
        let in_thread = msg.thread_id.is_some();
        let uuid = reply_uuid(&msg.message_id);
        let sent = service
            .lark
            .reply_card(&msg.chat_id, &msg.message_id, &progress, in_thread, &uuid)
            .await;
        let card_id = match sent {
            Ok(id) => id,
            Err(e) => {
                // The result goes as the reply instead. If this one landed though its answer
                // was lost, Lark names it for the same uuid, and that card is PATCHed.
                tracing::warn!(error = %e, "cannot send the in-progress card; the result replies instead");
                let (card, audit) = work.await;
                let delivery = reply_then_patch(msg, card, true);
                return Answer { delivery, audit };
            }
        };
        let stored = service
            .store
            .remember_reply(
                msg.message_id.clone(),
                card_id.clone(),
                service.clock.now_secs(),
            )
            .await;
        if let Err(e) = stored {
            // A re-run then replies again with the same uuid, which Lark drops.
            tracing::error!(error = %e, "cannot store the in-progress card's id");
        }
        let (card, audit) = work.await;
        let delivery = Delivery::Patch {
            message_id: card_id,
            card,
        };
        Answer { delivery, audit }
    }

    /// The interactive picker: the items looked up as the sender, the options to choose from.
    async fn picker(
        &self,
        msg: &ReceivedMessage,
        cmd: &ActCommand,
        ask: Ask<'_>,
        stamp: &CardStamp<'_>,
    ) -> Value {
        let Ask {
            user_key,
            menu,
            did_you_mean,
            reason,
        } = ask;
        let service = &self.service;
        let chat_id = Some(msg.chat_id.as_str());
        let lookups = service.lookup(&cmd.refs, chat_id, user_key).await;
        // Items already in the asked-for state are offered the opposite action, with its options.
        let action = Service::offered_action(cmd.action, &lookups);
        let menu = if action == menu.action {
            menu
        } else {
            service
                .reason_menu(action, &cmd.refs, chat_id, user_key)
                .await
        };
        let picker = views::Picker {
            action,
            menu: &menu,
            lookups: &lookups,
            did_you_mean: did_you_mean.filter(|_| action == cmd.action),
            reason,
            actor_open_id: msg.sender.open_id.as_deref(),
        };
        views::picker(&picker, &service.web_url, stamp)
    }
}

/// The reply to `msg` with `card`, in its thread if it has one, under the uuid derived from it.
fn reply(msg: &ReceivedMessage, card: Value) -> Delivery {
    reply_then_patch(msg, card, false)
}

/// Like [`reply`]; with `patch_after`, the message Lark answers with is PATCHed too.
fn reply_then_patch(msg: &ReceivedMessage, card: Value, patch_after: bool) -> Delivery {
    Delivery::Reply {
        chat: msg.chat_id.clone(),
        to: msg.message_id.clone(),
        uuid: reply_uuid(&msg.message_id),
        in_thread: msg.thread_id.is_some(),
        card,
        patch_after,
    }
}

/// What a picker asks about: the sender as looked up, the options read so far, a mistyped word.
struct Ask<'a> {
    user_key: &'a Result<String, Outcome>,
    menu: ReasonMenu,
    did_you_mean: Option<(&'a str, &'a ReasonOption)>,
    reason: &'a str,
}

/// Names the work items on the current span (the event's or the click's `items` field), once
/// the limits have bounded how many there are.
pub fn record_items(refs: &[crate::domain::WorkItemRef]) {
    let items = refs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tracing::Span::current().record("items", items.as_str());
}

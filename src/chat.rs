//! What the bot does with one chat message: decide whether it is addressed, parse the command,
//! run it through the service, and reply with a card in the same place (thread included).

use std::sync::Arc;

use serde_json::Value;

use crate::card_value::{CardStamp, Signer};
use crate::command::{self, ActCommand, Command, OptionChoice};
use crate::domain::{ReasonMenu, ReasonOption};
use crate::lark::client::LarkError;
use crate::lark::message::{ChatType, ReceivedMessage};
use crate::service::{ActRequest, Outcome, Service, reply_uuid};
use crate::views::{self, BatchRequest};

pub struct Chat {
    pub service: Arc<Service>,
    /// Signs the values of the buttons on the cards the bot replies with.
    pub signer: Arc<Signer>,
    /// A command with more refs than this asks for confirmation first.
    pub batch_confirm: usize,
}

/// Whether a failed message is worth another go later.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("replying failed: {0}")]
    Reply(#[source] LarkError),
    #[error("could not tell whether the bot was mentioned: {0}")]
    BotInfo(#[source] LarkError),
}

impl HandleError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandleError::Reply(e) | HandleError::BotInfo(e) => e.is_retryable(),
        }
    }
}

impl Chat {
    /// Handles one message; Ok(false) when it was not meant for the bot.
    pub async fn handle(&self, msg: &ReceivedMessage) -> Result<bool, HandleError> {
        let service = &self.service;
        if msg.chat_type == ChatType::Group {
            let bot = service
                .lark
                .bot_open_id()
                .await
                .map_err(HandleError::BotInfo)?;
            if !msg.mentions_open_id(&bot) {
                return Ok(false);
            }
        }
        let web_url = &service.web_url;
        let actor = &msg.sender;
        let card = match msg.text.as_deref().map(|t| command::parse(t, web_url)) {
            None => views::help(Some(&command::ParseError::NotACommand)),
            Some(Err(e)) => views::help(Some(&e)),
            Some(Ok(Command::Help)) => views::help(None),
            Some(Ok(Command::Bind { space })) => {
                let result = service.bind(&msg.chat_id, &space, actor).await;
                views::bound(&result, &space, actor.open_id.as_deref())
            }
            Some(Ok(Command::Act(cmd))) => {
                let stamp = CardStamp::new(&self.signer, service.clock.now_secs());
                let chat_id = Some(msg.chat_id.as_str());
                // The sender is looked up once for the whole command.
                let user_key = service.user_key(actor).await;
                // The option word is read against the options of the items' space.
                let menu = service
                    .reason_menu(cmd.action, &cmd.refs, chat_id, &user_key)
                    .await;
                match &cmd.choice_with(&menu) {
                    OptionChoice::Chosen { option, reason }
                        if cmd.refs.len() > self.batch_confirm =>
                    {
                        let refs = service.with_spaces(&cmd.refs, chat_id).await;
                        views::confirm_batch(
                            &BatchRequest {
                                action: cmd.action,
                                option: option.clone(),
                                option_label: menu.label(option),
                                reason,
                                refs: &refs,
                                actor_open_id: actor.open_id.as_deref(),
                                limit: self.batch_confirm,
                            },
                            &stamp,
                        )
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
                        views::act_report(&report, web_url, &stamp)
                    }
                    OptionChoice::Missing { reason } => {
                        let ask = Ask {
                            user_key: &user_key,
                            menu,
                            did_you_mean: None,
                            reason,
                        };
                        self.picker(msg, &cmd, ask, &stamp).await
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
                        self.picker(msg, &cmd, ask, &stamp).await
                    }
                }
            }
        };
        let in_thread = msg.thread_id.is_some();
        service
            .lark
            .reply_card(
                &msg.message_id,
                &card,
                in_thread,
                &reply_uuid(&msg.message_id),
            )
            .await
            .map_err(HandleError::Reply)?;
        Ok(true)
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

/// What a picker asks about: the sender as looked up, the options read so far, a mistyped word.
struct Ask<'a> {
    user_key: &'a Result<String, Outcome>,
    menu: ReasonMenu,
    did_you_mean: Option<(&'a str, &'a ReasonOption)>,
    reason: &'a str,
}

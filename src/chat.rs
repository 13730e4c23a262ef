//! What the bot does with one chat message: decide whether it is addressed, parse the command,
//! run it through the service, and reply with a card in the same place (thread included).

use std::sync::Arc;

use serde_json::Value;

use crate::card_value::{CardStamp, Signer};
use crate::command::{self, ActCommand, Command, OptionChoice};
use crate::domain::ReasonOption;
use crate::lark::client::LarkError;
use crate::lark::message::{ChatType, ReceivedMessage};
use crate::service::{ActRequest, Service, reply_uuid};
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
                match &cmd.choice {
                    OptionChoice::Chosen { option, reason }
                        if cmd.refs.len() > self.batch_confirm =>
                    {
                        let refs = service.with_spaces(&cmd.refs, chat_id).await;
                        views::confirm_batch(
                            &BatchRequest {
                                action: cmd.action,
                                option: *option,
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
                            .act(&ActRequest {
                                action: cmd.action,
                                option: *option,
                                reason: reason.clone(),
                                refs: cmd.refs.clone(),
                                chat_id: Some(msg.chat_id.clone()),
                                origin: msg.message_id.clone(),
                                actor: actor.clone(),
                            })
                            .await;
                        views::act_report(&report, web_url, &stamp)
                    }
                    OptionChoice::Missing { reason } => {
                        self.picker(msg, &cmd, None, reason, &stamp).await
                    }
                    OptionChoice::DidYouMean {
                        typed,
                        suggestion,
                        reason,
                    } => {
                        let did_you_mean = Some((typed.as_str(), *suggestion));
                        self.picker(msg, &cmd, did_you_mean, reason, &stamp).await
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
        did_you_mean: Option<(&str, ReasonOption)>,
        reason: &str,
        stamp: &CardStamp<'_>,
    ) -> Value {
        let service = &self.service;
        let lookups = service
            .lookup(&cmd.refs, Some(&msg.chat_id), &msg.sender)
            .await;
        let picker = views::Picker {
            action: cmd.action,
            lookups: &lookups,
            did_you_mean,
            reason,
            actor_open_id: msg.sender.open_id.as_deref(),
        };
        views::picker(&picker, &service.web_url, stamp)
    }
}

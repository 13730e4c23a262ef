//! What the bot does with one chat message: decide whether it is addressed, parse the command,
//! run it through the service, and reply with a card in the same place (thread included).

use std::sync::Arc;

use crate::command::{self, Command, OptionChoice};
use crate::lark::client::LarkError;
use crate::lark::message::{ChatType, ReceivedMessage};
use crate::service::{ActRequest, Service, reply_uuid};
use crate::views;

pub struct Chat {
    pub service: Arc<Service>,
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
            Some(Ok(Command::Act(cmd))) => match &cmd.choice {
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
                    views::act_report(&report, web_url)
                }
                OptionChoice::Missing { reason } => {
                    views::picker(&cmd, None, reason, actor.open_id.as_deref())
                }
                OptionChoice::DidYouMean {
                    typed,
                    suggestion,
                    reason,
                } => views::picker(
                    &cmd,
                    Some((typed.as_str(), *suggestion)),
                    reason,
                    actor.open_id.as_deref(),
                ),
            },
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
}

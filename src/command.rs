//! Chat text → [`Command`]. Parsing is total: any text gives either a command or a
//! [`ParseError`] precise enough to show the user (it becomes the help card).

use std::collections::HashSet;

use url::Url;

use crate::domain::{Action, ReasonMenu, ReasonOption, WorkItemRef, is_space_key};

/// What a chat message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Act(ActCommand),
    /// `/bind <project_key|simple_name>`: remember the space for this chat.
    Bind {
        space: String,
    },
    Help,
}

/// `/abort` or `/restore` with its refs and what followed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActCommand {
    pub action: Action,
    pub refs: Vec<WorkItemRef>,
    /// What followed the refs, read against the documented options.
    pub choice: OptionChoice,
    /// The words after the refs, to read again against a space's own options.
    pub tail: Vec<String>,
}

impl ActCommand {
    /// What followed the refs, read against `menu` (the options of the items' space).
    pub fn choice_with(&self, menu: &ReasonMenu) -> OptionChoice {
        let words: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        choose(menu, &words)
    }
}

/// What came after the refs. The bot never acts without an explicit option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionChoice {
    Chosen {
        option: ReasonOption,
        reason: String,
    },
    /// No option word: offer the options, with the text (if any) as the reason.
    Missing { reason: String },
    /// A word close to an option: ask "did you mean …?".
    DidYouMean {
        typed: String,
        suggestion: ReasonOption,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message has no command")]
    NotACommand,
    #[error("`{0}` is not a command")]
    UnknownCommand(String),
    #[error("`/{0}` needs at least one work item: an id, type/id or a work item link")]
    MissingRefs(&'static str),
    #[error("`/bind` needs a project_key or simple_name")]
    MissingSpace,
    #[error("`{0}` is not a project_key or simple_name")]
    BadSpace(String),
    #[error("`/bind` takes one space; `{0}` is extra")]
    ExtraWords(String),
}

/// Strips Lark's mention placeholders (`@_user_1`, `@_all`) and folds white space.
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !is_mention_placeholder(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_mention_placeholder(word: &str) -> bool {
    word == "@_all"
        || word
            .strip_prefix("@_user_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses one message's text (mentions may still be in it).
pub fn parse(text: &str, web_url: &Url) -> Result<Command, ParseError> {
    let text = normalize(text);
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Err(ParseError::NotACommand);
    };
    let Some(name) = first.strip_prefix('/').or_else(|| first.strip_prefix('／')) else {
        return Err(ParseError::NotACommand);
    };
    let rest: Vec<&str> = words.collect();
    match name.to_lowercase().as_str() {
        "abort" | "终止" => parse_act(Action::Abort, &rest, web_url),
        "restore" | "恢复" => parse_act(Action::Restore, &rest, web_url),
        "bind" | "绑定" => parse_bind(&rest),
        "help" | "帮助" | "start" => Ok(Command::Help),
        _ => Err(ParseError::UnknownCommand(first.to_owned())),
    }
}

fn parse_act(action: Action, words: &[&str], web_url: &Url) -> Result<Command, ParseError> {
    let mut refs: Vec<WorkItemRef> = Vec::new();
    // A set beside the list: a message may name thousands of refs before the item limit
    // refuses it, and checking each against the list would be quadratic.
    let mut seen: HashSet<WorkItemRef> = HashSet::new();
    let mut i = 0;
    while let Some(r) = words.get(i).and_then(|w| WorkItemRef::parse(w, web_url)) {
        if seen.insert(r.clone()) {
            refs.push(r);
        }
        i += 1;
    }
    if refs.is_empty() {
        return Err(ParseError::MissingRefs(action.key()));
    }
    let tail: Vec<String> = words
        .get(i..)
        .unwrap_or_default()
        .iter()
        .map(|w| (*w).to_owned())
        .collect();
    let choice = choose(
        &ReasonMenu::defaults(action),
        words.get(i..).unwrap_or_default(),
    );
    Ok(Command::Act(ActCommand {
        action,
        refs,
        choice,
        tail,
    }))
}

/// After the refs, the next word is the option if it is one; the rest is the reason.
fn choose(menu: &ReasonMenu, words: &[&str]) -> OptionChoice {
    let Some(word) = words.first() else {
        return OptionChoice::Missing {
            reason: String::new(),
        };
    };
    let after = words.get(1..).unwrap_or_default().join(" ");
    if let Some(option) = menu.parse(word) {
        OptionChoice::Chosen {
            option,
            reason: after,
        }
    } else if let Some(suggestion) = menu.suggest(word) {
        OptionChoice::DidYouMean {
            typed: (*word).to_owned(),
            suggestion,
            reason: after,
        }
    } else {
        OptionChoice::Missing {
            reason: words.join(" "),
        }
    }
}

fn parse_bind(words: &[&str]) -> Result<Command, ParseError> {
    match words {
        [] => Err(ParseError::MissingSpace),
        [space] if is_space_key(space) => Ok(Command::Bind {
            space: (*space).to_owned(),
        }),
        [space] => Err(ParseError::BadSpace((*space).to_owned())),
        [_, extra, ..] => Err(ParseError::ExtraWords((*extra).to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn web() -> Url {
        Url::parse("https://project.feishu.cn").expect("url")
    }

    fn act(text: &str) -> ActCommand {
        match parse(text, &web()) {
            Ok(Command::Act(a)) => a,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn group_command_with_mention_option_and_reason() {
        let a = act("@_user_1 /abort 12345 repeat duplicate of 12001");
        assert_eq!(a.action, Action::Abort);
        assert_eq!(a.refs.len(), 1);
        assert_eq!(
            a.choice,
            OptionChoice::Chosen {
                option: ReasonOption::REPEAT,
                reason: "duplicate of 12001".into()
            }
        );
    }

    #[test]
    fn chinese_aliases_and_labels() {
        let a = act("/恢复 story/12345 重启");
        assert_eq!(a.action, Action::Restore);
        assert_eq!(a.refs[0].type_key.as_deref(), Some("story"));
        assert!(matches!(
            a.choice,
            OptionChoice::Chosen { ref option, .. } if *option == ReasonOption::RESTART
        ));
        assert_eq!(act("/终止 1 取消").action, Action::Abort);
    }

    #[test]
    fn several_refs_of_every_form() {
        let a = act("/abort 1 story/2 https://project.feishu.cn/doc/issue/detail/3 1 test");
        let ids: Vec<u64> = a.refs.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3], "duplicates are dropped");
    }

    #[test]
    fn no_option_or_unknown_word_asks_for_one() {
        assert_eq!(
            act("/abort 12345").choice,
            OptionChoice::Missing {
                reason: String::new()
            }
        );
        assert_eq!(
            act("/abort 12345 because reasons").choice,
            OptionChoice::Missing {
                reason: "because reasons".into()
            }
        );
        assert_eq!(
            act("/abort 12345 repat dup").choice,
            OptionChoice::DidYouMean {
                typed: "repat".into(),
                suggestion: ReasonOption::REPEAT,
                reason: "dup".into()
            }
        );
    }

    #[test]
    fn malformed_commands() {
        assert_eq!(parse("hello", &web()), Err(ParseError::NotACommand));
        assert_eq!(parse("@_user_1", &web()), Err(ParseError::NotACommand));
        assert_eq!(
            parse("/abort repeat", &web()),
            Err(ParseError::MissingRefs("abort"))
        );
        assert_eq!(
            parse("/frobnicate 1", &web()),
            Err(ParseError::UnknownCommand("/frobnicate".into()))
        );
        assert_eq!(parse("/bind", &web()), Err(ParseError::MissingSpace));
        assert_eq!(
            parse("/bind doc extra", &web()),
            Err(ParseError::ExtraWords("extra".into()))
        );
    }

    #[test]
    fn bind_and_help() {
        assert_eq!(
            parse("@_user_1  /bind  doc", &web()),
            Ok(Command::Bind {
                space: "doc".into()
            })
        );
        assert_eq!(parse("/help", &web()), Ok(Command::Help));
        assert_eq!(parse("/HELP", &web()), Ok(Command::Help));
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in "\\PC{0,200}") {
            let _ = parse(&text, &web());
        }

        #[test]
        fn any_id_round_trips(id in 1u64..=9_007_199_254_740_991, opt in 0usize..4) {
            let option = Action::Abort.options()[opt].clone();
            let a = act(&format!("/abort {id} {} why", option.key()));
            prop_assert_eq!(a.refs[0].id, id);
            prop_assert_eq!(a.choice, OptionChoice::Chosen { option, reason: "why".into() });
        }
    }
}

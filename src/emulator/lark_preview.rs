//! The link-preview side of the emulated Lark (`protocol/lark.md` §10): it fetches a preview
//! from the bot as a given viewer (`url.preview.get`, §10.2) over HTTP (encrypted and signed
//! like any callback) or the long connection (`protocol/lark-websocket.md` §6.5: the answer
//! comes back base64 in the ack's `data`, §6.4), keeps what each viewer was shown, and on
//! `POST /open-apis/im/v2/url_previews/batch_update` (§10.4) fetches the listed previews
//! again for the listed viewers (all who fetched it when `open_ids` is absent), as the real
//! clients do: the API carries no content.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::inbound::{LarkApp, new_event_id};
use super::lark::LarkEmulator;
use crate::clock::SharedClock;

/// Tokens one refresh call takes (§10.4).
pub const REFRESH_MAX_TOKENS: usize = 10;
/// Viewers one refresh call names, at most (§10.4).
pub const REFRESH_MAX_OPEN_IDS: usize = 100;
/// Each token at most once in this long (§10.4).
pub const REFRESH_TOKEN_GAP: Duration = Duration::from_secs(5);
/// Refresh calls per second (§10.4).
pub const REFRESH_PER_SECOND: usize = 5;
/// How long the emulated client waits for the bot's answer; Lark's limit is 3 s (§10.3).
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Where the emulated clients send `url.preview.get`.
#[derive(Clone)]
pub enum PreviewTarget {
    /// `POST url` (the bot's `/lark/events`), sealed with the app's keys, timestamped by `clock`.
    Http {
        url: String,
        app: LarkApp,
        clock: SharedClock,
    },
    /// The bot's long connection (the newest open one).
    Ws { app: LarkApp, clock: SharedClock },
}

/// A link in a message, as the preview callback's `context` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLink {
    pub url: String,
    /// None while the person is still typing (§10.2).
    pub preview_token: Option<String>,
    pub message_id: Option<String>,
    pub chat_id: Option<String>,
}

/// What one viewer's client shows for one preview: the bot's last answer, and how often it
/// fetched it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub answer: Value,
    pub fetches: u32,
    /// How long the bot took to answer the last fetch.
    pub took: Duration,
}

/// A refresh call the emulator accepted: its tokens and open_ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCall {
    pub preview_tokens: Vec<String>,
    pub open_ids: Vec<String>,
}

/// A refresh call the emulator refused, and why (its code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRefusal {
    pub code: i64,
    pub body: Value,
}

#[derive(Default)]
pub struct PreviewSide {
    target: Option<PreviewTarget>,
    links: HashMap<String, PreviewLink>,
    shown: HashMap<(String, String), Shown>,
    last_refresh: HashMap<String, Instant>,
    calls: VecDeque<Instant>,
    /// The fetches an accepted refresh causes, until the handler starts them.
    due: Vec<(String, PreviewLink)>,
    pub refreshes: Vec<RefreshCall>,
    pub refused: Vec<RefreshRefusal>,
}

impl std::fmt::Debug for PreviewSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewSide")
            .field("links", &self.links.len())
            .field("shown", &self.shown.len())
            .field("refreshes", &self.refreshes.len())
            .field("refused", &self.refused.len())
            .finish_non_exhaustive()
    }
}

impl PreviewSide {
    /// The fetches the last accepted refresh causes (each once).
    pub fn take_fetches(&mut self) -> Vec<(String, PreviewLink)> {
        std::mem::take(&mut self.due)
    }

    /// Checks a refresh body by §10.4's rules; Ok (the fetches it causes wait in
    /// [`Self::take_fetches`]), or the
    /// (status, code, msg) Lark refuses it with. The per-token 5 s rule's error code is not
    /// documented (UNCONFIRMED); it is refused here as a frequency limit (429, 99991400).
    pub fn admit(&mut self, body: &Value) -> Result<(), (u16, i64, &'static str)> {
        let now = Instant::now();
        let refused = |s: &mut Self, status, code, msg| {
            s.refused.push(RefreshRefusal {
                code,
                body: body.clone(),
            });
            Err((status, code, msg))
        };
        let strings = |v: Option<&Value>| -> Option<Vec<String>> {
            v?.as_array()?
                .iter()
                .map(|t| t.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                .collect()
        };
        let Some(tokens) = strings(body.get("preview_tokens")) else {
            return refused(self, 400, 230_001, "param invalid: preview_tokens");
        };
        if tokens.is_empty() || tokens.len() > REFRESH_MAX_TOKENS {
            return refused(self, 400, 230_001, "param invalid: preview_tokens");
        }
        let open_ids = match body.get("open_ids") {
            None => Vec::new(),
            Some(v) => match strings(Some(v)) {
                Some(ids) if ids.len() <= REFRESH_MAX_OPEN_IDS => ids,
                _ => return refused(self, 400, 230_001, "param invalid: open_ids"),
            },
        };
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.calls.pop_front();
        }
        if self.calls.len() >= REFRESH_PER_SECOND {
            return refused(self, 429, 99_991_400, "request trigger frequency limit");
        }
        if tokens.iter().any(|t| {
            self.last_refresh
                .get(t)
                .is_some_and(|at| now.duration_since(*at) < REFRESH_TOKEN_GAP)
        }) {
            return refused(self, 429, 99_991_400, "request trigger frequency limit");
        }
        self.calls.push_back(now);
        let mut fetches = Vec::new();
        for t in &tokens {
            self.last_refresh.insert(t.clone(), now);
            let Some(link) = self.links.get(t) else {
                continue;
            };
            let viewers: Vec<String> = if open_ids.is_empty() {
                self.shown
                    .keys()
                    .filter(|(tok, _)| tok == t)
                    .map(|(_, v)| v.clone())
                    .collect()
            } else {
                // Only who already sees the link can be refreshed (users not in the chat cannot).
                open_ids
                    .iter()
                    .filter(|v| self.shown.contains_key(&(t.clone(), (*v).clone())))
                    .cloned()
                    .collect()
            };
            fetches.extend(viewers.into_iter().map(|v| (v, link.clone())));
        }
        self.refreshes.push(RefreshCall {
            preview_tokens: tokens,
            open_ids,
        });
        self.due.extend(fetches);
        Ok(())
    }
}

impl LarkEmulator {
    /// Where previews are fetched from.
    pub fn set_preview_target(&self, target: PreviewTarget) {
        self.state().previews.target = Some(target);
    }

    /// What `viewer`'s client shows for the preview `token`.
    pub fn shown_preview(&self, token: &str, viewer: &str) -> Option<Shown> {
        self.state()
            .previews
            .shown
            .get(&(token.to_owned(), viewer.to_owned()))
            .cloned()
    }

    /// The refresh calls accepted so far.
    pub fn preview_refreshes(&self) -> Vec<RefreshCall> {
        self.state().previews.refreshes.clone()
    }

    /// The refresh calls refused so far.
    pub fn preview_refusals(&self) -> Vec<RefreshRefusal> {
        self.state().previews.refused.clone()
    }

    /// Fetches the preview of `link` as `viewer` (an open_id), as that viewer's client does,
    /// and returns the bot's answer (also kept as what the viewer is shown).
    pub async fn fetch_preview(&self, viewer: &str, link: &PreviewLink) -> Result<Value, String> {
        let target = self
            .state()
            .previews
            .target
            .clone()
            .ok_or("no preview target set")?;
        let (app, clock) = match &target {
            PreviewTarget::Http { app, clock, .. } | PreviewTarget::Ws { app, clock } => {
                (app, clock)
            }
        };
        let mut context = json!({
            "url": link.url,
            "open_message_id": link.message_id.clone().unwrap_or_default(),
            "open_chat_id": link.chat_id.clone().unwrap_or_default(),
        });
        if let Some(token) = &link.preview_token {
            context["preview_token"] = json!(token);
        }
        let event_id = new_event_id();
        let envelope = app.envelope(
            &event_id,
            "url.preview.get",
            &clock.now_millis().saturating_mul(1000).to_string(),
            json!({
                "operator": {"tenant_key": app.tenant_key, "open_id": viewer},
                "host": "im_message",
                "delivery_type": "url_preview",
                "context": context,
            }),
        );
        let started = Instant::now();
        let answer = match &target {
            PreviewTarget::Http { url, .. } => {
                let sealed = app.seal(&envelope, clock.now_secs());
                let mut req = reqwest::Client::new()
                    .post(url)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .timeout(ANSWER_WAIT)
                    .body(sealed.body);
                for (k, v) in sealed.headers {
                    req = req.header(k, v);
                }
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("the bot answered {status}: {text}"));
                }
                serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())?
            }
            PreviewTarget::Ws { .. } => self.fetch_over_ws(&envelope, &event_id).await?,
        };
        let took = started.elapsed();
        if let Some(token) = &link.preview_token {
            let mut s = self.state();
            s.previews.links.insert(token.clone(), link.clone());
            let shown = s
                .previews
                .shown
                .entry((token.clone(), viewer.to_owned()))
                .or_insert(Shown {
                    answer: Value::Null,
                    fetches: 0,
                    took,
                });
            shown.answer = answer.clone();
            shown.fetches += 1;
            shown.took = took;
        }
        Ok(answer)
    }

    /// Pushes the callback on the long connection and reads the answer from its ack.
    async fn fetch_over_ws(&self, envelope: &Value, event_id: &str) -> Result<Value, String> {
        let ws = self.ws();
        let frame_id = format!("preview-{event_id}");
        if !ws.push_event(envelope, &frame_id, 1) {
            return Err("no long connection open".into());
        }
        let until = Instant::now() + ANSWER_WAIT;
        while Instant::now() < until {
            let ack = ws
                .received()
                .into_iter()
                .map(|(_, f)| f)
                .find(|f| f.header("message_id") == Some(frame_id.as_str()));
            if let Some(ack) = ack {
                let payload: Value =
                    serde_json::from_slice(ack.payload.as_deref().unwrap_or_default())
                        .map_err(|e| e.to_string())?;
                let data = payload
                    .get("data")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("an ack without data: {payload}"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| e.to_string())?;
                return serde_json::from_slice(&bytes).map_err(|e| e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err("no ack for the preview callback".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_rules_are_larks() {
        let mut side = PreviewSide::default();
        let tokens = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        for bad in [
            json!({}),
            json!({"preview_tokens": []}),
            json!({"preview_tokens": tokens(11)}),
            json!({"preview_tokens": [""]}),
            json!({"preview_tokens": ["t"], "open_ids": vec!["ou"; 101]}),
            json!({"preview_tokens": ["t"], "open_ids": "ou"}),
        ] {
            let field = if bad.get("open_ids").is_some() {
                "param invalid: open_ids"
            } else {
                "param invalid: preview_tokens"
            };
            assert_eq!(side.admit(&bad), Err((400, 230_001, field)), "{bad}");
        }
        assert_eq!(side.admit(&json!({"preview_tokens": tokens(10)})), Ok(()));
        assert_eq!(
            side.admit(&json!({"preview_tokens": ["t3", "new"]})),
            Err((429, 99_991_400, "request trigger frequency limit")),
            "a token twice within 5 s"
        );
        for i in 0..4 {
            assert_eq!(
                side.admit(&json!({"preview_tokens": [format!("x{i}")]})),
                Ok(())
            );
        }
        assert_eq!(
            side.admit(&json!({"preview_tokens": ["y"]})),
            Err((429, 99_991_400, "request trigger frequency limit")),
            "a sixth call within a second"
        );
        assert_eq!(side.refreshes.len(), 5);
        assert_eq!(side.refused.len(), 8);
        assert!(
            side.take_fetches().is_empty(),
            "nobody fetched these tokens"
        );
    }
}

//! Lark's long-connection mode (`ABORT_BOT_MODE=websocket`): instead of Lark calling our
//! webhook, the bot dials out and Lark pushes events over a WebSocket as `pbbp2` frames.
//!
//! - [`frame`]: the wire type, acks and fragment reassembly.
//! - this module: the per-connection loop ([`run_session`]), generic over any
//!   `Sink`/`Stream` of WebSocket messages so tests drive it with channels.
//! - [`client`]: the endpoint request, the real socket (tokio-tungstenite) and reconnects.
//!
//! Payloads here are plaintext and unsigned (Lark authenticates the app when it hands out
//! the URL), so the [`EventHandler`] gets the plain v2 event JSON and returns what to ack.

pub mod client;
pub mod frame;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use frame::{Ack, Fragments, Frame, Kind};

/// Handles one complete event payload and says what to ack. It runs on its own task, so a
/// slow card callback never holds up pings or other events.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, payload: Vec<u8>) -> impl Future<Output = Ack> + Send;
}

/// Connection settings Lark sends with the endpoint and in pongs (numbers in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    pub ping_interval: Duration,
    /// Reconnect attempts after a drop before giving up; negative means forever.
    pub reconnect_count: i64,
    /// Wait between failed reconnect attempts.
    pub reconnect_interval: Duration,
    /// Random jitter (0..this) before reconnecting, so a fleet does not reconnect at once.
    pub reconnect_nonce: Duration,
}

impl Default for ClientConfig {
    /// The SDKs' local defaults.
    fn default() -> Self {
        ClientConfig {
            ping_interval: Duration::from_secs(120),
            reconnect_count: -1,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
        }
    }
}

/// The JSON form; any field may be missing.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientConfigPatch {
    pub ping_interval: Option<i64>,
    pub reconnect_count: Option<i64>,
    pub reconnect_interval: Option<i64>,
    pub reconnect_nonce: Option<i64>,
}

impl ClientConfig {
    /// Applies what Lark sent. A zero or negative ping interval would be a busy loop and a
    /// negative wait is meaningless, so those keep the current value.
    pub fn apply(&mut self, patch: &ClientConfigPatch) {
        let secs = |v: Option<i64>, min: i64| {
            v.filter(|s| *s >= min)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
        };
        if let Some(d) = secs(patch.ping_interval, 1) {
            self.ping_interval = d;
        }
        if let Some(n) = patch.reconnect_count {
            self.reconnect_count = n;
        }
        if let Some(d) = secs(patch.reconnect_interval, 0) {
            self.reconnect_interval = d;
        }
        if let Some(d) = secs(patch.reconnect_nonce, 0) {
            self.reconnect_nonce = d;
        }
    }
}

/// Why a connection's loop ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// Shutdown was asked for; in-flight acks were sent and the socket closed.
    Shutdown,
    /// The server closed the connection (or the stream ended).
    Closed,
    /// Nothing arrived for too long: the connection is presumed dead.
    Silent,
    /// Reading or writing failed.
    Failed(String),
}

/// Tunables of one connection; the defaults are the SDKs'.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long a partial fragmented message is kept.
    pub fragment_ttl: Duration,
    /// How long shutdown waits for in-flight handlers to produce their acks (Lark gives
    /// each delivery 3 s anyway).
    pub drain: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            fragment_ttl: Duration::from_secs(5),
            drain: Duration::from_secs(3),
        }
    }
}

/// No frame (not even a pong) for this many ping intervals, plus [`SILENCE_SLACK`], means the
/// connection is dead even if TCP has not noticed.
const SILENCE_PINGS: u32 = 3;
const SILENCE_SLACK: Duration = Duration::from_secs(10);

/// Runs one connection until it closes, fails, goes silent or `shutdown` turns true: pings
/// every `config.ping_interval` (applying any ClientConfig a pong carries), reassembles data
/// frames, hands `type=event` payloads to `handler` and sends each ack back.
pub async fn run_session<S, R, E, H>(
    mut sink: S,
    mut stream: R,
    service: i32,
    config: &mut ClientConfig,
    limits: SessionLimits,
    handler: Arc<H>,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
    H: EventHandler,
{
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Frame>();
    let mut fragments = Fragments::new(limits.fragment_ttl);
    let mut ping = new_ticker(config.ping_interval);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let end = loop {
        tokio::select! {
            biased;
            _ = stopped(shutdown) => break SessionEnd::Shutdown,
            Some(ack) = ack_rx.recv() => {
                if let Err(e) = sink.send(Message::Binary(ack.to_bytes().into())).await {
                    break SessionEnd::Failed(format!("cannot send an ack: {e}"));
                }
            }
            _ = ping.tick() => {
                if let Err(e) = sink.send(Message::Binary(Frame::ping(service).to_bytes().into())).await {
                    break SessionEnd::Failed(format!("cannot send a ping: {e}"));
                }
            }
            _ = sweep.tick() => {
                let dropped = fragments.expire(std::time::Instant::now());
                if dropped > 0 {
                    tracing::warn!(dropped, "dropped unfinished fragmented messages; Lark will push them again");
                }
                if last_heard.elapsed() > config.ping_interval * SILENCE_PINGS + SILENCE_SLACK {
                    break SessionEnd::Silent;
                }
            }
            incoming = stream.next() => {
                let bytes = match incoming {
                    None => break SessionEnd::Closed,
                    Some(Err(e)) => break SessionEnd::Failed(format!("cannot read: {e}")),
                    Some(Ok(Message::Close(_))) => break SessionEnd::Closed,
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => {
                        // WebSocket pings are answered by tungstenite; they still prove life.
                        last_heard = Instant::now();
                        continue;
                    }
                };
                last_heard = Instant::now();
                let frame = match Frame::decode_bytes(&bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a frame that does not decode");
                        continue;
                    }
                };
                match frame.kind() {
                    Kind::Pong => {
                        if let Some(patch) = frame.payload.as_deref().and_then(|p| serde_json::from_slice::<ClientConfigPatch>(p).ok()) {
                            let before = config.ping_interval;
                            config.apply(&patch);
                            if config.ping_interval != before {
                                tracing::info!(secs = config.ping_interval.as_secs(), "ping interval changed by Lark");
                                ping = new_ticker_after(config.ping_interval);
                            }
                        }
                    }
                    Kind::Event => {
                        match fragments.push(&frame, std::time::Instant::now()) {
                            Ok(Some(payload)) => {
                                spawn_handler(handler.clone(), frame, payload, ack_tx.clone());
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "ignoring a data frame"),
                        }
                    }
                    Kind::Card => tracing::debug!("ignoring an old-style card frame, as the SDKs do"),
                    Kind::Ping | Kind::Other => tracing::debug!(method = frame.method, kind = ?frame.header("type"), "ignoring a frame"),
                }
            }
        }
    };
    if matches!(end, SessionEnd::Shutdown) {
        // Stop reading; let running handlers finish and send their acks, then say goodbye.
        drop(ack_tx);
        let drained = tokio::time::timeout(limits.drain, async {
            while let Some(ack) = ack_rx.recv().await {
                if sink
                    .send(Message::Binary(ack.to_bytes().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shutdown: some events were still being handled; Lark will push them again"
            );
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    }
    end
}

/// Runs the handler for one complete payload and queues its ack, built from `last` (the
/// frame that completed the message) with the handler's time as `biz_rt`.
fn spawn_handler<H: EventHandler>(
    handler: Arc<H>,
    last: Frame,
    payload: Vec<u8>,
    acks: mpsc::UnboundedSender<Frame>,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        let ack = handler.handle(payload).await;
        let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        // If the connection is gone the ack is lost; Lark pushes the event again and the
        // store's dedup makes that harmless.
        let _ = acks.send(last.ack(&ack, ms));
    });
}

/// Resolves once shutdown is asked for, or its sender is gone (nobody can ask any more).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not in a caller's state.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Pings at once on connect, then every `every`.
fn new_ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Pings every `every`, starting one interval from now.
fn new_ticker_after(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + every, every);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame::Header;
    use std::sync::Mutex;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    /// Records payloads; acks each with `{"code":200}` and data = the payload's length, or
    /// fails when the payload is `fail`.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<Vec<u8>>>,
    }

    impl EventHandler for Recorder {
        async fn handle(&self, payload: Vec<u8>) -> Ack {
            let fail = payload == b"fail";
            let slow = payload == b"slow";
            self.seen.lock().expect("lock").push(payload);
            if slow {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if fail { Ack::failed() } else { Ack::ok() }
        }
    }

    type Incoming = UnboundedSender<Result<Message, String>>;

    /// A session over channels: what the test sends is what the server sent.
    struct Harness {
        to_client: Incoming,
        from_client: UnboundedReceiver<Message>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<(SessionEnd, ClientConfig)>,
        handler: Arc<Recorder>,
    }

    fn start(config: ClientConfig) -> Harness {
        let (to_client, rx) = unbounded_channel::<Result<Message, String>>();
        let (tx, from_client) = unbounded_channel::<Message>();
        let (stop, mut stop_rx) = watch::channel(false);
        let handler = Arc::new(Recorder::default());
        let h = handler.clone();
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let sink = futures_util::sink::unfold(tx, |tx, m: Message| async move {
            tx.send(m).map_err(|_| "closed".to_string())?;
            Ok::<_, String>(tx)
        });
        let task = tokio::spawn(async move {
            let mut config = config;
            let stream = Box::pin(stream);
            let sink = Box::pin(sink);
            let end = run_session(
                sink,
                stream,
                7,
                &mut config,
                SessionLimits::default(),
                h,
                &mut stop_rx,
            )
            .await;
            (end, config)
        });
        Harness {
            to_client,
            from_client,
            stop,
            task,
            handler,
        }
    }

    fn data(message_id: &str, sum: u32, seq: u32, kind: &str, payload: &[u8]) -> Message {
        let f = Frame {
            seq_id: 9,
            log_id: 11,
            service: 7,
            method: frame::METHOD_DATA,
            headers: vec![
                Header::new("type", kind),
                Header::new("message_id", message_id),
                Header::new("sum", sum.to_string()),
                Header::new("seq", seq.to_string()),
            ],
            payload: Some(payload.to_vec()),
            ..Frame::default()
        };
        Message::Binary(f.to_bytes().into())
    }

    /// The next frame the client sent that is not a ping.
    async fn next_non_ping(h: &mut Harness) -> Frame {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), h.from_client.recv())
                .await
                .expect("in time")
                .expect("client still sending");
            if let Message::Binary(b) = m {
                let f = Frame::decode_bytes(&b).expect("decodes");
                if f.kind() != Kind::Ping {
                    return f;
                }
            }
        }
    }

    fn ack_code(f: &Frame) -> i64 {
        let v: serde_json::Value =
            serde_json::from_slice(f.payload.as_deref().expect("payload")).expect("JSON");
        v["code"].as_i64().expect("code")
    }

    #[tokio::test]
    async fn pings_at_once_then_each_interval_and_applies_the_pong_config() {
        tokio::time::pause();
        let mut h = start(ClientConfig {
            ping_interval: Duration::from_secs(120),
            ..ClientConfig::default()
        });
        let first = h.from_client.recv().await.expect("a ping");
        assert_eq!(first, Message::Binary(Frame::ping(7).to_bytes().into()));
        let pong = Frame {
            service: 7,
            method: frame::METHOD_CONTROL,
            headers: vec![Header::new("type", "pong")],
            payload: Some(br#"{"PingInterval":3,"ReconnectCount":4,"ReconnectInterval":5,"ReconnectNonce":0}"#.to_vec()),
            ..Frame::default()
        };
        h.to_client
            .send(Ok(Message::Binary(pong.to_bytes().into())))
            .expect("send");
        // With the new 3 s interval, two more pings come well before the old 120 s.
        let started = Instant::now();
        for _ in 0..2 {
            let m = h.from_client.recv().await.expect("a ping");
            assert_eq!(m, Message::Binary(Frame::ping(7).to_bytes().into()));
        }
        assert!(started.elapsed() <= Duration::from_secs(7));
        h.stop.send(true).expect("stop");
        let (end, config) = h.task.await.expect("join");
        assert!(matches!(end, SessionEnd::Shutdown));
        assert_eq!(
            config,
            ClientConfig {
                ping_interval: Duration::from_secs(3),
                reconnect_count: 4,
                reconnect_interval: Duration::from_secs(5),
                reconnect_nonce: Duration::ZERO,
            }
        );
    }

    #[tokio::test]
    async fn fragments_are_handled_once_whole_and_acked_once_from_the_last() {
        let mut h = start(ClientConfig::default());
        h.to_client
            .send(Ok(data("m1", 2, 1, "event", b"world")))
            .expect("send");
        h.to_client
            .send(Ok(data("m1", 2, 0, "event", b"hello ")))
            .expect("send");
        let ack = next_non_ping(&mut h).await;
        assert_eq!(ack_code(&ack), 200);
        assert_eq!(
            ack.header("seq"),
            Some("0"),
            "built from the completing frame"
        );
        assert_eq!((ack.seq_id, ack.log_id, ack.service), (9, 11, 7));
        assert!(ack.header("biz_rt").is_some());
        assert_eq!(
            *h.handler.seen.lock().expect("lock"),
            vec![b"hello world".to_vec()]
        );
        h.stop.send(true).expect("stop");
        let _ = h.task.await;
    }

    #[tokio::test]
    async fn card_frames_get_no_reply_and_failures_ack_500() {
        let mut h = start(ClientConfig::default());
        h.to_client
            .send(Ok(data("c1", 1, 0, "card", b"{}")))
            .expect("send");
        h.to_client
            .send(Ok(data("e1", 1, 0, "event", b"fail")))
            .expect("send");
        let ack = next_non_ping(&mut h).await;
        assert_eq!(ack.header("message_id"), Some("e1"));
        assert_eq!(ack_code(&ack), 500);
        assert_eq!(h.handler.seen.lock().expect("lock").len(), 1);
        // Undecodable bytes are ignored, not fatal.
        h.to_client
            .send(Ok(Message::Binary(vec![0xff, 0xff, 0xff].into())))
            .expect("send");
        h.to_client
            .send(Ok(data("e2", 1, 0, "event", b"ok")))
            .expect("send");
        assert_eq!(next_non_ping(&mut h).await.header("message_id"), Some("e2"));
        h.stop.send(true).expect("stop");
        let _ = h.task.await;
    }

    #[tokio::test]
    async fn shutdown_sends_in_flight_acks_then_closes() {
        let mut h = start(ClientConfig::default());
        h.to_client
            .send(Ok(data("s1", 1, 0, "event", b"slow")))
            .expect("send");
        // Let the handler start, then stop while it sleeps.
        for _ in 0..50 {
            if !h.handler.seen.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.stop.send(true).expect("stop");
        let ack = next_non_ping(&mut h).await;
        assert_eq!(ack.header("message_id"), Some("s1"));
        let close = tokio::time::timeout(Duration::from_secs(5), h.from_client.recv())
            .await
            .expect("in time");
        assert!(matches!(close, Some(Message::Close(_))));
        assert!(matches!(
            h.task.await.expect("join").0,
            SessionEnd::Shutdown
        ));
    }

    #[tokio::test]
    async fn a_closed_or_broken_stream_ends_the_session() {
        let h = start(ClientConfig::default());
        h.to_client.send(Ok(Message::Close(None))).expect("send");
        assert!(matches!(h.task.await.expect("join").0, SessionEnd::Closed));
        let h = start(ClientConfig::default());
        h.to_client.send(Err("reset".into())).expect("send");
        assert!(matches!(
            h.task.await.expect("join").0,
            SessionEnd::Failed(_)
        ));
    }

    #[tokio::test]
    async fn a_silent_connection_is_given_up() {
        tokio::time::pause();
        let h = start(ClientConfig {
            ping_interval: Duration::from_secs(1),
            ..ClientConfig::default()
        });
        let end = tokio::time::timeout(Duration::from_secs(60), h.task)
            .await
            .expect("ends by itself")
            .expect("join");
        assert!(matches!(end.0, SessionEnd::Silent));
        drop(h.to_client);
    }
}

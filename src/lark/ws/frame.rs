//! The long connection's wire type: Lark's `pbbp2.Frame` (proto2), hand-written for `prost`
//! so no build script or `protoc` is needed, plus the reassembly of fragmented data frames.
//!
//! Field numbers and labels follow the SDKs' descriptor. The four leading fields are proto2
//! `required`, so they are written even when zero, as the SDKs do (a ping is byte-identical).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde::Serialize;

/// `method` of a control frame (ping, pong).
pub const METHOD_CONTROL: i32 = 0;
/// `method` of a data frame (event, card).
pub const METHOD_DATA: i32 = 1;

/// One `key=value` frame header.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Header {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `pbbp2.Frame`: every binary WebSocket message of the long connection is one of these.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Frame {
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    /// The `service_id` of the connection URL, echoed in every frame.
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    /// [`METHOD_CONTROL`] or [`METHOD_DATA`].
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

/// What a frame is, from its `method` and `type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Pong,
    /// A normal event or a `card.action.trigger` callback.
    Event,
    /// An old-style card callback: every SDK ignores it without a reply.
    Card,
    Other,
}

impl Frame {
    /// Parses one binary WebSocket message.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Frame, prost::DecodeError> {
        Frame::decode(bytes)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// The client's heartbeat: `method=0`, `headers=[type=ping]`, no payload.
    pub fn ping(service: i32) -> Frame {
        Frame {
            service,
            method: METHOD_CONTROL,
            headers: vec![Header::new("type", "ping")],
            ..Frame::default()
        }
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    pub fn kind(&self) -> Kind {
        match (self.method, self.header("type")) {
            (METHOD_CONTROL, Some("ping")) => Kind::Ping,
            (METHOD_CONTROL, Some("pong")) => Kind::Pong,
            (METHOD_DATA, Some("event")) => Kind::Event,
            (METHOD_DATA, Some("card")) => Kind::Card,
            _ => Kind::Other,
        }
    }

    /// The acknowledgement of this (last) data frame: the same frame, its headers plus
    /// `biz_rt` (handler milliseconds), and the ack JSON as payload. Lark matches the ack to
    /// the delivery by the echoed ids and headers.
    pub fn ack(&self, ack: &Ack, biz_rt_ms: i64) -> Frame {
        let mut frame = self.clone();
        frame
            .headers
            .push(Header::new("biz_rt", biz_rt_ms.to_string()));
        frame.payload = Some(ack.to_json());
        frame
    }
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The ack payload: `{"code":200}`, `{"code":500}` (Lark pushes again), or with `data`, the
/// base64 of the handler's result (a card callback's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    pub code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Ack {
    pub fn ok() -> Ack {
        Ack {
            code: 200,
            data: None,
        }
    }

    pub fn failed() -> Ack {
        Ack {
            code: 500,
            data: None,
        }
    }

    /// A success carrying the handler's result bytes (sent base64-encoded).
    pub fn with_data(result: &[u8]) -> Ack {
        use base64::Engine as _;
        Ack {
            code: 200,
            data: Some(base64::engine::general_purpose::STANDARD.encode(result)),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of a number and a string always serializes.
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"code":500}"#.to_vec())
    }
}

/// Why a data frame's fragment was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("fragment without a message_id")]
    NoMessageId,
    #[error("bad sum/seq headers (sum {sum}, seq {seq})")]
    BadIndex { sum: usize, seq: usize },
    #[error("fragmented payload larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many unfinished fragmented messages")]
    TooMany,
}

/// Fragments of split data frames, by `message_id`, until all `sum` parts are in.
///
/// Bounded three ways so a misbehaving peer cannot grow it: parts per message, bytes per
/// message, and unfinished messages; partial messages older than the TTL are dropped (the
/// SDKs keep them 5 s or 10 s; Lark pushes the whole event again when no ack comes).
#[derive(Debug)]
pub struct Fragments {
    ttl: Duration,
    partial: HashMap<String, Partial>,
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    since: Instant,
}

/// At most this many parts in one message.
pub const MAX_PARTS: usize = 64;
/// At most this many payload bytes in one message, like the webhook's body limit.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// At most this many unfinished messages at once.
pub const MAX_PARTIAL: usize = 256;

impl Fragments {
    pub fn new(ttl: Duration) -> Fragments {
        Fragments {
            ttl,
            partial: HashMap::new(),
        }
    }

    /// Takes one data frame; returns the whole payload when it is complete (at once for an
    /// unsplit frame), concatenated in `seq` order.
    pub fn push(&mut self, frame: &Frame, now: Instant) -> Result<Option<Vec<u8>>, FragmentError> {
        let number = |key: &str, default: usize| {
            frame
                .header(key)
                .map_or(Some(default), |v| v.trim().parse::<usize>().ok())
        };
        let (sum, seq) = match (number("sum", 1), number("seq", 0)) {
            (Some(sum), Some(seq)) => (sum, seq),
            _ => return Err(FragmentError::BadIndex { sum: 0, seq: 0 }),
        };
        if sum == 0 || seq >= sum || sum > MAX_PARTS {
            return Err(FragmentError::BadIndex { sum, seq });
        }
        let payload = frame.payload.clone().unwrap_or_default();
        if sum == 1 {
            return Ok(Some(payload));
        }
        let id = frame
            .header("message_id")
            .ok_or(FragmentError::NoMessageId)?;
        if !self.partial.contains_key(id) && self.partial.len() >= MAX_PARTIAL {
            self.expire(now);
            if self.partial.len() >= MAX_PARTIAL {
                return Err(FragmentError::TooMany);
            }
        }
        let entry = self
            .partial
            .entry(id.to_owned())
            .or_insert_with(|| Partial {
                parts: vec![None; sum],
                bytes: 0,
                since: now,
            });
        if entry.parts.len() != sum {
            // The same id with another sum: start over with what this frame says.
            *entry = Partial {
                parts: vec![None; sum],
                bytes: 0,
                since: now,
            };
        }
        let old = entry.parts[seq].as_ref().map_or(0, Vec::len);
        let bytes = entry.bytes - old + payload.len();
        if bytes > MAX_PAYLOAD_BYTES {
            self.partial.remove(id);
            return Err(FragmentError::TooLarge(MAX_PAYLOAD_BYTES));
        }
        entry.bytes = bytes;
        entry.parts[seq] = Some(payload);
        if entry.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let whole = self
            .partial
            .remove(id)
            .map(|p| p.parts.into_iter().flatten().flatten().collect())
            .unwrap_or_default();
        Ok(Some(whole))
    }

    /// Drops partial messages older than the TTL; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.partial.len();
        let ttl = self.ttl;
        self.partial
            .retain(|_, p| now.saturating_duration_since(p.since) < ttl);
        before - self.partial.len()
    }

    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/ws_frames.json"
        );
        let text = std::fs::read_to_string(path).expect("shared/vectors/ws_frames.json");
        serde_json::from_str(&text).expect("JSON")
    }

    fn frames() -> Vec<Value> {
        vectors()["frames"].as_array().expect("frames").clone()
    }

    fn named(name: &str) -> Value {
        frames()
            .into_iter()
            .find(|f| f["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .unwrap_or_else(|| panic!("no vector {name}"))
    }

    fn decode_hex(hex_text: &str) -> Frame {
        Frame::decode_bytes(&hex::decode(hex_text).expect("hex")).expect("decodes")
    }

    /// Asserts a frame equals the vector's `decoded` object, field by field.
    fn assert_matches(frame: &Frame, decoded: &Value) {
        assert_eq!(Some(frame.seq_id), decoded["SeqID"].as_u64());
        assert_eq!(Some(frame.log_id), decoded["LogID"].as_u64());
        assert_eq!(Some(i64::from(frame.service)), decoded["service"].as_i64());
        assert_eq!(Some(i64::from(frame.method)), decoded["method"].as_i64());
        let headers: Vec<(String, String)> = decoded["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                let s = |k: &str| h[k].as_str().expect("string").to_owned();
                (s("key"), s("value"))
            })
            .collect();
        let got: Vec<(String, String)> = frame
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        assert_eq!(got, headers);
        let payload = frame
            .payload
            .as_deref()
            .map(|p| String::from_utf8(p.to_vec()).expect("utf-8"));
        assert_eq!(payload.as_deref(), decoded["payload_utf8"].as_str());
    }

    #[test]
    fn every_vector_frame_decodes_and_encodes_back_byte_exact() {
        let mut seen = 0;
        for f in frames() {
            let mut hexes: Vec<(&Value, &Value)> = Vec::new();
            if let Some(h) = f.get("hex") {
                hexes.push((h, &f["decoded"]));
            }
            for key in ["python_sdk_reply_frames", "node_sdk_reply_frames"] {
                for r in f[key].as_array().into_iter().flatten() {
                    hexes.push((&r["hex"], &r["decoded"]));
                }
            }
            for (h, decoded) in hexes {
                let h = h.as_str().expect("hex string");
                let frame = decode_hex(h);
                assert_matches(&frame, decoded);
                assert_eq!(hex::encode(frame.to_bytes()), h, "{}", f["name"]);
                seen += 1;
            }
        }
        assert_eq!(seen, 14, "every frame of the vector file was checked");
    }

    #[test]
    fn ping_is_byte_identical_to_the_sdks() {
        for name in ["client ping (python", "client ping (node"] {
            let v = named(name);
            let service = v["decoded"]["service"].as_i64().expect("service");
            let ping = Frame::ping(i32::try_from(service).expect("i32"));
            assert_eq!(
                hex::encode(ping.to_bytes()),
                v["hex"].as_str().expect("hex")
            );
            assert_eq!(ping.kind(), Kind::Ping);
        }
    }

    /// Our ack for a vector data frame, compared with each SDK's reply frame: identical but
    /// for the `biz_rt` value (timing), and the payload compared as JSON, the `data` decoded.
    fn check_acks(delivered: &Frame, ours: &Frame, replies: &[Value]) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(!replies.is_empty());
        for reply in replies {
            let theirs = decode_hex(reply["hex"].as_str().expect("hex"));
            let strip = |f: &Frame| {
                let mut f = f.clone();
                f.headers.retain(|h| h.key != "biz_rt");
                f.payload = None;
                f
            };
            assert_eq!(strip(ours), strip(&theirs));
            assert_eq!(ours.headers.last().map(|h| h.key.as_str()), Some("biz_rt"));
            assert_eq!(strip(ours).headers, delivered.headers);
            let json = |f: &Frame| -> Value {
                let mut v: Value =
                    serde_json::from_slice(f.payload.as_deref().expect("payload")).expect("JSON");
                if let Some(d) = v.get("data").and_then(Value::as_str) {
                    v["data"] =
                        serde_json::from_slice(&b64.decode(d).expect("base64")).expect("data JSON");
                }
                v
            };
            assert_eq!(json(ours), json(&theirs));
        }
    }

    fn replies(v: &Value) -> Vec<Value> {
        ["python_sdk_reply_frames", "node_sdk_reply_frames"]
            .iter()
            .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
            .collect()
    }

    #[test]
    fn event_ack_matches_the_sdks_reply_frames() {
        let v = named("data-event im.message");
        let delivered = decode_hex(v["hex"].as_str().expect("hex"));
        assert_eq!(delivered.kind(), Kind::Event);
        let ours = delivered.ack(&Ack::ok(), 3);
        check_acks(&delivered, &ours, &replies(&v));
        // With the SDK's biz_rt the bytes are the Node SDK's exactly.
        let node = v["node_sdk_reply_frames"][0]["hex"].as_str().expect("hex");
        assert_eq!(hex::encode(delivered.ack(&Ack::ok(), 0).to_bytes()), node);
    }

    #[test]
    fn card_callback_ack_carries_the_answer_as_base64_data() {
        let v = named("data-event card.action.trigger");
        let delivered = decode_hex(v["hex"].as_str().expect("hex"));
        let answer = br#"{"toast":{"type":"success","content":"ok"}}"#;
        let ours = delivered.ack(&Ack::with_data(answer), 12);
        check_acks(&delivered, &ours, &replies(&v));
        let node = v["node_sdk_reply_frames"][0]["hex"].as_str().expect("hex");
        assert_eq!(
            hex::encode(delivered.ack(&Ack::with_data(answer), -1).to_bytes()),
            node
        );
    }

    #[test]
    fn fragments_reassemble_into_the_unsplit_payload_and_ack_from_the_last() {
        let whole = decode_hex(named("data-event im.message")["hex"].as_str().expect("hex"));
        let first = decode_hex(
            named("data-event fragment 0/2")["hex"]
                .as_str()
                .expect("hex"),
        );
        let last_v = named("data-event fragment 1/2");
        let last = decode_hex(last_v["hex"].as_str().expect("hex"));
        let now = Instant::now();
        // Either order works; the payload is the same event JSON as the unsplit frame.
        for (a, b) in [(&first, &last), (&last, &first)] {
            let mut f = Fragments::new(Duration::from_secs(5));
            assert_eq!(f.push(a, now), Ok(None));
            assert_eq!(f.pending(), 1);
            assert_eq!(f.push(b, now), Ok(whole.payload.clone()));
            assert_eq!(f.pending(), 0);
        }
        let mut all = replies(&last_v);
        let node_both = named("node SDK, both fragments");
        all.extend(
            node_both["node_sdk_reply_frames"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        check_acks(&last, &last.ack(&Ack::ok(), 1), &all);
    }

    #[test]
    fn partial_messages_expire_and_bad_indexes_are_refused() {
        let first = decode_hex(
            named("data-event fragment 0/2")["hex"]
                .as_str()
                .expect("hex"),
        );
        let last = decode_hex(
            named("data-event fragment 1/2")["hex"]
                .as_str()
                .expect("hex"),
        );
        let t0 = Instant::now();
        let mut f = Fragments::new(Duration::from_secs(5));
        assert_eq!(f.push(&first, t0), Ok(None));
        assert_eq!(f.expire(t0 + Duration::from_secs(4)), 0);
        assert_eq!(f.expire(t0 + Duration::from_secs(6)), 1);
        // The second half alone is not a message.
        assert_eq!(f.push(&last, t0 + Duration::from_secs(6)), Ok(None));

        let mut bad = first.clone();
        for h in &mut bad.headers {
            if h.key == "seq" {
                h.value = "2".into();
            }
        }
        assert_eq!(
            f.push(&bad, t0),
            Err(FragmentError::BadIndex { sum: 2, seq: 2 })
        );
        let mut big = first.clone();
        big.payload = Some(vec![b' '; MAX_PAYLOAD_BYTES + 1]);
        assert_eq!(
            f.push(&big, t0),
            Err(FragmentError::TooLarge(MAX_PAYLOAD_BYTES))
        );
    }

    #[test]
    fn legacy_card_frames_and_pongs_are_recognised() {
        let card = decode_hex(named("data-card")["hex"].as_str().expect("hex"));
        assert_eq!(card.kind(), Kind::Card);
        let pong = decode_hex(named("control pong")["hex"].as_str().expect("hex"));
        assert_eq!(pong.kind(), Kind::Pong);
    }
}

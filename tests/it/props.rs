//! Property tests over every parser that sees outside bytes: the decryptor, both signature
//! checks, the envelope classifier, message content (text and post), the command parser, the
//! card-click value decoder, work item refs and links, and the long connection's frames and
//! fragments. Inputs are arbitrary and near-valid (the shared vectors and our own valid inputs,
//! mutated: bytes flipped, inserted, deleted, truncated, hex case changed, JSON fields removed,
//! swapped, given the wrong type, huge numbers, unicode, deep nesting). Every property holds
//! that nothing panics and that what is refused is refused with a typed error; where a round
//! trip exists (encrypt → decrypt, sign → verify, encode → decode, render → parse) it holds.
//! One property drives the real HTTP routes and asserts the emulators saw no call and the
//! inbox stayed empty.
//!
//! Case counts live here and nowhere else: [`QUICK_CASES`] per property in the default run,
//! [`LONG_CASES`] in the long run (`cargo test --release -- --ignored`), which prints what it
//! ran. `PROPTEST_CASES` overrides both.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abort_bot::card_value::{ButtonValue, Kind as ButtonKind, Signer};
use abort_bot::clock::ManualClock;
use abort_bot::command::{self, ActCommand, Command, OptionChoice};
use abort_bot::domain::{Action, ReasonOption, WorkItemRef, item_link};
use abort_bot::lark::card_action::CardClick;
use abort_bot::lark::crypto::{self, DecryptError};
use abort_bot::lark::envelope::{CardActionEnvelope, Inbound, str_at};
use abort_bot::lark::message::{ReceivedMessage, command_text};
use abort_bot::lark::verify::{Refusal, SignatureHeaders, Verifier};
use abort_bot::lark::ws::frame::{
    Fragments, Frame, Header, MAX_PARTIAL, MAX_PARTS, MAX_PAYLOAD_BYTES, METHOD_DATA,
};
use abort_bot::lark::ws::{ClientConfig, ClientConfigPatch};
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use url::Url;

use super::helpers::*;

/// Cases per check in the default run: enough to catch a regression, cheap for CI.
const QUICK_CASES: u32 = 48;
/// Cases per check in the long run: 32 checks × 50,000 = 1.6 million, plus the HTTP property.
const LONG_CASES: u32 = 50_000;
/// The HTTP property makes a real request per case: it runs this fraction of the others' count.
const HTTP_SHARE: u32 = 50;
/// The long run's floor.
const LONG_TOTAL_AT_LEAST: u64 = 1_000_000;

/// `PROPTEST_CASES`, when set, replaces the per-check count.
fn cases_or(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs one check for `cases` cases; returns how many ran.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) -> u64 {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    u64::from(cases)
}

// ---------------------------------------------------------------------------------------
// Near-valid inputs: edits of bytes and of JSON.

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Toggles the ASCII case of a byte (hex digits, base64, header names).
    Case(Index),
    /// Copies a byte over another.
    Copy(Index, Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, m)| ByteEdit::Flip(i, m)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
        any::<Index>().prop_map(ByteEdit::Truncate),
        any::<Index>().prop_map(ByteEdit::Case),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ByteEdit::Copy(a, b)),
    ]
}

fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    prop::collection::vec(byte_edit(), 1..4)
}

fn edit_bytes(input: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut b = input.to_vec();
    for e in edits {
        let len = b.len();
        match e {
            ByteEdit::Insert(i, x) => b.insert(i.index(len + 1), *x),
            _ if len == 0 => {}
            ByteEdit::Flip(i, m) => b[i.index(len)] ^= m,
            ByteEdit::Delete(i) => {
                b.remove(i.index(len));
            }
            ByteEdit::Truncate(i) => b.truncate(i.index(len)),
            ByteEdit::Case(i) => {
                let i = i.index(len);
                if b[i].is_ascii_alphabetic() {
                    b[i] ^= 0x20;
                }
            }
            ByteEdit::Copy(from, to) => {
                let x = b[from.index(len)];
                b[to.index(len)] = x;
            }
        }
    }
    b
}

/// Edits of a string, kept a string (invalid UTF-8 is replaced).
fn edit_str(input: &str, edits: &[ByteEdit]) -> String {
    String::from_utf8_lossy(&edit_bytes(input.as_bytes(), edits)).into_owned()
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Remove(Index),
    Replace(Index, Value),
    Swap(Index, Index),
    /// Wraps a value in this many arrays.
    Nest(Index, usize),
    Rename(Index, String),
}

/// Values of the wrong type, out of range, odd unicode, or deeply nested.
fn odd_value() -> BoxedStrategy<Value> {
    prop_oneof![
        json_leaf(),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        "\\PC{0,24}".prop_map(Value::from),
        "[\u{0}-\u{1f}\u{202e}\u{feff}\u{fffd}\u{1f600}]{1,8}".prop_map(Value::from),
        (0usize..300).prop_map(|d| nested(d, json!(1))),
    ]
    .boxed()
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        any::<Index>().prop_map(JsonEdit::Remove),
        (any::<Index>(), odd_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| JsonEdit::Swap(a, b)),
        (any::<Index>(), 1usize..300).prop_map(|(i, d)| JsonEdit::Nest(i, d)),
        (any::<Index>(), "[a-z_]{0,10}|\\PC{0,6}").prop_map(|(i, k)| JsonEdit::Rename(i, k)),
    ]
}

fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(json_edit(), 1..4)
}

fn nested(depth: usize, inner: Value) -> Value {
    (0..depth).fold(inner, |v, _| Value::Array(vec![v]))
}

/// JSON pointers of every node below the root.
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, child) in o {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    walk(child, &p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

fn split_pointer(p: &str) -> (&str, String) {
    let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
    (parent, last.replace("~1", "/").replace("~0", "~"))
}

fn edit_json(input: &Value, edits: &[JsonEdit]) -> Value {
    let mut v = input.clone();
    for e in edits {
        let ptrs = pointers(&v);
        if ptrs.is_empty() {
            continue;
        }
        let pick = |i: &Index| ptrs[i.index(ptrs.len())].clone();
        match e {
            JsonEdit::Remove(i) | JsonEdit::Rename(i, _) => {
                let p = pick(i);
                let (parent, key) = split_pointer(&p);
                let Some(parent) = v.pointer_mut(parent) else {
                    continue;
                };
                let removed = match parent {
                    Value::Object(o) => o.remove(&key),
                    Value::Array(a) => key
                        .parse::<usize>()
                        .ok()
                        .filter(|i| *i < a.len())
                        .map(|i| a.remove(i)),
                    _ => None,
                };
                if let (JsonEdit::Rename(_, name), Some(value), Value::Object(o)) =
                    (e, removed, parent)
                {
                    o.insert(name.clone(), value);
                }
            }
            JsonEdit::Replace(i, new) => {
                if let Some(slot) = v.pointer_mut(&pick(i)) {
                    *slot = new.clone();
                }
            }
            JsonEdit::Swap(a, b) => {
                let (pa, pb) = (pick(a), pick(b));
                // A value cannot be swapped with one inside itself.
                if pa.starts_with(&pb) || pb.starts_with(&pa) {
                    continue;
                }
                let (Some(va), Some(vb)) = (v.pointer(&pa).cloned(), v.pointer(&pb).cloned())
                else {
                    continue;
                };
                if let Some(slot) = v.pointer_mut(&pa) {
                    *slot = vb;
                }
                if let Some(slot) = v.pointer_mut(&pb) {
                    *slot = va;
                }
            }
            JsonEdit::Nest(i, depth) => {
                if let Some(slot) = v.pointer_mut(&pick(i)) {
                    *slot = nested(*depth, slot.take());
                }
            }
        }
    }
    v
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::from),
        "[a-z_.]{0,16}".prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep, with keys the parsers look for among random ones.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                object_of(inner),
            ]
        })
        .boxed()
}

/// A JSON object of `values`, its keys often ones the parsers look for.
fn object_of(values: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "schema",
            "header",
            "event",
            "token",
            "type",
            "encrypt",
            "challenge",
            "event_id",
            "event_type",
            "message",
            "content",
            "action",
            "value",
            "operator",
            "open_id",
            "uuid",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,8}",
    ];
    prop::collection::btree_map(key, values, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

/// Bytes that are not JSON, JSON of any shape, and deep nesting (past serde_json's limit).
fn arbitrary_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (0usize..5000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        (0usize..5000)
            .prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes()),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// The shared vectors.

fn vector_list(file: &str, key: &str) -> Vec<Value> {
    shared_vectors(file)[key]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: {key}"))
        .clone()
}

fn field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key}: {v}"))
        .to_owned()
}

/// The decrypted envelopes of the HTTP vectors.
fn envelope_vectors() -> Vec<Value> {
    vector_list("http_requests.json", "requests")
        .iter()
        .filter_map(|r| r["decrypted_body"].as_str())
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn verifier(encrypt_key: Option<&str>, verification_token: &str, now: i64) -> Verifier {
    Verifier::new(
        secret(verification_token),
        encrypt_key.map(secret),
        Duration::from_secs(3600),
        Arc::new(ManualClock::at_secs(now)),
    )
}

fn headers(ts: &str, nonce: &str, sig: &str) -> SignatureHeaders {
    SignatureHeaders {
        timestamp: Some(ts.to_owned()),
        nonce: Some(nonce.to_owned()),
        signature: Some(sig.to_owned()),
    }
}

/// The event signature, computed here with sha2 (not the bot's code).
fn sha256_signature(ts: &str, nonce: &str, key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{ts}{nonce}{key}").as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// The legacy card signature, computed here with sha1.
fn sha1_signature(ts: &str, nonce: &str, token: &str, body: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("{ts}{nonce}{token}").as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Lark's encryption, done here with the RustCrypto crates (not the bot's code).
fn lark_encrypt(key: &str, plaintext: &[u8], iv: [u8; 16]) -> String {
    let key: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let cipher = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut out = iv.to_vec();
    out.extend(cipher);
    STANDARD.encode(out)
}

/// Which part of a signed request a near-valid case changes.
#[derive(Debug, Clone)]
enum Tamper {
    Timestamp(i64),
    Nonce(Vec<ByteEdit>),
    Body(Vec<ByteEdit>),
    Signature(Vec<ByteEdit>),
    /// The same signature in uppercase hex.
    UppercaseSignature,
    /// One header left out.
    Drop(u8),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        prop_oneof![-3600i64..-1, 1i64..300].prop_map(Tamper::Timestamp),
        byte_edits().prop_map(Tamper::Nonce),
        byte_edits().prop_map(Tamper::Body),
        byte_edits().prop_map(Tamper::Signature),
        Just(Tamper::UppercaseSignature),
        (0u8..3).prop_map(Tamper::Drop),
    ]
}

/// A signed request, tampered with; None when the edit changed nothing.
fn tampered(
    ts: &str,
    nonce: &str,
    body: &[u8],
    sig: &str,
    t: &Tamper,
) -> Option<(SignatureHeaders, Vec<u8>)> {
    let mut h = headers(ts, nonce, sig);
    let mut b = body.to_vec();
    match t {
        Tamper::Timestamp(by) => {
            let ts: i64 = ts.parse().ok()?;
            h.timestamp = Some((ts + by).to_string());
        }
        Tamper::Nonce(e) => h.nonce = Some(edit_str(nonce, e)),
        Tamper::Body(e) => b = edit_bytes(body, e),
        Tamper::Signature(e) => h.signature = Some(edit_str(sig, e)),
        Tamper::UppercaseSignature => h.signature = Some(sig.to_uppercase()),
        Tamper::Drop(0) => h.timestamp = None,
        Tamper::Drop(1) => h.nonce = None,
        Tamper::Drop(_) => h.signature = None,
    }
    // A missing nonce header hashes as the empty nonce (as in the SDKs), so leaving out an
    // empty one changes nothing.
    let unchanged = h.timestamp.as_deref() == Some(ts)
        && h.nonce.as_deref().unwrap_or_default() == nonce
        && h.signature.as_deref() == Some(sig)
        && b == body;
    (!unchanged).then_some((h, b))
}

// ---------------------------------------------------------------------------------------
// The properties. Each returns how many cases it ran.

/// Arbitrary and near-valid `encrypt` fields are decrypted or refused with the right
/// [`DecryptError`]; whatever is encrypted the way Lark does decrypts to itself.
fn decryptor(cases: u32) -> u64 {
    /// The error the input's shape calls for, when the shape alone decides.
    fn classify(key: &str, text: &str) -> TestCaseResult {
        let result = crypto::decrypt(key, text);
        match STANDARD.decode(text.as_bytes()) {
            Err(_) => prop_assert_eq!(result, Err(DecryptError::Base64)),
            Ok(raw) if raw.len() < 32 || raw.len() % 16 != 0 => {
                prop_assert_eq!(result, Err(DecryptError::Length))
            }
            Ok(_) => prop_assert!(
                !matches!(result, Err(DecryptError::Base64 | DecryptError::Length)),
                "{result:?}"
            ),
        }
        Ok(())
    }
    let vectors = vector_list("aes.json", "vectors");
    let mut n = check(
        "decrypt: arbitrary input",
        cases,
        (
            any::<String>(),
            prop_oneof![
                any::<String>(),
                prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| STANDARD.encode(b)),
            ],
        ),
        |(key, text)| classify(&key, &text),
    );
    n += check(
        "decrypt: edited vectors",
        cases,
        (0..vectors.len(), byte_edits()),
        |(i, edits)| {
            let v = &vectors[i];
            classify(
                &field(v, "encrypt_key"),
                &edit_str(&field(v, "ciphertext_b64"), &edits),
            )
        },
    );
    n += check(
        "decrypt: Lark's encryption round-trips",
        cases,
        (any::<String>(), any::<String>(), any::<[u8; 16]>()),
        |(key, plain, iv)| {
            let sealed = lark_encrypt(&key, plain.as_bytes(), iv);
            prop_assert_eq!(crypto::decrypt(&key, &sealed), Ok(plain));
            Ok(())
        },
    );
    n
}

/// The event signature (SHA-256): a correctly signed body is never refused for its
/// signature; any change to a signed vector request is refused as unauthorized.
fn event_signature(cases: u32) -> u64 {
    let vectors = vector_list("event_signature.json", "vectors");
    let mut n = check(
        "event signature: tampered vectors",
        cases,
        (0..vectors.len(), tamper()),
        |(i, t)| {
            let v = &vectors[i];
            let (ts, nonce, key, body, sig) = (
                field(v, "timestamp"),
                field(v, "nonce"),
                field(v, "encrypt_key"),
                field(v, "body"),
                field(v, "x_lark_signature"),
            );
            let now: i64 = ts.parse().expect("vector timestamp");
            let Some((h, body)) = tampered(&ts, &nonce, body.as_bytes(), &sig, &t) else {
                return Ok(());
            };
            let result = verifier(Some(&key), VT, now).open_event(&h, &body);
            prop_assert!(
                matches!(result, Err(Refusal::Unauthorized(_))),
                "{t:?}: {result:?}"
            );
            Ok(())
        },
    );
    n += check(
        "event signature: correctly signed arbitrary bodies",
        cases,
        (
            prop_oneof![
                arbitrary_body(),
                prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| {
                    json!({"encrypt": STANDARD.encode(b)})
                        .to_string()
                        .into_bytes()
                }),
            ],
            "[ -~]{0,40}",
            any::<String>(),
        ),
        |(body, nonce, key)| {
            let ts = NOW.to_string();
            let sig = sha256_signature(&ts, &nonce, &key, &body);
            let result =
                verifier(Some(&key), VT, NOW).open_event(&headers(&ts, &nonce, &sig), &body);
            prop_assert!(
                !matches!(result, Err(Refusal::Unauthorized(_)) | Ok(_)),
                "{result:?}"
            );
            Ok(())
        },
    );
    n += check(
        "event signature: arbitrary headers",
        cases,
        (
            arbitrary_body(),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
        ),
        |(body, timestamp, nonce, signature)| {
            let h = SignatureHeaders {
                timestamp,
                nonce,
                signature,
            };
            prop_assert!(verifier(Some(EK), VT, NOW).open_event(&h, &body).is_err());
            Ok(())
        },
    );
    n
}

/// The legacy card signature (SHA-1 over the verification token), likewise.
fn card_signature(cases: u32) -> u64 {
    let vectors = vector_list("card_signature.json", "vectors");
    let mut n = check(
        "card signature: tampered vectors",
        cases,
        (0..vectors.len(), tamper()),
        |(i, t)| {
            let v = &vectors[i];
            let (ts, nonce, token, body, sig) = (
                field(v, "timestamp"),
                field(v, "nonce"),
                field(v, "verification_token"),
                field(v, "body"),
                field(v, "x_lark_signature"),
            );
            let now: i64 = ts.parse().expect("vector timestamp");
            let Some((h, body)) = tampered(&ts, &nonce, body.as_bytes(), &sig, &t) else {
                return Ok(());
            };
            let result = verifier(None, &token, now).open_card(&h, &body);
            let still_legacy_json = serde_json::from_slice::<Value>(&body)
                .is_ok_and(|j| j.get("schema").is_none() && j.get("encrypt").is_none());
            if still_legacy_json {
                prop_assert!(
                    matches!(result, Err(Refusal::Unauthorized(_))),
                    "{t:?}: {result:?}"
                );
            } else {
                prop_assert!(result.is_err(), "{t:?}: {result:?}");
            }
            Ok(())
        },
    );
    n += check(
        "card signature: correctly signed arbitrary callbacks",
        cases,
        (object_of(json_value()), "[ -~]{0,40}"),
        |(body, nonce)| {
            let Value::Object(mut o) = body else {
                return Ok(());
            };
            for k in ["schema", "encrypt", "type"] {
                o.remove(k);
            }
            let has_action = o.contains_key("action");
            let body = Value::Object(o).to_string().into_bytes();
            let ts = NOW.to_string();
            let sig = sha1_signature(&ts, &nonce, VT, &body);
            let result = verifier(None, VT, NOW).open_card(&headers(&ts, &nonce, &sig), &body);
            if has_action {
                prop_assert!(
                    matches!(result, Ok(Inbound::LegacyCardAction(_))),
                    "{result:?}"
                );
            } else {
                prop_assert_eq!(result, Err(Refusal::BadRequest("not a card callback")));
            }
            Ok(())
        },
    );
    n += check(
        "card signature: arbitrary headers",
        cases,
        (
            arbitrary_body(),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
        ),
        |(body, timestamp, nonce, signature)| {
            let h = SignatureHeaders {
                timestamp,
                nonce,
                signature,
            };
            prop_assert!(verifier(None, VT, NOW).open_card(&h, &body).is_err());
            Ok(())
        },
    );
    n
}

/// What a plain envelope is, by a model of Lark's rules written apart from the verifier. Over
/// HTTP the verification token is compared on every envelope; over the long connection it is
/// not: real payloads there carry `header.token: ""` (`protocol/lark-websocket.md` §6.5,
/// contract third edition).
fn expected_class(j: &Value, compare_token: bool) -> Option<&'static str> {
    let token_ok = |p: &str| !compare_token || str_at(j, p) == Some(VT);
    if j.get("type").and_then(Value::as_str) == Some("url_verification") {
        return (token_ok("/token") && str_at(j, "/challenge").is_some()).then_some("challenge");
    }
    if j.get("schema").and_then(Value::as_str) == Some("2.0") {
        let ok = token_ok("/header/token")
            && str_at(j, "/header/event_id").is_some()
            && str_at(j, "/header/event_type").is_some();
        let card = str_at(j, "/header/event_type") == Some("card.action.trigger");
        return ok.then_some(if card { "card" } else { "event" });
    }
    if j.get("type").and_then(Value::as_str) == Some("event_callback") {
        return (token_ok("/token") && str_at(j, "/uuid").is_some()).then_some("event");
    }
    None
}

/// The envelope classifier (plain JSON, no crypto), on both ways in: every input is classified
/// as the model says, with the ids the envelope carries, or refused.
fn envelope_classifier(cases: u32) -> u64 {
    let envelopes = envelope_vectors();
    let classify_on = |body: &[u8], http: bool| -> TestCaseResult {
        let verifier = verifier(None, VT, NOW);
        // The plain webhook path (no encrypt key, no signature headers), or the long connection.
        let result = if http {
            verifier.open_event(&SignatureHeaders::default(), body)
        } else {
            verifier.open_plain(body)
        };
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let expected = json
            .as_ref()
            .filter(|j| j.get("encrypt").is_none())
            .and_then(|j| expected_class(j, http));
        match (&result, expected) {
            (Ok(Inbound::Challenge { challenge }), Some("challenge")) => {
                let j = json.as_ref().expect("parsed");
                prop_assert_eq!(Some(challenge.as_str()), str_at(j, "/challenge"));
            }
            (Ok(Inbound::Event(e)), Some("event")) => {
                let j = json.as_ref().expect("parsed");
                let id = if j.get("schema").and_then(Value::as_str) == Some("2.0") {
                    str_at(j, "/header/event_id")
                } else {
                    str_at(j, "/uuid")
                };
                prop_assert_eq!(Some(e.event_id.as_str()), id);
                prop_assert!(!e.event_type.is_empty());
            }
            (Ok(Inbound::CardAction(c)), Some("card")) => {
                let j = json.as_ref().expect("parsed");
                prop_assert_eq!(Some(c.event_id.as_str()), str_at(j, "/header/event_id"));
            }
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "expected {want:?}, got {got:?}"),
        }
        Ok(())
    };
    let classify = |body: &[u8]| -> TestCaseResult {
        for http in [true, false] {
            classify_on(body, http)?;
        }
        Ok(())
    };
    let mut n = check(
        "envelopes: arbitrary bodies",
        cases,
        arbitrary_body(),
        |b| classify(&b),
    );
    n += check(
        "envelopes: edited vectors",
        cases,
        (0..envelopes.len(), json_edits()),
        |(i, edits)| classify(edit_json(&envelopes[i], &edits).to_string().as_bytes()),
    );
    n += check(
        "envelopes: byte-edited vectors",
        cases,
        (0..envelopes.len(), byte_edits()),
        |(i, edits)| classify(&edit_bytes(envelopes[i].to_string().as_bytes(), &edits)),
    );
    n
}

#[derive(Debug, Clone)]
enum Run {
    Text(String),
    Link(String),
    At(String),
    Image,
}

fn post_run() -> impl Strategy<Value = Run> {
    prop_oneof![
        "\\PC{0,12}".prop_map(Run::Text),
        "\\PC{0,12}".prop_map(Run::Link),
        "@_user_[0-9]".prop_map(Run::At),
        Just(Run::Image),
    ]
}

/// Message content (text and post) and the `im.message.receive_v1` reader.
fn message_content(cases: u32) -> u64 {
    let messages: Vec<Value> = envelope_vectors()
        .into_iter()
        .filter(|e| str_at(e, "/header/event_type") == Some("im.message.receive_v1"))
        .collect();
    assert!(!messages.is_empty(), "the vectors hold message events");
    let mut n = check(
        "content: arbitrary",
        cases,
        (
            prop_oneof![
                Just("text".to_owned()),
                Just("post".to_owned()),
                "\\PC{0,8}"
            ],
            prop_oneof![any::<String>(), json_value().prop_map(|v| v.to_string())],
        ),
        |(kind, content)| {
            let text = command_text(&kind, &content);
            if kind != "text" && kind != "post" {
                prop_assert_eq!(text, None);
            }
            Ok(())
        },
    );
    n += check("content: text round-trips", cases, any::<String>(), |s| {
        prop_assert_eq!(
            command_text("text", &json!({ "text": s }).to_string()),
            Some(s)
        );
        Ok(())
    });
    n += check(
        "content: post keeps text and links, drops mentions and media",
        cases,
        (
            prop::collection::vec(prop::collection::vec(post_run(), 0..5), 0..4),
            any::<bool>(),
        ),
        |(paragraphs, wrapped)| {
            let content: Vec<Value> = paragraphs
                .iter()
                .map(|p| {
                    Value::Array(
                        p.iter()
                            .map(|r| match r {
                                Run::Text(t) => json!({"tag": "text", "text": t, "style": []}),
                                Run::Link(t) => json!({"tag": "a", "text": t, "href": "x"}),
                                Run::At(k) => json!({"tag": "at", "user_id": k, "user_name": "b"}),
                                Run::Image => json!({"tag": "img", "image_key": "k"}),
                            })
                            .collect(),
                    )
                })
                .collect();
            let post = json!({"title": "", "content": content});
            let post = if wrapped {
                json!({ "zh_cn": post })
            } else {
                post
            };
            let expected = paragraphs
                .iter()
                .map(|p| {
                    p.iter()
                        .filter_map(|r| match r {
                            Run::Text(t) | Run::Link(t) => Some(t.as_str()),
                            _ => None,
                        })
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\n");
            prop_assert_eq!(command_text("post", &post.to_string()), Some(expected));
            Ok(())
        },
    );
    n += check(
        "message events: edited vectors and arbitrary JSON",
        cases,
        prop_oneof![
            (0..messages.len(), json_edits()).prop_map(move |(i, e)| edit_json(&messages[i], &e)),
            json_value(),
        ],
        |event| {
            if let Ok(m) = ReceivedMessage::from_event(&event) {
                prop_assert_eq!(
                    Some(m.message_id.as_str()),
                    str_at(&event, "/event/message/message_id")
                );
                prop_assert_eq!(
                    Some(m.chat_id.as_str()),
                    str_at(&event, "/event/message/chat_id")
                );
            }
            Ok(())
        },
    );
    n
}

fn web_url() -> Url {
    Url::parse("https://project.feishu.cn").expect("url")
}

const KEY_CHARS: &str = "[A-Za-z0-9_-]{1,20}";

#[derive(Debug, Clone)]
enum RefForm {
    Id(u64),
    Typed(String, u64),
    Link(String, String, u64),
}

fn ref_form() -> impl Strategy<Value = RefForm> {
    let id = 1u64..=9_999_999_999_999_999_999;
    prop_oneof![
        id.clone().prop_map(RefForm::Id),
        (KEY_CHARS, id.clone()).prop_map(|(t, i)| RefForm::Typed(t, i)),
        (KEY_CHARS, KEY_CHARS, id).prop_map(|(s, t, i)| RefForm::Link(s, t, i)),
    ]
}

impl RefForm {
    fn text(&self) -> String {
        match self {
            RefForm::Id(id) => id.to_string(),
            RefForm::Typed(t, id) => format!("{t}/{id}"),
            RefForm::Link(s, t, id) => item_link(&web_url(), s, t, *id),
        }
    }

    fn parsed(&self) -> WorkItemRef {
        match self {
            RefForm::Id(id) => WorkItemRef {
                space: None,
                type_key: None,
                id: *id,
            },
            RefForm::Typed(t, id) => WorkItemRef {
                space: None,
                type_key: Some(t.clone()),
                id: *id,
            },
            RefForm::Link(s, t, id) => WorkItemRef {
                space: Some(s.clone()),
                type_key: Some(t.clone()),
                id: *id,
            },
        }
    }
}

fn option_word(action: Action) -> impl Strategy<Value = (ReasonOption, String)> {
    let words: Vec<(ReasonOption, &'static str)> = action
        .options()
        .iter()
        .flat_map(|o| {
            let zh: &[&str] = match o.key() {
                "cancel" => &["取消"],
                "repeat" => &["重复", "合并"],
                "restart" => &["重启"],
                "rollback" => &["回退"],
                "test" => &["测试"],
                "other" => &["其他"],
                _ => &[],
            };
            std::iter::once((o.clone(), o.key())).chain(zh.iter().map(move |w| (o.clone(), *w)))
        })
        .collect();
    (prop::sample::select(words), any::<u64>()).prop_map(|((o, w), case_bits)| {
        // Option words are case-insensitive.
        let word = w
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if case_bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        (o, word)
    })
}

/// Text made of words, joined by runs of white space with mention placeholders among them.
fn spaced(words: &[String], gaps: &[(u8, bool)]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        let (spaces, mention) = gaps.get(i).copied().unwrap_or((1, false));
        out.push_str(
            &" \t\u{3000}\n"
                .chars()
                .cycle()
                .take(usize::from(spaces % 4) + 1)
                .collect::<String>(),
        );
        if mention {
            out.push_str("@_user_1 ");
        }
        out.push_str(w);
    }
    out
}

/// The command parser: total on any text; a rendered command parses back to itself.
fn command_parser(cases: u32) -> u64 {
    let web = web_url();
    let mut n = check(
        "commands: arbitrary text",
        cases,
        prop_oneof![
            any::<String>(),
            "\\PC{0,200}",
            "(/|／)(abort|restore|bind|help|终止|恢复)( [a-z0-9/:._-]{0,30}){0,12}"
        ],
        |text| {
            let _ = command::parse(&text, &web);
            Ok(())
        },
    );
    n += check(
        "commands: /abort and /restore round-trip",
        cases,
        (
            any::<bool>(),
            prop::collection::vec(ref_form(), 1..6),
            any::<bool>(),
            prop::collection::vec("[a-z0-9\u{4e00}-\u{4e20}]{1,8}", 0..5),
            prop::collection::vec((any::<u8>(), any::<bool>()), 0..16),
        ),
        |(restore, refs, with_option, reason, gaps)| {
            let action = if restore {
                Action::Restore
            } else {
                Action::Abort
            };
            // Pick the option deterministically from the case's own data.
            let options = action.options();
            let option = options[reason.len() % options.len()].clone();
            let mut words = vec![format!("/{}", action.key())];
            words.extend(refs.iter().map(RefForm::text));
            if with_option {
                words.push(option.key().to_uppercase());
            }
            words.extend(reason.iter().cloned());
            let text = spaced(&words, &gaps);
            let mut expected_refs: Vec<WorkItemRef> = Vec::new();
            for r in refs.iter().map(RefForm::parsed) {
                if !expected_refs.contains(&r) {
                    expected_refs.push(r);
                }
            }
            if !with_option
                && reason.first().is_some_and(|w| {
                    // Without an option word the reason's first word comes right after the
                    // refs: one that is a ref, an option or a near miss means something else.
                    WorkItemRef::parse(w, &web).is_some()
                        || action.parse_option(w).is_some()
                        || action.suggest_option(w).is_some()
                })
            {
                return Ok(());
            }
            let mut tail = Vec::new();
            if with_option {
                tail.push(option.key().to_uppercase());
            }
            tail.extend(reason.iter().cloned());
            let reason = reason.join(" ");
            let choice = if with_option {
                OptionChoice::Chosen { option, reason }
            } else {
                OptionChoice::Missing { reason }
            };
            prop_assert_eq!(
                command::parse(&text, &web),
                Ok(Command::Act(ActCommand {
                    action,
                    refs: expected_refs,
                    choice,
                    tail,
                }))
            );
            Ok(())
        },
    );
    n += check(
        "commands: option words in any case and both languages",
        cases,
        (any::<bool>(), ref_form()).prop_flat_map(|(restore, r)| {
            let action = if restore {
                Action::Restore
            } else {
                Action::Abort
            };
            (Just(action), Just(r), option_word(action))
        }),
        |(action, r, (option, word))| {
            let text = format!("/{} {} {word} why", action.key(), r.text());
            prop_assert_eq!(
                command::parse(&text, &web),
                Ok(Command::Act(ActCommand {
                    action,
                    refs: vec![r.parsed()],
                    choice: OptionChoice::Chosen {
                        option,
                        reason: "why".into()
                    },
                    tail: vec![word.clone(), "why".into()],
                }))
            );
            Ok(())
        },
    );
    n += check(
        "commands: edited valid commands",
        cases,
        (
            prop::sample::select(vec![
                "@_user_1 /abort 12345 repeat duplicate of 12001",
                "/restore story/12345 https://project.feishu.cn/doc/issue/detail/3 rollback",
                "/bind doc",
                "/终止 12345 取消 原因",
                "/help",
            ]),
            byte_edits(),
        ),
        |(text, edits)| {
            let _ = command::parse(&edit_str(text, &edits), &web);
            Ok(())
        },
    );
    n
}

fn button_value() -> impl Strategy<Value = ButtonValue> {
    let item = (
        proptest::option::of(KEY_CHARS),
        proptest::option::of(KEY_CHARS),
        1u64..,
    )
        .prop_map(|(space, type_key, id)| WorkItemRef {
            space,
            type_key,
            id,
        });
    (
        any::<bool>(),
        any::<bool>(),
        any::<Index>(),
        any::<bool>(),
        proptest::option::of("\\PC{0,60}"),
        prop::collection::vec(item, 0..6),
        any::<String>(),
        any::<i64>(),
    )
        .prop_map(
            |(go, restore, opt, with_opt, reason, items, nonce, issued_at)| {
                let action = if restore {
                    Action::Restore
                } else {
                    Action::Abort
                };
                ButtonValue {
                    kind: if go {
                        ButtonKind::Go
                    } else {
                        ButtonKind::Cancel
                    },
                    action,
                    option: with_opt
                        .then(|| action.options()[opt.index(action.options().len())].clone()),
                    reason,
                    items,
                    nonce,
                    issued_at,
                }
            },
        )
}

/// Button values: what this bot signed verifies to itself; any change to it, and anything
/// else, is refused. Card callbacks of any shape are read or refused.
fn card_click_value(cases: u32) -> u64 {
    let signer = Signer::new(secret("card-secret-for-properties"));
    let clicks: Vec<Value> = envelope_vectors()
        .into_iter()
        .filter(|e| {
            str_at(e, "/header/event_type") == Some("card.action.trigger")
                || e.get("open_id").is_some()
        })
        .collect();
    assert!(!clicks.is_empty(), "the vectors hold card callbacks");
    let mut n = check(
        "button values: sign then verify round-trips",
        cases,
        button_value(),
        |v| {
            prop_assert_eq!(signer.verify(&signer.sign(&v)), Ok(v));
            Ok(())
        },
    );
    n += check(
        "button values: any edit is refused",
        cases,
        (button_value(), json_edits()),
        |(v, edits)| {
            let signed = signer.sign(&v);
            let edited = edit_json(&signed, &edits);
            if edited == signed {
                return Ok(());
            }
            let result = signer.verify(&edited);
            prop_assert!(result.is_err(), "{edited} → {result:?}");
            Ok(())
        },
    );
    n += check(
        "button values: another key, arbitrary values",
        cases,
        (button_value(), json_value()),
        |(v, arbitrary)| {
            let other = Signer::new(secret("another-secret"));
            prop_assert!(signer.verify(&other.sign(&v)).is_err());
            prop_assert!(signer.verify(&arbitrary).is_err());
            Ok(())
        },
    );
    n += check(
        "card callbacks: edited vectors and arbitrary JSON",
        cases,
        prop_oneof![
            (0..clicks.len(), json_edits()).prop_map(move |(i, e)| edit_json(&clicks[i], &e)),
            json_value(),
        ],
        |body| {
            let env = CardActionEnvelope {
                event_id: "e".into(),
                body: body.clone(),
            };
            if let Ok(c) = CardClick::from_v2(&env) {
                prop_assert!(c.operator.open_id.is_some() || c.operator.union_id.is_some());
            }
            if let Ok(c) = CardClick::from_legacy(&body) {
                prop_assert_eq!(c.operator.open_id.as_deref(), str_at(&body, "/open_id"));
                prop_assert!(c.click_id.starts_with("legacy:"));
            }
            Ok(())
        },
    );
    n
}

/// Work item refs: ids, `type/id` and links round-trip; nothing else panics, and a link on a
/// host that is not Feishu Project's is never taken.
fn url_refs(cases: u32) -> u64 {
    let configured = Url::parse("https://meegle.example.test/workspace/").expect("url");
    let mut n = check(
        "refs: arbitrary words",
        cases,
        prop_oneof![
            any::<String>(),
            "https?://[a-z.]{0,20}(/[A-Za-z0-9_%.-]{0,12}){0,6}[?#]?\\PC{0,10}"
        ],
        |word| {
            if let Some(r) = WorkItemRef::parse(&word, &web_url()) {
                prop_assert!(r.id > 0);
            }
            Ok(())
        },
    );
    n += check(
        "refs: every form round-trips",
        cases,
        (ref_form(), any::<bool>()),
        |(form, on_configured)| {
            let (text, web) = match (&form, on_configured) {
                (RefForm::Link(s, t, id), true) => {
                    (item_link(&configured, s, t, *id), configured.clone())
                }
                _ => (form.text(), web_url()),
            };
            prop_assert_eq!(WorkItemRef::parse(&text, &web), Some(form.parsed()));
            Ok(())
        },
    );
    n += check(
        "refs: other hosts and edited links",
        cases,
        (
            "[a-z]{1,10}\\.example",
            KEY_CHARS,
            KEY_CHARS,
            1u64..,
            byte_edits(),
        ),
        |(host, space, type_key, id, edits)| {
            let foreign = format!("https://{host}/{space}/{type_key}/detail/{id}");
            prop_assert_eq!(WorkItemRef::parse(&foreign, &web_url()), None);
            let link = item_link(&web_url(), &space, &type_key, id);
            if let Some(r) = WorkItemRef::parse(&edit_str(&link, &edits), &web_url()) {
                prop_assert!(r.id > 0);
            }
            Ok(())
        },
    );
    n
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        (any::<u64>(), any::<u64>(), any::<i32>(), any::<i32>()),
        prop::collection::vec((any::<String>(), any::<String>()), 0..5),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |((seq_id, log_id, service, method), headers, enc, ty, payload, log_id_new)| Frame {
                seq_id,
                log_id,
                service,
                method,
                headers: headers
                    .into_iter()
                    .map(|(k, v)| Header::new(k, v))
                    .collect(),
                payload_encoding: enc,
                payload_type: ty,
                payload,
                log_id_new,
            },
        )
}

fn data_frame(message_id: &str, sum: &str, seq: &str, payload: Vec<u8>) -> Frame {
    Frame {
        method: METHOD_DATA,
        headers: vec![
            Header::new("type", "event"),
            Header::new("message_id", message_id),
            Header::new("sum", sum),
            Header::new("seq", seq),
        ],
        payload: Some(payload),
        ..Frame::default()
    }
}

/// The long connection: frames decode or are refused, encode → decode round-trips,
/// fragments reassemble in any order and stay bounded, pong configs never make a busy loop.
fn ws_frames(cases: u32) -> u64 {
    let vectors: Vec<Vec<u8>> = vector_list("ws_frames.json", "frames")
        .iter()
        .filter_map(|f| f["hex"].as_str())
        .map(|h| hex::decode(h).expect("vector hex"))
        .collect();
    let mut n = check(
        "frames: arbitrary and edited bytes",
        cases,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            (0..vectors.len(), byte_edits()).prop_map(move |(i, e)| edit_bytes(&vectors[i], &e)),
        ],
        |bytes| {
            if let Ok(f) = Frame::decode_bytes(&bytes) {
                // What decodes re-encodes to a frame that decodes to itself.
                prop_assert_eq!(Frame::decode_bytes(&f.to_bytes()), Ok(f));
            }
            Ok(())
        },
    );
    n += check(
        "frames: encode → decode round-trips",
        cases,
        frame(),
        |f| {
            prop_assert_eq!(Frame::decode_bytes(&f.to_bytes()), Ok(f));
            Ok(())
        },
    );
    n += check(
        "fragments: any order, among others, reassemble once",
        cases,
        (
            prop::collection::vec(any::<u8>(), 0..2000),
            1usize..=MAX_PARTS.min(12),
        )
            .prop_flat_map(|(payload, parts)| {
                let order: Vec<usize> = (0..parts).collect();
                (Just(payload), Just(parts), Just(order).prop_shuffle())
            }),
        |(payload, parts, order)| {
            let mut fragments = Fragments::new(Duration::from_secs(5));
            let now = Instant::now();
            let chunk = payload.len().div_ceil(parts).max(1);
            let pieces: Vec<Vec<u8>> = (0..parts)
                .map(|i| {
                    payload
                        .iter()
                        .skip(i * chunk)
                        .take(chunk)
                        .copied()
                        .collect()
                })
                .collect();
            // Another message's first part in between must not disturb this one.
            let noise = data_frame("other", "2", "0", b"noise".to_vec());
            let mut done = Vec::new();
            for (k, seq) in order.iter().enumerate() {
                if k == 1 {
                    prop_assert_eq!(fragments.push(&noise, now), Ok(None));
                }
                let f = data_frame(
                    "m",
                    &parts.to_string(),
                    &seq.to_string(),
                    pieces[*seq].clone(),
                );
                if let Some(whole) = fragments.push(&f, now).expect("a valid fragment") {
                    done.push((k, whole));
                }
            }
            prop_assert_eq!(done, vec![(parts - 1, payload)]);
            Ok(())
        },
    );
    n += check(
        "fragments: arbitrary headers stay bounded",
        cases,
        prop::collection::vec(
            (
                "[a-c]{1,2}",
                prop_oneof![
                    "[0-9]{1,3}",
                    "\\PC{0,4}",
                    Just("-1".to_owned()),
                    Just("18446744073709551616".to_owned())
                ],
                prop_oneof!["[0-9]{1,3}", "\\PC{0,4}"],
                prop::collection::vec(any::<u8>(), 0..64),
                any::<bool>(),
            ),
            0..40,
        ),
        |frames| {
            let mut fragments = Fragments::new(Duration::from_secs(5));
            let now = Instant::now();
            for (id, sum, seq, payload, with_id) in frames {
                let mut f = data_frame(&id, &sum, &seq, payload);
                if !with_id {
                    f.headers.retain(|h| h.key != "message_id");
                }
                if let Ok(Some(whole)) = fragments.push(&f, now) {
                    prop_assert!(whole.len() <= MAX_PAYLOAD_BYTES);
                }
                prop_assert!(fragments.pending() <= MAX_PARTIAL);
            }
            Ok(())
        },
    );
    n += check(
        "pongs: any ClientConfig keeps a usable ping interval",
        cases,
        prop_oneof![
            arbitrary_body(),
            (
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any::<i64>()),
            )
                .prop_map(|(p, c, i, r)| {
                    json!({"PingInterval": p, "ReconnectCount": c,
                                                "ReconnectInterval": i, "ReconnectNonce": r})
                    .to_string()
                    .into_bytes()
                }),
        ],
        |payload| {
            let mut config = ClientConfig::default();
            if let Ok(patch) = serde_json::from_slice::<ClientConfigPatch>(&payload) {
                config.apply(&patch);
            }
            prop_assert!(config.ping_interval >= Duration::from_secs(1));
            Ok(())
        },
    );
    n
}

/// What one HTTP case sends to the bot.
#[derive(Debug, Clone)]
enum Request {
    /// Arbitrary bytes and header values on either route.
    Arbitrary {
        cards: bool,
        body: Vec<u8>,
        headers: Vec<(u8, String)>,
    },
    /// A message event encrypted and signed as Lark does, then tampered with.
    Tampered { cards: bool, tamper: Tamper },
    /// A legacy click signed as Lark does, then tampered with.
    TamperedLegacy(Tamper),
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            any::<bool>(),
            arbitrary_body(),
            prop::collection::vec((0u8..3, "[ -~]{0,70}"), 0..4)
        )
            .prop_map(|(cards, body, headers)| Request::Arbitrary {
                cards,
                body,
                headers
            }),
        (any::<bool>(), tamper()).prop_map(|(cards, tamper)| Request::Tampered { cards, tamper }),
        tamper().prop_map(Request::TamperedLegacy),
    ]
}

/// The real routes, arbitrary and near-valid requests: a 4xx every time, no call to either
/// emulated platform, nothing stored.
fn http_routes(cases: u32) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(spawn_app());
    let store = rt.block_on(app.open_store());
    let ts = NOW.to_string();
    let event = message_event(
        &new_event_id(),
        &new_message_id(),
        ALICE,
        Chat::Group,
        "/abort 12345 repeat",
    );
    let sealed =
        json!({"encrypt": lark_encrypt(EK, event.to_string().as_bytes(), [9; 16])}).to_string();
    let nonce = "prop-nonce";
    let sig = sha256_signature(&ts, nonce, EK, sealed.as_bytes());
    let legacy = json!({"open_id": ALICE.open_id, "open_message_id": "om_x", "token": "c-x",
                        "action": {"value": {"k": "go"}, "tag": "button"}})
    .to_string();
    let legacy_sig = sha1_signature(&ts, nonce, VT, legacy.as_bytes());
    let names = [
        "X-Lark-Request-Timestamp",
        "X-Lark-Request-Nonce",
        "X-Lark-Signature",
    ];
    let sent = std::cell::Cell::new(0_u64);
    let n = check("routes: refused, untouched", cases, request(), |req| {
        let (path, headers, body) = match req {
            Request::Arbitrary {
                cards,
                body,
                headers,
            } => (
                cards,
                headers
                    .into_iter()
                    .map(|(k, v)| (names[usize::from(k)], v))
                    .collect::<Vec<_>>(),
                body,
            ),
            Request::Tampered { cards, tamper } => {
                let Some((h, body)) = tampered(&ts, nonce, sealed.as_bytes(), &sig, &tamper) else {
                    return Ok(());
                };
                (cards, header_list(&h, &names), body)
            }
            Request::TamperedLegacy(tamper) => {
                let Some((h, body)) = tampered(&ts, nonce, legacy.as_bytes(), &legacy_sig, &tamper)
                else {
                    return Ok(());
                };
                (true, header_list(&h, &names), body)
            }
        };
        let path = if path { "/lark/cards" } else { "/lark/events" };
        let status = rt.block_on(async {
            let mut req = app
                .http
                .post(app.url(path))
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body.clone());
            for (k, v) in &headers {
                req = req.header(*k, v.as_str());
            }
            req.send().await.map(|r| r.status().as_u16())
        });
        // A header value reqwest itself will not send is no request at all.
        let Ok(status) = status else {
            return Ok(());
        };
        sent.set(sent.get() + 1);
        prop_assert!(
            (400..500).contains(&status),
            "{path} {headers:?} {}: {status}",
            String::from_utf8_lossy(&body)
        );
        let pending = rt.block_on(store.pending(usize::MAX)).expect("pending");
        prop_assert!(pending.is_empty(), "stored: {pending:?}");
        prop_assert!(app.project.requests().is_empty());
        prop_assert!(app.lark.requests().is_empty());
        Ok(())
    });
    drop(app);
    // Most cases must have reached the bot, or this property proves little.
    assert!(
        sent.get() * 2 >= n,
        "only {} of {n} cases made a request",
        sent.get()
    );
    n
}

fn header_list(h: &SignatureHeaders, names: &[&'static str; 3]) -> Vec<(&'static str, String)> {
    [&h.timestamp, &h.nonce, &h.signature]
        .into_iter()
        .zip(names)
        .filter_map(|(v, k)| v.clone().map(|v| (*k, v)))
        .collect()
}

/// A property: runs each of its checks for the given cases, returns how many ran.
type Property = fn(u32) -> u64;

/// Every property, for the long run.
const PROPERTIES: &[(&str, Property)] = &[
    ("decryptor", decryptor),
    ("event signature (SHA-256)", event_signature),
    ("card signature (SHA-1)", card_signature),
    ("envelope classifier", envelope_classifier),
    ("message content (text, post)", message_content),
    ("command parser", command_parser),
    ("card-click value decoder", card_click_value),
    ("work item refs and links", url_refs),
    ("WebSocket frames and fragments", ws_frames),
];

#[test]
fn the_decryptor_refuses_with_a_typed_error_and_round_trips() {
    decryptor(cases_or(QUICK_CASES));
}

#[test]
fn the_event_signature_refuses_every_change_and_accepts_every_correct_signature() {
    event_signature(cases_or(QUICK_CASES));
}

#[test]
fn the_card_signature_refuses_every_change_and_accepts_every_correct_signature() {
    card_signature(cases_or(QUICK_CASES));
}

#[test]
fn the_envelope_classifier_matches_its_model_on_any_body() {
    envelope_classifier(cases_or(QUICK_CASES));
}

#[test]
fn message_content_is_read_from_any_text_or_post() {
    message_content(cases_or(QUICK_CASES));
}

#[test]
fn the_command_parser_is_total_and_round_trips() {
    command_parser(cases_or(QUICK_CASES));
}

#[test]
fn button_values_verify_only_as_signed() {
    card_click_value(cases_or(QUICK_CASES));
}

#[test]
fn work_item_refs_round_trip_and_foreign_links_are_refused() {
    url_refs(cases_or(QUICK_CASES));
}

#[test]
fn frames_and_fragments_never_panic_and_round_trip() {
    ws_frames(cases_or(QUICK_CASES));
}

#[test]
fn bad_requests_on_the_real_routes_are_refused_with_no_side_effect() {
    http_routes(cases_or(QUICK_CASES) / 2);
}

/// The long run: `cargo test --release -- --ignored`. Prints each property's cases and time
/// (straight to stderr, past the test harness's capture) and the total.
#[test]
#[ignore = "long run: cargo test --release -- --ignored"]
fn long_run_of_every_parser_property() {
    let per_check = cases_or(LONG_CASES);
    let started = Instant::now();
    let mut total = 0_u64;
    let mut report = |name: &str, n: u64, took: Duration| {
        total += n;
        let _ = writeln!(
            std::io::stderr(),
            "props: {name:<34} {n:>9} cases in {:>6.1} s",
            took.as_secs_f64()
        );
    };
    for (name, property) in PROPERTIES {
        let t = Instant::now();
        let n = property(per_check);
        report(name, n, t.elapsed());
    }
    let t = Instant::now();
    let n = http_routes((per_check / HTTP_SHARE).max(1));
    report("HTTP routes (no side effect)", n, t.elapsed());
    let _ = writeln!(
        std::io::stderr(),
        "props: total {total} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if per_check >= LONG_CASES {
        assert!(
            total >= LONG_TOTAL_AT_LEAST,
            "the long run covers at least {LONG_TOTAL_AT_LEAST} cases, ran {total}"
        );
    }
}

#[test]
fn the_long_run_covers_a_million_cases() {
    // 32 checks across the parser properties, plus the HTTP one.
    let checks = 3 + 3 + 3 + 3 + 4 + 4 + 4 + 3 + 5;
    let total = u64::from(LONG_CASES) * checks + u64::from(LONG_CASES / HTTP_SHARE);
    assert!(total >= LONG_TOTAL_AT_LEAST, "{total}");
    // The checks really are that many: each property reports what it ran.
    let quick: u64 = PROPERTIES.iter().map(|(_, p)| p(1)).sum();
    assert_eq!(quick, checks);
}

//! Every vector in `../shared/vectors/` (made by running the official Lark SDKs) behaves as
//! its file says: crypto and signatures directly, whole requests through the real routes.

use super::helpers::*;
use abort_bot::lark::crypto;
use serde_json::Value;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key}"))
}

#[test]
fn aes_vectors_decrypt_to_their_plaintext() {
    let file = shared_vectors("aes.json");
    let vectors = file["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 11);
    for v in vectors {
        assert_eq!(
            crypto::decrypt(s(v, "encrypt_key"), s(v, "ciphertext_b64")).as_deref(),
            Ok(s(v, "plaintext")),
            "{}",
            s(v, "name")
        );
    }
}

#[test]
fn aes_negatives_are_refused_except_the_tampered_iv() {
    let file = shared_vectors("aes.json");
    for v in file["negative"].as_array().expect("negative") {
        let name = s(v, "name");
        let result = crypto::decrypt(s(v, "encrypt_key"), s(v, "ciphertext_b64"));
        if name.starts_with("tampered-iv") {
            // Padding stays valid when only the IV changes: every SDK "decrypts" it, and so do
            // we. Decryption is not authentication; the signature (checked first) is.
            let sdk = &v["checked_by"]["python_sdk_AESCipher.decrypt_str"]["plaintext"];
            assert_eq!(result.as_deref().ok(), sdk.as_str(), "{name}");
        } else {
            assert!(result.is_err(), "{name} must not decrypt: {result:?}");
        }
    }
}

#[test]
fn event_signature_vectors() {
    let file = shared_vectors("event_signature.json");
    for v in file["vectors"].as_array().expect("vectors") {
        let sig = crypto::event_signature(
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "encrypt_key"),
            s(v, "body").as_bytes(),
        );
        assert!(crypto::constant_time_eq(s(v, "x_lark_signature"), &sig));
    }
    for v in file["negative"].as_array().expect("negative") {
        let sig = crypto::event_signature(
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "encrypt_key"),
            s(v, "body").as_bytes(),
        );
        assert!(
            !crypto::constant_time_eq(s(v, "x_lark_signature"), &sig),
            "{} must fail",
            s(v, "name")
        );
    }
}

#[test]
fn card_signature_vectors() {
    let file = shared_vectors("card_signature.json");
    for v in file["vectors"].as_array().expect("vectors") {
        let sig = crypto::card_signature(
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "verification_token"),
            s(v, "body").as_bytes(),
        );
        assert!(crypto::constant_time_eq(s(v, "x_lark_signature"), &sig));
    }
    for v in file["negative"].as_array().expect("negative") {
        let sig = crypto::card_signature(
            s(v, "timestamp"),
            s(v, "nonce"),
            s(v, "verification_token"),
            s(v, "body").as_bytes(),
        );
        assert!(
            !crypto::constant_time_eq(s(v, "x_lark_signature"), &sig),
            "{} must fail",
            s(v, "name")
        );
    }
}

/// Starts a bot configured as the vector says, with "now" at the vector's timestamp.
async fn app_for(v: &Value) -> TestApp {
    let key = s(&v["configured"], "encrypt_key");
    let app = spawn_with(Options {
        encrypt_key: if key.is_empty() { None } else { Some(EK) },
        ..Options::default()
    })
    .await;
    if let Some(ts) = v["headers"]["X-Lark-Request-Timestamp"].as_str() {
        app.clock.set_secs(ts.parse().expect("timestamp"));
    }
    app
}

async fn post_vector(app: &TestApp, v: &Value) -> (u16, Value) {
    let name = s(v, "name");
    let path = if name.starts_with("legacy-card") {
        "/lark/cards"
    } else {
        "/lark/events"
    };
    let headers: Vec<(&str, String)> = v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .filter(|(k, _)| k.as_str() != "Content-Type")
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let resp = app.post_raw(path, &headers, s(v, "body").to_owned()).await;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn vector(name: &str) -> Value {
    let file = shared_vectors("http_requests.json");
    file["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
        .clone()
}

#[tokio::test]
async fn challenges_are_answered_plain_and_encrypted() {
    for (name, challenge) in [
        ("url_verification-plain", "ajls384kdjx98XX"),
        ("url_verification-encrypted", "ajls384kdjx98XX"),
        ("legacy-card-request-url-challenge", "legacy-chal-123"),
    ] {
        let v = vector(name);
        let app = app_for(&v).await;
        let (status, body) = post_vector(&app, &v).await;
        assert_eq!(
            (status, body),
            (200, serde_json::json!({ "challenge": challenge })),
            "{name}"
        );
        assert!(app.project.requests().is_empty() && app.lark.requests().is_empty());
    }
}

#[tokio::test]
async fn the_group_mention_vector_aborts_12345_as_its_sender() {
    let v = vector("im.message.receive_v1-group-mention-encrypted");
    let app = app_for(&v).await;
    let (status, _) = post_vector(&app, &v).await;
    assert_eq!(status, 200);
    let reply = app.reply_to("om_5ce6d572455d361153b7cb51da133945").await;
    assert_eq!(card_color(&reply.card), "green");
    let puts = app.project.requests_to("PUT", "/open_api/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].header("x-user-key"), Some(ALICE.user_key));
    assert_eq!(puts[0].body["reason_option"], "repeat");
}

#[tokio::test]
async fn the_p2p_vector_without_an_option_gets_the_picker_and_no_put() {
    let v = vector("im.message.receive_v1-p2p-encrypted");
    let app = app_for(&v).await;
    let (status, _) = post_vector(&app, &v).await;
    assert_eq!(status, 200);
    let reply = app.reply_to("om_5ce6d572455d361153b7cb51da133945").await;
    assert!(card_text(&reply.card).contains("67890"));
    assert!(app.project.requests_to("PUT", "/").is_empty());
}

#[tokio::test]
async fn callback_vectors_are_verified_and_answered() {
    for name in [
        "card.action.trigger-button-encrypted",
        "card.action.trigger-select-encrypted",
        "card.action.trigger-form-submit-encrypted",
        "legacy-card-request-url-button",
    ] {
        let v = vector(name);
        let app = app_for(&v).await;
        let (status, body) = post_vector(&app, &v).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.is_object(), "{name}: an answer Lark accepts: {body}");
        assert!(
            app.project.requests_to("PUT", "/").is_empty(),
            "{name}: the vectors' values are not the bot's own signed values; nothing is aborted"
        );
    }
}

#[tokio::test]
async fn negative_vectors_are_refused_with_no_side_effect() {
    for (name, expected) in [
        ("NEG-bad-signature", 401),
        ("NEG-encrypted-with-other-key", 401),
        ("NEG-tampered-ciphertext-resigned", 400),
        ("NEG-wrong-header-token", 401),
        ("NEG-url_verification-wrong-token", 401),
    ] {
        let v = vector(name);
        let app = app_for(&v).await;
        let (status, body) = post_vector(&app, &v).await;
        assert_eq!(status, expected, "{name}: {body}");
        app.assert_untouched(name).await;
    }
}

#[tokio::test]
async fn an_uppercase_hex_signature_is_refused() {
    let v = vector("im.message.receive_v1-group-mention-encrypted");
    let app = app_for(&v).await;
    let mut upper = v.clone();
    let sig = s(&v["headers"], "X-Lark-Signature").to_uppercase();
    upper["headers"]["X-Lark-Signature"] = sig.into();
    let (status, _) = post_vector(&app, &upper).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_refused_event_stays_unseen_so_the_correct_delivery_still_runs() {
    let v = vector("im.message.receive_v1-group-mention-encrypted");
    let app = app_for(&v).await;
    let mut forged = v.clone();
    forged["headers"]["X-Lark-Signature"] = "0".repeat(64).into();
    assert_eq!(post_vector(&app, &forged).await.0, 401);
    assert_eq!(post_vector(&app, &v).await.0, 200);
    app.reply_to("om_5ce6d572455d361153b7cb51da133945").await;
    assert_eq!(app.project.requests_to("PUT", "/").len(), 1);
}

#[tokio::test]
async fn timestamps_outside_the_window_are_refused() {
    let v = vector("im.message.receive_v1-group-mention-encrypted");
    let ts: i64 = s(&v["headers"], "X-Lark-Request-Timestamp")
        .parse()
        .expect("ts");
    let app = app_for(&v).await;
    app.clock.set_secs(ts + 24 * 3600 + 1);
    assert_eq!(
        post_vector(&app, &v).await.0,
        401,
        "older than the retention"
    );
    app.clock.set_secs(ts - 301);
    assert_eq!(post_vector(&app, &v).await.0, 401, "more than 5 min ahead");
    app.clock.set_secs(ts - 299);
    assert_eq!(post_vector(&app, &v).await.0, 200, "within the window");
}

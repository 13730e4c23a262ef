//! Lark's event encryption (AES-256-CBC, key = SHA-256 of the Encrypt Key, IV = the first 16
//! bytes, strict PKCS#7) and both request signatures, with RustCrypto primitives.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("not base64")]
    Base64,
    #[error("ciphertext length must be a multiple of 16 and at least 32 bytes")]
    Length,
    #[error("bad PKCS#7 padding (wrong key or tampered ciphertext)")]
    Padding,
    #[error("plaintext is not UTF-8")]
    Utf8,
}

fn aes_key(encrypt_key: &str) -> [u8; 32] {
    Sha256::digest(encrypt_key.as_bytes()).into()
}

/// Decrypts an `encrypt` field. Rejects what the strictest official SDK rejects: bad base64,
/// a length that is not whole blocks (IV + at least one block), and any bad padding byte.
pub fn decrypt(encrypt_key: &str, encrypted_b64: &str) -> Result<String, DecryptError> {
    let raw = STANDARD
        .decode(encrypted_b64.as_bytes())
        .map_err(|_| DecryptError::Base64)?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(DecryptError::Length);
    }
    let (iv, ciphertext) = raw.split_at(16);
    let decryptor = cbc::Decryptor::<Aes256>::new_from_slices(&aes_key(encrypt_key), iv)
        .map_err(|_| DecryptError::Length)?;
    let plain = decryptor
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| DecryptError::Padding)?;
    String::from_utf8(plain).map_err(|_| DecryptError::Utf8)
}

/// Encrypts like Lark does (base64 of IV ‖ ciphertext). Used by the emulated Lark and tests.
pub fn encrypt(encrypt_key: &str, plaintext: &str, iv: [u8; 16]) -> String {
    let encryptor = cbc::Encryptor::<Aes256>::new(&aes_key(encrypt_key).into(), &iv.into());
    let mut out = iv.to_vec();
    out.extend(encryptor.encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()));
    STANDARD.encode(out)
}

/// `X-Lark-Signature` of events and 2.0 callbacks:
/// lowercase hex SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ raw body).
pub fn event_signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(encrypt_key.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// `X-Lark-Signature` of legacy card callbacks:
/// lowercase hex SHA-1(timestamp ‖ nonce ‖ verification_token ‖ raw body).
pub fn card_signature(
    timestamp: &str,
    nonce: &str,
    verification_token: &str,
    body: &[u8],
) -> String {
    let mut h = Sha1::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(verification_token.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Compares two strings in constant time (for equal lengths). Case matters: an uppercase-hex
/// signature does not equal its lowercase digest.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_example() {
        assert_eq!(
            decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=").as_deref(),
            Ok("hello world")
        );
    }

    #[test]
    fn encrypt_then_decrypt() {
        let c = encrypt("k", "{\"a\":\"ü\"}", [7; 16]);
        assert_eq!(decrypt("k", &c).as_deref(), Ok("{\"a\":\"ü\"}"));
        assert_ne!(decrypt("other", &c).as_deref(), Ok("{\"a\":\"ü\"}"));
    }

    #[test]
    fn signature_check_value() {
        assert_eq!(
            event_signature("1", "n", "k", b"{}"),
            "fbd3ecb62fa42b9df3d6535b48b10c06baffa1d019f207aa63dc69364da02a05"
        );
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "ABC"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}

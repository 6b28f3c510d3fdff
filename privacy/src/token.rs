//! The sealed form of one personal value, as it is stored, hashed, sent to
//! brokers and exported: a JSON string
//! `hpd1.<data key id, base64url of its 16 bytes>.<base64url(nonce ‖
//! ciphertext ‖ tag)>`.
//!
//! The ciphertext is AES-256-GCM of the value's JSON text, with the key id
//! as associated data. The nonce is derived from the data key, the
//! field and the value (a synthetic nonce, as in SIV modes): the same value
//! of the same field of one subject seals to the same bytes. So a retried
//! append stays an identical one (the store's idempotency on event ids
//! holds), and a search can look for a value by sealing it as it would be
//! stored — a blind index keyed by the subject's own key, gone with it.
//! Different values share a 96-bit nonce only by an HMAC collision
//! (for a million values of one subject, about 10^-17). A string is a token only in full;
//! nothing else Herald stores starts with `hpd1.` followed by this shape.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::master::KEY_BYTES;

/// What every token starts with.
pub const PREFIX: &str = "hpd1.";
const NONCE_BYTES: usize = 12;
/// Base64url characters of a key id's 16 bytes.
const KEY_ID_CHARS: usize = 22;
const TAG_BYTES: usize = 16;

/// A token taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub key_id: Uuid,
    nonce_and_ciphertext: Vec<u8>,
}

fn aad(key_id: Uuid) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(b"hpd1");
    out[4..].copy_from_slice(key_id.as_bytes());
    out
}

/// Seals `plaintext` (a value's JSON text) of the field `pointer`.
pub fn seal(key: &[u8; KEY_BYTES], key_id: Uuid, pointer: &str, plaintext: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"hpd1 nonce\0");
    mac.update(pointer.as_bytes());
    mac.update(b"\0");
    mac.update(plaintext);
    let digest = mac.finalize().into_bytes();
    let nonce = &digest[..NONCE_BYTES];
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: &aad(key_id),
            },
        )
        .expect("AES-256-GCM encrypts any length Herald stores");
    let mut body = Vec::with_capacity(NONCE_BYTES + sealed.len());
    body.extend_from_slice(nonce);
    body.extend_from_slice(&sealed);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = String::with_capacity(PREFIX.len() + KEY_ID_CHARS + 1 + body.len() * 4 / 3 + 4);
    token.push_str(PREFIX);
    token.push_str(&key_id_text(key_id));
    token.push('.');
    b64.encode_string(&body, &mut token);
    token
}

/// How a key id is written in its tokens (`hpd1.<this>.`).
pub fn key_id_text(key_id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key_id.as_bytes())
}

impl Token {
    /// The token this whole string is, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (id, body) = rest.split_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if id.len() != KEY_ID_CHARS {
            return None;
        }
        let key_id = Uuid::from_slice(&b64.decode(id).ok()?).ok()?;
        let nonce_and_ciphertext = b64.decode(body).ok()?;
        if nonce_and_ciphertext.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        Some(Self {
            key_id,
            nonce_and_ciphertext,
        })
    }

    /// The value's JSON text, if `key` is the token's key and nothing was
    /// changed.
    pub fn open(&self, key: &[u8; KEY_BYTES]) -> Option<Vec<u8>> {
        let (nonce, sealed) = self.nonce_and_ciphertext.split_at(NONCE_BYTES);
        Aes256Gcm::new(key.into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(self.key_id),
                },
            )
            .ok()
    }
}

/// True when `text` is a token in full.
pub fn is_token(text: &str) -> bool {
    text.starts_with(PREFIX) && Token::parse(text).is_some()
}

/// Where the tokens of a JSON text are: the byte ranges of their string
/// literals, quotes included.
pub fn find_in_json(text: &str) -> Vec<(std::ops::Range<usize>, Token)> {
    let needle = "\"hpd1.";
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(needle) {
        let start = from + at;
        let body_start = start + 1;
        // A token holds no character JSON would escape, so its literal
        // ends at the next quote.
        let Some(len) = text[body_start..].find('"') else {
            break;
        };
        let end = body_start + len;
        // A quote that is itself escaped belongs to an enclosing string
        // (JSON inside a JSON string): not a literal of this text.
        let escaped = text[..start].ends_with('\\');
        if !escaped {
            if let Some(token) = Token::parse(&text[body_start..end]) {
                found.push((start..end + 1, token));
            }
        }
        from = end + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_sealed_value_opens_with_its_key_only(text in ".{0,200}", other in any::<[u8; 32]>()) {
            let key = [9u8; KEY_BYTES];
            let key_id = Uuid::now_v7();
            let plain = serde_json::to_vec(&text).unwrap();
            let token = seal(&key, key_id, "/note", &plain);
            // Deterministic: the same value sealed again is the same bytes;
            // another field's is not.
            prop_assert_eq!(&token, &seal(&key, key_id, "/note", &plain));
            prop_assert_ne!(&token, &seal(&key, key_id, "/author", &plain));
            let parsed = Token::parse(&token).unwrap();
            prop_assert_eq!(parsed.key_id, key_id);
            prop_assert_eq!(parsed.open(&key), Some(plain));
            if other != key {
                prop_assert_eq!(parsed.open(&other), None);
            }
            let json = serde_json::json!({"a": token, "b": [1, {"c": token}]}).to_string();
            prop_assert_eq!(find_in_json(&json).len(), 2);
            prop_assert!(!json.contains(&text) || text.len() < 3 || token.contains(&text));
        }
    }

    #[test]
    fn strings_that_merely_look_alike_are_not_tokens() {
        for text in [
            "hpd1.",
            "hpd1.xyz.abc",
            "hpd1.AAAAAAAAAAAAAAAAAAAAAA.",
            "hpd1.AAAAAAAAAAAAAAAAAAAAAA.!!",
            "hpd1.0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "a hpd1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!is_token(text), "{text}");
        }
        let nested = serde_json::json!({"outer": "{\"inner\": \"hpd1.x\"}"}).to_string();
        assert!(find_in_json(&nested).is_empty());
    }
}

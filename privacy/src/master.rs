//! Master keys: what wraps (encrypts) every subject's data key and the
//! deployment's index key. The current one wraps; earlier ones, kept in
//! configuration during a rotation, still unwrap until every key has been
//! re-wrapped under the current one. Events are never rewritten: they are
//! sealed with the data keys, which a rotation does not change.

use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::PrivacyError;

/// Bytes in every key Herald uses here (256 bits).
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The id under which keys record which master wrapped them, when Herald
/// generated and keeps the master key in the store itself (no key was
/// configured).
pub const STORED_MASTER: &str = "stored";

/// One master key.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; KEY_BYTES],
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    pub fn from_bytes(key: [u8; KEY_BYTES]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"herald master key id\0")
            .chain_update(key)
            .finalize();
        Self {
            key,
            id: hex::encode(&digest[..8]),
        }
    }

    /// A key written as base64 (standard or URL-safe, padded or not) of 32
    /// bytes, as `herald personal new-master-key` prints one.
    pub fn parse(text: &str) -> Result<Self, PrivacyError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| {
                PrivacyError::Config("a master key is 32 bytes written in base64".to_owned())
            })?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|b: Vec<u8>| {
            PrivacyError::Config(format!(
                "a master key is 32 bytes written in base64, not {} bytes",
                b.len()
            ))
        })?;
        Ok(Self::from_bytes(key))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self::from_bytes(key)
    }

    /// The key in base64, for printing a new one once.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// A short id of the key (not secret): recorded beside what it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `secret`, bound to `context` (a key cannot be moved to
    /// another subject's row and still unwrap).
    pub fn wrap(&self, secret: &[u8; KEY_BYTES], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any 32 bytes");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn unwrap_key(
        &self,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<[u8; KEY_BYTES], PrivacyError> {
        if wrapped.len() != NONCE_BYTES + KEY_BYTES + 16 {
            return Err(PrivacyError::Corrupt(
                "a wrapped key of the wrong length".into(),
            ));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| {
                PrivacyError::Corrupt(format!(
                    "a key wrapped by master {} does not unwrap with it",
                    self.id
                ))
            })?;
        plain
            .try_into()
            .map_err(|_| PrivacyError::Corrupt("an unwrapped key of the wrong length".into()))
    }
}

/// The current master key and those a rotation still reads.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

impl MasterKeys {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    /// The key of this id, current or previous.
    pub fn by_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_unwraps_only_in_the_same_context() {
        let master = MasterKey::generate();
        let secret = [7u8; KEY_BYTES];
        let wrapped = master.wrap(&secret, b"a");
        assert_eq!(master.unwrap_key(&wrapped, b"a").unwrap(), secret);
        assert!(master.unwrap_key(&wrapped, b"b").is_err());
        assert!(MasterKey::generate().unwrap_key(&wrapped, b"a").is_err());
    }

    #[test]
    fn parses_what_it_prints_and_refuses_other_lengths() {
        let master = MasterKey::generate();
        let again = MasterKey::parse(&master.to_base64()).unwrap();
        assert_eq!(again.id(), master.id());
        assert!(MasterKey::parse("c2hvcnQ=").is_err());
        assert!(MasterKey::parse("not base64 at all!").is_err());
    }
}

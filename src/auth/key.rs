//! API keys: `hk_<id>_<secret>`. The id is public (it names the key in logs
//! and in `herald keys`); the secret is 32 random bytes shown once at
//! creation. The store keeps only the SHA-256 of the secret: a fast hash is
//! enough for a random 256-bit secret, which cannot be guessed from it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "hk_";

/// A key as the client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    secret: String,
}

impl ApiKey {
    /// A fresh key.
    pub fn generate() -> Self {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        Self {
            id: hex::encode(id),
            secret: URL_SAFE_NO_PAD.encode(secret),
        }
    }

    /// Reads `hk_<id>_<secret>`; `None` when the text is not shaped like a key.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let id_ok = id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit());
        let secret_ok = !secret.is_empty() && secret.len() <= 64;
        (id_ok && secret_ok).then(|| Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The secret's length in characters (never the secret itself).
    pub fn secret_len(&self) -> usize {
        self.secret.chars().count()
    }

    /// The full key text, to show once.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }

    pub fn secret_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Compares with a stored hash in constant time.
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        self.secret_sha256().ct_eq(stored).into()
    }
}

/// True when a bearer token looks like an API key rather than a JWT.
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_only_their_secret_matches() {
        let key = ApiKey::generate();
        let parsed = ApiKey::parse(&key.reveal()).unwrap();
        assert_eq!(parsed, key);
        assert!(parsed.matches(&key.secret_sha256()));
        let other = ApiKey::generate();
        assert!(!other.matches(&key.secret_sha256()));
        assert!(ApiKey::parse("hk_nothex_x").is_none());
        assert!(ApiKey::parse("Bearer x").is_none());
    }
}

//! Console sessions: a browser signs in once with an API key or a JWT and
//! then sends an opaque, HttpOnly, SameSite=Strict cookie instead. The
//! session keeps the credential in this process's memory only, never in the
//! cookie, and every request authenticates it again, so a revoked key ends
//! its sessions at the next request. A session also holds the CSRF token the
//! console must echo in `X-CSRF-Token` on every request that changes
//! something: SameSite=Strict already keeps other sites' requests from
//! carrying the cookie, the token covers browsers that do not honour it.
//!
//! Sessions live in the process that signed them in: behind a load
//! balancer, route a browser to one process (sticky sessions), or sign in
//! again after a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie that carries a session id.
pub const COOKIE: &str = "herald_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after sign-in, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Sessions kept at most; past it the least recently used ends.
const CAPACITY: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The API key or JWT it signed in with.
    pub credential: String,
    /// Echoed by the console in [`CSRF_HEADER`].
    pub csrf: String,
    signed_in: Instant,
    last_used: Instant,
}

impl Session {
    /// True when `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) >= IDLE || now.duration_since(self.signed_in) >= MAX_AGE
    }
}

/// The sessions of this process, by the SHA-256 of their id (a memory dump
/// does not hand out usable cookies).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Starts a session for `credential` (already authenticated by the
    /// caller); answers the cookie's value and the session.
    pub fn start(&self, credential: String) -> (String, Session) {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            credential,
            csrf: random_token(),
            signed_in: now,
            last_used: now,
        };
        let mut sessions = self.lock();
        if sessions.len() >= CAPACITY {
            sessions.retain(|_, s| !s.expired(now));
        }
        if sessions.len() >= CAPACITY {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The live session a cookie names, marked used.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = digest(id);
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        if session.expired(now) {
            sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Ends a session (sign-out, or its credential was refused).
    pub fn end(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_it_ends() {
        let sessions = Sessions::default();
        let (id, session) = sessions.start("hk_x".into());
        assert_eq!(sessions.get(&id).unwrap().credential, "hk_x");
        assert!(session.csrf_matches(Some(&session.csrf)));
        assert!(!session.csrf_matches(Some("other")));
        assert!(!session.csrf_matches(None));
        assert!(sessions.get("not-a-session").is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }
}

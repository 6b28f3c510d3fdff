//! JWT bearer tokens, for deployments behind a gateway that issues them:
//! HS256 (shared secret) or RS256 (the issuer's public key). The token names
//! the tenant (claim `tenant`) and the scopes (claim `scope`, space-separated,
//! or `scopes`, an array). `exp` is required; `nbf`, when present, is
//! checked; `iss` and `aud` are required, and must match, once an issuer or
//! an audience is configured — a token that leaves them out is refused like
//! one that names another. Times are checked with a small configured leeway
//! for clocks that disagree.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::scope::{parse_scopes, Scope};

/// The clock skew tolerated on `exp` and `nbf` when nothing says otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// The largest leeway accepted: a longer one would keep expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (alone or in their list).
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in whole seconds.
    pub leeway: Duration,
}

/// The key tokens are signed with.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with this shared secret.
    Hs256(Vec<u8>),
    /// RS256 with this PEM public key.
    Rs256Pem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        match self {
            JwtKey::Hs256(_) => f.write_str("Hs256(..)"),
            JwtKey::Rs256Pem(_) => f.write_str("Rs256Pem(..)"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    tenant: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// What a valid token says.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub subject: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
}

/// Why a token was refused: the claim at fault, when one is, and a sentence
/// a client can act on (it never quotes the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub claim: Option<&'static str>,
    pub reason: String,
}

impl TokenError {
    fn claim(claim: &'static str, reason: impl Into<String>) -> Self {
        Self {
            claim: Some(claim),
            reason: reason.into(),
        }
    }

    fn other(reason: impl Into<String>) -> Self {
        Self {
            claim: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Checks tokens against one configuration.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        let (key, algorithm) = match &config.key {
            JwtKey::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err("the HS256 secret must be at least 32 bytes".into());
                }
                (DecodingKey::from_secret(secret), Algorithm::HS256)
            }
            JwtKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RS256 public key: {e}"))?,
                Algorithm::RS256,
            ),
        };
        if config.leeway > MAX_LEEWAY {
            return Err(format!(
                "the leeway may be at most {} s, not {} s",
                MAX_LEEWAY.as_secs(),
                config.leeway.as_secs()
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them:
        // a configured one must also be required, or leaving it out passes.
        let mut required = vec!["exp"];
        match &config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| self.explain(e.kind()))?;
        let claims = data.claims;
        let mut scopes = Vec::new();
        if let Some(scope) = &claims.scope {
            scopes.extend(parse_scopes(scope).map_err(|e| TokenError::claim("scope", e))?);
        }
        for s in claims.scopes.iter().flatten() {
            scopes.push(s.parse().map_err(|e| TokenError::claim("scopes", e))?);
        }
        Ok(TokenClaims {
            subject: claims.sub.unwrap_or_else(|| "jwt".into()),
            tenant: claims.tenant,
            scopes,
        })
    }

    /// A client's reason for a refusal, naming the claim at fault.
    fn explain(&self, kind: &ErrorKind) -> TokenError {
        let leeway = self.validation.leeway;
        match kind {
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => TokenError::claim("exp", "the token has no `exp` claim; Herald requires one"),
                "iss" => TokenError::claim(
                    "iss",
                    "the token has no `iss` claim; this server requires its configured issuer",
                ),
                "aud" => TokenError::claim(
                    "aud",
                    "the token has no `aud` claim; this server requires its configured audience",
                ),
                other => TokenError::other(format!("the token lacks the claim {other:?}")),
            },
            ErrorKind::InvalidIssuer => {
                TokenError::claim("iss", "the token's `iss` is not the configured issuer")
            }
            ErrorKind::InvalidAudience => {
                TokenError::claim("aud", "the token's `aud` does not name the configured audience")
            }
            ErrorKind::ExpiredSignature => TokenError::claim(
                "exp",
                format!("the token has expired (`exp` is past, beyond the {leeway} s leeway)"),
            ),
            ErrorKind::ImmatureSignature => TokenError::claim(
                "nbf",
                format!(
                    "the token is not valid yet (`nbf` is in the future, beyond the {leeway} s leeway)"
                ),
            ),
            ErrorKind::InvalidSignature => TokenError::other("the token's signature does not verify"),
            ErrorKind::InvalidAlgorithm => TokenError::other(format!(
                "the token is not signed with {:?}, the configured algorithm",
                self.validation.algorithms.first().copied().unwrap_or_default()
            )),
            ErrorKind::Json(e) => TokenError::other(format!("the token's claims do not fit: {e}")),
            _ => TokenError::other("the token is malformed"),
        }
    }
}

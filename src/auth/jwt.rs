//! JWT bearer tokens, for deployments behind a gateway that issues them:
//! HS256 (shared secret) or RS256 (the issuer's public key), with optional
//! issuer and audience checks. The token names the tenant (claim `tenant`)
//! and the scopes (claim `scope`, space-separated, or `scopes`, an array).

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::scope::{parse_scopes, Scope};

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
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
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        match &config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<TokenClaims, String> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| e.to_string())?;
        let claims = data.claims;
        let mut scopes = Vec::new();
        if let Some(scope) = &claims.scope {
            scopes.extend(parse_scopes(scope)?);
        }
        for s in claims.scopes.iter().flatten() {
            scopes.push(s.parse()?);
        }
        Ok(TokenClaims {
            subject: claims.sub.unwrap_or_else(|| "jwt".into()),
            tenant: claims.tenant,
            scopes,
        })
    }
}

//! Who is calling, and what they may do. Every request carries an API key
//! (`Authorization: Bearer hk_…`, made with `herald keys create`, stored
//! hashed, revocable at once) or, when configured, a JWT from a gateway.
//! Either names a tenant and scopes; the tenant bounds every publish, read,
//! search and subscription. Requests are rate-limited per identity.
//!
//! With no key in the store and no JWT configured, Herald serves
//! anonymously (tenant `default`, every scope), but only on a loopback
//! address, and warns; on any other address it refuses to start. The moment
//! a key exists, anonymous access ends, in every process sharing the store.

pub mod jwt;
pub mod key;
mod key_cache;
pub mod rate;
pub mod scope;
pub mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures::future::LocalBoxFuture;
use herald_events::{EventType, TenantId};
use herald_store::{EventStore, StoreError};

use crate::api::problem::{Problem, ProblemKind};
use crate::api::AppState;
pub use jwt::{JwtConfig, JwtKey, TokenError};
pub use key::ApiKey;
pub use scope::{parse_scopes, Action, Scope, TypePattern};

/// How often a process serving anonymously checks whether a key now exists.
const ANONYMOUS_RECHECK: Duration = Duration::from_secs(1);

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt: Option<JwtConfig>,
    /// Requests per second for identities without a rate of their own.
    pub default_rate_per_sec: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt: None,
            default_rate_per_sec: 1000,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: TenantId,
    pub scopes: Vec<Scope>,
    /// Names the caller in logs: a key id, a token subject, or `anonymous`.
    pub subject: String,
    /// The key's own rate, if it has one.
    rate_per_sec: Option<u32>,
}

impl Identity {
    /// The identity of anonymous, loopback-only access.
    pub fn anonymous() -> Self {
        Self {
            tenant: TenantId::default_tenant(),
            scopes: vec![Scope {
                action: Action::Admin,
                pattern: TypePattern::new(TypePattern::ANY).expect("a valid pattern"),
            }],
            subject: "anonymous".into(),
            rate_per_sec: None,
        }
    }

    pub fn allows(&self, action: Action, event_type: &EventType) -> bool {
        self.scopes.iter().any(|s| s.allows(action, event_type))
    }

    /// True when some scope allows `action` on every type of `domain`.
    pub fn allows_domain(&self, action: Action, domain: &str) -> bool {
        self.scopes.iter().any(|s| {
            (s.action == action || s.action == Action::Admin) && s.pattern.covers_domain(domain)
        })
    }

    pub fn is_admin(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.action == Action::Admin && s.pattern.as_str() == TypePattern::ANY)
    }

    /// Fails with 403 when a request names a tenant other than the caller's:
    /// credentials act for exactly one tenant.
    pub fn require_tenant(&self, requested: Option<&str>) -> Result<(), Problem> {
        match requested {
            Some(t) if t != self.tenant.as_str() => Err(forbidden(format!(
                "these credentials act for tenant {}, not {t}",
                self.tenant
            ))
            .with("tenant", self.tenant.as_str())),
            _ => Ok(()),
        }
    }

    /// Fails with 403 `forbidden`, saying `why`, unless the caller has the
    /// `admin` scope on every type.
    pub fn require_admin(&self, why: &'static str) -> Result<(), Problem> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(forbidden(why.to_owned()))
        }
    }

    /// Fails with 403 unless `action` is allowed on `event_type`.
    pub fn require(&self, action: Action, event_type: &EventType) -> Result<(), Problem> {
        if self.allows(action, event_type) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "this key may not {action} events of type {event_type}"
            )))
        }
    }

    /// True when personal fields read as plaintext for this caller
    /// (`personal:read`, or `admin`).
    pub fn reads_personal(&self) -> bool {
        self.allows_domain(Action::ReadPersonal, "personal")
    }

    /// What the caller sees of personal fields.
    pub fn personal_access(&self) -> herald_privacy::Access {
        if self.reads_personal() {
            herald_privacy::Access::Plaintext
        } else {
            herald_privacy::Access::Redacted
        }
    }

    /// Fails with 403 unless the caller has `action` (one of the personal
    /// data scopes, or admin).
    pub fn require_personal(&self, action: Action) -> Result<(), Problem> {
        if self.allows_domain(action, "personal") {
            Ok(())
        } else {
            Err(forbidden(format!("this needs the {action} scope")))
        }
    }

    /// Fails with 403 unless the key may manage automations (`write`) or
    /// read them.
    pub fn require_automations(&self, write: bool) -> Result<(), Problem> {
        let allowed = self.allows_domain(Action::ManageAutomations, "automations")
            || (!write && self.allows_domain(Action::ReadAutomations, "automations"));
        if allowed {
            Ok(())
        } else if write {
            Err(forbidden(
                "changing automations needs the automations:write scope".to_owned(),
            ))
        } else {
            Err(forbidden(
                "reading automations needs the automations:read or automations:write scope"
                    .to_owned(),
            ))
        }
    }

    /// Fails with 403 unless `action` is allowed on every type of `domain`.
    pub fn require_domain(&self, action: Action, domain: &str) -> Result<(), Problem> {
        if self.allows_domain(action, domain) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "this key may not {action} the whole {domain} domain"
            )))
        }
    }
}

fn forbidden(detail: String) -> Problem {
    Problem::new(ProblemKind::Forbidden, detail)
}

/// Why a caller was not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No credentials, and anonymous access is not allowed.
    Missing,
    /// Credentials that are not a key or a valid token.
    Invalid(String),
    /// A JWT refused for what it claims (or leaves out).
    Token(jwt::TokenError),
    /// A key that was revoked.
    Revoked,
    /// The store could not be asked.
    Store(StoreError),
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Problem::new(
                ProblemKind::Unauthorized,
                "send `Authorization: Bearer <API key or token>`",
            )
            .challenge(),
            AuthError::Invalid(why) => Problem::new(
                ProblemKind::Unauthorized,
                format!("the credentials were refused: {why}"),
            )
            .challenge(),
            AuthError::Token(e) => {
                let problem = Problem::new(
                    ProblemKind::Unauthorized,
                    format!("the credentials were refused: {}", e.reason),
                )
                .challenge();
                match e.claim {
                    Some(claim) => problem.with("claim", claim),
                    None => problem,
                }
            }
            AuthError::Revoked => {
                Problem::new(ProblemKind::Unauthorized, "this API key has been revoked").challenge()
            }
            AuthError::Store(e) => Problem::from(e),
        }
    }
}

/// Authenticates callers for one process.
pub struct Authenticator {
    store: Arc<dyn EventStore>,
    jwt: Option<jwt::JwtVerifier>,
    rates: rate::RateLimits,
    anonymous: AtomicBool,
    keys: key_cache::KeyCache,
    /// The console's signed-in browsers.
    pub sessions: session::Sessions,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .field("anonymous", &self.anonymous.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Decides whether anonymous access is allowed, refusing to serve a
    /// non-loopback address without any way to authenticate.
    pub async fn start(
        store: Arc<dyn EventStore>,
        settings: &AuthSettings,
        listen: SocketAddr,
    ) -> anyhow::Result<Arc<Self>> {
        let jwt = settings
            .jwt
            .as_ref()
            .map(jwt::JwtVerifier::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("JWT configuration: {e}"))?;
        let keys_exist = !store.list_api_keys().await?.is_empty();
        let anonymous = !keys_exist && jwt.is_none();
        if anonymous && !listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve {listen} without authentication: create an API key \
                 (`herald keys create --tenant T --scopes ...`, or set HERALD_BOOTSTRAP_ADMIN_KEY \
                 for a first start), configure JWT, or listen on a loopback address"
            );
        }
        let auth = Arc::new(Self {
            store,
            jwt,
            rates: rate::RateLimits::new(settings.default_rate_per_sec),
            anonymous: AtomicBool::new(anonymous),
            keys: key_cache::KeyCache::default(),
            sessions: session::Sessions::default(),
        });
        if anonymous {
            tracing::warn!(
                %listen,
                "No API key exists and no JWT is configured: serving anonymously on loopback only."
            );
            let watcher = Arc::downgrade(&auth);
            tokio::spawn(async move {
                // Ends anonymous access as soon as any process creates a key.
                while let Some(auth) = watcher.upgrade() {
                    if let Ok(keys) = auth.store.list_api_keys().await {
                        if !keys.is_empty() {
                            auth.anonymous.store(false, Ordering::SeqCst);
                            tracing::info!("An API key exists now: anonymous access has ended.");
                            return;
                        }
                    }
                    drop(auth);
                    tokio::time::sleep(ANONYMOUS_RECHECK).await;
                }
            });
        }
        Ok(auth)
    }

    /// Ends anonymous access at once: a key was just created here (other
    /// processes notice within [`ANONYMOUS_RECHECK`]).
    pub fn end_anonymous(&self) {
        if self.anonymous.swap(false, Ordering::SeqCst) {
            tracing::info!("An API key exists now: anonymous access has ended.");
        }
    }

    pub fn anonymous_allowed(&self) -> bool {
        self.anonymous.load(Ordering::SeqCst)
    }

    /// Who presents `bearer` (the token of an `Authorization: Bearer` header,
    /// or the token of a websocket's first frame).
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
            return if self.anonymous_allowed() {
                Ok(Identity::anonymous())
            } else {
                Err(AuthError::Missing)
            };
        };
        if key::looks_like_key(token) {
            let key = ApiKey::parse(token)
                .ok_or_else(|| AuthError::Invalid("malformed API key".into()))?;
            let record = self
                .keys
                .get(self.store.as_ref(), &key.id)
                .await
                .map_err(AuthError::Store)?
                .ok_or_else(|| AuthError::Invalid("unknown API key".into()))?;
            if !key.matches(&record.secret_sha256) {
                return Err(AuthError::Invalid("unknown API key".into()));
            }
            if record.revoked_at.is_some() {
                return Err(AuthError::Revoked);
            }
            let scopes = record
                .scopes
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<Scope>, _>>()
                .map_err(AuthError::Invalid)?;
            return Ok(Identity {
                tenant: record.tenant,
                scopes,
                subject: format!("key:{}", record.key_id),
                rate_per_sec: record.rate_per_sec,
            });
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Invalid(
                "not an API key, and no JWT is configured".into(),
            ));
        };
        let claims = jwt.verify(token).map_err(AuthError::Token)?;
        Ok(Identity {
            tenant: TenantId::new(claims.tenant)
                .map_err(|e| AuthError::Invalid(format!("tenant claim: {e}")))?,
            scopes: claims.scopes,
            subject: format!("jwt:{}", claims.subject),
            rate_per_sec: None,
        })
    }

    /// Takes one request from the identity's rate; past it, 429
    /// `rate-limited` saying when to retry.
    pub fn limit_problem(&self, identity: &Identity) -> Result<(), Problem> {
        self.limit(identity).map_err(|wait| {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Problem::new(
                ProblemKind::RateLimited,
                format!(
                    "too many requests from {}; retry in {secs} s",
                    identity.subject
                ),
            )
            .retry_after(secs)
        })
    }

    /// Takes one request from the identity's rate; `Err` says how long to wait.
    pub fn limit(&self, identity: &Identity) -> Result<(), Duration> {
        if identity.subject == "anonymous" {
            return Ok(());
        }
        self.rates.check(&identity.subject, identity.rate_per_sec)
    }
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

impl FromRequest for Identity {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // Browsers' EventSource cannot set headers: the SSE route alone also
        // takes the credentials from its query.
        let token = bearer(req)
            .map(str::to_owned)
            .or_else(|| crate::ws::sse::query_token(req));
        // A console session only when no credentials came with the request.
        let session_id = token
            .is_none()
            .then(|| req.cookie(session::COOKIE).map(|c| c.value().to_owned()))
            .flatten();
        let request = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                Problem::new(ProblemKind::Internal, "the application state is missing")
            })?;
            let identity = match (token, session_id) {
                (Some(token), _) => state.auth.authenticate(Some(&token)).await?,
                (None, Some(id)) => session_identity(&state, &request, &id).await?,
                (None, None) => state.auth.authenticate(None).await?,
            };
            // The response's personal fields are revealed for this caller
            // (`crate::api::personal`).
            request.extensions_mut().insert(identity.clone());
            state.auth.limit_problem(&identity)?;
            Ok(identity)
        })
    }
}

/// The identity of a console session's cookie: its credential, authenticated
/// again now (a revoked key ends the session), and for a request that can
/// change something, the session's CSRF token in its header.
async fn session_identity(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<Identity, Problem> {
    let Some(session) = state.auth.sessions.get(id) else {
        if state.auth.anonymous_allowed() {
            return Ok(Identity::anonymous());
        }
        return Err(Problem::new(
            ProblemKind::Unauthorized,
            "the console session has ended (signed out, expired, or the process restarted): \
             sign in again",
        )
        .challenge());
    };
    let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let presented = req
        .headers()
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    if !safe && !session.csrf_matches(presented) {
        return Err(Problem::new(
            ProblemKind::CsrfTokenInvalid,
            "a console request that changes something must carry the session's token in \
             X-CSRF-Token",
        ));
    }
    match state.auth.authenticate(Some(&session.credential)).await {
        Ok(identity) => Ok(identity),
        Err(e @ (AuthError::Revoked | AuthError::Invalid(_) | AuthError::Token(_))) => {
            state.auth.sessions.end(id);
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

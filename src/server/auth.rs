//! Bearer-token authentication and roles.
//!
//! Tokens look like `spm_<43 characters>`; the server stores only their SHA-256 hash and a
//! 12-character prefix. Roles: `viewer` reads; `operator` queues, tests, syncs and runs
//! policies; `approver` approves, rejects and snoozes; `admin` manages tokens, policies and
//! configuration and may do everything. Which role a route needs is declared once, in
//! [`super::routes::ROUTES`]; [`authorize`] enforces it before the handler runs and puts
//! the [`Principal`] in the request extensions.
//!
//! Verified tokens are remembered in a [`TokenCache`] keyed by their hash, for at most
//! [`TokenCache::MAX_AGE`] and only while the database is unchanged: any commit (a
//! revocation by the API or by `spm token revoke` in another process) empties it, so a
//! revoked token is refused on the very next request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::routes::Access;
use crate::store::StoreResult;
use crate::store::tokens::{self, TokenInfo};

/// A role a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Queues, tests, syncs, runs policies (and reads).
    Operator,
    /// Approves, rejects, snoozes (and reads).
    Approver,
    /// Everything, including tokens, policies and configuration.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parse a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a holder of `self` may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self == Role::Admin || self == required || required == Role::Viewer
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller: what audits record as the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name (`dev` in `--dev-insecure` mode).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Client socket address (never taken from forwarded headers).
    pub source_addr: Option<String>,
}

impl Principal {
    /// Fail with 403 unless this principal may do what needs `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {:?} has role {}; this needs role {required}",
                self.name, self.role
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route has no authentication layer"))
    }
}

/// Check a token name: 1-64 characters of letters, digits, `.`, `_`, `-`.
pub fn validate_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        ))
    }
}

/// SHA-256 hex of a presented token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A freshly created token. The secret is only in `token`; Debug redacts it.
pub struct NewToken {
    /// The full token text, shown once.
    pub token: String,
    /// The stored row.
    pub info: TokenInfo,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// Generate a token, store its hash, and return it. Call inside a write transaction.
pub fn create_token(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    role: Role,
) -> StoreResult<NewToken> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!(
        "spm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let prefix: String = token.chars().take(12).collect();
    let info = tokens::insert(tx, name, role.as_str(), &hash_token(&token), &prefix)?;
    Ok(NewToken { token, info })
}

/// Throttles `last_used_at` writes to one per token per interval.
#[derive(Debug, Default)]
pub struct UsageTracker {
    last: Mutex<HashMap<i64, Instant>>,
}

impl UsageTracker {
    const INTERVAL: Duration = Duration::from_secs(60);

    /// Whether token `id` is due for a `last_used_at` write (and mark it written).
    fn due(&self, id: i64) -> bool {
        let Ok(mut map) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        match map.get(&id) {
            Some(t) if now.duration_since(*t) < Self::INTERVAL => false,
            _ => {
                map.insert(id, now);
                true
            }
        }
    }
}

fn bearer(parts: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = parts
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if !token.starts_with("spm_") || token.len() > 128 {
        return Err(ApiError::unauthorized("invalid token"));
    }
    Ok(token)
}

/// Resolve the principal for a request, or the error to answer with.
async fn resolve(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(String, Role), ApiError> {
    if state.dev_insecure {
        return Ok(("dev".to_owned(), Role::Admin));
    }
    let token = bearer(headers)?;
    verify_hash(state, &hash_token(token)).await
}

/// Verify a token presented outside an `Authorization` header (the dashboard's sign-in
/// form) exactly as the API does; returns its name, role and hash.
pub async fn verify_token(
    state: &AppState,
    token: &str,
) -> Result<(String, Role, String), ApiError> {
    let token = token.trim();
    if !token.starts_with("spm_") || token.len() > 128 {
        return Err(ApiError::unauthorized("invalid token"));
    }
    let hash = hash_token(token);
    let (name, role) = verify_hash(state, &hash).await?;
    Ok((name, role, hash))
}

/// A token that passed verification: what a cache hit needs to answer.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    id: i64,
    name: String,
    role: Role,
}

/// Verified tokens by the SHA-256 hex of their text (never the text itself), valid only
/// at the database version they were read at (see [`super::cache`]).
#[derive(Debug)]
pub struct TokenCache(super::cache::VersionedCache<VerifiedToken>);

impl TokenCache {
    /// Longest time a verification is reused, even with an unchanged database.
    pub const MAX_AGE: Duration = Duration::from_secs(30);
    /// Most tokens remembered at once.
    pub const MAX_TOKENS: usize = 1024;

    /// Turn the cache on or off ([`crate::server::cache::VersionedCache::set_enabled`]).
    pub fn set_enabled(&self, on: bool) {
        self.0.set_enabled(on);
    }

    /// Number of verifications held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no verification is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self(super::cache::VersionedCache::new(
            Self::MAX_TOKENS,
            Self::MAX_AGE,
            |_| 1,
        ))
    }
}

/// Look up a token by the SHA-256 hex of its text: present, not revoked, known role.
/// Served from [`AppState::tokens`] while the database is unchanged.
pub async fn verify_hash(state: &AppState, presented: &str) -> Result<(String, Role), ApiError> {
    // The version is read before the database, so a verification is never cached under
    // a version newer than the row it read.
    let version = state.store.version();
    let cached = version.and_then(|v| state.tokens.0.get(v, presented));
    let verified = match cached {
        Some(hit) => hit,
        None => {
            let verified = lookup(state, presented).await?;
            if let Some(v) = version {
                state
                    .tokens
                    .0
                    .insert(v, presented.to_owned(), verified.clone());
            }
            verified
        }
    };
    if state.usage.due(verified.id) {
        let store = state.store.clone();
        let id = verified.id;
        tokio::spawn(async move {
            if let Err(e) = store.write(move |tx| tokens::touch(tx, id)).await {
                tracing::warn!(error = %e, "could not record token use");
            }
        });
    }
    Ok((verified.name, verified.role))
}

/// Verify a token hash against the database.
async fn lookup(state: &AppState, presented: &str) -> Result<VerifiedToken, ApiError> {
    let lookup = presented.to_owned();
    let record = state
        .store
        .read(move |conn| tokens::find_by_hash(conn, &lookup))
        .await
        .map_err(ApiError::internal)?;
    let Some(record) = record else {
        return Err(ApiError::unauthorized("invalid token"));
    };
    // The row was found by hash; compare again in constant time so no code path ever
    // depends on a byte-by-byte comparison of secret material.
    if !bool::from(record.token_hash.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(ApiError::unauthorized("invalid token"));
    }
    if record.revoked {
        return Err(ApiError::unauthorized("token has been revoked"));
    }
    let role = Role::parse(&record.role)
        .ok_or_else(|| ApiError::internal(format!("token {} has unknown role", record.id)))?;
    Ok(VerifiedToken {
        id: record.id,
        name: record.name,
        role,
    })
}

/// Middleware enforcing a route's [`Access`]; inserts the [`Principal`] for handlers.
pub async fn authorize(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let source_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let required = match access {
        Access::Public => None,
        Access::Role(r) => Some(r),
        Access::Metrics if state.config.metrics_public => None,
        Access::Metrics => Some(Role::Viewer),
    };
    let Some(required) = required else {
        return next.run(req).await;
    };
    let (name, role) = match resolve(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => {
            let mut resp = e.into_response();
            if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return resp;
        }
    };
    let principal = Principal {
        name,
        role,
        source_addr,
    };
    if let Err(e) = principal.require(required) {
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_not_a_ladder_except_admin() {
        use Role::*;
        for r in Role::ALL {
            assert!(r.allows(Viewer), "{r} reads");
            assert!(Admin.allows(r), "admin does {r}");
        }
        assert!(!Viewer.allows(Operator));
        assert!(!Viewer.allows(Approver));
        assert!(!Operator.allows(Approver), "operators cannot approve");
        assert!(!Approver.allows(Operator), "approvers cannot queue");
        assert!(!Operator.allows(Admin) && !Approver.allows(Admin));
    }

    #[test]
    fn token_names_are_restricted() {
        assert!(validate_token_name("ci-bot.prod_1").is_ok());
        for bad in ["", "a b", "x;rm", "é", &"n".repeat(65)] {
            assert!(validate_token_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = axum::http::HeaderMap::new();
        assert!(bearer(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer spm_abc"),
        );
        assert_eq!(bearer(&h).ok(), Some("spm_abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic spm_abc"),
        );
        assert!(bearer(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert!(bearer(&h).is_err());
    }

    #[test]
    fn new_token_debug_redacts_the_secret() {
        let store = crate::store::Store::open_in_memory().expect("store");
        let new = store
            .write_blocking(|tx| create_token(tx, "t", Role::Viewer))
            .expect("token");
        let shown = format!("{new:?}");
        assert!(!shown.contains(&new.token));
        assert!(new.token.starts_with(&new.info.prefix));
        let rec = store
            .read_blocking(|c| tokens::find_by_hash(c, &hash_token(&new.token)))
            .expect("find")
            .expect("present");
        assert!(!format!("{rec:?}").contains(&rec.token_hash));
    }
}

//! Dashboard sessions: signing in with an API token creates a server-side session
//! identified by a random cookie; every form carries the session's CSRF token. Sessions
//! are written to the database (`dashboard_sessions`, the cookie only as its SHA-256), so
//! a restart of the service does not sign anyone out; a memory cache serves requests.
//! One-time flash messages live in memory only.
//!
//! The session remembers the *hash* of the token it was opened with and re-checks it on
//! every request, so revoking the token ends its sessions too. The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, has a `Max-Age`, and is `Secure` when the dashboard is
//! served over TLS (`dashboard.secure_cookie`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::server::auth::{Role, hash_token};
use crate::store::Store;
use crate::store::dashboard_sessions::{self as db, SessionRow};

/// Name of the session cookie.
pub const COOKIE: &str = "spm_session";
/// Name of the cookie holding the sign-in form's CSRF token (before a session exists).
pub const LOGIN_COOKIE: &str = "spm_login_csrf";
/// Most sessions kept at once; the oldest are dropped beyond this.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// Token name (the identity audits record).
    pub name: String,
    /// Role of the token.
    pub role: Role,
    /// SHA-256 hex of the token, re-checked on every request.
    pub token_hash: String,
    /// Per-session CSRF token, required in every POST form.
    pub csrf: String,
    /// When it was created.
    created: DateTime<Utc>,
    /// When it ends.
    expires: DateTime<Utc>,
    /// One-time message for the next page (`ok` or `error`, text).
    flash: Option<(String, String)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token_hash", &"<redacted>")
            .field("csrf", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant-time comparison).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session table: the database, with a memory cache in front.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    store: Store,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Sessions")
            .field("cached", &n)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

impl Sessions {
    /// A table kept in `store` whose sessions last `ttl`; they survive a restart.
    pub fn new(ttl: Duration, store: Store) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            store,
        }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn cache(&self, id: String, session: Session) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        let now = Utc::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id, session);
    }

    /// Open a session and return its id (the cookie value); `None` when it cannot be
    /// recorded (the error is logged).
    pub async fn create(&self, name: String, role: Role, token_hash: String) -> Option<String> {
        let id = random_token();
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1));
        let session = Session {
            name,
            role,
            token_hash,
            csrf: random_token(),
            created: now,
            expires: now + ttl,
            flash: None,
        };
        let row = SessionRow {
            id_hash: hash_token(&id),
            name: session.name.clone(),
            role: role.as_str().to_string(),
            token_hash: session.token_hash.clone(),
            csrf: session.csrf.clone(),
            created_at: crate::store::format_ts(now),
            expires_at: crate::store::format_ts(session.expires),
        };
        let now_s = row.created_at.clone();
        let stored = self
            .store
            .write(move |tx| {
                db::delete_expired(tx, &now_s)?;
                db::insert(tx, &row)?;
                db::trim_oldest(tx, MAX_SESSIONS)?;
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "dashboard: cannot record the session");
            return None;
        }
        self.cache(id.clone(), session);
        Some(id)
    }

    /// The live session with this id (from the cache, else from the database).
    pub async fn get(&self, id: &str) -> Option<Session> {
        let now = Utc::now();
        {
            let mut map = self.map.lock().ok()?;
            match map.get(id) {
                Some(s) if s.expires > now => return Some(s.clone()),
                Some(_) => {
                    map.remove(id);
                    return None;
                }
                None => {}
            }
        }
        let (hash, now_s) = (hash_token(id), crate::store::format_ts(now));
        let row = match self.store.read(move |c| db::live(c, &hash, &now_s)).await {
            Ok(row) => row?,
            Err(e) => {
                tracing::error!(error = %e, "dashboard: cannot read the session table");
                return None;
            }
        };
        let parse = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        };
        let session = Session {
            name: row.name,
            role: Role::parse(&row.role)?,
            token_hash: row.token_hash,
            csrf: row.csrf,
            created: parse(&row.created_at)?,
            expires: parse(&row.expires_at)?,
            flash: None,
        };
        self.cache(id.to_string(), session.clone());
        Some(session)
    }

    /// Leave a one-time message (`kind` is `ok` or `error`) for the session's next page.
    pub fn set_flash(&self, id: &str, kind: &str, text: impl Into<String>) {
        if let Ok(mut map) = self.map.lock()
            && let Some(s) = map.get_mut(id)
        {
            s.flash = Some((kind.to_string(), text.into()));
        }
    }

    /// Take the session's one-time message, if any.
    pub fn take_flash(&self, id: &str) -> Option<(String, String)> {
        self.map.lock().ok()?.get_mut(id)?.flash.take()
    }

    /// End a session.
    pub async fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
        let hash = hash_token(id);
        if let Err(e) = self.store.write(move |tx| db::delete(tx, &hash)).await {
            tracing::error!(error = %e, "dashboard: cannot delete the session");
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value with the dashboard's flags.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", Duration::ZERO, secure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn memory_store() -> Store {
        Store::open_in_memory().expect("in-memory store")
    }

    #[tokio::test]
    async fn sessions_expire_and_are_removable() {
        let s = Sessions::new(Duration::from_secs(60), memory_store());
        let id = s
            .create("alice".into(), Role::Approver, "h".into())
            .await
            .expect("created");
        let got = s.get(&id).await.expect("live");
        assert_eq!(got.name, "alice");
        assert!(got.csrf_matches(&got.csrf.clone()));
        assert!(!got.csrf_matches(""));
        assert!(!got.csrf_matches("wrong"));
        s.remove(&id).await;
        assert!(s.get(&id).await.is_none());
        let short = Sessions::new(Duration::ZERO, memory_store());
        let id = short
            .create("bob".into(), Role::Viewer, "h".into())
            .await
            .expect("created");
        assert!(short.get(&id).await.is_none(), "an expired session is gone");
    }

    #[tokio::test]
    async fn persistent_sessions_survive_a_new_table_and_never_store_the_cookie() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("spm.db")).expect("store");
        let first = Sessions::new(Duration::from_secs(60), store.clone());
        let id = first
            .create("alice".into(), Role::Approver, "h".into())
            .await
            .expect("created");
        let csrf = first.get(&id).await.expect("live").csrf;
        // A restart: a new table over the same database.
        let second = Sessions::new(Duration::from_secs(60), store.clone());
        let got = second.get(&id).await.expect("restored");
        assert_eq!((got.name.as_str(), got.role), ("alice", Role::Approver));
        assert_eq!(got.csrf, csrf);
        let stored: Vec<String> = store
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT id_hash FROM dashboard_sessions")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .expect("rows");
        assert_eq!(stored, vec![hash_token(&id)]);
        assert!(!stored.contains(&id), "the cookie value is not stored");
        second.remove(&id).await;
        let third = Sessions::new(Duration::from_secs(60), store);
        assert!(
            third.get(&id).await.is_none(),
            "signing out ends it for good"
        );
        assert!(third.get("not-a-session").await.is_none());
    }

    #[test]
    fn cookie_parsing_and_flags() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; spm_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie(COOKIE, "v", Duration::from_secs(5), true);
        assert_eq!(
            c,
            "spm_session=v; Path=/; Max-Age=5; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!clear_cookie(COOKIE, false).contains("Secure"));
    }

    #[tokio::test]
    async fn debug_redacts_secrets() {
        let s = Sessions::new(Duration::from_secs(60), memory_store());
        let id = s
            .create("alice".into(), Role::Admin, "secret-hash".into())
            .await
            .expect("created");
        let sess = s.get(&id).await.expect("live");
        let shown = format!("{sess:?}");
        assert!(!shown.contains("secret-hash") && !shown.contains(&sess.csrf));
    }
}

//! Dashboard sessions: signing in with an API token creates a server-side session (kept in
//! memory) identified by a random cookie; every form carries the session's CSRF token.
//!
//! The session remembers the *hash* of the token it was opened with and re-checks it on
//! every request, so revoking the token ends its sessions too. The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, has a `Max-Age`, and is `Secure` when the dashboard is
//! served over TLS (`dashboard.secure_cookie`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::server::auth::Role;

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
    created: Instant,
    /// When it ends.
    expires: Instant,
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

/// The in-memory session table.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Sessions")
            .field("count", &n)
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
    /// An empty table whose sessions last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Open a session and return its id (the cookie value).
    pub fn create(&self, name: String, role: Role, token_hash: String) -> Option<String> {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            name,
            role,
            token_hash,
            csrf: random_token(),
            created: now,
            expires: now + self.ttl,
            flash: None,
        };
        let mut map = self.map.lock().ok()?;
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        Some(id)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().ok()?;
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
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
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
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

    #[test]
    fn sessions_expire_and_are_removable() {
        let s = Sessions::new(Duration::from_secs(60));
        let id = s
            .create("alice".into(), Role::Approver, "h".into())
            .expect("created");
        let got = s.get(&id).expect("live");
        assert_eq!(got.name, "alice");
        assert!(got.csrf_matches(&got.csrf.clone()));
        assert!(!got.csrf_matches(""));
        assert!(!got.csrf_matches("wrong"));
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let short = Sessions::new(Duration::ZERO);
        let id = short
            .create("bob".into(), Role::Viewer, "h".into())
            .expect("created");
        assert!(short.get(&id).is_none(), "an expired session is gone");
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

    #[test]
    fn debug_redacts_secrets() {
        let s = Sessions::new(Duration::from_secs(60));
        let id = s
            .create("alice".into(), Role::Admin, "secret-hash".into())
            .expect("created");
        let sess = s.get(&id).expect("live");
        let shown = format!("{sess:?}");
        assert!(!shown.contains("secret-hash") && !shown.contains(&sess.csrf));
    }
}

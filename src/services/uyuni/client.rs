//! Async XML-RPC client for UYUNI: one reused login, re-login on session faults,
//! per-call timeout, bounded concurrency, retries only where repeating is safe.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};

use super::error::UyuniError;
use super::xmlrpc::{self, Limits, MethodResponse, Value};

/// A secret string (a password). `Debug` and `Display` print `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is sent, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Settings of the UYUNI client (the `[uyuni]` section of the configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UyuniConfig {
    /// Server URL: `https://host` or the full endpoint `https://host/rpc/api`.
    pub url: String,
    /// API user.
    pub user: String,
    /// API password.
    pub password: Secret,
    /// PEM file with extra trusted CA certificates (UYUNI's private CA).
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification. An explicit, logged choice; never the default.
    pub insecure: bool,
    /// Timeout of one HTTP round trip, in milliseconds.
    pub timeout_ms: u64,
    /// Most calls in flight at once.
    pub max_concurrency: usize,
    /// Extra attempts for calls that are safe to repeat.
    pub retries: u32,
    /// First retry delay in milliseconds (doubled on every attempt).
    pub retry_backoff_ms: u64,
    /// Largest accepted response body, in bytes.
    pub max_response_bytes: usize,
    /// Deepest accepted nesting of arrays/structs in a response.
    pub max_depth: usize,
    /// First poll interval while waiting for an action, in milliseconds.
    pub poll_initial_ms: u64,
    /// Longest poll interval while waiting for an action, in milliseconds.
    pub poll_max_ms: u64,
}

impl Default for UyuniConfig {
    fn default() -> Self {
        UyuniConfig {
            url: "https://localhost/rpc/api".to_string(),
            user: String::new(),
            password: Secret::default(),
            ca_file: None,
            insecure: false,
            timeout_ms: 30_000,
            max_concurrency: 8,
            retries: 2,
            retry_backoff_ms: 200,
            max_response_bytes: 64 * 1024 * 1024,
            max_depth: 64,
            poll_initial_ms: 100,
            poll_max_ms: 5_000,
        }
    }
}

impl UyuniConfig {
    /// The XML-RPC endpoint: `url` itself when it has a path, else `url` + `/rpc/api`.
    pub fn endpoint(&self) -> String {
        let u = self.url.trim_end_matches('/');
        let after_scheme = u.split_once("://").map_or(u, |(_, rest)| rest);
        if after_scheme.contains('/') {
            u.to_string()
        } else {
            format!("{u}/rpc/api")
        }
    }
}

/// Whether a call may be repeated after a failure whose effect is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A read (`list*`, `get*`, …): retried with backoff on transport errors, timeouts
    /// and 502/503/504.
    Read,
    /// A call with an effect (scheduling, login, cancel): retried only when the
    /// connection could not be made at all, so nothing reached the server.
    Write,
}

impl CallKind {
    /// Classify by method name: `list*`, `get*`, `is*`, `lookup*`, `find*` are reads.
    pub fn for_method(method: &str) -> CallKind {
        let last = method.rsplit('.').next().unwrap_or(method);
        let read = ["list", "get", "is", "lookup", "find", "systemVersion"]
            .iter()
            .any(|p| last.starts_with(p));
        if read {
            CallKind::Read
        } else {
            CallKind::Write
        }
    }
}

/// Per-method counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MethodStats {
    /// HTTP round trips made (attempts, including retries).
    pub requests: u64,
    /// Attempts that ended in an error (faults included).
    pub errors: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Calls that needed a fresh login first.
    pub relogins: u64,
    /// Sum of round-trip times, in microseconds.
    pub total_us: u64,
}

struct Inner {
    http: reqwest::Client,
    endpoint: String,
    user: String,
    password: Secret,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    limits: Limits,
    poll_initial: Duration,
    poll_max: Duration,
    permits: Semaphore,
    session: Mutex<Option<String>>,
    stats: StdMutex<BTreeMap<String, MethodStats>>,
}

/// A UYUNI XML-RPC client. Cheap to clone; clones share the session, the connection
/// pool, the concurrency limit and the counters.
#[derive(Clone)]
pub struct UyuniClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for UyuniClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UyuniClient")
            .field("endpoint", &self.inner.endpoint)
            .field("user", &self.inner.user)
            .finish_non_exhaustive()
    }
}

impl UyuniClient {
    /// Build a client. Fails on an unreadable CA file or a bad URL; does not connect.
    pub fn new(cfg: &UyuniConfig) -> Result<Self, UyuniError> {
        crate::services::ensure_crypto_provider();
        let endpoint = cfg.endpoint();
        let parsed = reqwest::Url::parse(&endpoint)
            .map_err(|e| UyuniError::Config(format!("uyuni.url {endpoint:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UyuniError::Config(format!(
                "uyuni.url {endpoint:?}: scheme must be http or https"
            )));
        }
        if cfg.max_concurrency == 0 {
            return Err(UyuniError::Config(
                "uyuni.max_concurrency must be at least 1".to_string(),
            ));
        }
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let mut builder = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(cfg.max_concurrency)
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("spm/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                UyuniError::Config(format!("uyuni.ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                UyuniError::Config(format!("uyuni.ca_file {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(UyuniError::Config(format!(
                    "uyuni.ca_file {}: no PEM certificate found",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if cfg.insecure {
            tracing::warn!(
                endpoint = %endpoint,
                "uyuni.insecure is set: TLS certificates are NOT verified"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| UyuniError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(UyuniClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                user: cfg.user.clone(),
                password: cfg.password.clone(),
                timeout,
                retries: cfg.retries,
                retry_backoff: Duration::from_millis(cfg.retry_backoff_ms),
                limits: Limits {
                    max_body_bytes: cfg.max_response_bytes,
                    max_depth: cfg.max_depth,
                },
                poll_initial: Duration::from_millis(cfg.poll_initial_ms.max(1)),
                poll_max: Duration::from_millis(cfg.poll_max_ms.max(cfg.poll_initial_ms).max(1)),
                permits: Semaphore::new(cfg.max_concurrency),
                session: Mutex::new(None),
                stats: StdMutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The endpoint URL in use.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// `(initial, max)` poll intervals for waiting on actions.
    pub fn poll_intervals(&self) -> (Duration, Duration) {
        (self.inner.poll_initial, self.inner.poll_max)
    }

    /// A snapshot of the per-method counters.
    pub fn stats(&self) -> BTreeMap<String, MethodStats> {
        self.inner
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Reset the per-method counters.
    pub fn reset_stats(&self) {
        if let Ok(mut s) = self.inner.stats.lock() {
            s.clear();
        }
    }

    fn count(&self, method: &str, f: impl FnOnce(&mut MethodStats)) {
        if let Ok(mut s) = self.inner.stats.lock() {
            f(s.entry(method.to_string()).or_default());
        }
    }

    /// Log in now (normally done lazily by the first call) and return nothing; the
    /// session is kept for later calls.
    pub async fn login(&self) -> Result<(), UyuniError> {
        let mut guard = self.inner.session.lock().await;
        let key = self.do_login().await?;
        *guard = Some(key);
        Ok(())
    }

    /// Log out if logged in. Errors are returned, the session is forgotten either way.
    pub async fn logout(&self) -> Result<(), UyuniError> {
        let key = self.inner.session.lock().await.take();
        if let Some(key) = key {
            self.call_once("auth.logout", &[Value::String(key)]).await?;
        }
        Ok(())
    }

    async fn do_login(&self) -> Result<String, UyuniError> {
        let params = [
            Value::from(self.inner.user.as_str()),
            Value::from(self.inner.password.expose()),
        ];
        let v = self
            .call_retrying("auth.login", &params, CallKind::Write)
            .await?;
        match v {
            Value::String(key) if !key.is_empty() => Ok(key),
            other => Err(UyuniError::Response {
                method: "auth.login".to_string(),
                message: format!("expected a session key string, found {}", other.summary()),
            }),
        }
    }

    /// The current session key, logging in first when there is none.
    async fn session_key(&self) -> Result<String, UyuniError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(k) = guard.as_ref() {
            return Ok(k.clone());
        }
        let key = self.do_login().await?;
        *guard = Some(key.clone());
        Ok(key)
    }

    /// Forget `stale` (only if it is still the current key) and log in again.
    async fn relogin(&self, stale: &str) -> Result<String, UyuniError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(k) = guard.as_ref()
            && k != stale
        {
            return Ok(k.clone());
        }
        *guard = None;
        let key = self.do_login().await?;
        *guard = Some(key.clone());
        Ok(key)
    }

    /// An authenticated call: the session key is prepended to `params`. On a session
    /// fault the client logs in again once and repeats the call (the server rejected it
    /// before running it, so this is safe for every kind).
    pub async fn call(
        &self,
        method: &str,
        params: Vec<Value>,
        kind: CallKind,
    ) -> Result<Value, UyuniError> {
        let key = self.session_key().await?;
        let mut full = Vec::with_capacity(params.len() + 1);
        full.push(Value::String(key.clone()));
        full.extend(params);
        match self.call_retrying(method, &full, kind).await {
            Err(e) if e.is_session_fault() => {
                tracing::info!(method, "UYUNI session rejected; logging in again");
                self.count(method, |s| s.relogins += 1);
                let key = self.relogin(&key).await?;
                full[0] = Value::String(key);
                self.call_retrying(method, &full, kind).await
            }
            other => other,
        }
    }

    /// A call without a session key (`api.getVersion`, `api.systemVersion`).
    pub async fn call_anonymous(
        &self,
        method: &str,
        params: Vec<Value>,
        kind: CallKind,
    ) -> Result<Value, UyuniError> {
        self.call_retrying(method, &params, kind).await
    }

    async fn call_retrying(
        &self,
        method: &str,
        params: &[Value],
        kind: CallKind,
    ) -> Result<Value, UyuniError> {
        let mut attempt = 0u32;
        loop {
            let result = self.call_once(method, params).await;
            match result {
                Err(e) if attempt < self.inner.retries && e.may_retry(kind) => {
                    let delay = self
                        .inner
                        .retry_backoff
                        .saturating_mul(2u32.saturating_pow(attempt));
                    attempt += 1;
                    tracing::debug!(method, attempt, error = %e, "retrying UYUNI call");
                    self.count(method, |s| s.retries += 1);
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// One HTTP round trip, under the concurrency limit and the timeout.
    async fn call_once(&self, method: &str, params: &[Value]) -> Result<Value, UyuniError> {
        let body = xmlrpc::encode_call_parts(method, params).map_err(|e| UyuniError::Encode {
            method: method.to_string(),
            message: e.to_string(),
        })?;
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| UyuniError::Config("client is shut down".to_string()))?;
        let started = Instant::now();
        let timeout = self.inner.timeout;
        let result = match tokio::time::timeout(timeout, self.round_trip(method, body)).await {
            Ok(r) => r,
            Err(_) => Err(UyuniError::Timeout {
                method: method.to_string(),
                after: timeout,
            }),
        };
        let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.count(method, |s| {
            s.requests += 1;
            s.total_us = s.total_us.saturating_add(elapsed);
            if result.is_err() {
                s.errors += 1;
            }
        });
        result
    }

    async fn round_trip(&self, method: &str, body: String) -> Result<Value, UyuniError> {
        let mut resp = self
            .inner
            .http
            .post(&self.inner.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(body)
            .send()
            .await
            .map_err(|e| UyuniError::from_reqwest(method, &e, self.inner.timeout))?;
        let status = resp.status();
        let limit = self.inner.limits.max_body_bytes;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > limit {
                        if !status.is_success() {
                            break;
                        }
                        return Err(UyuniError::Decode {
                            method: method.to_string(),
                            error: xmlrpc::DecodeError {
                                kind: xmlrpc::DecodeErrorKind::TooLarge {
                                    size: buf.len() + chunk.len(),
                                    limit,
                                },
                                position: 0,
                                excerpt: xmlrpc::excerpt(&String::from_utf8_lossy(&buf), 0, 60),
                            },
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(UyuniError::from_reqwest(method, &e, self.inner.timeout)),
            }
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&buf);
            return Err(UyuniError::Http {
                method: method.to_string(),
                status: status.as_u16(),
                excerpt: xmlrpc::excerpt(&text, 0, 120),
            });
        }
        let limits = self.inner.limits;
        let decoded = if buf.len() > OFFLOAD_DECODE_BYTES {
            // Large answers (relevance batches) decode on the blocking pool: several decode
            // in parallel, and the async workers keep serving the other calls meanwhile.
            tokio::task::spawn_blocking(move || xmlrpc::decode_response(&buf, &limits))
                .await
                .map_err(|e| UyuniError::Response {
                    method: method.to_string(),
                    message: format!("decoding task did not finish: {e}"),
                })?
        } else {
            xmlrpc::decode_response(&buf, &limits)
        };
        match decoded {
            Ok(MethodResponse::Success(v)) => Ok(v),
            Ok(MethodResponse::Fault(f)) => Err(UyuniError::Fault {
                method: method.to_string(),
                code: f.code,
                string: f.string,
            }),
            Err(error) => Err(UyuniError::Decode {
                method: method.to_string(),
                error,
            }),
        }
    }
}

/// Response bodies larger than this are decoded on tokio's blocking pool.
const OFFLOAD_DECODE_BYTES: usize = 256 * 1024;

/// The error and all its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let cfg = UyuniConfig {
            password: Secret::new("hunter2"),
            ..UyuniConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        let client = UyuniClient::new(&cfg).unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn endpoint_gets_rpc_api_when_no_path() {
        let mut cfg = UyuniConfig {
            url: "https://uyuni.example".into(),
            ..UyuniConfig::default()
        };
        assert_eq!(cfg.endpoint(), "https://uyuni.example/rpc/api");
        cfg.url = "http://127.0.0.1:8080/".into();
        assert_eq!(cfg.endpoint(), "http://127.0.0.1:8080/rpc/api");
        cfg.url = "http://127.0.0.1:8080/custom/rpc".into();
        assert_eq!(cfg.endpoint(), "http://127.0.0.1:8080/custom/rpc");
    }

    #[test]
    fn config_rejects_unknown_keys_and_reads_password() {
        let cfg: UyuniConfig =
            toml::from_str("url = \"https://u\"\nuser = \"a\"\npassword = \"p\"\n").unwrap();
        assert_eq!(cfg.password.expose(), "p");
        assert!(toml::from_str::<UyuniConfig>("pasword = \"p\"").is_err());
    }

    #[test]
    fn bad_config_is_a_typed_error() {
        let cfg = UyuniConfig {
            url: "ftp://x".into(),
            ..UyuniConfig::default()
        };
        assert!(matches!(UyuniClient::new(&cfg), Err(UyuniError::Config(_))));
        let cfg = UyuniConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..UyuniConfig::default()
        };
        let err = UyuniClient::new(&cfg).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn call_kinds() {
        assert_eq!(CallKind::for_method("system.listSystems"), CallKind::Read);
        assert_eq!(CallKind::for_method("system.getDetails"), CallKind::Read);
        assert_eq!(
            CallKind::for_method("system.scheduleApplyErrata"),
            CallKind::Write
        );
        assert_eq!(
            CallKind::for_method("schedule.cancelActions"),
            CallKind::Write
        );
    }
}

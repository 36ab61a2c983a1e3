//! Signed JSON webhooks.
//!
//! Each POST carries:
//! - `Content-Type: application/json`, the JSON payload as the raw body;
//! - `X-Spm-Signature: sha256=<hex>`: HMAC-SHA256 of the raw body with the webhook's
//!   `hmac_secret` (when configured);
//! - `X-Spm-Timestamp: <unix seconds>` of this attempt (the payload repeats it, so it is
//!   covered by the signature);
//! - `Idempotency-Key: <key>`: the same for every retry of one delivery;
//! - the optional `Authorization` header (a secret).
//!
//! Redirects are not followed (they would carry the auth header elsewhere); any status
//! other than 2xx is a failure.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use sha2::Sha256;

use super::Secret;

/// Header with the HMAC signature.
pub const SIGNATURE_HEADER: &str = "X-Spm-Signature";
/// Header with the attempt's Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Spm-Timestamp";
/// Header with the delivery's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// One webhook. `Debug` shows only the URL's scheme and host: chat services put their
/// secret in the path.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Name used in delivery rows and reports (never the URL's secrets).
    pub name: String,
    /// Endpoint URL (https recommended).
    pub url: String,
    /// Optional value of the `Authorization` header, e.g. `"Bearer …"`.
    pub auth_header: Option<Secret>,
    /// Optional key for the `X-Spm-Signature` HMAC.
    pub hmac_secret: Option<Secret>,
    /// Event types this webhook receives; empty means all routed to webhooks.
    pub events: Vec<String>,
    /// Request timeout.
    pub timeout: Duration,
    /// PEM file with extra CA roots for a private endpoint.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = reqwest::Url::parse(&self.url)
            .map(|u| redact_url(&u))
            .unwrap_or_else(|_| "[invalid url]".into());
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &url)
            .field("auth_header", &self.auth_header)
            .field("hmac_secret", &self.hmac_secret)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Errors from the webhook channel.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The webhook configuration is unusable.
    #[error("webhook {name}: {message}")]
    Config {
        /// Webhook name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The request failed (connect, TLS, timeout).
    #[error("webhook {name}: request failed: {source}")]
    Request {
        /// Webhook name.
        name: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The receiver answered with a non-2xx status.
    #[error("webhook {name}: HTTP {status}: {body}")]
    Status {
        /// Webhook name.
        name: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
}

/// A client for one webhook endpoint.
#[derive(Clone)]
pub struct WebhookClient {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
    hmac_secret: Option<Secret>,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth.is_some())
            .field("signed", &self.hmac_secret.is_some())
            .finish()
    }
}

/// The URL reduced to scheme, host and port, for logs: credentials, path and query may
/// all hold tokens.
pub fn redact_url(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}/…",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

/// `sha256=<hex>` HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookClient {
    /// Build a client; validates the URL and the auth header.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, WebhookError> {
        crate::services::ensure_crypto_provider();
        let err = |message: String| WebhookError::Config {
            name: cfg.name.clone(),
            message,
        };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| err(format!("invalid url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(format!("url scheme {:?} is not http(s)", url.scheme())));
        }
        let auth = match &cfg.auth_header {
            None => None,
            Some(secret) => {
                let mut value = HeaderValue::from_str(secret.expose().trim())
                    .map_err(|_| err("auth_header is not a valid header value".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("spm/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| err(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| err(format!("invalid PEM in ca_file {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| err(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            name: cfg.name.clone(),
            url,
            client,
            auth,
            hmac_secret: cfg.hmac_secret.clone(),
        })
    }

    /// Webhook name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// POST `body` (JSON bytes) with the signature, timestamp and idempotency headers.
    /// Returns the HTTP status on success (2xx).
    pub async fn post(
        &self,
        body: Vec<u8>,
        idempotency_key: &str,
        timestamp: i64,
    ) -> Result<u16, WebhookError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| WebhookError::Config {
            name: self.name.clone(),
            message: "idempotency key is not a valid header value".into(),
        })?;
        headers.insert(IDEMPOTENCY_HEADER, key);
        if let Some(secret) = &self.hmac_secret {
            let sig = sign(secret.expose().as_bytes(), &body);
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert(SIGNATURE_HEADER, v);
            }
        }
        if let Some(v) = &self.auth {
            headers.insert(AUTHORIZATION, v.clone());
        }
        let resp = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|source| WebhookError::Request {
                name: self.name.clone(),
                source: source.without_url(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(WebhookError::Status {
            name: self.name.clone(),
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(auth: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            name: "ops".into(),
            url: "https://user:pw@hooks.example/x?token=abc".into(),
            auth_header: auth.map(Secret::new),
            hmac_secret: Some(Secret::new("k")),
            events: vec![],
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn auth_header_is_validated_and_redacted() {
        assert!(WebhookClient::new(&cfg(Some("bad\nvalue"))).is_err());
        let c = WebhookClient::new(&cfg(Some("Bearer tok123"))).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("tok123"), "{dbg}");
        assert!(!dbg.contains("pw@"), "{dbg}");
        assert!(!dbg.contains("token=abc"), "{dbg}");
        let dbg = format!("{:?}", cfg(Some("Bearer tok123")));
        assert!(
            !dbg.contains("tok123") && !dbg.contains("/x") && !dbg.contains("pw@"),
            "{dbg}"
        );
    }
}

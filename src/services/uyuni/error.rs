//! Errors of the UYUNI client. Every variant names the method it happened in.

use std::time::Duration;

use super::client::{CallKind, error_chain};
use super::xmlrpc::{DecodeError, ValueError};

/// A failed UYUNI call.
#[derive(Debug, thiserror::Error)]
pub enum UyuniError {
    /// The client configuration is unusable.
    #[error("UYUNI client configuration: {0}")]
    Config(String),
    /// The connection failed or broke (refused, reset, DNS…).
    #[error("{method}: transport error: {message}")]
    Transport {
        /// XML-RPC method.
        method: String,
        /// The underlying error chain.
        message: String,
        /// True when no connection was made, so nothing reached the server.
        connect: bool,
    },
    /// No complete answer within the per-call timeout.
    #[error("{method}: no answer within {after:?}")]
    Timeout {
        /// XML-RPC method.
        method: String,
        /// The timeout that fired.
        after: Duration,
    },
    /// TLS handshake or certificate verification failed.
    #[error("{method}: TLS error: {message}")]
    Tls {
        /// XML-RPC method.
        method: String,
        /// The underlying error chain (names the certificate problem).
        message: String,
    },
    /// The server answered with a non-2xx HTTP status.
    #[error("{method}: HTTP status {status}: {excerpt:?}")]
    Http {
        /// XML-RPC method.
        method: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// An XML-RPC fault.
    #[error("{method}: fault {code}: {string}")]
    Fault {
        /// XML-RPC method.
        method: String,
        /// `faultCode`.
        code: i64,
        /// `faultString`.
        string: String,
    },
    /// The response body is not a valid XML-RPC response.
    #[error("{method}: bad response: {error}")]
    Decode {
        /// XML-RPC method.
        method: String,
        /// Kind, position and excerpt.
        error: DecodeError,
    },
    /// A parameter could not be encoded.
    #[error("{method}: cannot encode request: {message}")]
    Encode {
        /// XML-RPC method.
        method: String,
        /// Why.
        message: String,
    },
    /// A well-formed response whose values do not have the documented shape.
    #[error("{method}: unexpected response: {message}")]
    Response {
        /// XML-RPC method.
        method: String,
        /// What was wrong, naming the field.
        message: String,
    },
}

impl UyuniError {
    /// Build a response-shape error from a [`ValueError`].
    pub fn shape(method: &str, e: ValueError) -> Self {
        UyuniError::Response {
            method: method.to_string(),
            message: e.to_string(),
        }
    }

    /// The fault code, when this is a fault.
    pub fn fault_code(&self) -> Option<i64> {
        match self {
            UyuniError::Fault { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for UYUNI's session faults (-1 whose text mentions the session), which mean
    /// "log in again".
    pub fn is_session_fault(&self) -> bool {
        match self {
            UyuniError::Fault { code, string, .. } => {
                let s = string.to_ascii_lowercase();
                *code == -1 && (s.contains("session") || s.contains("could not find a valid user"))
            }
            _ => false,
        }
    }

    /// Whether repeating the call could help and is allowed for this kind of call.
    pub(crate) fn may_retry(&self, kind: CallKind) -> bool {
        match (self, kind) {
            (UyuniError::Transport { connect, .. }, CallKind::Write) => *connect,
            (UyuniError::Transport { .. }, CallKind::Read) => true,
            (UyuniError::Timeout { .. }, CallKind::Read) => true,
            (UyuniError::Http { status, .. }, CallKind::Read) => {
                matches!(status, 429 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    pub(crate) fn from_reqwest(method: &str, e: &reqwest::Error, timeout: Duration) -> Self {
        let message = error_chain(e);
        if is_tls_error(e) {
            return UyuniError::Tls {
                method: method.to_string(),
                message,
            };
        }
        if e.is_timeout() {
            return UyuniError::Timeout {
                method: method.to_string(),
                after: timeout,
            };
        }
        UyuniError::Transport {
            method: method.to_string(),
            message,
            connect: e.is_connect(),
        }
    }
}

fn is_tls_error(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // `io::Error::source` skips the wrapped error itself, and connectors nest io
        // errors (Other → InvalidData → rustls::Error): unwrap them explicitly.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(std::io::Error::get_ref) {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(connect: bool) -> UyuniError {
        UyuniError::Transport {
            method: "m".into(),
            message: "x".into(),
            connect,
        }
    }

    #[test]
    fn retry_policy() {
        let timeout = UyuniError::Timeout {
            method: "m".into(),
            after: Duration::from_secs(1),
        };
        let http = |status| UyuniError::Http {
            method: "m".into(),
            status,
            excerpt: String::new(),
        };
        let fault = UyuniError::Fault {
            method: "m".into(),
            code: 2600,
            string: "Invalid errata".into(),
        };
        let tls = UyuniError::Tls {
            method: "m".into(),
            message: "bad cert".into(),
        };
        // Reads: transient failures are retried, answers are not.
        assert!(transport(false).may_retry(CallKind::Read));
        assert!(timeout.may_retry(CallKind::Read));
        assert!(http(503).may_retry(CallKind::Read));
        assert!(!http(500).may_retry(CallKind::Read));
        assert!(!http(404).may_retry(CallKind::Read));
        assert!(!fault.may_retry(CallKind::Read));
        assert!(!tls.may_retry(CallKind::Read));
        // Writes: only when no connection was made.
        assert!(transport(true).may_retry(CallKind::Write));
        assert!(!transport(false).may_retry(CallKind::Write));
        assert!(!timeout.may_retry(CallKind::Write));
        assert!(!http(503).may_retry(CallKind::Write));
        assert!(!tls.may_retry(CallKind::Write));
    }

    #[test]
    fn session_faults_are_recognised() {
        let f = |code, s: &str| UyuniError::Fault {
            method: "m".into(),
            code,
            string: s.into(),
        };
        assert!(
            f(
                -1,
                "com.redhat.rhn.common.hibernate.LookupException: Could not find session with id: 3"
            )
            .is_session_fault()
        );
        assert!(
            f(
                -1,
                "com.redhat.rhn.domain.session.InvalidSessionIdException: Session id: 3 is not valid."
            )
            .is_session_fault()
        );
        assert!(
            !f(
                -1,
                "unhandled internal exception: Could not find action with id: 9"
            )
            .is_session_fault()
        );
        assert!(!f(2950, "session").is_session_fault());
    }
}

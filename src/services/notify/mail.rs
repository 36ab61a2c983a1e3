//! E-mail over SMTP with lettre's async transport (no TLS, STARTTLS or implicit TLS).

use std::path::PathBuf;
use std::time::Duration;

use super::Secret;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpSecurity {
    /// Plain text (loopback relays only).
    None,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Relay host name (also the name checked in its certificate).
    pub host: String,
    /// Port; default 25 (none), 587 (starttls) or 465 (tls).
    pub port: Option<u16>,
    /// Connection security.
    pub security: SmtpSecurity,
    /// User name for SMTP AUTH; no authentication when absent.
    pub username: Option<String>,
    /// Password for SMTP AUTH.
    pub password: Option<Secret>,
    /// File holding the password (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// Sender address, e.g. `spm <spm@example.com>`.
    pub from: String,
    /// PEM file with the CA(s) of a private relay; when set, only these roots are trusted.
    pub ca_file: Option<PathBuf>,
    /// Bound on one whole send: connect, TLS, authentication and transfer.
    pub timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            password_file: None,
            from: "spm@localhost".into(),
            ca_file: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl SmtpConfig {
    /// The port to use, explicit or the default for the security mode.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        })
    }
}

/// Errors from the mail channel.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP configuration is unusable.
    #[error("smtp configuration: {0}")]
    Config(String),
    /// An address could not be parsed.
    #[error("invalid {what} address {value:?}: {source}")]
    Address {
        /// Which address (from, to).
        what: &'static str,
        /// The text given.
        value: String,
        /// Parser error.
        source: lettre::address::AddressError,
    },
    /// The message could not be built.
    #[error("cannot build mail: {0}")]
    Build(#[from] lettre::error::Error),
    /// The relay did not complete the exchange in time.
    #[error("smtp send to {relay}: no answer within {after:?}")]
    Timeout {
        /// host:port of the relay.
        relay: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The relay refused or the connection failed.
    #[error("smtp send to {relay}: {source}")]
    Send {
        /// host:port of the relay.
        relay: String,
        /// lettre's error (includes the server's reply).
        source: lettre::transport::smtp::Error,
    },
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct MailMessage {
    /// Recipient addresses.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// Optional HTML alternative.
    pub html: Option<String>,
    /// Message-ID to use (stable across retries so receivers can de-duplicate).
    pub message_id: Option<String>,
}

/// An SMTP client bound to one relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: String,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// Build a client from the configuration (reads `password_file` and `ca_file`).
    pub fn new(cfg: &SmtpConfig) -> Result<Self, MailError> {
        if cfg.host.trim().is_empty() {
            return Err(MailError::Config("host is empty".into()));
        }
        let from: Mailbox = cfg.from.parse().map_err(|source| MailError::Address {
            what: "from",
            value: cfg.from.clone(),
            source,
        })?;
        let port = cfg.effective_port();
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
                .port(port)
                .timeout(Some(cfg.timeout));
        if cfg.security != SmtpSecurity::None {
            let mut params = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    MailError::Config(format!("cannot read ca_file {}: {e}", ca.display()))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    MailError::Config(format!("invalid PEM in ca_file {}: {e}", ca.display()))
                })?;
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| MailError::Config(format!("tls parameters: {e}")))?;
            builder = builder.tls(match cfg.security {
                SmtpSecurity::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some(user) = &cfg.username {
            let password = resolve_password(cfg)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        } else if cfg.password.is_some() || cfg.password_file.is_some() {
            return Err(MailError::Config("password given without username".into()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            relay: format!("{}:{port}", cfg.host),
            timeout: cfg.timeout,
        })
    }

    /// `host:port` of the relay.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Send one message to all its recipients.
    pub async fn send(&self, msg: &MailMessage) -> Result<(), MailError> {
        if msg.to.is_empty() {
            return Err(MailError::Config("no recipients".into()));
        }
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.clone())
            .message_id(msg.message_id.clone());
        for to in &msg.to {
            let mb: Mailbox = to.parse().map_err(|source| MailError::Address {
                what: "to",
                value: to.clone(),
                source,
            })?;
            b = b.to(mb);
        }
        let message = match &msg.html {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(
                msg.text.clone(),
                html.clone(),
            ))?,
            None => b.header(ContentType::TEXT_PLAIN).body(msg.text.clone())?,
        };
        // lettre bounds the connection with the timeout; this bounds the whole exchange,
        // so a relay that stops answering cannot hold a delivery forever.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(MailError::Send {
                relay: self.relay.clone(),
                source,
            }),
            Err(_) => Err(MailError::Timeout {
                relay: self.relay.clone(),
                after: self.timeout,
            }),
        }
    }
}

fn resolve_password(cfg: &SmtpConfig) -> Result<String, MailError> {
    match (&cfg.password, &cfg.password_file) {
        (Some(_), Some(_)) => Err(MailError::Config(
            "set either password or password_file, not both".into(),
        )),
        (Some(p), None) => Ok(p.expose().to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                MailError::Config(format!("cannot read password_file {}: {e}", path.display()))
            })?;
            Ok(text.lines().next().unwrap_or_default().to_string())
        }
        (None, None) => Err(MailError::Config(
            "username given without password or password_file".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_from_and_empty_host() {
        let cfg = SmtpConfig {
            host: "localhost".into(),
            from: "not an address".into(),
            ..SmtpConfig::default()
        };
        assert!(matches!(
            Mailer::new(&cfg),
            Err(MailError::Address { what: "from", .. })
        ));
        let cfg = SmtpConfig::default();
        assert!(matches!(Mailer::new(&cfg), Err(MailError::Config(_))));
    }

    #[test]
    fn debug_hides_password() {
        let cfg = SmtpConfig {
            password: Some(Secret::new("s3cret-pw")),
            ..SmtpConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("s3cret-pw"));
    }
}

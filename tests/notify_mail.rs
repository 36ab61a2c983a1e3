//! E-mail notifications against a real SMTP server (python3-aiosmtpd on loopback).

mod support;

use std::time::Duration;

use serde_json::json;
use spm::engine::notify::{Event, EventKind, Notifier, NotifyConfig};
use spm::services::notify::{Secret, SmtpConfig, SmtpSecurity};
use spm::store::Store;
use spm::store::notifications as db;
use support::{SinkOptions, SmtpSink, header, shipped_templates, wait_for};
use tokio_util::sync::CancellationToken;

fn config(templates: &std::path::Path, smtp: SmtpConfig) -> NotifyConfig {
    let mut cfg = NotifyConfig {
        templates_dir: templates.to_path_buf(),
        smtp: Some(smtp),
        ..NotifyConfig::default()
    };
    cfg.recipients.insert(
        "test_failed".into(),
        vec![
            "ops@example.test".into(),
            "Sec Team <sec@example.test>".into(),
        ],
    );
    cfg.recipients
        .insert("default".into(), vec!["fallback@example.test".into()]);
    cfg.retry.base_delay = Duration::from_millis(100);
    cfg.poll_interval = Duration::from_millis(200);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_failed_mail_has_headers_body_and_stable_message_id() {
    let sink = SmtpSink::start(SinkOptions::default());
    let tpl = shipped_templates();
    let dbdir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dbdir.path().join("spm.db")).expect("store");
    let cfg = config(
        tpl.path(),
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(sink.port),
            security: SmtpSecurity::None,
            from: "spm <spm@example.test>".into(),
            ..SmtpConfig::default()
        },
    );
    let notifier = Notifier::new(store.clone(), cfg).expect("notifier");
    let stop = CancellationToken::new();
    let worker = notifier.spawn_worker(stop.clone());

    let id = notifier
        .raise(
            Event::new(
                EventKind::TestFailed,
                json!({"system": "web1", "phase": "validate", "reason": "nginx <down>", "duration_s": 42}),
            )
            .advisory("DSA-5000-1")
            .test_id(7)
            .queue_id(3),
        )
        .await
        .expect("raised");

    let msgs = wait_for(20, "the mail", || {
        let m = sink.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(msgs.len(), 1);
    let (env, raw) = &msgs[0];
    // Envelope.
    assert_eq!(env["mail_from"], "spm@example.test");
    assert_eq!(
        env["rcpt_tos"],
        json!(["ops@example.test", "sec@example.test"])
    );
    // Headers, raw and decoded.
    assert_eq!(
        header(raw, "From").as_deref(),
        Some("spm <spm@example.test>")
    );
    let to = env["to"].as_str().expect("to");
    assert!(
        to.contains("ops@example.test") && to.contains("sec@example.test"),
        "{to}"
    );
    assert_eq!(env["subject"], "[spm] Test FAILED: DSA-5000-1 on web1");
    // Body: text part with the rendered fields, HTML part escaped.
    let text = env["plain"].as_str().expect("text part");
    assert!(
        text.contains("The automatic test of DSA-5000-1 FAILED."),
        "{text}"
    );
    assert!(text.contains("Phase    : validate"), "{text}");
    assert!(text.contains("Reason   : nginx <down>"), "{text}");
    assert!(text.contains("Duration : 42s"), "{text}");
    assert!(text.contains("Test ID  : 7"), "{text}");
    let html = env["html"].as_str().expect("html part");
    assert!(html.contains("nginx &lt;down&gt;"), "{html}");

    // The delivery row: sent once, and the Message-ID carries its idempotency key.
    let d = wait_for(10, "delivery recorded as sent", || {
        let d = store
            .read_blocking(|c| db::deliveries(c, id))
            .expect("deliveries");
        (d.len() == 1 && d[0].status == "sent").then_some(d)
    })
    .await;
    assert_eq!(d[0].attempts, 1);
    assert_eq!(d[0].channel, "email");
    let mid = env["message_id"].as_str().expect("message id");
    assert_eq!(mid, format!("<{}@spm>", d[0].idempotency_key));

    stop.cancel();
    worker.await.expect("worker");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A private CA and a server certificate for 127.0.0.1 signed by it.
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("tmp");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("cert");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");
        std::fs::write(dir.path().join("password"), "correct horse\n").expect("write");
        Self { dir }
    }
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_private_ca_and_verification() {
    let pki = Pki::new();
    let sink = SmtpSink::start(SinkOptions {
        tls: Some((pki.path("cert.pem"), pki.path("key.pem"))),
        auth: Some("spm:correct horse".into()),
        implicit_tls: false,
    });
    let tpl = shipped_templates();
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(sink.port),
        security: SmtpSecurity::Starttls,
        username: Some("spm".into()),
        password_file: Some(pki.path("password")),
        from: "spm@example.test".into(),
        ca_file: Some(pki.path("ca.pem")),
        timeout: Duration::from_secs(10),
        ..SmtpConfig::default()
    };

    // Right CA and password: delivered over TLS, authenticated.
    let store = Store::open_in_memory().expect("store");
    let n = Notifier::new(store.clone(), config(tpl.path(), smtp.clone())).expect("notifier");
    let reports = n.send_test().await.expect("send_test");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].ok, "{reports:?}");
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0["tls"], true);
    assert_eq!(msgs[0].0["login"], "spm");
    assert_eq!(msgs[0].0["subject"], "[spm] Test notification");
    // `send_test` mails every configured recipient once.
    let rcpts = msgs[0].0["rcpt_tos"].as_array().expect("rcpts").len();
    assert_eq!(rcpts, 3);

    // Wrong password: reported per channel, recorded as given up, nothing delivered.
    let bad_pw = SmtpConfig {
        password_file: None,
        password: Some(Secret::new("wrong")),
        ..smtp.clone()
    };
    let n = Notifier::new(store.clone(), config(tpl.path(), bad_pw)).expect("notifier");
    let reports = n.send_test().await.expect("send_test");
    assert!(!reports[0].ok);
    let err = reports[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("535") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password leaked into the error: {err}"
    );

    // No private CA: the certificate is not trusted (verification is on by default).
    let no_ca = SmtpConfig {
        ca_file: None,
        ..smtp
    };
    let n = Notifier::new(store.clone(), config(tpl.path(), no_ca)).expect("notifier");
    let reports = n.send_test().await.expect("send_test");
    assert!(!reports[0].ok, "{reports:?}");
    assert_eq!(sink.messages().len(), 1, "only the first test mail arrived");

    let all = store
        .read_blocking(|c| db::list(c, &db::ListFilter::default()))
        .expect("list");
    assert_eq!(all.len(), 3);
    let statuses: Vec<String> = all
        .iter()
        .map(|x| {
            store.read_blocking(|c| db::deliveries(c, x.id)).expect("d")[0]
                .status
                .clone()
        })
        .collect();
    assert_eq!(statuses, ["gave_up", "gave_up", "sent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_answers_times_out_and_is_retried_later() {
    // A TCP server that accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let n = Notifier::new(
        store.clone(),
        config(
            tpl.path(),
            SmtpConfig {
                host: "127.0.0.1".into(),
                port: Some(port),
                security: SmtpSecurity::None,
                timeout: Duration::from_millis(500),
                ..SmtpConfig::default()
            },
        ),
    )
    .expect("notifier");
    let id = n
        .raise(Event::new(EventKind::SyncFailed, json!({"error": "x"})))
        .await
        .expect("raised");
    let before = spm::store::now_ts();
    assert_eq!(n.deliver_due().await.expect("pass"), 1);
    let d = &store.read_blocking(|c| db::deliveries(c, id)).expect("d")[0];
    assert_eq!(d.status, "failed", "{d:?}");
    assert_eq!(d.attempts, 1);
    assert!(
        d.last_error
            .as_deref()
            .unwrap_or("")
            .contains("no answer within"),
        "{d:?}"
    );
    assert!(d.next_attempt_at > before, "retry scheduled later: {d:?}");
    // Not due yet: a second pass right away sends nothing.
    assert_eq!(n.deliver_due().await.expect("pass"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_relay_receives_the_mail() {
    let pki = Pki::new();
    let sink = SmtpSink::start(SinkOptions {
        tls: Some((pki.path("cert.pem"), pki.path("key.pem"))),
        auth: None,
        implicit_tls: true,
    });
    let tpl = shipped_templates();
    let store = Store::open_in_memory().expect("store");
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(sink.port),
        security: SmtpSecurity::Tls,
        from: "spm@example.test".into(),
        ca_file: Some(pki.path("ca.pem")),
        ..SmtpConfig::default()
    };
    let n = Notifier::new(store.clone(), config(tpl.path(), smtp.clone())).expect("notifier");
    let id = n
        .raise(
            Event::new(
                EventKind::BudgetTripped,
                json!({"policy": "db-weekly", "wave": 2, "failed": 3, "budget": 1}),
            )
            .run_id(9),
        )
        .await
        .expect("raised");
    assert_eq!(n.deliver_due().await.expect("pass"), 1);
    let d = &store.read_blocking(|c| db::deliveries(c, id)).expect("d")[0];
    assert_eq!(d.status, "sent", "{d:?}");
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0["tls"], true);
    assert_eq!(msgs[0].0["rcpt_tos"], json!(["fallback@example.test"]));
    assert_eq!(
        msgs[0].0["subject"],
        "[spm] Patch run 9 stopped: error budget exceeded (db-weekly)"
    );

    // STARTTLS against a TLS-only port fails, is recorded and will be retried.
    let n = Notifier::new(
        store.clone(),
        config(
            tpl.path(),
            SmtpConfig {
                security: SmtpSecurity::Starttls,
                timeout: Duration::from_secs(2),
                ..smtp
            },
        ),
    )
    .expect("notifier");
    let id = n
        .raise(Event::new(EventKind::SyncFailed, json!({"error": "x"})))
        .await
        .expect("raised");
    assert_eq!(n.deliver_due().await.expect("pass"), 1);
    let d = &store.read_blocking(|c| db::deliveries(c, id)).expect("d")[0];
    assert_eq!(d.status, "failed", "{d:?}");
    assert_eq!(sink.messages().len(), 1);
}

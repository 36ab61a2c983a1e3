//! Our UYUNI client against an independent XML-RPC implementation: a server built on
//! Python's standard `xmlrpc.server` (`tests/support/xmlrpc_server.py`) on loopback,
//! over HTTP and HTTPS (certificate generated here with rcgen).
//!
//! Needs `python3` (Debian package `python3`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use spm::services::uyuni::xmlrpc::{DecodeErrorKind, Struct, Value};
use spm::services::uyuni::{
    CallKind, Secret, SystemOutcome, UyuniClient, UyuniConfig, UyuniError, WaitOptions,
};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret<&>";

/// The Python server; killed when dropped.
struct PyServer {
    child: Child,
    port: u16,
}

impl PyServer {
    fn start(tls: Option<(&Path, &Path)>) -> PyServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/xmlrpc_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}); install the Debian package `python3`")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("python XML-RPC server did not report its port within 20 s");
            }
        };
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from server: {line:?}"));
        PyServer { child, port }
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: String) -> UyuniConfig {
    UyuniConfig {
        url,
        user: USER.into(),
        password: Secret::new(PASSWORD),
        timeout_ms: 5_000,
        retries: 1,
        retry_backoff_ms: 10,
        poll_initial_ms: 5,
        poll_max_ms: 20,
        ..UyuniConfig::default()
    }
}

fn client(url: String) -> UyuniClient {
    UyuniClient::new(&config(url)).expect("client")
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("date literal")
}

#[tokio::test]
async fn every_value_type_round_trips() {
    let srv = PyServer::start(None);
    let c = client(srv.url("http", "/rpc/api"));

    // What Python's marshaller produces.
    let v = c
        .call("test.allTypes", vec![], CallKind::Read)
        .await
        .expect("allTypes");
    let s = v.as_struct().expect("struct");
    assert_eq!(s.i64_field("int"), Ok(1_000_010_000));
    assert_eq!(s.i64_field("negative"), Ok(-7));
    assert_eq!(s.bool_field("true"), Ok(true));
    assert_eq!(s.bool_field("false"), Ok(false));
    assert_eq!(s.get("double"), Some(&Value::Double(2.5)));
    assert_eq!(s.str_field("string"), Ok("a < b & c > d"));
    assert_eq!(
        s.str_field("spaces"),
        Ok("  leading and trailing\n\tspaces  ")
    );
    assert_eq!(s.str_field("empty"), Ok(""));
    assert_eq!(s.str_field("unicode"), Ok("Grüße ☺"));
    assert_eq!(s.datetime_field("date"), Ok(dt("2026-03-12 17:07:41")));
    assert_eq!(
        s.get("blob").and_then(Value::as_bytes),
        Some(&b"\x00\x01binary\xff"[..])
    );
    let arr = s.array_field("array").expect("array");
    assert_eq!(arr[0], Value::Int(1));
    assert_eq!(arr[1], Value::from("two"));
    assert_eq!(arr[2], Value::Array(vec![Value::Double(3.0)]));
    let deep = s
        .struct_field("nested")
        .and_then(|n| n.struct_field("inner"))
        .and_then(|i| i.array_field("deep"))
        .expect("nested");
    assert_eq!(deep, &[Value::Bool(true)]);
    assert_eq!(s.array_field("empty_array"), Ok(&[][..]));
    assert_eq!(s.struct_field("empty_struct"), Ok(&Struct::new()));

    // What our encoder produces, as Python parses and re-encodes it.
    let sent = Value::Struct(
        Struct::new()
            .with("int", -2_147_483_648i64)
            .with("bool", true)
            .with("double", -0.125)
            .with("text", "x < y && z > w\n  indented\ttab")
            .with("empty", "")
            .with("date", dt("2026-12-31 23:59:58"))
            .with("bytes", Value::Base64(vec![0, 159, 255, 10]))
            .with(
                "list",
                vec![Value::Int(1), Value::from("a"), Value::Array(vec![])],
            )
            .with("nested", Struct::new().with("k", Struct::new())),
    );
    let back = c
        .call("test.echo", vec![sent.clone()], CallKind::Read)
        .await
        .expect("echo");
    assert_eq!(back, sent);
}

#[tokio::test]
async fn faults_logins_and_sessions() {
    let srv = PyServer::start(None);
    let url = srv.url("http", "/rpc/api");
    let c = client(url.clone());

    assert_eq!(c.api_version().await.expect("getVersion"), "27");

    match c.call("test.fault", vec![], CallKind::Read).await {
        Err(UyuniError::Fault {
            method,
            code,
            string,
        }) => {
            assert_eq!(method, "test.fault");
            assert_eq!(code, -208);
            assert!(string.contains("No such system - sid = 42"), "{string}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }

    // The session is reused: one login so far.
    let logins = |c: &UyuniClient| {
        let c = c.clone();
        async move {
            c.call_anonymous("test.logins", vec![], CallKind::Read)
                .await
                .expect("logins")
                .as_i64()
                .expect("int")
        }
    };
    assert_eq!(logins(&c).await, 1);

    // The server forgets every session; the next call logs in again once and succeeds.
    c.call_anonymous("test.expireSessions", vec![], CallKind::Write)
        .await
        .expect("expire");
    let v = c
        .call(
            "test.echo",
            vec![Value::from("after relogin")],
            CallKind::Read,
        )
        .await
        .expect("echo after expiry");
    assert_eq!(v.as_str(), Some("after relogin"));
    assert_eq!(logins(&c).await, 2);
    assert_eq!(c.stats()["test.echo"].relogins, 1);

    // Wrong password: fault 2950 from auth.login, never retried.
    let mut cfg = config(url);
    cfg.password = Secret::new("wrong");
    let bad = UyuniClient::new(&cfg).expect("client");
    let err = bad.list_systems().await.expect_err("login must fail");
    assert_eq!(err.fault_code(), Some(2950), "{err}");
    assert_eq!(bad.stats()["auth.login"].requests, 1);
}

#[tokio::test]
async fn typed_calls_map_real_keys() {
    let srv = PyServer::start(None);
    let c = client(srv.url("http", "/rpc/api"));

    let d = c.system_details(1_000_010_000).await.expect("details");
    assert_eq!(d.profile_name, "web-1");
    assert_eq!(d.hostname.as_deref(), Some("web-1.example"));
    assert_eq!(d.last_boot, Some(dt("2026-03-01 08:00:00")));
    assert_eq!(d.lock_status, Some(false));
    let err = c.system_details(5).await.expect_err("unknown system");
    assert_eq!(err.fault_code(), Some(-208));
    assert!(err.to_string().contains("system.getDetails"), "{err}");

    let one = c.relevant_errata(1_000_010_000).await.expect("errata");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, 7);
    assert_eq!(one[0].advisory_name, "USN-7412-2");
    assert_eq!(one[0].advisory_type, "Security Advisory");
    assert_eq!(one[0].date.as_deref(), Some("2026-03-01"));

    let many = c
        .relevant_errata_many(&[1_000_010_000, 1_000_010_001])
        .await
        .expect("errata for many");
    let ids: Vec<i64> = many.iter().map(|m| m.system_id).collect();
    assert_eq!(ids, [1_000_010_000, 1_000_010_001]);
    assert_eq!(many[1].errata[0].advisory_synopsis, "nginx vulnerabilities");
}

#[tokio::test]
async fn run_script_waits_and_splits_output() {
    let srv = PyServer::start(None);
    let c = client(srv.url("http", "/rpc/api"));
    let started = Instant::now();
    let run = c
        .run_script(&[2, 3], "cat /etc/os-release", Duration::from_secs(30))
        .await
        .expect("run_script");
    // The server reports "in progress" twice; with 5 ms polling this takes milliseconds.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!run.timed_out);
    let ok = &run.systems[&2];
    assert!(ok.succeeded(), "{ok:?}");
    let r = ok.result.as_ref().expect("result for 2");
    assert_eq!(r.stdout, "2");
    assert_eq!(r.stderr, "warn <x> & y");
    let failed = &run.systems[&3];
    assert!(matches!(failed.outcome, SystemOutcome::Failed { .. }));
    assert!(!failed.succeeded());
    let r = failed.result.as_ref().expect("result for 3");
    assert_eq!(r.return_code, 3);
    assert_eq!(r.stderr, "no such file");
    assert_eq!(r.stdout, "");
    assert_eq!(r.start_date, Some(dt("2026-03-12 17:07:41")));
    let polls = c.stats()["schedule.listInProgressSystems"].requests;
    assert_eq!(polls, 3, "two in-progress answers, then done");

    // An unknown action id is a fault from the first poll, not a hang.
    let err = c
        .wait_action(
            999,
            &[],
            WaitOptions::for_client(&c, Duration::from_secs(5)),
        )
        .await
        .expect_err("unknown action");
    assert_eq!(err.fault_code(), Some(-1));
}

#[tokio::test]
async fn bad_responses_are_typed_errors() {
    let srv = PyServer::start(None);

    let c = client(srv.url("http", "/html502"));
    match c.api_version().await {
        Err(UyuniError::Http {
            method,
            status,
            excerpt,
        }) => {
            assert_eq!(method, "api.getVersion");
            assert_eq!(status, 502);
            assert!(excerpt.contains("Bad Gateway"), "{excerpt}");
        }
        other => panic!("expected HTTP 502, got {other:?}"),
    }
    // A read is retried once on 502 (retries = 1).
    assert_eq!(c.stats()["api.getVersion"].requests, 2);

    let c = client(srv.url("http", "/html200"));
    match c.api_version().await {
        Err(UyuniError::Decode { method, error }) => {
            assert_eq!(method, "api.getVersion");
            assert!(
                matches!(error.kind, DecodeErrorKind::NotXmlRpc(_)),
                "{error}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }

    let c = client(srv.url("http", "/truncated"));
    match c.api_version().await {
        Err(UyuniError::Decode { error, .. }) => {
            assert_eq!(error.kind, DecodeErrorKind::Truncated, "{error}");
            assert!(error.excerpt.contains("<i4>1"), "{}", error.excerpt);
        }
        other => panic!("expected truncated, got {other:?}"),
    }

    let c = client(srv.url("http", "/malformed"));
    match c.api_version().await {
        Err(UyuniError::Decode { error, .. }) => {
            assert!(matches!(error.kind, DecodeErrorKind::Xml(_)), "{error}");
        }
        other => panic!("expected malformed XML, got {other:?}"),
    }

    // A string where an int belongs: the login "works" (any string is a key), the
    // typed call then reports the method and the field.
    let c = client(srv.url("http", "/wrongtype"));
    let err = c.schedule_reboot(1, None).await.expect_err("wrong type");
    assert!(matches!(err, UyuniError::Response { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("system.scheduleReboot"), "{text}");
    assert!(
        text.contains("expected int, found string \"not-a-number\""),
        "{text}"
    );
}

#[tokio::test]
async fn stalling_server_times_out_and_writes_are_not_retried() {
    let srv = PyServer::start(None);
    let mut cfg = config(srv.url("http", "/stall"));
    cfg.timeout_ms = 300;
    cfg.retries = 2;
    let c = UyuniClient::new(&cfg).expect("client");

    let started = Instant::now();
    let err = c.api_version().await.expect_err("stall");
    assert!(matches!(err, UyuniError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("api.getVersion"), "{err}");
    // A read: first attempt plus two retries, each cut at 300 ms.
    assert_eq!(c.stats()["api.getVersion"].requests, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // auth.login is a write: one attempt only.
    let err = c.schedule_reboot(1, None).await.expect_err("stall");
    assert!(matches!(err, UyuniError::Timeout { .. }), "{err:?}");
    assert_eq!(c.stats()["auth.login"].requests, 1);
}

#[tokio::test]
async fn refused_connection_is_a_transport_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let c = client(format!("http://127.0.0.1:{port}/rpc/api"));
    match c.api_version().await {
        Err(UyuniError::Transport {
            method, connect, ..
        }) => {
            assert_eq!(method, "api.getVersion");
            assert!(connect);
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

struct Certs {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn make_cert() -> Certs {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    Certs {
        _dir: dir,
        cert,
        key,
    }
}

#[tokio::test]
async fn tls_is_verified_by_default_and_ca_file_works() {
    let certs = make_cert();
    let srv = PyServer::start(Some((&certs.cert, &certs.key)));
    let url = srv.url("https", "/rpc/api");

    // No CA: the self-signed certificate is refused with a typed TLS error.
    let c = client(url.clone());
    match c.api_version().await {
        Err(UyuniError::Tls { method, message }) => {
            assert_eq!(method, "api.getVersion");
            assert!(!message.is_empty());
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // TLS errors are never retried.
    assert_eq!(c.stats()["api.getVersion"].requests, 1);

    // With the CA file: verified and working, including login and typed calls.
    let mut cfg = config(url.clone());
    cfg.ca_file = Some(certs.cert.clone());
    let c = UyuniClient::new(&cfg).expect("client");
    assert_eq!(c.api_version().await.expect("getVersion over TLS"), "27");
    let d = c
        .system_details(1_000_010_000)
        .await
        .expect("details over TLS");
    assert_eq!(d.profile_name, "web-1");

    // Explicitly insecure also connects (and is logged at warn).
    let mut cfg = config(url);
    cfg.insecure = true;
    let c = UyuniClient::new(&cfg).expect("client");
    assert_eq!(c.api_version().await.expect("insecure"), "27");
}

#[tokio::test]
async fn deadline_cancels_queued_actions_and_reports_pending() {
    let srv = PyServer::start(None);
    let c = client(srv.url("http", "/rpc/api"));
    let opts = WaitOptions {
        deadline: Duration::from_millis(200),
        initial: Duration::from_millis(5),
        max: Duration::from_millis(50),
        cancel_on_timeout: true,
    };

    // Sid 98 stays Queued: the wait gives up at the deadline and cancels the action.
    let started = Instant::now();
    let run = c
        .run_script_with(&[98], "echo hi", Duration::from_secs(1), opts)
        .await
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(run.timed_out);
    assert!(run.cancelled);
    // Recorded before the cancellation: it was still queued.
    assert_eq!(
        run.systems[&98].outcome,
        SystemOutcome::Pending {
            message: Some("Queued".into())
        }
    );
    assert!(run.systems[&98].result.is_none());
    assert_eq!(c.stats()["schedule.cancelActions"].requests, 1);

    // Sid 99 is Picked Up: UYUNI refuses to cancel (10003); reported, not an error.
    let action = c
        .schedule_script_run(&[99], "root", "root", 10, "#!/bin/sh\ntrue", None)
        .await
        .expect("schedule");
    let report = c.wait_action(action, &[99], opts).await.expect("wait");
    assert!(report.timed_out);
    assert!(!report.cancelled);
    assert!(!report.all_completed());
    assert_eq!(
        report.systems[&99],
        SystemOutcome::Pending {
            message: Some("Picked Up".into())
        }
    );
    // Backoff: far fewer polls than 200 ms / 5 ms.
    assert!(report.polls < 15, "{} polls", report.polls);
}

#[tokio::test]
async fn systems_listed_nowhere_are_reported_missing_without_waiting_for_the_deadline() {
    let srv = PyServer::start(None);
    let c = client(srv.url("http", "/rpc/api"));
    // Sid 97: the server lists the action's system in no state at all.
    let action = c
        .schedule_script_run(&[97], "root", "root", 10, "#!/bin/sh\ntrue", None)
        .await
        .expect("schedule");
    let started = Instant::now();
    let report = c
        .wait_action(
            action,
            &[97],
            WaitOptions::for_client(&c, Duration::from_secs(60)),
        )
        .await
        .expect("wait");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!report.timed_out);
    assert_eq!(report.systems[&97], SystemOutcome::Missing);
    assert_eq!(report.polls, 3);
}

#[tokio::test]
async fn one_login_keep_alive_and_bounded_concurrency() {
    let srv = PyServer::start(None);
    let mut cfg = config(srv.url("http", "/rpc/api"));
    cfg.max_concurrency = 2;
    let c = UyuniClient::new(&cfg).expect("client");
    let anon = |m: &'static str| {
        let c = c.clone();
        async move {
            c.call_anonymous(m, vec![], CallKind::Read)
                .await
                .expect(m)
                .as_i64()
                .expect("int")
        }
    };

    // Eight concurrent first calls: a single login, at most two requests in flight.
    let calls = (0..8).map(|_| {
        let c = c.clone();
        async move {
            c.call("test.sleep", vec![Value::Int(50)], CallKind::Read)
                .await
        }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.expect("sleep").as_i64(), Some(50));
    }
    assert_eq!(anon("test.logins").await, 1);
    assert_eq!(anon("test.peak").await, 2);

    // Sequential calls reuse the pooled connections instead of opening new ones.
    let before = anon("test.connections").await;
    for _ in 0..20 {
        c.call("test.echo", vec![Value::Int(1)], CallKind::Read)
            .await
            .expect("echo");
    }
    assert_eq!(anon("test.connections").await, before);
}

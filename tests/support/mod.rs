//! Shared helpers for the notification integration tests: a real SMTP server
//! (python3-aiosmtpd, `smtp_sink.py`), an HTTP webhook receiver (axum), polling helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Poll `f` every 20 ms until it returns `Some`, or panic after `secs` seconds with `what`.
pub async fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn python_with_aiosmtpd() -> String {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return py.to_string();
        }
    }
    panic!(
        "the SMTP tests need aiosmtpd: install the Debian package python3-aiosmtpd \
         (apt-get install -y python3-aiosmtpd)"
    );
}

/// A running SMTP sink; killed on drop.
pub struct SmtpSink {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// Options of the sink.
#[derive(Default)]
pub struct SinkOptions {
    /// PEM certificate and key: offer (and require) STARTTLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `user:password`: require AUTH.
    pub auth: Option<String>,
    /// With `tls`: TLS from the first byte instead of STARTTLS.
    pub implicit_tls: bool,
}

impl SmtpSink {
    /// Start `tests/support/smtp_sink.py` on a free port and wait until it listens.
    pub fn start(opts: SinkOptions) -> Self {
        let py = python_with_aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut cmd = Command::new(py);
        cmd.arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--outdir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(auth) = &opts.auth {
            cmd.arg("--auth").arg(auth);
        }
        if opts.implicit_tls {
            cmd.arg("--implicit-tls");
        }
        let mut child = cmd.spawn().expect("start smtp_sink.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read smtp_sink.py output");
        assert_eq!(line.trim(), "READY", "smtp_sink.py did not start");
        Self {
            child,
            _stdin: stdin,
            port,
            dir,
        }
    }

    /// Received messages so far: (envelope JSON, raw message), in order.
    pub fn messages(&self) -> Vec<(serde_json::Value, String)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|eml| {
                let meta = std::fs::read_to_string(eml.with_extension("json")).ok()?;
                let raw = std::fs::read_to_string(&eml).ok()?;
                Some((serde_json::from_str(&meta).expect("envelope json"), raw))
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let lines = raw.split("\r\n").flat_map(|l| l.split('\n'));
    let prefix = format!("{}:", name.to_ascii_lowercase());
    for line in lines {
        if line.is_empty() {
            return None;
        }
        if line.to_ascii_lowercase().starts_with(&prefix) {
            return Some(line[prefix.len()..].trim().to_string());
        }
    }
    None
}

/// One request received by the webhook receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
    pub status: u16,
    pub at: Instant,
}

/// An HTTP receiver that answers 500 to the first `fail_first` requests, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    /// Start on a loopback port (runs until the test's runtime ends).
    pub async fn start(fail_first: usize) -> Self {
        use axum::routing::post;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail = Arc::new(AtomicUsize::new(fail_first));
        let (r2, f2) = (received.clone(), fail.clone());
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let (received, fail) = (r2.clone(), f2.clone());
                async move {
                    let failing = fail
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if failing { 500 } else { 200 };
                    received.lock().expect("lock").push(Received {
                        headers,
                        body,
                        status,
                        at: Instant::now(),
                    });
                    (
                        axum::http::StatusCode::from_u16(status).expect("status"),
                        if failing { "boom" } else { "ok" },
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            received,
            fail_first: fail,
        }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Snapshot of the requests so far.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// A copy of the shipped templates in a temporary directory.
pub fn shipped_templates() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/templates");
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(&src).expect("scripts/templates") {
        let p = e.expect("entry").path();
        if let Some(name) = p.file_name() {
            std::fs::copy(&p, dir.path().join(name)).expect("copy template");
        }
    }
    dir
}

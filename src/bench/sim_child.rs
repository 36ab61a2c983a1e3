//! A simulator in a child `spm sim` process, for benchmarks whose memory figure must be
//! spm's own: in production UYUNI is a separate server, so its world does not belong in
//! spm's peak RSS. The child is killed when this handle is dropped.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;

/// The simulator's call counters (the fields of `/_sim/stats` the benchmarks report).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SimStats {
    /// All XML-RPC calls.
    pub total: u64,
    /// Highest number of calls in flight at once.
    pub peak_concurrency: usize,
}

/// A running child simulator.
pub struct SimChild {
    child: tokio::process::Child,
    base_url: String,
    http: reqwest::Client,
}

impl SimChild {
    /// Start `spm sim --listen 127.0.0.1:0 <args>` from this executable and wait (up to
    /// five minutes, generation of a large world included) for it to print its URL.
    pub async fn start(args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the spm binary")?;
        let mut child = tokio::process::Command::new(&exe)
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SPM_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} sim", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the simulator's standard output is not piped")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("url: ") {
                    return Ok(Some(url.trim_end_matches("/rpc/api").to_string()));
                }
            }
            Ok::<_, std::io::Error>(None)
        };
        let base_url = tokio::time::timeout(Duration::from_secs(300), wait)
            .await
            .context("the simulator did not print its URL within 300 s")?
            .context("reading the simulator's output")?
            .context("the simulator exited before printing its URL")?;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        crate::services::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client for the simulator")?;
        Ok(Self {
            child,
            base_url,
            http,
        })
    }

    /// The XML-RPC endpoint.
    pub fn url(&self) -> String {
        format!("{}/rpc/api", self.base_url)
    }

    /// The simulator's call counters.
    pub async fn stats(&self) -> anyhow::Result<SimStats> {
        let url = format!("{}/_sim/stats", self.base_url);
        self.http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("asking the simulator for {url}"))?
            .json::<SimStats>()
            .await
            .with_context(|| format!("reading {url}"))
    }

    /// A handle on the simulator's virtual clock, usable from another task.
    pub fn clock(&self) -> SimClock {
        SimClock {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
        }
    }

    /// Stop the child.
    pub async fn shutdown(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The virtual clock of a child simulator (`POST /_sim/clock/advance`).
#[derive(Clone)]
pub struct SimClock {
    http: reqwest::Client,
    base_url: String,
}

impl SimClock {
    /// Advance the clock by whole seconds.
    pub async fn advance(&self, by: Duration) -> anyhow::Result<()> {
        let url = format!(
            "{}/_sim/clock/advance?seconds={}",
            self.base_url,
            by.as_secs()
        );
        self.http
            .post(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("advancing the simulator's clock at {url}"))?;
        Ok(())
    }
}

//! A simulator in a child `spm sim` process, for benchmarks whose memory figure must be
//! spm's own: in production UYUNI is a separate server, so its world does not belong in
//! spm's peak RSS. The child is killed when this handle is dropped.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;

use crate::sim::StatsSnapshot;

/// A running child simulator.
pub struct SimChild {
    child: tokio::process::Child,
    api: SimApi,
}

impl SimChild {
    /// Start `spm sim --listen 127.0.0.1:0 <args>` from this executable and wait (up to
    /// five minutes, generation of a large world included) for it to print its URL.
    pub async fn start(
        args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
    ) -> anyhow::Result<Self> {
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
            api: SimApi { http, base_url },
        })
    }

    /// Its HTTP endpoints; clone it to use them from another task.
    pub fn api(&self) -> &SimApi {
        &self.api
    }

    /// Stop the child.
    pub async fn shutdown(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The endpoints of a child simulator: XML-RPC, `/_sim/stats`, `/_sim/clock/advance`.
#[derive(Clone)]
pub struct SimApi {
    http: reqwest::Client,
    base_url: String,
}

impl SimApi {
    /// The XML-RPC endpoint.
    pub fn url(&self) -> String {
        format!("{}/rpc/api", self.base_url)
    }

    /// The simulator's call counters.
    pub async fn stats(&self) -> anyhow::Result<StatsSnapshot> {
        let url = format!("{}/_sim/stats", self.base_url);
        self.http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("asking the simulator for {url}"))?
            .json::<StatsSnapshot>()
            .await
            .with_context(|| format!("reading {url}"))
    }

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

//! Benchmarks behind `spm bench <name> --json`: each prints one JSON object of figures.

pub mod api;
pub mod host;

/// Names of the available benchmarks.
pub const NAMES: &[&str] = &["api", "host"];

/// Overrides of a benchmark's default sizes (`None`: the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// Rows to seed.
    pub items: Option<usize>,
    /// Concurrent clients.
    pub clients: Option<usize>,
    /// Total requests.
    pub requests: Option<usize>,
}

/// Run the benchmark `name` and return its figures.
pub fn run(name: &str, sizes: Sizes) -> anyhow::Result<serde_json::Value> {
    match name {
        "api" => {
            let d = api::Options::default();
            api::run(&api::Options {
                items: sizes.items.unwrap_or(d.items),
                clients: sizes.clients.unwrap_or(d.clients).max(1),
                requests: sizes.requests.unwrap_or(d.requests).max(1),
                ..d
            })
        }
        "host" => host::run(),
        other => anyhow::bail!(
            "unknown benchmark {other:?}; available: {}",
            NAMES.join(", ")
        ),
    }
}

/// Resident memory of this process from `/proc/self/status`: (VmRSS, VmHWM) in MiB.
pub fn rss_mb() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

//! Benchmarks behind `spm bench <name> --json`: each prints one JSON object of figures.

pub mod api;
pub mod host;
pub mod lab;
pub mod notify;
pub mod rollout;
pub mod sim_child;
pub mod sync;
pub mod test;
pub mod uyuni;

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

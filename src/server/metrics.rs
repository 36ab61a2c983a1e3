//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Two sources: the database (one read transaction of cheap aggregate queries per scrape,
//! see [`crate::store::stats::metrics`]) and the in-process [`Metrics`] registry that other
//! parts increment (UYUNI call latency, sync calls, script reloads, HTTP responses).
//!
//! Access: a viewer token by default (Prometheus sends it with `authorization:
//! credentials_file:`); `metrics_public = true` in the server config makes it public.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;
use crate::engine::state::Status;
use crate::engine::state::queue::QueueStatus;
use crate::store::stats::{self, MetricsSnapshot};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

/// In-process counters and histograms. Cheap to share (`Arc<Metrics>`); every method takes
/// `&self`.
#[derive(Debug, Default)]
pub struct Metrics {
    uyuni_calls: Mutex<BTreeMap<String, Histogram>>,
    sync_calls: AtomicU64,
    script_generation: AtomicU64,
    script_reloads: AtomicU64,
    script_reload_errors: AtomicU64,
    http_responses: [AtomicU64; 5],
}

impl Metrics {
    /// Record one UYUNI XML-RPC call of `method` that took `seconds`.
    pub fn observe_uyuni_call(&self, method: &str, seconds: f64, ok: bool) {
        let Ok(mut map) = self.uyuni_calls.lock() else {
            return;
        };
        let h = map.entry(method.to_owned()).or_default();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
        if !ok {
            h.errors += 1;
        }
    }

    /// Count UYUNI calls made by the synchroniser.
    pub fn add_sync_calls(&self, n: u64) {
        self.sync_calls.fetch_add(n, Ordering::Relaxed);
    }

    /// Record a script reload: the new generation on success, an error otherwise.
    pub fn record_script_reload(&self, result: Result<u64, ()>) {
        self.script_reloads.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(generation) => self.script_generation.store(generation, Ordering::Relaxed),
            Err(()) => {
                self.script_reload_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Count one HTTP response by status class.
    pub fn record_http_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labelled(
    out: &mut String,
    name: &str,
    label: &str,
    values: &BTreeMap<String, i64>,
    all: &[&str],
) {
    // Emit every known label value (0 when absent) so series do not vanish.
    let mut seen: BTreeMap<&str, i64> = all.iter().map(|k| (*k, 0)).collect();
    for (k, v) in values {
        seen.insert(k.as_str(), *v);
    }
    for (k, v) in seen {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(k));
    }
}

/// Render the exposition text from a database snapshot and the registry.
pub fn render(db: &MetricsSnapshot, m: &Metrics) -> String {
    let mut out = String::with_capacity(8192);
    family(
        &mut out,
        "spm_queue_items",
        "gauge",
        "Queue items by status.",
    );
    let statuses: Vec<&str> = QueueStatus::ALL.iter().map(|s| s.as_str()).collect();
    labelled(
        &mut out,
        "spm_queue_items",
        "status",
        &db.queue_by_status,
        &statuses,
    );
    family(
        &mut out,
        "spm_pending_approvals_count",
        "gauge",
        "Queue items waiting for approval.",
    );
    let _ = writeln!(out, "spm_pending_approvals_count {}", db.pending_approvals);
    family(
        &mut out,
        "spm_oldest_pending_approval_hours",
        "gauge",
        "Hours since the oldest pending approval finished testing (0 when none).",
    );
    let _ = writeln!(
        out,
        "spm_oldest_pending_approval_hours {:.3}",
        db.oldest_pending_hours
    );
    family(&mut out, "spm_tests", "gauge", "Tests by status.");
    labelled(
        &mut out,
        "spm_tests",
        "status",
        &db.tests_by_status,
        &[
            "running",
            "passed",
            "failed",
            "error",
            "aborted",
            "interrupted",
        ],
    );
    family(
        &mut out,
        "spm_test_duration_seconds_sum",
        "gauge",
        "Total duration of finished tests.",
    );
    let _ = writeln!(
        out,
        "spm_test_duration_seconds_sum {:.3}",
        db.test_duration_sum_s
    );
    family(
        &mut out,
        "spm_test_duration_seconds_count",
        "gauge",
        "Number of finished tests.",
    );
    let _ = writeln!(
        out,
        "spm_test_duration_seconds_count {}",
        db.test_duration_count
    );
    family(&mut out, "spm_patch_runs", "gauge", "Patch runs by status.");
    labelled(
        &mut out,
        "spm_patch_runs",
        "status",
        &db.runs_by_status,
        &[
            "completed",
            "failed",
            "budget_tripped",
            "cancelled",
            "interrupted",
        ],
    );
    family(
        &mut out,
        "spm_patch_run_hosts",
        "gauge",
        "Per-host outcomes of patch runs by status.",
    );
    labelled(
        &mut out,
        "spm_patch_run_hosts",
        "status",
        &db.run_hosts_by_status,
        &["ok", "failed", "rolled_back", "rollback_failed", "skipped"],
    );
    family(
        &mut out,
        "spm_sync_runs",
        "gauge",
        "UYUNI sync runs by status.",
    );
    labelled(
        &mut out,
        "spm_sync_runs",
        "status",
        &db.syncs_by_status,
        &["ok", "partial", "failed", "interrupted"],
    );
    if let (Some(d), Some(c), Some(ts)) = (
        db.last_sync_duration_s,
        db.last_sync_calls,
        db.last_sync_timestamp,
    ) {
        family(
            &mut out,
            "spm_last_sync_duration_seconds",
            "gauge",
            "Duration of the last finished sync.",
        );
        let _ = writeln!(out, "spm_last_sync_duration_seconds {d:.3}");
        family(
            &mut out,
            "spm_last_sync_calls",
            "gauge",
            "UYUNI calls made by the last finished sync.",
        );
        let _ = writeln!(out, "spm_last_sync_calls {c}");
        family(
            &mut out,
            "spm_last_sync_timestamp_seconds",
            "gauge",
            "Unix time the last sync finished.",
        );
        let _ = writeln!(out, "spm_last_sync_timestamp_seconds {ts:.0}");
    }
    family(
        &mut out,
        "spm_sync_calls_total",
        "counter",
        "UYUNI calls made by syncs since start.",
    );
    let _ = writeln!(
        out,
        "spm_sync_calls_total {}",
        m.sync_calls.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "spm_compliance_systems",
        "gauge",
        "Systems by compliance status, OS and environment.",
    );
    for (status, os, env, n) in &db.compliance {
        let _ = writeln!(
            out,
            "spm_compliance_systems{{status=\"{}\",os=\"{}\",env=\"{}\"}} {n}",
            escape(status),
            escape(os),
            escape(env)
        );
    }
    family(
        &mut out,
        "spm_notifications_unread",
        "gauge",
        "Unread notifications.",
    );
    let _ = writeln!(out, "spm_notifications_unread {}", db.notifications_unread);
    family(
        &mut out,
        "spm_api_tokens",
        "gauge",
        "Active API tokens by role.",
    );
    labelled(
        &mut out,
        "spm_api_tokens",
        "role",
        &db.tokens_by_role,
        &["viewer", "operator", "approver", "admin"],
    );
    family(
        &mut out,
        "spm_script_generation",
        "gauge",
        "Generation of the loaded Lua script set.",
    );
    let _ = writeln!(
        out,
        "spm_script_generation {}",
        m.script_generation.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "spm_script_reloads_total",
        "counter",
        "Script reload attempts since start.",
    );
    let _ = writeln!(
        out,
        "spm_script_reloads_total {}",
        m.script_reloads.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "spm_script_reload_errors_total",
        "counter",
        "Failed script reloads since start.",
    );
    let _ = writeln!(
        out,
        "spm_script_reload_errors_total {}",
        m.script_reload_errors.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "spm_uyuni_call_duration_seconds",
        "histogram",
        "Latency of UYUNI XML-RPC calls by method.",
    );
    let calls = m.uyuni_calls.lock().map(|g| g.clone()).unwrap_or_default();
    for (method, h) in &calls {
        let method = escape(method);
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "spm_uyuni_call_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            out,
            "spm_uyuni_call_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "spm_uyuni_call_duration_seconds_sum{{method=\"{method}\"}} {:.6}",
            h.sum
        );
        let _ = writeln!(
            out,
            "spm_uyuni_call_duration_seconds_count{{method=\"{method}\"}} {}",
            h.count
        );
    }
    family(
        &mut out,
        "spm_uyuni_call_errors_total",
        "counter",
        "Failed UYUNI XML-RPC calls by method.",
    );
    for (method, h) in &calls {
        let _ = writeln!(
            out,
            "spm_uyuni_call_errors_total{{method=\"{}\"}} {}",
            escape(method),
            h.errors
        );
    }
    family(
        &mut out,
        "spm_http_responses_total",
        "counter",
        "HTTP responses by status class.",
    );
    for (i, c) in m.http_responses.iter().enumerate() {
        let _ = writeln!(
            out,
            "spm_http_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Ordering::Relaxed)
        );
    }
    out
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let db = state
        .store
        .read(stats::metrics)
        .await
        .map_err(ApiError::internal)?;
    let body = render(&db, &state.metrics);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.observe_uyuni_call("a\"b", 0.007, true);
        m.observe_uyuni_call("a\"b", 3.0, false);
        let text = render(&MetricsSnapshot::default(), &m);
        assert!(
            text.contains(r#"spm_uyuni_call_duration_seconds_bucket{method="a\"b",le="0.005"} 0"#)
        );
        assert!(
            text.contains(r#"spm_uyuni_call_duration_seconds_bucket{method="a\"b",le="0.01"} 1"#)
        );
        assert!(
            text.contains(r#"spm_uyuni_call_duration_seconds_bucket{method="a\"b",le="10"} 2"#)
        );
        assert!(
            text.contains(r#"spm_uyuni_call_duration_seconds_bucket{method="a\"b",le="+Inf"} 2"#)
        );
        assert!(text.contains(r#"spm_uyuni_call_errors_total{method="a\"b"} 1"#));
        // Every queue status is present even with no rows.
        assert!(text.contains(r#"spm_queue_items{status="superseded"} 0"#));
    }

    #[test]
    fn script_reloads_and_http_classes_count() {
        let m = Metrics::default();
        m.record_script_reload(Ok(7));
        m.record_script_reload(Err(()));
        m.record_http_response(404);
        m.record_http_response(200);
        m.record_http_response(201);
        let text = render(&MetricsSnapshot::default(), &m);
        assert!(text.contains("spm_script_generation 7\n"));
        assert!(text.contains("spm_script_reloads_total 2\n"));
        assert!(text.contains("spm_script_reload_errors_total 1\n"));
        assert!(text.contains("spm_http_responses_total{class=\"2xx\"} 2\n"));
        assert!(text.contains("spm_http_responses_total{class=\"4xx\"} 1\n"));
    }
}

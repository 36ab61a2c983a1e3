//! Ops files under `scripts/ops/`: Prometheus rules checked and unit-tested with the real
//! `promtool`, and every spm metric the rules and dashboards use is one the server exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use spm::server::metrics::{Metrics, render};
use spm::store::stats::MetricsSnapshot;

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ops")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops().join("prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}); install the Debian package `prometheus` (apt-get install -y prometheus)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let out = promtool(&["check", "rules", "spm-rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["test", "rules", "spm-rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Metric names the server can export (with data in every family).
fn exported() -> BTreeSet<String> {
    let db = MetricsSnapshot {
        last_sync_duration_s: Some(1.0),
        last_sync_calls: Some(3),
        last_sync_timestamp: Some(1.0),
        compliance: vec![("compliant".into(), "ubuntu".into(), "prod".into(), 1)],
        ..Default::default()
    };
    let m = Metrics::default();
    m.observe_uyuni_call("system.listSystems", 0.1, false);
    render(&db, &m)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn referenced(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bspm_[a-z_]+").expect("regex");
    // Group names (`- name: spm_recording`) are not metrics.
    text.lines()
        .filter(|l| !l.trim_start().trim_start_matches("- ").starts_with("name:"))
        .flat_map(|l| {
            re.find_iter(l)
                .map(|m| m.as_str().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn rules_and_dashboards_only_use_exported_metrics() {
    let names = exported();
    for must in [
        "spm_queue_items",
        "spm_pending_approvals_count",
        "spm_oldest_pending_approval_hours",
        "spm_uyuni_call_duration_seconds_bucket",
        "spm_script_reload_errors_total",
    ] {
        assert!(names.contains(must), "{must} not exported: {names:?}");
    }
    let rules = std::fs::read_to_string(ops().join("prometheus/spm-rules.yml")).expect("rules");
    let mut texts = vec![("spm-rules.yml".to_owned(), rules.clone())];
    let recorded = regex::Regex::new(r"\b(spm|instance):[a-z_0-9:]+").expect("regex");
    for d in ["patch-testing.json", "compliance.json"] {
        let text = std::fs::read_to_string(ops().join("grafana").join(d)).expect("dashboard");
        let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
        assert!(
            v["panels"].as_array().is_some_and(|p| !p.is_empty()),
            "{d} has no panels"
        );
        // Recording rules a dashboard uses must be defined in the rules file.
        for panel in v["panels"].as_array().into_iter().flatten() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("expr");
                for rec in recorded.find_iter(expr) {
                    assert!(
                        rules.contains(&format!("record: {}", rec.as_str())),
                        "{d} uses undefined recording rule {}",
                        rec.as_str()
                    );
                }
            }
        }
        texts.push((d.to_owned(), text));
    }
    for (file, text) in texts {
        for name in referenced(&text) {
            assert!(
                names.contains(&name),
                "{file} uses {name}, which spm does not export"
            );
        }
    }
}

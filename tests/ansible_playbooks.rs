//! The playbooks shipped in `scripts/ansible/`: syntax checks, and check-mode runs against
//! localhost with the local connection through spm's runner (real ansible-core).

mod ansible_common;

use std::net::TcpListener;

use ansible_common::*;
use serde_json::{Value, json};
use spm::services::ansible::{HostStatus, PlaybookResult, RunOptions, RunStatus};

const SHIPPED: &[&str] = &[
    "scan-compliance.yml",
    "patch-rhel.yml",
    "patch-ubuntu.yml",
    "reboot-managed.yml",
    "rollback-snapshot.yml",
];

#[test]
fn every_shipped_playbook_passes_syntax_check() {
    require_ansible();
    let mut found: Vec<String> = std::fs::read_dir(playbook_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    found.sort();
    for name in SHIPPED {
        assert!(
            found.iter().any(|f| f == name),
            "{name} is missing from scripts/ansible"
        );
    }
    for name in &found {
        let out = std::process::Command::new("ansible-playbook")
            .arg("--syntax-check")
            .args(["-i", "localhost,"])
            .arg(playbook_dir().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn check_run(playbook: &str, extra: Value) -> PlaybookResult {
    let mut vars = no_become();
    if let Value::Object(more) = extra {
        vars.extend(more);
    }
    let opts = RunOptions {
        hosts: vec![local_host("localhost")],
        extra_vars: vars,
        check: true,
        timeout_secs: Some(600),
        ..RunOptions::default()
    };
    runner().run_playbook(playbook, opts).await.unwrap()
}

fn assert_clean(result: &PlaybookResult) {
    let host = only_host(result);
    assert_eq!(result.status, RunStatus::Succeeded, "{result:#?}");
    assert_eq!(result.rc, Some(0));
    assert!(!host.is_failed(), "{host:?}");
    assert!(result.check);
}

fn os_family() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let like = release
        .lines()
        .filter(|l| l.starts_with("ID=") || l.starts_with("ID_LIKE="))
        .collect::<Vec<_>>()
        .join(" ");
    if like.contains("debian") || like.contains("ubuntu") {
        "Debian".into()
    } else if like.contains("rhel") || like.contains("fedora") {
        "RedHat".into()
    } else {
        "other".into()
    }
}

#[tokio::test]
async fn scan_compliance_reports_packages_without_changes() {
    require_ansible();
    let result = check_run("scan-compliance.yml", json!({})).await;
    assert_clean(&result);
    let host = only_host(&result);
    assert_eq!(host.changed, 0, "a scan must change nothing: {host:?}");
    let report = host.report.as_ref().expect("scan prints spm_report");
    assert!(report["package_count"].as_u64().unwrap() > 10, "{report}");
    let upgradable = report["upgradable"].as_array().unwrap();
    assert_eq!(
        report["upgradable_count"].as_u64().unwrap() as usize,
        upgradable.len()
    );
    let security = report["security"].as_array().unwrap();
    assert_eq!(
        report["security_count"].as_u64().unwrap() as usize,
        security.len()
    );
    assert!(security.len() <= upgradable.len());
    assert_eq!(report["compliant"], json!(security.is_empty()));
    if os_family() == "Debian" {
        assert_eq!(report["os_family"], "Debian");
        assert_eq!(report["supported"], json!(true));
    }
}

#[tokio::test]
async fn patch_rhel_check_mode_runs_and_skips_other_families() {
    require_ansible();
    let result = check_run("patch-rhel.yml", json!({})).await;
    assert_clean(&result);
    let report = only_host(&result).report.as_ref().expect("spm_report");
    if os_family() != "RedHat" {
        assert_eq!(report["skipped"], json!(true), "{report}");
        assert_eq!(report["reason"], "not RedHat family");
    }
}

#[tokio::test]
async fn patch_rhel_refuses_bad_advisory_ids_on_any_host() {
    require_ansible();
    let result = check_run("patch-rhel.yml", json!({"spm_advisories": ["$(reboot)"]})).await;
    let host = only_host(&result);
    assert_eq!(host.status, HostStatus::Failed, "{host:?}");
    assert_eq!(
        host.failed_task.as_deref(),
        Some("Check the requested packages and advisories")
    );
    assert!(
        host.message.as_deref().unwrap_or("").contains("$(reboot)"),
        "{host:?}"
    );
}

#[tokio::test]
async fn patch_ubuntu_check_mode_changes_nothing() {
    require_ansible();
    let result = check_run("patch-ubuntu.yml", json!({})).await;
    assert_clean(&result);
    let report = only_host(&result).report.as_ref().expect("spm_report");
    if os_family() == "Debian" {
        assert_eq!(report["check_mode"], json!(true), "{report}");
        assert_eq!(report["rebooted"], json!(false));
        assert!(report["packages"].is_array());
    } else {
        assert_eq!(report["skipped"], json!(true), "{report}");
    }
}

#[tokio::test]
async fn patch_ubuntu_rejects_package_names_that_are_not_names() {
    require_ansible();
    let result = check_run(
        "patch-ubuntu.yml",
        json!({"spm_packages": ["openssl", "-o foo"]}),
    )
    .await;
    let host = only_host(&result);
    assert_eq!(host.status, HostStatus::Failed, "{host:?}");
    assert_eq!(
        host.failed_task.as_deref(),
        Some("Check the requested packages")
    );
    assert!(
        host.message.as_deref().unwrap_or("").contains("-o foo"),
        "{host:?}"
    );
}

#[tokio::test]
async fn reboot_managed_check_mode_runs_health_checks() {
    require_ansible();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let result = check_run("reboot-managed.yml", json!({"spm_health_ports": [open]})).await;
    assert_clean(&result);
    let report = only_host(&result).report.as_ref().expect("spm_report");
    assert_eq!(report["rebooted"], json!(false), "{report}");
    assert_eq!(report["ports"], json!([open]));

    // A port nobody listens on fails the health check, naming the task.
    let closed = closed_port();
    let result = check_run(
        "reboot-managed.yml",
        json!({"spm_health_ports": [closed], "spm_health_timeout": 2}),
    )
    .await;
    let host = only_host(&result);
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(host.status, HostStatus::Failed);
    assert_eq!(
        host.failed_task.as_deref(),
        Some("Check that the required ports accept connections")
    );
    drop(listener);
}

#[tokio::test]
async fn reboot_managed_refuses_to_reboot_the_local_machine() {
    require_ansible();
    // Not check mode: the guard must stop the play before any reboot.
    let mut vars = no_become();
    vars.insert("spm_only_if_required".into(), json!(false));
    let opts = RunOptions {
        hosts: vec![local_host("localhost")],
        extra_vars: vars,
        timeout_secs: Some(300),
        ..RunOptions::default()
    };
    let result = runner()
        .run_playbook("reboot-managed.yml", opts)
        .await
        .unwrap();
    let host = only_host(&result);
    assert_eq!(host.status, HostStatus::Failed, "{host:?}");
    assert_eq!(
        host.failed_task.as_deref(),
        Some("Refuse to reboot the machine running spm")
    );
}

#[tokio::test]
async fn rollback_snapshot_check_mode_runs_without_snapper() {
    require_ansible();
    let result = check_run("rollback-snapshot.yml", json!({"spm_snapshot": 42})).await;
    assert_clean(&result);
    let report = only_host(&result).report.as_ref().expect("spm_report");
    assert_eq!(report["snapshot"], json!(42));
    assert_eq!(report["rolled_back"], json!(false));
}

#[tokio::test]
async fn rollback_snapshot_requires_a_snapshot_number() {
    require_ansible();
    let result = check_run(
        "rollback-snapshot.yml",
        json!({"spm_snapshot": "1; reboot"}),
    )
    .await;
    let host = only_host(&result);
    assert_eq!(host.status, HostStatus::Failed);
    assert_eq!(
        host.failed_task.as_deref(),
        Some("Check the snapshot number and configuration")
    );
}

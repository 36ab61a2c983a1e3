//! Real lab systems (root, btrfs, loop devices, network namespaces, systemd-nspawn).
//!
//! Gated: these run only with `SPM_LAB_TESTS=1` (set by `scripts/ops/lab-stage.sh` after it
//! has probed the kernel features); otherwise each test prints "lab stage skipped".

mod lab_common;

use std::time::Duration;

use lab_common::*;
use spm::lab::{self, Lab, LabOptions};

#[test]
fn lab_packages_rollbacks_snapshots_and_reboots() {
    if enabled("lab_packages_rollbacks_snapshots_and_reboots") {
        serial(packages_rollbacks_snapshots_and_reboots());
    }
}

async fn packages_rollbacks_snapshots_and_reboots() {
    let lab = match Lab::up(2, LabOptions::default()).await {
        Ok(l) => l,
        Err(e) => panic!("lab up: {e}"),
    };
    let a = &lab.systems()[0];
    let b = &lab.systems()[1];

    // Baseline comes from the golden image: every synthetic package at 1.0, service active.
    let before = installed(a).await;
    assert_eq!(version(&before, "spm-demo-ok"), "1.0");
    assert_eq!(version(&before, "spm-demo-svc"), "1.0");
    assert_eq!(is_active(a, "spm-demo-svc").await, "active");

    // Clean upgrade.
    let out = install(a, &[("spm-demo-ok", "1.1")]).await;
    assert_eq!(out.rc, 0, "clean upgrade failed: {}", out.stderr);
    assert_eq!(version(&installed(a).await, "spm-demo-ok"), "1.1");

    // Service-breaking upgrade, then a package rollback to the captured version.
    let out = install(a, &[("spm-demo-svc", "1.1")]).await;
    assert_eq!(out.rc, 0, "apt itself should succeed: {}", out.stderr);
    assert_ne!(is_active(a, "spm-demo-svc").await, "active");
    let captured = version(&before, "spm-demo-svc").to_string();
    let out = install(a, &[("spm-demo-svc", &captured)]).await;
    assert_eq!(out.rc, 0, "rollback failed: {}", out.stderr);
    assert_eq!(version(&installed(a).await, "spm-demo-svc"), "1.0");
    assert_eq!(is_active(a, "spm-demo-svc").await, "active");

    // Failing postinst: apt fails, the package is not `ii`; rollback restores it.
    let out = install(a, &[("spm-demo-postinst", "1.1")]).await;
    assert_ne!(out.rc, 0, "postinst failure must fail apt");
    assert_eq!(
        version(&installed(a).await, "spm-demo-postinst"),
        "(not installed)"
    );
    let out = install(a, &[("spm-demo-postinst", "1.0")]).await;
    assert_eq!(out.rc, 0, "postinst rollback failed: {}", out.stderr);
    assert_eq!(version(&installed(a).await, "spm-demo-postinst"), "1.0");

    // A dependency pair must be downgraded together.
    let out = install(a, &[("spm-demo-app", "1.1"), ("spm-demo-lib", "1.1")]).await;
    assert_eq!(out.rc, 0, "pair upgrade: {}", out.stderr);
    let alone = install(a, &[("spm-demo-app", "1.0")]).await;
    assert_ne!(alone.rc, 0, "downgrading one half of the pair must fail");
    // The set apt changed, read from its history, goes back together.
    let changes = match a.last_apt_changes().await {
        Ok(c) => c,
        Err(e) => panic!("apt history: {e}"),
    };
    // apt logs `name:arch` with the native arch even for `Architecture: all`.
    let mut names: Vec<&str> = changes
        .iter()
        .map(|c| c.package.split(':').next().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(names, vec!["spm-demo-app", "spm-demo-lib"]);
    let out = match a.rollback_last_apt(T).await {
        Ok(o) => o,
        Err(e) => panic!("rollback from apt history: {e}"),
    };
    assert_eq!(out.rc, 0, "pair downgrade: {}", out.stderr);
    let now = installed(a).await;
    assert_eq!(version(&now, "spm-demo-app"), "1.0");
    assert_eq!(version(&now, "spm-demo-lib"), "1.0");

    // Snapshot rollback on the other system, verified with dpkg --verify.
    let mut pkgs: Vec<(String, String, String)> = vec![(
        "spm-demo-svc".to_string(),
        "1.0".to_string(),
        "1.1".to_string(),
    )];
    pkgs.extend(lab.state().real_pair.packages.iter().cloned());
    let pre = sh(
        b,
        "snapper create --type pre --cleanup-algorithm number --print-number --description 'spm pre'",
    )
    .await;
    assert_eq!(pre.rc, 0, "snapper pre: {}", pre.stderr);
    let pre_n = pre.stdout.trim().to_string();
    let upgrade: Vec<(&str, &str)> = pkgs
        .iter()
        .map(|(n, _, new)| (n.as_str(), new.as_str()))
        .collect();
    let out = install(b, &upgrade).await;
    assert_eq!(out.rc, 0, "snapshot-test upgrade: {}", out.stderr);
    let mid = installed(b).await;
    for (n, _, new) in &pkgs {
        assert_eq!(version(&mid, n), new, "{n} not upgraded");
    }
    let undo = sh(b, &format!("snapper undochange {pre_n}..0")).await;
    assert_eq!(undo.rc, 0, "undochange: {}{}", undo.stdout, undo.stderr);
    let names: Vec<&str> = pkgs.iter().map(|(n, _, _)| n.as_str()).collect();
    let verify = sh(b, &format!("dpkg --verify {}", names.join(" "))).await;
    assert!(
        verify.stdout.trim().is_empty() && verify.rc == 0,
        "dpkg --verify after undochange: rc {} {}{}",
        verify.rc,
        verify.stdout,
        verify.stderr
    );
    let after = installed(b).await;
    for (n, old, _) in &pkgs {
        assert_eq!(version(&after, n), old, "{n} not restored by undochange");
    }

    // Reboot-needing package: flag set, reboot gives a new boot id and clears it, and the
    // restored service comes back active.
    let out = install(b, &[("spm-demo-reboot", "1.1")]).await;
    assert_eq!(out.rc, 0, "reboot package: {}", out.stderr);
    assert_eq!(sh(b, "test -f /var/run/reboot-required").await.rc, 0);
    let old_id = match b.boot_id().await {
        Ok(id) => id,
        Err(e) => panic!("boot id: {e}"),
    };
    let new_id = match b.reboot(Duration::from_secs(120)).await {
        Ok(id) => id,
        Err(e) => panic!("reboot: {e}"),
    };
    assert_ne!(old_id, new_id);
    assert_ne!(sh(b, "test -f /var/run/reboot-required").await.rc, 0);
    assert_eq!(is_active(b, "spm-demo-svc").await, "active");

    // Node exporter metrics over the bridge.
    let metrics = match b.scrape_metrics().await {
        Ok(m) => m,
        Err(e) => panic!("scrape {}: {e}", b.metrics_url()),
    };
    assert!(
        metrics.contains("node_boot_time_seconds"),
        "no node metrics"
    );

    if let Err(e) = lab.down().await {
        panic!("lab down: {e}");
    }
    assert_eq!(lab::leftovers(), Vec::<String>::new());
}

#[test]
fn lab_dropped_handle_leaves_nothing_behind() {
    if enabled("lab_dropped_handle_leaves_nothing_behind") {
        serial(dropped_handle_leaves_nothing_behind());
    }
}

async fn dropped_handle_leaves_nothing_behind() {
    {
        let lab = match Lab::up(1, LabOptions::default()).await {
            Ok(l) => l,
            Err(e) => panic!("lab up: {e}"),
        };
        assert_eq!(lab.systems().len(), 1);
        assert!(
            !lab::leftovers().is_empty(),
            "a running lab must be visible"
        );
        // Dropped here as a failing test would drop it.
    }
    assert_eq!(lab::leftovers(), Vec::<String>::new());
}

fn spm(args: &[&str]) -> std::process::Output {
    match std::process::Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("run spm {args:?}: {e}"),
    }
}

#[test]
fn lab_cli_up_status_down_and_ctrl_c() {
    if !enabled("lab_cli_up_status_down_and_ctrl_c") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let up = spm(&["lab", "up", "--systems", "1", "--json"]);
    assert!(
        up.status.success(),
        "spm lab up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let st = spm(&["lab", "status", "--json"]);
    assert_eq!(st.status.code(), Some(0));
    let v: serde_json::Value = match serde_json::from_slice(&st.stdout) {
        Ok(v) => v,
        Err(e) => panic!("status json: {e}"),
    };
    assert_eq!(v["systems"][0]["running"], serde_json::Value::Bool(true));
    assert!(
        v["systems"][0]["boot_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36)
    );
    let down = spm(&["lab", "down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(spm(&["lab", "status"]).status.code(), Some(1));
    assert_eq!(lab::leftovers(), Vec::<String>::new());

    // Ctrl-C in the middle of `up` tears down whatever was made.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(["lab", "up", "--systems", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => panic!("spawn spm lab up: {e}"),
    };
    let mut seen = false;
    for _ in 0..300 {
        if lab::net::lab_namespaces().iter().any(|n| n == "spm-lab-1") {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen, "lab up never created its first system");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .is_ok_and(|s| s.success())
    );
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("wait spm lab up: {e}"),
    };
    assert_eq!(out.status.code(), Some(2), "interrupted up must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(lab::leftovers(), Vec::<String>::new());
}

//! The shipped Ansible playbooks for real, not in check mode: `ansible-playbook` (real
//! ansible-core) reaches a real lab system over SSH, `patch-ubuntu.yml` upgrades packages
//! with apt and reboots it because an update asked for it, and `rollback-snapshot.yml`
//! returns it to a snapper snapshot taken before.
//!
//! Gated like the other lab tests: only with `SPM_LAB_TESTS=1` (root, btrfs, namespaces).
//! The lab's bridge lives in its own network namespace, so `ansible-playbook` runs in it
//! through a two-line wrapper given as the runner's program.

mod ansible_common;
mod lab_common;

use std::os::unix::fs::PermissionsExt as _;

use ansible_common::{only_host, playbook_dir, require_ansible};
use lab_common::{enabled, installed, serial, sh, version};
use serde_json::json;
use spm::lab::{self, Lab, LabOptions, shell_quote};
use spm::services::ansible::{AnsibleConfig, AnsibleRunner, HostStatus, InventoryHost, RunOptions};

#[test]
fn lab_shipped_playbooks_patch_reboot_and_roll_back_a_real_system() {
    if enabled("lab_shipped_playbooks_patch_reboot_and_roll_back_a_real_system") {
        serial(playbooks_on_a_lab_system());
    }
}

async fn playbooks_on_a_lab_system() {
    require_ansible();
    let lab = Lab::up(1, LabOptions::default()).await.expect("lab up");
    let sys = &lab.systems()[0];
    let dir = tempfile::tempdir().expect("tempdir");

    // SSH as root with a throwaway key.
    let key = dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen (Debian package openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).expect("public key");
    let setup = sh(
        sys,
        &format!(
            "install -d -m 700 /root/.ssh && printf '%s\\n' {} > /root/.ssh/authorized_keys \
             && chmod 600 /root/.ssh/authorized_keys && systemctl is-active ssh",
            shell_quote(public.trim())
        ),
    )
    .await;
    assert_eq!(setup.rc, 0, "ssh setup: {} {}", setup.stdout, setup.stderr);

    let wrapper = dir.path().join("ansible-playbook-in-lab");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ip netns exec {} ansible-playbook \"$@\"\n",
            lab::net::HUB
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let runner = AnsibleRunner::new(AnsibleConfig {
        program: wrapper.display().to_string(),
        playbook_dir: Some(playbook_dir()),
        kill_grace_secs: 2,
        ..AnsibleConfig::default()
    });
    let mut host = InventoryHost::new(sys.name(), sys.ip());
    host.os = Some("debian".into());
    for (k, v) in [
        ("ansible_user", json!("root")),
        (
            "ansible_ssh_private_key_file",
            json!(key.display().to_string()),
        ),
        (
            "ansible_ssh_common_args",
            json!("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"),
        ),
        ("ansible_python_interpreter", json!("/usr/bin/python3")),
    ] {
        host.vars.insert(k.into(), v);
    }
    let run = |playbook: &'static str, vars: serde_json::Value| {
        let opts = RunOptions {
            hosts: vec![host.clone()],
            extra_vars: vars.as_object().cloned().unwrap_or_default(),
            timeout_secs: Some(600),
            ..RunOptions::default()
        };
        let runner = &runner;
        async move {
            match runner.run_playbook(playbook, opts).await {
                Ok(r) => r,
                Err(e) => panic!("{playbook}: {e}"),
            }
        }
    };

    let before = installed(sys).await;
    assert_eq!(version(&before, "spm-demo-ok"), "1.0");
    assert_eq!(version(&before, "spm-demo-reboot"), "1.0");
    let pre: u64 = sh(
        sys,
        "snapper create --type single --cleanup-algorithm number --print-number \
         --description 'before ansible'",
    )
    .await
    .stdout
    .trim()
    .parse()
    .expect("snapshot number");
    let boot_before = sys.boot_id().await.expect("boot id");

    // Patch two packages for real; one asks for a reboot, which the playbook performs.
    let patched = run(
        "patch-ubuntu.yml",
        json!({
            "spm_become": false,
            "spm_packages": ["spm-demo-ok", "spm-demo-reboot"],
            "spm_reboot": true,
            "spm_reboot_timeout": 180,
        }),
    )
    .await;
    let h = only_host(&patched);
    assert_eq!(h.status, HostStatus::Changed, "{h:?}");
    assert!(h.changed > 0, "{h:?}");
    let report = h.report.as_ref().expect("spm_report");
    assert_eq!(report["updated"], json!(true), "{report}");
    assert_eq!(report["reboot_required"], json!(true), "{report}");
    assert_eq!(report["rebooted"], json!(true), "{report}");
    let patched_pkgs = installed(sys).await;
    assert_eq!(
        version(&patched_pkgs, "spm-demo-ok"),
        lab::packages::UPDATE_VERSION
    );
    assert_eq!(
        version(&patched_pkgs, "spm-demo-reboot"),
        lab::packages::UPDATE_VERSION
    );
    let boot_after = sys.boot_id().await.expect("boot id after the reboot");
    assert_ne!(boot_before, boot_after, "the playbook rebooted the system");

    // Roll back to the snapshot for real; dpkg's view and the files agree again.
    let rolled = run(
        "rollback-snapshot.yml",
        json!({ "spm_become": false, "spm_snapshot": pre }),
    )
    .await;
    let h = only_host(&rolled);
    assert_eq!(h.status, HostStatus::Changed, "{h:?}");
    let report = h.report.as_ref().expect("spm_report");
    assert_eq!(report["rolled_back"], json!(true), "{report}");
    let restored = installed(sys).await;
    assert_eq!(version(&restored, "spm-demo-ok"), "1.0");
    assert_eq!(version(&restored, "spm-demo-reboot"), "1.0");
    let verify = sh(sys, "dpkg --verify spm-demo-ok spm-demo-reboot").await;
    assert_eq!(
        (verify.rc, verify.stdout.trim()),
        (0, ""),
        "dpkg --verify after the rollback: {}",
        verify.stderr
    );
    lab.down().await.expect("lab down");
}

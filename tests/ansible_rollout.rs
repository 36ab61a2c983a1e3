//! `spm run` with `executor = "ansible"`: the real binary, the real simulator (in-process
//! behind `--sim`) for planning, a real SQLite file with approvals made through the
//! approval engine, and the real `ansible-playbook` (ansible-core) patching "systems" that
//! are all localhost (`[ansible] connection = "local"`), except one reached over SSH on a
//! closed port (unreachable) and one with a broken Python interpreter (a failing task).
//! VERIFY runs the shipped `scan-compliance.yml` for real.

mod ansible_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ansible_common::*;
use spm::engine::approvals::{self, Actor, Decision, Rules};
use spm::engine::state::{QueueStatus, RunHostStatus, RunStatus};
use spm::store::queue;
use spm::store::{Store, fixtures, runs};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Queue `advisory` for Ubuntu, pass one test and approve it. Returns the queue id.
fn seed_approved(store: &Store, advisory: &str) -> i64 {
    let adv = advisory.to_string();
    let id = store
        .write_blocking(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO errata (advisory, severity, synopsis, advisory_type, issue_date) \
                 VALUES (?1, 'high', 'update', 'security', '2026-01-15')",
                [&adv],
            )?;
            let (item_id, _test_id) =
                fixtures::passed_test(tx, &adv, "ubuntu", 90, "auto-queue", "engine")?;
            Ok(item_id)
        })
        .unwrap();
    approvals::decide(
        store,
        id,
        &Decision::Approve {
            reason: Some("tested".into()),
        },
        None,
        &Actor {
            identity: "token:approver".into(),
            source_addr: Some("127.0.0.1".into()),
        },
        Rules { four_eyes: true },
    )
    .unwrap();
    id
}

fn spm(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spm"));
    cmd.current_dir(dir)
        .arg("--config")
        .arg(dir.join("spm.toml"))
        .arg("--database")
        .arg(dir.join("spm.db"))
        .args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SPM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SPM_LOG", "warn,spm::ansible=info")
        .env("USER", "operator");
    cmd.output().unwrap()
}

/// A patch playbook standing in for `patch-ubuntu.yml`: it checks what spm passed, then
/// records it in a file per host (a real change, harmless to the machine).
const PATCH_PLAYBOOK: &str = r#"---
- name: Patch (test stand-in for patch-ubuntu.yml)
  hosts: all
  gather_facts: false
  tasks:
    - name: Check what spm passed
      ansible.builtin.assert:
        that:
          - spm_packages == ['spmtest-openssl']
          - spm_errata == ['USN-8101-1']
          - spm_os == 'ubuntu'
          - spm_system_id | int > 0
          - not spm_reboot | bool
    - name: Record the patch
      ansible.builtin.copy:
        dest: "{{ record_dir }}/{{ inventory_hostname }}.json"
        content: "{{ {'packages': spm_packages, 'errata': spm_errata} | to_json }}"
        mode: "0600"
    - name: Report patch result
      ansible.builtin.debug:
        var: spm_report
      vars:
        spm_report:
          updated: true
"#;

/// The test directory: config, playbooks (stand-in patch, shipped scan), policy.
fn setup(dir: &Path, playbook: Option<&str>) -> PathBuf {
    let books = dir.join("ansible");
    std::fs::create_dir_all(&books).unwrap();
    std::fs::create_dir_all(dir.join("records")).unwrap();
    write(&books, "patch-ubuntu.yml", PATCH_PLAYBOOK);
    std::fs::copy(
        playbook_dir().join("scan-compliance.yml"),
        books.join("scan-compliance.yml"),
    )
    .unwrap();
    let closed = closed_port();
    std::fs::write(
        dir.join("spm.toml"),
        format!(
            r#"[ansible]
playbook_dir = "{books}"
connection = "local"
timeout_secs = 600
kill_grace_secs = 2

# Down: SSH to a port nothing listens on.
[ansible.hosts."prod-web-03"]
address = "127.0.0.1"
vars = {{ ansible_connection = "ssh", ansible_port = {closed}, ansible_ssh_common_args = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5" }}

# Misconfigured: modules cannot start.
[ansible.hosts."prod-web-04"]
vars = {{ ansible_python_interpreter = "/nonexistent/python3" }}
"#,
            books = books.display()
        ),
    )
    .unwrap();
    let extra = match playbook {
        Some(p) => format!("playbook = \"{p}\", "),
        None => String::new(),
    };
    let policy = dir.join("web-ansible.lua");
    std::fs::write(
        &policy,
        format!(
            r#"---@spm api=1 kind=policy
return {{
  id = "web-ansible",
  name = "Web servers patched with Ansible, zero tolerance",
  os = "ubuntu2404",
  targets = {{ groups = {{ "prod-ubuntu-web" }} }},
  waves = {{ canary = 1, sizes = {{ 3 }} }},
  max_parallel = 10,
  error_budget = {{ per_wave = {{ hosts = 0 }}, per_run = {{ hosts = 0 }} }},
  executor = "ansible",
  ansible = {{
    {extra}verify = "scan",
    timeout = "10m",
    extra_vars = {{ spm_become = false, record_dir = "{records}" }},
  }},
}}
"#,
            records = dir.join("records").display()
        ),
    )
    .unwrap();
    policy
}

#[test]
fn a_failing_host_is_recorded_and_trips_a_zero_budget() {
    require_ansible();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(&dir.join("spm.db")).unwrap();
    let item = seed_approved(&store, "USN-8101-1");
    let policy = setup(dir, None);
    let fleet = root().join("tests/fixtures/ansible-fleet.toml");
    let o = spm(
        dir,
        &[
            "run",
            policy.to_str().unwrap(),
            "--sim",
            "--sim-fleet",
            fleet.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("budget_tripped"), "{stdout}");
    // Per-task progress reached the log.
    assert!(stderr.contains("task started"), "{stderr}");

    let run = store
        .read_blocking(|c| runs::list_runs(c, 1))
        .unwrap()
        .remove(0);
    assert_eq!(run.status, RunStatus::BudgetTripped);
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("error budget tripped"),
        "{run:?}"
    );
    let hosts = store.read_blocking(|c| runs::run_hosts(c, run.id)).unwrap();
    let by_name = |n: &str| hosts.iter().find(|h| h.system_name == n).unwrap();
    // Canary and the healthy host of wave 2: patched by the playbook, verified by the scan.
    for n in ["prod-web-01", "prod-web-02"] {
        let h = by_name(n);
        assert_eq!(h.status, RunHostStatus::Ok, "{h:?}");
        assert!(h.error.is_none(), "{h:?}");
        let rec = std::fs::read_to_string(dir.join(format!("records/{n}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        assert_eq!(v["packages"], serde_json::json!(["spmtest-openssl"]));
    }
    // Wave 2 ran together: the unreachable and the broken host failed with their task and
    // message.
    let down = by_name("prod-web-03");
    assert_eq!(down.status, RunHostStatus::Failed, "{down:?}");
    let e = down.error.as_deref().unwrap_or("");
    assert!(
        e.contains("ansible patch-ubuntu.yml: host unreachable at task \"Record the patch\"")
            && e.contains("ssh"),
        "{e}"
    );
    let broken = by_name("prod-web-04");
    assert_eq!(broken.status, RunHostStatus::Failed, "{broken:?}");
    let e = broken.error.as_deref().unwrap_or("");
    assert!(
        e.contains("ansible patch-ubuntu.yml: task \"Record the patch\" failed:"),
        "{e}"
    );
    assert!(
        e.contains("interpreter") || e.contains("nonexistent"),
        "{e}"
    );
    for n in ["prod-web-03", "prod-web-04", "prod-web-05"] {
        assert!(!dir.join(format!("records/{n}.json")).exists(), "{n}");
    }
    // The last wave never started.
    let rest = by_name("prod-web-05");
    assert_eq!(rest.status, RunHostStatus::Skipped, "{rest:?}");
    assert!(
        rest.error
            .as_deref()
            .unwrap_or("")
            .contains("not started: error budget tripped"),
        "{rest:?}"
    );
    assert_eq!(run.hosts_ok, 2);
    assert_eq!(run.hosts_failed, 2);
    // Report: the erratum reached production on some hosts; alert; compliance.
    let status = store.read_blocking(|c| queue::get(c, item)).unwrap().status;
    assert_eq!(status, QueueStatus::ProdApplied);
    let count = |sql: &'static str| -> i64 {
        store
            .read_blocking(move |c| Ok(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    };
    assert_eq!(
        count("SELECT count(*) FROM notifications WHERE event = 'budget_tripped'"),
        1
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM compliance WHERE policy_id = 'web-ansible' AND last_patched IS NOT NULL"
        ),
        2
    );
}

#[test]
fn an_ansible_policy_that_cannot_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(&dir.join("spm.db")).unwrap();
    let item = seed_approved(&store, "USN-8101-1");
    let policy = setup(dir, Some("nope.yml"));
    let fleet = root().join("tests/fixtures/ansible-fleet.toml");
    let o = spm(
        dir,
        &[
            "run",
            policy.to_str().unwrap(),
            "--sim",
            "--sim-fleet",
            fleet.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ansible.playbook: playbook \"nope.yml\" not found in"),
        "{stderr}"
    );
    let runs_n: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM patch_runs", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(runs_n, 0);
    let status = store.read_blocking(|c| queue::get(c, item)).unwrap().status;
    assert_eq!(status, QueueStatus::Approved);
    // A playbook outside the directory is refused by `spm check`'s validation already.
    let bad = dir.join("bad.lua");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&policy)
            .unwrap()
            .replace("playbook = \"nope.yml\"", "playbook = \"../../etc/x.yml\""),
    )
    .unwrap();
    let o = spm(dir, &["run", bad.to_str().unwrap(), "--sim", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.lua:12:") && stderr.contains("ansible.playbook"),
        "{stderr}"
    );
}

//! The Ansible executor against real `ansible-playbook` on loopback: per-host failures,
//! unreachable hosts, cancellation, timeouts, a missing binary, and the `spm ansible run`
//! command line.

mod ansible_common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ansible_common::*;
use serde_json::{Value, json};
use spm::services::ansible::{
    AnsibleConfig, AnsibleError, AnsibleEvent, AnsibleRunner, HostStatus, InventoryHost,
    RunOptions, RunStatus,
};
use tokio_util::sync::CancellationToken;

const THREE_HOSTS: &str = r#"
- name: Three hosts, one fails
  hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.command:
        argv: [echo, "hello {{ inventory_hostname }}"]
    - name: Fail on h2 only
      ansible.builtin.fail:
        msg: "boom on {{ inventory_hostname }}"
      when: inventory_hostname == 'h2'
    - name: Report what the inventory and extra vars carried
      ansible.builtin.debug:
        var: spm_report
      vars:
        spm_report:
          os: "{{ spm_os | default('none') }}"
          tags: "{{ spm_tags | default({}) }}"
          groups: "{{ group_names }}"
          address: "{{ ansible_host }}"
          greeting: "{{ greeting }}"
          got_password: "{{ db_password == 'hunter2-secret' }}"
"#;

const SLEEPER: &str = r#"
- name: Sleep for a long time
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.command:
        argv: [sleep, "{{ sleep_secs }}"]
"#;

/// Collects everything tracing writes, to check what reaches the logs.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().map(|v| v.clone()).unwrap_or_default()).into_owned()
    }
}

#[tokio::test]
async fn one_failing_host_of_three_is_reported_with_task_and_message() {
    require_ansible();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "three.yml", THREE_HOSTS);
    let mut hosts: Vec<InventoryHost> = ["h1", "h2", "h3"].iter().map(|n| local_host(n)).collect();
    hosts[0].os = Some("ubuntu".into());
    hosts[0].groups = vec!["web".into(), "prod".into()];
    hosts[0].tags.insert("env".into(), "prod".into());
    let mut extra = serde_json::Map::new();
    extra.insert("greeting".into(), json!("it's \"quoted\"; $(rm -rf /) `x`"));
    extra.insert("db_password".into(), json!("hunter2-secret"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        hosts,
        extra_vars: extra,
        forks: Some(3),
        timeout_secs: Some(180),
        progress: Some(tx),
        ..RunOptions::default()
    };
    let result = runner().run_playbook(&playbook, opts).await.unwrap();

    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.rc, Some(2));
    assert_eq!(result.hosts.len(), 3);
    assert_eq!(result.failed_count(), 1);
    let failed: Vec<_> = result.failed_hosts().map(|h| h.host.as_str()).collect();
    assert_eq!(failed, ["h2"]);
    let h2 = result.host("h2").unwrap();
    assert_eq!(h2.status, HostStatus::Failed);
    assert_eq!(h2.failed_task.as_deref(), Some("Fail on h2 only"));
    assert_eq!(h2.message.as_deref(), Some("boom on h2"));
    assert_eq!((h2.failed, h2.unreachable), (1, 0));
    for name in ["h1", "h3"] {
        let h = result.host(name).unwrap();
        assert_eq!(h.status, HostStatus::Changed, "{h:?}");
        assert_eq!((h.failed, h.skipped, h.changed), (0, 1, 1), "{h:?}");
        assert_eq!(h.failed_task, None);
    }

    // Inventory fields and extra vars reached the playbook intact.
    let report = result.host("h1").unwrap().report.clone().unwrap();
    assert_eq!(report["os"], "ubuntu");
    assert_eq!(report["tags"], json!({"env": "prod"}));
    let mut groups: Vec<String> = serde_json::from_value(report["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["prod", "web"]);
    assert_eq!(report["address"], "127.0.0.1");
    assert_eq!(report["greeting"], "it's \"quoted\"; $(rm -rf /) `x`");
    assert_eq!(report["got_password"], json!(true));
    assert_eq!(
        result.host("h3").unwrap().report.as_ref().unwrap()["os"],
        "none"
    );

    // Progress was streamed: events on the channel and task names in the log.
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(
        events.iter().any(
            |e| matches!(e, AnsibleEvent::TaskStart { task, .. } if task == "Fail on h2 only")
        )
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AnsibleEvent::Stats { .. }))
    );
    let log = logs.text();
    assert!(log.contains("Fail on h2 only"), "{log}");
    assert!(log.contains("boom on h2"), "{log}");
    assert!(log.contains("[redacted]"), "{log}");
    assert!(
        !log.contains("hunter2-secret"),
        "secret leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn closed_ssh_port_is_unreachable() {
    require_ansible();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(
        dir.path(),
        "ping.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n",
    );
    let mut bad = InventoryHost::new("bad", "127.0.0.1");
    bad.vars.insert("ansible_connection".into(), json!("ssh"));
    bad.vars.insert("ansible_port".into(), json!(closed_port()));
    bad.vars.insert(
        "ansible_ssh_common_args".into(),
        json!("-o ConnectTimeout=5 -o BatchMode=yes"),
    );
    let opts = RunOptions {
        hosts: vec![bad, local_host("good")],
        timeout_secs: Some(120),
        ..RunOptions::default()
    };
    let result = runner().run_playbook(&playbook, opts).await.unwrap();
    assert_eq!(result.status, RunStatus::Failed);
    let bad = result.host("bad").unwrap();
    assert_eq!(bad.status, HostStatus::Unreachable, "{bad:?}");
    assert_eq!(bad.unreachable, 1);
    assert_eq!(bad.failed_task.as_deref(), Some("Ping"));
    let msg = bad.message.clone().unwrap_or_default();
    assert!(
        msg.contains("Connection refused") || msg.contains("port"),
        "{msg}"
    );
    assert_eq!(result.host("good").unwrap().status, HostStatus::Ok);
    assert_eq!(result.unreachable_hosts().count(), 1);
    assert_eq!(result.failed_count(), 1);
}

/// Start a sleeping playbook, wait until `ansible-playbook` and `sleep` run, return the
/// marker that finds them in /proc.
async fn sleeping_run(
    secs: &str,
    opts: RunOptions,
) -> (
    tempfile::TempDir,
    tokio::task::JoinHandle<Result<spm::services::ansible::PlaybookResult, AnsibleError>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "sleeper.yml", SLEEPER);
    let mut opts = opts;
    opts.hosts = vec![local_host("sleepy")];
    opts.extra_vars.insert("sleep_secs".into(), json!(secs));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    opts.progress = Some(tx);
    let handle = tokio::spawn(async move { runner().run_playbook(&playbook, opts).await });
    // Wait for the Sleep task to start, then for the sleep process itself.
    let started = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(e) = rx.recv().await {
            if matches!(&e, AnsibleEvent::TaskStart { task, .. } if task == "Sleep") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "the Sleep task never started");
    let marker = format!("sleep {secs}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while processes_with(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep {secs} never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (dir, handle)
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    require_ansible();
    let cancel = CancellationToken::new();
    let secs = "301.17";
    let (dir, handle) = sleeping_run(
        secs,
        RunOptions {
            cancel: Some(cancel.clone()),
            timeout_secs: Some(300),
            ..RunOptions::default()
        },
    )
    .await;
    let marker = dir.path().to_string_lossy().into_owned();
    assert!(
        !processes_with(&marker).is_empty(),
        "ansible-playbook is not running"
    );
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("cancel took too long")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, AnsibleError::Cancelled { .. }), "{err}");
    assert_eq!(err.kind(), "cancelled");
    assert_eq!(
        err.partial().map(|p| p.playbook.ends_with("sleeper.yml")),
        Some(true)
    );
    let left = wait_gone(&marker, 5).await;
    assert!(
        left.is_empty(),
        "ansible-playbook processes survived: {left:?}"
    );
    let left = wait_gone(&format!("sleep {secs}"), 5).await;
    assert!(left.is_empty(), "sleep survived: {left:?}");
}

#[tokio::test]
async fn timeout_kills_the_group_and_reports_it() {
    require_ansible();
    let secs = "302.23";
    let (dir, handle) = sleeping_run(
        secs,
        RunOptions {
            timeout_secs: Some(20),
            ..RunOptions::default()
        },
    )
    .await;
    let err = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("timeout did not fire")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, AnsibleError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 20s"), "{err}");
    assert!(err.retryable());
    let marker = dir.path().to_string_lossy().into_owned();
    assert!(wait_gone(&marker, 5).await.is_empty());
    assert!(wait_gone(&format!("sleep {secs}"), 5).await.is_empty());
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    require_ansible();
    let secs = "303.31";
    let (dir, handle) = sleeping_run(
        secs,
        RunOptions {
            timeout_secs: Some(300),
            ..RunOptions::default()
        },
    )
    .await;
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    let marker = dir.path().to_string_lossy().into_owned();
    let left = wait_gone(&marker, 5).await;
    assert!(
        left.is_empty(),
        "ansible-playbook processes survived: {left:?}"
    );
    let left = wait_gone(&format!("sleep {secs}"), 5).await;
    assert!(left.is_empty(), "sleep survived: {left:?}");
}

#[tokio::test]
async fn missing_ansible_playbook_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "p.yml", "- hosts: all\n  tasks: []\n");
    let opts = RunOptions {
        hosts: vec![local_host("h1")],
        env: [("PATH".to_string(), empty.path().display().to_string())].into(),
        ..RunOptions::default()
    };
    let err = runner().run_playbook(&playbook, opts).await.unwrap_err();
    assert!(matches!(err, AnsibleError::NotInstalled { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ansible-playbook not found"), "{text}");
    assert!(text.contains("apt-get install -y ansible-core"), "{text}");

    let missing = AnsibleRunner::new(AnsibleConfig {
        program: "/nonexistent/bin/ansible-playbook".into(),
        ..AnsibleConfig::default()
    });
    let err = missing
        .run_playbook(
            &playbook,
            RunOptions {
                hosts: vec![local_host("h1")],
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_installed");
}

#[tokio::test]
async fn syntax_errors_abort_with_ansibles_message() {
    require_ansible();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(
        dir.path(),
        "broken.yml",
        "- hosts: all\n  tasks:\n    - name: x\n      no_such_module_anywhere: {}\n",
    );
    let err = runner()
        .run_playbook(
            &playbook,
            RunOptions {
                hosts: vec![local_host("h1")],
                timeout_secs: Some(120),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AnsibleError::Aborted { .. }), "{err}");
    assert!(err.to_string().contains("no_such_module_anywhere"), "{err}");
}

#[tokio::test]
async fn bad_options_change_nothing_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "p.yml", "- hosts: all\n  tasks: []\n");
    let mut host = local_host("h1");
    host.address = Some("10.0.0.1; reboot".into());
    let err = runner()
        .run_playbook(
            &playbook,
            RunOptions {
                hosts: vec![host],
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid");
    assert!(err.to_string().contains("hosts[0].address"), "{err}");
    let err = runner()
        .run_playbook(dir.path().join("nope.yml"), RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "not_found");
}

fn spm() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_spm"))
}

#[test]
fn cli_reports_the_failing_host_and_exits_1() {
    require_ansible();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "three.yml", THREE_HOSTS);
    let out = spm()
        .args(["ansible", "run"])
        .arg(&playbook)
        .args([
            "--host",
            "h1=127.0.0.1",
            "--host",
            "h2=127.0.0.1",
            "--host",
            "h3",
        ])
        .args(["--connection", "local", "--timeout", "180", "--json"])
        .args([
            "--extra-vars",
            r#"{"greeting": "hi", "db_password": "pw-in-cli"}"#,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("pw-in-cli"), "secret in the log: {stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = result["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    let h2 = hosts.iter().find(|h| h["host"] == "h2").unwrap();
    assert_eq!(h2["status"], "failed");
    assert_eq!(h2["failed_task"], "Fail on h2 only");
    assert_eq!(h2["message"], "boom on h2");
    assert_eq!(result["status"], "failed");

    // Limited to a healthy host, the same playbook succeeds: exit 0 and a table.
    let out = spm()
        .args(["ansible", "run"])
        .arg(&playbook)
        .args(["--host", "h1=127.0.0.1", "--host", "h2=127.0.0.1"])
        .args(["--connection", "local", "--limit", "h1", "--timeout", "180"])
        .args(["--extra-vars", r#"{"greeting": "hi", "db_password": "x"}"#])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("h1") && !stdout.contains("h2 "), "{stdout}");
}

#[test]
fn cli_without_ansible_names_the_package() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(dir.path(), "p.yml", "- hosts: all\n  tasks: []\n");
    let out = spm()
        .args(["ansible", "run"])
        .arg(&playbook)
        .args(["--host", "h1=127.0.0.1"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("apt-get install -y ansible-core"),
        "{stderr}"
    );
}

#[test]
fn cli_rejects_bad_extra_vars_before_running() {
    let out = spm()
        .args([
            "ansible",
            "run",
            "scan-compliance.yml",
            "--host",
            "h1",
            "--extra-vars",
            "[1,2]",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a JSON object"));
}

#[tokio::test]
async fn an_existing_ini_inventory_is_used_as_is() {
    require_ansible();
    let dir = tempfile::tempdir().unwrap();
    let playbook = write(
        dir.path(),
        "group.yml",
        "- hosts: db\n  gather_facts: false\n  tasks:\n    - name: Check the group var\n      ansible.builtin.assert:\n        that: role == 'database'\n",
    );
    let inventory = write(
        dir.path(),
        "hosts.ini",
        "[db]\ndb1 ansible_connection=local\ndb2 ansible_connection=local\n\n[web]\nweb1 ansible_connection=local\n\n[db:vars]\nrole=database\n",
    );
    let result = runner()
        .run_playbook(
            &playbook,
            RunOptions {
                inventory: Some(inventory),
                limit: Some("db2".into()),
                timeout_secs: Some(120),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Succeeded, "{result:?}");
    let names: Vec<_> = result.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(names, ["db2"]);
    assert_eq!(result.hosts[0].ok, 1);
}

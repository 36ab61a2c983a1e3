//! Helpers shared by the `ansible_*` integration tests (real ansible-core on loopback).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use spm::services::ansible::{
    AnsibleConfig, AnsibleRunner, HostResult, InventoryHost, PlaybookResult,
};

/// Fail (not skip) when ansible-core is missing, naming the package to install.
pub fn require_ansible() {
    let found = Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "ansible-playbook not found: install the Debian package ansible-core \
         (apt-get install -y ansible-core) or pip install ansible-core"
    );
}

/// The repository's `scripts/ansible` directory.
pub fn playbook_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ansible")
}

/// A runner using the shipped playbooks.
pub fn runner() -> AnsibleRunner {
    AnsibleRunner::new(AnsibleConfig {
        playbook_dir: Some(playbook_dir()),
        kill_grace_secs: 2,
        ..AnsibleConfig::default()
    })
}

/// A host reached with the local connection.
pub fn local_host(name: &str) -> InventoryHost {
    let mut host = InventoryHost::new(name, "127.0.0.1");
    host.vars
        .insert("ansible_connection".into(), json!("local"));
    host
}

/// Write `text` as `name` under `dir` and return its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test playbook");
    path
}

/// A loopback TCP port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

/// Pids of live processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        // Zombies have an empty command line; they are dead already.
        if cmdline.contains(marker) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Wait up to `secs` for no process to match `marker`; returns what is left.
pub async fn wait_gone(marker: &str, secs: u64) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = processes_with(marker);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Extra vars for running shipped playbooks as root on the test machine without sudo.
pub fn no_become() -> serde_json::Map<String, Value> {
    let mut vars = serde_json::Map::new();
    vars.insert("spm_become".into(), json!(false));
    vars
}

/// The result of the only host of a one-host run.
pub fn only_host(result: &PlaybookResult) -> &HostResult {
    assert_eq!(result.hosts.len(), 1, "{result:?}");
    &result.hosts[0]
}

//! Helpers shared by the lab tests (`tests/lab_*.rs`): the `SPM_LAB_TESTS` gate, one lab
//! at a time, and shell, dpkg and apt access to a lab system that panics with context.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use spm::lab::{self, System};

/// The lab uses fixed names: one lab at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// Whether the lab stage is on; otherwise says the test is skipped.
pub fn enabled(test: &str) -> bool {
    if std::env::var("SPM_LAB_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("lab stage skipped: {test}: SPM_LAB_TESTS is not 1");
    false
}

/// Timeout of one command in a lab system.
pub const T: Duration = Duration::from_secs(240);

/// Run `script` in `sys`.
pub async fn sh(sys: &System, script: &str) -> lab::ExecOutput {
    match sys.exec(script, T).await {
        Ok(o) => o,
        Err(e) => panic!("exec {script:?} on {}: {e}", sys.name()),
    }
}

/// Installed packages and versions of `sys` (dpkg).
pub async fn installed(sys: &System) -> BTreeMap<String, String> {
    match sys.installed_packages().await {
        Ok(m) => m,
        Err(e) => panic!("installed packages of {}: {e}", sys.name()),
    }
}

/// `apt-get install` exact versions in `sys`.
pub async fn install(sys: &System, pkgs: &[(&str, &str)]) -> lab::ExecOutput {
    let list: Vec<(String, String)> = pkgs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    match sys.apt_install(&list, T).await {
        Ok(o) => o,
        Err(e) => panic!("apt install {pkgs:?} on {}: {e}", sys.name()),
    }
}

/// The version of `p` in `m`, or `(not installed)`.
pub fn version<'a>(m: &'a BTreeMap<String, String>, p: &str) -> &'a str {
    m.get(p).map(String::as_str).unwrap_or("(not installed)")
}

/// `systemctl is-active UNIT` in `sys`.
pub async fn is_active(sys: &System, unit: &str) -> String {
    sh(sys, &format!("systemctl is-active {unit}"))
        .await
        .stdout
        .trim()
        .to_string()
}

/// Run `body` on a fresh runtime while holding the lab lock.
pub fn serial<F: std::future::Future<Output = ()>>(body: F) {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(body),
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

//! The `ctx` table a phase receives (see DESIGN "The Lua contract" and the engine brief):
//! `{test_id, os, system, advisory, config, state}`.

use serde::Serialize;
use serde_json::{Value, json};

use super::systems::TestSystem;
use crate::config::TestConfig;
use crate::store::{Store, StoreError, errata};

/// One package of an advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdvisoryPackage {
    /// Name.
    pub name: String,
    /// Epoch (`""` when none).
    pub epoch: String,
    /// Version.
    pub version: String,
    /// Release (`""` when none).
    pub release: String,
    /// Architecture.
    pub arch: String,
}

/// What phases know about the advisory under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advisory {
    /// Name.
    pub name: String,
    /// `security`, `bugfix`, `enhancement`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// Synopsis.
    pub synopsis: String,
    /// UYUNI suggests a reboot.
    pub reboot_suggested: bool,
    /// A kernel package is among its packages.
    pub affects_kernel: bool,
    /// Packages it updates.
    pub packages: Vec<AdvisoryPackage>,
    /// CVEs it closes.
    pub cves: Vec<String>,
}

/// Kernel package names (the same idea as the score's kernel patterns).
pub fn is_kernel_package(name: &str) -> bool {
    name.starts_with("linux-image")
        || name.starts_with("linux-modules")
        || name.starts_with("linux-generic")
        || name == "kernel"
        || name.starts_with("kernel-")
}

/// Load the advisory for `os` from the store (filled by the sync).
pub async fn load_advisory(store: &Store, name: &str, os: &str) -> Result<Advisory, StoreError> {
    let name = name.to_string();
    let os = os.to_string();
    store
        .read(move |c| {
            let e = errata::get(c, &name)?;
            let pkgs = errata::packages(c, &name)?;
            let cves = errata::cves(c, &name)?;
            let profile = errata::risk_profile(c, &name, &os)?;
            let packages: Vec<AdvisoryPackage> = pkgs
                .into_iter()
                .map(|p| AdvisoryPackage {
                    name: p.name,
                    epoch: p.epoch,
                    version: p.version,
                    release: p.release,
                    arch: p.arch,
                })
                .collect();
            let affects_kernel = profile.as_ref().is_some_and(|p| p.affects_kernel)
                || packages.iter().any(|p| is_kernel_package(&p.name));
            Ok(Advisory {
                name: e.advisory,
                kind: e.advisory_type,
                severity: e.severity,
                synopsis: e.synopsis,
                reboot_suggested: e.reboot_suggested,
                affects_kernel,
                packages,
                cves,
            })
        })
        .await
}

/// The `config` part of `ctx`.
pub fn config_json(cfg: &TestConfig, os: &str, system: &TestSystem) -> Value {
    let selector = render_selector(&cfg.prom_selector, system);
    json!({
        "min_disk_mb": cfg.min_disk_mb,
        "critical_services": cfg.critical_services.get(os).cloned().unwrap_or_default(),
        "checks": cfg.checks,
        "thresholds": {
            "cpu_delta_max": cfg.validation.cpu_delta_max,
            "memory_delta_max": cfg.validation.memory_delta_max,
        },
        "window_s": cfg.validation.window_secs,
        "fail_closed": cfg.validation.fail_closed,
        "settle_s": cfg.validation.stabilize_secs,
        "apply_timeout": cfg.apply_timeout_secs,
        "reboot_timeout": cfg.reboot_timeout_secs,
        "script_timeout": cfg.script_timeout_secs,
        "service_retries": cfg.service_retries,
        "service_retry_delay_s": cfg.service_retry_delay_secs,
        "prom_selector": selector,
    })
}

/// Render the Prometheus selector template for a system; a broken template falls back to
/// `system_id="<id>"` (and says so in the log) rather than querying every system.
pub fn render_selector(template: &str, system: &TestSystem) -> String {
    let vars = json!({ "system": system });
    match crate::host::api::template::render(template, &vars) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "test.prom_selector does not render; using system_id");
            format!("system_id=\"{}\"", system.id)
        }
    }
}

/// The whole `ctx` of a phase.
pub fn ctx(
    test_id: i64,
    system: &TestSystem,
    advisory: &Advisory,
    config: &Value,
    state: &Value,
) -> Value {
    json!({
        "test_id": test_id,
        "os": system.os,
        "system": system,
        "advisory": advisory,
        "config": config,
        "state": state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_renders_per_system() {
        let s = TestSystem {
            id: 42,
            name: "t".into(),
            hostname: None,
            ip: None,
            os: "ubuntu".into(),
        };
        assert_eq!(
            render_selector("system_id=\"{{ system.id }}\"", &s),
            "system_id=\"42\""
        );
        assert_eq!(render_selector("{{ broken", &s), "system_id=\"42\"");
    }

    #[test]
    fn kernel_packages() {
        assert!(is_kernel_package("linux-image-generic"));
        assert!(is_kernel_package("kernel-core"));
        assert!(!is_kernel_package("openssl"));
    }
}

//! The Ansible executor as the engine uses it: playbooks confined to the configured
//! directory, UYUNI systems turned into inventory hosts (address, OS, groups, tags, the
//! `[ansible]` overrides), and the `spm.ansible` Lua binding ([`lua::LuaAnsible`]).
//!
//! [`AnsibleRunner`] (in `services`) knows nothing of UYUNI or Lua; this module adds the
//! rules both the Lua binding and the policy executor follow.

pub mod lua;

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{AnsibleSettings, Config};
use crate::services::ansible::{
    AnsibleConfig, AnsibleError, AnsibleRunner, InventoryHost, PlaybookResult, RunOptions,
};
use crate::store::systems::SystemAddress;

/// Variable holding the UYUNI system id of a generated host.
pub const SYSTEM_ID_VAR: &str = "spm_system_id";
/// Variable holding the UYUNI group names of a generated host (unchanged, with dashes).
pub const GROUPS_VAR: &str = "spm_groups";
/// Variable holding the environment of a generated host.
pub const ENV_VAR: &str = "spm_env";

/// Runs playbooks from one directory against hosts built from UYUNI systems.
#[derive(Debug, Clone)]
pub struct AnsibleExecutor {
    runner: AnsibleRunner,
    playbook_dir: PathBuf,
    settings: AnsibleSettings,
}

impl AnsibleExecutor {
    /// An executor with `settings`, running playbooks from `playbook_dir`.
    pub fn new(settings: AnsibleSettings, playbook_dir: PathBuf) -> Self {
        let runner = AnsibleRunner::new(AnsibleConfig {
            program: settings.program.clone(),
            playbook_dir: Some(playbook_dir.clone()),
            default_timeout_secs: settings.timeout_secs,
            kill_grace_secs: settings.kill_grace_secs,
        });
        Self {
            runner,
            playbook_dir,
            settings,
        }
    }

    /// The executor the configuration describes (`[ansible]`, `[scripts] scripts_dir`).
    pub fn from_config(config: &Config) -> Self {
        let dir = config.ansible.playbook_dir(&config.scripts.scripts_dir);
        Self::new(config.ansible.clone(), dir)
    }

    /// The directory playbooks are confined to.
    pub fn playbook_dir(&self) -> &Path {
        &self.playbook_dir
    }

    /// The settings in use.
    pub fn settings(&self) -> &AnsibleSettings {
        &self.settings
    }

    /// Resolve `path` inside the playbook directory. Refuses `..`, absolute paths outside
    /// the directory, symbolic links leading out of it, missing files and names that are
    /// not `.yml`/`.yaml`; every error names the path and the directory.
    pub fn confine(&self, path: &str) -> Result<PathBuf, String> {
        let dir_shown = self.playbook_dir.display();
        let p = Path::new(path);
        if path.trim().is_empty() {
            return Err("playbook path is empty".into());
        }
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!(
                "playbook {path:?}: `..` is not allowed; playbooks are looked up in {dir_shown}"
            ));
        }
        if !matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            return Err(format!(
                "playbook {path:?} is not a .yml or .yaml file (in {dir_shown})"
            ));
        }
        let dir = self.playbook_dir.canonicalize().map_err(|e| {
            format!("the playbook directory {dir_shown} cannot be used: {e} (set [ansible] playbook_dir)")
        })?;
        let candidate = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        let real = candidate.canonicalize().map_err(|_| {
            if p.is_absolute() && !p.starts_with(&dir) {
                format!("playbook {path:?} is outside the playbook directory {dir_shown}")
            } else {
                format!("playbook {path:?} not found in {dir_shown}")
            }
        })?;
        if !real.starts_with(&dir) {
            return Err(format!(
                "playbook {path:?} is outside the playbook directory {dir_shown}"
            ));
        }
        if !real.is_file() {
            return Err(format!("playbook {path:?} in {dir_shown} is not a file"));
        }
        Ok(real)
    }

    /// The inventory host of a UYUNI system: the configured override's address, else the
    /// IP, else the hostname; the OS as `spm_os`; group names made Ansible-safe (`-` and
    /// other characters become `_`; the originals are in `spm_groups`); tags as
    /// `spm_tags`; `[ansible] host_vars`, then the system's `vars` override.
    pub fn system_host(&self, sys: &SystemAddress) -> InventoryHost {
        let o = self.settings.hosts.get(&sys.name);
        let address = o
            .and_then(|o| o.address.clone())
            .or_else(|| sys.ip.clone().filter(|s| !s.is_empty()))
            .or_else(|| sys.hostname.clone().filter(|s| !s.is_empty()));
        let mut groups: Vec<String> = sys.groups.iter().filter_map(|g| group_name(g)).collect();
        groups.sort();
        groups.dedup();
        let mut vars = Map::new();
        for (k, v) in &self.settings.host_vars {
            vars.insert(k.clone(), v.clone());
        }
        if let Some(o) = o {
            for (k, v) in &o.vars {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars.insert(SYSTEM_ID_VAR.into(), Value::from(sys.id));
        vars.insert(
            GROUPS_VAR.into(),
            Value::Array(sys.groups.iter().cloned().map(Value::String).collect()),
        );
        if let Some(env) = &sys.env {
            vars.insert(ENV_VAR.into(), Value::String(env.clone()));
        }
        InventoryHost {
            name: sys.name.clone(),
            address,
            os: Some(sys.os.clone()),
            groups,
            tags: sys.tags.clone(),
            vars,
        }
    }

    /// Run options with the configured defaults (`forks`, `connection`).
    pub fn options(&self) -> RunOptions {
        RunOptions {
            forks: self.settings.forks,
            connection: self.settings.connection.clone(),
            ..RunOptions::default()
        }
    }

    /// The `ansible-playbook` program that would run, or why there is none.
    pub fn program(&self) -> Result<PathBuf, AnsibleError> {
        self.runner.program()
    }

    /// Run a playbook already resolved with [`Self::confine`].
    pub async fn run(
        &self,
        playbook: &Path,
        opts: RunOptions,
    ) -> Result<PlaybookResult, AnsibleError> {
        self.runner.run_playbook(playbook, opts).await
    }
}

/// An Ansible group name for a UYUNI group (`prod-ubuntu-web` → `prod_ubuntu_web`);
/// `None` when nothing usable is left.
pub fn group_name(group: &str) -> Option<String> {
    let mut s: String = group
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.trim_matches('_').is_empty() {
        return None;
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if s == "all" || s == "ungrouped" {
        s.insert_str(0, "uyuni_");
    }
    Some(s)
}

/// One line describing why a host failed, for the run's per-system rows and logs.
pub fn failure_text(playbook: &str, h: &crate::services::ansible::HostResult) -> String {
    use crate::services::ansible::HostStatus;
    let task = h.failed_task.as_deref().unwrap_or("?");
    let msg = h
        .message
        .as_deref()
        .map(|m| m.lines().next().unwrap_or("").trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no message".into());
    match h.status {
        HostStatus::Unreachable => {
            format!("ansible {playbook}: host unreachable at task \"{task}\": {msg}")
        }
        _ => format!("ansible {playbook}: task \"{task}\" failed: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnsibleHostOverride;
    use serde_json::json;

    fn executor(dir: &Path) -> AnsibleExecutor {
        let mut s = AnsibleSettings::default();
        s.host_vars.insert("ansible_user".into(), json!("spm"));
        s.hosts.insert(
            "web1".into(),
            AnsibleHostOverride {
                address: Some("127.0.0.1".into()),
                vars: [("ansible_user".to_string(), json!("root"))].into(),
            },
        );
        AnsibleExecutor::new(s, dir.to_path_buf())
    }

    #[test]
    fn playbooks_are_confined_to_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ansible");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("p.yml"), "- hosts: all\n").unwrap();
        std::fs::write(dir.join("sub/q.yaml"), "- hosts: all\n").unwrap();
        std::fs::write(root.path().join("outside.yml"), "- hosts: all\n").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.yml"), dir.join("link.yml")).unwrap();
        let ex = executor(&dir);
        assert!(ex.confine("p.yml").unwrap().ends_with("ansible/p.yml"));
        assert!(ex.confine("sub/q.yaml").is_ok());
        let abs = dir.join("p.yml");
        assert!(ex.confine(abs.to_str().unwrap()).is_ok());
        for (bad, why) in [
            ("../outside.yml", "`..` is not allowed"),
            ("sub/../../outside.yml", "`..` is not allowed"),
            (
                root.path().join("outside.yml").to_str().unwrap(),
                "outside the playbook directory",
            ),
            ("/etc/passwd.yml", "outside the playbook directory"),
            ("link.yml", "outside the playbook directory"),
            ("missing.yml", "not found in"),
            ("p.txt", "not a .yml"),
            ("", "empty"),
        ] {
            let e = ex.confine(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn systems_become_inventory_hosts_with_overrides() {
        let ex = executor(Path::new("/nonexistent"));
        let sys = SystemAddress {
            id: 1001,
            name: "web1".into(),
            hostname: Some("web1.example.com".into()),
            ip: Some("10.0.0.5".into()),
            os: "ubuntu".into(),
            env: Some("prod".into()),
            groups: vec!["prod-ubuntu-web".into(), "all".into(), "--".into()],
            tags: [("tier".to_string(), "web".to_string())].into(),
        };
        let h = ex.system_host(&sys);
        assert_eq!(h.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(h.groups, vec!["prod_ubuntu_web", "uyuni_all"]);
        assert_eq!(h.vars["ansible_user"], json!("root"));
        assert_eq!(h.vars[SYSTEM_ID_VAR], json!(1001));
        assert_eq!(h.vars[ENV_VAR], json!("prod"));
        assert_eq!(h.vars[GROUPS_VAR][0], json!("prod-ubuntu-web"));
        let other = SystemAddress {
            name: "web2".into(),
            ip: None,
            ..sys
        };
        let h = ex.system_host(&other);
        assert_eq!(h.address.as_deref(), Some("web1.example.com"));
        assert_eq!(h.vars["ansible_user"], json!("spm"));
        crate::services::ansible::render_inventory(&[h]).unwrap();
    }
}

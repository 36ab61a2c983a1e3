//! `spm.ansible.run_playbook` from Lua: the real `ansible-playbook` (ansible-core) against
//! localhost with the local connection, hosts resolved from a real SQLite store and the
//! `[ansible]` overrides, the shipped playbooks in check mode, per-host failures, and the
//! errors a script gets for bad paths, bad options and a missing `ansible-playbook`.

mod ansible_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ansible_common::*;
use mlua::LuaSerdeExt;
use serde_json::{Value, json};
use spm::config::{AnsibleHostOverride, AnsibleSettings};
use spm::engine::ansible::AnsibleExecutor;
use spm::engine::ansible::lua::LuaAnsible;
use spm::host::limits::Limits;
use spm::host::services::Services;
use spm::host::vm::{self, Deadline};
use spm::store::Store;
use tokio_util::sync::CancellationToken;

/// A store with one synced system, `web-local` (id 1001), reachable as 127.0.0.1.
fn store(dir: &Path) -> Store {
    let store = Store::open(&dir.join("spm.db")).unwrap();
    store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO systems (id, name, hostname, ip, os, env, role, tags, groups) VALUES \
                 (1001, 'web-local', 'web-local.example.com', '127.0.0.1', 'debian', 'prod', \
                  'production', '{\"tier\":\"web\"}', '[\"prod-web\"]')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    store
}

fn settings(program: &str) -> AnsibleSettings {
    let mut s = AnsibleSettings {
        program: program.into(),
        kill_grace_secs: 2,
        ..AnsibleSettings::default()
    };
    // The synced address is kept; only the connection is overridden for the test.
    s.hosts.insert(
        "web-local".into(),
        AnsibleHostOverride {
            address: None,
            vars: [("ansible_connection".to_string(), json!("local"))].into(),
        },
    );
    s
}

/// Run `code` in a VM whose `spm.ansible` runs playbooks from `dir`; the returned value
/// as JSON.
async fn eval(store: Option<Store>, program: &str, dir: &Path, code: &str) -> Value {
    let ex = Arc::new(AnsibleExecutor::new(settings(program), dir.to_path_buf()));
    let cancel = CancellationToken::new();
    let services = Services {
        ansible: Some(Arc::new(LuaAnsible::new(ex, store.clone(), cancel.clone()))),
        store,
        ..Services::default()
    };
    let vm = vm::build(
        &services,
        Arc::new(Default::default()),
        &Limits {
            timeout: Duration::from_secs(900),
            ..Limits::default()
        },
        Deadline::after(Duration::from_secs(900)),
        cancel,
    )
    .unwrap();
    let out: mlua::Value = vm
        .lua
        .load(code)
        .set_name("@test.lua")
        .eval_async()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lenient = mlua::serde::DeserializeOptions::new().deny_unsupported_types(false);
    vm.lua.from_value_with(out, lenient).unwrap()
}

#[tokio::test]
async fn shipped_playbooks_run_in_check_mode_through_the_lua_binding() {
    require_ansible();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    // Hosts three ways: a UYUNI system id, a profile name, an inventory table.
    let code = r#"
        local local_host = { name = "lab1", address = "127.0.0.1", os = "debian",
                             groups = { "lab" }, vars = { ansible_connection = "local" } }
        local runs = {
          { "scan-compliance.yml", { 1001 }, {} },
          { "patch-ubuntu.yml", { "web-local" }, {} },
          { "patch-rhel.yml", { "web-local" }, {} },
          { "reboot-managed.yml", { local_host }, {} },
          { "rollback-snapshot.yml", { local_host }, { spm_snapshot = 42 } },
        }
        local out = {}
        for _, r in ipairs(runs) do
          local vars = r[3]
          vars.spm_become = false
          out[r[1]] = spm.ansible.run_playbook(r[1], {
            hosts = r[2], check = true, extra_vars = vars, timeout = "10m",
          })
        end
        return out
    "#;
    let out = eval(Some(store), "ansible-playbook", &playbook_dir(), code).await;
    for (name, host) in [
        ("scan-compliance.yml", "web-local"),
        ("patch-ubuntu.yml", "web-local"),
        ("patch-rhel.yml", "web-local"),
        ("reboot-managed.yml", "lab1"),
        ("rollback-snapshot.yml", "lab1"),
    ] {
        let r = &out[name];
        assert_eq!(r["status"], "succeeded", "{name}: {r:#}");
        assert_eq!(r["ok"], true, "{name}");
        assert_eq!(r["check"], true, "{name}");
        assert_eq!(r["rc"], 0, "{name}");
        assert_eq!(r["failed_hosts"], json!([]), "{name}: {r:#}");
        let h = &r["hosts"][host];
        assert!(
            h["status"] == "ok" || h["status"] == "changed",
            "{name}: {h:#}"
        );
        assert!(h["ok"].as_u64().unwrap() > 0, "{name}: {h:#}");
        assert!(h["report"].is_object(), "{name}: {h:#}");
    }
    // The scan saw this machine through the generated inventory.
    let report = &out["scan-compliance.yml"]["hosts"]["web-local"]["report"];
    assert!(report["package_count"].as_u64().unwrap() > 10, "{report:#}");
    assert!(report["security"].is_array(), "{report:#}");
}

#[tokio::test]
async fn a_failing_host_comes_back_with_its_task_and_message() {
    require_ansible();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let dir = tmp.path().join("ansible");
    std::fs::create_dir(&dir).unwrap();
    write(
        &dir,
        "facts.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Report the inventory\n      ansible.builtin.debug:\n        var: spm_report\n      vars:\n        spm_report:\n          os: \"{{ spm_os }}\"\n          system_id: \"{{ spm_system_id | default(0) }}\"\n          groups: \"{{ group_names }}\"\n          tier: \"{{ spm_tags.tier | default('') }}\"\n    - name: Run a command\n      ansible.builtin.command: /bin/true\n      changed_when: false\n",
    );
    let code = r#"
        return spm.ansible.run_playbook("facts.yml", {
          hosts = { "web-local",
                    { name = "broken", address = "127.0.0.1",
                      vars = { ansible_connection = "local",
                               ansible_python_interpreter = "/nonexistent/python3" } } },
          forks = 2,
        })
    "#;
    let r = eval(Some(store), "ansible-playbook", &dir, code).await;
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["ok"], false);
    assert_eq!(r["failed_hosts"], json!(["broken"]));
    let good = &r["hosts"]["web-local"];
    assert_eq!(good["status"], "ok", "{good:#}");
    assert_eq!(good["report"]["os"], "debian");
    assert_eq!(
        good["report"]["system_id"].to_string().trim_matches('"'),
        "1001"
    );
    assert_eq!(good["report"]["tier"], "web");
    assert_eq!(good["report"]["groups"], json!(["prod_web"]));
    let bad = &r["hosts"]["broken"];
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert_eq!(bad["failed_task"], "Run a command", "{bad:#}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or("")
            .contains("interpreter")
            || bad["message"]
                .as_str()
                .unwrap_or("")
                .contains("nonexistent"),
        "{bad:#}"
    );
}

#[tokio::test]
async fn bad_paths_options_and_a_missing_program_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let dir = tmp.path().join("ansible");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "ok.yml", "- hosts: all\n  tasks: []\n");
    write(tmp.path(), "outside.yml", "- hosts: all\n  tasks: []\n");
    let outside = tmp.path().join("outside.yml");
    let code = format!(
        r#"
        local function err(...)
          local ok, e = spm.try(spm.ansible.run_playbook, ...)
          assert(not ok, "expected an error")
          return {{ kind = e.kind, message = e.message }}
        end
        local h = {{ hosts = {{ "web-local" }} }}
        return {{
          dotdot = err("../outside.yml", h),
          absolute = err("{outside}", h),
          missing = err("nope.yml", h),
          not_yaml = err("ok.txt", h),
          no_hosts = err("ok.yml", {{}}),
          unknown_opt = err("ok.yml", {{ hosts = {{ "web-local" }}, chek = true }}),
          unknown_system = err("ok.yml", {{ hosts = {{ "db-9" }} }}),
          unknown_id = err("ok.yml", {{ hosts = {{ 77 }} }}),
          bad_table = err("ok.yml", {{ hosts = {{ {{ name = "a b" }} }} }}),
          bad_timeout = err("ok.yml", {{ hosts = {{ "web-local" }}, timeout = "soon" }}),
          not_installed = err("ok.yml", h),
        }}
    "#,
        outside = outside.display()
    );
    let r = eval(
        Some(store),
        "/nonexistent/bin/ansible-playbook",
        &dir,
        &code,
    )
    .await;
    let check = |key: &str, kind: &str, words: &[&str]| {
        let e = &r[key];
        assert_eq!(e["kind"], kind, "{key}: {e:#}");
        let msg = e["message"].as_str().unwrap();
        for w in words {
            assert!(msg.contains(w), "{key}: {msg}");
        }
    };
    check("dotdot", "script", &["`..` is not allowed"]);
    check("absolute", "script", &["outside the playbook directory"]);
    check("missing", "script", &["\"nope.yml\" not found in"]);
    check("not_yaml", "script", &["not a .yml"]);
    check("no_hosts", "script", &["opts.hosts", "at least one host"]);
    check("unknown_opt", "script", &["opts.chek", "unknown option"]);
    check(
        "unknown_system",
        "script",
        &["opts.hosts[1]", "no system named \"db-9\""],
    );
    check("unknown_id", "script", &["no system with id 77"]);
    check("bad_table", "script", &["hosts[0].name"]);
    check("bad_timeout", "script", &["opts.timeout"]);
    check(
        "not_installed",
        "config",
        &[
            "/nonexistent/bin/ansible-playbook not found",
            "ansible-core",
        ],
    );
}

#[test]
fn cli_runs_a_playbook_on_uyuni_systems_from_the_database() {
    require_ansible();
    let tmp = tempfile::tempdir().unwrap();
    store(tmp.path());
    let playbook = write(
        tmp.path(),
        "who.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Report\n      ansible.builtin.debug:\n        var: spm_report\n      vars:\n        spm_report:\n          os: \"{{ spm_os }}\"\n          env: \"{{ spm_env }}\"\n    - name: Run a command\n      ansible.builtin.command: /bin/true\n      changed_when: false\n",
    );
    std::fs::write(
        tmp.path().join("spm.toml"),
        "[ansible.hosts.\"web-local\"]\nvars = { ansible_connection = \"local\" }\n",
    )
    .unwrap();
    let run = |system: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SPM_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--config")
            .arg(tmp.path().join("spm.toml"))
            .arg("--database")
            .arg(tmp.path().join("spm.db"))
            .args(["ansible", "run"])
            .arg(&playbook)
            .args(["--system", system, "--json"])
            .output()
            .unwrap()
    };
    let out = run("1001");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = &result["hosts"][0];
    assert_eq!(host["host"], "web-local", "{result:#}");
    assert_eq!(host["status"], "ok", "{result:#}");
    assert_eq!(host["report"]["os"], "debian");
    assert_eq!(host["report"]["env"], "prod");
    let out = run("db-9");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--system db-9: no such system in the database"),
        "{stderr}"
    );
}

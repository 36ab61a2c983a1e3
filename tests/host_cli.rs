//! The operator commands through the real `spm` binary, and the Lua tooling (luacheck,
//! stylua) over the Lua this repository ships.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn spm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_points_at_the_exact_line_of_a_syntax_error() {
    let o = spm(&[
        "check",
        "--root",
        "tests/fixtures/lua/set",
        "tests/fixtures/lua/bad/syntax_error.lua",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l
            == "tests/fixtures/lua/bad/syntax_error.lua:4: syntax error: unexpected symbol near '*'"),
        "{out}"
    );
}

#[test]
fn check_points_at_the_line_of_an_unknown_contract_key() {
    let o = spm(&[
        "check",
        "--root",
        "tests/fixtures/lua/set",
        "tests/fixtures/lua/bad/unknown_key.lua",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        stdout(&o).contains("tests/fixtures/lua/bad/unknown_key.lua:4: unknown key `timout`"),
        "{o:?}"
    );
}

#[test]
fn check_refuses_a_newer_api() {
    let o = spm(&[
        "check",
        "--root",
        "tests/fixtures/lua/set",
        "tests/fixtures/lua/bad/newer_api.lua",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["ok"], false);
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("written for spm Lua API 7"), "{msg}");
    assert_eq!(v["errors"][0]["line"], 1);
}

#[test]
fn check_passes_a_good_set_and_explains_resolution() {
    let o = spm(&[
        "check",
        "--root",
        "tests/fixtures/lua/set",
        "--explain",
        "ubuntu",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("patch          phases/ubuntu/patch.lua  (override)"),
        "{out}"
    );
    assert!(out.contains("pre_check      phases/pre_check.lua"), "{out}");
    assert!(out.contains("ok: 7 script(s) checked"), "{out}");
    let o = spm(&[
        "check",
        "--root",
        "tests/fixtures/lua/set",
        "--explain",
        "windows",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn generated_types_match_the_committed_files() {
    let meta = std::fs::read_to_string(repo().join(spm::host::types::META_PATH))
        .expect("scripts/types/spm.meta.lua is missing; run `spm types`");
    assert_eq!(
        meta,
        spm::host::types::meta_lua(),
        "scripts/types/spm.meta.lua drifted from src/host/api; run `spm types`"
    );
    let luarc = std::fs::read_to_string(repo().join(spm::host::types::LUARC_PATH)).unwrap();
    assert_eq!(
        luarc,
        spm::host::types::luarc_json(),
        ".luarc.json drifted; run `spm types`"
    );
    let o = spm(&["types", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // And --check notices drift.
    let dir = tempfile::tempdir().unwrap();
    let o = spm(&["types", "--check", "--root", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn spec_reports_pass_and_fail_per_case() {
    let o = spm(&[
        "spec",
        "--root",
        "tests/fixtures/lua/set",
        "tests/fixtures/lua/specs",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("PASS ")).count(),
        5,
        "{out}"
    );
    let o = spm(&[
        "spec",
        "--root",
        "tests/fixtures/lua/set",
        "tests/fixtures/lua/specs_failing",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["failed"], 1);
    assert!(
        v["cases"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("result.os: expected ubuntu, got generic"),
        "{v}"
    );
}

fn tool(name: &str, package_hint: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "`{name}` is not installed: {package_hint}");
    let mut c = Command::new(name);
    c.current_dir(repo());
    c
}

#[test]
fn shipped_lua_passes_luacheck() {
    let o = tool("luacheck", "install it with `apt-get install -y lua-check`")
        .args(["--no-color", "--codes", "."])
        .output()
        .unwrap();
    assert!(o.status.success(), "luacheck failed:\n{}", stdout(&o));
}

#[test]
fn shipped_lua_is_formatted_with_stylua() {
    let o = tool(
        "stylua",
        "install it with `npm install -g @johnnymorganz/stylua-bin` or `cargo install stylua --locked`",
    )
    .args(["--check", "."])
    .output()
    .unwrap();
    assert!(o.status.success(), "stylua --check failed:\n{}", stdout(&o));
}

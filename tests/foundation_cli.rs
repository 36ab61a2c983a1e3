//! The real `spm` binary on bad input: each case exits 2 with a one-line error naming the
//! file and what to do, and changes nothing. Plus gen-config, db status --json, and the
//! precedence of file < environment < command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

/// `spm` in `dir` with a clean SPM_* environment plus `env`.
fn spm(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spm"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SPM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SPM_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run spm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit 2 and exactly one `error:` line mentioning every needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {err}");
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let o = spm(dir.path(), &["--help"], &[]);
    assert!(o.status.success());
    for word in ["db", "gen-config", "--config", "--database", "--log-format"] {
        assert!(stdout(&o).contains(word), "{word}");
    }
    let o = spm(dir.path(), &["nonsense-command"], &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn migrate_status_json_and_noop() {
    let dir = tempfile::tempdir().unwrap();
    let o = spm(dir.path(), &["db", "migrate", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["from_version"], 0);
    assert_eq!(
        v["applied"].as_array().unwrap().len(),
        spm::store::migrations::FILES.len()
    );
    assert!(dir.path().join("spm-data/spm.db").is_file(), "default path");
    let o = spm(dir.path(), &["db", "migrate", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["applied"].as_array().unwrap().len(),
        0,
        "second run is a no-op"
    );
    let o = spm(dir.path(), &["db", "status", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema_version"], v["latest_version"]);
    assert_eq!(v["pending"].as_array().unwrap().len(), 0);
    let tables = v["tables"].as_array().unwrap();
    assert!(
        tables
            .iter()
            .any(|t| t["table"] == "queue_items" && t["rows"] == 0)
    );
    let o = spm(dir.path(), &["db", "status"], &[]);
    assert!(
        stdout(&o).contains(&format!(
            "schema version  {0} of {0}",
            spm::store::migrations::FILES.len()
        )),
        "{}",
        stdout(&o)
    );
}

#[test]
fn upgrade_reports_the_applied_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut c = Connection::open(&path).unwrap();
        rusqlite_migration::Migrations::new(vec![rusqlite_migration::M::up(
            spm::store::migrations::FILES[0].1,
        )])
        .to_latest(&mut c)
        .unwrap();
    }
    let o = spm(
        dir.path(),
        &["--database", "old.db", "db", "status", "--json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["pending"][0], "0002_views.sql");
    let o = spm(dir.path(), &["--database", "old.db", "db", "migrate"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let latest = format!("1 -> {}", spm::store::migrations::FILES.len());
    assert!(stdout(&o).contains(&latest), "{}", stdout(&o));
}

#[test]
fn missing_database_for_status() {
    let dir = tempfile::tempdir().unwrap();
    let o = spm(dir.path(), &["--database", "nope.db", "db", "status"], &[]);
    assert_one_line_error(&o, &["nope.db", "does not exist", "spm db migrate"]);
    assert!(files_in(dir.path()).is_empty(), "nothing created");
}

#[test]
fn corrupt_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    for cmd in [&["db", "migrate"][..], &["db", "status"][..]] {
        let mut args = vec!["--database", "bad.db"];
        args.extend_from_slice(cmd);
        let o = spm(dir.path(), &args, &[]);
        assert_one_line_error(&o, &["bad.db", "not a valid spm database"]);
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "file changed");
        assert_eq!(files_in(dir.path()), vec![path.clone()], "stray files");
    }
}

#[test]
fn database_from_a_newer_spm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 42;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for cmd in [&["db", "migrate"][..], &["db", "status"][..]] {
        let mut args = vec!["--database", "new.db"];
        args.extend_from_slice(cmd);
        let o = spm(dir.path(), &args, &[]);
        assert_one_line_error(&o, &["new.db", "schema version 42", "newer spm"]);
        assert_eq!(std::fs::read(&path).unwrap(), before, "file changed");
        assert_eq!(files_in(dir.path()), vec![path.clone()], "stray files");
    }
}

#[test]
fn locked_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("CREATE TABLE other_app (x); INSERT INTO other_app VALUES (1);")
        .unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO other_app VALUES (2);")
        .unwrap();
    let o = spm(
        dir.path(),
        &["--database", "locked.db", "db", "migrate"],
        &[],
    );
    assert_one_line_error(&o, &["locked.db", "lock"]);
    holder.execute_batch("ROLLBACK").unwrap();
    let version: i64 = holder
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0, "schema must not have been touched");
    let n: i64 = holder
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'queue_items'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn unreadable_and_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    let o = spm(dir.path(), &["--config", "conf.d", "db", "status"], &[]);
    assert_one_line_error(&o, &["conf.d", "cannot read config file"]);
    std::fs::write(
        dir.path().join("latin1.toml"),
        b"[uyuni]\nuser = \"caf\xe9\"\n",
    )
    .unwrap();
    let o = spm(
        dir.path(),
        &["--config", "latin1.toml", "db", "migrate"],
        &[],
    );
    assert_one_line_error(&o, &["latin1.toml"]);
    let o = spm(
        dir.path(),
        &["db", "migrate"],
        &[("SPM_CONFIG", "missing.toml")],
    );
    assert_one_line_error(&o, &["missing.toml"]);
    // The default ./spm.toml is picked up, and its errors name key, file and line.
    std::fs::write(
        dir.path().join("spm.toml"),
        "[database]\npath = \"x.db\"\n\n[server]\nlisen = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let o = spm(dir.path(), &["db", "migrate"], &[]);
    assert_one_line_error(&o, &["spm.toml", "line 5", "server.lisen"]);
    assert!(!dir.path().join("x.db").exists(), "no database created");
    assert!(!dir.path().join("spm-data").exists(), "no database created");
    assert_eq!(files_in(dir.path()).len(), 3);
}

#[test]
fn gen_config_parses_back_to_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let o = spm(dir.path(), &["gen-config"], &[]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 40
    );
    let parsed: spm::config::Config = toml::from_str(&text).unwrap();
    assert_eq!(parsed, spm::config::Config::default());
    // And the binary accepts it as its config file.
    std::fs::write(dir.path().join("gen.toml"), &text).unwrap();
    let o = spm(
        dir.path(),
        &["--config", "gen.toml", "config", "show", "--json"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = spm(dir.path(), &["gen-config", "-o", "gen.toml"], &[]);
    assert_one_line_error(&o, &["gen.toml", "must not exist"]);
}

#[test]
fn precedence_file_env_cli_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spm.toml"),
        "[uyuni]\nurl = \"https://from-file\"\nretries = 1\npassword = \"file-secret\"\n\
         [sync]\nconcurrency = 3\n",
    )
    .unwrap();
    let show = |env: &[(&str, &str)], extra: &[&str]| -> serde_json::Value {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["config", "show", "--json"]);
        let o = spm(dir.path(), &args, env);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            !stdout(&o).contains("secret"),
            "secret leaked: {}",
            stdout(&o)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = show(&[], &[]);
    assert_eq!(v["uyuni"]["url"], "https://from-file");
    assert_eq!(v["uyuni"]["password"], "***");
    let env = [
        ("SPM_UYUNI__URL", "https://from-env"),
        ("SPM_UYUNI__RETRIES", "7"),
    ];
    let v = show(&env, &[]);
    assert_eq!(v["uyuni"]["url"], "https://from-env");
    assert_eq!(v["uyuni"]["retries"], 7);
    assert_eq!(v["sync"]["concurrency"], 3);
    let v = show(
        &env,
        &[
            "--set",
            "uyuni.url=https://from-cli",
            "--database",
            "cli.db",
        ],
    );
    assert_eq!(v["uyuni"]["url"], "https://from-cli");
    assert_eq!(v["uyuni"]["retries"], 7);
    assert_eq!(v["database"]["path"], "cli.db");
    // --debug logs the effective configuration, redacted.
    let o = spm(
        dir.path(),
        &["--debug", "config", "show"],
        &[("SPM_LOG", "debug")],
    );
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("effective configuration"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("file-secret"));
}

#[test]
fn insecure_tls_is_logged_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let o = spm(
        dir.path(),
        &["config", "show"],
        &[("SPM_UYUNI__INSECURE_SKIP_VERIFY", "true")],
    );
    assert!(o.status.success());
    assert!(stderr(&o).contains("NOT"), "{}", stderr(&o));
    assert!(stderr(&o).contains("WARN"), "{}", stderr(&o));
}

//! `spm token` and `spm serve` through the real binary.

use std::process::{Command, Output};

fn spm(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(args)
        .env("SPM_DATABASE", db)
        .env("SPM_LOG", "warn")
        .output()
        .expect("run spm")
}

#[test]
fn token_create_list_revoke_and_serve_refuses_without_admin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("spm.db");

    // No admin token: serve refuses to start, with a message saying what to do.
    let out = spm(&db, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spm token create"), "{err}");

    let out = spm(
        &db,
        &["token", "create", "--name", "ops", "--role", "admin"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("spm_") && token.len() == 47, "{token}");

    // A second token with the same name is refused; a bad role or name never reaches the db.
    let out = spm(
        &db,
        &["token", "create", "--name", "ops", "--role", "viewer"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = spm(&db, &["token", "create", "--name", "x", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2));
    let out = spm(
        &db,
        &["token", "create", "--name", "bad name!", "--role", "viewer"],
    );
    assert_eq!(out.status.code(), Some(2));

    let out = spm(&db, &["token", "list", "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "ops");
    assert_eq!(list[0]["role"], "admin");
    assert_eq!(list[0]["prefix"], token[..12]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(&token), "list printed the secret");
    assert!(
        !text.contains(&spm::server::auth::hash_token(&token)),
        "list printed the hash"
    );

    let out = spm(&db, &["token", "revoke", "ops"]);
    assert!(out.status.success());
    let out = spm(&db, &["token", "revoke", "ops"]);
    assert_eq!(out.status.code(), Some(2), "revoking twice must fail");
    let out = spm(&db, &["token", "revoke", "nobody"]);
    assert_eq!(out.status.code(), Some(2));

    // Only a revoked admin: still refused.
    let out = spm(&db, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
}

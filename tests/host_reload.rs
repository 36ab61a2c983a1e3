//! Hot reload on a real directory with the real file watcher (inotify) and the polling mode.

mod common;

use std::time::Duration;

use serde_json::json;
use spm::host::contracts::Contracts;
use spm::host::limits::Limits;
use spm::host::reload::{ReloadOutcome, ScriptHost, WatchMode};
use spm::host::runner::run_phase;
use spm::host::services::Services;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const GOOD_V2: &str = "---@spm api=1 kind=phase\nreturn {\n  name = \"patch\",\n  run = function(_ctx)\n    return { version = \"v2\", os = \"generic\" }\n  end,\n}\n";
const BROKEN: &str = "---@spm api=1 kind=phase\nreturn {\n  name = \"patch\",\n  run = function(_ctx)\n    return { version = \"v2\" \n  end,\n}\n";

async fn next_event(rx: &mut broadcast::Receiver<ReloadOutcome>) -> ReloadOutcome {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no reload event within 10 s of saving")
            .unwrap();
        if !matches!(ev, ReloadOutcome::Unchanged { .. }) {
            return ev;
        }
    }
}

async fn run_debian_patch(host: &ScriptHost) -> serde_json::Value {
    run_phase(
        host.current(),
        &Services::default(),
        "debian",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await
    .result
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_edit_keeps_the_last_good_set_and_a_fix_bumps_the_generation() {
    let root = common::root_with_set();
    let host = ScriptHost::open(root.path(), Contracts::default())
        .await
        .unwrap();
    let _watch = host.watch(WatchMode::default()).unwrap();
    let mut rx = host.subscribe();
    assert_eq!(host.current().generation, 1);
    assert_eq!(run_debian_patch(&host).await["version"], "v1");

    common::save_atomically(root.path(), "phases/patch.lua", BROKEN);
    match next_event(&mut rx).await {
        ReloadOutcome::RolledBack { generation, errors } => {
            assert_eq!(generation, 1);
            assert!(
                errors.iter().any(|e| e.starts_with("phases/patch.lua:6:")),
                "{errors:?}"
            );
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    // The error is visible, and the previous version keeps serving.
    let status = host.status();
    assert_eq!(status.generation, 1);
    let errs = &status.last_error_per_file["phases/patch.lua"];
    assert!(errs[0].contains("syntax error"), "{errs:?}");
    assert_eq!(run_debian_patch(&host).await["version"], "v1");

    common::save_atomically(root.path(), "phases/patch.lua", GOOD_V2);
    assert_eq!(
        next_event(&mut rx).await,
        ReloadOutcome::Applied { generation: 2 }
    );
    assert_eq!(host.current().generation, 2);
    assert!(host.status().last_error_per_file.is_empty());
    assert_eq!(run_debian_patch(&host).await["version"], "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_before_an_edit_finishes_with_the_old_version() {
    let root = common::root_with_patch("sandbox/sleepy.lua");
    let dbdir = tempfile::tempdir().unwrap();
    let store = spm::store::Store::open(&dbdir.path().join("spm.db")).unwrap();
    let host = ScriptHost::open_with_store(root.path(), Contracts::default(), Some(store.clone()))
        .await
        .unwrap();
    let old_sha = host
        .current()
        .get("phases/patch.lua")
        .unwrap()
        .sha256
        .clone();
    let set = host.current();
    let run = tokio::spawn(async move {
        run_phase(
            set,
            &Services::default(),
            "ubuntu",
            "patch",
            json!({"sleep": "700ms"}),
            &Limits::default(),
            CancellationToken::new(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = std::fs::read_to_string(common::fixtures().join("sandbox/sleepy.lua"))
        .unwrap()
        .replace("\"old\"", "\"new\"");
    common::save_atomically(root.path(), "phases/patch.lua", &new);
    assert_eq!(
        host.reload().await,
        ReloadOutcome::Applied { generation: 2 }
    );
    assert!(!run.is_finished(), "the run should still be sleeping");
    let out = run.await.unwrap();
    assert_eq!(out.result.unwrap()["version"], "old");
    assert_eq!(out.scripts[0].sha256, old_sha);
    assert_eq!(out.scripts[0].generation, 1);
    // A new run sees the new version.
    let out = run_phase(
        host.current(),
        &Services::default(),
        "ubuntu",
        "patch",
        json!({"sleep": 0}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.result.unwrap()["version"], "new");
    assert_eq!(out.scripts[0].generation, 2);
    assert_ne!(out.scripts[0].sha256, old_sha);
    // Both versions are on record with their generation.
    for (generation, sha) in [(1, old_sha.clone()), (2, out.scripts[0].sha256.clone())] {
        let rows = store
            .read_blocking(move |c| spm::store::script_versions::for_generation(c, generation))
            .unwrap();
        assert_eq!(rows, vec![("phases/patch.lua".to_string(), sha)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_notices_edits_and_unknown_keys_are_reported_with_their_line() {
    let root = common::root_with_set();
    let host = ScriptHost::open(root.path(), Contracts::default())
        .await
        .unwrap();
    let _watch = host
        .watch(WatchMode::Poll {
            interval: Duration::from_millis(50),
        })
        .unwrap();
    let mut rx = host.subscribe();
    let typo = std::fs::read_to_string(common::fixtures().join("bad/unknown_key.lua")).unwrap();
    std::fs::write(root.path().join("phases/pre_check.lua"), typo).unwrap();
    match next_event(&mut rx).await {
        ReloadOutcome::RolledBack { errors, .. } => assert!(
            errors
                .iter()
                .any(|e| e.starts_with("phases/pre_check.lua:4: unknown key `timout`")),
            "{errors:?}"
        ),
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(host.current().generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_set_is_refused_at_start() {
    let root = common::root_with_set();
    std::fs::copy(
        common::fixtures().join("bad/newer_api.lua"),
        root.path().join("phases/validate.lua"),
    )
    .unwrap();
    let err = ScriptHost::open(root.path(), Contracts::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phases/validate.lua:1: written for spm Lua API 7"),
        "{err}"
    );
}

//! The real `spm` binary against the UYUNI simulator: `spm sync`, `spm score`,
//! `spm queue add|list|show|priority|remove`, exit codes and error messages.

use std::path::Path;
use std::process::{Command, Output};

use spm::sim::{SimHandle, SimOptions, SimServer};
use spm::store::Store;

fn spm(db: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(args)
        .env("SPM_DATABASE", db)
        .env("SPM_UYUNI__URL", url)
        .env("SPM_UYUNI__USER", "admin")
        .env("SPM_UYUNI__PASSWORD", "admin")
        .env("SPM_LOG", "warn")
        .env_remove("SPM_CONFIG")
        .current_dir(db.parent().expect("db dir"))
        .output()
        .expect("run spm")
}

async fn run(db: &Path, url: &str, args: &[&str]) -> Output {
    let (db, url) = (db.to_path_buf(), url.to_string());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        spm(&db, &url, &a)
    })
    .await
    .expect("join")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// A simulator, a fresh database in a temporary working directory, and one sync of the
/// test groups through the binary (its JSON report).
async fn synced() -> (
    SimHandle,
    tempfile::TempDir,
    std::path::PathBuf,
    String,
    serde_json::Value,
) {
    let sim = SimServer::start(SimOptions {
        frozen_clock: true,
        ..SimOptions::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("spm.db");
    let url = sim.url();
    let out = run(&db, &url, &["sync", "--json", "--set", "sync.scope=test"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // Without a terminal, progress is plain lines on stderr.
    assert!(err.contains("relevant advisories"), "{err}");
    let report = json(&out);
    (sim, dir, db, url, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_score_and_queue_through_the_binary() {
    let (sim, _dir, db, url, report) = synced().await;
    assert_eq!(report["sync"]["status"], "ok");
    let new = report["sync"]["errata_new"].as_u64().expect("errata_new");
    assert!(new > 0);

    // Pick a kernel advisory: its score must explain the kernel and reboot penalties.
    let kernel_adv: String = {
        let store = Store::open(&db).expect("store");
        store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT p.advisory FROM errata_packages p JOIN errata_relevance r
                       ON r.advisory = p.advisory
                     WHERE p.name LIKE 'linux-image%' OR p.name = 'kernel' LIMIT 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("a kernel advisory in the default fleet")
    };
    let out = run(&db, &url, &["score", &kernel_adv, "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let s = json(&out);
    let factors: Vec<&str> = s["scores"][0]["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .filter_map(|t| t["factor"].as_str())
        .collect();
    assert!(
        factors.contains(&"kernel") && factors.contains(&"reboot"),
        "{s}"
    );
    let out = run(&db, &url, &["score", &kernel_adv]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-30") && text.contains("kernel"), "{text}");

    let out = run(&db, &url, &["queue", "add", &kernel_adv, "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added = json(&out);
    let id = added["added"][0]["id"].as_i64().expect("item id");
    assert_eq!(
        added["added"][0]["score"], s["scores"][0]["score"],
        "queued with the explained score"
    );
    // Same again: nothing added, exit 1 with the reason.
    let out = run(&db, &url, &["queue", "add", &kernel_adv]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already in the queue"));

    let out = run(&db, &url, &["queue", "priority", &id.to_string(), "9"]).await;
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        &db,
        &url,
        &["queue", "list", "--json", "--status", "queued"],
    )
    .await;
    let page = json(&out);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["priority"], 9);
    let out = run(&db, &url, &["queue", "show", &id.to_string(), "--json"]).await;
    assert_eq!(json(&out)["item"]["advisory"], kernel_adv.as_str());
    let out = run(
        &db,
        &url,
        &["queue", "remove", &id.to_string(), "--reason", "test"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));

    // Bad input: clear error, exit 2, nothing changed.
    let out = run(&db, &url, &["queue", "add", "NOPE-1", &kernel_adv]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown advisory NOPE-1"));
    let out = run(&db, &url, &["queue", "list", "--json"]).await;
    assert_eq!(json(&out)["total"], 0);
    let out = run(&db, &url, &["queue", "list", "--status", "bogus"]).await;
    assert_eq!(out.status.code(), Some(2));

    // A sync while another holds the lock is told so (exit 1) and calls nobody.
    {
        let store = Store::open(&db).expect("store");
        store
            .write_blocking(|tx| {
                spm::store::sync_runs::start(tx, "test", "other", "2999-01-01T00:00:00.000Z")
            })
            .expect("hold the lock");
    }
    let before = sim.stats().total;
    let out = run(&db, &url, &["sync", "--set", "sync.scope=test"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.stats().total, before);

    // Wrong password: the run fails (exit 2) with the login error, recorded.
    let out = tokio::task::spawn_blocking({
        let db = db.clone();
        let url = url.clone();
        move || {
            let store = Store::open(&db).expect("store");
            store
                .write_blocking(|tx| {
                    tx.execute(
                        "UPDATE sync_runs SET status='interrupted' WHERE status='running'",
                        [],
                    )?;
                    Ok(())
                })
                .expect("release");
            Command::new(env!("CARGO_BIN_EXE_spm"))
                .args(["sync", "--set", "sync.scope=test"])
                .env("SPM_DATABASE", &db)
                .env("SPM_UYUNI__URL", &url)
                .env("SPM_UYUNI__USER", "admin")
                .env("SPM_UYUNI__PASSWORD", "s3cr3t-Wr0ng-pw")
                .env("SPM_LOG", "warn")
                .env_remove("SPM_CONFIG")
                .current_dir(db.parent().expect("dir"))
                .output()
                .expect("run")
        }
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login"), "{err}");
    assert!(
        !err.contains("s3cr3t-Wr0ng-pw"),
        "the password never appears: {err}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_score_hook_adjusts_and_a_broken_one_is_refused() {
    let (_sim, dir, db, url, _) = synced().await;
    let adv: String = {
        let store = Store::open(&db).expect("store");
        store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT advisory FROM errata_relevance ORDER BY advisory LIMIT 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("an advisory")
    };
    let plain = json(&run(&db, &url, &["score", &adv, "--json"]).await);
    let plain_score = plain["scores"][0]["score"].as_i64().expect("score");

    // The working directory is the script root: the hook sees the factors and the
    // computed terms and answers with reasons.
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    std::fs::write(
        dir.path().join("scripts/score.lua"),
        "---@spm api=1 kind=score\n\
         return {\n\
           adjust = function(ctx)\n\
             return { { delta = -4, reason = 'site rule for ' .. ctx.advisory .. ' base ' .. ctx.base_score } }\n\
           end,\n\
         }\n",
    )
    .expect("write hook");
    let out = run(&db, &url, &["score", &adv, "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hooked = json(&out);
    let terms = hooked["scores"][0]["breakdown"]
        .as_array()
        .expect("breakdown");
    let hook = terms
        .iter()
        .find(|t| t["factor"] == "hook")
        .unwrap_or_else(|| panic!("no hook term in {hooked}"));
    assert_eq!(hook["points"], -4);
    assert!(
        hook["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("site rule for {adv} base "))),
        "{hook}"
    );
    let unclamped = plain["scores"][0]["unclamped"].as_i64().expect("unclamped");
    assert_eq!(
        hooked["scores"][0]["score"].as_i64(),
        Some((unclamped - 4).clamp(0, 100)),
        "plain {plain_score}"
    );

    // A hook with a syntax error is refused with its file and line; nothing is scored.
    std::fs::write(
        dir.path().join("scripts/score.lua"),
        "---@spm api=1 kind=score\nreturn { adjust = function(ctx) return { end }\n",
    )
    .expect("write broken hook");
    let out = run(&db, &url, &["score", &adv, "--json"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/score.lua:2"), "{err}");
}

/// `spm bench sync` on a generated fleet (more than 6 systems): the simulator runs as a
/// child process, the call plan fetches each advisory once, and the unchanged re-sync makes
/// no per-advisory call.
#[test]
fn bench_sync_on_a_generated_fleet_uses_a_child_simulator_and_a_minimal_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_spm"))
        .args(["bench", "sync", "--errata", "300", "--systems", "36"])
        .args(["--latency-ms", "0", "--max-lag", "2", "--json"])
        .env("SPM_LOG", "warn")
        .env_remove("SPM_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("run spm bench sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["sim_process"], "child", "{r}");
    assert_eq!(r["systems_synced"], 36, "{r}");
    assert_eq!(r["max_lag"], 2, "{r}");
    // Test systems miss everything, so every generated erratum is relevant somewhere.
    assert_eq!(r["errata_relevant"], 300, "{r}");
    let calls = &r["calls_by_method"];
    assert_eq!(calls["errata.getDetails"], 300, "{r}");
    assert_eq!(calls["errata.listPackages"], 300, "{r}");
    assert_eq!(calls["errata.listCves"], r["security_advisories"], "{r}");
    // Maintained production systems lag by at most 2 versions per package: far fewer
    // pairs than every system × every erratum of its OS.
    let pairs = r["relevance_pairs"].as_u64().expect("relevance_pairs");
    assert!((6 * 100..36 * 100).contains(&pairs), "{r}");
    let groups = calls["systemgroup.listSystems"].as_u64().expect("groups");
    let resync = r["resync_calls_total"].as_u64().expect("resync calls");
    assert!(resync <= 10 + groups, "{r}");
    for m in [
        "errata.getDetails",
        "errata.listCves",
        "errata.listPackages",
    ] {
        assert!(r["resync_calls_by_method"].get(m).is_none(), "{m} in {r}");
    }
    assert!(r["peak_rss_mb"].as_f64().is_some_and(|m| m > 0.0), "{r}");
    assert!(
        r["sim_calls_total"].as_u64() == r["calls_total"].as_u64(),
        "{r}"
    );
}

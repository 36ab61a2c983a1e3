//! `spm run` end to end: the real binary against the real simulator (in-process behind
//! `--sim`, on loopback) and a real SQLite file whose approvals are made through the
//! approval engine. Covers the dry run, a successful run over the demo fleet, a failing
//! erratum tripping a zero budget while in-flight hosts finish, unapproved errata excluded
//! with the reason, bad policies refused before anything runs, cancel and crash recovery.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use spm::engine::approvals::{self, Actor, Decision, Rules};
use spm::engine::rollout::{execute, policy, rollback};
use spm::engine::state::{QueueStatus, RunHostStatus, RunStatus};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimOptions, SimServer};
use spm::store::queue::{self, TransitionExtra};
use spm::store::{Store, fixtures, notifications, runs};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fleet() -> PathBuf {
    root().join("tests/fixtures/rollout-fleet.toml")
}

/// Queue `advisory` for Ubuntu, test it (one passed test) and leave it pending approval;
/// approve it through the approval engine when `approve`. Returns the queue id.
fn seed(store: &Store, advisory: &str, severity: &str, approve: bool) -> i64 {
    let adv = advisory.to_string();
    let sev = severity.to_string();
    let id = store
        .write_blocking(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO errata (advisory, severity, synopsis, advisory_type, issue_date) \
                 VALUES (?1, ?2, 'update', 'security', '2026-01-15')",
                [&adv, &sev],
            )?;
            let (item_id, _test_id) =
                fixtures::passed_test(tx, &adv, "ubuntu", 90, "auto-queue", "engine")?;
            Ok(item_id)
        })
        .unwrap();
    if approve {
        approvals::decide(
            store,
            id,
            &Decision::Approve {
                reason: Some("tested on test-ubuntu".into()),
            },
            None,
            &Actor {
                identity: "token:approver".into(),
                source_addr: Some("127.0.0.1".into()),
            },
            Rules { four_eyes: true },
        )
        .unwrap();
    }
    id
}

fn spm(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spm"));
    cmd.current_dir(dir).arg("--database").arg(db).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SPM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SPM_LOG", "warn").env("USER", "operator");
    cmd.output().unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    let sql = sql.to_string();
    store
        .read_blocking(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
        .unwrap()
}

fn queue_status(store: &Store, id: i64) -> QueueStatus {
    store.read_blocking(|c| queue::get(c, id)).unwrap().status
}

fn write_policy(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("---@spm api=1 kind=policy\n{body}")).unwrap();
    p
}

const WEB_POLICY: &str = r#"return {
  id = "web-zero-budget",
  name = "Web servers, zero tolerance",
  os = "ubuntu2404",
  targets = { groups = { "prod-ubuntu-web" } },
  waves = { canary = 1, sizes = { 3 } },
  max_parallel = 10,
  error_budget = { per_wave = { hosts = 0 }, per_run = { hosts = 0 } },
}
"#;

#[test]
fn dry_run_prints_the_plan_excludes_unapproved_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    seed(&store, "USN-7101-1", "high", true);
    let pending = seed(&store, "USN-7102-1", "medium", false);
    seed(&store, "USN-7103-1", "high", true);
    let policy = write_policy(dir.path(), "web.lua", WEB_POLICY);
    let audit_before = count(&store, "SELECT count(*) FROM audit_log");
    let fleet = fleet();
    let args = [
        "run",
        policy.to_str().unwrap(),
        "--sim",
        "--sim-fleet",
        fleet.to_str().unwrap(),
        "--dry-run",
        "--json",
    ];
    let o = spm(dir.path(), &db, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let waves: Vec<usize> = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["hosts"].as_array().unwrap().len())
        .collect();
    assert_eq!(waves, vec![1, 3, 2]);
    assert_eq!(plan["waves"][0]["canary"], true);
    assert_eq!(plan["waves"][0]["hosts"][0]["name"], "prod-web-01");
    let applied: Vec<&str> = plan["errata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["advisory"].as_str().unwrap())
        .collect();
    assert_eq!(applied, vec!["USN-7101-1", "USN-7103-1"]);
    let excl = &plan["excluded_errata"][0];
    assert_eq!(excl["advisory"], "USN-7102-1");
    assert_eq!(excl["hosts"], 6);
    assert_eq!(
        excl["reason"],
        format!("not approved: queue item {pending} is pending_approval")
    );
    // Text form names the exclusion too.
    let o = spm(dir.path(), &db, &args[..args.len() - 1]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("excluded erratum USN-7102-1"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    // Nothing changed.
    assert_eq!(count(&store, "SELECT count(*) FROM patch_runs"), 0);
    assert_eq!(
        count(&store, "SELECT count(*) FROM audit_log"),
        audit_before
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM queue_items WHERE status = 'approved'"
        ),
        2
    );
}

#[test]
fn failing_erratum_trips_a_zero_budget_and_in_flight_hosts_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    let good = seed(&store, "USN-7101-1", "high", true);
    let bad = seed(&store, "USN-7103-1", "high", true);
    let policy = write_policy(dir.path(), "web.lua", WEB_POLICY);
    let fleet = fleet();
    let o = spm(
        dir.path(),
        &db,
        &[
            "run",
            policy.to_str().unwrap(),
            "--sim",
            "--sim-fleet",
            fleet.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("budget_tripped"), "{stdout}");
    assert!(
        stderr.contains("budget left"),
        "live progress on stderr: {stderr}"
    );
    let run = store
        .read_blocking(|c| runs::list_runs(c, 1))
        .unwrap()
        .remove(0);
    assert_eq!(run.status, RunStatus::BudgetTripped);
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("error budget tripped")
    );
    let hosts = store.read_blocking(|c| runs::run_hosts(c, run.id)).unwrap();
    let by_name = |n: &str| hosts.iter().find(|h| h.system_name == n).unwrap();
    assert_eq!(by_name("prod-web-01").status, RunHostStatus::Ok);
    // Wave 2 was in flight together: every host finished (one ok, two failed).
    assert_eq!(by_name("prod-web-02").status, RunHostStatus::Ok);
    for n in ["prod-web-03", "prod-web-04"] {
        let h = by_name(n);
        assert_eq!(h.status, RunHostStatus::Failed, "{n}");
        assert!(h.error.as_deref().unwrap_or("").contains("failed"), "{h:?}");
        assert!(h.action_id.is_some());
    }
    for n in ["prod-web-05", "prod-web-06"] {
        let h = by_name(n);
        assert_eq!(h.status, RunHostStatus::Skipped, "{n}");
        assert!(
            h.error
                .as_deref()
                .unwrap_or("")
                .contains("not started: error budget tripped")
        );
    }
    assert!(
        hosts
            .iter()
            .all(|h| h.status != RunHostStatus::Running && h.status != RunHostStatus::Pending)
    );
    // Report: queue items, compliance, alert, audit.
    assert_eq!(queue_status(&store, good), QueueStatus::ProdApplied);
    assert_eq!(queue_status(&store, bad), QueueStatus::Approved);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM notifications WHERE event = 'budget_tripped'"
        ),
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM compliance WHERE last_patched IS NOT NULL"
        ),
        2
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action IN ('run.start','run.finish') AND actor = 'cli:operator'"
        ),
        2
    );
    // Status command shows it.
    let o = spm(
        dir.path(),
        &db,
        &["run", "status", &run.id.to_string(), "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["run"]["status"], "budget_tripped");
    assert_eq!(v["hosts"].as_array().unwrap().len(), 6);
}

/// Every Ubuntu erratum relevant to the default fleet's production groups.
async fn default_fleet_errata() -> Vec<String> {
    let sim = SimServer::start(SimOptions {
        timings: Timings::instant(),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let client = UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        ..UyuniConfig::default()
    })
    .unwrap();
    let mut sids = Vec::new();
    for g in ["prod-ubuntu-web", "prod-ubuntu-app", "prod-ubuntu-db"] {
        sids.extend(
            client
                .list_group_systems(g)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id),
        );
    }
    let mut out: Vec<String> = client
        .relevant_errata_many(&sids)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|s| s.errata.into_iter().map(|e| e.advisory_name))
        .collect();
    out.sort();
    out.dedup();
    sim.shutdown().await;
    out
}

#[test]
fn demo_policy_over_the_demo_fleet_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let errata = rt.block_on(default_fleet_errata());
    assert!(errata.len() > 10, "{errata:?}");
    let ids: Vec<i64> = errata
        .iter()
        .map(|a| seed(&store, a, "high", true))
        .collect();
    let policy = root().join("policies/demo-sim.lua");
    let o = spm(
        dir.path(),
        &db,
        &["run", policy.to_str().unwrap(), "--sim", "--json"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["failed"], 0);
    let ok = summary["ok"].as_u64().unwrap();
    assert_eq!(ok, 16, "{summary}");
    // One scheduleApplyErrata per distinct errata set; a wave never needs one per host
    // unless every host differs.
    assert!(summary["apply_actions_per_wave"].as_array().unwrap().len() >= 2);
    let run = store
        .read_blocking(|c| runs::list_runs(c, 1))
        .unwrap()
        .remove(0);
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.hosts_ok, 16);
    for id in ids {
        assert_eq!(
            queue_status(&store, id),
            QueueStatus::Completed,
            "queue item {id}"
        );
    }
    assert_eq!(count(&store, "SELECT count(*) FROM notifications"), 0);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM compliance WHERE policy_id = 'demo-sim'"
        ),
        16
    );
}

#[test]
fn bad_policies_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    seed(&store, "USN-7101-1", "high", true);
    let fleet = fleet();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key.lua",
            WEB_POLICY.replace("  max_parallel = 10,", "  max_paralel = 10,"),
            vec!["unknown-key.lua:8:", "unknown key `max_paralel`"],
        ),
        (
            "bad-cron.lua",
            WEB_POLICY.replace(
                "  max_parallel = 10,",
                "  schedule = { cron = \"61 2 * * *\" },",
            ),
            vec!["bad-cron.lua:8:", "schedule.cron", "61 2 * * *"],
        ),
        (
            "empty-targets.lua",
            WEB_POLICY.replace("{ groups = { \"prod-ubuntu-web\" } }", "{}"),
            vec!["empty-targets.lua:6:", "selects nothing"],
        ),
        (
            "budget.lua",
            WEB_POLICY.replace("per_run = { hosts = 0 }", "per_run = { percent = 120 }"),
            vec!["budget.lua:9:", "between 0 and 100"],
        ),
        (
            "no-such-group.lua",
            WEB_POLICY.replace("prod-ubuntu-web", "prod-ubuntu-nope"),
            vec!["cannot plan the run", "prod-ubuntu-nope"],
        ),
    ];
    for (name, body, needles) in cases {
        let p = write_policy(dir.path(), name, &body);
        let o = spm(
            dir.path(),
            &db,
            &[
                "run",
                p.to_str().unwrap(),
                "--sim",
                "--sim-fleet",
                fleet.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        for n in needles {
            assert!(line.contains(n), "{name}: {n:?} not in {err}");
        }
    }
    assert_eq!(count(&store, "SELECT count(*) FROM patch_runs"), 0);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM queue_items WHERE status = 'approved'"
        ),
        1
    );
}

async fn sim_client(timings: Timings) -> (spm::sim::SimHandle, UyuniClient) {
    let sim = SimServer::start(SimOptions {
        fleet: FleetSource::File(fleet()),
        timings,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let client = UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        poll_initial_ms: 20,
        poll_max_ms: 200,
        ..UyuniConfig::default()
    })
    .unwrap();
    (sim, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_new_hosts_while_in_flight_ones_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || seed(&s2, "USN-7101-1", "high", true))
        .await
        .unwrap();
    let path = write_policy(
        dir.path(),
        "web.lua",
        &WEB_POLICY.replace("hosts = 0", "hosts = 10"),
    );
    let loaded = policy::load_policy(&path).await.unwrap();
    let (_sim, client) = sim_client(Timings::instant()).await;
    let plan = execute::build_plan(&client, &store, &loaded).await.unwrap();
    let mut opts = execute::RunOptions::manual("token:ops");
    // Cancel as soon as wave 2 starts executing (a second process would do the same
    // through `spm run cancel`).
    let cancel_store = store.clone();
    opts.progress = Some(Arc::new(move |p: &execute::Progress| {
        if p.wave == 2 && p.phase == "executing" {
            let id = p.run_id;
            cancel_store
                .write_blocking(move |tx| runs::request_cancel(tx, id))
                .unwrap();
        }
    }));
    let summary = execute::execute(&client, &store, &loaded, plan, &opts)
        .await
        .unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled);
    // Wave 1 and the wave-2 batch in flight finished; wave 3 never started.
    assert_eq!(summary.ok, 4);
    assert_eq!(summary.cancelled, 2);
    let hosts = store
        .read(move |c| runs::run_hosts(c, summary.run_id))
        .await
        .unwrap();
    for h in &hosts {
        match h.wave {
            1 | 2 => assert_eq!(h.status, RunHostStatus::Ok, "{h:?}"),
            _ => assert_eq!(h.status, RunHostStatus::Cancelled, "{h:?}"),
        }
    }
    // A second cancel of a finished run is refused with a clear message.
    let id = summary.run_id;
    let err = store
        .write(move |tx| runs::request_cancel(tx, id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already cancelled"), "{err}");
}

#[test]
fn a_run_left_active_is_recovered_as_interrupted_and_frees_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    let q = seed(&store, "USN-7101-1", "high", true);
    let run_id = store
        .write_blocking(move |tx| {
            // The dead run had promoted the approved item.
            queue::transition(tx, q, QueueStatus::Approved, QueueStatus::Promoting, &TransitionExtra::default())?;
            let run = runs::insert_run(
                tx,
                &runs::NewRun {
                    policy_id: "web-zero-budget".into(),
                    policy_hash: "x".into(),
                    trigger: "manual".into(),
                    started_by: "cli:gone".into(),
                    owner: "spm-dead".into(),
                    lease: std::time::Duration::from_secs(0),
                },
            )?;
            runs::insert_hosts(
                tx,
                run.id,
                &[runs::NewRunHost {
                    system_id: 1,
                    system_name: "prod-web-01".into(),
                    wave: 1,
                    errata: vec!["USN-7101-1".into()],
                    status: RunHostStatus::Pending,
                    error: None,
                }],
            )?;
            runs::update_run(
                tx,
                run.id,
                &runs::RunUpdate {
                    plan: Some(serde_json::json!({ "errata": [{ "advisory": "USN-7101-1", "queue_id": q }] })),
                    ..Default::default()
                },
            )?;
            runs::transition_hosts(
                tx,
                run.id,
                &[1],
                RunHostStatus::Pending,
                RunHostStatus::Running,
                &Default::default(),
            )?;
            runs::transition_run(
                tx,
                run.id,
                RunStatus::Planning,
                RunStatus::Validating,
                &Default::default(),
            )?;
            runs::transition_run(
                tx,
                run.id,
                RunStatus::Validating,
                RunStatus::Executing,
                &Default::default(),
            )?;
            Ok(run.id)
        })
        .unwrap();
    let policy = write_policy(dir.path(), "web.lua", WEB_POLICY);
    let fleet = fleet();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // `spm run` recovers the dead run first (its lease expired), then runs.
    let o = spm(
        dir.path(),
        &db,
        &[
            "run",
            policy.to_str().unwrap(),
            "--sim",
            "--sim-fleet",
            fleet.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("patch run {run_id} was left running")),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    let run = store.read_blocking(|c| runs::get_run(c, run_id)).unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    let hosts = store.read_blocking(|c| runs::run_hosts(c, run_id)).unwrap();
    assert_eq!(hosts[0].status, RunHostStatus::Interrupted);
    // Operators hear of it: one run_failed notification for the interrupted run.
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT count(*) FROM notifications WHERE event = 'run_failed' AND run_id = {run_id} \
                 AND json_extract(data, '$.status') = 'interrupted'"
            )
        ),
        1
    );
    // The item went back to approved at recovery, so the new run could use it, and it
    // completed there.
    assert_eq!(queue_status(&store, q), QueueStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_hosts_roll_back_automatically_and_chosen_hosts_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || {
        seed(&s2, "USN-7101-1", "high", true);
        seed(&s2, "USN-7103-1", "high", true);
    })
    .await
    .unwrap();
    let body = WEB_POLICY
        .replace(
            "per_wave = { hosts = 0 }, per_run = { hosts = 0 }",
            "per_wave = { hosts = 5 }, per_run = { hosts = 5 }",
        )
        .replace(
            "  max_parallel = 10,",
            "  max_parallel = 10,\n  rollback_on_failure = \"auto\",",
        );
    let path = write_policy(dir.path(), "web.lua", &body);
    let loaded = policy::load_policy(&path).await.unwrap();
    let (sim, client) = sim_client(Timings::instant()).await;
    let plan = execute::build_plan(&client, &store, &loaded).await.unwrap();
    let summary = execute::execute(
        &client,
        &store,
        &loaded,
        plan,
        &execute::RunOptions::manual("token:ops"),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!((summary.ok, summary.failed), (4, 2));
    let run_id = summary.run_id;
    let hosts = store
        .read(move |c| runs::run_hosts(c, run_id))
        .await
        .unwrap();
    for h in &hosts {
        let pre = {
            let sid = h.system_id;
            store
                .read(move |c| runs::pre_packages(c, run_id, sid))
                .await
                .unwrap()
        };
        assert!(
            pre.contains(&"openssl=3.0.13-0ubuntu3.4".to_string()),
            "{h:?} {pre:?}"
        );
        match h.system_name.as_str() {
            "prod-web-03" | "prod-web-04" => {
                assert_eq!(h.status, RunHostStatus::RolledBack, "{h:?}");
                assert!(
                    pre.contains(&"curl=8.5.0-2ubuntu10.5".to_string()),
                    "{pre:?}"
                );
            }
            _ => assert_eq!(h.status, RunHostStatus::Ok, "{h:?}"),
        }
    }
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM rollbacks WHERE status = 'verified' AND strategy = 'package'"
        ),
        2
    );
    // An operator rolls back one healthy host: openssl goes back to the old version.
    let web1 = hosts
        .iter()
        .find(|h| h.system_name == "prod-web-01")
        .unwrap()
        .system_id;
    let out = rollback::rollback(
        &client,
        &store,
        run_id,
        "ubuntu",
        &rollback::Selection::Hosts(vec!["prod-web-01".into()]),
        "cli:operator",
        "nginx misbehaves since the update",
    )
    .await
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, RunHostStatus::RolledBack, "{out:?}");
    let installed = client.list_installed_packages(web1).await.unwrap();
    let openssl = installed.iter().find(|p| p.name == "openssl").unwrap();
    assert!(
        format!("{}-{}", openssl.version, openssl.release).contains("0ubuntu3.4"),
        "{openssl:?}"
    );
    // A host that is not ok/failed, or unknown, is refused and nothing changes.
    let err = rollback::rollback(
        &client,
        &store,
        run_id,
        "ubuntu",
        &rollback::Selection::Hosts(vec!["prod-web-01".into()]),
        "cli:operator",
        "again",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("is rolled_back; only ok or failed hosts"),
        "{err}"
    );
    let err = rollback::rollback(
        &client,
        &store,
        run_id,
        "ubuntu",
        &rollback::Selection::Hosts(vec!["nope".into()]),
        "cli:operator",
        "x",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no host named \"nope\""), "{err}");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit_log WHERE action = 'run.rollback'"
        ),
        2
    );
    // Each rollback that happened (the automatic one, the operator's) raised one
    // rollback_performed notification; the refused ones none.
    let rows = store
        .read(|c| {
            notifications::list(
                c,
                &notifications::ListFilter {
                    event: Some("rollback_performed".into()),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let manual = rows
        .iter()
        .find(|n| n.data["actor"] == "cli:operator")
        .expect("the operator's rollback");
    assert_eq!(manual.run_id, Some(run_id));
    assert_eq!(manual.severity, "warning");
    assert_eq!(manual.data["system"], "prod-web-01");
    assert_eq!(manual.data["status"], "verified");
    assert_eq!(manual.data["strategy"], "package");
    assert_eq!(manual.data["reason"], "nginx misbehaves since the update");
    let auto = rows
        .iter()
        .find(|n| n.data["actor"] != "cli:operator")
        .expect("the automatic rollback");
    assert_eq!(
        auto.data["hosts"].as_array().map(Vec::len),
        Some(2),
        "{auto:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_runs_due_policies_once_and_reports_missed_windows() {
    use spm::engine::rollout::scheduler;
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("spm.db")).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || seed(&s2, "USN-7101-1", "high", true))
        .await
        .unwrap();
    let body = WEB_POLICY.replace(
        "  max_parallel = 10,",
        "  max_parallel = 10,\n  schedule = { cron = \"0 2 * * *\", timezone = \"UTC\" },",
    );
    let path = write_policy(dir.path(), "web.lua", &body);
    let loaded = policy::load_policy(&path).await.unwrap();
    let (_sim, client) = sim_client(Timings::instant()).await;
    let client = Arc::new(client);
    let grace = scheduler::DEFAULT_GRACE;
    let policies = vec![loaded];
    // Nothing due between 01:00 and 01:59.
    let (ev, tasks) = scheduler::tick(
        client.clone(),
        &store,
        &policies,
        t("2026-11-22T01:00:00Z"),
        t("2026-11-22T01:59:00Z"),
        grace,
    )
    .await;
    assert!(ev.is_empty() && tasks.is_empty());
    // Due at 02:00: one run starts, and completes.
    let (ev, tasks) = scheduler::tick(
        client.clone(),
        &store,
        &policies,
        t("2026-11-22T01:59:00Z"),
        t("2026-11-22T02:00:30Z"),
        grace,
    )
    .await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].what, "started");
    for task in tasks {
        task.await.unwrap();
    }
    let list = store.read(|c| runs::list_runs(c, 10)).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].trigger, "cron");
    assert_eq!(list[0].status, RunStatus::Completed);
    // The process was down over the next 02:00: reported as missed, not run late.
    let (ev, tasks) = scheduler::tick(
        client.clone(),
        &store,
        &policies,
        t("2026-11-23T01:00:00Z"),
        t("2026-11-23T05:00:00Z"),
        grace,
    )
    .await;
    assert_eq!(ev[0].what, "missed");
    assert!(tasks.is_empty());
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM notifications WHERE event = 'run_missed'"
        ),
        1
    );
    // The same slot seen again (an overlapping window) is not reported twice.
    let (ev, _) = scheduler::tick(
        client.clone(),
        &store,
        &policies,
        t("2026-11-23T00:30:00Z"),
        t("2026-11-23T05:30:00Z"),
        grace,
    )
    .await;
    assert_eq!(ev[0].what, "missed_again", "{ev:?}");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM notifications WHERE event = 'run_missed'"
        ),
        1
    );
    // The notifier routes the scheduler's row and renders the run_missed templates over it.
    let notifier = spm::engine::notify::Notifier::new(
        store.clone(),
        spm::engine::notify::NotifyConfig {
            templates_dir: root().join("scripts/templates"),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(notifier.route_direct().await.unwrap() >= 1);
    let missed = store
        .read(|c| {
            notifications::list(
                c,
                &notifications::ListFilter {
                    event: Some("run_missed".into()),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(
        missed[0].subject,
        "[spm] Scheduled run of web-zero-budget missed (2026-11-23T02:00:00.000Z)"
    );
    assert!(
        missed[0].body.contains("It is not run late"),
        "{}",
        missed[0].body
    );
    // After a restart the scheduler resumes from its last recorded tick.
    store
        .write(|tx| spm::store::scheduler::set_last_tick(tx, "2026-11-23T01:00:00.000Z"))
        .await
        .unwrap();
    assert_eq!(
        scheduler::resume_from(&store, t("2026-11-23T05:00:00Z")),
        t("2026-11-23T01:00:00Z")
    );
    // A recorded tick in the future (the clock went back) is not trusted.
    assert_eq!(
        scheduler::resume_from(&store, t("2026-11-22T05:00:00Z")),
        t("2026-11-22T05:00:00Z")
    );
    assert_eq!(count(&store, "SELECT count(*) FROM patch_runs"), 1);
    // A run of the policy still active: the next occurrence is reported busy.
    store
        .write(|tx| {
            runs::insert_run(
                tx,
                &runs::NewRun {
                    policy_id: "web-zero-budget".into(),
                    policy_hash: "x".into(),
                    trigger: "manual".into(),
                    started_by: "cli:someone".into(),
                    owner: "other".into(),
                    lease: std::time::Duration::from_secs(600),
                },
            )
        })
        .await
        .unwrap();
    let (ev, tasks) = scheduler::tick(
        client.clone(),
        &store,
        &policies,
        t("2026-11-24T01:59:00Z"),
        t("2026-11-24T02:00:10Z"),
        grace,
    )
    .await;
    assert_eq!(ev[0].what, "busy", "{ev:?}");
    assert!(tasks.is_empty());
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM notifications WHERE event = 'run_missed'"
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_gate_waves_and_verify_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("spm.db")).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || seed(&s2, "USN-7101-1", "high", true))
        .await
        .unwrap();
    let body = r#"return {
  id = "hooked",
  name = "Hooked",
  os = "ubuntu2404",
  targets = { groups = { "prod-ubuntu-web" } },
  waves = { canary = 2, sizes = { 2 } },
  error_budget = { per_run = { hosts = 6 }, per_wave = { hosts = 6 } },
  hooks = {
    verify_host = function(ctx)
      if ctx.host.name == "prod-web-02" then
        return { ok = false, reason = "smoke test failed on " .. ctx.host.name }
      end
      return #ctx.still_relevant == 0
    end,
    before_wave = function(ctx)
      -- Stop before the third wave.
      return ctx.wave < 3
    end,
  },
}
"#;
    let path = write_policy(dir.path(), "hooked.lua", body);
    let loaded = policy::load_policy(&path).await.unwrap();
    let (_sim, client) = sim_client(Timings::instant()).await;
    let plan = execute::build_plan(&client, &store, &loaded).await.unwrap();
    let err = execute::execute(
        &client,
        &store,
        &loaded,
        plan,
        &execute::RunOptions::manual("token:ops"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("before_wave hook stopped wave 3"),
        "{err}"
    );
    let run = store
        .read(|c| runs::list_runs(c, 1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap_or("").contains("before_wave"));
    let id = run.id;
    let hosts = store.read(move |c| runs::run_hosts(c, id)).await.unwrap();
    let st = |n: &str| hosts.iter().find(|h| h.system_name == n).unwrap().clone();
    assert_eq!(st("prod-web-01").status, RunHostStatus::Ok);
    assert_eq!(st("prod-web-02").status, RunHostStatus::Failed);
    assert_eq!(
        st("prod-web-02").error.as_deref(),
        Some("verify_host: smoke test failed on prod-web-02")
    );
    assert_eq!(st("prod-web-03").status, RunHostStatus::Ok);
    assert_eq!(st("prod-web-05").status, RunHostStatus::Cancelled);
    // The erratum was applied on some hosts: its queue item left `promoting`.
    let q = store
        .read(|c| {
            Ok(c.query_row("SELECT status FROM queue_items", [], |r| {
                r.get::<_, String>(0)
            })?)
        })
        .await
        .unwrap();
    assert_eq!(q, "prod_applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_patch_snapshots_are_taken_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("spm.db")).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || seed(&s2, "USN-7101-1", "high", true))
        .await
        .unwrap();
    let body = WEB_POLICY.replace(
        "  max_parallel = 10,",
        "  max_parallel = 10,\n  pre_patch_snapshot = true,",
    );
    let path = write_policy(dir.path(), "web.lua", &body);
    let loaded = policy::load_policy(&path).await.unwrap();
    let (sim, client) = sim_client(Timings::instant()).await;
    let plan = execute::build_plan(&client, &store, &loaded).await.unwrap();
    let summary = execute::execute(
        &client,
        &store,
        &loaded,
        plan,
        &execute::RunOptions::manual("token:ops"),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let id = summary.run_id;
    let hosts = store.read(move |c| runs::run_hosts(c, id)).await.unwrap();
    assert_eq!(hosts.len(), 6);
    for h in &hosts {
        assert_eq!(h.status, RunHostStatus::Ok, "{h:?}");
        let snap = h.snapshot_id.as_deref().unwrap_or("");
        assert!(
            !snap.is_empty() && snap.chars().all(|c| c.is_ascii_digit()),
            "{h:?}"
        );
    }
    // The snapshots exist on the simulated systems.
    let sid = hosts[0].system_id;
    let out = client
        .run_script(
            &[sid],
            "snapper -c root list",
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    let listing = out.systems[&sid].result.as_ref().unwrap().output.clone();
    assert!(
        listing.contains(&format!("spm patch run {id}")),
        "{listing}"
    );
    sim.shutdown().await;
}

/// `spm bench rollout` drives a child simulator with a frozen clock over HTTP: every host
/// is patched, wave by wave, with two UYUNI calls per wave besides polling.
#[test]
fn bench_rollout_runs_every_wave_against_a_child_simulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spm(
        dir.path(),
        &dir.path().join("spm.db"),
        &[
            "bench",
            "rollout",
            "--systems",
            "300",
            "--max-parallel",
            "100",
            "--action-ms",
            "50",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["hosts_ok"], 300, "{r}");
    assert_eq!(r["hosts_failed"], 0, "{r}");
    assert_eq!(r["waves"], 3, "{r}");
    assert_eq!(r["calls_by_method"]["system.scheduleApplyErrata"], 3, "{r}");
    assert!(
        r["uyuni_calls_per_wave"].as_f64().is_some_and(|c| c <= 5.0),
        "{r}"
    );
    // Each wave waits for its action, which ends at a clock step of the bench.
    assert!(r["wall_s"].as_f64().is_some_and(|w| w >= 0.15), "{r}");
}

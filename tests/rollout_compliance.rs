//! Compliance against the real simulator: a patch run then a scan that re-reads relevance
//! from UYUNI, the roll-ups of `spm compliance --by`, and CVE → errata → systems advisories
//! through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use spm::engine::approvals::{self, Actor, Decision, Rules};
use spm::engine::compliance;
use spm::engine::rollout::{execute, policy};
use spm::engine::state::{QueueStatus, RunStatus};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimOptions, SimServer};
use spm::store::queue::{self, NewQueueItem, TransitionExtra};
use spm::store::{Store, compliance as cstore};

fn fleet() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rollout-fleet.toml")
}

/// Errata facts as a sync would store them, and an approval for `approve`.
fn seed(store: &Store, approve: &str) {
    let approve = approve.to_string();
    let id = store
        .write_blocking(move |tx| {
            for (adv, sev, cve) in [
                ("USN-7101-1", "high", "CVE-2024-5535"),
                ("USN-7102-1", "medium", "CVE-2024-7347"),
                ("USN-7103-1", "high", "CVE-2024-9681"),
            ] {
                tx.execute(
                    "INSERT INTO errata (advisory, severity, synopsis, advisory_type, issue_date) \
                     VALUES (?1, ?2, 'update', 'security', '2026-01-15')",
                    [adv, sev],
                )?;
                tx.execute(
                    "INSERT INTO errata_cves (advisory, cve) VALUES (?1, ?2)",
                    [adv, cve],
                )?;
            }
            let item = queue::insert(
                tx,
                &NewQueueItem {
                    advisory: approve.clone(),
                    os: "ubuntu".into(),
                    queued_by: "auto-queue".into(),
                    ..Default::default()
                },
            )?;
            queue::transition(
                tx,
                item.id,
                QueueStatus::Queued,
                QueueStatus::Testing,
                &TransitionExtra::default(),
            )?;
            queue::transition(
                tx,
                item.id,
                QueueStatus::Testing,
                QueueStatus::PendingApproval,
                &TransitionExtra::default(),
            )?;
            Ok(item.id)
        })
        .unwrap();
    approvals::decide(
        store,
        id,
        &Decision::Approve { reason: None },
        None,
        &Actor {
            identity: "token:approver".into(),
            source_addr: None,
        },
        Rules::default(),
    )
    .unwrap();
}

const POLICY: &str = r#"---@spm api=1 kind=policy
return {
  id = "web-high",
  name = "Web servers, high and critical",
  os = "ubuntu2404",
  targets = { groups = { "prod-ubuntu-web" } },
  errata = { severity = { "critical", "high" } },
  waves = { canary = 2 },
  error_budget = { per_run = { hosts = 6 }, per_wave = { hosts = 6 } },
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_after_a_run_reflects_what_uyuni_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("spm.db")).unwrap();
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || seed(&s2, "USN-7101-1"))
        .await
        .unwrap();
    let path = dir.path().join("web-high.lua");
    std::fs::write(&path, POLICY).unwrap();
    let loaded = policy::load_policy(&path).await.unwrap();
    let sim = SimServer::start(SimOptions {
        fleet: FleetSource::File(fleet()),
        timings: Timings::instant(),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let client = UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        poll_initial_ms: 20,
        ..UyuniConfig::default()
    })
    .unwrap();
    // Before: every web server misses USN-7101-1 (high).
    let before = compliance::scan(&client, &store, std::slice::from_ref(&loaded))
        .await
        .unwrap();
    assert_eq!(
        (before.systems, before.compliant, before.non_compliant),
        (6, 0, 6)
    );
    let plan = execute::build_plan(&client, &store, &loaded).await.unwrap();
    let run = execute::execute(
        &client,
        &store,
        &loaded,
        plan,
        &execute::RunOptions::manual("token:ops"),
    )
    .await
    .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.ok, 6);
    // After: USN-7101-1 is gone everywhere; USN-7103-1 (high, not approved) remains on
    // 03 and 04; USN-7102-1 (medium) is outside the policy's scope.
    let after = compliance::scan(&client, &store, std::slice::from_ref(&loaded))
        .await
        .unwrap();
    assert_eq!((after.compliant, after.non_compliant), (4, 2));
    let records = store.read(cstore::list).await.unwrap();
    let web3 = records.iter().find(|r| r.name == "prod-web-03").unwrap();
    assert_eq!(web3.status, "non_compliant");
    assert_eq!(web3.pending_errata, vec!["USN-7103-1"]);
    assert_eq!(web3.pending_cves, vec!["CVE-2024-9681"]);
    assert!(web3.last_patched.is_some() && web3.last_scanned.is_some());
    let web1 = records.iter().find(|r| r.name == "prod-web-01").unwrap();
    assert_eq!(web1.status, "compliant");
    assert_eq!(web1.patch_level.as_deref(), Some("latest"));
    let by = compliance::rollup(&records, "policy");
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].key, "web-high");
    let pct = by[0].percent.unwrap();
    assert!((pct - 66.666).abs() < 0.01, "{pct}");
    sim.shutdown().await;

    // The CLI reads the same records.
    let db = dir.path().join("spm.db");
    let out = cli(dir.path(), &db, &["compliance", "--by", "policy", "--json"]);
    assert_eq!(out[0]["key"], "web-high");
    assert_eq!(out[0]["compliant"], 4);
    let adv = cli(
        dir.path(),
        &db,
        &["compliance", "advisory", "CVE-2024-9681", "--json"],
    );
    assert_eq!(adv["errata"][0]["advisory"], "USN-7103-1");
    let names: Vec<&str> = adv["affected_systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"prod-web-03") && names.contains(&"prod-web-04"));
    let o = Command::new(env!("CARGO_BIN_EXE_spm"))
        .current_dir(dir.path())
        .args([
            "--database",
            db.to_str().unwrap(),
            "compliance",
            "advisory",
            "CVE-1999-0001",
        ])
        .env("SPM_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no known erratum fixes CVE-1999-0001"));
}

fn cli(dir: &Path, db: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_spm"))
        .current_dir(dir)
        .arg("--database")
        .arg(db)
        .args(args)
        .env("SPM_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn cli_scan_with_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spm.db");
    let store = Store::open(&db).unwrap();
    seed(&store, "USN-7101-1");
    let path = dir.path().join("web-high.lua");
    std::fs::write(&path, POLICY).unwrap();
    let fleet = fleet();
    let v = cli(
        dir.path(),
        &db,
        &[
            "compliance",
            "scan",
            path.to_str().unwrap(),
            "--sim",
            "--sim-fleet",
            fleet.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(v["systems"], 6);
    assert_eq!(v["non_compliant"], 6);
    let rows = cli(dir.path(), &db, &["compliance", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 6);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["policy_id"] == "web-high")
    );
}

//! Real patch tests on real lab systems through the real test engine and the shipped Lua
//! phases: the lab-backed simulator (`SimOptions.lab`) is the UYUNI server, a real sync
//! fills a real SQLite store, the queue gets an item, and the engine runs the phases whose
//! scripts execute inside real Debian 12 systems (apt, dpkg, snapper, systemd).
//!
//! Gated like every lab test: runs only with `SPM_LAB_TESTS=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use spm::config::TestConfig;
use spm::engine::queue::{AddRequest, add};
use spm::engine::score::{ScoreConfig, Scorer};
use spm::engine::state::{PhaseStatus, TestStatus};
use spm::engine::sync::uyuni_source::UyuniSource;
use spm::engine::sync::{NoProgress, SyncConfig, run_sync};
use spm::engine::testing::{ItemOutcome, TestEngine};
use spm::host::contracts::Contracts;
use spm::host::reload::ScriptHost;
use spm::lab::{self, Lab, LabOptions};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimHandle, SimOptions, SimServer};
use spm::store::{Store, test_runs};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// Everything one run needs: the lab, the simulator over it, a synced store, the scripts.
struct Rig {
    lab: Arc<Lab>,
    sim: SimHandle,
    store: Store,
    client: Arc<UyuniClient>,
    host: Arc<ScriptHost>,
    scorer: Scorer,
    _root: tempfile::TempDir,
    _db: tempfile::TempDir,
}

/// Settings for real systems: short waits where the lab is fast, the demo service critical,
/// no Prometheus checks (metrics validation is covered by `engine_sim`).
fn config(system: &str, rollback_order: &[&str]) -> TestConfig {
    let mut c = TestConfig::default();
    c.critical_services
        .insert("debian".into(), vec!["ssh".into(), "spm-demo-svc".into()]);
    c.systems = vec![system.to_string()];
    c.rollback_order = rollback_order.iter().map(|s| s.to_string()).collect();
    c.checks = Vec::new();
    c.script_timeout_secs = 120;
    c.pickup_timeout_secs = 30;
    c.reboot_timeout_secs = 180;
    c.apply_timeout_secs = 600;
    c.service_retries = 2;
    c.service_retry_delay_secs = 1;
    c.deadline_secs = 900;
    c.lease_secs = 120;
    c.poll_interval_ms = 100;
    c
}

impl Rig {
    async fn start(n: u32) -> Rig {
        let lab = match Lab::up(n, LabOptions::default()).await {
            Ok(l) => Arc::new(l),
            Err(e) => panic!("lab up: {e}"),
        };
        let fleet = match spm::sim::lab::fleet(&lab).await {
            Ok(f) => f,
            Err(e) => panic!("lab fleet: {e}"),
        };
        let sim = SimServer::start(SimOptions {
            fleet: FleetSource::Fleet(Box::new(fleet)),
            timings: Timings::instant(),
            lab: Some(lab.clone()),
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts over the lab");
        let client = Arc::new(
            UyuniClient::new(&UyuniConfig {
                url: sim.url(),
                user: "admin".into(),
                password: Secret::new("admin"),
                poll_initial_ms: 50,
                poll_max_ms: 500,
                ..UyuniConfig::default()
            })
            .expect("client"),
        );
        let db = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&db.path().join("spm.db")).expect("store");
        let scorer = Scorer::new(ScoreConfig::default()).expect("scorer");
        let report = run_sync(
            &store,
            &UyuniSource::new(client.clone()),
            &Arc::new(Scorer::new(ScoreConfig::default()).expect("scorer")),
            &SyncConfig::default(),
            &NoProgress,
        )
        .await
        .expect("sync runs");
        assert!(report.error.is_none(), "sync: {:?}", report.error);
        let root = tempfile::tempdir().expect("tempdir");
        copy_dir(&repo().join("phases"), &root.path().join("phases"));
        copy_dir(&repo().join("scripts"), &root.path().join("scripts"));
        let host = ScriptHost::open(root.path(), Contracts::default())
            .await
            .expect("shipped scripts load");
        Rig {
            lab,
            sim,
            store,
            client,
            host,
            scorer,
            _root: root,
            _db: db,
        }
    }

    fn engine(&self, config: TestConfig) -> Arc<TestEngine> {
        TestEngine::new(
            self.store.clone(),
            self.host.clone(),
            self.client.clone(),
            None,
            config,
        )
    }

    fn queue(&self, advisory: &str) -> i64 {
        let req = AddRequest {
            advisories: vec![advisory.into()],
            os: Some("debian".into()),
            queued_by: "lab".into(),
            ..AddRequest::default()
        };
        let scorer = &self.scorer;
        let r = self
            .store
            .write_blocking(|tx| {
                add(tx, scorer, &req).map_err(|e| spm::store::StoreError::Conflict(e.to_string()))
            })
            .expect("queue add");
        assert_eq!(r.added.len(), 1, "{advisory} queued: {:?}", r.skipped);
        r.added[0].id
    }

    /// Queue `advisory` and test it on `system` with `rollback_order`.
    async fn run(&self, advisory: &str, system: &str, order: &[&str]) -> (ItemOutcome, Test) {
        let q = self.queue(advisory);
        let engine = self.engine(config(system, order));
        let out = match engine.run_queue_id(q, "lab").await {
            Ok(o) => o,
            Err(e) => panic!("{advisory} on {system}: engine: {e:#}"),
        };
        let ids = match &out {
            ItemOutcome::PendingApproval { tests }
            | ItemOutcome::RetryPending { tests, .. }
            | ItemOutcome::Failed { tests, .. } => tests.clone(),
            ItemOutcome::WaitingSystem { .. } => panic!("{advisory}: no system: {out:?}"),
        };
        assert_eq!(ids.len(), 1, "{advisory}: {out:?}");
        let row = self
            .store
            .read_blocking(|c| test_runs::get(c, ids[0]))
            .expect("test row");
        let phases = self
            .store
            .read_blocking(|c| test_runs::phases(c, ids[0]))
            .expect("phases");
        (out, Test { row, phases })
    }

    fn sys(&self, name: &str) -> &lab::System {
        match self.lab.system(name) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    async fn version(&self, system: &str, pkg: &str) -> String {
        match self.sys(system).installed_packages().await {
            Ok(m) => m.get(pkg).cloned().unwrap_or_default(),
            Err(e) => panic!("dpkg state of {system}: {e}"),
        }
    }

    async fn sh(&self, system: &str, script: &str) -> lab::ExecOutput {
        match self.sys(system).exec(script, Duration::from_secs(60)).await {
            Ok(o) => o,
            Err(e) => panic!("{system}: {script}: {e}"),
        }
    }
}

struct Test {
    row: test_runs::TestRow,
    phases: Vec<test_runs::PhaseRow>,
}

impl Test {
    fn phase(&self, name: &str) -> PhaseStatus {
        match self.phases.iter().find(|p| p.phase == name) {
            Some(p) => p.status,
            None => panic!("no phase {name} in test {}", self.row.id),
        }
    }

    fn explain(&self) -> String {
        format!(
            "status {:?}, failure {:?} at {:?}: {:?}; rollback {:?}/{:?}; state {}",
            self.row.status,
            self.row.failure_class,
            self.row.failure_phase,
            self.row.failure_reason,
            self.row.rollback_strategy,
            self.row.rollback_status,
            self.row.state
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_patch_tests_through_the_engine_and_the_shipped_lua() {
    if std::env::var("SPM_LAB_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "lab stage skipped: real_patch_tests_through_the_engine_and_the_shipped_lua: \
             SPM_LAB_TESTS is not 1"
        );
        return;
    }
    let rig = Rig::start(2).await;
    let a = rig.lab.systems()[0].name().to_string();
    let b = rig.lab.systems()[1].name().to_string();

    // 1. A clean patch passes and waits for approval; the real versions are recorded.
    let (out, t) = rig.run("SPM-LAB-OK", &a, &["package"]).await;
    assert_eq!(out.name(), "pending_approval", "{}", t.explain());
    assert_eq!(t.row.status, TestStatus::Passed);
    assert_eq!(t.phase("reboot"), PhaseStatus::Skipped);
    assert_eq!(
        t.row
            .evidence
            .pointer("/packages/before/spm-demo-ok/version"),
        Some(&Value::from("1.0")),
        "{}",
        t.row.evidence
    );
    assert_eq!(rig.version(&a, "spm-demo-ok").await, "1.1");

    // 2. The service-breaking patch fails at services; the package rollback restores
    //    every changed package and the service runs again.
    assert_eq!(rig.sh(&a, "systemctl is-active spm-demo-svc").await.rc, 0);
    let (out, t) = rig.run("SPM-LAB-SVC", &a, &["package"]).await;
    assert_eq!(out.name(), "failed", "{}", t.explain());
    assert_eq!(
        t.row.failure_phase.as_deref(),
        Some("services"),
        "{}",
        t.explain()
    );
    assert_eq!(t.row.failure_class.as_deref(), Some("regression"));
    assert_eq!(t.row.rollback_strategy.as_deref(), Some("package"));
    assert_eq!(
        t.row.rollback_status.as_deref(),
        Some("verified"),
        "{}",
        t.explain()
    );
    assert_eq!(t.phase("post_rollback"), PhaseStatus::Passed);
    assert_eq!(rig.version(&a, "spm-demo-svc").await, "1.0");
    let q = rig
        .sh(
            &a,
            "dpkg-query -W -f '${db:Status-Abbrev}${Version}' spm-demo-svc",
        )
        .await;
    assert_eq!(q.stdout.trim(), "ii 1.0", "dpkg after rollback: {q:?}");
    let active = rig.sh(&a, "systemctl is-active spm-demo-svc").await;
    assert_eq!(active.stdout.trim(), "active", "{active:?}");

    // 3. The same with the snapshot strategy on the other system: snapper undoes the
    //    change, and dpkg --verify finds every file of the package as shipped.
    let before_b = rig.version(&b, "spm-demo-svc").await;
    assert_eq!(before_b, "1.0");
    let (out, t) = rig.run("SPM-LAB-SVC", &b, &["snapshot", "package"]).await;
    assert_eq!(out.name(), "failed", "{}", t.explain());
    assert_eq!(
        t.row.failure_phase.as_deref(),
        Some("services"),
        "{}",
        t.explain()
    );
    assert_eq!(
        t.row.state.pointer("/snapshot/available"),
        Some(&Value::Bool(true)),
        "{}",
        t.explain()
    );
    assert!(t.row.snapshot_id.is_some());
    assert_eq!(
        t.row.rollback_strategy.as_deref(),
        Some("snapshot"),
        "{}",
        t.explain()
    );
    assert_eq!(
        t.row.rollback_status.as_deref(),
        Some("verified"),
        "{}",
        t.explain()
    );
    assert_eq!(rig.version(&b, "spm-demo-svc").await, before_b);
    assert_eq!(
        t.row.state.pointer("/rollback/files_verified/0"),
        Some(&Value::from("spm-demo-svc")),
        "the snapshot rollback ran dpkg --verify: {}",
        t.explain()
    );
    let verify = rig.sh(&b, "dpkg --verify spm-demo-svc").await;
    assert!(
        verify.rc == 0 && verify.stdout.trim().is_empty(),
        "dpkg --verify after the snapshot rollback: {verify:?}"
    );
    let active = rig.sh(&b, "systemctl is-active spm-demo-svc").await;
    assert_eq!(active.stdout.trim(), "active", "{active:?}");

    // 4. The reboot-needing patch reboots the system (a new boot id) and passes.
    let boot_before = match rig.sys(&a).boot_id().await {
        Ok(id) => id,
        Err(e) => panic!("boot id: {e}"),
    };
    let (out, t) = rig.run("SPM-LAB-REBOOT", &a, &["package"]).await;
    assert_eq!(out.name(), "pending_approval", "{}", t.explain());
    assert!(t.row.reboot_performed, "{}", t.explain());
    assert_eq!(t.phase("reboot"), PhaseStatus::Passed);
    let boot_after = match rig.sys(&a).boot_id().await {
        Ok(id) => id,
        Err(e) => panic!("boot id: {e}"),
    };
    assert_ne!(boot_after, boot_before, "the system did not reboot");
    assert_eq!(
        t.row
            .state
            .pointer("/reboot/boot_id_after")
            .and_then(Value::as_str),
        Some(boot_after.as_str()),
        "{}",
        t.explain()
    );
    assert_eq!(rig.version(&a, "spm-demo-reboot").await, "1.1");

    // 5. The failing-postinst patch fails at patch and is rolled back to the versions
    //    captured before the apply.
    let (out, t) = rig.run("SPM-LAB-POSTINST", &b, &["package"]).await;
    assert_eq!(out.name(), "failed", "{}", t.explain());
    assert_eq!(
        t.row.failure_phase.as_deref(),
        Some("patch"),
        "{}",
        t.explain()
    );
    assert_eq!(
        t.row
            .state
            .pointer("/patch/before/spm-demo-postinst/version"),
        Some(&Value::from("1.0")),
        "{}",
        t.explain()
    );
    assert_eq!(t.row.rollback_strategy.as_deref(), Some("package"));
    assert_eq!(
        t.row.rollback_status.as_deref(),
        Some("verified"),
        "{}",
        t.explain()
    );
    let q = rig
        .sh(
            &b,
            "dpkg-query -W -f '${db:Status-Abbrev}${Version}' spm-demo-postinst",
        )
        .await;
    assert_eq!(q.stdout.trim(), "ii 1.0", "dpkg after rollback: {q:?}");

    // 6. A held dpkg lock (a real fcntl lock; the minimal system has no fuser) stops the
    //    test in pre_check as transient, before anything changes.
    let holder = rig
        .sh(
            &a,
            "setsid python3 -c 'import fcntl, time\n\
             f = open(\"/var/lib/dpkg/lock-frontend\", \"w\")\n\
             fcntl.lockf(f, fcntl.LOCK_EX)\n\
             time.sleep(120)' </dev/null >/dev/null 2>&1 &\n\
             echo $!\nsleep 1",
        )
        .await;
    let pid = holder.stdout.trim().to_string();
    assert!(
        holder.rc == 0 && pid.parse::<u32>().is_ok(),
        "lock holder: {holder:?}"
    );
    let app_before = rig.version(&a, "spm-demo-app").await;
    let (out, t) = rig.run("SPM-LAB-APP", &a, &["package"]).await;
    let _ = rig.sh(&a, &format!("kill {pid}")).await;
    assert_eq!(out.name(), "retry_pending", "{}", t.explain());
    assert_eq!(
        t.row.failure_phase.as_deref(),
        Some("pre_check"),
        "{}",
        t.explain()
    );
    assert_eq!(
        t.row.failure_class.as_deref(),
        Some("transient"),
        "{}",
        t.explain()
    );
    assert_eq!(rig.version(&a, "spm-demo-app").await, app_before);

    let Rig { lab, sim, .. } = rig;
    sim.shutdown().await;
    drop(lab);
    let left = lab::teardown();
    assert_eq!(left, Vec::<String>::new(), "lab left behind");
}

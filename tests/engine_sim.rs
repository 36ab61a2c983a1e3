//! The test engine end to end: the simulator on loopback (real XML-RPC, emulated shell
//! commands, node-exporter metrics), the shipped Lua phases and strategies, a real SQLite
//! store filled by a real sync, and a real Prometheus (Debian package `prometheus`)
//! scraping the simulator for the validation checks.

#[path = "support/prometheus.rs"]
mod prometheus;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use spm::config::TestConfig;
use spm::engine::queue::{AddRequest, add};
use spm::engine::score::{ScoreConfig, Scorer};
use spm::engine::state::{PhaseStatus, QueueStatus, TestStatus};
use spm::engine::sync::uyuni_source::UyuniSource;
use spm::engine::sync::{NoProgress, SyncConfig, run_sync};
use spm::engine::testing::{ItemOutcome, Progress, TestEngine};
use spm::host::contracts::Contracts;
use spm::host::reload::ScriptHost;
use spm::services::prom::{PromClient, PromConfig};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimHandle, SimOptions, SimServer};
use spm::store::{Store, queue, test_runs};

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

struct Lab {
    sim: SimHandle,
    store: Store,
    client: Arc<UyuniClient>,
    host: Arc<ScriptHost>,
    root: tempfile::TempDir,
    _db: tempfile::TempDir,
    prom: Option<prometheus::Prometheus>,
    scorer: Scorer,
}

fn test_config() -> TestConfig {
    let mut c = TestConfig::default();
    c.critical_services.insert(
        "ubuntu".into(),
        vec!["ssh".into(), "cron".into(), "nginx".into()],
    );
    c.critical_services
        .insert("debian".into(), vec!["ssh".into(), "cron".into()]);
    c.validation.window_secs = 3;
    c.validation.stabilize_secs = 4;
    c.script_timeout_secs = 15;
    c.pickup_timeout_secs = 6;
    c.reboot_timeout_secs = 30;
    c.apply_timeout_secs = 30;
    c.service_retries = 2;
    c.service_retry_delay_secs = 0;
    c.deadline_secs = 120;
    c.lease_secs = 30;
    c.poll_interval_ms = 50;
    c
}

impl Lab {
    async fn start(with_prometheus: bool) -> Lab {
        let sim = SimServer::start(SimOptions {
            fleet: FleetSource::File(repo().join("tests/fixtures/fleet-engine.toml")),
            timings: Timings::instant(),
            ..SimOptions::default()
        })
        .await
        .expect("simulator starts with the engine fleet");
        let client = Arc::new(
            UyuniClient::new(&UyuniConfig {
                url: sim.url(),
                user: "admin".into(),
                password: Secret::new("admin"),
                poll_initial_ms: 20,
                poll_max_ms: 200,
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
        let prom = with_prometheus.then(|| {
            prometheus::Prometheus::start(&format!("{}/_sim/prometheus-sd", sim.base_url()))
        });
        Lab {
            sim,
            store,
            client,
            host,
            root,
            _db: db,
            prom,
            scorer,
        }
    }

    fn engine(&self, config: TestConfig) -> Arc<TestEngine> {
        let prom = self.prom.as_ref().map(|p| {
            Arc::new(
                PromClient::new(&PromConfig {
                    url: p.url.clone(),
                    timeout_s: 5,
                    ca_file: None,
                })
                .expect("prometheus client"),
            )
        });
        TestEngine::new(
            self.store.clone(),
            self.host.clone(),
            self.client.clone(),
            prom,
            config,
        )
    }

    fn queue(&self, advisory: &str, os: &str) -> i64 {
        let req = AddRequest {
            advisories: vec![advisory.into()],
            os: Some(os.into()),
            queued_by: "tester".into(),
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

    fn item(&self, id: i64) -> queue::QueueItem {
        self.store
            .read_blocking(|c| queue::get(c, id))
            .expect("queue item")
    }

    fn test(&self, id: i64) -> test_runs::TestRow {
        self.store
            .read_blocking(|c| test_runs::get(c, id))
            .expect("test row")
    }

    fn phases(&self, id: i64) -> Vec<test_runs::PhaseRow> {
        self.store
            .read_blocking(|c| test_runs::phases(c, id))
            .expect("phases")
    }

    fn sid(&self, name: &str) -> i64 {
        self.sim
            .with_world(|w| {
                w.systems
                    .values()
                    .find(|s| s.name == name)
                    .map(|s| i64::from(s.id))
            })
            .unwrap_or_else(|| panic!("fleet has no system {name}"))
    }

    fn installed(&self, system: &str, pkg: &str) -> String {
        let sid = self.sid(system);
        self.sim.with_world(|w| {
            w.systems
                .values()
                .find(|s| i64::from(s.id) == sid)
                .and_then(|s| s.installed.get(pkg))
                .map(|p| p.evr.to_string())
                .unwrap_or_default()
        })
    }

    fn boot_id(&self, system: &str) -> String {
        let sid = self.sid(system);
        self.sim.with_world(|w| {
            w.systems
                .values()
                .find(|s| i64::from(s.id) == sid)
                .map(|s| s.boot_id.clone())
                .unwrap_or_default()
        })
    }

    /// Wait until Prometheus has enough samples of `system` for a rate over the window.
    async fn wait_for_metrics(&self, system: &str) {
        let Some(p) = &self.prom else { return };
        let client = PromClient::new(&PromConfig {
            url: p.url.clone(),
            timeout_s: 5,
            ca_file: None,
        })
        .expect("prometheus client");
        let expr = format!(
            "count_over_time(node_load1{{system_id=\"{}\"}}[5s])",
            self.sid(system)
        );
        for _ in 0..300 {
            if let Ok(s) = client.query(&expr, None).await
                && s.first().is_some_and(|s| s.value >= 3.0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus never scraped {system} (check the SD URL and the simulator)");
    }
}

fn phase<'a>(phases: &'a [test_runs::PhaseRow], name: &str) -> &'a test_runs::PhaseRow {
    phases.iter().find(|p| p.phase == name).unwrap_or_else(|| {
        panic!(
            "no phase {name} in {:?}",
            phases.iter().map(|p| &p.phase).collect::<Vec<_>>()
        )
    })
}

fn tests_of(o: &ItemOutcome) -> Vec<i64> {
    match o {
        ItemOutcome::PendingApproval { tests }
        | ItemOutcome::RetryPending { tests, .. }
        | ItemOutcome::Failed { tests, .. } => tests.clone(),
        ItemOutcome::WaitingSystem { .. } => Vec::new(),
    }
}

/// Good patch, kernel patch with a reboot, a patch that stops a service, a patch that
/// fails to apply, a patch that raises CPU: one test system, rollbacks by package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_rollbacks_and_validation_against_the_simulator_and_prometheus() {
    let lab = Lab::start(true).await;
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-01".into()];
    let engine = lab.engine(cfg);
    lab.wait_for_metrics("test-ubuntu-01").await;
    let sys = "test-ubuntu-01";

    // 1. A good patch passes; the evidence has exact versions before and after.
    let q = lab.queue("USN-9001-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    assert_eq!(out.name(), "pending_approval", "{out:?}");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.status, TestStatus::Passed);
    assert_eq!(t.rollback_status.as_deref(), Some("not_needed"));
    assert_eq!(
        t.evidence.pointer("/packages/before/openssl/version"),
        Some(&Value::from("3.0.13"))
    );
    assert_eq!(
        t.evidence.pointer("/packages/after/openssl/release"),
        Some(&Value::from("0ubuntu3.5"))
    );
    assert_eq!(
        t.evidence.pointer("/cves/0"),
        Some(&Value::from("CVE-2026-0001"))
    );
    assert!(
        t.evidence.pointer("/metrics/post/cpu/ok") == Some(&Value::Bool(true)),
        "{}",
        t.evidence
    );
    let ph = lab.phases(t.id);
    assert_eq!(phase(&ph, "reboot").status, PhaseStatus::Skipped);
    assert!(ph.iter().all(|p| p.status != PhaseStatus::Running));
    assert!(phase(&ph, "patch").script_hash.is_some());
    assert_eq!(lab.item(q).status, QueueStatus::PendingApproval);
    let events = lab
        .store
        .read_blocking(|c| test_runs::notification_events(c, q))
        .expect("notifications");
    assert_eq!(events, vec!["pending_approval".to_string()]);

    // 2. A kernel patch reboots: the boot id changes and the test passes.
    let boot_before = lab.boot_id(sys);
    let q = lab.queue("USN-9003-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    assert_eq!(out.name(), "pending_approval", "{out:?}");
    let t = lab.test(tests_of(&out)[0]);
    assert!(t.reboot_performed);
    let after = t
        .state
        .pointer("/reboot/boot_id_after")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert_eq!(
        t.state
            .pointer("/reboot/boot_id_before")
            .and_then(Value::as_str),
        Some(boot_before.as_str())
    );
    assert_ne!(after, boot_before);
    assert_eq!(after, lab.boot_id(sys));

    // 3. A patch that stops a service fails at services; rolled back by package.
    let nginx_before = lab.installed(sys, "nginx");
    let q = lab.queue("USN-9002-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let ItemOutcome::Failed {
        class,
        rollback_verified,
        ..
    } = &out
    else {
        panic!("expected failed, got {out:?}");
    };
    assert_eq!(class, "regression");
    assert!(rollback_verified);
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.status, TestStatus::Failed);
    assert_eq!(t.failure_phase.as_deref(), Some("services"));
    assert_eq!(t.rollback_strategy.as_deref(), Some("package"));
    assert_eq!(t.rollback_status.as_deref(), Some("verified"));
    assert_eq!(lab.installed(sys, "nginx"), nginx_before);
    assert_eq!(
        lab.installed(sys, "nginx-common"),
        "1:1.24.0-2ubuntu7.1",
        "epoch kept in the downgrade"
    );
    assert_eq!(
        t.state.pointer("/patch/before/nginx-common/epoch"),
        Some(&Value::from("1"))
    );
    assert_eq!(
        t.state.pointer("/snapshot/available"),
        Some(&Value::Bool(false))
    );
    let ph = lab.phases(t.id);
    assert_eq!(phase(&ph, "rollback").status, PhaseStatus::Passed);
    assert_eq!(phase(&ph, "post_rollback").status, PhaseStatus::Passed);
    let rbs = lab
        .store
        .read_blocking(|c| test_runs::rollbacks(c, t.id))
        .expect("rollbacks");
    assert_eq!(rbs.len(), 1);
    assert_eq!(
        (rbs[0].0.as_str(), rbs[0].1.as_str()),
        ("package", "verified")
    );
    assert_eq!(lab.item(q).status, QueueStatus::Failed);
    // The rollback, then the failure, each notified with the details the templates use.
    let events = lab
        .store
        .read_blocking(|c| test_runs::notification_events(c, q))
        .expect("notifications");
    assert_eq!(events, vec!["rollback_performed", "test_failed"]);
    let rows = lab
        .store
        .read_blocking(|c| {
            spm::store::notifications::list(c, &spm::store::notifications::ListFilter::default())
        })
        .expect("notification rows");
    let rb = rows
        .iter()
        .find(|n| n.queue_id == Some(q) && n.event == "rollback_performed")
        .expect("rollback_performed row");
    assert_eq!(rb.test_id, Some(t.id));
    assert_eq!(rb.data["strategy"], "package");
    assert_eq!(rb.data["status"], "verified");
    assert_eq!(rb.data["system"], sys);
    let tf = rows
        .iter()
        .find(|n| n.queue_id == Some(q) && n.event == "test_failed")
        .expect("test_failed row");
    assert_eq!(tf.data["phase"], "services");
    assert_eq!(tf.data["class"], "regression");

    // 4. A patch whose apply fails is rolled back with the versions captured before.
    let curl_before = lab.installed(sys, "curl");
    let q = lab.queue("USN-9004-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.failure_phase.as_deref(), Some("patch"));
    assert_eq!(t.failure_class.as_deref(), Some("patch"));
    assert_eq!(
        t.state.pointer("/patch/before/curl/version"),
        Some(&Value::from("8.5.0")),
        "captured before the failed apply: {}",
        t.state
    );
    assert_eq!(t.rollback_strategy.as_deref(), Some("package"));
    assert_eq!(t.rollback_status.as_deref(), Some("verified"));
    assert_eq!(lab.installed(sys, "curl"), curl_before);
    assert_eq!(out.name(), "failed");

    // 5. A patch that raises CPU fails validate (real Prometheus data).
    lab.wait_for_metrics(sys).await;
    let q = lab.queue("USN-9005-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(
        t.failure_phase.as_deref(),
        Some("validate"),
        "{:?}",
        t.failure_reason
    );
    assert_eq!(t.failure_class.as_deref(), Some("regression"));
    let delta = t
        .state
        .pointer("/validate/results/cpu/delta")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    assert!(delta > 40.0, "cpu delta {delta}: {}", t.state);
    assert_eq!(t.rollback_status.as_deref(), Some("verified"));
    let profile = lab
        .store
        .read_blocking(|c| spm::store::errata::history(c, "USN-9005-1", "ubuntu"))
        .expect("history");
    assert_eq!(profile, (1, 1));
}

/// An offline test system is an infrastructure failure, retried later; an OS without test
/// systems waits visibly and does not block the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_system_is_retried_and_missing_systems_wait() {
    let lab = Lab::start(false).await;
    let engine = lab.engine(test_config());
    let q = lab.queue("DSA-9001-1", "debian");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let ItemOutcome::RetryPending { class, .. } = &out else {
        panic!("expected retry_pending, got {out:?}");
    };
    assert_eq!(class, "infrastructure");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.status, TestStatus::Error);
    assert_eq!(t.failure_phase.as_deref(), Some("pre_check"));
    assert_eq!(t.rollback_status.as_deref(), Some("not_needed"));
    let item = lab.item(q);
    assert_eq!(item.status, QueueStatus::RetryPending);
    assert_eq!(item.retry_count, 1);
    assert!(item.retry_after.is_some());
    let pending = lab
        .store
        .read_blocking(|c| test_runs::pending_actions(c, None))
        .expect("actions");
    assert!(
        pending.is_empty(),
        "the unpicked action was cancelled: {pending:?}"
    );

    // No test system for rhel: waiting_system, and `next` moves on to other items.
    lab.store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO errata (advisory, advisory_type) VALUES ('RHSA-2026:9999', 'security')",
                [],
            )?;
            tx.execute(
                "INSERT INTO errata_relevance (advisory, os, system_count) VALUES ('RHSA-2026:9999', 'rhel', 1)",
                [],
            )?;
            Ok(())
        })
        .expect("erratum");
    let rq = lab.queue("RHSA-2026:9999", "rhel");
    let out = engine.run_queue_id(rq, "tester").await.expect("runs");
    assert_eq!(out.name(), "waiting_system");
    assert_eq!(lab.item(rq).status, QueueStatus::WaitingSystem);
    let good = lab.queue("USN-9006-1", "ubuntu");
    let (claimed, out) = engine
        .next("tester")
        .await
        .expect("next")
        .expect("something to test");
    assert_eq!(
        claimed.id, good,
        "the waiting item does not hold the head of the queue"
    );
    assert_eq!(out.name(), "pending_approval", "{out:?}");
}

/// Edits the patch phase while the first test runs (before its patch phase).
struct EditDuringTest {
    root: PathBuf,
    host: Arc<ScriptHost>,
    done: Mutex<bool>,
}

impl Progress for EditDuringTest {
    fn phase_started(&self, _test_id: i64, phase: &str) {
        let mut done = self.done.lock().expect("lock");
        if phase != "snapshot" || *done {
            return;
        }
        *done = true;
        let p = self.root.join("phases/patch.lua");
        let src = std::fs::read_to_string(&p).expect("read patch.lua");
        let edited = src.replace(
            "return { before = before,",
            "return { edited = true, before = before,",
        );
        assert_ne!(src, edited, "patch.lua has the expected return line");
        std::fs::write(&p, edited).expect("write patch.lua");
        let host = self.host.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                host.reload().await;
            })
        });
    }
}

/// A phase edited (and hot-reloaded) during a test does not affect that test but affects
/// the next one; each test records the script hashes it ran with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_edited_during_a_test_affects_only_the_next_test() {
    let lab = Lab::start(false).await;
    let progress = Arc::new(EditDuringTest {
        root: lab.root.path().to_path_buf(),
        host: lab.host.clone(),
        done: Mutex::new(false),
    });
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-02".into()];
    let engine = lab.engine(cfg).with_progress(progress);
    let gen_before = lab.host.current().generation;
    let q1 = lab.queue("USN-9001-1", "ubuntu");
    let out1 = engine.run_queue_id(q1, "tester").await.expect("test 1");
    assert_eq!(out1.name(), "pending_approval", "{out1:?}");
    assert!(
        lab.host.current().generation > gen_before,
        "the edit was loaded"
    );
    let t1 = lab.test(tests_of(&out1)[0]);
    assert!(
        t1.state.pointer("/patch/edited").is_none(),
        "test 1 kept its scripts"
    );
    let q2 = lab.queue("USN-9006-1", "ubuntu");
    let out2 = engine.run_queue_id(q2, "tester").await.expect("test 2");
    let t2 = lab.test(tests_of(&out2)[0]);
    assert_eq!(
        t2.state.pointer("/patch/edited"),
        Some(&Value::Bool(true)),
        "test 2 uses the edit"
    );
    assert_ne!(
        t1.scripts.pointer("/phases~1patch.lua/sha256"),
        t2.scripts.pointer("/phases~1patch.lua/sha256")
    );
}

/// A process that stops mid-test leaves rows running; the next engine recovers them: the
/// patch is rolled back from the saved phase state, nothing stays running, the item is
/// queued again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_test_is_recovered_and_rolled_back() {
    let lab = Lab::start(false).await;
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-01".into()];
    cfg.lease_secs = 3;
    struct StopAt(tokio::sync::Notify);
    impl Progress for StopAt {
        fn phase_started(&self, _t: i64, phase: &str) {
            if phase == "reboot" {
                self.0.notify_one();
            }
        }
    }
    let stop = Arc::new(StopAt(tokio::sync::Notify::new()));
    let crashing = lab.engine(cfg.clone()).with_progress(stop.clone());
    let before = lab.installed("test-ubuntu-01", "nginx");
    let q = lab.queue("USN-9002-1", "ubuntu");
    let task = {
        let e = crashing.clone();
        tokio::spawn(async move { e.run_queue_id(q, "tester").await })
    };
    stop.0.notified().await;
    task.abort();
    let _ = task.await;
    assert_ne!(
        lab.installed("test-ubuntu-01", "nginx"),
        before,
        "the patch was applied"
    );
    let running = lab
        .store
        .read_blocking(test_runs::running)
        .expect("running");
    assert_eq!(running.len(), 1, "the crash left a running test");
    tokio::time::sleep(Duration::from_millis(3500)).await; // the lease expires

    let engine = lab.engine(cfg);
    let report = engine.recover().await.expect("recovery");
    assert_eq!(report.interrupted_tests, vec![running[0].id]);
    assert_eq!(report.rolled_back, vec![running[0].id]);
    assert_eq!(report.requeued, vec![q]);
    assert_eq!(lab.installed("test-ubuntu-01", "nginx"), before);
    let t = lab.test(running[0].id);
    assert_eq!(t.status, TestStatus::Interrupted);
    assert!(t.failure_reason.unwrap_or_default().contains("rolled back"));
    assert!(
        lab.phases(t.id)
            .iter()
            .all(|p| p.status != PhaseStatus::Running)
    );
    assert_eq!(lab.item(q).status, QueueStatus::Queued);
    assert!(
        lab.store
            .read_blocking(test_runs::running)
            .expect("running")
            .is_empty()
    );
}

/// `spm test abort` from another process: the engine running the test sees the request,
/// cancels its outstanding UYUNI action, rolls back and closes the test as aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_cancels_actions_and_rolls_back() {
    let lab = Lab::start(false).await;
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-01".into()];
    struct InPatch(tokio::sync::Notify);
    impl Progress for InPatch {
        fn phase_started(&self, _t: i64, phase: &str) {
            if phase == "patch" {
                self.0.notify_one();
            }
        }
    }
    let seen = Arc::new(InPatch(tokio::sync::Notify::new()));
    let engine = lab.engine(cfg.clone()).with_progress(seen.clone());
    let q = lab.queue("USN-9007-1", "ubuntu");
    let task = {
        let e = engine.clone();
        tokio::spawn(async move { e.run_queue_id(q, "tester").await })
    };
    seen.0.notified().await;
    // Wait until the hanging errata action is recorded.
    let mut test_id = None;
    for _ in 0..200 {
        let pending = lab
            .store
            .read_blocking(|c| test_runs::pending_actions(c, None))
            .expect("actions");
        if let Some(a) = pending.iter().find(|a| a.kind == "errata") {
            test_id = a.test_id;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let test_id = test_id.expect("the errata action is recorded with its test");
    let other = lab.engine(cfg); // another process: a different lease owner
    let how = other
        .abort(test_id, "operator says stop")
        .await
        .expect("abort");
    assert_eq!(how, spm::engine::testing::recovery::AbortOutcome::Requested);
    let out = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the test stops")
        .expect("task")
        .expect("outcome");
    let ItemOutcome::Failed {
        class,
        rollback_verified,
        ..
    } = &out
    else {
        panic!("expected failed, got {out:?}");
    };
    assert_eq!(class, "aborted");
    assert!(rollback_verified);
    let t = lab.test(test_id);
    assert_eq!(t.status, TestStatus::Aborted);
    assert!(
        t.failure_reason
            .unwrap_or_default()
            .contains("operator says stop")
    );
    assert_eq!(t.rollback_status.as_deref(), Some("verified"));
    let pending = lab
        .store
        .read_blocking(|c| test_runs::pending_actions(c, None))
        .expect("actions");
    assert!(pending.is_empty(), "no action left pending: {pending:?}");
    assert_eq!(lab.item(q).status, QueueStatus::Failed);
}

/// On a system with snapper the snapshot strategy applies first: `snapper undochange N..0`
/// restores the packages, the versions are verified, post_rollback passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_rollback_when_snapper_is_available() {
    let lab = Lab::start(false).await;
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-02".into()];
    let engine = lab.engine(cfg);
    let before = lab.installed("test-ubuntu-02", "nginx-common");
    let q = lab.queue("USN-9002-1", "ubuntu");
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.failure_phase.as_deref(), Some("services"));
    assert_eq!(
        t.state.pointer("/snapshot/available"),
        Some(&Value::Bool(true))
    );
    assert!(t.snapshot_id.is_some());
    assert_eq!(t.rollback_strategy.as_deref(), Some("snapshot"));
    assert_eq!(
        t.rollback_status.as_deref(),
        Some("verified"),
        "{}",
        t.state
    );
    assert_eq!(lab.installed("test-ubuntu-02", "nginx-common"), before);
    let sent_undo = t
        .state
        .pointer("/rollback/snapshot")
        .and_then(Value::as_i64)
        .is_some();
    assert!(sent_undo, "{}", t.state);
}

/// An item that requires every test system is tested on each (one notification for the
/// item, not one per system); two items on two systems run in parallel under the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_systems_items_and_parallel_workers() {
    let lab = Lab::start(false).await;
    let engine = lab.engine(test_config()); // test systems from the UYUNI group test-ubuntu
    let req = AddRequest {
        advisories: vec!["USN-9006-1".into()],
        os: Some("ubuntu".into()),
        queued_by: "tester".into(),
        require_all_systems: true,
        ..AddRequest::default()
    };
    let scorer = &lab.scorer;
    let q = lab
        .store
        .write_blocking(|tx| {
            add(tx, scorer, &req).map_err(|e| spm::store::StoreError::Conflict(e.to_string()))
        })
        .expect("queue add")
        .added[0]
        .id;
    let out = engine.run_queue_id(q, "tester").await.expect("test runs");
    let tests = tests_of(&out);
    assert_eq!(out.name(), "pending_approval", "{out:?}");
    assert_eq!(tests.len(), 2, "one test per test system");
    let systems: Vec<String> = tests
        .iter()
        .map(|t| lab.test(*t).system_name.unwrap_or_default())
        .collect();
    assert_eq!(
        systems,
        vec!["test-ubuntu-01".to_string(), "test-ubuntu-02".to_string()]
    );
    let events = lab
        .store
        .read_blocking(|c| test_runs::notification_events(c, q))
        .expect("notifications");
    assert_eq!(events, vec!["pending_approval".to_string()]);

    // Two items, two workers, two systems: the tests overlap in time.
    let a = lab.queue("USN-9001-1", "ubuntu");
    let b = lab.queue("USN-9004-1", "ubuntu");
    let workers = {
        let e = engine.clone();
        tokio::spawn(async move { e.run_workers(2).await })
    };
    for _ in 0..600 {
        let done = [a, b]
            .iter()
            .all(|id| !lab.item(*id).status.is_claimable() && !lab.item(*id).status.is_in_test());
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown();
    workers.await.expect("workers stop");
    let ta = lab.test(lab.item(a).last_test_id.expect("a tested"));
    let tb = lab.test(lab.item(b).last_test_id.expect("b tested"));
    assert_ne!(ta.system_id, tb.system_id, "different systems");
    let (ea, eb) = (
        ta.completed_at.clone().unwrap_or_default(),
        tb.completed_at.clone().unwrap_or_default(),
    );
    assert!(
        ta.started_at < eb && tb.started_at < ea,
        "tests overlap: a {}..{ea}, b {}..{eb}",
        ta.started_at,
        tb.started_at
    );
}

/// The overall test deadline cancels a test stuck on an action, and it is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cancels_a_stuck_test() {
    let lab = Lab::start(false).await;
    let mut cfg = test_config();
    cfg.systems = vec!["test-ubuntu-01".into()];
    cfg.deadline_secs = 2;
    let engine = lab.engine(cfg);
    let q = lab.queue("USN-9007-1", "ubuntu");
    let out = tokio::time::timeout(Duration::from_secs(60), engine.run_queue_id(q, "tester"))
        .await
        .expect("the deadline ends the test")
        .expect("outcome");
    let t = lab.test(tests_of(&out)[0]);
    assert_eq!(t.status, TestStatus::Aborted);
    assert_eq!(t.failure_phase.as_deref(), Some("patch"));
    assert!(t.failure_reason.unwrap_or_default().contains("deadline"));
    assert_eq!(t.rollback_status.as_deref(), Some("verified"));
    let pending = lab
        .store
        .read_blocking(|c| test_runs::pending_actions(c, None))
        .expect("actions");
    assert!(pending.is_empty(), "{pending:?}");
}

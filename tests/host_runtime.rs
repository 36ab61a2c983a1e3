//! The Lua runtime end to end on real VMs: limits, sandbox, typed errors, per-OS
//! resolution, script recording, spm.db on a real SQLite store.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use spm::host::contracts::Contracts;
use spm::host::errors::ErrorKind;
use spm::host::limits::Limits;
use spm::host::resolve;
use spm::host::runner::run_phase;
use spm::host::scriptset::ScriptSet;
use spm::host::services::Services;
use spm::host::vm::{self, Deadline};
use tokio_util::sync::CancellationToken;

async fn load(root: &std::path::Path) -> Arc<ScriptSet> {
    let report = ScriptSet::load_dir(root, &Contracts::default(), 1)
        .await
        .unwrap();
    let errors: Vec<String> = report.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    Arc::new(report.set)
}

fn limits(timeout: Duration, memory: usize) -> Limits {
    Limits {
        timeout,
        memory_bytes: memory,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_by_the_phase_timeout() {
    let root = common::root_with_patch("runaway/loop.lua");
    let set = load(root.path()).await;
    let start = Instant::now();
    let out = run_phase(
        set.clone(),
        &Services::default(),
        "debian",
        "patch",
        json!({}),
        &limits(Duration::from_secs(60), 64 << 20),
        CancellationToken::new(),
    )
    .await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    // The phase declares timeout = "1s", tighter than the 60 s limit.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.scripts[0].path, "phases/patch.lua");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spm_try_does_not_swallow_a_timeout() {
    let root = common::root_with_patch("runaway/loop_in_try.lua");
    let set = load(root.path()).await;
    let out = run_phase(
        set,
        &Services::default(),
        "debian",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.result.unwrap_err().kind, ErrorKind::Timeout);
}

/// A pure Lua loop yields to tokio, so other tasks on a one-thread runtime keep running.
#[tokio::test(flavor = "current_thread")]
async fn a_computing_script_does_not_starve_the_runtime() {
    let root = common::root_with_patch("runaway/loop.lua");
    let set = load(root.path()).await;
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t2 = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let out = run_phase(
        set,
        &Services::default(),
        "debian",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    ticker.abort();
    assert_eq!(out.result.unwrap_err().kind, ErrorKind::Timeout);
    // About 50 ticks fit in the 1 s phase timeout; a starved runtime would show 0.
    let n = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 10, "only {n} ticks while the script ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_by_cancellation() {
    let root = common::root_with_patch("runaway/loop.lua");
    let set = load(root.path()).await;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.cancel();
    });
    let out = run_phase(
        set,
        &Services::default(),
        "debian",
        "patch",
        json!({}),
        &Limits::default(),
        cancel,
    )
    .await;
    assert_eq!(out.result.unwrap_err().kind, ErrorKind::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_and_the_process_stays_healthy() {
    let root = common::root_with_patch("runaway/memory.lua");
    let set = load(root.path()).await;
    let out = run_phase(
        set,
        &Services::default(),
        "rhel",
        "patch",
        json!({}),
        &limits(Duration::from_secs(60), 32 << 20),
        CancellationToken::new(),
    )
    .await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Script);
    assert!(err.message.contains("memory limit"), "{err}");
    // Still healthy: another run in this process works.
    let ok = common::root_with_set();
    let set = load(ok.path()).await;
    let out = run_phase(
        set,
        &Services::default(),
        "ubuntu",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(out.result.unwrap()["os"], "ubuntu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_recursion_is_stopped() {
    let root = common::root_with_patch("runaway/recursion.lua");
    let set = load(root.path()).await;
    let out = run_phase(
        set,
        &Services::default(),
        "ubuntu",
        "patch",
        json!({}),
        &limits(Duration::from_secs(60), 256 << 20),
        CancellationToken::new(),
    )
    .await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Script);
    assert!(
        err.message.contains("stack overflow") || err.message.contains("memory limit"),
        "{err}"
    );
    assert!(err.message.contains("phases/patch.lua:"), "{err}");
}

/// Each snippet tries to escape the sandbox and must fail (raise, or yield nil).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_escapes_fail() {
    let vm = vm::build(
        &Services::default(),
        Arc::new(Default::default()),
        &Limits::default(),
        Deadline::after(Duration::from_secs(10)),
        CancellationToken::new(),
    )
    .unwrap();
    let must_raise = [
        ("os.execute", r#"return os.execute("id")"#),
        ("io.popen", r#"return io.popen("id")"#),
        ("io.open /etc/shadow", r#"return io.open("/etc/shadow")"#),
        ("loadfile /etc/shadow", r#"return loadfile("/etc/shadow")"#),
        ("dofile /etc/shadow", r#"return dofile("/etc/shadow")"#),
        ("require C module", r#"return require("socket.core")"#),
        ("require lfs", r#"return require("lfs")"#),
        ("require io", r#"return require("io")"#),
        (
            "require path escape",
            r#"return require("../../etc/shadow")"#,
        ),
        ("require absolute", r#"return require("/etc/shadow")"#),
        (
            "package.loadlib",
            r#"return package.loadlib("libc.so.6", "system")"#,
        ),
        ("debug.sethook", r#"return debug.sethook()"#),
        ("string.dump", r#"return string.dump(function() end)"#),
        ("coroutine", r#"return coroutine.create(function() end)"#),
        ("os.remove", r#"return os.remove("/tmp/x")"#),
        ("os.getenv", r#"return os.getenv("HOME")"#),
        ("collectgarbage stop", r#"return collectgarbage("stop")"#),
    ];
    for (what, code) in must_raise {
        let r = vm
            .lua
            .load(code)
            .set_name("@escape.lua")
            .eval_async::<mlua::Value>()
            .await;
        assert!(r.is_err(), "{what} did not fail: {r:?}");
    }
    // load of a binary chunk returns nil plus a message.
    let (f, msg): (mlua::Value, String) = vm
        .lua
        .load(r#"return load("\27Lua\84\0\25\147\13\10\26\10\4\8\8", "x", "b")"#)
        .eval_async()
        .await
        .unwrap();
    assert!(f.is_nil());
    assert!(msg.contains("not allowed"), "{msg}");
    let (f, msg): (mlua::Value, String) = vm
        .lua
        .load(r#"return load("\27Lua\84\0\25\147\13\10\26\10\4\8\8")"#)
        .eval_async()
        .await
        .unwrap();
    assert!(f.is_nil());
    assert!(msg.contains("binary"), "{msg}");
    // Text chunks still work, and the clock survives.
    let n: i64 = vm
        .lua
        .load(r#"return load("return 40 + 2")() + (os.time() > 0 and 0 or 1)"#)
        .eval_async()
        .await
        .unwrap();
    assert_eq!(n, 42);
    // Nothing was written by the os.remove attempt: os.remove simply does not exist.
    let has_remove: bool = vm.lua.load("return os.remove ~= nil").eval().unwrap();
    assert!(!has_remove);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_and_fail_round_trip() {
    let root = common::root_with_patch("sandbox/typed_errors.lua");
    let set = load(root.path()).await;
    let out = run_phase(
        set.clone(),
        &Services::default(),
        "ubuntu",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let v = out.result.unwrap();
    assert_eq!(v["value"], serde_json::Value::Null);
    assert_eq!(v["kind"], "transient");
    assert_eq!(v["retryable"], true);
    assert!(
        v["message"].as_str().unwrap().ends_with("mirror busy"),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("phases/patch.lua:7:"),
        "{v}"
    );
    assert_eq!(v["sum"], 5);
    assert_eq!(v["missing_kind"], "config");
    assert!(
        v["missing_message"]
            .as_str()
            .unwrap()
            .contains("spm.prom is not configured")
    );
    // Raised to Rust: the kind survives.
    let out = run_phase(
        set,
        &Services::default(),
        "ubuntu",
        "patch",
        json!({"raise": true}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Regression);
    assert!(!err.retryable);
    assert!(err.message.contains("nginx did not come back"), "{err}");
    assert!(err.message.starts_with("phases/patch.lua:14:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_os_resolution_and_script_recording() {
    let root = common::root_with_set();
    let set = load(root.path()).await;
    assert_eq!(
        resolve::resolve_phase(&set, "ubuntu", "patch")
            .unwrap()
            .path,
        "phases/ubuntu/patch.lua"
    );
    assert_eq!(
        resolve::resolve_phase(&set, "debian", "patch")
            .unwrap()
            .path,
        "phases/patch.lua"
    );
    assert!(resolve::resolve_phase(&set, "windows", "patch").is_err());
    assert!(resolve::resolve_phase(&set, "ubuntu", "reboot").is_err());
    let explained = resolve::explain(&set, "ubuntu").unwrap();
    let patch = explained.iter().find(|r| r.phase == "patch").unwrap();
    assert!(patch.os_override);

    let out = run_phase(
        set.clone(),
        &Services::default(),
        "debian",
        "patch",
        json!({"packages": ["nginx", "a b"]}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let v = out.result.unwrap();
    assert_eq!(v["os"], "generic");
    assert_eq!(v["quoted"], "nginx 'a b'");
    let paths: Vec<&str> = out.scripts.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["phases/patch.lua", "scripts/lib/fx/util.lua"]);
    for s in &out.scripts {
        assert_eq!(s.generation, 1);
        assert_eq!(s.sha256, set.get(&s.path).unwrap().sha256);
        assert_eq!(s.sha256.len(), 64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_kv_and_views_on_a_real_store() {
    let root = common::root_with_patch("sandbox/db.lua");
    let set = load(root.path()).await;
    let dbdir = tempfile::tempdir().unwrap();
    let store = spm::store::Store::open(&dbdir.path().join("spm.db")).unwrap();
    let services = Services {
        store: Some(store.clone()),
        ..Services::default()
    };
    for (i, tag) in ["first", "second"].iter().enumerate() {
        let out = run_phase(
            set.clone(),
            &services,
            "ubuntu",
            "patch",
            json!({"tag": tag}),
            &Limits::default(),
            CancellationToken::new(),
        )
        .await;
        let v = out.result.unwrap();
        assert_eq!(v["after"]["count"], i as i64 + 1, "{v}");
        assert_eq!(v["after"]["last"], *tag);
        assert_eq!(v["systems"], 0);
        assert!(v["bad"].as_str().unwrap().contains("unknown view"), "{v}");
    }
    // The value is namespaced by the script path.
    let raw = store
        .read_blocking(|c| spm::store::script_kv::get(c, "phases/patch.lua", "runs"))
        .unwrap()
        .unwrap();
    assert!(raw.contains("\"count\":2"), "{raw}");
    // Without a store the binding says so.
    let out = run_phase(
        set,
        &Services::default(),
        "ubuntu",
        "patch",
        json!({}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let err = out.result.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("spm.db is not configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pure_modules_work_from_lua() {
    let root = common::root_with_patch("sandbox/modules.lua");
    let set = load(root.path()).await;
    let out = run_phase(
        set,
        &Services::default(),
        "ubuntu",
        "patch",
        json!({"svc": "nginx", "host": "web 1"}),
        &Limits::default(),
        CancellationToken::new(),
    )
    .await;
    let v = out.result.unwrap();
    assert_eq!(v["text"], "restart nginx on web 1");
    assert!(
        v["undefined"].as_str().unwrap().contains("undefined"),
        "{v}"
    );
    assert_eq!(v["minutes"], 90.0);
    assert_eq!(v["next"], 3 * 3600);
    assert_eq!(v["quoted"], "echo 'web 1' '$(id)'");
    assert_eq!(v["same"], true);
    assert!(
        v["bad_require"].as_str().unwrap().contains("spm modules:"),
        "{v}"
    );
    assert_eq!(v["now_ok"], true);
}

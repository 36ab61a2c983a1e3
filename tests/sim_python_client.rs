//! Python's standard `xmlrpc.client` (an independent XML-RPC implementation) drives the
//! simulator over HTTP and over HTTPS, verifying the CA the simulator generated.
//!
//! Needs `python3` (Debian package `python3`).

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;
use spm::sim::clock::Timings;
use spm::sim::{SimHandle, SimOptions, SimServer};

fn run_python(sim: &SimHandle) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sim_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(sim.url()).arg(sim.base_url());
    if let Some(ca) = &sim.ca_file {
        cmd.arg(ca);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run python3 ({e}); install the Debian package `python3`")
    });
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

async fn start(tls: bool) -> SimHandle {
    SimServer::start(SimOptions {
        tls,
        frozen_clock: true,
        timings: Timings {
            pickup_s: 5,
            errata_s: 60,
            script_s: 3,
            ..Timings::default()
        },
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn check(sim: &SimHandle, r: &Json) {
    assert_eq!(r["version"], "27");
    let key = r["key"].as_str().unwrap();
    let (id, hash) = key.split_once('x').unwrap();
    assert!(id.parse::<u64>().unwrap() >= 1);
    assert!(
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(r["last_checkin_is_datetime"], true);

    let (names, groups, ubuntu): (Vec<Json>, _, Vec<u32>) = sim.with_world(|w| {
        let names = w
            .systems
            .values()
            .map(|s| serde_json::json!([s.id, s.name]))
            .collect();
        let groups: serde_json::Map<String, Json> = w
            .groups
            .values()
            .map(|g| (g.name.clone(), Json::from(g.members.len())))
            .collect();
        let ubuntu: Vec<u32> = w
            .groups
            .values()
            .find(|g| g.name == "test-ubuntu")
            .unwrap()
            .members
            .iter()
            .copied()
            .collect();
        (names, groups, ubuntu)
    });
    assert_eq!(r["systems"], Json::Array(names));
    assert_eq!(r["groups"], Json::Object(groups));
    let seen: Vec<u64> = r["test_ubuntu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[0].as_u64().unwrap())
        .collect();
    assert_eq!(
        seen,
        ubuntu.iter().map(|x| u64::from(*x)).collect::<Vec<_>>()
    );
    let (s1, s2) = (ubuntu[0], ubuntu[1]);

    // Both overloads agree; the array overload keys by system_id as a *string*.
    let int_overload = r["relevant_int"].clone();
    assert!(!int_overload.as_array().unwrap().is_empty());
    assert_eq!(r["relevant_array"][s1.to_string()], int_overload);
    assert!(r["relevant_array"][s2.to_string()].is_array());

    // One action for both systems (same errata set), then 2600 on re-scheduling.
    assert_eq!(r["apply_action_ids"].as_array().unwrap().len(), 1);
    assert_eq!(r["apply_again_fault"][0], 2600);
    assert_eq!(
        r["apply_again_fault"][1],
        "redstone.xmlrpc.XmlRpcFault: Invalid errata"
    );
    assert_eq!(r["in_progress_before"], serde_json::json!([s1, s2]));
    assert_eq!(r["completed_before"], serde_json::json!([]));
    assert_eq!(
        r["script_results_before"],
        serde_json::json!([]),
        "empty until a system reports"
    );
    assert_eq!(r["completed_after"], serde_json::json!([s1, s2]));
    assert!(
        r["completed_message"]
            .as_str()
            .unwrap()
            .starts_with("Patches applied")
    );
    assert_eq!(r["failed_after"], serde_json::json!([]));
    assert_eq!(
        r["action_summary"],
        serde_json::json!(["Patch Update", 2, 0])
    );
    let applied = r["apply_action_ids"][0].as_u64().unwrap();
    let after: Vec<u64> = r["relevant_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let erratum = sim.with_world(|w| match &w.actions[&(applied as u32)].kind {
        spm::sim::actions::ActionKind::Errata(ids) => u64::from(ids[0]),
        _ => panic!("not an errata action"),
    });
    assert!(
        !after.contains(&erratum),
        "applied erratum no longer relevant"
    );
    assert_eq!(after.len() + 1, int_overload.as_array().unwrap().len());

    let boot = sim.with_world(|w| w.systems[&s1].boot_id.clone());
    assert_eq!(
        r["script_result"],
        serde_json::json!([s1, 0, format!("a;b\n{boot}\n\n"), false])
    );
    assert_eq!(r["events"][0][1], "Patch Update");
    assert_eq!(
        r["events"][0][2], false,
        "listSystemEvents has no status key"
    );

    assert_eq!(
        r["fault_no_system"],
        serde_json::json!([
            -208,
            "redstone.xmlrpc.XmlRpcFault: No such system - sid = 42"
        ])
    );
    assert_eq!(r["fault_login"][0], 2950);
    assert_eq!(
        r["fault_unknown_ns"],
        serde_json::json!([
            -1,
            "redstone.xmlrpc.XmlRpcFault: The specified handler cannot be found"
        ])
    );
    assert_eq!(r["fault_bad_overload"][0], -1);
    assert!(
        r["fault_bad_overload"][1]
            .as_str()
            .unwrap()
            .contains("Could not find method: getRelevantErrata")
    );
    // Content lifecycle: build walks building → built over virtual time.
    let label = sim.with_world(|w| w.projects[0].label.clone());
    assert_eq!(r["projects"], serde_json::json!([label]));
    assert_eq!(r["build"], 1);
    assert_eq!(
        r["env_building"][0],
        serde_json::json!(["dev", 1, "building"])
    );
    assert_eq!(r["env_building"][1], serde_json::json!(["test", 0, "new"]));
    assert_eq!(r["env_built"][0], serde_json::json!(["dev", 1, "built"]));
    assert_eq!(r["promote_missing_env"][0], 10100);
    assert_eq!(
        r["build_missing_project"],
        serde_json::json!([10101, "redstone.xmlrpc.XmlRpcFault: nosuch"])
    );

    assert_eq!(r["logout"], 1);
    assert_eq!(r["after_logout"][0], -1);
    assert!(
        r["after_logout"][1]
            .as_str()
            .unwrap()
            .starts_with("com.redhat.rhn.common.hibernate.LookupException: Could not find session")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_xmlrpc_client_over_http() {
    let sim = start(false).await;
    let r = {
        let sim_ref = &sim;
        tokio::task::block_in_place(|| run_python(sim_ref))
    };
    check(&sim, &r);
    let stats = sim.stats();
    assert!(stats.total >= 20);
    assert_eq!(stats.calls.get("auth.login"), Some(&2));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_xmlrpc_client_over_https_verifies_generated_ca() {
    let sim = start(true).await;
    assert!(sim.url().starts_with("https://"));
    let r = {
        let sim_ref = &sim;
        tokio::task::block_in_place(|| run_python(sim_ref))
    };
    assert_eq!(
        r["untrusted_rejected"], true,
        "a default trust store must reject the simulator's CA"
    );
    check(&sim, &r);
    sim.shutdown().await;
}

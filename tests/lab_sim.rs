//! The simulator backed by real lab systems (`spm sim --lab N`), driven through our real
//! UYUNI client: errata apply runs apt inside the system, scripts run there, reboots
//! change the real boot id, relevance follows real dpkg state, metrics come from the
//! node exporter inside the system.
//!
//! Gated like every lab test: runs only with `SPM_LAB_TESTS=1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spm::lab::{self, Lab, LabOptions};
use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimOptions, SimServer};

/// Completed (Ok) or failed (Err with the message) once the action is done on `sid`.
async fn wait(client: &UyuniClient, action: i64, sid: i64) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut delay = Duration::from_millis(100);
    loop {
        let done = client.list_completed_systems(action).await;
        if let Some(s) = done
            .ok()
            .and_then(|v| v.into_iter().find(|s| s.server_id == sid))
        {
            return Ok(s.message.unwrap_or_default());
        }
        let failed = client.list_failed_systems(action).await;
        if let Some(s) = failed
            .ok()
            .and_then(|v| v.into_iter().find(|s| s.server_id == sid))
        {
            return Err(s.message.unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "action {action} on {sid} never finished"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn relevant(client: &UyuniClient, sid: i64) -> Vec<(String, i64)> {
    match client.relevant_errata(sid).await {
        Ok(v) => v.into_iter().map(|e| (e.advisory_name, e.id)).collect(),
        Err(e) => panic!("getRelevantErrata({sid}): {e}"),
    }
}

fn erratum(rel: &[(String, i64)], adv: &str) -> i64 {
    match rel.iter().find(|(a, _)| a == adv) {
        Some((_, id)) => *id,
        None => panic!("{adv} not relevant; relevant: {rel:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_backed_simulator_acts_on_real_systems() {
    if std::env::var("SPM_LAB_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "lab stage skipped: lab_backed_simulator_acts_on_real_systems: SPM_LAB_TESTS is not 1"
        );
        return;
    }
    let lab = match Lab::up(2, LabOptions::default()).await {
        Ok(l) => Arc::new(l),
        Err(e) => panic!("lab up: {e}"),
    };
    let fleet = match spm::sim::lab::fleet(&lab).await {
        Ok(f) => f,
        Err(e) => panic!("lab fleet: {e}"),
    };
    let sim = match SimServer::start(SimOptions {
        fleet: FleetSource::Fleet(Box::new(fleet)),
        timings: Timings::instant(),
        lab: Some(lab.clone()),
        ..SimOptions::default()
    })
    .await
    {
        Ok(s) => s,
        Err(e) => panic!("sim start: {e}"),
    };
    let client = match UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        ..UyuniConfig::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    };
    let real = &lab.systems()[0];
    let sid = sim.with_world(|w| {
        w.systems
            .values()
            .find(|s| s.name == real.name())
            .map(|s| i64::from(s.id))
    });
    let Some(sid) = sid else {
        panic!("no simulated system for {}", real.name());
    };

    // Relevance comes from the real dpkg state: every lab erratum applies.
    let rel = relevant(&client, sid).await;
    for adv in [
        "SPM-LAB-OK",
        "SPM-LAB-SVC",
        "SPM-LAB-REBOOT",
        "SPM-LAB-POSTINST",
        "SPM-LAB-APP",
    ] {
        erratum(&rel, adv);
    }

    // Apply errata installs the errata's versions with apt inside the system.
    let ok = erratum(&rel, "SPM-LAB-OK");
    let ids = match client.schedule_apply_errata(&[sid], &[ok], None).await {
        Ok(ids) => ids,
        Err(e) => panic!("scheduleApplyErrata: {e}"),
    };
    let msg = wait(&client, ids[0], sid).await;
    assert!(
        msg.as_ref().is_ok_and(|m| m.contains("spm-demo-ok-1.1")),
        "{msg:?}"
    );
    let installed = match real.installed_packages().await {
        Ok(m) => m,
        Err(e) => panic!("dpkg state: {e}"),
    };
    assert_eq!(
        installed.get("spm-demo-ok").map(String::as_str),
        Some("1.1")
    );
    let pkgs = match client.list_installed_packages(sid).await {
        Ok(p) => p,
        Err(e) => panic!("listInstalledPackages: {e}"),
    };
    assert!(
        pkgs.iter()
            .any(|p| p.name == "spm-demo-ok" && p.version == "1.1")
    );
    assert!(
        !relevant(&client, sid)
            .await
            .iter()
            .any(|(a, _)| a == "SPM-LAB-OK")
    );

    // A failing postinst fails the action with apt's real error.
    let bad = erratum(&rel, "SPM-LAB-POSTINST");
    let ids = match client.schedule_apply_errata(&[sid], &[bad], None).await {
        Ok(ids) => ids,
        Err(e) => panic!("scheduleApplyErrata: {e}"),
    };
    let msg = wait(&client, ids[0], sid).await;
    assert!(
        msg.as_ref().is_err_and(|m| m.contains("SPM-LAB-POSTINST")),
        "{msg:?}"
    );

    // Scripts run inside the system: real output and exit code.
    let run = client
        .schedule_script_run(
            &[sid],
            "root",
            "root",
            60,
            "#!/bin/bash\nhostname\nsystemctl is-active spm-demo-svc\n[[ -n $BASH_VERSION ]] && echo bash-ran\nexit 7\n",
            None,
        )
        .await;
    let run = match run {
        Ok(r) => r,
        Err(e) => panic!("scheduleScriptRun: {e}"),
    };
    let _ = wait(&client, run, sid).await;
    let res = match client.script_results(run).await {
        Ok(r) => r,
        Err(e) => panic!("getScriptResults: {e}"),
    };
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].return_code, 7);
    assert!(res[0].stdout.contains(real.name()), "{:?}", res[0]);
    assert!(res[0].stdout.contains("active"), "{:?}", res[0]);
    assert!(
        res[0].stdout.contains("bash-ran"),
        "the #! line was ignored: {:?}",
        res[0]
    );

    // Reboot: completes when the system is back with a new boot id.
    let before = match real.boot_id().await {
        Ok(b) => b,
        Err(e) => panic!("boot id: {e}"),
    };
    let reboot = match client.schedule_reboot(sid, None).await {
        Ok(r) => r,
        Err(e) => panic!("scheduleReboot: {e}"),
    };
    let msg = wait(&client, reboot, sid).await;
    assert_eq!(msg.as_deref(), Ok("Reboot completed."));
    let after = match real.boot_id().await {
        Ok(b) => b,
        Err(e) => panic!("boot id: {e}"),
    };
    assert_ne!(before, after);

    // Metrics are the real node exporter's.
    let url = format!("{}/_sim/systems/{sid}/metrics", sim.base_url());
    let body = match reqwest::get(&url).await {
        Ok(r) => {
            assert_eq!(r.status().as_u16(), 200);
            r.text().await.unwrap_or_default()
        }
        Err(e) => panic!("GET {url}: {e}"),
    };
    assert!(
        body.contains("node_boot_time_seconds"),
        "not node-exporter output"
    );
    assert!(
        body.contains("go_goroutines"),
        "not the real (Go) node exporter"
    );

    let sd: serde_json::Value =
        match reqwest::get(format!("{}/_sim/prometheus-sd", sim.base_url())).await {
            Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
            Err(e) => panic!("GET prometheus-sd: {e}"),
        };
    let listed = sd.as_array().is_some_and(|groups| {
        groups.iter().any(|g| {
            g["labels"]["lab_node_exporter"]
                == serde_json::Value::String(format!("{}:9100", real.ip()))
        })
    });
    assert!(listed, "SD does not list {}:9100: {sd}", real.ip());

    sim.shutdown().await;
    let left = lab::teardown();
    assert_eq!(left, Vec::<String>::new());
}

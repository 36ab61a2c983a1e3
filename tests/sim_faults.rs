//! Fault injection, stalls, malformed XML, statistics and reset, seen by our real UYUNI
//! client talking to the simulator on loopback.

use spm::services::uyuni::{CallKind, Secret, UyuniClient, UyuniConfig, UyuniError};
use spm::sim::faults::FaultOptions;
use spm::sim::{SimHandle, SimOptions, SimServer};

async fn sim(faults: FaultOptions) -> SimHandle {
    SimServer::start(SimOptions {
        faults,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn client(sim: &SimHandle, timeout_ms: u64) -> UyuniClient {
    UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        timeout_ms,
        retries: 0,
        ..UyuniConfig::default()
    })
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_reach_the_client_as_typed_errors() {
    let s = sim(FaultOptions {
        fault_rate: 1.0,
        ..FaultOptions::default()
    })
    .await;
    let err = client(&s, 5_000)
        .call_anonymous("api.getVersion", vec![], CallKind::Read)
        .await
        .expect_err("every call faults");
    assert_eq!(err.fault_code(), Some(-1), "{err}");
    assert!(err.to_string().contains("fault injection"), "{err}");
    s.shutdown().await;

    let s = sim(FaultOptions {
        malformed_rate: 1.0,
        ..FaultOptions::default()
    })
    .await;
    let err = client(&s, 5_000)
        .call_anonymous("api.getVersion", vec![], CallKind::Read)
        .await
        .expect_err("malformed XML");
    assert!(matches!(err, UyuniError::Decode { .. }), "{err:?}");
    s.shutdown().await;

    let s = sim(FaultOptions {
        stall_rate: 1.0,
        stall_ms: 5_000,
        ..FaultOptions::default()
    })
    .await;
    let err = client(&s, 300)
        .call_anonymous("api.getVersion", vec![], CallKind::Read)
        .await
        .expect_err("stall beyond the client timeout");
    assert!(matches!(err, UyuniError::Timeout { .. }), "{err:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_calls_and_reset_restores_the_fleet() {
    let s = sim(FaultOptions::default()).await;
    let c = client(&s, 5_000);
    let sid = s
        .with_world(|w| w.systems.keys().next().copied().map(i64::from))
        .expect("a system");
    let calls: Vec<_> = (0..20).map(|_| c.system_details(sid)).collect();
    for r in futures::future::join_all(calls).await {
        r.expect("getDetails");
    }
    let st = s.stats();
    assert_eq!(st.calls.get("system.getDetails"), Some(&20));
    assert_eq!(st.calls.get("auth.login"), Some(&1), "one login reused");
    assert!(st.peak_concurrency >= 1);
    let body = reqwest::get(format!("{}/_sim/stats", s.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    assert_eq!(json["calls"]["system.getDetails"], 20);

    // Change the world, then reset: the change is gone and counters restart.
    s.with_world(|w| {
        if let Some(sys) = w.systems.get_mut(&(sid as u32)) {
            sys.name = "renamed".into();
        }
    });
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/reset", s.base_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_ne!(
        s.with_world(|w| w.systems[&(sid as u32)].name.clone()),
        "renamed"
    );
    assert_eq!(s.stats().total, 0);
    // Sessions are part of the world: the old one is gone, the client logs in again.
    c.system_details(sid).await.expect("re-login after reset");
    assert_eq!(s.stats().calls.get("auth.login"), Some(&1));
    s.shutdown().await;
}

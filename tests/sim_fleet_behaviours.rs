//! The fleet file's behaviours, driven through our real UYUNI client against the
//! simulator on loopback, with metrics read over HTTP and scraped by a real Prometheus.
//!
//! The Prometheus test needs the Debian package `prometheus`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spm::services::uyuni::{Secret, UyuniClient, UyuniConfig};
use spm::sim::clock::Timings;
use spm::sim::{FleetSource, SimHandle, SimOptions, SimServer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet-small.toml")
}

async fn start() -> (SimHandle, UyuniClient) {
    let sim = SimServer::start(SimOptions {
        fleet: FleetSource::File(fixture()),
        frozen_clock: true,
        timings: Timings {
            reboot_delay_s: 5,
            reboot_downtime_s: 120,
            ..Timings::instant()
        },
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts with the fixture fleet");
    let client = UyuniClient::new(&UyuniConfig {
        url: sim.url(),
        user: "admin".into(),
        password: Secret::new("admin"),
        ..UyuniConfig::default()
    })
    .expect("client");
    (sim, client)
}

fn sid(sim: &SimHandle, name: &str) -> i64 {
    sim.with_world(|w| {
        w.systems
            .values()
            .find(|s| s.name == name)
            .map(|s| i64::from(s.id))
    })
    .unwrap_or_else(|| panic!("fixture has no system {name}"))
}

async fn erratum_id(client: &UyuniClient, sid: i64, adv: &str) -> i64 {
    client
        .relevant_errata(sid)
        .await
        .expect("getRelevantErrata")
        .into_iter()
        .find(|e| e.advisory_name == adv)
        .unwrap_or_else(|| panic!("{adv} not relevant to {sid}"))
        .id
}

async fn metrics(sim: &SimHandle, sid: i64) -> (u16, String) {
    let r = reqwest::get(format!("{}/_sim/systems/{sid}/metrics", sim.base_url()))
        .await
        .expect("metrics request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn gauge(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviours_from_the_fleet_file() {
    let (sim, client) = start().await;
    let t1 = sid(&sim, "test-ubuntu-01");
    let now = Some(sim.now());

    // Relevance: web-ubuntu-001 already has the fixed openssl.
    let web = sid(&sim, "web-ubuntu-001");
    let web_rel: Vec<String> = client
        .relevant_errata(web)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.advisory_name)
        .collect();
    assert_eq!(web_rel, vec!["USN-7002-1".to_string()]);

    // An erratum that stops a service and raises CPU.
    let (_, before) = metrics(&sim, t1).await;
    let load_before = gauge(&before, "node_load1");
    assert_eq!(
        gauge(
            &before,
            "node_systemd_unit_state{name=\"nginx.service\",state=\"failed\""
        ),
        0.0
    );
    let e = erratum_id(&client, t1, "USN-7002-1").await;
    let ids = client
        .schedule_apply_errata(&[t1], &[e], now)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let done = client.list_completed_systems(ids[0]).await.unwrap();
    assert_eq!(
        done.iter().map(|s| s.server_id).collect::<Vec<_>>(),
        vec![t1]
    );
    let (_, after) = metrics(&sim, t1).await;
    assert_eq!(
        gauge(
            &after,
            "node_systemd_unit_state{name=\"nginx.service\",state=\"failed\""
        ),
        1.0
    );
    assert!(gauge(&after, "node_load1") > load_before + 1.0);
    let run = client
        .schedule_script_run(
            &[t1],
            "root",
            "root",
            30,
            "#!/bin/sh\nsystemctl is-active ssh nginx",
            now,
        )
        .await
        .unwrap();
    let res = client.script_results(run).await.unwrap();
    assert_eq!(res[0].return_code, 3);
    assert_eq!(res[0].output, "active\nfailed\n\n");

    // An erratum that fails to apply.
    let e = erratum_id(&client, t1, "USN-7003-1").await;
    let ids = client
        .schedule_apply_errata(&[t1], &[e], now)
        .await
        .unwrap();
    let failed = client.list_failed_systems(ids[0]).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("USN-7003-1")
    );
    assert!(
        client
            .relevant_errata(t1)
            .await
            .unwrap()
            .iter()
            .any(|x| x.advisory_name == "USN-7003-1")
    );

    // An erratum that needs a reboot and raises memory; then the reboot.
    let mem_before = gauge(&after, "node_memory_MemAvailable_bytes");
    let e = erratum_id(&client, t1, "USN-7005-1").await;
    client
        .schedule_apply_errata(&[t1], &[e], now)
        .await
        .unwrap();
    let (_, m) = metrics(&sim, t1).await;
    assert_eq!(gauge(&m, "node_reboot_required"), 1.0);
    assert_eq!(
        mem_before - gauge(&m, "node_memory_MemAvailable_bytes"),
        2048.0 * 1024.0 * 1024.0
    );
    let boot_before = gauge(&m, "node_boot_time_seconds");
    let reboot = client.schedule_reboot(t1, now).await.unwrap();
    sim.advance(Duration::from_secs(30));
    let in_progress = client.list_in_progress_systems(reboot).await.unwrap();
    assert_eq!(
        in_progress.len(),
        1,
        "reboot stays Picked Up while the system is down"
    );
    assert_eq!(
        metrics(&sim, t1).await.0,
        503,
        "a down system cannot be scraped"
    );
    sim.advance(Duration::from_secs(120));
    let done = client.list_completed_systems(reboot).await.unwrap();
    assert_eq!(done[0].message.as_deref(), Some("Reboot completed."));
    let (_, m) = metrics(&sim, t1).await;
    assert_eq!(gauge(&m, "node_reboot_required"), 0.0);
    assert!(gauge(&m, "node_boot_time_seconds") > boot_before);

    // An offline system: actions stay queued.
    let t2 = sid(&sim, "test-ubuntu-02");
    let e = erratum_id(&client, t2, "USN-7001-1").await;
    let ids = client
        .schedule_apply_errata(&[t2], &[e], now)
        .await
        .unwrap();
    sim.advance(Duration::from_secs(3600));
    assert_eq!(
        client.list_in_progress_systems(ids[0]).await.unwrap().len(),
        1
    );
    client
        .cancel_actions(&ids)
        .await
        .expect("queued actions can be cancelled");

    // A system that never returns from reboot.
    let r1 = sid(&sim, "test-rhel-01");
    let reboot = client.schedule_reboot(r1, Some(sim.now())).await.unwrap();
    sim.advance(Duration::from_secs(86_400));
    assert_eq!(
        client.list_in_progress_systems(reboot).await.unwrap().len(),
        1
    );
    let err = client
        .cancel_actions(&[reboot])
        .await
        .expect_err("picked-up reboot cannot be cancelled");
    assert!(err.to_string().contains("10003"), "{err}");
    sim.shutdown().await;
}

struct Prom(Child, PathBuf);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn prom_query(port: u16, q: &str) -> serde_json::Value {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={enc}");
    match reqwest::get(url).await {
        Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_simulated_node_exporters() {
    let (sim, client) = start().await;
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let port = free_port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: spm-sim\n    http_sd_configs:\n      - url: {}/_sim/prometheus-sd\n        refresh_interval: 1s\n",
        sim.base_url()
    );
    std::fs::write(dir.join("prometheus.yml"), cfg).expect("write config");
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run prometheus ({e}); install the Debian package `prometheus`")
        });
    let _prom = Prom(child, dir);

    let t1 = sid(&sim, "test-ubuntu-01");
    let e = erratum_id(&client, t1, "USN-7002-1").await;
    client
        .schedule_apply_errata(&[t1], &[e], Some(sim.now()))
        .await
        .unwrap();

    let query = format!(
        "node_systemd_unit_state{{system_id=\"{t1}\",name=\"nginx.service\",state=\"failed\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = prom_query(port, &query).await;
        let result = &r["data"]["result"];
        if let Some(first) = result.as_array().and_then(|a| a.first()) {
            assert_eq!(first["value"][1], "1", "nginx failed on {t1}: {first}");
            assert_eq!(first["metric"]["system_name"], "test-ubuntu-01");
            assert_eq!(first["metric"]["group"], "test-ubuntu");
            assert_eq!(first["metric"]["os"], "ubuntu");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the simulator: {r}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let up = prom_query(port, "count(up{job=\"spm-sim\"} == 1)").await;
    let n = sim.with_world(|w| w.systems.values().filter(|s| s.reachable()).count());
    // Offline systems answer 503 and count as down.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = up;
    let want = n.to_string();
    while seen["data"]["result"][0]["value"][1].as_str() != Some(want.as_str()) {
        assert!(
            Instant::now() < deadline,
            "expected {n} systems up, Prometheus says {seen}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        seen = prom_query(port, "count(up{job=\"spm-sim\"} == 1)").await;
    }
    sim.shutdown().await;
}

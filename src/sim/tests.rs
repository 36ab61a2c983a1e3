//! Unit tests over a small hand-built fleet: relevance, the action lifecycle, and the
//! emulated shell commands.

use chrono::{Duration, NaiveDate, NaiveDateTime};

use super::actions::{ActionKind, ScriptSpec, Status, print_std_messages};
use super::clock::Timings;
use super::fleet::{BehaviourSpec, ErratumSpec, FleetBuilder, SystemSpec};
use super::model::{Os, UnitState};
use super::shell::run_script;
use super::world::World;

fn t0() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 3, 12)
        .and_then(|d| d.and_hms_opt(17, 7, 41))
        .unwrap()
}

fn erratum(adv: &str, os: &str, pkgs: &[&str], b: BehaviourSpec, reboot: bool) -> ErratumSpec {
    ErratumSpec {
        advisory: adv.into(),
        os: os.into(),
        kind: "security".into(),
        severity: Some("Important".into()),
        synopsis: None,
        cves: vec![format!("CVE-2026-{}", adv.len())],
        packages: pkgs.iter().map(|s| s.to_string()).collect(),
        reboot_suggested: reboot,
        restart_suggested: false,
        status: None,
        issue_date: None,
        behaviour: b,
    }
}

fn system(name: &str, os: &str, pkgs: &[&str]) -> SystemSpec {
    SystemSpec {
        name: name.into(),
        os: os.into(),
        groups: vec![format!("test-{os}")],
        packages: pkgs.iter().map(|s| s.to_string()).collect(),
        services: vec!["ssh".into(), "nginx".into()],
        online: true,
        never_returns_from_reboot: false,
        snapper: true,
        ip: None,
        disk_free_mb: None,
        mem_total_mb: None,
        cpu_busy: None,
        pkg_lock_held: false,
    }
}

/// Ubuntu u1 (openssl 3.4), u2 (openssl 3.5 = patched), rhel r1 (openssl 1:3.0.7-24).
fn world(timings: Timings) -> World {
    let mut b = FleetBuilder::new(3, t0());
    let fail = BehaviourSpec {
        fail: true,
        ..BehaviourSpec::default()
    };
    let stop = BehaviourSpec {
        stop_service: Some("nginx".into()),
        cpu_raise: 0.5,
        memory_raise_mb: 1024,
        ..BehaviourSpec::default()
    };
    b.erratum(
        Os::Ubuntu2404,
        &erratum(
            "USN-1-1",
            "ubuntu",
            &["openssl=3.0.13-0ubuntu3.5"],
            stop,
            false,
        ),
    )
    .unwrap();
    b.erratum(
        Os::Ubuntu2404,
        &erratum(
            "USN-2-1",
            "ubuntu",
            &["curl=8.5.0-2ubuntu10.6"],
            fail,
            false,
        ),
    )
    .unwrap();
    b.erratum(
        Os::Ubuntu2404,
        &erratum(
            "USN-3-1",
            "ubuntu",
            &["linux-image-generic=6.8.0-52.1"],
            BehaviourSpec::default(),
            true,
        ),
    )
    .unwrap();
    b.erratum(
        Os::Rhel9,
        &erratum(
            "RHSA-2026:1",
            "rhel",
            &["openssl=1:3.0.7-27.el9_4"],
            BehaviourSpec::default(),
            false,
        ),
    )
    .unwrap();
    b.package(Os::Ubuntu2404, "openssl", "3.0.13-0ubuntu3.3", None)
        .unwrap();
    b.system(&system(
        "u1",
        "ubuntu",
        &[
            "openssl=3.0.13-0ubuntu3.4",
            "curl=8.5.0-2ubuntu10.5",
            "linux-image-generic=6.8.0-51.1",
        ],
    ))
    .unwrap();
    b.system(&system("u2", "ubuntu", &["openssl=3.0.13-0ubuntu3.5"]))
        .unwrap();
    b.system(&system(
        "r1",
        "rhel",
        &["openssl=1:3.0.7-24.el9_4", "kernel=5.14.0-427.el9_4"],
    ))
    .unwrap();
    b.finish(timings, "admin", "admin")
}

const U1: u32 = 1_000_010_000;
const U2: u32 = 1_000_010_001;
const R1: u32 = 1_000_010_002;

#[test]
fn relevance_follows_installed_versions() {
    let w = world(Timings::instant());
    assert_eq!(
        w.systems[&U1].relevant.iter().copied().collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        w.systems[&U2].relevant.is_empty(),
        "same version is not relevant"
    );
    assert_eq!(
        w.systems[&R1].relevant.iter().copied().collect::<Vec<_>>(),
        vec![4]
    );
}

#[test]
fn errata_action_lifecycle_with_durations() {
    let timings = Timings {
        pickup_s: 5,
        errata_s: 30,
        ..Timings::default()
    };
    let mut w = world(timings);
    let now = t0();
    let id = w.create_action(
        ActionKind::Errata(vec![1]),
        "Patch Update".into(),
        "admin",
        now,
        &[U1],
        now,
    );
    w.tick(now);
    assert_eq!(w.actions[&id].servers[&U1].status, Status::Queued);
    assert!(w.errata_pending(U1, 1));
    w.tick(now + Duration::seconds(5));
    assert_eq!(w.actions[&id].servers[&U1].status, Status::PickedUp);
    w.tick(now + Duration::seconds(34));
    assert_eq!(w.actions[&id].servers[&U1].status, Status::PickedUp);
    w.tick(now + Duration::seconds(35));
    let row = &w.actions[&id].servers[&U1];
    assert_eq!(row.status, Status::Completed);
    assert_eq!(
        row.completion,
        Some(now + Duration::seconds(35)),
        "completion at the event time, not the tick"
    );
    let u1 = &w.systems[&U1];
    assert_eq!(u1.installed["openssl"].evr.release, "0ubuntu3.5");
    assert!(!u1.relevant.contains(&1));
    assert_eq!(u1.units["nginx.service"], UnitState::Failed);
    assert!(u1.cpu_raised > 0.4);
    assert!(!w.pending.contains(&id));
}

#[test]
fn failing_erratum_and_offline_system() {
    let mut w = world(Timings::instant());
    let now = t0();
    let id = w.create_action(
        ActionKind::Errata(vec![2]),
        "x".into(),
        "admin",
        now,
        &[U1],
        now,
    );
    w.tick(now);
    let row = &w.actions[&id].servers[&U1];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(
        w.systems[&U1].installed["curl"].evr.release, "2ubuntu10.5",
        "nothing installed"
    );
    if let Some(s) = w.systems.get_mut(&U2) {
        s.online = false;
    }
    let id2 = w.create_action(ActionKind::Reboot, "r".into(), "admin", now, &[U2], now);
    w.tick(now + Duration::hours(1));
    assert_eq!(
        w.actions[&id2].servers[&U2].status,
        Status::Queued,
        "offline systems never pick up"
    );
}

#[test]
fn reboot_stays_picked_up_until_back_with_new_boot_id() {
    let timings = Timings {
        pickup_s: 0,
        reboot_delay_s: 10,
        reboot_downtime_s: 60,
        ..Timings::default()
    };
    let mut w = world(timings);
    let now = t0();
    // Install the new kernel first (instant errata), so the reboot changes uname -r.
    let e = w.create_action(
        ActionKind::Errata(vec![3]),
        "k".into(),
        "admin",
        now,
        &[U1],
        now,
    );
    w.timings.errata_s = 0;
    w.tick(now);
    assert_eq!(w.actions[&e].servers[&U1].status, Status::Completed);
    assert!(w.systems[&U1].reboot_required());
    let boot = w.systems[&U1].boot_id.clone();
    let old_kernel = w.systems[&U1].running_kernel.clone();
    let id = w.create_action(ActionKind::Reboot, "r".into(), "admin", now, &[U1], now);
    w.tick(now + Duration::seconds(30));
    assert_eq!(w.actions[&id].servers[&U1].status, Status::PickedUp);
    assert!(
        !w.systems[&U1].reachable(),
        "down between reboot_delay and downtime end"
    );
    w.tick(now + Duration::seconds(70));
    let row = &w.actions[&id].servers[&U1];
    assert_eq!(row.status, Status::Completed);
    assert_eq!(row.result_msg.as_deref(), Some("Reboot completed."));
    let s = &w.systems[&U1];
    assert_ne!(s.boot_id, boot);
    assert_ne!(s.running_kernel, old_kernel);
    assert_eq!(s.running_kernel, "6.8.0-52-generic");
    assert!(!s.reboot_required());
    assert_eq!(s.last_boot, now + Duration::seconds(70));
}

#[test]
fn never_returning_system_keeps_reboot_picked_up() {
    let mut w = world(Timings::instant());
    if let Some(s) = w.systems.get_mut(&R1) {
        s.behaviour.never_returns_from_reboot = true;
    }
    let now = t0();
    let id = w.create_action(ActionKind::Reboot, "r".into(), "admin", now, &[R1], now);
    w.tick(now + Duration::days(1));
    assert_eq!(w.actions[&id].servers[&R1].status, Status::PickedUp);
    assert_eq!(
        w.cancel_actions(&[id]),
        Err(id),
        "picked-up actions cannot be cancelled"
    );
}

#[test]
fn cancel_drops_queued_rows() {
    let mut w = world(Timings::default());
    let now = t0();
    let id = w.create_action(
        ActionKind::Errata(vec![1]),
        "x".into(),
        "admin",
        now + Duration::hours(1),
        &[U1],
        now,
    );
    w.tick(now);
    assert_eq!(w.cancel_actions(&[id]), Ok(()));
    assert!(!w.actions.contains_key(&id));
    assert!(!w.errata_pending(U1, 1));
}

fn sh(w: &mut World, sid: u32, script: &str) -> (String, String, i32) {
    let sys = w.systems.get_mut(&sid).unwrap();
    let r = run_script(script, sys, &w.catalog, t0());
    if r.packages_changed {
        sys.recompute_relevance(&w.catalog);
    }
    (r.stdout, r.stderr, r.code)
}

#[test]
fn shell_snapper_round_trip_restores_packages() {
    let mut w = world(Timings::instant());
    let (out, _, code) = sh(
        &mut w,
        U1,
        "#!/bin/bash\nsnapper create --type single --description 'spm-pre-USN-1-1' --cleanup-algorithm number --print-number",
    );
    assert_eq!((out.as_str(), code), ("1\n", 0));
    let (out, err, code) = sh(&mut w, U1, "apt-get install -y 'openssl=3.0.13-0ubuntu3.5'");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Setting up openssl (3.0.13-0ubuntu3.5)"));
    assert!(!w.systems[&U1].relevant.contains(&1));
    let (out, _, _) = sh(&mut w, U1, "snapper list");
    assert!(out.contains("spm-pre-USN-1-1"));
    let (out, _, code) = sh(&mut w, U1, "snapper undochange 1..0");
    assert_eq!((out.as_str(), code), ("create:0 modify:1 delete:0\n", 0));
    assert_eq!(
        w.systems[&U1].installed["openssl"].evr.release,
        "0ubuntu3.4"
    );
    assert!(
        w.systems[&U1].relevant.contains(&1),
        "relevance recomputed after undochange"
    );
    assert_eq!(sh(&mut w, U1, "snapper delete 1").2, 0);
    let (_, err, code) = sh(&mut w, U1, "snapper delete 1");
    assert_eq!((err.as_str(), code), ("Snapshot '1' not found.\n", 1));
}

#[test]
fn shell_apt_downgrade_needs_flag() {
    let mut w = world(Timings::instant());
    let (_, err, code) = sh(&mut w, U1, "apt-get install -y openssl=3.0.13-0ubuntu3.3");
    assert_eq!(code, 100);
    assert!(err.contains("--allow-downgrades"));
    let (_, _, code) = sh(
        &mut w,
        U1,
        "export DEBIAN_FRONTEND=noninteractive\napt-get install --allow-downgrades -y 'openssl=3.0.13-0ubuntu3.3' 2>&1",
    );
    assert_eq!(code, 0);
    assert_eq!(
        w.systems[&U1].installed["openssl"].evr.release,
        "0ubuntu3.3"
    );
    let (_, err, code) = sh(&mut w, U1, "apt-get install -y openssl=9.9-9");
    assert_eq!(
        (code, err.as_str()),
        (100, "E: Version '9.9-9' for 'openssl' was not found\n")
    );
    let (_, err, code) = sh(&mut w, U1, "apt-get install -y nosuchpkg");
    assert_eq!(
        (code, err.as_str()),
        (100, "E: Unable to locate package nosuchpkg\n")
    );
}

#[test]
fn shell_rpm_queries_and_dnf() {
    let mut w = world(Timings::instant());
    let (out, _, code) = sh(
        &mut w,
        R1,
        "rpm -q --qf '%{EPOCH}:%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n' openssl kernel",
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "1:openssl-3.0.7-24.el9_4.x86_64\n(none):kernel-5.14.0-427.el9_4.x86_64\n"
    );
    let (out, _, code) = sh(&mut w, R1, "rpm -q nosuch");
    assert_eq!(
        (out.as_str(), code),
        ("package nosuch is not installed\n", 1)
    );
    let (_, _, code) = sh(&mut w, R1, "dnf install -y openssl-1:3.0.7-27.el9_4");
    assert_eq!(code, 0);
    assert_eq!(w.systems[&R1].installed["openssl"].evr.release, "27.el9_4");
    let (_, _, code) = sh(&mut w, R1, "dnf downgrade -y openssl-3.0.7-24.el9_4");
    assert_eq!(code, 0, "epoch may be omitted");
    assert_eq!(w.systems[&R1].installed["openssl"].evr.release, "24.el9_4");
    let (_, _, code) = sh(&mut w, R1, "needs-restarting -r");
    assert_eq!(code, 0);
    let (_, err, code) = sh(&mut w, R1, "apt-get install -y x");
    assert_eq!((code, err.as_str()), (127, "sh: 1: apt-get: not found\n"));
}

#[test]
fn shell_control_flow_and_builtins() {
    let mut w = world(Timings::instant());
    let (out, _, code) = sh(&mut w, U1, "false && echo no || echo yes; echo after");
    assert_eq!((out.as_str(), code), ("yes\nafter\n", 0));
    let (out, _, code) = sh(&mut w, U1, "set -e\nfalse\necho unreachable");
    assert_eq!((out.as_str(), code), ("", 1));
    let (out, _, code) = sh(&mut w, U1, "set -e\nfalse || true\necho reached");
    assert_eq!((out.as_str(), code), ("reached\n", 0));
    let (out, _, code) = sh(&mut w, U1, "echo one; exit 3; echo two");
    assert_eq!((out.as_str(), code), ("one\n", 3));
    let (out, err, code) = sh(&mut w, U1, "frobnicate --now; echo $?x");
    assert_eq!(err, "sh: 1: frobnicate: not found\n");
    assert_eq!((out.as_str(), code), ("$?x\n", 0), "no parameter expansion");
    let (out, _, _) = sh(
        &mut w,
        U1,
        "[ -f /var/run/reboot-required ] && echo reboot_required || echo no_reboot",
    );
    assert_eq!(out, "no_reboot\n");
    let (out, _, code) = sh(&mut w, U1, "systemctl is-active ssh nginx.service nosuch");
    assert_eq!((out.as_str(), code), ("active\nactive\ninactive\n", 3));
    let (out, _, code) = sh(
        &mut w,
        U1,
        "systemctl is-active --quiet 'nginx' 2>/dev/null || echo 'nginx'",
    );
    assert_eq!((out.as_str(), code), ("", 0));
    let (out, _, _) = sh(&mut w, U1, "df -BM --output=avail /");
    assert!(out.starts_with("Avail\n") && out.trim_end().ends_with('M'));
    let (out, _, _) = sh(
        &mut w,
        U1,
        "dpkg-query -W -f='${Package} ${Version}\\n' openssl",
    );
    assert_eq!(out, "openssl 3.0.13-0ubuntu3.4\n");
    let (out, _, _) = sh(
        &mut w,
        U1,
        "dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\n' openssl",
    );
    assert_eq!(out, "ii \topenssl\n");
    let (out, err, code) = sh(&mut w, U1, "dpkg --verify openssl nosuch");
    assert_eq!((out.as_str(), code), ("", 1));
    assert!(err.contains("package 'nosuch' is not installed"), "{err}");
    let (out, _, code) = sh(&mut w, U1, "dpkg --verify openssl");
    assert_eq!((out.as_str(), code), ("", 0));
    let (out, _, _) = sh(&mut w, U1, "uname -r; command -v apt-get dnf; echo $?");
    assert_eq!(out, "6.8.0-51-generic\n/usr/bin/apt-get\n$?\n");
    let (_, err, code) = sh(&mut w, U1, "echo 'unterminated");
    assert_eq!(code, 2);
    assert!(err.contains("Unterminated"));
    let (out, _, _) = sh(
        &mut w,
        U1,
        "echo hidden >/dev/null; echo err 1>&2 2>/dev/null; snapper list-configs | grep -q root && echo has_root",
    );
    assert_eq!(out, "has_root\n");
}

#[test]
fn script_output_layout_matches_uyuni() {
    assert_eq!(print_std_messages("", "42"), "42\n");
    assert_eq!(print_std_messages("warn", ""), "stderr:\n\nwarn\n");
    assert_eq!(
        print_std_messages("warn", "42"),
        "stderr:\n\nwarn\nstdout:\n\n42\n"
    );
}

#[test]
fn script_action_records_result() {
    let mut w = world(Timings::instant());
    let now = t0();
    let spec = ScriptSpec {
        label: None,
        username: "root".into(),
        groupname: "root".into(),
        timeout: 60,
        contents: "#!/bin/sh\ncat /proc/sys/kernel/random/boot_id\nexit 4".into(),
    };
    let id = w.create_action(
        ActionKind::Script(spec),
        "s".into(),
        "admin",
        now,
        &[U1, U2],
        now,
    );
    w.tick(now);
    let a = &w.actions[&id];
    assert_eq!(a.counts(), (0, 2, 0));
    let r = a.servers[&U1].script.as_ref().unwrap();
    assert_eq!(r.code, 4);
    assert_eq!(r.output, format!("{}\n\n", w.systems[&U1].boot_id));
    assert!(
        a.servers[&U1]
            .result_msg
            .as_deref()
            .unwrap()
            .starts_with("Failed to execute script. [jid=")
    );
}

#[test]
fn bad_fleet_files_name_the_item() {
    let bad: super::fleet::FleetFile =
        toml::from_str("[[systems]]\nname = \"x\"\nos = \"solaris\"\n").unwrap();
    let err = super::fleet::from_file(&bad, Timings::instant(), "a", "b", t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid fleet: systems[0] (x): unknown os \"solaris\" (expected ubuntu-24.04, debian-12 or rhel-9)"
    );
    let bad: super::fleet::FleetFile = toml::from_str(
        "[[errata]]\nadvisory = \"A-1\"\nos = \"rhel\"\ntype = \"security\"\npackages = [\"openssl=1.0\"]\n",
    )
    .unwrap();
    let err = super::fleet::from_file(&bad, Timings::instant(), "a", "b", t0()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid fleet: errata[0] (A-1): package openssl: invalid version"),
        "{err}"
    );
    assert!(
        toml::from_str::<super::fleet::FleetFile>("[[systems]]\nnmae = \"x\"\n").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn fixture_fleet_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet-small.toml");
    let file = super::fleet::FleetFile::load(&path).unwrap();
    let w = super::fleet::from_file(&file, Timings::instant(), "a", "b", t0()).unwrap();
    assert_eq!(w.systems.len(), 4);
    assert!(
        w.catalog
            .erratum_named("USN-7003-1")
            .unwrap()
            .behaviour
            .fail
    );
}

#[test]
fn generator_is_deterministic() {
    let p = super::fleet::GenParams {
        systems: 30,
        errata: 300,
        extra_packages: 5,
        seed: 9,
        max_lag: None,
    };
    let a = super::fleet::generate(p, Timings::instant(), "a", "b", t0());
    let b = super::fleet::generate(p, Timings::instant(), "a", "b", t0());
    let names = |w: &World| {
        w.catalog
            .errata
            .iter()
            .map(|e| e.advisory.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    let rel = |w: &World| {
        w.systems
            .values()
            .map(|s| s.relevant.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(rel(&a), rel(&b));
    assert_eq!(a.systems.len(), 36, "2 test systems per OS on top");
    assert!(
        a.catalog
            .errata
            .iter()
            .any(|e| e.advisory.starts_with("RHSA-"))
    );
    assert!(
        a.catalog
            .errata
            .iter()
            .any(|e| e.advisory.starts_with("DSA-"))
    );
    assert!(
        a.catalog
            .errata
            .iter()
            .any(|e| e.advisory.starts_with("USN-"))
    );
    // Relevance per system equals a brute-force scan over all errata packages.
    for s in a.systems.values() {
        let brute: std::collections::BTreeSet<u32> = a
            .catalog
            .errata
            .iter()
            .filter(|e| {
                e.packages
                    .iter()
                    .filter_map(|p| a.catalog.package(*p))
                    .any(|p| {
                        s.channels.contains(&p.channel)
                            && s.installed
                                .get(&p.name)
                                .is_some_and(|i| p.evr.cmp_with(&i.evr, s.os.kind()).is_gt())
                    })
            })
            .map(|e| e.id)
            .collect();
        assert_eq!(s.relevant, brute, "system {}", s.name);
    }
}

mod dispatch {
    use super::*;
    use crate::services::uyuni::xmlrpc::Value;
    use crate::sim::handlers::dispatch;

    fn login(w: &mut World, now: NaiveDateTime, extra: Option<i64>) -> String {
        let mut p = vec![Value::from("admin"), Value::from("admin")];
        p.extend(extra.map(Value::Int));
        match dispatch(w, now, "auth.login", &p) {
            Ok(Value::String(k)) => k,
            other => panic!("login: {other:?}"),
        }
    }

    fn fault(r: Result<Value, crate::services::uyuni::xmlrpc::Fault>) -> (i64, String) {
        let f = r.expect_err("a fault");
        (f.code, f.string)
    }

    #[test]
    fn sessions_slide_and_expire() {
        let mut w = world(Timings::instant());
        let now = t0();
        let key = login(&mut w, now, Some(60));
        let call =
            |w: &mut World, t| dispatch(w, t, "system.listSystems", &[Value::from(key.as_str())]);
        assert!(call(&mut w, now + Duration::seconds(50)).is_ok());
        // Each call pushes expiry forward by the server lifetime.
        assert!(call(&mut w, now + Duration::seconds(100)).is_ok());
        let (code, msg) = fault(call(&mut w, now + Duration::seconds(100 + 3601)));
        assert_eq!(code, -1);
        assert!(
            msg.starts_with(
                "com.redhat.rhn.common.hibernate.LookupException: Could not find session with id: "
            ),
            "{msg}"
        );
        let key2 = login(&mut w, now, None);
        let forged2 = format!("{}x{}", key2.split('x').next().unwrap(), "0".repeat(64));
        let (code, msg) = fault(dispatch(
            &mut w,
            now,
            "system.listSystems",
            &[Value::from(forged2.as_str())],
        ));
        assert_eq!(code, -1);
        assert!(
            msg.starts_with("com.redhat.rhn.domain.session.InvalidSessionIdException"),
            "{msg}"
        );
        let (code, _) = fault(dispatch(
            &mut w,
            now,
            "auth.login",
            &[
                Value::from("admin"),
                Value::from("admin"),
                Value::Int(99_999),
            ],
        ));
        assert_eq!(code, -1, "duration above the server maximum");
    }

    #[test]
    fn scheduling_faults_match_uyuni() {
        let mut w = world(Timings::default());
        let now = t0();
        let k = Value::from(login(&mut w, now, None).as_str());
        let ints = |v: &[i64]| Value::Array(v.iter().map(|i| Value::Int(*i)).collect());
        let u1 = i64::from(U1);
        // Not relevant (u2 already has it): 2600; empty lists: 1213.
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[k.clone(), ints(&[u1, i64::from(U2)]), ints(&[1])],
        );
        assert_eq!(
            fault(r),
            (2600, "redstone.xmlrpc.XmlRpcFault: Invalid errata".into())
        );
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[k.clone(), ints(&[]), ints(&[1])],
        );
        assert_eq!(fault(r).0, 1213);
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[k.clone(), Value::Int(u1), ints(&[])],
        );
        assert_eq!(
            fault(r),
            (
                1213,
                "redstone.xmlrpc.XmlRpcFault: No errata to apply.".into()
            )
        );
        // onlyRelevant=false (overload 5) schedules only where it applies.
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[
                k.clone(),
                ints(&[u1, i64::from(U2)]),
                ints(&[1]),
                Value::DateTime(now),
                Value::Bool(false),
                Value::Bool(false),
            ],
        )
        .unwrap();
        assert_eq!(r.as_array().map(<[Value]>::len), Some(1));
        // Pending now: scheduling again is 2600.
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[k.clone(), Value::Int(u1), ints(&[1]), Value::DateTime(now)],
        );
        assert_eq!(fault(r).0, 2600);
        // Two systems needing different sets get one action each.
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleApplyErrata",
            &[k.clone(), ints(&[u1]), ints(&[2, 3])],
        )
        .unwrap();
        assert_eq!(
            r.as_array().map(<[Value]>::len),
            Some(1),
            "one action for one system's set"
        );
        // Unknown sid on reboot: the raw lookup text, not -208.
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleReboot",
            &[k.clone(), Value::Int(7), Value::DateTime(now)],
        );
        let (code, msg) = fault(r);
        assert_eq!(code, -1);
        assert!(msg.contains("Could not find server 7 for user"), "{msg}");
        let r = dispatch(
            &mut w,
            now,
            "system.getScriptResults",
            &[k.clone(), Value::Int(999)],
        );
        assert_eq!(fault(r).0, 2700);
        let r = dispatch(
            &mut w,
            now,
            "system.getScriptResults",
            &[k.clone(), Value::Int(1)],
        );
        assert_eq!(fault(r).0, 2701, "action 1 is a patch update");
        let r = dispatch(
            &mut w,
            now,
            "schedule.cancelActions",
            &[k.clone(), ints(&[999])],
        );
        assert_eq!(fault(r), (-1, "redstone.xmlrpc.XmlRpcFault: unhandled internal exception: Could not find action with id: 999".into()));
        let r = dispatch(
            &mut w,
            now,
            "schedule.listCompletedSystems",
            &[k.clone(), Value::Int(999)],
        );
        assert_eq!(fault(r).0, -1);
        // Package install: the single-sid overload returns a scalar; unknown ids 2300.
        let r = dispatch(
            &mut w,
            now,
            "system.schedulePackageInstall",
            &[k.clone(), Value::Int(u1), ints(&[1]), Value::DateTime(now)],
        )
        .unwrap();
        assert!(matches!(r, Value::Int(_)), "{r:?}");
        let r = dispatch(
            &mut w,
            now,
            "system.schedulePackageInstall",
            &[k.clone(), ints(&[u1]), ints(&[1]), Value::DateTime(now)],
        )
        .unwrap();
        assert!(matches!(r, Value::Array(_)), "{r:?}");
        let r = dispatch(
            &mut w,
            now,
            "system.schedulePackageInstall",
            &[
                k.clone(),
                Value::Int(u1),
                ints(&[99_999]),
                Value::DateTime(now),
            ],
        );
        assert_eq!(fault(r).0, 2300);
        // Taskomatic down: 2802 on scheduling calls.
        w.taskomatic_down = true;
        let r = dispatch(
            &mut w,
            now,
            "system.scheduleReboot",
            &[k.clone(), Value::Int(u1), Value::DateTime(now)],
        );
        assert_eq!(fault(r).0, 2802);
        // A wrong element type inside an int array is Java's ClassCastException.
        let r = dispatch(
            &mut w,
            now,
            "system.getRelevantErrata",
            &[k.clone(), Value::Array(vec![Value::from("x")])],
        );
        assert_eq!(fault(r).0, -1);
        let r = dispatch(&mut w, now, "system.nosuchMethod", &[k]);
        assert!(fault(r).1.contains("Could not find method: nosuchMethod in class: com.redhat.rhn.frontend.xmlrpc.system.SystemHandler"));
    }
}

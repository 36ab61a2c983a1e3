//! Idempotent teardown: finds what a lab left behind by name and path (not only from the
//! state file), so it also cleans up after a crashed or killed run.

use std::fs;
use std::time::Duration;

use super::{cmd, net, paths, system};

/// Does this process belong to the lab (its command line names a lab path)?
fn is_lab_process(p: &system::Proc) -> bool {
    let marker = paths::state_dir().to_string_lossy().into_owned();
    p.cmdline.iter().any(|a| a.starts_with(&marker))
}

/// Remove everything a lab may have left: processes, mounts, namespaces, loop devices,
/// the image file and the state directory. Returns what could not be removed.
pub fn teardown() -> Vec<String> {
    // 1. Supervisor loops first, so nothing boots again.
    for p in system::processes() {
        if is_lab_process(&p) && p.cmdline.first().is_some_and(|a| a.ends_with("bash")) {
            cmd::quiet("kill", ["-KILL", &p.pid.to_string()]);
        }
    }
    // 2. Container PID 1s (kills each pid namespace whole), then nspawn and the server.
    let procs = system::processes();
    for p in procs.iter().filter(|p| is_lab_process(p)) {
        for c in procs.iter().filter(|c| c.ppid == p.pid) {
            cmd::quiet("kill", ["-KILL", &c.pid.to_string()]);
        }
        cmd::quiet("kill", ["-KILL", &p.pid.to_string()]);
    }
    for _ in 0..50 {
        if !system::processes().iter().any(is_lab_process) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // 3. Mounts under the state directory, deepest first.
    let mut mounts = lab_mounts();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    // A dying container's mount namespace can hold a mount for a moment: retry, then
    // detach lazily.
    for m in mounts {
        let mut done = false;
        for _ in 0..20 {
            if cmd::quiet("umount", [m.as_str()]) {
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        if !done {
            cmd::quiet("umount", ["-l", m.as_str()]);
        }
    }
    // 4. Namespaces (their veths and the bridge go with them).
    net::delete_all();
    // 5. Loop devices backed by the image, and the image.
    for dev in loop_devices() {
        cmd::quiet("losetup", ["-d", dev.as_str()]);
    }
    // A busy loop device is detached when its last user lets go (autoclear): wait for it.
    for _ in 0..100 {
        if loop_devices().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = fs::remove_file(paths::image());
    let _ = fs::remove_dir_all(paths::state_dir());
    leftovers()
}

fn lab_mounts() -> Vec<String> {
    let marker = paths::state_dir().to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&marker))
        .map(str::to_string)
        .collect()
}

fn loop_devices() -> Vec<String> {
    let img = paths::image().to_string_lossy().into_owned();
    cmd::run("losetup", ["-a"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&img))
        .filter_map(|l| l.split(':').next())
        .filter(|d| d.starts_with("/dev/loop"))
        .map(str::to_string)
        .collect()
}

/// Everything of a lab that still exists on the machine (empty when clean).
pub fn leftovers() -> Vec<String> {
    let mut out = Vec::new();
    for p in system::processes().iter().filter(|p| is_lab_process(p)) {
        out.push(format!("process {} ({})", p.pid, p.cmdline.join(" ")));
    }
    for m in lab_mounts() {
        out.push(format!("mount {m}"));
    }
    for ns in net::lab_namespaces() {
        out.push(format!("network namespace {ns}"));
    }
    for d in loop_devices() {
        out.push(format!("loop device {d}"));
    }
    if paths::image().exists() {
        out.push(format!("image {}", paths::image().display()));
    }
    if paths::state_dir().exists() {
        out.push(format!("state directory {}", paths::state_dir().display()));
    }
    out
}

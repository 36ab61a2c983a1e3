//! One lab system: a writable btrfs snapshot of the golden image, booted with
//! `systemd-nspawn --boot` inside its own network namespace by a supervisor loop that
//! restarts nspawn when the container asks for a reboot (exit status 133).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{LabError, cmd, paths};

/// The supervisor: boot, and boot again while nspawn reports a reboot (133).
const SUPERVISOR: &str = r#"R=$0 NS=$1
while :; do
  echo "spm-lab: boot $(date +%s.%N)"
  systemd-nspawn -q -D "$R" --boot --register=no --keep-unit --console=passive \
      --network-namespace-path="/run/netns/$NS"
  rc=$?
  echo "spm-lab: nspawn exit $rc $(date +%s.%N)"
  [ "$rc" = 133 ] || break
done
"#;

/// Output of a script run inside a system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExecOutput {
    /// Exit status (128+signal when killed by a signal).
    pub rc: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

/// Snapshot the golden image for a system and set its identity.
pub fn create(top: &Path, name: &str, ip: &str) -> Result<(), LabError> {
    let sub = top.join(name);
    let golden = top.join("golden");
    cmd::run(
        "btrfs",
        [
            "-q",
            "subvolume",
            "snapshot",
            &golden.to_string_lossy(),
            &sub.to_string_lossy(),
        ],
    )?;
    fs::write(sub.join("etc/hostname"), format!("{name}\n"))
        .map_err(|e| LabError::io("write hostname", e))?;
    let hosts = format!("127.0.0.1 localhost\n{ip} {name}\n");
    fs::write(sub.join("etc/hosts"), hosts).map_err(|e| LabError::io("write hosts", e))?;
    Ok(())
}

/// Mount a system's subvolume at its root and start its supervisor; returns the pid.
pub fn boot(device: &str, name: &str, root: &Path, netns: &str) -> Result<u32, LabError> {
    fs::create_dir_all(root).map_err(|e| LabError::io("create system mount point", e))?;
    let root_s = root.to_string_lossy().into_owned();
    if !cmd::quiet("mountpoint", ["-q", root_s.as_str()]) {
        let opts = format!("subvol={name},noatime");
        cmd::run("mount", ["-o", opts.as_str(), device, root_s.as_str()])?;
    }
    spawn_supervisor(name, root, netns)
}

fn spawn_supervisor(name: &str, root: &Path, netns: &str) -> Result<u32, LabError> {
    let log_path = paths::state_dir().join(format!("{name}.console.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| LabError::io("open console log", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| LabError::io("dup console log", e))?;
    let child = std::process::Command::new("setsid")
        .args(["bash", "-c", SUPERVISOR])
        .arg(root)
        .arg(netns)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| LabError::io("start systemd-nspawn supervisor", e))?;
    Ok(child.id())
}

/// A process as seen in `/proc`: pid, parent, command line.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub cmdline: Vec<String>,
}

/// Every process on the host (best effort: processes may vanish while we read).
pub(crate) fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid …": comm may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let Some(ppid) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Proc { pid, ppid, cmdline });
    }
    out
}

/// The nspawn process running the system rooted at `root`, if any.
fn nspawn_pid(procs: &[Proc], root: &str) -> Option<u32> {
    procs
        .iter()
        .find(|p| {
            p.cmdline
                .first()
                .is_some_and(|a| a.ends_with("systemd-nspawn"))
                && p.cmdline.iter().any(|a| a == root)
        })
        .map(|p| p.pid)
}

/// The container's PID 1 (as a host pid) for the system rooted at `root`.
pub fn leader(root: &Path) -> Option<u32> {
    let procs = processes();
    let root = root.to_string_lossy();
    let ns = nspawn_pid(&procs, &root)?;
    procs.iter().find(|p| p.ppid == ns).map(|p| p.pid)
}

/// Run `script` with `/bin/sh` inside the system whose PID 1 is `leader`.
pub async fn exec(leader: u32, script: &str, timeout: Duration) -> Result<ExecOutput, LabError> {
    let t = leader.to_string();
    let child = tokio::process::Command::new("nsenter")
        .args(["-t", &t, "-a", "-r", "-w", "/usr/bin/env", "-i"])
        .args([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            "/bin/sh",
            "-c",
            script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LabError::io("start nsenter", e))?;
    let pgid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            use std::os::unix::process::ExitStatusExt as _;
            let rc = out
                .status
                .code()
                .or_else(|| out.status.signal().map(|s| 128 + s))
                .unwrap_or(-1);
            Ok(ExecOutput {
                rc,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
        Ok(Err(e)) => Err(LabError::io("wait for nsenter", e)),
        Err(_) => {
            if let Some(g) = pgid {
                cmd::quiet("kill", ["-KILL", "--", &format!("-{g}")]);
            }
            Err(LabError::Timeout {
                what: "script in lab system".to_string(),
                secs: timeout.as_secs(),
            })
        }
    }
}

/// Wait until the system rooted at `root` has a PID 1 other than `not` whose boot has
/// finished (`systemctl is-system-running` says running or degraded); returns the leader.
pub async fn wait_booted(
    root: &Path,
    not: Option<u32>,
    timeout: Duration,
) -> Result<u32, LabError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(l) = leader(root).filter(|l| Some(*l) != not) {
            let left = timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_secs(1));
            if let Ok(out) = exec(l, "systemctl is-system-running --wait", left).await {
                let state = out.stdout.trim();
                if state == "running" || state == "degraded" {
                    return Ok(l);
                }
            }
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: format!("boot of {}", root.display()),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Stop a system: end its supervisor, ask PID 1 to power off, and SIGKILL what is left
/// after `grace`. Idempotent.
pub async fn stop(root: &Path, grace: Duration) {
    let root_s = root.to_string_lossy().into_owned();
    kill_supervisors(&root_s);
    let Some(l) = leader(root) else {
        kill_nspawn(&root_s);
        return;
    };
    // SIGRTMIN+4 asks systemd for a clean poweroff.
    cmd::quiet("kill", ["-s", "SIGRTMIN+4", &l.to_string()]);
    let start = Instant::now();
    while start.elapsed() < grace {
        if nspawn_pid(&processes(), &root_s).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGKILL to PID 1 of a pid namespace ends every process in it.
    cmd::quiet("kill", ["-KILL", &l.to_string()]);
    kill_nspawn(&root_s);
}

/// Power-cycle: SIGKILL the container and boot it again with a fresh supervisor.
pub fn power_cycle(name: &str, root: &Path, netns: &str) -> Result<u32, LabError> {
    let root_s = root.to_string_lossy().into_owned();
    kill_supervisors(&root_s);
    if let Some(l) = leader(root) {
        cmd::quiet("kill", ["-KILL", &l.to_string()]);
    }
    for _ in 0..50 {
        if nspawn_pid(&processes(), &root_s).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_nspawn(&root_s);
    spawn_supervisor(name, root, netns)
}

fn kill_supervisors(root: &str) {
    for p in processes() {
        let is_bash = p.cmdline.first().is_some_and(|a| a.ends_with("bash"));
        if is_bash && p.cmdline.iter().any(|a| a == root) {
            cmd::quiet("kill", ["-KILL", &p.pid.to_string()]);
        }
    }
}

fn kill_nspawn(root: &str) {
    let procs = processes();
    if let Some(ns) = nspawn_pid(&procs, root) {
        for c in procs.iter().filter(|p| p.ppid == ns) {
            cmd::quiet("kill", ["-KILL", &c.pid.to_string()]);
        }
        cmd::quiet("kill", ["-KILL", &ns.to_string()]);
    }
}

/// Where system `name` is mounted.
pub fn root_of(name: &str) -> PathBuf {
    paths::state_dir().join("mnt").join(name)
}

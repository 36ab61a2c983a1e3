//! The local flat apt repository (`base` and `updates` channels) served to the systems on
//! the bridge address by a small HTTP static server inside the hub namespace.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{LabError, cmd, image, net, packages, paths};

/// Port the repository listens on (on the bridge address).
pub const PORT: u16 = 8080;

/// Write `Packages` and `Packages.gz` for the `.deb`s in `dir`.
pub fn index(dir: &Path) -> Result<(), LabError> {
    let d = cmd::shell_quote(&dir.to_string_lossy());
    cmd::run(
        "sh",
        [
            "-c",
            &format!(
                "cd {d} && dpkg-scanpackages -m . /dev/null > Packages 2>/dev/null && \
                 gzip -kf Packages"
            ),
        ],
    )?;
    Ok(())
}

/// Fill the repository: synthetic packages built now, real pair from the cache.
pub fn assemble(root: &Path) -> Result<(), LabError> {
    for (channel, version) in [
        ("base", packages::BASE_VERSION),
        ("updates", packages::UPDATE_VERSION),
    ] {
        let dir = root.join(channel);
        fs::create_dir_all(&dir).map_err(|e| LabError::io("create repo channel", e))?;
        for p in packages::SYNTHETIC {
            packages::build(p, version, &dir)?;
        }
        let real = image::real_debs(net::BRIDGE_IP, PORT, channel);
        if real.is_dir() {
            for e in fs::read_dir(&real).map_err(|e| LabError::io("read real cache", e))? {
                let e = e.map_err(|e| LabError::io("read real cache", e))?;
                fs::copy(e.path(), dir.join(e.file_name()))
                    .map_err(|e| LabError::io("copy real package into repo", e))?;
            }
        }
        index(&dir)?;
    }
    cmd::run("chmod", ["-R", "a+rX", &root.to_string_lossy()])?;
    Ok(())
}

/// Start the static server in the hub namespace; returns its pid once it answers.
pub fn serve(root: &Path) -> Result<u32, LabError> {
    let log = fs::File::create(paths::state_dir().join("repo.log"))
        .map_err(|e| LabError::io("create repo.log", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| LabError::io("dup repo.log", e))?;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    // `setsid` and `ip netns exec` both exec without forking, so the pid is the server's.
    let child = Command::new("setsid")
        .args(["ip", "netns", "exec", net::HUB, python, "-m", "http.server"])
        .arg(PORT.to_string())
        .args(["--bind", net::BRIDGE_IP, "--directory"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| LabError::io("start repository server", e))?;
    let pid = child.id();
    let probe = format!("echo > /dev/tcp/{}/{PORT}", net::BRIDGE_IP);
    for _ in 0..100 {
        if cmd::quiet("ip", ["netns", "exec", net::HUB, "bash", "-c", &probe]) {
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError::Command {
        what: "repository server".to_string(),
        detail: format!(
            "did not answer on {}:{PORT} within 10 s (see {})",
            net::BRIDGE_IP,
            paths::state_dir().join("repo.log").display()
        ),
    })
}

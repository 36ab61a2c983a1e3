//! The golden Debian image: built once with debootstrap, cached as a `btrfs send` stream
//! under `/var/cache/spm-lab/<key>/`, where the key hashes the whole build recipe; and the
//! sparse loop-mounted btrfs image every system is a snapshot in.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{LabError, cmd, packages, paths};

/// Debian release the golden image is built from.
pub const SUITE: &str = "bookworm";

/// Real Debian packages whose two archive versions become a test pair (resolved with
/// `apt-cache madison` when the cache is cold, then kept in the cache).
pub const REAL_PAIR: &[&str] = &["nginx", "nginx-common"];

/// Packages debootstrap installs into the golden image.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,openssh-server,snapper,btrfs-progs,procps,\
iproute2,needrestart,ca-certificates,python3";

/// Runs inside the chroot after debootstrap: base packages from the local file repository,
/// then the settings that make a clone boot fast and shut down cleanly under nspawn.
const CHROOT_SCRIPT: &str = r#"set -eu
export DEBIAN_FRONTEND=noninteractive
cp /srv/spm-sources.list /etc/apt/sources.list
echo 'deb [trusted=yes] file:/srv/spm-base ./' >> /etc/apt/sources.list
apt-get update -qq
apt-get install -y -q --no-install-recommends prometheus-node-exporter python3-apt $SPM_BASE_PKGS
apt-get purge -y -q libpam-systemd >/dev/null 2>&1 || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
    e2scrub_reap.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
systemctl enable prometheus-node-exporter.service ssh.service spm-demo-svc.service
printf 'deb [trusted=yes] http://%s:%s/base ./\ndeb [trusted=yes] http://%s:%s/updates ./\n' \
    "$SPM_REPO_IP" "$SPM_REPO_PORT" "$SPM_REPO_IP" "$SPM_REPO_PORT" > /etc/apt/sources.list
rm -rf /srv/spm-base /srv/spm-sources.list /var/lib/apt/lists/* /etc/ssh/ssh_host_*
apt-get clean
"#;

/// Files written into the golden image before the chroot step (path, contents).
fn golden_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "etc/systemd/system.conf.d/spm-lab.conf",
            "[Manager]\nDefaultTimeoutStopSec=10s\nDefaultTimeoutStartSec=30s\n",
        ),
        (
            "etc/systemd/system/ssh.service.d/spm-lab-hostkeys.conf",
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n\
             ExecStartPre=/usr/sbin/sshd -t\n",
        ),
        (
            "etc/needrestart/conf.d/spm-lab.conf",
            "$nrconf{restart} = 'l';\n$nrconf{ui} = 'NeedRestart::UI::stdio';\n",
        ),
        ("etc/hostname", "spm-lab\n"),
        ("etc/machine-id", ""),
        (
            "usr/sbin/policy-rc.d",
            "#!/bin/sh\n# spm lab: no service starts inside the image build chroot\nexit 101\n",
        ),
    ]
}

/// Enter the build chroot with private mount/pid namespaces (mounts vanish with them).
const ENTER: &str = r#"R=$0
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys" 2>/dev/null || true
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount --rbind /dev "$R/dev"
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    SPM_BASE_PKGS="$SPM_BASE_PKGS" SPM_REPO_IP="$SPM_REPO_IP" SPM_REPO_PORT="$SPM_REPO_PORT" \
    /bin/sh -c "$1"
"#;

/// The real package pair chosen when the cache was built.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RealPair {
    /// `(package, old version, new version)`.
    pub packages: Vec<(String, String, String)>,
}

/// The cache key: a hash of everything that shapes the golden image.
pub fn cache_key(repo_ip: &str, repo_port: u16) -> String {
    let mut h = Sha256::new();
    h.update(b"spm-lab golden v1\n");
    h.update(SUITE);
    h.update(INCLUDE);
    h.update(CHROOT_SCRIPT);
    h.update(ENTER);
    for (p, c) in golden_files() {
        h.update(p);
        h.update(c);
    }
    h.update(REAL_PAIR.join(","));
    h.update(format!("{repo_ip}:{repo_port}"));
    h.update(packages::recipe_text());
    hex::encode(&h.finalize()[..8])
}

/// One apt source read from the machine's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// Archive URI.
    pub uri: String,
    /// Suites.
    pub suites: Vec<String>,
    /// Components.
    pub components: Vec<String>,
}

/// Parse deb822 `.sources` text (only `Types: deb` stanzas).
pub fn parse_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = String::new();
        let (mut uris, mut suites, mut comps) = (Vec::new(), Vec::new(), Vec::new());
        for line in stanza.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match k.trim() {
                "Types" => types = v.trim().to_string(),
                "URIs" => uris = words(),
                "Suites" => suites = words(),
                "Components" => comps = words(),
                _ => {}
            }
        }
        if !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            out.push(AptSource {
                uri,
                suites: suites.clone(),
                components: comps.clone(),
            });
        }
    }
    out
}

/// The machine's Debian mirrors, from `/etc/apt/sources.list.d/debian.sources`.
pub fn host_sources() -> Result<Vec<AptSource>, LabError> {
    let path = "/etc/apt/sources.list.d/debian.sources";
    let text = fs::read_to_string(path).map_err(|e| LabError::io(format!("read {path}"), e))?;
    let sources = parse_sources(&text);
    if !sources.iter().any(|s| s.suites.iter().any(|x| x == SUITE)) {
        return Err(LabError::Unavailable(format!(
            "{path} has no `deb` source for suite {SUITE}"
        )));
    }
    Ok(sources)
}

/// Make sure the golden subvolume exists under `top` (restored from the cache, or built
/// and then cached). Returns the real pair recorded with it.
pub async fn ensure_golden(
    top: &Path,
    repo_ip: &str,
    repo_port: u16,
) -> Result<(RealPair, bool), LabError> {
    let key = cache_key(repo_ip, repo_port);
    let dir = paths::cache_dir().join(&key);
    let stream = dir.join("golden.btrfs.zst");
    let manifest = dir.join("real.json");
    if stream.is_file() && manifest.is_file() {
        let pair = read_manifest(&manifest)?;
        let script = format!(
            "zstd -dc {} | btrfs -q receive {}",
            cmd::shell_quote(&stream.to_string_lossy()),
            cmd::shell_quote(&top.to_string_lossy())
        );
        cmd::run_async("sh", &["-c", &script]).await?;
        return Ok((pair, true));
    }
    tracing::info!(
        key,
        "building the lab's golden image (cold cache, about 1–3 min)"
    );
    fs::create_dir_all(&dir).map_err(|e| LabError::io("create cache dir", e))?;
    let pair = fetch_real_pair(&dir).await?;
    build_golden(top, &dir, &pair, repo_ip, repo_port).await?;
    let golden = top.join("golden");
    let tmp = dir.join("golden.btrfs.zst.tmp");
    let script = format!(
        "btrfs -q send {} | zstd -q -3 -T0 -o {} -f",
        cmd::shell_quote(&golden.to_string_lossy()),
        cmd::shell_quote(&tmp.to_string_lossy())
    );
    cmd::run_async("sh", &["-c", &script]).await?;
    fs::rename(&tmp, &stream).map_err(|e| LabError::io("store golden image in cache", e))?;
    let json = serde_json::to_string_pretty(&pair).unwrap_or_default();
    fs::write(&manifest, json).map_err(|e| LabError::io("write real.json", e))?;
    Ok((pair, false))
}

fn read_manifest(path: &Path) -> Result<RealPair, LabError> {
    let text = fs::read_to_string(path)
        .map_err(|e| LabError::io(format!("read {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| LabError::Cache(format!("{}: {e}", path.display())))
}

/// Directory of the cached real `.deb`s of one channel (`base` or `updates`).
pub fn real_debs(repo_ip: &str, repo_port: u16, channel: &str) -> PathBuf {
    paths::cache_dir()
        .join(cache_key(repo_ip, repo_port))
        .join("real")
        .join(channel)
}

/// Resolve the oldest and newest archive versions of [`REAL_PAIR`] and download both.
async fn fetch_real_pair(dir: &Path) -> Result<RealPair, LabError> {
    let out = cmd::run_async("apt-cache", &[&["madison"][..], REAL_PAIR].concat()).await?;
    let mut pair = RealPair::default();
    for name in REAL_PAIR {
        let versions: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('|').map(str::trim);
                let (p, v) = (f.next()?, f.next()?);
                (p == *name).then(|| v.to_string())
            })
            .collect();
        let (Some(old), Some(new)) = (
            extreme(&versions, "lt").await,
            extreme(&versions, "gt").await,
        ) else {
            continue;
        };
        if old != new {
            pair.packages.push((name.to_string(), old, new));
        }
    }
    if pair.packages.len() != REAL_PAIR.len() {
        tracing::warn!(
            "apt-cache madison found no old/new pair for {REAL_PAIR:?}; the lab has no real \
             Debian pair (run `apt-get update` on the host?)"
        );
        return Ok(RealPair::default());
    }
    for (channel, pick) in [("base", 1), ("updates", 2)] {
        let d = dir.join("real").join(channel);
        fs::create_dir_all(&d).map_err(|e| LabError::io("create real package cache", e))?;
        let args: Vec<String> = pair
            .packages
            .iter()
            .map(|(n, o, nw)| format!("{n}={}", if pick == 1 { o } else { nw }))
            .collect();
        let script = format!(
            "cd {} && apt-get download -q {} 2>&1",
            cmd::shell_quote(&d.to_string_lossy()),
            args.iter()
                .map(|a| cmd::shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        cmd::run_async("sh", &["-c", &script]).await?;
    }
    Ok(pair)
}

/// The lowest (`lt`) or highest (`gt`) Debian version in `versions`.
async fn extreme(versions: &[String], op: &str) -> Option<String> {
    let mut best: Option<String> = None;
    for v in versions {
        let better = match &best {
            None => true,
            Some(b) => cmd::run_async("dpkg", &["--compare-versions", v, op, b])
                .await
                .is_ok(),
        };
        if better {
            best = Some(v.clone());
        }
    }
    best
}

async fn build_golden(
    top: &Path,
    cache: &Path,
    pair: &RealPair,
    repo_ip: &str,
    repo_port: u16,
) -> Result<(), LabError> {
    let sources = host_sources()?;
    let mirror = sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == SUITE))
        .map(|s| s.uri.clone())
        .ok_or_else(|| LabError::Unavailable(format!("no mirror for {SUITE}")))?;
    let build = top.join("golden-build");
    let build_s = build.to_string_lossy().into_owned();
    if build.exists() {
        cmd::run_async("btrfs", &["-q", "subvolume", "delete", &build_s]).await?;
    }
    cmd::run_async("btrfs", &["-q", "subvolume", "create", &build_s]).await?;
    let debs = paths::cache_dir().join("debootstrap");
    fs::create_dir_all(&debs).map_err(|e| LabError::io("create debootstrap cache", e))?;
    let include = format!("--include={INCLUDE}");
    let cache_arg = format!("--cache-dir={}", debs.display());
    cmd::run_async(
        "debootstrap",
        &[
            "--variant=minbase",
            &cache_arg,
            &include,
            SUITE,
            &build_s,
            &mirror,
        ],
    )
    .await?;
    for (p, c) in golden_files() {
        let f = build.join(p);
        if let Some(parent) = f.parent() {
            fs::create_dir_all(parent).map_err(|e| LabError::io("create golden dir", e))?;
        }
        fs::write(&f, c).map_err(|e| LabError::io(format!("write {p}"), e))?;
    }
    cmd::run("chmod", ["755", &format!("{build_s}/usr/sbin/policy-rc.d")])?;
    let _ = fs::remove_file(build.join("etc/mtab"));
    std::os::unix::fs::symlink("../proc/self/mounts", build.join("etc/mtab"))
        .map_err(|e| LabError::io("link /etc/mtab", e))?;
    // The build-time sources: every configured mirror, plus the base channel as a file repo.
    let mut list = String::new();
    for s in &sources {
        for suite in &s.suites {
            list.push_str(&format!(
                "deb {} {} {}\n",
                s.uri,
                suite,
                s.components.join(" ")
            ));
        }
    }
    fs::write(build.join("srv/spm-sources.list"), list)
        .map_err(|e| LabError::io("write build sources", e))?;
    let base = build.join("srv/spm-base");
    fs::create_dir_all(&base).map_err(|e| LabError::io("create srv/spm-base", e))?;
    let mut names = Vec::new();
    for p in packages::SYNTHETIC {
        packages::build(p, packages::BASE_VERSION, &base)?;
        names.push(format!("{}={}", p.name, packages::BASE_VERSION));
    }
    let real_base = cache.join("real").join("base");
    for (n, old, _) in &pair.packages {
        names.push(format!("{n}={old}"));
    }
    if real_base.is_dir() {
        for e in fs::read_dir(&real_base).map_err(|e| LabError::io("read real cache", e))? {
            let e = e.map_err(|e| LabError::io("read real cache", e))?;
            fs::copy(e.path(), base.join(e.file_name()))
                .map_err(|e| LabError::io("copy real package", e))?;
        }
    }
    super::repo::index(&base)?;
    cmd::run("chmod", ["-R", "a+rX", &base.to_string_lossy()])?;
    let port = repo_port.to_string();
    let out = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "sh",
            "-c",
            ENTER,
            &build_s,
            CHROOT_SCRIPT,
        ])
        .env("SPM_BASE_PKGS", names.join(" "))
        .env("SPM_REPO_IP", repo_ip)
        .env("SPM_REPO_PORT", &port)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LabError::io("start image build chroot", e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: "golden image chroot step".to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                cmd::tail(&String::from_utf8_lossy(&out.stderr), 2000)
            ),
        });
    }
    let _ = fs::remove_file(build.join("usr/sbin/policy-rc.d"));
    let golden = top.join("golden").to_string_lossy().into_owned();
    cmd::run_async(
        "btrfs",
        &["-q", "subvolume", "snapshot", "-r", &build_s, &golden],
    )
    .await?;
    cmd::run_async("btrfs", &["-q", "subvolume", "delete", &build_s]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deb822_sources() {
        let text = "Types: deb\n# comment\nURIs: http://m.example/debian\nSuites: bookworm \
                    bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: http://x/\n\
                    Suites: bookworm\nComponents: main\n";
        let s = parse_sources(text);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].uri, "http://m.example/debian");
        assert_eq!(s[0].suites, vec!["bookworm", "bookworm-updates"]);
    }

    #[test]
    fn key_depends_on_repo_address() {
        assert_ne!(cache_key("10.0.0.1", 80), cache_key("10.0.0.2", 80));
        assert_eq!(cache_key("10.0.0.1", 80), cache_key("10.0.0.1", 80));
    }
}

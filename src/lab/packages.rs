//! Synthetic test packages, built with `dpkg-deb` from the source text below at run time.
//!
//! Every package exists in a base version (`1.0`, installed in the golden image) and an
//! update (`1.1`, in the `updates` channel). Each version stamps its files with its own
//! modification time, because snapper's undo compares mtimes before contents.

use std::fs;
use std::path::{Path, PathBuf};

use super::{LabError, cmd};

/// The base version of every synthetic package.
pub const BASE_VERSION: &str = "1.0";
/// The update version of every synthetic package.
pub const UPDATE_VERSION: &str = "1.1";

/// What a synthetic package's update does to a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Upgrades cleanly.
    Ok,
    /// The update asks for a reboot (`/var/run/reboot-required`).
    Reboot,
    /// The update's service fails to start.
    BreaksService,
    /// The update's postinst exits 1.
    PostinstFails,
    /// Two packages pinned to each other's exact version: up- and downgrade together.
    DependencyPair,
}

/// One synthetic package name and the scenario it plays.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    /// Debian package name.
    pub name: &'static str,
    /// What its update does.
    pub scenario: Scenario,
    /// One-line description used in the control file and generated errata.
    pub summary: &'static str,
}

/// Every synthetic package, in the order errata are generated.
pub const SYNTHETIC: &[Synthetic] = &[
    Synthetic {
        name: "spm-demo-ok",
        scenario: Scenario::Ok,
        summary: "upgrades cleanly",
    },
    Synthetic {
        name: "spm-demo-reboot",
        scenario: Scenario::Reboot,
        summary: "update requires a reboot",
    },
    Synthetic {
        name: "spm-demo-svc",
        scenario: Scenario::BreaksService,
        summary: "update breaks the spm-demo-svc service",
    },
    Synthetic {
        name: "spm-demo-postinst",
        scenario: Scenario::PostinstFails,
        summary: "update's postinst fails",
    },
    Synthetic {
        name: "spm-demo-lib",
        scenario: Scenario::DependencyPair,
        summary: "library that spm-demo-app pins exactly",
    },
    Synthetic {
        name: "spm-demo-app",
        scenario: Scenario::DependencyPair,
        summary: "application pinned to its spm-demo-lib version",
    },
];

/// The mtime stamped on every file of a version (distinct per version).
fn epoch(version: &str) -> u64 {
    if version == BASE_VERSION {
        1_700_000_000
    } else {
        1_700_086_400
    }
}

/// The complete source text of one package version: control fields, files, scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Extra control fields (`Depends: …`).
    pub extra_control: String,
    /// Files: path below `/`, mode, contents.
    pub files: Vec<(String, u32, String)>,
    /// Maintainer scripts: name (`postinst`, `prerm`), contents.
    pub scripts: Vec<(String, String)>,
}

impl Source {
    /// The text hashed into the golden image's cache key.
    pub fn recipe_text(&self) -> String {
        let mut s = format!("{} {}\n{}\n", self.name, self.version, self.extra_control);
        for (p, m, c) in &self.files {
            s.push_str(&format!("file {p} {m:o}\n{c}\n"));
        }
        for (n, c) in &self.scripts {
            s.push_str(&format!("script {n}\n{c}\n"));
        }
        s
    }
}

const SVC_UNIT: &str = "[Unit]\nDescription=spm demo service\n\n[Service]\nType=simple\n\
ExecStartPre=/usr/sbin/spm-demo-svcd --check-config\nExecStart=/usr/sbin/spm-demo-svcd\n\n\
[Install]\nWantedBy=multi-user.target\n";

const SVC_POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    systemctl enable spm-demo-svc.service >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemctl restart spm-demo-svc.service || echo "spm-demo-svc: service failed to start" >&2
    fi
fi
exit 0
"#;

const SVC_PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop spm-demo-svc.service || true
fi
exit 0
"#;

/// The source of `name` at `version` (base or update).
pub fn source(pkg: &Synthetic, version: &str) -> Source {
    let update = version != BASE_VERSION;
    let marker = format!("/usr/share/{}/version", pkg.name);
    let mut files = vec![(marker, 0o644, format!("{} {version}\n", pkg.name))];
    let mut scripts = Vec::new();
    let mut extra_control = String::new();
    match pkg.scenario {
        Scenario::Ok => {}
        Scenario::Reboot => {
            if update {
                scripts.push((
                    "postinst".to_string(),
                    format!(
                        "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n    \
                         touch /var/run/reboot-required\n    \
                         echo {} >> /var/run/reboot-required.pkgs\nfi\nexit 0\n",
                        pkg.name
                    ),
                ));
            }
        }
        Scenario::BreaksService => {
            let daemon = if update {
                "#!/bin/sh\nif [ \"$1\" = --check-config ]; then\n    \
                 echo 'spm-demo-svc 1.1: invalid configuration' >&2\n    exit 1\nfi\nexit 1\n"
                    .to_string()
            } else {
                "#!/bin/sh\n[ \"$1\" = --check-config ] && exit 0\n\
                 while :; do date +%s > /run/spm-demo-svc.heartbeat; sleep 5; done\n"
                    .to_string()
            };
            files.push(("/usr/sbin/spm-demo-svcd".to_string(), 0o755, daemon));
            files.push((
                "/lib/systemd/system/spm-demo-svc.service".to_string(),
                0o644,
                SVC_UNIT.to_string(),
            ));
            scripts.push(("postinst".to_string(), SVC_POSTINST.to_string()));
            scripts.push(("prerm".to_string(), SVC_PRERM.to_string()));
        }
        Scenario::PostinstFails => {
            if update {
                scripts.push((
                    "postinst".to_string(),
                    "#!/bin/sh\necho 'spm-demo-postinst 1.1: configuration failed' >&2\nexit 1\n"
                        .to_string(),
                ));
            }
        }
        Scenario::DependencyPair => {
            if pkg.name == "spm-demo-app" {
                extra_control = format!("Depends: spm-demo-lib (= {version})\n");
            }
        }
    }
    Source {
        name: pkg.name.to_string(),
        version: version.to_string(),
        extra_control,
        files,
        scripts,
    }
}

/// Build one package version into `out_dir`; returns the `.deb` path.
pub fn build(pkg: &Synthetic, version: &str, out_dir: &Path) -> Result<PathBuf, LabError> {
    let src = source(pkg, version);
    let work = TempDir::new()?;
    let root = work.0.join("root");
    let debian = root.join("DEBIAN");
    fs::create_dir_all(&debian).map_err(|e| LabError::io("create DEBIAN dir", e))?;
    let control = format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: spm tests <spm@localhost>\n\
         Section: misc\nPriority: optional\n{}Description: spm lab test package ({})\n",
        src.name, src.version, src.extra_control, pkg.summary
    );
    write(&debian.join("control"), &control, 0o644)?;
    for (path, mode, content) in &src.files {
        let p = root.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| LabError::io("create package dir", e))?;
        }
        write(&p, content, *mode)?;
    }
    for (name, content) in &src.scripts {
        write(&debian.join(name), content, 0o755)?;
    }
    let stamp = format!("@{}", epoch(version));
    let root_s = root.to_string_lossy().into_owned();
    cmd::run(
        "find",
        [
            root_s.as_str(),
            "-exec",
            "touch",
            "-h",
            "-d",
            stamp.as_str(),
            "{}",
            "+",
        ],
    )?;
    fs::create_dir_all(out_dir).map_err(|e| LabError::io("create repo channel dir", e))?;
    let deb = out_dir.join(format!("{}_{}_all.deb", src.name, src.version));
    let deb_s = deb.to_string_lossy().into_owned();
    cmd::run(
        "dpkg-deb",
        [
            "--root-owner-group",
            "-Zgzip",
            "-b",
            root_s.as_str(),
            deb_s.as_str(),
        ],
    )?;
    Ok(deb)
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, LabError> {
        let p = std::env::temp_dir().join(format!("spm-lab-pkg-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&p).map_err(|e| LabError::io("create package build directory", e))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, content).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io(format!("chmod {}", path.display()), e))
}

/// All synthetic sources, concatenated: part of the golden image's cache key.
pub fn recipe_text() -> String {
    let mut s = String::new();
    for p in SYNTHETIC {
        s.push_str(&source(p, BASE_VERSION).recipe_text());
        s.push_str(&source(p, UPDATE_VERSION).recipe_text());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_have_distinct_mtimes() {
        assert_ne!(epoch(BASE_VERSION), epoch(UPDATE_VERSION));
    }

    #[test]
    fn app_pins_its_lib_version() {
        let app = SYNTHETIC.iter().find(|p| p.name == "spm-demo-app").copied();
        let Some(app) = app else {
            panic!("spm-demo-app missing from SYNTHETIC");
        };
        assert!(
            source(&app, UPDATE_VERSION)
                .extra_control
                .contains("spm-demo-lib (= 1.1)")
        );
    }

    #[test]
    fn only_the_update_breaks_the_service() {
        let svc = SYNTHETIC[2];
        let base = source(&svc, BASE_VERSION);
        let upd = source(&svc, UPDATE_VERSION);
        assert_ne!(base.files, upd.files);
        assert!(upd.files.iter().any(|(_, _, c)| c.contains("exit 1")));
    }
}

//! The immutable set of scripts a run uses: every file under `phases/`, `policies/` and
//! `scripts/` (except the generated `scripts/types/`), with its kind, hash and whether it
//! loaded. Held in an `ArcSwap` by the reloader; a run keeps the `Arc` it started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::contracts::{Contracts, Diagnostic};
use super::header::{Header, ScriptKind};
use super::limits::Limits;
use super::loader;
use super::services::Services;
use super::vm::{self, Deadline, LibFile, LibMap};

/// Directories scanned, relative to the root.
pub const WATCHED_DIRS: &[&str] = &["phases", "policies", "scripts"];

/// Subdirectories skipped (generated files).
const SKIPPED: &[&str] = &["scripts/types"];

/// Time the whole set may take to load during validation.
pub const LOAD_BUDGET: Duration = Duration::from_secs(10);

/// One script file.
#[derive(Debug, Clone)]
pub struct ScriptFile {
    /// Path relative to the root, `/`-separated (also the chunk name without `@`).
    pub path: String,
    /// Parsed header, when it parsed.
    pub header: Option<Header>,
    /// Source text.
    pub content: Arc<str>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Whether the file loaded and passed its contract.
    pub compiled_ok: bool,
}

impl ScriptFile {
    /// The kind from the header, if it parsed.
    pub fn kind(&self) -> Option<ScriptKind> {
        self.header.as_ref().map(|h| h.kind)
    }
}

/// An immutable, validated set of scripts.
#[derive(Debug, Clone)]
pub struct ScriptSet {
    /// Bumped on every successful reload that changed something.
    pub generation: u64,
    /// The script root (contains `phases/`, `policies/`, `scripts/`).
    pub root: PathBuf,
    /// Files by relative path.
    pub files: BTreeMap<String, ScriptFile>,
    /// Library modules for `require`.
    pub libs: LibMap,
    /// When this set was loaded.
    pub loaded_at: SystemTime,
}

/// The outcome of loading a directory: the set (with per-file `compiled_ok`) and every
/// finding.
#[derive(Debug)]
pub struct LoadReport {
    /// The set as loaded.
    pub set: ScriptSet,
    /// Errors and warnings, in path order.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadReport {
    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.warning)
    }

    /// Whether every file loaded.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// Hex SHA-256 of `content`.
pub fn sha256_hex(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// Relative `/`-separated path of `p` under `root`.
pub fn rel_path(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `.lua` file under the watched directories of `root`, with its relative path.
pub fn scan(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for dir in WATCHED_DIRS {
        let d = root.join(dir);
        if d.is_dir() {
            walk(root, &d, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Every `.lua` file under `dir` (recursively; skips generated and hidden directories).
pub fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let rel = rel_path(root, &p);
        let ft = e.file_type()?;
        if ft.is_dir() {
            if !SKIPPED.contains(&rel.as_str()) {
                walk(root, &p, out)?;
            }
        } else if name.ends_with(".lua") {
            out.push((rel, p));
        }
    }
    Ok(())
}

/// The kind a file must have because of where it lives, if any.
pub fn expected_kind(path: &str) -> Option<ScriptKind> {
    if path.starts_with("phases/") {
        Some(ScriptKind::Phase)
    } else if path.starts_with("policies/") {
        Some(ScriptKind::Policy)
    } else if path.starts_with("scripts/lib/") {
        Some(ScriptKind::Lib)
    } else if path.starts_with("scripts/rollback/") {
        Some(ScriptKind::Rollback)
    } else if path.starts_with("scripts/checks/") {
        Some(ScriptKind::Check)
    } else if path == crate::host::score_hook::SCORE_SCRIPT {
        Some(ScriptKind::Score)
    } else {
        None
    }
}

/// Read the sources of `files` (relative path, absolute path).
pub fn read_sources(files: &[(String, PathBuf)]) -> (Vec<(String, Arc<str>)>, Vec<Diagnostic>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (rel, abs) in files {
        match std::fs::read(abs) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => ok.push((rel.clone(), Arc::from(s))),
                Err(_) => bad.push(Diagnostic::error(rel, None, "file is not valid UTF-8")),
            },
            Err(e) => bad.push(Diagnostic::error(rel, None, format!("cannot read: {e}"))),
        }
    }
    (ok, bad)
}

impl ScriptSet {
    /// An empty set (generation 0).
    pub fn empty(root: &Path) -> Self {
        Self {
            generation: 0,
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            libs: Arc::new(BTreeMap::new()),
            loaded_at: SystemTime::now(),
        }
    }

    /// Read every script under `root` and validate the whole set in one scratch VM.
    pub async fn load_dir(
        root: &Path,
        contracts: &Contracts,
        generation: u64,
    ) -> std::io::Result<LoadReport> {
        let files = scan(root)?;
        let (sources, mut diags) = read_sources(&files);
        let mut report = Self::load_sources(root, contracts, generation, sources).await;
        diags.append(&mut report.diagnostics);
        diags.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        report.diagnostics = diags;
        Ok(report)
    }

    /// Validate in-memory sources (relative path, content) as one set.
    pub async fn load_sources(
        root: &Path,
        contracts: &Contracts,
        generation: u64,
        sources: Vec<(String, Arc<str>)>,
    ) -> LoadReport {
        let mut libs = BTreeMap::new();
        for (path, content) in &sources {
            if let Some(name) = vm::lib_module_name(path) {
                libs.insert(
                    name,
                    LibFile {
                        path: path.clone(),
                        content: content.clone(),
                    },
                );
            }
        }
        let libs: LibMap = Arc::new(libs);
        let mut set = ScriptSet {
            generation,
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            libs: libs.clone(),
            loaded_at: SystemTime::now(),
        };
        let mut diagnostics = Vec::new();
        let limits = Limits::default();
        let vm = match vm::build(
            &Services::default(),
            libs,
            &limits,
            Deadline::after(LOAD_BUDGET),
            CancellationToken::new(),
        ) {
            Ok(vm) => Some(vm),
            Err(e) => {
                diagnostics.push(Diagnostic::error("(vm)", None, e.to_string()));
                None
            }
        };
        for (path, content) in sources {
            let header = super::header::parse(&path, &content).ok();
            let mut compiled_ok = false;
            if let Some(vm) = &vm {
                let load = loader::load(vm, contracts, &path, &content, expected_kind(&path));
                match tokio::time::timeout(vm.deadline.remaining(), load).await {
                    Ok(Ok(loaded)) => {
                        compiled_ok = true;
                        diagnostics.extend(loaded.warnings);
                    }
                    Ok(Err(mut d)) => diagnostics.append(&mut d),
                    Err(_) => diagnostics.push(Diagnostic::error(
                        &path,
                        None,
                        format!(
                            "loading the script set took longer than {}s; top-level code must not wait or loop",
                            LOAD_BUDGET.as_secs()
                        ),
                    )),
                }
            }
            set.files.insert(
                path.clone(),
                ScriptFile {
                    sha256: sha256_hex(content.as_bytes()),
                    path,
                    header,
                    content,
                    compiled_ok,
                },
            );
        }
        LoadReport { set, diagnostics }
    }

    /// A file by relative path.
    pub fn get(&self, path: &str) -> Option<&ScriptFile> {
        self.files.get(path)
    }

    /// Path → hash of every file (to tell whether a reload changed anything).
    pub fn fingerprint(&self) -> BTreeMap<&str, &str> {
        self.files
            .iter()
            .map(|(p, f)| (p.as_str(), f.sha256.as_str()))
            .collect()
    }
}

//! `spm check [paths] [--explain OS] [--json]`: compile, check headers and contracts, lint.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::Outcome;
use crate::host::contracts::Diagnostic;
use crate::host::resolve;
use crate::host::scriptset::{self, ScriptSet};

/// Arguments of `spm check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to check (default: phases/, policies/ and scripts/ under --root).
    pub paths: Vec<PathBuf>,
    /// Script root (holds phases/, policies/, scripts/).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Also show which file each phase resolves to on this OS (ubuntu, debian, rhel).
    #[arg(long, value_name = "OS")]
    pub explain: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A multi-threaded runtime for commands that drive Lua.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// What `spm check` reads: every source, the paths to report on (all when `None`), and
/// files that could not be read.
struct Collected {
    sources: Vec<(String, Arc<str>)>,
    selected: Option<BTreeSet<String>>,
    unreadable: Vec<Diagnostic>,
}

/// Sources of the whole root plus the named paths.
fn collect(root: &Path, paths: &[PathBuf]) -> anyhow::Result<Collected> {
    let mut files = scriptset::scan(root)
        .with_context(|| format!("reading scripts under {}", root.display()))?;
    let mut selected = None;
    if !paths.is_empty() {
        let mut sel = BTreeSet::new();
        for p in paths {
            let meta =
                std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
            let mut found = Vec::new();
            if meta.is_dir() {
                scriptset::walk(root, p, &mut found)
                    .with_context(|| format!("reading {}", p.display()))?;
            } else {
                found.push((scriptset::rel_path(root, p), p.clone()));
            }
            for (rel, abs) in found {
                let rel = if Path::new(&rel).is_absolute() || rel.starts_with("..") {
                    abs.display().to_string()
                } else {
                    rel
                };
                sel.insert(rel.clone());
                if !files.iter().any(|(r, _)| *r == rel) {
                    files.push((rel, abs));
                }
            }
        }
        selected = Some(sel);
    }
    let (sources, unreadable) = scriptset::read_sources(&files);
    Ok(Collected {
        sources,
        selected,
        unreadable,
    })
}

/// Run `spm check`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let rt = runtime()?;
    let Collected {
        sources,
        selected,
        unreadable: mut diags,
    } = collect(&args.root, &args.paths)?;
    let report = rt.block_on(ScriptSet::load_sources(
        &args.root,
        // Policies are checked by the rollout engine's validator (unknown keys, cron, ...).
        &crate::engine::rollout::policy::contracts(),
        1,
        sources,
    ));
    diags.extend(report.diagnostics.iter().cloned());
    if let Some(sel) = &selected {
        diags.retain(|d| sel.contains(&d.path));
    }
    diags.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    let checked: Vec<&scriptset::ScriptFile> = report
        .set
        .files
        .values()
        .filter(|f| selected.as_ref().is_none_or(|s| s.contains(&f.path)))
        .collect();
    let explain = match &args.explain {
        Some(os) => {
            Some(resolve::explain(&report.set, os).map_err(|e| anyhow::anyhow!(e.message))?)
        }
        None => None,
    };
    let errors: Vec<&Diagnostic> = diags.iter().filter(|d| !d.warning).collect();
    let warnings: Vec<&Diagnostic> = diags.iter().filter(|d| d.warning).collect();
    if args.json {
        let v = serde_json::json!({
            "ok": errors.is_empty(),
            "files": checked.len(),
            "errors": errors,
            "warnings": warnings,
            "explain": explain,
        });
        println!("{v}");
    } else {
        for d in &diags {
            println!("{d}");
        }
        if let (Some(os), Some(ex)) = (&args.explain, &explain) {
            println!("phase resolution on {os}:");
            for r in ex {
                match &r.path {
                    Some(p) => println!(
                        "  {:<14} {p}{}",
                        r.phase,
                        if r.os_override { "  (override)" } else { "" }
                    ),
                    None => println!("  {:<14} (none)", r.phase),
                }
            }
        }
    }
    if !errors.is_empty() {
        let files: BTreeSet<&str> = errors.iter().map(|d| d.path.as_str()).collect();
        anyhow::bail!("{} error(s) in {} file(s)", errors.len(), files.len());
    }
    if !args.json {
        let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
        for f in &checked {
            *by_kind
                .entry(f.kind().map(|k| k.as_str()).unwrap_or("?"))
                .or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "ok: {} script(s) checked ({}), {} warning(s)",
            checked.len(),
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            },
            warnings.len()
        );
    }
    Ok(Outcome::Ok)
}

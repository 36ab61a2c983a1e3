//! `spm spec [dir]`: run script specs (kind=spec files) against the scripts under --root.

use std::path::PathBuf;
use std::sync::Arc;

use super::Outcome;
use super::check::runtime;
use crate::host::contracts::Contracts;
use crate::host::scriptset::ScriptSet;
use crate::host::spec;

/// Arguments of `spm spec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of spec files (default: tests/specs under --root).
    pub dir: Option<PathBuf>,
    /// Script root (holds phases/, policies/, scripts/).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `spm spec`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let rt = runtime()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| args.root.join("tests/specs"));
    let results = rt.block_on(async {
        let report = ScriptSet::load_dir(&args.root, &Contracts::default(), 1).await?;
        if !report.is_ok() {
            let errs: Vec<String> = report.errors().map(|d| d.to_string()).collect();
            anyhow::bail!(
                "scripts under {} have errors:\n{}",
                args.root.display(),
                errs.join("\n")
            );
        }
        spec::run_dir(Arc::new(report.set), &dir).await
    })?;
    let failed = results.iter().filter(|r| !r.passed).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"passed": results.len() - failed, "failed": failed, "cases": results})
        );
    } else {
        for r in &results {
            if r.passed {
                println!("PASS {} :: {}", r.spec, r.name);
            } else {
                println!("FAIL {} :: {}: {}", r.spec, r.name, r.detail);
            }
        }
        println!("{} passed, {} failed", results.len() - failed, failed);
    }
    if results.is_empty() {
        anyhow::bail!("no spec cases found under {}", dir.display());
    }
    Ok(if failed > 0 { Outcome::No } else { Outcome::Ok })
}

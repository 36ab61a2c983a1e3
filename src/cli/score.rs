//! `spm score <advisory> [--os OS] [--json]`: the Success Score of a synced advisory with
//! every penalty and bonus explained, per OS it is relevant to.

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::sync::{cli_scorer, open_store};
use super::{Globals, Outcome};
use crate::engine::score::ScoreResult;
use crate::engine::sync::score_input;
use crate::store::StoreError;
use crate::store::errata;

/// Arguments of `spm score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Advisory name, e.g. USN-7000-1.
    pub advisory: String,
    /// Only this OS (default: every OS the advisory was relevant to).
    #[arg(long)]
    pub os: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct OsScore {
    os: String,
    stale: Option<bool>,
    times_tested: i64,
    times_failed: i64,
    #[serde(flatten)]
    result: ScoreResult,
}

/// Run `spm score`.
pub fn run(args: ScoreArgs, globals: &Globals) -> anyhow::Result<Outcome> {
    let config = globals.load_config()?;
    if let Some(os) = &args.os
        && !["ubuntu", "debian", "rhel", "unknown"].contains(&os.as_str())
    {
        anyhow::bail!("unknown OS {os:?}: use ubuntu, debian or rhel");
    }
    let store = open_store(&config)?;
    let scorer = cli_scorer(&config)?;
    let adv = args.advisory.trim().to_string();
    let (record, packages, relevance) = store
        .read_blocking(|c| {
            let r = errata::get(c, &adv)?;
            Ok((r, errata::packages(c, &adv)?, errata::relevance(c, &adv)?))
        })
        .map_err(|e| match e {
            StoreError::NotFound { .. } => anyhow::anyhow!(
                "advisory {adv} is not in the synced errata (run `spm sync` first?)"
            ),
            e => anyhow::Error::new(e),
        })?;
    let oses: Vec<(String, Option<bool>)> = match &args.os {
        Some(os) => vec![(
            os.clone(),
            relevance.iter().find(|r| &r.os == os).map(|r| r.stale),
        )],
        None if relevance.is_empty() => vec![("unknown".into(), None)],
        None => relevance
            .iter()
            .map(|r| (r.os.clone(), Some(r.stale)))
            .collect(),
    };
    let known = if packages.is_empty() && !record.details_fetched {
        None
    } else {
        Some(packages.as_slice())
    };
    let mut out = Vec::new();
    for (os, stale) in oses {
        let (tested, failed) = store
            .read_blocking(|c| errata::history(c, &adv, &os))
            .context("reading test history")?;
        let result = scorer.score(&score_input(&record, known, tested, failed));
        out.push(OsScore {
            os,
            stale,
            times_tested: tested,
            times_failed: failed,
            result,
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "advisory": record.advisory,
                "advisory_type": record.advisory_type,
                "severity": record.severity,
                "synopsis": record.synopsis,
                "scores": out,
            }))?
        );
        return Ok(Outcome::Ok);
    }
    println!(
        "{} ({} advisory, severity {}): {}",
        record.advisory, record.advisory_type, record.severity, record.synopsis
    );
    for s in &out {
        let rel = match s.stale {
            Some(true) => " (no longer relevant)",
            Some(false) => "",
            None => " (not relevant to this OS)",
        };
        println!(
            "\n{}{rel}: score {}/100{}",
            s.os,
            s.result.score,
            if s.result.low_confidence {
                "  LOW CONFIDENCE: package data missing or incomplete"
            } else {
                ""
            }
        );
        println!("  {:>4}  start", 100);
        for t in &s.result.breakdown {
            println!("  {:>+4}  {:<16} {}", t.points, t.factor, t.reason);
        }
        if s.result.unclamped != s.result.score {
            println!("        (clamped from {} to 0..100)", s.result.unclamped);
        }
        let f = &s.result.factors;
        println!(
            "  packages: {}, total {} KiB; tests so far: {} ({} failed)",
            f.package_count, f.total_size_kb, s.times_tested, s.times_failed
        );
    }
    Ok(Outcome::Ok)
}

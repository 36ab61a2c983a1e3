//! Per-OS resolution: `phases/<os>/<phase>.lua` overrides `phases/<phase>.lua`.

use super::errors::ScriptError;
use super::scriptset::{ScriptFile, ScriptSet};

/// Operating systems with their own phase directories.
pub const OSES: &[&str] = &["ubuntu", "debian", "rhel"];

/// Test phases in the order the engine runs them (`post_rollback` only after a rollback).
pub const PHASES: &[&str] = &[
    "pre_check",
    "snapshot",
    "patch",
    "reboot",
    "validate",
    "services",
    "post_rollback",
];

/// Where a phase resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolution {
    /// Phase name.
    pub phase: String,
    /// The file used, if any.
    pub path: Option<String>,
    /// Whether it is an OS-specific override.
    pub os_override: bool,
}

fn check_os(os: &str) -> Result<(), ScriptError> {
    if OSES.contains(&os) {
        Ok(())
    } else {
        Err(ScriptError::config(format!(
            "unknown OS `{os}` (expected one of {})",
            OSES.join(", ")
        )))
    }
}

/// The file that implements `phase` on `os`.
pub fn resolve_phase<'a>(
    set: &'a ScriptSet,
    os: &str,
    phase: &str,
) -> Result<&'a ScriptFile, ScriptError> {
    check_os(os)?;
    if !PHASES.contains(&phase) {
        return Err(ScriptError::config(format!(
            "unknown phase `{phase}` (expected one of {})",
            PHASES.join(", ")
        )));
    }
    let specific = format!("phases/{os}/{phase}.lua");
    let generic = format!("phases/{phase}.lua");
    set.get(&specific)
        .or_else(|| set.get(&generic))
        .ok_or_else(|| {
            ScriptError::config(format!(
                "no script for phase `{phase}` on {os}: neither {specific} nor {generic} exists"
            ))
        })
}

/// How every phase resolves on `os` (for `spm check --explain`).
pub fn explain(set: &ScriptSet, os: &str) -> Result<Vec<Resolution>, ScriptError> {
    check_os(os)?;
    Ok(PHASES
        .iter()
        .map(|phase| {
            let specific = format!("phases/{os}/{phase}.lua");
            let generic = format!("phases/{phase}.lua");
            if set.get(&specific).is_some() {
                Resolution {
                    phase: phase.to_string(),
                    path: Some(specific),
                    os_override: true,
                }
            } else {
                Resolution {
                    phase: phase.to_string(),
                    path: set.get(&generic).map(|_| generic),
                    os_override: false,
                }
            }
        })
        .collect())
}

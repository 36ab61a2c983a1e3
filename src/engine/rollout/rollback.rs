//! Selective rollback of a run's hosts with the package strategy through UYUNI.
//!
//! Before applying errata, a run whose policy rolls back automatically records each host's
//! installed versions of the errata's packages ([`capture`], one script action per batch).
//! Rolling a host back reinstalls exactly those versions (one script action per host,
//! `apt-get install --allow-downgrades` or `dnf downgrade`, every value shell-quoted), then
//! verifies that UYUNI reports the host's errata as relevant again. Each host gets a
//! `rollbacks` row and moves `ok|failed → rolling_back → rolled_back|rollback_failed`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use super::execute::RunError;
use crate::engine::state::RunHostStatus as H;
use crate::services::uyuni::UyuniClient;
use crate::store::audit::{self, AuditEntry};
use crate::store::{Store, runs};

/// Quote `s` for a POSIX shell (single quotes; embedded quotes closed and escaped).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A package name as accepted in a script (refuses anything a package manager would not
/// accept as a name, so no surprise reaches the shell even before quoting).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 200
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._:~".contains(c))
}

/// Record installed versions of `names` on `sids` with one script action. Returns
/// `name=version` items per system that answered (missing packages are left out).
pub async fn capture(
    client: &UyuniClient,
    sids: &[i64],
    os_family: &str,
    names: &[String],
) -> BTreeMap<i64, Result<Vec<String>, String>> {
    let names: Vec<&String> = names.iter().filter(|n| valid_name(n)).collect();
    let quoted: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
    let script = if os_family == "rhel" {
        format!(
            "rpm -q --qf '%{{NAME}}=%{{EPOCHNUM}}:%{{VERSION}}-%{{RELEASE}}\\n' {} || true",
            quoted.join(" ")
        )
    } else {
        format!(
            "dpkg-query -W -f='${{Package}}=${{Version}}\\n' {} || true",
            quoted.join(" ")
        )
    };
    let mut out = BTreeMap::new();
    match client
        .run_script(sids, &script, Duration::from_secs(120))
        .await
    {
        Ok(run) => {
            for sid in sids {
                let r = match run.systems.get(sid) {
                    Some(o) if o.succeeded() => Ok(o
                        .result
                        .as_ref()
                        .map(|r| {
                            r.output
                                .lines()
                                .map(str::trim)
                                .filter(|l| {
                                    l.split_once('=').is_some_and(|(n, v)| {
                                        names.iter().any(|x| x.as_str() == n) && !v.is_empty()
                                    })
                                })
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default()),
                    Some(o) => Err(format!(
                        "recording pre-patch versions failed: {}",
                        o.result
                            .as_ref()
                            .map(|r| r.output.trim().to_string())
                            .unwrap_or_else(|| "no result".into())
                    )),
                    None => Err("recording pre-patch versions: no result".into()),
                };
                out.insert(*sid, r);
            }
        }
        Err(e) => {
            for sid in sids {
                out.insert(
                    *sid,
                    Err(format!("recording pre-patch versions failed: {e}")),
                );
            }
        }
    }
    out
}

/// Which hosts to roll back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every failed host of the run.
    Failed,
    /// These profile names (each must be `ok` or `failed`).
    Hosts(Vec<String>),
}

/// What happened to one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackOutcome {
    /// UYUNI system id.
    pub system_id: i64,
    /// Profile name.
    pub name: String,
    /// Final host status.
    pub status: H,
    /// Why it failed.
    pub error: Option<String>,
}

fn restore_script(os_family: &str, pkgs: &[String]) -> Option<String> {
    let items: Vec<(&str, &str)> = pkgs
        .iter()
        .filter_map(|p| p.split_once('='))
        .filter(|(n, v)| valid_name(n) && valid_name(v))
        .collect();
    if items.is_empty() {
        return None;
    }
    Some(if os_family == "rhel" {
        let specs: Vec<String> = items
            .iter()
            .map(|(n, v)| {
                // rpm -q gave EPOCH:VERSION-RELEASE; dnf wants NAME-[EPOCH:]VERSION-RELEASE.
                let v = v.strip_prefix("0:").unwrap_or(v);
                shell_quote(&format!("{n}-{v}"))
            })
            .collect();
        format!(
            "dnf -y downgrade {0} || dnf -y install {0}",
            specs.join(" ")
        )
    } else {
        let specs: Vec<String> = items
            .iter()
            .map(|(n, v)| shell_quote(&format!("{n}={v}")))
            .collect();
        format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades {}",
            specs.join(" ")
        )
    })
}

/// Roll back the selected hosts of run `run_id` (OS family `os_family`). Each host is
/// independent: one that cannot be rolled back (no recorded versions, script failure,
/// still patched afterwards) ends `rollback_failed` without stopping the others.
pub async fn rollback(
    client: &UyuniClient,
    store: &Store,
    run_id: i64,
    os_family: &str,
    selection: &Selection,
    actor: &str,
    reason: &str,
) -> Result<Vec<RollbackOutcome>, RunError> {
    if reason.trim().is_empty() {
        return Err(RunError::Invalid("a rollback needs a reason".into()));
    }
    let hosts = store.read(move |c| runs::run_hosts(c, run_id)).await?;
    let chosen: Vec<runs::RunHostRecord> = match selection {
        Selection::Failed => hosts
            .into_iter()
            .filter(|h| h.status == H::Failed)
            .collect(),
        Selection::Hosts(names) => {
            let mut v = Vec::new();
            for n in names {
                let h = hosts.iter().find(|h| &h.system_name == n).ok_or_else(|| {
                    RunError::Invalid(format!("run {run_id} has no host named {n:?}"))
                })?;
                if !matches!(h.status, H::Ok | H::Failed) {
                    return Err(RunError::Invalid(format!(
                        "host {n} of run {run_id} is {}; only ok or failed hosts can be rolled back",
                        h.status
                    )));
                }
                v.push(h.clone());
            }
            v
        }
    };
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    // rolling_back + a rollbacks row + audit, in one transaction.
    let (actor_s, reason_s) = (actor.to_string(), reason.to_string());
    let list: Vec<(i64, H)> = chosen.iter().map(|h| (h.system_id, h.status)).collect();
    let ids = store
        .write(move |tx| {
            let mut ids = BTreeMap::new();
            for (sid, st) in &list {
                runs::transition_hosts(tx, run_id, &[*sid], *st, H::RollingBack, &runs::HostUpdate::default())?;
                ids.insert(*sid, runs::insert_rollback(tx, run_id, *sid, "package", &reason_s, &actor_s)?);
            }
            audit::append(
                tx,
                &AuditEntry {
                    actor: actor_s.clone(),
                    source_addr: None,
                    action: "run.rollback".into(),
                    object_type: "patch_run".into(),
                    object_id: Some(run_id.to_string()),
                    reason: Some(reason_s.clone()),
                    details: serde_json::json!({ "systems": list.iter().map(|x| x.0).collect::<Vec<_>>(), "strategy": "package" }),
                },
            )?;
            Ok(ids)
        })
        .await?;
    let results = join_all(chosen.iter().map(|h| async move {
        let sid = h.system_id;
        let pkgs = store
            .read(move |c| runs::pre_packages(c, run_id, sid))
            .await
            .unwrap_or_default();
        let Some(script) = restore_script(os_family, &pkgs) else {
            return (h, Err("no pre-patch package versions were recorded for this host (set rollback_on_failure = \"auto\" in the policy to record them)".to_string()));
        };
        match client.run_script(&[sid], &script, Duration::from_secs(600)).await {
            Ok(run) => match run.systems.get(&sid) {
                Some(o) if o.succeeded() => (h, Ok(pkgs)),
                Some(o) => (
                    h,
                    Err(format!(
                        "restoring packages failed: {}",
                        o.result
                            .as_ref()
                            .map(|r| format!("exit {}: {}", r.return_code, r.output.trim()))
                            .unwrap_or_else(|| "no result".into())
                    )),
                ),
                None => (h, Err("restoring packages: the system never reported".into())),
            },
            Err(e) => (h, Err(format!("restoring packages failed: {e}"))),
        }
    }))
    .await;
    // Verify: the host's errata are relevant again (the old versions are back).
    let restored: Vec<i64> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(h, _)| h.system_id)
        .collect();
    let mut relevant: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut verify_error = None;
    if !restored.is_empty() {
        match client.relevant_errata_many(&restored).await {
            Ok(list) => {
                for se in list {
                    relevant.insert(
                        se.system_id,
                        se.errata.into_iter().map(|e| e.advisory_name).collect(),
                    );
                }
            }
            Err(e) => verify_error = Some(format!("re-reading relevance failed: {e}")),
        }
    }
    let mut outcomes = Vec::new();
    for (h, r) in results {
        let verdict = match (r, &verify_error) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(e.clone()),
            (Ok(pkgs), None) => {
                let rel = relevant.get(&h.system_id).cloned().unwrap_or_default();
                let missing: Vec<&String> = h.errata.iter().filter(|a| !rel.contains(a)).collect();
                if missing.is_empty() {
                    Ok(pkgs)
                } else {
                    Err(format!(
                        "still patched after the rollback: {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        };
        let (sid, rid) = (
            h.system_id,
            ids.get(&h.system_id).copied().unwrap_or_default(),
        );
        let (to, err, details) = match &verdict {
            Ok(p) => (H::RolledBack, None, serde_json::json!({ "restored": p })),
            Err(e) => (
                H::RollbackFailed,
                Some(e.clone()),
                serde_json::json!({ "error": e }),
            ),
        };
        let err2 = err.clone();
        store
            .write(move |tx| {
                runs::transition_hosts(
                    tx,
                    run_id,
                    &[sid],
                    H::RollingBack,
                    to,
                    &runs::HostUpdate {
                        error: err2,
                        ..runs::HostUpdate::default()
                    },
                )?;
                runs::finish_rollback(tx, rid, to == H::RolledBack, &details)
            })
            .await?;
        outcomes.push(RollbackOutcome {
            system_id: sid,
            name: h.system_name.clone(),
            status: to,
            error: err,
        });
    }
    let note = notification(run_id, &outcomes, actor, reason);
    // The rollback happened; a failure to record its notification is logged, not returned.
    if let Err(e) = store
        .write(move |tx| {
            let (event, severity, subject, body, data) = &note;
            runs::insert_notification(tx, event, severity, subject, body, Some(run_id), data)
        })
        .await
    {
        tracing::error!(run_id, error = %e, "cannot record the rollback_performed notification");
    }
    Ok(outcomes)
}

/// The `rollback_performed` notification of one rollback of a run's hosts: (event,
/// severity, subject, body, data); rendered by `scripts/templates/rollback_performed.*`.
fn notification(
    run_id: i64,
    outcomes: &[RollbackOutcome],
    actor: &str,
    reason: &str,
) -> (String, String, String, String, serde_json::Value) {
    let failed: Vec<&RollbackOutcome> = outcomes
        .iter()
        .filter(|o| o.status != H::RolledBack)
        .collect();
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    let status = match (failed.len(), outcomes.len()) {
        (0, _) => "verified",
        (f, n) if f == n => "failed",
        _ => "partially failed",
    };
    let severity = if failed.is_empty() {
        "warning"
    } else {
        "critical"
    };
    let subject = format!(
        "patch run {run_id}: rollback of {} host(s) {status}",
        outcomes.len()
    );
    let mut body = format!(
        "{actor} rolled back {} host(s) of patch run {run_id} by package (reason: {reason}): {status}.",
        outcomes.len()
    );
    for o in outcomes {
        body.push_str(&format!(
            "\n  - {}: {}{}",
            o.name,
            o.status,
            o.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    let data = serde_json::json!({
        "scope": "rollout",
        "system": names.join(", "),
        "hosts": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name, "status": o.status.to_string(), "error": o.error,
        })).collect::<Vec<_>>(),
        "strategy": "package",
        "reason": reason,
        "actor": actor,
        "status": status,
        "outcome": if failed.is_empty() {
            "the versions before the run are back on every selected host".to_string()
        } else {
            format!("{} host(s) could not be rolled back", failed.len())
        },
    });
    (
        "rollback_performed".into(),
        severity.into(),
        subject,
        body,
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_scripts() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(
            restore_script("ubuntu", &["openssl=3.0.13-0ubuntu3.4".into()]).unwrap(),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades 'openssl=3.0.13-0ubuntu3.4'"
        );
        assert_eq!(
            restore_script(
                "rhel",
                &[
                    "openssl=1:3.0.7-24.el9".into(),
                    "curl=0:7.76.1-29.el9".into()
                ]
            )
            .unwrap(),
            "dnf -y downgrade 'openssl-1:3.0.7-24.el9' 'curl-7.76.1-29.el9' || dnf -y install 'openssl-1:3.0.7-24.el9' 'curl-7.76.1-29.el9'"
        );
        // Anything that is not a package name or version never reaches a script.
        assert_eq!(restore_script("ubuntu", &["x=1; rm -rf /".into()]), None);
        assert_eq!(restore_script("ubuntu", &[]), None);
        assert!(!valid_name("$(reboot)"));
    }
}

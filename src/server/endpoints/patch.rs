//! Patch runs and compliance, read side plus cancel: `GET /patch/runs`, `GET
//! /patch/runs/{id}` (with hosts), `POST /patch/runs/{id}/cancel`, `GET /patch/compliance`
//! (per system, or rolled up by policy, environment or OS), `GET
//! /patch/compliance/{system_id}`, `GET /patch/advisories` (CVE → errata → systems).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::compliance;
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page, parse_id};
use crate::store::audit::{self, AuditEntry};
use crate::store::compliance as store_compliance;
use crate::store::runs;

/// Query of the run listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    limit: Option<i64>,
}

/// Patch runs, newest first.
pub async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, _) = page(q.limit, None, 50, 500)?;
    let items = state
        .store
        .read(move |c| runs::list_runs(c, limit as u32))
        .await?;
    Ok(Json(json!({ "limit": limit, "items": items })))
}

/// One run with its hosts and host counts per status.
pub async fn run_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let (run, hosts, counts) = state
        .store
        .read(move |c| {
            Ok((
                runs::get_run(c, id)?,
                runs::run_hosts(c, id)?,
                runs::host_counts(c, id)?,
            ))
        })
        .await?;
    Ok(Json(
        json!({ "run": run, "hosts": hosts, "host_counts": counts }),
    ))
}

/// Ask a run to stop (operator): in-flight hosts finish, no new host starts. 409 when the
/// run already ended.
pub async fn cancel_run(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let run = state
        .store
        .write(move |tx| {
            let run = runs::request_cancel(tx, id)?;
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "run.cancel".into(),
                    object_type: "patch_run".into(),
                    object_id: Some(id.to_string()),
                    reason: None,
                    details: json!({"policy": run.policy_id}),
                },
            )?;
            Ok(run)
        })
        .await?;
    Ok(Json(json!({ "run": run })))
}

/// Query of the compliance view.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceQuery {
    /// `policy`, `env` or `os`: roll up instead of listing systems.
    by: Option<String>,
}

/// Compliance per system, or rolled up.
pub async fn compliance_view(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ComplianceQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(by) = &q.by
        && !["policy", "env", "os"].contains(&by.as_str())
    {
        return Err(ApiError::invalid(
            "by",
            format!("unknown grouping {by:?}; expected policy, env or os"),
        ));
    }
    let records = state.store.read(store_compliance::list).await?;
    Ok(Json(match &q.by {
        Some(by) => json!({ "by": by, "groups": compliance::rollup(&records, by) }),
        None => json!({ "items": records }),
    }))
}

/// Compliance of one system.
pub async fn compliance_system(
    State(state): State<AppState>,
    Path(system_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("system_id", &system_id)?;
    let records = state.store.read(store_compliance::list).await?;
    let record = records
        .into_iter()
        .find(|r| r.system_id == id)
        .ok_or_else(|| ApiError::not_found(format!("system {id} has no compliance record")))?;
    Ok(Json(json!({ "system": record })))
}

/// Query of the advisory view.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryQuery {
    /// One CVE: its errata and the systems that still need them.
    cve: Option<String>,
    /// Without `cve`: how many CVEs to list.
    limit: Option<i64>,
}

/// CVE → errata → systems, or the CVEs known with their errata counts.
pub async fn advisories(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AdvisoryQuery>,
) -> ApiResult<Json<Value>> {
    match q.cve {
        Some(cve) => {
            let cve = cve.trim().to_uppercase();
            let ok = cve.starts_with("CVE-")
                && cve.len() <= 40
                && cve[4..].chars().all(|c| c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(ApiError::invalid(
                    "cve",
                    format!("{cve:?} is not a CVE id (CVE-YYYY-NNNN)"),
                ));
            }
            let key = cve.clone();
            let found = state
                .store
                .read(move |c| store_compliance::advisory(c, &key))
                .await?;
            let adv = found
                .ok_or_else(|| ApiError::not_found(format!("{cve} is in no synced erratum")))?;
            Ok(Json(json!({ "advisory": adv })))
        }
        None => {
            let (limit, _) = page(q.limit, None, 100, 1000)?;
            let list = state
                .store
                .read(move |c| store_compliance::list_cves(c, limit as u32))
                .await?;
            let items: Vec<Value> = list
                .into_iter()
                .map(|(cve, n)| json!({"cve": cve, "errata": n}))
                .collect();
            Ok(Json(json!({ "limit": limit, "items": items })))
        }
    }
}

/// Body of `POST /patch/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The policy's `id` (the table field, not the file name).
    policy_id: String,
    /// Only plan: answer 200 with the plan, change nothing.
    #[serde(default)]
    dry_run: bool,
}

fn run_error(e: crate::engine::rollout::execute::RunError) -> ApiError {
    use crate::engine::rollout::execute::RunError;
    match e {
        RunError::Invalid(m) => {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
        }
        RunError::Uyuni(e) => ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "uyuni",
            format!("UYUNI: {e}"),
        ),
        RunError::Store(e) => e.into(),
    }
}

/// Find and load the policy whose `id` is `policy_id` under `policies/`.
async fn find_policy(
    root: &std::path::Path,
    policy_id: &str,
) -> ApiResult<crate::engine::rollout::policy::LoadedPolicy> {
    use crate::engine::rollout::policy::load_policy;
    let dir = root.join("policies");
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "no policy with id {policy_id:?}"
            )));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(ApiError::internal)? {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("lua") {
            continue;
        }
        // Files that do not load are reported by /api/v1/scripts; skip them here.
        if let Ok(loaded) = load_policy(&path).await
            && loaded.policy.id == policy_id
        {
            return Ok(loaded);
        }
    }
    Err(ApiError::not_found(format!(
        "no policy with id {policy_id:?} under policies/"
    )))
}

/// Start a patch run of a policy (operator): 202 with the run once it is recorded, or,
/// with `dry_run`, 200 with the plan.
pub async fn start_run(
    State(state): State<AppState>,
    who: Principal,
    crate::server::error::ApiJson(body): crate::server::error::ApiJson<StartBody>,
) -> ApiResult<axum::response::Response> {
    use crate::engine::rollout::execute::{self, Progress, RunOptions};
    use axum::response::IntoResponse as _;
    let features = state.features();
    let (Some(client), Some(host)) = (features.uyuni.clone(), features.scripts.clone()) else {
        return Err(ApiError::not_configured(
            "patch runs need the UYUNI client and the script host, which this server does not run",
        ));
    };
    let id = body.policy_id.trim().to_owned();
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::invalid(
            "policy_id",
            "policy_id must be 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    let loaded = find_policy(host.root(), &id).await?;
    let plan = execute::build_plan(&client, &state.store, &loaded)
        .await
        .map_err(run_error)?;
    if body.dry_run {
        return Ok(Json(json!({ "dry_run": true, "plan": plan })).into_response());
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
    let slot = std::sync::Mutex::new(Some(tx));
    let mut opts = RunOptions::manual(&who.name);
    opts.trigger = "api".into();
    opts.source_addr = who.source_addr.clone();
    opts.ansible = features.ansible.clone();
    opts.progress = Some(std::sync::Arc::new(move |p: &Progress| {
        if let Ok(mut s) = slot.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(p.run_id);
        }
    }));
    let store = state.store.clone();
    let task = tokio::spawn(async move {
        let r = execute::execute(&client, &store, &loaded, plan, &opts).await;
        match &r {
            Ok(s) => tracing::info!(run_id = s.run_id, status = %s.status, "API patch run ended"),
            Err(e) => tracing::error!(error = %e, "API patch run failed"),
        }
        r
    });
    let run_id = match rx.await {
        Ok(id) => id,
        Err(_) => match task.await {
            Ok(Ok(summary)) => summary.run_id,
            Ok(Err(e)) => return Err(run_error(e)),
            Err(e) => return Err(ApiError::internal(e)),
        },
    };
    let run = state.store.read(move |c| runs::get_run(c, run_id)).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(json!({ "run": run })),
    )
        .into_response())
}

/// Body of `POST /patch/runs/{id}/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Hosts of the run to roll back (UYUNI system ids); absent: every failed host.
    system_ids: Option<Vec<i64>>,
    /// Why (required, recorded).
    reason: String,
}

/// Roll back hosts of a run (operator) and report per host. Runs inside the request.
pub async fn rollback_run(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    crate::server::error::ApiJson(body): crate::server::error::ApiJson<RollbackBody>,
) -> ApiResult<Json<Value>> {
    use crate::engine::rollout::rollback::{self, Selection};
    let id = parse_id("id", &id)?;
    let client = state.features().uyuni.clone().ok_or_else(|| {
        ApiError::not_configured("rollbacks need the UYUNI client, which this server does not run")
    })?;
    if body.reason.trim().is_empty() || body.reason.chars().count() > 2000 {
        return Err(ApiError::invalid(
            "reason",
            "reason must be 1 to 2000 characters",
        ));
    }
    let (run, hosts) = state
        .store
        .read(move |c| Ok((runs::get_run(c, id)?, runs::run_hosts(c, id)?)))
        .await?;
    let selection = match body.system_ids {
        None => Selection::Failed,
        Some(ids) if ids.is_empty() || ids.len() > 1000 => {
            return Err(ApiError::invalid(
                "system_ids",
                "system_ids must hold 1 to 1000 ids (or be absent for every failed host)",
            ));
        }
        Some(ids) => {
            let mut names = Vec::new();
            for sid in ids {
                let host = hosts.iter().find(|h| h.system_id == sid).ok_or_else(|| {
                    ApiError::invalid(
                        "system_ids",
                        format!("system {sid} is not a host of patch run {id}"),
                    )
                })?;
                names.push(host.system_name.clone());
            }
            Selection::Hosts(names)
        }
    };
    let os = run
        .plan
        .get("os")
        .and_then(|o| o.as_str())
        .unwrap_or("unknown")
        .to_owned();
    let outcome = rollback::rollback(
        &client,
        &state.store,
        id,
        &os,
        &selection,
        &who.name,
        body.reason.trim(),
    )
    .await
    .map_err(run_error)?;
    Ok(Json(json!({ "run_id": id, "hosts": outcome })))
}

/// Scan compliance of every system the policies under `policies/` target (operator).
/// Runs inside the request (UYUNI reads only) and answers with the summary.
pub async fn scan(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    use crate::engine::rollout::policy::load_policy;
    let features = state.features();
    let (Some(client), Some(host)) = (features.uyuni.clone(), features.scripts.clone()) else {
        return Err(ApiError::not_configured(
            "compliance scans need the UYUNI client and the script host, which this server does not run",
        ));
    };
    let dir = host.root().join("policies");
    let mut policies = Vec::new();
    let mut skipped = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
        while let Some(entry) = entries.next_entry().await.map_err(ApiError::internal)? {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("lua") {
                continue;
            }
            match load_policy(&path).await {
                Ok(p) => policies.push(p),
                Err(e) => skipped
                    .push(json!({"path": path.display().to_string(), "error": e.to_string()})),
            }
        }
    }
    policies.sort_by(|a, b| a.policy.id.cmp(&b.policy.id));
    let summary = compliance::scan(&client, &state.store, &policies)
        .await
        .map_err(run_error)?;
    let figures = json!({"systems": summary.systems, "compliant": summary.compliant,
                          "non_compliant": summary.non_compliant});
    state
        .store
        .write(move |tx| {
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "compliance.scan".into(),
                    object_type: "compliance".into(),
                    object_id: None,
                    reason: None,
                    details: figures,
                },
            )
        })
        .await?;
    Ok(Json(
        json!({ "summary": summary, "skipped_policies": skipped }),
    ))
}

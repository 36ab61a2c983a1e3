//! Synced errata: list with filters, one advisory in full, and the Success Score
//! breakdown of an advisory per OS (`/risk/{advisory}`).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::queue::severity_rank;
use crate::engine::score::ScoreResult;
use crate::engine::sync::score_input;
use crate::server::AppState;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page};
use crate::store::StoreError;
use crate::store::errata::{self, ErrataFilter};

/// OS names an advisory can be relevant to.
const OS: &[&str] = &["ubuntu", "debian", "rhel", "unknown"];
/// Advisory types.
const TYPES: &[&str] = &["security", "bugfix", "enhancement"];

fn check_os(os: Option<&str>) -> ApiResult<()> {
    match os {
        Some(o) if !OS.contains(&o) => Err(ApiError::invalid(
            "os",
            format!("unknown os {o:?}; expected one of {}", OS.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn check_advisory(raw: &str) -> ApiResult<String> {
    let a = raw.trim();
    if a.is_empty() || a.len() > 200 || a.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "path.advisory",
            "advisory must be 1 to 200 printable characters",
        ));
    }
    Ok(a.to_owned())
}

fn list_of(field: &str, raw: Option<&str>, allowed: &[&str]) -> ApiResult<Vec<String>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if allowed.contains(&s) {
                Ok(s.to_owned())
            } else {
                Err(ApiError::invalid(
                    field,
                    format!(
                        "unknown {field} {s:?}; expected one of {}",
                        allowed.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

/// Query parameters of the errata listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    os: Option<String>,
    severity: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    stale: Option<bool>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Advisories per OS, ordered by advisory then OS.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page(q.limit, q.offset, 50, 500)?;
    check_os(q.os.as_deref())?;
    let severities = list_of(
        "severity",
        q.severity.as_deref(),
        &["critical", "high", "medium", "low", "unknown"],
    )?;
    let types = list_of("type", q.kind.as_deref(), TYPES)?;
    let search = q.q.filter(|s| !s.is_empty()).map(|s| s.to_lowercase());
    if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::invalid("q", "q must be at most 200 characters"));
    }
    let filter = ErrataFilter {
        os: q.os,
        types,
        severities,
        include_stale: q.stale == Some(true),
    };
    let rows = state.store.read(move |c| errata::list(c, &filter)).await?;
    let matching: Vec<_> = rows
        .into_iter()
        .filter(|r| q.stale.is_none_or(|s| r.stale == s))
        .filter(|r| {
            search.as_ref().is_none_or(|s| {
                r.erratum.advisory.to_lowercase().contains(s)
                    || r.erratum.synopsis.to_lowercase().contains(s)
            })
        })
        .collect();
    let total = matching.len();
    let items: Vec<_> = matching
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    Ok(Json(json!({
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": items,
    })))
}

fn not_synced(adv: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound { .. } => {
            ApiError::not_found(format!("advisory {adv} is not in the synced errata"))
        }
        e => e.into(),
    }
}

/// One advisory with packages, CVEs and per-OS relevance.
pub async fn detail(
    State(state): State<AppState>,
    Path(advisory): Path<String>,
) -> ApiResult<Json<Value>> {
    let adv = check_advisory(&advisory)?;
    let key = adv.clone();
    let (record, packages, cves, relevance) = state
        .store
        .read(move |c| {
            Ok((
                errata::get(c, &key)?,
                errata::packages(c, &key)?,
                errata::cves(c, &key)?,
                errata::relevance(c, &key)?,
            ))
        })
        .await
        .map_err(not_synced(&adv))?;
    Ok(Json(json!({
        "erratum": record,
        "packages": packages,
        "cves": cves,
        "relevance": relevance,
    })))
}

/// Query of the risk breakdown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskQuery {
    os: Option<String>,
}

/// The score of one advisory on one OS, explained.
#[derive(Debug, Serialize)]
struct OsScore {
    os: String,
    stale: Option<bool>,
    times_tested: i64,
    times_failed: i64,
    #[serde(flatten)]
    result: ScoreResult,
}

/// Success Score breakdown of an advisory, per OS it is relevant to (or the one asked).
pub async fn risk(
    State(state): State<AppState>,
    Path(advisory): Path<String>,
    ApiQuery(q): ApiQuery<RiskQuery>,
) -> ApiResult<Json<Value>> {
    let scorer = state.features().scorer.clone().ok_or_else(|| {
        ApiError::not_configured("the Success Score is not configured in this server")
    })?;
    let adv = check_advisory(&advisory)?;
    check_os(q.os.as_deref())?;
    let key = adv.clone();
    let os = q.os.clone();
    let (record, packages, oses) = state
        .store
        .read(move |c| {
            let record = errata::get(c, &key)?;
            let packages = errata::packages(c, &key)?;
            let relevance = errata::relevance(c, &key)?;
            let wanted: Vec<(String, Option<bool>)> = match os {
                Some(os) => {
                    let stale = relevance.iter().find(|r| r.os == os).map(|r| r.stale);
                    vec![(os, stale)]
                }
                None if relevance.is_empty() => vec![("unknown".into(), None)],
                None => relevance
                    .iter()
                    .map(|r| (r.os.clone(), Some(r.stale)))
                    .collect(),
            };
            let mut oses = Vec::new();
            for (os, stale) in wanted {
                let (tested, failed) = errata::history(c, &key, &os)?;
                oses.push((os, stale, tested, failed));
            }
            Ok((record, packages, oses))
        })
        .await
        .map_err(not_synced(&adv))?;
    let known = if packages.is_empty() && !record.details_fetched {
        None
    } else {
        Some(packages.as_slice())
    };
    let scores: Vec<OsScore> = oses
        .into_iter()
        .map(|(os, stale, tested, failed)| OsScore {
            os,
            stale,
            times_tested: tested,
            times_failed: failed,
            result: scorer.score(&score_input(&record, known, tested, failed)),
        })
        .collect();
    Ok(Json(json!({
        "advisory": record.advisory,
        "advisory_type": record.advisory_type,
        "severity": record.severity,
        "severity_rank": severity_rank(&record.severity),
        "synopsis": record.synopsis,
        "scores": scores,
    })))
}

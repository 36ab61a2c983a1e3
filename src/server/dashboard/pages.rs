//! The dashboard's GET pages. Each reads through `store::dashboard` (or the aggregate's own
//! store module) on the blocking pool and renders one template.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::render::page;
use super::session::{self, LOGIN_COOKIE};
use super::{PageError, PageResult, Signed};
use crate::engine::state::{QueueStatus, Status};
use crate::server::AppState;
use crate::store::dashboard as db;
use crate::store::queue::{self, QUEUE_OS, QueueFilter};

fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("{raw:?} is not a valid id"),
        )
    })
}

/// `GET /ui/login`: the sign-in form (with a fresh sign-in CSRF cookie).
pub async fn login(State(state): State<AppState>, headers: axum::http::HeaderMap) -> PageResult {
    if let Some(id) = session::cookie(&headers, session::COOKIE)
        && state.dashboard.sessions.get(id).await.is_some()
    {
        return Ok(Redirect::to("/ui/").into_response());
    }
    let csrf = session::random_token();
    let html = state.dashboard.templates.render(
        "login.html",
        &json!({ "csrf": csrf, "dev_insecure": state.dev_insecure }),
    )?;
    let mut resp = Html(html).into_response();
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        std::time::Duration::from_secs(3600),
        state.dashboard.config.secure_cookie,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /ui/`: the overview.
pub async fn overview(State(state): State<AppState>, signed: Signed) -> PageResult {
    let data = state
        .store
        .read(|c| {
            Ok(json!({
                "by_policy": db::compliance_by(c, "policy")?,
                "by_env": db::compliance_by(c, "env")?,
                "by_os": db::compliance_by(c, "os")?,
                "queue_counts": db::queue_counts(c)?,
                "pending": db::pending_approvals(c)?,
                "last_sync": db::last_sync(c)?,
                "unread_list": db::unread_notifications(c, 5)?,
                "runs": db::runs(c, 5)?,
            }))
        })
        .await?;
    let mut ctx = data;
    let total: i64 = ctx["by_env"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["total"].as_i64()).sum())
        .unwrap_or(0);
    let ok: i64 = ctx["by_env"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["compliant"].as_i64()).sum())
        .unwrap_or(0);
    ctx["compliance_total"] = json!({
        "total": total,
        "compliant": ok,
        "pct": if total > 0 { (ok as f64 * 1000.0 / total as f64).round() / 10.0 } else { 0.0 },
    });
    ctx["scripts"] = script_status(&state);
    ctx["health"] = serde_json::to_value(&*state.health.get()).unwrap_or(Value::Null);
    ctx["queue_total"] = json!(
        ctx["queue_counts"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p[1].as_i64()).sum::<i64>())
            .unwrap_or(0)
    );
    page(&state, &signed, "overview.html", "overview", ctx).await
}

fn script_status(state: &AppState) -> Value {
    match &state.features().scripts {
        None => json!({ "wired": false }),
        Some(host) => {
            let st = host.status();
            json!({
                "wired": true,
                "generation": st.generation,
                "last_reload_at": st.last_reload_at.map(crate::store::format_ts),
                "errors": st.last_error_per_file,
            })
        }
    }
}

/// Query of the queue page.
#[derive(Debug, Deserialize, Default)]
pub struct QueueQuery {
    status: Option<String>,
    os: Option<String>,
    q: Option<String>,
    page: Option<u32>,
    find: Option<String>,
}

/// `GET /ui/queue`: filters, search, add advisories, priority, remove.
pub async fn queue(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<QueueQuery>,
) -> PageResult {
    let status = q.status.filter(|s| !s.is_empty());
    let statuses = match &status {
        Some(s) => vec![
            s.parse::<QueueStatus>()
                .map_err(|e| PageError::new(axum::http::StatusCode::BAD_REQUEST, e.to_string()))?,
        ],
        None => Vec::new(),
    };
    let os = q.os.filter(|s| !s.is_empty());
    if let Some(o) = &os
        && !QUEUE_OS.contains(&o.as_str())
    {
        return Err(PageError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("unknown OS {o:?}; expected one of {}", QUEUE_OS.join(", ")),
        ));
    }
    let search: Option<String> =
        q.q.map(|s| s.chars().take(200).collect())
            .filter(|s: &String| !s.is_empty());
    let find: Option<String> = q
        .find
        .map(|s| s.trim().chars().take(200).collect())
        .filter(|s: &String| !s.is_empty());
    let page_no = q.page.unwrap_or(1).clamp(1, 100_000);
    let per_page = 50u32;
    let filter = QueueFilter {
        statuses,
        os: os.clone(),
        search: search.clone(),
        limit: per_page,
        offset: (page_no - 1) * per_page,
    };
    let find2 = find.clone();
    let (list, counts, found) = state
        .store
        .read(move |c| {
            let found = match &find2 {
                Some(f) => db::find_errata(c, f, 25)?,
                None => Vec::new(),
            };
            Ok((queue::list(c, &filter)?, db::queue_counts(c)?, found))
        })
        .await?;
    let pages = ((list.total.max(0) as u32).div_ceil(per_page)).max(1);
    let ctx = json!({
        "items": list.items,
        "total": list.total,
        "page": page_no,
        "pages": pages,
        "counts": counts,
        "statuses": QueueStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "os_list": QUEUE_OS,
        "f": { "status": status, "os": os, "q": search },
        "find": find,
        "found": found,
    });
    page(&state, &signed, "queue.html", "queue", ctx).await
}

/// `GET /ui/tests`: recent tests.
pub async fn tests(State(state): State<AppState>, signed: Signed) -> PageResult {
    let tests = state.store.read(|c| db::tests(c, 100)).await?;
    page(
        &state,
        &signed,
        "tests.html",
        "tests",
        json!({ "tests": tests }),
    )
    .await
}

/// `GET /ui/tests/{id}`: the phase timeline with durations and outputs, and the evidence.
pub async fn test(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let mut t = state.store.read(move |c| db::test_detail(c, id)).await?;
    t["ev"] = normalize_evidence(&t["evidence"]);
    t["timeline"] = timeline(&t["phases"]);
    page(&state, &signed, "test.html", "tests", json!({ "t": t })).await
}

/// `GET /ui/approvals`: pending items and recent decisions.
pub async fn approvals(State(state): State<AppState>, signed: Signed) -> PageResult {
    let (pending, recent) = state
        .store
        .read(|c| Ok((db::pending_approvals(c)?, db::recent_decisions(c, 25)?)))
        .await?;
    page(
        &state,
        &signed,
        "approvals.html",
        "approvals",
        json!({ "pending": pending, "recent": recent, "four_eyes": state.dashboard.config.four_eyes }),
    )
    .await
}

/// `GET /ui/approvals/{id}`: the evidence and the decision forms.
pub async fn approval(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let mut item = state
        .store
        .read(move |c| db::approval_detail(c, id))
        .await?;
    if item["test"].is_object() {
        item["ev"] = normalize_evidence(&item["test"]["evidence"]);
        item["timeline"] = timeline(&item["test"]["phases"]);
    }
    let me = signed.principal.name.clone();
    let four_eyes = state.dashboard.config.four_eyes;
    let blocked = four_eyes
        && (item["queued_by"].as_str() == Some(me.as_str())
            || item["starters"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(me.as_str()))));
    let ctx = json!({
        "item": item,
        "four_eyes": four_eyes,
        "four_eyes_blocks_me": blocked,
        "snooze_hours": [4, 8, 24, 48, 72, 168],
    });
    page(&state, &signed, "approval.html", "approvals", ctx).await
}

/// `GET /ui/runs`: policies and patch runs.
pub async fn runs(State(state): State<AppState>, signed: Signed) -> PageResult {
    let (runs, policies) = state
        .store
        .read(|c| Ok((db::runs(c, 50)?, db::policies(c)?)))
        .await?;
    page(
        &state,
        &signed,
        "runs.html",
        "runs",
        json!({ "runs": runs, "policies": policies }),
    )
    .await
}

/// `GET /ui/runs/{id}`: waves, hosts, budget, plan; live progress by polling.
pub async fn run(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let run = state.store.read(move |c| db::run_detail(c, id)).await?;
    page(&state, &signed, "run.html", "runs", json!({ "run": run })).await
}

/// `GET /ui/runs/{id}/progress`: the run's counters as JSON, for the polling script.
pub async fn run_progress(
    State(state): State<AppState>,
    _signed: Signed,
    Path(id): Path<String>,
) -> Result<Json<Value>, PageError> {
    let id = parse_id(&id)?;
    let run = state.store.read(move |c| db::run_detail(c, id)).await?;
    let hosts: Vec<Value> = run["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["hosts"].as_array().cloned().unwrap_or_default())
        .map(|h| json!({ "id": h["id"], "status": h["status"], "error": h["error"] }))
        .collect();
    Ok(Json(json!({
        "id": run["id"],
        "status": run["status"],
        "active": run["live"],
        "phase_detail": run["phase_detail"],
        "current_wave": run["current_wave"],
        "total_waves": run["total_waves"],
        "hosts_total": run["hosts_total"],
        "hosts_ok": run["hosts_ok"],
        "hosts_failed": run["hosts_failed"],
        "hosts_running": run["hosts_running"],
        "hosts": hosts,
    })))
}

/// Query of the compliance page.
#[derive(Debug, Deserialize, Default)]
pub struct ComplianceQuery {
    cve: Option<String>,
}

/// `GET /ui/compliance`: by policy/env/OS with charts; CVE → errata → systems.
pub async fn compliance(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ComplianceQuery>,
) -> PageResult {
    let cve: Option<String> = q
        .cve
        .map(|c| c.trim().chars().take(40).collect())
        .filter(|c: &String| !c.is_empty());
    let cve2 = cve.clone();
    let mut ctx = state
        .store
        .read(move |c| {
            Ok(json!({
                "by_policy": db::compliance_by(c, "policy")?,
                "by_env": db::compliance_by(c, "env")?,
                "by_os": db::compliance_by(c, "os")?,
                "systems": db::noncompliant_systems(c, 200)?,
                "advisories": db::top_advisories(c, 25)?,
                "cve_result": match &cve2 { Some(v) => Value::Array(db::cve_lookup(c, v)?), None => Value::Null },
            }))
        })
        .await?;
    ctx["cve"] = json!(cve);
    page(&state, &signed, "compliance.html", "compliance", ctx).await
}

/// `GET /ui/scripts`: generation, per-file last reload error, the files in service.
pub async fn scripts(State(state): State<AppState>, signed: Signed) -> PageResult {
    let mut ctx = json!({ "status": script_status(&state) });
    if let Some(host) = &state.features().scripts {
        let set = host.current();
        let errors = host.status().last_error_per_file;
        let files: Vec<Value> = set
            .files
            .values()
            .map(|f| {
                json!({
                    "path": f.path,
                    "kind": f.kind().map(|k| format!("{k:?}").to_lowercase()),
                    "sha256": f.sha256.get(..12),
                    "ok": f.compiled_ok,
                    "lines": f.content.lines().count(),
                    "errors": errors.get(&f.path),
                })
            })
            .collect();
        ctx["files"] = Value::Array(files);
        ctx["root"] = json!(set.root.display().to_string());
    }
    page(&state, &signed, "scripts.html", "scripts", ctx).await
}

/// Query of the script source view.
#[derive(Debug, Deserialize)]
pub struct SourceQuery {
    path: String,
}

/// `GET /ui/scripts/source?path=…`: read-only source of a file of the set in service.
pub async fn script_source(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<SourceQuery>,
) -> PageResult {
    let Some(host) = state.features().scripts.clone() else {
        return Err(PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            "the script host is not running in this server",
        ));
    };
    let set = host.current();
    // Only paths of the set in service are shown: no file system access from the request.
    let Some(file) = set.get(&q.path) else {
        return Err(PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no script {:?} in generation {}", q.path, set.generation),
        ));
    };
    let lines: Vec<Value> = file
        .content
        .lines()
        .enumerate()
        .map(|(i, l)| json!({ "n": i + 1, "text": l }))
        .collect();
    let errors = host.status().last_error_per_file.get(&file.path).cloned();
    let ctx = json!({
        "path": file.path,
        "sha256": file.sha256,
        "generation": set.generation,
        "lines": lines,
        "errors": errors,
    });
    page(&state, &signed, "script.html", "scripts", ctx).await
}

/// Query of the notifications page.
#[derive(Debug, Deserialize, Default)]
pub struct NotificationsQuery {
    unread: Option<String>,
}

/// `GET /ui/notifications`: the list, with mark-read forms.
pub async fn notifications(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<NotificationsQuery>,
) -> PageResult {
    let unread_only = q.unread.as_deref() == Some("1");
    let items = state
        .store
        .read(move |c| db::notifications(c, unread_only, 200))
        .await?;
    page(
        &state,
        &signed,
        "notifications.html",
        "notifications",
        json!({ "items": items, "unread_only": unread_only }),
    )
    .await
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Bring a test's evidence into one shape for the templates:
/// `packages` [{name, before, after}], `metrics` [{name, baseline, post, unit, delta_pct,
/// bw, pw}] (bar widths 0–100 of the larger value), `services` [{name, status, ok}],
/// `cves_closed` [text], and `other` (every key not understood, shown as JSON).
pub fn normalize_evidence(ev: &Value) -> Value {
    let Some(obj) = ev.as_object() else {
        return json!({ "other": ev });
    };
    let mut other = Map::new();
    let mut out = json!({ "packages": [], "metrics": [], "services": [], "cves_closed": [] });
    for (k, v) in obj {
        match k.as_str() {
            "packages" => {
                let rows: Vec<Value> = match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|p| {
                            json!({
                                "name": p["name"],
                                "before": p.get("before").or_else(|| p.get("old")).cloned().unwrap_or(Value::Null),
                                "after": p.get("after").or_else(|| p.get("new")).cloned().unwrap_or(Value::Null),
                            })
                        })
                        .collect(),
                    Value::Object(m) => m
                        .iter()
                        .map(|(name, p)| json!({ "name": name, "before": p["before"], "after": p["after"] }))
                        .collect(),
                    _ => Vec::new(),
                };
                out["packages"] = Value::Array(rows);
            }
            "metrics" => {
                let pairs: Vec<(String, &Value)> = match v {
                    Value::Object(m) => m.iter().map(|(n, x)| (n.clone(), x)).collect(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| (x["name"].as_str().unwrap_or("?").to_string(), x))
                        .collect(),
                    _ => Vec::new(),
                };
                let rows: Vec<Value> = pairs
                    .into_iter()
                    .map(|(name, m)| {
                        let b = num(&m["baseline"]);
                        let p = num(&m["post"]);
                        let max = b.unwrap_or(0.0).abs().max(p.unwrap_or(0.0).abs());
                        let w = |x: Option<f64>| match x {
                            Some(x) if max > 0.0 => (x.abs() / max * 100.0).round(),
                            _ => 0.0,
                        };
                        let delta = match (b, p) {
                            (Some(b), Some(p)) if b != 0.0 => {
                                Some(((p - b) / b.abs() * 1000.0).round() / 10.0)
                            }
                            _ => None,
                        };
                        json!({
                            "name": name, "baseline": b, "post": p, "unit": m["unit"],
                            "ok": m["ok"], "delta_pct": delta, "bw": w(b), "pw": w(p),
                        })
                    })
                    .collect();
                out["metrics"] = Value::Array(rows);
            }
            "services" => {
                let rows: Vec<Value> = match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|s| match s {
                            Value::String(n) => {
                                json!({ "name": n, "status": "checked", "ok": true })
                            }
                            _ => {
                                let status = s
                                    .get("status")
                                    .or_else(|| s.get("state"))
                                    .cloned()
                                    .unwrap_or(Value::Null);
                                let ok =
                                    s.get("ok").and_then(Value::as_bool).unwrap_or_else(|| {
                                        matches!(status.as_str(), Some("active" | "running" | "ok"))
                                    });
                                json!({ "name": s["name"], "status": status, "ok": ok })
                            }
                        })
                        .collect(),
                    Value::Object(m) => m
                        .iter()
                        .map(|(n, st)| {
                            let ok = matches!(st.as_str(), Some("active" | "running" | "ok"))
                                || st.as_bool() == Some(true);
                            json!({ "name": n, "status": st, "ok": ok })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                out["services"] = Value::Array(rows);
            }
            "cves_closed" | "cves" => out["cves_closed"] = v.clone(),
            _ => {
                other.insert(k.clone(), v.clone());
            }
        }
    }
    if !other.is_empty() {
        out["other"] = Value::Object(other);
    }
    out
}

/// Phase bars for the timeline: each phase's start offset and width as percentages of
/// the whole test (by `duration_ms`, in order).
fn timeline(phases: &Value) -> Value {
    let Some(list) = phases.as_array() else {
        return json!([]);
    };
    let total: f64 = list
        .iter()
        .map(|p| p["duration_ms"].as_f64().unwrap_or(0.0))
        .sum();
    let mut at = 0.0;
    let bars: Vec<Value> = list
        .iter()
        .map(|p| {
            let d = p["duration_ms"].as_f64().unwrap_or(0.0);
            let (x, w) = if total > 0.0 {
                (at / total * 100.0, (d / total * 100.0).max(0.5))
            } else {
                (0.0, 0.0)
            };
            at += d;
            json!({ "phase": p["phase"], "status": p["status"], "x": (x * 10.0).round() / 10.0,
                    "w": (w * 10.0).round() / 10.0, "duration_ms": p["duration_ms"] })
        })
        .collect();
    Value::Array(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_shapes_are_normalized() {
        let ev = json!({
            "packages": [{"name": "openssl", "before": "3.0.1", "after": "3.0.2"}],
            "metrics": {"cpu": {"baseline": 20.0, "post": 30.0, "unit": "%"}},
            "services": {"nginx": "active", "cron": "failed"},
            "cves_closed": ["CVE-2026-1"],
            "extra": 1,
        });
        let n = normalize_evidence(&ev);
        assert_eq!(n["packages"][0]["after"], "3.0.2");
        assert_eq!(n["metrics"][0]["pw"], 100.0);
        assert_eq!(n["metrics"][0]["bw"], 67.0);
        assert_eq!(n["metrics"][0]["delta_pct"], 50.0);
        let cron = n["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "cron"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(cron["ok"], false, "a failed service is not ok");
        assert_eq!(cron["status"], "failed");
        assert_eq!(n["other"]["extra"], 1);
        assert_eq!(normalize_evidence(&json!("x"))["other"], "x");
    }

    #[test]
    fn timeline_offsets_add_up() {
        let t = timeline(&json!([
            {"phase": "a", "status": "passed", "duration_ms": 100},
            {"phase": "b", "status": "passed", "duration_ms": 300}
        ]));
        assert_eq!(t[0]["x"], 0.0);
        assert_eq!(t[1]["x"], 25.0);
        assert_eq!(t[1]["w"], 75.0);
    }
}

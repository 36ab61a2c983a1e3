//! Tests over HTTP: start one for a queue item, list, read with phases and evidence, abort.
//!
//! `POST /api/v1/tests/run` claims the item in the handler (so a conflict is a 409), then
//! runs the test in a spawned task and answers 202 as soon as the test row exists (or the
//! item ended without a test, e.g. no test system: `test` is then null).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::state::TestStatus;
use crate::engine::testing::TestEngine;
use crate::engine::testing::recovery::AbortOutcome;
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiJson, ApiQuery, ApiResult, page, parse_id};
use crate::store::audit::{self, AuditEntry};
use crate::store::{format_ts, queue, test_runs};

/// How long `POST /tests/run` waits for the test row before answering anyway.
const START_WAIT: Duration = Duration::from_secs(10);

fn engine(state: &AppState) -> ApiResult<Arc<TestEngine>> {
    state
        .features()
        .tests
        .clone()
        .ok_or_else(|| ApiError::not_configured("the test engine is not running in this server"))
}

/// Body of `POST /api/v1/tests/run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The queue item to test.
    queue_id: i64,
}

/// Start a test of a queue item (operator). 202 with the item and the test row.
pub async fn run(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let engine = engine(&state)?;
    let id = body.queue_id;
    if id < 1 {
        return Err(ApiError::invalid(
            "queue_id",
            format!("queue_id must be a positive integer, got {id}"),
        ));
    }
    let owner = engine.owner().to_owned();
    let lease = Duration::from_secs(engine.config.lease_secs.max(3));
    let until = format_ts(
        chrono::Utc::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)),
    );
    let actor = who.name.clone();
    let (item, last_test) = state
        .store
        .write(move |tx| {
            let last = test_runs::list(tx, Some(id), None, 1)?
                .first()
                .map_or(0, |t| t.id);
            let item = test_runs::claim_item(tx, id, &owner, &until)?;
            audit::append(
                tx,
                &AuditEntry {
                    actor: actor.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "test.start".into(),
                    object_type: "queue_item".into(),
                    object_id: Some(id.to_string()),
                    reason: None,
                    details: json!({"advisory": item.advisory, "os": item.os}),
                },
            )?;
            Ok((item, last))
        })
        .await?;
    let task = {
        let engine = engine.clone();
        let item = item.clone();
        let by = who.name.clone();
        tokio::spawn(async move {
            match engine.test_item(item, &by).await {
                Ok(outcome) => tracing::info!(queue_id = id, ?outcome, "API-started test ended"),
                Err(e) => tracing::error!(queue_id = id, error = %e, "API-started test failed"),
            }
        })
    };
    // Wait for the test row (or for the task to end without one).
    let started = Instant::now();
    let test = loop {
        let found = state
            .store
            .read(move |c| test_runs::list(c, Some(id), None, 1))
            .await?
            .into_iter()
            .next()
            .filter(|t| t.id > last_test);
        if found.is_some() || task.is_finished() || started.elapsed() > START_WAIT {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let item = state.store.read(move |c| queue::get(c, id)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "queue_item": item, "test": test })),
    ))
}

/// Query parameters of the test listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    queue_id: Option<i64>,
    status: Option<String>,
    limit: Option<i64>,
}

/// Tests, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, _) = page(q.limit, None, 50, 500)?;
    if q.queue_id.is_some_and(|i| i < 1) {
        return Err(ApiError::invalid(
            "queue_id",
            "queue_id must be a positive integer",
        ));
    }
    let status = match &q.status {
        Some(s) => Some(s.parse::<TestStatus>().map_err(|_| {
            ApiError::invalid(
                "status",
                format!(
                    "unknown test status {s:?}; expected running, passed, failed, error, aborted or interrupted"
                ),
            )
        })?),
        None => None,
    };
    let queue_id = q.queue_id;
    let items = state
        .store
        .read(move |c| test_runs::list(c, queue_id, status, limit as u32))
        .await?;
    Ok(Json(json!({ "limit": limit, "items": items })))
}

/// One test with its phases, rollbacks and evidence.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let (test, phases, rollbacks) = state
        .store
        .read(move |c| {
            Ok((
                test_runs::get(c, id)?,
                test_runs::phases(c, id)?,
                test_runs::rollbacks(c, id)?,
            ))
        })
        .await?;
    let rollbacks: Vec<Value> = rollbacks
        .into_iter()
        .map(|(strategy, status, details)| {
            json!({"strategy": strategy, "status": status, "details": details})
        })
        .collect();
    Ok(Json(json!({
        "test": test,
        "phases": phases,
        "rollbacks": rollbacks,
    })))
}

/// Body of `POST /api/v1/tests/{id}/abort`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortBody {
    /// Why (recorded on the test and in the audit log).
    reason: String,
}

/// Abort a running test (operator); 409 when it is not running.
pub async fn abort(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AbortBody>,
) -> ApiResult<Json<Value>> {
    let engine = engine(&state)?;
    let id = parse_id("id", &id)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid(
            "reason",
            "reason must be 1 to 500 characters",
        ));
    }
    let test = state.store.read(move |c| test_runs::get(c, id)).await?;
    if test.status != TestStatus::Running {
        return Err(ApiError::conflict(format!(
            "test {id} is {}, not running",
            test.status
        )));
    }
    let outcome = engine
        .abort(id, &format!("{reason} (by {})", who.name))
        .await?;
    let how = match &outcome {
        AbortOutcome::Cancelled => "cancelled",
        AbortOutcome::Requested => "requested",
        AbortOutcome::Recovered(_) => "recovered",
    };
    state
        .store
        .write(move |tx| {
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "test.abort".into(),
                    object_type: "test".into(),
                    object_id: Some(id.to_string()),
                    reason: Some(reason),
                    details: json!({"outcome": how}),
                },
            )
        })
        .await?;
    Ok(Json(json!({ "id": id, "outcome": outcome })))
}

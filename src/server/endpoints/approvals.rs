//! The approval gate over HTTP (approver role): pending items, approve, reject, snooze,
//! batch approve. Each decision is one transaction in [`crate::engine::approvals`] that
//! records the token name and the client's socket address; the four-eyes rule is the one
//! in [`crate::server::Features::approval_rules`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::approvals::{self, Actor, ApprovalError, Decided, Decision};
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiJson, ApiResult, parse_id};
use crate::store::approvals as store_approvals;

fn approval_error(e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        e @ ApprovalError::NotPending { .. } => ApiError::conflict(e.to_string()),
        e @ ApprovalError::FourEyes { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "four_eyes", e.to_string())
        }
        ApprovalError::Store(e) => e.into(),
    }
}

fn actor(who: &Principal) -> Actor {
    Actor {
        identity: who.name.clone(),
        source_addr: who.source_addr.clone(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApprovalError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(approval_error)
}

/// Items waiting for a decision, oldest first.
pub async fn pending(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let items = state.store.read(store_approvals::pending).await?;
    Ok(Json(json!({ "items": items })))
}

/// Body of approve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Optional comment.
    reason: Option<String>,
    /// The test whose evidence the approver looked at.
    evidence_test_id: Option<i64>,
}

/// Body of reject.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why (required).
    reason: String,
    /// The test whose evidence the approver looked at.
    evidence_test_id: Option<i64>,
}

/// Body of snooze.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    /// RFC 3339 time, a date, or a duration (`12h`, `7d`).
    until: String,
    /// Why (required).
    reason: String,
}

/// Body of batch approve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Queue item ids (1 to 500).
    queue_ids: Vec<i64>,
    /// Optional comment.
    reason: Option<String>,
}

async fn decide(
    state: &AppState,
    who: &Principal,
    id: i64,
    decision: Decision,
    evidence: Option<i64>,
) -> ApiResult<Json<Decided>> {
    if evidence.is_some_and(|e| e < 1) {
        return Err(ApiError::invalid(
            "evidence_test_id",
            "evidence_test_id must be a positive integer",
        ));
    }
    let store = state.store.clone();
    let rules = state.features().approval_rules;
    let actor = actor(who);
    Ok(Json(
        blocking(move || approvals::decide(&store, id, &decision, evidence, &actor, rules)).await?,
    ))
}

/// Approve one pending item.
pub async fn approve(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> ApiResult<Json<Decided>> {
    let id = parse_id("queue_id", &id)?;
    let d = Decision::Approve {
        reason: body.reason,
    };
    decide(&state, &who, id, d, body.evidence_test_id).await
}

/// Reject one pending item.
pub async fn reject(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RejectBody>,
) -> ApiResult<Json<Decided>> {
    let id = parse_id("queue_id", &id)?;
    let d = Decision::Reject {
        reason: body.reason,
    };
    decide(&state, &who, id, d, body.evidence_test_id).await
}

/// Snooze one pending item until a time.
pub async fn snooze(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SnoozeBody>,
) -> ApiResult<Json<Decided>> {
    let id = parse_id("queue_id", &id)?;
    let until = approvals::parse_until(&body.until, chrono::Utc::now())
        .map_err(|e| ApiError::invalid("until", e.to_string()))?;
    let d = Decision::Snooze {
        until,
        reason: body.reason,
    };
    decide(&state, &who, id, d, None).await
}

/// Approve several items: all of them or, on the first refusal, none.
pub async fn batch(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult<Json<Value>> {
    if body.queue_ids.is_empty() || body.queue_ids.len() > 500 {
        return Err(ApiError::invalid(
            "queue_ids",
            "queue_ids must hold 1 to 500 queue item ids",
        ));
    }
    if let Some(bad) = body.queue_ids.iter().find(|i| **i < 1) {
        return Err(ApiError::invalid(
            "queue_ids",
            format!("queue_ids must be positive integers, got {bad}"),
        ));
    }
    let store = state.store.clone();
    let rules = state.features().approval_rules;
    let actor = actor(&who);
    let decided = blocking(move || {
        approvals::approve_batch(
            &store,
            &body.queue_ids,
            body.reason.as_deref(),
            &actor,
            rules,
        )
    })
    .await?;
    Ok(Json(json!({ "approved": decided })))
}

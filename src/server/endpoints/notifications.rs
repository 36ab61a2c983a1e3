//! Notifications: list, detail, mark read.
//!
//! Marking read needs only the viewer role: it is the reader's own bookkeeping (the
//! `read_by` column records the token name), not a decision about the fleet.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiJson, ApiQuery, ApiResult, page, parse_id};
use crate::store::notifications::{self, ListFilter};

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    unread: Option<bool>,
    event: Option<String>,
    severity: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const SEVERITIES: &[&str] = &["info", "warning", "critical"];

/// List notifications, newest first, with the unread count.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page(q.limit, q.offset, 50, 500)?;
    if let Some(s) = &q.severity
        && !SEVERITIES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "severity",
            format!(
                "unknown severity {s:?}; expected one of {}",
                SEVERITIES.join(", ")
            ),
        ));
    }
    let offset =
        u32::try_from(offset).map_err(|_| ApiError::invalid("offset", "offset is too large"))?;
    let filter = ListFilter {
        unread_only: q.unread.unwrap_or(false),
        event: q.event,
        severity: q.severity,
        limit: Some(limit as u32),
        offset: Some(offset),
    };
    let (unread, items) = state
        .store
        .read(move |c| {
            Ok((
                notifications::unread_count(c)?,
                notifications::list(c, &filter)?,
            ))
        })
        .await?;
    Ok(Json(json!({
        "total_unread": unread,
        "limit": limit,
        "offset": offset,
        "items": items,
    })))
}

/// One notification with its delivery attempts.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let (n, deliveries) = state
        .store
        .read(move |c| {
            Ok((
                notifications::get(c, id)?,
                notifications::deliveries(c, id)?,
            ))
        })
        .await?;
    Ok(Json(json!({ "notification": n, "deliveries": deliveries })))
}

/// Mark one notification read.
pub async fn mark_one(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let changed = state
        .store
        .write(move |tx| notifications::mark_read(tx, id, &who.name))
        .await?;
    Ok(Json(json!({ "id": id, "marked_read": changed })))
}

/// Body of `POST /api/v1/notifications/mark-read`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    ids: Vec<i64>,
}

/// Mark several notifications read, all or nothing (an unknown id changes nothing).
pub async fn mark_many(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<MarkBody>,
) -> ApiResult<Json<Value>> {
    if body.ids.is_empty() || body.ids.len() > 1000 {
        return Err(ApiError::invalid(
            "ids",
            "ids must hold 1 to 1000 notification ids",
        ));
    }
    if let Some(bad) = body.ids.iter().find(|i| **i < 1) {
        return Err(ApiError::invalid(
            "ids",
            format!("ids must be positive integers, got {bad}"),
        ));
    }
    let n = state
        .store
        .write(move |tx| {
            let mut n = 0;
            for id in &body.ids {
                if notifications::mark_read(tx, *id, &who.name)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
    Ok(Json(json!({ "marked_read": n })))
}

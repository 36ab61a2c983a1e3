//! `GET /api/v1/queue` and `GET /api/v1/queue/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use crate::engine::state::Status;
use crate::engine::state::queue::QueueStatus;
use crate::server::AppState;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page, parse_id};
use crate::store::queue::{self, QUEUE_OS, QueueFilter, QueuePage};
use crate::store::queue_view::{self, QueueDetail};

/// Largest page the API serves.
pub const MAX_LIMIT: i64 = 500;

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One status or several separated by commas.
    status: Option<String>,
    os: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn parse_statuses(raw: &str) -> ApiResult<Vec<QueueStatus>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<QueueStatus>().map_err(|_| {
                let all: Vec<&str> = QueueStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::invalid(
                    "status",
                    format!("unknown status {s:?}; expected one of {}", all.join(", ")),
                )
            })
        })
        .collect()
}

/// List queue items in queue order (score, priority, age).
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<QueuePage>> {
    let (limit, offset) = page(q.limit, q.offset, 50, MAX_LIMIT)?;
    let statuses = match &q.status {
        Some(s) => parse_statuses(s)?,
        None => Vec::new(),
    };
    if let Some(o) = &q.os
        && !QUEUE_OS.contains(&o.as_str())
    {
        return Err(ApiError::invalid(
            "os",
            format!("unknown os {o:?}; expected one of {}", QUEUE_OS.join(", ")),
        ));
    }
    if let Some(text) = &q.q
        && text.chars().count() > 200
    {
        return Err(ApiError::invalid("q", "q must be at most 200 characters"));
    }
    let offset =
        u32::try_from(offset).map_err(|_| ApiError::invalid("offset", "offset is too large"))?;
    let filter = QueueFilter {
        statuses,
        os: q.os,
        search: q.q.filter(|s| !s.is_empty()),
        limit: limit as u32,
        offset,
    };
    Ok(Json(
        state.store.read(move |c| queue::list(c, &filter)).await?,
    ))
}

/// One queue item with CVEs, score breakdown and tests.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDetail>> {
    let id = parse_id("id", &id)?;
    Ok(Json(
        state.store.read(move |c| queue_view::get(c, id)).await?,
    ))
}

//! `GET /api/v1/queue` and `GET /api/v1/queue/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::server::AppState;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page, parse_id};
use crate::store::queue_view::{self, QUEUE_OS, QueueDetail, QueueFilter, QueueRow, STATUSES};

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    os: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A page of results.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// Total matches.
    pub total: i64,
    /// Page size used.
    pub limit: i64,
    /// Offset used.
    pub offset: i64,
    /// The rows.
    pub items: Vec<T>,
}

/// List queue items.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<QueueRow>>> {
    let (limit, offset) = page(q.limit, q.offset, 50, 500)?;
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            format!(
                "unknown status {s:?}; expected one of {}",
                STATUSES.join(", ")
            ),
        ));
    }
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
    let filter = QueueFilter {
        status: q.status,
        os: q.os,
        q: q.q.filter(|s| !s.is_empty()),
    };
    let (total, items) = state
        .store
        .read(move |c| queue_view::list(c, &filter, limit, offset))
        .await?;
    Ok(Json(Page {
        total,
        limit,
        offset,
        items,
    }))
}

/// One queue item.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDetail>> {
    let id = parse_id("id", &id)?;
    Ok(Json(
        state.store.read(move |c| queue_view::get(c, id)).await?,
    ))
}

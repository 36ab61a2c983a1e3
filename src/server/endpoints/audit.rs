//! `GET /api/v1/audit`: the audit log, newest first, paged with a cursor (`before_id`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::server::AppState;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page};
use crate::store::audit::{self, AuditFilter, AuditRecord};

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    actor: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

/// A page of audit entries.
#[derive(Debug, Serialize)]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditRecord>,
    /// Pass as `before_id` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before_id: Option<i64>,
}

/// List audit entries.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<AuditPage>> {
    let (limit, _) = page(q.limit, None, 50, 500)?;
    if let Some(b) = q.before_id
        && b < 1
    {
        return Err(ApiError::invalid(
            "before_id",
            "before_id must be a positive integer",
        ));
    }
    let filter = AuditFilter {
        actor: q.actor,
        object_type: q.object_type,
        object_id: q.object_id,
        before_id: q.before_id,
        limit: limit as u32,
    };
    let items = state.store.read(move |c| audit::list(c, &filter)).await?;
    let next_before_id = if items.len() as i64 == limit {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        items,
        next_before_id,
    }))
}

//! `GET /api/v1/audit`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::queue::Page;
use crate::server::AppState;
use crate::server::error::{ApiQuery, ApiResult, page};
use crate::store::audit::{self, AuditEntry, AuditFilter};

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    actor: Option<String>,
    action: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// List audit entries, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let (limit, offset) = page(q.limit, q.offset, 50, 500)?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        object_type: q.object_type,
        object_id: q.object_id,
    };
    let (total, items) = state
        .store
        .read(move |c| audit::list(c, &filter, limit, offset))
        .await?;
    Ok(Json(Page {
        total,
        limit,
        offset,
        items,
    }))
}

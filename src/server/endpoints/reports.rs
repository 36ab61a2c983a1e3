//! `GET /api/v1/reports/summary`: the figures an overview page needs, in one read.

use axum::Json;
use axum::extract::State;

use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::store::reports::{self, Summary};

/// Queue counts, pending approvals with the oldest wait, tests of the last 24 h, last sync.
pub async fn summary(State(state): State<AppState>) -> ApiResult<Json<Summary>> {
    Ok(Json(state.store.read(reports::summary).await?))
}

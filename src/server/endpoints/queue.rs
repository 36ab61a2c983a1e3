//! The queue: list and detail (viewer); add, remove and reprioritise (operator, audited
//! with the token name as actor).
//!
//! The listing is what dashboards and scripts poll, so its serialized pages are kept in a
//! [`PageCache`] while the database is unchanged (any commit empties it).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::queue::{self as engine_queue, AddReport, AddRequest, QueueError};
use crate::server::auth::Principal;

use crate::engine::state::Status;
use crate::engine::state::queue::QueueStatus;
use crate::server::AppState;
use crate::server::cache::VersionedCache;
use crate::server::error::{ApiError, ApiJson, ApiQuery, ApiResult, page, parse_id};
use crate::store::queue::{self, QUEUE_OS, QueueFilter, QueueItem};
use crate::store::queue_view::{self, QueueDetail};

/// Largest page the API serves.
pub const MAX_LIMIT: i64 = 500;

/// Serialized listing pages by filter, valid only at the database version they were read
/// at (see [`crate::server::cache`]).
#[derive(Debug)]
pub struct PageCache(VersionedCache<Bytes>);

impl PageCache {
    /// Most bytes of serialized pages held at once.
    pub const MAX_BYTES: usize = 4 * 1024 * 1024;
    /// Longest time a page is reused, even with an unchanged database.
    pub const MAX_AGE: Duration = Duration::from_secs(60);

    /// Turn the cache on or off ([`crate::server::cache::VersionedCache::set_enabled`]).
    pub fn set_enabled(&self, on: bool) {
        self.0.set_enabled(on);
    }

    /// Number of pages held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for PageCache {
    fn default() -> Self {
        Self(VersionedCache::new(
            Self::MAX_BYTES,
            Self::MAX_AGE,
            Bytes::len,
        ))
    }
}

fn json_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

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

/// List queue items in queue order (score, priority, age): a JSON
/// [`queue::QueuePage`].
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
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
    // The version is read before the database, so a page is never cached under a version
    // newer than the rows it holds.
    let key = format!("{filter:?}");
    let version = state.store.version();
    if let Some(body) = version.and_then(|v| state.queue_pages.0.get(v, &key)) {
        return Ok(json_response(body));
    }
    let page = state.store.read(move |c| queue::list(c, &filter)).await?;
    let body = Bytes::from(serde_json::to_vec(&page).map_err(ApiError::internal)?);
    if let Some(v) = version {
        state.queue_pages.0.insert(v, key, body.clone());
    }
    Ok(json_response(body))
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

/// Run a blocking queue operation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        QueueError::Store(e) => e.into(),
    }
}

/// Body of `POST /api/v1/queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// One advisory (alternative to `advisories`).
    advisory: Option<String>,
    /// Several advisories.
    advisories: Option<Vec<String>>,
    /// Target OS; absent queues for every OS the advisory is relevant to.
    os: Option<String>,
    /// Operator priority (default 0).
    #[serde(default)]
    priority: i64,
    /// Notes.
    notes: Option<String>,
    /// Test on every test system of the OS.
    #[serde(default)]
    require_all_systems: bool,
}

/// Largest number of advisories in one request.
const MAX_ADD: usize = 500;

/// Queue one or many advisories (operator). 201 with what was added, skipped, superseded.
/// An unknown advisory or OS refuses the whole request (422) and changes nothing.
pub async fn add(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<AddBody>,
) -> ApiResult<(StatusCode, Json<AddReport>)> {
    let scorer = state.features().scorer.clone().ok_or_else(|| {
        ApiError::not_configured("the Success Score is not configured in this server")
    })?;
    let mut advisories = body.advisories.unwrap_or_default();
    if let Some(a) = body.advisory {
        advisories.push(a);
    }
    if advisories.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            "give advisory or advisories",
        )
        .with_field("advisories"));
    }
    if advisories.len() > MAX_ADD {
        return Err(ApiError::invalid(
            "advisories",
            format!("at most {MAX_ADD} advisories per request"),
        ));
    }
    if let Some(bad) = advisories
        .iter()
        .find(|a| a.trim().is_empty() || a.len() > 200)
    {
        return Err(ApiError::invalid(
            "advisories",
            format!("advisory names must be 1 to 200 characters, got {bad:?}"),
        ));
    }
    if let Some(o) = &body.os
        && !QUEUE_OS.contains(&o.as_str())
    {
        return Err(ApiError::invalid(
            "os",
            format!("unknown os {o:?}; expected one of {}", QUEUE_OS.join(", ")),
        ));
    }
    if body
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > 2000)
    {
        return Err(ApiError::invalid(
            "notes",
            "notes must be at most 2000 characters",
        ));
    }
    let req = AddRequest {
        advisories,
        os: body.os,
        priority: body.priority,
        queued_by: who.name,
        notes: body.notes,
        require_all_systems: body.require_all_systems,
    };
    let store = state.store.clone();
    let report =
        blocking(move || engine_queue::add_blocking(&store, &scorer, &req).map_err(queue_error))
            .await?;
    Ok((StatusCode::CREATED, Json(report)))
}

/// Query parameters of `DELETE /api/v1/queue/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Why (recorded in the audit log).
    reason: Option<String>,
}

/// Remove a queued item (operator); 409 when it is no longer `queued`.
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    if q.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::invalid(
            "reason",
            "reason must be at most 500 characters",
        ));
    }
    let store = state.store.clone();
    blocking(move || {
        engine_queue::remove(&store, id, &who.name, q.reason.as_deref()).map_err(ApiError::from)
    })
    .await?;
    Ok(Json(json!({ "id": id, "removed": true })))
}

/// Body of `PATCH /api/v1/queue/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// New operator priority.
    priority: i64,
}

/// Change an item's priority (operator).
pub async fn patch(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> ApiResult<Json<QueueItem>> {
    let id = parse_id("id", &id)?;
    if !(-1000..=1000).contains(&body.priority) {
        return Err(ApiError::invalid(
            "priority",
            format!(
                "priority must be between -1000 and 1000, got {}",
                body.priority
            ),
        ));
    }
    let store = state.store.clone();
    let item = blocking(move || {
        engine_queue::set_priority(&store, id, body.priority, &who.name).map_err(ApiError::from)
    })
    .await?;
    Ok(Json(item))
}

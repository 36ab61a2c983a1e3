//! Errata sync over HTTP: start one in the background, list and read runs.
//!
//! `POST /api/v1/sync` returns as soon as the run is claimed in `sync_runs` (202 with the
//! run to poll); the sync itself, and the auto-queue rule after it, run in a spawned task.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::engine::queue::{AutoQueueRule, auto_queue};
use crate::engine::score::Scorer;
use crate::engine::sync::uyuni_source::UyuniSource;
use crate::engine::sync::{SyncConfig, SyncError, SyncEvent, SyncObserver, run_sync};
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiQuery, ApiResult, page, parse_id};
use crate::store::audit::{self, AuditEntry};
use crate::store::sync_runs::{self, SyncRun, SyncStatus};
use crate::store::{Store, StoreError};

/// Starts syncs in the background with the service's UYUNI source, scorer and settings.
pub struct SyncRunner {
    source: Arc<UyuniSource>,
    scorer: Arc<Scorer>,
    config: SyncConfig,
    rule: AutoQueueRule,
    notifier: Option<crate::engine::notify::Notifier>,
}

impl std::fmt::Debug for SyncRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRunner")
            .field("config", &self.config)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// Hands the run id to the waiting handler once the run is claimed.
struct Claimed(Mutex<Option<oneshot::Sender<i64>>>);

impl SyncObserver for Claimed {
    fn event(&self, e: &SyncEvent) {
        if let SyncEvent::Started { run_id } = e
            && let Ok(mut slot) = self.0.lock()
            && let Some(tx) = slot.take()
        {
            let _ = tx.send(*run_id);
        }
    }
}

impl SyncRunner {
    /// A runner syncing from `source` with `config`, applying `rule` after each run.
    pub fn new(
        source: Arc<UyuniSource>,
        scorer: Arc<Scorer>,
        config: SyncConfig,
        rule: AutoQueueRule,
    ) -> Self {
        Self {
            source,
            scorer,
            config,
            rule,
            notifier: None,
        }
    }

    /// Raise `sync_failed` / `sync_partial` through `notifier` after each run.
    pub fn with_notifier(mut self, notifier: Option<crate::engine::notify::Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Start a sync in a spawned task and return its run id once the run is claimed.
    /// [`SyncError::AlreadyRunning`] when another sync holds the lock.
    pub async fn start(self: &Arc<Self>, store: Store) -> Result<i64, SyncError> {
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        let task = tokio::spawn(async move {
            let observer = Claimed(Mutex::new(Some(tx)));
            let report = run_sync(&store, &*me.source, &me.scorer, &me.config, &observer).await?;
            tracing::info!(
                run_id = report.run_id,
                status = report.status.as_str(),
                "sync finished"
            );
            if let Some(n) = &me.notifier {
                n.raise_sync_outcome(&report).await;
            }
            if report.status != SyncStatus::Failed && me.rule.enabled {
                let (scorer, rule) = (me.scorer.clone(), me.rule.clone());
                let done =
                    tokio::task::spawn_blocking(move || auto_queue(&store, &scorer, &rule)).await;
                match done {
                    Ok(Ok(r)) => tracing::info!(
                        run_id = report.run_id,
                        queued = r.added.len(),
                        "auto-queue after sync"
                    ),
                    Ok(Err(e)) => tracing::warn!(error = %e, "auto-queue after sync failed"),
                    Err(e) => tracing::warn!(error = %e, "auto-queue task failed"),
                }
            }
            Ok::<i64, SyncError>(report.run_id)
        });
        match rx.await {
            Ok(id) => Ok(id),
            // The task ended before claiming a run: it failed to start.
            Err(_) => match task.await {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(SyncError::Store(StoreError::Task(format!(
                    "sync task failed: {e}"
                )))),
            },
        }
    }
}

/// Start a sync (operator). 202 with the running run; 409 when one is running.
pub async fn start(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<(StatusCode, Json<SyncRun>)> {
    let runner = state.features().sync.clone().ok_or_else(|| {
        ApiError::not_configured(
            "errata sync is not configured in this server (set [uyuni] url, user and password)",
        )
    })?;
    let id = match runner.start(state.store.clone()).await {
        Ok(id) => id,
        Err(SyncError::AlreadyRunning(m)) => return Err(ApiError::conflict(m)),
        Err(SyncError::Store(e)) => return Err(e.into()),
    };
    let run = state
        .store
        .write(move |tx| {
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "sync.start".into(),
                    object_type: "sync_run".into(),
                    object_id: Some(id.to_string()),
                    reason: None,
                    details: Value::Null,
                },
            )?;
            sync_runs::get(tx, id)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Query parameters of the run listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    limit: Option<i64>,
}

/// Recent sync runs, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, _) = page(q.limit, None, 20, 200)?;
    let items = state
        .store
        .read(move |c| sync_runs::recent(c, limit as u32))
        .await?;
    Ok(Json(json!({ "limit": limit, "items": items })))
}

/// One sync run.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SyncRun>> {
    let id = parse_id("id", &id)?;
    Ok(Json(
        state.store.read(move |c| sync_runs::get(c, id)).await?,
    ))
}

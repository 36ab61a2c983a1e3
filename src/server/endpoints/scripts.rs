//! Lua scripts: the reload status of the set in service, and patch policies
//! (`policies/<name>.lua`) read, created, replaced and deleted over HTTP.
//!
//! A policy write is validated first exactly like `spm check`: the whole script root,
//! with the candidate in place of the file on disk, is loaded in a scratch VM against the
//! host's contracts. Errors in the candidate give 422 with `file:line` diagnostics and
//! nothing is written. A valid candidate is written to a temporary file in `policies/`
//! and renamed over the target (atomic on one filesystem); then the host reloads.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::contracts::Diagnostic;
use crate::host::reload::ScriptHost;
use crate::host::scriptset::{self, ScriptSet};
use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiJson, ApiResult};
use crate::store::audit::{self, AuditEntry};

/// Largest policy source accepted, bytes.
const MAX_SOURCE: usize = 256 * 1024;

/// Serialises policy writes so two requests cannot interleave validate and rename.
static WRITE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn host(state: &AppState) -> ApiResult<Arc<ScriptHost>> {
    state.features().scripts.clone().ok_or_else(|| {
        ApiError::not_configured("the Lua script host is not running in this server")
    })
}

/// A file of the set in service.
#[derive(Debug, Serialize)]
struct FileInfo {
    path: String,
    kind: Option<&'static str>,
    sha256: String,
    bytes: usize,
    compiled_ok: bool,
}

/// Generation, files with their hashes, and the errors of the last failed reload by file.
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let host = host(&state)?;
    let status = host.status();
    let set = host.current();
    let files: Vec<FileInfo> = set
        .files
        .values()
        .map(|f| FileInfo {
            path: f.path.clone(),
            kind: f.kind().map(|k| k.as_str()),
            sha256: scriptset::sha256_hex(f.content.as_bytes()),
            bytes: f.content.len(),
            compiled_ok: f.compiled_ok,
        })
        .collect();
    Ok(Json(json!({
        "generation": status.generation,
        "serving_generation": set.generation,
        "last_reload_at": status.last_reload_at,
        "last_error_per_file": status.last_error_per_file,
        "files": files,
    })))
}

/// Check a policy name: letters, digits, `_` and `-`, 1 to 64 characters.
fn policy_name(raw: &str) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(
            "path.name",
            format!("policy name must be 1 to 64 letters, digits, '_' or '-', got {raw:?}"),
        ))
    }
}

fn rel(name: &str) -> String {
    format!("policies/{name}.lua")
}

fn abs(root: &FsPath, name: &str) -> PathBuf {
    root.join("policies").join(format!("{name}.lua"))
}

/// Policy files of the root, by name.
fn policy_files(root: &FsPath) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = root.join("policies");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let p = entry.path();
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lua"))
            && policy_name(stem).is_ok()
        {
            out.push((stem.to_owned(), p));
        }
    }
    out.sort();
    Ok(out)
}

/// Policies on disk with their hashes (and whether the set in service has that content).
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let host = host(&state)?;
    let root = host.root().to_path_buf();
    let set = host.current();
    let items = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Value>> {
        let mut items = Vec::new();
        for (name, path) in policy_files(&root)? {
            let content = std::fs::read(&path)?;
            let sha = scriptset::sha256_hex(&content);
            let in_service = set
                .get(&rel(&name))
                .is_some_and(|f| scriptset::sha256_hex(f.content.as_bytes()) == sha);
            items.push(json!({
                "name": name,
                "path": rel(&name),
                "sha256": sha,
                "bytes": content.len(),
                "in_service": in_service,
            }));
        }
        Ok(items)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(json!({ "items": items })))
}

/// One policy's source.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let host = host(&state)?;
    let name = policy_name(&name)?;
    let path = abs(host.root(), &name);
    let content = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("policy {name} not found")));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let source = String::from_utf8(content)
        .map_err(|_| ApiError::internal(format!("{} is not UTF-8", rel(&name))))?;
    Ok(Json(json!({
        "name": name,
        "path": rel(&name),
        "sha256": scriptset::sha256_hex(source.as_bytes()),
        "source": source,
    })))
}

/// Body of a policy create or replace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// Lua source of the policy.
    source: String,
}

/// Body of `POST /patch/policies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// File name without `.lua`.
    name: String,
    /// Lua source of the policy.
    source: String,
}

/// 422 with the candidate's diagnostics.
fn invalid_source(diags: &[Diagnostic]) -> Response {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    let body = json!({
        "error": {
            "code": "invalid_script",
            "message": format!("the policy has {} error(s): {}", lines.len(), lines.join("; ")),
            "field": "source",
            "diagnostics": diags,
        }
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// Validate the whole root with `candidate` (or without the file, when `None`) in place of
/// `policies/<name>.lua`. Returns the errors that concern that file (for a delete: the
/// errors the removal would cause, i.e. those the set on disk does not already have).
async fn validate(
    host: &ScriptHost,
    name: &str,
    candidate: Option<&str>,
) -> ApiResult<Vec<Diagnostic>> {
    let after = load_errors(host, name, candidate).await?;
    let target = rel(name);
    if candidate.is_some() {
        return Ok(after.into_iter().filter(|d| d.path == target).collect());
    }
    let on_disk = tokio::fs::read_to_string(abs(host.root(), name))
        .await
        .map_err(ApiError::internal)?;
    let before = load_errors(host, name, Some(&on_disk)).await?;
    Ok(after.into_iter().filter(|d| !before.contains(d)).collect())
}

/// Every error of the root loaded with `candidate` as `policies/<name>.lua` (absent: none).
async fn load_errors(
    host: &ScriptHost,
    name: &str,
    candidate: Option<&str>,
) -> ApiResult<Vec<Diagnostic>> {
    let root = host.root().to_path_buf();
    let files = tokio::task::spawn_blocking({
        let root = root.clone();
        move || scriptset::scan(&root)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let target = rel(name);
    let files: Vec<_> = files.into_iter().filter(|(r, _)| *r != target).collect();
    let (mut sources, _unreadable) = tokio::task::spawn_blocking(move || {
        let r = scriptset::read_sources(&files);
        (r.0, r.1)
    })
    .await
    .map_err(ApiError::internal)?;
    if let Some(src) = candidate {
        sources.push((target.clone(), Arc::from(src)));
    }
    let report = ScriptSet::load_sources(&root, host.contracts(), 0, sources).await;
    Ok(report.errors().cloned().collect())
}

/// Write `source` to `policies/<name>.lua` through a temporary file and a rename.
async fn write_atomically(root: &FsPath, name: &str, source: String) -> ApiResult<()> {
    let dir = root.join("policies");
    let target = abs(root, name);
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{name}.lua.{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(source.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

fn check_source(source: &str) -> ApiResult<()> {
    if source.trim().is_empty() || source.len() > MAX_SOURCE {
        return Err(ApiError::invalid(
            "source",
            format!("source must be 1 to {MAX_SOURCE} bytes of Lua"),
        ));
    }
    Ok(())
}

async fn save(
    state: &AppState,
    who: Principal,
    name: String,
    source: String,
    create: bool,
) -> ApiResult<Response> {
    let host = host(state)?;
    check_source(&source)?;
    let _guard = WRITE_LOCK.lock().await;
    let exists = tokio::fs::try_exists(abs(host.root(), &name))
        .await
        .map_err(ApiError::internal)?;
    if create && exists {
        return Err(ApiError::conflict(format!(
            "policy {name} already exists; replace it with PUT /patch/policies/{name}"
        )));
    }
    if !create && !exists {
        return Err(ApiError::not_found(format!("policy {name} not found")));
    }
    let errors = validate(&host, &name, Some(&source)).await?;
    if !errors.is_empty() {
        return Ok(invalid_source(&errors));
    }
    let sha = scriptset::sha256_hex(source.as_bytes());
    write_atomically(host.root(), &name, source).await?;
    let outcome = host.reload().await;
    let action = if create {
        "policy.create"
    } else {
        "policy.update"
    };
    let (n, s) = (name.clone(), sha.clone());
    state
        .store
        .write(move |tx| {
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: action.into(),
                    object_type: "policy".into(),
                    object_id: Some(n),
                    reason: None,
                    details: json!({ "sha256": s }),
                },
            )
        })
        .await?;
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "name": name,
            "path": rel(&name),
            "sha256": sha,
            "reload": outcome,
        })),
    )
        .into_response())
}

/// Create a policy (admin). 201; 409 if it exists; 422 with diagnostics if invalid.
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<Response> {
    let name = policy_name(&body.name).map_err(|e| e.with_field("name"))?;
    save(&state, who, name, body.source, true).await
}

/// Replace a policy's source (admin). 404 if absent; 422 with diagnostics if invalid.
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> ApiResult<Response> {
    let name = policy_name(&name)?;
    save(&state, who, name, body.source, false).await
}

/// Delete a policy (admin); refused with 422 if other scripts would then fail to load
/// (errors the set already has do not block the delete).
pub async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let host = host(&state)?;
    let name = policy_name(&name)?;
    let _guard = WRITE_LOCK.lock().await;
    let path = abs(host.root(), &name);
    if !tokio::fs::try_exists(&path)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(format!("policy {name} not found")));
    }
    let errors = validate(&host, &name, None).await?;
    if !errors.is_empty() {
        return Ok(invalid_source(&errors));
    }
    tokio::fs::remove_file(&path)
        .await
        .map_err(ApiError::internal)?;
    let outcome = host.reload().await;
    let n = name.clone();
    state
        .store
        .write(move |tx| {
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "policy.delete".into(),
                    object_type: "policy".into(),
                    object_id: Some(n),
                    reason: None,
                    details: Value::Null,
                },
            )
        })
        .await?;
    Ok(Json(json!({ "name": name, "deleted": true, "reload": outcome })).into_response())
}

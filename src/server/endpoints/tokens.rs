//! Token administration: list, create, revoke (admin role). Every change is audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::auth::{Principal, Role, create_token, validate_token_name};
use crate::server::error::{ApiError, ApiJson, ApiResult};
use crate::store::audit::{self, AuditEntry};
use crate::store::tokens::{self, TokenInfo};

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    role: Role,
}

/// List tokens.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let items: Vec<TokenInfo> = state.store.read(tokens::list).await?;
    Ok(Json(json!({ "items": items })))
}

/// Create a token; the response carries the secret once.
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate_token_name(&body.name).map_err(|m| ApiError::invalid("name", m))?;
    let new = state
        .store
        .write(move |tx| {
            let new = create_token(tx, &body.name, body.role)?;
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "token.create".into(),
                    object_type: "token".into(),
                    object_id: Some(new.info.name.clone()),
                    reason: None,
                    details: json!({"role": new.info.role, "prefix": new.info.prefix}),
                },
            )?;
            Ok(new)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": new.token, "info": new.info })),
    ))
}

/// Revoke a token by name.
pub async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    validate_token_name(&name).map_err(|m| ApiError::invalid("path.name", m))?;
    let info = state
        .store
        .write(move |tx| {
            let info = tokens::revoke(tx, &name)?;
            audit::append(
                tx,
                &AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "token.revoke".into(),
                    object_type: "token".into(),
                    object_id: Some(info.name.clone()),
                    reason: None,
                    details: serde_json::Value::Null,
                },
            )?;
            Ok(info)
        })
        .await?;
    Ok(Json(info))
}

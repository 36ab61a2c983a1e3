//! `GET /api/v1/prometheus/targets`: Prometheus HTTP service discovery for the node
//! exporters of the test systems (`systems.role = 'test'` with an IP address).
//!
//! Needs a viewer token (the prototype served test-system addresses to anyone); configure
//! Prometheus with `http_sd_configs: [{url: ..., authorization: {credentials_file: ...}}]`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::error::ApiResult;
use crate::store::stats;

/// The target groups, one per system.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let port = state.config.node_exporter_port;
    let systems = state.store.read(stats::test_targets).await?;
    let groups: Vec<Value> = systems
        .into_iter()
        .map(|s| {
            let host = if s.ip.contains(':') {
                format!("[{}]:{port}", s.ip)
            } else {
                format!("{}:{port}", s.ip)
            };
            let groups: Vec<String> = serde_json::from_str(&s.groups).unwrap_or_default();
            json!({
                "targets": [host],
                "labels": {
                    "spm_system_id": s.id.to_string(),
                    "spm_name": s.name,
                    "spm_os": s.os,
                    "spm_env": s.env.unwrap_or_default(),
                    "spm_groups": groups.join(","),
                }
            })
        })
        .collect();
    Ok(Json(Value::Array(groups)))
}

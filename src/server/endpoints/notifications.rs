//! Notifications: list, detail, mark read.
//!
//! Marking read needs only the viewer role: it is the reader's own bookkeeping (the
//! `read_by` column records the token name), not a decision about the fleet.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::auth::Principal;
use crate::server::error::{ApiError, ApiJson, ApiQuery, ApiResult, page, parse_id};
use crate::store::notifications::{self, ListFilter};

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    unread: Option<bool>,
    event: Option<String>,
    severity: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const SEVERITIES: &[&str] = &["info", "warning", "critical"];

/// List notifications, newest first, with the unread count.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page(q.limit, q.offset, 50, 500)?;
    if let Some(s) = &q.severity
        && !SEVERITIES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "severity",
            format!(
                "unknown severity {s:?}; expected one of {}",
                SEVERITIES.join(", ")
            ),
        ));
    }
    let offset =
        u32::try_from(offset).map_err(|_| ApiError::invalid("offset", "offset is too large"))?;
    let filter = ListFilter {
        unread_only: q.unread.unwrap_or(false),
        event: q.event,
        severity: q.severity,
        limit: Some(limit as u32),
        offset: Some(offset),
    };
    let (unread, items) = state
        .store
        .read(move |c| {
            Ok((
                notifications::unread_count(c)?,
                notifications::list(c, &filter)?,
            ))
        })
        .await?;
    Ok(Json(json!({
        "total_unread": unread,
        "limit": limit,
        "offset": offset,
        "items": items,
    })))
}

/// One notification with its delivery attempts.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let (n, deliveries) = state
        .store
        .read(move |c| {
            Ok((
                notifications::get(c, id)?,
                notifications::deliveries(c, id)?,
            ))
        })
        .await?;
    Ok(Json(json!({ "notification": n, "deliveries": deliveries })))
}

/// Mark one notification read.
pub async fn mark_one(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("id", &id)?;
    let changed = state
        .store
        .write(move |tx| notifications::mark_read(tx, id, &who.name))
        .await?;
    Ok(Json(json!({ "id": id, "marked_read": changed })))
}

/// Body of `POST /api/v1/notifications/mark-read`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    ids: Vec<i64>,
}

/// Mark several notifications read, all or nothing (an unknown id changes nothing).
pub async fn mark_many(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<MarkBody>,
) -> ApiResult<Json<Value>> {
    if body.ids.is_empty() || body.ids.len() > 1000 {
        return Err(ApiError::invalid(
            "ids",
            "ids must hold 1 to 1000 notification ids",
        ));
    }
    if let Some(bad) = body.ids.iter().find(|i| **i < 1) {
        return Err(ApiError::invalid(
            "ids",
            format!("ids must be positive integers, got {bad}"),
        ));
    }
    let n = state
        .store
        .write(move |tx| {
            let mut n = 0;
            for id in &body.ids {
                if notifications::mark_read(tx, *id, &who.name)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
    Ok(Json(json!({ "marked_read": n })))
}

fn notifier(state: &AppState) -> ApiResult<std::sync::Arc<crate::engine::notify::Notifier>> {
    state
        .features()
        .notifier
        .clone()
        .ok_or_else(|| ApiError::not_configured("notifications are not configured in this server"))
}

/// Send a test message to every configured channel now (admin) and report per channel.
pub async fn send_test(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let notifier = notifier(&state)?;
    let channels = notifier.send_test().await.map_err(ApiError::internal)?;
    let summary: Vec<Value> = channels
        .iter()
        .map(|c| json!({"channel": c.channel, "ok": c.ok}))
        .collect();
    state
        .store
        .write(move |tx| {
            crate::store::audit::append(
                tx,
                &crate::store::audit::AuditEntry {
                    actor: who.name.clone(),
                    source_addr: who.source_addr.clone(),
                    action: "notification.test".into(),
                    object_type: "notification".into(),
                    object_id: None,
                    reason: None,
                    details: json!({ "channels": summary }),
                },
            )
        })
        .await?;
    let all_ok = channels.iter().all(|c| c.ok);
    Ok(Json(json!({
        "sent": !channels.is_empty(),
        "all_ok": all_ok,
        "channels": channels,
    })))
}

/// A webhook URL with its path and query hidden (they often carry the secret).
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let hidden = rest.len() > authority.len();
            // Drop any user:password@ part.
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
        }
        None => "…".to_owned(),
    }
}

/// The notification settings, with every secret replaced by whether it is set.
pub async fn config(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let notifier = notifier(&state)?;
    let c = notifier.config();
    let smtp = c.smtp.as_ref().map(|s| {
        json!({
            "host": s.host,
            "port": s.effective_port(),
            "security": format!("{:?}", s.security).to_lowercase(),
            "username": s.username,
            "password_set": s.password.is_some() || s.password_file.is_some(),
            "from": s.from,
            "ca_file": s.ca_file,
            "timeout_s": s.timeout.as_secs_f64(),
        })
    });
    let webhooks: Vec<Value> = c
        .webhooks
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "url": redact_url(&w.url),
                "auth_header_set": w.auth_header.is_some(),
                "hmac_secret_set": w.hmac_secret.is_some(),
                "events": w.events,
                "timeout_s": w.timeout.as_secs_f64(),
            })
        })
        .collect();
    let routes: serde_json::Map<String, Value> = c
        .routes
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                json!({
                    "enabled": r.enabled,
                    "channels": r.channels.iter().map(|ch| ch.as_str()).collect::<Vec<_>>(),
                    "min_severity": r.min_severity.map(|s| s.as_str()),
                }),
            )
        })
        .collect();
    Ok(Json(json!({
        "email_enabled": notifier.has_mailer(),
        "smtp": smtp,
        "recipients": c.recipients,
        "webhooks": webhooks,
        "routes": routes,
        "email_min_severity": c.email_min_severity.as_str(),
        "webhook_min_severity": c.webhook_min_severity.as_str(),
        "digest": {
            "enabled": c.digest.enabled,
            "time": c.digest.time,
            "timezone": c.digest.timezone,
        },
        "retry": {
            "max_attempts": c.retry.max_attempts,
            "base_delay_s": c.retry.base_delay.as_secs_f64(),
            "max_delay_s": c.retry.max_delay.as_secs_f64(),
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn webhook_urls_lose_path_query_and_credentials() {
        assert_eq!(
            redact_url("https://hooks.example.com/services/T0/B0/secret?x=1"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_url("not a url"), "…");
    }
}

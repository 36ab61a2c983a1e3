//! The dashboard's POST forms. Every form carries the session's CSRF token; a missing or
//! wrong token, a foreign `Origin`, or a role that does not allow the action is refused
//! with a 403 page and changes nothing. Each change writes its audit row in the same
//! transaction, with the session's token name as actor and the socket address as source.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::session::{self, COOKIE, LOGIN_COOKIE};
use super::{PageError, PageResult, Signed};
use crate::engine::approvals::{self, Actor as ApprovalActor, ApprovalError, Decision, Rules};
use crate::engine::queue::{self as engine_queue, AddRequest, QueueError};
use crate::engine::rollout::rollback;
use crate::server::AppState;
use crate::server::auth::{self, Role};
use crate::store::audit::{self, AuditEntry};
use crate::store::dashboard::{self as db, Actor};
use crate::store::queue::QUEUE_OS;
use crate::store::{StoreError, notifications};

/// Longest accepted reason, in characters.
pub const MAX_REASON: usize = 2000;

/// Refuse a POST whose `Origin` names another site (browsers send it on form posts).
fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    // No Origin, or the opaque "null" (privacy contexts): the CSRF token decides alone.
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form was posted from another site; refused",
        ))
    }
}

/// CSRF, origin and role checks shared by every form of a signed-in session.
fn guard(signed: &Signed, headers: &HeaderMap, csrf: &str, role: Role) -> Result<(), PageError> {
    check_origin(headers)?;
    if !signed.session.csrf_matches(csrf) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong; reload the page and try again",
        ));
    }
    signed.require(role)
}

fn actor(signed: &Signed) -> Actor {
    Actor {
        identity: signed.principal.name.clone(),
        source_addr: signed.principal.source_addr.clone(),
    }
}

/// Redirect to `to` with a one-time message on the next page.
fn done(state: &AppState, signed: &Signed, to: &str, kind: &str, text: String) -> Response {
    state.dashboard.sessions.set_flash(&signed.id, kind, text);
    Redirect::to(to).into_response()
}

/// A store refusal becomes a message on the page the user came from; other failures an
/// error page.
fn refused(
    state: &AppState,
    signed: &Signed,
    to: &str,
    e: StoreError,
) -> Result<Response, PageError> {
    match e {
        StoreError::Conflict(_) | StoreError::Transition(_) | StoreError::NotFound { .. } => {
            Ok(done(state, signed, to, "error", e.to_string()))
        }
        other => Err(PageError::internal(other)),
    }
}

/// Trim a reason; check length and control characters.
fn clean_reason(reason: &str, required: bool, verb: &str) -> Result<Option<String>, String> {
    let r = reason.trim();
    if r.is_empty() {
        return if required {
            Err(format!("a reason is required to {verb}"))
        } else {
            Ok(None)
        };
    }
    if r.chars().count() > MAX_REASON {
        return Err(format!("the reason is longer than {MAX_REASON} characters"));
    }
    if r.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err("the reason contains control characters".to_string());
    }
    Ok(Some(r.to_string()))
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

fn login_again(state: &AppState, status: StatusCode, message: &str) -> PageResult {
    let csrf = session::random_token();
    let html = state.dashboard.templates.render(
        "login.html",
        &json!({ "csrf": csrf, "error": message, "dev_insecure": state.dev_insecure }),
    )?;
    let mut resp = (status, Html(html)).into_response();
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &csrf,
        std::time::Duration::from_secs(3600),
        state.dashboard.config.secure_cookie,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `POST /ui/login`: verify the token like the API, open a session, set the cookie.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    super::ClientAddr(source_addr): super::ClientAddr,
    Form(form): Form<LoginForm>,
) -> PageResult {
    check_origin(&headers)?;
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty()
        || form.csrf.is_empty()
        || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes()))
    {
        return login_again(
            &state,
            StatusCode::FORBIDDEN,
            "the sign-in form expired; please try again",
        );
    }
    let (name, role, hash) = if state.dev_insecure {
        ("dev".to_string(), Role::Admin, String::new())
    } else {
        match auth::verify_token(&state, &form.token).await {
            Ok(v) => v,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                return login_again(&state, StatusCode::UNAUTHORIZED, &e.message);
            }
            Err(e) => return Err(PageError::new(e.status, e.message)),
        }
    };
    let Some(id) = state
        .dashboard
        .sessions
        .create(name.clone(), role, hash)
        .await
    else {
        return Err(PageError::internal("session table unavailable"));
    };
    let entry = AuditEntry {
        actor: name,
        source_addr,
        action: "dashboard.sign_in".to_string(),
        object_type: "session".to_string(),
        object_id: None,
        reason: None,
        details: json!({ "role": role.as_str() }),
    };
    state
        .store
        .write(move |tx| audit::append(tx, &entry))
        .await?;
    let secure = state.dashboard.config.secure_cookie;
    let mut resp = Redirect::to("/ui/").into_response();
    let h = resp.headers_mut();
    for c in [
        session::set_cookie(COOKIE, &id, state.dashboard.sessions.ttl(), secure),
        session::clear_cookie(LOGIN_COOKIE, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: end the session.
pub async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Viewer)?;
    state.dashboard.sessions.remove(&signed.id).await;
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(
        COOKIE,
        state.dashboard.config.secure_cookie,
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The approval form.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    /// `approve`, `reject` or `snooze`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    /// Snooze length in hours.
    snooze_hours: Option<String>,
    /// The test whose evidence the page showed.
    evidence_test_id: Option<String>,
}

/// `POST /ui/approvals/{id}/decide`: approve, reject or snooze with a reason.
pub async fn decide(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Approver)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such queue item"))?;
    let back = format!("/ui/approvals/{id}");
    let verb = match form.action.as_str() {
        v @ ("approve" | "reject" | "snooze") => v,
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown decision {other:?}; expected approve, reject or snooze"),
            ));
        }
    };
    let reason = match clean_reason(&form.reason, verb != "approve", verb) {
        Ok(r) => r,
        Err(msg) => return Ok(done(&state, &signed, &back, "error", msg)),
    };
    let decision = match verb {
        "approve" => Decision::Approve { reason },
        "reject" => Decision::Reject {
            reason: reason.unwrap_or_default(),
        },
        _ => {
            let hours = form
                .snooze_hours
                .as_deref()
                .and_then(|h| h.trim().parse::<i64>().ok())
                .filter(|h| (1..=24 * 30).contains(h));
            let Some(hours) = hours else {
                return Ok(done(
                    &state,
                    &signed,
                    &back,
                    "error",
                    "choose how long to snooze (1 hour to 30 days)".to_string(),
                ));
            };
            Decision::Snooze {
                until: chrono::Utc::now() + chrono::Duration::hours(hours),
                reason: reason.unwrap_or_default(),
            }
        }
    };
    let evidence = form
        .evidence_test_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<i64>().ok());
    let who = ApprovalActor {
        identity: signed.principal.name.clone(),
        source_addr: signed.principal.source_addr.clone(),
    };
    let rules = Rules {
        four_eyes: state.dashboard.config.four_eyes,
    };
    let store = state.store.clone();
    let d = decision.clone();
    let res = tokio::task::spawn_blocking(move || {
        approvals::decide(&store, id, &d, evidence, &who, rules)
    })
    .await
    .map_err(PageError::internal)?;
    match res {
        Ok(decided) => {
            let text = match decision {
                Decision::Approve { .. } => format!("Queue item {id} approved."),
                Decision::Reject { .. } => format!("Queue item {id} rejected."),
                Decision::Snooze { .. } => format!(
                    "Queue item {id} snoozed until {}.",
                    decided.item.snooze_until.unwrap_or_default()
                ),
            };
            Ok(done(&state, &signed, "/ui/approvals", "ok", text))
        }
        Err(ApprovalError::Store(e)) => refused(&state, &signed, &back, e),
        Err(e) => Ok(done(&state, &signed, &back, "error", e.to_string())),
    }
}

/// The add-to-queue form.
#[derive(Debug, Deserialize)]
pub struct QueueAddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    advisory: String,
    #[serde(default)]
    os: String,
    priority: Option<String>,
}

fn parse_priority(p: Option<&str>) -> Result<i64, String> {
    match p.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(0),
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|p| (-100..=100).contains(p))
            .ok_or_else(|| format!("priority {p:?} must be a whole number from -100 to 100")),
    }
}

/// `POST /ui/queue/add`: queue an advisory for one OS.
pub async fn queue_add(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<QueueAddForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Operator)?;
    let advisory = form.advisory.trim().to_string();
    let os = form.os.trim().to_string();
    let back = "/ui/queue";
    if advisory.is_empty() || advisory.len() > 100 {
        return Ok(done(
            &state,
            &signed,
            back,
            "error",
            "give an advisory name (at most 100 characters)".into(),
        ));
    }
    if !QUEUE_OS.contains(&os.as_str()) {
        return Ok(done(
            &state,
            &signed,
            back,
            "error",
            format!("OS {os:?} must be one of {}", QUEUE_OS.join(", ")),
        ));
    }
    let priority = match parse_priority(form.priority.as_deref()) {
        Ok(p) => p,
        Err(m) => return Ok(done(&state, &signed, back, "error", m)),
    };
    let Some(scorer) = state.dashboard.scorer.clone() else {
        return Err(PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the [score] configuration does not compile; queueing is disabled (see the server log)",
        ));
    };
    let req = AddRequest {
        advisories: vec![advisory.clone()],
        os: Some(os.clone()),
        priority,
        queued_by: signed.principal.name.clone(),
        notes: None,
        require_all_systems: false,
    };
    let store = state.store.clone();
    let res =
        tokio::task::spawn_blocking(move || engine_queue::add_blocking(&store, &scorer, &req))
            .await
            .map_err(PageError::internal)?;
    match res {
        Ok(report) => {
            let mut parts: Vec<String> = report
                .added
                .iter()
                .map(|i| {
                    format!(
                        "{} for {} queued as item {} (score {}).",
                        i.advisory, i.os, i.id, i.score
                    )
                })
                .collect();
            parts.extend(report.superseded.iter().map(|s| {
                format!(
                    "Item {} ({} for {}) superseded by {} ({}).",
                    s.id, s.advisory, s.os, s.superseded_by, s.reason
                )
            }));
            parts.extend(
                report
                    .skipped
                    .iter()
                    .map(|s| format!("{} not queued: {}.", s.advisory, s.reason)),
            );
            let kind = if report.added.is_empty() {
                "error"
            } else {
                "ok"
            };
            Ok(done(&state, &signed, back, kind, parts.join(" ")))
        }
        Err(QueueError::Invalid(m)) => Ok(done(&state, &signed, back, "error", m)),
        Err(QueueError::Store(e)) => refused(&state, &signed, back, e),
    }
}

/// The priority form.
#[derive(Debug, Deserialize)]
pub struct PriorityForm {
    #[serde(default)]
    csrf: String,
    priority: Option<String>,
}

/// `POST /ui/queue/{id}/priority`.
pub async fn queue_priority(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<PriorityForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Operator)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such queue item"))?;
    let back = "/ui/queue";
    let priority = match parse_priority(form.priority.as_deref()) {
        Ok(p) => p,
        Err(m) => return Ok(done(&state, &signed, back, "error", m)),
    };
    let (store, who) = (state.store.clone(), signed.principal.name.clone());
    let res =
        tokio::task::spawn_blocking(move || engine_queue::set_priority(&store, id, priority, &who))
            .await
            .map_err(PageError::internal)?;
    match res {
        Ok(_) => Ok(done(
            &state,
            &signed,
            back,
            "ok",
            format!("Priority of item {id} set to {priority}."),
        )),
        Err(e) => refused(&state, &signed, back, e),
    }
}

/// `POST /ui/queue/{id}/remove`: delete a still-queued item.
pub async fn queue_remove(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Operator)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such queue item"))?;
    let back = "/ui/queue";
    let (store, who) = (state.store.clone(), signed.principal.name.clone());
    let res = tokio::task::spawn_blocking(move || engine_queue::remove(&store, id, &who, None))
        .await
        .map_err(PageError::internal)?;
    match res {
        Ok(()) => Ok(done(
            &state,
            &signed,
            back,
            "ok",
            format!("Queue item {id} removed."),
        )),
        Err(e) => refused(&state, &signed, back, e),
    }
}

/// The cancel form.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/runs/{id}/cancel`: ask an active run to stop.
pub async fn run_cancel(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Operator)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such patch run"))?;
    let back = format!("/ui/runs/{id}");
    let reason = match clean_reason(&form.reason, true, "cancel a run") {
        Ok(r) => r.unwrap_or_default(),
        Err(m) => return Ok(done(&state, &signed, &back, "error", m)),
    };
    let who = actor(&signed);
    let res = state
        .store
        .write(move |tx| db::cancel_run(tx, id, &reason, &who))
        .await;
    match res {
        Ok(_) => Ok(done(
            &state,
            &signed,
            &back,
            "ok",
            format!("Run {id} is cancelling; hosts in flight finish first."),
        )),
        Err(e) => refused(&state, &signed, &back, e),
    }
}

/// `POST /ui/notifications/{id}/read`.
pub async fn notification_read(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Viewer)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such notification"))?;
    let by = signed.principal.name.clone();
    let res = state
        .store
        .write(move |tx| notifications::mark_read(tx, id, &by))
        .await;
    match res {
        Ok(_) => Ok(Redirect::to("/ui/notifications").into_response()),
        Err(e) => refused(&state, &signed, "/ui/notifications", e),
    }
}

/// `POST /ui/notifications/read-all`: mark every unread notification read.
pub async fn notifications_read_all(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    guard(&signed, &headers, &form.csrf, Role::Viewer)?;
    let by = signed.principal.name.clone();
    let n = state
        .store
        .write(move |tx| {
            let mut n = 0;
            for row in db::unread_notifications(tx, 10_000)? {
                if let Some(id) = row["id"].as_i64()
                    && notifications::mark_read(tx, id, &by)?
                {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
    Ok(done(
        &state,
        &signed,
        "/ui/notifications",
        "ok",
        format!("{n} notifications marked read."),
    ))
}

/// `POST /ui/runs/{id}/rollback`: roll back the selected hosts (repeated `host` fields).
pub async fn run_rollback(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> PageResult {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body)
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("bad form: {e}")))?;
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    guard(&signed, &headers, field("csrf"), Role::Operator)?;
    let id = id
        .parse::<i64>()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "no such patch run"))?;
    let back = format!("/ui/runs/{id}");
    let mut hosts = Vec::new();
    for (_, v) in pairs.iter().filter(|(n, _)| n == "host") {
        match v.parse::<i64>() {
            Ok(h) if !hosts.contains(&h) => hosts.push(h),
            Ok(_) => {}
            Err(_) => {
                return Err(PageError::new(
                    StatusCode::BAD_REQUEST,
                    format!("host {v:?} is not a host id"),
                ));
            }
        }
    }
    let reason = match clean_reason(field("reason"), true, "roll back hosts") {
        Ok(r) => r.unwrap_or_default(),
        Err(m) => return Ok(done(&state, &signed, &back, "error", m)),
    };
    let (names, os) = match state
        .store
        .read(move |c| db::rollback_selection(c, id, &hosts))
        .await
    {
        Ok(v) => v,
        Err(e) => return refused(&state, &signed, &back, e),
    };
    let Some(client) = state.features().uyuni.clone() else {
        return Ok(done(
            &state,
            &signed,
            &back,
            "error",
            "rolling back needs the UYUNI connection, and this server has none (uyuni.url is not set); nothing was changed".to_string(),
        ));
    };
    // The rollback runs UYUNI actions for minutes: it continues in the background and the
    // run page shows the hosts move rolling_back → rolled_back | rollback_failed.
    let store = state.store.clone();
    let who = signed.principal.name.clone();
    let n = names.len();
    tokio::spawn(async move {
        let selection = rollback::Selection::Hosts(names);
        match rollback::rollback(&client, &store, id, &os, &selection, &who, &reason).await {
            Ok(out) => tracing::info!(run = id, hosts = out.len(), "dashboard rollback finished"),
            Err(e) => tracing::error!(run = id, error = %e, "dashboard rollback failed"),
        }
    });
    Ok(done(
        &state,
        &signed,
        &back,
        "ok",
        format!("Rollback of {n} host(s) of run {id} started; this page follows their progress."),
    ))
}

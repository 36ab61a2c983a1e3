//! The route table: the single list both the router and the OpenAPI document come from.
//! Add a feature's endpoints here (one [`RouteSpec`] each) and they are served, protected
//! by the declared role, and documented.

use axum::routing::{MethodRouter, delete, get, patch, post, put};

use super::auth::Role;
use super::{AppState, endpoints, health, metrics, openapi};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token (liveness only).
    Public,
    /// A token whose role allows this role.
    Role(Role),
    /// `/metrics`: a viewer token, unless `metrics_public` is set in the server config.
    Metrics,
}

/// HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// Lower-case name as OpenAPI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// A query parameter for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// JSON schema type (`string`, `integer`, `boolean`).
    pub ty: &'static str,
    /// Description.
    pub doc: &'static str,
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// Method.
    pub method: Method,
    /// Path in axum syntax (`/api/v1/queue/{id}`), identical in OpenAPI.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Query parameters.
    pub query: &'static [Param],
    /// Name of the request body schema in `components.schemas`, when it takes one.
    pub body: Option<&'static str>,
    /// Success status code.
    pub success: u16,
    /// The handler.
    pub handler: fn() -> MethodRouter<AppState>,
}

const PAGE: [Param; 2] = [
    Param {
        name: "limit",
        ty: "integer",
        doc: "page size (default 50, max 500)",
    },
    Param {
        name: "offset",
        ty: "integer",
        doc: "rows to skip (default 0)",
    },
];

const QUEUE_QUERY: &[Param] = &[
    Param {
        name: "status",
        ty: "string",
        doc: "queue status, or several separated by commas",
    },
    Param {
        name: "os",
        ty: "string",
        doc: "ubuntu, debian or rhel",
    },
    Param {
        name: "q",
        ty: "string",
        doc: "substring of the advisory name or synopsis",
    },
    PAGE[0],
    PAGE[1],
];

const AUDIT_QUERY: &[Param] = &[
    Param {
        name: "actor",
        ty: "string",
        doc: "exact actor (token name)",
    },
    Param {
        name: "object_type",
        ty: "string",
        doc: "exact object type",
    },
    Param {
        name: "object_id",
        ty: "string",
        doc: "exact object id",
    },
    Param {
        name: "before_id",
        ty: "integer",
        doc: "cursor: entries with a smaller id (next_before_id of the previous page)",
    },
    PAGE[0],
];

const NOTIFICATION_QUERY: &[Param] = &[
    Param {
        name: "unread",
        ty: "boolean",
        doc: "only unread notifications",
    },
    Param {
        name: "event",
        ty: "string",
        doc: "exact event type (test_failed, pending_approval, ...)",
    },
    Param {
        name: "severity",
        ty: "string",
        doc: "info, warning or critical",
    },
    PAGE[0],
    PAGE[1],
];

const ERRATA_QUERY: &[Param] = &[
    Param {
        name: "os",
        ty: "string",
        doc: "ubuntu, debian, rhel or unknown",
    },
    Param {
        name: "severity",
        ty: "string",
        doc: "critical, high, medium, low, unknown; several separated by commas",
    },
    Param {
        name: "type",
        ty: "string",
        doc: "security, bugfix, enhancement; several separated by commas",
    },
    Param {
        name: "stale",
        ty: "boolean",
        doc: "true: only relevances gone stale; false or absent: only current ones",
    },
    Param {
        name: "q",
        ty: "string",
        doc: "substring of the advisory name or synopsis (case-insensitive)",
    },
    PAGE[0],
    PAGE[1],
];

const SYNC_RUNS_QUERY: &[Param] = &[Param {
    name: "limit",
    ty: "integer",
    doc: "how many runs (default 20, max 200)",
}];

const OS_QUERY: &[Param] = &[Param {
    name: "os",
    ty: "string",
    doc: "only this OS (default: every OS the advisory is relevant to)",
}];

const REMOVE_QUERY: &[Param] = &[Param {
    name: "reason",
    ty: "string",
    doc: "why (recorded in the audit log)",
}];

const TESTS_QUERY: &[Param] = &[
    Param {
        name: "queue_id",
        ty: "integer",
        doc: "only tests of this queue item",
    },
    Param {
        name: "status",
        ty: "string",
        doc: "running, passed, failed, error, aborted or interrupted",
    },
    Param {
        name: "limit",
        ty: "integer",
        doc: "how many (default 50, max 500)",
    },
];

const RUNS_QUERY: &[Param] = &[Param {
    name: "limit",
    ty: "integer",
    doc: "how many runs (default 50, max 500)",
}];

const COMPLIANCE_QUERY: &[Param] = &[Param {
    name: "by",
    ty: "string",
    doc: "policy, env or os: counts per group instead of per system",
}];

const ADVISORY_QUERY: &[Param] = &[
    Param {
        name: "cve",
        ty: "string",
        doc: "one CVE: its errata and the systems that still need them",
    },
    Param {
        name: "limit",
        ty: "integer",
        doc: "without cve: how many CVEs (default 100, max 1000)",
    },
];

/// Every route the server answers.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/health/live",
        access: Access::Public,
        tag: "health",
        summary: "Liveness: the process answers (no token, no details)",
        query: &[],
        body: None,
        success: 200,
        handler: || get(health::live),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/health",
        access: Access::Role(Role::Viewer),
        tag: "health",
        summary: "Component health from cached probes (database, UYUNI, Prometheus) and queue counts",
        query: &[],
        body: None,
        success: 200,
        handler: || get(health::health),
    },
    RouteSpec {
        method: Method::Get,
        path: "/metrics",
        access: Access::Metrics,
        tag: "metrics",
        summary: "Prometheus metrics (viewer token unless metrics_public = true)",
        query: &[],
        body: None,
        success: 200,
        handler: || get(metrics::scrape),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/openapi.json",
        access: Access::Role(Role::Viewer),
        tag: "meta",
        summary: "This OpenAPI 3 document",
        query: &[],
        body: None,
        success: 200,
        handler: || get(openapi::serve_document),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/queue",
        access: Access::Role(Role::Viewer),
        tag: "queue",
        summary: "List queue items in queue order, with filters and pagination",
        query: QUEUE_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::queue::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/queue/{id}",
        access: Access::Role(Role::Viewer),
        tag: "queue",
        summary: "One queue item with CVEs, score breakdown and tests",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::queue::detail),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/queue",
        access: Access::Role(Role::Operator),
        tag: "queue",
        summary: "Queue one or many advisories for an OS (or every OS they are relevant to)",
        query: &[],
        body: Some("QueueAdd"),
        success: 201,
        handler: || post(endpoints::queue::add),
    },
    RouteSpec {
        method: Method::Delete,
        path: "/api/v1/queue/{id}",
        access: Access::Role(Role::Operator),
        tag: "queue",
        summary: "Remove a queued item (409 once it has left the queued state)",
        query: REMOVE_QUERY,
        body: None,
        success: 200,
        handler: || delete(endpoints::queue::remove),
    },
    RouteSpec {
        method: Method::Patch,
        path: "/api/v1/queue/{id}",
        access: Access::Role(Role::Operator),
        tag: "queue",
        summary: "Change a queue item's priority",
        query: &[],
        body: Some("QueuePatch"),
        success: 200,
        handler: || patch(endpoints::queue::patch),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/risk/{advisory}",
        access: Access::Role(Role::Viewer),
        tag: "errata",
        summary: "Success Score of an advisory per OS, every penalty and bonus explained",
        query: OS_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::errata::risk),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/errata",
        access: Access::Role(Role::Viewer),
        tag: "errata",
        summary: "Synced advisories per OS, with filters and pagination",
        query: ERRATA_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::errata::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/errata/{advisory}",
        access: Access::Role(Role::Viewer),
        tag: "errata",
        summary: "One advisory with packages, CVEs and per-OS relevance",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::errata::detail),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/sync",
        access: Access::Role(Role::Operator),
        tag: "sync",
        summary: "Start an errata sync in the background; 202 with the run to poll, 409 if one is running",
        query: &[],
        body: None,
        success: 202,
        handler: || post(endpoints::sync::start),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/sync/runs",
        access: Access::Role(Role::Viewer),
        tag: "sync",
        summary: "Recent sync runs, newest first",
        query: SYNC_RUNS_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::sync::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/sync/runs/{id}",
        access: Access::Role(Role::Viewer),
        tag: "sync",
        summary: "One sync run with its figures and failures",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::sync::detail),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/scripts",
        access: Access::Role(Role::Viewer),
        tag: "scripts",
        summary: "Lua scripts in service: generation, files with hashes, last reload errors per file",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::scripts::status),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/policies",
        access: Access::Role(Role::Viewer),
        tag: "policies",
        summary: "Patch policies on disk (policies/*.lua) with hashes",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::scripts::list),
    },
    RouteSpec {
        method: Method::Post,
        path: "/patch/policies",
        access: Access::Role(Role::Admin),
        tag: "policies",
        summary: "Create a policy from Lua source; validated like spm check (422 with file:line diagnostics)",
        query: &[],
        body: Some("PolicyCreate"),
        success: 201,
        handler: || post(endpoints::scripts::create),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/policies/{name}",
        access: Access::Role(Role::Viewer),
        tag: "policies",
        summary: "One policy's Lua source",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::scripts::get),
    },
    RouteSpec {
        method: Method::Put,
        path: "/patch/policies/{name}",
        access: Access::Role(Role::Admin),
        tag: "policies",
        summary: "Replace a policy's Lua source; validated first, written atomically, then reloaded",
        query: &[],
        body: Some("PolicySource"),
        success: 200,
        handler: || put(endpoints::scripts::update),
    },
    RouteSpec {
        method: Method::Delete,
        path: "/patch/policies/{name}",
        access: Access::Role(Role::Admin),
        tag: "policies",
        summary: "Delete a policy (refused with 422 if the remaining scripts would not load)",
        query: &[],
        body: None,
        success: 200,
        handler: || delete(endpoints::scripts::remove),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/notifications/test",
        access: Access::Role(Role::Admin),
        tag: "notifications",
        summary: "Send a test message to every configured channel now; report per channel",
        query: &[],
        body: None,
        success: 200,
        handler: || post(endpoints::notifications::send_test),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/notifications/config",
        access: Access::Role(Role::Viewer),
        tag: "notifications",
        summary: "Notification settings with secrets redacted",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::notifications::config),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/reports/summary",
        access: Access::Role(Role::Viewer),
        tag: "reports",
        summary: "Queue counts, pending approvals with the oldest wait, tests of the last 24 h, last sync",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::reports::summary),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/tests/run",
        access: Access::Role(Role::Operator),
        tag: "tests",
        summary: "Test a queue item now; 202 with the item and the started test (409 if not testable)",
        query: &[],
        body: Some("TestRun"),
        success: 202,
        handler: || post(endpoints::tests::run),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/tests",
        access: Access::Role(Role::Viewer),
        tag: "tests",
        summary: "Tests, newest first",
        query: TESTS_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::tests::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/tests/{id}",
        access: Access::Role(Role::Viewer),
        tag: "tests",
        summary: "One test with its phases, rollbacks and evidence",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::tests::detail),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/tests/{id}/abort",
        access: Access::Role(Role::Operator),
        tag: "tests",
        summary: "Abort a running test (it rolls back); 409 when it is not running",
        query: &[],
        body: Some("TestAbort"),
        success: 200,
        handler: || post(endpoints::tests::abort),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/approvals/pending",
        access: Access::Role(Role::Viewer),
        tag: "approvals",
        summary: "Queue items waiting for an approval decision, oldest first",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::approvals::pending),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/approvals/{queue_id}/approve",
        access: Access::Role(Role::Approver),
        tag: "approvals",
        summary: "Approve a pending item (four-eyes enforced; token name and address recorded)",
        query: &[],
        body: Some("Approve"),
        success: 200,
        handler: || post(endpoints::approvals::approve),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/approvals/{queue_id}/reject",
        access: Access::Role(Role::Approver),
        tag: "approvals",
        summary: "Reject a pending item (reason required)",
        query: &[],
        body: Some("Reject"),
        success: 200,
        handler: || post(endpoints::approvals::reject),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/approvals/{queue_id}/snooze",
        access: Access::Role(Role::Approver),
        tag: "approvals",
        summary: "Snooze a pending item until a time, a date or for a duration (12h, 7d)",
        query: &[],
        body: Some("Snooze"),
        success: 200,
        handler: || post(endpoints::approvals::snooze),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/approvals/batch",
        access: Access::Role(Role::Approver),
        tag: "approvals",
        summary: "Approve several items, all or none (409 naming the first not pending)",
        query: &[],
        body: Some("ApproveBatch"),
        success: 200,
        handler: || post(endpoints::approvals::batch),
    },
    RouteSpec {
        method: Method::Post,
        path: "/patch/runs",
        access: Access::Role(Role::Operator),
        tag: "runs",
        summary: "Start a patch run of a policy (202 with the run), or plan it with dry_run (200)",
        query: &[],
        body: Some("RunStart"),
        success: 202,
        handler: || post(endpoints::patch::start_run),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/runs",
        access: Access::Role(Role::Viewer),
        tag: "runs",
        summary: "Patch runs, newest first",
        query: RUNS_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::patch::list_runs),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/runs/{id}",
        access: Access::Role(Role::Viewer),
        tag: "runs",
        summary: "One patch run with its hosts",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::patch::run_detail),
    },
    RouteSpec {
        method: Method::Post,
        path: "/patch/runs/{id}/cancel",
        access: Access::Role(Role::Operator),
        tag: "runs",
        summary: "Cancel a patch run (in-flight hosts finish); 409 when it already ended",
        query: &[],
        body: None,
        success: 200,
        handler: || post(endpoints::patch::cancel_run),
    },
    RouteSpec {
        method: Method::Post,
        path: "/patch/runs/{id}/rollback",
        access: Access::Role(Role::Operator),
        tag: "runs",
        summary: "Roll back hosts of a run (system_ids, or every failed host) with a reason",
        query: &[],
        body: Some("RunRollback"),
        success: 200,
        handler: || post(endpoints::patch::rollback_run),
    },
    RouteSpec {
        method: Method::Post,
        path: "/patch/scan",
        access: Access::Role(Role::Operator),
        tag: "compliance",
        summary: "Scan compliance of every system the policies target",
        query: &[],
        body: None,
        success: 200,
        handler: || post(endpoints::patch::scan),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/compliance",
        access: Access::Role(Role::Viewer),
        tag: "compliance",
        summary: "Compliance per system, or rolled up by policy, env or os",
        query: COMPLIANCE_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::patch::compliance_view),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/compliance/{system_id}",
        access: Access::Role(Role::Viewer),
        tag: "compliance",
        summary: "Compliance of one system",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::patch::compliance_system),
    },
    RouteSpec {
        method: Method::Get,
        path: "/patch/advisories",
        access: Access::Role(Role::Viewer),
        tag: "compliance",
        summary: "CVE to errata to systems still needing them (or the CVEs known)",
        query: ADVISORY_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::patch::advisories),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/audit",
        access: Access::Role(Role::Viewer),
        tag: "audit",
        summary: "Audit log, newest first",
        query: AUDIT_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::audit::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/notifications",
        access: Access::Role(Role::Viewer),
        tag: "notifications",
        summary: "Notifications, newest first, with the unread count",
        query: NOTIFICATION_QUERY,
        body: None,
        success: 200,
        handler: || get(endpoints::notifications::list),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/notifications/{id}",
        access: Access::Role(Role::Viewer),
        tag: "notifications",
        summary: "One notification with its delivery attempts",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::notifications::detail),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/notifications/{id}/read",
        access: Access::Role(Role::Viewer),
        tag: "notifications",
        summary: "Mark one notification read (recorded as read_by the token name)",
        query: &[],
        body: None,
        success: 200,
        handler: || post(endpoints::notifications::mark_one),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/notifications/mark-read",
        access: Access::Role(Role::Viewer),
        tag: "notifications",
        summary: "Mark several notifications read, all or nothing",
        query: &[],
        body: Some("MarkRead"),
        success: 200,
        handler: || post(endpoints::notifications::mark_many),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/tokens",
        access: Access::Role(Role::Admin),
        tag: "tokens",
        summary: "List API tokens (never the secrets)",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::tokens::list),
    },
    RouteSpec {
        method: Method::Post,
        path: "/api/v1/tokens",
        access: Access::Role(Role::Admin),
        tag: "tokens",
        summary: "Create a token; the secret is in this response only",
        query: &[],
        body: Some("TokenCreate"),
        success: 201,
        handler: || post(endpoints::tokens::create),
    },
    RouteSpec {
        method: Method::Delete,
        path: "/api/v1/tokens/{name}",
        access: Access::Role(Role::Admin),
        tag: "tokens",
        summary: "Revoke a token by name",
        query: &[],
        body: None,
        success: 200,
        handler: || delete(endpoints::tokens::revoke),
    },
    RouteSpec {
        method: Method::Get,
        path: "/api/v1/prometheus/targets",
        access: Access::Role(Role::Viewer),
        tag: "metrics",
        summary: "Prometheus HTTP service discovery: node exporters of the test systems",
        query: &[],
        body: None,
        success: 200,
        handler: || get(endpoints::targets::list),
    },
];

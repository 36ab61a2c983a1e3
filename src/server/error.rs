//! JSON errors: every failure the API returns is `{"error": {"code", "message", "field"?}}`
//! with a fitting status. Extractor wrappers turn axum's rejections into that shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;

/// An API error: status, stable machine code, human message and optionally the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `unauthorized`, `invalid_field`.
    pub code: &'static str,
    /// Human-readable message (never internal details).
    pub message: String,
    /// Request field at fault, when known (`limit`, `body.role`, `path.id`).
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Attach the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 for a bad value in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field(field)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503 `not_configured`: the service behind this endpoint is not set up in this process.
    pub fn not_configured(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_configured", message)
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error while serving a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"code":"internal","message":"error serialisation failed"}}"#.to_vec()
        });
        let mut resp = (self.status, json).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::not_found(format!("{what} {id} not found")),
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::Transition(t) => Self::conflict(t.to_string()),
            other => Self::internal(other),
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// JSON body extractor: requires `Content-Type: application/json`, enforces the body limit
/// (413) and reports malformed JSON, wrong types and unknown fields as 400 naming the field.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "could not read the request body",
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserialize a JSON body, mapping errors to a 400 that names the field.
///
/// The text is parsed to a JSON value first (syntax errors are `malformed_json`), then
/// converted to `T` with the path tracked, so wrong types and unknown fields name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        data_error(&path, &e.into_inner().to_string(), "body")
    })
}

/// Build a 400 for a deserialisation error at `path` (`.` = root) under `root`.
fn data_error(path: &str, message: &str, root: &str) -> ApiError {
    let mut field = if path == "." || path.is_empty() {
        None
    } else {
        Some(path.to_owned())
    };
    let code = if message.starts_with("unknown field") {
        // serde names the unknown field in backticks; report it as the field at fault.
        // serde_path_to_error already ends the path with the unknown key.
        if field.is_none()
            && let Some(name) = message.split('`').nth(1)
        {
            field = Some(name.to_owned());
        }
        "unknown_field"
    } else if message.starts_with("missing field") {
        if let Some(name) = message.split('`').nth(1) {
            field = Some(match field {
                Some(p) => format!("{p}.{name}"),
                None => name.to_owned(),
            });
        }
        "missing_field"
    } else {
        "invalid_field"
    };
    // Drop serde_json's " at line 1 column 5" suffix: the field name says more.
    let clean = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    let err = ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        match &field {
            Some(f) => format!("{root} field {f:?}: {clean}"),
            None => format!("{root}: {clean}"),
        },
    );
    match field {
        Some(f) => err.with_field(f),
        None => err,
    }
}

/// Query-string extractor: unknown parameters and wrong types are a 400 naming the parameter.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                data_error(&path, &e.into_inner().to_string(), "query")
            })
    }
}

/// Parse a path id (`/queue/{id}`), giving a 400 that names it when it is not a positive integer.
pub fn parse_id(name: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::invalid(
            format!("path.{name}"),
            format!("path parameter {name} must be a positive integer, got {raw:?}"),
        )
    })
}

/// Validate `limit` / `offset` pagination values, applying defaults and the maximum.
pub fn page(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
    max: i64,
) -> ApiResult<(i64, i64)> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {max}, got {limit}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid(
            "offset",
            format!("offset must be 0 or more, got {offset}"),
        ));
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner2>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner2 {
        count: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name": 1}"#).expect_err("wrong type");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_field", Some("name"))
        );
        let e = parse_json::<Body>(br#"{"name": "a", "inner": {"count": -1}}"#).expect_err("neg");
        assert_eq!(e.field.as_deref(), Some("inner.count"));
        let e = parse_json::<Body>(br#"{"name": "a", "inner": {"cnt": 1}}"#).expect_err("unknown");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_field", Some("inner.cnt"))
        );
        let e = parse_json::<Body>(br#"{"inner": null}"#).expect_err("missing");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("missing_field", Some("name"))
        );
        let e = parse_json::<Body>(br#"{"name": "a""#).expect_err("syntax");
        assert_eq!(e.code, "malformed_json");
        assert!(parse_json::<Body>(br#"{"name": "a"}"#).is_ok());
    }

    #[test]
    fn ids_and_pages_are_checked() {
        assert_eq!(parse_id("id", "42").ok(), Some(42));
        for bad in ["0", "-1", "x", "1e3", ""] {
            assert_eq!(
                parse_id("id", bad).map_err(|e| e.field),
                Err(Some("path.id".into()))
            );
        }
        assert_eq!(page(None, None, 50, 500).ok(), Some((50, 0)));
        assert!(page(Some(501), None, 50, 500).is_err());
        assert!(page(Some(10), Some(-1), 50, 500).is_err());
    }

    #[test]
    fn store_errors_map_to_statuses_without_internals() {
        let e: ApiError = StoreError::NotFound {
            what: "queue item",
            id: "7".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = StoreError::Conflict("dup".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = StoreError::Open("/secret/path/spm.db is locked".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("/secret"));
    }
}

//! The OpenAPI 3 document, generated from [`ROUTES`] so it cannot miss a route.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{Map, Value, json};

use super::routes::{Access, ROUTES};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "stable machine-readable code"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "request field at fault"}
                }
            }}
        },
        "MarkRead": {
            "type": "object",
            "additionalProperties": false,
            "required": ["ids"],
            "properties": {
                "ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                        "items": {"type": "integer", "minimum": 1}}
            }
        },
        "QueueAdd": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "advisory": {"type": "string", "description": "one advisory"},
                "advisories": {"type": "array", "maxItems": 500, "items": {"type": "string"}},
                "os": {"type": "string", "enum": ["ubuntu", "debian", "rhel"]},
                "priority": {"type": "integer"},
                "notes": {"type": "string", "maxLength": 2000},
                "require_all_systems": {"type": "boolean"}
            }
        },
        "QueuePatch": {
            "type": "object",
            "additionalProperties": false,
            "required": ["priority"],
            "properties": {"priority": {"type": "integer", "minimum": -1000, "maximum": 1000}}
        },
        "PolicyCreate": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "source"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "source": {"type": "string", "description": "Lua source of the policy"}
            }
        },
        "PolicySource": {
            "type": "object",
            "additionalProperties": false,
            "required": ["source"],
            "properties": {"source": {"type": "string", "description": "Lua source of the policy"}}
        },
        "TestRun": {
            "type": "object",
            "additionalProperties": false,
            "required": ["queue_id"],
            "properties": {"queue_id": {"type": "integer", "minimum": 1}}
        },
        "TestAbort": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}
        },
        "Approve": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "reason": {"type": "string", "maxLength": 2000},
                "evidence_test_id": {"type": "integer", "minimum": 1}
            }
        },
        "Reject": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {
                "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
                "evidence_test_id": {"type": "integer", "minimum": 1}
            }
        },
        "Snooze": {
            "type": "object",
            "additionalProperties": false,
            "required": ["until", "reason"],
            "properties": {
                "until": {"type": "string", "description": "RFC 3339 time, date, or duration (90m, 12h, 7d, 2w)"},
                "reason": {"type": "string", "minLength": 1, "maxLength": 2000}
            }
        },
        "ApproveBatch": {
            "type": "object",
            "additionalProperties": false,
            "required": ["queue_ids"],
            "properties": {
                "queue_ids": {"type": "array", "minItems": 1, "maxItems": 500,
                              "items": {"type": "integer", "minimum": 1}},
                "reason": {"type": "string", "maxLength": 2000}
            }
        },
        "RunStart": {
            "type": "object",
            "additionalProperties": false,
            "required": ["policy_id"],
            "properties": {
                "policy_id": {"type": "string", "description": "the policy's id field"},
                "dry_run": {"type": "boolean"}
            }
        },
        "RunRollback": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {
                "system_ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                               "items": {"type": "integer"}},
                "reason": {"type": "string", "minLength": 1, "maxLength": 2000}
            }
        },
        "TokenCreate": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "role"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                "role": {"type": "string", "enum": ["viewer", "operator", "approver", "admin"]}
            }
        }
    })
}

/// Build the document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert("tags".into(), json!([r.tag]));
        op.insert(
            "operationId".into(),
            json!(format!(
                "{}_{}",
                r.method.as_str(),
                r.path
                    .trim_start_matches('/')
                    .replace(['/', '{', '}', '.', '-'], "_")
            )),
        );
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                       "schema": {"type": if name == "id" {"integer"} else {"string"}}})
            })
            .collect();
        params.extend(r.query.iter().map(|p| {
            json!({"name": p.name, "in": "query", "required": false,
                   "description": p.doc, "schema": {"type": p.ty}})
        }));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(schema) = r.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {
                    "schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
            );
        }
        let mut responses = Map::new();
        responses.insert(r.success.to_string(), json!({"description": "success"}));
        match r.access {
            Access::Public => {
                op.insert("security".into(), json!([]));
            }
            Access::Role(role) => {
                op.insert("x-spm-role".into(), json!(role.as_str()));
                responses.insert(
                    "401".into(),
                    error_response("missing, invalid or revoked token"),
                );
                responses.insert(
                    "403".into(),
                    error_response("the token's role is not enough"),
                );
            }
            Access::Metrics => {
                op.insert("x-spm-role".into(), json!("viewer (unless metrics_public)"));
                responses.insert(
                    "401".into(),
                    error_response("missing, invalid or revoked token"),
                );
            }
        }
        if r.body.is_some() {
            responses.insert(
                "400".into(),
                error_response("malformed JSON, wrong type or unknown field"),
            );
            responses.insert("413".into(), error_response("body larger than the limit"));
        }
        if r.path.contains('{') {
            responses.insert("404".into(), error_response("no such object"));
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(r.method.as_str().to_owned(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "spm API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Security patch manager. Every route except liveness needs `Authorization: Bearer <token>` (see `spm token create`). Errors are {\"error\": {\"code\", \"message\", \"field\"?}}."
        },
        "security": [{"bearer": []}],
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        }
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve_document() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(document).clone())
}

//! `spm.ansible.run_playbook(path, opts)`: the [`AnsibleService`] the Lua host calls.
//!
//! `opts` (every key optional but `hosts`):
//! - `hosts`: a list of UYUNI system ids (integers) or profile names (strings), resolved
//!   through the store and `[ansible]` overrides, and/or explicit inventory tables
//!   `{name=, address=, os=, groups=, tags=, vars=}`;
//! - `extra_vars` (table), `check`, `diff` (booleans), `limit` (host pattern), `forks`,
//!   `timeout` (seconds or a duration such as `"10m"`), `tags`, `skip_tags` (lists).
//!
//! The result: `{status = "succeeded"|"failed", ok = bool, rc, check, elapsed_ms,
//! hosts = {[name] = {status, ok, changed, failed, unreachable, skipped, failed_task,
//! message, report}}, failed_hosts = {names}}`. Per-task progress goes to the log (target
//! `spm::ansible`). Cancelling the script kills the playbook's process group.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::AnsibleExecutor;
use crate::host::api::time::parse_duration;
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::services::{AnsibleService, ServiceFuture};
use crate::services::ansible::{AnsibleError, InventoryHost, PlaybookResult};
use crate::store::Store;
use crate::store::systems::{self, SystemAddress};

const M: &str = "spm.ansible.run_playbook";
const KEYS: &[&str] = &[
    "hosts",
    "extra_vars",
    "check",
    "diff",
    "limit",
    "forks",
    "timeout",
    "tags",
    "skip_tags",
];

/// The `spm.ansible` service over an [`AnsibleExecutor`].
#[derive(Debug, Clone)]
pub struct LuaAnsible {
    executor: Arc<AnsibleExecutor>,
    store: Option<Store>,
    cancel: CancellationToken,
}

impl LuaAnsible {
    /// A binding running playbooks with `executor`, resolving UYUNI systems in `store`,
    /// killing a running playbook when `cancel` fires.
    pub fn new(
        executor: Arc<AnsibleExecutor>,
        store: Option<Store>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            executor,
            store,
            cancel,
        }
    }

    async fn run(&self, path: String, opts: Value) -> Result<Value, ScriptError> {
        let playbook = self
            .executor
            .confine(&path)
            .map_err(|e| ScriptError::script(format!("{M}: {e}")))?;
        let mut run = self.executor.options();
        let opts = match opts {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            other => return Err(bad("opts", format!("must be a table, got {other}"))),
        };
        for key in opts.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(bad(
                    &format!("opts.{key}"),
                    format!("unknown option (known: {})", KEYS.join(", ")),
                ));
            }
        }
        run.hosts = self.hosts(opts.get("hosts")).await?;
        if let Some(v) = opts.get("extra_vars") {
            run.extra_vars = match v {
                Value::Object(m) => m.clone(),
                // An empty Lua table arrives as an empty array.
                Value::Array(a) if a.is_empty() => Map::new(),
                _ => return Err(bad("opts.extra_vars", "must be a table of named values")),
            };
        }
        run.check = flag(&opts, "check")?;
        run.diff = flag(&opts, "diff")?;
        if let Some(v) = opts.get("limit") {
            run.limit = Some(
                v.as_str()
                    .ok_or_else(|| bad("opts.limit", "must be a host pattern string"))?
                    .to_string(),
            );
        }
        if let Some(v) = opts.get("forks") {
            let n = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("opts.forks", format!("must be a positive integer, got {v}")))?;
            run.forks = Some(n);
        }
        if let Some(v) = opts.get("timeout") {
            run.timeout_secs = Some(timeout_secs(v)?);
        }
        run.tags = words(&opts, "tags")?;
        run.skip_tags = words(&opts, "skip_tags")?;
        run.cancel = Some(self.cancel.clone());
        let result = self
            .executor
            .run(&playbook, run)
            .await
            .map_err(|e| script_error(&path, e))?;
        Ok(result_json(&path, &result))
    }

    /// Resolve `opts.hosts`: ids and names through the store, tables as given.
    async fn hosts(&self, v: Option<&Value>) -> Result<Vec<InventoryHost>, ScriptError> {
        let list = match v {
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            Some(Value::Array(_)) | None => {
                return Err(bad(
                    "opts.hosts",
                    "give at least one host: UYUNI system ids or names, or inventory tables {name=, address=, ...}",
                ));
            }
            Some(other) => {
                return Err(bad(
                    "opts.hosts",
                    format!("must be a list of ids, names or tables, got {other}"),
                ));
            }
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.into_iter().enumerate() {
            let at = format!("opts.hosts[{}]", i + 1);
            let host = match item {
                Value::Number(n) => {
                    let id = n
                        .as_i64()
                        .filter(|id| *id > 0)
                        .ok_or_else(|| bad(&at, format!("{n} is not a system id")))?;
                    let found = self
                        .lookup(&at, move |c| systems::addresses_by_id(c, &[id]))
                        .await?;
                    let sys = found.into_iter().next().ok_or_else(|| {
                        bad(
                            &at,
                            format!("no system with id {id} in the database (run `spm sync`)"),
                        )
                    })?;
                    self.executor.system_host(&sys)
                }
                Value::String(name) => {
                    let n2 = name.clone();
                    let found = self
                        .lookup(&at, move |c| systems::addresses_by_name(c, &n2))
                        .await?;
                    match found.as_slice() {
                        [sys] => self.executor.system_host(sys),
                        [] => {
                            return Err(bad(
                                &at,
                                format!(
                                    "no system named {name:?} in the database (run `spm sync`)"
                                ),
                            ));
                        }
                        many => {
                            return Err(bad(
                                &at,
                                format!(
                                    "{} systems are named {name:?} (ids {}); give the id",
                                    many.len(),
                                    many.iter()
                                        .map(|s| s.id.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                    }
                }
                v @ Value::Object(_) => serde_json::from_value::<InventoryHost>(v)
                    .map_err(|e| bad(&at, format!("not an inventory host: {e}")))?,
                other => {
                    return Err(bad(
                        &at,
                        format!("expected a system id, a name or a table, got {other}"),
                    ));
                }
            };
            out.push(host);
        }
        Ok(out)
    }

    async fn lookup<F>(&self, at: &str, f: F) -> Result<Vec<SystemAddress>, ScriptError>
    where
        F: FnOnce(&rusqlite::Connection) -> crate::store::StoreResult<Vec<SystemAddress>>
            + Send
            + 'static,
    {
        let store = self.store.as_ref().ok_or_else(|| {
            ScriptError::config(format!(
                "{M}: {at}: UYUNI systems need the database, which this script has no access to; give inventory tables instead"
            ))
        })?;
        store.read(f).await.map_err(|e| {
            ScriptError::new(
                ErrorKind::Infrastructure,
                format!("{M}: {at}: reading systems: {e}"),
            )
        })
    }
}

impl AnsibleService for LuaAnsible {
    fn run_playbook(&self, path: String, opts: Value) -> ServiceFuture<'_, Value> {
        self.run(path, opts).boxed()
    }
}

fn bad(what: &str, msg: impl std::fmt::Display) -> ScriptError {
    ScriptError::script(format!("{M}: {what}: {msg}"))
}

fn flag(opts: &Map<String, Value>, key: &str) -> Result<bool, ScriptError> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(
            &format!("opts.{key}"),
            format!("must be true or false, got {other}"),
        )),
    }
}

fn words(opts: &Map<String, Value>, key: &str) -> Result<Vec<String>, ScriptError> {
    let err = || {
        bad(
            &format!("opts.{key}"),
            "must be a string or a list of strings",
        )
    };
    match opts.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(err))
            .collect(),
        Some(_) => Err(err()),
    }
}

fn timeout_secs(v: &Value) -> Result<u64, ScriptError> {
    let d = match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| *s >= 1.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| bad("opts.timeout", format!("{n} is not at least 1 second")))?,
        Value::String(s) => parse_duration(s).map_err(|e| bad("opts.timeout", e))?,
        other => {
            return Err(bad(
                "opts.timeout",
                format!("must be seconds or a duration such as \"10m\", got {other}"),
            ));
        }
    };
    Ok(d.as_secs().max(1))
}

fn script_error(path: &str, e: AnsibleError) -> ScriptError {
    let msg = format!("{M}({path:?}): {e}");
    match e {
        AnsibleError::NotInstalled { .. } => ScriptError::config(msg),
        AnsibleError::PlaybookNotFound { .. } | AnsibleError::InvalidOption { .. } => {
            ScriptError::script(msg)
        }
        AnsibleError::Io { .. } => ScriptError::new(ErrorKind::Infrastructure, msg),
        AnsibleError::Aborted { .. } => ScriptError {
            kind: ErrorKind::Infrastructure,
            message: msg,
            retryable: false,
        },
        AnsibleError::TimedOut { .. } => ScriptError::new(ErrorKind::Timeout, msg),
        AnsibleError::Cancelled { .. } => ScriptError::new(ErrorKind::Cancelled, msg),
    }
}

/// The Lua-facing result table.
fn result_json(path: &str, r: &PlaybookResult) -> Value {
    let mut hosts = Map::new();
    let mut failed = Vec::new();
    for h in &r.hosts {
        if h.is_failed() {
            failed.push(Value::String(h.host.clone()));
        }
        hosts.insert(
            h.host.clone(),
            serde_json::to_value(h).unwrap_or_else(|_| json!({"status": "unknown"})),
        );
    }
    json!({
        "playbook": path,
        "status": r.status,
        "ok": r.status == crate::services::ansible::RunStatus::Succeeded,
        "rc": r.rc,
        "check": r.check,
        "elapsed_ms": r.elapsed_ms,
        "hosts": hosts,
        "failed_hosts": failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_checked() {
        assert_eq!(timeout_secs(&json!(90)).unwrap(), 90);
        assert_eq!(timeout_secs(&json!("2m")).unwrap(), 120);
        assert!(timeout_secs(&json!(0)).is_err());
        assert!(timeout_secs(&json!(true)).is_err());
        let opts = json!({"tags": ["a", "b"], "skip_tags": "c", "check": true, "diff": 1});
        let m = opts.as_object().unwrap();
        assert_eq!(words(m, "tags").unwrap(), vec!["a", "b"]);
        assert_eq!(words(m, "skip_tags").unwrap(), vec!["c"]);
        assert!(flag(m, "check").unwrap());
        let e = flag(m, "diff").unwrap_err();
        assert!(e.message.contains("opts.diff"), "{e}");
    }

    #[test]
    fn errors_keep_their_kind() {
        let e = script_error(
            "x.yml",
            AnsibleError::NotInstalled {
                program: "ansible-playbook".into(),
                path: "/usr/bin".into(),
            },
        );
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message.contains("ansible-core"), "{e}");
    }
}

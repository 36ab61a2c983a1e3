//! What each script kind must return, checked key by key with `file:line` in every message.

use std::fmt;
use std::sync::Arc;

use mlua::{Table, Value};
use regex::Regex;

use super::api::time::parse_duration;
use super::header::ScriptKind;

/// One problem in a script, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Script path relative to the root.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// Warnings do not fail a load.
    pub warning: bool,
}

impl Diagnostic {
    /// An error at `path:line`.
    pub fn error(path: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            line,
            message: message.into(),
            warning: false,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = if self.warning { "warning: " } else { "" };
        match self.line {
            Some(l) => write!(f, "{}:{}: {sev}{}", self.path, l, self.message),
            None => write!(f, "{}: {sev}{}", self.path, self.message),
        }
    }
}

/// A problem with one key of a returned table (`key` may be dotted: `hooks.before`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// Dotted key path, empty for the table as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A pluggable validator of a returned table (policies: registered by the rollout engine).
pub trait TableValidator: Send + Sync {
    /// Problems with the table; empty when it is valid.
    fn validate(&self, table: &Table) -> Vec<KeyProblem>;
}

/// The contracts in force; cheap to clone.
#[derive(Clone)]
pub struct Contracts {
    /// Validates `kind=policy` tables.
    pub policy: Arc<dyn TableValidator>,
}

impl Default for Contracts {
    fn default() -> Self {
        Self {
            policy: Arc::new(BasicPolicyValidator),
        }
    }
}

impl fmt::Debug for Contracts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contracts").finish_non_exhaustive()
    }
}

/// Until the rollout engine registers the real one: a policy is a table with a string
/// `id` and no functions outside its `hooks` subtable.
#[derive(Debug, Default, Clone, Copy)]
pub struct BasicPolicyValidator;

impl TableValidator for BasicPolicyValidator {
    fn validate(&self, table: &Table) -> Vec<KeyProblem> {
        let mut out = Vec::new();
        match table.raw_get::<Value>("id") {
            Ok(Value::String(s)) if !s.as_bytes().is_empty() => {}
            Ok(Value::Nil) => out.push(KeyProblem {
                key: String::new(),
                message: "policy needs an `id` string".into(),
            }),
            Ok(v) => out.push(KeyProblem {
                key: "id".into(),
                message: format!("`id` must be a non-empty string, got {}", v.type_name()),
            }),
            Err(e) => out.push(KeyProblem {
                key: "id".into(),
                message: e.to_string(),
            }),
        }
        no_functions(table, "", &mut out, 0);
        out
    }
}

fn no_functions(t: &Table, prefix: &str, out: &mut Vec<KeyProblem>, depth: usize) {
    if depth > 32 {
        return;
    }
    for (k, v) in t.pairs::<Value, Value>().flatten() {
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => i.to_string(),
            other => other.type_name().to_string(),
        };
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if prefix.is_empty() && key == "hooks" {
            if !matches!(v, Value::Table(_)) {
                out.push(KeyProblem {
                    key: path,
                    message: "`hooks` must be a table of functions".into(),
                });
            }
            continue;
        }
        match v {
            Value::Function(_) => out.push(KeyProblem {
                key: path.clone(),
                message: format!(
                    "`{path}` is a function; policies describe, so functions belong only in `hooks`"
                ),
            }),
            Value::Table(sub) => no_functions(&sub, &path, out, depth + 1),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    String,
    Function,
    Duration,
}

impl FieldType {
    fn describe(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Function => "a function",
            FieldType::Duration => "a duration (\"30s\", \"5m\") or seconds",
        }
    }
}

struct Field {
    name: &'static str,
    ty: FieldType,
    required: bool,
}

const fn f(name: &'static str, ty: FieldType, required: bool) -> Field {
    Field { name, ty, required }
}

const PHASE: &[Field] = &[
    f("name", FieldType::String, true),
    f("timeout", FieldType::Duration, false),
    f("description", FieldType::String, false),
    f("run", FieldType::Function, true),
];
const ROLLBACK: &[Field] = &[
    f("name", FieldType::String, false),
    f("description", FieldType::String, false),
    f("applies", FieldType::Function, true),
    f("run", FieldType::Function, true),
];
const CHECK: &[Field] = &[
    f("name", FieldType::String, true),
    f("description", FieldType::String, false),
    f("run", FieldType::Function, true),
];
const SCORE: &[Field] = &[
    f("name", FieldType::String, false),
    f("description", FieldType::String, false),
    f("adjust", FieldType::Function, true),
];
const SPEC: &[Field] = &[
    f("description", FieldType::String, false),
    f("cases", FieldType::Function, true),
];

fn fields(kind: ScriptKind) -> Option<&'static [Field]> {
    match kind {
        ScriptKind::Phase => Some(PHASE),
        ScriptKind::Rollback => Some(ROLLBACK),
        ScriptKind::Check => Some(CHECK),
        ScriptKind::Spec => Some(SPEC),
        ScriptKind::Score => Some(SCORE),
        ScriptKind::Policy | ScriptKind::Lib => None,
    }
}

/// Line where `key = ...` is written in `source` (first match), for messages.
pub fn key_line(source: &str, key: &str) -> Option<usize> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let pat = format!(
        r#"^\s*(?:{k}|\[\s*["']{k}["']\s*\])\s*=|[{{,;]\s*(?:{k}|\[\s*["']{k}["']\s*\])\s*="#,
        k = regex::escape(last)
    );
    let re = Regex::new(&pat).ok()?;
    source.lines().position(|l| re.is_match(l)).map(|i| i + 1)
}

/// Line of the last `return` statement (where the table is returned).
pub fn return_line(source: &str) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("return"))
        .map(|(i, _)| i + 1)
        .last()
}

fn check_type(v: &Value, ty: FieldType) -> Result<(), String> {
    let ok = match (ty, v) {
        (FieldType::String, Value::String(_)) => true,
        (FieldType::Function, Value::Function(_)) => true,
        (FieldType::Duration, Value::Integer(i)) => *i > 0,
        (FieldType::Duration, Value::Number(n)) => n.is_finite() && *n > 0.0,
        (FieldType::Duration, Value::String(s)) => {
            return parse_duration(&s.to_string_lossy()).map(|_| ());
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be {}, got {}", ty.describe(), value_desc(v)))
    }
}

fn value_desc(v: &Value) -> String {
    match v {
        Value::Integer(i) => format!("number {i}"),
        Value::Number(n) => format!("number {n}"),
        other => other.type_name().to_string(),
    }
}

/// Validate the value a script returned against its kind's contract.
pub fn validate(
    contracts: &Contracts,
    kind: ScriptKind,
    path: &str,
    source: &str,
    value: &Value,
) -> Vec<Diagnostic> {
    let ret_line = return_line(source);
    let Value::Table(t) = value else {
        return vec![Diagnostic::error(
            path,
            ret_line,
            format!(
                "a {kind} script must return a table, it returned {}",
                value_desc(value)
            ),
        )];
    };
    let mut out = Vec::new();
    if kind == ScriptKind::Policy {
        for p in contracts.policy.validate(t) {
            let line = if p.key.is_empty() {
                ret_line
            } else {
                key_line(source, &p.key).or(ret_line)
            };
            out.push(Diagnostic::error(path, line, p.message));
        }
        return out;
    }
    let Some(fields) = fields(kind) else {
        return out;
    };
    let spec_cases_table = kind == ScriptKind::Spec;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = match pair {
            Ok(p) => p,
            Err(e) => {
                out.push(Diagnostic::error(path, ret_line, e.to_string()));
                continue;
            }
        };
        let Value::String(ks) = &k else {
            out.push(Diagnostic::error(
                path,
                ret_line,
                format!("unexpected {} key in the returned table", k.type_name()),
            ));
            continue;
        };
        let key = ks.to_string_lossy();
        // Only computed for problems: it scans the source.
        let line = || key_line(source, &key).or(ret_line);
        let Some(field) = fields.iter().find(|f| f.name == key) else {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            out.push(Diagnostic::error(
                path,
                line(),
                format!(
                    "unknown key `{key}` in a {kind} table (allowed: {})",
                    known.join(", ")
                ),
            ));
            continue;
        };
        let ty_ok = if spec_cases_table && field.name == "cases" {
            if matches!(v, Value::Table(_) | Value::Function(_)) {
                Ok(())
            } else {
                Err(format!("must be a table of cases, got {}", value_desc(&v)))
            }
        } else {
            check_type(&v, field.ty)
        };
        if let Err(msg) = ty_ok {
            let line = match &v {
                Value::Function(func) => func.info().line_defined.or_else(line),
                _ => line(),
            };
            out.push(Diagnostic::error(path, line, format!("`{key}` {msg}")));
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if matches!(t.raw_get::<Value>(field.name), Ok(Value::Nil)) {
            out.push(Diagnostic::error(
                path,
                ret_line,
                format!(
                    "missing required key `{}` ({}) in a {kind} table",
                    field.name,
                    field.ty.describe()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines() {
        let src = "---@spm api=1 kind=phase\nreturn {\n  name = 'x',\n  colour = 1,\n  [\"run\"] = nil,\n}\n";
        assert_eq!(key_line(src, "name"), Some(3));
        assert_eq!(key_line(src, "colour"), Some(4));
        assert_eq!(key_line(src, "run"), Some(5));
        assert_eq!(key_line(src, "absent"), None);
        assert_eq!(return_line(src), Some(2));
    }

    #[test]
    fn phase_contract() {
        let lua = mlua::Lua::new();
        let src = "return {\n name = 'p',\n timeout = 'soon',\n extra = 1,\n}";
        let v: Value = lua.load(src).eval().unwrap();
        let d = validate(&Contracts::default(), ScriptKind::Phase, "p.lua", src, &v);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t.starts_with("p.lua:3: `timeout`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("p.lua:4: unknown key `extra`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("missing required key `run`")),
            "{text:?}"
        );
    }

    #[test]
    fn basic_policy() {
        let lua = mlua::Lua::new();
        let src = "return {\n id = 'p1',\n waves = { { pick = function() end } },\n hooks = { before = function() end },\n}";
        let v: Value = lua.load(src).eval().unwrap();
        let d = validate(&Contracts::default(), ScriptKind::Policy, "x.lua", src, &v);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("waves.1.pick"), "{d:?}");
        assert_eq!(d[0].line, Some(3));
    }
}

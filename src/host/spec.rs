//! `spm spec`: script specs. A spec (`---@spm api=1 kind=spec`) returns
//! `{ description?, cases = { {name=, script=, os?, phase?, entry?, ctx=, services=, expect=}, ... } }`
//! (or `cases` as a function returning that list). Each case runs the script under test in
//! a fresh VM where `spm.<service>` functions are replaced by the case's in-Lua fakes, then
//! checks `expect`: `{ ok = true, result = <table subset>? }`, `{ error_kind = "patch",
//! message_contains = "..."? }`, and/or `check = function(result, err) return ok, why end`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Table, Value};
use tokio_util::sync::CancellationToken;

use super::contracts::Contracts;
use super::errors::ScriptError;
use super::header::ScriptKind;
use super::limits::Limits;
use super::loader;
use super::resolve;
use super::scriptset::{ScriptSet, expected_kind};
use super::services::Services;
use super::vm::{self, Deadline};

/// Services a spec may fake.
pub const FAKEABLE: &[&str] = &["uyuni", "snapshot", "prom", "ansible", "notify", "db"];

/// Result of one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// Spec file.
    pub spec: String,
    /// Case name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed (or a note).
    pub detail: String,
}

/// Time one case may take.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Run every spec file under `dir` against the scripts of `set`.
pub async fn run_dir(set: Arc<ScriptSet>, dir: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let mut files = Vec::new();
    super::scriptset::walk(dir, dir, &mut files)
        .map_err(|e| anyhow::anyhow!("cannot read specs under {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for (rel, abs) in files {
        let content = std::fs::read_to_string(&abs)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", abs.display()))?;
        let name = format!("{}/{rel}", dir.display());
        out.extend(run_spec(set.clone(), &name, &content).await);
    }
    Ok(out)
}

fn fail(spec: &str, name: &str, detail: impl Into<String>) -> CaseResult {
    CaseResult {
        spec: spec.into(),
        name: name.into(),
        passed: false,
        detail: detail.into(),
    }
}

/// Load a spec in a scratch VM to learn how many cases and their names.
async fn case_names(set: &ScriptSet, spec: &str, content: &str) -> Result<Vec<String>, String> {
    let vm = new_vm(set).map_err(|e| e.message)?;
    let cases = spec_cases(&vm, spec, content).await?;
    let mut names = Vec::new();
    for (i, c) in cases.sequence_values::<Table>().enumerate() {
        let c = c.map_err(|e| format!("case {}: not a table: {e}", i + 1))?;
        let n: Option<String> = c.get("name").map_err(|e| e.to_string())?;
        names.push(n.unwrap_or_else(|| format!("case {}", i + 1)));
    }
    Ok(names)
}

fn new_vm(set: &ScriptSet) -> Result<vm::Vm, ScriptError> {
    vm::build(
        &Services {
            recorder: Some(super::api::test::RunRecorder::new()),
            ..Services::default()
        },
        set.libs.clone(),
        &Limits::default(),
        Deadline::after(CASE_TIMEOUT),
        CancellationToken::new(),
    )
}

async fn spec_cases(vm: &vm::Vm, spec: &str, content: &str) -> Result<Table, String> {
    let loaded = loader::load(
        vm,
        &Contracts::default(),
        spec,
        content,
        Some(ScriptKind::Spec),
    )
    .await
    .map_err(|d| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let t = loaded.table().ok_or("spec did not return a table")?.clone();
    match t.get::<Value>("cases").map_err(|e| e.to_string())? {
        Value::Table(c) => Ok(c),
        Value::Function(f) => f
            .call_async::<Table>(())
            .await
            .map_err(|e| format!("cases(): {}", ScriptError::from_lua(&e).message)),
        _ => Err("`cases` must be a table or a function returning one".into()),
    }
}

/// Run every case of one spec file.
pub async fn run_spec(set: Arc<ScriptSet>, spec: &str, content: &str) -> Vec<CaseResult> {
    let names = match case_names(&set, spec, content).await {
        Ok(n) => n,
        Err(e) => return vec![fail(spec, "(load)", e)],
    };
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let r = match tokio::time::timeout(CASE_TIMEOUT, run_case(&set, spec, content, i + 1)).await
        {
            Ok(Ok(())) => CaseResult {
                spec: spec.into(),
                name: name.clone(),
                passed: true,
                detail: String::new(),
            },
            Ok(Err(why)) => fail(spec, name, why),
            Err(_) => fail(
                spec,
                name,
                format!("case did not finish within {}s", CASE_TIMEOUT.as_secs()),
            ),
        };
        out.push(r);
    }
    out
}

/// Run case number `index` (1-based) in its own VM.
async fn run_case(set: &ScriptSet, spec: &str, content: &str, index: usize) -> Result<(), String> {
    let vm = new_vm(set).map_err(|e| e.message)?;
    let cases = spec_cases(&vm, spec, content).await?;
    let case: Table = cases.get(index).map_err(|e| e.to_string())?;
    // Script under test: an explicit path, or (os, phase) resolution.
    let script: Option<String> = case.get("script").map_err(|e| e.to_string())?;
    let path = match script {
        Some(p) => p,
        None => {
            let os: Option<String> = case.get("os").map_err(|e| e.to_string())?;
            let phase: Option<String> = case.get("phase").map_err(|e| e.to_string())?;
            match (os, phase) {
                (Some(os), Some(phase)) => resolve::resolve_phase(set, &os, &phase)
                    .map_err(|e| e.message)?
                    .path
                    .clone(),
                _ => return Err("a case needs `script`, or `os` and `phase`".into()),
            }
        }
    };
    let file = set
        .get(&path)
        .ok_or_else(|| format!("no script {path} in the set"))?;
    // Install the fakes over the real bindings.
    let spm: Table = vm.lua.globals().get("spm").map_err(|e| e.to_string())?;
    if let Some(fakes) = case
        .get::<Option<Table>>("services")
        .map_err(|e| e.to_string())?
    {
        for pair in fakes.pairs::<String, Table>() {
            let (svc, fns) = pair.map_err(|e| format!("services: {e}"))?;
            if !FAKEABLE.contains(&svc.as_str()) {
                return Err(format!(
                    "services.{svc}: not a fakeable service ({})",
                    FAKEABLE.join(", ")
                ));
            }
            let module: Table = spm.get(svc.as_str()).map_err(|e| e.to_string())?;
            for f in fns.pairs::<String, Function>() {
                let (fname, func) = f.map_err(|e| format!("services.{svc}: {e}"))?;
                if module
                    .get::<Value>(fname.as_str())
                    .map_err(|e| e.to_string())?
                    .is_nil()
                {
                    return Err(format!(
                        "services.{svc}.{fname}: spm.{svc} has no function {fname}"
                    ));
                }
                module
                    .set(fname.as_str(), func)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let loaded = loader::load(
        &vm,
        &Contracts::default(),
        &file.path,
        &file.content,
        expected_kind(&file.path),
    )
    .await
    .map_err(|d| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let table = loaded.table().ok_or("script did not return a table")?;
    let entry: String = case
        .get::<Option<String>>("entry")
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| "run".into());
    let func: Function = table
        .get(entry.as_str())
        .map_err(|_| format!("{path}: no `{entry}` function"))?;
    let ctx: Value = case.get("ctx").map_err(|e| e.to_string())?;
    let outcome = func.call_async::<Value>(ctx).await;
    let expect: Table = case
        .get::<Option<Table>>("expect")
        .map_err(|e| e.to_string())?
        .ok_or("a case needs `expect`")?;
    check_expect(&vm, &expect, outcome)
}

fn check_expect(vm: &vm::Vm, expect: &Table, outcome: mlua::Result<Value>) -> Result<(), String> {
    let want_ok: Option<bool> = expect.get("ok").map_err(|e| e.to_string())?;
    let want_kind: Option<String> = expect.get("error_kind").map_err(|e| e.to_string())?;
    let want_msg: Option<String> = expect.get("message_contains").map_err(|e| e.to_string())?;
    let want_result: Value = expect.get("result").map_err(|e| e.to_string())?;
    let check: Option<Function> = expect.get("check").map_err(|e| e.to_string())?;
    if want_ok.is_none() && want_kind.is_none() && want_result.is_nil() && check.is_none() {
        return Err("`expect` states nothing (use ok, result, error_kind or check)".into());
    }
    let (result, err) = match outcome {
        Ok(v) => (v, None),
        Err(e) => (Value::Nil, Some(ScriptError::from_lua(&e))),
    };
    match (&err, want_ok, &want_kind) {
        (Some(e), Some(true), _) => return Err(format!("expected success, got {e}")),
        (Some(e), None, None) => return Err(format!("unexpected error: {e}")),
        (None, Some(false), _) | (None, _, Some(_)) => {
            return Err("expected an error, the script succeeded".into());
        }
        _ => {}
    }
    if let (Some(e), Some(k)) = (&err, &want_kind)
        && e.kind.as_str() != k
    {
        return Err(format!("expected error kind {k}, got {e}"));
    }
    if let Some(m) = &want_msg {
        let got = err.as_ref().map(|e| e.message.clone()).unwrap_or_default();
        if !got.contains(m.as_str()) {
            return Err(format!(
                "expected the error message to contain {m:?}, got {got:?}"
            ));
        }
    }
    if !want_result.is_nil() {
        subset(&want_result, &result, "result")?;
    }
    if let Some(f) = check {
        let err_v = match &err {
            Some(e) => {
                let t = vm.lua.create_table().map_err(|e| e.to_string())?;
                t.set("kind", e.kind.as_str()).map_err(|e| e.to_string())?;
                t.set("message", e.message.clone())
                    .map_err(|e| e.to_string())?;
                t.set("retryable", e.retryable).map_err(|e| e.to_string())?;
                Value::Table(t)
            }
            None => Value::Nil,
        };
        let (ok, why): (bool, Option<String>) = f
            .call((result, err_v))
            .map_err(|e| format!("expect.check raised: {}", ScriptError::from_lua(&e).message))?;
        if !ok {
            return Err(format!(
                "expect.check: {}",
                why.unwrap_or_else(|| "returned false".into())
            ));
        }
    }
    Ok(())
}

/// Every key of `want` is in `got` with an equal (recursively subset) value.
fn subset(want: &Value, got: &Value, at: &str) -> Result<(), String> {
    match (want, got) {
        (Value::Table(w), Value::Table(g)) => {
            for pair in w.pairs::<Value, Value>() {
                let (k, wv) = pair.map_err(|e| e.to_string())?;
                let gv: Value = g.get(k.clone()).map_err(|e| e.to_string())?;
                let key = k.to_string().unwrap_or_else(|_| "?".into());
                subset(&wv, &gv, &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Integer(a), Value::Number(b)) | (Value::Number(b), Value::Integer(a))
            if (*a as f64) == *b =>
        {
            Ok(())
        }
        (w, g) if w == g => Ok(()),
        (Value::String(a), Value::String(b)) if a.as_bytes() == b.as_bytes() => Ok(()),
        (w, g) => Err(format!(
            "{at}: expected {}, got {}",
            w.to_string().unwrap_or_default(),
            g.to_string().unwrap_or_default()
        )),
    }
}

//! Functions placed directly on `spm`: `spm.try` and `spm.fail`.

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{FnDef, ModuleDef};
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::services::Services;

/// `spm.try`, `spm.fail`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "",
    doc: "Core functions: typed errors.",
    functions: &[
        FnDef {
            name: "try",
            params: &[("fn", "function"), ("...", "any")],
            returns: "any, spm.Error?",
            doc: "Call fn(...); on error return nil and {kind, message, retryable} instead of raising (timeouts, cancellation and the memory limit still stop the script).",
            is_async: true,
        },
        FnDef {
            name: "fail",
            params: &[("err", "spm.Error|string")],
            returns: "",
            doc: "Raise a typed error {kind=, message=, retryable=?} that the engine reads with its kind.",
            is_async: false,
        },
    ],
    build,
};

fn build(lua: &Lua, _services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("try", lua.create_async_function(try_call)?)?;
    t.set("fail", lua.create_function(fail)?)?;
    Ok(t)
}

/// Errors `spm.try` must not swallow: limits exist to stop the script.
fn is_fatal(err: &mlua::Error) -> bool {
    fn mem(e: &mlua::Error) -> bool {
        match e {
            mlua::Error::MemoryError(_) => true,
            mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
                mem(cause)
            }
            _ => false,
        }
    }
    if mem(err) {
        return true;
    }
    matches!(
        ScriptError::from_lua(err).kind,
        ErrorKind::Timeout | ErrorKind::Cancelled
    )
}

async fn try_call(lua: Lua, (f, args): (Function, MultiValue)) -> mlua::Result<MultiValue> {
    match f.call_async::<MultiValue>(args).await {
        Ok(values) => Ok(values),
        Err(e) if is_fatal(&e) => Err(e),
        Err(e) => {
            let typed = ScriptError::from_lua(&e);
            let t = lua.create_table()?;
            t.set("kind", typed.kind.as_str())?;
            t.set("message", typed.message)?;
            t.set("retryable", typed.retryable)?;
            Ok(MultiValue::from_iter([Value::Nil, Value::Table(t)]))
        }
    }
}

/// `file:line` of the Lua code that called the current Rust function.
pub fn caller_location(lua: &Lua) -> Option<String> {
    lua.inspect_stack(1, |d| {
        let src = d.source().short_src.map(|s| s.into_owned())?;
        let line = d.current_line()?;
        Some(format!("{src}:{line}"))
    })
    .flatten()
}

fn fail(lua: &Lua, err: Value) -> mlua::Result<()> {
    let location = caller_location(lua);
    let mut typed = match err {
        Value::String(s) => ScriptError::script(s.to_string_lossy()),
        Value::Table(t) => {
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair?;
                let key = match &k {
                    Value::String(s) => s.to_string_lossy(),
                    other => format!("{other:?}"),
                };
                if !matches!(key.as_str(), "kind" | "message" | "retryable") {
                    return Err(ScriptError::script(format!(
                        "spm.fail: unknown field `{key}` (expected kind, message, retryable)"
                    ))
                    .into_lua());
                }
            }
            let kind_name: Option<String> = t.get("kind")?;
            let kind = match kind_name {
                None => ErrorKind::Script,
                Some(k) => ErrorKind::parse(&k).ok_or_else(|| {
                    let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
                    ScriptError::script(format!(
                        "spm.fail: unknown kind `{k}` (expected one of {})",
                        names.join(", ")
                    ))
                    .into_lua()
                })?,
            };
            let message: Option<String> = t.get("message")?;
            let mut e = ScriptError::new(kind, message.unwrap_or_else(|| kind.to_string()));
            if let Some(r) = t.get::<Option<bool>>("retryable")? {
                e.retryable = r;
            }
            e
        }
        other => {
            return Err(ScriptError::script(format!(
                "spm.fail expects a table {{kind=, message=}} or a string, got {}",
                other.type_name()
            ))
            .into_lua());
        }
    };
    if let Some(loc) = location {
        typed.message = format!("{loc}: {}", typed.message);
    }
    Err(typed.into_lua())
}

//! The sandbox: which globals a script sees. Built on `Lua::new_with` with only the table,
//! string, math and utf8 libraries plus a safe `os` subset; no `io`, `debug`, `coroutine`,
//! `package` or C loading. `load` accepts text chunks only, `string.dump` is gone, and
//! `print` becomes a log event.

use mlua::chunk::ChunkMode;
use mlua::{Lua, MultiValue, StdLib, Table, Value};

use super::api::log::{Level, emit};
use super::errors::ScriptError;

/// Standard libraries loaded into every VM (`os` is reduced afterwards).
pub fn stdlib() -> StdLib {
    StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::OS
}

/// Globals removed after the libraries load.
const REMOVED_GLOBALS: &[&str] = &["dofile", "loadfile", "collectgarbage", "warn"];

/// Registry key where [`hide_coroutine`] keeps the `coroutine` table.
const COROUTINE_KEY: &str = "spm_hidden_coroutine";

/// Remove the `coroutine` global, which mlua loads for its async machinery: an async
/// primitive called inside a user coroutine would yield mlua's internal poll marker to it.
/// Call after every async function is created (see [`with_coroutine`]).
pub fn hide_coroutine(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    let co: Value = g.raw_get("coroutine")?;
    if !co.is_nil() {
        lua.set_named_registry_value(COROUTINE_KEY, co)?;
        g.raw_set("coroutine", Value::Nil)?;
    }
    Ok(())
}

/// Run `f` with `coroutine` visible again (mlua reads it while creating async functions).
pub fn with_coroutine<R>(lua: &Lua, f: impl FnOnce() -> mlua::Result<R>) -> mlua::Result<R> {
    let g = lua.globals();
    let co: Value = lua.named_registry_value(COROUTINE_KEY)?;
    g.raw_set("coroutine", co)?;
    let out = f();
    g.raw_set("coroutine", Value::Nil)?;
    out
}

/// `os` functions kept.
const OS_KEEP: &[&str] = &["time", "clock", "date", "difftime"];

/// Restrict the globals of a freshly built VM.
pub fn apply(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    for name in REMOVED_GLOBALS {
        g.raw_set(*name, Value::Nil)?;
    }
    // os: only the clock.
    let os_full: Table = g.get("os")?;
    let os = lua.create_table()?;
    for name in OS_KEEP {
        os.raw_set(*name, os_full.get::<Value>(*name)?)?;
    }
    g.raw_set("os", os)?;
    // string.dump produces binary chunks; gone.
    let string: Table = g.get("string")?;
    string.raw_set("dump", Value::Nil)?;
    // load: text chunks only.
    g.raw_set("load", lua.create_function(load_text)?)?;
    g.raw_set(
        "collectgarbage",
        lua.create_function(|lua, opt: Option<String>| match opt.as_deref() {
            Some("count") => Ok(lua.used_memory() as f64 / 1024.0),
            other => Err(ScriptError::script(format!(
                "collectgarbage(\"{}\") is not available in spm scripts (only \"count\")",
                other.unwrap_or("collect")
            ))
            .into_lua()),
        })?,
    )?;
    g.raw_set(
        "print",
        lua.create_function(|lua, args: MultiValue| {
            let mut parts = Vec::with_capacity(args.len());
            for v in args {
                parts.push(v.to_string()?);
            }
            emit(lua, Level::Info, &parts.join("\t"), None)
        })?,
    )?;
    Ok(())
}

/// `load(chunk, name?, mode?, env?)` restricted to text chunks given as strings.
fn load_text(
    lua: &Lua,
    (chunk, name, mode, env): (Value, Option<String>, Option<String>, Option<Table>),
) -> mlua::Result<MultiValue> {
    let fail = |msg: String| -> mlua::Result<MultiValue> {
        Ok(MultiValue::from_iter([
            Value::Nil,
            Value::String(lua.create_string(msg)?),
        ]))
    };
    if let Some(m) = mode.as_deref()
        && m != "t"
    {
        return fail(format!(
            "load: mode \"{m}\" is not allowed; spm scripts may only load text chunks"
        ));
    }
    let Value::String(src) = chunk else {
        return fail("load: only string chunks are allowed in spm scripts".into());
    };
    let bytes = src.as_bytes().to_vec();
    if bytes.first() == Some(&0x1b) {
        return fail("load: binary chunks are not allowed in spm scripts".into());
    }
    let mut c = lua
        .load(bytes)
        .set_mode(ChunkMode::Text)
        .set_name(name.unwrap_or_else(|| "=(load)".into()));
    if let Some(env) = env {
        c = c.set_environment(env);
    }
    match c.into_function() {
        Ok(f) => Ok(MultiValue::from_iter([Value::Function(f)])),
        Err(e) => fail(ScriptError::from_lua(&e).message),
    }
}

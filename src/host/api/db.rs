//! `spm.db`: read-only queries over the documented views and a per-script key/value store.

use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef, from_lua, to_lua};
use crate::host::errors::{ErrorKind, ScriptError};
use crate::host::services::{Services, not_configured};
use crate::host::vm::RunInfo;
use crate::store::{Store, StoreError, script_kv, views};

/// `spm.db`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "db",
    doc: "Read-only queries over the v_* views, and a key/value store private to each script.",
    functions: &[
        FnDef {
            name: "query",
            params: &[
                ("view", "string"),
                ("filters?", "table<string, any>"),
                ("opts?", "{limit?: integer}"),
            ],
            returns: "table[]",
            doc: "Rows of a view (v_queue, v_pending_approvals, v_errata, v_systems, v_compliance) whose columns equal the filters.",
            is_async: true,
        },
        FnDef {
            name: "kv_get",
            params: &[("key", "string")],
            returns: "any",
            doc: "Value this script stored under key, or nil.",
            is_async: true,
        },
        FnDef {
            name: "kv_set",
            params: &[("key", "string"), ("value", "any")],
            returns: "",
            doc: "Store a JSON-compatible value under key for this script (nil deletes it).",
            is_async: true,
        },
    ],
    build,
};

fn store_err(e: StoreError) -> mlua::Error {
    let kind = match e {
        StoreError::Conflict(_) | StoreError::NotFound { .. } => ErrorKind::Script,
        _ => ErrorKind::Infrastructure,
    };
    ScriptError::new(kind, format!("spm.db: {e}")).into_lua()
}

fn need_store(store: &Option<Store>) -> mlua::Result<Store> {
    store
        .clone()
        .ok_or_else(|| not_configured("spm.db").into_lua())
}

fn namespace(lua: &Lua) -> mlua::Result<String> {
    lua.app_data_ref::<RunInfo>()
        .map(|r| r.script.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ScriptError::script("spm.db.kv_*: no running script to key the values by").into_lua()
        })
}

fn check_key(key: &str) -> mlua::Result<()> {
    if key.is_empty() || key.len() > script_kv::MAX_KEY_LEN {
        return Err(ScriptError::script(format!(
            "spm.db: key must be 1..{} bytes",
            script_kv::MAX_KEY_LEN
        ))
        .into_lua());
    }
    Ok(())
}

fn build(lua: &Lua, services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let store = services.store.clone();
    t.set(
        "query",
        lua.create_async_function(
            move |lua, (view, filters, opts): (String, Option<Table>, Option<Table>)| {
                let store = store.clone();
                async move {
                    let store = need_store(&store)?;
                    let mut pairs = Vec::new();
                    if let Some(f) = filters {
                        for pair in f.pairs::<String, Value>() {
                            let (k, v) = pair?;
                            pairs.push((k.clone(), from_lua(&lua, v, &format!("filters.{k}"))?));
                        }
                    }
                    let limit = match opts {
                        Some(o) => o.get::<Option<usize>>("limit")?.unwrap_or(views::MAX_ROWS),
                        None => views::MAX_ROWS,
                    };
                    let rows = store
                        .read(move |c| views::query(c, &view, &pairs, limit))
                        .await
                        .map_err(store_err)?;
                    to_lua(&lua, &rows)
                }
            },
        )?,
    )?;
    let store = services.store.clone();
    t.set(
        "kv_get",
        lua.create_async_function(move |lua, key: String| {
            let store = store.clone();
            async move {
                let store = need_store(&store)?;
                check_key(&key)?;
                let ns = namespace(&lua)?;
                let raw = store
                    .read(move |c| script_kv::get(c, &ns, &key))
                    .await
                    .map_err(store_err)?;
                match raw {
                    None => Ok(Value::Nil),
                    Some(text) => {
                        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                            ScriptError::script(format!(
                                "spm.db.kv_get: stored value is not JSON: {e}"
                            ))
                            .into_lua()
                        })?;
                        to_lua(&lua, &v)
                    }
                }
            }
        })?,
    )?;
    let store = services.store.clone();
    t.set(
        "kv_set",
        lua.create_async_function(move |lua, (key, value): (String, Value)| {
            let store = store.clone();
            async move {
                let store = need_store(&store)?;
                check_key(&key)?;
                let ns = namespace(&lua)?;
                if value.is_nil() {
                    store
                        .write(move |tx| script_kv::delete(tx, &ns, &key).map(|_| ()))
                        .await
                        .map_err(store_err)?;
                    return Ok(());
                }
                let v: serde_json::Value = from_lua(&lua, value, "value")?;
                let text = v.to_string();
                if text.len() > script_kv::MAX_VALUE_LEN {
                    return Err(ScriptError::script(format!(
                        "spm.db.kv_set: value is {} bytes, the limit is {}",
                        text.len(),
                        script_kv::MAX_VALUE_LEN
                    ))
                    .into_lua());
                }
                store
                    .write(move |tx| script_kv::set(tx, &ns, &key, &text))
                    .await
                    .map_err(store_err)?;
                Ok(())
            }
        })?,
    )?;
    Ok(t)
}

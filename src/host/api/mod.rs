//! The Lua API: one file per module, all listed in [`MODULES`]. The same list drives
//! registration in every VM and the generated LuaLS definitions (`spm types`).

pub mod bindings;
pub mod core;
pub mod db;
pub mod log;
pub mod shell;
pub mod template;
pub mod test;
pub mod time;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::errors::ScriptError;
use super::services::Services;

/// One function of a module, as registered and as documented.
#[derive(Debug, Clone, Copy)]
pub struct FnDef {
    /// Lua name (`noun_verb`).
    pub name: &'static str,
    /// Parameters as `(name, LuaLS type)`; a name ending in `?` is optional.
    pub params: &'static [(&'static str, &'static str)],
    /// LuaLS return type(s), empty for none.
    pub returns: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Whether the function awaits (may only be called where yielding is allowed).
    pub is_async: bool,
}

/// Builds a module's table in a VM.
pub type BuildFn = fn(&Lua, &Services) -> mlua::Result<Table>;

/// One Lua module: `spm.<name>`, also `require("spm.<name>")`.
#[derive(Debug, Clone, Copy)]
pub struct ModuleDef {
    /// Name under `spm` (empty for functions placed directly on `spm`).
    pub name: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Functions, in documentation order.
    pub functions: &'static [FnDef],
    /// Builds the table.
    pub build: BuildFn,
}

impl ModuleDef {
    /// The module's Lua path, e.g. `spm.log`, or `spm` for the core.
    pub fn lua_name(&self) -> String {
        if self.name.is_empty() {
            "spm".to_string()
        } else {
            format!("spm.{}", self.name)
        }
    }
}

/// Every module, in registration order.
pub const MODULES: &[ModuleDef] = &[
    core::MODULE,
    log::MODULE,
    time::MODULE,
    template::MODULE,
    shell::MODULE,
    db::MODULE,
    bindings::UYUNI,
    bindings::SNAPSHOT,
    bindings::PROM,
    bindings::ANSIBLE,
    bindings::NOTIFY,
    test::MODULE,
];

/// Build the `spm` table with every module, register each as `spm.<name>` in `loaded`
/// (the table `require` consults), and return it.
pub fn register_all(lua: &Lua, services: &Services, loaded: &Table) -> mlua::Result<Table> {
    let spm = lua.create_table()?;
    for m in MODULES {
        let t = (m.build)(lua, services)?;
        if m.name.is_empty() {
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                spm.raw_set(k, v)?;
            }
        } else {
            spm.raw_set(m.name, &t)?;
            loaded.raw_set(m.lua_name(), t)?;
        }
    }
    loaded.raw_set("spm", &spm)?;
    Ok(spm)
}

/// JSON-ish Rust value → Lua (None/null become nil, arrays keep their array-ness).
pub fn to_lua<T: Serialize + ?Sized>(lua: &Lua, v: &T) -> mlua::Result<Value> {
    let opts = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(true);
    lua.to_value_with(v, opts)
}

/// Lua → Rust value; `what` names the argument in the error.
pub fn from_lua<T: DeserializeOwned>(lua: &Lua, v: Value, what: &str) -> mlua::Result<T> {
    let opts = mlua::serde::DeserializeOptions::new().deny_unsupported_types(true);
    lua.from_value_with(v, opts)
        .map_err(|e| ScriptError::script(format!("bad argument `{what}`: {e}")).into_lua())
}

/// Optional table argument → JSON (nil becomes `{}`).
pub fn opts_json(lua: &Lua, v: Option<Value>, what: &str) -> mlua::Result<serde_json::Value> {
    match v {
        None | Some(Value::Nil) => Ok(serde_json::Value::Object(Default::default())),
        Some(v) => from_lua(lua, v, what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented function is registered and every registered function documented.
    #[test]
    fn registration_matches_documentation() {
        let lua = Lua::new();
        let services = Services::default();
        for m in MODULES {
            let t = (m.build)(&lua, &services).unwrap();
            let mut registered: Vec<String> =
                t.pairs::<String, Value>().map(|p| p.unwrap().0).collect();
            registered.sort();
            let mut documented: Vec<String> =
                m.functions.iter().map(|f| f.name.to_string()).collect();
            documented.sort();
            assert_eq!(registered, documented, "module {}", m.lua_name());
        }
    }
}

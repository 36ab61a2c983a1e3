//! `spm.shell`: quoting values for remote POSIX shell scripts.

use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef};
use crate::host::errors::ScriptError;
use crate::host::services::Services;

/// `spm.shell`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "shell",
    doc: "Quote values for remote POSIX shell scripts.",
    functions: &[
        FnDef {
            name: "quote",
            params: &[("value", "string|number")],
            returns: "string",
            doc: "Quote one value as a single POSIX shell word.",
            is_async: false,
        },
        FnDef {
            name: "join",
            params: &[("words", "(string|number)[]")],
            returns: "string",
            doc: "Quote each word and join them with spaces.",
            is_async: false,
        },
    ],
    build,
};

/// Quote `s` as one POSIX shell word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn word(v: Value, index: usize) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ScriptError::script(format!(
            "spm.shell: word {index} is a {}, expected a string or number",
            other.type_name()
        ))
        .into_lua()),
    }
}

fn build(lua: &Lua, _services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "quote",
        lua.create_function(|_, v: Value| Ok(quote(&word(v, 1)?)))?,
    )?;
    t.set(
        "join",
        lua.create_function(|_, words: Table| {
            let mut out = Vec::new();
            for (i, v) in words.sequence_values::<Value>().enumerate() {
                out.push(quote(&word(v?, i + 1)?));
            }
            Ok(out.join(" "))
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_dangerous_values() {
        assert_eq!(quote("nginx"), "nginx");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("x'; rm -rf / #"), r"'x'\''; rm -rf / #'");
        assert_eq!(quote("$(id)"), "'$(id)'");
    }
}

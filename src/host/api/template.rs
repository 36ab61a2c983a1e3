//! `spm.template`: minijinja rendering with strict undefined values and a fuel limit.

use minijinja::{Environment, UndefinedBehavior};
use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef, from_lua};
use crate::host::errors::ScriptError;
use crate::host::services::Services;

/// Fuel given to one render (bounds loops in templates).
pub const FUEL: u64 = 200_000;

/// `spm.template`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "template",
    doc: "Render minijinja (Jinja2) templates.",
    functions: &[FnDef {
        name: "render",
        params: &[("source", "string"), ("vars?", "table")],
        returns: "string",
        doc: "Render a template; an undefined variable is an error.",
        is_async: false,
    }],
    build,
};

/// Render `source` with `vars`, strict about undefined values.
pub fn render(source: &str, vars: &serde_json::Value) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.render_str(source, minijinja::value::Serde(vars))
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })
}

fn build(lua: &Lua, _services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "render",
        lua.create_function(|lua, (source, vars): (String, Option<Value>)| {
            let vars: serde_json::Value = match vars {
                None | Some(Value::Nil) => serde_json::json!({}),
                Some(v) => from_lua(lua, v, "vars")?,
            };
            render(&source, &vars)
                .map_err(|e| ScriptError::script(format!("spm.template.render: {e}")).into_lua())
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn strict_undefined_and_fuel() {
        let v = serde_json::json!({"name": "web1"});
        assert_eq!(render("host {{ name }}", &v).unwrap(), "host web1");
        let e = render("{{ missing }}", &v).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let e = render(
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
            &v,
        )
        .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
    }
}

//! Loading one script: header, compile as `@path`, run the chunk, validate the returned table.

use mlua::{Table, Value};

use super::contracts::{self, Contracts, Diagnostic};
use super::errors::ScriptError;
use super::header::{self, Header, ScriptKind};
use super::vm::Vm;

/// A script whose chunk ran and whose table passed its contract.
#[derive(Debug)]
pub struct Loaded {
    /// The header.
    pub header: Header,
    /// What the chunk returned.
    pub value: Value,
    /// Non-fatal findings (lints).
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// The returned table (every kind but `lib` must return one; libs usually do).
    pub fn table(&self) -> Option<&Table> {
        match &self.value {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }
}

/// Split `path:LINE: rest` off an error message about `path`.
pub fn locate(path: &str, message: &str) -> (Option<usize>, String) {
    let prefix = format!("{path}:");
    if let Some(idx) = message.find(&prefix) {
        let after = &message[idx + prefix.len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(line) = digits.parse::<usize>()
            && let Some(rest) = after[digits.len()..].strip_prefix(':')
        {
            let before = message[..idx].trim_end_matches([' ', ':']);
            let rest = rest.trim();
            let msg = if before.is_empty() || before == "syntax error" {
                rest.to_string()
            } else {
                format!("{before}: {rest}")
            };
            return (Some(line), msg);
        }
    }
    (None, message.to_string())
}

/// Turn an error raised while loading `path` into a located diagnostic.
pub fn diagnostic_from(path: &str, err: &mlua::Error) -> Diagnostic {
    let typed = ScriptError::from_lua(err);
    let (line, msg) = locate(path, &typed.message);
    let msg = if matches!(err, mlua::Error::SyntaxError { .. }) {
        format!("syntax error: {msg}")
    } else {
        msg
    };
    Diagnostic::error(path, line, msg)
}

/// Load `content` as `path`: header, compile, run the chunk in its own environment,
/// validate the result. `expect` restricts the kind (e.g. files under `phases/`).
pub async fn load(
    vm: &Vm,
    contracts: &Contracts,
    path: &str,
    content: &str,
    expect: Option<ScriptKind>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let header = header::parse(path, content).map_err(|e| {
        vec![Diagnostic::error(
            path,
            Some(1),
            strip_loc(path, &e.to_string()),
        )]
    })?;
    if let Some(kind) = expect
        && header.kind != kind
    {
        return Err(vec![Diagnostic::error(
            path,
            Some(1),
            format!(
                "header says kind={} but files here must be kind={kind}",
                header.kind
            ),
        )]);
    }
    let env = vm
        .new_env()
        .map_err(|e| vec![Diagnostic::error(path, None, e.to_string())])?;
    let func = vm
        .compile(path, content, env.clone())
        .map_err(|e| vec![diagnostic_from(path, &e)])?;
    vm.set_script(path);
    let value: Value = func
        .call_async(())
        .await
        .map_err(|e| vec![diagnostic_from(path, &e)])?;
    let problems = if header.kind == ScriptKind::Lib {
        if matches!(value, Value::Table(_) | Value::Nil) {
            Vec::new()
        } else {
            vec![Diagnostic::error(
                path,
                contracts::return_line(content),
                format!(
                    "a lib script must return a table (its module), it returned {}",
                    value.type_name()
                ),
            )]
        }
    } else {
        contracts::validate(contracts, header.kind, path, content, &value)
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut warnings = Vec::new();
    for (k, _) in env.pairs::<Value, Value>().flatten() {
        if let Value::String(name) = k {
            let name = name.to_string_lossy();
            let mut d = Diagnostic::error(
                path,
                global_line(content, &name),
                format!("sets global `{name}`; declare it `local`"),
            );
            d.warning = true;
            warnings.push(d);
        }
    }
    Ok(Loaded {
        header,
        value,
        warnings,
    })
}

fn strip_loc(path: &str, msg: &str) -> String {
    msg.strip_prefix(&format!("{path}:1: "))
        .unwrap_or(msg)
        .to_string()
}

fn global_line(content: &str, name: &str) -> Option<usize> {
    let fn_decl = format!("function {name}");
    let assign = regex::Regex::new(&format!(r"^\s*{}\s*=", regex::escape(name))).ok()?;
    content
        .lines()
        .position(|l| l.trim_start().starts_with(&fn_decl) || assign.is_match(l))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locates_lines() {
        assert_eq!(
            locate("phases/a.lua", "phases/a.lua:12: boom"),
            (Some(12), "boom".to_string())
        );
        assert_eq!(
            locate("p.lua", "syntax error: p.lua:3: unexpected symbol near 'x'"),
            (Some(3), "unexpected symbol near 'x'".to_string())
        );
        assert_eq!(locate("p.lua", "other"), (None, "other".to_string()));
    }
}

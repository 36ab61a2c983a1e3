//! The script header, read without running the file: `---@spm api=1 kind=phase`.

use std::fmt;

/// The newest Lua API version this spm understands.
pub const CURRENT_API: u32 = 1;

/// What a script is, and therefore which contract its returned table must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptKind {
    /// A test phase (`phases/`).
    Phase,
    /// A rollback strategy (`scripts/rollback/`).
    Rollback,
    /// A validation check (`scripts/checks/`).
    Check,
    /// A patch policy (`policies/`).
    Policy,
    /// A shared library (`scripts/lib/`), loaded with `require`.
    Lib,
    /// A script spec run by `spm spec`.
    Spec,
    /// The optional Success Score hook (`scripts/score.lua`).
    Score,
}

impl ScriptKind {
    /// Every kind.
    pub const ALL: &'static [ScriptKind] = &[
        ScriptKind::Phase,
        ScriptKind::Rollback,
        ScriptKind::Check,
        ScriptKind::Policy,
        ScriptKind::Lib,
        ScriptKind::Spec,
        ScriptKind::Score,
    ];

    /// The name written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptKind::Phase => "phase",
            ScriptKind::Rollback => "rollback",
            ScriptKind::Check => "check",
            ScriptKind::Policy => "policy",
            ScriptKind::Lib => "lib",
            ScriptKind::Spec => "spec",
            ScriptKind::Score => "score",
        }
    }

    /// Parse a header kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ScriptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// API version the script was written for.
    pub api: u32,
    /// Script kind.
    pub kind: ScriptKind,
}

/// Why a header was refused. Every message names the file and line 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first line is not a `---@spm` header.
    #[error("{path}:1: missing header: the first line must be `---@spm api={CURRENT_API} kind=<{kinds}>`", kinds = kind_list())]
    Missing {
        /// Script path.
        path: String,
    },
    /// A field is malformed, unknown or missing.
    #[error("{path}:1: bad header: {message}")]
    Malformed {
        /// Script path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Written for an API this spm does not know yet.
    #[error(
        "{path}:1: written for spm Lua API {api}, but this spm supports API {CURRENT_API} at most; upgrade spm or rewrite the script for api={CURRENT_API}"
    )]
    TooNew {
        /// Script path.
        path: String,
        /// The API the script asks for.
        api: u32,
    },
}

fn kind_list() -> String {
    ScriptKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join("|")
}

/// Read the header from the first line of `source` (a leading UTF-8 BOM is ignored).
pub fn parse(path: &str, source: &str) -> Result<Header, HeaderError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let first = source.lines().next().unwrap_or("");
    let Some(rest) = first.trim_end().strip_prefix("---@spm") else {
        return Err(HeaderError::Missing { path: path.into() });
    };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(HeaderError::Missing { path: path.into() });
    }
    let bad = |message: String| HeaderError::Malformed {
        path: path.into(),
        message,
    };
    let mut api = None;
    let mut kind = None;
    for field in rest.split_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            return Err(bad(format!("`{field}` is not key=value")));
        };
        match key {
            "api" => {
                let v: u32 = value
                    .parse()
                    .map_err(|_| bad(format!("api `{value}` is not a positive integer")))?;
                if v == 0 {
                    return Err(bad("api must be 1 or more".into()));
                }
                api = Some(v);
            }
            "kind" => {
                kind = Some(ScriptKind::parse(value).ok_or_else(|| {
                    bad(format!(
                        "unknown kind `{value}` (expected one of {})",
                        kind_list()
                    ))
                })?);
            }
            other => return Err(bad(format!("unknown field `{other}` (expected api, kind)"))),
        }
    }
    let api = api.ok_or_else(|| bad("missing api=N".into()))?;
    if api > CURRENT_API {
        return Err(HeaderError::TooNew {
            path: path.into(),
            api,
        });
    }
    let kind = kind.ok_or_else(|| bad(format!("missing kind=<{}>", kind_list())))?;
    Ok(Header { api, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_good_header() {
        let h = parse("p.lua", "---@spm api=1 kind=phase\nreturn {}").unwrap();
        assert_eq!(h.api, 1);
        assert_eq!(h.kind, ScriptKind::Phase);
    }

    #[test]
    fn refuses_newer_api_with_a_clear_message() {
        let e = parse("phases/x.lua", "---@spm api=2 kind=phase\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("phases/x.lua:1:"), "{msg}");
        assert!(
            msg.contains("API 2") && msg.contains("upgrade spm"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        assert!(matches!(
            parse("a.lua", "return {}"),
            Err(HeaderError::Missing { .. })
        ));
        assert!(matches!(
            parse("a.lua", "---@spm api=1 kind=widget"),
            Err(HeaderError::Malformed { .. })
        ));
        assert!(matches!(
            parse("a.lua", "---@spm kind=phase"),
            Err(HeaderError::Malformed { .. })
        ));
        assert!(matches!(
            parse("a.lua", "---@spm api=1 kind=phase color=red"),
            Err(HeaderError::Malformed { .. })
        ));
    }
}

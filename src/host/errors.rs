//! Typed script errors: what a primitive raises, what `spm.fail` creates, what `spm.try`
//! returns to Lua as `{kind, message, retryable}`, and what the engine reads back.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms the engine can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// UYUNI, a test system or another service is unreachable or broken.
    Infrastructure,
    /// A temporary condition; trying again later may succeed.
    Transient,
    /// Applying the patch itself failed.
    Patch,
    /// The patch applied but broke something (validation, services, metrics).
    Regression,
    /// A wall-clock or instruction deadline was reached.
    Timeout,
    /// The run was cancelled.
    Cancelled,
    /// The script is wrong: syntax, runtime error, bad contract, limits exceeded.
    Script,
    /// Something is not configured (a service binding, a setting).
    Config,
}

impl ErrorKind {
    /// Every kind, in a stable order (for docs and validation messages).
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Infrastructure,
        ErrorKind::Transient,
        ErrorKind::Patch,
        ErrorKind::Regression,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Script,
        ErrorKind::Config,
    ];

    /// The name used in Lua tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Infrastructure => "infrastructure",
            ErrorKind::Transient => "transient",
            ErrorKind::Patch => "patch",
            ErrorKind::Regression => "regression",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Script => "script",
            ErrorKind::Config => "config",
        }
    }

    /// Parse a kind name as written in Lua.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether a failure of this kind is retryable unless the raiser says otherwise.
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Infrastructure)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed error crossing the Rust/Lua boundary in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct ScriptError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable message; for script errors it starts with `file:line:`.
    pub message: String,
    /// Whether the engine may retry the step.
    pub retryable: bool,
}

impl ScriptError {
    /// An error of `kind` with that kind's default retryability.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: kind.default_retryable(),
        }
    }

    /// A script error (bad code, bad contract, limit exceeded).
    pub fn script(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Script, message)
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Wrap this error for raising from a Rust callback into Lua.
    pub fn into_lua(self) -> mlua::Error {
        mlua::Error::external(self)
    }

    /// Turn any error coming out of mlua into a typed error, keeping the kind of a typed
    /// error raised anywhere in the chain (by a primitive, by `spm.fail`, by a limit).
    pub fn from_lua(err: &mlua::Error) -> Self {
        if let Some(typed) = find_typed(err) {
            return typed.clone();
        }
        match innermost(err) {
            mlua::Error::MemoryError(_) => {
                Self::script("memory limit exceeded (the script allocated too much)")
            }
            mlua::Error::SyntaxError { message, .. } => {
                Self::script(format!("syntax error: {}", clean(message)))
            }
            mlua::Error::RuntimeError(m) => {
                if m.contains("stack overflow") {
                    Self::script(format!("stack overflow (runaway recursion?): {}", clean(m)))
                } else {
                    Self::script(clean(m))
                }
            }
            other => Self::script(clean(&other.to_string())),
        }
    }
}

/// First typed [`ScriptError`] in an mlua error chain.
fn find_typed(err: &mlua::Error) -> Option<&ScriptError> {
    match err {
        mlua::Error::ExternalError(e) => e.downcast_ref::<ScriptError>(),
        mlua::Error::CallbackError { cause, .. } => find_typed(cause),
        mlua::Error::WithContext { cause, .. } => find_typed(cause),
        _ => None,
    }
}

/// Strip mlua's callback wrappers down to the error that caused them.
fn innermost(err: &mlua::Error) -> &mlua::Error {
    match err {
        mlua::Error::CallbackError { cause, .. } => innermost(cause),
        mlua::Error::WithContext { cause, .. } => innermost(cause),
        other => other,
    }
}

/// Drop the Lua traceback mlua appends to runtime errors; keep the first line(s).
fn clean(msg: &str) -> String {
    let head = msg.split("\nstack traceback:").next().unwrap_or(msg);
    head.trim_start_matches("runtime error: ")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_error_survives_callback_wrapping() {
        let e = ScriptError::new(ErrorKind::Patch, "apt failed").into_lua();
        let wrapped = mlua::Error::CallbackError {
            traceback: "tb".into(),
            cause: std::sync::Arc::new(e),
        };
        let back = ScriptError::from_lua(&wrapped);
        assert_eq!(back.kind, ErrorKind::Patch);
        assert_eq!(back.message, "apt failed");
        assert!(!back.retryable);
    }

    #[test]
    fn kinds_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(ErrorKind::parse("bogus"), None);
    }
}

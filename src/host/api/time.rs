//! `spm.time`: clock, async sleep, durations, cron.

use std::str::FromStr;
use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::{FnDef, ModuleDef};
use crate::host::errors::ScriptError;
use crate::host::services::Services;

/// `spm.time`.
pub const MODULE: ModuleDef = ModuleDef {
    name: "time",
    doc: "Clock, sleeping, durations and cron schedules.",
    functions: &[
        FnDef {
            name: "now",
            params: &[],
            returns: "number",
            doc: "Current time as Unix seconds (with fractions).",
            is_async: false,
        },
        FnDef {
            name: "sleep",
            params: &[("duration", "number|string")],
            returns: "",
            doc: "Wait without blocking spm: seconds, or a duration such as \"30s\" or \"5m\".",
            is_async: true,
        },
        FnDef {
            name: "parse_duration",
            params: &[("text", "string")],
            returns: "number",
            doc: "Parse \"250ms\", \"30s\", \"5m\", \"2h\", \"1d\" or combinations like \"1h30m\" into seconds.",
            is_async: false,
        },
        FnDef {
            name: "cron_next",
            params: &[("expr", "string"), ("tz?", "string"), ("after?", "number")],
            returns: "integer",
            doc: "Next occurrence (Unix seconds) of a 5-field cron expression after `after` (default now) in time zone `tz` (default UTC).",
            is_async: false,
        },
    ],
    build,
};

/// Parse a duration such as `30s`, `5m`, `2h`, `1d`, `250ms` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "bad duration `{text}`: expected a number at `{rest}`"
            ));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| {
            format!(
                "bad duration `{text}`: `{}` is not a number",
                &rest[..num_len]
            )
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "bad duration `{text}`: missing unit (ms, s, m, h, d)"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration `{text}`: unknown unit `{other}` (ms, s, m, h, d)"
                ));
            }
        };
        total += n * factor;
    }
    if !total.is_finite() || total > 366.0 * 86400.0 * 10.0 {
        return Err(format!("bad duration `{text}`: too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration given as seconds (number) or text.
pub fn duration_arg(v: &Value, what: &str) -> Result<Duration, ScriptError> {
    match v {
        Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        Value::Number(n) if n.is_finite() && *n >= 0.0 && *n < 1e10 => {
            Ok(Duration::from_secs_f64(*n))
        }
        Value::String(s) => parse_duration(&s.to_string_lossy())
            .map_err(|e| ScriptError::script(format!("{what}: {e}"))),
        other => Err(ScriptError::script(format!(
            "{what}: expected seconds or a duration like \"30s\", got {}",
            match other {
                Value::Integer(_) | Value::Number(_) => "a negative or huge number",
                o => o.type_name(),
            }
        ))),
    }
}

/// Next occurrence of `expr` after `after` (Unix seconds) in `tz`.
pub fn cron_next(expr: &str, tz: &str, after: i64) -> Result<i64, String> {
    let cron = croner::Cron::from_str(expr).map_err(|e| format!("bad cron `{expr}`: {e}"))?;
    let tz: chrono_tz::Tz = tz
        .parse()
        .map_err(|_| format!("unknown time zone `{tz}`"))?;
    let start = chrono::DateTime::from_timestamp(after, 0)
        .ok_or_else(|| format!("time {after} is out of range"))?
        .with_timezone(&tz);
    let next = cron
        .find_next_occurrence(&start, false)
        .map_err(|e| format!("cron `{expr}` has no next occurrence: {e}"))?;
    Ok(next.timestamp())
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn build(lua: &Lua, _services: &Services) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("now", lua.create_function(|_, ()| Ok(now_secs()))?)?;
    t.set(
        "sleep",
        lua.create_async_function(|_, d: Value| async move {
            let d = duration_arg(&d, "spm.time.sleep").map_err(ScriptError::into_lua)?;
            tokio::time::sleep(d).await;
            Ok(())
        })?,
    )?;
    t.set(
        "parse_duration",
        lua.create_function(|_, s: String| {
            parse_duration(&s)
                .map(|d| d.as_secs_f64())
                .map_err(|e| ScriptError::script(e).into_lua())
        })?,
    )?;
    t.set(
        "cron_next",
        lua.create_function(
            |_, (expr, tz, after): (String, Option<String>, Option<f64>)| {
                let after = after.unwrap_or_else(now_secs).floor() as i64;
                cron_next(&expr, tz.as_deref().unwrap_or("UTC"), after)
                    .map_err(|e| ScriptError::script(e).into_lua())
            },
        )?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cron_next_in_a_time_zone() {
        // 2026-01-01T00:00:00Z; 02:30 every day in Europe/Rome (UTC+1 in January).
        let next = cron_next("30 2 * * *", "Europe/Rome", 1_767_225_600).unwrap();
        assert_eq!(next, 1_767_225_600 + 90 * 60);
        assert!(cron_next("not a cron", "UTC", 0).is_err());
        assert!(cron_next("* * * * *", "Mars/Olympus", 0).is_err());
    }
}

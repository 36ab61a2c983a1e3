//! XML-RPC method dispatch: namespace → handler, overloads chosen by arity and value
//! types as UYUNI's `BaseHandler.invoke` does, session resolution, fault texts.

mod api;
mod audit;
mod auth;
mod contentmanagement;
mod errata;
mod schedule;
mod system;
mod systemgroup;

use chrono::NaiveDateTime;

use crate::services::uyuni::xmlrpc::{Fault, Struct, Value};

use super::model::{Erratum, System};
use super::world::World;

/// A handler result.
pub type Reply = Result<Value, Fault>;

/// What a handler gets.
pub struct Ctx<'a> {
    /// The state.
    pub world: &'a mut World,
    /// Virtual now.
    pub now: NaiveDateTime,
    /// The logged-in user (index into `world.users`), for session methods.
    pub user: usize,
}

/// A handler fault: `redstone.xmlrpc.XmlRpcFault: <msg>`.
pub fn fault(code: i64, msg: impl std::fmt::Display) -> Fault {
    Fault {
        code,
        string: format!("redstone.xmlrpc.XmlRpcFault: {msg}"),
    }
}

/// A non-fault exception inside a handler: -1 "unhandled internal exception: …".
pub fn unhandled(msg: impl std::fmt::Display) -> Fault {
    fault(-1, format!("unhandled internal exception: {msg}"))
}

/// A raw exception raised before the handler (session errors): `<class>: <msg>`, code -1.
pub fn raw(class: &str, msg: impl std::fmt::Display) -> Fault {
    Fault {
        code: -1,
        string: format!("{class}: {msg}"),
    }
}

/// -208 "No such system - sid = N".
pub fn no_such_system(sid: i64) -> Fault {
    fault(-208, format!("No such system - sid = {sid}"))
}

/// Parameter type classes for overload matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    /// `<i4>`/`<int>`/`<i8>`.
    I,
    /// `<string>`.
    S,
    /// `<array>`.
    A,
    /// `<struct>`.
    M,
    /// `<dateTime.iso8601>`.
    D,
    /// `<boolean>`.
    B,
}

fn is(v: &Value, t: T) -> bool {
    matches!(
        (v, t),
        (Value::Int(_), T::I)
            | (Value::String(_), T::S)
            | (Value::Array(_), T::A)
            | (Value::Struct(_), T::M)
            | (Value::DateTime(_), T::D)
            | (Value::Bool(_), T::B)
    )
}

/// Whether `args` match the signature `ts` exactly.
pub fn sig(args: &[Value], ts: &[T]) -> bool {
    args.len() == ts.len() && args.iter().zip(ts).all(|(v, t)| is(v, *t))
}

/// The int at `i` (call only after [`sig`] matched).
pub fn int(args: &[Value], i: usize) -> i64 {
    args.get(i).and_then(Value::as_i64).unwrap_or_default()
}

/// The string at `i`.
pub fn string(args: &[Value], i: usize) -> String {
    args.get(i)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The bool at `i`.
pub fn boolean(args: &[Value], i: usize) -> bool {
    args.get(i).and_then(Value::as_bool).unwrap_or_default()
}

/// The date at `i`.
pub fn date(args: &[Value], i: usize) -> Option<NaiveDateTime> {
    args.get(i).and_then(Value::as_datetime)
}

/// The array at `i` as ints; a non-int element is Java's ClassCastException (-1).
pub fn ints(args: &[Value], i: usize) -> Result<Vec<i64>, Fault> {
    let items = args.get(i).and_then(Value::as_array).unwrap_or_default();
    items
        .iter()
        .map(|v| {
            v.as_i64().ok_or_else(|| {
                unhandled(format!(
                    "java.lang.ClassCastException: class java.lang.{} cannot be cast to class java.lang.Integer",
                    java_type(v)
                ))
            })
        })
        .collect()
}

/// The array at `i` as strings.
pub fn strings(args: &[Value], i: usize) -> Result<Vec<String>, Fault> {
    let items = args.get(i).and_then(Value::as_array).unwrap_or_default();
    items
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                unhandled(format!(
                    "java.lang.ClassCastException: class java.lang.{} cannot be cast to class java.lang.String",
                    java_type(v)
                ))
            })
        })
        .collect()
}

fn java_type(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "Integer",
        Value::Bool(_) => "Boolean",
        Value::Double(_) => "Double",
        Value::String(_) => "String",
        Value::DateTime(_) => "Date",
        Value::Base64(_) => "byte[]",
        Value::Struct(_) => "Map",
        Value::Array(_) => "List",
        Value::Nil => "Object",
    }
}

/// Fault -1 "Could not find method" for `method` with these arguments.
pub fn no_method(method: &str, class: &str, with_user: bool, args: &[Value]) -> Fault {
    let mut types: Vec<String> = Vec::new();
    if with_user {
        types.push("class com.redhat.rhn.domain.user.legacy.UserImpl".into());
    }
    types.extend(
        args.iter()
            .map(|v| format!("class java.lang.{}", java_type(v))),
    );
    fault(
        -1,
        format!(
            "Could not find method: {} in class: {class} with params: [{}]",
            method.rsplit('.').next().unwrap_or(method),
            types.join(", ")
        ),
    )
}

const HANDLER_PKG: &str = "com.redhat.rhn.frontend.xmlrpc";

fn handler_class(ns: &str) -> String {
    let (pkg, class) = match ns {
        "api" => ("api", "ApiHandler"),
        "auth" => ("auth", "AuthHandler"),
        "system" => ("system", "SystemHandler"),
        "systemgroup" => ("systemgroup", "ServerGroupHandler"),
        "errata" => ("errata", "ErrataHandler"),
        "schedule" => ("schedule", "ScheduleHandler"),
        "audit" => ("audit", "CVEAuditHandler"),
        _ => ("contentmgmt", "ContentManagementHandler"),
    };
    format!("{HANDLER_PKG}.{pkg}.{class}")
}

fn is_session_key(s: &str) -> bool {
    let Some((id, hash)) = s.split_once('x') else {
        return false;
    };
    !id.is_empty()
        && !id.starts_with('0')
        && id.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 64
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Resolve a session key to a user, sliding its expiry.
fn resolve_session(world: &mut World, key: &str, now: NaiveDateTime) -> Result<usize, Fault> {
    let (id, _) = key.split_once('x').unwrap_or_default();
    let id: u64 = id.parse().unwrap_or_default();
    let lifetime = chrono::Duration::seconds(world.session_lifetime_s);
    let Some(sess) = world.sessions.get_mut(&id) else {
        return Err(raw(
            "com.redhat.rhn.common.hibernate.LookupException",
            format!("Could not find session with id: {id}"),
        ));
    };
    if sess.key != key {
        return Err(raw(
            "com.redhat.rhn.domain.session.InvalidSessionIdException",
            format!("Session id: {key} is not valid."),
        ));
    }
    if sess.expires < now {
        world.sessions.remove(&id);
        return Err(raw(
            "com.redhat.rhn.common.hibernate.LookupException",
            format!("Could not find session with id: {id}"),
        ));
    }
    sess.expires = now + lifetime;
    Ok(sess.user)
}

/// Dispatch one call. Advances the action engine to `now` first.
pub fn dispatch(world: &mut World, now: NaiveDateTime, method: &str, params: &[Value]) -> Reply {
    world.tick(now);
    let Some((ns, name)) = method.rsplit_once('.') else {
        return Err(fault(-1, "The specified handler cannot be found"));
    };
    match ns {
        "auth" => return auth::call(world, now, name, params),
        "api" if name != "getApiNamespaces" => return api::call(world, name, params),
        "api" | "system" | "systemgroup" | "errata" | "schedule" | "audit"
        | "contentmanagement" => {}
        _ => return Err(fault(-1, "The specified handler cannot be found")),
    }
    let class = handler_class(ns);
    let key = match params.first() {
        Some(Value::String(s)) if is_session_key(s) => s.clone(),
        _ => return Err(no_method(method, &class, false, params)),
    };
    let user = resolve_session(world, &key, now)?;
    let args = &params[1..];
    let mut ctx = Ctx { world, now, user };
    let r = match ns {
        "system" => system::call(&mut ctx, name, args),
        "systemgroup" => systemgroup::call(&mut ctx, name, args),
        "errata" => errata::call(&mut ctx, name, args),
        "schedule" => schedule::call(&mut ctx, name, args),
        "audit" => audit::call(&mut ctx, name, args),
        "api" => api::namespaces(),
        _ => contentmanagement::call(&mut ctx, name, args),
    };
    match r {
        Some(reply) => reply,
        None => Err(no_method(method, &class, true, args)),
    }
}

/// `YYYY-MM-DD`.
pub fn iso_date(t: NaiveDateTime) -> String {
    // Same text as `format("%Y-%m-%d")` for years 0..=9999, without chrono's format
    // parser: every relevant-errata entry renders three dates.
    use chrono::Datelike as _;
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// Java `Timestamp.toString()`: `2007-06-04 13:58:13.0`.
pub fn java_ts(t: NaiveDateTime) -> String {
    format!("{}.0", t.format("%Y-%m-%d %H:%M:%S"))
}

/// ErrataOverview (getRelevantErrata).
pub fn errata_overview(e: &Erratum) -> Value {
    Struct::new()
        .with("id", e.id)
        .with("issue_date", iso_date(e.issue_date))
        .with("date", iso_date(e.update_date))
        .with("update_date", iso_date(e.update_date))
        .with("advisory_synopsis", e.synopsis.as_str())
        .with("advisory_type", e.kind.label())
        .with("advisory_status", e.status.as_str())
        .with("advisory_name", e.advisory.as_str())
        .with("reboot", e.reboot_suggested)
        .with("reload", e.restart_suggested)
        .into()
}

/// ShortSystemInfo.
pub fn short_system_info(s: &System) -> Value {
    Struct::new()
        .with("id", s.id)
        .with("name", s.name.as_str())
        .with("last_checkin", s.last_checkin)
        .with("created", s.created)
        .with("last_boot", s.last_boot)
        .into()
}

/// SystemOverview.
pub fn system_overview(s: &System) -> Value {
    Struct::new()
        .with("id", s.id)
        .with("name", s.name.as_str())
        .with("created", s.created)
        .with("last_boot", s.last_boot)
        .with("last_checkin", s.last_checkin)
        .with("extra_pkg_count", 0)
        .with("outdated_pkg_count", s.relevant.len() as i64)
        .into()
}

/// Server struct (getDetails, systemgroup.listSystems).
pub fn server_struct(s: &System) -> Value {
    let mut st = Struct::new()
        .with("id", s.id)
        .with("profile_name", s.name.as_str())
        .with("machine_id", s.machine_id.as_str())
        .with("hostname", s.hostname.as_str())
        .with("minion_id", s.minion_id.as_str())
        .with("base_entitlement", "salt_entitled")
        .with("addon_entitlements", Value::Array(Vec::new()))
        .with("auto_update", false)
        .with("description", format!("{} ({})", s.name, s.os.family()))
        .with("release", s.os.release())
        .with("last_boot", s.last_boot)
        .with("osa_status", "unknown")
        .with("lock_status", false)
        .with("contact_method", "default");
    for k in [
        "address1", "address2", "city", "state", "country", "building", "room", "rack",
    ] {
        st.insert(k, "");
    }
    st.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_date_matches_chrono_format() {
        for s in [
            "2026-11-22T04:13:30",
            "0999-01-05T00:00:00",
            "2024-02-29T23:59:59",
        ] {
            let t: NaiveDateTime = s.parse().expect("test date");
            assert_eq!(iso_date(t), t.format("%Y-%m-%d").to_string());
        }
    }
}

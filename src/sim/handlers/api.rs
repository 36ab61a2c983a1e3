//! `api.*`: version information.

use super::{Reply, no_method};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::sim::world::World;

const CLASS: &str = "com.redhat.rhn.frontend.xmlrpc.api.ApiHandler";

/// The API version the simulator claims.
pub const API_VERSION: &str = "27";

pub(super) fn call(world: &mut World, name: &str, args: &[Value]) -> Reply {
    match (name, args.len()) {
        ("getVersion", 0) => Ok(Value::String(API_VERSION.into())),
        ("systemVersion", 0) => Ok(Value::String(world.system_version.clone())),
        _ => Err(no_method(name, CLASS, false, args)),
    }
}

pub(super) fn namespaces() -> Option<Reply> {
    let mut s = Struct::new();
    for (ns, class) in [
        ("api", "ApiHandler"),
        ("auth", "AuthHandler"),
        ("system", "SystemHandler"),
        ("systemgroup", "ServerGroupHandler"),
        ("errata", "ErrataHandler"),
        ("schedule", "ScheduleHandler"),
        ("audit", "CVEAuditHandler"),
        ("contentmanagement", "ContentManagementHandler"),
    ] {
        s.insert(ns, class);
    }
    Some(Ok(s.into()))
}

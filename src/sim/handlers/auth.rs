//! `auth.*`: login, logout, session checks.

use chrono::NaiveDateTime;

use super::{Reply, T, fault, int, no_method, raw, sig, string};
use crate::services::uyuni::xmlrpc::Value;
use crate::sim::world::{Session, World};

const CLASS: &str = "com.redhat.rhn.frontend.xmlrpc.auth.AuthHandler";

/// Longest session a client may ask for, seconds.
const MAX_DURATION: i64 = 3600;

pub(super) fn call(world: &mut World, now: NaiveDateTime, name: &str, args: &[Value]) -> Reply {
    match name {
        "login" if sig(args, &[T::S, T::S]) || sig(args, &[T::S, T::S, T::I]) => {
            let (login, password) = (string(args, 0), string(args, 1));
            let duration = if args.len() == 3 {
                int(args, 2)
            } else {
                world.session_lifetime_s
            };
            if duration > MAX_DURATION {
                return Err(fault(
                    -1,
                    format!(
                        "Session duration {duration} exceeds the maximum of {MAX_DURATION} seconds"
                    ),
                ));
            }
            let Some(user) = world
                .users
                .iter()
                .position(|u| u.login == login && u.password == password)
            else {
                return Err(fault(2950, "Either the password or username is incorrect."));
            };
            let id = world.next_session;
            world.next_session += 1;
            let key = world.session_key(id);
            world.sessions.insert(
                id,
                Session {
                    user,
                    expires: now + chrono::Duration::seconds(duration.max(1)),
                    key: key.clone(),
                },
            );
            Ok(Value::String(key))
        }
        "logout" if sig(args, &[T::S]) => {
            let key = string(args, 0);
            let id: Option<u64> = key.split_once('x').and_then(|(i, _)| i.parse().ok());
            match id.filter(|i| world.sessions.contains_key(i) && world.session_key(*i) == key) {
                Some(i) => {
                    world.sessions.remove(&i);
                    Ok(Value::Int(1))
                }
                None => Err(raw(
                    "com.redhat.rhn.common.hibernate.LookupException",
                    format!("Could not find session with id: {}", id.unwrap_or_default()),
                )),
            }
        }
        "isSessionKeyValid" if sig(args, &[T::S]) => {
            let key = string(args, 0);
            let valid = key
                .split_once('x')
                .and_then(|(i, _)| i.parse::<u64>().ok())
                .and_then(|i| world.sessions.get(&i).map(|s| (i, s.expires)))
                .is_some_and(|(i, exp)| exp >= now && world.session_key(i) == key);
            Ok(Value::Bool(valid))
        }
        _ => Err(no_method(name, CLASS, false, args)),
    }
}

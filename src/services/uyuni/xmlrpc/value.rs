//! The XML-RPC value model and typed accessors.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// One XML-RPC value.
///
/// Integers of every width (`i4`, `int`, `i8`) decode to [`Value::Int`]. Dates are naive:
/// UYUNI writes them in the server's local time without a zone.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// `<i4>`, `<int>` or `<i8>`.
    Int(i64),
    /// `<boolean>` (`1`/`0`).
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<string>`, or a `<value>` without a type tag.
    String(String),
    /// `<dateTime.iso8601>`, naive (no zone).
    DateTime(NaiveDateTime),
    /// `<base64>`, decoded.
    Base64(Vec<u8>),
    /// `<struct>`: members in wire order.
    Struct(Struct),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<nil/>` (an extension UYUNI never emits; accepted for interoperability).
    Nil,
}

impl Value {
    /// The XML-RPC type name of this value, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Base64(_) => "base64",
            Value::Struct(_) => "struct",
            Value::Array(_) => "array",
            Value::Nil => "nil",
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The double, if this is a double (integers are not widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The date, if this is a `dateTime.iso8601`.
    pub fn as_datetime(&self) -> Option<NaiveDateTime> {
        match self {
            Value::DateTime(d) => Some(*d),
            _ => None,
        }
    }

    /// The bytes, if this is base64.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Base64(b) => Some(b),
            _ => None,
        }
    }

    /// The members, if this is a struct.
    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// True for [`Value::Nil`].
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// This value as a struct, or a typed error naming `what`.
    pub fn expect_struct(&self, what: &str) -> Result<&Struct, ValueError> {
        self.as_struct()
            .ok_or_else(|| ValueError::wrong(what, "struct", self))
    }

    /// This value as an array, or a typed error naming `what`.
    pub fn expect_array(&self, what: &str) -> Result<&[Value], ValueError> {
        self.as_array()
            .ok_or_else(|| ValueError::wrong(what, "array", self))
    }

    /// This value as an integer, or a typed error naming `what`.
    pub fn expect_i64(&self, what: &str) -> Result<i64, ValueError> {
        self.as_i64()
            .ok_or_else(|| ValueError::wrong(what, "int", self))
    }

    /// This value as a string, or a typed error naming `what`.
    pub fn expect_str(&self, what: &str) -> Result<&str, ValueError> {
        self.as_str()
            .ok_or_else(|| ValueError::wrong(what, "string", self))
    }

    /// This value as a boolean, or a typed error naming `what`.
    pub fn expect_bool(&self, what: &str) -> Result<bool, ValueError> {
        self.as_bool()
            .ok_or_else(|| ValueError::wrong(what, "boolean", self))
    }

    /// This value as a date, or a typed error naming `what`.
    pub fn expect_datetime(&self, what: &str) -> Result<NaiveDateTime, ValueError> {
        self.as_datetime()
            .ok_or_else(|| ValueError::wrong(what, "dateTime.iso8601", self))
    }

    /// A short rendering for error messages (strings cut to 40 characters).
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) => {
                let cut: String = s.chars().take(40).collect();
                if cut.len() < s.len() {
                    format!("string {cut:?}…")
                } else {
                    format!("string {cut:?}")
                }
            }
            Value::Int(i) => format!("int {i}"),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Double(d) => format!("double {d}"),
            Value::DateTime(d) => format!("dateTime {}", format_datetime(d)),
            Value::Base64(b) => format!("base64 ({} bytes)", b.len()),
            Value::Struct(s) => format!("struct ({} members)", s.len()),
            Value::Array(a) => format!("array ({} items)", a.len()),
            Value::Nil => "nil".to_string(),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Double(d) => write!(f, "Double({d})"),
            Value::String(s) => write!(f, "String({s:?})"),
            Value::DateTime(d) => write!(f, "DateTime({})", format_datetime(d)),
            Value::Base64(b) => write!(f, "Base64({} bytes)", b.len()),
            Value::Struct(s) => s.fmt(f),
            Value::Array(a) => f.debug_list().entries(a).finish(),
            Value::Nil => write!(f, "Nil"),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<NaiveDateTime> for Value {
    fn from(v: NaiveDateTime) -> Self {
        Value::DateTime(v)
    }
}
impl From<Struct> for Value {
    fn from(v: Struct) -> Self {
        Value::Struct(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

/// A struct: members kept in wire order, looked up by name (order never matters for lookup).
///
/// Inserting a name that already exists replaces its value in place, as a Java `HashMap`
/// on the server would.
#[derive(Clone, Default, PartialEq)]
pub struct Struct {
    members: Vec<(String, Value)>,
}

impl Struct {
    /// An empty struct.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style insert.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(name, value);
        self
    }

    /// Insert or replace a member.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.members.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.members.push((name, value));
        }
    }

    /// The member named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// A required member, or [`ValueError::Missing`].
    pub fn field(&self, name: &str) -> Result<&Value, ValueError> {
        self.get(name).ok_or_else(|| ValueError::Missing {
            field: name.to_string(),
        })
    }

    /// A required string member.
    pub fn str_field(&self, name: &str) -> Result<&str, ValueError> {
        self.field(name)?.expect_str(name)
    }

    /// An optional string member (absent → `None`; present with another type → error).
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, ValueError> {
        self.get(name).map(|v| v.expect_str(name)).transpose()
    }

    /// A required integer member.
    pub fn i64_field(&self, name: &str) -> Result<i64, ValueError> {
        self.field(name)?.expect_i64(name)
    }

    /// An optional integer member.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ValueError> {
        self.get(name).map(|v| v.expect_i64(name)).transpose()
    }

    /// A required boolean member.
    pub fn bool_field(&self, name: &str) -> Result<bool, ValueError> {
        self.field(name)?.expect_bool(name)
    }

    /// An optional boolean member.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ValueError> {
        self.get(name).map(|v| v.expect_bool(name)).transpose()
    }

    /// A required date member.
    pub fn datetime_field(&self, name: &str) -> Result<NaiveDateTime, ValueError> {
        self.field(name)?.expect_datetime(name)
    }

    /// An optional date member.
    pub fn opt_datetime(&self, name: &str) -> Result<Option<NaiveDateTime>, ValueError> {
        self.get(name).map(|v| v.expect_datetime(name)).transpose()
    }

    /// A required array member.
    pub fn array_field(&self, name: &str) -> Result<&[Value], ValueError> {
        self.field(name)?.expect_array(name)
    }

    /// An optional array member.
    pub fn opt_array(&self, name: &str) -> Result<Option<&[Value]>, ValueError> {
        self.get(name).map(|v| v.expect_array(name)).transpose()
    }

    /// A required struct member.
    pub fn struct_field(&self, name: &str) -> Result<&Struct, ValueError> {
        self.field(name)?.expect_struct(name)
    }
}

impl fmt::Debug for Struct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (n, v) in &self.members {
            m.entry(n, v);
        }
        m.finish()
    }
}

impl FromIterator<(String, Value)> for Struct {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut s = Struct::new();
        for (n, v) in iter {
            s.insert(n, v);
        }
        s
    }
}

/// A value did not have the shape a caller expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// A required struct member is absent.
    #[error("missing field `{field}`")]
    Missing {
        /// The member name.
        field: String,
    },
    /// A value has another type than expected.
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        /// What was being read (a member name or a description).
        field: String,
        /// The expected XML-RPC type.
        expected: &'static str,
        /// A short rendering of what was found.
        found: String,
    },
    /// A value has the right type but an unusable content.
    #[error("field `{field}`: {message}")]
    Invalid {
        /// What was being read.
        field: String,
        /// Why it is unusable.
        message: String,
    },
}

impl ValueError {
    fn wrong(field: &str, expected: &'static str, found: &Value) -> Self {
        ValueError::WrongType {
            field: field.to_string(),
            expected,
            found: found.summary(),
        }
    }

    /// Prefix the field with a parent path, e.g. `[3].advisory_name`.
    pub fn within(self, parent: &str) -> Self {
        let join = |f: String| {
            if f.starts_with('[') {
                format!("{parent}{f}")
            } else {
                format!("{parent}.{f}")
            }
        };
        match self {
            ValueError::Missing { field } => ValueError::Missing { field: join(field) },
            ValueError::WrongType {
                field,
                expected,
                found,
            } => ValueError::WrongType {
                field: join(field),
                expected,
                found,
            },
            ValueError::Invalid { field, message } => ValueError::Invalid {
                field: join(field),
                message,
            },
        }
    }
}

/// Format a date the way UYUNI (redstone) writes it: `yyyyMMddTHH:mm:ss`.
pub fn format_datetime(d: &NaiveDateTime) -> String {
    d.format("%Y%m%dT%H:%M:%S").to_string()
}

/// Parse an XML-RPC date.
///
/// Accepts UYUNI's `yyyyMMddTHH:mm:ss`, the dashed `yyyy-MM-ddTHH:mm:ss`, the compact
/// `yyyyMMddTHHmmss`, optional fractional seconds, and an optional trailing zone (`Z`,
/// `+hh:mm`, `+hhmm`, `+hh`). The zone is checked for syntax and then ignored: values
/// stay naive wall-clock times, as UYUNI means them.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    let (date_part, rest) = t.split_once(['T', 't'])?;
    let date = match date_part.len() {
        8 if date_part.bytes().all(|b| b.is_ascii_digit()) => {
            NaiveDate::parse_from_str(date_part, "%Y%m%d").ok()?
        }
        10 => NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?,
        _ => return None,
    };
    // Split the zone off the time.
    let zone_at = rest
        .char_indices()
        .find(|&(_, c)| c == 'Z' || c == 'z' || c == '+' || c == '-')
        .map(|(i, _)| i);
    let (time_part, zone) = match zone_at {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !valid_zone(zone) {
        return None;
    }
    let (hms, frac) = match time_part.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time_part, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let time = match hms.len() {
        8 => NaiveTime::parse_from_str(hms, "%H:%M:%S").ok()?,
        6 if hms.bytes().all(|b| b.is_ascii_digit()) => {
            NaiveTime::parse_from_str(hms, "%H%M%S").ok()?
        }
        _ => return None,
    };
    Some(NaiveDateTime::new(date, time))
}

fn valid_zone(zone: &str) -> bool {
    if zone.is_empty() || zone == "Z" || zone == "z" {
        return true;
    }
    let Some(body) = zone.strip_prefix(['+', '-']) else {
        return false;
    };
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    let colons = body.chars().filter(|c| *c == ':').count();
    let shape_ok = match body.len() {
        2 => colons == 0,
        4 => colons == 0,
        5 => colons == 1 && body.as_bytes().get(2) == Some(&b':'),
        _ => false,
    };
    shape_ok && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn parses_every_date_form() {
        let want = dt("2026-03-12 17:07:41");
        for s in [
            "20260312T17:07:41",
            "2026-03-12T17:07:41",
            "20260312T170741",
            "20260312T17:07:41Z",
            "2026-03-12T17:07:41+01:00",
            "2026-03-12T17:07:41-0500",
            "2026-03-12T17:07:41.123Z",
            " 20260312T17:07:41\n",
        ] {
            assert_eq!(parse_datetime(s), Some(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_dates() {
        for s in [
            "",
            "20260312",
            "20261312T17:07:41",
            "20260312T25:07:41",
            "2026-03-12 17:07:41",
            "20260312T17:07:41+1",
            "20260312T17:07:41garbage",
            "20260312T17:07:41.",
        ] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
    }

    #[test]
    fn formats_like_redstone() {
        assert_eq!(
            format_datetime(&dt("2026-03-02 07:07:01")),
            "20260302T07:07:01"
        );
    }

    #[test]
    fn struct_accessors_name_the_field() {
        let s = Struct::new()
            .with("id", 42)
            .with("name", "web-1")
            .with("flag", true);
        assert_eq!(s.i64_field("id"), Ok(42));
        assert_eq!(s.str_field("name"), Ok("web-1"));
        assert_eq!(s.opt_str("missing"), Ok(None));
        let err = s.i64_field("name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `name`: expected int, found string \"web-1\""
        );
        let err = s.str_field("nope").unwrap_err();
        assert_eq!(err.to_string(), "missing field `nope`");
        assert_eq!(err.within("[2]").to_string(), "missing field `[2].nope`");
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut s = Struct::new().with("a", 1).with("b", 2);
        s.insert("a", 3);
        let names: Vec<_> = s.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.i64_field("a"), Ok(3));
    }
}

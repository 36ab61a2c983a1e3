//! Encoding `methodCall` and `methodResponse` documents.
//!
//! Integers are written as `<i4>` when they fit 32 bits (as UYUNI does) and `<i8>`
//! otherwise; dates as `yyyyMMddTHH:mm:ss`; strings inside `<string>` with `<`, `>` and `&`
//! escaped and all other characters (whitespace included) kept as they are.

use std::fmt::Write as _;

use base64::Engine as _;

use super::value::{Value, format_datetime};
use super::{Fault, MethodCall, MethodResponse};

/// A value that XML-RPC cannot carry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// A character that XML 1.0 forbids (most control characters); send such data as
    /// base64 instead.
    #[error("character U+{code:04X} at character {index} of a string cannot appear in XML")]
    InvalidChar {
        /// The code point.
        code: u32,
        /// Its index (in characters) in the string. The string itself is not quoted:
        /// it may be a password.
        index: usize,
    },
    /// NaN or an infinity.
    #[error("double {0} has no XML-RPC representation")]
    NonFiniteDouble(f64),
    /// A method name outside `[A-Za-z0-9_.:/]+`.
    #[error("invalid method name {0:?}")]
    MethodName(String),
}

const HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Encode a `methodCall`.
pub fn encode_call(call: &MethodCall) -> Result<String, EncodeError> {
    encode_call_parts(&call.name, &call.params)
}

/// Encode a `methodCall` from a method name and borrowed parameters.
pub fn encode_call_parts(name: &str, params: &[Value]) -> Result<String, EncodeError> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/'));
    if !name_ok {
        return Err(EncodeError::MethodName(name.chars().take(60).collect()));
    }
    let mut out = String::with_capacity(256);
    out.push_str(HEADER);
    out.push_str("<methodCall><methodName>");
    out.push_str(name);
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        write_value(&mut out, p)?;
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    Ok(out)
}

/// Encode a `methodResponse` (success or fault).
pub fn encode_response(resp: &MethodResponse) -> Result<String, EncodeError> {
    match resp {
        MethodResponse::Success(v) => encode_success(v),
        MethodResponse::Fault(f) => encode_fault(f),
    }
}

/// Encode a successful `methodResponse` carrying `value`.
pub fn encode_success(value: &Value) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(256);
    out.push_str(HEADER);
    out.push_str("<methodResponse><params><param>");
    write_value(&mut out, value)?;
    out.push_str("</param></params></methodResponse>\n");
    Ok(out)
}

/// Encode a fault `methodResponse`. Invalid characters in the fault string are replaced
/// by U+FFFD so that a fault can always be sent.
pub fn encode_fault(fault: &Fault) -> Result<String, EncodeError> {
    let clean: String = fault
        .string
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    let mut out = String::with_capacity(256);
    out.push_str(HEADER);
    out.push_str(
        "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>",
    );
    let _ = write!(out, "{}", fault.code);
    out.push_str("</int></value></member><member><name>faultString</name><value><string>");
    push_escaped(&mut out, &clean)?;
    out.push_str("</string></value></member></struct></value></fault></methodResponse>\n");
    Ok(out)
}

/// Append `<value>…</value>` for `v`.
pub fn write_value(out: &mut String, v: &Value) -> Result<(), EncodeError> {
    out.push_str("<value>");
    match v {
        Value::Int(i) => {
            if i32::try_from(*i).is_ok() {
                let _ = write!(out, "<i4>{i}</i4>");
            } else {
                let _ = write!(out, "<i8>{i}</i8>");
            }
        }
        Value::Bool(b) => out.push_str(if *b {
            "<boolean>1</boolean>"
        } else {
            "<boolean>0</boolean>"
        }),
        Value::Double(d) => {
            if !d.is_finite() {
                return Err(EncodeError::NonFiniteDouble(*d));
            }
            let _ = write!(out, "<double>{}</double>", plain_double(*d));
        }
        Value::String(s) => {
            out.push_str("<string>");
            push_escaped(out, s)?;
            out.push_str("</string>");
        }
        Value::DateTime(d) => {
            let _ = write!(
                out,
                "<dateTime.iso8601>{}</dateTime.iso8601>",
                format_datetime(d)
            );
        }
        Value::Base64(b) => {
            out.push_str("<base64>");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push_str("</base64>");
        }
        Value::Struct(s) => {
            out.push_str("<struct>");
            for (name, value) in s.iter() {
                out.push_str("<member><name>");
                push_escaped(out, name)?;
                out.push_str("</name>");
                write_value(out, value)?;
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                write_value(out, item)?;
            }
            out.push_str("</data></array>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>");
    Ok(())
}

/// A finite double in plain decimal notation: Rust's `Display` for floats never uses an
/// exponent and prints the shortest text that parses back to the same value.
fn plain_double(d: f64) -> String {
    format!("{d}")
}

fn push_escaped(out: &mut String, s: &str) -> Result<(), EncodeError> {
    for (index, c) in s.chars().enumerate() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            // A bare CR would be normalised to LF by the reader; keep it as a reference.
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            c => {
                return Err(EncodeError::InvalidChar {
                    code: u32::from(c),
                    index,
                });
            }
        }
    }
    Ok(())
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

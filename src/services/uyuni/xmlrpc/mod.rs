//! XML-RPC codec (both directions) on quick-xml, shared by the UYUNI client and the
//! simulator.
//!
//! - [`Value`] / [`Struct`]: the value model with typed accessors.
//! - [`decode_call`] / [`decode_response`]: strict parsers with [`Limits`].
//! - [`encode_call`] / [`encode_response`] / [`encode_success`] / [`encode_fault`].

mod decode;
mod encode;
mod value;

#[cfg(test)]
mod tests;

pub use decode::{DecodeError, DecodeErrorKind, Limits, decode_call, decode_response, excerpt};
pub use encode::{
    EncodeError, encode_call, encode_call_parts, encode_fault, encode_response, encode_success,
    write_value,
};
pub use value::{Struct, Value, ValueError, format_datetime, parse_datetime};

/// A decoded `methodCall`: the method name and its parameters in order.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// `namespace.method`.
    pub name: String,
    /// Positional parameters.
    pub params: Vec<Value>,
}

/// An XML-RPC fault as carried in a `methodResponse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {code}: {string}")]
pub struct Fault {
    /// `faultCode`.
    pub code: i64,
    /// `faultString`.
    pub string: String,
}

impl Fault {
    /// A fault with this code and string.
    pub fn new(code: i64, string: impl Into<String>) -> Self {
        Fault {
            code,
            string: string.into(),
        }
    }
}

/// A decoded `methodResponse`.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodResponse {
    /// The single return value.
    Success(Value),
    /// A fault.
    Fault(Fault),
}

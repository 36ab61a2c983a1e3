//! Fault injection: a share of calls fail with a fault, stall, or get malformed XML.

/// What to inject, as shares of all calls (0.0 ..= 1.0 each).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultOptions {
    /// Share of calls answered with fault -1 "unhandled internal exception".
    pub fault_rate: f64,
    /// Share of calls that stall for `stall_ms` before being answered.
    pub stall_rate: f64,
    /// Stall length, ms.
    pub stall_ms: u64,
    /// Share of calls answered with truncated, malformed XML.
    pub malformed_rate: f64,
}

/// One injected misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// A fault response.
    Fault,
    /// A stall.
    Stall,
    /// Malformed XML.
    Malformed,
}

/// The malformed body: a response cut off in the middle of a struct.
pub const MALFORMED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><params><param><value><struct><member><name>id</name><value><i4>10";

impl FaultOptions {
    /// Decide for one call given a uniform draw in `[0, 1)`.
    pub fn pick(&self, draw: f64) -> Option<Injected> {
        let mut edge = self.fault_rate;
        if draw < edge {
            return Some(Injected::Fault);
        }
        edge += self.stall_rate;
        if draw < edge {
            return Some(Injected::Stall);
        }
        edge += self.malformed_rate;
        (draw < edge).then_some(Injected::Malformed)
    }
}

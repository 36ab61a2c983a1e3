//! Per-run limits: wall-clock deadline, instruction hook, memory.

use std::time::Duration;

/// Limits applied to one VM.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock budget of one phase when the phase declares none (seconds in TOML).
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Memory the VM may allocate, in bytes.
    pub memory_bytes: usize,
    /// How many VM instructions run between two deadline/cancel checks.
    pub hook_every: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            memory_bytes: 64 * 1024 * 1024,
            hook_every: 4096,
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = f64::deserialize(d)?;
        if !(s.is_finite() && s > 0.0) {
            return Err(serde::de::Error::custom(
                "timeout must be a positive number of seconds",
            ));
        }
        Ok(Duration::from_secs_f64(s))
    }
}

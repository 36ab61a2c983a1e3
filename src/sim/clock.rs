//! The simulator's clock: virtual "server local" time that follows the wall clock (or
//! stands still) and can be fast-forwarded, so tests never sleep for action durations.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

/// Virtual time source.
#[derive(Debug)]
pub struct SimClock {
    start: Instant,
    base: NaiveDateTime,
    frozen: bool,
    offset: Mutex<chrono::Duration>,
}

impl SimClock {
    /// A clock starting at `base`; when `frozen` it only moves with [`SimClock::advance`].
    pub fn new(base: NaiveDateTime, frozen: bool) -> SimClock {
        SimClock {
            start: Instant::now(),
            base,
            frozen,
            offset: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// Current virtual time, truncated to whole seconds (UYUNI dates carry no fraction).
    pub fn now(&self) -> NaiveDateTime {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let real = if self.frozen {
            chrono::Duration::zero()
        } else {
            chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
        };
        let t = self.base + real + offset;
        t - chrono::Duration::nanoseconds(i64::from(t.and_utc().timestamp_subsec_nanos()))
    }

    /// Move virtual time forward.
    pub fn advance(&self, by: Duration) {
        let mut o = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *o += chrono::Duration::from_std(by).unwrap_or_default();
    }
}

/// How long each step of the action lifecycle takes (virtual time).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// Queued → Picked Up once the earliest time is reached and the system is online (s).
    pub pickup_s: u64,
    /// Picked Up → done for errata actions (s).
    pub errata_s: u64,
    /// Picked Up → done for package installs (s).
    pub package_s: u64,
    /// Picked Up → done for scripts (s).
    pub script_s: u64,
    /// Picked Up → the system goes down for a reboot (s).
    pub reboot_delay_s: u64,
    /// How long a rebooting system stays down (s).
    pub reboot_downtime_s: u64,
    /// Content build/promote: each status step (s).
    pub build_step_s: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            pickup_s: 2,
            errata_s: 20,
            package_s: 10,
            script_s: 2,
            reboot_delay_s: 5,
            reboot_downtime_s: 30,
            build_step_s: 10,
        }
    }
}

impl Timings {
    /// Every step takes no time: actions finish at the next call.
    pub fn instant() -> Timings {
        Timings {
            pickup_s: 0,
            errata_s: 0,
            package_s: 0,
            script_s: 0,
            reboot_delay_s: 0,
            reboot_downtime_s: 0,
            build_step_s: 0,
        }
    }
}

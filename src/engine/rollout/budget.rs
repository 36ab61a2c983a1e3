//! Pure error-budget accounting for a run: failures per wave and for the whole run against
//! the policy's absolute and percentage limits. A limit left unset does not apply; with no
//! limit at all the tolerance is zero (the first failure trips).

use serde::Serialize;

use super::policy::{Budget, ErrorBudget};

/// Failures tolerated out of `size` hosts: the smaller of the absolute and the percentage
/// limit (a percentage rounds down), zero when neither is set.
pub fn tolerated(b: &Budget, size: usize) -> usize {
    let abs = b.hosts.map(|h| h as usize);
    let pct = b
        .percent
        .map(|p| ((size as f64) * p.clamp(0.0, 100.0) / 100.0).floor() as usize);
    match (abs, pct) {
        (Some(a), Some(p)) => a.min(p),
        (Some(a), None) => a,
        (None, Some(p)) => p,
        (None, None) => 0,
    }
}

/// The budget of one run as it proceeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetState {
    /// Failures tolerated in the whole run.
    pub run_tolerated: usize,
    /// Failures so far in the run.
    pub run_failed: usize,
    /// Failures tolerated in the current wave.
    pub wave_tolerated: usize,
    /// Failures so far in the current wave.
    pub wave_failed: usize,
    #[serde(skip)]
    per_wave: Budget,
}

/// Why the budget tripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tripped {
    /// `wave` or `run`.
    pub scope: &'static str,
    /// Failures counted.
    pub failed: usize,
    /// Failures tolerated.
    pub tolerated: usize,
}

impl std::fmt::Display for Tripped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error budget tripped: {} failed host(s) in the {}, {} tolerated",
            self.failed, self.scope, self.tolerated
        )
    }
}

impl BudgetState {
    /// A fresh budget for a run of `run_hosts` hosts.
    pub fn new(budget: &ErrorBudget, run_hosts: usize) -> Self {
        BudgetState {
            run_tolerated: tolerated(&budget.per_run, run_hosts),
            run_failed: 0,
            wave_tolerated: 0,
            wave_failed: 0,
            per_wave: budget.per_wave.clone(),
        }
    }

    /// Start a wave of `hosts` hosts.
    pub fn start_wave(&mut self, hosts: usize) {
        self.wave_tolerated = tolerated(&self.per_wave, hosts);
        self.wave_failed = 0;
    }

    /// Count `n` failed hosts.
    pub fn record_failures(&mut self, n: usize) {
        self.wave_failed += n;
        self.run_failed += n;
    }

    /// Whether a limit is exceeded (the run tripping wins over the wave).
    pub fn tripped(&self) -> Option<Tripped> {
        if self.run_failed > self.run_tolerated {
            Some(Tripped {
                scope: "run",
                failed: self.run_failed,
                tolerated: self.run_tolerated,
            })
        } else if self.wave_failed > self.wave_tolerated {
            Some(Tripped {
                scope: "wave",
                failed: self.wave_failed,
                tolerated: self.wave_tolerated,
            })
        } else {
            None
        }
    }

    /// Failures still tolerated (wave, run) before tripping.
    pub fn left(&self) -> (usize, usize) {
        (
            self.wave_tolerated.saturating_sub(self.wave_failed),
            self.run_tolerated.saturating_sub(self.run_failed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(hosts: Option<u32>, percent: Option<f64>) -> Budget {
        Budget { hosts, percent }
    }

    #[test]
    fn tolerance_is_the_smaller_limit() {
        assert_eq!(tolerated(&b(None, None), 100), 0);
        assert_eq!(tolerated(&b(Some(3), None), 100), 3);
        assert_eq!(tolerated(&b(None, Some(5.0)), 100), 5);
        assert_eq!(tolerated(&b(None, Some(5.0)), 19), 0);
        assert_eq!(tolerated(&b(Some(3), Some(10.0)), 100), 3);
        assert_eq!(tolerated(&b(Some(30), Some(10.0)), 100), 10);
        assert_eq!(tolerated(&b(None, Some(100.0)), 7), 7);
    }

    #[test]
    fn zero_budget_trips_on_first_failure() {
        let mut s = BudgetState::new(&ErrorBudget::default(), 10);
        s.start_wave(1);
        assert!(s.tripped().is_none());
        s.record_failures(1);
        let t = s.tripped().unwrap();
        assert_eq!(t.scope, "run");
        assert!(
            t.to_string()
                .contains("1 failed host(s) in the run, 0 tolerated")
        );
    }

    #[test]
    fn wave_and_run_limits() {
        let budget = ErrorBudget {
            per_wave: b(Some(1), None),
            per_run: b(Some(2), None),
        };
        let mut s = BudgetState::new(&budget, 30);
        s.start_wave(10);
        s.record_failures(1);
        assert!(s.tripped().is_none());
        assert_eq!(s.left(), (0, 1));
        s.start_wave(10);
        s.record_failures(1);
        assert!(s.tripped().is_none());
        s.start_wave(10);
        s.record_failures(1);
        assert_eq!(s.tripped().unwrap().scope, "run");
        let mut s = BudgetState::new(&budget, 30);
        s.start_wave(10);
        s.record_failures(2);
        // Run limit 2 not exceeded, wave limit 1 is.
        assert_eq!(s.tripped().unwrap().scope, "wave");
    }
}

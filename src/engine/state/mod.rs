//! Pure state machines (no I/O). The store changes a status only through these.
//!
//! Each machine is an enum implementing [`Status`]: its text form (`as_str`, `FromStr`, the
//! exact values of the schema's CHECK constraint), the list of allowed edges, and
//! [`Status::check`] which turns a forbidden edge into a [`TransitionError::Illegal`].
//! The store applies an allowed edge with a conditional `UPDATE … WHERE id=? AND status=?`;
//! when that touches no row the caller lost a race ([`TransitionError::Lost`]).
//!
//! - [`queue::QueueStatus`]: the lifecycle of a queue item (seed 003 §4 plus the
//!   prototype's `retry_pending`/`superseded` and `waiting_system`).
//! - [`test::TestStatus`] and [`test::PhaseStatus`]: one test attempt and its phases.
//! - [`run::RunStatus`] and [`run::RunHostStatus`]: a patch run and its per-system rows.

pub mod queue;
pub mod run;
pub mod test;

pub use queue::QueueStatus;
pub use run::{RunHostStatus, RunStatus};
pub use test::{PhaseStatus, TestStatus};

/// A transition the state machine forbids, or one that lost a race.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The state machine does not allow `from -> to`.
    #[error("{what} {id}: transition {from} -> {to} is not allowed")]
    Illegal {
        /// Kind of object.
        what: &'static str,
        /// Its identifier.
        id: String,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// The row was not in the expected status any more (another writer changed it).
    #[error("{what} {id}: expected status {expected}, but it changed concurrently")]
    Lost {
        /// Kind of object.
        what: &'static str,
        /// Its identifier.
        id: String,
        /// The status the caller expected.
        expected: String,
    },
}

/// A status text that is not one of the machine's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} status {value:?} (expected one of: {expected})")]
pub struct ParseStatusError {
    /// Which machine.
    pub what: &'static str,
    /// The text that did not parse.
    pub value: String,
    /// The valid values, comma separated.
    pub expected: String,
}

/// A finite state machine over a status enum.
pub trait Status: Copy + Eq + std::fmt::Debug + std::str::FromStr + 'static {
    /// Kind of object, for error messages (`"queue item"`).
    const WHAT: &'static str;
    /// Every state, in declaration order.
    const ALL: &'static [Self];

    /// The text stored in the database.
    fn as_str(self) -> &'static str;

    /// The states reachable from `self` in one step.
    fn successors(self) -> &'static [Self];

    /// Whether `from -> to` is an allowed edge.
    fn can_transition(from: Self, to: Self) -> bool {
        from.successors().contains(&to)
    }

    /// A state with no outgoing edge.
    fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }

    /// Every allowed edge `(from, to)`.
    fn edges() -> Vec<(Self, Self)> {
        Self::ALL
            .iter()
            .flat_map(|&f| f.successors().iter().map(move |&t| (f, t)))
            .collect()
    }

    /// `Ok` when `from -> to` is allowed, else [`TransitionError::Illegal`] naming `id`.
    fn check(from: Self, to: Self, id: impl std::fmt::Display) -> Result<(), TransitionError> {
        if Self::can_transition(from, to) {
            Ok(())
        } else {
            Err(TransitionError::Illegal {
                what: Self::WHAT,
                id: id.to_string(),
                from: from.as_str().to_string(),
                to: to.as_str().to_string(),
            })
        }
    }
}

/// Declares a status enum with its text values, `Display`, `FromStr` and serde as text.
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// The text stored in the database.
            pub const fn text(self) -> &'static str {
                match self { $( Self::$variant => $text ),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.text())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::engine::state::ParseStatusError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    _ => Err($crate::engine::state::ParseStatusError {
                        what: $what,
                        value: s.to_string(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use status_enum;

#[cfg(test)]
pub(crate) mod testutil {
    use super::Status;

    /// Every state round-trips through its text; every listed edge is allowed and every
    /// pair not listed is refused by `check`.
    pub fn exhaustive<S: Status>(allowed: &[(S, S)])
    where
        <S as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for &s in S::ALL {
            let parsed: S = s.as_str().parse().expect("round trip");
            assert_eq!(parsed, s);
        }
        assert!("bogus".parse::<S>().is_err());
        let edges = S::edges();
        for &(f, t) in allowed {
            assert!(S::can_transition(f, t), "{f:?} -> {t:?} should be allowed");
            assert!(S::check(f, t, 1).is_ok());
        }
        assert_eq!(
            edges.len(),
            allowed.len(),
            "edge list differs from the test's list"
        );
        for &f in S::ALL {
            for &t in S::ALL {
                if !allowed.contains(&(f, t)) {
                    assert!(
                        !S::can_transition(f, t),
                        "{f:?} -> {t:?} should be forbidden"
                    );
                    assert!(S::check(f, t, 7).is_err());
                }
            }
        }
    }
}

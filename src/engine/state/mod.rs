//! Pure state machines (no I/O). The store changes a status only through these.

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

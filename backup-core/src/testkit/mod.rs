//! Test kit (feature `testkit`): an in-memory store, a fault-injecting store, a fixed clock, and
//! the conformance suite every [`Store`](crate::Store) implementation runs.

mod conformance;
mod faulty;
mod memory;

pub use conformance::store_conformance;
pub use faulty::{FaultPlan, FaultyStore};
pub use memory::MemoryStore;

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct FixedClock(Mutex<Timestamp>);

impl FixedClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        FixedClock(Mutex::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: SignedDuration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0.lock().map(|t| *t).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

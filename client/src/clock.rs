//! Where the session handle reads the time. Production uses the system
//! clock; tests hand in the authority's manual clock, so that a token's
//! refresh window can be reached without waiting for it.

use std::time::SystemTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

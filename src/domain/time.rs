//! Points in time, as milliseconds since the Unix epoch: the unit the
//! database stores, cheap to compare, free of time zones. The current time
//! comes from a `Clock` (`crate::clock`), never from here.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, as JWT time claims count them (rounded down).
    pub fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1000))
    }

    /// This time truncated to whole seconds, so that it survives a trip
    /// through a JWT claim unchanged.
    pub fn truncated_to_seconds(self) -> Self {
        Self::from_unix_seconds(self.as_unix_seconds())
    }

    pub fn plus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    pub fn minus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// How long from `self` until `later`; zero if `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_down() {
        assert_eq!(Timestamp::from_millis(1_999).as_unix_seconds(), 1);
        assert_eq!(Timestamp::from_millis(1_999).truncated_to_seconds().as_millis(), 1_000);
    }

    #[test]
    fn until_never_negative() {
        let earlier = Timestamp::from_millis(1_000);
        let later = Timestamp::from_millis(3_500);
        assert_eq!(earlier.until(later), Duration::from_millis(2_500));
        assert_eq!(later.until(earlier), Duration::ZERO);
    }
}

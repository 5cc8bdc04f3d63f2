//! Throttles password guessing: at most a set number of password checks a
//! minute per username (Login and ChangePassword alike), refused before any
//! argon2 work. The state is per replica and forgets idle usernames.

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

pub struct LoginThrottle {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl LoginThrottle {
    /// `per_minute` attempts per username, all of them usable at once;
    /// `None` turns the throttle off.
    pub fn new(per_minute: Option<NonZeroU32>) -> Self {
        Self {
            limiter: per_minute.map(|rate| RateLimiter::keyed(Quota::per_minute(rate))),
        }
    }

    /// Counts an attempt for `username_key`; when over the limit, how long
    /// until the next attempt is allowed.
    pub fn check(&self, username_key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&username_key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Drops the usernames that could attempt again at full allowance.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Forgets idle usernames every minute, so that memory follows the
    /// usernames tried recently, not every username ever tried.
    pub async fn forget_idle_periodically(self: std::sync::Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            self.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_quota_then_says_when_to_retry() {
        let throttle = LoginThrottle::new(NonZeroU32::new(3));
        for _ in 0..3 {
            assert!(throttle.check("alice").is_ok());
        }
        let wait = throttle.check("alice").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(throttle.check("bob").is_ok(), "other usernames are not affected");
    }

    #[test]
    fn zero_turns_it_off() {
        let throttle = LoginThrottle::new(None);
        for _ in 0..100 {
            assert!(throttle.check("alice").is_ok());
        }
        throttle.forget_idle();
    }
}

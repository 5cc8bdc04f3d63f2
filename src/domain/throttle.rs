//! The fair login throttle's rules: which keys an attempt counts against,
//! and at what rate. The counts live in the database (shared by replicas);
//! the repository takes an attempt with one conditional upsert per key.
//!
//! Each key is a GCRA counter (the algorithm of `governor`): it allows
//! `burst` attempts at once, then one more every `window / burst`, so it
//! never allows more than `burst` per `window` in the long run. Only failed
//! attempts stay counted: a successful login gives its attempts back.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use sha2::{Digest, Sha256};

/// `burst` attempts, refilled at `burst` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: NonZeroU32,
    pub window: Duration,
}

impl Rate {
    /// How long one attempt occupies the key.
    pub fn interval(&self) -> Duration {
        self.window / self.burst.get()
    }
}

/// What a key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleScope {
    /// Failures for one username from one client address.
    UserAndIp,
    /// Failures for one username from networks the user does not know.
    User,
    /// Failures from one client address, across usernames (spraying).
    Ip,
    /// Sessions opened from one client address (an anomaly rule, never refused).
    SessionsFromIp,
}

/// A counter's identity: a SHA-256 of its scope and subject, so that no
/// typed-in username (people type passwords there) is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    pub fn new(scope: ThrottleScope, username_key: &str, ip: Option<IpAddr>) -> Self {
        let address = ip.map(throttle_address).unwrap_or_default();
        let subject = match scope {
            ThrottleScope::UserAndIp => format!("user-ip\0{username_key}\0{address}"),
            ThrottleScope::User => format!("user\0{username_key}"),
            ThrottleScope::Ip => format!("ip\0{address}"),
            ThrottleScope::SessionsFromIp => format!("sessions-ip\0{address}"),
        };
        let digest = Sha256::digest(subject.as_bytes());
        Self(digest.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The address a per-address key counts: the whole IPv4 address, or the /64
/// of an IPv6 one (a single host commonly holds a whole /64).
fn throttle_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

/// One key an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleTake {
    pub scope: ThrottleScope,
    pub key: ThrottleKey,
    pub rate: Rate,
}

/// The login throttle's settings; `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub window: Duration,
    pub per_user_and_ip: Option<NonZeroU32>,
    pub per_user: Option<NonZeroU32>,
    pub per_ip: Option<NonZeroU32>,
    /// Sessions opened from one address per window before it is an anomaly.
    pub sessions_per_ip: Option<NonZeroU32>,
}

impl ThrottlePolicy {
    pub const OFF: Self = Self {
        window: Duration::from_secs(900),
        per_user_and_ip: None,
        per_user: None,
        per_ip: None,
        sessions_per_ip: None,
    };

    /// The keys a password check for `username_key` from `ip` counts
    /// against, in the order they are taken. Without an address only the
    /// username counts; a network the user knows is spared the per-username
    /// key (an attacker elsewhere cannot lock the user out of it).
    pub fn takes(&self, username_key: &str, ip: Option<IpAddr>, known_network: bool) -> Vec<ThrottleTake> {
        let rate = |burst: NonZeroU32| Rate {
            burst,
            window: self.window,
        };
        let mut takes = Vec::with_capacity(3);
        let mut take = |scope, limit: Option<NonZeroU32>| {
            if let Some(limit) = limit {
                takes.push(ThrottleTake {
                    scope,
                    key: ThrottleKey::new(scope, username_key, ip),
                    rate: rate(limit),
                });
            }
        };
        if ip.is_some() {
            take(ThrottleScope::UserAndIp, self.per_user_and_ip);
            take(ThrottleScope::Ip, self.per_ip);
        }
        if !known_network {
            take(ThrottleScope::User, self.per_user);
        }
        takes
    }

    /// The key that counts sessions opened from `ip`, when that rule is on.
    pub fn sessions_from(&self, ip: Option<IpAddr>) -> Option<ThrottleTake> {
        let ip = ip?;
        let burst = self.sessions_per_ip?;
        Some(ThrottleTake {
            scope: ThrottleScope::SessionsFromIp,
            key: ThrottleKey::new(ThrottleScope::SessionsFromIp, "", Some(ip)),
            rate: Rate {
                burst,
                window: self.window,
            },
        })
    }
}

/// What taking an attempt answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleVerdict {
    Allowed,
    /// Refused by the key of `scope`; it allows the next attempt after `retry_after`.
    Refused {
        scope: ThrottleScope,
        retry_after: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            window: Duration::from_secs(900),
            per_user_and_ip: NonZeroU32::new(10),
            per_user: NonZeroU32::new(100),
            per_ip: NonZeroU32::new(100),
            sessions_per_ip: NonZeroU32::new(50),
        }
    }

    #[test]
    fn keys_hide_their_subject_and_differ_by_scope() {
        let ip = "203.0.113.7".parse().ok();
        let pair = ThrottleKey::new(ThrottleScope::UserAndIp, "alice", ip);
        assert_eq!(pair.as_str().len(), 64);
        assert!(!pair.as_str().contains("alice"));
        assert_ne!(pair, ThrottleKey::new(ThrottleScope::User, "alice", ip));
        assert_ne!(pair, ThrottleKey::new(ThrottleScope::UserAndIp, "alice", "203.0.113.8".parse().ok()));
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let one = ThrottleKey::new(ThrottleScope::Ip, "", "2001:db8::1".parse().ok());
        let other = ThrottleKey::new(ThrottleScope::Ip, "", "2001:db8::ffff:1".parse().ok());
        let elsewhere = ThrottleKey::new(ThrottleScope::Ip, "", "2001:db8:0:1::1".parse().ok());
        assert_eq!(one, other);
        assert_ne!(one, elsewhere);
    }

    #[test]
    fn which_keys_an_attempt_counts_against() {
        let ip = "203.0.113.7".parse().ok();
        let scopes = |takes: Vec<ThrottleTake>| takes.into_iter().map(|take| take.scope).collect::<Vec<_>>();
        assert_eq!(
            scopes(policy().takes("alice", ip, false)),
            [ThrottleScope::UserAndIp, ThrottleScope::Ip, ThrottleScope::User]
        );
        assert_eq!(scopes(policy().takes("alice", ip, true)), [ThrottleScope::UserAndIp, ThrottleScope::Ip]);
        assert_eq!(scopes(policy().takes("alice", None, false)), [ThrottleScope::User]);
        assert!(ThrottlePolicy::OFF.takes("alice", ip, false).is_empty());
        assert_eq!(policy().takes("alice", ip, false)[0].rate.interval(), Duration::from_secs(90));
    }
}

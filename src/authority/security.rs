//! Anomaly detection: the security policy (binding, refresh limits, the
//! login throttle, what revokes), and raising security events. Each event is
//! counted in metrics, logged, recorded in the audit trail (with a cursor of
//! the security stream) and announced to the admin stream; an event of a
//! kind listed in SECURITY_REVOKE_ON revokes its session in the same
//! transaction.
//!
//! Repeats of the same kind about the same subject (session, user or
//! address) are recorded at most once per SECURITY_EVENT_INTERVAL on each
//! replica, so that a flood (a client hammering Refresh, a password sprayer)
//! cannot turn into as many database writes; metrics count every one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::warn;

use super::{Authority, AuthorityError};
use crate::{
    domain::{
        Timestamp,
        audit::{AuditRecord, SecurityEventKind},
        binding::BindingPolicy,
        throttle::ThrottlePolicy,
    },
    metrics,
};

/// Which security events also revoke their session (reuse always does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevokeOn {
    /// A binding mismatch under SESSION_BINDING=enforce.
    pub binding_mismatch: bool,
    /// A refresh beyond REFRESH_MIN_INTERVAL.
    pub refresh_limited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityPolicy {
    pub binding: BindingPolicy,
    /// A session rotates at most once per this long; `None`: no limit.
    pub refresh_min_interval: Option<Duration>,
    /// No refresh extends a session past this long after its login.
    pub session_max_lifetime: Duration,
    pub throttle: ThrottlePolicy,
    pub revoke_on: RevokeOn,
    /// Repeats of an event are recorded at most once per this long.
    pub event_interval: Duration,
}

/// Told whenever a security event has been recorded (the admin stream
/// listens here).
pub trait SecurityListener: Send + Sync {
    fn recorded(&self);
}

/// Remembers when each (kind, subject) was last recorded.
pub struct SecurityMonitor {
    interval: Duration,
    recorded: Mutex<HashMap<(SecurityEventKind, String), Timestamp>>,
    listener: Arc<dyn SecurityListener>,
}

/// Entries kept before the monitor forgets those past their interval.
const REMEMBERED: usize = 10_000;

impl SecurityMonitor {
    pub fn new(interval: Duration, listener: Arc<dyn SecurityListener>) -> Self {
        Self {
            interval,
            recorded: Mutex::new(HashMap::new()),
            listener,
        }
    }

    /// Whether an event about `subject` should be recorded now: the first
    /// within its interval.
    fn first_in_interval(&self, kind: SecurityEventKind, subject: String, now: Timestamp) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        let mut recorded = self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = now.minus(self.interval);
        let key = (kind, subject);
        match recorded.get(&key) {
            Some(at) if *at > since => return false,
            Some(_) => {}
            None if recorded.len() >= REMEMBERED => {
                recorded.retain(|_, at| *at > since);
                // Still full: more distinct subjects within one interval
                // than it keeps (a spread-out attack). The event is recorded,
                // undeduplicated, rather than memory growing without bound.
                if recorded.len() >= REMEMBERED {
                    return true;
                }
            }
            None => {}
        }
        recorded.insert(key, now);
        true
    }
}

/// What an event is about, for telling repeats apart.
fn subject(record: &AuditRecord) -> String {
    let ip = record.client.ip_address.map(|ip| ip.to_string()).unwrap_or_default();
    match (record.session_id, record.user_id) {
        (Some(session), _) => session.to_string(),
        (None, Some(user)) => format!("{user} {ip} {}", record.client.device_id.as_deref().unwrap_or_default()),
        (None, None) => ip,
    }
}

impl Authority {
    /// Raises a security event (`record` of a security kind). With `revoke`,
    /// its session is revoked in the same transaction, and failing to write
    /// fails the call; otherwise a failed write is logged and the call goes
    /// on. Returns whether the session was revoked here.
    pub(super) async fn raise(&self, record: AuditRecord, revoke: bool) -> Result<bool, AuthorityError> {
        let Some(kind) = record.security_kind() else {
            return Ok(false);
        };
        metrics::security_event(kind);
        warn!(
            kind = kind.as_str(),
            severity = record.severity.map_or("", |severity| severity.as_str()),
            user_id = record.user_id.map(|id| id.to_string()),
            session_id = record.session_id.map(|id| id.to_string()),
            detail = record.detail.as_deref(),
            "security event"
        );
        let revoke = revoke && record.session_id.is_some();
        if !revoke
            && kind != SecurityEventKind::ReuseDetected
            && !self.monitor.first_in_interval(kind, subject(&record), record.occurred_at)
        {
            return Ok(false);
        }
        let session = revoke.then_some(record.session_id).flatten();
        match self.repository.record_security_event(&record, session).await {
            Ok((_, revoked)) => {
                self.monitor.listener.recorded();
                let Some((session, revocation)) = revoked else {
                    return Ok(false);
                };
                self.committed(std::slice::from_ref(&session), std::slice::from_ref(&revocation));
                warn!(session_id = %session.id, kind = kind.as_str(), "session revoked by a security action");
                Ok(true)
            }
            Err(error) if !revoke => {
                warn!(error = %error, kind = kind.as_str(), "could not record a security event");
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl SecurityListener for Nobody {
        fn recorded(&self) {}
    }

    #[test]
    fn repeats_within_the_interval_are_recorded_once() {
        let monitor = SecurityMonitor::new(Duration::from_secs(60), Arc::new(Nobody));
        let now = Timestamp::from_millis(1_000_000);
        let kind = SecurityEventKind::RefreshLimited;
        assert!(monitor.first_in_interval(kind, "s".into(), now));
        assert!(!monitor.first_in_interval(kind, "s".into(), now.plus(Duration::from_secs(59))));
        assert!(monitor.first_in_interval(kind, "t".into(), now), "another subject");
        assert!(monitor.first_in_interval(SecurityEventKind::BindingMismatch, "s".into(), now), "another kind");
        assert!(monitor.first_in_interval(kind, "s".into(), now.plus(Duration::from_secs(61))));
    }

    #[test]
    fn memory_stays_bounded_however_many_subjects_come_within_one_interval() {
        let monitor = SecurityMonitor::new(Duration::from_secs(60), Arc::new(Nobody));
        let now = Timestamp::from_millis(1_000_000);
        let kind = SecurityEventKind::FailedLoginsFromIp;
        for subject in 0..REMEMBERED + 500 {
            assert!(monitor.first_in_interval(kind, subject.to_string(), now), "each subject once");
        }
        let remembered = || monitor.recorded.lock().unwrap().len();
        assert_eq!(remembered(), REMEMBERED);
        assert!(!monitor.first_in_interval(kind, "0".into(), now), "the ones kept are still deduplicated");

        // Once the interval has passed, the old entries make room.
        let later = now.plus(Duration::from_secs(61));
        assert!(monitor.first_in_interval(kind, "new".into(), later));
        assert_eq!(remembered(), 1);
        assert!(!monitor.first_in_interval(kind, "new".into(), later));
    }

    #[test]
    fn a_zero_interval_records_every_one() {
        let monitor = SecurityMonitor::new(Duration::ZERO, Arc::new(Nobody));
        let now = Timestamp::from_millis(0);
        assert!(monitor.first_in_interval(SecurityEventKind::NewDevice, "s".into(), now));
        assert!(monitor.first_in_interval(SecurityEventKind::NewDevice, "s".into(), now));
    }
}

//! Anomaly detection: each rule raises a security event that is recorded in
//! the audit trail, counted in metrics, and pushed to admin subscribers.

use std::{num::NonZeroU32, time::Duration};

use token_authority::proto::{self, AuditKind, VerifyReason};
use tonic::Code;

use crate::helpers::{
    CHROME_ANDROID, FIREFOX, PASSWORD, TestApp, TestConfig, assert_status, client, next_security_events, reason,
    spawn_app,
};

fn kinds(events: &[proto::SecurityEvent]) -> Vec<AuditKind> {
    events.iter().map(|event| event.event.as_ref().unwrap().kind()).collect()
}

#[tokio::test]
async fn each_rule_raises_its_event_on_the_stream_and_in_the_trail() {
    let mut app = TestConfig::default()
        .rotation_grace(0)
        .security(|security| {
            security.throttle.per_user_and_ip = NonZeroU32::new(2);
            security.throttle.per_user = NonZeroU32::new(3);
            security.throttle.sessions_per_ip = NonZeroU32::new(2);
            security.refresh_min_interval = Some(Duration::from_secs(60));
        })
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let mut stream = app.watch_security(0).await;
    let home = client("203.0.113.7", FIREFOX, "laptop");

    // A first login is new to nobody; a second device and network are.
    let first = app.login_from("alice", PASSWORD, home.clone()).await.unwrap();
    app.clock.advance(Duration::from_secs(1));
    app.login_from("alice", PASSWORD, client("198.51.100.9", CHROME_ANDROID, "phone")).await.unwrap();
    // A second and third session from the first address: more than two per window.
    for _ in 0..2 {
        app.clock.advance(Duration::from_secs(1));
        app.login_from("alice", PASSWORD, home.clone()).await.unwrap();
    }
    // Failed logins from one address until its per-user-and-address key refuses.
    for _ in 0..3 {
        let _ = app.login_from("alice", "a guess", client("192.0.2.1", FIREFOX, "")).await;
    }
    // Refresh twice within a minute.
    let refreshed = app.refresh_from(&first.access_token, home.clone()).await.unwrap();
    assert_status(app.refresh_from(&refreshed.access_token, home.clone()).await, Code::ResourceExhausted, "retry");
    // Reuse of a retired token.
    app.clock.advance(Duration::from_millis(10));
    assert!(app.refresh(&first.access_token).await.is_err());

    let events = next_security_events(&mut stream, 6).await;

    assert_eq!(
        kinds(&events),
        [
            AuditKind::NewDevice,
            AuditKind::NewNetwork,
            AuditKind::SessionsFromIp,
            AuditKind::FailedLoginsForUser,
            AuditKind::RefreshLimited,
            AuditKind::ReuseDetected,
        ]
    );
    let cursors: Vec<u64> = events.iter().map(|event| event.cursor).collect();
    assert_eq!(cursors, [1, 2, 3, 4, 5, 6], "gapless, in order");
    let new_device = events[0].event.as_ref().unwrap();
    assert_eq!(new_device.device_id, "phone");
    assert_eq!(new_device.severity(), proto::Severity::Low);
    assert_eq!(events[2].event.as_ref().unwrap().ip_address, "203.0.113.7");
    assert!(events[2].event.as_ref().unwrap().user_id.is_empty(), "about the address");
    assert_eq!(events[5].event.as_ref().unwrap().severity(), proto::Severity::High);
    // The same records are in the audit trail.
    let trail = app
        .audit_of(&[
            AuditKind::NewDevice,
            AuditKind::NewNetwork,
            AuditKind::SessionsFromIp,
            AuditKind::FailedLoginsForUser,
            AuditKind::RefreshLimited,
            AuditKind::ReuseDetected,
        ])
        .await;
    assert_eq!(trail.len(), 6);
}

#[tokio::test]
async fn a_subscriber_resumes_after_its_cursor_and_ends_on_shutdown() {
    let mut app = TestConfig::default()
        .rotation_grace(0)
        .configure(|config| config.security.event_interval = Duration::ZERO)
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    let mut first = app.watch_security(0).await;
    let mut tokens = vec![login.access_token.clone()];
    for _ in 0..3 {
        let session = app.login("alice", PASSWORD).await.unwrap();
        let rotated = app.refresh(&session.access_token).await.unwrap();
        app.clock.advance(Duration::from_millis(10));
        let _ = app.refresh(&session.access_token).await;
        tokens.push(rotated.access_token);
    }
    let seen = next_security_events(&mut first, 2).await;
    drop(first);

    let mut resumed = app.watch_security(seen[1].cursor).await;
    let rest = next_security_events(&mut resumed, 1).await;

    assert_eq!(rest[0].cursor, 3);
    assert_eq!(kinds(&rest), [AuditKind::ReuseDetected]);
    let stopping = tokio::spawn(async move { app.stop().await });
    let ended = tokio::time::timeout(Duration::from_secs(10), resumed.message()).await.expect("ends promptly");
    assert_eq!(ended.expect_err("ends with a status").code(), Code::Unavailable);
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_cursor_never_handed_out_is_out_of_range() {
    let mut app = spawn_app().await;
    let ahead = app
        .admin
        .watch_security_events(crate::helpers::admin_request(proto::WatchSecurityEventsRequest { after_cursor: 7 }))
        .await;
    assert_status(ahead, Code::OutOfRange, "after_cursor 7 is ahead of the latest event (0)");
}

#[tokio::test]
async fn security_events_need_an_admin_key() {
    let mut app = spawn_app().await;
    let anonymous = app
        .admin
        .watch_security_events(tonic::Request::new(proto::WatchSecurityEventsRequest::default()))
        .await;
    assert_status(anonymous, Code::Unauthenticated, "authorization");
    let service = app
        .admin
        .watch_security_events(crate::helpers::with_key(
            proto::WatchSecurityEventsRequest::default(),
            crate::helpers::SERVICE_KEY,
        ))
        .await;
    assert_status(service, Code::PermissionDenied, "may not make admin calls");
}

#[tokio::test]
async fn events_of_another_replica_reach_a_subscriber() {
    if crate::helpers::postgres_server().is_none() {
        eprintln!("skipped: several replicas need PostgreSQL; tests/run.sh provides it");
        return;
    }
    let config = || {
        TestConfig::default()
            .rotation_grace(0)
            .configure(|config| config.revocations.poll_interval = Duration::from_millis(100))
    };
    let mut first: TestApp = config().spawn().await;
    let mut second = config().spawn_sharing_database(&first).await;
    let login = first.user_with_session("alice").await;
    let mut stream = second.watch_security(0).await;
    first.refresh(&login.access_token).await.unwrap();
    first.clock.advance(Duration::from_millis(10));

    assert!(first.refresh(&login.access_token).await.is_err());

    let events = next_security_events(&mut stream, 1).await;
    assert_eq!(kinds(&events), [AuditKind::ReuseDetected]);
    assert_eq!(reason(&second.verify(&login.access_token).await), VerifyReason::Revoked);
}

//! The audit trail: every state change recorded with who acted and from
//! where, listed with filters and pages, kept for AUDIT_RETENTION, and
//! never holding a secret or a whole token.

use std::time::Duration;

use token_authority::{
    authority::cleanup,
    clock::Clock,
    domain::audit::{AuditKind as Kind, AuditRecord},
    proto::{self, AuditKind},
};

use crate::helpers::{
    ADMIN_KEY, CHROME_ANDROID, FIREFOX, JWT_SECRET, PASSWORD, SERVICE_KEY, TestConfig, admin_request, client, spawn_app,
};

#[tokio::test]
async fn every_state_change_is_recorded_with_its_actor_and_client() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let user_id = app.create_user("alice", PASSWORD, &["reader"]).await;
    let laptop = client("203.0.113.7", FIREFOX, "laptop");
    let login = app.login_from("alice", PASSWORD, laptop.clone()).await.unwrap();
    let _ = app.login_from("alice", "a guess", laptop.clone()).await;
    let refreshed = app.refresh_from(&login.access_token, laptop.clone()).await.unwrap();
    let other = app.login("alice", PASSWORD).await.unwrap();
    app.client
        .change_password(proto::ChangePasswordRequest {
            access_token: refreshed.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new passphrase".into(),
        })
        .await
        .unwrap();
    app.clock.advance(Duration::from_millis(10));
    let reuse = app.refresh(&refreshed.access_token).await;
    assert!(reuse.is_err());
    let third = app.login("alice", "a brand new passphrase").await.unwrap();
    app.logout(&third.access_token).await.unwrap();
    let fourth = app.login("alice", "a brand new passphrase").await.unwrap();
    app.client
        .logout_all(proto::LogoutAllRequest {
            access_token: fourth.access_token.clone(),
            keep_current: true,
        })
        .await
        .unwrap();
    app.admin
        .revoke_session(admin_request(proto::RevokeSessionRequest {
            session_id: fourth.session.clone().unwrap().session_id,
        }))
        .await
        .unwrap();
    for disabled in [true, false] {
        app.admin
            .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
                user_id: user_id.clone(),
                disabled,
            }))
            .await
            .unwrap();
    }

    let mut trail = app.audit(proto::ListAuditEventsRequest::default()).await;
    trail.reverse();

    let kinds: Vec<AuditKind> = trail.iter().map(proto::AuditEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::UserCreated,
            AuditKind::Login,
            AuditKind::LoginFailed,
            AuditKind::Refresh,
            AuditKind::Login,
            AuditKind::PasswordChanged,
            AuditKind::SessionRevoked,
            AuditKind::ReuseDetected,
            AuditKind::Login,
            AuditKind::Logout,
            AuditKind::Login,
            AuditKind::LogoutAll,
            AuditKind::SessionRevoked,
            AuditKind::UserDisabled,
            AuditKind::UserEnabled,
        ]
    );
    assert!(trail.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert_eq!(trail[0].actor, "admin:test-admin");
    assert_eq!(trail[0].user_id, user_id);
    let first_login = &trail[1];
    assert_eq!(first_login.session_id, login.session.unwrap().session_id);
    assert_eq!(first_login.ip_address, "203.0.113.7");
    assert_eq!(first_login.user_agent_family, "Firefox on Linux");
    assert_eq!(first_login.device_id, "laptop");
    assert!(first_login.actor.is_empty(), "the user acted");
    assert_eq!(trail[2].detail, "wrong_password");
    assert_eq!(trail[5].detail, "revoked 1", "the other session: {other:?}");
    assert_eq!(trail[6].detail, "reuse_detected");
    assert_eq!(trail[7].severity(), proto::Severity::High);
    assert_eq!(trail[12].actor, "admin:test-admin");
    assert_eq!(trail[12].detail, "admin");
    assert_eq!(trail[13].detail, "revoked 0", "every session had ended");
}

#[tokio::test]
async fn the_trail_filters_by_user_session_kind_and_time_and_pages_without_overlap() {
    let mut app = spawn_app().await;
    let alice = app.user_with_session("alice").await;
    let bob = app.user_with_session("bob").await;
    let start = app.clock.now();
    app.clock.advance(Duration::from_secs(60));
    let mut tokens = Vec::new();
    for _ in 0..12 {
        tokens.push(app.login("alice", PASSWORD).await.unwrap());
    }
    app.clock.advance(Duration::from_secs(60));
    let later = app.clock.now();
    app.refresh(&tokens[0].access_token).await.unwrap();

    let of_alice = app
        .audit(proto::ListAuditEventsRequest {
            user_id: alice.user_id.clone(),
            page_size: 5,
            ..Default::default()
        })
        .await;
    assert_eq!(of_alice.len(), 1 + 1 + 12 + 1, "created, logged in 13 times, refreshed once");
    let ids: std::collections::BTreeSet<i64> = of_alice.iter().map(|event| event.id).collect();
    assert_eq!(ids.len(), of_alice.len(), "no record on two pages");
    assert!(of_alice.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");
    assert!(of_alice.iter().all(|event| event.user_id == alice.user_id));

    let session = tokens[0].session.clone().unwrap().session_id;
    let of_session = app
        .audit(proto::ListAuditEventsRequest {
            session_id: session.clone(),
            ..Default::default()
        })
        .await;
    let kinds: Vec<AuditKind> = of_session.iter().map(proto::AuditEvent::kind).collect();
    assert_eq!(kinds, [AuditKind::Refresh, AuditKind::Login]);

    let logins_in_window = app
        .audit(proto::ListAuditEventsRequest {
            kinds: vec![AuditKind::Login as i32],
            since: Some(prost_types::Timestamp {
                seconds: start.as_unix_seconds() + 1,
                nanos: 0,
            }),
            until: Some(prost_types::Timestamp {
                seconds: later.as_unix_seconds(),
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(logins_in_window.len(), 12, "alice's twelve, not the first two");
    let of_bob = app
        .audit(proto::ListAuditEventsRequest {
            user_id: bob.user_id,
            kinds: vec![AuditKind::Login as i32, AuditKind::Refresh as i32],
            ..Default::default()
        })
        .await;
    assert_eq!(of_bob.len(), 1);

    let bad = app
        .admin
        .list_audit_events(admin_request(proto::ListAuditEventsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        }))
        .await;
    crate::helpers::assert_status(bad, tonic::Code::InvalidArgument, "page_token");
    let bad_kind = app
        .admin
        .list_audit_events(admin_request(proto::ListAuditEventsRequest {
            kinds: vec![999],
            ..Default::default()
        }))
        .await;
    crate::helpers::assert_status(bad_kind, tonic::Code::InvalidArgument, "kinds");
    let service = app
        .admin
        .list_audit_events(crate::helpers::with_key(proto::ListAuditEventsRequest::default(), SERVICE_KEY))
        .await;
    crate::helpers::assert_status(service, tonic::Code::PermissionDenied, "may not make admin calls");
}

#[tokio::test]
async fn no_secret_and_no_whole_token_is_ever_in_the_trail() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let phone = client("198.51.100.9", CHROME_ANDROID, "phone");
    let login = app.login_from("alice", PASSWORD, phone.clone()).await.unwrap();
    let refreshed = app.refresh_from(&login.access_token, phone.clone()).await.unwrap();
    let new_password = "another secret passphrase";
    let changed = app
        .client
        .change_password(proto::ChangePasswordRequest {
            access_token: refreshed.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: new_password.into(),
        })
        .await
        .unwrap()
        .into_inner();
    // A password typed into the username field, and wrong passwords.
    let typed_into_username = "hunter2-typed-into-the-username";
    let _ = app.login_from(typed_into_username, "whatever", phone.clone()).await;
    let _ = app.login_from("alice", "a wrong guess 12345", phone.clone()).await;
    app.clock.advance(Duration::from_millis(10));
    let _ = app.refresh(&login.access_token).await;
    app.logout(&changed.access_token).await.unwrap();

    let repository = app.repository().await;
    let stored = repository
        .list_audit(&token_authority::domain::audit::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = app.audit(proto::ListAuditEventsRequest::default()).await;

    assert!(stored.len() >= 8 && listed.len() == stored.len());
    let text = format!("{stored:?} {listed:?}");
    let tokens = [&login.access_token, &refreshed.access_token, &changed.access_token];
    let signatures = tokens.map(|token| token.rsplit('.').next().unwrap().to_owned());
    for secret in [
        PASSWORD,
        new_password,
        typed_into_username,
        "a wrong guess 12345",
        JWT_SECRET,
        ADMIN_KEY,
        "$argon2",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the trail");
    }
    for token in tokens.iter().map(|token| token.as_str()).chain(signatures.iter().map(String::as_str)) {
        assert!(!text.contains(token), "a token is in the trail");
    }
    assert!(!text.contains(CHROME_ANDROID), "the user agent is kept as a family only");
    assert!(text.contains("Chrome on Android"));
}

#[tokio::test]
async fn cleanup_removes_records_past_the_retention_in_batches() {
    let mut app = TestConfig::default()
        .configure(|config| config.cleanup.policy.audit_retention = Duration::from_secs(3600))
        .spawn()
        .await;
    let repository = app.repository().await;
    let old = app.clock.now();
    for _ in 0..1_100 {
        repository
            .append_audit(&AuditRecord::new(Kind::LoginFailed, old).detail("unknown_user"))
            .await
            .unwrap();
    }
    app.clock.advance(Duration::from_secs(3601));
    let login = app.user_with_session("alice").await;

    let policy = token_authority::authority::CleanupPolicy {
        session_grace: Duration::ZERO,
        event_retention: Duration::from_secs(3600),
        audit_retention: Duration::from_secs(3600),
        known_client_retention: Duration::from_secs(3600),
    };
    let report = cleanup(&repository, None, &policy, app.clock.now()).await.unwrap();

    assert_eq!(report.audit_deleted, 1_100, "more than one batch of 1,000");
    let left = app.audit(proto::ListAuditEventsRequest::default()).await;
    let kinds: Vec<AuditKind> = left.iter().map(proto::AuditEvent::kind).collect();
    assert_eq!(kinds, [AuditKind::Login, AuditKind::UserCreated]);
    assert_eq!(left[0].session_id, login.session.unwrap().session_id);
}

//! Session binding: a session is bound to the client that logged in (its
//! device id, network prefix and user-agent family), and the rotation grace
//! period belongs to the client that rotated.

use token_authority::{
    domain::binding::{BindingMode, BoundAttributes},
    proto::{self, AuditKind, RevocationReason, VerifyReason},
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{CHROME_ANDROID, FIREFOX, PASSWORD, TestConfig, assert_status, client, next_revocations, reason};

fn laptop() -> proto::ClientContext {
    client("203.0.113.7", FIREFOX, "laptop")
}

fn thief() -> proto::ClientContext {
    client("198.51.100.66", CHROME_ANDROID, "burner")
}

fn binding(mode: BindingMode) -> TestConfig {
    TestConfig::default().security(|security| security.binding.mode = mode)
}

#[tokio::test]
async fn probe_grace_theft_by_another_client_revokes_the_session() {
    // The thief holds the token the user is about to rotate, and retries it
    // within the grace period as the user's own retry would: under the
    // default `log` as under `enforce`.
    for mode in [BindingMode::Log, BindingMode::Enforce] {
        let mut app = binding(mode).spawn().await;
        app.create_user("alice", PASSWORD, &[]).await;
        let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
        let mut stream = app.watch(0, false).await.unwrap();
        let rotated = app.refresh_from(&login.access_token, laptop()).await.unwrap();

        let theft = app.refresh_from(&login.access_token, thief()).await;

        assert_status(theft, Code::Unauthenticated, "revoked");
        assert_eq!(reason(&app.verify(&rotated.access_token).await), VerifyReason::Revoked, "{mode:?}");
        let events = next_revocations(&mut stream, 2).await;
        assert_eq!(events[1].reason(), RevocationReason::ReuseDetected);
        let reuse = app.audit_of(&[AuditKind::ReuseDetected]).await;
        assert_eq!(reuse.len(), 1);
        assert_eq!(reuse[0].ip_address, "198.51.100.66");
        assert_eq!(reuse[0].detail, "a retry within the grace period from another client");
    }
}

#[tokio::test]
async fn the_rotating_clients_own_retry_within_the_grace_period_gets_the_current_token() {
    for mode in [BindingMode::Log, BindingMode::Enforce] {
        let mut app = binding(mode).spawn().await;
        app.create_user("alice", PASSWORD, &[]).await;
        let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
        let rotated = app.refresh_from(&login.access_token, laptop()).await.unwrap();

        // The same device, a neighbouring address, a newer browser version.
        let same_client = client("203.0.113.99", &FIREFOX.replace("128.0", "129.0"), "laptop");
        let retry = app.refresh_from(&login.access_token, same_client).await.unwrap();

        assert_eq!(retry.access_token, rotated.access_token, "{mode:?}");
        assert_eq!(reason(&app.verify(&rotated.access_token).await), VerifyReason::Ok);
        assert!(app.audit_of(&[AuditKind::ReuseDetected, AuditKind::BindingMismatch]).await.is_empty());
    }
}

#[tokio::test]
async fn a_retry_within_the_grace_period_without_a_client_is_not_compared() {
    // A backend that passes no client context is not compared, as with any
    // Refresh: its retry still gets the current token.
    let mut app = binding(BindingMode::Enforce).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
    let rotated = app.refresh_from(&login.access_token, laptop()).await.unwrap();

    let retry = app.refresh(&login.access_token).await.unwrap();

    assert_eq!(retry.access_token, rotated.access_token);
    assert!(app.audit_of(&[AuditKind::ReuseDetected, AuditKind::BindingMismatch]).await.is_empty());
}

#[tokio::test]
async fn under_enforce_a_refresh_from_another_client_is_refused_and_revokes() {
    let mut app = binding(BindingMode::Enforce).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
    let mut stream = app.watch(0, false).await.unwrap();

    let stolen = app.refresh_from(&login.access_token, thief()).await;

    let status = assert_status(stolen, Code::PermissionDenied, "client");
    let info = status.get_error_details().error_info().cloned().expect("an ErrorInfo detail");
    assert_eq!(info.reason, "BINDING_MISMATCH");
    // SECURITY_REVOKE_ON=binding_mismatch by default: the session is gone.
    let events = next_revocations(&mut stream, 1).await;
    assert_eq!(events[0].reason(), RevocationReason::SecurityAction);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Revoked);
    let high = app.audit_of(&[AuditKind::BindingMismatch]).await;
    assert_eq!(high[0].severity(), proto::Severity::High);
    let revoked = app.audit_of(&[AuditKind::SessionRevoked]).await;
    assert_eq!(revoked[0].detail, "security_action: security.binding_mismatch");
}

#[tokio::test]
async fn under_enforce_without_the_revoke_action_the_session_survives_the_refusal() {
    let mut app = binding(BindingMode::Enforce)
        .security(|security| security.revoke_on.binding_mismatch = false)
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();

    assert_status(app.refresh_from(&login.access_token, thief()).await, Code::PermissionDenied, "client");

    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok);
    app.refresh_from(&login.access_token, laptop()).await.expect("the bound client still refreshes");
}

#[tokio::test]
async fn under_log_a_refresh_from_another_client_rotates_and_is_recorded() {
    let mut app = binding(BindingMode::Log).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();

    let moved = app.refresh_from(&login.access_token, thief()).await.unwrap();

    assert_eq!(moved.session.unwrap().device_id, "burner", "the session follows its client under log");
    assert_eq!(app.audit_of(&[AuditKind::BindingMismatch]).await.len(), 1);
    assert_eq!(reason(&app.verify(&moved.access_token).await), VerifyReason::Ok);
}

#[tokio::test]
async fn verify_with_a_client_shows_or_refuses_a_mismatch() {
    let mut logged = binding(BindingMode::Log).spawn().await;
    logged.create_user("alice", PASSWORD, &[]).await;
    let login = logged.login_from("alice", PASSWORD, laptop()).await.unwrap();

    let same = logged.verify_from(&login.access_token, laptop()).await;
    let other = logged.verify_from(&login.access_token, thief()).await;

    assert!(same.valid && !same.binding_mismatch);
    assert!(other.valid && other.binding_mismatch, "log: valid, and the mismatch shown");
    assert_eq!(logged.audit_of(&[AuditKind::BindingMismatch]).await[0].detail, "verify");

    let mut enforced = binding(BindingMode::Enforce)
        .security(|security| security.revoke_on.binding_mismatch = false)
        .spawn()
        .await;
    enforced.create_user("alice", PASSWORD, &[]).await;
    let login = enforced.login_from("alice", PASSWORD, laptop()).await.unwrap();
    let refused = enforced.verify_from(&login.access_token, thief()).await;
    assert!(!refused.valid);
    assert_eq!(reason(&refused), VerifyReason::BindingMismatch);
    assert!(enforced.verify_from(&login.access_token, laptop()).await.valid);
    assert!(enforced.verify(&login.access_token).await.valid, "a caller that passes no client is not compared");
}

#[tokio::test]
async fn each_bound_attribute_is_compared_and_only_the_chosen_ones() {
    let mut app = binding(BindingMode::Enforce)
        .security(|security| security.revoke_on.binding_mismatch = false)
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
    for other in [
        client("198.51.100.7", FIREFOX, "laptop"),
        client("203.0.113.7", CHROME_ANDROID, "laptop"),
        client("203.0.113.7", FIREFOX, "phone"),
        client("203.0.113.7", FIREFOX, ""),
    ] {
        let verdict = app.verify_from(&login.access_token, other.clone()).await;
        assert_eq!(reason(&verdict), VerifyReason::BindingMismatch, "{other:?}");
        // Refresh compares in its guarded update: each attribute there too.
        let refused = app.refresh_from(&login.access_token, other.clone()).await;
        assert_eq!(refused.map(|_| ()).unwrap_err().code(), Code::PermissionDenied, "{other:?}");
    }

    let mut device_only = binding(BindingMode::Enforce)
        .security(|security| {
            security.binding.attributes = BoundAttributes {
                device_id: true,
                ip_prefix: false,
                user_agent_family: false,
            }
        })
        .spawn()
        .await;
    device_only.create_user("alice", PASSWORD, &[]).await;
    let login = device_only.login_from("alice", PASSWORD, laptop()).await.unwrap();
    let moved = client("198.51.100.7", CHROME_ANDROID, "laptop");
    assert!(device_only.verify_from(&login.access_token, moved.clone()).await.valid);
    device_only.refresh_from(&login.access_token, moved).await.expect("only the device is bound");
}

#[tokio::test]
async fn a_session_opened_without_a_client_binds_nothing() {
    let mut app = binding(BindingMode::Enforce).spawn().await;
    let login = app.user_with_session("alice").await;

    app.refresh_from(&login.access_token, thief()).await.expect("nothing to compare with");
}

#[tokio::test]
async fn with_binding_off_nothing_is_compared() {
    let mut app = binding(BindingMode::Off).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login_from("alice", PASSWORD, laptop()).await.unwrap();
    let rotated = app.refresh_from(&login.access_token, laptop()).await.unwrap();

    let retry = app.refresh_from(&login.access_token, thief()).await.unwrap();

    assert_eq!(retry.access_token, rotated.access_token);
    assert!(app.verify_from(&rotated.access_token, thief()).await.valid);
    assert!(app.audit_of(&[AuditKind::BindingMismatch]).await.is_empty());
}

//! Refresh limits: a session rotates at most once per REFRESH_MIN_INTERVAL,
//! never lives past SESSION_MAX_LIFETIME, and each refresh carries the
//! user's current name and roles (a disabled user cannot refresh).

use std::time::Duration;

use futures::future::join_all;
use token_authority::proto::{self, AuditKind, VerifyReason};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    TestConfig, admin_request, assert_status, claims_of, next_revocations, reason, refresh_on, seconds, spawn_app,
};

fn limited(seconds: u64) -> TestConfig {
    TestConfig::default().security(|security| security.refresh_min_interval = Some(Duration::from_secs(seconds)))
}

#[tokio::test]
async fn probe_a_refresh_flood_gets_one_rotation_and_retry_info() {
    let mut app = limited(30).spawn().await;
    let login = app.user_with_session("alice").await;
    let mut stream = app.watch(0, false).await.unwrap();
    let rotated = app.refresh(&login.access_token).await.unwrap();
    assert_eq!(next_revocations(&mut stream, 1).await[0].reason(), proto::RevocationReason::Rotated);

    let flood = join_all((0..200).map(|_| refresh_on(app.client.clone(), rotated.access_token.clone()))).await;

    for result in &flood {
        let status = result.as_ref().expect_err("no second rotation within the interval");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let retry = status.get_error_details().retry_info().cloned().expect("a RetryInfo detail");
        let delay = retry.retry_delay.expect("a delay");
        assert!(delay > Duration::ZERO && delay <= Duration::from_secs(30), "{delay:?}");
    }
    assert_eq!(reason(&app.verify(&rotated.access_token).await), VerifyReason::Ok, "the session lives on");
    // One rotation event in all (the first refresh), not one per attempt.
    let heartbeat_or_nothing = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(heartbeat_or_nothing.is_err(), "the flood wrote no revocation event");
    // Recorded once (SECURITY_EVENT_INTERVAL), counted every time in metrics.
    assert_eq!(app.audit_of(&[AuditKind::RefreshLimited]).await.len(), 1);

    app.clock.advance(Duration::from_secs(30));
    app.refresh(&rotated.access_token).await.expect("after the interval, a rotation again");
}

#[tokio::test]
async fn a_retry_within_the_grace_period_still_gets_the_current_token_when_limited() {
    let mut app = limited(30).spawn().await;
    let login = app.user_with_session("alice").await;
    let rotated = app.refresh(&login.access_token).await.unwrap();

    let retry = app.refresh(&login.access_token).await.unwrap();

    assert_eq!(retry.access_token, rotated.access_token);
}

#[tokio::test]
async fn the_limit_can_revoke_a_session_that_hammers_refresh() {
    let mut app = limited(30).security(|security| security.revoke_on.refresh_limited = true).spawn().await;
    let login = app.user_with_session("alice").await;
    let rotated = app.refresh(&login.access_token).await.unwrap();

    assert_status(app.refresh(&rotated.access_token).await, Code::Unauthenticated, "revoked");

    assert_eq!(reason(&app.verify(&rotated.access_token).await), VerifyReason::Revoked);
}

#[tokio::test]
async fn refresh_never_extends_a_session_past_its_maximum_lifetime() {
    // Tokens live an hour; a session at most three.
    let mut app = TestConfig::default()
        .configure(|config| {
            config.tokens.lifetimes.standard = Duration::from_secs(3600);
            config.tokens.lifetimes.remember_me = Duration::from_secs(7200);
            config.tokens.lifetimes.refresh_window = Duration::from_secs(600);
            config.security.session_max_lifetime = Duration::from_secs(3 * 3600);
        })
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    let created = seconds(&login.session.clone().unwrap().created_at);
    let mut token = login.access_token;
    let mut expiries = Vec::new();
    for minutes in [50, 50, 50, 20] {
        app.clock.advance(Duration::from_secs(minutes * 60));
        let refreshed = app.refresh(&token).await.unwrap();
        expiries.push(seconds(&refreshed.expires_at) - created);
        token = refreshed.access_token;
    }

    // 50 min + 1 h, 100 min + 1 h, then capped at 3 h (at 150 and 170 min).
    assert_eq!(expiries, [110 * 60, 160 * 60, 3 * 3600, 3 * 3600]);
    assert_eq!(claims_of(&token)["exp"].as_i64().unwrap() - created, 3 * 3600);
    app.clock.advance(Duration::from_secs(11 * 60));
    assert_status(app.refresh(&token).await, Code::Unauthenticated, "expired");
}

#[tokio::test]
async fn the_next_refresh_carries_roles_set_by_an_operator() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    assert_eq!(claims_of(&login.access_token)["roles"], serde_json::json!(["reader"]));

    app.admin
        .set_user_roles(admin_request(proto::SetUserRolesRequest {
            user_id: login.user_id.clone(),
            roles: vec!["writer".into(), "admin".into()],
        }))
        .await
        .unwrap();
    let refreshed = app.refresh(&login.access_token).await.unwrap();

    assert_eq!(claims_of(&refreshed.access_token)["roles"], serde_json::json!(["admin", "writer"]));
    let verified = app.verify(&refreshed.access_token).await;
    assert_eq!(verified.roles, ["admin", "writer"]);
    let changed = app.audit_of(&[AuditKind::RolesChanged]).await;
    assert_eq!(changed[0].actor, "admin:test-admin");
    assert_eq!(changed[0].user_id, login.user_id);
    assert_eq!(changed[0].detail, "admin,writer");
}

#[tokio::test]
async fn set_user_roles_checks_its_input() {
    let mut app = spawn_app().await;
    let request = |user_id: String, roles: Vec<String>| admin_request(proto::SetUserRolesRequest { user_id, roles });
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_status(app.admin.set_user_roles(request(unknown, vec![])).await, Code::NotFound, "user_id");
    assert_status(app.admin.set_user_roles(request("nope".into(), vec![])).await, Code::InvalidArgument, "user_id");
    let login = app.user_with_session("alice").await;
    let bad = request(login.user_id, vec!["not a role".into()]);
    assert_status(app.admin.set_user_roles(bad).await, Code::InvalidArgument, "roles");
}

#[tokio::test]
async fn the_next_refresh_carries_the_current_username() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    app.execute_sql(
        "UPDATE users SET username = 'alice.renamed', username_key = 'alice.renamed' WHERE username_key = 'alice'",
    )
    .await;

    let refreshed = app.refresh(&login.access_token).await.unwrap();

    assert_eq!(claims_of(&refreshed.access_token)["name"], "alice.renamed");
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh_even_if_a_session_escaped_revocation() {
    // A session that a login racing the disable left live (the state the
    // disable's own revocation normally prevents).
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let disabled = if app.database_url.starts_with("sqlite:") {
        "1"
    } else {
        "true"
    };
    app.execute_sql(&format!("UPDATE users SET disabled = {disabled} WHERE username_key = 'alice'"))
        .await;

    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "disabled");
}

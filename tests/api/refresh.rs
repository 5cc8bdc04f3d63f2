//! Refresh: rotation, the grace period for retries, and reuse as theft.

use std::time::Duration;

use futures::future::join_all;
use token_authority::proto::{self, VerifyReason};
use tonic::Code;

use crate::helpers::{TestConfig, assert_status, claims_of, reason, refresh_on, seconds, spawn_app};

#[tokio::test]
async fn refresh_rotates_to_a_new_token_with_a_fresh_lifetime() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    app.clock.advance(Duration::from_millis(1100)); // a later second: a later expiry

    let refreshed = app.refresh(&login.access_token).await.unwrap();

    assert_ne!(refreshed.access_token, login.access_token);
    let (old, new) = (claims_of(&login.access_token), claims_of(&refreshed.access_token));
    assert_ne!(old["jti"], new["jti"]);
    assert_eq!(old["sid"], new["sid"]);
    assert!(seconds(&refreshed.expires_at) > seconds(&login.expires_at));
    assert_eq!(new["exp"].as_i64().unwrap() - new["iat"].as_i64().unwrap(), 24 * 3600);
    let session = refreshed.session.unwrap();
    assert_eq!(session.session_id, login.session.unwrap().session_id);
    assert!(seconds(&session.last_refreshed_at) > seconds(&session.created_at));
    assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Ok);
}

#[tokio::test]
async fn a_retry_within_the_grace_period_gets_the_same_new_token() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;

    let first = app.refresh(&login.access_token).await.unwrap();
    let retry = app.refresh(&login.access_token).await.unwrap();

    assert_eq!(retry.access_token, first.access_token, "no second rotation");
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok, "still in grace");
    assert_eq!(reason(&app.verify(&first.access_token).await), VerifyReason::Ok);
}

#[tokio::test]
async fn a_retired_token_after_the_grace_period_is_rotated_for_verify() {
    let mut app = TestConfig::default().rotation_grace(1).spawn().await;
    let login = app.user_with_session("alice").await;
    let refreshed = app.refresh(&login.access_token).await.unwrap();

    app.clock.advance(Duration::from_millis(1500));

    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Rotated);
    assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Ok);
}

#[tokio::test]
async fn reuse_after_the_grace_period_revokes_the_whole_session() {
    let mut app = TestConfig::default().rotation_grace(1).spawn().await;
    let login = app.user_with_session("alice").await;
    let refreshed = app.refresh(&login.access_token).await.unwrap();
    app.clock.advance(Duration::from_millis(1500));

    let reuse = app.refresh(&login.access_token).await;

    assert_status(reuse, Code::Unauthenticated, "revoked");
    assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Revoked);
    assert_status(app.refresh(&refreshed.access_token).await, Code::Unauthenticated, "revoked");
    assert!(app.list_sessions(&refreshed.access_token).await.is_err());
}

#[tokio::test]
async fn a_token_two_rotations_old_is_reuse_even_within_the_grace_period() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let second = app.refresh(&login.access_token).await.unwrap();
    let third = app.refresh(&second.access_token).await.unwrap();

    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "revoked");
    assert_eq!(reason(&app.verify(&third.access_token).await), VerifyReason::Revoked);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_leave_exactly_one_successor() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;

    let attempts = (0..16).map(|_| refresh_on(app.client.clone(), login.access_token.clone()));
    let results = join_all(attempts).await;

    let tokens: std::collections::HashSet<String> =
        results.into_iter().map(|result| result.expect("every concurrent refresh succeeds")).collect();
    assert_eq!(tokens.len(), 1, "one successor, handed to every caller");
    let successor = tokens.into_iter().next().unwrap();
    assert_eq!(reason(&app.verify(&successor).await), VerifyReason::Ok);
    // The session moved on exactly once: the successor's own refresh works.
    app.refresh(&successor).await.unwrap();
}

#[tokio::test]
async fn refresh_replaces_the_client_context_when_given() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;

    let refreshed = app
        .client
        .refresh(proto::RefreshRequest {
            access_token: login.access_token.clone(),
            client: Some(proto::ClientContext {
                ip_address: "198.51.100.1".into(),
                user_agent: "app/2".into(),
                device_id: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();

    let session = refreshed.session.unwrap();
    assert_eq!(session.ip_address, "198.51.100.1");
    assert_eq!(session.user_agent, "app/2");
}

#[tokio::test]
async fn expired_revoked_and_garbage_tokens_cannot_refresh() {
    let (mut app, login) = crate::helpers::expired_session().await;
    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "expired");

    let second = app.login("alice", crate::helpers::PASSWORD).await.unwrap();
    app.logout(&second.access_token).await.unwrap();
    assert_status(app.refresh(&second.access_token).await, Code::Unauthenticated, "revoked");

    assert_status(app.refresh("garbage").await, Code::Unauthenticated, "access_token");
    assert_status(app.refresh("").await, Code::InvalidArgument, "access_token");
    assert_status(app.refresh(&"a".repeat(8 * 1024 + 1)).await, Code::InvalidArgument, "access_token");
}

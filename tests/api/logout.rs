//! Logout, logout of all sessions, and listing sessions.

use token_authority::proto::{self, VerifyReason};
use tonic::Code;

use crate::helpers::{PASSWORD, TestConfig, assert_status, reason, spawn_app};

#[tokio::test]
async fn logout_revokes_the_session_and_twice_is_fine() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let session_id = login.session.unwrap().session_id;

    let first = app.logout(&login.access_token).await.unwrap();
    let second = app.logout(&login.access_token).await.unwrap();

    assert_eq!(first.session_id, session_id);
    assert_eq!(second.session_id, session_id);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Revoked);
    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "revoked");
}

#[tokio::test]
async fn logout_takes_an_expired_token() {
    let (mut app, login) = crate::helpers::expired_session().await;

    app.logout(&login.access_token).await.unwrap();
}

#[tokio::test]
async fn logout_takes_a_rotated_token() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let login = app.user_with_session("alice").await;
    let refreshed = app.refresh(&login.access_token).await.unwrap();

    app.logout(&login.access_token).await.unwrap();

    assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Revoked);
}

#[tokio::test]
async fn list_sessions_shows_at_most_the_newest_thousand() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let user_id = token_authority::domain::UserId::parse("user_id", &login.user_id).unwrap();
    let lifetimes = token_authority::domain::TokenLifetimes {
        standard: std::time::Duration::from_secs(3600),
        remember_me: std::time::Duration::from_secs(3600),
        refresh_window: std::time::Duration::ZERO,
        rotation_grace: std::time::Duration::ZERO,
    };
    let earlier = token_authority::clock::Clock::now(&app.clock).minus(std::time::Duration::from_secs(60));
    let older: Vec<_> = (0..1200)
        .map(|_| token_authority::domain::Session::open(user_id, false, Default::default(), &lifetimes, earlier))
        .collect();
    app.repository().await.insert_sessions(&older).await.unwrap();

    let sessions = app.list_sessions(&login.access_token).await.unwrap();

    assert_eq!(sessions.len(), 1000);
    assert!(sessions[0].current, "the newest, the caller's, comes first");
}

#[tokio::test]
async fn logout_refuses_tokens_it_did_not_sign() {
    let mut app = spawn_app().await;
    assert_status(app.logout("forged.token.here").await, Code::Unauthenticated, "access_token");
    assert_status(app.logout("").await, Code::InvalidArgument, "access_token");
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user() {
    let mut app = spawn_app().await;
    let first = app.user_with_session("alice").await;
    let second = app.login("alice", PASSWORD).await.unwrap();
    let third = app.login("alice", PASSWORD).await.unwrap();
    let bystander = app.user_with_session("bob").await;

    let response = app
        .client
        .logout_all(proto::LogoutAllRequest {
            access_token: second.access_token.clone(),
            keep_current: false,
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.revoked_count, 3);
    for token in [&first.access_token, &second.access_token, &third.access_token] {
        assert_eq!(reason(&app.verify(token).await), VerifyReason::Revoked);
    }
    assert_eq!(reason(&app.verify(&bystander.access_token).await), VerifyReason::Ok);
}

#[tokio::test]
async fn logout_all_can_keep_the_current_session() {
    let mut app = spawn_app().await;
    let first = app.user_with_session("alice").await;
    let second = app.login("alice", PASSWORD).await.unwrap();

    let response = app
        .client
        .logout_all(proto::LogoutAllRequest {
            access_token: second.access_token.clone(),
            keep_current: true,
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.revoked_count, 1);
    assert_eq!(reason(&app.verify(&first.access_token).await), VerifyReason::Revoked);
    assert_eq!(reason(&app.verify(&second.access_token).await), VerifyReason::Ok);
    let sessions = app.list_sessions(&second.access_token).await.unwrap();
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn logout_all_needs_a_live_token() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    app.logout(&login.access_token).await.unwrap();

    let result = app
        .client
        .logout_all(proto::LogoutAllRequest {
            access_token: login.access_token,
            keep_current: false,
        })
        .await;

    assert_status(result, Code::Unauthenticated, "revoked");
}

#[tokio::test]
async fn list_sessions_shows_live_sessions_newest_first() {
    let mut app = spawn_app().await;
    let first = app.user_with_session("alice").await;
    let second = app.login("alice", PASSWORD).await.unwrap();
    let third = app.login("alice", PASSWORD).await.unwrap();
    app.logout(&second.access_token).await.unwrap();
    app.user_with_session("bob").await;

    let sessions = app.list_sessions(&first.access_token).await.unwrap();

    let ids: Vec<_> = sessions.iter().map(|session| session.session_id.clone()).collect();
    assert_eq!(ids, [third.session.unwrap().session_id, first.session.unwrap().session_id]);
    assert!(!sessions[0].current);
    assert!(sessions[1].current, "the caller's session is marked");
    assert!(sessions.iter().all(|session| session.user_id == first.user_id));
}

#[tokio::test]
async fn a_write_that_fails_half_way_changes_nothing_and_leaks_no_sql() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    // Break the outbox behind the server's back: the revocation's second
    // statement (its event) will fail after the first (the session) ran.
    use sea_orm::ConnectionTrait;
    let database = sea_orm::Database::connect(&app.database_url).await.unwrap();
    database.execute_unprepared("DROP TABLE revocation_events").await.unwrap();
    database.close().await.unwrap();

    let failed = app.logout(&login.access_token).await;

    let status = assert_status(failed, Code::Internal, "internal error");
    assert!(!status.message().to_lowercase().contains("table"), "{status:?}");
    assert_eq!(
        reason(&app.verify(&login.access_token).await),
        VerifyReason::Ok,
        "the session was not revoked without its event"
    );
    assert_eq!(app.list_sessions(&login.access_token).await.unwrap().len(), 1);
}

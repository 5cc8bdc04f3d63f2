//! ChangePassword: all other sessions end, the caller's token rotates.

use std::time::Duration;

use token_authority::proto::{self, VerifyReason};
use tonic::Code;

use crate::helpers::{PASSWORD, TestApp, TestConfig, assert_status, reason, spawn_app};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn change_password(
    app: &mut TestApp,
    token: &str,
    current: &str,
    new: &str,
) -> Result<proto::ChangePasswordResponse, tonic::Status> {
    app.client
        .change_password(proto::ChangePasswordRequest {
            access_token: token.into(),
            current_password: current.into(),
            new_password: new.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn changing_the_password_revokes_other_sessions_and_rotates_the_callers() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let caller = app.user_with_session("alice").await;
    let other = app.login("alice", PASSWORD).await.unwrap();
    let bystander = app.user_with_session("bob").await;

    let changed = change_password(&mut app, &caller.access_token, PASSWORD, NEW_PASSWORD).await.unwrap();
    app.clock.advance(Duration::from_millis(20));

    assert_eq!(changed.revoked_count, 1);
    assert_eq!(reason(&app.verify(&other.access_token).await), VerifyReason::Revoked);
    assert_eq!(reason(&app.verify(&caller.access_token).await), VerifyReason::Rotated);
    assert_eq!(reason(&app.verify(&changed.access_token).await), VerifyReason::Ok);
    assert_eq!(reason(&app.verify(&bystander.access_token).await), VerifyReason::Ok);
    assert_status(app.login("alice", PASSWORD).await, Code::Unauthenticated, "invalid username or password");
    app.login("alice", NEW_PASSWORD).await.unwrap();
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let mut app = spawn_app().await;
    let caller = app.user_with_session("alice").await;
    let other = app.login("alice", PASSWORD).await.unwrap();

    let result = change_password(&mut app, &caller.access_token, "not it", NEW_PASSWORD).await;

    assert_status(result, Code::PermissionDenied, "current_password");
    assert_eq!(reason(&app.verify(&other.access_token).await), VerifyReason::Ok);
    assert_eq!(reason(&app.verify(&caller.access_token).await), VerifyReason::Ok);
    app.login("alice", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn password_change_input_is_checked_by_field() {
    let mut app = spawn_app().await;
    let caller = app.user_with_session("alice").await;
    let cases = [
        ("", PASSWORD, NEW_PASSWORD, "access_token"),
        (caller.access_token.as_str(), "", NEW_PASSWORD, "current_password"),
        (caller.access_token.as_str(), PASSWORD, "short", "new_password"),
        (caller.access_token.as_str(), PASSWORD, "", "new_password"),
    ];
    for (token, current, new, field) in cases {
        let result = change_password(&mut app, token, current, new).await;
        assert_status(result, Code::InvalidArgument, field);
    }
    let huge = "x".repeat(1025);
    assert_status(
        change_password(&mut app, &caller.access_token, PASSWORD, &huge).await,
        Code::InvalidArgument,
        "new_password",
    );
}

//! The admin service: key checks, users, and operator revocations.

use token_authority::proto::{self, VerifyReason};
use tonic::Code;

use crate::helpers::{ADMIN_KEY, PASSWORD, TestConfig, admin_request, assert_status, reason, spawn_app, with_key};

fn create(username: &str) -> proto::CreateUserRequest {
    proto::CreateUserRequest {
        username: username.into(),
        password: PASSWORD.into(),
        roles: vec![],
    }
}

#[tokio::test]
async fn admin_calls_need_a_configured_key() {
    let mut app = spawn_app().await;

    let missing = app.admin.create_user(tonic::Request::new(create("alice"))).await;
    assert_status(missing, Code::Unauthenticated, "authorization");

    let wrong = app.admin.create_user(with_key(create("alice"), "wrong-admin-key-0123456789")).await;
    assert_status(wrong, Code::Unauthenticated, "authorization");

    let not_bearer = {
        let mut request = tonic::Request::new(create("alice"));
        request.metadata_mut().insert("authorization", ADMIN_KEY.parse().unwrap());
        app.admin.create_user(request).await
    };
    assert_status(not_bearer, Code::Unauthenticated, "Bearer");

    app.admin.create_user(admin_request(create("alice"))).await.unwrap();
}

#[tokio::test]
async fn with_no_admin_key_configured_every_admin_call_is_denied() {
    let mut app = TestConfig::default().configure(|config| config.api_keys.admin.clear()).spawn().await;

    let result = app.admin.create_user(admin_request(create("alice"))).await;

    assert_status(result, Code::PermissionDenied, "ADMIN_API_KEYS");
    let list = app
        .admin
        .list_user_sessions(admin_request(proto::ListUserSessionsRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
        }))
        .await;
    assert_status(list, Code::PermissionDenied, "ADMIN_API_KEYS");
}

#[tokio::test]
async fn usernames_are_unique_regardless_of_case() {
    let mut app = spawn_app().await;
    app.create_user("Alice", PASSWORD, &[]).await;

    let taken = app.admin.create_user(admin_request(create("aLICE"))).await;

    assert_status(taken, Code::AlreadyExists, "username");
}

#[tokio::test]
async fn create_user_checks_its_input() {
    let mut app = spawn_app().await;
    let cases = [
        (create(""), "username"),
        (create(&"u".repeat(257)), "username"),
        (
            proto::CreateUserRequest {
                password: "short".into(),
                ..create("alice")
            },
            "password",
        ),
        (
            proto::CreateUserRequest {
                password: "p".repeat(1025),
                ..create("alice")
            },
            "password",
        ),
        (
            proto::CreateUserRequest {
                roles: vec!["bad role".into()],
                ..create("alice")
            },
            "roles",
        ),
    ];
    for (request, field) in cases {
        let result = app.admin.create_user(admin_request(request)).await;
        assert_status(result, Code::InvalidArgument, field);
    }
}

#[tokio::test]
async fn disabling_a_user_revokes_their_sessions_until_enabled_again() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    app.login("alice", PASSWORD).await.unwrap();

    let disabled = app
        .admin
        .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
            user_id: login.user_id.clone(),
            disabled: true,
        }))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(disabled.revoked_count, 2);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Revoked);
    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "revoked");
    assert!(app.login("alice", PASSWORD).await.is_err());

    app.admin
        .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
            user_id: login.user_id,
            disabled: false,
        }))
        .await
        .unwrap();
    app.login("alice", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn operators_revoke_and_list_sessions() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let second = app.login("alice", PASSWORD).await.unwrap();
    let session_id = login.session.clone().unwrap().session_id;

    let listed = app
        .admin
        .list_user_sessions(admin_request(proto::ListUserSessionsRequest {
            user_id: login.user_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|session| !session.current), "no caller session in admin listings");

    let revoke = |id: &str| admin_request(proto::RevokeSessionRequest { session_id: id.into() });
    assert!(app.admin.revoke_session(revoke(&session_id)).await.unwrap().into_inner().revoked);
    assert!(!app.admin.revoke_session(revoke(&session_id)).await.unwrap().into_inner().revoked);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Revoked);
    assert_eq!(reason(&app.verify(&second.access_token).await), VerifyReason::Ok);

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_status(app.admin.revoke_session(revoke(&unknown)).await, Code::NotFound, "session_id");
    assert_status(app.admin.revoke_session(revoke("nope")).await, Code::InvalidArgument, "session_id");
    let unknown_user = app
        .admin
        .list_user_sessions(admin_request(proto::ListUserSessionsRequest {
            user_id: unknown.clone(),
        }))
        .await;
    assert_status(unknown_user, Code::NotFound, "user_id");
    let unknown_disable = app
        .admin
        .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
            user_id: unknown,
            disabled: true,
        }))
        .await;
    assert_status(unknown_disable, Code::NotFound, "user_id");
}

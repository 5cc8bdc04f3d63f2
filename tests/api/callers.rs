//! Who may call: every TokenAuthority call needs a service credential,
//! admin calls an admin one; health (and reflection, unless turned off)
//! stays open.

use token_authority::proto;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    helpers::{ADMIN_KEY, PASSWORD, SERVICE_KEY, TestConfig, assert_status, spawn_app, with_key},
    tools,
};

#[tokio::test]
async fn every_token_authority_call_needs_a_service_credential() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let token = login.access_token.clone();
    let mut anonymous = app.unauthenticated_client();

    let calls = [
        anonymous
            .login(proto::LoginRequest {
                username: "alice".into(),
                password: PASSWORD.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        anonymous
            .verify(proto::VerifyRequest {
                access_token: token.clone(),
                client: None,
            })
            .await
            .map(drop),
        anonymous
            .refresh(proto::RefreshRequest {
                access_token: token.clone(),
                client: None,
            })
            .await
            .map(drop),
        anonymous
            .logout(proto::LogoutRequest {
                access_token: token.clone(),
            })
            .await
            .map(drop),
        anonymous
            .logout_all(proto::LogoutAllRequest {
                access_token: token.clone(),
                keep_current: false,
            })
            .await
            .map(drop),
        anonymous
            .change_password(proto::ChangePasswordRequest {
                access_token: token.clone(),
                current_password: PASSWORD.into(),
                new_password: "an entirely new passphrase".into(),
            })
            .await
            .map(drop),
        anonymous
            .list_sessions(proto::ListSessionsRequest {
                access_token: token.clone(),
            })
            .await
            .map(drop),
        anonymous
            .watch_revocations(proto::WatchRevocationsRequest {
                after_cursor: 0,
                include_snapshot: false,
                session_snapshot: false,
            })
            .await
            .map(drop),
    ];

    for refused in calls {
        assert_status(refused, Code::Unauthenticated, "authorization");
    }
    assert_eq!(crate::helpers::reason(&app.verify(&token).await), proto::VerifyReason::Ok, "nothing was done");
}

#[tokio::test]
async fn admin_keys_may_make_service_calls_but_service_keys_not_admin_calls() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = proto::LoginRequest {
        username: "alice".into(),
        password: PASSWORD.into(),
        ..Default::default()
    };

    let as_admin = app.client.login(with_key(login, ADMIN_KEY)).await;
    let create = proto::CreateUserRequest {
        username: "bob".into(),
        password: PASSWORD.into(),
        roles: vec![],
    };
    let as_service = app.admin.create_user(with_key(create, SERVICE_KEY)).await;

    assert!(as_admin.is_ok(), "{as_admin:?}");
    assert_status(as_service, Code::PermissionDenied, "ADMIN_API_KEYS");
}

#[tokio::test]
async fn health_needs_no_credential_and_refuses_a_wrong_one() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());

    let open = health.check(HealthCheckRequest::default()).await;
    let wrong = health.check(with_key(HealthCheckRequest::default(), "a-wrong-key-0123456789")).await;

    assert!(open.is_ok(), "{open:?}");
    assert_status(wrong, Code::Unauthenticated, "unknown key");
}

#[tokio::test]
async fn invented_methods_are_refused_before_they_are_found_missing() {
    let app = spawn_app().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    let path = http::uri::PathAndQuery::from_static("/invented.v1.Service/Method");
    let call = |request: tonic::Request<()>| {
        let mut grpc = grpc.clone();
        let path = path.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary::<(), (), _>(request, path, tonic_prost::ProstCodec::default()).await
        }
    };

    let anonymous = call(tonic::Request::new(())).await;
    let known = call(with_key((), SERVICE_KEY)).await;

    assert_status(anonymous, Code::Unauthenticated, "authorization");
    assert_eq!(known.unwrap_err().code(), Code::Unimplemented);
    grpc.ready().await.unwrap();
}

#[tokio::test]
async fn reflection_can_be_turned_off() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let app = TestConfig::default().configure(|config| config.callers.reflection = false).spawn().await;
    let address = app.address.to_string();

    let (listed, _, errors) = tools::run(&grpcurl, &["-plaintext", &address, "list"]).await;

    assert!(!listed, "no reflection: {errors}");
    assert!(errors.contains("does not support the reflection API"), "{errors}");
}

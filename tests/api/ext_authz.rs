//! Envoy's external authorization (`envoy.service.auth.v3.Authorization/Check`)
//! as Envoy calls it: through the envoy-types client stubs with the service
//! key as Envoy's `initial_metadata` sends it, and through grpcurl by
//! reflection alone.

use std::{collections::HashMap, time::Duration};

use envoy_types::{
    ext_authz::v3::pb::{CheckRequest, CheckResponse, HeaderAppendAction, HttpResponse, OkHttpResponse},
    pb::envoy::{
        config::core::v3::{HeaderMap, HeaderValue},
        service::auth::v3::{AttributeContext, attribute_context, authorization_client::AuthorizationClient},
    },
};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::{
    helpers::{PASSWORD, SERVICE_KEY, ServiceKey, TestApp, TestConfig, spawn_app},
    tools,
};

/// Envoy's client, sending the service key as its `initial_metadata` would.
const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

fn envoy(app: &TestApp) -> AuthorizationClient<InterceptedService<Channel, ServiceKey>> {
    AuthorizationClient::with_interceptor(app.channel.clone(), ServiceKey)
}

/// What Envoy sends for a client request with these headers.
fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/orders".into(),
                    headers: headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn check(app: &TestApp, headers: &[(&str, &str)]) -> CheckResponse {
    envoy(app).check(check_request(headers)).await.expect("Check answers").into_inner()
}

fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().map(|status| status.code), Some(0), "{response:?}");
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("an OK response, got {other:?}"),
    }
}

/// The HTTP status and `WWW-Authenticate` of a denial.
fn denial(response: &CheckResponse) -> (i32, String) {
    assert_eq!(response.status.as_ref().map(|status| status.code), Some(Code::Unauthenticated as i32));
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("a denied response, got {response:?}")
    };
    let challenges: Vec<_> = denied
        .headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .filter(|header| header.key.eq_ignore_ascii_case("www-authenticate"))
        .map(|header| header.value.clone())
        .collect();
    assert_eq!(challenges.len(), 1, "{denied:?}");
    (denied.status.as_ref().map(|status| status.code).unwrap_or_default(), challenges[0].clone())
}

/// The request headers the upstream receives, applying the OK response as
/// Envoy does (source/extensions/filters/http/ext_authz/ext_authz.cc,
/// `onComplete`): headers with an overwrite action replace every copy,
/// appended ones are added, and only then is `headers_to_remove` applied.
fn upstream_headers(client: &[(&str, &str)], ok: &OkHttpResponse) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> =
        client.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    for option in &ok.headers {
        let header = option.header.as_ref().expect("a header");
        if option.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32 {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&header.key));
        }
        headers.push((header.key.clone(), header.value.clone()));
    }
    headers.retain(|(name, _)| !ok.headers_to_remove.iter().any(|removed| removed.eq_ignore_ascii_case(name)));
    headers
}

fn values_of<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
}

#[tokio::test]
async fn a_valid_token_is_allowed_with_the_holders_identity_in_headers() {
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &["reader", "admin"]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    let session_id = login.session.as_ref().unwrap().session_id.clone();

    let response = check(&app, &[("authorization", &bearer(&login.access_token))]).await;

    let ok = allowed(&response);
    let set: HashMap<_, _> = ok
        .headers
        .iter()
        .map(|option| {
            let header = option.header.as_ref().unwrap();
            assert_eq!(option.append_action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32, "{option:?}");
            (header.key.as_str(), header.value.as_str())
        })
        .collect();
    let expected = HashMap::from([
        ("x-user-id", user_id.as_str()),
        ("x-session-id", session_id.as_str()),
        ("x-username", "alice"),
        ("x-roles", "admin,reader"),
    ]);
    assert_eq!(set, expected);
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_never_reach_the_upstream() {
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    let authorization = bearer(&login.access_token);
    let client = [
        ("authorization", authorization.as_str()),
        ("x-user-id", "the-admins-id"),
        ("x-roles", "admin"),
        ("x-request-id", "kept"),
    ];

    let response = check(&app, &client).await;

    let upstream = upstream_headers(&client, allowed(&response));
    assert_eq!(values_of(&upstream, "x-user-id"), [user_id.as_str()]);
    assert_eq!(values_of(&upstream, "x-roles"), [""], "alice has no roles: the forged ones are overwritten");
    assert_eq!(values_of(&upstream, "x-username"), ["alice"]);
    assert_eq!(values_of(&upstream, "x-request-id"), ["kept"]);
}

#[tokio::test]
async fn the_header_prefix_is_configurable() {
    let mut app = TestConfig::default()
        .configure(|config| config.ext_authz.header_prefix = "x-auth-".into())
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();

    let response = check(&app, &[("authorization", &bearer(&login.access_token))]).await;

    let names: Vec<_> = allowed(&response)
        .headers
        .iter()
        .map(|option| option.header.as_ref().unwrap().key.clone())
        .collect();
    assert_eq!(names, ["x-auth-user-id", "x-auth-session-id", "x-auth-username", "x-auth-roles"]);
}

#[tokio::test]
async fn raw_headers_are_read_too() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    // Envoy with `encode_raw_headers: true` sends `header_map` instead of `headers`.
    let mut request = check_request(&[]);
    let http = request.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
    http.header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "authorization".into(),
            raw_value: bearer(&login.access_token).into_bytes(),
            ..Default::default()
        }],
    });

    let response = envoy(&app).check(request).await.unwrap().into_inner();

    allowed(&response);
}

#[tokio::test]
async fn revoked_expired_malformed_and_missing_tokens_are_denied_with_401() {
    let mut app = TestConfig::short_lived().spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let revoked = app.login("alice", PASSWORD).await.unwrap().access_token;
    app.logout(&revoked).await.unwrap();
    let expiring = app.login("alice", PASSWORD).await.unwrap().access_token;
    app.clock.advance(Duration::from_secs(2));
    let invalid = r#"Bearer error="invalid_token""#;

    for (what, headers, challenge) in [
        ("revoked", vec![("authorization", bearer(&revoked))], invalid),
        ("expired", vec![("authorization", bearer(&expiring))], invalid),
        ("malformed", vec![("authorization", bearer("not.a.jwt"))], invalid),
        ("empty", vec![("authorization", "Bearer ".to_owned())], invalid),
        ("missing", vec![], "Bearer"),
        ("another scheme", vec![("authorization", "Basic YWxpY2U6cHc=".to_owned())], "Bearer"),
    ] {
        let headers: Vec<_> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let response = check(&app, &headers).await;
        assert_eq!(denial(&response), (401, challenge.to_owned()), "{what}");
    }
}

#[tokio::test]
async fn check_needs_a_service_credential() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    let request = || check_request(&[("authorization", &bearer(&login.access_token))]);

    let anonymous = AuthorizationClient::new(app.channel.clone()).check(request()).await;
    let with_key = envoy(&app).check(request()).await;

    assert_eq!(anonymous.unwrap_err().code(), Code::Unauthenticated);
    allowed(&with_key.unwrap().into_inner());
}

#[tokio::test]
async fn grpcurl_finds_check_by_reflection_and_calls_it() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &[]).await;
    let token = app.login("alice", PASSWORD).await.unwrap().access_token;
    let address = app.address.to_string();
    let key = format!("authorization: Bearer {SERVICE_KEY}");

    let (listed, services, errors) = tools::run(&grpcurl, &["-plaintext", &address, "list"]).await;
    let (described, description, _) =
        tools::run(&grpcurl, &["-plaintext", &address, "describe", "envoy.service.auth.v3.CheckRequest"]).await;
    let body = serde_json::json!({
        "attributes": {"request": {"http": {"headers": {"authorization": bearer(&token)}}}}
    })
    .to_string();
    let call = |body: String| {
        let (grpcurl, address, key) = (grpcurl.clone(), address.clone(), key.clone());
        async move {
            tools::run(
                &grpcurl,
                &[
                    "-plaintext",
                    "-H",
                    &key,
                    "-d",
                    &body,
                    &address,
                    "envoy.service.auth.v3.Authorization/Check",
                ],
            )
            .await
        }
    };
    let (called, answer, call_errors) = call(body).await;
    let (_, denied, _) = call(r#"{"attributes": {"request": {"http": {"headers": {}}}}}"#.to_owned()).await;

    assert!(listed, "{errors}");
    assert!(services.lines().any(|line| line == "envoy.service.auth.v3.Authorization"), "{services}");
    assert!(described && description.contains("attributes"), "{description}");
    assert!(called, "{call_errors}");
    assert!(answer.contains("okResponse") && answer.contains(&user_id), "{answer}");
    assert!(answer.contains("OVERWRITE_IF_EXISTS_OR_ADD"), "{answer}");
    assert!(denied.contains("deniedResponse") && denied.contains("Unauthorized"), "{denied}");
}

#[tokio::test]
async fn a_database_failure_is_an_error_for_envoys_failure_policy_not_a_denial() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let token = app.login("alice", PASSWORD).await.unwrap().access_token;
    // A fresh process knows no session: Check must read the database.
    let app = app.restart().await;
    app.execute_sql("ALTER TABLE sessions RENAME TO sessions_gone").await;

    let failed = envoy(&app).check(check_request(&[("authorization", &bearer(&token))])).await;

    let status = failed.expect_err("an error status, never an OK or a denial");
    assert!(matches!(status.code(), Code::Internal | Code::Unavailable), "{status:?}");
}

/// Bytes that are no `CheckRequest` (cut short, or a field of the wrong
/// wire type on the path to the headers) are refused with a status that
/// says the message did not decode, and the server serves on.
#[tokio::test]
async fn a_check_request_that_does_not_decode_is_refused_and_the_server_serves_on() {
    use prost::Message;

    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let whole = check_request(&[("authorization", &bearer(&login.access_token))]).encode_to_vec();
    // attributes (1) -> request (4) -> http (2) -> headers (3) written as a varint.
    let wrong_wire_type = [0x0a, 0x06, 0x22, 0x04, 0x12, 0x02, 0x18, 0x01];

    for body in [&whole[..whole.len() - 1], &wrong_wire_type[..]] {
        let mut client = crate::helpers::raw_http2(&app).await;
        let (response, mut stream) = client.send_request(crate::helpers::grpc_request(CHECK), false).unwrap();
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(body);
        stream.send_data(frame.into(), true).unwrap();

        let (code, message) = crate::helpers::status_of(response).await;

        assert_eq!(code, Code::Internal, "{message}");
        assert!(message.contains("failed to decode Protobuf message"), "{message}");
    }
    let response = check(&app, &[("authorization", &bearer(&login.access_token))]).await;
    assert!(!allowed(&response).headers.is_empty(), "the server serves on");
}

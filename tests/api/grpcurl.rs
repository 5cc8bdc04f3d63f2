//! The service as an engineer meets it with grpcurl (reflection only, no
//! proto file): services listed, methods described, and rich error details
//! decoded.

use std::num::NonZeroU32;

use crate::{
    helpers::{PASSWORD, SERVICE_KEY, TestConfig},
    tools,
};

#[tokio::test]
async fn grpcurl_lists_and_describes_every_service() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let app = TestConfig::default().spawn().await;
    let address = app.address.to_string();

    let (listed, services, errors) = tools::run(&grpcurl, &["-plaintext", &address, "list"]).await;
    assert!(listed, "{errors}");
    for service in [
        "grpc.health.v1.Health",
        "tokenauthority.v1.TokenAuthority",
        "tokenauthority.v1.TokenAuthorityAdmin",
    ] {
        assert!(services.lines().any(|line| line == service), "{service} in {services}");
    }
    let (described, description, errors) = tools::run(
        &grpcurl,
        &[
            "-plaintext",
            &address,
            "describe",
            "tokenauthority.v1.TokenAuthority.Refresh",
        ],
    )
    .await;
    assert!(described, "{errors}");
    assert!(description.contains("rotation grace period"), "{description}");
}

#[tokio::test]
async fn grpcurl_decodes_the_retry_info_of_a_throttled_login() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let mut app = TestConfig::default()
        .configure(|config| config.security.throttle.per_user = NonZeroU32::new(1))
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let address = app.address.to_string();
    let bearer = format!("authorization: Bearer {SERVICE_KEY}");
    let login = [
        "-plaintext",
        "-H",
        &bearer,
        "-d",
        r#"{"username": "alice", "password": "a guess"}"#,
        &address,
        "tokenauthority.v1.TokenAuthority/Login",
    ];
    let (_, _, first) = tools::run(&grpcurl, &login).await;
    assert!(first.contains("Unauthenticated"), "{first}");

    let (succeeded, _, throttled) = tools::run(&grpcurl, &login).await;

    assert!(!succeeded);
    assert!(throttled.contains("ResourceExhausted"), "{throttled}");
    assert!(throttled.contains(r#""@type":"type.googleapis.com/google.rpc.RetryInfo""#), "{throttled}");
    assert!(throttled.contains("retryDelay"), "{throttled}");
    assert!(!throttled.contains("not recognized"), "{throttled}");
}

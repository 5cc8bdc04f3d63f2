//! Health checking and server reflection, as orchestrators and grpcurl use them.

use std::collections::BTreeSet;

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_is_serving_for_the_server_and_the_service() {
    let app = spawn_app().await;
    let channel = Channel::from_shared(app.channel_uri()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);

    for service in [
        "",
        "tokenauthority.v1.TokenAuthority",
        "tokenauthority.v1.TokenAuthorityAdmin",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    let mut app = spawn_app().await;
    let channel = Channel::from_shared(app.channel_uri()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving);

    let stopping = tokio::spawn(async move { app.stop().await });

    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping.await.unwrap();
}

#[tokio::test]
async fn reflection_lists_every_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = spawn_app().await;
    let channel = Channel::from_shared(app.channel_uri()).unwrap().connect().await.unwrap();
    let expected: BTreeSet<String> = [
        "grpc.health.v1.Health",
        "tokenauthority.v1.TokenAuthority",
        "tokenauthority.v1.TokenAuthorityAdmin",
    ]
    .map(String::from)
    .into();

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("v1 reflection answers with a service list");
    };
    let names: BTreeSet<String> = listed.service.into_iter().map(|service| service.name).collect();
    assert!(names.is_superset(&expected), "{names:?}");

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "tokenauthority.v1.TokenAuthority".into(),
        )),
    };
    let mut responses = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap().message_response;
    assert!(
        matches!(response, Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))),
        "v1alpha describes our service: {response:?}"
    );
}

//! The Prometheus endpoint: what an operator scrapes.

use std::collections::HashMap;

use crate::helpers::{PASSWORD, SERVICE_KEY, TestApp, TestConfig, spawn_app, with_key};
use futures::StreamExt;
use token_authority::{
    metrics::{METHOD_LABELS, UNKNOWN_METHOD},
    proto,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Status, transport::Channel};

/// Scrapes `/metrics` and returns every sample line as name{labels} -> value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    samples(&scrape_body(app).await)
}

fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap_or(f64::NAN)))
        .collect()
}

async fn scrape_body(app: &TestApp) -> String {
    let address = app.metrics_address.expect("metrics are enabled");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    connection
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    connection.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, sample: &str) -> f64 {
    after.get(sample).copied().unwrap_or(0.0) - before.get(sample).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_gauges_and_latencies_are_scraped() {
    let mut app = TestConfig::default()
        .configure(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap()))
        .rotation_grace(0)
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let before = scrape(&app).await;

    let login = app.login("alice", PASSWORD).await.unwrap();
    let _ = app.login("alice", "wrong password").await;
    let _ = app.login("nobody", PASSWORD).await;
    app.verify(&login.access_token).await;
    app.verify("not.a.token").await;
    app.refresh(&login.access_token).await.unwrap();
    app.clock.advance(std::time::Duration::from_millis(20));
    let _ = app.refresh(&login.access_token).await; // reuse: revokes the session
    let other = app.login("alice", PASSWORD).await.unwrap();
    app.logout(&other.access_token).await.unwrap();
    let _stream = app.watch(0, false).await.unwrap();
    let after = scrape(&app).await;

    let expected = [
        (r#"token_authority_logins_total{outcome="ok"}"#, 2.0),
        (r#"token_authority_logins_total{outcome="wrong_password"}"#, 1.0),
        (r#"token_authority_logins_total{outcome="unknown_user"}"#, 1.0),
        (r#"token_authority_verifications_total{reason="ok"}"#, 1.0),
        (r#"token_authority_verifications_total{reason="malformed"}"#, 1.0),
        (r#"token_authority_refreshes_total{outcome="rotated"}"#, 1.0),
        (r#"token_authority_refreshes_total{outcome="reuse_detected"}"#, 1.0),
        ("token_authority_reuse_detections_total", 1.0),
        (r#"token_authority_security_events_total{kind="reuse_detected"}"#, 1.0),
        (r#"token_authority_revocations_total{reason="rotated"}"#, 1.0),
        (r#"token_authority_revocations_total{reason="reuse_detected"}"#, 1.0),
        (r#"token_authority_revocations_total{reason="logout"}"#, 1.0),
        (r#"token_authority_rpc_duration_seconds_count{method="TokenAuthority/Verify"}"#, 2.0),
        (r#"token_authority_rpc_duration_seconds_count{method="TokenAuthority/Login"}"#, 4.0),
    ];
    for (sample, increase) in expected {
        assert_eq!(delta(&before, &after, sample), increase, "{sample}");
    }
    assert!(after["token_authority_stream_subscribers"] >= 1.0);
    assert!(after.contains_key("token_authority_live_sessions"));
    assert!(after.contains_key("token_authority_session_cache_entries"));
    assert!(
        after.keys().any(|sample| sample
            .starts_with(r#"token_authority_rpc_duration_seconds_bucket{method="TokenAuthority/Refresh",le="0.001"}"#)),
        "latency histograms have buckets"
    );
}

/// Calls `path` with an empty message, as a known service; nothing serves it.
async fn call_invented(channel: Channel, path: String) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    let answer: Result<tonic::Response<()>, Status> =
        grpc.unary(with_key((), SERVICE_KEY), path, tonic_prost::ProstCodec::default()).await;
    assert_eq!(answer.unwrap_err().code(), Code::Unimplemented);
}

/// The figures are process-wide, so the checks hold whatever other tests
/// in the same process record meanwhile.
#[tokio::test]
async fn invented_method_paths_add_no_series() {
    let app = TestConfig::default()
        .configure(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap()))
        .spawn()
        .await;
    let channel = Channel::from_shared(app.channel_uri()).unwrap().connect().await.unwrap();
    let before = scrape(&app).await;

    futures::stream::iter(0..10_000)
        .for_each_concurrent(32, |i| call_invented(channel.clone(), format!("/evil.Service/M{i}")))
        .await;
    let body = scrape_body(&app).await;

    let unknown = r#"token_authority_rpc_duration_seconds_count{method="unknown"}"#;
    assert_eq!(delta(&before, &samples(&body), unknown), 10_000.0);
    assert!(!body.contains("evil"), "no label repeats a path");
    let labels: std::collections::BTreeSet<&str> = body
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"'))
        .map(|(label, _)| label)
        .collect();
    for label in labels {
        assert!(label == UNKNOWN_METHOD || METHOD_LABELS.contains(&label), "{label}");
    }
    // Every served method and `unknown` timed, with their buckets, come to
    // about 30 KiB; a series per invented path would be megabytes.
    assert!(body.len() < 64 * 1024, "{} bytes", body.len());
}

#[tokio::test]
async fn without_metrics_addr_nothing_listens() {
    let app = spawn_app().await;
    assert!(app.metrics_address.is_none());
}

#[tokio::test]
async fn refused_callers_are_counted_by_reason() {
    let mut app = TestConfig::default()
        .configure(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap()))
        .spawn()
        .await;
    let before = scrape(&app).await;

    for _ in 0..30 {
        let request = with_key(
            proto::VerifyRequest {
                access_token: "x".into(),
                client: None,
            },
            "a-wrong-key-0123456789",
        );
        assert!(app.client.verify(request).await.is_err());
    }
    let _ = app
        .unauthenticated_client()
        .verify(proto::VerifyRequest {
            access_token: "x".into(),
            client: None,
        })
        .await;
    let after = scrape(&app).await;

    assert_eq!(delta(&before, &after, r#"token_authority_caller_refusals_total{reason="unknown_key"}"#), 30.0);
    assert_eq!(delta(&before, &after, r#"token_authority_caller_refusals_total{reason="missing"}"#), 1.0);
}

//! What one connection, one call and one caller may hold: each limit shown
//! against the attack it stops.

use std::{
    num::{NonZeroU32, NonZeroUsize},
    time::Duration,
};

use bytes::Bytes;
use token_authority::{authority::Pauses, proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{
    Gate, PASSWORD, SERVICE_KEY, TestApp, TestConfig, assert_status, grpc_request, login_on, raw_http2, status_of,
};

const VERIFY: &str = "/tokenauthority.v1.TokenAuthority/Verify";

/// The HTTP/2 frames a client that ignores the server's stream limit
/// sends: the preface, empty SETTINGS, then `count` HEADERS frames (a
/// Verify each, body never sent), on one connection. Returns how many
/// streams the server refused with RST_STREAM(REFUSED_STREAM).
async fn flood_with_open_streams(app: &TestApp, count: u32) -> usize {
    let mut tcp = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // HPACK literals without indexing or Huffman: 0x00, name, value.
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", VERIFY),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("authorization", &format!("Bearer {SERVICE_KEY}")),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    for index in 0..count {
        let stream = 2 * index + 1;
        let length = block.len() as u32;
        out.extend_from_slice(&length.to_be_bytes()[1..]);
        out.extend_from_slice(&[0x1, 0x4]); // HEADERS, END_HEADERS (no END_STREAM)
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(&block);
    }
    tcp.write_all(&out).await.unwrap();
    let mut refused = 0;
    let mut buffer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let expected = usize::try_from(count).unwrap() - app.config().limits.max_streams_per_connection.get() as usize;
    while refused < expected && tokio::time::Instant::now() < deadline {
        let mut chunk = [0u8; 16 * 1024];
        let read = match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => read,
            _ => break,
        };
        buffer.extend_from_slice(&chunk[..read]);
        while buffer.len() >= 9 {
            let length = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
            if buffer.len() < 9 + length {
                break;
            }
            let (kind, payload) = (buffer[3], &buffer[9..9 + length]);
            // RST_STREAM with REFUSED_STREAM (7).
            if kind == 0x3 && payload == [0, 0, 0, 7] {
                refused += 1;
            }
            buffer.drain(..9 + length);
        }
    }
    refused
}

#[tokio::test]
async fn one_connection_cannot_hold_more_streams_than_the_limit() {
    let app = TestConfig::default()
        .configure(|config| config.limits.max_streams_per_connection = NonZeroU32::new(8).unwrap())
        .spawn()
        .await;

    let refused = flood_with_open_streams(&app, 200).await;

    assert_eq!(refused, 192, "every stream beyond the 8 allowed is refused");
}

#[tokio::test]
async fn a_request_that_stalls_mid_message_is_cut_off_at_the_deadline() {
    let app = TestConfig::default()
        .configure(|config| config.limits.request_timeout = Duration::from_millis(500))
        .spawn()
        .await;
    let mut client = raw_http2(&app).await;
    let (response, mut body) = client.send_request(grpc_request(VERIFY), false).unwrap();
    // A message announced as 100 bytes, of which 10 arrive.
    let mut partial = vec![0u8, 0, 0, 0, 100];
    partial.extend_from_slice(&[0x0a; 10]);
    body.send_data(Bytes::from(partial), false).unwrap();

    let (code, message) = status_of(response).await;

    assert_eq!(code, Code::DeadlineExceeded, "{message}");
    assert!(message.contains("REQUEST_TIMEOUT"), "{message}");
}

#[tokio::test]
async fn an_oversized_message_is_refused_as_soon_as_it_is_announced() {
    // A deadline far away: the refusal must not wait for the body.
    let app = TestConfig::default()
        .configure(|config| config.limits.request_timeout = Duration::from_secs(3600))
        .spawn()
        .await;
    let mut client = raw_http2(&app).await;
    let (response, mut body) = client.send_request(grpc_request(VERIFY), false).unwrap();
    // Announces 4 MiB, sends none of it.
    body.send_data(Bytes::from_static(&[0, 0, 0x40, 0, 0]), false).unwrap();

    let (code, message) = status_of(response).await;

    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(message.contains(&(16 * 1024).to_string()), "the message names the limit: {message}");
}

#[tokio::test]
async fn a_message_within_the_limit_but_beyond_the_setting_is_refused_whole() {
    let mut app = TestConfig::default().configure(|config| config.limits.max_request_bytes = 12 * 1024).spawn().await;
    let request = proto::VerifyRequest {
        access_token: "a".repeat(13 * 1024),
        client: None,
    };

    let refused = app.client.verify(request).await;

    assert_status(refused, Code::OutOfRange, &(12 * 1024).to_string());
}

#[tokio::test]
async fn beyond_the_concurrency_limit_calls_are_refused_at_once_not_queued() {
    let gate = Gate::new();
    let mut app = TestConfig::default()
        .configure(|config| config.limits.max_concurrent_calls = NonZeroUsize::new(1).unwrap())
        .pauses(Pauses {
            login_after_password_check: Some(gate.clone()),
        })
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    gate.arm();
    let held = tokio::spawn(login_on(app.client.clone(), "alice"));
    gate.reached().await;

    let refused = app
        .client
        .verify(proto::VerifyRequest {
            access_token: "x".into(),
            client: None,
        })
        .await;
    let health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    gate.release();

    assert_status(refused, Code::ResourceExhausted, "MAX_CONCURRENT_CALLS (1)");
    assert!(health.is_ok(), "health checks are never shed: {health:?}");
    assert!(held.await.unwrap().is_ok(), "the call in progress finishes");
    assert!(
        app.client
            .verify(proto::VerifyRequest {
                access_token: "x".into(),
                client: None,
            })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn revocation_streams_are_capped_per_caller_and_do_not_hold_call_slots() {
    let mut app = TestConfig::default()
        .configure(|config| {
            config.limits.max_revocation_streams_per_caller = NonZeroUsize::new(2).unwrap();
            config.limits.max_concurrent_calls = NonZeroUsize::new(1).unwrap();
        })
        .spawn()
        .await;
    let first = app.watch(0, false).await.unwrap();
    let _second = app.watch(0, false).await.unwrap();

    let third = app.watch(0, false).await;
    let verify = app
        .client
        .verify(proto::VerifyRequest {
            access_token: "x".into(),
            client: None,
        })
        .await;

    assert_status(third, Code::ResourceExhausted, "MAX_REVOCATION_STREAMS_PER_CALLER (2)");
    assert!(verify.is_ok(), "open streams hold no call slot: {verify:?}");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match app.watch(0, false).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "a closed stream frees its slot");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let app = TestConfig::default()
        .configure(|config| {
            config.limits.http2_keepalive_interval = Duration::from_millis(200);
            config.limits.http2_keepalive_timeout = Duration::from_millis(200);
        })
        .spawn()
        .await;
    let mut tcp = tokio::net::TcpStream::connect(app.address).await.unwrap();
    // The preface and empty SETTINGS; then silence: no SETTINGS ack, no PING ack.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();

    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buffer = [0u8; 4096];
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;

    assert!(closed.is_ok(), "the server closes a connection whose pings go unanswered");
}

#[tokio::test]
async fn security_event_streams_are_capped_per_admin() {
    let mut app = TestConfig::default()
        .configure(|config| config.limits.max_security_streams_per_caller = NonZeroUsize::new(2).unwrap())
        .spawn()
        .await;
    let first = app.watch_security(0).await;
    let _second = app.watch_security(0).await;

    let third = app
        .admin
        .watch_security_events(crate::helpers::admin_request(proto::WatchSecurityEventsRequest::default()))
        .await;

    assert_status(third, Code::ResourceExhausted, "MAX_SECURITY_STREAMS_PER_CALLER (2)");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let again = app
            .admin
            .watch_security_events(crate::helpers::admin_request(proto::WatchSecurityEventsRequest::default()))
            .await;
        match again {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "a closed stream frees its slot");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

/// Reads until the server closes the connection (or resets it), within a
/// generous deadline; returns what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes the connection");
    received
}

fn with_http_listener(config: &mut token_authority::config::Config) {
    config.http.address = Some("127.0.0.1:0".parse().unwrap());
}

#[tokio::test]
async fn the_http_listener_drops_connections_that_send_no_whole_request_in_time() {
    let app = TestConfig::default()
        .configure(|config| {
            with_http_listener(config);
            config.limits.request_timeout = Duration::from_millis(300);
        })
        .spawn()
        .await;
    let address = app.http_address.unwrap();
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();

    read_until_closed(&mut idle).await;
    let answer = read_until_closed(&mut slow).await;

    assert!(!answer.starts_with(b"HTTP/1.1 200"), "a request head never finished is not served");
}

#[tokio::test]
async fn the_http_listener_serves_at_most_http_max_connections_at_once() {
    let app = TestConfig::default()
        .configure(|config| {
            with_http_listener(config);
            config.limits.http_max_connections = NonZeroUsize::new(2).unwrap();
        })
        .spawn()
        .await;
    let address = app.http_address.unwrap();
    let _first = tokio::net::TcpStream::connect(address).await.unwrap();
    let second = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
    third
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    let mut buffer = [0u8; 64];
    let while_full = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buffer)).await;
    assert!(while_full.is_err(), "not served while both connections are held: {while_full:?}");
    drop(second);
    let answer = read_until_closed(&mut third).await;

    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

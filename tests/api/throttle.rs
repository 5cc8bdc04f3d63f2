//! The fair login throttle: failed attempts counted in the database per
//! username and address, per username (from networks the user does not
//! know) and per address (spraying), taken race-free before any argon2
//! work, and shared by replicas.

use std::{num::NonZeroU32, time::Duration};

use futures::future::join_all;
use token_authority::{
    authority::SecurityPolicy,
    proto::{self, AuditKind},
};
use tonic::{Code, Status, transport::Channel};

use crate::helpers::{FIREFOX, PASSWORD, ServiceKey, TestApp, TestConfig, assert_status, client, postgres_server};

/// The throttle's limits (per 15 minutes); 0 turns one off.
fn limits(per_user_and_ip: u32, per_user: u32, per_ip: u32) -> impl FnOnce(&mut SecurityPolicy) {
    move |security| {
        security.throttle.per_user_and_ip = NonZeroU32::new(per_user_and_ip);
        security.throttle.per_user = NonZeroU32::new(per_user);
        security.throttle.per_ip = NonZeroU32::new(per_ip);
    }
}

async fn login_on(
    channel: Channel,
    username: String,
    password: &'static str,
    ip: &'static str,
) -> Result<proto::LoginResponse, Status> {
    proto::token_authority_client::TokenAuthorityClient::with_interceptor(channel, ServiceKey)
        .login(proto::LoginRequest {
            username,
            password: password.into(),
            remember_me: false,
            client: Some(client(ip, FIREFOX, "")),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// How many of `results` had their password checked (a wrong one:
/// UNAUTHENTICATED, as Login answers it) and how many were throttled before
/// that.
fn tally(results: &[Result<proto::LoginResponse, Status>]) -> (usize, usize) {
    let checked = results
        .iter()
        .filter(|result| {
            matches!(result, Err(status) if status.code() == Code::Unauthenticated
                && status.message() == "invalid username or password")
        })
        .count();
    let throttled = results
        .iter()
        .filter(|result| matches!(result, Err(status) if status.code() == Code::ResourceExhausted))
        .count();
    assert_eq!(checked + throttled, results.len(), "{results:?}");
    (checked, throttled)
}

/// A server with the throttle's `limits`, whose calls wait for a pooled
/// connection as long as a flood of a thousand needs on a busy machine: the
/// race tests count attempts, they do not time the queue.
fn flood_config(per_user_and_ip: u32, per_user: u32, per_ip: u32) -> TestConfig {
    TestConfig::default()
        .security(limits(per_user_and_ip, per_user, per_ip))
        .configure(|config| config.database.acquire_timeout = Duration::from_secs(60))
}

fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.channel_uri()).unwrap().connect_lazy()
}

#[tokio::test]
async fn a_thousand_parallel_wrong_guesses_get_no_more_attempts_than_the_limit() {
    let mut app = flood_config(10, 100, 1000).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let channel = channel(&app);

    let guesses = (0..1000).map(|_| login_on(channel.clone(), "alice".into(), "a guess", "203.0.113.7"));
    let results = join_all(guesses).await;

    let (checked, throttled) = tally(&results);
    assert_eq!(checked, 10, "exactly the limit reached argon2");
    assert_eq!(throttled, 990);
    let failed = app.audit_of(&[AuditKind::LoginFailed]).await;
    assert_eq!(failed.len(), 10, "one audit record per password actually checked");
}

#[tokio::test]
async fn probe_an_attacker_at_one_address_cannot_lock_the_user_out_from_another() {
    let mut app = TestConfig::default().security(limits(3, 10, 100)).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let channel = channel(&app);

    let attack = join_all((0..50).map(|_| login_on(channel.clone(), "alice".into(), "a guess", "198.51.100.66"))).await;

    assert_eq!(tally(&attack), (3, 47));
    // Alice, from a network she has never used, is not locked out.
    app.login_from("alice", PASSWORD, client("203.0.113.7", FIREFOX, "laptop"))
        .await
        .expect("alice logs in");
    let refused = app.login_from("alice", "a guess", client("198.51.100.66", FIREFOX, "")).await;
    assert_status(refused, Code::ResourceExhausted, "retry in");
}

#[tokio::test]
async fn a_distributed_attack_cannot_lock_the_user_out_of_a_network_they_know() {
    let mut app = TestConfig::default().security(limits(3, 10, 100)).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    app.login_from("alice", PASSWORD, client("203.0.113.7", FIREFOX, "laptop")).await.unwrap();
    let channel = channel(&app);
    let addresses = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
    ];

    let attack = join_all(
        addresses
            .iter()
            .flat_map(|address| (0..5).map(|_| login_on(channel.clone(), "alice".into(), "a guess", address))),
    )
    .await;

    let (checked, _) = tally(&attack);
    assert_eq!(checked, 10, "the per-username cap bounds a distributed attack");
    // Her known network is spared the username's cap; a new one is not.
    app.login_from("alice", PASSWORD, client("203.0.113.99", FIREFOX, "laptop"))
        .await
        .expect("her network");
    let new_network = app.login_from("alice", PASSWORD, client("192.0.2.1", FIREFOX, "laptop")).await;
    assert_status(new_network, Code::ResourceExhausted, "retry in");
    let events = app.audit_of(&[AuditKind::FailedLoginsForUser]).await;
    assert!(!events.is_empty(), "the burst is a security event");
}

#[tokio::test]
async fn spraying_ten_thousand_usernames_from_one_address_is_capped() {
    let mut app = flood_config(5, 50, 100).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let channel = channel(&app);
    let mut results = Vec::new();
    for chunk in (0..10_000).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|index| login_on(channel.clone(), format!("user{index}"), "Summer2026!", "198.51.100.66"));
        results.extend(join_all(batch).await);
    }

    assert_eq!(tally(&results), (100, 9_900), "the per-address cap across usernames");
    let burst = app.audit_of(&[AuditKind::FailedLoginsFromIp]).await;
    assert_eq!(burst.len(), 1, "recorded once per SECURITY_EVENT_INTERVAL");
    assert_eq!(burst[0].ip_address, "198.51.100.66");
    // Another address is not affected.
    app.login_from("alice", PASSWORD, client("203.0.113.7", FIREFOX, "")).await.expect("elsewhere");
    // Unknown usernames were never recorded: people type passwords there.
    let failed = app.audit_of(&[AuditKind::LoginFailed]).await;
    assert!(failed.iter().all(|record| record.user_id.is_empty() && record.detail == "unknown_user"));
}

#[tokio::test]
async fn successful_logins_do_not_count_and_the_window_refills() {
    let mut app = TestConfig::default().security(limits(2, 10, 100)).spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let home = || client("203.0.113.7", FIREFOX, "laptop");
    for _ in 0..20 {
        app.login_from("alice", PASSWORD, home()).await.expect("successes never count");
    }
    for _ in 0..2 {
        assert_status(app.login_from("alice", "a guess", home()).await, Code::Unauthenticated, "invalid");
    }
    let throttled = assert_status(app.login_from("alice", PASSWORD, home()).await, Code::ResourceExhausted, "retry in");
    // One attempt back every 15 min / 2.
    assert!(throttled.message().contains("retry in 450 s"), "{}", throttled.message());

    app.clock.advance(Duration::from_secs(450));

    app.login_from("alice", PASSWORD, home()).await.expect("the window refilled one attempt");
}

#[tokio::test]
async fn replicas_share_the_counts_so_they_do_not_multiply_the_limit() {
    if postgres_server().is_none() {
        eprintln!("skipped: several replicas need PostgreSQL; tests/run.sh provides it");
        return;
    }
    let config = || flood_config(10, 100, 1000);
    let mut first = config().spawn().await;
    first.create_user("alice", PASSWORD, &[]).await;
    let mut apps = vec![first];
    for _ in 0..2 {
        let replica = config().spawn_sharing_database(&apps[0]).await;
        apps.push(replica);
    }
    let channels: Vec<Channel> = apps.iter().map(channel).collect();

    let guesses = (0..600).map(|index| login_on(channels[index % 3].clone(), "alice".into(), "a guess", "203.0.113.7"));
    let results = join_all(guesses).await;

    assert_eq!(tally(&results), (10, 590), "three replicas, one limit");
}

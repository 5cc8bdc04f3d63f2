//! Several replicas on one PostgreSQL database: revocations seen everywhere,
//! one successor per token across replicas, outbox order under concurrent
//! writers, and a database restart in the middle of the load.
//!
//! These need PostgreSQL; tests/run.sh provides it. On SQLite (plain
//! `cargo test`) they say so and return.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::join_all;
use token_authority::{
    clock::Clock,
    domain::{KeySetChange, OutboxEvent, SessionId, Timestamp},
    proto::{self, RevocationEventKind, VerifyReason},
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    helpers::{
        PASSWORD, SERVICE_KEY, TestApp, TestConfig, claims_of, create_postgres_database, eventually, header_of,
        login_on, next_revocations, postgres_server, reason, refresh_on, sleep, with_key,
    },
    keys::{jwks_kids, published},
    postgres::PrivatePostgres,
};

/// Returns early from a test that needs PostgreSQL when there is none.
macro_rules! require_postgres {
    () => {
        if postgres_server().is_none() {
            eprintln!("skipped: several replicas need PostgreSQL; tests/run.sh provides it");
            return;
        }
    };
}

async fn replicas(count: usize, config: impl Fn() -> TestConfig) -> Vec<TestApp> {
    let first = config().spawn().await;
    let mut replicas = vec![];
    for _ in 1..count {
        replicas.push(config().spawn_sharing_database(&first).await);
    }
    replicas.insert(0, first);
    replicas
}

fn session_id(login: &proto::LoginResponse) -> String {
    login.session.as_ref().unwrap().session_id.clone()
}

#[tokio::test]
async fn a_logout_on_one_replica_is_seen_by_verify_and_streams_on_the_others() {
    require_postgres!();
    let mut apps = replicas(3, || TestConfig::default().rotation_grace(1)).await;
    let login = apps[0].user_with_session("alice").await;
    for app in &mut apps[1..] {
        assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok, "now cached there");
    }
    let mut streams = Vec::new();
    for app in &mut apps[1..] {
        streams.push(app.watch(0, false).await.unwrap());
    }

    // A rotation on replica 0: the new token verifies everywhere, the old
    // one stops after the grace period.
    let refreshed = apps[0].refresh(&login.access_token).await.unwrap();
    for stream in &mut streams {
        let rotated = next_revocations(stream, 1).await;
        assert_eq!(rotated[0].reason(), proto::RevocationReason::Rotated);
    }
    for app in &mut apps[1..] {
        assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Ok);
    }
    // The replicas share one clock.
    apps[0].clock.advance(Duration::from_millis(1100));
    for app in &mut apps[1..] {
        assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Rotated);
    }

    apps[0].logout(&refreshed.access_token).await.unwrap();

    for stream in &mut streams {
        let events = next_revocations(stream, 1).await;
        assert_eq!(events[0].reason(), proto::RevocationReason::Logout);
        assert_eq!(events[0].session_id, session_id(&login));
    }
    // The event reached each replica's cache before its subscribers.
    for app in &mut apps[1..] {
        assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Revoked);
    }
}

#[tokio::test]
async fn concurrent_revocations_on_several_replicas_reach_every_subscriber_exactly_once() {
    require_postgres!();
    let mut apps = replicas(3, TestConfig::default).await;
    apps[0].create_user("alice", PASSWORD, &[]).await;
    let mut sessions = Vec::new();
    for round in 0..20 {
        let logins = apps.iter().flat_map(|app| (0..5).map(|_| login_on(app.client.clone(), "alice")));
        sessions.extend(join_all(logins).await.into_iter().map(|login| login.expect("login")));
        assert_eq!(sessions.len(), (round + 1) * 15);
    }
    let mut streams = Vec::new();
    for app in &mut apps {
        for _ in 0..2 {
            streams.push(app.watch(0, false).await.unwrap());
        }
    }

    // Every replica logs out a third of the sessions, all at once.
    let logouts = sessions.iter().enumerate().map(|(index, login)| {
        let mut client = apps[index % apps.len()].client.clone();
        let token = login.access_token.clone();
        async move { client.logout(proto::LogoutRequest { access_token: token }).await.expect("logout") }
    });
    join_all(logouts).await;

    let expected: BTreeSet<String> = sessions.iter().map(session_id).collect();
    for stream in &mut streams {
        let events = next_revocations(stream, sessions.len()).await;
        let cursors: Vec<u64> = events.iter().map(|event| event.cursor).collect();
        assert_eq!(cursors, (1..=sessions.len() as u64).collect::<Vec<_>>(), "no gap, no repeat, in order");
        let seen: BTreeSet<String> = events.iter().map(|event| event.session_id.clone()).collect();
        assert_eq!(seen, expected);
    }
}

#[tokio::test]
async fn racing_refreshes_on_two_replicas_leave_exactly_one_successor() {
    require_postgres!();
    let mut apps = replicas(2, TestConfig::default).await;
    for round in 0..5 {
        let login = apps[0].user_with_session(&format!("user{round}")).await;
        let attempts = (0..16).map(|attempt| refresh_on(apps[attempt % 2].client.clone(), login.access_token.clone()));
        let successors: BTreeSet<String> = join_all(attempts)
            .await
            .into_iter()
            .map(|result| result.expect("every racing refresh succeeds"))
            .collect();
        assert_eq!(successors.len(), 1, "one successor, handed to every caller on both replicas");
        let successor = successors.into_iter().next().unwrap();
        for app in &mut apps {
            assert_eq!(reason(&app.verify(&successor).await), VerifyReason::Ok);
        }
    }
}

#[tokio::test]
async fn logout_all_racing_refreshes_leaves_no_live_token() {
    require_postgres!();
    let mut apps = replicas(2, || TestConfig::default().rotation_grace(0)).await;
    apps[0].create_user("alice", PASSWORD, &[]).await;
    for _ in 0..5 {
        let mut sessions = Vec::new();
        for _ in 0..8 {
            sessions.push(apps[0].login("alice", PASSWORD).await.unwrap());
        }
        // LogoutAll from a session that nobody refreshes, on the other replica.
        let controller = apps[1].login("alice", PASSWORD).await.unwrap();
        let refreshes = sessions
            .iter()
            .map(|login| async { refresh_on(apps[0].client.clone(), login.access_token.clone()).await.ok() });
        let mut other = apps[1].client.clone();
        let logout_all = other.logout_all(proto::LogoutAllRequest {
            access_token: controller.access_token.clone(),
            keep_current: false,
        });
        let (successors, logged_out) = tokio::join!(join_all(refreshes), logout_all);

        assert!(logged_out.unwrap().into_inner().revoked_count >= 1);
        let tokens = sessions
            .iter()
            .chain(std::iter::once(&controller))
            .map(|login| login.access_token.clone())
            .chain(successors.into_iter().flatten());
        // The other replica learns of the revocation within milliseconds; a
        // stale cache would keep a token valid for good.
        for token in tokens {
            for app in &mut apps {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while app.verify(&token).await.valid {
                    assert!(tokio::time::Instant::now() < deadline, "a token outlived LogoutAll");
                    sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn health(app: &TestApp) -> Option<ServingStatus> {
    let channel = Channel::from_shared(app.channel_uri()).unwrap().connect().await.ok()?;
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
    Some(response.into_inner().status())
}

async fn wait_for_health(app: &TestApp, wanted: ServingStatus) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while health(app).await != Some(wanted) {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("health never became {wanted:?}"));
}

/// Logs a user in and out again until both succeed, retrying what the
/// outage refuses; returns the session id once its logout is acknowledged.
async fn login_then_logout(app: &TestApp) -> String {
    let mut client = app.client.clone();
    let login = loop {
        let request = proto::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            ..Default::default()
        };
        match client.login(request).await {
            Ok(response) => break response.into_inner(),
            Err(status) => {
                assert!(matches!(status.code(), Code::Unavailable), "{status:?}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    loop {
        let request = proto::LogoutRequest {
            access_token: login.access_token.clone(),
        };
        match client.logout(request).await {
            Ok(_) => return session_id(&login),
            Err(status) => {
                assert!(matches!(status.code(), Code::Unavailable), "{status:?}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_database_restart_mid_load_loses_no_session_and_no_event() {
    require_postgres!();
    let postgres = PrivatePostgres::start();
    let database = create_postgres_database(&postgres.url()).await;
    let config = || {
        TestConfig::default().configure(|config| {
            config.health_check_interval = Duration::from_millis(200);
            config.database.acquire_timeout = Duration::from_secs(1);
            config.revocations.poll_interval = Duration::from_millis(200);
        })
    };
    let mut writer = config().spawn_on(database.clone()).await;
    let watcher = config().spawn_sharing_database(&writer).await;
    writer.create_user("alice", PASSWORD, &[]).await;
    let cached = writer.login("alice", PASSWORD).await.unwrap();

    // A subscriber on the other replica that resumes from its cursor.
    let watcher_client = watcher.client.clone();
    let (seen_sender, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(async move {
        let mut cursor = 0;
        loop {
            let mut client = watcher_client.clone();
            let request = with_key(
                proto::WatchRevocationsRequest {
                    after_cursor: cursor,
                    include_snapshot: false,
                    session_snapshot: false,
                },
                SERVICE_KEY,
            );
            let Ok(stream) = client.watch_revocations(request).await else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(event)) = stream.message().await {
                if event.kind() == proto::RevocationEventKind::Revoked {
                    assert_eq!(event.cursor, cursor + 1, "resumed without gap or repeat");
                    cursor = event.cursor;
                    if seen_sender.send(event).is_err() {
                        return;
                    }
                }
            }
        }
    });

    let mut acknowledged = Vec::new();
    for _ in 0..20 {
        acknowledged.push(login_then_logout(&writer).await);
    }
    let (during, ()) = tokio::join!(
        async {
            let mut done = Vec::new();
            for _ in 0..40 {
                done.push(login_then_logout(&writer).await);
            }
            done
        },
        async {
            sleep(Duration::from_millis(100)).await;
            postgres.stop();
            wait_for_health(&writer, ServingStatus::NotServing).await;
            wait_for_health(&watcher, ServingStatus::NotServing).await;
            let refused = writer
                .client
                .clone()
                .verify(proto::VerifyRequest {
                    access_token: "x.y.z".into(),
                    client: None,
                })
                .await;
            assert!(refused.is_ok(), "Verify of a malformed token needs no database");
            let still_valid = writer
                .client
                .clone()
                .verify(proto::VerifyRequest {
                    access_token: cached.access_token.clone(),
                    client: None,
                })
                .await
                .expect("Verify of a cached session needs no database")
                .into_inner();
            assert!(still_valid.valid);
            let refused = writer
                .client
                .clone()
                .login(proto::LoginRequest {
                    username: "alice".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                })
                .await;
            assert_eq!(refused.unwrap_err().code(), Code::Unavailable);
            postgres.start_again();
            wait_for_health(&writer, ServingStatus::Serving).await;
            wait_for_health(&watcher, ServingStatus::Serving).await;
        }
    );
    acknowledged.extend(during);
    for _ in 0..20 {
        acknowledged.push(login_then_logout(&writer).await);
    }

    // On PostgreSQL the follower numbers events just after their commit:
    // the last logouts' cursors may still be on their way.
    let repository = writer.repository().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let latest = loop {
        let latest = repository.cursor_bounds().await.unwrap().latest;
        if latest >= acknowledged.len() as u64 {
            break latest;
        }
        assert!(tokio::time::Instant::now() < deadline, "every acknowledged logout has its event");
        sleep(Duration::from_millis(20)).await;
    };
    let mut events = Vec::new();
    while (events.len() as u64) < latest {
        let event = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .expect("the subscriber catches up")
            .expect("the subscriber runs");
        events.push(event);
    }
    follower.abort();
    let revoked: BTreeSet<String> = events.iter().map(|event| event.session_id.clone()).collect();
    for session in &acknowledged {
        assert!(revoked.contains(session), "the logout of {session} reached the other replica");
        let stored = repository
            .find_session(SessionId::parse("session_id", session).unwrap())
            .await
            .unwrap()
            .expect("an acknowledged session is stored");
        assert!(stored.revoked_at.is_some(), "an acknowledged logout is stored");
    }
}

#[tokio::test]
async fn sslmode_require_is_enforced_against_a_server_without_tls() {
    require_postgres!();
    use token_authority::repository::{DatabaseConfig, Repository};
    let server = postgres_server().unwrap();
    let config = |url: String| DatabaseConfig {
        url,
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    };
    let plain = Repository::connect(&config(format!("{server}?sslmode=prefer"))).await.unwrap();
    plain.ping().await.expect("without TLS required, the plain server answers");

    let tls = Repository::connect(&config(format!("{server}?sslmode=require"))).await.unwrap();

    let refused = tls.ping().await.expect_err("the test server offers no TLS, so nothing connects");
    assert!(matches!(refused, token_authority::repository::RepositoryError::Unavailable(_)), "{refused:?}");
}

/// What a subscriber has heard of the key set: each kid with the (test)
/// time it was first announced, and the latest set.
#[derive(Default)]
struct HeardKeys {
    first_heard: HashMap<String, Timestamp>,
    latest: Vec<String>,
}

/// Two replicas on one database and clock, through two scheduled rotations,
/// the clock moved in quarter hours around each: at every step each replica
/// publishes exactly the keys the schedule says, every token signed so far
/// verifies on both until it expires, a subscriber has heard of each key
/// before the first token signed with it, and the rotation happens once.
#[tokio::test]
async fn rotation_on_two_replicas_follows_the_schedule_and_never_fails_a_token() {
    require_postgres!();
    const QUARTER: Duration = Duration::from_secs(900);
    const HOUR: Duration = Duration::from_secs(3600);
    const INTERVAL: Duration = Duration::from_secs(10 * 24 * 3600);
    let mut apps = replicas(2, TestConfig::rotating_keys).await;
    let clock = apps[0].clock.clone();
    let start = clock.now();
    apps[0].create_user("alice", PASSWORD, &[]).await;
    let repository = apps[0].repository().await;
    let first = repository.load_keys().await.unwrap();
    assert_eq!(first.len(), 1, "one first key, whichever replica made it");
    let first = first[0].info.kid.clone();

    // A subscriber on the replica that did not necessarily make the keys.
    let (mut stream, opening) = apps[1].watch_with_keys(0, false).await.unwrap();
    let heard = Arc::new(Mutex::new(HeardKeys::default()));
    let record = |heard: &Mutex<HeardKeys>, event: &proto::RevocationEvent, at: Timestamp| {
        let mut heard = heard.lock().unwrap();
        heard.latest = jwks_kids(event);
        for kid in heard.latest.clone() {
            heard.first_heard.entry(kid).or_insert(at);
        }
    };
    record(&heard, &opening, clock.now());
    let listener = tokio::spawn({
        let (heard, clock) = (heard.clone(), clock.clone());
        async move {
            while let Some(event) = stream.message().await.expect("the stream stays healthy") {
                if event.kind() == RevocationEventKind::KeySet {
                    record(&heard, &event, clock.now());
                }
            }
        }
    });

    // Generation n (from 1) is published an hour before it signs, at
    // start + (n - 1) * INTERVAL (the first at once), and deleted two hours
    // (the longest token lifetime) after its successor signs.
    let expected_published = |now: Timestamp| -> Vec<u32> {
        (1..=3u32)
            .filter(|generation| {
                let signs_from = start.plus(INTERVAL * (generation - 1));
                let published = if *generation == 1 {
                    start
                } else {
                    signs_from.minus(HOUR)
                };
                let deleted = signs_from.plus(INTERVAL).plus(2 * HOUR);
                published <= now && now < deleted
            })
            .collect()
    };
    let mut steps = vec![Duration::ZERO];
    for rotation in 1..=2u32 {
        let around = INTERVAL * rotation - 2 * HOUR;
        steps.extend((0..=20).map(|quarter| around + QUARTER * quarter));
    }

    let mut generations: HashMap<u32, String> = HashMap::from([(1, first.clone())]);
    let mut tokens: Vec<(String, String, i64)> = Vec::new();
    let mut first_signed: HashMap<String, Timestamp> = HashMap::new();
    for step in steps {
        clock.advance(step - start.until(clock.now()));
        let now = clock.now();
        let wanted = expected_published(now);

        // Both replicas publish what the schedule says, and the subscriber
        // has heard it (milliseconds, in real time, against the hour ahead).
        eventually("both replicas publish the scheduled keys", || async {
            let mut sets = Vec::new();
            for app in &apps {
                sets.push(published(app).await);
            }
            sets.iter().all(|set| set.len() == wanted.len() && sets[0] == *set)
        })
        .await;
        let set = published(&apps[0]).await;
        let keys = repository.load_keys().await.unwrap();
        for key in &keys {
            generations.entry(key.info.generation as u32).or_insert_with(|| key.info.kid.clone());
        }
        let wanted_kids: Vec<String> = wanted.iter().map(|generation| generations[generation].clone()).collect();
        let mut sorted = set.clone();
        sorted.sort();
        let mut wanted_sorted = wanted_kids.clone();
        wanted_sorted.sort();
        assert_eq!(sorted, wanted_sorted, "at {:?} after the start", start.until(now));
        assert_eq!(keys.len(), wanted.len(), "retired keys are deleted after their time, not before");
        eventually("the subscriber hears the current set", || async {
            let mut latest = heard.lock().unwrap().latest.clone();
            latest.sort();
            latest == wanted_sorted
        })
        .await;

        // Tokens signed now, on either replica, standard and remembered.
        for index in 0..2 {
            let login = apps[index].login("alice", PASSWORD).await.unwrap();
            let remembered = apps[1 - index].login_remembered("alice").await;
            for token in [login.access_token, remembered.access_token] {
                let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
                first_signed.entry(kid.clone()).or_insert(now);
                let expires = claims_of(&token)["exp"].as_i64().unwrap();
                tokens.push((token, kid, expires));
            }
        }

        // Every token signed so far verifies on both replicas until it
        // expires; then it is told apart as expired (once, and dropped), or
        // as signed by no known key when its key went in the same step.
        for (token, kid, expires) in &tokens {
            let wanted = if *expires >= now.as_unix_seconds() {
                VerifyReason::Ok
            } else if set.contains(kid) {
                VerifyReason::Expired
            } else {
                VerifyReason::BadSignature
            };
            for app in &mut apps {
                assert_eq!(reason(&app.verify(token).await), wanted, "at {:?}", start.until(now));
            }
        }
        tokens.retain(|(_, _, expires)| *expires >= now.as_unix_seconds());
    }

    // Each key signed for the first time at its scheduled moment, and had
    // been announced to the subscriber at least an hour before.
    assert_eq!(generations.len(), 3);
    let first_heard = heard.lock().unwrap().first_heard.clone();
    for generation in 2..=3u32 {
        let kid = &generations[&generation];
        assert_eq!(first_signed[kid], start.plus(INTERVAL * (generation - 1)), "generation {generation}");
        let announced = first_heard[kid];
        assert!(announced.plus(HOUR) <= first_signed[kid], "generation {generation} heard of an hour ahead");
    }
    listener.abort();

    // Racing maintenance on two replicas made each rotation once: one key
    // and one key-set event per generation.
    let events = {
        repository.sequence_events(1000).await.unwrap();
        repository.events_after(0, 1000).await.unwrap()
    };
    let changes: Vec<KeySetChange> = events
        .iter()
        .filter_map(|event| match event {
            OutboxEvent::KeySetChanged { change, .. } => Some(*change),
            OutboxEvent::Revoked(_) => None,
        })
        .collect();
    use KeySetChange::{Deleted, Published};
    assert_eq!(changes, [Published, Published, Deleted, Published, Deleted]);
}

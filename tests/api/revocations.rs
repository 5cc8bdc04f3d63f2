//! WatchRevocations: every revocation, to every subscriber, in order,
//! exactly once; resumable, with a snapshot, heartbeats, and cleanup.

use std::{collections::BTreeSet, time::Duration};

use futures::future::join_all;
use token_authority::{
    authority::cleanup,
    clock::Clock,
    domain::SessionId,
    proto::{self, RevocationEventKind as Kind, RevocationReason as Reason},
};
use tonic::Code;

use crate::helpers::{
    ADMIN_KEY, PASSWORD, TestApp, TestConfig, admin_request, assert_status, claims_of, login_on, next_revocations,
    sleep, spawn_app, with_key,
};

#[track_caller]
fn assert_contiguous(events: &[proto::RevocationEvent], after: u64) {
    let cursors: Vec<u64> = events.iter().map(|event| event.cursor).collect();
    let expected: Vec<u64> = (after + 1..=after + events.len() as u64).collect();
    assert_eq!(cursors, expected, "cursors follow each other with no gap and no repeat");
}

/// `count` sessions of a new user, logged in a few at a time.
async fn sessions_of(app: &mut TestApp, username: &str, count: usize) -> Vec<proto::LoginResponse> {
    app.create_user(username, PASSWORD, &[]).await;
    let mut sessions = Vec::with_capacity(count);
    while sessions.len() < count {
        let batch = (sessions.len()..count.min(sessions.len() + 32)).map(|_| login_on(app.client.clone(), username));
        sessions.extend(join_all(batch).await.into_iter().map(|login| login.expect("login")));
    }
    sessions
}

fn session_id(login: &proto::LoginResponse) -> String {
    login.session.as_ref().unwrap().session_id.clone()
}

/// Logs every session out, a few at a time.
async fn logout_all_of(app: &TestApp, sessions: &[proto::LoginResponse]) {
    for chunk in sessions.chunks(32) {
        join_all(chunk.iter().map(|login| {
            let mut client = app.client.clone();
            let token = login.access_token.clone();
            async move { client.logout(proto::LogoutRequest { access_token: token }).await.expect("logout") }
        }))
        .await;
    }
}

#[tokio::test]
async fn every_kind_of_revocation_reaches_a_subscriber() {
    let mut app = TestConfig::default().rotation_grace(0).spawn().await;
    let mut stream = app.watch(0, false).await.unwrap();
    let alice = app.user_with_session("alice").await;

    // ROTATED
    let rotated = app.refresh(&alice.access_token).await.unwrap();
    // REUSE_DETECTED (the retired token again, past the grace period)
    app.clock.advance(Duration::from_millis(20));
    assert!(app.refresh(&alice.access_token).await.is_err());
    // LOGOUT
    let bob = app.user_with_session("bob").await;
    app.logout(&bob.access_token).await.unwrap();
    // LOGOUT_ALL
    let carol = app.user_with_session("carol").await;
    app.client
        .logout_all(proto::LogoutAllRequest {
            access_token: carol.access_token.clone(),
            keep_current: false,
        })
        .await
        .unwrap();
    // PASSWORD_CHANGED (dave's other session), and dave's own token ROTATED
    let dave = app.user_with_session("dave").await;
    let dave_other = app.login("dave", PASSWORD).await.unwrap();
    app.client
        .change_password(proto::ChangePasswordRequest {
            access_token: dave.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new passphrase".into(),
        })
        .await
        .unwrap();
    // ADMIN
    let erin = app.user_with_session("erin").await;
    app.admin
        .revoke_session(admin_request(proto::RevokeSessionRequest {
            session_id: session_id(&erin),
        }))
        .await
        .unwrap();
    // USER_DISABLED
    let frank = app.user_with_session("frank").await;
    app.admin
        .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
            user_id: frank.user_id.clone(),
            disabled: true,
        }))
        .await
        .unwrap();

    let events = next_revocations(&mut stream, 8).await;

    assert_contiguous(&events, 0);
    let seen: Vec<(Reason, String)> = events.iter().map(|event| (event.reason(), event.session_id.clone())).collect();
    assert_eq!(
        seen,
        [
            (Reason::Rotated, session_id(&alice)),
            (Reason::ReuseDetected, session_id(&alice)),
            (Reason::Logout, session_id(&bob)),
            (Reason::LogoutAll, session_id(&carol)),
            (Reason::PasswordChanged, session_id(&dave_other)),
            (Reason::Rotated, session_id(&dave)),
            (Reason::Admin, session_id(&erin)),
            (Reason::UserDisabled, session_id(&frank)),
        ]
    );
    for event in &events {
        assert_eq!(event.kind(), Kind::Revoked);
        assert!(event.revoked_at.is_some() && event.expires_at.is_some());
        if event.reason() == Reason::Rotated {
            assert!(!event.token_id.is_empty(), "a rotation names the retired token");
        } else {
            assert!(event.token_id.is_empty(), "a session revocation covers every token");
        }
    }
    assert_eq!(events[0].token_id, claims_of(&alice.access_token)["jti"].as_str().unwrap());
    assert_eq!(
        events[0].expires_at.as_ref().unwrap().seconds,
        claims_of(&alice.access_token)["exp"].as_i64().unwrap()
    );
    assert_eq!(
        events[1].expires_at.as_ref().unwrap().seconds,
        claims_of(&rotated.access_token)["exp"].as_i64().unwrap()
    );
    assert_eq!(events[2].user_id, bob.user_id);
}

#[tokio::test]
async fn resuming_after_a_disconnect_yields_exactly_the_missed_events() {
    let mut app = spawn_app().await;
    let sessions = sessions_of(&mut app, "alice", 10).await;
    let mut stream = app.watch(0, false).await.unwrap();
    logout_all_of(&app, &sessions[..4]).await;
    let first = next_revocations(&mut stream, 4).await;
    drop(stream);

    logout_all_of(&app, &sessions[4..]).await;
    let mut resumed = app.watch(first.last().unwrap().cursor, false).await.unwrap();
    let missed = next_revocations(&mut resumed, 6).await;

    assert_contiguous(&first, 0);
    assert_contiguous(&missed, 4);
    let revoked: BTreeSet<String> = first.iter().chain(&missed).map(|event| event.session_id.clone()).collect();
    let expected: BTreeSet<String> = sessions.iter().map(session_id).collect();
    assert_eq!(revoked, expected);
}

#[tokio::test]
async fn resuming_works_across_a_server_restart() {
    let mut app = spawn_app().await;
    let sessions = sessions_of(&mut app, "alice", 6).await;
    let mut stream = app.watch(0, false).await.unwrap();
    logout_all_of(&app, &sessions[..3]).await;
    let before = next_revocations(&mut stream, 3).await;
    drop(stream);

    let mut app = app.restart().await;
    logout_all_of(&app, &sessions[3..]).await;
    let mut resumed = app.watch(before.last().unwrap().cursor, false).await.unwrap();
    let after = next_revocations(&mut resumed, 3).await;

    assert_contiguous(&after, 3);
    let all: BTreeSet<String> = before.iter().chain(&after).map(|event| event.session_id.clone()).collect();
    assert_eq!(all.len(), 6);
}

#[tokio::test]
async fn snapshot_then_live_events_equal_the_truth() {
    // Standard tokens live 3 seconds, remember-me ones an hour.
    let mut app = TestConfig::default()
        .configure(|config| {
            config.tokens.lifetimes.standard = Duration::from_secs(3);
            config.tokens.lifetimes.remember_me = Duration::from_secs(3600);
            config.tokens.lifetimes.refresh_window = Duration::from_secs(1);
        })
        .rotation_grace(1)
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    // Revoked long ago enough that its token has expired: not in the snapshot.
    let short_lived = app.login("alice", PASSWORD).await.unwrap();
    app.logout(&short_lived.access_token).await.unwrap();
    // Revoked, token still valid for an hour: in the snapshot.
    let revoked = app.login_remembered("alice").await;
    app.logout(&revoked.access_token).await.unwrap();
    // Rotated: the retired token is in the snapshot, the session is not revoked.
    let rotated = app.login_remembered("alice").await;
    app.refresh(&rotated.access_token).await.unwrap();
    // Untouched: nowhere.
    let untouched = app.login_remembered("alice").await;
    app.clock.advance(Duration::from_secs(4));
    app.wait_for_cursor(3).await;

    let mut stream = app.watch(0, true).await.unwrap();
    let mut snapshot = Vec::new();
    let end = loop {
        let event = stream.message().await.unwrap().unwrap();
        match event.kind() {
            Kind::SnapshotEnd => break event,
            Kind::Revoked => snapshot.push(event),
            other => panic!("unexpected {other:?} before the end of the snapshot"),
        }
    };
    let late = app.login_remembered("alice").await;
    app.logout(&late.access_token).await.unwrap();
    let live = next_revocations(&mut stream, 1).await;

    let entries: BTreeSet<(String, String)> = snapshot
        .iter()
        .chain(&live)
        .map(|event| (event.session_id.clone(), event.token_id.clone()))
        .collect();
    let truth: BTreeSet<(String, String)> = [
        (session_id(&revoked), String::new()),
        (session_id(&rotated), claims_of(&rotated.access_token)["jti"].as_str().unwrap().to_owned()),
        (session_id(&late), String::new()),
    ]
    .into();
    assert_eq!(entries, truth);
    assert!(
        !entries
            .iter()
            .any(|(session, _)| *session == session_id(&untouched) || *session == session_id(&short_lived))
    );
    assert_eq!(end.cursor, 3, "the snapshot ends at the latest cursor: logout, logout, rotation");
    assert_contiguous(&live, end.cursor);
}

#[tokio::test]
async fn two_hundred_subscribers_all_see_a_burst_of_a_thousand_revocations() {
    // The 200 streams share the test's one connection: beyond
    // MAX_STREAMS_PER_CONNECTION, the client would hold them back.
    let mut app = TestConfig::default()
        .configure(|config| config.limits.max_streams_per_connection = std::num::NonZeroU32::new(256).unwrap())
        .spawn()
        .await;
    let sessions = sessions_of(&mut app, "alice", 1000).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(app.watch(0, false).await.unwrap());
    }

    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { next_revocations(&mut stream, 1000).await }))
        .collect();
    logout_all_of(&app, &sessions).await;

    let expected: BTreeSet<String> = sessions.iter().map(session_id).collect();
    for reader in readers {
        let events = reader.await.unwrap();
        assert_contiguous(&events, 0);
        let seen: BTreeSet<String> = events.iter().map(|event| event.session_id.clone()).collect();
        assert_eq!(seen, expected);
    }
}

#[tokio::test]
async fn a_subscriber_that_reads_nothing_does_not_hold_up_logout_or_lose_events() {
    let mut app = TestConfig::default()
        .configure(|config| config.revocations.buffer = std::num::NonZeroUsize::new(16).unwrap())
        .spawn()
        .await;
    let sessions = sessions_of(&mut app, "alice", 300).await;
    // A tiny HTTP/2 window: the server cannot push ahead into the stalled
    // client's buffers, so its subscription really falls behind.
    let narrow = tonic::transport::Endpoint::from_shared(app.channel_uri())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut stalled = proto::token_authority_client::TokenAuthorityClient::new(narrow)
        .watch_revocations(with_key(proto::WatchRevocationsRequest::default(), crate::helpers::SERVICE_KEY))
        .await
        .unwrap()
        .into_inner();
    let mut attentive = app.watch(0, false).await.unwrap();

    // Many times the broadcast buffer, with one subscriber not reading at all.
    tokio::time::timeout(Duration::from_secs(60), logout_all_of(&app, &sessions))
        .await
        .expect("logouts complete while a subscriber stalls");
    let attentive_events = next_revocations(&mut attentive, 300).await;
    let stalled_events = next_revocations(&mut stalled, 300).await;

    assert_contiguous(&attentive_events, 0);
    assert_contiguous(&stalled_events, 0);
}

#[tokio::test]
async fn heartbeats_arrive_on_an_idle_stream_with_the_latest_cursor() {
    let mut app = TestConfig::default()
        .configure(|config| config.revocations.heartbeat = Duration::from_millis(100))
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    app.logout(&login.access_token).await.unwrap();
    let mut stream = app.watch(0, false).await.unwrap();

    let revoked = stream.message().await.unwrap().unwrap();
    let first = stream.message().await.unwrap().unwrap();
    let second = stream.message().await.unwrap().unwrap();

    assert_eq!(revoked.kind(), Kind::Revoked);
    for heartbeat in [first, second] {
        assert_eq!(heartbeat.kind(), Kind::Heartbeat);
        assert_eq!(heartbeat.cursor, revoked.cursor);
    }
}

/// A consumer that resumes (or starts from a snapshot) is told when it has
/// caught up: a heartbeat right after what it missed, long before the idle
/// heartbeat. Without it, a verifier could only count itself current from
/// its first message, before the revocations it missed had arrived.
#[tokio::test]
async fn a_heartbeat_marks_the_end_of_what_a_stream_had_missed() {
    let mut app = TestConfig::default()
        .configure(|config| config.revocations.heartbeat = Duration::from_secs(3600))
        .spawn()
        .await;
    for name in ["alice", "bob", "carol"] {
        let login = app.user_with_session(name).await;
        app.logout(&login.access_token).await.unwrap();
    }
    let next = async |stream: &mut tonic::Streaming<proto::RevocationEvent>| {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message()).await;
        message.expect("a message long before the idle heartbeat").unwrap().unwrap()
    };

    let mut resumed = app.watch(1, false).await.unwrap();
    let missed = [next(&mut resumed).await, next(&mut resumed).await];
    let caught_up = next(&mut resumed).await;
    let mut current = app.watch(3, false).await.unwrap();
    let nothing_missed = next(&mut current).await;
    let mut snapshot = app.watch(0, true).await.unwrap();
    let mut after_snapshot = next(&mut snapshot).await;
    while after_snapshot.kind() != Kind::SnapshotEnd {
        after_snapshot = next(&mut snapshot).await;
    }
    let snapshot_caught_up = next(&mut snapshot).await;

    assert_eq!(missed.map(|event| (event.kind(), event.cursor)), [(Kind::Revoked, 2), (Kind::Revoked, 3)]);
    for heartbeat in [caught_up, nothing_missed, snapshot_caught_up] {
        assert_eq!((heartbeat.kind(), heartbeat.cursor), (Kind::Heartbeat, 3));
    }
}

/// A server whose tokens all expire within a second and whose events are
/// kept no longer than that.
async fn short_retention_app() -> TestApp {
    TestConfig::short_lived().configure(short_retention).spawn().await
}

/// Every token expires within a second, and events are kept no longer.
fn short_retention(config: &mut token_authority::config::Config) {
    config.tokens.lifetimes.remember_me = Duration::from_secs(1);
    config.cleanup.policy.event_retention = Duration::from_secs(1);
}

fn policy() -> token_authority::authority::CleanupPolicy {
    token_authority::authority::CleanupPolicy {
        session_grace: Duration::ZERO,
        event_retention: Duration::from_secs(1),
        audit_retention: Duration::from_secs(90 * 86_400),
        known_client_retention: Duration::from_secs(90 * 86_400),
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_history_is_out_of_range() {
    let mut app = short_retention_app().await;
    let sessions = sessions_of(&mut app, "alice", 3).await;
    logout_all_of(&app, &sessions).await;
    app.wait_for_cursor(3).await;
    app.clock.advance(Duration::from_millis(2100));
    let report = cleanup(&app.repository().await, None, &policy(), app.clock.now()).await.unwrap();
    assert_eq!(report.events_deleted, 3);

    let too_old = app.watch(1, false).await;
    assert_status(too_old, Code::OutOfRange, "include_snapshot");
    let ahead = app.watch(99, false).await;
    assert_status(ahead, Code::OutOfRange, "include_snapshot");
    // The oldest retained (none) and the latest cursor are fine.
    app.watch(0, false).await.unwrap();
    app.watch(3, false).await.unwrap();
}

#[tokio::test]
async fn cleanup_removes_expired_rows_and_keeps_live_ones() {
    let mut app = TestConfig::short_lived().spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let expired = app.login("alice", PASSWORD).await.unwrap();
    let revoked_expired = app.login("alice", PASSWORD).await.unwrap();
    app.logout(&revoked_expired.access_token).await.unwrap();
    let live = app.login_remembered("alice").await;
    let revoked_live = app.login_remembered("alice").await;
    app.logout(&revoked_live.access_token).await.unwrap();
    app.wait_for_cursor(2).await;
    app.clock.advance(Duration::from_millis(2100));
    let repository = app.repository().await;

    let report = cleanup(&repository, None, &policy(), app.clock.now()).await.unwrap();

    assert_eq!(report.sessions_deleted, 2, "the two expired sessions, revoked or not");
    let exists = |login: &proto::LoginResponse| {
        let repository = repository.clone();
        let id = SessionId::parse("session_id", &session_id(login)).unwrap();
        async move { repository.find_session(id).await.unwrap().is_some() }
    };
    assert!(!exists(&expired).await);
    assert!(!exists(&revoked_expired).await);
    assert!(exists(&live).await);
    assert!(exists(&revoked_live).await, "revoked, but its token has not expired yet");
    assert_eq!(report.events_deleted, 2, "both revocation events are older than the retention");
    let verified = app.verify(&live.access_token).await;
    assert!(verified.valid);
    let again = cleanup(&repository, None, &policy(), app.clock.now()).await.unwrap();
    assert_eq!((again.sessions_deleted, again.events_deleted), (0, 0));
}

#[tokio::test]
async fn watching_needs_a_service_or_admin_key() {
    let mut app = spawn_app().await;
    let request = || proto::WatchRevocationsRequest::default();

    let anonymous = app.unauthenticated_client().watch_revocations(request()).await;
    assert_status(anonymous, Code::Unauthenticated, "authorization");
    let wrong = app.client.watch_revocations(with_key(request(), "not-a-configured-key-0000")).await;
    assert_status(wrong, Code::Unauthenticated, "authorization");
    app.client.watch_revocations(with_key(request(), ADMIN_KEY)).await.unwrap();
    app.watch(0, false).await.unwrap();

    let service_as_admin = app
        .admin
        .create_user(with_key(
            proto::CreateUserRequest {
                username: "mallory".into(),
                password: PASSWORD.into(),
                roles: vec![],
            },
            crate::helpers::SERVICE_KEY,
        ))
        .await;
    assert_status(service_as_admin, Code::PermissionDenied, "ADMIN_API_KEYS");
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable() {
    let mut app = spawn_app().await;
    let mut stream = app.watch(0, false).await.unwrap();

    let stopping = tokio::spawn(async move { app.stop().await });
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                // The caught-up heartbeat may come first.
                Ok(Some(event)) if event.kind() == Kind::Heartbeat => {}
                other => break other,
            }
        }
    })
    .await
    .expect("the stream ends promptly");

    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("after_cursor"), "{status:?}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_server_cleans_up_by_itself_every_cleanup_interval() {
    // Tokens and events last a second; cleanup runs five times a second.
    let mut app = TestConfig::short_lived()
        .configure(|config| {
            short_retention(config);
            config.cleanup.interval = Duration::from_millis(200);
        })
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    app.logout(&login.access_token).await.unwrap();
    let repository = app.repository().await;
    assert_eq!(repository.cursor_bounds().await.unwrap().pruned_through, 0);
    app.clock.advance(Duration::from_secs(2));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while repository.cursor_bounds().await.unwrap().pruned_through == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no cleanup ran");
        sleep(Duration::from_millis(100)).await;
    }
    assert!(repository.events_after(0, 10).await.unwrap().is_empty(), "the old event is gone");
}

/// A revocation stream with the per-session snapshot.
async fn watch_sessions(app: &mut TestApp) -> tonic::Streaming<proto::RevocationEvent> {
    let request = with_key(
        proto::WatchRevocationsRequest {
            after_cursor: 0,
            include_snapshot: true,
            session_snapshot: true,
        },
        crate::helpers::SERVICE_KEY,
    );
    app.client.watch_revocations(request).await.unwrap().into_inner()
}

/// The snapshot's entries, up to SNAPSHOT_END (returned too).
async fn snapshot_of(
    stream: &mut tonic::Streaming<proto::RevocationEvent>,
) -> (Vec<proto::RevocationEvent>, proto::RevocationEvent) {
    let mut entries = Vec::new();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        match event.kind() {
            Kind::SnapshotEnd => return (entries, event),
            Kind::Revoked => entries.push(event),
            Kind::Heartbeat | Kind::KeySet | Kind::Unspecified => {}
        }
    }
}

#[tokio::test]
async fn a_rotation_tells_consumers_the_sessions_new_state() {
    let mut app = spawn_app().await;
    let login = app.user_with_session("alice").await;
    let mut stream = app.watch(0, false).await.unwrap();
    app.clock.advance(Duration::from_millis(1500));

    let refreshed = app.refresh(&login.access_token).await.unwrap();

    let event = next_revocations(&mut stream, 1).await.remove(0);
    let (old, new) = (claims_of(&login.access_token), claims_of(&refreshed.access_token));
    assert_eq!(event.reason(), Reason::Rotated);
    assert_eq!(event.token_id, old["jti"].as_str().unwrap(), "the retired token, as before");
    assert_eq!(event.expires_at.as_ref().unwrap().seconds, old["exp"].as_i64().unwrap());
    assert_eq!(event.current_token_id, new["jti"].as_str().unwrap());
    assert_eq!(old["gen"], 0);
    assert_eq!(new["gen"], 1);
    assert_eq!(event.current_generation, 1);
    assert_eq!(event.session_expires_at.as_ref().unwrap().seconds, new["exp"].as_i64().unwrap());
    let grace_end = event.grace_ends_at.as_ref().unwrap();
    let grace_end_millis = grace_end.seconds * 1000 + i64::from(grace_end.nanos) / 1_000_000;
    assert_eq!(grace_end_millis, app.clock.now().as_millis() + 10_000, "JWT_ROTATION_GRACE after the rotation");
}

#[tokio::test]
async fn the_session_snapshot_has_one_entry_per_session_however_often_it_was_refreshed() {
    let mut app = spawn_app().await;
    let busy = app.user_with_session("alice").await;
    let mut token = busy.access_token.clone();
    for _ in 0..50 {
        app.clock.advance(Duration::from_secs(1));
        token = app.refresh(&token).await.unwrap().access_token;
    }
    let revoked = app.login("alice", PASSWORD).await.unwrap();
    app.logout(&revoked.access_token).await.unwrap();
    let untouched = app.login("alice", PASSWORD).await.unwrap();
    // 50 rotations and a logout, numbered (on PostgreSQL, just after commit).
    app.wait_for_cursor(51).await;

    let (legacy, _) = snapshot_of(&mut app.watch(0, true).await.unwrap()).await;
    let (entries, end) = snapshot_of(&mut watch_sessions(&mut app).await).await;

    assert_eq!(legacy.len(), 51, "the legacy snapshot: one entry per retired token");
    assert_eq!(entries.len(), 2, "one per session: {entries:?}");
    let rotated = entries.iter().find(|entry| entry.session_id == session_id(&busy)).unwrap();
    let current = claims_of(&token);
    assert_eq!(rotated.reason(), Reason::Rotated);
    assert_eq!(rotated.current_token_id, current["jti"].as_str().unwrap());
    assert_eq!(rotated.current_generation, 50);
    assert_eq!(rotated.cursor, end.cursor);
    let logged_out = entries.iter().find(|entry| entry.session_id == session_id(&revoked)).unwrap();
    assert_eq!(logged_out.reason(), Reason::Logout);
    assert!(logged_out.token_id.is_empty());
    assert!(entries.iter().all(|entry| entry.session_id != session_id(&untouched)));
}

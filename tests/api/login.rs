//! Login: sessions, lifetimes, and refusals that reveal nothing.

use secrecy::SecretString;
use std::num::{NonZeroU32, NonZeroUsize};
use token_authority::{
    authority::Pauses,
    clock::Clock,
    domain::{
        ClientContext, Session, UserId, Username,
        audit::{AuditKind, AuditQuery, AuditRecord},
        tokens::SigningAlgorithm,
    },
    proto::{self, VerifyReason},
    repository::{DatabaseConfig, LoginWrites, Repository},
};

use tonic::Code;

use crate::helpers::{
    Gate, PASSWORD, TestConfig, admin_request, assert_status, claims_of, header_of, login_on, reason, seconds,
    spawn_app,
};

#[tokio::test]
async fn login_issues_a_24_hour_token_for_a_new_session() {
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &["reader", "admin"]).await;

    let login = app.login("alice", PASSWORD).await.unwrap();

    assert_eq!(login.token_type, "Bearer");
    assert_eq!(login.user_id, user_id);
    let session = login.session.clone().unwrap();
    assert_eq!(session.user_id, user_id);
    assert!(session.current);
    assert!(!session.remember_me);
    assert_eq!(seconds(&login.expires_at) - seconds(&session.created_at), 24 * 3600);
    let claims = claims_of(&login.access_token);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], session.session_id.as_str());
    assert_eq!(claims["name"], "alice");
    assert_eq!(claims["roles"], serde_json::json!(["admin", "reader"]));
    assert_eq!(claims["iss"], "token-authority");
    assert_eq!(claims["aud"], "token-authority");
    assert_eq!(claims["exp"].as_i64().unwrap(), seconds(&login.expires_at));
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].is_string());
    let header = header_of(&login.access_token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "at+jwt", "explicitly typed (RFC 9068)");
    assert!(header["kid"].as_str().unwrap().starts_with("hs256-"));
}

#[tokio::test]
async fn remember_me_lasts_30_days() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;

    let login = app.login_remembered("alice").await;

    let session = login.session.unwrap();
    assert!(session.remember_me);
    assert_eq!(seconds(&login.expires_at) - seconds(&session.created_at), 30 * 24 * 3600);
}

#[tokio::test]
async fn lifetimes_follow_the_settings() {
    let mut app = TestConfig::default()
        .configure(|config| {
            config.tokens.lifetimes.standard = std::time::Duration::from_secs(90 * 60);
            config.tokens.lifetimes.refresh_window = std::time::Duration::from_secs(10 * 60);
        })
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    let session = login.session.unwrap();
    assert_eq!(seconds(&login.expires_at) - seconds(&session.created_at), 90 * 60);
}

#[tokio::test]
async fn usernames_are_case_insensitive_and_client_context_is_stored() {
    let mut app = spawn_app().await;
    app.create_user("Alice", PASSWORD, &[]).await;

    let login = app
        .login_with(proto::LoginRequest {
            username: "aLiCe".into(),
            password: PASSWORD.into(),
            remember_me: false,
            client: Some(proto::ClientContext {
                ip_address: "203.0.113.7".into(),
                user_agent: "Mozilla/5.0".into(),
                device_id: "phone-1".into(),
            }),
        })
        .await
        .unwrap();

    assert_eq!(claims_of(&login.access_token)["name"], "Alice");
    let sessions = app.list_sessions(&login.access_token).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].ip_address, "203.0.113.7");
    assert_eq!(sessions[0].user_agent, "Mozilla/5.0");
    assert_eq!(sessions[0].device_id, "phone-1");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;

    let wrong_password = app.login("alice", "not the password").await.unwrap_err();
    let unknown_user = app.login("mallory", PASSWORD).await.unwrap_err();

    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(unknown_user.code(), wrong_password.code());
    assert_eq!(unknown_user.message(), wrong_password.message());
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_and_looks_like_a_wrong_password() {
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &[]).await;
    let wrong_password = app.login("alice", "not the password").await.unwrap_err();
    app.admin
        .set_user_disabled(crate::helpers::admin_request(proto::SetUserDisabledRequest {
            user_id,
            disabled: true,
        }))
        .await
        .unwrap();

    let disabled = app.login("alice", PASSWORD).await.unwrap_err();

    assert_eq!(disabled.code(), Code::Unauthenticated);
    assert_eq!(disabled.message(), wrong_password.message());
}

#[tokio::test]
async fn long_passwords_work_whole() {
    let mut app = spawn_app().await;
    let long = "Ünïcödé pässwörd ".repeat(40); // 64+ characters, under 1024 bytes
    assert!(long.chars().count() > 64 && long.len() <= 1024);
    app.create_user("alice", &long, &[]).await;

    app.login("alice", &long).await.unwrap();
    let truncated: String = long.chars().take(72).collect();
    assert_status(app.login("alice", &truncated).await, Code::Unauthenticated, "invalid username or password");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_work_and_names_the_field() {
    let mut app = spawn_app().await;
    let cases = [
        (String::new(), PASSWORD.to_owned(), "username"),
        ("a".repeat(257), PASSWORD.to_owned(), "username"),
        ("alice".to_owned(), String::new(), "password"),
        ("alice".to_owned(), "p".repeat(1025), "password"),
    ];
    for (username, password, field) in cases {
        let result = app.login(&username, &password).await;
        assert_status(result, Code::InvalidArgument, field);
    }
    let bad_ip = app
        .login_with(proto::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            remember_me: false,
            client: Some(proto::ClientContext {
                ip_address: "not-an-ip".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_status(bad_ip, Code::InvalidArgument, "client.ip_address");
}

#[tokio::test]
async fn a_login_with_outdated_argon2_parameters_upgrades_the_hash() {
    let mut app = spawn_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    app.stop().await;
    let mut app = TestConfig::default()
        .configure(|config| config.argon2.memory_kib = 128)
        .spawn_sharing_database(&app)
        .await;

    app.login("alice", PASSWORD).await.unwrap();

    let repository = Repository::connect(&DatabaseConfig {
        url: app.database_url.clone(),
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .await
    .unwrap();
    let user = repository
        .find_user_by_username(&token_authority::domain::Username::parse("username", "alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    use secrecy::ExposeSecret;
    assert!(user.password_hash.expose_secret().starts_with("$argon2id$v=19$m=128,t=1,p=1$"));
    // And the password still works with the new hash.
    app.login("alice", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn sessions_and_tokens_survive_a_restart() {
    let mut app = TestConfig::default().stored_keys(SigningAlgorithm::EdDsa).spawn().await;
    let login = app.user_with_session("alice").await;

    let mut app = app.restart().await;

    let verified = app.verify(&login.access_token).await;
    assert_eq!(reason(&verified), VerifyReason::Ok, "the generated key is kept in the database");
    let sessions = app.list_sessions(&login.access_token).await.unwrap();
    assert_eq!(sessions.len(), 1);
    app.refresh(&login.access_token).await.unwrap();
}

#[tokio::test]
async fn password_guessing_is_throttled_per_username() {
    use tonic_types::StatusExt;
    let mut app = TestConfig::default()
        .configure(|config| config.security.throttle.per_user = NonZeroU32::new(3))
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;
    for _ in 0..3 {
        assert_status(app.login("alice", "a guess").await, Code::Unauthenticated, "invalid username or password");
    }

    let throttled = assert_status(app.login("ALICE", PASSWORD).await, Code::ResourceExhausted, "retry in");

    let retry = throttled.get_error_details().retry_info().cloned().expect("a RetryInfo detail");
    assert!(retry.retry_delay.is_some_and(|delay| delay > std::time::Duration::ZERO));
    app.create_user("bob", PASSWORD, &[]).await;
    app.login("bob", PASSWORD).await.expect("another username is not affected");
}

#[tokio::test]
async fn the_throttle_also_counts_password_changes() {
    // The login gives its attempt back (it succeeded); two wrong guesses remain.
    let mut app = TestConfig::default()
        .configure(|config| config.security.throttle.per_user = NonZeroU32::new(2))
        .spawn()
        .await;
    let login = app.user_with_session("alice").await;
    let change = |current: &str| proto::ChangePasswordRequest {
        access_token: login.access_token.clone(),
        current_password: current.into(),
        new_password: "a brand new passphrase".into(),
    };
    for _ in 0..2 {
        let wrong = app.client.change_password(change("a guess")).await;
        assert_status(wrong, Code::PermissionDenied, "current_password");
    }

    let throttled = app.client.change_password(change(PASSWORD)).await;

    assert_status(throttled, Code::ResourceExhausted, "too many");
}

#[tokio::test]
async fn a_full_password_queue_answers_resource_exhausted_at_once() {
    let mut app = TestConfig::default()
        .configure(|config| {
            config.argon2 = token_authority::domain::password_hash::Argon2Settings::default();
            config.password_hashing.threads = NonZeroUsize::MIN;
            config.password_hashing.queue = NonZeroUsize::MIN;
        })
        .spawn()
        .await;
    app.create_user("alice", PASSWORD, &[]).await;

    let attempts = (0..12).map(|_| crate::helpers::login_on(app.client.clone(), "alice"));
    let results = futures::future::join_all(attempts).await;

    let refused: Vec<_> = results.iter().filter_map(|result| result.as_ref().err()).collect();
    assert!(results.iter().any(Result::is_ok), "the queue still serves");
    assert!(!refused.is_empty(), "one thread and one queue slot cannot take twelve at once");
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("retry shortly"));
    }
}

/// A login held after its password check while an operator disables the
/// user: the login must fail, and no session may exist for the user.
#[tokio::test]
async fn a_login_racing_a_disable_opens_no_session() {
    let gate = Gate::new();
    let mut app = TestConfig::default()
        .pauses(Pauses {
            login_after_password_check: Some(gate.clone()),
        })
        .spawn()
        .await;
    let user_id = app.create_user("alice", PASSWORD, &[]).await;
    gate.arm();
    let login = tokio::spawn(login_on(app.client.clone(), "alice"));
    gate.reached().await;

    let disabled = app
        .admin
        .set_user_disabled(admin_request(proto::SetUserDisabledRequest {
            user_id: user_id.clone(),
            disabled: true,
        }))
        .await
        .unwrap()
        .into_inner();
    gate.release();
    let login = login.await.unwrap();

    assert_eq!(disabled.revoked_count, 0, "no session existed when the user was disabled");
    assert_status(login, Code::Unauthenticated, "invalid username or password");
    let sessions = app
        .repository()
        .await
        .list_live_sessions(UserId::parse("user_id", &user_id).unwrap(), app.clock.now())
        .await
        .unwrap();
    assert!(sessions.is_empty(), "the racing login left a session: {sessions:?}");
    let logins = app.audit_of(&[proto::AuditKind::Login, proto::AuditKind::LoginFailed]).await;
    let details: Vec<&str> = logins.iter().map(|event| event.detail.as_str()).collect();
    assert_eq!(details, ["user_changed"], "the trail records the refused login, and no login");
}

/// A login with the old password, held after its check while the password
/// changes: it must fail, and only the changer's session may live on.
#[tokio::test]
async fn a_login_racing_a_password_change_opens_no_session() {
    let gate = Gate::new();
    let mut app = TestConfig::default()
        .pauses(Pauses {
            login_after_password_check: Some(gate.clone()),
        })
        .spawn()
        .await;
    let first = app.user_with_session("alice").await;
    gate.arm();
    let login = tokio::spawn(login_on(app.client.clone(), "alice"));
    gate.reached().await;

    let changed = app
        .client
        .change_password(proto::ChangePasswordRequest {
            access_token: first.access_token.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new passphrase".into(),
        })
        .await
        .unwrap()
        .into_inner();
    gate.release();
    let login = login.await.unwrap();

    assert_status(login, Code::Unauthenticated, "invalid username or password");
    let user_id = UserId::parse("user_id", &first.user_id).unwrap();
    let sessions = app.repository().await.list_live_sessions(user_id, app.clock.now()).await.unwrap();
    let ids: Vec<String> = sessions.iter().map(|session| session.id.to_string()).collect();
    assert_eq!(ids, [first.session.unwrap().session_id], "only the changer's session lives");
    assert_eq!(reason(&app.verify(&changed.access_token).await), VerifyReason::Ok);
}

/// The repository's conditional write itself: a session opens, with the
/// writes that go with it, only for an enabled user whose stored hash is the
/// one that was verified; otherwise nothing at all is written.
#[tokio::test]
async fn a_session_opens_only_while_the_user_is_as_checked() {
    let mut app = spawn_app().await;
    let user_id = app.create_user("alice", PASSWORD, &[]).await;
    let repository = app.repository().await;
    let username = Username::parse("username", "alice").unwrap();
    let user = repository.find_user_by_username(&username).await.unwrap().unwrap();
    let lifetimes = app.config().tokens.lifetimes;
    let client = ClientContext::parse("203.0.113.7", "", "phone-1").unwrap();
    let session = || Session::open(user.id, false, client.clone(), &lifetimes, app.clock.now());
    let audit = AuditRecord::new(AuditKind::Login, app.clock.now()).from_client(&client);
    let writes = || LoginWrites {
        audit: &audit,
        device_id: Some("phone-1"),
        network: Some("203.0.113.0/24"),
        give_back: &[],
        sessions_from: None,
    };
    let logins = || async {
        let query = AuditQuery {
            user_id: Some(user.id),
            kinds: vec![AuditKind::Login],
            limit: 100,
            ..Default::default()
        };
        repository.list_audit(&query).await.unwrap().len()
    };

    let stale = SecretString::from("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$stale");
    assert!(repository.open_session(&session(), &stale, writes()).await.unwrap().is_none(), "a changed password");
    assert_eq!(logins().await, 0, "a refused open writes no audit record");
    assert!(!repository.is_known_network(user.id, "203.0.113.0/24").await.unwrap(), "nor a known network");
    let opened = repository.open_session(&session(), &user.password_hash, writes()).await.unwrap();
    assert!(opened.is_some(), "the user as checked");
    assert_eq!(logins().await, 1);
    assert!(repository.is_known_network(user.id, "203.0.113.0/24").await.unwrap());
    repository
        .set_user_disabled(user.id, true, app.clock.now(), &AuditRecord::new(AuditKind::UserDisabled, app.clock.now()))
        .await
        .unwrap();
    let refused = repository.open_session(&session(), &user.password_hash, writes()).await.unwrap();
    assert!(refused.is_none(), "a disabled user");
    assert_eq!(logins().await, 1, "a refused open writes no audit record");

    let live = repository
        .list_live_sessions(UserId::parse("user_id", &user_id).unwrap(), app.clock.now())
        .await
        .unwrap();
    assert!(live.is_empty(), "the one session opened was revoked by the disable: {live:?}");
}

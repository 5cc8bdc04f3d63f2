//! Signing keys: what is signed with which algorithm, publication (GetJwks,
//! the HTTP listener, the revocation stream), the lifecycle on schedule as
//! the clock moves, the upgrade from HS256 without logging anybody out,
//! keys sealed at rest, racing rotations, and the emergency removal.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use futures::future::join_all;
use tempfile::TempDir;
use token_authority::{
    authority::{KeyStore, KeyStoreError, RemovedKey},
    clock::{Clock, ManualClock},
    domain::{
        OutboxEvent,
        tokens::{KeyEncryptionKey, KeyState, Sealing, SigningAlgorithm, SigningKey},
    },
    proto::{self, RevocationEventKind, VerifyReason},
    repository::{DatabaseConfig, Repository},
    startup::Application,
};
use tonic::Code;

use crate::helpers::{
    JWT_SECRET, PASSWORD, TestApp, TestConfig, assert_status, claims_of, eventually, forge_token, fresh_database_url,
    header_of, http_get, http_get_with, kids, reason,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().expect("a kid").to_owned()
}

fn rotating() -> TestConfig {
    TestConfig::rotating_keys()
}

/// The kids GetJwks publishes, on a client of its own (to poll with).
pub(crate) async fn published(app: &TestApp) -> Vec<String> {
    let mut client = app.client.clone();
    let response = client.get_jwks(proto::GetJwksRequest {}).await.expect("GetJwks answers").into_inner();
    kids(&serde_json::from_str(&response.jwks).expect("JSON"))
}

/// The next KEY_SET on a stream (revocations and heartbeats skipped).
async fn next_key_set(stream: &mut tonic::Streaming<proto::RevocationEvent>) -> proto::RevocationEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = stream.message().await.expect("healthy").expect("open");
            if event.kind() == RevocationEventKind::KeySet {
                return event;
            }
        }
    })
    .await
    .expect("a key set arrives")
}

pub(crate) fn jwks_kids(event: &proto::RevocationEvent) -> Vec<String> {
    kids(&serde_json::from_str(&event.jwks).expect("a JSON JWK set"))
}

#[tokio::test]
async fn a_fresh_database_signs_with_eddsa_and_publishes_the_key() {
    let mut app = TestConfig::default().stored_keys(SigningAlgorithm::EdDsa).spawn().await;

    let login = app.user_with_session("alice").await;

    let header = header_of(&login.access_token);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some("at+jwt")));
    let kid = kid_of(&login.access_token);
    assert_eq!(kid.len(), 22, "a random 128-bit id, nothing derived from the key");
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok);
    let jwks = app.jwks().await;
    assert_eq!(kids(&jwks), [kid.as_str()]);
    let jwk = &jwks["keys"][0];
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert_eq!((jwk["alg"].as_str(), jwk["use"].as_str()), (Some("EdDSA"), Some("sig")));
    assert!(jwk.get("d").is_none(), "never the private key");

    let http = app.http_address.expect("the HTTP listener is on");
    let (status, headers, body) = http_get(http, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), jwks, "the same set as GetJwks");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=300", "well under KEY_PUBLISH_AHEAD (1h)");
    let (status, _, body) = http_get(http, "/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    let discovery: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(discovery["issuer"], "token-authority");
    assert_eq!(discovery["jwks_uri"], format!("http://{http}/.well-known/jwks.json"));
    assert_eq!(discovery["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));
    let (status, _, _) = http_get(http, "/.well-known/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn discovery_names_the_public_url_when_one_is_set() {
    let app = TestConfig::default()
        .stored_keys(SigningAlgorithm::EdDsa)
        .configure(|config| config.http.public_url = Some("https://auth.example.com".into()))
        .spawn()
        .await;

    let (_, _, body) = http_get(app.http_address.unwrap(), "/.well-known/openid-configuration").await;

    let discovery: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(discovery["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
}

/// Without HTTP_PUBLIC_URL the document names the Host it was asked under.
/// The attack: ask under a host of one's own through a shared cache (a CDN
/// or proxy in front of the listener); were the answer shared-cacheable,
/// the next verifier asking there would fetch its keys from that host.
#[tokio::test]
async fn a_discovery_document_named_after_the_host_is_never_shared_between_hosts() {
    let app = TestConfig::default().stored_keys(SigningAlgorithm::EdDsa).spawn().await;
    let http = app.http_address.unwrap();

    let (status, headers, body) =
        http_get_with(http, "/.well-known/openid-configuration", &[("Host", "attacker.example")]).await;

    assert_eq!(status, 200);
    let discovery: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(discovery["jwks_uri"], "http://attacker.example/.well-known/jwks.json");
    assert_eq!(headers["cache-control"], "private, max-age=300", "no shared cache may keep it");
    assert_eq!(headers["vary"], "host");

    let public = TestConfig::default()
        .stored_keys(SigningAlgorithm::EdDsa)
        .configure(|config| config.http.public_url = Some("https://auth.example.com".into()))
        .spawn()
        .await;
    let (_, headers, _) = http_get_with(
        public.http_address.unwrap(),
        "/.well-known/openid-configuration",
        &[("Host", "attacker.example")],
    )
    .await;
    assert_eq!(headers["cache-control"], "public, max-age=300", "the same for every host: shareable");
    assert!(!headers.contains_key("vary"));
}

#[tokio::test]
async fn every_algorithm_signs_and_verifies_and_only_public_keys_are_published() {
    for (algorithm, kty) in [
        (SigningAlgorithm::Es256, Some("EC")),
        (SigningAlgorithm::Rs256, Some("RSA")),
        (SigningAlgorithm::Hs256, None),
    ] {
        let mut app = TestConfig::default().stored_keys(algorithm).spawn().await;

        let login = app.user_with_session("alice").await;

        assert_eq!(header_of(&login.access_token)["alg"], algorithm.as_str());
        assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok, "{algorithm}");
        let refreshed = app.refresh(&login.access_token).await.unwrap();
        assert_eq!(reason(&app.verify(&refreshed.access_token).await), VerifyReason::Ok, "{algorithm}");
        let jwks = app.jwks().await;
        match kty {
            Some(kty) => assert_eq!(jwks["keys"][0]["kty"], kty, "{algorithm}"),
            None => assert_eq!(kids(&jwks), Vec::<String>::new(), "an HS256 secret is never published"),
        }
    }
}

#[tokio::test]
async fn keys_move_through_their_states_on_schedule() {
    let mut app = rotating().spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let first = kid_of(&app.login_remembered("alice").await.access_token);
    let repository = app.repository().await;
    let state = async |kid: &str, app: &TestApp| {
        let keys = repository.load_keys().await.unwrap();
        let key = keys.iter().find(|key| key.info.kid == kid)?;
        Some(key.info.schedule.state(app.clock.now(), 2 * HOUR))
    };
    assert_eq!(state(&first, &app).await, Some(KeyState::Active));

    // An hour before the first key has signed for ten days, its successor
    // is published, and does not sign yet.
    app.clock.advance(10 * DAY - HOUR);
    eventually("the next key is published", || async { published(&app).await.len() == 2 }).await;
    let next = published(&app).await.into_iter().find(|kid| *kid != first).unwrap();
    assert_eq!(state(&next, &app).await, Some(KeyState::Next));
    let before = app.login_remembered("alice").await;
    assert_eq!(kid_of(&before.access_token), first, "the next key does not sign before its time");

    // At its time it signs, on the clock alone; the first key retires and
    // still verifies what it signed.
    app.clock.advance(HOUR);
    let after = app.login_remembered("alice").await;
    assert_eq!(kid_of(&after.access_token), next);
    assert_eq!(state(&first, &app).await, Some(KeyState::Retired));
    assert_eq!(state(&next, &app).await, Some(KeyState::Active));
    assert_eq!(reason(&app.verify(&before.access_token).await), VerifyReason::Ok);
    assert_eq!(reason(&app.verify(&after.access_token).await), VerifyReason::Ok);

    // Once every token it signed has expired, it is deleted.
    app.clock.advance(2 * HOUR);
    eventually("the retired key is deleted", || async { published(&app).await == [next.clone()] }).await;
    // Published sets leave out an expired key at once; its row goes when
    // a replica's maintenance next runs.
    eventually("the retired key is deleted from the database", || async { state(&first, &app).await.is_none() }).await;
    let (_, _, body) = http_get(app.http_address.unwrap(), "/.well-known/jwks.json").await;
    assert_eq!(kids(&serde_json::from_str(&body).unwrap()), [next.as_str()]);
}

#[tokio::test]
async fn a_subscriber_hears_of_each_next_key_before_any_token_is_signed_with_it() {
    let mut app = rotating().spawn().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let first = kid_of(&app.login("alice", PASSWORD).await.unwrap().access_token);
    let (mut stream, opening) = app.watch_with_keys(0, false).await.unwrap();
    assert_eq!(jwks_kids(&opening), [first.as_str()], "the stream starts with the current key set");
    assert_eq!(opening.cursor, 0, "at the cursor the stream starts from");
    let replayed = next_key_set(&mut stream).await;
    assert_eq!(jwks_kids(&replayed), [first.as_str()], "the first key's own event, replayed from the outbox");

    app.clock.advance(10 * DAY - HOUR);
    let announced = next_key_set(&mut stream).await;

    let announced_kids = jwks_kids(&announced);
    assert_eq!(announced_kids.len(), 2);
    let next = announced_kids.iter().find(|kid| **kid != first).unwrap().clone();
    assert_eq!(kid_of(&app.login("alice", PASSWORD).await.unwrap().access_token), first, "heard of before it signs");
    app.clock.advance(HOUR);
    assert_eq!(kid_of(&app.login("alice", PASSWORD).await.unwrap().access_token), next);

    // A subscriber resuming from a cursor, and one taking a snapshot, both
    // start with the whole current set.
    let (_, resumed) = app.watch_with_keys(announced.cursor, false).await.unwrap();
    assert_eq!((resumed.cursor, jwks_kids(&resumed).len()), (announced.cursor, 2));
    let (mut snapshot, opening) = app.watch_with_keys(0, true).await.unwrap();
    assert_eq!(jwks_kids(&opening).len(), 2);
    let end = snapshot.message().await.unwrap().unwrap();
    assert_eq!(end.kind(), RevocationEventKind::SnapshotEnd, "key events are not part of the snapshot");
    assert_eq!(end.cursor, opening.cursor);
}

/// What an older version left: its schema, and the HS256 key it generated
/// (no JWT_SECRET) in `signing_keys`.
async fn database_of_an_older_version(directory: &TempDir, secret: &[u8]) -> (String, String) {
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{
        ConnectionTrait,
        sea_query::{Alias, Query},
    };
    let url = fresh_database_url(directory.path()).await;
    // Created as the server would create it (SQLite opens only existing files otherwise).
    let connect_to = if url.starts_with("sqlite:") {
        format!("{url}?mode=rwc")
    } else {
        url.clone()
    };
    let database = sea_orm::Database::connect(&connect_to).await.unwrap();
    Migrator::up(&database, Some(4)).await.unwrap();
    let key = SigningKey::hs256(secret.to_vec()).unwrap();
    let insert = Query::insert()
        .into_table(Alias::new("signing_keys"))
        .columns(["kid", "algorithm", "key_material", "created_at"].map(Alias::new))
        .values_panic([
            key.kid().into(),
            "HS256".into(),
            secret.to_vec().into(),
            1_700_000_000_000i64.into(),
        ])
        .to_owned();
    database.execute(&insert).await.unwrap();
    database.close().await.unwrap();
    (url, key.kid().to_owned())
}

/// The same claims re-signed as an older version signed them: typed `JWT`.
fn as_issued_before_the_upgrade(token: &str, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut header = header_of(token);
    header["typ"] = "JWT".into();
    let message = format!(
        "{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()),
        token.split('.').nth(1).unwrap()
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn an_upgrade_from_a_stored_hs256_key_moves_to_eddsa_without_logging_anybody_out() {
    let directory = TempDir::new().unwrap();
    let secret = [3u8; 32];
    let (url, legacy_kid) = database_of_an_older_version(&directory, &secret).await;

    let mut app = rotating().spawn_on(url).await;

    // The old key keeps signing while the EdDSA key is published ahead.
    let login = app.user_with_session("alice").await;
    assert_eq!(kid_of(&login.access_token), legacy_kid);
    assert_eq!(header_of(&login.access_token)["typ"], "at+jwt");
    let published_kids = published(&app).await;
    assert_eq!(published_kids.len(), 1, "the EdDSA key, and never the HS256 secret");
    assert!(!published_kids.contains(&legacy_kid));
    // A token as the older version typed it verifies with the old key.
    let legacy = as_issued_before_the_upgrade(&login.access_token, &secret);
    assert_eq!(reason(&app.verify(&legacy).await), VerifyReason::Ok);

    app.clock.advance(HOUR);
    let upgraded = app.login("alice", PASSWORD).await.unwrap();

    assert_eq!(header_of(&upgraded.access_token)["alg"], "EdDSA");
    assert_eq!(reason(&app.verify(&legacy).await), VerifyReason::Ok, "old tokens verify until they expire");
    app.refresh(&login.access_token).await.expect("and refresh onto the new key");
}

#[tokio::test]
async fn a_jwt_secret_deployment_moves_to_eddsa_without_logging_anybody_out() {
    let mut app = rotating().configure(|config| config.tokens.signing_secret = Some(JWT_SECRET.into())).spawn().await;

    // JWT_SECRET signs until the first stored key has been published an hour.
    let login = app.user_with_session("alice").await;
    assert_eq!(header_of(&login.access_token)["alg"], "HS256");
    assert_eq!(published(&app).await.len(), 1);
    let claims = claims_of(&login.access_token);
    let mut header = header_of(&login.access_token);
    header["typ"] = "JWT".into();
    let from_before = forge_token(header.clone(), claims.clone());
    assert_eq!(reason(&app.verify(&from_before).await), VerifyReason::Ok, "the type older versions wrote");
    header["typ"] = "id+jwt".into();
    let another_kind = forge_token(header, claims);
    assert_eq!(reason(&app.verify(&another_kind).await), VerifyReason::WrongType);

    app.clock.advance(HOUR);
    let moved = app.login("alice", PASSWORD).await.unwrap();

    assert_eq!(header_of(&moved.access_token)["alg"], "EdDSA");
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok);
    assert_eq!(reason(&app.verify(&from_before).await), VerifyReason::Ok);
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_only_their_kek_opens_them() {
    let kek = |byte: u8| KeyEncryptionKey::from_base64(&STANDARD.encode([byte; 32])).unwrap();
    let mut app = TestConfig::default().stored_keys(SigningAlgorithm::EdDsa).spawn().await;
    let login = app.user_with_session("alice").await;
    let repository = app.repository().await;
    assert_eq!(repository.load_keys().await.unwrap()[0].private_key.sealing, Sealing::None, "no KEK yet");
    app.stop().await;

    // With a KEK, the stored key is sealed at start, and still signs.
    let sealed_config = TestConfig::default()
        .stored_keys(SigningAlgorithm::EdDsa)
        .configure(|config| config.keys.encryption_key = Some(kek(1)));
    let mut app = sealed_config.clone().spawn_sharing_database(&app).await;
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok);
    let stored = repository.load_keys().await.unwrap();
    assert_eq!(stored[0].private_key.sealing, Sealing::Aes256Gcm);
    app.stop().await;

    for (kek, complaint) in [(Some(kek(2)), "does not open"), (None, "no KEY_ENCRYPTION_KEY")] {
        let mut config = sealed_config.config.clone();
        config.keys.encryption_key = kek;
        config.database.url = app.database_url.clone();
        let error = Application::build(config, app.clock.shared()).await.err().expect("the start fails");
        let message = format!("{error:#}");
        assert!(message.contains(complaint) && message.contains(&stored[0].info.kid), "{message}");
    }
}

async fn connect(url: &str) -> Repository {
    Repository::connect(&DatabaseConfig {
        url: url.to_owned(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap()
}

/// Replicas' key stores on one database and clock, each with a pool of its
/// own.
async fn replica_stores(url: &str, clock: &ManualClock, count: usize) -> Vec<KeyStore> {
    let config = rotating().config;
    let mut stores = Vec::new();
    for _ in 0..count {
        stores.push(KeyStore::new(connect(url).await, &config.keys, &config.tokens, clock.shared()));
    }
    stores
}

/// Every event in the outbox, numbered first (PostgreSQL numbers them after
/// commit).
async fn outbox(repository: &Repository) -> Vec<OutboxEvent> {
    repository.sequence_events(500).await.unwrap();
    repository.events_after(0, 500).await.unwrap()
}

fn key_set_events(events: &[OutboxEvent]) -> usize {
    events.iter().filter(|event| matches!(event, OutboxEvent::KeySetChanged { .. })).count()
}

/// Many replicas find the same rotation due at the same moment: exactly one
/// key is published, with exactly one outbox event. Meant for PostgreSQL,
/// where the writers truly race (SQLite serialises them).
#[tokio::test]
async fn racing_replicas_publish_exactly_one_key() {
    let directory = TempDir::new().unwrap();
    let url = fresh_database_url(directory.path()).await;
    let repository = connect(&url).await;
    repository.migrate().await.unwrap();
    let clock = ManualClock::starting_now();
    let stores = replica_stores(&url, &clock, 12).await;

    let first = join_all(stores.iter().map(|store| store.maintain())).await;
    assert_eq!(first.iter().filter(|result| matches!(result, Ok(true))).count(), 1, "one first key: {first:?}");
    clock.advance(10 * DAY - HOUR);
    let due = join_all(stores.iter().map(|store| store.maintain())).await;
    assert!(due.iter().all(Result::is_ok), "{due:?}");

    let keys = repository.load_keys().await.unwrap();
    assert_eq!(keys.iter().map(|key| key.info.generation).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(key_set_events(&outbox(&repository).await), 2);

    // An operator's rotation, run by many at once: one wins, the others are
    // told what happened.
    clock.advance(HOUR);
    let requested = join_all(stores.iter().map(|store| store.rotate_now())).await;
    assert_eq!(requested.iter().filter(|result| result.is_ok()).count(), 1);
    for refused in requested.iter().filter_map(|result| result.as_ref().err()) {
        assert!(matches!(refused, KeyStoreError::AlreadyRotating { .. } | KeyStoreError::Raced), "{refused}");
    }
    assert_eq!(repository.load_keys().await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_emergency_removal_stops_the_keys_tokens_at_once() {
    let config = rotating();
    let mut app = config.clone().spawn().await;
    let login = app.user_with_session("alice").await;
    let removed = kid_of(&login.access_token);
    assert_eq!(reason(&app.verify(&login.access_token).await), VerifyReason::Ok);
    let (mut stream, _) = app.watch_with_keys(0, false).await.unwrap();
    next_key_set(&mut stream).await; // The first key's own event.

    // As `token-authority keys remove` does it, from another process.
    let repository = app.repository().await;
    let store = KeyStore::new(repository.clone(), &config.config.keys, &config.config.tokens, app.clock.shared());
    let outcome = store.remove(&removed).await.unwrap();
    repository.sequence_events(500).await.unwrap();
    repository.announce_revocations("test").await.unwrap();

    let RemovedKey::NewKey { kid: replacement } = outcome else {
        panic!("{outcome:?}")
    };
    let told = next_key_set(&mut stream).await;
    assert_eq!(jwks_kids(&told), [replacement.as_str()], "subscribers drop the key");
    eventually("the server refuses the removed key's tokens", || {
        let mut client = app.client.clone();
        let token = login.access_token.clone();
        async move {
            let verdict = client
                .verify(proto::VerifyRequest {
                    access_token: token,
                    client: None,
                })
                .await
                .unwrap()
                .into_inner();
            verdict.reason() == VerifyReason::BadSignature
        }
    })
    .await;
    assert_status(app.refresh(&login.access_token).await, Code::Unauthenticated, "signature");
    assert_status(app.logout(&login.access_token).await, Code::Unauthenticated, "signature");
    let again = app.login("alice", PASSWORD).await.unwrap();
    assert_eq!(kid_of(&again.access_token), replacement, "the replacement signs at once");
    assert_eq!(reason(&app.verify(&again.access_token).await), VerifyReason::Ok);
}

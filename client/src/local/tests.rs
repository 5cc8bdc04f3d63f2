//! The local verifier against tokens signed here, fed by hand: every check
//! of the key rules and the reason it gives.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    hmac,
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const SESSION: &str = "0196f2a4-0000-7000-8000-000000000001";
const TOKEN: &str = "0196f2a4-0000-7000-8000-0000000000aa";
const USER: &str = "0196f2a4-0000-7000-8000-0000000000ff";
const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for tests";

/// A clock the test moves (unix seconds).
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst).unsigned_abs())
    }
}

struct Fixture {
    verifier: LocalVerifier,
    key: Ed25519KeyPair,
    clock: TestClock,
}

fn jwks(kid: &str, key: &Ed25519KeyPair) -> String {
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref())}]})
    .to_string()
}

fn key_set(jwks: String) -> proto::RevocationEvent {
    proto::RevocationEvent {
        kind: proto::RevocationEventKind::KeySet.into(),
        jwks,
        ..Default::default()
    }
}

fn fixture(configure: impl FnOnce(LocalVerifierBuilder) -> LocalVerifierBuilder) -> Fixture {
    let client = Client::builder("http://127.0.0.1:1").connect_lazy().unwrap();
    let clock = TestClock(Arc::new(AtomicI64::new(NOW)));
    let builder = LocalVerifier::builder(client, "issuer", "audience").leeway(Duration::ZERO).clock(clock.clone());
    let verifier = configure(builder).detached();
    let key =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
    verifier.apply(&key_set(jwks("k1", &key)));
    Fixture { verifier, key, clock }
}

/// The revocation of `session` (whose tokens expire in ten minutes) at `cursor`.
fn revoked(cursor: u64, session: &str) -> proto::RevocationEvent {
    proto::RevocationEvent {
        cursor,
        kind: proto::RevocationEventKind::Revoked.into(),
        session_id: session.into(),
        session_expires_at: Some(prost_types::Timestamp {
            seconds: NOW + 600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn claims() -> serde_json::Value {
    json!({"iss": "issuer", "aud": "audience", "sub": USER, "sid": SESSION, "jti": TOKEN,
        "iat": NOW, "nbf": NOW, "exp": NOW + 600, "name": "alice", "roles": ["reader"], "gen": 0})
}

fn header() -> serde_json::Value {
    json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"})
}

fn sign(key: &Ed25519KeyPair, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).as_ref());
    format!("{input}.{signature}")
}

fn with(mut value: serde_json::Value, field: &str, new: serde_json::Value) -> serde_json::Value {
    value[field] = new;
    value
}

fn refusal(fixture: &Fixture, token: &str) -> Option<Reason> {
    match fixture.verifier.verify_local(token) {
        Ok(_) => None,
        Err(LocalRefusal::Invalid(reason)) => Some(reason),
        Err(LocalRefusal::Stale) => panic!("a detached verifier is never stale"),
    }
}

#[tokio::test]
async fn a_good_token_passes_with_its_claims_and_is_remembered() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    let claims = fixture.verifier.verify_local(&token).unwrap();
    assert_eq!(claims.user_id, USER);
    assert_eq!(claims.session_id, SESSION);
    assert_eq!(claims.username, "alice");
    assert!(claims.has_role("reader"));
    assert_eq!(claims.expires_at, UNIX_EPOCH + Duration::from_secs((NOW + 600).unsigned_abs()));
    assert_eq!(fixture.verifier.remembered_tokens(), 1);
    let again = fixture.verifier.verify_local(&token).unwrap();
    assert!(Arc::ptr_eq(&claims, &again), "the second check is the remembered one");
}

#[tokio::test]
async fn every_claim_and_header_rule_gives_verifys_reason() {
    let fixture = fixture(|builder| builder);
    let key = &fixture.key;
    let cases = [
        (sign(key, &with(header(), "kid", json!("unknown")), &claims()), Reason::BadSignature),
        (sign(key, &with(header(), "alg", json!("ES256")), &claims()), Reason::BadSignature),
        (sign(key, &with(header(), "alg", json!("none")), &claims()), Reason::BadSignature),
        (sign(key, &with(header(), "typ", json!("JWT")), &claims()), Reason::WrongType),
        (sign(key, &with(header(), "crit", json!(null)), &claims()), Reason::Malformed),
        (sign(key, &header(), &with(claims(), "exp", json!(NOW - 1))), Reason::Expired),
        (sign(key, &header(), &with(claims(), "nbf", json!(NOW + 1))), Reason::NotYetValid),
        (sign(key, &header(), &with(claims(), "iss", json!("other"))), Reason::WrongIssuer),
        (sign(key, &header(), &with(claims(), "aud", json!("other"))), Reason::WrongAudience),
        (sign(key, &header(), &with(claims(), "aud", json!(["audience"]))), Reason::Malformed),
        (sign(key, &header(), &with(claims(), "sid", json!("not-a-uuid"))), Reason::Malformed),
        (sign(key, &header(), &with(claims(), "exp", json!("soon"))), Reason::Malformed),
        ("not a token".to_owned(), Reason::Malformed),
    ];
    for (token, reason) in cases {
        assert_eq!(refusal(&fixture, &token), Some(reason), "{reason}");
    }
    let mut other = header();
    other["typ"] = json!("application/AT+JWT");
    assert_eq!(refusal(&fixture, &sign(key, &other, &claims())), None, "the media type, in any case");
}

#[tokio::test]
async fn an_altered_payload_does_not_borrow_a_remembered_signature() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    let (_, signature) = token.rsplit_once('.').unwrap();
    let forged_claims = with(claims(), "roles", json!(["admin"]));
    let forged = format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header().to_string()),
        URL_SAFE_NO_PAD.encode(forged_claims.to_string())
    );
    assert_eq!(refusal(&fixture, &forged), Some(Reason::BadSignature));
    // The same tail (the lookup's hash), a shorter or longer token.
    assert_ne!(refusal(&fixture, &token[1..]), None, "a shorter token");
    assert_ne!(refusal(&fixture, &format!("e{token}")), None, "a longer token");
    assert_eq!(refusal(&fixture, &token), None, "the remembered token itself");
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_still_meets_revocations() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    fixture.verifier.apply(&revoked(1, SESSION));
    assert_eq!(refusal(&fixture, &token), Some(Reason::Revoked));
    assert_eq!(fixture.verifier.cursor(), 1);

    let fixture = self::fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    fixture.clock.0.store(NOW + 601, Ordering::SeqCst);
    assert_eq!(refusal(&fixture, &token), Some(Reason::Expired));
}

#[tokio::test]
async fn a_revocation_and_a_key_set_mark_a_change_heartbeats_do_not() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    let mut changes = fixture.verifier.changes();
    fixture.verifier.apply(&proto::RevocationEvent {
        kind: proto::RevocationEventKind::Heartbeat.into(),
        ..Default::default()
    });
    assert!(!changes.has_changed().unwrap(), "a heartbeat changes no answer");

    fixture.verifier.apply(&revoked(7, SESSION));
    tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.unwrap().unwrap();
    assert_eq!(*changes.borrow_and_update(), 7);
    assert_eq!(refusal(&fixture, &token), Some(Reason::Revoked), "refused once the change is marked");

    fixture.verifier.apply(&key_set(jwks("k1", &fixture.key)));
    assert!(changes.has_changed().unwrap(), "a new key set may drop a key");
    assert_eq!(*changes.borrow_and_update(), 7, "the cursor stays");
}

#[tokio::test]
async fn a_key_dropped_from_the_set_verifies_nothing_more_even_remembered() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    let other =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
    fixture.verifier.apply(&key_set(jwks("k2", &other)));
    assert_eq!(refusal(&fixture, &token), Some(Reason::BadSignature));
}

#[tokio::test]
async fn a_key_added_keeps_what_was_remembered() {
    let fixture = fixture(|builder| builder);
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    let other =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
    let mut both: serde_json::Value = serde_json::from_str(&jwks("k1", &fixture.key)).unwrap();
    let second: serde_json::Value = serde_json::from_str(&jwks("k2", &other)).unwrap();
    both["keys"].as_array_mut().unwrap().push(second["keys"][0].clone());
    fixture.verifier.apply(&key_set(both.to_string()));
    assert_eq!(fixture.verifier.remembered_tokens(), 1);
    assert_eq!(refusal(&fixture, &token), None);
    assert_eq!(refusal(&fixture, &sign(&other, &with(header(), "kid", json!("k2")), &claims())), None);
}

fn hs256(claims: &serde_json::Value, typ: &str) -> String {
    let header = json!({"alg": "HS256", "kid": "configured", "typ": typ});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test]
async fn hs256_only_when_handed_the_secret() {
    let without = fixture(|builder| builder);
    assert_eq!(refusal(&without, &hs256(&claims(), "at+jwt")), Some(Reason::BadSignature));
    let with_secret = fixture(|builder| builder.hs256_secret(SECRET.to_vec()));
    assert_eq!(refusal(&with_secret, &hs256(&claims(), "at+jwt")), None);
    assert_eq!(refusal(&with_secret, &hs256(&claims(), "JWT")), None, "tokens from before explicit typing");
    let ed_jwt = sign(&with_secret.key, &with(header(), "typ", json!("JWT")), &claims());
    assert_eq!(refusal(&with_secret, &ed_jwt), Some(Reason::WrongType), "JWT only ever for the secret");
}

#[tokio::test]
async fn expired_tokens_and_entries_are_forgotten_after_the_leeway() {
    let fixture = fixture(|builder| builder.leeway(Duration::from_secs(5)));
    let token = sign(&fixture.key, &header(), &claims());
    assert_eq!(refusal(&fixture, &token), None);
    fixture.verifier.apply(&revoked(0, "0196f2a4-0000-7000-8000-000000000002"));
    fixture.clock.0.store(NOW + 605, Ordering::SeqCst);
    fixture.verifier.forget_expired();
    assert_eq!((fixture.verifier.remembered_tokens(), fixture.verifier.session_entries()), (1, 1));
    assert_eq!(refusal(&fixture, &token), None, "within the leeway");
    fixture.clock.0.store(NOW + 606, Ordering::SeqCst);
    fixture.verifier.forget_expired();
    assert_eq!((fixture.verifier.remembered_tokens(), fixture.verifier.session_entries()), (0, 0));
}

#[tokio::test]
async fn the_memory_of_tokens_is_bounded() {
    let fixture = fixture(|builder| builder.seen_capacity(2));
    for n in 0..5u128 {
        let jti = uuid::Uuid::from_u128(n + 1).to_string();
        let token = sign(&fixture.key, &header(), &with(claims(), "jti", json!(jti)));
        assert_eq!(refusal(&fixture, &token), None, "past the capacity, still checked in full");
    }
    assert_eq!(fixture.verifier.remembered_tokens(), 2);
}

/// After a reconnect, the stream first replays what was missed: the
/// verifier must not count itself current (nor synced) before the
/// heartbeat that ends the replay, or it would accept, within
/// `max_staleness`, a token revoked while it was away.
#[tokio::test]
async fn freshness_comes_with_the_end_of_the_catch_up_not_with_the_first_message() {
    let client = Client::builder("http://127.0.0.1:1").connect_lazy().unwrap();
    let clock = TestClock(Arc::new(AtomicI64::new(NOW)));
    let builder = LocalVerifier::builder(client, "issuer", "audience").leeway(Duration::ZERO).clock(clock);
    let verifier = LocalVerifier::with_parts(builder.parts(), watch::channel(false).0);
    let key =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
    let token = sign(&key, &header(), &claims());
    let event = |kind: proto::RevocationEventKind, cursor| proto::RevocationEvent {
        cursor,
        kind: kind.into(),
        ..Default::default()
    };
    let stale = |verifier: &LocalVerifier| matches!(verifier.verify_local(&token), Err(LocalRefusal::Stale));
    let synced = |verifier: &LocalVerifier| *verifier.shared.synced.subscribe().borrow();
    let shared = &verifier.shared;

    // A first connection: the snapshot, its end, then what came meanwhile.
    let mut phase = apply(shared, &key_set(jwks("k1", &key)), Phase::Snapshot);
    phase = apply(shared, &event(proto::RevocationEventKind::Heartbeat, 3), phase);
    assert_eq!(phase, Phase::Snapshot, "no heartbeat ends a snapshot");
    phase = apply(shared, &event(proto::RevocationEventKind::SnapshotEnd, 3), phase);
    assert_eq!((phase, verifier.cursor()), (Phase::CatchingUp, 3));
    assert!(stale(&verifier) && !synced(&verifier), "whole as of cursor 3, but not current yet");
    phase = apply(shared, &event(proto::RevocationEventKind::Heartbeat, 3), phase);
    assert_eq!(phase, Phase::Live);
    assert!(!stale(&verifier) && synced(&verifier));
    assert!(verifier.verify_local(&token).is_ok());

    // Away long enough to go stale, then resumed from cursor 3.
    verifier.shared.last_heard.store(NEVER, Ordering::Release);
    let mut phase = apply(shared, &key_set(jwks("k1", &key)), Phase::CatchingUp);
    phase = apply(shared, &event(proto::RevocationEventKind::Revoked, 4), phase);
    assert_eq!(verifier.cursor(), 4, "the replay moves the cursor, so a reconnect resumes after it");
    assert!(stale(&verifier), "still replaying: not current");
    phase = apply(shared, &event(proto::RevocationEventKind::Heartbeat, 4), phase);
    assert_eq!(phase, Phase::Live);
    assert!(!stale(&verifier));
}

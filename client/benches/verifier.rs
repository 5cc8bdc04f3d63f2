//! What a [`LocalVerifier`] costs: a token it has seen (nanoseconds), a
//! token seen for the first time against the raw Ed25519 verification it
//! contains (target <= 1.5x), and the memory of 1,000,000 revoked sessions.
//!
//! `cargo bench -p token-authority-client --bench verifier`

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, ParsedPublicKey},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group};
use serde_json::json;
use token_authority_client::{Client, LocalVerifier, proto};

/// Counts the bytes in use, for the memory figure.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

struct Setup {
    key: Ed25519KeyPair,
    jwks: String,
}

fn setup() -> Setup {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref())}]})
    .to_string();
    Setup { key, jwks }
}

fn token(key: &Ed25519KeyPair, n: u128) -> String {
    let header = json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"});
    let now = now();
    let claims = json!({"iss": "token-authority", "aud": "token-authority",
        "sub": uuid(1), "sid": uuid(n + 1_000_000), "jti": uuid(n),
        "iat": now, "nbf": now, "exp": now + 3600, "name": "alice", "roles": ["reader", "writer"], "gen": 0});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).as_ref()))
}

fn uuid(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

fn verifier(setup: &Setup, seen_capacity: usize) -> LocalVerifier {
    let client = Client::builder("http://127.0.0.1:1").connect_lazy().expect("a lazy client");
    let verifier = LocalVerifier::builder(client, "token-authority", "token-authority")
        .seen_capacity(seen_capacity)
        .detached();
    verifier.apply(&proto::RevocationEvent {
        kind: proto::RevocationEventKind::KeySet.into(),
        jwks: setup.jwks.clone(),
        ..Default::default()
    });
    verifier
}

fn benches(c: &mut Criterion) {
    let setup = setup();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _guard = runtime.enter();
    let token = token(&setup.key, 1);

    let remembering = verifier(&setup, 100_000);
    assert!(remembering.verify_local(&token).is_ok());
    c.bench_function("local_verifier/seen_token", |b| b.iter(|| remembering.verify_local(black_box(&token))));

    let forgetting = verifier(&setup, 0);
    assert!(forgetting.verify_local(&token).is_ok());
    c.bench_function("local_verifier/first_seen_token", |b| b.iter(|| forgetting.verify_local(black_box(&token))));

    let public = ParsedPublicKey::new(&ED25519, setup.key.public_key().as_ref()).expect("a public key");
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    c.bench_function("ed25519/raw_verify", |b| {
        b.iter(|| public.verify_sig(black_box(input.as_bytes()), black_box(&signature)))
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = benches
}

/// The bytes a verifier holds for 1,000,000 revoked sessions.
fn memory_of_revoked_sessions() {
    const SESSIONS: u128 = 1_000_000;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _guard = runtime.enter();
    let setup = setup();
    let verifier = verifier(&setup, 0);
    let before = IN_USE.load(Ordering::Relaxed);
    let expires_at = Some(prost_types::Timestamp {
        seconds: now() + 3600,
        nanos: 0,
    });
    let mut event = proto::RevocationEvent {
        kind: proto::RevocationEventKind::Revoked.into(),
        reason: proto::RevocationReason::Logout.into(),
        session_expires_at: expires_at,
        ..Default::default()
    };
    for n in 0..SESSIONS {
        event.cursor = u64::try_from(n).unwrap_or(u64::MAX);
        event.session_id = uuid(n);
        verifier.apply(&event);
    }
    let held = IN_USE.load(Ordering::Relaxed).saturating_sub(before);
    assert_eq!(verifier.session_entries(), 1_000_000);
    println!(
        "local_verifier/memory_of_1M_revoked_sessions: {:.1} MiB ({} bytes per session)",
        held as f64 / (1024.0 * 1024.0),
        held / 1_000_000
    );
}

fn main() {
    memory_of_revoked_sessions();
    group();
    Criterion::default().configure_from_args().final_summary();
}

//! Micro-benchmarks of token signing and verification, per algorithm the
//! keyring supports: the CPU cost that the first Verify of a token pays, and
//! what a repeat Verify pays instead (a token remembered as verified).

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use token_authority::clock::{Clock, SystemClock};
use token_authority::domain::{
    SessionId, TokenId, UserId,
    tokens::{Keyring, SigningAlgorithm, SigningKey, TokenClaims, TokenPolicy},
};

fn claims() -> TokenClaims {
    let now = SystemClock.now().truncated_to_seconds();
    TokenClaims {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        token_id: TokenId::generate(),
        username: "alice@example.com".into(),
        roles: vec!["reader".into(), "writer".into()],
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(24 * 3600)),
        generation: 0,
    }
}

/// A keyring per algorithm, each signing with a fresh key of it.
fn keyrings() -> Vec<(&'static str, Keyring)> {
    let policy = TokenPolicy {
        issuer: "token-authority".into(),
        audience: "token-authority".into(),
        leeway: Duration::from_secs(5),
    };
    SigningAlgorithm::ALL
        .into_iter()
        .map(|algorithm| {
            let key = SigningKey::generate(algorithm).expect("a key");
            (algorithm.as_str(), Keyring::new(key, vec![], policy.clone()))
        })
        .collect()
}

fn tokens(criterion: &mut Criterion) {
    for (algorithm, keyring) in keyrings() {
        let claims = claims();
        let now = claims.issued_at;
        let token = keyring.sign(&claims, now).expect("signs");
        criterion.bench_function(&format!("{algorithm} sign"), |bench| {
            bench.iter(|| keyring.sign(black_box(&claims), now).expect("signs"))
        });
        criterion.bench_function(&format!("{algorithm} verify"), |bench| {
            bench.iter(|| keyring.verify(black_box(&token), now).expect("verifies"))
        });
        // What a repeat Verify pays instead: the lookup and the clock check.
        let remembered = token_authority::authority::VerifiedTokens::new(50_000);
        let (verified, window) = keyring.verify_with_window(&token, now).expect("verifies");
        remembered.insert(remembered.ticket(), &token, &verified, window);
        criterion.bench_function(&format!("{algorithm} verify (remembered)"), |bench| {
            bench.iter(|| {
                let (claims, window) = remembered.get(black_box(&token)).expect("remembered");
                keyring.check_window(window, SystemClock.now()).expect("valid");
                claims
            })
        });
        // One character inside the signature changed.
        let mut forged: Vec<char> = token.expose().chars().collect();
        let inside = forged.len() - 10;
        forged[inside] = if forged[inside] == 'A' { 'B' } else { 'A' };
        let forged = token_authority::domain::AccessToken::issued(forged.into_iter().collect());
        criterion.bench_function(&format!("{algorithm} verify (bad signature)"), |bench| {
            bench.iter(|| keyring.verify(black_box(&forged), now).expect_err("a forged signature"))
        });
    }
}

criterion_group!(benches, tokens);
criterion_main!(benches);

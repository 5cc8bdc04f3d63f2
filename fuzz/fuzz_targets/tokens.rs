//! Token verification against jsonwebtoken's, on anything libFuzzer makes.
//!
//! The first byte picks the shape: even, the rest is a token as it arrives
//! (signature and all); odd, the rest is a header and claims, split at the
//! first NUL byte, that the target signs with the keyring's key, so that the
//! fuzzer reaches every claim check. The verdicts must agree (a bad header
//! and a bad signature both mean "not ours"), and neither side may panic.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use token_authority::{
    clock::{Clock, SystemClock},
    domain::{
        AccessToken,
        tokens::{Keyring, SigningKey, TokenPolicy, reference},
    },
};

const SECRET: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let token = if shape % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        AccessToken::issued(text.to_owned())
    } else {
        let mut parts = rest.splitn(2, |&byte| byte == 0);
        let (Some(header), Some(claims)) = (parts.next(), parts.next()) else { return };
        let (Ok(header), Ok(claims)) = (std::str::from_utf8(header), std::str::from_utf8(claims)) else { return };
        // jsonwebtoken types `typ` as one string; ours leaves `typ` to the
        // application (RFC 7515 §4.1.9) and does not read it. The property
        // test in src/domain/tokens/agreement.rs covers that difference.
        if serde_json::from_str::<serde_json::Value>(header).is_ok_and(|value| value.get("typ").is_some()) {
            return;
        }
        reference::sign_text(header, claims, &SECRET)
    };
    let policy = TokenPolicy {
        issuer: "issuer".into(),
        audience: "audience".into(),
        leeway: Duration::from_secs(5),
    };
    let key = SigningKey::hs256(SECRET.to_vec()).expect("a 32-byte key");
    let kid = key.kid().to_owned();
    let keyring = Keyring::new(key, vec![], policy.clone());
    // jsonwebtoken reads the wall clock, so ours is given it too.
    let now = SystemClock.now();
    for check_expiry in [true, false] {
        let ours = if check_expiry {
            keyring.verify(&token, now)
        } else {
            keyring.verify_ignoring_expiry(&token, now)
        };
        let theirs = reference::verify(&token, &[(kid.clone(), &SECRET)], &policy, check_expiry);
        assert!(
            reference::same_verdict(&ours, &theirs),
            "ours {ours:?}, jsonwebtoken {theirs:?}, check_expiry {check_expiry}"
        );
    }
});

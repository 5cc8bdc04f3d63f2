//! Session tokens as JWTs (compact JWS): what they claim, the keys that sign
//! them, and the verification that runs on every request.
//!
//! - `claims`: the claims in domain types and on the wire, the policy
//!   (issuer, audience, leeway) they are checked against, the rejections.
//! - `keys`: key material (an HS256 secret, or an Ed25519, P-256 or RSA key
//!   pair), its `kid`, its public half as a JWK, the algorithms we sign with.
//! - `keyring`: signing with the key that signs at a given time, and
//!   verification dispatched by `kid` to that key, which accepts exactly its
//!   own algorithm (never `none`, never another family) and the access-token
//!   type (`typ: at+jwt`); the published keys as a JWKS.
//! - `sealing`: private keys at rest, AES-256-GCM under KEY_ENCRYPTION_KEY.
//! - `schedule`: a stored key's life (next, active, retired, expired) as a
//!   rule of its stored times and the clock, and when to rotate.
//! - `codec`: the hand-written, algorithm-independent read of a token: each
//!   part parsed once, `exp` and `nbf` as integers, `iss` and `aud` exact,
//!   `crit` refused. Why by hand is told there.
//!
//! Signing and verification are given the time (`now`) rather than reading a
//! clock. Both use aws-lc-rs directly, with keys prepared once; the
//! `agreement` tests hold verification to jsonwebtoken's `decode` for every
//! algorithm.

mod claims;
mod codec;
mod keyring;
mod keys;
mod schedule;
mod sealing;

#[cfg(test)]
mod agreement;
#[cfg(any(test, fuzzing))]
pub mod reference;
#[cfg(test)]
mod test_support;

pub use claims::{TokenClaims, TokenPolicy, TokenRejection};
pub use codec::ValidityWindow;
pub use keyring::{ACCESS_TOKEN_TYPE, Keyring, KeyringKeys, LEGACY_TOKEN_TYPE};
pub use keys::{KeyError, MIN_HMAC_SECRET_BYTES, SigningAlgorithm, SigningKey};
pub use schedule::{
    KeyInfo, KeySchedule, KeyState, PlannedKey, Replacement, RotationPolicy, RotationReason, active_key, plan_removal,
    plan_requested_rotation, plan_rotation,
};
pub use sealing::{KEY_ENCRYPTION_KEY_BYTES, KeyEncryptionKey, SealedKey, Sealing, SealingError, open, seal};

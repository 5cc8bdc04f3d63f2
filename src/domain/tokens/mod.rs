//! Session tokens as JWTs (compact JWS): what they claim, the keys that sign
//! them, and the verification that runs on every request.
//!
//! - `claims`: the claims in domain types and on the wire, the policy
//!   (issuer, audience, leeway) they are checked against, the rejections.
//! - `keys`: key material, its `kid`, the algorithms we sign with.
//! - `keyring`: signing, and verification dispatched by `kid` to that key's
//!   verifier, which accepts exactly the key's algorithm (never `none`, never
//!   another family). It holds several keys so that key rotation and more
//!   algorithms come without touching callers.
//! - `codec`: the hand-written, algorithm-independent read of a token: each
//!   part parsed once, `exp` and `nbf` as integers, `iss` and `aud` exact,
//!   `crit` refused. Why by hand is told there.
//!
//! Verification is given the time (`now`) rather than reading a clock.
//! Signing goes through jsonwebtoken; the `agreement` tests hold verification
//! to jsonwebtoken's `decode`.

mod claims;
mod codec;
mod keyring;
mod keys;

#[cfg(test)]
mod agreement;
#[cfg(any(test, fuzzing))]
pub mod reference;
#[cfg(test)]
mod test_support;

pub use claims::{TokenClaims, TokenPolicy, TokenRejection};
pub use codec::ValidityWindow;
pub use keyring::Keyring;
pub use keys::{KeyError, MIN_HMAC_SECRET_BYTES, SigningAlgorithm, SigningKey};

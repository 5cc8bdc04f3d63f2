//! Password hashing with argon2id, stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), which carry their own
//! parameters: old hashes keep verifying after the settings change, and a
//! login with an outdated hash tells the caller to store a fresh one.
//!
//! Everything here is CPU-heavy and blocking; callers run it off the async
//! workers.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};

use super::Password;

/// The argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Settings {
    /// Checks the parameters against argon2's own limits.
    pub fn check(&self) -> Result<(), PasswordHashError> {
        self.params().map(drop)
    }

    fn params(&self) -> Result<Params, PasswordHashError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(PasswordHashError::InvalidSettings)
    }
}

impl Default for Argon2Settings {
    /// OWASP's recommended minimum for argon2id.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    #[error("invalid argon2 parameters")]
    InvalidSettings(#[source] argon2::Error),
    #[error("stored password hash is not a valid PHC string")]
    CorruptHash,
    #[error("argon2 failed")]
    Hashing(#[source] argon2::password_hash::Error),
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    pub matches: bool,
    /// The stored hash uses other parameters (or another variant) than the
    /// configured ones: store a fresh hash now that the password is known.
    pub needs_rehash: bool,
}

pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    settings: Argon2Settings,
    /// Verified against when the user does not exist, so that an unknown user
    /// costs as much time as a wrong password and cannot be told apart.
    dummy_hash: String,
}

impl Argon2Hasher {
    pub fn new(settings: Argon2Settings) -> Result<Self, PasswordHashError> {
        let params = settings.params()?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash =
            argon2.hash_password(b"no user has this password").map_err(PasswordHashError::Hashing)?.to_string();
        Ok(Self {
            argon2,
            settings,
            dummy_hash,
        })
    }

    /// A PHC string for a new password, with a fresh random salt.
    pub fn hash(&self, password: &Password) -> Result<String, PasswordHashError> {
        self.argon2
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(PasswordHashError::Hashing)
    }

    /// Checks `password` against a stored PHC string, or against the dummy
    /// hash when there is no user (then it never matches).
    pub fn verify(&self, password: &Password, stored: Option<&str>) -> Result<PasswordCheck, PasswordHashError> {
        let Some(stored) = stored else {
            let _ = self.argon2.verify_password(password.expose().as_bytes(), self.dummy_hash.as_str());
            return Ok(PasswordCheck {
                matches: false,
                needs_rehash: false,
            });
        };
        let parsed = PasswordHash::new(stored).map_err(|_| PasswordHashError::CorruptHash)?;
        // The PHC string's own algorithm and parameters decide how to verify.
        let matches = self.argon2.verify_password(password.expose().as_bytes(), &parsed).is_ok();
        Ok(PasswordCheck {
            matches,
            needs_rehash: matches && self.is_outdated(&parsed),
        })
    }

    fn is_outdated(&self, hash: &PasswordHash) -> bool {
        let current = |params: &Params| {
            params.m_cost() == self.settings.memory_kib
                && params.t_cost() == self.settings.iterations
                && params.p_cost() == self.settings.parallelism
        };
        hash.algorithm.as_str() != "argon2id"
            || hash.version != Some(Version::V0x13.into())
            || !Params::try_from(hash).is_ok_and(|params| current(&params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters: these tests check behaviour, not cost.
    fn cheap() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn password(text: &str) -> Password {
        Password::parse("password", text.to_owned()).unwrap()
    }

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let hasher = Argon2Hasher::new(cheap()).unwrap();
        let hash = hasher.hash(&password("correct horse")).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        let check = hasher.verify(&password("correct horse"), Some(&hash)).unwrap();
        assert_eq!(
            check,
            PasswordCheck {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!hasher.verify(&password("wrong horse"), Some(&hash)).unwrap().matches);
    }

    #[test]
    fn long_passwords_are_not_truncated() {
        let hasher = Argon2Hasher::new(cheap()).unwrap();
        let long = "p".repeat(1000);
        let hash = hasher.hash(&password(&long)).unwrap();
        assert!(hasher.verify(&password(&long), Some(&hash)).unwrap().matches);
        let almost = format!("{}q", "p".repeat(999));
        assert!(!hasher.verify(&password(&almost), Some(&hash)).unwrap().matches);
    }

    #[test]
    fn older_parameters_ask_for_a_rehash() {
        let old = Argon2Hasher::new(cheap()).unwrap();
        let hash = old.hash(&password("correct horse")).unwrap();
        let stronger = Argon2Hasher::new(Argon2Settings {
            memory_kib: 128,
            ..cheap()
        })
        .unwrap();
        let check = stronger.verify(&password("correct horse"), Some(&hash)).unwrap();
        assert_eq!(
            check,
            PasswordCheck {
                matches: true,
                needs_rehash: true
            }
        );
        let wrong = stronger.verify(&password("wrong"), Some(&hash)).unwrap();
        assert!(!wrong.needs_rehash, "no rehash without the right password");
    }

    #[test]
    fn unknown_user_never_matches() {
        let hasher = Argon2Hasher::new(cheap()).unwrap();
        let check = hasher.verify(&password("anything"), None).unwrap();
        assert!(!check.matches);
    }

    #[test]
    fn corrupt_hash_is_an_error_and_bad_settings_are_refused() {
        let hasher = Argon2Hasher::new(cheap()).unwrap();
        assert!(matches!(
            hasher.verify(&password("x"), Some("not a phc string")),
            Err(PasswordHashError::CorruptHash)
        ));
        let bad = Argon2Settings {
            memory_kib: 1,
            ..cheap()
        };
        assert!(matches!(Argon2Hasher::new(bad), Err(PasswordHashError::InvalidSettings(_))));
    }
}

//! Usernames: what a person types to log in.

use std::fmt;

use super::ValidationError;

const MAX_USERNAME_BYTES: usize = 256;

/// A username as the user chose it. Uniqueness and lookups use
/// [`Username::key`], so `Alice` and `alice` are the same account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, ValidationError> {
        ValidationError::check_length(field, value, MAX_USERNAME_BYTES)?;
        if value.trim() != value {
            return Err(ValidationError::new(field, "must not start or end with white space"));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        Ok(Self(value.to_owned()))
    }

    /// Trusted value read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive lookup key.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_case() {
        let upper = Username::parse("username", "Alice").unwrap();
        let lower = Username::parse("username", "alice").unwrap();
        assert_eq!(upper.key(), lower.key());
        assert_eq!(upper.as_str(), "Alice");
    }

    #[test]
    fn rejects_empty_long_padded_and_control() {
        let long = "a".repeat(257);
        for bad in ["", " alice", "alice ", "al\nice", long.as_str()] {
            let error = Username::parse("username", bad).unwrap_err();
            assert_eq!(error.field, "username", "{bad:?}");
        }
        assert!(Username::parse("username", &"a".repeat(256)).is_ok());
    }
}

//! Access tokens as they arrive in requests.

use std::fmt;

use super::ValidationError;

/// Refused before any parsing: a JWT of ours is a few hundred bytes.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 8 * 1024;

/// A bearer token. Whoever holds it is the user, so `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn parse(field: &'static str, value: String) -> Result<Self, ValidationError> {
        ValidationError::check_length(field, &value, MAX_ACCESS_TOKEN_BYTES)?;
        Ok(Self(value))
    }

    /// A token the service has just signed.
    pub fn issued(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_redacted_debug() {
        assert!(AccessToken::parse("access_token", String::new()).is_err());
        assert!(AccessToken::parse("access_token", "a".repeat(8 * 1024 + 1)).is_err());
        let token = AccessToken::parse("access_token", "secret.jwt.value".into()).unwrap();
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
    }
}

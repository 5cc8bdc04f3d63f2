//! Passwords as they arrive in requests. They live in `SecretString`, so no
//! `Debug`, log line or error message can ever show one.

use secrecy::{ExposeSecret, SecretString};

use super::ValidationError;

/// Longer passwords are refused before any hashing, so a request cannot make
/// argon2 chew on megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The minimum for a password being set (NIST SP 800-63B's floor).
pub const MIN_NEW_PASSWORD_CHARS: usize = 8;

/// A password presented to log in or to prove who is changing it.
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn parse(field: &'static str, value: String) -> Result<Self, ValidationError> {
        ValidationError::check_length(field, &value, MAX_PASSWORD_BYTES)?;
        Ok(Self(SecretString::from(value)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password being set: the same bounds plus a minimum length.
#[derive(Debug, Clone)]
pub struct NewPassword(Password);

impl NewPassword {
    pub fn parse(field: &'static str, value: String) -> Result<Self, ValidationError> {
        let chars = value.chars().count();
        let password = Password::parse(field, value)?;
        if chars < MIN_NEW_PASSWORD_CHARS {
            return Err(ValidationError::new(field, format!("must be at least {MIN_NEW_PASSWORD_CHARS} characters")));
        }
        Ok(Self(password))
    }

    pub fn as_password(&self) -> &Password {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_no_leak_in_debug() {
        assert!(Password::parse("password", String::new()).is_err());
        assert!(Password::parse("password", "x".repeat(1025)).is_err());
        let password = Password::parse("password", "x".repeat(1024)).unwrap();
        assert!(!format!("{password:?}").contains("xxxx"));
    }

    #[test]
    fn new_password_needs_eight_characters() {
        let error = NewPassword::parse("new_password", "short".into()).unwrap_err();
        assert_eq!(error.field, "new_password");
        assert!(NewPassword::parse("new_password", "long enough".into()).is_ok());
    }
}

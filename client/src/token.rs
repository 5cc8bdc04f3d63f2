//! A user's access token: a string that must never reach a log.

use std::fmt;

/// A bearer token as the authority issued it. Its `Debug` and `Display`
/// never show it: use [`AccessToken::as_str`] to send it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<access token>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_token() {
        let token = AccessToken::new("eyJhbGciOi.secret.signature");
        assert!(!format!("{token:?} {token}").contains("secret"));
        assert_eq!(token.as_str(), "eyJhbGciOi.secret.signature");
    }
}

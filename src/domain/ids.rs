//! Identifiers of users, sessions and tokens: UUIDs (v7, so they sort by
//! creation time and index well), each its own type so they cannot be mixed up.

use std::fmt;

use uuid::Uuid;

use super::ValidationError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses a request field; `field` names it in the error.
            pub fn parse(field: &'static str, value: &str) -> Result<Self, ValidationError> {
                if value.is_empty() {
                    return Err(ValidationError::new(field, "must not be empty"));
                }
                Uuid::try_parse(value)
                    .map(Self)
                    .map_err(|_| ValidationError::new(field, "must be a UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A user account.
    UserId
);
uuid_id!(
    /// A session: one login, across all the tokens its refreshes issue.
    SessionId
);
uuid_id!(
    /// One token (its `jti` claim). Every rotation issues a new one.
    TokenId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_non_uuid_with_field_name() {
        let error = SessionId::parse("session_id", "nope").unwrap_err();
        assert_eq!(error.to_string(), "session_id: must be a UUID");
    }

    #[test]
    fn display_round_trips() {
        let id = UserId::generate();
        assert_eq!(UserId::parse("user_id", &id.to_string()).unwrap(), id);
    }
}

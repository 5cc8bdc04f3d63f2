//! Roles: names the calling services use for their own authorisation. The
//! authority stores them on the user and copies them into every token.

use std::fmt;

use super::ValidationError;

const MAX_ROLE_BYTES: usize = 64;
const MAX_ROLES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Role(String);

impl Role {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, ValidationError> {
        ValidationError::check_length(field, value, MAX_ROLE_BYTES)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if !value.chars().all(allowed) {
            return Err(ValidationError::new(
                field,
                format!("role {value:?} may only contain letters, digits, '_', '-', '.' and ':'"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's roles: sorted, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn parse<S: AsRef<str>>(field: &'static str, values: &[S]) -> Result<Self, ValidationError> {
        if values.len() > MAX_ROLES {
            return Err(ValidationError::new(field, format!("at most {MAX_ROLES} roles (got {})", values.len())));
        }
        let mut roles = values.iter().map(|value| Role::parse(field, value.as_ref())).collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(Self(roles))
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|role| role.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_deduplicated() {
        let roles = Roles::parse("roles", &["b", "a", "b"]).unwrap();
        assert_eq!(roles.names(), ["a", "b"]);
    }

    #[test]
    fn rejects_bad_names_with_field() {
        let error = Roles::parse("roles", &["ok", "not ok"]).unwrap_err();
        assert_eq!(error.field, "roles");
        assert!(Roles::parse("roles", &[""]).is_err());
    }
}

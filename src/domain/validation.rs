//! The one error a request field can fail parsing with.

/// A request field that does not parse. The message names the field, so the
/// caller knows what to fix, and never echoes a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: &'static str,
    pub problem: String,
}

impl ValidationError {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }

    /// Checks the common bounds of a text field: present and not too long.
    pub(crate) fn check_length(field: &'static str, value: &str, max_bytes: usize) -> Result<(), Self> {
        if value.is_empty() {
            return Err(Self::new(field, "must not be empty"));
        }
        if value.len() > max_bytes {
            return Err(Self::new(field, format!("must be at most {max_bytes} bytes (got {})", value.len())));
        }
        Ok(())
    }
}

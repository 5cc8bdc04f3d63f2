//! Where an end user is calling from, as the calling backend saw it.

use std::net::IpAddr;

use super::ValidationError;

const MAX_USER_AGENT_BYTES: usize = 512;
const MAX_DEVICE_ID_BYTES: usize = 256;

/// Stored on the session so that users and operators can tell sessions apart.
/// Every part is optional: an empty field means "not known".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientContext {
    pub ip_address: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
}

impl ClientContext {
    pub fn parse(ip_address: &str, user_agent: &str, device_id: &str) -> Result<Self, ValidationError> {
        let ip_address = match ip_address {
            "" => None,
            text => Some(
                text.parse::<IpAddr>()
                    .map_err(|_| ValidationError::new("client.ip_address", "must be an IPv4 or IPv6 address"))?,
            ),
        };
        Ok(Self {
            ip_address,
            user_agent: optional_text("client.user_agent", user_agent, MAX_USER_AGENT_BYTES)?,
            device_id: optional_text("client.device_id", device_id, MAX_DEVICE_ID_BYTES)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

fn optional_text(field: &'static str, value: &str, max_bytes: usize) -> Result<Option<String>, ValidationError> {
    if value.is_empty() {
        return Ok(None);
    }
    ValidationError::check_length(field, value, max_bytes)?;
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_unknown() {
        assert!(ClientContext::parse("", "", "").unwrap().is_empty());
    }

    #[test]
    fn ip_must_parse() {
        let error = ClientContext::parse("not-an-ip", "", "").unwrap_err();
        assert_eq!(error.field, "client.ip_address");
        let context = ClientContext::parse("2001:db8::1", "curl/8", "phone").unwrap();
        assert_eq!(context.ip_address.unwrap().to_string(), "2001:db8::1");
    }
}

//! Who may call the admin service (and, later, the revocation stream):
//! holders of a configured key in `authorization: Bearer <key>` metadata.
//!
//! Keys are compared as SHA-256 digests in constant time, so neither timing
//! nor length tells an attacker how close a guess was.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status, metadata::MetadataMap};

type KeyDigest = [u8; 32];

/// What a presented key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
}

#[derive(Clone)]
pub struct ApiKeys {
    admin: Arc<[KeyDigest]>,
}

impl ApiKeys {
    pub fn new(admin: &[SecretString]) -> Self {
        Self {
            admin: admin.iter().map(digest_of).collect(),
        }
    }

    pub fn admin_configured(&self) -> bool {
        !self.admin.is_empty()
    }

    /// The interceptor for the admin service.
    pub fn require_admin(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let keys = self.clone();
        move |request: Request<()>| {
            keys.authorize(request.metadata())?;
            Ok(request)
        }
    }

    fn authorize(&self, metadata: &MetadataMap) -> Result<Access, Status> {
        if !self.admin_configured() {
            tracing::warn!("admin call refused: no admin key is configured; set ADMIN_API_KEYS=<key>[,<key>...] to enable the admin API");
            return Err(Status::permission_denied(
                "the admin API is disabled: the server has no ADMIN_API_KEYS configured",
            ));
        }
        let presented = bearer_key(metadata)?;
        let digest = Sha256::digest(presented.as_bytes());
        // Compare against every key, without stopping early.
        let matched = self
            .admin
            .iter()
            .fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(&digest[..]));
        if bool::from(matched) {
            Ok(Access::Admin)
        } else {
            Err(Status::unauthenticated("authorization: unknown key"))
        }
    }
}

fn digest_of(key: &SecretString) -> KeyDigest {
    Sha256::digest(key.expose_secret().as_bytes()).into()
}

fn bearer_key(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("authorization: missing; send `authorization: Bearer <key>`"))?;
    let text = value
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization: not valid text"))?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization: expected `Bearer <key>`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn metadata(value: Option<&str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(value) = value {
            metadata.insert("authorization", value.parse().unwrap());
        }
        metadata
    }

    #[test]
    fn no_keys_means_permission_denied() {
        let keys = ApiKeys::new(&[]);
        let error = keys.authorize(&metadata(Some("Bearer anything-at-all-here"))).unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
        assert!(error.message().contains("ADMIN_API_KEYS"));
    }

    #[test]
    fn right_key_passes_wrong_or_missing_do_not() {
        let keys = ApiKeys::new(&["first-admin-key-0001".into(), "second-admin-key-002".into()]);
        assert_eq!(keys.authorize(&metadata(Some("Bearer second-admin-key-002"))).unwrap(), Access::Admin);
        for bad in [None, Some("Bearer wrong-admin-key-0001"), Some("second-admin-key-002"), Some("Bearer ")] {
            let error = keys.authorize(&metadata(bad)).unwrap_err();
            assert_eq!(error.code(), Code::Unauthenticated, "{bad:?}");
        }
    }
}

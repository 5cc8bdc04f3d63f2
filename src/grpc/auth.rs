//! Who may call the admin service and watch revocations: holders of a
//! configured key in `authorization: Bearer <key>` metadata. Admin keys allow
//! both; service keys only watching.
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
    /// Read-only: watching revocations.
    Service,
}

#[derive(Clone)]
pub struct ApiKeys {
    admin: Arc<[KeyDigest]>,
    service: Arc<[KeyDigest]>,
}

impl ApiKeys {
    pub fn new(admin: &[SecretString], service: &[SecretString]) -> Self {
        Self {
            admin: admin.iter().map(digest_of).collect(),
            service: service.iter().map(digest_of).collect(),
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

    /// Checks a revocation watcher: an admin or a service key.
    pub fn authorize_watcher(&self, metadata: &MetadataMap) -> Result<Access, Status> {
        if self.admin.is_empty() && self.service.is_empty() {
            tracing::warn!("revocation watch refused: no key is configured; set SERVICE_API_KEYS=<key>[,<key>...]");
            return Err(Status::permission_denied(
                "revocation watching is disabled: the server has no SERVICE_API_KEYS or ADMIN_API_KEYS configured",
            ));
        }
        self.identify(metadata)
    }

    fn authorize(&self, metadata: &MetadataMap) -> Result<Access, Status> {
        if !self.admin_configured() {
            tracing::warn!(
                "admin call refused: no admin key is configured; set ADMIN_API_KEYS=<key>[,<key>...] to enable the admin API"
            );
            return Err(Status::permission_denied(
                "the admin API is disabled: the server has no ADMIN_API_KEYS configured",
            ));
        }
        match self.identify(metadata)? {
            Access::Admin => Ok(Access::Admin),
            Access::Service => Err(Status::permission_denied("this key may only watch revocations")),
        }
    }

    fn identify(&self, metadata: &MetadataMap) -> Result<Access, Status> {
        let presented = bearer_key(metadata)?;
        let digest = Sha256::digest(presented.as_bytes());
        if matches_any(&self.admin, &digest) {
            Ok(Access::Admin)
        } else if matches_any(&self.service, &digest) {
            Ok(Access::Service)
        } else {
            Err(Status::unauthenticated("authorization: unknown key"))
        }
    }
}

/// Compares against every key, without stopping early.
fn matches_any(keys: &[KeyDigest], digest: &[u8]) -> bool {
    let found = keys.iter().fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(digest));
    bool::from(found)
}

fn digest_of(key: &SecretString) -> KeyDigest {
    Sha256::digest(key.expose_secret().as_bytes()).into()
}

fn bearer_key(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("authorization: missing; send `authorization: Bearer <key>`"))?;
    let text = value.to_str().map_err(|_| Status::unauthenticated("authorization: not valid text"))?;
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
        let keys = ApiKeys::new(&[], &[]);
        let error = keys.authorize(&metadata(Some("Bearer anything-at-all-here"))).unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
        assert!(error.message().contains("ADMIN_API_KEYS"));
    }

    #[test]
    fn right_key_passes_wrong_or_missing_do_not() {
        let keys = ApiKeys::new(&["first-admin-key-0001".into(), "second-admin-key-002".into()], &[]);
        assert_eq!(keys.authorize(&metadata(Some("Bearer second-admin-key-002"))).unwrap(), Access::Admin);
        for bad in [
            None,
            Some("Bearer wrong-admin-key-0001"),
            Some("second-admin-key-002"),
            Some("Bearer "),
        ] {
            let error = keys.authorize(&metadata(bad)).unwrap_err();
            assert_eq!(error.code(), Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn service_keys_watch_but_do_not_administer() {
        let keys = ApiKeys::new(&["admin-key-0000000001".into()], &["service-key-00000001".into()]);
        let service = metadata(Some("Bearer service-key-00000001"));
        assert_eq!(keys.authorize_watcher(&service).unwrap(), Access::Service);
        assert_eq!(keys.authorize(&service).unwrap_err().code(), Code::PermissionDenied);
        let admin = metadata(Some("Bearer admin-key-0000000001"));
        assert_eq!(keys.authorize_watcher(&admin).unwrap(), Access::Admin);
        let stranger = metadata(Some("Bearer stranger-key-000001"));
        assert_eq!(keys.authorize_watcher(&stranger).unwrap_err().code(), Code::Unauthenticated);
    }
}

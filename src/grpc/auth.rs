//! Who may call the admin service and watch revocations: holders of a
//! configured key in `authorization: Bearer <key>` metadata. Admin keys allow
//! both; service keys only watching.
//!
//! Keys are compared as SHA-256 digests in constant time, so neither timing
//! nor length tells an attacker how close a guess was.

use std::sync::Arc;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status, metadata::MetadataMap};

use crate::config::ApiKey;

type KeyDigest = [u8; 32];

/// What a presented key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    /// Read-only: watching revocations.
    Service,
}

/// Who is calling, as their key says: put into the request's extensions by
/// the check, so that handlers (and logs, and the audit trail) can name the
/// service or operator that acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name from the configuration (`name:key`), never the key.
    pub name: Arc<str>,
    pub access: Access,
}

#[derive(Clone)]
pub struct ApiKeys {
    admin: Arc<[(Arc<str>, KeyDigest)]>,
    service: Arc<[(Arc<str>, KeyDigest)]>,
}

impl ApiKeys {
    pub fn new(admin: &[ApiKey], service: &[ApiKey]) -> Self {
        Self {
            admin: admin.iter().map(named_digest).collect(),
            service: service.iter().map(named_digest).collect(),
        }
    }

    pub fn admin_configured(&self) -> bool {
        !self.admin.is_empty()
    }

    /// The interceptor for the admin service: it lets admin keys through
    /// and leaves their [`Caller`] in the request's extensions.
    pub fn require_admin(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let keys = self.clone();
        move |mut request: Request<()>| {
            let caller = keys.authorize(request.metadata())?;
            tracing::info!(operator = %caller.name, "admin call");
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }

    /// Checks a revocation watcher: an admin or a service key.
    pub fn authorize_watcher(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if self.admin.is_empty() && self.service.is_empty() {
            tracing::warn!("revocation watch refused: no key is configured; set SERVICE_API_KEYS=<key>[,<key>...]");
            return Err(Status::permission_denied(
                "revocation watching is disabled: the server has no SERVICE_API_KEYS or ADMIN_API_KEYS configured",
            ));
        }
        self.identify(metadata)
    }

    fn authorize(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if !self.admin_configured() {
            tracing::warn!(
                "admin call refused: no admin key is configured; set ADMIN_API_KEYS=<key>[,<key>...] to enable the admin API"
            );
            return Err(Status::permission_denied(
                "the admin API is disabled: the server has no ADMIN_API_KEYS configured",
            ));
        }
        let caller = self.identify(metadata)?;
        match caller.access {
            Access::Admin => Ok(caller),
            Access::Service => Err(Status::permission_denied("this key may only watch revocations")),
        }
    }

    fn identify(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let presented = bearer_key(metadata)?;
        let digest = Sha256::digest(presented.as_bytes());
        if let Some(name) = find(&self.admin, &digest) {
            Ok(Caller {
                name,
                access: Access::Admin,
            })
        } else if let Some(name) = find(&self.service, &digest) {
            Ok(Caller {
                name,
                access: Access::Service,
            })
        } else {
            Err(Status::unauthenticated("authorization: unknown key"))
        }
    }
}

/// The name of the key whose digest is `digest`. Compares against every
/// key, without stopping early, so timing tells nothing.
fn find(keys: &[(Arc<str>, KeyDigest)], digest: &[u8]) -> Option<Arc<str>> {
    let mut found = None;
    for (name, key) in keys {
        if bool::from(key.ct_eq(digest)) {
            found = Some(name.clone());
        }
    }
    found
}

fn named_digest(key: &ApiKey) -> (Arc<str>, KeyDigest) {
    (Arc::from(key.name.as_str()), Sha256::digest(key.key.expose_secret().as_bytes()).into())
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
        let keys = ApiKeys::new(
            &[
                ApiKey::new("first", "first-admin-key-0001"),
                ApiKey::new("second", "second-admin-key-002"),
            ],
            &[],
        );
        let caller = keys.authorize(&metadata(Some("Bearer second-admin-key-002"))).unwrap();
        assert_eq!((&*caller.name, caller.access), ("second", Access::Admin));
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
        let keys = ApiKeys::new(
            &[ApiKey::new("ops", "admin-key-0000000001")],
            &[ApiKey::new("billing", "service-key-00000001")],
        );
        let service = metadata(Some("Bearer service-key-00000001"));
        let watcher = keys.authorize_watcher(&service).unwrap();
        assert_eq!((&*watcher.name, watcher.access), ("billing", Access::Service));
        assert_eq!(keys.authorize(&service).unwrap_err().code(), Code::PermissionDenied);
        let admin = metadata(Some("Bearer admin-key-0000000001"));
        assert_eq!(keys.authorize_watcher(&admin).unwrap().access, Access::Admin);
        let stranger = metadata(Some("Bearer stranger-key-000001"));
        assert_eq!(keys.authorize_watcher(&stranger).unwrap_err().code(), Code::Unauthenticated);
    }
}

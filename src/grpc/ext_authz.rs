//! `envoy.service.auth.v3.Authorization/Check`: Envoy's (and Istio's)
//! external authorization. Envoy asks before it forwards each request; the
//! answer comes from Verify's path (`forward_auth`): OK with the holder's
//! identity in headers for the upstream, or a 401 for the client to see.
//!
//! The identity headers are set with `OVERWRITE_IF_EXISTS_OR_ADD`, which
//! discards every copy the client sent, so an upstream never sees a forged
//! `x-user-id`. They are deliberately not listed in `headers_to_remove`
//! too: Envoy applies `headers_to_remove` after the headers it sets, so
//! listing them there would strip the values set here as well.
//!
//! A database failure is a gRPC error, not a denial: Envoy then applies its
//! own `failure_mode_allow` / `status_on_error` policy.

use std::sync::Arc;

use envoy_types::{
    ext_authz::v3::pb::{
        Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
        HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
    },
    pb::google::rpc,
};
use tonic::{Code, Request, Response, Status};

use crate::{
    authority::Authority,
    forward_auth::{self, Decision, IDENTITY_HEADERS, Identity, Refusal},
};

/// The encoded descriptors of Envoy's ext_authz protos (compiled by
/// build.rs from proto/third_party), for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ext_authz_descriptor");

pub struct ExtAuthzService {
    authority: Arc<Authority>,
    /// The identity headers' full names (EXT_AUTHZ_HEADER_PREFIX applied),
    /// in the order of [`IDENTITY_HEADERS`].
    header_names: [String; 4],
}

impl ExtAuthzService {
    pub fn new(authority: Arc<Authority>, header_prefix: &str) -> Self {
        Self {
            authority,
            header_names: IDENTITY_HEADERS.map(|name| format!("{header_prefix}{name}")),
        }
    }

    fn allowed(&self, identity: &Identity) -> CheckResponse {
        let headers = self
            .header_names
            .iter()
            .zip(identity.values())
            .map(|(name, value)| HeaderValueOption {
                header: Some(HeaderValue {
                    key: name.clone(),
                    value: value.to_owned(),
                    ..HeaderValue::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
                ..HeaderValueOption::default()
            })
            .collect();
        CheckResponse {
            status: Some(rpc::Status {
                code: Code::Ok.into(),
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                ..OkHttpResponse::default()
            })),
            ..CheckResponse::default()
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        let decision = forward_auth::decide(&self.authority, authorization(&request)).await?;
        Ok(Response::new(match decision {
            Decision::Allow(identity) => self.allowed(&identity),
            Decision::Refuse(refusal) => denied(refusal),
        }))
    }
}

/// The `authorization` values of the client's request: from `headers`
/// (keys in lower case, repeats joined), or from `header_map` when Envoy
/// sends raw headers (`encode_raw_headers: true`, repeats kept apart).
fn authorization(request: &CheckRequest) -> Vec<&[u8]> {
    let Some(http) = request.attributes.as_ref().and_then(|attributes| attributes.request.as_ref()?.http.as_ref())
    else {
        return Vec::new();
    };
    if let Some(value) = http.headers.get("authorization") {
        return vec![value.as_bytes()];
    }
    http.header_map
        .iter()
        .flat_map(|map| &map.headers)
        .filter(|header| header.key.eq_ignore_ascii_case("authorization"))
        .map(|header| {
            if header.raw_value.is_empty() {
                header.value.as_bytes()
            } else {
                &header.raw_value[..]
            }
        })
        .collect()
}

/// 401 with the RFC 6750 challenge, for Envoy to send the client.
fn denied(refusal: Refusal) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code: Code::Unauthenticated.into(),
            message: "the request carries no valid bearer token".into(),
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::Unauthorized.into(),
            }),
            headers: vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: "www-authenticate".into(),
                    value: refusal.challenge().into(),
                    ..HeaderValue::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
                ..HeaderValueOption::default()
            }],
            body: String::new(),
        })),
        ..CheckResponse::default()
    }
}

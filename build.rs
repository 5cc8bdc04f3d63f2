//! Generates the gRPC code from `proto/` with the pure-Rust `protox` compiler,
//! so that building needs cargo alone (no system `protoc`), and keeps the
//! descriptor sets for the reflection service (ours, and Envoy's ext_authz).
//! For Envoy's ext_authz only the server stub is generated: its request and
//! response are our own types (`src/grpc/ext_authz/`), which handle only the
//! fields this service reads and writes.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_FILE: &str = "proto/tokenauthority/v1/token_authority.proto";

/// Envoy's external authorization service, served by `src/grpc/ext_authz/`
/// (see proto/third_party/README.md).
const EXT_AUTHZ_FILE: &str = "envoy/service/auth/v3/external_auth.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 does not honour its own rerun option with compile_fds.
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile([PROTO_FILE], ["proto"])?;

    // compile_fds does not write the descriptor set itself; reflection needs it.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("token_authority_descriptor.bin"), descriptors.encode_to_vec())?;
    let ext_authz = protox::compile([EXT_AUTHZ_FILE], ["proto/third_party"])?;
    fs::write(out_dir.join("ext_authz_descriptor.bin"), ext_authz.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;

    // The stub of the one file that declares the service; every type it
    // names resolves outside (extern paths), so no message is generated
    // (the others resolve to envoy-types, where a client finds them).
    let mut service_file = ext_authz;
    service_file.file.retain(|file| file.name() == EXT_AUTHZ_FILE);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".envoy.service.auth.v3.CheckRequest", "crate::grpc::ext_authz::request::CheckRequest")
        .extern_path(".envoy.service.auth.v3.CheckResponse", "crate::grpc::ext_authz::response::CheckResponse")
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .extern_path(".google", "::envoy_types::pb::google")
        .compile_fds(service_file)?;
    Ok(())
}

//! Generates this crate's own gRPC stubs from the workspace's proto with the
//! pure-Rust `protox` compiler, like the server's build script: a service
//! that adds this crate builds with cargo alone (no `protoc`), and does not
//! pull in the server's dependencies (SeaORM, sqlx, argon2) to get the stubs.

const PROTO_ROOT: &str = "../proto";
const PROTO_FILE: &str = "../proto/tokenauthority/v1/token_authority.proto";
/// The example service's own contract, compiled here so that the example
/// can include it; the library does not.
const EXAMPLE_ROOT: &str = "examples/proto";
const EXAMPLE_FILE: &str = "examples/proto/notes/v1/notes.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 does not honour its own rerun option with compile_fds.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed={EXAMPLE_ROOT}");

    // Server stubs too: the crate's tests stand up fake authorities with them.
    let descriptors = protox::compile([PROTO_FILE], [PROTO_ROOT])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;

    let example = protox::compile([EXAMPLE_FILE], [EXAMPLE_ROOT])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(example)?;
    Ok(())
}

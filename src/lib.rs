//! token-authority: issues, refreshes, verifies and revokes JWT session tokens
//! for backend services, over gRPC. See README.md for the code map.

pub mod authority;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod forward_auth;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod repository;
pub mod revocations;
pub mod security_feed;
pub mod startup;
pub mod supervisor;
pub mod telemetry;
pub mod tls;

pub use grpc::proto;

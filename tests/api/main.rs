//! Integration tests: one binary, each test starting the real server on
//! 127.0.0.1 port 0 with a database of its own and talking to it over gRPC
//! with the generated client.

mod admin;
mod audit;
mod auth_request;
mod binding;
mod callers;
mod cli;
mod database_files;
mod envoy_config;
mod ext_authz;
mod grpcurl;
mod health;
mod helpers;
mod keys;
mod limits;
mod login;
mod logout;
mod metrics;
mod passwords;
mod postgres;
mod pyjwt;
mod refresh;
mod refresh_limits;
mod replicas;
mod revocations;
mod security_events;
mod throttle;
mod tls;
mod tools;
mod verify;

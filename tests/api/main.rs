//! Integration tests: one binary, each test starting the real server on
//! 127.0.0.1 port 0 with a database of its own and talking to it over gRPC
//! with the generated client.

mod admin;
mod callers;
mod cli;
mod database_files;
mod grpcurl;
mod health;
mod helpers;
mod limits;
mod login;
mod logout;
mod metrics;
mod passwords;
mod postgres;
mod refresh;
mod replicas;
mod revocations;
mod tls;
mod tools;
mod verify;

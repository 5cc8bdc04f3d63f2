//! The client crate against the real authority (port 0, a SQLite database
//! of its own, a manual clock): one test binary, one file per area.

mod client;
mod protected_service;
mod session_handle;
mod support;

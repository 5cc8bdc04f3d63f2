//! The SQLite file holds password hashes and, without JWT_SECRET, the
//! signing key: only its owner may read it, whatever the umask.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{PASSWORD, TestConfig};

#[tokio::test]
async fn the_sqlite_file_and_its_wal_and_shm_are_private_whatever_the_umask() {
    // SAFETY: umask has no memory-safety preconditions. It is process-wide:
    // other tests of this process only get more permissive files meanwhile.
    let previous = unsafe { libc::umask(0) };
    let directory = tempfile::TempDir::new().unwrap();
    let path = directory.path().join("private.db");
    let mut app = TestConfig::default().spawn_on(format!("sqlite:{}", path.display())).await;
    // A write, so that the write-ahead log and its index exist.
    app.user_with_session("alice").await;
    unsafe { libc::umask(previous) };

    for name in ["private.db", "private.db-wal", "private.db-shm"] {
        let metadata = std::fs::metadata(directory.path().join(name)).unwrap_or_else(|_| panic!("{name} exists"));
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{name}");
    }
    assert!(app.login("alice", PASSWORD).await.is_ok());
}

//! A PostgreSQL server of a test's own, for tests that stop and start it.
//! It runs as TEST_POSTGRES_RUN_AS when set (tests/run.sh sets it under root,
//! which PostgreSQL refuses to run as).

use std::{net::TcpListener, process::Command};

use tempfile::TempDir;

pub struct PrivatePostgres {
    directory: TempDir,
    port: u16,
    run_as: Option<String>,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        // In /tmp rather than $TMPDIR: the unprivileged user must reach it.
        let directory = tempfile::Builder::new()
            .prefix("token-authority-pg")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let run_as = std::env::var("TEST_POSTGRES_RUN_AS").ok().filter(|user| !user.is_empty());
        if let Some(user) = &run_as {
            let owned = Command::new("chown").arg(user).arg(directory.path()).status().unwrap();
            assert!(owned.success(), "chown the PostgreSQL directory to {user}");
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Self {
            directory,
            port,
            run_as,
        };
        let data = server.data();
        server.run(&[
            "initdb",
            "-D",
            &data,
            "-U",
            "token_authority",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        server.start_again();
        server
    }

    /// The server, as a URL naming its default database.
    pub fn url(&self) -> String {
        format!("postgres://token_authority@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        self.run(&["pg_ctl", "-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.directory.path().display()
        );
        let log = format!("{}/server.log", self.directory.path().display());
        self.run(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-l",
            &log,
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ]);
    }

    fn data(&self) -> String {
        format!("{}/data", self.directory.path().display())
    }

    /// `command`, run as the unprivileged user when there is one.
    fn process(&self, command: &[&str]) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut process = Command::new("runuser");
                process.args(["-u", user, "--"]).args(command);
                process
            }
            None => {
                let mut process = Command::new(command[0]);
                process.args(&command[1..]);
                process
            }
        }
    }

    fn run(&self, command: &[&str]) {
        let output = self.process(command).output().expect("PostgreSQL's tools are on PATH");
        assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.process(&["pg_ctl", "-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

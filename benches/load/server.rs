//! The real release server, as a child process on a prepared database.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context;
use tokio::process::{Child, Command};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

pub const JWT_SECRET: &str = "benchmark-secret-that-is-at-least-32-bytes";
pub const ADMIN_KEY: &str = "benchmark-admin-key-0001";
pub const SERVICE_KEY: &str = "benchmark-service-key-01";
/// The server's JWT_ISSUER and JWT_AUDIENCE (its defaults).
pub const ISSUER: &str = "token-authority";
pub const AUDIENCE: &str = "token-authority";

const BINARY: &str = env!("CARGO_BIN_EXE_token-authority");

/// A CA and a server certificate for localhost, made for the run.
pub struct TestCertificates {
    ca_pem: String,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl TestCertificates {
    pub fn write(directory: &Path) -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let key = KeyPair::generate()?;
        let certificate =
            CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &Issuer::new(ca, ca_key))?;
        let (cert_file, key_file) = (directory.join("tls.crt"), directory.join("tls.key"));
        std::fs::write(&cert_file, certificate.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok(Self {
            ca_pem,
            cert_file,
            key_file,
        })
    }
}

/// How the server signs its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// HS256 with [`JWT_SECRET`], which the benchmark also holds to sign
    /// the seeded sessions' tokens.
    Secret,
    /// Its own EdDSA keys, kept in the database.
    StoredKeys,
}

pub struct Server {
    child: Child,
    pub address: SocketAddr,
    /// How its clients trust it, when it serves TLS.
    tls: Option<ClientTlsConfig>,
}

impl Server {
    /// Starts `token-authority serve` on `database_url` with the default
    /// settings (argon2, session binding, auditing, the login throttle
    /// included), signing HS256 with [`JWT_SECRET`], logging to `log`.
    pub async fn start(database_url: &str, log: &Path) -> anyhow::Result<Self> {
        Self::start_with(database_url, log, None, Signing::Secret).await
    }

    /// The same, serving TLS with `certificates`.
    pub async fn start_tls(database_url: &str, log: &Path, certificates: &TestCertificates) -> anyhow::Result<Self> {
        Self::start_with(database_url, log, Some(certificates), Signing::Secret).await
    }

    /// The same, without JWT_SECRET: the server makes and keeps its own
    /// EdDSA keys in the database, as a fresh deployment does.
    pub async fn start_stored_keys(database_url: &str, log: &Path) -> anyhow::Result<Self> {
        Self::start_with(database_url, log, None, Signing::StoredKeys).await
    }

    async fn start_with(
        database_url: &str,
        log: &Path,
        certificates: Option<&TestCertificates>,
        signing: Signing,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = std::fs::File::create(log)?;
        let mut command = Command::new(BINARY);
        if let Some(certificates) = certificates {
            command.env("TLS_CERT_FILE", &certificates.cert_file).env("TLS_KEY_FILE", &certificates.key_file);
        }
        if signing == Signing::Secret {
            command.env("JWT_SECRET", JWT_SECRET);
        }
        let child = command
            .arg("serve")
            .env("LISTEN_ADDR", address.to_string())
            .env("DATABASE_URL", database_url)
            .env("ADMIN_API_KEYS", ADMIN_KEY)
            .env("SERVICE_API_KEYS", SERVICE_KEY)
            .env("LOG_FORMAT", "json")
            // The memory row holds 1,000 streams on the one service key.
            .env("MAX_REVOCATION_STREAMS_PER_CALLER", "100000")
            // Binding (log), auditing, the login throttle and the anomaly
            // rules run as by default. Only the refresh limit is off: the
            // Refresh rows rotate each session back to back on purpose.
            .env("SESSION_BINDING", "log")
            .env("REFRESH_MIN_INTERVAL", "0s")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the server")?;
        let tls = certificates.map(|certificates| {
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&certificates.ca_pem))
                .domain_name("localhost")
        });
        let server = Self { child, address, tls };
        server.wait_until_serving().await?;
        Ok(server)
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) = self.endpoint().connect().await {
                let answer = HealthClient::new(channel).check(HealthCheckRequest::default()).await;
                if answer.is_ok_and(|answer| answer.into_inner().status() == ServingStatus::Serving) {
                    return Ok(());
                }
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    fn endpoint(&self) -> Endpoint {
        match &self.tls {
            Some(tls) => Endpoint::from_shared(format!("https://{}", self.address))
                .expect("a valid address")
                .tls_config(tls.clone())
                .expect("a TLS client configuration"),
            None => Endpoint::from_shared(format!("http://{}", self.address)).expect("a valid address"),
        }
    }

    /// `count` separate HTTP/2 connections.
    pub async fn connections(&self, count: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            channels.push(self.endpoint().connect().await?);
        }
        Ok(channels)
    }

    /// Resident memory now and at its peak, in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|line| line.starts_with(name))
                .with_context(|| format!("{name} in /proc/{pid}/status"))?;
            let kib: u64 = line.split_whitespace().nth(1).context("a number")?.parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: a signal to our own child process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }
}

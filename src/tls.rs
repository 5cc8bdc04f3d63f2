//! TLS for the gRPC port (rustls on aws-lc-rs), with certificates renewed
//! without a restart, and client certificates (mTLS) as caller credentials.
//!
//! - [`Certificates`] resolves the server certificate for each handshake
//!   from an atomically swapped slot. [`Certificates::watch`], a supervisor
//!   task, re-reads the files every TLS_RELOAD_INTERVAL (when their bytes
//!   changed) and on SIGHUP. A renewal that does not load (bad PEM, a key
//!   that does not match) keeps the current certificate and logs why; open
//!   connections keep theirs, new ones get the renewed one.
//! - [`TlsIncoming`] accepts TCP connections and runs their handshakes
//!   concurrently, each bounded by TLS_HANDSHAKE_TIMEOUT, inside the stream
//!   that tonic polls (no task per handshake), so that a client that stalls
//!   its handshake holds nobody else up.
//! - Each connection carries a [`ConnectionInfo`] (its peer and its verified
//!   client certificate's name) that tonic puts in every request's
//!   extensions, where the caller check (`grpc::auth`) reads it.

use std::{
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::Stream;
use tracing::{debug, info, warn};

use crate::config::TlsConfig;

/// Handshakes in progress at once; beyond, accepting waits (new
/// connections queue in the kernel's backlog).
const MAX_PENDING_HANDSHAKES: usize = 512;

/// A TLS setting whose files cannot be used; names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct TlsError {
    pub setting: &'static str,
    pub problem: String,
}

fn error(setting: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError {
        setting,
        problem: problem.into(),
    }
}

/// What the logs say about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The serial number, in hex.
    pub serial: String,
    pub not_after: String,
}

/// The server certificate and its key, swapped whole when renewed.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The SHA-256 of the files as last read (loaded or not), so that an
    /// unchanged or still-broken pair is neither reloaded nor logged again.
    last_read: Mutex<[u8; 32]>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Certificates {
    /// Loads the pair; a failure here stops the start.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, digest, summary) = read_pair(&config.cert_file, &config.key_file, &provider)?;
        info!(serial = %summary.serial, not_after = %summary.not_after, "TLS certificate loaded");
        Ok(Arc::new(Self {
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            provider,
            current: ArcSwap::from_pointee(key),
            last_read: Mutex::new(digest),
        }))
    }

    /// Re-reads the files and, when they changed (or `forced`) and load,
    /// serves the new certificate to new connections; what was loaded, if
    /// anything. A pair that does not load keeps the current one, with a
    /// warning logged once per distinct content.
    pub fn reload(&self, forced: bool) -> Option<CertificateSummary> {
        let bytes = std::fs::read(&self.cert_file).and_then(|cert| Ok((cert, std::fs::read(&self.key_file)?)));
        let digest = match &bytes {
            Ok((cert, key)) => digest_of(cert, key),
            Err(_) => [0; 32],
        };
        {
            let mut last_read = self.last_read.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *last_read == digest && !forced {
                return None;
            }
            *last_read = digest;
        }
        match read_pair(&self.cert_file, &self.key_file, &self.provider) {
            Ok((key, _, summary)) => {
                self.current.store(Arc::new(key));
                info!(serial = %summary.serial, not_after = %summary.not_after, "TLS certificate reloaded");
                Some(summary)
            }
            Err(error) => {
                warn!(error = %error, "the TLS certificate was not reloaded; still serving the previous one");
                None
            }
        }
    }

    /// The background task: reloads on every TLS_RELOAD_INTERVAL tick when
    /// the files changed, and on SIGHUP whatever they hold.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                warn!(error = %error, "cannot listen for SIGHUP; TLS certificates reload on the interval only");
                None
            }
        };
        loop {
            let forced = tokio::select! {
                _ = ticker.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(signal) => signal.recv().await, None => std::future::pending().await } } => {
                    info!("SIGHUP: reloading the TLS certificate");
                    true
                }
            };
            self.reload(forced);
        }
    }
}

fn digest_of(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}

/// The certified key in the two files, checked to belong together.
fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, [u8; 32], CertificateSummary), TlsError> {
    let read = |setting, path: &Path| {
        std::fs::read(path).map_err(|problem| error(setting, format!("cannot read {}: {problem}", path.display())))
    };
    let (cert_pem, key_pem) = (read("TLS_CERT_FILE", cert_file)?, read("TLS_KEY_FILE", key_file)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().map_err(|problem| {
        error("TLS_CERT_FILE", format!("{}: not PEM certificates: {problem}", cert_file.display()))
    })?;
    let leaf = chain
        .first()
        .ok_or_else(|| error("TLS_CERT_FILE", format!("{} holds no certificate", cert_file.display())))?;
    let summary = summarize(leaf).map_err(|problem| error("TLS_CERT_FILE", problem))?;
    // The key's bytes never reach an error message.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| error("TLS_KEY_FILE", format!("{} holds no PEM private key", key_file.display())))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|problem| {
        error(
            "TLS_KEY_FILE",
            format!("{} does not match the certificate in TLS_CERT_FILE: {problem}", key_file.display()),
        )
    })?;
    Ok((certified, digest_of(&cert_pem, &key_pem), summary))
}

fn summarize(certificate: &CertificateDer<'_>) -> Result<CertificateSummary, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|problem| format!("the certificate does not parse: {problem}"))?;
    Ok(CertificateSummary {
        serial: parsed.raw_serial_as_string().replace(':', ""),
        not_after: parsed.validity().not_after.to_string(),
    })
}

/// The rustls configuration: our certificates, HTTP/2 only, and client
/// certificates required when TLS_CLIENT_CA_FILE is set.
pub fn server_config(certificates: Arc<Certificates>, config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = certificates.provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|problem| error("TLS_CERT_FILE", problem.to_string()))?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|problem| error("TLS_CLIENT_CA_FILE", format!("cannot read {}: {problem}", path.display())))?;
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate
                    .map_err(|problem| error("TLS_CLIENT_CA_FILE", format!("{}: {problem}", path.display())))?;
                roots
                    .add(certificate)
                    .map_err(|problem| error("TLS_CLIENT_CA_FILE", format!("{}: {problem}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(error("TLS_CLIENT_CA_FILE", format!("{} holds no certificate", path.display())));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|problem| error("TLS_CLIENT_CA_FILE", problem.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_cert_resolver(certificates);
    // gRPC is HTTP/2; clients (grpcurl among them) insist on ALPN h2.
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub remote_addr: SocketAddr,
    /// The name of the client certificate verified against
    /// TLS_CLIENT_CA_FILE: its subject's common name, else its first DNS
    /// name, else its first URI (a SPIFFE ID, say).
    pub client_name: Option<Arc<str>>,
}

/// The client certificate's name, as [`ConnectionInfo::client_name`] says.
pub fn client_name(certificate: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    if let Some(common_name) = parsed.subject().iter_common_name().find_map(|name| name.as_str().ok()) {
        return Some(Arc::from(common_name));
    }
    let names = parsed.subject_alternative_name().ok().flatten()?;
    let general = &names.value.general_names;
    let dns = general.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });
    let uri = general.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    dns.or(uri).map(Arc::from)
}

/// One TLS connection, as tonic serves it.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: ConnectionInfo,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// Accepted TCP connections, handshaken: what tonic serves over TLS.
pub struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    tcp_keepalive: Duration,
    handshakes: FuturesUnordered<BoxFuture<'static, Option<TlsConnection>>>,
}

impl TlsIncoming {
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
        tcp_keepalive: Duration,
    ) -> Self {
        Self {
            listener,
            acceptor: TlsAcceptor::from(config),
            handshake_timeout,
            tcp_keepalive,
            handshakes: FuturesUnordered::new(),
        }
    }

    fn handshake(&self, stream: TcpStream, peer: SocketAddr) -> BoxFuture<'static, Option<TlsConnection>> {
        configure_tcp(&stream, self.tcp_keepalive);
        let accepting = self.acceptor.accept(stream);
        let timeout = self.handshake_timeout;
        async move {
            let stream = match tokio::time::timeout(timeout, accepting).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(problem)) => {
                    debug!(%peer, error = %problem, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake not finished within TLS_HANDSHAKE_TIMEOUT");
                    return None;
                }
            };
            let client_name =
                stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(client_name);
            Some(TlsConnection {
                stream,
                info: ConnectionInfo {
                    remote_addr: peer,
                    client_name,
                },
            })
        }
        .boxed()
    }
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsConnection>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        while self.handshakes.len() < MAX_PENDING_HANDSHAKES {
            match self.listener.poll_accept(context) {
                Poll::Ready(Ok((stream, peer))) => {
                    let handshake = self.handshake(stream, peer);
                    self.handshakes.push(handshake);
                }
                Poll::Ready(Err(problem)) => return Poll::Ready(Some(Err(problem))),
                Poll::Pending => break,
            }
        }
        loop {
            match self.handshakes.poll_next_unpin(context) {
                Poll::Ready(Some(Some(connection))) => return Poll::Ready(Some(Ok(connection))),
                Poll::Ready(Some(None)) => {}
                // No handshake in progress: the listener's waker is registered.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// TCP_NODELAY (small gRPC replies must not wait for a delayed ACK) and
/// keepalive probes (a vanished peer's connection is dropped).
pub fn configure_tcp(stream: &TcpStream, keepalive: Duration) {
    if let Err(problem) = stream.set_nodelay(true) {
        debug!(error = %problem, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(keepalive);
    if let Err(problem) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        debug!(error = %problem, "cannot set TCP keepalive");
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SerialNumber};

    use super::*;

    /// Writes a self-signed certificate with `serial` and its key; returns the key's PEM.
    fn write_pair(directory: &Path, serial: u64) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        std::fs::write(directory.join("cert.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
        std::fs::write(directory.join("key.pem"), key.serialize_pem()).unwrap();
        key.serialize_pem()
    }

    fn config(directory: &Path) -> TlsConfig {
        TlsConfig {
            cert_file: directory.join("cert.pem"),
            key_file: directory.join("key.pem"),
            client_ca_file: None,
            admin_clients: vec![],
            reload_interval: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
        }
    }

    fn served_serial(certificates: &Certificates) -> String {
        summarize(&certificates.current.load().cert[0]).unwrap().serial
    }

    #[test]
    fn a_renewal_that_does_not_load_keeps_the_current_certificate() {
        let directory = tempfile::TempDir::new().unwrap();
        let first_key = write_pair(directory.path(), 1);
        let certificates = Certificates::load(&config(directory.path())).unwrap();
        assert_eq!(certificates.reload(false), None, "unchanged files are not reloaded");

        write_pair(directory.path(), 2);
        std::fs::write(directory.path().join("key.pem"), &first_key).unwrap();
        assert_eq!(certificates.reload(false), None, "a key that does not match the certificate");
        assert_eq!(served_serial(&certificates), "01");

        std::fs::write(directory.path().join("key.pem"), "not a key").unwrap();
        assert_eq!(certificates.reload(false), None, "a key that does not parse");
        std::fs::write(directory.path().join("cert.pem"), "not a certificate").unwrap();
        assert_eq!(certificates.reload(true), None, "a certificate that does not parse");
        std::fs::remove_file(directory.path().join("cert.pem")).unwrap();
        assert_eq!(certificates.reload(false), None, "a file missing mid-rotation");
        assert_eq!(served_serial(&certificates), "01");

        write_pair(directory.path(), 3);
        let reloaded = certificates.reload(false).expect("a good pair loads");
        assert_eq!(reloaded.serial, "03");
        assert_eq!(served_serial(&certificates), "03");
    }

    #[test]
    fn a_bad_pair_stops_the_start_naming_the_setting() {
        let directory = tempfile::TempDir::new().unwrap();
        let first_key = write_pair(directory.path(), 1);
        write_pair(directory.path(), 2);
        std::fs::write(directory.path().join("key.pem"), first_key).unwrap();
        let error = Certificates::load(&config(directory.path())).unwrap_err();
        assert_eq!(error.setting, "TLS_KEY_FILE", "{error}");
    }

    #[tokio::test]
    async fn accepted_sockets_get_nodelay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        configure_tcp(&client, Duration::from_secs(42));
        let socket = socket2::SockRef::from(&client);
        assert!(client.nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
    }
}

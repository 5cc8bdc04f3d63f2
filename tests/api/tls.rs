//! TLS and client certificates, as real clients meet them: grpcurl with
//! `-cacert`, `-cert` and `-key`, certificates made by the tests (rcgen),
//! and renewals picked up without a restart.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use tempfile::TempDir;
use token_authority::{config::TlsConfig, proto, startup::Application};
use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Identity},
};

use crate::{
    helpers::{PASSWORD, SERVICE_KEY, TestApp, TestConfig, assert_status},
    tools,
};

/// A CA of the test's own, and the files it signs into a directory.
struct TestPki {
    directory: TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl TestPki {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let pki = Self {
            directory: TempDir::new().unwrap(),
            ca: Issuer::new(params, key),
            ca_pem,
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// Signs a certificate; returns its PEM and its key's PEM.
    fn sign(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.ca).unwrap().pem(), key.serialize_pem())
    }

    /// Writes a server certificate for localhost and 127.0.0.1 with this
    /// serial to `server.pem` and `server.key`.
    fn write_server(&self, serial: u64) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, key) = self.sign(params);
        let (cert_path, key_path) = (self.path("server.pem"), self.path("server.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    /// A client certificate whose subject is `name`; writes `name.pem` and `name.key`.
    fn write_client(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = self.sign(params);
        std::fs::write(self.path(&format!("{name}.pem")), &cert).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), &key).unwrap();
        (cert, key)
    }

    fn tls_config(&self, client_certificates: bool, admin_clients: &[&str]) -> TlsConfig {
        TlsConfig {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            client_ca_file: client_certificates.then(|| self.path("ca.pem")),
            admin_clients: admin_clients.iter().map(ToString::to_string).collect(),
            reload_interval: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(5),
        }
    }

    /// How the test's gRPC clients trust this CA (and present `identity`).
    fn client_tls(&self, identity: Option<(String, String)>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem)).domain_name("localhost");
        match identity {
            Some((cert, key)) => tls.identity(Identity::from_pem(cert, key)),
            None => tls,
        }
    }
}

async fn tls_app(pki: &TestPki, client_certificates: bool, admin_clients: &[&str]) -> TestApp {
    pki.write_server(1);
    let identity = client_certificates.then(|| pki.write_client("billing"));
    let mut config = TestConfig::default().configure(|config| {
        config.tls = Some(pki.tls_config(client_certificates, admin_clients));
    });
    config.client_tls = Some(pki.client_tls(identity));
    config.spawn().await
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn grpcurl_speaks_tls_with_the_ca_and_plaintext_is_refused() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let pki = TestPki::new("test CA");
    let app = tls_app(&pki, false, &[]).await;
    let address = app.address.to_string();
    let ca = path(&pki.path("ca.pem"));

    let (healthy, health, errors) =
        tools::run(&grpcurl, &["-cacert", &ca, &address, "grpc.health.v1.Health/Check"]).await;
    assert!(healthy, "{errors}");
    assert!(health.contains("SERVING"), "{health}");
    let (listed, services, errors) = tools::run(&grpcurl, &["-cacert", &ca, &address, "list"]).await;
    assert!(listed && services.contains("tokenauthority.v1.TokenAuthority"), "{services} {errors}");
    let bearer = format!("authorization: Bearer {SERVICE_KEY}");
    let verify = [
        "-cacert",
        &ca,
        "-H",
        &bearer,
        "-d",
        r#"{"access_token": "not.a.token"}"#,
        &address,
        "tokenauthority.v1.TokenAuthority/Verify",
    ];
    let (verified, answer, errors) = tools::run(&grpcurl, &verify).await;
    assert!(verified && answer.contains("MALFORMED"), "{answer} {errors}");
    let without_key = [
        "-cacert",
        &ca,
        "-d",
        r#"{"access_token": "x"}"#,
        &address,
        "tokenauthority.v1.TokenAuthority/Verify",
    ];
    let (_, _, refused) = tools::run(&grpcurl, &without_key).await;
    assert!(refused.contains("Unauthenticated"), "{refused}");

    let (plaintext, _, _) = tools::run(&grpcurl, &["-plaintext", &address, "grpc.health.v1.Health/Check"]).await;
    let stranger = TestPki::new("another CA");
    let other_ca = path(&stranger.path("ca.pem"));
    let (untrusted, _, _) =
        tools::run(&grpcurl, &["-cacert", &other_ca, &address, "grpc.health.v1.Health/Check"]).await;
    assert!(!plaintext, "a plaintext client is not served");
    assert!(!untrusted, "a client that does not trust the server's CA fails the handshake");
}

#[tokio::test]
async fn grpcurl_with_a_client_certificate_is_a_caller_and_without_one_is_turned_away() {
    let Some(grpcurl) = tools::find("grpcurl") else { return };
    let pki = TestPki::new("test CA");
    let mut app = tls_app(&pki, true, &["ops-console"]).await;
    app.create_user("alice", PASSWORD, &[]).await;
    pki.write_client("ops-console");
    let stranger = TestPki::new("another CA");
    stranger.write_client("billing");
    let address = app.address.to_string();
    let ca = path(&pki.path("ca.pem"));
    let login = [
        r#"{"username": "alice", "password": "correct horse battery staple"}"#,
        &address,
        "tokenauthority.v1.TokenAuthority/Login",
    ];
    let with = |cert: &Path, key: &Path| {
        let mut args = vec![
            "-cacert".to_owned(),
            ca.clone(),
            "-cert".to_owned(),
            path(cert),
            "-key".to_owned(),
            path(key),
            "-d".to_owned(),
        ];
        args.extend(login.iter().map(ToString::to_string));
        args
    };

    let billing = with(&pki.path("billing.pem"), &pki.path("billing.key"));
    let (logged_in, answer, errors) =
        tools::run(&grpcurl, &billing.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(
        logged_in && answer.contains("accessToken"),
        "a client certificate is a service credential: {answer} {errors}"
    );

    let mut anonymous = vec!["-cacert", &ca, "-d"];
    anonymous.extend(login);
    let (refused, _, _) = tools::run(&grpcurl, &anonymous).await;
    assert!(!refused, "without a client certificate the handshake fails");
    let foreign = with(&stranger.path("billing.pem"), &stranger.path("billing.key"));
    let (refused, _, _) = tools::run(&grpcurl, &foreign.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!refused, "a certificate from another CA is refused");

    let create = |cert: &str, key: &str| {
        vec![
            "-cacert".to_owned(),
            ca.clone(),
            "-cert".to_owned(),
            path(&pki.path(cert)),
            "-key".to_owned(),
            path(&pki.path(key)),
            "-d".to_owned(),
            r#"{"username": "bob", "password": "a long enough password"}"#.to_owned(),
            address.clone(),
            "tokenauthority.v1.TokenAuthorityAdmin/CreateUser".to_owned(),
        ]
    };
    let as_billing = create("billing.pem", "billing.key");
    let (created, _, denied) = tools::run(&grpcurl, &as_billing.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!created && denied.contains("PermissionDenied") && denied.contains("billing"), "{denied}");
    let as_ops = create("ops-console.pem", "ops-console.key");
    let (created, answer, errors) = tools::run(&grpcurl, &as_ops.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(created && answer.contains("userId"), "TLS_ADMIN_CLIENTS may administer: {answer} {errors}");
    let actors: Vec<String> =
        app.audit_of(&[proto::AuditKind::UserCreated]).await.into_iter().map(|event| event.actor).collect();
    assert_eq!(
        actors,
        ["admin:ops-console", "admin:test-admin"],
        "newest first: the trail names the certificate that acted"
    );
}

#[tokio::test]
async fn a_client_certificate_names_the_caller() {
    let pki = TestPki::new("test CA");
    let mut config = TestConfig::default().configure(|config| {
        config.tls = Some(pki.tls_config(true, &[]));
        config.limits.max_revocation_streams_per_caller = std::num::NonZeroUsize::MIN;
    });
    pki.write_server(1);
    config.client_tls = Some(pki.client_tls(Some(pki.write_client("billing"))));
    let mut app = config.spawn().await;
    let mut by_certificate = app.unauthenticated_client();
    let watch = || proto::WatchRevocationsRequest {
        after_cursor: 0,
        include_snapshot: false,
        session_snapshot: false,
    };

    let _open = by_certificate.watch_revocations(watch()).await.unwrap();
    let second = by_certificate.watch_revocations(watch()).await;
    let by_key = app.watch(0, false).await;

    assert_status(second, Code::ResourceExhausted, r#"caller "billing""#);
    assert!(by_key.is_ok(), "the service key is another caller: {:?}", by_key.err());
}

/// The serial number of the certificate a fresh TLS connection is served.
async fn served_serial(app: &TestApp, pki: &TestPki) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    parsed.raw_serial_as_string()
}

/// Waits (polling fresh connections) until the server serves `serial`.
async fn until_served(app: &TestApp, pki: &TestPki, serial: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let served = served_serial(app, pki).await;
        if served == serial {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still serving {served}, not {serial}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let pki = TestPki::new("test CA");
    let mut app = tls_app(&pki, false, &[]).await;
    assert_eq!(served_serial(&app, &pki).await, "01");
    let before = app.verify("not.a.token").await;

    pki.write_server(2);
    until_served(&app, &pki, "02").await;

    // Connections opened before the renewal keep working.
    assert_eq!(app.verify("not.a.token").await, before);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_at_once() {
    let pki = TestPki::new("test CA");
    let config = TestConfig::default().configure(|config| {
        let mut tls = pki.tls_config(false, &[]);
        // Only the signal can reload it within the test.
        tls.reload_interval = Duration::from_secs(3600);
        config.tls = Some(tls);
    });
    pki.write_server(1);
    let mut config = config;
    config.client_tls = Some(pki.client_tls(None));
    let app = config.spawn().await;

    pki.write_server(3);
    // SAFETY: a signal to this very process, which the server handles.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };

    until_served(&app, &pki, "03").await;
}

#[tokio::test]
async fn a_bad_certificate_or_key_stops_the_start_naming_the_setting() {
    let pki = TestPki::new("test CA");
    pki.write_server(1);
    let other = TestPki::new("other");
    other.write_server(1);
    let cases = [
        (pki.path("ca.pem"), pki.path("missing.key"), "TLS_KEY_FILE"),
        (pki.path("server.key"), pki.path("server.key"), "TLS_CERT_FILE"),
        (pki.path("server.pem"), other.path("server.key"), "TLS_KEY_FILE"),
    ];
    for (cert_file, key_file, setting) in cases {
        let mut config = TestConfig::default().config;
        config.tls = Some(TlsConfig {
            cert_file,
            key_file,
            ..pki.tls_config(false, &[])
        });
        let directory = TempDir::new().unwrap();
        config.database.url = format!("sqlite:{}", directory.path().join("test.db").display());
        let error = Application::build(config, TestConfig::default().clock.shared()).await.err().expect("no start");
        assert!(format!("{error:#}").contains(setting), "{setting}: {error:#}");
    }
}

#[tokio::test]
async fn a_stalled_handshake_holds_nobody_up() {
    let pki = TestPki::new("test CA");
    let app = tls_app(&pki, false, &[]).await;
    // Connects and says nothing.
    let _silent = tokio::net::TcpStream::connect(app.address).await.unwrap();

    assert_eq!(served_serial(&app, &pki).await, "01", "a fresh handshake is served meanwhile");
}

/// Envoy may present a client certificate (its `grpc_service` over mTLS)
/// instead of sending a service key.
#[tokio::test]
async fn ext_authz_check_accepts_a_client_certificate_instead_of_a_key() {
    use envoy_types::{
        ext_authz::v3::pb::CheckRequest,
        pb::envoy::service::auth::v3::{
            AttributeContext, attribute_context, authorization_client::AuthorizationClient,
        },
    };
    let pki = TestPki::new("test CA");
    let mut app = tls_app(&pki, true, &[]).await;
    app.create_user("alice", PASSWORD, &[]).await;
    let token = app.login("alice", PASSWORD).await.unwrap().access_token;
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    headers: [("authorization".to_owned(), format!("Bearer {token}"))].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };

    // The channel presents the certificate "billing" and no key.
    let response = AuthorizationClient::new(app.channel.clone()).check(request).await.unwrap().into_inner();

    assert_eq!(response.status.map(|status| status.code), Some(0));
}

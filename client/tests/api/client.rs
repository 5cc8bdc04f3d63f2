//! The typed `Client` against the real authority: mutual TLS with the
//! service key, and retries of the calls that are safe to repeat.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use token_authority::config::TlsConfig;
use token_authority_client::{Client, RetryPolicy};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::support::{Authority, PASSWORD, SERVICE_KEY};

/// A CA and what it signs, as PEM.
struct Pki {
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Self {
            ca: Issuer::new(params, key),
            ca_pem,
        }
    }

    fn sign(&self, mut params: CertificateParams, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.ca).unwrap().pem(), key.serialize_pem())
    }
}

#[tokio::test]
async fn the_client_speaks_mutual_tls_with_the_service_key() {
    // Arrange: an authority that requires client certificates of our CA.
    let pki = Pki::new();
    let directory = tempfile::TempDir::new().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let (server_pem, server_key) = pki.sign(server, ExtendedKeyUsagePurpose::ServerAuth);
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "backend");
    let (client_pem, client_key) = pki.sign(client, ExtendedKeyUsagePurpose::ClientAuth);
    for (name, content) in [
        ("server.pem", &server_pem),
        ("server.key", &server_key),
        ("ca.pem", &pki.ca_pem),
    ] {
        std::fs::write(directory.path().join(name), content).unwrap();
    }
    let tls = TlsConfig {
        cert_file: directory.path().join("server.pem"),
        key_file: directory.path().join("server.key"),
        client_ca_file: Some(directory.path().join("ca.pem")),
        admin_clients: vec![],
        reload_interval: Duration::from_secs(3600),
        handshake_timeout: Duration::from_secs(10),
    };
    let authority = Authority::spawn_with(|config| config.tls = Some(tls)).await;
    let url = format!("https://localhost:{}", authority.address.port());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&client_pem, &client_key));
    let channel = Channel::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    authority.create_user_on(channel, "alice", &[]).await;

    // Act
    let mutual = Client::builder(url.clone())
        .ca_certificate(pki.ca_pem.clone())
        .client_identity(client_pem, client_key)
        .service_key(SERVICE_KEY)
        .connect()
        .await
        .unwrap();
    let login = mutual.login("alice", PASSWORD, false, None).await;
    let anonymous = Client::builder(url)
        .ca_certificate(pki.ca_pem)
        .service_key(SERVICE_KEY)
        .retry(RetryPolicy::none())
        .connect_lazy()
        .unwrap();

    // Assert
    let login = login.unwrap();
    let claims = mutual.verify(login.access_token.as_str()).await.unwrap();
    assert_eq!(claims.username, "alice");
    assert!(anonymous.login("alice", PASSWORD, false, None).await.is_err(), "no client certificate, no call");
}

#[tokio::test]
async fn safe_calls_are_retried_while_the_authority_comes_back() {
    // Arrange
    let mut authority = Authority::spawn().await;
    authority.create_user("alice", &[]).await;
    let client = Client::builder(authority.url())
        .service_key(SERVICE_KEY)
        .retry(RetryPolicy {
            max_attempts: 200,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        })
        .connect_lazy()
        .unwrap();
    let login = client.login("alice", PASSWORD, false, None).await.unwrap();
    let address = authority.address;
    authority.stop().await;

    // Act: Verify starts while the authority is down; it comes back meanwhile.
    let verify = tokio::spawn({
        let client = client.clone();
        let token = login.access_token.clone();
        async move { client.verify(token.as_str()).await }
    });
    let sessions = tokio::spawn({
        let client = client.clone();
        let token = login.access_token.clone();
        async move { client.list_sessions(&token).await }
    });
    let once = Client::builder(authority.url())
        .service_key(SERVICE_KEY)
        .retry(RetryPolicy::none())
        .connect_lazy()
        .unwrap();
    let refused = once.list_sessions(&login.access_token).await.unwrap_err();
    let _back = authority.another_on(address).await;

    // Assert
    assert_eq!(
        refused.code(),
        Some(Code::Unavailable),
        "without retries the first failure is the answer: {refused}"
    );
    assert!(verify.await.unwrap().is_ok(), "Verify was retried until the authority answered");
    assert_eq!(sessions.await.unwrap().unwrap().len(), 1, "ListSessions too");
}

//! The binary as operators run it: commands, settings errors, signals, logs.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;
use token_authority::proto::{self, token_authority_client::TokenAuthorityClient};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{ADMIN_KEY, Client, JWT_SECRET, PASSWORD, SERVICE_KEY, ServiceKey};

const BINARY: &str = env!("CARGO_BIN_EXE_token-authority");

/// A directory to run in and a database of the test's own.
struct Workspace {
    directory: TempDir,
    database_url: String,
}

impl Workspace {
    async fn new() -> Self {
        let directory = TempDir::new().unwrap();
        let database_url = crate::helpers::fresh_database_url(directory.path()).await;
        Self {
            directory,
            database_url,
        }
    }
}

/// A command with a clean environment: settings come only from the test.
fn command(workspace: &Workspace) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &workspace.database_url)
        .env("ARGON2_MEMORY_KIB", "64")
        .env("ARGON2_ITERATIONS", "1")
        .current_dir(workspace.directory.path());
    command
}

fn create_user(workspace: &Workspace, username: &str, password: &str) -> std::process::Output {
    let mut child = command(workspace)
        .args(["user", "create", "--username", username, "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn login(client: &mut Client, password: &str) -> Result<proto::LoginResponse, tonic::Status> {
    let request = proto::LoginRequest {
        username: "alice".into(),
        password: password.into(),
        ..Default::default()
    };
    client.login(request).await.map(tonic::Response::into_inner)
}

/// A running `token-authority serve` process and its log lines.
struct ServerProcess {
    child: tokio::process::Child,
    address: String,
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl ServerProcess {
    async fn start(workspace: &Workspace, extra_env: &[(&str, &str)]) -> Self {
        let mut command: tokio::process::Command = command(workspace).into();
        command
            .args(["serve"])
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("SERVICE_API_KEYS", SERVICE_KEY)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let (sender, mut logs) = tokio::sync::mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = sender.send(line);
            }
        });
        let mut seen = Vec::new();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = logs.recv().await.expect("the server logs until it listens");
                seen.push(line.clone());
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["message"] == "serving gRPC"
                {
                    return json["address"].as_str().unwrap().to_owned();
                }
            }
        })
        .await
        .expect("the server starts");
        Self {
            child,
            address,
            logs,
            seen,
        }
    }

    /// A client that sends the service key.
    async fn client(&self) -> Client {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.address)).unwrap();
        TokenAuthorityClient::with_interceptor(channel.connect().await.unwrap(), ServiceKey)
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits for exit and returns the status and every log line.
    async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits")
            .unwrap();
        while let Some(line) = self.logs.recv().await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_the_user_can_log_in() {
    let workspace = Workspace::new().await;
    let output = create_user(&workspace, "alice", PASSWORD);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let user_id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(uuid::Uuid::try_parse(&user_id).is_ok(), "prints the new user's id: {user_id:?}");

    let server = ServerProcess::start(&workspace, &[]).await;
    let login = login(&mut server.client().await, PASSWORD).await.unwrap();
    assert_eq!(login.user_id, user_id);
    server.terminate();
    assert!(server.wait().await.0.success());
}

#[tokio::test]
async fn user_create_refuses_bad_input_and_taken_names() {
    let workspace = Workspace::new().await;
    let short = create_user(&workspace, "alice", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));

    assert!(create_user(&workspace, "alice", PASSWORD).status.success());
    let again = create_user(&workspace, "ALICE", PASSWORD);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already taken"));
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent() {
    let workspace = Workspace::new().await;
    for _ in 0..2 {
        let output = command(&workspace).arg("migrate").output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let repository = token_authority::repository::Repository::connect(&token_authority::repository::DatabaseConfig {
        url: workspace.database_url.clone(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    assert_eq!(repository.cursor_bounds().await.unwrap().latest, 0, "the outbox exists, empty");
}

#[tokio::test]
async fn a_bad_setting_stops_the_start_and_names_the_setting() {
    let workspace = Workspace::new().await;
    let cases = [
        ("JWT_SECRET", "much-too-short", "JWT_SECRET"),
        ("JWT_EXPIRES_IN", "soon", "JWT_EXPIRES_IN"),
        ("JWT_REFRESH_WINDOW", "48h", "JWT_REFRESH_WINDOW"),
        ("LISTEN_ADDR", "not-an-address", "LISTEN_ADDR"),
        ("DATABASE_URL", "mysql://nope", "DATABASE_URL"),
        ("ADMIN_API_KEYS", "short", "ADMIN_API_KEYS"),
        ("ARGON2_ITERATIONS", "0", "ARGON2_ITERATIONS"),
        ("JWT_ACCEPTED_SECRETS", "an-accepted-secret", "JWT_ACCEPTED_SECRETS"),
        ("JWT_ALGORITHM", "HS512", "JWT_ALGORITHM"),
        ("KEY_ROTATION_INTERVAL", "0s", "KEY_ROTATION_INTERVAL"),
        ("KEY_PUBLISH_AHEAD", "60d", "KEY_PUBLISH_AHEAD"),
        ("KEY_ENCRYPTION_KEY", "a-kek-that-is-not-32-bytes-of-base64", "KEY_ENCRYPTION_KEY"),
        ("KEY_ENCRYPTION_KEY_FILE", "/nonexistent/kek", "KEY_ENCRYPTION_KEY_FILE"),
        ("HTTP_ADDR", "not-an-address", "HTTP_ADDR"),
        ("METRICS_ADDR", "not-an-address", "METRICS_ADDR"),
        ("LOGIN_ATTEMPTS_PER_MINUTE", "-1", "LOGIN_ATTEMPTS_PER_MINUTE"),
        ("SESSION_CACHE_CAPACITY", "0", "SESSION_CACHE_CAPACITY"),
        ("REVOCATION_BUFFER", "0", "REVOCATION_BUFFER"),
        ("REVOCATION_HEARTBEAT", "0s", "REVOCATION_HEARTBEAT"),
        ("CLEANUP_INTERVAL", "0s", "CLEANUP_INTERVAL"),
        ("DATABASE_MAX_CONNECTIONS", "0", "DATABASE_MAX_CONNECTIONS"),
        ("SERVICE_API_KEYS", "short", "SERVICE_API_KEYS"),
        ("LISTEN_ADDR", "0.0.0.0:0", "ALLOW_PLAINTEXT"),
        ("TLS_CERT_FILE", "cert.pem", "TLS_KEY_FILE"),
        ("TLS_CLIENT_CA_FILE", "ca.pem", "TLS_CERT_FILE"),
        ("MAX_REQUEST_KIB", "4", "MAX_REQUEST_KIB"),
        ("REQUEST_TIMEOUT", "0s", "REQUEST_TIMEOUT"),
        ("MAX_CONCURRENT_CALLS", "0", "MAX_CONCURRENT_CALLS"),
        ("JWT_SECRET_FILE", "/nonexistent/secret", "JWT_SECRET_FILE"),
        ("SESSION_BINDING", "sometimes", "SESSION_BINDING"),
        ("SESSION_BINDING_ATTRIBUTES", "shoe_size", "SESSION_BINDING_ATTRIBUTES"),
        ("LOGIN_ATTEMPTS_PER_USER", "5", "LOGIN_ATTEMPTS_PER_USER"),
        ("LOGIN_THROTTLE_WINDOW", "0s", "LOGIN_THROTTLE_WINDOW"),
        ("SECURITY_REVOKE_ON", "everything", "SECURITY_REVOKE_ON"),
        ("SESSION_MAX_LIFETIME", "1d", "SESSION_MAX_LIFETIME"),
        ("AUDIT_RETENTION", "0s", "AUDIT_RETENTION"),
    ];
    for (variable, value, named) in cases {
        let output = command(&workspace)
            .arg("serve")
            .env("SERVICE_API_KEYS", SERVICE_KEY)
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}={value} must not start");
        assert!(stderr.contains(named), "{variable}: {stderr}");
        // A `_FILE` setting's value is a path, which the error names.
        if (variable.contains("SECRET") || variable == "KEY_ENCRYPTION_KEY") && !variable.ends_with("_FILE") {
            assert!(!stderr.contains(value), "the secret is never printed");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_logs_hold_no_secrets() {
    let workspace = Workspace::new().await;
    assert!(create_user(&workspace, "alice", PASSWORD).status.success());
    let server = ServerProcess::start(
        &workspace,
        &[
            ("RUST_LOG", "debug"),
            ("JWT_SECRET", JWT_SECRET),
            ("ADMIN_API_KEYS", ADMIN_KEY),
        ],
    )
    .await;
    let mut client = server.client().await;
    let _ = login(&mut client, "wrong password guess").await;
    // People type passwords into the username field: an unknown username is not logged.
    let _ = client
        .login(proto::LoginRequest {
            username: "my-secret-password-typed-as-username".into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await;
    let login = login(&mut client, PASSWORD).await.unwrap();
    let refreshed = client
        .refresh(proto::RefreshRequest {
            access_token: login.access_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner();
    client
        .logout(proto::LogoutRequest {
            access_token: refreshed.access_token.clone(),
        })
        .await
        .unwrap();

    server.terminate();
    let (status, logs) = server.wait().await;

    assert!(status.success(), "exit status {status:?}");
    let all = logs.join("\n");
    assert!(all.contains("shutting down"));
    assert!(all.contains("login succeeded") && all.contains("logged out"));
    let token_signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    assert!(all.contains("unknown_user"), "the failed login itself is logged");
    for secret in [
        PASSWORD,
        "wrong password guess",
        "my-secret-password-typed-as-username",
        JWT_SECRET,
        ADMIN_KEY,
        "$argon2id$",
        &token_signature(&login.access_token),
        &token_signature(&refreshed.access_token),
    ] {
        assert!(!all.contains(secret), "the logs contain {secret:?}");
    }
}

#[tokio::test]
async fn cleanup_runs_once_and_reports_what_it_removed() {
    let workspace = Workspace::new().await;
    let output = command(&workspace).arg("cleanup").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "deleted 0 expired sessions, 0 old revocation events, 0 old audit records, 0 idle throttle counters and 0 stale known clients"
    );
}

#[tokio::test]
async fn logs_name_the_admin_key_that_acted_never_the_key() {
    let workspace = Workspace::new().await;
    let key = "a-named-admin-key-0123456789";
    let server = ServerProcess::start(&workspace, &[("ADMIN_API_KEYS", &format!("ops-team:{key}"))]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.address)).unwrap();
    let mut admin =
        proto::token_authority_admin_client::TokenAuthorityAdminClient::new(channel.connect().await.unwrap());
    let request = crate::helpers::with_key(
        proto::CreateUserRequest {
            username: "carol".into(),
            password: PASSWORD.into(),
            roles: vec![],
        },
        key,
    );
    admin.create_user(request).await.unwrap();

    server.terminate();
    let (_, logs) = server.wait().await;

    let admin_call = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "admin call")
        .expect("the admin call is logged");
    assert_eq!(admin_call["operator"], "ops-team");
    assert!(!logs.join("\n").contains(key), "the key itself is never logged");
}

#[tokio::test]
async fn without_a_service_credential_the_server_refuses_to_start() {
    let workspace = Workspace::new().await;

    let output = command(&workspace).arg("serve").env("ADMIN_API_KEYS", ADMIN_KEY).output().unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "SERVICE_API_KEYS",
        "TLS_CLIENT_CA_FILE",
        "ALLOW_UNAUTHENTICATED_CALLERS",
    ] {
        assert!(stderr.contains(setting), "names {setting}: {stderr}");
    }
    let opted_out =
        ServerProcess::start(&workspace, &[("SERVICE_API_KEYS", ""), ("ALLOW_UNAUTHENTICATED_CALLERS", "true")]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", opted_out.address)).unwrap();
    let mut anonymous = TokenAuthorityClient::new(channel.connect().await.unwrap());
    let verified = anonymous
        .verify(proto::VerifyRequest {
            access_token: "not.a.token".into(),
            client: None,
        })
        .await;
    assert!(verified.is_ok(), "the opt-out lets calls through: {verified:?}");
    opted_out.terminate();
    opted_out.wait().await;
}

#[tokio::test]
async fn keys_secrets_and_the_database_url_come_from_files() {
    let workspace = Workspace::new().await;
    assert!(create_user(&workspace, "alice", PASSWORD).status.success());
    let file = |name: &str, content: &str| {
        let path = workspace.directory.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let service_keys = file("service-keys", &format!("billing:{SERVICE_KEY}\nother:another-service-key-0123\n"));
    let admin_keys = file("admin-keys", &format!("ops:{ADMIN_KEY}\n"));
    let jwt_secret = file("jwt-secret", &format!("{JWT_SECRET}\n"));
    let database_url = file("database-url", &format!("{}\n", workspace.database_url));
    let server = ServerProcess::start(
        &workspace,
        &[
            ("SERVICE_API_KEYS", ""),
            ("SERVICE_API_KEYS_FILE", &service_keys),
            ("ADMIN_API_KEYS_FILE", &admin_keys),
            ("JWT_SECRET_FILE", &jwt_secret),
            ("DATABASE_URL", ""),
            ("DATABASE_URL_FILE", &database_url),
        ],
    )
    .await;

    let login = login(&mut server.client().await, PASSWORD).await.unwrap();
    server.terminate();
    let (_, logs) = server.wait().await;

    assert!(logs.iter().any(|line| line.contains("signing with JWT_SECRET")), "the secret came from its file");
    let logged_in = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "login succeeded")
        .expect("the login is logged");
    let spans = logged_in["spans"].as_array().expect("the login's spans");
    assert!(spans.iter().any(|span| span["caller"] == "billing"), "the log names the service: {logged_in}");
    assert_eq!(crate::helpers::header_of(&login.access_token)["alg"], "HS256");
    assert!(signed_with(&login.access_token, JWT_SECRET), "signed with the secret from JWT_SECRET_FILE");
    assert!(!signed_with(&login.access_token, "another-secret-of-at-least-32-bytes"), "the check can fail");
}

/// Whether `token`'s HS256 signature was made with `secret`.
fn signed_with(token: &str, secret: &str) -> bool {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

#[tokio::test]
async fn a_setting_and_its_file_twin_together_are_refused_by_both_names() {
    let workspace = Workspace::new().await;
    let path = workspace.directory.path().join("secret");
    std::fs::write(&path, JWT_SECRET).unwrap();
    for (setting, value) in [
        ("JWT_SECRET", JWT_SECRET),
        ("SERVICE_API_KEYS", SERVICE_KEY),
        ("DATABASE_URL", "sqlite:x.db"),
    ] {
        let twin = format!("{setting}_FILE");
        let output = command(&workspace).arg("serve").env(setting, value).env(&twin, &path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{setting} and {twin}");
        assert!(stderr.contains(setting) && stderr.contains(&twin), "{stderr}");
        assert!(!stderr.contains(JWT_SECRET), "no secret echoed: {stderr}");
    }
}

#[tokio::test]
async fn wrong_keys_are_counted_and_logged_at_a_bounded_rate_by_fingerprint() {
    let workspace = Workspace::new().await;
    let server = ServerProcess::start(&workspace, &[]).await;
    let wrong = "a-wrong-service-key-0123456789";
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.address)).unwrap();
    let mut client = TokenAuthorityClient::new(channel.connect().await.unwrap());
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let request = crate::helpers::with_key(
            proto::VerifyRequest {
                access_token: "x".into(),
                client: None,
            },
            wrong,
        );
        let refused = client.verify(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
    let elapsed = started.elapsed().as_secs();
    server.terminate();
    let (_, logs) = server.wait().await;

    let refusals: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "call refused: no valid caller credential")
        .collect();
    use sha2::Digest;
    let fingerprint: String =
        sha2::Sha256::digest(wrong.as_bytes())[..4].iter().map(|byte| format!("{byte:02x}")).collect();
    assert!(!refusals.is_empty(), "wrong keys are logged");
    assert!(refusals.len() as u64 <= 20 + elapsed + 1, "{} lines for 200 refusals in {elapsed}s", refusals.len());
    assert!(
        refusals
            .iter()
            .all(|line| line["key_fingerprint"] == fingerprint.as_str() && line["reason"] == "unknown_key")
    );
    assert!(!logs.join("\n").contains(wrong), "the key itself is never logged");
}

fn keys(workspace: &Workspace, args: &[&str]) -> std::process::Output {
    command(workspace).arg("keys").args(args).output().unwrap()
}

/// The kids `keys list` prints, with their states.
fn listed(workspace: &Workspace) -> Vec<(String, String)> {
    let output = keys(workspace, &["list"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (columns[0].to_owned(), columns[2].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn keys_rotate_list_and_remove_from_the_command_line() {
    let workspace = Workspace::new().await;
    assert!(command(&workspace).arg("migrate").output().unwrap().status.success());

    let rotated = keys(&workspace, &["rotate"]);
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let first = listed(&workspace);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, "active", "nothing signed before it, so it signs at once");

    let unknown = keys(&workspace, &["remove", "--kid", "no-such-kid"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-kid"));
    assert_eq!(listed(&workspace), first, "nothing changed");

    let removed = keys(&workspace, &["remove", "--kid", &first[0].0]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let after = listed(&workspace);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after[0].0, first[0].0, "the removed key is gone");
    assert_eq!(after[0].1, "active", "its replacement signs at once");
}

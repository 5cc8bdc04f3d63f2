//! `GET /auth` on the HTTP listener, alone and behind a real nginx whose
//! `auth_request` guards a trivial upstream (a second nginx server that
//! answers with the identity headers it received), configured as the README
//! shows.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{
    helpers::{PASSWORD, TestApp, TestConfig, http_get_with},
    tools,
};

/// A test server with the HTTP listener on.
async fn http_app() -> TestApp {
    TestConfig::default()
        .configure(|config| config.http.address = Some("127.0.0.1:0".parse().expect("an address")))
        .spawn()
        .await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn auth_answers_200_with_the_identity_of_a_valid_token() {
    let mut app = http_app().await;
    let user_id = app.create_user("alice", PASSWORD, &["reader", "admin"]).await;
    let login = app.login("alice", PASSWORD).await.unwrap();
    let session_id = login.session.as_ref().unwrap().session_id.clone();
    let http = app.http_address.unwrap();

    let (status, headers, _) = http_get_with(http, "/auth", &[("Authorization", &bearer(&login.access_token))]).await;

    assert_eq!(status, 200);
    assert_eq!(headers.get("x-user-id"), Some(&user_id));
    assert_eq!(headers.get("x-session-id"), Some(&session_id));
    assert_eq!(headers.get("x-username").map(String::as_str), Some("alice"));
    assert_eq!(headers.get("x-roles").map(String::as_str), Some("admin,reader"));
}

#[tokio::test]
async fn auth_answers_401_with_a_bearer_challenge_otherwise() {
    let mut app = http_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let revoked = app.login("alice", PASSWORD).await.unwrap().access_token;
    app.logout(&revoked).await.unwrap();
    let http = app.http_address.unwrap();
    let invalid = r#"Bearer error="invalid_token""#;

    for (what, authorization, challenge) in [
        ("revoked", Some(bearer(&revoked)), invalid),
        ("malformed", Some(bearer("not.a.jwt")), invalid),
        ("missing", None, "Bearer"),
        ("another scheme", Some("Basic YWxpY2U6cHc=".to_owned()), "Bearer"),
    ] {
        let headers: Vec<_> = authorization.iter().map(|value| ("Authorization", value.as_str())).collect();
        let (status, response, _) = http_get_with(http, "/auth", &headers).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(response.get("www-authenticate").map(String::as_str), Some(challenge), "{what}");
        assert!(!response.contains_key("x-user-id"), "{what}");
    }
}

#[tokio::test]
async fn auth_answers_503_when_the_database_fails_so_nginx_refuses() {
    let mut app = http_app().await;
    app.create_user("alice", PASSWORD, &[]).await;
    let token = app.login("alice", PASSWORD).await.unwrap().access_token;
    // A fresh process knows no session: /auth must read the database.
    let app = app.restart().await;
    app.execute_sql("ALTER TABLE sessions RENAME TO sessions_gone").await;

    let (status, headers, _) =
        http_get_with(app.http_address.unwrap(), "/auth", &[("Authorization", &bearer(&token))]).await;

    assert_eq!(status, 503);
    assert!(!headers.contains_key("x-user-id"));
}

/// A free port on 127.0.0.1, for nginx to listen on.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// nginx in front of `upstream_port`, asking `authority` (the HTTP
/// listener) about every request: the README's configuration, with the
/// upstream a second server that echoes the identity headers it receives.
fn nginx_config(directory: &Path, front_port: u16, upstream_port: u16, authority: SocketAddr) -> String {
    let directory = directory.display();
    format!(
        r#"
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    server {{
        listen 127.0.0.1:{front_port};

        location / {{
            auth_request /_token_authority;
            auth_request_set $user_id $upstream_http_x_user_id;
            auth_request_set $session_id $upstream_http_x_session_id;
            auth_request_set $username $upstream_http_x_username;
            auth_request_set $roles $upstream_http_x_roles;
            proxy_set_header X-User-Id $user_id;
            proxy_set_header X-Session-Id $session_id;
            proxy_set_header X-Username $username;
            proxy_set_header X-Roles $roles;
            proxy_pass http://127.0.0.1:{upstream_port};
        }}

        location = /_token_authority {{
            internal;
            proxy_pass http://{authority}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}

    server {{
        listen 127.0.0.1:{upstream_port};
        location / {{
            return 200 "user=$http_x_user_id username=$http_x_username roles=$http_x_roles\n";
        }}
    }}
}}
"#
    )
}

/// A running nginx, stopped when dropped.
struct Nginx {
    child: Child,
    address: SocketAddr,
    directory: TempDir,
}

impl Nginx {
    async fn start(binary: &Path, authority: SocketAddr) -> Self {
        let directory = TempDir::new().expect("a directory");
        let (front_port, upstream_port) = (free_port(), free_port());
        let config = directory.path().join("nginx.conf");
        std::fs::write(&config, nginx_config(directory.path(), front_port, upstream_port, authority))
            .expect("the configuration is written");
        let error_log = directory.path().join("error.log");
        let child = Command::new(binary)
            .arg("-p")
            .arg(directory.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], front_port)),
            directory,
        };
        nginx.wait_until_listening().await;
        nginx
    }

    /// Polls until nginx accepts connections; fails with its log if it
    /// exits or never does.
    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.address).await.is_err() {
            let exited = self.child.try_wait().expect("nginx's status");
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "nginx did not start ({exited:?}): {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("error.log")).unwrap_or_default()
    }

    async fn get(&self, headers: &[(&str, &str)]) -> (u16, std::collections::HashMap<String, String>, String) {
        http_get_with(self.address, "/orders", headers).await
    }
}

#[tokio::test]
async fn nginx_auth_request_passes_valid_tokens_with_their_identity_and_refuses_revoked_ones() {
    let Some(binary) = tools::find("nginx") else { return };
    let mut app = http_app().await;
    let user_id = app.create_user("alice", PASSWORD, &["reader"]).await;
    let token = app.login("alice", PASSWORD).await.unwrap().access_token;
    let revoked = app.login("alice", PASSWORD).await.unwrap().access_token;
    app.logout(&revoked).await.unwrap();
    let mut nginx = Nginx::start(&binary, app.http_address.unwrap()).await;

    let (status, _, body) = nginx.get(&[("Authorization", &bearer(&token))]).await;
    let (forged_status, _, forged) = nginx
        .get(&[
            ("Authorization", &bearer(&token)),
            ("X-User-Id", "the-admins-id"),
            ("X-Roles", "admin"),
        ])
        .await;
    let (refused, refused_headers, _) = nginx.get(&[("Authorization", &bearer(&revoked))]).await;
    let (anonymous, anonymous_headers, _) = nginx.get(&[("X-User-Id", &user_id)]).await;

    let log = nginx.log();
    assert_eq!(status, 200, "{log}");
    assert_eq!(body.trim(), format!("user={user_id} username=alice roles=reader"));
    assert_eq!(forged_status, 200);
    assert_eq!(
        forged.trim(),
        format!("user={user_id} username=alice roles=reader"),
        "the token's id and roles, not the client's"
    );
    assert_eq!(refused, 401);
    assert_eq!(refused_headers.get("www-authenticate").map(String::as_str), Some(r#"Bearer error="invalid_token""#));
    assert_eq!(anonymous, 401, "a client-sent X-User-Id alone gets nowhere");
    assert_eq!(anonymous_headers.get("www-authenticate").map(String::as_str), Some("Bearer"));
    nginx.child.kill().await.expect("nginx stops");
}

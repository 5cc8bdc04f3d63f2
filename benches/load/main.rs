//! The load benchmark: starts the real release server on fresh databases,
//! drives it over real gRPC connections with a closed-loop load generator,
//! and prints each figure beside its floor, measured in the same run on the
//! same machine, as a ratio with its target.
//!
//! `cargo bench --bench load` runs the full mode (a few minutes);
//! `cargo bench --bench load -- --short` runs in seconds with small seeds (CI
//! runs it to keep the harness working; its figures are not judged).
//! `-- --only local-verifiers` runs that one row, in either mode.
//! Results go to `bench-results/latest.json` and `bench-results/latest.md`.

mod floors;
mod h2load;
mod load;
mod report;
mod seed;
mod server;
mod verifiers;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use envoy_types::{
    ext_authz::v3::pb::CheckRequest,
    pb::envoy::{
        config::core::v3::{Address, SocketAddress, address, socket_address},
        service::auth::v3::{AttributeContext, attribute_context, authorization_client::AuthorizationClient},
    },
};
use token_authority::{
    domain::Session,
    proto::{self, token_authority_client::TokenAuthorityClient},
};
use tokio_stream::StreamExt;
use tonic::{Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use load::{Call, LoadSpec, Shape, Stats, alternate, closed_loop};
use report::{Machine, Memory, Report};
use server::{SERVICE_KEY, Server};

#[derive(Debug, Parser)]
#[command(about = "Load benchmark of token-authority against its floors")]
struct Args {
    /// Seconds instead of minutes: short runs and small seeds.
    #[arg(long)]
    short: bool,
    /// How long each measured run lasts (default 10s; 1s with --short).
    #[arg(long)]
    duration: Option<humantime::Duration>,
    /// Calls in flight for the throughput runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the load is spread over (every row but Verify
    /// against Health/Check, which runs in each of --shapes).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// The shapes of the Verify against Health/Check comparison, each
    /// `<connections>x<streams per connection>`: by default 64 in flight over
    /// a few connections, then over as many connections.
    #[arg(long, value_delimiter = ',', default_values = ["4x16", "64x1"])]
    shapes: Vec<Shape>,
    /// Sessions in the large database (default 1,000,000; 20,000 with --short).
    #[arg(long)]
    sessions: Option<usize>,
    /// Revocation subscribers held open for the memory figure (default 1,000).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Where the JSON and markdown results go.
    #[arg(long, default_value = "bench-results")]
    output: PathBuf,
    /// Also measure on this PostgreSQL server (a URL naming any database on
    /// it; a fresh one is created): Refresh, and propagation between replicas.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Keep the databases and server logs in this directory (default: a
    /// temporary one, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Runs this row alone (with the seeds and the server it needs).
    #[arg(long, value_enum)]
    only: Option<OnlyRow>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The rows that can run alone (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnlyRow {
    /// Revocation visible in 100 LocalVerifiers.
    LocalVerifiers,
}

/// Alternating slices per comparison in the full mode.
const ROUNDS: usize = 5;
/// Sessions in the small database that Verify cycles through.
const VERIFY_SET: usize = 1000;
/// Calls in flight for the latency-under-load comparison.
const LIGHT_CONCURRENCY: usize = 8;
/// Subscribers that time the propagation of revocations.
const PROPAGATION_SUBSCRIBERS: usize = 100;
/// Client-crate verifiers that time the same.
const LOCAL_VERIFIERS: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = args.duration.map_or(
        if args.short {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        },
        Into::into,
    );
    let spec = LoadSpec {
        concurrency: args.concurrency,
        warmup: duration / 5,
        duration,
    };
    let light = LoadSpec {
        concurrency: LIGHT_CONCURRENCY,
        ..spec
    };
    let large = args.sessions.unwrap_or(if args.short { 20_000 } else { 1_000_000 });
    let logouts = if args.short { 30 } else { 300 };
    let temporary = tempfile::TempDir::new()?;
    let workspace = match &args.work_dir {
        Some(directory) => {
            std::fs::create_dir_all(directory)?;
            directory.clone()
        }
        None => temporary.path().to_owned(),
    };
    let database = |name: &str| format!("sqlite:{}", workspace.join(name).display());
    let mut report = Report::new(args.short, Machine::describe(), spec);

    if args.only == Some(OnlyRow::LocalVerifiers) {
        local_verifiers(&database("verifiers.db"), &workspace, logouts, &mut report).await?;
        report.write(&args.output)?;
        println!("{}", report.markdown());
        return Ok(());
    }

    let rounds = if args.short { 1 } else { ROUNDS };
    // Each comparison alternates `rounds` slices of each side, after one
    // unmeasured warm-up of each.
    let slice = |spec: LoadSpec| LoadSpec {
        warmup: Duration::ZERO,
        duration: spec.duration / rounds as u32,
        ..spec
    };
    let warm = |spec: LoadSpec| LoadSpec {
        warmup: Duration::ZERO,
        duration: spec.warmup,
        ..spec
    };

    eprintln!("seeding: {VERIFY_SET} sessions, {large} sessions, and the floor's own database");
    let floor_seed = seed::seed(&database("floor.db"), args.concurrency).await?;
    let mut rotation_floor =
        floors::RotationFloor::new(seed::repository(&database("floor.db")).await?, floor_seed.sessions);
    let small = seed::seed(&database("small.db"), VERIFY_SET + args.concurrency + logouts).await?;
    let seeding = Instant::now();
    let big = seed::seed(&database("large.db"), large).await?;
    eprintln!("seeded {large} sessions in {:.1}s", seeding.elapsed().as_secs_f64());
    let keyring = Arc::new(seed::keyring()?);
    let tokens = |sessions: &[Session]| -> anyhow::Result<Arc<Vec<String>>> {
        Ok(Arc::new(
            sessions.iter().map(|session| seed::token_for(&keyring, session)).collect::<anyhow::Result<_>>()?,
        ))
    };
    let verify_tokens = tokens(&small.sessions[..VERIFY_SET])?;
    let refresh_tokens = tokens(&small.sessions[VERIFY_SET..VERIFY_SET + args.concurrency])?;
    let logout_sessions = &small.sessions[VERIFY_SET + args.concurrency..];
    let logout_tokens = tokens(logout_sessions)?;
    let big_tokens = tokens(&seed::spread(&big.sessions, VERIFY_SET).into_iter().cloned().collect::<Vec<_>>())?;

    let server = Server::start(&database("small.db"), &workspace.join("small.log")).await?;
    let channels = server.connections(args.connections).await?;
    let generator = Generator::choose(&server, verify_tokens[0].clone());
    report.note(generator.describe());
    report.note(format!(
        "Each ratio compares totals over {rounds} alternating slices of each side, after an unmeasured warm-up of each, so that noise on this shared machine weighs on both sides alike."
    ));

    for &shape in &args.shapes {
        eprintln!("Health/Check against Verify, {} in flight: {shape}", shape.in_flight());
        let spec = LoadSpec {
            concurrency: shape.in_flight(),
            ..spec
        };
        let shape_channels = server.connections(shape.connections).await?;
        generator.health(&shape_channels, warm(spec), shape).await?;
        generator.verify(&shape_channels, warm(spec), shape).await?;
        let (health, verify_one) = alternate(
            rounds,
            async || generator.health(&shape_channels, slice(spec), shape).await,
            async || generator.verify(&shape_channels, slice(spec), shape).await,
        )
        .await?;
        report.verify_against_health(&verify_one, &health, shape);
    }

    if let Some(&shape) = args.shapes.first() {
        eprintln!("Health/Check against ext_authz Check, {} in flight: {shape}", shape.in_flight());
        let spec = in_flight(spec, shape);
        let shape_channels = server.connections(shape.connections).await?;
        generator.health(&shape_channels, warm(spec), shape).await?;
        generator.ext_authz(&shape_channels, warm(spec), shape).await?;
        let (health, check) = alternate(
            rounds,
            async || generator.health(&shape_channels, slice(spec), shape).await,
            async || generator.ext_authz(&shape_channels, slice(spec), shape).await,
        )
        .await?;
        report.ext_authz_against_health(&check, &health, shape);
    }

    if let Some(&shape) = args.shapes.first() {
        eprintln!("over TLS: Health/Check against Verify, {} in flight: {shape}", shape.in_flight());
        let spec = LoadSpec {
            concurrency: shape.in_flight(),
            ..spec
        };
        let pki = server::TestCertificates::write(&workspace)?;
        let tls_server = Server::start_tls(&database("small.db"), &workspace.join("tls.log"), &pki).await?;
        let tls_generator = Generator::choose(&tls_server, verify_tokens[0].clone());
        let tls_channels = tls_server.connections(shape.connections).await?;
        tls_generator.health(&tls_channels, warm(spec), shape).await?;
        tls_generator.verify(&tls_channels, warm(spec), shape).await?;
        let (health, verify_one) = alternate(
            rounds,
            async || tls_generator.health(&tls_channels, slice(spec), shape).await,
            async || tls_generator.verify(&tls_channels, slice(spec), shape).await,
        )
        .await?;
        report.verify_variant_against_health("over TLS", &verify_one, &health, shape);
        tls_server.stop().await?;
    }

    {
        // A fresh deployment signs with EdDSA. Verify checks a token's
        // signature the first time it meets it, then remembers it; a repeated
        // token is what a busy backend sends.
        seed::seed(&database("eddsa.db"), 1).await?;
        let eddsa_server = Server::start_stored_keys(&database("eddsa.db"), &workspace.join("eddsa.log")).await?;
        let token = login_token(&eddsa_server).await?;
        let eddsa_generator = Generator::choose(&eddsa_server, token);
        for &shape in &args.shapes {
            eprintln!("EdDSA: Health/Check against Verify, {} in flight: {shape}", shape.in_flight());
            let spec = LoadSpec {
                concurrency: shape.in_flight(),
                ..spec
            };
            let eddsa_channels = eddsa_server.connections(shape.connections).await?;
            eddsa_generator.health(&eddsa_channels, warm(spec), shape).await?;
            eddsa_generator.verify(&eddsa_channels, warm(spec), shape).await?;
            let (health, verify_one) = alternate(
                rounds,
                async || eddsa_generator.health(&eddsa_channels, slice(spec), shape).await,
                async || eddsa_generator.verify(&eddsa_channels, slice(spec), shape).await,
            )
            .await?;
            report.verify_variant_against_health("of an EdDSA token", &verify_one, &health, shape);
        }
        eddsa_server.stop().await?;
    }

    eprintln!("argon2 on every core against Login, {LIGHT_CONCURRENCY} in flight");
    floors::argon2_hashes(spec.warmup).await?;
    closed_loop(&channels, warm(light), login_call()).await;
    let (argon2, login) = alternate(
        rounds,
        async || floors::argon2_hashes(slice(light).duration).await,
        async || Ok(closed_loop(&channels, slice(light), login_call()).await),
    )
    .await?;
    report.login_against_argon2(&login, argon2.per_second());

    eprintln!("Verify alone against Verify during a login burst, {LIGHT_CONCURRENCY} in flight each");
    let light_shape = Shape::spread(LIGHT_CONCURRENCY, args.connections);
    let mut login_meanwhile = Stats::empty();
    let (verify_alone, verify_loaded) = alternate(
        rounds,
        async || generator.verify(&channels, slice(light), light_shape).await,
        async || {
            let (verify, login) = tokio::join!(
                generator.verify(&channels, slice(light), light_shape),
                closed_loop(&channels, slice(light), login_call()),
            );
            login_meanwhile.absorb(&login);
            verify
        },
    )
    .await?;
    report.verify_under_login(&verify_loaded, &verify_alone, &login_meanwhile);

    eprintln!("the rotation transaction in-process against Refresh, {} in flight", spec.concurrency);
    let refresh = refresh_call(&refresh_tokens);
    rotation_floor.run(Duration::ZERO, spec.warmup).await;
    closed_loop(&channels, warm(spec), refresh.clone()).await;
    let (transaction, refreshes) = alternate(
        rounds,
        async || Ok(rotation_floor.run(Duration::ZERO, slice(spec).duration).await),
        async || Ok(closed_loop(&channels, slice(spec), refresh.clone()).await),
    )
    .await?;
    report.refresh_against_transaction(&refreshes, &transaction);

    eprintln!("revocation propagation to {PROPAGATION_SUBSCRIBERS} subscribers");
    let latest = seed::repository(&database("small.db")).await?.cursor_bounds().await?.latest;
    let propagation = propagation(&server, &server, latest, logout_sessions, &logout_tokens).await?;
    report.propagation(&propagation, PROPAGATION_SUBSCRIBERS);
    local_verifiers(&database("verifiers.db"), &workspace, logouts, &mut report).await?;

    eprintln!("Verify with {VERIFY_SET} sessions against Verify with {large}");
    let large_server = Server::start(&database("large.db"), &workspace.join("large.log")).await?;
    let large_channels = large_server.connections(args.connections).await?;
    let (started_rss, _) = large_server.memory()?;
    closed_loop(&channels, warm(spec), verify_call(verify_tokens.clone())).await;
    closed_loop(&large_channels, warm(spec), verify_call(big_tokens.clone())).await;
    let (verify_small, verify_large) = alternate(
        rounds,
        async || Ok(closed_loop(&channels, slice(spec), verify_call(verify_tokens.clone())).await),
        async || Ok(closed_loop(&large_channels, slice(spec), verify_call(big_tokens.clone())).await),
    )
    .await?;
    report.verify_against_small_table(&verify_large, &verify_small, large);
    server.stop().await?;

    eprintln!("{} subscribers, then every session verified once", args.subscribers);
    let held = hold_subscribers(&large_server, args.subscribers).await?;
    let (with_subscribers_rss, _) = large_server.memory()?;
    let warmed = verify_every_session(&large_channels, &keyring, &big.sessions, spec.concurrency).await?;
    let (warm_rss, peak_rss) = large_server.memory()?;
    drop(held);
    large_server.stop().await?;
    report.memory(Memory {
        sessions: large,
        subscribers: args.subscribers,
        cached_sessions: warmed,
        started_rss,
        with_subscribers_rss,
        warm_rss,
        peak_rss,
    });

    if let Some(server_url) = &args.postgres_url {
        postgres(server_url, spec, rounds, logouts, &workspace, &mut report).await?;
    }

    report.write(&args.output)?;
    println!("{}", report.markdown());
    Ok(())
}

/// Who drives the cheap calls (Health/Check, Verify and ext_authz Check of
/// one token): h2load when installed, else the in-process gRPC client.
/// Either spreads the calls as the shape says; the in-process client over
/// the channels it is given (one per connection of the shape).
enum Generator {
    H2load {
        address: std::net::SocketAddr,
        tls: bool,
        token: String,
    },
    InProcess {
        token: String,
    },
}

impl Generator {
    fn choose(server: &Server, token: String) -> Self {
        if h2load::available() {
            Self::H2load {
                address: server.address,
                tls: server.tls(),
                token,
            }
        } else {
            Self::InProcess { token }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::H2load { .. } => "Health/Check, Verify of one token and ext_authz Check of one token are driven by h2load (nghttp2), an independent HTTP/2 load generator that takes little of the shared CPU; the other rows by the benchmark's own gRPC client.".into(),
            Self::InProcess { .. } => "h2load is not installed (apt-get install nghttp2-client): every row is driven by the benchmark's own gRPC client, whose CPU cost on this machine weighs on the cheap calls (Verify, Health/Check) and their ratio.".into(),
        }
    }

    async fn health(&self, channels: &[Channel], spec: LoadSpec, shape: Shape) -> anyhow::Result<Stats> {
        match self {
            Self::H2load { address, tls, .. } => {
                let target = h2load::Target::new(*address, *tls, "/grpc.health.v1.Health/Check");
                h2load::run(&target, &HealthCheckRequest::default(), spec, shape).await
            }
            Self::InProcess { .. } => Ok(closed_loop(channels, in_flight(spec, shape), health_call()).await),
        }
    }

    async fn verify(&self, channels: &[Channel], spec: LoadSpec, shape: Shape) -> anyhow::Result<Stats> {
        match self {
            Self::H2load { address, tls, token } => {
                let request = proto::VerifyRequest {
                    access_token: token.clone(),
                    client: None,
                };
                let target = h2load::Target::new(*address, *tls, "/tokenauthority.v1.TokenAuthority/Verify")
                    .authorized(SERVICE_KEY);
                h2load::run(&target, &request, spec, shape).await
            }
            Self::InProcess { token } => {
                let call = verify_call(Arc::new(vec![token.clone()]));
                Ok(closed_loop(channels, in_flight(spec, shape), call).await)
            }
        }
    }
}

impl Generator {
    /// Envoy's ext_authz Check of the one token, with the service key as
    /// Envoy's `initial_metadata` sends it.
    async fn ext_authz(&self, channels: &[Channel], spec: LoadSpec, shape: Shape) -> anyhow::Result<Stats> {
        match self {
            Self::H2load { address, tls, token } => {
                let target = h2load::Target::new(*address, *tls, "/envoy.service.auth.v3.Authorization/Check")
                    .authorized(SERVICE_KEY);
                h2load::run(&target, &check_request(token), spec, shape).await
            }
            Self::InProcess { token } => {
                Ok(closed_loop(channels, in_flight(spec, shape), ext_authz_call(token.clone())).await)
            }
        }
    }
}

/// What Envoy sends for a client request that carries `token`: the peers,
/// the request's time and its HTTP attributes with the headers a browser or
/// client library and Envoy itself put there (as Envoy 1.3x builds it for a
/// GET through a listener with `x-request-id` generation on).
fn check_request(token: &str) -> CheckRequest {
    let peer = |address: &str, port: u32, principal: &str| attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: address.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        principal: principal.into(),
        ..Default::default()
    };
    let headers = [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", "/orders?page=2"),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "5f0c2a8e-3b1d-4c7e-9a64-2d8f1e7b0c93"),
        ("authorization", &format!("Bearer {token}")),
    ];
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("10.8.3.17", 53124, "")),
            destination: Some(peer("10.8.0.5", 8443, "spiffe://cluster.local/ns/shop/sa/orders")),
            request: Some(attribute_context::Request {
                time: Some(envoy_types::pb::google::protobuf::Timestamp {
                    seconds: 1_795_000_000,
                    nanos: 0,
                }),
                http: Some(attribute_context::HttpRequest {
                    id: "13359530607844510314".into(),
                    method: "GET".into(),
                    path: "/orders?page=2".into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    headers: headers.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

fn ext_authz_call(token: String) -> Call {
    let request = check_request(&token);
    Arc::new(move |_, channel: Channel| {
        let request = request.clone();
        Box::pin(async move {
            AuthorizationClient::with_interceptor(channel, ServiceKey)
                .check(request)
                .await
                .is_ok_and(|response| response.into_inner().status.is_some_and(|status| status.code == 0))
        })
    })
}

fn in_flight(spec: LoadSpec, shape: Shape) -> LoadSpec {
    LoadSpec {
        concurrency: shape.in_flight(),
        ..spec
    }
}

/// Refresh on PostgreSQL against its transaction there, and a revocation's
/// trip from one replica to the subscribers of another.
async fn postgres(
    server_url: &str,
    spec: LoadSpec,
    rounds: usize,
    logouts: usize,
    workspace: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("PostgreSQL: Refresh, and propagation between two replicas");
    // The floors write to a database of their own: their outbox rows must
    // not wait in the servers' outbox.
    let floor_database = seed::create_postgres_database(server_url).await?;
    let floor_sessions = seed::seed(&floor_database, 5 * spec.concurrency).await?.sessions;
    let mut groups = floor_sessions.chunks(spec.concurrency).map(<[Session]>::to_vec);
    let mut rotation_floor =
        floors::RotationFloor::new(seed::repository(&floor_database).await?, groups.next().unwrap_or_default());
    let mut shapes = Vec::new();
    for shape in [
        floors::Shape::Sequenced,
        floors::Shape::CursorInTransaction,
        floors::Shape::CursorAndNotifyInTransaction,
        floors::Shape::WithoutOutbox,
    ] {
        let sessions = groups.next().unwrap_or_default();
        shapes.push((shape, floors::postgres_rotations(&floor_database, sessions, shape, spec.duration).await?));
    }

    let database = seed::create_postgres_database(server_url).await?;
    let seeded = seed::seed(&database, spec.concurrency + logouts).await?;
    let keyring = seed::keyring()?;
    let (refresh_sessions, logout_sessions) = seeded.sessions.split_at(spec.concurrency);
    let tokens = |sessions: &[Session]| -> anyhow::Result<Vec<String>> {
        sessions.iter().map(|session| seed::token_for(&keyring, session)).collect()
    };
    let first = Server::start(&database, &workspace.join("replica-a.log")).await?;
    let second = Server::start(&database, &workspace.join("replica-b.log")).await?;
    let channels = first.connections(8).await?;
    let refresh = refresh_call(&tokens(refresh_sessions)?);
    let slice = LoadSpec {
        warmup: Duration::ZERO,
        duration: spec.duration / rounds as u32,
        ..spec
    };
    rotation_floor.run(Duration::ZERO, spec.warmup).await;
    closed_loop(
        &channels,
        LoadSpec {
            duration: spec.warmup,
            ..slice
        },
        refresh.clone(),
    )
    .await;
    let (floor, refreshes) = alternate(
        rounds,
        async || Ok(rotation_floor.run(Duration::ZERO, slice.duration).await),
        async || Ok(closed_loop(&channels, slice, refresh.clone()).await),
    )
    .await?;
    let latest = seed::repository(&database).await?.cursor_bounds().await?.latest;
    let propagation = propagation(&second, &first, latest, logout_sessions, &tokens(logout_sessions)?).await?;
    first.stop().await?;
    second.stop().await?;
    report.refresh_on_postgres(&refreshes, &floor);
    report.note(format!(
        "PostgreSQL write transactions of a rotation, {} in flight, raw SQL: as the server commits them (the session update and an outbox row numbered after commit by the sequencer) {:.0}/s; with the cursor taken inside the transaction instead {:.0}/s; with a NOTIFY inside as well {:.0}/s; the session update alone {:.0}/s. The server sends NOTIFY after commit, once per batch, never inside a write transaction.",
        spec.concurrency, shapes[0].1, shapes[1].1, shapes[2].1, shapes[3].1
    ));
    report.propagation_between_replicas(&propagation, PROPAGATION_SUBSCRIBERS);
    Ok(())
}

fn health_call() -> Call {
    Arc::new(|_, channel: Channel| {
        Box::pin(async move { HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok() })
    })
}

fn verify_call(tokens: Arc<Vec<String>>) -> Call {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |_, channel: Channel| {
        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % tokens.len();
        let request = proto::VerifyRequest {
            access_token: tokens[index].clone(),
            client: None,
        };
        Box::pin(async move { client(channel).verify(request).await.is_ok_and(|response| response.into_inner().valid) })
    })
}

fn login_call() -> Call {
    Arc::new(|_, channel: Channel| {
        let request = proto::LoginRequest {
            username: seed::LOGIN_USER.into(),
            password: seed::PASSWORD.into(),
            remember_me: false,
            client: Some(client_context()),
        };
        Box::pin(async move { client(channel).login(request).await.is_ok() })
    })
}

/// A token from a real Login on `server`, signed by its own key.
async fn login_token(server: &Server) -> anyhow::Result<String> {
    let channel = server.connections(1).await?.remove(0);
    let request = proto::LoginRequest {
        username: seed::LOGIN_USER.into(),
        password: seed::PASSWORD.into(),
        remember_me: false,
        client: Some(client_context()),
    };
    Ok(client(channel).login(request).await?.into_inner().access_token)
}

/// The end user's client that Login and Refresh pass: the seeded sessions
/// are bound to it, so every Refresh checks the binding and matches.
fn client_context() -> proto::ClientContext {
    proto::ClientContext {
        ip_address: seed::CLIENT_IP.into(),
        user_agent: seed::USER_AGENT.into(),
        device_id: seed::DEVICE_ID.into(),
    }
}

/// Each worker refreshes its own session, always with its latest token.
fn refresh_call(tokens: &[String]) -> Call {
    let current: Arc<Vec<Mutex<String>>> = Arc::new(tokens.iter().cloned().map(Mutex::new).collect());
    Arc::new(move |worker, channel: Channel| {
        let current = current.clone();
        Box::pin(async move {
            let token = current[worker].lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            let request = proto::RefreshRequest {
                access_token: token,
                client: Some(client_context()),
            };
            match client(channel).refresh(request).await {
                Ok(response) => {
                    *current[worker].lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        response.into_inner().access_token;
                    true
                }
                Err(_) => false,
            }
        })
    })
}

fn watch_request(after_cursor: u64) -> proto::WatchRevocationsRequest {
    proto::WatchRevocationsRequest {
        after_cursor,
        include_snapshot: false,
        session_snapshot: false,
    }
}

/// Sends the service key with every call, as a backend service does.
#[derive(Clone, Copy)]
struct ServiceKey;

impl tonic::service::Interceptor for ServiceKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        let bearer = format!("Bearer {SERVICE_KEY}").parse().expect("ASCII");
        request.metadata_mut().insert("authorization", bearer);
        Ok(request)
    }
}

fn client(
    channel: Channel,
) -> TokenAuthorityClient<tonic::service::interceptor::InterceptedService<Channel, ServiceKey>> {
    TokenAuthorityClient::with_interceptor(channel, ServiceKey)
}

/// Logs sessions out one after the other; every subscriber (live, from
/// cursor `latest`) notes when each event arrives. Latency: from Logout's
/// answer to the event's arrival.
async fn propagation(
    subscribe_on: &Server,
    logout_on: &Server,
    latest: u64,
    sessions: &[Session],
    tokens: &[String],
) -> anyhow::Result<Stats> {
    let channels = subscribe_on.connections(10).await?;
    let mut subscribers = Vec::new();
    for index in 0..PROPAGATION_SUBSCRIBERS {
        let mut client = client(channels[index % channels.len()].clone());
        let mut stream = client.watch_revocations(watch_request(latest)).await?.into_inner();
        let expected = sessions.len();
        subscribers.push(tokio::spawn(async move {
            let mut arrivals = HashMap::new();
            while arrivals.len() < expected {
                match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                    Ok(Some(Ok(event))) if event.reason() == proto::RevocationReason::Logout => {
                        arrivals.insert(event.session_id, Instant::now());
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            arrivals
        }));
    }
    let mut client = client(logout_on.connections(1).await?.remove(0));
    let mut answered = HashMap::new();
    for (session, token) in sessions.iter().zip(tokens) {
        client
            .logout(proto::LogoutRequest {
                access_token: token.clone(),
            })
            .await?;
        answered.insert(session.id.to_string(), Instant::now());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut stats = Stats::empty();
    for subscriber in subscribers {
        let arrivals = subscriber.await?;
        for (session, at) in &answered {
            match arrivals.get(session) {
                Some(arrival) => stats.record(arrival.saturating_duration_since(*at)),
                None => stats.errors += 1,
            }
        }
    }
    stats.elapsed = Duration::from_secs(1);
    Ok(stats)
}

/// Revocation visible in [`LOCAL_VERIFIERS`] of the client crate's
/// verifiers, on a server of its own that signs with its stored EdDSA key
/// (the verifiers trust only keys from the stream, never the HS256 secret
/// the seeded tokens are signed with).
async fn local_verifiers(
    database: &str,
    workspace: &std::path::Path,
    logouts: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("revocation visible in {LOCAL_VERIFIERS} LocalVerifiers");
    seed::seed(database, 1).await?;
    let server = Server::start_stored_keys(database, &workspace.join("verifiers.log")).await?;
    let visible = verifiers::revocation_visible(&server, LOCAL_VERIFIERS, logouts).await?;
    server.stop().await?;
    report.local_verifiers(&visible, LOCAL_VERIFIERS);
    Ok(())
}

/// Opens `count` revocation streams over a few connections and keeps them open.
async fn hold_subscribers(
    server: &Server,
    count: usize,
) -> anyhow::Result<Vec<tonic::Streaming<proto::RevocationEvent>>> {
    let channels = server.connections(count.div_ceil(100).max(1)).await?;
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let mut client = client(channels[index % channels.len()].clone());
        streams.push(client.watch_revocations(watch_request(0)).await?.into_inner());
    }
    Ok(streams)
}

/// Verifies every session once (filling the server's session cache).
async fn verify_every_session(
    channels: &[Channel],
    keyring: &Arc<token_authority::domain::tokens::Keyring>,
    sessions: &[Session],
    concurrency: usize,
) -> anyhow::Result<usize> {
    let sessions = Arc::new(sessions.to_vec());
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            let keyring = keyring.clone();
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let mut client = client(channel);
                let mut verified = 0;
                for session in sessions.iter().skip(worker).step_by(concurrency) {
                    let access_token = seed::token_for(&keyring, session)?;
                    if client
                        .verify(proto::VerifyRequest {
                            access_token,
                            client: None,
                        })
                        .await?
                        .into_inner()
                        .valid
                    {
                        verified += 1;
                    }
                }
                anyhow::Ok(verified)
            })
        })
        .collect();
    let mut verified = 0;
    for worker in workers {
        verified += worker.await??;
    }
    Ok(verified)
}

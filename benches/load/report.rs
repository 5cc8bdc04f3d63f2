//! The results: a markdown table for people (and the README), JSON for tools.

use std::path::Path;

use serde_json::{Value, json};

use super::load::{LoadSpec, Shape, Stats};

const MIB: f64 = 1024.0 * 1024.0;

/// The machine the figures come from.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or_else(|| "unknown CPU".into(), |(_, name)| name.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// The memory figures of the large database run.
pub struct Memory {
    pub sessions: usize,
    pub subscribers: usize,
    pub cached_sessions: usize,
    pub started_rss: u64,
    pub with_subscribers_rss: u64,
    pub warm_rss: u64,
    pub peak_rss: u64,
}

struct Row {
    measured: String,
    result: String,
    floor: String,
    ratio: String,
    target: String,
    /// `None` when the row has no target or in short mode.
    met: Option<bool>,
    json: Value,
}

pub struct Report {
    short: bool,
    machine: Machine,
    spec: LoadSpec,
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn load(stats: &Stats) -> String {
    format!(
        "{:.0}/s; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms{}",
        stats.per_second(),
        stats.quantile_ms(0.5),
        stats.quantile_ms(0.99),
        stats.quantile_ms(0.999),
        if stats.errors > 0 {
            format!("; {} errors", stats.errors)
        } else {
            String::new()
        }
    )
}

fn stats_json(stats: &Stats) -> Value {
    json!({
        "per_second": stats.per_second(),
        "completed": stats.completed,
        "errors": stats.errors,
        "p50_ms": stats.quantile_ms(0.5),
        "p99_ms": stats.quantile_ms(0.99),
        "p999_ms": stats.quantile_ms(0.999),
    })
}

impl Report {
    pub fn new(short: bool, machine: Machine, spec: LoadSpec) -> Self {
        Self {
            short,
            machine,
            spec,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn judge(&self, met: bool) -> Option<bool> {
        (!self.short).then_some(met)
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn verify_against_health(&mut self, verify: &Stats, health: &Stats, shape: Shape) {
        let throughput = verify.per_second() / health.per_second();
        let p99 = verify.quantile_ms(0.99) / health.quantile_ms(0.99);
        self.rows.push(Row {
            measured: format!("Verify (valid token, cached session), {} in flight: {shape}", shape.in_flight()),
            result: load(verify),
            floor: format!("Health/Check, same load: {}", load(health)),
            ratio: format!("throughput {throughput:.2}x, p99 {p99:.2}x"),
            target: "throughput >= 0.85x, p99 <= 2x".into(),
            met: self.judge(throughput >= 0.85 && p99 <= 2.0),
            json: json!({"shape": {"connections": shape.connections, "streams_per_connection": shape.streams,
                    "in_flight": shape.in_flight()},
                "verify": stats_json(verify), "health_check": stats_json(health),
                "throughput_ratio": throughput, "p99_ratio": p99}),
        });
    }

    /// Verify on a server set up otherwise (TLS, asymmetric keys) against
    /// Health/Check on that same server: `variant` names the setup.
    pub fn verify_variant_against_health(&mut self, variant: &str, verify: &Stats, health: &Stats, shape: Shape) {
        let throughput = verify.per_second() / health.per_second();
        let p99 = verify.quantile_ms(0.99) / health.quantile_ms(0.99);
        self.rows.push(Row {
            measured: format!("Verify {variant}, {} in flight: {shape}", shape.in_flight()),
            result: load(verify),
            floor: format!("Health/Check on the same server, same load: {}", load(health)),
            ratio: format!("throughput {throughput:.2}x, p99 {p99:.2}x"),
            target: "throughput >= 0.8x".into(),
            met: self.judge(throughput >= 0.8),
            json: json!({"variant": variant,
                "shape": {"connections": shape.connections, "streams_per_connection": shape.streams,
                    "in_flight": shape.in_flight()},
                "verify": stats_json(verify), "health_check": stats_json(health),
                "throughput_ratio": throughput, "p99_ratio": p99}),
        });
    }

    /// Envoy's ext_authz Check of a valid token against Health/Check on the
    /// same server: what a mesh pays per request.
    pub fn ext_authz_against_health(&mut self, check: &Stats, health: &Stats, shape: Shape) {
        let throughput = check.per_second() / health.per_second();
        let p99 = check.quantile_ms(0.99) / health.quantile_ms(0.99);
        self.rows.push(Row {
            measured: format!("ext_authz Check (valid token), {} in flight: {shape}", shape.in_flight()),
            result: load(check),
            floor: format!("Health/Check on the same server, same load: {}", load(health)),
            ratio: format!("throughput {throughput:.2}x, p99 {p99:.2}x"),
            target: "throughput >= 0.8x".into(),
            met: self.judge(throughput >= 0.8),
            json: json!({"variant": "ext_authz",
                "shape": {"connections": shape.connections, "streams_per_connection": shape.streams,
                    "in_flight": shape.in_flight()},
                "ext_authz_check": stats_json(check), "health_check": stats_json(health),
                "throughput_ratio": throughput, "p99_ratio": p99}),
        });
    }

    pub fn verify_against_small_table(&mut self, large: &Stats, small: &Stats, sessions: usize) {
        let throughput = large.per_second() / small.per_second();
        self.rows.push(Row {
            measured: format!("Verify with {sessions} sessions in the database"),
            result: load(large),
            floor: format!("Verify with 1,000 sessions: {}", load(small)),
            ratio: format!("{throughput:.2}x"),
            target: ">= 0.9x".into(),
            met: self.judge(throughput >= 0.9),
            json: json!({"sessions": sessions, "verify": stats_json(large), "verify_small": stats_json(small),
                "throughput_ratio": throughput}),
        });
    }

    pub fn login_against_argon2(&mut self, login: &Stats, argon2_per_second: f64) {
        let ratio = login.per_second() / argon2_per_second;
        self.rows.push(Row {
            measured: "Login with a client context (throttle, known clients, audit), 8 in flight".into(),
            result: load(login),
            floor: format!("argon2id (m=19456, t=2, p=1) on every core, in-process: {argon2_per_second:.1} hashes/s"),
            ratio: format!("{ratio:.2}x"),
            target: ">= 0.9x".into(),
            met: self.judge(ratio >= 0.9),
            json: json!({"login": stats_json(login), "argon2_per_second": argon2_per_second, "ratio": ratio}),
        });
    }

    pub fn verify_under_login(&mut self, loaded: &Stats, alone: &Stats, login: &Stats) {
        let p99 = loaded.quantile_ms(0.99);
        let ratio = p99 / alone.quantile_ms(0.99);
        self.rows.push(Row {
            measured: format!("Verify p99 while Login is saturated ({:.0} logins/s meanwhile)", login.per_second()),
            result: load(loaded),
            floor: format!("Verify alone, same load: {}", load(alone)),
            ratio: format!("p99 {ratio:.2}x"),
            target: "p99 <= 5 ms and <= 3x".into(),
            met: self.judge(p99 <= 5.0 && ratio <= 3.0),
            json: json!({"verify": stats_json(loaded), "verify_alone": stats_json(alone),
                "login_meanwhile": stats_json(login), "p99_ratio": ratio}),
        });
    }

    pub fn refresh_against_transaction(&mut self, refresh: &Stats, transaction: &Stats) {
        let ratio = refresh.per_second() / transaction.per_second();
        self.rows.push(Row {
            measured: format!("Refresh with a bound client (binding checked, audited), {} in flight", self.spec.concurrency),
            result: load(refresh),
            floor: format!(
                "its write transaction (user read, guarded update, audit record, outbox row) through the same repository and driver, in-process: {}",
                load(transaction)
            ),
            ratio: format!("{ratio:.2}x"),
            target: ">= 0.5x".into(),
            met: self.judge(ratio >= 0.5),
            json: json!({"refresh": stats_json(refresh), "transaction": stats_json(transaction), "ratio": ratio}),
        });
    }

    pub fn refresh_on_postgres(&mut self, refresh: &Stats, transaction: &Stats) {
        let ratio = refresh.per_second() / transaction.per_second();
        self.rows.push(Row {
            measured: format!("Refresh on PostgreSQL, {} in flight", self.spec.concurrency),
            result: load(refresh),
            floor: format!(
                "its write transaction (user read, guarded update, audit record, outbox row) through the same repository and driver, in-process: {}",
                load(transaction)
            ),
            ratio: format!("{ratio:.2}x"),
            target: "none: shown for the outbox's write cost".into(),
            met: None,
            json: json!({"refresh": stats_json(refresh), "transaction": stats_json(transaction), "ratio": ratio}),
        });
    }

    pub fn propagation_between_replicas(&mut self, propagation: &Stats, subscribers: usize) {
        let measured = format!(
            "Propagation between replicas on PostgreSQL: Logout on A returns -> event received by {subscribers} subscribers of B"
        );
        self.propagation_row(measured, propagation, subscribers, "p99 <= 100 ms", 100.0);
    }

    pub fn propagation(&mut self, propagation: &Stats, subscribers: usize) {
        let measured = format!("Revocation propagation: Logout returns -> event received by {subscribers} subscribers");
        self.propagation_row(measured, propagation, subscribers, "p99 <= 10 ms on SQLite", 10.0);
    }

    fn propagation_row(
        &mut self,
        measured: String,
        propagation: &Stats,
        subscribers: usize,
        target: &str,
        p99_limit_ms: f64,
    ) {
        let p99 = propagation.quantile_ms(0.99);
        self.rows.push(Row {
            measured,
            result: format!(
                "{} samples; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms{}",
                propagation.completed,
                propagation.quantile_ms(0.5),
                p99,
                propagation.quantile_ms(0.999),
                propagation.max_ms(),
                if propagation.errors > 0 {
                    format!("; {} missing", propagation.errors)
                } else {
                    String::new()
                }
            ),
            floor: "-".into(),
            ratio: "-".into(),
            target: target.into(),
            met: self.judge(p99 <= p99_limit_ms && propagation.errors == 0),
            json: json!({"subscribers": subscribers, "latency": stats_json(propagation),
                "max_ms": propagation.max_ms()}),
        });
    }

    /// Revocation as the client crate's verifiers see it.
    pub fn local_verifiers(&mut self, visible: &Stats, verifiers: usize) {
        let measured = format!(
            "Revocation visible in {verifiers} LocalVerifiers (the client crate's, each on its own stream and connection): Logout returns -> each refuses the token, seen before, as revoked"
        );
        self.propagation_row(measured, visible, verifiers, "p99 <= 10 ms on SQLite", 10.0);
        self.notes.push(format!(
            "LocalVerifiers: {verifiers} built with the client crate's public API (`Client::builder(..).service_key(..).connect_lazy()`, `LocalVerifier::builder(..).start()`), in the benchmark's process, on a server signing with its own stored EdDSA key; each round logs in, has every verifier accept the new token once, logs out, and takes the instant each verifier, woken by `LocalVerifier::changes`, first answers `Revoked` from `verify_local`. Rounds run one after the other."
        ));
    }

    pub fn memory(&mut self, memory: Memory) {
        let per_subscriber =
            memory.with_subscribers_rss.saturating_sub(memory.started_rss) as f64 / memory.subscribers.max(1) as f64;
        let per_session =
            memory.warm_rss.saturating_sub(memory.with_subscribers_rss) as f64 / memory.cached_sessions.max(1) as f64;
        let peak = memory.peak_rss as f64 / MIB;
        self.rows.push(Row {
            measured: format!(
                "Server memory (peak RSS) with {} sessions and {} subscribers",
                memory.sessions, memory.subscribers
            ),
            result: format!("{peak:.0} MiB"),
            floor: "-".into(),
            ratio: "-".into(),
            target: "<= 512 MiB".into(),
            met: self.judge(peak <= 512.0),
            json: json!({"sessions": memory.sessions, "subscribers": memory.subscribers,
                "cached_sessions": memory.cached_sessions, "started_rss_mib": memory.started_rss as f64 / MIB,
                "with_subscribers_rss_mib": memory.with_subscribers_rss as f64 / MIB,
                "warm_rss_mib": memory.warm_rss as f64 / MIB, "peak_rss_mib": peak,
                "bytes_per_subscriber": per_subscriber, "bytes_per_cached_session": per_session}),
        });
        self.notes.push(format!(
            "Memory: {:.0} MiB after start; {:.1} KiB per subscriber ({} held open); {:.0} bytes per session in Verify's caches ({} sessions cached after every session was verified once, with as many of their tokens as VERIFIED_TOKEN_CACHE_CAPACITY keeps). The database's rows stay on disk: SQLite's page cache is bounded per connection.",
            memory.started_rss as f64 / MIB,
            per_subscriber / 1024.0,
            memory.subscribers,
            per_session,
            memory.cached_sessions,
        ));
    }

    pub fn markdown(&self) -> String {
        let mut text = format!(
            "Machine: {}, {} cores, {:.0} GiB, Linux {}. {} mode: each side of a comparison measured for {:?} after a {:?} warm-up, over real gRPC connections from a closed-loop generator on the same machine.\n\n",
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.kernel,
            if self.short { "Short" } else { "Full" },
            self.spec.duration,
            self.spec.warmup,
        );
        text.push_str("| measured | result | floor | ratio | target | met |\n|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not judged",
            };
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.measured, row.result, row.floor, row.ratio, row.target, met
            ));
        }
        for note in &self.notes {
            text.push_str(&format!("\n{note}\n"));
        }
        text
    }

    pub fn write(&self, directory: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(directory)?;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| json!({"measured": row.measured, "target": row.target, "met": row.met, "figures": row.json}))
            .collect();
        let document = json!({
            "mode": if self.short { "short" } else { "full" },
            "machine": {"cpu": self.machine.cpu, "cores": self.machine.cores,
                "memory_gib": self.machine.memory_gib, "kernel": self.machine.kernel},
            "run_seconds": self.spec.duration.as_secs_f64(),
            "concurrency": self.spec.concurrency,
            "rows": rows,
            "notes": self.notes,
        });
        std::fs::write(directory.join("latest.json"), serde_json::to_string_pretty(&document)?)?;
        std::fs::write(directory.join("latest.md"), self.markdown())?;
        Ok(())
    }
}

//! Crash safety: a reference server process is killed with SIGKILL in the middle of a
//! `harness load --verify` run, while messages are in flight, and started again on the same data
//! directory and ports. The load goes on through the outage (its sessions fail and are counted)
//! and every message the server acknowledged must then be in the mailboxes exactly once, in a
//! store that agrees with itself. Counts only: nothing asserts on how fast anything went.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::load::workload::{Kind, Size, Workload};
use harness::load::{self, LoadOptions, Mode};
use harness::spec::TargetSpec;

/// Load accounts beside alice: mail spreads over several mailboxes.
const ACCOUNTS: usize = 8;

/// The one test here, which also runs as the server process: its name as the test harness
/// knows it, the module path below the crate.
fn test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or("", |(_, module)| module);
    format!("{module}::acknowledged_mail_survives_sigkill_mid_load_exactly_once")
}
/// Set in the server process: the configuration file it serves. The test starts its own
/// executable again as the server (see [`serve`]), so that nothing has to build the
/// `reference-server` binary from inside a test.
const SERVE_CONFIG: &str = "CRASH_TEST_SERVE_CONFIG";
/// Set in the server process: its data directory.
const SERVE_DATA: &str = "CRASH_TEST_SERVE_DATA";

/// The server process: what the `reference-server` binary does with `--config` and
/// `--data-dir` (start, print the bound addresses and "ready" on stdout), then serve until it is
/// killed. It runs the same library entry point as the binary; the signal handling the binary
/// adds plays no part under SIGKILL.
async fn serve(config: &Path, data_dir: &Path) -> ! {
    let mut config = reference_server::Config::load(config).expect("server configuration");
    config.data_dir = Some(data_dir.to_owned());
    let server = reference_server::start(config)
        .await
        .expect("start the reference server");
    // The test harness has printed the test's name without a line end.
    println!();
    for listener in server.listeners() {
        println!("listening {} {}", listener.role, listener.addr);
    }
    println!("ready");
    std::future::pending::<()>().await;
    unreachable!("a pending future never completes")
}

fn config(ports: Option<&[(String, u16)]>) -> String {
    let mut text = String::from("domains: [example.test]\naccounts:\n");
    text.push_str("  - { address: alice@example.test, password: alice-secret }\n");
    for n in 1..=ACCOUNTS {
        text.push_str(&format!(
            "  - {{ address: load{n}@example.test, password: load{n}-secret }}\n"
        ));
    }
    text.push_str("listeners:\n");
    for role in ["smtp", "pop3s", "imaps"] {
        let port = ports.map_or(0, |ports| {
            ports.iter().find(|(r, _)| r == role).expect("bound role").1
        });
        text.push_str(&format!(
            "  - {{ role: {role}, address: \"127.0.0.1:{port}\" }}\n"
        ));
    }
    // Load comes from one address.
    text.push_str("limits: { connections: 20000, connections_per_address: 20000 }\n");
    text
}

/// The server process; killed on drop if the test fails half-way.
struct Server {
    child: Child,
    ports: Vec<(String, u16)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with `config`, logging to `log`; `None` when it exits before it is ready
/// (a port it must bind again is taken for a moment).
fn try_start(dir: &Path, config: &str, log: &Path) -> Option<Server> {
    let path = dir.join("server.yaml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(std::env::current_exe().expect("the test executable"))
        .arg(test_name())
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(SERVE_CONFIG, &path)
        .env(SERVE_DATA, dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start reference-server");
    let stdout = child.stdout.take().unwrap();
    let mut ports = Vec::new();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listening ") {
            let mut words = rest.split(' ');
            let role = words.next().unwrap().to_owned();
            let addr: std::net::SocketAddr = words.next().unwrap().parse().unwrap();
            ports.push((role, addr.port()));
        }
        if line == "ready" {
            ready = true;
            break;
        }
    }
    let server = Server { child, ports };
    ready.then_some(server)
}

fn start(dir: &Path, config: &str, log: &Path) -> Server {
    // A client of the load may hold one of the ports as its own source port for an instant.
    for _ in 0..50 {
        if let Some(server) = try_start(dir, config, log) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "reference-server did not start:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn profile(dir: &Path, ports: &[(String, u16)]) -> PathBuf {
    let port = |role: &str| ports.iter().find(|(r, _)| r == role).unwrap().1;
    let mut text = format!(
        "name: reference-server process\nhost: 127.0.0.1\ndomain: example.test\n\
         tls: {{ ca_file: data/tls/cert.pem, server_name: localhost }}\n\
         ports: {{ smtp: {}, pop3s: {}, imaps: {} }}\n\
         foreign_recipient: x@elsewhere.test\naccounts:\n",
        port("smtp"),
        port("pop3s"),
        port("imaps")
    );
    for n in 1..=ACCOUNTS {
        text.push_str(&format!(
            "  - {{ address: load{n}@example.test, password: load{n}-secret }}\n"
        ));
    }
    let path = dir.join("target.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mail_survives_sigkill_mid_load_exactly_once() {
    // The server process is this test again, run with the server's configuration in the
    // environment.
    if let (Some(config), Some(data_dir)) =
        (std::env::var_os(SERVE_CONFIG), std::env::var_os(SERVE_DATA))
    {
        serve(Path::new(&config), Path::new(&data_dir)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = start(dir.path(), &config(None), &log);
    let ports = server.ports.clone();
    let target = profile(dir.path(), &ports);

    // Open loop, so that sessions keep arriving through the outage; six messages of 32 KiB to
    // a connection, so that at any moment several connections are inside a transaction.
    let mut workload = Workload::builtin(Kind::Relay);
    workload.mix[0].size = Some(Size(32 * 1024));
    let mut options = LoadOptions::new(workload, Mode::Open { rate: 150.0 });
    options.per_connection = 6;
    options.duration = Duration::from_secs(5);
    options.warmup = Duration::ZERO;
    options.timeout = Duration::from_secs(10);
    options.verify = true;
    options.verify_wait = Duration::from_secs(10);
    options.progress = false;
    let run = tokio::spawn(load::run(TargetSpec::Profile(target), options));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    // SIGKILL: no chance to finish anything.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    // Down long enough for the open loop to start sessions that find nothing listening.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let restarted = {
        let (dir, config, log) = (dir.path().to_owned(), config(Some(&ports)), log.clone());
        tokio::task::spawn_blocking(move || start(&dir, &config, &log))
            .await
            .unwrap()
    };
    assert_eq!(restarted.ports, ports, "the restarted server moved");

    let summary = run
        .await
        .unwrap()
        .expect("the load run goes on through the outage");
    let verify = summary.verify.clone().expect("verify figures");
    let refused = summary
        .errors_by_phase
        .get("connect")
        .and_then(|kinds| kinds.get("refused"))
        .copied()
        .unwrap_or(0);
    let in_transaction: u64 = summary
        .errors_by_phase
        .iter()
        .filter(|(phase, _)| ["mail", "rcpt", "data", "data_end"].contains(&phase.as_str()))
        .flat_map(|(_, kinds)| kinds.values())
        .sum();
    // The figures, for the record (`cargo test -- --nocapture`).
    println!(
        "crash: acknowledged {}, missing {}, duplicated {}, mailboxes {}, inconsistencies {}; \
         failed sessions {} (refused {refused}, cut off in a transaction {in_transaction})\n{}",
        verify.acknowledged,
        verify.missing,
        verify.duplicated,
        verify.mailboxes,
        verify.inconsistent,
        summary.errors,
        summary.render()
    );
    let report = format!(
        "{}\nserver log:\n{}",
        summary.render(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(verify.acknowledged > 0, "{report}");
    assert_eq!(verify.missing, 0, "{report}");
    assert_eq!(verify.duplicated, 0, "{report}");
    assert!(verify.mailboxes > 0, "{report}");
    assert_eq!(verify.inconsistent, 0, "{report}");
    // The outage was seen: sessions found nothing listening.
    assert!(summary.errors > 0 && refused > 0, "{report}");
    drop(restarted);
}

//! Many idle IMAP connections: what each costs the reference server in resident memory, and how
//! long a message takes from the 250 of its DATA on port 587 to the EXISTS an IDLE client hears.
//!
//! Not a criterion bench: it holds thousands of connections once and reports figures. The
//! server runs in a child process (this binary again, with `IMAP_IDLE_SERVER` set) so that its
//! memory is its own. Every connection uses TLS on the imaps port, logs in, selects INBOX and
//! IDLEs; the accounts are shared out round robin. Then messages are submitted one at a time on
//! 587 (STARTTLS, AUTH once) to the accounts in turn, and for each the first IDLE client of the
//! recipient account times the EXISTS.
//!
//! `cargo bench -p benches --bench imap_idle` runs 10,000 connections over 100 accounts and 1,000
//! messages (`cargo test` runs 20 connections over 10 accounts and 20 messages, to show that it
//! works); `IDLE_CONNECTIONS`, `IDLE_ACCOUNTS` and `IDLE_MESSAGES` change that. Needs an open
//! file limit above twice the connections (`ulimit -n`). Bounded: every wait has a timeout and
//! the whole run stops after 20 minutes.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::clients::imap::{ImapClient, Response};
use harness::clients::smtp::SmtpClient;
use harness::clients::tls::TlsClient;
use harness::target::TlsSettings;
use reference_server::Config;
use reference_server::config::Account;

const DOMAIN: &str = "example.test";
const TIMEOUT: Duration = Duration::from_secs(30);
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn account(index: usize) -> (String, String) {
    (
        format!("idle{index}@{DOMAIN}"),
        format!("idle{index}-secret"),
    )
}

/// The child: starts the server, prints its ports and certificate, runs until stdin closes.
fn serve(dir: &str, accounts: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = Config::ephemeral(dir.into());
    config.accounts = (0..accounts)
        .map(|i| {
            let (address, password) = account(i);
            Account {
                address,
                password: Some(password),
                password_hash: None,
            }
        })
        .collect();
    config.limits.connections = 1_000_000;
    let server = runtime
        .block_on(reference_server::start(config))
        .expect("start the reference server");
    let port = |role| server.addr(role).expect("listener").port();
    println!("imaps {}", port(reference_server::Role::Imaps));
    println!("submission {}", port(reference_server::Role::Submission));
    println!("cert {}", server.cert_pem().replace('\n', "|"));
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    runtime.block_on(server.shutdown());
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

async fn idle_client(addr: &str, tls: &TlsClient, index: usize) -> ImapClient {
    let (user, password) = account(index);
    let mut client = ImapClient::connect_tls(addr, tls, TIMEOUT)
        .await
        .expect("connect");
    assert!(client.greeting().await.expect("greeting").is_ok());
    assert!(client.login(&user, &password).await.expect("login").is_ok());
    let selected = client.select("INBOX").await.expect("SELECT");
    assert!(selected.result.is_ok(), "{}", selected.result.tagged);
    client
        .idle_start()
        .await
        .expect("IDLE")
        .expect("IDLE accepted");
    client
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    // `cargo test` runs this without `--bench`: a small run that shows the bench still works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let accounts = setting("IDLE_ACCOUNTS", if smoke { 10 } else { 100 }).max(1);
    if let Ok(dir) = std::env::var("IMAP_IDLE_SERVER") {
        return serve(&dir, accounts);
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --no-run` and test listers ask; there is nothing to list
    }
    let connections = setting("IDLE_CONNECTIONS", if smoke { 20 } else { 10_000 }).max(accounts);
    let messages = setting("IDLE_MESSAGES", if smoke { 20 } else { 1_000 });
    let started = Instant::now();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("IMAP_IDLE_SERVER", dir.path())
        .env("IDLE_ACCOUNTS", accounts.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut imaps, mut submission, mut cert) = (String::new(), String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("server output");
        match line.split_once(' ') {
            Some(("imaps", port)) => imaps = format!("127.0.0.1:{port}"),
            Some(("submission", port)) => submission = format!("127.0.0.1:{port}"),
            Some(("cert", pem)) => cert = pem.replace('|', "\n"),
            _ if line == "ready" => break,
            _ => {}
        }
    }
    let tls = Arc::new(
        TlsClient::from_settings(
            &TlsSettings {
                ca_pem: Some(cert),
                ..TlsSettings::default()
            },
            "127.0.0.1",
        )
        .expect("TLS settings"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let base_kib = resident_kib(pid);
    println!("server RSS at start: {} MiB", base_kib / 1024);

    let clients = runtime.block_on(async {
        let mut clients: Vec<Option<ImapClient>> = (0..connections).map(|_| None).collect();
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut done = 0;
        while done < connections {
            assert!(started.elapsed() < RUN_LIMIT, "ran out of time connecting");
            while next < connections && tasks.len() < 64 {
                let (addr, tls, index) = (imaps.clone(), tls.clone(), next);
                tasks.spawn(
                    async move { (index, idle_client(&addr, &tls, index % accounts).await) },
                );
                next += 1;
            }
            let (index, client) = tasks.join_next().await.expect("a task").expect("no panic");
            clients[index] = Some(client);
            done += 1;
            if done % 1000 == 0 {
                println!("  {done} connections idle ({:.0?})", started.elapsed());
            }
        }
        clients.into_iter().map(Option::unwrap).collect::<Vec<_>>()
    });
    let held_kib = resident_kib(pid);
    println!(
        "{connections} connections idle after {:.1?}; server RSS {} MiB, {:.1} KiB per connection",
        started.elapsed(),
        held_kib / 1024,
        held_kib.saturating_sub(base_kib) as f64 / connections as f64
    );

    let mut probes: Vec<ImapClient> = Vec::with_capacity(accounts);
    let mut rest = Vec::with_capacity(connections - accounts);
    for (index, client) in clients.into_iter().enumerate() {
        if index < accounts {
            probes.push(client);
        } else {
            rest.push(client);
        }
    }
    let latencies = runtime.block_on(async {
        let mut smtp = SmtpClient::connect(&submission, TIMEOUT)
            .await
            .expect("587");
        assert_eq!(smtp.read_reply().await.expect("greeting").code, 220);
        smtp.ehlo("bench.test").await.expect("EHLO");
        assert_eq!(smtp.starttls(&tls).await.expect("STARTTLS").code, 220);
        smtp.ehlo("bench.test").await.expect("EHLO");
        let (sender, password) = account(0);
        assert_eq!(
            smtp.auth_plain(&sender, &password)
                .await
                .expect("AUTH")
                .code,
            235
        );
        let mut latencies = Vec::with_capacity(messages);
        for n in 0..messages {
            assert!(started.elapsed() < RUN_LIMIT, "ran out of time delivering");
            let to = n % accounts;
            let (recipient, _) = account(to);
            assert_eq!(
                smtp.command(&format!("MAIL FROM:<{sender}>"))
                    .await
                    .expect("MAIL")
                    .code,
                250
            );
            assert_eq!(
                smtp.command(&format!("RCPT TO:<{recipient}>"))
                    .await
                    .expect("RCPT")
                    .code,
                250
            );
            let body = format!("Subject: idle {n}\r\nFrom: <{sender}>\r\n\r\nmessage {n}\r\n");
            let reply = smtp.data(body.as_bytes()).await.expect("DATA");
            let acknowledged = Instant::now();
            assert_eq!(reply.code, 250, "{reply}");
            loop {
                match probes[to]
                    .idle_wait(Duration::from_secs(10))
                    .await
                    .expect("IDLE")
                {
                    Some(Response::Exists(_)) => break,
                    Some(_) => {}
                    None => panic!("no EXISTS within 10 s for message {n}"),
                }
            }
            latencies.push(acknowledged.elapsed());
        }
        let _ = smtp.command("QUIT").await;
        latencies
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    if !sorted.is_empty() {
        println!(
            "250 on 587 to EXISTS in IDLE over {} messages: p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted[sorted.len() - 1]
        );
    }
    println!("server RSS at the end: {} MiB", resident_kib(pid) / 1024);
    drop(probes);
    drop(rest);
    drop(child.stdin.take());
    let _ = child.wait();
    println!("done in {:.1?}", started.elapsed());
}

//! POP3 sessions per second against the in-process reference server: connect, log in with
//! USER/PASS, STAT, RETR each of 10 messages of 4 KiB, QUIT. `pop3s` pays for a TLS 1.3
//! handshake in every session, as port 995 does; `plain` runs the same session on a listener
//! without TLS, to show what the protocol and the store cost on their own. One session at a
//! time: a maildrop admits one POP3 session.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::clients::pop3::Pop3Client;
use harness::clients::tls::TlsClient;
use harness::target::TlsSettings;
use reference_server::config::TlsMode;
use reference_server::store::INBOX;
use reference_server::{Config, Role};

const ACCOUNT: &str = "alice@example.test";
const PASSWORD: &str = "alice-secret";
const MESSAGES: usize = 10;

fn message(index: usize) -> Vec<u8> {
    let mut body =
        format!("From: <bench@bench.test>\r\nTo: <{ACCOUNT}>\r\nSubject: bench {index}\r\n\r\n")
            .into_bytes();
    while body.len() < 4096 - 2 {
        body.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    body.truncate(4096 - 2);
    body.extend_from_slice(b"\r\n");
    body
}

async fn session(client: &mut Pop3Client) {
    let greeting = client.greeting().await.expect("greeting");
    assert!(greeting.ok, "{greeting}");
    let login = client.user_pass(ACCOUNT, PASSWORD).await.expect("login");
    assert!(login.ok, "{login}");
    let (count, _) = client.stat().await.expect("STAT").expect("STAT +OK");
    assert_eq!(count as usize, MESSAGES);
    for number in 1..=count {
        let octets = client.retr(number).await.expect("RETR").expect("RETR +OK");
        assert_eq!(octets.len(), 4096);
    }
    assert!(client.quit().await.expect("QUIT").ok);
}

fn pop3_sessions(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::ephemeral(dir.path().to_owned());
    let mut plain = config.listeners[0].clone();
    plain.role = Role::Pop3;
    plain.tls = Some(TlsMode::None);
    config.listeners.push(plain);
    let server = runtime
        .block_on(reference_server::start(config))
        .expect("start the reference server");
    for index in 0..MESSAGES {
        server
            .store()
            .deliver(&[ACCOUNT], &message(index))
            .expect("deliver");
    }
    assert_eq!(
        server.store().messages(ACCOUNT, INBOX).expect("list").len(),
        MESSAGES
    );
    let tls = TlsClient::from_settings(
        &TlsSettings {
            ca_pem: Some(server.cert_pem().to_owned()),
            ..TlsSettings::default()
        },
        "127.0.0.1",
    )
    .expect("TLS client");
    let pop3s = server
        .addr(Role::Pop3s)
        .expect("pop3s listener")
        .to_string();
    let plain = server
        .listeners()
        .iter()
        .find(|l| l.role == Role::Pop3 && l.tls == TlsMode::None)
        .expect("plain pop3 listener")
        .addr
        .to_string();
    let timeout = Duration::from_secs(10);
    let mut group = c.benchmark_group("pop3_session_10x4KiB");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("pop3s", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let mut client = Pop3Client::connect_tls(&pop3s, &tls, timeout)
                        .await
                        .expect("connect");
                    session(&mut client).await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("plain", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let mut client = Pop3Client::connect(&plain, timeout).await.expect("connect");
                    session(&mut client).await;
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, pop3_sessions);
criterion_main!(benches);

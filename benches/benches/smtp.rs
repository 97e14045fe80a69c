//! SMTP transactions per second against the in-process reference server: one connection on
//! port 25, 1 KiB messages to a local account, each one stored durably (fsync) before its 250.
//! `lockstep` waits for every reply; `pipelined` sends MAIL, RCPT and DATA in one write
//! (RFC 2920), as PIPELINING clients do.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reference_server::{Config, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A bare client: no transcript, so memory stays flat over many iterations.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer: write,
            line: String::new(),
        };
        client.expect(220).await;
        client.send(b"EHLO bench.test\r\n").await;
        client.expect(250).await;
        client
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    async fn expect(&mut self, code: u16) {
        loop {
            self.line.clear();
            let n = self.reader.read_line(&mut self.line).await.expect("read");
            assert!(n > 0, "server closed the connection");
            if self.line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert_eq!(
            self.line.get(..3),
            Some(code.to_string().as_str()),
            "{}",
            self.line
        );
    }
}

fn message() -> Vec<u8> {
    let mut body =
        b"From: <bench@bench.test>\r\nTo: <alice@example.test>\r\nSubject: bench\r\n\r\n".to_vec();
    while body.len() < 1024 - 5 - 2 {
        body.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    body.truncate(1024 - 5 - 2);
    body.extend_from_slice(b"\r\n.\r\n");
    body
}

const ENVELOPE: [&[u8]; 3] = [
    b"MAIL FROM:<bench@bench.test>\r\n",
    b"RCPT TO:<alice@example.test>\r\n",
    b"DATA\r\n",
];

async fn lockstep(client: &mut Client, data: &[u8]) {
    for (command, code) in ENVELOPE.iter().zip([250, 250, 354]) {
        client.send(command).await;
        client.expect(code).await;
    }
    client.send(data).await;
    client.expect(250).await;
}

async fn pipelined(client: &mut Client, data: &[u8]) {
    client.send(&ENVELOPE.concat()).await;
    for code in [250, 250, 354] {
        client.expect(code).await;
    }
    client.send(data).await;
    client.expect(250).await;
}

fn smtp_transactions(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = runtime
        .block_on(reference_server::start(Config::ephemeral(
            dir.path().to_owned(),
        )))
        .expect("start the reference server");
    let addr = server.addr(Role::Smtp).expect("smtp listener");
    let data = message();
    let mut group = c.benchmark_group("smtp_1KiB");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    for (name, pipelining) in [("lockstep", false), ("pipelined", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut client = Client::connect(addr).await;
                    let start = Instant::now();
                    for _ in 0..iterations {
                        if pipelining {
                            pipelined(&mut client, &data).await;
                        } else {
                            lockstep(&mut client, &data).await;
                        }
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, smtp_transactions);
criterion_main!(benches);

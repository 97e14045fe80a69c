//! IMAP FETCH against the in-process reference server: one logged-in connection with INBOX
//! selected, 100 messages of 4 KiB. `envelopes` fetches FLAGS, RFC822.SIZE and ENVELOPE of all
//! of them in one command, as a client filling its message list does; `body` fetches one whole
//! message per command, as a client opening messages does. Throughput is messages fetched.
//!
//! On a listener without TLS, so the figures are the protocol and the store, not the cipher.

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reference_server::config::TlsMode;
use reference_server::store::INBOX;
use reference_server::{Config, Role};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const ACCOUNT: &str = "alice@example.test";
const PASSWORD: &str = "alice-secret";
const MESSAGES: usize = 100;
const SIZE: usize = 4096;

fn message(index: usize) -> Vec<u8> {
    let mut body = format!(
        "From: Bench Sender <bench@bench.test>\r\n\
         To: Alice <{ACCOUNT}>, bob@example.test\r\n\
         Subject: bench message {index}\r\n\
         Date: Tue, 05 Mar 2024 10:15:00 +0100\r\n\
         Message-ID: <bench-{index}@bench.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    while body.len() < SIZE - 2 {
        body.extend_from_slice(
            b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n",
        );
    }
    body.truncate(SIZE - 2);
    body.extend_from_slice(b"\r\n");
    body
}

/// What one command brought back.
#[derive(Debug, Default)]
struct Fetched {
    /// Untagged FETCH responses.
    items: usize,
    /// FETCH responses whose line names every one of the expected items.
    complete: usize,
    /// Octets of literals, in order.
    literals: Vec<usize>,
}

/// A bare client: no transcript and no response tree, so memory stays flat over many
/// iterations and the time measured is the server's. It knows just enough IMAP to find the end
/// of a command's response and skip literals.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
    literal: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer: write,
            line: String::new(),
            literal: Vec::new(),
        };
        client.read_line().await;
        assert!(client.line.starts_with("* OK"), "{}", client.line);
        client
            .command(&format!("l LOGIN {ACCOUNT} {PASSWORD}"), &[])
            .await;
        client.command("s SELECT INBOX", &[]).await;
        client
    }

    async fn read_line(&mut self) {
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).await.expect("read");
        assert!(n > 0, "server closed the connection");
    }

    /// Sends `tag command`, reads up to its tagged OK, and counts FETCH responses; a response
    /// is complete when its first line holds every string in `expect`.
    async fn command(&mut self, line: &str, expect: &[&str]) -> Fetched {
        let tag = &line[..line.find(' ').expect("tag")];
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        let mut fetched = Fetched::default();
        loop {
            self.read_line().await;
            if let Some(status) = self.line.strip_prefix(tag) {
                assert!(status.starts_with(" OK"), "{line}: {}", self.line);
                return fetched;
            }
            if self.line.starts_with("* ") && self.line.contains(" FETCH (") {
                fetched.items += 1;
                if expect.iter().all(|item| self.line.contains(item)) {
                    fetched.complete += 1;
                }
            }
            if let Some(open) = self.line.strip_suffix("}\r\n").and_then(|l| l.rfind('{')) {
                let length: usize = self.line[open + 1..self.line.len() - 3]
                    .parse()
                    .expect("literal length");
                self.literal.resize(length, 0);
                self.reader
                    .read_exact(&mut self.literal)
                    .await
                    .expect("literal");
                fetched.literals.push(length);
            }
        }
    }
}

fn imap_fetch(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::ephemeral(dir.path().to_owned());
    let mut plain = config.listeners[0].clone();
    plain.role = Role::Imap;
    plain.tls = Some(TlsMode::None);
    config.listeners.push(plain);
    let server = runtime
        .block_on(reference_server::start(config))
        .expect("start the reference server");
    let messages: Vec<Vec<u8>> = (0..MESSAGES).map(message).collect();
    let mut uids = Vec::new();
    for message in &messages {
        let delivered = server
            .store()
            .deliver(&[ACCOUNT], message)
            .expect("deliver");
        uids.push(delivered[0].uid);
    }
    assert_eq!(
        server.store().messages(ACCOUNT, INBOX).expect("list").len(),
        MESSAGES
    );
    let addr = server
        .listeners()
        .iter()
        .find(|l| l.role == Role::Imap && l.tls == TlsMode::None)
        .expect("plain imap listener")
        .addr;

    let range = format!(
        "e UID FETCH {}:{} (FLAGS RFC822.SIZE ENVELOPE)",
        uids[0],
        uids[MESSAGES - 1]
    );
    let envelope_items = [
        "UID ",
        "FLAGS (",
        "RFC822.SIZE 4096",
        "ENVELOPE (\"Tue, 05 Mar 2024",
    ];
    let bodies: Vec<String> = uids
        .iter()
        .map(|uid| format!("b UID FETCH {uid} BODY.PEEK[]"))
        .collect();
    runtime.block_on(async {
        let mut client = Client::connect(addr).await;
        let fetched = client.command(&range, &envelope_items).await;
        assert_eq!((fetched.items, fetched.complete), (MESSAGES, MESSAGES));
        let fetched = client.command(&bodies[7], &["BODY[] {4096}"]).await;
        assert_eq!((fetched.complete, fetched.literals), (1, vec![SIZE]));
        assert_eq!(client.literal, messages[7]);
    });

    let mut group = c.benchmark_group("imap_fetch_100x4KiB");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("envelopes", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut client = Client::connect(addr).await;
                let start = Instant::now();
                for _ in 0..iterations {
                    let fetched = client.command(&range, &envelope_items).await;
                    assert_eq!(fetched.complete, MESSAGES);
                }
                start.elapsed()
            })
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("body", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut client = Client::connect(addr).await;
                let start = Instant::now();
                for (_, command) in (0..iterations).zip(bodies.iter().cycle()) {
                    let fetched = client.command(command, &["BODY[] {4096}"]).await;
                    assert_eq!(fetched.complete, 1);
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    runtime.block_on(server.shutdown());
}

criterion_group! {
    name = benches;
    config = benches::short();
    targets = imap_fetch
}
criterion_main!(benches);

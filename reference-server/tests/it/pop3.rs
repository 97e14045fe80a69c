//! The POP3 driver over real sockets: the maildrop lock across sessions, UPDATE only at QUIT,
//! and POP-before-SMTP. Plain-text POP3 listeners keep these tests free of TLS; the TLS side is
//! covered by the harness's scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use reference_server::config::{Listener, PopBeforeSmtp, TlsMode};
use reference_server::store::INBOX;
use reference_server::{Config, Role, RunningServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const ALICE: &str = "alice@example.test";

/// A bare line client.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            reader: BufReader::new(read),
            writer: write,
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        line
    }

    async fn command(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    /// Greeting, USER and PASS; returns the reply to PASS.
    async fn login(addr: SocketAddr) -> (Client, String) {
        let mut client = Client::connect(addr).await;
        assert!(client.line().await.starts_with("+OK"));
        assert!(
            client
                .command(&format!("USER {ALICE}"))
                .await
                .starts_with("+OK")
        );
        let reply = client.command("PASS alice-secret").await;
        (client, reply)
    }
}

/// The defaults plus a plain-text POP3 listener (and the SMTP relay port), on ephemeral ports.
async fn server(dir: &std::path::Path, configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::ephemeral(dir.to_owned());
    config.listeners.push(Listener {
        role: Role::Pop3,
        address: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsMode::None),
    });
    configure(&mut config);
    reference_server::start(config).await.unwrap()
}

fn plain_pop3(server: &RunningServer) -> SocketAddr {
    server
        .listeners()
        .iter()
        .find(|l| l.role == Role::Pop3 && l.tls == TlsMode::None)
        .unwrap()
        .addr
}

#[tokio::test]
async fn quit_applies_deletions_and_frees_the_maildrop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |_| {}).await;
    let store = server.store();
    store
        .deliver(&[ALICE], b"Subject: one\r\n\r\n1\r\n")
        .unwrap();
    store
        .deliver(&[ALICE], b"Subject: two\r\n\r\n2\r\n")
        .unwrap();
    let addr = plain_pop3(&server);

    let (mut first, reply) = Client::login(addr).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    let (_, in_use) = Client::login(addr).await;
    assert!(in_use.starts_with("-ERR [IN-USE]"), "{in_use}");
    assert!(first.command("DELE 1").await.starts_with("+OK"));
    assert!(first.command("QUIT").await.starts_with("+OK"));

    // A client that logs in again as soon as it has the QUIT reply finds the lock free.
    let (mut again, reply) = Client::login(addr).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert_eq!(again.command("STAT").await.trim_end(), "+OK 1 19");
    let uids: Vec<u32> = store
        .messages(ALICE, INBOX)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [2]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_deletes_nothing_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |_| {}).await;
    server
        .store()
        .deliver(&[ALICE], b"Subject: keep\r\n\r\nme\r\n")
        .unwrap();
    let addr = plain_pop3(&server);
    let (mut client, reply) = Client::login(addr).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(client.command("DELE 1").await.starts_with("+OK"));
    drop(client);

    // The server learns of the drop when it reads EOF; until then the lock may still be held.
    let mut reply = String::new();
    for _ in 0..100 {
        let (mut client, login) = Client::login(addr).await;
        if login.starts_with("+OK") {
            reply = client.command("STAT").await;
            break;
        }
        assert!(login.starts_with("-ERR [IN-USE]"), "{login}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reply.starts_with("+OK 1 "),
        "the message must survive: {reply}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pop_before_smtp_authorises_the_address_for_relay_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| {
        c.pop3.pop_before_smtp = Some(PopBeforeSmtp { window_secs: 600 });
    })
    .await;
    let smtp = server.addr(Role::Smtp).unwrap();
    let rcpt_foreign = || async move {
        let mut client = Client::connect(smtp).await;
        assert!(client.line().await.starts_with("220"));
        client.command("HELO c.test").await;
        assert!(
            client
                .command("MAIL FROM:<a@c.test>")
                .await
                .starts_with("250")
        );
        client.command("RCPT TO:<x@elsewhere.invalid>").await
    };
    let before = rcpt_foreign().await;
    assert!(before.starts_with("554 5.7.1"), "{before}");

    let (mut pop3, reply) = Client::login(plain_pop3(&server)).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(pop3.command("QUIT").await.starts_with("+OK"));

    // The POP3 login authorises the address: the foreign recipient is taken for relay.
    let after = rcpt_foreign().await;
    assert!(
        after.starts_with("250") && after.contains("(relay)"),
        "{after}"
    );
    server.shutdown().await;
}

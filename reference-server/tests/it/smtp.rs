//! The SMTP driver over real sockets on port 25's listener (ephemeral port): what a 250 to
//! message data means for the store.

use std::net::SocketAddr;
use std::time::Duration;

use reference_server::faults::Policy;
use reference_server::store::INBOX;
use reference_server::{Config, Role, RunningServer, ServerError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const ALICE: &str = "alice@example.test";

/// A bare SMTP client that reads whole (multi-line) replies.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer: write,
        };
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                    .await
                    .expect("a reply within 10 s")
                    .unwrap();
            all.push_str(&line);
            if read == 0 || line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, text: &str) -> String {
        self.writer.write_all(text.as_bytes()).await.unwrap();
        self.reply().await
    }
}

/// Sends `count` messages to alice, one per connection; returns the replies to their data.
async fn send_messages(addr: SocketAddr, count: usize) -> Vec<String> {
    let mut replies = Vec::with_capacity(count);
    for n in 0..count {
        let mut client = Client::connect(addr).await;
        assert!(client.send("EHLO c.test\r\n").await.starts_with("250"));
        assert!(
            client
                .send("MAIL FROM:<a@c.test>\r\n")
                .await
                .starts_with("250")
        );
        assert!(
            client
                .send(&format!("RCPT TO:<{ALICE}>\r\n"))
                .await
                .starts_with("250")
        );
        assert!(client.send("DATA\r\n").await.starts_with("354"));
        replies.push(
            client
                .send(&format!("Subject: {n}\r\n\r\nmessage {n}\r\n.\r\n"))
                .await,
        );
        assert!(client.send("QUIT\r\n").await.starts_with("221"));
    }
    replies
}

async fn server(dir: &std::path::Path, configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::ephemeral(dir.to_owned());
    configure(&mut config);
    reference_server::start(config).await.unwrap()
}

/// The subjects' numbers of alice's messages, in UID order.
fn stored(server: &RunningServer) -> Vec<usize> {
    let store = server.store();
    store
        .messages(ALICE, INBOX)
        .unwrap()
        .iter()
        .map(|m| {
            let octets = store.read_message(ALICE, INBOX, m.uid).unwrap();
            let text = String::from_utf8(octets).unwrap();
            let subject = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .expect("a Subject line");
            subject.parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn every_acknowledged_message_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |_| {}).await;
    let replies = send_messages(server.addr(Role::Smtp).unwrap(), 10).await;
    assert!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    assert_eq!(stored(&server), (0..10).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test]
async fn drop_after_ack_loses_the_first_of_every_ten_acknowledged_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| {
        c.faults.policy.insert(Policy::DropAfterAck);
    })
    .await;
    let replies = send_messages(server.addr(Role::Smtp).unwrap(), 12).await;
    assert!(replies.iter().all(|r| r.starts_with("250 ")), "{replies:?}");
    // The 1st and the 11th are acknowledged but gone.
    let expected: Vec<usize> = (1..10).chain(11..12).collect();
    assert_eq!(stored(&server), expected);
    server.shutdown().await;
}

#[tokio::test]
async fn a_listener_handed_over_is_served_in_place_of_binding() {
    let dir = tempfile::tempdir().unwrap();
    let held = test_ports::HeldPort::new().unwrap();
    let addr = held.addr();
    let server = reference_server::start_with_listeners(
        Config::ephemeral(dir.path().join("a")),
        vec![(Role::Smtp, held.listen().unwrap())],
    )
    .await
    .unwrap();
    assert_eq!(server.addr(Role::Smtp), Some(addr));
    let replies = send_messages(addr, 1).await;
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    server.shutdown().await;
    // A socket for a listener the config does not have is refused.
    let mut config = Config::ephemeral(dir.path().join("b"));
    config
        .listeners
        .retain(|listener| listener.role != Role::Imap);
    let socket = test_ports::HeldPort::new().unwrap().listen().unwrap();
    let error = reference_server::start_with_listeners(config, vec![(Role::Imap, socket)])
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            ServerError::Bind {
                role: Role::Imap,
                ..
            }
        ),
        "{error}"
    );
}

/// Connects and returns the first reply line, whatever it is.
async fn first_line(addr: SocketAddr, from: Option<std::net::IpAddr>) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("a line within 10 s")
        .unwrap();
    (reader.into_inner().reunite(write).unwrap(), line)
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| c.limits.connections_per_address = 2).await;
    let addr = server.addr(Role::Smtp).unwrap();
    let (first, line) = first_line(addr, None).await;
    assert!(line.starts_with("220 "), "{line}");
    let (_second, line) = first_line(addr, None).await;
    assert!(line.starts_with("220 "), "{line}");
    let (_, line) = first_line(addr, None).await;
    assert!(
        line.starts_with("421 4.7.0 ") && line.contains("Too many connections from your address"),
        "{line}"
    );
    // Another address still gets in.
    let other = std::net::IpAddr::from([127, 0, 0, 2]);
    let (_third, line) = first_line(addr, Some(other)).await;
    assert!(line.starts_with("220 "), "{line}");
    // A closed connection gives its slot back (once the server has seen the close).
    drop(first);
    let mut freed = false;
    for _ in 0..100 {
        let (_, line) = first_line(addr, None).await;
        if line.starts_with("220 ") {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        freed,
        "the slot of a closed connection was never given back"
    );
}

#[tokio::test]
async fn the_total_connection_limit_turns_clients_away_with_421() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| c.limits.connections = 2).await;
    let addr = server.addr(Role::Smtp).unwrap();
    let (_first, line) = first_line(addr, None).await;
    assert!(line.starts_with("220 "), "{line}");
    let (_second, line) = first_line(addr, None).await;
    assert!(line.starts_with("220 "), "{line}");
    let (_, line) = first_line(addr, None).await;
    assert!(
        line.starts_with("421 4.7.0 ")
            && line.contains("Too many connections, try again later")
            && !line.contains("your address"),
        "{line}"
    );
}

/// Reads until the server closes the connection (EOF or reset); panics if it is still open
/// after `patience`, far beyond the handshake limit and far below the idle timeout.
async fn closed_by_server(stream: &mut TcpStream, patience: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a stalled TLS handshake open"
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_long_before_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| {
        c.limits.idle_timeout_secs = 3600;
        c.limits.tls_handshake_timeout_secs = 1;
    })
    .await;
    // Implicit TLS: connect and send nothing.
    let mut stalled = TcpStream::connect(server.addr(Role::Submissions).unwrap())
        .await
        .unwrap();
    closed_by_server(&mut stalled, Duration::from_secs(30)).await;
    // STARTTLS accepted, then no ClientHello.
    let mut client = Client::connect(server.addr(Role::Smtp).unwrap()).await;
    assert!(client.send("EHLO stall.test\r\n").await.starts_with("250"));
    assert!(client.send("STARTTLS\r\n").await.starts_with("220"));
    let mut stream = client.reader.into_inner().reunite(client.writer).unwrap();
    closed_by_server(&mut stream, Duration::from_secs(30)).await;
}

/// Sends `byte` every 200 ms (at most 150 times) in the background, as a slowloris client
/// would: each byte resets the idle timer. Write errors end it (the server hung up).
fn trickle(mut writer: OwnedWriteHalf, byte: u8) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..150 {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Reads lines until one starts with `prefix`; panics after 30 s, far beyond the limits under
/// test and far below the idle timeout.
async fn line_starting(reader: &mut BufReader<OwnedReadHalf>, prefix: &str) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).await.unwrap_or(0);
            assert!(read > 0, "closed before a line starting {prefix:?}");
            if line.starts_with(prefix) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line starting {prefix:?} within 30 s"))
}

#[tokio::test]
async fn a_client_trickling_a_command_or_a_message_is_cut_off_despite_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| {
        c.limits.idle_timeout_secs = 3600;
        c.limits.command_timeout_secs = 1;
        c.limits.data_timeout_secs = 2;
    })
    .await;

    // SMTP: a command line a byte at a time.
    let mut client = Client::connect(server.addr(Role::Smtp).unwrap()).await;
    let mut reader = client.reader;
    let dribbler = trickle(client.writer, b'O');
    let line = line_starting(&mut reader, "421").await;
    assert!(line.contains("Command line not completed"), "{line}");
    dribbler.abort();

    // SMTP: message data a byte at a time; nothing is stored.
    client = Client::connect(server.addr(Role::Smtp).unwrap()).await;
    assert!(client.send("EHLO slow.test\r\n").await.starts_with("250"));
    assert!(
        client
            .send("MAIL FROM:<s@slow.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .send(&format!("RCPT TO:<{ALICE}>\r\n"))
            .await
            .starts_with("250")
    );
    assert!(client.send("DATA\r\n").await.starts_with("354"));
    let mut reader = client.reader;
    let dribbler = trickle(client.writer, b'x');
    let line = line_starting(&mut reader, "421").await;
    assert!(line.contains("Message data not completed"), "{line}");
    dribbler.abort();
    assert!(stored(&server).is_empty());

    // POP3 and IMAP: the same for a command line and for an APPEND literal.
    let (read, write) = TcpStream::connect(server.addr(Role::Pop3).unwrap())
        .await
        .unwrap()
        .into_split();
    let mut reader = BufReader::new(read);
    line_starting(&mut reader, "+OK").await;
    let dribbler = trickle(write, b'C');
    let line = line_starting(&mut reader, "-ERR").await;
    assert!(line.contains("Command line not completed"), "{line}");
    dribbler.abort();

    let (read, mut write) = TcpStream::connect(server.addr(Role::Imap).unwrap())
        .await
        .unwrap()
        .into_split();
    let mut reader = BufReader::new(read);
    line_starting(&mut reader, "* OK").await;
    write.write_all(b"a APPEND INBOX {100}\r\n").await.unwrap();
    line_starting(&mut reader, "+").await;
    let dribbler = trickle(write, b'x');
    let line = line_starting(&mut reader, "* BYE").await;
    assert!(line.contains("Message data not completed"), "{line}");
    dribbler.abort();
}

#[tokio::test]
async fn a_session_ends_at_its_time_limit_however_busy() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |c| {
        c.limits.session_timeout_secs = 2;
        // The NOOPs are not what this test limits.
        c.limits.max_nonmail_commands = 1000;
    })
    .await;
    let mut client = Client::connect(server.addr(Role::Smtp).unwrap()).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let reply = client.send("NOOP\r\n").await;
            if !reply.starts_with("250") {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the session outlived its limit by far");
    assert!(
        ended.starts_with("421 4.4.2") && ended.contains("Session time limit"),
        "{ended}"
    );
}

#[tokio::test]
async fn a_shutdown_lets_a_message_being_received_finish_and_closes_idle_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), |_| {}).await;
    let addr = server.addr(Role::Smtp).unwrap();
    let mut idle = Client::connect(addr).await;
    assert!(idle.send("EHLO c.test\r\n").await.starts_with("250"));
    let mut sending = Client::connect(addr).await;
    assert!(sending.send("EHLO c.test\r\n").await.starts_with("250"));
    assert!(
        sending
            .send("MAIL FROM:<a@c.test>\r\n")
            .await
            .starts_with("250")
    );
    let rcpt = format!("RCPT TO:<{ALICE}>\r\n");
    assert!(sending.send(&rcpt).await.starts_with("250"));
    assert!(sending.send("DATA\r\n").await.starts_with("354"));
    sending
        .writer
        .write_all(b"Subject: 0\r\n\r\nhalf")
        .await
        .unwrap();
    let stopping = tokio::spawn(server.shutdown());
    // The idle session hears why it ends.
    assert_eq!(idle.reply().await, "421 4.3.2 Server shutting down\r\n");
    // The message being received is finished, acknowledged and stored; then that session
    // ends too.
    let ack = sending.send(" done\r\n.\r\n").await;
    assert!(ack.starts_with("250 2.0.0 Ok: queued as "), "{ack}");
    assert_eq!(sending.reply().await, "421 4.3.2 Server shutting down\r\n");
    stopping.await.unwrap();
    let store = reference_server::store::Store::open(dir.path()).unwrap();
    assert_eq!(store.messages(ALICE, INBOX).unwrap().len(), 1);
}

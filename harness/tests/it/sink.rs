//! End-to-end tests of the capture sink over loopback: a raw SMTP client drives it and the
//! records are checked against what was sent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::sink::{Behaviour, CaptureSink, Match, SinkOptions, Stage};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

const LIMIT: Duration = Duration::from_secs(10);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn sink(addrs: Vec<IpAddr>, starttls: bool) -> CaptureSink {
    CaptureSink::start(SinkOptions {
        addrs,
        port: 0,
        hostname: "mx.remote.test".into(),
        starttls,
    })
    .await
    .expect("the sink starts")
}

/// A raw SMTP client: lines out, replies in, nothing interpreted.
struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = timeout(LIMIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Runs the TLS handshake after a 220 to STARTTLS, trusting `cert_pem` for `localhost`.
    async fn start_tls(self, cert_pem: &str) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
        assert!(
            self.buf.is_empty(),
            "nothing may follow the 220 to STARTTLS"
        );
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(cert.expect("PEM")).expect("a usable root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("a name");
        let stream = timeout(
            LIMIT,
            TlsConnector::from(Arc::new(config)).connect(name, self.stream),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one reply: its code and its lines' text.
    async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse().expect("a reply code");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return (code, lines);
            }
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|pair| pair == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8(line[..end].to_vec()).expect("UTF-8 reply");
            }
            let mut chunk = [0; 4096];
            let count = timeout(LIMIT, self.stream.read(&mut chunk))
                .await
                .expect("a reply in time")
                .expect("read");
            assert!(count > 0, "closed while waiting for a reply");
            self.buf.extend_from_slice(&chunk[..count]);
        }
    }

    /// Sends a command line and returns the reply code.
    async fn command(&mut self, line: &str) -> u16 {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await.0
    }

    /// Whether the server closes without sending anything more.
    async fn closes(&mut self) -> bool {
        let mut chunk = [0; 4096];
        match timeout(LIMIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => self.buf.is_empty(),
            _ => false,
        }
    }

    /// EHLO, MAIL, one RCPT, DATA with `body` (which must end in CRLF), and the final code.
    async fn deliver(&mut self, from: &str, to: &str, body: &str) -> u16 {
        assert_eq!(self.command("EHLO client.sender.test").await, 250);
        assert_eq!(self.command(&format!("MAIL FROM:<{from}>")).await, 250);
        assert_eq!(self.command(&format!("RCPT TO:<{to}>")).await, 250);
        assert_eq!(self.command("DATA").await, 354);
        self.send(format!("{body}.\r\n").as_bytes()).await;
        self.reply().await.0
    }
}

/// Connects and reads the greeting.
async fn greeted(addr: SocketAddr) -> Client<TcpStream> {
    let mut client = Client::connect(addr).await;
    let (code, lines) = client.reply().await;
    assert_eq!(code, 220, "{lines:?}");
    client
}

#[tokio::test]
async fn plain_delivery_is_recorded_with_envelope_body_and_local_address() {
    let sink = sink(vec![ip(1)], false).await;
    let addr = sink.addrs()[0];
    let mut client = Client::connect(addr).await;
    let (code, greeting) = client.reply().await;
    assert_eq!(
        (code, greeting[0].as_str()),
        (220, "mx.remote.test ESMTP capture sink")
    );
    client.send(b"EHLO client.sender.test\r\n").await;
    let (code, ehlo) = client.reply().await;
    assert_eq!(code, 250);
    for keyword in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 52428800",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            ehlo.iter().any(|line| line == keyword),
            "{keyword} in {ehlo:?}"
        );
    }
    assert!(!ehlo.iter().any(|line| line == "STARTTLS"), "{ehlo:?}");
    assert_eq!(
        client
            .command("MAIL FROM:<alice@sender.test> SIZE=120 BODY=8BITMIME")
            .await,
        250
    );
    assert_eq!(client.command("RCPT TO:<Bob@Remote.TEST>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    client
        .send(b"Subject: hi\r\n\r\n..leading dot\r\nbare\nlf\r\n.\r\n")
        .await;
    assert_eq!(client.reply().await.0, 250);
    assert_eq!(client.command("QUIT").await, 221);

    // The domain compares case-insensitively, the local part does not.
    assert!(sink.messages_for("bob@remote.test").is_empty());
    let messages = sink.messages_for("Bob@remote.test");
    assert_eq!(messages.len(), 1, "{:?}", sink.messages());
    let message = &messages[0];
    assert_eq!(
        message.data,
        b"Subject: hi\r\n\r\n.leading dot\r\nbare\nlf\r\n"
    );
    assert_eq!(message.mail_from, "alice@sender.test");
    assert_eq!(message.rcpt_to, ["Bob@Remote.TEST"]);
    assert_eq!(message.helo, "client.sender.test");
    assert_eq!(message.local, addr);
    assert!(!message.tls);
    assert_eq!(message.attempt, 1);

    let session = &sink.sessions()[0];
    assert_eq!(session.outcome, "accepted");
    assert_eq!(session.rcpt_to, [("Bob@Remote.TEST".to_owned(), 250)]);
    assert!(
        session.transcript.contains("C: RCPT TO:<Bob@Remote.TEST>"),
        "{}",
        session.transcript
    );
    assert!(
        session.transcript.contains("C: <message: 38 octets>")
            && !session.transcript.contains("leading dot"),
        "the body is elided to its size: {}",
        session.transcript
    );
}

#[tokio::test]
async fn two_addresses_share_the_port_and_local_tells_which_got_the_message() {
    let sink = sink(vec![ip(2), ip(3)], false).await;
    let addrs = sink.addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].port(), sink.port());
    assert_eq!(addrs[1].port(), sink.port());
    assert_eq!((addrs[0].ip(), addrs[1].ip()), (ip(2), ip(3)));

    let mut to_third = greeted(addrs[1]).await;
    assert_eq!(
        to_third
            .deliver("a@sender.test", "x@remote.test", "x\r\n")
            .await,
        250
    );
    let mut to_second = greeted(addrs[0]).await;
    assert_eq!(
        to_second
            .deliver("a@sender.test", "y@remote.test", "y\r\n")
            .await,
        250
    );

    assert_eq!(sink.messages_for("x@remote.test")[0].local, addrs[1]);
    assert_eq!(sink.messages_for("y@remote.test")[0].local, addrs[0]);
}

#[tokio::test]
async fn local_ip_script_refuses_connections_with_421() {
    let sink = sink(vec![ip(2), ip(3)], false).await;
    sink.script(
        Match::LocalIp(ip(2)),
        vec![Behaviour::Reply {
            stage: Stage::Connect,
            code: 421,
            text: "4.3.2 Not now".into(),
        }],
    );
    let mut refused = Client::connect(sink.addrs()[0]).await;
    assert_eq!(
        refused.reply().await,
        (421, vec!["4.3.2 Not now".to_owned()])
    );
    assert!(refused.closes().await);
    // The last step repeats.
    let mut again = Client::connect(sink.addrs()[0]).await;
    assert_eq!(again.reply().await.0, 421);
    let mut other = greeted(sink.addrs()[1]).await;
    assert_eq!(
        other
            .deliver("a@sender.test", "z@remote.test", "z\r\n")
            .await,
        250
    );

    let sessions = sink.sessions();
    assert_eq!(sessions[0].outcome, "421 at CONNECT");
    assert_eq!(sessions[0].local, sink.addrs()[0]);
    assert_eq!(sessions[2].outcome, "accepted");
}

#[tokio::test]
async fn domain_script_fails_the_first_attempt_and_accepts_the_second() {
    let sink = sink(vec![ip(1)], false).await;
    sink.script(
        Match::Domain("retry.remote.test".into()),
        vec![
            Behaviour::Reply {
                stage: Stage::Rcpt,
                code: 451,
                text: "4.7.1 Try again later".into(),
            },
            Behaviour::Accept,
        ],
    );
    let recipient = "someone@retry.remote.test";
    let mut first = greeted(sink.addrs()[0]).await;
    assert_eq!(first.command("EHLO client.sender.test").await, 250);
    assert_eq!(first.command("MAIL FROM:<a@sender.test>").await, 250);
    assert_eq!(first.command(&format!("RCPT TO:<{recipient}>")).await, 451);
    // Another domain in the same transaction is not affected.
    assert_eq!(first.command("RCPT TO:<other@remote.test>").await, 250);
    assert_eq!(first.command("RSET").await, 250);
    assert_eq!(first.command("QUIT").await, 221);
    assert!(sink.messages_for(recipient).is_empty());

    let mut second = greeted(sink.addrs()[0]).await;
    assert_eq!(
        second
            .deliver("a@sender.test", recipient, "hello\r\n")
            .await,
        250
    );
    let message = sink
        .wait_for_message("someone@RETRY.remote.test", LIMIT)
        .await
        .expect("the second attempt is accepted");
    assert_eq!(message.attempt, 2);

    let attempts = sink.wait_for_attempts(recipient, 2, LIMIT).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].outcome, "451 at RCPT");
    assert_eq!(
        attempts[0].rcpt_to,
        [
            (recipient.to_owned(), 451),
            ("other@remote.test".to_owned(), 250)
        ]
    );
    assert_eq!(attempts[1].outcome, "accepted");
}

#[tokio::test]
async fn address_script_550_refuses_that_recipient_every_time() {
    let sink = sink(vec![ip(1)], false).await;
    sink.script(
        Match::Address("nobody@remote.test".into()),
        vec![Behaviour::Reply {
            stage: Stage::Rcpt,
            code: 550,
            text: "5.1.1 No such user".into(),
        }],
    );
    for _ in 0..2 {
        let mut client = greeted(sink.addrs()[0]).await;
        assert_eq!(client.command("EHLO client.sender.test").await, 250);
        assert_eq!(client.command("MAIL FROM:<>").await, 250);
        client.send(b"RCPT TO:<nobody@Remote.Test>\r\n").await;
        assert_eq!(
            client.reply().await,
            (550, vec!["5.1.1 No such user".to_owned()])
        );
        assert_eq!(client.command("DATA").await, 554, "no valid recipients");
    }
    let attempts = sink.attempts_for("nobody@remote.test");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].rcpt_to[0].1, 550);
    assert_eq!(attempts[1].mail_from.as_deref(), Some(""));
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn disconnect_at_end_of_data_leaves_no_message() {
    let sink = sink(vec![ip(1)], false).await;
    sink.script(
        Match::Domain("drop.remote.test".into()),
        vec![Behaviour::Disconnect {
            stage: Stage::EndOfData,
        }],
    );
    let mut client = greeted(sink.addrs()[0]).await;
    assert_eq!(client.command("EHLO client.sender.test").await, 250);
    assert_eq!(client.command("MAIL FROM:<a@sender.test>").await, 250);
    assert_eq!(client.command("RCPT TO:<x@drop.remote.test>").await, 250);
    assert_eq!(client.command("DATA").await, 354);
    client.send(b"Subject: lost\r\n\r\nbody\r\n.\r\n").await;
    assert!(client.closes().await, "closed without a reply");
    assert!(sink.messages().is_empty());
    assert_eq!(sink.sessions()[0].outcome, "disconnected at END OF DATA");
}

#[tokio::test]
async fn greylist_refuses_a_triplet_until_its_delay_has_passed() {
    let sink = sink(vec![ip(1)], false).await;
    sink.script(
        Match::Domain("grey.remote.test".into()),
        vec![Behaviour::Greylist { seconds: 1 }],
    );
    let recipient = "g@grey.remote.test";
    let try_once = || async {
        let mut client = greeted(sink.addrs()[0]).await;
        assert_eq!(client.command("EHLO client.sender.test").await, 250);
        assert_eq!(client.command("MAIL FROM:<a@sender.test>").await, 250);
        client
            .send(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
            .await;
        client.reply().await
    };
    let (code, text) = try_once().await;
    assert_eq!(code, 451);
    assert!(text[0].starts_with("4.7.1 "), "{text:?}");
    assert_eq!(try_once().await.0, 451, "still within the delay");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut client = greeted(sink.addrs()[0]).await;
    assert_eq!(
        client.deliver("a@sender.test", recipient, "late\r\n").await,
        250
    );
    assert_eq!(sink.messages_for(recipient)[0].attempt, 3);
    assert_eq!(sink.attempts_for(recipient)[0].outcome, "451 at RCPT");
}

#[tokio::test]
async fn starttls_then_ehlo_then_delivery_is_marked_tls() {
    let sink = sink(vec![ip(1)], true).await;
    assert!(sink.cert_pem().contains("BEGIN CERTIFICATE"));
    let mut client = greeted(sink.addrs()[0]).await;
    client.send(b"EHLO client.sender.test\r\n").await;
    let (_, ehlo) = client.reply().await;
    assert!(ehlo.iter().any(|line| line == "STARTTLS"), "{ehlo:?}");
    // A command pipelined after STARTTLS is plaintext injected before the handshake: it must be
    // dropped, not answered inside TLS.
    client.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(client.reply().await.0, 220);
    let mut tls = client.start_tls(sink.cert_pem()).await;
    assert_eq!(
        tls.command("MAIL FROM:<a@sender.test>").await,
        503,
        "EHLO again first"
    );
    tls.send(b"EHLO client.sender.test\r\n").await;
    let (code, ehlo) = tls.reply().await;
    assert_eq!(code, 250);
    assert!(!ehlo.iter().any(|line| line == "STARTTLS"), "{ehlo:?}");
    assert_eq!(tls.command("MAIL FROM:<a@sender.test>").await, 250);
    assert_eq!(tls.command("RCPT TO:<t@remote.test>").await, 250);
    assert_eq!(tls.command("DATA").await, 354);
    tls.send(b"secret\r\n.\r\n").await;
    assert_eq!(tls.reply().await.0, 250);

    let message = &sink.messages_for("t@remote.test")[0];
    assert!(message.tls);
    assert_eq!(message.data, b"secret\r\n");
    let session = &sink.sessions()[0];
    assert!(session.tls);
    assert!(
        session.transcript.contains("discarded 6 octets"),
        "{}",
        session.transcript
    );
}

#[tokio::test]
async fn wait_for_message_gives_none_after_the_timeout_and_a_late_message_when_it_comes() {
    let sink = sink(vec![ip(1)], false).await;
    let started = Instant::now();
    assert_eq!(
        sink.wait_for_message("nobody@remote.test", Duration::from_millis(300))
            .await,
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let addr = sink.addrs()[0];
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut client = greeted(addr).await;
        client
            .deliver("a@sender.test", "late@remote.test", "late\r\n")
            .await
    });
    let message = sink.wait_for_message("late@remote.test", LIMIT).await;
    assert_eq!(
        message.map(|message| message.data),
        Some(b"late\r\n".to_vec())
    );
    assert_eq!(sender.await.expect("the sender"), 250);
}

#[tokio::test]
async fn garbage_and_overlong_lines_are_refused_and_the_session_goes_on() {
    let sink = sink(vec![ip(1)], false).await;
    let mut client = greeted(sink.addrs()[0]).await;
    client.send(b"\xff\xfe\x00garbage\r\n").await;
    assert_eq!(client.reply().await.0, 500);
    assert_eq!(client.command("FROBNICATE").await, 500);
    assert_eq!(
        client.command("MAIL FROM:<a@sender.test>").await,
        503,
        "before EHLO"
    );
    client.send(b"NOOP\n").await;
    assert_eq!(client.reply().await.0, 500, "a bare LF ends no command");
    let mut long = vec![b'A'; 2000];
    long.extend_from_slice(b"\r\n");
    client.send(&long).await;
    assert_eq!(client.reply().await.0, 500);
    // Exactly one reply for the long line: the next one answers NOOP.
    client.send(b"NOOP\r\n").await;
    assert_eq!(client.reply().await, (250, vec!["2.0.0 Ok".to_owned()]));
    assert_eq!(client.command("VRFY bob").await, 252);
    assert_eq!(
        client
            .deliver("a@sender.test", "g@remote.test", "ok\r\n")
            .await,
        250
    );

    // A client that only sends garbage is cut off.
    let mut flood = greeted(sink.addrs()[0]).await;
    flood.send("junk\r\n".repeat(30).as_bytes()).await;
    for _ in 0..20 {
        assert_eq!(flood.reply().await.0, 500);
    }
    assert_eq!(flood.reply().await.0, 421);
    assert!(flood.closes().await);
    assert_eq!(sink.sessions()[1].outcome, "closed after too many errors");
}

#[tokio::test]
async fn recipients_over_the_limit_get_452() {
    let sink = sink(vec![ip(1)], false).await;
    let mut client = greeted(sink.addrs()[0]).await;
    assert_eq!(client.command("EHLO client.sender.test").await, 250);
    assert_eq!(client.command("MAIL FROM:<a@sender.test>").await, 250);
    let pipelined: String = (0..101)
        .map(|index| format!("RCPT TO:<r{index}@remote.test>\r\n"))
        .collect();
    client.send(pipelined.as_bytes()).await;
    for _ in 0..100 {
        assert_eq!(client.reply().await.0, 250);
    }
    assert_eq!(client.reply().await.0, 452);
}

#[tokio::test]
async fn many_sessions_at_once_are_all_recorded() {
    let sink = sink(vec![ip(1)], false).await;
    let addr = sink.addrs()[0];
    let clients: Vec<_> = (0..20)
        .map(|index| {
            tokio::spawn(async move {
                let mut client = greeted(addr).await;
                let to = format!("c{index}@remote.test");
                client.deliver("a@sender.test", &to, "x\r\n").await
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.expect("a client"), 250);
    }
    assert_eq!(sink.messages().len(), 20);
    assert_eq!(sink.sessions().len(), 20);
}

#[tokio::test]
async fn shutdown_stops_listening_and_keeps_the_records() {
    let sink = sink(vec![ip(1)], false).await;
    let addr = sink.addrs()[0];
    let mut client = greeted(addr).await;
    assert_eq!(
        client
            .deliver("a@sender.test", "s@remote.test", "x\r\n")
            .await,
        250
    );
    let handle = sink.clone();
    sink.shutdown().await;
    assert!(client.closes().await, "open sessions end");
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens");
    assert_eq!(handle.messages().len(), 1);
}

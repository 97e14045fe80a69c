//! Relay between two reference servers through fake-dns, over real sockets: MX routing,
//! STARTTLS between servers, bounces, retries across a restart, expiry, the relay faults, and
//! the DNS checks on port 25.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fake_dns::{FakeDns, Record, Zones};
use reference_server::config::{Account, Listener, RelayTls};
use reference_server::faults::Policy;
use reference_server::store::INBOX;
use reference_server::{Config, Role, RunningServer, TlsMode};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use test_ports::HeldPort;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const ALICE: &str = "alice@a.test";
const CAROL: &str = "carol@b.test";

/// A line client over any stream.
struct Client<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads one whole reply; returns its last line.
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(20), self.stream.read_line(&mut line))
                .await
                .expect("a reply within 20 s")
                .unwrap();
            assert!(line.len() >= 4, "short reply line {line:?}");
            if line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    async fn command(&mut self, line: &str) -> String {
        let s = self.stream.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        self.reply().await
    }

    /// MAIL, RCPTs and DATA with a small message; returns the reply to the end of data (or the
    /// first refusal).
    async fn send_mail(&mut self, from: &str, to: &[&str], subject: &str) -> String {
        let reply = self.command(&format!("MAIL FROM:<{from}>")).await;
        if !reply.starts_with("250") {
            return reply;
        }
        for rcpt in to {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await;
            if !reply.starts_with("250") {
                return reply;
            }
        }
        assert!(self.command("DATA").await.starts_with("354"));
        self.command(&format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\n\r\nHello from the relay test.\r\n.",
            to.join(">, <")
        ))
        .await
    }
}

/// Logs in on the submissions port of `server` (implicit TLS) as alice.
async fn submit(server: &RunningServer) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    submit_to(server.addr(Role::Submissions).unwrap(), server.cert_pem()).await
}

/// Logs in as alice on the submissions port at `addr`, trusting `cert_pem`.
async fn submit_to(
    addr: SocketAddr,
    cert_pem: &str,
) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tls),
    };
    assert!(client.reply().await.starts_with("220"));
    assert!(
        client
            .command("EHLO client.a.test")
            .await
            .starts_with("250")
    );
    // \0alice@a.test\0alice-secret
    let auth = client
        .command("AUTH PLAIN AGFsaWNlQGEudGVzdABhbGljZS1zZWNyZXQ=")
        .await;
    assert!(auth.starts_with("235"), "{auth}");
    client
}

/// A plain-text client of the port 25 listener.
async fn relay_port(server: &RunningServer) -> Client<TcpStream> {
    let tcp = TcpStream::connect(server.addr(Role::Smtp).unwrap())
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tcp),
    };
    assert!(client.reply().await.starts_with("220"));
    assert!(
        client
            .command("EHLO mx.other.test")
            .await
            .starts_with("250")
    );
    client
}

/// One domain's server: port 25 (plain text, STARTTLS offered) on `smtp` (or any free port),
/// submissions, relay through `dns` to other servers' port `relay_port`.
async fn server(
    dir: &Path,
    domains: &[&str],
    accounts: &[&str],
    smtp: Option<TcpListener>,
    dns: SocketAddr,
    relay_port: u16,
    configure: impl FnOnce(&mut Config),
) -> RunningServer {
    let mut config = Config::ephemeral(dir.to_owned());
    config.hostname = format!("mail.{}", domains[0]);
    config.domains = domains.iter().map(|d| d.to_string()).collect();
    config.accounts = accounts
        .iter()
        .map(|address| Account {
            address: address.to_string(),
            password: Some(format!("{}-secret", address.split('@').next().unwrap())),
            password_hash: None,
        })
        .collect();
    config.listeners = vec![
        Listener {
            role: Role::Smtp,
            address: "127.0.0.1:0".parse().unwrap(),
            tls: Some(TlsMode::Starttls),
        },
        Listener {
            role: Role::Submissions,
            address: "127.0.0.1:0".parse().unwrap(),
            tls: None,
        },
    ];
    config.relay.dns = Some(dns);
    config.relay.port = relay_port;
    config.relay.retry_secs = vec![1];
    config.relay.connect_timeout_secs = 5;
    config.relay.command_timeout_secs = 10;
    configure(&mut config);
    let sockets = smtp
        .map(|socket| (Role::Smtp, socket))
        .into_iter()
        .collect();
    reference_server::start_with_listeners(config, sockets)
        .await
        .unwrap()
}

/// Server A: a.test with alice, relaying to port `relay_port` of other domains' MX hosts.
async fn server_a(
    dir: &Path,
    dns: &FakeDns,
    relay_port: u16,
    configure: impl FnOnce(&mut Config),
) -> RunningServer {
    server(
        dir,
        &["a.test"],
        &[ALICE],
        None,
        dns.local_addr(),
        relay_port,
        configure,
    )
    .await
}

/// Server B: b.test with carol, port 25 on `smtp` (or any free port).
async fn server_b(
    dir: &Path,
    dns: &FakeDns,
    smtp: Option<HeldPort>,
    configure: impl FnOnce(&mut Config),
) -> RunningServer {
    server(
        dir,
        &["b.test"],
        &[CAROL],
        smtp.map(|port| port.listen().unwrap()),
        dns.local_addr(),
        25,
        configure,
    )
    .await
}

/// a.test and b.test, each with an MX at 127.0.0.1, plus the domains the tests route oddly.
async fn start_dns() -> FakeDns {
    let dns = FakeDns::start("127.0.0.1:0".parse().unwrap(), Zones::empty())
        .await
        .unwrap();
    for domain in ["a.test", "b.test", "c.test", "nomail.test"] {
        dns.add_zone(domain).unwrap();
    }
    for domain in ["a.test", "b.test"] {
        mx(&dns, domain, &[(10, &format!("mail.{domain}"))]);
        dns.set_records(
            &format!("mail.{domain}"),
            vec![Record::A([127, 0, 0, 1].into())],
        )
        .unwrap();
    }
    dns.set_records(
        "nomail.test",
        vec![Record::Mx {
            preference: 0,
            exchange: ".".into(),
        }],
    )
    .unwrap();
    dns
}

fn mx(dns: &FakeDns, domain: &str, hosts: &[(u16, &str)]) {
    let records = hosts
        .iter()
        .map(|(preference, host)| Record::Mx {
            preference: *preference,
            exchange: format!("{host}."),
        })
        .collect();
    dns.set_records(domain, records).unwrap();
}

/// Waits (at most 30 s) until `account`'s INBOX holds `n` messages; returns them.
async fn inbox(server: &RunningServer, account: &str, n: usize) -> Vec<String> {
    let store = server.store();
    for _ in 0..300 {
        let metas = store.messages(account, INBOX).unwrap();
        if metas.len() >= n {
            return metas
                .iter()
                .map(|m| {
                    String::from_utf8(store.read_message(account, INBOX, m.uid).unwrap()).unwrap()
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{account} has {} message(s), not {n}",
        store.messages(account, INBOX).unwrap().len()
    );
}

/// Waits (at most 30 s) until the outbound queue is empty.
async fn queue_drains(server: &RunningServer) {
    for _ in 0..300 {
        if server.store().outbound_queue().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "queue still holds {:?}",
        server.store().outbound_queue().unwrap()
    );
}

#[tokio::test]
async fn mail_from_a_reaches_b_through_its_mx_over_starttls() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dns = start_dns().await;
    let b = server_b(db.path(), &dns, None, |_| {}).await;
    let b_port = b.addr(Role::Smtp).unwrap().port();
    let a = server_a(da.path(), &dns, b_port, |c| {
        c.relay.tls = RelayTls::Require;
    })
    .await;
    let mut client = submit(&a).await;
    let reply = client.send_mail(ALICE, &[CAROL], "across").await;
    assert!(reply.starts_with("250"), "{reply}");
    // Acknowledged means queued durably.
    let carol = inbox(&b, CAROL, 1).await;
    queue_drains(&a).await;
    let message = &carol[0];
    assert!(message.contains("Subject: across"), "{message}");
    // The Received chain: B's header on top, then A's, each naming its host.
    let received: Vec<&str> = message
        .split("\r\n")
        .filter(|l| l.starts_with("Received:"))
        .collect();
    assert_eq!(received.len(), 2, "{message}");
    assert_eq!(
        message.matches("Return-Path:").count(),
        1,
        "only B's final delivery adds one: {message}"
    );
    assert!(message.find("by mail.b.test").unwrap() < message.find("by mail.a.test").unwrap());
    assert!(received[0].contains("from mail.a.test"), "{message}");
    assert!(
        message.contains("with ESMTPS id"),
        "B received over TLS: {message}"
    );
    assert!(
        a.store().messages(ALICE, INBOX).unwrap().is_empty(),
        "no bounce"
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn refused_recipients_and_undeliverable_domains_bounce_to_the_sender() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dns = start_dns().await;
    let b = server_b(db.path(), &dns, None, |_| {}).await;
    let b_port = b.addr(Role::Smtp).unwrap().port();
    let a = server_a(da.path(), &dns, b_port, |_| {}).await;
    let mut client = submit(&a).await;
    let to = ["nobody@b.test", CAROL, "x@nomail.test", "y@nowhere.c.test"];
    let reply = client.send_mail(ALICE, &to, "partly").await;
    assert!(reply.starts_with("250"), "{reply}");
    inbox(&b, CAROL, 1).await;
    // One bounce per domain that failed: b.test (550 at RCPT), nomail.test (null MX),
    // nowhere.c.test (NXDOMAIN).
    let bounces = inbox(&a, ALICE, 3).await;
    queue_drains(&a).await;
    let find = |needle: &str| {
        bounces
            .iter()
            .find(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("no bounce mentions {needle}: {bounces:#?}"))
    };
    let unknown = find("Final-Recipient: rfc822; nobody@b.test");
    assert!(unknown.contains("Status: 5.1.1"), "{unknown}");
    assert!(unknown.contains("Diagnostic-Code: smtp; 550"), "{unknown}");
    assert!(unknown.contains("report-type=delivery-status"), "{unknown}");
    assert!(
        unknown.contains("Subject: partly"),
        "original headers: {unknown}"
    );
    assert!(
        !unknown.contains("Final-Recipient: rfc822; carol@b.test"),
        "a delivered recipient is not reported: {unknown}"
    );
    assert!(find("Final-Recipient: rfc822; x@nomail.test").contains("Status: 5.1.10"));
    assert!(find("Final-Recipient: rfc822; y@nowhere.c.test").contains("Status: 5.1.2"));
    for bounce in &bounces {
        assert!(
            bounce.starts_with("Return-Path: <>\r\n"),
            "bounces have the null sender: {bounce}"
        );
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn the_second_mx_takes_the_mail_when_the_first_is_down() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dns = start_dns().await;
    let b = server(
        db.path(),
        &["b.test", "c.test"],
        &[CAROL, "dave@c.test"],
        None,
        dns.local_addr(),
        25,
        |_| {},
    )
    .await;
    let b_port = b.addr(Role::Smtp).unwrap().port();
    // mx1 is an address where nothing listens on that port.
    mx(&dns, "c.test", &[(20, "mx2.c.test"), (10, "mx1.c.test")]);
    dns.set_records("mx1.c.test", vec![Record::A([127, 0, 0, 2].into())])
        .unwrap();
    dns.set_records("mx2.c.test", vec![Record::A([127, 0, 0, 1].into())])
        .unwrap();
    let a = server_a(da.path(), &dns, b_port, |_| {}).await;
    let mut client = submit(&a).await;
    assert!(
        client
            .send_mail(ALICE, &["dave@c.test"], "fallback")
            .await
            .starts_with("250")
    );
    inbox(&b, "dave@c.test", 1).await;
    queue_drains(&a).await;
    dns.shutdown().await;
}

#[tokio::test]
async fn a_queued_message_survives_a_restart_and_is_delivered_once() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dns = start_dns().await;
    // B's port is held closed until B serves it.
    let b_held = HeldPort::new().unwrap();
    let b_port = b_held.port();
    let config_a = |c: &mut Config| c.relay.retry_secs = vec![1];
    let a = server_a(da.path(), &dns, b_port, config_a).await;
    let mut client = submit(&a).await;
    assert!(
        client
            .send_mail(ALICE, &[CAROL], "patience")
            .await
            .starts_with("250")
    );
    drop(client);
    // B is down: the attempt fails and is rescheduled.
    let mut deferred = None;
    for _ in 0..100 {
        let queue = a.store().outbound_queue().unwrap();
        if let Some(r) = queue
            .first()
            .and_then(|j| j.recipients.first())
            .filter(|r| r.attempts >= 1)
        {
            deferred = Some(r.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deferred = deferred.expect("a failed attempt is recorded");
    assert!(
        deferred
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("cannot connect"),
        "{deferred:?}"
    );
    a.shutdown().await;
    // B comes up on the port A relays to; A restarts on the same data directory.
    let b = server_b(db.path(), &dns, Some(b_held), |_| {}).await;
    let a = server_a(da.path(), &dns, b_port, config_a).await;
    inbox(&b, CAROL, 1).await;
    queue_drains(&a).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        b.store().messages(CAROL, INBOX).unwrap().len(),
        1,
        "delivered exactly once"
    );
    assert!(
        a.store().messages(ALICE, INBOX).unwrap().is_empty(),
        "no bounce"
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn a_message_older_than_the_age_limit_is_returned() {
    let da = tempfile::tempdir().unwrap();
    let dns = start_dns().await;
    let closed = HeldPort::new().unwrap();
    let a = server_a(da.path(), &dns, closed.port(), |c| {
        c.relay.max_age_secs = 2;
    })
    .await;
    let mut client = submit(&a).await;
    assert!(
        client
            .send_mail(ALICE, &[CAROL], "too late")
            .await
            .starts_with("250")
    );
    let bounce = &inbox(&a, ALICE, 1).await[0];
    assert!(bounce.contains("Status: 4.4.7"), "{bounce}");
    assert!(bounce.contains("delivery time expired"), "{bounce}");
    queue_drains(&a).await;
    dns.shutdown().await;
}

#[tokio::test]
async fn relay_faults_lose_mail_or_the_bounce() {
    let da = tempfile::tempdir().unwrap();
    let dns = start_dns().await;
    let closed = HeldPort::new().unwrap();
    // relay_no_retry: the recipient is dropped after one failed attempt, with no bounce.
    let a = server_a(da.path(), &dns, closed.port(), |c| {
        c.faults.policy.insert(Policy::RelayNoRetry);
    })
    .await;
    let mut client = submit(&a).await;
    assert!(
        client
            .send_mail(ALICE, &[CAROL], "dropped")
            .await
            .starts_with("250")
    );
    queue_drains(&a).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.store().messages(ALICE, INBOX).unwrap().is_empty());
    a.shutdown().await;

    // relay_no_bounce: a permanent failure tells nobody.
    let da = tempfile::tempdir().unwrap();
    let a = server_a(da.path(), &dns, closed.port(), |c| {
        c.faults.policy.insert(Policy::RelayNoBounce);
    })
    .await;
    let mut client = submit(&a).await;
    assert!(
        client
            .send_mail(ALICE, &["x@nomail.test"], "unbounced")
            .await
            .starts_with("250")
    );
    queue_drains(&a).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.store().messages(ALICE, INBOX).unwrap().is_empty());
    dns.shutdown().await;
}

#[tokio::test]
async fn port_25_checks_reverse_dns_and_the_sender_domain_when_asked() {
    let db = tempfile::tempdir().unwrap();
    let dns = start_dns().await;
    dns.add_zone("0.0.127.in-addr.arpa").unwrap();
    let b = server_b(db.path(), &dns, None, |c| {
        c.relay.check_client_dns = true;
        c.relay.check_sender_domain = true;
    })
    .await;
    // 127.0.0.1 has no PTR yet.
    let mut client = relay_port(&b).await;
    let reply = client.command("MAIL FROM:<alice@a.test>").await;
    assert!(reply.starts_with("550 5.7.25"), "{reply}");
    assert!(reply.contains("no PTR"), "{reply}");
    // A PTR whose name does not lead back is no better.
    dns.set_records(
        "1.0.0.127.in-addr.arpa",
        vec![Record::Ptr("mail.b.test.".into())],
    )
    .unwrap();
    dns.set_records("mail.b.test", vec![Record::A([127, 0, 0, 9].into())])
        .unwrap();
    let mut client = relay_port(&b).await;
    let reply = client.command("MAIL FROM:<alice@a.test>").await;
    assert!(reply.starts_with("550 5.7.25"), "{reply}");
    // Forward-confirmed: accepted, but only from a sender domain that can receive mail.
    dns.set_records("mail.b.test", vec![Record::A([127, 0, 0, 1].into())])
        .unwrap();
    let mut client = relay_port(&b).await;
    let reply = client.command("MAIL FROM:<x@nowhere.c.test>").await;
    assert!(reply.starts_with("550 5.1.8"), "{reply}");
    let reply = client.command("MAIL FROM:<x@nomail.test>").await;
    assert!(reply.starts_with("550 5.1.8"), "null MX: {reply}");
    let reply = client.send_mail(ALICE, &[CAROL], "checked").await;
    assert!(reply.starts_with("250"), "{reply}");
    inbox(&b, CAROL, 1).await;
    // The null sender (bounces) is never refused for its domain.
    assert!(client.command("MAIL FROM:<>").await.starts_with("250"));
    dns.shutdown().await;

    // relay_no_fcrdns: the check is skipped.
    let dc = tempfile::tempdir().unwrap();
    let dns = start_dns().await;
    let c = server_b(dc.path(), &dns, None, |c| {
        c.relay.check_client_dns = true;
        c.faults.policy.insert(Policy::RelayNoFcrdns);
    })
    .await;
    let mut client = relay_port(&c).await;
    assert!(
        client
            .command("MAIL FROM:<alice@a.test>")
            .await
            .starts_with("250")
    );
    dns.shutdown().await;
}

/// The `reference-server` binary as server A, killed on drop.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `config` and returns it with its submissions address once ready.
fn spawn_binary(config: &Path) -> (Process, SocketAddr) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reference-server"))
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start reference-server");
    let stdout = child.stdout.take().unwrap();
    let mut submissions = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening submissions ") {
            submissions = Some(addr.split(' ').next().unwrap().parse().unwrap());
        }
        if line == "ready" {
            break;
        }
    }
    (
        Process(child),
        submissions.expect("no `listening submissions` line"),
    )
}

#[tokio::test]
async fn a_message_queued_before_kill_9_is_delivered_once_after_restart() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dns = start_dns().await;
    // B's port is held closed until B serves it; only A, the binary, is told its number.
    let b_held = HeldPort::new().unwrap();
    let b_port = b_held.port();
    let config = da.path().join("a.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: mail.a.test\ndomains: [a.test]\n\
             accounts: [{{ address: {ALICE}, password: alice-secret }}]\n\
             listeners: [{{ role: submissions, address: \"127.0.0.1:0\" }}]\n\
             data_dir: data\n\
             relay: {{ dns: \"{}\", port: {b_port}, retry_secs: [1], connect_timeout_secs: 2 }}\n",
            dns.local_addr()
        ),
    )
    .unwrap();
    let (mut a, submissions) = spawn_binary(&config);
    let cert = std::fs::read_to_string(da.path().join("data/tls/cert.pem")).unwrap();
    let mut client = submit_to(submissions, &cert).await;
    let reply = client.send_mail(ALICE, &[CAROL], "killed").await;
    assert!(reply.starts_with("250"), "{reply}");
    // B is down, so the first attempt fails; then A dies without a chance to clean up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    drop(a);

    let b = server_b(db.path(), &dns, Some(b_held), |_| {}).await;
    let (_a, _) = spawn_binary(&config);
    let carol = inbox(&b, CAROL, 1).await;
    assert!(carol[0].contains("Subject: killed"), "{}", carol[0]);
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.store().messages(CAROL, INBOX).unwrap().len(),
        1,
        "delivered exactly once"
    );
    dns.shutdown().await;
}

//! The IMAP listener over real sockets: greeting and capabilities per port policy, LOGIN and
//! AUTHENTICATE, literals, STARTTLS, and honest refusals of what is not built yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reference_server::config::{Listener, TlsMode};
use reference_server::{Config, Role, RunningServer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A line client over any stream.
struct Client<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        line
    }

    async fn send(&mut self, bytes: &str) {
        self.stream
            .get_mut()
            .write_all(bytes.as_bytes())
            .await
            .unwrap();
    }

    /// Sends a tagged command and returns every line up to and including the tagged reply.
    async fn command(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}\r\n")).await;
        self.until_tagged(tag).await
    }

    async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            assert!(!line.is_empty(), "connection closed; got {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    Client {
        stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
    }
}

/// The defaults plus IMAP listeners: STARTTLS, implicit TLS, and one without TLS.
async fn server(dir: &std::path::Path) -> RunningServer {
    let mut config = Config::ephemeral(dir.to_owned());
    for (role, tls) in [
        (Role::Imap, None),
        (Role::Imaps, None),
        (Role::Imap, Some(TlsMode::None)),
    ] {
        config.listeners.push(Listener {
            role,
            address: "127.0.0.1:0".parse().unwrap(),
            tls,
        });
    }
    config.limits.auth_failure_delay_ms = 10;
    reference_server::start(config).await.unwrap()
}

fn listener(server: &RunningServer, role: Role, tls: TlsMode) -> SocketAddr {
    server
        .listeners()
        .iter()
        .find(|l| l.role == role && l.tls == tls)
        .unwrap()
        .addr
}

fn tls_connector(server: &RunningServer) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn port_143_disables_login_until_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::Starttls)).await;
    let greeting = client.line().await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );
    assert!(greeting.contains(" STARTTLS") && greeting.contains(" LOGINDISABLED"));
    assert!(!greeting.contains("AUTH="), "{greeting}");
    let login = client
        .command("a1", "LOGIN alice@example.test alice-secret")
        .await;
    assert!(login[0].starts_with("a1 NO [PRIVACYREQUIRED]"), "{login:?}");
    let auth = client.command("a2", "AUTHENTICATE PLAIN").await;
    assert!(auth[0].starts_with("a2 NO [PRIVACYREQUIRED]"), "{auth:?}");

    // Bytes sent with STARTTLS, before the handshake, are never executed.
    client
        .send("a3 STARTTLS\r\na4 LOGIN alice@example.test alice-secret\r\n")
        .await;
    let started = client.until_tagged("a3").await;
    assert!(started[0].starts_with("a3 OK"), "{started:?}");
    let tcp = client.stream.into_inner();
    let tls = tls_connector(&server)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tls),
    };
    let caps = client.command("b1", "CAPABILITY").await;
    assert_eq!(
        caps.len(),
        2,
        "the injected LOGIN must not have been answered: {caps:?}"
    );
    assert!(
        caps[0].contains("AUTH=PLAIN") && !caps[0].contains("STARTTLS"),
        "{caps:?}"
    );
    assert!(!caps[0].contains("LOGINDISABLED"), "{caps:?}");
    let login = client
        .command("b2", "LOGIN alice@example.test alice-secret")
        .await;
    assert!(login[0].starts_with("b2 OK"), "{login:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn port_993_is_tls_from_the_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let tcp = TcpStream::connect(listener(&server, Role::Imaps, TlsMode::Implicit))
        .await
        .unwrap();
    let tls = tls_connector(&server)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tls),
    };
    let greeting = client.line().await;
    assert!(
        greeting.contains("AUTH=PLAIN") && !greeting.contains("STARTTLS"),
        "{greeting}"
    );
    // SASL-IR: credentials with the command.
    let auth = client
        .command(
            "a1",
            "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=",
        )
        .await;
    assert!(auth[0].starts_with("a1 OK [CAPABILITY"), "{auth:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn logins_literals_and_refusals_on_a_plain_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::None)).await;
    client.line().await;

    let wrong = client.command("a1", "LOGIN alice@example.test wrong").await;
    assert!(
        wrong[0].starts_with("a1 NO [AUTHENTICATIONFAILED]"),
        "{wrong:?}"
    );
    // AUTHENTICATE with a continuation, cancelled, then with bad base64.
    client.send("a2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(client.line().await, "+ \r\n");
    client.send("*\r\n").await;
    assert!(client.line().await.starts_with("a2 BAD"));
    client.send("a3 AUTHENTICATE PLAIN\r\n").await;
    client.line().await;
    client.send("!!!\r\n").await;
    assert!(client.line().await.starts_with("a3 BAD"));
    // A synchronising literal for the password.
    client.send("a4 LOGIN alice@example.test {12}\r\n").await;
    assert!(client.line().await.starts_with("+ "));
    client.send("alice-secret\r\n").await;
    let login = client.until_tagged("a4").await;
    assert!(login[0].starts_with("a4 OK"), "{login:?}");

    let unknown = client.command("a5", "XYZZY").await;
    assert!(unknown[0].starts_with("a5 BAD"), "{unknown:?}");
    let missing = client.command("a6", "SELECT INBOX").await;
    assert!(
        missing[0].starts_with("a6 NO") && missing[0].contains("not built yet"),
        "{missing:?}"
    );
    let namespace = client.command("a7", "NAMESPACE").await;
    assert_eq!(namespace[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    let logout = client.command("a8", "LOGOUT").await;
    assert!(
        logout[0].starts_with("* BYE") && logout[1].starts_with("a8 OK"),
        "{logout:?}"
    );
    assert_eq!(client.line().await, "", "closed after LOGOUT");
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_literal_is_refused_without_losing_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::None)).await;
    client.line().await;
    let size = 26 * 1024 * 1024;
    client
        .send(&format!("a1 APPEND INBOX {{{size}}}\r\n"))
        .await;
    let refused = client.line().await;
    assert!(refused.starts_with("a1 NO [TOOBIG]"), "{refused}");
    let noop = client.command("a2", "NOOP").await;
    assert!(noop[0].starts_with("a2 OK"), "{noop:?}");
    server.shutdown().await;
}

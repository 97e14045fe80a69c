//! The relay's SMTP client: one delivery attempt to one address of a next-hop server. What to
//! send is decided by [`Transaction`] (no I/O); this module connects, writes, reads replies with
//! their timeouts, starts TLS and says QUIT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::RelayTls;

use super::reply::{LineBuffer, ReplyLines};
pub use super::reply::{Reply, ReplyError};
use super::transaction::{Action, Transaction};
pub use super::transaction::{Outcome, RelayError, Stage};

/// Settings of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptSettings {
    /// Our name for EHLO.
    pub helo: String,
    /// STARTTLS policy.
    pub tls: RelayTls,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-reply timeout.
    pub command_timeout: Duration,
    /// The local address to connect from, if not the system's choice.
    pub source: Option<std::net::IpAddr>,
}

/// Delivers `message` (CRLF lines, trace headers included) from `sender` to `recipients` through
/// the server at `addr`, whose DNS name is `host`.
pub async fn deliver(
    addr: SocketAddr,
    host: &str,
    settings: &AttemptSettings,
    sender: &str,
    recipients: &[String],
    message: &[u8],
) -> Outcome {
    let first = attempt(addr, host, settings, sender, recipients, message).await;
    match first {
        // RFC 7435: a failed handshake under opportunistic TLS falls back to plain text, as
        // Postfix's "may" level does, rather than delaying the mail.
        Outcome::NextHop(why)
            if why.is_tls_handshake() && settings.tls == RelayTls::Opportunistic =>
        {
            tracing::info!(%addr, host, "{why}; retrying without TLS");
            let plain = AttemptSettings {
                tls: RelayTls::None,
                ..settings.clone()
            };
            attempt(addr, host, &plain, sender, recipients, message).await
        }
        outcome => outcome,
    }
}

/// One connection: the transaction's actions carried out on the network.
async fn attempt(
    addr: SocketAddr,
    host: &str,
    settings: &AttemptSettings,
    sender: &str,
    recipients: &[String],
    message: &[u8],
) -> Outcome {
    let peer = format!("{host}[{addr}]");
    let tcp = match tokio::time::timeout(settings.connect_timeout, connect(addr, settings.source))
        .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Outcome::NextHop(RelayError::Connect { peer, source }),
        Err(_) => return Outcome::NextHop(RelayError::ConnectTimeout { peer }),
    };
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: LineBuffer::default(),
        timeout: settings.command_timeout,
        peer: peer.clone(),
    };
    let (mut transaction, mut action) =
        Transaction::new(peer, settings, sender, recipients, message);
    loop {
        action = match action {
            Action::Send {
                bytes,
                reply_within,
            } => {
                if !bytes.is_empty()
                    && let Err(e) = conn.send(&bytes).await
                {
                    return Outcome::NextHop(e);
                }
                match conn.reply(reply_within).await {
                    Ok(reply) => transaction.on_reply(reply),
                    Err(e) => transaction.on_reply_error(e),
                }
            }
            Action::StartTls => match conn.starttls(host).await {
                Ok(()) => transaction.on_tls_up(),
                Err(e) => return Outcome::NextHop(e),
            },
            Action::Finish(outcome) => {
                conn.quit().await;
                return outcome;
            }
            Action::Fail(e) => return Outcome::NextHop(e),
        }
    }
}

async fn connect(addr: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

struct Conn {
    stream: Stream,
    buf: LineBuffer,
    /// For writes and the TLS handshake.
    timeout: Duration,
    peer: String,
}

impl Conn {
    async fn starttls(&mut self, host: &str) -> Result<(), RelayError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(RelayError::Sequence {
                peer: self.peer.clone(),
                what: "STARTTLS inside TLS",
            });
        };
        // RFC 3207: anything the server sent before the handshake is not trusted.
        self.buf.clear();
        let name = ServerName::try_from(host.to_owned())
            .unwrap_or_else(|_| ServerName::try_from("mx.invalid").expect("a valid DNS name"));
        let handshake = TlsConnector::from(unverified_client()).connect(name, tcp);
        let peer = self.peer.clone();
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(source)) => Err(RelayError::Tls { peer, source }),
            Err(_) => Err(RelayError::TlsTimeout { peer }),
        }
    }

    async fn quit(&mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let within = self.timeout;
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reply(within)).await;
        }
        match &mut self.stream {
            Stream::Plain(s) => drop(s.shutdown().await),
            Stream::Tls(s) => drop(s.shutdown().await),
            Stream::Gone => {}
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => write_all(s, bytes).await,
                Stream::Tls(s) => write_all(s.as_mut(), bytes).await,
                Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        let peer = self.peer.clone();
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(RelayError::Write { peer, source }),
            Err(_) => Err(RelayError::WriteTimeout { peer }),
        }
    }

    /// Reads one reply, single- or multi-line, waiting at most `within` for each line.
    async fn reply(&mut self, within: Duration) -> Result<Reply, RelayError> {
        let mut lines = ReplyLines::default();
        loop {
            let line = self.line(within).await?;
            match lines.push(line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(error) => return Err(self.malformed(error)),
            }
        }
    }

    async fn line(&mut self, within: Duration) -> Result<String, RelayError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.buf.next_line() {
                Ok(Some(line)) => return Ok(line),
                Ok(None) => {}
                Err(error) => return Err(self.malformed(error)),
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                    Stream::Gone => Ok(0),
                }
            };
            let peer = || self.peer.clone();
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) => return Err(RelayError::Closed { peer: peer() }),
                Ok(Ok(n)) => self.buf.extend(&chunk[..n]),
                Ok(Err(source)) => {
                    return Err(RelayError::Read {
                        peer: peer(),
                        source,
                    });
                }
                Err(_) => return Err(RelayError::Timeout { peer: peer() }),
            }
        }
    }

    fn malformed(&self, error: ReplyError) -> RelayError {
        RelayError::Malformed {
            peer: self.peer.clone(),
            error,
        }
    }
}

async fn write_all<S: AsyncWrite + AsyncRead + Unpin>(
    s: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// A TLS client that accepts any certificate: opportunistic TLS between MTAs protects against
/// passive listeners only, since nothing names the certificate an MX should have (without DANE or
/// MTA-STS). Signatures are still checked, so the handshake itself is sound.
fn unverified_client() -> Arc<ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! The relay's SMTP client: one delivery attempt to one address of a next-hop server.

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
use crate::net::dot_stuff;

/// Longest reply line accepted from a server (RFC 5321 4.5.3.1.5 says 512).
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 200;

/// A server reply: code and text lines (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

/// How an attempt with one server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction ran: each recipient's fate. Delivered recipients have a 2xx, failed ones
    /// the reply that refused them (at RCPT, or at the end of data for all of them).
    Transaction(Vec<(String, Result<Reply, Reply>)>),
    /// The server could not be used (no connection, refused at greeting/EHLO/MAIL with 4xx, TLS
    /// required but unavailable, timeout): try the next address or host.
    NextHop(String),
    /// The server refused the whole transaction for good (5xx to MAIL).
    Refused(Reply),
}

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
        (Outcome::NextHop(why), true) if settings.tls == RelayTls::Opportunistic => {
            tracing::info!(%addr, host, "{why}; retrying without TLS");
            let plain = AttemptSettings {
                tls: RelayTls::None,
                ..settings.clone()
            };
            attempt(addr, host, &plain, sender, recipients, message)
                .await
                .0
        }
        (outcome, _) => outcome,
    }
}

/// One connection; also says whether a TLS handshake failed in it.
async fn attempt(
    addr: SocketAddr,
    host: &str,
    settings: &AttemptSettings,
    sender: &str,
    recipients: &[String],
    message: &[u8],
) -> (Outcome, bool) {
    let tcp = match tokio::time::timeout(settings.connect_timeout, connect(addr, settings.source))
        .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return (
                Outcome::NextHop(format!("cannot connect to {host}[{addr}]: {e}")),
                false,
            );
        }
        Err(_) => {
            return (
                Outcome::NextHop(format!("connection to {host}[{addr}] timed out")),
                false,
            );
        }
    };
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: Vec::new(),
        timeout: settings.command_timeout,
        peer: format!("{host}[{addr}]"),
        tls_failed: false,
    };
    match conn
        .transaction(host, settings, sender, recipients, message)
        .await
    {
        Ok(outcome) => {
            conn.quit().await;
            (outcome, false)
        }
        Err(why) => (Outcome::NextHop(why), conn.tls_failed),
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
    buf: Vec<u8>,
    timeout: Duration,
    peer: String,
    tls_failed: bool,
}

impl Conn {
    async fn transaction(
        &mut self,
        host: &str,
        settings: &AttemptSettings,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Outcome, String> {
        let greeting = self.reply().await?;
        if greeting.code != 220 {
            return Err(format!("{} greeted with {greeting}", self.peer));
        }
        let mut ehlo = self.ehlo(&settings.helo).await?;
        let offers_tls = ehlo.as_ref().is_some_and(|e| has(e, "STARTTLS"));
        match settings.tls {
            RelayTls::None => {}
            RelayTls::Require if !offers_tls => {
                return Err(format!(
                    "{} does not offer STARTTLS and the relay policy requires TLS",
                    self.peer
                ));
            }
            RelayTls::Opportunistic | RelayTls::Require if offers_tls => {
                self.send(b"STARTTLS\r\n").await?;
                let reply = self.reply().await?;
                if reply.code != 220 {
                    if settings.tls == RelayTls::Require {
                        return Err(format!("{} refused STARTTLS: {reply}", self.peer));
                    }
                } else {
                    self.starttls(host).await?;
                    ehlo = self.ehlo(&settings.helo).await?;
                }
            }
            RelayTls::Opportunistic | RelayTls::Require => {}
        }
        let features = ehlo.unwrap_or_default();
        let utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if utf8 && !has(&features, "SMTPUTF8") {
            return Ok(Outcome::Refused(Reply {
                code: 553,
                lines: vec![format!(
                    "5.6.7 {} does not support SMTPUTF8, which the non-ASCII addresses need",
                    self.peer
                )],
            }));
        }
        let mut mail = format!("MAIL FROM:<{sender}>");
        if has(&features, "SIZE") {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if !message.is_ascii() && has(&features, "8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        self.send(mail.as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.is_permanent() {
            return Ok(Outcome::Refused(reply));
        }
        if !reply.is_positive() {
            return Err(format!("{} answered MAIL with {reply}", self.peer));
        }
        let mut results: Vec<(String, Result<Reply, Reply>)> = Vec::new();
        for recipient in recipients {
            self.send(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
                .await?;
            let reply = self.reply().await?;
            let verdict = if reply.is_positive() {
                Ok(reply)
            } else {
                Err(reply)
            };
            results.push((recipient.clone(), verdict));
        }
        if results.iter().all(|(_, r)| r.is_err()) {
            self.send(b"RSET\r\n").await?;
            let _ = self.reply().await;
            return Ok(Outcome::Transaction(results));
        }
        self.send(b"DATA\r\n").await?;
        let reply = self.reply().await?;
        if reply.code != 354 {
            return Ok(Outcome::Transaction(fail_accepted(results, reply)));
        }
        let mut data = Vec::with_capacity(message.len() + 64);
        dot_stuff(&mut data, message);
        self.send(&data).await?;
        // RFC 5321 4.5.3.2.6: ten minutes for the reply to the end of data.
        let saved = self.timeout;
        self.timeout = saved.max(Duration::from_secs(600));
        let reply = self.reply().await;
        self.timeout = saved;
        let reply = reply?;
        if reply.is_positive() {
            for (_, verdict) in &mut results {
                if verdict.is_ok() {
                    *verdict = Ok(reply.clone());
                }
            }
            Ok(Outcome::Transaction(results))
        } else {
            Ok(Outcome::Transaction(fail_accepted(results, reply)))
        }
    }

    /// EHLO, or HELO when EHLO is refused; the EHLO keywords, or `None` after HELO.
    async fn ehlo(&mut self, helo: &str) -> Result<Option<Vec<String>>, String> {
        self.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.code == 250 {
            return Ok(Some(reply.lines.into_iter().skip(1).collect()));
        }
        if reply.code == 421 || (400..500).contains(&reply.code) {
            return Err(format!("{} answered EHLO with {reply}", self.peer));
        }
        self.send(format!("HELO {helo}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.code != 250 {
            return Err(format!("{} refused EHLO and HELO: {reply}", self.peer));
        }
        Ok(None)
    }

    async fn starttls(&mut self, host: &str) -> Result<(), String> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(format!("{}: STARTTLS inside TLS", self.peer));
        };
        // RFC 3207: anything the server sent before the handshake is not trusted.
        self.buf.clear();
        let name = ServerName::try_from(host.to_owned())
            .unwrap_or_else(|_| ServerName::try_from("mx.invalid").expect("a valid DNS name"));
        let handshake = TlsConnector::from(unverified_client()).connect(name, tcp);
        self.tls_failed = true;
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.tls_failed = false;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("TLS handshake with {} failed: {e}", self.peer)),
            Err(_) => Err(format!("TLS handshake with {} timed out", self.peer)),
        }
    }

    async fn quit(&mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reply()).await;
        }
        match &mut self.stream {
            Stream::Plain(s) => drop(s.shutdown().await),
            Stream::Tls(s) => drop(s.shutdown().await),
            Stream::Gone => {}
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let peer = &self.peer;
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => write_all(s, bytes).await,
                Stream::Tls(s) => write_all(s.as_mut(), bytes).await,
                Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to {peer} failed: {e}")),
            Err(_) => Err(format!("writing to {peer} timed out")),
        }
    }

    /// Reads one reply, single- or multi-line.
    async fn reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let bad = || format!("{} sent a malformed reply line {line:?}", self.peer);
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(bad)?;
            let sep = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_owned());
            match sep {
                None | Some(b' ') => return Ok(Reply { code, lines }),
                Some(b'-') if lines.len() < MAX_REPLY_LINES => {}
                _ => return Err(bad()),
            }
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(format!(
                    "{} sent a reply line over {MAX_REPLY_LINE} octets",
                    self.peer
                ));
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                    Stream::Gone => Ok(0),
                }
            };
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) => return Err(format!("{} closed the connection", self.peer)),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(format!("reading from {} failed: {e}", self.peer)),
                Err(_) => return Err(format!("{} did not answer in time", self.peer)),
            }
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

fn has(features: &[String], keyword: &str) -> bool {
    features.iter().any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    })
}

fn fail_accepted(
    results: Vec<(String, Result<Reply, Reply>)>,
    reply: Reply,
) -> Vec<(String, Result<Reply, Reply>)> {
    results
        .into_iter()
        .map(|(r, v)| (r, v.and_then(|_| Err(reply.clone()))))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_matched_case_insensitively_as_whole_words() {
        let features = vec!["starttls".to_owned(), "SIZE 1000".to_owned()];
        assert!(has(&features, "STARTTLS"));
        assert!(has(&features, "size"));
        assert!(!has(&features, "SMTPUTF8"));
        assert!(!has(&["STARTTLSX".to_owned()], "STARTTLS"));
    }
}

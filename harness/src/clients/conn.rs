//! A byte stream to a server, plain or TLS, that records a transcript and applies timeouts. The
//! protocol clients parse on top of it.

use std::io;
use std::mem;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::client::TlsStream;

use super::ClientError;
use super::legacy_tls::{HelloOutcome, Offer, probe_hello};
use super::tls::{TlsClient, version_name};
use super::transcript::{Entry, Transcript, escape_bytes};

/// Replies are parsed from the front of the receive buffer: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` for "need more bytes", or an error naming the offending bytes.
pub(crate) type Parsed<T> = Result<Option<(T, usize)>, ClientError>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Handed to a TLS handshake or probe that did not give it back.
    Gone,
}

enum Read {
    Data,
    Closed,
    TimedOut,
}

pub(crate) struct Connection {
    stream: Stream,
    /// Received bytes no parser has consumed yet.
    buf: Vec<u8>,
    transcript: Transcript,
    pub(crate) timeout: Duration,
    /// Bytes the server sent in clear text after its go-ahead for STARTTLS/STLS, which were
    /// discarded before the handshake (a response-injection opening).
    pub(crate) plaintext_after_go_ahead: Vec<u8>,
}

/// Errors that mean the peer went away rather than that something broke locally. A TLS peer
/// that closes without close_notify shows up as `UnexpectedEof`.
pub(crate) fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

pub(crate) async fn connect_tcp(addr: &str, limit: Duration) -> Result<TcpStream, ClientError> {
    match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ClientError::Connect {
            addr: addr.to_owned(),
            source,
        }),
        Err(_) => Err(ClientError::Timeout {
            while_doing: format!("connecting to {addr}"),
            after: limit,
        }),
    }
}

/// Connects from a chosen local address (e.g. one loopback alias among 127.0.0.0/8), so a
/// server's checks on the client's address can be exercised.
pub(crate) async fn connect_tcp_from(
    addr: &str,
    local: std::net::IpAddr,
    limit: Duration,
) -> Result<TcpStream, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let attempt = async {
        let remote = tokio::net::lookup_host(addr)
            .await?
            .find(|a| a.is_ipv4() == local.is_ipv4())
            .ok_or_else(|| {
                io::Error::other(format!("{addr} has no address of the family of {local}"))
            })?;
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        socket.connect(remote).await
    };
    match timeout(limit, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(failed(source)),
        Err(_) => Err(ClientError::Timeout {
            while_doing: format!("connecting to {addr} from {local}"),
            after: limit,
        }),
    }
}

impl Connection {
    pub(crate) async fn connect_from(
        addr: &str,
        local: std::net::IpAddr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            stream: Stream::Plain(connect_tcp_from(addr, local, timeout).await?),
            buf: Vec::new(),
            transcript: Transcript::default(),
            plaintext_after_go_ahead: Vec::new(),
            timeout,
        })
    }

    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            stream: Stream::Plain(connect_tcp(addr, timeout).await?),
            buf: Vec::new(),
            transcript: Transcript::default(),
            plaintext_after_go_ahead: Vec::new(),
            timeout,
        })
    }

    pub(crate) fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    pub(crate) fn stop_transcript(&mut self) {
        self.transcript.stop();
    }

    pub(crate) fn note(&mut self, note: String) {
        self.transcript.push(Entry::Note(note));
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    pub(crate) fn tls_protocol_version(&self) -> Option<String> {
        match &self.stream {
            Stream::Tls(stream) => stream.get_ref().1.protocol_version().map(version_name),
            _ => None,
        }
    }

    fn io(&mut self) -> Option<&mut dyn Io> {
        match &mut self.stream {
            Stream::Plain(stream) => Some(stream),
            Stream::Tls(stream) => Some(stream.as_mut()),
            Stream::Gone => None,
        }
    }

    /// Writes `bytes` in one write, exactly as given.
    pub(crate) async fn send(
        &mut self,
        bytes: &[u8],
        while_doing: &str,
    ) -> Result<(), ClientError> {
        self.transcript.push(Entry::Sent(bytes.to_vec()));
        let limit = self.timeout;
        let Some(io) = self.io() else {
            return Err(closed(while_doing));
        };
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if is_closed(&error) => Err(closed(while_doing)),
            Ok(Err(source)) => Err(ClientError::Io {
                while_doing: while_doing.to_owned(),
                source,
            }),
            Err(_) => Err(ClientError::Timeout {
                while_doing: while_doing.to_owned(),
                after: limit,
            }),
        }
    }

    async fn read_more(
        &mut self,
        deadline: Instant,
        while_doing: &str,
    ) -> Result<Read, ClientError> {
        let mut chunk = [0; 8192];
        let Some(io) = self.io() else {
            return Ok(Read::Closed);
        };
        let count = match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => return Ok(Read::TimedOut),
            Ok(Ok(count)) => count,
            Ok(Err(error)) if is_closed(&error) => 0,
            Ok(Err(source)) => {
                return Err(ClientError::Io {
                    while_doing: while_doing.to_owned(),
                    source,
                });
            }
        };
        if count == 0 {
            self.note("connection closed by the server".into());
            return Ok(Read::Closed);
        }
        self.transcript
            .push(Entry::Received(chunk[..count].to_vec()));
        self.buf.extend_from_slice(&chunk[..count]);
        Ok(Read::Data)
    }

    /// Reads until `parse` finds a complete value at the front of the received bytes, within the
    /// connection's timeout.
    pub(crate) async fn read_parsed<T>(
        &mut self,
        while_doing: &str,
        parse: impl Fn(&[u8]) -> Parsed<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match parse(&self.buf) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(error) => {
                    // The offending bytes are in the error and the transcript; what follows them
                    // cannot be trusted to be in step.
                    self.buf.clear();
                    return Err(error);
                }
            }
            match self.read_more(deadline, while_doing).await? {
                Read::Data => {}
                Read::TimedOut => {
                    return Err(ClientError::Timeout {
                        while_doing: while_doing.to_owned(),
                        after: self.timeout,
                    });
                }
                Read::Closed if self.buf.is_empty() => return Err(closed(while_doing)),
                Read::Closed => {
                    return Err(ClientError::MalformedReply {
                        reason: format!(
                            "connection closed before the reply was complete, while {while_doing}"
                        ),
                        bytes: mem::take(&mut self.buf),
                    });
                }
            }
        }
    }

    /// Whether the server closes the connection within `limit`; what it sends meanwhile is kept
    /// for the parsers and the transcript.
    pub(crate) async fn read_until_closed(&mut self, limit: Duration) -> Result<bool, ClientError> {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .read_more(deadline, "waiting for the server to close")
                .await?
            {
                Read::Data => {}
                Read::Closed => return Ok(true),
                Read::TimedOut => return Ok(false),
            }
        }
    }

    /// After the server agreed to STARTTLS/STLS: sends a hand-built ClientHello with `offer` on
    /// the plaintext socket instead of a handshake, and notes the outcome in the transcript.
    /// The connection is used up.
    pub(crate) async fn probe_hello(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<HelloOutcome, ClientError> {
        let mut stream = self.take_plain()?;
        let outcome = probe_hello(&mut stream, offer, sni, self.timeout).await;
        self.note(match &outcome {
            Ok(outcome) => format!("{offer} ClientHello probe: {outcome}"),
            Err(error) => format!("{offer} ClientHello probe failed: {error}"),
        });
        outcome
    }

    /// Takes the plaintext TCP stream out, e.g. for a TLS handshake. Received bytes not yet
    /// parsed arrived before the handshake in plaintext, so they are dropped (RFC 3207 section
    /// 4.2 forbids acting on them) and noted.
    pub(crate) fn take_plain(&mut self) -> Result<TcpStream, ClientError> {
        if self.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        if !self.buf.is_empty() {
            let unread = mem::take(&mut self.buf);
            self.note(format!(
                "discarded {} plaintext bytes received before the TLS handshake: \"{}\"",
                unread.len(),
                escape_bytes(&unread)
            ));
            self.plaintext_after_go_ahead.extend_from_slice(&unread);
        }
        match mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(stream) => Ok(stream),
            _ => Err(closed("starting TLS")),
        }
    }

    /// Drops the connection at once with a TCP reset (zero linger), as a client that crashes
    /// or loses its network would: no QUIT, no TLS close_notify.
    pub(crate) fn abort(&mut self) {
        let tcp = match &self.stream {
            Stream::Plain(stream) => Some(stream),
            Stream::Tls(stream) => Some(stream.get_ref().0),
            Stream::Gone => None,
        };
        if let Some(tcp) = tcp {
            let _ = tcp.set_zero_linger();
        }
        self.stream = Stream::Gone;
        self.note("connection reset on purpose".into());
    }

    /// Starts a TLS handshake and leaves it half-way: sends the ClientHello, waits for the
    /// first bytes of the server's answer, then resets the connection. An error when the
    /// server closes or stays silent instead of answering.
    pub(crate) async fn abort_in_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        let mut stream = self.take_plain()?;
        let hello = tls.client_hello()?;
        self.transcript.push(Entry::Sent(hello.clone()));
        let while_doing = "waiting for the answer to the ClientHello";
        let answer = timeout(self.timeout, async {
            stream.write_all(&hello).await?;
            let mut answer = [0; 1024];
            stream.read(&mut answer).await
        })
        .await;
        let _ = stream.set_zero_linger();
        drop(stream);
        self.note("connection reset on purpose in the TLS handshake".into());
        match answer {
            Ok(Ok(0)) => Err(closed(while_doing)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if is_closed(&error) => Err(closed(while_doing)),
            Ok(Err(source)) => Err(ClientError::Io {
                while_doing: while_doing.to_owned(),
                source,
            }),
            Err(_) => Err(ClientError::Timeout {
                while_doing: while_doing.to_owned(),
                after: self.timeout,
            }),
        }
    }

    /// Runs a TLS handshake over the plaintext stream and continues over TLS.
    pub(crate) async fn upgrade(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        let stream = self.take_plain()?;
        let handshake = match timeout(self.timeout, tls.handshake(stream)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                while_doing: "doing the TLS handshake".into(),
                after: self.timeout,
            }),
        };
        let stream = handshake.inspect_err(|error| self.note(format!("TLS failed: {error}")))?;
        self.stream = Stream::Tls(Box::new(stream));
        let version = self.tls_protocol_version().unwrap_or_default();
        self.note(format!("TLS established ({version})"));
        Ok(())
    }
}

fn closed(while_doing: &str) -> ClientError {
    ClientError::Closed {
        while_doing: while_doing.to_owned(),
    }
}

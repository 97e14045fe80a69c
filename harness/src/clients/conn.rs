//! A byte stream to a server, plain or TLS, that records a transcript and applies timeouts. The
//! protocol clients parse on top of it.
//!
//! Every connection the harness opens to a target goes through here, so this is also where the
//! target's connection limit is kept (see [`limit_connections`]): a connection waits for a slot
//! before it connects, and a greeting that refuses it for load is answered by connecting again
//! after a pause, a bounded number of times. Servers limit connections per client address and
//! say so only by refusing; a conformance run must not report that legal refusal as a failure
//! of whatever scenario met it.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    /// This connection's place in the target's connection limit, if it has one.
    _slot: Option<Slot>,
    /// How to connect again if the greeting refuses the connection for load; `None` once
    /// anything but the greeting has been read or sent.
    greeting_retry: Option<GreetingRetry>,
}

/// Refused greetings answered by connecting again, at most.
const GREETING_RETRIES: u32 = 5;
/// The pause before the first new connection; it doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// No new connection is made past this long after the first refused greeting.
const RETRY_WINDOW: Duration = Duration::from_secs(15);

/// The connection limit of one target: slots shared by every connection to any of its
/// addresses.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    slots: Arc<Semaphore>,
    cap: usize,
    /// How long a connection waits for a slot before giving up.
    patience: Duration,
    /// Most slots taken at once so far.
    peak: AtomicUsize,
}

/// The targets' connection limits by `host:port`, as the steps write addresses. A registry
/// rather than a parameter so that every client, whoever opens it, is counted.
static LIMITS: LazyLock<Mutex<HashMap<String, Arc<ConnectionLimit>>>> =
    LazyLock::new(Mutex::default);

fn limits() -> std::sync::MutexGuard<'static, HashMap<String, Arc<ConnectionLimit>>> {
    LIMITS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps connections to `addrs` (the `host:port` of each of a target's services) to at most
/// `cap` open at once, and retries greetings that refuse a connection for load, until the
/// returned guard drops. A connection that finds no slot within `patience` fails with a
/// timeout that names the limit.
pub(crate) fn limit_connections(
    addrs: impl IntoIterator<Item = String>,
    cap: usize,
    patience: Duration,
) -> LimitGuard {
    let cap = cap.max(1);
    let limit = Arc::new(ConnectionLimit {
        slots: Arc::new(Semaphore::new(cap)),
        cap,
        patience,
        peak: AtomicUsize::new(0),
    });
    let addrs: Vec<String> = addrs.into_iter().collect();
    let mut registry = limits();
    for addr in &addrs {
        registry.insert(addr.clone(), limit.clone());
    }
    LimitGuard { limit, addrs }
}

/// Ends a limit registered with [`limit_connections`] when dropped.
#[derive(Debug)]
pub(crate) struct LimitGuard {
    limit: Arc<ConnectionLimit>,
    addrs: Vec<String>,
}

impl LimitGuard {
    /// Most connections that were open at once under this limit.
    pub(crate) fn peak(&self) -> usize {
        self.limit.peak.load(Ordering::Relaxed)
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        let mut registry = limits();
        for addr in &self.addrs {
            // Another run may have registered the address since (a port used again).
            if registry
                .get(addr)
                .is_some_and(|limit| Arc::ptr_eq(limit, &self.limit))
            {
                registry.remove(addr);
            }
        }
    }
}

/// A connection's place in a target's limit, given back when the connection drops.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Waits for a slot when `addr` has a connection limit; `None` when it has none.
pub(crate) async fn slot(addr: &str) -> Result<Option<Slot>, ClientError> {
    let Some(limit) = limits().get(addr).cloned() else {
        return Ok(None);
    };
    match timeout(limit.patience, limit.slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            let taken = limit.cap - limit.slots.available_permits();
            limit.peak.fetch_max(taken, Ordering::Relaxed);
            Ok(Some(Slot { _permit: permit }))
        }
        // The semaphore is never closed.
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(ClientError::Timeout {
            while_doing: format!(
                "waiting to connect to {addr}: all {} connections the target profile allows at \
                 once (`max_connections`) were in use, so this scenario needs more at once than \
                 that",
                limit.cap
            ),
            after: limit.patience,
        }),
    }
}

/// Whether a greeting turns the client away for load: an SMTP 421 (RFC 5321 3.8), a POP3
/// -ERR (RFC 3206 4's `[SYS/TEMP]`, or no code; RFC 1939 has no other use for an -ERR greeting),
/// an IMAP BYE (RFC 3501 7.1.5). No protocol's greeting looks like another's refusal, so this
/// needs no protocol.
fn refuses_for_load(greeting: &[u8]) -> bool {
    (greeting.starts_with(b"421") && matches!(greeting.get(3), Some(b' ' | b'-' | b'\r')))
        || greeting.starts_with(b"-ERR")
        || greeting
            .get(..5)
            .is_some_and(|start| start.eq_ignore_ascii_case(b"* BYE"))
}

/// How to open a connection again after its greeting refused it.
struct GreetingRetry {
    addr: String,
    local: Option<IpAddr>,
    /// Set when TLS started before the greeting (implicit TLS).
    tls: Option<TlsClient>,
    /// New connections made so far.
    made: u32,
    /// When the first greeting was refused.
    first_refusal: Option<Instant>,
}

impl GreetingRetry {
    /// The pause before the next new connection, or `None` when the retries are used up.
    fn next_pause(&mut self) -> Option<Duration> {
        let first = *self.first_refusal.get_or_insert_with(Instant::now);
        if self.made >= GREETING_RETRIES {
            return None;
        }
        // Jitter, so that scenarios refused together do not come back together.
        let pause = FIRST_BACKOFF * 2u32.pow(self.made);
        let pause = pause + pause.mul_f64(fastrand::f64() / 2.0);
        (first.elapsed() + pause <= RETRY_WINDOW).then(|| {
            self.made += 1;
            pause
        })
    }
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
        local: IpAddr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::open(addr, Some(local), timeout).await
    }

    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::open(addr, None, timeout).await
    }

    async fn open(
        addr: &str,
        local: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let slot = slot(addr).await?;
        let tcp = match local {
            Some(local) => connect_tcp_from(addr, local, timeout).await?,
            None => connect_tcp(addr, timeout).await?,
        };
        let greeting_retry = slot.is_some().then(|| GreetingRetry {
            addr: addr.to_owned(),
            local,
            tls: None,
            made: 0,
            first_refusal: None,
        });
        Ok(Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            transcript: Transcript::default(),
            plaintext_after_go_ahead: Vec::new(),
            timeout,
            _slot: slot,
            greeting_retry,
        })
    }

    /// After a greeting that refused the connection for load: closes it, waits, and connects
    /// again (with TLS again if it had started before the greeting). `false` when the retries
    /// are used up.
    async fn connect_again(&mut self) -> Result<bool, ClientError> {
        let Some(mut retry) = self.greeting_retry.take() else {
            return Ok(false);
        };
        let Some(pause) = retry.next_pause() else {
            self.note(format!(
                "the greeting refused the connection for load {} times; giving up",
                retry.made + 1
            ));
            return Ok(false);
        };
        self.note(format!(
            "the greeting refused the connection for load; connecting again in {} ms ({} of at \
             most {GREETING_RETRIES})",
            pause.as_millis(),
            retry.made
        ));
        // Closed before the pause, so that the server counts it gone when we come back.
        self.stream = Stream::Gone;
        self.buf.clear();
        tokio::time::sleep(pause).await;
        let tcp = match retry.local {
            Some(local) => connect_tcp_from(&retry.addr, local, self.timeout).await?,
            None => connect_tcp(&retry.addr, self.timeout).await?,
        };
        self.stream = Stream::Plain(tcp);
        if let Some(tls) = retry.tls.clone() {
            self.upgrade(&tls).await?;
        }
        self.greeting_retry = Some(retry);
        Ok(true)
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
        // What was sent cannot be sent again on a new connection.
        self.greeting_retry = None;
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
        let mut deadline = Instant::now() + self.timeout;
        loop {
            match parse(&self.buf) {
                Ok(Some((value, used))) => {
                    let refused =
                        self.greeting_retry.is_some() && refuses_for_load(&self.buf[..used]);
                    if refused && self.connect_again().await? {
                        deadline = Instant::now() + self.timeout;
                        continue;
                    }
                    self.greeting_retry = None;
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
        self.greeting_retry = None;
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
        self.greeting_retry = None;
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
        self.greeting_retry = None;
        self.stream = Stream::Gone;
        self.note("connection reset on purpose".into());
    }

    /// Starts a TLS handshake and leaves it half-way: sends the ClientHello, waits for the
    /// first bytes of the server's answer, then resets the connection. An error when the
    /// server closes or stays silent instead of answering.
    pub(crate) async fn abort_in_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        self.greeting_retry = None;
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
        // TLS before the greeting is implicit TLS, which a new connection needs too.
        let retry = self.greeting_retry.take().map(|retry| GreetingRetry {
            tls: Some(tls.clone()),
            ..retry
        });
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
        self.greeting_retry = retry;
        Ok(())
    }
}

fn closed(while_doing: &str) -> ClientError {
    ClientError::Closed {
        while_doing: while_doing.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// One CRLF-ended line.
    fn line(buf: &[u8]) -> Parsed<String> {
        Ok(buf
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|end| (String::from_utf8_lossy(&buf[..end]).into_owned(), end + 2)))
    }

    /// A server on an ephemeral port that greets its n-th connection (from 0) with
    /// `greeting(n)` and keeps it open until the client goes.
    async fn greeter(greeting: fn(usize) -> &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = stream.write_all(greeting(n).as_bytes()).await;
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                });
            }
        });
        addr
    }

    #[test]
    fn refusals_for_load_in_each_protocol() {
        for refusal in [
            &b"421 4.7.0 mail.test Too many connections\r\n"[..],
            b"421-busy\r\n421 try later\r\n",
            b"-ERR [SYS/TEMP] Too many connections\r\n",
            b"-ERR go away\r\n",
            b"* BYE [UNAVAILABLE] busy\r\n",
            b"* bye busy\r\n",
        ] {
            assert!(refuses_for_load(refusal), "{}", escape_bytes(refusal));
        }
        for greeting in [
            &b"220 mail.test ESMTP\r\n"[..],
            b"4210 odd\r\n",
            b"554 5.3.2 no service here\r\n",
            b"+OK ready\r\n",
            b"* OK [CAPABILITY IMAP4rev1] ready\r\n",
            b"* PREAUTH hi\r\n",
            b"* BYTES\r\n",
        ] {
            assert!(!refuses_for_load(greeting), "{}", escape_bytes(greeting));
        }
    }

    #[test]
    fn retries_back_off_and_end() {
        let mut retry = GreetingRetry {
            addr: String::new(),
            local: None,
            tls: None,
            made: 0,
            first_refusal: None,
        };
        let mut pauses = Vec::new();
        while let Some(pause) = retry.next_pause() {
            pauses.push(pause);
        }
        assert_eq!(pauses.len(), GREETING_RETRIES as usize);
        for (n, pause) in pauses.iter().enumerate() {
            let base = FIRST_BACKOFF * 2u32.pow(n as u32);
            assert!(
                *pause >= base && *pause <= base.mul_f64(1.5),
                "{n}: {pause:?}"
            );
        }
        assert!(pauses.iter().sum::<Duration>() <= RETRY_WINDOW);
        // Past the window, no more, however few were made.
        let mut late = GreetingRetry {
            made: 0,
            first_refusal: Some(Instant::now() - RETRY_WINDOW),
            ..retry
        };
        assert_eq!(late.next_pause(), None);
    }

    #[tokio::test]
    async fn a_refused_greeting_is_tried_again_under_a_limit_only() {
        let addr = greeter(|n| {
            if n < 2 {
                "-ERR [SYS/TEMP] Too many connections, try again later\r\n"
            } else {
                "+OK ready\r\n"
            }
        })
        .await;
        // No limit registered: the refusal is what the client reads.
        let mut conn = Connection::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = conn.read_parsed("reading", line).await.unwrap();
        assert!(greeting.starts_with("-ERR [SYS/TEMP]"), "{greeting}");

        let guard = limit_connections([addr.clone()], 2, TIMEOUT);
        let mut conn = Connection::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = conn.read_parsed("reading", line).await.unwrap();
        assert_eq!(greeting, "+OK ready");
        let transcript = conn.transcript().to_string();
        assert!(
            transcript.contains("Too many connections")
                && transcript.contains("refused the connection for load; connecting again"),
            "{transcript}"
        );
        assert_eq!(guard.peak(), 1, "the new connection keeps the same slot");
    }

    #[tokio::test]
    async fn nothing_is_tried_again_once_the_client_has_spoken() {
        let addr = greeter(|_| "421 4.7.0 busy\r\n").await;
        let _guard = limit_connections([addr.clone()], 2, TIMEOUT);
        let mut conn = Connection::connect(&addr, TIMEOUT).await.unwrap();
        conn.send(b"EHLO early\r\n", "sending").await.unwrap();
        let greeting = conn.read_parsed("reading", line).await.unwrap();
        assert_eq!(greeting, "421 4.7.0 busy");
    }

    #[tokio::test]
    async fn connections_wait_for_a_slot_and_say_why_when_none_comes() {
        let addr = greeter(|_| "220 ready\r\n").await;
        let patience = Duration::from_millis(200);
        let guard = limit_connections([addr.clone()], 1, patience);
        let first = Connection::connect(&addr, TIMEOUT).await.unwrap();
        let Err(error) = Connection::connect(&addr, TIMEOUT).await else {
            panic!("a second connection got past a limit of 1");
        };
        let message = error.to_string();
        assert!(
            message.contains("max_connections") && message.contains("all 1 connections"),
            "{message}"
        );
        // A slot given back is taken by the next connection that waits for it.
        let waiting = tokio::spawn({
            let addr = addr.clone();
            async move { Connection::connect(&addr, TIMEOUT).await.is_ok() }
        });
        tokio::time::sleep(patience / 4).await;
        drop(first);
        assert!(waiting.await.unwrap());
        assert_eq!(guard.peak(), 1);
        // Without the guard, no limit: two at once.
        drop(guard);
        let _a = Connection::connect(&addr, TIMEOUT).await.unwrap();
        let _b = Connection::connect(&addr, TIMEOUT).await.unwrap();
    }

    #[test]
    fn a_guard_removes_only_its_own_limit() {
        let addr = "127.0.0.1:9".to_owned();
        let old = limit_connections([addr.clone()], 1, TIMEOUT);
        let new = limit_connections([addr.clone()], 3, TIMEOUT);
        drop(old);
        assert_eq!(limits().get(&addr).map(|l| l.cap), Some(3));
        drop(new);
        assert!(!limits().contains_key(&addr));
    }
}

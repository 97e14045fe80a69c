//! The capture sink: an SMTP server inside the harness that the fake DNS names as the MX of the
//! relay scenarios' remote domains. It records every connection, envelope and message, and can
//! answer with scripted faults (4xx, 5xx, disconnects, greylisting), so a scenario can check how
//! the server under test relays: MX preference and fallback, retries, bounces and STARTTLS use.
//!
//! Scripts: [`CaptureSink::script`] gives a [`Match`] a list of [`Behaviour`]s. The N-th session
//! the script matches gets the N-th step, and the last step repeats once they run out, so
//! `[Reply 451 at Rcpt, Accept]` fails the first attempt and accepts the later ones. A script
//! is chosen where it can be known:
//!
//! - a [`Match::LocalIp`] script when the connection arrives; its step applies to the whole
//!   session, every recipient included;
//! - a [`Match::Address`] script, else a [`Match::Domain`] one, at the first RCPT in the
//!   session naming such a recipient. Its step decides that recipient's RCPT reply (others in
//!   the transaction are unaffected) and, for `Data`/`EndOfData` stages, the reply to the
//!   transaction that recipient is in. A `Connect`, `Ehlo` or `Mail` stage from such a script
//!   comes too late to apply: the step is used up and noted in the transcript, nothing else.
//!
//! Where a `LocalIp` step and a recipient step both act at a stage, the `LocalIp` one wins.
//! Without any script, everything is accepted.
//!
//! The SMTP parsing is written here by hand rather than taken from a crate: the harness must not
//! share a parser with the servers it tests, and the sink has to see (and keep) malformed input
//! that a strict parser would normalise away.

mod serve;
mod session;
mod state;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use state::State;

/// How many times [`CaptureSink::start`] tries a new port when another program holds the port
/// the first address got on one of the others.
const BIND_ATTEMPTS: usize = 8;

/// Where and how the sink listens.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The local addresses to listen on, all on the same port. Loopback addresses other than
    /// 127.0.0.1 (127.0.0.2, ...) work on Linux without set-up and let MX records point at
    /// distinguishable hosts.
    pub addrs: Vec<IpAddr>,
    /// The port; 0 picks one that is free on every address.
    pub port: u16,
    /// The name in the greeting, the EHLO reply and the generated certificate.
    pub hostname: String,
    /// Whether STARTTLS is offered (with a self-signed certificate for `hostname`,
    /// `localhost`, `127.0.0.1` and `::1`).
    pub starttls: bool,
}

/// Who a script applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Recipients in exactly this domain (case-insensitive; subdomains are other domains).
    Domain(String),
    /// This recipient (the domain is case-insensitive, the local part is not).
    Address(String),
    /// Connections to this local address of the sink.
    LocalIp(IpAddr),
}

/// A point in an SMTP session where a scripted behaviour acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting.
    Connect,
    /// EHLO or HELO.
    Ehlo,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command, before the message.
    Data,
    /// The end of the message, after it has been read in full.
    EndOfData,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "CONNECT",
            Stage::Ehlo => "EHLO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "END OF DATA",
        })
    }
}

/// What the sink does in a session that a script matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Behave normally.
    Accept,
    /// Answer `code text` at `stage` instead of the normal reply. A code below 400 counts as
    /// success (the session goes on as if accepted); 421, and any 4xx/5xx at `Connect`, close
    /// the connection after the reply. `text` may hold `\n` for a multi-line reply.
    Reply {
        /// Where.
        stage: Stage,
        /// The reply code.
        code: u16,
        /// The text after the code, usually starting with an enhanced status code.
        text: String,
    },
    /// Close the connection without a reply at `stage`; at `EndOfData` after reading the whole
    /// message.
    Disconnect {
        /// Where.
        stage: Stage,
    },
    /// Answer RCPT with `451 4.7.1` while the (client IP, sender, recipient) triplet was first
    /// seen less than `seconds` ago; accept after that.
    Greylist {
        /// How long a triplet is refused after it is first seen.
        seconds: u64,
    },
}

/// One connection to the sink, as far as it has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The sink's address the client connected to.
    pub local: SocketAddr,
    /// The client's address.
    pub peer: SocketAddr,
    /// The last EHLO or HELO argument.
    pub helo: Option<String>,
    /// Whether STARTTLS succeeded.
    pub tls: bool,
    /// The last MAIL FROM address (empty for `<>`).
    pub mail_from: Option<String>,
    /// Every RCPT TO address in the session and the code it was answered with (0 when the
    /// sink disconnected instead of answering).
    pub rcpt_to: Vec<(String, u16)>,
    /// How the session went: "connected" while nothing decisive happened, "accepted" once a
    /// message was, "451 at RCPT" after a refusal, "disconnected at DATA" after a scripted
    /// disconnect; at the end "quit", "client closed the connection" or "idle timeout" if
    /// nothing decisive happened before.
    pub outcome: String,
    /// The session as `C: ` / `S: ` lines with bytes outside printable ASCII escaped, `-- note
    /// --` lines for events, and each message replaced by its size.
    pub transcript: String,
    /// When the connection was accepted.
    pub started: SystemTime,
    /// Whether the connection is closed.
    pub finished: bool,
}

/// A message the sink accepted (250 after DATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sink's address the client connected to.
    pub local: SocketAddr,
    /// The client's address.
    pub peer: SocketAddr,
    /// The EHLO or HELO argument.
    pub helo: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The MAIL FROM address, empty for `<>`.
    pub mail_from: String,
    /// The accepted recipients.
    pub rcpt_to: Vec<String>,
    /// The message, dot-unstuffed, line ends as received.
    pub data: Vec<u8>,
    /// 1-based count of the sessions, up to and including this one, that named any of these
    /// recipients in RCPT: 2 means the sender had one earlier try.
    pub attempt: usize,
}

/// A running capture sink. Clones are handles to the same sink; it stops when the last handle
/// is dropped or [`CaptureSink::shutdown`] is called on any of them.
#[derive(Clone)]
pub struct CaptureSink {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    port: u16,
    addrs: Vec<SocketAddr>,
    cert_pem: String,
    /// The accept loops; each owns its sessions, so aborting one ends them too.
    tasks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for CaptureSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureSink")
            .field("addrs", &self.inner.addrs)
            .finish_non_exhaustive()
    }
}

/// A self-signed certificate for `hostname` (and the loopback names) and a TLS 1.2/1.3 server
/// config with it: what the sink shows a relaying server that says STARTTLS. Relay clients do
/// not check an MX's certificate (RFC 7435), so nothing needs to trust it; its PEM is kept for
/// scenarios that want to look.
fn self_signed(
    hostname: &str,
) -> Result<(Arc<rustls::ServerConfig>, String), Box<dyn std::error::Error + Send + Sync>> {
    let names = vec![
        hostname.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())?;
    Ok((Arc::new(config), certified.cert.pem()))
}

impl CaptureSink {
    /// Binds `options.port` on every address and starts serving. With port 0 the first address
    /// picks a free port and the others bind the same one; if one of them has it taken, the
    /// whole set is tried again on a new port a few times.
    pub async fn start(options: SinkOptions) -> io::Result<CaptureSink> {
        if options.addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the capture sink needs at least one address",
            ));
        }
        let (tls, cert_pem) = if options.starttls {
            let (config, pem) = self_signed(&options.hostname).map_err(io::Error::other)?;
            (Some(config), pem)
        } else {
            (None, String::new())
        };
        let listeners = bind_all(&options.addrs, options.port).await?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let port = addrs[0].port();
        let state = Arc::new(State::default());
        let config = Arc::new(serve::Config {
            hostname: options.hostname,
            tls,
        });
        let mut tasks = JoinSet::new();
        for listener in listeners {
            tasks.spawn(serve::accept_loop(listener, state.clone(), config.clone()));
        }
        tracing::debug!(?addrs, "capture sink listening");
        Ok(CaptureSink {
            inner: Arc::new(Inner {
                state,
                port,
                addrs,
                cert_pem,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// The port, the same on every address.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The bound addresses, in the order of [`SinkOptions::addrs`].
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.addrs.clone()
    }

    /// The certificate offered after STARTTLS, in PEM, for clients to trust; empty when
    /// STARTTLS is off.
    pub fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// Scripts the sessions `matcher` applies to, replacing (and restarting) any earlier script
    /// for the same matcher. An empty `steps` behaves as `[Accept]`.
    pub fn script(&self, matcher: Match, steps: Vec<Behaviour>) {
        self.inner.state.script(matcher, steps);
    }

    /// Every connection so far, in the order they arrived, finished or not.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.inner.state.sessions()
    }

    /// Every message accepted so far, in the order they were.
    pub fn messages(&self) -> Vec<Received> {
        self.inner.state.messages()
    }

    /// The accepted messages with `recipient` among their recipients.
    pub fn messages_for(&self, recipient: &str) -> Vec<Received> {
        self.inner.state.messages_for(recipient)
    }

    /// The sessions that named `recipient` in RCPT, whatever the answer.
    pub fn attempts_for(&self, recipient: &str) -> Vec<SessionRecord> {
        self.inner.state.attempts_for(recipient)
    }

    /// The first message for `recipient`, waiting up to `timeout` for one to arrive.
    pub async fn wait_for_message(&self, recipient: &str, timeout: Duration) -> Option<Received> {
        self.inner
            .state
            .wait_until(timeout, || {
                self.inner.state.messages_for(recipient).into_iter().next()
            })
            .await
    }

    /// The sessions that named `recipient` in RCPT, once there are at least `n` of them or
    /// `timeout` has passed (then fewer). The last one may still be in progress.
    pub async fn wait_for_attempts(
        &self,
        recipient: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<SessionRecord> {
        let state = &self.inner.state;
        let enough = || {
            let attempts = state.attempts_for(recipient);
            (attempts.len() >= n).then_some(attempts)
        };
        match state.wait_until(timeout, enough).await {
            Some(attempts) => attempts,
            None => state.attempts_for(recipient),
        }
    }

    /// Stops listening and ends every session, for all handles. The records stay readable
    /// through other handles.
    pub async fn shutdown(self) {
        let mut tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        tasks.shutdown().await;
    }
}

/// Binds `port` on every address; see [`CaptureSink::start`].
async fn bind_all(addrs: &[IpAddr], port: u16) -> io::Result<Vec<TcpListener>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let first = TcpListener::bind(SocketAddr::new(addrs[0], port)).await?;
        let chosen = first.local_addr()?.port();
        let mut listeners = vec![first];
        let mut taken = None;
        for &ip in &addrs[1..] {
            match TcpListener::bind(SocketAddr::new(ip, chosen)).await {
                Ok(listener) => listeners.push(listener),
                Err(error) => {
                    taken = Some(error);
                    break;
                }
            }
        }
        match taken {
            None => return Ok(listeners),
            Some(error)
                if port == 0
                    && error.kind() == io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS => {}
            Some(error) => return Err(error),
        }
    }
}

/// An address with its domain lower-cased and angle brackets removed, for comparing
/// recipients.
pub(crate) fn normalize_address(address: &str) -> String {
    let address = address.trim();
    let address = address
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(address);
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

/// The domain of an address, lower-cased; empty when it has none.
pub(crate) fn domain_of(address: &str) -> String {
    normalize_address(address)
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_owned())
        .unwrap_or_default()
}

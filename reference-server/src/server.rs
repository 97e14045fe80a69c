//! Starting and stopping the server: the store, the certificate, the listeners (served by
//! `net`, which hands each connection to its protocol's driver) and the relay worker. The IMAP
//! driver is still here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::access::{LoginThrottle, MaildropLocks, PopBeforeSmtp};
use crate::clock::SessionClock;
use crate::config::{Config, Role};
use crate::faults::Policy;
use crate::net::{self, Connection, Link, Read, SHUTDOWN_GRACE, Shared, accept_loop};
use crate::relay::{self, dns::Dns};
use crate::store::{INBOX, Store};
use crate::tls::{self, Identity};
use crate::variants::Variant;

pub use crate::net::BoundListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {address} for {role}: {source}")]
    Bind {
        /// The role of the listener.
        role: Role,
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The store could not be opened.
    #[error("mail store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The relay's DNS resolver could not be set up.
    #[error("relay DNS: {0}")]
    Dns(String),
}

/// A started server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    listeners: Vec<BoundListener>,
    identity: Identity,
    store: Store,
    config: Arc<Config>,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

/// Opens the store, loads or generates the certificate, binds every listener and starts
/// serving. Returns once all sockets are bound.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    start_with_listeners(config, Vec::new()).await
}

/// [`start`], serving on sockets the caller has bound and made listen already: each
/// `(role, socket)` takes the place of the next listener of that role in the config, whose
/// address is then not used. For a port that must be known, or held closed, before the server
/// runs (a peer that relays to it while it is down) without closing and binding it again, which
/// another process could use to take it. A socket for a role the config has fewer listeners
/// for is refused before anything starts.
pub async fn start_with_listeners(
    mut config: Config,
    mut sockets: Vec<(Role, TcpListener)>,
) -> Result<RunningServer, ServerError> {
    config.variants.clone().apply(&mut config);
    for (index, (role, socket)) in sockets.iter().enumerate() {
        let given = sockets[..=index].iter().filter(|(r, _)| r == role).count();
        let configured = config.listeners.iter().filter(|l| l.role == *role).count();
        if given > configured {
            return Err(ServerError::Bind {
                role: *role,
                address: socket
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("a socket was given for a {role} listener the config does not have"),
                ),
            });
        }
    }
    let data_dir = config
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("mail-data"));
    let store = Store::open(&data_dir)?;
    store.set_reuse_uids(config.faults.has(Policy::ImapUidReuse));
    for account in &config.accounts {
        store.ensure_account(&account.address)?;
    }
    if config.variants.has(Variant::MailboxesPreloaded) {
        preload(&store, &config)?;
    }
    let identity = if config.faults.has(Policy::WrongCertificateName) {
        tls::load_or_generate_misnamed(config.tls.as_ref(), &data_dir, &config.hostname)?
    } else {
        tls::load_or_generate(config.tls.as_ref(), &data_dir, &config.hostname)?
    };
    for fault in &config.faults.policy {
        tracing::warn!("FAULT `{}` is ON: {}", fault.name(), fault.description());
    }
    for variant in config.variants.iter() {
        tracing::info!(
            "variant `{}` is on: {} ({})",
            variant.name(),
            variant.description(),
            variant.allowed_by()
        );
    }
    if !config.faults.commands.is_empty() {
        tracing::warn!(
            "FAULTS: {} injected command fault(s) configured",
            config.faults.commands.len()
        );
    }
    let dns = match Dns::new(config.relay.dns) {
        Ok(dns) => dns,
        Err(why) if config.relay.dns.is_none() => {
            // Without a usable resolv.conf the server still serves local mail; relay attempts
            // fail temporarily and say why.
            tracing::warn!("{why}; relay will ask 127.0.0.1:53");
            Dns::new(Some(SocketAddr::from(([127, 0, 0, 1], 53)))).map_err(ServerError::Dns)?
        }
        Err(why) => return Err(ServerError::Dns(why)),
    };
    let config = Arc::new(config);
    let (shutdown, _) = watch::channel(false);
    let relay = relay::spawn(
        config.clone(),
        store.clone(),
        dns.clone(),
        shutdown.subscribe(),
    );
    let shared = Arc::new(Shared {
        config: config.clone(),
        store: store.clone(),
        acceptor: TlsAcceptor::from(identity.config.clone()),
        connections: Arc::new(Semaphore::new(config.limits.connections)),
        per_address: Arc::default(),
        maildrops: Arc::new(MaildropLocks::default()),
        throttle: LoginThrottle::new(Duration::from_millis(config.limits.auth_failure_delay_ms)),
        pop_before_smtp: config
            .pop3
            .pop_before_smtp
            .as_ref()
            .map(|p| PopBeforeSmtp::new(Duration::from_secs(p.window_secs))),
        dns,
        relay,
        acked: Arc::default(),
    });
    let (done_tx, done_rx) = mpsc::channel(1);
    let mut listeners = Vec::new();
    for spec in &config.listeners {
        let given = sockets.iter().position(|(role, _)| *role == spec.role);
        let socket = match given {
            Some(index) => sockets.remove(index).1,
            None => TcpListener::bind(spec.address)
                .await
                .map_err(|source| ServerError::Bind {
                    role: spec.role,
                    address: spec.address,
                    source,
                })?,
        };
        let addr = socket.local_addr().map_err(|source| ServerError::Bind {
            role: spec.role,
            address: spec.address,
            source,
        })?;
        let bound = BoundListener {
            role: spec.role,
            addr,
            tls: spec.tls_mode(),
        };
        listeners.push(bound);
        tokio::spawn(accept_loop(
            socket,
            bound,
            shared.clone(),
            shutdown.subscribe(),
            done_tx.clone(),
        ));
    }
    Ok(RunningServer {
        listeners,
        identity,
        store,
        config,
        data_dir,
        shutdown,
        done_tx: Some(done_tx),
        done_rx,
    })
}

impl RunningServer {
    /// The bound listeners, in config order.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// The address of the first listener with this role.
    pub fn addr(&self, role: Role) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.role == role)
            .map(|l| l.addr)
    }

    /// The server certificate in PEM, for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.identity.cert_pem
    }

    /// Where the certificate file is.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.identity.cert_path
    }

    /// The mail store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Stops accepting, tells idle sessions 421, lets messages being received finish (up to a
    /// grace period), and returns when every connection has ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.done_tx = None;
        // recv() yields None once every listener and connection task has dropped its sender.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, self.done_rx.recv()).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Puts the other mail of [`Variant::MailboxesPreloaded`] into every empty INBOX.
fn preload(store: &Store, config: &Config) -> Result<(), ServerError> {
    let messages = crate::variants::preloaded_messages();
    for account in &config.accounts {
        if !store.messages(&account.address, INBOX)?.is_empty() {
            continue;
        }
        for (octets, flags) in &messages {
            store.append(&account.address, INBOX, octets, flags, None)?;
        }
    }
    Ok(())
}

/// The shortest inactivity autologout RFC 3501 5.4 allows for an authenticated IMAP session.
const IMAP_AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);

/// Largest IMAP command without its literals' data; real commands are far shorter.
const IMAP_MAX_LINE: u32 = 64 * 1024;

/// Runs one IMAP session to its end.
pub(crate) async fn serve_imap(
    mut link: Link,
    conn: Connection,
    shared: &Shared,
) -> std::io::Result<()> {
    use crate::imap::framing::{Framed, Framer};
    use crate::imap::session::{Next, Session};

    let config = &shared.config;
    let idle = link.idle;
    let peer = conn.peer;
    let mut session = Session::new(config.clone(), conn, shared.store.clone());
    // An APPEND literal may be as large as a message may be.
    let max_literal = if config.faults.has(Policy::ImapNoLiteralLimit) {
        u32::MAX
    } else {
        u32::try_from(config.limits.message_size).unwrap_or(u32::MAX)
    };
    let mut framer = Framer::new(max_literal.saturating_add(IMAP_MAX_LINE), max_literal);
    if config.faults.has(Policy::ImapLiteralPlusIgnored) {
        framer.continue_non_sync();
    }
    if config.variants.has(Variant::ImapNoLiteralPlus) {
        framer.refuse_non_sync();
    }
    let mut greeting = session.greeting();
    if config.faults.has(Policy::ImapGreetingCapabilitiesStale) {
        greeting = without_tls_capabilities(&greeting);
    }
    link.send(&greeting).await?;
    let mut clock = SessionClock::new(&config.limits);
    let mut awaiting_sasl = false;
    loop {
        if session.too_many_errors() {
            let bye = session.bye("Too many errors, closing connection");
            link.send(&bye).await?;
            return Ok(());
        }
        let framed = if awaiting_sasl {
            match framer.next_line() {
                Some(response) => {
                    clock.answered();
                    awaiting_sasl = false;
                    let (reply, next) = session.sasl_response(&response);
                    link.send(&reply).await?;
                    if next == Next::Authenticate {
                        imap_authenticate(shared, &mut session, &mut link, peer).await?;
                    }
                    continue;
                }
                None => Framed::NeedMore,
            }
        } else {
            framer.next_command()
        };
        match framed {
            Framed::NeedMore => {
                if link.stopping() {
                    let bye = session.bye("Server shutting down");
                    link.send(&bye).await?;
                    return Ok(());
                }
                // RFC 3501 5.4: a logged-in client may stay silent for 30 minutes.
                let silence = if session.is_authenticated() {
                    idle.max(IMAP_AUTOLOGOUT)
                } else {
                    idle
                };
                let (deadline, expiry) = clock.deadline(silence, framer.in_literal());
                match link.read(deadline, true).await? {
                    Read::Shutdown => {}
                    Read::TimedOut => {
                        let bye = session.bye(expiry.reason());
                        link.send(&bye).await?;
                        return Ok(());
                    }
                    Read::Closed => {
                        tracing::debug!(%peer, "client closed the connection");
                        return Ok(());
                    }
                    Read::Data(bytes) => {
                        clock.received();
                        framer.push(bytes);
                    }
                }
            }
            Framed::Continue => {
                clock.answered();
                link.send(b"+ Ready for literal data\r\n").await?;
            }
            Framed::Reject { tag, reason } => {
                clock.answered();
                let (status, text) = reason.reply();
                let reply = session.rejected(tag.as_deref(), status, text);
                link.send(&reply).await?;
            }
            Framed::Command(command) => {
                clock.answered();
                let (mut reply, mut next) = session.handle(*command).await;
                // A large FETCH comes in chunks, each sent before the next is read.
                while next == Next::More {
                    link.send(&reply).await?;
                    (reply, next) = session.resume().await;
                }
                link.send(&reply).await?;
                match next {
                    Next::More => unreachable!("handled above"),
                    Next::Continue => {}
                    Next::Idle => {
                        let idling = imap_idle(&mut session, &mut framer, &mut link, &mut clock);
                        if !idling.await? {
                            return Ok(());
                        }
                    }
                    Next::Close => return link.close(&[]).await,
                    Next::SaslResponse => awaiting_sasl = true,
                    Next::Authenticate => {
                        imap_authenticate(shared, &mut session, &mut link, peer).await?;
                    }
                    Next::StartTls => {
                        if !config.faults.has(Policy::StarttlsInjection) {
                            framer.discard_pending();
                        }
                        if !link.upgrade(shared).await? {
                            return Ok(());
                        }
                        session.tls_started();
                    }
                }
            }
        }
    }
}

/// How long an IDLE may last without a word from the client: RFC 2177 asks clients to renew
/// IDLE within 29 minutes, so the server waits a little longer than that.
const IMAP_IDLE_LIMIT: Duration = Duration::from_secs(31 * 60);

/// Runs IDLE: sends changes to the selected mailbox as they happen until the client's `DONE`.
/// Returns whether the session goes on (false: the connection ended).
async fn imap_idle(
    session: &mut crate::imap::session::Session,
    framer: &mut crate::imap::framing::Framer,
    link: &mut Link,
    clock: &mut SessionClock,
) -> std::io::Result<bool> {
    let Link {
        stream,
        shutdown,
        buf,
        ..
    } = link;
    let send_limit = Duration::from_secs(60);
    // One IDLE may last 31 minutes; the session's own limits (its total time, a DONE line sent
    // a byte at a time) still hold, or renewing IDLE would keep a session forever.
    let idle_ends = tokio::time::Instant::now() + IMAP_IDLE_LIMIT;
    loop {
        if let Some(line) = framer.next_line() {
            clock.answered();
            let reply = session.idle_end(&line).await;
            stream.send(&reply, send_limit).await?;
            return Ok(true);
        }
        let (deadline, expiry) = clock.deadline(IMAP_IDLE_LIMIT, false);
        let (deadline, reason) = if idle_ends <= deadline {
            (idle_ends, "IDLE for too long, closing connection")
        } else {
            (deadline, expiry.reason())
        };
        tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(buf)) => match read {
                Err(_) => {
                    let bye = session.bye(reason);
                    stream.send(&bye, send_limit).await?;
                    return Ok(false);
                }
                Ok(Ok(0)) => return Ok(false),
                Ok(Ok(n)) => {
                    clock.received();
                    framer.push(&buf[..n]);
                }
                Ok(Err(error)) => return Err(error),
            },
            () = session.wait_for_change() => {
                let updates = session.idle_updates().await;
                if !updates.is_empty() {
                    stream.send(&updates, send_limit).await?;
                }
                if session.is_closing() {
                    // The selected mailbox went away: the updates ended with a BYE.
                    return Ok(false);
                }
            }
            () = async {
                // The guard `wait_for` returns must not live across the send below.
                let _ = shutdown.wait_for(|stop| *stop).await;
            } => {
                let bye = session.bye("Server shutting down");
                stream.send(&bye, send_limit).await?;
                return Ok(false);
            }
        }
    }
}

/// Checks the credentials a LOGIN or AUTHENTICATE left in the session, delaying failures.
async fn imap_authenticate(
    shared: &Shared,
    session: &mut crate::imap::session::Session,
    link: &mut Link,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let Some(credentials) = session.take_credentials() else {
        return Ok(());
    };
    let verdict = net::check_password(shared, peer, credentials.login, credentials.password).await;
    let reply = session.login_result(verdict);
    link.send(&reply).await
}

/// The `imap_greeting_capabilities_stale` fault: the greeting without STARTTLS and
/// LOGINDISABLED in its CAPABILITY code, which lists them before TLS.
fn without_tls_capabilities(greeting: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(greeting);
    let (Some(open), Some(close)) = (text.find("[CAPABILITY "), text.find(']')) else {
        return greeting.to_vec();
    };
    let words: Vec<&str> = text[open + 1..close]
        .split(' ')
        .filter(|word| !matches!(*word, "STARTTLS" | "LOGINDISABLED"))
        .collect();
    format!("{}[{}{}", &text[..open], words.join(" "), &text[close..]).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::without_tls_capabilities;

    #[test]
    fn stale_greeting_drops_only_the_pre_tls_capabilities() {
        let greeting =
            b"* OK [CAPABILITY IMAP4rev1 IDLE STARTTLS LOGINDISABLED] mail.test ready\r\n";
        assert_eq!(
            without_tls_capabilities(greeting),
            b"* OK [CAPABILITY IMAP4rev1 IDLE] mail.test ready\r\n"
        );
        assert_eq!(
            without_tls_capabilities(b"* OK ready\r\n"),
            b"* OK ready\r\n"
        );
    }
}

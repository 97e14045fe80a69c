//! Listeners and the per-connection driver: the thin I/O layer over [`Session`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::access::{LoginThrottle, MaildropGuard, MaildropLocks, PopBeforeSmtp};
use crate::clock::{Expiry, SessionClock};
use crate::config::{Config, Protocol, Role, TlsMode};
use crate::faults::Policy;
use crate::pop3::session as pop3;
use crate::relay::{self, dns::Dns};
use crate::smtp::session::{Connection, Event, Session};
use crate::store::{INBOX, Incoming, Store};
use crate::tls::{self, Identity};
use crate::variants::Variant;

/// How long a shutdown waits for a message that is being received.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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

/// A listener after binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundListener {
    /// Its role.
    pub role: Role,
    /// The address it actually listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Its TLS mode.
    pub tls: TlsMode,
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

/// Everything a connection task needs, shared.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    acceptor: TlsAcceptor,
    connections: Arc<Semaphore>,
    /// Open connections per client address, for `limits.connections_per_address`.
    per_address: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    maildrops: Arc<MaildropLocks>,
    pub(crate) throttle: LoginThrottle,
    pop_before_smtp: Option<PopBeforeSmtp>,
    /// The resolver for relay and the inbound DNS checks.
    dns: Dns,
    /// Wakes the relay worker when mail was queued.
    relay: relay::Waker,
    /// Messages accepted for storage since start, counted for the `drop_after_ack` fault.
    acked: AtomicU64,
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
        acked: AtomicU64::new(0),
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

async fn accept_loop(
    socket: TcpListener,
    bound: BoundListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(role = %bound.role, "accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _done = done;
            let Ok(_permit) = shared.connections.clone().try_acquire_owned() else {
                tracing::warn!(role = %bound.role, "connection limit reached; refusing a client");
                refuse_busy(tcp, &bound, &shared, "Too many connections").await;
                return;
            };
            let limit = shared.config.limits.connections_per_address;
            let Some(_slot) = AddressSlot::take(&shared.per_address, peer.ip(), limit) else {
                tracing::warn!(role = %bound.role, %peer, "per-address connection limit reached");
                refuse_busy(
                    tcp,
                    &bound,
                    &shared,
                    "Too many connections from your address",
                )
                .await;
                return;
            };
            tracing::debug!(role = %bound.role, %peer, "connection");
            let pop_before_smtp = shared
                .pop_before_smtp
                .as_ref()
                .and_then(|grants| grants.check(peer.ip(), std::time::Instant::now()))
                .filter(|account| {
                    let ignored = shared.config.faults.has(Policy::PopBeforeSmtpIgnored);
                    if ignored {
                        tracing::warn!(%peer, account, "FAULT pop_before_smtp_ignored");
                    }
                    !ignored
                });
            let client_dns = if bound.role == Role::Smtp && shared.config.relay.check_client_dns {
                if shared.config.faults.has(Policy::RelayNoFcrdns) {
                    tracing::warn!(%peer, "FAULT relay_no_fcrdns: not checking the client's reverse DNS");
                    None
                } else {
                    Some(shared.dns.confirm_client(peer.ip()).await)
                }
            } else {
                None
            };
            let conn = Connection {
                role: bound.role,
                tls_mode: bound.tls,
                peer,
                pop_before_smtp,
                client_dns,
            };
            let served = match bound.role.protocol() {
                Protocol::Smtp => serve_smtp(tcp, conn, &shared, shutdown).await,
                Protocol::Pop3 => serve_pop3(tcp, conn, &shared, shutdown).await,
                Protocol::Imap => crate::imap::driver::serve(tcp, conn, &shared, shutdown).await,
            };
            if let Err(error) = served {
                tracing::debug!(role = %bound.role, %peer, "connection ended: {error}");
            }
        });
    }
}

/// One counted connection from a client address; the count goes down when it drops.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    /// Counts a connection from `ip`, or `None` when `limit` are open from there already.
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: usize,
    ) -> Option<AddressSlot> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let open = map.entry(ip).or_insert(0);
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(AddressSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = map.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The greeting that turns a client away over a connection limit: the protocol's "try again
/// later" (RFC 5321 3.8, RFC 3206 4, RFC 3501 7.1.5).
fn busy_greeting(protocol: Protocol, config: &Config, why: &str) -> String {
    match protocol {
        Protocol::Smtp => format!("421 4.7.0 {} {why}, try again later\r\n", config.hostname),
        // Without RESP-CODES a server writes no code (RFC 2449 section 8).
        Protocol::Pop3 if config.variants.has(Variant::Pop3NoRespCodes) => {
            format!("-ERR {why}, try again later\r\n")
        }
        Protocol::Pop3 => format!("-ERR [SYS/TEMP] {why}, try again later\r\n"),
        Protocol::Imap => format!("* BYE [UNAVAILABLE] {why}, try again later\r\n"),
    }
}

/// Turns a client away over a connection limit, with the protocol's "try again later".
async fn refuse_busy(tcp: TcpStream, bound: &BoundListener, shared: &Shared, why: &str) {
    let line = busy_greeting(bound.role.protocol(), &shared.config, why);
    let mut stream = Stream::Plain(tcp);
    // Over the limit a client gets a few seconds, not a connection slot's worth of patience.
    let patience = Duration::from_secs(5);
    if bound.tls == TlsMode::Implicit {
        match tokio::time::timeout(patience, shared.acceptor.accept(stream.into_tcp())).await {
            Ok(Ok(tls)) => stream = Stream::Tls(Box::new(tls)),
            _ => return,
        }
    }
    let _ = tokio::time::timeout(patience, async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A connection before or after TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake is in progress.
    Upgrading,
}

impl Stream {
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
            Stream::Upgrading => Ok(0),
        }
    }

    /// Writes everything or fails; `limit` bounds how long a client that does not read can
    /// hold the session.
    pub(crate) async fn send(&mut self, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(limit, self.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::other("client stopped reading; write timed out"))?
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(bytes).await,
            Stream::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
            Stream::Upgrading => Ok(()),
        }
    }

    pub(crate) async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.shutdown().await,
            Stream::Tls(tls) => tls.shutdown().await,
            Stream::Upgrading => Ok(()),
        }
    }

    pub(crate) fn into_tcp(self) -> TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.into_inner().0,
            Stream::Upgrading => unreachable!("a stream is never left mid-upgrade"),
        }
    }
}

/// The server side of a TLS handshake; `None` when the `legacy_tls` or `weak_ciphers` fault
/// answered instead.
/// Bounded by `limits.tls_handshake_timeout_secs`, not the idle timeout: a client that opens a
/// handshake and stalls holds a connection slot only that long.
pub(crate) async fn handshake(
    mut tcp: TcpStream,
    shared: &Shared,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let limit = Duration::from_secs(shared.config.limits.tls_handshake_timeout_secs);
    tokio::time::timeout(limit, async {
        if shared.config.faults.has(Policy::LegacyTls) && tls::answer_legacy_hello(&mut tcp).await?
        {
            return Ok(None);
        }
        if shared.config.faults.has(Policy::WeakCiphers) && tls::answer_weak_hello(&mut tcp).await?
        {
            return Ok(None);
        }
        shared.acceptor.accept(tcp).await.map(Some)
    })
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// Runs one SMTP session to its end.
async fn serve_smtp(
    tcp: TcpStream,
    conn: Connection,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let config = &shared.config;
    let idle = Duration::from_secs(config.limits.idle_timeout_secs);
    let mut stream = Stream::Plain(tcp);
    if conn.tls_mode == TlsMode::Implicit {
        let Some(tls) = handshake(stream.into_tcp(), shared).await? else {
            return Ok(());
        };
        stream = Stream::Tls(Box::new(tls));
    }
    let peer = conn.peer;
    let mut session = Session::new(config.clone(), conn);
    let mut clock = SessionClock::new(&config.limits);
    let mut buf = vec![0u8; 16 * 1024];
    let mut grace_deadline: Option<Instant> = None;
    let mut event = session.greet();
    loop {
        event = match event {
            Event::NeedInput => {
                let output = session.take_output();
                if !output.is_empty() {
                    clock.answered();
                }
                stream.send(&output, idle).await?;
                let stopping = *shutdown.borrow();
                if stopping && !session.in_message_data() {
                    session.abort("4.3.2", "Server shutting down");
                    event = session.step();
                    continue;
                }
                if stopping && grace_deadline.is_none() {
                    grace_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                if grace_deadline.is_some_and(|grace| Instant::now() >= grace) {
                    // A client still streaming data when the grace period ends is cut off; its
                    // message was never acknowledged.
                    session.abort("4.3.2", "Server shutting down");
                    event = session.step();
                    continue;
                }
                let (limit, expiry) = clock.deadline(idle, session.in_message_data());
                let deadline = grace_deadline.map_or(limit, |grace| grace.min(limit));
                let watch_shutdown = !stopping;
                tokio::select! {
                    read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => match read {
                        Err(_) if grace_deadline.is_some() => {
                            session.abort("4.3.2", "Server shutting down");
                        }
                        Err(_) => {
                            if expiry != Expiry::Idle {
                                tracing::info!(%peer, ?expiry, "session time limit");
                            }
                            session.abort("4.4.2", expiry.reason());
                        }
                        Ok(Ok(0)) => {
                            tracing::debug!(%peer, "client closed the connection");
                            return Ok(());
                        }
                        Ok(Ok(n)) => {
                            clock.received();
                            session.push_input(&buf[..n]);
                        }
                        Ok(Err(error)) => return Err(error),
                    },
                    _ = shutdown.wait_for(|stop| *stop), if watch_shutdown => {}
                }
                session.step()
            }
            Event::Delay(delay) => {
                tokio::time::sleep(delay).await;
                session.step()
            }
            Event::StartTls => {
                stream.send(&session.take_output(), idle).await?;
                let tcp = std::mem::replace(&mut stream, Stream::Upgrading).into_tcp();
                let Some(tls) = handshake(tcp, shared).await? else {
                    return Ok(());
                };
                stream = Stream::Tls(Box::new(tls));
                session.tls_started();
                session.step()
            }
            Event::Authenticate { login, password } => {
                let verdict = check_password(shared, login.clone(), password).await;
                match &verdict {
                    Some(account) => shared.throttle.success(account, peer.ip()),
                    None => login_failed(shared, &login, peer).await,
                }
                if verdict.is_none()
                    && shared.config.faults.has(Policy::AuthRevealsUnknownUser)
                    && shared.config.account(&login).is_none()
                {
                    session.auth_failed_unknown_user();
                } else {
                    session.auth_result(verdict);
                }
                session.step()
            }
            Event::CheckSenderDomain(domain) => {
                stream.send(&session.take_output(), idle).await?;
                let verdict = shared.dns.check_sender_domain(&domain).await;
                session.sender_verdict(verdict);
                session.step()
            }
            Event::Deliver(envelope) => {
                // Shared with the blocking task that stores it, without copying the message.
                let envelope = Arc::new(envelope);
                for foreign in &envelope.discarded {
                    tracing::warn!(
                        id = envelope.id,
                        "FAULT open_relay: discarding mail for {foreign}"
                    );
                }
                let store = shared.store.clone();
                let size = envelope.message.len();
                let result = if envelope.local.is_empty() && envelope.remote.is_empty() {
                    Ok(())
                } else if shared.config.faults.has(Policy::DropAfterAck)
                    && shared
                        .acked
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(10)
                {
                    tracing::warn!(
                        id = envelope.id,
                        "FAULT drop_after_ack: acknowledging a message but storing nothing"
                    );
                    Ok(())
                } else {
                    let envelope = envelope.clone();
                    tokio::task::spawn_blocking(move || {
                        // Usually one copy; with per-recipient trace fields, one per such
                        // recipient, stored one after the other.
                        envelope.copies().iter().try_for_each(|copy| {
                            store
                                .accept(&Incoming {
                                    sender: &envelope.sender,
                                    local: &copy.local,
                                    remote: &copy.remote,
                                    message: &copy.message,
                                    queue_id: &envelope.id,
                                })
                                .map(drop)
                        })
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|stored| stored.map_err(|e| e.to_string()))
                };
                if result.is_ok() {
                    tracing::info!(
                        id = envelope.id,
                        from = envelope.sender,
                        to = ?envelope.local,
                        relay = ?envelope.remote,
                        size,
                        "accepted"
                    );
                    if !envelope.remote.is_empty() {
                        shared.relay.wake();
                    }
                }
                session.delivery_result(&envelope.id, result);
                session.step()
            }
            Event::Close => {
                stream.send(&session.take_output(), idle).await?;
                let _ = tokio::time::timeout(idle, stream.shutdown()).await;
                return Ok(());
            }
        };
    }
}

/// Logs a failed login and waits the throttle's delay before the session may answer it.
pub(crate) async fn login_failed(shared: &Shared, login: &str, peer: SocketAddr) {
    if shared.config.faults.has(Policy::NoAuthThrottle) {
        tracing::warn!(%peer, login, "FAULT no_auth_throttle: login failed, answering at once");
        return;
    }
    // Counted per existing account; every unknown login shares one count, so that made-up
    // names cannot grow the throttle's memory.
    let account = shared
        .config
        .account(login)
        .map_or("<unknown account>", |a| a.address.as_str());
    let delay = shared
        .throttle
        .failure(account, peer.ip(), std::time::Instant::now());
    tracing::warn!(%peer, login, delay_ms = delay.as_millis(), "login failed");
    tokio::time::sleep(delay).await;
}

/// Checks credentials off the executor (argon2 is slow on purpose); the account on success.
pub(crate) async fn check_password(
    shared: &Shared,
    login: String,
    password: crate::auth::Password,
) -> Option<String> {
    let config = shared.config.clone();
    tokio::task::spawn_blocking(move || {
        if config.faults.has(Policy::AnyPassword) {
            tracing::warn!("FAULT any_password: not checking the password of {login}");
            return config.account(&login).map(|a| a.address.clone());
        }
        crate::auth::authenticate(&config, &login, password.expose())
    })
    .await
    .ok()
    .flatten()
}

/// Runs a blocking store call off the executor; a panic in it becomes an error message.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Locks and lists a maildrop for a POP3 session that has just logged in.
async fn open_maildrop(
    shared: &Shared,
    account: &str,
    lock: &mut Option<MaildropGuard>,
) -> Result<Vec<pop3::MaildropEntry>, pop3::MaildropError> {
    if shared.config.faults.has(Policy::Pop3NoLock) {
        tracing::warn!(account, "FAULT pop3_no_lock: not locking the maildrop");
    } else {
        match shared.maildrops.try_lock(account) {
            Some(guard) => *lock = Some(guard),
            None => return Err(pop3::MaildropError::InUse),
        }
    }
    let store = shared.store.clone();
    let owner = account.to_owned();
    let faults = shared.config.faults.clone();
    let listed = blocking(move || {
        let status = store.mailbox_status(&owner, INBOX)?;
        let mut messages = store.messages(&owner, INBOX)?;
        if faults.has(Policy::Pop3SizesWithoutCr) {
            tracing::warn!("FAULT pop3_sizes_without_cr: reporting sizes without CRs");
            for message in &mut messages {
                let octets = store.read_message(&owner, INBOX, message.uid)?;
                let crlfs = octets.windows(2).filter(|w| w == b"\r\n").count();
                message.size -= crlfs as u64;
            }
        }
        Ok((status.uidvalidity, messages))
    })
    .await;
    // UIDVALIDITY and UID together never repeat (the store hands out neither twice).
    let nonce = if shared.config.faults.has(Policy::Pop3UidlUnstable) {
        tracing::warn!("FAULT pop3_uidl_unstable: new UIDL values for this session");
        format!(".{}", fastrand::u32(..))
    } else {
        String::new()
    };
    match listed {
        Ok((uidvalidity, messages)) => Ok(messages
            .into_iter()
            .map(|m| pop3::MaildropEntry {
                uid: m.uid,
                size: m.size,
                uidl: format!("{uidvalidity}.{}{nonce}", m.uid),
            })
            .collect()),
        Err(why) => {
            *lock = None;
            tracing::error!(account, "cannot open maildrop: {why}");
            Err(pop3::MaildropError::Unavailable(why))
        }
    }
}

/// The `pop3_update_on_disconnect` fault: a client that drops the connection still has its
/// DELE marks applied. Correct servers delete only at QUIT (RFC 1939 section 6).
async fn update_on_disconnect(shared: &Shared, session: &pop3::Session) {
    if !shared.config.faults.has(Policy::Pop3UpdateOnDisconnect) {
        return;
    }
    let Some((account, uids)) = session.marked().filter(|(_, uids)| !uids.is_empty()) else {
        return;
    };
    tracing::warn!(
        account,
        "FAULT pop3_update_on_disconnect: deleting without QUIT"
    );
    let store = shared.store.clone();
    if let Err(why) = blocking(move || store.expunge(&account, INBOX, &uids)).await {
        tracing::error!("FAULT pop3_update_on_disconnect: {why}");
    }
}

/// Runs one POP3 session to its end. The maildrop lock is held from login until the session
/// ends in any way; deletions happen only when the session asks for them at QUIT.
async fn serve_pop3(
    tcp: TcpStream,
    conn: Connection,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let config = &shared.config;
    let idle = Duration::from_secs(config.limits.idle_timeout_secs);
    let mut stream = Stream::Plain(tcp);
    if conn.tls_mode == TlsMode::Implicit {
        let Some(tls) = handshake(stream.into_tcp(), shared).await? else {
            return Ok(());
        };
        stream = Stream::Tls(Box::new(tls));
    }
    let peer = conn.peer;
    let mut session = pop3::Session::new(config.clone(), conn);
    let mut clock = SessionClock::new(&config.limits);
    let mut lock: Option<MaildropGuard> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut event = session.greet();
    loop {
        event = match event {
            pop3::Event::NeedInput => {
                let output = session.take_output();
                if !output.is_empty() {
                    clock.answered();
                }
                stream.send(&output, idle).await?;
                if *shutdown.borrow() {
                    session.abort("[SYS/TEMP] Server shutting down");
                    event = session.step();
                    continue;
                }
                let (deadline, expiry) = clock.deadline(idle, false);
                let read = tokio::select! {
                    read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => Some(read),
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                match read {
                    None => {}
                    Some(Err(_)) => session.abort(expiry.reason()),
                    Some(Ok(Ok(0))) => {
                        tracing::debug!(%peer, "client closed the connection");
                        update_on_disconnect(shared, &session).await;
                        return Ok(());
                    }
                    Some(Ok(Ok(n))) => {
                        clock.received();
                        session.push_input(&buf[..n]);
                    }
                    Some(Ok(Err(error))) => {
                        update_on_disconnect(shared, &session).await;
                        return Err(error);
                    }
                }
                session.step()
            }
            pop3::Event::StartTls => {
                stream.send(&session.take_output(), idle).await?;
                let tcp = std::mem::replace(&mut stream, Stream::Upgrading).into_tcp();
                let Some(tls) = handshake(tcp, shared).await? else {
                    return Ok(());
                };
                stream = Stream::Tls(Box::new(tls));
                session.tls_started();
                session.step()
            }
            pop3::Event::Authenticate { login, password } => {
                let verdict = check_password(shared, login.clone(), password).await;
                if verdict.is_none() {
                    login_failed(shared, &login, peer).await;
                }
                session.auth_result(verdict);
                session.step()
            }
            pop3::Event::AuthenticateApop {
                login,
                timestamp,
                digest,
            } => {
                let verdict = crate::auth::authenticate_apop(config, &login, &timestamp, &digest);
                if verdict.is_none() {
                    login_failed(shared, &login, peer).await;
                }
                session.auth_result(verdict);
                session.step()
            }
            pop3::Event::OpenMaildrop { account } => {
                let opened = open_maildrop(shared, &account, &mut lock).await;
                if opened.is_ok() {
                    shared.throttle.success(&account, peer.ip());
                    tracing::info!(%peer, account, "POP3 login");
                    if let Some(grants) = &shared.pop_before_smtp {
                        grants.grant(peer.ip(), &account, std::time::Instant::now());
                    }
                }
                session.maildrop_opened(opened);
                session.step()
            }
            pop3::Event::Retrieve { uid } => {
                let store = shared.store.clone();
                let account = session.account().unwrap_or_default().to_owned();
                let read = blocking(move || store.read_message(&account, INBOX, uid)).await;
                session.retrieved(read);
                // Sent now rather than with the next read: a client that pipelines RETR for a
                // whole maildrop must not make the server hold it all in memory.
                stream.send(&session.take_output(), idle).await?;
                session.step()
            }
            pop3::Event::Update { account, delete } => {
                let store = shared.store.clone();
                let owner = account.clone();
                let removed = blocking(move || store.expunge(&owner, INBOX, &delete)).await;
                match &removed {
                    Ok(uids) => tracing::info!(%peer, account, deleted = uids.len(), "POP3 update"),
                    Err(why) => tracing::error!(%peer, account, "POP3 update failed: {why}"),
                }
                // The UPDATE state is over: release the maildrop before the client hears "+OK",
                // so that it can log in again at once.
                drop(lock.take());
                session.update_result(removed.map(drop));
                session.step()
            }
            pop3::Event::Close => {
                drop(lock.take());
                stream.send(&session.take_output(), idle).await?;
                let _ = tokio::time::timeout(idle, stream.shutdown()).await;
                return Ok(());
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Protocol, Variant, busy_greeting};

    #[test]
    fn a_busy_server_says_try_later_in_each_protocol() {
        let mut config = Config::defaults();
        let why = "Too many connections from your address";
        assert_eq!(
            busy_greeting(Protocol::Smtp, &config, why),
            format!("421 4.7.0 mail.example.test {why}, try again later\r\n")
        );
        assert_eq!(
            busy_greeting(Protocol::Pop3, &config, why),
            format!("-ERR [SYS/TEMP] {why}, try again later\r\n")
        );
        assert_eq!(
            busy_greeting(Protocol::Imap, &config, why),
            format!("* BYE [UNAVAILABLE] {why}, try again later\r\n")
        );
        config.variants.insert(Variant::Pop3NoRespCodes);
        assert_eq!(
            busy_greeting(Protocol::Pop3, &config, why),
            format!("-ERR {why}, try again later\r\n")
        );
    }
}

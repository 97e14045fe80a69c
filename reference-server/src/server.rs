//! Starting and stopping the server: the store, the certificate, the listeners (served by
//! `net`, which hands each connection to its protocol's driver) and the relay worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::access::{LoginThrottle, MaildropLocks, PopBeforeSmtp};
use crate::config::{Config, Role};
use crate::faults::Policy;
use crate::net::{SHUTDOWN_GRACE, Shared, accept_loop};
use crate::relay;
use crate::relay::dns::{Dns, DnsError};
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
    Dns(#[from] DnsError),
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
            Dns::new(Some(SocketAddr::from(([127, 0, 0, 1], 53))))?
        }
        Err(why) => return Err(why.into()),
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

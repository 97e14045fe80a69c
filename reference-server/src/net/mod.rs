//! The connection layer every protocol driver runs on: the listeners and their limits, the
//! plain or TLS stream, a connection with deadline-aware reads that watch the shutdown signal,
//! and the throttled password check. Protocol decisions live in the sessions, not here.

mod connection;
mod dot;
mod listener;
mod login;
mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::access::{LoginThrottle, MaildropLocks, PopBeforeSmtp};
use crate::config::{Config, Role, TlsMode};
use crate::relay::{self, dns::Dns, dns::Verdict};
use crate::store::{Store, StoreError};

pub(crate) use connection::{Driven, Link, Read};
pub use dot::dot_stuff;
pub use listener::BoundListener;
pub(crate) use listener::accept_loop;
pub(crate) use login::{authenticate, check_apop, check_password};
pub(crate) use stream::Stream;

/// How long a shutdown waits for a message that is being received.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Facts about the connection a session runs on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Listener role.
    pub role: Role,
    /// Listener TLS mode.
    pub tls_mode: TlsMode,
    /// The client's address.
    pub peer: SocketAddr,
    /// The account whose POP3 login authorised this client address for SMTP (POP-before-SMTP),
    /// if that is on and the address is within its window.
    pub pop_before_smtp: Option<String>,
    /// The forward-confirmed reverse DNS check of the client's address, when that check is on
    /// for this listener.
    pub client_dns: Option<Verdict>,
}

/// Everything a connection task needs, shared.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) connections: Arc<Semaphore>,
    /// Open connections per client address, for `limits.connections_per_address`.
    pub(crate) per_address: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    pub(crate) maildrops: Arc<MaildropLocks>,
    pub(crate) throttle: LoginThrottle,
    pub(crate) pop_before_smtp: Option<PopBeforeSmtp>,
    /// The resolver for relay and the inbound DNS checks.
    pub(crate) dns: Dns,
    /// Wakes the relay worker when mail was queued.
    pub(crate) relay: relay::Waker,
    /// Messages accepted for storage since start, counted for the `drop_after_ack` fault.
    pub(crate) acked: Arc<AtomicU64>,
}

/// Runs a blocking store call off the executor; a panic in it becomes
/// [`StoreError::Interrupted`].
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Interrupted(join.to_string()))?
}

//! The listeners: the accept loop, the connection slots (in all and per client address) and
//! the "try again later" that turns a client away over them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{Connection, Link, Shared, Stream};
use crate::config::{Config, Protocol, Role, TlsMode};
use crate::variants::Variant;

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

/// Accepts connections until shutdown, each served by its protocol's driver in a task of its
/// own that holds a clone of `done` until it ends.
pub(crate) async fn accept_loop(
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
            // The facts about the client; what they allow is the session's decision (and
            // its faults').
            let pop_before_smtp = shared
                .pop_before_smtp
                .as_ref()
                .and_then(|grants| grants.check(peer.ip(), std::time::Instant::now()));
            let client_dns = if bound.role == Role::Smtp && shared.config.relay.check_client_dns {
                Some(shared.dns.confirm_client(peer.ip()).await)
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
            let served = match Link::open(tcp, bound.tls, &shared, shutdown).await {
                Ok(None) => Ok(()),
                Ok(Some(link)) => match bound.role.protocol() {
                    Protocol::Smtp => crate::smtp::driver::serve(link, conn, &shared).await,
                    Protocol::Pop3 => crate::pop3::driver::serve(link, conn, &shared).await,
                    Protocol::Imap => crate::imap::driver::serve(link, conn, &shared).await,
                },
                Err(error) => Err(error),
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
    // Over the limit a client gets a few seconds, not a connection slot's worth of patience.
    let patience = Duration::from_secs(5);
    let mut stream = if bound.tls == TlsMode::Implicit {
        match tokio::time::timeout(patience, shared.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
            _ => return,
        }
    } else {
        Stream::Plain(tcp)
    };
    let _ = tokio::time::timeout(patience, async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
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

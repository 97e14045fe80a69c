//! Loopback ports for the workspace's tests.
//!
//! Binding port 0, reading the number the kernel chose and closing the socket so that the code
//! under test can bind that number leaves a window in which another process can take the port.
//! The tests avoid it in this order of preference:
//!
//! 1. Code that can bind port 0 itself is started on port 0 and asked what it bound: the
//!    reference server (`RunningServer::addr`, or the `listening` lines of its binary),
//!    fake-dns, the harness's capture sink.
//! 2. A port that must stay closed (nothing listens there), or be known before the code that will
//!    serve it starts, is a [`HeldPort`]: bound but not listening, so connections to it are
//!    refused and no other socket can bind it. [`HeldPort::listen`] turns it into a listener for
//!    code that can take one (the reference server's `start_with_listeners`).
//! 3. Only where another program must be told a number before it binds it itself (a target
//!    profile, a config file) is [`unused_port`] used, racy as it is, and then inside
//!    [`retry_on_addr_in_use`], which starts again with fresh numbers when the port was taken in
//!    between.

use std::error::Error;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// A TCP port on 127.0.0.1 that is bound but not listening: connections to it are refused, as to
/// a closed port, and no other socket can bind it while this is alive (it does not set
/// `SO_REUSEADDR`). Dropping it frees the port.
#[derive(Debug)]
pub struct HeldPort {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl HeldPort {
    /// Binds a fresh port on 127.0.0.1.
    pub fn new() -> io::Result<HeldPort> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = socket.local_addr()?;
        Ok(HeldPort { socket, addr })
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// 127.0.0.1 and the port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on the port, which was never free in between. Needs a Tokio runtime.
    pub fn listen(self) -> io::Result<TcpListener> {
        self.socket.listen(1024)
    }
}

/// A port on 127.0.0.1 that both UDP and TCP could bind just now. **Racy**: nothing holds it
/// afterwards, so another process may take it before the program it is meant for binds it. Only
/// for a program that must be told the number before it starts, and only inside
/// [`retry_on_addr_in_use`].
pub fn unused_port() -> io::Result<u16> {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.expect("at least one attempt was made"))
}

/// How many times [`retry_on_addr_in_use`] makes its attempt at most.
pub const ATTEMPTS: usize = 5;

/// Makes `attempt` until it ends otherwise than for an address in use (an [`io::Error`] of kind
/// [`io::ErrorKind::AddrInUse`] anywhere in the error's chain of sources), at most [`ATTEMPTS`]
/// times, and returns its last result. Each attempt picks its ports afresh with
/// [`unused_port`], and cleans up what it started before it fails.
pub async fn retry_on_addr_in_use<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < ATTEMPTS && addr_in_use(error.as_ref()) => {}
            result => return result,
        }
    }
}

/// Whether `error`, or an error in its chain of sources, is an address in use.
pub fn addr_in_use(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<io::Error>()
            .is_some_and(|error| error.kind() == io::ErrorKind::AddrInUse)
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use anyhow::Context as _;

    use super::*;

    #[tokio::test]
    async fn a_held_port_refuses_connections_keeps_others_off_and_listens_later() {
        let held = HeldPort::new().unwrap();
        assert_ne!(held.port(), 0);
        let refused = tokio::net::TcpStream::connect(held.addr())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        // Not even a socket that asks to reuse the address gets it.
        let error = TcpListener::bind(held.addr()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        let addr = held.addr();
        let listener = held.listen().unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        assert_eq!(
            connected.unwrap().local_addr().unwrap(),
            accepted.unwrap().1
        );
    }

    #[test]
    fn an_unused_port_is_free_for_udp_and_tcp() {
        let port = unused_port().unwrap();
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[tokio::test]
    async fn only_an_address_in_use_is_tried_again_and_not_for_ever() {
        let held = HeldPort::new().unwrap();
        let tries = AtomicUsize::new(0);
        let result: anyhow::Result<()> = retry_on_addr_in_use(|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            std::net::TcpListener::bind(held.addr()).context("cannot bind")?;
            Ok(())
        })
        .await;
        assert!(addr_in_use(result.unwrap_err().as_ref()));
        assert_eq!(tries.load(Ordering::Relaxed), ATTEMPTS);

        let tries = AtomicUsize::new(0);
        let result: anyhow::Result<u16> = retry_on_addr_in_use(|| async {
            match tries.fetch_add(1, Ordering::Relaxed) {
                0 => {
                    std::net::TcpListener::bind(held.addr())?;
                    unreachable!("the port is held")
                }
                1 => anyhow::bail!("something else"),
                _ => unreachable!("not tried after another error"),
            }
        })
        .await;
        assert_eq!(result.unwrap_err().to_string(), "something else");
        assert_eq!(tries.load(Ordering::Relaxed), 2);
    }
}

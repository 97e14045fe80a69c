//! One client connection as its driver sees it: reads bounded by a deadline that also end when
//! the server shuts down, sends bounded by the idle timeout, STARTTLS and a bounded close.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Shared, Stream};
use crate::clock::SessionClock;
use crate::config::TlsMode;

/// What the shared parts of a driver ask of a sans-I/O session.
pub(crate) trait Driven {
    /// What the session asks its driver for.
    type Event;
    /// Takes the bytes queued for the client.
    fn take_output(&mut self) -> Vec<u8>;
    /// TLS is up.
    fn tls_started(&mut self);
    /// The verdict on the credentials the session asked about.
    fn auth_result(&mut self, account: Option<String>);
    /// Runs until the session needs something from the driver.
    fn step(&mut self) -> Self::Event;
}

/// What a [`Link::read`] brought.
#[derive(Debug)]
pub(crate) enum Read<'a> {
    /// Bytes from the client.
    Data(&'a [u8]),
    /// The client closed the connection.
    Closed,
    /// The deadline passed first.
    TimedOut,
    /// The server began shutting down first.
    Shutdown,
}

/// A client connection: its stream, the server's shutdown signal and the read buffer.
pub(crate) struct Link {
    pub(crate) stream: Stream,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) buf: Vec<u8>,
    /// How long a send or the close may wait for a client that does not read.
    pub(crate) idle: Duration,
}

impl Link {
    /// The connection on an accepted socket, in TLS from the start on an implicit-TLS port;
    /// `None` when the connection ended in the handshake (a fault answered it).
    pub(crate) async fn open(
        tcp: TcpStream,
        tls_mode: TlsMode,
        shared: &Shared,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Option<Link>> {
        let Some(stream) = Stream::open(tcp, tls_mode, shared).await? else {
            return Ok(None);
        };
        Ok(Some(Link {
            stream,
            shutdown,
            buf: vec![0u8; 16 * 1024],
            idle: Duration::from_secs(shared.config.limits.idle_timeout_secs),
        }))
    }

    /// Whether the server is shutting down.
    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Reads what the client sends next, until `deadline`; with `watch_shutdown`, a shutdown
    /// ends the wait too.
    pub(crate) async fn read(
        &mut self,
        deadline: Instant,
        watch_shutdown: bool,
    ) -> std::io::Result<Read<'_>> {
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)) => Some(read),
            _ = self.shutdown.wait_for(|stop| *stop), if watch_shutdown => None,
        };
        match read {
            None => Ok(Read::Shutdown),
            Some(Err(_)) => Ok(Read::TimedOut),
            Some(Ok(Ok(0))) => Ok(Read::Closed),
            Some(Ok(Ok(n))) => Ok(Read::Data(&self.buf[..n])),
            Some(Ok(Err(error))) => Err(error),
        }
    }

    /// Sends the session's answer so far, which ends the time it took to answer ([`SessionClock`]).
    pub(crate) async fn answer(
        &mut self,
        output: &[u8],
        clock: &mut SessionClock,
    ) -> std::io::Result<()> {
        if !output.is_empty() {
            clock.answered();
        }
        self.send(output).await
    }

    /// Sends everything, waiting at most the idle timeout for a client that does not read.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.send(bytes, self.idle).await
    }

    /// Runs the TLS handshake on the socket (STARTTLS, STLS); false when the connection is
    /// over (a fault answered the handshake).
    pub(crate) async fn upgrade(&mut self, shared: &Shared) -> std::io::Result<bool> {
        self.stream.start_tls(shared).await
    }

    /// A session's STARTTLS: sends its pending output (the go-ahead), runs the handshake and
    /// tells the session; the session's next event, or `None` when the connection is over.
    pub(crate) async fn start_tls<S: Driven>(
        &mut self,
        shared: &Shared,
        session: &mut S,
    ) -> std::io::Result<Option<S::Event>> {
        self.send(&session.take_output()).await?;
        if !self.upgrade(shared).await? {
            return Ok(None);
        }
        session.tls_started();
        Ok(Some(session.step()))
    }

    /// Sends `last` and closes the connection, waiting at most the idle timeout.
    pub(crate) async fn close(&mut self, last: &[u8]) -> std::io::Result<()> {
        self.send(last).await?;
        let _ = tokio::time::timeout(self.idle, self.stream.shutdown()).await;
        Ok(())
    }
}

/// [`Driven`] for sessions whose own methods have its names.
macro_rules! driven {
    ($($session:ty => $event:ty),* $(,)?) => {$(
        impl Driven for $session {
            type Event = $event;
            fn take_output(&mut self) -> Vec<u8> {
                <$session>::take_output(self)
            }
            fn tls_started(&mut self) {
                <$session>::tls_started(self)
            }
            fn auth_result(&mut self, account: Option<String>) {
                <$session>::auth_result(self, account)
            }
            fn step(&mut self) -> $event {
                <$session>::step(self)
            }
        }
    )*};
}

driven! {
    crate::smtp::session::Session => crate::smtp::session::Event,
    crate::pop3::session::Session => crate::pop3::session::Event,
}

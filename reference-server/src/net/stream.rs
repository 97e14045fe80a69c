//! A client's byte stream, plain or TLS, and the one TLS handshake every way into TLS takes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Shared;
use crate::config::TlsMode;
use crate::faults::Policy;
use crate::tls;

/// A connection before or after TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake is in progress, or after one failed.
    Upgrading,
}

impl Stream {
    /// The stream a listener with `tls_mode` talks over: TLS from the first byte on the
    /// implicit-TLS ports. `None` when the `legacy_tls` or `weak_ciphers` fault answered the
    /// handshake instead.
    pub(crate) async fn open(
        tcp: TcpStream,
        tls_mode: TlsMode,
        shared: &Shared,
    ) -> std::io::Result<Option<Stream>> {
        let mut stream = Stream::Plain(tcp);
        if tls_mode == TlsMode::Implicit && !stream.start_tls(shared).await? {
            return Ok(None);
        }
        Ok(Some(stream))
    }

    /// Swaps the stream for TLS over the same socket (STARTTLS, STLS, or the implicit-TLS
    /// prologue); false when the connection is over (a fault answered the handshake).
    pub(crate) async fn start_tls(&mut self, shared: &Shared) -> std::io::Result<bool> {
        let Some(tcp) = std::mem::replace(self, Stream::Upgrading).into_tcp() else {
            return Ok(false);
        };
        let Some(tls) = handshake(tcp, shared).await? else {
            return Ok(false);
        };
        *self = Stream::Tls(Box::new(tls));
        Ok(true)
    }

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

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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

    /// The socket under the stream; `None` once a handshake failed.
    fn into_tcp(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.into_inner().0),
            Stream::Upgrading => None,
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

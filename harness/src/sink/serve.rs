//! The socket side of the sink: accepting connections and moving bytes between a connection
//! and its session, with STARTTLS and the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::session::{Action, Session};
use super::state::State;

/// How long a client may stay silent, and a write or handshake may take.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) struct Config {
    pub(super) hostname: String,
    /// The acceptor's configuration when STARTTLS is offered.
    pub(super) tls: Option<Arc<ServerConfig>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn io(&mut self) -> &mut dyn Io {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(stream) => stream.as_mut(),
        }
    }
}

/// Serves one listener until aborted; its sessions end with it.
pub(super) async fn accept_loop(listener: TcpListener, state: Arc<State>, config: Arc<Config>) {
    let mut sessions = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                while sessions.try_join_next().is_some() {}
                sessions.spawn(serve(stream, peer, state.clone(), config.clone()));
            }
            Err(error) => {
                // Usually out of file descriptors: give sessions a moment to end.
                tracing::warn!(%error, "capture sink cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<State>, config: Arc<Config>) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let mut session = Session::new(state, &config.hostname, config.tls.is_some(), local, peer);
    let mut stream = Stream::Plain(stream);
    let mut actions = session.start();
    let mut chunk = vec![0; 16 * 1024];
    loop {
        for action in std::mem::take(&mut actions) {
            match action {
                Action::Send(bytes) => {
                    let write = async {
                        stream.io().write_all(&bytes).await?;
                        stream.io().flush().await
                    };
                    if !matches!(timeout(IDLE_TIMEOUT, write).await, Ok(Ok(()))) {
                        return session.finish("client closed the connection");
                    }
                }
                Action::Close => {
                    let _ = timeout(IDLE_TIMEOUT, stream.io().shutdown()).await;
                    return session.finish("closed by the sink");
                }
                Action::StartTls => {
                    let (Stream::Plain(tcp), Some(tls)) = (stream, &config.tls) else {
                        return session.finish("STARTTLS without TLS configured");
                    };
                    let handshake = TlsAcceptor::from(tls.clone()).accept(tcp);
                    match timeout(IDLE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => {
                            stream = Stream::Tls(Box::new(tls));
                            session.tls_started();
                        }
                        Ok(Err(error)) => {
                            return session.finish(&format!("TLS handshake failed: {error}"));
                        }
                        Err(_) => return session.finish("TLS handshake timed out"),
                    }
                }
            }
        }
        actions = match timeout(IDLE_TIMEOUT, stream.io().read(&mut chunk)).await {
            Err(_) => session.idle_timeout(),
            Ok(Ok(0) | Err(_)) => return session.finish("client closed the connection"),
            Ok(Ok(count)) => session.receive(&chunk[..count]),
        };
    }
}

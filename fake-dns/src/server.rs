//! The running server: UDP and TCP sockets on one port, answering from a shared zone set that
//! tests and SIGHUP can change between any two queries.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use crate::error::ZoneError;
use crate::record::{Record, RecordType};
use crate::zones::Zones;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Attempts at finding an ephemeral port free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 10;

/// A running fake DNS server. Clones are handles to the same server; changes made through any
/// of them are seen by the next query.
#[derive(Clone)]
pub struct FakeDns {
    inner: Arc<Inner>,
}

struct Inner {
    zones: Arc<RwLock<Zones>>,
    local_addr: SocketAddr,
    server: tokio::sync::Mutex<Option<Server<Handler>>>,
}

impl FakeDns {
    /// Binds UDP and TCP on `listen` (port 0: one ephemeral port for both) and starts serving
    /// `zones`.
    pub async fn start(listen: SocketAddr, zones: Zones) -> io::Result<FakeDns> {
        let (udp, tcp) = bind_pair(listen).await?;
        let local_addr = udp.local_addr()?;
        let zones = Arc::new(RwLock::new(zones));
        let mut server = Server::new(Handler {
            zones: zones.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(FakeDns {
            inner: Arc::new(Inner {
                zones,
                local_addr,
                server: tokio::sync::Mutex::new(Some(server)),
            }),
        })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Adds an empty zone with a generated SOA and NS unless it is already served; returns
    /// whether it was added.
    pub fn add_zone(&self, origin: &str) -> Result<bool, ZoneError> {
        self.write(|zones| zones.add_zone(origin))
    }

    /// Replaces the record sets of the records' types at `name`; see [`Zones::set_records`].
    pub fn set_records(&self, name: &str, records: Vec<Record>) -> Result<(), ZoneError> {
        self.write(|zones| zones.set_records(name, records))
    }

    /// [`FakeDns::set_records`] with an explicit TTL.
    pub fn set_records_with_ttl(
        &self,
        name: &str,
        ttl: u32,
        records: Vec<Record>,
    ) -> Result<(), ZoneError> {
        self.write(|zones| zones.set_records_with_ttl(name, Some(ttl), records))
    }

    /// Removes the record set of `rtype` at `name`.
    pub fn remove_records(&self, name: &str, rtype: RecordType) -> Result<(), ZoneError> {
        self.write(|zones| zones.remove_records(name, rtype))
    }

    /// Serves `zones` instead of the current set, from the next query on.
    pub fn replace_zones(&self, zones: Zones) {
        self.write(|current| *current = zones);
    }

    /// A copy of the zones being served.
    pub fn zones(&self) -> Zones {
        self.inner
            .zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops both sockets and returns once they are closed. Other handles stay usable for
    /// record changes but nothing answers any more.
    pub async fn shutdown(self) {
        let server = self.inner.server.lock().await.take();
        if let Some(mut server) = server
            && let Err(error) = server.shutdown_gracefully().await
        {
            warn!(%error, "fake-dns: error while shutting down");
        }
    }

    fn write<T>(&self, change: impl FnOnce(&mut Zones) -> T) -> T {
        // A panic elsewhere cannot leave the map half-changed: every change is checked before
        // it is applied, so a poisoned lock still guards consistent data.
        let mut zones = self
            .inner
            .zones
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut zones)
    }
}

/// UDP first, then TCP on the port UDP got; with port 0 another process may hold that TCP port,
/// so a few fresh UDP ports are tried.
async fn bind_pair(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if listen.port() != 0 {
        return Ok((
            UdpSocket::bind(listen).await?,
            TcpListener::bind(listen).await?,
        ));
    }
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.expect("at least one attempt was made"))
}

/// Answers queries from the shared zones.
struct Handler {
    zones: Arc<RwLock<Zones>>,
}

impl Handler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        // Clients that speak EDNS get EDNS back, with their payload size (at least 512); the
        // response is encoded within it over UDP and truncated (TC) if it does not fit.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().max(512));
            ours
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);

        let query = match request.queries.queries() {
            _ if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) => {
                // We speak EDNS version 0 only (RFC 6891 section 6.1.3).
                metadata.response_code = ResponseCode::BADVERS;
                let response = builder.error_msg(&request.metadata, ResponseCode::BADVERS);
                return send(&mut handle, response, metadata).await;
            }
            [query] if request.metadata.op_code == OpCode::Query => query,
            _ => {
                let code = if request.metadata.op_code == OpCode::Query {
                    ResponseCode::FormErr
                } else {
                    ResponseCode::NotImp
                };
                metadata.response_code = code;
                let response = builder.error_msg(&request.metadata, code);
                return send(&mut handle, response, metadata).await;
            }
        };
        let question = query.original();
        let answer = self
            .zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(
                question.name(),
                question.query_type(),
                question.query_class(),
            );
        debug!(
            src = %request.src(),
            protocol = %request.protocol(),
            name = %question.name(),
            qtype = %question.query_type(),
            code = %answer.code,
            answers = answer.answers.len(),
            "fake-dns: query"
        );
        metadata.authoritative = answer.authoritative;
        metadata.response_code = answer.code;
        metadata.recursion_available = false;
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        send(&mut handle, response, metadata).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
    metadata: Metadata,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            warn!(%error, "fake-dns: cannot send response");
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature that macro gives
// it, written out so the crate needs no proc-macro of its own.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}

//! DNS for mail: the route to a domain (MX, null MX, implicit MX) and the checks a receiving
//! server may make on its client (forward-confirmed reverse DNS, a sender domain that can receive
//! mail).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::ProtoError;
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};

/// One host to try for a domain, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host name (from MX), or the domain itself for an implicit MX.
    pub host: String,
    /// The MX preference; 0 for an implicit MX.
    pub preference: u16,
}

/// Why a DNS question got no usable answer. The texts reach logs, the queue's last error,
/// expiry bounces and (through [`Verdict::TempFail`]) SMTP replies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(#[source] NetError),
    /// The resolver could not be built.
    #[error("cannot build the DNS resolver: {0}")]
    Build(#[source] NetError),
    /// A name to look up is not a DNS name (`name` with its final dot).
    #[error("{name:?} is not a DNS name: {error}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        error: ProtoError,
    },
    /// A reverse name is not a DNS name.
    #[error("{name:?}: {error}")]
    BadReverseName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        error: ProtoError,
    },
    /// The resolver got no answer in time.
    #[error("no answer from the DNS server (timeout)")]
    Timeout,
    /// The resolver failed otherwise.
    #[error("{0}")]
    Resolver(#[source] NetError),
    /// No server to ask directly.
    #[error("no DNS server configured")]
    NoServer,
    /// A server asked directly answered with an error code.
    #[error("{server} answered {code}")]
    Answered {
        /// The server.
        server: SocketAddr,
        /// Its response code.
        code: ResponseCode,
    },
    /// A query could not be encoded.
    #[error("cannot encode a DNS query: {0}")]
    Encode(#[source] ProtoError),
    /// A server asked directly did not answer over UDP in time.
    #[error("no answer from {0} (timeout)")]
    UdpTimeout(SocketAddr),
    /// A query over UDP failed.
    #[error("DNS query to {server} failed: {error}")]
    Udp {
        /// The server.
        server: SocketAddr,
        /// Why.
        #[source]
        error: Arc<std::io::Error>,
    },
    /// A server asked directly did not answer over TCP in time.
    #[error("no answer from {0} over TCP (timeout)")]
    TcpTimeout(SocketAddr),
    /// A query over TCP failed.
    #[error("DNS query to {server} over TCP failed: {error}")]
    Tcp {
        /// The server.
        server: SocketAddr,
        /// Why.
        #[source]
        error: Arc<std::io::Error>,
    },
    /// A mail host has neither A nor AAAA records.
    #[error("host {0} has no address records")]
    NoAddress(String),
    /// A mail host does not exist.
    #[error("host {0} does not exist (NXDOMAIN)")]
    NoSuchHost(String),
}

/// Why a domain has no route.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// The domain says it accepts no mail (RFC 7505).
    #[error("{0} does not accept mail (null MX, RFC 7505)")]
    NullMx(String),
    /// The domain does not exist.
    #[error("domain {0} does not exist (NXDOMAIN)")]
    NoSuchDomain(String),
    /// Neither MX nor address records.
    #[error("domain {0} has no MX and no address records")]
    NoMailHost(String),
    /// The DNS did not answer usefully; try again later.
    #[error("DNS lookup for {domain} failed: {reason}")]
    Temporary {
        /// The domain.
        domain: String,
        /// What went wrong.
        #[source]
        reason: DnsError,
    },
}

impl RouteError {
    /// Whether a later attempt might succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, RouteError::Temporary { .. })
    }
}

/// The result of a DNS check on an inbound client or sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The check passed; for FCrDNS, the confirmed name.
    Pass(String),
    /// The check failed for good: answer 550.
    Fail(String),
    /// The DNS did not answer: answer 450.
    TempFail(String),
}

/// A resolver for mail routing with no hosts file and no cache.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    /// The servers asked directly for PTR records (see [`Dns::ptr`]).
    servers: Vec<SocketAddr>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

/// What a lookup found.
enum Found<T> {
    Records(Vec<T>),
    NoData,
    NxDomain,
}

impl Dns {
    /// A resolver asking `server` (UDP, and TCP for truncated answers), or the servers of
    /// /etc/resolv.conf when `None`.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let servers = match server {
            Some(addr) => vec![addr],
            None => hickory_resolver::system_conf::read_system_conf()
                .map(|(config, _)| {
                    config
                        .name_servers
                        .iter()
                        .map(|ns| SocketAddr::new(ns.ip, 53))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![ns]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider).map_err(DnsError::SystemConfig)?,
        };
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.cache_size = 0;
        options.timeout = Duration::from_secs(5);
        options.attempts = 2;
        options.ndots = 0;
        let resolver = builder.build().map_err(DnsError::Build)?;
        Ok(Dns { resolver, servers })
    }

    /// PTR records of a reverse name, asked of the DNS server itself. The resolver library
    /// answers reverse names of loopback addresses with `localhost.` without asking (RFC 6761
    /// 6.3), but a test network on 127.0.0.0/8 gives those addresses names of its own, and the
    /// FCrDNS check must see them.
    async fn ptr(&self, reverse: &str) -> Result<Found<String>, DnsError> {
        let name = Name::from_ascii(reverse).map_err(|error| DnsError::BadReverseName {
            name: reverse.to_owned(),
            error,
        })?;
        let mut last = DnsError::NoServer;
        for &server in &self.servers {
            match raw_query(server, &name, RecordType::PTR).await {
                Ok(message) => {
                    let code = message.metadata.response_code;
                    if code == ResponseCode::NXDomain {
                        return Ok(Found::NxDomain);
                    }
                    if code != ResponseCode::NoError {
                        last = DnsError::Answered { server, code };
                        continue;
                    }
                    let names: Vec<String> = message
                        .answers
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::PTR(ptr) => {
                                Some(ptr.0.to_ascii().trim_end_matches('.').to_owned())
                            }
                            _ => None,
                        })
                        .collect();
                    return Ok(if names.is_empty() {
                        Found::NoData
                    } else {
                        Found::Records(names)
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Found<RData>, DnsError> {
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let name = Name::from_utf8(&fqdn).map_err(|error| DnsError::BadName {
            name: fqdn.clone(),
            error,
        })?;
        match self.resolver.lookup(name, rtype).await {
            Ok(lookup) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                Ok(if records.is_empty() {
                    Found::NoData
                } else {
                    Found::Records(records)
                })
            }
            Err(e) if e.is_nx_domain() => Ok(Found::NxDomain),
            Err(e) if e.is_no_records_found() => Ok(Found::NoData),
            Err(NetError::Timeout) => Err(DnsError::Timeout),
            Err(e) => Err(DnsError::Resolver(e)),
        }
    }

    /// The hosts to try for `domain`: its MX hosts by preference, equal preferences in random
    /// order (RFC 5321 5.1), or the domain itself when it has no MX but has an address (implicit
    /// MX). `ignore_preference` is the `relay_ignores_mx_preference` fault: least preferred
    /// first.
    pub async fn route(
        &self,
        domain: &str,
        ignore_preference: bool,
    ) -> Result<Vec<Hop>, RouteError> {
        self.route_with(domain, ignore_preference, true).await
    }

    /// [`Dns::route`], with the implicit MX optional (off: the `relay_no_implicit_mx` fault).
    pub async fn route_with(
        &self,
        domain: &str,
        ignore_preference: bool,
        implicit_mx: bool,
    ) -> Result<Vec<Hop>, RouteError> {
        let temporary = |reason: DnsError| RouteError::Temporary {
            domain: domain.to_owned(),
            reason,
        };
        match self
            .lookup(domain, RecordType::MX)
            .await
            .map_err(temporary)?
        {
            Found::NxDomain => Err(RouteError::NoSuchDomain(domain.to_owned())),
            Found::NoData => match self.addresses(domain).await.map_err(temporary)? {
                Found::Records(_) if !implicit_mx => Err(RouteError::NoMailHost(domain.to_owned())),
                Found::Records(_) => Ok(vec![Hop {
                    host: domain.to_owned(),
                    preference: 0,
                }]),
                Found::NxDomain => Err(RouteError::NoSuchDomain(domain.to_owned())),
                Found::NoData => Err(RouteError::NoMailHost(domain.to_owned())),
            },
            Found::Records(records) => {
                let mut hops: Vec<Hop> = records
                    .into_iter()
                    .filter_map(|r| match r {
                        RData::MX(mx) => Some(Hop {
                            host: mx.exchange.to_ascii().trim_end_matches('.').to_owned(),
                            preference: mx.preference,
                        }),
                        _ => None,
                    })
                    .collect();
                // RFC 7505: a single MX with the root as exchange means "no mail".
                if hops.iter().any(|h| h.host.is_empty()) {
                    return Err(RouteError::NullMx(domain.to_owned()));
                }
                fastrand::shuffle(&mut hops);
                hops.sort_by_key(|h| h.preference);
                if ignore_preference {
                    hops.reverse();
                }
                Ok(hops)
            }
        }
    }

    async fn addresses(&self, host: &str) -> Result<Found<IpAddr>, DnsError> {
        let v4 = self.lookup(host, RecordType::A).await?;
        let v6 = self.lookup(host, RecordType::AAAA).await?;
        let mut found = Vec::new();
        for set in [&v4, &v6] {
            if let Found::Records(records) = set {
                found.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                }));
            }
        }
        Ok(match (v4, found.is_empty()) {
            (_, false) => Found::Records(found),
            (Found::NxDomain, true) => Found::NxDomain,
            _ => Found::NoData,
        })
    }

    /// The addresses of an MX host: IPv4 first, then IPv6.
    pub async fn host_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        match self.addresses(host).await? {
            Found::Records(found) => Ok(found),
            Found::NoData => Err(DnsError::NoAddress(host.to_owned())),
            Found::NxDomain => Err(DnsError::NoSuchHost(host.to_owned())),
        }
    }

    /// Forward-confirmed reverse DNS: `ip` has a PTR name whose A or AAAA records include `ip`.
    pub async fn confirm_client(&self, ip: IpAddr) -> Verdict {
        let reverse = reverse_name(ip);
        let names = match self.ptr(&reverse).await {
            Err(e) => return Verdict::TempFail(format!("PTR lookup for {ip} failed: {e}")),
            Ok(Found::NxDomain | Found::NoData) => {
                return Verdict::Fail(format!("client address {ip} has no PTR record"));
            }
            Ok(Found::Records(names)) => names,
        };
        let mut temp = None;
        for name in &names {
            match self.addresses(name).await {
                Ok(Found::Records(ips)) if ips.contains(&ip) => {
                    return Verdict::Pass(name.clone());
                }
                Ok(_) => {}
                Err(e) => temp = Some(e),
            }
        }
        match temp {
            Some(e) => Verdict::TempFail(format!("address lookup for the PTR name failed: {e}")),
            None => Verdict::Fail(format!(
                "client address {ip} has PTR {} which does not resolve back to it",
                names.join(", ")
            )),
        }
    }

    /// A sender domain can receive replies: it has MX or address records.
    pub async fn check_sender_domain(&self, domain: &str) -> Verdict {
        match self.route(domain, false).await {
            Ok(_) => Verdict::Pass(domain.to_owned()),
            Err(RouteError::Temporary { reason, .. }) => Verdict::TempFail(reason.to_string()),
            Err(e) => Verdict::Fail(e.to_string()),
        }
    }
}

/// The `in-addr.arpa` or `ip6.arpa` name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa.");
            name
        }
    }
}

/// One query straight to `server`: UDP, then TCP when the answer was truncated.
async fn raw_query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, DnsError> {
    let mut query = Message::query();
    let id = fastrand::u16(..);
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), rtype));
    let bytes = query.to_vec().map_err(DnsError::Encode)?;
    let timeout = Duration::from_secs(5);
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = async {
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        socket.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Ok(message) = Message::from_vec(&buf[..n])
                && message.metadata.id == id
            {
                return Ok::<Message, std::io::Error>(message);
            }
        }
    };
    let answer = tokio::time::timeout(timeout, udp)
        .await
        .map_err(|_| DnsError::UdpTimeout(server))?
        .map_err(|error| DnsError::Udp {
            server,
            error: Arc::new(error),
        })?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let tcp = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&bytes).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        Message::from_vec(&buf).map_err(std::io::Error::other)
    };
    tokio::time::timeout(timeout, tcp)
        .await
        .map_err(|_| DnsError::TcpTimeout(server))?
        .map_err(|error| DnsError::Tcp {
            server,
            error: Arc::new(error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("127.0.0.2".parse().unwrap()),
            "2.0.0.127.in-addr.arpa."
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa."), "{v6}");
    }

    #[test]
    fn error_texts() {
        let server: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let io = || Arc::new(std::io::Error::other("boom"));
        let texts = [
            (
                DnsError::Timeout,
                "no answer from the DNS server (timeout)".to_owned(),
            ),
            (DnsError::NoServer, "no DNS server configured".to_owned()),
            (
                DnsError::Answered {
                    server,
                    code: ResponseCode::ServFail,
                },
                format!("192.0.2.53:53 answered {}", ResponseCode::ServFail),
            ),
            (
                DnsError::UdpTimeout(server),
                "no answer from 192.0.2.53:53 (timeout)".to_owned(),
            ),
            (
                DnsError::TcpTimeout(server),
                "no answer from 192.0.2.53:53 over TCP (timeout)".to_owned(),
            ),
            (
                DnsError::Udp {
                    server,
                    error: io(),
                },
                "DNS query to 192.0.2.53:53 failed: boom".to_owned(),
            ),
            (
                DnsError::Tcp {
                    server,
                    error: io(),
                },
                "DNS query to 192.0.2.53:53 over TCP failed: boom".to_owned(),
            ),
            (
                DnsError::NoAddress("mx.test".into()),
                "host mx.test has no address records".to_owned(),
            ),
            (
                DnsError::NoSuchHost("mx.test".into()),
                "host mx.test does not exist (NXDOMAIN)".to_owned(),
            ),
            (
                DnsError::Resolver(NetError::Timeout),
                NetError::Timeout.to_string(),
            ),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text);
        }
        let route = RouteError::Temporary {
            domain: "d.test".into(),
            reason: DnsError::Timeout,
        };
        assert_eq!(
            route.to_string(),
            "DNS lookup for d.test failed: no answer from the DNS server (timeout)"
        );
    }

    #[tokio::test]
    async fn a_name_that_is_not_a_dns_name_fails_before_asking() {
        let dns = Dns::new(Some("127.0.0.1:9".parse().unwrap())).unwrap();
        let long = "x".repeat(64);
        let error = dns.host_addresses(&long).await.unwrap_err();
        let DnsError::BadName { name, error: cause } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(name, &format!("{long}."));
        assert_eq!(
            error.to_string(),
            format!("\"{long}.\" is not a DNS name: {cause}")
        );
        let route = dns.route(&long, false).await.unwrap_err();
        assert!(route.is_temporary());
        assert_eq!(
            route.to_string(),
            format!("DNS lookup for {long} failed: {error}")
        );
    }
}

//! FakeDns on an ephemeral loopback port, queried with hickory-resolver (UDP and TCP) and with
//! raw messages where the resolver hides the detail (flags, truncation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use fake_dns::{FakeDns, Record, RecordType, Zones, reverse_name};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType as WireType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const ZONES: &str = r#"
zones:
  example.test:
    records:
      "@":
        MX: ["20 second", "10 first", "30 third.example.test."]
        TXT: ["v=spf1 mx -all"]
      first: { A: [127.0.0.1], AAAA: ["::1"] }
      second: { A: [127.0.0.2] }
      www: { CNAME: [first] }
      big: { TXT: [] }
  nomail.test:
    records:
      "@": { MX: ["0 ."] }
  2.0.192.in-addr.arpa:
    records:
      "10": { PTR: [first.example.test.] }
"#;

/// The test zones, with 40 TXT records at `big.example.test.` to overflow a UDP answer.
fn zones() -> Zones {
    let mut zones = Zones::parse(
        &ZONES.replace("      big: { TXT: [] }\n", ""),
        Path::new("test.yaml"),
    )
    .unwrap();
    zones
        .set_records(
            "big.example.test",
            (0..40)
                .map(|i| Record::Txt(format!("{i:02} {}", "x".repeat(60))))
                .collect(),
        )
        .unwrap();
    zones
}

async fn start() -> FakeDns {
    FakeDns::start("127.0.0.1:0".parse().unwrap(), zones())
        .await
        .unwrap()
}

/// A resolver that asks only `addr`, never a hosts file, and caches nothing.
fn resolver(addr: SocketAddr, mut server: NameServerConfig) -> TokioResolver {
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    builder.build().unwrap()
}

fn udp_and_tcp(dns: &FakeDns) -> TokioResolver {
    resolver(
        dns.local_addr(),
        NameServerConfig::udp_and_tcp(dns.local_addr().ip()),
    )
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// One query over UDP, no EDNS unless `payload` is given; the whole response message.
async fn raw_udp(addr: SocketAddr, qname: &str, qtype: WireType, payload: Option<u16>) -> Message {
    let mut query = Message::query();
    query.metadata.id = 4242;
    query.add_query(Query::query(name(qname), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        query.set_edns(edns);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buffer = vec![0; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .expect("an answer within 2 s")
        .unwrap();
    assert!(len <= usize::from(payload.unwrap_or(512)), "{len} bytes");
    Message::from_vec(&buffer[..len]).unwrap()
}

/// One query over TCP (two-byte length prefix).
async fn raw_tcp(addr: SocketAddr, qname: &str, qtype: WireType) -> Message {
    let mut query = Message::query();
    query.metadata.id = 4243;
    query.add_query(Query::query(name(qname), qtype));
    let bytes = query.to_vec().unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buffer = vec![0; usize::from(len)];
    stream.read_exact(&mut buffer).await.unwrap();
    Message::from_vec(&buffer).unwrap()
}

fn mx_list(lookup: &hickory_resolver::lookup::Lookup) -> Vec<(u16, String)> {
    let mut list: Vec<(u16, String)> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .collect();
    list.sort();
    list
}

fn addresses(lookup: &hickory_resolver::lookup::Lookup) -> Vec<IpAddr> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn is_refused(error: &NetError) -> bool {
    matches!(
        error,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))
    )
}

#[tokio::test]
async fn mx_records_come_with_their_preferences() {
    let dns = start().await;
    let lookup = udp_and_tcp(&dns).mx_lookup("example.test.").await.unwrap();
    assert_eq!(
        mx_list(&lookup),
        [
            (10, "first.example.test.".to_owned()),
            (20, "second.example.test.".to_owned()),
            (30, "third.example.test.".to_owned()),
        ]
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn null_mx_is_served() {
    let dns = start().await;
    let lookup = udp_and_tcp(&dns).mx_lookup("nomail.test.").await.unwrap();
    assert_eq!(mx_list(&lookup), [(0, ".".to_owned())]);
    dns.shutdown().await;
}

#[tokio::test]
async fn a_and_aaaa_and_case_insensitive_names() {
    let dns = start().await;
    let resolver = udp_and_tcp(&dns);
    let v4 = resolver.ipv4_lookup("FIRST.Example.TEST.").await.unwrap();
    assert_eq!(addresses(&v4), [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let v6 = resolver.ipv6_lookup("first.example.test.").await.unwrap();
    assert_eq!(addresses(&v6), [IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    dns.shutdown().await;
}

#[tokio::test]
async fn cname_is_followed_to_the_address() {
    let dns = start().await;
    let lookup = udp_and_tcp(&dns)
        .ipv4_lookup("www.example.test.")
        .await
        .unwrap();
    assert_eq!(addresses(&lookup), [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    assert!(
        lookup
            .answers()
            .iter()
            .any(|record| matches!(&record.data, RData::CNAME(target) if target.0 == name("first.example.test.")))
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn ptr_and_txt() {
    let dns = start().await;
    let resolver = udp_and_tcp(&dns);
    // Not 127.0.0.1: the resolver answers loopback reverse names itself (RFC 6761).
    let reverse = reverse_name(IpAddr::V4([192, 0, 2, 10].into()));
    let ptr = resolver.reverse_lookup(reverse.as_str()).await.unwrap();
    let targets: Vec<String> = ptr
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::PTR(target) => Some(target.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["first.example.test."]);

    let txt = resolver.txt_lookup("example.test.").await.unwrap();
    let texts: Vec<String> = txt
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["v=spf1 mx -all"]);
    dns.shutdown().await;
}

#[tokio::test]
async fn nxdomain_and_nodata_are_told_apart() {
    let dns = start().await;
    let resolver = udp_and_tcp(&dns);

    let nx = resolver
        .ipv4_lookup("missing.example.test.")
        .await
        .unwrap_err();
    assert!(nx.is_nx_domain(), "{nx:?}");
    let soa = nx.into_soa().expect("NXDOMAIN carries the SOA");
    assert_eq!(soa.name, name("example.test."));

    let nodata = resolver
        .ipv6_lookup("second.example.test.")
        .await
        .unwrap_err();
    assert!(nodata.is_no_records_found(), "{nodata:?}");
    assert!(!nodata.is_nx_domain(), "{nodata:?}");
    assert!(nodata.into_soa().is_some(), "NODATA carries the SOA");
    dns.shutdown().await;
}

#[tokio::test]
async fn answers_are_authoritative_and_negative_ones_carry_the_soa() {
    let dns = start().await;
    let addr = dns.local_addr();

    let positive = raw_udp(addr, "first.example.test.", WireType::A, None).await;
    assert_eq!(positive.metadata.id, 4242);
    assert!(positive.metadata.authoritative);
    assert_eq!(positive.metadata.response_code, ResponseCode::NoError);
    assert_eq!(positive.answers.len(), 1);

    let nodata = raw_udp(addr, "first.example.test.", WireType::MX, None).await;
    assert!(nodata.metadata.authoritative);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities.len(), 1);
    assert_eq!(nodata.authorities[0].record_type(), WireType::SOA);

    let nx = raw_udp(addr, "nothing.example.test.", WireType::A, None).await;
    assert!(nx.metadata.authoritative);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), WireType::SOA);

    let refused = raw_udp(addr, "example.org.", WireType::A, None).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.authoritative);
    dns.shutdown().await;
}

#[tokio::test]
async fn unknown_edns_version_gets_badvers() {
    let dns = start().await;
    let mut query = Message::query();
    query.add_query(Query::query(name("example.test."), WireType::MX));
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), dns.local_addr())
        .await
        .unwrap();
    let mut buffer = vec![0; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(
        u16::from(response.metadata.response_code),
        u16::from(ResponseCode::BADVERS)
    );
    assert!(response.answers.is_empty());
    dns.shutdown().await;
}

#[tokio::test]
async fn names_outside_our_zones_are_refused() {
    let dns = start().await;
    let error = udp_and_tcp(&dns)
        .ipv4_lookup("mail.example.org.")
        .await
        .unwrap_err();
    assert!(is_refused(&error), "{error:?}");
    dns.shutdown().await;
}

#[tokio::test]
async fn a_change_is_seen_by_the_next_query() {
    let dns = start().await;
    let resolver = udp_and_tcp(&dns);
    let before = resolver.ipv4_lookup("second.example.test.").await.unwrap();
    assert_eq!(addresses(&before), [IpAddr::V4([127, 0, 0, 2].into())]);

    dns.set_records("second.example.test", vec![Record::A([10, 9, 8, 7].into())])
        .unwrap();
    let after = resolver.ipv4_lookup("second.example.test.").await.unwrap();
    assert_eq!(addresses(&after), [IpAddr::V4([10, 9, 8, 7].into())]);

    dns.remove_records("second.example.test", RecordType::A)
        .unwrap();
    let gone = resolver
        .ipv4_lookup("second.example.test.")
        .await
        .unwrap_err();
    assert!(gone.is_nx_domain(), "the name has no data left: {gone:?}");

    let outside = dns.set_records("x.example.org", vec![Record::A(Ipv4Addr::LOCALHOST)]);
    assert!(outside.is_err());
    dns.shutdown().await;
}

#[tokio::test]
async fn an_added_zone_is_served() {
    let dns = start().await;
    let resolver = udp_and_tcp(&dns);
    let error = resolver.mx_lookup("peer.test.").await.unwrap_err();
    assert!(is_refused(&error), "{error:?}");

    assert!(dns.add_zone("peer.test").unwrap());
    let nodata = resolver.mx_lookup("peer.test.").await.unwrap_err();
    assert!(
        nodata.is_no_records_found() && !nodata.is_nx_domain(),
        "{nodata:?}"
    );
    dns.set_records(
        "peer.test",
        vec![Record::Mx {
            preference: 5,
            exchange: "mx.peer.test".into(),
        }],
    )
    .unwrap();
    let lookup = resolver.mx_lookup("peer.test.").await.unwrap();
    assert_eq!(mx_list(&lookup), [(5, "mx.peer.test.".to_owned())]);
    dns.shutdown().await;
}

#[tokio::test]
async fn replace_zones_swaps_everything() {
    let dns = start().await;
    dns.replace_zones(Zones::demo());
    let resolver = udp_and_tcp(&dns);
    let lookup = resolver.mx_lookup("example.test.").await.unwrap();
    assert_eq!(mx_list(&lookup), [(10, "mail.example.test.".to_owned())]);
    let error = resolver.mx_lookup("nomail.test.").await.unwrap_err();
    assert!(is_refused(&error), "{error:?}");
    dns.shutdown().await;
}

#[tokio::test]
async fn tcp_only_resolver_gets_answers() {
    let dns = start().await;
    let resolver = resolver(
        dns.local_addr(),
        NameServerConfig::tcp(dns.local_addr().ip()),
    );
    let lookup = resolver.mx_lookup("example.test.").await.unwrap();
    assert_eq!(mx_list(&lookup).len(), 3);
    let big = resolver.txt_lookup("big.example.test.").await.unwrap();
    assert_eq!(big.answers().len(), 40);
    dns.shutdown().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let dns = start().await;
    let addr = dns.local_addr();

    let plain = raw_udp(addr, "big.example.test.", WireType::TXT, None).await;
    assert!(plain.metadata.truncation, "no EDNS: 512 bytes at most");
    assert!(plain.answers.len() < 40);

    let small_edns = raw_udp(addr, "big.example.test.", WireType::TXT, Some(1232)).await;
    assert!(small_edns.metadata.truncation);
    assert!(small_edns.edns.is_some(), "EDNS is answered with EDNS");

    let large_edns = raw_udp(addr, "big.example.test.", WireType::TXT, Some(4096)).await;
    assert!(!large_edns.metadata.truncation);
    assert_eq!(large_edns.answers.len(), 40);

    let tcp = raw_tcp(addr, "big.example.test.", WireType::TXT).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 40);

    // The resolver retries a truncated UDP answer over TCP on its own.
    let lookup = udp_and_tcp(&dns)
        .txt_lookup("big.example.test.")
        .await
        .unwrap();
    assert_eq!(lookup.answers().len(), 40);
    dns.shutdown().await;
}

#[tokio::test]
async fn concurrent_changes_and_queries() {
    let dns = start().await;
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let dns = dns.clone();
        tasks.push(tokio::spawn(async move {
            let resolver = udp_and_tcp(&dns);
            let host = format!("host{i}.example.test.");
            for round in 0..5u8 {
                dns.set_records(&host, vec![Record::A([10, 0, i, round].into())])
                    .unwrap();
                let lookup = resolver.ipv4_lookup(host.as_str()).await.unwrap();
                assert_eq!(addresses(&lookup), [IpAddr::V4([10, 0, i, round].into())]);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_both_sockets() {
    let dns = start().await;
    let addr = dns.local_addr();
    assert_ne!(addr.port(), 0);
    TcpStream::connect(addr).await.unwrap();
    dns.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "TCP still listening"
    );
    // The UDP port is free again: binding it must work.
    UdpSocket::bind(addr).await.unwrap();
}

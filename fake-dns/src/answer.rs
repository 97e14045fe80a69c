//! How a query is answered from the zones (RFC 1034 section 4.3.2, without delegation or
//! wildcards): kept apart from the sockets so tests can check answers directly.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType as WireType};

use crate::record::RecordType;
use crate::zones::{Zone, Zones};

/// Longest CNAME chain followed before giving up; loops end here too.
const MAX_CNAME_HOPS: usize = 8;

/// The sections of a response.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) code: ResponseCode,
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<WireRecord>,
    pub(crate) authorities: Vec<WireRecord>,
    pub(crate) additionals: Vec<WireRecord>,
}

impl Answer {
    fn refused() -> Answer {
        Answer {
            code: ResponseCode::Refused,
            ..Answer::default()
        }
    }
}

impl Zones {
    /// The response to a query for `qname`, `qtype`, `qclass`.
    pub(crate) fn answer(&self, qname: &Name, qtype: WireType, qclass: DNSClass) -> Answer {
        if !matches!(qclass, DNSClass::IN | DNSClass::ANY) {
            return Answer::refused();
        }
        if matches!(qtype, WireType::AXFR | WireType::IXFR) {
            // Zone transfers are not needed by mail tests.
            return Answer::refused();
        }
        let Some(mut zone) = self.zone_of(qname) else {
            return Answer::refused();
        };
        let mut answer = Answer {
            code: ResponseCode::NoError,
            authoritative: true,
            ..Answer::default()
        };
        let mut name = qname.clone();
        for _ in 0..MAX_CNAME_HOPS {
            let found = zone.lookup(&name, qtype);
            let any_found = !found.is_empty();
            answer.answers.extend(found);
            if any_found {
                self.add_glue(&mut answer);
                return answer;
            }
            let cname = zone
                .nodes
                .get(&name)
                .and_then(|node| node.get(&RecordType::Cname));
            match cname {
                Some(set) => {
                    let RData::CNAME(target) = &set.data[0] else {
                        unreachable!("a CNAME set holds CNAME data");
                    };
                    let target = target.0.clone();
                    answer.answers.push(WireRecord::from_rdata(
                        name.clone(),
                        set.ttl,
                        set.data[0].clone(),
                    ));
                    // Follow the chain only through data we are authoritative for; the client
                    // resolves the rest.
                    match self.zone_of(&target) {
                        Some(next) => zone = next,
                        None => return answer,
                    }
                    name = target;
                }
                None => {
                    if !zone.exists(&name) {
                        answer.code = ResponseCode::NXDomain;
                    }
                    answer.authorities.push(zone.negative_soa());
                    return answer;
                }
            }
        }
        answer
    }

    /// Addresses of the MX and NS targets that are in our zones, as additional data.
    fn add_glue(&self, answer: &mut Answer) {
        let targets: Vec<Name> = answer
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some(mx.exchange.clone()),
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        for target in targets {
            if let Some(zone) = self.zone_of(&target) {
                for rtype in [WireType::A, WireType::AAAA] {
                    answer.additionals.extend(zone.lookup(&target, rtype));
                }
            }
        }
    }
}

impl Zone {
    /// The records of `qtype` (every type for ANY) at `name`, SOA included at the apex.
    fn lookup(&self, name: &Name, qtype: WireType) -> Vec<WireRecord> {
        let mut records = Vec::new();
        if *name == self.origin && matches!(qtype, WireType::SOA | WireType::ANY) {
            records.push(WireRecord::from_rdata(
                self.origin.clone(),
                self.ttl,
                RData::SOA(self.soa.clone()),
            ));
        }
        if let Some(node) = self.nodes.get(name) {
            for (rtype, set) in node {
                if qtype == WireType::ANY || rtype.wire() == qtype {
                    records.extend(
                        set.data.iter().map(|data| {
                            WireRecord::from_rdata(name.clone(), set.ttl, data.clone())
                        }),
                    );
                }
            }
        }
        records
    }

    /// Whether `name` exists: it owns records, is the apex, or has descendants (an empty
    /// non-terminal, RFC 8020 says NODATA rather than NXDOMAIN for it).
    fn exists(&self, name: &Name) -> bool {
        *name == self.origin
            || self
                .nodes
                .keys()
                .any(|owner| owner == name || name.zone_of(owner))
    }

    /// The SOA for a negative answer, with the TTL RFC 2308 section 3 asks for.
    fn negative_soa(&self) -> WireRecord {
        WireRecord::from_rdata(
            self.origin.clone(),
            self.ttl.min(self.soa.minimum),
            RData::SOA(self.soa.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ZONES: &str = r#"
zones:
  example.test:
    records:
      "@": { MX: ["10 mail", "5 mx2"] }
      mail: { A: [127.0.0.1] }
      mx2: { AAAA: ["::1"] }
      www: { CNAME: [mail] }
      loop1: { CNAME: [loop2] }
      loop2: { CNAME: [loop1] }
      away: { CNAME: [host.elsewhere.test.] }
      gone: { CNAME: [nothing] }
      a.b.c: { TXT: [deep] }
"#;

    fn answer(name: &str, qtype: WireType) -> Answer {
        let zones = Zones::parse(ZONES, Path::new("t.yaml")).unwrap();
        zones.answer(&Name::from_ascii(name).unwrap(), qtype, DNSClass::IN)
    }

    fn rtypes(records: &[WireRecord]) -> Vec<WireType> {
        records.iter().map(|r| r.record_type()).collect()
    }

    #[test]
    fn positive_answer_is_authoritative_with_glue() {
        let a = answer("EXAMPLE.test.", WireType::MX);
        assert_eq!(a.code, ResponseCode::NoError);
        assert!(a.authoritative);
        assert_eq!(a.answers.len(), 2);
        assert_eq!(rtypes(&a.additionals), [WireType::A, WireType::AAAA]);
    }

    #[test]
    fn nodata_and_nxdomain_carry_the_soa() {
        let nodata = answer("mail.example.test.", WireType::AAAA);
        assert_eq!(nodata.code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(rtypes(&nodata.authorities), [WireType::SOA]);

        let nx = answer("nope.example.test.", WireType::A);
        assert_eq!(nx.code, ResponseCode::NXDomain);
        assert!(nx.authoritative);
        assert_eq!(rtypes(&nx.authorities), [WireType::SOA]);
    }

    #[test]
    fn empty_non_terminal_is_nodata() {
        let a = answer("b.c.example.test.", WireType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(rtypes(&a.authorities), [WireType::SOA]);
    }

    #[test]
    fn cname_is_chased_within_our_zones() {
        let a = answer("www.example.test.", WireType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(rtypes(&a.answers), [WireType::CNAME, WireType::A]);

        let cname_itself = answer("www.example.test.", WireType::CNAME);
        assert_eq!(rtypes(&cname_itself.answers), [WireType::CNAME]);

        let away = answer("away.example.test.", WireType::A);
        assert_eq!(away.code, ResponseCode::NoError);
        assert_eq!(rtypes(&away.answers), [WireType::CNAME]);
        assert!(away.authorities.is_empty());

        let dangling = answer("gone.example.test.", WireType::A);
        assert_eq!(dangling.code, ResponseCode::NXDomain);
        assert_eq!(rtypes(&dangling.answers), [WireType::CNAME]);
    }

    #[test]
    fn cname_loop_ends() {
        let a = answer("loop1.example.test.", WireType::A);
        assert_eq!(a.answers.len(), MAX_CNAME_HOPS);
    }

    #[test]
    fn outside_every_zone_or_wrong_class_is_refused() {
        let a = answer("example.org.", WireType::A);
        assert_eq!(a.code, ResponseCode::Refused);
        assert!(!a.authoritative);
        let zones = Zones::demo();
        let chaos = zones.answer(
            &Name::from_ascii("example.test.").unwrap(),
            WireType::A,
            DNSClass::CH,
        );
        assert_eq!(chaos.code, ResponseCode::Refused);
    }

    #[test]
    fn soa_and_ns_at_the_apex() {
        let soa = answer("example.test.", WireType::SOA);
        assert_eq!(rtypes(&soa.answers), [WireType::SOA]);
        let ns = answer("example.test.", WireType::NS);
        assert_eq!(rtypes(&ns.answers), [WireType::NS]);
    }
}

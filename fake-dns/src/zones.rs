//! The zone set: origins, their SOA and the record sets at each name, with the checks that
//! keep a zone valid when records change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData};

use crate::error::ZoneError;
use crate::record::{Record, RecordType, parse_name};

/// TTL of records whose zones file (or API call) names none, in seconds.
pub const DEFAULT_TTL: u32 = 60;

/// A set of authoritative zones. Cheap to clone (a few maps of small records).
#[derive(Clone, Debug, Default)]
pub struct Zones {
    /// Keyed by the lower-cased origin.
    pub(crate) zones: BTreeMap<Name, Zone>,
}

/// One zone: its origin, SOA and records.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    pub(crate) origin: Name,
    /// TTL given to records set without one.
    pub(crate) ttl: u32,
    pub(crate) soa: SOA,
    pub(crate) nodes: BTreeMap<Name, BTreeMap<RecordType, RrSet>>,
}

/// The records of one type at one name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RrSet {
    pub(crate) ttl: u32,
    pub(crate) data: Vec<RData>,
}

/// SOA fields a zones file may set; the rest are generated.
#[derive(Clone, Debug, Default)]
pub(crate) struct SoaFields {
    pub(crate) mname: Option<Name>,
    pub(crate) rname: Option<Name>,
    pub(crate) serial: Option<u32>,
    pub(crate) refresh: Option<i32>,
    pub(crate) retry: Option<i32>,
    pub(crate) expire: Option<i32>,
    pub(crate) minimum: Option<u32>,
}

impl Zone {
    /// A zone with an SOA (`ns.<origin>`, `hostmaster.<origin>`, serial 1 unless `soa` says
    /// otherwise) and an apex NS naming the SOA's primary server.
    pub(crate) fn new(origin: Name, ttl: u32, soa: SoaFields) -> Zone {
        let under_origin = |label: &str| {
            Name::from_ascii(label)
                .and_then(|name| name.append_domain(&origin))
                .unwrap_or_else(|_| origin.clone())
        };
        let mname = soa.mname.unwrap_or_else(|| under_origin("ns"));
        let soa = SOA::new(
            mname.clone(),
            soa.rname.unwrap_or_else(|| under_origin("hostmaster")),
            soa.serial.unwrap_or(1),
            soa.refresh.unwrap_or(3600),
            soa.retry.unwrap_or(600),
            soa.expire.unwrap_or(86400),
            soa.minimum.unwrap_or(ttl),
        );
        let mut zone = Zone {
            origin: origin.clone(),
            ttl,
            soa,
            nodes: BTreeMap::new(),
        };
        zone.put(
            origin,
            RecordType::Ns,
            RrSet {
                ttl,
                data: vec![RData::NS(hickory_proto::rr::rdata::NS(mname))],
            },
        );
        zone
    }

    pub(crate) fn put(&mut self, name: Name, rtype: RecordType, set: RrSet) {
        self.nodes.entry(name).or_default().insert(rtype, set);
    }

    pub(crate) fn remove(&mut self, name: &Name, rtype: RecordType) {
        if let Some(node) = self.nodes.get_mut(name) {
            node.remove(&rtype);
            if node.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// The types present at `name`; the apex always holds an SOA, which is not listed.
    fn types_at(&self, name: &Name) -> impl Iterator<Item = RecordType> + '_ {
        self.nodes
            .get(name)
            .into_iter()
            .flat_map(|node| node.keys().copied())
    }

    /// Why setting records of `types` at `name` would leave a CNAME beside other data, if it
    /// would (RFC 1034 section 3.6.2; RFC 2181 section 10.1).
    pub(crate) fn cname_conflict(&self, name: &Name, types: &[RecordType]) -> Option<String> {
        let sets_cname = types.contains(&RecordType::Cname);
        let others_set = types.iter().any(|t| *t != RecordType::Cname);
        if sets_cname && (others_set || *name == self.origin) {
            return Some("a CNAME cannot share its name with other data".to_owned());
        }
        let existing: Vec<RecordType> = self.types_at(name).collect();
        if sets_cname && existing.iter().any(|t| *t != RecordType::Cname) {
            return Some(format!(
                "a CNAME cannot share its name with other data (the name has {})",
                list(existing.iter().filter(|t| **t != RecordType::Cname))
            ));
        }
        if !sets_cname && existing.contains(&RecordType::Cname) {
            return Some(
                "the name holds a CNAME, which cannot share its name with other data".to_owned(),
            );
        }
        None
    }

    /// The serial goes up with every change so secondaries (and people) can tell.
    fn bump_serial(&mut self) {
        self.soa.serial = self.soa.serial.wrapping_add(1);
    }
}

fn list<'a>(types: impl Iterator<Item = &'a RecordType>) -> String {
    types.map(|t| t.mnemonic()).collect::<Vec<_>>().join(", ")
}

/// Checks within one record set of one type: a CNAME set holds one record, a null MX stands
/// alone (RFC 7505 section 3).
pub(crate) fn check_rrset(rtype: RecordType, records: &[&Record]) -> Result<(), String> {
    if rtype == RecordType::Cname && records.len() > 1 {
        return Err("a name can have only one CNAME".to_owned());
    }
    if rtype == RecordType::Mx && records.len() > 1 && records.iter().any(|r| r.is_null_mx()) {
        return Err(
            "a null MX (`0 .`, RFC 7505) must be the only MX record of its name".to_owned(),
        );
    }
    Ok(())
}

impl Zones {
    /// No zones: every query is refused until zones are added.
    pub fn empty() -> Zones {
        Zones::default()
    }

    /// The reference server's defaults: `example.test` with `MX 10 mail.example.test.` and
    /// `mail.example.test. A 127.0.0.1`, plus the generated SOA and NS.
    pub fn demo() -> Zones {
        let mut zones = Zones::empty();
        zones
            .add_zone("example.test")
            .expect("the demo origin is a valid name");
        zones
            .set_records(
                "example.test",
                vec![Record::Mx {
                    preference: 10,
                    exchange: "mail.example.test.".into(),
                }],
            )
            .expect("the demo MX is valid");
        zones
            .set_records("mail.example.test", vec![Record::A(Ipv4Addr::LOCALHOST)])
            .expect("the demo A is valid");
        zones
    }

    /// The origins served, absolute and lower-cased, in name order.
    pub fn origins(&self) -> Vec<String> {
        self.zones.keys().map(Name::to_ascii).collect()
    }

    /// Adds an empty zone (generated SOA and NS, default TTL) unless one with this origin is
    /// already served; returns whether it was added.
    pub fn add_zone(&mut self, origin: &str) -> Result<bool, ZoneError> {
        let origin = parse_name(origin, &Name::root()).map_err(|message| ZoneError::BadRecord {
            name: origin.to_owned(),
            message,
        })?;
        if self.zones.contains_key(&origin) {
            return Ok(false);
        }
        let zone = Zone::new(origin.clone(), DEFAULT_TTL, SoaFields::default());
        self.zones.insert(origin, zone);
        Ok(true)
    }

    /// Replaces the record sets of the records' types at `name` (absolute) with `records`, with
    /// the zone's default TTL. The zone is the one with the longest origin containing `name`.
    pub fn set_records(&mut self, name: &str, records: Vec<Record>) -> Result<(), ZoneError> {
        self.set_records_with_ttl(name, None, records)
    }

    /// [`Zones::set_records`] with an explicit TTL (`None`: the zone's default).
    pub fn set_records_with_ttl(
        &mut self,
        name: &str,
        ttl: Option<u32>,
        records: Vec<Record>,
    ) -> Result<(), ZoneError> {
        let bad = |message: String| ZoneError::BadRecord {
            name: name.to_owned(),
            message,
        };
        let (owner, zone) = self.zone_mut(name)?;
        let mut by_type: BTreeMap<RecordType, Vec<&Record>> = BTreeMap::new();
        for record in &records {
            by_type
                .entry(record.record_type())
                .or_default()
                .push(record);
        }
        let types: Vec<RecordType> = by_type.keys().copied().collect();
        if let Some(message) = zone.cname_conflict(&owner, &types) {
            return Err(bad(message));
        }
        let mut sets = Vec::new();
        for (rtype, records) in by_type {
            check_rrset(rtype, &records).map_err(bad)?;
            let data = records
                .iter()
                .map(|record| record.to_rdata(&Name::root()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            sets.push((rtype, data));
        }
        let ttl = ttl.unwrap_or(zone.ttl);
        for (rtype, data) in sets {
            zone.put(owner.clone(), rtype, RrSet { ttl, data });
        }
        zone.bump_serial();
        Ok(())
    }

    /// Removes the record set of `rtype` at `name`, if there is one.
    pub fn remove_records(&mut self, name: &str, rtype: RecordType) -> Result<(), ZoneError> {
        let (owner, zone) = self.zone_mut(name)?;
        zone.remove(&owner, rtype);
        zone.bump_serial();
        Ok(())
    }

    /// The records of `rtype` at `name` (absolute), in the order they are served.
    pub fn records(&self, name: &str, rtype: RecordType) -> Vec<Record> {
        let Ok(owner) = parse_name(name, &Name::root()) else {
            return Vec::new();
        };
        self.zone_of(&owner)
            .and_then(|zone| zone.nodes.get(&owner))
            .and_then(|node| node.get(&rtype))
            .map(|set| set.data.iter().filter_map(Record::from_rdata).collect())
            .unwrap_or_default()
    }

    /// The SOA serial of the zone with this origin.
    pub fn serial(&self, origin: &str) -> Option<u32> {
        let origin = parse_name(origin, &Name::root()).ok()?;
        self.zones.get(&origin).map(|zone| zone.soa.serial)
    }

    /// The zone with the longest origin that contains `name`.
    pub(crate) fn zone_of(&self, name: &Name) -> Option<&Zone> {
        self.zones
            .values()
            .filter(|zone| zone.origin.zone_of(name))
            .max_by_key(|zone| zone.origin.num_labels())
    }

    fn zone_mut(&mut self, name: &str) -> Result<(Name, &mut Zone), ZoneError> {
        let owner = parse_name(name, &Name::root()).map_err(|message| ZoneError::BadRecord {
            name: name.to_owned(),
            message,
        })?;
        let origin = self
            .zone_of(&owner)
            .map(|zone| zone.origin.clone())
            .ok_or_else(|| ZoneError::NotInZone {
                name: name.to_owned(),
            })?;
        let zone = self.zones.get_mut(&origin).expect("zone_of found it");
        Ok((owner, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Record {
        Record::Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[test]
    fn demo_matches_reference_defaults() {
        let zones = Zones::demo();
        assert_eq!(zones.origins(), ["example.test."]);
        assert_eq!(
            zones.records("example.test", RecordType::Mx),
            [mx(10, "mail.example.test.")]
        );
        assert_eq!(
            zones.records("MAIL.example.test.", RecordType::A),
            [Record::A(Ipv4Addr::LOCALHOST)]
        );
        assert_eq!(
            zones.records("example.test", RecordType::Ns),
            [Record::Ns("ns.example.test.".into())]
        );
    }

    #[test]
    fn set_records_replaces_only_the_given_types_and_bumps_the_serial() {
        let mut zones = Zones::demo();
        let before = zones.serial("example.test").unwrap();
        zones
            .set_records(
                "mail.example.test",
                vec![Record::Txt("hello".into()), Record::A([10, 0, 0, 1].into())],
            )
            .unwrap();
        assert_eq!(
            zones.records("mail.example.test", RecordType::A),
            [Record::A([10, 0, 0, 1].into())]
        );
        assert_eq!(
            zones.records("mail.example.test", RecordType::Txt),
            [Record::Txt("hello".into())]
        );
        assert!(zones.serial("example.test").unwrap() > before);
        zones
            .remove_records("mail.example.test", RecordType::A)
            .unwrap();
        assert!(zones.records("mail.example.test", RecordType::A).is_empty());
        assert_eq!(zones.records("mail.example.test", RecordType::Txt).len(), 1);
    }

    #[test]
    fn longest_origin_wins() {
        let mut zones = Zones::demo();
        zones.add_zone("sub.example.test.").unwrap();
        zones
            .set_records("x.sub.example.test", vec![Record::A([10, 0, 0, 2].into())])
            .unwrap();
        let sub = Name::from_ascii("x.sub.example.test.").unwrap();
        assert_eq!(
            zones.zone_of(&sub).unwrap().origin.to_ascii(),
            "sub.example.test."
        );
        assert!(!zones.add_zone("SUB.example.test").unwrap());
    }

    #[test]
    fn changes_outside_every_zone_are_refused() {
        let mut zones = Zones::demo();
        let error = zones
            .set_records("mail.other.test", vec![Record::A(Ipv4Addr::LOCALHOST)])
            .unwrap_err();
        assert!(matches!(error, ZoneError::NotInZone { .. }), "{error}");
        assert!(error.to_string().contains("mail.other.test"), "{error}");
        assert!(matches!(
            zones.remove_records("other.test", RecordType::A),
            Err(ZoneError::NotInZone { .. })
        ));
    }

    #[test]
    fn cname_beside_other_data_is_refused() {
        let mut zones = Zones::demo();
        let cname = vec![Record::Cname("elsewhere.test.".into())];
        let error = zones
            .set_records("mail.example.test", cname.clone())
            .unwrap_err();
        assert!(error.to_string().contains("CNAME"), "{error}");
        assert!(zones.set_records("example.test", cname.clone()).is_err());
        zones.set_records("www.example.test", cname).unwrap();
        assert!(
            zones
                .set_records("www.example.test", vec![Record::A(Ipv4Addr::LOCALHOST)])
                .is_err()
        );
    }

    #[test]
    fn null_mx_must_stand_alone() {
        let mut zones = Zones::demo();
        let error = zones
            .set_records(
                "example.test",
                vec![mx(0, "."), mx(10, "mail.example.test.")],
            )
            .unwrap_err();
        assert!(error.to_string().contains("RFC 7505"), "{error}");
        zones.set_records("example.test", vec![mx(0, ".")]).unwrap();
        assert_eq!(zones.records("example.test", RecordType::Mx), [mx(0, ".")]);
    }
}

//! The zones file: YAML read with serde-saphyr and `deny_unknown_fields`, then checked value by
//! value so that every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::ZoneError;
use crate::record::{Record, RecordType, parse_name};
use crate::zones::{DEFAULT_TTL, RrSet, SoaFields, Zone, Zones, check_rrset};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// Default TTL of every zone in the file.
    #[serde(default)]
    ttl: Option<u32>,
    zones: Entries<ZoneDoc>,
}

/// One zone, under its origin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneDoc {
    /// Default TTL of this zone's records; also the SOA minimum unless `soa` sets it.
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    soa: Option<SoaDoc>,
    #[serde(default)]
    records: Entries<NodeDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoaDoc {
    #[serde(default)]
    mname: Option<Spanned<String>>,
    #[serde(default)]
    rname: Option<Spanned<String>>,
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    refresh: Option<i32>,
    #[serde(default)]
    retry: Option<i32>,
    #[serde(default)]
    expire: Option<i32>,
    #[serde(default)]
    minimum: Option<u32>,
}

/// The record sets at one name. The field names are the record types, so an unknown type is
/// an unknown key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)] // the keys are DNS mnemonics
struct NodeDoc {
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    A: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    AAAA: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    MX: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    CNAME: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    PTR: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    TXT: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    NS: Option<Spanned<Vec<Spanned<String>>>>,
}

impl NodeDoc {
    fn sets(&self) -> impl Iterator<Item = (RecordType, &Spanned<Vec<Spanned<String>>>)> {
        [
            (RecordType::A, &self.A),
            (RecordType::Aaaa, &self.AAAA),
            (RecordType::Mx, &self.MX),
            (RecordType::Cname, &self.CNAME),
            (RecordType::Ptr, &self.PTR),
            (RecordType::Txt, &self.TXT),
            (RecordType::Ns, &self.NS),
        ]
        .into_iter()
        .filter_map(|(rtype, values)| values.as_ref().map(|values| (rtype, values)))
    }
}

/// A YAML mapping kept in file order with the location of each key, which a `BTreeMap` of
/// plain strings would lose.
#[derive(Debug)]
struct Entries<V>(Vec<(Spanned<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                // `records:` with nothing after it: an empty zone.
                Ok(Entries(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }
        }
        // `any` rather than `map`, so that an empty value reaches `visit_unit`.
        deserializer.deserialize_any(EntriesVisitor(PhantomData))
    }
}

impl Zones {
    /// Reads a zones file.
    pub fn load(path: &Path) -> Result<Zones, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
            path: path.to_owned(),
            source,
        })?;
        Zones::parse(&text, path)
    }

    /// Parses zones-file YAML; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Zones, ZoneError> {
        let doc: FileDoc = serde_saphyr::from_str(text).map_err(|error| ZoneError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let invalid = |line: u64, key: String, message: String| ZoneError::Invalid {
            path: path.to_owned(),
            line,
            key,
            message,
        };
        let default_ttl = doc.ttl.unwrap_or(DEFAULT_TTL);
        let mut zones = Zones::empty();
        for (origin_key, zone_doc) in &doc.zones.0 {
            let zone_key = format!("zones[{}]", origin_key.value);
            let line = origin_key.referenced.line();
            let origin = parse_name(&origin_key.value, &hickory_proto::rr::Name::root())
                .map_err(|message| invalid(line, zone_key.clone(), message))?;
            if zones.zones.contains_key(&origin) {
                return Err(invalid(
                    line,
                    zone_key,
                    format!("zone {origin} is listed twice"),
                ));
            }
            let ttl = zone_doc.ttl.unwrap_or(default_ttl);
            let soa =
                soa_fields(zone_doc.soa.as_ref(), &origin).map_err(|(line, field, message)| {
                    invalid(line, format!("{zone_key}.soa.{field}"), message)
                })?;
            let mut zone = Zone::new(origin.clone(), ttl, soa);
            let mut seen = BTreeMap::new();
            for (name_key, node) in &zone_doc.records.0 {
                let node_key = format!("{zone_key}.records[{}]", name_key.value);
                let line = name_key.referenced.line();
                let owner = parse_name(&name_key.value, &origin)
                    .map_err(|message| invalid(line, node_key.clone(), message))?;
                if !origin.zone_of(&owner) {
                    return Err(invalid(
                        line,
                        node_key,
                        format!("{owner} is not inside the zone {origin}"),
                    ));
                }
                if let Some(first) = seen.insert(owner.clone(), line) {
                    return Err(invalid(
                        line,
                        node_key,
                        format!("{owner} is already listed on line {first}"),
                    ));
                }
                let types: Vec<RecordType> = node.sets().map(|(rtype, _)| rtype).collect();
                if let Some(message) = zone.cname_conflict(&owner, &types) {
                    return Err(invalid(line, node_key, message));
                }
                for (rtype, values) in node.sets() {
                    let set_key = format!("{node_key}.{rtype}");
                    if values.value.is_empty() {
                        return Err(invalid(
                            values.referenced.line(),
                            set_key,
                            "an empty list; leave the type out instead".to_owned(),
                        ));
                    }
                    let mut records = Vec::new();
                    for value in &values.value {
                        let record = parse_value(rtype, &value.value).map_err(|message| {
                            invalid(value.referenced.line(), set_key.clone(), message)
                        })?;
                        records.push((value.referenced.line(), record));
                    }
                    let refs: Vec<&Record> = records.iter().map(|(_, record)| record).collect();
                    check_rrset(rtype, &refs).map_err(|message| {
                        let line = records
                            .iter()
                            .find(|(_, record)| record.is_null_mx())
                            .map_or(values.referenced.line(), |(line, _)| *line);
                        invalid(line, set_key.clone(), message)
                    })?;
                    let mut data = Vec::new();
                    for (line, record) in &records {
                        data.push(
                            record
                                .to_rdata(&origin)
                                .map_err(|message| invalid(*line, set_key.clone(), message))?,
                        );
                    }
                    let ttl = node.ttl.unwrap_or(ttl);
                    zone.put(owner.clone(), rtype, RrSet { ttl, data });
                }
            }
            zones.zones.insert(origin, zone);
        }
        Ok(zones)
    }
}

/// The SOA fields a zone sets; an error carries the line, the field and the message.
fn soa_fields(
    doc: Option<&SoaDoc>,
    origin: &hickory_proto::rr::Name,
) -> Result<SoaFields, (u64, &'static str, String)> {
    let Some(doc) = doc else {
        return Ok(SoaFields::default());
    };
    let name = |field: &'static str, value: &Option<Spanned<String>>| {
        value
            .as_ref()
            .map(|value| {
                parse_name(&value.value, origin)
                    .map_err(|message| (value.referenced.line(), field, message))
            })
            .transpose()
    };
    Ok(SoaFields {
        mname: name("mname", &doc.mname)?,
        rname: name("rname", &doc.rname)?,
        serial: doc.serial,
        refresh: doc.refresh,
        retry: doc.retry,
        expire: doc.expire,
        minimum: doc.minimum,
    })
}

/// One value of a record set as written in the file.
fn parse_value(rtype: RecordType, text: &str) -> Result<Record, String> {
    let text = text.trim();
    Ok(match rtype {
        RecordType::A => Record::A(
            text.parse::<Ipv4Addr>()
                .map_err(|_| format!("{text:?} is not an IPv4 address"))?,
        ),
        RecordType::Aaaa => Record::Aaaa(
            text.parse::<Ipv6Addr>()
                .map_err(|_| format!("{text:?} is not an IPv6 address"))?,
        ),
        RecordType::Mx => {
            let mut words = text.split_whitespace();
            let (Some(preference), Some(exchange), None) =
                (words.next(), words.next(), words.next())
            else {
                return Err(format!(
                    "{text:?}: an MX value is a preference and a host, e.g. \"10 mail.example.test.\" \
                     (or \"0 .\" for a null MX)"
                ));
            };
            let preference = preference.parse::<u16>().map_err(|_| {
                format!(
                    "{text:?}: the MX preference {preference:?} is not a number from 0 to 65535"
                )
            })?;
            Record::Mx {
                preference,
                exchange: exchange.to_owned(),
            }
        }
        RecordType::Cname => Record::Cname(one_name(text)?),
        RecordType::Ptr => Record::Ptr(one_name(text)?),
        RecordType::Ns => Record::Ns(one_name(text)?),
        // TXT text is kept exactly as written, spaces included.
        RecordType::Txt => return Ok(Record::Txt(text.to_owned())),
    })
}

fn one_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err(format!("{text:?} is not a single domain name"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# a sample
ttl: 120
zones:
  example.test:
    soa: { rname: postmaster, serial: 7 }
    records:
      "@":
        MX: ["10 mail", "20 backup.example.test."]
        TXT: ["v=spf1 mx -all"]
      mail: { A: [127.0.0.1], AAAA: ["::1"], ttl: 30 }
      backup.example.test.: { A: [127.0.0.2] }
      www: { CNAME: [mail] }
  nomail.test:
    records:
      "@": { MX: ["0 ."] }
  0.0.127.in-addr.arpa:
    ttl: 5
    records:
      "1": { PTR: [mail.example.test.] }
"#;

    fn parse_err(text: &str) -> String {
        Zones::parse(text, Path::new("conf/zones.yaml"))
            .unwrap_err()
            .to_string()
    }

    fn mx(preference: u16, exchange: &str) -> Record {
        Record::Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[test]
    fn good_file_parses() {
        let zones = Zones::parse(GOOD, Path::new("zones.yaml")).unwrap();
        assert_eq!(
            zones.origins(),
            ["0.0.127.in-addr.arpa.", "example.test.", "nomail.test."]
        );
        assert_eq!(
            zones.records("example.test", RecordType::Mx),
            [mx(10, "mail.example.test."), mx(20, "backup.example.test.")]
        );
        assert_eq!(
            zones.records("mail.example.test", RecordType::Aaaa),
            [Record::Aaaa(Ipv6Addr::LOCALHOST)]
        );
        assert_eq!(
            zones.records("www.example.test", RecordType::Cname),
            [Record::Cname("mail.example.test.".into())]
        );
        assert_eq!(zones.records("nomail.test", RecordType::Mx), [mx(0, ".")]);
        assert_eq!(
            zones.records("1.0.0.127.in-addr.arpa", RecordType::Ptr),
            [Record::Ptr("mail.example.test.".into())]
        );
        assert_eq!(zones.serial("example.test"), Some(7));
        let zone =
            &zones.zones[&parse_name("example.test.", &hickory_proto::rr::Name::root()).unwrap()];
        assert_eq!(zone.soa.rname.to_ascii(), "postmaster.example.test.");
        assert_eq!(zone.soa.minimum, 120);
        let mail = parse_name("mail.example.test.", &zone.origin).unwrap();
        assert_eq!(zone.nodes[&mail][&RecordType::A].ttl, 30);
        assert_eq!(zone.nodes[&mail][&RecordType::Aaaa].ttl, 30);
        assert_eq!(zone.nodes[&zone.origin][&RecordType::Mx].ttl, 120);
    }

    #[test]
    fn empty_zones_get_a_generated_soa_and_ns() {
        let text = "zones:\n  a.test: {}\n  b.test:\n    records: {}\n  c.test:\n    records:\n";
        let zones = Zones::parse(text, Path::new("z.yaml")).unwrap();
        assert_eq!(zones.origins(), ["a.test.", "b.test.", "c.test."]);
        assert_eq!(zones.serial("c.test"), Some(1));
        assert_eq!(
            zones.records("a.test", RecordType::Ns),
            [Record::Ns("ns.a.test.".into())]
        );
    }

    #[test]
    fn sample_file_in_the_crate_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones.example.yaml");
        let zones = Zones::load(&path).unwrap();
        assert!(zones.origins().contains(&"example.test.".to_owned()));
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let error = Zones::load(Path::new("/nonexistent/zones.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/zones.yaml"), "{error}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let error = parse_err(&GOOD.replace("    soa:", "    sao:"));
        assert!(error.contains("conf/zones.yaml"), "{error}");
        assert!(error.contains("sao"), "{error}");
        assert!(error.contains("line 5"), "{error}");
    }

    #[test]
    fn unknown_record_type_names_file_line_and_type() {
        let error = parse_err(&GOOD.replace("TXT: [\"v=spf1", "SPF: [\"v=spf1"));
        assert!(error.contains("conf/zones.yaml"), "{error}");
        assert!(error.contains("SPF"), "{error}");
        assert!(error.contains("line 9"), "{error}");
    }

    #[test]
    fn yaml_syntax_error_names_file_and_line() {
        let error = parse_err("zones:\n  example.test:\n    records: [\n");
        assert!(error.contains("conf/zones.yaml"), "{error}");
        assert!(error.contains("line"), "{error}");
    }

    #[test]
    fn bad_ipv4_names_the_line_of_the_value() {
        let text = "zones:\n  example.test:\n    records:\n      mail:\n        A:\n          - 127.0.0.1\n          - 127.0.0.300\n";
        let error = parse_err(text);
        assert!(error.contains("conf/zones.yaml"), "{error}");
        assert!(error.contains("line 7"), "{error}");
        assert!(error.contains("records[mail].A"), "{error}");
        assert!(error.contains("127.0.0.300"), "{error}");
    }

    #[test]
    fn bad_ipv6_names_the_line_of_the_value() {
        let error = parse_err(&GOOD.replace("\"::1\"", "\"::g\""));
        assert!(error.contains("line 10"), "{error}");
        assert!(error.contains("records[mail].AAAA"), "{error}");
    }

    #[test]
    fn mx_without_preference_names_the_line_of_the_value() {
        let text = "zones:\n  example.test:\n    records:\n      \"@\":\n        MX:\n          - 10 mail\n          - mail.example.test.\n";
        let error = parse_err(text);
        assert!(error.contains("line 7"), "{error}");
        assert!(error.contains("records[@].MX"), "{error}");
        assert!(error.contains("preference"), "{error}");
    }

    #[test]
    fn mx_with_a_bad_preference_is_refused() {
        let error = parse_err(&GOOD.replace("\"20 backup", "\"high backup"));
        assert!(error.contains("line 8"), "{error}");
        assert!(error.contains("preference"), "{error}");
    }

    #[test]
    fn null_mx_beside_other_mx_names_the_null_mx() {
        let text = "zones:\n  example.test:\n    records:\n      \"@\":\n        MX:\n          - 10 mail\n          - 0 .\n";
        let error = parse_err(text);
        assert!(error.contains("line 7"), "{error}");
        assert!(error.contains("RFC 7505"), "{error}");
    }

    #[test]
    fn cname_beside_other_data_names_the_name() {
        let error = parse_err(&GOOD.replace(
            "www: { CNAME: [mail] }",
            "www: { CNAME: [mail], A: [127.0.0.3] }",
        ));
        assert!(error.contains("line 12"), "{error}");
        assert!(error.contains("records[www]"), "{error}");
        assert!(error.contains("CNAME"), "{error}");
    }

    #[test]
    fn name_outside_its_zone_is_refused() {
        let error = parse_err(&GOOD.replace("backup.example.test.:", "backup.other.test.:"));
        assert!(error.contains("line 11"), "{error}");
        assert!(error.contains("not inside the zone"), "{error}");
    }

    #[test]
    fn same_name_twice_is_refused() {
        let error = parse_err(&GOOD.replace("backup.example.test.:", "mail.example.test.:"));
        assert!(error.contains("line 11"), "{error}");
        assert!(error.contains("line 10"), "{error}");
    }

    #[test]
    fn bad_name_in_a_value_is_refused() {
        let error = parse_err(&GOOD.replace("www: { CNAME: [mail] }", "www: { CNAME: [a..b] }"));
        assert!(error.contains("line 12"), "{error}");
        assert!(error.contains("records[www].CNAME"), "{error}");
    }

    #[test]
    fn wrong_value_type_names_the_key() {
        let error = parse_err(&GOOD.replace("ttl: 120", "ttl: soon"));
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("ttl"), "{error}");
    }
}

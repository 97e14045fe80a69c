//! The record data we serve, in a form tests can write by hand, and its conversion to and
//! from hickory's wire types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, TXT};
use hickory_proto::rr::{Name, RData, RecordType as WireType};

/// One resource record's data. Names are absolute (a missing trailing dot is implied), except
/// in a zones file where a name without a trailing dot is relative to the zone's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger (RFC 5321 section 5.1); `exchange` `.` with preference 0 is the null MX
    /// of RFC 7505.
    Mx {
        /// Lower is tried first.
        preference: u16,
        /// The host that takes the mail.
        exchange: String,
    },
    /// An alias: the name is another name for this target.
    Cname(String),
    /// A reverse-lookup pointer, owned by a name like `1.0.0.127.in-addr.arpa.`.
    Ptr(String),
    /// Text; longer than 255 bytes is sent as several character-strings of one record.
    Txt(String),
    /// A name server of the zone.
    Ns(String),
}

/// The record types a zone can hold besides its SOA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Alias.
    Cname,
    /// Reverse pointer.
    Ptr,
    /// Text.
    Txt,
    /// Name server.
    Ns,
}

impl RecordType {
    /// Every type, in the order a zones file lists them in its documentation.
    pub const ALL: [RecordType; 7] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Mx,
        RecordType::Cname,
        RecordType::Ptr,
        RecordType::Txt,
        RecordType::Ns,
    ];

    /// The type as hickory and the wire know it.
    pub fn wire(self) -> WireType {
        match self {
            RecordType::A => WireType::A,
            RecordType::Aaaa => WireType::AAAA,
            RecordType::Mx => WireType::MX,
            RecordType::Cname => WireType::CNAME,
            RecordType::Ptr => WireType::PTR,
            RecordType::Txt => WireType::TXT,
            RecordType::Ns => WireType::NS,
        }
    }

    /// The mnemonic used in zones files (`A`, `AAAA`, `MX`, ...).
    pub fn mnemonic(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Mx => "MX",
            RecordType::Cname => "CNAME",
            RecordType::Ptr => "PTR",
            RecordType::Txt => "TXT",
            RecordType::Ns => "NS",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

impl Record {
    /// This record's type.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::A(_) => RecordType::A,
            Record::Aaaa(_) => RecordType::Aaaa,
            Record::Mx { .. } => RecordType::Mx,
            Record::Cname(_) => RecordType::Cname,
            Record::Ptr(_) => RecordType::Ptr,
            Record::Txt(_) => RecordType::Txt,
            Record::Ns(_) => RecordType::Ns,
        }
    }

    /// Whether this is the null MX of RFC 7505 (`MX 0 .`).
    pub fn is_null_mx(&self) -> bool {
        matches!(self, Record::Mx { preference: 0, exchange } if exchange == ".")
    }

    /// The wire form; names are resolved against `origin` when they lack a trailing dot.
    pub(crate) fn to_rdata(&self, origin: &Name) -> Result<RData, String> {
        Ok(match self {
            Record::A(ip) => RData::A(A(*ip)),
            Record::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Record::Mx {
                preference,
                exchange,
            } => RData::MX(MX::new(*preference, parse_name(exchange, origin)?)),
            Record::Cname(target) => RData::CNAME(CNAME(parse_name(target, origin)?)),
            Record::Ptr(target) => RData::PTR(PTR(parse_name(target, origin)?)),
            Record::Ns(target) => RData::NS(NS(parse_name(target, origin)?)),
            Record::Txt(text) => RData::TXT(TXT::new(split_character_strings(text))),
        })
    }

    /// The record for wire data of one of our types; `None` for anything else (SOA, ...).
    pub(crate) fn from_rdata(rdata: &RData) -> Option<Record> {
        Some(match rdata {
            RData::A(ip) => Record::A(ip.0),
            RData::AAAA(ip) => Record::Aaaa(ip.0),
            RData::MX(mx) => Record::Mx {
                preference: mx.preference,
                exchange: mx.exchange.to_ascii(),
            },
            RData::CNAME(name) => Record::Cname(name.0.to_ascii()),
            RData::PTR(name) => Record::Ptr(name.0.to_ascii()),
            RData::NS(name) => Record::Ns(name.0.to_ascii()),
            RData::TXT(txt) => Record::Txt(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect(),
            ),
            _ => return None,
        })
    }
}

/// A name as written in a zones file or the API: `@` is the origin, a trailing dot makes it
/// absolute, anything else is relative to `origin` (the root for API calls). The result is
/// lower-cased: names compare case-insensitively and answers read better in one case.
pub(crate) fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.to_lowercase());
    }
    if text.is_empty() {
        return Err("empty name".to_owned());
    }
    let name = Name::from_ascii(text).map_err(|error| format!("invalid name {text:?}: {error}"))?;
    let name = if name.is_fqdn() {
        name
    } else {
        name.append_domain(origin)
            .map_err(|error| format!("invalid name {text:?}: {error}"))?
    };
    Ok(name.to_lowercase())
}

/// A TXT value cut into character-strings of at most 255 bytes, never inside a UTF-8 sequence.
fn split_character_strings(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    parts.push(rest.to_owned());
    parts
}

/// The reverse-lookup name of an address: `1.0.0.127.in-addr.arpa.` for 127.0.0.1, the
/// nibble form under `ip6.arpa.` for IPv6. PTR records are set at this name.
pub fn reverse_name(ip: IpAddr) -> String {
    Name::from(ip).to_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(
            reverse_name("127.0.0.1".parse().unwrap()),
            "1.0.0.127.in-addr.arpa."
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."), "{v6}");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
    }

    #[test]
    fn names_resolve_against_origin() {
        let origin = Name::from_ascii("Example.Test.").unwrap();
        assert_eq!(
            parse_name("@", &origin).unwrap().to_ascii(),
            "example.test."
        );
        assert_eq!(
            parse_name("MAIL", &origin).unwrap().to_ascii(),
            "mail.example.test."
        );
        assert_eq!(
            parse_name("other.test.", &origin).unwrap().to_ascii(),
            "other.test."
        );
        assert!(parse_name("", &origin).is_err());
        assert!(parse_name("a..b", &origin).is_err());
    }

    #[test]
    fn long_txt_is_split_and_joined_back() {
        let text = "é".repeat(200); // 400 bytes, two-byte characters
        let parts = split_character_strings(&text);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.len() <= 255));
        let rdata = Record::Txt(text.clone()).to_rdata(&Name::root()).unwrap();
        assert_eq!(Record::from_rdata(&rdata), Some(Record::Txt(text)));
    }

    #[test]
    fn null_mx_is_recognised() {
        let null = Record::Mx {
            preference: 0,
            exchange: ".".into(),
        };
        assert!(null.is_null_mx());
        let rdata = null.to_rdata(&Name::root()).unwrap();
        assert_eq!(Record::from_rdata(&rdata), Some(null));
    }
}

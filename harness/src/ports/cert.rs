//! The certificate fields `harness ports` shows (subject, alternative names, issuer, notAfter),
//! read from the DER by hand. x509-parser would do it, but it is not built here yet and would
//! bring ten crates, synstructure 0.13 beside the 0.14 already built among them, for four
//! fields; this reader handles what X.509 certificates use and refuses anything else.

use std::net::{Ipv4Addr, Ipv6Addr};

const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0] EXPLICIT` version and `[3] EXPLICIT` extensions in TBSCertificate.
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// What a certificate says about whom it is for and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The subject as `CN=..., O=...`, attributes in the order they are encoded.
    pub subject: String,
    /// The subject's (last) common name.
    pub common_name: Option<String>,
    /// subjectAltName entries: `DNS:name`, `IP:address`, `email:...`, `URI:...`.
    pub alt_names: Vec<String>,
    /// The issuer, formatted as the subject.
    pub issuer: String,
    /// notAfter as RFC 3339 UTC, `2027-01-31T23:59:59Z`.
    pub not_after: String,
    /// notAfter in seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// Reads the summary out of a DER certificate; the error says what was not as expected.
pub fn summarize(der: &[u8]) -> Result<Summary, String> {
    let certificate = Reader(der).expect(SEQUENCE, "Certificate")?;
    let mut tbs = Reader(Reader(certificate).expect(SEQUENCE, "TBSCertificate")?);
    if tbs.peek() == Some(VERSION) {
        tbs.read()?;
    }
    tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature algorithm")?;
    let issuer = attributes(tbs.expect(SEQUENCE, "issuer")?)?;
    let mut validity = Reader(tbs.expect(SEQUENCE, "validity")?);
    validity.time()?;
    let (not_after, not_after_unix) = validity.time()?;
    let subject_attributes = attributes(tbs.expect(SEQUENCE, "subject")?)?;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;
    let mut alt_names = Vec::new();
    while !tbs.0.is_empty() {
        let (tag, contents) = tbs.read()?;
        if tag == EXTENSIONS {
            alt_names = subject_alt_names(contents)?;
        }
    }
    Ok(Summary {
        subject: format_name(&subject_attributes),
        common_name: subject_attributes
            .iter()
            .rev()
            .find(|(oid, _)| oid == "CN")
            .map(|(_, value)| value.clone()),
        alt_names,
        issuer: format_name(&issuer),
        not_after,
        not_after_unix,
    })
}

/// Whole days from `now` (Unix seconds) to `not_after`, rounded down: negative once expired.
pub fn days_left(not_after_unix: i64, now: i64) -> i64 {
    (not_after_unix - now).div_euclid(86_400)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// One TLV: its tag and contents. Only single-byte tags and definite lengths (DER).
    fn read(&mut self) -> Result<(u8, &'a [u8]), String> {
        let [tag, first, rest @ ..] = self.0 else {
            return Err("truncated DER".into());
        };
        if tag & 0x1f == 0x1f {
            return Err(format!("multi-byte DER tag {tag:#04x}"));
        }
        let (length, rest) = if first & 0x80 == 0 {
            (usize::from(*first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err("bad DER length".into());
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |length, byte| length << 8 | usize::from(*byte));
            (length, &rest[count..])
        };
        if rest.len() < length {
            return Err("DER value longer than its container".into());
        }
        let (contents, after) = rest.split_at(length);
        self.0 = after;
        Ok((*tag, contents))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        match self.read()? {
            (found, contents) if found == tag => Ok(contents),
            (found, _) => Err(format!("{what}: tag {found:#04x}, expected {tag:#04x}")),
        }
    }

    /// A UTCTime or GeneralizedTime, as RFC 3339 text and Unix seconds.
    fn time(&mut self) -> Result<(String, i64), String> {
        let (tag, contents) = self.read()?;
        let text = std::str::from_utf8(contents).map_err(|_| "time is not ASCII".to_string())?;
        let digits = text
            .strip_suffix('Z')
            .ok_or_else(|| format!("time {text:?} is not in UTC (no Z)"))?;
        let full = match tag {
            // RFC 5280 4.1.2.5.1: YY of 50 or more is 19YY.
            UTC_TIME if digits.len() == 12 => {
                let century = if digits < "50" { "20" } else { "19" };
                format!("{century}{digits}")
            }
            // Fractional seconds are not allowed in certificates; cut them off if present.
            GENERALIZED_TIME if digits.len() >= 14 => digits[..14].to_owned(),
            _ => {
                return Err(format!(
                    "time {text:?} (tag {tag:#04x}) is not a certificate time"
                ));
            }
        };
        if !full.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!("time {text:?} has non-digits"));
        }
        let field = |range: std::ops::Range<usize>| full[range].parse::<i64>().unwrap_or(0);
        let (year, month, day) = (field(0..4), field(4..6), field(6..8));
        let (hour, minute, second) = (field(8..10), field(10..12), field(12..14));
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(format!("time {text:?} is not a date"));
        }
        let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Ok((
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
            unix,
        ))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A Name's attributes as (short name or dotted OID, value).
fn attributes(name: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut sets = Reader(name);
    let mut out = Vec::new();
    while !sets.0.is_empty() {
        let mut set = Reader(sets.expect(SET, "RelativeDistinguishedName")?);
        while !set.0.is_empty() {
            let mut attribute = Reader(set.expect(SEQUENCE, "AttributeTypeAndValue")?);
            let oid = attribute.expect(OID, "attribute type")?;
            let (tag, value) = attribute.read()?;
            out.push((attribute_name(oid), string_value(tag, value)));
        }
    }
    Ok(out)
}

fn format_name(attributes: &[(String, String)]) -> String {
    attributes
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        COMMON_NAME => "CN".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        other => dotted(other),
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for byte in oid {
        value = value << 7 | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a directory string; BMPString is UTF-16, the rest are read as UTF-8 (of which
/// PrintableString and IA5String are subsets).
fn string_value(tag: u8, value: &[u8]) -> String {
    if tag == 0x1e {
        let units: Vec<u16> = value
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(value).into_owned()
    }
}

fn subject_alt_names(extensions: &[u8]) -> Result<Vec<String>, String> {
    let mut list = Reader(Reader(extensions).expect(SEQUENCE, "Extensions")?);
    while !list.0.is_empty() {
        let mut extension = Reader(list.expect(SEQUENCE, "Extension")?);
        let oid = extension.expect(OID, "extnID")?;
        if extension.peek() == Some(BOOLEAN) {
            extension.read()?;
        }
        let value = extension.expect(OCTET_STRING, "extnValue")?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        let mut names = Reader(Reader(value).expect(SEQUENCE, "GeneralNames")?);
        let mut out = Vec::new();
        while !names.0.is_empty() {
            let (tag, contents) = names.read()?;
            let text = String::from_utf8_lossy(contents);
            match tag {
                0x81 => out.push(format!("email:{text}")),
                0x82 => out.push(format!("DNS:{text}")),
                0x86 => out.push(format!("URI:{text}")),
                0x87 => match contents.len() {
                    4 => out.push(format!(
                        "IP:{}",
                        Ipv4Addr::from(<[u8; 4]>::try_from(contents).expect("four bytes"))
                    )),
                    16 => out.push(format!(
                        "IP:{}",
                        Ipv6Addr::from(<[u8; 16]>::try_from(contents).expect("sixteen bytes"))
                    )),
                    _ => return Err("iPAddress of neither 4 nor 16 octets".into()),
                },
                // otherName, x400Address, directoryName, ...: not shown.
                _ => {}
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_generated_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let generated =
            reference_server::tls::load_or_generate(None, dir.path(), "mail.example.test").unwrap();
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(generated.cert_pem.as_bytes())
            .unwrap();
        let summary = summarize(&der).unwrap();
        assert!(
            summary
                .alt_names
                .contains(&"DNS:mail.example.test".to_string()),
            "{summary:?}"
        );
        assert!(
            summary.alt_names.contains(&"IP:127.0.0.1".to_string()),
            "{summary:?}"
        );
        assert!(summary.not_after.ends_with('Z'), "{summary:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(days_left(summary.not_after_unix, now) > 0, "{summary:?}");
    }

    #[test]
    fn dates_convert_to_unix_time() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let mut utc = Reader(b"\x17\x0d491231235959Z");
        assert_eq!(
            utc.time().unwrap(),
            ("2049-12-31T23:59:59Z".to_string(), 2_524_607_999)
        );
        let mut old = Reader(b"\x17\x0d500101000000Z");
        assert_eq!(old.time().unwrap().0, "1950-01-01T00:00:00Z");
        let mut generalized = Reader(b"\x18\x0f20380119031408Z");
        assert_eq!(generalized.time().unwrap().1, 2_147_483_648);
        assert!(Reader(b"\x17\x0b4912312359Z").time().is_err());
        assert_eq!(days_left(86_400 * 10, 86_400 * 3 + 5), 6);
        assert_eq!(days_left(0, 1), -1);
    }

    #[test]
    fn names_and_oids_format() {
        // SEQUENCE { SET { SEQUENCE { CN, UTF8String "a" } } SET { SEQUENCE { 1.2.3, "b" } } }
        let name = b"\x31\x0a\x30\x08\x06\x03\x55\x04\x03\x0c\x01a\x31\x0a\x30\x08\x06\x02\x2a\x03\x13\x02bc";
        assert_eq!(format_name(&attributes(name).unwrap()), "CN=a, 1.2.3=bc");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert!(summarize(b"\x30\x05\x30").is_err());
        assert!(summarize(b"").is_err());
    }
}

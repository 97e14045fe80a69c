//! An authoritative DNS server for mail tests, on hickory-server.
//!
//! It serves SOA, NS, MX (including the null MX of RFC 7505), A, AAAA, CNAME, PTR and TXT
//! records from a YAML zones file or from code, and lets tests change any record set while it
//! runs: the next query sees the change. Answers are those of an authoritative server: the AA
//! flag, NXDOMAIN or NODATA with the zone's SOA in the authority section, CNAMEs followed within
//! the served zones, REFUSED for names outside every zone, truncation (TC) over UDP when the
//! answer does not fit the client's EDNS payload size (512 without EDNS), and TCP on the same
//! port. Not served: wildcards, delegations (an NS below the apex is just data), zone transfers,
//! DNSSEC.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fake_dns::{FakeDns, Record, Zones};
//!
//! let dns = FakeDns::start("127.0.0.1:0".parse()?, Zones::demo()).await?;
//! dns.add_zone("peer.test")?;
//! dns.set_records("peer.test", vec![Record::Mx { preference: 10, exchange: "mx.peer.test.".into() }])?;
//! dns.set_records("mx.peer.test", vec![Record::A([127, 0, 0, 2].into())])?;
//! println!("ask {}", dns.local_addr());
//! dns.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Zones file
//!
//! ```yaml
//! ttl: 60                          # optional default TTL in seconds (60 if absent)
//! zones:
//!   example.test:                  # the origin; a trailing dot is optional
//!     ttl: 300                     # optional: this zone's default TTL
//!     soa: { rname: hostmaster, serial: 7 }   # optional: mname, rname, serial, refresh,
//!                                             # retry, expire, minimum
//!     records:
//!       "@":                       # the origin itself
//!         MX: ["10 mail", "20 backup.example.test."]
//!         TXT: ["v=spf1 mx -all"]
//!       mail: { A: [127.0.0.1], AAAA: ["::1"], ttl: 30 }
//!       www: { CNAME: [mail] }
//!   nomail.test:
//!     records:
//!       "@": { MX: ["0 ."] }       # null MX
//!   0.0.127.in-addr.arpa:
//!     records:
//!       "1": { PTR: [mail.example.test.] }
//! ```
//!
//! Under `records`, each key is an owner name and each value maps record types (`A`, `AAAA`,
//! `MX`, `CNAME`, `PTR`, `TXT`, `NS`, upper case) to a list of values, plus an optional `ttl`
//! for that name. Owner names and names inside values are relative to the origin unless they
//! end in a dot; `@` is the origin. An MX value is `"<preference> <host>"`. The SOA is
//! generated when absent (`ns.<origin>`, `hostmaster.<origin>`, serial 1, minimum = TTL), and
//! so is an apex `NS ns.<origin>` unless the file lists NS records at `@`. Names compare
//! case-insensitively.
//!
//! Errors name the file, the line and the key: unknown keys and record types, values of the
//! wrong YAML type, bad addresses or names, an MX without preference, a CNAME beside other
//! data, a null MX beside other MX records, a name outside its zone or listed twice.
//! `zones.example.yaml` in this crate is a complete sample.

#![warn(missing_docs)]

mod answer;
mod error;
mod file;
mod record;
mod server;
mod zones;

pub use error::ZoneError;
pub use record::{Record, RecordType, reverse_name};
pub use server::FakeDns;
pub use zones::{DEFAULT_TTL, Zones};

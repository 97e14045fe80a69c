//! What can go wrong reading a zones file or changing records.

use std::path::PathBuf;

/// A zones file that could not be used, or a record change that makes no sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// The file could not be read.
    #[error("cannot read zones file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML did not match the schema: unknown key or record type, wrong type, bad syntax.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde-saphyr's message, which names the line, column and key.
        message: String,
    },
    /// A value parsed as YAML but is not valid DNS data (bad address, MX without preference,
    /// CNAME beside other data, ...).
    #[error("{path}: line {line}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the offending value (or of its key when the value spans lines).
        line: u64,
        /// The key the value belongs to, e.g. `zones.example.test.records.mail.MX`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A record change for a name that is in none of the served zones.
    #[error("{name} is in none of the served zones")]
    NotInZone {
        /// The name as given.
        name: String,
    },
    /// A record change that would break the zone (CNAME beside other data, null MX beside
    /// other MX, a name that does not parse).
    #[error("cannot set records at {name}: {message}")]
    BadRecord {
        /// The name as given.
        name: String,
        /// What is wrong.
        message: String,
    },
}

//! The error type shared by the protocol clients.

use std::io;
use std::time::Duration;

use super::smtp::Reply;
use super::transcript::escape_bytes;

/// What went wrong talking to a server. Messages say what was expected and what came.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("timed out after {after:?} while {while_doing}")]
    Timeout {
        /// What the client was waiting for.
        while_doing: String,
        /// How long it waited.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("the server closed the connection while {while_doing}")]
    Closed {
        /// What the client was doing.
        while_doing: String,
    },
    /// A socket error.
    #[error("I/O error while {while_doing}: {source}")]
    Io {
        /// What the client was doing.
        while_doing: String,
        /// The error.
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {server_name} failed: {source}")]
    Tls {
        /// The name the certificate was checked against.
        server_name: String,
        /// The error, wrapping rustls's when it comes from rustls.
        source: io::Error,
    },
    /// The TLS settings cannot be used (unreadable CA, bad server name, ...).
    #[error("unusable TLS settings: {0}")]
    TlsConfig(String),
    /// The operation needs a plaintext connection but TLS is already on.
    #[error("the connection already uses TLS")]
    AlreadyTls,
    /// A reply that breaks the protocol's syntax.
    #[error("malformed reply ({reason}): \"{}\"", escape_bytes(bytes))]
    MalformedReply {
        /// Which rule it breaks.
        reason: String,
        /// The offending bytes.
        bytes: Vec<u8>,
    },
    /// A well-formed reply other than the one the operation needs.
    #[error("expected {expected}, got \"{reply}\"")]
    UnexpectedReply {
        /// What was expected.
        expected: &'static str,
        /// What came.
        reply: Reply,
    },
    /// Bytes that are not the TLS records a handshake should produce.
    #[error("not a TLS reply ({reason}): \"{}\"", escape_bytes(bytes))]
    MalformedTls {
        /// What is wrong with them.
        reason: String,
        /// The bytes received.
        bytes: Vec<u8>,
    },
}

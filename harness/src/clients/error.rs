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

impl ClientError {
    /// Whether this is a TLS handshake that the server ended: it closed or reset the connection,
    /// or sent a fatal alert. Not a handshake that failed on bytes that are not TLS (a server
    /// that answered in plain text), nor one the client gave up on (an untrusted certificate, a
    /// timeout).
    pub fn is_handshake_ended_by_server(&self) -> bool {
        let ClientError::Tls { source, .. } = self else {
            return false;
        };
        match source.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => true,
            _ => source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|error| matches!(error, rustls::Error::AlertReceived(_))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(source: io::Error) -> ClientError {
        ClientError::Tls {
            server_name: "mail.example.test".into(),
            source,
        }
    }

    #[test]
    fn handshakes_the_server_ended() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(tls(eof).is_handshake_ended_by_server());
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(tls(reset).is_handshake_ended_by_server());
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert!(tls(alert).is_handshake_ended_by_server());
    }

    #[test]
    fn handshakes_that_failed_otherwise() {
        let plain_text = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(!tls(plain_text).is_handshake_ended_by_server());
        let untrusted = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(!tls(untrusted).is_handshake_ended_by_server());
        let closed = ClientError::Closed {
            while_doing: "reading".into(),
        };
        assert!(!closed.is_handshake_ended_by_server());
    }
}

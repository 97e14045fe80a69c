//! Protocol clients for conformance testing, written independently of the reference server's
//! parsers: a client that shared them would share their bugs. They speak raw lines, can send
//! malformed input on purpose, and keep a transcript of every byte.

mod conn;
mod error;
pub mod imap;
pub mod legacy_tls;
pub mod pop3;
pub mod smtp;
pub mod tls;
pub mod transcript;

#[cfg(test)]
mod test_support;

pub(crate) use conn::limit_connections;
pub use error::ClientError;

//! IMAP4rev1 (RFC 3501) with the extensions clients rely on. Commands are parsed and responses
//! encoded with imap-codec; the session logic and the store access are ours.
//!
//! Work in progress (issue 4): the IMAP listeners are not in the default configuration until
//! the server is complete.

pub mod framing;
pub mod session;

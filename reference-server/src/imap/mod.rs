//! IMAP4rev1 (RFC 3501) with the extensions clients rely on. Commands are parsed and message
//! structures encoded with imap-codec; the session logic and the store access are ours.

pub(crate) mod driver;
pub mod extensions;
pub mod framing;
pub mod mailboxes;
pub mod message;
pub mod namespace;
pub mod presentation;
pub mod search;
pub mod selected;
pub mod session;

//! An IMAP4rev1 client for conformance tests (RFC 3501, with the IDLE, UIDPLUS, MOVE, LITERAL+,
//! ENABLE, NAMESPACE, ID, ESEARCH, SPECIAL-USE, CONDSTORE and SASL-IR extensions): raw lines, strict
//! response parsing into a faithful tree, malformed input on request, and a transcript of every
//! byte.
//!
//! Reading is two steps. A framer finds where one response ends, following the literals its
//! lines announce and looking at each received byte once, so a large literal arriving in small
//! reads costs linear time. A parser then turns the complete response into [`Incoming`]: typed
//! variants for the responses tests look at, with message data (FETCH items, ENVELOPE,
//! BODYSTRUCTURE, extension data) kept as generic [`Value`] trees.
//!
//! Commands return a [`CommandResult`] inside the `Result`: `Err(ClientError)` when the
//! connection broke or the server broke the syntax, otherwise the tagged status (OK, NO or BAD)
//! and every untagged response that came before it.

mod arguments;
mod client;
mod framer;
mod parser;
#[cfg(test)]
mod test_support;
mod types;
mod utf7;

pub use arguments::{mailbox_arg, quote};
pub use client::{DEFAULT_MAX_LITERAL, ImapClient, Part};
pub use types::{
    Code, CommandResult, Continuation, Esearch, Fetch, Incoming, ListItem, MailboxStatus,
    Namespace, Namespaces, Outcome, Response, Search, Selected, SequenceSet, Status, StatusKind,
    Tagged, Value,
};
pub use utf7::{decode_modified_utf7, encode_modified_utf7};

use super::ClientError;

/// Bytes shown on each side of a parse error inside a long line or literal.
const SHOWN_AROUND_ERROR: usize = 512;

fn malformed(reason: impl Into<String>, bytes: &[u8]) -> ClientError {
    ClientError::MalformedReply {
        reason: reason.into(),
        bytes: bytes.to_vec(),
    }
}

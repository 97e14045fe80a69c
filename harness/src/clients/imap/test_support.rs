//! Helpers shared by the unit tests of the framer, the parser, the types and modified UTF-7.

use std::fmt;

use super::client::DEFAULT_MAX_LITERAL;
use super::framer::Framer;
use super::types::{Fetch, Incoming, Response, SequenceSet};
use crate::clients::ClientError;

/// Frames and parses `wire` whole, and fed one byte more at a time, checking that the
/// framer completes exactly at the end and both ways agree.
pub(super) fn parse_all(wire: &[u8]) -> Result<Incoming, ClientError> {
    let framer = Framer::new(DEFAULT_MAX_LITERAL);
    for end in 0..wire.len() {
        match framer.parse(&wire[..end]) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("complete after {end} of {} bytes", wire.len()),
            Err(error) => return Err(error),
        }
    }
    let whole = Framer::new(DEFAULT_MAX_LITERAL).parse(wire);
    let fed = framer.parse(wire);
    assert_eq!(format!("{whole:?}"), format!("{fed:?}"));
    let ((incoming, _head), used) = whole?.expect("a complete response");
    assert_eq!(used, wire.len());
    Ok(incoming)
}

pub(super) fn parse(wire: &[u8]) -> Incoming {
    parse_all(wire).unwrap_or_else(|error| panic!("{error}"))
}

pub(super) fn untagged(wire: &[u8]) -> Response {
    match parse(wire) {
        Incoming::Untagged(response) => response,
        other => panic!("not untagged: {other:?}"),
    }
}

pub(super) fn fetch(wire: &[u8]) -> Fetch {
    match untagged(wire) {
        Response::Fetch(fetch) => fetch,
        other => panic!("not a FETCH: {other:?}"),
    }
}

pub(super) fn malformed_reason<T: fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::MalformedReply { reason, .. }) => reason,
        other => panic!("expected a malformed reply, got {other:?}"),
    }
}

pub(super) fn set(ranges: &[(u32, u32)]) -> SequenceSet {
    SequenceSet {
        ranges: ranges.to_vec(),
    }
}

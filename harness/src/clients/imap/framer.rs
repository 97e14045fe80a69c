//! The framer: where the response at the front of the buffer ends, literals included.

use std::sync::{Mutex, PoisonError};

use super::parser::parse_response;
use super::types::Incoming;
use super::{SHOWN_AROUND_ERROR, malformed};
use crate::clients::ClientError;
use crate::clients::conn::Parsed;

/// Most bytes one response may have outside its literals. RFC 3501 sets no limit; this bounds
/// what a server that never ends a line can make us buffer, with room for long SEARCH results.
const MAX_LINE: usize = 1024 * 1024;

/// Bytes of a response's first line kept to name it in errors raised after parsing.
const HEAD_KEPT: usize = 1024;

/// Finds the end of one response: its first line, and after each line that announces a literal
/// (`{n}` CRLF), the n octets and the next line. Each call resumes where the last stopped, so a
/// response arriving in many reads is searched once.
pub(super) struct Framer {
    max_literal: usize,
    /// Behind a mutex rather than a `Cell` only so that the client is `Sync` and its futures
    /// `Send` (load generators run it on a multi-threaded runtime); it is never contended.
    scan: Mutex<Scan>,
}

#[derive(Clone, Copy, Default)]
struct Scan {
    /// Where the line being looked for starts: 0, or just after a literal.
    line_start: usize,
    /// Where the search for that line's LF resumes.
    searched: usize,
    /// Bytes of complete lines so far, literals excluded.
    line_bytes: usize,
    /// Octets of the literals announced so far.
    literal_bytes: usize,
}

impl Framer {
    pub(super) fn new(max_literal: usize) -> Self {
        Self {
            max_literal,
            scan: Mutex::default(),
        }
    }

    /// Parses a complete response from the front of `buf`, with its first line (up to
    /// [`HEAD_KEPT`] bytes) for errors about it raised later.
    pub(super) fn parse(&self, buf: &[u8]) -> Parsed<(Incoming, Vec<u8>)> {
        let mut scan = *self.scan.lock().unwrap_or_else(PoisonError::into_inner);
        let end = self.frame_end(&mut scan, buf);
        let Some(end) = end? else {
            *self.scan.lock().unwrap_or_else(PoisonError::into_inner) = scan;
            return Ok(None);
        };
        // The frame is consumed whatever the parse says; the next starts afresh at 0.
        *self.scan.lock().unwrap_or_else(PoisonError::into_inner) = Scan::default();
        let frame = &buf[..end];
        let incoming = parse_response(frame)?;
        let head_end = frame
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(end, |at| at + 1)
            .min(HEAD_KEPT);
        Ok(Some(((incoming, frame[..head_end].to_vec()), end)))
    }

    fn frame_end(&self, scan: &mut Scan, buf: &[u8]) -> Result<Option<usize>, ClientError> {
        loop {
            let from = scan.searched.max(scan.line_start);
            let Some(unsearched) = buf.get(from..) else {
                return Ok(None); // a literal is still arriving
            };
            let Some(at) = unsearched.iter().position(|&byte| byte == b'\n') else {
                scan.searched = buf.len();
                if scan.line_bytes + (buf.len() - scan.line_start) > MAX_LINE {
                    return Err(too_long(&buf[scan.line_start..]));
                }
                return Ok(None);
            };
            let end = from + at + 1;
            let line = &buf[scan.line_start..end];
            scan.line_bytes += line.len();
            if scan.line_bytes > MAX_LINE {
                return Err(too_long(line));
            }
            // Status responses end in free text, where `{5}` before CRLF is just text.
            if scan.line_start == 0 && is_status_line(line) {
                return Ok(Some(end));
            }
            let Some(size) = announced_literal(line)? else {
                return Ok(Some(end));
            };
            scan.literal_bytes = scan.literal_bytes.saturating_add(size);
            if scan.literal_bytes > self.max_literal {
                return Err(malformed(
                    format!(
                        "a literal of {size} octets takes the response's literals past the \
                         limit of {} octets",
                        self.max_literal
                    ),
                    shown(line),
                ));
            }
            scan.line_start = end + size;
            scan.searched = scan.line_start;
        }
    }
}

fn shown(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(2 * SHOWN_AROUND_ERROR)]
}

fn too_long(line: &[u8]) -> ClientError {
    malformed(
        format!(
            "no line end within {MAX_LINE} bytes outside literals (the first {} shown)",
            shown(line).len()
        ),
        shown(line),
    )
}

/// Whether the first line of a response is `+ ...`, `* OK|NO|BAD|BYE|PREAUTH ...` or
/// `tag OK|NO|BAD ...`, which end in text, not in a literal. (So a literal inside such a line's
/// response code, which RFC 3501 allows in BADCHARSET and no server sends, is not followed.)
fn is_status_line(line: &[u8]) -> bool {
    if line.starts_with(b"+") {
        return true;
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&byte| byte == b' ');
    let (Some(first), Some(second)) = (words.next(), words.next()) else {
        return false;
    };
    let names: &[&str] = if first == b"*" {
        &["OK", "NO", "BAD", "BYE", "PREAUTH"]
    } else {
        &["OK", "NO", "BAD"]
    };
    names
        .iter()
        .any(|name| second.eq_ignore_ascii_case(name.as_bytes()))
}

/// The size of the literal a line announces by ending in `{n}` CRLF.
fn announced_literal(line: &[u8]) -> Result<Option<usize>, ClientError> {
    let Some(content) = line.strip_suffix(b"}\r\n") else {
        return Ok(None);
    };
    let Some(open) = content.iter().rposition(|&byte| byte == b'{') else {
        return Ok(None);
    };
    let digits = &content[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let size = String::from_utf8_lossy(digits).parse().map_err(|_| {
        malformed(
            "literal size does not fit in this machine's memory",
            shown(line),
        )
    })?;
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::imap::client::DEFAULT_MAX_LITERAL;
    use crate::clients::imap::test_support::{fetch, malformed_reason};

    #[test]
    fn literals_split_anywhere_and_bounded() {
        // parse_all feeds byte by byte: the framer must not finish at the `)` inside the literal
        // or the CRLF that the literal contains.
        let wire = b"* 7 FETCH (BODY[] {11}\r\na)\r\n\r\n* 1 X UID 9)\r\n";
        let fetched = fetch(wire);
        assert_eq!(fetched.body(""), Some(&b"a)\r\n\r\n* 1 X"[..]));
        assert_eq!(fetched.uid(), Some(9));
        // Two literals, and an empty one.
        let two = fetch(b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {0}\r\n)\r\n");
        assert_eq!(
            (two.body("1"), two.body("2")),
            (Some(&b"abc"[..]), Some(&b""[..]))
        );
        // A second response in the same buffer is left alone.
        let framer = Framer::new(DEFAULT_MAX_LITERAL);
        let (_, used) = framer
            .parse(b"* 1 EXISTS\r\n* 2 FETCH (BODY[] {1}\r\nx)\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(used, 12);
        // The literal limit counts every literal of a response.
        let framer = Framer::new(10);
        assert!(
            framer
                .parse(b"* 1 FETCH (BODY[1] {6}\r\n")
                .unwrap()
                .is_none()
        );
        let reason =
            malformed_reason(framer.parse(b"* 1 FETCH (BODY[1] {6}\r\nabcdef BODY[2] {5}\r\n"));
        assert!(reason.contains("limit of 10"), "{reason}");
        assert!(
            malformed_reason(
                Framer::new(10).parse(b"* 1 FETCH (BODY[] {99999999999999999999999}\r\n")
            )
            .contains("memory")
        );
    }

    #[test]
    fn over_long_lines_are_bounded() {
        let framer = Framer::new(DEFAULT_MAX_LITERAL);
        let mut long = b"* SEARCH".to_vec();
        while long.len() < MAX_LINE {
            long.extend_from_slice(b" 1");
        }
        long.truncate(MAX_LINE);
        assert!(framer.parse(&long).unwrap().is_none());
        long.push(b'1');
        let reason = malformed_reason(framer.parse(&long));
        assert!(reason.contains("no line end"), "{reason}");
        // Only the start is kept in the error.
        let Err(ClientError::MalformedReply { bytes, .. }) = Framer::new(5).parse(&long) else {
            panic!("not malformed")
        };
        assert_eq!(bytes.len(), 2 * SHOWN_AROUND_ERROR);
        // Lines after literals count towards the same limit.
        let mut spread = b"* 1 FETCH (BODY[1] {1}\r\nx".to_vec();
        spread.extend(std::iter::repeat_n(b' ', MAX_LINE));
        assert!(Framer::new(DEFAULT_MAX_LITERAL).parse(&spread).is_err());
    }
}

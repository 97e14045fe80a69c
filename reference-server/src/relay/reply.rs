//! SMTP replies as the relay's client reads them, without I/O: bytes in, lines out
//! ([`LineBuffer`]), lines in, a reply out ([`ReplyLines`]).

/// Longest reply line accepted from a server (RFC 5321 4.5.3.1.5 says 512).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
pub const MAX_REPLY_LINES: usize = 200;

/// A server reply: code and text lines (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

/// What was wrong with what a server sent; the text follows "`<peer>` sent ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line without a code from 200 to 599 and a space or hyphen after it, or one
    /// continuation line too many.
    #[error("a malformed reply line {0:?}")]
    Malformed(String),
    /// More than [`MAX_REPLY_LINE`] octets buffered without a line end.
    #[error("a reply line over {MAX_REPLY_LINE} octets")]
    LineTooLong,
}

/// Received bytes not yet taken as lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// Adds bytes read from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Forgets everything buffered (RFC 3207: what came before the TLS handshake is not
    /// trusted).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next CRLF-terminated line (without the CRLF, invalid UTF-8 replaced), `None` when
    /// more bytes are needed, or an error when too many are buffered without a line end.
    pub fn next_line(&mut self) -> Result<Option<String>, ReplyError> {
        if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + 2);
            return Ok(Some(line));
        }
        if self.buf.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        Ok(None)
    }
}

/// The lines of one reply read so far.
#[derive(Debug, Default)]
pub struct ReplyLines {
    lines: Vec<String>,
}

impl ReplyLines {
    /// Takes one line: the whole reply once its last line came, `None` after a continuation
    /// line.
    pub fn push(&mut self, line: String) -> Result<Option<Reply>, ReplyError> {
        let Some(code) = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
        else {
            return Err(ReplyError::Malformed(line));
        };
        let sep = line.as_bytes().get(3).copied();
        match sep {
            None | Some(b' ') => {}
            Some(b'-') if self.lines.len() + 1 < MAX_REPLY_LINES => {}
            _ => return Err(ReplyError::Malformed(line)),
        }
        self.lines.push(line.get(4..).unwrap_or("").to_owned());
        Ok(match sep {
            Some(b'-') => None,
            _ => Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            }),
        })
    }
}

/// Every reply in `bytes`, in order, until the first error; for tests and tools that have the
/// whole exchange at hand. Bytes after the last complete reply are ignored.
pub fn parse_replies(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
    let mut buffer = LineBuffer::default();
    buffer.extend(bytes);
    let mut lines = ReplyLines::default();
    let mut replies = Vec::new();
    while let Some(line) = buffer.next_line()? {
        if let Some(reply) = lines.push(line)? {
            replies.push(reply);
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    #[test]
    fn single_and_multi_line_replies() {
        assert_eq!(
            parse_replies(b"220 mx.test ready\r\n250-mx.test\r\n250-SIZE 100\r\n250 STARTTLS\r\n"),
            Ok(vec![
                reply(220, &["mx.test ready"]),
                reply(250, &["mx.test", "SIZE 100", "STARTTLS"]),
            ])
        );
        // A bare code is a reply with one empty line.
        assert_eq!(parse_replies(b"250\r\n"), Ok(vec![reply(250, &[""])]));
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut buffer = LineBuffer::default();
        buffer.extend(b"250-a\r\n250 b");
        let mut lines = ReplyLines::default();
        let first = buffer.next_line().unwrap().unwrap();
        assert_eq!(lines.push(first), Ok(None));
        assert_eq!(buffer.next_line(), Ok(None));
        buffer.extend(b"\r\n");
        let last = buffer.next_line().unwrap().unwrap();
        assert_eq!(lines.push(last), Ok(Some(reply(250, &["a", "b"]))));
    }

    #[test]
    fn malformed_reply_lines_are_refused() {
        for line in [
            "hello", "25 x", "199 x", "600 x", "250x", "250+x", "2500 x", "",
        ] {
            let bytes = format!("{line}\r\n");
            assert_eq!(
                parse_replies(bytes.as_bytes()),
                Err(ReplyError::Malformed(line.to_owned())),
                "{line:?}"
            );
        }
        assert_eq!(
            ReplyError::Malformed("hello".into()).to_string(),
            "a malformed reply line \"hello\""
        );
    }

    #[test]
    fn over_long_lines_are_refused() {
        let mut buffer = LineBuffer::default();
        buffer.extend(&[b'x'; MAX_REPLY_LINE]);
        assert_eq!(buffer.next_line(), Ok(None));
        buffer.extend(b"x");
        assert_eq!(buffer.next_line(), Err(ReplyError::LineTooLong));
        assert_eq!(
            ReplyError::LineTooLong.to_string(),
            "a reply line over 4096 octets"
        );
        // A line end already buffered still counts.
        let mut long = vec![b'2', b'5', b'0', b' '];
        long.extend_from_slice(&[b'x'; MAX_REPLY_LINE]);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_replies(&long).map(|r| r.len()), Ok(1));
    }

    #[test]
    fn too_many_continuation_lines_are_refused() {
        let mut bytes = Vec::new();
        for _ in 0..MAX_REPLY_LINES - 1 {
            bytes.extend_from_slice(b"250-x\r\n");
        }
        let mut allowed = bytes.clone();
        allowed.extend_from_slice(b"250 last\r\n");
        assert_eq!(
            parse_replies(&allowed).map(|r| r[0].lines.len()),
            Ok(MAX_REPLY_LINES)
        );
        bytes.extend_from_slice(b"250-one too many\r\n250 last\r\n");
        assert_eq!(
            parse_replies(&bytes),
            Err(ReplyError::Malformed("250-one too many".into()))
        );
    }
}

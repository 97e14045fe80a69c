//! What the fuzz targets share: how an input is cut into options, reads and protocol bytes, and
//! the reply syntax each protocol must keep whatever the client sent.

/// A fuzz input: option bits, the bytes a client sends, and how they are cut into reads.
pub struct Input<'a> {
    /// Byte 0: each target reads the bits it needs (role, limits, faults).
    pub options: u8,
    chunk_sizes: &'a [u8],
    /// What the client sends.
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Byte 0 is the options; the low nibble of byte 1 counts the chunk-size bytes that follow;
    /// the rest is data. So a hand-written seed starting with `00` is sent in one read with no
    /// options set, and the text after it stays readable.
    pub fn parse(bytes: &'a [u8]) -> Input<'a> {
        let options = bytes.first().copied().unwrap_or(0);
        let rest = bytes.get(2..).unwrap_or_default();
        let count = bytes
            .get(1)
            .map_or(0, |b| usize::from(b & 0x0f))
            .min(rest.len());
        let (chunk_sizes, data) = rest.split_at(count);
        Input {
            options,
            chunk_sizes,
            data,
        }
    }

    /// Whether option bit `bit` is set.
    pub fn option(&self, bit: u8) -> bool {
        self.options & (1 << bit) != 0
    }

    /// The data cut into reads whose sizes cycle through the chunk-size bytes (each plus one);
    /// one read when there are none.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.chunk_sizes.is_empty() {
            return vec![self.data];
        }
        let mut chunks = Vec::new();
        let mut rest = self.data;
        for &size in self.chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, next) = rest.split_at((usize::from(size) + 1).min(rest.len()));
            chunks.push(chunk);
            rest = next;
        }
        chunks
    }
}

/// Longest reply line, CRLF included: RFC 5321 4.5.3.1.5 for SMTP, RFC 2449 section 4 for
/// POP3 status lines.
pub const MAX_REPLY_LINE: usize = 512;

/// Splits output into lines without their CRLF; an error for a bare CR or LF or a missing
/// final CRLF.
pub fn crlf_lines(out: &[u8]) -> Result<Vec<&[u8]>, String> {
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        return Err("output does not end with CRLF".into());
    }
    let mut lines = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("output ends with CRLF");
        let line = &rest[..end];
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(format!(
                "bare line end in {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        lines.push(line);
        rest = &rest[end + 2..];
    }
    Ok(lines)
}

/// SMTP replies (RFC 5321 4.2): each line is a 2xx-5xx code, a hyphen on every line of a
/// multi-line reply but the last, which has a space, the same code on all of them, an enhanced
/// status code (RFC 3463) of the same class when one is given, and at most 512 octets.
pub fn check_smtp_replies(out: &[u8]) -> Result<(), String> {
    let mut open: Option<&[u8]> = None;
    for line in crlf_lines(out)? {
        let shown = String::from_utf8_lossy(line);
        if line.len() + 2 > MAX_REPLY_LINE {
            return Err(format!("reply line of {} octets: {shown}", line.len() + 2));
        }
        let code = line.get(..3).unwrap_or_default();
        let well_formed = code.len() == 3
            && (b'2'..=b'5').contains(&code[0])
            && code[1..].iter().all(u8::is_ascii_digit)
            && matches!(line.get(3), Some(b' ' | b'-'));
        if !well_formed {
            return Err(format!("not a reply line: {shown:?}"));
        }
        if open.is_some_and(|open| open != code) {
            return Err(format!("code changes inside a multi-line reply: {shown}"));
        }
        open = (line[3] == b'-').then_some(code);
        let text = String::from_utf8_lossy(&line[4..]);
        let first = text.split(' ').next().unwrap_or_default();
        let parts: Vec<&str> = first.split('.').collect();
        let enhanced = parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        if enhanced && first.as_bytes()[0] != code[0] {
            return Err(format!("enhanced code of another class: {shown}"));
        }
    }
    match open {
        Some(_) => Err("multi-line reply without its last line".into()),
        None => Ok(()),
    }
}

/// POP3 responses (RFC 1939 section 3): status lines `+OK` or `-ERR`, the `+ ` of a SASL
/// exchange (RFC 5034), and multi-line responses whose lines are dot-stuffed and end with a
/// lone `.`. Which `+OK` opens a multi-line response is told from its text, as this server
/// words them.
pub fn check_pop3_replies(out: &[u8]) -> Result<(), String> {
    let mut in_block = false;
    for line in crlf_lines(out)? {
        let shown = String::from_utf8_lossy(line);
        if in_block {
            if line == b"." {
                in_block = false;
            } else if line.starts_with(b".") && !line.starts_with(b"..") {
                return Err(format!("line not dot-stuffed: {shown:?}"));
            }
            continue;
        }
        if line.len() + 2 > MAX_REPLY_LINE {
            return Err(format!("status line of {} octets: {shown}", line.len() + 2));
        }
        if line == b"+OK" || line.starts_with(b"+OK ") {
            in_block = opens_pop3_block(&shown);
        } else if !(line.starts_with(b"-ERR ") || line == b"+ ") {
            return Err(format!("not a status line: {shown:?}"));
        }
    }
    if in_block {
        return Err("unterminated multi-line response".into());
    }
    Ok(())
}

/// Whether a `+OK` line opens a multi-line response, by this server's wording.
fn opens_pop3_block(line: &str) -> bool {
    let Some(text) = line.strip_prefix("+OK ") else {
        return false;
    };
    matches!(
        text,
        "Capability list follows"
            | "Unique-ID listing follows"
            | "Supported SASL mechanisms follow"
    ) || text.starts_with("Top of message ")
        || (text.starts_with(|c: char| c.is_ascii_digit()) && text.contains(" messages ("))
        || text
            .strip_suffix(" octets")
            .is_some_and(|size| size.parse::<u64>().is_ok())
}

/// IMAP server output (RFC 3501 section 7): CRLF lines that are untagged (`* `), continuation
/// requests (`+ `), or tagged `OK`, `NO` or `BAD` with a tag the client sent; a line ending in
/// `{n}` is followed by `n` octets of literal data and the rest of the response.
pub fn check_imap_output(out: &[u8], input: &[u8]) -> Result<(), String> {
    let mut rest = out;
    let next_line = |rest: &mut &[u8]| -> Result<String, String> {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("output does not end with CRLF")?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        *rest = &rest[end + 2..];
        if line.contains(['\r', '\n']) {
            return Err(format!("bare line end in {line:?}"));
        }
        Ok(line)
    };
    while !rest.is_empty() {
        let mut line = next_line(&mut rest)?;
        if !(line.starts_with("* ") || line.starts_with("+ ") || line == "+") {
            let mut words = line.splitn(3, ' ');
            let tag = words.next().unwrap_or_default();
            let status = words.next();
            let tag_ok = !tag.is_empty()
                && tag.bytes().all(|b| b > b' ' && b < 0x7f && b != b'+')
                && input.windows(tag.len()).any(|w| w == tag.as_bytes());
            if !tag_ok || !matches!(status, Some("OK" | "NO" | "BAD")) {
                return Err(format!("not a response line: {line:?}"));
            }
        }
        while let Some(size) = line
            .strip_suffix('}')
            .and_then(|l| l.rsplit_once('{'))
            .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            rest = rest.get(size..).ok_or("literal runs past the output")?;
            line = next_line(&mut rest)?;
        }
    }
    Ok(())
}

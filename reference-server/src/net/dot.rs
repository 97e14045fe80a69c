//! Dot-stuffed multi-line data, the same on the wire in SMTP and POP3.

/// Appends `message` as dot-stuffed data: the body of a POP3 multi-line response (RFC 1939
/// section 3) or SMTP message data (RFC 5321 4.5.2) are the same on the wire. A line
/// starting with `.` gets another, every line ends with CRLF (a bare LF becomes CRLF and a
/// last line without one gets one), then the terminating `.` line. One pass, and the buffer
/// grows by exact amounts: doubling a 25 MB buffer for a few more dot lines than guessed
/// would waste 25 MB.
pub fn dot_stuff(out: &mut Vec<u8>, message: &[u8]) {
    out.reserve_exact(message.len() + message.len() / 256 + 8);
    let mut rest = message;
    while !rest.is_empty() {
        // Room for this line (at most the rest, a dot and CRLF) and the final dot line.
        if out.capacity() - out.len() < rest.len() + 6 {
            out.reserve_exact(rest.len() + rest.len() / 16 + 6);
        }
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&rest[..lf], &rest[lf + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        let stuffed = |message: &[u8]| {
            let mut out = Vec::new();
            dot_stuff(&mut out, message);
            out
        };
        assert_eq!(stuffed(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(stuffed(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(stuffed(b""), b".\r\n");
    }
}

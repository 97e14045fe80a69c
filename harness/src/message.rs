//! Internet messages (RFC 5322) as the delivery checks read them: the header section and its
//! fields, the Message-ID that finds the harness's own message, and the comparison of a stored
//! message with the one sent.
//!
//! A server may add to a message without changing what the sender wrote: trace fields on the
//! way (RFC 5321 4.4), the fields a submission server completes (RFC 6409 8), and it may write
//! the names of its own fields in any case (RFC 5322 1.2.2). Stored mail the harness did not
//! send may be anything at all (NUL octets, broken MIME), so nothing here assumes it is well
//! formed, and nothing here panics on it.

/// Trace fields a server adds on the way or at delivery: RFC 5321 4.4 (Return-Path, Received),
/// RFC 9228 (Delivered-To), those of delivery agents (Postfix's X-Original-To, Exim's
/// Envelope-to and Delivery-date), and those later RFCs register as trace fields:
/// Authentication-Results (RFC 8601 2), Received-SPF (RFC 7208 9.1) and ARC (RFC 8617).
const TRACE_FIELDS: [&str; 11] = [
    "Return-Path",
    "Received",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "Delivery-Date",
    "Authentication-Results",
    "Received-SPF",
    "ARC-Seal",
    "ARC-Message-Signature",
    "ARC-Authentication-Results",
];

/// Fields a submission server may add to a message that lacks them (RFC 6409 8: From and Date
/// to comply with RFC 5322 3.6, 8.2 Date, 8.3 Message-ID).
const COMPLETION_FIELDS: [&str; 3] = ["From", "Date", "Message-ID"];

/// Fields a submission server may add whether or not the message has one: RFC 6409 8.1 (Sender)
/// and 8.5 (a signature).
const SUBMISSION_FIELDS: [&str; 2] = ["Sender", "DKIM-Signature"];

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written.
    pub name: String,
    /// The value with folding removed (RFC 5322 2.2.3) and the white space around it trimmed.
    pub value: Vec<u8>,
}

impl Field {
    /// Whether the field is called `name`, in any case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The field as a line for messages.
    pub fn show(&self) -> String {
        format!("{}: {}", self.name, String::from_utf8_lossy(&self.value))
    }
}

/// The header section (up to and including the CRLF of its last field) and the body (after the
/// empty line). A message without an empty line is all header.
pub fn split(message: &[u8]) -> (&[u8], &[u8]) {
    if let Some(body) = message.strip_prefix(b"\r\n") {
        return (&[], body);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// The fields of a message's header section, in order. Lines that are neither a field nor the
/// continuation of one are passed over.
pub fn fields(message: &[u8]) -> Vec<Field> {
    let (header, _) = split(message);
    let mut out: Vec<Field> = Vec::new();
    let mut continues = false;
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            // Unfolding removes the CRLF only; the white space stays (RFC 5322 2.2.3).
            if let (true, Some(field)) = (continues, out.last_mut()) {
                field.value.extend_from_slice(line);
            }
            continue;
        }
        let name_end = line.iter().position(|&b| b == b':');
        match name_end {
            Some(colon) if colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b)) => {
                out.push(Field {
                    name: String::from_utf8_lossy(&line[..colon]).into_owned(),
                    value: line[colon + 1..].to_vec(),
                });
                continues = true;
            }
            _ => continues = false,
        }
    }
    for field in &mut out {
        field.value = field.value.trim_ascii().to_vec();
    }
    out
}

/// Whether the message's Message-ID field is exactly `id` (`<left@right>`). A field that only
/// contains it, as a substring search finds, does not count.
pub fn has_message_id(message: &[u8], id: &str) -> bool {
    fields(message)
        .iter()
        .any(|f| f.is("Message-ID") && f.value == id.as_bytes())
}

/// Why `stored` is not `sent` as it arrived, if it is not: the body must be the same octet for
/// octet, and every field the sender wrote must be there with its value (names in any case,
/// values compared unfolded). Besides those, the stored message may have trace fields, the
/// fields a submission server adds when they are missing, and vendor fields (`X-...`, RFC 6648),
/// which the RFCs leave to the server; anything else it added is a change.
pub fn differs_from_sent(sent: &[u8], stored: &[u8]) -> Option<String> {
    let (_, sent_body) = split(sent);
    let (_, stored_body) = split(stored);
    if sent_body != stored_body {
        return Some(format!(
            "the body differs from what was sent.\nsent:   {}\nstored: {}",
            crate::clients::transcript::escape_bytes(sent_body),
            crate::clients::transcript::escape_bytes(stored_body)
        ));
    }
    let sent_fields = fields(sent);
    let stored_fields = fields(stored);
    let mut unmatched: Vec<&Field> = stored_fields.iter().collect();
    for field in &sent_fields {
        let Some(at) = unmatched
            .iter()
            .position(|s| s.is(&field.name) && s.value == field.value)
        else {
            let same_name: Vec<String> = stored_fields
                .iter()
                .filter(|s| s.is(&field.name))
                .map(Field::show)
                .collect();
            return Some(format!(
                "the field `{}` the client sent is not in the stored message{}",
                field.show(),
                if same_name.is_empty() {
                    String::new()
                } else {
                    format!(", which has {}", same_name.join(" / "))
                }
            ));
        };
        unmatched.remove(at);
    }
    let sent_has = |name: &str| sent_fields.iter().any(|f| f.is(name));
    let added_legally = |field: &&Field| {
        TRACE_FIELDS.iter().any(|n| field.is(n))
            || SUBMISSION_FIELDS.iter().any(|n| field.is(n))
            || COMPLETION_FIELDS
                .iter()
                .any(|n| field.is(n) && !sent_has(n))
            || field
                .name
                .get(..2)
                .is_some_and(|x| x.eq_ignore_ascii_case("X-"))
    };
    let changes: Vec<String> = unmatched
        .into_iter()
        .filter(|f| !added_legally(f))
        .map(Field::show)
        .collect();
    (!changes.is_empty()).then(|| {
        format!(
            "the stored message has fields the client did not send, and neither trace fields \
             (RFC 5321 4.4) nor fields a submission server completes (RFC 6409 8): {}",
            changes.join(" / ")
        )
    })
}

/// The fields a server put above the message's own: those of `stored` before the first field
/// of `sent`. `None` when that first field is not in `stored`.
pub fn trace_block(sent: &[u8], stored: &[u8]) -> Option<Vec<Field>> {
    let first = fields(sent).into_iter().next()?;
    let mut stored = fields(stored);
    let at = stored
        .iter()
        .position(|f| f.is(&first.name) && f.value == first.value)?;
    stored.truncate(at);
    Some(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &[u8] = b"Message-ID: <t.1@harness.test>\r\nFrom: <a@harness.test>\r\n\
        Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nSubject: a long\r\n subject\r\n\r\n.body\r\n";

    #[test]
    fn fields_are_unfolded_and_found_in_any_case() {
        let fields = fields(b"A: 1\r\nreceived: from x\r\n\tby y\r\nnot a field\r\n continued?\r\nB:\r\n\r\nC: body\r\n");
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["A", "received", "B"]);
        assert!(fields[1].is("Received"));
        assert_eq!(fields[1].value, b"from x\tby y");
        assert_eq!(fields[2].value, b"");
    }

    #[test]
    fn split_finds_the_empty_line() {
        assert_eq!(split(b"A: 1\r\n\r\nbody"), (&b"A: 1\r\n"[..], &b"body"[..]));
        assert_eq!(split(b"\r\nbody"), (&b""[..], &b"body"[..]));
        assert_eq!(split(b"A: 1\r\n"), (&b"A: 1\r\n"[..], &b""[..]));
    }

    #[test]
    fn message_id_must_match_exactly() {
        assert!(has_message_id(SENT, "<t.1@harness.test>"));
        assert!(has_message_id(
            b"message-id:\r\n <t.1@harness.test>\r\n\r\n",
            "<t.1@harness.test>"
        ));
        assert!(!has_message_id(SENT, "<t.@harness.test>"));
        assert!(!has_message_id(
            b"Subject: <t.1@harness.test>\r\n\r\n",
            "<t.1@harness.test>"
        ));
        assert!(!has_message_id(
            b"X: y\r\n\r\nMessage-ID: <t.1@harness.test>\r\n",
            "<t.1@harness.test>"
        ));
        // Whatever other mail holds, reading it never fails.
        assert!(!has_message_id(b"\x00\xff:\r\n\r\n\x00", "<a@b>"));
        assert!(fields(b"").is_empty());
    }

    #[test]
    fn a_message_with_added_trace_and_completion_is_as_sent() {
        let mut stored = b"Return-path: <a@harness.test>\r\nDelivered-To: b@x\r\nreceived: from h\r\n\tby me; now\r\n".to_vec();
        stored.extend_from_slice(
            b"message-id: <t.1@harness.test>\r\nFrom: <a@harness.test>\r\n\
              Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nSubject: a long subject\r\nX-Spam: no\r\n\r\n.body\r\n",
        );
        assert_eq!(differs_from_sent(SENT, &stored), None);
        let trace = trace_block(SENT, &stored).unwrap();
        let names: Vec<&str> = trace.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Return-path", "Delivered-To", "received"]);

        let without_from = b"Message-ID: <t.2@h>\r\nSubject: x\r\n\r\nbody\r\n";
        let completed =
            b"Message-ID: <t.2@h>\r\nSubject: x\r\nFROM: <a@b>\r\nDate: now\r\n\r\nbody\r\n";
        assert_eq!(differs_from_sent(without_from, completed), None);
    }

    #[test]
    fn changes_are_named() {
        let body = differs_from_sent(SENT, &[&SENT[..SENT.len() - 7], b"body\r\n"].concat());
        assert!(body.unwrap().contains("body differs"));
        let value = String::from_utf8_lossy(SENT).replace("a long", "A long");
        let why = differs_from_sent(SENT, value.as_bytes()).unwrap();
        assert!(why.contains("`Subject: a long subject`"), "{why}");
        assert!(why.contains("which has Subject: A long subject"), "{why}");
        let second_from =
            String::from_utf8_lossy(SENT).replace("Subject", "From: <x@y>\r\nSubject");
        let why = differs_from_sent(SENT, second_from.as_bytes()).unwrap();
        assert!(why.contains("From: <x@y>"), "{why}");
        let other = String::from_utf8_lossy(SENT).replace("Subject", "Comments: added\r\nSubject");
        assert!(differs_from_sent(SENT, other.as_bytes()).is_some());
        assert_eq!(trace_block(SENT, b"Received: x\r\n\r\n"), None);
    }
}

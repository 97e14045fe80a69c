//! The header fields the server writes into a message: the trace fields of RFC 5321 4.4
//! (Return-Path, Received), the fields final delivery adds per recipient (Delivered-To,
//! X-Original-To), and the fields a submission server adds to complete a message (RFC 6409 8).
//! Each comes in the reference layout or in the layout of a legal variant, so that a client can
//! be shown both.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::variants::{Variant, Variants};

/// Names of the fields this module writes, in their usual spelling.
const FIELD_NAMES: [(&str, &str); 7] = [
    // (usual, as the `smtp_header_case` variant writes it)
    ("Return-Path", "Return-path"),
    ("Received", "received"),
    ("Delivered-To", "delivered-to"),
    ("X-Original-To", "X-ORIGINAL-TO"),
    ("From", "FROM"),
    ("Date", "date"),
    ("Message-ID", "Message-Id"),
];

/// The spelling of a field name under `variants`: the usual one, or another case under
/// [`Variant::SmtpHeaderCase`] (field names are case-insensitive: RFC 5322 1.2.2).
pub fn field_name(variants: &Variants, name: &'static str) -> &'static str {
    if !variants.has(Variant::SmtpHeaderCase) {
        return name;
    }
    FIELD_NAMES
        .iter()
        .find(|(usual, _)| *usual == name)
        .map_or(name, |(_, other)| other)
}

/// The `Return-Path:` line final delivery puts on top of a message (RFC 5321 4.4).
pub fn return_path(variants: &Variants, sender: &str) -> String {
    format!("{}: <{sender}>\r\n", field_name(variants, "Return-Path"))
}

/// What a `Received:` field records about one hop.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    /// The name the client gave in EHLO or HELO.
    pub helo: &'a str,
    /// The client's address.
    pub peer: IpAddr,
    /// This server's host name.
    pub hostname: &'a str,
    /// The RFC 3848 / RFC 6531 protocol keyword (`ESMTPSA`, ...).
    pub protocol: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// The reverse path.
    pub sender: &'a str,
    /// The one recipient, when the message has exactly one.
    pub recipient: Option<&'a str>,
    /// When the message arrived, as an RFC 5322 date-time.
    pub date: &'a str,
}

/// The `Received:` field for a hop: the reference layout, or under
/// [`Variant::SmtpTraceLayout`] an Exim-like one with more clauses and comments.
pub fn received(variants: &Variants, hop: &Hop<'_>) -> String {
    let name = field_name(variants, "Received");
    let literal = match hop.peer {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    let Hop {
        helo,
        hostname,
        protocol,
        id,
        sender,
        date,
        ..
    } = hop;
    let for_clause = hop
        .recipient
        .map(|r| format!("\r\n\tfor <{r}>"))
        .unwrap_or_default();
    if variants.has(Variant::SmtpTraceLayout) {
        // Every clause of RFC 5321 4.4 and a comment or two, one per line, as Exim writes them.
        return format!(
            "{name}: from {literal} (helo={helo})\r\n\tby {hostname} with {} (reference-server)\r\n\
             \t(envelope-from <{sender}>)\r\n\tid {id}{for_clause};\r\n\t{date}\r\n",
            protocol.to_ascii_lowercase()
        );
    }
    format!(
        "{name}: from {helo} ({literal})\r\n\tby {hostname} (reference-server) with {protocol} id {id}{for_clause};\r\n\t{date}\r\n"
    )
}

/// The fields final delivery adds to one local recipient's copy under
/// [`Variant::SmtpTraceLayout`], as Postfix's local delivery does: `X-Original-To:` (the
/// recipient as the client wrote it) and `Delivered-To:` (the mailbox it reached, RFC 9228).
/// Empty without the variant.
pub fn delivery_fields(variants: &Variants, written: &str, account: &str) -> String {
    if !variants.has(Variant::SmtpTraceLayout) {
        return String::new();
    }
    format!(
        "{}: {written}\r\n{}: {account}\r\n",
        field_name(variants, "X-Original-To"),
        field_name(variants, "Delivered-To")
    )
}

/// `message` with `fields` put right below its first header field when that is Return-Path
/// (where final delivery puts its own fields), else on top.
pub fn below_return_path<'a>(message: &'a [u8], fields: &str) -> Cow<'a, [u8]> {
    if fields.is_empty() {
        return Cow::Borrowed(message);
    }
    let at = if starts_with_field(message, "Return-Path") {
        field_end(message, 0)
    } else {
        0
    };
    let mut copy = Vec::with_capacity(message.len() + fields.len());
    copy.extend_from_slice(&message[..at]);
    copy.extend_from_slice(fields.as_bytes());
    copy.extend_from_slice(&message[at..]);
    Cow::Owned(copy)
}

/// What a submission server knows when it completes a message.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    /// The authenticated address, for a missing From.
    pub author: &'a str,
    /// When the message arrived, as an RFC 5322 date-time, for a missing Date.
    pub date: &'a str,
    /// The queue id, part of a new Message-ID.
    pub id: &'a str,
    /// This server's host name, the right side of a new Message-ID.
    pub hostname: &'a str,
}

/// The message with the From, Date and Message-ID fields it lacks added at the end of its
/// header section, as Postfix's cleanup does (RFC 6409 8, 8.2, 8.3). A message with no header
/// section gets one.
pub fn complete(variants: &Variants, message: &[u8], with: &Completion<'_>) -> Vec<u8> {
    let end = header_end(message);
    let header = &message[..end];
    let mut added = String::new();
    let missing = |name: &str| !fields(header).any(|(n, _)| n.eq_ignore_ascii_case(name));
    if missing("From") {
        added.push_str(&format!(
            "{}: <{}>\r\n",
            field_name(variants, "From"),
            with.author
        ));
    }
    if missing("Date") {
        added.push_str(&format!(
            "{}: {}\r\n",
            field_name(variants, "Date"),
            with.date
        ));
    }
    if missing("Message-ID") {
        added.push_str(&format!(
            "{}: <{}.{:08x}@{}>\r\n",
            field_name(variants, "Message-ID"),
            with.id,
            fastrand::u32(..),
            with.hostname
        ));
    }
    let mut out = Vec::with_capacity(message.len() + added.len() + 2);
    out.extend_from_slice(header);
    out.extend_from_slice(added.as_bytes());
    // Text that is no header field starts the body; a header section ends with an empty line.
    if !message[end..].starts_with(b"\r\n") && !added.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&message[end..]);
    out
}

/// Whether `message` starts with a field called `name` (case-insensitively).
fn starts_with_field(message: &[u8], name: &str) -> bool {
    message.len() > name.len()
        && message[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && message[name.len()] == b':'
}

/// Where the field starting at `start` ends: after the CRLF not followed by folding white space.
fn field_end(message: &[u8], start: usize) -> usize {
    let mut at = start;
    while let Some(pos) = message[at..].windows(2).position(|w| w == b"\r\n") {
        at += pos + 2;
        if !matches!(message.get(at), Some(b' ' | b'\t')) {
            return at;
        }
    }
    message.len()
}

/// The length of the header section: its fields, up to the empty line or the first line that is
/// no field (the empty line itself is not included).
fn header_end(message: &[u8]) -> usize {
    let mut at = 0;
    while at < message.len() && !message[at..].starts_with(b"\r\n") {
        let line_end = message[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(message.len(), |p| at + p);
        if !is_field_line(&message[at..line_end]) {
            break;
        }
        at = field_end(message, at);
    }
    at
}

/// Whether a line starts a header field: a name of printable characters other than the colon,
/// then a colon (RFC 5322 2.2).
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b))
}

/// The names and raw values of the fields of a header section.
fn fields(header: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= header.len() {
            return None;
        }
        let start = at;
        at = field_end(header, start);
        let field = &header[start..at];
        let colon = field.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&field[..colon]).ok()?;
        Some((name, &field[colon + 1..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(list: &[Variant]) -> Variants {
        list.iter().copied().collect()
    }

    const COMPLETION: Completion<'static> = Completion {
        author: "alice@example.test",
        date: "Tue, 3 Mar 2026 09:00:00 +0000",
        id: "QID",
        hostname: "mail.example.test",
    };

    #[test]
    fn names_change_case_only_under_the_variant() {
        assert_eq!(field_name(&Variants::default(), "Received"), "Received");
        let case = on(&[Variant::SmtpHeaderCase]);
        assert_eq!(field_name(&case, "Return-Path"), "Return-path");
        assert_eq!(return_path(&case, "a@b"), "Return-path: <a@b>\r\n");
        for (usual, other) in FIELD_NAMES {
            assert_ne!(usual, other);
            assert!(usual.eq_ignore_ascii_case(other));
        }
    }

    #[test]
    fn received_layouts_carry_the_same_facts() {
        let hop = Hop {
            helo: "client.test",
            peer: "127.0.0.9".parse().unwrap(),
            hostname: "mail.example.test",
            protocol: "ESMTPSA",
            id: "QID",
            sender: "x@sender.test",
            recipient: Some("bob@example.test"),
            date: "Tue, 3 Mar 2026 09:00:00 +0000",
        };
        let usual = received(&Variants::default(), &hop);
        assert!(
            usual.starts_with("Received: from client.test ([127.0.0.9])\r\n\tby mail.example.test"),
            "{usual}"
        );
        let other = received(
            &on(&[Variant::SmtpTraceLayout, Variant::SmtpHeaderCase]),
            &hop,
        );
        assert!(
            other.starts_with("received: from [127.0.0.9] (helo=client.test)\r\n"),
            "{other}"
        );
        for layout in [&usual, &other] {
            assert!(layout.ends_with(";\r\n\tTue, 3 Mar 2026 09:00:00 +0000\r\n"));
            assert!(layout.contains("for <bob@example.test>"), "{layout}");
            assert!(layout.to_ascii_lowercase().contains("esmtpsa"), "{layout}");
        }
        assert!(other.contains("(envelope-from <x@sender.test>)"), "{other}");
        assert!(other.lines().count() >= 5, "{other}");
    }

    #[test]
    fn delivery_fields_go_below_return_path() {
        let layout = on(&[Variant::SmtpTraceLayout]);
        let fields = delivery_fields(&layout, "Postmaster", "alice@example.test");
        assert_eq!(
            fields,
            "X-Original-To: Postmaster\r\nDelivered-To: alice@example.test\r\n"
        );
        assert!(delivery_fields(&Variants::default(), "a", "b").is_empty());
        let message = b"Return-Path:\r\n <x@y>\r\nReceived: z\r\n\r\nbody\r\n";
        assert_eq!(
            &*below_return_path(message, "D: 1\r\n"),
            b"Return-Path:\r\n <x@y>\r\nD: 1\r\nReceived: z\r\n\r\nbody\r\n"
        );
        assert_eq!(
            &*below_return_path(b"Received: z\r\n\r\n", "D: 1\r\n"),
            b"D: 1\r\nReceived: z\r\n\r\n"
        );
        assert!(matches!(below_return_path(message, ""), Cow::Borrowed(_)));
    }

    #[test]
    fn completion_adds_only_what_is_missing() {
        let plain = Variants::default();
        let done = complete(&plain, b"Subject: x\r\n\r\nbody\r\n", &COMPLETION);
        let text = String::from_utf8(done).unwrap();
        assert!(
            text.starts_with(
                "Subject: x\r\nFrom: <alice@example.test>\r\nDate: Tue, 3 Mar 2026 09:00:00 +0000\r\nMessage-ID: <QID."
            ),
            "{text}"
        );
        assert!(
            text.ends_with("@mail.example.test>\r\n\r\nbody\r\n"),
            "{text}"
        );

        let whole = b"from: a@b\r\nDATE: x\r\nmessage-id:\r\n <m@b>\r\n\r\nbody\r\n";
        assert_eq!(complete(&plain, whole, &COMPLETION), whole);

        // No header section at all: the added fields make one, and the text stays the body.
        let bare = complete(
            &on(&[Variant::SmtpHeaderCase]),
            b"just text\r\n",
            &COMPLETION,
        );
        let bare = String::from_utf8(bare).unwrap();
        assert!(
            bare.starts_with("FROM: <alice@example.test>\r\ndate: "),
            "{bare}"
        );
        assert!(bare.ends_with(">\r\n\r\njust text\r\n"), "{bare}");
        assert!(bare.contains("Message-Id: <QID."), "{bare}");

        // A header section that runs to the end of the message.
        let headers_only = complete(
            &plain,
            b"Subject: x\r\nFrom: a@b\r\nDate: d\r\n",
            &COMPLETION,
        );
        let headers_only = String::from_utf8(headers_only).unwrap();
        assert!(headers_only.ends_with(">\r\n\r\n"), "{headers_only}");
    }
}

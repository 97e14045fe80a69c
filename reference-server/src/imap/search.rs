//! SEARCH keys (RFC 3501 6.4.4, MODSEQ from RFC 7162 3.1.5) evaluated against one message.
//!
//! String keys are case-insensitive substring matches on decoded text: RFC 2047 encoded words
//! in header fields, quoted-printable/base64 and the declared charset in text bodies.

use std::cell::OnceCell;

use imap_codec::imap_types::{datetime::NaiveDate, search::SearchKey};
use mail_parser::{
    DateTime, HeaderValue,
    decoders::{
        base64::base64_decode, charsets::map::charset_decoder,
        quoted_printable::quoted_printable_decode,
    },
    parsers::MessageStream,
};

use super::message::{MimePart, PartKind, field, header_fields, unfold};
use super::selected::set_contains;

/// What SEARCH looks at in one message.
pub struct SearchMessage<'a> {
    /// Message sequence number.
    pub seq: u32,
    /// Unique identifier.
    pub uid: u32,
    /// Flags and keywords, including `\Recent` when the message is recent for this session.
    pub flags: &'a [String],
    /// Internal date, Unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// CONDSTORE mod-sequence.
    pub modseq: u64,
    /// The raw message; needed only when [`needs_octets`] says so.
    pub octets: Option<&'a [u8]>,
}

/// True when `key` needs the message octets (header, body, text and Date-header keys).
pub fn needs_octets(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_octets),
        SearchKey::Not(key) => needs_octets(key),
        SearchKey::Or(a, b) => needs_octets(a) || needs_octets(b),
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        SearchKey::SequenceSet(_)
        | SearchKey::All
        | SearchKey::Answered
        | SearchKey::Before(_)
        | SearchKey::Deleted
        | SearchKey::Draft
        | SearchKey::Flagged
        | SearchKey::Keyword(_)
        | SearchKey::Larger(_)
        | SearchKey::New
        | SearchKey::Old
        | SearchKey::On(_)
        | SearchKey::Recent
        | SearchKey::Seen
        | SearchKey::Since(_)
        | SearchKey::Smaller(_)
        | SearchKey::Uid(_)
        | SearchKey::Unanswered
        | SearchKey::Undeleted
        | SearchKey::Undraft
        | SearchKey::Unflagged
        | SearchKey::Unkeyword(_)
        | SearchKey::Unseen
        | SearchKey::ModSequence { .. } => false,
    }
}

/// Does the message match? `last_seq`/`last_uid` resolve `*` in sequence sets. BEFORE/ON/SINCE
/// compare the internal date's UTC day; SENTBEFORE/SENTON/SENTSINCE the Date: header's own day,
/// falling back to the internal date when the header is missing or unparseable. A key that
/// needs octets does not match a message given without them.
pub fn matches(key: &SearchKey<'_>, m: &SearchMessage<'_>, last_seq: u32, last_uid: u32) -> bool {
    let lazy = Lazy {
        octets: m.octets,
        headers: OnceCell::new(),
        body: OnceCell::new(),
    };
    eval(key, m, &lazy, last_seq, last_uid)
}

/// The decoded message, computed at most once per [`matches`] call and only if a key needs it.
struct Lazy<'a> {
    octets: Option<&'a [u8]>,
    /// (lower-case name, lower-case decoded value) of each top-level header field.
    headers: OnceCell<Vec<(String, String)>>,
    /// Lower-case decoded text of the body's text parts and encapsulated headers.
    body: OnceCell<String>,
}

impl Lazy<'_> {
    fn headers(&self) -> &[(String, String)] {
        self.headers
            .get_or_init(|| self.octets.map(decoded_headers).unwrap_or_default())
    }

    fn body(&self) -> &str {
        self.body.get_or_init(|| {
            let mut text = String::new();
            if let Some(o) = self.octets {
                body_text(&MimePart::parse(o), o, &mut text);
            }
            text.to_lowercase()
        })
    }

    fn header_contains(&self, name: &str, needle: &str) -> bool {
        self.headers()
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.contains(needle))
    }
}

fn eval(
    key: &SearchKey<'_>,
    m: &SearchMessage<'_>,
    lazy: &Lazy<'_>,
    last_seq: u32,
    last_uid: u32,
) -> bool {
    let flag = |name: &str| m.flags.iter().any(|f| f.eq_ignore_ascii_case(name));
    let needle = |s: &[u8]| String::from_utf8_lossy(s).to_lowercase();
    let has_octets = lazy.octets.is_some();
    match key {
        SearchKey::And(keys) => keys
            .as_ref()
            .iter()
            .all(|k| eval(k, m, lazy, last_seq, last_uid)),
        SearchKey::Not(k) => !eval(k, m, lazy, last_seq, last_uid),
        SearchKey::Or(a, b) => {
            eval(a, m, lazy, last_seq, last_uid) || eval(b, m, lazy, last_seq, last_uid)
        }
        SearchKey::SequenceSet(set) => set_contains(set, m.seq, last_seq),
        SearchKey::Uid(set) => set_contains(set, m.uid, last_uid),
        SearchKey::All => true,
        SearchKey::Answered => flag("\\Answered"),
        SearchKey::Unanswered => !flag("\\Answered"),
        SearchKey::Deleted => flag("\\Deleted"),
        SearchKey::Undeleted => !flag("\\Deleted"),
        SearchKey::Draft => flag("\\Draft"),
        SearchKey::Undraft => !flag("\\Draft"),
        SearchKey::Flagged => flag("\\Flagged"),
        SearchKey::Unflagged => !flag("\\Flagged"),
        SearchKey::Seen => flag("\\Seen"),
        SearchKey::Unseen => !flag("\\Seen"),
        SearchKey::Recent => flag("\\Recent"),
        SearchKey::Old => !flag("\\Recent"),
        SearchKey::New => flag("\\Recent") && !flag("\\Seen"),
        SearchKey::Keyword(k) => flag(k.inner()),
        SearchKey::Unkeyword(k) => !flag(k.inner()),
        SearchKey::Larger(n) => m.size > u64::from(*n),
        SearchKey::Smaller(n) => m.size < u64::from(*n),
        SearchKey::ModSequence { modseq, .. } => m.modseq >= *modseq,
        SearchKey::Before(d) => internal_day(m.internal_date) < key_day(d),
        SearchKey::On(d) => internal_day(m.internal_date) == key_day(d),
        SearchKey::Since(d) => internal_day(m.internal_date) >= key_day(d),
        SearchKey::SentBefore(d) => has_octets && sent_day(lazy, m) < key_day(d),
        SearchKey::SentOn(d) => has_octets && sent_day(lazy, m) == key_day(d),
        SearchKey::SentSince(d) => has_octets && sent_day(lazy, m) >= key_day(d),
        SearchKey::Bcc(s) => lazy.header_contains("bcc", &needle(s.as_ref())),
        SearchKey::Cc(s) => lazy.header_contains("cc", &needle(s.as_ref())),
        SearchKey::From(s) => lazy.header_contains("from", &needle(s.as_ref())),
        SearchKey::To(s) => lazy.header_contains("to", &needle(s.as_ref())),
        SearchKey::Subject(s) => lazy.header_contains("subject", &needle(s.as_ref())),
        SearchKey::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref());
            lazy.header_contains(&name, &needle(value.as_ref()))
        }
        SearchKey::Body(s) => has_octets && lazy.body().contains(&needle(s.as_ref())),
        SearchKey::Text(s) => {
            let s = needle(s.as_ref());
            has_octets
                && (lazy.headers().iter().any(|(n, v)| {
                    n.contains(&s) || v.contains(&s) || format!("{n}: {v}").contains(&s)
                }) || lazy.body().contains(&s))
        }
    }
}

/// A calendar day as (year, month, day), ordered chronologically.
type Day = (i32, u8, u8);

fn key_day(date: &NaiveDate) -> Day {
    // chrono is not ours to name; its Display form is ISO 8601, and IMAP dates are years
    // 0 to 9999.
    let text = date.as_ref().to_string();
    let mut parts = text.split('-').map(|p| p.parse::<i32>().unwrap_or(0));
    let year = parts.next().unwrap_or(0);
    let month = parts.next().unwrap_or(0);
    let day = parts.next().unwrap_or(0);
    (
        year,
        u8::try_from(month).unwrap_or(0),
        u8::try_from(day).unwrap_or(0),
    )
}

/// The UTC day of a Unix time; times beyond what `time` represents clamp to its range.
fn internal_day(secs: i64) -> Day {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => (t.year(), u8::from(t.month()), t.day()),
        Err(_) if secs < 0 => (i32::MIN, 1, 1),
        Err(_) => (i32::MAX, 12, 31),
    }
}

/// The Date: header's day in its own zone (RFC 3501: time and timezone disregarded).
fn sent_day(lazy: &Lazy<'_>, m: &SearchMessage<'_>) -> Day {
    lazy.octets
        .and_then(|o| {
            let fields = header_fields(o);
            let value = unfold(field(&fields, "date")?.value);
            DateTime::parse_rfc822(&String::from_utf8_lossy(&value))
        })
        .filter(|d| (1..=12).contains(&d.month) && (1..=31).contains(&d.day))
        .map_or_else(
            || internal_day(m.internal_date),
            |d| (i32::from(d.year), d.month, d.day),
        )
}

/// Each field of a header block (or of the message it starts), name and RFC 2047-decoded value, both lower-cased.
fn decoded_headers(header: &[u8]) -> Vec<(String, String)> {
    header_fields(header)
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name).to_lowercase(),
                decode_unstructured(f.value).to_lowercase(),
            )
        })
        .collect()
}

/// A header value with encoded words decoded and folding removed.
fn decode_unstructured(value: &[u8]) -> String {
    let mut input = value.to_vec();
    input.extend_from_slice(b"\r\n");
    match MessageStream::new(&input).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

/// Appends the searchable text of a body: decoded text parts, and the headers and text of
/// encapsulated messages. Other parts (images, archives) are not text to search.
fn body_text(part: &MimePart, octets: &[u8], out: &mut String) {
    match &part.kind {
        PartKind::Multi(children) => {
            for child in children {
                body_text(child, octets, out);
            }
        }
        PartKind::Message(inner) => {
            for (name, value) in decoded_headers(inner.header(octets)) {
                out.push_str(&name);
                out.push_str(": ");
                out.push_str(&value);
                out.push('\n');
            }
            body_text(inner, octets, out);
        }
        PartKind::Leaf if part.content.r#type == "text" => {
            let body = part.body(octets);
            let fields = header_fields(part.header(octets));
            let encoding = field(&fields, "content-transfer-encoding")
                .map(|f| unfold(f.value).to_ascii_lowercase())
                .unwrap_or_default();
            let decoded = match encoding.as_slice() {
                b"quoted-printable" => quoted_printable_decode(body),
                b"base64" => base64_decode(body),
                _ => None,
            }
            .unwrap_or_else(|| body.to_vec());
            let text = part
                .content
                .param("charset")
                .and_then(|c| charset_decoder(c.as_bytes()))
                .map_or_else(
                    || String::from_utf8_lossy(&decoded).into_owned(),
                    |decode| decode(&decoded),
                );
            out.push_str(&text);
            out.push('\n');
        }
        PartKind::Leaf => {}
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};

    use super::*;
    use crate::imap::message::tests::{FORWARD, MIXED, SINGLE, crlf};

    /// 2024-03-05 23:30:00 UTC.
    const MARCH_5_LATE: i64 = 1_709_681_400;

    /// The criteria of `SEARCH <criteria>`, parsed by imap-codec as a client would send them.
    /// A quoted string with non-ASCII text is sent as a literal, as IMAP4rev1 requires.
    fn key(criteria: &str) -> SearchKey<'static> {
        let mut command = String::from("A SEARCH ");
        let mut rest = criteria;
        while let Some(open) = rest.find('"') {
            let close = open + 1 + rest[open + 1..].find('"').unwrap();
            let content = &rest[open + 1..close];
            command.push_str(&rest[..open]);
            if content.is_ascii() {
                command.push_str(&rest[open..=close]);
            } else {
                command.push_str(&format!("{{{}+}}\r\n{content}", content.len()));
            }
            rest = &rest[close + 1..];
        }
        command.push_str(rest);
        command.push_str("\r\n");
        // Leaked so the parsed key can borrow it for 'static; tests only.
        let command: &'static str = command.leak();
        let (_, command) = CommandCodec::default().decode(command.as_bytes()).unwrap();
        match command.body {
            CommandBody::Search { criteria, .. } => {
                let mut keys = criteria.into_inner();
                if keys.len() == 1 {
                    keys.remove(0)
                } else {
                    SearchKey::And(keys.try_into().unwrap())
                }
            }
            other => panic!("{other:?}"),
        }
    }

    fn message<'a>(octets: &'a [u8], flags: &'a [String]) -> SearchMessage<'a> {
        SearchMessage {
            seq: 3,
            uid: 30,
            flags,
            internal_date: MARCH_5_LATE,
            size: 1000,
            modseq: 7,
            octets: Some(octets),
        }
    }

    fn flags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Asserts which of `criteria` match `m` (last message 5, last UID 50).
    fn check(m: &SearchMessage<'_>, matching: &[&str], not_matching: &[&str]) {
        for c in matching {
            assert!(matches(&key(c), m, 5, 50), "{c} should match");
        }
        for c in not_matching {
            assert!(!matches(&key(c), m, 5, 50), "{c} should not match");
        }
    }

    #[test]
    fn flag_keys() {
        let set = flags(&["\\Seen", "\\FLAGGED", "$Label1", "\\Recent"]);
        let m = message(b"", &set);
        check(
            &m,
            &[
                "ALL",
                "SEEN",
                "FLAGGED",
                "RECENT",
                "UNANSWERED",
                "UNDELETED",
                "UNDRAFT",
                "KEYWORD $label1",
                "UNKEYWORD $Other",
            ],
            &[
                "UNSEEN",
                "UNFLAGGED",
                "OLD",
                "NEW",
                "ANSWERED",
                "DELETED",
                "DRAFT",
                "KEYWORD $Other",
                "UNKEYWORD $LABEL1",
            ],
        );
        let set = flags(&["\\Answered", "\\Deleted", "\\Draft", "\\Recent"]);
        check(
            &message(b"", &set),
            &["ANSWERED", "DELETED", "DRAFT", "NEW", "UNSEEN", "RECENT"],
            &["UNANSWERED", "UNDELETED", "UNDRAFT", "OLD", "SEEN"],
        );
        check(&message(b"", &[]), &["OLD", "UNSEEN"], &["NEW", "RECENT"]);
    }

    #[test]
    fn size_modseq_and_logic_keys() {
        let m = message(b"", &[]);
        check(
            &m,
            &[
                "LARGER 999",
                "SMALLER 1001",
                "MODSEQ 7",
                "MODSEQ 1",
                "NOT LARGER 1000",
                "OR LARGER 5000 SMALLER 5000",
                "(LARGER 10 SMALLER 2000)",
                "LARGER 10 SMALLER 2000",
            ],
            &[
                "LARGER 1000",
                "SMALLER 1000",
                "MODSEQ 8",
                "NOT ALL",
                "OR LARGER 5000 SMALLER 10",
                "(LARGER 10 SMALLER 20)",
                "LARGER 10 SMALLER 20",
            ],
        );
    }

    #[test]
    fn sequence_and_uid_sets() {
        let m = message(b"", &[]);
        check(
            &m,
            &[
                "3",
                "1:3",
                "3:1",
                "1,3",
                "2:*",
                "*:3",
                "1:4294967295",
                "4294967295:2",
                "UID 30",
                "UID 1:*",
                "UID 50:30",
                "UID 10,30:31",
            ],
            &[
                "4", "4:*", "*", "1:2,4", "UID 31:*", "UID 3", "UID *", "NOT 3",
            ],
        );
        // `*` is the last message, so 5:* includes the last message even beyond it.
        let last = SearchMessage {
            seq: 5,
            uid: 50,
            ..message(b"", &[])
        };
        check(
            &last,
            &["*", "9:*", "UID *", "UID 99:*"],
            &["1:4", "UID 1:49"],
        );
    }

    #[test]
    fn internal_date_keys_compare_utc_days() {
        let m = message(b"", &[]);
        check(
            &m,
            &[
                "ON 5-Mar-2024",
                "SINCE 5-Mar-2024",
                "SINCE 1-Jan-2000",
                "BEFORE 6-Mar-2024",
            ],
            &[
                "ON 6-Mar-2024",
                "SINCE 6-Mar-2024",
                "BEFORE 5-Mar-2024",
                "ON 4-Mar-2024",
            ],
        );
        let far = SearchMessage {
            internal_date: i64::MAX,
            ..message(b"", &[])
        };
        check(&far, &["SINCE 1-Jan-9999"], &["BEFORE 1-Jan-9999"]);
    }

    #[test]
    fn sent_date_keys_use_the_date_header_in_its_own_zone() {
        // Wed, 6 Mar 2024 23:30:00 -0800 is 7 March in UTC, but it was sent on 6 March.
        let forward = crlf(FORWARD);
        check(
            &message(&forward, &[]),
            &[
                "SENTON 6-Mar-2024",
                "SENTSINCE 6-Mar-2024",
                "SENTBEFORE 7-Mar-2024",
            ],
            &[
                "SENTON 7-Mar-2024",
                "SENTSINCE 7-Mar-2024",
                "SENTBEFORE 6-Mar-2024",
            ],
        );
        // No Date: header, so the internal date stands in.
        let undated = crlf("Subject: x\n\nbody\n");
        check(
            &message(&undated, &[]),
            &["SENTON 5-Mar-2024"],
            &["SENTON 6-Mar-2024", "SENTBEFORE 5-Mar-2024"],
        );
        // Without octets, keys that need them do not match.
        let bare = SearchMessage {
            octets: None,
            ..message(b"", &[])
        };
        check(
            &bare,
            &["NOT SENTON 5-Mar-2024", "NOT BODY x"],
            &["SENTON 5-Mar-2024", "TEXT x"],
        );
    }

    #[test]
    fn address_and_subject_keys_match_decoded_text() {
        let mixed = crlf(MIXED);
        check(
            &message(&mixed, &[]),
            &[
                "FROM \"j\u{f6}rg\"",
                "FROM JOERG@EXAMPLE.ORG",
                "TO alice",
                "TO bob@example.net",
                "CC carol",
                "CC \"Dave D.\"",
                "SUBJECT \"GR\u{dc}\u{df}E AUS\"",
                "SUBJECT berlin",
            ],
            &[
                "FROM alice",
                "TO carol",
                "CC alice",
                "BCC alice",
                "SUBJECT R3LDvMOfZSBh",
                "SUBJECT lunch",
            ],
        );
        let bcc = crlf("Bcc: Secret <hidden@example.com>\nSubject: one\n two\n\n");
        check(
            &message(&bcc, &[]),
            &["BCC hidden", "BCC secret", "SUBJECT \"one two\""],
            &["BCC alice", "FROM hidden"],
        );
    }

    #[test]
    fn header_key() {
        let mixed = crlf(MIXED);
        check(
            &message(&mixed, &[]),
            &[
                "HEADER Message-ID 1234@",
                "HEADER message-id \"\"",
                "HEADER MIME-VERSION 1.0",
                "HEADER In-Reply-To ABCD",
            ],
            &[
                "HEADER X-Missing \"\"",
                "HEADER Message-ID 9999@",
                "HEADER Content-Type pdf",
            ],
        );
    }

    #[test]
    fn body_and_text_keys_search_decoded_text_parts() {
        let mixed = crlf(MIXED);
        check(
            &message(&mixed, &[]),
            &[
                "BODY welt",
                "BODY \"gr\u{fc}\u{df}e, welt\"",
                "BODY \"zweite zeile\"",
                "BODY &szlig;",
                "TEXT welt",
                "TEXT berlin",
                "TEXT example.org",
            ],
            &[
                "BODY C3=BC",
                "BODY PDF-1.4",
                "BODY JVBERi0",
                "BODY berlin",
                "TEXT nowhere",
            ],
        );
        let forward = crlf(FORWARD);
        check(
            &message(&forward, &[]),
            &[
                "BODY noon",
                "BODY \"see below\"",
                "BODY lunch@example.net",
                "TEXT fwd",
            ],
            &["BODY fwd", "BODY carol@example.com>"],
        );
        let single = crlf(SINGLE);
        check(
            &message(&single, &[]),
            &["BODY hello", "TEXT WORLD", "TEXT plain", "TEXT subject"],
            &["BODY plain", "BODY subject"],
        );
        let latin1 = crlf(
            "Content-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: base64\n\nR3L832UgYXVzIEv2bG4K\n",
        );
        check(
            &message(&latin1, &[]),
            &[
                "BODY \"gr\u{fc}\u{df}e aus k\u{f6}ln\"",
                "TEXT \"K\u{d6}LN\"",
            ],
            &["BODY R3L8"],
        );
    }

    #[test]
    fn needs_octets_only_for_content_keys() {
        for c in [
            "BODY x",
            "TEXT x",
            "FROM x",
            "TO x",
            "CC x",
            "BCC x",
            "SUBJECT x",
            "HEADER X y",
            "SENTON 1-Jan-2024",
            "SENTBEFORE 1-Jan-2024",
            "SENTSINCE 1-Jan-2024",
            "NOT BODY x",
            "OR SEEN BODY x",
            "(SEEN (FROM x))",
        ] {
            assert!(needs_octets(&key(c)), "{c}");
        }
        for c in [
            "ALL",
            "SEEN",
            "1:*",
            "UID 1",
            "ON 1-Jan-2024",
            "LARGER 1",
            "MODSEQ 1",
            "NOT KEYWORD x",
            "OR NEW OLD",
            "(DELETED RECENT)",
        ] {
            assert!(!needs_octets(&key(c)), "{c}");
        }
    }

    #[test]
    fn malformed_messages_do_not_panic() {
        let keys = [
            "BODY x",
            "TEXT x",
            "FROM x",
            "HEADER X \"\"",
            "SENTON 1-Jan-2024",
            "SUBJECT x",
        ];
        let cases: &[&[u8]] = &[
            b"",
            b"Date: 99 Foo 99999 99:99:99 +9999\r\n\r\n",
            b"Subject: =?x?q?=ZZ?= =?utf-8?b?####?=\r\n\r\n",
            b"Content-Type: text/plain; charset=nonsense\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\xff",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\xff=",
            b"\xff\xfe: \x00\r\n\r\n\xc3",
        ];
        for case in cases {
            for k in keys {
                let _ = matches(&key(k), &message(case, &[]), 5, 50);
            }
        }
    }
}

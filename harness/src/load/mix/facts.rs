//! What all imap-mix clients together know to be true of the shared mailboxes: each UID's
//! size, date and body as first seen, the highest UID any of them was told of, UIDVALIDITY,
//! and the exact bytes of every message they APPENDed. Every FETCH any client receives is held
//! to it.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};

use super::model::Finding;
use crate::clients::imap::{Fetch, Value};

/// The header every appended message carries, naming it uniquely.
pub const TOKEN_HEADER: &str = "X-Harness-Mix";

#[derive(Debug, Default)]
struct Message {
    size: Option<u64>,
    date: Option<String>,
    body: Option<u64>,
    token: Option<String>,
}

#[derive(Debug, Default)]
struct Mailbox {
    uidvalidity: Option<u32>,
    max_uid: u32,
    messages: HashMap<u32, Message>,
}

/// The facts, behind the driver's lock.
#[derive(Debug, Default)]
pub struct Facts {
    mailboxes: HashMap<String, Mailbox>,
    /// Token to (length, hash) of the message as APPENDed.
    appended: HashMap<String, (usize, u64)>,
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The token of a message this harness appended: the value of its `X-Harness-Mix` header.
pub fn token_of(message: &[u8]) -> Option<String> {
    // Line ends as sent or, from a server that altered them, bare LF: the token still names
    // the message, so that the alteration is reported.
    let header_end = message
        .windows(2)
        .position(|w| w == b"\n\n" || w == b"\n\r")
        .unwrap_or(message.len());
    let head = std::str::from_utf8(&message[..header_end]).ok()?;
    head.split('\n').find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case(TOKEN_HEADER)
            .then(|| value.trim().to_owned())
    })
}

impl Facts {
    /// Records a message about to be APPENDed.
    pub fn appending(&mut self, token: &str, message: &[u8]) {
        self.appended
            .insert(token.to_owned(), (message.len(), digest(message)));
    }

    /// The highest UID any client has been told of in `mailbox`: a message added after this
    /// moment must get a higher one.
    pub fn floor(&self, mailbox: &str) -> u32 {
        self.mailboxes.get(mailbox).map_or(0, |m| m.max_uid)
    }

    /// UIDVALIDITY as a SELECT, EXAMINE or STATUS reported it: it must never change, as no
    /// client deletes or renames the mailboxes.
    pub fn uidvalidity(&mut self, mailbox: &str, value: u32) -> Option<Finding> {
        let facts = self.mailboxes.entry(mailbox.to_owned()).or_default();
        match facts.uidvalidity {
            None => {
                facts.uidvalidity = Some(value);
                None
            }
            Some(first) if first != value => Some(Finding::must(
                "uidvalidity-changed",
                "RFC 3501 2.3.1.1",
                format!(
                    "UIDVALIDITY of {mailbox} is {value}, was {first}; nothing deleted or renamed it"
                ),
            )),
            Some(_) => None,
        }
    }

    /// UIDs the server gave new messages (APPENDUID, COPYUID), each of which must be above
    /// `floor`, the highest UID known before the command was sent.
    pub fn assigned(
        &mut self,
        mailbox: &str,
        uids: impl IntoIterator<Item = u32>,
        floor: u32,
        command: &str,
    ) -> Option<Finding> {
        let facts = self.mailboxes.entry(mailbox.to_owned()).or_default();
        let mut low = Vec::new();
        for uid in uids {
            if uid <= floor {
                low.push(uid);
            }
            facts.max_uid = facts.max_uid.max(uid);
        }
        (!low.is_empty()).then(|| {
            Finding::must(
                "uid-not-ascending",
                "RFC 3501 2.3.1.1",
                format!(
                    "{command} gave the new message(s) in {mailbox} UID {}, not above {floor}, \
                     which an earlier message already had",
                    join(&low)
                ),
            )
        })
    }

    /// UIDNEXT from STATUS, sent after the highest UID known was `floor`.
    pub fn uidnext(&mut self, mailbox: &str, value: u32, floor: u32) -> Option<Finding> {
        (value <= floor).then(|| {
            Finding::must(
                "uidnext-low",
                "RFC 3501 2.3.1.1",
                format!("STATUS {mailbox} gave UIDNEXT {value}, but UID {floor} already exists"),
            )
        })
    }

    /// A FETCH response for `uid` in `mailbox`: size, date and body must be what they were
    /// when first seen, and the body of a message this harness appended must be what it sent.
    pub fn fetched(&mut self, mailbox: &str, uid: u32, fetch: &Fetch) -> Vec<Finding> {
        let mut findings = Vec::new();
        let facts = self.mailboxes.entry(mailbox.to_owned()).or_default();
        facts.max_uid = facts.max_uid.max(uid);
        let size = fetch.rfc822_size();
        // A message another session expunged, answered with empty data rather than kept
        // readable (RFC 2180 4.1 allows it; Dovecot does it, with NO [EXPUNGEISSUED]): nothing
        // to compare, and no size or body to remember.
        let nil_body = fetch.get("BODY[]").is_some_and(Value::is_nil);
        if size == Some(0) || nil_body {
            findings.push(Finding::should(
                "expunged-served-empty",
                "RFC 2180 4.1",
                format!(
                    "UID {uid} in {mailbox} was answered with {}: what RFC 2180 allows for a \
                     message expunged elsewhere, though clients would rather still read it \
                     until told",
                    if nil_body {
                        "BODY[] NIL"
                    } else {
                        "RFC822.SIZE 0"
                    }
                ),
            ));
            return findings;
        }
        let message = facts.messages.entry(uid).or_default();
        let body = fetch.body("");
        if let (Some(size), Some(body)) = (size, body)
            && size != body.len() as u64
        {
            findings.push(Finding::must(
                "size-mismatch",
                "RFC 3501 7.4.2",
                format!(
                    "UID {uid} in {mailbox}: RFC822.SIZE {size}, but BODY[] has {} octets",
                    body.len()
                ),
            ));
        }
        if let Some(size) = size {
            match message.size {
                Some(first) if first != size => findings.push(Finding::must(
                    "message-changed",
                    "RFC 3501 2.3.1.1",
                    format!("UID {uid} in {mailbox}: RFC822.SIZE {size}, was {first}"),
                )),
                Some(_) => {}
                None => message.size = Some(size),
            }
        }
        if let Some(date) = fetch.internal_date() {
            match &message.date {
                Some(first) if first != date => findings.push(Finding::must(
                    "message-changed",
                    "RFC 3501 2.3.3",
                    format!("UID {uid} in {mailbox}: INTERNALDATE {date:?}, was {first:?}"),
                )),
                Some(_) => {}
                None => message.date = Some(date.to_owned()),
            }
        }
        if let Some(body) = body {
            let hash = digest(body);
            let token = token_of(body);
            if let (Some(first), Some(now)) = (&message.token, &token)
                && first != now
            {
                findings.push(Finding::must(
                    "uid-reused",
                    "RFC 3501 2.3.1.1",
                    format!(
                        "UID {uid} in {mailbox} is now message {now}, was message {first}: a UID \
                         named two messages"
                    ),
                ));
            } else if let Some(first) = message.body
                && first != hash
            {
                findings.push(Finding::must(
                    "message-changed",
                    "RFC 3501 2.3.1.1",
                    format!(
                        "UID {uid} in {mailbox}: BODY[] differs from when it was first fetched"
                    ),
                ));
            }
            if let Some(token) = &token
                && let Some(&(length, sent)) = self.appended.get(token)
                && sent != hash
            {
                findings.push(Finding::must(
                    "append-altered",
                    "RFC 3501 6.3.11",
                    format!(
                        "UID {uid} in {mailbox} (message {token}): BODY[] has {} octets that \
                         differ from the {length} APPENDed",
                        body.len()
                    ),
                ));
            }
            let message = facts.messages.entry(uid).or_default();
            message.body.get_or_insert(hash);
            if message.token.is_none() {
                message.token = token;
            }
        }
        findings
    }
}

fn join(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(size: u64, date: &str, body: &[u8]) -> Fetch {
        Fetch {
            seq: 1,
            items: vec![
                ("RFC822.SIZE".into(), Value::Number(size)),
                ("INTERNALDATE".into(), Value::String(date.into())),
                ("BODY[]".into(), Value::String(body.to_vec())),
            ],
        }
    }

    fn classes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.class).collect()
    }

    #[test]
    fn a_uid_names_one_message_for_good() {
        let mut facts = Facts::default();
        let one = b"X-Harness-Mix: t1\r\n\r\nbody\r\n";
        let two = b"X-Harness-Mix: t2\r\n\r\nbody\r\n";
        facts.appending("t1", one);
        let date = "07-Dec-2026 10:00:00 +0000";
        assert!(facts.fetched("m", 5, &fetch(27, date, one)).is_empty());
        assert!(facts.fetched("m", 5, &fetch(27, date, one)).is_empty());
        assert_eq!(
            classes(&facts.fetched("m", 5, &fetch(27, date, two))),
            ["uid-reused"]
        );
        assert_eq!(
            classes(&facts.fetched("m", 5, &fetch(27, "08-Dec-2026 10:00:00 +0000", one))),
            ["message-changed"]
        );
        let altered = b"X-Harness-Mix: t1\r\n\r\nbodY\r\n";
        assert_eq!(
            classes(&facts.fetched("m", 6, &fetch(27, date, altered))),
            ["append-altered"]
        );
        assert_eq!(
            classes(&facts.fetched("m", 7, &fetch(26, date, b"no token\r\n\r\nsome body\r\n"))),
            ["size-mismatch"]
        );
    }

    #[test]
    fn an_expunged_message_served_empty_is_a_warning_not_a_change() {
        let mut facts = Facts::default();
        let date = "07-Dec-2026 10:00:00 +0000";
        let body = b"X-Harness-Mix: t1\r\n\r\nbody\r\n";
        assert!(facts.fetched("m", 5, &fetch(27, date, body)).is_empty());
        let empty = Fetch {
            seq: 1,
            items: vec![
                ("RFC822.SIZE".into(), Value::Number(0)),
                ("BODY[]".into(), Value::Nil),
            ],
        };
        let found = facts.fetched("m", 5, &empty);
        assert_eq!(classes(&found), ["expunged-served-empty"]);
        assert_eq!(found[0].level, super::super::model::Level::Should);
        assert!(facts.fetched("m", 5, &fetch(27, date, body)).is_empty());
    }

    #[test]
    fn new_uids_lie_above_every_known_one() {
        let mut facts = Facts::default();
        assert_eq!(facts.floor("m"), 0);
        assert!(facts.assigned("m", [3], 0, "APPEND").is_none());
        let floor = facts.floor("m");
        assert_eq!(floor, 3);
        assert_eq!(
            facts.assigned("m", [4, 3], floor, "COPY").map(|f| f.class),
            Some("uid-not-ascending")
        );
        assert!(facts.uidnext("m", 5, 4).is_none());
        assert_eq!(
            facts.uidnext("m", 4, 4).map(|f| f.class),
            Some("uidnext-low")
        );
        assert!(facts.uidvalidity("m", 9).is_none());
        assert!(facts.uidvalidity("m", 9).is_none());
        assert_eq!(
            facts.uidvalidity("m", 10).map(|f| f.class),
            Some("uidvalidity-changed")
        );
    }

    #[test]
    fn tokens_are_read_from_the_header_only() {
        assert_eq!(
            token_of(b"Subject: x\r\nx-harness-mix:  abc \r\n\r\nX-Harness-Mix: no\r\n"),
            Some("abc".into())
        );
        assert_eq!(token_of(b"Subject: x\r\n\r\nX-Harness-Mix: no\r\n"), None);
        assert_eq!(
            token_of(b"Subject: x\nX-Harness-Mix: abc\n\nX-Harness-Mix: no\n"),
            Some("abc".into())
        );
        assert_eq!(token_of(b"Subject: x\n\nX-Harness-Mix: no\n"), None);
    }
}

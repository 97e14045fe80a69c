//! Mailbox names as clients see them: the personal namespace (RFC 2342), its prefix and hierarchy
//! delimiter, and the translation between those names and the store's, which always uses `/`
//! and no prefix.
//!
//! By default the two are the same: prefix `""`, delimiter `/`. Under
//! [`Variant::ImapNamespaceInbox`] the account's mailboxes live below INBOX, as on Cyrus and
//! Courier: prefix `INBOX.`, delimiter `.`; the store's `Sent` and `a/b` are `INBOX.Sent` and
//! `INBOX.a.b` on the wire, and a name outside the namespace cannot be made (RFC 2342 section 5
//! leaves the namespaces to the server, RFC 3501 5.1 its names).

use crate::config::Config;
use crate::store::DELIMITER;
use crate::variants::Variant;

/// Why a client's name has no mailbox in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// Outside the personal namespace: no such mailbox, and none can be made there.
    Outside,
    /// Not a name this server can keep (a character the store reserves, say).
    Invalid,
}

/// The personal namespace of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    /// Empty, or `INBOX` followed by the delimiter.
    prefix: &'static str,
    delimiter: char,
}

impl Namespace {
    /// The namespace `config` asks for.
    pub fn of(config: &Config) -> Namespace {
        if config.variants.has(Variant::ImapNamespaceInbox) {
            Namespace {
                prefix: "INBOX.",
                delimiter: '.',
            }
        } else {
            Namespace {
                prefix: "",
                delimiter: DELIMITER,
            }
        }
    }

    /// The hierarchy delimiter clients see.
    pub fn delimiter(self) -> char {
        self.delimiter
    }

    /// The NAMESPACE response (RFC 2342 section 5); `wrong_delimiter` is the
    /// `imap_namespace_delimiter_wrong` fault.
    pub fn response(self, wrong_delimiter: bool) -> String {
        let delimiter = match (wrong_delimiter, self.delimiter) {
            (false, delimiter) => delimiter,
            (true, '.') => '/',
            (true, _) => '.',
        };
        format!(
            "* NAMESPACE ((\"{}\" \"{delimiter}\")) NIL NIL",
            self.prefix
        )
    }

    /// The store's name for a name a client gave (already checked to be 7-bit modified UTF-7).
    /// A trailing delimiter is dropped (CREATE "a/" creates "a"), and INBOX is INBOX in any
    /// case, also as a parent.
    pub fn to_store(self, name: &str) -> Result<String, Unnamed> {
        let name = name.strip_suffix(self.delimiter).unwrap_or(name);
        let delimiter = self.delimiter;
        fn inbox_child(name: &str, delimiter: char) -> Option<&str> {
            let rest = name.get(5..)?.strip_prefix(delimiter)?;
            name[..5].eq_ignore_ascii_case("INBOX").then_some(rest)
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".to_owned());
        }
        if self.prefix.is_empty() {
            return Ok(match inbox_child(name, delimiter) {
                Some(rest) => format!("INBOX{DELIMITER}{rest}"),
                None => name.to_owned(),
            });
        }
        let rest = inbox_child(name, delimiter).ok_or(Unnamed::Outside)?;
        // The store's delimiter is an ordinary character here, and the store's own INBOX is not
        // below the wire's.
        let first = rest.split(self.delimiter).next().unwrap_or_default();
        if rest.contains(DELIMITER) || first.eq_ignore_ascii_case("INBOX") {
            return Err(Unnamed::Invalid);
        }
        Ok(rest.replace(self.delimiter, &DELIMITER.to_string()))
    }

    /// The name clients see for a store name.
    pub fn to_wire(self, name: &str) -> String {
        if self.prefix.is_empty() || name == "INBOX" {
            return name.to_owned();
        }
        format!(
            "{}{}",
            self.prefix,
            name.replace(DELIMITER, &self.delimiter.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(inbox: bool) -> Namespace {
        let mut config = Config::defaults();
        if inbox {
            config.variants.insert(Variant::ImapNamespaceInbox);
        }
        Namespace::of(&config)
    }

    #[test]
    fn by_default_names_are_the_stores() {
        let ns = namespace(false);
        assert_eq!(ns.response(false), "* NAMESPACE ((\"\" \"/\")) NIL NIL");
        assert_eq!(ns.response(true), "* NAMESPACE ((\"\" \".\")) NIL NIL");
        assert_eq!(ns.to_store("inbox"), Ok("INBOX".into()));
        assert_eq!(ns.to_store("Inbox/a"), Ok("INBOX/a".into()));
        assert_eq!(ns.to_store("a/b/"), Ok("a/b".into()));
        assert_eq!(ns.to_store("a.b"), Ok("a.b".into()));
        assert_eq!(ns.to_wire("a/b"), "a/b");
    }

    #[test]
    fn below_inbox_with_a_dot() {
        let ns = namespace(true);
        assert_eq!(
            ns.response(false),
            "* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL"
        );
        assert_eq!(
            ns.response(true),
            "* NAMESPACE ((\"INBOX.\" \"/\")) NIL NIL"
        );
        assert_eq!(ns.delimiter(), '.');
        assert_eq!(ns.to_store("INBOX"), Ok("INBOX".into()));
        assert_eq!(ns.to_store("inbox."), Ok("INBOX".into()));
        assert_eq!(ns.to_store("INBOX.Sent"), Ok("Sent".into()));
        assert_eq!(ns.to_store("inbox.a.b."), Ok("a/b".into()));
        assert_eq!(ns.to_store("Sent"), Err(Unnamed::Outside));
        assert_eq!(ns.to_store("INBOXa"), Err(Unnamed::Outside));
        assert_eq!(ns.to_store("a.b"), Err(Unnamed::Outside));
        assert_eq!(ns.to_store("INBOX.a/b"), Err(Unnamed::Invalid));
        assert_eq!(ns.to_store("INBOX.inbox.x"), Err(Unnamed::Invalid));
        assert_eq!(ns.to_wire("INBOX"), "INBOX");
        assert_eq!(ns.to_wire("Sent"), "INBOX.Sent");
        assert_eq!(ns.to_wire("a/b"), "INBOX.a.b");
        for name in ["INBOX.Sent", "INBOX.a.b.c"] {
            assert_eq!(ns.to_wire(&ns.to_store(name).unwrap()), name);
        }
    }
}

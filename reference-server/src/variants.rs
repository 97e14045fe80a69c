//! Legal behaviours on request: the dual of [`crate::faults`].
//!
//! A variant is something real servers do, that the RFCs allow, and that the reference defaults
//! do not do: another IMAP namespace, an optional extension left out, other reply texts, fields
//! added on receipt, other mail already in the mailbox. The harness's self-test runs every
//! scenario under each variant and requires that none fails: a scenario that fails under a
//! variant judges a legal server wrong, which is a defect of the harness, never of the variant.
//!
//! Each variant names the RFC text that allows it; README.md's variant table is made from the
//! same lines.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::config::Config;

macro_rules! variants {
    ($($variant:ident $name:literal $allowed_by:literal $doc:literal,)*) => {
        /// A legal behaviour that differs from the reference defaults.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[non_exhaustive]
        pub enum Variant {
            // Named in config files exactly as on command lines: snake_case would make
            // `ConnectionLimit4` "connection_limit4".
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl Variant {
            /// Every variant.
            pub const ALL: &'static [Variant] = &[$(Variant::$variant,)*];

            /// The name used in config files and on command lines.
            pub fn name(self) -> &'static str {
                match self { $(Variant::$variant => $name,)* }
            }

            /// What the server does under this variant.
            pub fn description(self) -> &'static str {
                match self { $(Variant::$variant => $doc,)* }
            }

            /// The RFC text that makes the behaviour legal.
            pub fn allowed_by(self) -> &'static str {
                match self { $(Variant::$variant => $allowed_by,)* }
            }
        }
    };
}

// Grouped by area; each group keeps to its own lines.
variants! {
    // ---- connections ----
    ConnectionLimit4 "connection_limit_4"
        "RFC 5321 3.8 and 4.2.3 (a 421 greeting: service not available), RFC 3206 4 (-ERR [SYS/TEMP]: a temporary problem), RFC 3501 7.1.5 (a BYE greeting: the server will not take the connection); no RFC obliges a server to take any number of connections from one address"
        "At most 4 connections at once from one client address, over all ports together; a fifth is greeted with 421 (SMTP), -ERR [SYS/TEMP] (POP3) or * BYE (IMAP) and closed.",
    // ---- smtp ----
    // ---- pop3 ----
    Pop3NoSasl "pop3_no_sasl"
        "RFC 2449 6.3 (SASL is a capability a server may leave out) and RFC 5034 1 (AUTH is an extension of RFC 1939)"
        "POP3: no SASL line in CAPA, and AUTH is answered -ERR as an unknown command; USER and PASS still work.",
    Pop3NoTop "pop3_no_top"
        "RFC 1939 7 (TOP is an optional command) and RFC 2449 6.1"
        "POP3: TOP is not in CAPA and is answered -ERR as an unknown command.",
    Pop3NoUidl "pop3_no_uidl"
        "RFC 1939 7 (UIDL is an optional command) and RFC 2449 6.8"
        "POP3: UIDL is not in CAPA and is answered -ERR as an unknown command.",
    Pop3NoRespCodes "pop3_no_resp_codes"
        "RFC 2449 6.4 and 8 (response codes are a capability a server may leave out) and RFC 3206 6 (AUTH-RESP-CODE likewise)"
        "POP3: neither RESP-CODES nor AUTH-RESP-CODE in CAPA, and no [CODE] in any response: a locked maildrop, a failed login and a busy server all get a plain -ERR.",
    Pop3NoPipelining "pop3_no_pipelining"
        "RFC 2449 6.6 (PIPELINING is a capability a server may leave out) and RFC 1939 3 (without it a client waits for each response, so what the server does with commands sent early is its own choice)"
        "POP3: PIPELINING is not in CAPA, and commands that arrive together with an earlier one are discarded unanswered.",
    Pop3OtherTexts "pop3_other_texts"
        "RFC 1939 3 (the text after +OK and -ERR is the server's to choose) and 5 (nothing is required after the numbers of STAT and LIST answers)"
        "POP3: other texts after every +OK and -ERR than the reference ones (response codes kept), and words after the numbers of STAT and LIST answers.",
    Pop3NoCapa "pop3_no_capa"
        "RFC 2449 5 (CAPA is itself an extension of RFC 1939, which a server need not implement)"
        "POP3: CAPA is answered -ERR as an unknown command, so a client learns no capability; STLS, USER and PASS, TOP and UIDL still work.",
    // ---- imap ----
    // ---- mailboxes ----
    MailboxesPreloaded "mailboxes_preloaded"
        "RFC 3501 2.3 and RFC 1939 5 (a mailbox holds whatever mail it holds), RFC 5322 and RFC 2045 to 2049 (which a message delivered long ago, or by another route, need not follow)"
        "Start with other mail in every account's INBOX (when it is empty): an ordinary message already read, one with NUL octets, one of 20 MiB, one with broken MIME, and one with a Message-ID and subject like the harness's own.",
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(name: &str) -> Result<Variant, String> {
        Variant::ALL
            .iter()
            .copied()
            .find(|v| v.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown variant `{name}`; known: {}", names.join(", "))
            })
    }
}

/// The `variants:` section of the config: the legal behaviours switched on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Variants(BTreeSet<Variant>);

impl Variants {
    /// Whether a variant is on.
    pub fn has(&self, variant: Variant) -> bool {
        self.0.contains(&variant)
    }

    /// Switches a variant on.
    pub fn insert(&mut self, variant: Variant) {
        self.0.insert(variant);
    }

    /// The variants switched on, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Variant> + '_ {
        self.0.iter().copied()
    }

    /// Whether none is on.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the variants that are settings of the config rather than behaviours of a
    /// session (a connection limit, say). Called once, before the server starts.
    pub fn apply(&self, config: &mut Config) {
        if self.has(Variant::ConnectionLimit4) {
            config.limits.connections_per_address = 4;
        }
    }
}

/// The other mail that [`Variant::MailboxesPreloaded`] puts in each INBOX, with its flags: what
/// a real mailbox holds, that a client must read past without choking.
pub fn preloaded_messages() -> Vec<(Vec<u8>, Vec<String>)> {
    const HEAD: &str = "From: Someone Else <else@elsewhere.test>\r\nTo: <owner@example.test>\r\n\
                        Date: Tue, 3 Mar 2026 09:00:00 +0000\r\n";
    let ordinary = format!(
        "{HEAD}Subject: An old message\r\nMessage-ID: <old-1@elsewhere.test>\r\n\r\n\
         Read a long time ago.\r\n"
    );
    // NUL is not allowed in a message (RFC 5322 3.5), but mail arrives by other routes than a
    // careful SMTP server (a migration, a local delivery agent), and an IMAP or POP3 client
    // meets it in literals all the same.
    let mut nul = format!(
        "{HEAD}Subject: Bytes that should not be here\r\nMessage-ID: <old-2@elsewhere.test>\r\n\r\n"
    )
    .into_bytes();
    nul.extend_from_slice(b"before\x00after\r\n\x00\x00\r\nend\r\n");
    let mut large = format!(
        "{HEAD}Subject: A large attachment\r\nMessage-ID: <old-3@elsewhere.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    while large.len() < 20 * 1024 * 1024 {
        large.extend_from_slice(line);
    }
    let broken_mime = format!(
        "{HEAD}Subject: =?utf-8?q?Broken=ZZ?= MIME\r\nMessage-ID: <old-4@elsewhere.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"never-closed\r\n\r\n\
         --never-closed\r\nContent-Type: text/plain; charset=no-such-charset\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n!!! not base64 !!!\r\n\
         --never-closed\r\nContent-Type: message/rfc822\r\n\r\nnot a message\r\n"
    );
    // Looks like the harness's own test mail from an earlier run: a check must find its
    // message by the exact Message-ID, not by a look-alike.
    let look_alike = "From: Harness <conformance@harness.test>\r\nTo: <owner@example.test>\r\n\
                      Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nSubject: test message\r\n\
                      Message-ID: <0.0.0@harness.test>\r\n\r\nFrom an earlier run.\r\n";
    vec![
        (ordinary.into_bytes(), vec!["\\Seen".to_owned()]),
        (nul, Vec::new()),
        (large, vec!["$Label1".to_owned()]),
        (broken_mime.into_bytes(), Vec::new()),
        (look_alike.as_bytes().to_vec(), vec!["\\Seen".to_owned()]),
    ]
}

impl FromIterator<Variant> for Variants {
    fn from_iter<I: IntoIterator<Item = Variant>>(iter: I) -> Variants {
        Variants(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_by_name() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>(), Ok(*variant));
            assert!(
                variant.allowed_by().contains("RFC"),
                "{} must cite the RFC text that allows it",
                variant.name()
            );
        }
        let error = "no_such_variant".parse::<Variant>().unwrap_err();
        assert!(error.contains("mailboxes_preloaded"), "{error}");
    }

    #[test]
    fn a_config_names_variants_as_the_command_line_does() {
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        let yaml = format!("[{}]\n", names.join(", "));
        let variants: Variants = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(variants.iter().collect::<Vec<_>>(), Variant::ALL);
    }

    #[test]
    fn the_connection_limit_is_a_setting_of_the_config() {
        let mut config = Config::defaults();
        let variants: Variants = [Variant::ConnectionLimit4].into_iter().collect();
        variants.apply(&mut config);
        assert_eq!(config.limits.connections_per_address, 4);
    }

    #[test]
    fn preloaded_mail_has_what_the_variant_promises() {
        let messages = preloaded_messages();
        assert!(messages.iter().any(|(m, _)| m.contains(&0)));
        assert!(messages.iter().any(|(m, _)| m.len() >= 20 * 1024 * 1024));
        assert!(messages.iter().all(|(m, _)| m.ends_with(b"\r\n")));
    }
}

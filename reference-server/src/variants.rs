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
    SmtpCompletesMessages "smtp_completes_messages"
        "RFC 6409 8 (sites MAY modify submissions to comply with the standards: RFC 5322 3.6 requires From and Date), 8.2 (MAY add Date), 8.3 (SHOULD add Message-ID); RFC 5321 6.4 (a submission server may add Message-ID and Date)"
        "On the submission ports, add the header fields a message lacks: From (the authenticated address), Date and Message-ID, at the end of its header section.",
    SmtpTraceLayout "smtp_trace_layout"
        "RFC 5321 4.4 (the Received syntax has optional clauses, comments and folding; final delivery adds Return-Path) and RFC 9228 (Delivered-To added at delivery)"
        "Write Received in another layout, folded over several lines with a comment after `from`, `(envelope-from ...)`, `id ...` and `for <...>`, and give each local copy `X-Original-To:` and `Delivered-To:` right below Return-Path.",
    SmtpHeaderCase "smtp_header_case"
        "RFC 5322 1.2.2 and RFC 5234 2.3 (header field names are case-insensitive)"
        "Write the names of the header fields the server adds in another case: `Return-path:`, `received:`, `delivered-to:`, `FROM:`, `date:`, `Message-Id:`.",
    SmtpErrorLimit5yz "smtp_error_limit_5yz"
        "RFC 5321 7.8 (for a client sending mostly invalid commands \"it would be reasonable for the server to close the connection after generating an appropriate number of 5yz (normally 550) replies\") and 3.8 (closing only after QUIT, a 421 or a timeout is the rule under normal circumstances, \"see Section 7.8\")"
        "When a session reaches the error limit, close the connection right after the 5yz reply to the last error, without a 421.",
    SmtpProbeDefence "smtp_probe_defence"
        "RFC 5321 7.8 (a server may detect a run of invalid RCPT commands and defend itself) and 4.2 (the reply text is not significant)"
        "After three unknown recipients in a session, answer every further RCPT, valid recipients too, with `550 5.7.1 Too many invalid recipients`; the session stays open and these replies do not count as errors.",
    SmtpNoEnhancedStatusCodes "smtp_no_enhancedstatuscodes"
        "RFC 2034 (ENHANCEDSTATUSCODES is an optional extension; without it replies carry no status codes)"
        "Leave ENHANCEDSTATUSCODES out of EHLO and the x.y.z status codes out of every reply.",
    SmtpNoPipelining "smtp_no_pipelining"
        "RFC 2920 1 (a client uses pipelining only when the server declares it can handle it) and RFC 5321 4.3.1 (otherwise the dialogue alternates: each command waits for its reply)"
        "Leave PIPELINING out of EHLO and, as Exim's smtp_enforce_sync does, answer a command that arrives before the reply to the one before it with `554 SMTP synchronization error` and close.",
    SmtpNoChunking "smtp_no_chunking"
        "RFC 3030 (CHUNKING is an optional extension) and RFC 5321 4.2.4 (an unknown command gets 500)"
        "Leave CHUNKING out of EHLO and answer BDAT as an unknown command (500), reading what follows it as commands.",
    SmtpNo8bitmime "smtp_no_8bitmime"
        "RFC 6152 (8BITMIME is an optional extension) and RFC 5321 4.1.1.11 (an unknown MAIL parameter gets 555)"
        "Leave 8BITMIME out of EHLO and refuse the BODY parameter of MAIL with 555.",
    SmtpNoSmtputf8 "smtp_no_smtputf8"
        "RFC 6531 (SMTPUTF8 is an optional extension) and RFC 5321 4.1.1.11 (an unknown MAIL parameter gets 555)"
        "Leave SMTPUTF8 out of EHLO, refuse the SMTPUTF8 parameter of MAIL with 555, and so every non-ASCII address.",
    SmtpNoSize "smtp_no_size"
        "RFC 1870 (SIZE is an optional extension) and RFC 5321 4.1.1.11 (an unknown MAIL parameter gets 555)"
        "Leave SIZE out of EHLO and refuse the SIZE parameter of MAIL with 555; a message over the size limit is still refused after its data.",
    SmtpOtherTexts "smtp_other_texts"
        "RFC 5321 4.2 (the text of a reply is not significant; a reply may span several lines) and 4.1.1.1 (the EHLO keywords come in no set order)"
        "Use other texts in every reply (those of RFC 5321 4.2.3), a greeting of two lines, and the EHLO keywords in reverse order.",
    SmtpNoAuthOnRelayPort "smtp_no_auth_on_relay_port"
        "RFC 4954 (AUTH is an optional extension, and a server offers it where it chooses) and RFC 5321 2.3.10 and 3.6.2 (port 25 takes mail for its own domains without it); RFC 6409 3.1 puts authenticated submission on port 587"
        "Port 25 offers no AUTH, before or after STARTTLS, and answers AUTH with 502 (command not implemented); mail to other domains is for the submission ports only.",
    SmtpReplyIds "smtp_reply_ids"
        "RFC 5321 4.2 (the text after the reply code is not significant: servers put session and queue ids in it)"
        "End the text of every one-line reply (except AUTH challenges) with an id of its own, as some large providers do: `535 5.7.8 Authentication failed 3f9c02a7be41 - refserv`.",
    RelayRetriesSlowly "relay_retries_slowly"
        "RFC 5321 4.5.4.1 (the retry interval SHOULD be at least 30 minutes) and 4.5.4 (a sender MUST delay retrying a destination after a failure)"
        "Relay: after a temporary failure, retry after 30 minutes, then every hour (relay.retry_secs = [1800, 3600]), as RFC 5321 recommends, instead of within seconds.",
    RelayPlainBounces "relay_plain_bounces"
        "RFC 5321 6.1 and 4.5.5 (a server that gives up on a message MUST send a notification, with a null reverse-path, in no set form); RFC 3464's multipart/report \"may be used\" (its abstract), and RFC 3461 ties it to the DSN extension, which the server does not offer"
        "Relay: tell the sender of a failed delivery in a plain-text message in the manner of qmail (one paragraph per recipient with the remote server's reply, then the original's header section), not an RFC 3464 multipart/report.",
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
    ImapNamespaceInbox "imap_namespace_inbox"
        "RFC 2342 sections 4 and 5 (the server chooses its namespaces, prefix and delimiter; personal prefix \"INBOX.\" is the RFC's own example), RFC 3501 5.1 and 6.3.3 (names are the server's to interpret; CREATE may fail), RFC 5530 3 (CANNOT)"
        "The personal namespace is \"INBOX.\" with \".\" as hierarchy delimiter: every mailbox but INBOX, the special-use ones included, lives below INBOX (INBOX.Sent, INBOX.a.b), and CREATE or RENAME to a name outside it is refused with NO [CANNOT].",
    ImapWithoutSpecialUse "imap_without_special_use"
        "RFC 6154 is an optional extension (RFC 3501 7.2.1: a client must not assume what CAPABILITY does not list)"
        "No SPECIAL-USE capability and no special-use attributes in LIST.",
    ImapNoSaslIr "imap_no_sasl_ir"
        "RFC 4959 is an optional extension; without it RFC 3501 6.2.2's AUTHENTICATE takes no initial response (a syntax error, BAD per 7.1.3)"
        "No SASL-IR capability; AUTHENTICATE with an initial response is refused with BAD.",
    ImapNoLiteralPlus "imap_no_literal_plus"
        "RFC 7888 is an optional extension; RFC 3501 4.3 and 9 know only synchronising literals, so {n+} is a syntax error (BAD, 7.1.3)"
        "No LITERAL+ capability; a command with a non-synchronising literal is refused with BAD (its octets are stepped over).",
    ImapNoUnselect "imap_no_unselect"
        "RFC 3691 is an optional extension; RFC 3501 7.1.3 answers an unknown command with BAD"
        "No UNSELECT capability; UNSELECT is an unknown command (BAD).",
    ImapNoMove "imap_no_move"
        "RFC 6851 is an optional extension; RFC 3501 7.1.3 answers an unknown command with BAD"
        "No MOVE capability; MOVE and UID MOVE are unknown commands (BAD).",
    ImapNoCondstore "imap_no_condstore"
        "RFC 7162 is an optional extension; RFC 3501 7.1.3 answers syntax it does not know with BAD, and RFC 5161 3.1 leaves what the server lacks out of ENABLED"
        "No CONDSTORE capability and no HIGHESTMODSEQ code; the CONDSTORE SELECT parameter, STORE UNCHANGEDSINCE, FETCH MODSEQ and CHANGEDSINCE, STATUS HIGHESTMODSEQ and SEARCH MODSEQ are refused with BAD; ENABLE CONDSTORE enables nothing.",
    ImapNoIdle "imap_no_idle"
        "RFC 2177 is an optional extension; RFC 3501 7.1.3 answers an unknown command with BAD"
        "No IDLE capability; IDLE is an unknown command (BAD).",
    ImapIdlePolling "imap_idle_polling"
        "RFC 2177 section 3 (the server sends updates while idling, with no latency set; a client must expect them late)"
        "IDLE is offered, but a running IDLE looks for other sessions' changes only every 15 seconds (DONE and every other command still report them at once).",
    ImapChatter "imap_chatter"
        "RFC 3501 section 7 and 5.3 (a client must accept any response at any time, and untagged responses the server sends unasked), 7.1.1 and 7.1.2 (untagged OK and NO as information and warnings), 7.1 ([ALERT]), 7.2.1 (CAPABILITY)"
        "Extra untagged responses: an `* OK [ALERT]` and an unsolicited `* CAPABILITY` after a login, an untagged OK or NO [ALERT] warning before every third tagged reply, and `* OK Still here` when IDLE starts.",
    ImapOtherTexts "imap_other_texts"
        "RFC 3501 7.1 (the human-readable text of a status response is free; only the condition and the response code are defined)"
        "Other texts in every status response, tagged and untagged, greeting and BYE included, some of them misleading on purpose (\"NO problem\" in an OK, \"OK, so that did not work\" in a NO).",
    ImapNoNamespace "imap_no_namespace"
        "RFC 2342 is an optional extension to IMAP4rev1; RFC 3501 6.3.8 (LIST \"\" \"\" gives the hierarchy delimiter) and 7.1.3 (BAD for an unknown command)"
        "No NAMESPACE capability; NAMESPACE is an unknown command (BAD).",
    ImapNoUidplus "imap_no_uidplus"
        "RFC 4315 is an optional extension; RFC 3501 6.4.8 knows no UID EXPUNGE (a syntax error, BAD per 7.1.3)"
        "No UIDPLUS capability: no APPENDUID or COPYUID codes, and UID EXPUNGE is refused with BAD.",
    ImapNoChildren "imap_no_children"
        "RFC 3348 is an optional extension; RFC 3501 7.2.2 lists no \\HasChildren or \\HasNoChildren"
        "No CHILDREN capability and neither \\HasChildren nor \\HasNoChildren in LIST.",
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

/// The variants as the Markdown table README.md shows: name, what the server does, and the RFC
/// text that allows it.
pub fn markdown_table() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut table =
        String::from("| variant | what the server does | allowed by |\n| --- | --- | --- |\n");
    for variant in Variant::ALL {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            variant.name(),
            cell(variant.description()),
            cell(variant.allowed_by())
        ));
    }
    table
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
        if self.has(Variant::RelayRetriesSlowly) {
            config.relay.retry_secs = vec![1800, 3600];
        }
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

    /// README.md's variant table is this code's, word for word.
    #[test]
    fn readme_lists_every_variant() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md beside the workspace");
        let (_, rest) = readme
            .split_once("<!-- variants:begin -->\n")
            .expect("README.md has a <!-- variants:begin --> marker");
        let (table, _) = rest
            .split_once("<!-- variants:end -->")
            .expect("README.md has a <!-- variants:end --> marker");
        assert!(
            table == markdown_table(),
            "README.md's variant table is out of date; replace it with the output of \
             `cargo run --release -p harness -- conform --variant table`:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn preloaded_mail_has_what_the_variant_promises() {
        let messages = preloaded_messages();
        assert!(messages.iter().any(|(m, _)| m.contains(&0)));
        assert!(messages.iter().any(|(m, _)| m.len() >= 20 * 1024 * 1024));
        assert!(messages.iter().all(|(m, _)| m.ends_with(b"\r\n")));
    }
}

//! Misbehaviour on request.
//!
//! Two uses: clients under test meet injected 4xx/5xx replies, delays and disconnects; and the
//! harness's own tests run against a server that behaves like a misconfigured or vulnerable one,
//! to show that each conformance check can fail.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

/// The `faults:` section of the config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Injected behaviour at chosen protocol points.
    pub commands: Vec<CommandFault>,
    /// Policy faults by name: the server behaves like a misconfigured or vulnerable one.
    pub policy: BTreeSet<Policy>,
}

macro_rules! policies {
    ($($variant:ident $name:literal $doc:literal,)*) => {
        /// A way of misbehaving that a conformance check must catch.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[non_exhaustive]
        pub enum Policy {
            // Named in config files exactly as on command lines: snake_case would make
            // `Strip8bit` "strip8bit".
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl Policy {
            /// Every policy fault.
            pub const ALL: &'static [Policy] = &[$(Policy::$variant,)*];

            /// The name used in config files and on command lines.
            pub fn name(self) -> &'static str {
                match self { $(Policy::$variant => $name,)* }
            }

            /// What the fault does.
            pub fn description(self) -> &'static str {
                match self { $(Policy::$variant => $doc,)* }
            }
        }
    };
}

policies! {
    OpenRelay "open_relay" "Accept mail for any domain without authentication; foreign mail accepted this way is discarded.",
    AuthBeforeTls "auth_before_tls" "Advertise and accept AUTH before STARTTLS.",
    AuthNotAdvertised "auth_not_advertised" "Leave AUTH out of the EHLO reply where it should be offered (an AUTH command still works).",
    StarttlsInjection "starttls_injection" "Execute bytes sent after STARTTLS but before the handshake inside TLS (CVE-2011-0411 class).",
    BareLfEndOfData "bare_lf_end_of_data" "Take a bare LF or CR as a line end in DATA, so <LF>.<LF>, <CR>.<CR> and the like end the message (SMTP smuggling), and accept bare line ends.",
    LegacyTls "legacy_tls" "Answer a TLS 1.0 or 1.1 ClientHello with a ServerHello of that version.",
    DiscardMail "discard_mail" "Reply 250 to message data but store nothing.",
    DropAfterAck "drop_after_ack" "Reply 250 to message data but lose one accepted message in ten (the 1st, 11th, 21st, ... since start).",
    AcceptUnknownUsers "accept_unknown_users" "Accept any local part in a hosted domain and discard mail for unknown users.",
    NoPostmaster "no_postmaster" "Refuse the postmaster mailbox.",
    UnknownCommand502 "unknown_command_502" "Answer unrecognized commands with 502 instead of 500.",
    LenientPaths "lenient_paths" "Accept MAIL FROM and RCPT TO addresses without angle brackets.",
    RcptWithoutMail "rcpt_without_mail" "Accept RCPT before MAIL.",
    DataWithoutRcpt "data_without_rcpt" "Accept DATA when no recipient was accepted.",
    NestedMail "nested_mail" "Accept a second MAIL inside a transaction.",
    NoLineLimit "no_line_limit" "Accept command lines of any length up to 12288 octets.",
    NoErrorLimit "no_error_limit" "Never disconnect a client for making errors.",
    NoCommandLimit "no_command_limit" "Never disconnect a client for sending too many commands, with or without mail.",
    NoSizeLimit "no_size_limit" "Advertise SIZE but enforce no limit.",
    Strip8bit "strip_8bit" "Clear the high bit of every octet of stored messages.",
    Utf8WithoutSmtputf8 "utf8_without_smtputf8" "Accept non-ASCII addresses without the SMTPUTF8 parameter.",
    NoDotUnstuffing "no_dot_unstuffing" "Keep the leading dot of dot-stuffed lines.",
    NoTraceHeaders "no_trace_headers" "Add neither Return-Path nor Received on delivery.",
    StarttlsAfterTls "starttls_after_tls" "Keep advertising STARTTLS inside TLS.",
    MailWithoutAuth "mail_without_auth" "Accept MAIL on the submission ports without AUTH.",
    AnyPassword "any_password" "Accept any password for an existing account.",
    KeepSessionAfterStarttls "keep_session_after_starttls" "Keep the EHLO state across STARTTLS instead of resetting it.",
    LenientSasl "lenient_sasl" "Answer cancelled, undecodable and unknown-mechanism AUTH with 535 instead of 501/504.",
    ReauthAllowed "reauth_allowed" "Accept AUTH again after a successful AUTH.",
    NoAuthLogin "no_auth_login" "Advertise AUTH LOGIN but refuse it with 504.",
    Pop3PlaintextAuth "pop3_plaintext_auth" "Offer and accept USER/PASS and AUTH on the POP3 STLS port before STLS.",
    Pop3DeleIgnored "pop3_dele_ignored" "Answer +OK to DELE and QUIT but delete nothing.",
    Pop3NoLock "pop3_no_lock" "Let several POP3 sessions open the same maildrop at once.",
    Pop3UidlUnstable "pop3_uidl_unstable" "Give messages new UIDL values in every POP3 session.",
    Pop3NoDotStuffing "pop3_no_dot_stuffing" "Send RETR and TOP bodies without dot-stuffing lines that begin with a dot.",
    Pop3DeletedVisible "pop3_deleted_visible" "Keep messages marked with DELE in STAT, LIST, UIDL and RETR until QUIT.",
    Pop3RsetIgnored "pop3_rset_ignored" "Answer +OK to RSET but keep the DELE marks.",
    Pop3UpdateOnDisconnect "pop3_update_on_disconnect" "Delete the marked messages when a POP3 client drops the connection without QUIT.",
    Pop3TopIgnoresLines "pop3_top_ignores_lines" "Answer TOP with the whole message whatever line count was asked for.",
    Pop3SizesWithoutCr "pop3_sizes_without_cr" "Report message sizes in STAT and LIST as if lines ended in a bare LF.",
    Pop3MsgnumUnchecked "pop3_msgnum_unchecked" "Answer +OK to LIST, UIDL, RETR, TOP and DELE of message numbers that do not exist, and to DELE of a message already marked.",
    Pop3UnknownCommandOk "pop3_unknown_command_ok" "Answer +OK to commands the server does not know.",
    Pop3NoStateCheck "pop3_no_state_check" "Accept STAT, LIST, UIDL, RETR, TOP, DELE and RSET before login, on an empty maildrop.",
    ImapPlaintextLogin "imap_plaintext_login" "Offer and accept LOGIN and AUTHENTICATE on the IMAP STARTTLS port before STARTTLS.",
    ImapNoUntaggedUpdates "imap_no_untagged_updates" "Never tell an IMAP session about changes other sessions made to its selected mailbox.",
    ImapUidReuse "imap_uid_reuse" "Give a new message the UID after the highest one present, reusing the UIDs of expunged messages.",
    ImapListNoHierarchy "imap_list_no_hierarchy" "Let the LIST wildcard % match the hierarchy delimiter, like *.",
    ImapNoSpecialUse "imap_no_special_use" "Leave the special-use attributes (\\Sent, \\Drafts, \\Trash, \\Junk) out of LIST.",
    ImapSizeWithoutCr "imap_size_without_cr" "Report RFC822.SIZE as if lines ended in a bare LF.",
    ImapPeekSetsSeen "imap_peek_sets_seen" "Set \\Seen on BODY.PEEK[] as on BODY[].",
    ImapMoveKeepsSource "imap_move_keeps_source" "Answer MOVE by copying, leaving the message in the source mailbox.",
    ImapExpungeDuringFetch "imap_expunge_during_fetch" "Report other sessions' expunges during FETCH, STORE and SEARCH by message number.",
    ImapBodystructureFlat "imap_bodystructure_flat" "Describe every message in BODYSTRUCTURE as one text/plain part.",
    ImapSearchCaseSensitive "imap_search_case_sensitive" "Match SEARCH strings (SUBJECT, FROM, BODY, TEXT, HEADER...) case-sensitively.",
    ImapCloseKeepsDeleted "imap_close_keeps_deleted" "Answer CLOSE with OK but expunge nothing.",
    ImapUidExpungeAll "imap_uid_expunge_all" "Let UID EXPUNGE remove every message marked \\Deleted, not only those it names.",
    ImapNoUidplusCodes "imap_no_uidplus_codes" "Advertise UIDPLUS but leave APPENDUID and COPYUID out of the replies.",
    ImapStatusUnseenAll "imap_status_unseen_all" "Count every message as unseen in STATUS.",
    ImapCondstoreIgnored "imap_condstore_ignored" "Ignore UNCHANGEDSINCE: a conditional STORE changes every message.",
    ImapNoLiteralLimit "imap_no_literal_limit" "Invite IMAP literals of any size with a continuation, however large the message limit.",
    ImapSaslIrIgnored "imap_sasl_ir_ignored" "Advertise SASL-IR but ignore an initial response and ask for the credentials with a continuation.",
    ImapLiteralPlusIgnored "imap_literal_plus_ignored" "Advertise LITERAL+ but answer a non-synchronising literal with a continuation request.",
    ImapLsubIgnoresSubscriptions "imap_lsub_ignores_subscriptions" "Answer LSUB with every mailbox, subscribed or not.",
    ImapNamespaceDelimiterWrong "imap_namespace_delimiter_wrong" "Give \".\" as the hierarchy delimiter in NAMESPACE while LIST says \"/\".",
    ImapAppendIgnoresDate "imap_append_ignores_date" "Give an APPENDed message the time of arrival as INTERNALDATE, not the date the client gave.",
    ImapPartialIgnored "imap_partial_ignored" "Answer BODY[...]<origin.count> with the whole section.",
    ImapDeleteKeepsMailbox "imap_delete_keeps_mailbox" "Answer OK to DELETE of a mailbox without children but keep it.",
    ImapErrorsAsOk "imap_errors_as_ok" "Answer OK where an IMAP command failed with NO or BAD.",
    ImapStoreReadOnly "imap_store_read_only" "Carry out STORE in a mailbox opened with EXAMINE, as if it were read-write.",
    ImapUnselectExpunges "imap_unselect_expunges" "Answer UNSELECT like CLOSE, expunging the messages marked \\Deleted.",
    ImapKeywordWithoutFlags "imap_keyword_without_flags" "Use a keyword new to the mailbox in FETCH responses without first announcing it in FLAGS and PERMANENTFLAGS.",
    ImapFetchExpungedRefused "imap_fetch_expunged_refused" "Refuse FETCH with NO [EXPUNGEISSUED] when another session expunged one of the messages and this session has not been told yet, instead of still returning its data.",
    ImapBodyChanges "imap_body_changes" "Serve a message flagged \\Flagged with an extra header line at its top, so that its size, body and sections change under the same UID.",
    ImapModseqRegress "imap_modseq_regress" "Report every other MODSEQ in a session's FETCH responses one lower than the message's mod-sequence.",
    ImapChildrenWrong "imap_children_wrong" "Advertise CHILDREN but mark every mailbox \\HasNoChildren in LIST.",
    PopBeforeSmtpIgnored "pop_before_smtp_ignored" "Record POP3 logins for POP-before-SMTP but never let SMTP honour them.",
    Pop3PipeliningLost "pop3_pipelining_lost" "Advertise PIPELINING but drop commands that arrive together with an earlier one.",
    StripNul "strip_nul" "Drop NUL octets from message data before looking for its end, so <CRLF>.<NUL><CRLF> ends the message (SMTP smuggling).",
    RelayAddressTricks "relay_address_tricks" "Port 25 without AUTH: take a hosted-domain address that routes elsewhere (percent hack, bang path, `@` in the local part, source route through a hosted domain) as mail to relay, and accept it.",
    VrfyDisclosesUsers "vrfy_discloses_users" "Answer VRFY and EXPN with 250 for accounts and 550 for unknown users.",
    AuthRevealsUnknownUser "auth_reveals_unknown_user" "Tell an unknown user from a wrong password: SMTP AUTH says \"no such user\", POP3 USER refuses unknown names.",
    NoAuthThrottle "no_auth_throttle" "Answer failed logins at once, and never disconnect a client for them.",
    StarttlsResponseInjection "starttls_response_injection" "Send a further reply in clear text right after the go-ahead for STARTTLS or STLS, before the handshake, where a man in the middle would inject one.",
    StarttlsInsideTls "starttls_inside_tls" "Answer STARTTLS (SMTP, IMAP) and STLS (POP3) inside TLS with the go-ahead reply instead of refusing it.",
    RelayIgnoresMxPreference "relay_ignores_mx_preference" "Relay: try the MX hosts from the highest preference number (least preferred) down.",
    RelayNoRetry "relay_no_retry" "Relay: give up on a recipient after its first temporary failure, without a bounce.",
    RelayNoBounce "relay_no_bounce" "Relay: drop a recipient that failed for good without telling the sender.",
    DsnPlainBounces "dsn_plain_bounces" "Advertise DSN in EHLO, yet tell senders of failed deliveries in a plain-text bounce instead of an RFC 3464 report.",
    RelayFirstMxOnly "relay_first_mx_only" "Relay: try only the most preferred MX host, never the next ones.",
    RelayNoImplicitMx "relay_no_implicit_mx" "Relay: bounce mail for a domain that has an address record but no MX, instead of delivering to that address (RFC 5321 5.1).",
    RelayNoSenderCheck "relay_no_sender_check" "Inbound on port 25: skip the sender domain check even when it is configured.",
    RelayNoFcrdns "relay_no_fcrdns" "Inbound on port 25: skip the forward-confirmed reverse DNS check even when it is configured.",
    WeakCiphers "weak_ciphers" "Answer a ClientHello that offers only anonymous, export or NULL suites with a ServerHello choosing one.",
    WrongCertificateName "wrong_certificate_name" "Show clients that send no server name (SNI) a certificate for wrong.invalid, signed like the right one, so only the name is wrong.",
    ImapGreetingCapabilitiesStale "imap_greeting_capabilities_stale" "Leave STARTTLS and LOGINDISABLED out of the CAPABILITY code of the IMAP greeting, as if TLS were on, while the CAPABILITY command lists them.",
    ImapExpungeNumbersUnshifted "imap_expunge_numbers_unshifted" "Report several expunges by other sessions lowest number first, each with the number the message had before any of them was removed.",
    ImapExistsWithoutExpunge "imap_exists_without_expunge" "Report other sessions' expunges by a smaller EXISTS alone, with no EXPUNGE responses.",
    ImapVanishedUnasked "imap_vanished_unasked" "Report other sessions' expunges with VANISHED (RFC 7162) to sessions that never enabled QRESYNC.",
    ImapStatusUidvalidityWrong "imap_status_uidvalidity_wrong" "Give a UIDVALIDITY one higher in STATUS than SELECT gives for the same mailbox.",
    ImapSearchBeyondExists "imap_search_beyond_exists" "Number SEARCH results by the mailbox as it is now, counting messages the session has not been told of (announced only after the results).",
    ImapFetchExpungedEmpty "imap_fetch_expunged_empty" "Answer FETCH of a message another session expunged, before this session was told, with RFC822.SIZE 0 and empty sections instead of its data.",
    ImapExpungedRefused "imap_expunged_refused" "Refuse STORE, COPY and MOVE with NO [EXPUNGEISSUED] when another session expunged one of the messages they name and this session has not been told yet.",
    ImapStatusUidnextLow "imap_status_uidnext_low" "Give UIDNEXT in STATUS one lower than it is: the UID of the newest message, not the next one.",
    ImapFetchBeforeExists "imap_fetch_before_exists" "Report messages other sessions added with a FETCH of their flags before the EXISTS that announces them.",
    ImapExpungeUnannounced "imap_expunge_unannounced" "Report the expunge of a message other sessions added and removed before this session was told of it, numbered after the last message it knows.",
    ImapNewMessagesUnordered "imap_new_messages_unordered" "Number messages that arrived together in the reverse of their UID order.",
    ImapRangeEndExcluded "imap_range_end_excluded" "Treat a range of message numbers a:b as ending before b (half-open), so that FETCH 1:* leaves out the last message.",
    ImapAppendBareLf "imap_append_bare_lf" "Store APPENDed messages with bare LF line ends, so that they are served altered.",
    ImapQuotedUnescaped "imap_quoted_unescaped" "Write the quoted strings of ENVELOPE without escaping the quote and backslash characters in them.",
    ImapReversedRangeBad "imap_reversed_range_bad" "Answer BAD to a set with a range written high end first (5:2), which RFC 3501 9 allows.",
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(name: &str) -> Result<Policy, String> {
        Policy::ALL
            .iter()
            .copied()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                format!("unknown fault `{name}`; known: {}", names.join(", "))
            })
    }
}

/// One injected behaviour.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFault {
    /// Where it applies: an SMTP verb (`MAIL`, `RCPT`, ...), `CONNECT` (the greeting), `EOM`
    /// (after the message data, instead of storing it), or `*` (every command).
    pub at: String,
    /// Chance per occurrence, 0.0 to 1.0.
    #[serde(default = "always")]
    pub probability: f64,
    /// What happens.
    pub action: FaultAction,
}

fn always() -> f64 {
    1.0
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this reply instead of processing the command.
    Reply {
        /// Reply code, 400-599 (`421` also closes the connection).
        code: u16,
        /// Reply text, enhanced status code included if wanted.
        text: String,
    },
    /// Wait this many milliseconds, then process the command normally.
    DelayMs(u64),
    /// Close the connection without a reply.
    Disconnect,
}

/// The effect of faults at one protocol point, after the dice are rolled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Injection {
    /// Time to wait first.
    pub delay: Duration,
    /// Then either replace the reply, or drop the connection, or proceed normally.
    pub outcome: Option<InjectedOutcome>,
}

/// An outcome that replaces normal processing.
#[derive(Debug, Clone, PartialEq)]
pub enum InjectedOutcome {
    /// Send this reply instead.
    Reply(u16, String),
    /// Close the connection silently.
    Disconnect,
}

impl Faults {
    /// Whether a policy fault is on.
    pub fn has(&self, policy: Policy) -> bool {
        self.policy.contains(&policy)
    }

    /// Checks value ranges; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        for (index, fault) in self.commands.iter().enumerate() {
            if !(0.0..=1.0).contains(&fault.probability) {
                return Err(format!(
                    "faults.commands[{index}].probability must be between 0.0 and 1.0"
                ));
            }
            if fault.at.is_empty() {
                return Err(format!("faults.commands[{index}].at must name a command"));
            }
            if let FaultAction::Reply { code, text } = &fault.action {
                if !(400..=599).contains(code) {
                    return Err(format!(
                        "faults.commands[{index}].action.reply.code {code} is not a 4xx/5xx code"
                    ));
                }
                if text.contains(['\r', '\n']) {
                    return Err(format!(
                        "faults.commands[{index}].action.reply.text must be one line"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Rolls the dice for every fault at `point` (`CONNECT`, `EOM` or a verb).
    pub fn inject(&self, point: &str) -> Injection {
        let mut injection = Injection::default();
        for fault in &self.commands {
            let applies = fault.at == "*" || fault.at.eq_ignore_ascii_case(point);
            if !applies || fastrand::f64() >= fault.probability {
                continue;
            }
            match &fault.action {
                FaultAction::DelayMs(ms) => injection.delay += Duration::from_millis(*ms),
                FaultAction::Reply { code, text } if injection.outcome.is_none() => {
                    injection.outcome = Some(InjectedOutcome::Reply(*code, text.clone()));
                }
                FaultAction::Disconnect if injection.outcome.is_none() => {
                    injection.outcome = Some(InjectedOutcome::Disconnect);
                }
                _ => {}
            }
        }
        injection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at: &str, probability: f64, action: FaultAction) -> CommandFault {
        CommandFault {
            at: at.into(),
            probability,
            action,
        }
    }

    #[test]
    fn certain_faults_fire_and_impossible_ones_never_do() {
        let faults = Faults {
            commands: vec![
                fault("rcpt", 1.0, FaultAction::DelayMs(5)),
                fault(
                    "RCPT",
                    1.0,
                    FaultAction::Reply {
                        code: 451,
                        text: "4.3.0 try later".into(),
                    },
                ),
                fault("MAIL", 0.0, FaultAction::Disconnect),
            ],
            ..Faults::default()
        };
        let rcpt = faults.inject("RCPT");
        assert_eq!(rcpt.delay, Duration::from_millis(5));
        assert_eq!(
            rcpt.outcome,
            Some(InjectedOutcome::Reply(451, "4.3.0 try later".into()))
        );
        for _ in 0..100 {
            assert_eq!(faults.inject("MAIL"), Injection::default());
        }
        assert_eq!(faults.inject("DATA"), Injection::default());
    }

    #[test]
    fn validation_names_the_entry() {
        let faults = Faults {
            commands: vec![fault(
                "MAIL",
                1.0,
                FaultAction::Reply {
                    code: 250,
                    text: "ok".into(),
                },
            )],
            ..Faults::default()
        };
        assert!(faults.validate().unwrap_err().contains("commands[0]"));
    }

    #[test]
    fn policy_faults_by_name() {
        let mut faults = Faults::default();
        assert!(!faults.has(Policy::OpenRelay));
        faults.policy.insert("open_relay".parse().unwrap());
        assert!(faults.has(Policy::OpenRelay));
        assert!(
            "no_such_fault"
                .parse::<Policy>()
                .unwrap_err()
                .contains("open_relay")
        );
        for policy in Policy::ALL {
            assert_eq!(policy.name().parse::<Policy>(), Ok(*policy));
            let yaml: Faults =
                serde_saphyr::from_str(&format!("policy: [{}]\n", policy.name())).unwrap();
            assert!(yaml.has(*policy), "{} in a config file", policy.name());
        }
    }
}

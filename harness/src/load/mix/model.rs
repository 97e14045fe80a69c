//! What one IMAP client has been told about the mailbox it has selected, and the checks every
//! response is held to against it. Sans-I/O: the driver feeds in what the server sent, in
//! order, and gets back what broke a rule.

use std::collections::BTreeSet;

use crate::clients::imap::{Code, Fetch, Response, Selected};

/// How strongly the RFC words the rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// MUST or MUST NOT: the run fails.
    Must,
    /// SHOULD, or a choice the RFCs allow that clients cope with badly: reported, the run
    /// does not fail on it.
    Should,
}

/// One broken rule, before the driver adds who saw it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// MUST or SHOULD.
    pub level: Level,
    /// A short class, for counting: `exists-fell`, `uid-order`, ...
    pub class: &'static str,
    /// The RFC and section.
    pub rfc: &'static str,
    /// What was seen, in a sentence.
    pub detail: String,
}

impl Finding {
    pub(super) fn must(class: &'static str, rfc: &'static str, detail: String) -> Finding {
        Finding {
            level: Level::Must,
            class,
            rfc,
            detail,
        }
    }

    pub(super) fn should(class: &'static str, rfc: &'static str, detail: String) -> Finding {
        Finding {
            level: Level::Should,
            class,
            rfc,
            detail,
        }
    }
}

/// The command whose responses are being read: what the rules on unsolicited responses
/// depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum During {
    /// FETCH, STORE or SEARCH by sequence number: no EXPUNGE may be sent (RFC 3501 7.4.1).
    SequenceCommand,
    /// Any other command, UID FETCH/STORE/SEARCH included, or IDLE.
    Other,
}

/// One message as this client knows it: its UID once a FETCH told it, its flags once a FETCH
/// listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// The UID, once known.
    pub uid: Option<u32>,
    /// The flags, without `\Recent` (which differs per session), uppercased.
    pub flags: Option<BTreeSet<String>>,
    /// The MODSEQ last reported (RFC 7162).
    pub modseq: Option<u64>,
}

/// The selected mailbox as this client has been told it.
#[derive(Debug, Clone)]
pub struct View {
    /// The mailbox's name.
    pub mailbox: String,
    /// Message `n` is `slots[n - 1]`.
    pub slots: Vec<Slot>,
    /// The keywords and flags of the last FLAGS response, uppercased.
    pub known_flags: BTreeSet<String>,
    /// PERMANENTFLAGS includes `\*`: new keywords may be created.
    pub may_create_keywords: bool,
    /// The keywords PERMANENTFLAGS lists, as sent.
    pub permanent_keywords: Vec<String>,
    /// Opened with EXAMINE, or the server said READ-ONLY.
    pub read_only: bool,
    /// The highest HIGHESTMODSEQ reported since the mailbox was selected.
    pub highest_modseq: Option<u64>,
}

/// Flags compared without regard to case (RFC 3501 flag names are atoms; servers keep the case
/// a client first used), `\Recent` left out: it is per session.
fn normalise_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    flags
        .into_iter()
        .filter(|flag| !flag.eq_ignore_ascii_case("\\Recent"))
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Whether `flag` is a keyword (no backslash): what must be in FLAGS before a FETCH uses it.
fn is_keyword(flag: &str) -> bool {
    !flag.starts_with('\\')
}

impl View {
    /// The view a SELECT or EXAMINE gives: its responses taken in order, as a later EXPUNGE
    /// in the same answer counts against the EXISTS before it; and what they broke.
    pub fn opened(mailbox: &str, selected: &Selected, examine: bool) -> (View, Vec<Finding>) {
        let permanent = selected.permanent_flags.clone().unwrap_or_default();
        let mut view = View {
            mailbox: mailbox.to_owned(),
            slots: Vec::new(),
            known_flags: BTreeSet::new(),
            may_create_keywords: permanent.iter().any(|flag| flag == "\\*"),
            permanent_keywords: permanent
                .iter()
                .filter(|flag| is_keyword(flag) && *flag != "\\*")
                .cloned()
                .collect(),
            read_only: examine || selected.read_only == Some(true),
            highest_modseq: None,
        };
        let mut findings = Vec::new();
        for response in &selected.result.untagged {
            findings.extend(view.apply(response, During::Other));
        }
        view.known_flags
            .extend(normalise_flags(permanent.iter().map(String::as_str)));
        if let Some(value) = selected.highest_modseq {
            findings.extend(view.highest_modseq_seen(value));
        }
        (view, findings)
    }

    /// How many messages this client believes the mailbox holds.
    pub fn len(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Whether the client believes the mailbox is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The UIDs known, in sequence order.
    pub fn known_uids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|slot| slot.uid).collect()
    }

    /// Takes in one untagged response, sent while `during` was in progress.
    pub fn apply(&mut self, response: &Response, during: During) -> Vec<Finding> {
        let mut findings = Vec::new();
        match response {
            Response::Exists(count) => {
                let count = *count as usize;
                if count < self.slots.len() {
                    findings.push(Finding::must(
                        "exists-fell",
                        "RFC 3501 7.3.1, 7.4.1",
                        format!(
                            "EXISTS {count} while this client knew of {} messages and was sent no \
                             EXPUNGE for the difference",
                            self.slots.len()
                        ),
                    ));
                    self.slots.truncate(count);
                } else {
                    self.slots.resize(count, Slot::default());
                }
            }
            Response::Expunge(number) => {
                if during == During::SequenceCommand {
                    findings.push(Finding::must(
                        "expunge-during-sequence-command",
                        "RFC 3501 7.4.1",
                        format!(
                            "EXPUNGE {number} sent while answering a FETCH, STORE or SEARCH by \
                             sequence number"
                        ),
                    ));
                }
                let index = *number as usize;
                if index == 0 || index > self.slots.len() {
                    findings.push(Finding::must(
                        "expunge-out-of-range",
                        "RFC 3501 7.4.1",
                        format!(
                            "EXPUNGE {number} while this client knew of {} messages",
                            self.slots.len()
                        ),
                    ));
                } else {
                    self.slots.remove(index - 1);
                }
            }
            Response::Flags(flags) => {
                self.known_flags = normalise_flags(flags.iter().map(String::as_str));
            }
            Response::Fetch(fetch) => findings.extend(self.fetched(fetch)),
            Response::Status(status) => {
                if let Some(Code::HighestModseq(value)) = status.code {
                    findings.extend(self.highest_modseq_seen(value));
                }
                if let Some(Code::PermanentFlags(flags)) = &status.code {
                    self.known_flags
                        .extend(normalise_flags(flags.iter().map(String::as_str)));
                }
            }
            Response::Vanished { earlier, uids } => findings.push(Finding::must(
                "vanished-unasked",
                "RFC 7162 3.2.10",
                format!(
                    "VANISHED{} {uids} sent to a client that did not enable QRESYNC",
                    if *earlier { " (EARLIER)" } else { "" }
                ),
            )),
            _ => {}
        }
        findings
    }

    fn highest_modseq_seen(&mut self, value: u64) -> Option<Finding> {
        let before = self.highest_modseq;
        self.highest_modseq = Some(before.map_or(value, |b| b.max(value)));
        match before {
            Some(before) if value < before => Some(Finding::must(
                "modseq-fell",
                "RFC 7162 3.1.1",
                format!("HIGHESTMODSEQ {value} after {before} in the same mailbox"),
            )),
            _ => None,
        }
    }

    fn fetched(&mut self, fetch: &Fetch) -> Vec<Finding> {
        let mut findings = Vec::new();
        let index = fetch.seq as usize;
        if index == 0 || index > self.slots.len() {
            findings.push(Finding::must(
                "fetch-out-of-range",
                "RFC 3501 7.4.2",
                format!(
                    "FETCH response for message {} while this client knew of {} messages (no \
                     EXISTS announced it)",
                    fetch.seq,
                    self.slots.len()
                ),
            ));
            return findings;
        }
        if let Some(uid) = fetch.uid() {
            let slot = &self.slots[index - 1];
            if let Some(known) = slot.uid
                && known != uid
            {
                findings.push(Finding::must(
                    "sequence-shifted",
                    "RFC 3501 2.3.1.2",
                    format!(
                        "message {} has UID {uid}, but the EXPUNGE and EXISTS responses this \
                         client was sent put UID {known} there",
                        fetch.seq
                    ),
                ));
            }
            let before = self.slots[..index - 1].iter().rev().find_map(|s| s.uid);
            let after = self.slots[index..].iter().find_map(|s| s.uid);
            if before.is_some_and(|b| b >= uid) || after.is_some_and(|a| a <= uid) {
                findings.push(Finding::must(
                    "uid-order",
                    "RFC 3501 2.3.1.1",
                    format!(
                        "message {} has UID {uid}, out of order with its neighbours (UID {} \
                         before it, {} after it)",
                        fetch.seq,
                        before.map_or("none".into(), |b| b.to_string()),
                        after.map_or("none".into(), |a| a.to_string()),
                    ),
                ));
            }
            self.slots[index - 1].uid = Some(uid);
        }
        if let Some(flags) = fetch.flags() {
            let unannounced: Vec<&str> = flags
                .iter()
                .copied()
                .filter(|flag| {
                    is_keyword(flag) && !self.known_flags.contains(&flag.to_ascii_uppercase())
                })
                .collect();
            if !unannounced.is_empty() {
                findings.push(Finding::should(
                    "keyword-before-flags",
                    "RFC 3501 7.2.6",
                    format!(
                        "FETCH of message {} carries {} that no FLAGS response announced to this \
                         client",
                        fetch.seq,
                        unannounced.join(" ")
                    ),
                ));
                // Counted once: later FETCHes of the same keyword are the same finding.
                self.known_flags
                    .extend(unannounced.iter().map(|f| f.to_ascii_uppercase()));
            }
            self.slots[index - 1].flags = Some(normalise_flags(flags));
        }
        if let Some(modseq) = fetch.modseq() {
            let slot = &mut self.slots[index - 1];
            if let Some(before) = slot.modseq
                && modseq < before
            {
                findings.push(Finding::must(
                    "modseq-fell",
                    "RFC 7162 3.1.1",
                    format!(
                        "message {} (UID {}) reported MODSEQ {modseq} after {before}",
                        fetch.seq,
                        slot.uid.map_or("unknown".into(), |u| u.to_string())
                    ),
                ));
            }
            slot.modseq = Some(slot.modseq.map_or(modseq, |b| b.max(modseq)));
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::imap::{CommandResult, Status, StatusKind, Value};

    fn selected(exists: u32, flags: &[&str]) -> Selected {
        Selected {
            exists: Some(exists),
            recent: None,
            uidvalidity: Some(7),
            uidnext: None,
            unseen: None,
            flags: Some(flags.iter().map(|f| f.to_string()).collect()),
            permanent_flags: None,
            read_only: Some(false),
            highest_modseq: None,
            result: CommandResult {
                tag: "a1".into(),
                tagged: Status {
                    kind: StatusKind::Ok,
                    code: Some(Code::ReadWrite),
                    text: String::new(),
                },
                untagged: vec![
                    Response::Flags(flags.iter().map(|f| f.to_string()).collect()),
                    Response::Exists(exists),
                ],
            },
        }
    }

    fn fetch(seq: u32, uid: u32, flags: &[&str]) -> Response {
        Response::Fetch(Fetch {
            seq,
            items: vec![
                ("UID".into(), Value::Number(uid.into())),
                (
                    "FLAGS".into(),
                    Value::List(flags.iter().map(|f| Value::Atom(f.to_string())).collect()),
                ),
            ],
        })
    }

    fn classes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.class).collect()
    }

    #[test]
    fn sequence_numbers_follow_expunge_and_exists() {
        let mut view = View::opened("m", &selected(3, &["\\Seen"]), false).0;
        for (seq, uid) in [(1, 10), (2, 11), (3, 12)] {
            assert!(view.apply(&fetch(seq, uid, &[]), During::Other).is_empty());
        }
        assert!(view.apply(&Response::Expunge(2), During::Other).is_empty());
        assert!(view.apply(&Response::Exists(3), During::Other).is_empty());
        assert_eq!(view.known_uids(), [10, 12]);
        // Message 2 is now UID 12; a server that still calls it 11 did not shift.
        let found = view.apply(&fetch(2, 11, &[]), During::Other);
        assert_eq!(classes(&found), ["sequence-shifted"]);
        // The new message 3 must be above 12.
        let mut view = View::opened("m", &selected(2, &[]), false).0;
        view.apply(&fetch(1, 10, &[]), During::Other);
        view.apply(&fetch(2, 12, &[]), During::Other);
        view.apply(&Response::Exists(3), During::Other);
        assert_eq!(
            classes(&view.apply(&fetch(3, 12, &[]), During::Other)),
            ["uid-order"]
        );
    }

    #[test]
    fn a_select_answer_is_taken_in_order() {
        let mut answer = selected(5, &[]);
        answer.result.untagged.push(Response::Expunge(2));
        let (view, findings) = View::opened("m", &answer, false);
        assert!(findings.is_empty());
        assert_eq!(view.len(), 4);
    }

    #[test]
    fn exists_falls_only_by_expunge() {
        let mut view = View::opened("m", &selected(3, &[]), false).0;
        assert_eq!(
            classes(&view.apply(&Response::Exists(2), During::Other)),
            ["exists-fell"]
        );
        assert_eq!(view.len(), 2);
        assert_eq!(
            classes(&view.apply(&Response::Expunge(5), During::Other)),
            ["expunge-out-of-range"]
        );
        assert_eq!(
            classes(&view.apply(&fetch(4, 1, &[]), During::Other)),
            ["fetch-out-of-range"]
        );
    }

    #[test]
    fn no_expunge_while_answering_by_sequence_number() {
        let mut view = View::opened("m", &selected(3, &[]), false).0;
        assert_eq!(
            classes(&view.apply(&Response::Expunge(1), During::SequenceCommand)),
            ["expunge-during-sequence-command"]
        );
        assert!(view.apply(&Response::Expunge(1), During::Other).is_empty());
        assert_eq!(view.len(), 1);
    }

    #[test]
    fn keywords_must_be_announced_before_use() {
        let mut view = View::opened("m", &selected(2, &["\\Seen", "$Label1"]), false).0;
        assert!(
            view.apply(
                &fetch(1, 1, &["\\Seen", "$label1", "\\Recent"]),
                During::Other
            )
            .is_empty()
        );
        let found = view.apply(&fetch(2, 2, &["$Label2"]), During::Other);
        assert_eq!(classes(&found), ["keyword-before-flags"]);
        assert_eq!(found[0].level, Level::Should);
        // Reported once per keyword.
        assert!(
            view.apply(&fetch(2, 2, &["$Label2"]), During::Other)
                .is_empty()
        );
        view.apply(&Response::Flags(vec!["$Label3".into()]), During::Other);
        assert!(
            view.apply(&fetch(1, 1, &["$Label3"]), During::Other)
                .is_empty()
        );
        assert_eq!(
            view.slots[0].flags.as_ref().map(|f| f.len()),
            Some(1),
            "\\Recent is left out"
        );
    }

    #[test]
    fn modseq_only_rises() {
        let mut view = View::opened("m", &selected(1, &[]), false).0;
        let with_modseq = |modseq: u64| {
            Response::Fetch(Fetch {
                seq: 1,
                items: vec![
                    ("UID".into(), Value::Number(4)),
                    ("MODSEQ".into(), Value::List(vec![Value::Number(modseq)])),
                ],
            })
        };
        assert!(view.apply(&with_modseq(9), During::Other).is_empty());
        assert!(view.apply(&with_modseq(12), During::Other).is_empty());
        assert_eq!(
            classes(&view.apply(&with_modseq(11), During::Other)),
            ["modseq-fell"]
        );
        let highest = |value| {
            Response::Status(Status {
                kind: StatusKind::Ok,
                code: Some(Code::HighestModseq(value)),
                text: String::new(),
            })
        };
        assert!(view.apply(&highest(20), During::Other).is_empty());
        assert_eq!(
            classes(&view.apply(&highest(19), During::Other)),
            ["modseq-fell"]
        );
    }
}

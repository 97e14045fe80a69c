//! The selected state (RFC 3501 6.4): FETCH, STORE, COPY, MOVE (RFC 6851), EXPUNGE, UID EXPUNGE
//! (RFC 4315), SEARCH, CHECK, CLOSE and UNSELECT (RFC 3691), each with its UID form, and the
//! CONDSTORE modifiers (RFC 7162).
//!
//! Message numbers are the client's: those of [`Selected`], which may still hold messages another
//! session expunged until their EXPUNGE can be reported.

use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::{CommandBody, FetchModifier, StoreModifier};
use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use imap_codec::imap_types::IntoStatic;

use super::extensions::Extension;
use super::mailboxes::{db, flag_list};
use super::message;
use super::search::{self, SearchMessage};
use super::session::{Next, Session, line, ok};
use crate::faults::Policy;
use crate::store::{FlagOp, MessageMeta, StoreError};

/// Whether a number is in a sequence set, `*` standing for `last` (RFC 3501 9: `n:m` equals
/// `m:n`). Never expands ranges.
pub(super) fn set_contains(set: &SequenceSet, number: u32, last: u32) -> bool {
    set_contains_with(set, number, last, false)
}

/// [`set_contains`], or with `half_open` (the `imap_range_end_excluded` fault) ranges that end
/// before their high end.
fn set_contains_with(set: &SequenceSet, number: u32, last: u32, half_open: bool) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => last,
    };
    set.0.as_ref().iter().any(|sequence| match sequence {
        Sequence::Single(v) => value(v) == number,
        Sequence::Range(a, b) => {
            let (low, high) = (value(a).min(value(b)), value(a).max(value(b)));
            (low..=high).contains(&number) && !(half_open && number == high && low != high)
        }
    })
}

/// The largest explicit number in a set (for checking message numbers).
fn set_max(set: &SequenceSet) -> u32 {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => 0,
    };
    set.0
        .as_ref()
        .iter()
        .map(|sequence| match sequence {
            Sequence::Single(v) => value(v),
            Sequence::Range(a, b) => value(a).max(value(b)),
        })
        .max()
        .unwrap_or(0)
}

/// Whether a set has a range of two numbers written high end first, such as `5:2`.
fn has_reversed_range(set: &SequenceSet) -> bool {
    set.0.as_ref().iter().any(|sequence| {
        matches!(sequence, Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) if a > b)
    })
}

/// A quoted string's escapes removed, for the `imap_quoted_unescaped` fault: `\"` and `\\`
/// written as the bare character.
fn unescaped(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut iter = bytes.iter().peekable();
    while let Some(&b) = iter.next() {
        if b == b'\\'
            && let Some(&&next) = iter.peek()
            && (next == b'"' || next == b'\\')
        {
            out.push(next);
            iter.next();
            continue;
        }
        out.push(b);
    }
    out
}

/// Ascending numbers as a compact set: `1:3,5`.
pub(super) fn compact(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The bytes of one item as imap-codec writes it inside a FETCH response.
fn encode_item(item: MessageDataItem<'_>) -> Vec<u8> {
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::from(item),
    });
    let bytes = ResponseCodec::default().encode(&response).dump();
    let inner = bytes
        .strip_prefix(b"* 1 FETCH (")
        .and_then(|rest| rest.strip_suffix(b")\r\n"));
    inner.map(<[u8]>::to_vec).unwrap_or(bytes)
}

/// A section specifier as the client wrote it, for the item name in the response.
fn section_name(section: Option<&Section<'_>>) -> String {
    let part = |p: &imap_codec::imap_types::fetch::Part| {
        p.0.as_ref()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".")
    };
    let with_part = |p: &Option<imap_codec::imap_types::fetch::Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part(p)),
        None => what.to_owned(),
    };
    let fields = |list: &Vec1<imap_codec::imap_types::core::AString<'_>>| {
        list.as_ref()
            .iter()
            .map(|f| astring(&String::from_utf8_lossy(f.as_ref())))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => part(p),
        Some(Section::Header(p)) => with_part(p, "HEADER"),
        Some(Section::HeaderFields(p, list)) => {
            format!("{} ({})", with_part(p, "HEADER.FIELDS"), fields(list))
        }
        Some(Section::HeaderFieldsNot(p, list)) => {
            format!("{} ({})", with_part(p, "HEADER.FIELDS.NOT"), fields(list))
        }
        Some(Section::Text(p)) => with_part(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", part(p)),
    }
}

/// A header field name as an IMAP astring: an atom when it can be, else a quoted string.
fn astring(name: &str) -> String {
    let atom = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
    if atom {
        name.to_owned()
    } else {
        let escaped: String = name
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

/// Appends an IMAP literal.
fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// RFC 3501 date-time of a Unix time, in UTC.
fn internal_date(secs: i64) -> String {
    let time =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        time.day(),
        MONTHS[usize::from(u8::from(time.month())) - 1],
        time.year(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Octets of FETCH responses gathered before they are sent (see [`Session::resume`]).
pub(super) const FETCH_CHUNK: usize = 1024 * 1024;

/// The line the `imap_body_changes` fault puts at the top of a flagged message.
const FAULT_HEADER: &[u8] = b"X-Reference-Fault: flagged\r\n";

/// The NO to a command naming messages another session expunged (RFC 5530).
const EXPUNGE_ISSUED: &str = "[EXPUNGEISSUED] Some of the messages were expunged meanwhile";

/// A FETCH under way: what is left to send and how.
#[derive(Debug)]
pub(super) struct FetchJob {
    tag: String,
    account: String,
    names: Vec<MessageDataItemName<'static>>,
    targets: std::collections::VecDeque<Target>,
    metas: HashMap<u32, MessageMeta>,
    changed_since: Option<u64>,
    needs_octets: bool,
    size_without_cr: bool,
    flat: bool,
    /// Some message was expunged meanwhile and could not be read any more (the tagged reply
    /// says EXPUNGEISSUED).
    vanished: bool,
    /// Messages another session expunged that this one has not been told of yet, read from
    /// what the store keeps of them (RFC 2180 4.1.1).
    ghosts: std::collections::HashSet<u32>,
    /// UID FETCH may be followed by EXPUNGE responses; FETCH by number may not.
    expunges_allowed: bool,
}

/// What a FETCH needs to know about one message besides the item names.
#[derive(Debug)]
struct Target {
    seq: u32,
    uid: u32,
}

impl Session {
    /// Commands of the selected state. Gives the command back when it is not one of them.
    pub(super) fn selected_command<'a>(
        &mut self,
        tag: &str,
        account: &str,
        body: CommandBody<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Next, CommandBody<'a>> {
        let selected_only = matches!(
            body,
            CommandBody::Fetch { .. }
                | CommandBody::Store { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. }
                | CommandBody::Expunge
                | CommandBody::ExpungeUid { .. }
                | CommandBody::Search { .. }
                | CommandBody::Check
                | CommandBody::Close
                | CommandBody::Unselect
        );
        if !selected_only {
            return Err(body);
        }
        if self.selected.is_none() {
            self.refuse(
                out,
                tag,
                "BAD",
                &format!("{} needs a selected mailbox", body.name()),
            );
            return Ok(Next::Continue);
        }
        match body {
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                return Ok(self.fetch(
                    tag,
                    account,
                    &sequence_set,
                    macro_or_item_names,
                    uid,
                    &modifiers,
                    out,
                ));
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let flags: Vec<String> = flags.iter().map(Flag::to_string).collect();
                let mut unchanged_since = modifiers.iter().map(|m| match m {
                    StoreModifier::UnchangedSince(n) => *n,
                });
                let unchanged_since = unchanged_since.next_back();
                self.store_command(
                    tag,
                    account,
                    &sequence_set,
                    kind,
                    response == StoreResponse::Silent,
                    flags,
                    uid,
                    unchanged_since,
                    out,
                );
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.transfer(tag, account, &sequence_set, &mailbox, uid, false, out);
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.transfer(tag, account, &sequence_set, &mailbox, uid, true, out);
            }
            CommandBody::Expunge => self.expunge(tag, account, None, out),
            CommandBody::ExpungeUid { sequence_set } => {
                let all = self.config.faults.has(Policy::ImapUidExpungeAll);
                let only = Some(&sequence_set).filter(|_| !all);
                self.expunge(tag, account, only, out);
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(tag, account, charset.as_ref(), &criteria, uid, out),
            CommandBody::Check => ok(out, tag, "CHECK completed"),
            CommandBody::Close | CommandBody::Unselect => {
                let close = matches!(body, CommandBody::Close);
                let expunges = if close {
                    !self.config.faults.has(Policy::ImapCloseKeepsDeleted)
                } else {
                    self.config.faults.has(Policy::ImapUnselectExpunges)
                };
                if let Some(selected) = self.selected.take()
                    && !selected.read_only
                    && expunges
                {
                    // Silently (RFC 3501 6.4.2): no EXPUNGE responses.
                    let (acct, mbox) = (account.to_owned(), selected.name.clone());
                    if let Err(error) =
                        db(&self.store, move |s| s.expunge_deleted(&acct, &mbox, None))
                    {
                        return Ok({
                            self.store_failed(out, tag, &error);
                            Next::Continue
                        });
                    }
                }
                ok(out, tag, &format!("{} completed", body.name()));
            }
            other => return Err(other),
        }
        Ok(Next::Continue)
    }

    /// The messages a set names, in ascending order, or `None` after a BAD for a message
    /// number the client cannot know.
    fn targets(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> Option<Vec<Target>> {
        if self.config.faults.has(Policy::ImapReversedRangeBad) && has_reversed_range(set) {
            self.refuse(out, tag, "BAD", "Invalid range: the low end comes first");
            return None;
        }
        let selected = self.selected.as_ref()?;
        let count = u32::try_from(selected.uids.len()).unwrap_or(u32::MAX);
        if uid {
            let last = selected.uids.last().copied().unwrap_or(0);
            return Some(
                selected
                    .uids
                    .iter()
                    .enumerate()
                    .filter(|(_, uid)| set_contains(set, **uid, last))
                    .map(|(index, uid)| Target {
                        seq: u32::try_from(index + 1).unwrap_or(u32::MAX),
                        uid: *uid,
                    })
                    .collect(),
            );
        }
        if count == 0 || set_max(set) > count {
            self.refuse(out, tag, "BAD", "No such message (invalid message number)");
            return None;
        }
        let half_open = self.config.faults.has(Policy::ImapRangeEndExcluded);
        Some(
            (1..=count)
                .filter(|seq| set_contains_with(set, *seq, count, half_open))
                .map(|seq| Target {
                    seq,
                    uid: selected.uids[(seq - 1) as usize],
                })
                .collect(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        tag: &str,
        account: &str,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        out: &mut Vec<u8>,
    ) -> Next {
        let mut names: Vec<MessageDataItemName<'_>> = match names {
            MacroOrMessageDataItemNames::Macro(m) => m
                .expand()
                .into_iter()
                .map(IntoStatic::into_static)
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(names) => names,
        };
        let mut changed_since = None;
        for modifier in modifiers {
            match modifier {
                FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
                FetchModifier::Vanished => {
                    self.refuse(out, tag, "BAD", "VANISHED needs QRESYNC, not offered");
                    return Next::Continue;
                }
            }
        }
        if changed_since.is_some() || names.contains(&MessageDataItemName::ModSeq) {
            self.condstore = true;
        }
        if (uid || self.condstore) && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        if self.condstore && !names.contains(&MessageDataItemName::ModSeq) {
            names.push(MessageDataItemName::ModSeq);
        }
        let Some(targets) = self.targets(tag, set, uid, out) else {
            return Next::Continue;
        };
        let Some(selected) = self.selected.as_ref() else {
            return Next::Continue;
        };
        let faults = &self.config.faults;
        let (size_without_cr, peek_sets_seen, flat) = (
            faults.has(Policy::ImapSizeWithoutCr),
            faults.has(Policy::ImapPeekSetsSeen),
            faults.has(Policy::ImapBodystructureFlat),
        );
        let needs_octets = names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Body
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::Envelope
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
            ) || (size_without_cr && *n == MessageDataItemName::Rfc822Size)
        });
        let sets_seen = !selected.read_only
            && names.iter().any(|n| {
                matches!(
                    n,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                ) || (peek_sets_seen && matches!(n, MessageDataItemName::BodyExt { .. }))
            });
        if names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
            )
        }) {
            self.refuse(out, tag, "BAD", "BINARY is not offered by this server");
            return Next::Continue;
        }
        let (acct, mbox) = (account.to_owned(), selected.name.clone());
        let wanted: Vec<u32> = targets.iter().map(|t| t.uid).collect();
        let refuse_expunged = self.config.faults.has(Policy::ImapFetchExpungedRefused);
        let loaded = db(&self.store, move |s| {
            let mut metas: HashMap<u32, MessageMeta> = s
                .messages_with_uids(&acct, &mbox, &wanted)?
                .into_iter()
                .map(|m| (m.uid, m))
                .collect();
            if sets_seen {
                let unseen: Vec<u32> = wanted
                    .iter()
                    .copied()
                    .filter(|uid| {
                        metas
                            .get(uid)
                            .is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                    })
                    .collect();
                if !unseen.is_empty() {
                    let done = s.store_flags(
                        &acct,
                        &mbox,
                        &unseen,
                        FlagOp::Add,
                        &["\\Seen".to_owned()],
                        None,
                    )?;
                    for changed in done.changed {
                        if let Some(meta) = metas.get_mut(&changed.uid) {
                            meta.flags = changed.flags;
                            meta.modseq = changed.modseq;
                        }
                    }
                }
            }
            // Expunged by another session, but still listed here: the client may read them
            // until it is told (RFC 2180 4.1.1).
            let missing: Vec<u32> = wanted
                .iter()
                .copied()
                .filter(|uid| !metas.contains_key(uid))
                .collect();
            let mut ghosts = std::collections::HashSet::new();
            if !missing.is_empty() && !refuse_expunged {
                for meta in s.expunged_messages(&acct, &mbox, &missing)? {
                    ghosts.insert(meta.uid);
                    metas.insert(meta.uid, meta);
                }
            }
            Ok((metas, ghosts))
        });
        let (metas, ghosts) = match loaded {
            Ok(metas) => metas,
            Err(error) => {
                self.store_failed(out, tag, &error);
                return Next::Continue;
            }
        };
        let job = FetchJob {
            tag: tag.to_owned(),
            account: account.to_owned(),
            names: names.into_iter().map(IntoStatic::into_static).collect(),
            targets: targets.into(),
            metas,
            changed_since,
            needs_octets,
            size_without_cr,
            flat,
            vanished: false,
            ghosts,
            expunges_allowed: uid || self.config.faults.has(Policy::ImapExpungeDuringFetch),
        };
        self.fetch_some(job, out)
    }

    /// Writes FETCH responses until the job is done or [`FETCH_CHUNK`] octets are waiting; in
    /// the latter case the job is kept for [`Session::resume`] and the driver sends what there
    /// is first, so a `FETCH 1:* BODY[]` never holds more than about one chunk and one message.
    fn fetch_some(&mut self, mut job: FetchJob, out: &mut Vec<u8>) -> Next {
        let (tag, account) = (job.tag.clone(), job.account.clone());
        let (tag, account) = (tag.as_str(), account.as_str());
        let (changed_since, needs_octets, size_without_cr, flat) = (
            job.changed_since,
            job.needs_octets,
            job.size_without_cr,
            job.flat,
        );
        let faults = &self.config.faults;
        let (refuse_expunged, keywords_unannounced, body_changes, modseq_regress) = (
            faults.has(Policy::ImapFetchExpungedRefused),
            faults.has(Policy::ImapKeywordWithoutFlags),
            faults.has(Policy::ImapBodyChanges),
            faults.has(Policy::ImapModseqRegress),
        );
        let served_empty = faults.has(Policy::ImapFetchExpungedEmpty);
        let quoted_unescaped = faults.has(Policy::ImapQuotedUnescaped);
        // Taken out while messages are written, put back if the job pauses.
        let names = std::mem::take(&mut job.names);
        let metas = std::mem::take(&mut job.metas);
        while let Some(target) = job.targets.pop_front() {
            if out.len() >= FETCH_CHUNK {
                job.targets.push_front(target);
                job.names = names;
                job.metas = metas;
                self.fetch_job = Some(job);
                return Next::More;
            }
            let Some(meta) = metas.get(&target.uid) else {
                job.vanished = true;
                continue;
            };
            if changed_since.is_some_and(|since| meta.modseq <= since) {
                continue;
            }
            // The `imap_fetch_expunged_empty` fault: a message expunged elsewhere has no content.
            let emptied = served_empty && job.ghosts.contains(&target.uid);
            let octets = if needs_octets && !emptied {
                let (acct, mbox, uid) = (
                    account.to_owned(),
                    self.selected
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    target.uid,
                );
                let ghost = job.ghosts.contains(&uid);
                match db(&self.store, move |s| {
                    if ghost {
                        return s.read_expunged(&acct, &mbox, uid);
                    }
                    match s.read_message(&acct, &mbox, uid) {
                        // Expunged since its metadata was read.
                        Err(StoreError::NoSuchMessage { .. }) if !refuse_expunged => {
                            s.read_expunged(&acct, &mbox, uid)
                        }
                        read => read,
                    }
                }) {
                    Ok(octets) => octets,
                    Err(StoreError::NoSuchMessage { .. }) => {
                        job.vanished = true;
                        continue;
                    }
                    Err(error) => {
                        self.store_failed(out, tag, &error);
                        return Next::Continue;
                    }
                }
            } else {
                Vec::new()
            };
            // The `imap_body_changes` fault: a flagged message grows a header line.
            let grown = body_changes
                && meta
                    .flags
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case("\\Flagged"));
            let octets = if grown && needs_octets {
                [FAULT_HEADER, &octets[..]].concat()
            } else {
                octets
            };
            let Some(selected) = self.selected.as_mut() else {
                return Next::Continue;
            };
            // Another session may have set a keyword this one has not been told of.
            selected.announce_keywords([&meta.flags[..]], keywords_unannounced, out);
            let recent = selected.recent.contains(&target.uid);
            let index = (target.seq - 1) as usize;
            let mut told_flags = false;
            let mut items: Vec<Vec<u8>> = Vec::with_capacity(names.len() + 1);
            for name in &names {
                let mut item = Vec::new();
                match name {
                    MessageDataItemName::Flags => {
                        told_flags = true;
                        item.extend_from_slice(
                            format!("FLAGS {}", flag_list(&meta.flags, recent)).as_bytes(),
                        );
                    }
                    MessageDataItemName::Uid => {
                        item.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
                    }
                    MessageDataItemName::Rfc822Size => {
                        let size = if size_without_cr {
                            let crlf = octets.windows(2).filter(|w| w == b"\r\n").count();
                            meta.size.saturating_sub(crlf as u64)
                        } else {
                            meta.size
                        };
                        let size = if grown {
                            size + FAULT_HEADER.len() as u64
                        } else if emptied {
                            0
                        } else {
                            size
                        };
                        item.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes());
                    }
                    MessageDataItemName::InternalDate => {
                        item.extend_from_slice(
                            format!("INTERNALDATE {}", internal_date(meta.internal_date))
                                .as_bytes(),
                        );
                    }
                    MessageDataItemName::ModSeq => {
                        let mut modseq = meta.modseq;
                        if modseq_regress {
                            if selected.lower_next_modseq {
                                modseq = modseq.saturating_sub(1).max(1);
                            }
                            selected.lower_next_modseq = !selected.lower_next_modseq;
                        }
                        item.extend_from_slice(format!("MODSEQ ({modseq})").as_bytes());
                    }
                    MessageDataItemName::Envelope => {
                        item = encode_item(MessageDataItem::Envelope(message::envelope(&octets)));
                        if quoted_unescaped {
                            item = unescaped(&item);
                        }
                    }
                    MessageDataItemName::BodyStructure => {
                        let structure = if flat {
                            // Headers dropped: the whole text as one plain part.
                            message::body_structure(&[b"\r\n", &octets[..]].concat(), true)
                        } else {
                            message::body_structure(&octets, true)
                        };
                        item = encode_item(MessageDataItem::BodyStructure(structure));
                    }
                    MessageDataItemName::Body => {
                        item = encode_item(MessageDataItem::Body(message::body_structure(
                            &octets, false,
                        )));
                    }
                    MessageDataItemName::Rfc822 => {
                        item.extend_from_slice(b"RFC822 ");
                        literal(&mut item, &octets);
                    }
                    MessageDataItemName::Rfc822Header => {
                        item.extend_from_slice(b"RFC822.HEADER ");
                        literal(
                            &mut item,
                            &message::section(&octets, Some(&Section::Header(None))),
                        );
                    }
                    MessageDataItemName::Rfc822Text => {
                        item.extend_from_slice(b"RFC822.TEXT ");
                        literal(
                            &mut item,
                            &message::section(&octets, Some(&Section::Text(None))),
                        );
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        let bytes = message::section(&octets, section.as_ref());
                        let bytes = if self.config.faults.has(Policy::ImapPartialIgnored) {
                            bytes
                        } else {
                            message::partial(bytes, *partial)
                        };
                        let origin = partial.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                        item.extend_from_slice(
                            format!("BODY[{}]{origin} ", section_name(section.as_ref())).as_bytes(),
                        );
                        literal(&mut item, &bytes);
                    }
                    MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                        continue;
                    }
                }
                items.push(item);
            }
            // A fetch that set \Seen reports the new flags (RFC 3501 6.4.5).
            if !told_flags && selected.flags.get(index) != Some(&meta.flags) {
                told_flags = true;
                items.push(format!("FLAGS {}", flag_list(&meta.flags, recent)).into_bytes());
            }
            if told_flags && let Some(slot) = selected.flags.get_mut(index) {
                slot.clone_from(&meta.flags);
            }
            out.extend_from_slice(format!("* {} FETCH (", target.seq).as_bytes());
            out.extend_from_slice(&items.join(&b' '));
            out.extend_from_slice(b")\r\n");
        }
        if job.vanished {
            self.refuse(out, tag, "NO", EXPUNGE_ISSUED);
        } else {
            ok(out, tag, "FETCH completed");
        }
        Next::Continue
    }

    /// Goes on with a FETCH that stopped to let its output be sent ([`Next::More`]); the
    /// session calls it when stepped after [`super::session::Event::More`].
    pub(super) fn resume(&mut self) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let Some(job) = self.fetch_job.take() else {
            return (out, Next::Continue);
        };
        let expunges_allowed = job.expunges_allowed;
        let mut next = self.fetch_some(job, &mut out);
        if next == Next::Continue {
            next = self.finish(&mut out, expunges_allowed);
        }
        (out, next)
    }

    #[allow(clippy::too_many_arguments)]
    fn store_command(
        &mut self,
        tag: &str,
        account: &str,
        set: &SequenceSet,
        kind: StoreType,
        silent: bool,
        flags: Vec<String>,
        uid: bool,
        unchanged_since: Option<u64>,
        out: &mut Vec<u8>,
    ) {
        if self.selected.as_ref().is_some_and(|s| s.read_only)
            && !self.config.faults.has(Policy::ImapStoreReadOnly)
        {
            return self.refuse(out, tag, "NO", "[READ-ONLY] The mailbox is read-only");
        }
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let unchanged_since =
            unchanged_since.filter(|_| !self.config.faults.has(Policy::ImapCondstoreIgnored));
        let Some(targets) = self.targets(tag, set, uid, out) else {
            return;
        };
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let (acct, mbox) = (account.to_owned(), selected.name.clone());
        let uids: Vec<u32> = targets.iter().map(|t| t.uid).collect();
        if self.refuses_expunged(account, &uids) {
            return self.refuse(out, tag, "NO", EXPUNGE_ISSUED);
        }
        let given = flags.clone();
        let done = match db(&self.store, move |s| {
            s.store_flags(&acct, &mbox, &uids, op, &flags, unchanged_since)
        }) {
            Ok(done) => done,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        let condstore = self.condstore;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        // A keyword new to the mailbox is announced before it is used (RFC 3501 7.2.6): set
        // here, or by another session on a message this STORE left as it was.
        let skip = self.config.faults.has(Policy::ImapKeywordWithoutFlags);
        selected.announce_keywords(
            done.changed
                .iter()
                .chain(&done.unchanged)
                .map(|m| &m.flags[..]),
            skip,
            out,
        );
        let mut results: Vec<_> = done.changed.iter().map(|m| (m, true)).collect();
        results.extend(done.unchanged.iter().map(|m| (m, false)));
        results.sort_by_key(|(m, _)| m.uid);
        for (message, changed) in results {
            let Some(seq) = selected.seq_of(message.uid) else {
                continue;
            };
            let index = (seq - 1) as usize;
            let stale = !same_flags(&applied(&selected.flags[index], op, &given), &message.flags);
            // .SILENT still reports what the client does not know yet: another session's
            // change, or the new MODSEQ of a conditional store (RFC 7162 3.1.3).
            selected.flags[index].clone_from(&message.flags);
            if silent && !stale && !(changed && unchanged_since.is_some()) {
                continue;
            }
            let mut text = format!("* {seq} FETCH (");
            if uid || condstore {
                text.push_str(&format!("UID {} ", message.uid));
            }
            text.push_str(&format!(
                "FLAGS {}",
                flag_list(&message.flags, selected.recent.contains(&message.uid))
            ));
            if condstore {
                text.push_str(&format!(" MODSEQ ({})", message.modseq));
            }
            text.push(')');
            line(out, &text);
        }
        if done.failed_modified.is_empty() {
            ok(out, tag, "STORE completed");
        } else {
            let failed: Vec<u32> = if uid {
                done.failed_modified.clone()
            } else {
                done.failed_modified
                    .iter()
                    .filter_map(|u| selected.seq_of(*u))
                    .collect()
            };
            ok(
                out,
                tag,
                &format!("[MODIFIED {}] Conditional STORE failed", compact(&failed)),
            );
        }
    }

    /// The `imap_expunged_refused` fault: whether a command naming these UIDs is refused
    /// because another session expunged one of them. Off, or on a store error, nothing is.
    fn refuses_expunged(&self, account: &str, uids: &[u32]) -> bool {
        if !self.config.faults.has(Policy::ImapExpungedRefused) {
            return false;
        }
        let Some(selected) = self.selected.as_ref() else {
            return false;
        };
        let (acct, mbox, wanted) = (account.to_owned(), selected.name.clone(), uids.to_vec());
        db(&self.store, move |s| {
            s.messages_with_uids(&acct, &mbox, &wanted)
        })
        .is_ok_and(|present| present.len() < uids.len())
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        tag: &str,
        account: &str,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
        out: &mut Vec<u8>,
    ) {
        if moving && self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self.refuse(out, tag, "NO", "[READ-ONLY] The mailbox is read-only");
        }
        let Ok(destination) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[TRYCREATE] No such mailbox");
        };
        let Some(targets) = self.targets(tag, set, uid, out) else {
            return;
        };
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let verb = if moving { "MOVE" } else { "COPY" };
        let keeps_source = moving && self.config.faults.has(Policy::ImapMoveKeepsSource);
        let (acct, from) = (account.to_owned(), selected.name.clone());
        let uids: Vec<u32> = targets.iter().map(|t| t.uid).collect();
        if self.refuses_expunged(account, &uids) {
            return self.refuse(out, tag, "NO", EXPUNGE_ISSUED);
        }
        let done = db(&self.store, move |s| {
            if moving && !keeps_source {
                s.move_messages(&acct, &from, &uids, &destination)
            } else {
                s.copy_messages(&acct, &from, &uids, &destination)
            }
        });
        let done = match done {
            Ok(done) => done,
            Err(StoreError::NoSuchMailbox { mailbox, .. })
                if self.selected.as_ref().is_none_or(|s| s.name != mailbox) =>
            {
                return self.refuse(out, tag, "NO", "[TRYCREATE] No such mailbox");
            }
            Err(error) => return self.store_failed(out, tag, &error),
        };
        let code = if done.pairs.is_empty()
            || self.config.faults.has(Policy::ImapNoUidplusCodes)
            || !self.extensions.offers(Extension::Uidplus)
        {
            String::new()
        } else {
            let sources: Vec<u32> = done.pairs.iter().map(|p| p.0).collect();
            let destinations: Vec<u32> = done.pairs.iter().map(|p| p.1).collect();
            format!(
                "[COPYUID {} {} {}] ",
                done.uidvalidity,
                compact(&sources),
                compact(&destinations)
            )
        };
        if !moving {
            return ok(out, tag, &format!("{code}COPY completed"));
        }
        // RFC 6851 3.3: COPYUID in an untagged OK before the EXPUNGEs.
        if !code.is_empty() {
            line(out, &format!("* OK {code}Moved"));
        }
        if let Some(selected) = self.selected.as_mut().filter(|_| !keeps_source) {
            for (source, _) in done.pairs.iter().rev() {
                if let Some(seq) = selected.remove(*source) {
                    line(out, &format!("* {seq} EXPUNGE"));
                }
            }
        }
        ok(out, tag, &format!("{verb} completed"));
    }

    fn expunge(&mut self, tag: &str, account: &str, only: Option<&SequenceSet>, out: &mut Vec<u8>) {
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        if selected.read_only {
            return self.refuse(out, tag, "NO", "[READ-ONLY] The mailbox is read-only");
        }
        let only: Option<Vec<u32>> = only.map(|set| {
            let last = selected.uids.last().copied().unwrap_or(0);
            selected
                .uids
                .iter()
                .copied()
                .filter(|uid| set_contains(set, *uid, last))
                .collect()
        });
        let (acct, mbox) = (account.to_owned(), selected.name.clone());
        let removed = match db(&self.store, move |s| {
            s.expunge_deleted(&acct, &mbox, only.as_deref())
        }) {
            Ok(removed) => removed,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        if let Some(selected) = self.selected.as_mut() {
            for uid in removed.iter().rev() {
                if let Some(seq) = selected.remove(*uid) {
                    line(out, &format!("* {seq} EXPUNGE"));
                }
            }
        }
        ok(out, tag, "EXPUNGE completed");
    }

    fn search(
        &mut self,
        tag: &str,
        account: &str,
        charset: Option<&Charset<'_>>,
        criteria: &Vec1<SearchKey<'_>>,
        uid: bool,
        out: &mut Vec<u8>,
    ) {
        if let Some(charset) = charset {
            let name = match charset {
                Charset::Atom(atom) => atom.as_ref().to_owned(),
                Charset::Quoted(quoted) => quoted.as_ref().to_owned(),
            };
            if !name.eq_ignore_ascii_case("UTF-8") && !name.eq_ignore_ascii_case("US-ASCII") {
                return self.refuse(
                    out,
                    tag,
                    "NO",
                    "[BADCHARSET (US-ASCII UTF-8)] Unknown charset",
                );
            }
        }
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let keys = criteria.as_ref();
        let needs_octets = keys.iter().any(search::needs_octets);
        let (acct, mbox) = (account.to_owned(), selected.name.clone());
        let metas = match db(&self.store, move |s| s.messages(&acct, &mbox)) {
            Ok(metas) => metas,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let metas: HashMap<u32, MessageMeta> = metas.into_iter().map(|m| (m.uid, m)).collect();
        let last_seq = u32::try_from(selected.uids.len()).unwrap_or(u32::MAX);
        let last_uid = selected.uids.last().copied().unwrap_or(0);
        let mut found = Vec::new();
        let mut highest = 0;
        let uses_modseq = keys.iter().any(mentions_modseq);
        let case_sensitive = self.config.faults.has(Policy::ImapSearchCaseSensitive);
        // The `imap_search_beyond_exists` fault numbers the mailbox as it is now, not as the
        // client was told it.
        let beyond = self.config.faults.has(Policy::ImapSearchBeyondExists);
        let now: Vec<u32>;
        let numbered = if beyond {
            let mut uids: Vec<u32> = metas.keys().copied().collect();
            uids.sort_unstable();
            now = uids;
            &now
        } else {
            &selected.uids
        };
        let targets: Vec<(u32, u32, bool)> = numbered
            .iter()
            .enumerate()
            .map(|(i, uid)| {
                (
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    *uid,
                    selected.recent.contains(uid),
                )
            })
            .collect();
        let name = selected.name.clone();
        for (seq, message_uid, recent) in targets {
            let Some(meta) = metas.get(&message_uid) else {
                continue;
            };
            let octets = if needs_octets {
                let (acct, mbox) = (account.to_owned(), name.clone());
                match db(&self.store, move |s| {
                    s.read_message(&acct, &mbox, message_uid)
                }) {
                    Ok(octets) => Some(octets),
                    Err(StoreError::NoSuchMessage { .. }) => continue,
                    Err(error) => return self.store_failed(out, tag, &error),
                }
            } else {
                None
            };
            let mut flags = meta.flags.clone();
            if recent {
                flags.push("\\Recent".to_owned());
            }
            let view = SearchMessage {
                seq,
                uid: message_uid,
                flags: &flags,
                internal_date: meta.internal_date,
                size: meta.size,
                modseq: meta.modseq,
                octets: octets.as_deref(),
            };
            if keys
                .iter()
                .all(|key| search::matches(key, &view, last_seq, last_uid))
                && (!case_sensitive || keys.iter().all(|key| exact_case(key, octets.as_deref())))
            {
                found.push(if uid { message_uid } else { seq });
                highest = highest.max(meta.modseq);
            }
        }
        let mut text = "* SEARCH".to_owned();
        for n in &found {
            text.push_str(&format!(" {n}"));
        }
        if uses_modseq {
            self.condstore = true;
        }
        if uses_modseq && !found.is_empty() {
            text.push_str(&format!(" (MODSEQ {highest})"));
        }
        line(out, &text);
        if beyond && let Some(selected) = self.selected.as_mut() {
            // The fault announces what it numbered, only after the numbers.
            let before = selected.uids.len();
            let mut fresh: Vec<&MessageMeta> = metas
                .values()
                .filter(|m| m.uid > selected.max_uid)
                .collect();
            fresh.sort_unstable_by_key(|m| m.uid);
            for meta in fresh {
                selected.admit(meta.uid, meta.flags.clone());
            }
            if selected.uids.len() != before {
                line(out, &format!("* {} EXISTS", selected.uids.len()));
            }
        }
        ok(out, tag, "SEARCH completed");
    }
}

/// Flags as STORE would leave them if nobody else changed them meanwhile.
fn applied(told: &[String], op: FlagOp, given: &[String]) -> Vec<String> {
    match op {
        FlagOp::Replace => given.to_vec(),
        FlagOp::Add => {
            let mut flags = told.to_vec();
            flags.extend(given.iter().cloned());
            flags
        }
        FlagOp::Remove => told
            .iter()
            .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
            .cloned()
            .collect(),
    }
}

/// Whether two flag lists name the same flags, whatever their case and order (`\Recent`
/// aside: it is session state).
fn same_flags(a: &[String], b: &[String]) -> bool {
    let set = |flags: &[String]| {
        let mut set: Vec<String> = flags
            .iter()
            .map(|f| f.to_ascii_lowercase())
            .filter(|f| f != "\\recent")
            .collect();
        set.sort();
        set.dedup();
        set
    };
    set(a) == set(b)
}

/// The `imap_search_case_sensitive` fault: a SUBJECT, FROM, TO, BODY or TEXT key also needs its
/// string in exactly that case somewhere in the message.
fn exact_case(key: &SearchKey<'_>, octets: Option<&[u8]>) -> bool {
    let needle = match key {
        SearchKey::Subject(s)
        | SearchKey::From(s)
        | SearchKey::To(s)
        | SearchKey::Body(s)
        | SearchKey::Text(s) => s.as_ref(),
        SearchKey::Or(a, b) => return exact_case(a, octets) || exact_case(b, octets),
        SearchKey::And(keys) => return keys.as_ref().iter().all(|k| exact_case(k, octets)),
        _ => return true,
    };
    let haystack = octets.unwrap_or_default();
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether a search uses the CONDSTORE MODSEQ key, anywhere inside it.
pub(super) fn mentions_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(mentions_modseq),
        SearchKey::Not(key) => mentions_modseq(key),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> SequenceSet {
        SequenceSet::try_from(text).expect("a sequence set")
    }

    #[test]
    fn membership_without_expansion() {
        assert!(set_contains(&set("1:4294967295"), 4_000_000_000, 10));
        assert!(
            set_contains(&set("5:*"), 3, 3),
            "n:* names the last message"
        );
        assert!(set_contains(&set("7:3"), 5, 9));
        assert!(!set_contains(&set("1,3"), 2, 9));
        assert!(set_contains(&set("*"), 9, 9));
        assert_eq!(set_max(&set("1,5:3,*")), 5);
    }

    #[test]
    fn field_names_are_astrings() {
        assert_eq!(astring("Subject"), "Subject");
        assert_eq!(astring("X-Spam Flag"), "\"X-Spam Flag\"");
        assert_eq!(astring("a\"b"), "\"a\\\"b\"");
        assert_eq!(astring(""), "\"\"");
    }

    #[test]
    fn compact_sets() {
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compact(&[u32::MAX]), "4294967295");
    }

    #[test]
    fn dates_and_names() {
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(
            internal_date(1_700_000_000),
            "\"14-Nov-2023 22:13:20 +0000\""
        );
        assert_eq!(section_name(None), "");
        assert_eq!(section_name(Some(&Section::Header(None))), "HEADER");
    }
}

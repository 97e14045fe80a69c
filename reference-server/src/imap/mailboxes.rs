//! The authenticated state (RFC 3501 6.3): SELECT and EXAMINE, the mailbox commands (CREATE,
//! DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, APPEND), ENABLE and IDLE, and the
//! reporting of other sessions' changes to the selected mailbox (RFC 3501 7: EXISTS, RECENT,
//! EXPUNGE and FETCH FLAGS, never an EXPUNGE while a command by sequence number runs).
//!
//! Reporting works on differences: a change notification from the store only marks the view
//! stale, and the next report re-reads the mailbox and compares it with what this client has
//! been told. Notifications may be lost (a slow client) or repeated (our own changes) without
//! harm.

use std::collections::{BTreeSet, HashSet};

use imap_codec::imap_types::command::{CommandBody, SelectParameter};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use super::extensions::Extension;
use super::namespace::Unnamed;
use super::selected::compact;
use super::session::{Next, Session, line, ok};
use crate::faults::Policy;
use crate::store::{Change, Changes, DELIMITER, Store, StoreError};

/// How often a running IDLE looks for changes under
/// [`Variant::ImapIdlePolling`](crate::variants::Variant::ImapIdlePolling). RFC 2177 sets
/// no latency; servers that poll do it every 30 s or so, Dovecot's default among them.
pub(super) const IDLE_POLL: std::time::Duration = std::time::Duration::from_secs(15);

/// The refusal of a CREATE or RENAME to a name outside the personal namespace.
const OUTSIDE: &str =
    "[CANNOT] Mailboxes can only be made in the personal namespace (see NAMESPACE)";

/// The selected mailbox as this session's client knows it.
#[derive(Debug)]
pub struct Selected {
    /// The mailbox name as stored (INBOX in capitals).
    pub(super) name: String,
    /// EXAMINE, or SELECT of a mailbox the session may not change.
    pub(super) read_only: bool,
    /// The UID of each message number: message n is `uids[n - 1]`.
    pub(super) uids: Vec<u32>,
    /// The flags the client was last told for each message number.
    pub(super) flags: Vec<Vec<String>>,
    /// Messages that are \Recent in this session.
    pub(super) recent: HashSet<u32>,
    /// The highest UID of a message the client has been shown: a message above it is new.
    pub(super) max_uid: u32,
    /// Change notifications from the store.
    pub(super) watch: broadcast::Receiver<Change>,
    /// The store changed since the view was last compared with it.
    pub(super) dirty: bool,
    /// The mod-sequence up to which the view has been brought up to date.
    pub(super) modseq: u64,
    /// Messages expunged elsewhere whose EXPUNGE waits for a point where it is allowed.
    pub(super) pending_expunges: BTreeSet<u32>,
    /// The mailbox was deleted or renamed away.
    pub(super) gone: bool,
    /// The keywords the client was told of in FLAGS.
    pub(super) keywords: BTreeSet<String>,
    /// The `imap_modseq_regress` fault: whether the next MODSEQ reported is lowered.
    pub(super) lower_next_modseq: bool,
    /// The `imap_expunge_unannounced` fault: expunges of messages this session never heard
    /// of, waiting to be reported.
    pub(super) unheard_expunges: usize,
}

impl Selected {
    /// The message number of a UID in the client's view.
    pub(super) fn seq_of(&self, uid: u32) -> Option<u32> {
        let index = self.uids.binary_search(&uid).ok()?;
        u32::try_from(index + 1).ok()
    }

    /// Announces the keywords among these flag lists that the client has not been told of, with
    /// FLAGS and PERMANENTFLAGS, before a response uses them (RFC 3501 7.2.6). `skip`: the
    /// `imap_keyword_without_flags` fault.
    pub(super) fn announce_keywords<'a>(
        &mut self,
        lists: impl IntoIterator<Item = &'a [String]>,
        skip: bool,
        out: &mut Vec<u8>,
    ) {
        if skip {
            return;
        }
        let mut new = false;
        for flags in lists {
            new |= note_keywords(&mut self.keywords, flags);
        }
        if new {
            flags_responses(out, &self.keywords, self.read_only);
        }
    }

    /// Reports the expunges that were waiting, from the highest message number down so that
    /// each number is still right when the client reads it; or as one of the faults that get it
    /// wrong.
    fn flush_expunges(&mut self, style: ExpungeStyle, out: &mut Vec<u8>) {
        for _ in 0..std::mem::take(&mut self.unheard_expunges) {
            line(out, &format!("* {} EXPUNGE", self.uids.len() + 1));
        }
        match style {
            ExpungeStyle::Right => {
                while let Some(uid) = self.pending_expunges.pop_last() {
                    if let Some(seq) = self.remove(uid) {
                        line(out, &format!("* {seq} EXPUNGE"));
                    }
                }
            }
            ExpungeStyle::Unshifted => {
                let numbers: Vec<u32> = self
                    .pending_expunges
                    .iter()
                    .filter_map(|uid| self.seq_of(*uid))
                    .collect();
                while let Some(uid) = self.pending_expunges.pop_last() {
                    self.remove(uid);
                }
                for seq in numbers {
                    line(out, &format!("* {seq} EXPUNGE"));
                }
            }
            ExpungeStyle::ExistsOnly | ExpungeStyle::Vanished => {
                let mut gone = Vec::new();
                while let Some(uid) = self.pending_expunges.pop_first() {
                    if self.remove(uid).is_some() {
                        gone.push(uid);
                    }
                }
                if gone.is_empty() {
                    return;
                }
                if style == ExpungeStyle::ExistsOnly {
                    line(out, &format!("* {} EXISTS", self.uids.len()));
                } else {
                    line(out, &format!("* VANISHED {}", compact(&gone)));
                }
            }
        }
    }

    /// Adds a message new to the client at the end of the view (the caller announces it).
    pub(super) fn admit(&mut self, uid: u32, flags: Vec<String>) {
        self.max_uid = self.max_uid.max(uid);
        self.uids.push(uid);
        self.flags.push(flags);
    }

    /// Removes a message from the view, returning its message number for the EXPUNGE response.
    pub(super) fn remove(&mut self, uid: u32) -> Option<u32> {
        let index = self.uids.binary_search(&uid).ok()?;
        self.uids.remove(index);
        self.flags.remove(index);
        self.recent.remove(&uid);
        self.pending_expunges.remove(&uid);
        u32::try_from(index + 1).ok()
    }
}

/// How a session is told of other sessions' expunges: as RFC 3501 7.4.1 says, or as one of the
/// faults that get it wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpungeStyle {
    Right,
    /// `imap_expunge_numbers_unshifted`.
    Unshifted,
    /// `imap_exists_without_expunge`.
    ExistsOnly,
    /// `imap_vanished_unasked`.
    Vanished,
}

impl ExpungeStyle {
    pub(super) fn of(faults: &crate::faults::Faults) -> ExpungeStyle {
        if faults.has(Policy::ImapExpungeNumbersUnshifted) {
            ExpungeStyle::Unshifted
        } else if faults.has(Policy::ImapExistsWithoutExpunge) {
            ExpungeStyle::ExistsOnly
        } else if faults.has(Policy::ImapVanishedUnasked) {
            ExpungeStyle::Vanished
        } else {
            ExpungeStyle::Right
        }
    }
}

/// Runs store work; a panic in it becomes an error, as it did when the work ran on a task of its
/// own. The session is synchronous: the driver runs its steps on the blocking pool.
pub(super) fn db<T>(
    store: &Store,
    work: impl FnOnce(Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let store = store.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || work(store)))
        .unwrap_or_else(|_| Err(StoreError::Interrupted("it panicked".into())))
}

impl Session {
    /// The name a client gave, as the store keeps it (see [`super::namespace`]). Names are
    /// modified UTF-7 on the wire (RFC 3501 5.1.3), so anything that is not is refused.
    pub(super) fn store_name(&self, mailbox: &Mailbox<'_>) -> Result<String, Unnamed> {
        match mailbox {
            Mailbox::Inbox => Ok("INBOX".to_owned()),
            Mailbox::Other(other) => {
                let name = std::str::from_utf8(other.as_ref()).map_err(|_| Unnamed::Invalid)?;
                if !is_modified_utf7(name) {
                    return Err(Unnamed::Invalid);
                }
                self.namespace.to_store(name)
            }
        }
    }
}

/// Whether a name is 7-bit modified UTF-7 (RFC 3501 5.1.3): printable ASCII, with `&` starting
/// a run of modified BASE64 that ends in `-` (`&-` is a literal `&`).
fn is_modified_utf7(name: &str) -> bool {
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        if !(0x20..0x7f).contains(&b) {
            return false;
        }
        if b == b'&' {
            loop {
                match bytes.next() {
                    Some(b'-') => break,
                    Some(c) if c.is_ascii_alphanumeric() || c == b'+' || c == b',' => {}
                    _ => return false,
                }
            }
        }
    }
    true
}

/// A mailbox name as an IMAP string: quoted when it can be, a literal otherwise.
pub(super) fn quote(name: &str) -> String {
    if name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
    {
        let mut quoted = String::with_capacity(name.len() + 2);
        quoted.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        format!("{{{}}}\r\n{name}", name.len())
    }
}

/// Whether a LIST pattern matches a name: `*` matches anything, `%` anything but the hierarchy
/// `delimiter` (RFC 3501 6.3.8). Dynamic programming over the name, so a pattern full of
/// wildcards costs pattern length times name length, never more.
pub(super) fn wildcard_match(
    pattern: &[u8],
    name: &[u8],
    delimiter: u8,
    ignore_case: bool,
) -> bool {
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    let mut next = vec![false; name.len() + 1];
    for &p in pattern {
        match p {
            b'*' | b'%' => {
                let mut any = false;
                for j in 0..=name.len() {
                    if p == b'%' && j > 0 && name[j - 1] == delimiter {
                        any = false;
                    }
                    any |= matched[j];
                    next[j] = any;
                }
            }
            c => {
                next[0] = false;
                for j in 1..=name.len() {
                    let same = if ignore_case {
                        name[j - 1].eq_ignore_ascii_case(&c)
                    } else {
                        name[j - 1] == c
                    };
                    next[j] = matched[j - 1] && same;
                }
            }
        }
        std::mem::swap(&mut matched, &mut next);
    }
    matched[name.len()]
}

/// Whether a name as the client sees it matches a LIST pattern. INBOX is case-insensitive (RFC
/// 3501 5.1), so names in it are matched without regard to case (a little generous below INBOX,
/// never for others).
fn name_matches(pattern: &[u8], name: &str, delimiter: char) -> bool {
    let inbox = name == "INBOX"
        || name
            .strip_prefix("INBOX")
            .is_some_and(|rest| rest.starts_with(delimiter));
    let delimiter = delimiter as u8;
    wildcard_match(pattern, name.as_bytes(), delimiter, false)
        || (inbox && wildcard_match(pattern, name.as_bytes(), delimiter, true))
}

/// Adds the keywords (flags without a backslash) among `flags` to `keywords`; says whether
/// there was a new one.
pub(super) fn note_keywords(keywords: &mut BTreeSet<String>, flags: &[String]) -> bool {
    let mut new = false;
    for flag in flags.iter().filter(|f| !f.starts_with('\\')) {
        // Looked up first: FETCH calls this for every message, and most keywords are known.
        if !keywords.contains(flag) {
            new |= keywords.insert(flag.clone());
        }
    }
    new
}

/// The FLAGS response and the PERMANENTFLAGS code: the system flags and the keywords in use
/// (RFC 3501 7.2.6), and `\*` where new keywords may be made.
pub(super) fn flags_responses(out: &mut Vec<u8>, keywords: &BTreeSet<String>, read_only: bool) {
    let mut all = SYSTEM_FLAGS.to_owned();
    for keyword in keywords {
        all.push(' ');
        all.push_str(keyword);
    }
    line(out, &format!("* FLAGS ({all})"));
    if read_only {
        line(out, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
    } else {
        line(
            out,
            &format!("* OK [PERMANENTFLAGS ({all} \\*)] Flags permitted"),
        );
    }
}

/// The flags the reference server knows of, for FLAGS and PERMANENTFLAGS.
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// Formats a flag list, with `\Recent` added when the message is recent in this session.
pub(super) fn flag_list(flags: &[String], recent: bool) -> String {
    let mut list = flags.join(" ");
    if recent {
        if !list.is_empty() {
            list.push(' ');
        }
        list.push_str("\\Recent");
    }
    format!("({list})")
}

impl Session {
    /// Commands of the authenticated and selected states. Gives the command back when it is not
    /// one of them, or when the session is not authenticated (the caller answers that).
    pub(super) fn mailbox_command<'a>(
        &mut self,
        tag: &str,
        body: CommandBody<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Next, CommandBody<'a>> {
        let Some(account) = self.account().map(str::to_owned) else {
            return Err(body);
        };
        match body {
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.select(tag, &account, &mailbox, &parameters, false, out),
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.select(tag, &account, &mailbox, &parameters, true, out),
            CommandBody::Create { mailbox } => self.create(tag, &account, &mailbox, out),
            CommandBody::Delete { mailbox } => self.delete(tag, &account, &mailbox, out),
            CommandBody::Rename { from, to } => {
                self.rename(tag, &account, &from, &to, out);
            }
            CommandBody::Subscribe { mailbox } => {
                self.subscription(tag, &account, &mailbox, true, out);
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.subscription(tag, &account, &mailbox, false, out);
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.list(tag, &account, &reference, &mailbox_wildcard, false, out);
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.list(tag, &account, &reference, &mailbox_wildcard, true, out);
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(tag, &account, &mailbox, &item_names, out),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let octets = match &message {
                    LiteralOrLiteral8::Literal(literal) => literal.as_ref(),
                    // A literal8 may carry NUL (RFC 3516), which a message served back in an
                    // ordinary literal cannot (RFC 3501 CHAR8; the parser refuses NUL there).
                    LiteralOrLiteral8::Literal8(_) => {
                        self.refuse(out, tag, "BAD", "BINARY is not offered by this server");
                        return Ok(Next::Continue);
                    }
                };
                let flags = flags.iter().map(ToString::to_string).collect();
                let date = date
                    .map(|d| d.as_ref().timestamp())
                    .filter(|_| !self.config.faults.has(Policy::ImapAppendIgnoresDate));
                self.append(tag, &account, &mailbox, flags, date, octets, out);
            }
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for capability in capabilities.as_ref() {
                    // RFC 5161 3.1: what the server does not offer is left out of ENABLED.
                    if matches!(capability, CapabilityEnable::CondStore)
                        && self.extensions.offers(Extension::Condstore)
                    {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                }
                let mut text = "* ENABLED".to_owned();
                for name in enabled {
                    text.push(' ');
                    text.push_str(name);
                }
                line(out, &text);
                ok(out, tag, "ENABLE completed");
            }
            CommandBody::Idle => {
                line(out, "+ idling");
                if self.presentation.chatters() {
                    line(out, "* OK Still here");
                }
                // The session starts the IDLE (its deadlines and, under
                // `imap_idle_polling`, its polls) once this reply is out.
                self.pending = Some(tag.to_owned());
                return Ok(Next::Idle);
            }
            other => return self.selected_command(tag, &account, other, out),
        }
        Ok(Next::Continue)
    }

    /// A NO (or BAD) for a store error; anything unexpected is logged as a server bug.
    pub(super) fn store_failed(&mut self, out: &mut Vec<u8>, tag: &str, error: &StoreError) {
        let text = match error {
            StoreError::NoSuchMailbox { .. } => "NO [NONEXISTENT] No such mailbox".to_owned(),
            StoreError::MailboxExists { .. } => {
                "NO [ALREADYEXISTS] Mailbox already exists".to_owned()
            }
            StoreError::CannotDeleteInbox { .. } => "NO [CANNOT] INBOX cannot be deleted".into(),
            StoreError::HasChildren { .. } => {
                "NO [INUSE] Mailbox has child mailboxes; delete them first".to_owned()
            }
            StoreError::RenameIntoItself { .. } => {
                "NO [CANNOT] A mailbox cannot be renamed below itself".to_owned()
            }
            StoreError::NotSubscribed { .. } => {
                "NO [NONEXISTENT] Not subscribed to that mailbox".to_owned()
            }
            // The name is not echoed: it may hold bytes a response text cannot carry.
            StoreError::InvalidMailboxName(_) => "NO [CANNOT] Invalid mailbox name".to_owned(),
            StoreError::InvalidFlag { flag, .. } => format!("BAD Invalid flag {flag}"),
            StoreError::UidsExhausted { .. } => "NO [LIMIT] The mailbox has no UIDs left".into(),
            other => {
                tracing::error!(peer = %self.peer(), "IMAP store error: {other}");
                "NO [SERVERBUG] Internal error; the command was not carried out".to_owned()
            }
        };
        if text.starts_with("BAD") {
            self.count_error();
        }
        line(out, &format!("{tag} {text}"));
    }

    /// A NO or BAD. Only BAD counts towards the error limit: NO is an ordinary outcome (a
    /// mailbox that does not exist, a message expunged meanwhile) that a client may meet often.
    pub(super) fn refuse(&mut self, out: &mut Vec<u8>, tag: &str, status: &str, text: &str) {
        if status == "BAD" {
            self.count_error();
        }
        line(out, &format!("{tag} {status} {text}"));
    }

    fn select(
        &mut self,
        tag: &str,
        account: &str,
        mailbox: &Mailbox<'_>,
        parameters: &[SelectParameter],
        read_only: bool,
        out: &mut Vec<u8>,
    ) {
        // A SELECT deselects first, even when it fails (RFC 3501 6.3.1).
        self.selected = None;
        let Ok(name) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[NONEXISTENT] No such mailbox");
        };
        for parameter in parameters {
            match parameter {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } => {
                    return self.refuse(out, tag, "BAD", "QRESYNC is not supported");
                }
            }
        }
        let (acct, mbox) = (account.to_owned(), name.clone());
        let opened = db(&self.store, move |store| {
            // Watch before reading: a change committed in between is then seen twice, which
            // the comparison absorbs, rather than never.
            // The mod-sequence is read before the messages (a change in between is read again
            // later), UIDNEXT after them (so it is above every UID shown).
            let watch = store.watch(&acct, &mbox)?;
            let before = store.mailbox_status(&acct, &mbox)?;
            let messages = store.messages(&acct, &mbox)?;
            let recent = if read_only {
                store.peek_recent(&acct, &mbox)?
            } else {
                store.claim_recent(&acct, &mbox)?
            };
            let mut status = store.mailbox_status(&acct, &mbox)?;
            status.highest_modseq = before.highest_modseq;
            Ok((watch, status, messages, recent))
        });
        let (watch, status, messages, recent) = match opened {
            Ok(opened) => opened,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        let recent: HashSet<u32> = recent.into_iter().collect();
        // Claimed messages that arrived after the read are recent when they are reported.
        let recent_shown = messages.iter().filter(|m| recent.contains(&m.uid)).count();
        let mut keywords = BTreeSet::new();
        for meta in &messages {
            note_keywords(&mut keywords, &meta.flags);
        }
        let first_unseen = messages
            .iter()
            .position(|m| !m.flags.iter().any(|f| f == "\\Seen"));
        flags_responses(out, &keywords, read_only);
        line(out, &format!("* {} EXISTS", messages.len()));
        line(out, &format!("* {recent_shown} RECENT"));
        if let Some(index) = first_unseen {
            line(
                out,
                &format!("* OK [UNSEEN {}] First unseen message", index + 1),
            );
        }
        line(
            out,
            &format!("* OK [UIDVALIDITY {}] UIDs valid", status.uidvalidity),
        );
        line(
            out,
            &format!("* OK [UIDNEXT {}] Predicted next UID", status.uidnext),
        );
        if self.extensions.offers(Extension::Condstore) {
            line(
                out,
                &format!(
                    "* OK [HIGHESTMODSEQ {}] Highest",
                    status.highest_modseq.max(1)
                ),
            );
        }
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        ok(out, tag, &format!("[{mode}] {verb} completed"));
        self.selected = Some(Selected {
            name,
            read_only,
            // The highest UID among the messages shown, not UIDNEXT - 1: UIDNEXT is read after
            // the messages, and a message appended in between must still be reported as new.
            max_uid: messages.last().map_or(0, |m| m.uid),
            modseq: status.highest_modseq,
            pending_expunges: BTreeSet::new(),
            lower_next_modseq: false,
            unheard_expunges: 0,
            uids: messages.iter().map(|m| m.uid).collect(),
            flags: messages.into_iter().map(|m| m.flags).collect(),
            recent,
            watch,
            dirty: false,
            gone: false,
            keywords,
        });
    }

    fn create(&mut self, tag: &str, account: &str, mailbox: &Mailbox<'_>, out: &mut Vec<u8>) {
        let name = match self.store_name(mailbox) {
            Ok(name) => name,
            Err(Unnamed::Outside) => return self.refuse(out, tag, "NO", OUTSIDE),
            Err(Unnamed::Invalid) => {
                return self.refuse(out, tag, "NO", "[CANNOT] Invalid mailbox name");
            }
        };
        if name == "INBOX" {
            return self.refuse(out, tag, "NO", "[ALREADYEXISTS] INBOX always exists");
        }
        let acct = account.to_owned();
        match db(&self.store, move |s| {
            s.create_mailbox_with_parents(&acct, &name)
        }) {
            Ok(()) => ok(out, tag, "CREATE completed"),
            Err(error) => self.store_failed(out, tag, &error),
        }
    }

    fn delete(&mut self, tag: &str, account: &str, mailbox: &Mailbox<'_>, out: &mut Vec<u8>) {
        let Ok(name) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[NONEXISTENT] No such mailbox");
        };
        let acct = account.to_owned();
        let deleted = name.clone();
        let keep = self.config.faults.has(Policy::ImapDeleteKeepsMailbox);
        match db(&self.store, move |s| {
            if keep {
                // Refuse what a real DELETE would refuse, then do nothing.
                let children = s
                    .list_mailboxes(&acct)?
                    .into_iter()
                    .any(|m| m.name == name && m.has_children);
                if children || name == "INBOX" {
                    return s.delete_mailbox(&acct, &name);
                }
                return s.mailbox_status(&acct, &name).map(drop);
            }
            s.delete_mailbox(&acct, &name)
        }) {
            Ok(()) => {
                self.deselect_if_under(&deleted);
                ok(out, tag, "DELETE completed");
            }
            Err(error) => self.store_failed(out, tag, &error),
        }
    }

    fn rename(
        &mut self,
        tag: &str,
        account: &str,
        from: &Mailbox<'_>,
        to: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) {
        let from = match self.store_name(from) {
            Ok(name) => name,
            Err(Unnamed::Outside) => {
                return self.refuse(out, tag, "NO", "[NONEXISTENT] No such mailbox");
            }
            Err(Unnamed::Invalid) => {
                return self.refuse(out, tag, "NO", "[CANNOT] Invalid mailbox name");
            }
        };
        let to = match self.store_name(to) {
            Ok(name) => name,
            Err(Unnamed::Outside) => return self.refuse(out, tag, "NO", OUTSIDE),
            Err(Unnamed::Invalid) => {
                return self.refuse(out, tag, "NO", "[CANNOT] Invalid mailbox name");
            }
        };
        if to == "INBOX" {
            return self.refuse(out, tag, "NO", "[ALREADYEXISTS] INBOX always exists");
        }
        let acct = account.to_owned();
        let renamed = from.clone();
        match db(&self.store, move |s| s.rename_mailbox(&acct, &from, &to)) {
            Ok(()) => {
                // Renaming INBOX moves its messages and leaves it in place (RFC 3501 6.3.5).
                if renamed != "INBOX" {
                    self.deselect_if_under(&renamed);
                }
                ok(out, tag, "RENAME completed");
            }
            Err(error) => self.store_failed(out, tag, &error),
        }
    }

    /// After this session deleted or renamed `name`: the selected mailbox, if it was that one
    /// or below it, is gone, and the session is back in the authenticated state.
    fn deselect_if_under(&mut self, name: &str) {
        let gone = self.selected.as_ref().is_some_and(|s| {
            s.name == name
                || s.name
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(DELIMITER))
        });
        if gone {
            self.selected = None;
        }
    }

    fn subscription(
        &mut self,
        tag: &str,
        account: &str,
        mailbox: &Mailbox<'_>,
        subscribe: bool,
        out: &mut Vec<u8>,
    ) {
        let Ok(name) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[NONEXISTENT] No such mailbox");
        };
        let acct = account.to_owned();
        let done = db(&self.store, move |s| {
            if subscribe {
                s.subscribe(&acct, &name)
            } else {
                s.unsubscribe(&acct, &name)
            }
        });
        match done {
            Ok(()) if subscribe => ok(out, tag, "SUBSCRIBE completed"),
            Ok(()) => ok(out, tag, "UNSUBSCRIBE completed"),
            Err(error) => self.store_failed(out, tag, &error),
        }
    }

    fn list(
        &mut self,
        tag: &str,
        account: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        out: &mut Vec<u8>,
    ) {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let pattern: &[u8] = match pattern {
            ListMailbox::Token(token) => token.as_ref(),
            ListMailbox::String(string) => string.as_ref(),
        };
        let delimiter = self.namespace.delimiter();
        if pattern.is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 3501 6.3.8).
            line(out, &format!("* LIST (\\Noselect) \"{delimiter}\" \"\""));
            return ok(out, tag, "LIST completed");
        }
        let reference: Vec<u8> = match reference {
            Mailbox::Inbox => b"INBOX".to_vec(),
            Mailbox::Other(other) => other.as_ref().to_vec(),
        };
        let mut full = reference;
        full.extend_from_slice(pattern);
        if self.config.faults.has(Policy::ImapListNoHierarchy) {
            for byte in &mut full {
                if *byte == b'%' {
                    *byte = b'*';
                }
            }
        }
        let special_use = !self.config.faults.has(Policy::ImapNoSpecialUse)
            && self.extensions.offers(Extension::SpecialUse);
        let children = self.extensions.offers(Extension::Children);
        let children_wrong = self.config.faults.has(Policy::ImapChildrenWrong);
        let acct = account.to_owned();
        let read = db(&self.store, move |s| {
            Ok((s.list_mailboxes(&acct)?, s.subscriptions(&acct)?))
        });
        let (mailboxes, mut subscriptions) = match read {
            Ok(read) => read,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        if self.config.faults.has(Policy::ImapLsubIgnoresSubscriptions) {
            subscriptions = mailboxes.iter().map(|m| m.name.clone()).collect();
        }
        // Matched and listed as the client names them.
        let namespace = self.namespace;
        let wire: Vec<String> = mailboxes
            .iter()
            .map(|m| namespace.to_wire(&m.name))
            .collect();
        let matches = |name: &str| name_matches(&full, name, delimiter);
        if lsub {
            let existing: HashSet<&str> = wire.iter().map(String::as_str).collect();
            let subscriptions: Vec<String> =
                subscriptions.iter().map(|s| namespace.to_wire(s)).collect();
            let mut listed: HashSet<String> = HashSet::new();
            for name in &subscriptions {
                if matches(name) {
                    if listed.insert(name.clone()) {
                        let attributes = if existing.contains(name.as_str()) {
                            ""
                        } else {
                            "\\Noselect"
                        };
                        line(
                            out,
                            &format!("* LSUB ({attributes}) \"{delimiter}\" {}", quote(name)),
                        );
                    }
                    continue;
                }
                // With `%`, an unsubscribed parent of a subscribed name is listed \Noselect
                // (RFC 3501 6.3.9).
                let mut end = 0;
                while let Some(at) = name[end..].find(delimiter) {
                    let parent = &name[..end + at];
                    end += at + 1;
                    if matches(parent)
                        && !subscriptions.iter().any(|s| s == parent)
                        && listed.insert(parent.to_owned())
                    {
                        line(
                            out,
                            &format!("* LSUB (\\Noselect) \"{delimiter}\" {}", quote(parent)),
                        );
                    }
                }
            }
        } else {
            for (mailbox, name) in mailboxes.iter().zip(&wire) {
                if !matches(name) {
                    continue;
                }
                let mut attributes = Vec::new();
                if children {
                    // From the names as listed: below INBOX., INBOX has every other mailbox
                    // as a child.
                    let has_children = wire.iter().any(|other| {
                        other
                            .strip_prefix(name.as_str())
                            .is_some_and(|rest| rest.starts_with(delimiter))
                    });
                    attributes.push(if has_children && !children_wrong {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                }
                if let Some(special) = mailbox.special_use.filter(|_| special_use) {
                    attributes.push(special.as_str());
                }
                line(
                    out,
                    &format!(
                        "* LIST ({}) \"{delimiter}\" {}",
                        attributes.join(" "),
                        quote(name)
                    ),
                );
            }
        }
        ok(out, tag, &format!("{verb} completed"));
    }

    fn status(
        &mut self,
        tag: &str,
        account: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Vec<u8>,
    ) {
        let Ok(name) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[NONEXISTENT] No such mailbox");
        };
        let (acct, mbox) = (account.to_owned(), name.clone());
        let read = db(&self.store, move |s| {
            Ok((
                s.mailbox_status(&acct, &mbox)?,
                s.mailbox_counts(&acct, &mbox)?,
                s.recent_count(&acct, &mbox)?,
            ))
        });
        let (status, counts, recent) = match read {
            Ok(read) => read,
            Err(error) => return self.store_failed(out, tag, &error),
        };
        let mut values = Vec::new();
        for item in items {
            let value = match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", counts.exists),
                StatusDataItemName::Recent => format!("RECENT {recent}"),
                StatusDataItemName::UidNext
                    if self.config.faults.has(Policy::ImapStatusUidnextLow) =>
                {
                    format!("UIDNEXT {}", status.uidnext.saturating_sub(1).max(1))
                }
                StatusDataItemName::UidNext => format!("UIDNEXT {}", status.uidnext),
                StatusDataItemName::UidValidity
                    if self.config.faults.has(Policy::ImapStatusUidvalidityWrong) =>
                {
                    format!("UIDVALIDITY {}", status.uidvalidity.wrapping_add(1).max(1))
                }
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", status.uidvalidity),
                StatusDataItemName::Unseen
                    if self.config.faults.has(Policy::ImapStatusUnseenAll) =>
                {
                    format!("UNSEEN {}", counts.exists)
                }
                StatusDataItemName::Unseen => format!("UNSEEN {}", counts.unseen),
                StatusDataItemName::HighestModSeq => {
                    self.condstore = true;
                    format!("HIGHESTMODSEQ {}", status.highest_modseq.max(1))
                }
                StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage => {
                    return self.refuse(out, tag, "BAD", "STATUS DELETED is IMAP4rev2 only");
                }
            };
            values.push(value);
        }
        line(
            out,
            &format!(
                "* STATUS {} ({})",
                quote(&self.namespace.to_wire(&name)),
                values.join(" ")
            ),
        );
        ok(out, tag, "STATUS completed");
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        tag: &str,
        account: &str,
        mailbox: &Mailbox<'_>,
        flags: Vec<String>,
        date: Option<i64>,
        octets: &[u8],
        out: &mut Vec<u8>,
    ) {
        let Ok(name) = self.store_name(mailbox) else {
            return self.refuse(out, tag, "NO", "[TRYCREATE] No such mailbox");
        };
        if octets.is_empty() {
            return self.refuse(out, tag, "NO", "Cannot append an empty message");
        }
        let mut octets = octets.to_vec();
        if self.config.faults.has(Policy::ImapAppendBareLf) {
            let crlf = |i: usize| octets[i] == b'\r' && octets.get(i + 1) == Some(&b'\n');
            octets = (0..octets.len())
                .filter(|&i| !crlf(i))
                .map(|i| octets[i])
                .collect();
        }
        let acct = account.to_owned();
        match db(&self.store, move |s| {
            s.append(&acct, &name, &octets, &flags, date)
        }) {
            Ok(_)
                if self.config.faults.has(Policy::ImapNoUidplusCodes)
                    || !self.extensions.offers(Extension::Uidplus) =>
            {
                ok(out, tag, "APPEND completed");
            }
            Ok(done) => ok(
                out,
                tag,
                &format!(
                    "[APPENDUID {} {}] APPEND completed",
                    done.uidvalidity, done.uid
                ),
            ),
            Err(StoreError::NoSuchMailbox { .. }) => {
                self.refuse(out, tag, "NO", "[TRYCREATE] No such mailbox");
            }
            Err(error) => self.store_failed(out, tag, &error),
        }
    }

    /// A change notification the driver received for the selected mailbox during IDLE: the
    /// next report reads the store again (the notification itself is also in this session's
    /// own receiver, or was lost to a lag).
    pub(super) fn mark_changed(&mut self) {
        if let Some(selected) = self.selected.as_mut() {
            selected.dirty = true;
        }
    }

    /// A receiver of the selected mailbox's change notifications for the driver to wait on
    /// during IDLE; `None` when there is nothing to wait for. Made before the session looks at
    /// its own receiver, so that a change sent in between reaches both.
    pub(super) fn change_watch(&self) -> Option<broadcast::Receiver<Change>> {
        self.selected
            .as_ref()
            .filter(|s| !s.gone)
            .map(|s| s.watch.resubscribe())
    }

    /// Untagged updates during IDLE (RFC 2177: EXPUNGE is allowed).
    pub(super) fn idle_updates(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.report_changes(&mut out, true);
        self.presentation.retext(out)
    }

    /// The line that ends the IDLE tagged `tag`: `DONE`, answered with the tagged OK; anything
    /// else is BAD.
    pub(super) fn idle_end(&mut self, tag: &str, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.report_changes(&mut out, true);
        let text = input.strip_suffix(b"\n").unwrap_or(input);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.eq_ignore_ascii_case(b"DONE") {
            ok(&mut out, tag, "IDLE terminated");
        } else {
            self.refuse(&mut out, tag, "BAD", "Expected DONE to end IDLE");
        }
        self.presentation.retext(out)
    }

    /// Reports what changed in the selected mailbox since the client was last told: EXPUNGE
    /// (only when `expunges_allowed`; otherwise they wait), FETCH FLAGS, EXISTS and RECENT.
    pub(super) fn report_changes(&mut self, out: &mut Vec<u8>, expunges_allowed: bool) {
        let Some(account) = self.account().map(str::to_owned) else {
            return;
        };
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        loop {
            match selected.watch.try_recv() {
                Ok(Change::Deleted) | Err(TryRecvError::Closed) => {
                    selected.gone = true;
                    break;
                }
                Ok(_) | Err(TryRecvError::Lagged(_)) => selected.dirty = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if selected.gone {
            self.selected = None;
            line(
                out,
                "* BYE The selected mailbox was deleted or renamed by another session",
            );
            self.closing = true;
            return;
        }
        if self.config.faults.has(Policy::ImapNoUntaggedUpdates) {
            selected.dirty = false;
            return;
        }
        let style = ExpungeStyle::of(&self.config.faults);
        if !selected.dirty {
            // Expunges that had to wait for a command that allows them.
            if expunges_allowed {
                selected.flush_expunges(style, out);
            }
            return;
        }
        let (acct, mbox) = (account, selected.name.clone());
        let (read_only, since) = (selected.read_only, selected.modseq);
        // Only what changed since the last report: a few indexed rows, however large the
        // mailbox, read in one snapshot with the highest mod-sequence they reach, so a change
        // committed meanwhile is read next time rather than missed.
        let read = db(&self.store, move |s| {
            s.changes_since(&acct, &mbox, since, !read_only)
        });
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let Changes {
            highest_modseq: highest,
            changed,
            expunged,
            recent,
        } = match read {
            Ok(read) => read,
            Err(error) => {
                // Nothing is lost: the next change notification reads again from the same
                // mod-sequence. Not retried at once, which would spin while the store fails.
                tracing::warn!(
                    "IMAP could not read the changes to {}: {error}",
                    selected.name
                );
                selected.dirty = false;
                return;
            }
        };
        selected.dirty = false;
        selected.modseq = selected.modseq.max(highest);
        let condstore = self.condstore;
        if self.config.faults.has(Policy::ImapExpungeUnannounced) {
            selected.unheard_expunges += expunged
                .iter()
                .filter(|uid| **uid > selected.max_uid)
                .count();
        }
        selected.pending_expunges.extend(
            expunged
                .into_iter()
                .filter(|uid| selected.uids.binary_search(uid).is_ok()),
        );
        if expunges_allowed {
            selected.flush_expunges(style, out);
        }
        let skip = self.config.faults.has(Policy::ImapKeywordWithoutFlags);
        selected.announce_keywords(changed.iter().map(|m| &m.flags[..]), skip, out);
        for meta in &changed {
            if selected.pending_expunges.contains(&meta.uid) {
                continue;
            }
            let Some(seq) = selected.seq_of(meta.uid) else {
                continue;
            };
            let index = (seq - 1) as usize;
            if selected.flags[index] != meta.flags {
                selected.flags[index].clone_from(&meta.flags);
                let mut text = format!(
                    "* {seq} FETCH (UID {} FLAGS {}",
                    meta.uid,
                    flag_list(&meta.flags, selected.recent.contains(&meta.uid))
                );
                if condstore {
                    text.push_str(&format!(" MODSEQ ({})", meta.modseq));
                }
                text.push(')');
                line(out, &text);
            }
        }
        selected.recent.extend(recent);
        let before = selected.uids.len();
        let mut new: Vec<_> = changed
            .into_iter()
            .filter(|meta| meta.uid > selected.max_uid)
            .collect();
        if self.config.faults.has(Policy::ImapNewMessagesUnordered) {
            new.reverse();
        }
        let fetch_first = self.config.faults.has(Policy::ImapFetchBeforeExists);
        for meta in new {
            if fetch_first {
                line(
                    out,
                    &format!(
                        "* {} FETCH (UID {} FLAGS {})",
                        selected.uids.len() + 1,
                        meta.uid,
                        flag_list(&meta.flags, selected.recent.contains(&meta.uid))
                    ),
                );
            }
            selected.admit(meta.uid, meta.flags);
        }
        if selected.uids.len() != before {
            line(out, &format!("* {} EXISTS", selected.uids.len()));
            let recent = selected
                .uids
                .iter()
                .filter(|uid| selected.recent.contains(uid))
                .count();
            line(out, &format!("* {recent} RECENT"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b"a/b/c", b'/', false));
        assert!(wildcard_match(b"%", b"abc", b'/', false));
        assert!(!wildcard_match(b"%", b"a/b", b'/', false));
        assert!(wildcard_match(b"a/%", b"a/b", b'/', false));
        assert!(!wildcard_match(b"a/%", b"a/b/c", b'/', false));
        assert!(wildcard_match(b"a/*", b"a/b/c", b'/', false));
        assert!(wildcard_match(b"%/%", b"a/b", b'/', false));
        assert!(!wildcard_match(b"%/%", b"ab", b'/', false));
        assert!(wildcard_match(b"S*t", b"Sent", b'/', false));
        assert!(!wildcard_match(b"s*t", b"Sent", b'/', false));
        assert!(wildcard_match(b"s*t", b"Sent", b'/', true));
        assert!(!wildcard_match(b"", b"a", b'/', false));
        assert!(wildcard_match(b"", b"", b'/', false));
        // Many wildcards stay cheap.
        let pattern = b"*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%x".repeat(10);
        assert!(!wildcard_match(&pattern, &[b'a'; 500], b'/', false));
    }

    #[test]
    fn names_must_be_modified_utf7() {
        assert!(is_modified_utf7("Sent"));
        assert!(is_modified_utf7("Entw&APw-rfe"));
        assert!(is_modified_utf7("a&-b"));
        assert!(!is_modified_utf7("Entw\u{fc}rfe"));
        assert!(!is_modified_utf7("a&b"));
        assert!(!is_modified_utf7("a&AB!-"));
        assert!(!is_modified_utf7("tab\there"));
    }

    #[test]
    fn inbox_matches_in_any_case() {
        assert!(name_matches(b"inbox", "INBOX", '/'));
        assert!(name_matches(b"InBoX", "INBOX", '/'));
        assert!(name_matches(b"in*", "INBOX", '/'));
        assert!(!name_matches(b"sent", "Sent", '/'));
        assert!(name_matches(b"inbox/%", "INBOX/a", '/'));
        assert!(name_matches(b"inbox.%", "INBOX.a", '.'));
        assert!(!name_matches(b"INBOX.%", "INBOX.a.b", '.'));
        assert!(name_matches(b"INBOX.%", "INBOX.a/b", '.'));
    }

    #[test]
    fn names_are_quoted_or_literal() {
        assert_eq!(quote("Sent"), "\"Sent\"");
        assert_eq!(quote("a \"b\\"), "\"a \\\"b\\\\\"");
        assert_eq!(quote("caf\u{e9}"), "{5}\r\ncaf\u{e9}");
    }

    #[test]
    fn flag_lists() {
        assert_eq!(flag_list(&[], false), "()");
        assert_eq!(flag_list(&[], true), "(\\Recent)");
        assert_eq!(
            flag_list(&["\\Seen".into(), "$Junk".into()], true),
            "(\\Seen $Junk \\Recent)"
        );
    }
}

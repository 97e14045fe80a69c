//! An IMAP4rev1 client for conformance tests (RFC 3501, with the IDLE, UIDPLUS, MOVE, LITERAL+,
//! ENABLE, NAMESPACE, ID, ESEARCH, SPECIAL-USE, CONDSTORE and SASL-IR extensions): raw lines, strict
//! response parsing into a faithful tree, malformed input on request, and a transcript of every
//! byte.
//!
//! Reading is two steps. A framer finds where one response ends, following the literals its
//! lines announce and looking at each received byte once, so a large literal arriving in small
//! reads costs linear time. A parser then turns the complete response into [`Incoming`]: typed
//! variants for the responses tests look at, with message data (FETCH items, ENVELOPE,
//! BODYSTRUCTURE, extension data) kept as generic [`Value`] trees.
//!
//! Commands return a [`CommandResult`] inside the `Result`: `Err(ClientError)` when the
//! connection broke or the server broke the syntax, otherwise the tagged status (OK, NO or BAD)
//! and every untagged response that came before it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet::Alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};

use super::ClientError;
use super::conn::{Connection, Parsed};
use super::legacy_tls::{HelloOutcome, LegacyOutcome, LegacyVersion, Offer};
use super::tls::TlsClient;
use super::transcript::Transcript;

/// Most bytes one response may have outside its literals. RFC 3501 sets no limit; this bounds
/// what a server that never ends a line can make us buffer, with room for long SEARCH results.
const MAX_LINE: usize = 1024 * 1024;

/// Default for [`ImapClient::set_max_literal`].
pub const DEFAULT_MAX_LITERAL: usize = 64 * 1024 * 1024;

/// Deepest nesting of parenthesised lists accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Bytes shown on each side of a parse error inside a long line or literal.
const SHOWN_AROUND_ERROR: usize = 512;

/// Bytes of a response's first line kept to name it in errors raised after parsing.
const HEAD_KEPT: usize = 1024;

/// The outcome of a step that only goes on after OK or a continuation, such as IDLE: the value,
/// or the result that ended the command instead.
pub type Outcome<T> = Result<T, CommandResult>;

fn malformed(reason: impl Into<String>, bytes: &[u8]) -> ClientError {
    ClientError::MalformedReply {
        reason: reason.into(),
        bytes: bytes.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// The response tree

/// The condition of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// `OK`.
    Ok,
    /// `NO`.
    No,
    /// `BAD`.
    Bad,
    /// `BYE`, untagged only.
    Bye,
    /// `PREAUTH`, in a greeting only.
    Preauth,
}

impl StatusKind {
    /// The condition as the protocol spells it: `OK`, `NO`, `BAD`, `BYE`, `PREAUTH`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bad => "BAD",
            Self::Bye => "BYE",
            Self::Preauth => "PREAUTH",
        }
    }
}

/// `OK`, `NO`, `BAD`, `BYE` or `PREAUTH` with its optional response code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The condition.
    pub kind: StatusKind,
    /// The response code in brackets, if any.
    pub code: Option<Code>,
    /// The human-readable text after the code; may be empty (RFC 9051 allows that).
    pub text: String,
}

impl Status {
    /// Whether the condition is OK.
    pub fn is_ok(&self) -> bool {
        self.kind == StatusKind::Ok
    }

    /// The capabilities of a `[CAPABILITY ...]` code.
    pub fn capabilities(&self) -> Option<&[String]> {
        match &self.code {
            Some(Code::Capability(capabilities)) => Some(capabilities),
            _ => None,
        }
    }
}

/// As on the wire, without tag and CRLF.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// A response code (RFC 3501 section 7.1 and the extensions'). Codes without arguments that
/// have no variant of their own, such as RFC 5530's `AUTHENTICATIONFAILED`, are [`Code::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// `ALERT`.
    Alert,
    /// `BADCHARSET` and the charsets it lists.
    BadCharset(Vec<String>),
    /// `CAPABILITY` and the capabilities.
    Capability(Vec<String>),
    /// `PARSE`.
    Parse,
    /// `PERMANENTFLAGS`, `\*` included as sent.
    PermanentFlags(Vec<String>),
    /// `READ-ONLY`.
    ReadOnly,
    /// `READ-WRITE`.
    ReadWrite,
    /// `TRYCREATE`.
    TryCreate,
    /// `UIDNEXT`.
    UidNext(u32),
    /// `UIDVALIDITY`.
    UidValidity(u32),
    /// `UNSEEN`.
    Unseen(u32),
    /// `APPENDUID uidvalidity uids` (RFC 4315).
    AppendUid {
        /// The destination's UIDVALIDITY.
        uidvalidity: u32,
        /// The UIDs given to the appended messages.
        uids: SequenceSet,
    },
    /// `COPYUID uidvalidity source destination` (RFC 4315, also sent by MOVE, RFC 6851).
    CopyUid {
        /// The destination's UIDVALIDITY.
        uidvalidity: u32,
        /// The UIDs of the messages copied.
        source: SequenceSet,
        /// Their UIDs in the destination, in the same order.
        destination: SequenceSet,
    },
    /// `UIDNOTSTICKY` (RFC 4315).
    UidNotSticky,
    /// `HIGHESTMODSEQ` (RFC 7162).
    HighestModseq(u64),
    /// `NOMODSEQ` (RFC 7162).
    NoModseq,
    /// `MODIFIED` and the messages a conditional STORE left alone (RFC 7162).
    Modified(SequenceSet),
    /// `CLOSED` (RFC 7162).
    Closed,
    /// Any other code, its name uppercase, its arguments as sent.
    Other {
        /// The code's name.
        name: String,
        /// Everything between the name's space and the `]`.
        arguments: Option<String>,
    },
}

impl Code {
    /// The code's name, uppercase.
    pub fn name(&self) -> &str {
        match self {
            Self::Alert => "ALERT",
            Self::BadCharset(_) => "BADCHARSET",
            Self::Capability(_) => "CAPABILITY",
            Self::Parse => "PARSE",
            Self::PermanentFlags(_) => "PERMANENTFLAGS",
            Self::ReadOnly => "READ-ONLY",
            Self::ReadWrite => "READ-WRITE",
            Self::TryCreate => "TRYCREATE",
            Self::UidNext(_) => "UIDNEXT",
            Self::UidValidity(_) => "UIDVALIDITY",
            Self::Unseen(_) => "UNSEEN",
            Self::AppendUid { .. } => "APPENDUID",
            Self::CopyUid { .. } => "COPYUID",
            Self::UidNotSticky => "UIDNOTSTICKY",
            Self::HighestModseq(_) => "HIGHESTMODSEQ",
            Self::NoModseq => "NOMODSEQ",
            Self::Modified(_) => "MODIFIED",
            Self::Closed => "CLOSED",
            Self::Other { name, .. } => name,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Self::BadCharset(charsets) if !charsets.is_empty() => {
                write!(f, " ({})", charsets.join(" "))
            }
            Self::Capability(words) => write!(f, " {}", words.join(" ")),
            Self::PermanentFlags(flags) => write!(f, " ({})", flags.join(" ")),
            Self::UidNext(number) | Self::UidValidity(number) | Self::Unseen(number) => {
                write!(f, " {number}")
            }
            Self::AppendUid { uidvalidity, uids } => write!(f, " {uidvalidity} {uids}"),
            Self::CopyUid {
                uidvalidity,
                source,
                destination,
            } => write!(f, " {uidvalidity} {source} {destination}"),
            Self::HighestModseq(modseq) => write!(f, " {modseq}"),
            Self::Modified(set) => write!(f, " {set}"),
            Self::Other {
                arguments: Some(arguments),
                ..
            } => write!(f, " {arguments}"),
            _ => Ok(()),
        }
    }
}

/// A set of UIDs or message numbers, as ranges in the order sent; `a:b` with `a > b` means the
/// same as `b:a`. Servers' sets never hold `*` here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet {
    /// `(first, last)` of each range; a single number is `(n, n)`.
    pub ranges: Vec<(u32, u32)>,
}

impl SequenceSet {
    /// The number, when the set is exactly one.
    pub fn single(&self) -> Option<u32> {
        match self.ranges[..] {
            [(first, last)] if first == last => Some(first),
            _ => None,
        }
    }

    /// Whether `number` is in the set.
    pub fn contains(&self, number: u32) -> bool {
        self.ranges
            .iter()
            .any(|&(a, b)| (a.min(b)..=a.max(b)).contains(&number))
    }

    /// The numbers in order, each range ascending; lazily, as a set may span billions.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a.min(b)..=a.max(b))
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, &(first, last)) in self.ranges.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}:{last}")?;
            }
        }
        Ok(())
    }
}

/// A generic piece of response data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `NIL`.
    Nil,
    /// A number; IMAP numbers are 32-bit, mod-sequences 63-bit.
    Number(u64),
    /// A quoted string or a literal, unescaped.
    String(Vec<u8>),
    /// An atom as sent: a keyword, a flag such as `\Seen`, or a FETCH item name with its section
    /// and origin such as `BODY[HEADER.FIELDS (SUBJECT)]<0>`.
    Atom(String),
    /// A parenthesised list.
    List(Vec<Value>),
}

impl Value {
    /// The octets of a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::String(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// A string's octets as UTF-8, or an atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(bytes) => std::str::from_utf8(bytes).ok(),
            Self::Atom(atom) => Some(atom),
            _ => None,
        }
    }

    /// A number.
    pub fn as_number(&self) -> Option<u64> {
        match self {
            Self::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// A list's items.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(items) => Some(items),
            _ => None,
        }
    }

    /// The `index`th item of a list.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.as_list()?.get(index)
    }

    /// Whether this is `NIL`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Nil)
    }
}

/// IMAP syntax; a string that cannot be quoted shows as `{n}` followed by its bytes escaped.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nil => f.write_str("NIL"),
            Self::Number(number) => write!(f, "{number}"),
            Self::Atom(atom) => f.write_str(atom),
            Self::String(bytes) => match quote(bytes) {
                Some(quoted) => f.write_str(&quoted),
                None => write!(
                    f,
                    "{{{}}}\\r\\n{}",
                    bytes.len(),
                    super::transcript::escape_bytes(bytes)
                ),
            },
            Self::List(items) => {
                f.write_str("(")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A `* LIST` or `* LSUB` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// Name attributes such as `\Noselect` or SPECIAL-USE's `\Sent`, as sent.
    pub attributes: Vec<String>,
    /// The hierarchy delimiter, `None` for NIL.
    pub delimiter: Option<char>,
    /// The name as on the wire (modified UTF-7 unless UTF-8 was enabled).
    pub name: String,
    /// RFC 5258 extended data, such as `("CHILDINFO" ("SUBSCRIBED"))`.
    pub extended: Vec<Value>,
}

impl ListItem {
    /// Whether the attributes include `attribute` (any case).
    pub fn has_attribute(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|own| own.eq_ignore_ascii_case(attribute))
    }

    /// The name decoded from modified UTF-7.
    pub fn decoded_name(&self) -> Result<String, ClientError> {
        decode_modified_utf7(&self.name)
    }
}

/// A `* STATUS` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The mailbox name as on the wire.
    pub mailbox: String,
    /// Item names as sent and their values.
    pub items: Vec<(String, u64)>,
}

impl MailboxStatus {
    /// The value of item `name` (any case), such as `MESSAGES`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.items
            .iter()
            .find(|(own, _)| own.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }
}

/// A `* SEARCH` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The message numbers or UIDs found.
    pub numbers: Vec<u32>,
    /// The highest mod-sequence of the messages found, when the search used MODSEQ (RFC 7162).
    pub modseq: Option<u64>,
}

/// A `* ESEARCH` response (RFC 4731, and IMAP4rev2's only search answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Esearch {
    /// The tag of the command it answers, from `(TAG "...")`.
    pub tag: Option<String>,
    /// Whether the numbers are UIDs.
    pub uid: bool,
    /// MIN.
    pub min: Option<u32>,
    /// MAX.
    pub max: Option<u32>,
    /// COUNT.
    pub count: Option<u32>,
    /// ALL.
    pub all: Option<SequenceSet>,
    /// MODSEQ (RFC 7162).
    pub modseq: Option<u64>,
    /// Other return data, names uppercase.
    pub other: Vec<(String, Value)>,
}

/// A `* n FETCH` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The message sequence number.
    pub seq: u32,
    /// Item names as sent (`FLAGS`, `BODY[1.2]<0>`, ...) and their values, in order.
    pub items: Vec<(String, Value)>,
}

impl Fetch {
    /// The value of item `name`, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|(own, _)| own.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// FLAGS.
    pub fn flags(&self) -> Option<Vec<&str>> {
        let flags = self.get("FLAGS")?.as_list()?;
        Some(flags.iter().filter_map(Value::as_str).collect())
    }

    /// Whether FLAGS holds `flag` (any case).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags()
            .is_some_and(|flags| flags.iter().any(|own| own.eq_ignore_ascii_case(flag)))
    }

    /// UID.
    pub fn uid(&self) -> Option<u32> {
        u32::try_from(self.get("UID")?.as_number()?).ok()
    }

    /// MODSEQ (RFC 7162).
    pub fn modseq(&self) -> Option<u64> {
        self.get("MODSEQ")?.get(0)?.as_number()
    }

    /// RFC822.SIZE.
    pub fn rfc822_size(&self) -> Option<u64> {
        self.get("RFC822.SIZE")?.as_number()
    }

    /// INTERNALDATE, as sent.
    pub fn internal_date(&self) -> Option<&str> {
        self.get("INTERNALDATE")?.as_str()
    }

    /// The octets of `BODY[section]`, with or without an origin (`<0>`); `None` when absent
    /// or NIL. `section` is what goes between the brackets, such as `""`, `"1.2"` or `"HEADER"`.
    pub fn body(&self, section: &str) -> Option<&[u8]> {
        let wanted = format!("BODY[{section}]");
        self.items
            .iter()
            .find(|(name, _)| {
                name.get(..wanted.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(&wanted))
                    && matches!(name.as_bytes().get(wanted.len()), None | Some(b'<'))
            })
            .and_then(|(_, value)| value.as_bytes())
    }

    /// ENVELOPE, a list of ten (RFC 3501 section 7.4.2).
    pub fn envelope(&self) -> Option<&Value> {
        self.get("ENVELOPE")
    }

    /// BODYSTRUCTURE.
    pub fn bodystructure(&self) -> Option<&Value> {
        self.get("BODYSTRUCTURE")
    }
}

/// One namespace of a NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The prefix, such as `""` or `"#shared/"`.
    pub prefix: String,
    /// The hierarchy delimiter, `None` for NIL.
    pub delimiter: Option<char>,
    /// Extension names and values.
    pub extensions: Vec<(String, Vec<String>)>,
}

/// A `* NAMESPACE` response; NIL is an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// The user's own namespaces.
    pub personal: Vec<Namespace>,
    /// Other users' namespaces.
    pub other_users: Vec<Namespace>,
    /// Shared namespaces.
    pub shared: Vec<Namespace>,
}

/// An untagged response (`* ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`.
    Status(Status),
    /// `* CAPABILITY ...`.
    Capability(Vec<String>),
    /// `* ENABLED ...` (RFC 5161).
    Enabled(Vec<String>),
    /// `* FLAGS (...)`.
    Flags(Vec<String>),
    /// `* LIST`.
    List(ListItem),
    /// `* LSUB`.
    Lsub(ListItem),
    /// `* STATUS mailbox (...)`.
    MailboxStatus(MailboxStatus),
    /// `* SEARCH ...`.
    Search(Search),
    /// `* ESEARCH ...` (RFC 4731).
    Esearch(Esearch),
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n RECENT`.
    Recent(u32),
    /// `* n EXPUNGE`.
    Expunge(u32),
    /// `* n FETCH (...)`.
    Fetch(Fetch),
    /// `* NAMESPACE ...` (RFC 2342).
    Namespace(Namespaces),
    /// `* ID (...)` (RFC 2971): field names and values, `None` for `* ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),
    /// `* VANISHED [(EARLIER)] uids` (RFC 7162).
    Vanished {
        /// Whether `(EARLIER)` was given.
        earlier: bool,
        /// The expunged UIDs.
        uids: SequenceSet,
    },
    /// Any other response, with its number if it started with one, its name uppercase and the
    /// rest parsed generically.
    Other {
        /// The number before the name, as in `* 3 XFOO`.
        number: Option<u32>,
        /// The response's name.
        name: String,
        /// What followed the name.
        values: Vec<Value>,
    },
}

/// `tag OK|NO|BAD [code] text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The tag.
    pub tag: String,
    /// OK, NO or BAD.
    pub status: Status,
}

/// `+ text`, a command continuation request; `text` may be a base64 SASL challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    /// A response code, if the text starts with one.
    pub code: Option<Code>,
    /// The text after the code.
    pub text: String,
}

/// One response from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `* ...`.
    Untagged(Response),
    /// `tag ...`.
    Tagged(Tagged),
    /// `+ ...`.
    Continuation(Continuation),
}

/// What a command got: the tagged status and every untagged response before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The command's tag.
    pub tag: String,
    /// The tagged OK, NO or BAD.
    pub tagged: Status,
    /// The untagged responses, in order.
    pub untagged: Vec<Response>,
}

impl CommandResult {
    /// Whether the tagged status is OK.
    pub fn is_ok(&self) -> bool {
        self.tagged.is_ok()
    }

    /// The codes of the untagged status responses, then the tagged one's.
    pub fn codes(&self) -> impl Iterator<Item = &Code> {
        self.untagged
            .iter()
            .filter_map(|response| match response {
                Response::Status(status) => status.code.as_ref(),
                _ => None,
            })
            .chain(self.tagged.code.as_ref())
    }

    /// The FETCH responses.
    pub fn fetches(&self) -> Vec<&Fetch> {
        self.pick(|response| match response {
            Response::Fetch(fetch) => Some(fetch),
            _ => None,
        })
    }

    /// The LIST responses.
    pub fn lists(&self) -> Vec<&ListItem> {
        self.pick(|response| match response {
            Response::List(item) => Some(item),
            _ => None,
        })
    }

    /// The LSUB responses.
    pub fn lsubs(&self) -> Vec<&ListItem> {
        self.pick(|response| match response {
            Response::Lsub(item) => Some(item),
            _ => None,
        })
    }

    /// The first SEARCH response.
    pub fn search(&self) -> Option<&Search> {
        self.pick(|response| match response {
            Response::Search(search) => Some(search),
            _ => None,
        })
        .first()
        .copied()
    }

    /// The first ESEARCH response.
    pub fn esearch(&self) -> Option<&Esearch> {
        self.untagged.iter().find_map(|response| match response {
            Response::Esearch(esearch) => Some(esearch),
            _ => None,
        })
    }

    /// The first STATUS response.
    pub fn mailbox_status(&self) -> Option<&MailboxStatus> {
        self.pick(|response| match response {
            Response::MailboxStatus(status) => Some(status),
            _ => None,
        })
        .first()
        .copied()
    }

    /// The last EXISTS count.
    pub fn exists(&self) -> Option<u32> {
        self.untagged
            .iter()
            .rev()
            .find_map(|response| match response {
                Response::Exists(count) => Some(*count),
                _ => None,
            })
    }

    /// The EXPUNGE message numbers, in order.
    pub fn expunged(&self) -> Vec<u32> {
        self.pick(|response| match response {
            Response::Expunge(number) => Some(number),
            _ => None,
        })
        .into_iter()
        .copied()
        .collect()
    }

    /// The capabilities of the last CAPABILITY response, else of a CAPABILITY code.
    pub fn capabilities(&self) -> Option<&[String]> {
        let listed = self
            .untagged
            .iter()
            .rev()
            .find_map(|response| match response {
                Response::Capability(capabilities) => Some(capabilities.as_slice()),
                _ => None,
            });
        listed.or_else(|| {
            self.codes().find_map(|code| match code {
                Code::Capability(capabilities) => Some(capabilities.as_slice()),
                _ => None,
            })
        })
    }

    /// The extensions ENABLED responses list.
    pub fn enabled(&self) -> Vec<&str> {
        self.pick(|response| match response {
            Response::Enabled(names) => Some(names),
            _ => None,
        })
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }

    /// The NAMESPACE response.
    pub fn namespaces(&self) -> Option<&Namespaces> {
        self.pick(|response| match response {
            Response::Namespace(namespaces) => Some(namespaces),
            _ => None,
        })
        .first()
        .copied()
    }

    /// The fields of the ID response; `None` when there was none or it was `* ID NIL`.
    pub fn id(&self) -> Option<&[(String, Option<String>)]> {
        self.untagged.iter().find_map(|response| match response {
            Response::Id(fields) => fields.as_deref(),
            _ => None,
        })
    }

    /// UIDVALIDITY and UIDs of an APPENDUID code (RFC 4315).
    pub fn append_uid(&self) -> Option<(u32, &SequenceSet)> {
        self.codes().find_map(|code| match code {
            Code::AppendUid { uidvalidity, uids } => Some((*uidvalidity, uids)),
            _ => None,
        })
    }

    /// UIDVALIDITY, source and destination UIDs of a COPYUID code, tagged (COPY) or untagged
    /// (MOVE, RFC 6851 section 4.3).
    pub fn copy_uid(&self) -> Option<(u32, &SequenceSet, &SequenceSet)> {
        self.codes().find_map(|code| match code {
            Code::CopyUid {
                uidvalidity,
                source,
                destination,
            } => Some((*uidvalidity, source, destination)),
            _ => None,
        })
    }

    fn pick<'a, T: 'a>(&'a self, select: impl Fn(&'a Response) -> Option<T>) -> Vec<T> {
        self.untagged.iter().filter_map(select).collect()
    }
}

/// What SELECT or EXAMINE reported about the mailbox (RFC 3501 section 6.3.1, RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The EXISTS count.
    pub exists: Option<u32>,
    /// The RECENT count.
    pub recent: Option<u32>,
    /// The UIDVALIDITY code.
    pub uidvalidity: Option<u32>,
    /// The UIDNEXT code.
    pub uidnext: Option<u32>,
    /// The UNSEEN code: the number of the first unseen message.
    pub unseen: Option<u32>,
    /// The FLAGS response.
    pub flags: Option<Vec<String>>,
    /// The PERMANENTFLAGS code.
    pub permanent_flags: Option<Vec<String>>,
    /// `Some(true)` for a READ-ONLY tagged code, `Some(false)` for READ-WRITE.
    pub read_only: Option<bool>,
    /// The HIGHESTMODSEQ code.
    pub highest_modseq: Option<u64>,
    /// Everything the command got.
    pub result: CommandResult,
}

impl Selected {
    fn from_result(result: CommandResult) -> Self {
        let mut selected = Self {
            exists: None,
            recent: None,
            uidvalidity: None,
            uidnext: None,
            unseen: None,
            flags: None,
            permanent_flags: None,
            read_only: None,
            highest_modseq: None,
            result,
        };
        for response in &selected.result.untagged {
            match response {
                Response::Exists(count) => selected.exists = Some(*count),
                Response::Recent(count) => selected.recent = Some(*count),
                Response::Flags(flags) => selected.flags = Some(flags.clone()),
                _ => {}
            }
        }
        for code in selected.result.codes() {
            match code {
                Code::UidValidity(value) => selected.uidvalidity = Some(*value),
                Code::UidNext(value) => selected.uidnext = Some(*value),
                Code::Unseen(value) => selected.unseen = Some(*value),
                Code::PermanentFlags(flags) => selected.permanent_flags = Some(flags.clone()),
                Code::HighestModseq(value) => selected.highest_modseq = Some(*value),
                _ => {}
            }
        }
        selected.read_only = match selected.result.tagged.code {
            Some(Code::ReadOnly) => Some(true),
            Some(Code::ReadWrite) => Some(false),
            _ => None,
        };
        selected
    }
}

// ---------------------------------------------------------------------------------------------
// Framing: where does the response at the front of the buffer end?

/// Finds the end of one response: its first line, and after each line that announces a literal
/// (`{n}` CRLF), the n octets and the next line. Each call resumes where the last stopped, so a
/// response arriving in many reads is searched once.
struct Framer {
    max_literal: usize,
    /// Behind a mutex rather than a `Cell` only so that the client is `Sync` and its futures
    /// `Send` (load generators run it on a multi-threaded runtime); it is never contended.
    scan: Mutex<Scan>,
}

#[derive(Clone, Copy, Default)]
struct Scan {
    /// Where the line being looked for starts: 0, or just after a literal.
    line_start: usize,
    /// Where the search for that line's LF resumes.
    searched: usize,
    /// Bytes of complete lines so far, literals excluded.
    line_bytes: usize,
    /// Octets of the literals announced so far.
    literal_bytes: usize,
}

impl Framer {
    fn new(max_literal: usize) -> Self {
        Self {
            max_literal,
            scan: Mutex::default(),
        }
    }

    /// Parses a complete response from the front of `buf`, with its first line (up to
    /// [`HEAD_KEPT`] bytes) for errors about it raised later.
    fn parse(&self, buf: &[u8]) -> Parsed<(Incoming, Vec<u8>)> {
        let mut scan = *self.scan.lock().unwrap_or_else(PoisonError::into_inner);
        let end = self.frame_end(&mut scan, buf);
        let Some(end) = end? else {
            *self.scan.lock().unwrap_or_else(PoisonError::into_inner) = scan;
            return Ok(None);
        };
        // The frame is consumed whatever the parse says; the next starts afresh at 0.
        *self.scan.lock().unwrap_or_else(PoisonError::into_inner) = Scan::default();
        let frame = &buf[..end];
        let incoming = parse_response(frame)?;
        let head_end = frame
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(end, |at| at + 1)
            .min(HEAD_KEPT);
        Ok(Some(((incoming, frame[..head_end].to_vec()), end)))
    }

    fn frame_end(&self, scan: &mut Scan, buf: &[u8]) -> Result<Option<usize>, ClientError> {
        loop {
            let from = scan.searched.max(scan.line_start);
            let Some(unsearched) = buf.get(from..) else {
                return Ok(None); // a literal is still arriving
            };
            let Some(at) = unsearched.iter().position(|&byte| byte == b'\n') else {
                scan.searched = buf.len();
                if scan.line_bytes + (buf.len() - scan.line_start) > MAX_LINE {
                    return Err(too_long(&buf[scan.line_start..]));
                }
                return Ok(None);
            };
            let end = from + at + 1;
            let line = &buf[scan.line_start..end];
            scan.line_bytes += line.len();
            if scan.line_bytes > MAX_LINE {
                return Err(too_long(line));
            }
            // Status responses end in free text, where `{5}` before CRLF is just text.
            if scan.line_start == 0 && is_status_line(line) {
                return Ok(Some(end));
            }
            let Some(size) = announced_literal(line)? else {
                return Ok(Some(end));
            };
            scan.literal_bytes = scan.literal_bytes.saturating_add(size);
            if scan.literal_bytes > self.max_literal {
                return Err(malformed(
                    format!(
                        "a literal of {size} octets takes the response's literals past the \
                         limit of {} octets",
                        self.max_literal
                    ),
                    shown(line),
                ));
            }
            scan.line_start = end + size;
            scan.searched = scan.line_start;
        }
    }
}

fn shown(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(2 * SHOWN_AROUND_ERROR)]
}

fn too_long(line: &[u8]) -> ClientError {
    malformed(
        format!(
            "no line end within {MAX_LINE} bytes outside literals (the first {} shown)",
            shown(line).len()
        ),
        shown(line),
    )
}

/// Whether the first line of a response is `+ ...`, `* OK|NO|BAD|BYE|PREAUTH ...` or
/// `tag OK|NO|BAD ...`, which end in text, not in a literal. (So a literal inside such a line's
/// response code, which RFC 3501 allows in BADCHARSET and no server sends, is not followed.)
fn is_status_line(line: &[u8]) -> bool {
    if line.starts_with(b"+") {
        return true;
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&byte| byte == b' ');
    let (Some(first), Some(second)) = (words.next(), words.next()) else {
        return false;
    };
    let names: &[&str] = if first == b"*" {
        &["OK", "NO", "BAD", "BYE", "PREAUTH"]
    } else {
        &["OK", "NO", "BAD"]
    };
    names
        .iter()
        .any(|name| second.eq_ignore_ascii_case(name.as_bytes()))
}

/// The size of the literal a line announces by ending in `{n}` CRLF.
fn announced_literal(line: &[u8]) -> Result<Option<usize>, ClientError> {
    let Some(content) = line.strip_suffix(b"}\r\n") else {
        return Ok(None);
    };
    let Some(open) = content.iter().rposition(|&byte| byte == b'{') else {
        return Ok(None);
    };
    let digits = &content[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let size = String::from_utf8_lossy(digits).parse().map_err(|_| {
        malformed(
            "literal size does not fit in this machine's memory",
            shown(line),
        )
    })?;
    Ok(Some(size))
}

// ---------------------------------------------------------------------------------------------
// Parsing a complete response (RFC 3501 section 9 and the extensions' grammars)

/// ATOM-CHAR: printable ASCII but atom-specials.
fn is_atom_char(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && !b"(){%*\"\\]".contains(&byte)
}

/// ASTRING-CHAR: ATOM-CHAR or `]`.
fn is_astring_char(byte: u8) -> bool {
    is_atom_char(byte) || byte == b']'
}

/// Parses one complete response, CRLF included.
fn parse_response(frame: &[u8]) -> Result<Incoming, ClientError> {
    let mut parser = Parser {
        buf: frame,
        pos: 0,
        depth: 0,
    };
    let incoming = parser.response()?;
    parser.crlf()?;
    if parser.pos != frame.len() {
        return Err(parser.error("bytes after the end of the response"));
    }
    Ok(incoming)
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Open parentheses around `pos`.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: impl fmt::Display) -> ClientError {
        self.error_at(self.pos, reason)
    }

    /// An error naming the line around `at`, cut to [`SHOWN_AROUND_ERROR`] bytes each side.
    fn error_at(&self, at: usize, reason: impl fmt::Display) -> ClientError {
        let at = at.min(self.buf.len());
        let low = at.saturating_sub(SHOWN_AROUND_ERROR);
        let high = (at + SHOWN_AROUND_ERROR).min(self.buf.len());
        let start = self.buf[low..at]
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(low, |newline| low + newline + 1);
        let end = self.buf[at..high]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(high, |newline| at + newline + 1);
        malformed(
            format!("{reason}, at byte {at} of the response"),
            &self.buf[start..end],
        )
    }

    fn unexpected(&self, expected: &str) -> ClientError {
        let found = match self.peek() {
            None => "the end".to_owned(),
            Some(b'\r') => "CR".to_owned(),
            Some(b'\n') => "a bare LF".to_owned(),
            Some(b' ') => "a space".to_owned(),
            Some(byte @ 0x21..=0x7e) => format!("'{}'", char::from(byte)),
            Some(byte) => format!("byte 0x{byte:02x}"),
        };
        self.error(format!("expected {expected}, found {found}"))
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.pos += 1;
        }
        matched
    }

    /// Consumes `word` (any case) if it comes next.
    fn eat_word(&mut self, word: &str) -> bool {
        let matched = self
            .buf
            .get(self.pos..self.pos + word.len())
            .is_some_and(|next| next.eq_ignore_ascii_case(word.as_bytes()));
        if matched {
            self.pos += word.len();
        }
        matched
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ClientError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn sp(&mut self) -> Result<(), ClientError> {
        self.expect(b' ', "a space")
    }

    fn crlf(&mut self) -> Result<(), ClientError> {
        if self.buf[self.pos..].starts_with(b"\r\n") {
            self.pos += 2;
            return Ok(());
        }
        match self.peek() {
            Some(b'\n') => Err(self.error("line ends in a bare LF, not CRLF")),
            Some(b'\r') => Err(self.error("bare CR")),
            _ => Err(self.unexpected("CRLF")),
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn atom(&mut self, what: &str) -> Result<String, ClientError> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(self.unexpected(what));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    fn keyword(&mut self, what: &str) -> Result<String, ClientError> {
        Ok(self.atom(what)?.to_ascii_uppercase())
    }

    fn number(&mut self) -> Result<u64, ClientError> {
        let start = self.pos;
        let digits = self.take_while(|byte| byte.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.unexpected("a number"));
        }
        String::from_utf8_lossy(digits)
            .parse()
            .map_err(|_| self.error_at(start, "number does not fit in 64 bits"))
    }

    /// RFC 3501's `number`, unsigned 32-bit.
    fn number32(&mut self) -> Result<u32, ClientError> {
        let start = self.pos;
        let number = self.number()?;
        u32::try_from(number).map_err(|_| self.error_at(start, "number does not fit in 32 bits"))
    }

    fn nz_number(&mut self, what: &str) -> Result<u32, ClientError> {
        let start = self.pos;
        match self.number32()? {
            0 => Err(self.error_at(start, format!("{what} is 0"))),
            number => Ok(number),
        }
    }

    /// RFC 7162's `mod-sequence-value`: 1 to 2^63 - 1.
    fn mod_sequence(&mut self) -> Result<u64, ClientError> {
        let start = self.pos;
        match self.number()? {
            modseq @ 1..=0x7fff_ffff_ffff_ffff => Ok(modseq),
            _ => Err(self.error_at(start, "mod-sequence outside 1 to 2^63-1")),
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ClientError> {
        let start = self.pos;
        self.expect(b'"', "'\"'")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => match self.buf.get(self.pos + 1) {
                    Some(&escaped @ (b'"' | b'\\')) => {
                        out.push(escaped);
                        self.pos += 2;
                    }
                    _ => {
                        return Err(
                            self.error("backslash in a quoted string not followed by '\"' or '\\'")
                        );
                    }
                },
                None | Some(b'\r' | b'\n') => {
                    return Err(self.error_at(start, "quoted string not closed on its line"));
                }
                Some(0) => return Err(self.error("NUL in a quoted string")),
                Some(byte) => {
                    out.push(byte);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Vec<u8>, ClientError> {
        let start = self.pos;
        self.expect(b'{', "'{'")?;
        let size = self.number()?;
        self.expect(b'}', "'}'")?;
        self.crlf()?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| self.pos.checked_add(size))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.error_at(start, "literal runs past the end of the response"))?;
        let octets = &self.buf[self.pos..end];
        if let Some(nul) = octets.iter().position(|&byte| byte == 0) {
            return Err(self.error_at(self.pos + nul, "NUL in a literal"));
        }
        self.pos = end;
        Ok(octets.to_vec())
    }

    fn string(&mut self, what: &str) -> Result<Vec<u8>, ClientError> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(self.unexpected(what)),
        }
    }

    fn nil(&mut self) -> bool {
        let is_nil = self
            .buf
            .get(self.pos..self.pos + 3)
            .is_some_and(|word| word.eq_ignore_ascii_case(b"NIL"))
            && !self
                .buf
                .get(self.pos + 3)
                .is_some_and(|&byte| is_astring_char(byte));
        if is_nil {
            self.pos += 3;
        }
        is_nil
    }

    fn nstring(&mut self, what: &str) -> Result<Option<Vec<u8>>, ClientError> {
        if self.nil() {
            return Ok(None);
        }
        self.string(what).map(Some)
    }

    fn astring(&mut self, what: &str) -> Result<Vec<u8>, ClientError> {
        if matches!(self.peek(), Some(b'"' | b'{')) {
            return self.string(what);
        }
        let atom = self.take_while(is_astring_char);
        if atom.is_empty() {
            return Err(self.unexpected(what));
        }
        Ok(atom.to_vec())
    }

    /// A string (`astring` when `atom_ok`) that must be UTF-8.
    fn text_string(&mut self, what: &str, atom_ok: bool) -> Result<String, ClientError> {
        let start = self.pos;
        let bytes = if atom_ok {
            self.astring(what)?
        } else {
            self.string(what)?
        };
        String::from_utf8(bytes).map_err(|_| self.error_at(start, format!("{what} is not UTF-8")))
    }

    /// `\`-flag or keyword; `\*` too when `star_ok` (PERMANENTFLAGS).
    fn flag(&mut self, star_ok: bool) -> Result<String, ClientError> {
        if self.eat(b'\\') {
            if star_ok && self.eat(b'*') {
                return Ok("\\*".to_owned());
            }
            return Ok(format!("\\{}", self.atom("a flag name after '\\'")?));
        }
        self.atom("a flag")
    }

    /// `"(" [item *(SP item)] ")"`.
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ClientError>,
    ) -> Result<Vec<T>, ClientError> {
        self.expect(b'(', "'('")?;
        let mut items = Vec::new();
        if self.eat(b')') {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(b')') {
                return Ok(items);
            }
            self.sp()?;
        }
    }

    fn sequence_set(&mut self) -> Result<SequenceSet, ClientError> {
        let mut ranges = Vec::new();
        loop {
            let first = self.nz_number("a number in a set")?;
            let last = if self.eat(b':') {
                self.nz_number("a number in a set")?
            } else {
                first
            };
            ranges.push((first, last));
            if !self.eat(b',') {
                return Ok(SequenceSet { ranges });
            }
        }
    }

    /// Any value: list, string, number, NIL, flag or atom (FETCH item names included).
    fn value(&mut self) -> Result<Value, ClientError> {
        match self.peek() {
            Some(b'(') => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.error(format!("lists nested deeper than {MAX_DEPTH}")));
                }
                self.depth += 1;
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b')') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b')') {
                            break;
                        }
                        // Bodies of a multipart and addresses follow each other without a space
                        // (RFC 3501 body-type-mpart, env-from).
                        let adjacent = self.peek() == Some(b'(')
                            && matches!(items.last(), Some(Value::List(_)));
                        if !adjacent {
                            self.sp()?;
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::List(items))
            }
            Some(b'"' | b'{') => Ok(Value::String(self.string("a string")?)),
            Some(b'\\') => Ok(Value::Atom(self.flag(true)?)),
            Some(byte) if is_atom_char(byte) => {
                let start = self.pos;
                let word = self.item_name()?;
                if word.bytes().all(|byte| byte.is_ascii_digit()) {
                    let number = word
                        .parse()
                        .map_err(|_| self.error_at(start, "number does not fit in 64 bits"))?;
                    Ok(Value::Number(number))
                } else if word.eq_ignore_ascii_case("NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(word))
                }
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// An atom, and if a `[` follows, the section up to its `]` and an optional `<origin>`:
    /// `BODY[HEADER.FIELDS (SUBJECT)]<0>` as one name.
    fn item_name(&mut self) -> Result<String, ClientError> {
        let start = self.pos;
        if self
            .take_while(|byte| is_atom_char(byte) && byte != b'[')
            .is_empty()
        {
            return Err(self.unexpected("an atom"));
        }
        if self.eat(b'[') {
            let mut open = 0usize;
            loop {
                match self.peek() {
                    Some(b']') if open == 0 => break,
                    Some(b'(') if open < MAX_DEPTH => open += 1,
                    Some(b')') if open > 0 => open -= 1,
                    Some(b'"') => {
                        self.quoted()?;
                        continue;
                    }
                    Some(byte) if byte == b' ' || is_atom_char(byte) => {}
                    _ => return Err(self.unexpected("a section or ']'")),
                }
                self.pos += 1;
            }
            self.pos += 1;
            if self.eat(b'<') {
                self.number()?;
                self.expect(b'>', "'>'")?;
            }
        }
        Ok(String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned())
    }

    /// Free text up to the line end, which is left for [`Self::crlf`] to check.
    fn text(&mut self) -> Result<String, ClientError> {
        let text = self.take_while(|byte| !matches!(byte, b'\r' | b'\n' | 0));
        if self.peek() == Some(0) {
            return Err(self.error("NUL in text"));
        }
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    fn response(&mut self) -> Result<Incoming, ClientError> {
        if self.eat(b'+') {
            // `+` CRLF breaks the grammar (`"+" SP`) but is common; it is taken as empty text.
            if self.peek() == Some(b'\r') {
                return Ok(Incoming::Continuation(Continuation {
                    code: None,
                    text: String::new(),
                }));
            }
            self.sp()?;
            let (code, text) = self.resp_text()?;
            return Ok(Incoming::Continuation(Continuation { code, text }));
        }
        if self.eat(b'*') {
            self.sp()?;
            return Ok(Incoming::Untagged(self.untagged()?));
        }
        let tag = self.take_while(|byte| is_astring_char(byte) && byte != b'+');
        if tag.is_empty() {
            return Err(self.unexpected("a tag, '*' or '+'"));
        }
        let tag = String::from_utf8_lossy(tag).into_owned();
        self.sp()?;
        let start = self.pos;
        let kind = match self.keyword("OK, NO or BAD")?.as_str() {
            "OK" => StatusKind::Ok,
            "NO" => StatusKind::No,
            "BAD" => StatusKind::Bad,
            other => {
                return Err(self.error_at(
                    start,
                    format!("tagged response is {other}, not OK, NO or BAD"),
                ));
            }
        };
        let status = self.status(kind)?;
        Ok(Incoming::Tagged(Tagged { tag, status }))
    }

    /// What follows a status condition: SP, optional code, text.
    fn status(&mut self, kind: StatusKind) -> Result<Status, ClientError> {
        self.sp()?;
        let (code, text) = self.resp_text()?;
        Ok(Status { kind, code, text })
    }

    fn resp_text(&mut self) -> Result<(Option<Code>, String), ClientError> {
        if self.peek() != Some(b'[') {
            return Ok((None, self.text()?));
        }
        let code = self.code()?;
        // `[CODE]` CRLF lacks the SP RFC 3501 and 9051 require, but servers send it.
        if self.peek() == Some(b'\r') {
            return Ok((Some(code), String::new()));
        }
        self.sp()?;
        Ok((Some(code), self.text()?))
    }

    fn code(&mut self) -> Result<Code, ClientError> {
        self.expect(b'[', "'['")?;
        let name = self.keyword("a response code")?;
        let code = match name.as_str() {
            "ALERT" => Code::Alert,
            "PARSE" => Code::Parse,
            "READ-ONLY" => Code::ReadOnly,
            "READ-WRITE" => Code::ReadWrite,
            "TRYCREATE" => Code::TryCreate,
            "UIDNOTSTICKY" => Code::UidNotSticky,
            "NOMODSEQ" => Code::NoModseq,
            "CLOSED" => Code::Closed,
            "BADCHARSET" => Code::BadCharset(if self.eat(b' ') {
                self.list(|parser| parser.text_string("a charset", true))?
            } else {
                Vec::new()
            }),
            "CAPABILITY" => Code::Capability(self.capabilities()?),
            "PERMANENTFLAGS" => {
                self.sp()?;
                Code::PermanentFlags(self.list(|parser| parser.flag(true))?)
            }
            "UIDNEXT" | "UIDVALIDITY" | "UNSEEN" => {
                self.sp()?;
                let number = self.nz_number(&name)?;
                match name.as_str() {
                    "UIDNEXT" => Code::UidNext(number),
                    "UIDVALIDITY" => Code::UidValidity(number),
                    _ => Code::Unseen(number),
                }
            }
            "HIGHESTMODSEQ" => {
                self.sp()?;
                Code::HighestModseq(self.mod_sequence()?)
            }
            "APPENDUID" => {
                self.sp()?;
                let uidvalidity = self.nz_number("UIDVALIDITY")?;
                self.sp()?;
                Code::AppendUid {
                    uidvalidity,
                    uids: self.sequence_set()?,
                }
            }
            "COPYUID" => {
                self.sp()?;
                let uidvalidity = self.nz_number("UIDVALIDITY")?;
                self.sp()?;
                let source = self.sequence_set()?;
                self.sp()?;
                Code::CopyUid {
                    uidvalidity,
                    source,
                    destination: self.sequence_set()?,
                }
            }
            "MODIFIED" => {
                self.sp()?;
                Code::Modified(self.sequence_set()?)
            }
            _ => {
                let arguments = if self.eat(b' ') {
                    let arguments =
                        self.take_while(|byte| !matches!(byte, b']' | b'\r' | b'\n' | 0));
                    if arguments.is_empty() {
                        return Err(self.unexpected("the response code's arguments"));
                    }
                    Some(String::from_utf8_lossy(arguments).into_owned())
                } else {
                    None
                };
                Code::Other { name, arguments }
            }
        };
        self.expect(b']', "']' closing the response code")?;
        Ok(code)
    }

    /// `1*(SP capability)`.
    fn capabilities(&mut self) -> Result<Vec<String>, ClientError> {
        let mut capabilities = Vec::new();
        while self.eat(b' ') {
            capabilities.push(self.atom("a capability")?);
        }
        if capabilities.is_empty() {
            return Err(self.unexpected("a space and a capability"));
        }
        Ok(capabilities)
    }

    fn untagged(&mut self) -> Result<Response, ClientError> {
        if self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            let start = self.pos;
            let number = self.number32()?;
            self.sp()?;
            let name = self.keyword("a response name")?;
            if number == 0 && matches!(name.as_str(), "EXPUNGE" | "FETCH") {
                return Err(self.error_at(start, format!("{name} of message number 0")));
            }
            return Ok(match name.as_str() {
                "EXISTS" => Response::Exists(number),
                "RECENT" => Response::Recent(number),
                "EXPUNGE" => Response::Expunge(number),
                "FETCH" => {
                    self.sp()?;
                    Response::Fetch(Fetch {
                        seq: number,
                        items: self.fetch_items()?,
                    })
                }
                _ => Response::Other {
                    number: Some(number),
                    name,
                    values: self.rest_values()?,
                },
            });
        }
        let name = self.keyword("a response name")?;
        Ok(match name.as_str() {
            "OK" => Response::Status(self.status(StatusKind::Ok)?),
            "NO" => Response::Status(self.status(StatusKind::No)?),
            "BAD" => Response::Status(self.status(StatusKind::Bad)?),
            "BYE" => Response::Status(self.status(StatusKind::Bye)?),
            "PREAUTH" => Response::Status(self.status(StatusKind::Preauth)?),
            "CAPABILITY" => Response::Capability(self.capabilities()?),
            "ENABLED" => {
                let mut names = Vec::new();
                while self.eat(b' ') {
                    names.push(self.atom("a capability")?);
                }
                Response::Enabled(names)
            }
            "FLAGS" => {
                self.sp()?;
                Response::Flags(self.list(|parser| parser.flag(false))?)
            }
            "LIST" => Response::List(self.list_item()?),
            "LSUB" => Response::Lsub(self.list_item()?),
            "STATUS" => {
                self.sp()?;
                let mailbox = self.text_string("a mailbox name", true)?;
                self.sp()?;
                let items = self.list(|parser| {
                    let name = parser.atom("a status item")?;
                    parser.sp()?;
                    Ok((name, parser.number()?))
                })?;
                Response::MailboxStatus(MailboxStatus { mailbox, items })
            }
            "SEARCH" => Response::Search(self.search()?),
            "ESEARCH" => Response::Esearch(self.esearch()?),
            "NAMESPACE" => {
                self.sp()?;
                let personal = self.namespaces()?;
                self.sp()?;
                let other_users = self.namespaces()?;
                self.sp()?;
                let shared = self.namespaces()?;
                Response::Namespace(Namespaces {
                    personal,
                    other_users,
                    shared,
                })
            }
            "ID" => {
                self.sp()?;
                if self.nil() {
                    Response::Id(None)
                } else {
                    Response::Id(Some(self.list(|parser| {
                        let field = parser.text_string("an ID field name", false)?;
                        parser.sp()?;
                        let start = parser.pos;
                        let value = parser
                            .nstring("an ID field value")?
                            .map(String::from_utf8)
                            .transpose()
                            .map_err(|_| parser.error_at(start, "ID field value is not UTF-8"))?;
                        Ok((field, value))
                    })?))
                }
            }
            "VANISHED" => {
                self.sp()?;
                let earlier = self.eat_word("(EARLIER) ");
                Response::Vanished {
                    earlier,
                    uids: self.sequence_set()?,
                }
            }
            _ => Response::Other {
                number: None,
                name,
                values: self.rest_values()?,
            },
        })
    }

    fn rest_values(&mut self) -> Result<Vec<Value>, ClientError> {
        let mut values = Vec::new();
        while self.eat(b' ') {
            values.push(self.value()?);
        }
        Ok(values)
    }

    /// After LIST or LSUB: `SP (attributes) SP delimiter SP mailbox [SP extended]`.
    fn list_item(&mut self) -> Result<ListItem, ClientError> {
        self.sp()?;
        let attributes = self.list(|parser| {
            if parser.peek() != Some(b'\\') {
                return Err(parser.unexpected("a name attribute starting with '\\'"));
            }
            parser.flag(false)
        })?;
        self.sp()?;
        let delimiter = self.delimiter()?;
        self.sp()?;
        let name = self.text_string("a mailbox name", true)?;
        let mut extended = Vec::new();
        if self.eat(b' ') {
            let start = self.pos;
            match self.value()? {
                Value::List(items) => extended = items,
                _ => return Err(self.error_at(start, "extended LIST data is not a list")),
            }
        }
        Ok(ListItem {
            attributes,
            delimiter,
            name,
            extended,
        })
    }

    /// `DQUOTE QUOTED-CHAR DQUOTE / nil`.
    fn delimiter(&mut self) -> Result<Option<char>, ClientError> {
        if self.nil() {
            return Ok(None);
        }
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a quoted delimiter or NIL"));
        }
        match self.quoted()?[..] {
            [byte] if byte.is_ascii() => Ok(Some(char::from(byte))),
            _ => Err(self.error_at(start, "delimiter is not one 7-bit character")),
        }
    }

    /// After SEARCH: `*(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"]`.
    fn search(&mut self) -> Result<Search, ClientError> {
        let mut search = Search {
            numbers: Vec::new(),
            modseq: None,
        };
        while self.eat(b' ') {
            if self.eat(b'(') {
                if !self.eat_word("MODSEQ ") {
                    return Err(self.unexpected("MODSEQ and a space"));
                }
                search.modseq = Some(self.mod_sequence()?);
                self.expect(b')', "')'")?;
                break;
            }
            search.numbers.push(self.nz_number("a message number")?);
        }
        Ok(search)
    }

    /// After ESEARCH: `[SP "(" "TAG" SP string ")"] [SP "UID"] *(SP name SP value)`.
    fn esearch(&mut self) -> Result<Esearch, ClientError> {
        let mut esearch = Esearch::default();
        if self.eat_word(" (TAG ") {
            esearch.tag = Some(self.text_string("a tag string", false)?);
            self.expect(b')', "')' closing the search correlator")?;
        }
        let before_uid = self.pos;
        if self.eat_word(" UID") {
            if matches!(self.peek(), Some(b' ' | b'\r')) {
                esearch.uid = true;
            } else {
                self.pos = before_uid;
            }
        }
        while self.eat(b' ') {
            let name = self.keyword("a search return item")?;
            self.sp()?;
            match name.as_str() {
                "MIN" => esearch.min = Some(self.nz_number("MIN")?),
                "MAX" => esearch.max = Some(self.nz_number("MAX")?),
                "COUNT" => esearch.count = Some(self.number32()?),
                "ALL" => esearch.all = Some(self.sequence_set()?),
                "MODSEQ" => esearch.modseq = Some(self.mod_sequence()?),
                _ => {
                    let value = self.value()?;
                    esearch.other.push((name, value));
                }
            }
        }
        Ok(esearch)
    }

    /// One of NAMESPACE's three: NIL, or `"(" 1*("(" string SP delimiter *extension ")") ")"`.
    fn namespaces(&mut self) -> Result<Vec<Namespace>, ClientError> {
        if self.nil() {
            return Ok(Vec::new());
        }
        self.expect(b'(', "'(' or NIL")?;
        let mut namespaces = Vec::new();
        loop {
            self.expect(b'(', "'(' starting a namespace")?;
            let prefix = self.text_string("a namespace prefix", false)?;
            self.sp()?;
            let delimiter = self.delimiter()?;
            let mut extensions = Vec::new();
            while self.eat(b' ') {
                let name = self.text_string("a namespace extension name", false)?;
                self.sp()?;
                let values =
                    self.list(|parser| parser.text_string("a namespace extension value", false))?;
                extensions.push((name, values));
            }
            self.expect(b')', "')' closing a namespace")?;
            namespaces.push(Namespace {
                prefix,
                delimiter,
                extensions,
            });
            if self.eat(b')') {
                return Ok(namespaces);
            }
        }
    }

    /// After FETCH SP: `"(" msg-att-item *(SP msg-att-item) ")"`, checking the items whose
    /// syntax RFC 3501, 7162 fix.
    fn fetch_items(&mut self) -> Result<Vec<(String, Value)>, ClientError> {
        let start = self.pos;
        let items = self.list(|parser| {
            let name = parser.item_name()?;
            parser.sp()?;
            let value = parser.fetch_value(&name.to_ascii_uppercase())?;
            Ok((name, value))
        })?;
        if items.is_empty() {
            return Err(self.error_at(start, "FETCH response without items"));
        }
        Ok(items)
    }

    fn fetch_value(&mut self, name: &str) -> Result<Value, ClientError> {
        let start = self.pos;
        let check = |parser: &Self, value: Value, check: fn(&Value) -> Result<(), String>| {
            check(&value)
                .map(|()| value)
                .map_err(|reason| parser.error_at(start, reason))
        };
        match name {
            _ if name.starts_with("BODY[") => self.nstring_value(),
            "RFC822" | "RFC822.HEADER" | "RFC822.TEXT" => self.nstring_value(),
            "FLAGS" => Ok(Value::List(
                self.list(|parser| parser.flag(false).map(Value::Atom))?,
            )),
            "UID" => Ok(Value::Number(self.nz_number("UID")?.into())),
            "RFC822.SIZE" => Ok(Value::Number(self.number()?)),
            "MODSEQ" => {
                self.expect(b'(', "'('")?;
                let modseq = self.mod_sequence()?;
                self.expect(b')', "')'")?;
                Ok(Value::List(vec![Value::Number(modseq)]))
            }
            "INTERNALDATE" => {
                if self.peek() != Some(b'"') {
                    return Err(self.unexpected("a quoted date-time"));
                }
                let date = Value::String(self.quoted()?);
                check(self, date, check_date_time)
            }
            "ENVELOPE" => {
                let envelope = self.value()?;
                check(self, envelope, check_envelope)
            }
            "BODY" | "BODYSTRUCTURE" => {
                let body = self.value()?;
                check(self, body, check_body)
            }
            _ => self.value(),
        }
    }

    fn nstring_value(&mut self) -> Result<Value, ClientError> {
        Ok(match self.nstring("a string or NIL")? {
            Some(octets) => Value::String(octets),
            None => Value::Nil,
        })
    }
}

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"`, the day possibly space-padded (RFC 3501 date-time).
fn check_date_time(date: &Value) -> Result<(), String> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    const SHAPE: &[u8] = b"dd-Mon-yyyy hh:mm:ss +zzzz";
    let bytes = date.as_bytes().unwrap_or_default();
    let valid = bytes.len() == SHAPE.len()
        && bytes
            .iter()
            .zip(SHAPE)
            .enumerate()
            .all(|(index, (&byte, &shape))| match shape {
                b'd' if index == 0 => byte == b' ' || byte.is_ascii_digit(),
                b'd' | b'y' | b'h' | b'm' | b's' | b'z' => byte.is_ascii_digit(),
                b'M' | b'o' | b'n' => true,
                b'+' => byte == b'+' || byte == b'-',
                _ => byte == shape,
            })
        && MONTHS
            .iter()
            .any(|month| bytes[3..6].eq_ignore_ascii_case(month));
    if valid {
        Ok(())
    } else {
        Err("INTERNALDATE is not \"dd-Mon-yyyy hh:mm:ss +zzzz\" (RFC 3501 date-time)".into())
    }
}

fn is_nstring(value: &Value) -> bool {
    matches!(value, Value::Nil | Value::String(_))
}

/// RFC 3501 `envelope`: ten fields, the address fields NIL or lists of four-nstring addresses.
fn check_envelope(envelope: &Value) -> Result<(), String> {
    let Some(fields) = envelope.as_list() else {
        return Err("ENVELOPE is not a list".into());
    };
    if fields.len() != 10 {
        return Err(format!("ENVELOPE has {} fields, not 10", fields.len()));
    }
    const NAMES: [&str; 10] = [
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
    ];
    for (index, field) in fields.iter().enumerate() {
        let valid = if (2..8).contains(&index) {
            match field {
                Value::Nil => true,
                Value::List(addresses) => {
                    !addresses.is_empty()
                        && addresses.iter().all(|address| {
                            address.as_list().is_some_and(|parts| {
                                parts.len() == 4 && parts.iter().all(is_nstring)
                            })
                        })
                }
                _ => false,
            }
        } else {
            is_nstring(field)
        };
        if !valid {
            return Err(format!(
                "ENVELOPE {} field is malformed: {field}",
                NAMES[index]
            ));
        }
    }
    Ok(())
}

/// RFC 3501 `body`: a multipart (bodies then a subtype string) or a single part whose basic
/// fields, and the lines (TEXT) or envelope, body and lines (MESSAGE/RFC822), are well-typed.
fn check_body(body: &Value) -> Result<(), String> {
    let Some(items) = body.as_list() else {
        return Err(format!("body structure is not a list: {body}"));
    };
    let parts = items
        .iter()
        .take_while(|item| matches!(item, Value::List(_)))
        .count();
    if parts > 0 {
        for part in &items[..parts] {
            check_body(part)?;
        }
        return match items.get(parts) {
            Some(Value::String(_)) => Ok(()),
            _ => Err(format!(
                "multipart body has no subtype after its parts: {body}"
            )),
        };
    }
    let field = |index: usize, name: &str, valid: fn(&Value) -> bool| match items.get(index) {
        Some(value) if valid(value) => Ok(value),
        Some(value) => Err(format!("body {name} field is malformed: {value}")),
        None => Err(format!("body has no {name} field: {body}")),
    };
    let media_type = field(0, "type", is_string)?;
    let subtype = field(1, "subtype", is_string)?;
    field(2, "parameters", is_parameters)?;
    field(3, "id", is_nstring)?;
    field(4, "description", is_nstring)?;
    field(5, "encoding", is_string)?;
    field(6, "size", is_number)?;
    let is = |value: &Value, name: &str| {
        value
            .as_str()
            .is_some_and(|own| own.eq_ignore_ascii_case(name))
    };
    if is(media_type, "TEXT") {
        field(7, "lines", is_number)?;
    } else if is(media_type, "MESSAGE") && is(subtype, "RFC822") {
        check_envelope(field(7, "envelope", |_| true)?)?;
        check_body(field(8, "body", |_| true)?)?;
        field(9, "lines", is_number)?;
    }
    Ok(())
}

fn is_string(value: &Value) -> bool {
    matches!(value, Value::String(_))
}

fn is_number(value: &Value) -> bool {
    matches!(value, Value::Number(_))
}

/// `body-fld-param`: NIL or string pairs.
fn is_parameters(value: &Value) -> bool {
    match value {
        Value::Nil => true,
        Value::List(params) => {
            !params.is_empty() && params.len() % 2 == 0 && params.iter().all(is_string)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Mailbox names (RFC 3501 section 5.1.3) and command arguments

/// RFC 3501's modified BASE64: RFC 2045 base64 with `,` for `/` and no padding. Decoding
/// rejects stray bits after the last octet, which an encoder never leaves.
const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("the modified BASE64 alphabet is valid"),
    },
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes a mailbox name in modified UTF-7: printable ASCII stands for itself (`&` as `&-`),
/// runs of anything else go as `&` modified-BASE64(UTF-16BE) `-`.
pub fn encode_modified_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let octets: Vec<u8> = run.iter().flat_map(|unit| unit.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MODIFIED_BASE64.encode(octets));
            out.push('-');
            run.clear();
        }
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            out.push(ch);
            if ch == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0; 2];
            run.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name, strictly: raw bytes outside printable ASCII, an
/// unterminated or malformed shift, and printable ASCII encoded in a shift (RFC 3501 section
/// 5.1.3 forbids it) are errors.
pub fn decode_modified_utf7(name: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| {
        malformed(
            format!("mailbox name is not modified UTF-7: {reason}"),
            name.as_bytes(),
        )
    };
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(ch) = rest.chars().next() {
        rest = &rest[ch.len_utf8()..];
        if ch != '&' {
            if !(' '..='~').contains(&ch) {
                return Err(bad("a character outside printable ASCII is not encoded"));
            }
            out.push(ch);
            continue;
        }
        let Some((encoded, after)) = rest.split_once('-') else {
            return Err(bad("'&' without a closing '-'"));
        };
        rest = after;
        if encoded.is_empty() {
            out.push('&');
            continue;
        }
        let octets = MODIFIED_BASE64
            .decode(encoded)
            .map_err(|_| bad("the shifted part is not modified BASE64"))?;
        if octets.len() % 2 != 0 {
            return Err(bad("the shifted part is not whole UTF-16 units"));
        }
        let units = octets
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        for decoded in char::decode_utf16(units) {
            let decoded = decoded.map_err(|_| bad("the shifted part is not valid UTF-16"))?;
            if (' '..='~').contains(&decoded) {
                return Err(bad("printable ASCII inside a shift"));
            }
            out.push(decoded);
        }
    }
    Ok(out)
}

/// `bytes` as an RFC 3501 quoted string, when they can be one: 7-bit, without NUL, CR or LF.
pub fn quote(bytes: &[u8]) -> Option<String> {
    let quotable = bytes
        .iter()
        .all(|&byte| byte.is_ascii() && !matches!(byte, 0 | b'\r' | b'\n'));
    let text = std::str::from_utf8(bytes).ok().filter(|_| quotable)?;
    Some(escape_quoted(text))
}

/// `"` text `"` with `"` and `\` escaped. Other characters go as they are, so text that is not
/// 7-bit makes a quoted string only a server with UTF8=ACCEPT (RFC 6855) takes.
fn escape_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(ch);
    }
    quoted.push('"');
    quoted
}

/// A mailbox name (or LIST reference or pattern) as a command argument: modified UTF-7, which
/// is printable ASCII and so can always be quoted.
fn mailbox_arg(name: &str) -> String {
    escape_quoted(&encode_modified_utf7(name))
}

/// A string argument: quoted when it can be, else a synchronising literal.
fn string_part(bytes: &[u8]) -> Part<'_> {
    match quote(bytes) {
        Some(quoted) => Part::Text(Cow::Owned(quoted.into_bytes())),
        None => Part::Literal(Cow::Borrowed(bytes)),
    }
}

/// The command's name for messages: its first word, or two for `UID ...`.
fn verb(line: &str) -> String {
    let mut words = line.split(' ');
    let first = words.next().unwrap_or_default();
    match words.next() {
        Some(second) if first.eq_ignore_ascii_case("UID") => format!("{first} {second}"),
        _ => first.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The client

/// A piece of a command for [`ImapClient::command_with_literals`]; the tag goes before the
/// first piece and CRLF after the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Bytes sent exactly as given.
    Text(Cow<'a, [u8]>),
    /// A synchronising literal: `{n}` CRLF, then the octets only after the server's `+`.
    Literal(Cow<'a, [u8]>),
    /// A non-synchronising literal (RFC 7888 LITERAL+): `{n+}` CRLF and the octets at once.
    LiteralPlus(Cow<'a, [u8]>),
}

/// Where a command stands after a response: finished with a tagged status, or asked to go on.
enum Step {
    Done(Status),
    Continue(Continuation, Vec<u8>),
}

/// An IDLE the server accepted (RFC 2177).
struct Idle {
    tag: String,
    /// Untagged responses that came before the `+`, for [`ImapClient::idle_wait`] first.
    pending: VecDeque<Response>,
    /// The tagged response when the server ended the IDLE before DONE.
    ended: Option<Status>,
}

/// A connection to an IMAP server. Every operation waits at most the connection's timeout.
///
/// Commands get tags `a1`, `a2`, ... and return every untagged response up to their tagged
/// one. Mailbox names are given decoded and sent in modified UTF-7, quoted; [`Self::command`]
/// sends anything else exactly as written.
pub struct ImapClient {
    conn: Connection,
    tags_issued: u32,
    max_literal: usize,
    capabilities: Vec<String>,
    idle: Option<Idle>,
}

impl ImapClient {
    /// Connects in plaintext. Does not read the greeting: call [`Self::greeting`].
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            conn: Connection::connect(addr, timeout).await?,
            tags_issued: 0,
            max_literal: DEFAULT_MAX_LITERAL,
            capabilities: Vec::new(),
            idle: None,
        })
    }

    /// Connects and starts TLS at once (implicit TLS, RFC 8314, port 993). Does not read the
    /// greeting.
    pub async fn connect_tls(
        addr: &str,
        tls: &TlsClient,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut client = Self::connect(addr, timeout).await?;
        client.conn.upgrade(tls).await?;
        Ok(client)
    }

    /// Resets the connection at once, mid-whatever (load runs' `--client-faults`).
    pub fn abort(&mut self) {
        self.conn.abort();
    }

    /// Sends a ClientHello on the plaintext connection, waits for the server's first answer
    /// and resets the connection: a client that gives up half-way through the handshake.
    pub async fn abort_in_tls_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        self.conn.abort_in_handshake(tls).await
    }

    /// Starts TLS on the open plaintext connection at once, without a command: the second half
    /// of [`Self::connect_tls`], for callers that time the connect and the handshake apart.
    pub async fn tls_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        self.conn.upgrade(tls).await
    }

    /// Stops keeping a transcript, for load runs where it would grow with every message; what
    /// was recorded so far is dropped.
    pub fn stop_transcript(&mut self) {
        self.conn.stop_transcript();
    }

    /// Changes how long each later operation may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.conn.timeout = timeout;
    }

    /// Changes the most literal octets one response may announce before it is refused as
    /// malformed ([`DEFAULT_MAX_LITERAL`] at first).
    pub fn set_max_literal(&mut self, octets: usize) {
        self.max_literal = octets;
    }

    /// Allocates the next tag, for commands sent with [`Self::send_raw`] and read with
    /// [`Self::read_result`].
    pub fn next_tag(&mut self) -> String {
        self.tags_issued += 1;
        format!("a{}", self.tags_issued)
    }

    /// Sends `bytes` exactly as given, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.send(bytes, "sending").await
    }

    async fn read_frame(&mut self, while_doing: &str) -> Result<(Incoming, Vec<u8>), ClientError> {
        let framer = Framer::new(self.max_literal);
        self.conn
            .read_parsed(while_doing, |buf| framer.parse(buf))
            .await
    }

    /// Reads the next response of any kind, untagged, tagged or continuation.
    pub async fn read_incoming(&mut self) -> Result<Incoming, ClientError> {
        let (incoming, _) = self.read_frame("waiting for a response").await?;
        match &incoming {
            Incoming::Untagged(response) => self.observe(response),
            Incoming::Tagged(tagged) => self.observe_status(&tagged.status),
            Incoming::Continuation(_) => {}
        }
        Ok(incoming)
    }

    /// Remembers capabilities a response announces.
    fn observe(&mut self, response: &Response) {
        match response {
            Response::Capability(capabilities) => self.capabilities = capabilities.clone(),
            Response::Status(status) => self.observe_status(status),
            _ => {}
        }
    }

    fn observe_status(&mut self, status: &Status) {
        if let Some(capabilities) = status.capabilities() {
            self.capabilities = capabilities.to_vec();
        }
    }

    /// Reads until the tagged response to `tag` (any tag when `None`), gathering the untagged
    /// ones into `untagged`; stops early at a continuation request.
    async fn read_step(
        &mut self,
        tag: Option<&str>,
        untagged: &mut Vec<Response>,
        what: &str,
    ) -> Result<Step, ClientError> {
        let while_doing = format!("waiting for the response to {what}");
        loop {
            let (incoming, head) = self.read_frame(&while_doing).await?;
            match incoming {
                Incoming::Untagged(response) => {
                    self.observe(&response);
                    untagged.push(response);
                }
                Incoming::Continuation(continuation) => {
                    return Ok(Step::Continue(continuation, head));
                }
                Incoming::Tagged(tagged) if tag.is_none_or(|tag| tag == tagged.tag) => {
                    self.observe_status(&tagged.status);
                    return Ok(Step::Done(tagged.status));
                }
                Incoming::Tagged(tagged) => {
                    return Err(malformed(
                        format!(
                            "tagged response for {:?} while waiting for the one to {what} ({:?})",
                            tagged.tag,
                            tag.unwrap_or_default()
                        ),
                        &head,
                    ));
                }
            }
        }
    }

    /// Reads to the tagged response; a continuation request is an error, as nothing waits
    /// for one.
    async fn finish(
        &mut self,
        tag: String,
        mut untagged: Vec<Response>,
        what: &str,
    ) -> Result<CommandResult, ClientError> {
        match self.read_step(Some(&tag), &mut untagged, what).await? {
            Step::Done(tagged) => Ok(CommandResult {
                tag,
                tagged,
                untagged,
            }),
            Step::Continue(_, head) => Err(unexpected_continuation(what, &head)),
        }
    }

    /// Reads the responses to a command sent with [`Self::send_raw`] under `tag`, up to and
    /// including its tagged one.
    pub async fn read_result(&mut self, tag: &str) -> Result<CommandResult, ClientError> {
        self.finish(tag.to_owned(), Vec::new(), tag).await
    }

    /// Sends `line` under the next tag and reads every response up to the tagged one. A
    /// continuation request is an error: this client sends nothing after the line.
    pub async fn command(&mut self, line: &str) -> Result<CommandResult, ClientError> {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} {line}\r\n").as_bytes())
            .await?;
        self.finish(tag, Vec::new(), &verb(line)).await
    }

    /// Sends a command made of `parts` under the next tag. Before the octets of each
    /// synchronising literal it waits for the server's `+`; when the server answers with its
    /// tagged response instead, that is returned and nothing more is sent.
    pub async fn command_with_literals(
        &mut self,
        parts: &[Part<'_>],
    ) -> Result<CommandResult, ClientError> {
        let tag = self.next_tag();
        let what = match parts.first() {
            Some(Part::Text(text)) => verb(&String::from_utf8_lossy(text)),
            _ => "a command with literals".to_owned(),
        };
        let mut batch = format!("{tag} ").into_bytes();
        let mut untagged = Vec::new();
        for part in parts {
            match part {
                Part::Text(bytes) => batch.extend_from_slice(bytes),
                Part::LiteralPlus(octets) => {
                    batch.extend_from_slice(format!("{{{}+}}\r\n", octets.len()).as_bytes());
                    batch.extend_from_slice(octets);
                }
                Part::Literal(octets) => {
                    batch.extend_from_slice(format!("{{{}}}\r\n", octets.len()).as_bytes());
                    self.send_raw(&batch).await?;
                    batch.clear();
                    let step = self.read_step(Some(&tag), &mut untagged, &what).await?;
                    if let Step::Done(tagged) = step {
                        return Ok(CommandResult {
                            tag,
                            tagged,
                            untagged,
                        });
                    }
                    batch.extend_from_slice(octets);
                }
            }
        }
        batch.extend_from_slice(b"\r\n");
        self.send_raw(&batch).await?;
        self.finish(tag, untagged, &what).await
    }

    /// Reads the greeting: `* OK`, `* PREAUTH` or `* BYE`, anything else being malformed.
    /// Capabilities in its code are remembered.
    pub async fn greeting(&mut self) -> Result<Status, ClientError> {
        let (incoming, head) = self.read_frame("waiting for the greeting").await?;
        match incoming {
            Incoming::Untagged(Response::Status(status))
                if matches!(
                    status.kind,
                    StatusKind::Ok | StatusKind::Preauth | StatusKind::Bye
                ) =>
            {
                self.observe_status(&status);
                Ok(status)
            }
            _ => Err(malformed(
                "greeting is not * OK, * PREAUTH or * BYE (RFC 3501 section 7.1)",
                &head,
            )),
        }
    }

    /// CAPABILITY; the list is remembered.
    pub async fn capability(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CAPABILITY").await
    }

    /// The capabilities last announced, by a CAPABILITY response or code, since the last TLS
    /// upgrade.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether the capabilities last announced include `name` (any case).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|own| own.eq_ignore_ascii_case(name))
    }

    /// STARTTLS and, only on OK, a TLS handshake over this connection. The capabilities are
    /// forgotten (RFC 3501 section 6.2.1): ask again.
    pub async fn starttls(&mut self, tls: &TlsClient) -> Result<CommandResult, ClientError> {
        self.starttls_with_injected(tls, b"").await
    }

    /// Sends the STARTTLS command followed by `injected` in one write, then behaves like
    /// [`Self::starttls`]. A server that buffered `injected` and answers it over TLS is open to
    /// STARTTLS command injection (CVE-2011-0411): read a response afterwards to find out.
    pub async fn starttls_with_injected(
        &mut self,
        tls: &TlsClient,
        injected: &[u8],
    ) -> Result<CommandResult, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let tag = self.next_tag();
        self.send_raw(&[format!("{tag} STARTTLS\r\n").as_bytes(), injected].concat())
            .await?;
        let result = self.finish(tag, Vec::new(), "STARTTLS").await?;
        if result.is_ok() {
            self.capabilities.clear();
            self.conn.upgrade(tls).await?;
        }
        Ok(result)
    }

    /// STARTTLS and, on OK, a probe of whether the server accepts a `version` handshake (see
    /// [`probe_legacy_tls`]) instead of starting TLS. The connection is unusable afterwards. A
    /// refused STARTTLS comes back as `Ok(Err(status))`.
    pub async fn starttls_then_probe_legacy(
        &mut self,
        version: LegacyVersion,
        sni: Option<&str>,
    ) -> Result<Result<LegacyOutcome, Status>, ClientError> {
        let outcome = self
            .starttls_then_probe(Offer::Legacy(version), sni)
            .await?;
        Ok(outcome.map(LegacyOutcome::from))
    }

    /// STARTTLS and, on OK, a ClientHello with `offer` instead of starting TLS (see
    /// [`probe_hello`]). The connection is unusable afterwards. A refused STARTTLS comes back as
    /// `Ok(Err(status))`.
    pub async fn starttls_then_probe(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<Result<HelloOutcome, Status>, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let result = self.command("STARTTLS").await?;
        if !result.is_ok() {
            return Ok(Err(result.tagged));
        }
        self.conn.probe_hello(offer, sni).await.map(Ok)
    }

    /// LOGIN, each argument quoted, or sent as a literal when it cannot be.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command_with_literals(&[
            Part::Text(Cow::Borrowed(b"LOGIN ")),
            string_part(user.as_bytes()),
            Part::Text(Cow::Borrowed(b" ")),
            string_part(password.as_bytes()),
        ])
        .await
    }

    /// `AUTHENTICATE PLAIN` (RFC 4616) with an empty authorization identity: the credentials as
    /// an initial response when `sasl_ir` (RFC 4959), else after the server's `+`. A server that
    /// asks again gets them again, once; then the exchange is cancelled with `*`.
    pub async fn authenticate_plain(
        &mut self,
        user: &str,
        password: &str,
        sasl_ir: bool,
    ) -> Result<CommandResult, ClientError> {
        let credentials = BASE64.encode(format!("\0{user}\0{password}"));
        let tag = self.next_tag();
        let line = if sasl_ir {
            format!("{tag} AUTHENTICATE PLAIN {credentials}\r\n")
        } else {
            format!("{tag} AUTHENTICATE PLAIN\r\n")
        };
        self.send_raw(line.as_bytes()).await?;
        let mut untagged = Vec::new();
        let mut continuations = 0;
        loop {
            match self
                .read_step(Some(&tag), &mut untagged, "AUTHENTICATE")
                .await?
            {
                Step::Done(tagged) => {
                    return Ok(CommandResult {
                        tag,
                        tagged,
                        untagged,
                    });
                }
                Step::Continue(_, head) => {
                    continuations += 1;
                    let answer = match continuations {
                        1 => format!("{credentials}\r\n"),
                        2 => "*\r\n".to_owned(),
                        _ => {
                            return Err(unexpected_continuation("a cancelled AUTHENTICATE", &head));
                        }
                    };
                    self.send_raw(answer.as_bytes()).await?;
                }
            }
        }
    }

    /// LOGOUT: the BYE comes among the untagged responses.
    pub async fn logout(&mut self) -> Result<CommandResult, ClientError> {
        self.command("LOGOUT").await
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<CommandResult, ClientError> {
        self.command("NOOP").await
    }

    /// CHECK.
    pub async fn check(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CHECK").await
    }

    /// SELECT and what it reported.
    pub async fn select(&mut self, mailbox: &str) -> Result<Selected, ClientError> {
        let result = self
            .command(&format!("SELECT {}", mailbox_arg(mailbox)))
            .await?;
        Ok(Selected::from_result(result))
    }

    /// EXAMINE and what it reported.
    pub async fn examine(&mut self, mailbox: &str) -> Result<Selected, ClientError> {
        let result = self
            .command(&format!("EXAMINE {}", mailbox_arg(mailbox)))
            .await?;
        Ok(Selected::from_result(result))
    }

    /// `LIST reference pattern`; the LIST responses are in [`CommandResult::lists`].
    pub async fn list(
        &mut self,
        reference: &str,
        pattern: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "LIST {} {}",
            mailbox_arg(reference),
            mailbox_arg(pattern)
        ))
        .await
    }

    /// `LSUB reference pattern`; the LSUB responses are in [`CommandResult::lsubs`].
    pub async fn lsub(
        &mut self,
        reference: &str,
        pattern: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "LSUB {} {}",
            mailbox_arg(reference),
            mailbox_arg(pattern)
        ))
        .await
    }

    /// `STATUS mailbox (items)`, such as `&["MESSAGES", "UIDNEXT"]`; the answer is in
    /// [`CommandResult::mailbox_status`].
    pub async fn status(
        &mut self,
        mailbox: &str,
        items: &[&str],
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "STATUS {} ({})",
            mailbox_arg(mailbox),
            items.join(" ")
        ))
        .await
    }

    /// CREATE.
    pub async fn create(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("CREATE {}", mailbox_arg(mailbox)))
            .await
    }

    /// DELETE.
    pub async fn delete(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("DELETE {}", mailbox_arg(mailbox)))
            .await
    }

    /// RENAME.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("RENAME {} {}", mailbox_arg(from), mailbox_arg(to)))
            .await
    }

    /// SUBSCRIBE.
    pub async fn subscribe(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("SUBSCRIBE {}", mailbox_arg(mailbox)))
            .await
    }

    /// UNSUBSCRIBE.
    pub async fn unsubscribe(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UNSUBSCRIBE {}", mailbox_arg(mailbox)))
            .await
    }

    /// `APPEND mailbox [(flags)] [date] literal`, the message as a synchronising literal, or a
    /// non-synchronising one when `literal_plus` (RFC 7888). `date` is an RFC 3501 date-time
    /// such as `"17-Jul-1996 02:44:25 -0700"`, quoted here. A server that answers the literal's
    /// announcement with NO or BAD instead of `+` gets nothing more.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        date: Option<&str>,
        message: &[u8],
        literal_plus: bool,
    ) -> Result<CommandResult, ClientError> {
        let mut head = format!("APPEND {} ", mailbox_arg(mailbox));
        if !flags.is_empty() {
            head.push_str(&format!("({}) ", flags.join(" ")));
        }
        if let Some(date) = date {
            head.push_str(&escape_quoted(date));
            head.push(' ');
        }
        let message = Cow::Borrowed(message);
        let literal = if literal_plus {
            Part::LiteralPlus(message)
        } else {
            Part::Literal(message)
        };
        self.command_with_literals(&[Part::Text(Cow::Owned(head.into_bytes())), literal])
            .await
    }

    /// `FETCH set items`, `items` as written, such as `(FLAGS BODY.PEEK[])`; the answers are in
    /// [`CommandResult::fetches`].
    pub async fn fetch(&mut self, set: &str, items: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("FETCH {set} {items}")).await
    }

    /// `UID FETCH set items`.
    pub async fn uid_fetch(
        &mut self,
        set: &str,
        items: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID FETCH {set} {items}")).await
    }

    /// `STORE set item value`, such as `store("1:3", "+FLAGS.SILENT", "(\\Deleted)")`.
    pub async fn store(
        &mut self,
        set: &str,
        item: &str,
        value: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("STORE {set} {item} {value}")).await
    }

    /// `UID STORE set item value`.
    pub async fn uid_store(
        &mut self,
        set: &str,
        item: &str,
        value: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID STORE {set} {item} {value}"))
            .await
    }

    /// `COPY set mailbox`; see [`CommandResult::copy_uid`].
    pub async fn copy(&mut self, set: &str, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("COPY {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `UID COPY set mailbox`.
    pub async fn uid_copy(
        &mut self,
        set: &str,
        mailbox: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID COPY {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `MOVE set mailbox` (RFC 6851).
    pub async fn move_(&mut self, set: &str, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("MOVE {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `UID MOVE set mailbox` (RFC 6851).
    pub async fn uid_move(
        &mut self,
        set: &str,
        mailbox: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID MOVE {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// EXPUNGE; see [`CommandResult::expunged`].
    pub async fn expunge(&mut self) -> Result<CommandResult, ClientError> {
        self.command("EXPUNGE").await
    }

    /// `UID EXPUNGE set` (RFC 4315).
    pub async fn uid_expunge(&mut self, set: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID EXPUNGE {set}")).await
    }

    /// `SEARCH criteria`, criteria as written; see [`CommandResult::search`].
    pub async fn search(&mut self, criteria: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("SEARCH {criteria}")).await
    }

    /// `UID SEARCH criteria`.
    pub async fn uid_search(&mut self, criteria: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID SEARCH {criteria}")).await
    }

    /// CLOSE.
    pub async fn close(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CLOSE").await
    }

    /// UNSELECT (RFC 3691).
    pub async fn unselect(&mut self) -> Result<CommandResult, ClientError> {
        self.command("UNSELECT").await
    }

    /// `ENABLE capabilities` (RFC 5161); see [`CommandResult::enabled`].
    pub async fn enable(&mut self, capabilities: &[&str]) -> Result<CommandResult, ClientError> {
        self.command(&format!("ENABLE {}", capabilities.join(" ")))
            .await
    }

    /// NAMESPACE (RFC 2342); see [`CommandResult::namespaces`].
    pub async fn namespace(&mut self) -> Result<CommandResult, ClientError> {
        self.command("NAMESPACE").await
    }

    /// `ID` (RFC 2971) with the given fields, or `ID NIL` for `None`; see [`CommandResult::id`].
    pub async fn id(
        &mut self,
        fields: Option<&[(&str, &str)]>,
    ) -> Result<CommandResult, ClientError> {
        let argument = match fields {
            None => "NIL".to_owned(),
            Some(fields) => {
                let pairs: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| {
                        format!("{} {}", escape_quoted(name), escape_quoted(value))
                    })
                    .collect();
                format!("({})", pairs.join(" "))
            }
        };
        self.command(&format!("ID {argument}")).await
    }

    /// Sends IDLE (RFC 2177) and waits for the `+`: `Ok(continuation)` when idling, or the
    /// result when the server refused instead. Untagged responses before the `+` are handed out
    /// first by [`Self::idle_wait`].
    pub async fn idle_start(&mut self) -> Result<Outcome<Continuation>, ClientError> {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let mut untagged = Vec::new();
        match self.read_step(Some(&tag), &mut untagged, "IDLE").await? {
            Step::Continue(continuation, _) => {
                self.idle = Some(Idle {
                    tag,
                    pending: untagged.into(),
                    ended: None,
                });
                Ok(Ok(continuation))
            }
            Step::Done(tagged) => Ok(Err(CommandResult {
                tag,
                tagged,
                untagged,
            })),
        }
    }

    /// The next untagged response within `timeout`, or `None` if none came. A timeout leaves
    /// the connection usable: bytes of a response that was still arriving are kept. If the
    /// server ends the IDLE with its tagged response, that is kept for [`Self::idle_done`] and
    /// this returns `None`.
    pub async fn idle_wait(&mut self, timeout: Duration) -> Result<Option<Response>, ClientError> {
        if let Some(idle) = &mut self.idle {
            if let Some(response) = idle.pending.pop_front() {
                return Ok(Some(response));
            }
            if idle.ended.is_some() {
                return Ok(None);
            }
        }
        let limit = std::mem::replace(&mut self.conn.timeout, timeout);
        let read = self.read_frame("waiting for an untagged response").await;
        self.conn.timeout = limit;
        let (incoming, head) = match read {
            Err(ClientError::Timeout { .. }) => return Ok(None),
            other => other?,
        };
        match incoming {
            Incoming::Untagged(response) => {
                self.observe(&response);
                Ok(Some(response))
            }
            Incoming::Tagged(tagged) => match &mut self.idle {
                Some(idle) if idle.tag == tagged.tag => {
                    idle.ended = Some(tagged.status.clone());
                    self.observe_status(&tagged.status);
                    Ok(None)
                }
                _ => Err(malformed(
                    "tagged response while waiting for untagged ones",
                    &head,
                )),
            },
            Incoming::Continuation(_) => Err(unexpected_continuation("IDLE", &head)),
        }
    }

    /// Ends IDLE: sends DONE and reads to the tagged response, whose untagged responses are
    /// those [`Self::idle_wait`] did not hand out and those after DONE. If the server already
    /// ended the IDLE, sends nothing and returns that. Without an IDLE from
    /// [`Self::idle_start`] (one sent raw, say), sends DONE and reads to the next tagged
    /// response, whatever its tag.
    pub async fn idle_done(&mut self) -> Result<CommandResult, ClientError> {
        let Some(idle) = self.idle.take() else {
            self.send_raw(b"DONE\r\n").await?;
            let mut untagged = Vec::new();
            return match self.read_step(None, &mut untagged, "DONE").await? {
                Step::Done(tagged) => Ok(CommandResult {
                    tag: String::new(),
                    tagged,
                    untagged,
                }),
                Step::Continue(_, head) => Err(unexpected_continuation("DONE", &head)),
            };
        };
        let untagged = Vec::from(idle.pending);
        if let Some(tagged) = idle.ended {
            return Ok(CommandResult {
                tag: idle.tag,
                tagged,
                untagged,
            });
        }
        self.send_raw(b"DONE\r\n").await?;
        self.finish(idle.tag, untagged, "IDLE").await
    }

    /// Whether the server closes the connection (EOF or reset) within `timeout`. Whatever it
    /// sends meanwhile is kept for [`Self::read_incoming`] and the transcript.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Result<bool, ClientError> {
        self.conn.read_until_closed(timeout).await
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The negotiated TLS version, such as `"TLSv1.3"`, when TLS is on.
    pub fn tls_protocol_version(&self) -> Option<String> {
        self.conn.tls_protocol_version()
    }

    /// Everything sent and received so far.
    /// What the server sent in clear text after its go-ahead to start TLS, before the handshake
    /// (discarded, never read as a response); empty when it sent nothing there.
    pub fn plaintext_after_go_ahead(&self) -> &[u8] {
        &self.conn.plaintext_after_go_ahead
    }

    pub fn transcript(&self) -> &Transcript {
        self.conn.transcript()
    }
}

fn unexpected_continuation(what: &str, head: &[u8]) -> ClientError {
    malformed(
        format!("continuation request during {what}, which has nothing to send"),
        head,
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::clients::test_support::{read_until, serve_once, test_cert};
    use crate::clients::transcript::Entry;
    use crate::target::TlsSettings;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn trusting(ca_pem: &str) -> TlsClient {
        let settings = TlsSettings {
            ca_pem: Some(ca_pem.to_owned()),
            server_name: Some("localhost".to_owned()),
            ..TlsSettings::default()
        };
        TlsClient::from_settings(&settings, "127.0.0.1").unwrap()
    }

    /// Frames and parses `wire` whole, and fed one byte more at a time, checking that the
    /// framer completes exactly at the end and both ways agree.
    fn parse_all(wire: &[u8]) -> Result<Incoming, ClientError> {
        let framer = Framer::new(DEFAULT_MAX_LITERAL);
        for end in 0..wire.len() {
            match framer.parse(&wire[..end]) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("complete after {end} of {} bytes", wire.len()),
                Err(error) => return Err(error),
            }
        }
        let whole = Framer::new(DEFAULT_MAX_LITERAL).parse(wire);
        let fed = framer.parse(wire);
        assert_eq!(format!("{whole:?}"), format!("{fed:?}"));
        let ((incoming, _head), used) = whole?.expect("a complete response");
        assert_eq!(used, wire.len());
        Ok(incoming)
    }

    fn parse(wire: &[u8]) -> Incoming {
        parse_all(wire).unwrap_or_else(|error| panic!("{error}"))
    }

    fn untagged(wire: &[u8]) -> Response {
        match parse(wire) {
            Incoming::Untagged(response) => response,
            other => panic!("not untagged: {other:?}"),
        }
    }

    fn status(wire: &[u8]) -> Status {
        match parse(wire) {
            Incoming::Untagged(Response::Status(status)) => status,
            Incoming::Tagged(tagged) => tagged.status,
            other => panic!("not a status: {other:?}"),
        }
    }

    fn code(wire: &[u8]) -> Code {
        status(wire).code.expect("a response code")
    }

    fn fetch(wire: &[u8]) -> Fetch {
        match untagged(wire) {
            Response::Fetch(fetch) => fetch,
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    fn malformed_reason<T: fmt::Debug>(result: Result<T, ClientError>) -> String {
        match result {
            Err(ClientError::MalformedReply { reason, .. }) => reason,
            other => panic!("expected a malformed reply, got {other:?}"),
        }
    }

    fn set(ranges: &[(u32, u32)]) -> SequenceSet {
        SequenceSet {
            ranges: ranges.to_vec(),
        }
    }

    #[test]
    fn status_responses_and_codes() {
        let tagged = parse(b"a1 OK [READ-WRITE] SELECT completed\r\n");
        let Incoming::Tagged(Tagged { tag, status: ok }) = tagged else {
            panic!("{tagged:?}")
        };
        assert_eq!(tag, "a1");
        assert_eq!(ok.kind, StatusKind::Ok);
        assert_eq!(ok.code, Some(Code::ReadWrite));
        assert_eq!(ok.text, "SELECT completed");
        assert_eq!(ok.to_string(), "OK [READ-WRITE] SELECT completed");
        assert_eq!(status(b"* BYE logging out\r\n").kind, StatusKind::Bye);
        assert_eq!(status(b"* PREAUTH hi\r\n").kind, StatusKind::Preauth);
        assert_eq!(status(b"a2 bad what?\r\n").kind, StatusKind::Bad);
        // `[CODE]` CRLF without the SP before the (empty) text is tolerated.
        assert_eq!(status(b"a3 OK [READ-ONLY]\r\n").code, Some(Code::ReadOnly));
        assert_eq!(
            code(b"a1 NO [TRYCREATE] no such mailbox\r\n"),
            Code::TryCreate
        );
        assert_eq!(
            code(b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"),
            Code::UidValidity(3_857_529_045)
        );
        assert_eq!(
            code(b"* OK [UIDNEXT 4392] Predicted next UID\r\n"),
            Code::UidNext(4392)
        );
        assert_eq!(code(b"* OK [UNSEEN 12] first\r\n"), Code::Unseen(12));
        assert_eq!(
            code(b"* OK [PERMANENTFLAGS (\\Deleted \\Seen $Junk \\*)] Limited\r\n"),
            Code::PermanentFlags(vec![
                "\\Deleted".into(),
                "\\Seen".into(),
                "$Junk".into(),
                "\\*".into()
            ])
        );
        assert_eq!(
            code(b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"),
            Code::HighestModseq(715_194_045_007)
        );
        assert_eq!(
            code(b"a4 OK [APPENDUID 38505 3955] APPEND completed\r\n"),
            Code::AppendUid {
                uidvalidity: 38505,
                uids: set(&[(3955, 3955)])
            }
        );
        let copy = code(b"a5 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n");
        assert_eq!(
            copy,
            Code::CopyUid {
                uidvalidity: 38505,
                source: set(&[(304, 304), (319, 320)]),
                destination: set(&[(3956, 3958)]),
            }
        );
        assert_eq!(copy.to_string(), "COPYUID 38505 304,319:320 3956:3958");
        assert_eq!(
            code(b"a6 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
            Code::Other {
                name: "AUTHENTICATIONFAILED".into(),
                arguments: None
            }
        );
        assert_eq!(
            code(b"a7 NO [privacyrequired] Use TLS\r\n").name(),
            "PRIVACYREQUIRED"
        );
        assert_eq!(
            code(b"* NO [BADCHARSET (UTF-8 US-ASCII)] x\r\n"),
            Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()])
        );
        assert_eq!(
            code(b"a8 OK [MODIFIED 7,9] Conditional STORE failed\r\n"),
            Code::Modified(set(&[(7, 7), (9, 9)]))
        );
        assert_eq!(
            code(b"* OK [X-FOO bar baz] x\r\n"),
            Code::Other {
                name: "X-FOO".into(),
                arguments: Some("bar baz".into())
            }
        );
        let greeting = status(b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n");
        assert_eq!(
            greeting.capabilities().unwrap(),
            ["IMAP4rev1", "STARTTLS", "AUTH=PLAIN"]
        );
        // A status line ending in `{5}` is text, not a literal.
        assert_eq!(status(b"a9 OK done {5}\r\n").text, "done {5}");
    }

    #[test]
    fn message_counts_and_flags() {
        assert_eq!(untagged(b"* 23 EXISTS\r\n"), Response::Exists(23));
        assert_eq!(untagged(b"* 0 EXISTS\r\n"), Response::Exists(0));
        assert_eq!(untagged(b"* 5 RECENT\r\n"), Response::Recent(5));
        assert_eq!(untagged(b"* 44 expunge\r\n"), Response::Expunge(44));
        assert_eq!(
            untagged(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"),
            Response::Flags(
                [
                    "\\Answered",
                    "\\Flagged",
                    "\\Deleted",
                    "\\Seen",
                    "\\Draft",
                    "$Forwarded"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(
            untagged(b"* VANISHED (EARLIER) 41,43:116\r\n"),
            Response::Vanished {
                earlier: true,
                uids: set(&[(41, 41), (43, 116)])
            }
        );
    }

    #[test]
    fn search_and_esearch() {
        assert_eq!(
            untagged(b"* SEARCH\r\n"),
            Response::Search(Search {
                numbers: vec![],
                modseq: None
            })
        );
        assert_eq!(
            untagged(b"* SEARCH 2 84 882\r\n"),
            Response::Search(Search {
                numbers: vec![2, 84, 882],
                modseq: None
            })
        );
        assert_eq!(
            untagged(b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"),
            Response::Search(Search {
                numbers: vec![2, 5],
                modseq: Some(917_162_500)
            })
        );
        assert_eq!(
            untagged(b"* ESEARCH (TAG \"a1\") UID MIN 1 COUNT 3 ALL 1:3,5 MODSEQ 9 X-FOO (a)\r\n"),
            Response::Esearch(Esearch {
                tag: Some("a1".into()),
                uid: true,
                min: Some(1),
                max: None,
                count: Some(3),
                all: Some(set(&[(1, 3), (5, 5)])),
                modseq: Some(9),
                other: vec![("X-FOO".into(), Value::List(vec![Value::Atom("a".into())]))],
            })
        );
        assert_eq!(
            untagged(b"* ESEARCH\r\n"),
            Response::Esearch(Esearch::default())
        );
        let Response::Esearch(untagged_uid) = untagged(b"* ESEARCH UIDNEXT 4\r\n") else {
            panic!("not ESEARCH")
        };
        assert!(!untagged_uid.uid);
        assert_eq!(
            untagged_uid.other,
            [("UIDNEXT".to_owned(), Value::Number(4))]
        );
        for bad in [
            &b"* ESEARCH MIN 0\r\n"[..],
            b"* ESEARCH (TAG a1) COUNT 1\r\n",
            b"* ESEARCH ALL\r\n",
        ] {
            assert!(parse_all(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn list_lsub_and_mailbox_names() {
        let Response::List(sent) = untagged(b"* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n")
        else {
            panic!("not LIST")
        };
        assert_eq!(sent.attributes, ["\\HasNoChildren", "\\Sent"]);
        assert!(sent.has_attribute("\\sent") && !sent.has_attribute("\\Trash"));
        assert_eq!((sent.delimiter, sent.name.as_str()), (Some('/'), "Sent"));
        let Response::Lsub(flat) = untagged(b"* LSUB () NIL INBOX\r\n") else {
            panic!("not LSUB")
        };
        assert_eq!((flat.delimiter, flat.name.as_str()), (None, "INBOX"));
        let Response::List(escaped) = untagged(b"* LIST () \".\" \"a \\\"b\\\" \\\\c\"\r\n") else {
            panic!("not LIST")
        };
        assert_eq!(escaped.name, "a \"b\" \\c");
        let Response::List(literal) = untagged(b"* LIST (\\Noselect) \"/\" {4}\r\nx)y\"\r\n")
        else {
            panic!("not LIST")
        };
        assert_eq!(literal.name, "x)y\"");
        let Response::List(extended) = untagged(
            b"* LIST (\\Subscribed) \"/\" \"Foo/&AOQ-\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
        ) else {
            panic!("not LIST")
        };
        assert_eq!(extended.decoded_name().unwrap(), "Foo/\u{e4}");
        assert_eq!(
            extended.extended,
            [
                Value::String(b"CHILDINFO".to_vec()),
                Value::List(vec![Value::String(b"SUBSCRIBED".to_vec())])
            ]
        );
    }

    #[test]
    fn status_enabled_namespace_id_capability() {
        let Response::MailboxStatus(status) = untagged(
            b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)\r\n",
        ) else {
            panic!("not STATUS")
        };
        assert_eq!(status.mailbox, "blurdybloop");
        assert_eq!(status.get("messages"), Some(231));
        assert_eq!(status.get("HIGHESTMODSEQ"), Some(7_011_231_777));
        assert_eq!(status.get("UNSEEN"), None);
        assert_eq!(
            untagged(b"* ENABLED CONDSTORE QRESYNC\r\n"),
            Response::Enabled(vec!["CONDSTORE".into(), "QRESYNC".into()])
        );
        assert_eq!(untagged(b"* ENABLED\r\n"), Response::Enabled(vec![]));
        let Response::Namespace(namespaces) = untagged(
            b"* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) ((\"#shared/\" \"/\" \"X-PARAM\" (\"a\" \"b\"))(\"#public/\" NIL))\r\n",
        ) else {
            panic!("not NAMESPACE")
        };
        assert_eq!(namespaces.personal.len(), 1);
        assert_eq!(namespaces.personal[0].prefix, "");
        assert_eq!(namespaces.other_users[0].prefix, "~");
        assert_eq!(namespaces.shared.len(), 2);
        assert_eq!(
            namespaces.shared[0].extensions,
            [("X-PARAM".to_owned(), vec!["a".to_owned(), "b".to_owned()])]
        );
        assert_eq!(namespaces.shared[1].delimiter, None);
        let Response::Namespace(only_personal) =
            untagged(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n")
        else {
            panic!("not NAMESPACE")
        };
        assert!(only_personal.other_users.is_empty() && only_personal.shared.is_empty());
        assert_eq!(
            untagged(b"* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n"),
            Response::Id(Some(vec![
                ("name".into(), Some("Dovecot".into())),
                ("version".into(), None)
            ]))
        );
        assert_eq!(untagged(b"* ID NIL\r\n"), Response::Id(None));
        assert_eq!(
            untagged(b"* CAPABILITY IMAP4rev1 IDLE LITERAL+\r\n"),
            Response::Capability(vec!["IMAP4rev1".into(), "IDLE".into(), "LITERAL+".into()])
        );
    }

    #[test]
    fn fetch_items() {
        let flags = fetch(b"* 12 FETCH (FLAGS (\\Seen $Label1) UID 4827313 RFC822.SIZE 44827 MODSEQ (624140003))\r\n");
        assert_eq!(flags.seq, 12);
        assert_eq!(flags.flags().unwrap(), ["\\Seen", "$Label1"]);
        assert!(flags.has_flag("\\seen") && !flags.has_flag("\\Deleted"));
        assert_eq!(flags.uid(), Some(4_827_313));
        assert_eq!(flags.rfc822_size(), Some(44827));
        assert_eq!(flags.modseq(), Some(624_140_003));
        let sections = fetch(
            b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)]<0> {22}\r\nSubject: hi\r\nFrom: x\r\n BODY[1.MIME] NIL BODY[] \"\" INTERNALDATE \" 7-Feb-1994 21:52:25 -0800\")\r\n",
        );
        assert_eq!(sections.items[0].0, "BODY[HEADER.FIELDS (SUBJECT FROM)]<0>");
        assert_eq!(
            sections.body("HEADER.FIELDS (SUBJECT FROM)"),
            Some(&b"Subject: hi\r\nFrom: x\r\n"[..])
        );
        assert_eq!(sections.get("BODY[1.MIME]"), Some(&Value::Nil));
        assert_eq!(sections.body("1.MIME"), None);
        assert_eq!(sections.body(""), Some(&b""[..]));
        assert_eq!(sections.body("HEADER"), None);
        assert_eq!(sections.internal_date(), Some(" 7-Feb-1994 21:52:25 -0800"));
        let envelope = fetch(
            b"* 2 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")) NIL NIL \"<B27397-0100000@cac.washington.edu>\"))\r\n",
        );
        let fields = envelope.envelope().unwrap().as_list().unwrap();
        assert_eq!(fields[1].as_str(), Some("IMAP4rev1 WG"));
        assert_eq!(
            fields[5].get(0).unwrap().get(2).unwrap().as_str(),
            Some("imap")
        );
        let structure = fetch(
            b"* 3 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) \"MIXED\"))\r\n",
        );
        let parts = structure.bodystructure().unwrap().as_list().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].as_str(), Some("MIXED"));
        assert_eq!(parts[1].get(6).unwrap().as_number(), Some(4554));
    }

    #[test]
    fn continuations() {
        let plain = |wire: &[u8]| match parse(wire) {
            Incoming::Continuation(continuation) => continuation,
            other => panic!("not a continuation: {other:?}"),
        };
        assert_eq!(plain(b"+ idling\r\n").text, "idling");
        assert_eq!(plain(b"+ \r\n").text, "");
        assert_eq!(plain(b"+\r\n").text, "");
        assert_eq!(plain(b"+ dGVzdA==\r\n").text, "dGVzdA==");
        assert_eq!(plain(b"+ [ALERT] hm\r\n").code, Some(Code::Alert));
    }

    #[test]
    fn literals_split_anywhere_and_bounded() {
        // parse_all feeds byte by byte: the framer must not finish at the `)` inside the literal
        // or the CRLF that the literal contains.
        let wire = b"* 7 FETCH (BODY[] {11}\r\na)\r\n\r\n* 1 X UID 9)\r\n";
        let fetched = fetch(wire);
        assert_eq!(fetched.body(""), Some(&b"a)\r\n\r\n* 1 X"[..]));
        assert_eq!(fetched.uid(), Some(9));
        // Two literals, and an empty one.
        let two = fetch(b"* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {0}\r\n)\r\n");
        assert_eq!(
            (two.body("1"), two.body("2")),
            (Some(&b"abc"[..]), Some(&b""[..]))
        );
        // A second response in the same buffer is left alone.
        let framer = Framer::new(DEFAULT_MAX_LITERAL);
        let (_, used) = framer
            .parse(b"* 1 EXISTS\r\n* 2 FETCH (BODY[] {1}\r\nx)\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(used, 12);
        // The literal limit counts every literal of a response.
        let framer = Framer::new(10);
        assert!(
            framer
                .parse(b"* 1 FETCH (BODY[1] {6}\r\n")
                .unwrap()
                .is_none()
        );
        let reason =
            malformed_reason(framer.parse(b"* 1 FETCH (BODY[1] {6}\r\nabcdef BODY[2] {5}\r\n"));
        assert!(reason.contains("limit of 10"), "{reason}");
        assert!(
            malformed_reason(
                Framer::new(10).parse(b"* 1 FETCH (BODY[] {99999999999999999999999}\r\n")
            )
            .contains("memory")
        );
    }

    #[test]
    fn over_long_lines_are_bounded() {
        let framer = Framer::new(DEFAULT_MAX_LITERAL);
        let mut long = b"* SEARCH".to_vec();
        while long.len() < MAX_LINE {
            long.extend_from_slice(b" 1");
        }
        long.truncate(MAX_LINE);
        assert!(framer.parse(&long).unwrap().is_none());
        long.push(b'1');
        let reason = malformed_reason(framer.parse(&long));
        assert!(reason.contains("no line end"), "{reason}");
        // Only the start is kept in the error.
        let Err(ClientError::MalformedReply { bytes, .. }) = Framer::new(5).parse(&long) else {
            panic!("not malformed")
        };
        assert_eq!(bytes.len(), 2 * SHOWN_AROUND_ERROR);
        // Lines after literals count towards the same limit.
        let mut spread = b"* 1 FETCH (BODY[1] {1}\r\nx".to_vec();
        spread.extend(std::iter::repeat_n(b' ', MAX_LINE));
        assert!(Framer::new(DEFAULT_MAX_LITERAL).parse(&spread).is_err());
    }

    #[test]
    fn malformed_responses_are_errors() {
        let nested = [b"* X ".as_slice(), &[b'('; 200], &[b')'; 200], b"\r\n"].concat();
        for (wire, expected) in [
            (&b"* 3 EXISTS\n"[..], "bare LF"),
            (b"* 3 EXISTS\rx\r\n", "bare CR"),
            (b"* 0 EXPUNGE\r\n", "message number 0"),
            (b"* 0 FETCH (UID 1)\r\n", "message number 0"),
            (b"* 4294967296 EXISTS\r\n", "32 bits"),
            (b"* 3 EXISTS extra\r\n", "CRLF"),
            (b"a1 FOO bar\r\n", "not OK, NO or BAD"),
            (b"a1 PREAUTH x\r\n", "not OK, NO or BAD"),
            (b"a1\r\n", "a space"),
            (b"a1 OK\r\n", "a space"),
            (b"* LIST (Noslash) \"/\" x\r\n", "name attribute"),
            (b"* LIST () \"//\" x\r\n", "delimiter"),
            (b"* LIST () \"/\" \"open\r\n", "not closed"),
            (b"* LIST () \"/\" \"a\\b\"\r\n", "backslash"),
            (b"* LIST () \"/\" \"a\x00\"\r\n", "NUL"),
            (b"* LIST () \"/\" x y\r\n", "not a list"),
            (b"* 1 FETCH (BODY[] {3}\r\na\x00c)\r\n", "NUL in a literal"),
            (b"* 1 FETCH ()\r\n", "without items"),
            (b"* 1 FETCH (UID 0)\r\n", "UID is 0"),
            (b"* 1 FETCH (FLAGS \\Seen)\r\n", "'('"),
            (b"* 1 FETCH (BODY[TEXT BODY)\r\n", "section"),
            (b"* 1 FETCH (INTERNALDATE \"yesterday\")\r\n", "date-time"),
            (
                b"* 1 FETCH (INTERNALDATE \"17-Foo-1996 02:44:25 -0700\")\r\n",
                "date-time",
            ),
            (b"* 1 FETCH (ENVELOPE (NIL NIL))\r\n", "10"),
            (
                b"* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 3))\r\n",
                "lines",
            ),
            (b"* 1 FETCH (MODSEQ (0))\r\n", "mod-sequence"),
            (b"* OK [UIDNEXT 0] x\r\n", "is 0"),
            (b"* OK [UIDNEXT x] x\r\n", "a number"),
            (b"* OK [COPYUID 1 2] x\r\n", "a space"),
            (b"* OK [ALERT x\r\n", "']'"),
            (b"* SEARCH 0\r\n", "is 0"),
            (b"* SEARCH 1 \r\n", "a number"),
            (b"* STATUS x (MESSAGES)\r\n", "a space"),
            (b"* CAPABILITY\r\n", "capability"),
            (b"* NAMESPACE ((\"\" \"/\"))\r\n", "a space"),
            (b"* ID (\"name\")\r\n", "a space"),
            (b"*3 EXISTS\r\n", "a space"),
            (b"(x)\r\n", "a tag"),
            (b"+OK\r\n", "a space"),
            (&nested, "nested deeper"),
        ] {
            let reason = malformed_reason(parse_all(wire));
            assert!(
                reason.contains(expected),
                "{:?}: {reason}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn mangled_responses_never_panic() {
        let samples: [&[u8]; 6] = [
            b"* 1 FETCH (BODY[HEADER.FIELDS (A B)]<0> {3}\r\nabc UID 4 FLAGS (\\Seen))\r\n",
            b"* LIST (\\HasNoChildren) \"/\" \"a\\\"b\"\r\n",
            b"a1 OK [COPYUID 1 2:3 4,5] done\r\n",
            b"* NAMESPACE ((\"\" \"/\")) NIL ((\"#s/\" \"/\" \"X\" (\"a\")))\r\n",
            b"* 2 FETCH (ENVELOPE (NIL \"s\" ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL NIL))\r\n",
            b"* STATUS \"x\" (MESSAGES 1 UIDNEXT 2)\r\n",
        ];
        let mut outcomes = [0usize; 2];
        for sample in samples {
            for at in 0..sample.len() {
                for replacement in [
                    b' ', b'(', b')', b'{', b'"', b'\\', b'\r', b'\n', 0, b'9', 0xff,
                ] {
                    let mut mangled = sample.to_vec();
                    mangled[at] = replacement;
                    match Framer::new(64).parse(&mangled) {
                        Ok(_) => outcomes[0] += 1,
                        Err(ClientError::MalformedReply { .. }) => outcomes[1] += 1,
                        Err(other) => panic!("{other}"),
                    }
                    let mut cut = sample[..at].to_vec();
                    cut.extend_from_slice(b"\r\n");
                    assert!(matches!(
                        parse_response(&cut),
                        Ok(_) | Err(ClientError::MalformedReply { .. })
                    ));
                }
            }
        }
        assert!(outcomes[1] > 0 && outcomes[0] > 0, "{outcomes:?}");
    }

    #[test]
    fn modified_utf7() {
        for (decoded, encoded) in [
            ("INBOX", "INBOX"),
            ("Entw\u{fc}rfe", "Entw&APw-rfe"),
            ("R&D", "R&-D"),
            (
                "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}",
                "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
            ),
            ("\u{1f600}", "&2D3eAA-"),
            ("tab\there", "tab&AAk-here"),
            ("", ""),
        ] {
            assert_eq!(encode_modified_utf7(decoded), encoded);
            assert_eq!(decode_modified_utf7(encoded).unwrap(), decoded);
        }
        for bad in [
            "&U,BTFw",   // no closing '-'
            "&AGE-",     // 'a' encoded
            "caf\u{e9}", // raw 8-bit
            "&Jjo!-",    // not base64
            "&AP-",      // not whole UTF-16 units
            "&2D0-",     // lone surrogate
            "&APy-\x01", // raw control character
        ] {
            let reason = malformed_reason(decode_modified_utf7(bad));
            assert!(reason.contains("not modified UTF-7"), "{bad:?}: {reason}");
        }
        assert_eq!(mailbox_arg("a\"b\u{e9}"), "\"a\\\"b&AOk-\"");
    }

    #[test]
    fn quoting_and_display() {
        assert_eq!(quote(b"a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quote(b"").as_deref(), Some("\"\""));
        for unquotable in [&b"a\r\n"[..], b"\x00", b"caf\xc3\xa9"] {
            assert_eq!(quote(unquotable), None);
        }
        let value = Value::List(vec![
            Value::Nil,
            Value::Number(3),
            Value::Atom("\\Seen".into()),
            Value::String(b"a\"b".to_vec()),
            Value::String(b"x\r\ny".to_vec()),
        ]);
        assert_eq!(
            value.to_string(),
            "(NIL 3 \\Seen \"a\\\"b\" {4}\\r\\nx\\r\\ny)"
        );
        let uids = set(&[(5, 3), (9, 9)]);
        assert_eq!(uids.to_string(), "5:3,9");
        assert!(uids.contains(4) && !uids.contains(6));
        assert_eq!(uids.iter().collect::<Vec<_>>(), [3, 4, 5, 9]);
        assert_eq!((uids.single(), set(&[(7, 7)]).single()), (None, Some(7)));
    }

    /// A fake server: sends `greeting`, then for each step reads one line (up to CRLF) and
    /// sends the step with `{tag}` replaced by that line's first word. Returns what it read.
    async fn scripted(
        greeting: &'static str,
        steps: Vec<&'static str>,
    ) -> (String, JoinHandle<Vec<u8>>) {
        serve_once(move |mut stream: TcpStream| async move {
            stream.write_all(greeting.as_bytes()).await.unwrap();
            let mut received = Vec::new();
            for step in steps {
                let line = read_until(&mut stream, b"\r\n").await;
                let text = String::from_utf8_lossy(&line).into_owned();
                let tag = text
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned();
                received.extend(line);
                stream
                    .write_all(step.replace("{tag}", &tag).as_bytes())
                    .await
                    .unwrap();
            }
            received
        })
        .await
    }

    /// Untagged responses a server may send at any time (RFC 3501 section 7) go with whichever
    /// command is running when they come, and never pass for its answer.
    #[tokio::test]
    async fn chatter_anywhere_is_kept_apart_from_the_answers() {
        let (addr, server) = scripted(
            "* OK ready\r\n",
            vec![
                // LOGIN: the tagged OK, then unsolicited responses after it.
                "{tag} OK Logged in\r\n* OK [ALERT] Maintenance tonight\r\n\
                 * CAPABILITY IMAP4rev1 NAMESPACE IDLE\r\n",
                // NAMESPACE: a warning and a stray BAD around the answer.
                "* NO [ALERT] Mailbox 91 percent full\r\n\
                 * NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n* BAD stray\r\n\
                 {tag} OK NO problem, that went fine\r\n",
                // APPEND: chatter before the continuation, and after the literal.
                "* OK Still here\r\n+ go ahead\r\n",
                "* OK Still here\r\na3 NO OK, so that did not work\r\n",
                // IDLE: chatter with the continuation.
                "+ idling\r\n* OK Still here\r\n",
                "* 4 EXISTS\r\na4 OK BAD news avoided: success\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let login = client.login("u", "p").await.unwrap();
        assert!(login.is_ok() && login.untagged.is_empty(), "{login:?}");
        let namespace = client.namespace().await.unwrap();
        assert!(namespace.is_ok(), "{namespace:?}");
        assert_eq!(namespace.untagged.len(), 5, "{namespace:?}");
        let personal = &namespace.namespaces().unwrap().personal[0];
        assert_eq!(
            (personal.prefix.as_str(), personal.delimiter),
            ("INBOX.", Some('.'))
        );
        assert!(client.has_capability("NAMESPACE"));
        assert!(namespace.codes().all(|c| *c == Code::Alert));
        let appended = client
            .append("INBOX", &[], None, b"hi", false)
            .await
            .unwrap();
        assert_eq!(appended.tagged.kind, StatusKind::No);
        assert_eq!(appended.untagged.len(), 2);
        client.idle_start().await.unwrap().unwrap();
        let short = Duration::from_millis(100);
        assert!(matches!(
            client.idle_wait(short).await.unwrap(),
            Some(Response::Status(_))
        ));
        let done = client.idle_done().await.unwrap();
        assert!(done.is_ok() && done.exists() == Some(4), "{done:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn full_session() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] ready\r\n")
                .await
                .unwrap();
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream
                .write_all(b"a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(
                    b"* 172 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 12] x\r\n\
                      * OK [UIDVALIDITY 3857529045] x\r\n* OK [UIDNEXT 4392] x\r\n\
                      * FLAGS (\\Answered \\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] x\r\n\
                      * OK [HIGHESTMODSEQ 90060128194045007] x\r\n\
                      a2 OK [READ-WRITE] SELECT completed\r\n",
                )
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            // The literal arrives in pieces, split inside its announcement and its octets.
            for piece in [
                &b"* 1 FETCH (UID 7 BODY[] {2"[..],
                b"3}\r\nSubject: hi\r\n",
                b"\r\nbody\r\n\r\n)\r\n* 2 FETCH (UID 8 BODY[] NIL)\r",
                b"\na3 OK FETCH done\r\n",
            ] {
                stream.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"* BYE see you\r\na4 OK LOGOUT completed\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = client.greeting().await.unwrap();
        assert!(greeting.is_ok());
        assert!(client.has_capability("literal+"));
        let login = client.login("al\"ice", "pa ss\\").await.unwrap();
        assert!(login.is_ok());
        assert!(client.has_capability("MOVE") && !client.has_capability("LITERAL+"));
        let selected = client.select("INBOX").await.unwrap();
        assert!(selected.result.is_ok());
        assert_eq!(selected.exists, Some(172));
        assert_eq!(selected.recent, Some(1));
        assert_eq!(selected.unseen, Some(12));
        assert_eq!(selected.uidvalidity, Some(3_857_529_045));
        assert_eq!(selected.uidnext, Some(4392));
        assert_eq!(selected.flags.as_deref().unwrap(), ["\\Answered", "\\Seen"]);
        assert_eq!(
            selected.permanent_flags.as_deref().unwrap(),
            ["\\Seen", "\\*"]
        );
        assert_eq!(selected.highest_modseq, Some(90_060_128_194_045_007));
        assert_eq!(selected.read_only, Some(false));
        let fetched = client.uid_fetch("7:8", "(UID BODY[])").await.unwrap();
        assert_eq!(fetched.tagged.text, "FETCH done");
        let fetches = fetched.fetches();
        assert_eq!(fetches.len(), 2);
        assert_eq!(
            fetches[0].body(""),
            Some(&b"Subject: hi\r\n\r\nbody\r\n\r\n"[..])
        );
        assert_eq!(fetches[1].uid(), Some(8));
        assert_eq!(fetches[1].body(""), None);
        let logout = client.logout().await.unwrap();
        assert!(logout.is_ok());
        assert!(matches!(
            &logout.untagged[..],
            [Response::Status(Status {
                kind: StatusKind::Bye,
                ..
            })]
        ));
        assert_eq!(
            String::from_utf8(server.await.unwrap()).unwrap(),
            "a1 LOGIN \"al\\\"ice\" \"pa ss\\\\\"\r\na2 SELECT \"INBOX\"\r\n\
             a3 UID FETCH 7:8 (UID BODY[])\r\na4 LOGOUT\r\n"
        );
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("S: * 1 FETCH (UID 7 BODY[] {23}\\r\\n\n"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn append_waits_for_the_continuation() {
        let message = b"Subject: x\r\n\r\nhello\r\n";
        let (addr, server) = serve_once(move |mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let mut received = read_until(&mut stream, b"}\r\n").await;
            stream
                .write_all(b"+ Ready for literal data\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"* 3 EXISTS\r\na1 OK [APPENDUID 38505 3955] APPEND completed\r\n")
                .await
                .unwrap();
            // Refused before the literal: the client must send nothing more for it.
            received.extend(read_until(&mut stream, b"}\r\n").await);
            stream
                .write_all(b"a2 NO [TRYCREATE] no such mailbox\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"a3 OK NOOP\r\n").await.unwrap();
            // LITERAL+: everything in one go.
            received.extend(read_until(&mut stream, b"\r\n\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"a4 OK done\r\n").await.unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let appended = client
            .append(
                "Entw\u{fc}rfe",
                &["\\Seen", "\\Draft"],
                Some("17-Jul-1996 02:44:25 -0700"),
                message,
                false,
            )
            .await
            .unwrap();
        assert!(appended.is_ok());
        assert_eq!(appended.exists(), Some(3));
        let (uidvalidity, uids) = appended.append_uid().unwrap();
        assert_eq!((uidvalidity, uids.single()), (38505, Some(3955)));
        let refused = client
            .append("Nope", &[], None, message, false)
            .await
            .unwrap();
        assert_eq!(refused.tagged.kind, StatusKind::No);
        assert_eq!(refused.tagged.code, Some(Code::TryCreate));
        assert!(client.noop().await.unwrap().is_ok());
        assert!(
            client
                .append("INBOX", &[], None, message, true)
                .await
                .unwrap()
                .is_ok()
        );
        let expected = [
            &b"a1 APPEND \"Entw&APw-rfe\" (\\Seen \\Draft) \"17-Jul-1996 02:44:25 -0700\" {21}\r\n"
                [..],
            message,
            b"\r\na2 APPEND \"Nope\" {21}\r\na3 NOOP\r\na4 APPEND \"INBOX\" {21+}\r\n",
            message,
            b"\r\n",
        ]
        .concat();
        assert_eq!(
            String::from_utf8(server.await.unwrap()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        // The LITERAL+ command went in a single write.
        let writes: Vec<_> = client
            .transcript()
            .entries()
            .iter()
            .filter(|entry| matches!(entry, Entry::Sent(_)))
            .collect();
        assert_eq!(writes.len(), 5);
    }

    #[tokio::test]
    async fn login_with_a_literal_and_authenticate_plain() {
        let (addr, server) = scripted(
            "* OK ready\r\n",
            vec![
                "+ go on\r\n",
                "a1 OK logged in\r\n",
                "a2 OK [CAPABILITY IMAP4rev1] authenticated\r\n",
                "+ \r\n",
                "a3 NO [AUTHENTICATIONFAILED] bad\r\n",
                "+ \r\n",
                "+ again?\r\n",
                "a4 BAD cancelled\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        // An 8-bit password cannot be quoted.
        assert!(client.login("alice", "p\u{e4}ss").await.unwrap().is_ok());
        assert!(
            client
                .authenticate_plain("a", "b", true)
                .await
                .unwrap()
                .is_ok()
        );
        assert!(client.has_capability("IMAP4rev1"));
        let failed = client.authenticate_plain("a", "b", false).await.unwrap();
        assert_eq!(
            failed.tagged.code.as_ref().map(Code::name),
            Some("AUTHENTICATIONFAILED")
        );
        let cancelled = client.authenticate_plain("a", "b", false).await.unwrap();
        assert_eq!(cancelled.tagged.kind, StatusKind::Bad);
        assert_eq!(
            String::from_utf8_lossy(&server.await.unwrap()),
            "a1 LOGIN \"alice\" {5}\r\np\u{e4}ss\r\na2 AUTHENTICATE PLAIN AGEAYg==\r\n\
             a3 AUTHENTICATE PLAIN\r\nAGEAYg==\r\na4 AUTHENTICATE PLAIN\r\nAGEAYg==\r\n*\r\n"
        );
    }

    #[tokio::test]
    async fn mailbox_commands_send_and_parse() {
        let (addr, server) = scripted(
            "* PREAUTH ready\r\n",
            vec![
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n* LIST () \"/\" \"&ZeVnLIqe-\"\r\n{tag} OK done\r\n",
                "* LSUB () \"/\" Sent\r\n{tag} OK done\r\n",
                "* STATUS Sent (MESSAGES 2 UIDNEXT 9)\r\n{tag} OK done\r\n",
                "* OK [UIDVALIDITY 5] x\r\n{tag} OK [READ-ONLY] EXAMINE\r\n",
                "* 1 FETCH (FLAGS (\\Seen))\r\n{tag} OK done\r\n",
                "* 1 FETCH (FLAGS (\\Deleted) UID 4)\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK [COPYUID 5 1 10] copied\r\n",
                "{tag} OK done\r\n",
                "* OK [COPYUID 5 4 11] x\r\n* 1 EXPUNGE\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n{tag} OK done\r\n",
                "* VANISHED 4\r\n{tag} OK done\r\n",
                "* SEARCH 1 2\r\n{tag} OK done\r\n",
                "* ESEARCH (TAG \"{tag}\") UID COUNT 0\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* ENABLED CONDSTORE\r\n{tag} OK done\r\n",
                "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK done\r\n",
                "* ID (\"name\" \"fake\")\r\n{tag} OK done\r\n",
                "* ID NIL\r\n{tag} OK done\r\n",
                "* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.greeting().await.unwrap().kind, StatusKind::Preauth);
        assert!(client.create("Entw\u{fc}rfe").await.unwrap().is_ok());
        client.delete("Old").await.unwrap();
        client.rename("A&B", "C").await.unwrap();
        client.subscribe("Sent").await.unwrap();
        client.unsubscribe("Sent").await.unwrap();
        let listed = client.list("", "*").await.unwrap();
        let lists = listed.lists();
        assert!(lists[0].has_attribute("\\Sent"));
        assert_eq!(lists[1].decoded_name().unwrap(), "\u{65e5}\u{672c}\u{8a9e}");
        assert_eq!(client.lsub("", "%").await.unwrap().lsubs()[0].name, "Sent");
        let status = client
            .status("Sent", &["MESSAGES", "UIDNEXT"])
            .await
            .unwrap();
        assert_eq!(status.mailbox_status().unwrap().get("UIDNEXT"), Some(9));
        let examined = client.examine("Sent").await.unwrap();
        assert_eq!(
            (examined.read_only, examined.uidvalidity),
            (Some(true), Some(5))
        );
        assert!(client.fetch("1", "FLAGS").await.unwrap().fetches()[0].has_flag("\\Seen"));
        let stored = client.store("1", "+FLAGS", "(\\Deleted)").await.unwrap();
        assert!(stored.fetches()[0].has_flag("\\Deleted"));
        client
            .uid_store("4", "-FLAGS.SILENT", "(\\Seen)")
            .await
            .unwrap();
        client.copy("1", "Trash").await.unwrap();
        let copied = client.uid_copy("1", "Trash").await.unwrap();
        let (_, source, destination) = copied.copy_uid().unwrap();
        assert_eq!((source.single(), destination.single()), (Some(1), Some(10)));
        client.move_("1", "Trash").await.unwrap();
        let moved = client.uid_move("4", "Trash").await.unwrap();
        assert_eq!(moved.copy_uid().unwrap().2.single(), Some(11));
        assert_eq!(moved.expunged(), [1]);
        client.check().await.unwrap();
        assert_eq!(client.expunge().await.unwrap().expunged(), [3, 3]);
        let vanished = client.uid_expunge("4").await.unwrap();
        assert!(matches!(
            vanished.untagged[0],
            Response::Vanished { earlier: false, .. }
        ));
        assert_eq!(
            client
                .search("UNSEEN")
                .await
                .unwrap()
                .search()
                .unwrap()
                .numbers,
            [1, 2]
        );
        let esearched = client.uid_search("RETURN (COUNT) ALL").await.unwrap();
        let esearch = esearched.esearch().unwrap();
        assert_eq!(
            (esearch.count, esearch.tag.as_deref()),
            (Some(0), Some("a21"))
        );
        assert!(esearch.uid);
        client.close().await.unwrap();
        client.unselect().await.unwrap();
        client.noop().await.unwrap();
        client.noop().await.unwrap();
        assert_eq!(
            client.enable(&["CONDSTORE"]).await.unwrap().enabled(),
            ["CONDSTORE"]
        );
        assert_eq!(
            client
                .namespace()
                .await
                .unwrap()
                .namespaces()
                .unwrap()
                .personal[0]
                .delimiter,
            Some('/')
        );
        let id = client
            .id(Some(&[("name", "harness"), ("version", "\u{e9}1")]))
            .await
            .unwrap();
        assert_eq!(
            id.id().unwrap(),
            [("name".to_owned(), Some("fake".to_owned()))]
        );
        assert_eq!(client.id(None).await.unwrap().id(), None);
        let capabilities = client.capability().await.unwrap();
        assert_eq!(
            capabilities.capabilities().unwrap(),
            ["IMAP4rev1", "UIDPLUS"]
        );
        assert!(client.has_capability("uidplus"));
        let received = String::from_utf8(server.await.unwrap()).unwrap();
        let expected = "a1 CREATE \"Entw&APw-rfe\"\r\na2 DELETE \"Old\"\r\na3 RENAME \"A&-B\" \"C\"\r\n\
            a4 SUBSCRIBE \"Sent\"\r\na5 UNSUBSCRIBE \"Sent\"\r\na6 LIST \"\" \"*\"\r\n\
            a7 LSUB \"\" \"%\"\r\na8 STATUS \"Sent\" (MESSAGES UIDNEXT)\r\na9 EXAMINE \"Sent\"\r\n\
            a10 FETCH 1 FLAGS\r\na11 STORE 1 +FLAGS (\\Deleted)\r\n\
            a12 UID STORE 4 -FLAGS.SILENT (\\Seen)\r\na13 COPY 1 \"Trash\"\r\n\
            a14 UID COPY 1 \"Trash\"\r\na15 MOVE 1 \"Trash\"\r\na16 UID MOVE 4 \"Trash\"\r\n\
            a17 CHECK\r\na18 EXPUNGE\r\na19 UID EXPUNGE 4\r\na20 SEARCH UNSEEN\r\n\
            a21 UID SEARCH RETURN (COUNT) ALL\r\na22 CLOSE\r\na23 UNSELECT\r\na24 NOOP\r\na25 NOOP\r\n\
            a26 ENABLE CONDSTORE\r\na27 NAMESPACE\r\na28 ID (\"name\" \"harness\" \"version\" \"\u{e9}1\")\r\n\
            a29 ID NIL\r\na30 CAPABILITY\r\n";
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn idle_start_wait_and_done() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let mut received = read_until(&mut stream, b"IDLE\r\n").await;
            stream
                .write_all(b"* 2 EXISTS\r\n+ idling\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            // A response split across the client's wait: the first half must be kept.
            stream.write_all(b"* 4 EXPU").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stream.write_all(b"NGE\r\n* 3 EXISTS\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"DONE\r\n").await);
            stream
                .write_all(b"* 1 RECENT\r\na1 OK IDLE terminated\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"IDLE\r\n").await);
            stream.write_all(b"a2 NO not now\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"IDLE\r\n").await);
            stream.write_all(b"+ idling\r\n").await.unwrap();
            stream
                .write_all(b"a3 BAD idled too long\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let continuation = client.idle_start().await.unwrap().unwrap();
        assert_eq!(continuation.text, "idling");
        let short = Duration::from_millis(100);
        assert_eq!(
            client.idle_wait(short).await.unwrap(),
            Some(Response::Exists(2))
        );
        assert_eq!(client.idle_wait(short).await.unwrap(), None);
        let mut waited = Vec::new();
        for _ in 0..20 {
            if let Some(response) = client.idle_wait(short).await.unwrap() {
                waited.push(response);
                break;
            }
        }
        assert_eq!(waited, [Response::Expunge(4)]);
        let done = client.idle_done().await.unwrap();
        assert!(done.is_ok());
        assert_eq!(done.untagged, [Response::Exists(3), Response::Recent(1)]);
        let refused = client.idle_start().await.unwrap().unwrap_err();
        assert_eq!(refused.tagged.text, "not now");
        client.idle_start().await.unwrap().unwrap();
        assert_eq!(client.idle_wait(TIMEOUT).await.unwrap(), None);
        let ended = client.idle_done().await.unwrap();
        assert_eq!(
            (ended.tag.as_str(), ended.tagged.kind),
            ("a3", StatusKind::Bad)
        );
        assert_eq!(
            server.await.unwrap(),
            b"a1 IDLE\r\nDONE\r\na2 IDLE\r\na3 IDLE\r\n"
        );
        // DONE was not sent for the IDLE the server ended.
        assert!(!client.transcript().sent().ends_with(b"DONE\r\n"));
    }

    #[tokio::test]
    async fn protocol_violations_over_the_wire() {
        let (addr, _server) = scripted(
            "* OK ready\r\n",
            vec!["+ unasked\r\n", "a9 OK wrong tag\r\n"],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let reason = malformed_reason(client.noop().await);
        assert!(
            reason.contains("continuation request during NOOP"),
            "{reason}"
        );
        let reason = malformed_reason(client.command("UID FETCH 1 FLAGS").await);
        assert!(
            reason.contains("\"a9\"") && reason.contains("UID FETCH"),
            "{reason}"
        );

        let (addr, _server) = scripted("a1 OK not a greeting\r\n", vec![]).await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        assert!(malformed_reason(client.greeting().await).contains("greeting"));

        let (addr, _server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"* OK ready\r\n* 1 FETCH (BODY[] {10}\r\nabc")
                .await
                .unwrap();
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let reason = malformed_reason(client.read_incoming().await);
        assert!(
            reason.contains("closed before the reply was complete"),
            "{reason}"
        );

        let (addr, server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"never").await;
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.set_timeout(Duration::from_millis(100));
        let error = client.noop().await.unwrap_err();
        assert!(
            matches!(&error, ClientError::Timeout { while_doing, .. } if while_doing == "waiting for the response to NOOP"),
            "{error}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn raw_pipelining_with_next_tag() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let received = read_until(&mut stream, b"a2 NOOP\r\n").await;
            stream
                .write_all(b"a1 OK first\r\n* 5 EXISTS\r\na2 OK second\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let (first, second) = (client.next_tag(), client.next_tag());
        client
            .send_raw(format!("{first} NOOP\r\n{second} NOOP\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            client.read_result(&first).await.unwrap().tagged.text,
            "first"
        );
        let Incoming::Untagged(Response::Exists(5)) = client.read_incoming().await.unwrap() else {
            panic!("not EXISTS")
        };
        assert_eq!(
            client.read_result(&second).await.unwrap().tagged.text,
            "second"
        );
        assert_eq!(server.await.unwrap(), b"a1 NOOP\r\na2 NOOP\r\n");
    }

    #[tokio::test]
    async fn starttls_upgrades_only_on_ok() {
        let Some(cert) = test_cert() else { return };
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |mut stream| async move {
            stream
                .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream
                .write_all(b"a1 NO [UNAVAILABLE] not now\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream.write_all(b"a2 OK Begin TLS\r\n").await.unwrap();
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            let capability = read_until(&mut tls, b"\r\n").await;
            tls.write_all(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na3 OK done\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            capability
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        assert!(client.has_capability("STARTTLS"));
        let refused = client.starttls(&tls).await.unwrap();
        assert!(!refused.is_ok() && !client.is_tls());
        assert!(client.starttls(&tls).await.unwrap().is_ok());
        assert!(client.is_tls() && client.capabilities().is_empty());
        assert!(client.capability().await.unwrap().is_ok());
        assert!(client.has_capability("AUTH=PLAIN") && !client.has_capability("STARTTLS"));
        assert_eq!(server.await.unwrap(), b"a3 CAPABILITY\r\n");
        assert!(matches!(
            client.starttls(&tls).await,
            Err(ClientError::AlreadyTls)
        ));
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("-- TLS established (TLSv1.3) --\nC: a3 CAPABILITY"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn starttls_with_injected_command_sends_one_write() {
        let Some(cert) = test_cert() else { return };
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let plaintext = read_until(&mut stream, b"x NOOP\r\n").await;
            stream.write_all(b"a1 OK Begin TLS\r\n").await.unwrap();
            // A vulnerable server answers the command it buffered before the handshake.
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"x OK injected\r\n").await.unwrap();
            tls.flush().await.unwrap();
            plaintext
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let result = client
            .starttls_with_injected(&tls, b"x NOOP\r\n")
            .await
            .unwrap();
        assert!(result.is_ok() && client.is_tls());
        let Incoming::Tagged(injected) = client.read_incoming().await.unwrap() else {
            panic!("not tagged")
        };
        assert_eq!(
            (injected.tag.as_str(), injected.status.text.as_str()),
            ("x", "injected")
        );
        assert_eq!(server.await.unwrap(), b"a1 STARTTLS\r\nx NOOP\r\n");
        assert_eq!(
            client.transcript().entries()[1],
            Entry::Sent(b"a1 STARTTLS\r\nx NOOP\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn implicit_tls_greeting() {
        let Some(cert) = test_cert() else { return };
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |stream| async move {
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"* OK IMAPS ready\r\n").await.unwrap();
            tls.flush().await.unwrap();
            let received = read_until(&mut tls, b"LOGOUT\r\n").await;
            tls.write_all(b"* BYE bye\r\na1 OK bye\r\n").await.unwrap();
            tls.flush().await.unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect_tls(&addr, &tls, TIMEOUT).await.unwrap();
        assert!(client.is_tls());
        assert_eq!(client.tls_protocol_version().as_deref(), Some("TLSv1.3"));
        assert_eq!(client.greeting().await.unwrap().text, "IMAPS ready");
        assert!(client.logout().await.unwrap().is_ok());
        assert_eq!(server.await.unwrap(), b"a1 LOGOUT\r\n");
    }
}

//! The response tree: statuses, codes, responses, generic values and what a command got.

use std::fmt;

use super::arguments::quote;
use super::utf7::decode_modified_utf7;
use crate::clients::ClientError;

/// The outcome of a step that only goes on after OK or a continuation, such as IDLE: the value,
/// or the result that ended the command instead.
pub type Outcome<T> = Result<T, CommandResult>;

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
                    crate::clients::transcript::escape_bytes(bytes)
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
    /// Reads what a SELECT or EXAMINE sent.
    pub fn from_result(result: CommandResult) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::imap::test_support::set;

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
}

//! The parser: one complete response into [`Incoming`] (RFC 3501 section 9 and extensions).

use std::fmt;

use super::types::{
    Code, Continuation, Esearch, Fetch, Incoming, ListItem, MailboxStatus, Namespace, Namespaces,
    Response, Search, SequenceSet, Status, StatusKind, Tagged, Value,
};
use super::{SHOWN_AROUND_ERROR, malformed};
use crate::clients::ClientError;

/// Deepest nesting of parenthesised lists accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 100;

/// ATOM-CHAR: printable ASCII but atom-specials.
fn is_atom_char(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && !b"(){%*\"\\]".contains(&byte)
}

/// ASTRING-CHAR: ATOM-CHAR or `]`.
fn is_astring_char(byte: u8) -> bool {
    is_atom_char(byte) || byte == b']'
}

/// Parses one complete response, CRLF included.
pub(super) fn parse_response(frame: &[u8]) -> Result<Incoming, ClientError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::imap::framer::Framer;
    use crate::clients::imap::test_support::{
        fetch, malformed_reason, parse, parse_all, set, untagged,
    };

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
}

//! What FETCH reports about a stored message: ENVELOPE, BODY/BODYSTRUCTURE and BODY[section]
//! (RFC 3501 sections 6.4.5 and 7.4.2).
//!
//! The MIME structure comes from our own scan of the raw octets, because section fetches must
//! return exact byte ranges of the original message; mail-parser decodes what needs decoding
//! (Content-Type parameters with RFC 2231 continuations). ENVELOPE fields are the raw header
//! text, unfolded: RFC 3501 leaves RFC 2047 encoded words for the client to decode.

use std::num::{NonZeroU32, NonZeroUsize};

use imap_codec::imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{IString, Literal, NString, Vec1},
    envelope::{Address, Envelope},
    fetch::{Part, Section},
};
use mail_parser::{HeaderValue, parsers::MessageStream};

/// Deeper nesting is treated as an opaque leaf, so hostile messages cannot exhaust the stack.
const MAX_DEPTH: usize = 50;

/// Dovecot's placeholder for an address without `@domain`; a NIL host would mean group syntax.
const MISSING_DOMAIN: &str = "MISSING_DOMAIN";

/// ENVELOPE of a message (RFC 3501 7.4.2) from its raw octets.
pub fn envelope(octets: &[u8]) -> Envelope<'static> {
    let body_start = header_end(octets, 0, octets.len());
    envelope_of(&header_fields(&octets[..body_start]))
}

/// BODYSTRUCTURE (extended = true, with MD5=NIL, disposition, language, location) or BODY
/// (extended = false).
pub fn body_structure(octets: &[u8], extended: bool) -> BodyStructure<'static> {
    let tree = MimePart::parse(octets);
    structure_of(&tree, octets, extended)
}

/// The bytes of BODY[section] (section None = whole message), before any `<partial>` is
/// applied. A nonexistent part gives empty bytes.
pub fn section(octets: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    let Some(section) = section else {
        return octets.to_vec();
    };
    let tree = MimePart::parse(octets);
    match section {
        Section::Part(part) => {
            resolve(&tree, part).map_or_else(Vec::new, |p| p.body(octets).to_vec())
        }
        Section::Mime(part) => {
            resolve(&tree, part).map_or_else(Vec::new, |p| p.header(octets).to_vec())
        }
        Section::Header(part) => {
            message_at(&tree, part.as_ref()).map_or_else(Vec::new, |m| m.header(octets).to_vec())
        }
        Section::Text(part) => {
            message_at(&tree, part.as_ref()).map_or_else(Vec::new, |m| m.body(octets).to_vec())
        }
        Section::HeaderFields(part, names) => message_at(&tree, part.as_ref())
            .map_or_else(Vec::new, |m| {
                filter_header(m.header(octets), names.as_ref(), true)
            }),
        Section::HeaderFieldsNot(part, names) => message_at(&tree, part.as_ref())
            .map_or_else(Vec::new, |m| {
                filter_header(m.header(octets), names.as_ref(), false)
            }),
    }
}

/// Applies `<origin.length>` to bytes (an origin beyond the end gives empty bytes).
pub fn partial(bytes: Vec<u8>, partial: Option<(u32, NonZeroU32)>) -> Vec<u8> {
    let Some((origin, length)) = partial else {
        return bytes;
    };
    let start = usize::try_from(origin).unwrap_or(usize::MAX);
    if start >= bytes.len() {
        return Vec::new();
    }
    let length = NonZeroUsize::try_from(length).map_or(usize::MAX, NonZeroUsize::get);
    let end = start.saturating_add(length).min(bytes.len());
    bytes[start..end].to_vec()
}

/// One MIME entity: byte offsets into the original message and what its header declares.
#[derive(Debug)]
pub(crate) struct MimePart {
    /// Offset of the first header byte.
    start: usize,
    /// Offset of the first body byte (just after the blank line, if there is one).
    body_start: usize,
    /// Offset just past the body.
    end: usize,
    /// The declared (or defaulted) Content-Type.
    pub(crate) content: ContentType,
    /// Sub-parts or encapsulated message.
    pub(crate) kind: PartKind,
}

/// What a MIME entity holds besides its own body bytes.
#[derive(Debug)]
pub(crate) enum PartKind {
    /// A part with no MIME structure inside (or one past the nesting cap).
    Leaf,
    /// Never empty: a multipart without delimiters gets its whole body as one headerless part.
    Multi(Vec<MimePart>),
    /// message/rfc822: the encapsulated message spans this part's body.
    Message(Box<MimePart>),
}

/// A parsed Content-Type: lower-case type and subtype, parameters as sent (RFC 2231 decoded).
#[derive(Debug, Clone)]
pub(crate) struct ContentType {
    /// Lower-case media type, e.g. `text`.
    pub(crate) r#type: String,
    /// Lower-case subtype, e.g. `plain`; empty when the header gives none.
    pub(crate) subtype: String,
    /// (name, value) pairs in header order.
    pub(crate) params: Vec<(String, String)>,
}

impl ContentType {
    fn text_plain() -> Self {
        ContentType {
            r#type: "text".into(),
            subtype: "plain".into(),
            params: Vec::new(),
        }
    }

    fn message_rfc822() -> Self {
        ContentType {
            r#type: "message".into(),
            subtype: "rfc822".into(),
            params: Vec::new(),
        }
    }

    /// The value of parameter `name` (case-insensitive).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl MimePart {
    /// Parses a whole message.
    pub(crate) fn parse(octets: &[u8]) -> MimePart {
        MimePart::parse_range(octets, 0, octets.len(), 0, ContentType::text_plain())
    }

    fn parse_range(
        octets: &[u8],
        start: usize,
        end: usize,
        depth: usize,
        default: ContentType,
    ) -> MimePart {
        let body_start = header_end(octets, start, end);
        let fields = header_fields(&octets[start..body_start]);
        let content = field(&fields, "content-type")
            .and_then(|f| parse_content_type(f.value))
            .unwrap_or(default);
        let kind = if depth >= MAX_DEPTH {
            PartKind::Leaf
        } else if content.r#type == "multipart" {
            let child_default = if content.subtype == "digest" {
                ContentType::message_rfc822
            } else {
                ContentType::text_plain
            };
            let ranges = content
                .param("boundary")
                .map(|b| split_multipart(octets, body_start, end, b.as_bytes()))
                .unwrap_or_default();
            let children: Vec<MimePart> = ranges
                .into_iter()
                .map(|(s, e)| MimePart::parse_range(octets, s, e, depth + 1, child_default()))
                .collect();
            if children.is_empty() {
                PartKind::Multi(vec![MimePart {
                    start: body_start,
                    body_start,
                    end,
                    content: ContentType::text_plain(),
                    kind: PartKind::Leaf,
                }])
            } else {
                PartKind::Multi(children)
            }
        } else if content.r#type == "message" && content.subtype == "rfc822" {
            PartKind::Message(Box::new(MimePart::parse_range(
                octets,
                body_start,
                end,
                depth + 1,
                ContentType::text_plain(),
            )))
        } else {
            PartKind::Leaf
        };
        MimePart {
            start,
            body_start,
            end,
            content,
            kind,
        }
    }

    /// The header including its terminating blank line.
    pub(crate) fn header<'o>(&self, octets: &'o [u8]) -> &'o [u8] {
        octets.get(self.start..self.body_start).unwrap_or_default()
    }

    pub(crate) fn body<'o>(&self, octets: &'o [u8]) -> &'o [u8] {
        octets.get(self.body_start..self.end).unwrap_or_default()
    }
}

/// Offset of the first body byte of the entity in `start..end`: just past the first empty line,
/// or `end` when the entity is all header.
fn header_end(octets: &[u8], start: usize, end: usize) -> usize {
    let mut pos = start;
    while pos < end {
        let line_end = octets[pos..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| pos + i + 1);
        let line = &octets[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        pos = line_end;
    }
    end
}

/// Body ranges of a multipart's parts. The line break before a delimiter belongs to the
/// delimiter (RFC 2046 5.1.1); a missing close delimiter ends the last part at `end`.
fn split_multipart(
    octets: &[u8],
    start: usize,
    end: usize,
    boundary: &[u8],
) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let mut pos = start;
    while pos < end {
        let line_end = octets[pos..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| pos + i + 1);
        let line = &octets[pos..line_end];
        if let Some(close) = delimiter(line, boundary) {
            if let Some(part_start) = open {
                let mut part_end = pos;
                if part_end >= 1 && octets[part_end - 1] == b'\n' {
                    part_end -= 1;
                    if part_end >= 1 && octets[part_end - 1] == b'\r' {
                        part_end -= 1;
                    }
                }
                parts.push((part_start, part_end.max(part_start)));
            }
            if close {
                return parts;
            }
            open = Some(line_end);
        }
        pos = line_end;
    }
    if let Some(part_start) = open {
        parts.push((part_start, end));
    }
    parts
}

/// `Some(is_close)` when `line` is a delimiter line for `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    if rest.starts_with(b"--") {
        return Some(true);
    }
    rest.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .then_some(false)
}

/// One header field.
#[derive(Debug)]
pub(crate) struct Field<'a> {
    /// The field name as sent, surrounding white space trimmed.
    pub(crate) name: &'a [u8],
    /// The value after the colon, folding included, final line break excluded.
    pub(crate) value: &'a [u8],
    /// The whole field as sent, final line break included when there is one.
    raw: &'a [u8],
}

/// The fields of a header block; lines that are neither fields nor continuations are skipped.
pub(crate) fn header_fields(header: &[u8]) -> Vec<Field<'_>> {
    // (field start, value start, field end) of each field.
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let line_end = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(last) = spans.last_mut() {
                last.2 = line_end;
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':')
            && !trim_wsp(&line[..colon]).is_empty()
        {
            spans.push((pos, pos + colon + 1, line_end));
        }
        pos = line_end;
    }
    spans
        .into_iter()
        .map(|(start, value, end)| Field {
            name: trim_wsp(&header[start..value - 1]),
            value: trim_line_break(&header[value..end]),
            raw: &header[start..end],
        })
        .collect()
}

fn trim_line_break(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn trim_wsp(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The first field called `name` (case-insensitive).
pub(crate) fn field<'f, 'a>(fields: &'f [Field<'a>], name: &str) -> Option<&'f Field<'a>> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
}

/// A field value with folding removed and surrounding white space trimmed.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    trim_wsp(&unfolded).to_vec()
}

/// Content-Type (or Content-Disposition, which has the same shape) decoded by mail-parser.
fn parse_content_type(value: &[u8]) -> Option<ContentType> {
    let mut input = unfold(value);
    input.extend_from_slice(b"\r\n");
    match MessageStream::new(&input).parse_content_type() {
        HeaderValue::ContentType(ct) => {
            let r#type = ct.c_type.to_ascii_lowercase();
            if r#type.is_empty() {
                return None;
            }
            Some(ContentType {
                r#type,
                subtype: ct
                    .c_subtype
                    .map(|s| s.to_ascii_lowercase())
                    .unwrap_or_default(),
                params: ct
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| (a.name.into_owned(), a.value.into_owned()))
                    .collect(),
            })
        }
        _ => None,
    }
}

/// The part a section's part number names (RFC 3501 6.4.5).
fn resolve<'t>(root: &'t MimePart, part: &Part) -> Option<&'t MimePart> {
    let mut numbers = part.0.as_ref().iter();
    let mut current = step_into_message(root, *numbers.next()?)?;
    for &n in numbers {
        current = match &current.kind {
            PartKind::Multi(children) => nth(children, n)?,
            PartKind::Message(inner) => step_into_message(inner, n)?,
            PartKind::Leaf => return None,
        };
    }
    Some(current)
}

/// Part `n` of a message: a child of its multipart body, or the message itself as part 1.
fn step_into_message(message: &MimePart, n: NonZeroU32) -> Option<&MimePart> {
    match &message.kind {
        PartKind::Multi(children) => nth(children, n),
        _ => (n.get() == 1).then_some(message),
    }
}

fn nth(children: &[MimePart], n: NonZeroU32) -> Option<&MimePart> {
    children.get(usize::try_from(n.get() - 1).ok()?)
}

/// The message whose HEADER/TEXT a section names: the top-level one, or the message
/// encapsulated in a message/rfc822 part.
fn message_at<'t>(root: &'t MimePart, part: Option<&Part>) -> Option<&'t MimePart> {
    match part {
        None => Some(root),
        Some(part) => match &resolve(root, part)?.kind {
            PartKind::Message(inner) => Some(inner),
            _ => None,
        },
    }
}

/// HEADER.FIELDS (`keep` = true) or HEADER.FIELDS.NOT, with the blank line always appended.
fn filter_header(header: &[u8], names: &[impl AsRef<[u8]>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in header_fields(header) {
        let listed = names
            .iter()
            .any(|n| n.as_ref().eq_ignore_ascii_case(f.name));
        if listed == keep {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Number of lines in a body, counting an unterminated last line.
fn line_count(body: &[u8]) -> u32 {
    let mut lines = body.iter().filter(|&&b| b == b'\n').count();
    if body.last().is_some_and(|&b| b != b'\n') {
        lines += 1;
    }
    u32::try_from(lines).unwrap_or(u32::MAX)
}

/// An IString of arbitrary bytes: quoted when possible, a literal otherwise; NULs, which no
/// IMAP string can carry, are dropped.
fn istring(bytes: impl Into<Vec<u8>>) -> IString<'static> {
    let mut bytes = bytes.into();
    bytes.retain(|&b| b != 0);
    IString::try_from(bytes).unwrap_or_else(|_| IString::Literal(Literal::unvalidated(Vec::new())))
}

fn nstring(bytes: impl Into<Vec<u8>>) -> NString<'static> {
    NString(Some(istring(bytes)))
}

/// A raw header value for ENVELOPE or BODYSTRUCTURE: unfolded, NIL when the field is absent.
fn raw_value(fields: &[Field<'_>], name: &str) -> NString<'static> {
    field(fields, name).map_or(NString(None), |f| nstring(unfold(f.value)))
}

fn envelope_of(fields: &[Field<'_>]) -> Envelope<'static> {
    let addresses = |name: &str| {
        field(fields, name)
            .map(|f| parse_address_list(&unfold(f.value)))
            .unwrap_or_default()
    };
    let from = addresses("from");
    let mut sender = addresses("sender");
    if sender.is_empty() {
        sender.clone_from(&from);
    }
    let mut reply_to = addresses("reply-to");
    if reply_to.is_empty() {
        reply_to.clone_from(&from);
    }
    Envelope {
        date: raw_value(fields, "date"),
        subject: raw_value(fields, "subject"),
        from,
        sender,
        reply_to,
        to: addresses("to"),
        cc: addresses("cc"),
        bcc: addresses("bcc"),
        in_reply_to: raw_value(fields, "in-reply-to"),
        message_id: raw_value(fields, "message-id"),
    }
}

/// A lexical token of an RFC 5322 address header.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An atom, or a quoted string (unescaped) when `quoted`.
    Word {
        text: Vec<u8>,
        quoted: bool,
    },
    Special(u8),
    Comment(Vec<u8>),
    DomainLiteral(Vec<u8>),
}

fn tokenize(input: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let mut text = Vec::new();
                i += 1;
                while i < input.len() && input[i] != b'"' {
                    if input[i] == b'\\' && i + 1 < input.len() {
                        i += 1;
                    }
                    text.push(input[i]);
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Word { text, quoted: true });
            }
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while i < input.len() {
                    let b = input[i];
                    match b {
                        b'\\' if i + 1 < input.len() => {
                            i += 1;
                            text.push(input[i]);
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(b);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            text.push(b);
                        }
                        _ => text.push(b),
                    }
                    i += 1;
                }
                tokens.push(Token::Comment(text));
            }
            b'[' => {
                let close = input[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(input.len(), |p| i + p + 1);
                tokens.push(Token::DomainLiteral(input[i..close].to_vec()));
                i = close;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' | b')' | b']' | b'\\' => {
                tokens.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while i < input.len()
                    && !matches!(
                        input[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'"'
                            | b'('
                            | b')'
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'.'
                            | b'['
                            | b']'
                            | b'\\'
                    )
                {
                    i += 1;
                }
                tokens.push(Token::Word {
                    text: input[start..i].to_vec(),
                    quoted: false,
                });
            }
        }
    }
    tokens
}

/// An address list as ENVELOPE reports it: group syntax becomes a `(NIL NIL name NIL)` start
/// marker and a `(NIL NIL NIL NIL)` end marker (RFC 3501 7.4.2).
fn parse_address_list(value: &[u8]) -> Vec<Address<'static>> {
    let tokens = tokenize(value);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    while i < tokens.len() {
        // The display name, or the local part of a bare addr-spec.
        let phrase_start = i;
        while i < tokens.len()
            && matches!(
                tokens[i],
                Token::Word { .. } | Token::Special(b'.') | Token::Comment(_)
            )
        {
            i += 1;
        }
        let phrase = &tokens[phrase_start..i];
        match tokens.get(i) {
            Some(Token::Special(b':')) if !in_group => {
                out.push(Address {
                    name: NString(None),
                    adl: NString(None),
                    mailbox: nstring(render_phrase(phrase)),
                    host: NString(None),
                });
                in_group = true;
                i += 1;
            }
            Some(Token::Special(b'<')) => {
                i += 1;
                let (adl, mailbox, host, next) = parse_angle_addr(&tokens, i);
                i = next;
                let mut name = render_phrase(phrase);
                // A trailing comment names the mailbox when there is no display name.
                while let Some(Token::Comment(c)) = tokens.get(i) {
                    if name.is_empty() {
                        name = trim_wsp(c).to_vec();
                    }
                    i += 1;
                }
                out.push(Address {
                    name: if name.is_empty() {
                        NString(None)
                    } else {
                        nstring(name)
                    },
                    adl: adl.map_or(NString(None), nstring),
                    mailbox: nstring(mailbox),
                    host: nstring(host),
                });
            }
            Some(Token::Special(b'@')) => {
                i += 1;
                let (host, next) = parse_domain(&tokens, i);
                i = next;
                let mut name = comments(phrase);
                while let Some(Token::Comment(c)) = tokens.get(i) {
                    if name.is_empty() {
                        name = trim_wsp(c).to_vec();
                    }
                    i += 1;
                }
                out.push(Address {
                    name: if name.is_empty() {
                        NString(None)
                    } else {
                        nstring(name)
                    },
                    adl: NString(None),
                    mailbox: nstring(render_local_part(phrase)),
                    host: nstring(host),
                });
            }
            next => {
                let local = render_local_part(phrase);
                if !local.is_empty() {
                    out.push(Address {
                        name: NString(None),
                        adl: NString(None),
                        mailbox: nstring(local),
                        host: nstring(MISSING_DOMAIN),
                    });
                }
                match next {
                    Some(Token::Special(b';')) if in_group => {
                        out.push(group_end());
                        in_group = false;
                    }
                    None => break,
                    _ => {}
                }
                i += 1;
            }
        }
    }
    if in_group {
        out.push(group_end());
    }
    out
}

fn group_end() -> Address<'static> {
    Address {
        name: NString(None),
        adl: NString(None),
        mailbox: NString(None),
        host: NString(None),
    }
}

/// `[route ":"] local "@" domain ">"` after the `<`: (adl, mailbox, host, next index).
fn parse_angle_addr(tokens: &[Token], mut i: usize) -> (Option<Vec<u8>>, Vec<u8>, Vec<u8>, usize) {
    let mut adl = None;
    if matches!(tokens.get(i), Some(Token::Special(b'@'))) {
        let start = i;
        while i < tokens.len() && !matches!(tokens[i], Token::Special(b':' | b'>')) {
            i += 1;
        }
        let mut route = Vec::new();
        for t in &tokens[start..i] {
            match t {
                Token::Word { text, .. } | Token::DomainLiteral(text) => {
                    route.extend_from_slice(text);
                }
                Token::Special(c) => route.push(*c),
                Token::Comment(_) => {}
            }
        }
        adl = Some(route);
        if matches!(tokens.get(i), Some(Token::Special(b':'))) {
            i += 1;
        }
    }
    let local_start = i;
    while i < tokens.len() && !matches!(tokens[i], Token::Special(b'@' | b'>')) {
        i += 1;
    }
    let mailbox = render_local_part(&tokens[local_start..i]);
    let mut host = Vec::new();
    if matches!(tokens.get(i), Some(Token::Special(b'@'))) {
        let (h, next) = parse_domain(tokens, i + 1);
        host = h;
        i = next;
    } else if !mailbox.is_empty() {
        host = MISSING_DOMAIN.into();
    }
    while i < tokens.len() && !matches!(tokens[i], Token::Special(b'>')) {
        i += 1;
    }
    (adl, mailbox, host, i + 1)
}

/// A domain: words, dots and domain literals up to the next separator.
fn parse_domain(tokens: &[Token], mut i: usize) -> (Vec<u8>, usize) {
    let mut host = Vec::new();
    while let Some(t) = tokens.get(i) {
        match t {
            Token::Word { text, .. } | Token::DomainLiteral(text) => host.extend_from_slice(text),
            Token::Special(b'.') => host.push(b'.'),
            _ => break,
        }
        i += 1;
    }
    (host, i)
}

/// A display name: words separated by single spaces, quoted strings unquoted.
fn render_phrase(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word { text, .. } => {
                if !out.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(text);
            }
            Token::Special(c) => out.push(*c),
            _ => {}
        }
    }
    out
}

/// A local part as sent: quoted strings keep their quotes so the address stays valid.
fn render_local_part(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word { text, quoted: true } => {
                out.push(b'"');
                for &b in text {
                    if matches!(b, b'"' | b'\\') {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            Token::Word { text, .. } => out.extend_from_slice(text),
            Token::Special(c) => out.push(*c),
            _ => {}
        }
    }
    out
}

/// The text of the comments among `tokens` (the old `addr (Name)` form).
fn comments(tokens: &[Token]) -> Vec<u8> {
    tokens
        .iter()
        .find_map(|t| match t {
            Token::Comment(c) => Some(trim_wsp(c).to_vec()),
            _ => None,
        })
        .unwrap_or_default()
}

fn structure_of(part: &MimePart, octets: &[u8], extended: bool) -> BodyStructure<'static> {
    let fields = header_fields(part.header(octets));
    let disposition_etc = || {
        let disposition = field(&fields, "content-disposition")
            .and_then(|f| parse_content_type(f.value))
            .map(|d| {
                let subtype = if d.subtype.is_empty() {
                    String::new()
                } else {
                    format!("/{}", d.subtype)
                };
                (
                    istring(format!("{}{subtype}", d.r#type).to_ascii_uppercase()),
                    params(&d.params),
                )
            });
        let language = field(&fields, "content-language")
            .map(|f| {
                unfold(f.value)
                    .split(|&b| b == b',')
                    .map(trim_wsp)
                    .filter(|l| !l.is_empty())
                    .map(istring)
                    .collect()
            })
            .unwrap_or_default();
        Some(Disposition {
            disposition,
            tail: Some(Language {
                language,
                tail: Some(Location {
                    location: raw_value(&fields, "content-location"),
                    extensions: Vec::new(),
                }),
            }),
        })
    };
    let content = &part.content;
    if let PartKind::Multi(children) = &part.kind {
        let bodies: Vec<BodyStructure<'static>> = children
            .iter()
            .map(|c| structure_of(c, octets, extended))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(content.subtype.to_ascii_uppercase()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: params(&content.params),
                    tail: disposition_etc(),
                }),
            };
        }
    }
    let body = part.body(octets);
    let mut parameter_list = params(&content.params);
    if content.r#type == "text" && content.param("charset").is_none() {
        parameter_list.push((istring("CHARSET"), istring("US-ASCII")));
    }
    let encoding = field(&fields, "content-transfer-encoding")
        .map(|f| unfold(f.value).to_ascii_uppercase())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| b"7BIT".to_vec());
    let basic = BasicFields {
        parameter_list,
        id: raw_value(&fields, "content-id"),
        description: raw_value(&fields, "content-description"),
        content_transfer_encoding: istring(encoding),
        size: u32::try_from(body.len()).unwrap_or(u32::MAX),
    };
    let specific = match &part.kind {
        PartKind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope_of(&header_fields(inner.header(octets)))),
            body_structure: Box::new(structure_of(inner, octets, extended)),
            number_of_lines: line_count(body),
        },
        // Past the nesting cap the encapsulated message is not parsed, but the grammar still
        // wants an envelope and a body after MESSAGE/RFC822: report an empty message.
        PartKind::Leaf if content.r#type == "message" && content.subtype == "rfc822" => {
            let empty = MimePart {
                start: part.end,
                body_start: part.end,
                end: part.end,
                content: ContentType::text_plain(),
                kind: PartKind::Leaf,
            };
            SpecificFields::Message {
                envelope: Box::new(envelope_of(&[])),
                body_structure: Box::new(structure_of(&empty, octets, extended)),
                number_of_lines: line_count(body),
            }
        }
        _ if content.r#type == "text" => SpecificFields::Text {
            subtype: istring(content.subtype.to_ascii_uppercase()),
            number_of_lines: line_count(body),
        },
        _ => SpecificFields::Basic {
            r#type: istring(content.r#type.to_ascii_uppercase()),
            subtype: istring(content.subtype.to_ascii_uppercase()),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString(None),
            tail: disposition_etc(),
        }),
    }
}

/// Body parameters: upper-case attribute names, values as sent.
fn params(params: &[(String, String)]) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .iter()
        .map(|(n, v)| (istring(n.to_ascii_uppercase()), istring(v.as_bytes())))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use imap_codec::{
        CommandCodec, ResponseCodec,
        decode::Decoder,
        encode::Encoder,
        imap_types::{
            command::CommandBody,
            fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName},
            response::{Data, Response},
        },
    };

    use super::*;

    /// Test messages are written with LF and stored with CRLF, as the store holds them.
    pub(crate) fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    pub(crate) const MIXED: &str = "\
From: =?UTF-8?Q?J=C3=B6rg_Beispiel?= <joerg@example.org>
To: Alice <alice@example.com>, bob@example.net
Cc: Team: carol@example.com, \"Dave D.\" <dave@example.com>;
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=
Date: Tue, 05 Mar 2024 10:15:00 +0100
Message-ID: <1234@example.org>
In-Reply-To: <abcd@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"outer\"

This is a multi-part message in MIME format.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe, Welt!
Zweite Zeile.
--inner
Content-Type: text/html; charset=utf-8

<p>Gr&uuml;&szlig;e</p>
--inner--
--outer
Content-Type: application/pdf; name=\"report.pdf\"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename=\"report.pdf\"
Content-Description: Quarterly report
Content-ID: <pdf1@example.org>
Content-Language: en, de

JVBERi0xLjQKJWZha2UgcGRmCg==
--outer--
epilogue
";

    pub(crate) const FORWARD: &str = "\
From: Carol <carol@example.com>
To: alice@example.com
Subject: Fwd: lunch
Date: Wed, 6 Mar 2024 23:30:00 -0800
Content-Type: multipart/mixed; boundary=b1

--b1
Content-Type: text/plain

See below.
--b1
Content-Type: message/rfc822

From: Bob <bob@example.net>
To: carol@example.com
Subject: lunch
Message-ID: <lunch@example.net>
Content-Type: text/plain; charset=us-ascii

Noon?
Bob
--b1--
";

    pub(crate) const SINGLE: &str = "\
From: alice@example.com
Subject: plain
Date: 1 Jan 2024 00:00:00 +0000

Hello
World
";

    fn encode(item: MessageDataItem<'_>) -> String {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        });
        let bytes = ResponseCodec::default().encode(&response).dump();
        let text = String::from_utf8(bytes).unwrap();
        text.strip_prefix("* 1 FETCH (")
            .and_then(|t| t.strip_suffix(")\r\n"))
            .unwrap()
            .to_string()
    }

    fn bodystructure(message: &[u8]) -> String {
        encode(MessageDataItem::BodyStructure(body_structure(
            message, true,
        )))
    }

    fn body(message: &[u8]) -> String {
        encode(MessageDataItem::Body(body_structure(message, false)))
    }

    fn env(message: &[u8]) -> String {
        encode(MessageDataItem::Envelope(envelope(message)))
    }

    /// The section of `BODY[<spec>]`, parsed by imap-codec as a client would send it.
    fn sec(spec: &str) -> Option<Section<'static>> {
        // Leaked so the parsed section can borrow it for 'static; tests only.
        let command: &'static str = format!("A FETCH 1 BODY[{spec}]\r\n").leak();
        let (_, command) = CommandCodec::default().decode(command.as_bytes()).unwrap();
        match command.body {
            CommandBody::Fetch {
                macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(names),
                ..
            } => match names.into_iter().next() {
                Some(MessageDataItemName::BodyExt { section, .. }) => section,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn fetch(message: &[u8], spec: &str) -> String {
        String::from_utf8(section(message, sec(spec).as_ref())).unwrap()
    }

    #[test]
    fn envelope_keeps_encoded_words_and_reports_groups() {
        assert_eq!(
            env(&crlf(MIXED)),
            "ENVELOPE (\"Tue, 05 Mar 2024 10:15:00 +0100\" \
             \"=?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\" \
             ((\"=?UTF-8?Q?J=C3=B6rg_Beispiel?=\" NIL \"joerg\" \"example.org\")) \
             ((\"=?UTF-8?Q?J=C3=B6rg_Beispiel?=\" NIL \"joerg\" \"example.org\")) \
             ((\"=?UTF-8?Q?J=C3=B6rg_Beispiel?=\" NIL \"joerg\" \"example.org\")) \
             ((\"Alice\" NIL \"alice\" \"example.com\")(NIL NIL \"bob\" \"example.net\")) \
             ((NIL NIL \"Team\" NIL)(NIL NIL \"carol\" \"example.com\")\
             (\"Dave D.\" NIL \"dave\" \"example.com\")(NIL NIL NIL NIL)) \
             NIL \"<abcd@example.com>\" \"<1234@example.org>\")"
        );
    }

    #[test]
    fn envelope_of_minimal_and_empty_messages() {
        assert_eq!(
            env(&crlf(SINGLE)),
            "ENVELOPE (\"1 Jan 2024 00:00:00 +0000\" \"plain\" \
             ((NIL NIL \"alice\" \"example.com\")) ((NIL NIL \"alice\" \"example.com\")) \
             ((NIL NIL \"alice\" \"example.com\")) NIL NIL NIL NIL NIL)"
        );
        assert_eq!(
            env(b""),
            "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn envelope_addresses_in_their_many_forms() {
        let m = crlf(
            "From: \"Smith, John\" <@relay.example,@hub.example:john@example.com>\n\
             Sender: secretary@example.com (Mary Secretary)\n\
             Reply-To:\n\
             To: undisclosed-recipients:;\n\
             Cc: \"odd local\"@example.com, nobody, <>\n\
             Bcc: Folded\n  Name <folded@example.com>\n\n",
        );
        assert_eq!(
            env(&m),
            "ENVELOPE (NIL NIL \
             ((\"Smith, John\" \"@relay.example,@hub.example\" \"john\" \"example.com\")) \
             ((\"Mary Secretary\" NIL \"secretary\" \"example.com\")) \
             ((\"Smith, John\" \"@relay.example,@hub.example\" \"john\" \"example.com\")) \
             ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
             ((NIL NIL \"\\\"odd local\\\"\" \"example.com\")(NIL NIL \"nobody\" \"MISSING_DOMAIN\")\
             (NIL NIL \"\" \"\")) \
             ((\"Folded Name\" NIL \"folded\" \"example.com\")) NIL NIL)"
        );
    }

    #[test]
    fn envelope_with_eight_bit_subject_uses_a_literal() {
        let m = "Subject: Gr\u{fc}\u{df}e\r\n\r\n".as_bytes();
        assert_eq!(
            env(m),
            "ENVELOPE (NIL {7}\r\nGr\u{fc}\u{df}e NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn bodystructure_of_nested_multipart_with_attachment() {
        assert_eq!(
            bodystructure(&crlf(MIXED)),
            "BODYSTRUCTURE (((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \
             \"QUOTED-PRINTABLE\" 37 2 NIL NIL NIL NIL)\
             (\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 23 1 NIL NIL NIL NIL) \
             \"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)\
             (\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<pdf1@example.org>\" \
             \"Quarterly report\" \"BASE64\" 28 NIL (\"ATTACHMENT\" (\"FILENAME\" \"report.pdf\")) \
             (\"en\" \"de\") NIL) \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"
        );
        assert_eq!(
            body(&crlf(MIXED)),
            "BODY (((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 37 2)\
             (\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 23 1) \"ALTERNATIVE\")\
             (\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<pdf1@example.org>\" \
             \"Quarterly report\" \"BASE64\" 28) \"MIXED\")"
        );
    }

    #[test]
    fn bodystructure_of_message_rfc822() {
        assert_eq!(
            bodystructure(&crlf(FORWARD)),
            "BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 \
             NIL NIL NIL NIL)\
             (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 157 \
             (NIL \"lunch\" ((\"Bob\" NIL \"bob\" \"example.net\")) \
             ((\"Bob\" NIL \"bob\" \"example.net\")) ((\"Bob\" NIL \"bob\" \"example.net\")) \
             ((NIL NIL \"carol\" \"example.com\")) NIL NIL NIL \"<lunch@example.net>\") \
             (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 2 NIL NIL NIL NIL) \
             8 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)"
        );
    }

    #[test]
    fn bodystructure_of_single_part_message() {
        assert_eq!(
            bodystructure(&crlf(SINGLE)),
            "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2 \
             NIL NIL NIL NIL)"
        );
        assert_eq!(
            body(&crlf(SINGLE)),
            "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2)"
        );
    }

    #[test]
    fn bodystructure_decodes_rfc2231_parameters_and_location() {
        let m = crlf(
            "Content-Type: application/octet-stream;\n \
             name*0=\"long\"; name*1=\"name.bin\"\n\
             Content-Disposition: inline\n\
             Content-Location: http://example.com/x\n\n\
             abc",
        );
        assert_eq!(
            bodystructure(&m),
            "BODYSTRUCTURE (\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.bin\") NIL NIL \
             \"7BIT\" 3 NIL (\"INLINE\" NIL) NIL \"http://example.com/x\")"
        );
    }

    #[test]
    fn multipart_without_boundary_or_delimiters_has_one_text_part() {
        for m in [
            "Content-Type: multipart/mixed\n\nno boundary\n",
            "Content-Type: multipart/mixed; boundary=zz\n\nno delimiter\n",
        ] {
            let m = crlf(m);
            let s = body(&m);
            assert!(
                s.starts_with("BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")")
                    && s.ends_with(" \"MIXED\")"),
                "{s}"
            );
        }
    }

    #[test]
    fn boundaries_are_case_sensitive_and_digest_parts_default_to_messages() {
        let m = crlf(
            "Content-Type: multipart/digest; boundary=\"AbC\"\n\n--abc\n--AbC\n\n\
             Subject: inner\n\nhi\n--AbC--\n",
        );
        assert_eq!(
            body(&m),
            "BODY ((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 20 \
             (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 2 1) 3) \"DIGEST\")"
        );
        assert_eq!(
            fetch(&m, "TEXT"),
            "--abc\r\n--AbC\r\n\r\nSubject: inner\r\n\r\nhi\r\n--AbC--\r\n"
        );
        assert_eq!(fetch(&m, "1.1"), "hi");
    }

    #[test]
    fn unterminated_multipart_ends_at_the_message_end() {
        let m = crlf("Content-Type: multipart/mixed; boundary=x\n\n--x\n\nfirst\n--x\n\nsecond\n");
        assert_eq!(
            body(&m),
            "BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1)\
             (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 8 1) \"MIXED\")"
        );
        assert_eq!(fetch(&m, "2"), "second\r\n");
    }

    #[test]
    fn bare_lf_messages_parse_too() {
        let m = FORWARD.as_bytes();
        let s = body(m);
        assert!(
            s.contains("\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 150 "),
            "{s}"
        );
        assert_eq!(fetch(m, "2.TEXT"), "Noon?\nBob");
        assert_eq!(fetch(m, "1"), "See below.");
    }

    #[test]
    fn sections_of_a_multipart_message() {
        let m = crlf(MIXED);
        let all = String::from_utf8(m.clone()).unwrap();
        assert_eq!(fetch(&m, ""), all);
        let (header, text) = all.split_at(all.find("\r\n\r\n").unwrap() + 4);
        assert_eq!(fetch(&m, "HEADER"), header);
        assert_eq!(fetch(&m, "TEXT"), text);
        assert_eq!(
            fetch(&m, "HEADER.FIELDS (SUBJECT message-id X-None)"),
            "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?=\r\nMessage-ID: <1234@example.org>\r\n\r\n"
        );
        let not = fetch(
            &m,
            "HEADER.FIELDS.NOT (From To Cc Subject Date Message-ID In-Reply-To)",
        );
        assert_eq!(
            not,
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
        );
        assert_eq!(
            fetch(&m, "1"),
            "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Gr=C3=BC=C3=9Fe, Welt!\r\nZweite Zeile.\r\n--inner\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<p>Gr&uuml;&szlig;e</p>\r\n--inner--"
        );
        assert_eq!(fetch(&m, "1.1"), "Gr=C3=BC=C3=9Fe, Welt!\r\nZweite Zeile.");
        assert_eq!(
            fetch(&m, "1.1.MIME"),
            "Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(fetch(&m, "1.2"), "<p>Gr&uuml;&szlig;e</p>");
        assert_eq!(fetch(&m, "2"), "JVBERi0xLjQKJWZha2UgcGRmCg==");
        // Nonexistent parts, and HEADER/TEXT of parts that are not messages, are empty.
        for spec in ["3", "1.3", "2.1", "1.1.1", "2.HEADER", "2.TEXT", "9.MIME"] {
            assert_eq!(fetch(&m, spec), "", "{spec}");
        }
    }

    #[test]
    fn sections_of_an_encapsulated_message() {
        let m = crlf(FORWARD);
        let inner_header = "From: Bob <bob@example.net>\r\nTo: carol@example.com\r\nSubject: lunch\r\n\
             Message-ID: <lunch@example.net>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
        assert_eq!(fetch(&m, "2"), format!("{inner_header}Noon?\r\nBob"));
        assert_eq!(fetch(&m, "2.HEADER"), inner_header);
        assert_eq!(fetch(&m, "2.TEXT"), "Noon?\r\nBob");
        assert_eq!(fetch(&m, "2.MIME"), "Content-Type: message/rfc822\r\n\r\n");
        assert_eq!(
            fetch(&m, "2.HEADER.FIELDS (Subject)"),
            "Subject: lunch\r\n\r\n"
        );
        // The encapsulated message is not multipart, so its only part is its body.
        assert_eq!(fetch(&m, "2.1"), "Noon?\r\nBob");
        assert_eq!(fetch(&m, "2.2"), "");
    }

    #[test]
    fn sections_of_a_single_part_message() {
        let m = crlf(SINGLE);
        assert_eq!(fetch(&m, "1"), "Hello\r\nWorld\r\n");
        assert_eq!(fetch(&m, "TEXT"), "Hello\r\nWorld\r\n");
        assert_eq!(fetch(&m, "2"), "");
        assert_eq!(
            fetch(&m, "HEADER.FIELDS (From Subject)"),
            "From: alice@example.com\r\nSubject: plain\r\n\r\n"
        );
        // A folded field is returned whole.
        let folded = crlf("Subject: one\n two\nX: y\n\nbody");
        assert_eq!(
            fetch(&folded, "HEADER.FIELDS (SUBJECT)"),
            "Subject: one\r\n two\r\n\r\n"
        );
        // No blank line: the whole message is header, and the body is empty.
        let headless = b"Subject: cut";
        assert_eq!(fetch(headless, "HEADER"), "Subject: cut");
        assert_eq!(fetch(headless, "TEXT"), "");
        assert_eq!(
            fetch(headless, "HEADER.FIELDS (Subject)"),
            "Subject: cut\r\n\r\n"
        );
    }

    #[test]
    fn partial_ranges() {
        let bytes = b"0123456789".to_vec();
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!(partial(bytes.clone(), None), bytes);
        assert_eq!(partial(bytes.clone(), Some((2, n(3)))), b"234");
        assert_eq!(partial(bytes.clone(), Some((8, n(100)))), b"89");
        assert_eq!(partial(bytes.clone(), Some((10, n(1)))), b"");
        assert_eq!(partial(bytes, Some((u32::MAX, n(u32::MAX)))), b"");
    }

    #[test]
    fn deep_nesting_is_capped() {
        let depth = 5000;
        let mut m = String::new();
        for i in 0..depth {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        m.push_str("\nleaf\n");
        let m = crlf(&m);
        let _ = body_structure(&m, true);
        let _ = section(&m, sec("1.1.1.1.1").as_ref());
        let mut rfc822 = String::new();
        for _ in 0..depth {
            rfc822.push_str("Content-Type: message/rfc822\n\n");
        }
        let s = body(rfc822.as_bytes());
        assert_eq!(
            s.matches("\"MESSAGE\" \"RFC822\"").count(),
            MAX_DEPTH + 1,
            "{s}"
        );
        assert!(
            s.contains("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\""),
            "{s}"
        );
        let _ = envelope(rfc822.as_bytes());
    }

    #[test]
    fn malformed_messages_do_not_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"\n\n\n",
            b"Subject",
            b"Subject:",
            b": no name\r\n\r\n",
            b"From: <\r\nTo: \"unterminated\r\nCc: (comment (nested\r\n\r\n",
            b"From: @@@,,,;;;::<<>>[[]]\\\r\n\r\n",
            b"From: a:b:c;d;e\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n----\r\n------\r\n",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x\r\n--x",
            b"Content-Type: message/rfc822\r\n\r\n",
            b"Content-Type: ;;;\r\nContent-Disposition: ;\r\nContent-Language: ,,\r\n\r\n",
            b"Content-Type: text/plain; charset*=''%ZZ\r\n\r\n\xff\xfe\x00\x80",
            b"\xff\xfe\xfd: \xc3\x28\r\n\x00\x00\r\n\r\n\x00",
            b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n",
        ];
        let specs = [
            "",
            "HEADER",
            "TEXT",
            "1",
            "1.MIME",
            "1.1",
            "1.HEADER",
            "2.TEXT",
            "1.HEADER.FIELDS (X)",
        ];
        for case in cases {
            let _ = envelope(case);
            let _ = encode(MessageDataItem::BodyStructure(body_structure(case, true)));
            let _ = encode(MessageDataItem::Body(body_structure(case, false)));
            for spec in specs {
                let _ = section(case, sec(spec).as_ref());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::sample::select(b"\r\n:;<>@\",-=?( )".to_vec()),
            ],
            0..400,
        )) {
            let mut m = b"Content-Type: multipart/mixed; boundary=b\r\nFrom: ".to_vec();
            m.extend_from_slice(&bytes);
            let _ = envelope(&m);
            let _ = encode(MessageDataItem::BodyStructure(body_structure(&m, true)));
            let _ = section(&m, sec("1.1.HEADER.FIELDS (From)").as_ref());
            let _ = encode(MessageDataItem::Envelope(envelope(&bytes)));
        }
    }
}

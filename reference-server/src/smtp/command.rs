//! SMTP command lines (RFC 5321 section 4.1) parsed from bytes, without I/O.
//!
//! Each failure maps to the reply a strict server gives: an unknown verb is 500, bad
//! arguments 501, a path over the RFC 5321 4.5.3.1 limits 501 5.1.3, an unknown
//! MAIL/RCPT parameter 555.

use std::fmt;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]`; an empty path is the null sender `<>`.
    Mail {
        /// The reverse path, `None` for `<>`.
        from: Option<Address>,
        /// ESMTP parameters in order.
        params: Vec<Param>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient; `<postmaster>` comes as local part `postmaster` and no domain.
        to: Address,
        /// ESMTP parameters in order.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets in the chunk that follows the command line.
        size: u64,
        /// Whether this is the final chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `HELP [string]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The initial response, still base64.
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, upper-case, for logs and fault points.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part as written (quotes removed, escapes resolved).
    pub local: String,
    /// The domain, or `None` for the bare `<postmaster>` recipient.
    pub domain: Option<String>,
}

impl Address {
    /// Whether any part needs SMTPUTF8 (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_deref().is_none_or(str::is_ascii)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dot_atom = !self.local.is_empty()
            && self
                .local
                .split('.')
                .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
        if dot_atom {
            f.write_str(&self.local)?;
        } else {
            write!(
                f,
                "\"{}\"",
                self.local.replace('\\', "\\\\").replace('"', "\\\"")
            )?;
        }
        match &self.domain {
            Some(domain) => write!(f, "@{domain}"),
            None => Ok(()),
        }
    }
}

/// An ESMTP parameter `KEYWORD[=value]`, keyword upper-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The keyword, upper-case.
    pub keyword: String,
    /// The value, if `=` was given.
    pub value: Option<String>,
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a command this server knows (500 5.5.1).
    UnknownCommand(String),
    /// Known verb, bad arguments (501 5.5.2 or 5.5.4).
    Syntax(String),
    /// A mailbox that is not `local@domain` (501 5.1.3, or 501 5.1.7 for MAIL).
    BadAddress(String),
    /// Longer than RFC 5321 4.5.3.1 allows (501 5.1.3 "path too long").
    PathTooLong(String),
}

/// Longest local part (RFC 5321 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets (RFC 5321 4.5.3.1.3).
const MAX_PATH: usize = 256;
/// Most characters of the client's text an error quotes: enough to show what was wrong, and
/// the reply line stays within 512 octets (RFC 5321 4.5.3.1.5) however long the command was.
const MAX_QUOTED: usize = 64;

/// Parses one command line without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line)
        .map_err(|_| ParseError::Syntax("command line is not valid UTF-8".into()))?;
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ParseError::Syntax(
            "control characters are not allowed in a command line".into(),
        ));
    }
    let (verb, rest) = match line.find(' ') {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, ""),
    };
    let no_args = |command: Command| {
        if rest.trim().is_empty() {
            Ok(command)
        } else {
            Err(ParseError::Syntax(format!(
                "{} takes no arguments",
                verb.to_ascii_uppercase()
            )))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => parse_domain_arg(rest).map(Command::Ehlo),
        "HELO" => parse_domain_arg(rest).map(Command::Helo),
        "MAIL" => {
            let (path, params) = split_path(rest, "FROM:")?;
            let from = if path == "<>" {
                None
            } else {
                Some(parse_path(path, false)?)
            };
            Ok(Command::Mail {
                from,
                params: parse_params(params)?,
            })
        }
        "RCPT" => {
            let (path, params) = split_path(rest, "TO:")?;
            Ok(Command::Rcpt {
                to: parse_path(path, true)?,
                params: parse_params(params)?,
            })
        }
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" if rest.trim().is_empty() => {
            Err(ParseError::Syntax("VRFY needs an argument".into()))
        }
        "VRFY" => Ok(Command::Vrfy(rest.trim().to_owned())),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .ok_or_else(|| ParseError::Syntax("AUTH needs a mechanism".into()))?;
            let initial = words.next().map(str::to_owned);
            if words.next().is_some() {
                return Err(ParseError::Syntax(
                    "AUTH takes a mechanism and at most one initial response".into(),
                ));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        "" => Err(ParseError::UnknownCommand(String::new())),
        _ => Err(ParseError::UnknownCommand(
            verb.chars().take(32).collect::<String>(),
        )),
    }
}

fn parse_domain_arg(rest: &str) -> Result<String, ParseError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(ParseError::Syntax(
            "a domain or address literal is required".into(),
        ));
    }
    if arg.contains([' ', '\t']) {
        return Err(ParseError::Syntax(
            "expected exactly one domain or address literal".into(),
        ));
    }
    if !(is_domain(arg) || is_address_literal(arg)) {
        return Err(ParseError::Syntax(format!(
            "`{}` is not a domain or address literal",
            quoted(arg)
        )));
    }
    // The EHLO reply greets the client by this name.
    if arg.len() > MAX_DOMAIN {
        return Err(ParseError::Syntax(format!(
            "the domain is {} octets, the limit is {MAX_DOMAIN}",
            arg.len()
        )));
    }
    Ok(arg.to_owned())
}

/// The client's `text` as an error quotes it: cut after [`MAX_QUOTED`] characters.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Splits `FROM:<path> params` into the path (with brackets) and the parameter text.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), ParseError> {
    let head = rest.get(..keyword.len()).unwrap_or("");
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(ParseError::Syntax(format!("expected `{keyword}<address>`")));
    }
    // One space after the colon is a common client slip that Postfix and Exim tolerate.
    let after = rest[keyword.len()..]
        .strip_prefix(' ')
        .unwrap_or(&rest[keyword.len()..]);
    if !after.starts_with('<') {
        return Err(ParseError::Syntax(format!(
            "expected `{keyword}<address>`: the address must be in angle brackets"
        )));
    }
    let close = find_path_end(after)
        .ok_or_else(|| ParseError::Syntax("unterminated `<` in address".into()))?;
    let (path, params) = after.split_at(close + 1);
    if !(params.is_empty() || params.starts_with(' ')) {
        return Err(ParseError::Syntax(
            "expected a space after the address".into(),
        ));
    }
    Ok((path, params))
}

/// Index of the `>` closing the path, skipping quoted strings.
fn find_path_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// Parses `<[@route,@route:]local@domain>`.
fn parse_path(path: &str, allow_postmaster: bool) -> Result<Address, ParseError> {
    if path.len() > MAX_PATH {
        return Err(ParseError::PathTooLong(format!(
            "path is {} octets, the limit is {MAX_PATH}",
            path.len()
        )));
    }
    let inner = &path[1..path.len() - 1];
    // A source route is obsolete and must be ignored (RFC 5321 4.1.1.3 and appendix C).
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => inner
            .split_once(':')
            .map(|(_, mailbox)| mailbox)
            .ok_or_else(|| {
                ParseError::BadAddress(format!("malformed source route in <{inner}>"))
            })?,
        None => inner,
    };
    if allow_postmaster && mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(Address {
            local: "postmaster".into(),
            domain: None,
        });
    }
    let at = mailbox_at(mailbox)
        .ok_or_else(|| ParseError::BadAddress(format!("<{mailbox}> is not local@domain")))?;
    let (local_text, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    let local = parse_local_part(local_text)
        .ok_or_else(|| ParseError::BadAddress(format!("bad local part in <{mailbox}>")))?;
    if local_text.len() > MAX_LOCAL {
        return Err(ParseError::PathTooLong(format!(
            "local part is {} octets, the limit is {MAX_LOCAL}",
            local_text.len()
        )));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(ParseError::PathTooLong(format!(
            "domain is {} octets, the limit is {MAX_DOMAIN}",
            domain.len()
        )));
    }
    if !(is_domain(domain) || is_address_literal(domain)) {
        return Err(ParseError::BadAddress(format!("bad domain in <{mailbox}>")));
    }
    Ok(Address {
        local,
        domain: Some(domain.to_owned()),
    })
}

/// The `@` separating local part and domain: the last one outside quotes.
fn mailbox_at(mailbox: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    let mut at = None;
    for (index, c) in mailbox.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => at = Some(index),
            _ => {}
        }
    }
    at
}

/// Dot-string or quoted-string (RFC 5321 4.1.2, with RFC 6531 UTF-8 allowed).
fn parse_local_part(text: &str) -> Option<String> {
    if let Some(quoted) = text.strip_prefix('"') {
        let body = quoted.strip_suffix('"')?;
        let mut local = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => local.push(chars.next().filter(|c| (' '..='~').contains(c))?),
                '"' => return None,
                c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => local.push(c),
                _ => return None,
            }
        }
        return Some(local);
    }
    let ok = !text.is_empty()
        && text
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
    ok.then(|| text.to_owned())
}

/// RFC 5322 atext, widened to non-ASCII by RFC 6532.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// A domain name: dot-separated labels of letters, digits and inner hyphens (UTF-8 labels are
/// allowed for SMTPUTF8).
pub fn is_domain(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        })
}

fn is_address_literal(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

fn parse_params(text: &str) -> Result<Vec<Param>, ParseError> {
    text.split(' ')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let (keyword, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v.to_owned())),
                None => (word, None),
            };
            let valid_keyword = !keyword.is_empty()
                && keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
                && keyword
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !valid_keyword || value.as_deref().is_some_and(str::is_empty) {
                return Err(ParseError::Syntax(format!(
                    "malformed parameter `{}`",
                    quoted(word)
                )));
            }
            Ok(Param {
                keyword: keyword.to_ascii_uppercase(),
                value,
            })
        })
        .collect()
}

fn parse_bdat(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.len() <= 19 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| ParseError::Syntax("BDAT needs a chunk size in octets".into()))?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(word) => {
            return Err(ParseError::Syntax(format!(
                "unexpected `{}` after BDAT size",
                quoted(word)
            )));
        }
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax(
            "BDAT takes a size and optional LAST".into(),
        ));
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(local: &str, domain: &str) -> Address {
        Address {
            local: local.into(),
            domain: Some(domain.into()),
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"ehlo client.test"),
            Ok(Command::Ehlo("client.test".into()))
        );
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(
            parse(b"HELO [127.0.0.1]"),
            Ok(Command::Helo("[127.0.0.1]".into()))
        );
        assert_eq!(
            parse(b"EHLO [IPv6:::1]"),
            Ok(Command::Ehlo("[IPv6:::1]".into()))
        );
    }

    #[test]
    fn mail_and_rcpt_paths() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME"),
            Ok(Command::Mail {
                from: Some(addr("a", "b.test")),
                params: vec![
                    Param {
                        keyword: "SIZE".into(),
                        value: Some("10".into())
                    },
                    Param {
                        keyword: "BODY".into(),
                        value: Some("8BITMIME".into())
                    },
                ],
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<>"),
            Ok(Command::Mail {
                from: None,
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"mail from: <a@b.test>"),
            Ok(Command::Mail {
                from: Some(addr("a", "b.test")),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.test,@r2.test:x@y.test>"),
            Ok(Command::Rcpt {
                to: addr("x", "y.test"),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                to: Address {
                    local: "postmaster".into(),
                    domain: None
                },
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<\"a b@c\"@d.test>"),
            Ok(Command::Rcpt {
                to: addr("a b@c", "d.test"),
                params: vec![]
            })
        );
        assert_eq!(
            parse("RCPT TO:<jörg@bücher.test>".as_bytes()),
            Ok(Command::Rcpt {
                to: addr("jörg", "bücher.test"),
                params: vec![]
            })
        );
    }

    #[test]
    fn each_failure_has_its_class() {
        assert!(matches!(parse(b"FROB"), Err(ParseError::UnknownCommand(_))));
        assert!(matches!(parse(b""), Err(ParseError::UnknownCommand(_))));
        assert!(matches!(
            parse(b"MAIL TO:<a@b.test>"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:a@b.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a@b.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a..b@c.test>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a@-c.test>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.test> =x"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse(b"EHLO"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"EHLO a b"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"DATA now"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"BDAT x"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"NOOP \x01"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"NOOP \xff"), Err(ParseError::Syntax(_))));
        let long_local = format!("RCPT TO:<{}@b.test>", "x".repeat(65));
        assert!(matches!(
            parse(long_local.as_bytes()),
            Err(ParseError::PathTooLong(_))
        ));
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            parse(b"BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse(b"bdat 512"),
            Ok(Command::Bdat {
                size: 512,
                last: false
            })
        );
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
        assert!(parse(b"AUTH").is_err());
    }

    #[test]
    fn errors_quote_little_enough_for_a_reply_line() {
        // Found by the smtp_session fuzz target's reply check: `EHLO` with 500 octets of junk
        // came back quoted whole in a 563-octet reply line; RFC 5321 4.5.3.1.5 allows 512.
        for line in [
            format!("EHLO {}", "!".repeat(500)),
            format!("MAIL FROM:<a@b.test> ={}", "x".repeat(480)),
            format!("BDAT 1 {}", "y".repeat(500)),
        ] {
            let Err(ParseError::Syntax(text)) = parse(line.as_bytes()) else {
                panic!("{line} was accepted");
            };
            assert!(text.len() < 120, "{text}");
        }
        // Nor may a valid-looking name over 255 octets be greeted in a 518-octet EHLO reply.
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(
            parse(format!("EHLO {long}").as_bytes()),
            Err(ParseError::Syntax(
                "the domain is 304 octets, the limit is 255".into()
            ))
        );
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert_eq!(
            parse(format!("HELO {longest}").as_bytes()),
            Ok(Command::Helo(longest))
        );
    }

    #[test]
    fn display_quotes_when_needed() {
        assert_eq!(addr("a.b", "c.test").to_string(), "a.b@c.test");
        assert_eq!(addr("a b", "c.test").to_string(), "\"a b\"@c.test");
    }

    proptest! {
        #[test]
        fn never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&line);
        }

        #[test]
        fn never_panics_on_command_shapes(
            verb in "(MAIL FROM:|RCPT TO:|EHLO |BDAT |AUTH )",
            rest in "[<>@\"\\\\ .:,=a-zA-Z0-9\\[\\]ü-]{0,80}",
        ) {
            let _ = parse(format!("{verb}{rest}").as_bytes());
        }

        #[test]
        fn dot_atom_addresses_round_trip(
            local in "[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-z0-9-]{1,8}){0,2}",
            domain in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,8}){0,3}",
        ) {
            let line = format!("RCPT TO:<{local}@{domain}>");
            let parsed = parse(line.as_bytes());
            prop_assert_eq!(parsed, Ok(Command::Rcpt { to: addr(&local, &domain), params: vec![] }));
        }
    }
}

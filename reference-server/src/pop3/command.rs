//! POP3 command lines (RFC 1939 section 3, RFC 2449, RFC 2595, RFC 5034) parsed from bytes.
//!
//! Parsing has two steps so the session can answer in the order clients expect: the verb
//! first (an unknown verb, or a known one in the wrong state, is reported whatever its
//! arguments), then the arguments.
//!
//! RFC 1939 separates arguments with a single space. This parser also takes runs of spaces
//! and trailing spaces, which cannot be misread, except in `PASS`: there the argument is
//! everything after the first space, because RFC 1939 lets a password contain spaces.

/// A command keyword, recognised case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `CAPA` (RFC 2449).
    Capa,
    /// `USER`.
    User,
    /// `PASS`.
    Pass,
    /// `APOP`.
    Apop,
    /// `AUTH` (RFC 5034).
    Auth,
    /// `STLS` (RFC 2595).
    Stls,
    /// `STAT`.
    Stat,
    /// `LIST`.
    List,
    /// `UIDL`.
    Uidl,
    /// `RETR`.
    Retr,
    /// `TOP`.
    Top,
    /// `DELE`.
    Dele,
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
}

impl Verb {
    const ALL: [Verb; 15] = [
        Verb::Capa,
        Verb::User,
        Verb::Pass,
        Verb::Apop,
        Verb::Auth,
        Verb::Stls,
        Verb::Stat,
        Verb::List,
        Verb::Uidl,
        Verb::Retr,
        Verb::Top,
        Verb::Dele,
        Verb::Noop,
        Verb::Rset,
        Verb::Quit,
    ];

    /// The keyword, upper-case.
    pub(super) fn name(self) -> &'static str {
        match self {
            Verb::Capa => "CAPA",
            Verb::User => "USER",
            Verb::Pass => "PASS",
            Verb::Apop => "APOP",
            Verb::Auth => "AUTH",
            Verb::Stls => "STLS",
            Verb::Stat => "STAT",
            Verb::List => "LIST",
            Verb::Uidl => "UIDL",
            Verb::Retr => "RETR",
            Verb::Top => "TOP",
            Verb::Dele => "DELE",
            Verb::Noop => "NOOP",
            Verb::Rset => "RSET",
            Verb::Quit => "QUIT",
        }
    }

    /// The syntax quoted in `-ERR Syntax: ...` replies.
    pub(super) fn usage(self) -> &'static str {
        match self {
            Verb::Capa => "CAPA",
            Verb::User => "USER name",
            Verb::Pass => "PASS password",
            Verb::Apop => "APOP name digest (32 hex digits)",
            Verb::Auth => "AUTH [mechanism [initial-response]]",
            Verb::Stls => "STLS",
            Verb::Stat => "STAT",
            Verb::List => "LIST [msg]",
            Verb::Uidl => "UIDL [msg]",
            Verb::Retr => "RETR msg",
            Verb::Top => "TOP msg lines",
            Verb::Dele => "DELE msg",
            Verb::Noop => "NOOP",
            Verb::Rset => "RSET",
            Verb::Quit => "QUIT",
        }
    }

    /// Whether the verb is valid in the AUTHORIZATION state (RFC 1939 section 4).
    pub(super) fn in_authorization(self) -> bool {
        matches!(
            self,
            Verb::Capa
                | Verb::User
                | Verb::Pass
                | Verb::Apop
                | Verb::Auth
                | Verb::Stls
                | Verb::Quit
        )
    }

    /// Whether the verb is valid in the TRANSACTION state (RFC 1939 section 5).
    pub(super) fn in_transaction(self) -> bool {
        !self.sends_credentials() && self != Verb::Stls
    }

    /// Whether the verb carries credentials (or a login name), which needs TLS on an STLS
    /// port (RFC 2595 section 4).
    pub(super) fn sends_credentials(self) -> bool {
        matches!(self, Verb::User | Verb::Pass | Verb::Apop | Verb::Auth)
    }
}

/// A command with its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPA`.
    Capa,
    /// `USER name`.
    User(String),
    /// `PASS password`; the password may contain spaces.
    Pass(String),
    /// `APOP name digest`.
    Apop {
        /// The mailbox name.
        name: String,
        /// Lower-case hex.
        digest: String,
    },
    /// `AUTH [mechanism [initial-response]]`.
    Auth {
        /// Upper-cased; `None` asks for the list of mechanisms.
        mechanism: Option<String>,
        /// Still base64.
        initial: Option<String>,
    },
    /// `STLS`.
    Stls,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`; `None` lists every message.
    List(Option<u32>),
    /// `UIDL [msg]`; `None` lists every message.
    Uidl(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `TOP msg lines`.
    Top {
        /// The message number.
        message: u32,
        /// Body lines to send after the header.
        lines: usize,
    },
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
}

/// Splits a line (without its line end) into the verb and the bytes after the first space;
/// `None` when the verb is unknown.
pub fn split(line: &[u8]) -> Option<(Verb, &[u8])> {
    let (word, args) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &line[line.len()..]),
    };
    let verb = Verb::ALL
        .into_iter()
        .find(|verb| verb.name().as_bytes().eq_ignore_ascii_case(word))?;
    Some((verb, args))
}

/// Checks the arguments of `verb`; on error, the usage to quote.
pub fn parse(verb: Verb, args: &[u8]) -> Result<Command, &'static str> {
    let tokens: Vec<&[u8]> = args
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect();
    let syntax = verb.usage();
    let none = |command: Command| {
        if tokens.is_empty() {
            Ok(command)
        } else {
            Err(syntax)
        }
    };
    let one_number = || match tokens.as_slice() {
        [n] => number(n).ok_or(syntax),
        _ => Err(syntax),
    };
    let optional_number = || match tokens.as_slice() {
        [] => Ok(None),
        [n] => number(n).map(Some).ok_or(syntax),
        _ => Err(syntax),
    };
    match verb {
        Verb::Capa => none(Command::Capa),
        Verb::Stls => none(Command::Stls),
        Verb::Stat => none(Command::Stat),
        Verb::Noop => none(Command::Noop),
        Verb::Rset => none(Command::Rset),
        Verb::Quit => none(Command::Quit),
        Verb::User => match tokens.as_slice() {
            [name] => text(name).map(Command::User).ok_or(syntax),
            _ => Err(syntax),
        },
        Verb::Pass if args.is_empty() => Err(syntax),
        Verb::Pass => text(args).map(Command::Pass).ok_or(syntax),
        Verb::Apop => match tokens.as_slice() {
            [name, digest] if digest.len() == 32 && digest.iter().all(u8::is_ascii_hexdigit) => {
                Ok(Command::Apop {
                    name: text(name).ok_or(syntax)?,
                    // RFC 1939 asks for lower case; upper case cannot mean anything else.
                    digest: String::from_utf8_lossy(digest).to_ascii_lowercase(),
                })
            }
            _ => Err(syntax),
        },
        Verb::Auth => {
            let upper = |t: &[u8]| String::from_utf8_lossy(t).to_ascii_uppercase();
            let lossy = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
            match tokens.as_slice() {
                [] => Ok(Command::Auth {
                    mechanism: None,
                    initial: None,
                }),
                [mechanism] => Ok(Command::Auth {
                    mechanism: Some(upper(mechanism)),
                    initial: None,
                }),
                [mechanism, initial] => Ok(Command::Auth {
                    mechanism: Some(upper(mechanism)),
                    initial: Some(lossy(initial)),
                }),
                _ => Err(syntax),
            }
        }
        Verb::List => optional_number().map(Command::List),
        Verb::Uidl => optional_number().map(Command::Uidl),
        Verb::Retr => one_number().map(Command::Retr),
        Verb::Dele => one_number().map(Command::Dele),
        Verb::Top => match tokens.as_slice() {
            [message, lines] => Ok(Command::Top {
                message: number(message).ok_or(syntax)?,
                lines: number(lines).ok_or(syntax)? as usize,
            }),
            _ => Err(syntax),
        },
    }
}

/// A decimal number; values past `u32::MAX` saturate, which no maildrop reaches, so they get
/// "no such message" rather than a syntax error.
fn number(token: &[u8]) -> Option<u32> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(token.iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn command(line: &str) -> Result<Command, &'static str> {
        let (verb, args) = split(line.as_bytes()).expect("known verb");
        parse(verb, args)
    }

    #[test]
    fn verbs_are_case_insensitive_and_exact() {
        assert_eq!(split(b"stat").map(|(v, _)| v), Some(Verb::Stat));
        assert_eq!(split(b"LiSt 1"), Some((Verb::List, &b"1"[..])));
        assert_eq!(split(b"STATS"), None);
        assert_eq!(split(b"LAST"), None, "LAST was dropped from RFC 1939");
        assert_eq!(split(b""), None);
        assert_eq!(split(b" STAT"), None);
    }

    #[test]
    fn arguments() {
        assert_eq!(command("LIST"), Ok(Command::List(None)));
        assert_eq!(command("LIST  2 "), Ok(Command::List(Some(2))));
        assert_eq!(command("LIST x"), Err("LIST [msg]"));
        assert_eq!(command("LIST 1 2"), Err("LIST [msg]"));
        assert_eq!(command("RETR -1"), Err("RETR msg"));
        assert_eq!(command("RETR"), Err("RETR msg"));
        assert_eq!(
            command("RETR 99999999999999999999"),
            Ok(Command::Retr(u32::MAX))
        );
        assert_eq!(
            command("TOP 1 0"),
            Ok(Command::Top {
                message: 1,
                lines: 0
            })
        );
        assert_eq!(command("TOP 1"), Err("TOP msg lines"));
        assert_eq!(command("STAT now"), Err("STAT"));
        assert_eq!(command("QUIT "), Ok(Command::Quit));
    }

    #[test]
    fn pass_keeps_spaces() {
        assert_eq!(
            command("PASS  two words "),
            Ok(Command::Pass(" two words ".into()))
        );
        assert_eq!(command("PASS"), Err("PASS password"));
        assert_eq!(command("PASS "), Err("PASS password"));
        assert_eq!(command("USER a b"), Err("USER name"));
        assert_eq!(command("USER alice"), Ok(Command::User("alice".into())));
    }

    #[test]
    fn apop_and_auth() {
        assert_eq!(
            command("APOP mrose C4C9334BAC560ECC979E58001B3E22FB"),
            Ok(Command::Apop {
                name: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            })
        );
        assert!(command("APOP mrose c4c9334bac560ecc979e58001b3e22f").is_err());
        assert!(command("APOP mrose g4c9334bac560ecc979e58001b3e22fb").is_err());
        assert_eq!(
            command("AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into())
            })
        );
        assert_eq!(
            command("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert!(command("AUTH PLAIN a b").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some((verb, args)) = split(&line) {
                let _ = parse(verb, args);
            }
        }

        #[test]
        fn never_panics_on_command_shapes(
            verb in "(USER|PASS|APOP|AUTH|LIST|UIDL|RETR|TOP|DELE|STAT)",
            rest in "[ 0-9a-fA-Z=+/-]{0,60}",
        ) {
            let line = format!("{verb} {rest}");
            let (verb, args) = split(line.as_bytes()).expect("known verb");
            let _ = parse(verb, args);
        }
    }
}

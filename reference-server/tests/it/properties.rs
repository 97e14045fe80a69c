//! Properties of the parsers and sessions over generated input, on top of the unit tests'
//! (`never_panics` in the command parsers, the DATA receiver's printable round trip, the POP3
//! session's transcript check). The cargo-fuzz targets in `fuzz/` check the same kinds of
//! things for much longer; these keep them in the ordinary test run.

use std::sync::Arc;

use imap_codec::imap_types::command::Command as ImapCommand;
use proptest::prelude::*;
use reference_server::imap::framing::{Framed, Framer, Rejection};
use reference_server::net::{Connection, dot_stuff};
use reference_server::smtp::command::{self as smtp, Address, Command, Param};
use reference_server::smtp::data::{DataReceiver, Progress, Violation};
use reference_server::smtp::session::{Event, Session};
use reference_server::{Config, Role, TlsMode, auth, pop3};

// ---------------------------------------------------------------------------------------------
// SMTP command lines

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}",
        Just("[192.0.2.1]".to_owned()),
        Just("[IPv6:2001:db8::1]".to_owned()),
        Just("bücher.test".to_owned()),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    let local = prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9_-]{1,8}){0,2}",
        // Quoted: spaces, quotes, backslashes and `@` survive the quoting.
        "[ -~]{0,12}",
    ];
    (local, domain()).prop_map(|(local, domain)| Address {
        local,
        domain: Some(domain),
    })
}

fn params() -> impl Strategy<Value = Vec<Param>> {
    let param = (
        "[A-Z0-9][A-Z0-9-]{0,8}",
        proptest::option::of("[!-<>-~][!-~]{0,10}"),
    )
        .prop_map(|(keyword, value)| Param { keyword, value });
    proptest::collection::vec(param, 0..4)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        domain().prop_map(Command::Ehlo),
        domain().prop_map(Command::Helo),
        (proptest::option::of(address()), params())
            .prop_map(|(from, params)| Command::Mail { from, params }),
        (address(), params()).prop_map(|(to, params)| Command::Rcpt { to, params }),
        // The parser reads at most 19 digits: no chunk is 10 EB.
        (0..10u64.pow(19), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        (
            "[A-Z0-9-]{1,12}",
            proptest::option::of("[A-Za-z0-9+/]{1,20}={0,2}")
        )
            .prop_map(|(mechanism, initial)| Command::Auth { mechanism, initial }),
        "[!-~]([ -~]{0,20}[!-~])?".prop_map(Command::Vrfy),
        proptest::sample::select(vec![
            Command::Data,
            Command::Rset,
            Command::Noop,
            Command::Quit,
            Command::Help,
            Command::StartTls,
        ]),
    ]
}

/// The command as a client writes it, the verb in the given case.
fn smtp_line(command: &Command, lower: bool) -> String {
    let params = |params: &[Param]| -> String {
        params
            .iter()
            .map(|p| match &p.value {
                Some(value) => format!(" {}={value}", p.keyword),
                None => format!(" {}", p.keyword),
            })
            .collect()
    };
    let line = match command {
        Command::Ehlo(domain) => format!("EHLO {domain}"),
        Command::Helo(domain) => format!("HELO {domain}"),
        Command::Mail { from, params: p } => {
            let path = from.as_ref().map(ToString::to_string).unwrap_or_default();
            format!("MAIL FROM:<{path}>{}", params(p))
        }
        Command::Rcpt { to, params: p } => format!("RCPT TO:<{to}>{}", params(p)),
        Command::Bdat { size, last } => format!("BDAT {size}{}", if *last { " LAST" } else { "" }),
        Command::Auth { mechanism, initial } => match initial {
            Some(initial) => format!("AUTH {mechanism} {initial}"),
            None => format!("AUTH {mechanism}"),
        },
        Command::Vrfy(what) => format!("VRFY {what}"),
        other => other.verb().to_owned(),
    };
    if !lower {
        return line;
    }
    match line.split_once(' ') {
        Some((verb, rest)) => format!("{} {rest}", verb.to_ascii_lowercase()),
        None => line.to_ascii_lowercase(),
    }
}

// ---------------------------------------------------------------------------------------------
// DATA

/// Every line of `message` (split at LF, one CR before it dropped) ended with CRLF: what
/// `dot_stuff` followed by unstuffing makes of it.
fn crlf_lines(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Bytes rich in what DATA cares about: CR, LF and dots at line starts.
fn data_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => proptest::sample::select(b"\r\n.".to_vec()),
        1 => Just(b'x'),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..max)
}

/// Cuts `bytes` into reads whose sizes cycle through `sizes`.
fn cut<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (piece, next) = rest.split_at(size);
        pieces.push(piece);
        rest = next;
    }
    pieces
}

/// Feeds reads until the end of data; the octets consumed then.
fn receive(receiver: &mut DataReceiver, pieces: &[&[u8]]) -> Option<usize> {
    let mut consumed = 0;
    for piece in pieces {
        match receiver.feed(piece) {
            Progress::NeedMore => consumed += piece.len(),
            Progress::Done(n) => return Some(consumed + n),
        }
    }
    None
}

fn has_bare_line_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------------
// IMAP framing

/// What the framer made of the input, comparable across runs.
#[derive(Debug, PartialEq)]
enum Outcome {
    Command(Box<ImapCommand<'static>>),
    Continue,
    Reject(Option<String>, Rejection),
}

fn drain(framer: &mut Framer, outcomes: &mut Vec<Outcome>) {
    loop {
        outcomes.push(match framer.next_command() {
            Framed::NeedMore => return,
            Framed::Command(command) => Outcome::Command(command),
            Framed::Continue => Outcome::Continue,
            Framed::Reject { tag, reason } => Outcome::Reject(tag, reason),
        });
    }
}

/// Commands, and whether each is one the framer hands on (within limits of 1024 and 100).
const IMAP_COMMANDS: &[(&str, bool)] = &[
    ("a1 NOOP\r\n", true),
    ("a2 LOGIN alice \"pass word\"\r\n", true),
    ("a3 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", true),
    ("a4 APPEND INBOX (\\Seen) {11+}\r\nhello\r\nyou!\r\n", true),
    (
        "a5 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
        true,
    ),
    (
        "a6 SEARCH OR UNSEEN SUBJECT {3}\r\nabc SINCE 1-Jan-2020\r\n",
        true,
    ),
    ("a7 SELECT \"INBOX\" (CONDSTORE)\r\n", true),
    ("b1 FROBNICATE\r\n", false),
    ("\r\n", false),
    // Refused before the client sends the literal: the next command follows at once.
    ("b2 APPEND INBOX {5000}\r\n", false),
    // Sent regardless (RFC 7888) and consumed with the refused command.
    (
        concat!(
            "b3 APPEND INBOX {101+}\r\nb4 LOGOUT\r\n",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "\r\n"
        ),
        false,
    ),
];

// ---------------------------------------------------------------------------------------------
// Sessions

const SMTP_VOCABULARY: &[&str] = &[
    "EHLO client.test\r\n",
    "HELO client.test\r\n",
    "MAIL FROM:<a@client.test>\r\n",
    "MAIL FROM:<>\r\n",
    "RCPT TO:<alice@example.test>\r\n",
    "RCPT TO:<someone@elsewhere.test>\r\n",
    "DATA\r\n",
    "Subject: x\r\n\r\nbody\r\n.\r\n",
    "a\n.\nb\r\n",
    "..\r\n",
    "BDAT 5\r\nhello",
    "BDAT 0 LAST\r\n",
    "BDAT x\r\n",
    "STARTTLS\r\n",
    "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n",
    "AUTH LOGIN\r\n",
    "YWxpY2VAZXhhbXBsZS50ZXN0\r\n",
    "*\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "VRFY bob\r\n",
    "HELP\r\n",
    "QUIT\r\n",
    "\r\n",
];

/// Session input: protocol words, raw bytes, the odd over-long line, and lines just within
/// the limit whose long argument an error reply might quote.
fn session_chunk(vocabulary: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => proptest::sample::select(vocabulary).prop_map(|s| s.as_bytes().to_vec()),
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => Just(vec![b'x'; 600]),
        1 => "(EHLO|MAIL FROM:<a@b.test>|RCPT TO:<a@b.test>|BDAT 1|a LOGIN) [!-~]{400,490}\r\n"
            .prop_map(String::into_bytes),
    ]
}

/// SMTP replies (RFC 5321 4.2): CRLF lines of a 2xx-5xx code then a space, or a hyphen on all
/// lines of a multi-line reply but the last, one code throughout, at most 512 octets
/// (4.5.3.1.5), an enhanced code (RFC 3463) of the reply's class when there is one.
fn check_smtp_replies(out: &[u8]) -> Result<(), String> {
    let text = String::from_utf8(out.to_vec()).map_err(|_| "replies are not UTF-8")?;
    if !text.is_empty() && !text.ends_with("\r\n") {
        return Err("output does not end with CRLF".into());
    }
    let mut open: Option<&str> = None;
    for line in text.split_terminator("\r\n") {
        let code = line.get(..3).unwrap_or_default();
        let well_formed = line.len() + 2 <= 512
            && !line.contains(['\r', '\n'])
            && code.len() == 3
            && ('2'..='5').contains(&code.chars().next().unwrap_or('0'))
            && code.bytes().all(|b| b.is_ascii_digit())
            && matches!(line.as_bytes().get(3), Some(b' ' | b'-'));
        if !well_formed || open.is_some_and(|open| open != code) {
            return Err(format!("bad reply line {line:?}"));
        }
        open = (line.as_bytes()[3] == b'-').then_some(code);
        let first = line[4..].split(' ').next().unwrap_or_default();
        let parts: Vec<&str> = first.split('.').collect();
        if parts.len() == 3
            && parts.iter().all(|p| p.parse::<u16>().is_ok())
            && first[..1] != code[..1]
        {
            return Err(format!("enhanced code of another class: {line:?}"));
        }
    }
    match open {
        Some(_) => Err("multi-line reply without its last line".into()),
        None => Ok(()),
    }
}

/// IMAP server output (RFC 3501 section 7): CRLF lines that are untagged (`* `), continuation
/// requests (`+ `) or tagged `OK`/`NO`/`BAD`; a line ending in `{n}` is followed by `n` octets of
/// literal data.
fn check_imap_output(out: &[u8]) -> Result<(), String> {
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("output does not end with CRLF")?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 2..];
        if line.contains(['\r', '\n']) {
            return Err(format!("bare line end in {line:?}"));
        }
        let mut words = line.splitn(3, ' ');
        let (first, second) = (words.next().unwrap_or_default(), words.next());
        let tagged = !first.is_empty()
            && first
                .bytes()
                .all(|b| b > b' ' && b < 0x7f && b != b'+' && b != b'*')
            && matches!(second, Some("OK" | "NO" | "BAD"));
        if !(line.starts_with("* ") || line.starts_with("+ ") || line == "+" || tagged) {
            return Err(format!("not a response line: {line:?}"));
        }
        // A literal in an untagged response: skip its octets; the response goes on after them.
        let mut line = line;
        while let Some(size) = line
            .strip_suffix('}')
            .and_then(|l| l.rsplit_once('{'))
            .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            rest = rest.get(size..).ok_or("literal runs past the output")?;
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("no CRLF after a literal")?;
            line = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = &rest[end + 2..];
        }
    }
    Ok(())
}

/// Runs an SMTP session over the chunks as the server's driver would, with no socket: TLS
/// pretended, passwords from the config, every sender domain fine, every delivery stored.
/// Returns the output and the delivered messages.
fn smtp_session(role: Role, tls_mode: TlsMode, chunks: &[Vec<u8>]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let config = Arc::new(Config::defaults());
    let conn = Connection {
        role,
        tls_mode,
        peer: "192.0.2.7:40000".parse().unwrap(),
        pop_before_smtp: None,
        client_dns: None,
    };
    let mut session = Session::new(config.clone(), conn);
    let mut output = Vec::new();
    let mut delivered = Vec::new();
    let mut event = session.greet();
    let mut chunks = chunks.iter();
    loop {
        event = match event {
            Event::NeedInput => {
                output.extend(session.take_output());
                let Some(chunk) = chunks.next() else { break };
                session.push_input(chunk);
                session.step()
            }
            Event::Close => break,
            Event::Delay(_) => session.step(),
            Event::StartTls => {
                session.tls_started();
                session.step()
            }
            Event::Authenticate { login, password } => {
                session.auth_result(auth::authenticate(&config, &login, password.expose()));
                session.step()
            }
            Event::CheckSenderDomain(domain) => {
                session.sender_verdict(reference_server::relay::dns::Verdict::Pass(domain));
                session.step()
            }
            Event::Deliver(envelope) => {
                session.delivery_result(&envelope.id, Ok(()));
                delivered.push(envelope.message);
                session.step()
            }
        };
    }
    output.extend(session.take_output());
    (output, delivered)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A command written as a client writes it parses to itself, whatever the verb's case:
    /// catches quoting, escaping, parameter and case-folding slips in the parser.
    #[test]
    fn smtp_commands_parse_back(command in command(), lower in any::<bool>()) {
        let line = smtp_line(&command, lower);
        prop_assert_eq!(smtp::parse(line.as_bytes()), Ok(command), "{}", line);
    }

    /// dot_stuff, then the receiver in any cut of the wire: the end is found at the very end
    /// and the message comes back with CRLF line ends, or is refused for the bare CR that
    /// dot_stuff leaves alone or for a NUL octet.
    #[test]
    fn dot_stuffed_data_round_trips_in_any_cut(
        message in data_bytes(300),
        sizes in proptest::collection::vec(1usize..40, 1..6),
    ) {
        let mut wire = Vec::new();
        dot_stuff(&mut wire, &message);
        let mut receiver = DataReceiver::new(1 << 20, 1 << 20);
        prop_assert_eq!(receive(&mut receiver, &cut(&wire, &sizes)), Some(wire.len()));
        let expected = crlf_lines(&message);
        match receiver.finish() {
            Ok(body) => prop_assert_eq!(body, expected),
            Err(Violation::BareCr(_)) => prop_assert!(has_bare_line_end(&expected)),
            Err(Violation::Nul(_)) => prop_assert!(expected.contains(&0)),
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }

    /// In any cut, the receiver ends exactly after the first CRLF.CRLF (or at a leading
    /// ".CRLF"), and what it accepts has no bare CR or LF: the SMTP smuggling defence.
    #[test]
    fn data_ends_only_at_crlf_dot_crlf(
        bytes in data_bytes(200),
        sizes in proptest::collection::vec(1usize..20, 1..6),
    ) {
        let mut receiver = DataReceiver::new(1 << 20, 1000);
        let end = receive(&mut receiver, &cut(&bytes, &sizes));
        let expected = if bytes.starts_with(b".\r\n") {
            Some(3)
        } else {
            bytes.windows(5).position(|w| w == b"\r\n.\r\n").map(|at| at + 5)
        };
        prop_assert_eq!(end, expected);
        if let Ok(body) = receiver.finish() {
            prop_assert!(!has_bare_line_end(&body), "{:?}", body);
        }
    }

    /// POP3 commands written canonically parse to themselves, the verb in any case.
    #[test]
    fn pop3_commands_parse_back(
        verb in proptest::sample::select(vec!["user", "USER", "Pass", "APOP", "auth", "LIST", "uidl", "RETR", "TOP", "DELE"]),
        word in "[!-~]{1,20}",
        digest in "[0-9a-f]{32}",
        n in 0u32..100_000,
        m in 0u32..1000,
    ) {
        use pop3::command::{Command as Pop3, parse, split};
        let (line, expected) = match verb.to_ascii_uppercase().as_str() {
            "USER" => (format!("{verb} {word}"), Pop3::User(word.clone())),
            "PASS" => (format!("{verb} {word} {word}"), Pop3::Pass(format!("{word} {word}"))),
            "APOP" => (format!("{verb} {word} {digest}"), Pop3::Apop { name: word.clone(), digest }),
            "AUTH" => (format!("{verb} {word} {word}"), Pop3::Auth {
                mechanism: Some(word.to_ascii_uppercase()),
                initial: Some(word.clone()),
            }),
            "LIST" => (format!("{verb} {n}"), Pop3::List(Some(n))),
            // Trailing spaces cannot be misread, so they are taken.
            "UIDL" => (format!("{verb} "), Pop3::Uidl(None)),
            "RETR" => (format!("{verb} {n}"), Pop3::Retr(n)),
            "TOP" => (format!("{verb} {n} {m}"), Pop3::Top { message: n, lines: m as usize }),
            _ => (format!("{verb}  {n} "), Pop3::Dele(n)),
        };
        let (verb, args) = split(line.as_bytes()).expect("a known verb");
        prop_assert_eq!(parse(verb, args), Ok(expected), "{}", line);
    }

    /// A stream of commands gives the same outcomes in one read or cut anywhere, and every
    /// command within the limits comes out whole: the framer keeps no state across reads
    /// that one read would not have.
    #[test]
    fn imap_framing_does_not_depend_on_reads(
        picks in proptest::collection::vec(proptest::sample::select(IMAP_COMMANDS), 1..8),
        sizes in proptest::collection::vec(1usize..30, 1..6),
    ) {
        let stream: Vec<u8> = picks.iter().map(|p| p.0).collect::<String>().into_bytes();
        let mut whole = Framer::new(1024, 100);
        whole.push(&stream);
        let mut expected = Vec::new();
        drain(&mut whole, &mut expected);
        let mut framer = Framer::new(1024, 100);
        let mut outcomes = Vec::new();
        for piece in cut(&stream, &sizes) {
            framer.push(piece);
            drain(&mut framer, &mut outcomes);
        }
        prop_assert_eq!(&outcomes, &expected);
        let commands = outcomes.iter().filter(|o| matches!(o, Outcome::Command(_))).count();
        prop_assert_eq!(commands, picks.iter().filter(|p| p.1).count());
    }

    /// A command over the size limit is refused as too long, never parsed, and the command
    /// after it still comes out: the limit bounds what one command can make the server hold.
    #[test]
    fn imap_commands_over_the_limit_are_refused(
        extra in 0usize..3000,
        sizes in proptest::collection::vec(1usize..700, 1..4),
    ) {
        let mut stream = b"a LOGIN alice ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 1024 + extra));
        stream.extend_from_slice(b"\r\nb NOOP\r\n");
        let mut framer = Framer::new(1024, 100);
        let mut outcomes = Vec::new();
        for piece in cut(&stream, &sizes) {
            framer.push(piece);
            drain(&mut framer, &mut outcomes);
        }
        prop_assert_eq!(outcomes.len(), 2, "{:?}", outcomes);
        prop_assert!(matches!(outcomes[0], Outcome::Reject(_, Rejection::TooLong)), "{:?}", outcomes);
        prop_assert!(matches!(&outcomes[1], Outcome::Command(c) if c.tag.as_ref() == "b"));
    }
}

const IMAP_VOCABULARY: &[&str] = &[
    "a CAPABILITY\r\n",
    "a NOOP\r\n",
    "a STARTTLS\r\n",
    "a LOGIN alice@example.test alice-secret\r\n",
    "a LOGIN {18}\r\nalice@example.test {5}\r\nwrong\r\n",
    "a AUTHENTICATE PLAIN\r\n",
    "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n",
    "*\r\n",
    "b SELECT INBOX\r\n",
    "b EXAMINE INBOX\r\n",
    "b CREATE Work\r\n",
    "b LIST \"\" *\r\n",
    "b STATUS INBOX (MESSAGES UIDNEXT)\r\n",
    "c APPEND INBOX (\\Seen) {23+}\r\nSubject: hi\r\n\r\n.body\r\n\r\n",
    "c APPEND Work {12}\r\nSubject: w\r\n\r\n",
    "d FETCH 1:* (FLAGS UID RFC822.SIZE BODY[])\r\n",
    "d UID FETCH 1:* (ENVELOPE BODYSTRUCTURE)\r\n",
    "d SEARCH ALL\r\n",
    "d STORE 1 +FLAGS (\\Deleted)\r\n",
    "d COPY 1:* Work\r\n",
    "d MOVE 1 Work\r\n",
    "d EXPUNGE\r\n",
    "d IDLE\r\n",
    "DONE\r\n",
    "e ENABLE CONDSTORE\r\n",
    "e NAMESPACE\r\n",
    "e RENAME Work Play\r\n",
    "e DELETE Play\r\n",
    "e CLOSE\r\n",
    "e UNSELECT\r\n",
    "f BOGUS\r\n",
    "f APPEND INBOX {99999999}\r\n",
    "z LOGOUT\r\n",
];

/// Runs an IMAP session over the chunks as the server's driver does, with no socket: TLS
/// pretended, passwords from the config, a fresh store in a temporary directory, literals up to
/// 4096 octets.
fn imap_session(tls_mode: TlsMode, chunks: &[Vec<u8>]) -> Vec<u8> {
    use reference_server::imap::session::{
        Event as ImapEvent, Session as ImapSession, SystemClock,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = reference_server::store::Store::open(dir.path()).unwrap();
    let mut config = Config::defaults();
    config.limits.message_size = 4096;
    let config = Arc::new(config);
    let conn = Connection {
        role: if tls_mode == TlsMode::Implicit {
            Role::Imaps
        } else {
            Role::Imap
        },
        tls_mode,
        peer: "192.0.2.7:40000".parse().unwrap(),
        pop_before_smtp: None,
        client_dns: None,
    };
    let mut session = ImapSession::new(config.clone(), conn, store, Arc::new(SystemClock));
    let mut event = session.greet();
    let mut out = Vec::new();
    let mut chunks = chunks.iter();
    loop {
        out.extend(session.take_output());
        event = match event {
            ImapEvent::NeedInput | ImapEvent::WaitForChanges { .. } => match chunks.next() {
                Some(chunk) => {
                    session.push_input(chunk);
                    session.step()
                }
                None => break,
            },
            ImapEvent::More => session.step(),
            ImapEvent::StartTls => {
                session.tls_started();
                session.step()
            }
            ImapEvent::Authenticate { login, password } => {
                let verdict = auth::authenticate(&config, &login, password.expose());
                session.auth_result(verdict);
                session.step()
            }
            ImapEvent::Close { .. } => break,
        };
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// An SMTP session fed anything on any listener answers with well-formed replies only,
    /// as much as about one per line, and delivers nothing with a bare CR or LF.
    #[test]
    fn smtp_session_replies_are_well_formed(
        listener in 0usize..4,
        chunks in proptest::collection::vec(session_chunk(SMTP_VOCABULARY), 0..40),
    ) {
        let (role, tls_mode) = [
            (Role::Smtp, TlsMode::Starttls),
            (Role::Submission, TlsMode::Starttls),
            (Role::Submissions, TlsMode::Implicit),
            (Role::Smtp, TlsMode::None),
        ][listener];
        let (output, delivered) = smtp_session(role, tls_mode, &chunks);
        if let Err(why) = check_smtp_replies(&output) {
            return Err(TestCaseError::fail(format!("{why}\n{}", String::from_utf8_lossy(&output))));
        }
        let lines: usize = chunks.iter().flatten().filter(|&&b| b == b'\n').count();
        let octets: usize = chunks.iter().map(Vec::len).sum();
        prop_assert!(output.len() <= 1024 * (lines + 2 + octets / 4096));
        for message in delivered {
            prop_assert!(!has_bare_line_end(&message), "{:?}", String::from_utf8_lossy(&message));
        }
    }

    /// An IMAP session fed anything answers only with untagged, continuation and tagged
    /// responses, literals included, and with output in proportion to the input.
    #[test]
    fn imap_session_output_is_well_formed(
        tls_mode in proptest::sample::select(vec![TlsMode::Starttls, TlsMode::Implicit, TlsMode::None]),
        chunks in proptest::collection::vec(session_chunk(IMAP_VOCABULARY), 0..30),
    ) {
        let output = imap_session(tls_mode, &chunks);
        if let Err(why) = check_imap_output(&output) {
            return Err(TestCaseError::fail(format!("{why}\n{}", String::from_utf8_lossy(&output))));
        }
        let lines: usize = chunks.iter().flatten().filter(|&&b| b == b'\n').count();
        let octets: usize = chunks.iter().map(Vec::len).sum();
        prop_assert!(output.len() <= (lines + 2) * (2048 + octets));
    }
}

//! The reference server's own command parsers, without I/O: SMTP command lines, POP3 command
//! lines (verb, then arguments, as the session does) and IMAP commands through the framer the
//! session runs before imap-codec (literals, continuation requests, limits). Each bench parses a
//! mix a real client sends and counts commands; every result is checked against the command
//! expected, so a parser that fails fast cannot look fast.

use std::hint::black_box;
use std::mem::discriminant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reference_server::imap::framing::{Framed, Framer};
use reference_server::pop3::command as pop3;
use reference_server::smtp::command as smtp;

/// A submission session: EHLO, AUTH, two transactions (one with DSN parameters), odds and ends.
const SMTP_MIX: [(&str, &str); 14] = [
    ("EHLO client.example.org", "EHLO"),
    (
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=",
        "AUTH",
    ),
    (
        "MAIL FROM:<alice@example.test> SIZE=48213 BODY=8BITMIME",
        "MAIL",
    ),
    (
        "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test",
        "RCPT",
    ),
    ("RCPT TO:<carol.smith@example.org>", "RCPT"),
    ("RCPT TO:<\"dave jones\"@example.net>", "RCPT"),
    ("DATA", "DATA"),
    ("MAIL FROM:<> RET=HDRS ENVID=QQ314159", "MAIL"),
    ("RCPT TO:<postmaster>", "RCPT"),
    ("BDAT 8192 LAST", "BDAT"),
    ("RSET", "RSET"),
    ("NOOP", "NOOP"),
    ("VRFY bob", "VRFY"),
    ("QUIT", "QUIT"),
];

fn smtp_commands(c: &mut Criterion) {
    for (line, verb) in SMTP_MIX {
        let command = smtp::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        assert_eq!(command.verb(), verb, "{line}");
    }
    let mut group = c.benchmark_group("parse_smtp");
    group.throughput(Throughput::Elements(SMTP_MIX.len() as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            for (line, verb) in SMTP_MIX {
                let command = smtp::parse(black_box(line.as_bytes())).expect("parses");
                assert_eq!(command.verb(), verb);
            }
        });
    });
    group.finish();
}

/// A POP3 session: log in, look at the maildrop, read and delete a few messages.
fn pop3_mix() -> Vec<(&'static str, pop3::Command)> {
    use pop3::Command::*;
    vec![
        ("CAPA", Capa),
        ("USER alice@example.test", User("alice@example.test".into())),
        ("PASS alice secret 42", Pass("alice secret 42".into())),
        ("STAT", Stat),
        ("LIST", List(None)),
        ("UIDL", Uidl(None)),
        ("LIST 3", List(Some(3))),
        ("UIDL 3", Uidl(Some(3))),
        (
            "TOP 3 10",
            Top {
                message: 3,
                lines: 10,
            },
        ),
        ("RETR 3", Retr(3)),
        ("DELE 3", Dele(3)),
        ("retr 12", Retr(12)),
        ("DELE 12", Dele(12)),
        ("NOOP", Noop),
        ("RSET", Rset),
        ("QUIT", Quit),
    ]
}

fn pop3_commands(c: &mut Criterion) {
    let mix = pop3_mix();
    for (line, expected) in &mix {
        let (verb, args) = pop3::split(line.as_bytes()).expect("known verb");
        assert_eq!(pop3::parse(verb, args).as_ref(), Ok(expected), "{line}");
    }
    let kinds: Vec<_> = mix
        .iter()
        .map(|(line, command)| (line.as_bytes(), discriminant(command)))
        .collect();
    let mut group = c.benchmark_group("parse_pop3");
    group.throughput(Throughput::Elements(kinds.len() as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            for (line, kind) in &kinds {
                let (verb, args) = pop3::split(black_box(line)).expect("known verb");
                let command = pop3::parse(verb, args).expect("parses");
                assert_eq!(discriminant(&command), *kind);
            }
        });
    });
    group.finish();
}

/// A message a client APPENDs to Sent.
const APPENDED: &str = "From: Alice <alice@example.test>\r\n\
To: Bob <bob@example.test>\r\n\
Subject: Re: the quarterly figures\r\n\
Date: Tue, 05 Mar 2024 10:15:00 +0100\r\n\
Message-ID: <20240305101500.4711@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bob, the figures are attached to the ticket. Thanks!\r\n";

/// A desktop client's session: what each chunk of input is, as it arrives, and the commands
/// it must yield (the APPEND line alone yields a continuation request).
fn imap_mix() -> Vec<(Vec<u8>, Option<&'static str>)> {
    let lines: [(&str, &str); 14] = [
        ("a1 CAPABILITY\r\n", "CAPABILITY"),
        ("a2 LOGIN alice@example.test \"alice secret\"\r\n", "LOGIN"),
        ("a3 LIST \"\" \"*\"\r\n", "LIST"),
        (
            "a4 STATUS Sent (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)\r\n",
            "STATUS",
        ),
        ("a5 SELECT INBOX\r\n", "SELECT"),
        (
            "a6 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Cc \
             Subject Date Message-ID References In-Reply-To Content-Type)])\r\n",
            "FETCH",
        ),
        (
            "a7 UID FETCH 4711 (BODYSTRUCTURE ENVELOPE INTERNALDATE)\r\n",
            "FETCH",
        ),
        ("a8 UID FETCH 4711 BODY.PEEK[1.2]<0.16384>\r\n", "FETCH"),
        (
            "a9 UID STORE 4700:4711,4720 +FLAGS.SILENT (\\Seen \\Flagged)\r\n",
            "STORE",
        ),
        (
            "a10 UID SEARCH UNSEEN FROM \"bob\" SINCE 1-Jan-2024 NOT DELETED LARGER 1000\r\n",
            "SEARCH",
        ),
        ("a11 NOOP\r\n", "NOOP"),
        ("a12 UID EXPUNGE 4700:4711\r\n", "EXPUNGE"),
        ("a13 CLOSE\r\n", "CLOSE"),
        ("a14 LOGOUT\r\n", "LOGOUT"),
    ];
    let mut mix: Vec<_> = lines
        .iter()
        .map(|(line, name)| (line.as_bytes().to_vec(), Some(*name)))
        .collect();
    // APPEND with a synchronising literal: the line, a "+" from the server, then the data.
    let append = format!(
        "a15 APPEND Sent (\\Seen) \"05-Mar-2024 10:15:00 +0100\" {{{}}}\r\n",
        APPENDED.len()
    );
    mix.insert(13, (append.into_bytes(), None));
    mix.insert(14, (format!("{APPENDED}\r\n").into_bytes(), Some("APPEND")));
    mix
}

/// Feeds one chunk and takes what it completes: the command's name, or `None` for a
/// continuation request.
fn frame(framer: &mut Framer, chunk: &[u8]) -> Option<&'static str> {
    framer.push(chunk);
    let done = match framer.next_command() {
        Framed::Command(command) => Some(command.body.name()),
        Framed::Continue => None,
        other => panic!("expected a command, got {other:?}"),
    };
    assert!(matches!(framer.next_command(), Framed::NeedMore));
    done
}

fn imap_commands(c: &mut Criterion) {
    let mix = imap_mix();
    let commands = mix.iter().filter(|(_, name)| name.is_some()).count();
    // The limits the server sets: a literal as large as a message, a line of 64 KiB.
    let mut framer = Framer::new(25 * 1024 * 1024 + 64 * 1024, 25 * 1024 * 1024);
    for (chunk, name) in &mix {
        assert_eq!(frame(&mut framer, chunk), *name);
    }
    let mut group = c.benchmark_group("parse_imap");
    group.throughput(Throughput::Elements(commands as u64));
    group.bench_function("framer_mix", |b| {
        b.iter(|| {
            for (chunk, name) in &mix {
                assert_eq!(frame(&mut framer, black_box(chunk)), *name);
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = benches::short();
    targets = smtp_commands, pop3_commands, imap_commands
}
criterion_main!(benches);

//! One session of each workload: a connection that does its work, timing every phase.
//!
//! A session stops at the first failure and reports it with the phase it happened in. Failures
//! that mean the target cannot be load-tested as described (credentials refused, a port the
//! profile lacks) are fatal: the run stops at once instead of counting thousands of identical
//! errors. A refused connection or a failed TLS handshake stops the run only in the pre-flight
//! session; once the load runs they are counted, so that a server that restarts (or crashes
//! and comes back) shows its outage in the figures and the run, and `--verify`, go on.

use std::time::Duration;

use tokio::time::Instant;

use super::Ctx;
use super::phase::Phase;
use super::workload::{Entry, Kind};
use crate::clients::ClientError;
use crate::clients::imap::{ImapClient, Incoming};
use crate::clients::pop3::Pop3Client;
use crate::clients::smtp::{Reply, SmtpClient};
use crate::target::Account;

/// A way a session ends on purpose, half-way (`--client-faults`): the connection is reset as a
/// client that crashes or loses its network would. Not an error of the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// SMTP: after the 354 to DATA and half the message.
    Data,
    /// IMAP: APPEND, and after the server's `+` half the literal.
    Literal,
    /// After the ClientHello and the first bytes of the server's answer.
    TlsHandshake,
    /// In the middle of a command line, before its CRLF.
    CommandLine,
}

impl Abort {
    /// The name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Abort::Data => "mid_data",
            Abort::Literal => "mid_literal",
            Abort::TlsHandshake => "mid_tls_handshake",
            Abort::CommandLine => "mid_command_line",
        }
    }

    /// The aborts a session of `kind` can make.
    pub fn for_kind(kind: Kind) -> &'static [Abort] {
        match kind {
            Kind::Relay => &[Abort::Data, Abort::CommandLine],
            Kind::Submission | Kind::Submissions => {
                &[Abort::Data, Abort::TlsHandshake, Abort::CommandLine]
            }
            Kind::Pop3 => &[Abort::TlsHandshake, Abort::CommandLine],
            Kind::Imap => &[Abort::Literal, Abort::TlsHandshake, Abort::CommandLine],
            Kind::ImapIdle | Kind::ImapMix => &[],
        }
    }
}

/// Why a session stopped early.
#[derive(Debug)]
pub struct Failure {
    /// The phase it happened in.
    pub phase: Phase,
    /// Short kind for counting: a reply code, `-ERR`, `NO`, `timeout`, `closed`, ...
    pub kind: String,
    /// The full message.
    pub detail: String,
    /// Whether the run should stop: the target refuses the credentials or lacks a port.
    pub fatal: bool,
    /// The session's transcript, when it kept one (the pre-flight session does).
    pub transcript: Option<String>,
    /// Set when the client ended the session on purpose: counted apart, not an error.
    pub abort: Option<Abort>,
}

impl Failure {
    pub(super) fn new(phase: Phase, kind: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            phase,
            kind: kind.into(),
            detail: detail.into(),
            fatal: false,
            transcript: None,
            abort: None,
        }
    }

    /// The session ended as `abort` meant it to.
    pub(super) fn aborted(abort: Abort) -> Failure {
        Failure {
            abort: Some(abort),
            ..Failure::new(Phase::Session, "aborted", "aborted on purpose")
        }
    }

    pub(super) fn fatal(mut self) -> Failure {
        self.fatal = true;
        self
    }

    /// A client error in `phase`, classified.
    pub fn client(phase: Phase, error: ClientError) -> Failure {
        let (kind, fatal) = match &error {
            ClientError::Connect { source, .. } => (
                match source.kind() {
                    std::io::ErrorKind::ConnectionRefused => "refused",
                    _ => "connect error",
                },
                false,
            ),
            ClientError::Timeout { .. } => ("timeout", false),
            ClientError::Closed { .. } => ("closed", false),
            ClientError::Io { .. } => ("io error", false),
            ClientError::Tls { .. } | ClientError::MalformedTls { .. } => ("tls failure", false),
            ClientError::TlsConfig(_) => ("tls failure", true),
            ClientError::UnexpectedReply { reply, .. } => {
                return Failure::new(phase, reply.code.to_string(), error.to_string());
            }
            _ => ("malformed", false),
        };
        Failure {
            phase,
            kind: kind.to_owned(),
            detail: format!("{phase}: {error}"),
            fatal,
            transcript: None,
            abort: None,
        }
    }
}

/// What one session measured.
#[derive(Debug, Default)]
pub struct Record {
    /// Latency per phase, in order.
    pub phases: Vec<(Phase, Duration)>,
    /// Units of work done (messages acknowledged, sessions finished).
    pub completed: u64,
    /// Message-IDs the server acknowledged, with the index of the recipient account.
    pub acknowledged: Vec<(usize, String)>,
    /// Keep the transcript for the failure report (the pre-flight session).
    pub keep_transcript: bool,
    /// Whether the session counts: it was due after the warm-up.
    pub measured: bool,
    /// A mailbox the session emptied, and how many messages to put back: done after the
    /// session is timed, so that the refill does not count as POP3 latency.
    pub refill: Option<(usize, u32)>,
    /// How the session is to end on purpose, if it is (`--client-faults`).
    pub abort: Option<Abort>,
    /// Message-IDs of messages cut off half-way, with the account: the server must not file
    /// them.
    pub cut_off: Vec<(usize, String)>,
}

impl Record {
    pub(super) fn time(&mut self, phase: Phase, since: Instant) -> Instant {
        let now = Instant::now();
        self.phases.push((phase, now - since));
        now
    }
}

/// Runs one session of `entry`'s workload.
pub async fn run(ctx: &Ctx, entry: &Entry, record: &mut Record) -> Result<(), Failure> {
    match entry.workload {
        Kind::Relay | Kind::Submission | Kind::Submissions => {
            smtp(ctx, entry, entry.workload, record).await
        }
        Kind::Pop3 => pop3(ctx, entry, record).await,
        Kind::Imap => imap(ctx, entry, record).await,
        Kind::ImapIdle => Err(Failure::new(
            Phase::Session,
            "internal",
            "imap-idle sessions are run by the idle driver",
        )),
        Kind::ImapMix => Err(Failure::new(
            Phase::Session,
            "internal",
            "imap-mix clients are run by the mix driver",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

pub(super) fn expect(phase: Phase, reply: Reply, codes: &[u16]) -> Result<Reply, Failure> {
    if codes.contains(&reply.code) {
        return Ok(reply);
    }
    let detail = format!(
        "{phase}: expected {}, got \"{reply}\"",
        codes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    );
    Err(Failure::new(phase, reply.code.to_string(), detail))
}

async fn smtp(ctx: &Ctx, entry: &Entry, kind: Kind, record: &mut Record) -> Result<(), Failure> {
    let port = ctx
        .port_for(kind)
        .map_err(|e| Failure::new(Phase::Connect, "no port", e).fatal())?;
    let addr = ctx.profile.addr(port);
    let start = Instant::now();
    let mut client = SmtpClient::connect(&addr, ctx.options.timeout)
        .await
        .map_err(|e| Failure::client(Phase::Connect, e))?;
    if !record.keep_transcript {
        client.stop_transcript();
    }
    let mut at = record.time(Phase::Connect, start);
    let result = smtp_dialogue(ctx, entry, kind, &mut client, record, &mut at).await;
    result.map_err(|mut failure| {
        if record.keep_transcript {
            failure.transcript = Some(client.transcript().to_string());
        }
        failure
    })
}

async fn smtp_dialogue(
    ctx: &Ctx,
    entry: &Entry,
    kind: Kind,
    client: &mut SmtpClient,
    record: &mut Record,
    at: &mut Instant,
) -> Result<(), Failure> {
    if kind == Kind::Submissions {
        tls_or_abort(ctx, client, record).await?;
        *at = record.time(Phase::Tls, *at);
    }
    let greeting = client
        .read_reply()
        .await
        .map_err(|e| Failure::client(Phase::Greeting, e))?;
    expect(Phase::Greeting, greeting, &[220])?;
    *at = record.time(Phase::Greeting, *at);
    ehlo(client, record, at).await?;
    if kind == Kind::Submission {
        let reply = client
            .command("STARTTLS")
            .await
            .map_err(|e| Failure::client(Phase::Starttls, e))?;
        expect(Phase::Starttls, reply, &[220])?;
        *at = record.time(Phase::Starttls, *at);
        tls_or_abort(ctx, client, record).await?;
        *at = record.time(Phase::Tls, *at);
        ehlo(client, record, at).await?;
    }
    let account = ctx.next_account(entry);
    if matches!(kind, Kind::Submission | Kind::Submissions) {
        let Some(index) = account else {
            return Err(Failure::new(
                Phase::Auth,
                "no account",
                "the target profile lists no accounts to authenticate with",
            )
            .fatal());
        };
        let Account { address, password } = &ctx.accounts[index];
        let reply = client
            .auth_plain(address, password)
            .await
            .map_err(|e| Failure::client(Phase::Auth, e))?;
        if reply.code == 535 || reply.code == 530 || reply.code == 534 {
            return Err(Failure::new(
                Phase::Auth,
                reply.code.to_string(),
                format!("auth: the target refused the credentials of {address}: \"{reply}\""),
            )
            .fatal());
        }
        expect(Phase::Auth, reply, &[235])?;
        *at = record.time(Phase::Auth, *at);
    }
    if record.abort == Some(Abort::CommandLine) {
        client
            .send_raw(format!("MAIL FROM:<{}>", ctx.sender).as_bytes())
            .await
            .map_err(|e| Failure::client(Phase::Mail, e))?;
        client.abort();
        return Err(Failure::aborted(Abort::CommandLine));
    }
    let pipelining = ctx.options.pipelining && client.has_capability("PIPELINING");
    let per_connection = entry.per_connection.unwrap_or(ctx.options.per_connection);
    let size = entry.size.map_or(ctx.options.size, |s| s.0);
    let mut quit_sent = false;
    for n in 0..per_connection {
        if !ctx.take_ticket(record) {
            break;
        }
        let recipient = ctx.recipient(account);
        let (id, message) = ctx.message(&recipient, size);
        if record.abort == Some(Abort::Data) && n + 1 == per_connection {
            record.cut_off.push((account.unwrap_or(usize::MAX), id));
            return abort_in_data(ctx, client, &recipient, &message).await;
        }
        // RFC 2920: message content may start a group, so QUIT can follow the last one.
        quit_sent = pipelining && n + 1 == per_connection;
        send_message(
            client,
            &ctx.sender,
            &recipient,
            message,
            pipelining,
            quit_sent,
            record,
            at,
        )
        .await?;
        record.completed += 1;
        record
            .acknowledged
            .push((account.unwrap_or(usize::MAX), id));
    }
    if !quit_sent {
        let reply = client
            .command("QUIT")
            .await
            .map_err(|e| Failure::client(Phase::Quit, e))?;
        expect(Phase::Quit, reply, &[221])?;
        *at = record.time(Phase::Quit, *at);
    }
    // The server closes first, so the TIME_WAIT state stays on its side and thousands of
    // short connections do not use up this side's ports.
    let _ = client.read_until_closed(Duration::from_secs(1)).await;
    Ok(())
}

/// The TLS handshake of an SMTP session, or half of it when the session is to abort there.
async fn tls_or_abort(ctx: &Ctx, client: &mut SmtpClient, record: &Record) -> Result<(), Failure> {
    if record.abort == Some(Abort::TlsHandshake) {
        client
            .abort_in_tls_handshake(&ctx.tls)
            .await
            .map_err(|e| Failure::client(Phase::Tls, e))?;
        return Err(Failure::aborted(Abort::TlsHandshake));
    }
    client
        .tls_handshake(&ctx.tls)
        .await
        .map_err(|e| Failure::client(Phase::Tls, e))
}

/// MAIL, RCPT and DATA one at a time, then half the message and a reset.
async fn abort_in_data(
    ctx: &Ctx,
    client: &mut SmtpClient,
    recipient: &str,
    message: &[u8],
) -> Result<(), Failure> {
    for (phase, line, code) in [
        (Phase::Mail, format!("MAIL FROM:<{}>", ctx.sender), 250),
        (Phase::Rcpt, format!("RCPT TO:<{recipient}>"), 250),
        (Phase::Data, "DATA".to_owned(), 354),
    ] {
        let reply = client
            .command(&line)
            .await
            .map_err(|e| Failure::client(phase, e))?;
        expect(phase, reply, &[code])?;
    }
    client
        .send_raw(&message[..message.len() / 2])
        .await
        .map_err(|e| Failure::client(Phase::DataEnd, e))?;
    client.abort();
    Err(Failure::aborted(Abort::Data))
}

/// Connects to the plaintext SMTP `port` without a transcript and goes as far as the 250 to
/// EHLO, timing connect, greeting and EHLO: how mailbox seeding, refills and imap-idle's
/// deliveries start.
pub(super) async fn smtp_open(
    ctx: &Ctx,
    port: u16,
    record: &mut Record,
) -> Result<(SmtpClient, Instant), Failure> {
    let start = Instant::now();
    let mut client = SmtpClient::connect(&ctx.profile.addr(port), ctx.options.timeout)
        .await
        .map_err(|e| Failure::client(Phase::Connect, e))?;
    client.stop_transcript();
    let mut at = record.time(Phase::Connect, start);
    let greeting = client
        .read_reply()
        .await
        .map_err(|e| Failure::client(Phase::Greeting, e))?;
    expect(Phase::Greeting, greeting, &[220])?;
    at = record.time(Phase::Greeting, at);
    ehlo(&mut client, record, &mut at).await?;
    Ok((client, at))
}

async fn ehlo(
    client: &mut SmtpClient,
    record: &mut Record,
    at: &mut Instant,
) -> Result<(), Failure> {
    let reply = client
        .ehlo("load.harness.test")
        .await
        .map_err(|e| Failure::client(Phase::Ehlo, e))?;
    expect(Phase::Ehlo, reply, &[250])?;
    *at = record.time(Phase::Ehlo, *at);
    Ok(())
}

/// One transaction: MAIL, RCPT, DATA and the content. With PIPELINING the three commands go in
/// one write (RFC 2920) and each reply is timed from the one before it; with `quit` (only
/// with PIPELINING) QUIT goes in the same write as the content.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send_message(
    client: &mut SmtpClient,
    sender: &str,
    recipient: &str,
    mut message: Vec<u8>,
    pipelining: bool,
    quit: bool,
    record: &mut Record,
    at: &mut Instant,
) -> Result<(), Failure> {
    let commands = [
        (Phase::Mail, format!("MAIL FROM:<{sender}>"), 250),
        (Phase::Rcpt, format!("RCPT TO:<{recipient}>"), 250),
        (Phase::Data, "DATA".to_owned(), 354),
    ];
    if pipelining {
        let group: String = commands
            .iter()
            .map(|(_, line, _)| format!("{line}\r\n"))
            .collect();
        client
            .send_raw(group.as_bytes())
            .await
            .map_err(|e| Failure::client(Phase::Mail, e))?;
        let mut first_failure = None;
        for &(phase, _, code) in &commands {
            let reply = client
                .read_reply()
                .await
                .map_err(|e| Failure::client(phase, e))?;
            match expect(phase, reply, &[code]) {
                Ok(_) => *at = record.time(phase, *at),
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                }
            }
        }
        if let Some(failure) = first_failure {
            // DATA may have been accepted after all (a server that ignores a failed RCPT);
            // there is nothing sensible to send, and the connection is dropped anyway.
            return Err(failure);
        }
    } else {
        for (phase, line, code) in &commands {
            let phase = *phase;
            let reply = client
                .command(line)
                .await
                .map_err(|e| Failure::client(phase, e))?;
            expect(phase, reply, &[*code])?;
            *at = record.time(phase, *at);
        }
    }
    if quit {
        message.extend_from_slice(b"QUIT\r\n");
    }
    client
        .send_raw(&message)
        .await
        .map_err(|e| Failure::client(Phase::DataEnd, e))?;
    let reply = client
        .read_reply()
        .await
        .map_err(|e| Failure::client(Phase::DataEnd, e))?;
    expect(Phase::DataEnd, reply, &[250])?;
    *at = record.time(Phase::DataEnd, *at);
    if quit {
        let reply = client
            .read_reply()
            .await
            .map_err(|e| Failure::client(Phase::Quit, e))?;
        expect(Phase::Quit, reply, &[221])?;
        *at = record.time(Phase::Quit, *at);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// POP3

async fn pop3_check(
    phase: Phase,
    response: Result<crate::clients::pop3::Pop3Response, ClientError>,
) -> Result<(), Failure> {
    let response = response.map_err(|e| Failure::client(phase, e))?;
    if response.ok {
        Ok(())
    } else {
        Err(Failure::new(
            phase,
            "-ERR",
            format!("{phase}: the server answered \"-ERR {}\"", response.text),
        ))
    }
}

async fn pop3(ctx: &Ctx, entry: &Entry, record: &mut Record) -> Result<(), Failure> {
    let (port, implicit) = ctx
        .tls_port(
            ctx.profile.ports.pop3s,
            ctx.profile.ports.pop3,
            "pop3s or pop3",
        )
        .map_err(|e| Failure::new(Phase::Connect, "no port", e).fatal())?;
    let lease = ctx
        .lease_exclusive(entry)
        .await
        .map_err(|e| Failure::new(Phase::Login, "no account", e).fatal())?;
    let index = lease.index;
    let addr = ctx.profile.addr(port);
    let start = Instant::now();
    let mut client = Pop3Client::connect(&addr, ctx.options.timeout)
        .await
        .map_err(|e| Failure::client(Phase::Connect, e))?;
    if !record.keep_transcript {
        client.stop_transcript();
    }
    let mut at = record.time(Phase::Connect, start);
    let result = pop3_dialogue(ctx, entry, &mut client, index, implicit, record, &mut at).await;
    drop(lease);
    let deleted = result.map_err(|mut failure| {
        if record.keep_transcript {
            failure.transcript = Some(client.transcript().to_string());
        }
        failure
    })?;
    record.completed += 1;
    if deleted > 0 {
        record.refill = Some((index, deleted));
    }
    Ok(())
}

/// Returns how many messages the session deleted.
async fn pop3_dialogue(
    ctx: &Ctx,
    entry: &Entry,
    client: &mut Pop3Client,
    index: usize,
    implicit: bool,
    record: &mut Record,
    at: &mut Instant,
) -> Result<u32, Failure> {
    let abort = record.abort;
    let tls = async |client: &mut Pop3Client| {
        if abort == Some(Abort::TlsHandshake) {
            client
                .abort_in_tls_handshake(&ctx.tls)
                .await
                .map_err(|e| Failure::client(Phase::Tls, e))?;
            return Err(Failure::aborted(Abort::TlsHandshake));
        }
        client
            .tls_handshake(&ctx.tls)
            .await
            .map_err(|e| Failure::client(Phase::Tls, e))
    };
    if implicit {
        tls(client).await?;
        *at = record.time(Phase::Tls, *at);
    }
    pop3_check(Phase::Greeting, client.greeting().await).await?;
    *at = record.time(Phase::Greeting, *at);
    if !implicit {
        pop3_check(Phase::Starttls, client.command("STLS").await).await?;
        *at = record.time(Phase::Starttls, *at);
        tls(client).await?;
        *at = record.time(Phase::Tls, *at);
    }
    if abort == Some(Abort::CommandLine) {
        // Before login, so that no maildrop stays locked while the server notices.
        let Account { address, .. } = &ctx.accounts[index];
        client
            .send_raw(format!("USER {address}").as_bytes())
            .await
            .map_err(|e| Failure::client(Phase::Login, e))?;
        client.abort();
        return Err(Failure::aborted(Abort::CommandLine));
    }
    let Account { address, password } = &ctx.accounts[index];
    let login = client
        .user_pass(address, password)
        .await
        .map_err(|e| Failure::client(Phase::Login, e))?;
    if !login.ok {
        let failure = Failure::new(
            Phase::Login,
            "-ERR",
            format!(
                "login: the target refused the credentials of {address}: \"-ERR {}\"",
                login.text
            ),
        );
        // A locked maildrop (RFC 2449 IN-USE) is contention, not a bad target.
        return Err(if login.has_code("IN-USE") {
            failure
        } else {
            failure.fatal()
        });
    }
    *at = record.time(Phase::Login, *at);
    let rounds = entry.per_connection.unwrap_or(ctx.options.per_connection);
    let mut deleted = 0;
    for round in 1..=rounds {
        let (count, _) = client
            .stat()
            .await
            .map_err(|e| Failure::client(Phase::Stat, e))?
            .map_err(|r| Failure::new(Phase::Stat, "-ERR", format!("stat: \"-ERR {}\"", r.text)))?;
        *at = record.time(Phase::Stat, *at);
        for message in 1..=count {
            client
                .retr(message)
                .await
                .map_err(|e| Failure::client(Phase::Retr, e))?
                .map_err(|r| {
                    Failure::new(Phase::Retr, "-ERR", format!("retr: \"-ERR {}\"", r.text))
                })?;
            *at = record.time(Phase::Retr, *at);
        }
        if round == rounds {
            for message in 1..=count {
                pop3_check(Phase::Dele, client.dele(message).await).await?;
                *at = record.time(Phase::Dele, *at);
            }
            deleted = count;
        }
    }
    pop3_check(Phase::Quit, client.quit().await).await?;
    *at = record.time(Phase::Quit, *at);
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// IMAP

fn imap_ok(
    phase: Phase,
    result: Result<crate::clients::imap::CommandResult, ClientError>,
) -> Result<crate::clients::imap::CommandResult, Failure> {
    let result = result.map_err(|e| Failure::client(phase, e))?;
    if result.is_ok() {
        Ok(result)
    } else {
        let status = &result.tagged;
        Err(Failure::new(
            phase,
            format!("{:?}", status.kind).to_uppercase(),
            format!(
                "{phase}: the server answered {:?} {}",
                status.kind, status.text
            ),
        ))
    }
}

/// Connects to IMAP over implicit TLS or STARTTLS, reads the greeting and logs in.
pub(super) async fn imap_login(
    ctx: &Ctx,
    index: usize,
    record: &mut Record,
) -> Result<(ImapClient, Instant), Failure> {
    let (port, implicit) = ctx
        .tls_port(
            ctx.profile.ports.imaps,
            ctx.profile.ports.imap,
            "imaps or imap",
        )
        .map_err(|e| Failure::new(Phase::Connect, "no port", e).fatal())?;
    let addr = ctx.profile.addr(port);
    let start = Instant::now();
    let mut client = ImapClient::connect(&addr, ctx.options.timeout)
        .await
        .map_err(|e| Failure::client(Phase::Connect, e))?;
    if !record.keep_transcript {
        client.stop_transcript();
    }
    let mut at = record.time(Phase::Connect, start);
    let abort_in_tls = record.abort == Some(Abort::TlsHandshake);
    let result = async {
        if implicit && abort_in_tls {
            client
                .abort_in_tls_handshake(&ctx.tls)
                .await
                .map_err(|e| Failure::client(Phase::Tls, e))?;
            return Err(Failure::aborted(Abort::TlsHandshake));
        }
        if implicit {
            client
                .tls_handshake(&ctx.tls)
                .await
                .map_err(|e| Failure::client(Phase::Tls, e))?;
            at = record.time(Phase::Tls, at);
        }
        let greeting = client
            .greeting()
            .await
            .map_err(|e| Failure::client(Phase::Greeting, e))?;
        if !greeting.is_ok() {
            return Err(Failure::new(
                Phase::Greeting,
                format!("{:?}", greeting.kind).to_uppercase(),
                format!("greeting: {:?} {}", greeting.kind, greeting.text),
            ));
        }
        at = record.time(Phase::Greeting, at);
        if !implicit && abort_in_tls {
            imap_ok(Phase::Starttls, client.command("STARTTLS").await)?;
            client
                .abort_in_tls_handshake(&ctx.tls)
                .await
                .map_err(|e| Failure::client(Phase::Tls, e))?;
            return Err(Failure::aborted(Abort::TlsHandshake));
        }
        if !implicit {
            imap_ok(Phase::Starttls, client.starttls(&ctx.tls).await)?;
            at = record.time(Phase::Starttls, at);
        }
        let Account { address, password } = &ctx.accounts[index];
        let login = client
            .login(address, password)
            .await
            .map_err(|e| Failure::client(Phase::Login, e))?;
        if !login.is_ok() {
            return Err(Failure::new(
                Phase::Login,
                format!("{:?}", login.tagged.kind).to_uppercase(),
                format!(
                    "login: the target refused the credentials of {address}: {:?} {}",
                    login.tagged.kind, login.tagged.text
                ),
            )
            .fatal());
        }
        at = record.time(Phase::Login, at);
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok((client, at)),
        Err(mut failure) => {
            if record.keep_transcript {
                failure.transcript = Some(client.transcript().to_string());
            }
            Err(failure)
        }
    }
}

async fn imap(ctx: &Ctx, entry: &Entry, record: &mut Record) -> Result<(), Failure> {
    let index = ctx.next_account(entry).ok_or_else(|| {
        Failure::new(
            Phase::Login,
            "no account",
            "the target profile lists no accounts",
        )
        .fatal()
    })?;
    let (mut client, mut at) = imap_login(ctx, index, record).await?;
    let result = match record.abort {
        Some(Abort::Literal) => abort_in_literal(ctx, &mut client, index, entry, record).await,
        Some(Abort::CommandLine) => {
            let tag = client.next_tag();
            client
                .send_raw(format!("{tag} FETCH 1:* (FLAGS").as_bytes())
                .await
                .map_err(|e| Failure::client(Phase::Fetch, e))?;
            client.abort();
            Err(Failure::aborted(Abort::CommandLine))
        }
        _ => imap_dialogue(ctx, entry, &mut client, record, &mut at).await,
    };
    result.map_err(|mut failure| {
        if record.keep_transcript {
            failure.transcript = Some(client.transcript().to_string());
        }
        failure
    })?;
    record.completed += 1;
    Ok(())
}

/// APPEND to INBOX with a synchronising literal, and after the server's `+` half the message
/// and a reset.
async fn abort_in_literal(
    ctx: &Ctx,
    client: &mut ImapClient,
    index: usize,
    entry: &Entry,
    record: &mut Record,
) -> Result<(), Failure> {
    let size = entry.size.map_or(ctx.options.size, |s| s.0);
    let (id, mut message) = ctx.message(&ctx.accounts[index].address, size);
    // An IMAP literal carries the message as it is: no dot-stuffing, no end-of-data line.
    message.truncate(message.len() - b".\r\n".len());
    let tag = client.next_tag();
    client
        .send_raw(format!("{tag} APPEND INBOX {{{}}}\r\n", message.len()).as_bytes())
        .await
        .map_err(|e| Failure::client(Phase::Append, e))?;
    loop {
        match client
            .read_incoming()
            .await
            .map_err(|e| Failure::client(Phase::Append, e))?
        {
            Incoming::Continuation(_) => break,
            // New mail and the like may come first.
            Incoming::Untagged(_) => {}
            Incoming::Tagged(tagged) => {
                return Err(Failure::new(
                    Phase::Append,
                    tagged.status.kind.name(),
                    format!(
                        "append: expected \"+\" for the literal, got {} {}",
                        tagged.status.kind.name(),
                        tagged.status.text
                    ),
                ));
            }
        }
    }
    record.cut_off.push((index, id));
    client
        .send_raw(&message[..message.len() / 2])
        .await
        .map_err(|e| Failure::client(Phase::Append, e))?;
    client.abort();
    Err(Failure::aborted(Abort::Literal))
}

async fn imap_dialogue(
    ctx: &Ctx,
    entry: &Entry,
    client: &mut ImapClient,
    record: &mut Record,
    at: &mut Instant,
) -> Result<(), Failure> {
    let selected = client
        .select("INBOX")
        .await
        .map_err(|e| Failure::client(Phase::Select, e))?;
    imap_ok(Phase::Select, Ok(selected.result))?;
    *at = record.time(Phase::Select, *at);
    let exists = selected.exists.unwrap_or(0);
    let rounds = entry.per_connection.unwrap_or(ctx.options.per_connection);
    for _ in 0..rounds {
        if exists == 0 {
            break;
        }
        // What a client shows in a message list: the newest ten, with flags, size and envelope.
        let first = exists.saturating_sub(9).max(1);
        imap_ok(
            Phase::Fetch,
            client
                .command(&format!(
                    "FETCH {first}:{exists} (UID FLAGS RFC822.SIZE ENVELOPE)"
                ))
                .await,
        )?;
        *at = record.time(Phase::Fetch, *at);
        // Then one message opened.
        let open = ctx.random_below(exists) + 1;
        imap_ok(
            Phase::FetchBody,
            client.command(&format!("FETCH {open} BODY.PEEK[]")).await,
        )?;
        *at = record.time(Phase::FetchBody, *at);
        imap_ok(
            Phase::Store,
            client
                .command(&format!("STORE {open} +FLAGS (\\Seen)"))
                .await,
        )?;
        *at = record.time(Phase::Store, *at);
    }
    imap_ok(Phase::Logout, client.logout().await)?;
    *at = record.time(Phase::Logout, *at);
    Ok(())
}

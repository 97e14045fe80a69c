//! One SMTP session as a state machine: bytes in, reply bytes out, and requests for the few
//! things it cannot do itself (TLS, password checks, storing mail, waiting). The socket loop in
//! `driver.rs` is a thin driver over it, and tests drive it directly with no socket.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::{self, SaslError};
use crate::budget::CommandBudget;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Role, TlsMode};
use crate::faults::{InjectedOutcome, Policy};
use crate::net::Connection;
use crate::relay::dns::Verdict;
use crate::smtp::command::{self, Address, Command, Param, ParseError};
use crate::smtp::data::{DataReceiver, Progress, Violation};
use crate::smtp::{texts, trace};
use crate::store::StoreError;
use crate::variants::Variant;

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;
/// Longest AUTH command or SASL response line (RFC 4954 section 4).
const MAX_AUTH_LINE: usize = 12288;
/// Unknown recipients after which [`Variant::SmtpProbeDefence`] refuses every RCPT.
const PROBES_TOLERATED: u32 = 3;

/// What the session needs from its driver before it can go on.
#[derive(Debug)]
pub enum Event {
    /// Send pending output, then read more input and call [`Session::push_input`].
    NeedInput,
    /// Send pending output, wait this long, then call [`Session::step`] again.
    Delay(Duration),
    /// Send pending output, run the TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Check these credentials and call [`Session::auth_result`].
    Authenticate {
        /// The login name.
        login: String,
        /// The password.
        password: auth::Password,
    },
    /// Store the message durably and call [`Session::delivery_result`]. A message the session
    /// acknowledges without storing (nothing to store, or a fault loses it) is not asked for.
    Deliver(Envelope),
    /// Check in the DNS that the MAIL FROM domain can receive mail (MX or address records) and
    /// call [`Session::sender_verdict`].
    CheckSenderDomain(String),
    /// Send pending output and close the connection.
    Close,
}

/// A message ready for delivery: trace headers already prepended.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Reverse path, empty for the null sender.
    pub sender: String,
    /// Local accounts to deliver to (distinct).
    pub local: Vec<String>,
    /// Recipients in other domains, to queue for relay (distinct).
    pub remote: Vec<String>,
    /// Foreign recipients accepted only because the `open_relay` fault is on.
    pub discarded: Vec<String>,
    /// The message as stored: `Return-Path:`, `Received:`, then the client's octets.
    pub message: Vec<u8>,
    /// The queue id quoted in the 250 reply and the `Received:` header.
    pub id: String,
    /// Header fields that only one local recipient's copy gets, below its Return-Path, by
    /// account (Delivered-To and X-Original-To under [`Variant::SmtpTraceLayout`]); empty when
    /// every copy is [`Envelope::message`] as it is.
    pub per_recipient: Vec<(String, String)>,
}

/// One copy of an accepted message to store: for these local accounts and remote recipients.
#[derive(Debug)]
pub struct Copy<'a> {
    /// Local accounts that get this copy.
    pub local: Vec<&'a str>,
    /// Remote recipients to queue this copy for.
    pub remote: Vec<&'a str>,
    /// The octets.
    pub message: std::borrow::Cow<'a, [u8]>,
}

impl Envelope {
    /// Logs the message as accepted, stored or not.
    pub fn log_accepted(&self) {
        tracing::info!(
            id = self.id,
            from = self.sender,
            to = ?self.local,
            relay = ?self.remote,
            size = self.message.len(),
            "accepted"
        );
    }

    /// The copies to store: one for everybody, or, when some recipients get fields of their
    /// own, one per such local account and one (as accepted) for the rest.
    pub fn copies(&self) -> Vec<Copy<'_>> {
        let own = |account: &String| self.per_recipient.iter().any(|(a, _)| a == account);
        let shared = Copy {
            local: self
                .local
                .iter()
                .filter(|a| !own(a))
                .map(String::as_str)
                .collect(),
            remote: self.remote.iter().map(String::as_str).collect(),
            message: std::borrow::Cow::Borrowed(&self.message),
        };
        let mut copies: Vec<Copy<'_>> = self
            .per_recipient
            .iter()
            .filter(|(account, _)| self.local.contains(account))
            .map(|(account, fields)| Copy {
                local: vec![account.as_str()],
                remote: Vec::new(),
                message: trace::below_return_path(&self.message, fields),
            })
            .collect();
        if !shared.local.is_empty() || !shared.remote.is_empty() || copies.is_empty() {
            copies.insert(0, shared);
        }
        copies
    }
}

#[derive(Debug)]
enum Phase {
    Command,
    Data(DataReceiver),
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
        refusal: Option<(u16, String)>,
    },
    AuthPlain,
    AuthLogin {
        login: Option<String>,
    },
    /// Output sent, the driver is at work; input waits until its answer comes.
    Waiting(Pending),
    Closed,
}

/// What a waiting session waits for: each answer is taken only in its own waiting state.
#[derive(Debug, PartialEq, Eq)]
enum Pending {
    /// The TLS handshake ([`Session::tls_started`]).
    Tls,
    /// The verdict on the credentials of this login name ([`Session::auth_result`]).
    Auth { login: String },
    /// The DNS verdict on this MAIL's sender domain ([`Session::sender_verdict`]).
    SenderDomain { sender: String, smtputf8: bool },
    /// The durable store's answer to the message ([`Session::delivery_result`]).
    Delivery,
}

#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    smtputf8: bool,
    /// RCPT commands accepted, duplicates included: what the recipient limit counts.
    accepted: usize,
    local: Vec<String>,
    /// Each local account with the recipient address that reached it, as the client wrote it.
    written: Vec<(String, String)>,
    remote: Vec<String>,
    discarded: Vec<String>,
    /// BDAT chunks so far, or `None` while no BDAT was used.
    chunks: Option<Vec<u8>>,
    /// Set when a BDAT chunk failed: later chunks are consumed and refused until RSET.
    chunk_error: bool,
}

impl Transaction {
    fn recipients(&self) -> usize {
        self.accepted
    }
}

/// The SMTP session.
pub struct Session {
    config: Arc<Config>,
    conn: Connection,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    user: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    commands: CommandBudget,
    discarding_long_line: bool,
    refuse_all: bool,
    /// A command held back by an injected delay.
    delayed: Option<Command>,
    /// RCPTs refused in this session because no such user exists.
    unknown_recipients: u32,
    /// Messages acknowledged for storage, counted for the `drop_after_ack` fault: the
    /// server's count when it shares one ([`Session::with_ack_count`]).
    acked: Arc<AtomicU64>,
    /// Where dates come from ([`Session::with_clock`]).
    clock: Arc<dyn Clock>,
    /// Queue ids and reply ids ([`Session::with_seed`]).
    rng: fastrand::Rng,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input buffer may hold an AUTH exchange: leave it out.
        f.debug_struct("Session")
            .field("peer", &self.conn.peer)
            .field("role", &self.conn.role)
            .field("phase", &self.phase)
            .field("helo", &self.helo)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("in_transaction", &self.tx.is_some())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session; call [`Session::greet`] first.
    pub fn new(config: Arc<Config>, conn: Connection) -> Session {
        let tls = conn.tls_mode == TlsMode::Implicit;
        if let Some(account) = &conn.pop_before_smtp
            && config.faults.has(Policy::PopBeforeSmtpIgnored)
        {
            tracing::warn!(peer = %conn.peer, account, "FAULT pop_before_smtp_ignored");
        }
        Session {
            config,
            conn,
            phase: Phase::Command,
            input: Vec::new(),
            output: Vec::new(),
            helo: None,
            esmtp: false,
            tls,
            user: None,
            tx: None,
            errors: 0,
            commands: CommandBudget::default(),
            discarding_long_line: false,
            refuse_all: false,
            delayed: None,
            unknown_recipients: 0,
            acked: Arc::default(),
            clock: Arc::new(SystemClock),
            rng: fastrand::Rng::new(),
        }
    }

    /// Reads dates from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Session {
        self.clock = clock;
        self
    }

    /// Draws queue ids and reply ids from a generator seeded with `seed`, so that a session can
    /// be replayed byte for byte (tests, fuzzing).
    pub fn with_seed(mut self, seed: u64) -> Session {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// Counts acknowledged messages in `acked`, shared by every session of a server, so that
    /// the `drop_after_ack` fault loses the 1st, 11th, 21st, ... message since start rather
    /// than since this session's start.
    pub fn with_ack_count(mut self, acked: Arc<AtomicU64>) -> Session {
        self.acked = acked;
        self
    }

    /// Queues the greeting (or an injected one) and says what to do next.
    pub fn greet(&mut self) -> Event {
        let injection = self.config.faults.inject("CONNECT");
        match injection.outcome {
            Some(InjectedOutcome::Disconnect) => self.phase = Phase::Closed,
            Some(InjectedOutcome::Reply(code, text)) => {
                self.raw_reply(code, &text);
                if code == 421 {
                    self.phase = Phase::Closed;
                } else {
                    self.refuse_all = true;
                }
            }
            None => {
                let lines = texts::greeting(&self.config.variants, &self.config.hostname);
                self.lines_reply(220, &lines);
            }
        }
        if !injection.delay.is_zero() {
            return Event::Delay(injection.delay);
        }
        self.step()
    }

    /// Adds bytes read from the client.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Takes the reply bytes queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether the session is inside message data, where a shutdown waits for the end.
    pub fn in_message_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
            || matches!(&self.tx, Some(tx) if tx.chunks.is_some())
    }

    /// Queues a 421 reply and closes (idle timeout, shutdown, too many connections).
    pub fn abort(&mut self, enhanced: &str, text: &str) {
        self.reply(421, enhanced, text);
        self.phase = Phase::Closed;
    }

    /// The server is shutting down: the session says 421 and closes, unless it is receiving a
    /// message and the grace period for that is not over. Whether it closes.
    pub fn shutting_down(&mut self, grace_over: bool) -> bool {
        if self.in_message_data() && !grace_over {
            return false;
        }
        // A client still streaming data when the grace period ends is cut off; its message
        // was never acknowledged.
        self.abort("4.3.2", "Server shutting down");
        true
    }

    /// TLS is up: forget everything learnt in plain text (RFC 3207 section 4.2).
    pub fn tls_started(&mut self) {
        if !self.answers(Pending::Tls) {
            return;
        }
        self.tls = true;
        if !self.fault(Policy::KeepSessionAfterStarttls) {
            self.helo = None;
            self.esmtp = false;
        }
        self.user = None;
        self.tx = None;
        self.phase = Phase::Command;
        if !self.fault(Policy::StarttlsInjection) {
            // Bytes sent before the handshake were not protected by it; executing them would
            // let an attacker inject commands into the TLS session (CVE-2011-0411).
            self.input.clear();
        }
    }

    /// The verdict on credentials requested with [`Event::Authenticate`].
    pub fn auth_result(&mut self, account: Option<String>) {
        let login = match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Waiting(Pending::Auth { login }) => login,
            other => {
                tracing::warn!(phase = ?other, "an answer the session does not wait for; ignored");
                self.phase = other;
                return;
            }
        };
        match account {
            Some(account) => {
                self.reply(235, "2.7.0", "Authentication successful");
                self.user = Some(account);
            }
            None if self.fault(Policy::AuthRevealsUnknownUser)
                && self.config.account(&login).is_none() =>
            {
                self.error(535, "5.7.8", "No such user")
            }
            None if self.fault(Policy::NoAuthThrottle) => {
                self.reply(535, "5.7.8", "Authentication credentials invalid")
            }
            // Failed logins count as errors, so a guesser is disconnected after
            // `limits.max_errors` of them.
            None => self.error(535, "5.7.8", "Authentication credentials invalid"),
        }
    }

    /// The outcome of an [`Event::CheckSenderDomain`].
    pub fn sender_verdict(&mut self, verdict: Verdict) {
        let (sender, smtputf8) = match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Waiting(Pending::SenderDomain { sender, smtputf8 }) => (sender, smtputf8),
            other => {
                tracing::warn!(phase = ?other, "sender verdict while not waiting for one; ignored");
                self.phase = other;
                return;
            }
        };
        match verdict {
            Verdict::Pass(_) => self.open_transaction(sender, smtputf8),
            Verdict::Fail(why) => self.error(
                550,
                "5.1.8",
                &format!("<{sender}>: Sender address rejected: {why}"),
            ),
            Verdict::TempFail(why) => self.reply(
                450,
                "4.1.8",
                &format!("<{sender}>: Sender address rejected: cannot check its domain now: {why}"),
            ),
        }
    }

    /// Whether the session waits for `answer`; if so it goes back to reading commands. An
    /// answer it does not wait for (a driver bug) is logged and changes nothing.
    fn answers(&mut self, answer: Pending) -> bool {
        if matches!(&self.phase, Phase::Waiting(waiting) if *waiting == answer) {
            self.phase = Phase::Command;
            return true;
        }
        tracing::warn!(phase = ?self.phase, "an answer the session does not wait for; ignored");
        false
    }

    /// The outcome of an [`Event::Deliver`].
    pub fn delivery_result(&mut self, id: &str, result: Result<(), StoreError>) {
        if !self.answers(Pending::Delivery) {
            return;
        }
        self.tx = None;
        match result {
            Ok(()) => {
                // Like Postfix's hard error limit: errors count between deliveries, so a
                // long-lived relay connection is not cut off for occasional bad recipients.
                self.errors = 0;
                self.commands.mail_done();
                self.reply(250, "2.0.0", &format!("Ok: queued as {id}"));
            }
            Err(why) => {
                tracing::error!(id, "delivery failed: {why}");
                self.reply(451, "4.3.0", "Local error in processing; try again later");
            }
        }
    }

    /// Runs until the session needs something from the driver.
    pub fn step(&mut self) -> Event {
        if let Some(command) = self.delayed.take()
            && let Some(event) = self.execute(command)
        {
            return event;
        }
        loop {
            if self.errors >= self.config.limits.max_errors
                && !matches!(self.phase, Phase::Closed)
                && !self.fault(Policy::NoErrorLimit)
            {
                if self.variant(Variant::SmtpErrorLimit5yz) {
                    // The 5yz reply to the last error was the last word (RFC 5321 7.8).
                    self.phase = Phase::Closed;
                } else {
                    self.abort("4.7.0", "Too many errors; closing connection");
                }
            }
            let limit = self.size_limit();
            if matches!(self.phase, Phase::Data(_)) && self.fault(Policy::StripNul) {
                self.input.retain(|&byte| byte != 0);
            }
            match &mut self.phase {
                Phase::Closed => return Event::Close,
                Phase::Waiting(_) => return Event::NeedInput,
                Phase::Data(receiver) => match receiver.feed(&self.input) {
                    Progress::NeedMore => {
                        self.input.clear();
                        return Event::NeedInput;
                    }
                    Progress::Done(consumed) => {
                        self.input.drain(..consumed);
                        let Phase::Data(receiver) =
                            std::mem::replace(&mut self.phase, Phase::Command)
                        else {
                            unreachable!("phase checked above");
                        };
                        if let Some(event) = self.end_of_data(receiver.finish()) {
                            return event;
                        }
                    }
                },
                Phase::Bdat {
                    remaining, refusal, ..
                } => {
                    let take = (*remaining).min(self.input.len() as u64) as usize;
                    *remaining -= take as u64;
                    let chunk = &self.input[..take];
                    if refusal.is_none()
                        && let Some(Transaction {
                            chunks: Some(buf), ..
                        }) = &mut self.tx
                    {
                        if (buf.len() + chunk.len()) as u64 > limit {
                            *refusal = Some((
                                552,
                                format!(
                                    "5.3.4 Message size exceeds fixed maximum message size ({limit} octets)"
                                ),
                            ));
                        } else {
                            buf.extend_from_slice(chunk);
                        }
                    }
                    self.input.drain(..take);
                    if *remaining > 0 {
                        return Event::NeedInput;
                    }
                    let Phase::Bdat {
                        size,
                        last,
                        refusal,
                        ..
                    } = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!("phase checked above");
                    };
                    if let Some(event) = self.end_of_chunk(size, last, refusal) {
                        return event;
                    }
                }
                Phase::Command | Phase::AuthPlain | Phase::AuthLogin { .. } => {
                    let Some(line) = self.next_line() else {
                        return Event::NeedInput;
                    };
                    let event = match std::mem::replace(&mut self.phase, Phase::Command) {
                        Phase::AuthPlain => self.sasl_plain(&line),
                        Phase::AuthLogin { login } => self.sasl_login(login, &line),
                        _ => self.command_line(&line),
                    };
                    if let Some(event) = event {
                        return event;
                    }
                }
            }
        }
    }

    /// Takes one line from the input, handling over-long lines; `None` when incomplete.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let limit = MAX_AUTH_LINE;
            let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > limit {
                    self.input.clear();
                    if !self.discarding_long_line {
                        self.discarding_long_line = true;
                        self.error(500, "5.5.2", "Line too long");
                    }
                }
                return None;
            };
            let mut line: Vec<u8> = self.input.drain(..=lf).collect();
            if std::mem::take(&mut self.discarding_long_line) {
                continue;
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let auth_line = matches!(self.phase, Phase::AuthPlain | Phase::AuthLogin { .. })
                || line
                    .get(..5)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
            let max = if auth_line || self.fault(Policy::NoLineLimit) {
                MAX_AUTH_LINE
            } else {
                MAX_COMMAND_LINE
            };
            if line.len() + 2 > max {
                self.phase = Phase::Command;
                self.error(
                    500,
                    "5.5.2",
                    &format!("Line too long (limit {max} octets including CRLF)"),
                );
                continue;
            }
            return Some(line);
        }
    }

    fn command_line(&mut self, line: &[u8]) -> Option<Event> {
        if self.variant(Variant::SmtpNoChunking)
            && line
                .split(|&b| b == b' ')
                .next()
                .is_some_and(|verb| verb.eq_ignore_ascii_case(b"BDAT"))
        {
            // A server without CHUNKING does not know BDAT; what follows is read as commands.
            self.error(500, "5.5.1", "Command unrecognized: BDAT");
            return None;
        }
        if self.fault(Policy::RelayAddressTricks) && self.tx.is_some() && self.relay_trick(line) {
            let path = String::from_utf8_lossy(&line[8..]).trim().to_owned();
            tracing::warn!(%path, "FAULT relay_address_tricks: accepting mail that will be discarded");
            let tx = self.tx.get_or_insert_default();
            tx.discarded.push(path);
            tx.accepted += 1;
            self.reply(250, "2.1.5", "Recipient OK");
            return None;
        }
        if self.fault(Policy::VrfyDisclosesUsers)
            && line
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"EXPN "))
        {
            self.disclose(&String::from_utf8_lossy(&line[5..]));
            return None;
        }
        let parsed = command::parse(line).or_else(|error| self.lenient_path(line).ok_or(error));
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                let (code, enhanced, text) = self.parse_error(error);
                // A BDAT chunk follows its line even when the line is bad: skip it so its bytes
                // are not taken for commands, or hang up when its end cannot be known.
                if line
                    .get(..5)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"BDAT "))
                {
                    match bdat_size(&line[5..]) {
                        Some(size) => self.start_chunk(
                            size,
                            false,
                            Some((code, format!("{enhanced} {text}"))),
                        ),
                        None => {
                            self.error(code, enhanced, &text);
                            self.abort("4.5.0", "Cannot find the end of the BDAT chunk");
                        }
                    }
                } else {
                    self.error(code, enhanced, &text);
                }
                return None;
            }
        };
        if self.variant(Variant::SmtpNoPipelining)
            && !self.input.is_empty()
            && !matches!(command, Command::Bdat { .. })
        {
            // Input that came before the reply to this command: a client pipelining where
            // PIPELINING was not offered (Exim's smtp_enforce_sync).
            self.input.clear();
            self.reply(554, "5.5.0", "SMTP synchronization error");
            self.phase = Phase::Closed;
            return None;
        }
        if let (true, Command::Bdat { size, last }) = (self.refuse_all, &command) {
            let text = "5.5.1 Bad sequence of commands: this server refused the session";
            self.start_chunk(*size, *last, Some((503, text.into())));
            return None;
        }
        if self.refuse_all && command != Command::Quit {
            self.error(
                503,
                "5.5.1",
                "Bad sequence of commands: this server refused the session",
            );
            return None;
        }
        if command != Command::Quit
            && !self.fault(Policy::NoCommandLimit)
            && let Err(refusal) = self
                .commands
                .spend(&self.config.limits, Self::nonmail(&command))
        {
            self.abort("4.7.0", &refusal);
            return None;
        }
        let injection = self.config.faults.inject(command.verb());
        match injection.outcome {
            Some(InjectedOutcome::Disconnect) => self.phase = Phase::Closed,
            Some(InjectedOutcome::Reply(code, text)) => {
                if let Command::Bdat { size, last } = command {
                    self.start_chunk(size, last, Some((code, text)));
                } else {
                    self.raw_reply(code, &text);
                    if code == 421 {
                        self.phase = Phase::Closed;
                    }
                }
            }
            None if injection.delay.is_zero() => return self.execute(command),
            None => self.delayed = Some(command),
        }
        Some(Event::Delay(injection.delay))
    }

    /// Whether a command is one of those carrying no mail that `limits.max_nonmail_commands`
    /// counts (the list of Postfix's junk commands and Exim's non-mail ones).
    fn nonmail(command: &Command) -> bool {
        matches!(
            command,
            Command::Ehlo(_)
                | Command::Helo(_)
                | Command::Noop
                | Command::Rset
                | Command::Vrfy(_)
                | Command::Help
                | Command::StartTls
        )
    }

    /// The reply to a command line that did not parse.
    fn parse_error(&self, error: ParseError) -> (u16, &'static str, String) {
        match error {
            ParseError::UnknownCommand(verb) if verb.is_empty() => {
                (500, "5.5.2", "Syntax error: empty command line".into())
            }
            ParseError::UnknownCommand(verb) if self.fault(Policy::UnknownCommand502) => {
                (502, "5.5.1", format!("Command not implemented: {verb}"))
            }
            ParseError::UnknownCommand(verb) => {
                (500, "5.5.1", format!("Command unrecognized: {verb}"))
            }
            ParseError::Syntax(why) => (501, "5.5.2", format!("Syntax error: {why}")),
            ParseError::BadAddress(why) => (501, "5.1.3", format!("Bad address syntax: {why}")),
            ParseError::PathTooLong(why) => (501, "5.1.3", format!("Path too long: {why}")),
        }
    }

    fn execute(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Ehlo(name) => self.ehlo(name, true),
            Command::Helo(name) => self.ehlo(name, false),
            Command::Mail { from, params } => return self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => return self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "Ok");
            }
            Command::Noop => self.reply(250, "2.0.0", "Ok"),
            Command::Quit => {
                self.reply(221, "2.0.0", "Bye");
                self.phase = Phase::Closed;
                return Some(Event::Close);
            }
            Command::Vrfy(name) if self.fault(Policy::VrfyDisclosesUsers) => self.disclose(&name),
            Command::Vrfy(_) => self.reply(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Help => self.reply(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH (RFC 5321)",
            ),
            Command::StartTls => return self.starttls(),
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial),
        }
        None
    }

    /// The `vrfy_discloses_users` fault: whether a VRFY or EXPN argument names an account.
    fn disclose(&mut self, name: &str) {
        let name = name.trim().trim_start_matches('<').trim_end_matches('>');
        let known = self.config.account(name).or_else(|| {
            let domain = self.config.domains.first()?;
            self.config.account(&format!("{name}@{domain}"))
        });
        match known.map(|a| a.address.clone()) {
            Some(address) => self.reply(250, "2.1.5", &format!("<{address}>")),
            None => self.error(550, "5.1.1", "No such user"),
        }
    }

    /// For the `relay_address_tricks` fault: whether a RCPT line's path reaches another domain
    /// through a hosted one: `user%other@hosted`, `other!user@hosted`, `"user@other"@hosted`,
    /// `user@other@hosted`, or the source route `@hosted:user@other`.
    fn relay_trick(&self, line: &[u8]) -> bool {
        let Some(rest) = line
            .get(..8)
            .filter(|verb| verb.eq_ignore_ascii_case(b"RCPT TO:"))
            .and_then(|_| std::str::from_utf8(&line[8..]).ok())
        else {
            return false;
        };
        let path = rest.trim().trim_start_matches('<');
        let path = path.rsplit_once('>').map_or(path, |(path, _)| path);
        if let Some(route) = path.strip_prefix('@') {
            let Some((hops, mailbox)) = route.split_once(':') else {
                return false;
            };
            let first_hop = hops.split(',').next().unwrap_or_default();
            let elsewhere = mailbox
                .rsplit_once('@')
                .is_some_and(|(_, domain)| !self.config.hosts_domain(domain));
            return self.config.hosts_domain(first_hop) && elsewhere;
        }
        path.rsplit_once('@').is_some_and(|(local, domain)| {
            self.config.hosts_domain(domain) && local.contains(['%', '!', '@'])
        })
    }

    fn fault(&self, policy: Policy) -> bool {
        self.config.faults.has(policy)
    }

    /// The message size enforced (the advertised one unless a fault lifts it).
    fn size_limit(&self) -> u64 {
        if self.fault(Policy::NoSizeLimit) {
            u64::MAX
        } else {
            self.config.limits.message_size
        }
    }

    /// Under the `lenient_paths` fault, `MAIL FROM:a@b` is read as `MAIL FROM:<a@b>`.
    fn lenient_path(&self, line: &[u8]) -> Option<Command> {
        if !self.fault(Policy::LenientPaths) {
            return None;
        }
        let text = std::str::from_utf8(line).ok()?;
        let colon = text.find(':')?;
        let (head, rest) = text.split_at(colon + 1);
        let (path, params) = rest.split_once(' ').unwrap_or((rest, ""));
        if path.starts_with('<') {
            return None;
        }
        command::parse(format!("{head}<{path}> {params}").trim_end().as_bytes()).ok()
    }

    fn auth_offered(&self) -> bool {
        !self.no_auth_on_this_port()
            && (self.tls
                || (self.fault(Policy::AuthBeforeTls) && self.conn.tls_mode != TlsMode::Implicit))
    }

    /// Port 25 without AUTH at all (variant `smtp_no_auth_on_relay_port`).
    fn no_auth_on_this_port(&self) -> bool {
        self.conn.role == Role::Smtp && self.variant(Variant::SmtpNoAuthOnRelayPort)
    }

    fn ehlo(&mut self, name: String, esmtp: bool) {
        self.tx = None;
        self.esmtp = esmtp;
        let hostname = self.config.hostname.clone();
        // The greeting names the client when that fits a reply line (RFC 5321 4.5.3.1.5: 512
        // octets): a 253-octet hostname and a 255-octet EHLO name would not.
        let greeting = format!(
            "{hostname} {}",
            texts::ehlo_greet(&self.config.variants, &name)
        );
        let greeting = if greeting.len() + 6 <= 512 {
            greeting
        } else {
            hostname
        };
        if !esmtp {
            self.helo = Some(name);
            let helo_line = if self.variant(Variant::SmtpOtherTexts) {
                greeting
            } else {
                self.config.hostname.clone()
            };
            self.lines_reply(250, &[helo_line]);
            return;
        }
        let mut keywords: Vec<(Option<Variant>, String)> = vec![
            (Some(Variant::SmtpNoPipelining), "PIPELINING".into()),
            (
                Some(Variant::SmtpNoSize),
                format!("SIZE {}", self.config.limits.message_size),
            ),
            (Some(Variant::SmtpNo8bitmime), "8BITMIME".into()),
            (
                Some(Variant::SmtpNoEnhancedStatusCodes),
                "ENHANCEDSTATUSCODES".into(),
            ),
        ];
        if self.conn.tls_mode == TlsMode::Starttls
            && (!self.tls || self.fault(Policy::StarttlsAfterTls))
        {
            keywords.push((None, "STARTTLS".into()));
        }
        if self.auth_offered() && self.user.is_none() && !self.fault(Policy::AuthNotAdvertised) {
            keywords.push((None, "AUTH PLAIN LOGIN".into()));
        }
        if self.fault(Policy::DsnPlainBounces) {
            keywords.push((None, "DSN".into()));
        }
        keywords.extend([
            (Some(Variant::SmtpNoSmtputf8), "SMTPUTF8".into()),
            (Some(Variant::SmtpNoChunking), "CHUNKING".into()),
            (None, "HELP".into()),
        ]);
        let mut keywords: Vec<String> = keywords
            .into_iter()
            .filter(|(left_out_by, _)| left_out_by.is_none_or(|v| !self.variant(v)))
            .map(|(_, keyword)| keyword)
            .collect();
        if self.variant(Variant::SmtpOtherTexts) {
            keywords.reverse();
        }
        self.helo = Some(name);
        let mut lines = vec![greeting];
        lines.extend(keywords);
        self.lines_reply(250, &lines);
    }

    fn starttls(&mut self) -> Option<Event> {
        let inside_tls = self.tls || self.conn.tls_mode != TlsMode::Starttls;
        if inside_tls && self.fault(Policy::StarttlsInsideTls) {
            tracing::warn!("FAULT starttls_inside_tls: answering STARTTLS inside TLS");
            self.reply(220, "2.0.0", "Ready to start TLS");
        } else if self.conn.tls_mode != TlsMode::Starttls {
            self.error(502, "5.5.1", "STARTTLS not available on this port");
        } else if self.tls {
            self.error(503, "5.5.1", "TLS already active");
        } else if self.tx.is_some() {
            self.error(
                503,
                "5.5.1",
                "STARTTLS not allowed during a mail transaction",
            );
        } else {
            self.reply(220, "2.0.0", "Ready to start TLS");
            if self.fault(Policy::StarttlsResponseInjection) {
                self.reply(250, "2.0.0", "Sent in clear text after the go-ahead");
            }
            self.phase = Phase::Waiting(Pending::Tls);
            return Some(Event::StartTls);
        }
        None
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>) -> Option<Event> {
        if !self.esmtp {
            self.error(503, "5.5.1", "Send EHLO first");
        } else if self.user.is_some() && !self.fault(Policy::ReauthAllowed) {
            self.error(503, "5.5.1", "Already authenticated");
        } else if self.tx.is_some() {
            self.error(503, "5.5.1", "AUTH not allowed during a mail transaction");
        } else if self.no_auth_on_this_port() {
            self.error(502, "5.5.1", "AUTH not available on this port");
        } else if !self.auth_offered() {
            self.error(530, "5.7.0", "Must issue a STARTTLS command first");
        } else {
            match (mechanism.as_str(), initial) {
                ("PLAIN", Some(response)) => return self.sasl_plain(response.as_bytes()),
                ("PLAIN", None) => {
                    self.raw_reply(334, "");
                    self.phase = Phase::AuthPlain;
                }
                ("LOGIN", _) if self.fault(Policy::NoAuthLogin) => {
                    self.error(504, "5.5.4", "Unrecognized authentication type")
                }
                ("LOGIN", Some(response)) => return self.sasl_login(None, response.as_bytes()),
                ("LOGIN", None) => {
                    self.raw_reply(334, &auth::encode("Username:"));
                    self.phase = Phase::AuthLogin { login: None };
                }
                _ if self.fault(Policy::LenientSasl) => {
                    self.error(535, "5.7.8", "Authentication credentials invalid")
                }
                _ => self.error(504, "5.5.4", "Unrecognized authentication type"),
            }
        }
        None
    }

    fn sasl_text(&mut self, line: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(line);
        if text == "*" {
            if self.fault(Policy::LenientSasl) {
                self.error(535, "5.7.8", "Authentication credentials invalid");
            } else {
                self.error(501, "5.0.0", "Authentication cancelled");
            }
            return None;
        }
        Some(text.into_owned())
    }

    fn sasl_failed(&mut self, error: SaslError) {
        if self.fault(Policy::LenientSasl) {
            return self.error(535, "5.7.8", "Authentication credentials invalid");
        }
        self.error(501, "5.5.2", &format!("Cannot decode response: {error}"));
    }

    fn sasl_plain(&mut self, line: &[u8]) -> Option<Event> {
        let text = self.sasl_text(line)?;
        match auth::decode_response(&text).and_then(|payload| auth::parse_plain(&payload)) {
            Ok((login, password)) => Some(self.authenticate(login, password)),
            Err(error) => {
                self.sasl_failed(error);
                None
            }
        }
    }

    /// Asks the driver to check credentials.
    fn authenticate(&mut self, login: String, password: String) -> Event {
        self.phase = Phase::Waiting(Pending::Auth {
            login: login.clone(),
        });
        Event::Authenticate {
            login,
            password: auth::Password::new(password),
        }
    }

    fn sasl_login(&mut self, login: Option<String>, line: &[u8]) -> Option<Event> {
        let text = self.sasl_text(line)?;
        match (login, auth::decode_text(&text)) {
            (_, Err(error)) => self.sasl_failed(error),
            (None, Ok(login)) => {
                self.raw_reply(334, &auth::encode("Password:"));
                self.phase = Phase::AuthLogin { login: Some(login) };
            }
            (Some(login), Ok(password)) => return Some(self.authenticate(login, password)),
        }
        None
    }

    fn mail(&mut self, from: Option<Address>, params: Vec<Param>) -> Option<Event> {
        if self.helo.is_none() {
            return self.fail(503, "5.5.1", "Send EHLO or HELO first");
        }
        if self.tx.is_some() && !self.fault(Policy::NestedMail) {
            return self.fail(503, "5.5.1", "Nested MAIL command");
        }
        if self.conn.role.requires_auth()
            && !self.authorised()
            && !self.fault(Policy::MailWithoutAuth)
        {
            return self.fail(530, "5.7.0", "Authentication required");
        }
        let mut smtputf8 = false;
        for param in &params {
            if !self.esmtp {
                return self.fail(555, "5.5.4", "MAIL parameters need EHLO, not HELO");
            }
            let value = param.value.as_deref();
            let unknown = match param.keyword.as_str() {
                "SIZE" => self.variant(Variant::SmtpNoSize),
                "BODY" => self.variant(Variant::SmtpNo8bitmime),
                "SMTPUTF8" => self.variant(Variant::SmtpNoSmtputf8),
                _ => false,
            };
            if unknown {
                // The parameter of an extension this server does not have (RFC 5321 4.1.1.11).
                return self.fail(
                    555,
                    "5.5.4",
                    &format!("MAIL parameter {} not recognized", param.keyword),
                );
            }
            match (param.keyword.as_str(), value) {
                ("SIZE", Some(size)) => match size.parse::<u64>() {
                    Ok(size) if size > self.size_limit() => {
                        return self.fail(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed maximum message size",
                        );
                    }
                    Ok(_) => {}
                    Err(_) => return self.fail(501, "5.5.4", "SIZE value is not a number"),
                },
                ("BODY", Some(body))
                    if body.eq_ignore_ascii_case("7BIT")
                        || body.eq_ignore_ascii_case("8BITMIME") => {}
                ("BODY", _) => return self.fail(501, "5.5.4", "BODY must be 7BIT or 8BITMIME"),
                ("SMTPUTF8", None) => smtputf8 = true,
                ("SMTPUTF8", Some(_)) => {
                    return self.fail(501, "5.5.4", "SMTPUTF8 takes no value");
                }
                ("AUTH", Some(_)) => {}
                (keyword, _) => {
                    return self.fail(
                        555,
                        "5.5.4",
                        &format!("MAIL parameter {keyword} not recognized"),
                    );
                }
            }
        }
        if from.as_ref().is_some_and(|a| !a.is_ascii())
            && !smtputf8
            && !self.fault(Policy::Utf8WithoutSmtputf8)
        {
            return self.fail(
                553,
                "5.6.7",
                "Non-ASCII address needs the SMTPUTF8 parameter",
            );
        }
        let inbound = self.conn.role == Role::Smtp && !self.authorised();
        if inbound && let Some(refusal) = self.client_dns_refusal() {
            return refusal;
        }
        let domain = from
            .as_ref()
            .and_then(|a| a.domain.clone())
            .filter(|d| !self.config.hosts_domain(d));
        let sender = from.map(|a| a.to_string()).unwrap_or_default();
        if inbound
            && self.config.relay.check_sender_domain
            && let Some(domain) = domain
        {
            if self.fault(Policy::RelayNoSenderCheck) {
                tracing::warn!(%domain, "FAULT relay_no_sender_check: not checking the sender domain");
                self.open_transaction(sender, smtputf8);
                return None;
            }
            self.phase = Phase::Waiting(Pending::SenderDomain { sender, smtputf8 });
            return Some(Event::CheckSenderDomain(domain));
        }
        self.open_transaction(sender, smtputf8);
        None
    }

    /// The reply to MAIL when the client's address failed the FCrDNS check.
    fn client_dns_refusal(&mut self) -> Option<Option<Event>> {
        let verdict = self.conn.client_dns.clone()?;
        if self.fault(Policy::RelayNoFcrdns) {
            tracing::warn!(peer = %self.conn.peer, ?verdict, "FAULT relay_no_fcrdns: the client's reverse DNS is not looked at");
            return None;
        }
        match verdict {
            Verdict::Pass(_) => None,
            Verdict::Fail(why) => Some(self.fail(
                550,
                "5.7.25",
                &format!(
                    "Client host rejected: reverse DNS does not confirm {}: {why}",
                    self.conn.peer.ip()
                ),
            )),
            Verdict::TempFail(why) => {
                self.reply(
                    450,
                    "4.7.25",
                    &format!("Client host rejected: cannot check reverse DNS now: {why}"),
                );
                Some(None)
            }
        }
    }

    fn open_transaction(&mut self, sender: String, smtputf8: bool) {
        self.reply(250, "2.1.0", &format!("Sender <{sender}> OK"));
        self.tx = Some(Transaction {
            sender,
            smtputf8,
            ..Transaction::default()
        });
    }

    /// An error reply, for functions that return an event.
    fn fail(&mut self, code: u16, enhanced: &str, text: &str) -> Option<Event> {
        self.error(code, enhanced, text);
        None
    }

    fn rcpt(&mut self, to: Address, params: Vec<Param>) {
        if self.tx.is_none() && self.fault(Policy::RcptWithoutMail) {
            self.tx = Some(Transaction::default());
        }
        let Some(tx) = &self.tx else {
            return self.error(503, "5.5.1", "Need MAIL before RCPT");
        };
        if self.variant(Variant::SmtpProbeDefence) && self.unknown_recipients >= PROBES_TOLERATED {
            // Not counted as an error: the defence answers, the session goes on.
            return self.reply(550, "5.7.1", "Too many invalid recipients");
        }
        if let Some(param) = params.first() {
            return self.error(
                555,
                "5.5.4",
                &format!("RCPT parameter {} not recognized", param.keyword),
            );
        }
        if !to.is_ascii() && !tx.smtputf8 && !self.fault(Policy::Utf8WithoutSmtputf8) {
            return self.error(553, "5.6.7", "Non-ASCII address needs SMTPUTF8 on MAIL");
        }
        if tx.recipients() >= self.config.limits.recipients {
            // Not an error: the client is expected to send the rest in another transaction
            // (RFC 5321 4.5.3.1.10), so this must not count toward disconnection.
            return self.reply(452, "4.5.3", "Too many recipients");
        }
        let hosted = to
            .domain
            .as_deref()
            .is_none_or(|d| self.config.hosts_domain(d));
        let postmaster = to.local.eq_ignore_ascii_case("postmaster");
        let account = match &to.domain {
            Some(_) => self
                .config
                .account(&to.to_string())
                .map(|a| a.address.clone()),
            None => None,
        };
        let discard = |fault: Policy| (self.fault(fault), fault.name());
        let destination = match (hosted, account) {
            (true, Some(account)) => Ok(account),
            (true, None) if postmaster && self.fault(Policy::NoPostmaster) => {
                Err((550, "5.1.1", "Recipient address rejected: no such user"))
            }
            (true, None) if postmaster => {
                self.postmaster()
                    .ok_or((550, "5.1.1", "no postmaster account"))
            }
            (true, None) => match discard(Policy::AcceptUnknownUsers) {
                (true, _) => Err((250, "", "")),
                _ => {
                    self.unknown_recipients += 1;
                    Err((550, "5.1.1", "Recipient address rejected: no such user"))
                }
            },
            (false, _) if self.authorised() => {
                let remote = to.to_string();
                let tx = self.tx.get_or_insert_default();
                if !tx.remote.iter().any(|r| r.eq_ignore_ascii_case(&remote)) {
                    tx.remote.push(remote);
                }
                tx.accepted += 1;
                return self.reply(250, "2.1.5", &format!("Recipient <{to}> OK (relay)"));
            }
            (false, _) if self.fault(Policy::OpenRelay) => Err((250, "", "")),
            (false, _) => Err((554, "5.7.1", "Relay access denied")),
        };
        let tx = self.tx.get_or_insert_default();
        match destination {
            Ok(account) => {
                if !tx.local.contains(&account) {
                    tx.written.push((account.clone(), to.to_string()));
                    tx.local.push(account);
                }
            }
            // Accepted only because a fault is on: the mail has nowhere to go.
            Err((250, _, _)) => {
                tracing::warn!(recipient = %to, "FAULT: accepting mail that will be discarded");
                tx.discarded.push(to.to_string());
            }
            Err((code, enhanced, text)) => {
                return self.error(code, enhanced, &format!("<{to}>: {text}"));
            }
        }
        tx.accepted += 1;
        self.reply(250, "2.1.5", &format!("Recipient <{to}> OK"));
    }

    /// RFC 5321 4.5.1: postmaster must be accepted; it goes to the first account.
    fn postmaster(&self) -> Option<String> {
        self.config.accounts.first().map(|a| a.address.clone())
    }

    fn data(&mut self) -> Option<Event> {
        match &self.tx {
            None => self.error(503, "5.5.1", "Need MAIL and RCPT before DATA"),
            Some(tx) if tx.chunks.is_some() || tx.chunk_error => self.error(
                503,
                "5.5.1",
                "DATA not allowed after BDAT in one transaction",
            ),
            Some(tx) if tx.recipients() == 0 && !self.fault(Policy::DataWithoutRcpt) => {
                self.error(554, "5.5.1", "No valid recipients")
            }
            Some(_) => {
                self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
                self.phase = Phase::Data(
                    DataReceiver::new(self.size_limit(), self.config.limits.line_length)
                        .lenient_lf(self.fault(Policy::BareLfEndOfData))
                        .keep_dots(self.fault(Policy::NoDotUnstuffing)),
                );
            }
        }
        None
    }

    fn bdat(&mut self, size: u64, last: bool) {
        let refusal = match &self.tx {
            _ if !self.esmtp => Some((503, "5.5.1 BDAT needs EHLO".to_owned())),
            None => Some((503, "5.5.1 Need MAIL and RCPT before BDAT".to_owned())),
            Some(tx) if tx.chunk_error => Some((
                503,
                "5.5.1 Transaction failed earlier; send RSET".to_owned(),
            )),
            Some(tx) if tx.recipients() == 0 => Some((554, "5.5.1 No valid recipients".to_owned())),
            Some(_) => None,
        };
        self.start_chunk(size, last, refusal);
    }

    /// Reads a BDAT chunk; with a refusal the bytes are consumed and dropped, so they are never
    /// taken for commands.
    fn start_chunk(&mut self, size: u64, last: bool, refusal: Option<(u16, String)>) {
        if let Some(tx) = &mut self.tx {
            if refusal.is_some() {
                tx.chunk_error = true;
                tx.chunks = None;
            } else {
                tx.chunks.get_or_insert_default();
            }
        }
        self.phase = Phase::Bdat {
            size,
            remaining: size,
            last,
            refusal,
        };
    }

    /// A whole BDAT chunk has been read.
    fn end_of_chunk(
        &mut self,
        size: u64,
        last: bool,
        refusal: Option<(u16, String)>,
    ) -> Option<Event> {
        if let Some((code, text)) = refusal {
            // Chunks after a failed one are refused as RFC 3030 says, but only the first
            // failure counts as the client's error.
            let first_failure = self.tx.as_ref().is_none_or(|tx| !tx.chunk_error);
            if let Some(tx) = &mut self.tx {
                tx.chunk_error = true;
                tx.chunks = None;
            }
            if last {
                // The end of the data ends the transaction, delivered or not.
                self.tx = None;
            }
            if first_failure {
                self.errors += 1;
            }
            self.raw_reply(code, &text);
            if code == 421 {
                self.phase = Phase::Closed;
            }
            return None;
        }
        if !last {
            self.reply(250, "2.0.0", &format!("{size} octets received"));
            return None;
        }
        let body = self
            .tx
            .as_mut()
            .and_then(|tx| tx.chunks.take())
            .unwrap_or_default();
        let checked = match find_bare_newline(&body) {
            Some(violation) => Err(violation),
            None => Ok(body),
        };
        self.end_of_data(checked)
    }

    /// The message is complete: reject it, or hand it over for delivery.
    fn end_of_data(&mut self, message: Result<Vec<u8>, Violation>) -> Option<Event> {
        let body = match message {
            Ok(body) => body,
            Err(violation) => {
                self.tx = None;
                let limits = &self.config.limits;
                let (code, enhanced, text) = match violation {
                    Violation::BareLf(line) => (
                        550,
                        "5.6.0",
                        format!(
                            "Message rejected: bare LF on line {line}; lines must end with CRLF (RFC 5321 2.3.8)"
                        ),
                    ),
                    Violation::BareCr(line) => (
                        550,
                        "5.6.0",
                        format!(
                            "Message rejected: bare CR on line {line}; lines must end with CRLF (RFC 5321 2.3.8)"
                        ),
                    ),
                    Violation::Nul(line) => (
                        550,
                        "5.6.0",
                        format!("Message rejected: NUL octet on line {line} (RFC 6152 section 3)"),
                    ),
                    Violation::LineTooLong(line) => (
                        500,
                        "5.5.2",
                        format!(
                            "Line {line} too long (limit {} octets including CRLF, RFC 5321 4.5.3.1.6)",
                            limits.line_length
                        ),
                    ),
                    Violation::TooLarge => (
                        552,
                        "5.3.4",
                        format!(
                            "Message size exceeds fixed maximum message size ({} octets)",
                            limits.message_size
                        ),
                    ),
                };
                self.error(code, enhanced, &text);
                return None;
            }
        };
        let injection = self.config.faults.inject("EOM");
        match injection.outcome {
            Some(InjectedOutcome::Disconnect) => {
                self.tx = None;
                self.phase = Phase::Closed;
                return Some(Event::Delay(injection.delay));
            }
            Some(InjectedOutcome::Reply(code, text)) => {
                self.tx = None;
                self.raw_reply(code, &text);
                if code == 421 {
                    self.phase = Phase::Closed;
                }
                return Some(Event::Delay(injection.delay));
            }
            None => {}
        }
        let mut tx = self.tx.take().unwrap_or_default();
        let id = queue_id(&mut self.rng);
        let date = time::OffsetDateTime::from(self.clock.wall())
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        let body = if self.conn.role.requires_auth() && self.variant(Variant::SmtpCompletesMessages)
        {
            let author = self.user.as_deref().unwrap_or(&tx.sender).to_owned();
            trace::complete(
                &self.config.variants,
                &body,
                &trace::Completion {
                    author: &author,
                    date: &date,
                    id: &id,
                    hostname: &self.config.hostname,
                },
            )
        } else {
            body
        };
        let mut message = Vec::with_capacity(body.len() + 512);
        if !self.fault(Policy::NoTraceHeaders) {
            let variants = &self.config.variants;
            message.extend_from_slice(trace::return_path(variants, &tx.sender).as_bytes());
            message.extend_from_slice(self.received_header(&tx, &id, &date).as_bytes());
        }
        if self.fault(Policy::Strip8bit) {
            message.extend(body.iter().map(|b| b & 0x7f));
        } else {
            message.extend_from_slice(&body);
        }
        if self.fault(Policy::DiscardMail) {
            tx.discarded.append(&mut tx.local);
            tx.discarded.append(&mut tx.remote);
        }
        let per_recipient = tx
            .written
            .iter()
            .filter(|(account, _)| tx.local.contains(account))
            .map(|(account, written)| {
                let fields = trace::delivery_fields(&self.config.variants, written, account);
                (account.clone(), fields)
            })
            .filter(|(_, fields)| !fields.is_empty())
            .collect();
        self.deliver(Envelope {
            sender: tx.sender,
            local: tx.local,
            remote: tx.remote,
            discarded: tx.discarded,
            message,
            id,
            per_recipient,
        })
    }

    /// Hands a complete message to the driver to store, or acknowledges it at once when there
    /// is nothing to store (every recipient discarded) or the `drop_after_ack` fault loses it.
    fn deliver(&mut self, envelope: Envelope) -> Option<Event> {
        for foreign in &envelope.discarded {
            tracing::warn!(
                id = envelope.id,
                "FAULT open_relay: discarding mail for {foreign}"
            );
        }
        self.phase = Phase::Waiting(Pending::Delivery);
        if envelope.local.is_empty() && envelope.remote.is_empty() {
            // Nothing to store.
        } else if self.fault(Policy::DropAfterAck)
            && self
                .acked
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(10)
        {
            tracing::warn!(
                id = envelope.id,
                "FAULT drop_after_ack: acknowledging a message but storing nothing"
            );
        } else {
            return Some(Event::Deliver(envelope));
        }
        envelope.log_accepted();
        self.delivery_result(&envelope.id, Ok(()));
        None
    }

    /// Whether the client may send as a user: it authenticated, or a POP3 login from its address
    /// vouches for it (POP-before-SMTP; on the submission ports only once TLS is up, as AUTH
    /// would be).
    fn authorised(&self) -> bool {
        self.user.is_some()
            || (self.pop_before_smtp() && (self.tls || !self.conn.role.requires_auth()))
    }

    /// Whether a POP3 login from the client's address vouches for it (unless the
    /// `pop_before_smtp_ignored` fault forgets it).
    fn pop_before_smtp(&self) -> bool {
        self.conn.pop_before_smtp.is_some() && !self.fault(Policy::PopBeforeSmtpIgnored)
    }

    /// The RFC 5321 4.4 trace header, with the RFC 3848 / RFC 6531 protocol keyword.
    fn received_header(&self, tx: &Transaction, id: &str, date: &str) -> String {
        let mut protocol = String::from(match (self.esmtp, tx.smtputf8) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "UTF8SMTP",
        });
        if self.esmtp {
            if self.tls {
                protocol.push('S');
            }
            if self.user.is_some() {
                protocol.push('A');
            }
        }
        let recipient = match (tx.local.as_slice(), tx.remote.as_slice()) {
            ([single], []) | ([], [single]) if tx.discarded.is_empty() => Some(single.as_str()),
            _ => None,
        };
        trace::received(
            &self.config.variants,
            &trace::Hop {
                helo: self.helo.as_deref().unwrap_or("unknown"),
                peer: self.conn.peer.ip(),
                hostname: &self.config.hostname,
                protocol: &protocol,
                id,
                sender: &tx.sender,
                recipient,
                date,
            },
        )
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        let line = if enhanced.is_empty() {
            text.to_owned()
        } else {
            format!("{enhanced} {text}")
        };
        self.raw_reply(code, &line);
    }

    /// A one-line reply, its text as the variants on say (see [`texts::reply_text`]).
    fn raw_reply(&mut self, code: u16, text: &str) {
        let mut text = texts::reply_text(&self.config.variants, code, text);
        // A 334 text is the SASL challenge itself, not words about it.
        if code != 334 && self.variant(Variant::SmtpReplyIds) {
            text = format!("{text} {:012x} - refserv", self.rng.u64(..) >> 16);
        }
        self.output
            .extend_from_slice(format!("{code} {text}\r\n").as_bytes());
    }

    /// A reply of one or more lines written as given (a greeting, EHLO keywords).
    fn lines_reply(&mut self, code: u16, lines: &[String]) {
        for (index, line) in lines.iter().enumerate() {
            let sep = if index + 1 == lines.len() { ' ' } else { '-' };
            self.output
                .extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
        }
    }

    fn variant(&self, variant: Variant) -> bool {
        self.config.variants.has(variant)
    }

    /// An error reply; counts toward the limit after which the client is disconnected.
    fn error(&mut self, code: u16, enhanced: &str, text: &str) {
        self.errors += 1;
        self.reply(code, enhanced, text);
    }
}

/// The chunk size at the start of a BDAT line's arguments, if it can be read.
fn bdat_size(args: &[u8]) -> Option<u64> {
    let word = args.split(|&b| b == b' ').find(|w| !w.is_empty())?;
    if word.len() > 19 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// The first bare CR or LF or NUL in a BDAT message (DATA finds them while receiving).
fn find_bare_newline(body: &[u8]) -> Option<Violation> {
    let mut line = 1;
    for (index, &byte) in body.iter().enumerate() {
        let prev = index.checked_sub(1).map(|i| body[i]);
        let next = body.get(index + 1).copied();
        match byte {
            b'\n' if prev != Some(b'\r') => return Some(Violation::BareLf(line)),
            b'\n' => line += 1,
            b'\r' if next != Some(b'\n') => return Some(Violation::BareCr(line)),
            0 => return Some(Violation::Nul(line)),
            _ => {}
        }
    }
    None
}

/// A short random id naming one accepted message in replies and logs.
fn queue_id(rng: &mut fastrand::Rng) -> String {
    (0..12)
        .map(|_| char::from(b"0123456789ABCDEFGHJKLMNPQRSTVWXZ"[rng.usize(..32)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::StoppedClock;
    use crate::config::Config;

    /// A driver with no socket: TLS is pretended, delivery is recorded.
    struct Harness {
        session: Session,
        delivered: Vec<Envelope>,
        output: String,
        closed: bool,
    }

    impl Harness {
        fn new(role: Role, tls_mode: TlsMode, config: Config) -> Harness {
            let conn = Connection {
                role,
                tls_mode,
                peer: "127.0.0.9:40000".parse().unwrap(),
                pop_before_smtp: None,
                client_dns: None,
            };
            Harness::around(Session::new(Arc::new(config), conn))
        }

        /// Drives `session` from its greeting on.
        fn around(session: Session) -> Harness {
            let mut harness = Harness {
                session,
                delivered: Vec::new(),
                output: String::new(),
                closed: false,
            };
            let event = harness.session.greet();
            harness.run(event);
            harness
        }

        fn smtp() -> Harness {
            Harness::new(Role::Smtp, TlsMode::Starttls, Config::defaults())
        }

        fn run(&mut self, mut event: Event) {
            loop {
                event = match event {
                    Event::NeedInput => break,
                    Event::Delay(_) => self.session.step(),
                    Event::StartTls => {
                        self.session.tls_started();
                        self.session.step()
                    }
                    Event::Authenticate { login, password } => {
                        let verdict = crate::auth::authenticate(
                            &self.session.config,
                            &login,
                            password.expose(),
                        );
                        self.session.auth_result(verdict);
                        self.session.step()
                    }
                    Event::CheckSenderDomain(domain) => {
                        let verdict = match domain.as_str() {
                            "nx.test" => Verdict::Fail("domain nx.test does not exist".into()),
                            "timeout.test" => Verdict::TempFail("no answer".into()),
                            other => Verdict::Pass(other.into()),
                        };
                        self.session.sender_verdict(verdict);
                        self.session.step()
                    }
                    Event::Deliver(envelope) => {
                        let id = envelope.id.clone();
                        self.delivered.push(envelope);
                        self.session.delivery_result(&id, Ok(()));
                        self.session.step()
                    }
                    Event::Close => {
                        self.closed = true;
                        break;
                    }
                };
            }
            let out = self.session.take_output();
            self.output
                .push_str(std::str::from_utf8(&out).expect("replies are UTF-8"));
        }

        /// Sends bytes and returns the replies they produced.
        fn send(&mut self, bytes: &[u8]) -> String {
            let before = self.output.len();
            self.session.push_input(bytes);
            let event = self.session.step();
            self.run(event);
            self.output[before..].to_owned()
        }
    }

    /// One message through a session on `clock` and `seed`: the replies and what was stored.
    fn replay(clock: &Arc<StoppedClock>, seed: u64) -> (String, Vec<u8>) {
        let mut config = Config::defaults();
        config.variants.insert(Variant::SmtpReplyIds);
        let conn = Connection {
            role: Role::Smtp,
            tls_mode: TlsMode::Starttls,
            peer: "127.0.0.9:40000".parse().unwrap(),
            pop_before_smtp: None,
            client_dns: None,
        };
        let session = Session::new(Arc::new(config), conn)
            .with_clock(clock.clone())
            .with_seed(seed);
        let mut h = Harness::around(session);
        h.send(b"EHLO client.test\r\nMAIL FROM:<x@sender.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
        h.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n");
        (h.output, h.delivered.remove(0).message)
    }

    #[test]
    fn a_session_on_a_given_clock_and_seed_replays_byte_for_byte() {
        // Tue, 01 Dec 2026 10:00:00 +0000.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_796_119_200);
        let clock = Arc::new(StoppedClock(at));
        let (replies, stored) = replay(&clock, 7);
        assert_eq!(replay(&clock, 7), (replies.clone(), stored.clone()));
        let text = String::from_utf8(stored).unwrap();
        assert!(
            text.contains(";\r\n\tTue, 01 Dec 2026 10:00:00 +0000\r\n"),
            "the Received date is not the clock's: {text}"
        );
        // Another seed draws other queue and reply ids.
        let (other, _) = replay(&clock, 8);
        assert_ne!(replies, other);
        let queued = |replies: &str| {
            replies
                .lines()
                .find_map(|l| l.strip_prefix("250 2.0.0 Ok: queued as "))
                .map(|rest| rest[..12].to_owned())
                .expect("a queue id")
        };
        assert_ne!(queued(&replies), queued(&other));
    }

    fn codes(replies: &str) -> Vec<&str> {
        replies
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| &l[..3])
            .collect()
    }

    #[test]
    fn relay_port_accepts_local_mail_and_refuses_relay() {
        let mut h = Harness::smtp();
        assert!(h.output.starts_with("220 mail.example.test"));
        let ehlo = h.send(b"EHLO client.test\r\n");
        assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
        let replies = h.send(
            b"MAIL FROM:<x@sender.test>\r\nRCPT TO:<someone@elsewhere.invalid>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
        );
        assert_eq!(
            codes(&replies),
            ["250", "554", "550", "250", "354"],
            "{replies}"
        );
        assert!(replies.contains("554 5.7.1"), "{replies}");
        assert!(replies.contains("550 5.1.1"), "{replies}");
        let end = h.send(b"Subject: hi\r\n\r\n..dot\r\n.\r\n");
        assert!(end.starts_with("250 2.0.0"), "{end}");
        let message = String::from_utf8(h.delivered[0].message.clone()).unwrap();
        assert!(
            message.starts_with(
                "Return-Path: <x@sender.test>\r\nReceived: from client.test ([127.0.0.9])"
            ),
            "{message}"
        );
        assert!(message.contains("with ESMTP id"), "{message}");
        assert!(
            message.ends_with("Subject: hi\r\n\r\n.dot\r\n"),
            "{message}"
        );
        assert_eq!(h.delivered[0].local, ["alice@example.test"]);
    }

    #[test]
    fn answers_the_session_does_not_wait_for_change_nothing() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        h.session.auth_result(Some("alice@example.test".into()));
        h.session.delivery_result("Q1", Ok(()));
        h.session
            .sender_verdict(Verdict::Pass("example.test".into()));
        h.session.tls_started();
        assert!(h.session.take_output().is_empty());
        assert_eq!(h.session.user, None);
        assert!(!h.session.tls);
        assert!(
            h.session.helo.is_some(),
            "an unasked TLS answer reset the session"
        );
        // Waiting for the handshake, a delivery answer is not taken either.
        h.session.push_input(b"STARTTLS\r\n");
        assert!(matches!(h.session.step(), Event::StartTls));
        h.session.take_output();
        h.session.delivery_result("Q1", Ok(()));
        assert!(h.session.take_output().is_empty());
        h.session.tls_started();
        assert!(h.session.tls);
    }

    /// Sends one message from `from` to each of `to`; the replies.
    fn one_message(h: &mut Harness, from: &str, to: &[&str]) -> String {
        let mut commands = format!("MAIL FROM:<{from}>\r\n");
        for rcpt in to {
            commands.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        }
        commands.push_str("DATA\r\n");
        let mut replies = h.send(commands.as_bytes());
        replies.push_str(&h.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n"));
        replies
    }

    #[test]
    fn drop_after_ack_acknowledges_every_message_but_stores_not_the_1st_and_11th() {
        let mut config = Config::defaults();
        config.faults.policy.insert(Policy::DropAfterAck);
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.send(b"EHLO c\r\n");
        for n in 1..=12 {
            let replies = one_message(&mut h, "bob@remote.test", &["alice@example.test"]);
            assert_eq!(codes(&replies), ["250", "250", "354", "250"], "message {n}");
        }
        // Stored: the 2nd to 10th and the 12th; lost: the 1st and the 11th.
        assert_eq!(h.delivered.len(), 10);
        // The count is the server's, shared by its sessions.
        let acked = Arc::new(AtomicU64::new(5));
        let mut config = Config::defaults();
        config.faults.policy.insert(Policy::DropAfterAck);
        let conn = h.session.conn.clone();
        let session = Session::new(Arc::new(config), conn).with_ack_count(acked.clone());
        let mut other = Harness {
            session,
            delivered: Vec::new(),
            output: String::new(),
            closed: false,
        };
        let event = other.session.greet();
        other.run(event);
        other.send(b"EHLO c\r\n");
        for _ in 0..6 {
            one_message(&mut other, "bob@remote.test", &["alice@example.test"]);
        }
        // The 6th to 11th since start: only the 11th is lost.
        assert_eq!(other.delivered.len(), 5);
        assert_eq!(acked.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn without_drop_after_ack_every_message_is_stored() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        for _ in 0..11 {
            one_message(&mut h, "bob@remote.test", &["alice@example.test"]);
        }
        assert_eq!(h.delivered.len(), 11);
    }

    #[test]
    fn a_message_for_nobody_to_store_is_acknowledged_without_asking_the_driver() {
        let mut config = Config::defaults();
        config.faults.policy.insert(Policy::DiscardMail);
        config.faults.policy.insert(Policy::DropAfterAck);
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.send(b"EHLO c\r\n");
        let replies = one_message(&mut h, "bob@remote.test", &["alice@example.test"]);
        assert_eq!(codes(&replies), ["250", "250", "354", "250"]);
        assert!(replies.contains("Ok: queued as "), "{replies}");
        assert!(h.delivered.is_empty());
        // Nothing stored is not counted for drop_after_ack.
        assert_eq!(h.session.acked.load(Ordering::Relaxed), 0);
        // The session goes on.
        assert_eq!(codes(&h.send(b"NOOP\r\n")), ["250"]);
    }

    #[test]
    fn only_auth_reveals_unknown_user_tells_an_unknown_user_from_a_wrong_password() {
        // \0nobody@example.test\0x and \0alice@example.test\0wrong
        let unknown = format!(
            "AUTH PLAIN {}\r\n",
            auth::encode("\0nobody@example.test\0x")
        );
        let wrong = format!(
            "AUTH PLAIN {}\r\n",
            auth::encode("\0alice@example.test\0wrong")
        );
        let mut h = Harness::new(Role::Submission, TlsMode::Implicit, Config::defaults());
        h.send(b"EHLO c\r\n");
        let replies = h.send(unknown.as_bytes());
        assert!(
            replies.starts_with("535 5.7.8 Authentication credentials invalid"),
            "{replies}"
        );
        let mut config = Config::defaults();
        config.faults.policy.insert(Policy::AuthRevealsUnknownUser);
        let mut h = Harness::new(Role::Submission, TlsMode::Implicit, config);
        h.send(b"EHLO c\r\n");
        let replies = h.send(unknown.as_bytes());
        assert_eq!(replies, "535 5.7.8 No such user\r\n");
        let replies = h.send(wrong.as_bytes());
        assert!(
            replies.starts_with("535 5.7.8 Authentication credentials invalid"),
            "{replies}"
        );
        // Both count as errors.
        assert_eq!(h.session.errors, 2);
    }

    #[test]
    fn a_shutdown_waits_only_for_a_message_being_received() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
        assert!(h.session.shutting_down(false));
        assert!(matches!(h.session.step(), Event::Close));
        assert_eq!(
            String::from_utf8(h.session.take_output()).unwrap(),
            "421 4.3.2 Server shutting down\r\n"
        );

        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
        h.send(b"DATA\r\nSubject: hi\r\n");
        assert!(!h.session.shutting_down(false));
        assert!(h.session.take_output().is_empty());
        // The message ends within the grace period: it is stored and acknowledged.
        assert_eq!(codes(&h.send(b"\r\nbody\r\n.\r\n")), ["250"]);
        assert_eq!(h.delivered.len(), 1);

        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\nMAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\n");
        h.send(b"DATA\r\nSubject: hi\r\n");
        // The grace period is over: cut off, nothing stored.
        assert!(h.session.shutting_down(true));
        assert!(matches!(h.session.step(), Event::Close));
        assert_eq!(
            String::from_utf8(h.session.take_output()).unwrap(),
            "421 4.3.2 Server shutting down\r\n"
        );
        assert!(h.delivered.is_empty());
    }

    #[test]
    fn debug_output_shows_no_password() {
        let mut h = Harness::new(Role::Submission, TlsMode::Implicit, Config::defaults());
        h.send(b"EHLO c\r\n");
        // AUTH PLAIN for alice@example.test with the password alice-secret, and the same
        // password through AUTH LOGIN; the session is printed with the line still unread and
        // the event as the driver gets it.
        h.session
            .push_input(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n");
        let unread = format!("{:?}", h.session);
        let event = h.session.step();
        assert!(matches!(event, Event::Authenticate { .. }), "{event:?}");
        for shown in [unread, format!("{event:?}"), format!("{:?}", h.session)] {
            assert!(!shown.contains("alice-secret"), "{shown}");
            assert!(!shown.contains("YWxpY2Utc2VjcmV0"), "{shown}");
            assert!(!shown.contains("AGFsaWNl"), "{shown}");
            // The line as bytes, as a derived Debug of the input buffer would print it.
            let bytes = format!("{:?}", b"AGFsaWNl".as_slice());
            assert!(!shown.contains(bytes.trim_matches(['[', ']'])), "{shown}");
        }
    }

    #[test]
    fn submission_needs_tls_then_auth() {
        let mut h = Harness::new(Role::Submission, TlsMode::Starttls, Config::defaults());
        h.send(b"EHLO c\r\n");
        assert!(
            h.send(b"MAIL FROM:<alice@example.test>\r\n")
                .starts_with("530 5.7.0")
        );
        assert!(
            h.send(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n")
                .starts_with("530 5.7.0")
        );
        assert!(h.send(b"STARTTLS\r\n").starts_with("220 2.0.0"));
        let ehlo = h.send(b"EHLO c\r\n");
        assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        let bad = h.send(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n");
        assert!(bad.starts_with("535 5.7.8"), "{bad}");
        let login = h.send(b"AUTH LOGIN\r\n");
        assert_eq!(login, "334 VXNlcm5hbWU6\r\n");
        assert_eq!(
            h.send(b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n"),
            "334 UGFzc3dvcmQ6\r\n"
        );
        assert!(h.send(b"YWxpY2Utc2VjcmV0\r\n").starts_with("235 2.7.0"));
        let replies = h.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@elsewhere.invalid>\r\nRCPT TO:<bob@example.test>\r\n");
        assert_eq!(codes(&replies), ["250", "250", "250"], "{replies}");
        assert!(replies.contains("OK (relay)"), "{replies}");
        let replies = h.send(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
        assert_eq!(codes(&replies), ["354", "250"], "{replies}");
        let envelope = h.delivered.last().expect("delivered");
        assert_eq!(envelope.local, ["bob@example.test"]);
        assert_eq!(envelope.remote, ["x@elsewhere.invalid"]);
    }

    #[test]
    fn pop_before_smtp_stands_in_for_auth_but_not_for_tls() {
        for role in [Role::Submission, Role::Smtp] {
            let mut h = Harness::new(role, TlsMode::Starttls, Config::defaults());
            h.session.conn.pop_before_smtp = Some("alice@example.test".into());
            h.send(b"EHLO c\r\n");
            let before_tls = h.send(b"MAIL FROM:<alice@example.test>\r\n");
            if role == Role::Submission {
                assert!(before_tls.starts_with("530 5.7.0"), "{before_tls}");
            } else {
                assert!(before_tls.starts_with("250"), "{before_tls}");
                h.send(b"RSET\r\n");
            }
            assert!(h.send(b"STARTTLS\r\n").starts_with("220"));
            h.send(b"EHLO c\r\n");
            let replies = h.send(
                b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@elsewhere.invalid>\r\nRCPT TO:<bob@example.test>\r\n",
            );
            // The foreign recipient is relayed as for an authenticated client.
            assert_eq!(codes(&replies), ["250", "250", "250"], "{role}: {replies}");
            assert!(replies.contains("OK (relay)"), "{replies}");
        }
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, Config::defaults());
        h.send(b"EHLO c\r\n");
        let replies = h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@elsewhere.invalid>\r\n");
        assert_eq!(codes(&replies), ["250", "554"], "{replies}");
    }

    #[test]
    fn the_pop_before_smtp_ignored_fault_forgets_the_grant() {
        let mut config = Config::defaults();
        config.faults.policy.insert(Policy::PopBeforeSmtpIgnored);
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.session.conn.pop_before_smtp = Some("alice@example.test".into());
        h.send(b"EHLO c\r\n");
        let replies =
            h.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@elsewhere.invalid>\r\n");
        assert_eq!(codes(&replies), ["250", "554"], "{replies}");
    }

    #[test]
    fn a_failed_fcrdns_check_refuses_mail_unless_the_fault_ignores_it() {
        for faulty in [false, true] {
            let mut config = Config::defaults();
            if faulty {
                config.faults.policy.insert(Policy::RelayNoFcrdns);
            }
            let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
            h.session.conn.client_dns = Some(Verdict::Fail("no PTR record".into()));
            h.send(b"EHLO c\r\n");
            let reply = h.send(b"MAIL FROM:<a@sender.test>\r\n");
            if faulty {
                assert!(reply.starts_with("250"), "{reply}");
            } else {
                assert!(reply.starts_with("550 5.7.25"), "{reply}");
            }
        }
        // A verdict that cannot be had now is a temporary refusal.
        let mut h = Harness::smtp();
        h.session.conn.client_dns = Some(Verdict::TempFail("no answer".into()));
        h.send(b"EHLO c\r\n");
        assert!(
            h.send(b"MAIL FROM:<a@sender.test>\r\n")
                .starts_with("450 4.7.25")
        );
    }

    #[test]
    fn starttls_discards_injected_commands_unless_faulty() {
        for faulty in [false, true] {
            let mut config = Config::defaults();
            if faulty {
                config.faults.policy.insert(Policy::StarttlsInjection);
            }
            let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
            h.send(b"EHLO c\r\n");
            let replies = h.send(b"STARTTLS\r\nNOOP injected\r\n");
            assert_eq!(
                codes(&replies),
                if faulty {
                    vec!["220", "250"]
                } else {
                    vec!["220"]
                }
            );
        }
    }

    #[test]
    fn smuggled_end_of_data_is_rejected() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
        let replies = h.send(b"x\n.\nMAIL FROM:<evil@b.test>\r\n.\r\n");
        assert_eq!(codes(&replies), ["550"], "{replies}");
        assert!(h.delivered.is_empty());
    }

    #[test]
    fn bdat_chunks_and_consumed_refusals() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        // Without a transaction the chunk is still read, so "QUIT" inside it is not a command.
        let refused = h.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n");
        assert_eq!(codes(&refused), ["503", "250"], "{refused}");
        let replies = h.send(
            b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 5\r\nab\r\nc",
        );
        assert_eq!(codes(&replies), ["250", "250", "250", "250"], "{replies}");
        let last = h.send(b"BDAT 3 LAST\r\nd\r\n");
        assert!(last.starts_with("250 2.0.0 Ok"), "{last}");
        assert!(
            h.delivered[0].message.ends_with(b"\r\n\r\nab\r\ncd\r\n")
                || h.delivered[0].message.ends_with(b"ab\r\ncd\r\n")
        );
    }

    #[test]
    fn bad_bdat_lines_never_leak_their_chunk_into_commands() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        let replies = h.send(b"BDAT 6 LASTX\r\nQUIT\r\nNOOP\r\n");
        assert_eq!(codes(&replies), ["501", "250"], "{replies}");
        assert!(!h.closed);
        let replies = h.send(b"BDAT 99999999999999999999999 LAST\r\nQUIT\r\n");
        assert_eq!(codes(&replies), ["501", "421"], "{replies}");
        assert!(h.closed);
    }

    #[test]
    fn a_refused_last_chunk_ends_the_transaction() {
        let mut config = Config::defaults();
        config.limits.message_size = 10;
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n");
        let replies = h.send(b"BDAT 20 LAST\r\n01234567890123456789MAIL FROM:<a@b.test>\r\n");
        assert_eq!(codes(&replies), ["552", "250"], "{replies}");
    }

    #[test]
    fn limits_and_errors() {
        let mut config = Config::defaults();
        config.limits.message_size = 100;
        config.limits.max_errors = 3;
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.send(b"EHLO c\r\n");
        assert!(
            h.send(b"MAIL FROM:<a@b.test> SIZE=101\r\n")
                .starts_with("552 5.3.4")
        );
        let long = format!("NOOP {}\r\n", "x".repeat(600));
        assert!(h.send(long.as_bytes()).starts_with("500 5.5.2"));
        let last = h.send(b"FROB\r\n");
        assert_eq!(codes(&last), ["500", "421"], "{last}");
        assert!(h.closed);
    }

    #[test]
    fn commands_carrying_no_mail_are_limited_until_a_message_is_accepted() {
        let mut config = Config::defaults();
        config.limits.max_nonmail_commands = 3;
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config.clone());
        // EHLO, NOOP, RSET: three; MAIL and RCPT do not count, nor start the count again.
        let replies = h.send(b"EHLO c\r\nNOOP\r\nMAIL FROM:<a@b.test>\r\nRSET\r\n");
        assert_eq!(codes(&replies), ["250", "250", "250", "250"], "{replies}");
        let replies = h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
        assert_eq!(codes(&replies), ["250", "250", "354"], "{replies}");
        // An accepted message does.
        let replies = h.send(b"Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\nVRFY bob\r\nHELP\r\n");
        assert_eq!(codes(&replies), ["250", "250", "252", "214"], "{replies}");
        assert!(!h.closed);
        let replies = h.send(b"NOOP\r\nNOOP\r\n");
        assert_eq!(codes(&replies), ["421"], "{replies}");
        assert!(
            replies.contains("carry no mail (limit 3 in a row)"),
            "{replies}"
        );
        assert!(h.closed);

        // The fault turns the limit off.
        config.faults.policy.insert(Policy::NoCommandLimit);
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        let replies = h.send(&b"NOOP\r\n".repeat(10));
        assert_eq!(codes(&replies), ["250"; 10], "{replies}");
    }

    #[test]
    fn a_session_has_a_limit_on_all_its_commands() {
        let mut config = Config::defaults();
        config.limits.max_commands = 4;
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        let replies = h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n");
        assert_eq!(
            codes(&replies),
            ["250", "250", "250", "250", "421"],
            "{replies}"
        );
        assert!(replies.contains("in one session (limit 4)"), "{replies}");
        assert!(h.closed);
    }

    #[test]
    fn the_longest_names_still_give_ehlo_lines_of_512_octets_at_most() {
        let mut config = Config::defaults();
        config.hostname = format!("{}.{}", vec!["h".repeat(63); 3].join("."), "h".repeat(61));
        assert_eq!(config.hostname.len(), 253);
        let client = format!("{}.{}", vec!["c".repeat(63); 3].join("."), "c".repeat(63));
        assert_eq!(client.len(), 255);
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config.clone());
        let replies = h.send(format!("EHLO {client}\r\n").as_bytes());
        assert!(
            replies.starts_with(&format!("250-{}\r\n", config.hostname)),
            "{replies}"
        );
        assert!(replies.lines().all(|l| l.len() + 2 <= 512), "{replies}");
        // A shorter name is greeted.
        let replies = h.send(b"EHLO client.test\r\n");
        assert!(replies.contains(" greets client.test\r\n"), "{replies}");
    }

    #[test]
    fn recipient_limit_counts_every_accepted_rcpt() {
        let mut config = Config::defaults();
        config.limits.recipients = 3;
        let mut h = Harness::new(Role::Smtp, TlsMode::Starttls, config);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
        let replies = h.send(
            b"RCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<bob@example.test>\r\n",
        );
        assert_eq!(
            codes(&replies),
            ["250", "550", "250", "250", "452"],
            "{replies}"
        );
        assert!(replies.contains("452 4.5.3"), "{replies}");
    }

    #[test]
    fn injected_faults_delay_replace_and_disconnect() {
        use crate::faults::{CommandFault, FaultAction};
        let mut config = Config::defaults();
        let fault = |at: &str, action| CommandFault {
            at: at.into(),
            probability: 1.0,
            action,
        };
        config.faults.commands = vec![
            fault("NOOP", FaultAction::DelayMs(5)),
            fault(
                "EOM",
                FaultAction::Reply {
                    code: 451,
                    text: "4.3.0 injected".into(),
                },
            ),
            fault("QUIT", FaultAction::Disconnect),
        ];
        let mut session = Session::new(
            Arc::new(config),
            Connection {
                role: Role::Smtp,
                tls_mode: TlsMode::Starttls,
                peer: "127.0.0.9:1".parse().unwrap(),
                pop_before_smtp: None,
                client_dns: None,
            },
        );
        assert!(matches!(session.greet(), Event::NeedInput));
        session.push_input(b"NOOP\r\n");
        assert!(matches!(session.step(), Event::Delay(d) if d == Duration::from_millis(5)));
        assert!(matches!(session.step(), Event::NeedInput));
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.ends_with("250 2.0.0 Ok\r\n"), "{out}");
        session.push_input(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n",
        );
        // The injected reply replaces delivery: no Deliver event, nothing stored.
        assert!(matches!(session.step(), Event::Delay(_)));
        assert!(matches!(session.step(), Event::NeedInput));
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.ends_with("451 4.3.0 injected\r\n"), "{out}");
        session.push_input(b"QUIT\r\n");
        assert!(matches!(session.step(), Event::Delay(_)));
        assert!(matches!(session.step(), Event::Close));
        assert!(
            session.take_output().is_empty(),
            "a disconnect fault sends no reply"
        );
    }

    #[test]
    fn smtputf8_is_required_for_non_ascii() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        assert!(
            h.send("MAIL FROM:<jörg@b.test>\r\n".as_bytes())
                .starts_with("553 5.6.7")
        );
        assert!(
            h.send("MAIL FROM:<jörg@b.test> SMTPUTF8\r\n".as_bytes())
                .starts_with("250")
        );
    }

    #[test]
    fn every_reply_after_ehlo_has_an_enhanced_code() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\n");
        let replies = h.send(b"NOOP\r\nVRFY bob\r\nHELP\r\nFROB\r\nRCPT TO:<a@b.test>\r\nRSET\r\nMAIL FROM:<>\r\nQUIT\r\n");
        for line in replies.lines() {
            let enhanced = line[4..].split(' ').next().unwrap();
            let parts: Vec<&str> = enhanced.split('.').collect();
            assert!(
                parts.len() == 3 && parts.iter().all(|p| p.parse::<u16>().is_ok()),
                "{line}"
            );
            assert_eq!(&line[..1], &enhanced[..1], "class mismatch: {line}");
        }
        assert!(h.closed);
    }

    fn with_variants(role: Role, tls_mode: TlsMode, variants: &[Variant]) -> Harness {
        let mut config = Config::defaults();
        for variant in variants {
            config.variants.insert(*variant);
        }
        Harness::new(role, tls_mode, config)
    }

    /// Sends one command at a time, as a client that waits for each reply.
    fn lockstep(h: &mut Harness, commands: &[&str]) -> Vec<String> {
        commands
            .iter()
            .map(|c| h.send(format!("{c}\r\n").as_bytes()))
            .collect()
    }

    #[test]
    fn extensions_left_out_are_not_advertised_and_their_parameters_refused() {
        for (variant, keyword, command, code) in [
            (
                Variant::SmtpNoSize,
                "SIZE",
                "MAIL FROM:<a@b.test> SIZE=10",
                "555",
            ),
            (
                Variant::SmtpNo8bitmime,
                "8BITMIME",
                "MAIL FROM:<a@b.test> BODY=8BITMIME",
                "555",
            ),
            (
                Variant::SmtpNo8bitmime,
                "8BITMIME",
                "MAIL FROM:<a@b.test> BODY=7BIT",
                "555",
            ),
            (
                Variant::SmtpNoSmtputf8,
                "SMTPUTF8",
                "MAIL FROM:<a@b.test> SMTPUTF8",
                "555",
            ),
            (Variant::SmtpNoChunking, "CHUNKING", "BDAT 3 LAST", "500"),
            (Variant::SmtpNoPipelining, "PIPELINING", "NOOP", "250"),
            (
                Variant::SmtpNoEnhancedStatusCodes,
                "ENHANCEDSTATUSCODES",
                "NOOP",
                "250",
            ),
        ] {
            let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[variant]);
            let ehlo = h.send(b"EHLO c\r\n");
            assert!(!ehlo.contains(keyword), "{variant:?}: {ehlo}");
            assert!(ehlo.contains("HELP"), "{variant:?}: {ehlo}");
            let reply = h.send(format!("{command}\r\n").as_bytes());
            assert!(reply.starts_with(code), "{variant:?}: {command}: {reply}");
        }
        // Without CHUNKING, what follows BDAT is taken for commands.
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpNoChunking]);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n");
        let replies = h.send(b"BDAT 6 LAST\r\nNOOP\r\n");
        assert_eq!(codes(&replies), ["500", "250"], "{replies}");
        assert!(h.delivered.is_empty());
    }

    #[test]
    fn without_enhanced_status_codes_no_reply_has_one() {
        let mut h = with_variants(
            Role::Smtp,
            TlsMode::Starttls,
            &[Variant::SmtpNoEnhancedStatusCodes],
        );
        h.send(b"EHLO c\r\n");
        let replies = h.send(b"NOOP\r\nVRFY bob\r\nFROB\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
        assert_eq!(
            codes(&replies),
            [
                "250", "252", "500", "250", "550", "250", "354", "250", "221"
            ]
        );
        for line in replies.lines() {
            let word = line[4..].split(' ').next().unwrap_or_default();
            assert!(!word.contains('.') || word.contains('@'), "{line}");
        }
    }

    #[test]
    fn without_pipelining_early_commands_end_the_session() {
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpNoPipelining]);
        let replies = lockstep(
            &mut h,
            &[
                "EHLO c",
                "MAIL FROM:<a@b.test>",
                "RCPT TO:<bob@example.test>",
                "DATA",
            ],
        );
        assert!(replies[3].starts_with("354"), "{replies:?}");
        assert!(h.send(b"Subject: x\r\n\r\nhi\r\n.\r\n").starts_with("250"));
        assert_eq!(h.delivered.len(), 1);
        let early = h.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n");
        assert_eq!(codes(&early), ["554"], "{early}");
        assert!(early.contains("synchronization"), "{early}");
        assert!(h.closed);
        // BDAT's chunk follows its command line by design.
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpNoPipelining]);
        lockstep(
            &mut h,
            &[
                "EHLO c",
                "MAIL FROM:<a@b.test>",
                "RCPT TO:<bob@example.test>",
            ],
        );
        assert!(h.send(b"BDAT 3 LAST\r\nx\r\n").starts_with("250"));
        assert!(!h.closed);
    }

    #[test]
    fn relay_port_without_auth() {
        let mut h = with_variants(
            Role::Smtp,
            TlsMode::Starttls,
            &[Variant::SmtpNoAuthOnRelayPort],
        );
        h.session.tls = true;
        let ehlo = h.send(b"EHLO c\r\n");
        assert!(!ehlo.contains("AUTH"), "{ehlo}");
        let auth = h.send(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n");
        assert!(auth.starts_with("502 5.5.1"), "{auth}");
        let mut h = with_variants(
            Role::Submission,
            TlsMode::Starttls,
            &[Variant::SmtpNoAuthOnRelayPort],
        );
        h.session.tls = true;
        assert!(h.send(b"EHLO c\r\n").contains("AUTH PLAIN"));
    }

    #[test]
    fn reply_ids_differ_and_spare_the_challenges() {
        let mut h = with_variants(
            Role::Submission,
            TlsMode::Starttls,
            &[Variant::SmtpReplyIds],
        );
        h.session.tls = true;
        h.send(b"EHLO c\r\n");
        let first = h.send(b"NOOP\r\n");
        let second = h.send(b"NOOP\r\n");
        assert!(first.ends_with(" - refserv\r\n"), "{first}");
        assert_ne!(first, second);
        assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    }

    #[test]
    fn error_limit_5yz_closes_after_the_last_error_reply() {
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpErrorLimit5yz]);
        h.send(b"EHLO c\r\n");
        let limit = h.session.config.limits.max_errors as usize;
        let replies: Vec<String> = (0..limit).map(|_| h.send(b"FROB\r\n")).collect();
        assert!(replies.iter().all(|r| r.starts_with("500 ")), "{replies:?}");
        assert!(!h.output.contains("421"), "{}", h.output);
        assert!(h.closed);
    }

    #[test]
    fn probe_defence_refuses_every_rcpt_after_three_unknown() {
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpProbeDefence]);
        h.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n");
        assert!(h.send(b"RCPT TO:<bob@example.test>\r\n").starts_with("250"));
        for n in 0..3 {
            let reply = h.send(format!("RCPT TO:<no{n}@example.test>\r\n").as_bytes());
            assert!(reply.starts_with("550 5.1.1"), "{reply}");
        }
        for _ in 0..30 {
            let reply = h.send(b"RCPT TO:<alice@example.test>\r\n");
            assert_eq!(reply, "550 5.7.1 Too many invalid recipients\r\n");
        }
        assert!(!h.closed, "the defence keeps the session open");
        assert!(
            h.send(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
                .starts_with("354")
        );
        assert_eq!(h.delivered[0].local, ["bob@example.test"]);
    }

    #[test]
    fn trace_layout_gives_each_local_copy_its_own_delivery_fields() {
        let mut h = with_variants(
            Role::Smtp,
            TlsMode::Starttls,
            &[Variant::SmtpTraceLayout, Variant::SmtpHeaderCase],
        );
        h.send(b"EHLO c\r\nMAIL FROM:<x@sender.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<bob@example.test>\r\n");
        h.send(b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n");
        let envelope = &h.delivered[0];
        let message = String::from_utf8(envelope.message.clone()).unwrap();
        assert!(
            message.starts_with(
                "Return-path: <x@sender.test>\r\nreceived: from [127.0.0.9] (helo=c)\r\n"
            ),
            "{message}"
        );
        assert!(
            message.contains("(envelope-from <x@sender.test>)"),
            "{message}"
        );
        let copies = envelope.copies();
        assert_eq!(copies.len(), 2);
        let alice = String::from_utf8(copies[0].message.to_vec()).unwrap();
        assert_eq!(copies[0].local, ["alice@example.test"]);
        assert!(
            alice.starts_with("Return-path: <x@sender.test>\r\nX-ORIGINAL-TO: postmaster\r\ndelivered-to: alice@example.test\r\nreceived: "),
            "{alice}"
        );
        assert!(
            alice.ends_with("\r\nSubject: hi\r\n\r\nbody\r\n"),
            "{alice}"
        );
        assert_eq!(copies[1].local, ["bob@example.test"]);
        assert!(
            String::from_utf8_lossy(&copies[1].message)
                .contains("delivered-to: bob@example.test\r\n")
        );
        assert!(copies.iter().all(|c| c.remote.is_empty()));
    }

    #[test]
    fn without_per_recipient_fields_there_is_one_copy_for_all() {
        let mut h = Harness::smtp();
        h.send(b"EHLO c\r\nMAIL FROM:<x@sender.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n");
        h.send(b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n");
        let copies = h.delivered[0].copies();
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].local, ["alice@example.test", "bob@example.test"]);
        assert_eq!(&*copies[0].message, h.delivered[0].message.as_slice());
    }

    #[test]
    fn submission_completes_messages_port_25_does_not() {
        let message = b"DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n";
        let mut h = with_variants(
            Role::Submission,
            TlsMode::Starttls,
            &[Variant::SmtpCompletesMessages],
        );
        h.send(b"EHLO c\r\nSTARTTLS\r\n");
        h.send(b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n");
        h.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n");
        h.send(message);
        let stored = String::from_utf8(h.delivered[0].message.clone()).unwrap();
        let (_, own) = stored.split_once("Subject: hi\r\n").expect(&stored);
        assert!(
            own.starts_with("From: <alice@example.test>\r\nDate: "),
            "{stored}"
        );
        assert!(own.contains("\r\nMessage-ID: <"), "{stored}");
        assert!(own.ends_with("\r\n\r\nbody\r\n"), "{stored}");

        let mut h = with_variants(
            Role::Smtp,
            TlsMode::Starttls,
            &[Variant::SmtpCompletesMessages],
        );
        h.send(b"EHLO c\r\nMAIL FROM:<x@b.test>\r\nRCPT TO:<bob@example.test>\r\n");
        h.send(message);
        assert!(
            h.delivered[0]
                .message
                .ends_with(b"\r\nSubject: hi\r\n\r\nbody\r\n")
        );
    }

    #[test]
    fn other_texts_change_words_not_codes() {
        let mut h = with_variants(Role::Smtp, TlsMode::Starttls, &[Variant::SmtpOtherTexts]);
        assert!(
            h.output
                .starts_with("220-mail.example.test Service ready\r\n220 "),
            "{}",
            h.output
        );
        let ehlo = h.send(b"EHLO c\r\n");
        let lines: Vec<&str> = ehlo.lines().collect();
        assert_eq!(
            lines[0],
            "250-mail.example.test Hello c, pleased to meet you"
        );
        assert_eq!(lines[1], "250-HELP");
        assert_eq!(*lines.last().unwrap(), "250 PIPELINING");
        let replies = h.send(b"NOOP\r\nQUIT\r\n");
        assert_eq!(
            replies,
            "250 2.0.0 Requested mail action okay, completed\r\n221 2.0.0 Service closing transmission channel\r\n"
        );
    }
}

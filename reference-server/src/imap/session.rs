//! One IMAP connection: the RFC 3501 states, the port policy of 143 and 993, and the commands
//! built so far, sans I/O. The driver (`imap::driver`) pushes the client's bytes in with
//! [`Session::push_input`], calls [`Session::step`] and does what the [`Event`] asks, sending
//! [`Session::take_output`] and answering with the callback the event names.
//!
//! The session frames the bytes itself (the literal limits, the SASL continuation, the line that
//! ends IDLE), so every protocol decision is here; the driver owns the socket, TLS, the password
//! check and the read deadlines. Store calls are plain synchronous calls: the driver runs each
//! step on the blocking pool. Time comes from an injected [`Clock`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::AString;
use tokio::sync::broadcast;

use super::extensions::{Extension, Extensions};
use super::framing::{Framed, Framer};
use super::mailboxes::{IDLE_POLL, Selected};
use super::namespace::Namespace;
use super::presentation::Presentation;
use crate::auth;
use crate::budget::CommandBudget;
use crate::config::{Config, TlsMode};
use crate::faults::Policy;
use crate::net::Connection;
use crate::store::{Change, Store};
use crate::variants::Variant;

/// How long an IDLE may last: RFC 2177 asks clients to renew IDLE within 29 minutes, so the
/// server waits a little longer than that. The driver also allows this much silence in IDLE.
pub const IDLE_LIMIT: Duration = Duration::from_secs(31 * 60);

/// Largest IMAP command without its literals' data; real commands are far shorter.
const MAX_LINE: u32 = 64 * 1024;

/// Output after which a step stops to let it be sent (pipelined commands, a large FETCH).
const OUTPUT_CHUNK: usize = 1024 * 1024;

pub use crate::clock::{Clock, SystemClock};

/// What the session needs from its driver before it can go on.
#[derive(Debug)]
pub enum Event {
    /// Send the output, read more input and call [`Session::push_input`], then
    /// [`Session::step`]. The driver's read deadline depends on
    /// [`Session::is_authenticated`] and [`Session::in_literal`].
    NeedInput,
    /// Send the output, then call [`Session::step`] again (a large FETCH, or much output from
    /// pipelined commands, goes out in parts).
    More,
    /// Send the output, run the TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Send the output, check these credentials (throttling failures), then call
    /// [`Session::auth_result`].
    Authenticate {
        /// The login name.
        login: String,
        /// The password.
        password: auth::Password,
    },
    /// IDLE (RFC 2177): send the output, then wait for the first of: a notification on
    /// `watch` (call [`Session::changed`]), the instant `until` (a poll, or the end of IDLE's
    /// time), or client input ([`Session::push_input`]); then call [`Session::step`]. The
    /// driver's own limits allow [`IDLE_LIMIT`] of silence.
    WaitForChanges {
        /// The selected mailbox's change notifications, when there is one to watch.
        watch: Option<broadcast::Receiver<Change>>,
        /// When the session wants to look again, changed or not.
        until: Instant,
    },
    /// Send the output and close the connection; `graceful` asks for an orderly shutdown of
    /// the stream (LOGOUT) rather than just dropping it.
    Close {
        /// Shut the stream down (TLS close_notify) before closing.
        graceful: bool,
    },
}

/// What the driver must do after a command's reply (internal to the session's commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Read the next command.
    Continue,
    /// STARTTLS was accepted: run the handshake.
    StartTls,
    /// Check the credentials in `Session::credentials`.
    Authenticate,
    /// Read the client's SASL response line.
    SaslResponse,
    /// IDLE began.
    Idle,
    /// Send the output so far, then go on with the FETCH in `Session::fetch_job`.
    More,
    /// Close the connection.
    Close,
}

/// Credentials waiting for a verdict from the driver (which throttles failures).
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    login: String,
    password: auth::Password,
}

/// The RFC 3501 section 3 states.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    Authenticated { account: String },
    Logout,
}

/// What the session reads next, or waits for.
#[derive(Debug)]
enum Phase {
    /// Commands.
    Command,
    /// The client's line after `+ ` in AUTHENTICATE (RFC 3501 6.2.2).
    SaslResponse { tag: String },
    /// A running IDLE: its `DONE` line, and changes to report meanwhile.
    Idle(Idle),
    /// Output sent, the driver is at work; input waits until its answer comes.
    Waiting(Pending),
    /// The connection ends.
    Closed { graceful: bool },
}

/// What a waiting session waits for: each answer is taken only in its own waiting state.
#[derive(Debug, PartialEq, Eq)]
enum Pending {
    /// The TLS handshake ([`Session::tls_started`]).
    Tls,
    /// The verdict on the credentials of the command tagged `tag` ([`Session::auth_result`]).
    Auth { tag: String },
}

/// A running IDLE (RFC 2177).
#[derive(Debug)]
struct Idle {
    tag: String,
    /// Under [`Variant::ImapIdlePolling`], when it next looks for changes.
    poll: Option<Instant>,
    /// When it has lasted [`IDLE_LIMIT`].
    ends: Instant,
}

/// The IMAP session.
#[derive(Debug)]
pub struct Session {
    pub(super) config: Arc<Config>,
    conn: Connection,
    pub(super) store: Store,
    clock: Arc<dyn Clock>,
    state: State,
    phase: Phase,
    /// The client's bytes, split into commands and lines.
    framer: Framer,
    /// Replies not yet taken by the driver.
    output: Vec<u8>,
    /// A command, line or literal announcement was taken since the driver last asked.
    took_input: bool,
    /// The selected mailbox (RFC 3501 Selected state).
    pub(super) selected: Option<Selected>,
    tls: bool,
    /// The tag of the command that is about to wait (SASL response, IDLE).
    pub(super) pending: Option<String>,
    /// The tag and credentials of a LOGIN or AUTHENTICATE about to be checked.
    credentials: Option<(String, Credentials)>,
    errors: u32,
    commands: CommandBudget,
    /// CONDSTORE is enabled (RFC 7162 3.1): FETCH responses carry MODSEQ.
    pub(super) condstore: bool,
    /// The session must end after this reply (its mailbox went away).
    pub(super) closing: bool,
    /// A FETCH waiting for its output to be sent.
    pub(super) fetch_job: Option<super::selected::FetchJob>,
    /// The extensions on offer (all but those a variant leaves out).
    pub(super) extensions: Extensions,
    /// How mailbox names look to the client.
    pub(super) namespace: Namespace,
    /// Response texts and untagged chatter.
    pub(super) presentation: Presentation,
}

impl Session {
    /// A new session on a connection (after the handshake on an implicit-TLS port).
    pub fn new(
        config: Arc<Config>,
        conn: Connection,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Session {
        // An APPEND literal may be as large as a message may be.
        let max_literal = if config.faults.has(Policy::ImapNoLiteralLimit) {
            u32::MAX
        } else {
            u32::try_from(config.limits.message_size).unwrap_or(u32::MAX)
        };
        let mut framer = Framer::new(max_literal.saturating_add(MAX_LINE), max_literal);
        if config.faults.has(Policy::ImapLiteralPlusIgnored) {
            framer.continue_non_sync();
        }
        if config.variants.has(Variant::ImapNoLiteralPlus) {
            framer.refuse_non_sync();
        }
        Session {
            tls: conn.tls_mode == TlsMode::Implicit,
            conn,
            store,
            clock,
            state: State::NotAuthenticated,
            phase: Phase::Command,
            framer,
            output: Vec::new(),
            took_input: false,
            selected: None,
            pending: None,
            credentials: None,
            errors: 0,
            commands: CommandBudget::default(),
            condstore: false,
            closing: false,
            fetch_job: None,
            extensions: Extensions::of(&config),
            namespace: Namespace::of(&config),
            presentation: Presentation::of(&config),
            config,
        }
    }

    /// Queues the greeting; then as [`Session::step`].
    pub fn greet(&mut self) -> Event {
        let mut greeting = self.greeting();
        if self
            .config
            .faults
            .has(Policy::ImapGreetingCapabilitiesStale)
        {
            greeting = without_tls_capabilities(&greeting);
        }
        self.output.extend_from_slice(&greeting);
        self.step()
    }

    /// Adds bytes read from the client.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// Takes the replies queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether the session took a whole command, line or literal announcement since the last
    /// call: what the client began has been answered (the driver's command deadline restarts).
    pub fn took_input(&mut self) -> bool {
        std::mem::take(&mut self.took_input)
    }

    /// Whether a command with a literal is under way: the driver allows the data limit for it.
    pub fn in_literal(&self) -> bool {
        self.framer.in_literal()
    }

    /// Queues a `* BYE` and closes (a read deadline, a shutdown).
    pub fn abort(&mut self, text: &str) {
        let bye = self.bye(text);
        self.output.extend_from_slice(&bye);
        self.phase = Phase::Closed { graceful: false };
    }

    /// TLS is up after STARTTLS.
    pub fn tls_started(&mut self) {
        if !matches!(self.phase, Phase::Waiting(Pending::Tls)) {
            tracing::warn!(phase = ?self.phase, "a TLS answer the session does not wait for; ignored");
            return;
        }
        self.phase = Phase::Command;
        self.tls = true;
    }

    /// The verdict on the credentials of [`Event::Authenticate`]: the account, or `None`.
    pub fn auth_result(&mut self, account: Option<String>) {
        let tag = match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Waiting(Pending::Auth { tag }) => tag,
            other => {
                tracing::warn!(phase = ?other, "a login verdict the session does not wait for; ignored");
                self.phase = other;
                return;
            }
        };
        let reply = self.login_result(&tag, account);
        self.output.extend_from_slice(&reply);
    }

    /// A change notification for the selected mailbox arrived during IDLE
    /// ([`Event::WaitForChanges`]); call [`Session::step`] next.
    pub fn changed(&mut self) {
        if !matches!(self.phase, Phase::Idle(_)) {
            tracing::warn!(phase = ?self.phase, "a change wake-up the session does not wait for; ignored");
            return;
        }
        self.mark_changed();
    }

    /// Runs until the session needs something from the driver.
    pub fn step(&mut self) -> Event {
        loop {
            if matches!(self.phase, Phase::Command) && self.fetch_job.is_some() {
                let (reply, next) = self.resume();
                self.output.extend_from_slice(&reply);
                if let Some(event) = self.apply(next) {
                    return event;
                }
                continue;
            }
            match &self.phase {
                Phase::Closed { graceful } => {
                    return Event::Close {
                        graceful: *graceful,
                    };
                }
                Phase::Waiting(_) => return Event::NeedInput,
                Phase::Idle(_) => {
                    if let Some(event) = self.idle_step() {
                        return event;
                    }
                    continue;
                }
                Phase::Command | Phase::SaslResponse { .. } => {}
            }
            if self.too_many_errors() {
                self.abort("Too many errors, closing connection");
                continue;
            }
            if let Phase::SaslResponse { .. } = self.phase {
                let Some(response) = self.framer.next_line() else {
                    return Event::NeedInput;
                };
                self.took_input = true;
                let Phase::SaslResponse { tag } =
                    std::mem::replace(&mut self.phase, Phase::Command)
                else {
                    continue;
                };
                let (reply, next) = self.sasl_response(&tag, &response);
                self.output.extend_from_slice(&reply);
                if let Some(event) = self.apply(next) {
                    return event;
                }
                continue;
            }
            match self.framer.next_command() {
                Framed::NeedMore => return Event::NeedInput,
                Framed::Continue => {
                    self.took_input = true;
                    self.output
                        .extend_from_slice(b"+ Ready for literal data\r\n");
                }
                Framed::Reject { tag, reason } => {
                    self.took_input = true;
                    let (status, text) = reason.reply();
                    let reply = self.rejected(tag.as_deref(), status, text);
                    self.output.extend_from_slice(&reply);
                }
                Framed::Command(command) => {
                    self.took_input = true;
                    let (reply, next) = self.handle(*command);
                    self.output.extend_from_slice(&reply);
                    if let Some(event) = self.apply(next) {
                        return event;
                    }
                    if self.output.len() >= OUTPUT_CHUNK {
                        return Event::More;
                    }
                }
            }
        }
    }

    /// Acts on what a command left to do: the event for the driver, or `None` to read on.
    fn apply(&mut self, next: Next) -> Option<Event> {
        match next {
            Next::Continue => None,
            Next::More => Some(Event::More),
            Next::Close => {
                self.phase = Phase::Closed { graceful: true };
                Some(Event::Close { graceful: true })
            }
            Next::StartTls => {
                if !self.config.faults.has(Policy::StarttlsInjection) {
                    // Bytes sent before the handshake were not protected by it (CVE-2011-0411).
                    self.framer.discard_pending();
                }
                self.phase = Phase::Waiting(Pending::Tls);
                Some(Event::StartTls)
            }
            Next::Authenticate => {
                let (tag, credentials) = self.credentials.take()?;
                self.phase = Phase::Waiting(Pending::Auth { tag });
                Some(Event::Authenticate {
                    login: credentials.login,
                    password: credentials.password,
                })
            }
            Next::SaslResponse => {
                let tag = self.pending.take().unwrap_or_else(|| "*".into());
                self.phase = Phase::SaslResponse { tag };
                None
            }
            Next::Idle => {
                let tag = self.pending.take().unwrap_or_else(|| "*".into());
                let now = self.clock.now();
                let poll = self
                    .config
                    .variants
                    .has(Variant::ImapIdlePolling)
                    .then(|| now + IDLE_POLL);
                self.phase = Phase::Idle(Idle {
                    tag,
                    poll,
                    ends: now + IDLE_LIMIT,
                });
                None
            }
        }
    }

    /// One turn of a running IDLE: the line that ends it, its time limit, the changes to
    /// report. `None` when IDLE ended and commands are read again.
    fn idle_step(&mut self) -> Option<Event> {
        let mut idle = match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Idle(idle) => idle,
            other => {
                self.phase = other;
                return None;
            }
        };
        if let Some(line) = self.framer.next_line() {
            self.took_input = true;
            let reply = self.idle_end(&idle.tag, &line);
            self.output.extend_from_slice(&reply);
            return None;
        }
        let now = self.clock.now();
        if now >= idle.ends {
            self.abort("IDLE for too long, closing connection");
            return Some(Event::Close { graceful: false });
        }
        // Made before the session looks for changes itself: see `change_watch`.
        let watch = if idle.poll.is_none() {
            self.change_watch()
        } else {
            None
        };
        let due = match idle.poll {
            Some(poll) if now >= poll => {
                idle.poll = Some(poll + IDLE_POLL);
                self.mark_changed();
                true
            }
            Some(_) => false,
            None => true,
        };
        if due {
            let updates = self.idle_updates();
            self.output.extend_from_slice(&updates);
            if self.closing {
                // The selected mailbox went away: the updates ended with a BYE.
                self.phase = Phase::Closed { graceful: false };
                return Some(Event::Close { graceful: false });
            }
        }
        let until = idle.poll.map_or(idle.ends, |poll| poll.min(idle.ends));
        self.phase = Phase::Idle(idle);
        Some(Event::WaitForChanges { watch, until })
    }

    /// The greeting, with the capabilities as a response code (RFC 3501 7.1) so that clients
    /// need not ask.
    fn greeting(&mut self) -> Vec<u8> {
        let greeting = format!(
            "* OK [CAPABILITY {}] {} IMAP4rev1 reference-server ready\r\n",
            self.capabilities().join(" "),
            self.config.hostname
        );
        self.presentation.retext(greeting.into_bytes())
    }

    /// Whether the client may send a password now: over TLS, or on a listener without TLS at all
    /// (a test set-up), never before STARTTLS on a port that offers it (RFC 3501 6.2.3, RFC 8314).
    fn login_allowed(&self) -> bool {
        self.tls
            || self.conn.tls_mode != TlsMode::Starttls
            || self.config.faults.has(Policy::ImapPlaintextLogin)
    }

    /// The client's address, for logs.
    pub(super) fn peer(&self) -> std::net::SocketAddr {
        self.conn.peer
    }

    /// The capabilities for the current state. Only what is built and on offer is listed.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec!["IMAP4rev1"];
        caps.extend(self.extensions.listed());
        if self.state == State::NotAuthenticated {
            if (self.conn.tls_mode == TlsMode::Starttls && !self.tls)
                || (self.tls && self.config.faults.has(Policy::StarttlsAfterTls))
            {
                caps.push("STARTTLS");
            }
            if self.login_allowed() {
                caps.push("AUTH=PLAIN");
                if self.extensions.offers(Extension::SaslIr) {
                    caps.push(Extension::SaslIr.capability());
                }
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps
    }

    /// Whether the session has made too many errors and should be closed.
    fn too_many_errors(&self) -> bool {
        self.errors >= self.config.limits.max_errors
            && !self.config.faults.has(Policy::NoErrorLimit)
    }

    /// A reply the framer decided on (a malformed or oversized command); counts as an error.
    fn rejected(&mut self, tag: Option<&str>, status: &str, text: &str) -> Vec<u8> {
        self.errors += 1;
        let reply = format!("{} {status} {text}\r\n", tag.unwrap_or("*"));
        self.presentation.retext(reply.into_bytes())
    }

    /// Handles one command: its reply bytes and what the driver does next. Changes other
    /// sessions made to the selected mailbox are reported before the tagged reply, where RFC
    /// 3501 section 7 allows them.
    fn handle(&mut self, command: Command<'_>) -> (Vec<u8>, Next) {
        if let Err(refusal) = self.spend(&command.body) {
            return (self.bye(&refusal), Next::Close);
        }
        let tag = command.tag.as_ref().to_owned();
        let mut out = Vec::new();
        // EXPUNGE responses are not allowed during FETCH, STORE and SEARCH by sequence number
        // (RFC 3501 7.4.1): the client's numbers would shift under it.
        let expunges_allowed = self.config.faults.has(Policy::ImapExpungeDuringFetch)
            || !matches!(
                &command.body,
                CommandBody::Fetch { uid: false, .. }
                    | CommandBody::Store { uid: false, .. }
                    | CommandBody::Search { uid: false, .. }
            );
        let next = if let Some(why) = self.extensions.refusal(&command.body) {
            self.bad(&mut out, &tag, &why);
            Next::Continue
        } else {
            match self.mailbox_command(&tag, command.body, &mut out) {
                Ok(next) => next,
                Err(body) => self.dispatch(&tag, body, &mut out),
            }
        };
        let next = if next == Next::Continue {
            self.finish(&mut out, expunges_allowed)
        } else {
            next
        };
        (self.presentation.retext(out), next)
    }

    /// Counts a command against `limits.max_commands` and `limits.max_nonmail_commands`; any
    /// command but the few that carry no mail starts the count of those again.
    fn spend(&mut self, body: &CommandBody<'_>) -> Result<(), String> {
        if matches!(body, CommandBody::Logout) || self.config.faults.has(Policy::NoCommandLimit) {
            return Ok(());
        }
        let nonmail = matches!(
            body,
            CommandBody::Capability
                | CommandBody::Noop
                | CommandBody::Check
                | CommandBody::Id { .. }
                | CommandBody::Namespace
        );
        self.commands.spend(&self.config.limits, nonmail)?;
        if !nonmail {
            self.commands.mail_done();
        }
        Ok(())
    }

    /// Ends a command's output: other sessions' changes, then the tagged reply, which every
    /// command writes last. Says whether the session goes on.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>, expunges_allowed: bool) -> Next {
        let tagged = split_tagged(out);
        self.report_changes(out, expunges_allowed);
        // Nothing but the tagged reply follows a BYE.
        if let Some(chatter) = self.presentation.before_tagged().filter(|_| !self.closing) {
            line(out, chatter);
        }
        out.extend_from_slice(&self.faulty_status(tagged));
        if self.closing {
            // The command was carried out; its tagged reply goes with the BYE.
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// Counts an error reply.
    pub(super) fn count_error(&mut self) {
        self.errors += 1;
    }

    fn dispatch(&mut self, tag: &str, body: CommandBody<'_>, out: &mut Vec<u8>) -> Next {
        let name = body.name();
        match body {
            // Any state (RFC 3501 6.1).
            CommandBody::Capability => {
                line(
                    out,
                    &format!("* CAPABILITY {}", self.capabilities().join(" ")),
                );
                ok(out, tag, "CAPABILITY completed");
            }
            CommandBody::Noop => ok(out, tag, "NOOP completed"),
            CommandBody::Logout => {
                line(out, "* BYE logging out");
                ok(out, tag, "LOGOUT completed");
                self.state = State::Logout;
                self.selected = None;
                return Next::Close;
            }
            CommandBody::Id { .. } => {
                // RFC 2971: the server may answer NIL; it names itself instead.
                line(out, "* ID (\"name\" \"reference-server\")");
                ok(out, tag, "ID completed");
            }
            // Not authenticated (RFC 3501 6.2).
            CommandBody::StartTLS => return self.starttls(tag, out),
            CommandBody::Login { username, password } => {
                return self.login(tag, &username, password.declassify(), out);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                return self.authenticate(
                    tag,
                    &mechanism,
                    initial_response.map(|r| r.declassify().to_vec()),
                    out,
                );
            }
            // Authenticated.
            CommandBody::Namespace if self.account().is_some() => {
                // One personal namespace (RFC 2342).
                let wrong = self.config.faults.has(Policy::ImapNamespaceDelimiterWrong);
                line(out, &self.namespace.response(wrong));
                ok(out, tag, "NAMESPACE completed");
            }
            _ if self.account().is_none() => {
                self.bad(out, tag, &format!("{name} needs an authenticated session"));
            }
            _ => {
                // Honest about what is missing: NO, not a pretend success.
                self.no(out, tag, &format!("{name} is not built yet in this server"));
            }
        }
        Next::Continue
    }

    /// The `imap_errors_as_ok` fault turns a tagged NO or BAD into OK.
    fn faulty_status(&self, tagged: Vec<u8>) -> Vec<u8> {
        if !self.config.faults.has(Policy::ImapErrorsAsOk) {
            return tagged;
        }
        let text = String::from_utf8_lossy(&tagged);
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some(tag), Some("NO" | "BAD"), Some(rest)) => format!("{tag} OK {rest}").into_bytes(),
            _ => tagged,
        }
    }

    /// The account once authenticated.
    pub(super) fn account(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated { account } => Some(account),
            _ => None,
        }
    }

    fn starttls(&mut self, tag: &str, out: &mut Vec<u8>) -> Next {
        let inside_tls = self.tls || self.conn.tls_mode != TlsMode::Starttls;
        if inside_tls && self.config.faults.has(Policy::StarttlsInsideTls) {
            tracing::warn!("FAULT starttls_inside_tls: answering STARTTLS inside TLS");
            ok(out, tag, "Begin TLS negotiation now");
        } else if self.state != State::NotAuthenticated {
            self.bad(out, tag, "STARTTLS is only allowed before authentication");
        } else if self.conn.tls_mode != TlsMode::Starttls {
            self.bad(out, tag, "STARTTLS is not offered on this port");
        } else if self.tls {
            self.bad(out, tag, "TLS is already active");
        } else {
            ok(out, tag, "Begin TLS negotiation now");
            if self.config.faults.has(Policy::StarttlsResponseInjection) {
                line(out, "* OK Sent in clear text after the go-ahead");
            }
            return Next::StartTls;
        }
        Next::Continue
    }

    fn login(
        &mut self,
        tag: &str,
        user: &AString<'_>,
        pass: &AString<'_>,
        out: &mut Vec<u8>,
    ) -> Next {
        if self.state != State::NotAuthenticated {
            self.bad(out, tag, "Already authenticated");
            return Next::Continue;
        }
        if !self.login_allowed() {
            // RFC 3501 6.2.3 with the RFC 5530 code.
            self.no(
                out,
                tag,
                "[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS",
            );
            return Next::Continue;
        }
        let (Ok(login), Ok(password)) = (
            String::from_utf8(user.as_ref().to_vec()),
            String::from_utf8(pass.as_ref().to_vec()),
        ) else {
            self.no(out, tag, "[AUTHENTICATIONFAILED] Invalid credentials");
            return Next::Continue;
        };
        self.credentials = Some((
            tag.to_owned(),
            Credentials {
                login,
                password: auth::Password::new(password),
            },
        ));
        Next::Authenticate
    }

    fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &AuthMechanism<'_>,
        initial: Option<Vec<u8>>,
        out: &mut Vec<u8>,
    ) -> Next {
        if self.state != State::NotAuthenticated {
            self.bad(out, tag, "Already authenticated");
            return Next::Continue;
        }
        if !self.login_allowed() {
            self.no(
                out,
                tag,
                "[PRIVACYREQUIRED] Authentication is disabled before STARTTLS",
            );
            return Next::Continue;
        }
        if *mechanism != AuthMechanism::Plain {
            self.no(out, tag, "Unsupported authentication mechanism");
            return Next::Continue;
        }
        let initial = initial.filter(|_| !self.config.faults.has(Policy::ImapSaslIrIgnored));
        match initial {
            // SASL-IR (RFC 4959): imap-codec has decoded the base64 already.
            Some(payload) => self.plain_payload(tag, &payload, out),
            None => {
                line(out, "+ ");
                self.pending = Some(tag.to_owned());
                Next::SaslResponse
            }
        }
    }

    /// The client's line after `+ ` in AUTHENTICATE PLAIN (RFC 3501 6.2.2) of the command
    /// tagged `tag`.
    fn sasl_response(&mut self, tag: &str, response: &[u8]) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(response);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "*" {
            self.bad(&mut out, tag, "Authentication cancelled");
            return (self.presentation.retext(out), Next::Continue);
        }
        let next = match auth::decode_response(text) {
            Ok(payload) => self.plain_payload(tag, &payload, &mut out),
            Err(_) => {
                self.bad(&mut out, tag, "Invalid base64 in SASL response");
                Next::Continue
            }
        };
        (self.presentation.retext(out), next)
    }

    fn plain_payload(&mut self, tag: &str, payload: &[u8], out: &mut Vec<u8>) -> Next {
        match auth::parse_plain(payload) {
            Ok((login, password)) => {
                self.credentials = Some((
                    tag.to_owned(),
                    Credentials {
                        login,
                        password: auth::Password::new(password),
                    },
                ));
                Next::Authenticate
            }
            Err(why) => {
                self.no(out, tag, &format!("[AUTHENTICATIONFAILED] {why}"));
                Next::Continue
            }
        }
    }

    /// The verdict on the credentials of the command tagged `tag`: the account, or `None`.
    fn login_result(&mut self, tag: &str, account: Option<String>) -> Vec<u8> {
        let mut out = Vec::new();
        match account {
            Some(account) => {
                tracing::info!(peer = %self.conn.peer, account, "IMAP login");
                self.state = State::Authenticated { account };
                let capabilities = self.capabilities().join(" ");
                ok(
                    &mut out,
                    tag,
                    &format!("[CAPABILITY {capabilities}] Logged in"),
                );
                if self.presentation.chatters() {
                    // Unsolicited, after the tagged reply: the client meets them among the
                    // responses to its next command.
                    line(&mut out, "* OK [ALERT] Welcome back; this server chatters");
                    line(&mut out, &format!("* CAPABILITY {capabilities}"));
                }
            }
            None if self.config.faults.has(Policy::NoAuthThrottle) => line(
                &mut out,
                &format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials"),
            ),
            // Counted, so a guesser is disconnected after `limits.max_errors`.
            None => self.no(&mut out, tag, "[AUTHENTICATIONFAILED] Invalid credentials"),
        }
        self.presentation.retext(out)
    }

    /// Whether a client has logged in.
    pub fn is_authenticated(&self) -> bool {
        self.account().is_some()
    }

    /// A `* BYE`, which ends the session.
    fn bye(&mut self, text: &str) -> Vec<u8> {
        self.state = State::Logout;
        let bye = format!("* BYE {text}\r\n");
        self.presentation.retext(bye.into_bytes())
    }

    fn no(&mut self, out: &mut Vec<u8>, tag: &str, text: &str) {
        self.errors += 1;
        line(out, &format!("{tag} NO {text}"));
    }

    fn bad(&mut self, out: &mut Vec<u8>, tag: &str, text: &str) {
        self.errors += 1;
        line(out, &format!("{tag} BAD {text}"));
    }
}

pub(super) fn ok(out: &mut Vec<u8>, tag: &str, text: &str) {
    line(out, &format!("{tag} OK {text}"));
}

/// Splits off the command's tagged reply, which every command writes last: its final line.
/// (Earlier lines may hold literals; the tagged line never does.)
fn split_tagged(out: &mut Vec<u8>) -> Vec<u8> {
    let body = out.strip_suffix(b"\r\n").unwrap_or(out);
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    out.split_off(start)
}

pub(super) fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The `imap_greeting_capabilities_stale` fault: the greeting without STARTTLS and
/// LOGINDISABLED in its CAPABILITY code, which lists them before TLS.
fn without_tls_capabilities(greeting: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(greeting);
    let (Some(open), Some(close)) = (text.find("[CAPABILITY "), text.find(']')) else {
        return greeting.to_vec();
    };
    let words: Vec<&str> = text[open + 1..close]
        .split(' ')
        .filter(|word| !matches!(*word, "STARTTLS" | "LOGINDISABLED"))
        .collect();
    format!("{}[{}{}", &text[..open], words.join(" "), &text[close..]).into_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::Role;
    use crate::store::INBOX;

    const ALICE: &str = "alice@example.test";

    /// A clock that moves only when told.
    #[derive(Debug)]
    struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    /// A driver with no socket: TLS is pretended, passwords come from the config, the store is
    /// a fresh one in a temporary directory, time is a fake clock.
    struct Harness {
        session: Session,
        store: Store,
        clock: Arc<FakeClock>,
        output: String,
        /// `Some(graceful)` once the session closed.
        closed: Option<bool>,
        /// How many times the session stopped to let a part of its output go.
        parts: usize,
        /// The largest output taken at once.
        largest: usize,
        /// The last IDLE wait asked for.
        waiting: Option<(Option<broadcast::Receiver<Change>>, Instant)>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn new(tls_mode: TlsMode, config: Config) -> Harness {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("store");
            store.ensure_account(ALICE).expect("account");
            let clock = Arc::new(FakeClock(Mutex::new(Instant::now())));
            let conn = Connection {
                role: if tls_mode == TlsMode::Implicit {
                    Role::Imaps
                } else {
                    Role::Imap
                },
                tls_mode,
                peer: "127.0.0.9:40000".parse().unwrap(),
                pop_before_smtp: None,
                client_dns: None,
            };
            let session = Session::new(Arc::new(config), conn, store.clone(), clock.clone());
            let mut harness = Harness {
                session,
                store,
                clock,
                output: String::new(),
                closed: None,
                parts: 0,
                largest: 0,
                waiting: None,
                _dir: dir,
            };
            let event = harness.session.greet();
            harness.run(event);
            harness
        }

        /// Port 143 with the default config.
        fn starttls() -> Harness {
            Harness::new(TlsMode::Starttls, Config::defaults())
        }

        /// Port 993, logged in as alice.
        fn logged_in(config: Config) -> Harness {
            let mut h = Harness::new(TlsMode::Implicit, config);
            let reply = h.send(b"L LOGIN alice@example.test alice-secret\r\n");
            assert!(reply.starts_with("L OK"), "{reply}");
            h
        }

        fn run(&mut self, mut event: Event) {
            loop {
                event = match event {
                    Event::NeedInput => break,
                    Event::WaitForChanges { watch, until } => {
                        self.waiting = Some((watch, until));
                        break;
                    }
                    Event::More => {
                        self.parts += 1;
                        self.take();
                        self.session.step()
                    }
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
                    Event::Close { graceful } => {
                        self.closed = Some(graceful);
                        break;
                    }
                };
            }
            self.take();
        }

        fn take(&mut self) {
            let out = self.session.take_output();
            self.largest = self.largest.max(out.len());
            self.output.push_str(&String::from_utf8_lossy(&out));
        }

        /// Sends bytes and returns the replies they produced.
        fn send(&mut self, bytes: &[u8]) -> String {
            let before = self.output.len();
            self.session.push_input(bytes);
            let event = self.session.step();
            self.run(event);
            self.output[before..].to_owned()
        }

        /// Steps without input (the driver woke for a change or a deadline).
        fn step(&mut self) -> String {
            let before = self.output.len();
            let event = self.session.step();
            self.run(event);
            self.output[before..].to_owned()
        }
    }

    fn config_with(policy: Policy) -> Config {
        let mut config = Config::defaults();
        config.faults.policy.insert(policy);
        config
    }

    fn plain(login: &str, password: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"))
    }

    #[test]
    fn greeting_and_capability_on_the_starttls_port() {
        let mut h = Harness::starttls();
        assert!(
            h.output.starts_with("* OK [CAPABILITY IMAP4rev1 "),
            "{}",
            h.output
        );
        assert!(h.output.contains(" STARTTLS"), "{}", h.output);
        assert!(h.output.contains(" LOGINDISABLED]"), "{}", h.output);
        let reply = h.send(b"a CAPABILITY\r\n");
        let mut lines = reply.lines();
        let caps = lines.next().unwrap_or_default();
        assert!(caps.starts_with("* CAPABILITY IMAP4rev1 "), "{reply}");
        assert!(caps.contains(" STARTTLS") && caps.contains(" LOGINDISABLED"));
        assert!(!caps.contains("AUTH=PLAIN"), "{reply}");
        assert_eq!(lines.next(), Some("a OK CAPABILITY completed"));
        assert_eq!(h.closed, None);
    }

    #[test]
    fn the_stale_greeting_fault_leaves_out_only_the_pre_tls_capabilities() {
        let mut h = Harness::new(
            TlsMode::Starttls,
            config_with(Policy::ImapGreetingCapabilitiesStale),
        );
        assert!(h.output.starts_with("* OK [CAPABILITY IMAP4rev1 "));
        assert!(!h.output.contains("STARTTLS"), "{}", h.output);
        assert!(!h.output.contains("LOGINDISABLED"), "{}", h.output);
        let reply = h.send(b"a CAPABILITY\r\n");
        assert!(reply.contains(" STARTTLS") && reply.contains(" LOGINDISABLED"));
        assert_eq!(
            without_tls_capabilities(
                b"* OK [CAPABILITY IMAP4rev1 IDLE STARTTLS LOGINDISABLED] x\r\n"
            ),
            b"* OK [CAPABILITY IMAP4rev1 IDLE] x\r\n"
        );
        assert_eq!(
            without_tls_capabilities(b"* OK ready\r\n"),
            b"* OK ready\r\n"
        );
    }

    #[test]
    fn login_is_refused_before_starttls_and_allowed_after() {
        let mut h = Harness::starttls();
        let reply = h.send(b"a LOGIN alice@example.test alice-secret\r\n");
        assert_eq!(
            reply,
            "a NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS\r\n"
        );
        assert!(!h.session.is_authenticated());
        // A command sent with STARTTLS, before the handshake, is not run after it.
        let reply = h.send(b"b STARTTLS\r\nx NOOP\r\n");
        assert_eq!(reply, "b OK Begin TLS negotiation now\r\n");
        let reply = h.send(b"c CAPABILITY\r\n");
        assert!(reply.contains(" AUTH=PLAIN"), "{reply}");
        assert!(!reply.contains("LOGINDISABLED") && !reply.contains("STARTTLS"));
        let reply = h.send(b"d LOGIN alice@example.test alice-secret\r\n");
        assert!(reply.starts_with("d OK [CAPABILITY IMAP4rev1"), "{reply}");
        assert!(h.session.is_authenticated());
    }

    #[test]
    fn authenticate_plain_with_a_continuation() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        assert_eq!(h.send(b"a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
        let wrong = format!("{}\r\n", plain(ALICE, "wrong"));
        assert_eq!(
            h.send(wrong.as_bytes()),
            "a NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
        );
        assert_eq!(h.send(b"b AUTHENTICATE PLAIN\r\n"), "+ \r\n");
        assert_eq!(h.send(b"*\r\n"), "b BAD Authentication cancelled\r\n");
        assert_eq!(h.send(b"c AUTHENTICATE PLAIN\r\n"), "+ \r\n");
        // The response may come in pieces; a command-like line is still the SASL response.
        assert_eq!(h.send(b"c NO"), "");
        assert_eq!(
            h.send(b"OP\r\n"),
            "c BAD Invalid base64 in SASL response\r\n"
        );
        assert_eq!(h.send(b"d AUTHENTICATE PLAIN\r\n"), "+ \r\n");
        let right = format!("{}\r\n", plain(ALICE, "alice-secret"));
        let reply = h.send(right.as_bytes());
        assert!(reply.starts_with("d OK [CAPABILITY "), "{reply}");
        assert!(h.session.is_authenticated());
    }

    #[test]
    fn a_literal_over_the_limit_is_refused_unless_the_fault_invites_it() {
        let mut config = Config::defaults();
        config.limits.message_size = 100;
        let mut h = Harness::logged_in(config.clone());
        assert_eq!(
            h.send(b"a APPEND INBOX {101}\r\n"),
            "a NO [TOOBIG] Literal too large\r\n"
        );
        // The client sends no literal after the NO; the next command is read as one.
        assert_eq!(h.send(b"b NOOP\r\n"), "b OK NOOP completed\r\n");
        assert_eq!(
            h.send(b"c APPEND INBOX {5}\r\n"),
            "+ Ready for literal data\r\n"
        );
        assert!(h.send(b"hello\r\n").starts_with("c OK [APPENDUID "));

        config.faults.policy.insert(Policy::ImapNoLiteralLimit);
        let mut h = Harness::logged_in(config);
        assert_eq!(
            h.send(b"a APPEND INBOX {101}\r\n"),
            "+ Ready for literal data\r\n"
        );
    }

    #[test]
    fn literal_plus_is_taken_unless_a_fault_or_variant_says_otherwise() {
        let append = b"a APPEND INBOX {5+}\r\nhello\r\n";
        let mut h = Harness::logged_in(Config::defaults());
        let reply = h.send(append);
        assert!(reply.starts_with("a OK [APPENDUID "), "{reply}");

        let mut h = Harness::logged_in(config_with(Policy::ImapLiteralPlusIgnored));
        let reply = h.send(append);
        assert!(
            reply.starts_with("+ Ready for literal data\r\na OK [APPENDUID "),
            "{reply}"
        );

        let mut config = Config::defaults();
        config.variants.insert(Variant::ImapNoLiteralPlus);
        let mut h = Harness::logged_in(config);
        let reply = h.send(append);
        assert_eq!(
            reply,
            "a BAD Syntax error: {n+} literals need LITERAL+, which is not offered\r\n"
        );
        // The literal's octets were stepped over, not read as a command.
        assert_eq!(h.send(b"b NOOP\r\n"), "b OK NOOP completed\r\n");
    }

    #[test]
    fn idle_reports_a_change_and_ends_with_done() {
        let mut h = Harness::logged_in(Config::defaults());
        assert!(h.send(b"s SELECT INBOX\r\n").contains("s OK [READ-WRITE]"));
        let started = h.clock.now();
        assert_eq!(h.send(b"i IDLE\r\n"), "+ idling\r\n");
        let (watch, until) = h.waiting.take().expect("a wait for changes");
        assert_eq!(until, started + IDLE_LIMIT);
        let mut watch = watch.expect("a watch on the selected mailbox");
        h.store
            .append(ALICE, INBOX, b"Subject: new\r\n\r\nhi\r\n", &[], None)
            .unwrap();
        // The driver's receiver hears of the change; the session reports it.
        assert!(watch.try_recv().is_ok());
        h.session.changed();
        assert_eq!(h.step(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
        assert!(h.waiting.is_some(), "still idling");
        // DONE may come in pieces.
        assert_eq!(h.send(b"DO"), "");
        assert_eq!(h.send(b"NE\r\n"), "i OK IDLE terminated\r\n");
        assert_eq!(h.send(b"n NOOP\r\n"), "n OK NOOP completed\r\n");
    }

    #[test]
    fn idle_polling_looks_on_its_clock_and_idle_ends_after_its_limit() {
        let mut config = Config::defaults();
        config.variants.insert(Variant::ImapIdlePolling);
        let mut h = Harness::logged_in(config);
        h.send(b"s SELECT INBOX\r\n");
        let started = h.clock.now();
        assert_eq!(h.send(b"i IDLE\r\n"), "+ idling\r\n");
        let (watch, until) = h.waiting.take().expect("a wait for changes");
        assert!(watch.is_none(), "a polling IDLE watches nothing");
        assert_eq!(until, started + IDLE_POLL);
        h.store
            .append(ALICE, INBOX, b"Subject: new\r\n\r\nhi\r\n", &[], None)
            .unwrap();
        assert_eq!(h.step(), "", "reported before the poll");
        h.clock.advance(IDLE_POLL);
        assert_eq!(h.step(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
        assert_eq!(h.waiting.take().unwrap().1, started + 2 * IDLE_POLL);
        h.clock.advance(IDLE_LIMIT);
        assert_eq!(h.step(), "* BYE IDLE for too long, closing connection\r\n");
        assert_eq!(h.closed, Some(false));
    }

    #[test]
    fn a_large_fetch_goes_out_in_parts() {
        let mut h = Harness::logged_in(Config::defaults());
        let body = "x".repeat(78) + "\r\n";
        let message = format!("Subject: big\r\n\r\n{}", body.repeat(4000));
        for _ in 0..12 {
            h.store
                .append(ALICE, INBOX, message.as_bytes(), &[], None)
                .unwrap();
        }
        h.send(b"s SELECT INBOX\r\n");
        let reply = h.send(b"f FETCH 1:* BODY.PEEK[]\r\n");
        // About 3.9 MB, in parts of at most a chunk and a message.
        assert!(h.parts >= 2, "{} parts", h.parts);
        let chunk = super::super::selected::FETCH_CHUNK;
        assert!(h.largest < chunk + message.len() + 1024, "{}", h.largest);
        assert_eq!(reply.matches(&format!("{{{}}}", message.len())).count(), 12);
        assert!(
            reply.ends_with("f OK FETCH completed\r\n"),
            "{}",
            &reply[reply.len() - 80..]
        );
        assert_eq!(h.send(b"n NOOP\r\n"), "n OK NOOP completed\r\n");
    }

    #[test]
    fn too_many_errors_end_in_bye() {
        let mut h = Harness::starttls();
        let max = h.session.config.limits.max_errors;
        for n in 1..max {
            let reply = h.send(format!("{n} BOGUS\r\n").as_bytes());
            assert!(reply.starts_with(&format!("{n} BAD")), "{reply}");
        }
        assert_eq!(h.closed, None);
        let reply = h.send(b"last BOGUS\r\n");
        assert!(reply.starts_with("last BAD"), "{reply}");
        assert!(
            reply.ends_with("* BYE Too many errors, closing connection\r\n"),
            "{reply}"
        );
        assert_eq!(h.closed, Some(false));

        let mut h = Harness::new(TlsMode::Starttls, config_with(Policy::NoErrorLimit));
        for n in 0..max + 2 {
            h.send(format!("{n} BOGUS\r\n").as_bytes());
        }
        assert_eq!(h.closed, None);
    }

    #[test]
    fn answers_the_session_does_not_wait_for_are_ignored() {
        let mut h = Harness::starttls();
        h.session.auth_result(Some(ALICE.into()));
        h.session.tls_started();
        h.session.changed();
        assert!(h.session.take_output().is_empty());
        assert!(!h.session.is_authenticated());
        assert!(h.send(b"a CAPABILITY\r\n").contains("LOGINDISABLED"));
        // Waiting for the handshake, a login verdict is not taken.
        h.session.push_input(b"b STARTTLS\r\n");
        assert!(matches!(h.session.step(), Event::StartTls));
        h.session.take_output();
        h.session.auth_result(Some(ALICE.into()));
        assert!(h.session.take_output().is_empty());
        assert!(!h.session.is_authenticated());
        h.session.tls_started();
        // Waiting for a verdict, a TLS answer is not taken; the verdict then is.
        h.session
            .push_input(b"c LOGIN alice@example.test alice-secret\r\n");
        assert!(matches!(h.session.step(), Event::Authenticate { .. }));
        h.session.tls_started();
        h.session.changed();
        assert!(h.session.take_output().is_empty());
        h.session.auth_result(Some(ALICE.into()));
        let reply = String::from_utf8(h.session.take_output()).unwrap();
        assert!(reply.starts_with("c OK [CAPABILITY"), "{reply}");
        assert!(h.session.is_authenticated());
    }
}

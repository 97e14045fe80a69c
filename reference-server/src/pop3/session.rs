//! One POP3 session as a state machine: bytes in, reply bytes out, and requests for what it
//! cannot do itself (TLS, password checks, the maildrop). The socket loop is a thin driver over
//! it, and tests drive it directly with no socket.
//!
//! Lines may end with CRLF or a bare LF: RFC 1939 asks for CRLF, but a bare LF cannot be
//! misread in a command line (unlike in SMTP message data, where it enables smuggling), and
//! hand-typed sessions through `nc` send it.

use std::fmt;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::auth::{self, SaslError};
use crate::budget::CommandBudget;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, TlsMode};
use crate::faults::Policy;
use crate::net::{Connection, dot_stuff};
use crate::pop3::command::{self, Command, Verb};
use crate::store::StoreError;
use crate::variants::Variant;

/// Longest command line, CRLF included (RFC 2449 section 4).
const MAX_COMMAND_LINE: usize = 255;
/// Longest AUTH command or SASL response line. RFC 5034 sets no limit; this is the one
/// RFC 4954 gives SMTP.
const MAX_AUTH_LINE: usize = 12288;
/// The RFC 2449 implementation capability.
const IMPLEMENTATION: &str = "reference-server";

/// What the session needs from its driver before it can go on.
pub enum Event {
    /// Send pending output, then read more input and call [`Session::push_input`].
    NeedInput,
    /// Send pending output, run the TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Check these credentials (`USER`/`PASS` or `AUTH PLAIN`) and call
    /// [`Session::auth_result`].
    Authenticate {
        /// The login name as the client gave it.
        login: String,
        /// The password.
        password: auth::Password,
    },
    /// Check an APOP digest (RFC 1939 section 7): the MD5 of `timestamp` followed by the
    /// account's password, in lower-case hex. Then call [`Session::auth_result`].
    AuthenticateApop {
        /// The login name as the client gave it.
        login: String,
        /// The timestamp of the greeting, angle brackets included.
        timestamp: String,
        /// 32 lower-case hex digits.
        digest: String,
    },
    /// Lock (when `lock` says so) and list the account's INBOX, then call
    /// [`Session::maildrop_opened`]; when the lock is held elsewhere answer
    /// [`MaildropError::InUse`].
    OpenMaildrop {
        /// The canonical account address given to [`Session::auth_result`].
        account: String,
        /// Whether to take the maildrop lock (false only under the `pop3_no_lock` fault).
        lock: bool,
        /// Whether to count each message's CRLF line ends ([`Listed::line_ends`]).
        line_ends: bool,
    },
    /// Read one stored message and call [`Session::retrieved`].
    Retrieve {
        /// The message's UID from the maildrop listing.
        uid: u32,
    },
    /// The client ended the session with QUIT (the UPDATE state), or under the
    /// `pop3_update_on_disconnect` fault dropped the connection: delete these messages and
    /// call [`Session::update_result`].
    Update {
        /// The account whose maildrop was opened.
        account: String,
        /// UIDs to delete, in message-number order; may be empty.
        delete: Vec<u32>,
    },
    /// Send pending output and close the connection (and release the maildrop lock).
    Close,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials stay out of logs.
        match self {
            Event::NeedInput => f.write_str("NeedInput"),
            Event::StartTls => f.write_str("StartTls"),
            Event::Authenticate { login, .. } => f
                .debug_struct("Authenticate")
                .field("login", login)
                .finish_non_exhaustive(),
            Event::AuthenticateApop {
                login, timestamp, ..
            } => f
                .debug_struct("AuthenticateApop")
                .field("login", login)
                .field("timestamp", timestamp)
                .finish_non_exhaustive(),
            Event::OpenMaildrop {
                account,
                lock,
                line_ends,
            } => f
                .debug_struct("OpenMaildrop")
                .field("account", account)
                .field("lock", lock)
                .field("line_ends", line_ends)
                .finish(),
            Event::Retrieve { uid } => f.debug_struct("Retrieve").field("uid", uid).finish(),
            Event::Update { account, delete } => f
                .debug_struct("Update")
                .field("account", account)
                .field("delete", delete)
                .finish(),
            Event::Close => f.write_str("Close"),
        }
    }
}

/// One message of a maildrop listing, in message-number order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    /// The store's UID, used to fetch and delete the message.
    pub uid: u32,
    /// Size in octets as stored (CRLF line ends), reported by LIST and STAT.
    pub size: u64,
    /// The unique-id listing (RFC 1939 section 7): 1 to 70 characters from 0x21 to 0x7E.
    pub uidl: String,
}

/// A maildrop as the store lists it, the answer to [`Event::OpenMaildrop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The INBOX's UIDVALIDITY.
    pub uidvalidity: u32,
    /// Its messages, in message-number order.
    pub messages: Vec<Listed>,
}

/// One message of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The store's UID.
    pub uid: u32,
    /// Size in octets as stored.
    pub size: u64,
    /// How many CRLF line ends the message has; counted only when [`Event::OpenMaildrop`]
    /// asked for them, 0 otherwise.
    pub line_ends: u64,
}

/// Why a maildrop could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// Another POP3 session holds its lock (RFC 2449 `IN-USE`).
    #[error("maildrop is locked by another POP3 session")]
    InUse,
    /// The store failed; logged, not sent.
    #[error("maildrop unavailable: {0}")]
    Unavailable(StoreError),
}

/// Where the session is in the exchange with its client and driver.
#[derive(Debug)]
enum Phase {
    /// Reading command lines.
    Command,
    /// `AUTH PLAIN` sent `+ `: the next line is the client's response.
    SaslPlain,
    /// Credentials were accepted: [`Session::step`] asks for the maildrop.
    OpenMaildrop(String),
    /// Waiting for the driver's answer to an event.
    Waiting(Pending),
    /// The session is over.
    Closed,
}

/// The driver answer a [`Phase::Waiting`] session expects.
#[derive(Debug)]
enum Pending {
    Tls,
    Auth,
    Maildrop(String),
    Retrieve {
        message: u32,
        /// `TOP`'s body line count; `None` for `RETR`.
        top: Option<usize>,
    },
    Update {
        deleted: usize,
        /// The client dropped the connection (the `pop3_update_on_disconnect` fault): nobody
        /// hears the outcome.
        hung_up: bool,
    },
}

/// Why a command looks a message up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// LIST, UIDL, RETR, TOP.
    Read,
    /// DELE, which must refuse a message already marked.
    Dele,
}

/// The TRANSACTION state's view of the maildrop: fixed at login (RFC 1939 section 5).
#[derive(Debug)]
struct Maildrop {
    account: String,
    entries: Vec<MaildropEntry>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// Message count and octets of the messages not marked deleted (all of them when the
    /// `pop3_deleted_visible` fault says so).
    fn totals(&self, show_deleted: bool) -> (usize, u64) {
        self.live(show_deleted)
            .fold((0, 0), |(count, octets), (_, e)| {
                (count + 1, octets.saturating_add(e.size))
            })
    }

    /// UIDs of the messages marked with DELE.
    fn marked(&self) -> Vec<u32> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .filter(|(_, deleted)| **deleted)
            .map(|(entry, _)| entry.uid)
            .collect()
    }

    /// `(message number, entry)` of the messages not marked deleted.
    fn live(&self, show_deleted: bool) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(move |(_, (_, deleted))| show_deleted || !**deleted)
            .map(|(index, (entry, _))| (index + 1, entry))
    }
}

/// The POP3 session.
pub struct Session {
    config: Arc<Config>,
    conn: Connection,
    phase: Phase,
    /// `Some` once logged in: the TRANSACTION state.
    maildrop: Option<Maildrop>,
    input: Vec<u8>,
    /// Octets at the front of `input` already taken as lines.
    consumed: usize,
    /// Where the search for the next LF resumes, so a long partial line is scanned once.
    scanned: usize,
    output: Vec<u8>,
    tls: bool,
    /// The name from a USER command, valid only for the command right after it.
    user: Option<String>,
    /// The APOP timestamp of the greeting, when APOP is on.
    timestamp: Option<String>,
    errors: u32,
    commands: CommandBudget,
    discarding_long_line: bool,
    /// Where the APOP timestamp's date comes from ([`Session::with_clock`]).
    clock: Arc<dyn Clock>,
    /// The APOP timestamp's and the `pop3_uidl_unstable` fault's numbers
    /// ([`Session::with_seed`]).
    rng: fastrand::Rng,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input buffer may hold a password: leave it out.
        f.debug_struct("Session")
            .field("peer", &self.conn.peer)
            .field("role", &self.conn.role)
            .field("phase", &self.phase)
            .field("account", &self.account())
            .field("tls", &self.tls)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session; call [`Session::greet`] first.
    pub fn new(config: Arc<Config>, conn: Connection) -> Session {
        Session {
            tls: conn.tls_mode == TlsMode::Implicit,
            config,
            conn,
            phase: Phase::Command,
            maildrop: None,
            input: Vec::new(),
            consumed: 0,
            scanned: 0,
            output: Vec::new(),
            user: None,
            timestamp: None,
            errors: 0,
            commands: CommandBudget::default(),
            discarding_long_line: false,
            clock: Arc::new(SystemClock),
            rng: fastrand::Rng::new(),
        }
    }

    /// Reads the wall clock from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Session {
        self.clock = clock;
        self
    }

    /// Draws its numbers from a generator seeded with `seed`, so that a session can be
    /// replayed byte for byte (tests, fuzzing).
    pub fn with_seed(mut self, seed: u64) -> Session {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// Queues the greeting, with the APOP timestamp when APOP is on, and says what to do next.
    pub fn greet(&mut self) -> Event {
        if self.config.pop3.apop {
            // RFC 1939 section 7: a timestamp unique to this greeting, in msg-id form.
            let seconds = self
                .clock
                .wall()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let host = &self.config.hostname;
            self.timestamp = Some(format!("<{}.{seconds}@{host}>", self.rng.u32(..)));
        }
        let host = &self.config.hostname;
        let mut text = if self.variant(Variant::Pop3OtherTexts) {
            format!("Hello from {host}, POP3 at your service")
        } else {
            format!("{host} POP3 {IMPLEMENTATION} ready")
        };
        if let Some(timestamp) = &self.timestamp {
            text.push(' ');
            text.push_str(timestamp);
        }
        self.ok(&text);
        self.step()
    }

    /// Adds bytes read from the client. The driver reads in bounded chunks and calls
    /// [`Session::step`] after each: the session keeps at most one partial line between them.
    pub fn push_input(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.scanned -= self.consumed.min(self.scanned);
            self.consumed = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Takes the reply bytes queued so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Runs until the session needs something from the driver. While the answer to an event
    /// is awaited it reads nothing and returns [`Event::NeedInput`]: call the matching
    /// `*_result` method (or [`Session::tls_started`]) first.
    pub fn step(&mut self) -> Event {
        loop {
            match &self.phase {
                Phase::Closed => return Event::Close,
                Phase::Waiting(_) => return Event::NeedInput,
                Phase::OpenMaildrop(account) => {
                    let account = account.clone();
                    self.phase = Phase::Waiting(Pending::Maildrop(account.clone()));
                    let lock = !self.fault(Policy::Pop3NoLock);
                    if !lock {
                        tracing::warn!(account, "FAULT pop3_no_lock: not locking the maildrop");
                    }
                    let line_ends = self.fault(Policy::Pop3SizesWithoutCr);
                    return Event::OpenMaildrop {
                        account,
                        lock,
                        line_ends,
                    };
                }
                Phase::Command | Phase::SaslPlain => {}
            }
            if self.too_many_errors() {
                continue;
            }
            let Some(line) = self.next_line() else {
                // An over-long partial line may have been the last error allowed.
                if self.too_many_errors() {
                    continue;
                }
                return Event::NeedInput;
            };
            let event = match std::mem::replace(&mut self.phase, Phase::Command) {
                Phase::SaslPlain => {
                    tracing::debug!(peer = %self.conn.peer, "C: <SASL response>");
                    self.sasl_response(&line)
                }
                _ => self.command_line(&line),
            };
            if self.input.len() > self.consumed && self.drops_pipelined_commands() {
                self.input.clear();
                self.consumed = 0;
                self.scanned = 0;
            }
            if let Some(event) = event {
                return event;
            }
        }
    }

    /// TLS is up. Bytes that arrived before the handshake were not protected by it: they are
    /// dropped (CVE-2011-0411 class) unless the `starttls_injection` fault is on.
    pub fn tls_started(&mut self) {
        if !matches!(self.phase, Phase::Waiting(Pending::Tls)) {
            tracing::warn!(phase = ?self.phase, "tls_started without STLS; ignored");
            return;
        }
        self.tls = true;
        self.user = None;
        self.phase = Phase::Command;
        if !self.fault(Policy::StarttlsInjection) {
            self.input.clear();
            self.consumed = 0;
            self.scanned = 0;
            self.discarding_long_line = false;
        }
    }

    /// The verdict on credentials: the canonical account address, or `None` when wrong.
    pub fn auth_result(&mut self, account: Option<String>) {
        if !matches!(self.phase, Phase::Waiting(Pending::Auth)) {
            tracing::warn!(phase = ?self.phase, "auth_result while not authenticating; ignored");
            return;
        }
        match account {
            Some(account) => self.phase = Phase::OpenMaildrop(account),
            None => {
                self.phase = Phase::Command;
                let text = self.say(
                    "[AUTH] Authentication failed",
                    "[AUTH] those credentials open no maildrop here",
                );
                if self.fault(Policy::NoAuthThrottle) {
                    self.err(text);
                } else {
                    // Counted, so a guesser is disconnected after `limits.max_errors`.
                    self.error(text);
                }
            }
        }
    }

    /// The outcome of [`Event::OpenMaildrop`]: the listing enters the TRANSACTION state.
    pub fn maildrop_opened(&mut self, result: Result<Listing, MaildropError>) {
        let account = match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Waiting(Pending::Maildrop(account)) => account,
            other => {
                tracing::warn!(phase = ?other, "maildrop_opened while not opening a maildrop; ignored");
                self.phase = other;
                return;
            }
        };
        match result {
            Ok(listing) => {
                let entries = self.entries(listing);
                tracing::info!(account, peer = %self.conn.peer, "POP3 login");
                let maildrop = Maildrop {
                    account,
                    deleted: vec![false; entries.len()],
                    entries,
                };
                let (count, octets) = maildrop.totals(false);
                self.maildrop = Some(maildrop);
                let text = format!("Logged in, {count} messages ({octets} octets)");
                self.ok(self.say(&text, "maildrop locked and ready"));
            }
            Err(MaildropError::InUse) => {
                self.err(self.say(
                    "[IN-USE] Mailbox is locked by another POP3 session",
                    "[IN-USE] someone else is reading this maildrop",
                ));
            }
            Err(MaildropError::Unavailable(why)) => {
                tracing::error!(account, "cannot open maildrop: {why}");
                self.err(self.say(
                    "[SYS/TEMP] Mailbox unavailable, try again later",
                    "[SYS/TEMP] the maildrop cannot be opened just now",
                ));
            }
        }
    }

    /// The maildrop listing: sizes as stored and UIDLs of UIDVALIDITY and UID, which together
    /// never repeat (the store hands out neither twice), unless faults say otherwise.
    fn entries(&mut self, listing: Listing) -> Vec<MaildropEntry> {
        let without_cr = self.fault(Policy::Pop3SizesWithoutCr);
        if without_cr {
            tracing::warn!("FAULT pop3_sizes_without_cr: reporting sizes without CRs");
        }
        let nonce = if self.fault(Policy::Pop3UidlUnstable) {
            tracing::warn!("FAULT pop3_uidl_unstable: new UIDL values for this session");
            format!(".{}", self.rng.u32(..))
        } else {
            String::new()
        };
        let uidvalidity = listing.uidvalidity;
        listing
            .messages
            .into_iter()
            .map(|m| MaildropEntry {
                uid: m.uid,
                size: if without_cr {
                    m.size.saturating_sub(m.line_ends)
                } else {
                    m.size
                },
                uidl: format!("{uidvalidity}.{}{nonce}", m.uid),
            })
            .collect()
    }

    /// The outcome of [`Event::Retrieve`]: the message's octets exactly as stored.
    pub fn retrieved(&mut self, result: Result<Vec<u8>, StoreError>) {
        let Phase::Waiting(Pending::Retrieve { message, top }) =
            std::mem::replace(&mut self.phase, Phase::Command)
        else {
            tracing::warn!("retrieved while not retrieving; ignored");
            return;
        };
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::warn!(message, "cannot read message: {why}");
                let text = format!("[SYS/TEMP] Message {message} is no longer available");
                self.err(self.say(&text, "[SYS/TEMP] that message went away"));
                return;
            }
        };
        let top = top.filter(|_| {
            let ignored = self.fault(Policy::Pop3TopIgnoresLines);
            if ignored {
                tracing::warn!("FAULT pop3_top_ignores_lines: sending the whole message");
            }
            !ignored
        });
        let (text, other, body) = match top {
            None => (
                format!("{} octets", bytes.len()),
                "message follows",
                &bytes[..],
            ),
            Some(lines) => (
                format!("Top of message {message} follows"),
                "here it comes",
                top_of(&bytes, lines),
            ),
        };
        self.ok(self.say(&text, other));
        if self.fault(Policy::Pop3NoDotStuffing) {
            tracing::warn!("FAULT pop3_no_dot_stuffing: sending message {message} unstuffed");
            self.output.extend_from_slice(body);
            if !body.is_empty() && !body.ends_with(b"\r\n") {
                self.output.extend_from_slice(b"\r\n");
            }
            self.output.extend_from_slice(b".\r\n");
        } else {
            dot_stuff(&mut self.output, body);
        }
    }

    /// The outcome of [`Event::Update`]; the session then closes either way.
    pub fn update_result(&mut self, result: Result<(), StoreError>) {
        let (deleted, hung_up) = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Waiting(Pending::Update { deleted, hung_up }) => (deleted, hung_up),
            other => {
                tracing::warn!(phase = ?other, "update_result while not updating; ignored");
                self.phase = other;
                return;
            }
        };
        if hung_up {
            if let Err(why) = result {
                tracing::error!("FAULT pop3_update_on_disconnect: {why}");
            }
            return;
        }
        match result {
            Ok(()) => {
                let text = format!("Bye, {deleted} messages deleted");
                self.ok(self.say(&text, "dewey POP3 server signing off"));
            }
            Err(why) => {
                tracing::error!(account = ?self.account(), "POP3 update failed: {why}");
                self.err(self.say(
                    "[SYS/TEMP] Some deleted messages not removed",
                    "[SYS/TEMP] the deletions could not all be done",
                ));
            }
        }
    }

    /// The server is shutting down: `-ERR [SYS/TEMP]` and close, deleting nothing.
    pub fn shut_down(&mut self) {
        self.abort("[SYS/TEMP] Server shutting down");
    }

    /// Queues `-ERR <text>` and closes (idle timeout, shutdown). Nothing is deleted: only QUIT
    /// enters the UPDATE state (RFC 1939 section 6).
    pub fn abort(&mut self, text: &str) {
        let text = text.replace(['\r', '\n'], " ");
        self.err(&text);
        self.phase = Phase::Closed;
    }

    /// The client dropped the connection: the session is over and nothing is deleted, as only
    /// QUIT enters the UPDATE state (RFC 1939 section 6), unless the
    /// `pop3_update_on_disconnect` fault deletes the messages marked so far
    /// ([`Event::Update`]; its outcome goes to nobody). Nothing more is sent either way.
    pub fn disconnected(&mut self) -> Event {
        self.output.clear();
        let marked = self
            .maildrop
            .as_ref()
            .map(|maildrop| (maildrop.account.clone(), maildrop.marked()))
            .filter(|(_, uids)| !uids.is_empty());
        self.phase = Phase::Closed;
        let Some((account, delete)) = marked else {
            return Event::Close;
        };
        if !self.fault(Policy::Pop3UpdateOnDisconnect) {
            return Event::Close;
        }
        tracing::warn!(
            account,
            "FAULT pop3_update_on_disconnect: deleting without QUIT"
        );
        self.phase = Phase::Waiting(Pending::Update {
            deleted: delete.len(),
            hung_up: true,
        });
        Event::Update { account, delete }
    }

    /// The logged-in account, once in the TRANSACTION state.
    pub fn account(&self) -> Option<&str> {
        self.maildrop.as_ref().map(|m| m.account.as_str())
    }

    /// Takes one line from the input without its line end; `None` when incomplete.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let from = self.scanned.max(self.consumed);
            let Some(lf) = self.input[from..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.input.len();
                let partial = &self.input[self.consumed..];
                if self.discarding_long_line {
                    self.input.clear();
                    (self.consumed, self.scanned) = (0, 0);
                } else if partial.len() + 1 > self.line_limit(partial) {
                    // Whatever ends it, this line is over the limit: stop buffering it.
                    self.input.clear();
                    (self.consumed, self.scanned) = (0, 0);
                    self.discarding_long_line = true;
                    self.line_too_long();
                }
                return None;
            };
            let lf = from + lf;
            let mut line = self.input[self.consumed..lf].to_vec();
            self.consumed = lf + 1;
            self.scanned = self.consumed;
            if std::mem::take(&mut self.discarding_long_line) {
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() + 2 > self.line_limit(&line) {
                self.line_too_long();
                continue;
            }
            return Some(line);
        }
    }

    /// The length limit for a line starting with `start`, CRLF included.
    fn line_limit(&self, start: &[u8]) -> usize {
        let auth = matches!(self.phase, Phase::SaslPlain)
            || start
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
        if auth {
            MAX_AUTH_LINE
        } else {
            MAX_COMMAND_LINE
        }
    }

    fn line_too_long(&mut self) {
        // An over-long SASL response ends the exchange like any other bad response.
        self.phase = Phase::Command;
        self.error(self.say("Line too long", "that line goes on for too long"));
    }

    fn command_line(&mut self, line: &[u8]) -> Option<Event> {
        tracing::debug!(peer = %self.conn.peer, "C: {}", redacted(line));
        // PASS must come right after USER: any other command forgets the name.
        let user = self.user.take();
        let known = command::split(line).filter(|(verb, _)| !self.left_out(*verb));
        let Some((verb, args)) = known else {
            if self.fault(Policy::Pop3UnknownCommandOk) {
                tracing::warn!(
                    "FAULT pop3_unknown_command_ok: answering +OK to an unknown command"
                );
                self.ok("");
            } else {
                self.error(self.say("Unknown command", "never heard of that one"));
            }
            return None;
        };
        let allowed = match self.maildrop {
            None => verb.in_authorization(),
            Some(_) => verb.in_transaction(),
        };
        if !allowed && self.maildrop.is_none() && self.fault(Policy::Pop3NoStateCheck) {
            tracing::warn!("FAULT pop3_no_state_check: {} before login", verb.name());
            return self.without_login(verb, args);
        }
        if !allowed {
            let text = format!("{} not allowed in this state", verb.name());
            self.error(self.say(&text, "not now"));
            return None;
        }
        if verb.sends_credentials() && !self.login_allowed() {
            // RFC 2595 section 4 / RFC 3206: credentials only over TLS on an STLS port.
            self.error(self.say(
                "[AUTH] Plaintext authentication is not allowed without TLS; use STLS",
                "[AUTH] say STLS first",
            ));
            return None;
        }
        match command::parse(verb, args) {
            Ok(command) => {
                if let Err(refusal) = self.spend(&command) {
                    self.err(&refusal);
                    self.phase = Phase::Closed;
                    return None;
                }
                self.execute(command, user)
            }
            Err(usage) => {
                self.syntax_error(usage);
                None
            }
        }
    }

    /// Counts a command against `limits.max_commands` and `limits.max_nonmail_commands`.
    fn spend(&mut self, command: &Command) -> Result<(), String> {
        if matches!(command, Command::Quit) || self.fault(Policy::NoCommandLimit) {
            return Ok(());
        }
        let nonmail = matches!(
            command,
            Command::Capa
                | Command::Noop
                | Command::Rset
                | Command::Stat
                | Command::List(_)
                | Command::Uidl(_)
                | Command::Stls
        );
        self.commands.spend(&self.config.limits, nonmail)?;
        if matches!(
            command,
            Command::Retr(_) | Command::Top { .. } | Command::Dele(_)
        ) {
            self.commands.mail_done();
        }
        Ok(())
    }

    /// The `pop3_no_state_check` fault: a TRANSACTION command before login runs against an
    /// empty maildrop.
    fn without_login(&mut self, verb: Verb, args: &[u8]) -> Option<Event> {
        let command = match command::parse(verb, args) {
            Ok(command) => command,
            Err(usage) => {
                self.syntax_error(usage);
                return None;
            }
        };
        self.maildrop = Some(Maildrop {
            account: String::new(),
            entries: Vec::new(),
            deleted: Vec::new(),
        });
        let event = match command {
            // Nothing to retrieve or quit from: keep to replies.
            Command::Retr(_) | Command::Top { .. } | Command::Quit => {
                self.no_such_message();
                None
            }
            command => self.execute(command, None),
        };
        self.maildrop = None;
        event
    }

    fn execute(&mut self, command: Command, user: Option<String>) -> Option<Event> {
        match command {
            Command::Capa => self.capa(),
            Command::Stls => return self.stls(),
            Command::User(name)
                if self.fault(Policy::AuthRevealsUnknownUser)
                    && self.config.account(&name).is_none() =>
            {
                self.error("[AUTH] No such user");
            }
            Command::User(name) => {
                // The same reply whether or not the user exists.
                self.user = Some(name);
                self.ok(self.say("Send PASS", "now the password"));
            }
            Command::Pass(password) => match user {
                None => self.error(self.say("Syntax: USER first", "who are you? USER first")),
                Some(login) => {
                    self.phase = Phase::Waiting(Pending::Auth);
                    return Some(Event::Authenticate {
                        login,
                        password: auth::Password::new(password),
                    });
                }
            },
            Command::Apop { name, digest } => {
                let timestamp = self.timestamp.clone().unwrap_or_default();
                self.phase = Phase::Waiting(Pending::Auth);
                return Some(Event::AuthenticateApop {
                    login: name,
                    timestamp,
                    digest,
                });
            }
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial),
            Command::Stat => {
                let (count, octets) = self.maildrop_totals();
                let text = format!("{count} {octets}");
                let other = format!("{count} {octets} in the maildrop");
                self.ok(self.say(&text, &other));
            }
            Command::List(None) => {
                let (count, octets) = self.maildrop_totals();
                let lines = self.listing(|n, e| format!("{n} {}", e.size));
                let text = format!("{count} messages ({octets} octets)");
                self.multi_line(self.say(&text, "scan listing follows"), &lines);
            }
            Command::List(Some(number)) => {
                if let Some(entry) = self.message(number) {
                    let text = format!("{number} {}", entry.size);
                    let other = format!("{text} octets, no more and no less");
                    self.ok(self.say(&text, &other));
                }
            }
            Command::Uidl(None) => {
                let lines = self.listing(|n, e| format!("{n} {}", e.uidl));
                self.multi_line(
                    self.say("Unique-ID listing follows", "unique ids follow"),
                    &lines,
                );
            }
            Command::Uidl(Some(number)) => {
                if let Some(entry) = self.message(number) {
                    self.ok(&format!("{number} {}", entry.uidl));
                }
            }
            Command::Retr(number) => return self.retrieve(number, None),
            Command::Top { message, lines } => return self.retrieve(message, Some(lines)),
            Command::Dele(number) => {
                if self.message_for(number, Purpose::Dele).is_some() {
                    if let Some(mark) = self
                        .maildrop
                        .as_mut()
                        .and_then(|m| m.deleted.get_mut((number as usize).wrapping_sub(1)))
                    {
                        *mark = true;
                    }
                    let text = format!("Message {number} deleted");
                    self.ok(self.say(&text, "marked"));
                }
            }
            Command::Noop => self.ok(self.say("", "still here")),
            Command::Rset => {
                if self.fault(Policy::Pop3RsetIgnored) {
                    tracing::warn!("FAULT pop3_rset_ignored: keeping the DELE marks");
                } else if let Some(maildrop) = &mut self.maildrop {
                    maildrop.deleted.fill(false);
                }
                let (count, octets) = self.maildrop_totals();
                let text = format!("maildrop has {count} messages ({octets} octets)");
                self.ok(self.say(&text, "all marks are gone"));
            }
            Command::Quit => return Some(self.quit()),
        }
        None
    }

    /// Closes the session when the client has made too many errors.
    fn too_many_errors(&mut self) -> bool {
        if self.errors < self.config.limits.max_errors || self.fault(Policy::NoErrorLimit) {
            return false;
        }
        self.err(self.say(
            "Too many errors, closing connection",
            "enough mistakes for one session, goodbye",
        ));
        self.phase = Phase::Closed;
        true
    }

    fn fault(&self, policy: Policy) -> bool {
        self.config.faults.has(policy)
    }

    fn variant(&self, variant: Variant) -> bool {
        self.config.variants.has(variant)
    }

    /// The reference text, or under the `pop3_other_texts` variant the other one: RFC 1939
    /// section 3 leaves the text after +OK and -ERR to the server, so a client must not read it.
    fn say<'a>(&self, reference: &'a str, other: &'a str) -> &'a str {
        if self.variant(Variant::Pop3OtherTexts) {
            other
        } else {
            reference
        }
    }

    /// Whether a command this server knows is left out by a variant or by configuration, and
    /// so answered as an unknown command.
    fn left_out(&self, verb: Verb) -> bool {
        match verb {
            Verb::Apop => self.timestamp.is_none(),
            Verb::Auth => self.variant(Variant::Pop3NoSasl),
            Verb::Top => self.variant(Variant::Pop3NoTop),
            Verb::Uidl => self.variant(Variant::Pop3NoUidl),
            Verb::Capa => self.variant(Variant::Pop3NoCapa),
            _ => false,
        }
    }

    /// Whether input that came with the command just taken is to be thrown away: the
    /// `pop3_pipelining_lost` fault does so while advertising PIPELINING, the
    /// `pop3_no_pipelining` variant, which does not advertise it, may.
    fn drops_pipelined_commands(&self) -> bool {
        if self.fault(Policy::Pop3PipeliningLost) {
            tracing::warn!("FAULT pop3_pipelining_lost: dropping pipelined commands");
            true
        } else if self.variant(Variant::Pop3NoPipelining) {
            tracing::debug!("no PIPELINING: dropping commands sent before their turn");
            true
        } else {
            false
        }
    }

    fn syntax_error(&mut self, usage: &str) {
        let text = format!("Syntax: {usage}");
        self.error(self.say(&text, "those arguments make no sense"));
    }

    /// Whether credentials may be sent: always over TLS and on a plain-text-only listener (a
    /// test setup), never before STLS on a port that offers it.
    fn login_allowed(&self) -> bool {
        self.tls || self.conn.tls_mode != TlsMode::Starttls || self.fault(Policy::Pop3PlaintextAuth)
    }

    fn capa(&mut self) {
        let offered = [
            ("TOP", !self.variant(Variant::Pop3NoTop)),
            ("UIDL", !self.variant(Variant::Pop3NoUidl)),
            ("RESP-CODES", !self.variant(Variant::Pop3NoRespCodes)),
            ("AUTH-RESP-CODE", !self.variant(Variant::Pop3NoRespCodes)),
            ("PIPELINING", !self.variant(Variant::Pop3NoPipelining)),
        ];
        let mut lines: Vec<String> = offered
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(keyword, _)| keyword.to_owned())
            .collect();
        if self.maildrop.is_none() {
            if (self.conn.tls_mode == TlsMode::Starttls && !self.tls)
                || (self.tls && self.fault(Policy::StarttlsAfterTls))
            {
                lines.push("STLS".into());
            }
            if self.login_allowed() {
                lines.push("USER".into());
                if !self.variant(Variant::Pop3NoSasl) {
                    lines.push("SASL PLAIN".into());
                }
            }
        }
        lines.push(format!("IMPLEMENTATION {IMPLEMENTATION}"));
        self.multi_line(
            self.say("Capability list follows", "here is what I can do"),
            &lines,
        );
    }

    fn stls(&mut self) -> Option<Event> {
        let inside_tls = self.tls || self.conn.tls_mode != TlsMode::Starttls;
        if inside_tls && self.fault(Policy::StarttlsInsideTls) {
            tracing::warn!("FAULT starttls_inside_tls: answering STLS inside TLS");
            self.ok("Begin TLS negotiation");
        } else if self.conn.tls_mode != TlsMode::Starttls {
            self.error(self.say("STLS not available", "no TLS upgrade on this port"));
        } else if self.tls {
            self.error(self.say("Already using TLS", "this is TLS already"));
        } else {
            self.ok(self.say("Begin TLS negotiation", "go ahead with TLS"));
            if self.fault(Policy::StarttlsResponseInjection) {
                self.ok("Sent in clear text after the go-ahead");
            }
            self.phase = Phase::Waiting(Pending::Tls);
            return Some(Event::StartTls);
        }
        None
    }

    fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> Option<Event> {
        match (mechanism.as_deref(), initial) {
            (None, _) => self.multi_line(
                self.say("Supported SASL mechanisms follow", "mechanisms"),
                &["PLAIN".into()],
            ),
            (Some("PLAIN"), Some(initial)) => return self.sasl_plain(&initial),
            (Some("PLAIN"), None) => {
                self.output.extend_from_slice(b"+ \r\n");
                self.phase = Phase::SaslPlain;
            }
            (Some(_), _) => self.error(self.say("Unsupported SASL mechanism", "not that one")),
        }
        None
    }

    fn sasl_response(&mut self, line: &[u8]) -> Option<Event> {
        if line == b"*" {
            self.error(self.say("Authentication cancelled", "as you wish"));
            return None;
        }
        self.sasl_plain(&String::from_utf8_lossy(line))
    }

    fn sasl_plain(&mut self, response: &str) -> Option<Event> {
        match auth::decode_response(response).and_then(|payload| auth::parse_plain(&payload)) {
            Ok((login, password)) => {
                self.phase = Phase::Waiting(Pending::Auth);
                Some(Event::Authenticate {
                    login,
                    password: auth::Password::new(password),
                })
            }
            Err(SaslError::Base64) => {
                self.error(self.say("Invalid base64", "that is not base64"));
                None
            }
            Err(SaslError::ProxyNotAllowed) => {
                self.error(self.say(
                    "[AUTH] Authorization identity must be empty or the login name",
                    "[AUTH] you may act for yourself only",
                ));
                None
            }
            Err(other) => {
                let text = format!("Invalid PLAIN response: {other}");
                self.error(self.say(&text, "that PLAIN response does not parse"));
                None
            }
        }
    }

    /// The message with this number, or the error reply when there is none.
    fn message(&mut self, number: u32) -> Option<MaildropEntry> {
        self.message_for(number, Purpose::Read)
    }

    /// The message with this number for reading or for DELE, or the error reply when there is
    /// none (faults may pretend otherwise).
    fn message_for(&mut self, number: u32, purpose: Purpose) -> Option<MaildropEntry> {
        let Some(maildrop) = self.maildrop.as_ref() else {
            self.no_such_message();
            return None;
        };
        let found = (number as usize)
            .checked_sub(1)
            .and_then(|i| Some((maildrop.entries.get(i)?, maildrop.deleted[i])));
        let show_deleted = purpose == Purpose::Read && self.fault(Policy::Pop3DeletedVisible);
        match found {
            Some((entry, false)) => Some(entry.clone()),
            Some((entry, true)) if show_deleted => {
                tracing::warn!("FAULT pop3_deleted_visible: showing deleted message {number}");
                Some(entry.clone())
            }
            Some((entry, true))
                if purpose == Purpose::Dele && self.fault(Policy::Pop3MsgnumUnchecked) =>
            {
                tracing::warn!("FAULT pop3_msgnum_unchecked: deleting message {number} again");
                Some(entry.clone())
            }
            Some((_, true)) => {
                let text = format!("Message {number} already deleted");
                self.error(self.say(&text, "that one is marked for deletion"));
                None
            }
            None if self.fault(Policy::Pop3MsgnumUnchecked) => {
                tracing::warn!("FAULT pop3_msgnum_unchecked: pretending message {number} exists");
                Some(MaildropEntry {
                    uid: 0,
                    size: 0,
                    uidl: format!("no-such-message-{number}"),
                })
            }
            None => {
                self.no_such_message();
                None
            }
        }
    }

    fn no_such_message(&mut self) {
        self.error(self.say("No such message", "nothing by that number"));
    }

    fn maildrop_totals(&self) -> (usize, u64) {
        let show_deleted = self.fault(Policy::Pop3DeletedVisible);
        self.maildrop
            .as_ref()
            .map_or((0, 0), |m| m.totals(show_deleted))
    }

    /// One line per message not marked deleted.
    fn listing(&self, line: impl Fn(usize, &MaildropEntry) -> String) -> Vec<String> {
        let show_deleted = self.fault(Policy::Pop3DeletedVisible);
        self.maildrop
            .iter()
            .flat_map(|m| m.live(show_deleted))
            .map(|(number, entry)| line(number, entry))
            .collect()
    }

    fn retrieve(&mut self, number: u32, top: Option<usize>) -> Option<Event> {
        let uid = self.message(number)?.uid;
        if uid == 0 {
            // Only the `pop3_msgnum_unchecked` fault makes up messages; they are empty.
            self.ok("0 octets");
            dot_stuff(&mut self.output, b"");
            return None;
        }
        self.phase = Phase::Waiting(Pending::Retrieve {
            message: number,
            top,
        });
        Some(Event::Retrieve { uid })
    }

    fn quit(&mut self) -> Event {
        let Some(maildrop) = &self.maildrop else {
            self.ok(self.say("Bye", "goodbye then"));
            self.phase = Phase::Closed;
            return Event::Close;
        };
        let marked = maildrop.marked();
        let account = maildrop.account.clone();
        self.phase = Phase::Waiting(Pending::Update {
            deleted: marked.len(),
            hung_up: false,
        });
        let delete = if self.fault(Policy::Pop3DeleIgnored) {
            tracing::warn!(account, "FAULT: ignoring {} DELE commands", marked.len());
            Vec::new()
        } else {
            marked
        };
        Event::Update { account, delete }
    }

    fn ok(&mut self, text: &str) {
        self.output.extend_from_slice(b"+OK");
        if !text.is_empty() {
            self.output.push(b' ');
            self.output.extend_from_slice(text.as_bytes());
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn err(&mut self, text: &str) {
        let text = match text.strip_prefix('[') {
            // Without RESP-CODES a server is free to write anything after -ERR, and writes
            // no code (RFC 2449 section 8).
            Some(coded) if self.variant(Variant::Pop3NoRespCodes) => {
                coded.split_once("] ").map_or(text, |(_, rest)| rest)
            }
            _ => text,
        };
        self.output
            .extend_from_slice(format!("-ERR {text}\r\n").as_bytes());
    }

    /// An error the client caused; counts toward the limit after which it is disconnected.
    fn error(&mut self, text: &str) {
        self.errors += 1;
        self.err(text);
    }

    /// `+OK text`, the lines (none of which starts with a dot), and the terminating `.`.
    fn multi_line(&mut self, text: &str, lines: &[String]) {
        self.ok(text);
        for line in lines {
            self.output.extend_from_slice(line.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        self.output.extend_from_slice(b".\r\n");
    }
}

/// What TOP sends: the header section, the blank line, and the first `lines` lines of the
/// body. A message without a blank line is all header and is sent whole.
fn top_of(message: &[u8], lines: usize) -> &[u8] {
    let mut end = 0;
    let mut in_body = false;
    let mut body_lines = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_body {
            if body_lines == lines {
                break;
            }
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
        end += line.len();
    }
    &message[..end]
}

/// A command line as logged: passwords, SASL responses and APOP digests left out.
fn redacted(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(80)]);
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or_default();
    let secret_from = match verb.to_ascii_uppercase().as_str() {
        "PASS" => 1,
        "AUTH" | "APOP" => 2,
        _ => return text.into_owned(),
    };
    let mut shown: Vec<&str> = std::iter::once(verb)
        .chain(words.by_ref().take(secret_from - 1))
        .collect();
    if words.next().is_some() {
        shown.push("<redacted>");
    }
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::StoppedClock;
    use crate::config::Role;
    use proptest::prelude::*;

    const ALICE: &str = "alice@example.test";
    /// `AUTH PLAIN` for alice: `\0alice@example.test\0alice-secret`.
    const ALICE_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=";
    const MESSAGES: [(u32, &str); 3] = [
        (
            10,
            "Subject: one\r\nFrom: a@example.test\r\n\r\nline1\r\n.dotted\r\n..two\r\nline4\r\n",
        ),
        (11, "Subject: two\r\n\r\nno final crlf"),
        (12, "X-Only: headers\r\nX-No: blank line\r\n"),
    ];

    /// A driver with no socket: TLS is pretended, credentials come from the config, the
    /// maildrop is `MESSAGES`, and updates are recorded.
    struct Harness {
        session: Session,
        in_use: bool,
        /// The `lock` and `line_ends` of each OpenMaildrop.
        opened: Vec<(bool, bool)>,
        /// UIDs whose retrieval fails, as when IMAP expunged them meanwhile.
        gone: Vec<u32>,
        updates: Vec<(String, Vec<u32>)>,
        apop: Vec<(String, String, String)>,
        output: Vec<u8>,
        closed: bool,
    }

    fn connection(tls_mode: TlsMode) -> Connection {
        let role = match tls_mode {
            TlsMode::Implicit => Role::Pop3s,
            _ => Role::Pop3,
        };
        Connection {
            role,
            tls_mode,
            peer: "127.0.0.9:40000".parse().unwrap(),
            pop_before_smtp: None,
            client_dns: None,
        }
    }

    impl Harness {
        fn new(tls_mode: TlsMode, config: Config) -> Harness {
            Harness::around(Session::new(Arc::new(config), connection(tls_mode)))
        }

        /// Drives `session` from its greeting on.
        fn around(session: Session) -> Harness {
            let mut harness = Harness {
                session,
                in_use: false,
                opened: Vec::new(),
                gone: Vec::new(),
                updates: Vec::new(),
                apop: Vec::new(),
                output: Vec::new(),
                closed: false,
            };
            let event = harness.session.greet();
            harness.run(event);
            harness
        }

        /// The pop3 port (STLS) with the default config.
        fn pop3() -> Harness {
            Harness::new(TlsMode::Starttls, Config::defaults())
        }

        /// The pop3s port with alice logged in.
        fn logged_in() -> Harness {
            Harness::logged_in_with(Config::defaults())
        }

        fn logged_in_with(config: Config) -> Harness {
            let mut h = Harness::new(TlsMode::Implicit, config);
            let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
            assert!(
                reply.ends_with("+OK Logged in, 3 messages (132 octets)\r\n"),
                "{reply}"
            );
            h
        }

        fn run(&mut self, mut event: Event) {
            loop {
                event = match event {
                    Event::NeedInput => break,
                    Event::StartTls => {
                        self.session.tls_started();
                        self.session.step()
                    }
                    Event::Authenticate { login, password } => {
                        let verdict =
                            auth::authenticate(&self.session.config, &login, password.expose());
                        self.session.auth_result(verdict);
                        self.session.step()
                    }
                    Event::AuthenticateApop {
                        login,
                        timestamp,
                        digest,
                    } => {
                        let good = digest == "0123456789abcdef0123456789abcdef";
                        self.apop.push((login, timestamp, digest));
                        self.session.auth_result(good.then(|| ALICE.to_owned()));
                        self.session.step()
                    }
                    Event::OpenMaildrop {
                        account,
                        lock,
                        line_ends,
                    } => {
                        assert_eq!(account, ALICE);
                        self.opened.push((lock, line_ends));
                        let result = if self.in_use && lock {
                            Err(MaildropError::InUse)
                        } else {
                            Ok(Listing {
                                uidvalidity: 7,
                                messages: MESSAGES
                                    .iter()
                                    .map(|(uid, text)| Listed {
                                        uid: *uid,
                                        size: text.len() as u64,
                                        line_ends: if line_ends {
                                            text.matches("\r\n").count() as u64
                                        } else {
                                            0
                                        },
                                    })
                                    .collect(),
                            })
                        };
                        self.session.maildrop_opened(result);
                        self.session.step()
                    }
                    Event::Retrieve { uid } => {
                        let found = MESSAGES.iter().find(|(u, _)| *u == uid);
                        let result = match found {
                            Some((uid, _)) if self.gone.contains(uid) => {
                                Err(StoreError::Interrupted("expunged".into()))
                            }
                            Some((_, text)) => Ok(text.as_bytes().to_vec()),
                            None => Err(StoreError::Interrupted(format!("no uid {uid}"))),
                        };
                        self.session.retrieved(result);
                        self.session.step()
                    }
                    Event::Update { account, delete } => {
                        self.updates.push((account, delete));
                        self.session.update_result(Ok(()));
                        self.session.step()
                    }
                    Event::Close => {
                        self.closed = true;
                        break;
                    }
                };
            }
            let out = self.session.take_output();
            self.output.extend_from_slice(&out);
        }

        /// Sends bytes and returns the replies they produced.
        fn send(&mut self, bytes: &[u8]) -> String {
            assert!(!self.closed, "the driver sends nothing after Close");
            let before = self.output.len();
            self.session.push_input(bytes);
            let event = self.session.step();
            self.run(event);
            String::from_utf8(self.output[before..].to_vec()).expect("replies are UTF-8")
        }

        fn transcript(&self) -> String {
            String::from_utf8_lossy(&self.output).into_owned()
        }
    }

    fn with_policy(policy: Policy) -> Config {
        let mut config = Config::defaults();
        config.faults.policy.insert(policy);
        config
    }

    fn with_apop() -> Config {
        let mut config = Config::defaults();
        config.pop3.apop = true;
        config
    }

    fn with_variants(variants: &[Variant]) -> Config {
        let mut config = Config::defaults();
        for variant in variants {
            config.variants.insert(*variant);
        }
        config
    }

    /// Logs alice in with USER and PASS, one line at a time, as a client that does not
    /// pipeline does; returns the response to PASS.
    fn log_in_one_line_at_a_time(h: &mut Harness) -> String {
        let user = h.send(b"USER alice@example.test\r\n");
        assert!(user.starts_with("+OK"), "{user}");
        h.send(b"PASS alice-secret\r\n")
    }

    #[test]
    fn optional_commands_left_out_are_neither_advertised_nor_known() {
        let config = with_variants(&[
            Variant::Pop3NoSasl,
            Variant::Pop3NoTop,
            Variant::Pop3NoUidl,
            Variant::Pop3NoRespCodes,
            Variant::Pop3NoPipelining,
        ]);
        let mut h = Harness::new(TlsMode::Implicit, config);
        assert_eq!(
            h.send(b"CAPA\r\n"),
            "+OK Capability list follows\r\nUSER\r\nIMPLEMENTATION reference-server\r\n.\r\n"
        );
        for line in [
            format!("AUTH PLAIN {ALICE_PLAIN}\r\n"),
            "AUTH\r\n".to_owned(),
        ] {
            assert_eq!(h.send(line.as_bytes()), "-ERR Unknown command\r\n");
        }
        assert_eq!(h.session.account(), None);
        let login = log_in_one_line_at_a_time(&mut h);
        assert_eq!(login, "+OK Logged in, 3 messages (132 octets)\r\n");
        for line in ["TOP 1 0\r\n", "UIDL\r\n", "UIDL 1\r\n"] {
            assert_eq!(
                h.send(line.as_bytes()),
                "-ERR Unknown command\r\n",
                "{line}"
            );
        }
        assert!(h.send(b"RETR 2\r\n").starts_with("+OK 29 octets\r\n"));
    }

    #[test]
    fn without_resp_codes_no_response_carries_a_code() {
        let config = with_variants(&[Variant::Pop3NoRespCodes]);
        let mut h = Harness::new(TlsMode::Starttls, config.clone());
        let capa = h.send(b"CAPA\r\n");
        assert!(!capa.contains("RESP-CODE"), "{capa}");
        assert_eq!(
            h.send(b"USER alice@example.test\r\n"),
            "-ERR Plaintext authentication is not allowed without TLS; use STLS\r\n"
        );
        let mut h = Harness::new(TlsMode::Implicit, config.clone());
        h.in_use = true;
        assert_eq!(
            h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n"),
            "+OK Send PASS\r\n-ERR Mailbox is locked by another POP3 session\r\n"
        );
        assert_eq!(
            h.send(b"USER alice@example.test\r\nPASS wrong\r\n"),
            "+OK Send PASS\r\n-ERR Authentication failed\r\n"
        );
        let mut h = Harness::logged_in_with(config);
        h.gone.push(11);
        assert_eq!(
            h.send(b"RETR 2\r\n"),
            "-ERR Message 2 is no longer available\r\n"
        );
        h.session.abort("[SYS/TEMP] Server shutting down");
        let event = h.session.step();
        h.run(event);
        assert!(
            h.transcript()
                .ends_with("\r\n-ERR Server shutting down\r\n")
        );
    }

    #[test]
    fn without_pipelining_commands_sent_before_their_turn_are_dropped() {
        let mut h = Harness::new(
            TlsMode::Implicit,
            with_variants(&[Variant::Pop3NoPipelining]),
        );
        assert!(!h.send(b"CAPA\r\n").contains("PIPELINING"));
        log_in_one_line_at_a_time(&mut h);
        assert_eq!(h.send(b"STAT\r\nNOOP\r\nQUIT\r\n"), "+OK 3 132\r\n");
        assert_eq!(h.send(b"NOOP\r\n"), "+OK\r\n");
        assert!(!h.closed);
    }

    #[test]
    fn without_capa_everything_else_still_works() {
        let mut h = Harness::new(TlsMode::Starttls, with_variants(&[Variant::Pop3NoCapa]));
        assert_eq!(h.send(b"CAPA\r\n"), "-ERR Unknown command\r\n");
        assert_eq!(h.send(b"STLS\r\n"), "+OK Begin TLS negotiation\r\n");
        assert_eq!(h.send(b"CAPA\r\n"), "-ERR Unknown command\r\n");
        let login = log_in_one_line_at_a_time(&mut h);
        assert!(login.starts_with("+OK Logged in"), "{login}");
        assert_eq!(h.send(b"UIDL 3\r\n"), "+OK 3 7.12\r\n");
        assert!(
            h.send(b"TOP 3 0\r\n")
                .starts_with("+OK Top of message 3 follows\r\n")
        );
    }

    #[test]
    fn other_texts_keep_what_rfc_1939_fixes() {
        let config = with_variants(&[Variant::Pop3OtherTexts]);
        let mut h = Harness::new(TlsMode::Implicit, config.clone());
        assert_eq!(
            h.transcript(),
            "+OK Hello from mail.example.test, POP3 at your service\r\n"
        );
        assert_eq!(h.send(b"XYZZY\r\n"), "-ERR never heard of that one\r\n");
        assert_eq!(
            h.send(b"CAPA\r\n").lines().next(),
            Some("+OK here is what I can do")
        );
        assert_eq!(
            log_in_one_line_at_a_time(&mut h),
            "+OK maildrop locked and ready\r\n"
        );
        // The numbers stay where RFC 1939 section 5 puts them; only what follows them changes.
        assert_eq!(h.send(b"STAT\r\n"), "+OK 3 132 in the maildrop\r\n");
        assert_eq!(
            h.send(b"LIST 2\r\n"),
            "+OK 2 29 octets, no more and no less\r\n"
        );
        assert_eq!(
            h.send(b"LIST\r\n"),
            "+OK scan listing follows\r\n1 68\r\n2 29\r\n3 35\r\n.\r\n"
        );
        assert_eq!(
            h.send(b"RETR 2\r\n"),
            "+OK message follows\r\nSubject: two\r\n\r\nno final crlf\r\n.\r\n"
        );
        assert_eq!(h.send(b"DELE 2\r\n"), "+OK marked\r\n");
        assert_eq!(
            h.send(b"DELE 2\r\n"),
            "-ERR that one is marked for deletion\r\n"
        );
        assert_eq!(h.send(b"QUIT\r\n"), "+OK dewey POP3 server signing off\r\n");
        // Response codes are kept: only the words change.
        let mut h = Harness::new(TlsMode::Implicit, config);
        h.in_use = true;
        assert_eq!(
            log_in_one_line_at_a_time(&mut h),
            "-ERR [IN-USE] someone else is reading this maildrop\r\n"
        );
    }

    #[test]
    fn greeting_has_a_timestamp_only_with_apop() {
        let h = Harness::pop3();
        assert_eq!(
            h.transcript(),
            "+OK mail.example.test POP3 reference-server ready\r\n"
        );
        let h = Harness::new(TlsMode::Starttls, with_apop());
        let greeting = h.transcript();
        let timestamp = greeting
            .strip_prefix("+OK mail.example.test POP3 reference-server ready <")
            .and_then(|rest| rest.strip_suffix("@mail.example.test>\r\n"))
            .unwrap_or_else(|| panic!("{greeting}"));
        let (random, clock) = timestamp.split_once('.').unwrap();
        assert!(random.parse::<u32>().is_ok() && clock.parse::<u64>().unwrap() > 1_600_000_000);
    }

    #[test]
    fn the_apop_timestamp_comes_from_the_sessions_clock_and_seed() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_796_119_200);
        let clock = Arc::new(StoppedClock(at));
        let greeting = |seed: u64| {
            let session = Session::new(Arc::new(with_apop()), connection(TlsMode::Starttls))
                .with_clock(clock.clone())
                .with_seed(seed);
            Harness::around(session).transcript()
        };
        let first = greeting(3);
        assert_eq!(
            first,
            greeting(3),
            "the same seed and clock, another greeting"
        );
        assert!(
            first.ends_with(".1796119200@mail.example.test>\r\n"),
            "the timestamp is not the clock's: {first}"
        );
        assert_ne!(first, greeting(4), "another seed, the same timestamp");
    }

    #[test]
    fn capabilities_follow_tls_and_state() {
        let mut h = Harness::pop3();
        let before = h.send(b"CAPA\r\n");
        assert_eq!(
            before,
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
             PIPELINING\r\nSTLS\r\nIMPLEMENTATION reference-server\r\n.\r\n"
        );
        assert_eq!(h.send(b"STLS\r\n"), "+OK Begin TLS negotiation\r\n");
        let after = h.send(b"capa\r\n");
        assert!(after.contains("\r\nUSER\r\nSASL PLAIN\r\n"), "{after}");
        assert!(!after.contains("STLS"), "{after}");

        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        let implicit = h.send(b"CAPA\r\n");
        assert!(
            implicit.contains("\r\nUSER\r\nSASL PLAIN\r\n"),
            "{implicit}"
        );
        assert!(!implicit.contains("STLS"), "{implicit}");
        h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        let transaction = h.send(b"CAPA\r\n");
        assert!(transaction.contains("\r\nTOP\r\n"), "{transaction}");
        assert!(
            !transaction.contains("USER") && !transaction.contains("SASL"),
            "{transaction}"
        );
    }

    #[test]
    fn credentials_are_refused_before_stls() {
        let refusal =
            "-ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS\r\n";
        let mut h = Harness::new(TlsMode::Starttls, with_apop());
        for line in [
            "USER alice@example.test\r\n".to_owned(),
            "PASS alice-secret\r\n".to_owned(),
            format!("AUTH PLAIN {ALICE_PLAIN}\r\n"),
            "AUTH\r\n".to_owned(),
            "APOP alice@example.test 0123456789abcdef0123456789abcdef\r\n".to_owned(),
        ] {
            assert_eq!(h.send(line.as_bytes()), refusal, "{line}");
        }
        assert!(h.apop.is_empty());
        assert_eq!(h.session.account(), None);

        let mut h = Harness::new(TlsMode::Starttls, with_policy(Policy::Pop3PlaintextAuth));
        assert!(
            h.send(b"CAPA\r\n")
                .contains("\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n")
        );
        let login = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert_eq!(
            login,
            "+OK Send PASS\r\n+OK Logged in, 3 messages (132 octets)\r\n"
        );

        // A listener without TLS at all is a plain-text test setup.
        let mut h = Harness::new(TlsMode::None, Config::defaults());
        assert!(h.send(b"CAPA\r\n").contains("\r\nUSER\r\n"));
        assert!(h.send(b"STLS\r\n").starts_with("-ERR STLS not available"));
        let login = h.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
        assert!(login.starts_with("+OK Logged in"), "{login}");
    }

    #[test]
    fn stls_only_once_and_only_where_offered() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        assert_eq!(h.send(b"STLS\r\n"), "-ERR STLS not available\r\n");
        let mut h = Harness::pop3();
        h.send(b"STLS\r\n");
        assert_eq!(h.send(b"STLS\r\n"), "-ERR Already using TLS\r\n");
        h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert_eq!(
            h.send(b"STLS\r\n"),
            "-ERR STLS not allowed in this state\r\n"
        );
    }

    #[test]
    fn bytes_sent_with_stls_are_dropped_unless_faulty() {
        let mut h = Harness::pop3();
        assert_eq!(
            h.send(b"STLS\r\nCAPA\r\nUSER alice@example.test\r\n"),
            "+OK Begin TLS negotiation\r\n"
        );
        // Nothing of the injected USER survives: PASS has no name to go with.
        assert_eq!(
            h.send(b"PASS alice-secret\r\n"),
            "-ERR Syntax: USER first\r\n"
        );

        let mut h = Harness::new(TlsMode::Starttls, with_policy(Policy::StarttlsInjection));
        let replies = h.send(b"STLS\r\nCAPA\r\n");
        assert!(
            replies.starts_with("+OK Begin TLS negotiation\r\n+OK Capability list follows\r\n"),
            "{replies}"
        );
    }

    #[test]
    fn a_whole_session() {
        let mut h = Harness::logged_in();
        let [(_, m1), (_, m2), (_, m3)] = MESSAGES;
        let (l1, l2, l3) = (m1.len(), m2.len(), m3.len());
        assert_eq!(l1 + l2 + l3, 132);
        assert_eq!(h.session.account(), Some(ALICE));
        assert_eq!(h.send(b"STAT\r\n"), "+OK 3 132\r\n");
        assert_eq!(
            h.send(b"LIST\r\n"),
            format!("+OK 3 messages (132 octets)\r\n1 {l1}\r\n2 {l2}\r\n3 {l3}\r\n.\r\n")
        );
        assert_eq!(h.send(b"LIST 2\r\n"), format!("+OK 2 {l2}\r\n"));
        assert_eq!(
            h.send(b"UIDL\r\n"),
            "+OK Unique-ID listing follows\r\n1 7.10\r\n2 7.11\r\n3 7.12\r\n.\r\n"
        );
        assert_eq!(h.send(b"uidl 3\r\n"), "+OK 3 7.12\r\n");
        assert_eq!(
            h.send(b"RETR 1\r\n"),
            format!(
                "+OK {l1} octets\r\nSubject: one\r\nFrom: a@example.test\r\n\r\nline1\r\n\
                 ..dotted\r\n...two\r\nline4\r\n.\r\n"
            )
        );
        assert_eq!(
            h.send(b"RETR 2\r\n"),
            format!("+OK {l2} octets\r\nSubject: two\r\n\r\nno final crlf\r\n.\r\n")
        );
        let headers = "Subject: one\r\nFrom: a@example.test\r\n\r\n";
        assert_eq!(
            h.send(b"TOP 1 0\r\n"),
            format!("+OK Top of message 1 follows\r\n{headers}.\r\n")
        );
        assert_eq!(
            h.send(b"TOP 1 2\r\n"),
            format!("+OK Top of message 1 follows\r\n{headers}line1\r\n..dotted\r\n.\r\n")
        );
        assert_eq!(
            h.send(b"TOP 3 5\r\n"),
            format!("+OK Top of message 3 follows\r\n{m3}.\r\n")
        );
        assert_eq!(h.send(b"DELE 1\r\n"), "+OK Message 1 deleted\r\n");
        assert_eq!(
            h.send(b"LIST\r\n"),
            format!(
                "+OK 2 messages ({} octets)\r\n2 {l2}\r\n3 {l3}\r\n.\r\n",
                l2 + l3
            )
        );
        assert_eq!(h.send(b"STAT\r\n"), format!("+OK 2 {}\r\n", l2 + l3));
        assert!(!h.send(b"UIDL\r\n").contains("7.10"));
        for again in ["DELE 1", "LIST 1", "UIDL 1", "RETR 1", "TOP 1 0"] {
            assert_eq!(
                h.send(format!("{again}\r\n").as_bytes()),
                "-ERR Message 1 already deleted\r\n",
                "{again}"
            );
        }
        for missing in ["LIST 4", "LIST 0", "RETR 4294967295", "DELE 99999999999"] {
            assert_eq!(
                h.send(format!("{missing}\r\n").as_bytes()),
                "-ERR No such message\r\n",
                "{missing}"
            );
        }
        assert_eq!(
            h.send(b"RSET\r\n"),
            "+OK maildrop has 3 messages (132 octets)\r\n"
        );
        assert_eq!(h.send(b"NOOP\r\n"), "+OK\r\n");
        assert_eq!(h.send(b"STAT\r\n"), "+OK 3 132\r\n");
        h.send(b"DELE 3\r\nDELE 2\r\n");
        assert!(h.updates.is_empty());
        assert_eq!(h.send(b"QUIT\r\n"), "+OK Bye, 2 messages deleted\r\n");
        assert_eq!(h.updates, [(ALICE.to_owned(), vec![11, 12])]);
        assert!(h.closed);
    }

    #[test]
    fn quit_deletes_nothing_with_the_dele_fault() {
        let mut h = Harness::logged_in_with(with_policy(Policy::Pop3DeleIgnored));
        assert_eq!(h.send(b"DELE 2\r\n"), "+OK Message 2 deleted\r\n");
        assert_eq!(h.send(b"QUIT\r\n"), "+OK Bye, 1 messages deleted\r\n");
        assert_eq!(h.updates, [(ALICE.to_owned(), vec![])]);
    }

    #[test]
    fn update_failure_is_reported_and_closes() {
        let mut h = Harness::logged_in();
        h.send(b"DELE 1\r\n");
        h.session.push_input(b"QUIT\r\n");
        assert!(matches!(h.session.step(), Event::Update { delete, .. } if delete == [10]));
        h.session
            .update_result(Err(StoreError::Interrupted("disk full".into())));
        assert!(matches!(h.session.step(), Event::Close));
        assert_eq!(
            h.session.take_output(),
            b"-ERR [SYS/TEMP] Some deleted messages not removed\r\n"
        );
    }

    #[test]
    fn abort_and_quit_before_login_never_update() {
        let mut h = Harness::logged_in();
        h.send(b"DELE 1\r\nDELE 2\r\n");
        h.session.abort("Idle timeout, closing connection");
        let event = h.session.step();
        h.run(event);
        assert!(h.closed);
        assert!(h.updates.is_empty());
        assert!(
            h.transcript()
                .ends_with("-ERR Idle timeout, closing connection\r\n")
        );

        let mut h = Harness::pop3();
        assert_eq!(h.send(b"QUIT\r\n"), "+OK Bye\r\n");
        assert!(h.closed && h.updates.is_empty());
    }

    #[test]
    fn uidls_are_uidvalidity_and_uid_and_change_per_session_only_with_the_fault() {
        let mut h = Harness::logged_in();
        assert_eq!(h.send(b"UIDL 1\r\n"), "+OK 1 7.10\r\n");
        let uidl = |h: &mut Harness| h.send(b"UIDL 1\r\n");
        let mut one = Harness::logged_in_with(with_policy(Policy::Pop3UidlUnstable));
        let mut two = Harness::logged_in_with(with_policy(Policy::Pop3UidlUnstable));
        let (first, second) = (uidl(&mut one), uidl(&mut two));
        assert!(first.starts_with("+OK 1 7.10."), "{first}");
        assert_ne!(first, second);
        // Within a session they stay put.
        assert_eq!(uidl(&mut one), first);
    }

    #[test]
    fn sizes_without_cr_only_with_the_fault() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert!(
            reply.ends_with("+OK Logged in, 3 messages (132 octets)\r\n"),
            "{reply}"
        );
        assert_eq!(h.opened, [(true, false)]);
        let mut h = Harness::new(TlsMode::Implicit, with_policy(Policy::Pop3SizesWithoutCr));
        let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        // 7, 2 and 2 CRLFs fewer.
        assert!(
            reply.ends_with("+OK Logged in, 3 messages (121 octets)\r\n"),
            "{reply}"
        );
        assert_eq!(h.opened, [(true, true)]);
        assert_eq!(h.send(b"LIST 1\r\n"), "+OK 1 61\r\n");
        assert_eq!(h.send(b"STAT\r\n"), "+OK 3 121\r\n");
    }

    #[test]
    fn only_the_no_lock_fault_opens_a_locked_maildrop() {
        let mut h = Harness::new(TlsMode::Implicit, with_policy(Policy::Pop3NoLock));
        h.in_use = true;
        let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert!(
            reply.ends_with("+OK Logged in, 3 messages (132 octets)\r\n"),
            "{reply}"
        );
        assert_eq!(h.opened, [(false, false)]);
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        h.in_use = true;
        let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert!(reply.contains("-ERR [IN-USE]"), "{reply}");
        assert_eq!(h.opened, [(true, false)]);
    }

    #[test]
    fn a_dropped_connection_deletes_nothing_unless_the_fault_says_so() {
        let mut h = Harness::logged_in();
        h.send(b"DELE 1\r\nDELE 3\r\n");
        assert!(matches!(h.session.disconnected(), Event::Close));
        assert!(matches!(h.session.step(), Event::Close));

        let mut h = Harness::logged_in_with(with_policy(Policy::Pop3UpdateOnDisconnect));
        h.send(b"DELE 1\r\nDELE 3\r\n");
        let event = h.session.disconnected();
        let Event::Update { account, delete } = event else {
            panic!("{event:?}");
        };
        assert_eq!((account.as_str(), delete), (ALICE, vec![10, 12]));
        // Nobody hears the outcome, and the session is over.
        h.session
            .update_result(Err(StoreError::Interrupted("disk full".into())));
        assert!(h.session.take_output().is_empty());
        assert!(matches!(h.session.step(), Event::Close));

        // Nothing marked, nothing to delete.
        let mut h = Harness::logged_in_with(with_policy(Policy::Pop3UpdateOnDisconnect));
        assert!(matches!(h.session.disconnected(), Event::Close));
        // Before login there is no maildrop.
        let mut h = Harness::new(
            TlsMode::Implicit,
            with_policy(Policy::Pop3UpdateOnDisconnect),
        );
        assert!(matches!(h.session.disconnected(), Event::Close));
    }

    #[test]
    fn a_shutdown_says_so_and_deletes_nothing() {
        let mut h = Harness::logged_in();
        h.send(b"DELE 1\r\n");
        h.session.shut_down();
        assert!(matches!(h.session.step(), Event::Close));
        assert_eq!(
            String::from_utf8(h.session.take_output()).unwrap(),
            "-ERR [SYS/TEMP] Server shutting down\r\n"
        );
        assert!(h.updates.is_empty());
    }

    #[test]
    fn a_locked_or_failing_maildrop_keeps_authorization() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        h.in_use = true;
        let reply = h.send(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert_eq!(
            reply,
            "+OK Send PASS\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n"
        );
        assert_eq!(h.session.account(), None);
        assert_eq!(
            h.send(b"STAT\r\n"),
            "-ERR STAT not allowed in this state\r\n"
        );
        h.in_use = false;
        let reply = h.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
        assert!(reply.starts_with("+OK Logged in"), "{reply}");

        let mut session = Harness::new(TlsMode::Implicit, Config::defaults()).session;
        session.push_input(b"USER alice@example.test\r\nPASS alice-secret\r\n");
        assert!(matches!(session.step(), Event::Authenticate { .. }));
        session.auth_result(Some(ALICE.into()));
        assert!(matches!(session.step(), Event::OpenMaildrop { account, .. } if account == ALICE));
        session.maildrop_opened(Err(MaildropError::Unavailable(StoreError::Interrupted(
            "database locked".into(),
        ))));
        assert!(matches!(session.step(), Event::NeedInput));
        let out = String::from_utf8(session.take_output()).unwrap();
        assert!(out.ends_with("-ERR [SYS/TEMP] Mailbox unavailable, try again later\r\n"));
        assert_eq!(session.account(), None);
    }

    #[test]
    fn failed_logins_all_read_the_same() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        let failed = "-ERR [AUTH] Authentication failed\r\n";
        let wrong = h.send(b"USER alice@example.test\r\nPASS wrong\r\n");
        let unknown = h.send(b"USER nobody@example.test\r\nPASS alice-secret\r\n");
        assert_eq!(wrong, unknown);
        assert_eq!(wrong, format!("+OK Send PASS\r\n{failed}"));
        // The name is forgotten after a failed PASS, and after any other command.
        assert_eq!(
            h.send(b"PASS alice-secret\r\n"),
            "-ERR Syntax: USER first\r\n"
        );
        assert_eq!(
            h.send(b"USER alice@example.test\r\nNOOP\r\nPASS alice-secret\r\n"),
            "+OK Send PASS\r\n-ERR NOOP not allowed in this state\r\n-ERR Syntax: USER first\r\n"
        );
        // A password may hold spaces (RFC 1939 section 7).
        let mut config = Config::defaults();
        config.accounts[0].password = Some("two words".into());
        let mut h = Harness::new(TlsMode::Implicit, config);
        let reply = h.send(b"USER alice@example.test\r\nPASS two words\r\n");
        assert!(
            reply.ends_with("+OK Logged in, 3 messages (132 octets)\r\n"),
            "{reply}"
        );
    }

    #[test]
    fn auth_plain_with_and_without_initial_response() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        assert_eq!(
            h.send(b"AUTH\r\n"),
            "+OK Supported SASL mechanisms follow\r\nPLAIN\r\n.\r\n"
        );
        assert_eq!(
            h.send(b"AUTH CRAM-MD5\r\n"),
            "-ERR Unsupported SASL mechanism\r\n"
        );
        assert_eq!(h.send(b"AUTH PLAIN\r\n"), "+ \r\n");
        assert_eq!(h.send(b"*\r\n"), "-ERR Authentication cancelled\r\n");
        assert_eq!(h.send(b"AUTH PLAIN ***\r\n"), "-ERR Invalid base64\r\n");
        assert_eq!(h.send(b"AUTH PLAIN\r\n"), "+ \r\n");
        assert_eq!(h.send(b"not base64!\r\n"), "-ERR Invalid base64\r\n");
        // "bob@example.test\0alice@example.test\0alice-secret"
        let proxy = "Ym9iQGV4YW1wbGUudGVzdABhbGljZUBleGFtcGxlLnRlc3QAYWxpY2Utc2VjcmV0";
        assert!(
            h.send(format!("AUTH PLAIN {proxy}\r\n").as_bytes())
                .starts_with("-ERR [AUTH] Authorization identity")
        );
        assert!(
            h.send(b"AUTH PLAIN =\r\n")
                .starts_with("-ERR Invalid PLAIN response")
        );
        // "\0alice@example.test\0wrong"
        assert_eq!(
            h.send(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n"),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        assert_eq!(h.session.account(), None);
        assert_eq!(h.send(b"auth plain\r\n"), "+ \r\n");
        let reply = h.send(format!("{ALICE_PLAIN}\r\n").as_bytes());
        assert!(reply.starts_with("+OK Logged in"), "{reply}");
        assert_eq!(h.session.account(), Some(ALICE));
        assert_eq!(
            h.send(b"AUTH PLAIN\r\n"),
            "-ERR AUTH not allowed in this state\r\n"
        );

        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        let reply = h.send(format!("AUTH PLAIN {ALICE_PLAIN}\r\n").as_bytes());
        assert!(reply.starts_with("+OK Logged in"), "{reply}");
    }

    #[test]
    fn apop_only_when_configured() {
        let apop = b"APOP alice@example.test 0123456789ABCDEF0123456789abcdef\r\n";
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        assert_eq!(h.send(apop), "-ERR Unknown command\r\n");
        assert!(h.apop.is_empty());

        let mut h = Harness::new(TlsMode::Implicit, with_apop());
        let greeting = h.transcript();
        let timestamp = &greeting[greeting.find('<').unwrap()..greeting.len() - 2];
        let reply = h.send(apop);
        assert!(reply.starts_with("+OK Logged in"), "{reply}");
        assert_eq!(
            h.apop,
            [(
                ALICE.to_owned(),
                timestamp.to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned()
            )]
        );
        let mut h = Harness::new(TlsMode::Implicit, with_apop());
        assert_eq!(
            h.send(b"APOP alice@example.test ffffffffffffffffffffffffffffffff\r\n"),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        assert_eq!(
            h.send(b"APOP alice@example.test xyz\r\n"),
            "-ERR Syntax: APOP name digest (32 hex digits)\r\n"
        );
    }

    #[test]
    fn pipelined_commands_are_answered_in_order() {
        let mut h = Harness::logged_in();
        let replies =
            h.send(b"STAT\r\nLIST 1\r\nUIDL 1\r\nRETR 2\r\nDELE 3\r\nSTAT\nNOOP\r\nQUIT\r\n");
        assert_eq!(
            replies,
            "+OK 3 132\r\n+OK 1 68\r\n+OK 1 7.10\r\n+OK 29 octets\r\nSubject: two\r\n\r\n\
             no final crlf\r\n.\r\n+OK Message 3 deleted\r\n+OK 2 97\r\n+OK\r\n\
             +OK Bye, 1 messages deleted\r\n"
        );
        assert_eq!(h.updates, [(ALICE.to_owned(), vec![12])]);
    }

    #[test]
    fn commands_split_across_reads() {
        let mut h = Harness::logged_in();
        assert_eq!(h.send(b"ST"), "");
        assert_eq!(h.send(b"AT\r"), "");
        assert_eq!(h.send(b"\nLI"), "+OK 3 132\r\n");
        assert_eq!(h.send(b"ST 3\r\n"), "+OK 3 35\r\n");
    }

    #[test]
    fn wrong_state_unknown_and_bad_syntax() {
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        for verb in [
            "RETR 1", "TOP 1 1", "LIST", "UIDL", "STAT", "DELE 1", "RSET", "NOOP",
        ] {
            let name = verb.split(' ').next().unwrap();
            assert_eq!(
                h.send(format!("{verb}\r\n").as_bytes()),
                format!("-ERR {name} not allowed in this state\r\n")
            );
        }
        let mut h = Harness::logged_in();
        for verb in ["USER alice", "PASS x", "AUTH PLAIN", "STLS"] {
            let name = verb.split(' ').next().unwrap();
            assert_eq!(
                h.send(format!("{verb}\r\n").as_bytes()),
                format!("-ERR {name} not allowed in this state\r\n")
            );
        }
        let mut h = Harness::logged_in();
        assert_eq!(h.send(b"LAST\r\n"), "-ERR Unknown command\r\n");
        assert_eq!(h.send(b"\r\n"), "-ERR Unknown command\r\n");
        assert_eq!(h.send(b"LIST x\r\n"), "-ERR Syntax: LIST [msg]\r\n");
        assert_eq!(h.send(b"TOP 1\r\n"), "-ERR Syntax: TOP msg lines\r\n");
        assert_eq!(h.send(b"QUIT now\r\n"), "-ERR Syntax: QUIT\r\n");
        assert!(!h.closed);
    }

    #[test]
    fn a_message_that_went_away() {
        let mut h = Harness::logged_in();
        h.gone.push(11);
        assert_eq!(
            h.send(b"RETR 2\r\nTOP 2 0\r\nSTAT\r\n"),
            "-ERR [SYS/TEMP] Message 2 is no longer available\r\n\
             -ERR [SYS/TEMP] Message 2 is no longer available\r\n+OK 3 132\r\n"
        );
    }

    #[test]
    fn long_lines_are_refused_once_and_not_buffered() {
        let mut h = Harness::logged_in();
        let long = format!("NOOP {}\r\n", "x".repeat(250));
        assert_eq!(h.send(long.as_bytes()), "-ERR Line too long\r\n");
        assert_eq!(h.send(b"NOOP\r\n"), "+OK\r\n");
        // 253 octets and CRLF would be 255 octets: the limit, allowed (and a syntax error).
        let longest = format!("LIST {}\r\n", "1".repeat(248));
        assert_eq!(h.send(longest.as_bytes()), "-ERR No such message\r\n");
        // A line without end, read in pieces: one reply, and the input is not kept.
        assert_eq!(h.send(&[b'y'; 1000]), "-ERR Line too long\r\n");
        assert_eq!(h.send(&[b'y'; 100_000]), "");
        assert!(h.session.input.is_empty());
        assert_eq!(h.send(b"yyy\r\nSTAT\r\n"), "+OK 3 132\r\n");
        assert!(!h.closed);

        // AUTH lines and SASL responses may be longer, up to 12288 octets.
        let mut h = Harness::new(TlsMode::Implicit, Config::defaults());
        let big = format!("AUTH PLAIN {}\r\n", "A".repeat(4000));
        assert!(
            h.send(big.as_bytes())
                .starts_with("-ERR Invalid PLAIN response")
        );
        h.send(b"AUTH PLAIN\r\n");
        assert!(
            h.send(format!("{}\r\n", "A".repeat(8000)).as_bytes())
                .starts_with("-ERR Invalid PLAIN response")
        );
        h.send(b"AUTH PLAIN\r\n");
        assert_eq!(h.send(&[b'A'; 13000]), "-ERR Line too long\r\n");
        // The exchange is over: the next line is a command again.
        assert_eq!(
            h.send(b"AAAA\r\nCAPA\r\n").lines().next(),
            Some("+OK Capability list follows")
        );
    }

    #[test]
    fn commands_carrying_no_mail_are_limited_until_mail_is_read_or_deleted() {
        let mut config = Config::defaults();
        config.limits.max_nonmail_commands = 3;
        let mut h = Harness::logged_in_with(config.clone());
        let before = h.send(b"STAT\r\nNOOP\r\nUIDL 1\r\nRETR 1\r\nLIST\r\nRSET\r\nCAPA\r\n");
        assert!(!before.contains("Too many"), "{before}");
        assert!(!h.closed);
        let over = h.send(b"NOOP\r\nNOOP\r\n");
        assert_eq!(
            over,
            "-ERR Too many commands that carry no mail (limit 3 in a row); closing connection\r\n"
        );
        assert!(h.closed);

        let mut config = with_policy(Policy::NoCommandLimit);
        config.limits.max_nonmail_commands = 3;
        let mut h = Harness::logged_in_with(config);
        h.send(&b"NOOP\r\n".repeat(10));
        assert!(!h.closed);
    }

    #[test]
    fn a_session_has_a_limit_on_all_its_commands() {
        let mut config = Config::defaults();
        config.limits.max_commands = 5; // USER and PASS count too
        let mut h = Harness::logged_in_with(config);
        let replies = h.send(b"RETR 1\r\nRETR 1\r\nRETR 1\r\nRETR 1\r\n");
        assert!(
            replies.ends_with(
                "-ERR Too many commands in one session (limit 5); closing connection\r\n"
            ),
            "{replies}"
        );
        assert!(h.closed);
    }

    #[test]
    fn too_many_errors_close_the_connection() {
        let mut config = Config::defaults();
        config.limits.max_errors = 3;
        let mut h = Harness::new(TlsMode::Starttls, config);
        assert_eq!(h.send(b"FROB\r\nSTAT\r\n").lines().count(), 2);
        assert!(!h.closed);
        assert_eq!(
            h.send(b"USER x\r\nCAPA\r\n"),
            "-ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS\r\n\
             -ERR Too many errors, closing connection\r\n"
        );
        assert!(h.closed);

        let mut config = Config::defaults();
        config.limits.max_errors = 1;
        let mut h = Harness::new(TlsMode::Starttls, config);
        assert_eq!(
            h.send(&[b'y'; 300]),
            "-ERR Line too long\r\n-ERR Too many errors, closing connection\r\n"
        );
        assert!(h.closed);

        let mut config = with_policy(Policy::NoErrorLimit);
        config.limits.max_errors = 1;
        let mut h = Harness::new(TlsMode::Starttls, config);
        h.send(&b"FROB\r\n".repeat(20));
        assert!(!h.closed);
    }

    #[test]
    fn a_25_mb_message_is_sent_in_one_pass() {
        let line =
            b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx\r\n";
        let mut message = b"Subject: big\r\n\r\n".to_vec();
        let mut dotted = 0;
        while message.len() < 25 * 1024 * 1024 {
            if message.len().is_multiple_of(7) {
                message.push(b'.');
                dotted += 1;
            }
            message.extend_from_slice(line);
        }
        let mut out = Vec::new();
        dot_stuff(&mut out, &message);
        assert_eq!(out.len(), message.len() + dotted + 3);
        assert!(out.ends_with(b"wx\r\n.\r\n"));
        assert!(
            out.capacity() < out.len() + out.len() / 100,
            "no second growth"
        );
    }

    #[test]
    fn dot_stuffing_edge_cases() {
        let stuffed = |message: &[u8]| {
            let mut out = Vec::new();
            dot_stuff(&mut out, message);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(stuffed(b""), ".\r\n");
        assert_eq!(stuffed(b"."), "..\r\n.\r\n");
        assert_eq!(stuffed(b"a\n.\nb"), "a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(stuffed(b"a\r\n\r\n.\r\n"), "a\r\n\r\n..\r\n.\r\n");
        assert_eq!(stuffed(b"a\rb\r\n"), "a\rb\r\n.\r\n");
        assert_eq!(top_of(b"H: 1\r\n\r\nb1\r\nb2\r\n", 0), b"H: 1\r\n\r\n");
        assert_eq!(
            top_of(b"H: 1\r\n\r\nb1\r\nb2\r\n", 1),
            b"H: 1\r\n\r\nb1\r\n"
        );
        assert_eq!(top_of(b"H: 1\r\n\r\nb1\r\nb2", 9), b"H: 1\r\n\r\nb1\r\nb2");
        assert_eq!(top_of(b"\r\nbody\r\n", 0), b"\r\n");
        assert_eq!(top_of(b"H: 1\r\nH: 2", 0), b"H: 1\r\nH: 2");
    }

    #[test]
    fn logs_never_show_secrets() {
        assert_eq!(redacted(b"PASS hunter2 x"), "PASS <redacted>");
        assert_eq!(redacted(b"pass"), "pass");
        assert_eq!(redacted(b"AUTH PLAIN AGFAYgBj"), "AUTH PLAIN <redacted>");
        assert_eq!(redacted(b"AUTH PLAIN"), "AUTH PLAIN");
        assert_eq!(redacted(b"APOP bob 0123"), "APOP bob <redacted>");
        assert_eq!(redacted(b"USER bob"), "USER bob");
        let event = Event::Authenticate {
            login: "bob".into(),
            password: auth::Password::new("hunter2"),
        };
        assert!(!format!("{event:?}").contains("hunter2"));
    }

    /// Whether a status line opens a multi-line response.
    fn opens_block(line: &str) -> bool {
        let Some(text) = line.strip_prefix("+OK ") else {
            return false;
        };
        let first_is_digit = text.starts_with(|c: char| c.is_ascii_digit());
        matches!(
            text,
            "Capability list follows"
                | "Unique-ID listing follows"
                | "Supported SASL mechanisms follow"
        ) || text.starts_with("Top of message ")
            || (first_is_digit && text.contains(" messages ("))
            || text
                .strip_suffix(" octets")
                .is_some_and(|size| size.parse::<u64>().is_ok())
    }

    /// Every line ends with CRLF; each is a status line, the `+ ` of SASL, or inside a
    /// multi-line response, dot-stuffed and terminated.
    fn check_transcript(out: &[u8]) -> Result<(), String> {
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            return Err("output does not end with CRLF".into());
        }
        let text = String::from_utf8(out.to_vec()).map_err(|_| "output is not UTF-8")?;
        let mut in_block = false;
        for line in text.split_terminator("\r\n") {
            if line.contains(['\r', '\n']) {
                return Err(format!("bare line end in {line:?}"));
            }
            if in_block {
                if line == "." {
                    in_block = false;
                } else if line.starts_with('.') && !line.starts_with("..") {
                    return Err(format!("line not dot-stuffed: {line:?}"));
                }
            } else if line == "+OK" || line.starts_with("+OK ") {
                in_block = opens_block(line);
            } else if !(line.starts_with("-ERR ") || line == "+ ") {
                return Err(format!("not a status line: {line:?}"));
            }
        }
        if in_block {
            return Err("unterminated multi-line response".into());
        }
        Ok(())
    }

    const VOCABULARY: &[&str] = &[
        "STAT\r\n",
        "LIST\r\n",
        "LIST 2\r\n",
        "UIDL\r\n",
        "UIDL 1\r\n",
        "RETR 1\r\n",
        "RETR 2\r\n",
        "TOP 1 1\r\n",
        "TOP 3 0\r\n",
        "DELE 1\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "CAPA\r\n",
        "STLS\r\n",
        "USER alice@example.test\r\n",
        "PASS alice-secret\r\n",
        "AUTH PLAIN\r\n",
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n",
        "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n",
        "*\r\n",
        "AUTH\r\n",
        "APOP alice@example.test 0123456789abcdef0123456789abcdef\r\n",
        "list 99\n",
        "\r\n",
        "\n",
    ];

    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            12 => proptest::sample::select(VOCABULARY).prop_map(|s| s.as_bytes().to_vec()),
            1 => Just(b"QUIT\r\n".to_vec()),
            4 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => Just(vec![b'x'; 300]),
        ]
    }

    proptest! {
        #[test]
        fn any_input_in_any_state_gives_well_formed_replies(
            tls_mode in proptest::sample::select(&[TlsMode::None, TlsMode::Starttls, TlsMode::Implicit][..]),
            apop in any::<bool>(),
            plaintext in any::<bool>(),
            patient in any::<bool>(),
            logged_in in any::<bool>(),
            variants in proptest::sample::subsequence(
                vec![
                    Variant::Pop3NoSasl,
                    Variant::Pop3NoTop,
                    Variant::Pop3NoUidl,
                    Variant::Pop3NoRespCodes,
                    Variant::Pop3NoPipelining,
                    Variant::Pop3NoCapa,
                ],
                0..=6,
            ),
            chunks in proptest::collection::vec(chunk(), 0..40),
        ) {
            let mut config = with_variants(&variants);
            config.pop3.apop = apop;
            if plaintext {
                config.faults.policy.insert(Policy::Pop3PlaintextAuth);
            }
            if patient {
                config.limits.max_errors = 1000;
            }
            let mut h = Harness::new(tls_mode, config);
            if logged_in {
                for line in ["STLS\r\n", "USER alice@example.test\r\n", "PASS alice-secret\r\n"] {
                    h.send(line.as_bytes());
                }
                prop_assert_eq!(h.session.account(), Some(ALICE));
            }
            for chunk in &chunks {
                if h.closed {
                    break;
                }
                h.session.push_input(chunk);
                let event = h.session.step();
                h.run(event);
                prop_assert!(h.session.input.len() <= chunk.len() + MAX_AUTH_LINE);
            }
            if let Err(why) = check_transcript(&h.output) {
                return Err(TestCaseError::fail(format!("{why}\n{}", h.transcript())));
            }
            if variants.contains(&Variant::Pop3NoRespCodes) {
                prop_assert!(!h.transcript().contains("-ERR ["), "{}", h.transcript());
            }
            prop_assert!(h.updates.len() <= 1);
            prop_assert!(h.updates.is_empty() || h.closed);
            let quits = chunks.iter().filter(|c| c.as_slice() == b"QUIT\r\n").count();
            prop_assert!(h.updates.is_empty() || quits > 0);
        }
    }
}

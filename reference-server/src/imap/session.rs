//! One IMAP connection: the RFC 3501 states, the port policy of 143 and 993, and the commands
//! built so far. Commands arrive parsed (see [`super::framing`]); replies are written as bytes.
//!
//! The session is async because nearly every command reads or writes the store; the driver in
//! [`super::serve`] owns the socket and does TLS.

use std::sync::Arc;

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::AString;

use super::extensions::{Extension, Extensions};
use super::mailboxes::Selected;
use super::namespace::Namespace;
use super::presentation::Presentation;
use crate::auth;
use crate::budget::CommandBudget;
use crate::config::{Config, TlsMode};
use crate::faults::Policy;
use crate::net::Connection;
use crate::store::Store;

/// What the driver must do after a command's reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Run the TLS handshake (STARTTLS was accepted), then call [`Session::tls_started`].
    StartTls,
    /// Check credentials, then call [`Session::login_result`].
    Authenticate,
    /// Wait for the client's SASL response line, then call [`Session::sasl_response`].
    SaslResponse,
    /// IDLE (RFC 2177): report changes as they happen (see [`Session::wait_for_change`] and
    /// [`Session::idle_updates`]) until the client's `DONE` line, given to [`Session::idle_end`].
    Idle,
    /// Send the output so far, then call [`Session::resume`] for more (a large FETCH).
    More,
    /// Close the connection.
    Close,
}

/// Credentials waiting for a verdict from the driver (which throttles failures).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The login name.
    pub login: String,
    /// The password.
    pub password: auth::Password,
}

/// The RFC 3501 section 3 states.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    Authenticated { account: String },
    Logout,
}

/// The IMAP session.
#[derive(Debug)]
pub struct Session {
    pub(super) config: Arc<Config>,
    conn: Connection,
    pub(super) store: Store,
    state: State,
    /// The selected mailbox (RFC 3501 Selected state).
    pub(super) selected: Option<Selected>,
    tls: bool,
    /// The tag of the command waiting for a driver verdict or a SASL response.
    pending: Option<String>,
    credentials: Option<Credentials>,
    errors: u32,
    commands: CommandBudget,
    /// CONDSTORE is enabled (RFC 7162 3.1): FETCH responses carry MODSEQ.
    pub(super) condstore: bool,
    /// The tag of a running IDLE.
    pub(super) idle_tag: Option<String>,
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
    /// Under `imap_idle_polling`, when a running IDLE next looks for changes.
    pub(super) idle_poll: Option<tokio::time::Instant>,
}

impl Session {
    /// A new session on a connection.
    pub fn new(config: Arc<Config>, conn: Connection, store: Store) -> Session {
        Session {
            tls: conn.tls_mode == TlsMode::Implicit,
            conn,
            store,
            state: State::NotAuthenticated,
            selected: None,
            pending: None,
            credentials: None,
            errors: 0,
            commands: CommandBudget::default(),
            condstore: false,
            idle_tag: None,
            closing: false,
            fetch_job: None,
            extensions: Extensions::of(&config),
            namespace: Namespace::of(&config),
            presentation: Presentation::of(&config),
            idle_poll: None,
            config,
        }
    }

    /// The greeting, with the capabilities as a response code (RFC 3501 7.1) so that clients
    /// need not ask.
    pub fn greeting(&mut self) -> Vec<u8> {
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

    /// The credentials of the pending LOGIN or AUTHENTICATE, for the driver to check.
    pub fn take_credentials(&mut self) -> Option<Credentials> {
        self.credentials.take()
    }

    /// TLS is up after STARTTLS.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// Whether the session has made too many errors and should be closed.
    pub fn too_many_errors(&self) -> bool {
        self.errors >= self.config.limits.max_errors
            && !self.config.faults.has(Policy::NoErrorLimit)
    }

    /// A reply the framer decided on (a malformed or oversized command); counts as an error.
    pub fn rejected(&mut self, tag: Option<&str>, status: &str, text: &str) -> Vec<u8> {
        self.errors += 1;
        let reply = format!("{} {status} {text}\r\n", tag.unwrap_or("*"));
        self.presentation.retext(reply.into_bytes())
    }

    /// Handles one command: its reply bytes and what the driver does next. Changes other
    /// sessions made to the selected mailbox are reported before the tagged reply, where RFC
    /// 3501 section 7 allows them.
    pub async fn handle(&mut self, command: Command<'_>) -> (Vec<u8>, Next) {
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
            match self.mailbox_command(&tag, command.body, &mut out).await {
                Ok(next) => next,
                Err(body) => self.dispatch(&tag, body, &mut out),
            }
        };
        let next = if next == Next::Continue {
            self.finish(&mut out, expunges_allowed).await
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
    pub(super) async fn finish(&mut self, out: &mut Vec<u8>, expunges_allowed: bool) -> Next {
        let tagged = split_tagged(out);
        self.report_changes(out, expunges_allowed).await;
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
        self.pending = Some(tag.to_owned());
        self.credentials = Some(Credentials {
            login,
            password: auth::Password::new(password),
        });
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

    /// The client's line after `+ ` in AUTHENTICATE PLAIN (RFC 3501 6.2.2).
    pub fn sasl_response(&mut self, response: &[u8]) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let tag = self.pending.take().unwrap_or_else(|| "*".into());
        let text = String::from_utf8_lossy(response);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "*" {
            self.bad(&mut out, &tag, "Authentication cancelled");
            return (self.presentation.retext(out), Next::Continue);
        }
        let next = match auth::decode_response(text) {
            Ok(payload) => self.plain_payload(&tag, &payload, &mut out),
            Err(_) => {
                self.bad(&mut out, &tag, "Invalid base64 in SASL response");
                Next::Continue
            }
        };
        (self.presentation.retext(out), next)
    }

    fn plain_payload(&mut self, tag: &str, payload: &[u8], out: &mut Vec<u8>) -> Next {
        match auth::parse_plain(payload) {
            Ok((login, password)) => {
                self.pending = Some(tag.to_owned());
                self.credentials = Some(Credentials {
                    login,
                    password: auth::Password::new(password),
                });
                Next::Authenticate
            }
            Err(why) => {
                self.no(out, tag, &format!("[AUTHENTICATIONFAILED] {why}"));
                Next::Continue
            }
        }
    }

    /// The verdict on the pending credentials: the account, or `None`.
    pub fn login_result(&mut self, account: Option<String>) -> Vec<u8> {
        let mut out = Vec::new();
        let tag = self.pending.take().unwrap_or_else(|| "*".into());
        match account {
            Some(account) => {
                tracing::info!(peer = %self.conn.peer, account, "IMAP login");
                self.state = State::Authenticated { account };
                let capabilities = self.capabilities().join(" ");
                ok(
                    &mut out,
                    &tag,
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
            None => self.no(&mut out, &tag, "[AUTHENTICATIONFAILED] Invalid credentials"),
        }
        self.presentation.retext(out)
    }

    /// Whether the session has said BYE and must end (its selected mailbox went away).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether a client has logged in.
    pub fn is_authenticated(&self) -> bool {
        self.account().is_some()
    }

    /// A `* BYE` for an idle timeout or a shutdown.
    pub fn bye(&mut self, text: &str) -> Vec<u8> {
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

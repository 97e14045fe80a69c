//! The client: a connection, its commands and the reading of their responses.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::arguments::{escape_quoted, mailbox_arg, string_part};
use super::framer::Framer;
use super::malformed;
use super::types::{
    CommandResult, Continuation, Incoming, Outcome, Response, Selected, Status, StatusKind,
};
use crate::clients::ClientError;
use crate::clients::conn::Connection;
use crate::clients::legacy_tls::{HelloOutcome, LegacyOutcome, LegacyVersion, Offer};
use crate::clients::tls::TlsClient;
use crate::clients::transcript::Transcript;

/// Default for [`ImapClient::set_max_literal`].
pub const DEFAULT_MAX_LITERAL: usize = 64 * 1024 * 1024;

/// A piece of a command for [`ImapClient::command_with_literals`]; the tag goes before the
/// first piece and CRLF after the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Bytes sent exactly as given.
    Text(Cow<'a, [u8]>),
    /// A synchronising literal: `{n}` CRLF, then the octets only after the server's `+`.
    Literal(Cow<'a, [u8]>),
    /// A non-synchronising literal (RFC 7888 LITERAL+): `{n+}` CRLF and the octets at once.
    LiteralPlus(Cow<'a, [u8]>),
}

/// Where a command stands after a response: finished with a tagged status, or asked to go on.
enum Step {
    Done(Status),
    Continue(Continuation, Vec<u8>),
}

/// An IDLE the server accepted (RFC 2177).
struct Idle {
    tag: String,
    /// Untagged responses that came before the `+`, for [`ImapClient::idle_wait`] first.
    pending: VecDeque<Response>,
    /// The tagged response when the server ended the IDLE before DONE.
    ended: Option<Status>,
}

/// A connection to an IMAP server. Every operation waits at most the connection's timeout.
///
/// Commands get tags `a1`, `a2`, ... and return every untagged response up to their tagged
/// one. Mailbox names are given decoded and sent in modified UTF-7, quoted; [`Self::command`]
/// sends anything else exactly as written.
pub struct ImapClient {
    conn: Connection,
    tags_issued: u32,
    max_literal: usize,
    capabilities: Vec<String>,
    idle: Option<Idle>,
}

impl ImapClient {
    /// Connects in plaintext. Does not read the greeting: call [`Self::greeting`].
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            conn: Connection::connect(addr, timeout).await?,
            tags_issued: 0,
            max_literal: DEFAULT_MAX_LITERAL,
            capabilities: Vec::new(),
            idle: None,
        })
    }

    /// Connects and starts TLS at once (implicit TLS, RFC 8314, port 993). Does not read the
    /// greeting.
    pub async fn connect_tls(
        addr: &str,
        tls: &TlsClient,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut client = Self::connect(addr, timeout).await?;
        client.conn.upgrade(tls).await?;
        Ok(client)
    }

    /// Resets the connection at once, mid-whatever (load runs' `--client-faults`).
    pub fn abort(&mut self) {
        self.conn.abort();
    }

    /// Sends a ClientHello on the plaintext connection, waits for the server's first answer
    /// and resets the connection: a client that gives up half-way through the handshake.
    pub async fn abort_in_tls_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        self.conn.abort_in_handshake(tls).await
    }

    /// Starts TLS on the open plaintext connection at once, without a command: the second half
    /// of [`Self::connect_tls`], for callers that time the connect and the handshake apart.
    pub async fn tls_handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        self.conn.upgrade(tls).await
    }

    /// Stops keeping a transcript, for load runs where it would grow with every message; what
    /// was recorded so far is dropped.
    pub fn stop_transcript(&mut self) {
        self.conn.stop_transcript();
    }

    /// Changes how long each later operation may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.conn.timeout = timeout;
    }

    /// Changes the most literal octets one response may announce before it is refused as
    /// malformed ([`DEFAULT_MAX_LITERAL`] at first).
    pub fn set_max_literal(&mut self, octets: usize) {
        self.max_literal = octets;
    }

    /// Allocates the next tag, for commands sent with [`Self::send_raw`] and read with
    /// [`Self::read_result`].
    pub fn next_tag(&mut self) -> String {
        self.tags_issued += 1;
        format!("a{}", self.tags_issued)
    }

    /// Sends `bytes` exactly as given, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.send(bytes, "sending").await
    }

    async fn read_frame(&mut self, while_doing: &str) -> Result<(Incoming, Vec<u8>), ClientError> {
        let framer = Framer::new(self.max_literal);
        self.conn
            .read_parsed(while_doing, |buf| framer.parse(buf))
            .await
    }

    /// Reads the next response of any kind, untagged, tagged or continuation.
    pub async fn read_incoming(&mut self) -> Result<Incoming, ClientError> {
        let (incoming, _) = self.read_frame("waiting for a response").await?;
        match &incoming {
            Incoming::Untagged(response) => self.observe(response),
            Incoming::Tagged(tagged) => self.observe_status(&tagged.status),
            Incoming::Continuation(_) => {}
        }
        Ok(incoming)
    }

    /// Remembers capabilities a response announces.
    fn observe(&mut self, response: &Response) {
        match response {
            Response::Capability(capabilities) => self.capabilities = capabilities.clone(),
            Response::Status(status) => self.observe_status(status),
            _ => {}
        }
    }

    fn observe_status(&mut self, status: &Status) {
        if let Some(capabilities) = status.capabilities() {
            self.capabilities = capabilities.to_vec();
        }
    }

    /// Reads until the tagged response to `tag` (any tag when `None`), gathering the untagged
    /// ones into `untagged`; stops early at a continuation request.
    async fn read_step(
        &mut self,
        tag: Option<&str>,
        untagged: &mut Vec<Response>,
        what: &str,
    ) -> Result<Step, ClientError> {
        let while_doing = format!("waiting for the response to {what}");
        loop {
            let (incoming, head) = self.read_frame(&while_doing).await?;
            match incoming {
                Incoming::Untagged(response) => {
                    self.observe(&response);
                    untagged.push(response);
                }
                Incoming::Continuation(continuation) => {
                    return Ok(Step::Continue(continuation, head));
                }
                Incoming::Tagged(tagged) if tag.is_none_or(|tag| tag == tagged.tag) => {
                    self.observe_status(&tagged.status);
                    return Ok(Step::Done(tagged.status));
                }
                Incoming::Tagged(tagged) => {
                    return Err(malformed(
                        format!(
                            "tagged response for {:?} while waiting for the one to {what} ({:?})",
                            tagged.tag,
                            tag.unwrap_or_default()
                        ),
                        &head,
                    ));
                }
            }
        }
    }

    /// Reads to the tagged response; a continuation request is an error, as nothing waits
    /// for one.
    async fn finish(
        &mut self,
        tag: String,
        mut untagged: Vec<Response>,
        what: &str,
    ) -> Result<CommandResult, ClientError> {
        match self.read_step(Some(&tag), &mut untagged, what).await? {
            Step::Done(tagged) => Ok(CommandResult {
                tag,
                tagged,
                untagged,
            }),
            Step::Continue(_, head) => Err(unexpected_continuation(what, &head)),
        }
    }

    /// Reads the responses to a command sent with [`Self::send_raw`] under `tag`, up to and
    /// including its tagged one.
    pub async fn read_result(&mut self, tag: &str) -> Result<CommandResult, ClientError> {
        self.finish(tag.to_owned(), Vec::new(), tag).await
    }

    /// Sends `line` under the next tag and reads every response up to the tagged one. A
    /// continuation request is an error: this client sends nothing after the line.
    pub async fn command(&mut self, line: &str) -> Result<CommandResult, ClientError> {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} {line}\r\n").as_bytes())
            .await?;
        self.finish(tag, Vec::new(), &verb(line)).await
    }

    /// Sends a command made of `parts` under the next tag. Before the octets of each
    /// synchronising literal it waits for the server's `+`; when the server answers with its
    /// tagged response instead, that is returned and nothing more is sent.
    pub async fn command_with_literals(
        &mut self,
        parts: &[Part<'_>],
    ) -> Result<CommandResult, ClientError> {
        let tag = self.next_tag();
        let what = match parts.first() {
            Some(Part::Text(text)) => verb(&String::from_utf8_lossy(text)),
            _ => "a command with literals".to_owned(),
        };
        let mut batch = format!("{tag} ").into_bytes();
        let mut untagged = Vec::new();
        for part in parts {
            match part {
                Part::Text(bytes) => batch.extend_from_slice(bytes),
                Part::LiteralPlus(octets) => {
                    batch.extend_from_slice(format!("{{{}+}}\r\n", octets.len()).as_bytes());
                    batch.extend_from_slice(octets);
                }
                Part::Literal(octets) => {
                    batch.extend_from_slice(format!("{{{}}}\r\n", octets.len()).as_bytes());
                    self.send_raw(&batch).await?;
                    batch.clear();
                    let step = self.read_step(Some(&tag), &mut untagged, &what).await?;
                    if let Step::Done(tagged) = step {
                        return Ok(CommandResult {
                            tag,
                            tagged,
                            untagged,
                        });
                    }
                    batch.extend_from_slice(octets);
                }
            }
        }
        batch.extend_from_slice(b"\r\n");
        self.send_raw(&batch).await?;
        self.finish(tag, untagged, &what).await
    }

    /// Reads the greeting: `* OK`, `* PREAUTH` or `* BYE`, anything else being malformed.
    /// Capabilities in its code are remembered.
    pub async fn greeting(&mut self) -> Result<Status, ClientError> {
        let (incoming, head) = self.read_frame("waiting for the greeting").await?;
        match incoming {
            Incoming::Untagged(Response::Status(status))
                if matches!(
                    status.kind,
                    StatusKind::Ok | StatusKind::Preauth | StatusKind::Bye
                ) =>
            {
                self.observe_status(&status);
                Ok(status)
            }
            _ => Err(malformed(
                "greeting is not * OK, * PREAUTH or * BYE (RFC 3501 section 7.1)",
                &head,
            )),
        }
    }

    /// CAPABILITY; the list is remembered.
    pub async fn capability(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CAPABILITY").await
    }

    /// The capabilities last announced, by a CAPABILITY response or code, since the last TLS
    /// upgrade.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether the capabilities last announced include `name` (any case).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|own| own.eq_ignore_ascii_case(name))
    }

    /// STARTTLS and, only on OK, a TLS handshake over this connection. The capabilities are
    /// forgotten (RFC 3501 section 6.2.1): ask again.
    pub async fn starttls(&mut self, tls: &TlsClient) -> Result<CommandResult, ClientError> {
        self.starttls_with_injected(tls, b"").await
    }

    /// Sends the STARTTLS command followed by `injected` in one write, then behaves like
    /// [`Self::starttls`]. A server that buffered `injected` and answers it over TLS is open to
    /// STARTTLS command injection (CVE-2011-0411): read a response afterwards to find out.
    pub async fn starttls_with_injected(
        &mut self,
        tls: &TlsClient,
        injected: &[u8],
    ) -> Result<CommandResult, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let tag = self.next_tag();
        self.send_raw(&[format!("{tag} STARTTLS\r\n").as_bytes(), injected].concat())
            .await?;
        let result = self.finish(tag, Vec::new(), "STARTTLS").await?;
        if result.is_ok() {
            self.capabilities.clear();
            self.conn.upgrade(tls).await?;
        }
        Ok(result)
    }

    /// STARTTLS and, on OK, a probe of whether the server accepts a `version` handshake (see
    /// [`probe_legacy_tls`]) instead of starting TLS. The connection is unusable afterwards. A
    /// refused STARTTLS comes back as `Ok(Err(status))`.
    pub async fn starttls_then_probe_legacy(
        &mut self,
        version: LegacyVersion,
        sni: Option<&str>,
    ) -> Result<Result<LegacyOutcome, Status>, ClientError> {
        let outcome = self
            .starttls_then_probe(Offer::Legacy(version), sni)
            .await?;
        Ok(outcome.map(LegacyOutcome::from))
    }

    /// STARTTLS and, on OK, a ClientHello with `offer` instead of starting TLS (see
    /// [`probe_hello`]). The connection is unusable afterwards. A refused STARTTLS comes back as
    /// `Ok(Err(status))`.
    pub async fn starttls_then_probe(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<Result<HelloOutcome, Status>, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let result = self.command("STARTTLS").await?;
        if !result.is_ok() {
            return Ok(Err(result.tagged));
        }
        self.conn.probe_hello(offer, sni).await.map(Ok)
    }

    /// LOGIN, each argument quoted, or sent as a literal when it cannot be.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command_with_literals(&[
            Part::Text(Cow::Borrowed(b"LOGIN ")),
            string_part(user.as_bytes()),
            Part::Text(Cow::Borrowed(b" ")),
            string_part(password.as_bytes()),
        ])
        .await
    }

    /// `AUTHENTICATE PLAIN` (RFC 4616) with an empty authorization identity: the credentials as
    /// an initial response when `sasl_ir` (RFC 4959), else after the server's `+`. A server that
    /// asks again gets them again, once; then the exchange is cancelled with `*`.
    pub async fn authenticate_plain(
        &mut self,
        user: &str,
        password: &str,
        sasl_ir: bool,
    ) -> Result<CommandResult, ClientError> {
        let credentials = BASE64.encode(format!("\0{user}\0{password}"));
        let tag = self.next_tag();
        let line = if sasl_ir {
            format!("{tag} AUTHENTICATE PLAIN {credentials}\r\n")
        } else {
            format!("{tag} AUTHENTICATE PLAIN\r\n")
        };
        self.send_raw(line.as_bytes()).await?;
        let mut untagged = Vec::new();
        let mut continuations = 0;
        loop {
            match self
                .read_step(Some(&tag), &mut untagged, "AUTHENTICATE")
                .await?
            {
                Step::Done(tagged) => {
                    return Ok(CommandResult {
                        tag,
                        tagged,
                        untagged,
                    });
                }
                Step::Continue(_, head) => {
                    continuations += 1;
                    let answer = match continuations {
                        1 => format!("{credentials}\r\n"),
                        2 => "*\r\n".to_owned(),
                        _ => {
                            return Err(unexpected_continuation("a cancelled AUTHENTICATE", &head));
                        }
                    };
                    self.send_raw(answer.as_bytes()).await?;
                }
            }
        }
    }

    /// LOGOUT: the BYE comes among the untagged responses.
    pub async fn logout(&mut self) -> Result<CommandResult, ClientError> {
        self.command("LOGOUT").await
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<CommandResult, ClientError> {
        self.command("NOOP").await
    }

    /// CHECK.
    pub async fn check(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CHECK").await
    }

    /// SELECT and what it reported.
    pub async fn select(&mut self, mailbox: &str) -> Result<Selected, ClientError> {
        let result = self
            .command(&format!("SELECT {}", mailbox_arg(mailbox)))
            .await?;
        Ok(Selected::from_result(result))
    }

    /// EXAMINE and what it reported.
    pub async fn examine(&mut self, mailbox: &str) -> Result<Selected, ClientError> {
        let result = self
            .command(&format!("EXAMINE {}", mailbox_arg(mailbox)))
            .await?;
        Ok(Selected::from_result(result))
    }

    /// `LIST reference pattern`; the LIST responses are in [`CommandResult::lists`].
    pub async fn list(
        &mut self,
        reference: &str,
        pattern: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "LIST {} {}",
            mailbox_arg(reference),
            mailbox_arg(pattern)
        ))
        .await
    }

    /// `LSUB reference pattern`; the LSUB responses are in [`CommandResult::lsubs`].
    pub async fn lsub(
        &mut self,
        reference: &str,
        pattern: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "LSUB {} {}",
            mailbox_arg(reference),
            mailbox_arg(pattern)
        ))
        .await
    }

    /// `STATUS mailbox (items)`, such as `&["MESSAGES", "UIDNEXT"]`; the answer is in
    /// [`CommandResult::mailbox_status`].
    pub async fn status(
        &mut self,
        mailbox: &str,
        items: &[&str],
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!(
            "STATUS {} ({})",
            mailbox_arg(mailbox),
            items.join(" ")
        ))
        .await
    }

    /// CREATE.
    pub async fn create(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("CREATE {}", mailbox_arg(mailbox)))
            .await
    }

    /// DELETE.
    pub async fn delete(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("DELETE {}", mailbox_arg(mailbox)))
            .await
    }

    /// RENAME.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("RENAME {} {}", mailbox_arg(from), mailbox_arg(to)))
            .await
    }

    /// SUBSCRIBE.
    pub async fn subscribe(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("SUBSCRIBE {}", mailbox_arg(mailbox)))
            .await
    }

    /// UNSUBSCRIBE.
    pub async fn unsubscribe(&mut self, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UNSUBSCRIBE {}", mailbox_arg(mailbox)))
            .await
    }

    /// `APPEND mailbox [(flags)] [date] literal`, the message as a synchronising literal, or a
    /// non-synchronising one when `literal_plus` (RFC 7888). `date` is an RFC 3501 date-time
    /// such as `"17-Jul-1996 02:44:25 -0700"`, quoted here. A server that answers the literal's
    /// announcement with NO or BAD instead of `+` gets nothing more.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        date: Option<&str>,
        message: &[u8],
        literal_plus: bool,
    ) -> Result<CommandResult, ClientError> {
        let mut head = format!("APPEND {} ", mailbox_arg(mailbox));
        if !flags.is_empty() {
            head.push_str(&format!("({}) ", flags.join(" ")));
        }
        if let Some(date) = date {
            head.push_str(&escape_quoted(date));
            head.push(' ');
        }
        let message = Cow::Borrowed(message);
        let literal = if literal_plus {
            Part::LiteralPlus(message)
        } else {
            Part::Literal(message)
        };
        self.command_with_literals(&[Part::Text(Cow::Owned(head.into_bytes())), literal])
            .await
    }

    /// `FETCH set items`, `items` as written, such as `(FLAGS BODY.PEEK[])`; the answers are in
    /// [`CommandResult::fetches`].
    pub async fn fetch(&mut self, set: &str, items: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("FETCH {set} {items}")).await
    }

    /// `UID FETCH set items`.
    pub async fn uid_fetch(
        &mut self,
        set: &str,
        items: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID FETCH {set} {items}")).await
    }

    /// `STORE set item value`, such as `store("1:3", "+FLAGS.SILENT", "(\\Deleted)")`.
    pub async fn store(
        &mut self,
        set: &str,
        item: &str,
        value: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("STORE {set} {item} {value}")).await
    }

    /// `UID STORE set item value`.
    pub async fn uid_store(
        &mut self,
        set: &str,
        item: &str,
        value: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID STORE {set} {item} {value}"))
            .await
    }

    /// `COPY set mailbox`; see [`CommandResult::copy_uid`].
    pub async fn copy(&mut self, set: &str, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("COPY {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `UID COPY set mailbox`.
    pub async fn uid_copy(
        &mut self,
        set: &str,
        mailbox: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID COPY {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `MOVE set mailbox` (RFC 6851).
    pub async fn move_(&mut self, set: &str, mailbox: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("MOVE {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// `UID MOVE set mailbox` (RFC 6851).
    pub async fn uid_move(
        &mut self,
        set: &str,
        mailbox: &str,
    ) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID MOVE {set} {}", mailbox_arg(mailbox)))
            .await
    }

    /// EXPUNGE; see [`CommandResult::expunged`].
    pub async fn expunge(&mut self) -> Result<CommandResult, ClientError> {
        self.command("EXPUNGE").await
    }

    /// `UID EXPUNGE set` (RFC 4315).
    pub async fn uid_expunge(&mut self, set: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID EXPUNGE {set}")).await
    }

    /// `SEARCH criteria`, criteria as written; see [`CommandResult::search`].
    pub async fn search(&mut self, criteria: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("SEARCH {criteria}")).await
    }

    /// `UID SEARCH criteria`.
    pub async fn uid_search(&mut self, criteria: &str) -> Result<CommandResult, ClientError> {
        self.command(&format!("UID SEARCH {criteria}")).await
    }

    /// CLOSE.
    pub async fn close(&mut self) -> Result<CommandResult, ClientError> {
        self.command("CLOSE").await
    }

    /// UNSELECT (RFC 3691).
    pub async fn unselect(&mut self) -> Result<CommandResult, ClientError> {
        self.command("UNSELECT").await
    }

    /// `ENABLE capabilities` (RFC 5161); see [`CommandResult::enabled`].
    pub async fn enable(&mut self, capabilities: &[&str]) -> Result<CommandResult, ClientError> {
        self.command(&format!("ENABLE {}", capabilities.join(" ")))
            .await
    }

    /// NAMESPACE (RFC 2342); see [`CommandResult::namespaces`].
    pub async fn namespace(&mut self) -> Result<CommandResult, ClientError> {
        self.command("NAMESPACE").await
    }

    /// `ID` (RFC 2971) with the given fields, or `ID NIL` for `None`; see [`CommandResult::id`].
    pub async fn id(
        &mut self,
        fields: Option<&[(&str, &str)]>,
    ) -> Result<CommandResult, ClientError> {
        let argument = match fields {
            None => "NIL".to_owned(),
            Some(fields) => {
                let pairs: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| {
                        format!("{} {}", escape_quoted(name), escape_quoted(value))
                    })
                    .collect();
                format!("({})", pairs.join(" "))
            }
        };
        self.command(&format!("ID {argument}")).await
    }

    /// Sends IDLE (RFC 2177) and waits for the `+`: `Ok(continuation)` when idling, or the
    /// result when the server refused instead. Untagged responses before the `+` are handed out
    /// first by [`Self::idle_wait`].
    pub async fn idle_start(&mut self) -> Result<Outcome<Continuation>, ClientError> {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let mut untagged = Vec::new();
        match self.read_step(Some(&tag), &mut untagged, "IDLE").await? {
            Step::Continue(continuation, _) => {
                self.idle = Some(Idle {
                    tag,
                    pending: untagged.into(),
                    ended: None,
                });
                Ok(Ok(continuation))
            }
            Step::Done(tagged) => Ok(Err(CommandResult {
                tag,
                tagged,
                untagged,
            })),
        }
    }

    /// The next untagged response within `timeout`, or `None` if none came. A timeout leaves
    /// the connection usable: bytes of a response that was still arriving are kept. If the
    /// server ends the IDLE with its tagged response, that is kept for [`Self::idle_done`] and
    /// this returns `None`.
    pub async fn idle_wait(&mut self, timeout: Duration) -> Result<Option<Response>, ClientError> {
        if let Some(idle) = &mut self.idle {
            if let Some(response) = idle.pending.pop_front() {
                return Ok(Some(response));
            }
            if idle.ended.is_some() {
                return Ok(None);
            }
        }
        let limit = std::mem::replace(&mut self.conn.timeout, timeout);
        let read = self.read_frame("waiting for an untagged response").await;
        self.conn.timeout = limit;
        let (incoming, head) = match read {
            Err(ClientError::Timeout { .. }) => return Ok(None),
            other => other?,
        };
        match incoming {
            Incoming::Untagged(response) => {
                self.observe(&response);
                Ok(Some(response))
            }
            Incoming::Tagged(tagged) => match &mut self.idle {
                Some(idle) if idle.tag == tagged.tag => {
                    idle.ended = Some(tagged.status.clone());
                    self.observe_status(&tagged.status);
                    Ok(None)
                }
                _ => Err(malformed(
                    "tagged response while waiting for untagged ones",
                    &head,
                )),
            },
            Incoming::Continuation(_) => Err(unexpected_continuation("IDLE", &head)),
        }
    }

    /// Ends IDLE: sends DONE and reads to the tagged response, whose untagged responses are
    /// those [`Self::idle_wait`] did not hand out and those after DONE. If the server already
    /// ended the IDLE, sends nothing and returns that. Without an IDLE from
    /// [`Self::idle_start`] (one sent raw, say), sends DONE and reads to the next tagged
    /// response, whatever its tag.
    pub async fn idle_done(&mut self) -> Result<CommandResult, ClientError> {
        let Some(idle) = self.idle.take() else {
            self.send_raw(b"DONE\r\n").await?;
            let mut untagged = Vec::new();
            return match self.read_step(None, &mut untagged, "DONE").await? {
                Step::Done(tagged) => Ok(CommandResult {
                    tag: String::new(),
                    tagged,
                    untagged,
                }),
                Step::Continue(_, head) => Err(unexpected_continuation("DONE", &head)),
            };
        };
        let untagged = Vec::from(idle.pending);
        if let Some(tagged) = idle.ended {
            return Ok(CommandResult {
                tag: idle.tag,
                tagged,
                untagged,
            });
        }
        self.send_raw(b"DONE\r\n").await?;
        self.finish(idle.tag, untagged, "IDLE").await
    }

    /// Whether the server closes the connection (EOF or reset) within `timeout`. Whatever it
    /// sends meanwhile is kept for [`Self::read_incoming`] and the transcript.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Result<bool, ClientError> {
        self.conn.read_until_closed(timeout).await
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The negotiated TLS version, such as `"TLSv1.3"`, when TLS is on.
    pub fn tls_protocol_version(&self) -> Option<String> {
        self.conn.tls_protocol_version()
    }

    /// Everything sent and received so far.
    /// What the server sent in clear text after its go-ahead to start TLS, before the handshake
    /// (discarded, never read as a response); empty when it sent nothing there.
    pub fn plaintext_after_go_ahead(&self) -> &[u8] {
        &self.conn.plaintext_after_go_ahead
    }

    pub fn transcript(&self) -> &Transcript {
        self.conn.transcript()
    }
}

fn unexpected_continuation(what: &str, head: &[u8]) -> ClientError {
    malformed(
        format!("continuation request during {what}, which has nothing to send"),
        head,
    )
}

/// The command's name for messages: its first word, or two for `UID ...`.
fn verb(line: &str) -> String {
    let mut words = line.split(' ');
    let first = words.next().unwrap_or_default();
    match words.next() {
        Some(second) if first.eq_ignore_ascii_case("UID") => format!("{first} {second}"),
        _ => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::clients::imap::test_support::malformed_reason;
    use crate::clients::imap::types::Code;
    use crate::clients::test_support::{TestCert, read_until, serve_once};
    use crate::clients::transcript::Entry;
    use crate::target::TlsSettings;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn trusting(ca_pem: &str) -> TlsClient {
        let settings = TlsSettings {
            ca_pem: Some(ca_pem.to_owned()),
            server_name: Some("localhost".to_owned()),
            ..TlsSettings::default()
        };
        TlsClient::from_settings(&settings, "127.0.0.1").unwrap()
    }

    /// A fake server: sends `greeting`, then for each step reads one line (up to CRLF) and
    /// sends the step with `{tag}` replaced by that line's first word. Returns what it read.
    async fn scripted(
        greeting: &'static str,
        steps: Vec<&'static str>,
    ) -> (String, JoinHandle<Vec<u8>>) {
        serve_once(move |mut stream: TcpStream| async move {
            stream.write_all(greeting.as_bytes()).await.unwrap();
            let mut received = Vec::new();
            for step in steps {
                let line = read_until(&mut stream, b"\r\n").await;
                let text = String::from_utf8_lossy(&line).into_owned();
                let tag = text
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned();
                received.extend(line);
                stream
                    .write_all(step.replace("{tag}", &tag).as_bytes())
                    .await
                    .unwrap();
            }
            received
        })
        .await
    }

    /// Untagged responses a server may send at any time (RFC 3501 section 7) go with whichever
    /// command is running when they come, and never pass for its answer.
    #[tokio::test]
    async fn chatter_anywhere_is_kept_apart_from_the_answers() {
        let (addr, server) = scripted(
            "* OK ready\r\n",
            vec![
                // LOGIN: the tagged OK, then unsolicited responses after it.
                "{tag} OK Logged in\r\n* OK [ALERT] Maintenance tonight\r\n\
                 * CAPABILITY IMAP4rev1 NAMESPACE IDLE\r\n",
                // NAMESPACE: a warning and a stray BAD around the answer.
                "* NO [ALERT] Mailbox 91 percent full\r\n\
                 * NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n* BAD stray\r\n\
                 {tag} OK NO problem, that went fine\r\n",
                // APPEND: chatter before the continuation, and after the literal.
                "* OK Still here\r\n+ go ahead\r\n",
                "* OK Still here\r\na3 NO OK, so that did not work\r\n",
                // IDLE: chatter with the continuation.
                "+ idling\r\n* OK Still here\r\n",
                "* 4 EXISTS\r\na4 OK BAD news avoided: success\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let login = client.login("u", "p").await.unwrap();
        assert!(login.is_ok() && login.untagged.is_empty(), "{login:?}");
        let namespace = client.namespace().await.unwrap();
        assert!(namespace.is_ok(), "{namespace:?}");
        assert_eq!(namespace.untagged.len(), 5, "{namespace:?}");
        let personal = &namespace.namespaces().unwrap().personal[0];
        assert_eq!(
            (personal.prefix.as_str(), personal.delimiter),
            ("INBOX.", Some('.'))
        );
        assert!(client.has_capability("NAMESPACE"));
        assert!(namespace.codes().all(|c| *c == Code::Alert));
        let appended = client
            .append("INBOX", &[], None, b"hi", false)
            .await
            .unwrap();
        assert_eq!(appended.tagged.kind, StatusKind::No);
        assert_eq!(appended.untagged.len(), 2);
        client.idle_start().await.unwrap().unwrap();
        let short = Duration::from_millis(100);
        assert!(matches!(
            client.idle_wait(short).await.unwrap(),
            Some(Response::Status(_))
        ));
        let done = client.idle_done().await.unwrap();
        assert!(done.is_ok() && done.exists() == Some(4), "{done:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn full_session() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] ready\r\n")
                .await
                .unwrap();
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream
                .write_all(b"a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(
                    b"* 172 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 12] x\r\n\
                      * OK [UIDVALIDITY 3857529045] x\r\n* OK [UIDNEXT 4392] x\r\n\
                      * FLAGS (\\Answered \\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] x\r\n\
                      * OK [HIGHESTMODSEQ 90060128194045007] x\r\n\
                      a2 OK [READ-WRITE] SELECT completed\r\n",
                )
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            // The literal arrives in pieces, split inside its announcement and its octets.
            for piece in [
                &b"* 1 FETCH (UID 7 BODY[] {2"[..],
                b"3}\r\nSubject: hi\r\n",
                b"\r\nbody\r\n\r\n)\r\n* 2 FETCH (UID 8 BODY[] NIL)\r",
                b"\na3 OK FETCH done\r\n",
            ] {
                stream.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"* BYE see you\r\na4 OK LOGOUT completed\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = client.greeting().await.unwrap();
        assert!(greeting.is_ok());
        assert!(client.has_capability("literal+"));
        let login = client.login("al\"ice", "pa ss\\").await.unwrap();
        assert!(login.is_ok());
        assert!(client.has_capability("MOVE") && !client.has_capability("LITERAL+"));
        let selected = client.select("INBOX").await.unwrap();
        assert!(selected.result.is_ok());
        assert_eq!(selected.exists, Some(172));
        assert_eq!(selected.recent, Some(1));
        assert_eq!(selected.unseen, Some(12));
        assert_eq!(selected.uidvalidity, Some(3_857_529_045));
        assert_eq!(selected.uidnext, Some(4392));
        assert_eq!(selected.flags.as_deref().unwrap(), ["\\Answered", "\\Seen"]);
        assert_eq!(
            selected.permanent_flags.as_deref().unwrap(),
            ["\\Seen", "\\*"]
        );
        assert_eq!(selected.highest_modseq, Some(90_060_128_194_045_007));
        assert_eq!(selected.read_only, Some(false));
        let fetched = client.uid_fetch("7:8", "(UID BODY[])").await.unwrap();
        assert_eq!(fetched.tagged.text, "FETCH done");
        let fetches = fetched.fetches();
        assert_eq!(fetches.len(), 2);
        assert_eq!(
            fetches[0].body(""),
            Some(&b"Subject: hi\r\n\r\nbody\r\n\r\n"[..])
        );
        assert_eq!(fetches[1].uid(), Some(8));
        assert_eq!(fetches[1].body(""), None);
        let logout = client.logout().await.unwrap();
        assert!(logout.is_ok());
        assert!(matches!(
            &logout.untagged[..],
            [Response::Status(Status {
                kind: StatusKind::Bye,
                ..
            })]
        ));
        assert_eq!(
            String::from_utf8(server.await.unwrap()).unwrap(),
            "a1 LOGIN \"al\\\"ice\" \"pa ss\\\\\"\r\na2 SELECT \"INBOX\"\r\n\
             a3 UID FETCH 7:8 (UID BODY[])\r\na4 LOGOUT\r\n"
        );
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("S: * 1 FETCH (UID 7 BODY[] {23}\\r\\n\n"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn append_waits_for_the_continuation() {
        let message = b"Subject: x\r\n\r\nhello\r\n";
        let (addr, server) = serve_once(move |mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let mut received = read_until(&mut stream, b"}\r\n").await;
            stream
                .write_all(b"+ Ready for literal data\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"* 3 EXISTS\r\na1 OK [APPENDUID 38505 3955] APPEND completed\r\n")
                .await
                .unwrap();
            // Refused before the literal: the client must send nothing more for it.
            received.extend(read_until(&mut stream, b"}\r\n").await);
            stream
                .write_all(b"a2 NO [TRYCREATE] no such mailbox\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"a3 OK NOOP\r\n").await.unwrap();
            // LITERAL+: everything in one go.
            received.extend(read_until(&mut stream, b"\r\n\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"a4 OK done\r\n").await.unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let appended = client
            .append(
                "Entw\u{fc}rfe",
                &["\\Seen", "\\Draft"],
                Some("17-Jul-1996 02:44:25 -0700"),
                message,
                false,
            )
            .await
            .unwrap();
        assert!(appended.is_ok());
        assert_eq!(appended.exists(), Some(3));
        let (uidvalidity, uids) = appended.append_uid().unwrap();
        assert_eq!((uidvalidity, uids.single()), (38505, Some(3955)));
        let refused = client
            .append("Nope", &[], None, message, false)
            .await
            .unwrap();
        assert_eq!(refused.tagged.kind, StatusKind::No);
        assert_eq!(refused.tagged.code, Some(Code::TryCreate));
        assert!(client.noop().await.unwrap().is_ok());
        assert!(
            client
                .append("INBOX", &[], None, message, true)
                .await
                .unwrap()
                .is_ok()
        );
        let expected = [
            &b"a1 APPEND \"Entw&APw-rfe\" (\\Seen \\Draft) \"17-Jul-1996 02:44:25 -0700\" {21}\r\n"
                [..],
            message,
            b"\r\na2 APPEND \"Nope\" {21}\r\na3 NOOP\r\na4 APPEND \"INBOX\" {21+}\r\n",
            message,
            b"\r\n",
        ]
        .concat();
        assert_eq!(
            String::from_utf8(server.await.unwrap()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        // The LITERAL+ command went in a single write.
        let writes: Vec<_> = client
            .transcript()
            .entries()
            .iter()
            .filter(|entry| matches!(entry, Entry::Sent(_)))
            .collect();
        assert_eq!(writes.len(), 5);
    }

    #[tokio::test]
    async fn login_with_a_literal_and_authenticate_plain() {
        let (addr, server) = scripted(
            "* OK ready\r\n",
            vec![
                "+ go on\r\n",
                "a1 OK logged in\r\n",
                "a2 OK [CAPABILITY IMAP4rev1] authenticated\r\n",
                "+ \r\n",
                "a3 NO [AUTHENTICATIONFAILED] bad\r\n",
                "+ \r\n",
                "+ again?\r\n",
                "a4 BAD cancelled\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        // An 8-bit password cannot be quoted.
        assert!(client.login("alice", "p\u{e4}ss").await.unwrap().is_ok());
        assert!(
            client
                .authenticate_plain("a", "b", true)
                .await
                .unwrap()
                .is_ok()
        );
        assert!(client.has_capability("IMAP4rev1"));
        let failed = client.authenticate_plain("a", "b", false).await.unwrap();
        assert_eq!(
            failed.tagged.code.as_ref().map(Code::name),
            Some("AUTHENTICATIONFAILED")
        );
        let cancelled = client.authenticate_plain("a", "b", false).await.unwrap();
        assert_eq!(cancelled.tagged.kind, StatusKind::Bad);
        assert_eq!(
            String::from_utf8_lossy(&server.await.unwrap()),
            "a1 LOGIN \"alice\" {5}\r\np\u{e4}ss\r\na2 AUTHENTICATE PLAIN AGEAYg==\r\n\
             a3 AUTHENTICATE PLAIN\r\nAGEAYg==\r\na4 AUTHENTICATE PLAIN\r\nAGEAYg==\r\n*\r\n"
        );
    }

    #[tokio::test]
    async fn mailbox_commands_send_and_parse() {
        let (addr, server) = scripted(
            "* PREAUTH ready\r\n",
            vec![
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n* LIST () \"/\" \"&ZeVnLIqe-\"\r\n{tag} OK done\r\n",
                "* LSUB () \"/\" Sent\r\n{tag} OK done\r\n",
                "* STATUS Sent (MESSAGES 2 UIDNEXT 9)\r\n{tag} OK done\r\n",
                "* OK [UIDVALIDITY 5] x\r\n{tag} OK [READ-ONLY] EXAMINE\r\n",
                "* 1 FETCH (FLAGS (\\Seen))\r\n{tag} OK done\r\n",
                "* 1 FETCH (FLAGS (\\Deleted) UID 4)\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK [COPYUID 5 1 10] copied\r\n",
                "{tag} OK done\r\n",
                "* OK [COPYUID 5 4 11] x\r\n* 1 EXPUNGE\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n{tag} OK done\r\n",
                "* VANISHED 4\r\n{tag} OK done\r\n",
                "* SEARCH 1 2\r\n{tag} OK done\r\n",
                "* ESEARCH (TAG \"{tag}\") UID COUNT 0\r\n{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "{tag} OK done\r\n",
                "* ENABLED CONDSTORE\r\n{tag} OK done\r\n",
                "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK done\r\n",
                "* ID (\"name\" \"fake\")\r\n{tag} OK done\r\n",
                "* ID NIL\r\n{tag} OK done\r\n",
                "* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n",
            ],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.greeting().await.unwrap().kind, StatusKind::Preauth);
        assert!(client.create("Entw\u{fc}rfe").await.unwrap().is_ok());
        client.delete("Old").await.unwrap();
        client.rename("A&B", "C").await.unwrap();
        client.subscribe("Sent").await.unwrap();
        client.unsubscribe("Sent").await.unwrap();
        let listed = client.list("", "*").await.unwrap();
        let lists = listed.lists();
        assert!(lists[0].has_attribute("\\Sent"));
        assert_eq!(lists[1].decoded_name().unwrap(), "\u{65e5}\u{672c}\u{8a9e}");
        assert_eq!(client.lsub("", "%").await.unwrap().lsubs()[0].name, "Sent");
        let status = client
            .status("Sent", &["MESSAGES", "UIDNEXT"])
            .await
            .unwrap();
        assert_eq!(status.mailbox_status().unwrap().get("UIDNEXT"), Some(9));
        let examined = client.examine("Sent").await.unwrap();
        assert_eq!(
            (examined.read_only, examined.uidvalidity),
            (Some(true), Some(5))
        );
        assert!(client.fetch("1", "FLAGS").await.unwrap().fetches()[0].has_flag("\\Seen"));
        let stored = client.store("1", "+FLAGS", "(\\Deleted)").await.unwrap();
        assert!(stored.fetches()[0].has_flag("\\Deleted"));
        client
            .uid_store("4", "-FLAGS.SILENT", "(\\Seen)")
            .await
            .unwrap();
        client.copy("1", "Trash").await.unwrap();
        let copied = client.uid_copy("1", "Trash").await.unwrap();
        let (_, source, destination) = copied.copy_uid().unwrap();
        assert_eq!((source.single(), destination.single()), (Some(1), Some(10)));
        client.move_("1", "Trash").await.unwrap();
        let moved = client.uid_move("4", "Trash").await.unwrap();
        assert_eq!(moved.copy_uid().unwrap().2.single(), Some(11));
        assert_eq!(moved.expunged(), [1]);
        client.check().await.unwrap();
        assert_eq!(client.expunge().await.unwrap().expunged(), [3, 3]);
        let vanished = client.uid_expunge("4").await.unwrap();
        assert!(matches!(
            vanished.untagged[0],
            Response::Vanished { earlier: false, .. }
        ));
        assert_eq!(
            client
                .search("UNSEEN")
                .await
                .unwrap()
                .search()
                .unwrap()
                .numbers,
            [1, 2]
        );
        let esearched = client.uid_search("RETURN (COUNT) ALL").await.unwrap();
        let esearch = esearched.esearch().unwrap();
        assert_eq!(
            (esearch.count, esearch.tag.as_deref()),
            (Some(0), Some("a21"))
        );
        assert!(esearch.uid);
        client.close().await.unwrap();
        client.unselect().await.unwrap();
        client.noop().await.unwrap();
        client.noop().await.unwrap();
        assert_eq!(
            client.enable(&["CONDSTORE"]).await.unwrap().enabled(),
            ["CONDSTORE"]
        );
        assert_eq!(
            client
                .namespace()
                .await
                .unwrap()
                .namespaces()
                .unwrap()
                .personal[0]
                .delimiter,
            Some('/')
        );
        let id = client
            .id(Some(&[("name", "harness"), ("version", "\u{e9}1")]))
            .await
            .unwrap();
        assert_eq!(
            id.id().unwrap(),
            [("name".to_owned(), Some("fake".to_owned()))]
        );
        assert_eq!(client.id(None).await.unwrap().id(), None);
        let capabilities = client.capability().await.unwrap();
        assert_eq!(
            capabilities.capabilities().unwrap(),
            ["IMAP4rev1", "UIDPLUS"]
        );
        assert!(client.has_capability("uidplus"));
        let received = String::from_utf8(server.await.unwrap()).unwrap();
        let expected = "a1 CREATE \"Entw&APw-rfe\"\r\na2 DELETE \"Old\"\r\na3 RENAME \"A&-B\" \"C\"\r\n\
            a4 SUBSCRIBE \"Sent\"\r\na5 UNSUBSCRIBE \"Sent\"\r\na6 LIST \"\" \"*\"\r\n\
            a7 LSUB \"\" \"%\"\r\na8 STATUS \"Sent\" (MESSAGES UIDNEXT)\r\na9 EXAMINE \"Sent\"\r\n\
            a10 FETCH 1 FLAGS\r\na11 STORE 1 +FLAGS (\\Deleted)\r\n\
            a12 UID STORE 4 -FLAGS.SILENT (\\Seen)\r\na13 COPY 1 \"Trash\"\r\n\
            a14 UID COPY 1 \"Trash\"\r\na15 MOVE 1 \"Trash\"\r\na16 UID MOVE 4 \"Trash\"\r\n\
            a17 CHECK\r\na18 EXPUNGE\r\na19 UID EXPUNGE 4\r\na20 SEARCH UNSEEN\r\n\
            a21 UID SEARCH RETURN (COUNT) ALL\r\na22 CLOSE\r\na23 UNSELECT\r\na24 NOOP\r\na25 NOOP\r\n\
            a26 ENABLE CONDSTORE\r\na27 NAMESPACE\r\na28 ID (\"name\" \"harness\" \"version\" \"\u{e9}1\")\r\n\
            a29 ID NIL\r\na30 CAPABILITY\r\n";
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn idle_start_wait_and_done() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let mut received = read_until(&mut stream, b"IDLE\r\n").await;
            stream
                .write_all(b"* 2 EXISTS\r\n+ idling\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            // A response split across the client's wait: the first half must be kept.
            stream.write_all(b"* 4 EXPU").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stream.write_all(b"NGE\r\n* 3 EXISTS\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"DONE\r\n").await);
            stream
                .write_all(b"* 1 RECENT\r\na1 OK IDLE terminated\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"IDLE\r\n").await);
            stream.write_all(b"a2 NO not now\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"IDLE\r\n").await);
            stream.write_all(b"+ idling\r\n").await.unwrap();
            stream
                .write_all(b"a3 BAD idled too long\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let continuation = client.idle_start().await.unwrap().unwrap();
        assert_eq!(continuation.text, "idling");
        let short = Duration::from_millis(100);
        assert_eq!(
            client.idle_wait(short).await.unwrap(),
            Some(Response::Exists(2))
        );
        assert_eq!(client.idle_wait(short).await.unwrap(), None);
        let mut waited = Vec::new();
        for _ in 0..20 {
            if let Some(response) = client.idle_wait(short).await.unwrap() {
                waited.push(response);
                break;
            }
        }
        assert_eq!(waited, [Response::Expunge(4)]);
        let done = client.idle_done().await.unwrap();
        assert!(done.is_ok());
        assert_eq!(done.untagged, [Response::Exists(3), Response::Recent(1)]);
        let refused = client.idle_start().await.unwrap().unwrap_err();
        assert_eq!(refused.tagged.text, "not now");
        client.idle_start().await.unwrap().unwrap();
        assert_eq!(client.idle_wait(TIMEOUT).await.unwrap(), None);
        let ended = client.idle_done().await.unwrap();
        assert_eq!(
            (ended.tag.as_str(), ended.tagged.kind),
            ("a3", StatusKind::Bad)
        );
        assert_eq!(
            server.await.unwrap(),
            b"a1 IDLE\r\nDONE\r\na2 IDLE\r\na3 IDLE\r\n"
        );
        // DONE was not sent for the IDLE the server ended.
        assert!(!client.transcript().sent().ends_with(b"DONE\r\n"));
    }

    #[tokio::test]
    async fn protocol_violations_over_the_wire() {
        let (addr, _server) = scripted(
            "* OK ready\r\n",
            vec!["+ unasked\r\n", "a9 OK wrong tag\r\n"],
        )
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let reason = malformed_reason(client.noop().await);
        assert!(
            reason.contains("continuation request during NOOP"),
            "{reason}"
        );
        let reason = malformed_reason(client.command("UID FETCH 1 FLAGS").await);
        assert!(
            reason.contains("\"a9\"") && reason.contains("UID FETCH"),
            "{reason}"
        );

        let (addr, _server) = scripted("a1 OK not a greeting\r\n", vec![]).await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        assert!(malformed_reason(client.greeting().await).contains("greeting"));

        let (addr, _server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"* OK ready\r\n* 1 FETCH (BODY[] {10}\r\nabc")
                .await
                .unwrap();
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let reason = malformed_reason(client.read_incoming().await);
        assert!(
            reason.contains("closed before the reply was complete"),
            "{reason}"
        );

        let (addr, server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"never").await;
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.set_timeout(Duration::from_millis(100));
        let error = client.noop().await.unwrap_err();
        assert!(
            matches!(&error, ClientError::Timeout { while_doing, .. } if while_doing == "waiting for the response to NOOP"),
            "{error}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn raw_pipelining_with_next_tag() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let received = read_until(&mut stream, b"a2 NOOP\r\n").await;
            stream
                .write_all(b"a1 OK first\r\n* 5 EXISTS\r\na2 OK second\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let (first, second) = (client.next_tag(), client.next_tag());
        client
            .send_raw(format!("{first} NOOP\r\n{second} NOOP\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            client.read_result(&first).await.unwrap().tagged.text,
            "first"
        );
        let Incoming::Untagged(Response::Exists(5)) = client.read_incoming().await.unwrap() else {
            panic!("not EXISTS")
        };
        assert_eq!(
            client.read_result(&second).await.unwrap().tagged.text,
            "second"
        );
        assert_eq!(server.await.unwrap(), b"a1 NOOP\r\na2 NOOP\r\n");
    }

    #[tokio::test]
    async fn starttls_upgrades_only_on_ok() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |mut stream| async move {
            stream
                .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream
                .write_all(b"a1 NO [UNAVAILABLE] not now\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream.write_all(b"a2 OK Begin TLS\r\n").await.unwrap();
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            let capability = read_until(&mut tls, b"\r\n").await;
            tls.write_all(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na3 OK done\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            capability
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        assert!(client.has_capability("STARTTLS"));
        let refused = client.starttls(&tls).await.unwrap();
        assert!(!refused.is_ok() && !client.is_tls());
        assert!(client.starttls(&tls).await.unwrap().is_ok());
        assert!(client.is_tls() && client.capabilities().is_empty());
        assert!(client.capability().await.unwrap().is_ok());
        assert!(client.has_capability("AUTH=PLAIN") && !client.has_capability("STARTTLS"));
        assert_eq!(server.await.unwrap(), b"a3 CAPABILITY\r\n");
        assert!(matches!(
            client.starttls(&tls).await,
            Err(ClientError::AlreadyTls)
        ));
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("-- TLS established (TLSv1.3) --\nC: a3 CAPABILITY"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn starttls_with_injected_command_sends_one_write() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |mut stream| async move {
            stream.write_all(b"* OK ready\r\n").await.unwrap();
            let plaintext = read_until(&mut stream, b"x NOOP\r\n").await;
            stream.write_all(b"a1 OK Begin TLS\r\n").await.unwrap();
            // A vulnerable server answers the command it buffered before the handshake.
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"x OK injected\r\n").await.unwrap();
            tls.flush().await.unwrap();
            plaintext
        })
        .await;
        let mut client = ImapClient::connect(&addr, TIMEOUT).await.unwrap();
        client.greeting().await.unwrap();
        let result = client
            .starttls_with_injected(&tls, b"x NOOP\r\n")
            .await
            .unwrap();
        assert!(result.is_ok() && client.is_tls());
        let Incoming::Tagged(injected) = client.read_incoming().await.unwrap() else {
            panic!("not tagged")
        };
        assert_eq!(
            (injected.tag.as_str(), injected.status.text.as_str()),
            ("x", "injected")
        );
        assert_eq!(server.await.unwrap(), b"a1 STARTTLS\r\nx NOOP\r\n");
        assert_eq!(
            client.transcript().entries()[1],
            Entry::Sent(b"a1 STARTTLS\r\nx NOOP\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn implicit_tls_greeting() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem);
        let (addr, server) = serve_once(move |stream| async move {
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"* OK IMAPS ready\r\n").await.unwrap();
            tls.flush().await.unwrap();
            let received = read_until(&mut tls, b"LOGOUT\r\n").await;
            tls.write_all(b"* BYE bye\r\na1 OK bye\r\n").await.unwrap();
            tls.flush().await.unwrap();
            received
        })
        .await;
        let mut client = ImapClient::connect_tls(&addr, &tls, TIMEOUT).await.unwrap();
        assert!(client.is_tls());
        assert_eq!(client.tls_protocol_version().as_deref(), Some("TLSv1.3"));
        assert_eq!(client.greeting().await.unwrap().text, "IMAPS ready");
        assert!(client.logout().await.unwrap().is_ok());
        assert_eq!(server.await.unwrap(), b"a1 LOGOUT\r\n");
    }
}

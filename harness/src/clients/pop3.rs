//! A POP3 client for conformance tests (RFC 1939, 2449, 2595, 5034): raw lines, strict response
//! parsing, malformed input on request, and a transcript of every byte.
//!
//! Commands whose +OK carries data (STAT, LIST, UIDL, RETR, TOP) return an [`Outcome`] inside the
//! `Result`: `Err(ClientError)` when the connection broke or the server broke the syntax,
//! `Ok(Err(response))` when the server answered well-formed but not +OK (usually -ERR), and
//! `Ok(Ok(data))` otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::ClientError;
use super::conn::{Connection, Parsed};
use super::legacy_tls::{HelloOutcome, LegacyOutcome, LegacyVersion, Offer};
use super::tls::TlsClient;
use super::transcript::Transcript;

/// Longest status line accepted. RFC 2449 section 4 allows 512 octets including CRLF; this leaves
/// room for sloppy servers while bounding what a server that never ends a line makes us buffer.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Ends a multi-line response (RFC 1939 section 3) unless the body is empty, when the
/// terminating `.` CRLF is the first line.
const TERMINATOR: &[u8] = b"\r\n.\r\n";

/// RFC 5034 section 4: an AUTH command with its initial response must fit in 255 octets, CRLF
/// included; longer responses go on their own line after a `+` continuation.
const MAX_AUTH_COMMAND: usize = 255;

/// The outcome of a command whose +OK carries data: the data, or the well-formed response that
/// was not +OK (a -ERR, or a `+` continuation where none belongs).
pub type Outcome<T> = Result<T, Pop3Response>;

/// Which status indicator starts a response line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
    /// `+`, a SASL continuation request (RFC 5034 section 4).
    Continue,
}

/// A single-line POP3 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Response {
    /// Whether the status is `+OK`; a continuation is not.
    pub ok: bool,
    /// The status indicator.
    pub kind: ResponseKind,
    /// Everything after the indicator and its space, response code included; for a continuation,
    /// the base64 challenge.
    pub text: String,
    /// The RFC 2449 response code that starts the text (`IN-USE`, `SYS/TEMP`, ...), uppercase
    /// and without brackets, when the text starts with a well-formed one.
    pub code: Option<String>,
}

impl Pop3Response {
    fn new(kind: ResponseKind, text: String) -> Self {
        let code = match kind {
            ResponseKind::Continue => None,
            ResponseKind::Ok | ResponseKind::Err => response_code(&text),
        };
        Self {
            ok: kind == ResponseKind::Ok,
            kind,
            text,
            code,
        }
    }

    /// Whether the response code is `code` (any case) or, codes being hierarchical (RFC 2449
    /// section 8), a more specific code under it: `has_code("SYS")` matches `[SYS/TEMP]`.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref().is_some_and(|own| {
            let code = code.to_ascii_uppercase();
            own == code
                || own
                    .strip_prefix(code.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// The response as on the wire, without CRLF.
impl fmt::Display for Pop3Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let indicator = match self.kind {
            ResponseKind::Ok => "+OK",
            ResponseKind::Err => "-ERR",
            ResponseKind::Continue => "+",
        };
        if self.text.is_empty() {
            f.write_str(indicator)
        } else {
            write!(f, "{indicator} {}", self.text)
        }
    }
}

fn malformed(reason: impl Into<String>, bytes: &[u8]) -> ClientError {
    ClientError::MalformedReply {
        reason: reason.into(),
        bytes: bytes.to_vec(),
    }
}

/// `resp-code = "[" resp-level *("/" resp-level) "]"`, `resp-level = 1*rchar`, rchar being
/// printable ASCII but `/` and `]` (RFC 2449 section 8). Text that starts with `[` but no such
/// code is left alone: servers without RESP-CODES may write anything.
fn response_code(text: &str) -> Option<String> {
    let inner = text.strip_prefix('[')?;
    let (code, after) = inner.split_once(']')?;
    let level_ok =
        |level: &str| !level.is_empty() && level.bytes().all(|byte| (0x21..=0x7f).contains(&byte));
    let well_formed = code.split('/').all(level_ok) && (after.is_empty() || after.starts_with(' '));
    well_formed.then(|| code.to_ascii_uppercase())
}

/// Parses one status line from the front of `buf`: the response and the line's exact bytes.
fn parse_status(buf: &[u8]) -> Parsed<(Pop3Response, Vec<u8>)> {
    let Some(end) = buf.iter().position(|&byte| byte == b'\n') else {
        if buf.len() > MAX_STATUS_LINE {
            return Err(malformed(
                format!("no line end within {MAX_STATUS_LINE} bytes"),
                buf,
            ));
        }
        return Ok(None);
    };
    let line = &buf[..=end];
    if line.len() > MAX_STATUS_LINE {
        return Err(malformed(
            format!("status line longer than {MAX_STATUS_LINE} bytes"),
            line,
        ));
    }
    let Some(content) = line.strip_suffix(b"\r\n") else {
        return Err(malformed("line ends in a bare LF, not CRLF", line));
    };
    // Status indicators are case-sensitive (RFC 1939 section 3); a continuation is "+" SP
    // [base64] (RFC 5034 section 4), "+" alone tolerated.
    let (kind, rest) = if let Some(rest) = content.strip_prefix(b"+OK") {
        (ResponseKind::Ok, rest)
    } else if let Some(rest) = content.strip_prefix(b"-ERR") {
        (ResponseKind::Err, rest)
    } else if let Some(rest @ ([] | [b' ', ..])) = content.strip_prefix(b"+") {
        (ResponseKind::Continue, rest)
    } else {
        return Err(malformed(
            "status is not +OK, -ERR or a '+ ' continuation",
            line,
        ));
    };
    let text = match rest {
        [] => &[][..],
        [b' ', text @ ..] => text,
        _ => {
            return Err(malformed(
                "status indicator not followed by space or CRLF",
                line,
            ));
        }
    };
    if text.contains(&b'\r') {
        return Err(malformed("bare CR in the response text", line));
    }
    let text = String::from_utf8_lossy(text).into_owned();
    Ok(Some((
        (Pop3Response::new(kind, text), line.to_vec()),
        line.len(),
    )))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The lines of `bytes`, each with its CRLF; lines end at CRLF only, so a bare LF is data.
fn crlf_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = find(rest, b"\r\n").map_or(rest.len(), |at| at + 2);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// Parses a multi-line body from the front of the receive buffer. The buffer only grows until the
/// body is complete, so each call searches only what the previous calls have not: a 5 MB body
/// arriving in small reads costs linear time, not quadratic.
#[derive(Default)]
struct MultilineParser {
    /// How many bytes at the front have been searched for the terminator. Atomic only so that
    /// futures holding the parser are `Send`; one task uses it.
    scanned: AtomicUsize,
}

impl MultilineParser {
    fn parse(&self, buf: &[u8]) -> Parsed<Vec<u8>> {
        if buf.starts_with(b".\r\n") {
            return Ok(Some((Vec::new(), 3)));
        }
        // A terminator may straddle the end of what was searched last time.
        let from = self
            .scanned
            .load(Ordering::Relaxed)
            .saturating_sub(TERMINATOR.len() - 1)
            .min(buf.len());
        let Some(at) = find(&buf[from..], TERMINATOR) else {
            self.scanned.store(buf.len(), Ordering::Relaxed);
            return Ok(None);
        };
        let body_end = from + at + 2;
        Ok(Some((
            unstuff(&buf[..body_end])?,
            from + at + TERMINATOR.len(),
        )))
    }
}

/// Removes the dot a server puts before each line that starts with one (RFC 1939 section 3).
/// A line that starts with a single dot was not stuffed: that breaks the protocol, and guessing
/// would hide it.
fn unstuff(body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::with_capacity(body.len());
    for line in crlf_lines(body) {
        match line {
            [b'.', b'.', ..] => out.extend_from_slice(&line[1..]),
            [b'.', ..] => {
                return Err(malformed(
                    "line of a multi-line response starts with '.' but is not dot-stuffed",
                    line,
                ));
            }
            _ => out.extend_from_slice(line),
        }
    }
    Ok(out)
}

/// Splits an unstuffed multi-line body into lines for the listings (CAPA, LIST, UIDL), where a
/// bare CR or LF cannot be data.
fn listing_lines(body: &[u8]) -> Result<Vec<String>, ClientError> {
    crlf_lines(body)
        .map(|line| {
            let content = line.strip_suffix(b"\r\n").unwrap_or(line);
            if content.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
                return Err(malformed("bare CR or LF in a line of a listing", line));
            }
            Ok(String::from_utf8_lossy(content).into_owned())
        })
        .collect()
}

/// 1*DIGIT that fits in `T`.
fn number<T: FromStr>(word: &str) -> Option<T> {
    if word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

/// `first SP second`, optionally followed by SP and anything: the drop listing of STAT and the
/// scan listing of LIST (RFC 1939 section 5 makes no requirement on what follows the size).
fn two_numbers(text: &str) -> Option<(u32, u64)> {
    let mut parts = text.splitn(3, ' ');
    Some((number(parts.next()?)?, number(parts.next()?)?))
}

/// A scan listing, `msg SP size`; message numbers start at 1.
fn scan_listing(line: &str) -> Result<(u32, u64), ClientError> {
    two_numbers(line)
        .filter(|&(message, _)| message >= 1)
        .ok_or_else(|| {
            malformed(
                "LIST line is not 'message-number size' (RFC 1939 section 5)",
                line.as_bytes(),
            )
        })
}

/// A unique-id listing, `msg SP uid`, the uid being 1 to 70 characters in 0x21..=0x7E (RFC 1939
/// section 7).
fn uid_listing(line: &str) -> Result<(u32, String), ClientError> {
    let parsed = line.split_once(' ').and_then(|(message, uid)| {
        let message = number(message).filter(|&message: &u32| message >= 1)?;
        let uid_ok =
            (1..=70).contains(&uid.len()) && uid.bytes().all(|byte| (0x21..=0x7e).contains(&byte));
        uid_ok.then(|| (message, uid.to_owned()))
    });
    parsed.ok_or_else(|| {
        malformed(
            "UIDL line is not 'message-number unique-id' with a 1 to 70 character printable \
             unique-id (RFC 1939 section 7)",
            line.as_bytes(),
        )
    })
}

/// The APOP timestamp of a greeting (RFC 1939 section 7): the first `<...>` holding an `@` and
/// no whitespace, brackets included as the digest needs them.
fn apop_timestamp(text: &str) -> Option<String> {
    let start = text.find('<')?;
    let length = text[start..].find('>')?;
    let candidate = &text[start..=start + length];
    let inner = &candidate[1..candidate.len() - 1];
    let valid = inner.contains('@')
        && !inner.contains('<')
        && !inner.bytes().any(|byte| byte.is_ascii_whitespace());
    valid.then(|| candidate.to_owned())
}

/// CAPA lines as keyword (uppercase) and parameters (RFC 2449 section 5).
fn parse_capabilities(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next()?.to_ascii_uppercase();
            Some((keyword, words.map(str::to_owned).collect()))
        })
        .collect()
}

fn verb(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// A connection to a POP3 server. Every operation waits at most the connection's timeout.
pub struct Pop3Client {
    conn: Connection,
    capabilities: BTreeMap<String, Vec<String>>,
    apop_timestamp: Option<String>,
}

impl Pop3Client {
    /// Connects in plaintext. Does not read the greeting: call [`Self::greeting`].
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            conn: Connection::connect(addr, timeout).await?,
            capabilities: BTreeMap::new(),
            apop_timestamp: None,
        })
    }

    /// Connects and starts TLS at once (implicit TLS, RFC 8314, port 995). Does not read the
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

    /// Reads one single-line response: `+OK`, `-ERR` or a `+` continuation.
    pub async fn read_response(&mut self) -> Result<Pop3Response, ClientError> {
        Ok(self.read_status("waiting for a response").await?.0)
    }

    async fn read_status(
        &mut self,
        while_doing: &str,
    ) -> Result<(Pop3Response, Vec<u8>), ClientError> {
        self.conn.read_parsed(while_doing, parse_status).await
    }

    /// Reads the body of a multi-line response, after its +OK, up to CRLF `.` CRLF. Returns the
    /// octets with the dot-stuffing undone and the CRLF before the final `.` kept: for RETR, the
    /// message exactly as stored. Lines end at CRLF only; a bare LF is data, so a body a server
    /// ends with LF `.` LF does not end here and the read times out.
    pub async fn read_multiline(&mut self) -> Result<Vec<u8>, ClientError> {
        self.read_body("reading a multi-line response").await
    }

    async fn read_body(&mut self, while_doing: &str) -> Result<Vec<u8>, ClientError> {
        let parser = MultilineParser::default();
        self.conn
            .read_parsed(while_doing, |buf| parser.parse(buf))
            .await
    }

    /// Reads the body of a multi-line listing (CAPA, LIST, UIDL) as lines without CRLF.
    pub async fn read_multiline_lines(&mut self) -> Result<Vec<String>, ClientError> {
        listing_lines(&self.read_multiline().await?)
    }

    /// Sends `line` and CRLF.
    pub async fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends `bytes` exactly as given, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.send(bytes, "sending").await
    }

    /// Sends `line` and reads the single-line response to it.
    pub async fn command(&mut self, line: &str) -> Result<Pop3Response, ClientError> {
        Ok(self.exchange(line, verb(line)).await?.0)
    }

    async fn exchange(
        &mut self,
        line: &str,
        what: &str,
    ) -> Result<(Pop3Response, Vec<u8>), ClientError> {
        self.send_line(line).await?;
        self.read_status(&format!("waiting for the response to {what}"))
            .await
    }

    /// Sends `line` and, on +OK, reads the multi-line body that follows.
    async fn multiline_command(&mut self, line: &str) -> Result<Outcome<Vec<u8>>, ClientError> {
        let what = verb(line);
        let (response, _) = self.exchange(line, what).await?;
        if !response.ok {
            return Ok(Err(response));
        }
        Ok(Ok(self
            .read_body(&format!("reading the body of the response to {what}"))
            .await?))
    }

    async fn listing_command(&mut self, line: &str) -> Result<Outcome<Vec<String>>, ClientError> {
        match self.multiline_command(line).await? {
            Ok(body) => Ok(Ok(listing_lines(&body)?)),
            Err(response) => Ok(Err(response)),
        }
    }

    /// Reads the greeting and remembers its APOP timestamp, if a +OK greeting has one.
    pub async fn greeting(&mut self) -> Result<Pop3Response, ClientError> {
        let (response, _) = self.read_status("waiting for the greeting").await?;
        self.apop_timestamp = if response.ok {
            apop_timestamp(&response.text)
        } else {
            None
        };
        Ok(response)
    }

    /// The APOP timestamp of the greeting, `<` and `>` included.
    pub fn apop_timestamp(&self) -> Option<&str> {
        self.apop_timestamp.as_deref()
    }

    /// Sends CAPA (RFC 2449) and remembers the capabilities listed; `None` when the server
    /// does not answer +OK, which leaves none remembered.
    pub async fn capa(&mut self) -> Result<Option<Vec<String>>, ClientError> {
        let lines = self.listing_command("CAPA").await?.ok();
        self.capabilities = lines.as_deref().map(parse_capabilities).unwrap_or_default();
        Ok(lines)
    }

    /// Keywords (uppercase) and parameters of the last CAPA listing since the last TLS upgrade.
    pub fn capabilities(&self) -> &BTreeMap<String, Vec<String>> {
        &self.capabilities
    }

    /// Whether the last CAPA listing has `keyword` (any case).
    pub fn has_capability(&self, keyword: &str) -> bool {
        self.capabilities
            .contains_key(&keyword.to_ascii_uppercase())
    }

    /// The mechanisms of the last CAPA listing's SASL line, uppercase.
    pub fn sasl_mechanisms(&self) -> Vec<String> {
        self.capabilities
            .get("SASL")
            .into_iter()
            .flatten()
            .map(|mechanism| mechanism.to_ascii_uppercase())
            .collect()
    }

    /// Sends STLS and, only on +OK, upgrades this connection to TLS. The capabilities are
    /// forgotten, as RFC 2595 section 4 requires: send CAPA again.
    pub async fn stls(&mut self, tls: &TlsClient) -> Result<Pop3Response, ClientError> {
        self.stls_with_injected(tls, b"").await
    }

    /// Sends `STLS\r\n` followed by `injected` in one write, then behaves like [`Self::stls`]. A
    /// server that buffered `injected` and answers it over TLS is open to STARTTLS command
    /// injection (CVE-2011-0411): read a response afterwards to find out.
    pub async fn stls_with_injected(
        &mut self,
        tls: &TlsClient,
        injected: &[u8],
    ) -> Result<Pop3Response, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        self.send_raw(&[b"STLS\r\n", injected].concat()).await?;
        let (response, _) = self.read_status("waiting for the response to STLS").await?;
        if response.ok {
            self.capabilities.clear();
            self.conn.upgrade(tls).await?;
        }
        Ok(response)
    }

    /// Sends STLS and, on +OK, probes whether the server accepts a `version` handshake (see
    /// [`probe_legacy_tls`]) instead of starting TLS. The connection is unusable afterwards.
    /// A refused STLS comes back as `Ok(Err(response))`.
    pub async fn stls_then_probe_legacy(
        &mut self,
        version: LegacyVersion,
        sni: Option<&str>,
    ) -> Result<Outcome<LegacyOutcome>, ClientError> {
        let outcome = self.stls_then_probe(Offer::Legacy(version), sni).await?;
        Ok(outcome.map(LegacyOutcome::from))
    }

    /// Sends STLS and, on +OK, a ClientHello with `offer` instead of starting TLS (see
    /// [`probe_hello`]). The connection is unusable afterwards. A refused STLS comes back as
    /// `Ok(Err(response))`.
    pub async fn stls_then_probe(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<Outcome<HelloOutcome>, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let (response, _) = self.exchange("STLS", "STLS").await?;
        if !response.ok {
            return Ok(Err(response));
        }
        self.conn.probe_hello(offer, sni).await.map(Ok)
    }

    /// USER, then PASS only if USER was accepted; returns the response to the last one sent.
    pub async fn user_pass(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<Pop3Response, ClientError> {
        let response = self.command(&format!("USER {user}")).await?;
        if !response.ok {
            return Ok(response);
        }
        self.pass(password).await
    }

    /// `PASS` after an accepted `USER`; the password is masked in the transcript.
    pub async fn pass(&mut self, password: &str) -> Result<Pop3Response, ClientError> {
        Ok(self.exchange(&format!("PASS {password}"), "PASS").await?.0)
    }

    /// `AUTH PLAIN` (RFC 5034) with an empty authorization identity. The credentials go as the
    /// initial response when the command fits in 255 octets; otherwise, or if the server still
    /// asks with a `+` continuation, they go on their own line. Returns the first response that
    /// is not that continuation, or a second continuation.
    pub async fn auth_plain(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<Pop3Response, ClientError> {
        let credentials = BASE64.encode(format!("\0{user}\0{password}"));
        let with_initial = format!("AUTH PLAIN {credentials}");
        let line = if with_initial.len() + 2 <= MAX_AUTH_COMMAND {
            with_initial.as_str()
        } else {
            "AUTH PLAIN"
        };
        let (response, _) = self.exchange(line, "AUTH PLAIN").await?;
        if response.kind != ResponseKind::Continue {
            return Ok(response);
        }
        Ok(self
            .exchange(&credentials, "the AUTH PLAIN credentials")
            .await?
            .0)
    }

    /// STAT: the number of messages and their total size in octets, from a drop listing parsed
    /// strictly (RFC 1939 section 5).
    pub async fn stat(&mut self) -> Result<Outcome<(u32, u64)>, ClientError> {
        let (response, raw) = self.exchange("STAT", "STAT").await?;
        if !response.ok {
            return Ok(Err(response));
        }
        match two_numbers(&response.text) {
            Some(drop_listing) => Ok(Ok(drop_listing)),
            None => Err(malformed(
                "STAT answer is not '+OK count size' (RFC 1939 section 5)",
                &raw,
            )),
        }
    }

    /// LIST: message number and size of each message not marked deleted.
    pub async fn list(&mut self) -> Result<Outcome<Vec<(u32, u64)>>, ClientError> {
        match self.listing_command("LIST").await? {
            Ok(lines) => Ok(Ok(lines
                .iter()
                .map(|line| scan_listing(line))
                .collect::<Result<_, _>>()?)),
            Err(response) => Ok(Err(response)),
        }
    }

    /// `LIST message`: the single-line response, unparsed.
    pub async fn list_one(&mut self, message: u32) -> Result<Pop3Response, ClientError> {
        self.command(&format!("LIST {message}")).await
    }

    /// UIDL (RFC 1939 section 7): message number and unique-id of each message not marked
    /// deleted.
    pub async fn uidl(&mut self) -> Result<Outcome<Vec<(u32, String)>>, ClientError> {
        match self.listing_command("UIDL").await? {
            Ok(lines) => Ok(Ok(lines
                .iter()
                .map(|line| uid_listing(line))
                .collect::<Result<_, _>>()?)),
            Err(response) => Ok(Err(response)),
        }
    }

    /// `UIDL message`: the single-line response, unparsed.
    pub async fn uidl_one(&mut self, message: u32) -> Result<Pop3Response, ClientError> {
        self.command(&format!("UIDL {message}")).await
    }

    /// `RETR message`: the message's octets as stored (see [`Self::read_multiline`]).
    pub async fn retr(&mut self, message: u32) -> Result<Outcome<Vec<u8>>, ClientError> {
        self.multiline_command(&format!("RETR {message}")).await
    }

    /// `TOP message lines`: the header, the blank line and the first `lines` lines of the body.
    pub async fn top(&mut self, message: u32, lines: u32) -> Result<Outcome<Vec<u8>>, ClientError> {
        self.multiline_command(&format!("TOP {message} {lines}"))
            .await
    }

    /// `DELE message`.
    pub async fn dele(&mut self, message: u32) -> Result<Pop3Response, ClientError> {
        self.command(&format!("DELE {message}")).await
    }

    /// RSET.
    pub async fn rset(&mut self) -> Result<Pop3Response, ClientError> {
        self.command("RSET").await
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<Pop3Response, ClientError> {
        self.command("NOOP").await
    }

    /// QUIT; in the TRANSACTION state a +OK means the deletions were applied.
    pub async fn quit(&mut self) -> Result<Pop3Response, ClientError> {
        self.command("QUIT").await
    }

    /// Whether the server closes the connection (EOF or reset) within `timeout`. Whatever it
    /// sends meanwhile is kept: it shows in the transcript and [`Self::read_response`] can read
    /// it.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::clients::test_support::{TestCert, read_until, serve_once};
    use crate::clients::transcript::Entry;
    use crate::target::TlsSettings;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn trusting(ca_pem: &str, server_name: &str) -> TlsClient {
        let settings = TlsSettings {
            ca_pem: Some(ca_pem.to_owned()),
            server_name: Some(server_name.to_owned()),
            ..TlsSettings::default()
        };
        TlsClient::from_settings(&settings, "127.0.0.1").unwrap()
    }

    fn status(line: &[u8]) -> Pop3Response {
        let ((response, raw), used) = parse_status(line).unwrap().unwrap();
        assert_eq!((raw.as_slice(), used), (line, line.len()));
        response
    }

    fn malformed_bytes<T: fmt::Debug>(result: Result<T, ClientError>) -> Vec<u8> {
        match result {
            Err(ClientError::MalformedReply { bytes, .. }) => bytes,
            other => panic!("expected a malformed reply, got {other:?}"),
        }
    }

    /// Parses `wire` in one go, and again fed one byte more at a time as a socket might deliver
    /// it, checking that the incremental search agrees and completes exactly when the terminator
    /// has arrived.
    fn parse_body(wire: &[u8]) -> Parsed<Vec<u8>> {
        let whole = MultilineParser::default().parse(wire);
        let parser = MultilineParser::default();
        for end in 0..=wire.len() {
            let fed = parser.parse(&wire[..end]);
            if let Ok(Some((_, used))) = &fed {
                assert_eq!(*used, end, "complete too late");
            }
            if !matches!(fed, Ok(None)) || end == wire.len() {
                assert_eq!(format!("{fed:?}"), format!("{whole:?}"), "at {end}");
                break;
            }
        }
        whole
    }

    fn body(wire: &[u8]) -> Vec<u8> {
        let (body, used) = parse_body(wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        body
    }

    #[test]
    fn parses_status_lines() {
        let ok = status(b"+OK 2 messages\r\n");
        assert!(ok.ok && ok.kind == ResponseKind::Ok);
        assert_eq!((ok.text.as_str(), ok.code), ("2 messages", None));
        assert_eq!(status(b"+OK\r\n").text, "");
        let err = status(b"-ERR [in-use] locked\r\n");
        assert!(!err.ok && err.kind == ResponseKind::Err);
        assert_eq!(err.code.as_deref(), Some("IN-USE"));
        assert!(err.has_code("in-use") && !err.has_code("IN"));
        assert_eq!(err.to_string(), "-ERR [in-use] locked");
        let challenge = status(b"+ \r\n");
        assert!(!challenge.ok && challenge.kind == ResponseKind::Continue);
        assert_eq!(challenge.to_string(), "+");
        assert_eq!(status(b"+ dGVzdA==\r\n").text, "dGVzdA==");
        assert_eq!(status(b"+\r\n").kind, ResponseKind::Continue);
        let (_, used) = parse_status(b"+OK a\r\n+OK b\r\n").unwrap().unwrap();
        assert_eq!(used, 7);
        assert!(parse_status(b"+OK half").unwrap().is_none());
        assert!(parse_status(b"").unwrap().is_none());
    }

    #[test]
    fn rejects_malformed_status_lines() {
        for line in [
            &b"+OK bare LF\n"[..],
            b"+ok lowercase\r\n",
            b"OK no sign\r\n",
            b"-Err mixed\r\n",
            b"+OKAY\r\n",
            b"-ERROR\r\n",
            b"+OK a\rb\r\n",
            b"\r\n",
        ] {
            assert_eq!(malformed_bytes(parse_status(line)), line);
        }
        let error = parse_status(b"+OK x\n").unwrap_err().to_string();
        assert!(error.contains("bare LF"), "{error}");
        let endless = vec![b'a'; MAX_STATUS_LINE + 1];
        assert_eq!(malformed_bytes(parse_status(&endless)), endless);
        let long = [b"+OK ".as_slice(), &endless, b"\r\n"].concat();
        assert!(parse_status(&long).is_err());
    }

    #[test]
    fn response_codes() {
        let code = |line: &[u8]| status(line).code;
        assert_eq!(
            code(b"-ERR [SYS/TEMP] try later\r\n").as_deref(),
            Some("SYS/TEMP")
        );
        assert_eq!(code(b"-ERR [AUTH]\r\n").as_deref(), Some("AUTH"));
        assert_eq!(
            code(b"-ERR [LOGIN-DELAY] wait\r\n").as_deref(),
            Some("LOGIN-DELAY")
        );
        for no_code in [
            &b"-ERR [] empty\r\n"[..],
            b"-ERR [SYS/] empty level\r\n",
            b"-ERR [A B] space\r\n",
            b"-ERR [unclosed\r\n",
            b"-ERR [AUTH]x\r\n",
            b"-ERR no [AUTH] at start\r\n",
            b"+ [AUTH]\r\n",
        ] {
            assert_eq!(code(no_code), None, "{}", String::from_utf8_lossy(no_code));
        }
        let temporary = status(b"-ERR [SYS/TEMP] x\r\n");
        assert!(temporary.has_code("SYS") && temporary.has_code("sys/temp"));
        assert!(!temporary.has_code("SYS/PERM") && !temporary.has_code("SY"));
    }

    #[test]
    fn multiline_bodies_are_unstuffed_exactly() {
        assert_eq!(
            body(b"..a\r\n...\r\n..\r\nb.\r\n.\r\n"),
            b".a\r\n..\r\n.\r\nb.\r\n"
        );
        assert_eq!(body(b".\r\n"), b"");
        assert_eq!(body(b"\r\n.\r\n"), b"\r\n");
        // Lines end at CRLF only: a dot after a bare LF is not at a line start.
        assert_eq!(
            body(b"a\n.b\r\nc\rd\r\n\n.\r\n.\r\n"),
            b"a\n.b\r\nc\rd\r\n\n.\r\n"
        );
        let (parsed, used) = parse_body(b"x\r\n.\r\n+OK next\r\n").unwrap().unwrap();
        assert_eq!((parsed.as_slice(), used), (&b"x\r\n"[..], 6));
        assert!(parse_body(b"x\r\n.\n").unwrap().is_none());
        assert!(parse_body(b"x\n.\n").unwrap().is_none());
    }

    #[test]
    fn unstuffed_dot_lines_are_malformed() {
        assert_eq!(malformed_bytes(parse_body(b"a\r\n.b\r\n.\r\n")), b".b\r\n");
        let error = parse_body(b".x\r\n.\r\n").unwrap_err().to_string();
        assert!(error.contains("not dot-stuffed"), "{error}");
        assert_eq!(malformed_bytes(parse_body(b".\rx\r\n.\r\n")), b".\rx\r\n");
    }

    #[test]
    fn listings_reject_bare_line_ends() {
        assert_eq!(listing_lines(b"a b\r\nc\r\n").unwrap(), ["a b", "c"]);
        assert!(listing_lines(b"").unwrap().is_empty());
        assert_eq!(
            malformed_bytes(listing_lines(b"1 2\n3 4\r\n")),
            b"1 2\n3 4\r\n"
        );
        assert_eq!(
            malformed_bytes(listing_lines(b"ok\r\n1\r2\r\n")),
            b"1\r2\r\n"
        );
    }

    #[test]
    fn drop_scan_and_uid_listings() {
        assert_eq!(two_numbers("2 320"), Some((2, 320)));
        assert_eq!(two_numbers("0 0 messages follow"), Some((0, 0)));
        for bad in [
            "",
            "2",
            "2 ",
            " 2 320",
            "2  320",
            "2 320x",
            "2 -1",
            "+2 3",
            "4294967296 1",
        ] {
            assert_eq!(two_numbers(bad), None, "{bad:?}");
        }
        assert_eq!(scan_listing("1 120").unwrap(), (1, 120));
        assert_eq!(malformed_bytes(scan_listing("0 120")), b"0 120");
        assert_eq!(malformed_bytes(scan_listing("1 twelve")), b"1 twelve");
        assert_eq!(
            uid_listing("3 whqtswO00WBw418f9t5JxYwZ").unwrap(),
            (3, "whqtswO00WBw418f9t5JxYwZ".to_owned())
        );
        let too_long = format!("1 {}", "u".repeat(71));
        for bad in [
            "1",
            "1 ",
            "0 a",
            "x a",
            "1 a b",
            "1 caf\u{e9}",
            too_long.as_str(),
        ] {
            assert_eq!(malformed_bytes(uid_listing(bad)), bad.as_bytes(), "{bad:?}");
        }
        assert!(uid_listing(&format!("1 {}", "u".repeat(70))).is_ok());
    }

    #[test]
    fn apop_timestamps() {
        assert_eq!(
            apop_timestamp("POP3 ready <1896.697170952@dbc.mtview.ca.us>").as_deref(),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        for none in ["ready", "ready <no-at>", "<a @b>", "<a@b", "x> <"] {
            assert_eq!(apop_timestamp(none), None, "{none:?}");
        }
    }

    #[tokio::test]
    async fn greeting_capa_and_transcript() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"+OK POP3 ready <1.2@mail.test>\r\n")
                .await
                .unwrap();
            let capa = read_until(&mut stream, b"\r\n").await;
            stream
                .write_all(b"+OK list follows\r\nSTLS\r\nsasl PLAIN login\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream
                .write_all(b"RESP-CODES\r\nUIDL\r\nTOP\r\n.\r\n")
                .await
                .unwrap();
            capa
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = client.greeting().await.unwrap();
        assert!(greeting.ok);
        assert_eq!(client.apop_timestamp(), Some("<1.2@mail.test>"));
        let lines = client.capa().await.unwrap().unwrap();
        assert_eq!(
            lines,
            ["STLS", "sasl PLAIN login", "RESP-CODES", "UIDL", "TOP"]
        );
        assert_eq!(server.await.unwrap(), b"CAPA\r\n");
        for keyword in ["stls", "SASL", "RESP-CODES", "UIDL", "TOP"] {
            assert!(client.has_capability(keyword), "{keyword}");
        }
        assert!(!client.has_capability("USER"));
        assert_eq!(client.sasl_mechanisms(), ["PLAIN", "LOGIN"]);
        assert!(!client.is_tls() && client.tls_protocol_version().is_none());
        assert_eq!(client.transcript().sent(), b"CAPA\r\n");
        assert_eq!(
            client.transcript().to_string(),
            "S: +OK POP3 ready <1.2@mail.test>\\r\\n\nC: CAPA\\r\\n\nS: +OK list follows\\r\\n\n\
             S: STLS\\r\\n\nS: sasl PLAIN login\\r\\n\nS: RESP-CODES\\r\\n\nS: UIDL\\r\\n\n\
             S: TOP\\r\\n\nS: .\\r\\n\n"
        );
    }

    #[tokio::test]
    async fn capa_refused_and_greeting_refused() {
        let (addr, _server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"-ERR [SYS/TEMP] <1.2@mail.test> busy\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"CAPA\r\n").await;
            stream.write_all(b"-ERR unknown command\r\n").await.unwrap();
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let greeting = client.greeting().await.unwrap();
        assert!(!greeting.ok && greeting.has_code("SYS/TEMP"));
        assert_eq!(client.apop_timestamp(), None);
        assert_eq!(client.capa().await.unwrap(), None);
        assert!(client.capabilities().is_empty());
    }

    #[tokio::test]
    async fn stat_list_and_uidl() {
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"STAT\r\n").await;
            stream.write_all(b"+OK 2 320\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"LIST\r\n").await);
            stream
                .write_all(b"+OK 2 messages\r\n1 120\r\n2 200 extra\r\n.\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"UIDL\r\n").await);
            stream
                .write_all(b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"LIST 2\r\n").await);
            stream.write_all(b"+OK 2 200\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"UIDL 3\r\n").await);
            stream.write_all(b"-ERR no such message\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"LIST\r\n").await);
            stream
                .write_all(b"-ERR [AUTH] not logged in\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.stat().await.unwrap().unwrap(), (2, 320));
        assert_eq!(client.list().await.unwrap().unwrap(), [(1, 120), (2, 200)]);
        assert_eq!(
            client.uidl().await.unwrap().unwrap(),
            [
                (1, "whqtswO00WBw418f9t5JxYwZ".to_owned()),
                (2, "QhdPYR:00WBw1Ph7x7".to_owned())
            ]
        );
        assert_eq!(client.list_one(2).await.unwrap().text, "2 200");
        assert!(!client.uidl_one(3).await.unwrap().ok);
        let refused = client.list().await.unwrap().unwrap_err();
        assert!(refused.has_code("AUTH"));
        assert_eq!(
            server.await.unwrap(),
            b"STAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nUIDL 3\r\nLIST\r\n"
        );
    }

    #[tokio::test]
    async fn malformed_listings_are_errors() {
        let (addr, _server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"STAT\r\n").await;
            stream.write_all(b"+OK two 320\r\n").await.unwrap();
            read_until(&mut stream, b"STAT\r\n").await;
            stream.write_all(b"-ERR [IN-USE] locked\r\n").await.unwrap();
            read_until(&mut stream, b"LIST\r\n").await;
            stream
                .write_all(b"+OK\r\n1 120\r\n2\r\n.\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"UIDL\r\n").await;
            stream
                .write_all(b"+OK\r\n1 has space\r\n.\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"NOOP\r\n").await;
            stream.write_all(b"+OK\r\n").await.unwrap();
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let error = client.stat().await.unwrap_err().to_string();
        assert!(
            error.contains("STAT answer") && error.contains("\"+OK two 320\\r\\n\""),
            "{error}"
        );
        let locked = client.stat().await.unwrap().unwrap_err();
        assert!(locked.has_code("IN-USE"));
        assert_eq!(locked.to_string(), "-ERR [IN-USE] locked");
        assert_eq!(malformed_bytes(client.list().await), b"2");
        assert_eq!(malformed_bytes(client.uidl().await), b"1 has space");
        // The whole listing was consumed, so the client is still in step.
        assert!(client.noop().await.unwrap().ok);
    }

    #[tokio::test]
    async fn retr_top_and_refusals() {
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"RETR 1\r\n").await;
            stream
                .write_all(
                    b"+OK 31 octets\r\nSubject: x\r\n\r\n..hidden\r\n..\r\nbare\nLF\r\n.\r\n",
                )
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"TOP 1 0\r\n").await);
            stream
                .write_all(b"+OK\r\nSubject: x\r\n\r\n.\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"RETR 2\r\n").await);
            stream.write_all(b"+OK\r\n.\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"RETR 9\r\n").await);
            stream.write_all(b"-ERR no such message\r\n").await.unwrap();
            for (command, response) in [
                (&b"DELE 1\r\n"[..], &b"+OK marked\r\n"[..]),
                (b"RSET\r\n", b"+OK\r\n"),
                (b"NOOP\r\n", b"+OK\r\n"),
                (b"QUIT\r\n", b"+OK bye\r\n"),
            ] {
                received.extend(read_until(&mut stream, command).await);
                stream.write_all(response).await.unwrap();
            }
            received
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(
            client.retr(1).await.unwrap().unwrap(),
            b"Subject: x\r\n\r\n.hidden\r\n.\r\nbare\nLF\r\n"
        );
        assert_eq!(
            client.top(1, 0).await.unwrap().unwrap(),
            b"Subject: x\r\n\r\n"
        );
        assert_eq!(client.retr(2).await.unwrap().unwrap(), b"");
        let missing = client.retr(9).await.unwrap().unwrap_err();
        assert_eq!(missing.kind, ResponseKind::Err);
        assert_eq!(missing.text, "no such message");
        assert_eq!(client.dele(1).await.unwrap().text, "marked");
        assert!(client.rset().await.unwrap().ok);
        assert!(client.noop().await.unwrap().ok);
        assert_eq!(client.quit().await.unwrap().to_string(), "+OK bye");
        assert_eq!(
            server.await.unwrap(),
            b"RETR 1\r\nTOP 1 0\r\nRETR 2\r\nRETR 9\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n"
        );
    }

    #[tokio::test]
    async fn five_megabyte_body_in_small_chunks() {
        let mut message = Vec::new();
        let mut number = 0;
        while message.len() < 5 * 1024 * 1024 {
            let prefix = if number % 7 == 0 { "." } else { "" };
            message.extend_from_slice(
                format!("{prefix}line {number:08} {}\r\n", "x".repeat(60)).as_bytes(),
            );
            number += 1;
        }
        let wire = [
            b"+OK message follows\r\n".as_slice(),
            &crate::clients::smtp::dot_stuff(&message),
            b".\r\n",
        ]
        .concat();
        let (addr, server) = serve_once(move |mut stream| async move {
            stream.set_nodelay(true).unwrap();
            read_until(&mut stream, b"RETR 1\r\n").await;
            // Odd-sized writes put the terminator and stuffed dots across read boundaries.
            for chunk in wire.chunks(997) {
                stream.write_all(chunk).await.unwrap();
            }
            read_until(&mut stream, b"QUIT\r\n").await;
            stream.write_all(b"+OK\r\n").await.unwrap();
        })
        .await;
        let mut client = Pop3Client::connect(&addr, Duration::from_secs(60))
            .await
            .unwrap();
        let received = client.retr(1).await.unwrap().unwrap();
        assert_eq!(received.len(), message.len());
        assert!(received == message, "the body differs from what was sent");
        assert!(client.quit().await.unwrap().ok);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn user_pass_stops_at_a_refused_user() {
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream
                .write_all(b"-ERR [AUTH] use STLS first\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"+OK\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"+OK maildrop has 0 messages\r\n")
                .await
                .unwrap();
            received
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let refused = client.user_pass("alice", "secret").await.unwrap();
        assert!(refused.has_code("AUTH"));
        let accepted = client.user_pass("alice", "secret").await.unwrap();
        assert_eq!(accepted.text, "maildrop has 0 messages");
        assert_eq!(
            server.await.unwrap(),
            b"USER alice\r\nUSER alice\r\nPASS secret\r\n"
        );
    }

    #[tokio::test]
    async fn auth_plain_with_and_without_continuation() {
        let long_user = "u".repeat(200);
        let long_credentials = BASE64.encode(format!("\0{long_user}\0b"));
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream.write_all(b"+OK welcome\r\n").await.unwrap();
            // A server that ignores the initial response and asks again.
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"+ \r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream
                .write_all(b"-ERR [AUTH] bad credentials\r\n")
                .await
                .unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"+ \r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"+OK\r\n").await.unwrap();
            received
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.auth_plain("a", "b").await.unwrap().text, "welcome");
        assert!(client.auth_plain("a", "b").await.unwrap().has_code("AUTH"));
        // Too long for an initial response within 255 octets: sent after the continuation.
        assert!(client.auth_plain(&long_user, "b").await.unwrap().ok);
        let expected = format!(
            "AUTH PLAIN AGEAYg==\r\nAUTH PLAIN AGEAYg==\r\nAGEAYg==\r\n\
             AUTH PLAIN\r\n{long_credentials}\r\n"
        );
        assert_eq!(String::from_utf8(server.await.unwrap()).unwrap(), expected);
    }

    #[tokio::test]
    async fn stls_upgrades_only_on_ok_and_forgets_capabilities() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem, "localhost");
        let (addr, server) = serve_once(move |mut stream| async move {
            read_until(&mut stream, b"CAPA\r\n").await;
            stream
                .write_all(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STLS\r\n").await;
            stream
                .write_all(b"-ERR [SYS/TEMP] not now\r\n")
                .await
                .unwrap();
            read_until(&mut stream, b"STLS\r\n").await;
            stream.write_all(b"+OK begin TLS\r\n").await.unwrap();
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            let capa = read_until(&mut tls, b"\r\n").await;
            tls.write_all(b"+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            capa
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        client.capa().await.unwrap().unwrap();
        assert!(client.has_capability("STLS"));
        let refused = client.stls(&tls).await.unwrap();
        assert!(refused.has_code("SYS/TEMP") && !client.is_tls());
        assert!(client.has_capability("STLS"));
        assert!(client.stls(&tls).await.unwrap().ok);
        assert!(client.is_tls() && client.capabilities().is_empty());
        assert_eq!(client.tls_protocol_version().as_deref(), Some("TLSv1.3"));
        client.capa().await.unwrap().unwrap();
        assert_eq!(client.sasl_mechanisms(), ["PLAIN"]);
        assert!(!client.has_capability("STLS"));
        assert_eq!(server.await.unwrap(), b"CAPA\r\n");
        assert!(matches!(
            client.stls(&tls).await,
            Err(ClientError::AlreadyTls)
        ));
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("-- TLS established (TLSv1.3) --\nC: CAPA"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn stls_with_injected_command_sends_one_write() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem, "localhost");
        let (addr, server) = serve_once(move |mut stream| async move {
            let plaintext = read_until(&mut stream, b"NOOP\r\n").await;
            stream.write_all(b"+OK begin TLS\r\n").await.unwrap();
            // A vulnerable server: it answers the command it buffered before the handshake.
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"+OK injected\r\n").await.unwrap();
            tls.flush().await.unwrap();
            plaintext
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let response = client.stls_with_injected(&tls, b"NOOP\r\n").await.unwrap();
        assert!(response.ok && client.is_tls());
        assert_eq!(client.read_response().await.unwrap().text, "injected");
        assert_eq!(server.await.unwrap(), b"STLS\r\nNOOP\r\n");
        assert_eq!(
            client.transcript().entries()[0],
            Entry::Sent(b"STLS\r\nNOOP\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn implicit_tls_greeting() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem, "localhost");
        let (addr, server) = serve_once(move |stream| async move {
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"+OK POP3S ready\r\n").await.unwrap();
            tls.flush().await.unwrap();
            read_until(&mut tls, b"QUIT\r\n").await
        })
        .await;
        let mut client = Pop3Client::connect_tls(&addr, &tls, TIMEOUT).await.unwrap();
        assert!(client.is_tls());
        assert_eq!(client.greeting().await.unwrap().text, "POP3S ready");
        client.send_line("QUIT").await.unwrap();
        assert_eq!(server.await.unwrap(), b"QUIT\r\n");
    }

    #[tokio::test]
    async fn bare_lf_status_line_over_the_wire() {
        let (addr, _server) = serve_once(|mut stream| async move {
            stream.write_all(b"+OK ready\n").await.unwrap();
            read_until(&mut stream, b"never").await;
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let error = client.greeting().await.unwrap_err();
        let ClientError::MalformedReply { reason, bytes } = &error else {
            panic!("expected a malformed reply, got {error}");
        };
        assert!(reason.contains("bare LF"), "{reason}");
        assert_eq!(bytes, b"+OK ready\n");
    }

    #[tokio::test]
    async fn closed_silent_and_cut_off_servers() {
        let (addr, _server) = serve_once(|stream| async move { drop(stream) }).await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        assert!(matches!(
            client.greeting().await,
            Err(ClientError::Closed { .. })
        ));

        let (addr, server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"never").await;
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        client.set_timeout(Duration::from_millis(100));
        let error = client.stat().await.unwrap_err();
        let ClientError::Timeout { while_doing, after } = &error else {
            panic!("expected a timeout, got {error}");
        };
        assert_eq!(while_doing, "waiting for the response to STAT");
        assert_eq!(*after, Duration::from_millis(100));
        assert!(
            !client
                .read_until_closed(Duration::from_millis(50))
                .await
                .unwrap()
        );
        server.abort();

        let (addr, _server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"RETR 1\r\n").await;
            stream.write_all(b"+OK\r\nSubject: cut\r\n").await.unwrap();
        })
        .await;
        let mut client = Pop3Client::connect(&addr, TIMEOUT).await.unwrap();
        let error = client.retr(1).await.unwrap_err();
        let ClientError::MalformedReply { bytes, .. } = &error else {
            panic!("expected a malformed reply, got {error}");
        };
        assert_eq!(bytes, b"Subject: cut\r\n");
        assert!(client.read_until_closed(TIMEOUT).await.unwrap());
    }
}

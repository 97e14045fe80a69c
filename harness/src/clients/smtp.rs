//! An SMTP client for conformance tests (RFC 5321, 3207, 4954): raw lines, strict reply parsing,
//! malformed input on request, and a transcript of every byte.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::ClientError;
use super::conn::{Connection, Parsed};
use super::legacy_tls::{HelloOutcome, LegacyOutcome, LegacyVersion, Offer};
use super::tls::TlsClient;
use super::transcript::Transcript;

/// Longest reply line accepted; RFC 5321 allows 512 octets, this leaves room for sloppy servers
/// while bounding what a server that never ends a line can make us buffer.
const MAX_LINE: usize = 64 * 1024;

/// An SMTP reply: one code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The text after the code and separator, one entry per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// The RFC 3463 enhanced status code (`class.subject.detail`) starting the first line's text,
    /// if it is syntactically one. Whether its class matches the reply code is left to the caller.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let candidate = first.split(' ').next()?;
        let mut parts = candidate.split('.');
        let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
        let number = |part: Option<&str>| {
            part.is_some_and(|part| {
                (1..=3).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
            })
        };
        let valid =
            class_ok && number(parts.next()) && number(parts.next()) && parts.next().is_none();
        valid.then_some(candidate)
    }

    /// The text of all lines, joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Whether the code is a positive completion (2yz) or positive intermediate (3yz) reply.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// The reply as on the wire, lines separated by `\n` instead of CRLF.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}{separator}{line}", self.code)?;
        }
        Ok(())
    }
}

fn malformed(reason: impl Into<String>, bytes: &[u8]) -> ClientError {
    ClientError::MalformedReply {
        reason: reason.into(),
        bytes: bytes.to_vec(),
    }
}

/// Parses one reply line including its CRLF: code, whether it is the last line, text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ClientError> {
    let Some(content) = line.strip_suffix(b"\r\n") else {
        return Err(malformed("line ends in a bare LF, not CRLF", line));
    };
    // Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 section 4.2)
    let [
        hundreds @ b'2'..=b'5',
        tens @ b'0'..=b'5',
        units @ b'0'..=b'9',
        rest @ ..,
    ] = content
    else {
        return Err(malformed("line does not start with a reply code", line));
    };
    let code = [hundreds, tens, units]
        .iter()
        .fold(0, |code, &&digit| code * 10 + u16::from(digit - b'0'));
    let (last, text) = match rest {
        [] => (true, &[][..]),
        [b' ', text @ ..] => (true, text),
        [b'-', text @ ..] => (false, text),
        _ => {
            return Err(malformed(
                "reply code not followed by space, '-' or CRLF",
                line,
            ));
        }
    };
    if text.contains(&b'\r') {
        return Err(malformed("bare CR in the reply text", line));
    }
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Parses a complete reply from the front of `buf`.
fn parse_reply(buf: &[u8]) -> Parsed<Reply> {
    let mut code = None;
    let mut lines = Vec::new();
    let mut used = 0;
    loop {
        let rest = &buf[used..];
        let Some(end) = rest.iter().position(|&byte| byte == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(malformed(
                    format!("no line end within {MAX_LINE} bytes"),
                    rest,
                ));
            }
            return Ok(None);
        };
        let line = &rest[..=end];
        used += end + 1;
        let (line_code, last, text) = parse_line(line)?;
        let first_code = *code.get_or_insert(line_code);
        if line_code != first_code {
            return Err(malformed(
                format!("code {line_code} differs from {first_code} on the reply's first line"),
                line,
            ));
        }
        lines.push(text);
        if last {
            return Ok(Some((
                Reply {
                    code: first_code,
                    lines,
                },
                used,
            )));
        }
    }
}

/// EHLO keywords (uppercase) and their parameters, from a 250 reply; the first line is the
/// greeting.
fn parse_capabilities(reply: &Reply) -> BTreeMap<String, Vec<String>> {
    if reply.code != 250 {
        return BTreeMap::new();
    }
    reply
        .lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next()?.to_ascii_uppercase();
            Some((keyword, words.map(str::to_owned).collect()))
        })
        .collect()
}

/// Inserts a `.` before every line that starts with one (RFC 5321 section 4.5.2). Lines end at
/// CRLF only: a bare LF is not a line end here, as it must not be on the wire.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64);
    let mut line_start = true;
    let mut previous = 0;
    for &byte in body {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = previous == b'\r' && byte == b'\n';
        previous = byte;
    }
    out
}

/// A connection to an SMTP server. Every operation waits at most the timeout given at connect.
pub struct SmtpClient {
    conn: Connection,
    capabilities: BTreeMap<String, Vec<String>>,
}

impl SmtpClient {
    /// Connects in plaintext. Does not read the greeting: call [`Self::read_reply`].
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            conn: Connection::connect(addr, timeout).await?,
            capabilities: BTreeMap::new(),
        })
    }

    /// Connects in plaintext from a chosen local address. Does not read the greeting.
    pub async fn connect_from(
        addr: &str,
        local: std::net::IpAddr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            conn: Connection::connect_from(addr, local, timeout).await?,
            capabilities: BTreeMap::new(),
        })
    }

    /// Connects and starts TLS at once (implicit TLS, RFC 8314). Does not read the greeting.
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

    /// Reads one reply, single- or multi-line.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        self.conn
            .read_parsed("waiting for a reply", parse_reply)
            .await
    }

    /// Sends `line` and CRLF.
    pub async fn send_line(&mut self, line: &str) -> Result<(), ClientError> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends `bytes` exactly as given, in one write.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.send(bytes, "sending").await
    }

    /// Sends `line` and reads the reply to it.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let verb = line.split(' ').next().unwrap_or_default().to_owned();
        self.exchange(line, &verb).await
    }

    async fn exchange(&mut self, line: &str, what: &str) -> Result<Reply, ClientError> {
        self.send_line(line).await?;
        self.conn
            .read_parsed(&format!("waiting for the reply to {what}"), parse_reply)
            .await
    }

    /// Sends `EHLO name` and remembers the capabilities a 250 reply lists.
    pub async fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        self.capabilities = parse_capabilities(&reply);
        Ok(reply)
    }

    /// Keywords (uppercase) and parameters of the last EHLO reply since the last TLS upgrade.
    pub fn capabilities(&self) -> &BTreeMap<String, Vec<String>> {
        &self.capabilities
    }

    /// Whether the last EHLO reply lists `keyword` (any case).
    pub fn has_capability(&self, keyword: &str) -> bool {
        self.capabilities
            .contains_key(&keyword.to_ascii_uppercase())
    }

    /// The AUTH mechanisms of the last EHLO reply, uppercase.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.capabilities
            .get("AUTH")
            .into_iter()
            .flatten()
            .map(|mechanism| mechanism.to_ascii_uppercase())
            .collect()
    }

    /// The SIZE limit of the last EHLO reply; `None` when SIZE is absent or has no number
    /// (RFC 1870: then there is no fixed limit, as with 0).
    pub fn size_limit(&self) -> Option<u64> {
        self.capabilities.get("SIZE")?.first()?.parse().ok()
    }

    /// Sends STARTTLS and, only if the reply is 220, upgrades this connection to TLS. The
    /// capabilities are forgotten, as RFC 3207 section 4.2 requires: send EHLO again.
    pub async fn starttls(&mut self, tls: &TlsClient) -> Result<Reply, ClientError> {
        self.starttls_with_injected(tls, b"").await
    }

    /// Sends `STARTTLS\r\n` followed by `injected` in one write, then behaves like
    /// [`Self::starttls`]. A server that buffered `injected` and answers it over TLS is open to
    /// STARTTLS command injection (CVE-2011-0411): read a reply afterwards to find out.
    pub async fn starttls_with_injected(
        &mut self,
        tls: &TlsClient,
        injected: &[u8],
    ) -> Result<Reply, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let reply = self.send_starttls(injected).await?;
        if reply.code == 220 {
            self.capabilities.clear();
            self.conn.upgrade(tls).await?;
        }
        Ok(reply)
    }

    async fn send_starttls(&mut self, injected: &[u8]) -> Result<Reply, ClientError> {
        self.send_raw(&[b"STARTTLS\r\n", injected].concat()).await?;
        self.conn
            .read_parsed("waiting for the reply to STARTTLS", parse_reply)
            .await
    }

    /// Sends STARTTLS, expects 220, then probes whether the server accepts a `version` handshake
    /// (see [`probe_legacy_tls`]). The connection is unusable afterwards.
    pub async fn starttls_then_probe_legacy(
        &mut self,
        version: LegacyVersion,
        sni: Option<&str>,
    ) -> Result<LegacyOutcome, ClientError> {
        self.starttls_then_probe(Offer::Legacy(version), sni)
            .await
            .map(LegacyOutcome::from)
    }

    /// Sends STARTTLS, expects 220, then sends a ClientHello with `offer` instead of starting
    /// TLS (see [`probe_hello`]). The connection is unusable afterwards.
    pub async fn starttls_then_probe(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<HelloOutcome, ClientError> {
        if self.conn.is_tls() {
            return Err(ClientError::AlreadyTls);
        }
        let reply = self.send_starttls(b"").await?;
        if reply.code != 220 {
            return Err(ClientError::UnexpectedReply {
                expected: "220 to STARTTLS",
                reply,
            });
        }
        self.conn.probe_hello(offer, sni).await
    }

    /// `AUTH PLAIN` with the credentials as initial response (RFC 4954), empty authorization
    /// identity.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<Reply, ClientError> {
        let response = BASE64.encode(format!("\0{user}\0{password}"));
        self.exchange(&format!("AUTH PLAIN {response}"), "AUTH PLAIN")
            .await
    }

    /// `AUTH LOGIN`: answers the first 334 challenge with the user name, the second with the
    /// password; returns the first reply that is not 334, or a third 334.
    pub async fn auth_login(&mut self, user: &str, password: &str) -> Result<Reply, ClientError> {
        let mut reply = self.command("AUTH LOGIN").await?;
        for (answer, what) in [
            (user, "the AUTH LOGIN user name"),
            (password, "the AUTH LOGIN password"),
        ] {
            if reply.code != 334 {
                break;
            }
            reply = self.exchange(&BASE64.encode(answer), what).await?;
        }
        Ok(reply)
    }

    /// Sends DATA; on 354 sends `body` dot-stuffed, ending in CRLF, and `.` CRLF, and returns the
    /// final reply. Any other reply to DATA is returned as is. Use [`Self::send_raw`] for bodies
    /// that must break the rules.
    pub async fn data(&mut self, body: &[u8]) -> Result<Reply, ClientError> {
        let reply = self.command("DATA").await?;
        if reply.code != 354 {
            return Ok(reply);
        }
        let mut payload = dot_stuff(body);
        if !payload.is_empty() && !payload.ends_with(b"\r\n") {
            payload.extend_from_slice(b"\r\n");
        }
        payload.extend_from_slice(b".\r\n");
        self.send_raw(&payload).await?;
        self.conn
            .read_parsed("waiting for the reply to the end of DATA", parse_reply)
            .await
    }

    /// Whether the server closes the connection (EOF or reset) within `timeout`. Whatever it
    /// sends meanwhile is kept: it shows in the transcript and [`Self::read_reply`] can read it.
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

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply {
            code,
            lines: lines.iter().map(|&line| line.to_owned()).collect(),
        }
    }

    fn trusting(ca_pem: &str, server_name: &str) -> TlsClient {
        let settings = TlsSettings {
            ca_pem: Some(ca_pem.to_owned()),
            server_name: Some(server_name.to_owned()),
            ..TlsSettings::default()
        };
        TlsClient::from_settings(&settings, "127.0.0.1").unwrap()
    }

    fn malformed_bytes(result: Parsed<Reply>) -> Vec<u8> {
        match result {
            Err(ClientError::MalformedReply { bytes, .. }) => bytes,
            other => panic!("expected a malformed reply, got {other:?}"),
        }
    }

    #[test]
    fn parses_single_and_multi_line_replies() {
        let (parsed, used) = parse_reply(b"250-mail.test\r\n250-SIZE 10\r\n250 HELP\r\nnext")
            .unwrap()
            .unwrap();
        assert_eq!(parsed, reply(250, &["mail.test", "SIZE 10", "HELP"]));
        assert_eq!(used, 38);
        let (parsed, _) = parse_reply(b"354\r\n").unwrap().unwrap();
        assert_eq!(parsed, reply(354, &[""]));
        assert!(parse_reply(b"250-a\r\n250 b").unwrap().is_none());
        assert!(parse_reply(b"").unwrap().is_none());
    }

    #[test]
    fn rejects_malformed_reply_lines() {
        assert_eq!(malformed_bytes(parse_reply(b"250 ok\n")), b"250 ok\n");
        assert_eq!(malformed_bytes(parse_reply(b"hello\r\n")), b"hello\r\n");
        assert_eq!(malformed_bytes(parse_reply(b"25 ok\r\n")), b"25 ok\r\n");
        assert_eq!(malformed_bytes(parse_reply(b"650 ok\r\n")), b"650 ok\r\n");
        assert_eq!(malformed_bytes(parse_reply(b"250_ok\r\n")), b"250_ok\r\n");
        assert_eq!(
            malformed_bytes(parse_reply(b"250 a\rb\r\n")),
            b"250 a\rb\r\n"
        );
        assert_eq!(
            malformed_bytes(parse_reply(b"250-a\r\n251 b\r\n")),
            b"251 b\r\n"
        );
        let error = parse_reply(b"250-a\r\n550 b\r\n").unwrap_err().to_string();
        assert!(error.contains("code 550 differs from 250"), "{error}");
        assert!(error.contains("\"550 b\\r\\n\""), "{error}");
    }

    #[test]
    fn reply_helpers() {
        let rejected = reply(550, &["5.7.1 relay denied", "more"]);
        assert_eq!(rejected.enhanced(), Some("5.7.1"));
        assert_eq!(rejected.text(), "5.7.1 relay denied\nmore");
        assert!(!rejected.is_positive());
        assert_eq!(rejected.to_string(), "550-5.7.1 relay denied\n550 more");
        assert!(reply(354, &["go"]).is_positive());
        for not_enhanced in [
            "2.0 ok", "3.0.0 x", "2.0.0000", "2.a.0", "2.0.0.0", "ok", "",
        ] {
            assert_eq!(
                reply(250, &[not_enhanced]).enhanced(),
                None,
                "{not_enhanced}"
            );
        }
        assert_eq!(reply(250, &["2.1.10"]).enhanced(), Some("2.1.10"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".a\r\n..b\r\nc.\r\n.\r\n"),
            b"..a\r\n...b\r\nc.\r\n..\r\n"
        );
        assert_eq!(dot_stuff(b"a\n.b\r.c"), b"a\n.b\r.c");
        assert_eq!(dot_stuff(b""), b"");
    }

    #[test]
    fn capabilities_from_ehlo() {
        let ehlo = reply(
            250,
            &["mail.test hi", "size 1000", "AUTH PLAIN login", "8BITMIME"],
        );
        let capabilities = parse_capabilities(&ehlo);
        assert_eq!(capabilities["SIZE"], ["1000"]);
        assert!(capabilities["8BITMIME"].is_empty());
        assert!(!capabilities.contains_key("MAIL.TEST"));
        assert!(parse_capabilities(&reply(502, &["no", "SIZE 1"])).is_empty());
    }

    #[tokio::test]
    async fn greeting_ehlo_and_replies_split_across_reads() {
        let (addr, server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"220-mail.test ESMTP\r\n220 ready\r\n")
                .await
                .unwrap();
            let ehlo = read_until(&mut stream, b"\r\n").await;
            stream
                .write_all(b"250-mail.test\r\n250-SIZE 35882577\r\n25")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.write_all(b"0 auth plain LOGIN\r\n").await.unwrap();
            ehlo
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(
            client.read_reply().await.unwrap(),
            reply(220, &["mail.test ESMTP", "ready"])
        );
        let ehlo = client.ehlo("client.test").await.unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\n");
        assert!(client.has_capability("auth") && client.has_capability("SIZE"));
        assert!(!client.has_capability("STARTTLS"));
        assert_eq!(client.auth_mechanisms(), ["PLAIN", "LOGIN"]);
        assert_eq!(client.size_limit(), Some(35_882_577));
        assert!(!client.is_tls() && client.tls_protocol_version().is_none());
        assert_eq!(
            client.transcript().to_string(),
            "S: 220-mail.test ESMTP\\r\\n\nS: 220 ready\\r\\n\nC: EHLO client.test\\r\\n\n\
             S: 250-mail.test\\r\\n\nS: 250-SIZE 35882577\\r\\n\nS: 250 auth plain LOGIN\\r\\n\n"
        );
    }

    #[tokio::test]
    async fn reply_cut_off_by_close_is_malformed() {
        let (addr, _server) = serve_once(|mut stream| async move {
            stream.write_all(b"220-hello\r\n220 half").await.unwrap();
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        let error = client.read_reply().await.unwrap_err();
        let ClientError::MalformedReply { bytes, .. } = &error else {
            panic!("expected a malformed reply, got {error}");
        };
        assert_eq!(bytes, b"220-hello\r\n220 half");
        assert!(
            client
                .transcript()
                .to_string()
                .contains("-- connection closed by the server --")
        );
    }

    #[tokio::test]
    async fn closed_and_silent_servers() {
        let (addr, _server) = serve_once(|stream| async move { drop(stream) }).await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        assert!(matches!(
            client.read_reply().await,
            Err(ClientError::Closed { .. })
        ));

        let (addr, server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"never").await;
        })
        .await;
        let mut client = SmtpClient::connect(&addr, Duration::from_millis(100))
            .await
            .unwrap();
        let error = client.command("NOOP").await.unwrap_err();
        let ClientError::Timeout { while_doing, after } = &error else {
            panic!("expected a timeout, got {error}");
        };
        assert_eq!(while_doing, "waiting for the reply to NOOP");
        assert_eq!(*after, Duration::from_millis(100));
        assert!(
            !client
                .read_until_closed(Duration::from_millis(50))
                .await
                .unwrap()
        );
        server.abort();
    }

    #[tokio::test]
    async fn read_until_closed_keeps_what_came() {
        let (addr, _server) = serve_once(|mut stream| async move {
            stream
                .write_all(b"421 4.3.2 shutting down\r\n")
                .await
                .unwrap();
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        assert!(client.read_until_closed(TIMEOUT).await.unwrap());
        let reply = client.read_reply().await.unwrap();
        assert_eq!((reply.code, reply.enhanced()), (421, Some("4.3.2")));
    }

    #[tokio::test]
    async fn auth_login_exchange() {
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream.write_all(b"334 VXNlcm5hbWU6\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"334 UGFzc3dvcmQ6\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"235 2.7.0 ok\r\n").await.unwrap();
            received
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        let reply = client
            .auth_login("alice@example.test", "alice-secret")
            .await
            .unwrap();
        assert_eq!(reply.code, 235);
        assert_eq!(
            server.await.unwrap(),
            b"AUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nYWxpY2Utc2VjcmV0\r\n"
        );
    }

    #[tokio::test]
    async fn auth_login_stops_at_first_refusal_and_auth_plain_sends_initial_response() {
        let (addr, server) = serve_once(|mut stream| async move {
            let mut received = read_until(&mut stream, b"\r\n").await;
            stream.write_all(b"504 5.5.4 no LOGIN\r\n").await.unwrap();
            received.extend(read_until(&mut stream, b"\r\n").await);
            stream.write_all(b"235 2.7.0 ok\r\n").await.unwrap();
            received
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.auth_login("a", "b").await.unwrap().code, 504);
        assert_eq!(client.auth_plain("a", "b").await.unwrap().code, 235);
        assert_eq!(
            server.await.unwrap(),
            b"AUTH LOGIN\r\nAUTH PLAIN AGEAYg==\r\n"
        );
    }

    #[tokio::test]
    async fn data_stuffs_and_terminates_the_body() {
        let (addr, server) = serve_once(|mut stream| async move {
            read_until(&mut stream, b"DATA\r\n").await;
            stream.write_all(b"354 go ahead\r\n").await.unwrap();
            let body = read_until(&mut stream, b"\r\n.\r\n").await;
            stream.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
            read_until(&mut stream, b"DATA\r\n").await;
            stream
                .write_all(b"503 5.5.1 no recipients\r\n")
                .await
                .unwrap();
            body
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        let reply = client
            .data(b"Subject: x\r\n\r\n.hidden\r\nlast")
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(client.data(b"unused").await.unwrap().code, 503);
        assert_eq!(
            server.await.unwrap(),
            b"Subject: x\r\n\r\n..hidden\r\nlast\r\n.\r\n"
        );
    }

    #[tokio::test]
    async fn starttls_upgrades_only_on_220() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem, "localhost");
        let (addr, server) = serve_once(move |mut stream| async move {
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream.write_all(b"454 4.7.0 not now\r\n").await.unwrap();
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream.write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            let ehlo = read_until(&mut tls, b"\r\n").await;
            tls.write_all(b"250-mail.test\r\n250 AUTH PLAIN\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            ehlo
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        assert_eq!(client.starttls(&tls).await.unwrap().code, 454);
        assert!(!client.is_tls());
        assert_eq!(client.starttls(&tls).await.unwrap().code, 220);
        assert!(client.is_tls());
        assert_eq!(client.tls_protocol_version().as_deref(), Some("TLSv1.3"));
        client.ehlo("client.test").await.unwrap();
        assert_eq!(client.auth_mechanisms(), ["PLAIN"]);
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\n");
        assert!(matches!(
            client.starttls(&tls).await,
            Err(ClientError::AlreadyTls)
        ));
        let shown = client.transcript().to_string();
        assert!(
            shown.contains("-- TLS established (TLSv1.3) --\nC: EHLO"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn starttls_with_injected_command_sends_one_write() {
        let cert = TestCert::localhost();
        let tls = trusting(&cert.cert_pem, "localhost");
        let (addr, server) = serve_once(move |mut stream| async move {
            let plaintext = read_until(&mut stream, b"RSET\r\n").await;
            stream.write_all(b"220 go ahead\r\n").await.unwrap();
            // A vulnerable server: it answers the command it buffered before the handshake.
            let mut tls = cert.acceptor.accept(stream).await.unwrap();
            tls.write_all(b"250 2.0.0 reset\r\n").await.unwrap();
            tls.flush().await.unwrap();
            plaintext
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        let reply = client
            .starttls_with_injected(&tls, b"RSET\r\n")
            .await
            .unwrap();
        assert_eq!(reply.code, 220);
        assert!(client.is_tls());
        assert_eq!(client.read_reply().await.unwrap().code, 250);
        assert_eq!(server.await.unwrap(), b"STARTTLS\r\nRSET\r\n");
        assert_eq!(
            client.transcript().entries()[0],
            Entry::Sent(b"STARTTLS\r\nRSET\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn implicit_tls_checks_the_name_unless_told_not_to() {
        let cert = TestCert::localhost();
        let acceptor = cert.acceptor.clone();
        let wrong_name = trusting(&cert.cert_pem, "other.test");
        let (addr, server) = serve_once(move |stream| async move {
            let mut tls = acceptor.accept(stream).await.unwrap();
            tls.write_all(b"220 mail.test\r\n").await.unwrap();
            tls.flush().await.unwrap();
            read_until(&mut tls, b"QUIT\r\n").await
        })
        .await;
        let anything = TlsSettings {
            verify: false,
            ..TlsSettings::default()
        };
        let tls = TlsClient::from_settings(&anything, "127.0.0.1").unwrap();
        let mut client = SmtpClient::connect_tls(&addr, &tls, TIMEOUT).await.unwrap();
        assert!(client.is_tls());
        assert_eq!(client.read_reply().await.unwrap().code, 220);
        client.send_line("QUIT").await.unwrap();
        server.await.unwrap();

        let (addr, _server) = serve_once(move |stream| async move {
            let _ = cert.acceptor.accept(stream).await;
        })
        .await;
        let error = SmtpClient::connect_tls(&addr, &wrong_name, TIMEOUT)
            .await
            .err()
            .unwrap();
        assert!(matches!(error, ClientError::Tls { .. }), "{error}");
    }

    #[tokio::test]
    async fn legacy_probe_after_starttls_is_refused_by_rustls() {
        let cert = TestCert::localhost();
        let (addr, _server) = serve_once(move |mut stream| async move {
            read_until(&mut stream, b"STARTTLS\r\n").await;
            stream.write_all(b"220 go ahead\r\n").await.unwrap();
            let _ = cert.acceptor.accept(stream).await;
        })
        .await;
        let mut client = SmtpClient::connect(&addr, TIMEOUT).await.unwrap();
        let outcome = client
            .starttls_then_probe_legacy(LegacyVersion::Tls10, Some("localhost"))
            .await
            .unwrap();
        // rustls answers a fatal alert (handshake_failure, 40, as of 0.23).
        assert!(
            matches!(
                outcome,
                LegacyOutcome::Refused {
                    alert: Some((2, _))
                }
            ),
            "{outcome:?}"
        );
        assert!(
            client
                .transcript()
                .to_string()
                .contains("-- TLS 1.0 ClientHello probe: refused with alert")
        );
    }
}

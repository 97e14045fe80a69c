//! The cucumber world shared by all steps, and the target it talks to.

mod concurrency;
mod imap;
mod pop3;
mod relay;
mod security;
mod smtp;
mod tls_security;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::clients::smtp::{Reply, SmtpClient};
use crate::clients::tls::TlsClient;
use crate::mailbox::Mailboxes;
use crate::target::TargetProfile;

/// The server under test, as the steps see it.
#[derive(Debug)]
pub struct Target {
    /// Where and who.
    pub profile: TargetProfile,
    /// TLS client settings that trust the target's certificate.
    pub tls: TlsClient,
    /// Read access to mailboxes, when the harness has it.
    pub mailboxes: Option<Arc<dyn Mailboxes>>,
    /// How long to wait for any one reply.
    pub timeout: Duration,
    /// Which scenario may use which account's POP3 maildrop right now.
    pub leases: Leases,
    /// The harness's DNS and MX, when the profile has a relay section.
    pub relay: Option<Arc<crate::relay_env::RelayEnv>>,
    /// Runs of the `@concurrency` checking clients, by (account, clients, seconds): the
    /// scenarios that judge one run at different levels share it.
    pub mix_runs: tokio::sync::Mutex<std::collections::HashMap<(usize, usize, u64), MixRun>>,
}

/// What one run of the checking clients found and how many commands failed, or why it could
/// not run.
pub type MixRun = Arc<Result<(crate::load::stats::CheckSummary, u64), String>>;

/// Per-account locks that keep scenarios which open an account's POP3 maildrop from running at
/// the same time: the server allows one session per maildrop, and such scenarios count and
/// delete messages.
#[derive(Debug, Default)]
pub struct Leases(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Leases {
    /// Waits until no other scenario holds `account`, then holds it until the guard drops.
    /// Gives up after `patience`: a scenario that never lets go is a harness bug, and waiting
    /// forever would hang the run.
    pub async fn take(
        &self,
        account: &str,
        patience: Duration,
    ) -> anyhow::Result<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(account.to_ascii_lowercase())
            .or_default()
            .clone();
        tokio::time::timeout(patience, lock.lock_owned())
            .await
            .map_err(|_| {
                anyhow!(
                    "waited {patience:?} for another scenario to finish with the maildrop of \
                     {account}"
                )
            })
    }
}

/// Extra time allowed for the answer to a deliberately failed login: servers delay it on
/// purpose, more with each failure (Dovecot's auth_penalty reaches 15 s).
const FAILED_LOGIN_PATIENCE: Duration = Duration::from_secs(30);

/// Services whose port uses TLS from the first byte.
const IMPLICIT_TLS: [&str; 3] = ["submissions", "pop3s", "imaps"];

impl Target {
    /// The `host:port` of a service, or an error naming the missing port.
    pub fn addr(&self, role: &str) -> anyhow::Result<String> {
        let port = self
            .profile
            .ports
            .offered()
            .find(|(name, _)| *name == role)
            .map(|(_, port)| port)
            .ok_or_else(|| anyhow!("the target offers no `{role}` port"))?;
        Ok(self.profile.addr(port))
    }

    /// Opens an SMTP connection to a service, with TLS first when the port is implicit TLS.
    /// The greeting is not read.
    pub async fn connect(&self, role: &str) -> anyhow::Result<SmtpClient> {
        let addr = self.addr(role)?;
        let client = if IMPLICIT_TLS.contains(&role) {
            SmtpClient::connect_tls(&addr, &self.tls, self.timeout).await
        } else {
            SmtpClient::connect(&addr, self.timeout).await
        };
        client.with_context(|| format!("connecting to the {role} port at {addr}"))
    }

    /// Whether the port of a service is implicit TLS.
    pub fn is_implicit_tls(role: &str) -> bool {
        IMPLICIT_TLS.contains(&role)
    }
}

/// A message the scenario sent, to find it again in a mailbox.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// A unique token in the message's Message-ID.
    pub token: String,
    /// The message octets as the client meant them (before dot-stuffing), when known exactly.
    pub exact: Option<Vec<u8>>,
}

/// State of one scenario.
#[derive(Default, cucumber::World)]
pub struct MailWorld {
    target: Option<Arc<Target>>,
    client: Option<SmtpClient>,
    reply: Option<Reply>,
    /// Replies collected since the last EHLO, for checks over a whole exchange.
    since_ehlo: Vec<Reply>,
    /// Replies to the last pipelined batch.
    batch: Vec<Reply>,
    message: Option<SentMessage>,
    authenticated: bool,
    /// Set when a check could not be carried out on this target (reported as skipped).
    pub(crate) unverified: Option<String>,
    /// Choices the RFCs leave to the server that this scenario saw the target make, for the
    /// report (see [`MailWorld::note`]).
    pub(crate) notes: Vec<String>,
    /// Quality figures this scenario measured (see [`MailWorld::measure`]).
    pub(crate) measurements: Vec<crate::report::Measurement>,
    /// Transcripts of connections the scenario opened besides the current client.
    pub(crate) other_transcripts: Vec<String>,
    /// The POP3 side of the scenario.
    pop3: pop3::Pop3State,
    /// The IMAP side of the scenario.
    imap: imap::ImapState,
    /// The relay side of the scenario.
    relay: relay::RelayState,
    /// A run of password guesses or recipient probes (features/security).
    attempts: Option<security::Attempts>,
}

impl fmt::Debug for MailWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailWorld")
            .field("connected", &self.client.is_some())
            .field("reply", &self.reply)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl MailWorld {
    /// Gives the world its target; called by the runner's `before` hook.
    pub fn set_target(&mut self, target: Arc<Target>) {
        self.target = Some(target);
    }

    /// Records, for the report, a choice the target made where the RFCs allow more than one
    /// behaviour (for example "refused the unauthenticated sender at RCPT, not at MAIL").
    /// A note never changes the outcome; the same text is kept once.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Records a quality figure for the report: measured and shown, never a reason to fail (a
    /// notification latency, say, which no RFC bounds).
    pub fn measure(&mut self, name: impl Into<String>, value: f64, unit: &str) {
        self.measurements.push(crate::report::Measurement {
            name: name.into(),
            value,
            unit: unit.into(),
        });
    }

    /// Everything sent and received in this scenario, for a failure report.
    pub fn transcript(&self) -> String {
        let mut parts = self.other_transcripts.clone();
        if let Some(client) = &self.client {
            parts.push(client.transcript().to_string());
        }
        if let Some(client) = &self.pop3.client {
            parts.push(client.transcript().to_string());
        }
        parts.extend(self.imap.transcripts());
        if parts.is_empty() {
            "(no connection was made)".into()
        } else {
            parts.join("\n---- next connection ----\n")
        }
    }

    /// Closes the scenario's connections, gives up its maildrop leases and deletes what it made
    /// on the server (its own IMAP mailboxes). The connections go first: the cleanup needs one
    /// of its own, and under a connection limit it must not wait while holding others.
    pub async fn end_scenario(&mut self) {
        self.client = None;
        self.pop3.end_scenario();
        self.imap.end_scenario();
        self.imap_cleanup().await;
    }

    fn target(&self) -> anyhow::Result<Arc<Target>> {
        self.target
            .clone()
            .ok_or_else(|| anyhow!("internal error: the runner gave the scenario no target"))
    }

    fn client(&mut self) -> anyhow::Result<&mut SmtpClient> {
        self.client
            .as_mut()
            .ok_or_else(|| anyhow!("no connection: the scenario must connect first"))
    }

    /// Replaces the current connection, keeping the old one's transcript for the report.
    fn set_client(&mut self, client: SmtpClient) {
        if let Some(old) = self.client.replace(client) {
            self.other_transcripts.push(old.transcript().to_string());
        }
        self.since_ehlo.clear();
        self.authenticated = false;
    }

    fn record(&mut self, reply: Reply) {
        self.since_ehlo.push(reply.clone());
        self.reply = Some(reply);
    }

    fn reply(&self) -> anyhow::Result<&Reply> {
        self.reply
            .as_ref()
            .ok_or_else(|| anyhow!("no reply has been received yet"))
    }

    fn account(&self, index: usize) -> anyhow::Result<(String, String)> {
        let target = self.target()?;
        let account = target.profile.accounts.get(index).with_context(|| {
            format!(
                "the scenario needs {} account(s) but the target profile lists {}",
                index + 1,
                target.profile.accounts.len()
            )
        })?;
        Ok((account.address.clone(), account.password.clone()))
    }

    /// The password the target profile lists for an account.
    fn password_of(&self, account: &str) -> anyhow::Result<String> {
        let target = self.target()?;
        target
            .profile
            .accounts
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(account))
            .map(|a| a.password.clone())
            .with_context(|| format!("the target profile has no password for {account}"))
    }

    /// Replaces `{first}`, `{second}`, `{sender}`, `{unknown}`, `{foreign}`, `{domain}`,
    /// `{remote}`, `{nowhere}` and `{over_size}` in a step's text.
    fn expand(&self, text: &str) -> anyhow::Result<String> {
        let target = self.target()?;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .with_context(|| format!("unclosed placeholder in {text:?}"))?;
            let name = &rest[open + 1..close];
            let value = match name {
                "first" => self.account(0)?.0,
                "second" => self.account(1)?.0,
                "sender" => "conformance@harness.test".to_owned(),
                "unknown" => format!("no-such-user-{}@{}", unique_token(), target.profile.domain),
                "foreign" => target.profile.foreign_recipient.clone(),
                "domain" => target.profile.domain.clone(),
                "remote" => self.remote_recipient()?,
                "nowhere" => self.nowhere_sender()?,
                "over_size" => {
                    let limit = self
                        .client
                        .as_ref()
                        .and_then(SmtpClient::size_limit)
                        .filter(|&limit| limit > 0)
                        .context("{over_size} needs a SIZE limit advertised in EHLO")?;
                    (limit + 1).to_string()
                }
                other => bail!("unknown placeholder {{{other}}} in {text:?}"),
            };
            out.push_str(&value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The verdict on reading a greeting from a port that must speak TLS from the first byte: a
/// greeting that parsed as plain text fails; silence, a closed connection or bytes that are not
/// the protocol (a TLS alert, say) pass.
fn no_plain_greeting<T: fmt::Display>(
    read: Result<T, crate::clients::ClientError>,
) -> anyhow::Result<()> {
    use crate::clients::ClientError;
    match read {
        Ok(greeting) => bail!("an implicit-TLS port sent a plain-text greeting: {greeting}"),
        Err(
            ClientError::Timeout { .. }
            | ClientError::Closed { .. }
            | ClientError::MalformedReply { .. },
        ) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// A token unique enough to find one message among many runs.
fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}.{}.{}",
        nanos,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Turns the `\r`, `\n`, `\t`, `\\` and `\xNN` escapes of a feature file into bytes.
pub fn unescape(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let [Some(hi), Some(lo)] = hex else {
                    bail!("`\\x` needs two hex digits in {text:?}");
                };
                let value = u8::from_str_radix(std::str::from_utf8(&[hi, lo])?, 16)
                    .with_context(|| format!("bad `\\x` escape in {text:?}"))?;
                out.push(value);
            }
            other => bail!(
                "unknown escape `\\{}` in {text:?}",
                other.map(char::from).unwrap_or(' ')
            ),
        }
    }
    Ok(out)
}

/// A docstring as message text: LF line ends become CRLF and the text ends with CRLF.
/// The gherkin parser keeps the line break after the opening `"""`; it is not part of the
/// text (left in, it would end the header section before the first header).
pub fn docstring_to_crlf(text: &str) -> Vec<u8> {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let mut out = text
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes();
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\r\n.\x00\\").unwrap(), b"a\r\n.\x00\\");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn docstrings_get_crlf() {
        assert_eq!(docstring_to_crlf("a\nb"), b"a\r\nb\r\n");
        assert_eq!(
            docstring_to_crlf("\nSubject: x\n\nbody"),
            b"Subject: x\r\n\r\nbody\r\n"
        );
        assert_eq!(docstring_to_crlf("a\r\n"), b"a\r\n");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(unique_token(), unique_token());
    }
}

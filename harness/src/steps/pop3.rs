//! POP3 steps: connecting and logging in, the messages a scenario adds and finds again, the
//! maildrop commands, and the round trip from SMTP submission to POP3 retrieval.
//!
//! A scenario adds its own messages, each with a unique Message-ID, and looks only at those: the
//! maildrop may hold mail from other scenarios, or any other mail. It finds them by what the
//! server offers: by unique-id once it has seen them (UIDL), else by their header (TOP, else the
//! whole message with RETR). Scenarios that open an account's maildrop hold a lease on it (see
//! [`super::Leases`]), so two of them never race for the POP3 lock or each other's deletions.
//!
//! What the harness relies on comes from CAPA (after STLS): how it logs in (USER, else SASL
//! PLAIN), TOP, UIDL, response codes. A server that answers no CAPA advertises nothing, and the
//! harness uses no extension with it; it logs in with USER and PASS, RFC 1939's own login.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use super::security::{Answer, Attempts};
use super::smtp::DATE_FIELD;
use super::{MailWorld, Target, docstring_to_crlf, unique_token};
use crate::clients::ClientError;
use crate::clients::legacy_tls::{LegacyOutcome, LegacyVersion};
use crate::clients::pop3::{Pop3Client, Pop3Response, ResponseKind};
use crate::clients::transcript::escape_bytes;

/// The POP3 part of a scenario's state.
#[derive(Default)]
pub(super) struct Pop3State {
    /// The current POP3 connection.
    pub(super) client: Option<Pop3Client>,
    /// The last single-line response.
    response: Option<Pop3Response>,
    /// The CAPA listing of the current connection, when asked for.
    capa: Option<Vec<String>>,
    /// The response to a second, concurrent login, and whether that connection's CAPA listed
    /// RESP-CODES.
    second_login: Option<(Pop3Response, bool)>,
    /// Responses to the last pipelined batch.
    batch: Vec<Pop3Response>,
    /// Set when the server ended the TLS handshake after an STLS that had bytes injected
    /// behind it: the connection is gone, and nothing was executed inside TLS.
    injection_ended_handshake: bool,
    /// The messages this scenario added, in order ("new message 1" is the first).
    added: Vec<Added>,
    /// Their message numbers in the current session, once located.
    numbers: Vec<u32>,
    /// Their UIDL values, when a step recorded them.
    uidls: Vec<String>,
    /// Unique-ids of messages in the maildrop that were read and are not the scenario's.
    foreign: HashSet<String>,
    /// Maildrops this scenario holds.
    leases: Vec<(String, OwnedMutexGuard<()>)>,
}

impl Pop3State {
    /// Drops the connection and the leases (the scenario is over).
    pub(super) fn end_scenario(&mut self) {
        self.client = None;
        self.leases.clear();
    }
}

/// A message the scenario put into a maildrop.
#[derive(Clone)]
struct Added {
    /// The unique part of its Message-ID.
    token: String,
    /// The octets as sent; a server may prepend trace header fields.
    sent: Vec<u8>,
    /// Its unique-id, once a session with UIDL has found it.
    uidl: Option<String>,
}

impl Added {
    fn new(token: String, sent: Vec<u8>) -> Added {
        Added {
            token,
            sent,
            uidl: None,
        }
    }
}

/// How the harness logs in to a POP3 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// USER and PASS (RFC 1939 section 7).
    UserPass,
    /// AUTH PLAIN (RFC 5034).
    SaslPlain,
}

impl Method {
    /// Sends CAPA and picks the login its listing offers: USER when listed, else SASL PLAIN.
    /// A server that does not answer CAPA gets USER and PASS, the login RFC 1939 defines.
    async fn offered(client: &mut Pop3Client) -> anyhow::Result<(Method, bool)> {
        let answered = client.capa().await?.is_some();
        if !answered || client.has_capability("USER") {
            Ok((Method::UserPass, answered))
        } else if client.sasl_mechanisms().iter().any(|m| m == "PLAIN") {
            Ok((Method::SaslPlain, answered))
        } else {
            bail!(
                "CAPA lists neither USER nor SASL PLAIN, the ways the harness knows to log in: {:?}",
                client.capabilities()
            )
        }
    }

    async fn log_in(
        self,
        client: &mut Pop3Client,
        user: &str,
        password: &str,
    ) -> Result<Pop3Response, ClientError> {
        match self {
            Method::UserPass => client.user_pass(user, password).await,
            Method::SaslPlain => client.auth_plain(user, password).await,
        }
    }
}

/// The POP3 service to use when a step does not name one: implicit TLS when offered.
fn pop3_service(target: &Target) -> anyhow::Result<&'static str> {
    ["pop3s", "pop3"]
        .into_iter()
        .find(|service| target.addr(service).is_ok())
        .context("the target offers no POP3 port (pop3 or pop3s)")
}

impl MailWorld {
    fn pop3(&mut self) -> anyhow::Result<&mut Pop3Client> {
        self.pop3
            .client
            .as_mut()
            .ok_or_else(|| anyhow!("no POP3 connection: the scenario must connect first"))
    }

    /// Replaces the POP3 connection, keeping the old one's transcript for the report.
    fn set_pop3(&mut self, client: Pop3Client) {
        if let Some(old) = self.pop3.client.replace(client) {
            self.other_transcripts.push(old.transcript().to_string());
        }
        self.pop3.capa = None;
        self.pop3.numbers.clear();
    }

    fn pop3_response(&self) -> anyhow::Result<&Pop3Response> {
        self.pop3
            .response
            .as_ref()
            .ok_or_else(|| anyhow!("no POP3 response has been received yet"))
    }

    /// Holds `account`'s maildrop for the rest of the scenario.
    async fn lease(&mut self, account: &str) -> anyhow::Result<()> {
        if self
            .pop3
            .leases
            .iter()
            .any(|(held, _)| held.eq_ignore_ascii_case(account))
        {
            return Ok(());
        }
        let target = self.target()?;
        // Waiters queue: long enough for every POP3 scenario before this one, each of whose
        // steps is bounded by the timeout; short of forever, which would hang the run.
        let guard = target.leases.take(account, target.timeout * 60).await?;
        self.pop3.leases.push((account.to_owned(), guard));
        Ok(())
    }

    /// The message number of "new message `n`" (1-based) in the current session.
    fn number_of(&self, n: usize) -> anyhow::Result<u32> {
        ensure!(
            n >= 1 && n <= self.pop3.added.len(),
            "the scenario added {} message(s); there is no new message {n}",
            self.pop3.added.len()
        );
        self.pop3.numbers.get(n - 1).copied().with_context(|| {
            format!("new message {n} was not located in this session (log in first)")
        })
    }
}

/// Opens a connection to a POP3 service and reads the greeting.
async fn open(target: &Target, service: &str) -> anyhow::Result<(Pop3Client, Pop3Response)> {
    let addr = target.addr(service)?;
    let mut client = if Target::is_implicit_tls(service) {
        Pop3Client::connect_tls(&addr, &target.tls, target.timeout).await
    } else {
        Pop3Client::connect(&addr, target.timeout).await
    }
    .with_context(|| format!("connecting to the {service} port at {addr}"))?;
    let greeting = client.greeting().await.context("reading the greeting")?;
    Ok((client, greeting))
}

/// A connection on which credentials may be sent: implicit TLS, or STLS done.
async fn ready(target: &Target) -> anyhow::Result<Pop3Client> {
    let service = pop3_service(target)?;
    let (mut client, greeting) = open(target, service).await?;
    ensure!(greeting.ok, "the POP3 greeting was not +OK: {greeting}");
    if !client.is_tls() {
        let response = client.stls(&target.tls).await?;
        ensure!(response.ok, "STLS was refused: {response}");
    }
    Ok(client)
}

/// Logs in the way CAPA offers, retrying while the maildrop is still locked by a session of
/// this scenario that the server has not finished closing. The client then knows the
/// capabilities of the TRANSACTION state, which may be more than before login (RFC 2449 5).
async fn login(target: &Target, user: &str, password: &str) -> anyhow::Result<Pop3Client> {
    let deadline = tokio::time::Instant::now() + target.timeout;
    loop {
        let mut client = ready(target).await?;
        let (method, capa) = Method::offered(&mut client).await?;
        let response = method.log_in(&mut client, user, password).await?;
        if response.ok {
            if capa {
                client.capa().await?;
            }
            return Ok(client);
        }
        // A server without RESP-CODES cannot say IN-USE: any -ERR might be a lock that the
        // session before has not released yet.
        let maybe_locked = response.has_code("IN-USE") || response.code.is_none();
        if !maybe_locked || tokio::time::Instant::now() >= deadline {
            bail!("POP3 login as {user} failed: {response}");
        }
        let _ = client.quit().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the header section of `message` carries the Message-ID the harness gave `token`.
/// The body is not looked at: a message may quote another one's header (a bounce, say).
fn has_token(message: &[u8], token: &str) -> bool {
    let header = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message, |end| &message[..end + 2]);
    let needle = format!("<{token}@harness.test>");
    header
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The header section of message `number`, with TOP when the server offers it, else the whole
/// message with RETR.
async fn read_header(client: &mut Pop3Client, number: u32) -> anyhow::Result<Vec<u8>> {
    // TOP advertised but refused: the whole message says the same.
    if client.has_capability("TOP")
        && let Ok(header) = client.top(number, 0).await?
    {
        return Ok(header);
    }
    client
        .retr(number)
        .await?
        .map_err(|response| anyhow!("RETR {number} was refused: {response}"))
}

/// Finds the message numbers of `added` in the session; `None` for a message that is not there.
///
/// With UIDL, a message found once is found again by its unique-id, which never changes (RFC
/// 1939 section 7), and messages read once and found to be others' are not read again. The rest
/// are read newest first (the scenario's are usually the last ones), by their header.
async fn locate(
    client: &mut Pop3Client,
    added: &mut [Added],
    foreign: &mut HashSet<String>,
) -> anyhow::Result<Vec<Option<u32>>> {
    let mut found = vec![None; added.len()];
    if added.is_empty() {
        return Ok(found);
    }
    let listing: Vec<(u32, Option<String>)> = match uid_listing(client).await? {
        Some(uids) => {
            for (slot, message) in found.iter_mut().zip(added.iter()) {
                *slot = message.uidl.as_ref().and_then(|known| {
                    uids.iter()
                        .find(|(_, uid)| uid == known)
                        .map(|(number, _)| *number)
                });
            }
            uids.into_iter()
                .map(|(number, uid)| (number, Some(uid)))
                .collect()
        }
        None => client
            .list()
            .await?
            .map_err(|response| anyhow!("LIST was refused: {response}"))?
            .into_iter()
            .map(|(number, _)| (number, None))
            .collect(),
    };
    for (number, uid) in listing.into_iter().rev() {
        if found.iter().all(Option::is_some) {
            break;
        }
        let known = uid.as_ref().is_some_and(|uid| foreign.contains(uid));
        if known || found.contains(&Some(number)) {
            continue;
        }
        let header = read_header(client, number).await?;
        let mut ours = false;
        for (slot, message) in found.iter_mut().zip(added.iter_mut()) {
            if slot.is_none() && has_token(&header, &message.token) {
                *slot = Some(number);
                message.uidl.clone_from(&uid);
                ours = true;
            }
        }
        if let Some(uid) = uid.filter(|_| !ours) {
            foreign.insert(uid);
        }
    }
    Ok(found)
}

/// The UIDL listing when the session offers UIDL; `None` when it does not.
async fn uid_listing(client: &mut Pop3Client) -> anyhow::Result<Option<Vec<(u32, String)>>> {
    if !client.has_capability("UIDL") {
        return Ok(None);
    }
    let listing = client
        .uidl()
        .await?
        .map_err(|response| anyhow!("UIDL is advertised but was refused: {response}"))?;
    Ok(Some(listing))
}

/// Logs the scenario's POP3 client in as `who` and locates the scenario's messages, all of
/// which must be there.
async fn log_in_and_locate(world: &mut MailWorld, who: &str) -> anyhow::Result<()> {
    let account = world.expand(who)?;
    let password = world.password_of(&account)?;
    world.lease(&account).await?;
    let target = world.target()?;
    let mut client = login(&target, &account, &password).await?;
    let state = &mut world.pop3;
    let found = locate(&mut client, &mut state.added, &mut state.foreign).await;
    world.set_pop3(client);
    let found = found?;
    if let Some(missing) = found.iter().position(Option::is_none) {
        bail!(
            "new message {} is not in the maildrop of {account}",
            missing + 1
        );
    }
    world.pop3.numbers = found.into_iter().flatten().collect();
    Ok(())
}

/// Puts a message into `account`'s maildrop: straight into the store when the harness can,
/// otherwise over SMTP on port 25 (or 587 with AUTH), waiting until POP3 shows it.
async fn add_message(world: &mut MailWorld, account: &str, body: &[u8]) -> anyhow::Result<()> {
    let token = unique_token();
    let mut sent = format!(
        "Message-ID: <{token}@harness.test>\r\nFrom: <conformance@harness.test>\r\nTo: <{account}>\r\n{DATE_FIELD}Subject: POP3 test message\r\n\r\n"
    )
    .into_bytes();
    sent.extend_from_slice(body);
    let target = world.target()?;
    let direct = target
        .mailboxes
        .as_ref()
        .and_then(|mailboxes| mailboxes.deliver(account, &sent));
    match direct {
        Some(result) => {
            result.map_err(|e| anyhow!("adding a message for {account}: {e}"))?;
            world.pop3.added.push(Added::new(token, sent));
        }
        None => {
            submit_over_smtp(world, account, &sent).await?;
            world.pop3.added.push(Added::new(token, sent));
            wait_until_visible(world, account).await?;
        }
    }
    Ok(())
}

/// Sends a prepared message to `account` on the relay port, or on the submission port with the
/// account's own credentials when the target has no relay port.
async fn submit_over_smtp(
    world: &mut MailWorld,
    account: &str,
    message: &[u8],
) -> anyhow::Result<()> {
    let target = world.target()?;
    let (service, sender) = if target.addr("smtp").is_ok() {
        ("smtp", "conformance@harness.test".to_owned())
    } else {
        ("submission", account.to_owned())
    };
    let mut client = target.connect(service).await?;
    let greeting = client.read_reply().await?;
    ensure!(
        greeting.code == 220,
        "the {service} greeting was {greeting}"
    );
    client.ehlo("harness.test").await?;
    if !client.is_tls() && client.has_capability("STARTTLS") {
        let reply = client.starttls(&target.tls).await?;
        ensure!(reply.code == 220, "STARTTLS was refused: {reply}");
        client.ehlo("harness.test").await?;
    }
    if service == "submission" {
        let password = world.password_of(account)?;
        let reply = client.auth_plain(account, &password).await?;
        ensure!(reply.code == 235, "AUTH as {account} failed: {reply}");
    }
    for command in [
        format!("MAIL FROM:<{sender}>"),
        format!("RCPT TO:<{account}>"),
    ] {
        let reply = client.command(&command).await?;
        ensure!(reply.code == 250, "`{command}` was refused: {reply}");
    }
    let reply = client.data(message).await?;
    ensure!(
        reply.code == 250,
        "the message for {account} was refused: {reply}"
    );
    let _ = client.command("QUIT").await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    Ok(())
}

/// Waits until POP3 shows every message the scenario added (local delivery may be queued).
async fn wait_until_visible(world: &mut MailWorld, account: &str) -> anyhow::Result<()> {
    let target = world.target()?;
    let password = world.password_of(account)?;
    world.lease(account).await?;
    let deadline = tokio::time::Instant::now() + target.timeout;
    loop {
        let mut client = login(&target, account, &password).await?;
        let state = &mut world.pop3;
        let found = locate(&mut client, &mut state.added, &mut state.foreign).await?;
        let _ = client.quit().await;
        if found.iter().all(Option::is_some) {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the messages sent to {account} over SMTP did not show up in POP3 within {:?}",
            target.timeout
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[given(regex = r"^(\{\w+\}) has (\d+) new messages?$")]
async fn has_new_messages(world: &mut MailWorld, who: String, count: usize) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    world.lease(&account).await?;
    for index in 1..=count {
        let body = format!("Test message {index} of {count}.\r\n");
        add_message(world, &account, body.as_bytes()).await?;
    }
    Ok(())
}

#[given(regex = r"^(\{\w+\}) has a new message with the body:$")]
async fn has_message_with_body(
    world: &mut MailWorld,
    who: String,
    step: &Step,
) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let body = docstring_to_crlf(
        step.docstring
            .as_deref()
            .context("this step needs a \"\"\" docstring")?,
    );
    world.lease(&account).await?;
    add_message(world, &account, &body).await
}

#[given(regex = r"^a POP3 client connected to the (pop3|pop3s) port$")]
async fn connected(world: &mut MailWorld, service: String) -> anyhow::Result<()> {
    // A server that wrongly lets this connection log in must not lock out other scenarios.
    let account = world.account(0)?.0;
    world.lease(&account).await?;
    let target = world.target()?;
    let (client, greeting) = open(&target, &service).await?;
    world.set_pop3(client);
    world.pop3.response = Some(greeting);
    Ok(())
}

#[given("a POP3 client ready to log in")]
async fn ready_to_log_in(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let account = world.account(0)?.0;
    world.lease(&account).await?;
    let client = ready(&target).await?;
    world.set_pop3(client);
    Ok(())
}

#[given(regex = r"^a POP3 client logged in as (\{\w+\})$")]
async fn logged_in(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    log_in_and_locate(world, &who).await
}

#[when(regex = r"^a POP3 client logs in again as (\{\w+\})$")]
async fn logs_in_again(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    log_in_and_locate(world, &who).await
}

#[given(regex = r"^(\{\w+\}) has logged in over POP3 from the client's address$")]
async fn logged_in_before(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    log_in_and_locate(world, &who).await?;
    let response = world.pop3()?.quit().await?;
    ensure!(response.ok, "QUIT was refused: {response}");
    Ok(())
}

#[when(regex = r#"^the POP3 client sends "(.*)"$"#)]
async fn sends(world: &mut MailWorld, line: String) -> anyhow::Result<()> {
    let line = if line.contains("{beyond-last}") {
        let (count, _) = world
            .pop3()?
            .stat()
            .await?
            .map_err(|response| anyhow!("STAT was refused: {response}"))?;
        line.replace("{beyond-last}", &(count + 1).to_string())
    } else {
        line
    };
    let line = world.expand(&line)?;
    let response = world.pop3()?.command(&line).await?;
    world.pop3.response = Some(response);
    Ok(())
}

#[when("the POP3 client sends CAPA")]
async fn sends_capa(world: &mut MailWorld) -> anyhow::Result<()> {
    let listing = world.pop3()?.capa().await?;
    ensure!(listing.is_some(), "CAPA was refused");
    world.pop3.capa = listing;
    Ok(())
}

#[when("the POP3 client starts TLS")]
async fn starts_tls(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let response = world.pop3()?.stls(&target.tls).await?;
    ensure!(response.ok, "STLS was refused: {response}");
    world.pop3.response = Some(response);
    Ok(())
}

#[when(regex = r#"^the POP3 client starts TLS with "(.*)" injected$"#)]
async fn starts_tls_injected(world: &mut MailWorld, line: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let injected = format!("{line}\r\n");
    let response = match world
        .pop3()?
        .stls_with_injected(&target.tls, injected.as_bytes())
        .await
    {
        Ok(response) => response,
        // After its +OK the server took the injected bytes for the start of the handshake (or
        // refused to go on with them buffered) and ended it: nothing ran inside TLS, which is
        // what RFC 2595 4 protects. Dovecot does this.
        Err(error) if error.is_handshake_ended_by_server() => {
            // Not the error itself in the note: EOF or reset depends on timing, and the note
            // should read the same from run to run (the transcript has the rest).
            world.note(
                "POP3 STLS with a command pipelined behind it: the server answered +OK, then \
                 ended the TLS handshake rather than run the command",
            );
            world.pop3.injection_ended_handshake = true;
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    world.pop3.response = Some(response);
    Ok(())
}

#[when(regex = r"^the POP3 client logs in as (\{\w+\})( with a wrong password)?$")]
async fn logs_in(world: &mut MailWorld, who: String, wrong: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let mut password = world.password_of(&account)?;
    if !wrong.is_empty() {
        password.push_str("-wrong");
    }
    let response = if wrong.is_empty() {
        with_login_patience(world, false, |client| {
            let (account, password) = (account.clone(), password.clone());
            Box::pin(async move { client.user_pass(&account, &password).await })
        })
        .await?
    } else {
        // USER apart: a server may say IN-USE to USER (RFC 2449 8.1.1), before any password.
        let user = world.pop3()?.command(&format!("USER {account}")).await?;
        if user.ok {
            let response = with_login_patience(world, true, |client| {
                let password = password.clone();
                Box::pin(async move { client.pass(&password).await })
            })
            .await?;
            refused_as_wrong(&response, true)?;
            response
        } else {
            user
        }
    };
    world.pop3.response = Some(response);
    Ok(())
}

/// A wrong password answered `-ERR [IN-USE]` was taken: the code says the authentication
/// succeeded and only the maildrop is locked (RFC 2449 8.1.1), whatever the status.
fn refused_as_wrong(response: &Pop3Response, wrong: bool) -> anyhow::Result<()> {
    ensure!(
        !(wrong && response.has_code("IN-USE")),
        "the wrong password was answered {response}: [IN-USE] says the credentials were \
         accepted and the maildrop is locked by another session (RFC 2449 8.1.1)"
    );
    Ok(())
}

/// Runs a login exchange, allowing a deliberately failed one the extra time servers take to
/// answer it. Good credentials answered `-ERR [IN-USE]` are tried again on the same connection
/// (RFC 1939 leaves the session in AUTHORIZATION) for up to the target's timeout: the session
/// of a scenario before may not have been closed by the server yet.
async fn with_login_patience(
    world: &mut MailWorld,
    failing: bool,
    exchange: impl for<'c> Fn(
        &'c mut Pop3Client,
    ) -> futures::future::BoxFuture<'c, Result<Pop3Response, ClientError>>,
) -> anyhow::Result<Pop3Response> {
    let timeout = world.target()?.timeout;
    let client = world.pop3()?;
    if failing {
        client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    let response = loop {
        let response = exchange(client).await;
        let locked = matches!(&response, Ok(r) if r.has_code("IN-USE"));
        if failing || !locked || tokio::time::Instant::now() + pause >= deadline {
            break response;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    client.set_timeout(timeout);
    Ok(response?)
}

#[when(
    regex = r"^the POP3 client authenticates with AUTH PLAIN as (\{\w+\})( with a wrong password)?$"
)]
async fn auth_plain(world: &mut MailWorld, who: String, wrong: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let mut password = world.password_of(&account)?;
    if !wrong.is_empty() {
        password.push_str("-wrong");
    }
    let response = with_login_patience(world, !wrong.is_empty(), |client| {
        let (account, password) = (account.clone(), password.clone());
        Box::pin(async move { client.auth_plain(&account, &password).await })
    })
    .await?;
    refused_as_wrong(&response, !wrong.is_empty())?;
    world.pop3.response = Some(response);
    Ok(())
}

#[when(regex = r"^the POP3 client deletes new message (\d+)$")]
async fn deletes(world: &mut MailWorld, n: usize) -> anyhow::Result<()> {
    let number = world.number_of(n)?;
    let response = world.pop3()?.dele(number).await?;
    world.pop3.response = Some(response);
    Ok(())
}

#[when("the POP3 client quits")]
async fn quits(world: &mut MailWorld) -> anyhow::Result<()> {
    let response = world.pop3()?.quit().await?;
    world.pop3.response = Some(response);
    Ok(())
}

#[when("the POP3 client drops the connection")]
async fn drops(world: &mut MailWorld) -> anyhow::Result<()> {
    let client = world
        .pop3
        .client
        .take()
        .context("no POP3 connection to drop")?;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    drop(client);
    Ok(())
}

#[when(regex = r"^a second POP3 client logs in as (\{\w+\})$")]
async fn second_login(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let password = world.password_of(&account)?;
    let target = world.target()?;
    let mut client = ready(&target).await?;
    let (method, _) = Method::offered(&mut client).await?;
    let resp_codes = client.has_capability("RESP-CODES");
    // A server may wait a while for the first session to let go of the lock before it refuses
    // (Dovecot waits 10 s), as it may delay a refused password.
    client.set_timeout(target.timeout + super::FAILED_LOGIN_PATIENCE);
    let response = method.log_in(&mut client, &account, &password).await;
    client.set_timeout(target.timeout);
    let response = response?;
    if response.ok {
        let _ = client.quit().await;
    }
    world
        .other_transcripts
        .push(client.transcript().to_string());
    world.pop3.second_login = Some((response, resp_codes));
    Ok(())
}

#[when(regex = r#"^the POP3 client pipelines "(.*)"$"#)]
async fn pipelines(world: &mut MailWorld, commands: String) -> anyhow::Result<()> {
    // `"A", "B" and "C"` as written in the feature.
    let commands: Vec<String> = commands
        .split("\", \"")
        .flat_map(|part| part.split("\" and \""))
        .map(str::to_owned)
        .collect();
    let batch: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
    let client = world.pop3()?;
    client.send_raw(batch.as_bytes()).await?;
    let mut responses = Vec::new();
    for command in &commands {
        let response = client
            .read_response()
            .await
            .with_context(|| format!("reading the response to the pipelined {command}"))?;
        responses.push(response);
    }
    world.pop3.batch = responses;
    Ok(())
}

#[then(regex = r"^the (\d+) pipelined responses are all \+OK$")]
async fn pipelined_ok(world: &mut MailWorld, count: usize) -> anyhow::Result<()> {
    let batch = &world.pop3.batch;
    ensure!(
        batch.len() == count,
        "{} responses, not {count}",
        batch.len()
    );
    if let Some(bad) = batch.iter().find(|r| !r.ok) {
        bail!("a pipelined command was answered {bad}");
    }
    // In order: NOOP, then STAT's "count size", then LIST 1's "1 size", then NOOP.
    let numbers = |text: &str| -> Option<(u64, u64)> {
        let mut words = text.split(' ');
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    };
    ensure!(
        count == 4 && numbers(&batch[1].text).is_some(),
        "the second response is not STAT's: {}",
        batch[1]
    );
    ensure!(
        numbers(&batch[2].text).is_some_and(|(number, _)| number == 1),
        "the third response is not LIST 1's: {}",
        batch[2]
    );
    Ok(())
}

#[then(regex = r"^the POP3 response is (\+OK|-ERR)$")]
async fn response_is(world: &mut MailWorld, status: String) -> anyhow::Result<()> {
    let response = world.pop3_response()?;
    let want = if status == "+OK" {
        ResponseKind::Ok
    } else {
        ResponseKind::Err
    };
    ensure!(response.kind == want, "expected {status}, got {response}");
    Ok(())
}

#[then(regex = r"^the POP3 server (advertises|does not advertise) (\S+)(?: (\S+))?$")]
async fn advertises(
    world: &mut MailWorld,
    verb: String,
    keyword: String,
    param: String,
) -> anyhow::Result<()> {
    ensure!(
        world.pop3.capa.is_some(),
        "the scenario did not send CAPA on this connection"
    );
    let capabilities = world.pop3()?.capabilities();
    let present = match capabilities.get(&keyword.to_ascii_uppercase()) {
        None => false,
        Some(_) if param.is_empty() => true,
        Some(params) => params.iter().any(|p| p.eq_ignore_ascii_case(&param)),
    };
    let what = format!("{keyword} {param}").trim_end().to_owned();
    match (verb.as_str(), present) {
        ("advertises", false) => bail!("CAPA does not list {what}"),
        ("does not advertise", true) => bail!("CAPA lists {what}"),
        _ => Ok(()),
    }
}

#[then("the POP3 server advertises a way to log in: USER, SASL or APOP")]
async fn advertises_login(world: &mut MailWorld) -> anyhow::Result<()> {
    ensure!(
        world.pop3.capa.is_some(),
        "the scenario did not send CAPA on this connection"
    );
    // RFC 2449 6.2 and 6.3 announce USER and SASL; APOP is announced by a timestamp in the
    // greeting (RFC 1939 section 7). Which of them a server offers is its choice.
    let client = world.pop3()?;
    ensure!(
        client.has_capability("USER")
            || !client.sasl_mechanisms().is_empty()
            || client.apop_timestamp().is_some(),
        "CAPA lists neither USER nor SASL and the greeting has no APOP timestamp: a client \
         cannot tell how to log in"
    );
    Ok(())
}

#[then("the POP3 client receives nothing it did not ask for")]
async fn nothing_unsolicited(world: &mut MailWorld) -> anyhow::Result<()> {
    if world.pop3.injection_ended_handshake {
        return Ok(());
    }
    if !world.pop3_response()?.ok {
        // Refusing STLS when more input follows it is a safe answer too.
        return Ok(());
    }
    // Two NOOPs, each answered by one status line. A server that ran the injected CAPA inside
    // TLS answers it first: its listing follows the first status line and is not a status line.
    let client = world.pop3()?;
    for _ in 0..2 {
        let answer = client.command("NOOP").await;
        if let Err(ClientError::MalformedReply { reason, bytes }) = &answer {
            bail!(
                "inside TLS the server sent {} where a status line was due ({reason}): it \
                 answered a command sent in clear text before the handshake (CVE-2011-0411 \
                 class)",
                escape_bytes(bytes)
            );
        }
        answer?;
    }
    Ok(())
}

#[then(regex = r"^the (pop3s) port sends no plain-text greeting$")]
async fn no_plain_greeting_step(world: &mut MailWorld, service: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let addr = target.addr(&service)?;
    let mut client = Pop3Client::connect(&addr, Duration::from_secs(2)).await?;
    let read = client.greeting().await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    super::no_plain_greeting(read)
}

#[then(regex = r"^the second POP3 login is refused with code (\S+)$")]
async fn second_refused(world: &mut MailWorld, code: String) -> anyhow::Result<()> {
    let (response, resp_codes) = world
        .pop3
        .second_login
        .as_ref()
        .context("no second login was tried")?;
    ensure!(
        !response.ok,
        "a second session was let into a maildrop another session holds: {response}"
    );
    if *resp_codes {
        ensure!(
            response.has_code(&code),
            "the server advertises RESP-CODES but answered without [{code}]: {response}"
        );
    }
    Ok(())
}

#[then("the POP3 client session continues")]
async fn session_continues(world: &mut MailWorld) -> anyhow::Result<()> {
    let response = world.pop3()?.noop().await?;
    ensure!(response.ok, "NOOP was answered {response}");
    Ok(())
}

#[then("STAT agrees with LIST")]
async fn stat_agrees(world: &mut MailWorld) -> anyhow::Result<()> {
    let client = world.pop3()?;
    let (count, size) = client
        .stat()
        .await?
        .map_err(|response| anyhow!("STAT was refused: {response}"))?;
    let listing = client
        .list()
        .await?
        .map_err(|response| anyhow!("LIST was refused: {response}"))?;
    let listed: u64 = listing.iter().map(|&(_, size)| size).sum();
    ensure!(
        usize::try_from(count).ok() == Some(listing.len()) && size == listed,
        "STAT says {count} messages of {size} octets; LIST shows {} of {listed}",
        listing.len()
    );
    Ok(())
}

#[then("LIST and RETR agree on the size of every new message")]
async fn list_retr_sizes(world: &mut MailWorld) -> anyhow::Result<()> {
    for n in 1..=world.pop3.added.len() {
        let number = world.number_of(n)?;
        let client = world.pop3()?;
        let listed = client.list_one(number).await?;
        ensure!(listed.ok, "LIST {number} was refused: {listed}");
        let size: u64 = listed
            .text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("LIST {number} is not '+OK {number} size': {listed}"))?;
        let octets = client
            .retr(number)
            .await?
            .map_err(|response| anyhow!("RETR {number} was refused: {response}"))?;
        ensure!(
            size == octets.len() as u64,
            "LIST {number} says {size} octets but RETR {number} returned {}",
            octets.len()
        );
    }
    Ok(())
}

/// Checks that `retrieved` is `sent` with at most header fields prepended (trace fields).
fn same_message(sent: &[u8], retrieved: &[u8]) -> anyhow::Result<()> {
    if !retrieved.ends_with(sent) {
        let offset = sent
            .iter()
            .rev()
            .zip(retrieved.iter().rev())
            .position(|(a, b)| a != b)
            .unwrap_or(sent.len().min(retrieved.len()));
        bail!(
            "the retrieved message differs from the one sent ({} octets sent, {} retrieved; they \
             differ {offset} octets before the end).\nsent:      {}\nretrieved: {}",
            sent.len(),
            retrieved.len(),
            escape_bytes(&sent[..sent.len().min(300)]),
            escape_bytes(&retrieved[..retrieved.len().min(300)])
        );
    }
    let prefix = &retrieved[..retrieved.len() - sent.len()];
    let only_fields = prefix.is_empty()
        || (prefix.ends_with(b"\r\n")
            && prefix
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .all(|line| {
                    line.first().is_some_and(|b| *b == b' ' || *b == b'\t')
                        || line.iter().position(|&b| b == b':').is_some_and(|colon| {
                            colon > 0 && line[..colon].iter().all(u8::is_ascii_graphic)
                        })
                }));
    ensure!(
        only_fields,
        "the server put something other than header fields before the message: {}",
        escape_bytes(prefix)
    );
    Ok(())
}

#[then("RETR returns every new message as it was sent")]
async fn retr_as_sent(world: &mut MailWorld) -> anyhow::Result<()> {
    for n in 1..=world.pop3.added.len() {
        let number = world.number_of(n)?;
        let octets = world
            .pop3()?
            .retr(number)
            .await?
            .map_err(|response| anyhow!("RETR {number} was refused: {response}"))?;
        same_message(&world.pop3.added[n - 1].sent, &octets)
            .with_context(|| format!("new message {n} (RETR {number})"))?;
    }
    Ok(())
}

#[then(regex = r"^new message (\d+) is (not )?listed$")]
async fn listed(world: &mut MailWorld, n: usize, not: String) -> anyhow::Result<()> {
    let number = world.number_of(n)?;
    let listing = world
        .pop3()?
        .list()
        .await?
        .map_err(|response| anyhow!("LIST was refused: {response}"))?;
    let present = listing.iter().any(|&(m, _)| m == number);
    match (not.is_empty(), present) {
        (true, false) => bail!("LIST does not show message {number}"),
        (false, true) => bail!("LIST still shows message {number}, which is marked deleted"),
        _ => Ok(()),
    }
}

#[then(regex = r"^RETR of new message (\d+) is refused$")]
async fn retr_refused(world: &mut MailWorld, n: usize) -> anyhow::Result<()> {
    let number = world.number_of(n)?;
    match world.pop3()?.retr(number).await? {
        Ok(octets) => bail!(
            "RETR {number} of a message marked deleted returned {} octets",
            octets.len()
        ),
        Err(response) if !response.ok => Ok(()),
        Err(response) => bail!("RETR {number} was answered {response}"),
    }
}

#[then(
    regex = r#"^TOP of new message (\d+) with (\d+) lines returns its header(?: and (.*)| only)$"#
)]
async fn top_lines(
    world: &mut MailWorld,
    n: usize,
    lines: u32,
    expected: String,
) -> anyhow::Result<()> {
    let number = world.number_of(n)?;
    let octets = world
        .pop3()?
        .top(number, lines)
        .await?
        .map_err(|response| anyhow!("TOP {number} {lines} was refused: {response}"))?;
    let sent = &world.pop3.added[n - 1].sent;
    let split =
        |m: &[u8]| -> Option<usize> { m.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) };
    let sent_header = &sent[..split(sent).context("the test message has no body")?];
    let at = split(&octets)
        .with_context(|| format!("TOP {number} {lines} has no blank line after the header"))?;
    let (header, body) = octets.split_at(at);
    same_message(sent_header, header).context("the header TOP returned")?;
    let want: String = expected
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| format!("{}\r\n", s.trim_matches('"')))
        .collect();
    ensure!(
        body == want.as_bytes(),
        "TOP {number} {lines} returned the body lines {} instead of {}",
        escape_bytes(body),
        escape_bytes(want.as_bytes())
    );
    Ok(())
}

#[then("the new messages have distinct UIDL values")]
async fn distinct_uidls(world: &mut MailWorld) -> anyhow::Result<()> {
    let uidls = new_uidls(world).await?;
    let mut unique = uidls.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == uidls.len(),
        "messages share UIDL values: {uidls:?}"
    );
    world.pop3.uidls = uidls;
    Ok(())
}

#[then("the new messages have the same UIDL values as before")]
async fn same_uidls(world: &mut MailWorld) -> anyhow::Result<()> {
    let now = new_uidls(world).await?;
    ensure!(
        now == world.pop3.uidls,
        "UIDL values changed between sessions: {:?} then {now:?}",
        world.pop3.uidls
    );
    Ok(())
}

/// The UIDL values of the scenario's messages in the current session.
async fn new_uidls(world: &mut MailWorld) -> anyhow::Result<Vec<String>> {
    let numbers = world.pop3.numbers.clone();
    let listing = world
        .pop3()?
        .uidl()
        .await?
        .map_err(|response| anyhow!("UIDL was refused: {response}"))?;
    numbers
        .iter()
        .map(|number| {
            listing
                .iter()
                .find(|(m, _)| m == number)
                .map(|(_, uid)| uid.clone())
                .with_context(|| format!("UIDL does not list message {number}"))
        })
        .collect()
}

/// Opens a fresh session as `who` and reports which of the scenario's messages it holds.
async fn present_in_new_session(world: &mut MailWorld, who: &str) -> anyhow::Result<Vec<bool>> {
    let account = world.expand(who)?;
    let password = world.password_of(&account)?;
    world.lease(&account).await?;
    let target = world.target()?;
    let mut client = login(&target, &account, &password).await?;
    let state = &mut world.pop3;
    let found = locate(&mut client, &mut state.added, &mut state.foreign).await;
    let _ = client.quit().await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    Ok(found?.iter().map(Option::is_some).collect())
}

#[then(regex = r"^all new messages are in (\{\w+\})'s maildrop$")]
async fn all_present(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let present = present_in_new_session(world, &who).await?;
    if let Some(missing) = present.iter().position(|p| !p) {
        bail!(
            "new message {} is gone, though no session applied its deletion with QUIT",
            missing + 1
        );
    }
    Ok(())
}

#[then(regex = r"^new message (\d+) is (gone from|in) (\{\w+\})'s maildrop$")]
async fn one_present(
    world: &mut MailWorld,
    n: usize,
    state: String,
    who: String,
) -> anyhow::Result<()> {
    let present = present_in_new_session(world, &who).await?;
    let here = *present
        .get(n.wrapping_sub(1))
        .with_context(|| format!("there is no new message {n}"))?;
    match (state.as_str(), here) {
        ("gone from", true) => bail!("new message {n} is still there after DELE and QUIT"),
        ("in", false) => bail!("new message {n} is gone, though it was not deleted"),
        _ => Ok(()),
    }
}

/// The round-trip test message: 8-bit text, lines that begin with dots, a line at the length
/// limit, and a 5 MiB attachment.
pub(super) fn round_trip_message(token: &str, account: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut message = format!(
        "Message-ID: <{token}@harness.test>\r\n\
         From: <{account}>\r\nTo: <{account}>\r\n{DATE_FIELD}Subject: POP3 round trip\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"rt-{token}\"\r\n\r\n\
         --rt-{token}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n\
         Gr\u{fc}\u{df}e aus K\u{f6}ln: 8-bit text \u{c4}\u{d6}\u{dc} \u{20ac} \u{65e5}\u{672c}\u{8a9e}\r\n\
         .\r\n..two dots\r\n.one dot\r\n"
    )
    .into_bytes();
    // 998 octets and CRLF: the longest line RFC 5321 section 4.5.3.1.6 lets a server refuse.
    message.extend(std::iter::repeat_n(b'x', 998));
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(
        format!(
            "--rt-{token}\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"random.bin\"\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let attachment: Vec<u8> = (0..5 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    for chunk in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(chunk);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(format!("--rt-{token}--\r\n").as_bytes());
    message
}

#[when(regex = r"^the client sends the round-trip test message to (\{\w+\})$")]
async fn sends_round_trip(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let sender = world.account(0)?.0;
    let token = unique_token();
    let message = round_trip_message(&token, &account);
    let client = world.client()?;
    ensure!(
        client.has_capability("8BITMIME"),
        "the server does not advertise 8BITMIME, needed for the 8-bit round trip"
    );
    for command in [
        format!("MAIL FROM:<{sender}> BODY=8BITMIME"),
        format!("RCPT TO:<{account}>"),
    ] {
        let reply = client.command(&command).await?;
        ensure!(reply.code == 250, "`{command}` was refused: {reply}");
    }
    let reply = client.data(&message).await?;
    world.record(reply);
    world.pop3.added.push(Added::new(token, message));
    Ok(())
}

#[then(regex = r"^POP3 retrieves the round-trip test message for (\{\w+\}) with the same SHA-256$")]
async fn round_trip_retrieved(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    world.lease(&account).await?;
    wait_until_visible(world, &account).await?;
    log_in_and_locate(world, &who).await?;
    let number = world.number_of(world.pop3.added.len())?;
    let retrieved = world
        .pop3()?
        .retr(number)
        .await?
        .map_err(|response| anyhow!("RETR {number} was refused: {response}"))?;
    let sent = &world.pop3.added[world.pop3.added.len() - 1].sent;
    let tail = &retrieved[retrieved.len().saturating_sub(sent.len())..];
    let (want, got) = (Sha256::digest(sent), Sha256::digest(tail));
    if want != got {
        same_message(sent, &retrieved).with_context(|| {
            format!("SHA-256 of the message sent {want:x}, of the message retrieved {got:x}")
        })?;
    }
    same_message(sent, &retrieved)?;
    // The 5 MiB message has been checked; leave the maildrop as it was.
    let client = world.pop3()?;
    let _ = client.dele(number).await?;
    let _ = client.quit().await?;
    Ok(())
}

/// STLS on the pop3 port, then a legacy ClientHello instead of a real handshake.
pub(super) async fn stls_then_probe_legacy(
    world: &mut MailWorld,
    version: LegacyVersion,
    sni: Option<&str>,
) -> anyhow::Result<LegacyOutcome> {
    let target = world.target()?;
    let (mut client, greeting) = open(&target, "pop3").await?;
    ensure!(greeting.ok, "the POP3 greeting was not +OK: {greeting}");
    let outcome = client.stls_then_probe_legacy(version, sni).await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    outcome?.map_err(|response| anyhow!("STLS was refused: {response}"))
}

/// A real handshake on a POP3 port (after STLS on 110), which must negotiate TLS 1.2 or 1.3.
pub(super) async fn modern_tls(world: &mut MailWorld, service: &str) -> anyhow::Result<()> {
    let target = world.target()?;
    let (mut client, greeting) = open(&target, service).await?;
    let result = async {
        ensure!(greeting.ok, "the POP3 greeting was not +OK: {greeting}");
        if !client.is_tls() {
            let response = client.stls(&target.tls).await?;
            ensure!(response.ok, "STLS was refused: {response}");
        }
        let version = client.tls_protocol_version().unwrap_or_default();
        ensure!(
            version == "TLSv1.2" || version == "TLSv1.3",
            "negotiated {version:?}, expected TLSv1.2 or TLSv1.3"
        );
        Ok(())
    }
    .await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    result
}

#[when(regex = r"^the POP3 client keeps trying wrong passwords for (\{\w+\})$")]
async fn pop3_keeps_guessing(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let wrong = format!("{}-wrong", world.password_of(&account)?);
    let timeout = world.target()?.timeout;
    let client = world.pop3()?;
    let (method, _) = Method::offered(client).await?;
    client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
    let attempts = Attempts::run("wrong password", async || {
        let response = method.log_in(client, &account, &wrong).await?;
        Ok(if response.ok {
            Answer::Granted(format!(
                "the wrong password was accepted: +OK {}",
                response.text
            ))
        } else if response.code.is_none() || response.has_code("AUTH") {
            // -ERR [AUTH] (RFC 3206) or no code: the ordinary refusal of a password.
            Answer::Ordinary
        } else {
            let code = response.code.unwrap_or_default();
            Answer::Stopped(format!("the server answered -ERR [{code}]"))
        })
    })
    .await;
    client.set_timeout(timeout);
    world.attempts = Some(attempts?);
    Ok(())
}

#[then(regex = r"^USER answers (\{\w+\}) and (\{\w+\}) alike$")]
async fn user_alike(world: &mut MailWorld, known: String, unknown: String) -> anyhow::Result<()> {
    // One session per name: after a USER that succeeded, RFC 1939 allows only PASS or QUIT.
    let target = world.target()?;
    let mut responses = Vec::new();
    for who in [&known, &unknown] {
        let name = world.expand(who)?;
        let mut client = ready(&target).await?;
        let response = client.command(&format!("USER {name}")).await;
        let _ = client.quit().await;
        world
            .other_transcripts
            .push(client.transcript().to_string());
        responses.push(response?);
    }
    let describe = |r: &Pop3Response| format!("{} {}", if r.ok { "+OK" } else { "-ERR" }, r.text);
    ensure!(
        responses[0].ok == responses[1].ok,
        "USER tells an account from a name that is none: {known} got \"{}\", {unknown} got \
         \"{}\" (a client can collect valid names this way)",
        describe(&responses[0]),
        describe(&responses[1])
    );
    Ok(())
}

#[then("the POP3 client got nothing in clear text between the STLS reply and the handshake")]
async fn pop3_no_plaintext_after_go_ahead(world: &mut MailWorld) -> anyhow::Result<()> {
    let injected = world.pop3()?.plaintext_after_go_ahead().to_vec();
    ensure!(
        injected.is_empty(),
        "after its go-ahead for STLS the server sent \"{}\" in clear text before the \
         handshake; a client that reads it as a response inside TLS is open to response \
         injection, and a server never needs to send anything there",
        crate::clients::transcript::escape_bytes(&injected)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_wrong_password_answered_in_use_was_accepted() {
        let response = |code: Option<&str>| Pop3Response {
            ok: false,
            kind: ResponseKind::Err,
            text: "no".into(),
            code: code.map(str::to_owned),
        };
        let refused = refused_as_wrong(&response(Some("IN-USE")), true).unwrap_err();
        assert!(refused.to_string().contains("RFC 2449 8.1.1"), "{refused}");
        // Any other refusal of a wrong password is one; a right password may meet a lock.
        assert!(refused_as_wrong(&response(Some("AUTH")), true).is_ok());
        assert!(refused_as_wrong(&response(None), true).is_ok());
        assert!(refused_as_wrong(&response(Some("IN-USE")), false).is_ok());
    }

    /// A POP3 server already in the TRANSACTION state over `maildrop` (message `n` is
    /// `maildrop[n - 1]`, its unique-id `uid-n`), answering CAPA with `capa` (`None`: -ERR).
    /// Every command it gets is recorded.
    async fn maildrop_server(
        maildrop: Vec<Vec<u8>>,
        capa: Option<&'static [&'static str]>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let log = commands.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (maildrop, log) = (maildrop.clone(), log.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"+OK ready\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        log.lock().unwrap().push(line.clone());
                        let words: Vec<&str> = line.split(' ').collect();
                        let message = |n: &str| maildrop[n.parse::<usize>().unwrap() - 1].clone();
                        let mut out = Vec::new();
                        let block = |out: &mut Vec<u8>, body: &[u8]| {
                            out.extend_from_slice(b"+OK\r\n");
                            out.extend_from_slice(body);
                            out.extend_from_slice(b".\r\n");
                        };
                        match words[..] {
                            ["CAPA"] => match capa {
                                Some(keywords) => {
                                    let listing: String =
                                        keywords.iter().map(|k| format!("{k}\r\n")).collect();
                                    block(&mut out, listing.as_bytes());
                                }
                                None => out.extend_from_slice(b"-ERR what?\r\n"),
                            },
                            ["LIST"] | ["UIDL"] => {
                                let listing: String = (1..=maildrop.len())
                                    .map(|n| match words[0] {
                                        "LIST" => format!("{n} {}\r\n", maildrop[n - 1].len()),
                                        _ => format!("{n} uid-{n}\r\n"),
                                    })
                                    .collect();
                                block(&mut out, listing.as_bytes());
                            }
                            ["TOP", n, "0"] => {
                                let whole = message(n);
                                let end = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                                block(&mut out, &whole[..end + 4]);
                            }
                            ["RETR", n] => block(&mut out, &message(n)),
                            _ => out.extend_from_slice(b"-ERR not in this test\r\n"),
                        }
                        write.write_all(&out).await.unwrap();
                    }
                });
            }
        });
        (addr, commands)
    }

    fn message(id: &str, body: &str) -> Vec<u8> {
        format!("Message-ID: <{id}@harness.test>\r\nSubject: x\r\n\r\n{body}\r\n").into_bytes()
    }

    async fn session(addr: &str) -> Pop3Client {
        let mut client = Pop3Client::connect(addr, TIMEOUT).await.unwrap();
        assert!(client.greeting().await.unwrap().ok);
        client.capa().await.unwrap();
        client
    }

    fn taken(commands: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *commands.lock().unwrap())
    }

    #[tokio::test]
    async fn messages_are_found_by_header_then_by_unique_id() {
        let maildrop = vec![
            message("mine-1", "one"),
            message("other", "someone else's"),
            message("mine-2", "two"),
            message("newest", "not ours"),
        ];
        let (addr, commands) = maildrop_server(maildrop, Some(&["TOP", "UIDL"])).await;
        let mut added = vec![
            Added::new("mine-1".into(), Vec::new()),
            Added::new("mine-2".into(), Vec::new()),
        ];
        let mut foreign = HashSet::new();
        let mut client = session(&addr).await;
        let found = locate(&mut client, &mut added, &mut foreign).await.unwrap();
        assert_eq!(found, [Some(1), Some(3)]);
        assert_eq!(
            taken(&commands),
            ["CAPA", "UIDL", "TOP 4 0", "TOP 3 0", "TOP 2 0", "TOP 1 0"]
        );
        assert_eq!(added[1].uidl.as_deref(), Some("uid-3"));
        assert_eq!(foreign, HashSet::from(["uid-2".into(), "uid-4".into()]));
        // The next session needs no header: the unique-ids say where they are.
        let mut client = session(&addr).await;
        let found = locate(&mut client, &mut added, &mut foreign).await.unwrap();
        assert_eq!(found, [Some(1), Some(3)]);
        assert_eq!(taken(&commands), ["CAPA", "UIDL"]);
        // One gone from the listing: the rest is read again, but for others' mail.
        added.push(Added::new("absent".into(), Vec::new()));
        let mut client = session(&addr).await;
        let found = locate(&mut client, &mut added, &mut foreign).await.unwrap();
        assert_eq!(found, [Some(1), Some(3), None]);
        assert_eq!(taken(&commands), ["CAPA", "UIDL"]);
    }

    #[tokio::test]
    async fn without_capa_only_list_and_retr_are_used() {
        let mut nul = message("other-nul", "before");
        nul.extend_from_slice(b"\x00after\r\n");
        let maildrop = vec![
            message("mine", "mine"),
            nul,
            // A bounce quoting the scenario's message in its body is not the message.
            message("bounce", "Message-ID: <mine@harness.test>"),
        ];
        let (addr, commands) = maildrop_server(maildrop, None).await;
        let mut added = vec![Added::new("mine".into(), Vec::new())];
        let mut foreign = HashSet::new();
        let mut client = session(&addr).await;
        let found = locate(&mut client, &mut added, &mut foreign).await.unwrap();
        assert_eq!(found, [Some(1)]);
        assert_eq!(
            taken(&commands),
            ["CAPA", "LIST", "RETR 3", "RETR 2", "RETR 1"]
        );
        assert!(foreign.is_empty() && added[0].uidl.is_none());
    }

    #[test]
    fn a_token_counts_in_the_header_only() {
        let message = b"Message-ID: <t1@harness.test>\r\n\r\nsee <t2@harness.test>\r\n";
        assert!(has_token(message, "t1"));
        assert!(!has_token(message, "t2"));
        assert!(has_token(b"Message-ID: <t1@harness.test>\r\n", "t1"));
    }
}

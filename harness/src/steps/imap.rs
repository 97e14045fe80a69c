//! IMAP steps: connecting, STARTTLS and logging in, commands sent as written in the feature file,
//! and checks on what the server answered, alone or to a second session on the same mailbox.
//!
//! A scenario that changes messages works in a mailbox of its own (`{box}`, a unique name under
//! the account's personal namespace) and deletes it when it ends, so scenarios running at the
//! same time, or POP3 scenarios on the INBOX, never see each other's messages. The namespace is
//! discovered, never assumed: its prefix from NAMESPACE when offered, its hierarchy delimiter
//! from LIST. Feature files write `{box}/a/b`, and the `/` after `{box}` becomes the server's
//! delimiter.

use std::borrow::Cow;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use tokio::time::Instant;

use super::security::{Answer, Attempts};
use super::{MailWorld, Target, docstring_to_crlf, unique_token};
use crate::clients::ClientError;
use crate::clients::imap::{
    CommandResult, ImapClient, Incoming, Part, Response, Status, StatusKind, Value,
    decode_modified_utf7, encode_modified_utf7, quote,
};
use crate::clients::legacy_tls::{LegacyOutcome, LegacyVersion};

/// The IMAP part of a scenario's state. Index 0 is "the IMAP client", 1 "the second".
#[derive(Default)]
pub(super) struct ImapState {
    clients: [Option<ImapClient>; 2],
    /// The result of each client's last command.
    results: [Option<CommandResult>; 2],
    /// The greeting of the first client.
    greeting: Option<Status>,
    /// The scenario's own mailbox, once made.
    mailbox: Option<String>,
    /// Mailboxes to delete when the scenario ends: (account, name).
    created: Vec<(String, String)>,
    /// UIDVALIDITY and UIDs (by message number) a step remembered.
    remembered: Option<(u32, Vec<u32>)>,
    /// A HIGHESTMODSEQ a step remembered, for `{modseq}`.
    modseq: Option<u64>,
    /// Set when the server ended the TLS handshake after a STARTTLS that had bytes injected
    /// behind it: the connection is gone, and nothing was executed inside TLS.
    injection_ended_handshake: bool,
    /// The account's personal namespace, once discovered.
    namespace: Option<PersonalNamespace>,
    /// Per client, the flags the last FLAGS response of its selected mailbox listed (lower
    /// case), and the keywords a FETCH showed before any FLAGS response listed them.
    keywords: [KeywordWatch; 2],
    /// A running IDLE of the first client and what it has been told.
    idle: Option<IdleWatch>,
    /// A message submitted for the IDLE client to hear of: when the submission server accepted
    /// it, and its Message-ID.
    submitted: Option<(Instant, String)>,
    /// What the checking clients of a `@concurrency` scenario found, and how many of their
    /// commands failed outright.
    pub(super) mix: Option<super::MixRun>,
}

/// Where the harness makes its mailboxes: the personal namespace (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PersonalNamespace {
    /// The prefix, decoded from modified UTF-7, such as `""` or `"INBOX."`.
    prefix: String,
    /// The hierarchy delimiter; `None` for a flat namespace (NIL).
    delimiter: Option<char>,
}

/// What an IDLE client had been told of the selected mailbox.
#[derive(Debug)]
struct IdleWatch {
    /// The EXISTS count of the SELECT before IDLE.
    selected_exists: u32,
    /// Every untagged response since, in order.
    heard: Vec<Response>,
}

impl ImapState {
    /// Drops the connections (the scenario is over).
    pub(super) fn end_scenario(&mut self) {
        self.clients = [None, None];
    }

    /// Transcripts of the open connections.
    pub(super) fn transcripts(&self) -> Vec<String> {
        self.clients
            .iter()
            .flatten()
            .map(|c| c.transcript().to_string())
            .collect()
    }
}

fn name(index: usize) -> &'static str {
    if index == 0 {
        "the IMAP client"
    } else {
        "the second IMAP client"
    }
}

/// The IMAP service to use when a step does not name one: implicit TLS when offered.
fn imap_service(target: &Target) -> anyhow::Result<&'static str> {
    ["imaps", "imap"]
        .into_iter()
        .find(|service| target.addr(service).is_ok())
        .context("the target offers no IMAP port (imap or imaps)")
}

/// Connects to an IMAP port and reads the greeting.
async fn open(target: &Target, service: &str) -> anyhow::Result<(ImapClient, Status)> {
    let addr = target.addr(service)?;
    let mut client = if Target::is_implicit_tls(service) {
        ImapClient::connect_tls(&addr, &target.tls, target.timeout).await
    } else {
        ImapClient::connect(&addr, target.timeout).await
    }
    .with_context(|| format!("connecting to the {service} port at {addr}"))?;
    let greeting = client
        .greeting()
        .await
        .with_context(|| format!("reading the {service} greeting"))?;
    Ok((client, greeting))
}

/// A connection over TLS (implicit, or STARTTLS on 143), ready for LOGIN.
async fn ready(target: &Target) -> anyhow::Result<ImapClient> {
    let service = imap_service(target)?;
    let (mut client, greeting) = open(target, service).await?;
    ensure!(
        greeting.is_ok(),
        "the {service} greeting was not OK: {greeting}"
    );
    if !client.is_tls() {
        let result = client.starttls(&target.tls).await?;
        ensure!(result.is_ok(), "STARTTLS was refused: {}", result.tagged);
    }
    Ok(client)
}

/// A logged-in connection.
async fn logged_in(target: &Target, account: &str, password: &str) -> anyhow::Result<ImapClient> {
    let mut client = ready(target).await?;
    let result = client.login(account, password).await?;
    ensure!(
        result.is_ok(),
        "LOGIN as {account} was refused: {}",
        result.tagged
    );
    Ok(client)
}

/// A command line as parts: quoted strings holding non-ASCII characters become synchronising
/// literals, which IMAP4rev1 needs for 8-bit text (RFC 3501 4.3); the rest goes as written.
fn command_parts(line: &str) -> Vec<Part<'static>> {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '"' {
            text.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        // A quoted string: find its end, honouring backslash escapes.
        let mut end = None;
        let mut escaped = false;
        for (at, c) in chars.by_ref() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(at);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            text.extend_from_slice(&line.as_bytes()[start..]);
            break;
        };
        let inner = &line[start + 1..end];
        if inner.is_ascii() {
            text.extend_from_slice(&line.as_bytes()[start..=end]);
        } else {
            parts.push(Part::Text(Cow::Owned(std::mem::take(&mut text))));
            let unescaped = inner.replace("\\\"", "\"").replace("\\\\", "\\");
            parts.push(Part::Literal(Cow::Owned(unescaped.into_bytes())));
        }
    }
    parts.push(Part::Text(Cow::Owned(text)));
    parts
}

/// What one client was told of the selected mailbox's flags (RFC 3501 7.2.6: a keyword is
/// announced in FLAGS before a FETCH uses it).
#[derive(Default)]
struct KeywordWatch {
    /// The flags of the last FLAGS response since the mailbox was selected, in lower case.
    announced: std::collections::BTreeSet<String>,
    /// `* n FETCH` responses that used a keyword not announced before them.
    unannounced: Vec<String>,
}

impl KeywordWatch {
    /// Follows a command's untagged responses in order; `selecting` starts afresh (SELECT or
    /// EXAMINE lists the flags anew).
    fn follow(&mut self, result: &CommandResult, selecting: bool) {
        if selecting {
            self.announced.clear();
        }
        for response in &result.untagged {
            match response {
                Response::Flags(flags) => {
                    self.announced = flags.iter().map(|f| f.to_ascii_lowercase()).collect();
                }
                Response::Fetch(fetch) => {
                    for flag in fetch.flags().unwrap_or_default() {
                        let lower = flag.to_ascii_lowercase();
                        if !flag.starts_with('\\') && !self.announced.contains(&lower) {
                            self.unannounced.push(format!(
                                "`* {} FETCH` showed the keyword {flag}, which no FLAGS response \
                                 had listed",
                                fetch.seq
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl MailWorld {
    fn imap(&mut self, index: usize) -> anyhow::Result<&mut ImapClient> {
        self.imap.clients[index]
            .as_mut()
            .ok_or_else(|| anyhow!("no connection for {}: connect first", name(index)))
    }

    /// Replaces a client, keeping the old one's transcript for the report.
    fn set_imap(&mut self, index: usize, client: ImapClient) {
        if let Some(old) = self.imap.clients[index].replace(client) {
            self.other_transcripts.push(old.transcript().to_string());
        }
        self.imap.results[index] = None;
    }

    fn imap_result(&self, index: usize) -> anyhow::Result<&CommandResult> {
        self.imap.results[index]
            .as_ref()
            .ok_or_else(|| anyhow!("{} has no command result yet", name(index)))
    }

    /// Expands `{box}` (with the path after it, see [`expand_box`]; `quoted` for a command
    /// line), `{modseq}` and `{first-password}`, then the common placeholders.
    fn expand_imap(&self, text: &str, quoted: bool) -> anyhow::Result<String> {
        let mut text = text.to_owned();
        if text.contains("{box}") {
            let mailbox = self
                .imap
                .mailbox
                .clone()
                .context("{box} needs a step that makes the scenario's own mailbox first")?;
            let delimiter = self.imap.namespace.as_ref().and_then(|n| n.delimiter);
            text = expand_box(&text, &mailbox, delimiter, quoted)?;
        }
        if text.contains("{modseq}") {
            let modseq = self
                .imap
                .modseq
                .context("{modseq} needs \"the IMAP client remembers the HIGHESTMODSEQ\" first")?;
            text = text.replace("{modseq}", &modseq.to_string());
        }
        if text.contains("{first-password}") {
            text = text.replace("{first-password}", &self.account(0)?.1);
        }
        self.expand(&text)
    }

    /// The mailbox this scenario made.
    fn own_mailbox(&self) -> anyhow::Result<String> {
        self.imap.mailbox.clone().context(
            "the scenario has no mailbox of its own: add \"the IMAP client uses a new mailbox\"",
        )
    }

    async fn run(&mut self, index: usize, line: &str) -> anyhow::Result<()> {
        let client = self.imap(index)?;
        let parts = command_parts(line);
        let result = if let [Part::Text(text)] = &parts[..] {
            client.command(&String::from_utf8_lossy(text)).await
        } else {
            client.command_with_literals(&parts).await
        }
        .with_context(|| format!("{} sending `{line}`", name(index)))?;
        let verb = line.split(' ').next().unwrap_or_default();
        let selecting = ["SELECT", "EXAMINE"]
            .iter()
            .any(|v| v.eq_ignore_ascii_case(verb));
        self.imap.keywords[index].follow(&result, selecting);
        self.imap.results[index] = Some(result);
        Ok(())
    }

    /// Deletes the mailboxes the scenario made, deepest first. Best effort: a failure is logged,
    /// not a scenario failure.
    pub(super) async fn imap_cleanup(&mut self) {
        let created = std::mem::take(&mut self.imap.created);
        let delimiter = self.imap.namespace.as_ref().and_then(|n| n.delimiter);
        let Ok(target) = self.target() else { return };
        for (account, mailbox) in created {
            let Ok(password) = self.password_of(&account) else {
                continue;
            };
            let cleanup = async {
                let mut client = logged_in(&target, &account, &password).await?;
                let mut names: Vec<String> = Vec::new();
                if let Some(delimiter) = delimiter {
                    let listed = client.list("", &format!("{mailbox}{delimiter}*")).await?;
                    names = listed
                        .lists()
                        .iter()
                        .filter_map(|item| item.decoded_name().ok())
                        .collect();
                    names.sort_by_key(|n| std::cmp::Reverse(n.matches(delimiter).count()));
                }
                names.push(mailbox.clone());
                for name in names {
                    client.delete(&name).await?;
                }
                let _ = client.logout().await;
                anyhow::Ok(())
            };
            if let Err(error) = cleanup.await {
                tracing::warn!("could not delete the scenario's mailbox {mailbox}: {error:#}");
            }
        }
    }
}

// ---- connecting and logging in ----

#[given(regex = r"^an IMAP client connected to the (imap|imaps) port$")]
async fn connected(world: &mut MailWorld, service: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let (client, greeting) = open(&target, &service).await?;
    world.set_imap(0, client);
    world.imap.greeting = Some(greeting);
    Ok(())
}

#[given("an IMAP client ready to log in")]
async fn ready_to_log_in(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let client = ready(&target).await?;
    world.set_imap(0, client);
    Ok(())
}

#[given(regex = r"^an? (second )?IMAP client logged in as (\{\w+\})$")]
async fn client_logged_in(
    world: &mut MailWorld,
    second: String,
    who: String,
) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let account = world.expand(&who)?;
    let password = world.password_of(&account)?;
    let target = world.target()?;
    let client = logged_in(&target, &account, &password).await?;
    world.set_imap(index, client);
    Ok(())
}

#[when(regex = r"^the IMAP client logs in as (\{\w+\})( with a wrong password)?$")]
async fn logs_in(world: &mut MailWorld, who: String, wrong: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let mut password = world.password_of(&account)?;
    if !wrong.is_empty() {
        password.push_str("-wrong");
    }
    let result = world.imap(0)?.login(&account, &password).await?;
    world.imap.results[0] = Some(result);
    Ok(())
}

#[when(regex = r"^the IMAP client logs out and logs in again as (\{\w+\})$")]
async fn logs_in_again(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let result = world.imap(0)?.logout().await?;
    ensure!(result.is_ok(), "LOGOUT was answered {}", result.tagged);
    let account = world.expand(&who)?;
    let password = world.password_of(&account)?;
    let target = world.target()?;
    let client = logged_in(&target, &account, &password).await?;
    world.set_imap(0, client);
    Ok(())
}

#[when("the IMAP client starts TLS")]
async fn starts_tls(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let result = world.imap(0)?.starttls(&target.tls).await?;
    ensure!(result.is_ok(), "STARTTLS was refused: {}", result.tagged);
    world.imap.results[0] = Some(result);
    Ok(())
}

#[when(regex = r#"^the IMAP client starts TLS with "(.*)" injected$"#)]
async fn starts_tls_injected(world: &mut MailWorld, injected: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let bytes = format!("{injected}\r\n");
    let result = match world
        .imap(0)?
        .starttls_with_injected(&target.tls, bytes.as_bytes())
        .await
    {
        Ok(result) => result,
        // After its OK the server took the injected bytes for the start of the handshake (or
        // refused to go on with them buffered) and ended it: nothing ran inside TLS, which is
        // what RFC 3501 6.2.1 and RFC 2595 3.1 protect. Dovecot does this.
        Err(error) if error.is_handshake_ended_by_server() => {
            // Not the error itself in the note: EOF or reset depends on timing, and the note
            // should read the same from run to run (the transcript has the rest).
            world.note(
                "IMAP STARTTLS with a command pipelined behind it: the server answered OK, then \
                 ended the TLS handshake rather than run the command",
            );
            world.imap.injection_ended_handshake = true;
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    ensure!(result.is_ok(), "STARTTLS was refused: {}", result.tagged);
    world.imap.results[0] = Some(result);
    Ok(())
}

#[then("the IMAP client receives nothing it did not ask for")]
async fn nothing_unasked(world: &mut MailWorld) -> anyhow::Result<()> {
    if world.imap.injection_ended_handshake {
        return Ok(());
    }
    match world.imap(0)?.noop().await {
        Ok(result) => {
            ensure!(
                !result
                    .untagged
                    .iter()
                    .any(|r| matches!(r, Response::Capability(_))),
                "a command sent with STARTTLS, before the handshake, was executed inside TLS: \
                 its CAPABILITY response came back"
            );
            ensure!(
                result.is_ok(),
                "NOOP after STARTTLS was answered {}",
                result.tagged
            );
            Ok(())
        }
        Err(ClientError::MalformedReply { reason, .. }) => bail!(
            "after STARTTLS the server answered a command the client never sent inside TLS \
             (the one injected before the handshake): {reason}"
        ),
        Err(error) => Err(error.into()),
    }
}

#[then(regex = r"^the (imaps) port sends no plain-text greeting$")]
async fn no_plain_greeting_step(world: &mut MailWorld, service: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let addr = target.addr(&service)?;
    let mut client = ImapClient::connect(&addr, Duration::from_secs(2)).await?;
    let read = client.greeting().await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    super::no_plain_greeting(read.map(|status| format!("* {status}")))
}

// ---- commands ----

#[when(regex = r#"^the (second )?IMAP client sends "(.*)"$"#)]
async fn sends(world: &mut MailWorld, second: String, line: String) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let mut line = line;
    // `{uid of message N}`: the UID the server gave message N of the selected mailbox.
    while let Some(start) = line.find("{uid of message ") {
        let end = line[start..]
            .find('}')
            .map(|e| start + e)
            .context("unclosed {uid of message N}")?;
        let seq: u32 = line[start + "{uid of message ".len()..end]
            .parse()
            .context("{uid of message N} needs a message number")?;
        let (result, uids) = fetch_uids(world.imap(index)?, &seq.to_string()).await?;
        let uid = uids
            .into_iter()
            .find_map(|(n, uid)| (n == seq).then_some(uid))
            .with_context(|| format!("FETCH {seq} (UID) gave no UID: {}", result.tagged))?;
        line.replace_range(start..=end, &uid.to_string());
    }
    let line = world.expand_imap(&line, true)?;
    world.run(index, &line).await
}

#[when(regex = r"^the (second )?IMAP client selects the new mailbox$")]
async fn selects(world: &mut MailWorld, second: String) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let mailbox = world.own_mailbox()?;
    let selected = world.imap(index)?.select(&mailbox).await?;
    ensure!(
        selected.result.is_ok(),
        "SELECT {mailbox} was answered {}",
        selected.result.tagged
    );
    world.imap.keywords[index].follow(&selected.result, true);
    world.imap.results[index] = Some(selected.result);
    Ok(())
}

#[given("the IMAP client uses a new mailbox")]
async fn new_mailbox(world: &mut MailWorld) -> anyhow::Result<()> {
    let namespace = match world.imap.namespace.clone() {
        Some(namespace) => namespace,
        None => personal_namespace(world.imap(0)?).await?,
    };
    let mailbox = scenario_mailbox(&namespace, &unique_token());
    world.imap.namespace = Some(namespace);
    let result = world.imap(0)?.create(&mailbox).await?;
    ensure!(
        result.is_ok(),
        "CREATE {mailbox} was answered {}",
        result.tagged
    );
    let account = world.account(0)?.0;
    world.imap.created.push((account, mailbox.clone()));
    world.imap.mailbox = Some(mailbox);
    Ok(())
}

/// The personal namespace: its prefix from NAMESPACE where CAPABILITY lists it (RFC 2342), else
/// none, which is where a server without NAMESPACE puts a client's new mailboxes. The delimiter
/// comes from `LIST prefix ""` (RFC 3501 6.3.8), the one the server goes by when it makes and
/// lists names; NAMESPACE's own is for the NAMESPACE scenario to compare.
async fn personal_namespace(client: &mut ImapClient) -> anyhow::Result<PersonalNamespace> {
    let capability = client.capability().await?;
    ensure!(
        capability.is_ok(),
        "CAPABILITY was answered {}",
        capability.tagged
    );
    let mut prefix = String::new();
    if client.has_capability("NAMESPACE") {
        let answer = client.namespace().await?;
        ensure!(
            answer.is_ok(),
            "NAMESPACE, which CAPABILITY lists, was answered {}",
            answer.tagged
        );
        // NIL (no namespace of one's own) leaves the empty prefix.
        if let Some(personal) = answer.namespaces().and_then(|n| n.personal.first()) {
            prefix = decode_modified_utf7(&personal.prefix)?;
        }
    }
    let listed = client.list(&prefix, "").await?;
    ensure!(
        listed.is_ok(),
        "LIST {prefix:?} \"\" was answered {}",
        listed.tagged
    );
    let delimiter = listed
        .lists()
        .first()
        .with_context(|| {
            format!("LIST {prefix:?} \"\" gave no hierarchy delimiter (RFC 3501 6.3.8)")
        })?
        .delimiter;
    Ok(PersonalNamespace { prefix, delimiter })
}

/// A new mailbox name for a scenario in `namespace`, made from `token`: each character but
/// letters and digits becomes a dash (an underscore where the dash is the delimiter), so the
/// name holds no delimiter by accident and needs no quoting.
fn scenario_mailbox(namespace: &PersonalNamespace, token: &str) -> String {
    let filler = if namespace.delimiter == Some('-') {
        '_'
    } else {
        '-'
    };
    let token: String = token
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { filler })
        .collect();
    format!("{}harness{filler}{token}", namespace.prefix)
}

/// Replaces each `{box}` in `text`, with the path that may follow it (`{box}/a/b`, up to a
/// space, comma, parenthesis or quote), by a name in the server's hierarchy: `mailbox`, then
/// each step joined with `delimiter`. `quoted` gives each name as a command argument, a quoted
/// string in modified UTF-7 (RFC 3501 5.1.3); otherwise names are as LIST decodes them.
fn expand_box(
    text: &str,
    mailbox: &str,
    delimiter: Option<char>,
    quoted: bool,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len() + mailbox.len());
    let mut rest = text;
    while let Some(at) = rest.find("{box}") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "{box}".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '"'))
            .unwrap_or(rest.len());
        let (path, after) = rest.split_at(end);
        let mut name = mailbox.to_owned();
        if !path.is_empty() {
            let steps = path
                .strip_prefix('/')
                .with_context(|| format!("{{box}} may be followed by /name, not by {path:?}"))?;
            let delimiter = delimiter.context(
                "the personal namespace has no hierarchy delimiter (NIL), so it has no {box}/...",
            )?;
            for step in steps.split('/') {
                name.push(delimiter);
                name.push_str(step);
            }
        }
        if quoted {
            let argument = quote(encode_modified_utf7(&name).as_bytes())
                .with_context(|| format!("the mailbox name {name:?} cannot be quoted"))?;
            out.push_str(&argument);
        } else {
            out.push_str(&name);
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// APPENDs a message to the scenario's mailbox (or another) and checks it went in.
async fn append(
    world: &mut MailWorld,
    mailbox: &str,
    message: &[u8],
    must_succeed: bool,
) -> anyhow::Result<()> {
    let result = world
        .imap(0)?
        .append(mailbox, &[], None, message, false)
        .await?;
    if must_succeed {
        ensure!(
            result.is_ok(),
            "APPEND to {mailbox} was answered {}",
            result.tagged
        );
    }
    world.imap.results[0] = Some(result);
    Ok(())
}

fn test_message(subject: &str, body: &str) -> Vec<u8> {
    test_message_with_id(subject, body).0
}

/// A test message and its Message-ID, `<unique@harness.test>`.
fn test_message_with_id(subject: &str, body: &str) -> (Vec<u8>, String) {
    let message_id = format!("<{}@harness.test>", unique_token());
    let message = format!(
        "From: Harness <conformance@harness.test>\r\nTo: someone@harness.test\r\n\
         Subject: {subject}\r\nMessage-ID: {message_id}\r\n\
         Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n{body}\r\n"
    );
    (message.into_bytes(), message_id)
}

#[given(regex = r"^the new mailbox has (\d+) messages?$")]
async fn has_messages(world: &mut MailWorld, count: usize) -> anyhow::Result<()> {
    let mailbox = world.own_mailbox()?;
    for n in 1..=count {
        let message = test_message(&format!("Test message {n} of {count}"), "Hello.");
        append(world, &mailbox, &message, true).await?;
    }
    Ok(())
}

#[when(regex = r"^the IMAP client appends a test message to (\S+)$")]
async fn appends_test_message(world: &mut MailWorld, mailbox: String) -> anyhow::Result<()> {
    let mailbox = world.expand_imap(&mailbox, false)?;
    let message = test_message("Appended test message", "Hello again.");
    append(world, &mailbox, &message, false).await
}

#[given(regex = r"^the new mailbox has a message with the body:$")]
async fn has_message_with_body(world: &mut MailWorld, step: &Step) -> anyhow::Result<()> {
    let mailbox = world.own_mailbox()?;
    let body = docstring_to_crlf(
        step.docstring
            .as_deref()
            .context("this step needs a \"\"\" docstring")?,
    );
    append(world, &mailbox, &body, true).await
}

/// The three messages the SEARCH outline looks for.
fn search_messages() -> [Vec<u8>; 3] {
    let id = || unique_token();
    [
        format!(
            "From: Alice Example <alice@example.test>\r\nTo: team@example.test\r\n\
             Subject: Quarterly report Q3\r\nMessage-ID: <{}@harness.test>\r\n\
             Date: Mon, 30 Nov 2026 09:00:00 +0000\r\n\r\nNumbers attached.\r\n",
            id()
        )
        .into_bytes(),
        format!(
            "From: bob@example.test\r\nTo: team@example.test\r\nSubject: Lunch on Friday\r\n\
             Message-ID: <{}@harness.test>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n\
             Invoice for the lunch is attached.\r\n",
            id()
        )
        .into_bytes(),
        format!(
            "From: carol@example.test\r\nTo: team@example.test\r\n\
             Subject: Re: quarterly report\r\nX-Priority: 1\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\nMessage-ID: <{}@harness.test>\r\n\
             Date: Mon, 30 Nov 2026 11:00:00 +0000\r\n\r\nMeeting in Z=C3=BCrich.\r\n",
            id()
        )
        .into_bytes(),
    ]
}

#[given("the new mailbox has the search test messages")]
async fn has_search_messages(world: &mut MailWorld) -> anyhow::Result<()> {
    let mailbox = world.own_mailbox()?;
    for message in search_messages() {
        append(world, &mailbox, &message, true).await?;
    }
    Ok(())
}

/// A multipart/mixed message: a quoted-printable UTF-8 text part and a base64 PDF attachment,
/// with an RFC 2047 encoded subject.
const MULTIPART: &str = "From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.test>\r\n\
To: Team <team@example.test>\r\n\
Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9_attached?=\r\n\
Date: Mon, 30 Nov 2026 12:00:00 +0100\r\n\
Message-ID: <multipart.test@harness.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
This is a multipart message.\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Voil=C3=A0 my r=C3=A9sum=C3=A9.\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"resume.pdf\"\r\n\
Content-Disposition: attachment; filename=\"resume.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n\
--b1--\r\n";

#[given("the new mailbox has the multipart test message")]
async fn has_multipart(world: &mut MailWorld) -> anyhow::Result<()> {
    let mailbox = world.own_mailbox()?;
    append(world, &mailbox, MULTIPART.as_bytes(), true).await
}

#[when(regex = r"^the IMAP client appends the round-trip test message to \{box\}$")]
async fn appends_round_trip(world: &mut MailWorld) -> anyhow::Result<()> {
    let mailbox = world.own_mailbox()?;
    let account = world.account(0)?.0;
    let message = super::pop3::round_trip_message(&unique_token(), &account);
    let result = world
        .imap(0)?
        .append(&mailbox, &[], None, &message, false)
        .await?;
    world.imap.results[0] = Some(result);
    world.message = Some(super::SentMessage {
        token: String::new(),
        exact: Some(message),
    });
    Ok(())
}

#[then("FETCH of message 1 returns the round-trip test message with its exact size")]
async fn fetch_round_trip(world: &mut MailWorld) -> anyhow::Result<()> {
    let sent = world
        .message
        .as_ref()
        .and_then(|m| m.exact.clone())
        .context("no round-trip message was appended")?;
    let client = world.imap(0)?;
    client.set_max_literal(64 * 1024 * 1024);
    let result = client.fetch("1", "(RFC822.SIZE BODY.PEEK[])").await?;
    ensure!(result.is_ok(), "FETCH was answered {}", result.tagged);
    let fetch = result
        .fetches()
        .into_iter()
        .find(|f| f.seq == 1)
        .context("FETCH 1 returned no data for message 1")?;
    let body = fetch.body("").context("the FETCH response has no BODY[]")?;
    ensure!(
        body == sent.as_slice(),
        "BODY[] differs from the appended octets: {} octets back, {} sent{}",
        body.len(),
        sent.len(),
        body.iter()
            .zip(&sent)
            .position(|(a, b)| a != b)
            .map(|at| format!(", first difference at octet {at}"))
            .unwrap_or_default()
    );
    let size = fetch.rfc822_size().context("no RFC822.SIZE")?;
    ensure!(
        size == sent.len() as u64,
        "RFC822.SIZE is {size}, but the message has {} octets",
        sent.len()
    );
    Ok(())
}

#[when(regex = r"^the IMAP client announces a literal of (\d+) octets in APPEND to (\S+)$")]
async fn announces_literal(
    world: &mut MailWorld,
    size: u64,
    mailbox: String,
) -> anyhow::Result<()> {
    let mailbox = world.expand_imap(&mailbox, true)?;
    let client = world.imap(0)?;
    let tag = client.next_tag();
    client
        .send_raw(format!("{tag} APPEND {mailbox} {{{size}}}\r\n").as_bytes())
        .await?;
    // The server must answer with the tagged refusal, not invite the octets (RFC 3501 7.5:
    // a server that will not accept the literal sends the tagged response instead of "+").
    let answer = client.read_incoming().await;
    match answer {
        Ok(Incoming::Tagged(tagged)) if tagged.tag == tag => {
            world.imap.results[0] = Some(CommandResult {
                tag,
                tagged: tagged.status,
                untagged: Vec::new(),
            });
            Ok(())
        }
        Ok(Incoming::Continuation(_)) => bail!(
            "the server invited a literal of {size} octets with a continuation instead of \
             refusing it"
        ),
        Ok(other) => bail!("expected the tagged answer to the APPEND, got {other:?}"),
        Err(error) => Err(error.into()),
    }
}

#[when(
    regex = r"^the IMAP client authenticates as (\{\w+\}) with AUTHENTICATE PLAIN and an initial response$"
)]
async fn authenticates_sasl_ir(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    use base64::Engine as _;
    let account = world.expand(&who)?;
    let password = world.password_of(&account)?;
    let response =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{account}\0{password}"));
    let result = world
        .imap(0)?
        .command(&format!("AUTHENTICATE PLAIN {response}"))
        .await
        .map_err(|error| {
            anyhow!(
                "AUTHENTICATE PLAIN with the credentials as an initial response (SASL-IR, RFC \
                 4959) did not complete: {error}"
            )
        })?;
    world.imap.results[0] = Some(result);
    Ok(())
}

#[when(
    regex = r"^the IMAP client authenticates as (\{\w+\}) with AUTHENTICATE PLAIN and a wrong password$"
)]
async fn authenticates_wrong(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let password = format!("{}-wrong", world.password_of(&account)?);
    let result = world
        .imap(0)?
        .authenticate_plain(&account, &password, false)
        .await?;
    world.imap.results[0] = Some(result);
    Ok(())
}

#[when(
    regex = r"^the IMAP client appends a test message to (\S+) with a non-synchronising literal$"
)]
async fn appends_literal_plus(world: &mut MailWorld, mailbox: String) -> anyhow::Result<()> {
    let mailbox = world.expand_imap(&mailbox, false)?;
    let message = test_message("Appended with LITERAL+", "Hello.");
    let result = world
        .imap(0)?
        .append(&mailbox, &[], None, &message, true)
        .await
        .map_err(|error| {
            anyhow!("APPEND with a non-synchronising literal (LITERAL+) failed: {error}")
        })?;
    world.imap.results[0] = Some(result);
    Ok(())
}

#[when(
    regex = r#"^the IMAP client appends a test message to (\S+) with the flag (\S+) and the date "(.*)"$"#
)]
async fn appends_with_date(
    world: &mut MailWorld,
    mailbox: String,
    flag: String,
    date: String,
) -> anyhow::Result<()> {
    let mailbox = world.expand_imap(&mailbox, false)?;
    let message = test_message("Appended with a date", "Hello.");
    append_with(world, &mailbox, &[flag.as_str()], Some(&date), &message).await
}

async fn append_with(
    world: &mut MailWorld,
    mailbox: &str,
    flags: &[&str],
    date: Option<&str>,
    message: &[u8],
) -> anyhow::Result<()> {
    let result = world
        .imap(0)?
        .append(mailbox, flags, date, message, false)
        .await?;
    ensure!(
        result.is_ok(),
        "APPEND to {mailbox} was answered {}",
        result.tagged
    );
    world.imap.results[0] = Some(result);
    Ok(())
}

/// Seconds since the epoch of an IMAP date-time, `dd-Mon-yyyy hh:mm:ss +zzzz` (RFC 3501 9).
fn imap_instant(text: &str) -> anyhow::Result<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let bad = || anyhow!("{text:?} is not an IMAP date-time");
    let (date, rest) = text.trim().split_once(' ').ok_or_else(bad)?;
    let (time, zone) = rest.split_once(' ').ok_or_else(bad)?;
    let mut date = date.split('-');
    let day: i64 = date.next().ok_or_else(bad)?.trim().parse()?;
    let month = date.next().ok_or_else(bad)?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| *m == month).ok_or_else(bad)? as i64 + 1;
    let year: i64 = date.next().ok_or_else(bad)?.parse()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        hms.len() == 3 && zone.len() == 5,
        "{text:?} is not an IMAP date-time"
    );
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let offset: i64 = zone[1..3].parse::<i64>()? * 3600 + zone[3..5].parse::<i64>()? * 60;
    // Days from the civil date (H. Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - sign * offset)
}

#[then(regex = r#"^message (\d+) has the INTERNALDATE "(.*)"$"#)]
async fn has_internal_date(world: &mut MailWorld, seq: u32, wanted: String) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let got = result
        .fetches()
        .into_iter()
        .filter(|f| f.seq == seq)
        .find_map(|f| f.internal_date().map(str::to_owned))
        .with_context(|| format!("no INTERNALDATE for message {seq} in the last response"))?;
    ensure!(
        imap_instant(&got)? == imap_instant(&wanted)?,
        "message {seq} has the INTERNALDATE {got:?}, not the moment {wanted:?} that APPEND gave"
    );
    Ok(())
}

#[then(regex = r#"^FETCH gives (BODY\[[^\]]*\](?:<\d+>)?) as "(.*)"$"#)]
async fn fetch_gives(world: &mut MailWorld, item: String, wanted: String) -> anyhow::Result<()> {
    let wanted = super::unescape(&wanted)?;
    let result = world.imap_result(0)?;
    ensure!(result.is_ok(), "FETCH was answered {}", result.tagged);
    let got = result
        .fetches()
        .into_iter()
        .find_map(|f| f.get(&item).and_then(Value::as_bytes).map(<[u8]>::to_vec))
        .with_context(|| format!("the FETCH response has no {item}"))?;
    ensure!(
        got == wanted,
        "{item} is {:?}, expected {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&wanted)
    );
    Ok(())
}

// ---- checks ----

#[then(regex = r"^the (second )?IMAP response is (OK|NO|BAD|NO or BAD)$")]
async fn response_is(world: &mut MailWorld, second: String, status: String) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let result = world.imap_result(index)?;
    let got = result.tagged.to_string();
    let word = got.split(' ').next().unwrap_or_default();
    ensure!(
        status.split(" or ").any(|wanted| wanted == word),
        "expected {status}, got `{} {got}`",
        result.tag
    );
    Ok(())
}

#[then(regex = r"^the IMAP response has the code (\S+)$")]
async fn response_code(world: &mut MailWorld, code: String) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    ensure!(
        result.codes().any(|c| c.name().eq_ignore_ascii_case(&code)),
        "no [{code}] response code in `{} {}`",
        result.tag,
        result.tagged
    );
    Ok(())
}

/// The capabilities the client knows of now: from the last result, else the greeting.
fn known_capabilities(world: &mut MailWorld) -> anyhow::Result<Vec<String>> {
    if let Some(caps) = world.imap.results[0]
        .as_ref()
        .and_then(CommandResult::capabilities)
    {
        return Ok(caps.to_vec());
    }
    if let Some(caps) = world.imap.greeting.as_ref().and_then(Status::capabilities) {
        return Ok(caps.to_vec());
    }
    Ok(world.imap(0)?.capabilities().to_vec())
}

#[then(regex = r"^the IMAP server (advertises|does not advertise) (\S+)$")]
async fn advertises(world: &mut MailWorld, verb: String, capability: String) -> anyhow::Result<()> {
    let caps = known_capabilities(world)?;
    let has = caps.iter().any(|c| c.eq_ignore_ascii_case(&capability));
    let wanted = verb == "advertises";
    ensure!(
        has == wanted,
        "{capability} is {} the capabilities: {}",
        if has { "among" } else { "not among" },
        caps.join(" ")
    );
    Ok(())
}

#[then(regex = r"^LIST shows a mailbox with the attribute (\S+)$")]
async fn list_attribute(world: &mut MailWorld, attribute: String) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let lists = result.lists();
    ensure!(
        lists.iter().any(|item| item.has_attribute(&attribute)),
        "no mailbox in LIST has {attribute}: {}",
        lists
            .iter()
            .map(|i| format!("{} ({})", i.name, i.attributes.join(" ")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn listed_names(result: &CommandResult) -> anyhow::Result<Vec<String>> {
    result
        .lists()
        .iter()
        .map(|item| item.decoded_name().map_err(anyhow::Error::from))
        .collect()
}

#[then(regex = r"^LIST shows exactly (.+)$")]
async fn list_exactly(world: &mut MailWorld, names: String) -> anyhow::Result<()> {
    let names = world.expand_imap(&names, false)?;
    let mut wanted: Vec<&str> = names.split(", ").collect();
    wanted.sort_unstable();
    let mut got = listed_names(world.imap_result(0)?)?;
    got.sort();
    ensure!(got == wanted, "LIST showed {got:?}, expected {wanted:?}");
    Ok(())
}

#[then(regex = r"^LSUB shows (?:exactly (.+)|nothing)$")]
async fn lsub_exactly(world: &mut MailWorld, names: String) -> anyhow::Result<()> {
    let names = world.expand_imap(&names, false)?;
    let mut wanted: Vec<&str> = names.split(", ").filter(|n| !n.is_empty()).collect();
    wanted.sort_unstable();
    let result = world.imap_result(0)?;
    ensure!(result.is_ok(), "LSUB was answered {}", result.tagged);
    let mut got = result
        .lsubs()
        .iter()
        .map(|item| item.decoded_name())
        .collect::<Result<Vec<_>, _>>()?;
    got.sort();
    ensure!(got == wanted, "LSUB showed {got:?}, expected {wanted:?}");
    Ok(())
}

#[then("NAMESPACE has a personal namespace with the delimiter LIST reports")]
async fn namespace_delimiter(world: &mut MailWorld) -> anyhow::Result<()> {
    let personal = world
        .imap_result(0)?
        .namespaces()
        .and_then(|n| n.personal.first().cloned())
        .context("the NAMESPACE response names no personal namespace")?;
    // The delimiter of the namespace's own level (RFC 3501 6.3.8: an empty name asks for the
    // reference's).
    let prefix = decode_modified_utf7(&personal.prefix)?;
    let list = world.imap(0)?.list(&prefix, "").await?;
    let delimiter = list
        .lists()
        .first()
        .map(|item| item.delimiter)
        .with_context(|| format!("LIST {prefix:?} \"\" gave no hierarchy delimiter"))?;
    ensure!(
        personal.delimiter == delimiter,
        "NAMESPACE says the delimiter of {prefix:?} is {:?}, LIST says {:?}",
        personal.delimiter,
        delimiter
    );
    Ok(())
}

#[then(regex = r"^LIST shows (\S+) (with|without) the attribute (\S+)$")]
async fn list_item_attribute(
    world: &mut MailWorld,
    mailbox: String,
    with: String,
    attribute: String,
) -> anyhow::Result<()> {
    let mailbox = world.expand_imap(&mailbox, false)?;
    let result = world.imap_result(0)?;
    let item = result
        .lists()
        .into_iter()
        .find(|i| i.decoded_name().is_ok_and(|n| n == mailbox))
        .with_context(|| format!("LIST did not show {mailbox}"))?;
    let wanted = with == "with";
    ensure!(
        item.has_attribute(&attribute) == wanted,
        "{mailbox} has the attributes ({}): {attribute} is {}",
        item.attributes.join(" "),
        if wanted { "missing" } else { "among them" }
    );
    Ok(())
}

#[then(regex = r"^STATUS says (\S+) (\d+)$")]
async fn status_says(world: &mut MailWorld, item: String, value: u64) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    ensure!(result.is_ok(), "STATUS was answered {}", result.tagged);
    let got = result
        .mailbox_status()
        .and_then(|s| s.get(&item))
        .with_context(|| format!("the STATUS response has no {item}"))?;
    ensure!(got == value, "STATUS says {item} {got}, expected {value}");
    Ok(())
}

/// The flags the client last saw for a message: the latest FETCH with FLAGS in the last result.
fn flags_of(result: &CommandResult, seq: u32) -> Option<Vec<String>> {
    result
        .fetches()
        .into_iter()
        .rev()
        .filter(|f| f.seq == seq)
        .find_map(|f| f.flags())
        .map(|flags| flags.into_iter().map(str::to_owned).collect())
}

#[then(regex = r"^message (\d+) (has|does not have) the flag (\S+)$")]
async fn message_flag(
    world: &mut MailWorld,
    seq: u32,
    verb: String,
    flag: String,
) -> anyhow::Result<()> {
    let flags = match world.imap_result(0).ok().and_then(|r| flags_of(r, seq)) {
        Some(flags) => flags,
        None => {
            let result = world.imap(0)?.fetch(&seq.to_string(), "(FLAGS)").await?;
            flags_of(&result, seq).with_context(|| format!("FETCH {seq} FLAGS gave no flags"))?
        }
    };
    let has = flags.iter().any(|f| f.eq_ignore_ascii_case(&flag));
    ensure!(
        has == (verb == "has"),
        "message {seq} has the flags ({}): {flag} is {}",
        flags.join(" "),
        if has { "set" } else { "not set" }
    );
    Ok(())
}

/// After STORE in a mailbox opened with EXAMINE. RFC 3501 6.3.2 forbids changing a read-only
/// mailbox, and 7.1 lets a server answer a STORE of flags outside PERMANENTFLAGS (empty for a
/// read-only mailbox) by ignoring it or keeping it for the session only: so NO, or OK with
/// nothing kept, as another session sees.
#[then("the STORE was refused with NO, or ignored as PERMANENTFLAGS () allows")]
async fn read_only_store(world: &mut MailWorld) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let tagged = result.tagged.clone();
    let tag = result.tag.clone();
    match tagged.kind {
        StatusKind::No => {
            world.note(format!(
                "STORE in a read-only mailbox: refused ({})",
                status_without_text(&tagged)
            ));
            return Ok(());
        }
        StatusKind::Ok => {}
        _ => bail!("expected NO, or OK without a lasting change; got `{tag} {tagged}`"),
    }
    let mailbox = world.own_mailbox()?;
    let (account, password) = world.account(0)?;
    let target = world.target()?;
    let mut client = logged_in(&target, &account, &password).await?;
    let checked = async {
        let examined = client.examine(&mailbox).await?.result;
        ensure!(examined.is_ok(), "EXAMINE was answered {}", examined.tagged);
        let fetched = client.fetch("1", "(FLAGS)").await?;
        let flags = flags_of(&fetched, 1).context("FETCH 1 FLAGS gave no flags")?;
        ensure!(
            !flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")),
            "the server answered OK to STORE in a read-only mailbox and kept the change: \
             another session sees the flags ({})",
            flags.join(" ")
        );
        let _ = client.logout().await;
        anyhow::Ok(())
    }
    .await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    checked?;
    world.note(format!(
        "STORE in a read-only mailbox: answered {} and ignored, which RFC 3501 7.1 allows for \
         flags outside PERMANENTFLAGS",
        status_without_text(&tagged)
    ));
    Ok(())
}

/// `NO [READ-ONLY]`: the condition and code without the human-readable text, which may carry
/// timings (Dovecot's "(0.001 + 0.000 secs)") and would make a note differ from run to run.
fn status_without_text(status: &Status) -> String {
    match &status.code {
        Some(code) => format!("{} [{code}]", status.kind.name()),
        None => status.kind.name().to_owned(),
    }
}

#[then(regex = r"^the second IMAP client was told message (\d+) has the flag (\S+)$")]
async fn told_flag(world: &mut MailWorld, seq: u32, flag: String) -> anyhow::Result<()> {
    let result = world.imap_result(1)?;
    let flags = flags_of(result, seq).with_context(|| {
        format!("the second client was not told of message {seq}'s flags at all")
    })?;
    ensure!(
        flags.iter().any(|f| f.eq_ignore_ascii_case(&flag)),
        "the second client was told message {seq} has ({})",
        flags.join(" ")
    );
    Ok(())
}

#[then(regex = r"^the (second )?IMAP client was told message (\d+) was expunged$")]
async fn told_expunge(world: &mut MailWorld, second: String, seq: u32) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let expunged = world.imap_result(index)?.expunged();
    ensure!(
        originally_expunged(&expunged).contains(&seq),
        "{} was told of the expunges {expunged:?}, which do not remove the message that was \
         number {seq} before them",
        name(index)
    );
    Ok(())
}

/// The message numbers, as they were before the first EXPUNGE response, that a series of
/// EXPUNGE responses removes: each response renumbers the messages after it (RFC 3501 7.4.1).
fn originally_expunged(expunged: &[u32]) -> Vec<u32> {
    let size = expunged.iter().max().copied().unwrap_or(0) as usize + expunged.len();
    let mut numbers: Vec<u32> = (1..=u32::try_from(size).unwrap_or(u32::MAX)).collect();
    let mut removed = Vec::new();
    for &n in expunged {
        if let Some(index) = (n as usize).checked_sub(1).filter(|&i| i < numbers.len()) {
            removed.push(numbers.remove(index));
        }
    }
    removed
}

#[then(regex = r"^the second IMAP client could still fetch message (\d+)$")]
async fn fetched_expunged(world: &mut MailWorld, seq: u32) -> anyhow::Result<()> {
    let result = world.imap_result(1)?;
    ensure!(
        result.is_ok(),
        "the FETCH of a message another session had expunged, before this session was told, was \
         answered `{} {}`. RFC 2180 4.1.3 and RFC 5530 allow that, but a client then cannot \
         show a message it still lists; RFC 2180 4.1.1 keeps it readable until the session is \
         sent its EXPUNGE",
        result.tag,
        result.tagged
    );
    ensure!(
        result.fetches().iter().any(|f| f.seq == seq),
        "the FETCH was answered OK without a `* {seq} FETCH` response for the message"
    );
    Ok(())
}

#[then(regex = r"^the (second )?IMAP client was shown no keyword before FLAGS listed it$")]
async fn keywords_announced(world: &mut MailWorld, second: String) -> anyhow::Result<()> {
    let index = usize::from(!second.is_empty());
    let unannounced = &world.imap.keywords[index].unannounced;
    ensure!(
        unannounced.is_empty(),
        "{}: {} (RFC 3501 7.2.6: the FLAGS response lists the flags defined in the mailbox, \
         and a new keyword is announced in one before it is used)",
        name(index),
        unannounced.join("; ")
    );
    Ok(())
}

#[then("the second IMAP client was not told of any expunge")]
async fn told_no_expunge(world: &mut MailWorld) -> anyhow::Result<()> {
    let expunged = world.imap_result(1)?.expunged();
    ensure!(
        expunged.is_empty(),
        "EXPUNGE {expunged:?} came during a FETCH by message number, which RFC 3501 7.4.1 forbids"
    );
    Ok(())
}

#[then(regex = r"^the second IMAP client was told the mailbox has (\d+) messages?$")]
async fn told_exists(world: &mut MailWorld, count: u32) -> anyhow::Result<()> {
    let exists = world.imap_result(1)?.exists();
    ensure!(
        exists == Some(count),
        "the second client was told EXISTS {exists:?}, expected {count}"
    );
    Ok(())
}

#[then(regex = r"^SEARCH finds messages (.+)$")]
async fn search_finds(world: &mut MailWorld, numbers: String) -> anyhow::Result<()> {
    let wanted: Vec<u32> = numbers
        .split(',')
        .map(|n| n.trim().parse().context("message numbers are digits"))
        .collect::<anyhow::Result<_>>()?;
    let result = world.imap_result(0)?;
    ensure!(result.is_ok(), "SEARCH was answered {}", result.tagged);
    let mut got = result
        .search()
        .context("no SEARCH response")?
        .numbers
        .clone();
    got.sort_unstable();
    ensure!(got == wanted, "SEARCH found {got:?}, expected {wanted:?}");
    Ok(())
}

#[when("the IMAP client remembers the HIGHESTMODSEQ")]
async fn remember_modseq(world: &mut MailWorld) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let modseq = result
        .codes()
        .find_map(|c| match c {
            crate::clients::imap::Code::HighestModseq(m) => Some(*m),
            _ => None,
        })
        .with_context(|| {
            format!(
                "the last command's responses carry no HIGHESTMODSEQ: {} {}",
                result.tag, result.tagged
            )
        })?;
    world.imap.modseq = Some(modseq);
    Ok(())
}

#[when("the IMAP client remembers the UIDs and UIDVALIDITY")]
async fn remember_uids(world: &mut MailWorld) -> anyhow::Result<()> {
    let (validity, uids) = current_uids(world).await?;
    world.imap.remembered = Some((validity, uids));
    Ok(())
}

/// UIDVALIDITY of the last SELECT and the UIDs by message number.
async fn current_uids(world: &mut MailWorld) -> anyhow::Result<(u32, Vec<u32>)> {
    let validity = world
        .imap_result(0)?
        .codes()
        .find_map(|c| match c {
            crate::clients::imap::Code::UidValidity(v) => Some(*v),
            _ => None,
        })
        .context("the last SELECT gave no UIDVALIDITY")?;
    let (result, uids) = fetch_uids(world.imap(0)?, "1:*").await?;
    ensure!(
        result.is_ok(),
        "FETCH 1:* UID was answered {}",
        result.tagged
    );
    Ok((validity, uids.into_iter().map(|(_, uid)| uid).collect()))
}

/// FETCH `set` (UID): the result and (message number, UID) pairs in message-number order.
async fn fetch_uids(
    client: &mut ImapClient,
    set: &str,
) -> anyhow::Result<(CommandResult, Vec<(u32, u32)>)> {
    let result = client.fetch(set, "(UID)").await?;
    let mut uids: Vec<(u32, u32)> = result
        .fetches()
        .iter()
        .filter_map(|f| Some((f.seq, f.uid()?)))
        .collect();
    uids.sort_unstable();
    Ok((result, uids))
}

#[then("UIDVALIDITY is as before")]
async fn uidvalidity_same(world: &mut MailWorld) -> anyhow::Result<()> {
    let (before, _) = world
        .imap
        .remembered
        .clone()
        .context("nothing remembered")?;
    let (now, _) = current_uids(world).await?;
    ensure!(
        now == before,
        "UIDVALIDITY changed from {before} to {now} though the mailbox was not recreated"
    );
    Ok(())
}

#[then(regex = r"^messages 1 and 2 have their UIDs from before$")]
async fn uids_kept(world: &mut MailWorld) -> anyhow::Result<()> {
    let (_, before) = world
        .imap
        .remembered
        .clone()
        .context("nothing remembered")?;
    let (_, now) = fetch_uids(world.imap(0)?, "1:2").await?;
    let now: Vec<u32> = now.into_iter().map(|(_, uid)| uid).collect();
    ensure!(
        before.get(..2) == Some(&now[..]),
        "messages 1 and 2 had the UIDs {:?}, now {now:?}",
        before.get(..2)
    );
    Ok(())
}

#[then(regex = r"^message 3 has a UID above every UID from before$")]
async fn uid_above(world: &mut MailWorld) -> anyhow::Result<()> {
    let (_, before) = world
        .imap
        .remembered
        .clone()
        .context("nothing remembered")?;
    let (_, uids) = fetch_uids(world.imap(0)?, "3").await?;
    let uid = uids
        .into_iter()
        .find_map(|(seq, uid)| (seq == 3).then_some(uid))
        .context("FETCH 3 UID gave no UID")?;
    let highest = before.iter().max().copied().unwrap_or(0);
    ensure!(
        uid > highest,
        "the new message got UID {uid}, but UIDs up to {highest} were handed out before \
         (UIDs must never be reused, RFC 3501 2.3.1.1)"
    );
    Ok(())
}

// ---- ENVELOPE and BODYSTRUCTURE ----

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

#[then("the ENVELOPE has the encoded subject and the sender's address")]
async fn envelope_check(world: &mut MailWorld) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let fetch = result
        .fetches()
        .into_iter()
        .find(|f| f.envelope().is_some())
        .context("no FETCH response with ENVELOPE")?;
    let envelope = fetch.envelope().context("no ENVELOPE")?;
    let subject = text(envelope.get(1));
    ensure!(
        subject.as_deref() == Some("=?UTF-8?Q?R=C3=A9sum=C3=A9_attached?="),
        "the ENVELOPE subject is {subject:?}; RFC 3501 7.4.2 wants the header as sent"
    );
    let from = envelope
        .get(2)
        .and_then(|v| v.get(0))
        .context("the ENVELOPE has no from address")?;
    let (mailbox, host) = (text(from.get(2)), text(from.get(3)));
    ensure!(
        mailbox.as_deref() == Some("renee") && host.as_deref() == Some("example.test"),
        "the ENVELOPE from address is {from}"
    );
    let message_id = text(envelope.get(9));
    ensure!(
        message_id.as_deref() == Some("<multipart.test@harness.test>"),
        "the ENVELOPE message-id is {message_id:?}"
    );
    Ok(())
}

fn is(value: Option<&Value>, wanted: &str) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case(wanted))
}

#[then("the BODYSTRUCTURE is multipart/mixed of text/plain and an application/pdf attachment")]
async fn bodystructure_check(world: &mut MailWorld) -> anyhow::Result<()> {
    let result = world.imap_result(0)?;
    let fetch = result
        .fetches()
        .into_iter()
        .find(|f| f.bodystructure().is_some())
        .context("no FETCH response with BODYSTRUCTURE")?;
    let body = fetch.bodystructure().context("no BODYSTRUCTURE")?;
    let items = body.as_list().context("BODYSTRUCTURE is not a list")?;
    // A multipart body: one or more bodies, then the subtype.
    let parts: Vec<&Value> = items.iter().take_while(|v| v.as_list().is_some()).collect();
    ensure!(
        parts.len() == 2 && is(items.get(2), "MIXED"),
        "expected multipart/mixed with two parts, got {body}"
    );
    ensure!(
        is(parts[0].get(0), "TEXT") && is(parts[0].get(1), "PLAIN"),
        "the first part is not text/plain: {}",
        parts[0]
    );
    ensure!(
        is(parts[1].get(0), "APPLICATION") && is(parts[1].get(1), "PDF"),
        "the second part is not application/pdf: {}",
        parts[1]
    );
    // body-ext-1part: md5, then disposition ("ATTACHMENT" (params)).
    let disposition = parts[1].get(8);
    ensure!(
        disposition
            .and_then(|d| d.get(0))
            .is_some_and(|d| is(Some(d), "ATTACHMENT")),
        "the PDF part's disposition is {}, expected attachment",
        disposition
            .map(ToString::to_string)
            .unwrap_or_else(|| "missing".into())
    );
    Ok(())
}

// ---- IDLE ----

#[when("the IMAP client starts IDLE")]
async fn starts_idle(world: &mut MailWorld) -> anyhow::Result<()> {
    let selected_exists = world
        .imap_result(0)?
        .exists()
        .context("IDLE needs a SELECT first, and the last command gave no EXISTS")?;
    let started = world.imap(0)?.idle_start().await?;
    if let Err(refused) = started {
        bail!("IDLE was refused: {}", refused.tagged);
    }
    world.imap.idle = Some(IdleWatch {
        selected_exists,
        heard: Vec::new(),
    });
    Ok(())
}

#[when(regex = r"^(\{\w+\}) submits a message to (\{\w+\}) on the submission port$")]
async fn submits(world: &mut MailWorld, from: String, to: String) -> anyhow::Result<()> {
    let from = world.expand(&from)?;
    let to = world.expand(&to)?;
    let password = world.password_of(&from)?;
    let target = world.target()?;
    let mut client = target.connect("submission").await?;
    let greeting = client.read_reply().await?;
    ensure!(
        greeting.code == 220,
        "the submission greeting was {greeting}"
    );
    client.ehlo("harness.test").await?;
    if !client.is_tls() {
        let reply = client.starttls(&target.tls).await?;
        ensure!(reply.code == 220, "STARTTLS was refused: {reply}");
        client.ehlo("harness.test").await?;
    }
    let reply = client.auth_plain(&from, &password).await?;
    ensure!(reply.code == 235, "AUTH as {from} failed: {reply}");
    for command in [format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
        let reply = client.command(&command).await?;
        ensure!(reply.code == 250, "`{command}` was refused: {reply}");
    }
    let (message, message_id) = test_message_with_id("Seen by IDLE", "New mail.");
    let reply = client.data(&message).await?;
    ensure!(reply.code == 250, "the message was refused: {reply}");
    world.imap.submitted = Some((Instant::now(), message_id));
    let _ = client.command("QUIT").await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    Ok(())
}

/// How many messages a session knows of after `responses`, having known of `start`: EXISTS
/// gives the number, each EXPUNGE takes one away (RFC 3501 7.3.1 and 7.4.1).
fn known_count(start: u32, responses: &[Response]) -> u32 {
    responses
        .iter()
        .fold(start, |count, response| match response {
            Response::Exists(number) => *number,
            Response::Expunge(_) => count.saturating_sub(1),
            _ => count,
        })
}

/// How long IDLE is watched after an EXISTS for what is already on its way.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// The MUST: the session is told of the submitted message, during IDLE or at the latest by the
/// first command after DONE (RFC 2177 section 3, RFC 3501 7.3.1 and 5.2), which a SEARCH for its
/// Message-ID shows. How soon IDLE told is a quality figure: RFC 2177 sets no latency, and
/// servers that poll report new mail many seconds late. Other mail arriving in the INBOX
/// meanwhile (another scenario's) makes the client look again, until `seconds` after the
/// submission.
#[then(
    regex = r"^the IMAP client is told of the new message in IDLE or by the command after DONE, waiting at most (\d+) seconds$"
)]
async fn idle_told(world: &mut MailWorld, seconds: u64) -> anyhow::Result<()> {
    let (submitted, message_id) = world
        .imap
        .submitted
        .clone()
        .context("no message was submitted for IDLE to hear of")?;
    let mut watch = world.imap.idle.take().context("IDLE was not started")?;
    let deadline = submitted + Duration::from_secs(seconds);
    let criteria = format!(
        "HEADER Message-ID {}",
        quote(message_id.as_bytes()).context("the Message-ID cannot be quoted")?
    );
    let client = world.imap(0)?;
    let heard_in_idle = loop {
        // In IDLE until an EXISTS comes (ours, or other mail) or time is up; after an EXISTS,
        // a little longer for what is already on its way (ours may follow other mail's), so
        // that leaving IDLE does not take a report sent in IDLE for one sent after DONE.
        let mut told_at: Vec<(u32, Instant)> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if told_at.is_empty() {
                left
            } else {
                left.min(IDLE_SETTLE)
            };
            if wait.is_zero() {
                break;
            }
            match client.idle_wait(wait).await? {
                Some(response) => {
                    let exists = matches!(response, Response::Exists(_));
                    watch.heard.push(response);
                    if exists {
                        let known = known_count(watch.selected_exists, &watch.heard);
                        told_at.push((known, Instant::now()));
                    }
                }
                None => break,
            }
        }
        let done = client.idle_done().await?;
        ensure!(done.is_ok(), "DONE was answered {}", done.tagged);
        watch.heard.extend(done.untagged);
        let search = client.search(&criteria).await?;
        ensure!(
            search.is_ok(),
            "SEARCH {criteria} was answered {}",
            search.tagged
        );
        let found = search
            .search()
            .map(|s| s.numbers.clone())
            .unwrap_or_default();
        watch.heard.extend(search.untagged);
        if let Some(&number) = found.iter().max() {
            let known = known_count(watch.selected_exists, &watch.heard);
            ensure!(
                number <= known,
                "the new message is number {number} in the INBOX, but after IDLE, DONE and a \
                 SEARCH the session had been told of {known} messages only (no EXISTS for it)"
            );
            // Heard in IDLE when an EXISTS there counted it: the first such is the latency.
            break told_at
                .iter()
                .find(|(known, _)| *known >= number)
                .map(|(_, at)| at.duration_since(submitted));
        }
        ensure!(
            Instant::now() < deadline,
            "{seconds} s after the submission was accepted, SEARCH {criteria} finds no such \
             message in the INBOX: the session was not told of it"
        );
        // Other mail came: idle again for ours.
        if let Err(refused) = client.idle_start().await? {
            bail!("IDLE was refused the second time: {}", refused.tagged);
        }
    };
    match heard_in_idle {
        Some(latency) => world.measure("IDLE notification latency", latency.as_secs_f64(), "s"),
        None => world.note(
            "IDLE did not report the new message while it was watched; DONE or the next command \
             did (RFC 2177 sets no latency)",
        ),
    }
    Ok(())
}

/// STARTTLS on port 143 and, on OK, a ClientHello of a legacy TLS `version` instead of a
/// handshake (features/tls/versions.feature).
pub(super) async fn starttls_then_probe_legacy(
    world: &mut MailWorld,
    version: LegacyVersion,
    sni: Option<&str>,
) -> anyhow::Result<LegacyOutcome> {
    let target = world.target()?;
    let (mut client, greeting) = open(&target, "imap").await?;
    let outcome = async {
        ensure!(greeting.is_ok(), "the imap greeting was not OK: {greeting}");
        client
            .starttls_then_probe_legacy(version, sni)
            .await?
            .map_err(|status| anyhow!("STARTTLS was refused: {status}"))
    }
    .await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    outcome
}

/// A real handshake on an IMAP port (after STARTTLS on 143), which must negotiate TLS 1.2 or 1.3.
pub(super) async fn modern_tls(world: &mut MailWorld, service: &str) -> anyhow::Result<()> {
    let target = world.target()?;
    let (mut client, greeting) = open(&target, service).await?;
    let result = async {
        ensure!(
            greeting.is_ok(),
            "the {service} greeting was not OK: {greeting}"
        );
        if !client.is_tls() {
            let result = client.starttls(&target.tls).await?;
            ensure!(result.is_ok(), "STARTTLS was refused: {}", result.tagged);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(parts: &[Part<'_>]) -> String {
        parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Part::Literal(l) => format!("<lit:{}>", String::from_utf8_lossy(l)),
                Part::LiteralPlus(l) => format!("<lit+:{}>", String::from_utf8_lossy(l)),
            })
            .collect()
    }

    #[test]
    fn imap_dates() {
        assert_eq!(imap_instant("01-Jan-1970 00:00:00 +0000").unwrap(), 0);
        assert_eq!(
            imap_instant("14-Jul-2025 10:30:00 +0200").unwrap(),
            imap_instant("14-Jul-2025 08:30:00 +0000").unwrap()
        );
        assert_eq!(
            imap_instant(" 1-Mar-2024 00:00:00 -0100").unwrap(),
            1_709_254_800
        );
        assert!(imap_instant("yesterday").is_err());
    }

    #[test]
    fn sessions_count_what_they_were_told() {
        assert_eq!(known_count(3, &[]), 3);
        assert_eq!(
            known_count(
                3,
                &[
                    Response::Exists(5),
                    Response::Expunge(1),
                    Response::Recent(1),
                    Response::Exists(6),
                    Response::Expunge(6),
                ]
            ),
            5
        );
        assert_eq!(known_count(0, &[Response::Expunge(1)]), 0);
    }

    fn namespace(prefix: &str, delimiter: Option<char>) -> PersonalNamespace {
        PersonalNamespace {
            prefix: prefix.to_owned(),
            delimiter,
        }
    }

    #[test]
    fn scenario_mailboxes_hold_no_delimiter() {
        let token = "18f3a.4242.7";
        assert_eq!(
            scenario_mailbox(&namespace("", Some('/')), token),
            "harness-18f3a-4242-7"
        );
        assert_eq!(
            scenario_mailbox(&namespace("INBOX.", Some('.')), token),
            "INBOX.harness-18f3a-4242-7"
        );
        assert_eq!(
            scenario_mailbox(&namespace("", Some('-')), token),
            "harness_18f3a_4242_7"
        );
    }

    #[test]
    fn box_paths_take_the_servers_delimiter() {
        let plain = |text| expand_box(text, "INBOX.h-1", Some('.'), false).unwrap();
        let quoted = |text| expand_box(text, "INBOX.h-1", Some('.'), true).unwrap();
        assert_eq!(plain("{box}"), "INBOX.h-1");
        assert_eq!(plain("{box}/c, {box}/c/b"), "INBOX.h-1.c, INBOX.h-1.c.b");
        assert_eq!(quoted("LIST \"\" {box}/%"), "LIST \"\" \"INBOX.h-1.%\"");
        assert_eq!(
            quoted("STATUS {box}/to (MESSAGES)"),
            "STATUS \"INBOX.h-1.to\" (MESSAGES)"
        );
        assert_eq!(
            quoted("RENAME {box}/a {box}/c"),
            "RENAME \"INBOX.h-1.a\" \"INBOX.h-1.c\""
        );
        assert_eq!(
            expand_box("CREATE {box}/Entw\u{fc}rfe", "h", Some('/'), true).unwrap(),
            "CREATE \"h/Entw&APw-rfe\""
        );
        assert!(expand_box("{box}/a", "h", None, false).is_err());
        assert_eq!(expand_box("{box}", "h", None, false).unwrap(), "h");
        assert!(expand_box("{box}x", "h", Some('/'), false).is_err());
    }

    #[test]
    fn expunges_renumber() {
        assert_eq!(originally_expunged(&[2, 1]), [2, 1]);
        assert_eq!(originally_expunged(&[1, 1]), [1, 2]);
        assert_eq!(originally_expunged(&[3]), [3]);
        assert!(originally_expunged(&[]).is_empty());
    }

    #[test]
    fn non_ascii_quoted_strings_become_literals() {
        assert_eq!(flatten(&command_parts("NOOP")), "NOOP");
        assert_eq!(
            flatten(&command_parts("SEARCH SUBJECT \"a \\\"b\\\"\"")),
            "SEARCH SUBJECT \"a \\\"b\\\"\""
        );
        assert_eq!(
            flatten(&command_parts(
                "SEARCH CHARSET UTF-8 TEXT \"Z\u{fc}rich\" ALL"
            )),
            "SEARCH CHARSET UTF-8 TEXT <lit:Z\u{fc}rich> ALL"
        );
        assert_eq!(flatten(&command_parts("X \"open")), "X \"open");
    }
}

#[when(regex = r"^the IMAP client keeps trying wrong passwords for (\{\w+\})$")]
async fn imap_keeps_guessing(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let wrong = format!("{}-wrong", world.password_of(&account)?);
    let timeout = world.target()?.timeout;
    let client = world.imap(0)?;
    client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
    let attempts = Attempts::run("wrong password", async || {
        let status = client.login(&account, &wrong).await?.tagged;
        Ok(match status.kind {
            StatusKind::Ok => Answer::Granted(format!("the wrong password was accepted: {status}")),
            StatusKind::No => Answer::Ordinary,
            other => Answer::Stopped(format!("the server answered {}", other.name())),
        })
    })
    .await;
    client.set_timeout(timeout);
    world.attempts = Some(attempts?);
    Ok(())
}

#[then("the IMAP client got nothing in clear text between the STARTTLS reply and the handshake")]
async fn imap_no_plaintext_after_go_ahead(world: &mut MailWorld) -> anyhow::Result<()> {
    let injected = world.imap(0)?.plaintext_after_go_ahead().to_vec();
    ensure!(
        injected.is_empty(),
        "after its go-ahead for STARTTLS the server sent \"{}\" in clear text before the \
         handshake; a client that reads it as a response inside TLS is open to response \
         injection, and a server never needs to send anything there",
        crate::clients::transcript::escape_bytes(&injected)
    );
    Ok(())
}

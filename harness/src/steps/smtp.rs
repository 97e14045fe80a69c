//! SMTP steps: connecting, commands, message data, TLS, AUTH, and the checks on replies and
//! mailboxes.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use cucumber::gherkin::Step;
use cucumber::{given, then, when};

use super::security::{Answer, Attempts};
use super::{MailWorld, SentMessage, Target, docstring_to_crlf, unescape, unique_token};
use crate::clients::ClientError;
use crate::clients::legacy_tls::{LegacyOutcome, LegacyVersion, probe_legacy_tls_at};
use crate::clients::smtp::{Reply, SmtpClient, dot_stuff};
use crate::message;

/// The name the harness gives in EHLO.
pub(super) const EHLO_NAME: &str = "harness.test";

/// The Date field of the messages the harness composes. RFC 5322 3.6 requires one, and a server
/// may add it where it is missing (RFC 6409 8.2, RFC 5321 6.4), which changes the message the
/// scenario compares.
pub(super) const DATE_FIELD: &str = "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n";

fn docstring(step: &Step) -> anyhow::Result<&str> {
    step.docstring
        .as_deref()
        .context("this step needs a \"\"\" docstring")
}

/// The Message-ID of the message carrying `token`.
pub(super) fn message_id(token: &str) -> String {
    format!("<{token}@harness.test>")
}

/// `body` made a well-formed message (RFC 5322 3.6): a Message-ID carrying `token` in front,
/// then From (`author`) and Date where its header section has none. A server that completes
/// messages (RFC 6409 8) then has nothing to add, and a delivery check finds the message by its
/// Message-ID.
fn well_formed(body: &[u8], token: &str, author: &str) -> Vec<u8> {
    let fields = message::fields(body);
    let has = |name: &str| fields.iter().any(|f| f.is(name));
    let mut message = format!("Message-ID: {}\r\n", message_id(token)).into_bytes();
    if !has("From") {
        message.extend_from_slice(format!("From: <{author}>\r\n").as_bytes());
    }
    if !has("Date") {
        message.extend_from_slice(DATE_FIELD.as_bytes());
    }
    message.extend_from_slice(body);
    message
}

/// Makes `body` the scenario's message (see [`well_formed`]), from the envelope sender. A
/// message the scenario will compare with what arrives (`exact`) is kept as sent.
fn with_token(world: &mut MailWorld, body: &[u8], exact: bool) -> anyhow::Result<Vec<u8>> {
    let token = unique_token();
    let message = well_formed(body, &token, &envelope_sender(world)?);
    world.message = Some(SentMessage {
        token,
        exact: exact.then(|| message.clone()),
    });
    Ok(message)
}

#[given(regex = r"^a client connected to the (\w+) port$")]
async fn connected(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let client = target.connect(&role).await?;
    greeted(world, client).await
}

/// Makes `client` the scenario's connection and reads its greeting.
pub(super) async fn greeted(world: &mut MailWorld, client: SmtpClient) -> anyhow::Result<()> {
    world.set_client(client);
    let greeting = world
        .client()?
        .read_reply()
        .await
        .context("reading the greeting")?;
    world.record(greeting);
    Ok(())
}

#[given(regex = r"^a plain-text client connected to the (\w+) port$")]
async fn plain_connected(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let addr = target.addr(&role)?;
    let client = crate::clients::smtp::SmtpClient::connect(&addr, target.timeout)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    world.set_client(client);
    Ok(())
}

#[given(regex = r"^an authenticated client on the (\w+) port$")]
async fn authenticated(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    connected(world, role).await?;
    ensure!(
        world.reply()?.code == 220,
        "greeting was not 220: {}",
        world.reply()?
    );
    say_ehlo(world).await?;
    let target = world.target()?;
    let client = world.client()?;
    if !client.is_tls() {
        let reply = client.starttls(&target.tls).await?;
        ensure!(reply.code == 220, "STARTTLS was refused: {reply}");
        client.ehlo(EHLO_NAME).await?;
    }
    let (user, password) = world.account(0)?;
    let reply = world.client()?.auth_plain(&user, &password).await?;
    ensure!(reply.code == 235, "AUTH PLAIN as {user} failed: {reply}");
    world.authenticated = true;
    world.record(reply);
    Ok(())
}

#[when("the client says EHLO")]
async fn say_ehlo(world: &mut MailWorld) -> anyhow::Result<()> {
    let reply = world.client()?.ehlo(EHLO_NAME).await?;
    world.since_ehlo.clear();
    world.reply = Some(reply);
    Ok(())
}

#[when(regex = r#"^the client sends "(.*)"$"#)]
async fn sends(world: &mut MailWorld, line: String) -> anyhow::Result<()> {
    let line = world.expand(&line)?;
    let reply = world.client()?.command(&line).await?;
    world.record(reply);
    Ok(())
}

#[when(regex = r#"^the client sends "(.*)" (\d+) times$"#)]
async fn sends_repeatedly(world: &mut MailWorld, line: String, times: usize) -> anyhow::Result<()> {
    let line = world.expand(&line)?;
    let mut replies = Vec::with_capacity(times);
    for _ in 0..times {
        let reply = world.client()?.command(&line).await?;
        world.record(reply.clone());
        replies.push(reply);
    }
    world.batch = replies;
    Ok(())
}

#[then(regex = r"^every one of those replies was (\d{3})$")]
async fn all_replies(world: &mut MailWorld, code: u16) -> anyhow::Result<()> {
    ensure!(!world.batch.is_empty(), "no replies were collected");
    if let Some((index, reply)) = world.batch.iter().enumerate().find(|(_, r)| r.code != code) {
        bail!(
            "reply {} of {} was not {code}: {reply}",
            index + 1,
            world.batch.len()
        );
    }
    Ok(())
}

#[when("the client pipelines:")]
async fn pipelines(world: &mut MailWorld, step: &Step) -> anyhow::Result<()> {
    let commands: Vec<String> = docstring(step)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| world.expand(line))
        .collect::<Result<_, _>>()?;
    let batch: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
    let client = world.client()?;
    client.send_raw(batch.as_bytes()).await?;
    let mut replies = Vec::new();
    for command in &commands {
        let reply = client
            .read_reply()
            .await
            .with_context(|| format!("reading the reply to pipelined `{command}`"))?;
        replies.push(reply);
    }
    for reply in replies.iter().cloned() {
        world.record(reply);
    }
    world.batch = replies;
    Ok(())
}

#[when("the client starts TLS")]
async fn starts_tls(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let reply = world.client()?.starttls(&target.tls).await?;
    ensure!(reply.code == 220, "STARTTLS was not accepted: {reply}");
    world.record(reply);
    Ok(())
}

#[when(regex = r#"^the client starts TLS with "(.*)" injected$"#)]
async fn starts_tls_injected(world: &mut MailWorld, line: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let injected = format!("{line}\r\n");
    let reply = world
        .client()?
        .starttls_with_injected(&target.tls, injected.as_bytes())
        .await?;
    world.record(reply);
    Ok(())
}

#[when(
    regex = r"^the client authenticates with (PLAIN|LOGIN) as the (first|second) account( with a wrong password)?$"
)]
async fn authenticates(
    world: &mut MailWorld,
    mechanism: String,
    which: String,
    wrong: String,
) -> anyhow::Result<()> {
    let (user, mut password) = world.account(usize::from(which == "second"))?;
    if !wrong.is_empty() {
        password.push_str("-wrong");
    }
    let timeout = world.target()?.timeout;
    let client = world.client()?;
    if !wrong.is_empty() {
        // Servers answer failed logins late on purpose (and later with each failure).
        client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
    }
    let reply = if mechanism == "PLAIN" {
        client.auth_plain(&user, &password).await
    } else {
        client.auth_login(&user, &password).await
    };
    client.set_timeout(timeout);
    let reply = reply?;
    world.authenticated |= reply.code == 235;
    world.record(reply);
    Ok(())
}

/// MAIL and RCPT for one recipient, each required to succeed; the sender is the first
/// account when the session authenticated, else `{sender}`.
/// The reverse path the scenario's mail uses: the account it logged in as, else `{sender}`.
fn envelope_sender(world: &MailWorld) -> anyhow::Result<String> {
    if world.authenticated {
        Ok(world.account(0)?.0)
    } else {
        world.expand("{sender}")
    }
}

async fn envelope(world: &mut MailWorld, recipient: &str) -> anyhow::Result<(String, String)> {
    let recipient = world.expand(recipient)?;
    let sender = envelope_sender(world)?;
    for command in [
        format!("MAIL FROM:<{sender}>"),
        format!("RCPT TO:<{recipient}>"),
    ] {
        let reply = world.client()?.command(&command).await?;
        ensure!(reply.code == 250, "`{command}` was refused: {reply}");
        world.record(reply);
    }
    Ok((sender, recipient))
}

#[when(regex = r"^the client opens a message transaction for (\S+)$")]
async fn opens_transaction(world: &mut MailWorld, recipient: String) -> anyhow::Result<()> {
    envelope(world, &recipient).await?;
    let reply = world.client()?.command("DATA").await?;
    world.record(reply);
    Ok(())
}

#[when(regex = r"^the client sends a message to (\S+)$")]
async fn sends_message(world: &mut MailWorld, recipient: String) -> anyhow::Result<()> {
    let (sender, recipient) = envelope(world, &recipient).await?;
    send_message_data(world, &sender, &recipient).await
}

/// Like "sends a message", but a refusal of the recipient ends the attempt instead of failing
/// the step: the scenario then checks which answer the server chose.
#[when(regex = r"^the client tries to send a message to (\S+)$")]
async fn tries_to_send(world: &mut MailWorld, recipient: String) -> anyhow::Result<()> {
    let recipient = world.expand(&recipient)?;
    let sender = envelope_sender(world)?;
    let reply = world
        .client()?
        .command(&format!("MAIL FROM:<{sender}>"))
        .await?;
    ensure!(
        reply.code == 250,
        "MAIL FROM:<{sender}> was refused: {reply}"
    );
    world.record(reply);
    let reply = world
        .client()?
        .command(&format!("RCPT TO:<{recipient}>"))
        .await?;
    let refused = reply.code >= 400;
    world.record(reply);
    if refused {
        return Ok(());
    }
    send_message_data(world, &sender, &recipient).await
}

/// DATA with a small message carrying a fresh token.
async fn send_message_data(
    world: &mut MailWorld,
    sender: &str,
    recipient: &str,
) -> anyhow::Result<()> {
    let body = format!(
        "From: <{sender}>\r\nTo: <{recipient}>\r\n{DATE_FIELD}Subject: conformance message\r\n\r\nSent by the conformance harness.\r\n"
    );
    let message = with_token(world, body.as_bytes(), true)?;
    let reply = world.client()?.data(&message).await?;
    world.record(reply);
    Ok(())
}

/// Message data only makes sense after DATA was answered with 354.
fn expect_354(world: &MailWorld) -> anyhow::Result<()> {
    let reply = world.reply()?;
    ensure!(reply.code == 354, "DATA was not accepted: {reply}");
    Ok(())
}

/// Sends message data exactly as given (terminator included) and reads the reply to it.
async fn send_data(world: &mut MailWorld, wire: &[u8]) -> anyhow::Result<()> {
    let client = world.client()?;
    client.send_raw(wire).await?;
    let reply = client
        .read_reply()
        .await
        .context("reading the reply to the message data")?;
    world.record(reply);
    Ok(())
}

/// Sends message octets after a 354: dot-stuffed, then the terminator, then reads the reply.
async fn send_body(world: &mut MailWorld, message: &[u8]) -> anyhow::Result<()> {
    let mut wire = dot_stuff(message);
    wire.extend_from_slice(b".\r\n");
    send_data(world, &wire).await
}

#[when("the client sends the message body:")]
async fn sends_body(world: &mut MailWorld, step: &Step) -> anyhow::Result<()> {
    expect_354(world)?;
    let body = docstring_to_crlf(docstring(step)?);
    let message = with_token(world, &body, true)?;
    send_body(world, &message).await
}

#[when(regex = r#"^the client sends the raw message data "(.*)"$"#)]
async fn sends_raw_data(world: &mut MailWorld, data: String) -> anyhow::Result<()> {
    expect_354(world)?;
    let data = unescape(&data)?;
    let wire = with_token(world, &data, false)?;
    send_data(world, &wire).await
}

#[when("the client sends a message body 1 octet over the advertised SIZE")]
async fn sends_oversized(world: &mut MailWorld) -> anyhow::Result<()> {
    expect_354(world)?;
    let limit = world
        .client()?
        .size_limit()
        .filter(|&limit| limit > 0)
        .context("the server advertised no SIZE limit")?;
    let target_len = usize::try_from(limit + 1).context("SIZE limit too large for memory")?;
    let mut message = with_token(world, b"Subject: too large\r\n\r\n", false)?;
    let mut remaining = target_len
        .checked_sub(message.len())
        .filter(|&r| r >= 2)
        .context("the SIZE limit is smaller than a minimal message")?;
    // Full 80-octet lines, then one shorter line, so the total is exactly limit + 1.
    while remaining >= 82 {
        message.extend_from_slice(&[b"x".repeat(78).as_slice(), b"\r\n"].concat());
        remaining -= 80;
    }
    message.extend(std::iter::repeat_n(b'y', remaining - 2));
    message.extend_from_slice(b"\r\n");
    send_body(world, &message).await
}

#[when(regex = r"^the client sends the message in BDAT chunks of (\d+) octets$")]
async fn sends_bdat(world: &mut MailWorld, size: usize, step: &Step) -> anyhow::Result<()> {
    ensure!(size > 0, "chunk size must be at least 1");
    let body = docstring_to_crlf(docstring(step)?);
    let message = with_token(world, &body, true)?;
    let chunks: Vec<&[u8]> = message.chunks(size).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len();
        let command = format!(
            "BDAT {}{}\r\n",
            chunk.len(),
            if last { " LAST" } else { "" }
        );
        let client = world.client()?;
        client
            .send_raw(&[command.as_bytes(), chunk].concat())
            .await?;
        let reply = client
            .read_reply()
            .await
            .context("reading the reply to BDAT")?;
        let stop = reply.code != 250;
        world.record(reply);
        if stop {
            break;
        }
    }
    Ok(())
}

#[when(regex = r"^the client sends a command line of (\d+) octets$")]
async fn sends_long_line(world: &mut MailWorld, octets: usize) -> anyhow::Result<()> {
    ensure!(octets > 7, "a command line needs at least 8 octets");
    let line = format!("NOOP {}\r\n", "x".repeat(octets - 7));
    let client = world.client()?;
    client.send_raw(line.as_bytes()).await?;
    let reply = client
        .read_reply()
        .await
        .context("reading the reply to the long line")?;
    world.record(reply);
    Ok(())
}

#[when(regex = r#"^the client keeps sending "(.*)" until the server hangs up$"#)]
async fn keeps_sending(world: &mut MailWorld, line: String) -> anyhow::Result<()> {
    const LIMIT: usize = 100;
    for _ in 0..LIMIT {
        let client = world.client()?;
        if let Err(error) = client.send_line(&line).await {
            return closed_or(error);
        }
        match client.read_reply().await {
            Ok(reply) if reply.code == 421 => {
                world.record(reply);
                return Ok(());
            }
            Ok(reply) => world.record(reply),
            Err(error) => return closed_or(error),
        }
    }
    bail!("the server still answered after {LIMIT} bad commands")
}

/// `Ok` when `error` says the server closed the connection (an end of stream, or a reset when
/// the client wrote after the close).
fn closed_or(error: ClientError) -> anyhow::Result<()> {
    match error {
        ClientError::Closed { .. } | ClientError::Io { .. } => Ok(()),
        other => Err(other.into()),
    }
}

#[then("the server hung up with 421, or closed the connection after a 5yz reply")]
async fn hung_up(world: &mut MailWorld) -> anyhow::Result<()> {
    let last = world.reply()?.clone();
    if last.code == 421 {
        return Ok(());
    }
    // RFC 5321 7.8: closing after "an appropriate number of 5yz replies" is reasonable too.
    ensure!(
        last.code / 100 == 5,
        "the server closed the connection after {last}, neither a 421 nor a 5yz reply"
    );
    let closed = match world
        .client()?
        .read_until_closed(Duration::from_secs(5))
        .await
    {
        Ok(closed) => closed,
        Err(error) => closed_or(error).map(|()| true)?,
    };
    ensure!(
        closed,
        "the last reply was {last}, but the connection stayed open for 5 s"
    );
    world.note(format!("closed after a {} reply, without a 421", last.code));
    Ok(())
}

/// `CRLF.LF`, `CRLF.NULCRLF` and the like: the octets around a dot, spelled out as CRLF, LF,
/// CR and NUL.
fn vector_bytes(vector: &str) -> anyhow::Result<Vec<u8>> {
    let (before, after) = vector
        .split_once('.')
        .with_context(|| format!("vector {vector:?} has no dot"))?;
    let spelled = |mut text: &str| -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        while !text.is_empty() {
            let (name, octets): (&str, &[u8]) = [
                ("CRLF", &b"\r\n"[..]),
                ("LF", b"\n"),
                ("CR", b"\r"),
                ("NUL", b"\0"),
            ]
            .into_iter()
            .find(|(name, _)| text.starts_with(name))
            .with_context(|| format!("unknown octets {text:?} in vector {vector:?}"))?;
            out.extend_from_slice(octets);
            text = &text[name.len()..];
        }
        ensure!(
            !out.is_empty(),
            "vector {vector:?} has nothing on one side of its dot"
        );
        Ok(out)
    };
    Ok([spelled(before)?, b".".to_vec(), spelled(after)?].concat())
}

#[when(regex = r"^the client keeps trying wrong passwords for the (first|second) account$")]
async fn keeps_guessing(world: &mut MailWorld, which: String) -> anyhow::Result<()> {
    let (user, password) = world.account(usize::from(which == "second"))?;
    let wrong = format!("{password}-wrong");
    let timeout = world.target()?.timeout;
    let client = world.client()?;
    client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
    let attempts = Attempts::run("wrong password", async || {
        let reply = client.auth_plain(&user, &wrong).await?;
        Ok(match reply.code {
            535 => Answer::Ordinary,
            235 => Answer::Granted(format!("the wrong password was accepted: {reply}")),
            code => Answer::Stopped(format!("the server answered {code}")),
        })
    })
    .await;
    client.set_timeout(timeout);
    world.attempts = Some(attempts?);
    Ok(())
}

#[when("the client probes unknown recipients")]
async fn probes_recipients(world: &mut MailWorld) -> anyhow::Result<()> {
    let mut attempts = Attempts::run("unknown recipient", async || {
        let line = world.expand("RCPT TO:<{unknown}>")?;
        let client = world.client()?;
        client.send_line(&line).await?;
        let reply = client.read_reply().await?;
        Ok(match reply.code {
            550 | 553 => Answer::Ordinary,
            200..=299 => Answer::Granted(format!(
                "an unknown recipient was accepted ({reply}): probing cannot be judged on a \
                 server that accepts every name"
            )),
            code => Answer::Stopped(format!("the server answered {code}")),
        })
    })
    .await?;
    if attempts.undecided() {
        // A defence may answer every RCPT after a few bad ones with the same code and another
        // text (RFC 5321 7.8). A valid recipient tells: refused now, the server stopped the run.
        let line = world.expand("RCPT TO:<{first}>")?;
        let client = world.client()?;
        let answer = match client.send_line(&line).await {
            Ok(()) => client.read_reply().await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(reply) if reply.code >= 400 => {
                let text = reply.to_string();
                attempts.stopped(&format!(
                    "then even {line} was refused: {}",
                    text.lines().next().unwrap_or_default()
                ));
                world.record(reply);
            }
            Ok(reply) => world.record(reply),
            Err(error) => {
                closed_or(error)?;
                attempts.stopped("the server closed the connection");
            }
        }
    }
    world.attempts = Some(attempts);
    Ok(())
}

/// NOOPs sent before concluding that nothing limits them: Postfix starts counting its junk
/// commands as errors after 100 (`smtpd_junk_command_limit`) and disconnects 20 errors later.
const NOOP_RUN: u32 = 200;

#[when("the client sends NOOP again and again")]
async fn sends_noops(world: &mut MailWorld) -> anyhow::Result<()> {
    let client = world.client()?;
    let attempts = Attempts::run_up_to("NOOP", NOOP_RUN, async || {
        client.send_line("NOOP").await?;
        let reply = client.read_reply().await?;
        Ok(match reply.code {
            250 => Answer::Ordinary,
            code => Answer::Stopped(format!("the server answered {code}")),
        })
    })
    .await?;
    world.attempts = Some(attempts);
    Ok(())
}

#[then(regex = r"^(VRFY|EXPN) does not tell (\{\w+\}) from (\{\w+\})$")]
async fn does_not_disclose(
    world: &mut MailWorld,
    verb: String,
    known: String,
    unknown: String,
) -> anyhow::Result<()> {
    let mut replies = Vec::new();
    for who in [&known, &unknown] {
        let line = format!("{verb} {}", world.expand(who)?);
        let client = world.client()?;
        client.send_line(&line).await?;
        let reply = client
            .read_reply()
            .await
            .with_context(|| format!("reading the reply to {line}"))?;
        world.record(reply.clone());
        replies.push(reply);
    }
    ensure!(
        replies[0].code == replies[1].code,
        "{verb} tells an account from a name that is none: {known} got {}, {unknown} got {}          (a client can collect valid addresses this way; answer both alike, e.g. 252, or refuse          {verb} altogether)",
        replies[0],
        replies[1]
    );
    world.note(format!("{verb} answers {}", replies[0].code));
    Ok(())
}

#[then(regex = r"^a wrong password for (\{\w+\}) and a login as (\{\w+\}) get the same reply$")]
async fn same_login_failure(
    world: &mut MailWorld,
    known: String,
    unknown: String,
) -> anyhow::Result<()> {
    let timeout = world.target()?.timeout;
    let mut replies = Vec::new();
    let mut users = Vec::new();
    for who in [&known, &unknown] {
        let user = world.expand(who)?;
        let client = world.client()?;
        client.set_timeout(timeout + super::FAILED_LOGIN_PATIENCE);
        let reply = client.auth_plain(&user, "not-the-password-1").await;
        client.set_timeout(timeout);
        let reply = reply?;
        world.record(reply.clone());
        replies.push(reply);
        users.push(user);
    }
    ensure!(
        replies[0].code != 235 && replies[1].code != 235,
        "a wrong password was accepted: {} / {}",
        replies[0],
        replies[1]
    );
    ensure!(
        comparable(&replies[0], &users[0]) == comparable(&replies[1], &users[1]),
        "a failed login tells an account from a name that is none: {known} got {}, {unknown} \
         got {} (a password guesser learns which names to try)",
        replies[0],
        replies[1]
    );
    Ok(())
}

/// A reply as far as it can tell one login name from another: its code and its lines, with
/// the name the client gave and every word holding a digit (a session or queue id, a
/// timestamp, as servers put in their replies) masked, but the enhanced status code kept.
fn comparable(reply: &Reply, user: &str) -> (u16, Vec<String>) {
    let lines = reply
        .lines
        .iter()
        .map(|line| {
            let line = line.replace(user, "<user>");
            line.split(' ')
                .enumerate()
                .map(|(index, word)| {
                    let status = index == 0 && word.split('.').count() == 3;
                    if !status && word.bytes().any(|b| b.is_ascii_digit()) {
                        "<id>"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (reply.code, lines)
}

/// MAIL FROM, required to succeed; for Scenario Outlines, where `<...>` would be taken for a
/// column of the examples.
#[when(regex = r"^the client begins mail from (\{\w+\})$")]
async fn begins_mail(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let line = format!("MAIL FROM:<{}>", world.expand(&who)?);
    let client = world.client()?;
    client.send_line(&line).await?;
    let reply = client
        .read_reply()
        .await
        .with_context(|| format!("reading the reply to {line}"))?;
    ensure!(reply.code == 250, "{line} was not accepted: {reply}");
    world.record(reply);
    Ok(())
}

#[when(regex = r"^the client sends RCPT for (\{\w+\}) written as (.+)$")]
async fn rcpt_written_as(world: &mut MailWorld, who: String, form: String) -> anyhow::Result<()> {
    let address = world.expand(&who)?;
    let domain = world.expand("{domain}")?;
    let (local, elsewhere) = address
        .rsplit_once('@')
        .with_context(|| format!("{who} is {address:?}, not local@domain"))?;
    let path = match form.as_str() {
        "itself" => format!("<{address}>"),
        "a percent hack" => format!("<{local}%{elsewhere}@{domain}>"),
        "a bang path" => format!("<{elsewhere}!{local}@{domain}>"),
        "a quoted local part" => format!("<\"{local}@{elsewhere}\"@{domain}>"),
        "an @ in the local part" => format!("<{local}@{elsewhere}@{domain}>"),
        "a source route" => format!("<@{domain}:{address}>"),
        other => bail!(
            "unknown form {other:?}: itself, a percent hack, a bang path, a quoted local part, \
             an @ in the local part, a source route"
        ),
    };
    let line = format!("RCPT TO:{path}");
    let client = world.client()?;
    client.send_line(&line).await?;
    let reply = client
        .read_reply()
        .await
        .with_context(|| format!("reading the reply to {line}"))?;
    world.record(reply);
    Ok(())
}

#[when(regex = r#"^the client smuggles "(.*)" after the end-of-data vector (\S+)$"#)]
async fn smuggles(world: &mut MailWorld, command: String, vector: String) -> anyhow::Result<()> {
    expect_354(world)?;
    let mut data = b"Subject: smuggling probe\r\n\r\nbefore the vector".to_vec();
    data.extend(vector_bytes(&vector)?);
    data.extend_from_slice(format!("{command}\r\n\r\n.\r\n").as_bytes());
    let wire = with_token(world, &data, false)?;
    world.client()?.send_raw(&wire).await?;
    Ok(())
}

#[then("the message data got one reply and the smuggled command none")]
async fn no_smuggled_reply(world: &mut MailWorld) -> anyhow::Result<()> {
    let client = world.client()?;
    let end = client
        .read_reply()
        .await
        .context("reading the reply to the message data")?;
    // NOOP only after that reply, as a client must without PIPELINING: a reply to a command
    // hidden in the data comes before the one to NOOP all the same.
    let next = match client.send_line("NOOP").await {
        Ok(()) => client.read_reply().await,
        Err(error) => Err(error),
    };
    let next = match next {
        Ok(reply) => reply,
        // Refusing the message and hanging up (as patched sendmail and Postfix's
        // smtpd_forbid_bare_newline=reject do) answers no smuggled command either.
        Err(ClientError::Closed { .. } | ClientError::Io { .. }) if end.code >= 400 => {
            world.record(end);
            return Ok(());
        }
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context("reading the reply to the NOOP sent after the data"));
        }
    };
    ensure!(
        next.code == 250,
        "the message ended early at the smuggling vector: after the data reply ({end}) the next \
         reply was {next}, an answer to a command hidden inside the message, where the reply to \
         NOOP (250) was expected"
    );
    world.record(end);
    world.record(next);
    Ok(())
}

#[then(regex = r"^the reply code is (\d{3})$")]
async fn reply_code(world: &mut MailWorld, code: u16) -> anyhow::Result<()> {
    let reply = world.reply()?;
    ensure!(
        reply.code == code,
        "expected reply code {code}, got: {reply}"
    );
    Ok(())
}

#[then(regex = r"^the reply code is one of ([\d, ]+)$")]
async fn reply_code_one_of(world: &mut MailWorld, codes: String) -> anyhow::Result<()> {
    let allowed: Vec<u16> = codes
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    let reply = world.reply()?;
    ensure!(
        allowed.contains(&reply.code),
        "expected one of {allowed:?}, got: {reply}"
    );
    if allowed.len() > 1 {
        let answer = reply.to_string();
        let first = answer.lines().next().unwrap_or_default().to_owned();
        world.note(format!("answered {first}"));
    }
    Ok(())
}

#[then(regex = r"^the reply is (\d{3}) (\d\.\d{1,3}\.\d{1,3})$")]
async fn reply_exact(world: &mut MailWorld, code: u16, enhanced: String) -> anyhow::Result<()> {
    // Enhanced codes are only owed by a server that advertised ENHANCEDSTATUSCODES.
    let owes_enhanced = world.client()?.has_capability("ENHANCEDSTATUSCODES");
    let reply = world.reply()?;
    let enhanced_ok = !owes_enhanced || reply.enhanced() == Some(enhanced.as_str());
    ensure!(
        reply.code == code && enhanced_ok,
        "expected {code} {enhanced}, got: {reply}"
    );
    Ok(())
}

#[then(
    regex = r"^the reply is a (positive completion|transient failure|permanent failure|refusal)$"
)]
async fn reply_class(world: &mut MailWorld, class: String) -> anyhow::Result<()> {
    let reply = world.reply()?;
    let (classes, what): (&[u16], _) = match class.as_str() {
        "positive completion" => (&[2], "2xx"),
        "transient failure" => (&[4], "4xx"),
        "permanent failure" => (&[5], "5xx"),
        _ => (&[4, 5], "4xx or 5xx"),
    };
    ensure!(
        classes.contains(&(reply.code / 100)),
        "expected a {what} reply ({class}), got: {reply}"
    );
    Ok(())
}

#[then(regex = r"^mail from (\S+) to (\S+) is refused before DATA$")]
async fn refused_before_data(
    world: &mut MailWorld,
    from: String,
    to: String,
) -> anyhow::Result<()> {
    let (from, to) = (world.expand(&from)?, world.expand(&to)?);
    // Either refusal keeps the mail out; servers differ in where they put it (Postfix refuses
    // at RCPT, so that the log names the recipient: smtpd_delay_reject).
    for (verb, command) in [
        ("MAIL", format!("MAIL FROM:<{from}>")),
        ("RCPT", format!("RCPT TO:<{to}>")),
    ] {
        let reply = world.client()?.command(&command).await?;
        let refused = reply.code >= 400;
        if refused {
            let text = reply.to_string();
            world.note(format!("refused at {verb}: {}", text.trim_end()));
            world.record(reply);
            return Ok(());
        }
        world.record(reply);
    }
    let _ = world.client()?.command("RSET").await;
    bail!("an unauthenticated client got MAIL FROM:<{from}> and RCPT TO:<{to}> accepted")
}

/// Whether `code` matches `pattern`: three characters, each a digit or `x` for any digit.
fn code_matches(pattern: &str, code: u16) -> bool {
    let code = code.to_string();
    pattern.len() == 3
        && pattern
            .bytes()
            .zip(code.bytes())
            .all(|(p, c)| p == b'x' || p == c)
}

/// The replies to a pipelined batch, one per command and in order. Each item is a reply code,
/// `5xx` for any of a class, or alternatives joined by `/` (`5xx/250`) where the RFCs let the
/// server choose.
#[then(regex = r"^the replies are ([\dx/, ]+)$")]
async fn replies_are(world: &mut MailWorld, codes: String) -> anyhow::Result<()> {
    let expected: Vec<Vec<&str>> = codes
        .split(',')
        .map(|item| item.trim().split('/').map(str::trim).collect())
        .collect();
    for pattern in expected.iter().flatten() {
        ensure!(
            pattern.len() == 3 && pattern.bytes().all(|b| b == b'x' || b.is_ascii_digit()),
            "`{pattern}` is not a reply code pattern (three digits, or `x` for any digit)"
        );
    }
    let got: Vec<u16> = world.batch.iter().map(|r| r.code).collect();
    let matches = got.len() == expected.len()
        && got
            .iter()
            .zip(&expected)
            .all(|(code, alternatives)| alternatives.iter().any(|p| code_matches(p, *code)));
    ensure!(
        matches,
        "expected replies {codes}, got {got:?}:\n{}",
        world
            .batch
            .iter()
            .map(Reply::to_string)
            .collect::<Vec<_>>()
            .join("")
    );
    Ok(())
}

#[then(regex = r"^the server (advertises|does not advertise) (\S+)(?: (\S+))?$")]
async fn advertises(
    world: &mut MailWorld,
    polarity: String,
    keyword: String,
    param: String,
) -> anyhow::Result<()> {
    let client = world.client()?;
    let params = client.capabilities().get(&keyword.to_ascii_uppercase());
    let present = match params {
        Some(_) if param.is_empty() => true,
        Some(values) => values.iter().any(|v| v.eq_ignore_ascii_case(&param)),
        None => false,
    };
    let wanted = polarity == "advertises";
    let listed: Vec<String> = client
        .capabilities()
        .iter()
        .map(|(k, v)| format!("{k} {}", v.join(" ")).trim().to_owned())
        .collect();
    ensure!(
        present == wanted,
        "expected EHLO {} `{keyword} {param}`; it listed: {}",
        if wanted { "to list" } else { "not to list" },
        listed.join(", ")
    );
    Ok(())
}

#[then("every reply since EHLO carried an enhanced status code of its class")]
async fn enhanced_everywhere(world: &mut MailWorld) -> anyhow::Result<()> {
    ensure!(
        !world.since_ehlo.is_empty(),
        "no replies were collected after EHLO"
    );
    for reply in &world.since_ehlo {
        let enhanced = reply
            .enhanced()
            .ok_or_else(|| anyhow!("reply without an RFC 3463 enhanced status code: {reply}"))?;
        ensure!(
            enhanced.starts_with(char::from(b'0' + (reply.code / 100) as u8)),
            "enhanced code {enhanced} does not match the class of reply {reply}"
        );
    }
    Ok(())
}

#[then("the connection is closed")]
async fn connection_closed(world: &mut MailWorld) -> anyhow::Result<()> {
    let closed = world
        .client()?
        .read_until_closed(Duration::from_secs(5))
        .await?;
    ensure!(closed, "the server kept the connection open for 5 s");
    Ok(())
}

#[then("TLS is active")]
async fn tls_active(world: &mut MailWorld) -> anyhow::Result<()> {
    ensure!(world.client()?.is_tls(), "the connection is not TLS");
    Ok(())
}

#[then("no plain-text greeting arrives")]
async fn no_plain_greeting_step(world: &mut MailWorld) -> anyhow::Result<()> {
    let client = world.client()?;
    client.set_timeout(Duration::from_secs(2));
    super::no_plain_greeting(client.read_reply().await)
}

#[then("the injected command was not executed")]
async fn injection_not_executed(world: &mut MailWorld) -> anyhow::Result<()> {
    if world.reply()?.code != 220 {
        // Refusing STARTTLS when more input follows it is a safe answer too.
        return Ok(());
    }
    let client = world.client()?;
    if let Err(error) = client.send_line("NOOP").await {
        return closed_or(error);
    }
    let reply = match client.read_reply().await {
        Ok(reply) => reply,
        Err(error) => return closed_or(error),
    };
    ensure!(
        reply.code == 250,
        "the first reply inside TLS was {reply}, not the 250 for NOOP: the server executed a \
         command sent in clear text before the handshake (CVE-2011-0411 class)"
    );
    world.record(reply);
    Ok(())
}

/// Finds the scenario's message in an account's inbox; `None` when the target's mailboxes
/// cannot be read (the check is then reported as not verified).
async fn find_message(
    world: &mut MailWorld,
    who: &str,
    wait: bool,
) -> anyhow::Result<Option<Option<Vec<u8>>>> {
    let account = world.expand(who)?;
    let target = world.target()?;
    let Some(mailboxes) = target.mailboxes.clone() else {
        world.unverified = Some(format!(
            "delivery to {account} not verified: the target offers no IMAP port to read its mailboxes with"
        ));
        return Ok(None);
    };
    let id = world
        .message
        .as_ref()
        .map(|m| message_id(&m.token))
        .context("the scenario sent no message to look for")?;
    let deadline = tokio::time::Instant::now() + if wait { target.timeout } else { Duration::ZERO };
    loop {
        let found = mailboxes
            .find_message(&account, &id)
            .await
            .map_err(|e| anyhow!("looking for {id} in the inbox of {account}: {e}"))?;
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            return Ok(Some(found));
        }
        tokio::time::sleep(mailboxes.poll_interval()).await;
    }
}

/// The scenario's message as stored for `who`: `None` when the mailboxes cannot be read
/// (the check is then reported as not verified), an error when it is not there.
async fn stored_message(world: &mut MailWorld, who: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(found) = find_message(world, who, true).await? else {
        return Ok(None);
    };
    let account = world.expand(who)?;
    found
        .map(Some)
        .with_context(|| format!("the message is not in the inbox of {account}"))
}

#[then(regex = r"^(\{\w+\}) receives the message$")]
async fn receives(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    stored_message(world, &who).await.map(drop)
}

#[then(regex = r"^(\{\w+\}) does not receive the message$")]
async fn does_not_receive(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    // A server that queues before delivering needs a moment to show a mistake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(found) = find_message(world, &who, false).await? {
        ensure!(
            found.is_none(),
            "a refused message was delivered to {}",
            world.expand(&who)?
        );
    }
    Ok(())
}

#[then(regex = r"^(\{\w+\}) receives the message exactly as sent$")]
async fn receives_exactly(world: &mut MailWorld, who: String) -> anyhow::Result<()> {
    let Some(stored) = stored_message(world, &who).await? else {
        return Ok(());
    };
    let exact = sent_exactly(world)?;
    if let Some(why) = message::differs_from_sent(&exact, &stored) {
        bail!(
            "{why}\nsent:   {}\nstored: {}",
            crate::clients::transcript::escape_bytes(&exact),
            crate::clients::transcript::escape_bytes(&stored)
        );
    }
    Ok(())
}

/// The scenario's message as it was sent, for a comparison.
fn sent_exactly(world: &MailWorld) -> anyhow::Result<Vec<u8>> {
    world
        .message
        .as_ref()
        .and_then(|m| m.exact.clone())
        .context("the scenario's message has no exact form to compare")
}

#[then(regex = r"^(\{\w+\}) receives the message with Return-Path <(.*)> and a Received header$")]
async fn receives_with_trace(
    world: &mut MailWorld,
    who: String,
    path: String,
) -> anyhow::Result<()> {
    let Some(stored) = stored_message(world, &who).await? else {
        return Ok(());
    };
    let path = format!("<{}>", world.expand(&path)?);
    let sent = sent_exactly(world)?;
    let (header, _) = message::split(&stored);
    let header = String::from_utf8_lossy(header);
    // The trace fields are those above the message's own (RFC 5321 4.4), in any case.
    let trace = message::trace_block(&sent, &stored).with_context(|| {
        format!("the stored message lost the first field the client sent:\n{header}")
    })?;
    let return_paths: Vec<&message::Field> = trace.iter().filter(|f| f.is("Return-Path")).collect();
    ensure!(
        return_paths
            .iter()
            .any(|f| f.value.eq_ignore_ascii_case(path.as_bytes())),
        "no `Return-Path: {path}` above the message's own fields{}:\n{header}",
        match return_paths.first() {
            Some(other) => format!(" (it has `{}`)", other.show()),
            None => String::new(),
        }
    );
    ensure!(
        trace.iter().any(|f| f.is("Received")),
        "no Received field above the message's own fields:\n{header}"
    );
    Ok(())
}

fn legacy_version(text: &str) -> anyhow::Result<LegacyVersion> {
    match text {
        "1.0" => Ok(LegacyVersion::Tls10),
        "1.1" => Ok(LegacyVersion::Tls11),
        other => bail!("TLS {other} is not a legacy version this step can offer"),
    }
}

#[then(regex = r"^the (\w+) port refuses a TLS (1\.0|1\.1) handshake$")]
async fn refuses_legacy(
    world: &mut MailWorld,
    role: String,
    version: String,
) -> anyhow::Result<()> {
    let version = legacy_version(&version)?;
    let target = world.target()?;
    let sni = target.tls.sni().map(str::to_owned);
    let outcome = if Target::is_implicit_tls(&role) {
        probe_legacy_tls_at(
            &target.addr(&role)?,
            version,
            sni.as_deref(),
            target.timeout,
        )
        .await?
    } else if role == "pop3" {
        super::pop3::stls_then_probe_legacy(world, version, sni.as_deref()).await?
    } else if role == "imap" {
        super::imap::starttls_then_probe_legacy(world, version, sni.as_deref()).await?
    } else {
        let mut client = target.connect(&role).await?;
        client.read_reply().await.context("reading the greeting")?;
        client.ehlo(EHLO_NAME).await?;
        let outcome = client
            .starttls_then_probe_legacy(version, sni.as_deref())
            .await;
        world
            .other_transcripts
            .push(client.transcript().to_string());
        outcome?
    };
    match outcome {
        LegacyOutcome::Refused { .. } => Ok(()),
        LegacyOutcome::Accepted { server_version } => bail!(
            "the {role} port accepted a {version} ClientHello (ServerHello version {server_version:#06x}); RFC 8996 forbids it"
        ),
    }
}

#[then(regex = r"^the (\w+) port completes a TLS handshake at version 1.2 or newer$")]
async fn modern_tls(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    if role == "pop3" || role == "pop3s" {
        return super::pop3::modern_tls(world, &role).await;
    }
    if role == "imap" || role == "imaps" {
        return super::imap::modern_tls(world, &role).await;
    }
    let target = world.target()?;
    let mut client = target.connect(&role).await?;
    let result = async {
        if !client.is_tls() {
            client.read_reply().await.context("reading the greeting")?;
            client.ehlo(EHLO_NAME).await?;
            let reply = client.starttls(&target.tls).await?;
            ensure!(reply.code == 220, "STARTTLS was refused: {reply}");
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

    #[test]
    fn login_failures_compare_without_ids_and_names() {
        let reply = |text: &str| Reply {
            code: 535,
            lines: vec![text.to_owned()],
        };
        let a = reply("5.7.8 Authentication failed 4f2a9c1e - mx7 for alice@example.test");
        let b = reply("5.7.8 Authentication failed 91bb03d7 - mx7 for nobody@example.test");
        assert_eq!(
            comparable(&a, "alice@example.test"),
            comparable(&b, "nobody@example.test")
        );
        let told = reply("5.7.8 No such user");
        assert_ne!(comparable(&a, "x"), comparable(&told, "x"));
        let other_status =
            reply("5.7.9 Authentication failed 4f2a9c1e - mx7 for alice@example.test");
        assert_ne!(
            comparable(&a, "alice@example.test"),
            comparable(&other_status, "alice@example.test")
        );
    }

    #[test]
    fn reply_code_patterns() {
        assert!(code_matches("550", 550));
        assert!(code_matches("5xx", 554));
        assert!(!code_matches("5xx", 250));
        assert!(!code_matches("55", 550));
    }

    #[test]
    fn composed_messages_get_what_they_lack() {
        let plain = well_formed(
            b"Subject: x\r\n\r\nDate: in the body\r\n",
            "t.1",
            "a@h.test",
        );
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            format!(
                "Message-ID: <t.1@harness.test>\r\nFrom: <a@h.test>\r\n{DATE_FIELD}\
                 Subject: x\r\n\r\nDate: in the body\r\n"
            )
        );
        let whole = b"from: Me <me@h.test>\r\nDATE: Mon, 30 Nov 2026\r\n\r\nbody\r\n";
        let message = well_formed(whole, "t.2", "a@h.test");
        assert_eq!(
            message,
            [&b"Message-ID: <t.2@harness.test>\r\n"[..], whole].concat()
        );
        assert!(message::has_message_id(&message, &message_id("t.2")));
    }
}

#[then("the client got nothing in clear text between the STARTTLS reply and the handshake")]
async fn no_plaintext_after_go_ahead(world: &mut MailWorld) -> anyhow::Result<()> {
    let injected = world.client()?.plaintext_after_go_ahead().to_vec();
    ensure!(
        injected.is_empty(),
        "after its go-ahead for STARTTLS the server sent \"{}\" in clear text before the \
         handshake; a client that reads it as a response inside TLS is open to response \
         injection, and a server never needs to send anything there",
        crate::clients::transcript::escape_bytes(&injected)
    );
    Ok(())
}

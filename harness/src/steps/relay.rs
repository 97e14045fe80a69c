//! Relay steps: the scenario gets a remote domain of its own in the harness's DNS, routed to the
//! harness's MX (the capture sink) as the scenario says, sends mail there through the target,
//! and checks what the MX received and what came back to the sender.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use cucumber::gherkin::Step;
use cucumber::{given, then};
use fake_dns::Record;

use super::MailWorld;
use crate::message::{self, Field};
use crate::relay_env::{RelayEnv, UNNAMED_CLIENT};
use crate::sink::{Behaviour, Match, Received, Stage};

/// The relay side of a scenario.
#[derive(Debug, Default)]
pub(super) struct RelayState {
    /// The scenario's remote domain.
    domain: Option<String>,
    /// The message as the harness's MX received it.
    received: Option<Received>,
}

impl MailWorld {
    fn relay_env(&self) -> anyhow::Result<Arc<RelayEnv>> {
        self.target()?.relay.clone().ok_or_else(|| {
            anyhow!("this scenario needs the harness's DNS and MX: the target profile has no `relay` section")
        })
    }

    /// The scenario's remote recipient, for `{remote}`.
    pub(super) fn remote_recipient(&self) -> anyhow::Result<String> {
        let domain = self.relay.domain.as_ref().context(
            "{remote} needs a remote domain: start with a `Given a remote domain ...` step",
        )?;
        Ok(format!("rcpt@{domain}"))
    }

    /// An address in a domain the harness's DNS says does not exist, for `{nowhere}`.
    pub(super) fn nowhere_sender(&self) -> anyhow::Result<String> {
        let env = self.relay_env()?;
        Ok(format!(
            "nobody@nowhere-{}.{}",
            super::unique_token().replace('.', "-"),
            env.settings.remote_domain
        ))
    }

    /// Makes the scenario's remote domain: a fresh subdomain of the profile's remote domain,
    /// unique across runs too, since a bounce from an earlier run may still be in a mailbox.
    fn new_remote_domain(&mut self) -> anyhow::Result<(Arc<RelayEnv>, String)> {
        let env = self.relay_env()?;
        let domain = format!(
            "s{}.{}",
            super::unique_token().replace('.', "-"),
            env.settings.remote_domain
        );
        self.relay.domain = Some(domain.clone());
        Ok((env, domain))
    }

    fn recipient_and_env(&self) -> anyhow::Result<(String, Arc<RelayEnv>)> {
        Ok((self.remote_recipient()?, self.relay_env()?))
    }
}

fn zone_error(e: fake_dns::ZoneError) -> anyhow::Error {
    anyhow!("changing the harness's DNS: {e}")
}

#[given("a remote domain whose MX is the harness")]
async fn remote_at_harness(world: &mut MailWorld) -> anyhow::Result<()> {
    let (env, domain) = world.new_remote_domain()?;
    env.point(&domain, &[(10, "mx1")]).map_err(zone_error)
}

#[given("a remote domain with these MX records:")]
async fn remote_with_mx(world: &mut MailWorld, step: &Step) -> anyhow::Result<()> {
    let table = step
        .table
        .as_ref()
        .context("this step needs a table of preference | host")?;
    let mut hosts = Vec::new();
    for row in table.rows.iter().skip(1) {
        let [preference, host] = row.as_slice() else {
            bail!("each row needs two cells, preference and host: {row:?}");
        };
        let preference: u16 = preference
            .trim()
            .parse()
            .with_context(|| format!("preference {preference:?} is not a number"))?;
        hosts.push((preference, host.trim().to_owned()));
    }
    let (env, domain) = world.new_remote_domain()?;
    let hosts: Vec<(u16, &str)> = hosts.iter().map(|(p, h)| (*p, h.as_str())).collect();
    env.point(&domain, &hosts).map_err(zone_error)
}

#[given("a remote domain with no MX but an address record at the harness")]
async fn remote_implicit_mx(world: &mut MailWorld) -> anyhow::Result<()> {
    let (env, domain) = world.new_remote_domain()?;
    let ip = env.host_addr("mx1")?;
    let record = match ip {
        std::net::IpAddr::V4(v4) => Record::A(v4),
        std::net::IpAddr::V6(v6) => Record::Aaaa(v6),
    };
    env.dns
        .set_records(&domain, vec![record])
        .map_err(zone_error)
}

#[given("a remote domain with a null MX")]
async fn remote_null_mx(world: &mut MailWorld) -> anyhow::Result<()> {
    let (env, domain) = world.new_remote_domain()?;
    let null = Record::Mx {
        preference: 0,
        exchange: ".".into(),
    };
    env.dns.set_records(&domain, vec![null]).map_err(zone_error)
}

#[given("a remote domain that does not exist")]
async fn remote_missing(world: &mut MailWorld) -> anyhow::Result<()> {
    // A fresh name with no records: the harness's DNS answers NXDOMAIN.
    world.new_remote_domain().map(drop)
}

/// Parses `"451 4.7.1 text"` into a scripted reply at RCPT.
fn rcpt_reply(reply: &str) -> anyhow::Result<Behaviour> {
    let (code, text) = reply
        .split_once(' ')
        .with_context(|| format!("{reply:?} is not `code text`"))?;
    Ok(Behaviour::Reply {
        stage: Stage::Rcpt,
        code: code
            .parse()
            .with_context(|| format!("{code:?} is not a reply code"))?,
        text: text.to_owned(),
    })
}

#[given(regex = r#"^the harness's MX answers "(.*)" to the first RCPT for the remote recipient$"#)]
async fn first_rcpt_fails(world: &mut MailWorld, reply: String) -> anyhow::Result<()> {
    let (recipient, env) = world.recipient_and_env()?;
    env.sink.script(
        Match::Address(recipient),
        vec![rcpt_reply(&reply)?, Behaviour::Accept],
    );
    Ok(())
}

#[given(regex = r#"^the harness's MX answers "(.*)" to every RCPT for the remote recipient$"#)]
async fn every_rcpt_fails(world: &mut MailWorld, reply: String) -> anyhow::Result<()> {
    let (recipient, env) = world.recipient_and_env()?;
    env.sink
        .script(Match::Address(recipient), vec![rcpt_reply(&reply)?]);
    Ok(())
}

#[given("the harness's MX greylists the remote recipient for 2 seconds")]
async fn greylists(world: &mut MailWorld) -> anyhow::Result<()> {
    let (recipient, env) = world.recipient_and_env()?;
    env.sink.script(
        Match::Address(recipient),
        vec![Behaviour::Greylist { seconds: 2 }],
    );
    Ok(())
}

#[given("the harness's MX drops the first connection after the message data")]
async fn drops_first(world: &mut MailWorld) -> anyhow::Result<()> {
    let (recipient, env) = world.recipient_and_env()?;
    env.sink.script(
        Match::Address(recipient),
        vec![
            Behaviour::Disconnect {
                stage: Stage::EndOfData,
            },
            Behaviour::Accept,
        ],
    );
    Ok(())
}

#[then(regex = r"^the harness's MX receives the message within (\d+) seconds$")]
async fn mx_receives(world: &mut MailWorld, wait: u64) -> anyhow::Result<()> {
    mx_receives_within(world, Duration::from_secs(wait)).await
}

/// The retry scenarios wait as long as the profile says the target takes to retry
/// (`relay.retry_within_secs`; the scenarios are skipped without it), and 15 seconds more for
/// the delivery itself.
#[then("the harness's MX receives the message once the target has retried")]
async fn mx_receives_retried(world: &mut MailWorld) -> anyhow::Result<()> {
    let retry = world
        .target()?
        .profile
        .relay
        .as_ref()
        .and_then(|r| r.retry_within_secs)
        .context("the scenario needs relay.retry_within_secs in the target profile (tag it @relay-retry)")?;
    mx_receives_within(world, Duration::from_secs(retry + 15)).await
}

async fn mx_receives_within(world: &mut MailWorld, wait: Duration) -> anyhow::Result<()> {
    let (recipient, env) = world.recipient_and_env()?;
    let id = world
        .message
        .as_ref()
        .map(|m| super::smtp::message_id(&m.token))
        .context("the scenario sent no message")?;
    let Some(received) = env.sink.wait_for_message(&recipient, wait).await else {
        let attempts = env.sink.attempts_for(&recipient);
        let tried: Vec<String> = attempts
            .iter()
            .map(|s| format!("{} from {}: {}", s.local, s.peer, s.outcome))
            .collect();
        bail!(
            "the harness's MX received nothing for {recipient} within {wait:?}; sessions that named it: {tried:?}"
        );
    };
    ensure!(
        message::has_message_id(&received.data, &id),
        "the harness's MX received a message for {recipient}, but not the one sent (no Message-ID {id})"
    );
    world.relay.received = Some(received);
    Ok(())
}

fn received(world: &MailWorld) -> anyhow::Result<&Received> {
    world
        .relay
        .received
        .as_ref()
        .context("no message has been received by the harness's MX yet")
}

#[then(regex = r"^the message reached the harness's MX at (mx1|mx2)$")]
async fn reached_at(world: &mut MailWorld, name: String) -> anyhow::Result<()> {
    let env = world.relay_env()?;
    let want = env.host_addr(&name)?;
    let got = received(world)?.local.ip();
    ensure!(
        got == want,
        "the message arrived at {got}, not at {name} ({want}): the target did not follow the MX preferences"
    );
    Ok(())
}

#[then(regex = r"^the message was accepted on attempt (\d+) or later$")]
async fn accepted_on_attempt(world: &mut MailWorld, attempt: usize) -> anyhow::Result<()> {
    let got = received(world)?.attempt;
    ensure!(
        got >= attempt,
        "the message was accepted on attempt {got}; the scripted refusals should have made that at least {attempt}"
    );
    Ok(())
}

#[then(
    "the relayed message starts with the target's Received header for the submission and has no Return-Path"
)]
async fn received_chain(world: &mut MailWorld) -> anyhow::Result<()> {
    let data = received(world)?.data.clone();
    let fields = message::fields(&data);
    ensure!(
        !fields.iter().any(|f| f.is("Return-Path")),
        "the relayed message carries a Return-Path header, which only final delivery adds (RFC 5321 4.4)"
    );
    let first = fields
        .first()
        .filter(|f| f.is("Received"))
        .map(Field::show)
        .with_context(|| {
            format!(
                "the relayed message does not start with a Received header (RFC 5321 4.4): {}",
                fields.first().map(Field::show).unwrap_or_default()
            )
        })?;
    // The field naming the harness's submission: `from harness.test` or its address, in
    // whichever clause or comment the server puts them.
    ensure!(
        first.contains(super::smtp::EHLO_NAME) || first.contains("127.0.0.1"),
        "the top Received header does not name the submitting client ({} / 127.0.0.1): {first}",
        super::smtp::EHLO_NAME
    );
    let message_id = fields
        .iter()
        .position(|f| f.is("Message-ID"))
        .context("the relayed message lost its Message-ID")?;
    ensure!(
        message_id > 0,
        "the Received header is not above the message's own header fields"
    );
    Ok(())
}

#[then(
    regex = r"^(\{\w+\}) receives a delivery status notification for the remote recipient within (\d+) seconds$"
)]
async fn receives_dsn(world: &mut MailWorld, who: String, wait: u64) -> anyhow::Result<()> {
    let account = world.expand(&who)?;
    let recipient = world.remote_recipient()?;
    let target = world.target()?;
    let Some(mailboxes) = target.mailboxes.clone() else {
        world.unverified = Some(format!(
            "the bounce to {account} is not verified: the target offers no IMAP port to read its mailboxes with"
        ));
        return Ok(());
    };
    // RFC 3461 makes the RFC 3464 format part of the DSN extension; a server without it may
    // report a failure in any form (RFC 5321 6.1 asks only that it report it).
    let dsn_offered = world
        .client
        .as_ref()
        .is_some_and(|c| c.capabilities().contains_key("DSN"));
    let sent_id = world
        .message
        .as_ref()
        .map(|m| super::smtp::message_id(&m.token));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        // The scenario's remote domain is unique, so mail that names the recipient is about it;
        // the mailbox's other mail is never read.
        let mentioning = mailboxes
            .messages_mentioning(&account, &recipient)
            .await
            .map_err(|e| anyhow!("looking for a bounce in the inbox of {account}: {e}"))?;
        if let Some(verdict) =
            bounce_verdict(&mentioning, &recipient, sent_id.as_deref(), dsn_offered)
        {
            return verdict.map(|note| {
                if let Some(note) = note {
                    world.note(note);
                }
            });
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no delivery status notification for {recipient} reached {account} within {:?}",
                Duration::from_secs(wait)
            );
        }
        tokio::time::sleep(mailboxes.poll_interval().max(Duration::from_millis(100))).await;
    }
}

/// What the mail that mentions the failed `recipient` says: `None` while none of it is a bounce
/// for it, else the verdict, with a note for the report when the server chose a form the RFCs
/// leave open.
///
/// A bounce is a message of the target's own (not the harness's message, whose Message-ID is
/// `sent_id`, nor a copy of it) that names the recipient. An RFC 3464 report must say the
/// delivery failed with a permanent status; reports of delays are passed over. A bounce in
/// another form is a finding only when the server offers the DSN extension (RFC 3461).
fn bounce_verdict(
    mentioning: &[Vec<u8>],
    recipient: &str,
    sent_id: Option<&str>,
    dsn_offered: bool,
) -> Option<anyhow::Result<Option<String>>> {
    let lower_recipient = recipient.to_ascii_lowercase();
    let mut plain = None;
    for message in mentioning {
        if sent_id.is_some_and(|id| crate::message::has_message_id(message, id)) {
            continue;
        }
        let text = String::from_utf8_lossy(message).to_ascii_lowercase();
        let report = text.contains("multipart/report") && text.contains("delivery-status");
        if !report {
            plain.get_or_insert(());
            continue;
        }
        if !dsn_field(&text, "final-recipient").is_some_and(|v| v.contains(&lower_recipient)) {
            continue;
        }
        let action = dsn_field(&text, "action").unwrap_or("");
        if action.starts_with("delayed") {
            continue;
        }
        return Some((|| {
            ensure!(
                action.starts_with("failed"),
                "the bounce for {recipient} does not say `Action: failed` (it says `{action}`)"
            );
            ensure!(
                dsn_field(&text, "status")
                    .is_some_and(|v| v.starts_with("5.") || v.starts_with("4.4.7")),
                "the bounce for {recipient} gives no permanent status"
            );
            Ok(None)
        })());
    }
    plain.map(|()| {
        ensure!(
            !dsn_offered,
            "the bounce for {recipient} is not an RFC 3464 multipart/report, though the server offers \
             the DSN extension (RFC 3461 6)"
        );
        Ok(Some(
            "reports a failed delivery in a plain-text bounce, not an RFC 3464 report (legal \
             without the DSN extension)"
                .to_owned(),
        ))
    })
}

/// The value of the first `name:` line of a delivery-status part (`text` lower-cased), trimmed.
fn dsn_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        (field.trim_end() == name).then(|| value.trim())
    })
}

#[then(
    regex = r"^(\{\w+\}) is told the remote recipient cannot be reached, at RCPT or by a delivery status notification within (\d+) seconds$"
)]
async fn told_unreachable(world: &mut MailWorld, who: String, wait: u64) -> anyhow::Result<()> {
    let reply = world.reply()?.clone();
    match reply.code {
        500..=599 if world.message.is_none() => {
            // Refused at RCPT: the sender knows at once (RFC 7505 3, section 4.2 for null MX).
            Ok(())
        }
        400..=499 => bail!(
            "the recipient's domain can never receive mail, but the server answered with a temporary failure: {reply}"
        ),
        250 => receives_dsn(world, who, wait).await,
        _ => bail!("unexpected reply to the message: {reply}"),
    }
}

#[given(regex = r"^a client connected to the (\w+) port from an address without reverse DNS$")]
async fn connected_unnamed(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    let target = world.target()?;
    let addr = target.addr(&role)?;
    let client =
        crate::clients::smtp::SmtpClient::connect_from(&addr, UNNAMED_CLIENT, target.timeout)
            .await
            .with_context(|| format!("connecting to {addr} from {UNNAMED_CLIENT}"))?;
    super::smtp::greeted(world, client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const RCPT: &str = "rcpt@x1.remote.test";
    const SENT: &str = "<t.1@harness.test>";

    fn report(action: &str, status: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.test\r\nMessage-ID: <b1@mx.test>\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n\r\n\
             Final-Recipient: rfc822; {RCPT}\r\nAction: {action}\r\nStatus: {status}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn plain() -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.test\r\nMessage-ID: <b2@mx.test>\r\nSubject: failure notice\r\n\r\n\
             <{RCPT}>:\r\n550 5.1.1 no such user\r\n\r\n--- header\r\n\r\nMessage-ID: {SENT}\r\n"
        )
        .into_bytes()
    }

    fn copy_of_sent() -> Vec<u8> {
        format!("Message-ID: {SENT}\r\nTo: <{RCPT}>\r\n\r\nhello\r\n").into_bytes()
    }

    #[test]
    fn nothing_but_the_harness_own_message_is_no_bounce_yet() {
        assert!(bounce_verdict(&[copy_of_sent()], RCPT, Some(SENT), false).is_none());
        assert!(bounce_verdict(&[], RCPT, Some(SENT), false).is_none());
    }

    #[test]
    fn a_failed_report_passes_and_a_delay_report_is_passed_over() {
        let ok = bounce_verdict(&[report("failed", "5.1.1")], RCPT, Some(SENT), true);
        assert!(matches!(ok, Some(Ok(None))));
        assert!(bounce_verdict(&[report("delayed", "4.4.1")], RCPT, Some(SENT), true).is_none());
        let wrong = bounce_verdict(&[report("failed", "4.2.2")], RCPT, Some(SENT), true);
        assert!(matches!(wrong, Some(Err(_))));
        let relayed = bounce_verdict(&[report("relayed", "2.0.0")], RCPT, Some(SENT), true);
        assert!(matches!(relayed, Some(Err(_))));
    }

    #[test]
    fn a_plain_bounce_is_legal_only_without_the_dsn_extension() {
        let without = bounce_verdict(&[plain()], RCPT, Some(SENT), false);
        assert!(matches!(without, Some(Ok(Some(_)))));
        let with = bounce_verdict(&[plain()], RCPT, Some(SENT), true);
        let err = with.unwrap().unwrap_err().to_string();
        assert!(err.contains("RFC 3461"), "{err}");
    }

    #[test]
    fn a_report_is_preferred_to_a_plain_message_that_comes_first() {
        let verdict = bounce_verdict(
            &[plain(), report("failed", "5.1.1")],
            RCPT,
            Some(SENT),
            true,
        );
        assert!(matches!(verdict, Some(Ok(None))));
    }
}

//! `--verify`: after the run, read every mailbox that was sent to and look for each message the
//! server acknowledged, by its Message-ID; and check that the store agrees with itself: over
//! IMAP, UIDs unique and ascending, as many messages fetched as EXISTS said and UIDNEXT above
//! the highest UID (RFC 3501 section 2.3.1.1), and over POP3 the same number of messages.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use super::phase::Phase;
use super::session::{Failure, Record, imap_login};
use super::stats::VerifySummary;
use super::{Ctx, Progress};
use crate::clients::pop3::Pop3Client;

/// Most problems of each kind kept as examples.
const EXAMPLES: usize = 10;

/// Reads the mailboxes until every acknowledged message is found or `--verify-wait` passes:
/// an MTA may acknowledge on port 25 before its delivery agent has filed the message. The store
/// checks of the last reading count. Messages the client `cut_off` on purpose must not be
/// there at all.
pub(super) async fn verify(
    ctx: &Ctx,
    acknowledged: Vec<(usize, String)>,
    cut_off: Vec<(usize, String)>,
    progress: &Progress,
) -> anyhow::Result<VerifySummary> {
    let mut by_account: BTreeMap<usize, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (account, id) in &acknowledged {
        by_account.entry(*account).or_default().0.push(id.clone());
    }
    for (account, id) in &cut_off {
        by_account.entry(*account).or_default().1.push(id.clone());
    }
    let deadline = Instant::now() + ctx.options.verify_wait;
    loop {
        let mut summary = VerifySummary {
            acknowledged: acknowledged.len() as u64,
            cut_off: cut_off.len() as u64,
            ..VerifySummary::default()
        };
        progress.note(&format!(
            "verify: reading {} mailboxes for {} acknowledged messages",
            by_account.len(),
            acknowledged.len()
        ));
        for (&account, (ids, cut)) in &by_account {
            if account >= ctx.accounts.len() {
                bail!(
                    "--verify: messages went to postmaster, whose mailbox the harness cannot read"
                );
            }
            let reading = read_mailbox(ctx, account).await.map_err(|failure| {
                anyhow::anyhow!(
                    "--verify cannot read the mailbox of {}: {}",
                    ctx.accounts[account].address,
                    failure.detail
                )
            })?;
            summary.mailboxes += 1;
            for problem in reading.problems {
                summary.inconsistent += 1;
                if summary.inconsistent_examples.len() < EXAMPLES {
                    summary
                        .inconsistent_examples
                        .push(format!("{}: {problem}", ctx.accounts[account].address));
                }
            }
            for id in ids {
                match reading.ids.get(id.as_str()).copied().unwrap_or(0) {
                    0 => {
                        summary.missing += 1;
                        if summary.missing_examples.len() < EXAMPLES {
                            summary.missing_examples.push(id.clone());
                        }
                    }
                    1 => {}
                    _ => summary.duplicated += 1,
                }
            }
            summary.cut_off_filed += cut
                .iter()
                .filter(|id| reading.ids.contains_key(id.as_str()))
                .count() as u64;
        }
        if summary.missing == 0 || Instant::now() >= deadline {
            return Ok(summary);
        }
        progress.note(&format!(
            "verify: {} acknowledged messages not in the mailboxes yet; looking again",
            summary.missing
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What one mailbox holds of this run, and what is wrong with it.
#[derive(Debug, Default)]
struct Reading {
    /// How many times each of this run's Message-IDs is in INBOX.
    ids: HashMap<String, u32>,
    /// Ways the store disagrees with itself.
    problems: Vec<String>,
}

/// Reads the account's INBOX over IMAP when offered, else POP3; with both, POP3's count must
/// match IMAP's.
async fn read_mailbox(ctx: &Ctx, account: usize) -> Result<Reading, Failure> {
    let ports = &ctx.profile.ports;
    let imap = ports.imaps.is_some() || ports.imap.is_some();
    let pop3 = ports.pop3s.is_some() || ports.pop3.is_some();
    let mut reading = Reading::default();
    let headers = if imap {
        let (headers, exists) = imap_headers(ctx, account, &mut reading.problems).await?;
        if pop3 {
            let (count, _) = pop3_headers(ctx, account, false, &mut reading.problems).await?;
            if count != exists {
                reading.problems.push(format!(
                    "POP3 STAT counts {count} messages, IMAP EXISTS {exists}"
                ));
            }
        }
        headers
    } else {
        pop3_headers(ctx, account, true, &mut reading.problems)
            .await?
            .1
    };
    for header in headers {
        if let Some(id) = message_id(&header)
            && id.contains(&ctx.run_id)
        {
            *reading.ids.entry(id).or_insert(0) += 1;
        }
    }
    Ok(reading)
}

/// The Message-ID headers of INBOX and its EXISTS count, noting in `problems` what does not
/// add up.
async fn imap_headers(
    ctx: &Ctx,
    account: usize,
    problems: &mut Vec<String>,
) -> Result<(Vec<Vec<u8>>, u32), Failure> {
    let (mut client, _) = imap_login(ctx, account, &mut Record::default()).await?;
    let selected = client
        .select("INBOX")
        .await
        .map_err(|e| Failure::client(Phase::Select, e))?;
    let exists = selected.exists.unwrap_or(0);
    let mut headers = Vec::new();
    let mut fetches = Vec::new();
    if exists > 0 {
        // Large mailboxes make a long response; allow for it.
        client.set_timeout(ctx.options.timeout.max(Duration::from_secs(120)));
        let result = client
            .command("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            .await
            .map_err(|e| Failure::client(Phase::Fetch, e))?;
        for fetch in result.fetches() {
            fetches.push((fetch.seq, fetch.uid()));
            if let Some(header) = fetch.body("HEADER.FIELDS (MESSAGE-ID)") {
                headers.push(header.to_vec());
            }
        }
    }
    let _ = client.logout().await;
    problems.extend(uid_problems(exists, selected.uidnext, fetches));
    Ok((headers, exists))
}

/// What is wrong with a mailbox's UIDs, given EXISTS, UIDNEXT and the `(sequence number, UID)`
/// of each FETCH response to `1:*`.
fn uid_problems(
    exists: u32,
    uidnext: Option<u32>,
    mut fetches: Vec<(u32, Option<u32>)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    fetches.sort_by_key(|(seq, _)| *seq);
    fetches.dedup_by_key(|(seq, _)| *seq);
    if fetches.len() != exists as usize {
        problems.push(format!(
            "SELECT said {exists} EXISTS, FETCH 1:* returned {} messages",
            fetches.len()
        ));
    }
    let mut last: Option<(u32, u32)> = None;
    for (seq, uid) in fetches {
        let Some(uid) = uid else {
            problems.push(format!("message {seq} has no UID"));
            continue;
        };
        if let Some((last_seq, last_uid)) = last
            && uid <= last_uid
        {
            problems.push(format!(
                "message {seq} has UID {uid}, not above message {last_seq}'s UID {last_uid}"
            ));
        }
        last = Some((seq, uid));
    }
    match (uidnext, last) {
        (None, _) => problems.push("SELECT gave no UIDNEXT".into()),
        (Some(next), Some((seq, highest))) if next <= highest => problems.push(format!(
            "UIDNEXT {next} is not above the highest UID, {highest} (message {seq})"
        )),
        _ => {}
    }
    problems
}

/// Logs in over POP3 and returns STAT's count and, when `tops`, every message's header; UIDL
/// values must be unique.
async fn pop3_headers(
    ctx: &Ctx,
    account: usize,
    tops: bool,
    problems: &mut Vec<String>,
) -> Result<(u32, Vec<Vec<u8>>), Failure> {
    let ports = &ctx.profile.ports;
    let (port, implicit) = match (ports.pop3s, ports.pop3) {
        (Some(port), _) => (port, true),
        (None, Some(port)) => (port, false),
        (None, None) => return Ok((0, Vec::new())),
    };
    let mut client = Pop3Client::connect(&ctx.profile.addr(port), ctx.options.timeout)
        .await
        .map_err(|e| Failure::client(Phase::Connect, e))?;
    client.stop_transcript();
    let tls = |e| Failure::client(Phase::Tls, e);
    if implicit {
        client.tls_handshake(&ctx.tls).await.map_err(tls)?;
    }
    client
        .greeting()
        .await
        .map_err(|e| Failure::client(Phase::Greeting, e))?;
    if !implicit {
        client.stls(&ctx.tls).await.map_err(tls)?;
    }
    let account = &ctx.accounts[account];
    let login = client
        .user_pass(&account.address, &account.password)
        .await
        .map_err(|e| Failure::client(Phase::Login, e))?;
    if !login.ok {
        return Err(Failure::client(
            Phase::Login,
            crate::clients::ClientError::Io {
                while_doing: format!("logging in: -ERR {}", login.text),
                source: std::io::Error::other("login refused"),
            },
        ));
    }
    let (count, _) = client
        .stat()
        .await
        .map_err(|e| Failure::client(Phase::Stat, e))?
        .unwrap_or((0, 0));
    // UIDL is optional (RFC 1939 section 7): a server without it is not checked.
    if let Ok(Ok(uidls)) = client.uidl().await {
        if uidls.len() != count as usize {
            problems.push(format!(
                "POP3 STAT counts {count} messages, UIDL lists {}",
                uidls.len()
            ));
        }
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for (message, uidl) in &uidls {
            if let Some(first) = seen.insert(uidl, *message) {
                problems.push(format!(
                    "POP3 messages {first} and {message} share the UIDL {uidl}"
                ));
            }
        }
    }
    let mut headers = Vec::new();
    if tops {
        for message in 1..=count {
            if let Ok(Ok(top)) = client.top(message, 0).await {
                headers.push(top);
            }
        }
    }
    let _ = client.quit().await;
    Ok((count, headers))
}

/// The Message-ID field's value in a header block, unfolded and trimmed.
fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return Some(value.trim().to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{message_id, uid_problems};

    #[test]
    fn message_ids_are_found_in_any_case_and_unfolded() {
        assert_eq!(
            message_id(b"Message-ID: <a.1@x>\r\n\r\n").as_deref(),
            Some("<a.1@x>")
        );
        assert_eq!(
            message_id(b"Subject: x\r\nmessage-id:\r\n <a.2@x>\r\n").as_deref(),
            Some("<a.2@x>")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\n"), None);
    }

    #[test]
    fn uids_must_ascend_and_stay_below_uidnext() {
        assert!(
            uid_problems(3, Some(9), vec![(2, Some(5)), (1, Some(2)), (3, Some(8))]).is_empty()
        );
        assert!(uid_problems(0, Some(1), vec![]).is_empty());
        let problems = uid_problems(3, Some(8), vec![(1, Some(2)), (2, Some(2)), (3, Some(8))]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("not above message 1's UID 2"),
            "{problems:?}"
        );
        assert!(problems[1].contains("UIDNEXT 8"), "{problems:?}");
        let problems = uid_problems(4, None, vec![(1, Some(1)), (2, None)]);
        assert!(
            problems.iter().any(|p| p.contains("4 EXISTS")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("no UID")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("no UIDNEXT")),
            "{problems:?}"
        );
    }
}

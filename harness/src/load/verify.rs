//! `--verify`: after the run, read every mailbox that was sent to and look for each message the
//! server acknowledged, by its Message-ID.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use super::session::{Failure, Record, imap_login};
use super::stats::VerifySummary;
use super::{Ctx, Progress};
use crate::clients::pop3::Pop3Client;

/// Reads the mailboxes until every acknowledged message is found or `--verify-wait` passes:
/// an MTA may acknowledge on port 25 before its delivery agent has filed the message.
pub(super) async fn verify(
    ctx: &Ctx,
    acknowledged: Vec<(usize, String)>,
    progress: &Progress,
) -> anyhow::Result<VerifySummary> {
    let mut by_account: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (account, id) in &acknowledged {
        by_account.entry(*account).or_default().push(id.clone());
    }
    let deadline = Instant::now() + ctx.options.verify_wait;
    loop {
        let mut summary = VerifySummary {
            acknowledged: acknowledged.len() as u64,
            ..VerifySummary::default()
        };
        progress.note(&format!(
            "verify: reading {} mailboxes for {} acknowledged messages",
            by_account.len(),
            acknowledged.len()
        ));
        for (&account, ids) in &by_account {
            if account >= ctx.accounts.len() {
                bail!(
                    "--verify: messages went to postmaster, whose mailbox the harness cannot read"
                );
            }
            let found = read_ids(ctx, account).await.map_err(|failure| {
                anyhow::anyhow!(
                    "--verify cannot read the mailbox of {}: {}",
                    ctx.accounts[account].address,
                    failure.detail
                )
            })?;
            for id in ids {
                match found.get(id.as_str()).copied().unwrap_or(0) {
                    0 => {
                        summary.missing += 1;
                        if summary.missing_examples.len() < 10 {
                            summary.missing_examples.push(id.clone());
                        }
                    }
                    1 => {}
                    _ => summary.duplicated += 1,
                }
            }
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

/// How many times each of this run's Message-IDs is in the account's INBOX.
async fn read_ids(ctx: &Ctx, account: usize) -> Result<HashMap<String, u32>, Failure> {
    let ports = &ctx.profile.ports;
    let headers = if ports.imaps.is_some() || ports.imap.is_some() {
        imap_headers(ctx, account).await?
    } else {
        pop3_headers(ctx, account).await?
    };
    let mut found = HashMap::new();
    for header in headers {
        if let Some(id) = message_id(&header)
            && id.contains(&ctx.run_id)
        {
            *found.entry(id).or_insert(0) += 1;
        }
    }
    Ok(found)
}

async fn imap_headers(ctx: &Ctx, account: usize) -> Result<Vec<Vec<u8>>, Failure> {
    let (mut client, _) = imap_login(ctx, account, &mut Record::default()).await?;
    let selected = client
        .select("INBOX")
        .await
        .map_err(|e| Failure::client("select", e))?;
    let mut headers = Vec::new();
    if selected.exists.unwrap_or(0) > 0 {
        // Large mailboxes make a long response; allow for it.
        client.set_timeout(ctx.options.timeout.max(Duration::from_secs(120)));
        let result = client
            .command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            .await
            .map_err(|e| Failure::client("fetch", e))?;
        for fetch in result.fetches() {
            if let Some(header) = fetch.body("HEADER.FIELDS (MESSAGE-ID)") {
                headers.push(header.to_vec());
            }
        }
    }
    let _ = client.logout().await;
    Ok(headers)
}

async fn pop3_headers(ctx: &Ctx, account: usize) -> Result<Vec<Vec<u8>>, Failure> {
    let ports = &ctx.profile.ports;
    let (port, implicit) = match (ports.pop3s, ports.pop3) {
        (Some(port), _) => (port, true),
        (None, Some(port)) => (port, false),
        (None, None) => return Ok(Vec::new()),
    };
    let mut client = Pop3Client::connect(&ctx.profile.addr(port), ctx.options.timeout)
        .await
        .map_err(|e| Failure::client("connect", e))?;
    client.stop_transcript();
    let tls = |e| Failure::client("tls", e);
    if implicit {
        client.tls_handshake(&ctx.tls).await.map_err(tls)?;
    }
    client
        .greeting()
        .await
        .map_err(|e| Failure::client("greeting", e))?;
    if !implicit {
        client.stls(&ctx.tls).await.map_err(tls)?;
    }
    let account = &ctx.accounts[account];
    let login = client
        .user_pass(&account.address, &account.password)
        .await
        .map_err(|e| Failure::client("login", e))?;
    if !login.ok {
        return Err(Failure::client(
            "login",
            crate::clients::ClientError::Io {
                while_doing: format!("logging in: -ERR {}", login.text),
                source: std::io::Error::other("login refused"),
            },
        ));
    }
    let (count, _) = client
        .stat()
        .await
        .map_err(|e| Failure::client("stat", e))?
        .unwrap_or((0, 0));
    let mut headers = Vec::new();
    for message in 1..=count {
        if let Ok(Ok(top)) = client.top(message, 0).await {
            headers.push(top);
        }
    }
    let _ = client.quit().await;
    Ok(headers)
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
    use super::message_id;

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
}

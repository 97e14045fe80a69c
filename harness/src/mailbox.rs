//! Reading a target's mailboxes to check delivery.
//!
//! The embedded reference server is read through its store; a third-party target with an IMAP
//! port is read over IMAP with the profile's accounts ([`ImapMailboxes`]). A target with
//! neither leaves its delivery checks "not verified".
//!
//! A mailbox may hold any other mail (a message with NUL octets, one of 20 MiB, broken MIME, a
//! look-alike of the harness's own): a check reads only the messages it looks for, found by
//! their exact Message-ID or by a search, never the whole mailbox.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::clients::imap::{CommandResult, ImapClient, quote};
use crate::clients::tls::TlsClient;
use crate::message;
use crate::target::TargetProfile;

/// What [`Mailboxes::find_message`] returns: the message, `None` when it is not there, or why
/// the mailbox could not be read.
pub type FoundFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, String>> + Send + 'a>>;

/// What [`Mailboxes::messages_mentioning`] returns: the messages, or why the mailbox could not
/// be read.
pub type MatchesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, String>> + Send + 'a>>;

/// The most messages [`Mailboxes::messages_mentioning`] reads for one look, newest first: a
/// search that matches more than this is matching mail the check is not about.
pub const MAX_MATCHES: usize = 10;

/// Read access to the messages in accounts' inboxes.
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// The message in the account's INBOX whose Message-ID field is exactly `message_id`
    /// (`<left@right>`), as stored.
    fn find_message<'a>(&'a self, account: &'a str, message_id: &'a str) -> FoundFuture<'a>;

    /// The newest messages (at most [`MAX_MATCHES`]) in the account's INBOX whose text contains
    /// `text`, in any case: for mail the harness did not write itself, such as a bounce.
    fn messages_mentioning<'a>(&'a self, account: &'a str, text: &'a str) -> MatchesFuture<'a>;

    /// How long to wait between two looks at an inbox while waiting for a delivery.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(50)
    }

    /// Puts a message straight into the account's INBOX, bypassing SMTP, to set up a scenario
    /// that checks something else. `None` when this access cannot deliver.
    fn deliver(&self, account: &str, message: &[u8]) -> Option<Result<(), String>> {
        let _ = (account, message);
        None
    }
}

/// Whether `haystack` contains `needle` (lower case) in any ASCII case.
pub(crate) fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A third-party target's inboxes, read over IMAP (port 993, else 143 after STARTTLS) with the
/// passwords in its profile. Each look is a session of its own: LOGIN, EXAMINE INBOX (read
/// only, so flags and `\Recent` stay as they were), a `UID SEARCH` for the message, a
/// `UID FETCH` of only what it found, LOGOUT.
#[derive(Debug)]
pub struct ImapMailboxes {
    profile: TargetProfile,
    tls: TlsClient,
    timeout: Duration,
}

/// An IMAP session with an account's INBOX open read-only.
struct Examined {
    client: ImapClient,
    addr: String,
}

impl Examined {
    fn fail(&self, what: &str, detail: impl fmt::Display) -> String {
        format!("IMAP {}, {what}: {detail}", self.addr)
    }

    /// Runs a command that must succeed.
    async fn must(&mut self, line: &str) -> Result<CommandResult, String> {
        let result = self
            .client
            .command(line)
            .await
            .map_err(|e| self.fail(line, e))?;
        if !result.is_ok() {
            return Err(self.fail(line, status(&result.tagged)));
        }
        Ok(result)
    }

    /// `UID SEARCH criteria`: the UIDs found, newest first, from SEARCH or ESEARCH.
    async fn search(&mut self, criteria: &str) -> Result<Vec<u32>, String> {
        let result = self.must(&format!("UID SEARCH {criteria}")).await?;
        let mut uids: Vec<u32> = match (result.search(), result.esearch()) {
            (Some(search), _) => search.numbers.clone(),
            (None, Some(esearch)) => esearch
                .all
                .as_ref()
                .map(|all| all.iter().collect())
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        uids.sort_unstable_by(|a, b| b.cmp(a));
        uids.dedup();
        Ok(uids)
    }

    /// `UID FETCH` of one section of each of `uids`: (uid, octets) in the order of `uids`.
    async fn fetch(&mut self, uids: &[u32], section: &str) -> Result<Vec<(u32, Vec<u8>)>, String> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set: Vec<String> = uids.iter().map(u32::to_string).collect();
        let result = self
            .must(&format!(
                "UID FETCH {} (UID BODY.PEEK[{section}])",
                set.join(",")
            ))
            .await?;
        let mut fetched: Vec<(u32, Vec<u8>)> = result
            .fetches()
            .into_iter()
            .filter_map(|f| Some((f.uid()?, f.body(section)?.to_vec())))
            .filter(|(uid, _)| uids.contains(uid))
            .collect();
        fetched.sort_by_key(|(uid, _)| uids.iter().position(|u| u == uid));
        Ok(fetched)
    }

    async fn logout(mut self) {
        let _ = self.client.logout().await;
    }
}

impl ImapMailboxes {
    /// Access for a profile that offers IMAP; `None` when it offers no IMAP port.
    pub fn for_profile(
        profile: &TargetProfile,
        tls: TlsClient,
        timeout: Duration,
    ) -> Option<ImapMailboxes> {
        (profile.ports.imaps.is_some() || profile.ports.imap.is_some()).then(|| ImapMailboxes {
            profile: profile.clone(),
            tls,
            timeout,
        })
    }

    /// Logs in as `account` and opens its INBOX read-only.
    async fn examine(&self, account: &str) -> Result<Examined, String> {
        let password = self
            .profile
            .accounts
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(account))
            .map(|a| a.password.clone())
            .ok_or_else(|| format!("the profile has no password for {account}"))?;
        let (client, addr) = match (self.profile.ports.imaps, self.profile.ports.imap) {
            (Some(port), _) => {
                let addr = self.profile.addr(port);
                let client = ImapClient::connect_tls(&addr, &self.tls, self.timeout).await;
                (client, addr)
            }
            (None, Some(port)) => {
                let addr = self.profile.addr(port);
                (ImapClient::connect(&addr, self.timeout).await, addr)
            }
            (None, None) => return Err("the target offers no IMAP port".into()),
        };
        let client = client.map_err(|e| format!("IMAP {addr}: {e}"))?;
        let mut session = Examined { client, addr };
        let greeting = session
            .client
            .greeting()
            .await
            .map_err(|e| session.fail("greeting", e))?;
        if !greeting.is_ok() {
            return Err(session.fail("greeting", greeting.text));
        }
        if self.profile.ports.imaps.is_none() {
            let started = session
                .client
                .starttls(&self.tls)
                .await
                .map_err(|e| session.fail("STARTTLS", e))?;
            if !started.is_ok() {
                return Err(session.fail("STARTTLS", status(&started.tagged)));
            }
        }
        let login = session
            .client
            .login(account, &password)
            .await
            .map_err(|e| session.fail("LOGIN", e))?;
        if !login.is_ok() {
            return Err(session.fail(&format!("LOGIN {account}"), status(&login.tagged)));
        }
        session.must("EXAMINE INBOX").await?;
        Ok(session)
    }

    async fn find(&self, account: &str, message_id: &str) -> Result<Option<Vec<u8>>, String> {
        let mut session = self.examine(account).await?;
        let found = async {
            // SEARCH HEADER matches a substring (RFC 3501 6.4.4), so each candidate's field is
            // read to be sure before the message itself is fetched.
            let inner = message_id.trim_start_matches('<').trim_end_matches('>');
            let wanted = quote(inner.as_bytes())
                .ok_or_else(|| format!("Message-ID {message_id} cannot be quoted in IMAP"))?;
            let mut candidates = session
                .search(&format!("HEADER Message-ID {wanted}"))
                .await?;
            candidates.truncate(MAX_MATCHES);
            let headers = session.fetch(&candidates, "HEADER").await?;
            let Some(uid) = headers
                .into_iter()
                .find(|(_, header)| message::has_message_id(header, message_id))
                .map(|(uid, _)| uid)
            else {
                return Ok(None);
            };
            let whole = session.fetch(&[uid], "").await?;
            Ok(whole.into_iter().next().map(|(_, octets)| octets))
        }
        .await;
        session.logout().await;
        found
    }

    async fn mentioning(&self, account: &str, text: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut session = self.examine(account).await?;
        let found = async {
            let wanted = quote(text.as_bytes())
                .ok_or_else(|| format!("{text:?} cannot be quoted in IMAP"))?;
            let mut uids = session.search(&format!("TEXT {wanted}")).await?;
            uids.truncate(MAX_MATCHES);
            let needle = text.to_ascii_lowercase().into_bytes();
            Ok(session
                .fetch(&uids, "")
                .await?
                .into_iter()
                .map(|(_, octets)| octets)
                .filter(|octets| contains_ignoring_case(octets, &needle))
                .collect())
        }
        .await;
        session.logout().await;
        found
    }
}

fn status(status: &crate::clients::imap::Status) -> String {
    format!("{:?} {}", status.kind, status.text).to_uppercase()
}

impl Mailboxes for ImapMailboxes {
    fn find_message<'a>(&'a self, account: &'a str, message_id: &'a str) -> FoundFuture<'a> {
        Box::pin(self.find(account, message_id))
    }

    fn messages_mentioning<'a>(&'a self, account: &'a str, text: &'a str) -> MatchesFuture<'a> {
        Box::pin(self.mentioning(account, text))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_ignored_when_looking_for_text() {
        assert!(contains_ignoring_case(
            b"Final-Recipient: rfc822; A@B",
            b"a@b"
        ));
        assert!(!contains_ignoring_case(b"a@", b"a@b"));
        assert!(!contains_ignoring_case(b"anything", b""));
    }
}

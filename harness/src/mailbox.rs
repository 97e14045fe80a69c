//! Reading a target's mailboxes to check delivery.
//!
//! The embedded reference server is read through its store; a third-party target with an IMAP
//! port is read over IMAP with the profile's accounts ([`ImapMailboxes`]). A target with
//! neither leaves its delivery checks "not verified".

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reference_server::store::{INBOX, Store, StoreError};

use crate::clients::imap::ImapClient;
use crate::clients::tls::TlsClient;
use crate::target::TargetProfile;

/// What [`Mailboxes::inbox`] returns: every message in the INBOX, or why it could not be read.
pub type InboxFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, String>> + Send + 'a>>;

/// Read access to the messages in accounts' inboxes.
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// Every message in the account's INBOX, as stored.
    fn inbox<'a>(&'a self, account: &'a str) -> InboxFuture<'a>;

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

/// The embedded reference server's store, read directly.
#[derive(Debug, Clone)]
pub struct StoreMailboxes(pub Store);

impl Mailboxes for StoreMailboxes {
    fn inbox<'a>(&'a self, account: &'a str) -> InboxFuture<'a> {
        Box::pin(std::future::ready(self.read_inbox(account)))
    }

    fn deliver(&self, account: &str, message: &[u8]) -> Option<Result<(), String>> {
        Some(
            self.0
                .deliver(&[account], message)
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    }
}

impl StoreMailboxes {
    fn read_inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String> {
        let metas = self.0.messages(account, INBOX).map_err(|e| e.to_string())?;
        let mut messages = Vec::with_capacity(metas.len());
        for meta in &metas {
            match self.0.read_message(account, INBOX, meta.uid) {
                Ok(octets) => messages.push(octets),
                // Deleted since the listing (a POP3 QUIT, say): it is simply not there.
                Err(StoreError::NoSuchMessage { .. }) => {}
                Err(other) => return Err(other.to_string()),
            }
        }
        Ok(messages)
    }
}

/// A third-party target's inboxes, read over IMAP (port 993, else 143 after STARTTLS) with the
/// passwords in its profile. Each look is a session of its own: LOGIN, EXAMINE INBOX (read
/// only, so flags and `\Recent` stay as they were), `FETCH 1:* BODY.PEEK[]`, LOGOUT.
#[derive(Debug)]
pub struct ImapMailboxes {
    profile: TargetProfile,
    tls: TlsClient,
    timeout: Duration,
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

    async fn read_inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String> {
        let password = self
            .profile
            .accounts
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(account))
            .map(|a| a.password.clone())
            .ok_or_else(|| format!("the profile has no password for {account}"))?;
        let (mut client, addr) = match (self.profile.ports.imaps, self.profile.ports.imap) {
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
        let client = client.as_mut().map_err(|e| format!("IMAP {addr}: {e}"))?;
        let fail = |what: &str, detail: String| format!("IMAP {addr}, {what}: {detail}");
        let greeting = client
            .greeting()
            .await
            .map_err(|e| fail("greeting", e.to_string()))?;
        if !greeting.is_ok() {
            return Err(fail("greeting", greeting.text));
        }
        if self.profile.ports.imaps.is_none() {
            let started = client
                .starttls(&self.tls)
                .await
                .map_err(|e| fail("STARTTLS", e.to_string()))?;
            if !started.is_ok() {
                return Err(fail("STARTTLS", status(&started.tagged)));
            }
        }
        let login = client
            .login(account, &password)
            .await
            .map_err(|e| fail("LOGIN", e.to_string()))?;
        if !login.is_ok() {
            return Err(fail(&format!("LOGIN {account}"), status(&login.tagged)));
        }
        let selected = client
            .examine("INBOX")
            .await
            .map_err(|e| fail("EXAMINE INBOX", e.to_string()))?;
        if !selected.result.is_ok() {
            return Err(fail("EXAMINE INBOX", status(&selected.result.tagged)));
        }
        let mut messages = Vec::new();
        if selected.exists.unwrap_or(0) > 0 {
            let fetched = client
                .fetch("1:*", "BODY.PEEK[]")
                .await
                .map_err(|e| fail("FETCH", e.to_string()))?;
            if !fetched.is_ok() {
                return Err(fail("FETCH", status(&fetched.tagged)));
            }
            for fetch in fetched.fetches() {
                if let Some(body) = fetch.body("") {
                    messages.push(body.to_vec());
                }
            }
        }
        let _ = client.logout().await;
        Ok(messages)
    }
}

fn status(status: &crate::clients::imap::Status) -> String {
    format!("{:?} {}", status.kind, status.text).to_uppercase()
}

impl Mailboxes for ImapMailboxes {
    fn inbox<'a>(&'a self, account: &'a str) -> InboxFuture<'a> {
        Box::pin(self.read_inbox(account))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

//! Reading a target's mailboxes to check delivery.
//!
//! Only the embedded reference server can be read today (through its store); for third-party
//! targets the delivery checks report "not verified" until the POP3 and IMAP clients exist.

use std::fmt;

use reference_server::store::{INBOX, Store, StoreError};

/// Read access to the messages in accounts' inboxes.
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// Every message in the account's INBOX, as stored.
    fn inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String>;

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
    fn inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String> {
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

    fn deliver(&self, account: &str, message: &[u8]) -> Option<Result<(), String>> {
        Some(
            self.0
                .deliver(&[account], message)
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    }
}

//! Reading a target's mailboxes to check delivery.
//!
//! Only the embedded reference server can be read today (through its store); for third-party
//! targets the delivery checks report "not verified" until the POP3 and IMAP clients exist.

use std::fmt;

use reference_server::store::{INBOX, Store};

/// Read access to the messages in accounts' inboxes.
pub trait Mailboxes: Send + Sync + fmt::Debug {
    /// Every message in the account's INBOX, as stored.
    fn inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String>;
}

/// The embedded reference server's store, read directly.
#[derive(Debug, Clone)]
pub struct StoreMailboxes(pub Store);

impl Mailboxes for StoreMailboxes {
    fn inbox(&self, account: &str) -> Result<Vec<Vec<u8>>, String> {
        let metas = self.0.messages(account, INBOX).map_err(|e| e.to_string())?;
        metas
            .iter()
            .map(|meta| {
                self.0
                    .read_message(account, INBOX, meta.uid)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

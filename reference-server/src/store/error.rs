//! The store's error type.

use std::path::PathBuf;

/// Why a store operation failed, with enough context to find the account, mailbox or file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("store database error while {context}: {source}")]
    Sqlite {
        /// What the store was doing, e.g. "inserting a message".
        context: &'static str,
        /// The underlying SQLite error.
        source: rusqlite::Error,
    },
    /// A file or directory of the store could not be read, written or synced.
    #[error("store I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The database file was written by a newer version of this server; opening it could corrupt it.
    #[error(
        "{}: store schema version {found} is newer than the newest this server knows ({supported}); \
         run a newer reference-server or use another data directory",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest schema version this build understands.
        supported: i64,
    },
    /// SQLite would not switch to write-ahead logging, so the durability promise cannot be kept.
    #[error("{}: could not enable WAL journal mode (journal mode is {mode:?})", path.display())]
    JournalMode {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// The store call did not run to its end: the task running it panicked or was cancelled.
    #[error("the store call did not complete: {0}")]
    Interrupted(String),
    /// No account has this address.
    #[error("no such account: {0:?}")]
    NoSuchAccount(String),
    /// The account exists but has no mailbox of this name.
    #[error("account {account:?} has no mailbox {mailbox:?}")]
    NoSuchMailbox {
        /// The account's address.
        account: String,
        /// The mailbox name asked for.
        mailbox: String,
    },
    /// The mailbox exists but holds no message with this UID.
    #[error("mailbox {mailbox:?} of account {account:?} has no message with UID {uid}")]
    NoSuchMessage {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
        /// The UID asked for.
        uid: u32,
    },
    /// A mailbox of this name already exists in the account.
    #[error("account {account:?} already has a mailbox {mailbox:?}")]
    MailboxExists {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
    },
    /// INBOX is where deliveries go, so it may not be deleted (RFC 3501 6.3.4).
    #[error("the INBOX of account {account:?} cannot be deleted")]
    CannotDeleteInbox {
        /// The account's address.
        account: String,
    },
    /// A mailbox with children cannot be deleted; delete or move them first.
    #[error("mailbox {mailbox:?} of account {account:?} has child mailboxes; delete them first")]
    HasChildren {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
    },
    /// A mailbox cannot be renamed to a name below itself.
    #[error(
        "mailbox {from:?} of account {account:?} cannot be renamed to {to:?}, which lies below it"
    )]
    RenameIntoItself {
        /// The account's address.
        account: String,
        /// The mailbox being renamed.
        from: String,
        /// The new name asked for.
        to: String,
    },
    /// UNSUBSCRIBE named a mailbox the account does not subscribe to.
    #[error("account {account:?} is not subscribed to {mailbox:?}")]
    NotSubscribed {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
    },
    /// A flag is neither a settable system flag nor a valid keyword (an IMAP atom).
    #[error(
        "invalid flag {flag:?} for mailbox {mailbox:?} of account {account:?}: expected \\Answered, \\Flagged, \\Deleted, \\Seen, \\Draft or a keyword atom"
    )]
    InvalidFlag {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
        /// The flag as given.
        flag: String,
    },
    /// An account address was empty or contained control characters.
    #[error(
        "invalid account address {0:?}: expected a non-empty address without control characters"
    )]
    InvalidAddress(String),
    /// A mailbox name was empty, contained control characters or an empty hierarchy level.
    #[error(
        "invalid mailbox name {0:?}: expected a non-empty name without control characters or \
         empty levels (leading, trailing or doubled '/')"
    )]
    InvalidMailboxName(String),
    /// The mailbox has handed out every UID a 32-bit UIDNEXT can announce; it must be recreated.
    #[error("mailbox {mailbox:?} of account {account:?} has no UIDs left")]
    UidsExhausted {
        /// The account's address.
        account: String,
        /// The mailbox name.
        mailbox: String,
    },
    /// The store-wide UIDVALIDITY counter reached 2^32-1; no new mailbox can get a fresh value.
    #[error("the store has no UIDVALIDITY values left for new mailboxes")]
    UidValidityExhausted,
    /// A message body on disk does not match the hash it is stored under.
    #[error("corrupt message blob {}: {reason}", path.display())]
    CorruptBlob {
        /// The blob file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The transaction this delivery shared with others (group commit) failed as a whole, so
    /// none of them was stored.
    #[error("the transaction shared with other deliveries failed: {0}")]
    BatchFailed(String),
    /// A thread panicked while holding the database connection, so its state is not trusted.
    #[error("the store is unusable: a thread panicked while holding its database connection")]
    LockPoisoned,
}

/// Attaches what the store was doing to a SQLite error.
pub(super) trait SqliteContext<T> {
    /// Wraps the error in [`StoreError::Sqlite`] with `context`.
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> SqliteContext<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// Attaches the path involved to an I/O error.
pub(super) trait IoContext<T> {
    /// Wraps the error in [`StoreError::Io`] with `path`.
    fn at(self, path: &std::path::Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

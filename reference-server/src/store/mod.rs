//! Durable mail store: accounts, mailboxes and message metadata in SQLite; message bodies,
//! content-addressed, in SQLite too when small and as files under `blobs/` otherwise (`bodies.rs`).
//!
//! Blocking by design: the async server calls it through `tokio::task::spawn_blocking`. One
//! connection behind a mutex serialises writes, which SQLite does for writers anyway; blob
//! files are written outside the lock so that concurrent deliveries overlap their fsyncs. Reads
//! go through a few read-only connections, each read one transaction (`readers.rs`), so they
//! neither wait for a commit's fsync nor see half of one.
//!
//! Every write is one IMMEDIATE transaction; concurrent deliveries share one (group commit, in
//! `group.rs`). A UID is assigned in the transaction that inserts the message and never reused;
//! UIDVALIDITY changes only when a mailbox is recreated; every change to a mailbox (new message,
//! flags, removal) takes the mailbox's next mod-sequence (RFC 7162), so mod-sequences strictly
//! increase per mailbox. Changes are announced to watchers ([`Store::watch`]) after they
//! committed, in commit order.

mod blobs;
mod bodies;
mod error;
mod flags;
mod ghosts;
mod group;
mod mailboxes;
mod outbound;
mod readers;
mod reads;
mod schema;
#[cfg(test)]
mod tests;
mod watch;
mod writes;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use self::blobs::BlobDir;
use self::bodies::Bodies;
pub use self::error::StoreError;
use self::error::{IoContext, SqliteContext};
pub use self::flags::FlagOp;
pub use self::mailboxes::{DELIMITER, MailboxInfo, SpecialUse};
pub use self::outbound::{Accepted, Incoming, OutboundJob, OutboundRecipient, Settle, now_ms};
pub use self::reads::{Changes, MailboxCounts, MailboxStatus, MessageMeta};
pub use self::watch::{Change, WATCH_CAPACITY};
use self::watch::{RecentMarks, Watchers};
pub use self::writes::{AppendResult, CopyResult, Delivered, FlagsResult, MessageFlags};

/// The mailbox every account has and every delivery goes to.
pub const INBOX: &str = "INBOX";

/// The database file inside the data directory.
const DB_FILE: &str = "store.sqlite3";

/// The blob directory inside the data directory.
const BLOB_DIR: &str = "blobs";

/// Handle to an open store. Cheap to clone: clones share one connection, body storage, change
/// notifications and \Recent watermarks, so every session sees the others' changes.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The connection every write (and [`Store::watch`]) goes through.
    conn: Mutex<Connection>,
    /// Connections for reads.
    readers: self::readers::Readers,
    /// Deliveries waiting for a shared commit. Its lock is never taken while `conn` is held.
    group: self::group::GroupCommit,
    bodies: Bodies,
    /// Locked only while `conn` or a reader is held (or without them), never the other way round.
    watchers: Watchers,
    /// Locked only while `conn` or a reader is held (or without them), never the other way round.
    recent: RecentMarks,
    /// Expunged messages sessions may still read. Locked only while `conn` or a reader is held
    /// (or without them), never the other way round.
    ghosts: self::ghosts::Ghosts,
    /// The `imap_uid_reuse` fault: expunging lowers UIDNEXT again.
    reuse_uids: std::sync::atomic::AtomicBool,
}

/// A mailbox row as the store uses it internally: the counters a write advances.
#[derive(Debug)]
struct MailboxRow {
    id: i64,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
}

impl MailboxRow {
    /// Hands out the next UID. UIDNEXT must stay announceable as a 32-bit nz-number, so
    /// u32::MAX itself is never handed out.
    fn take_uid(&mut self, account: &str, mailbox: &str) -> Result<u32, StoreError> {
        if self.uidnext == u32::MAX {
            return Err(StoreError::UidsExhausted {
                account: account.to_owned(),
                mailbox: mailbox.to_owned(),
            });
        }
        self.uidnext += 1;
        Ok(self.uidnext - 1)
    }

    /// Hands out the next mod-sequence.
    fn take_modseq(&mut self) -> u64 {
        self.highest_modseq += 1;
        self.highest_modseq
    }

    /// Writes UIDNEXT and HIGHESTMODSEQ back.
    fn save(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let modseq = to_sql_u64(self.highest_modseq)?;
        tx.prepare_cached("UPDATE mailboxes SET uidnext = ?2, highest_modseq = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![self.id, self.uidnext, modseq]))
            .ctx("advancing the mailbox's counters")?;
        Ok(())
    }
}

impl Store {
    /// Opens or creates `<data_dir>/store.sqlite3` (WAL, synchronous=FULL, foreign_keys on,
    /// busy_timeout) and `<data_dir>/blobs/`, upgrading an older schema in place.
    ///
    /// Refuses a database written by a newer version of the server with
    /// [`StoreError::NewerSchema`].
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(data_dir).at(data_dir)?;
        let db = data_dir.join(DB_FILE);
        let conn = schema::open(&db)?;
        let readers = self::readers::Readers::open(&db)?;
        let bodies = Bodies::new(BlobDir::open(data_dir.join(BLOB_DIR))?, db);
        // Messages that were there before this start are not \Recent to anyone (RFC 3501 allows
        // that after a restart); see `claim_recent`.
        let marks: HashMap<i64, u32> = conn
            .prepare("SELECT id, uidnext - 1 FROM mailboxes")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .ctx("reading UIDNEXT of every mailbox")?;
        Ok(Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                readers,
                group: Default::default(),
                bodies,
                watchers: Watchers::default(),
                recent: RecentMarks::new(marks),
                ghosts: Default::default(),
                reuse_uids: Default::default(),
            }),
        })
    }

    /// Misbehaves for the harness's self-test (the `imap_uid_reuse` fault): after an expunge,
    /// new messages get UIDs from just above the highest UID left, so the UIDs of expunged
    /// messages at the top are handed out again. Never set outside that test.
    pub fn set_reuse_uids(&self, reuse: bool) {
        self.inner
            .reuse_uids
            .store(reuse, std::sync::atomic::Ordering::Relaxed);
    }

    fn reuses_uids(&self) -> bool {
        self.inner
            .reuse_uids
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A read transaction on one of the reader connections.
    fn read(&self) -> Result<self::readers::Snapshot<'_>, StoreError> {
        self.inner.readers.snapshot()
    }

    /// The connection, unless a thread panicked with it: its transaction state is then unknown.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.inner.conn.lock().map_err(|_| StoreError::LockPoisoned)
    }
}

/// IMAP's INBOX is case-insensitive (RFC 3501 5.1); every other name is taken as given.
fn canonical_mailbox(name: &str) -> &str {
    if name.eq_ignore_ascii_case(INBOX) {
        INBOX
    } else {
        name
    }
}

/// Starts a write transaction that takes the write lock at once, so that the reads it makes
/// (UIDNEXT, the UIDVALIDITY counter) cannot be invalidated by another process before it writes.
fn immediate(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting a transaction")
}

/// The id of the account with this address, compared case-insensitively.
fn account_id(conn: &Connection, address: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM accounts WHERE address = ?1")
        .and_then(|mut s| s.query_row([address], |r| r.get(0)).optional())
        .ctx("looking up an account")?
        .ok_or_else(|| StoreError::NoSuchAccount(address.to_owned()))
}

/// Reads the counters of a mailbox row selected as `id, uidvalidity, uidnext, highest_modseq`.
fn mailbox_row(r: &Row<'_>) -> rusqlite::Result<MailboxRow> {
    Ok(MailboxRow {
        id: r.get(0)?,
        uidvalidity: r.get(1)?,
        uidnext: r.get(2)?,
        highest_modseq: get_u64(r, 3)?,
    })
}

/// The mailbox `name` of an account, if it exists.
fn mailbox(
    conn: &Connection,
    account_id: i64,
    name: &str,
) -> Result<Option<MailboxRow>, StoreError> {
    conn.prepare_cached(
        "SELECT id, uidvalidity, uidnext, highest_modseq FROM mailboxes
         WHERE account_id = ?1 AND name = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![account_id, name], mailbox_row)
            .optional()
    })
    .ctx("looking up a mailbox")
}

/// The mailbox with this id, which the caller knows exists in its transaction.
fn mailbox_by_id(conn: &Connection, id: i64) -> Result<MailboxRow, StoreError> {
    conn.prepare_cached(
        "SELECT id, uidvalidity, uidnext, highest_modseq FROM mailboxes WHERE id = ?1",
    )
    .and_then(|mut s| s.query_row([id], mailbox_row))
    .ctx("re-reading a mailbox")
}

/// The mailbox `name` of the account with this address, telling a missing account from a missing
/// mailbox.
fn existing_mailbox(
    conn: &Connection,
    account: &str,
    name: &str,
) -> Result<MailboxRow, StoreError> {
    mailbox(conn, account_id(conn, account)?, name)?.ok_or_else(|| StoreError::NoSuchMailbox {
        account: account.to_owned(),
        mailbox: name.to_owned(),
    })
}

/// Inserts a mailbox with the next value of the store-wide UIDVALIDITY counter; returns its id.
fn insert_mailbox(
    tx: &Transaction<'_>,
    account_id: i64,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<i64, StoreError> {
    let uidvalidity: u32 = tx
        .query_row(
            "SELECT next_uidvalidity FROM store_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .ctx("reading the UIDVALIDITY counter")?;
    let next = uidvalidity
        .checked_add(1)
        .ok_or(StoreError::UidValidityExhausted)?;
    tx.execute(
        "UPDATE store_state SET next_uidvalidity = ?1 WHERE id = 1",
        [next],
    )
    .ctx("advancing the UIDVALIDITY counter")?;
    tx.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use) VALUES (?1, ?2, ?3, ?4)",
        params![
            account_id,
            name,
            uidvalidity,
            special_use.map(SpecialUse::as_str)
        ],
    )
    .ctx("creating a mailbox")?;
    Ok(tx.last_insert_rowid())
}

/// Reads a column SQLite stores as a signed integer but which is never negative.
fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Converts a mod-sequence for SQLite, whose integers are signed.
fn to_sql_u64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Sqlite {
        context: "storing a mod-sequence",
        source: rusqlite::Error::ToSqlConversionFailure(
            format!("mod-sequence {value} exceeds SQLite's integer range").into(),
        ),
    })
}

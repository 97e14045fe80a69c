//! Read-only connections beside the one that writes, so that sessions reading the store do not
//! queue behind a commit's fsync or behind each other.
//!
//! SQLite in WAL mode lets readers and one writer work at once: a read transaction sees the
//! database as of its first read, and every commit that finished before that. Each
//! [`Snapshot`] is one such read transaction, so a method that reads several tables (a mailbox
//! row, then its messages) sees them consistent with each other, as it did when all work went
//! through the single connection. A commit that returned before a snapshot was taken is in it,
//! so a session reads its own writes and, after a change notification, the change.

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use rusqlite::Connection;

use super::StoreError;
use super::error::SqliteContext;
use super::schema;

/// How many read-only connections a store opens. Each keeps its own page cache (SQLite's
/// default, about 2 MiB at most), and a blocked reader waits only for another reader.
pub(super) const READERS: usize = 4;

#[derive(Debug)]
pub(super) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// Opens [`READERS`] read-only connections to the database the writer has already opened
    /// and brought up to date.
    pub(super) fn open(path: &Path) -> Result<Readers, StoreError> {
        let conns = (0..READERS)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Readers {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection, or if all are busy the next in turn once it is free, with a read
    /// transaction begun on it.
    pub(super) fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.conns.len();
        let mut guard = None;
        for i in 0..count {
            let slot = &self.conns[(start + i) % count];
            match slot.try_lock() {
                Ok(free) => {
                    guard = Some(free);
                    break;
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Poisoned(poisoned)) => {
                    // A thread panicked while reading: `Snapshot::begin` ends whatever
                    // transaction it left, and a reader holds no writes to lose.
                    slot.clear_poison();
                    guard = Some(poisoned.into_inner());
                    break;
                }
            }
        }
        let conn = match guard {
            Some(conn) => conn,
            None => {
                let slot = &self.conns[start % count];
                slot.lock().unwrap_or_else(|poisoned| {
                    slot.clear_poison();
                    poisoned.into_inner()
                })
            }
        };
        Snapshot::begin(conn)
    }

    /// A read transaction on reader `index`, whoever else holds it, for tests.
    #[cfg(test)]
    pub(super) fn snapshot_of(&self, index: usize) -> Result<Snapshot<'_>, StoreError> {
        let conn = self.conns[index]
            .lock()
            .map_err(|_| StoreError::LockPoisoned)?;
        Snapshot::begin(conn)
    }
}

/// One read transaction on a reader connection; ended (never left open, which would pin an old
/// state of the database and keep the WAL from being checkpointed) when dropped.
pub(super) struct Snapshot<'a> {
    conn: MutexGuard<'a, Connection>,
}

impl<'a> Snapshot<'a> {
    fn begin(conn: MutexGuard<'a, Connection>) -> Result<Snapshot<'a>, StoreError> {
        if !conn.is_autocommit() {
            // A transaction a failed COMMIT left behind: end it before starting anew.
            conn.prepare_cached("ROLLBACK")
                .and_then(|mut s| s.execute([]))
                .ctx("ending a stale read transaction")?;
        }
        conn.prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .ctx("beginning a read transaction")?;
        Ok(Snapshot { conn })
    }
}

impl Deref for Snapshot<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let ended = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if let Err(error) = ended {
            // Tried again at the next `begin`; a read transaction holds no writes to lose.
            tracing::warn!("could not end a read transaction: {error}");
        }
    }
}

//! Message bodies, named by their SHA-256 in lowercase hex: bodies of at most [`INLINE_MAX`]
//! octets are rows of the `bodies` table, larger ones content-addressed files ([`BlobDir`]).
//!
//! Why two places: a file costs two fsyncs of its own (the file, then its directory for the
//! rename) that no group commit can share, and at SMTP message sizes those fsyncs dominate an
//! accept. A row is written in the transaction that files the message, so a whole batch of
//! deliveries costs the one WAL fsync the commit pays anyway. Large bodies stay files: SQLite
//! reads and writes BLOBs of up to about 100 KB faster than files, larger ones slower
//! (<https://www.sqlite.org/intern-v-extern-blob.html>), and a row is copied twice (WAL, then
//! checkpoint).
//!
//! Crash safety, per kind. A file is durable (fsynced, renamed, directory fsynced) before the
//! transaction naming it starts, as before. A row is inserted in the same transaction as the
//! message rows that name it, and synchronous=FULL makes the commit return only after the WAL
//! holding both is fsynced: after a crash either both are there or neither is, so no message row
//! can name a missing row, and a 250 (sent after the commit returned) still means the body is on
//! disk. A row inserted for a delivery that then fails is rolled back with the delivery's
//! savepoint. Equal bodies share one row or one file; readers look in the table first, then in
//! the directory, so a body may be in either whatever the threshold was when it was written.

use std::fmt;
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;
use super::blobs::{BlobDir, sha256_hex};
use super::error::SqliteContext;

/// The largest body kept in the database rather than in a file. 64 KiB covers nearly all SMTP
/// traffic (text mail, small attachments) while staying well inside the sizes SQLite handles
/// faster than the file system.
pub(super) const INLINE_MAX: usize = 64 * 1024;

/// Where bodies live: the `bodies` table of the database at `db`, and the blob directory.
#[derive(Debug)]
pub(super) struct Bodies {
    files: BlobDir,
    /// The database file, named in errors about rows.
    db: PathBuf,
}

/// A body ready to be named by message rows.
pub(super) struct Staged {
    /// SHA-256 of the body in lowercase hex.
    pub(super) hash: String,
    /// The octets still to be written in the transaction that names the body; `None` when the
    /// body is a file already durable.
    inline: Option<Vec<u8>>,
}

impl Bodies {
    /// Bodies in `files` and in the database at `db`.
    pub(super) fn new(files: BlobDir, db: PathBuf) -> Bodies {
        Bodies { files, db }
    }

    /// Prepares `data` to be filed: a small body is only hashed (and copied, since the group
    /// commit's leader writes it on another thread); a large one is written to its file and
    /// fsynced now, outside the database lock, so that concurrent deliveries overlap their fsyncs.
    pub(super) fn stage(&self, data: &[u8]) -> Result<Staged, StoreError> {
        if data.len() <= INLINE_MAX {
            Ok(Staged {
                hash: sha256_hex(data),
                inline: Some(data.to_vec()),
            })
        } else {
            Ok(Staged {
                hash: self.files.put(data)?,
                inline: None,
            })
        }
    }

    /// The body named `hash`, given what the `bodies` table holds for it ([`inline_body`], or a
    /// `LEFT JOIN` on it): checked against its hash, so that damage is an error rather than wrong
    /// mail. Called without the database lock, since a file read may be slow.
    pub(super) fn load(&self, hash: &str, inline: Option<Vec<u8>>) -> Result<Vec<u8>, StoreError> {
        let Some(data) = inline else {
            return self.files.get(hash);
        };
        let actual = sha256_hex(&data);
        if actual != hash {
            return Err(StoreError::CorruptBlob {
                path: self.db.clone(),
                reason: format!("body {hash} in table `bodies` hashes to {actual}"),
            });
        }
        Ok(data)
    }
}

/// Octets left out: a log line or test failure needs the hash, not 64 KiB of mail.
impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("hash", &self.hash)
            .field("inline_len", &self.inline.as_ref().map(Vec::len))
            .finish()
    }
}

impl Staged {
    /// Writes an inline body in `tx`, the transaction that files the messages naming it. An equal
    /// body already there is kept, unless its octets differ: only damage from outside can cause
    /// that, and rewriting repairs it, as [`BlobDir::put`] does for files.
    pub(super) fn write_in(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let Some(data) = &self.inline else {
            return Ok(());
        };
        tx.prepare_cached(
            "INSERT INTO bodies (hash, data) VALUES (?1, ?2)
             ON CONFLICT (hash) DO UPDATE SET data = excluded.data
             WHERE data IS NOT excluded.data",
        )
        .and_then(|mut s| s.execute(params![self.hash, data]))
        .ctx("storing a message body")?;
        Ok(())
    }
}

/// What the `bodies` table holds under `hash`, if anything.
pub(super) fn inline_body(conn: &Connection, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT data FROM bodies WHERE hash = ?1")
        .and_then(|mut s| s.query_row([hash], |r| r.get(0)).optional())
        .ctx("reading a message body")
}

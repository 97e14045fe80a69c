//! Database connection set-up and schema versions, tracked in `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::error::{SqliteContext, StoreError};

/// The schema version this build writes; files with a larger `user_version` are refused.
pub(super) const VERSION: i64 = 4;

/// How long a statement waits for another process's write lock before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Version 1, as first released: never edit it, since [`migrate`] replays it before the later
/// steps on a new file. Integer ranges are checked by the database too, so that a bug cannot store a UID or
/// UIDVALIDITY that IMAP could not announce (RFC 3501 9: nz-number is 1..2^32-1).
pub(super) const V1: &str = "
-- A single row of store-wide state. UIDVALIDITY comes from here rather than from the mailbox
-- table so that a mailbox deleted and recreated under the same name gets a new, larger value.
CREATE TABLE store_state (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    next_uidvalidity INTEGER NOT NULL CHECK (next_uidvalidity BETWEEN 1 AND 4294967295)
);

-- NOCASE: addresses are compared case-insensitively, as users type them in any case.
CREATE TABLE accounts (
    id      INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE COLLATE NOCASE
);

-- uidnext and highest_modseq move only forward, in the transaction that inserts a message, so a
-- UID is never handed out twice. highest_modseq starts at 1 because RFC 7162 mod-sequences are
-- positive.
CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    uidvalidity    INTEGER NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    uidnext        INTEGER NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967295),
    highest_modseq INTEGER NOT NULL DEFAULT 1 CHECK (highest_modseq >= 1),
    UNIQUE (account_id, name)
);

-- The body lives in blobs/<blob[0..2]>/<blob>; many rows may share one blob.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL CHECK (uid BETWEEN 1 AND 4294967294),
    modseq        INTEGER NOT NULL CHECK (modseq >= 1),
    internal_date INTEGER NOT NULL,
    size          INTEGER NOT NULL CHECK (size >= 0),
    blob          TEXT NOT NULL CHECK (length(blob) = 64),
    UNIQUE (mailbox_id, uid)
);

-- One row per flag so that STORE +FLAGS/-FLAGS is an insert or delete, not a string rewrite.
-- NOCASE: IMAP flags and keywords are case-insensitive.
CREATE TABLE message_flags (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    flag       TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (message_id, flag)
) WITHOUT ROWID;

-- Expunged UIDs with the mod-sequence of their removal, so that sessions which were not
-- watching can still learn of them (QRESYNC VANISHED, RFC 7162 3.2.10).
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
";

/// Version 2, applied to a version 1 database: what a full IMAP server needs.
pub(super) const V2: &str = r"
-- RFC 6154 special-use attribute; at most one mailbox per account has each, so that the server
-- knows where to file sent mail or deleted messages.
ALTER TABLE mailboxes ADD COLUMN special_use TEXT
    CHECK (special_use IN ('\Sent', '\Drafts', '\Trash', '\Junk', '\Archive', '\All', '\Flagged'));
CREATE UNIQUE INDEX mailboxes_special_use ON mailboxes (account_id, special_use)
    WHERE special_use IS NOT NULL;

-- Names, not mailbox ids: a subscription may name a mailbox that does not exist and outlives the
-- deletion of the one it named (RFC 3501 6.3.6).
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
INSERT INTO subscriptions (account_id, name)
    SELECT account_id, name FROM mailboxes WHERE name = 'INBOX';

-- CONDSTORE/QRESYNC ask for what changed since a mod-sequence; without these, every such question
-- reads the whole mailbox.
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
";

/// Version 3, applied to a version 2 database: the outbound queue for relay to other domains.
pub(super) const V3: &str = r"
-- A message accepted for delivery elsewhere. The body is a blob like a mailbox message's. The row
-- goes when its last recipient is delivered, bounced or expired.
CREATE TABLE outbound (
    id       INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    sender   TEXT NOT NULL,              -- '' for the null sender (a bounce is never bounced)
    blob     TEXT NOT NULL CHECK (length(blob) = 64),
    size     INTEGER NOT NULL CHECK (size >= 0),
    arrived  INTEGER NOT NULL            -- Unix seconds: the age limit counts from here
);

-- One row per recipient still to be delivered; each keeps its own retry schedule.
CREATE TABLE outbound_recipients (
    message_id   INTEGER NOT NULL REFERENCES outbound (id) ON DELETE CASCADE,
    recipient    TEXT NOT NULL,
    domain       TEXT NOT NULL COLLATE NOCASE,
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt INTEGER NOT NULL,       -- Unix milliseconds
    last_error   TEXT,
    PRIMARY KEY (message_id, recipient)
) WITHOUT ROWID;
CREATE INDEX outbound_due ON outbound_recipients (next_attempt);
";

/// Version 4, applied to a version 3 database: small message bodies in the database.
const V4: &str = r"
-- Bodies of at most bodies::INLINE_MAX octets, written in the transaction that files the
-- messages naming them, so that they cost no fsync of their own. Keyed like blob files: the
-- blob column of messages and outbound names a row here or, failing that, a file. A rowid
-- table, not WITHOUT ROWID: its rows are large.
CREATE TABLE bodies (
    hash TEXT PRIMARY KEY CHECK (length(hash) = 64),
    data BLOB NOT NULL
);
";

/// Opens the database at `path`, configures it for durability and brings its schema up to date.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path).ctx("opening the database")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .ctx("enabling WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    // FULL makes every commit fsync the WAL: a 250 reply to DATA promises the message survives a
    // power cut, which NORMAL (the usual WAL pairing) does not.
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx("setting synchronous=FULL")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("enabling foreign keys")?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection to the database at `path`, which [`open`] has already set up:
/// WAL is a property of the file, so the reader shares it; `query_only` makes a write through
/// this connection an error rather than a second writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).ctx("opening a reader connection to the database")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    conn.pragma_update(None, "query_only", true)
        .ctx("making a reader connection read-only")?;
    Ok(conn)
}

/// Creates or upgrades the schema in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // IMMEDIATE: two processes opening a fresh file at once must not both create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema transaction")?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .ctx("reading the schema version")?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if found == VERSION {
        return Ok(());
    }
    // Each step upgrades from the version before it; a new file (version 0) takes them all.
    if found < 1 {
        tx.execute_batch(V1).ctx("creating the schema")?;
        tx.execute(
            "INSERT INTO store_state (id, next_uidvalidity) VALUES (1, ?1)",
            [initial_uidvalidity()],
        )
        .ctx("initialising the UIDVALIDITY counter")?;
    }
    if found < 2 {
        tx.execute_batch(V2)
            .ctx("upgrading the schema to version 2")?;
    }
    if found < 3 {
        tx.execute_batch(V3)
            .ctx("upgrading the schema to version 3")?;
    }
    if found < 4 {
        tx.execute_batch(V4)
            .ctx("upgrading the schema to version 4")?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .ctx("recording the schema version")?;
    tx.commit().ctx("committing the schema")
}

/// Seeds the UIDVALIDITY counter from the clock, so that a data directory wiped and recreated does
/// not hand a client the same UIDVALIDITY it cached for different messages (RFC 3501 2.3.1.1).
fn initial_uidvalidity() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Starting at most 2^32-2^30 leaves a billion mailbox creations before the counter runs out;
    // a clock past that (year 2072) or before 1970 falls back to 1, correct if not clock-based.
    if (1..=i64::from(u32::MAX - (1 << 30))).contains(&now) {
        now
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_file_gets_current_version_and_wal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        let conn = open(&path).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("synchronous");
        assert_eq!(sync, 2, "synchronous must be FULL");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .expect("foreign_keys");
        assert_eq!(fk, 1);
    }

    #[test]
    fn reopening_keeps_the_uidvalidity_counter() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        let read = |conn: &Connection| -> i64 {
            conn.query_row("SELECT next_uidvalidity FROM store_state", [], |r| r.get(0))
                .expect("counter")
        };
        let conn = open(&path).expect("open");
        conn.execute("UPDATE store_state SET next_uidvalidity = 42", [])
            .expect("update");
        drop(conn);
        assert_eq!(read(&open(&path).expect("reopen")), 42);
    }

    #[test]
    fn newer_version_is_refused_and_left_untouched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        drop(open(&path).expect("open"));
        let raw = Connection::open(&path).expect("raw open");
        raw.pragma_update(None, "user_version", VERSION + 1)
            .expect("bump version");
        drop(raw);
        let err = open(&path).expect_err("newer schema must be refused");
        assert!(
            matches!(err, StoreError::NewerSchema { found, supported, .. }
                if found == VERSION + 1 && supported == VERSION),
            "{err}"
        );
        let raw = Connection::open(&path).expect("raw reopen");
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, VERSION + 1);
    }
}

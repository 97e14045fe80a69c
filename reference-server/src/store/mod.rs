//! Durable mail store: accounts, mailboxes and message metadata in SQLite, message bodies as
//! content-addressed files under `blobs/`.
//!
//! Blocking by design: the async server calls it through `tokio::task::spawn_blocking`. One
//! connection behind a mutex serialises database work, which SQLite does for writers anyway; blob
//! files are written outside the lock so that concurrent deliveries overlap their fsyncs.

mod blobs;
mod error;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use self::blobs::BlobDir;
pub use self::error::StoreError;
use self::error::{IoContext, SqliteContext};

/// The mailbox every account has and every delivery goes to.
pub const INBOX: &str = "INBOX";

/// The database file inside the data directory.
const DB_FILE: &str = "store.sqlite3";

/// The blob directory inside the data directory.
const BLOB_DIR: &str = "blobs";

/// Handle to an open store. Cheap to clone: clones share one connection and blob directory, so
/// every session sees the others' changes.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    blobs: BlobDir,
}

/// Where one copy of a delivered message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The account's address as stored when it was created, whatever case the recipient used.
    pub account: String,
    /// The mailbox it was filed in.
    pub mailbox: String,
    /// Its UID there.
    pub uid: u32,
}

/// What IMAP FETCH and POP3 LIST/UIDL need to know about a message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// UID, unique within the mailbox for its UIDVALIDITY.
    pub uid: u32,
    /// Size of the stored octets (RFC822.SIZE).
    pub size: u64,
    /// When the message arrived, in Unix seconds (INTERNALDATE).
    pub internal_date: i64,
    /// Flags and keywords, sorted.
    pub flags: Vec<String>,
    /// Mod-sequence of the last change to the message (RFC 7162).
    pub modseq: u64,
    /// SHA-256 of the body in lowercase hex; equal bodies have equal values.
    pub blob: String,
}

/// The counters IMAP SELECT and STATUS report for a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// Changes only when the mailbox is recreated.
    pub uidvalidity: u32,
    /// The UID the next message will get; every UID below it has been handed out once.
    pub uidnext: u32,
    /// Number of messages in the mailbox.
    pub exists: u32,
    /// Highest mod-sequence of any change in the mailbox (RFC 7162).
    pub highest_modseq: u64,
}

/// A mailbox row as the store uses it internally.
struct MailboxRow {
    id: i64,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
}

impl Store {
    /// Opens or creates `<data_dir>/store.sqlite3` (WAL, synchronous=FULL, foreign_keys on,
    /// busy_timeout) and `<data_dir>/blobs/`.
    ///
    /// Refuses a database written by a newer version of the server with
    /// [`StoreError::NewerSchema`].
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(data_dir).at(data_dir)?;
        let conn = schema::open(&data_dir.join(DB_FILE))?;
        let blobs = BlobDir::open(data_dir.join(BLOB_DIR))?;
        Ok(Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                blobs,
            }),
        })
    }

    /// Idempotent: creates the account (address compared case-insensitively) and its INBOX.
    ///
    /// An existing account keeps the spelling it was created with.
    pub fn ensure_account(&self, address: &str) -> Result<(), StoreError> {
        if address.is_empty() || address.chars().any(char::is_control) {
            return Err(StoreError::InvalidAddress(address.to_owned()));
        }
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let created = tx
            .execute(
                "INSERT INTO accounts (address) VALUES (?1) ON CONFLICT DO NOTHING",
                [address],
            )
            .ctx("creating an account")?;
        let account_id = account_id(&tx, address)?;
        if mailbox(&tx, account_id, INBOX)?.is_none() {
            insert_mailbox(&tx, account_id, INBOX)?;
        }
        tx.commit().ctx("committing an account")?;
        if created > 0 {
            tracing::info!(account = address, "created account");
        }
        Ok(())
    }

    /// Creates a mailbox in an existing account, with a UIDVALIDITY larger than any before it.
    pub fn create_mailbox(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        if mailbox_name.is_empty() || mailbox_name.chars().any(char::is_control) {
            return Err(StoreError::InvalidMailboxName(mailbox_name.to_owned()));
        }
        let name = canonical_mailbox(mailbox_name);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        if mailbox(&tx, account_id, name)?.is_some() {
            return Err(StoreError::MailboxExists {
                account: account.to_owned(),
                mailbox: name.to_owned(),
            });
        }
        insert_mailbox(&tx, account_id, name)?;
        tx.commit().ctx("committing a new mailbox")
    }

    /// Deletes a mailbox and its messages. INBOX cannot be deleted.
    ///
    /// Blob files stay: other messages may share them, and removing unreferenced ones is a sweep
    /// that can run apart from any session.
    pub fn delete_mailbox(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        let name = canonical_mailbox(mailbox_name);
        if name == INBOX {
            return Err(StoreError::CannotDeleteInbox {
                account: account.to_owned(),
            });
        }
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let mailbox = existing_mailbox(&tx, account, name)?;
        tx.execute("DELETE FROM mailboxes WHERE id = ?1", [mailbox.id])
            .ctx("deleting a mailbox")?;
        tx.commit().ctx("committing a mailbox deletion")
    }

    /// Durably stores one message for several local recipients (account addresses), in each
    /// account's INBOX. Returns only after the data is on disk: a 250 reply to SMTP DATA is sent
    /// after this returns.
    ///
    /// All-or-nothing: an unknown account means an error and nothing inserted. A recipient named
    /// twice, in any case, gets one copy.
    pub fn deliver(
        &self,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<Vec<Delivered>, StoreError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        // Checked before writing the blob so that a refused delivery leaves no file behind; the
        // check inside the transaction below is the one that counts.
        {
            let conn = self.conn()?;
            resolve_recipients(&conn, recipients)?;
        }
        let blob = self.inner.blobs.put(message)?;
        // A slice never exceeds isize::MAX bytes, so this cannot truncate.
        let size = message.len() as i64;
        let internal_date = time::OffsetDateTime::now_utc().unix_timestamp();

        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let accounts = resolve_recipients(&tx, recipients)?;
        let mut delivered = Vec::with_capacity(accounts.len());
        for (account_id, address) in accounts {
            let inbox =
                mailbox(&tx, account_id, INBOX)?.ok_or_else(|| StoreError::NoSuchMailbox {
                    account: address.clone(),
                    mailbox: INBOX.to_owned(),
                })?;
            // UIDNEXT must stay announceable as a 32-bit nz-number, so u32::MAX itself is never
            // handed out.
            let uid = inbox.uidnext;
            if uid == u32::MAX {
                return Err(StoreError::UidsExhausted {
                    account: address,
                    mailbox: INBOX.to_owned(),
                });
            }
            let modseq = to_sql_u64(inbox.highest_modseq + 1)?;
            tx.prepare_cached(
                "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![inbox.id, uid, modseq, internal_date, size, blob]))
            .ctx("inserting a message")?;
            tx.prepare_cached(
                "UPDATE mailboxes SET uidnext = ?2, highest_modseq = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![inbox.id, uid + 1, modseq]))
            .ctx("advancing UIDNEXT")?;
            delivered.push(Delivered {
                account: address,
                mailbox: INBOX.to_owned(),
                uid,
            });
        }
        tx.commit().ctx("committing a delivery")?;
        drop(conn);
        for d in &delivered {
            tracing::debug!(account = %d.account, uid = d.uid, %blob, "delivered");
        }
        Ok(delivered)
    }

    /// Removes the messages with these UIDs from a mailbox in one transaction, recording each
    /// removal with a new mod-sequence so that other sessions can learn of it. UIDs that are not
    /// (or no longer) there are ignored: another session may have removed them first. Returns
    /// the UIDs actually removed, ascending.
    ///
    /// The blob files stay, like [`Store::delete_mailbox`]'s.
    pub fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<u32>, StoreError> {
        let mut wanted: Vec<u32> = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let row = existing_mailbox(&tx, account, canonical_mailbox(mailbox))?;
        let mut modseq = row.highest_modseq;
        let mut removed = Vec::with_capacity(wanted.len());
        for uid in wanted {
            let deleted = tx
                .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                .and_then(|mut s| s.execute(params![row.id, uid]))
                .ctx("expunging a message")?;
            if deleted == 0 {
                continue;
            }
            modseq += 1;
            let sql_modseq = to_sql_u64(modseq)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![row.id, uid, sql_modseq]))
            .ctx("recording an expunge")?;
            removed.push(uid);
        }
        if !removed.is_empty() {
            let sql_modseq = to_sql_u64(modseq)?;
            tx.prepare_cached("UPDATE mailboxes SET highest_modseq = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![row.id, sql_modseq]))
                .ctx("advancing the mod-sequence")?;
        }
        tx.commit().ctx("committing an expunge")?;
        drop(conn);
        if !removed.is_empty() {
            tracing::debug!(account, mailbox, ?removed, "expunged");
        }
        Ok(removed)
    }

    /// Messages of a mailbox ordered by UID.
    pub fn messages(&self, account: &str, mailbox: &str) -> Result<Vec<MessageMeta>, StoreError> {
        let conn = self.conn()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;

        let mut flags: HashMap<i64, Vec<String>> = HashMap::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT f.message_id, f.flag FROM message_flags f
                 JOIN messages m ON m.id = f.message_id
                 WHERE m.mailbox_id = ?1 ORDER BY f.flag",
            )
            .ctx("listing flags")?;
        let rows = stmt
            .query_map([mailbox.id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))
            .ctx("listing flags")?;
        for row in rows {
            let (message_id, flag) = row.ctx("listing flags")?;
            flags.entry(message_id).or_default().push(flag);
        }

        let mut stmt = conn
            .prepare_cached(
                "SELECT id, uid, size, internal_date, modseq, blob FROM messages
                 WHERE mailbox_id = ?1 ORDER BY uid",
            )
            .ctx("listing messages")?;
        let rows = stmt
            .query_map([mailbox.id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    MessageMeta {
                        uid: r.get(1)?,
                        size: get_u64(r, 2)?,
                        internal_date: r.get(3)?,
                        flags: Vec::new(),
                        modseq: get_u64(r, 4)?,
                        blob: r.get(5)?,
                    },
                ))
            })
            .ctx("listing messages")?;
        rows.map(|row| {
            let (id, mut meta) = row.ctx("listing messages")?;
            meta.flags = flags.remove(&id).unwrap_or_default();
            Ok(meta)
        })
        .collect()
    }

    /// The exact octets stored for a message.
    ///
    /// The body is checked against its hash, so damage on disk is an error rather than wrong mail.
    pub fn read_message(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let name = canonical_mailbox(mailbox);
        let blob: String = {
            let conn = self.conn()?;
            let mailbox = existing_mailbox(&conn, account, name)?;
            conn.prepare_cached("SELECT blob FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                .and_then(|mut s| {
                    s.query_row(params![mailbox.id, uid], |r| r.get(0))
                        .optional()
                })
                .ctx("looking up a message")?
                .ok_or_else(|| StoreError::NoSuchMessage {
                    account: account.to_owned(),
                    mailbox: name.to_owned(),
                    uid,
                })?
        };
        // Read without the lock: other sessions need not wait for this file.
        self.inner.blobs.get(&blob)
    }

    /// UIDVALIDITY, UIDNEXT, message count and highest mod-sequence of a mailbox.
    pub fn mailbox_status(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<MailboxStatus, StoreError> {
        let conn = self.conn()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        let exists: u32 = conn
            .prepare_cached("SELECT COUNT(*) FROM messages WHERE mailbox_id = ?1")
            .and_then(|mut s| s.query_row([mailbox.id], |r| r.get(0)))
            .ctx("counting messages")?;
        Ok(MailboxStatus {
            uidvalidity: mailbox.uidvalidity,
            uidnext: mailbox.uidnext,
            exists,
            highest_modseq: mailbox.highest_modseq,
        })
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

/// The accounts of `recipients` as (id, stored address), each once, in first-mention order.
fn resolve_recipients(
    conn: &Connection,
    recipients: &[&str],
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, address FROM accounts WHERE address = ?1")
        .ctx("looking up recipients")?;
    let mut accounts: Vec<(i64, String)> = Vec::with_capacity(recipients.len());
    for &recipient in recipients {
        let (id, address) = stmt
            .query_row([recipient], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .ctx("looking up recipients")?
            .ok_or_else(|| StoreError::NoSuchAccount(recipient.to_owned()))?;
        if !accounts.iter().any(|&(seen, _)| seen == id) {
            accounts.push((id, address));
        }
    }
    Ok(accounts)
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
        s.query_row(params![account_id, name], |r| {
            Ok(MailboxRow {
                id: r.get(0)?,
                uidvalidity: r.get(1)?,
                uidnext: r.get(2)?,
                highest_modseq: get_u64(r, 3)?,
            })
        })
        .optional()
    })
    .ctx("looking up a mailbox")
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

/// Inserts a mailbox with the next value of the store-wide UIDVALIDITY counter.
fn insert_mailbox(tx: &Transaction<'_>, account_id: i64, name: &str) -> Result<(), StoreError> {
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
        "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?1, ?2, ?3)",
        params![account_id, name, uidvalidity],
    )
    .ctx("creating a mailbox")?;
    Ok(())
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

//! What sessions read: message lists, bodies, counters, changes since a mod-sequence, \Recent
//! claims and change notifications.

use rusqlite::{Connection, OptionalExtension, Params, Statement, params};
use tokio::sync::broadcast;

use super::bodies::inline_body;
use super::error::SqliteContext;
use super::flags::SEEN;
use super::{
    Change, MailboxRow, Store, StoreError, canonical_mailbox, existing_mailbox, get_u64, to_sql_u64,
};

/// What IMAP FETCH and POP3 LIST/UIDL need to know about a message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// UID, unique within the mailbox for its UIDVALIDITY.
    pub uid: u32,
    /// Size of the stored octets (RFC822.SIZE).
    pub size: u64,
    /// When the message arrived, in Unix seconds (INTERNALDATE).
    pub internal_date: i64,
    /// Flags and keywords, sorted case-insensitively.
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

/// Message counts for IMAP SELECT (`[UNSEEN n]`) and STATUS (`MESSAGES`, `UNSEEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Number of messages.
    pub exists: u32,
    /// Number of messages without `\Seen`.
    pub unseen: u32,
    /// The lowest UID without `\Seen`; SELECT reports its sequence number.
    pub first_unseen_uid: Option<u32>,
}

/// What [`Store::changes_since`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The mailbox's highest mod-sequence when it was read.
    pub highest_modseq: u64,
    /// Messages new or changed since, ordered by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged since, ascending.
    pub expunged: Vec<u32>,
    /// UIDs that are \Recent to this caller, ascending.
    pub recent: Vec<u32>,
}

/// A message row with its database id, which writes need to reach its flags.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) id: i64,
    pub(super) meta: MessageMeta,
}

impl Store {
    /// Messages of a mailbox ordered by UID.
    pub fn messages(&self, account: &str, mailbox: &str) -> Result<Vec<MessageMeta>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        Ok(into_metas(load_messages(
            &conn,
            mailbox.id,
            &[(1, u32::MAX)],
        )?))
    }

    /// Messages of a mailbox whose UIDs are among `uids`, ordered by UID; UIDs not in the
    /// mailbox are left out. Reads only those rows, however large the mailbox.
    pub fn messages_with_uids(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        Ok(into_metas(load_messages(
            &conn,
            mailbox.id,
            &uid_ranges(uids),
        )?))
    }

    /// Messages whose mod-sequence is above `modseq` (new ones and those whose flags changed since),
    /// ordered by UID: CONDSTORE `FETCH (CHANGEDSINCE)` and QRESYNC (RFC 7162).
    pub fn messages_changed_since(
        &self,
        account: &str,
        mailbox: &str,
        modseq: u64,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        changed_since(&conn, mailbox.id, modseq)
    }

    /// UIDs removed from the mailbox with a mod-sequence above `modseq`, ascending: QRESYNC
    /// `VANISHED (EARLIER)` (RFC 7162 3.2.10). Removals before the mailbox was last recreated are
    /// not included; UIDVALIDITY tells a client about those.
    pub fn expunged_since(
        &self,
        account: &str,
        mailbox: &str,
        modseq: u64,
    ) -> Result<Vec<u32>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        removed_since(&conn, mailbox.id, modseq)
    }

    /// Everything about a mailbox a session that knew it as of mod-sequence `modseq` has not been
    /// told, read at one moment: what [`Store::messages_changed_since`] and
    /// [`Store::expunged_since`] return, the highest mod-sequence they reach, and the UIDs
    /// [`Store::claim_recent`] (`claim`) or [`Store::peek_recent`] hands this caller. A few
    /// indexed rows, however large the mailbox.
    pub fn changes_since(
        &self,
        account: &str,
        mailbox: &str,
        modseq: u64,
        claim: bool,
    ) -> Result<Changes, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        let recent = self.recent(&conn, &mailbox, claim)?;
        Ok(Changes {
            highest_modseq: mailbox.highest_modseq,
            changed: changed_since(&conn, mailbox.id, modseq)?,
            expunged: removed_since(&conn, mailbox.id, modseq)?,
            recent,
        })
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
        let (blob, inline): (String, Option<Vec<u8>>) = {
            let conn = self.read()?;
            let mailbox = existing_mailbox(&conn, account, name)?;
            conn.prepare_cached(
                "SELECT m.blob, b.data FROM messages m LEFT JOIN bodies b ON b.hash = m.blob
                 WHERE m.mailbox_id = ?1 AND m.uid = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![mailbox.id, uid], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .ctx("looking up a message")?
            .ok_or_else(|| StoreError::NoSuchMessage {
                account: account.to_owned(),
                mailbox: name.to_owned(),
                uid,
            })?
        };
        // Hashed, or read from its file, without the lock: other sessions need not wait.
        self.inner.bodies.load(&blob, inline)
    }

    /// Messages among `uids` that were expunged while a session had the mailbox selected and
    /// are still kept readable for sessions not yet told of the expunge (RFC 2180 4.1.1), with
    /// their flags when they were expunged; ascending.
    pub fn expunged_messages(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let id = {
            let conn = self.read()?;
            existing_mailbox(&conn, account, canonical_mailbox(mailbox))?.id
        };
        Ok(self.inner.ghosts.get(id, uids))
    }

    /// The exact octets of a message [`Store::expunged_messages`] lists.
    pub fn read_expunged(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let name = canonical_mailbox(mailbox);
        let (blob, inline) = {
            let conn = self.read()?;
            let id = existing_mailbox(&conn, account, name)?.id;
            let Some(meta) = self.inner.ghosts.get(id, &[uid]).pop() else {
                return Err(StoreError::NoSuchMessage {
                    account: account.to_owned(),
                    mailbox: name.to_owned(),
                    uid,
                });
            };
            let inline = inline_body(&conn, &meta.blob)?;
            (meta.blob, inline)
        };
        self.inner.bodies.load(&blob, inline)
    }

    /// UIDVALIDITY, UIDNEXT, message count and highest mod-sequence of a mailbox.
    pub fn mailbox_status(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<MailboxStatus, StoreError> {
        let conn = self.read()?;
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

    /// Message count, unseen count and first unseen UID of a mailbox, in one query.
    pub fn mailbox_counts(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<MailboxCounts, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        conn.prepare_cached(
            "SELECT COUNT(*), COUNT(*) - COUNT(s.flag), MIN(CASE WHEN s.flag IS NULL THEN m.uid END)
             FROM messages m
             LEFT JOIN message_flags s ON s.message_id = m.id AND s.flag = ?2
             WHERE m.mailbox_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![mailbox.id, SEEN], |r| {
                Ok(MailboxCounts {
                    exists: r.get(0)?,
                    unseen: r.get(1)?,
                    first_unseen_uid: r.get(2)?,
                })
            })
        })
        .ctx("counting messages")
    }

    /// The UIDs this caller is the first to be told about, ascending: IMAP `\Recent` (RFC 3501
    /// 2.3.2), which exactly one session may report for a message.
    ///
    /// The store keeps, per mailbox, the highest UID already claimed (in memory, shared by the
    /// clones of this handle). The first caller after a message arrived gets it and moves the mark
    /// to UIDNEXT-1; later callers get nothing for it. A session calls this at SELECT and again when
    /// it learns of new messages. The marks start at UIDNEXT-1 whenever the store is opened, so
    /// after a restart no earlier message is recent, which RFC 3501 allows.
    pub fn claim_recent(&self, account: &str, mailbox: &str) -> Result<Vec<u32>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        self.recent(&conn, &mailbox, true)
    }

    /// The UIDs that are \Recent to the caller: claimed ([`Store::claim_recent`]) or only looked
    /// at ([`Store::peek_recent`]).
    fn recent(
        &self,
        conn: &Connection,
        mailbox: &MailboxRow,
        claim: bool,
    ) -> Result<Vec<u32>, StoreError> {
        let mark = if claim {
            match self.inner.recent.advance(mailbox.id, mailbox.uidnext - 1) {
                Some(mark) => mark,
                None => return Ok(Vec::new()),
            }
        } else {
            self.inner.recent.peek(mailbox.id)
        };
        uids_above(conn, mailbox.id, mark)
    }

    /// How many messages [`Store::claim_recent`] would hand out now, without claiming them: the
    /// `RECENT` count of IMAP STATUS, which must not take \Recent away from a session.
    pub fn recent_count(&self, account: &str, mailbox: &str) -> Result<u32, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        let mark = self.inner.recent.peek(mailbox.id);
        conn.prepare_cached("SELECT COUNT(*) FROM messages WHERE mailbox_id = ?1 AND uid > ?2")
            .and_then(|mut s| s.query_row(params![mailbox.id, mark], |r| r.get(0)))
            .ctx("counting recent messages")
    }

    /// The UIDs [`Store::claim_recent`] would hand out now, without claiming them: what an
    /// EXAMINE session shows as \Recent (RFC 3501 6.3.2: EXAMINE must not take it away).
    pub fn peek_recent(&self, account: &str, mailbox: &str) -> Result<Vec<u32>, StoreError> {
        let conn = self.read()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        self.recent(&conn, &mailbox, false)
    }

    /// Subscribes to the changes of a mailbox, for IMAP IDLE and unsolicited EXISTS, EXPUNGE and
    /// FETCH responses. Every change committed after this returns is received, in commit order;
    /// read the mailbox after calling this (not before) and apply changes idempotently, since the
    /// read may already show some of them.
    ///
    /// Only changes made through this handle and its clones are seen, not those of another
    /// process on the same directory.
    ///
    /// The channel holds [`WATCH_CAPACITY`](super::WATCH_CAPACITY) (1024) changes. A
    /// receiver that falls further behind gets `RecvError::Lagged(n)`: `n` changes are lost, and
    /// the session must resync by re-reading the mailbox (e.g. [`Store::messages_changed_since`]
    /// and [`Store::expunged_since`] from the highest mod-sequence it knew), then keep receiving.
    /// After [`Change::Deleted`] (the mailbox was deleted or renamed) the channel is closed.
    /// Keyed by the mailbox itself, not its name: renaming another mailbox does not disturb it.
    pub fn watch(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<broadcast::Receiver<Change>, StoreError> {
        // Subscribing under the connection lock, which every write holds until it has sent its
        // changes, makes "committed after this returns" exact.
        let conn = self.conn()?;
        let mailbox = existing_mailbox(&conn, account, canonical_mailbox(mailbox))?;
        Ok(self.inner.watchers.subscribe(mailbox.id))
    }
}

/// Messages of a mailbox with a mod-sequence above `modseq`, ordered by UID.
fn changed_since(
    conn: &Connection,
    mailbox_id: i64,
    modseq: u64,
) -> Result<Vec<MessageMeta>, StoreError> {
    let since = to_sql_u64(modseq)?;
    // INDEXED BY: without statistics SQLite would rather walk the whole mailbox in UID order
    // than sort the few messages a recent mod-sequence selects.
    let mut stmt = conn
        .prepare_cached(
            "SELECT m.id, m.uid, m.size, m.internal_date, m.modseq, m.blob, f.flag
             FROM messages m INDEXED BY messages_modseq
             LEFT JOIN message_flags f ON f.message_id = m.id
             WHERE m.mailbox_id = ?1 AND m.modseq > ?2 ORDER BY m.uid, f.flag",
        )
        .ctx("listing changed messages")?;
    let mut out = Vec::new();
    collect(&mut stmt, params![mailbox_id, since], &mut out)?;
    Ok(into_metas(out))
}

/// UIDs removed from a mailbox with a mod-sequence above `modseq`, ascending.
fn removed_since(conn: &Connection, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>, StoreError> {
    let since = to_sql_u64(modseq)?;
    // INDEXED BY: see `changed_since`; this table only grows.
    conn.prepare_cached(
        "SELECT uid FROM expunged INDEXED BY expunged_modseq
         WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
    )
    .and_then(|mut s| {
        s.query_map(params![mailbox_id, since], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()
    })
    .ctx("listing expunged UIDs")
}

/// The UIDs of a mailbox above a \Recent watermark, ascending.
fn uids_above(conn: &Connection, mailbox_id: i64, mark: u32) -> Result<Vec<u32>, StoreError> {
    conn.prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid")
        .and_then(|mut s| {
            s.query_map(params![mailbox_id, mark], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .ctx("listing recent messages")
}

/// Loads the messages of a mailbox whose UIDs fall in the given inclusive ranges, ordered by UID
/// when the ranges ascend and do not overlap. One query per range: a UID set like `1:*` is one
/// index range scan, however large the mailbox.
pub(super) fn load_messages(
    conn: &Connection,
    mailbox_id: i64,
    ranges: &[(u32, u32)],
) -> Result<Vec<Loaded>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT m.id, m.uid, m.size, m.internal_date, m.modseq, m.blob, f.flag
             FROM messages m LEFT JOIN message_flags f ON f.message_id = m.id
             WHERE m.mailbox_id = ?1 AND m.uid BETWEEN ?2 AND ?3 ORDER BY m.uid, f.flag",
        )
        .ctx("listing messages")?;
    let mut out = Vec::new();
    for &(first, last) in ranges {
        collect(&mut stmt, params![mailbox_id, first, last], &mut out)?;
    }
    Ok(out)
}

/// Runs a message query (id, uid, size, internal_date, modseq, blob, flag — one row per flag,
/// ordered by message) and appends one [`Loaded`] per message.
fn collect(
    stmt: &mut Statement<'_>,
    params: impl Params,
    out: &mut Vec<Loaded>,
) -> Result<(), StoreError> {
    let mut rows = stmt.query(params).ctx("listing messages")?;
    while let Some(r) = rows.next().ctx("listing messages")? {
        let id: i64 = r.get(0).ctx("listing messages")?;
        let flag: Option<String> = r.get(6).ctx("listing messages")?;
        match out.last_mut() {
            Some(last) if last.id == id => last.meta.flags.extend(flag),
            _ => out.push(Loaded {
                id,
                meta: MessageMeta {
                    uid: r.get(1).ctx("listing messages")?,
                    size: get_u64(r, 2).ctx("listing messages")?,
                    internal_date: r.get(3).ctx("listing messages")?,
                    flags: flag.into_iter().collect(),
                    modseq: get_u64(r, 4).ctx("listing messages")?,
                    blob: r.get(5).ctx("listing messages")?,
                },
            }),
        }
    }
    Ok(())
}

fn into_metas(loaded: Vec<Loaded>) -> Vec<MessageMeta> {
    loaded.into_iter().map(|l| l.meta).collect()
}

/// Sorts and merges UIDs into ascending, disjoint inclusive ranges.
pub(super) fn uid_ranges(uids: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match ranges.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(uid) => *last = uid,
            _ => ranges.push((uid, uid)),
        }
    }
    ranges
}

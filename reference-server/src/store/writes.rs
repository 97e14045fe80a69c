//! What changes messages: delivery, APPEND, STORE, COPY, MOVE and EXPUNGE.
//!
//! Each is one IMMEDIATE transaction; its changes go to watchers after the commit, while the
//! connection is still held, so watchers see changes in commit order.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::error::SqliteContext;
use super::flags::{self, DELETED, FlagOp};
use super::group::Pending;
use super::reads::{Loaded, load_messages, uid_ranges};
use super::{
    Change, INBOX, MailboxRow, Store, StoreError, canonical_mailbox, existing_mailbox, immediate,
    mailbox, mailbox_by_id, to_sql_u64,
};

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

/// Where APPEND put a message, for the UIDPLUS `APPENDUID` response code (RFC 4315).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// UIDVALIDITY of the mailbox.
    pub uidvalidity: u32,
    /// UID of the new message.
    pub uid: u32,
}

/// One message's flags after STORE, for its untagged FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags {
    /// The message's UID.
    pub uid: u32,
    /// All of its flags, sorted case-insensitively.
    pub flags: Vec<String>,
    /// Its mod-sequence (new if its flags changed).
    pub modseq: u64,
}

/// What [`Store::store_flags`] did. Each list ascends by UID; UIDs not in the mailbox appear in
/// none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsResult {
    /// Messages whose flags changed, with a new mod-sequence each.
    pub changed: Vec<MessageFlags>,
    /// Messages the operation left as they were (they already had, or lacked, the flags).
    pub unchanged: Vec<MessageFlags>,
    /// Messages not touched because they changed after `unchanged_since` (CONDSTORE `MODIFIED`,
    /// RFC 7162 3.1.3).
    pub failed_modified: Vec<u32>,
}

/// Where COPY or MOVE put messages, for the UIDPLUS `COPYUID` response code (RFC 4315).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination mailbox.
    pub uidvalidity: u32,
    /// (source UID, destination UID), ascending in both; source UIDs that were not there are left
    /// out.
    pub pairs: Vec<(u32, u32)>,
}

impl Store {
    /// Durably stores one message for several local recipients (account addresses), in each
    /// account's INBOX. Returns only after the data is on disk: a 250 reply to SMTP DATA is sent
    /// after this returns.
    ///
    /// All-or-nothing: an unknown account means an error and nothing inserted. A recipient named
    /// twice, in any case, gets one copy. Concurrent deliveries share one transaction and so one
    /// fsync (group commit); each still succeeds or fails on its own.
    pub fn deliver(
        &self,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<Vec<Delivered>, StoreError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        // Checked before writing a blob file so that a refused delivery leaves no file behind;
        // the check inside the transaction below is the one that counts.
        {
            let conn = self.conn()?;
            resolve_recipients(&conn, recipients)?;
        }
        let body = self.inner.bodies.stage(message)?;
        let blob = body.hash.clone();
        let delivered = self
            .commit_grouped(Pending {
                sender: String::new(),
                local: recipients.iter().map(|&a| a.to_owned()).collect(),
                remote: Vec::new(),
                queue_id: String::new(),
                size: message.len() as u64,
                body,
            })?
            .delivered;
        for d in &delivered {
            tracing::debug!(account = %d.account, uid = d.uid, %blob, "delivered");
        }
        Ok(delivered)
    }

    /// Tells watchers about committed changes; called while the connection is still held, so
    /// that they hear of changes in commit order.
    pub(super) fn announce(&self, changes: Vec<(i64, Change)>) {
        for (id, change) in changes {
            self.inner.watchers.send(id, [change]);
        }
    }

    /// IMAP APPEND: durably stores a message in a mailbox with the given flags and internal date
    /// (Unix seconds; now if `None`). `\Recent` among the flags is ignored, since it is session
    /// state; other flags are validated ([`StoreError::InvalidFlag`]).
    pub fn append(
        &self,
        account: &str,
        mailbox: &str,
        octets: &[u8],
        flags: &[String],
        internal_date: Option<i64>,
    ) -> Result<AppendResult, StoreError> {
        let name = canonical_mailbox(mailbox);
        let flags = normalise_flags(account, name, flags)?;
        // As in `deliver`: a refused APPEND leaves no file behind.
        {
            let conn = self.conn()?;
            existing_mailbox(&conn, account, name)?;
        }
        let body = self.inner.bodies.stage(octets)?;
        let new = NewMessage {
            internal_date: internal_date.unwrap_or_else(now),
            size: octets.len() as u64,
            blob: &body.hash,
            flags: &flags,
        };

        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let mut row = existing_mailbox(&tx, account, name)?;
        body.write_in(&tx)?;
        let (uid, modseq) = insert_message(&tx, account, name, &mut row, &new)?;
        row.save(&tx)?;
        tx.commit().ctx("committing an append")?;
        self.inner
            .watchers
            .send(row.id, [Change::Appended { uid, modseq }]);
        Ok(AppendResult {
            uidvalidity: row.uidvalidity,
            uid,
        })
    }

    /// IMAP STORE / UID STORE on the messages with these UIDs (absent ones are ignored).
    ///
    /// Each message whose flag set actually changes gets the mailbox's next mod-sequence, in UID
    /// order. With `unchanged_since` (CONDSTORE `UNCHANGEDSINCE`, RFC 7162 3.1.3), a message whose
    /// mod-sequence is above it is left alone and reported in
    /// [`FlagsResult::failed_modified`]. Flags compare case-insensitively; `\Recent` is ignored
    /// (it is session state, never stored); other flags are validated
    /// ([`StoreError::InvalidFlag`]).
    pub fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult, StoreError> {
        let name = canonical_mailbox(mailbox);
        let given = normalise_flags(account, name, flags)?;
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let mut row = existing_mailbox(&tx, account, name)?;
        let mut result = FlagsResult::default();
        for Loaded { id, meta } in load_messages(&tx, row.id, &uid_ranges(uids))? {
            if unchanged_since.is_some_and(|since| meta.modseq > since) {
                result.failed_modified.push(meta.uid);
                continue;
            }
            let edit = flags::apply(&meta.flags, op, &given);
            if edit.is_noop() {
                result.unchanged.push(MessageFlags {
                    uid: meta.uid,
                    flags: meta.flags,
                    modseq: meta.modseq,
                });
                continue;
            }
            for flag in &edit.remove {
                tx.prepare_cached("DELETE FROM message_flags WHERE message_id = ?1 AND flag = ?2")
                    .and_then(|mut s| s.execute(params![id, flag]))
                    .ctx("removing a flag")?;
            }
            insert_flags(&tx, id, &edit.add)?;
            let modseq = row.take_modseq();
            set_modseq(&tx, id, modseq)?;
            result.changed.push(MessageFlags {
                uid: meta.uid,
                flags: edit.result,
                modseq,
            });
        }
        if !result.changed.is_empty() {
            row.save(&tx)?;
        }
        tx.commit().ctx("committing a flag change")?;
        self.inner.watchers.send(
            row.id,
            result.changed.iter().map(|c| Change::FlagsChanged {
                uid: c.uid,
                flags: c.flags.clone(),
                modseq: c.modseq,
            }),
        );
        Ok(result)
    }

    /// IMAP COPY / UID COPY: copies the messages with these UIDs to mailbox `to` of the same
    /// account, with their flags, internal date and body, under new UIDs ascending in source UID
    /// order. `to` may be the source mailbox itself. Absent UIDs are ignored, but for messages
    /// expunged while a session had the mailbox selected, which are copied from what is kept of
    /// them (`ghosts.rs`).
    pub fn copy_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<CopyResult, StoreError> {
        self.transfer(account, from, uids, to, false)
    }

    /// IMAP MOVE / UID MOVE (RFC 6851): [`Store::copy_messages`] and the removal of the sources,
    /// in one transaction. Returns the same pairs a copy would.
    pub fn move_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<CopyResult, StoreError> {
        self.transfer(account, from, uids, to, true)
    }

    /// Removes the messages with these UIDs from a mailbox in one transaction, recording each
    /// removal with a new mod-sequence so that other sessions can learn of it. UIDs that are not
    /// (or no longer) there are ignored: another session may have removed them first. Returns
    /// the UIDs actually removed, ascending.
    ///
    /// The bodies stay, like [`Store::delete_mailbox`]'s.
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
        self.expunge_where(account, mailbox, |_, _| Ok(wanted))
    }

    /// IMAP EXPUNGE, or UID EXPUNGE (RFC 4315) with `only_uids`: removes the messages flagged
    /// `\Deleted` (only those among `only_uids` if given), as [`Store::expunge`] does. Returns the
    /// removed UIDs, ascending.
    pub fn expunge_deleted(
        &self,
        account: &str,
        mailbox: &str,
        only_uids: Option<&[u32]>,
    ) -> Result<Vec<u32>, StoreError> {
        let mut only: Option<Vec<u32>> = only_uids.map(<[u32]>::to_vec);
        if let Some(only) = &mut only {
            only.sort_unstable();
        }
        self.expunge_where(account, mailbox, |tx, id| {
            let deleted: Vec<u32> = tx
                .prepare_cached(
                    "SELECT m.uid FROM messages m
                     JOIN message_flags f ON f.message_id = m.id AND f.flag = ?2
                     WHERE m.mailbox_id = ?1 ORDER BY m.uid",
                )
                .and_then(|mut s| {
                    s.query_map(params![id, DELETED], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .ctx("listing deleted messages")?;
            Ok(match &only {
                Some(only) => deleted
                    .into_iter()
                    .filter(|uid| only.binary_search(uid).is_ok())
                    .collect(),
                None => deleted,
            })
        })
    }

    /// Removes the UIDs `select` picks (ascending) within one transaction and tells watchers.
    fn expunge_where(
        &self,
        account: &str,
        mailbox: &str,
        select: impl FnOnce(&Connection, i64) -> Result<Vec<u32>, StoreError>,
    ) -> Result<Vec<u32>, StoreError> {
        let name = canonical_mailbox(mailbox);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let mut row = existing_mailbox(&tx, account, name)?;
        let uids = select(&tx, row.id)?;
        let removed = self.expunge_keeping(&tx, &mut row, &uids)?;
        tx.commit().ctx("committing an expunge")?;
        self.inner.watchers.send(
            row.id,
            removed
                .iter()
                .map(|&(uid, modseq)| Change::Expunged { uid, modseq }),
        );
        drop(conn);
        let removed: Vec<u32> = removed.into_iter().map(|(uid, _)| uid).collect();
        if !removed.is_empty() {
            tracing::debug!(account, mailbox = name, ?removed, "expunged");
        }
        Ok(removed)
    }

    /// COPY, or MOVE when `remove` is set.
    fn transfer(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
        remove: bool,
    ) -> Result<CopyResult, StoreError> {
        let from = canonical_mailbox(from);
        let to = canonical_mailbox(to);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let source = existing_mailbox(&tx, account, from)?;
        let mut target = existing_mailbox(&tx, account, to)?;
        let mut messages = load_messages(&tx, source.id, &uid_ranges(uids))?;
        // A UID that is no longer there but kept for sessions not yet told of its expunge:
        // such a session may still name it, and its COPY or MOVE takes what it can still read
        // rather than silently leaving the message out (RFC 2180 4.4).
        if messages.len() < uids.len() {
            let found: std::collections::HashSet<u32> =
                messages.iter().map(|m| m.meta.uid).collect();
            let missing: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| !found.contains(u))
                .collect();
            let kept = self.inner.ghosts.get(source.id, &missing);
            if !kept.is_empty() {
                messages.extend(kept.into_iter().map(|meta| Loaded { id: 0, meta }));
                messages.sort_by_key(|m| m.meta.uid);
            }
        }
        let copied = transfer_rows(&tx, account, to, &mut target, &messages)?;
        let removed = if remove {
            // Re-read: when moving within one mailbox, the copy has just advanced its counters.
            let mut source = mailbox_by_id(&tx, source.id)?;
            let uids: Vec<u32> = messages.iter().map(|m| m.meta.uid).collect();
            self.expunge_keeping(&tx, &mut source, &uids)?
        } else {
            Vec::new()
        };
        tx.commit().ctx(if remove {
            "committing a move"
        } else {
            "committing a copy"
        })?;
        self.inner.watchers.send(
            target.id,
            copied
                .iter()
                .map(|&(_, uid, modseq)| Change::Appended { uid, modseq }),
        );
        self.inner.watchers.send(
            source.id,
            removed
                .into_iter()
                .map(|(uid, modseq)| Change::Expunged { uid, modseq }),
        );
        Ok(CopyResult {
            uidvalidity: target.uidvalidity,
            pairs: copied.into_iter().map(|(src, dst, _)| (src, dst)).collect(),
        })
    }
}

/// A message about to be inserted.
pub(super) struct NewMessage<'a> {
    pub(super) internal_date: i64,
    pub(super) size: u64,
    pub(super) blob: &'a str,
    /// Normalised.
    pub(super) flags: &'a [String],
}

/// Where copies of a message went, and the changes to announce once the transaction commits
/// (mailbox id, change).
pub(super) type Filed = (Vec<Delivered>, Vec<(i64, Change)>);

/// Files one message in the INBOX of each of `recipients` inside `tx`. Returns where each copy
/// went and the changes to announce once `tx` commits.
pub(super) fn deliver_in(
    tx: &Transaction<'_>,
    recipients: &[&str],
    new: &NewMessage<'_>,
) -> Result<Filed, StoreError> {
    let accounts = resolve_recipients(tx, recipients)?;
    let mut delivered = Vec::with_capacity(accounts.len());
    let mut changes = Vec::with_capacity(accounts.len());
    for (account_id, address) in accounts {
        let mut inbox =
            mailbox(tx, account_id, INBOX)?.ok_or_else(|| StoreError::NoSuchMailbox {
                account: address.clone(),
                mailbox: INBOX.to_owned(),
            })?;
        let (uid, modseq) = insert_message(tx, &address, INBOX, &mut inbox, new)?;
        inbox.save(tx)?;
        changes.push((inbox.id, Change::Appended { uid, modseq }));
        delivered.push(Delivered {
            account: address,
            mailbox: INBOX.to_owned(),
            uid,
        });
    }
    Ok((delivered, changes))
}

/// Inserts a message into `row`'s mailbox with the next UID and mod-sequence; the caller saves
/// `row`. Returns (uid, modseq).
fn insert_message(
    tx: &Transaction<'_>,
    account: &str,
    mailbox: &str,
    row: &mut MailboxRow,
    new: &NewMessage<'_>,
) -> Result<(u32, u64), StoreError> {
    let uid = row.take_uid(account, mailbox)?;
    let modseq = row.take_modseq();
    let sql_modseq = to_sql_u64(modseq)?;
    // A slice never exceeds isize::MAX bytes, nor does a size read back from SQLite.
    let size = i64::try_from(new.size).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, blob)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.id,
            uid,
            sql_modseq,
            new.internal_date,
            size,
            new.blob
        ])
    })
    .ctx("inserting a message")?;
    insert_flags(tx, tx.last_insert_rowid(), new.flags)?;
    Ok((uid, modseq))
}

/// Copies loaded messages (ascending UIDs) into `target`, saving its counters. Returns
/// (source uid, new uid, new modseq) per message.
pub(super) fn transfer_rows(
    tx: &Transaction<'_>,
    account: &str,
    target_name: &str,
    target: &mut MailboxRow,
    messages: &[Loaded],
) -> Result<Vec<(u32, u32, u64)>, StoreError> {
    let mut copied = Vec::with_capacity(messages.len());
    for Loaded { meta, .. } in messages {
        let new = NewMessage {
            internal_date: meta.internal_date,
            size: meta.size,
            blob: &meta.blob,
            flags: &meta.flags,
        };
        let (uid, modseq) = insert_message(tx, account, target_name, target, &new)?;
        copied.push((meta.uid, uid, modseq));
    }
    if !copied.is_empty() {
        target.save(tx)?;
    }
    Ok(copied)
}

impl Store {
    /// [`expunge_rows`], keeping the messages readable as ghosts while some session has the
    /// mailbox selected: it may not have been told of the expunge yet (RFC 2180 4.1.1). A
    /// mailbox nobody has selected drops its ghosts, as no session can still list them. Ghosts
    /// kept for a transaction that then rolls back are harmless: one is read only for a message
    /// that is no longer in the mailbox.
    pub(super) fn expunge_keeping(
        &self,
        tx: &Transaction<'_>,
        row: &mut MailboxRow,
        uids: &[u32],
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        if self.inner.watchers.watched(row.id) {
            let kept = load_messages(tx, row.id, &uid_ranges(uids))?;
            self.inner
                .ghosts
                .keep(row.id, kept.into_iter().map(|l| l.meta));
        } else {
            self.inner.ghosts.forget(row.id);
        }
        expunge_rows(tx, row, uids, self.reuses_uids())
    }
}

/// Deletes the messages with these UIDs (ascending, deduplicated) from `row`'s mailbox, recording
/// each removal with the next mod-sequence, and saves `row`. Returns (uid, modseq) per message
/// actually removed.
fn expunge_rows(
    tx: &Transaction<'_>,
    row: &mut MailboxRow,
    uids: &[u32],
    reuse_uids: bool,
) -> Result<Vec<(u32, u64)>, StoreError> {
    let mut removed = Vec::with_capacity(uids.len());
    for &uid in uids {
        let deleted = tx
            .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
            .and_then(|mut s| s.execute(params![row.id, uid]))
            .ctx("expunging a message")?;
        if deleted == 0 {
            continue;
        }
        let modseq = row.take_modseq();
        let sql_modseq = to_sql_u64(modseq)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![row.id, uid, sql_modseq]))
        .ctx("recording an expunge")?;
        removed.push((uid, modseq));
    }
    if !removed.is_empty() && reuse_uids {
        // The `imap_uid_reuse` fault: UIDNEXT falls back to just above the highest UID left.
        row.uidnext = tx
            .prepare_cached("SELECT COALESCE(MAX(uid), 0) + 1 FROM messages WHERE mailbox_id = ?1")
            .and_then(|mut s| s.query_row([row.id], |r| r.get(0)))
            .ctx("finding the highest UID left")?;
    }
    if !removed.is_empty() {
        row.save(tx)?;
    }
    Ok(removed)
}

/// Adds flags (normalised, not yet on the message) to a message.
fn insert_flags(tx: &Transaction<'_>, message_id: i64, flags: &[String]) -> Result<(), StoreError> {
    for flag in flags {
        tx.prepare_cached("INSERT INTO message_flags (message_id, flag) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![message_id, flag]))
            .ctx("adding a flag")?;
    }
    Ok(())
}

/// Records a message's new mod-sequence.
fn set_modseq(tx: &Transaction<'_>, message_id: i64, modseq: u64) -> Result<(), StoreError> {
    let modseq = to_sql_u64(modseq)?;
    tx.prepare_cached("UPDATE messages SET modseq = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![message_id, modseq]))
        .ctx("advancing a message's mod-sequence")?;
    Ok(())
}

/// Validates client flags, naming the account and mailbox in the error.
fn normalise_flags(
    account: &str,
    mailbox: &str,
    flags: &[String],
) -> Result<Vec<String>, StoreError> {
    flags::normalise(flags).map_err(|flag| StoreError::InvalidFlag {
        account: account.to_owned(),
        mailbox: mailbox.to_owned(),
        flag,
    })
}

/// The current time in Unix seconds, the default INTERNALDATE.
pub(super) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The accounts of `recipients` as (id, stored address), each once, in first-mention order.
pub(super) fn resolve_recipients(
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

//! Accounts, the mailbox hierarchy and subscriptions: what IMAP CREATE, DELETE, RENAME, LIST,
//! SUBSCRIBE and UNSUBSCRIBE change.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction, params};

use super::error::SqliteContext;
use super::reads::load_messages;
use super::writes::transfer_rows;
use super::{
    Change, INBOX, Store, StoreError, account_id, canonical_mailbox, immediate, insert_mailbox,
    mailbox,
};

/// The hierarchy delimiter of mailbox names, as IMAP LIST reports it: `a/b` is a child of `a`.
pub const DELIMITER: char = '/';

/// A special-use attribute of a mailbox (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\All`: a virtual view of every message.
    All,
    /// `\Archive`: archived messages.
    Archive,
    /// `\Drafts`: drafts being composed.
    Drafts,
    /// `\Flagged`: a virtual view of flagged messages.
    Flagged,
    /// `\Junk`: spam.
    Junk,
    /// `\Sent`: copies of sent messages.
    Sent,
    /// `\Trash`: deleted messages waiting to be purged.
    Trash,
}

impl SpecialUse {
    const ALL: [SpecialUse; 7] = [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ];

    /// The attribute as IMAP LIST writes it, e.g. `\Sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// Parses an attribute, ignoring case (`\sent` is `\Sent`).
    pub fn parse(attribute: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(attribute))
    }
}

/// The mailboxes every account gets besides INBOX, subscribed when created.
const DEFAULT_MAILBOXES: [(&str, SpecialUse); 4] = [
    ("Sent", SpecialUse::Sent),
    ("Drafts", SpecialUse::Drafts),
    ("Trash", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
];

/// One mailbox as IMAP LIST describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Full name, levels separated by [`DELIMITER`].
    pub name: String,
    /// Its RFC 6154 attribute, if any.
    pub special_use: Option<SpecialUse>,
    /// Whether the account subscribes to this name (`\Subscribed`).
    pub subscribed: bool,
    /// Whether some mailbox is below it in the hierarchy (`\HasChildren`, else `\HasNoChildren`).
    pub has_children: bool,
}

impl Store {
    /// Idempotent: creates the account (address compared case-insensitively) and its INBOX, and
    /// makes sure it has a `Sent`, `Drafts`, `Trash` and `Junk` mailbox with that special-use
    /// attribute, each subscribed when this creates it (INBOX too).
    ///
    /// A default mailbox is only created when no mailbox has its attribute: one the user renamed
    /// keeps serving, one the user deleted comes back. A mailbox that already has the default
    /// name but no attribute gets the attribute instead. An existing account keeps the spelling
    /// it was created with.
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
            insert_mailbox(&tx, account_id, INBOX, None)?;
            subscribe_name(&tx, account_id, INBOX)?;
        }
        for (name, special_use) in DEFAULT_MAILBOXES {
            ensure_special_mailbox(&tx, account_id, name, special_use)?;
        }
        tx.commit().ctx("committing an account")?;
        if created > 0 {
            tracing::info!(account = address, "created account");
        }
        Ok(())
    }

    /// Creates a mailbox in an existing account, with a UIDVALIDITY larger than any before it.
    ///
    /// Missing parents are not created; see [`Store::create_mailbox_with_parents`].
    pub fn create_mailbox(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        validate_name(mailbox_name)?;
        let name = canonical_mailbox(mailbox_name);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        refuse_existing(&tx, account, account_id, name)?;
        insert_mailbox(&tx, account_id, name, None)?;
        tx.commit().ctx("committing a new mailbox")
    }

    /// IMAP CREATE (RFC 3501 6.3.3): creates a mailbox and every missing superior level of its
    /// name (`a/b/c` creates `a` and `a/b` if they are missing). A trailing [`DELIMITER`] only
    /// declares that children will follow and is dropped. Fails with
    /// [`StoreError::MailboxExists`] if the mailbox itself exists.
    pub fn create_mailbox_with_parents(
        &self,
        account: &str,
        mailbox_name: &str,
    ) -> Result<(), StoreError> {
        let trimmed = mailbox_name.strip_suffix(DELIMITER).unwrap_or(mailbox_name);
        validate_name(trimmed)?;
        let name = canonical_mailbox(trimmed);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        refuse_existing(&tx, account, account_id, name)?;
        create_parents(&tx, account_id, name)?;
        insert_mailbox(&tx, account_id, name, None)?;
        tx.commit().ctx("committing a new mailbox")
    }

    /// Deletes a mailbox and its messages. INBOX cannot be deleted, nor can a mailbox with
    /// children ([`StoreError::HasChildren`]): RFC 3501 6.3.4 would keep it as a `\Noselect` name,
    /// which this store does not model. Its subscription stays (RFC 3501 6.3.6). Watchers get
    /// [`Change::Deleted`].
    ///
    /// Bodies stay, rows and files alike: other messages may share them, and removing
    /// unreferenced ones is a sweep that can run apart from any session.
    pub fn delete_mailbox(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        let name = canonical_mailbox(mailbox_name);
        if name == INBOX {
            return Err(StoreError::CannotDeleteInbox {
                account: account.to_owned(),
            });
        }
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        let row = mailbox(&tx, account_id, name)?.ok_or_else(|| StoreError::NoSuchMailbox {
            account: account.to_owned(),
            mailbox: name.to_owned(),
        })?;
        if !children(&tx, account_id, name)?.is_empty() {
            return Err(StoreError::HasChildren {
                account: account.to_owned(),
                mailbox: name.to_owned(),
            });
        }
        tx.execute("DELETE FROM mailboxes WHERE id = ?1", [row.id])
            .ctx("deleting a mailbox")?;
        tx.commit().ctx("committing a mailbox deletion")?;
        self.inner.watchers.close(row.id);
        self.inner.ghosts.forget(row.id);
        self.inner.recent.forget(row.id);
        Ok(())
    }

    /// IMAP RENAME (RFC 3501 6.3.5): renames mailbox `from` and every mailbox below it
    /// (`from/x` becomes `to/x`), keeping their UIDVALIDITY, UIDs and messages, and creating
    /// missing superior levels of `to`. Subscriptions of the renamed names move with them.
    /// Watchers of the renamed mailboxes get [`Change::Deleted`].
    ///
    /// Renaming INBOX is special: its messages move to a new mailbox `to` (new UIDVALIDITY, UIDs
    /// from 1 in their old order, flags kept) and INBOX stays, empty; mailboxes below INBOX are
    /// not affected. INBOX's watchers see each message expunged.
    ///
    /// Fails if `from` does not exist, if `to` or a new child name exists
    /// ([`StoreError::MailboxExists`]) or if `to` lies below `from`
    /// ([`StoreError::RenameIntoItself`]).
    pub fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError> {
        validate_name(to)?;
        let from = canonical_mailbox(from);
        let to = canonical_mailbox(to);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        let source = mailbox(&tx, account_id, from)?.ok_or_else(|| StoreError::NoSuchMailbox {
            account: account.to_owned(),
            mailbox: from.to_owned(),
        })?;
        refuse_existing(&tx, account, account_id, to)?;

        if from == INBOX {
            let mut inbox = source;
            create_parents(&tx, account_id, to)?;
            let target_id = insert_mailbox(&tx, account_id, to, None)?;
            let mut target = super::mailbox_by_id(&tx, target_id)?;
            let messages = load_messages(&tx, inbox.id, &[(1, u32::MAX)])?;
            transfer_rows(&tx, account, to, &mut target, &messages)?;
            let uids: Vec<u32> = messages.iter().map(|m| m.meta.uid).collect();
            let removed = self.expunge_keeping(&tx, &mut inbox, &uids)?;
            tx.commit().ctx("committing the rename of INBOX")?;
            self.inner.watchers.send(
                inbox.id,
                removed
                    .into_iter()
                    .map(|(uid, modseq)| Change::Expunged { uid, modseq }),
            );
            return Ok(());
        }

        let prefix = format!("{from}{DELIMITER}");
        if to.starts_with(&prefix) {
            return Err(StoreError::RenameIntoItself {
                account: account.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        let mut renames = vec![(source.id, from.to_owned(), to.to_owned())];
        for (id, old) in children(&tx, account_id, from)? {
            let new = format!("{to}{}", &old[from.len()..]);
            refuse_existing(&tx, account, account_id, &new)?;
            renames.push((id, old, new));
        }
        create_parents(&tx, account_id, to)?;
        for (id, old, new) in &renames {
            tx.prepare_cached("UPDATE mailboxes SET name = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, new]))
                .ctx("renaming a mailbox")?;
            // OR REPLACE: the new name may already be subscribed, mailbox or not.
            tx.prepare_cached(
                "UPDATE OR REPLACE subscriptions SET name = ?3 WHERE account_id = ?1 AND name = ?2",
            )
            .and_then(|mut s| s.execute(params![account_id, old, new]))
            .ctx("moving a subscription")?;
        }
        tx.commit().ctx("committing a rename")?;
        for (id, _, _) in &renames {
            self.inner.watchers.close(*id);
            self.inner.ghosts.forget(*id);
        }
        Ok(())
    }

    /// Every mailbox of the account, sorted by name (bytewise).
    pub fn list_mailboxes(&self, account: &str) -> Result<Vec<MailboxInfo>, StoreError> {
        let conn = self.read()?;
        let account_id = account_id(&conn, account)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT m.name, m.special_use, s.name IS NOT NULL FROM mailboxes m
                 LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name
                 WHERE m.account_id = ?1 ORDER BY m.name",
            )
            .ctx("listing mailboxes")?;
        let mut list: Vec<MailboxInfo> = stmt
            .query_map([account_id], |r| {
                Ok(MailboxInfo {
                    name: r.get(0)?,
                    special_use: r
                        .get::<_, Option<String>>(1)?
                        .as_deref()
                        .and_then(SpecialUse::parse),
                    subscribed: r.get(2)?,
                    has_children: false,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .ctx("listing mailboxes")?;
        let parents: HashSet<&str> = list
            .iter()
            .flat_map(|m| m.name.match_indices(DELIMITER).map(|(i, _)| &m.name[..i]))
            .collect();
        let has_children: Vec<bool> = list
            .iter()
            .map(|m| parents.contains(m.name.as_str()))
            .collect();
        for (info, has) in list.iter_mut().zip(has_children) {
            info.has_children = has;
        }
        Ok(list)
    }

    /// The names the account subscribes to, sorted; they need not exist (IMAP LSUB).
    pub fn subscriptions(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.read()?;
        let account_id = account_id(&conn, account)?;
        conn.prepare_cached("SELECT name FROM subscriptions WHERE account_id = ?1 ORDER BY name")
            .and_then(|mut s| {
                s.query_map([account_id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .ctx("listing subscriptions")
    }

    /// IMAP SUBSCRIBE: adds a name to the account's subscriptions. The mailbox need not exist
    /// (RFC 3501 6.3.6); subscribing twice is not an error.
    pub fn subscribe(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        validate_name(mailbox_name)?;
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        subscribe_name(&tx, account_id, canonical_mailbox(mailbox_name))?;
        tx.commit().ctx("committing a subscription")
    }

    /// IMAP UNSUBSCRIBE: removes a name from the account's subscriptions, failing with
    /// [`StoreError::NotSubscribed`] if it was not there.
    pub fn unsubscribe(&self, account: &str, mailbox_name: &str) -> Result<(), StoreError> {
        let name = canonical_mailbox(mailbox_name);
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        let account_id = account_id(&tx, account)?;
        let removed = tx
            .execute(
                "DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2",
                params![account_id, name],
            )
            .ctx("removing a subscription")?;
        if removed == 0 {
            return Err(StoreError::NotSubscribed {
                account: account.to_owned(),
                mailbox: name.to_owned(),
            });
        }
        tx.commit().ctx("committing an unsubscription")
    }
}

/// Refuses names that are empty, contain control characters or have an empty hierarchy level
/// (`/a`, `a//b`, `a/`).
fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name.chars().any(char::is_control)
        || name.split(DELIMITER).any(str::is_empty)
    {
        return Err(StoreError::InvalidMailboxName(name.to_owned()));
    }
    Ok(())
}

/// Fails with [`StoreError::MailboxExists`] if the account has a mailbox `name`.
fn refuse_existing(
    tx: &Transaction<'_>,
    account: &str,
    account_id: i64,
    name: &str,
) -> Result<(), StoreError> {
    if mailbox(tx, account_id, name)?.is_some() {
        return Err(StoreError::MailboxExists {
            account: account.to_owned(),
            mailbox: name.to_owned(),
        });
    }
    Ok(())
}

/// Creates each missing superior level of `name` (`a` and `a/b` for `a/b/c`).
fn create_parents(tx: &Transaction<'_>, account_id: i64, name: &str) -> Result<(), StoreError> {
    for (i, _) in name.match_indices(DELIMITER) {
        let parent = canonical_mailbox(&name[..i]);
        if mailbox(tx, account_id, parent)?.is_none() {
            insert_mailbox(tx, account_id, parent, None)?;
        }
    }
    Ok(())
}

/// The (id, name) of every mailbox below `name`, at any depth.
fn children(
    tx: &rusqlite::Connection,
    account_id: i64,
    name: &str,
) -> Result<Vec<(i64, String)>, StoreError> {
    let prefix = format!("{name}{DELIMITER}");
    tx.prepare_cached(
        "SELECT id, name FROM mailboxes
         WHERE account_id = ?1 AND substr(name, 1, length(?2)) = ?2 ORDER BY name",
    )
    .and_then(|mut s| {
        s.query_map(params![account_id, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()
    })
    .ctx("looking for child mailboxes")
}

/// Adds `name` to the account's subscriptions unless it is there.
fn subscribe_name(tx: &Transaction<'_>, account_id: i64, name: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO subscriptions (account_id, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![account_id, name]))
    .ctx("subscribing")?;
    Ok(())
}

/// Gives the account a mailbox with `special_use` unless one has it: the mailbox called `name`
/// if it exists without an attribute, else a new one (subscribed).
fn ensure_special_mailbox(
    tx: &Transaction<'_>,
    account_id: i64,
    name: &str,
    special_use: SpecialUse,
) -> Result<(), StoreError> {
    let has_one: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM mailboxes WHERE account_id = ?1 AND special_use = ?2)",
        )
        .and_then(|mut s| s.query_row(params![account_id, special_use.as_str()], |r| r.get(0)))
        .ctx("looking up a special-use mailbox")?;
    if has_one {
        return Ok(());
    }
    let existing: Option<Option<String>> = tx
        .prepare_cached("SELECT special_use FROM mailboxes WHERE account_id = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![account_id, name], |r| r.get(0))
                .optional()
        })
        .ctx("looking up a default mailbox")?;
    match existing {
        None => {
            insert_mailbox(tx, account_id, name, Some(special_use))?;
            subscribe_name(tx, account_id, name)?;
        }
        Some(None) => {
            tx.prepare_cached(
                "UPDATE mailboxes SET special_use = ?3 WHERE account_id = ?1 AND name = ?2",
            )
            .and_then(|mut s| s.execute(params![account_id, name, special_use.as_str()]))
            .ctx("marking a special-use mailbox")?;
        }
        // The name serves another purpose; the user can give this one to a mailbox of their own.
        Some(Some(_)) => {}
    }
    Ok(())
}

//! The outbound queue: mail accepted for other domains, waiting for delivery by the relay.
//!
//! A message arriving for local and foreign recipients is filed and queued in one transaction, so
//! a 250 reply means both are durable. Each foreign recipient is a row with its own attempt count
//! and next attempt time; a recipient leaves the queue when it is delivered, or when it failed for
//! good, in the same transaction that files or queues the bounce for it. After a crash the queue
//! is as the last commit left it: nothing acknowledged is lost.

use rusqlite::{Transaction, params};

use super::bodies::inline_body;
use super::error::SqliteContext;
use super::group::Pending;
use super::writes::{Delivered, Filed, NewMessage, deliver_in, now};
use super::{Store, StoreError, immediate, to_sql_u64};

/// A message arriving for delivery: filed for the local recipients, queued for the others.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The reverse path, empty for the null sender.
    pub sender: &'a str,
    /// Local accounts.
    pub local: &'a [&'a str],
    /// Recipients in other domains (full addresses).
    pub remote: &'a [&'a str],
    /// The message octets.
    pub message: &'a [u8],
    /// The queue id, for logs and the relay's `Received:` trail.
    pub queue_id: &'a str,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Local copies.
    pub delivered: Vec<Delivered>,
    /// Recipients queued for relay (distinct, case-insensitively).
    pub queued: usize,
}

/// Recipients of one queued message in one domain that are due: one SMTP transaction's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundJob {
    /// The queued message's row id.
    pub message_id: i64,
    /// The queue id given at acceptance.
    pub queue_id: String,
    /// The reverse path, empty for the null sender.
    pub sender: String,
    /// The body's blob name.
    pub blob: String,
    /// Body size in octets.
    pub size: u64,
    /// When the message was accepted, in Unix seconds.
    pub arrived: i64,
    /// The recipients' domain.
    pub domain: String,
    /// The due recipients.
    pub recipients: Vec<OutboundRecipient>,
}

/// One queued recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecipient {
    /// The address.
    pub address: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, in Unix milliseconds.
    pub next_attempt: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What became of a recipient after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Delivered, or failed for good (with its bounce, if any, given alongside): leaves the queue.
    Done,
    /// Try again at this time (Unix milliseconds).
    Retry {
        /// When.
        at_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
}

impl Store {
    /// Durably files `mail` for its local recipients and queues it for the remote ones, in one
    /// transaction: either both happen or neither. Returns only once the data is on disk.
    ///
    /// Concurrent calls share one transaction and so one fsync (group commit); each still
    /// succeeds or fails on its own.
    pub fn accept(&self, mail: &Incoming<'_>) -> Result<Accepted, StoreError> {
        if mail.local.is_empty() && mail.remote.is_empty() {
            return Ok(Accepted {
                delivered: Vec::new(),
                queued: 0,
            });
        }
        let body = self.inner.bodies.stage(mail.message)?;
        let blob = body.hash.clone();
        let accepted = self.commit_grouped(Pending {
            sender: mail.sender.to_owned(),
            local: mail.local.iter().map(|&a| a.to_owned()).collect(),
            remote: mail.remote.iter().map(|&a| a.to_owned()).collect(),
            queue_id: mail.queue_id.to_owned(),
            size: mail.message.len() as u64,
            body,
        })?;
        tracing::debug!(
            id = mail.queue_id,
            local = accepted.delivered.len(),
            queued = accepted.queued,
            %blob,
            "accepted"
        );
        Ok(accepted)
    }

    /// The earliest time (Unix milliseconds) a queued recipient is due, if any is queued.
    pub fn next_outbound_due(&self) -> Result<Option<i64>, StoreError> {
        self.conn()?
            .query_row(
                "SELECT min(next_attempt) FROM outbound_recipients",
                [],
                |r| r.get(0),
            )
            .ctx("reading the outbound queue")
    }

    /// Recipients due at `now_ms`, grouped by message and domain, the longest-waiting first; at
    /// most `limit` recipients.
    pub fn due_outbound(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboundJob>, StoreError> {
        self.outbound_rows(Some(now_ms), limit)
    }

    /// Every queued recipient, grouped like [`Store::due_outbound`]: what `mailq` shows.
    pub fn outbound_queue(&self) -> Result<Vec<OutboundJob>, StoreError> {
        self.outbound_rows(None, usize::MAX)
    }

    fn outbound_rows(
        &self,
        due: Option<i64>,
        limit: usize,
    ) -> Result<Vec<OutboundJob>, StoreError> {
        let conn = self.conn()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.id, o.queue_id, o.sender, o.blob, o.size, o.arrived,
                        r.domain, r.recipient, r.attempts, r.next_attempt, r.last_error
                 FROM outbound_recipients r JOIN outbound o ON o.id = r.message_id
                 WHERE ?1 IS NULL OR r.next_attempt <= ?1
                 ORDER BY r.next_attempt, o.id, r.domain, r.recipient
                 LIMIT ?2",
            )
            .ctx("reading the outbound queue")?;
        let rows = stmt
            .query_map(params![due, limit], |r| {
                Ok((
                    OutboundJob {
                        message_id: r.get(0)?,
                        queue_id: r.get(1)?,
                        sender: r.get(2)?,
                        blob: r.get(3)?,
                        size: super::get_u64(r, 4)?,
                        arrived: r.get(5)?,
                        domain: r.get(6)?,
                        recipients: Vec::new(),
                    },
                    OutboundRecipient {
                        address: r.get(7)?,
                        attempts: r.get(8)?,
                        next_attempt: r.get(9)?,
                        last_error: r.get(10)?,
                    },
                ))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .ctx("reading the outbound queue")?;
        let mut jobs: Vec<OutboundJob> = Vec::new();
        for (job, recipient) in rows {
            match jobs.iter_mut().find(|j| {
                j.message_id == job.message_id && j.domain.eq_ignore_ascii_case(&job.domain)
            }) {
                Some(existing) => existing.recipients.push(recipient),
                None => jobs.push(OutboundJob {
                    recipients: vec![recipient],
                    ..job
                }),
            }
        }
        Ok(jobs)
    }

    /// The body of a queued message, checked against its hash like [`Store::read_message`]'s.
    pub fn outbound_body(&self, blob: &str) -> Result<Vec<u8>, StoreError> {
        let inline = inline_body(&*self.conn()?, blob)?;
        self.inner.bodies.load(blob, inline)
    }

    /// Records the outcome of an attempt for recipients of queued message `message_id`, and files
    /// or queues `bounce` (a delivery status notification for those that failed for good) in
    /// the same transaction. Recipients no longer queued are ignored; the message row goes with
    /// its last recipient.
    pub fn settle_outbound(
        &self,
        message_id: i64,
        outcomes: &[(&str, Settle)],
        bounce: Option<&Incoming<'_>>,
    ) -> Result<(), StoreError> {
        let body = bounce
            .map(|b| self.inner.bodies.stage(b.message))
            .transpose()?;
        let mut conn = self.conn()?;
        let tx = immediate(&mut conn)?;
        for (recipient, settle) in outcomes {
            match settle {
                Settle::Done => tx
                    .prepare_cached(
                        "DELETE FROM outbound_recipients WHERE message_id = ?1 AND recipient = ?2",
                    )
                    .and_then(|mut s| s.execute(params![message_id, recipient])),
                Settle::Retry { at_ms, error } => tx
                    .prepare_cached(
                        "UPDATE outbound_recipients
                         SET attempts = attempts + 1, next_attempt = ?3, last_error = ?4
                         WHERE message_id = ?1 AND recipient = ?2",
                    )
                    .and_then(|mut s| s.execute(params![message_id, recipient, at_ms, error])),
            }
            .ctx("updating the outbound queue")?;
        }
        tx.execute(
            "DELETE FROM outbound WHERE id = ?1
             AND NOT EXISTS (SELECT 1 FROM outbound_recipients WHERE message_id = ?1)",
            [message_id],
        )
        .ctx("removing a finished outbound message")?;
        let mut changes = Vec::new();
        if let (Some(bounce), Some(body)) = (bounce, &body) {
            let size = bounce.message.len() as u64;
            body.write_in(&tx)?;
            changes = accept_in(&tx, bounce, size, &body.hash)?.1;
            queue_in(&tx, bounce, size, &body.hash)?;
        }
        tx.commit().ctx("committing an outbound attempt")?;
        self.announce(changes);
        Ok(())
    }
}

/// Files `mail`, whose body of `size` octets is blob `blob`, for its local recipients inside `tx`.
pub(super) fn accept_in(
    tx: &Transaction<'_>,
    mail: &Incoming<'_>,
    size: u64,
    blob: &str,
) -> Result<Filed, StoreError> {
    if mail.local.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let new = NewMessage {
        internal_date: now(),
        size,
        blob,
        flags: &[],
    };
    deliver_in(tx, mail.local, &new)
}

/// Queues `mail`, whose body of `size` octets is blob `blob`, for its remote recipients inside
/// `tx`, each due at once. Returns how many distinct recipients were queued.
pub(super) fn queue_in(
    tx: &Transaction<'_>,
    mail: &Incoming<'_>,
    size: u64,
    blob: &str,
) -> Result<usize, StoreError> {
    if mail.remote.is_empty() {
        return Ok(0);
    }
    let size = to_sql_u64(size)?;
    tx.prepare_cached(
        "INSERT INTO outbound (queue_id, sender, blob, size, arrived) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![mail.queue_id, mail.sender, blob, size, now()]))
    .ctx("queueing a message for relay")?;
    let id = tx.last_insert_rowid();
    let due = now_ms();
    let mut queued = 0;
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO outbound_recipients (message_id, recipient, domain, next_attempt)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .ctx("queueing a recipient for relay")?;
    let mut seen: Vec<String> = Vec::new();
    for &recipient in mail.remote {
        let Some((_, domain)) = recipient.rsplit_once('@') else {
            return Err(StoreError::InvalidAddress(recipient.to_owned()));
        };
        let key = recipient.to_ascii_lowercase();
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        queued += stmt
            .execute(params![id, recipient, domain.to_ascii_lowercase(), due])
            .ctx("queueing a recipient for relay")?;
    }
    Ok(queued)
}

/// The current time in Unix milliseconds, the queue's clock.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

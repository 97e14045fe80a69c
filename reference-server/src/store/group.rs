//! Group commit: deliveries that arrive while another is committing share the next transaction,
//! and so one WAL fsync, instead of queueing for one fsync each.
//!
//! There is no committer thread. A caller files its delivery in the queue; if no commit is in
//! progress it becomes the leader, takes everything queued, commits it in one IMMEDIATE
//! transaction and hands every caller its outcome; otherwise it waits, and either a leader
//! commits its delivery or it leads the next batch itself. A caller returns only after the
//! transaction holding its delivery committed (synchronous=FULL: the WAL is fsynced), so a 250
//! sent after it still means the message is on disk.
//!
//! Each delivery runs inside its own savepoint: one that fails (an unknown account, an exhausted
//! mailbox) is rolled back alone and fails alone. Deliveries are filed in queue order, so UIDs
//! rise in that order, and their changes are announced to watchers after the commit, in that
//! order, while the connection is still held.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};

use rusqlite::Transaction;

use super::bodies::Staged;
use super::error::SqliteContext;
use super::outbound::{Accepted, accept_in, queue_in};
use super::watch::Change;
use super::{Incoming, Store, StoreError, immediate};

/// One delivery waiting to be committed: a message to be filed for local accounts and queued
/// for remote recipients, its body staged (a large one already durable in its file).
#[derive(Debug)]
pub(super) struct Pending {
    /// The reverse path, empty for the null sender.
    pub(super) sender: String,
    /// Local accounts.
    pub(super) local: Vec<String>,
    /// Recipients in other domains.
    pub(super) remote: Vec<String>,
    /// The queue id, for the outbound queue.
    pub(super) queue_id: String,
    /// Body size in octets.
    pub(super) size: u64,
    /// The body: a file durable before the delivery is queued, or octets written in the batch's
    /// transaction, inside the delivery's savepoint.
    pub(super) body: Staged,
}

type Outcome = Result<Accepted, StoreError>;

/// The queue of deliveries and the outcomes not yet collected.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_ticket: u64,
    queued: Vec<Waiting>,
    /// Whether a leader is committing a batch now.
    committing: bool,
    outcomes: HashMap<u64, Outcome>,
    /// The size of every batch taken, so that tests can see deliveries share a transaction.
    #[cfg(test)]
    batches: Vec<usize>,
}

/// A queued delivery and the thread to wake when it has an outcome. Each caller is woken on
/// its own: a shared condition variable would wake every waiter at the end of every batch,
/// and the context switches are what a busy server pays for.
#[derive(Debug)]
struct Waiting {
    ticket: u64,
    delivery: Pending,
    thread: Thread,
}

impl GroupCommit {
    /// The queue holds no database state, so a panic elsewhere leaves it consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The end of a leader's turn, run on every exit: deliveries of its batch without an outcome
/// (the leader unwound) fail rather than wait for ever, their callers are woken, and so is the
/// first caller queued since, to lead the next batch.
struct Leading<'a> {
    group: &'a GroupCommit,
    batch: Vec<(u64, Thread)>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut state = self.group.state();
        state.committing = false;
        for (ticket, _) in &self.batch {
            state
                .outcomes
                .entry(*ticket)
                .or_insert(Err(StoreError::LockPoisoned));
        }
        let next = state.queued.first().map(|w| w.thread.clone());
        drop(state);
        let me = thread::current().id();
        for (_, waiter) in &self.batch {
            if waiter.id() != me {
                waiter.unpark();
            }
        }
        if let Some(next) = next {
            next.unpark();
        }
    }
}

impl Store {
    /// Commits `delivery` together with whatever other deliveries are queued; returns once the
    /// transaction holding it is durable, or with the reason it was not stored.
    pub(super) fn commit_grouped(&self, delivery: Pending) -> Outcome {
        let group = &self.inner.group;
        let mut state = group.state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queued.push(Waiting {
            ticket,
            delivery,
            thread: thread::current(),
        });
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.committing {
                drop(state);
                // Woken when our batch is done or when we are to lead; spurious wake-ups just
                // go round the loop again.
                thread::park();
                state = group.state();
                continue;
            }
            // Nothing is committing, so our delivery is still queued: lead.
            state.committing = true;
            let queued = std::mem::take(&mut state.queued);
            #[cfg(test)]
            state.batches.push(queued.len());
            drop(state);
            let mut batch = Vec::with_capacity(queued.len());
            let mut leading = Leading {
                group,
                batch: Vec::with_capacity(queued.len()),
            };
            for waiting in queued {
                leading.batch.push((waiting.ticket, waiting.thread));
                batch.push((waiting.ticket, waiting.delivery));
            }
            let outcomes = self.commit_batch(batch);
            group.state().outcomes.extend(outcomes);
            // Wakes the batch's callers and the next leader.
            drop(leading);
            state = group.state();
        }
    }

    /// Files every delivery of `batch` in one transaction, each in its own savepoint.
    fn commit_batch(&self, batch: Vec<(u64, Pending)>) -> Vec<(u64, Outcome)> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(error) => return fail_all(batch, &error),
        };
        let tx = match immediate(&mut conn) {
            Ok(tx) => tx,
            Err(error) => return fail_all(batch, &error),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut changes = Vec::new();
        for (ticket, delivery) in &batch {
            match in_savepoint(&tx, |tx| file(tx, delivery)) {
                Ok(Ok((accepted, filed))) => {
                    changes.extend(filed);
                    outcomes.push((*ticket, Ok(accepted)));
                }
                Ok(Err(error)) => outcomes.push((*ticket, Err(error))),
                // The transaction itself is in doubt: dropping it rolls everything back.
                Err(error) => return fail_all(batch, &error),
            }
        }
        if let Err(error) = tx.commit().ctx("committing a batch of deliveries") {
            return fail_all(batch, &error);
        }
        self.announce(changes);
        drop(conn);
        tracing::debug!(deliveries = outcomes.len(), "group commit");
        outcomes
    }
}

/// Files one delivery inside the batch's transaction.
fn file(
    tx: &Transaction<'_>,
    delivery: &Pending,
) -> Result<(Accepted, Vec<(i64, Change)>), StoreError> {
    let local: Vec<&str> = delivery.local.iter().map(String::as_str).collect();
    let remote: Vec<&str> = delivery.remote.iter().map(String::as_str).collect();
    let mail = Incoming {
        sender: &delivery.sender,
        local: &local,
        remote: &remote,
        message: &[],
        queue_id: &delivery.queue_id,
    };
    delivery.body.write_in(tx)?;
    let (delivered, changes) = accept_in(tx, &mail, delivery.size, &delivery.body.hash)?;
    let queued = queue_in(tx, &mail, delivery.size, &delivery.body.hash)?;
    Ok((Accepted { delivered, queued }, changes))
}

/// Runs `work` in a savepoint, rolling back to it if `work` fails. The outer error means the
/// savepoint itself failed and the transaction can no longer be trusted.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<Result<T, StoreError>, StoreError> {
    tx.execute_batch("SAVEPOINT delivery")
        .ctx("starting a delivery's savepoint")?;
    let result = work(tx);
    if result.is_err() {
        tx.execute_batch("ROLLBACK TO delivery")
            .ctx("rolling back a failed delivery")?;
    }
    tx.execute_batch("RELEASE delivery")
        .ctx("releasing a delivery's savepoint")?;
    Ok(result)
}

/// Every delivery of a batch that could not be committed fails with the batch's reason.
fn fail_all(batch: Vec<(u64, Pending)>, error: &StoreError) -> Vec<(u64, Outcome)> {
    batch
        .into_iter()
        .map(|(ticket, _)| (ticket, Err(StoreError::BatchFailed(error.to_string()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::thread;

    use super::*;
    use crate::store::INBOX;
    use crate::store::blobs::sha256_hex;

    const ALICE: &str = "alice@example.test";
    const BOB: &str = "bob@example.test";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        store.ensure_account(ALICE).expect("alice");
        store.ensure_account(BOB).expect("bob");
        (dir, store)
    }

    fn pending(store: &Store, local: &[&str], remote: &[&str], body: &[u8]) -> Pending {
        Pending {
            sender: ALICE.to_owned(),
            local: local.iter().map(|&a| a.to_owned()).collect(),
            remote: remote.iter().map(|&a| a.to_owned()).collect(),
            queue_id: "Q".to_owned(),
            size: body.len() as u64,
            body: store.inner.bodies.stage(body).expect("stage body"),
        }
    }

    #[test]
    fn a_failing_delivery_fails_alone_and_its_neighbours_are_committed() {
        let (_dir, store) = store();
        let mut watcher = store.watch(ALICE, INBOX).expect("watch");
        let batch = vec![
            (1, pending(&store, &[ALICE], &[], b"first")),
            // Bob is named before the unknown account: his copy must be rolled back too.
            (
                2,
                pending(&store, &[BOB, "nobody@example.test"], &["x@b.test"], b"bad"),
            ),
            (3, pending(&store, &[ALICE, BOB], &["y@b.test"], b"third")),
        ];
        let outcomes = store.commit_batch(batch);
        let tickets: Vec<u64> = outcomes.iter().map(|(t, _)| *t).collect();
        assert_eq!(tickets, [1, 2, 3]);
        let first = outcomes[0].1.as_ref().expect("first stored");
        assert_eq!(first.delivered[0].uid, 1);
        assert!(
            matches!(&outcomes[1].1, Err(StoreError::NoSuchAccount(a)) if a == "nobody@example.test"),
            "{:?}",
            outcomes[1].1
        );
        let third = outcomes[2].1.as_ref().expect("third stored");
        let uids: Vec<(String, u32)> = third
            .delivered
            .iter()
            .map(|d| (d.account.clone(), d.uid))
            .collect();
        assert_eq!(uids, [(ALICE.into(), 2), (BOB.into(), 1)]);
        assert_eq!(third.queued, 1);
        // The failed delivery's body went with its savepoint; its neighbours' stayed.
        let kept: Vec<String> = store
            .conn()
            .expect("conn")
            .prepare("SELECT hash FROM bodies ORDER BY hash")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("bodies");
        let mut expected = vec![sha256_hex(b"first"), sha256_hex(b"third")];
        expected.sort();
        assert_eq!(kept, expected);
        assert_eq!(store.read_message(ALICE, INBOX, 2).expect("read"), b"third");
        assert_eq!(store.messages(BOB, INBOX).expect("bob").len(), 1);
        let queued: Vec<String> = store
            .outbound_queue()
            .expect("queue")
            .into_iter()
            .flat_map(|job| job.recipients.into_iter().map(|r| r.address))
            .collect();
        assert_eq!(queued, ["y@b.test"]);
        // Watchers hear of the committed deliveries only, in order.
        for uid in [1, 2] {
            assert!(matches!(
                watcher.try_recv(),
                Ok(Change::Appended { uid: got, .. }) if got == uid
            ));
        }
        assert!(watcher.try_recv().is_err());
    }

    #[test]
    fn deliveries_queued_during_a_commit_share_the_next_transaction() {
        const CALLERS: usize = 10;
        let (_dir, store) = store();
        // Holding the connection stalls the first leader inside its commit.
        let conn = store.conn().expect("conn");
        let handles: Vec<_> = (0..CALLERS)
            .map(|i| {
                let store = store.clone();
                thread::spawn(move || {
                    let body = format!("message {i}");
                    let accepted = store.accept(&Incoming {
                        sender: BOB,
                        local: &[ALICE],
                        remote: &[],
                        message: body.as_bytes(),
                        queue_id: "Q",
                    });
                    accepted.expect("accept").delivered[0].uid
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let state = store.inner.group.state();
            if state.batches.len() == 1 && state.queued.len() == CALLERS - 1 {
                break;
            }
            drop(state);
            assert!(
                std::time::Instant::now() < deadline,
                "the callers never queued up"
            );
            thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(conn);
        let mut uids: Vec<u32> = handles
            .into_iter()
            .map(|h| h.join().expect("thread panicked"))
            .collect();
        uids.sort_unstable();
        assert_eq!(uids, (1..=CALLERS as u32).collect::<Vec<_>>());
        // The first leader committed alone; everyone queued behind it shared one commit.
        assert_eq!(store.inner.group.state().batches, [1, CALLERS - 1]);
    }

    #[test]
    fn concurrent_accepts_are_all_stored_under_distinct_uids() {
        const THREADS: usize = 32;
        const EACH: usize = 25;
        let (_dir, store) = store();
        let mut watcher = store.watch(ALICE, INBOX).expect("watch");
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                thread::spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let body = format!("thread {t} message {i}");
                            // Every fourth delivery fails; it must take nothing with it.
                            let local: &[&str] = if i % 4 == 3 {
                                &["nobody@example.test"]
                            } else {
                                &[ALICE]
                            };
                            let accepted = store.accept(&Incoming {
                                sender: BOB,
                                local,
                                remote: &["r@b.test"],
                                message: body.as_bytes(),
                                queue_id: "Q",
                            });
                            (accepted.map(|a| a.delivered[0].uid).ok(), body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut stored = Vec::new();
        for handle in handles {
            let mine = handle.join().expect("thread panicked");
            for (i, (uid, body)) in mine.into_iter().enumerate() {
                assert_eq!(uid.is_none(), i % 4 == 3, "{body}");
                if let Some(uid) = uid {
                    stored.push((uid, body));
                }
            }
        }
        let total = THREADS * (0..EACH).filter(|i| i % 4 != 3).count();
        assert_eq!(stored.len(), total);
        let distinct: BTreeSet<u32> = stored.iter().map(|(uid, _)| *uid).collect();
        let expected: BTreeSet<u32> = (1..=u32::try_from(total).expect("small")).collect();
        assert_eq!(distinct, expected, "UIDs must be 1..=n, each once");
        for (uid, body) in &stored {
            assert_eq!(
                store.read_message(ALICE, INBOX, *uid).expect("read"),
                body.as_bytes()
            );
        }
        let queued: usize = store
            .outbound_queue()
            .expect("queue")
            .iter()
            .map(|job| job.recipients.len())
            .sum();
        assert_eq!(queued, total, "a failed delivery queued nothing");
        // Announced in commit order: UIDs ascend.
        let announced: Vec<u32> = std::iter::from_fn(|| match watcher.try_recv() {
            Ok(Change::Appended { uid, .. }) => Some(uid),
            _ => None,
        })
        .collect();
        assert_eq!(announced, expected.into_iter().collect::<Vec<_>>());
    }
}

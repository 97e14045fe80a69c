//! In-memory state shared by the clones of one [`Store`](super::Store) handle: change
//! notifications for IMAP sessions (IDLE, unsolicited EXISTS/EXPUNGE/FETCH) and the \Recent
//! watermarks. Neither survives a restart, and a second `Store::open` of the same directory has
//! its own.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

/// How many changes a watcher may fall behind before it loses some and gets
/// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged).
pub const WATCH_CAPACITY: usize = 1024;

/// A committed change to a watched mailbox, sent by [`Store::watch`](super::Store::watch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message arrived (delivery, APPEND, COPY or MOVE into the mailbox).
    Appended {
        /// Its UID.
        uid: u32,
        /// Its mod-sequence.
        modseq: u64,
    },
    /// A message's flags changed.
    FlagsChanged {
        /// Its UID.
        uid: u32,
        /// All of its flags now, sorted.
        flags: Vec<String>,
        /// Its new mod-sequence.
        modseq: u64,
    },
    /// A message was removed (EXPUNGE, or MOVE out of the mailbox).
    Expunged {
        /// Its UID.
        uid: u32,
        /// The mod-sequence of the removal.
        modseq: u64,
    },
    /// The mailbox was deleted or renamed away; no more changes follow and the receiver then sees
    /// the channel closed.
    Deleted,
}

/// One broadcast sender per watched mailbox id.
#[derive(Debug, Default)]
pub(super) struct Watchers {
    senders: Mutex<HashMap<i64, broadcast::Sender<Change>>>,
}

impl Watchers {
    /// A receiver for the changes of mailbox `id` from now on.
    ///
    /// Drops the senders of mailboxes nobody watches any more, so the map holds at most the
    /// mailboxes watched now plus those whose watchers left since the last call.
    pub(super) fn subscribe(&self, id: i64) -> broadcast::Receiver<Change> {
        let mut senders = self.senders();
        senders.retain(|_, sender| sender.receiver_count() > 0);
        senders
            .entry(id)
            .or_insert_with(|| broadcast::channel(WATCH_CAPACITY).0)
            .subscribe()
    }

    /// Sends `changes` of mailbox `id` in order, if anyone watches it. The iterator is not run
    /// otherwise, so callers may build changes lazily.
    pub(super) fn send(&self, id: i64, changes: impl IntoIterator<Item = Change>) {
        let mut senders = self.senders();
        let Some(sender) = senders.get(&id) else {
            return;
        };
        for change in changes {
            if sender.send(change).is_err() {
                // The last receiver is gone.
                senders.remove(&id);
                return;
            }
        }
    }

    /// Whether some session watches mailbox `id` now.
    pub(super) fn watched(&self, id: i64) -> bool {
        self.senders()
            .get(&id)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// Tells the watchers of mailbox `id` that it is gone and closes their channel.
    pub(super) fn close(&self, id: i64) {
        if let Some(sender) = self.senders().remove(&id) {
            // An error only means nobody was listening.
            let _ = sender.send(Change::Deleted);
        }
    }

    /// How many mailboxes have a sender; for tests of the clean-up.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.senders().len()
    }

    /// The map stays consistent whatever panicked while it was locked: every update to it is a
    /// single insert or remove.
    fn senders(&self) -> MutexGuard<'_, HashMap<i64, broadcast::Sender<Change>>> {
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per mailbox id, the highest UID some session has already been told is \Recent.
#[derive(Debug, Default)]
pub(super) struct RecentMarks {
    marks: Mutex<HashMap<i64, u32>>,
}

impl RecentMarks {
    /// Starts with the given watermarks: at open, every existing message counts as seen.
    pub(super) fn new(marks: HashMap<i64, u32>) -> RecentMarks {
        RecentMarks {
            marks: Mutex::new(marks),
        }
    }

    /// Moves the watermark of mailbox `id` up to `top` and returns where it was, or `None` when
    /// it already was there (nothing new to claim). A mailbox never seen before starts at 0: it
    /// was created after the store was opened, so all of its messages are new.
    pub(super) fn advance(&self, id: i64, top: u32) -> Option<u32> {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mark = marks.entry(id).or_insert(0);
        if *mark >= top {
            return None;
        }
        Some(std::mem::replace(mark, top))
    }

    /// Where the watermark of mailbox `id` stands, without moving it.
    pub(super) fn peek(&self, id: i64) -> u32 {
        let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.get(&id).copied().unwrap_or(0)
    }

    /// Forgets a deleted mailbox.
    pub(super) fn forget(&self, id: i64) {
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

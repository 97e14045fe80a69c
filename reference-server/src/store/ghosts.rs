//! Messages expunged while a session had their mailbox selected, kept readable for the sessions
//! that have not been told of the expunge yet (RFC 2180 4.1.1: such a session may still FETCH
//! the message, and gets its data). In memory only: after a restart no session holds an old
//! view. Bodies are never deleted by an expunge, so a ghost is its metadata and body hash.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::MessageMeta;

/// How many expunged messages a mailbox keeps readable at most; beyond that the oldest go first,
/// and a session that lags so far behind gets `NO [EXPUNGEISSUED]` for them (RFC 2180 4.1.3).
pub(super) const GHOSTS_PER_MAILBOX: usize = 10_000;

/// Per mailbox id, the expunged messages by UID.
#[derive(Debug, Default)]
pub(super) struct Ghosts {
    map: Mutex<HashMap<i64, BTreeMap<u32, MessageMeta>>>,
}

impl Ghosts {
    /// Keeps these messages of mailbox `id`, which are being expunged.
    pub(super) fn keep(&self, id: i64, metas: impl IntoIterator<Item = MessageMeta>) {
        let mut map = self.map();
        let kept = map.entry(id).or_default();
        for meta in metas {
            kept.insert(meta.uid, meta);
        }
        while kept.len() > GHOSTS_PER_MAILBOX {
            kept.pop_first();
        }
        if kept.is_empty() {
            map.remove(&id);
        }
    }

    /// The kept messages of mailbox `id` among `uids`, ascending.
    pub(super) fn get(&self, id: i64, uids: &[u32]) -> Vec<MessageMeta> {
        let map = self.map();
        let Some(kept) = map.get(&id) else {
            return Vec::new();
        };
        let mut found: Vec<MessageMeta> = uids
            .iter()
            .filter_map(|uid| kept.get(uid).cloned())
            .collect();
        found.sort_by_key(|m| m.uid);
        found.dedup_by_key(|m| m.uid);
        found
    }

    /// Drops what mailbox `id` kept: nobody has it selected, or it is gone.
    pub(super) fn forget(&self, id: i64) {
        self.map().remove(&id);
    }

    /// Every update is a single insert or remove, so the map stays usable after a panic.
    fn map(&self) -> MutexGuard<'_, HashMap<i64, BTreeMap<u32, MessageMeta>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32) -> MessageMeta {
        MessageMeta {
            uid,
            size: 10,
            internal_date: 0,
            flags: vec![],
            modseq: 1,
            blob: "0".repeat(64),
        }
    }

    #[test]
    fn keeps_finds_and_forgets() {
        let ghosts = Ghosts::default();
        ghosts.keep(1, [meta(3), meta(5)]);
        ghosts.keep(2, [meta(3)]);
        let found: Vec<u32> = ghosts.get(1, &[5, 4, 3, 5]).iter().map(|m| m.uid).collect();
        assert_eq!(found, [3, 5]);
        ghosts.forget(1);
        assert!(ghosts.get(1, &[3, 5]).is_empty());
        assert_eq!(ghosts.get(2, &[3]).len(), 1);
    }

    #[test]
    fn the_oldest_go_beyond_the_limit() {
        let ghosts = Ghosts::default();
        let total = u32::try_from(GHOSTS_PER_MAILBOX).unwrap() + 2;
        ghosts.keep(1, (1..=total).map(meta));
        assert!(ghosts.get(1, &[1, 2]).is_empty());
        assert_eq!(ghosts.get(1, &[3, total]).len(), 2);
    }
}

//! What the sink shares between its sessions and its handles: the records, the messages, the
//! scripts and the greylist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use super::{Behaviour, Match, Received, SessionRecord, domain_of, normalize_address};

#[derive(Default)]
pub(super) struct State {
    inner: Mutex<Inner>,
    /// Woken on every change, for the waits.
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    sessions: Vec<SessionRecord>,
    messages: Vec<Received>,
    scripts: Vec<Script>,
    next_script: u64,
    /// When each (client IP, sender, recipient) triplet was first seen by a greylisting step.
    greylist: HashMap<(IpAddr, String, String), Instant>,
}

struct Script {
    /// Tells a replaced script from its successor, for sessions that cached a step.
    id: u64,
    matcher: Match,
    steps: Vec<Behaviour>,
    /// Sessions matched so far.
    matched: usize,
}

impl Script {
    fn next_step(&mut self) -> Behaviour {
        self.matched += 1;
        let index = (self.matched - 1).min(self.steps.len().saturating_sub(1));
        self.steps.get(index).cloned().unwrap_or(Behaviour::Accept)
    }
}

/// Matchers compared as the sink compares addresses: domains case-insensitively.
fn normalize(matcher: Match) -> Match {
    match matcher {
        Match::Domain(domain) => Match::Domain(domain.trim().to_ascii_lowercase()),
        Match::Address(address) => Match::Address(normalize_address(&address)),
        Match::LocalIp(ip) => Match::LocalIp(ip),
    }
}

fn names(record: &SessionRecord, recipient: &str) -> bool {
    record
        .rcpt_to
        .iter()
        .any(|(named, _)| normalize_address(named) == recipient)
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking session cannot leave the records inconsistent: every change is one push
        // or one assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn script(&self, matcher: Match, steps: Vec<Behaviour>) {
        let matcher = normalize(matcher);
        let mut inner = self.lock();
        inner.scripts.retain(|script| script.matcher != matcher);
        let id = inner.next_script;
        inner.next_script += 1;
        inner.scripts.push(Script {
            id,
            matcher,
            steps,
            matched: 0,
        });
    }

    /// The step of the `LocalIp` script for `ip`, counting the session as matched.
    pub(super) fn local_ip_step(&self, ip: IpAddr) -> Option<Behaviour> {
        let matcher = Match::LocalIp(ip);
        let mut inner = self.lock();
        let script = inner
            .scripts
            .iter_mut()
            .find(|script| script.matcher == matcher)?;
        Some(script.next_step())
    }

    /// The step of the `Address` script for `recipient`, else of the `Domain` script for its
    /// domain. A session counts once per script: `taken` holds the steps it already has.
    pub(super) fn recipient_step(
        &self,
        recipient: &str,
        taken: &mut HashMap<u64, Behaviour>,
    ) -> Option<Behaviour> {
        let by_address = Match::Address(normalize_address(recipient));
        let by_domain = Match::Domain(domain_of(recipient));
        let mut inner = self.lock();
        let index = inner
            .scripts
            .iter()
            .position(|script| script.matcher == by_address)
            .or_else(|| {
                inner
                    .scripts
                    .iter()
                    .position(|script| script.matcher == by_domain)
            })?;
        let script = &mut inner.scripts[index];
        let step = taken.entry(script.id).or_insert_with(|| script.next_step());
        Some(step.clone())
    }

    /// Whether the triplet may pass a greylist of `seconds`; remembers it when first seen.
    pub(super) fn greylist_passes(
        &self,
        client: IpAddr,
        sender: &str,
        recipient: &str,
        seconds: u64,
    ) -> bool {
        let key = (
            client,
            normalize_address(sender),
            normalize_address(recipient),
        );
        let mut inner = self.lock();
        let first_seen = *inner.greylist.entry(key).or_insert_with(Instant::now);
        first_seen.elapsed() >= Duration::from_secs(seconds)
    }

    /// Adds a session's record; the returned index names it in later updates.
    pub(super) fn open(&self, record: SessionRecord) -> usize {
        let mut inner = self.lock();
        inner.sessions.push(record);
        let id = inner.sessions.len() - 1;
        drop(inner);
        self.changed.notify_waiters();
        id
    }

    pub(super) fn update(&self, id: usize, record: &SessionRecord) {
        let mut inner = self.lock();
        if inner.sessions[id] != *record {
            inner.sessions[id] = record.clone();
            drop(inner);
            self.changed.notify_waiters();
        }
    }

    /// Updates the session's record and keeps its message, numbering the attempt.
    pub(super) fn deliver(&self, id: usize, record: &SessionRecord, mut message: Received) {
        let mut inner = self.lock();
        inner.sessions[id] = record.clone();
        let recipients: Vec<String> = message
            .rcpt_to
            .iter()
            .map(|recipient| normalize_address(recipient))
            .collect();
        message.attempt = inner.sessions[..=id]
            .iter()
            .filter(|session| recipients.iter().any(|recipient| names(session, recipient)))
            .count();
        inner.messages.push(message);
        drop(inner);
        self.changed.notify_waiters();
    }

    pub(super) fn sessions(&self) -> Vec<SessionRecord> {
        self.lock().sessions.clone()
    }

    pub(super) fn messages(&self) -> Vec<Received> {
        self.lock().messages.clone()
    }

    pub(super) fn messages_for(&self, recipient: &str) -> Vec<Received> {
        let recipient = normalize_address(recipient);
        self.lock()
            .messages
            .iter()
            .filter(|message| {
                message
                    .rcpt_to
                    .iter()
                    .any(|to| normalize_address(to) == recipient)
            })
            .cloned()
            .collect()
    }

    pub(super) fn attempts_for(&self, recipient: &str) -> Vec<SessionRecord> {
        let recipient = normalize_address(recipient);
        self.lock()
            .sessions
            .iter()
            .filter(|session| names(session, &recipient))
            .cloned()
            .collect()
    }

    /// Polls `check` after every change until it returns a value or `limit` has passed.
    pub(super) async fn wait_until<T>(
        &self,
        limit: Duration,
        check: impl Fn() -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change between the two is not missed.
            notified.as_mut().enable();
            if let Some(value) = check() {
                return Some(value);
            }
            if timeout_at(deadline, notified).await.is_err() {
                return check();
            }
        }
    }
}

//! Shared state that decides who may use what across sessions: the POP3 maildrop locks, the
//! delay after failed logins, and the POP-before-SMTP grants.
//!
//! All of it lives in memory, for one server process: a restart forgets throttling and grants,
//! and two processes on one data directory would not see each other's maildrop locks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks a mutex whose data stays consistent even if a holder panicked (every update here is a
/// single insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which maildrops a POP3 session holds (RFC 1939 section 8: one session per maildrop).
#[derive(Debug, Default)]
pub struct MaildropLocks {
    held: Mutex<HashSet<String>>,
}

/// A held maildrop lock, released when dropped, however the session ends.
#[derive(Debug)]
pub struct MaildropGuard {
    locks: Arc<MaildropLocks>,
    key: String,
}

impl MaildropLocks {
    /// Takes the lock of `account`'s maildrop (case-insensitive), or `None` while another session
    /// holds it.
    pub fn try_lock(self: &Arc<Self>, account: &str) -> Option<MaildropGuard> {
        let key = account.to_ascii_lowercase();
        lock(&self.held).insert(key.clone()).then(|| MaildropGuard {
            locks: self.clone(),
            key,
        })
    }
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        lock(&self.locks.held).remove(&self.key);
    }
}

/// Failures are forgotten this long after the last one.
const FORGET_FAILURES: Duration = Duration::from_secs(15 * 60);
/// The delay stops doubling after this many failures (16 times the base).
const MAX_DOUBLINGS: u32 = 4;
/// Above this many remembered keys, expired ones are swept on the next failure, and if that is
/// not enough the oldest half goes: a flood of addresses must not grow memory without bound.
const MAX_KEYS: usize = 16 * 1024;

/// Delays the answer to a failed login, more for each recent failure against the same account or
/// from the same client address, so that guessing passwords is slow.
#[derive(Debug)]
pub struct LoginThrottle {
    base: Duration,
    failures: Mutex<HashMap<ThrottleKey, Failures>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl LoginThrottle {
    /// A throttle whose first delay is `base`; a zero base turns it off.
    pub fn new(base: Duration) -> LoginThrottle {
        LoginThrottle {
            base,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failed login against `account` (the caller folds unknown logins into one
    /// name) from `address` at `now` and returns how long to wait before answering it: the
    /// base delay, doubled for each earlier recent failure of the account or the address,
    /// whichever has more.
    pub fn failure(&self, account: &str, address: IpAddr, now: Instant) -> Duration {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_FAILURES);
        }
        if failures.len() >= MAX_KEYS {
            let mut lasts: Vec<Instant> = failures.values().map(|f| f.last).collect();
            lasts.sort_unstable();
            let cutoff = lasts[lasts.len() / 2];
            failures.retain(|_, f| f.last > cutoff);
        }
        let mut worst = 0;
        for key in [
            ThrottleKey::Account(account.to_ascii_lowercase()),
            ThrottleKey::Address(address),
        ] {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(entry.last) >= FORGET_FAILURES {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            worst = worst.max(entry.count);
        }
        self.base
            .checked_mul(2u32.pow((worst - 1).min(MAX_DOUBLINGS)))
            .unwrap_or(Duration::MAX)
    }

    /// A successful login of `account` from `address` clears both counts, as Dovecot's
    /// auth_penalty does: a user who mistyped a password is not slowed down for long.
    pub fn success(&self, account: &str, address: IpAddr) {
        let mut failures = lock(&self.failures);
        failures.remove(&ThrottleKey::Account(account.to_ascii_lowercase()));
        failures.remove(&ThrottleKey::Address(address));
    }
}

/// Client addresses that logged in over POP3 recently, and may therefore send mail over SMTP as
/// if authenticated (POP-before-SMTP).
#[derive(Debug)]
pub struct PopBeforeSmtp {
    window: Duration,
    grants: Mutex<HashMap<IpAddr, (Instant, String)>>,
}

impl PopBeforeSmtp {
    /// Grants last `window` after the login.
    pub fn new(window: Duration) -> PopBeforeSmtp {
        PopBeforeSmtp {
            window,
            grants: Mutex::new(HashMap::new()),
        }
    }

    /// `account` logged in over POP3 from `address` at `now`.
    pub fn grant(&self, address: IpAddr, account: &str, now: Instant) {
        let mut grants = lock(&self.grants);
        grants.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.window);
        grants.insert(address, (now, account.to_owned()));
        tracing::info!(%address, account, "POP-before-SMTP: address authorised for SMTP");
    }

    /// The account that vouches for `address` at `now`, if its grant has not expired.
    pub fn check(&self, address: IpAddr, now: Instant) -> Option<String> {
        let grants = lock(&self.grants);
        let (at, account) = grants.get(&address)?;
        (now.saturating_duration_since(*at) < self.window).then(|| account.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maildrop_has_one_holder_until_the_guard_drops() {
        let locks = Arc::new(MaildropLocks::default());
        let guard = locks.try_lock("alice@example.test").expect("free");
        assert!(
            locks.try_lock("ALICE@example.test").is_none(),
            "case-insensitive"
        );
        let bob = locks.try_lock("bob@example.test").expect("others are free");
        drop(guard);
        assert!(
            locks.try_lock("alice@example.test").is_some(),
            "released on drop"
        );
        drop(bob);
    }

    #[test]
    fn delays_double_per_account_and_per_address_up_to_a_cap() {
        let throttle = LoginThrottle::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(throttle.failure("alice", a, t0)), 100);
        assert_eq!(ms(throttle.failure("alice", a, t0)), 200);
        // Another address guessing the same account is slowed by the account's count.
        assert_eq!(ms(throttle.failure("ALICE", b, t0)), 400);
        // The same address guessing another account is slowed by the address's count.
        assert_eq!(ms(throttle.failure("bob", a, t0)), 400);
        for _ in 0..10 {
            throttle.failure("alice", a, t0);
        }
        assert_eq!(ms(throttle.failure("alice", a, t0)), 1600, "capped at 16x");
        // A success clears the account and the address it came from, not other addresses.
        throttle.success("alice", a);
        assert_eq!(ms(throttle.failure("alice", a, t0)), 100);
        assert_eq!(
            ms(throttle.failure("dave", b, t0)),
            200,
            "b keeps its failure"
        );
        // Failures long ago no longer count.
        let later = t0 + FORGET_FAILURES + Duration::from_secs(1);
        assert_eq!(ms(throttle.failure("carol", a, later)), 100);
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let throttle = LoginThrottle::new(Duration::from_millis(1));
        let t0 = Instant::now();
        for i in 0..(3 * MAX_KEYS as u32) {
            let address = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i)));
            throttle.failure(
                "<unknown account>",
                address,
                t0 + Duration::from_micros(i.into()),
            );
        }
        assert!(lock(&throttle.failures).len() <= MAX_KEYS);
        // A base delay too large to double does not panic.
        let huge = LoginThrottle::new(Duration::MAX - Duration::from_secs(1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        huge.failure("x", a, t0);
        assert_eq!(huge.failure("x", a, t0), Duration::MAX);
    }

    #[test]
    fn pop_before_smtp_grants_expire() {
        let grants = PopBeforeSmtp::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(grants.check(a, t0), None);
        grants.grant(a, "alice@example.test", t0);
        assert_eq!(
            grants.check(a, t0 + Duration::from_secs(59)).as_deref(),
            Some("alice@example.test")
        );
        assert_eq!(grants.check(b, t0), None, "only the address that logged in");
        assert_eq!(grants.check(a, t0 + Duration::from_secs(60)), None);
        grants.grant(a, "bob@example.test", t0 + Duration::from_secs(120));
        assert_eq!(
            grants.check(a, t0 + Duration::from_secs(121)).as_deref(),
            Some("bob@example.test"),
            "a new login renews the grant"
        );
    }
}

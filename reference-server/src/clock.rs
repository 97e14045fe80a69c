//! Time for sessions and their drivers: the [`Clock`] a sans-I/O session reads (injected, so
//! that tests and fuzzers can fix it), and the time limits a driver keeps besides the idle
//! timeout. A client that sends a command line one byte at a time, or a message at a trickle,
//! resets the idle timer with every byte and would otherwise hold its connection slot for as
//! long as it likes (slowloris).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::Limits;

/// Where a session reads the time, as rustls takes a `TimeProvider`: the system's (or the
/// runtime's) clock in the server, a fixed or hand-moved one in tests and fuzzers. Sessions take
/// their randomness the same way, as a seedable `fastrand::Rng` of their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The monotonic now, for deadlines (IMAP IDLE's limit and polls).
    fn now(&self) -> std::time::Instant;
    /// The wall clock, for dates the server writes (Received:, Date:, the APOP timestamp).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// A wall clock stopped at one instant (the monotonic one runs on): for tests and fuzzers that
/// replay a session byte for byte.
#[derive(Debug, Clone, Copy)]
pub struct StoppedClock(pub SystemTime);

impl Clock for StoppedClock {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
    fn wall(&self) -> SystemTime {
        self.0
    }
}

/// Longest limit taken as given, so that adding it to an instant cannot overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A command line was begun but not finished in time.
    Command,
    /// A message's data (or an IMAP literal) was begun but not finished in time.
    Data,
    /// The session lasted as long as a session may.
    Session,
}

impl Expiry {
    /// Why the session is being closed, for the last reply.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Expiry::Idle => "Idle timeout, closing connection",
            Expiry::Command => "Command line not completed in time, closing connection",
            Expiry::Data => "Message data not completed in time, closing connection",
            Expiry::Session => "Session time limit reached, closing connection",
        }
    }
}

/// The deadlines of one session.
#[derive(Debug)]
pub(crate) struct SessionClock {
    session_ends: Instant,
    command: Duration,
    data: Duration,
    /// When the first byte arrived that the session has not answered yet.
    waiting_since: Option<Instant>,
}

impl SessionClock {
    /// Starts the clock of a session beginning now.
    pub(crate) fn new(limits: &Limits) -> SessionClock {
        let secs = |secs: u64| Duration::from_secs(secs).min(FOREVER);
        SessionClock {
            session_ends: Instant::now() + secs(limits.session_timeout_secs),
            command: secs(limits.command_timeout_secs),
            data: secs(limits.data_timeout_secs),
            waiting_since: None,
        }
    }

    /// The session answered: whatever it was waiting for is complete.
    pub(crate) fn answered(&mut self) {
        self.waiting_since = None;
    }

    /// Bytes arrived.
    pub(crate) fn received(&mut self) {
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// The deadline for the next read and what passing it means. `idle` is the longest silence
    /// allowed now; `in_data` says that the session is inside a message's data, which gets the
    /// data limit instead of the command line's.
    pub(crate) fn deadline(&self, idle: Duration, in_data: bool) -> (Instant, Expiry) {
        let mut earliest = (Instant::now() + idle.min(FOREVER), Expiry::Idle);
        let mut consider = |at: Instant, expiry: Expiry| {
            if at < earliest.0 {
                earliest = (at, expiry);
            }
        };
        consider(self.session_ends, Expiry::Session);
        if let Some(since) = self.waiting_since {
            match in_data {
                true => consider(since + self.data, Expiry::Data),
                false => consider(since + self.command, Expiry::Command),
            }
        }
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            command_timeout_secs: 60,
            data_timeout_secs: 600,
            session_timeout_secs: 3600,
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_begun_command_has_its_own_deadline_that_bytes_do_not_reset() {
        let mut clock = SessionClock::new(&limits());
        let idle = Duration::from_secs(300);
        assert_eq!(clock.deadline(idle, false).1, Expiry::Idle);
        clock.received();
        let (first, why) = clock.deadline(idle, false);
        assert_eq!(why, Expiry::Command);
        tokio::time::advance(Duration::from_secs(30)).await;
        clock.received();
        assert_eq!(clock.deadline(idle, false), (first, Expiry::Command));
        // Inside message data the longer data limit applies, then idle is the nearer one.
        assert_eq!(clock.deadline(idle, true).1, Expiry::Idle);
        clock.answered();
        assert_eq!(clock.deadline(idle, false).1, Expiry::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_session_limit_comes_last_but_comes() {
        let mut clock = SessionClock::new(&limits());
        let idle = Duration::from_secs(300);
        tokio::time::advance(Duration::from_secs(3570)).await;
        clock.received();
        assert_eq!(clock.deadline(idle, false).1, Expiry::Session);
        let huge = Limits {
            session_timeout_secs: u64::MAX,
            command_timeout_secs: u64::MAX,
            ..limits()
        };
        let mut clock = SessionClock::new(&huge);
        clock.received();
        assert_eq!(clock.deadline(Duration::MAX, false).1, Expiry::Idle);
    }
}

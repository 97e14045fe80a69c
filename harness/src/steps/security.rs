//! What the steps of `features/security` share: repeated attempts (password guesses, recipient
//! probes) and the verdict on whether the server stopped or slowed them.

use std::time::Duration;

use anyhow::{Context as _, bail};
use cucumber::then;

use super::MailWorld;

/// Attempts made before concluding that nothing stops them. Postfix disconnects after 20
/// errors (`smtpd_hard_error_limit`), so a server with a limit that loose still passes.
pub(super) const ATTEMPTS: u32 = 20;

/// An answer this late is taken as a deliberate delay (Dovecot waits 2 s after a failed login,
/// Postfix 1 s per error past its soft limit); an undelayed answer over loopback takes
/// milliseconds.
const DELIBERATE_DELAY: Duration = Duration::from_secs(1);

/// A run of attempts that each failed, and what the server did about them.
#[derive(Debug)]
pub(super) struct Attempts {
    /// What one attempt is, for messages: "wrong password", "unknown recipient".
    what: &'static str,
    made: u32,
    slowest: Duration,
    /// How the server stopped or slowed the run; `None` while it has not.
    verdict: Option<String>,
}

impl Attempts {
    pub(super) fn new(what: &'static str) -> Attempts {
        Attempts {
            what,
            made: 0,
            slowest: Duration::ZERO,
            verdict: None,
        }
    }

    /// Records an attempt refused the ordinary way after `took`; true when the run is over.
    pub(super) fn refused(&mut self, took: Duration) -> bool {
        self.made += 1;
        self.slowest = self.slowest.max(took);
        if took >= DELIBERATE_DELAY {
            self.verdict = Some(format!(
                "slowed down: {} {} was answered only after a deliberate delay",
                self.what, self.made
            ));
        }
        self.verdict.is_some() || self.made >= ATTEMPTS
    }

    /// Records that the server ended the run at the next attempt: `how` says with what.
    pub(super) fn stopped(&mut self, how: &str) {
        self.verdict = Some(format!("cut off after {} {}s: {how}", self.made, self.what));
    }
}

#[then("the server cut the attempts off or slowed them down")]
async fn attempts_stopped(world: &mut MailWorld) -> anyhow::Result<()> {
    let attempts = world
        .attempts
        .take()
        .context("no run of attempts was made in this scenario")?;
    match attempts.verdict {
        Some(verdict) => {
            world.note(verdict);
            Ok(())
        }
        None => bail!(
            "{} {}s in a row were each answered within {} ms and the connection stayed open: \
             nothing stops a client from trying on (no disconnection, no refusal, no delay of \
             a second or more)",
            attempts.made,
            attempts.what,
            attempts.slowest.as_millis()
        ),
    }
}

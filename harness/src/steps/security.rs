//! What the steps of `features/security` share: repeated attempts (password guesses, recipient
//! probes, commands that carry no mail) and the verdict on whether the server stopped or slowed
//! them.

use std::time::Duration;

use anyhow::{Context as _, bail};
use cucumber::then;

use super::MailWorld;
use crate::clients::ClientError;

/// Attempts made before concluding that nothing stops them. Postfix disconnects after 20
/// errors (`smtpd_hard_error_limit`), so a server with a limit that loose still passes.
pub(super) const ATTEMPTS: u32 = 20;

/// An answer this late is taken as a deliberate delay (Dovecot waits 2 s after a failed login,
/// Postfix 1 s per error past its soft limit); an undelayed answer over loopback takes
/// milliseconds.
const DELIBERATE_DELAY: Duration = Duration::from_secs(1);

/// Answers that take this long on average, over at least [`AVERAGED`] attempts leaving out the
/// slowest, are slowed down too: at most four guesses a second per connection (OpenSMTPD pauses
/// a random 0 to 1 s after each failed AUTH). One late answer alone proves nothing: a busy
/// machine stalls now and then, so a delay must show twice, or in the trimmed mean.
const DELIBERATE_MEAN: Duration = Duration::from_millis(250);
const AVERAGED: u32 = 3;

/// How the server answered one attempt.
pub(super) enum Answer {
    /// The ordinary answer (535, `-ERR [AUTH]`, `NO` or 550 to a guess, 250 to a NOOP): the run
    /// goes on.
    Ordinary,
    /// What was tried was granted, so the run proves nothing; why, for the failure.
    Granted(String),
    /// Any other answer: the server stopped the run; how, for the note.
    Stopped(String),
}

/// A run of attempts that each failed, and what the server did about them.
#[derive(Debug)]
pub(super) struct Attempts {
    /// What one attempt is, for messages: "wrong password", "unknown recipient".
    what: &'static str,
    made: u32,
    /// Attempts to make before concluding that nothing stops them.
    limit: u32,
    slowest: Duration,
    /// Answers that took [`DELIBERATE_DELAY`] or longer.
    late: u32,
    total: Duration,
    /// How the server stopped or slowed the run; `None` while it has not.
    verdict: Option<String>,
}

impl Attempts {
    /// Makes `attempt` again and again until the server stops or slows the run, or
    /// [`ATTEMPTS`] were made. `what` names one attempt in messages ("wrong password"). A
    /// connection the server closed ends the run as stopped; an attempt that was granted fails
    /// the step.
    pub(super) async fn run(
        what: &'static str,
        attempt: impl AsyncFnMut() -> anyhow::Result<Answer>,
    ) -> anyhow::Result<Attempts> {
        Attempts::run_up_to(what, ATTEMPTS, attempt).await
    }

    /// [`Attempts::run`] with `limit` attempts instead of [`ATTEMPTS`].
    pub(super) async fn run_up_to(
        what: &'static str,
        limit: u32,
        mut attempt: impl AsyncFnMut() -> anyhow::Result<Answer>,
    ) -> anyhow::Result<Attempts> {
        let mut attempts = Attempts::new(what, limit);
        loop {
            let started = tokio::time::Instant::now();
            match attempt().await {
                Ok(Answer::Ordinary) => {
                    if attempts.ordinary(started.elapsed()) {
                        return Ok(attempts);
                    }
                }
                Ok(Answer::Granted(why)) => bail!("{why}"),
                Ok(Answer::Stopped(how)) => {
                    attempts.stopped(&how);
                    return Ok(attempts);
                }
                Err(error)
                    if matches!(
                        error.downcast_ref::<ClientError>(),
                        Some(ClientError::Closed { .. } | ClientError::Io { .. })
                    ) =>
                {
                    attempts.stopped("the server closed the connection");
                    return Ok(attempts);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn new(what: &'static str, limit: u32) -> Attempts {
        Attempts {
            what,
            made: 0,
            limit,
            slowest: Duration::ZERO,
            late: 0,
            total: Duration::ZERO,
            verdict: None,
        }
    }

    /// Records an attempt answered the ordinary way after `took`; true when the run is over.
    fn ordinary(&mut self, took: Duration) -> bool {
        self.made += 1;
        self.slowest = self.slowest.max(took);
        self.total += took;
        if took >= DELIBERATE_DELAY {
            self.late += 1;
        }
        // The mean of all but the slowest answer.
        let trimmed = if self.made > AVERAGED {
            self.total.saturating_sub(self.slowest) / (self.made - 1)
        } else {
            Duration::ZERO
        };
        if self.late >= 2 || trimmed >= DELIBERATE_MEAN {
            // No attempt number: where a random delay crosses the line differs from run to run.
            self.verdict = Some(format!(
                "slowed down: {}s were answered after a deliberate delay",
                self.what
            ));
        }
        self.verdict.is_some() || self.made >= self.limit
    }

    /// Records that the server ended the run at the next attempt, or showed after it that it
    /// had: `how` says with what.
    pub(super) fn stopped(&mut self, how: &str) {
        self.verdict = Some(format!("cut off after {} {}s: {how}", self.made, self.what));
    }

    /// Whether the run ended with no sign that the server stopped or slowed it.
    pub(super) fn undecided(&self) -> bool {
        self.verdict.is_none()
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
            "{} {}s in a row were answered in {} ms on average (the slowest in {} ms) and the \
             connection stayed open: nothing stops a client from trying on (no disconnection, \
             no refusal, no second delay of a second, nor {} ms on average beside the slowest)",
            attempts.made,
            attempts.what,
            (attempts.total / attempts.made.max(1)).as_millis(),
            attempts.slowest.as_millis(),
            DELIBERATE_MEAN.as_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(answers: &[u64]) -> Attempts {
        let mut attempts = Attempts::new("wrong password", ATTEMPTS);
        for &ms in answers {
            if attempts.ordinary(Duration::from_millis(ms)) {
                break;
            }
        }
        attempts
    }

    #[test]
    fn one_stall_is_not_a_delay() {
        let mut answers = vec![3; ATTEMPTS as usize];
        answers[1] = 1500;
        let attempts = run(&answers);
        assert!(attempts.undecided());
        assert_eq!(attempts.made, ATTEMPTS);
    }

    #[test]
    fn two_late_answers_or_a_slow_pace_are_a_delay() {
        let attempts = run(&[3, 3, 2000, 3, 2000, 3]);
        assert!(!attempts.undecided());
        assert_eq!(attempts.made, 5);
        // OpenSMTPD's random pause of up to a second.
        let attempts = run(&[400, 100, 700, 300, 900]);
        assert!(!attempts.undecided());
        assert_eq!(attempts.made, 4);
    }
}

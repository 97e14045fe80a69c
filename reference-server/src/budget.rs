//! How many commands one session may send: `limits.max_commands` in all, and
//! `limits.max_nonmail_commands` that carry no mail in a row.
//!
//! The second is the older defence (Postfix's `smtpd_junk_command_limit`, Exim's
//! `smtp_accept_max_nonmail`, sendmail's `MAXNOOPCOMMANDS`): a client that keeps a connection
//! open with NOOP, RSET or CAPABILITY holds a slot of `limits.connections` without ever being
//! idle, and one that repeats VRFY or STAT costs work for nothing. Which commands carry no mail
//! is each protocol's to say; so is what counts as mail work that starts the count again.

use crate::config::Limits;

/// A session's command counts.
#[derive(Debug, Default, Clone)]
pub struct CommandBudget {
    total: u64,
    nonmail: u32,
}

impl CommandBudget {
    /// Counts one command before it runs, `nonmail` when it is one that carries no mail. `Err`
    /// carries the text of the closing reply when the command goes over a limit: the command
    /// is then not carried out.
    pub fn spend(&mut self, limits: &Limits, nonmail: bool) -> Result<(), String> {
        self.total += 1;
        if self.total > limits.max_commands {
            return Err(format!(
                "Too many commands in one session (limit {}); closing connection",
                limits.max_commands
            ));
        }
        if !nonmail {
            return Ok(());
        }
        self.nonmail += 1;
        if self.nonmail > limits.max_nonmail_commands {
            return Err(format!(
                "Too many commands that carry no mail (limit {} in a row); closing connection",
                limits.max_nonmail_commands
            ));
        }
        Ok(())
    }

    /// Mail work was done (a message accepted, retrieved or deleted, a mailbox read): the count
    /// of commands carrying no mail starts again. A mail command alone does not reset it, or
    /// MAIL and RSET in turn would never end.
    pub fn mail_done(&mut self) {
        self.nonmail = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u64, nonmail: u32) -> Limits {
        Limits {
            max_commands: total,
            max_nonmail_commands: nonmail,
            ..Limits::default()
        }
    }

    #[test]
    fn commands_carrying_no_mail_are_limited_in_a_row() {
        let limits = limits(1000, 3);
        let mut budget = CommandBudget::default();
        for _ in 0..3 {
            budget.spend(&limits, true).unwrap();
        }
        // A mail command in between does not start the count again; mail work does.
        budget.spend(&limits, false).unwrap();
        budget.mail_done();
        for _ in 0..3 {
            budget.spend(&limits, true).unwrap();
        }
        budget.spend(&limits, false).unwrap();
        let refusal = budget.spend(&limits, true).unwrap_err();
        assert!(
            refusal.contains("carry no mail (limit 3 in a row)"),
            "{refusal}"
        );
    }

    #[test]
    fn every_command_counts_towards_the_total() {
        let limits = limits(5, 2);
        let mut budget = CommandBudget::default();
        for nonmail in [true, false, true, false, false] {
            budget.spend(&limits, nonmail).unwrap();
            budget.mail_done();
        }
        let refusal = budget.spend(&limits, false).unwrap_err();
        assert!(refusal.contains("in one session (limit 5)"), "{refusal}");
    }
}

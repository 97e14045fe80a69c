//! The timed steps of a load session. The declaration order is the order the latency table shows
//! them in: connection set-up first, then each protocol's commands as a session sends them, then
//! the figures about whole sessions.

use std::fmt;

/// One timed step of a session, or a figure about the whole session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// An IDLE client's TCP connect (`imap-idle`: its deliveries have their own `connect`).
    ImapConnect,
    /// An IDLE client's implicit TLS handshake.
    ImapTls,
    /// An IDLE client's greeting.
    ImapGreeting,
    /// An IDLE client's STARTTLS.
    ImapStarttls,
    /// An IDLE client's whole set-up, from connect to IDLE.
    Setup,
    /// Open loop: how late a session started after it was due.
    Queue,
    /// TCP connect.
    Connect,
    /// Implicit TLS handshake.
    Tls,
    /// The greeting.
    Greeting,
    /// SMTP EHLO.
    Ehlo,
    /// STARTTLS (SMTP), STLS (POP3) or STARTTLS (IMAP), handshake included.
    Starttls,
    /// SMTP AUTH.
    Auth,
    /// POP3 USER/PASS or IMAP LOGIN.
    Login,
    /// SMTP MAIL FROM.
    Mail,
    /// SMTP RCPT TO.
    Rcpt,
    /// SMTP DATA, up to the 354.
    Data,
    /// The message and its final dot, up to the reply.
    DataEnd,
    /// QUIT.
    Quit,
    /// POP3 STAT.
    Stat,
    /// POP3 RETR.
    Retr,
    /// POP3 DELE.
    Dele,
    /// IMAP SELECT.
    Select,
    /// IMAP FETCH of flags and envelopes.
    Fetch,
    /// IMAP FETCH of a body.
    FetchBody,
    /// IMAP STORE.
    Store,
    /// IMAP APPEND.
    Append,
    /// IMAP LOGOUT.
    Logout,
    /// IMAP IDLE, up to the continuation.
    Idle,
    /// IMAP NOOP.
    Noop,
    /// IMAP SEARCH and UID SEARCH.
    Search,
    /// IMAP STATUS.
    Status,
    /// IMAP COPY and UID COPY.
    Copy,
    /// IMAP MOVE and UID MOVE (RFC 6851).
    Move,
    /// IMAP EXPUNGE and UID EXPUNGE (RFC 4315).
    Expunge,
    /// imap-mix: one client's part of a checkpoint, from the pause until its view was compared.
    Checkpoint,
    /// From the start of a delivery to its `* n EXISTS` on an idling connection.
    Notify,
    /// Putting back the messages a POP3 session deleted (not timed as POP3 latency).
    Refill,
    /// A whole session, from when it was due. Declared last (the tests rely on it).
    Session,
}

impl Phase {
    /// Every phase, in table order.
    pub const ALL: [Phase; 38] = [
        Phase::ImapConnect,
        Phase::ImapTls,
        Phase::ImapGreeting,
        Phase::ImapStarttls,
        Phase::Setup,
        Phase::Queue,
        Phase::Connect,
        Phase::Tls,
        Phase::Greeting,
        Phase::Ehlo,
        Phase::Starttls,
        Phase::Auth,
        Phase::Login,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::DataEnd,
        Phase::Quit,
        Phase::Stat,
        Phase::Retr,
        Phase::Dele,
        Phase::Select,
        Phase::Fetch,
        Phase::FetchBody,
        Phase::Store,
        Phase::Append,
        Phase::Logout,
        Phase::Idle,
        Phase::Noop,
        Phase::Search,
        Phase::Status,
        Phase::Copy,
        Phase::Move,
        Phase::Expunge,
        Phase::Checkpoint,
        Phase::Notify,
        Phase::Refill,
        Phase::Session,
    ];

    /// The name in the table and the JSON summary.
    pub fn name(self) -> &'static str {
        match self {
            Phase::ImapConnect => "imap_connect",
            Phase::ImapTls => "imap_tls",
            Phase::ImapGreeting => "imap_greeting",
            Phase::ImapStarttls => "imap_starttls",
            Phase::Setup => "setup",
            Phase::Queue => "queue",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::Starttls => "starttls",
            Phase::Auth => "auth",
            Phase::Login => "login",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::DataEnd => "data_end",
            Phase::Quit => "quit",
            Phase::Stat => "stat",
            Phase::Retr => "retr",
            Phase::Dele => "dele",
            Phase::Select => "select",
            Phase::Fetch => "fetch",
            Phase::FetchBody => "fetch_body",
            Phase::Store => "store",
            Phase::Append => "append",
            Phase::Logout => "logout",
            Phase::Idle => "idle",
            Phase::Noop => "noop",
            Phase::Search => "search",
            Phase::Status => "status",
            Phase::Copy => "copy",
            Phase::Move => "move",
            Phase::Expunge => "expunge",
            Phase::Checkpoint => "checkpoint",
            Phase::Notify => "notify",
            Phase::Refill => "refill",
            Phase::Session => "session",
        }
    }

    /// The phase a name in a JSON summary stands for; `None` for a name this build does not
    /// know (a summary from a newer harness).
    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.name() == name)
    }

    /// An IDLE client's set-up phase, kept apart from the same phase of the deliveries.
    pub fn on_idle_client(self) -> Phase {
        match self {
            Phase::Connect => Phase::ImapConnect,
            Phase::Tls => Phase::ImapTls,
            Phase::Greeting => Phase::ImapGreeting,
            Phase::Starttls => Phase::ImapStarttls,
            other => other,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a phase named in a summary sorts in the table: known phases in their order, then the
/// others by name.
pub fn rank(name: &str) -> (usize, &str) {
    (
        Phase::from_name(name).map_or(Phase::ALL.len(), |phase| phase as usize),
        name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_phase_once_in_declaration_order() {
        for (index, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(phase as usize, index, "{phase} out of place in ALL");
        }
        // `Session` is declared last, so ALL reaching it means no phase is left out.
        assert_eq!(Phase::ALL.len(), Phase::Session as usize + 1);
        let mut names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Phase::ALL.len(), "two phases share a name");
    }

    #[test]
    fn names_read_back() {
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.name()), Some(phase));
        }
        assert_eq!(Phase::from_name("warp_drive"), None);
    }

    #[test]
    fn unknown_names_sort_after_known_ones_by_name() {
        let mut names = vec!["zeta", "session", "alpha", "imap_connect", "rcpt", "mail"];
        names.sort_by_key(|name| rank(name));
        assert_eq!(
            names,
            ["imap_connect", "mail", "rcpt", "session", "alpha", "zeta"]
        );
    }

    #[test]
    fn idle_clients_set_up_under_their_own_names() {
        assert_eq!(Phase::Connect.on_idle_client(), Phase::ImapConnect);
        assert_eq!(Phase::Starttls.on_idle_client(), Phase::ImapStarttls);
        assert_eq!(Phase::Login.on_idle_client(), Phase::Login);
    }
}

//! Splitting the client's bytes into IMAP commands: lines, literals, continuation requests and
//! the limits on both, on top of imap-codec's `Fragmentizer` (which keeps literal data from ever
//! being read as commands, even around a malformed command).

use imap_codec::CommandCodec;
use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::LiteralMode;

/// What the framer found in the bytes received so far.
#[derive(Debug)]
pub enum Framed {
    /// A complete, well-formed command.
    Command(Box<Command<'static>>),
    /// A synchronising literal within the limit was announced: send `+ ...` and read on.
    Continue,
    /// The command is malformed or too large; answer it (tagged when a tag could be read) and
    /// carry on with the next one. Any literal data it announced has been or will be skipped.
    Reject {
        /// The command's tag, when one could be read.
        tag: Option<String>,
        /// Why, for the BAD or NO text.
        reason: Rejection,
    },
    /// Nothing complete yet: read more.
    NeedMore,
}

/// Why a command was refused before it was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It does not parse (BAD).
    Syntax,
    /// A literal larger than the limit was announced (NO [TOOBIG] for a synchronising one,
    /// which the client then does not send).
    LiteralTooBig,
    /// The command (line and literals) exceeded the size limit (BAD).
    TooLong,
    /// A non-synchronising literal (`{n+}`) where LITERAL+ is not offered (BAD).
    NonSyncLiteral,
}

impl Rejection {
    /// The status and text of the reply.
    pub fn reply(self) -> (&'static str, &'static str) {
        match self {
            Rejection::Syntax => ("BAD", "Syntax error"),
            Rejection::LiteralTooBig => ("NO", "[TOOBIG] Literal too large"),
            Rejection::TooLong => ("BAD", "Command line too long"),
            Rejection::NonSyncLiteral => (
                "BAD",
                "Syntax error: {n+} literals need LITERAL+, which is not offered",
            ),
        }
    }
}

/// Turns received bytes into commands.
#[derive(Debug)]
pub struct Framer {
    fragmentizer: Fragmentizer,
    max_command: u32,
    max_literal: u32,
    /// The current command announced a literal it may not have: once the command is complete
    /// it is rejected for this reason, not decoded.
    refused: Option<Rejection>,
    /// The `imap_literal_plus_ignored` fault: ask for non-synchronising literals too.
    continue_non_sync: bool,
    /// LITERAL+ is not offered (`imap_no_literal_plus`): a `{n+}` literal is an error.
    refuse_non_sync: bool,
}

impl Framer {
    /// `max_command` bounds a command with its literals; `max_literal` bounds one literal.
    pub fn new(max_command: u32, max_literal: u32) -> Framer {
        Framer {
            fragmentizer: Fragmentizer::new(max_command),
            max_command,
            max_literal,
            refused: None,
            continue_non_sync: false,
            refuse_non_sync: false,
        }
    }

    /// Misbehaves for the harness's self-test: answers a non-synchronising literal (`{n+}`)
    /// with a continuation request, as a server that does not know LITERAL+ would.
    pub fn continue_non_sync(&mut self) {
        self.continue_non_sync = true;
    }

    /// Refuses non-synchronising literals with BAD, as a server without LITERAL+ (RFC 7888) sees
    /// a syntax error in them. The octets that follow are still stepped over, so none is taken
    /// for a command.
    pub fn refuse_non_sync(&mut self) {
        self.refuse_non_sync = true;
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.fragmentizer.enqueue_bytes(bytes);
    }

    /// The next thing to do with what was received.
    pub fn next_command(&mut self) -> Framed {
        loop {
            let Some(fragment) = self.fragmentizer.progress() else {
                return Framed::NeedMore;
            };
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = fragment
            {
                if length > self.max_literal {
                    let tag = self.tag();
                    if mode == LiteralMode::Sync {
                        // The client waits for "+" and, refused, never sends the literal
                        // (RFC 3501 section 7.5): the command ends here.
                        self.fragmentizer.skip_message();
                        return Framed::Reject {
                            tag,
                            reason: Rejection::LiteralTooBig,
                        };
                    }
                    // A non-synchronising literal arrives anyway (RFC 7888): its bytes are
                    // consumed (and, over the size limit, dropped) and the command refused.
                    self.refused = Some(Rejection::LiteralTooBig);
                    self.fragmentizer.poison_message();
                    continue;
                }
                if mode == LiteralMode::NonSync && self.refuse_non_sync {
                    self.refused.get_or_insert(Rejection::NonSyncLiteral);
                    self.fragmentizer.poison_message();
                    continue;
                }
                if (mode == LiteralMode::Sync || self.continue_non_sync) && self.refused.is_none() {
                    return Framed::Continue;
                }
                continue;
            }
            if !self.fragmentizer.is_message_complete() {
                continue;
            }
            let tag = self.tag();
            let refused = self.refused.take();
            return match self.fragmentizer.decode_message(&CommandCodec::default()) {
                Ok(command) if refused.is_none() => {
                    Framed::Command(Box::new(command.into_static()))
                }
                Ok(_) => Framed::Reject {
                    tag,
                    reason: refused.unwrap_or(Rejection::Syntax),
                },
                Err(_) if refused.is_some() => Framed::Reject {
                    tag,
                    reason: refused.unwrap_or(Rejection::Syntax),
                },
                Err(DecodeMessageError::MessageTooLong { .. }) => Framed::Reject {
                    tag,
                    reason: Rejection::TooLong,
                },
                Err(_) => Framed::Reject {
                    tag,
                    reason: Rejection::Syntax,
                },
            };
        }
    }

    /// The next complete line, undecoded: the client's answer to a `+` continuation in
    /// AUTHENTICATE (RFC 3501 6.2.2), which is not a command. `None` until a whole line is in.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let fragment = self.fragmentizer.progress()?;
            if let FragmentInfo::Line {
                announcement: Some(_),
                ..
            } = fragment
            {
                // A SASL response has no literals; whatever follows is skipped with the line.
                self.fragmentizer.poison_message();
            }
            if self.fragmentizer.is_message_complete() {
                return Some(self.fragmentizer.message_bytes().to_vec());
            }
        }
    }

    /// Whether a command with a literal is under way: its first line is in, the rest is not.
    pub fn in_literal(&self) -> bool {
        !self.fragmentizer.is_message_complete() && !self.fragmentizer.message_bytes().is_empty()
    }

    /// Forgets every byte received but not yet framed: after STARTTLS, bytes that arrived
    /// before the handshake must not be executed (CVE-2011-0411 class).
    pub fn discard_pending(&mut self) {
        let max_literal = self.max_literal;
        *self = Framer {
            fragmentizer: Fragmentizer::new(self.max_command),
            max_literal,
            max_command: self.max_command,
            refused: None,
            continue_non_sync: self.continue_non_sync,
            refuse_non_sync: self.refuse_non_sync,
        };
    }

    /// The current command's tag, if the bytes so far start with one.
    fn tag(&self) -> Option<String> {
        self.fragmentizer
            .decode_tag()
            .map(|tag| tag.as_ref().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::command::CommandBody;

    use super::*;

    fn framer() -> Framer {
        Framer::new(1024, 100)
    }

    fn command(framed: Framed) -> Command<'static> {
        match framed {
            Framed::Command(command) => *command,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn commands_split_anywhere_are_reassembled() {
        let mut f = framer();
        for byte in b"a1 NOOP\r\nb2 CAPABILITY\r\n" {
            f.push(&[*byte]);
        }
        assert_eq!(command(f.next_command()).tag.as_ref(), "a1");
        let second = command(f.next_command());
        assert_eq!(second.tag.as_ref(), "b2");
        assert_eq!(second.body, CommandBody::Capability);
        assert!(matches!(f.next_command(), Framed::NeedMore));
    }

    #[test]
    fn synchronising_literal_asks_to_continue_then_completes() {
        let mut f = framer();
        f.push(b"a LOGIN {5}\r\n");
        assert!(matches!(f.next_command(), Framed::Continue));
        assert!(matches!(f.next_command(), Framed::NeedMore));
        f.push(b"alice \"pw\"\r\n");
        let login = command(f.next_command());
        assert!(matches!(login.body, CommandBody::Login { .. }), "{login:?}");
    }

    #[test]
    fn non_synchronising_literal_needs_no_continuation() {
        let mut f = framer();
        f.push(b"a APPEND INBOX {3+}\r\nabc\r\n");
        assert!(matches!(
            command(f.next_command()).body,
            CommandBody::Append { .. }
        ));
    }

    #[test]
    fn oversized_synchronising_literal_is_refused_and_the_session_goes_on() {
        let mut f = framer();
        f.push(b"a APPEND INBOX {101}\r\n");
        match f.next_command() {
            Framed::Reject { tag, reason } => {
                assert_eq!(tag.as_deref(), Some("a"));
                assert_eq!(reason, Rejection::LiteralTooBig);
            }
            other => panic!("{other:?}"),
        }
        f.push(b"b NOOP\r\n");
        assert_eq!(command(f.next_command()).tag.as_ref(), "b");
    }

    #[test]
    fn oversized_non_synchronising_literal_is_consumed_not_executed() {
        let mut f = framer();
        let mut bytes = b"a APPEND INBOX {150+}\r\n".to_vec();
        // Literal data that looks like a command must never run as one.
        bytes.extend_from_slice(b"x LOGOUT\r\n");
        bytes.extend(std::iter::repeat_n(b'z', 140));
        bytes.extend_from_slice(b"\r\nb NOOP\r\n");
        f.push(&bytes);
        match f.next_command() {
            Framed::Reject { tag, reason } => {
                assert_eq!(tag.as_deref(), Some("a"));
                assert_eq!(reason, Rejection::LiteralTooBig);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(command(f.next_command()).tag.as_ref(), "b");
    }

    #[test]
    fn without_literal_plus_a_non_synchronising_literal_is_refused_and_stepped_over() {
        let mut f = framer();
        f.refuse_non_sync();
        f.push(b"a APPEND INBOX {10+}\r\nx LOGOUT\r\n\r\nb APPEND INBOX {3}\r\n");
        match f.next_command() {
            Framed::Reject { tag, reason } => {
                assert_eq!(tag.as_deref(), Some("a"));
                assert_eq!(reason, Rejection::NonSyncLiteral);
            }
            other => panic!("{other:?}"),
        }
        // Synchronising literals still work.
        assert!(matches!(f.next_command(), Framed::Continue));
        f.push(b"abc\r\n");
        assert_eq!(command(f.next_command()).tag.as_ref(), "b");
    }

    #[test]
    fn malformed_commands_are_rejected_with_their_tag() {
        let mut f = framer();
        f.push(b"t1 FROBNICATE\r\n\r\nt3 NOOP\r\n");
        match f.next_command() {
            Framed::Reject { tag, reason } => {
                assert_eq!(tag.as_deref(), Some("t1"));
                assert_eq!(reason, Rejection::Syntax);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.next_command(),
            Framed::Reject {
                tag: None,
                reason: Rejection::Syntax
            }
        ));
        assert_eq!(command(f.next_command()).tag.as_ref(), "t3");
    }

    #[test]
    fn a_line_over_the_limit_is_rejected_and_bounded() {
        let mut f = framer();
        let mut line = b"a LOGIN ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 5000));
        line.extend_from_slice(b" y\r\nb NOOP\r\n");
        f.push(&line);
        assert!(matches!(
            f.next_command(),
            Framed::Reject {
                reason: Rejection::TooLong,
                ..
            }
        ));
        assert_eq!(command(f.next_command()).tag.as_ref(), "b");
    }
}

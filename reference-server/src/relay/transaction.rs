//! One SMTP transaction of the relay's client, without I/O: fed the server's replies (and "TLS
//! is up"), it says what to do next ([`Action`]). [`super::client`] does the reading, writing,
//! timing and TLS.

use std::time::Duration;

use crate::config::RelayTls;
use crate::net::dot_stuff;

use super::client::AttemptSettings;
use super::reply::{Reply, ReplyError};

/// RFC 5321 4.5.3.2.6: how long to wait for the reply to the end of data, at least.
pub const END_OF_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// How an attempt with one server ended.
#[derive(Debug)]
pub enum Outcome {
    /// The transaction ran: each recipient's fate. Delivered recipients have a 2xx, failed ones
    /// the reply that refused them (at RCPT, or at the end of data for all of them).
    Transaction(Vec<(String, Result<Reply, Reply>)>),
    /// The server could not be used (no connection, refused at greeting/EHLO/MAIL with 4xx, TLS
    /// required but unavailable, timeout): try the next address or host.
    NextHop(RelayError),
    /// The server refused the whole transaction for good (5xx to MAIL).
    Refused(Reply),
}

/// The command a refusing reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting was not 220.
    Greeting,
    /// EHLO got 4xx.
    Ehlo,
    /// EHLO was refused, then HELO too.
    Helo,
    /// STARTTLS was refused while the policy requires TLS.
    StartTls,
    /// MAIL got a reply neither positive nor permanent.
    Mail,
}

/// Why a server could not be used: the text of an [`Outcome::NextHop`], which reaches the log,
/// the queue's last error and expiry bounces.
#[derive(Debug)]
pub enum RelayError {
    /// The TCP connection failed.
    Connect {
        /// `host[address]`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP connection was not made in time.
    ConnectTimeout {
        /// `host[address]`.
        peer: String,
    },
    /// Writing failed.
    Write {
        /// `host[address]`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing did not finish in time.
    WriteTimeout {
        /// `host[address]`.
        peer: String,
    },
    /// Reading failed.
    Read {
        /// `host[address]`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// No (complete) reply in time.
    Timeout {
        /// `host[address]`.
        peer: String,
    },
    /// The server closed the connection.
    Closed {
        /// `host[address]`.
        peer: String,
    },
    /// The server sent something that is not a reply.
    Malformed {
        /// `host[address]`.
        peer: String,
        /// What was wrong.
        error: ReplyError,
    },
    /// The TLS handshake failed.
    Tls {
        /// `host[address]`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake did not finish in time.
    TlsTimeout {
        /// `host[address]`.
        peer: String,
    },
    /// The policy requires TLS and the server does not offer STARTTLS.
    TlsRequired {
        /// `host[address]`.
        peer: String,
    },
    /// A reply that makes the server unusable for now.
    Refused {
        /// `host[address]`.
        peer: String,
        /// The command it answered.
        stage: Stage,
        /// The reply.
        reply: Reply,
    },
    /// Something happened out of order (STARTTLS inside TLS, a reply after the end): a bug of
    /// the caller, not the server's doing.
    Sequence {
        /// `host[address]`.
        peer: String,
        /// What.
        what: &'static str,
    },
}

impl RelayError {
    /// Whether a TLS handshake failed or timed out, after which opportunistic TLS tries again
    /// in plain text.
    pub fn is_tls_handshake(&self) -> bool {
        matches!(self, RelayError::Tls { .. } | RelayError::TlsTimeout { .. })
    }
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::Connect { peer, source } => write!(f, "cannot connect to {peer}: {source}"),
            RelayError::ConnectTimeout { peer } => write!(f, "connection to {peer} timed out"),
            RelayError::Write { peer, source } => write!(f, "writing to {peer} failed: {source}"),
            RelayError::WriteTimeout { peer } => write!(f, "writing to {peer} timed out"),
            RelayError::Read { peer, source } => write!(f, "reading from {peer} failed: {source}"),
            RelayError::Timeout { peer } => write!(f, "{peer} did not answer in time"),
            RelayError::Closed { peer } => write!(f, "{peer} closed the connection"),
            RelayError::Malformed { peer, error } => write!(f, "{peer} sent {error}"),
            RelayError::Tls { peer, source } => {
                write!(f, "TLS handshake with {peer} failed: {source}")
            }
            RelayError::TlsTimeout { peer } => write!(f, "TLS handshake with {peer} timed out"),
            RelayError::TlsRequired { peer } => write!(
                f,
                "{peer} does not offer STARTTLS and the relay policy requires TLS"
            ),
            RelayError::Refused { peer, stage, reply } => match stage {
                Stage::Greeting => write!(f, "{peer} greeted with {reply}"),
                Stage::Ehlo => write!(f, "{peer} answered EHLO with {reply}"),
                Stage::Helo => write!(f, "{peer} refused EHLO and HELO: {reply}"),
                Stage::StartTls => write!(f, "{peer} refused STARTTLS: {reply}"),
                Stage::Mail => write!(f, "{peer} answered MAIL with {reply}"),
            },
            RelayError::Sequence { peer, what } => write!(f, "{peer}: {what}"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Connect { source, .. }
            | RelayError::Write { source, .. }
            | RelayError::Read { source, .. }
            | RelayError::Tls { source, .. } => Some(source),
            RelayError::Malformed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What the I/O side does next.
#[derive(Debug)]
pub enum Action {
    /// Write `bytes` (nothing, for the greeting), then read one reply, waiting at most
    /// `reply_within` for each of its lines, and give it to [`Transaction::on_reply`] (or the
    /// failure to [`Transaction::on_reply_error`]).
    Send {
        /// The command or message data.
        bytes: Vec<u8>,
        /// The reply timeout.
        reply_within: Duration,
    },
    /// Start TLS on the connection, then call [`Transaction::on_tls_up`].
    StartTls,
    /// The transaction is over: say QUIT and close.
    Finish(Outcome),
    /// The server cannot be used: close the connection.
    Fail(RelayError),
}

/// Where the transaction is: what the next reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    Mail,
    /// RCPT for the recipient at this index.
    Rcpt(usize),
    Rset,
    Data,
    EndOfData,
    Done,
}

/// One transaction with one server, sans I/O.
#[derive(Debug)]
pub struct Transaction<'a> {
    peer: String,
    settings: &'a AttemptSettings,
    sender: &'a str,
    recipients: &'a [String],
    message: &'a [u8],
    state: State,
    /// Whether TLS is up; then STARTTLS is not considered again.
    secured: bool,
    /// The EHLO keywords (all lines after the first), or `None` after HELO.
    features: Option<Vec<String>>,
    results: Vec<(String, Result<Reply, Reply>)>,
}

impl<'a> Transaction<'a> {
    /// A transaction delivering `message` (CRLF lines) from `sender` to `recipients` through
    /// the server called `peer` (`host[address]`, for texts), and the first action: reading the
    /// greeting.
    pub fn new(
        peer: String,
        settings: &'a AttemptSettings,
        sender: &'a str,
        recipients: &'a [String],
        message: &'a [u8],
    ) -> (Transaction<'a>, Action) {
        let transaction = Transaction {
            peer,
            settings,
            sender,
            recipients,
            message,
            state: State::Greeting,
            secured: false,
            features: None,
            results: Vec::new(),
        };
        let first = transaction.send(Vec::new());
        (transaction, first)
    }

    /// The next action after `reply`.
    pub fn on_reply(&mut self, reply: Reply) -> Action {
        match self.state {
            State::Greeting if reply.code != 220 => self.refused(Stage::Greeting, reply),
            State::Greeting => self.ehlo(),
            State::Ehlo if reply.code == 250 => {
                self.features = Some(reply.lines.into_iter().skip(1).collect());
                self.after_ehlo()
            }
            State::Ehlo if (400..500).contains(&reply.code) => self.refused(Stage::Ehlo, reply),
            State::Ehlo => {
                self.state = State::Helo;
                self.send(format!("HELO {}\r\n", self.settings.helo).into_bytes())
            }
            State::Helo if reply.code != 250 => self.refused(Stage::Helo, reply),
            State::Helo => {
                self.features = None;
                self.after_ehlo()
            }
            State::StartTls if reply.code == 220 => {
                self.state = State::Handshake;
                Action::StartTls
            }
            State::StartTls if self.settings.tls == RelayTls::Require => {
                self.refused(Stage::StartTls, reply)
            }
            // Opportunistic: on in plain text, with what the first EHLO offered.
            State::StartTls => self.mail(),
            State::Mail if reply.is_permanent() => self.finish(Outcome::Refused(reply)),
            State::Mail if !reply.is_positive() => self.refused(Stage::Mail, reply),
            State::Mail => self.rcpt(0),
            State::Rcpt(index) => {
                let recipient = self.recipients.get(index).cloned().unwrap_or_default();
                let verdict = if reply.is_positive() {
                    Ok(reply)
                } else {
                    Err(reply)
                };
                self.results.push((recipient, verdict));
                self.rcpt(index + 1)
            }
            State::Rset => self.finish_transaction(),
            State::Data if reply.code != 354 => {
                let results = fail_accepted(std::mem::take(&mut self.results), reply);
                self.finish(Outcome::Transaction(results))
            }
            State::Data => {
                self.state = State::EndOfData;
                let mut data = Vec::with_capacity(self.message.len() + 64);
                dot_stuff(&mut data, self.message);
                Action::Send {
                    bytes: data,
                    reply_within: self.settings.command_timeout.max(END_OF_DATA_TIMEOUT),
                }
            }
            State::EndOfData if reply.is_positive() => {
                for (_, verdict) in &mut self.results {
                    if verdict.is_ok() {
                        *verdict = Ok(reply.clone());
                    }
                }
                self.finish_transaction()
            }
            State::EndOfData => {
                let results = fail_accepted(std::mem::take(&mut self.results), reply);
                self.finish(Outcome::Transaction(results))
            }
            State::Handshake | State::Done => self.out_of_sequence("a reply out of sequence"),
        }
    }

    /// The next action when no reply could be read: the failure ends the attempt, except after
    /// RSET, whose reply does not matter.
    pub fn on_reply_error(&mut self, error: RelayError) -> Action {
        match self.state {
            State::Rset => self.finish_transaction(),
            _ => {
                self.state = State::Done;
                Action::Fail(error)
            }
        }
    }

    /// The next action once TLS is up: EHLO again.
    pub fn on_tls_up(&mut self) -> Action {
        if self.state != State::Handshake {
            return self.out_of_sequence("TLS up out of sequence");
        }
        self.secured = true;
        self.ehlo()
    }

    fn send(&self, bytes: Vec<u8>) -> Action {
        Action::Send {
            bytes,
            reply_within: self.settings.command_timeout,
        }
    }

    fn ehlo(&mut self) -> Action {
        self.state = State::Ehlo;
        self.send(format!("EHLO {}\r\n", self.settings.helo).into_bytes())
    }

    /// After EHLO or HELO: STARTTLS as the policy says, or MAIL.
    fn after_ehlo(&mut self) -> Action {
        if self.secured {
            return self.mail();
        }
        let offers_tls = self.features.as_ref().is_some_and(|f| has(f, "STARTTLS"));
        match self.settings.tls {
            RelayTls::None => self.mail(),
            RelayTls::Require if !offers_tls => {
                self.state = State::Done;
                Action::Fail(RelayError::TlsRequired {
                    peer: self.peer.clone(),
                })
            }
            RelayTls::Opportunistic | RelayTls::Require if offers_tls => {
                self.state = State::StartTls;
                self.send(b"STARTTLS\r\n".to_vec())
            }
            RelayTls::Opportunistic | RelayTls::Require => self.mail(),
        }
    }

    fn mail(&mut self) -> Action {
        let features = self.features.as_deref().unwrap_or_default();
        let utf8 = !self.sender.is_ascii() || self.recipients.iter().any(|r| !r.is_ascii());
        if utf8 && !has(features, "SMTPUTF8") {
            let refusal = Reply {
                code: 553,
                lines: vec![format!(
                    "5.6.7 {} does not support SMTPUTF8, which the non-ASCII addresses need",
                    self.peer
                )],
            };
            return self.finish(Outcome::Refused(refusal));
        }
        let mut mail = format!("MAIL FROM:<{}>", self.sender);
        if has(features, "SIZE") {
            mail.push_str(&format!(" SIZE={}", self.message.len()));
        }
        if !self.message.is_ascii() && has(features, "8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        self.state = State::Mail;
        self.send(mail.into_bytes())
    }

    /// RCPT for the recipient at `index`; after the last, DATA, or RSET when all were refused.
    fn rcpt(&mut self, index: usize) -> Action {
        if let Some(recipient) = self.recipients.get(index) {
            self.state = State::Rcpt(index);
            return self.send(format!("RCPT TO:<{recipient}>\r\n").into_bytes());
        }
        if self.results.iter().all(|(_, r)| r.is_err()) {
            self.state = State::Rset;
            return self.send(b"RSET\r\n".to_vec());
        }
        self.state = State::Data;
        self.send(b"DATA\r\n".to_vec())
    }

    fn refused(&mut self, stage: Stage, reply: Reply) -> Action {
        self.state = State::Done;
        Action::Fail(RelayError::Refused {
            peer: self.peer.clone(),
            stage,
            reply,
        })
    }

    fn finish_transaction(&mut self) -> Action {
        let results = std::mem::take(&mut self.results);
        self.finish(Outcome::Transaction(results))
    }

    fn finish(&mut self, outcome: Outcome) -> Action {
        self.state = State::Done;
        Action::Finish(outcome)
    }

    fn out_of_sequence(&mut self, what: &'static str) -> Action {
        self.state = State::Done;
        Action::Fail(RelayError::Sequence {
            peer: self.peer.clone(),
            what,
        })
    }
}

/// Whether an EHLO keyword line starts with `keyword`.
pub(crate) fn has(features: &[String], keyword: &str) -> bool {
    features.iter().any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    })
}

/// The results with every accepted recipient failed by `reply`.
fn fail_accepted(
    results: Vec<(String, Result<Reply, Reply>)>,
    reply: Reply,
) -> Vec<(String, Result<Reply, Reply>)> {
    results
        .into_iter()
        .map(|(r, v)| (r, v.and_then(|_| Err(reply.clone()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::reply::parse_replies;
    use super::*;

    const PEER: &str = "mx.test[192.0.2.1:25]";

    fn settings(tls: RelayTls) -> AttemptSettings {
        AttemptSettings {
            helo: "relay.test".into(),
            tls,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(30),
            source: None,
        }
    }

    /// What the server does next in a script.
    enum Server {
        /// Answers with these bytes (one reply).
        Says(&'static str),
        /// The reply could not be read.
        Hangs,
    }
    use Server::{Hangs, Says};

    /// The end of a scripted run: everything sent (commands as text, `<TLS>` for a handshake,
    /// message data as `<DATA ...>`), and the result.
    struct Run {
        sent: Vec<String>,
        waits: Vec<Duration>,
        end: Result<Outcome, RelayError>,
    }

    fn run(
        tls: RelayTls,
        sender: &str,
        recipients: &[&str],
        message: &[u8],
        script: Vec<Server>,
    ) -> Run {
        let settings = settings(tls);
        let recipients: Vec<String> = recipients.iter().map(|r| (*r).to_owned()).collect();
        let (mut transaction, mut action) =
            Transaction::new(PEER.into(), &settings, sender, &recipients, message);
        let mut script = script.into_iter();
        let mut sent = Vec::new();
        let mut waits = Vec::new();
        loop {
            action = match action {
                Action::Send {
                    bytes,
                    reply_within,
                } => {
                    if bytes.ends_with(b"\r\n.\r\n") {
                        sent.push(format!("<DATA {}>", String::from_utf8_lossy(&bytes)));
                    } else if !bytes.is_empty() {
                        sent.push(String::from_utf8_lossy(&bytes).trim_end().to_owned());
                    }
                    waits.push(reply_within);
                    match script.next() {
                        Some(Says(text)) => {
                            let mut replies = parse_replies(text.as_bytes()).expect("a reply");
                            assert_eq!(replies.len(), 1, "{text:?}");
                            transaction.on_reply(replies.remove(0))
                        }
                        Some(Hangs) => {
                            transaction.on_reply_error(RelayError::Timeout { peer: PEER.into() })
                        }
                        None => panic!("the script ended; sent so far: {sent:?}"),
                    }
                }
                Action::StartTls => {
                    sent.push("<TLS>".into());
                    transaction.on_tls_up()
                }
                Action::Finish(outcome) => {
                    break Run {
                        sent,
                        waits,
                        end: Ok(outcome),
                    };
                }
                Action::Fail(e) => {
                    break Run {
                        sent,
                        waits,
                        end: Err(e),
                    };
                }
            };
        }
    }

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_owned()],
        }
    }

    fn results(run: &Run) -> &[(String, Result<Reply, Reply>)] {
        match &run.end {
            Ok(Outcome::Transaction(results)) => results,
            other => panic!("not a transaction: {other:?}"),
        }
    }

    fn error_text(run: &Run) -> String {
        match &run.end {
            Err(e) => e.to_string(),
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn normal_delivery() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test", "c@mx.test"],
            b"Subject: x\r\n\r\n.dot\r\n",
            vec![
                Says("220 mx.test ESMTP\r\n"),
                Says("250-mx.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"),
                Says("250 2.1.0 ok\r\n"),
                Says("250 2.1.5 ok\r\n"),
                Says("250 2.1.5 ok too\r\n"),
                Says("354 go ahead\r\n"),
                Says("250 2.0.0 queued as X\r\n"),
            ],
        );
        assert_eq!(
            run.sent,
            [
                "EHLO relay.test",
                "MAIL FROM:<a@here.test> SIZE=20",
                "RCPT TO:<b@mx.test>",
                "RCPT TO:<c@mx.test>",
                "DATA",
                "<DATA Subject: x\r\n\r\n..dot\r\n.\r\n>",
            ]
        );
        let queued = reply(250, "2.0.0 queued as X");
        assert_eq!(
            results(&run),
            [
                ("b@mx.test".to_owned(), Ok(queued.clone())),
                ("c@mx.test".to_owned(), Ok(queued)),
            ]
        );
        // Commands wait the command timeout, the end of data ten minutes.
        let command = Duration::from_secs(30);
        assert_eq!(
            run.waits,
            [
                command,
                command,
                command,
                command,
                command,
                command,
                END_OF_DATA_TIMEOUT
            ]
        );
    }

    #[test]
    fn eight_bit_body_and_non_ascii_addresses_with_smtputf8() {
        let run = run(
            RelayTls::None,
            "jörg@here.test",
            &["b@mx.test"],
            "Subject: ü\r\n\r\n".as_bytes(),
            vec![
                Says("220 mx.test\r\n"),
                Says("250-mx.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("354 go\r\n"),
                Says("250 ok\r\n"),
            ],
        );
        assert_eq!(
            run.sent[1],
            "MAIL FROM:<jörg@here.test> BODY=8BITMIME SMTPUTF8"
        );
        assert!(results(&run)[0].1.is_ok());
    }

    #[test]
    fn greeting_other_than_220_is_next_hop() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![Says("554 go away\r\n")],
        );
        assert!(run.sent.is_empty(), "{:?}", run.sent);
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] greeted with 554 go away"
        );
    }

    #[test]
    fn refused_ehlo_falls_back_to_helo() {
        let run = run(
            RelayTls::Opportunistic,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("502 5.5.1 what?\r\n"),
                Says("250 mx.test\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("354 go\r\n"),
                Says("250 ok\r\n"),
            ],
        );
        // After HELO: no extensions, so no STARTTLS and no SIZE.
        assert_eq!(
            run.sent[..4],
            [
                "EHLO relay.test",
                "HELO relay.test",
                "MAIL FROM:<a@here.test>",
                "RCPT TO:<b@mx.test>"
            ]
        );
        assert!(results(&run)[0].1.is_ok());
    }

    #[test]
    fn refused_ehlo_and_helo_is_next_hop() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("500 no\r\n"),
                Says("550 no either\r\n"),
            ],
        );
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] refused EHLO and HELO: 550 no either"
        );
    }

    #[test]
    fn temporary_ehlo_refusal_is_next_hop_without_helo() {
        for code in ["421", "450"] {
            let run = run(
                RelayTls::None,
                "a@here.test",
                &["b@mx.test"],
                b"x\r\n",
                vec![
                    Says("220 mx.test\r\n"),
                    Says(format!("{code} busy\r\n").leak()),
                ],
            );
            assert_eq!(run.sent, ["EHLO relay.test"]);
            assert!(matches!(
                run.end,
                Err(RelayError::Refused {
                    stage: Stage::Ehlo,
                    ..
                })
            ));
            assert_eq!(
                error_text(&run),
                format!("mx.test[192.0.2.1:25] answered EHLO with {code} busy")
            );
        }
    }

    #[test]
    fn required_tls_not_offered_is_next_hop() {
        let run = run(
            RelayTls::Require,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![Says("220 mx.test\r\n"), Says("250-mx.test\r\n250 SIZE\r\n")],
        );
        assert_eq!(run.sent, ["EHLO relay.test"]);
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] does not offer STARTTLS and the relay policy requires TLS"
        );
    }

    #[test]
    fn offered_tls_is_started_and_ehlo_repeated() {
        for tls in [RelayTls::Opportunistic, RelayTls::Require] {
            let run = run(
                tls,
                "a@here.test",
                &["b@mx.test"],
                b"x\r\n",
                vec![
                    Says("220 mx.test\r\n"),
                    Says("250-mx.test\r\n250-SIZE\r\n250 STARTTLS\r\n"),
                    Says("220 go ahead\r\n"),
                    // Offered again inside TLS (wrongly): not taken up twice.
                    Says("250-mx.test\r\n250 STARTTLS\r\n"),
                    Says("250 ok\r\n"),
                    Says("250 ok\r\n"),
                    Says("354 go\r\n"),
                    Says("250 ok\r\n"),
                ],
            );
            // The keywords after TLS count: no SIZE any more.
            assert_eq!(
                run.sent[..5],
                [
                    "EHLO relay.test",
                    "STARTTLS",
                    "<TLS>",
                    "EHLO relay.test",
                    "MAIL FROM:<a@here.test>"
                ]
            );
            assert!(results(&run)[0].1.is_ok());
        }
    }

    #[test]
    fn offered_tls_is_not_used_under_policy_none() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250-mx.test\r\n250 STARTTLS\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("354 go\r\n"),
                Says("250 ok\r\n"),
            ],
        );
        assert_eq!(run.sent[1], "MAIL FROM:<a@here.test>");
    }

    #[test]
    fn refused_starttls_goes_on_in_plain_text_when_opportunistic() {
        let run = run(
            RelayTls::Opportunistic,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250-mx.test\r\n250-SIZE 100\r\n250 STARTTLS\r\n"),
                Says("454 4.7.0 TLS not available\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("354 go\r\n"),
                Says("250 ok\r\n"),
            ],
        );
        // With the keywords of the first EHLO.
        assert_eq!(
            run.sent[..3],
            [
                "EHLO relay.test",
                "STARTTLS",
                "MAIL FROM:<a@here.test> SIZE=3"
            ]
        );
        assert!(results(&run)[0].1.is_ok());
    }

    #[test]
    fn refused_starttls_is_next_hop_when_required() {
        let run = run(
            RelayTls::Require,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250-mx.test\r\n250 STARTTLS\r\n"),
                Says("454 4.7.0 TLS not available\r\n"),
            ],
        );
        assert_eq!(run.sent, ["EHLO relay.test", "STARTTLS"]);
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] refused STARTTLS: 454 4.7.0 TLS not available"
        );
    }

    #[test]
    fn non_ascii_addresses_without_smtputf8_are_refused_with_553() {
        for (sender, recipient) in [
            ("jörg@here.test", "b@mx.test"),
            ("a@here.test", "bü@mx.test"),
        ] {
            let run = run(
                RelayTls::None,
                sender,
                &[recipient],
                b"x\r\n",
                vec![
                    Says("220 mx.test\r\n"),
                    Says("250-mx.test\r\n250 8BITMIME\r\n"),
                ],
            );
            assert_eq!(run.sent, ["EHLO relay.test"]);
            match &run.end {
                Ok(Outcome::Refused(refusal)) => assert_eq!(
                    refusal.to_string(),
                    "553 5.6.7 mx.test[192.0.2.1:25] does not support SMTPUTF8, which the \
                     non-ASCII addresses need"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn permanent_mail_refusal_refuses_the_transaction() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("550 5.7.1 not from you\r\n"),
            ],
        );
        assert_eq!(run.sent.len(), 2, "{:?}", run.sent);
        match &run.end {
            Ok(Outcome::Refused(refusal)) => {
                assert_eq!(*refusal, reply(550, "5.7.1 not from you"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn temporary_mail_refusal_is_next_hop() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("451 4.3.0 try later\r\n"),
            ],
        );
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] answered MAIL with 451 4.3.0 try later"
        );
    }

    #[test]
    fn mixed_recipient_results() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test", "c@mx.test", "d@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("550 5.1.1 no such user\r\n"),
                Says("451 4.2.1 later\r\n"),
                Says("354 go\r\n"),
                Says("250 2.0.0 done\r\n"),
            ],
        );
        assert_eq!(run.sent[5..], ["DATA", "<DATA x\r\n.\r\n>"]);
        assert_eq!(
            results(&run),
            [
                ("b@mx.test".to_owned(), Ok(reply(250, "2.0.0 done"))),
                (
                    "c@mx.test".to_owned(),
                    Err(reply(550, "5.1.1 no such user"))
                ),
                ("d@mx.test".to_owned(), Err(reply(451, "4.2.1 later"))),
            ]
        );
    }

    #[test]
    fn all_recipients_refused_ends_with_rset() {
        let script = || {
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("250 ok\r\n"),
                Says("550 5.1.1 no\r\n"),
                Says("450 4.2.0 busy\r\n"),
            ]
        };
        // Whatever comes back to RSET (a reply or nothing), the results stand.
        for last in [Says("250 reset\r\n"), Hangs] {
            let mut script = script();
            script.push(last);
            let run = run(
                RelayTls::None,
                "a@here.test",
                &["b@mx.test", "c@mx.test"],
                b"x\r\n",
                script,
            );
            assert_eq!(run.sent.last().map(String::as_str), Some("RSET"));
            assert_eq!(
                results(&run),
                [
                    ("b@mx.test".to_owned(), Err(reply(550, "5.1.1 no"))),
                    ("c@mx.test".to_owned(), Err(reply(450, "4.2.0 busy"))),
                ]
            );
        }
    }

    #[test]
    fn data_refused_fails_the_accepted_recipients() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test", "c@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("451 4.3.0 no DATA now\r\n"),
            ],
        );
        assert_eq!(run.sent.last().map(String::as_str), Some("DATA"));
        let refusal = reply(451, "4.3.0 no DATA now");
        assert_eq!(
            results(&run),
            [
                ("b@mx.test".to_owned(), Err(refusal.clone())),
                ("c@mx.test".to_owned(), Err(refusal)),
            ]
        );
    }

    #[test]
    fn end_of_data_refusal_fails_the_accepted_recipients_only() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test", "c@mx.test"],
            b"x\r\n",
            vec![
                Says("220 mx.test\r\n"),
                Says("250 mx.test\r\n"),
                Says("250 ok\r\n"),
                Says("250 ok\r\n"),
                Says("550 5.1.1 no\r\n"),
                Says("354 go\r\n"),
                Says("554 5.6.0 spam\r\n"),
            ],
        );
        assert_eq!(
            results(&run),
            [
                ("b@mx.test".to_owned(), Err(reply(554, "5.6.0 spam"))),
                ("c@mx.test".to_owned(), Err(reply(550, "5.1.1 no"))),
            ]
        );
    }

    #[test]
    fn a_reply_not_read_ends_the_attempt() {
        let run = run(
            RelayTls::None,
            "a@here.test",
            &["b@mx.test"],
            b"x\r\n",
            vec![Says("220 mx.test\r\n"), Says("250 mx.test\r\n"), Hangs],
        );
        assert_eq!(run.sent.len(), 2);
        assert_eq!(
            error_text(&run),
            "mx.test[192.0.2.1:25] did not answer in time"
        );
    }

    #[test]
    fn events_out_of_sequence_fail_without_panicking() {
        let settings = settings(RelayTls::None);
        let recipients = vec!["b@mx.test".to_owned()];
        let (mut transaction, _) =
            Transaction::new(PEER.into(), &settings, "a@here.test", &recipients, b"x");
        assert!(matches!(
            transaction.on_tls_up(),
            Action::Fail(RelayError::Sequence { .. })
        ));
        assert!(matches!(
            transaction.on_reply(reply(250, "ok")),
            Action::Fail(RelayError::Sequence { .. })
        ));
    }

    #[test]
    fn error_texts() {
        let peer = || PEER.to_owned();
        let io = || std::io::Error::other("boom");
        let texts = [
            (
                RelayError::Connect {
                    peer: peer(),
                    source: io(),
                },
                "cannot connect to mx.test[192.0.2.1:25]: boom",
            ),
            (
                RelayError::ConnectTimeout { peer: peer() },
                "connection to mx.test[192.0.2.1:25] timed out",
            ),
            (
                RelayError::Write {
                    peer: peer(),
                    source: io(),
                },
                "writing to mx.test[192.0.2.1:25] failed: boom",
            ),
            (
                RelayError::WriteTimeout { peer: peer() },
                "writing to mx.test[192.0.2.1:25] timed out",
            ),
            (
                RelayError::Read {
                    peer: peer(),
                    source: io(),
                },
                "reading from mx.test[192.0.2.1:25] failed: boom",
            ),
            (
                RelayError::Closed { peer: peer() },
                "mx.test[192.0.2.1:25] closed the connection",
            ),
            (
                RelayError::Malformed {
                    peer: peer(),
                    error: ReplyError::Malformed("hi".into()),
                },
                "mx.test[192.0.2.1:25] sent a malformed reply line \"hi\"",
            ),
            (
                RelayError::Malformed {
                    peer: peer(),
                    error: ReplyError::LineTooLong,
                },
                "mx.test[192.0.2.1:25] sent a reply line over 4096 octets",
            ),
            (
                RelayError::Tls {
                    peer: peer(),
                    source: io(),
                },
                "TLS handshake with mx.test[192.0.2.1:25] failed: boom",
            ),
            (
                RelayError::TlsTimeout { peer: peer() },
                "TLS handshake with mx.test[192.0.2.1:25] timed out",
            ),
            (
                RelayError::Sequence {
                    peer: peer(),
                    what: "STARTTLS inside TLS",
                },
                "mx.test[192.0.2.1:25]: STARTTLS inside TLS",
            ),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text);
        }
        assert!(
            RelayError::TlsTimeout { peer: peer() }.is_tls_handshake()
                && !RelayError::TlsRequired { peer: peer() }.is_tls_handshake()
        );
    }

    #[test]
    fn keywords_are_matched_case_insensitively_as_whole_words() {
        let features = vec!["starttls".to_owned(), "SIZE 1000".to_owned()];
        assert!(has(&features, "STARTTLS"));
        assert!(has(&features, "size"));
        assert!(!has(&features, "SMTPUTF8"));
        assert!(!has(&["STARTTLSX".to_owned()], "STARTTLS"));
    }
}

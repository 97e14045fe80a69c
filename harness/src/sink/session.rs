//! One SMTP session of the sink as a state machine: bytes in, replies and actions out, no
//! socket. The record in the shared state follows it as it goes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::state::State;
use super::{Behaviour, Received, SessionRecord, Stage};
use crate::clients::transcript::escape_bytes;

/// Longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
const MAX_LINE: usize = 1000;
/// Largest message accepted, as advertised in SIZE.
pub(super) const MAX_MESSAGE: usize = 50 * 1024 * 1024;
/// Most recipients in one transaction (RFC 5321 section 4.5.3.1.8 asks for at least 100).
const MAX_RECIPIENTS: usize = 100;
/// Errors after which a client is taken to be sending garbage and is disconnected.
const MAX_ERRORS: usize = 20;
/// A partial message line longer than this is taken as content without waiting for its end:
/// it cannot be the end-of-data line.
const MAX_PARTIAL: usize = 64 * 1024;

const CONNECTED: &str = "connected";

/// What the socket loop is to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    Send(Vec<u8>),
    /// Hand the connection to a TLS handshake (the 220 reply is already queued).
    StartTls,
    Close,
}

/// The reply a stage gets: the normal one, a scripted one, or none.
enum Verdict {
    Normal,
    Scripted(u16, String),
    Disconnect,
}

struct Transaction {
    mail_from: String,
    /// Accepted recipients.
    rcpt_to: Vec<String>,
    /// A `Data` or `EndOfData` step from the script of one of the recipients.
    recipient_fault: Option<Behaviour>,
}

enum Mode {
    Command,
    /// Skipping the rest of an overlong command line.
    Discarding,
    Data(DataReader),
    Closed,
}

pub(super) struct Session {
    state: Arc<State>,
    id: usize,
    hostname: String,
    starttls: bool,
    record: SessionRecord,
    /// Input not yet consumed.
    buf: Vec<u8>,
    mode: Mode,
    helo: Option<String>,
    transaction: Option<Transaction>,
    /// The step of a `LocalIp` script, for the whole session.
    session_step: Behaviour,
    /// Steps of recipient scripts already taken in this session, by script.
    recipient_steps: HashMap<u64, Behaviour>,
    errors: usize,
}

impl Session {
    pub(super) fn new(
        state: Arc<State>,
        hostname: &str,
        starttls: bool,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        let record = SessionRecord {
            local,
            peer,
            helo: None,
            tls: false,
            mail_from: None,
            rcpt_to: Vec::new(),
            outcome: CONNECTED.into(),
            transcript: String::new(),
            started: SystemTime::now(),
            finished: false,
        };
        let id = state.open(record.clone());
        Self {
            state,
            id,
            hostname: hostname.to_owned(),
            starttls,
            record,
            buf: Vec::new(),
            mode: Mode::Command,
            helo: None,
            transaction: None,
            session_step: Behaviour::Accept,
            recipient_steps: HashMap::new(),
            errors: 0,
        }
    }

    /// The greeting, or the scripted refusal or disconnect at `Connect`.
    pub(super) fn start(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(step) = self.state.local_ip_step(self.record.local.ip()) {
            self.session_step = step;
        }
        match self.verdict(Stage::Connect, None) {
            Verdict::Disconnect => self.disconnect(Stage::Connect, &mut out),
            Verdict::Scripted(code, text) if code >= 400 => {
                self.reply(&mut out, code, &text);
                self.record.outcome = format!("{code} at {}", Stage::Connect);
                self.close(&mut out);
            }
            Verdict::Scripted(code, text) => self.reply(&mut out, code, &text),
            Verdict::Normal => {
                let greeting = format!("{} ESMTP capture sink", self.hostname);
                self.reply(&mut out, 220, &greeting);
            }
        }
        self.publish();
        out
    }

    /// Consumes input from the client.
    pub(super) fn receive(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        self.buf.extend_from_slice(bytes);
        loop {
            match &mut self.mode {
                Mode::Closed => break,
                Mode::Data(reader) => {
                    let (used, ended) = reader.feed(&self.buf);
                    self.buf.drain(..used);
                    if !ended {
                        break;
                    }
                    if let Mode::Data(reader) = std::mem::replace(&mut self.mode, Mode::Command) {
                        self.end_of_data(reader, &mut out);
                    }
                }
                Mode::Discarding => match self.buf.iter().position(|&byte| byte == b'\n') {
                    Some(end) => {
                        self.buf.drain(..=end);
                        self.mode = Mode::Command;
                    }
                    None => {
                        self.buf.clear();
                        break;
                    }
                },
                Mode::Command => {
                    let Some(end) = self.buf.iter().position(|&byte| byte == b'\n') else {
                        if self.buf.len() > MAX_LINE {
                            let start = self.buf[..80].to_vec();
                            self.client_line(format!(
                                "{}... (more than {MAX_LINE} octets without a line end)",
                                escape_bytes(&start)
                            ));
                            self.buf.clear();
                            self.mode = Mode::Discarding;
                            self.error(&mut out, 500, "5.5.2 Line too long");
                        }
                        break;
                    };
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    if self.command(&line, &mut out) {
                        // RFC 3207 section 4.2: nothing sent before the handshake may be
                        // acted on after it.
                        if !self.buf.is_empty() {
                            let unread = std::mem::take(&mut self.buf);
                            self.note(format!(
                                "discarded {} octets sent after STARTTLS before the handshake: \
                                 \"{}\"",
                                unread.len(),
                                escape_bytes(&unread)
                            ));
                        }
                        break;
                    }
                }
            }
        }
        self.publish();
        out
    }

    pub(super) fn tls_started(&mut self) {
        self.record.tls = true;
        self.note("TLS established".into());
        self.publish();
    }

    /// The idle timeout passed with nothing from the client.
    pub(super) fn idle_timeout(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let text = format!("4.4.2 {} Idle timeout, closing connection", self.hostname);
        self.reply(&mut out, 421, &text);
        if self.record.outcome == CONNECTED {
            self.record.outcome = "idle timeout".into();
        }
        self.close(&mut out);
        self.publish();
        out
    }

    /// The connection is gone; `how` becomes the outcome if nothing decisive happened.
    pub(super) fn finish(&mut self, how: &str) {
        self.note(how.to_owned());
        if self.record.outcome == CONNECTED {
            self.record.outcome = how.to_owned();
        }
        self.record.finished = true;
        self.mode = Mode::Closed;
        self.publish();
    }

    fn publish(&mut self) {
        self.state.update(self.id, &self.record);
    }

    fn transcript_line(&mut self, line: std::fmt::Arguments<'_>) {
        let transcript = &mut self.record.transcript;
        if !transcript.is_empty() {
            transcript.push('\n');
        }
        let _ = transcript.write_fmt(line);
    }

    fn note(&mut self, note: String) {
        self.transcript_line(format_args!("-- {note} --"));
    }

    fn client_line(&mut self, line: String) {
        self.transcript_line(format_args!("C: {line}"));
    }

    fn reply(&mut self, out: &mut Vec<Action>, code: u16, text: &str) {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut wire = String::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            let line = line.trim_end_matches('\r');
            self.transcript_line(format_args!("S: {code}{separator}{line}"));
            let _ = write!(wire, "{code}{separator}{line}\r\n");
        }
        out.push(Action::Send(wire.into_bytes()));
    }

    fn close(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Close);
        self.mode = Mode::Closed;
    }

    /// A refusal of the client's own making (syntax, sequence); too many end the session.
    fn error(&mut self, out: &mut Vec<Action>, code: u16, text: &str) {
        self.reply(out, code, text);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply(out, 421, "4.7.0 Too many errors, closing connection");
            if self.record.outcome == CONNECTED {
                self.record.outcome = "closed after too many errors".into();
            }
            self.close(out);
        }
    }

    fn disconnect(&mut self, stage: Stage, out: &mut Vec<Action>) {
        self.note(format!("scripted disconnect at {stage}"));
        self.record.outcome = format!("disconnected at {stage}");
        self.close(out);
    }

    /// A scripted refusal: the outcome says where, and 421 closes the connection.
    fn refuse(&mut self, stage: Stage, code: u16, text: &str, out: &mut Vec<Action>) {
        self.reply(out, code, text);
        self.record.outcome = format!("{code} at {stage}");
        if code == 421 {
            self.close(out);
        }
    }

    /// What the scripts say at `stage`: the session's step first, then the recipient's.
    fn verdict(&self, stage: Stage, recipient_step: Option<&Behaviour>) -> Verdict {
        for step in [Some(&self.session_step), recipient_step]
            .into_iter()
            .flatten()
        {
            match step {
                Behaviour::Reply {
                    stage: at,
                    code,
                    text,
                } if *at == stage => return Verdict::Scripted(*code, text.clone()),
                Behaviour::Disconnect { stage: at } if *at == stage => return Verdict::Disconnect,
                _ => {}
            }
        }
        Verdict::Normal
    }

    /// Handles one command line; true when it started TLS.
    fn command(&mut self, line: &[u8], out: &mut Vec<Action>) -> bool {
        let content = line.strip_suffix(b"\r\n");
        self.client_line(escape_bytes(content.unwrap_or(line)));
        if line.len() > MAX_LINE {
            self.error(out, 500, "5.5.2 Line too long");
            return false;
        }
        let Some(content) = content else {
            self.error(out, 500, "5.5.2 Command line must end with CRLF");
            return false;
        };
        let Ok(content) = std::str::from_utf8(content) else {
            self.error(out, 500, "5.5.2 Command is not valid UTF-8");
            return false;
        };
        let (verb, argument) = content.split_once(' ').unwrap_or((content, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.hello(argument, true, out),
            "HELO" => self.hello(argument, false, out),
            "STARTTLS" => return self.starttls(argument, out),
            "MAIL" => self.mail(argument, out),
            "RCPT" => self.rcpt(argument, out),
            "DATA" => self.data(argument, out),
            "RSET" => {
                self.transaction = None;
                self.reply(out, 250, "2.0.0 Ok");
            }
            "NOOP" => self.reply(out, 250, "2.0.0 Ok"),
            "VRFY" if argument.trim().is_empty() => {
                self.error(out, 501, "5.5.4 VRFY needs an argument")
            }
            "VRFY" => self.reply(
                out,
                252,
                "2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
            ),
            "QUIT" => {
                self.reply(out, 221, "2.0.0 Bye");
                if self.record.outcome == CONNECTED {
                    self.record.outcome = "quit".into();
                }
                self.close(out);
            }
            "" => self.error(out, 500, "5.5.2 Empty command"),
            _ => self.error(out, 500, "5.5.2 Command unrecognized"),
        }
        false
    }

    fn hello(&mut self, argument: &str, extended: bool, out: &mut Vec<Action>) {
        let domain = argument.trim();
        if domain.is_empty() {
            let verb = if extended { "EHLO" } else { "HELO" };
            self.error(out, 501, &format!("5.5.4 {verb} needs a domain"));
            return;
        }
        match self.verdict(Stage::Ehlo, None) {
            Verdict::Disconnect => return self.disconnect(Stage::Ehlo, out),
            Verdict::Scripted(code, text) if code >= 400 => {
                return self.refuse(Stage::Ehlo, code, &text, out);
            }
            Verdict::Scripted(code, text) => self.reply(out, code, &text),
            Verdict::Normal if extended => {
                let mut text = format!("{} greets {domain}", self.hostname);
                text.push_str("\nPIPELINING\n8BITMIME\nSMTPUTF8");
                let _ = write!(text, "\nSIZE {MAX_MESSAGE}\nENHANCEDSTATUSCODES");
                if self.starttls && !self.record.tls {
                    text.push_str("\nSTARTTLS");
                }
                self.reply(out, 250, &text);
            }
            Verdict::Normal => {
                let text = self.hostname.clone();
                self.reply(out, 250, &text);
            }
        }
        self.helo = Some(domain.to_owned());
        self.record.helo = Some(domain.to_owned());
        self.transaction = None;
    }

    fn starttls(&mut self, argument: &str, out: &mut Vec<Action>) -> bool {
        if !self.starttls {
            self.error(out, 502, "5.5.1 STARTTLS not offered");
        } else if self.record.tls {
            self.error(out, 503, "5.5.1 TLS already active");
        } else if !argument.trim().is_empty() {
            self.error(out, 501, "5.5.4 STARTTLS takes no parameters");
        } else if self.helo.is_none() {
            self.error(out, 503, "5.5.1 Send EHLO first");
        } else {
            self.reply(out, 220, "2.0.0 Ready to start TLS");
            out.push(Action::StartTls);
            // RFC 3207 section 4.2: the client starts over with EHLO.
            self.helo = None;
            self.transaction = None;
            return true;
        }
        false
    }

    fn mail(&mut self, argument: &str, out: &mut Vec<Action>) {
        if self.helo.is_none() {
            return self.error(out, 503, "5.5.1 Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return self.error(out, 503, "5.5.1 Nested MAIL command");
        }
        let Some((sender, parameters)) = parse_path(argument, "FROM:") else {
            return self.error(out, 501, "5.5.4 Syntax: MAIL FROM:<address>");
        };
        let declared_size = parameters
            .split_ascii_whitespace()
            .filter_map(|parameter| parameter.split_once('='))
            .find(|(key, _)| key.eq_ignore_ascii_case("SIZE"))
            .and_then(|(_, value)| value.parse::<u64>().ok());
        if declared_size.is_some_and(|size| size > MAX_MESSAGE as u64) {
            return self.error(out, 552, "5.3.4 Message size exceeds fixed limit");
        }
        match self.verdict(Stage::Mail, None) {
            Verdict::Disconnect => return self.disconnect(Stage::Mail, out),
            Verdict::Scripted(code, text) if code >= 400 => {
                return self.refuse(Stage::Mail, code, &text, out);
            }
            Verdict::Scripted(code, text) => self.reply(out, code, &text),
            Verdict::Normal => self.reply(out, 250, "2.1.0 Ok"),
        }
        self.record.mail_from = Some(sender.to_owned());
        self.transaction = Some(Transaction {
            mail_from: sender.to_owned(),
            rcpt_to: Vec::new(),
            recipient_fault: None,
        });
    }

    fn rcpt(&mut self, argument: &str, out: &mut Vec<Action>) {
        let Some(transaction) = &self.transaction else {
            return self.error(out, 503, "5.5.1 Need MAIL first");
        };
        let accepted = transaction.rcpt_to.len();
        let sender = transaction.mail_from.clone();
        let recipient = match parse_path(argument, "TO:") {
            Some((recipient, _)) if !recipient.is_empty() => recipient.to_owned(),
            _ => return self.error(out, 501, "5.5.4 Syntax: RCPT TO:<address>"),
        };
        if accepted >= MAX_RECIPIENTS {
            self.record.rcpt_to.push((recipient, 452));
            return self.reply(out, 452, "4.5.3 Too many recipients");
        }
        let recipient_step = self
            .state
            .recipient_step(&recipient, &mut self.recipient_steps);
        if let Some(
            step @ Behaviour::Reply {
                stage: Stage::Connect | Stage::Ehlo | Stage::Mail,
                ..
            }
            | step @ Behaviour::Disconnect {
                stage: Stage::Connect | Stage::Ehlo | Stage::Mail,
            },
        ) = &recipient_step
        {
            self.note(format!(
                "script step {step:?} for {recipient} comes after its stage; ignored"
            ));
        }
        let greylist = [Some(&self.session_step), recipient_step.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|step| match step {
                Behaviour::Greylist { seconds } => Some(*seconds),
                _ => None,
            });
        let verdict = match self.verdict(Stage::Rcpt, recipient_step.as_ref()) {
            Verdict::Normal => match greylist {
                Some(seconds)
                    if !self.state.greylist_passes(
                        self.record.peer.ip(),
                        &sender,
                        &recipient,
                        seconds,
                    ) =>
                {
                    Verdict::Scripted(451, "4.7.1 Greylisted, try again later".into())
                }
                _ => Verdict::Normal,
            },
            verdict => verdict,
        };
        match verdict {
            Verdict::Disconnect => {
                // Named but never answered: 0.
                self.record.rcpt_to.push((recipient, 0));
                return self.disconnect(Stage::Rcpt, out);
            }
            Verdict::Scripted(code, text) if code >= 400 => {
                self.record.rcpt_to.push((recipient, code));
                return self.refuse(Stage::Rcpt, code, &text, out);
            }
            Verdict::Scripted(code, text) => {
                self.record.rcpt_to.push((recipient.clone(), code));
                self.reply(out, code, &text);
            }
            Verdict::Normal => {
                self.record.rcpt_to.push((recipient.clone(), 250));
                self.reply(out, 250, "2.1.5 Ok");
            }
        }
        if let Some(transaction) = &mut self.transaction {
            transaction.rcpt_to.push(recipient);
            if let Some(
                step @ (Behaviour::Reply {
                    stage: Stage::Data | Stage::EndOfData,
                    ..
                }
                | Behaviour::Disconnect {
                    stage: Stage::Data | Stage::EndOfData,
                }),
            ) = recipient_step
            {
                transaction.recipient_fault.get_or_insert(step);
            }
        }
    }

    fn data(&mut self, argument: &str, out: &mut Vec<Action>) {
        let Some(transaction) = &self.transaction else {
            return self.error(out, 503, "5.5.1 Need MAIL first");
        };
        if transaction.rcpt_to.is_empty() {
            return self.error(out, 554, "5.5.1 No valid recipients");
        }
        if !argument.trim().is_empty() {
            return self.error(out, 501, "5.5.4 DATA takes no parameters");
        }
        let fault = transaction.recipient_fault.clone();
        match self.verdict(Stage::Data, fault.as_ref()) {
            Verdict::Disconnect => return self.disconnect(Stage::Data, out),
            Verdict::Scripted(code, text) if code >= 400 => {
                self.transaction = None;
                return self.refuse(Stage::Data, code, &text, out);
            }
            Verdict::Scripted(code, text) => self.reply(out, code, &text),
            Verdict::Normal => self.reply(out, 354, "End data with <CR><LF>.<CR><LF>"),
        }
        self.mode = Mode::Data(DataReader::new());
    }

    fn end_of_data(&mut self, reader: DataReader, out: &mut Vec<Action>) {
        self.client_line(format!("<message: {} octets>", reader.size));
        if reader.bare_lf > 0 {
            self.note(format!("{} message lines end in a bare LF", reader.bare_lf));
        }
        self.client_line(".".into());
        let Some(transaction) = self.transaction.take() else {
            return;
        };
        if reader.size > MAX_MESSAGE {
            return self.error(out, 552, "5.3.4 Message size exceeds fixed limit");
        }
        let reply = match self.verdict(Stage::EndOfData, transaction.recipient_fault.as_ref()) {
            Verdict::Disconnect => return self.disconnect(Stage::EndOfData, out),
            Verdict::Scripted(code, text) if code >= 400 => {
                return self.refuse(Stage::EndOfData, code, &text, out);
            }
            Verdict::Scripted(code, text) => (code, text),
            Verdict::Normal => (250, format!("2.0.0 Ok: captured in session {}", self.id)),
        };
        self.record.outcome = "accepted".into();
        self.reply(out, reply.0, &reply.1);
        let message = Received {
            local: self.record.local,
            peer: self.record.peer,
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.record.tls,
            mail_from: transaction.mail_from,
            rcpt_to: transaction.rcpt_to,
            data: reader.body,
            attempt: 0,
        };
        self.state.deliver(self.id, &self.record, message);
    }
}

/// Splits `FROM:<path> parameters` (or `TO:`) into the address inside the angle brackets and
/// the parameters. Spaces after the colon are tolerated, as many clients send them.
fn parse_path<'a>(argument: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start_matches(' ');
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let (path, parameters) = (&rest[..end], &rest[end + 1..]);
    if !(parameters.is_empty() || parameters.starts_with(' ')) {
        return None;
    }
    Some((path, parameters.trim()))
}

/// The message after DATA: dot-unstuffing line by line until a line of a single dot that
/// follows a CRLF and ends in CRLF. Bare LF line ends are kept as content.
struct DataReader {
    body: Vec<u8>,
    /// Octets after unstuffing, counted past the limit too.
    size: usize,
    bare_lf: usize,
    at_line_start: bool,
    /// Whether the last line ended in CRLF; DATA's own line did.
    after_crlf: bool,
    /// Whether the last octet taken was CR, for a CRLF split across reads.
    last_cr: bool,
}

impl DataReader {
    fn new() -> Self {
        Self {
            body: Vec::new(),
            size: 0,
            bare_lf: 0,
            at_line_start: true,
            after_crlf: true,
            last_cr: false,
        }
    }

    /// Takes message octets from the front of `input`: how many were used, and whether the
    /// end-of-data line was among them.
    fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let Some(end) = rest.iter().position(|&byte| byte == b'\n') else {
                if rest.len() > MAX_PARTIAL {
                    self.take(rest);
                    self.at_line_start = false;
                    self.last_cr = rest.last() == Some(&b'\r');
                    used += rest.len();
                }
                return (used, false);
            };
            let line = &rest[..=end];
            if self.at_line_start && self.after_crlf && line == b".\r\n" {
                return (used + line.len(), true);
            }
            let crlf = match end {
                0 => self.last_cr,
                _ => line[end - 1] == b'\r',
            };
            self.take(line);
            if !crlf {
                self.bare_lf += 1;
            }
            self.at_line_start = true;
            self.after_crlf = crlf;
            self.last_cr = false;
            used += line.len();
        }
    }

    fn take(&mut self, piece: &[u8]) {
        let piece = match piece {
            [b'.', rest @ ..] if self.at_line_start => rest,
            _ => piece,
        };
        self.size += piece.len();
        if self.size <= MAX_MESSAGE {
            self.body.extend_from_slice(piece);
        } else {
            self.body = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Match;

    fn session(state: &Arc<State>, starttls: bool) -> Session {
        let local = "127.0.0.1:25".parse().expect("an address");
        let peer = "127.0.0.9:40000".parse().expect("an address");
        Session::new(state.clone(), "mx.test", starttls, local, peer)
    }

    /// The reply codes in `actions`, one per reply line's last line.
    fn codes(actions: &[Action]) -> Vec<u16> {
        let mut codes = Vec::new();
        for action in actions {
            if let Action::Send(bytes) = action {
                for line in String::from_utf8_lossy(bytes).lines() {
                    if line.as_bytes().get(3) == Some(&b' ') {
                        codes.push(line[..3].parse().expect("a code"));
                    }
                }
            }
        }
        codes
    }

    #[test]
    fn end_of_data_needs_crlf_dot_crlf() {
        let mut reader = DataReader::new();
        let input = b"a\n.\r\nb\r\n.\n..c\r\n.\r\nafter";
        let (used, ended) = reader.feed(input);
        assert!(ended);
        assert_eq!(&input[used..], b"after");
        // ".\r\n" after a bare LF and ".\n" are content; "..c" is unstuffed.
        assert_eq!(reader.body, b"a\n\r\nb\r\n\n.c\r\n");
        assert_eq!(reader.bare_lf, 2);
    }

    #[test]
    fn end_of_data_split_across_reads_is_found() {
        let mut reader = DataReader::new();
        assert_eq!(reader.feed(b"x\r"), (0, false));
        assert_eq!(reader.feed(b"x\r\n."), (3, false));
        assert_eq!(reader.feed(b".\r"), (0, false));
        assert_eq!(reader.feed(b".\r\n"), (3, true));
        assert_eq!(reader.body, b"x\r\n");
    }

    #[test]
    fn a_long_partial_line_is_taken_without_waiting() {
        let mut reader = DataReader::new();
        let mut input = vec![b'.'];
        input.extend(std::iter::repeat_n(b'y', MAX_PARTIAL + 1));
        input.push(b'\r');
        assert_eq!(reader.feed(&input), (input.len(), false));
        assert_eq!(reader.feed(b"\n.\r\n"), (4, true));
        assert_eq!(reader.body.len(), MAX_PARTIAL + 3, "one dot unstuffed");
        assert_eq!(reader.bare_lf, 0, "the CR came in the earlier read");
    }

    #[test]
    fn pipelined_transaction_gets_one_reply_per_command() {
        let state = Arc::new(State::default());
        let mut session = session(&state, false);
        assert_eq!(codes(&session.start()), [220]);
        let out = session.receive(
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(codes(&out), [250, 250, 250, 354, 250, 221]);
        assert_eq!(out.last(), Some(&Action::Close));
        assert_eq!(state.messages()[0].data, b"hi\r\n");
        assert_eq!(state.sessions()[0].outcome, "accepted");
    }

    #[test]
    fn input_after_starttls_is_discarded() {
        let state = Arc::new(State::default());
        let mut session = session(&state, true);
        session.start();
        let out = session.receive(b"EHLO c.test\r\nSTARTTLS\r\nMAIL FROM:<a@b.test>\r\n");
        assert_eq!(codes(&out), [250, 220]);
        assert_eq!(out.last(), Some(&Action::StartTls));
        session.tls_started();
        assert_eq!(codes(&session.receive(b"MAIL FROM:<a@b.test>\r\n")), [503]);
        let out = session.receive(b"EHLO c.test\r\n");
        let Action::Send(ehlo) = &out[0] else {
            panic!("{out:?}");
        };
        assert!(!String::from_utf8_lossy(ehlo).contains("STARTTLS"));
        assert!(state.sessions()[0].tls);
    }

    #[test]
    fn declared_size_over_the_limit_is_refused_at_mail() {
        let state = Arc::new(State::default());
        let mut session = session(&state, false);
        session.start();
        let out = session.receive(
            format!(
                "EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE={}\r\n",
                MAX_MESSAGE + 1
            )
            .as_bytes(),
        );
        assert_eq!(codes(&out), [250, 552]);
    }

    #[test]
    fn recipient_script_fault_at_end_of_data_applies_to_its_transaction() {
        let state = Arc::new(State::default());
        state.script(
            Match::Domain("bad.test".into()),
            vec![Behaviour::Reply {
                stage: Stage::EndOfData,
                code: 554,
                text: "5.6.0 Rejected".into(),
            }],
        );
        let mut session = session(&state, false);
        session.start();
        let out = session.receive(
            b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<ok@good.test>\r\n\
              RCPT TO:<x@BAD.test>\r\nDATA\r\nhi\r\n.\r\n",
        );
        assert_eq!(codes(&out), [250, 250, 250, 250, 354, 554]);
        assert!(state.messages().is_empty());
        assert_eq!(state.sessions()[0].outcome, "554 at END OF DATA");
    }

    #[test]
    fn connect_stage_from_a_recipient_script_is_used_up_and_noted() {
        let state = Arc::new(State::default());
        state.script(
            Match::Address("x@y.test".into()),
            vec![
                Behaviour::Disconnect {
                    stage: Stage::Connect,
                },
                Behaviour::Reply {
                    stage: Stage::Rcpt,
                    code: 550,
                    text: "5.1.1 Gone".into(),
                },
            ],
        );
        let mut sessions = [session(&state, false), session(&state, false)];
        let mut replies = Vec::new();
        for session in &mut sessions {
            session.start();
            let out = session.receive(b"EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.test>\r\n");
            replies.push(codes(&out));
        }
        assert_eq!(replies, [[250, 250, 250], [250, 250, 550]]);
        assert!(
            state.sessions()[0]
                .transcript
                .contains("comes after its stage; ignored")
        );
    }
}

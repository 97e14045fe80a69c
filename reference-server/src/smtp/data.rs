//! The DATA receiver: finds `<CRLF>.<CRLF>`, removes dot-stuffing, and records every
//! violation instead of guessing.
//!
//! Only `<CRLF>.<CRLF>` ends a message. A bare LF or bare CR anywhere marks the message for
//! rejection (as Postfix's `smtpd_forbid_bare_newline` does), and a line feed that is not part of
//! CRLF never starts a new line, so `<LF>.<LF>`, `<LF>.<CRLF>` and `<CRLF>.<LF>` cannot end
//! the message early: that is what defeats SMTP smuggling. The `lenient_lf` switch exists only
//! for the `bare_lf_end_of_data` fault.

/// Where in a line the receiver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or right after the DATA command).
    LineStart,
    /// A line began with `.`; the dot is withheld until we know whether it ends the data.
    Dot,
    /// `.` then CR at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line, waiting for LF.
    Cr,
}

/// What made a message unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A LF not preceded by CR, on the given 1-based line.
    BareLf(usize),
    /// A CR not followed by LF, on the given 1-based line.
    BareCr(usize),
    /// A NUL octet, on the given 1-based line: not allowed in message text, 8-bit or not
    /// (RFC 6152 section 3), and a way to smuggle where a later hop drops NULs.
    Nul(usize),
    /// A line longer than the limit, on the given 1-based line.
    LineTooLong(usize),
    /// More octets than the size limit.
    TooLarge,
}

/// Result of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All input consumed; the end of data has not been seen.
    NeedMore,
    /// End of data seen after consuming this many bytes of the input.
    Done(usize),
}

/// Whether a byte ended the data.
enum End {
    No,
    AfterThisByte,
    /// Only in lenient mode: `<CR>.<CR>` is complete once the next byte shows no LF follows.
    BeforeThisByte,
}

/// Incremental receiver for one message's DATA.
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    body: Vec<u8>,
    max_size: u64,
    line_limit: usize,
    line_len: usize,
    line_no: usize,
    violation: Option<Violation>,
    lenient_lf: bool,
    keep_dots: bool,
}

impl DataReceiver {
    /// A receiver that keeps at most `max_size` octets and flags lines over `line_limit`
    /// octets (CRLF included).
    pub fn new(max_size: u64, line_limit: usize) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            body: Vec::new(),
            max_size,
            line_limit,
            line_len: 0,
            line_no: 1,
            violation: None,
            lenient_lf: false,
            keep_dots: false,
        }
    }

    /// Treat a bare LF or bare CR as a line end (the vulnerable behaviour the
    /// `bare_lf_end_of_data` fault imitates).
    pub fn lenient_lf(mut self, on: bool) -> DataReceiver {
        self.lenient_lf = on;
        self
    }

    /// Keep the leading dot of stuffed lines (the `no_dot_unstuffing` fault).
    pub fn keep_dots(mut self, on: bool) -> DataReceiver {
        self.keep_dots = on;
        self
    }

    /// Consumes bytes until the end of data or the end of input.
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        for (index, &byte) in input.iter().enumerate() {
            match self.step(byte) {
                End::No => {}
                End::AfterThisByte => return Progress::Done(index + 1),
                End::BeforeThisByte => return Progress::Done(index),
            }
        }
        Progress::NeedMore
    }

    /// The message, or the first violation that makes it unacceptable.
    pub fn finish(self) -> Result<Vec<u8>, Violation> {
        match self.violation {
            Some(violation) => Err(violation),
            None => Ok(self.body),
        }
    }

    /// Octets of message kept so far (after unstuffing).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.body.len()
    }

    /// One byte of input; whether it completed the end of data.
    fn step(&mut self, byte: u8) -> End {
        match (self.state, byte) {
            (State::LineStart, b'.') => {
                self.line_len = 1;
                self.state = State::Dot;
            }
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => return End::AfterThisByte,
            (State::Dot, b'\n') if self.lenient_lf => return End::AfterThisByte,
            (State::DotCr, _) if self.lenient_lf => return End::BeforeThisByte,
            (State::DotCr, _) => {
                // ".\r" followed by something other than LF: the dot was stuffing (or
                // garbage) and the CR is bare.
                self.flag(Violation::BareCr(self.line_no));
                self.emit(b'\r');
                self.state = State::Text;
                return self.step(byte);
            }
            (State::Dot, _) => {
                // RFC 5321 4.5.2: a leading dot followed by more text is removed.
                if self.keep_dots {
                    self.emit(b'.');
                }
                self.state = State::Text;
                return self.step(byte);
            }
            (State::LineStart | State::Text, b'\r') => {
                self.count_line_octet();
                self.state = State::Cr;
            }
            (State::Cr, b'\n') => {
                self.count_line_octet();
                self.emit(b'\r');
                self.emit(b'\n');
                self.end_line();
            }
            (State::Cr, _) if self.lenient_lf => {
                self.emit(b'\r');
                self.end_line();
                return self.step(byte);
            }
            (State::Cr, _) => {
                self.flag(Violation::BareCr(self.line_no));
                self.emit(b'\r');
                self.state = State::Text;
                return self.step(byte);
            }
            (State::LineStart | State::Text, b'\n') => {
                if !self.lenient_lf {
                    self.flag(Violation::BareLf(self.line_no));
                }
                self.count_line_octet();
                self.emit(b'\n');
                if self.lenient_lf {
                    self.end_line();
                } else {
                    // A bare LF does not start a new line, so a following "." is text.
                    self.state = State::Text;
                }
            }
            (State::LineStart | State::Text, _) => {
                if byte == 0 {
                    self.flag(Violation::Nul(self.line_no));
                }
                self.count_line_octet();
                self.emit(byte);
                self.state = State::Text;
            }
        }
        End::No
    }

    fn end_line(&mut self) {
        self.state = State::LineStart;
        self.line_len = 0;
        self.line_no += 1;
    }

    fn count_line_octet(&mut self) {
        self.line_len += 1;
        if self.line_len > self.line_limit {
            self.flag(Violation::LineTooLong(self.line_no));
        }
    }

    fn emit(&mut self, byte: u8) {
        if self.body.len() as u64 >= self.max_size {
            // Keep reading to the end of data, but stop keeping it.
            self.flag(Violation::TooLarge);
            return;
        }
        self.body.push(byte);
    }

    fn flag(&mut self, violation: Violation) {
        // Size wins over everything: the client must learn the message can never fit.
        match (self.violation, violation) {
            (None, _) | (Some(_), Violation::TooLarge) => self.violation = Some(violation),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn receive(input: &[u8]) -> (Progress, Result<Vec<u8>, Violation>) {
        let mut receiver = DataReceiver::new(1 << 20, 1000);
        let progress = receiver.feed(input);
        (progress, receiver.finish())
    }

    /// Test-only stuffing, independent of the harness's client.
    fn stuff(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line_start = true;
        for &b in body {
            if line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            line_start = b == b'\n';
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let (progress, body) = receive(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert_eq!(progress, Progress::Done(11));
        assert_eq!(body.unwrap(), b"a\r\n.b\r\n");
        assert_eq!(receive(b".\r\n"), (Progress::Done(3), Ok(vec![])));
    }

    #[test]
    fn smuggling_vectors_do_not_end_the_message() {
        for vector in [
            &b"a\n.\nb"[..],
            b"a\n.\r\nb",
            b"a\r\n.\nb",
            b"a\r.\rb",
            b"a\r\n.\rb",
        ] {
            let mut input = vector.to_vec();
            input.extend_from_slice(b"\r\n");
            let (progress, _) = receive(&input);
            assert_eq!(progress, Progress::NeedMore, "{vector:?} ended the message");
            input.extend_from_slice(b".\r\n");
            let (progress, body) = receive(&input);
            assert_eq!(progress, Progress::Done(input.len()));
            assert!(body.is_err(), "{vector:?} must be rejected");
        }
    }

    #[test]
    fn bare_line_ends_are_reported_with_line_numbers() {
        assert_eq!(
            receive(b"ok\r\nbad\nline\r\n.\r\n").1,
            Err(Violation::BareLf(2))
        );
        assert_eq!(receive(b"bad\rline\r\n.\r\n").1, Err(Violation::BareCr(1)));
    }

    #[test]
    fn nul_octets_neither_end_the_data_nor_get_in() {
        for input in [&b"a\r\n.\0\r\nb\r\n.\r\n"[..], b"a\r\n\0.\r\nb\r\n.\r\n"] {
            let (progress, body) = receive(input);
            assert_eq!(progress, Progress::Done(input.len()), "{input:?}");
            assert_eq!(body, Err(Violation::Nul(2)), "{input:?}");
        }
    }

    #[test]
    fn lenient_mode_is_the_vulnerable_one() {
        let mut receiver = DataReceiver::new(1 << 20, 1000).lenient_lf(true);
        assert_eq!(receiver.feed(b"a\n.\nSMUGGLED"), Progress::Done(4));
        assert_eq!(receiver.finish().unwrap(), b"a\n");
        let mut receiver = DataReceiver::new(1 << 20, 1000).lenient_lf(true);
        assert_eq!(receiver.feed(b"a\r.\rSMUGGLED"), Progress::Done(4));
        assert_eq!(receiver.finish().unwrap(), b"a\r");
    }

    #[test]
    fn limits() {
        let mut receiver = DataReceiver::new(4, 1000);
        assert_eq!(receiver.feed(b"12345678\r\n.\r\n"), Progress::Done(13));
        assert_eq!(receiver.finish(), Err(Violation::TooLarge));
        let mut receiver = DataReceiver::new(1 << 20, 11);
        let line = b"123456789\r\n12345678901\r\n.\r\n";
        assert_eq!(receiver.feed(line), Progress::Done(line.len()));
        assert_eq!(receiver.finish(), Err(Violation::LineTooLong(2)));
    }

    proptest! {
        #[test]
        fn never_panics_and_never_overruns(input in proptest::collection::vec(any::<u8>(), 0..2000), split in 0usize..2000) {
            let mut receiver = DataReceiver::new(500, 100);
            let split = split.min(input.len());
            let first = receiver.feed(&input[..split]);
            if let Progress::Done(n) = first {
                prop_assert!(n <= split);
            } else if let Progress::Done(n) = receiver.feed(&input[split..]) {
                prop_assert!(n <= input.len() - split);
            }
            prop_assert!(receiver.len() <= 500);
        }

        #[test]
        fn unstuffing_round_trips_in_any_chunking(
            lines in proptest::collection::vec("[ -~]{0,40}", 0..30),
            chunk in 1usize..64,
        ) {
            let body: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let wire = stuff(&body);
            let mut receiver = DataReceiver::new(1 << 20, 1000);
            let mut consumed = 0;
            for piece in wire.chunks(chunk) {
                match receiver.feed(piece) {
                    Progress::NeedMore => consumed += piece.len(),
                    Progress::Done(n) => { consumed += n; break; }
                }
            }
            prop_assert_eq!(consumed, wire.len());
            prop_assert_eq!(receiver.finish().unwrap(), body);
        }
    }
}

//! Every byte a client sent and received, in order, for showing the user what went over the wire.

use std::fmt::{self, Write as _};

/// Runs of one direction longer than this are shown abbreviated in the middle.
const ABBREVIATE_OVER: usize = 4096;
/// Bytes kept at each end of an abbreviated run.
const KEEP_AT_EACH_END: usize = 1024;

/// One event on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Bytes the client wrote, one entry per write.
    Sent(Vec<u8>),
    /// Bytes the client read, one entry per read.
    Received(Vec<u8>),
    /// Something that is not data, such as the start of TLS.
    Note(String),
}

/// The record of a connection. `Display` renders it line by line with `C: ` / `S: ` prefixes and
/// every byte that is not printable ASCII escaped (`\r`, `\n`, `\t`, `\\`, `\xNN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    entries: Vec<Entry>,
    /// Set for load runs, where a transcript would grow with every message sent.
    off: bool,
}

impl Transcript {
    /// The events in the order they happened.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Everything the client sent, concatenated.
    pub fn sent(&self) -> Vec<u8> {
        self.concat(|entry| match entry {
            Entry::Sent(bytes) => Some(bytes),
            _ => None,
        })
    }

    /// Everything the client received, concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.concat(|entry| match entry {
            Entry::Received(bytes) => Some(bytes),
            _ => None,
        })
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        if !self.off {
            self.entries.push(entry);
        }
    }

    /// Stops recording: later events are dropped and the entries so far are freed.
    pub(crate) fn stop(&mut self) {
        self.off = true;
        self.entries = Vec::new();
    }

    fn concat<'a>(&'a self, pick: impl Fn(&'a Entry) -> Option<&'a Vec<u8>>) -> Vec<u8> {
        self.entries
            .iter()
            .filter_map(pick)
            .flatten()
            .copied()
            .collect()
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries = self.entries.iter().peekable();
        while let Some(entry) = entries.next() {
            let (prefix, mut run) = match entry {
                Entry::Note(note) => {
                    writeln!(f, "-- {note} --")?;
                    continue;
                }
                Entry::Sent(bytes) => ("C: ", bytes.clone()),
                Entry::Received(bytes) => ("S: ", bytes.clone()),
            };
            // Reads and writes split the stream arbitrarily; show a direction's bytes as lines.
            while let Some(next) = entries.peek() {
                match (entry, next) {
                    (Entry::Sent(_), Entry::Sent(more))
                    | (Entry::Received(_), Entry::Received(more)) => {
                        run.extend_from_slice(more);
                        entries.next();
                    }
                    _ => break,
                }
            }
            if run.len() > ABBREVIATE_OVER {
                write_lines(f, prefix, &run[..KEEP_AT_EACH_END])?;
                let omitted = run.len() - 2 * KEEP_AT_EACH_END;
                writeln!(f, "{prefix}[... {omitted} bytes omitted ...]")?;
                write_lines(f, prefix, &run[run.len() - KEEP_AT_EACH_END..])?;
            } else {
                write_lines(f, prefix, &run)?;
            }
        }
        Ok(())
    }
}

fn write_lines(f: &mut fmt::Formatter<'_>, prefix: &str, bytes: &[u8]) -> fmt::Result {
    for line in bytes.split_inclusive(|&byte| byte == b'\n') {
        writeln!(f, "{prefix}{}", escape_bytes(line))?;
    }
    Ok(())
}

/// `bytes` as printable ASCII: `\r`, `\n`, `\t` and `\\` escaped, other bytes outside `' '..='~'`
/// as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(char::from(byte)),
            _ => write!(out, "\\x{byte:02x}").expect("writing to a String cannot fail"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_is_not_printable() {
        assert_eq!(
            escape_bytes(b"a\\b\tc\x00\xff\r\n"),
            "a\\\\b\\tc\\x00\\xff\\r\\n"
        );
    }

    #[test]
    fn renders_lines_by_direction_and_merges_split_reads() {
        let mut transcript = Transcript::default();
        transcript.push(Entry::Received(b"220 hi\r\n".to_vec()));
        transcript.push(Entry::Sent(b"STARTTLS\r\n".to_vec()));
        transcript.push(Entry::Received(b"220 go".to_vec()));
        transcript.push(Entry::Received(b" ahead\r\n".to_vec()));
        transcript.push(Entry::Note("TLS established (TLSv1.3)".into()));
        transcript.push(Entry::Sent(b"EHLO x\r\nbare\nend".to_vec()));
        assert_eq!(
            transcript.to_string(),
            "S: 220 hi\\r\\n\nC: STARTTLS\\r\\n\nS: 220 go ahead\\r\\n\n\
             -- TLS established (TLSv1.3) --\nC: EHLO x\\r\\n\nC: bare\\n\nC: end\n"
        );
        assert_eq!(transcript.sent(), b"STARTTLS\r\nEHLO x\r\nbare\nend");
        assert_eq!(transcript.received(), b"220 hi\r\n220 go ahead\r\n");
    }

    #[test]
    fn abbreviates_long_runs_in_the_middle() {
        let mut transcript = Transcript::default();
        let body = vec![0u8; 10_000];
        transcript.push(Entry::Sent(body));
        let shown = transcript.to_string();
        assert!(
            shown.contains("C: [... 7952 bytes omitted ...]\n"),
            "{shown}"
        );
        assert_eq!(shown.matches("\\x00").count(), 2 * KEEP_AT_EACH_END);
    }
}

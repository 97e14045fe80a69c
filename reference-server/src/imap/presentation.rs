//! What a session says besides what the protocol fixes, under two variants.
//!
//! - [`Variant::ImapOtherTexts`]: every status response (tagged, untagged, greeting, BYE) gets
//!   another human-readable text. RFC 3501 7.1 makes the text free-form; only the condition and
//!   the response code mean anything, so the new texts say misleading things on purpose ("NO
//!   problem" in an OK).
//! - [`Variant::ImapChatter`]: untagged responses a client must take at any time (RFC 3501 section
//!   7 and 5.3): an `* OK [ALERT]` and an unsolicited `* CAPABILITY` after a login (RFC 3501
//!   7.2.1, 7.1), an untagged `OK` or `NO` warning (7.1.1, 7.1.2) before every third tagged
//!   reply, and `* OK Still here` when IDLE starts (as Dovecot sends during IDLE).

use crate::config::Config;
use crate::variants::Variant;

/// The texts used under [`Variant::ImapOtherTexts`], by condition; picked in turn.
const OK_TEXTS: [&str; 4] = [
    "NO problem, that went fine",
    "Done",
    "BAD news avoided: success",
    "Completed (in 0.001 + 0.000 secs).",
];
const NO_TEXTS: [&str; 3] = [
    "OK, so that did not work",
    "Sorry, not possible",
    "Failed: completed nothing",
];
const BAD_TEXTS: [&str; 2] = ["OK? That made no sense", "Come again?"];
const BYE_TEXTS: [&str; 2] = ["OK, goodbye", "Logging you out now"];

/// The untagged warnings under [`Variant::ImapChatter`], in turn.
const CHATTER: [&str; 3] = [
    "* OK Still here",
    "* NO [ALERT] Your mailbox is 91 percent full",
    "* OK [ALERT] Maintenance tonight at 02:00 UTC",
];

/// A session's manners: which of the two variants are on, and where it is in their rotations.
#[derive(Debug, Clone, Default)]
pub struct Presentation {
    other_texts: bool,
    chatter: bool,
    /// Status responses retexted so far.
    texts_used: usize,
    /// Tagged replies so far, for chatter before every third.
    replies: usize,
}

impl Presentation {
    /// The manners `config` asks for.
    pub fn of(config: &Config) -> Presentation {
        Presentation {
            other_texts: config.variants.has(Variant::ImapOtherTexts),
            chatter: config.variants.has(Variant::ImapChatter),
            ..Presentation::default()
        }
    }

    /// Whether chatter is on.
    pub fn chatters(&self) -> bool {
        self.chatter
    }

    /// The untagged warning to put before the tagged reply of a command, now and then.
    pub fn before_tagged(&mut self) -> Option<&'static str> {
        if !self.chatter {
            return None;
        }
        self.replies += 1;
        self.replies
            .is_multiple_of(3)
            .then(|| CHATTER[(self.replies / 3) % CHATTER.len()])
    }

    /// Gives the status responses in `out` other texts, when asked to. `out` holds whole
    /// responses (a chunk of a large FETCH included): literals are stepped over, so message
    /// data that looks like a status line is never touched.
    pub fn retext(&mut self, out: Vec<u8>) -> Vec<u8> {
        if !self.other_texts {
            return out;
        }
        let mut result = Vec::with_capacity(out.len() + 64);
        let mut at = 0;
        while at < out.len() {
            let end = out[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(out.len(), |p| at + p + 1);
            let line = &out[at..end];
            at = end;
            match announced_literal(line) {
                Some(size) => {
                    let literal_end = (at + size).min(out.len());
                    result.extend_from_slice(line);
                    result.extend_from_slice(&out[at..literal_end]);
                    at = literal_end;
                }
                None => match self.other_text(line) {
                    Some(new) => result.extend_from_slice(&new),
                    None => result.extend_from_slice(line),
                },
            }
        }
        result
    }

    /// A status line with the next text of its condition: `tag COND [code] text` CRLF.
    fn other_text(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(line).ok()?.strip_suffix("\r\n")?;
        let (tag, rest) = text.split_once(' ')?;
        let (condition, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let texts: &[&str] = match condition.to_ascii_uppercase().as_str() {
            "OK" | "PREAUTH" => &OK_TEXTS,
            "NO" => &NO_TEXTS,
            "BAD" => &BAD_TEXTS,
            "BYE" if tag == "*" => &BYE_TEXTS,
            _ => return None,
        };
        let code = match rest.strip_prefix('[') {
            Some(inside) => &rest[..inside.find(']')? + 2],
            None => "",
        };
        let new = texts[self.texts_used % texts.len()];
        self.texts_used += 1;
        let space = if code.is_empty() { "" } else { " " };
        Some(format!("{tag} {condition} {code}{space}{new}\r\n").into_bytes())
    }
}

/// The size of the literal a server line announces by ending in `{n}` CRLF.
fn announced_literal(line: &[u8]) -> Option<usize> {
    let inside = line.strip_suffix(b"}\r\n")?;
    let open = inside.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inside[open + 1..]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presentation(variants: &[Variant]) -> Presentation {
        let mut config = Config::defaults();
        for variant in variants {
            config.variants.insert(*variant);
        }
        Presentation::of(&config)
    }

    #[test]
    fn defaults_change_nothing() {
        let mut plain = presentation(&[]);
        let out = b"* OK [UIDNEXT 5] Predicted\r\na1 OK done\r\n".to_vec();
        assert_eq!(plain.retext(out.clone()), out);
        assert!((0..10).all(|_| plain.before_tagged().is_none()));
        assert!(!plain.chatters());
    }

    #[test]
    fn texts_change_but_tags_conditions_and_codes_stay() {
        let mut other = presentation(&[Variant::ImapOtherTexts]);
        let out = other.retext(
            b"* OK [UIDNEXT 5] Predicted next UID\r\n* 1 EXISTS\r\na1 NO [TRYCREATE] No such\r\n\
              a2 BAD Syntax error\r\n* BYE bye\r\n* OK hello\r\n"
                .to_vec(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* OK [UIDNEXT 5] NO problem, that went fine\r\n* 1 EXISTS\r\n\
             a1 NO [TRYCREATE] Sorry, not possible\r\na2 BAD OK? That made no sense\r\n\
             * BYE Logging you out now\r\n* OK NO problem, that went fine\r\n"
        );
    }

    #[test]
    fn literals_are_stepped_over() {
        let mut other = presentation(&[Variant::ImapOtherTexts]);
        let data = b"* 1 FETCH (BODY[] {22}\r\na1 OK not a response\r\n)\r\na1 OK FETCH done\r\n";
        let out = String::from_utf8(other.retext(data.to_vec())).unwrap();
        assert_eq!(
            out,
            "* 1 FETCH (BODY[] {22}\r\na1 OK not a response\r\n)\r\na1 OK NO problem, that went fine\r\n"
        );
    }

    #[test]
    fn chatter_comes_every_third_reply() {
        let mut chatty = presentation(&[Variant::ImapChatter]);
        let said: Vec<Option<&str>> = (0..6).map(|_| chatty.before_tagged()).collect();
        assert_eq!(said.iter().filter(|s| s.is_some()).count(), 2);
        assert!(said[2].is_some() && said[5].is_some());
        assert!(chatty.chatters());
    }
}

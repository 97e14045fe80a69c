//! Command arguments: quoted strings, mailbox names and strings that may need a literal.

use std::borrow::Cow;

use super::client::Part;
use super::utf7::encode_modified_utf7;

/// `bytes` as an RFC 3501 quoted string, when they can be one: 7-bit, without NUL, CR or LF.
pub fn quote(bytes: &[u8]) -> Option<String> {
    let quotable = bytes
        .iter()
        .all(|&byte| byte.is_ascii() && !matches!(byte, 0 | b'\r' | b'\n'));
    let text = std::str::from_utf8(bytes).ok().filter(|_| quotable)?;
    Some(escape_quoted(text))
}

/// `"` text `"` with `"` and `\` escaped. Other characters go as they are, so text that is not
/// 7-bit makes a quoted string only a server with UTF8=ACCEPT (RFC 6855) takes.
pub(super) fn escape_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(ch);
    }
    quoted.push('"');
    quoted
}

/// A mailbox name (or LIST reference or pattern) as a command argument: modified UTF-7, which
/// is printable ASCII and so can always be quoted.
pub fn mailbox_arg(name: &str) -> String {
    escape_quoted(&encode_modified_utf7(name))
}

/// A string argument: quoted when it can be, else a synchronising literal.
pub(super) fn string_part(bytes: &[u8]) -> Part<'_> {
    match quote(bytes) {
        Some(quoted) => Part::Text(Cow::Owned(quoted.into_bytes())),
        None => Part::Literal(Cow::Borrowed(bytes)),
    }
}

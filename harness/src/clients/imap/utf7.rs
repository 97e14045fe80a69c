//! Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3).

use base64::Engine as _;
use base64::alphabet::Alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use super::malformed;
use crate::clients::ClientError;

/// RFC 3501's modified BASE64: RFC 2045 base64 with `,` for `/` and no padding. Decoding
/// rejects stray bits after the last octet, which an encoder never leaves.
const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("the modified BASE64 alphabet is valid"),
    },
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes a mailbox name in modified UTF-7: printable ASCII stands for itself (`&` as `&-`),
/// runs of anything else go as `&` modified-BASE64(UTF-16BE) `-`.
pub fn encode_modified_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let octets: Vec<u8> = run.iter().flat_map(|unit| unit.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&MODIFIED_BASE64.encode(octets));
            out.push('-');
            run.clear();
        }
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            out.push(ch);
            if ch == '&' {
                out.push('-');
            }
        } else {
            let mut units = [0; 2];
            run.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name, strictly: raw bytes outside printable ASCII, an
/// unterminated or malformed shift, and printable ASCII encoded in a shift (RFC 3501 section
/// 5.1.3 forbids it) are errors.
pub fn decode_modified_utf7(name: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| {
        malformed(
            format!("mailbox name is not modified UTF-7: {reason}"),
            name.as_bytes(),
        )
    };
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(ch) = rest.chars().next() {
        rest = &rest[ch.len_utf8()..];
        if ch != '&' {
            if !(' '..='~').contains(&ch) {
                return Err(bad("a character outside printable ASCII is not encoded"));
            }
            out.push(ch);
            continue;
        }
        let Some((encoded, after)) = rest.split_once('-') else {
            return Err(bad("'&' without a closing '-'"));
        };
        rest = after;
        if encoded.is_empty() {
            out.push('&');
            continue;
        }
        let octets = MODIFIED_BASE64
            .decode(encoded)
            .map_err(|_| bad("the shifted part is not modified BASE64"))?;
        if octets.len() % 2 != 0 {
            return Err(bad("the shifted part is not whole UTF-16 units"));
        }
        let units = octets
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        for decoded in char::decode_utf16(units) {
            let decoded = decoded.map_err(|_| bad("the shifted part is not valid UTF-16"))?;
            if (' '..='~').contains(&decoded) {
                return Err(bad("printable ASCII inside a shift"));
            }
            out.push(decoded);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::imap::arguments::mailbox_arg;
    use crate::clients::imap::test_support::malformed_reason;

    #[test]
    fn modified_utf7() {
        for (decoded, encoded) in [
            ("INBOX", "INBOX"),
            ("Entw\u{fc}rfe", "Entw&APw-rfe"),
            ("R&D", "R&-D"),
            (
                "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}",
                "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
            ),
            ("\u{1f600}", "&2D3eAA-"),
            ("tab\there", "tab&AAk-here"),
            ("", ""),
        ] {
            assert_eq!(encode_modified_utf7(decoded), encoded);
            assert_eq!(decode_modified_utf7(encoded).unwrap(), decoded);
        }
        for bad in [
            "&U,BTFw",   // no closing '-'
            "&AGE-",     // 'a' encoded
            "caf\u{e9}", // raw 8-bit
            "&Jjo!-",    // not base64
            "&AP-",      // not whole UTF-16 units
            "&2D0-",     // lone surrogate
            "&APy-\x01", // raw control character
        ] {
            let reason = malformed_reason(decode_modified_utf7(bad));
            assert!(reason.contains("not modified UTF-7"), "{bad:?}: {reason}");
        }
        assert_eq!(mailbox_arg("a\"b\u{e9}"), "\"a\\\"b&AOk-\"");
    }
}

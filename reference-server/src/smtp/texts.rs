//! What a reply line says besides its code, under the SMTP variants that change it: the
//! enhanced status code left out ([`Variant::SmtpNoEnhancedStatusCodes`]) and other texts
//! ([`Variant::SmtpOtherTexts`]). A client must read neither (RFC 5321 4.2: the text is not
//! significant; RFC 2034: status codes only where advertised).

use crate::variants::{Variant, Variants};

/// The text RFC 5321 4.2.3 (and RFC 4954 for AUTH) gives each reply code, used by
/// [`Variant::SmtpOtherTexts`] in place of the reference server's own.
fn standard_text(code: u16) -> &'static str {
    match code {
        211 => "System status, or system help reply",
        214 => "Help message: see RFC 5321",
        220 => "Go ahead",
        221 => "Service closing transmission channel",
        235 => "Authentication succeeded",
        250 => "Requested mail action okay, completed",
        251 => "User not local; will forward",
        252 => "Will not verify the user; send mail to find out",
        354 => "Start mail input; end with <CRLF>.<CRLF>",
        421 => "Service not available, closing transmission channel",
        450 => "Requested mail action not taken: mailbox unavailable",
        451 => "Requested action aborted: local error in processing",
        452 => "Requested action not taken: insufficient system storage",
        500 => "Syntax error, command unrecognized",
        501 => "Syntax error in parameters or arguments",
        502 => "Command not implemented",
        503 => "Bad sequence of commands",
        504 => "Command parameter not implemented",
        530 => "Authentication required",
        535 => "Authentication credentials invalid (try again)",
        550 => "Requested action not taken: mailbox unavailable",
        552 => "Requested mail action aborted: exceeded storage allocation",
        553 => "Requested action not taken: mailbox name not allowed",
        554 => "Transaction failed",
        555 => "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        _ => "See RFC 5321",
    }
}

/// Whether `word` is an RFC 3463 enhanced status code (`class.subject.detail`).
fn is_enhanced(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The text of a reply line (all after the code and its separator) as sent under `variants`.
/// SASL challenges (334) are protocol data, never changed.
pub fn reply_text(variants: &Variants, code: u16, text: &str) -> String {
    if code == 334 {
        return text.to_owned();
    }
    let (enhanced, rest) = match text.split_once(' ') {
        Some((first, rest)) if is_enhanced(first) => (Some(first), rest),
        _ if is_enhanced(text) => (Some(text), ""),
        _ => (None, text),
    };
    let enhanced = enhanced.filter(|_| !variants.has(Variant::SmtpNoEnhancedStatusCodes));
    let rest = if variants.has(Variant::SmtpOtherTexts) {
        standard_text(code)
    } else {
        rest
    };
    match enhanced {
        Some(enhanced) if rest.is_empty() => enhanced.to_owned(),
        Some(enhanced) => format!("{enhanced} {rest}"),
        None => rest.to_owned(),
    }
}

/// The greeting's lines, the host name first as RFC 5321 4.3.1 requires; two lines under
/// [`Variant::SmtpOtherTexts`].
pub fn greeting(variants: &Variants, hostname: &str) -> Vec<String> {
    if variants.has(Variant::SmtpOtherTexts) {
        vec![
            format!("{hostname} Service ready"),
            "No unsolicited bulk mail here; this line says nothing a client needs".into(),
        ]
    } else {
        vec![format!("{hostname} ESMTP reference-server ready")]
    }
}

/// The first line of the EHLO reply after the host name (the ehlo-greet of RFC 5321 4.1.1.1).
pub fn ehlo_greet(variants: &Variants, client: &str) -> String {
    if variants.has(Variant::SmtpOtherTexts) {
        format!("Hello {client}, pleased to meet you")
    } else {
        format!("greets {client}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(list: &[Variant]) -> Variants {
        list.iter().copied().collect()
    }

    #[test]
    fn reference_texts_pass_unchanged() {
        let none = Variants::default();
        assert_eq!(reply_text(&none, 250, "2.0.0 Ok"), "2.0.0 Ok");
        assert_eq!(reply_text(&none, 334, "VXNlcm5hbWU6"), "VXNlcm5hbWU6");
        assert_eq!(
            reply_text(&none, 500, "Command unrecognized"),
            "Command unrecognized"
        );
    }

    #[test]
    fn enhanced_codes_are_dropped_without_the_extension() {
        let plain = on(&[Variant::SmtpNoEnhancedStatusCodes]);
        assert_eq!(reply_text(&plain, 250, "2.0.0 Ok"), "Ok");
        assert_eq!(reply_text(&plain, 550, "5.1.1 <a@b>: no"), "<a@b>: no");
        assert_eq!(reply_text(&plain, 250, "2.0.0"), "");
        assert_eq!(
            reply_text(&plain, 250, "1.2.3 is a version"),
            "1.2.3 is a version"
        );
        assert_eq!(reply_text(&plain, 334, "2.0.0 x"), "2.0.0 x");
    }

    #[test]
    fn other_texts_keep_the_code_and_status() {
        let other = on(&[Variant::SmtpOtherTexts]);
        assert_eq!(
            reply_text(&other, 221, "2.0.0 Bye"),
            "2.0.0 Service closing transmission channel"
        );
        assert_eq!(reply_text(&other, 503, "Bad"), "Bad sequence of commands");
        let both = on(&[Variant::SmtpOtherTexts, Variant::SmtpNoEnhancedStatusCodes]);
        assert_eq!(
            reply_text(&both, 221, "2.0.0 Bye"),
            "Service closing transmission channel"
        );
        assert_eq!(greeting(&other, "h.test").len(), 2);
        assert!(greeting(&other, "h.test")[0].starts_with("h.test "));
        assert!(greeting(&Variants::default(), "h.test")[0].starts_with("h.test "));
    }
}

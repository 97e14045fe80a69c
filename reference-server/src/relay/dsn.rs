//! Delivery status notifications (RFC 3464): the bounce a sender gets when the relay gives up.

use std::fmt::Write as _;

/// One recipient the relay gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient address.
    pub recipient: String,
    /// RFC 3463 status code, e.g. `5.1.1`.
    pub status: String,
    /// The server that refused it, if one did.
    pub remote_mta: Option<String>,
    /// The remote server's reply (`smtp;` diagnostic), if there was one.
    pub smtp_reply: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// What the bounce is about.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name: `Reporting-MTA` and the `From:` domain.
    pub hostname: &'a str,
    /// The original sender, who gets the report.
    pub sender: &'a str,
    /// The original message's queue id.
    pub queue_id: &'a str,
    /// When the original arrived, Unix seconds.
    pub arrived: i64,
    /// The failed recipients.
    pub failures: &'a [Failure],
    /// The original message.
    pub original: &'a [u8],
}

/// The status to report for an SMTP reply: its enhanced code when it has one (RFC 2034), or
/// the class of its basic code.
pub fn status_of(code: u16, text: &str) -> String {
    let candidate = text.split_ascii_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = candidate.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(parts[0], "2" | "4" | "5")
        && parts[0] == (code / 100).to_string();
    if valid {
        candidate.to_owned()
    } else {
        format!("{}.0.0", code / 100)
    }
}

/// The bounce message, CRLF line ends, 7-bit: a multipart/report with a human-readable part, the
/// machine-readable `message/delivery-status`, and the original's header section.
pub fn compose(report: &Report<'_>) -> Vec<u8> {
    let boundary = format!(
        "{}.{}/{}",
        report.queue_id,
        fastrand::u64(..),
        report.hostname
    );
    let now = rfc2822(time::OffsetDateTime::now_utc());
    let arrived = time::OffsetDateTime::from_unix_timestamp(report.arrived)
        .map(rfc2822)
        .unwrap_or_else(|_| now.clone());
    let mut out = String::with_capacity(2048);
    let host = report.hostname;
    let _ = write!(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {now}\r\n\
         Message-ID: <{}.{}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\
         \r\n\
         Your message (queue id {}) could not be delivered to one or more\r\n\
         recipients. The mail system gave up on them for the reasons below.\r\n\
         \r\n",
        ascii(report.sender),
        report.queue_id,
        fastrand::u32(..),
        report.queue_id,
    );
    for failure in report.failures {
        let _ = write!(
            out,
            "<{}>: {}\r\n",
            ascii(&failure.recipient),
            ascii(&failure.reason)
        );
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         Arrival-Date: {arrived}\r\n"
    );
    for failure in report.failures {
        let _ = write!(
            out,
            "\r\nFinal-Recipient: rfc822; {}\r\n\
             Action: failed\r\n\
             Status: {}\r\n",
            ascii(&failure.recipient),
            failure.status
        );
        if let Some(mta) = &failure.remote_mta {
            let _ = write!(out, "Remote-MTA: dns; {}\r\n", ascii(mta));
        }
        match &failure.smtp_reply {
            Some(reply) => {
                let _ = write!(out, "Diagnostic-Code: smtp; {}\r\n", ascii(reply));
            }
            None => {
                let _ = write!(
                    out,
                    "Diagnostic-Code: X-reference-server; {}\r\n",
                    ascii(&failure.reason)
                );
            }
        }
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\n\
         Content-Description: Undelivered message headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    );
    let mut bytes = out.into_bytes();
    let headers = header_section(report.original);
    bytes.extend(headers.iter().map(|&b| if b.is_ascii() { b } else { b'?' }));
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// The bounce as a server without the DSN extension may write it
/// ([`crate::variants::Variant::RelayPlainBounces`]): one text/plain message, in the manner of
/// qmail's bounce format, with a paragraph per failed recipient and the original's header
/// section quoted below a separator line. Nothing machine-readable beyond that: RFC 5321 6.1
/// asks for a notification, not for a format.
pub fn compose_plain(report: &Report<'_>) -> Vec<u8> {
    let now = rfc2822(time::OffsetDateTime::now_utc());
    let host = report.hostname;
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "From: MAILER-DAEMON@{host}\r\n\
         To: {}\r\n\
         Subject: failure notice\r\n\
         Date: {now}\r\n\
         Message-ID: <{}.{}.bounce@{host}>\r\n\
         \r\n\
         Hello. The mail server at {host} tried to deliver your message\r\n\
         (queue id {}) and could not reach the addresses below. These\r\n\
         errors are permanent; the server will not try again.\r\n",
        ascii(report.sender),
        report.queue_id,
        fastrand::u32(..),
        report.queue_id,
    );
    for failure in report.failures {
        let _ = write!(
            out,
            "\r\n<{}>:\r\n{}\r\n",
            ascii(&failure.recipient),
            ascii(failure.smtp_reply.as_deref().unwrap_or(&failure.reason))
        );
    }
    out.push_str("\r\n--- The header of your message follows.\r\n\r\n");
    let mut bytes = out.into_bytes();
    let headers = header_section(report.original);
    bytes.extend(headers.iter().map(|&b| if b.is_ascii() { b } else { b'?' }));
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// The header section of a message, up to and including the CRLF that ends its last field.
fn header_section(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &message[..end + 2],
        None => message,
    }
}

/// Text for a 7-bit report line: no control characters, non-ASCII as `?`.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn rfc2822(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_enhanced_code_when_it_matches_the_class() {
        assert_eq!(status_of(550, "5.1.1 no such user"), "5.1.1");
        assert_eq!(status_of(550, "no such user"), "5.0.0");
        assert_eq!(status_of(550, "4.1.1 mismatch"), "5.0.0");
        assert_eq!(status_of(451, "4.7.1 later"), "4.7.1");
        assert_eq!(status_of(554, "5.x.1"), "5.0.0");
    }

    #[test]
    fn report_is_a_7bit_multipart_report_with_one_block_per_recipient() {
        let failures = [
            Failure {
                recipient: "carol@b.test".into(),
                status: "5.1.1".into(),
                remote_mta: Some("mx.b.test".into()),
                smtp_reply: Some("550 5.1.1 no such user".into()),
                reason: "host mx.b.test said: 550 5.1.1 no such user".into(),
            },
            Failure {
                recipient: "dan@null.test".into(),
                status: "5.1.10".into(),
                remote_mta: None,
                smtp_reply: None,
                reason: "null MX".into(),
            },
        ];
        let original = "Subject: h\u{e9}llo\r\nFrom: a@a.test\r\n\r\nbody must not appear\r\n";
        let bytes = compose(&Report {
            hostname: "mail.a.test",
            sender: "alice@a.test",
            queue_id: "Q1",
            arrived: 1_700_000_000,
            failures: &failures,
            original: original.as_bytes(),
        });
        assert!(bytes.is_ascii());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Reporting-MTA: dns; mail.a.test\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; carol@b.test\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.b.test\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(text.contains(
            "Final-Recipient: rfc822; dan@null.test\r\nAction: failed\r\nStatus: 5.1.10\r\n"
        ));
        assert!(
            text.contains("Subject: h??llo\r\nFrom: a@a.test\r\n"),
            "{text}"
        );
        assert!(!text.contains("body must not appear"));
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"));
        assert!(text.trim_end().ends_with("--"));
    }

    #[test]
    fn plain_bounce_names_each_recipient_in_text_and_no_report_fields() {
        let failures = [Failure {
            recipient: "carol@b.test".into(),
            status: "5.1.1".into(),
            remote_mta: Some("mx.b.test".into()),
            smtp_reply: Some("550 5.1.1 no such user".into()),
            reason: "host mx.b.test said: 550 5.1.1 no such user".into(),
        }];
        let original = "Subject: hi\r\nMessage-ID: <m1@a.test>\r\n\r\nbody must not appear\r\n";
        let text = String::from_utf8(compose_plain(&Report {
            hostname: "mail.a.test",
            sender: "alice@a.test",
            queue_id: "Q1",
            arrived: 1_700_000_000,
            failures: &failures,
            original: original.as_bytes(),
        }))
        .unwrap();
        assert!(text.starts_with("From: MAILER-DAEMON@mail.a.test\r\nTo: alice@a.test\r\n"));
        assert!(text.contains("\r\n<carol@b.test>:\r\n550 5.1.1 no such user\r\n"));
        assert!(text.contains("Message-ID: <Q1."), "{text}");
        assert!(text.contains("\r\nMessage-ID: <m1@a.test>\r\n"));
        assert!(!text.contains("body must not appear"));
        assert!(!text.to_ascii_lowercase().contains("multipart"));
        assert!(!text.contains("Final-Recipient"));
    }
}

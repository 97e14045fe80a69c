//! SMTP command lines: no panic; an accepted command written back in canonical form parses to
//! the same command; an error's text, which the reply quotes, holds no line end and leaves
//! the reply within 512 octets (RFC 5321 4.5.3.1.5), as does the EHLO reply greeting a name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_server::smtp::command::{Command, Param, ParseError, parse};

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Ok(command) => {
            if let Command::Ehlo(name) | Command::Helo(name) = &command {
                assert!(name.len() <= 255, "{name}");
            }
            let canonical = format(&command);
            assert_eq!(
                parse(canonical.as_bytes()),
                Ok(command.clone()),
                "{canonical:?} from {:?}",
                String::from_utf8_lossy(line)
            );
        }
        Err(error) => {
            let text = match &error {
                ParseError::UnknownCommand(text)
                | ParseError::Syntax(text)
                | ParseError::BadAddress(text)
                | ParseError::PathTooLong(text) => text,
            };
            assert!(!text.contains(['\r', '\n']), "{error:?}");
            // The longest reply prefix is "501 5.1.3 Bad address syntax: ".
            assert!(text.len() <= 512 - 2 - 31, "{error:?}");
            if let ParseError::UnknownCommand(verb) = &error {
                assert!(verb.chars().count() <= 32, "{error:?}");
            }
        }
    }
});

/// The command as a client that knows the grammar would write it.
fn format(command: &Command) -> String {
    let params = |params: &[Param]| -> String {
        params
            .iter()
            .map(|p| match &p.value {
                Some(value) => format!(" {}={value}", p.keyword),
                None => format!(" {}", p.keyword),
            })
            .collect()
    };
    match command {
        Command::Ehlo(domain) => format!("EHLO {domain}"),
        Command::Helo(domain) => format!("HELO {domain}"),
        Command::Mail { from, params: p } => {
            let path = from.as_ref().map(ToString::to_string).unwrap_or_default();
            format!("MAIL FROM:<{path}>{}", params(p))
        }
        Command::Rcpt { to, params: p } => format!("RCPT TO:<{to}>{}", params(p)),
        Command::Data => "DATA".into(),
        Command::Bdat { size, last: true } => format!("BDAT {size} LAST"),
        Command::Bdat { size, last: false } => format!("BDAT {size}"),
        Command::Rset => "RSET".into(),
        Command::Noop => "NOOP".into(),
        Command::Quit => "QUIT".into(),
        Command::Vrfy(what) => format!("VRFY {what}"),
        Command::Help => "HELP".into(),
        Command::StartTls => "STARTTLS".into(),
        Command::Auth {
            mechanism,
            initial: None,
        } => format!("AUTH {mechanism}"),
        Command::Auth {
            mechanism,
            initial: Some(initial),
        } => format!("AUTH {mechanism} {initial}"),
    }
}

//! POP3 command lines: no panic; the verb is the first word whatever its case; an accepted
//! command written back in canonical form parses to the same command; a refusal quotes the
//! usage of the verb it refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_server::pop3::command::{Command, parse, split};

fuzz_target!(|line: &[u8]| {
    let Some((verb, args)) = split(line) else {
        return;
    };
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    assert_eq!(
        format!("{verb:?}").to_ascii_uppercase().as_bytes(),
        word.to_ascii_uppercase()
    );
    assert_eq!(args, line.get(word.len() + 1..).unwrap_or_default());
    match parse(verb, args) {
        Ok(command) => {
            let canonical = format(&command);
            let (again, args) = split(canonical.as_bytes()).expect("canonical verb");
            assert_eq!(again, verb);
            assert_eq!(
                parse(again, args),
                Ok(command),
                "{canonical:?} from {:?}",
                String::from_utf8_lossy(line)
            );
        }
        Err(usage) => {
            let name = String::from_utf8_lossy(word).to_ascii_uppercase();
            assert!(usage.starts_with(&name), "{usage} for {name}");
        }
    }
});

/// The command as a client that knows the grammar would write it.
fn format(command: &Command) -> String {
    let optional = |n: &Option<u32>| n.map(|n| format!(" {n}")).unwrap_or_default();
    match command {
        Command::Capa => "CAPA".into(),
        Command::User(name) => format!("USER {name}"),
        Command::Pass(password) => format!("PASS {password}"),
        Command::Apop { name, digest } => format!("APOP {name} {digest}"),
        Command::Auth { mechanism, initial } => {
            [Some("AUTH"), mechanism.as_deref(), initial.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        }
        Command::Stls => "STLS".into(),
        Command::Stat => "STAT".into(),
        Command::List(n) => format!("LIST{}", optional(n)),
        Command::Uidl(n) => format!("UIDL{}", optional(n)),
        Command::Retr(n) => format!("RETR {n}"),
        Command::Top { message, lines } => format!("TOP {message} {lines}"),
        Command::Dele(n) => format!("DELE {n}"),
        Command::Noop => "NOOP".into(),
        Command::Rset => "RSET".into(),
        Command::Quit => "QUIT".into(),
    }
}

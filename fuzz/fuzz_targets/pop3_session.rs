//! A whole POP3 session fed arbitrary bytes in arbitrary reads, its requests answered as the
//! server's driver would (TLS pretended, the config's passwords, a fixed three-message maildrop
//! for every account). Whatever comes in: every response is well-formed and multi-line ones
//! are dot-stuffed and terminated, the output stays proportionate to the input, and messages
//! are deleted only by one QUIT after a login. The session's random numbers come from a fixed
//! seed, so that a crash replays exactly.
//!
//! Options: bits 0-1 the listener (STLS, implicit TLS, no TLS); bit 2 APOP on; bit 3 a high
//! error limit, so a session lasts.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use reference_server::auth;
use reference_server::net::Connection;
use reference_server::pop3::session::{Event, Listed, Listing, Session};
use reference_server::{Config, Role, TlsMode};
use reference_server_fuzz::{Input, check_pop3_replies};

const MESSAGES: [(u32, &str); 3] = [
    (
        10,
        "Subject: one\r\nFrom: a@example.test\r\n\r\nline1\r\n.dotted\r\n..two\r\n.\r\n",
    ),
    (11, "Subject: two\r\n\r\nno final crlf"),
    (12, "X-Only: headers\r\n"),
];

struct Driver {
    config: Arc<Config>,
    session: Session,
    output: Vec<u8>,
    updates: usize,
    closed: bool,
}

impl Driver {
    fn run(&mut self, mut event: Event) {
        loop {
            event = match event {
                Event::NeedInput => break,
                Event::Close => {
                    self.closed = true;
                    break;
                }
                Event::StartTls => {
                    self.session.tls_started();
                    self.session.step()
                }
                Event::Authenticate { login, password } => {
                    let verdict = auth::authenticate(&self.config, &login, password.expose());
                    self.session.auth_result(verdict);
                    self.session.step()
                }
                Event::AuthenticateApop {
                    login,
                    timestamp,
                    digest,
                } => {
                    let verdict =
                        auth::authenticate_apop(&self.config, &login, &timestamp, &digest);
                    self.session.auth_result(verdict);
                    self.session.step()
                }
                Event::OpenMaildrop {
                    account, line_ends, ..
                } => {
                    assert!(self.config.account(&account).is_some(), "{account}");
                    let messages = MESSAGES
                        .iter()
                        .map(|(uid, text)| Listed {
                            uid: *uid,
                            size: text.len() as u64,
                            line_ends: if line_ends {
                                text.matches("\r\n").count() as u64
                            } else {
                                0
                            },
                        })
                        .collect();
                    let listing = Listing {
                        uidvalidity: 1,
                        messages,
                    };
                    self.session.maildrop_opened(Ok(listing));
                    self.session.step()
                }
                Event::Retrieve { uid } => {
                    let text = MESSAGES.iter().find(|(u, _)| *u == uid);
                    let text = text.unwrap_or_else(|| panic!("RETR of unlisted uid {uid}"));
                    self.session.retrieved(Ok(text.1.as_bytes().to_vec()));
                    self.session.step()
                }
                Event::Update { account, delete } => {
                    assert!(self.config.account(&account).is_some(), "{account}");
                    assert!(
                        delete
                            .iter()
                            .all(|uid| MESSAGES.iter().any(|m| m.0 == *uid))
                    );
                    self.updates += 1;
                    self.session.update_result(Ok(()));
                    self.session.step()
                }
            };
        }
        self.output.extend(self.session.take_output());
    }
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::parse(bytes);
    let (role, tls_mode) = match input.options & 3 {
        0 => (Role::Pop3, TlsMode::Starttls),
        1 => (Role::Pop3s, TlsMode::Implicit),
        _ => (Role::Pop3, TlsMode::None),
    };
    let mut config = Config::defaults();
    config.pop3.apop = input.option(2);
    if input.option(3) {
        config.limits.max_errors = 1000;
    }
    let config = Arc::new(config);
    let conn = Connection {
        role,
        tls_mode,
        peer: "192.0.2.7:40000".parse().unwrap(),
        pop_before_smtp: None,
        client_dns: None,
    };
    let mut driver = Driver {
        session: Session::new(config.clone(), conn).with_seed(0),
        config,
        output: Vec::new(),
        updates: 0,
        closed: false,
    };
    let event = driver.session.greet();
    driver.run(event);
    assert!(driver.output.starts_with(b"+OK "));
    for chunk in input.chunks() {
        if driver.closed {
            break;
        }
        driver.session.push_input(chunk);
        let event = driver.session.step();
        driver.run(event);
    }
    if let Err(why) = check_pop3_replies(&driver.output) {
        panic!("{why}\n{}", String::from_utf8_lossy(&driver.output));
    }
    // The UPDATE state comes once, from QUIT, and ends the session (RFC 1939 section 6).
    assert!(driver.updates <= 1);
    assert!(driver.updates == 0 || driver.closed);
    assert!(
        driver.updates == 0
            || input
                .data
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"QUIT"))
    );
    // The longest response is a message or a listing, a few hundred octets here.
    let lines = input.data.iter().filter(|&&b| b == b'\n').count();
    let bound = 1024 * (lines + 2 + input.data.len() / 256);
    assert!(
        driver.output.len() <= bound,
        "{} octets out",
        driver.output.len()
    );
});

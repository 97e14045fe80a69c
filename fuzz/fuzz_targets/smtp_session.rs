//! A whole SMTP session fed arbitrary bytes in arbitrary reads, its requests answered as the
//! server's driver would (TLS pretended, the config's passwords, every sender domain fine,
//! every delivery stored). Whatever comes in: every reply is well-formed, the output stays
//! proportionate to the input, a delivered message has no bare CR or LF and goes only to
//! hosted accounts, and mail for other domains is taken only from an authenticated client.
//! The session's random numbers come from a fixed seed, so that a crash replays exactly.
//!
//! Options: bits 0-1 the listener (relay with STARTTLS, submission with STARTTLS, submissions
//! with implicit TLS, relay without TLS); bit 2 a high error limit, so a session lasts; bit 3
//! a 100-octet message size limit.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use reference_server::auth;
use reference_server::net::Connection;
use reference_server::relay::dns::Verdict;
use reference_server::smtp::session::{Envelope, Event, Session};
use reference_server::{Config, Role, TlsMode};
use reference_server_fuzz::{Input, check_smtp_replies};

struct Driver {
    config: Arc<Config>,
    session: Session,
    output: Vec<u8>,
    authenticated: bool,
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
                Event::Delay(_) => self.session.step(),
                Event::StartTls => {
                    self.session.tls_started();
                    self.session.step()
                }
                Event::Authenticate { login, password } => {
                    let verdict = auth::authenticate(&self.config, &login, password.expose());
                    self.authenticated |= verdict.is_some();
                    self.session.auth_result(verdict);
                    self.session.step()
                }
                Event::CheckSenderDomain(domain) => {
                    self.session.sender_verdict(Verdict::Pass(domain));
                    self.session.step()
                }
                Event::Deliver(envelope) => {
                    self.check(&envelope);
                    self.session.delivery_result(&envelope.id, Ok(()));
                    self.session.step()
                }
            };
        }
        self.output.extend(self.session.take_output());
    }

    fn check(&self, envelope: &Envelope) {
        let message = &envelope.message;
        for (i, &b) in message.iter().enumerate() {
            let bare = match b {
                b'\n' => i == 0 || message[i - 1] != b'\r',
                b'\r' => message.get(i + 1) != Some(&b'\n'),
                _ => false,
            };
            assert!(!bare, "bare line end at {i}: {envelope:?}");
        }
        assert!(message.starts_with(b"Return-Path: <"), "{envelope:?}");
        assert!(!envelope.local.is_empty() || !envelope.remote.is_empty());
        assert!(envelope.discarded.is_empty(), "{envelope:?}");
        for local in &envelope.local {
            assert!(self.config.account(local).is_some(), "{envelope:?}");
        }
        // Relaying for an unauthenticated client is the open relay this server must not be.
        assert!(
            envelope.remote.is_empty() || self.authenticated,
            "{envelope:?}"
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::parse(bytes);
    let (role, tls_mode) = match input.options & 3 {
        0 => (Role::Smtp, TlsMode::Starttls),
        1 => (Role::Submission, TlsMode::Starttls),
        2 => (Role::Submissions, TlsMode::Implicit),
        _ => (Role::Smtp, TlsMode::None),
    };
    let mut config = Config::defaults();
    if input.option(2) {
        config.limits.max_errors = 1000;
    }
    if input.option(3) {
        config.limits.message_size = 100;
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
        authenticated: false,
        closed: false,
    };
    let event = driver.session.greet();
    driver.run(event);
    assert!(driver.output.starts_with(b"220 "));
    for chunk in input.chunks() {
        if driver.closed {
            break;
        }
        driver.session.push_input(chunk);
        let event = driver.session.step();
        driver.run(event);
    }
    if let Err(why) = check_smtp_replies(&driver.output) {
        panic!("{why}\n{}", String::from_utf8_lossy(&driver.output));
    }
    // About one reply per line, and one per 4 KiB of an over-long line.
    let lines = input.data.iter().filter(|&&b| b == b'\n').count();
    let bound = 1024 * (lines + 2 + input.data.len() / 4096);
    assert!(
        driver.output.len() <= bound,
        "{} octets out",
        driver.output.len()
    );
});

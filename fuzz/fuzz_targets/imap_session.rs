//! A whole IMAP session fed arbitrary bytes in arbitrary reads, as the server's driver feeds
//! it (TLS pretended, the config's passwords, a fresh store for every input).
//! Whatever comes in: every response line is untagged, a continuation request, or tagged with
//! a tag the client sent, literals included; and the output stays in proportion to the input.
//!
//! Options: bits 0-1 the listener (STARTTLS, implicit TLS, no TLS).
#![no_main]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use reference_server::imap::session::{Event, Session, SystemClock};
use reference_server::net::Connection;
use reference_server::store::Store;
use reference_server::{Config, Role, TlsMode, auth};
use reference_server_fuzz::{Input, check_imap_output};

/// A fresh directory for one input's store, in memory when /dev/shm is there.
fn store_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "imap-session-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Drives the session as the server's driver does, without a socket or a runtime: every chunk
/// is read when the session waits for input (in IDLE too), TLS is pretended.
fn run(config: Arc<Config>, conn: Connection, store: Store, chunks: Vec<&[u8]>) -> Vec<u8> {
    let mut session = Session::new(config.clone(), conn, store, Arc::new(SystemClock));
    let mut event = session.greet();
    let mut out = Vec::new();
    let mut chunks = chunks.into_iter();
    loop {
        out.extend(session.take_output());
        event = match event {
            Event::NeedInput | Event::WaitForChanges { .. } => match chunks.next() {
                Some(chunk) => {
                    session.push_input(chunk);
                    session.step()
                }
                None => return out,
            },
            Event::More => session.step(),
            Event::StartTls => {
                session.tls_started();
                session.step()
            }
            Event::Authenticate { login, password } => {
                let verdict = auth::authenticate(&config, &login, password.expose());
                session.auth_result(verdict);
                session.step()
            }
            Event::Close { .. } => return out,
        };
    }
}

fuzz_target!(|bytes: &[u8]| {
    let input = Input::parse(bytes);
    let (role, tls_mode) = match input.options & 3 {
        0 => (Role::Imap, TlsMode::Starttls),
        1 => (Role::Imaps, TlsMode::Implicit),
        _ => (Role::Imap, TlsMode::None),
    };
    let config = Arc::new(Config::defaults());
    let conn = Connection {
        role,
        tls_mode,
        peer: "192.0.2.7:40000".parse().unwrap(),
        pop_before_smtp: None,
        client_dns: None,
    };
    let dir = store_dir();
    let store = Store::open(&dir).expect("a store");
    let output = run(config, conn, store, input.chunks());
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = check_imap_output(&output, input.data) {
        panic!("{why}\n{}", String::from_utf8_lossy(&output));
    }
    // A FETCH may send every stored message again, so the bound grows with the input.
    let lines = input.data.iter().filter(|&&b| b == b'\n').count();
    let bound = (lines + 2) * (4096 + 2 * input.data.len());
    assert!(output.len() <= bound, "{} octets out", output.len());
});

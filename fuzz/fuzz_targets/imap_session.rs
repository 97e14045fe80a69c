//! A whole IMAP session fed arbitrary bytes in arbitrary reads, through the framer as the
//! server's driver does (TLS pretended, the config's passwords, a fresh store for every input).
//! Whatever comes in: every response line is untagged, a continuation request, or tagged with
//! a tag the client sent, literals included; and the output stays in proportion to the input.
//!
//! Options: bits 0-1 the listener (STARTTLS, implicit TLS, no TLS).
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use reference_server::imap::framing::{Framed, Framer};
use reference_server::imap::session::{Next, Session};
use reference_server::net::Connection;
use reference_server::store::Store;
use reference_server::{Config, Role, TlsMode, auth};
use reference_server_fuzz::{Input, check_imap_output};

/// Largest command line without literals, as the server sets it.
const MAX_LINE: u32 = 64 * 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

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

#[derive(PartialEq)]
enum Mode {
    Commands,
    SaslResponse,
    Idle,
}

async fn run(config: Arc<Config>, conn: Connection, store: Store, chunks: Vec<&[u8]>) -> Vec<u8> {
    let mut session = Session::new(config.clone(), conn, store);
    let max_literal = u32::try_from(config.limits.message_size).unwrap_or(u32::MAX);
    let mut framer = Framer::new(max_literal.saturating_add(MAX_LINE), max_literal);
    let mut out = session.greeting();
    let mut mode = Mode::Commands;
    let mut chunks = chunks.into_iter();
    let check = |session: &mut Session, out: &mut Vec<u8>| {
        if let Some(credentials) = session.take_credentials() {
            let verdict = auth::authenticate(&config, &credentials.login, credentials.password.expose());
            out.extend(session.login_result(verdict));
        }
    };
    loop {
        if session.too_many_errors() {
            out.extend(session.bye("Too many errors, closing connection"));
            return out;
        }
        let framed = if mode == Mode::Commands {
            framer.next_command()
        } else {
            match framer.next_line() {
                Some(line) if mode == Mode::Idle => {
                    out.extend(session.idle_end(&line).await);
                    mode = Mode::Commands;
                    continue;
                }
                Some(line) => {
                    let (reply, next) = session.sasl_response(&line);
                    out.extend(reply);
                    if next == Next::Authenticate {
                        check(&mut session, &mut out);
                    }
                    mode = Mode::Commands;
                    continue;
                }
                None => Framed::NeedMore,
            }
        };
        match framed {
            Framed::NeedMore => match chunks.next() {
                Some(chunk) => framer.push(chunk),
                None => return out,
            },
            Framed::Continue => out.extend_from_slice(b"+ Ready for literal data\r\n"),
            Framed::Reject { tag, reason } => {
                let (status, text) = reason.reply();
                out.extend(session.rejected(tag.as_deref(), status, text));
            }
            Framed::Command(command) => {
                let (reply, mut next) = session.handle(*command).await;
                out.extend(reply);
                while next == Next::More {
                    let (reply, then) = session.resume().await;
                    out.extend(reply);
                    next = then;
                }
                match next {
                    Next::Continue | Next::More => {}
                    Next::Close => return out,
                    Next::Idle => mode = Mode::Idle,
                    Next::SaslResponse => mode = Mode::SaslResponse,
                    Next::Authenticate => check(&mut session, &mut out),
                    Next::StartTls => {
                        framer.discard_pending();
                        session.tls_started();
                    }
                }
            }
        }
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
    let output = runtime().block_on(run(config, conn, store, input.chunks()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = check_imap_output(&output, input.data) {
        panic!("{why}\n{}", String::from_utf8_lossy(&output));
    }
    // A FETCH may send every stored message again, so the bound grows with the input.
    let lines = input.data.iter().filter(|&&b| b == b'\n').count();
    let bound = (lines + 2) * (4096 + 2 * input.data.len());
    assert!(output.len() <= bound, "{} octets out", output.len());
});

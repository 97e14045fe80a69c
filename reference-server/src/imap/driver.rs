//! The IMAP driver: the socket, TLS, the password check and the read deadlines around the
//! sans-I/O [`Session`]. It feeds the client's bytes in, writes what the session says and
//! answers its [`Event`]s; every protocol decision is the session's.
//!
//! It runs on the connection layer ([`crate::net`]: the [`Link`], its STARTTLS, the throttled
//! password check) like the SMTP and POP3 drivers, and keeps the command, data and session time
//! limits with [`SessionClock`]. Unlike theirs, an IMAP step may read or write the store, so
//! every step runs on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::session::{Clock, Event, IDLE_LIMIT, Session};
use crate::clock::SessionClock;
use crate::net::{Connection, Link, Read, Shared, check_password};
use crate::store::Change;

/// The shortest inactivity autologout RFC 3501 5.4 allows for an authenticated IMAP session.
const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);

/// How long a client that does not read may hold a write during IDLE.
const IDLE_SEND_LIMIT: Duration = Duration::from_secs(60);

/// The runtime's clock, so that IDLE's deadlines follow tokio's time (paused in tests) like the
/// driver's own.
#[derive(Debug)]
struct RuntimeClock;

impl Clock for RuntimeClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// How a wait during IDLE ended.
enum Woken {
    Read(std::io::Result<usize>),
    TimedOut,
    Changed,
    Shutdown,
}

/// Runs one IMAP session to its end.
pub(crate) async fn serve(
    mut link: Link,
    conn: Connection,
    shared: &Shared,
) -> std::io::Result<()> {
    let config = &shared.config;
    let idle = link.idle;
    let peer = conn.peer;
    let mut session = Session::new(
        config.clone(),
        conn,
        shared.store.clone(),
        Arc::new(RuntimeClock),
    );
    let mut clock = SessionClock::new(&config.limits);
    let mut event = session.greet();
    // Whether the last event was a wait in IDLE: what follows it is written with IDLE's limit.
    let mut idling = false;
    loop {
        if session.took_input() {
            clock.answered();
        }
        let limit = if idling { IDLE_SEND_LIMIT } else { idle };
        idling = false;
        match event {
            Event::NeedInput => {
                link.stream.send(&session.take_output(), limit).await?;
                if link.stopping() {
                    session.abort("Server shutting down");
                    link.stream.send(&session.take_output(), limit).await?;
                    return Ok(());
                }
                // RFC 3501 5.4: a logged-in client may stay silent for 30 minutes.
                let silence = if session.is_authenticated() {
                    idle.max(AUTOLOGOUT)
                } else {
                    idle
                };
                let (deadline, expiry) = clock.deadline(silence, session.in_literal());
                match link.read(deadline, true).await? {
                    // Shutting down: the next step says BYE.
                    Read::Shutdown => {}
                    Read::TimedOut => {
                        session.abort(expiry.reason());
                        link.stream.send(&session.take_output(), limit).await?;
                        return Ok(());
                    }
                    Read::Closed => {
                        tracing::debug!(%peer, "client closed the connection");
                        return Ok(());
                    }
                    Read::Data(bytes) => {
                        clock.received();
                        session.push_input(bytes);
                    }
                }
            }
            Event::More => link.stream.send(&session.take_output(), limit).await?,
            Event::StartTls => {
                link.stream.send(&session.take_output(), limit).await?;
                if !link.upgrade(shared).await? {
                    return Ok(());
                }
                session.tls_started();
            }
            Event::Authenticate { login, password } => {
                link.stream.send(&session.take_output(), limit).await?;
                let verdict = check_password(shared, peer, login, password).await;
                session.auth_result(verdict);
                link.stream.send(&session.take_output(), limit).await?;
            }
            Event::WaitForChanges { watch, until } => {
                link.stream.send(&session.take_output(), limit).await?;
                idling = true;
                // One IDLE may last IDLE_LIMIT (the session ends it then); the session's own
                // limits (its total time, a DONE line sent a byte at a time) still hold, or
                // renewing IDLE would keep a session forever.
                let (deadline, expiry) = clock.deadline(IDLE_LIMIT, false);
                let until = tokio::time::Instant::from_std(until);
                let ours = deadline < until;
                let Link {
                    stream,
                    shutdown,
                    buf,
                    ..
                } = &mut link;
                let woken = tokio::select! {
                    read = tokio::time::timeout_at(deadline.min(until), stream.read(buf)) => {
                        read.map_or(Woken::TimedOut, Woken::Read)
                    }
                    () = notified(watch) => Woken::Changed,
                    () = async {
                        // The guard `wait_for` returns must not live across a send.
                        let _ = shutdown.wait_for(|stop| *stop).await;
                    } => Woken::Shutdown,
                };
                match woken {
                    Woken::Read(Ok(0)) => return Ok(()),
                    Woken::Read(Ok(n)) => {
                        clock.received();
                        session.push_input(&link.buf[..n]);
                    }
                    Woken::Read(Err(error)) => return Err(error),
                    // The session's instant: it polls, or ends IDLE.
                    Woken::TimedOut if !ours => {}
                    Woken::TimedOut => {
                        session.abort(expiry.reason());
                        link.stream
                            .send(&session.take_output(), IDLE_SEND_LIMIT)
                            .await?;
                        return Ok(());
                    }
                    Woken::Changed => session.changed(),
                    Woken::Shutdown => {
                        session.abort("Server shutting down");
                        link.stream
                            .send(&session.take_output(), IDLE_SEND_LIMIT)
                            .await?;
                        return Ok(());
                    }
                }
            }
            Event::Close { graceful } => {
                link.stream.send(&session.take_output(), limit).await?;
                if graceful {
                    let _ = tokio::time::timeout(idle, link.stream.shutdown()).await;
                }
                return Ok(());
            }
        }
        (session, event) = step(session).await?;
    }
}

/// Waits for a change notification; forever without a receiver. Any outcome (a change, a lag,
/// the end of the channel) is news for the session, which reads its own receiver.
async fn notified(watch: Option<broadcast::Receiver<Change>>) {
    match watch {
        Some(mut watch) => {
            let _ = watch.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Steps the session on the blocking pool, where its store calls may wait on SQLite.
async fn step(mut session: Session) -> std::io::Result<(Session, Event)> {
    tokio::task::spawn_blocking(move || {
        let event = session.step();
        (session, event)
    })
    .await
    .map_err(|join| std::io::Error::other(format!("IMAP session task failed: {join}")))
}

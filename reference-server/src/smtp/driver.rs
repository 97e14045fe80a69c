//! The SMTP driver: runs a [`Session`] on a client connection. It moves bytes, keeps time and
//! runs what the session asks for (the TLS handshake, password checks, DNS, storing mail); the
//! session makes every protocol decision.

use std::io;
use std::sync::Arc;

use tokio::time::Instant;

use crate::clock::{Expiry, SessionClock};
use crate::net::{self, Connection, Link, Read, SHUTDOWN_GRACE, Shared};
use crate::smtp::session::{Envelope, Event, Session};
use crate::store::{Incoming, StoreError};

/// Runs one SMTP session to its end.
pub(crate) async fn serve(mut link: Link, conn: Connection, shared: &Shared) -> io::Result<()> {
    let config = &shared.config;
    let peer = conn.peer;
    let mut session = Session::new(config.clone(), conn).with_ack_count(shared.acked.clone());
    let mut clock = SessionClock::new(&config.limits);
    let mut grace_deadline: Option<Instant> = None;
    let mut event = session.greet();
    loop {
        event = match event {
            Event::NeedInput => {
                link.answer(&session.take_output(), &mut clock).await?;
                let stopping = link.stopping();
                if stopping {
                    let grace =
                        *grace_deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
                    if session.shutting_down(Instant::now() >= grace) {
                        event = session.step();
                        continue;
                    }
                }
                let (limit, expiry) = clock.deadline(link.idle, session.in_message_data());
                let deadline = grace_deadline.map_or(limit, |grace| grace.min(limit));
                match link.read(deadline, !stopping).await? {
                    Read::TimedOut if grace_deadline.is_some() => {
                        session.shutting_down(true);
                    }
                    Read::TimedOut => {
                        if expiry != Expiry::Idle {
                            tracing::info!(%peer, ?expiry, "session time limit");
                        }
                        session.abort("4.4.2", expiry.reason());
                    }
                    Read::Closed => {
                        tracing::debug!(%peer, "client closed the connection");
                        return Ok(());
                    }
                    Read::Data(bytes) => {
                        clock.received();
                        session.push_input(bytes);
                    }
                    Read::Shutdown => {}
                }
                session.step()
            }
            Event::Delay(delay) => {
                tokio::time::sleep(delay).await;
                session.step()
            }
            Event::StartTls => match link.start_tls(shared, &mut session).await? {
                Some(next) => next,
                None => return Ok(()),
            },
            Event::Authenticate { login, password } => {
                net::authenticate(shared, peer, &mut session, login, password).await
            }
            Event::CheckSenderDomain(domain) => {
                link.send(&session.take_output()).await?;
                let verdict = shared.dns.check_sender_domain(&domain).await;
                session.sender_verdict(verdict);
                session.step()
            }
            Event::Deliver(envelope) => {
                // Shared with the blocking task that stores it, without copying the message.
                let envelope = Arc::new(envelope);
                let result = store(shared, envelope.clone()).await;
                session.delivery_result(&envelope.id, result);
                session.step()
            }
            Event::Close => return link.close(&session.take_output()).await,
        };
    }
}

/// Stores an accepted message for its local accounts and the relay queue.
async fn store(shared: &Shared, envelope: Arc<Envelope>) -> Result<(), StoreError> {
    let copy = envelope.clone();
    let store = shared.store.clone();
    let result = net::blocking(move || {
        // Usually one copy; with per-recipient trace fields, one per such recipient, stored
        // one after the other.
        copy.copies().iter().try_for_each(|part| {
            store
                .accept(&Incoming {
                    sender: &copy.sender,
                    local: &part.local,
                    remote: &part.remote,
                    message: &part.message,
                    queue_id: &copy.id,
                })
                .map(drop)
        })
    })
    .await;
    if result.is_ok() {
        envelope.log_accepted();
        if !envelope.remote.is_empty() {
            shared.relay.wake();
        }
    }
    result
}

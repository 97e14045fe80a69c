//! The POP3 driver: runs a [`Session`] on a client connection. It moves bytes, keeps time and
//! runs what the session asks for (the TLS handshake, password checks, the maildrop); the
//! session makes every protocol decision.

use std::io;
use std::net::SocketAddr;

use crate::access::MaildropGuard;
use crate::clock::SessionClock;
use crate::net::{self, Connection, Link, Read, Shared, blocking};
use crate::pop3::session::{Event, Listed, Listing, MaildropError, Session};
use crate::store::{INBOX, StoreError};

/// Runs one POP3 session to its end. The maildrop lock is held from login until the session
/// ends in any way; deletions happen only when the session asks for them.
pub(crate) async fn serve(mut link: Link, conn: Connection, shared: &Shared) -> io::Result<()> {
    let config = &shared.config;
    let peer = conn.peer;
    let mut session = Session::new(config.clone(), conn);
    let mut clock = SessionClock::new(&config.limits);
    let mut lock: Option<MaildropGuard> = None;
    let mut event = session.greet();
    loop {
        event = match event {
            Event::NeedInput => {
                link.answer(&session.take_output(), &mut clock).await?;
                if link.stopping() {
                    session.shut_down();
                    event = session.step();
                    continue;
                }
                let (deadline, expiry) = clock.deadline(link.idle, false);
                match link.read(deadline, true).await {
                    Ok(Read::Shutdown) => {}
                    Ok(Read::TimedOut) => session.abort(expiry.reason()),
                    Ok(Read::Closed) => {
                        tracing::debug!(%peer, "client closed the connection");
                        hang_up(shared, peer, &mut session).await;
                        return Ok(());
                    }
                    Ok(Read::Data(bytes)) => {
                        clock.received();
                        session.push_input(bytes);
                    }
                    Err(error) => {
                        hang_up(shared, peer, &mut session).await;
                        return Err(error);
                    }
                }
                session.step()
            }
            Event::Authenticate { login, password } => {
                net::authenticate(shared, peer, &mut session, login, password).await
            }
            Event::AuthenticateApop {
                login,
                timestamp,
                digest,
            } => {
                let verdict = net::check_apop(shared, peer, &login, &timestamp, &digest).await;
                session.auth_result(verdict);
                session.step()
            }
            Event::StartTls => match link.start_tls(shared, &mut session).await? {
                Some(next) => next,
                None => return Ok(()),
            },
            Event::OpenMaildrop {
                account,
                lock: locking,
                line_ends,
            } => {
                let opened = open_maildrop(shared, &account, locking, line_ends, &mut lock).await;
                if opened.is_ok()
                    && let Some(grants) = &shared.pop_before_smtp
                {
                    grants.grant(peer.ip(), &account, std::time::Instant::now());
                }
                session.maildrop_opened(opened);
                session.step()
            }
            Event::Retrieve { uid } => {
                let store = shared.store.clone();
                let account = session.account().unwrap_or_default().to_owned();
                let read = blocking(move || store.read_message(&account, INBOX, uid)).await;
                session.retrieved(read);
                // Sent now rather than with the next read: a client that pipelines RETR for a
                // whole maildrop must not make the server hold it all in memory.
                link.send(&session.take_output()).await?;
                session.step()
            }
            Event::Update { account, delete } => {
                let removed = update(shared, peer, &account, delete).await;
                // The UPDATE state is over: release the maildrop before the client hears "+OK",
                // so that it can log in again at once.
                drop(lock.take());
                session.update_result(removed);
                session.step()
            }
            Event::Close => {
                drop(lock.take());
                return link.close(&session.take_output()).await;
            }
        };
    }
}

/// Locks (when asked) and lists a maildrop for a POP3 session that has just logged in; the
/// lock is released again when the listing fails.
async fn open_maildrop(
    shared: &Shared,
    account: &str,
    locking: bool,
    line_ends: bool,
    lock: &mut Option<MaildropGuard>,
) -> Result<Listing, MaildropError> {
    if locking {
        match shared.maildrops.try_lock(account) {
            Some(guard) => *lock = Some(guard),
            None => return Err(MaildropError::InUse),
        }
    }
    let store = shared.store.clone();
    let owner = account.to_owned();
    let listed = blocking(move || {
        let uidvalidity = store.mailbox_status(&owner, INBOX)?.uidvalidity;
        let mut messages = Vec::new();
        for message in store.messages(&owner, INBOX)? {
            let line_ends = if line_ends {
                let octets = store.read_message(&owner, INBOX, message.uid)?;
                octets.windows(2).filter(|w| w == b"\r\n").count() as u64
            } else {
                0
            };
            messages.push(Listed {
                uid: message.uid,
                size: message.size,
                line_ends,
            });
        }
        Ok(Listing {
            uidvalidity,
            messages,
        })
    })
    .await;
    listed.map_err(|why| {
        *lock = None;
        MaildropError::Unavailable(why)
    })
}

/// Deletes messages from a maildrop (the UPDATE state).
async fn update(
    shared: &Shared,
    peer: SocketAddr,
    account: &str,
    delete: Vec<u32>,
) -> Result<(), StoreError> {
    let store = shared.store.clone();
    let owner = account.to_owned();
    let removed = blocking(move || store.expunge(&owner, INBOX, &delete)).await;
    match &removed {
        Ok(uids) => tracing::info!(%peer, account, deleted = uids.len(), "POP3 update"),
        Err(why) => tracing::error!(%peer, account, "POP3 update failed: {why}"),
    }
    removed.map(drop)
}

/// The client is gone: runs the update the session may still ask for.
async fn hang_up(shared: &Shared, peer: SocketAddr, session: &mut Session) {
    if let Event::Update { account, delete } = session.disconnected() {
        let removed = update(shared, peer, &account, delete).await;
        session.update_result(removed);
    }
}

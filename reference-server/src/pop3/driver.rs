//! The POP3 driver: runs a [`Session`] on a client connection. It moves bytes, keeps time and
//! runs what the session asks for (the TLS handshake, password checks, the maildrop); the
//! session makes every protocol decision.

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::access::MaildropGuard;
use crate::clock::SessionClock;
use crate::faults::Policy;
use crate::net::{self, Connection, Link, Read, Shared, blocking};
use crate::pop3::session::{Event, MaildropEntry, MaildropError, Session};
use crate::store::INBOX;

/// Runs one POP3 session to its end. The maildrop lock is held from login until the session
/// ends in any way; deletions happen only when the session asks for them.
pub(crate) async fn serve(
    tcp: TcpStream,
    conn: Connection,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let config = &shared.config;
    let Some(mut link) = Link::open(tcp, conn.tls_mode, shared, shutdown).await? else {
        return Ok(());
    };
    let idle = link.idle;
    let peer = conn.peer;
    let mut session = Session::new(config.clone(), conn);
    let mut clock = SessionClock::new(&config.limits);
    let mut lock: Option<MaildropGuard> = None;
    let mut event = session.greet();
    loop {
        event = match event {
            Event::NeedInput => {
                let output = session.take_output();
                if !output.is_empty() {
                    clock.answered();
                }
                link.send(&output).await?;
                if link.stopping() {
                    session.abort("[SYS/TEMP] Server shutting down");
                    event = session.step();
                    continue;
                }
                let (deadline, expiry) = clock.deadline(idle, false);
                match link.read(deadline, true).await {
                    Ok(Read::Shutdown) => {}
                    Ok(Read::TimedOut) => session.abort(expiry.reason()),
                    Ok(Read::Closed) => {
                        tracing::debug!(%peer, "client closed the connection");
                        update_on_disconnect(shared, &session).await;
                        return Ok(());
                    }
                    Ok(Read::Data(bytes)) => {
                        clock.received();
                        session.push_input(bytes);
                    }
                    Err(error) => {
                        update_on_disconnect(shared, &session).await;
                        return Err(error);
                    }
                }
                session.step()
            }
            Event::StartTls => {
                link.send(&session.take_output()).await?;
                if !link.start_tls(shared).await? {
                    return Ok(());
                }
                session.tls_started();
                session.step()
            }
            Event::Authenticate { login, password } => {
                let verdict = net::check_password(shared, peer, login, password).await;
                session.auth_result(verdict);
                session.step()
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
            Event::OpenMaildrop { account } => {
                let opened = open_maildrop(shared, &account, &mut lock).await;
                if opened.is_ok() {
                    tracing::info!(%peer, account, "POP3 login");
                    if let Some(grants) = &shared.pop_before_smtp {
                        grants.grant(peer.ip(), &account, std::time::Instant::now());
                    }
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
                let store = shared.store.clone();
                let owner = account.clone();
                let removed = blocking(move || store.expunge(&owner, INBOX, &delete)).await;
                match &removed {
                    Ok(uids) => tracing::info!(%peer, account, deleted = uids.len(), "POP3 update"),
                    Err(why) => tracing::error!(%peer, account, "POP3 update failed: {why}"),
                }
                // The UPDATE state is over: release the maildrop before the client hears "+OK",
                // so that it can log in again at once.
                drop(lock.take());
                session.update_result(removed.map(drop));
                session.step()
            }
            Event::Close => {
                drop(lock.take());
                return link.close(&session.take_output()).await;
            }
        };
    }
}

/// Locks and lists a maildrop for a POP3 session that has just logged in.
async fn open_maildrop(
    shared: &Shared,
    account: &str,
    lock: &mut Option<MaildropGuard>,
) -> Result<Vec<MaildropEntry>, MaildropError> {
    if shared.config.faults.has(Policy::Pop3NoLock) {
        tracing::warn!(account, "FAULT pop3_no_lock: not locking the maildrop");
    } else {
        match shared.maildrops.try_lock(account) {
            Some(guard) => *lock = Some(guard),
            None => return Err(MaildropError::InUse),
        }
    }
    let store = shared.store.clone();
    let owner = account.to_owned();
    let faults = shared.config.faults.clone();
    let listed = blocking(move || {
        let status = store.mailbox_status(&owner, INBOX)?;
        let mut messages = store.messages(&owner, INBOX)?;
        if faults.has(Policy::Pop3SizesWithoutCr) {
            tracing::warn!("FAULT pop3_sizes_without_cr: reporting sizes without CRs");
            for message in &mut messages {
                let octets = store.read_message(&owner, INBOX, message.uid)?;
                let crlfs = octets.windows(2).filter(|w| w == b"\r\n").count();
                message.size -= crlfs as u64;
            }
        }
        Ok((status.uidvalidity, messages))
    })
    .await;
    // UIDVALIDITY and UID together never repeat (the store hands out neither twice).
    let nonce = if shared.config.faults.has(Policy::Pop3UidlUnstable) {
        tracing::warn!("FAULT pop3_uidl_unstable: new UIDL values for this session");
        format!(".{}", fastrand::u32(..))
    } else {
        String::new()
    };
    match listed {
        Ok((uidvalidity, messages)) => Ok(messages
            .into_iter()
            .map(|m| MaildropEntry {
                uid: m.uid,
                size: m.size,
                uidl: format!("{uidvalidity}.{}{nonce}", m.uid),
            })
            .collect()),
        Err(why) => {
            *lock = None;
            tracing::error!(account, "cannot open maildrop: {why}");
            Err(MaildropError::Unavailable(why))
        }
    }
}

/// The `pop3_update_on_disconnect` fault: a client that drops the connection still has its
/// DELE marks applied. Correct servers delete only at QUIT (RFC 1939 section 6).
async fn update_on_disconnect(shared: &Shared, session: &Session) {
    if !shared.config.faults.has(Policy::Pop3UpdateOnDisconnect) {
        return;
    }
    let Some((account, uids)) = session.marked().filter(|(_, uids)| !uids.is_empty()) else {
        return;
    };
    tracing::warn!(
        account,
        "FAULT pop3_update_on_disconnect: deleting without QUIT"
    );
    let store = shared.store.clone();
    if let Err(why) = blocking(move || store.expunge(&account, INBOX, &uids)).await {
        tracing::error!("FAULT pop3_update_on_disconnect: {why}");
    }
}

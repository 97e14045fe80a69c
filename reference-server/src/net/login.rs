//! The password check every protocol uses: off the executor, failures logged and delayed by
//! the login throttle, and a good password resets the throttle.

use std::net::SocketAddr;

use super::{Driven, Shared};
use crate::auth::{self, Password};
use crate::faults::Policy;

/// Checks the credentials a session asked about and hands it the verdict; its next event.
pub(crate) async fn authenticate<S: Driven>(
    shared: &Shared,
    peer: SocketAddr,
    session: &mut S,
    login: String,
    password: Password,
) -> S::Event {
    let verdict = check_password(shared, peer, login, password).await;
    session.auth_result(verdict);
    session.step()
}

/// Checks a login name and password; the canonical account on success.
pub(crate) async fn check_password(
    shared: &Shared,
    peer: SocketAddr,
    login: String,
    password: Password,
) -> Option<String> {
    let config = shared.config.clone();
    let name = login.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        // Argon2 is slow on purpose: not on the executor.
        if config.faults.has(Policy::AnyPassword) {
            tracing::warn!("FAULT any_password: not checking the password of {name}");
            return config.account(&name).map(|a| a.address.clone());
        }
        auth::authenticate(&config, &name, password.expose())
    })
    .await
    .ok()
    .flatten();
    throttled(shared, peer, &login, verdict).await
}

/// Checks an APOP digest (RFC 1939 section 7); the canonical account on success.
pub(crate) async fn check_apop(
    shared: &Shared,
    peer: SocketAddr,
    login: &str,
    timestamp: &str,
    digest: &str,
) -> Option<String> {
    let verdict = auth::authenticate_apop(&shared.config, login, timestamp, digest);
    throttled(shared, peer, login, verdict).await
}

/// Resets the throttle after a good password; logs a failed login and waits the throttle's
/// delay before the session may answer it.
async fn throttled(
    shared: &Shared,
    peer: SocketAddr,
    login: &str,
    verdict: Option<String>,
) -> Option<String> {
    let Some(account) = verdict else {
        login_failed(shared, peer, login).await;
        return None;
    };
    shared.throttle.success(&account, peer.ip());
    Some(account)
}

async fn login_failed(shared: &Shared, peer: SocketAddr, login: &str) {
    if shared.config.faults.has(Policy::NoAuthThrottle) {
        tracing::warn!(%peer, login, "FAULT no_auth_throttle: login failed, answering at once");
        return;
    }
    // Counted per existing account; every unknown login shares one count, so that made-up
    // names cannot grow the throttle's memory.
    let account = shared
        .config
        .account(login)
        .map_or("<unknown account>", |a| a.address.as_str());
    let delay = shared
        .throttle
        .failure(account, peer.ip(), std::time::Instant::now());
    tracing::warn!(%peer, login, delay_ms = delay.as_millis(), "login failed");
    tokio::time::sleep(delay).await;
}

//! Relay to other domains: the outbound queue's worker.
//!
//! Mail for a domain we do not host, from an authenticated client, is queued in the store with
//! its 250 reply ([`crate::store::Store::accept`]). This worker takes due recipients, grouped by
//! message and domain, finds the domain's mail hosts in the DNS ([`dns::Dns::route`]) and hands
//! the message to the first that takes it ([`client::deliver`]). A temporary failure is retried
//! on the configured schedule until the message is older than the age limit; a permanent failure
//! or expiry returns a delivery status notification ([`dsn`]) to the sender, filed in the same
//! store transaction that removes the recipient, so a crash can neither lose nor repeat it.

pub mod client;
pub mod dns;
pub mod dsn;
pub mod reply;
pub mod transaction;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use crate::config::Config;
use crate::faults::Policy;
use crate::store::{Incoming, OutboundJob, Settle, Store, now_ms};
use crate::variants::Variant;

use self::client::{AttemptSettings, Outcome, Reply};
use self::dns::{Dns, RouteError};
use self::dsn::Failure;

/// Recipients read from the queue per pass.
const BATCH: usize = 500;
/// Longest sleep between queue scans when nothing wakes the worker.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// A handle for waking the relay when new mail was queued.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// New mail is in the queue.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Starts the relay worker; it stops when `shutdown` turns true, abandoning attempts in
/// progress (their recipients stay queued and are tried again after a restart).
pub fn spawn(
    config: Arc<Config>,
    store: Store,
    dns: Dns,
    mut shutdown: watch::Receiver<bool>,
) -> Waker {
    let waker = Waker::default();
    let worker = Worker {
        config: config.clone(),
        store,
        dns,
        waker: waker.clone(),
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        slots: Arc::new(Semaphore::new(config.relay.concurrency)),
    };
    tokio::spawn(async move {
        tokio::select! {
            () = worker.run() => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    });
    waker
}

#[derive(Clone)]
struct Worker {
    config: Arc<Config>,
    store: Store,
    dns: Dns,
    waker: Waker,
    /// (message id, domain) of the deliveries in progress.
    in_flight: Arc<Mutex<HashSet<(i64, String)>>>,
    slots: Arc<Semaphore>,
}

impl Worker {
    async fn run(self) {
        loop {
            let now = now_ms();
            let store = self.store.clone();
            let due = tokio::task::spawn_blocking(move || {
                Ok::<_, crate::store::StoreError>((
                    store.due_outbound(now, BATCH)?,
                    store.next_outbound_due()?,
                ))
            })
            .await;
            let (jobs, next) = match due {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => {
                    tracing::error!("relay: cannot read the outbound queue: {e}");
                    (Vec::new(), Some(now + 5_000))
                }
                Err(e) => {
                    tracing::error!("relay: queue scan failed: {e}");
                    (Vec::new(), Some(now + 5_000))
                }
            };
            for job in jobs {
                let key = (job.message_id, job.domain.to_ascii_lowercase());
                if !self.lock_in_flight().insert(key.clone()) {
                    continue;
                }
                let Ok(permit) = self.slots.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.attempt(job).await;
                    worker.lock_in_flight().remove(&key);
                    drop(permit);
                    worker.waker.wake();
                });
            }
            // Sleep until the next recipient is due; one that is due already is in flight, and
            // its task wakes us when it ends.
            let wait = match next {
                Some(at) if at > now_ms() => {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_IDLE)
                }
                Some(_) => MAX_IDLE.min(Duration::from_secs(1)),
                None => MAX_IDLE,
            };
            let _ = tokio::time::timeout(wait, self.waker.0.notified()).await;
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<(i64, String)>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One attempt at the due recipients of one message in one domain, and its bookkeeping.
    async fn attempt(&self, job: OutboundJob) {
        let store = self.store.clone();
        let blob = job.blob.clone();
        let body = match tokio::task::spawn_blocking(move || store.outbound_body(&blob)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                tracing::error!(
                    id = job.queue_id,
                    "relay: cannot read the queued message: {e}"
                );
                return self
                    .settle(&job, &[], all_temporary(&job, &format!("local error: {e}")))
                    .await;
            }
            Err(e) => {
                tracing::error!(id = job.queue_id, "relay: {e}");
                return;
            }
        };
        let body = without_return_path(body);
        let results = self.try_hosts(&job, &body).await;
        self.settle(&job, &body, results).await;
    }

    /// Tries the domain's hosts in order until one runs the transaction.
    async fn try_hosts(&self, job: &OutboundJob, body: &[u8]) -> Vec<(String, Verdict)> {
        let relay = &self.config.relay;
        let ignore_preference = self.config.faults.has(Policy::RelayIgnoresMxPreference);
        let faults = &self.config.faults;
        let implicit_mx = !faults.has(Policy::RelayNoImplicitMx);
        let hops = match self
            .dns
            .route_with(&job.domain, ignore_preference, implicit_mx)
            .await
        {
            Ok(hops) => hops,
            Err(e) => {
                let verdict = match &e {
                    RouteError::Temporary { .. } => Verdict::Temporary(e.to_string()),
                    RouteError::NullMx(_) => Verdict::permanent("5.1.10", e.to_string()),
                    RouteError::NoSuchDomain(_) | RouteError::NoMailHost(_) => {
                        Verdict::permanent("5.1.2", e.to_string())
                    }
                };
                return with_all(job, verdict);
            }
        };
        // RFC 5321 5.1: never deliver to ourselves; a route that only leads back here is a loop.
        let mut hops: Vec<_> = hops
            .into_iter()
            .filter(|h| !h.host.eq_ignore_ascii_case(&self.config.hostname))
            .collect();
        if faults.has(Policy::RelayFirstMxOnly) {
            hops.truncate(1);
        }
        if hops.is_empty() {
            return with_all(
                job,
                Verdict::permanent(
                    "5.4.6",
                    format!("mail for {} loops back to myself", job.domain),
                ),
            );
        }
        let recipients: Vec<String> = job.recipients.iter().map(|r| r.address.clone()).collect();
        let settings = AttemptSettings {
            helo: self.config.hostname.clone(),
            tls: relay.tls,
            connect_timeout: Duration::from_secs(relay.connect_timeout_secs),
            command_timeout: Duration::from_secs(relay.command_timeout_secs),
            source: relay.source_address,
        };
        let mut last_error = String::new();
        for hop in &hops {
            let addresses = match self.dns.host_addresses(&hop.host).await {
                Ok(found) => found,
                Err(why) => {
                    tracing::info!(id = job.queue_id, host = hop.host, "relay: {why}");
                    last_error = why.to_string();
                    continue;
                }
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, relay.port);
                let outcome =
                    client::deliver(addr, &hop.host, &settings, &job.sender, &recipients, body)
                        .await;
                let mta = format!("{}[{}]", hop.host, ip);
                match outcome {
                    Outcome::NextHop(why) => {
                        tracing::info!(id = job.queue_id, relay = mta, "relay: {why}");
                        last_error = why.to_string();
                    }
                    Outcome::Refused(reply) => {
                        return with_all(job, Verdict::from_reply(&hop.host, &mta, &reply));
                    }
                    Outcome::Transaction(results) => {
                        return results
                            .into_iter()
                            .map(|(rcpt, result)| {
                                let verdict = match result {
                                    Ok(reply) => Verdict::Delivered(format!("{mta} said: {reply}")),
                                    Err(reply) => Verdict::from_reply(&hop.host, &mta, &reply),
                                };
                                (rcpt.clone(), verdict.for_recipient(&rcpt))
                            })
                            .collect();
                    }
                }
            }
        }
        with_all(job, Verdict::Temporary(last_error))
    }

    /// Records what happened: delivered and permanently failed recipients leave the queue (the
    /// latter with a bounce), temporary failures are rescheduled or, past the age limit, bounced.
    async fn settle(&self, job: &OutboundJob, body: &[u8], results: Vec<(String, Verdict)>) {
        let relay = &self.config.relay;
        let now = now_ms();
        let expired_at = job.arrived.saturating_mul(1000).saturating_add(
            i64::try_from(relay.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let no_retry = self.config.faults.has(Policy::RelayNoRetry);
        let no_bounce = self.config.faults.has(Policy::RelayNoBounce);
        let mut outcomes: Vec<(String, Settle)> = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        for (recipient, verdict) in results {
            let queued = job.recipients.iter().find(|r| r.address == recipient);
            match verdict {
                Verdict::Delivered(how) => {
                    tracing::info!(id = job.queue_id, to = recipient, "relayed: {how}");
                    outcomes.push((recipient, Settle::Done));
                }
                Verdict::Permanent(failure) => {
                    tracing::info!(
                        id = job.queue_id,
                        to = recipient,
                        status = failure.status,
                        "bounced: {}",
                        failure.reason
                    );
                    outcomes.push((recipient, Settle::Done));
                    failures.push(failure);
                }
                Verdict::Temporary(why) if no_retry => {
                    tracing::warn!(
                        id = job.queue_id,
                        to = recipient,
                        "FAULT relay_no_retry: dropping after a temporary failure: {why}"
                    );
                    outcomes.push((recipient, Settle::Done));
                }
                Verdict::Temporary(why) if now >= expired_at => {
                    tracing::info!(id = job.queue_id, to = recipient, "expired: {why}");
                    outcomes.push((recipient.clone(), Settle::Done));
                    failures.push(Failure {
                        recipient,
                        status: "4.4.7".into(),
                        remote_mta: None,
                        smtp_reply: None,
                        reason: format!(
                            "delivery time expired after {} s in the queue; last error: {why}",
                            relay.max_age_secs
                        ),
                    });
                }
                Verdict::Temporary(why) => {
                    let attempts = queued.map_or(0, |r| r.attempts) as usize;
                    let delay = relay.retry_secs[attempts.min(relay.retry_secs.len() - 1)];
                    let delay_ms = i64::try_from(delay.saturating_mul(1000)).unwrap_or(i64::MAX);
                    // The last attempt is made at the age limit, so expiry is on time.
                    let at = now.saturating_add(delay_ms).min(expired_at.max(now + 1));
                    tracing::info!(
                        id = job.queue_id,
                        to = recipient,
                        retry_in_ms = at - now,
                        "deferred: {why}"
                    );
                    outcomes.push((
                        recipient,
                        Settle::Retry {
                            at_ms: at,
                            error: why,
                        },
                    ));
                }
            }
        }
        let bounce = (!failures.is_empty() && !job.sender.is_empty()).then(|| {
            let report = dsn::Report {
                hostname: &self.config.hostname,
                sender: &job.sender,
                queue_id: &job.queue_id,
                arrived: job.arrived,
                failures: &failures,
                original: body,
            };
            if self.config.variants.has(Variant::RelayPlainBounces)
                || self.config.faults.has(Policy::DsnPlainBounces)
            {
                dsn::compose_plain(&report)
            } else {
                dsn::compose(&report)
            }
        });
        let bounce = match bounce {
            Some(_) if no_bounce => {
                tracing::warn!(
                    id = job.queue_id,
                    "FAULT relay_no_bounce: the sender is not told of {} failed recipient(s)",
                    failures.len()
                );
                None
            }
            other => other,
        };
        let store = self.store.clone();
        let config = self.config.clone();
        let message_id = job.message_id;
        let sender = job.sender.clone();
        let dsn_id = format!("{}-DSN", job.queue_id);
        let result = tokio::task::spawn_blocking(move || {
            let settled: Vec<(&str, Settle)> = outcomes
                .iter()
                .map(|(r, s)| (r.as_str(), s.clone()))
                .collect();
            let local_sender = config.account(&sender).map(|a| a.address.clone());
            let (local, remote): (Vec<&str>, Vec<&str>) = match &local_sender {
                Some(account) => (vec![account.as_str()], Vec::new()),
                None => (Vec::new(), vec![sender.as_str()]),
            };
            // Filing in a local mailbox is final delivery, which records the (null) reverse
            // path (RFC 5321 4.4); a bounce relayed elsewhere gets it from the final server.
            let bounce = bounce.map(|message| match local_sender {
                Some(_) => [
                    crate::smtp::trace::return_path(&config.variants, "").as_bytes(),
                    &message,
                ]
                .concat(),
                None => message,
            });
            let incoming = bounce.as_ref().map(|message| Incoming {
                sender: "",
                local: &local,
                remote: &remote,
                message,
                queue_id: &dsn_id,
            });
            store.settle_outbound(message_id, &settled, incoming.as_ref())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(id = job.queue_id, "relay: cannot record the attempt: {e}")
            }
            Err(e) => tracing::error!(id = job.queue_id, "relay: {e}"),
        }
    }
}

/// What one attempt meant for one recipient.
#[derive(Debug, Clone)]
enum Verdict {
    Delivered(String),
    Permanent(Failure),
    Temporary(String),
}

impl Verdict {
    fn permanent(status: &str, reason: String) -> Verdict {
        Verdict::Permanent(Failure {
            recipient: String::new(),
            status: status.to_owned(),
            remote_mta: None,
            smtp_reply: None,
            reason,
        })
    }

    /// A refusal by a server: 5xx is permanent, 4xx temporary.
    fn from_reply(host: &str, mta: &str, reply: &Reply) -> Verdict {
        let text = reply.lines.join(" ");
        if reply.code >= 500 {
            Verdict::Permanent(Failure {
                recipient: String::new(),
                status: dsn::status_of(reply.code, &text),
                remote_mta: Some(host.to_owned()),
                smtp_reply: Some(reply.to_string()),
                reason: format!("host {mta} said: {reply}"),
            })
        } else {
            Verdict::Temporary(format!("host {mta} said: {reply}"))
        }
    }
}

impl Verdict {
    /// The verdict with its failure report naming `recipient`.
    fn for_recipient(mut self, recipient: &str) -> Verdict {
        if let Verdict::Permanent(failure) = &mut self {
            failure.recipient = recipient.to_owned();
        }
        self
    }
}

fn with_all(job: &OutboundJob, verdict: Verdict) -> Vec<(String, Verdict)> {
    job.recipients
        .iter()
        .map(|r| (r.address.clone(), verdict.clone().for_recipient(&r.address)))
        .collect()
}

/// The message without the `Return-Path:` field that acceptance put on top: it belongs to final
/// delivery, and a relayed message must not carry one (RFC 5321 4.4).
fn without_return_path(mut message: Vec<u8>) -> Vec<u8> {
    if !message
        .get(..12)
        .is_some_and(|h| h.eq_ignore_ascii_case(b"Return-Path:"))
    {
        return message;
    }
    // The field ends at the first CRLF not followed by folding white space.
    let mut end = 0;
    while let Some(pos) = message[end..].windows(2).position(|w| w == b"\r\n") {
        end += pos + 2;
        if !matches!(message.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    message.drain(..end);
    message
}

fn all_temporary(job: &OutboundJob, why: &str) -> Vec<(String, Verdict)> {
    with_all(job, Verdict::Temporary(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_is_removed_before_relay() {
        assert_eq!(
            without_return_path(b"Return-Path: <a@b>\r\nReceived: x\r\n\r\nbody".to_vec()),
            b"Received: x\r\n\r\nbody"
        );
        assert_eq!(
            without_return_path(b"return-path:\r\n <a@b>\r\nX: y\r\n".to_vec()),
            b"X: y\r\n"
        );
        assert_eq!(without_return_path(b"X: y\r\n".to_vec()), b"X: y\r\n");
    }
}

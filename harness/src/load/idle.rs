//! imap-idle: a standing population of IMAP clients idling in INBOX (RFC 2177) while mail is
//! delivered to their accounts on port 25. What counts is how long a delivery takes to show up
//! as `* n EXISTS` on an idling connection (the `notify` phase: from the start of the SMTP
//! transaction to the EXISTS).
//!
//! The first client of each account reports; the others hold their connections and read what
//! the server sends them. `--rate` gives deliveries per second (open loop); `--connections`
//! delivers one message at a time, each after the last one was seen.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::phase::Phase;
use super::session::{self, Failure, Record, imap_login};
use super::{Ctx, Mode};
use crate::clients::imap::{ImapClient, Response};

/// Re-issue IDLE well inside the 30 minutes after which RFC 2177 lets a server drop the client.
const IDLE_RENEW: Duration = Duration::from_secs(20 * 60);

/// Start instants of deliveries not yet seen, per account.
type Pending = Arc<Vec<Mutex<VecDeque<Instant>>>>;

/// Sets up the idling clients, delivers, and measures; returns how many clients idled.
pub(super) async fn drive(ctx: Arc<Ctx>) -> anyhow::Result<usize> {
    let entry = &ctx.options.workload.mix[0];
    let range = ctx.range(entry);
    let clients = ctx.options.idle_clients.max(1);
    let pending: Pending = Arc::new(
        (0..ctx.accounts.len())
            .map(|_| Mutex::new(VecDeque::new()))
            .collect(),
    );
    let done = Arc::new(AtomicBool::new(false));

    // Connect, log in, select and start idling, 32 at a time.
    let setups = futures::stream::iter((0..clients).map(|n| {
        let ctx = ctx.clone();
        let account = range.start + n % range.len();
        async move {
            let mut record = Record {
                measured: true,
                ..Record::default()
            };
            let result = start_idling(&ctx, account, &mut record).await;
            (n, account, record, result)
        }
    }))
    .buffer_unordered(32);
    let mut listeners = JoinSet::new();
    let mut setups = std::pin::pin!(setups);
    let mut idling = 0;
    while let Some((n, account, record, result)) = setups.next().await {
        setup_finished(&ctx, &record, &result);
        if let Err(failure) = &result
            && failure.fatal
        {
            ctx.stop.store(true, Ordering::Relaxed);
        }
        let outcome = result.map(|(client, exists)| {
            idling += 1;
            let reporter = n < range.len();
            listeners.spawn(listen(
                ctx.clone(),
                client,
                account,
                exists,
                reporter,
                pending.clone(),
                done.clone(),
            ));
        });
        if let Err(failure) = outcome
            && failure.fatal
        {
            let mut fatal = ctx.fatal.lock().expect("fatal lock");
            fatal.get_or_insert(failure);
        }
        if ctx.stopped() {
            done.store(true, Ordering::Relaxed);
            while listeners.join_next().await.is_some() {}
            return Ok(idling);
        }
    }
    if idling == 0 {
        bail!("no IMAP client could start idling");
    }

    // Deliveries to the accounts that have a reporting client.
    let targets = range.len().min(clients);
    let mut deliveries = JoinSet::new();
    match ctx.options.mode {
        Mode::Open { rate } => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let start = Instant::now();
            for k in 0u64.. {
                let intended = start + interval.mul_f64(k as f64);
                if ctx.stopped() || intended >= ctx.end {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                while deliveries.try_join_next().is_some() {}
                let account = range.start + (k as usize) % targets;
                let (ctx, pending) = (ctx.clone(), pending.clone());
                deliveries.spawn(async move { deliver(&ctx, account, intended, &pending).await });
            }
        }
        Mode::Closed { .. } => {
            let mut k = 0;
            while !ctx.stopped() && Instant::now() < ctx.end {
                let account = range.start + k % targets;
                k += 1;
                if !deliver(&ctx, account, Instant::now(), &pending).await {
                    continue;
                }
                // One at a time: wait for it to be seen.
                let deadline = Instant::now() + ctx.options.timeout;
                while !pending[account].lock().expect("pending lock").is_empty()
                    && Instant::now() < deadline
                    && !ctx.stopped()
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    while deliveries.join_next().await.is_some() {}

    // Give the last deliveries time to show up; whatever does not is an error.
    let deadline = Instant::now() + ctx.options.timeout;
    let outstanding = |pending: &Pending| -> Vec<Instant> {
        pending
            .iter()
            .flat_map(|queue| {
                queue
                    .lock()
                    .expect("pending lock")
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    while !outstanding(&pending).is_empty() && Instant::now() < deadline && !ctx.stopped() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for started in outstanding(&pending) {
        if started >= ctx.measure_from {
            let mut stats = ctx.stats.lock().expect("stats lock");
            stats.error(Phase::Notify, "no EXISTS within the timeout");
        }
    }
    done.store(true, Ordering::Relaxed);
    while listeners.join_next().await.is_some() {}
    Ok(idling)
}

/// Records an idle client's set-up: its IMAP phases under their own names (the deliveries have
/// connect, TLS and greeting phases of their own), and the whole as `setup`.
fn setup_finished(ctx: &Ctx, record: &Record, result: &Result<(ImapClient, u32), Failure>) {
    let mut stats = ctx.stats.lock().expect("stats lock");
    match result {
        Ok(_) => {
            let mut total = Duration::ZERO;
            for (phase, latency) in &record.phases {
                total += *latency;
                stats.record(phase.on_idle_client(), *latency);
            }
            stats.record(Phase::Setup, total);
        }
        Err(failure) => {
            stats.error(Phase::Setup, &failure.kind);
            ctx.live_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Logs in, selects INBOX and starts IDLE; returns the client and the EXISTS count.
async fn start_idling(
    ctx: &Ctx,
    account: usize,
    record: &mut Record,
) -> Result<(ImapClient, u32), Failure> {
    let (mut client, mut at) = imap_login(ctx, account, record).await?;
    let selected = client
        .select("INBOX")
        .await
        .map_err(|e| Failure::client(Phase::Select, e))?;
    if !selected.result.is_ok() {
        return Err(Failure::new(
            Phase::Select,
            "NO",
            format!("select: {}", selected.result.tagged.text),
        ));
    }
    at = record.time(Phase::Select, at);
    match client.idle_start().await {
        Ok(Ok(_)) => {}
        Ok(Err(result)) => {
            return Err(Failure::new(
                Phase::Idle,
                "NO",
                format!("idle: the server refused IDLE: {}", result.tagged.text),
            )
            .fatal());
        }
        Err(error) => return Err(Failure::client(Phase::Idle, error)),
    }
    record.time(Phase::Idle, at);
    Ok((client, selected.exists.unwrap_or(0)))
}

/// Reads what the server sends an idling client; a reporter matches new EXISTS counts with
/// pending deliveries.
async fn listen(
    ctx: Arc<Ctx>,
    mut client: ImapClient,
    account: usize,
    mut exists: u32,
    reporter: bool,
    pending: Pending,
    done: Arc<AtomicBool>,
) {
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Relaxed) {
        if idle_since.elapsed() >= IDLE_RENEW {
            if client.idle_done().await.is_err() || !matches!(client.idle_start().await, Ok(Ok(_)))
            {
                ctx.stats
                    .lock()
                    .expect("stats lock")
                    .error(Phase::Idle, "renewing IDLE failed");
                return;
            }
            idle_since = Instant::now();
        }
        match client.idle_wait(Duration::from_millis(200)).await {
            Ok(Some(Response::Exists(count))) => {
                let now = Instant::now();
                if reporter && count > exists {
                    let mut stats = ctx.stats.lock().expect("stats lock");
                    let mut queue = pending[account].lock().expect("pending lock");
                    for _ in exists..count {
                        let Some(started) = queue.pop_front() else {
                            break;
                        };
                        if started >= ctx.measure_from {
                            stats.record(Phase::Notify, now - started);
                            stats.completed += 1;
                            ctx.live_completed.fetch_add(1, Ordering::Relaxed);
                            let mut last = ctx.last_completion.lock().expect("completion lock");
                            *last = Some(last.map_or(now, |l| l.max(now)));
                        }
                    }
                }
                exists = exists.max(count);
            }
            Ok(Some(Response::Expunge(_))) => exists = exists.saturating_sub(1),
            Ok(_) => {}
            Err(error) => {
                if !done.load(Ordering::Relaxed) {
                    let failure = Failure::client(Phase::Idle, error);
                    ctx.stats
                        .lock()
                        .expect("stats lock")
                        .error(Phase::Idle, &failure.kind);
                    ctx.live_errors.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
    let _ = client.idle_done().await;
    let _ = client.logout().await;
}

/// One message to `account` on port 25, timed like a relay session; false if it failed.
async fn deliver(ctx: &Ctx, account: usize, intended: Instant, pending: &Pending) -> bool {
    let started = Instant::now();
    let mut record = Record {
        measured: intended >= ctx.measure_from,
        ..Record::default()
    };
    let result = async {
        let port = ctx.profile.ports.smtp.ok_or_else(|| {
            Failure::new(Phase::Connect, "no port", "the target offers no smtp port").fatal()
        })?;
        let (mut client, mut at) = session::smtp_open(ctx, port, &mut record).await?;
        let recipient = ctx.accounts[account].address.clone();
        let (_, message) = ctx.message(&recipient, ctx.options.size);
        let pipelining = ctx.options.pipelining && client.has_capability("PIPELINING");
        pending[account]
            .lock()
            .expect("pending lock")
            .push_back(Instant::now());
        let sent = session::send_message(
            &mut client,
            &ctx.sender,
            &recipient,
            message,
            pipelining,
            false,
            &mut record,
            &mut at,
        )
        .await;
        if sent.is_err() {
            // Not acknowledged: no EXISTS is owed for it.
            pending[account].lock().expect("pending lock").pop_back();
        }
        sent?;
        let _ = client.command("QUIT").await;
        let _ = client.read_until_closed(Duration::from_secs(1)).await;
        Ok(())
    }
    .await;
    let ok = result.is_ok();
    // The notification, not the delivery, is what this workload completes.
    ctx.finish(intended, started, record, result);
    ok
}

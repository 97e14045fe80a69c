//! `harness load`: capacity testing on the documented ports.
//!
//! Two ways to drive a server:
//! - **open loop** (`--rate N`): new sessions start at a constant rate whatever the server does,
//!   and each session's latency runs from its *intended* start. A server that stalls cannot hide
//!   behind the load generator waiting for it (coordinated omission): the wait shows up in the
//!   `queue` and `session` phases.
//! - **closed loop** (`--connections N`): N connections, each starting its next session as
//!   soon as the last one ended: what the server sustains at that concurrency.
//!
//! Every phase (connect, TLS, greeting, each command, the whole session) goes into its own
//! HdrHistogram. A warm-up runs first and is not measured. With `--verify` every message carries
//! a unique Message-ID; afterwards the mailboxes are read over IMAP or POP3 and every message the
//! server acknowledged must be there exactly once.

mod idle;
pub mod mix;
pub mod phase;
mod rss;
mod session;
pub mod stats;
mod verify;
pub mod workload;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::phase::Phase;
use self::session::{Abort, Failure, Record};
use self::stats::{Stats, Summary};
use self::workload::{AccountRange, Entry, Kind, Workload};
use crate::clients::tls::TlsClient;
use crate::spec::TargetSpec;
use crate::target::{Account, TargetProfile};

/// How sessions are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Sessions (or, for imap-idle, deliveries) per second, whatever the server does.
    Open {
        /// Arrivals per second.
        rate: f64,
    },
    /// This many connections, each starting its next session when the last one ended.
    Closed {
        /// Concurrent connections.
        connections: usize,
    },
}

impl Mode {
    fn describe(&self, workload: &Workload, idle_clients: usize) -> String {
        if let (Some(Kind::ImapMix), Mode::Closed { connections }) = (workload.single(), self) {
            return format!("{connections} checking clients on shared mailboxes");
        }
        let idle = workload.single() == Some(Kind::ImapIdle);
        match (self, idle) {
            (Mode::Open { rate }, false) => format!("open loop, {rate}/s"),
            (Mode::Closed { connections }, false) => {
                format!("closed loop, {connections} connections")
            }
            (Mode::Open { rate }, true) => {
                format!("{idle_clients} idle clients, deliveries at {rate}/s")
            }
            (Mode::Closed { .. }, true) => {
                format!("{idle_clients} idle clients, one delivery at a time")
            }
        }
    }
}

/// Settings of a load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// What to run.
    pub workload: Workload,
    /// Open or closed loop.
    pub mode: Mode,
    /// Length of the measured part.
    pub duration: Duration,
    /// Unmeasured run-in before it.
    pub warmup: Duration,
    /// Stop after this many completed operations in the measured part.
    pub messages: Option<u64>,
    /// Messages (SMTP) or command rounds (POP3, IMAP) per connection.
    pub per_connection: u32,
    /// Message size in octets.
    pub size: usize,
    /// Read the mailboxes afterwards and look for every acknowledged message.
    pub verify: bool,
    /// How long `--verify` waits for acknowledged messages to reach the mailboxes.
    pub verify_wait: Duration,
    /// Which of the target's accounts to use.
    pub accounts: AccountRange,
    /// Longest wait for any one reply.
    pub timeout: Duration,
    /// Send MAIL, RCPT and DATA in one write when the server offers PIPELINING.
    pub pipelining: bool,
    /// Messages put in each mailbox before POP3 and IMAP runs.
    pub seed: u32,
    /// IMAP clients idling, for imap-idle.
    pub idle_clients: usize,
    /// Open loop: sessions in flight beyond which new ones are counted as dropped.
    pub max_in_flight: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Share of sessions (0 to 1) that end on purpose half-way: mid-DATA, mid-literal,
    /// mid-TLS-handshake or mid-command-line. Counted as aborts, not errors.
    pub client_faults: f64,
    /// The server process whose resident memory is sampled; the harness's own (which holds
    /// the embedded server) when `None` and the target is embedded.
    pub server_pid: Option<u32>,
    /// How often the server's resident memory is sampled.
    pub rss_every: Duration,
    /// imap-mix: the seed of the clients' random choices; a fresh one when `None`.
    pub random_seed: Option<u64>,
    /// imap-mix: how often every client pauses for the views to be compared; `0` for only the
    /// one at the end.
    pub checkpoint_every: Duration,
    /// imap-mix: mailboxes named after the run and deleted at its end, rather than the fixed
    /// ones that are emptied at the start of each run.
    pub mix_temporary_mailboxes: bool,
    /// imap-mix: the run goes on past its duration until the clients have completed this many
    /// commands, for at most `mix_overrun` more, so that a loaded machine still sees enough
    /// work to judge. `0` ends at the duration.
    pub mix_min_commands: u64,
    pub mix_overrun: Duration,
}

impl LoadOptions {
    /// The defaults of `harness load` for a workload and mode.
    pub fn new(workload: Workload, mode: Mode) -> LoadOptions {
        LoadOptions {
            workload,
            mode,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(5),
            messages: None,
            per_connection: 1,
            size: 4096,
            verify: false,
            verify_wait: Duration::from_secs(30),
            accounts: AccountRange::ALL,
            timeout: Duration::from_secs(30),
            pipelining: true,
            seed: 10,
            idle_clients: 100,
            max_in_flight: 10_000,
            progress: true,
            client_faults: 0.0,
            server_pid: None,
            rss_every: Duration::from_secs(10),
            random_seed: None,
            checkpoint_every: Duration::from_secs(10),
            mix_temporary_mailboxes: false,
            mix_min_commands: 0,
            mix_overrun: Duration::ZERO,
        }
    }
}

/// Accounts the embedded server gets for load runs, beside alice and bob: POP3 locks a maildrop
/// per session, so concurrency needs many mailboxes.
pub const EMBEDDED_LOAD_ACCOUNTS: usize = 100;

/// Everything sessions share.
pub struct Ctx {
    profile: TargetProfile,
    tls: TlsClient,
    accounts: Vec<Account>,
    options: LoadOptions,
    sender: String,
    run_id: String,
    filler: Vec<u8>,
    sequence: AtomicU64,
    round_robin: AtomicUsize,
    /// Operations left to measure under `--messages`.
    tickets: Option<AtomicI64>,
    stop: AtomicBool,
    fatal: Mutex<Option<Failure>>,
    pools: Mutex<BTreeMap<(usize, usize), Arc<Pool>>>,
    measure_from: Instant,
    end: Instant,
    open_loop: bool,
    stats: Mutex<Stats>,
    last_completion: Mutex<Option<Instant>>,
    acknowledged: Mutex<Vec<(usize, String)>>,
    /// Messages the client cut off on purpose, for `--verify` to make sure none was filed.
    cut_off: Mutex<Vec<(usize, String)>>,
    live_completed: AtomicU64,
    live_errors: AtomicU64,
}

/// Accounts that one session at a time may use (POP3 locks the maildrop).
struct Pool {
    free: tokio::sync::Mutex<mpsc::Receiver<usize>>,
    back: mpsc::Sender<usize>,
}

/// An account held by one session; handed back on drop.
struct Lease {
    index: usize,
    pool: Arc<Pool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self.pool.back.try_send(self.index);
    }
}

impl Ctx {
    fn range(&self, entry: &Entry) -> Range<usize> {
        entry
            .accounts
            .unwrap_or(self.options.accounts)
            .select(self.accounts.len())
            .unwrap_or(0..0)
    }

    /// The next account of `entry`'s slice, round robin; `None` when the target lists none.
    fn next_account(&self, entry: &Entry) -> Option<usize> {
        let range = self.range(entry);
        if range.is_empty() {
            return None;
        }
        let turn = self.round_robin.fetch_add(1, Ordering::Relaxed);
        Some(range.start + turn % range.len())
    }

    /// An account of `entry`'s slice that no other session holds, waiting for one if need be.
    async fn lease_exclusive(&self, entry: &Entry) -> Result<Lease, String> {
        let range = self.range(entry);
        if range.is_empty() {
            return Err("the target profile lists no accounts".into());
        }
        let pool = {
            let mut pools = self.pools.lock().expect("pools lock");
            pools
                .entry((range.start, range.end))
                .or_insert_with(|| {
                    let (back, free) = mpsc::channel(range.len());
                    for index in range.clone() {
                        let _ = back.try_send(index);
                    }
                    Arc::new(Pool {
                        free: tokio::sync::Mutex::new(free),
                        back,
                    })
                })
                .clone()
        };
        let index = pool
            .free
            .lock()
            .await
            .recv()
            .await
            .ok_or("the account pool closed")?;
        Ok(Lease { index, pool })
    }

    fn recipient(&self, account: Option<usize>) -> String {
        match account {
            Some(index) => self.accounts[index].address.clone(),
            // RFC 5321 section 4.5.1: every domain's server accepts postmaster.
            None => format!("postmaster@{}", self.profile.domain),
        }
    }

    fn port_for(&self, kind: Kind) -> Result<u16, String> {
        let (port, key) = match kind {
            Kind::Relay | Kind::ImapIdle => (self.profile.ports.smtp, "smtp"),
            Kind::Submission => (self.profile.ports.submission, "submission"),
            Kind::Submissions => (self.profile.ports.submissions, "submissions"),
            Kind::Pop3 => (
                self.profile.ports.pop3s.or(self.profile.ports.pop3),
                "pop3s",
            ),
            Kind::Imap | Kind::ImapMix => (
                self.profile.ports.imaps.or(self.profile.ports.imap),
                "imaps",
            ),
        };
        port.ok_or_else(|| {
            format!(
                "the target offers no {key} port (`ports.{key}`), which the {kind} workload needs"
            )
        })
    }

    /// The implicit-TLS port if offered, else the plaintext one (STARTTLS/STLS); `true` for
    /// implicit.
    fn tls_port(
        &self,
        implicit: Option<u16>,
        plain: Option<u16>,
        what: &str,
    ) -> Result<(u16, bool), String> {
        implicit
            .map(|port| (port, true))
            .or(plain.map(|port| (port, false)))
            .ok_or_else(|| format!("the target offers no {what} port"))
    }

    fn random_below(&self, bound: u32) -> u32 {
        fastrand::u32(0..bound.max(1))
    }

    /// Takes one operation from the `--messages` budget; false when it is spent, which also
    /// stops new sessions. Unmeasured (warm-up) operations are free.
    fn take_ticket(&self, record: &Record) -> bool {
        if !record.measured {
            return true;
        }
        match &self.tickets {
            None => true,
            Some(tickets) => {
                if tickets.fetch_sub(1, Ordering::Relaxed) > 0 {
                    true
                } else {
                    self.stop.store(true, Ordering::Relaxed);
                    false
                }
            }
        }
    }

    /// A message of about `size` octets with a unique Message-ID, dot-stuffed and ending in the
    /// end-of-data line: `(Message-ID, bytes to send after 354)`.
    fn message(&self, recipient: &str, size: usize) -> (String, Vec<u8>) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let id = format!("<{}.{sequence}@load.harness.test>", self.run_id);
        let mut message = format!(
            "Message-ID: {id}\r\nFrom: <{}>\r\nTo: <{recipient}>\r\nSubject: harness load {sequence}\r\nX-Harness-Run: {}\r\n\r\n",
            self.sender, self.run_id
        )
        .into_bytes();
        let body = size.saturating_sub(message.len()).min(self.filler.len());
        // Whole filler lines only, so the body ends in CRLF.
        let body = self.filler[..body]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |last| last + 1);
        message.extend_from_slice(&self.filler[..body]);
        if body == 0 {
            message.extend_from_slice(b"load test\r\n");
        }
        message.extend_from_slice(b".\r\n");
        (id, message)
    }

    /// Puts `count` messages back into a mailbox a POP3 session emptied, over port 25, and times
    /// it as the `refill` phase.
    async fn refill(&self, index: usize, count: u32, measured: bool) {
        let Some(port) = self.profile.ports.smtp else {
            return;
        };
        let start = Instant::now();
        let result = deliver(self, port, index, count, &mut Record::default()).await;
        if !measured {
            return;
        }
        let mut stats = self.stats.lock().expect("stats lock");
        match result {
            Ok(()) => stats.record(Phase::Refill, start.elapsed()),
            Err(failure) => {
                stats.error(Phase::Refill, &failure.kind);
                self.live_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn finish(
        &self,
        intended: Instant,
        started: Instant,
        record: Record,
        result: Result<(), Failure>,
    ) {
        if self.options.verify && !record.acknowledged.is_empty() {
            self.acknowledged
                .lock()
                .expect("acknowledged lock")
                .extend(record.acknowledged.iter().cloned());
        }
        if self.options.verify && !record.cut_off.is_empty() {
            self.cut_off
                .lock()
                .expect("cut-off lock")
                .extend(record.cut_off.iter().cloned());
        }
        let now = Instant::now();
        if let Err(failure) = &result
            && failure.fatal
        {
            self.stop.store(true, Ordering::Relaxed);
        }
        if record.measured {
            let mut stats = self.stats.lock().expect("stats lock");
            for (phase, latency) in &record.phases {
                stats.record(*phase, *latency);
            }
            if self.open_loop {
                stats.record(Phase::Queue, started - intended);
            }
            stats.completed += record.completed;
            self.live_completed
                .fetch_add(record.completed, Ordering::Relaxed);
            match &result {
                Ok(()) => stats.record(Phase::Session, now - intended),
                Err(Failure {
                    abort: Some(abort), ..
                }) => stats.abort(abort.name()),
                Err(failure) => {
                    stats.error(failure.phase, &failure.kind);
                    self.live_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(stats);
            let mut last = self.last_completion.lock().expect("completion lock");
            *last = Some(last.map_or(now, |l| l.max(now)));
        }
        if let Err(failure) = result
            && failure.fatal
        {
            let mut fatal = self.fatal.lock().expect("fatal lock");
            if fatal.is_none() {
                *fatal = Some(failure);
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Delivers `count` messages to account `index` on one port-25 connection (seeding and
/// refilling mailboxes). Not measured.
async fn deliver(
    ctx: &Ctx,
    port: u16,
    index: usize,
    count: u32,
    record: &mut Record,
) -> Result<(), Failure> {
    let (mut client, mut at) = session::smtp_open(ctx, port, record).await?;
    let pipelining = client.has_capability("PIPELINING");
    let recipient = ctx.accounts[index].address.clone();
    for _ in 0..count {
        let (_, message) = ctx.message(&recipient, ctx.options.size);
        session::send_message(
            &mut client,
            &ctx.sender,
            &recipient,
            message,
            pipelining,
            false,
            record,
            &mut at,
        )
        .await?;
    }
    let _ = client.command("QUIT").await;
    let _ = client.read_until_closed(Duration::from_secs(1)).await;
    Ok(())
}

/// Loads the target and returns the summary of the measured part.
pub async fn run(target: TargetSpec, options: LoadOptions) -> anyhow::Result<Summary> {
    #[cfg(feature = "embedded")]
    let target = target.with_embedded_setup(|config| {
        for n in 1..=EMBEDDED_LOAD_ACCOUNTS {
            config.accounts.push(reference_server::config::Account {
                address: format!("load{n:03}@{}", config.domains[0]),
                password: Some(format!("load{n:03}-secret")),
                password_hash: None,
            });
        }
        // Load from one address: the limits meant for hostile clients would measure
        // themselves rather than the server.
        config.limits.connections = config.limits.connections.max(20_000);
        config.limits.connections_per_address = config.limits.connections_per_address.max(20_000);
    });
    let resolved = target.resolve().await?;
    anyhow::ensure!(
        resolved.has_profile(),
        "`harness load` needs a target profile (--target FILE) or the embedded server: a bare \
         host names no accounts to log in with"
    );
    let profile = resolved.profile.clone();
    let tls = TlsClient::from_settings(&profile.tls, &profile.host)
        .context("cannot use the target's TLS settings")?;
    check(&profile, &options)?;
    let mut ctx = Ctx::new(profile, tls, options);
    let progress = Progress::new(&ctx.options);
    seed(&ctx, &progress).await?;
    preflight(&ctx, &progress).await?;
    let start = Instant::now();
    ctx.measure_from = start + ctx.options.warmup;
    ctx.end = ctx.measure_from + ctx.options.duration;
    let ctx = Arc::new(ctx);
    let ticker = progress.start(ctx.clone());
    let rss_pid = ctx
        .options
        .server_pid
        .or_else(|| resolved.is_embedded().then(std::process::id));
    let sampler = rss_pid.map(|pid| rss::Sampler::start(pid, ctx.options.rss_every));
    let mut check = None;
    let idle_clients = match ctx.options.workload.single() {
        Some(Kind::ImapIdle) => idle::drive(ctx.clone()).await?,
        Some(Kind::ImapMix) => {
            check = Some(mix::drive(ctx.clone()).await?);
            0
        }
        _ => {
            drive(ctx.clone()).await;
            0
        }
    };
    ticker.abort();
    progress.finish();
    if let Some(failure) = ctx.fatal.lock().expect("fatal lock").take() {
        let mut message = format!(
            "load stopped: {}\n(in phase {}; nothing else is measured against a target that fails \
             like this)",
            failure.detail, failure.phase
        );
        if let Some(transcript) = failure.transcript {
            message.push_str("\n\ntranscript:\n");
            message.push_str(&transcript);
        }
        bail!(message);
    }
    let measured_end = ctx
        .last_completion
        .lock()
        .expect("completion lock")
        .unwrap_or(ctx.end)
        .max(ctx.measure_from);
    let stats = ctx.stats.lock().expect("stats lock").clone();
    let mut summary = Summary::new(
        &ctx.options.workload.name,
        &ctx.profile.name,
        &ctx.options
            .mode
            .describe(&ctx.options.workload, idle_clients),
        measured_end - ctx.measure_from,
        ctx.options.warmup,
        &stats,
    );
    summary.check = check;
    if let Some(sampler) = sampler {
        summary.server_rss = Some(sampler.finish(match ctx.options.server_pid {
            Some(pid) => format!("pid {pid}"),
            None => "this process, with the embedded server".to_owned(),
        }));
    }
    if ctx.options.verify {
        let acknowledged = std::mem::take(&mut *ctx.acknowledged.lock().expect("ack lock"));
        let cut_off = std::mem::take(&mut *ctx.cut_off.lock().expect("cut-off lock"));
        summary.verify = Some(verify::verify(&ctx, acknowledged, cut_off, &progress).await?);
    }
    summary.peak_rss_kib = stats::peak_rss_kib();
    drop(resolved);
    Ok(summary)
}

impl Ctx {
    /// The shared state of a run against `profile`.
    fn new(profile: TargetProfile, tls: TlsClient, options: LoadOptions) -> Ctx {
        let run_id = format!(
            "{:x}{:04x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            fastrand::u16(..)
        );
        let sender = format!("harness-load@{}", profile.domain);
        let accounts = profile.accounts.clone();
        Ctx {
            profile,
            tls,
            accounts,
            sender,
            run_id,
            filler: filler(
                options
                    .workload
                    .mix
                    .iter()
                    .map(|e| e.size.map_or(options.size, |s| s.0))
                    .max()
                    .unwrap_or(options.size),
            ),
            sequence: AtomicU64::new(0),
            round_robin: AtomicUsize::new(0),
            tickets: options
                .messages
                .map(|n| AtomicI64::new(i64::try_from(n).unwrap_or(i64::MAX))),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            pools: Mutex::new(BTreeMap::new()),
            measure_from: Instant::now(),
            end: Instant::now(),
            open_loop: matches!(options.mode, Mode::Open { .. }),
            stats: Mutex::new(Stats::default()),
            last_completion: Mutex::new(None),
            acknowledged: Mutex::new(Vec::new()),
            cut_off: Mutex::new(Vec::new()),
            live_completed: AtomicU64::new(0),
            live_errors: AtomicU64::new(0),
            options,
        }
    }
}

/// Commands the bounded imap-mix check of `harness conform` completes at the least.
pub const MIX_CHECK_MIN_COMMANDS: u64 = 1000;

/// imap-mix as a conformance check (the `@concurrency` scenarios): `clients` clients on
/// account `account` of a resolved target for `duration`, and on past it until they have
/// completed [`MIX_CHECK_MIN_COMMANDS`] (five times `duration` at the most), on mailboxes of
/// their own that are deleted afterwards. Returns the findings and how many commands failed
/// outright.
pub async fn imap_mix_check(
    profile: TargetProfile,
    tls: TlsClient,
    account: usize,
    clients: usize,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<(stats::CheckSummary, u64)> {
    let workload = Workload::from_arg(Kind::ImapMix.name()).map_err(|e| anyhow::anyhow!(e))?;
    let mut options = LoadOptions::new(
        workload,
        Mode::Closed {
            connections: clients,
        },
    );
    options.duration = duration;
    options.warmup = Duration::ZERO;
    options.seed = 4;
    options.progress = false;
    options.timeout = timeout;
    options.checkpoint_every = duration / 2;
    options.accounts = AccountRange {
        first: account,
        last: Some(account),
    };
    options.mix_temporary_mailboxes = true;
    // A thousand commands at the least, whatever the machine's load: on a busy CI host three
    // seconds may hold too few for the rarer interleavings a fault shows in.
    options.mix_min_commands = MIX_CHECK_MIN_COMMANDS;
    options.mix_overrun = duration * 4;
    let mut ctx = Ctx::new(profile, tls, options);
    ctx.measure_from = Instant::now();
    ctx.end = ctx.measure_from + duration;
    let ctx = Arc::new(ctx);
    let check = mix::drive(ctx.clone()).await?;
    if let Some(failure) = ctx.fatal.lock().expect("fatal lock").take() {
        bail!("the checking clients stopped: {}", failure.detail);
    }
    let errors = ctx.stats.lock().expect("stats lock").error_count();
    Ok((check, errors))
}

/// Refuses what cannot work before anything is sent.
fn check(profile: &TargetProfile, options: &LoadOptions) -> anyhow::Result<()> {
    for entry in &options.workload.mix {
        let range = entry.accounts.unwrap_or(options.accounts);
        let needs_accounts = !matches!(entry.workload, Kind::Relay);
        if needs_accounts || options.verify {
            if profile.accounts.is_empty() {
                bail!(
                    "the {} workload{} needs accounts, and target {} lists none (`accounts:` in \
                     its profile)",
                    entry.workload,
                    if options.verify && !needs_accounts {
                        " with --verify"
                    } else {
                        ""
                    },
                    profile.name
                );
            }
            range
                .select(profile.accounts.len())
                .map_err(|e| anyhow::anyhow!("{} workload: {e}", entry.workload))?;
        }
        let ports = &profile.ports;
        let missing = match entry.workload {
            Kind::Relay => ports.smtp.is_none().then_some("smtp"),
            Kind::Submission => ports.submission.is_none().then_some("submission"),
            Kind::Submissions => ports.submissions.is_none().then_some("submissions"),
            Kind::Pop3 => {
                (ports.pop3.is_none() && ports.pop3s.is_none()).then_some("pop3 or pop3s")
            }
            Kind::Imap | Kind::ImapMix => {
                (ports.imap.is_none() && ports.imaps.is_none()).then_some("imap or imaps")
            }
            Kind::ImapIdle => (ports.smtp.is_none()
                || (ports.imap.is_none() && ports.imaps.is_none()))
            .then_some("smtp, and imap or imaps,"),
        };
        if let Some(key) = missing {
            bail!(
                "the {} workload needs the {key} port, and target {} offers none",
                entry.workload,
                profile.name
            );
        }
    }
    if options.verify {
        let senders: Vec<&Entry> = options
            .workload
            .mix
            .iter()
            .filter(|e| e.workload.sends_mail())
            .collect();
        if senders.is_empty() {
            bail!(
                "--verify checks delivered mail; the {} workload sends none",
                options.workload.name
            );
        }
        if profile.ports.imap.is_none()
            && profile.ports.imaps.is_none()
            && profile.ports.pop3.is_none()
            && profile.ports.pop3s.is_none()
        {
            bail!(
                "--verify reads the mailboxes over IMAP or POP3, and target {} offers neither",
                profile.name
            );
        }
        let count = profile.accounts.len();
        for reader in options
            .workload
            .mix
            .iter()
            .filter(|e| e.workload == Kind::Pop3)
        {
            let deletes = reader
                .accounts
                .unwrap_or(options.accounts)
                .select(count)
                .unwrap_or(0..0);
            for sender in &senders {
                let sends = sender
                    .accounts
                    .unwrap_or(options.accounts)
                    .select(count)
                    .unwrap_or(0..0);
                if deletes.start < sends.end && sends.start < deletes.end {
                    bail!(
                        "--verify would miss the messages the pop3 part deletes; give the pop3 and {} parts different `accounts`",
                        sender.workload
                    );
                }
            }
        }
    }
    if let Mode::Open { rate } = options.mode
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("--rate must be a positive number of sessions per second");
    }
    if let Mode::Closed { connections: 0 } = options.mode {
        bail!("--connections must be at least 1");
    }
    if options.per_connection == 0 {
        bail!("--per-connection must be at least 1");
    }
    if !(0.0..=1.0).contains(&options.client_faults) {
        bail!("--client-faults must be a share of sessions from 0 to 1");
    }
    if let Some(pid) = options.server_pid
        && rss::read_kib(pid).is_none()
    {
        bail!(
            "--server-pid {pid}: no such process, or its memory cannot be read (/proc/{pid}/status)"
        );
    }
    Ok(())
}

/// Lines of filler text for message bodies, none starting with a dot.
fn filler(size: usize) -> Vec<u8> {
    const LINE: &[u8] =
        b"The quick brown fox jumps over the lazy dog; load test filler 0123456789 ABCDEF\r\n";
    let mut out = Vec::with_capacity(size + LINE.len());
    while out.len() < size {
        out.extend_from_slice(LINE);
    }
    out
}

/// Fills the mailboxes of POP3 and IMAP parts so that their sessions have something to read.
async fn seed(ctx: &Ctx, progress: &Progress) -> anyhow::Result<()> {
    let mut indices: Vec<usize> = Vec::new();
    for entry in &ctx.options.workload.mix {
        if matches!(entry.workload, Kind::Pop3 | Kind::Imap) {
            indices.extend(ctx.range(entry));
        }
    }
    indices.sort_unstable();
    indices.dedup();
    if indices.is_empty() || ctx.options.seed == 0 {
        return Ok(());
    }
    let Some(port) = ctx.profile.ports.smtp else {
        progress.note("the target offers no smtp port: mailboxes are not seeded and sessions read what is there");
        return Ok(());
    };
    progress.note(&format!(
        "seeding {} mailboxes with {} messages each over port {port}",
        indices.len(),
        ctx.options.seed
    ));
    let mut tasks = futures::stream::iter(indices.into_iter().map(|index| async move {
        deliver(ctx, port, index, ctx.options.seed, &mut Record::default()).await
    }))
    .buffer_unordered(8);
    use futures::StreamExt as _;
    while let Some(result) = tasks.next().await {
        if let Err(failure) = result {
            bail!("cannot seed the mailboxes: {}", failure.detail);
        }
    }
    Ok(())
}

/// One session of each part, with its transcript kept: a target that cannot do the work at
/// all fails here, with the conversation shown, before any load is sent.
async fn preflight(ctx: &Ctx, progress: &Progress) -> anyhow::Result<()> {
    let mut kinds: Vec<Kind> = Vec::new();
    for entry in &ctx.options.workload.mix {
        if kinds.contains(&entry.workload) {
            continue;
        }
        kinds.push(entry.workload);
        if matches!(entry.workload, Kind::ImapIdle | Kind::ImapMix) {
            continue;
        }
        progress.note(&format!("pre-flight {} session", entry.workload));
        let mut record = Record {
            keep_transcript: true,
            ..Record::default()
        };
        let result = session::run(ctx, entry, &mut record).await;
        if ctx.options.verify {
            ctx.acknowledged
                .lock()
                .expect("acknowledged lock")
                .extend(record.acknowledged);
        }
        if let Err(failure) = result {
            let mut message = format!(
                "the pre-flight {} session failed, so no load was sent: {}",
                entry.workload, failure.detail
            );
            if let Some(transcript) = failure.transcript {
                message.push_str("\n\ntranscript:\n");
                message.push_str(&transcript);
            }
            bail!(message);
        }
    }
    Ok(())
}

/// Runs sessions until the end of the run (or the `--messages` budget, or a fatal failure).
async fn drive(ctx: Arc<Ctx>) {
    let mut tasks = JoinSet::new();
    match ctx.options.mode {
        Mode::Closed { connections } => {
            for worker in 0..connections {
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(worker as u64);
                    while !ctx.stopped() && Instant::now() < ctx.end {
                        let intended = Instant::now();
                        if !one_session(&ctx, &mut rng, intended).await {
                            // Nothing listens (a server restarting): try again shortly rather
                            // than count refusals as fast as the loop spins.
                            tokio::time::sleep(UNREACHABLE_PAUSE).await;
                        }
                    }
                });
            }
        }
        Mode::Open { rate } => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut rng = fastrand::Rng::new();
            let start = Instant::now();
            for n in 0u64.. {
                let intended = start + interval.mul_f64(n as f64);
                if ctx.stopped() || intended >= ctx.end {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                // Reap finished sessions so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
                if in_flight.load(Ordering::Relaxed) >= ctx.options.max_in_flight {
                    if intended >= ctx.measure_from {
                        ctx.stats.lock().expect("stats lock").error(
                            Phase::Queue,
                            &format!("dropped: {} sessions in flight", ctx.options.max_in_flight),
                        );
                        ctx.live_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx.clone();
                let in_flight = in_flight.clone();
                let mut rng = rng.fork();
                tasks.spawn(async move {
                    one_session(&ctx, &mut rng, intended).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// How long a closed-loop connection waits after the target refused to connect.
const UNREACHABLE_PAUSE: Duration = Duration::from_millis(50);

/// Runs one session and records it; false when the target could not be connected to.
async fn one_session(ctx: &Ctx, rng: &mut fastrand::Rng, intended: Instant) -> bool {
    let entry = ctx.options.workload.pick(rng);
    let started = Instant::now();
    let abort = Abort::for_kind(entry.workload);
    let mut record = Record {
        measured: intended >= ctx.measure_from,
        abort: (!abort.is_empty() && rng.f64() < ctx.options.client_faults)
            .then(|| abort[rng.usize(..abort.len())]),
        ..Record::default()
    };
    let result = session::run(ctx, entry, &mut record).await;
    let reached = !matches!(&result, Err(failure) if failure.phase == Phase::Connect);
    let refill = record.refill.take();
    let measured = record.measured;
    ctx.finish(intended, started, record, result);
    if let Some((index, count)) = refill {
        ctx.refill(index, count, measured).await;
    }
    reached
}

/// The live progress line: an indicatif bar on a terminal, a plain line every five seconds
/// otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress {
    fn new(options: &LoadOptions) -> Progress {
        let terminal = options.progress && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let total = (options.warmup + options.duration).as_secs().max(1);
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
                )
                .expect("constant progress template"),
            );
            bar
        });
        Progress {
            bar,
            enabled: options.progress,
        }
    }

    fn note(&self, text: &str) {
        if !self.enabled {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None => eprintln!("harness load: {text}"),
        }
    }

    fn start(&self, ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        let enabled = self.enabled;
        tokio::spawn(async move {
            let start = Instant::now();
            let mut last_print = start;
            let mut last_completed = 0;
            let mut last_at = start;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                let completed = ctx.live_completed.load(Ordering::Relaxed);
                let errors = ctx.live_errors.load(Ordering::Relaxed);
                let phase = if now < ctx.measure_from {
                    "warm-up"
                } else {
                    "measuring"
                };
                let p99 = ctx
                    .stats
                    .lock()
                    .expect("stats lock")
                    .phases
                    .get(&Phase::Session)
                    .map(|h| h.percentile_ms(99.0));
                let line = |rate: f64| {
                    format!(
                        "{phase}: {completed} {} ({rate:.0}/s), {errors} errors{}",
                        ctx.options.workload.unit(),
                        p99.map(|p| format!(", session p99 {p:.1} ms"))
                            .unwrap_or_default()
                    )
                };
                if let Some(bar) = &bar {
                    let rate = (completed - last_completed.min(completed)) as f64
                        / (now - last_at).as_secs_f64().max(0.001);
                    bar.set_position((now - start).as_secs());
                    bar.set_message(line(rate));
                    last_completed = completed;
                    last_at = now;
                } else if enabled && now - last_print >= Duration::from_secs(5) {
                    let rate = (completed - last_completed.min(completed)) as f64
                        / (now - last_print).as_secs_f64().max(0.001);
                    eprintln!("harness load: {}", line(rate));
                    last_print = now;
                    last_completed = completed;
                }
            }
        })
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

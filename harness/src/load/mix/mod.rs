//! imap-mix: N IMAP clients logged in to one account, working on a few shared mailboxes at
//! once with a seeded, weighted random mix of commands, each checking every response against
//! what it has been told (the [`model`]) and against what all of them know (the [`facts`]).
//!
//! At intervals, and at the end, every client pauses; once all are quiet each one polls (NOOP)
//! and fetches every message's flags, and the views of the clients on one mailbox must agree.
//! Findings carry the RFC section they break, the client, the command and the last lines on
//! its wire; MUST findings fail the run, SHOULD findings are reported.

mod barrier;
pub mod facts;
pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::barrier::Barrier;
use self::facts::{Facts, TOKEN_HEADER};
use self::model::{During, Finding, Level, View};
use super::Ctx;
use super::phase::Phase;
use super::session::{Failure, Record, imap_login};
use super::stats::{CheckClass, CheckExample, CheckSummary, EXAMPLES_PER_CLASS, FAILURES_KEPT};
use crate::clients::ClientError;
use crate::clients::imap::{
    CommandResult, ImapClient, Response, StatusKind, Value, decode_modified_utf7, mailbox_arg,
};

/// The shared mailboxes, under the account's personal namespace.
const MAILBOXES: [&str; 2] = ["harness-mix-a", "harness-mix-b"];
/// Lines of each client's wire kept for a finding's report.
const TAIL_LINES: usize = 24;
/// Above this many messages a client expunges more and appends less.
const SOFT_CAP: u32 = 120;
/// System flags the clients set and clear.
const SYSTEM_FLAGS: [&str; 4] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"];
/// Keywords the clients use when the server lets them create keywords; the last ones rarely,
/// so that new keywords keep appearing during the run.
const KEYWORDS: [&str; 10] = [
    "$Label1", "$Label2", "$Label3", "$Label4", "$Label5", "$MixA", "$MixB", "$MixC", "$MixD",
    "$MixE",
];
/// Longest an IDLE lasts when nothing is reported (each IDLE waits a random part of it).
const IDLE_FOR: Duration = Duration::from_millis(600);
/// Once an IDLE has been told of a change, how long it keeps listening for the rest of the
/// burst before DONE, as a client does that wakes on news and then acts on it.
const IDLE_GRACE: Duration = Duration::from_millis(2);

/// Everything the clients share.
struct Shared {
    account: usize,
    mailboxes: Vec<String>,
    facts: Mutex<Facts>,
    findings: Mutex<Findings>,
    barrier: Barrier,
    /// Views published at a checkpoint, by checkpoint number.
    published: Mutex<HashMap<u64, Vec<Published>>>,
    checkpoints: AtomicU64,
    random_seed: u64,
}

/// One client's view of a mailbox at a checkpoint: UIDs in order, with their flags.
#[derive(Debug, Clone)]
struct Published {
    client: usize,
    mailbox: String,
    /// UIDs in order, with their flags as the view keeps them (normalised).
    messages: Vec<(u32, BTreeSet<String>)>,
}

#[derive(Debug, Default)]
struct Findings {
    classes: BTreeMap<String, CheckClass>,
    examples: Vec<CheckExample>,
    violations: u64,
    warnings: u64,
    failures: Vec<String>,
}

impl Shared {
    fn report(&self, finding: Finding, client: usize, command: &str, tail: &Tail) {
        let level = match finding.level {
            Level::Must => "must",
            Level::Should => "should",
        };
        let mut findings = self.findings.lock().expect("findings lock");
        match finding.level {
            Level::Must => findings.violations += 1,
            Level::Should => findings.warnings += 1,
        }
        let class = findings
            .classes
            .entry(finding.class.to_owned())
            .or_insert_with(|| CheckClass {
                level: level.to_owned(),
                rfc: finding.rfc.to_owned(),
                count: 0,
            });
        class.count += 1;
        if class.count as usize <= EXAMPLES_PER_CLASS {
            findings.examples.push(CheckExample {
                level: level.to_owned(),
                class: finding.class.to_owned(),
                rfc: finding.rfc.to_owned(),
                client,
                command: command.to_owned(),
                detail: finding.detail,
                transcript: tail.lines.iter().cloned().collect(),
            });
        }
    }
}

/// The last lines a client sent and received, for reports.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// A response as one short line for the tail: long values cut.
fn render(response: &Response) -> String {
    let text = match response {
        Response::Fetch(fetch) => {
            let items: Vec<String> = fetch
                .items
                .iter()
                .map(|(name, value)| match value {
                    Value::String(bytes) if bytes.len() > 40 => {
                        format!("{name} {{{}}}...", bytes.len())
                    }
                    other => format!("{name} {other}"),
                })
                .collect();
            format!("* {} FETCH ({})", fetch.seq, items.join(" "))
        }
        Response::Exists(n) => format!("* {n} EXISTS"),
        Response::Expunge(n) => format!("* {n} EXPUNGE"),
        Response::Flags(flags) => format!("* FLAGS ({})", flags.join(" ")),
        Response::Status(status) => format!("* {status}"),
        Response::Recent(n) => format!("* {n} RECENT"),
        Response::Search(search) => {
            let numbers: Vec<String> = search.numbers.iter().map(u32::to_string).collect();
            format!("* SEARCH {}", numbers.join(" "))
        }
        other => format!("{other:?}"),
    };
    cut(text)
}

fn cut(mut text: String) -> String {
    if text.len() > 240 {
        let mut end = 240;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// What the server offers that the mix uses.
#[derive(Debug, Clone, Copy, Default)]
struct Caps {
    idle: bool,
    move_: bool,
    uidplus: bool,
    condstore: bool,
    literal_plus: bool,
}

/// The commands the mix is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    FetchFlags,
    UidFetchFlags,
    FetchMeta,
    FetchBody,
    FetchSections,
    Store,
    UidStore,
    Append,
    /// A draft saved to the selected mailbox and discarded at once (APPEND with \Deleted, UID
    /// EXPUNGE), so that other sessions often learn of a message and its expunge together.
    Draft,
    Copy,
    Move,
    Expunge,
    UidExpunge,
    Search,
    UidSearch,
    Status,
    Noop,
    Idle,
    Switch,
}

/// Weights out of the whole mix.
const WEIGHTS: [(Op, u32); 19] = [
    (Op::FetchFlags, 10),
    (Op::UidFetchFlags, 8),
    (Op::FetchMeta, 6),
    (Op::FetchBody, 7),
    (Op::FetchSections, 4),
    (Op::Store, 10),
    (Op::UidStore, 6),
    (Op::Append, 9),
    (Op::Draft, 4),
    (Op::Copy, 3),
    (Op::Move, 3),
    (Op::Expunge, 4),
    (Op::UidExpunge, 3),
    (Op::Search, 4),
    (Op::UidSearch, 3),
    (Op::Status, 3),
    (Op::Noop, 6),
    (Op::Idle, 3),
    (Op::Switch, 3),
];

/// Commands that RFC 2180 lets a server refuse when a message they name was expunged by
/// another session: each its own class of finding.
#[derive(Debug, Clone, Copy)]
enum Refusable {
    Fetch,
    Store,
    Copy,
}

impl Refusable {
    fn class(self) -> &'static str {
        match self {
            Refusable::Fetch => "fetch-refused-expunged-elsewhere",
            Refusable::Store => "store-refused-expunged-elsewhere",
            Refusable::Copy => "copy-refused-expunged-elsewhere",
        }
    }

    fn rfc(self) -> &'static str {
        match self {
            Refusable::Fetch => "RFC 2180 4.1",
            Refusable::Store => "RFC 2180 4.2",
            Refusable::Copy => "RFC 2180 4.4",
        }
    }
}

/// One checking client.
struct Client {
    id: usize,
    imap: ImapClient,
    view: Option<View>,
    tail: Tail,
    caps: Caps,
    /// Whether this client was told something that breaks a MUST since it last opened a
    /// mailbox: its view may be wrong since, so a checkpoint judges no SHOULD by it.
    told_wrong: std::cell::Cell<bool>,
}

/// Why a step stopped: the connection is no longer usable and the client reconnects.
type Step = Result<(), Failure>;

/// Sets up the mailboxes, runs the clients to the end and returns their findings.
pub(super) async fn drive(ctx: Arc<Ctx>) -> anyhow::Result<CheckSummary> {
    let entry = &ctx.options.workload.mix[0];
    let range = ctx.range(entry);
    anyhow::ensure!(!range.is_empty(), "the target profile lists no accounts");
    let account = range.start;
    let random_seed = ctx.options.random_seed.unwrap_or_else(|| fastrand::u64(..));
    let clients = match ctx.options.mode {
        super::Mode::Closed { connections } => connections,
        super::Mode::Open { .. } => bail!("imap-mix runs a number of clients (--connections N)"),
    };
    let mailboxes = prepare(&ctx, account).await?;
    let result = run_clients(&ctx, account, clients, mailboxes.clone(), random_seed).await;
    if ctx.options.mix_temporary_mailboxes {
        remove(&ctx, account, &mailboxes).await;
    }
    result
}

async fn run_clients(
    ctx: &Arc<Ctx>,
    account: usize,
    clients: usize,
    mailboxes: Vec<String>,
    random_seed: u64,
) -> anyhow::Result<CheckSummary> {
    let shared = Arc::new(Shared {
        account,
        mailboxes: mailboxes.clone(),
        facts: Mutex::new(Facts::default()),
        findings: Mutex::new(Findings::default()),
        barrier: Barrier::new(clients),
        published: Mutex::new(HashMap::new()),
        checkpoints: AtomicU64::new(0),
        random_seed,
    });
    let mut tasks = JoinSet::new();
    for id in 0..clients {
        let (ctx, shared) = (ctx.clone(), shared.clone());
        tasks.spawn(async move { run_client(&ctx, &shared, id).await });
    }
    while tasks.join_next().await.is_some() {}
    let findings = std::mem::take(&mut *shared.findings.lock().expect("findings lock"));
    Ok(CheckSummary {
        random_seed,
        clients,
        mailboxes,
        checkpoints: shared.checkpoints.load(Ordering::Relaxed),
        violations: findings.violations,
        warnings: findings.warnings,
        classes: findings.classes,
        examples: findings.examples,
        failures: findings.failures,
    })
}

/// Deletes the run's own mailboxes; what cannot be deleted is left, with a warning.
async fn remove(ctx: &Ctx, account: usize, mailboxes: &[String]) {
    let mut record = Record::default();
    let Ok((mut imap, _)) = imap_login(ctx, account, &mut record).await else {
        tracing::warn!("imap-mix: could not log in to delete mailboxes {mailboxes:?}");
        return;
    };
    for name in mailboxes {
        if !imap.delete(name).await.is_ok_and(|r| r.is_ok()) {
            tracing::warn!("imap-mix: could not delete mailbox {name:?}");
        }
    }
    let _ = imap.logout().await;
}

/// Finds the personal namespace, creates the shared mailboxes there if need be, empties them
/// (they are the harness's own) and puts `--seed` messages in each. Returns their names.
async fn prepare(ctx: &Ctx, account: usize) -> anyhow::Result<Vec<String>> {
    let mut record = Record {
        keep_transcript: true,
        ..Record::default()
    };
    let (mut imap, _) = imap_login(ctx, account, &mut record)
        .await
        .map_err(|failure| anyhow::anyhow!("imap-mix set-up: {}", failure.detail))?;
    let result = prepare_on(ctx, &mut imap).await;
    let _ = imap.logout().await;
    result.map_err(|error| {
        anyhow::anyhow!(
            "imap-mix set-up: {error:#}\n\ntranscript:\n{}",
            imap.transcript()
        )
    })
}

async fn prepare_on(ctx: &Ctx, imap: &mut ImapClient) -> anyhow::Result<Vec<String>> {
    if imap.capabilities().is_empty() {
        imap.capability().await?;
    }
    let (prefix, delimiter) = if imap.has_capability("NAMESPACE") {
        let result = imap.namespace().await?;
        result
            .namespaces()
            .and_then(|n| n.personal.first())
            .map(|n| (n.prefix.clone(), n.delimiter))
            .unwrap_or_default()
    } else {
        (String::new(), None)
    };
    // NAMESPACE gives the prefix as sent (modified UTF-7); names are kept decoded here, as the
    // client encodes every mailbox argument.
    let prefix = decode_modified_utf7(&prefix)
        .map_err(|e| anyhow::anyhow!("NAMESPACE gave a prefix that does not decode: {e}"))?;
    // A prefix is used as given; one that does not end in its delimiter is a name of its own.
    let prefix = match delimiter {
        Some(d) if !prefix.is_empty() && !prefix.ends_with(d) => format!("{prefix}{d}"),
        _ => prefix,
    };
    let mut names = Vec::new();
    for base in MAILBOXES {
        let name = if ctx.options.mix_temporary_mailboxes {
            format!("{prefix}{base}-{}", ctx.run_id)
        } else {
            format!("{prefix}{base}")
        };
        let created = imap.create(&name).await?;
        if !created.is_ok() {
            let listed = imap.list("", &name).await?;
            if listed.lists().is_empty() {
                bail!("cannot create mailbox {name:?}: {}", created.tagged);
            }
        }
        let selected = imap.select(&name).await?;
        if !selected.result.is_ok() {
            bail!("cannot select {name:?}: {}", selected.result.tagged);
        }
        if selected.exists.unwrap_or(0) > 0 {
            let marked = imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)").await?;
            let expunged = imap.expunge().await?;
            if !marked.is_ok() || !expunged.is_ok() {
                bail!("cannot empty {name:?} before the run: {}", expunged.tagged);
            }
        }
        for n in 0..ctx.options.seed {
            let (token, message) = message_for(&ctx.run_id, usize::MAX, u64::from(n), n % 3 == 0);
            let appended = imap
                .append(&name, &[], None, &message, false)
                .await
                .with_context(|| format!("appending seed message {token}"))?;
            if !appended.is_ok() {
                bail!("cannot APPEND to {name:?}: {}", appended.tagged);
            }
        }
        names.push(name);
    }
    let _ = imap.unselect().await;
    Ok(names)
}

/// A message with a unique token header; multipart every so often, so that BODYSTRUCTURE and
/// sections have something to show.
fn message_for(run_id: &str, client: usize, n: u64, multipart: bool) -> (String, Vec<u8>) {
    let who = if client == usize::MAX {
        "seed".to_owned()
    } else {
        format!("c{client}")
    };
    let token = format!("{run_id}.{who}.{n}");
    // Now and then a subject a quoted string must escape.
    let subject = if n.is_multiple_of(3) {
        format!("mix {token} re: \"quoted\" a\\b")
    } else {
        format!("mix {token}")
    };
    let mut text = format!(
        "From: <mix-{who}@harness.test>\r\nTo: <mix@harness.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{token}@mix.harness.test>\r\n{TOKEN_HEADER}: {token}\r\n\
         Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    );
    let lines = 1 + (n % 17) as usize;
    let filler = "The quick brown fox jumps over the lazy dog, for the mix checker.\r\n";
    if multipart {
        let boundary = format!("b-{token}");
        text.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n{}--{boundary}\r\n\
             Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             SGFybmVzcyBtaXggYXR0YWNobWVudA==\r\n--{boundary}--\r\n",
            filler.repeat(lines)
        ));
    } else {
        text.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
        text.push_str(&filler.repeat(lines));
    }
    (token, text.into_bytes())
}

/// One client's whole run: connect, work, take part in every checkpoint, reconnect after a
/// failure, leave at the end.
async fn run_client(ctx: &Ctx, shared: &Shared, id: usize) {
    let mut rng = fastrand::Rng::with_seed(
        shared.random_seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let every = ctx.options.checkpoint_every;
    let start = Instant::now();
    let mut next_checkpoint = 1u64;
    let due = |k: u64| start + every.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
    let mut client: Option<Client> = None;
    loop {
        let now = Instant::now();
        let enough = ctx.live_completed.load(Ordering::Relaxed) >= ctx.options.mix_min_commands;
        let last = (now >= ctx.end && (enough || now >= ctx.end + ctx.options.mix_overrun))
            || ctx.stopped();
        // Periodic checkpoints end a second before the run does; the final one is at the end.
        let periodic = !every.is_zero()
            && due(next_checkpoint) <= now
            && due(next_checkpoint) + Duration::from_secs(1) < ctx.end;
        if periodic || last {
            checkpoint(ctx, shared, &mut client, next_checkpoint).await;
            next_checkpoint += 1;
            if last {
                break;
            }
            continue;
        }
        let Some(active) = client.as_mut() else {
            match connect(ctx, shared, id, &mut rng).await {
                Ok(new) => client = Some(new),
                Err(failure) => {
                    record_failure(ctx, shared, id, &failure);
                    if failure.fatal {
                        ctx.stop.store(true, Ordering::Relaxed);
                        ctx.fatal.lock().expect("fatal lock").get_or_insert(failure);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        if let Err(failure) = active.step(ctx, shared, &mut rng).await {
            record_failure(ctx, shared, id, &failure);
            client = None;
        }
    }
    shared.barrier.leave();
    if let Some(mut client) = client {
        let _ = client.imap.logout().await;
    }
}

fn record_failure(ctx: &Ctx, shared: &Shared, client: usize, failure: &Failure) {
    {
        let mut findings = shared.findings.lock().expect("findings lock");
        if findings.failures.len() < FAILURES_KEPT {
            findings
                .failures
                .push(format!("client {client}: {}", failure.detail));
        }
    }
    if Instant::now() >= ctx.measure_from {
        ctx.stats
            .lock()
            .expect("stats lock")
            .error(failure.phase, &failure.kind);
        ctx.live_errors.fetch_add(1, Ordering::Relaxed);
    }
}

async fn connect(
    ctx: &Ctx,
    shared: &Shared,
    id: usize,
    rng: &mut fastrand::Rng,
) -> Result<Client, Failure> {
    let mut record = Record {
        measured: Instant::now() >= ctx.measure_from,
        ..Record::default()
    };
    let (mut imap, _) = imap_login(ctx, shared.account, &mut record).await?;
    finish_record(ctx, &record);
    if imap.capabilities().is_empty() || !imap.has_capability("IMAP4rev1") {
        imap.capability()
            .await
            .map_err(|e| Failure::client(Phase::Login, e))?;
    }
    let caps = Caps {
        idle: imap.has_capability("IDLE"),
        move_: imap.has_capability("MOVE"),
        uidplus: imap.has_capability("UIDPLUS"),
        condstore: imap.has_capability("CONDSTORE"),
        literal_plus: imap.has_capability("LITERAL+"),
    };
    let mut client = Client {
        id,
        imap,
        view: None,
        tail: Tail::default(),
        caps,
        told_wrong: std::cell::Cell::new(false),
    };
    let mailbox = shared.mailboxes[rng.usize(..shared.mailboxes.len())].clone();
    client.open(ctx, shared, &mailbox, false).await?;
    // The flags of the mailbox it opened, as a client that comes online reads them: from here
    // on every flag another client changes is one this client must be told of.
    client.fetch_all(ctx, shared).await?;
    Ok(client)
}

fn finish_record(ctx: &Ctx, record: &Record) {
    if !record.measured {
        return;
    }
    let mut stats = ctx.stats.lock().expect("stats lock");
    for (phase, latency) in &record.phases {
        stats.record(*phase, *latency);
    }
}

/// A random sequence set within `1..=len`: one number or a short range.
fn sequence_set(rng: &mut fastrand::Rng, len: u32) -> String {
    let first = rng.u32(1..=len);
    let last = (first + rng.u32(0..4)).min(len);
    range(rng, first, last)
}

/// One number or a range of two, the range now and then high end first, as RFC 3501 9 allows.
fn range(rng: &mut fastrand::Rng, low: u32, high: u32) -> String {
    match rng.u8(..4) {
        0 | 1 => low.to_string(),
        2 => format!("{low}:{high}"),
        _ => format!("{high}:{low}"),
    }
}

impl Client {
    /// Sends `line`, reads to its tagged response, times it, and holds every response to the
    /// model; a response that does not parse is a finding and ends the connection.
    async fn command(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
        phase: Phase,
        line: &str,
        during: During,
    ) -> Result<CommandResult, Failure> {
        let started = Instant::now();
        let result = self.imap.command(line).await;
        self.finish(ctx, shared, phase, line, started, result, during)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
        phase: Phase,
        line: &str,
        started: Instant,
        result: Result<CommandResult, ClientError>,
        during: During,
    ) -> Result<CommandResult, Failure> {
        self.tail.push(cut(format!("C: {line}")));
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                if let ClientError::MalformedReply { .. } = &error {
                    self.finding(
                        shared,
                        Finding::must(
                            "unparseable",
                            "RFC 3501 9",
                            format!("a response does not parse: {error}"),
                        ),
                        line,
                    );
                }
                return Err(Failure::client(phase, error));
            }
        };
        if started >= ctx.measure_from {
            let mut stats = ctx.stats.lock().expect("stats lock");
            stats.record(phase, started.elapsed());
            stats.completed += 1;
            ctx.live_completed.fetch_add(1, Ordering::Relaxed);
        }
        self.absorb(shared, line, &result.untagged, during);
        self.tail
            .push(cut(format!("S: {} {}", result.tag, result.tagged)));
        if result.tagged.kind == StatusKind::Bad {
            self.finding(
                shared,
                Finding::must(
                    "bad-to-valid-command",
                    "RFC 3501 7.1.3",
                    format!("BAD to a well-formed command: {}", result.tagged),
                ),
                line,
            );
        }
        Ok(result)
    }

    /// Holds untagged responses to the view and the facts, in order.
    fn absorb(&mut self, shared: &Shared, line: &str, untagged: &[Response], during: During) {
        for response in untagged {
            self.tail.push(format!("S: {}", render(response)));
            let Some(view) = &mut self.view else {
                continue;
            };
            let mut findings = view.apply(response, during);
            if let Response::Fetch(fetch) = response {
                let uid = fetch.uid().or_else(|| {
                    view.slots
                        .get((fetch.seq as usize).wrapping_sub(1))
                        .and_then(|slot| slot.uid)
                });
                if let Some(uid) = uid {
                    findings.extend(shared.facts.lock().expect("facts lock").fetched(
                        &view.mailbox,
                        uid,
                        fetch,
                    ));
                }
            }
            for finding in findings {
                self.finding(shared, finding, line);
            }
        }
    }

    fn finding(&self, shared: &Shared, finding: Finding, line: &str) {
        if finding.level == Level::Must {
            self.told_wrong.set(true);
        }
        shared.report(finding, self.id, line, &self.tail);
    }

    /// SELECT or EXAMINE `mailbox`, then learn every message's UID and flags.
    async fn open(&mut self, ctx: &Ctx, shared: &Shared, mailbox: &str, examine: bool) -> Step {
        let verb = if examine { "EXAMINE" } else { "SELECT" };
        let line = format!("{verb} {}", mailbox_arg(mailbox));
        self.view = None;
        self.told_wrong.set(false);
        let result = self
            .command(ctx, shared, Phase::Select, &line, During::Other)
            .await?;
        if !result.is_ok() {
            return Err(Failure::new(
                Phase::Select,
                result.tagged.kind.name(),
                format!("{line}: {}", result.tagged),
            ));
        }
        let selected = crate::clients::imap::Selected::from_result(result);
        if let Some(value) = selected.uidvalidity
            && let Some(finding) = shared
                .facts
                .lock()
                .expect("facts lock")
                .uidvalidity(mailbox, value)
        {
            self.finding(shared, finding, &line);
        }
        let (view, findings) = View::opened(mailbox, &selected, examine);
        for finding in findings {
            self.finding(shared, finding, &line);
        }
        self.view = Some(view);
        self.fetch_all(ctx, shared).await?;
        Ok(())
    }

    fn fetch_items(&self, base: &str) -> String {
        if self.caps.condstore {
            format!("({base} MODSEQ)")
        } else {
            format!("({base})")
        }
    }

    /// `FETCH 1:* (UID FLAGS)`: every message's UID and flags. Returns the message numbers
    /// the FETCH responses named, if the command was sent and succeeded.
    async fn fetch_all(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
    ) -> Result<Option<BTreeSet<u32>>, Failure> {
        if self.view.as_ref().is_none_or(View::is_empty) {
            return Ok(None);
        }
        let line = format!("FETCH 1:* {}", self.fetch_items("UID FLAGS"));
        let result = self
            .tolerant(
                ctx,
                shared,
                Phase::Fetch,
                &line,
                During::SequenceCommand,
                Refusable::Fetch,
            )
            .await?;
        Ok(result.is_ok().then(|| {
            result
                .untagged
                .iter()
                .filter_map(|response| match response {
                    Response::Fetch(fetch) => Some(fetch.seq),
                    _ => None,
                })
                .collect()
        }))
    }

    /// A command on messages that another session may have expunged meanwhile: a NO to it
    /// is what RFC 2180 allows, reported and not failed.
    async fn tolerant(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
        phase: Phase,
        line: &str,
        during: During,
        what: Refusable,
    ) -> Result<CommandResult, Failure> {
        let result = self.command(ctx, shared, phase, line, during).await?;
        self.refused(shared, line, &result, what);
        Ok(result)
    }

    /// A NO that RFC 2180 allows for a message another session expunged: reported, not failed.
    fn refused(&self, shared: &Shared, line: &str, result: &CommandResult, what: Refusable) {
        if result.tagged.kind == StatusKind::No {
            self.finding(
                shared,
                Finding::should(
                    what.class(),
                    what.rfc(),
                    format!(
                        "NO to a command on messages this client was told exist: {} (allowed, \
                         but clients expect the message to stay usable until its EXPUNGE is \
                         sent)",
                        result.tagged
                    ),
                ),
                line,
            );
        }
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> Op {
        let view = self.view.as_ref();
        let len = view.map_or(0, View::len);
        let writable = view.is_some_and(|v| !v.read_only);
        let known = view.is_some_and(|v| v.slots.iter().any(|s| s.uid.is_some()));
        let weight = |op: Op, base: u32| -> u32 {
            let available = match op {
                Op::FetchFlags | Op::FetchMeta | Op::FetchBody | Op::FetchSections | Op::Search => {
                    len > 0
                }
                Op::UidFetchFlags | Op::UidSearch => known,
                Op::Store | Op::Expunge => writable && len > 0,
                Op::UidStore => writable && known,
                Op::UidExpunge => writable && known && self.caps.uidplus,
                Op::Copy => len > 0,
                Op::Move => writable && len > 0 && self.caps.move_,
                Op::Idle => self.caps.idle && view.is_some(),
                Op::Draft => writable && self.caps.uidplus,
                Op::Append | Op::Status | Op::Noop | Op::Switch => true,
            };
            if !available {
                return 0;
            }
            match op {
                Op::Expunge | Op::UidExpunge | Op::Move if len > SOFT_CAP => base * 6,
                Op::Append | Op::Copy | Op::Draft if len > SOFT_CAP => 1,
                _ => base,
            }
        };
        let weights: Vec<(Op, u32)> = WEIGHTS
            .iter()
            .map(|&(op, base)| (op, weight(op, base)))
            .collect();
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let mut draw = rng.u32(0..total.max(1));
        for (op, weight) in weights {
            if draw < weight {
                return op;
            }
            draw -= weight;
        }
        Op::Noop
    }

    /// One command of the mix (two for the expunges, which mark first).
    async fn step(&mut self, ctx: &Ctx, shared: &Shared, rng: &mut fastrand::Rng) -> Step {
        let op = self.pick(rng);
        let len = self.view.as_ref().map_or(0, View::len);
        match op {
            Op::FetchFlags => {
                let line = format!(
                    "FETCH {} {}",
                    sequence_set(rng, len),
                    self.fetch_items("UID FLAGS")
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::Fetch,
                    &line,
                    During::SequenceCommand,
                    Refusable::Fetch,
                )
                .await?;
            }
            Op::UidFetchFlags => {
                let line = format!(
                    "UID FETCH {} {}",
                    self.uid_set(rng),
                    self.fetch_items("FLAGS")
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::Fetch,
                    &line,
                    During::Other,
                    Refusable::Fetch,
                )
                .await?;
            }
            Op::FetchMeta => {
                let line = format!(
                    "FETCH {} (UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)",
                    sequence_set(rng, len)
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::Fetch,
                    &line,
                    During::SequenceCommand,
                    Refusable::Fetch,
                )
                .await?;
            }
            Op::FetchBody => {
                let by_uid = rng.bool()
                    && self
                        .view
                        .as_ref()
                        .is_some_and(|v| !v.known_uids().is_empty());
                let (line, during) = if by_uid {
                    (
                        format!(
                            "UID FETCH {} (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])",
                            self.uid_set(rng)
                        ),
                        During::Other,
                    )
                } else {
                    (
                        format!(
                            "FETCH {} (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])",
                            rng.u32(1..=len)
                        ),
                        During::SequenceCommand,
                    )
                };
                self.tolerant(
                    ctx,
                    shared,
                    Phase::FetchBody,
                    &line,
                    during,
                    Refusable::Fetch,
                )
                .await?;
            }
            Op::FetchSections => {
                let line = format!(
                    "FETCH {} (UID BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                    rng.u32(1..=len)
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::FetchBody,
                    &line,
                    During::SequenceCommand,
                    Refusable::Fetch,
                )
                .await?;
            }
            Op::Store => {
                let line = format!(
                    "STORE {} {}FLAGS ({})",
                    sequence_set(rng, len),
                    if rng.bool() { "+" } else { "-" },
                    self.some_flags(rng, 1).join(" ")
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::Store,
                    &line,
                    During::SequenceCommand,
                    Refusable::Store,
                )
                .await?;
            }
            Op::UidStore => {
                let line = format!(
                    "UID STORE {} {}FLAGS ({})",
                    self.uid_set(rng),
                    if rng.bool() { "+" } else { "-" },
                    self.some_flags(rng, 1).join(" ")
                );
                self.command(ctx, shared, Phase::Store, &line, During::Other)
                    .await?;
            }
            Op::Append => self.append(ctx, shared, rng, false).await?,
            Op::Draft => self.append(ctx, shared, rng, true).await?,
            Op::Copy | Op::Move => self.copy(ctx, shared, rng, op == Op::Move).await?,
            Op::Expunge => {
                let count = if len > SOFT_CAP { 8 } else { 1 };
                let first = rng.u32(1..=len);
                let line = format!(
                    "STORE {first}:{} +FLAGS.SILENT (\\Deleted)",
                    (first + count - 1).min(len)
                );
                self.tolerant(
                    ctx,
                    shared,
                    Phase::Store,
                    &line,
                    During::SequenceCommand,
                    Refusable::Store,
                )
                .await?;
                self.command(ctx, shared, Phase::Expunge, "EXPUNGE", During::Other)
                    .await?;
            }
            Op::UidExpunge => {
                let set = self.uid_set(rng);
                let line = format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)");
                self.command(ctx, shared, Phase::Store, &line, During::Other)
                    .await?;
                let line = format!("UID EXPUNGE {set}");
                self.command(ctx, shared, Phase::Expunge, &line, During::Other)
                    .await?;
            }
            Op::Search => {
                let criteria =
                    ["ALL", "FLAGGED", "UNSEEN", "KEYWORD $Label1", "LARGER 1000"][rng.usize(..5)];
                let line = format!("SEARCH {criteria}");
                let before = self.view.as_ref().map_or(0, View::len);
                let result = self
                    .command(ctx, shared, Phase::Search, &line, During::SequenceCommand)
                    .await?;
                // Numbers beyond every EXISTS the command brought break a MUST. Numbers that only
                // an EXISTS sent after the SEARCH response explains are a warning: a client
                // reading responses in order meets a number it cannot place.
                let mut told = before;
                let mut numbers: &[u32] = &[];
                for response in &result.untagged {
                    match response {
                        Response::Exists(count) => told = *count,
                        Response::Expunge(_) => told = told.saturating_sub(1),
                        Response::Search(search) => {
                            numbers = &search.numbers;
                            break;
                        }
                        _ => {}
                    }
                }
                let len = self.view.as_ref().map_or(0, View::len);
                if let Some(beyond) = numbers.iter().find(|&&n| n == 0 || n > len) {
                    self.finding(
                        shared,
                        Finding::must(
                            "search-out-of-range",
                            "RFC 3501 5.2",
                            format!(
                                "SEARCH gave message number {beyond} while this client knew of \
                                 {len} messages: a new message was seen and no EXISTS announced it"
                            ),
                        ),
                        &line,
                    );
                } else if let Some(early) = numbers.iter().find(|&&n| n > told) {
                    self.finding(
                        shared,
                        Finding::should(
                            "search-before-exists",
                            "RFC 3501 5.2",
                            format!(
                                "SEARCH gave message number {early} while this client knew of \
                                 {told} messages; the EXISTS that announced it came only after"
                            ),
                        ),
                        &line,
                    );
                }
            }
            Op::UidSearch => {
                let criteria = ["ALL", "SEEN", "KEYWORD $Label2", "UNFLAGGED"][rng.usize(..4)];
                let line = format!("UID SEARCH {criteria}");
                self.command(ctx, shared, Phase::Search, &line, During::Other)
                    .await?;
            }
            Op::Status => self.status(ctx, shared, rng).await?,
            Op::Noop => {
                self.command(ctx, shared, Phase::Noop, "NOOP", During::Other)
                    .await?;
            }
            Op::Idle => self.idle(ctx, shared, rng).await?,
            Op::Switch => {
                let mailbox = shared.mailboxes[rng.usize(..shared.mailboxes.len())].clone();
                let examine = rng.u8(..5) == 0;
                self.open(ctx, shared, &mailbox, examine).await?;
            }
        }
        Ok(())
    }

    /// One to three known UIDs, or a range of them.
    fn uid_set(&self, rng: &mut fastrand::Rng) -> String {
        let uids = self.view.as_ref().map(View::known_uids).unwrap_or_default();
        if uids.is_empty() {
            return "1:*".into();
        }
        let first = rng.usize(..uids.len());
        let last = (first + rng.usize(0..4)).min(uids.len() - 1);
        range(rng, uids[first], uids[last])
    }

    /// `count` flags to set or clear: system flags, and keywords if the server takes them.
    fn some_flags(&self, rng: &mut fastrand::Rng, count: usize) -> Vec<String> {
        let mut pool: Vec<String> = SYSTEM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        if let Some(view) = &self.view {
            if view.may_create_keywords {
                // The first five often, the rest now and then: new keywords keep appearing.
                let reach = if rng.u8(..10) == 0 { KEYWORDS.len() } else { 5 };
                pool.extend(KEYWORDS[..reach].iter().map(|k| (*k).to_owned()));
            } else {
                pool.extend(view.permanent_keywords.iter().cloned());
            }
        }
        let mut chosen = Vec::new();
        for _ in 0..count {
            let flag = pool[rng.usize(..pool.len())].clone();
            if !chosen.contains(&flag) {
                chosen.push(flag);
            }
        }
        chosen
    }

    /// APPEND to a random mailbox; or, for a draft, to the selected one, then discarded.
    async fn append(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
        rng: &mut fastrand::Rng,
        draft: bool,
    ) -> Step {
        let mailbox = match (&self.view, draft) {
            (Some(view), true) => view.mailbox.clone(),
            _ => shared.mailboxes[rng.usize(..shared.mailboxes.len())].clone(),
        };
        let n = ctx.sequence.fetch_add(1, Ordering::Relaxed);
        let (token, message) = message_for(&ctx.run_id, self.id, n, rng.u8(..4) == 0);
        let count = rng.usize(0..3);
        let flags = if draft {
            vec!["\\Draft".to_owned(), "\\Deleted".to_owned()]
        } else {
            self.some_flags(rng, count)
        };
        let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let date = format!(
            "{:02}-Nov-2026 {:02}:{:02}:07 +0100",
            rng.u8(1..29),
            rng.u8(..24),
            rng.u8(..60)
        );
        let floor = {
            let mut facts = shared.facts.lock().expect("facts lock");
            facts.appending(&token, &message);
            facts.floor(&mailbox)
        };
        let line = format!(
            "APPEND {} ({}) \"{date}\" {{{}}} ({token})",
            mailbox_arg(&mailbox),
            flags.join(" "),
            message.len()
        );
        let started = Instant::now();
        let result = self
            .imap
            .append(
                &mailbox,
                &flag_refs,
                Some(&date),
                &message,
                self.caps.literal_plus,
            )
            .await;
        let result = self.finish(
            ctx,
            shared,
            Phase::Append,
            &line,
            started,
            result,
            During::Other,
        )?;
        if !result.is_ok() {
            return Err(Failure::new(
                Phase::Append,
                result.tagged.kind.name(),
                format!("APPEND to {mailbox}: {}", result.tagged),
            ));
        }
        if let Some((_, uids)) = result.append_uid() {
            let finding = shared.facts.lock().expect("facts lock").assigned(
                &mailbox,
                uids.iter(),
                floor,
                "APPEND",
            );
            if let Some(finding) = finding {
                self.finding(shared, finding, &line);
            }
            if draft && let Some(uid) = uids.iter().next() {
                // Discarded by UID at once (it was saved \Deleted, as a client that keeps no
                // draft does), so that other sessions often learn of it and of its expunge in
                // one go. A server that leaves it in place breaks nothing the mix checks.
                let line = format!("UID EXPUNGE {uid}");
                self.command(ctx, shared, Phase::Expunge, &line, During::Other)
                    .await?;
            }
        }
        Ok(())
    }

    async fn copy(
        &mut self,
        ctx: &Ctx,
        shared: &Shared,
        rng: &mut fastrand::Rng,
        moving: bool,
    ) -> Step {
        let Some(view) = &self.view else {
            return Ok(());
        };
        let source = view.mailbox.clone();
        let others: Vec<&String> = shared.mailboxes.iter().filter(|m| **m != source).collect();
        let Some(destination) = others.first().map(|m| (*m).clone()) else {
            return Ok(());
        };
        let len = view.len();
        let by_uid = rng.bool() && !view.known_uids().is_empty();
        let set = if by_uid {
            self.uid_set(rng)
        } else {
            sequence_set(rng, len)
        };
        let verb = match (by_uid, moving) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        let floor = shared.facts.lock().expect("facts lock").floor(&destination);
        let line = format!("{verb} {set} {}", mailbox_arg(&destination));
        let phase = if moving { Phase::Move } else { Phase::Copy };
        let result = self
            .command(ctx, shared, phase, &line, During::Other)
            .await?;
        self.refused(shared, &line, &result, Refusable::Copy);
        if let Some((_, _, uids)) = result.copy_uid() {
            let uids: Vec<u32> = uids.iter().collect();
            let finding =
                shared
                    .facts
                    .lock()
                    .expect("facts lock")
                    .assigned(&destination, uids, floor, verb);
            if let Some(finding) = finding {
                self.finding(shared, finding, &line);
            }
        }
        Ok(())
    }

    async fn status(&mut self, ctx: &Ctx, shared: &Shared, rng: &mut fastrand::Rng) -> Step {
        // STATUS is not meant for the selected mailbox (RFC 3501 6.3.10).
        let selected = self.view.as_ref().map(|v| v.mailbox.clone());
        let choices: Vec<&String> = shared
            .mailboxes
            .iter()
            .filter(|m| Some(*m) != selected.as_ref())
            .collect();
        let mailbox = choices[rng.usize(..choices.len())].clone();
        let floor = shared.facts.lock().expect("facts lock").floor(&mailbox);
        let line = format!(
            "STATUS {} (MESSAGES UIDNEXT UIDVALIDITY{})",
            mailbox_arg(&mailbox),
            if self.caps.condstore {
                " HIGHESTMODSEQ"
            } else {
                ""
            }
        );
        let result = self
            .command(ctx, shared, Phase::Status, &line, During::Other)
            .await?;
        if let Some(status) = result.mailbox_status() {
            let mut facts = shared.facts.lock().expect("facts lock");
            let mut findings = Vec::new();
            if let Some(value) = status.get("UIDVALIDITY") {
                findings.extend(facts.uidvalidity(&mailbox, value as u32));
            }
            if let Some(value) = status.get("UIDNEXT") {
                findings.extend(facts.uidnext(&mailbox, value as u32, floor));
            }
            drop(facts);
            for finding in findings {
                self.finding(shared, finding, &line);
            }
        }
        Ok(())
    }

    async fn idle(&mut self, ctx: &Ctx, shared: &Shared, rng: &mut fastrand::Rng) -> Step {
        let started = Instant::now();
        let begun = self.imap.idle_start().await;
        self.tail.push("C: IDLE".into());
        match begun {
            Err(error) => return Err(Failure::client(Phase::Idle, error)),
            Ok(Err(result)) => {
                self.finish(
                    ctx,
                    shared,
                    Phase::Idle,
                    "IDLE",
                    started,
                    Ok(result),
                    During::Other,
                )?;
                return Ok(());
            }
            Ok(Ok(_)) => {}
        }
        if started >= ctx.measure_from {
            ctx.stats
                .lock()
                .expect("stats lock")
                .record(Phase::Idle, started.elapsed());
        }
        let mut until = Instant::now() + IDLE_FOR.mul_f64(rng.f64());
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.imap.idle_wait(left).await {
                Ok(Some(response)) => {
                    self.absorb(shared, "IDLE", &[response], During::Other);
                    until = until.min(Instant::now() + IDLE_GRACE);
                }
                Ok(None) => break,
                Err(error) => {
                    if let ClientError::MalformedReply { .. } = &error {
                        self.finding(
                            shared,
                            Finding::must(
                                "unparseable",
                                "RFC 3501 9",
                                format!("a response does not parse: {error}"),
                            ),
                            "IDLE",
                        );
                    }
                    return Err(Failure::client(Phase::Idle, error));
                }
            }
        }
        // DONE and what follows it: checked like any answer, timed in no phase of its own.
        self.tail.push("C: DONE".into());
        let result = match self.imap.idle_done().await {
            Ok(result) => result,
            Err(error) => return Err(Failure::client(Phase::Idle, error)),
        };
        self.absorb(shared, "IDLE", &result.untagged, During::Other);
        self.tail
            .push(cut(format!("S: {} {}", result.tag, result.tagged)));
        Ok(())
    }

    /// This client's part of a checkpoint, once every client is quiet: poll, then fetch every
    /// message's flags; what the poll did not bring is a finding, and the result is the view
    /// to compare with the others'.
    async fn sync(&mut self, ctx: &Ctx, shared: &Shared) -> Result<Option<Published>, Failure> {
        if self.view.is_none() {
            return Ok(None);
        }
        self.command(ctx, shared, Phase::Noop, "NOOP", During::Other)
            .await?;
        let before = self
            .view
            .as_ref()
            .map(|v| v.slots.clone())
            .unwrap_or_default();
        let answered = self.fetch_all(ctx, shared).await?;
        let Some(view) = &self.view else {
            return Ok(None);
        };
        let stale: Vec<u32> = before
            .iter()
            .zip(&view.slots)
            .filter_map(|(old, now)| {
                (old.uid == now.uid && old.flags.is_some() && old.flags != now.flags)
                    .then_some(now.uid)
                    .flatten()
            })
            .collect();
        let line = "NOOP (checkpoint)";
        // A view already known to be wrong would blame the poll for its own errors.
        if !stale.is_empty() && !self.told_wrong.get() {
            self.finding(
                shared,
                Finding::should(
                    "flag-change-unreported",
                    "RFC 3501 5.2",
                    format!(
                        "after every client had stopped, NOOP did not report the flag changes \
                         that a FETCH then showed on UID {}",
                        stale
                            .iter()
                            .take(10)
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ),
                line,
            );
        }
        // Every message the client knew of before the FETCH must be answered for (`*` may
        // stand for more, if an EXISTS came first), and every message must have a UID by now.
        let unanswered = answered.map_or(0, |answered| {
            (1..=before.len())
                .filter(|&n| !answered.contains(&u32::try_from(n).unwrap_or(u32::MAX)))
                .count()
        });
        let missing = unanswered.max(view.slots.iter().filter(|s| s.uid.is_none()).count());
        if missing > 0 {
            self.finding(
                shared,
                Finding::must(
                    "fetch-incomplete",
                    "RFC 3501 6.4.5",
                    format!(
                        "FETCH 1:* left {missing} of the {} messages EXISTS announced without a \
                         response",
                        view.len()
                    ),
                ),
                line,
            );
        }
        Ok(Some(Published {
            client: self.id,
            mailbox: view.mailbox.clone(),
            messages: view
                .slots
                .iter()
                .filter_map(|slot| Some((slot.uid?, slot.flags.clone().unwrap_or_default())))
                .collect(),
        }))
    }
}

/// Every client stops; once all are quiet, each syncs and publishes its view; the lowest
/// client on each mailbox compares them.
async fn checkpoint(ctx: &Ctx, shared: &Shared, client: &mut Option<Client>, number: u64) {
    let started = Instant::now();
    shared.barrier.wait().await;
    let published = match client.as_mut() {
        Some(active) => match active.sync(ctx, shared).await {
            Ok(published) => published,
            Err(failure) => {
                record_failure(ctx, shared, active.id, &failure);
                *client = None;
                None
            }
        },
        None => None,
    };
    if let Some(published) = published.clone() {
        shared
            .published
            .lock()
            .expect("published lock")
            .entry(number)
            .or_default()
            .push(published);
    }
    shared.barrier.wait().await;
    if let Some(mine) = &published {
        let all = shared
            .published
            .lock()
            .expect("published lock")
            .get(&number)
            .cloned()
            .unwrap_or_default();
        let same: Vec<&Published> = all.iter().filter(|p| p.mailbox == mine.mailbox).collect();
        if same.iter().map(|p| p.client).min() == Some(mine.client) {
            if let Some(active) = client.as_ref() {
                compare(shared, active, mine, &same);
            }
            shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
    }
    shared.barrier.wait().await;
    if let Some(active) = client.as_ref()
        && active.id == 0
    {
        shared
            .published
            .lock()
            .expect("published lock")
            .remove(&number);
    }
    if started >= ctx.measure_from {
        ctx.stats
            .lock()
            .expect("stats lock")
            .record(Phase::Checkpoint, started.elapsed());
    }
}

/// The views of one mailbox at a checkpoint must agree: same UIDs, same flags.
fn compare(shared: &Shared, reporter: &Client, mine: &Published, all: &[&Published]) {
    let line = format!("checkpoint on {}", mine.mailbox);
    let own: BTreeMap<u32, &BTreeSet<String>> = mine
        .messages
        .iter()
        .map(|(uid, flags)| (*uid, flags))
        .collect();
    for other in all.iter().filter(|p| p.client != mine.client) {
        let theirs: BTreeMap<u32, &BTreeSet<String>> = other
            .messages
            .iter()
            .map(|(uid, flags)| (*uid, flags))
            .collect();
        let only_mine: Vec<u32> = own
            .keys()
            .filter(|u| !theirs.contains_key(u))
            .copied()
            .collect();
        let only_theirs: Vec<u32> = theirs
            .keys()
            .filter(|u| !own.contains_key(u))
            .copied()
            .collect();
        if !only_mine.is_empty() || !only_theirs.is_empty() {
            reporter.finding(
                shared,
                Finding::must(
                    "views-disagree",
                    "RFC 3501 5.2",
                    format!(
                        "with every client stopped and polled, client {} has UIDs {:?} that \
                         client {} lacks, and lacks {:?}",
                        mine.client,
                        &only_mine[..only_mine.len().min(10)],
                        other.client,
                        &only_theirs[..only_theirs.len().min(10)],
                    ),
                ),
                &line,
            );
        }
        let differing: Vec<u32> = own
            .iter()
            .filter(|&(uid, &flags)| theirs.get(uid).is_some_and(|&other| other != flags))
            .map(|(uid, _)| *uid)
            .collect();
        if !differing.is_empty() {
            reporter.finding(
                shared,
                Finding::must(
                    "views-disagree",
                    "RFC 3501 6.4.5",
                    format!(
                        "with every client stopped, FETCH FLAGS gave clients {} and {} different \
                         flags for UID {:?}",
                        mine.client,
                        other.client,
                        &differing[..differing.len().min(10)]
                    ),
                ),
                &line,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_token_and_end_in_crlf() {
        for multipart in [false, true] {
            let (token, message) = message_for("run", 3, 7, multipart);
            assert_eq!(facts::token_of(&message).as_deref(), Some(token.as_str()));
            assert!(message.ends_with(b"\r\n"));
            assert!(!message.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
    }

    #[test]
    fn sequence_sets_stay_within_the_mailbox() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..1000 {
            let set = sequence_set(&mut rng, 5);
            for part in set.split(':') {
                let n: u32 = part.parse().unwrap();
                assert!((1..=5).contains(&n), "{set}");
            }
        }
    }
}

//! `harness`: conformance runs against a mail server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use harness::conform::{self, RunOptions};
use harness::load::stats::Summary;
use harness::load::workload::{self, Workload};
use harness::load::{self, LoadOptions, Mode};
use harness::spec::TargetSpec;
#[cfg(feature = "embedded")]
use reference_server::{Variant, faults::Policy};

/// Conformance and load testing for mail servers.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Gherkin conformance scenarios against a target (default: the reference server,
    /// started in-process). Exits 0 when a scenario ran and none failed: a warning (a SHOULD the
    /// target does not follow) is reported but does not fail the run, unless the target profile
    /// says `strict: true`. Exits 1 when a scenario failed, 2 when the run could not be done.
    Conform(Box<ConformArgs>),
    /// Drive load against a target (default: the reference server, in-process) and report
    /// throughput, latency percentiles per phase and errors. Exits 1 when any operation failed
    /// or, with --verify, any acknowledged message is missing or duplicated or the store is
    /// inconsistent; 2 when the run
    /// could not be done (bad target, refused credentials, bad options).
    Load(Box<LoadArgs>),
    /// Probe each documented port role (smtp, submissions, submission, pop3, pop3s, imap,
    /// imaps) of a target: open or closed, TLS mode and versions, certificate, login before
    /// TLS, and whether it does what the role requires. Exits 0 when every offered port matches
    /// its role, 1 when some do not, 2 when the probe could not run.
    Ports(PortsArgs),
    /// Work with the JSON written by `load --json` (merge) and `conform --json` (matrix).
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Combine runs that went on at the same time (shards on several machines) into one:
    /// counts and throughputs add up and the latency histograms merge exactly.
    Merge {
        /// JSON files written by `harness load --json`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the merged figures here as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Put several `conform --json` results side by side in one conformance matrix (one row
    /// per scenario, one column per run). Without --out, prints the matrix as Markdown.
    Matrix {
        /// JSON files written by `harness conform --json`, in column order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the matrix here: HTML for `.html`, Markdown for `.md` (repeatable).
        #[arg(long, value_name = "FILE")]
        out: Vec<PathBuf>,
        /// Print only the per-area summary table, the scenarios that did not pass in every run
        /// and the quality figures measured (Markdown), as the README shows them.
        #[arg(long)]
        summary: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ConformArgs {
    /// Target profile (YAML) of the server to test; without it the embedded reference
    /// server is started on ephemeral ports.
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
    /// Directory of .feature files [default: ./features, or the checkout's features/].
    #[arg(long, value_name = "DIR")]
    features: Option<PathBuf>,
    /// Tag expression selecting scenarios, e.g. "@smtp and not @tls".
    #[arg(long, value_name = "EXPR")]
    tags: Option<String>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a JSON report here (several runs combine with `harness report matrix`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the conformance matrix of this run here: HTML for `.html`, Markdown for `.md`
    /// (repeatable).
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,
    /// Seconds to wait for any one server reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    /// Switch on a policy fault of the embedded server, to see what the suite reports about
    /// a broken server (repeatable). `--fault list` prints them all.
    #[arg(long, value_name = "NAME", conflicts_with = "target")]
    fault: Vec<String>,
    /// Switch on a legal variant of the embedded server (repeatable): a behaviour the RFCs
    /// allow that real servers have, under which every scenario must still pass. `--variant
    /// list` prints them all, `--variant table` as the Markdown table README.md shows.
    #[arg(long, value_name = "NAME", conflicts_with = "target")]
    variant: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PortsArgs {
    /// Target profile (YAML); without it (and without --host) the embedded reference server is
    /// started on ephemeral ports.
    #[arg(long, value_name = "FILE", conflicts_with = "host")]
    target: Option<PathBuf>,
    /// A host with no profile: probe the documented port numbers 25, 465, 587, 110, 995, 143
    /// and 993; certificates are shown but not checked, and no login is tried.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Write the findings here as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seconds to wait for any one network step (connect, handshake, reply).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    /// Switch on a policy fault of the embedded server (repeatable), e.g. open_relay;
    /// `--fault list` prints them all.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["target", "host"])]
    fault: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Target profile (YAML); without it the embedded reference server is started with 100
    /// extra load accounts (load001@example.test ...).
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
    /// relay, submission, submissions, pop3, imap, imap-idle, imap-mix (checking clients on
    /// shared mailboxes), or a workload file (YAML mix).
    #[arg(long, value_name = "NAME|FILE")]
    workload: String,
    /// Open loop: start this many sessions per second, whatever the server does; latency runs
    /// from each session's intended start. For imap-idle: deliveries per second.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Closed loop: this many connections, each starting its next session when the last ended
    /// [default: 10]. For imap-idle: the number of idling clients [default: 100].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// Length of the measured part: 30s, 2m, ...
    #[arg(long, value_name = "TIME", default_value = "30s")]
    duration: String,
    /// Unmeasured run-in before it.
    #[arg(long, value_name = "TIME", default_value = "5s")]
    warmup: String,
    /// Stop after this many messages (sessions, notifications) in the measured part.
    #[arg(long, value_name = "N")]
    messages: Option<u64>,
    /// Messages sent on one connection before it is closed (SMTP), or command rounds per
    /// session (POP3, IMAP).
    #[arg(long, value_name = "N", default_value_t = 1)]
    per_connection: u32,
    /// Message size: 4KiB, 1MiB, 512, ...
    #[arg(long, value_name = "SIZE", default_value = "4KiB")]
    size: String,
    /// Write the full figures (histograms included) here as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Afterwards, read the mailboxes (IMAP or POP3) and report acknowledged messages that are
    /// missing or duplicated, and a store that disagrees with itself (UIDs not unique and
    /// ascending, EXISTS or UIDNEXT wrong, POP3 and IMAP counting differently).
    #[arg(long)]
    verify: bool,
    /// How long --verify waits for acknowledged messages to reach the mailboxes.
    #[arg(long, value_name = "TIME", default_value = "30s")]
    verify_wait: String,
    /// Which of the target's accounts to use, by index: 0-49, 50-, all. Shards on several
    /// machines take disjoint slices.
    #[arg(long, value_name = "RANGE", default_value = "all")]
    accounts: String,
    /// Seconds to wait for any one reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Send MAIL, RCPT and DATA one at a time even when the server offers PIPELINING.
    #[arg(long)]
    no_pipelining: bool,
    /// Messages put in each mailbox before pop3 and imap runs.
    #[arg(long, value_name = "N", default_value_t = 10)]
    seed: u32,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Threads driving the load [default: every core; half of them when the target is on this
    /// machine's loopback, so that the server keeps the rest].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Switch on a policy fault of the embedded server (repeatable), e.g. drop_after_ack to see
    /// --verify catch lost mail.
    #[arg(long, value_name = "NAME", conflicts_with = "target")]
    fault: Vec<String>,
    /// Share of sessions (0 to 1) that the client breaks off on purpose with a TCP reset:
    /// mid-DATA, mid-APPEND-literal, mid-TLS-handshake or mid-command-line. Counted as aborts
    /// by kind, not as errors; with --verify, a cut-off message the server filed is a failure.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    client_faults: f64,
    /// Sample the resident memory (VmRSS) of this server process over the run [default: this
    /// process's, with the embedded server in it; none for a --target without --server-pid].
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// How often the server's memory is sampled.
    #[arg(long, value_name = "TIME", default_value = "10s")]
    rss_every: String,
    /// imap-mix: seed of the clients' random choices, to repeat a run's choices (the summary
    /// prints the one used).
    #[arg(long, value_name = "N")]
    random_seed: Option<u64>,
    /// imap-mix: how often every client pauses and the views of the shared mailboxes are
    /// compared; 0s for only the comparison at the end.
    #[arg(long, value_name = "TIME", default_value = "10s")]
    checkpoint_every: String,
    /// Afterwards, run the same workload with the same settings (and random seed) against
    /// this target profile too, and show the runs side by side (repeatable). The targets run
    /// one after the other, not at once, so that they do not share this machine.
    #[arg(long, value_name = "FILE")]
    compare: Vec<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Conform(args) => conform_command(*args),
        Command::Load(args) => load_command(*args),
        Command::Ports(args) => ports_command(args),
        Command::Report(ReportCommand::Merge { files, json }) => merge_command(&files, json),
        Command::Report(ReportCommand::Matrix {
            files,
            out,
            summary,
        }) => matrix_command(&files, &out, summary),
    }
}

/// What `--fault` and `--variant` ask of the embedded reference server.
#[cfg(feature = "embedded")]
struct ServerChanges {
    policies: Vec<Policy>,
    variants: Vec<Variant>,
}

/// A harness built without the embedded reference server takes neither `--fault` nor
/// `--variant`.
#[cfg(not(feature = "embedded"))]
struct ServerChanges;

/// Reads `--fault` and `--variant`; `list` (and `table` for variants) prints and ends the run.
#[cfg(feature = "embedded")]
fn server_changes(fault: &[String], variant: &[String]) -> Result<ServerChanges, ExitCode> {
    Ok(ServerChanges {
        policies: parse_faults(fault)?,
        variants: parse_variants(variant)?,
    })
}

#[cfg(not(feature = "embedded"))]
fn server_changes(fault: &[String], variant: &[String]) -> Result<ServerChanges, ExitCode> {
    if fault.is_empty() && variant.is_empty() {
        return Ok(ServerChanges);
    }
    eprintln!(
        "harness: {}",
        NOT_EMBEDDED.replace("{what}", "--fault and --variant")
    );
    Err(ExitCode::from(2))
}

/// Why a harness built without the cargo feature `embedded` cannot do `{what}`.
#[cfg(not(feature = "embedded"))]
const NOT_EMBEDDED: &str = "{what} need the embedded reference server, which this harness was \
    built without (cargo feature `embedded`, on by default); give a target profile with --target";

/// The profile at `target`, else the embedded reference server with `changes`.
fn target_spec(target: Option<PathBuf>, changes: ServerChanges) -> Result<TargetSpec, ExitCode> {
    if let Some(path) = target {
        return Ok(TargetSpec::Profile(path));
    }
    #[cfg(feature = "embedded")]
    {
        let ServerChanges { policies, variants } = changes;
        Ok(TargetSpec::Embedded(Box::new(move |config| {
            config.faults.policy.extend(policies);
            for variant in variants {
                config.variants.insert(variant);
            }
        })))
    }
    #[cfg(not(feature = "embedded"))]
    {
        let ServerChanges = changes;
        eprintln!(
            "harness: {}",
            NOT_EMBEDDED.replace("{what}", "runs without --target")
        );
        Err(ExitCode::from(2))
    }
}

#[cfg(feature = "embedded")]
fn parse_faults(fault: &[String]) -> Result<Vec<Policy>, ExitCode> {
    if fault.iter().any(|name| name == "list") {
        for policy in Policy::ALL {
            println!("{:28} {}", policy.name(), policy.description());
        }
        return Err(ExitCode::SUCCESS);
    }
    fault
        .iter()
        .map(|name| name.parse())
        .collect::<Result<Vec<Policy>, _>>()
        .map_err(|error| {
            eprintln!("harness: {error}");
            ExitCode::from(2)
        })
}

#[cfg(feature = "embedded")]
fn parse_variants(variant: &[String]) -> Result<Vec<Variant>, ExitCode> {
    if variant.iter().any(|name| name == "list") {
        for variant in Variant::ALL {
            println!("{:28} {}", variant.name(), variant.description());
        }
        return Err(ExitCode::SUCCESS);
    }
    if variant.iter().any(|name| name == "table") {
        print!("{}", reference_server::variants::markdown_table());
        return Err(ExitCode::SUCCESS);
    }
    variant
        .iter()
        .map(|name| name.parse())
        .collect::<Result<Vec<Variant>, _>>()
        .map_err(|error| {
            eprintln!("harness: {error}");
            ExitCode::from(2)
        })
}

fn ports_command(args: PortsArgs) -> ExitCode {
    use harness::ports::{self, PortsOptions};
    let changes = match server_changes(&args.fault, &[]) {
        Ok(changes) => changes,
        Err(code) => return code,
    };
    let target = match (args.target, args.host) {
        (None, Some(host)) => TargetSpec::Host {
            host,
            ports: ports::documented_ports(),
        },
        (target, _) => match target_spec(target, changes) {
            Ok(spec) => spec,
            Err(code) => return code,
        },
    };
    let options = PortsOptions {
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = match runtime.block_on(ports::run(target, &options)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("harness ports: {error:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render());
    if let Some(path) = &args.json
        && let Err(error) = report.write_json(path)
    {
        eprintln!("harness ports: cannot write {}: {error}", path.display());
        return ExitCode::from(2);
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        eprintln!("harness: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

fn load_command(args: LoadArgs) -> ExitCode {
    let options = match load_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("harness load: {message}");
            return ExitCode::from(2);
        }
    };
    let changes = match server_changes(&args.fault, &[]) {
        Ok(changes) => changes,
        Err(code) => return code,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| default_threads(args.target.as_deref()));
    let target = match target_spec(args.target, changes) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("harness: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = options;
    if !args.compare.is_empty() && options.random_seed.is_none() {
        // One seed for every target, so that each is asked to do the same.
        options.random_seed = Some(fastrand::u64(..));
    }
    let mut targets = vec![target];
    targets.extend(args.compare.iter().cloned().map(TargetSpec::Profile));
    let mut runs = Vec::with_capacity(targets.len());
    for (i, target) in targets.into_iter().enumerate() {
        let mut options = options.clone();
        if i > 0 {
            // The process is the first target's, not this one's.
            options.server_pid = None;
        }
        let summary = match runtime.block_on(load::run(target, options)) {
            Ok(summary) => summary,
            Err(error) => {
                match i.checked_sub(1).and_then(|c| args.compare.get(c)) {
                    Some(path) => eprintln!("harness load: {}: {error:#}", path.display()),
                    None => eprintln!("harness load: {error:#}"),
                }
                return ExitCode::from(2);
            }
        };
        if i > 0 {
            println!();
        }
        print!("{}", summary.render());
        runs.push(summary);
    }
    let comparison = load::stats::Comparison { runs };
    let written = match (&args.json, &comparison.runs[..]) {
        (None, _) => Ok(()),
        (Some(path), [single]) => write_json(path, single),
        (Some(path), _) => write_json(path, &comparison),
    };
    if let Err(error) = written {
        eprintln!("harness load: {error}");
        return ExitCode::from(2);
    }
    if comparison.runs.len() > 1 {
        print!("{}", comparison.render());
    }
    if comparison.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every core for the embedded server (it shares the runtime) and for a remote target; half
/// of them for a server on this machine's loopback, which needs the rest.
fn default_threads(target: Option<&std::path::Path>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loopback = target
        .and_then(|path| harness::target::load(path).ok())
        .is_some_and(|profile| {
            profile.host == "localhost"
                || profile
                    .host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    if loopback { (cores / 2).max(1) } else { cores }
}

fn load_options(args: &LoadArgs) -> Result<LoadOptions, String> {
    let workload = Workload::from_arg(&args.workload)?;
    let idle = workload.single() == Some(workload::Kind::ImapIdle);
    let mode = match (args.rate, args.connections) {
        (Some(_), Some(_)) if !idle => {
            return Err("give --rate (open loop) or --connections (closed loop), not both".into());
        }
        (Some(rate), _) => Mode::Open { rate },
        (None, connections) => Mode::Closed {
            connections: if idle { 1 } else { connections.unwrap_or(10) },
        },
    };
    let mut options = LoadOptions::new(workload, mode);
    options.duration =
        workload::parse_duration(&args.duration).map_err(|e| format!("--duration: {e}"))?;
    options.warmup =
        workload::parse_duration(&args.warmup).map_err(|e| format!("--warmup: {e}"))?;
    options.verify_wait =
        workload::parse_duration(&args.verify_wait).map_err(|e| format!("--verify-wait: {e}"))?;
    options.size = args
        .size
        .parse::<workload::Size>()
        .map_err(|e| format!("--size: {e}"))?
        .0;
    options.accounts = args
        .accounts
        .parse()
        .map_err(|e| format!("--accounts: {e}"))?;
    options.messages = args.messages;
    options.per_connection = args.per_connection;
    options.verify = args.verify;
    options.timeout = Duration::from_secs(args.timeout.max(1));
    options.pipelining = !args.no_pipelining;
    options.seed = args.seed;
    options.progress = !args.quiet;
    options.client_faults = args.client_faults;
    options.server_pid = args.server_pid;
    options.rss_every =
        workload::parse_duration(&args.rss_every).map_err(|e| format!("--rss-every: {e}"))?;
    if idle {
        options.idle_clients = args.connections.unwrap_or(100);
    }
    options.random_seed = args.random_seed;
    options.checkpoint_every = workload::parse_duration(&args.checkpoint_every)
        .map_err(|e| format!("--checkpoint-every: {e}"))?;
    if options.workload.single() == Some(workload::Kind::ImapMix) && args.rate.is_some() {
        return Err(
            "imap-mix runs a number of clients for the whole run: give --connections N, not --rate"
                .into(),
        );
    }
    if options.duration.is_zero() {
        return Err("--duration must be longer than 0s".into());
    }
    Ok(options)
}

fn write_json(path: &std::path::Path, summary: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn merge_command(files: &[PathBuf], json: Option<PathBuf>) -> ExitCode {
    let mut runs = Vec::new();
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!(
                    "harness report merge: cannot read {}: {error}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        };
        match serde_json::from_str::<Summary>(&text) {
            Ok(run) => runs.push(run),
            Err(_) if serde_json::from_str::<load::stats::Comparison>(&text).is_ok() => {
                eprintln!(
                    "harness report merge: {} holds runs of `harness load --compare` against \
                     different targets, which are compared, not merged",
                    path.display()
                );
                return ExitCode::from(2);
            }
            Err(error) => {
                eprintln!(
                    "harness report merge: {} is not the JSON of `harness load --json` (line {}, column {}): {error}",
                    path.display(),
                    error.line(),
                    error.column()
                );
                return ExitCode::from(2);
            }
        }
    }
    let merged = match Summary::merge(&runs) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("harness report merge: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", merged.render());
    if let Some(path) = &json
        && let Err(error) = write_json(path, &merged)
    {
        eprintln!("harness report merge: {error}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

#[allow(clippy::too_many_arguments)]
fn conform_command(args: ConformArgs) -> ExitCode {
    let ConformArgs {
        target,
        features,
        tags,
        junit,
        json,
        report: report_files,
        timeout,
        fault,
        variant,
    } = args;
    let changes = match server_changes(&fault, &variant) {
        Ok(changes) => changes,
        Err(code) => return code,
    };
    // A report file with an unknown extension is refused before the run, not after it.
    for path in &report_files {
        if let Err(error) = harness::matrix::Format::from_path(path) {
            eprintln!("harness: --report {error:#}");
            return ExitCode::from(2);
        }
    }
    let spec = match target_spec(target, changes) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let mut options = RunOptions::new(features.unwrap_or_else(conform::default_features_dir));
    options.tags = tags;
    options.timeout = Duration::from_secs(timeout.max(1));
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = match runtime.block_on(conform::run(spec, &options)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("harness: {error:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render());
    for (path, write) in [
        (
            &junit,
            harness::report::Report::write_junit as fn(&_, &_) -> _,
        ),
        (&json, harness::report::Report::write_json),
    ] {
        if let Some(path) = path
            && let Err(error) = write(&report, path)
        {
            eprintln!("harness: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if !report_files.is_empty() {
        let runs = [report.clone()];
        let matrix = harness::matrix::Matrix::new(&runs);
        for path in &report_files {
            if let Err(error) = matrix.write(path) {
                eprintln!("harness: {error:#}");
                return ExitCode::from(2);
            }
        }
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn matrix_command(files: &[PathBuf], out: &[PathBuf], summary: bool) -> ExitCode {
    for path in out {
        if let Err(error) = harness::matrix::Format::from_path(path) {
            eprintln!("harness: --out {error:#}");
            return ExitCode::from(2);
        }
    }
    let mut runs = Vec::new();
    for path in files {
        match harness::matrix::read_json(path) {
            Ok(report) => runs.push(report),
            Err(error) => {
                eprintln!("harness: {error:#}");
                return ExitCode::from(2);
            }
        }
    }
    let matrix = harness::matrix::Matrix::new(&runs);
    for path in out {
        if let Err(error) = matrix.write(path) {
            eprintln!("harness: {error:#}");
            return ExitCode::from(2);
        }
        println!("wrote {}", path.display());
    }
    if summary {
        print!(
            "{}\n{}",
            matrix.markdown_summary(),
            matrix.markdown_differences()
        );
        let measured = matrix.markdown_measurements();
        if !measured.is_empty() {
            print!("\n{measured}");
        }
    } else if out.is_empty() {
        print!("{}", matrix.markdown());
    }
    ExitCode::SUCCESS
}

//! `harness`: conformance runs against a mail server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use harness::conform::{self, RunOptions, TargetSpec};
use reference_server::faults::Policy;

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
    /// started in-process). Exits 0 only when every selected scenario passed.
    Conform {
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
        /// Write a JSON report here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Seconds to wait for any one server reply.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        timeout: u64,
        /// Switch on a policy fault of the embedded server, to see what the suite reports about
        /// a broken server (repeatable). `--fault list` prints them all.
        #[arg(long, value_name = "NAME", conflicts_with = "target")]
        fault: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Conform {
        target,
        features,
        tags,
        junit,
        json,
        timeout,
        fault,
    } = Cli::parse().command;
    if fault.iter().any(|name| name == "list") {
        for policy in Policy::ALL {
            println!("{:28} {}", policy.name(), policy.description());
        }
        return ExitCode::SUCCESS;
    }
    let policies = match fault
        .iter()
        .map(|name| name.parse())
        .collect::<Result<Vec<Policy>, _>>()
    {
        Ok(policies) => policies,
        Err(error) => {
            eprintln!("harness: {error}");
            return ExitCode::from(2);
        }
    };
    let spec = match target {
        Some(path) => TargetSpec::Profile(path),
        None => TargetSpec::Embedded(Box::new(move |config| {
            config.faults.policy.extend(policies);
        })),
    };
    let mut options = RunOptions::new(features.unwrap_or_else(conform::default_features_dir));
    options.tags = tags;
    options.timeout = Duration::from_secs(timeout.max(1));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("harness: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
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
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! `reference-server`: runs the reference mail server until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use reference_server::Config;

/// Reference SMTP, POP3 and IMAP server with a durable mail store. With no arguments it serves
/// example.test (alice@example.test / alice-secret, bob@example.test / bob-secret) on 127.0.0.1
/// ports 2525 (smtp), 2587 (submission), 2465 (submissions), 2110 (pop3), 2995 (pop3s), 2143
/// (imap) and 2993 (imaps).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// YAML configuration file (see README.md); the defaults apply without one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the store and the generated certificate live [default: ./mail-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listen on the documented ports (25, 587, 465, 110, 995, 143, 993) instead of the
    /// unprivileged defaults.
    #[arg(long)]
    standard_ports: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("reference-server: {error}");
                return ExitCode::from(2);
            }
        },
        None => Config::defaults(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if args.standard_ports {
        config.use_standard_ports();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("reference-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let server = match reference_server::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("reference-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The handlers are in place before "ready": a script that signals the server as soon as it
    // reads that line must get a clean shutdown, not the default action of SIGTERM.
    let signalled = shutdown_signal();
    // Stable, parseable lines: tests and scripts read the bound addresses from here.
    for listener in server.listeners() {
        println!(
            "listening {} {} tls={}",
            listener.role, listener.addr, listener.tls
        );
    }
    println!("certificate {}", server.cert_path().display());
    println!("data-dir {}", server.data_dir().display());
    println!("ready");
    signalled.await;
    eprintln!("reference-server: shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Registers for SIGINT and SIGTERM now (registration is synchronous); the returned future ends
/// at the first of them.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            // Without signal handlers (an exhausted resource), Ctrl-C is still worth waiting for.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Ctrl-C elsewhere.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

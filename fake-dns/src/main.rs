//! `fake-dns [--zones FILE] [--listen ADDR:PORT]`: serve zones until SIGINT or SIGTERM; SIGHUP
//! reloads the zones file, keeping the old zones when the new file has an error.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fake_dns::{FakeDns, Zones};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// An authoritative DNS server for mail tests.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// YAML zones file (see zones.example.yaml); without it a demo zone `example.test` is
    /// served with `MX 10 mail.example.test.` and `mail.example.test. A 127.0.0.1`.
    #[arg(long, value_name = "FILE")]
    zones: Option<PathBuf>,
    /// Address for both UDP and TCP; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fake-dns: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let zones = match &args.zones {
        Some(path) => Zones::load(path).map_err(|error| error.to_string())?,
        None => Zones::demo(),
    };
    let dns = FakeDns::start(args.listen, zones)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    println!("fake-dns: listening on {} (udp+tcp)", dns.local_addr());
    // Whoever started us reads this line to learn the port; do not leave it in a buffer.
    let _ = std::io::stdout().flush();

    let signal_error = |error: std::io::Error| format!("cannot watch signals: {error}");
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&dns, args.zones.as_deref()),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    dns.shutdown().await;
    Ok(())
}

fn reload(dns: &FakeDns, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        info!("fake-dns: SIGHUP without --zones; still serving the demo zone");
        return;
    };
    match Zones::load(path) {
        Ok(zones) => {
            dns.replace_zones(zones);
            info!("fake-dns: reloaded zones from {}", path.display());
        }
        Err(error) => error!("fake-dns: reload failed, keeping the old zones: {error}"),
    }
}

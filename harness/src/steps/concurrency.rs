//! `@concurrency`: a few clients of one account work on shared mailboxes at once for a few
//! seconds, each holding every response to what it was told and to what the others did (the
//! imap-mix checker of `harness load`, bounded).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cucumber::{then, when};

use super::MailWorld;
use crate::load::stats::CheckSummary;

#[when(
    regex = r"^(\d+) IMAP clients of (\{\w+\}) work on shared mailboxes for (\d+) seconds, each checking what it is told$"
)]
async fn clients_work(
    world: &mut MailWorld,
    clients: usize,
    who: String,
    seconds: u64,
) -> anyhow::Result<()> {
    let address = world.expand(&who)?;
    let target = world.target()?;
    let account = target
        .profile
        .accounts
        .iter()
        .position(|a| a.address.eq_ignore_ascii_case(&address))
        .with_context(|| format!("{address} is not among the target profile's accounts"))?;
    // One run per target and settings, judged by every scenario that asks for it: the second
    // waits for the first's run rather than loading the server again.
    let mut runs = target.mix_runs.lock().await;
    let run = match runs.get(&(account, clients, seconds)) {
        Some(run) => run.clone(),
        None => {
            let outcome = crate::load::imap_mix_check(
                target.profile.clone(),
                target.tls.clone(),
                account,
                clients,
                Duration::from_secs(seconds),
                target.timeout,
            )
            .await
            .map_err(|error| format!("{error:#}"));
            let run = Arc::new(outcome);
            runs.insert((account, clients, seconds), run.clone());
            run
        }
    };
    drop(runs);
    world.imap.mix = Some(run);
    Ok(())
}

/// The findings of one level, as a report: counts by class, then each example with the lines
/// on its client's wire before it.
fn findings(check: &CheckSummary, level: &str) -> String {
    let mut out = String::new();
    for (class, counted) in check.classes.iter().filter(|(_, c)| c.level == level) {
        out.push_str(&format!(
            "{class} ({}): {} times\n",
            counted.rfc, counted.count
        ));
    }
    for example in check.examples.iter().filter(|e| e.level == level) {
        out.push_str(&format!(
            "\n{} ({}), client {}, at `{}`: {}\n",
            example.class, example.rfc, example.client, example.command, example.detail
        ));
        for line in &example.transcript {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!(
        "(random seed {}; `harness load --workload imap-mix --random-seed {}` makes the same \
         choices at length)",
        check.random_seed, check.random_seed
    ));
    out
}

fn outcome(world: &MailWorld) -> anyhow::Result<&(CheckSummary, u64)> {
    let run = world
        .imap
        .mix
        .as_ref()
        .context("no checking clients ran in this scenario")?;
    run.as_ref()
        .as_ref()
        .map_err(|error| anyhow::anyhow!("the checking clients could not run: {error}"))
}

#[then("no client was told anything that breaks a MUST of the RFCs")]
async fn no_violation(world: &mut MailWorld) -> anyhow::Result<()> {
    let (check, errors) = outcome(world)?;
    if check.violations > 0 {
        bail!(
            "{} finding(s) against a MUST over {} checkpoint(s):\n{}",
            check.violations,
            check.checkpoints,
            findings(check, "must")
        );
    }
    if *errors > 0 {
        bail!(
            "{errors} command(s) of the checking clients failed outright (a connection lost, a \
             timeout, a response that does not parse, or NO to an APPEND or SELECT that should \
             have worked):\n{}",
            check.failures.join("\n")
        );
    }
    if check.checkpoints == 0 {
        bail!("the clients never reached a checkpoint at which their views could be compared");
    }
    Ok(())
}

#[then("no client was told anything that goes against a SHOULD of the RFCs")]
async fn no_warning(world: &mut MailWorld) -> anyhow::Result<()> {
    let (check, _) = outcome(world)?;
    if check.warnings > 0 {
        bail!(
            "{} finding(s) against a SHOULD, or an RFC-allowed choice that clients cope with \
             badly:\n{}",
            check.warnings,
            findings(check, "should")
        );
    }
    Ok(())
}

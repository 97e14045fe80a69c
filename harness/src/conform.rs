//! `harness conform`: runs the feature files against a target and collects one record per
//! scenario.
//!
//! Which scenarios can run is decided before any step runs, from tags: `@port-<service>` needs
//! that port in the target (else "not applicable"), `@needs-<EXTENSION>` needs the extension in
//! the EHLO reply of every port the scenario uses (else "skipped"), and the profile's
//! `skip_tags` skip on purpose. Everything else runs and passes or fails; a failed `@should`
//! scenario is then a warning, unless the profile says `strict: true`.
//!
//! Every connection to the target counts against the profile's `max_connections`, and
//! scenarios run side by side only as far as that leaves each the connections it may need.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cucumber::event::{self, ScenarioFinished};
use cucumber::tag::Ext as _;
use cucumber::{Event, World as _, WriterExt as _, gherkin, parser};
use futures::future::LocalBoxFuture;

use crate::clients::limit_connections;
use crate::clients::pop3::Pop3Client;
use crate::report::{Outcome, Record, Report, Severity};
use crate::spec::TargetSpec;
use crate::steps::{MailWorld, Target};
use crate::target::{KnownFinding, TargetProfile};

/// SMTP services whose capabilities are discovered with EHLO.
const SMTP_SERVICES: [&str; 3] = ["smtp", "submission", "submissions"];

/// Connections one scenario may hold at once: an SMTP client, two IMAP sessions on one
/// mailbox, and a delivery check or the cleanup of its mailbox.
const CONNECTIONS_PER_SCENARIO: usize = 4;

/// How many scenarios run side by side: as many as wanted, but only as far as the target's
/// connection limit leaves [`CONNECTIONS_PER_SCENARIO`] to each, so that no scenario waits for a
/// slot that another waiting scenario holds; one at least, which may then use the whole limit.
fn scenario_concurrency(wanted: usize, max_connections: usize) -> usize {
    wanted
        .min(max_connections / CONNECTIONS_PER_SCENARIO)
        .max(1)
}

/// Keyword standing in discovered capabilities for "CAPA was answered", so that scenarios
/// that send CAPA can need it (`@needs-pop3-CAPA`): CAPA is an extension too (RFC 2449).
const CAPA_ANSWERED: &str = "CAPA";

/// Run settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The features directory.
    pub features: PathBuf,
    /// A cucumber tag expression selecting scenarios, e.g. `@smtp and not @tls`.
    pub tags: Option<String>,
    /// How long to wait for one reply.
    pub timeout: Duration,
    /// Scenarios run at once.
    pub concurrency: usize,
}

impl RunOptions {
    /// The defaults for a features directory.
    pub fn new(features: PathBuf) -> RunOptions {
        RunOptions {
            features,
            tags: None,
            timeout: Duration::from_secs(10),
            concurrency: 8,
        }
    }
}

/// The default features directory: `features/` beside the workspace root when run from a
/// checkout, else `./features`.
pub fn default_features_dir() -> PathBuf {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../features");
    if Path::new("features").is_dir() || !checkout.is_dir() {
        PathBuf::from("features")
    } else {
        checkout
    }
}

/// Runs the selected scenarios against the target and returns the report.
pub async fn run(spec: TargetSpec, options: &RunOptions) -> anyhow::Result<Report> {
    let tags = options
        .tags
        .as_deref()
        .map(|expr| {
            expr.parse::<gherkin::tagexpr::TagOperation>()
                .map_err(|e| anyhow::anyhow!("--tags {expr:?} is not a tag expression: {e}"))
        })
        .transpose()?;
    if !options.features.is_dir() {
        anyhow::bail!(
            "features directory {} does not exist (use --features DIR)",
            options.features.display()
        );
    }
    let resolved = spec.resolve().await?;
    anyhow::ensure!(
        resolved.has_profile(),
        "`harness conform` needs a target profile (--target FILE) or the embedded server: a bare \
         host names no accounts to log in with"
    );
    let tls = resolved.tls()?;
    let target = Target {
        mailboxes: resolved.mailboxes(&tls, options.timeout),
        relay: resolved.relay_env().await?,
        tls,
        profile: resolved.profile.clone(),
        timeout: options.timeout,
        leases: Default::default(),
        mix_runs: Default::default(),
    };
    let target = Arc::new(target);
    // Every connection to the target counts against its limit, discovery's included. A
    // connection waits for a slot at most three replies' time: with scenarios run only as far
    // as the limit allows, a longer wait means a scenario needs more than the whole limit.
    let limit = limit_connections(
        target
            .profile
            .ports
            .offered()
            .map(|(_, port)| target.profile.addr(port)),
        target.profile.max_connections,
        options.timeout * 3,
    );
    let capabilities = discover(&target).await;
    let mut records = execute(target.clone(), capabilities, tags, options).await;
    tracing::debug!(
        "at most {} of the {} connections allowed to the target were open at once",
        limit.peak(),
        target.profile.max_connections
    );
    drop(limit);
    let strict = target.profile.strict;
    apply_severity(&mut records, strict);
    apply_known_findings(&mut records, &target.profile.known_findings);
    let name = target.profile.name.clone();
    resolved.shutdown().await;
    if let Some(relay) = Arc::into_inner(target)
        .and_then(|t| t.relay)
        .and_then(Arc::into_inner)
    {
        relay.shutdown().await;
    }
    let mut report = Report::new(name, records);
    report.strict = strict;
    Ok(report)
}

/// Turns the failures of `@should` scenarios into warnings, unless the profile is strict.
fn apply_severity(records: &mut [Record], strict: bool) {
    for record in records {
        let outcome = std::mem::replace(&mut record.outcome, Outcome::Passed);
        record.outcome = outcome.judged(record.severity, strict);
    }
}

/// Turns the failures a profile lists as known findings into [`Outcome::KnownFinding`], and
/// notes a listed scenario that passed (the finding no longer reproduces: the profile is stale)
/// or only warned (a SHOULD is a warning without being listed).
fn apply_known_findings(records: &mut [Record], findings: &[KnownFinding]) {
    for record in records {
        let Some(known) = findings.iter().find(|f| f.scenario == record.scenario) else {
            continue;
        };
        match std::mem::replace(&mut record.outcome, Outcome::Passed) {
            Outcome::Failed {
                step,
                message,
                transcript,
            } => {
                record.outcome = Outcome::KnownFinding {
                    finding: known.reason.clone(),
                    step,
                    message,
                    transcript,
                };
            }
            Outcome::Passed => {
                record.notes.push(
                    "the profile lists a known finding for this scenario, but it passed: \
                     the finding no longer reproduces"
                        .into(),
                );
            }
            warning @ Outcome::Warning { .. } => {
                record.outcome = warning;
                record.notes.push(
                    "the profile lists a known finding for this scenario, but it is a SHOULD \
                     check: its failure is a warning, not a failure, without the entry"
                        .into(),
                );
            }
            other => record.outcome = other,
        }
    }
}

/// EHLO keywords per SMTP service (after STARTTLS when offered). A service missing here could
/// not be asked; its scenarios run anyway and fail on their own if it is broken.
async fn discover(target: &Target) -> HashMap<String, Capabilities> {
    let mut found = HashMap::new();
    for service in SMTP_SERVICES {
        if target.addr(service).is_err() {
            continue;
        }
        match ehlo_keywords(target, service).await {
            Ok(keywords) => {
                found.insert(service.to_owned(), keywords);
            }
            Err(error) => tracing::warn!("capability discovery on {service} failed: {error:#}"),
        }
    }
    for service in ["imaps", "imap"] {
        if target.addr(service).is_err() {
            continue;
        }
        match imap_capabilities(target, service).await {
            Ok(keywords) => {
                found.insert(service.to_owned(), keywords);
            }
            Err(error) => tracing::warn!("capability discovery on {service} failed: {error:#}"),
        }
    }
    for service in ["pop3s", "pop3"] {
        if target.addr(service).is_err() {
            continue;
        }
        match capa_keywords(target, service).await {
            Ok(keywords) => {
                found.insert(service.to_owned(), keywords);
            }
            Err(error) => tracing::warn!("capability discovery on {service} failed: {error:#}"),
        }
    }
    found
}

/// POP3 CAPA keywords with their parameters, upper-cased, after STLS when offered: what a
/// client may use once it can log in, and [`CAPA_ANSWERED`] when CAPA was answered. A server
/// without CAPA has none.
async fn capa_keywords(target: &Target, service: &str) -> anyhow::Result<Capabilities> {
    let addr = target.addr(service)?;
    let mut client = if Target::is_implicit_tls(service) {
        Pop3Client::connect_tls(&addr, &target.tls, target.timeout).await?
    } else {
        Pop3Client::connect(&addr, target.timeout).await?
    };
    client.greeting().await?;
    let mut answered = client.capa().await?.is_some();
    if !client.is_tls() && client.has_capability("STLS") && client.stls(&target.tls).await?.ok {
        answered = client.capa().await?.is_some();
    }
    let mut found: Capabilities = client
        .capabilities()
        .iter()
        .map(|(keyword, params)| {
            let params = params.iter().map(|p| p.to_ascii_uppercase()).collect();
            (keyword.clone(), params)
        })
        .collect();
    if answered {
        found.insert(CAPA_ANSWERED.to_owned(), BTreeSet::new());
    }
    let _ = client.quit().await;
    Ok(found)
}

/// IMAP capabilities, upper-cased, as a client that may log in sees them: after STARTTLS when
/// offered, and after LOGIN with the profile's first account when it has one (servers may list
/// more once a client is authenticated). `AUTH=PLAIN` is stored as keyword `AUTH` with
/// parameter `PLAIN`.
async fn imap_capabilities(target: &Target, service: &str) -> anyhow::Result<Capabilities> {
    use crate::clients::imap::ImapClient;
    let addr = target.addr(service)?;
    let mut client = if Target::is_implicit_tls(service) {
        ImapClient::connect_tls(&addr, &target.tls, target.timeout).await?
    } else {
        ImapClient::connect(&addr, target.timeout).await?
    };
    client.greeting().await?;
    if !client.is_tls() && client.capability().await?.is_ok() && client.has_capability("STARTTLS") {
        client.starttls(&target.tls).await?;
    }
    let mut words: Vec<String> = Vec::new();
    if client.capability().await?.is_ok() {
        words.extend(client.capabilities().iter().cloned());
    }
    if let Some(account) = target.profile.accounts.first()
        && client
            .login(&account.address, &account.password)
            .await?
            .is_ok()
        && client.capability().await?.is_ok()
    {
        words.extend(client.capabilities().iter().cloned());
    }
    let _ = client.logout().await;
    let mut found = Capabilities::new();
    for word in words {
        let word = word.to_ascii_uppercase();
        let (keyword, param) = match word.split_once('=') {
            Some((keyword, param)) => (keyword.to_owned(), Some(param.to_owned())),
            None => (word, None),
        };
        found.entry(keyword).or_default().extend(param);
    }
    Ok(found)
}

/// EHLO keywords with their parameters, upper-cased.
type Capabilities = BTreeMap<String, BTreeSet<String>>;

async fn ehlo_keywords(target: &Target, service: &str) -> anyhow::Result<Capabilities> {
    fn merge(into: &mut Capabilities, from: &BTreeMap<String, Vec<String>>) {
        for (keyword, params) in from {
            into.entry(keyword.clone())
                .or_default()
                .extend(params.iter().map(|p| p.to_ascii_uppercase()));
        }
    }
    let mut client = target.connect(service).await?;
    client.read_reply().await?;
    client.ehlo("harness.test").await?;
    let mut found = Capabilities::new();
    merge(&mut found, client.capabilities());
    if !client.is_tls() && found.contains_key("STARTTLS") {
        let reply = client.starttls(&target.tls).await?;
        if reply.code == 220 {
            client.ehlo("harness.test").await?;
            merge(&mut found, client.capabilities());
        }
    }
    let _ = client.command("QUIT").await;
    Ok(found)
}

/// Largest SIZE limit the oversize scenarios will send a message against.
const MAX_TESTED_SIZE: u64 = 64 * 1024 * 1024;

/// Why `needs-<what>` is not met by a port's capabilities, if it is not. `what` is an EHLO
/// keyword, `KEYWORD-PARAM` (e.g. `AUTH-LOGIN`), or `SIZE-limit` (a positive SIZE that is
/// small enough to exceed in a test).
fn unmet(what: &str, caps: &Capabilities) -> Option<String> {
    if what == "SIZE-limit" {
        let Some(size) = caps.get("SIZE") else {
            return Some("does not advertise SIZE".into());
        };
        let limit = size.iter().find_map(|p| p.parse::<u64>().ok()).unwrap_or(0);
        return match limit {
            0 => Some("advertises no fixed SIZE limit".into()),
            l if l > MAX_TESTED_SIZE => Some(format!(
                "advertises SIZE {l}, over the {MAX_TESTED_SIZE} octets the harness sends"
            )),
            _ => None,
        };
    }
    let (keyword, param) = match what.split_once('-') {
        Some((keyword, param)) => (keyword, Some(param.to_ascii_uppercase())),
        None => (what, None),
    };
    let keyword = keyword.to_ascii_uppercase();
    match (caps.get(&keyword), param) {
        (None, _) => Some(format!("does not advertise {keyword}")),
        (Some(params), Some(param)) if !params.contains(&param) => {
            Some(format!("does not advertise {keyword} {param}"))
        }
        _ => None,
    }
}

/// Why `needs-pop3-<what>` is not met by a POP3 port's CAPA listing, if it is not. `what` is a
/// CAPA keyword, which may hold '-' (`RESP-CODES`), or `SASL-<mechanism>`; `CAPA` needs CAPA to
/// be answered at all. A server without CAPA advertises nothing, so it meets nothing else.
fn unmet_pop3(what: &str, caps: &Capabilities) -> Option<String> {
    let wanted = what.to_ascii_uppercase();
    let shown = match wanted.split_once('-') {
        Some(("SASL", mechanism)) => format!("SASL {mechanism}"),
        _ => wanted.clone(),
    };
    if !caps.contains_key(CAPA_ANSWERED) {
        return Some(if wanted == CAPA_ANSWERED {
            "does not answer CAPA (RFC 2449 5)".to_owned()
        } else {
            format!("does not answer CAPA, so it advertises no {shown} (RFC 2449 5)")
        });
    }
    let met = caps.contains_key(&wanted)
        || wanted
            .split_once('-')
            .is_some_and(|(keyword, param)| caps.get(keyword).is_some_and(|p| p.contains(param)));
    (!met).then(|| format!("does not advertise {shown} in CAPA"))
}

/// Why a scenario will not run, if it will not.
fn gate(
    tags: &[String],
    profile: &TargetProfile,
    capabilities: &HashMap<String, Capabilities>,
) -> Option<Outcome> {
    if let Some(tag) = tags.iter().find(|t| {
        profile
            .skip_tags
            .iter()
            .any(|s| s.trim_start_matches('@') == t.as_str())
    }) {
        return Some(Outcome::Skipped {
            reason: format!("the target profile skips @{tag}"),
        });
    }
    let services: Vec<&str> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("port-"))
        .collect();
    for service in &services {
        if !profile.ports.offered().any(|(name, _)| name == *service) {
            return Some(Outcome::NotApplicable {
                reason: format!("the target offers no {service} port"),
            });
        }
    }
    if tags.iter().any(|t| t == "relay-env") && profile.relay.is_none() {
        return Some(Outcome::NotApplicable {
            reason: "the target profile has no `relay` section, so the harness has no DNS and \
                     MX to see what the target relays"
                .into(),
        });
    }
    if tags.iter().any(|t| t == "relay-retry")
        && profile
            .relay
            .as_ref()
            .is_none_or(|r| r.retry_within_secs.is_none())
    {
        return Some(Outcome::Skipped {
            reason: "the target profile does not say how soon the target retries a delivery that \
                     failed for now (relay.retry_within_secs); RFC 5321 4.5.4.1 recommends 30 \
                     minutes, more than this run waits"
                .into(),
        });
    }
    if tags.iter().any(|t| t == "fcrdns")
        && !profile.relay.as_ref().is_some_and(|r| r.checks_client_dns)
    {
        return Some(Outcome::Skipped {
            reason: "the target profile says the target does not check its clients' reverse \
                     DNS (relay.checks_client_dns)"
                .into(),
        });
    }
    if tags.iter().any(|t| t == "sender-domain")
        && !profile
            .relay
            .as_ref()
            .is_some_and(|r| r.checks_sender_domain)
    {
        return Some(Outcome::Skipped {
            reason: "the target profile says the target does not check sender domains \
                     (relay.checks_sender_domain)"
                .into(),
        });
    }
    let pop3_service = ["pop3s", "pop3"]
        .into_iter()
        .find(|name| profile.ports.offered().any(|(offered, _)| offered == *name));
    if tags.iter().any(|t| t == "pop3") && pop3_service.is_none() {
        return Some(Outcome::NotApplicable {
            reason: "the target offers no POP3 port (pop3 or pop3s)".into(),
        });
    }
    for needed in tags.iter().filter_map(|t| t.strip_prefix("needs-pop3-")) {
        let Some(service) = pop3_service else { break };
        if let Some(why) = capabilities
            .get(service)
            .and_then(|caps| unmet_pop3(needed, caps))
        {
            return Some(Outcome::Skipped {
                reason: format!("the {service} port {why}"),
            });
        }
    }
    let imap_service = ["imaps", "imap"]
        .into_iter()
        .find(|name| profile.ports.offered().any(|(offered, _)| offered == *name));
    if tags.iter().any(|t| t == "imap") && imap_service.is_none() {
        return Some(Outcome::NotApplicable {
            reason: "the target offers no IMAP port (imap or imaps)".into(),
        });
    }
    for needed in tags.iter().filter_map(|t| t.strip_prefix("needs-imap-")) {
        let Some(service) = imap_service else { break };
        // IMAP capability names may hold '-' (SASL-IR): the whole tag names one capability,
        // `AUTH=PLAIN` included.
        let unmet_imap = |caps: &Capabilities| {
            let wanted = needed.to_ascii_uppercase();
            let met = match wanted.split_once('=') {
                Some((keyword, param)) => caps.get(keyword).is_some_and(|p| p.contains(param)),
                None => caps.contains_key(&wanted),
            };
            (!met).then(|| format!("does not advertise {wanted}"))
        };
        if let Some(why) = capabilities.get(service).and_then(unmet_imap) {
            return Some(Outcome::Skipped {
                reason: format!("the {service} port {why} in CAPABILITY"),
            });
        }
    }
    for needed in tags
        .iter()
        .filter_map(|t| t.strip_prefix("needs-"))
        .filter(|t| !t.starts_with("pop3-") && !t.starts_with("imap-"))
    {
        for service in &services {
            if let Some(why) = capabilities
                .get(*service)
                .and_then(|caps| unmet(needed, caps))
            {
                return Some(Outcome::Skipped {
                    reason: format!("the {service} port {why}"),
                });
            }
        }
    }
    None
}

fn all_tags(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> Vec<String> {
    feature
        .tags
        .iter()
        .chain(rule.iter().flat_map(|r| &r.tags))
        .chain(&scenario.tags)
        .cloned()
        .collect()
}

/// A scenario's identity across events: its feature file and line.
type Key = (PathBuf, usize);

fn key(feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> Key {
    (
        feature.path.clone().unwrap_or_default(),
        scenario.position.line,
    )
}

fn record(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
    features_dir: &Path,
    outcome: Outcome,
) -> Record {
    let tags = all_tags(feature, rule, scenario);
    let file = feature
        .path
        .as_ref()
        .map(|p| {
            p.strip_prefix(features_dir)
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .unwrap_or_default();
    Record {
        feature: feature.name.clone(),
        file,
        scenario: scenario.name.clone(),
        line: scenario.position.line,
        severity: Severity::of(&tags),
        tags,
        outcome,
        notes: Vec::new(),
        measurements: Vec::new(),
        key: Key::default(),
    }
}

async fn execute(
    target: Arc<Target>,
    capabilities: HashMap<String, Capabilities>,
    tags: Option<gherkin::tagexpr::TagOperation>,
    options: &RunOptions,
) -> Vec<Record> {
    let records: Arc<Mutex<Vec<Record>>> = Arc::default();
    let failed_steps: Arc<Mutex<BTreeMap<Key, String>>> = Arc::default();
    let features_dir = options
        .features
        .canonicalize()
        .unwrap_or_else(|_| options.features.clone());

    let filter = {
        let records = records.clone();
        let target = target.clone();
        let dir = features_dir.clone();
        move |feature: &gherkin::Feature,
              rule: Option<&gherkin::Rule>,
              scenario: &gherkin::Scenario| {
            let tags_here = all_tags(feature, rule, scenario);
            if tags
                .as_ref()
                .is_some_and(|expr| !expr.eval(tags_here.iter()))
            {
                return false;
            }
            match gate(&tags_here, &target.profile, &capabilities) {
                None => true,
                Some(outcome) => {
                    lock(&records).push(record(feature, rule, scenario, &dir, outcome));
                    false
                }
            }
        }
    };
    let before = {
        let target = target.clone();
        before_hook(
            move |_: &gherkin::Feature,
                  _: Option<&gherkin::Rule>,
                  _: &gherkin::Scenario,
                  world: &mut MailWorld| {
                world.set_target(target.clone());
                Box::pin(async {}) as LocalBoxFuture<'_, ()>
            },
        )
    };
    let after = {
        let records = records.clone();
        let dir = features_dir.clone();
        after_hook(move |feature, rule, scenario, finished, mut world| {
            let transcript = world.as_ref().map(|w| w.transcript()).unwrap_or_default();
            let unverified = world.as_mut().and_then(|w| w.unverified.take());
            let notes = world
                .as_mut()
                .map(|w| std::mem::take(&mut w.notes))
                .unwrap_or_default();
            let measurements = world
                .as_mut()
                .map(|w| std::mem::take(&mut w.measurements))
                .unwrap_or_default();
            let outcome = match finished {
                ScenarioFinished::StepPassed => match unverified {
                    Some(reason) => Outcome::Skipped { reason },
                    None => Outcome::Passed,
                },
                ScenarioFinished::StepSkipped => Outcome::Failed {
                    step: String::new(),
                    message: "a step matches no step definition (a typo in the feature file?)"
                        .into(),
                    transcript,
                },
                ScenarioFinished::BeforeHookFailed(info) => Outcome::Failed {
                    step: "(before hook)".into(),
                    message: panic_text(info),
                    transcript,
                },
                ScenarioFinished::StepFailed(_, _, error) => Outcome::Failed {
                    // The writer sees the failed step after this hook; filled in at the end.
                    step: String::new(),
                    message: step_error_text(error),
                    transcript,
                },
            };
            let mut done = record(feature, rule, scenario, &dir, outcome);
            done.key = key(feature, scenario);
            done.notes = notes;
            done.measurements = measurements;
            lock(&records).push(done);
            Box::pin(async move {
                if let Some(world) = world {
                    // Cucumber may keep a failed scenario's world until the run ends; its
                    // connections, maildrop leases and mailboxes must not outlive the scenario.
                    world.end_scenario().await;
                }
            }) as LocalBoxFuture<'_, ()>
        })
    };

    let parse_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    MailWorld::cucumber()
        .with_writer(FailedSteps(failed_steps.clone(), parse_errors.clone()).normalized())
        .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
        .max_concurrent_scenarios(scenario_concurrency(
            options.concurrency,
            target.profile.max_connections,
        ))
        .before(before)
        .after(after)
        .filter_run(&options.features, filter)
        .await;
    let mut records = std::mem::take(&mut *lock(&records));
    let failed_steps = lock(&failed_steps);
    for record in &mut records {
        if let Outcome::Failed { step, .. } = &mut record.outcome
            && let Some(text) = failed_steps.get(&record.key)
        {
            step.clone_from(text);
        }
    }
    // A feature file that does not parse is a failure of the run, not something to skip.
    for error in lock(&parse_errors).drain(..) {
        records.push(Record {
            feature: "(feature file did not parse)".into(),
            file: "(parse error)".into(),
            scenario: String::new(),
            line: 0,
            tags: Vec::new(),
            severity: Severity::Must,
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Key::default(),
            outcome: Outcome::Failed {
                step: String::new(),
                message: error,
                transcript: String::new(),
            },
        });
    }
    records
}

/// Pins a closure to the higher-ranked signature cucumber's `before` hook needs.
fn before_hook<F>(hook: F) -> F
where
    F: for<'a> Fn(
        &'a gherkin::Feature,
        Option<&'a gherkin::Rule>,
        &'a gherkin::Scenario,
        &'a mut MailWorld,
    ) -> LocalBoxFuture<'a, ()>,
{
    hook
}

/// Pins a closure to the higher-ranked signature cucumber's `after` hook needs.
fn after_hook<F>(hook: F) -> F
where
    F: for<'a> Fn(
        &'a gherkin::Feature,
        Option<&'a gherkin::Rule>,
        &'a gherkin::Scenario,
        &'a ScenarioFinished,
        Option<&'a mut MailWorld>,
    ) -> LocalBoxFuture<'a, ()>,
{
    hook
}

/// Locks a mutex even if a panicking step poisoned it: the data is only appended to.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn panic_text(info: &event::Info) -> String {
    if let Some(text) = info.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = info.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "step panicked".into()
    }
}

fn step_error_text(error: &event::StepError) -> String {
    match error {
        event::StepError::Panic(info) => panic_text(info),
        other => other.to_string(),
    }
}

/// A cucumber writer that only notes which step failed in each scenario; everything else the
/// report needs comes from the `after` hook.
struct FailedSteps(Arc<Mutex<BTreeMap<Key, String>>>, Arc<Mutex<Vec<String>>>);

impl cucumber::Writer<MailWorld> for FailedSteps {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(
        &mut self,
        event: parser::Result<Event<event::Cucumber<MailWorld>>>,
        _: &Self::Cli,
    ) {
        let Ok(Event {
            value:
                event::Cucumber::Feature(feature, event::Feature::Scenario(scenario, retryable))
                | event::Cucumber::Feature(
                    feature,
                    event::Feature::Rule(_, event::Rule::Scenario(scenario, retryable)),
                ),
            ..
        }) = event
        else {
            if let Err(error) = event {
                // The parser's own words name only the file; its sources say where and why.
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    match cause_text.strip_prefix(&text) {
                        Some(more) => text.push_str(more),
                        None if !text.contains(&cause_text) => {
                            text.push_str(&format!(": {cause_text}"));
                        }
                        None => {}
                    }
                    source = cause.source();
                }
                lock(&self.1).push(text);
            }
            return;
        };
        if let event::Scenario::Step(step, event::Step::Failed(..)) = &retryable.event {
            lock(&self.0).insert(
                key(&feature, &scenario),
                format!("{}{}", step.keyword, step.value),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Ports, TlsSettings};

    fn profile() -> TargetProfile {
        TargetProfile {
            name: "t".into(),
            host: "127.0.0.1".into(),
            domain: "example.test".into(),
            tls: TlsSettings::default(),
            ports: Ports {
                smtp: Some(25),
                submission: Some(587),
                ..Ports::default()
            },
            accounts: Vec::new(),
            foreign_recipient: "x@elsewhere.test".into(),
            relay: None,
            skip_tags: vec!["@bare-line-ends".into()],
            known_findings: Vec::new(),
            strict: false,
            max_connections: crate::target::DEFAULT_MAX_CONNECTIONS,
        }
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn gating_by_port_capability_and_profile() {
        let mut caps = HashMap::new();
        caps.insert(
            "smtp".to_owned(),
            Capabilities::from([
                ("PIPELINING".to_owned(), BTreeSet::new()),
                ("SIZE".to_owned(), BTreeSet::new()),
                ("AUTH".to_owned(), BTreeSet::from(["PLAIN".to_owned()])),
            ]),
        );
        let profile = profile();
        assert_eq!(
            gate(&tags(&["port-smtp", "needs-PIPELINING"]), &profile, &caps),
            None
        );
        assert!(matches!(
            gate(&tags(&["port-submissions"]), &profile, &caps),
            Some(Outcome::NotApplicable { reason }) if reason.contains("submissions")
        ));
        assert!(matches!(
            gate(&tags(&["port-smtp", "needs-SMTPUTF8"]), &profile, &caps),
            Some(Outcome::Skipped { reason }) if reason.contains("SMTPUTF8")
        ));
        assert!(matches!(
            gate(&tags(&["port-smtp", "bare-line-ends"]), &profile, &caps),
            Some(Outcome::Skipped { reason }) if reason.contains("@bare-line-ends")
        ));
        for (needs, why) in [
            ("needs-SIZE-limit", "no fixed SIZE limit"),
            ("needs-AUTH-LOGIN", "AUTH LOGIN"),
        ] {
            assert!(matches!(
                gate(&tags(&["port-smtp", needs]), &profile, &caps),
                Some(Outcome::Skipped { reason }) if reason.contains(why)
            ));
        }
        assert_eq!(
            gate(&tags(&["port-smtp", "needs-AUTH-PLAIN"]), &profile, &caps),
            None
        );
        // A server without the SIZE extension has no limit to exceed (RFC 1870 is optional).
        caps.get_mut("smtp").unwrap().remove("SIZE");
        assert!(matches!(
            gate(&tags(&["port-smtp", "needs-SIZE-limit"]), &profile, &caps),
            Some(Outcome::Skipped { reason }) if reason.contains("does not advertise SIZE")
        ));
        // Capabilities that could not be discovered never turn a scenario into a skip.
        assert_eq!(
            gate(
                &tags(&["port-submission", "needs-CHUNKING"]),
                &profile,
                &caps
            ),
            None
        );
    }

    #[test]
    fn pop3_capabilities_with_dashes_sasl_mechanisms_and_no_capa() {
        let mut profile = profile();
        profile.ports.pop3s = Some(995);
        let listed = |keywords: &[(&str, &[&str])]| {
            let caps: Capabilities = keywords
                .iter()
                .map(|(keyword, params)| {
                    let params = params.iter().map(|p| (*p).to_owned()).collect();
                    ((*keyword).to_owned(), params)
                })
                .collect();
            HashMap::from([("pop3s".to_owned(), caps)])
        };
        let caps = listed(&[
            (CAPA_ANSWERED, &[]),
            ("RESP-CODES", &[]),
            ("USER", &[]),
            ("SASL", &["PLAIN"]),
        ]);
        for met in [
            "needs-pop3-RESP-CODES",
            "needs-pop3-SASL-PLAIN",
            "needs-pop3-CAPA",
        ] {
            assert_eq!(gate(&tags(&["pop3", met]), &profile, &caps), None, "{met}");
        }
        for (unmet, why) in [
            (
                "needs-pop3-PIPELINING",
                "does not advertise PIPELINING in CAPA",
            ),
            (
                "needs-pop3-SASL-CRAM-MD5",
                "does not advertise SASL CRAM-MD5 in CAPA",
            ),
            (
                "needs-pop3-AUTH-RESP-CODE",
                "does not advertise AUTH-RESP-CODE in CAPA",
            ),
        ] {
            assert!(matches!(
                gate(&tags(&["pop3", unmet]), &profile, &caps),
                Some(Outcome::Skipped { reason }) if reason == format!("the pop3s port {why}")
            ));
        }
        // A server that refuses CAPA advertises nothing: no capability is assumed.
        let caps = listed(&[]);
        for (unmet, why) in [
            (
                "needs-pop3-USER",
                "does not answer CAPA, so it advertises no USER",
            ),
            ("needs-pop3-CAPA", "does not answer CAPA (RFC 2449 5)"),
        ] {
            assert!(matches!(
                gate(&tags(&["pop3", unmet]), &profile, &caps),
                Some(Outcome::Skipped { reason }) if reason.contains(why)
            ));
        }
    }

    #[test]
    fn scenarios_run_side_by_side_only_as_far_as_the_connection_limit_allows() {
        assert_eq!(scenario_concurrency(8, 64), 8);
        assert_eq!(scenario_concurrency(8, 10), 2);
        assert_eq!(
            scenario_concurrency(8, crate::target::DEFAULT_MAX_CONNECTIONS),
            1
        );
        assert_eq!(scenario_concurrency(8, 1), 1);
        assert_eq!(scenario_concurrency(0, 64), 1);
    }

    #[test]
    fn known_findings_turn_failures_into_findings_and_flag_stale_ones() {
        let record = |name: &str, outcome: Outcome| Record {
            feature: "f".into(),
            file: "smtp/f.feature".into(),
            scenario: name.into(),
            line: 1,
            tags: Vec::new(),
            severity: Severity::Must,
            outcome,
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Key::default(),
        };
        let failed = || Outcome::Failed {
            step: "Then x".into(),
            message: "expected 554, got 250".into(),
            transcript: "C: x".into(),
        };
        let mut records = vec![
            record("listed and failing", failed()),
            record("listed and passing", Outcome::Passed),
            record("not listed", failed()),
        ];
        let findings = [
            KnownFinding {
                scenario: "listed and failing".into(),
                reason: "bare LF ends DATA".into(),
            },
            KnownFinding {
                scenario: "listed and passing".into(),
                reason: "fixed upstream".into(),
            },
        ];
        apply_known_findings(&mut records, &findings);
        assert!(matches!(
            &records[0].outcome,
            Outcome::KnownFinding { finding, message, .. }
                if finding == "bare LF ends DATA" && message == "expected 554, got 250"
        ));
        assert_eq!(records[1].outcome, Outcome::Passed);
        assert!(records[1].notes[0].contains("no longer reproduces"));
        assert!(matches!(records[2].outcome, Outcome::Failed { .. }));
        let report = Report::new("t".into(), records);
        assert_eq!(report.counts().known_findings, 1);
        assert!(!report.success(), "an unlisted failure still fails the run");
    }

    #[test]
    fn should_failures_warn_unless_strict_and_known_findings_apply_after() {
        let record = |name: &str, severity: Severity| Record {
            feature: "f".into(),
            file: "smtp/f.feature".into(),
            scenario: name.into(),
            line: 1,
            tags: vec![severity.tag().to_owned()],
            severity,
            outcome: Outcome::Failed {
                step: "Then x".into(),
                message: "expected 500, got 502".into(),
                transcript: "C: x".into(),
            },
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Key::default(),
        };
        let records = || {
            vec![
                record("a must", Severity::Must),
                record("a should", Severity::Should),
                record("a quality figure", Severity::Quality),
                record("a listed should", Severity::Should),
            ]
        };
        let findings = [KnownFinding {
            scenario: "a listed should".into(),
            reason: "recommended, not required".into(),
        }];

        let mut lenient = records();
        apply_severity(&mut lenient, false);
        apply_known_findings(&mut lenient, &findings);
        assert!(matches!(lenient[0].outcome, Outcome::Failed { .. }));
        assert!(matches!(lenient[1].outcome, Outcome::Warning { .. }));
        assert!(matches!(lenient[2].outcome, Outcome::Failed { .. }));
        // A SHOULD listed as a known finding stays a warning, and the report says the entry
        // is not needed.
        assert!(matches!(lenient[3].outcome, Outcome::Warning { .. }));
        assert!(
            lenient[3].notes[0].contains("SHOULD"),
            "{:?}",
            lenient[3].notes
        );
        let counts = Report::new("t".into(), lenient).counts();
        assert_eq!((counts.failed, counts.warnings), (2, 2));

        let mut strict = records();
        apply_severity(&mut strict, true);
        apply_known_findings(&mut strict, &findings);
        assert!(matches!(strict[1].outcome, Outcome::Failed { .. }));
        // Under strict: true a listed SHOULD is a known finding like any listed failure.
        assert!(matches!(strict[3].outcome, Outcome::KnownFinding { .. }));
        let counts = Report::new("t".into(), strict).counts();
        assert_eq!(
            (counts.failed, counts.warnings, counts.known_findings),
            (3, 0, 1)
        );
    }
}

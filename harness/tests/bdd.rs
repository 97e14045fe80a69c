//! The self-test of the verdicts, in both directions. Runs every feature against the embedded
//! reference server; then with each fault switched on, checking that exactly the scenarios
//! tagged `@fault-<name>` fail or, for a `@should` scenario, warn (every check must be able to
//! fail, and a fault must not break unrelated checks); then with each legal variant switched
//! on, checking that nothing fails or warns (a check must not fault a server that behaves as
//! the RFCs allow). Every scenario carries one severity tag (`@must`, `@should`, `@quality`).
//! The runs go on side by side (`BDD_JOBS`, default 16); `BDD_ONLY=name,name` picks some of
//! them.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::rc::Rc;

use futures::StreamExt as _;
use futures::future::LocalBoxFuture;
use harness::conform::{self, RunOptions};
use harness::report::{Outcome, Report, Severity};
use harness::spec::TargetSpec;
use reference_server::config::PopBeforeSmtp;
use reference_server::faults::{CommandFault, FaultAction, Policy};
use reference_server::{Config, Role, TlsMode, Variant};

type Configure = fn(&mut Config);

/// How much a fault may break.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Exactly the scenarios tagged `@fault-<name>` fail.
    Exact,
    /// The tagged scenarios fail; the fault breaks something every session needs, so others
    /// may fail too.
    Broad,
}

/// Misbehaving servers made by config or injected replies rather than a policy fault; every
/// policy fault of the reference server is exercised too, with `Scope::Exact`.
const CONFIGURED: &[(&str, Scope, Configure)] = &[
    ("smtp_without_tls", Scope::Exact, |c| {
        set_tls(c, Role::Smtp, TlsMode::None)
    }),
    ("submission_without_tls", Scope::Broad, |c| {
        set_tls(c, Role::Submission, TlsMode::None)
    }),
    ("submissions_plaintext", Scope::Exact, |c| {
        set_tls(c, Role::Submissions, TlsMode::None)
    }),
    // Port 110 without STLS: its scenarios fail, and the STLS-injection check has nothing to
    // check (refusing STLS is safe), so it passes.
    ("pop3_without_tls", Scope::Broad, |c| {
        set_tls(c, Role::Pop3, TlsMode::None)
    }),
    // The POP3 scenarios that do not name a port use 995, so every one of them breaks.
    ("pop3s_plaintext", Scope::Broad, |c| {
        set_tls(c, Role::Pop3s, TlsMode::None)
    }),
    // Port 143 without STARTTLS: only its own scenarios name it.
    ("imap_without_tls", Scope::Exact, |c| {
        set_tls(c, Role::Imap, TlsMode::None)
    }),
    // The IMAP scenarios that do not name a port use 993, so every one of them breaks.
    ("imaps_plaintext", Scope::Broad, |c| {
        set_tls(c, Role::Imaps, TlsMode::None)
    }),
    ("greeting_refused", Scope::Broad, |c| {
        inject(c, "CONNECT", 554, "5.3.2 no service here")
    }),
    ("recipient_limit_50", Scope::Exact, |c| {
        c.limits.recipients = 50
    }),
    ("vrfy_refused", Scope::Exact, |c| {
        inject(c, "VRFY", 550, "VRFY refused")
    }),
    ("rset_refused", Scope::Exact, |c| {
        inject(c, "RSET", 502, "5.5.1 RSET not implemented")
    }),
    ("help_unimplemented", Scope::Exact, |c| {
        inject(c, "HELP", 502, "5.5.1 HELP not implemented")
    }),
    ("quit_refused", Scope::Exact, |c| {
        inject(c, "QUIT", 554, "5.5.0 not now")
    }),
    ("helo_refused", Scope::Exact, |c| {
        inject(c, "HELO", 502, "5.5.1 use EHLO")
    }),
];

fn enable_pop_before_smtp(config: &mut Config) {
    config.pop3.pop_before_smtp = Some(PopBeforeSmtp { window_secs: 600 });
}

fn enable_fcrdns(config: &mut Config) {
    config.relay.check_client_dns = true;
}

fn enable_sender_check(config: &mut Config) {
    config.relay.check_sender_domain = true;
}

fn set_tls(config: &mut Config, role: Role, mode: TlsMode) {
    for listener in &mut config.listeners {
        if listener.role == role {
            listener.tls = Some(mode);
        }
    }
}

fn inject(config: &mut Config, at: &str, code: u16, text: &str) {
    config.faults.commands.push(CommandFault {
        at: at.into(),
        probability: 1.0,
        action: FaultAction::Reply {
            code,
            text: text.into(),
        },
    });
}

/// The scenarios a fault was caught by: those that failed, and the `@should` ones that warned
/// (a SHOULD check shows it can fail by warning).
fn caught(report: &Report) -> BTreeSet<String> {
    report
        .failures()
        .chain(report.warnings())
        .map(|r| format!("{}:{} {}", r.file, r.line, r.scenario))
        .collect()
}

/// The counts of a run as a log line.
fn count_line(report: &Report) -> String {
    harness::report::format_counts(&report.counts())
}

fn tagged(report: &Report, tag: &str) -> BTreeSet<String> {
    report
        .scenarios
        .iter()
        .filter(|r| r.tags.iter().any(|t| t == tag))
        .map(|r| format!("{}:{} {}", r.file, r.line, r.scenario))
        .collect()
}

async fn run(configure: impl FnOnce(&mut Config) + Send + 'static) -> Report {
    let options = RunOptions::new(conform::default_features_dir());
    conform::run(TargetSpec::Embedded(Box::new(configure)), &options)
        .await
        .expect("the conformance run could not start")
}

/// A run of the whole suite with legal variants switched on. No scenario may fail, and a
/// scenario that does not run must carry one of `may_skip`, so that a variant cannot pass by
/// switching the suite off.
struct VariantRun {
    name: &'static str,
    variants: &'static [Variant],
    may_skip: &'static [&'static str],
    /// Run through a target profile, as a third-party server is: delivery checks read the
    /// mailboxes over IMAP and POP3 scenarios add their messages over SMTP, instead of the
    /// embedded server's store doing both.
    via_profile: bool,
}

const fn direct(
    name: &'static str,
    variants: &'static [Variant],
    may_skip: &'static [&'static str],
) -> VariantRun {
    VariantRun {
        name,
        variants,
        may_skip,
        via_profile: false,
    }
}

/// Every SMTP variant: they all go together.
const SMTP_ALL: &[Variant] = &[
    Variant::SmtpCompletesMessages,
    Variant::SmtpTraceLayout,
    Variant::SmtpHeaderCase,
    Variant::SmtpErrorLimit5yz,
    Variant::SmtpProbeDefence,
    Variant::SmtpNoEnhancedStatusCodes,
    Variant::SmtpNoPipelining,
    Variant::SmtpNoChunking,
    Variant::SmtpNo8bitmime,
    Variant::SmtpNoSmtputf8,
    Variant::SmtpNoSize,
    Variant::SmtpOtherTexts,
    Variant::SmtpNoAuthOnRelayPort,
    Variant::SmtpReplyIds,
    Variant::RelayPlainBounces,
];

/// What [`SMTP_ALL`] leaves a scenario without.
const SMTP_ALL_MAY_SKIP: &[&str] = &[
    "needs-AUTH",
    "needs-ENHANCEDSTATUSCODES",
    "needs-PIPELINING",
    "needs-CHUNKING",
    "needs-8BITMIME",
    "needs-SMTPUTF8",
    "needs-SIZE-limit",
];

/// Every variant of the reference server is in at least one run.
const VARIANT_RUNS: &[VariantRun] = &[
    // ---- connections ----
    // The embedded target does not tell the harness this limit: the profile's default copes.
    direct("connection_limit_4", &[Variant::ConnectionLimit4], &[]),
    // Through a profile that says nothing of it, delivery checks read mailboxes over IMAP.
    VariantRun {
        name: "connection_limit_4_via_profile",
        variants: &[Variant::ConnectionLimit4],
        may_skip: &[],
        via_profile: true,
    },
    // ---- smtp ----
    direct(
        "smtp_completes_messages",
        &[Variant::SmtpCompletesMessages],
        &[],
    ),
    direct("smtp_trace_layout", &[Variant::SmtpTraceLayout], &[]),
    direct("smtp_header_case", &[Variant::SmtpHeaderCase], &[]),
    direct("smtp_error_limit_5yz", &[Variant::SmtpErrorLimit5yz], &[]),
    direct("smtp_probe_defence", &[Variant::SmtpProbeDefence], &[]),
    direct(
        "smtp_no_enhancedstatuscodes",
        &[Variant::SmtpNoEnhancedStatusCodes],
        &["needs-ENHANCEDSTATUSCODES"],
    ),
    direct(
        "smtp_no_pipelining",
        &[Variant::SmtpNoPipelining],
        &["needs-PIPELINING"],
    ),
    direct(
        "smtp_no_chunking",
        &[Variant::SmtpNoChunking],
        &["needs-CHUNKING"],
    ),
    direct(
        "smtp_no_8bitmime",
        &[Variant::SmtpNo8bitmime],
        &["needs-8BITMIME"],
    ),
    direct(
        "smtp_no_smtputf8",
        &[Variant::SmtpNoSmtputf8],
        &["needs-SMTPUTF8"],
    ),
    direct(
        "smtp_no_size",
        &[Variant::SmtpNoSize],
        &["needs-SIZE-limit"],
    ),
    direct("smtp_other_texts", &[Variant::SmtpOtherTexts], &[]),
    direct(
        "smtp_no_auth_on_relay_port",
        &[Variant::SmtpNoAuthOnRelayPort],
        &["needs-AUTH"],
    ),
    direct("smtp_reply_ids", &[Variant::SmtpReplyIds], &[]),
    direct(
        "relay_retries_slowly",
        &[Variant::RelayRetriesSlowly],
        &["relay-retry"],
    ),
    direct("relay_plain_bounces", &[Variant::RelayPlainBounces], &[]),
    // Every SMTP variant at once, on the embedded server and through a profile (delivery
    // checks then read the mailboxes over IMAP).
    direct("smtp_all", SMTP_ALL, SMTP_ALL_MAY_SKIP),
    VariantRun {
        name: "smtp_all_via_profile",
        variants: SMTP_ALL,
        may_skip: SMTP_ALL_MAY_SKIP,
        via_profile: true,
    },
    // ---- pop3 ----
    direct(
        "pop3_no_sasl",
        &[Variant::Pop3NoSasl],
        &["needs-pop3-SASL-PLAIN"],
    ),
    direct("pop3_no_top", &[Variant::Pop3NoTop], &["needs-pop3-TOP"]),
    direct("pop3_no_uidl", &[Variant::Pop3NoUidl], &["needs-pop3-UIDL"]),
    direct("pop3_no_resp_codes", &[Variant::Pop3NoRespCodes], &[]),
    direct(
        "pop3_no_pipelining",
        &[Variant::Pop3NoPipelining],
        &["needs-pop3-PIPELINING"],
    ),
    direct("pop3_other_texts", &[Variant::Pop3OtherTexts], &[]),
    direct("pop3_no_capa", &[Variant::Pop3NoCapa], POP3_EXTENSIONS),
    // Other mail, a 20 MiB message and NUL octets among it, found past without UIDL or TOP.
    direct(
        "pop3_preloaded_no_uidl_no_top",
        &[
            Variant::MailboxesPreloaded,
            Variant::Pop3NoUidl,
            Variant::Pop3NoTop,
        ],
        &["needs-pop3-UIDL", "needs-pop3-TOP"],
    ),
    // Every POP3 variant that keeps CAPA, as a third-party server is reached: messages added
    // over SMTP and found with RETR alone.
    VariantRun {
        name: "pop3_minimal_via_profile",
        variants: &[
            Variant::MailboxesPreloaded,
            Variant::Pop3NoSasl,
            Variant::Pop3NoTop,
            Variant::Pop3NoUidl,
            Variant::Pop3NoRespCodes,
            Variant::Pop3NoPipelining,
            Variant::Pop3OtherTexts,
        ],
        may_skip: &[
            "needs-pop3-SASL-PLAIN",
            "needs-pop3-TOP",
            "needs-pop3-UIDL",
            "needs-pop3-PIPELINING",
        ],
        via_profile: true,
    },
    // The busy refusal without a response code: a plain -ERR greeting.
    direct(
        "connection_limit_4_pop3_no_resp_codes",
        &[Variant::ConnectionLimit4, Variant::Pop3NoRespCodes],
        &[],
    ),
    // ---- imap ----
    direct("imap_namespace_inbox", &[Variant::ImapNamespaceInbox], &[]),
    direct(
        "imap_without_special_use",
        &[Variant::ImapWithoutSpecialUse],
        &["needs-imap-SPECIAL-USE"],
    ),
    direct(
        "imap_no_sasl_ir",
        &[Variant::ImapNoSaslIr],
        &["needs-imap-SASL-IR"],
    ),
    direct(
        "imap_no_literal_plus",
        &[Variant::ImapNoLiteralPlus],
        &["needs-imap-LITERAL+"],
    ),
    direct(
        "imap_no_unselect",
        &[Variant::ImapNoUnselect],
        &["needs-imap-UNSELECT"],
    ),
    direct("imap_no_move", &[Variant::ImapNoMove], &["needs-imap-MOVE"]),
    direct(
        "imap_no_condstore",
        &[Variant::ImapNoCondstore],
        &["needs-imap-CONDSTORE"],
    ),
    direct("imap_no_idle", &[Variant::ImapNoIdle], &["needs-imap-IDLE"]),
    direct(
        "imap_no_uidplus",
        &[Variant::ImapNoUidplus],
        &["needs-imap-UIDPLUS"],
    ),
    direct(
        "imap_no_children",
        &[Variant::ImapNoChildren],
        &["needs-imap-CHILDREN"],
    ),
    direct(
        "imap_no_namespace",
        &[Variant::ImapNoNamespace],
        &["needs-imap-NAMESPACE"],
    ),
    direct("imap_idle_polling", &[Variant::ImapIdlePolling], &[]),
    direct("imap_chatter", &[Variant::ImapChatter], &[]),
    direct("imap_other_texts", &[Variant::ImapOtherTexts], &[]),
    // ---- mailboxes ----
    direct("mailboxes_preloaded", &[Variant::MailboxesPreloaded], &[]),
    VariantRun {
        name: "mailboxes_preloaded_via_profile",
        variants: &[Variant::MailboxesPreloaded],
        may_skip: &[],
        via_profile: true,
    },
    // ---- combinations ----
    // A Cyrus- or Courier-like IMAP server: another namespace, no special use, polling IDLE,
    // talkative, in its own words.
    direct(
        "imap_quirks_together",
        &[
            Variant::ImapNamespaceInbox,
            Variant::ImapWithoutSpecialUse,
            Variant::ImapIdlePolling,
            Variant::ImapChatter,
            Variant::ImapOtherTexts,
        ],
        &["needs-imap-SPECIAL-USE"],
    ),
    // A bare IMAP4rev1 server: none of the optional extensions a variant can leave out.
    direct(
        "imap_bare_imap4rev1",
        &[
            Variant::ImapNoNamespace,
            Variant::ImapWithoutSpecialUse,
            Variant::ImapNoSaslIr,
            Variant::ImapNoLiteralPlus,
            Variant::ImapNoUnselect,
            Variant::ImapNoMove,
            Variant::ImapNoCondstore,
            Variant::ImapNoIdle,
            Variant::ImapNoUidplus,
            Variant::ImapNoChildren,
        ],
        &[
            "needs-imap-NAMESPACE",
            "needs-imap-SPECIAL-USE",
            "needs-imap-SASL-IR",
            "needs-imap-LITERAL+",
            "needs-imap-UNSELECT",
            "needs-imap-MOVE",
            "needs-imap-CONDSTORE",
            "needs-imap-IDLE",
            "needs-imap-UIDPLUS",
            "needs-imap-CHILDREN",
        ],
    ),
    // Every variant that can go with the others, on one server reached as a third-party one
    // is: a low connection limit the profile does not mention, full mailboxes, every SMTP
    // quirk, POP3 without its optional commands, IMAP in another namespace without its optional
    // extensions and talking more than it must. (Left out: imap_no_idle, which polling IDLE
    // stands in for; imap_no_namespace, which with the INBOX. namespace would leave a client no
    // way to learn the prefix; pop3_no_capa, which hides what the other POP3 variants show.)
    VariantRun {
        name: "everything_together_via_profile",
        variants: &[
            Variant::ConnectionLimit4,
            Variant::MailboxesPreloaded,
            Variant::SmtpCompletesMessages,
            Variant::SmtpTraceLayout,
            Variant::SmtpHeaderCase,
            Variant::SmtpErrorLimit5yz,
            Variant::SmtpProbeDefence,
            Variant::SmtpNoEnhancedStatusCodes,
            Variant::SmtpNoPipelining,
            Variant::SmtpNoChunking,
            Variant::SmtpNo8bitmime,
            Variant::SmtpNoSmtputf8,
            Variant::SmtpNoSize,
            Variant::SmtpOtherTexts,
            Variant::SmtpNoAuthOnRelayPort,
            Variant::SmtpReplyIds,
            Variant::RelayPlainBounces,
            Variant::Pop3NoSasl,
            Variant::Pop3NoTop,
            Variant::Pop3NoUidl,
            Variant::Pop3NoRespCodes,
            Variant::Pop3NoPipelining,
            Variant::Pop3OtherTexts,
            Variant::ImapNamespaceInbox,
            Variant::ImapWithoutSpecialUse,
            Variant::ImapNoSaslIr,
            Variant::ImapNoLiteralPlus,
            Variant::ImapNoUnselect,
            Variant::ImapNoMove,
            Variant::ImapNoCondstore,
            Variant::ImapIdlePolling,
            Variant::ImapNoUidplus,
            Variant::ImapNoChildren,
            Variant::ImapChatter,
            Variant::ImapOtherTexts,
        ],
        may_skip: &[
            "needs-AUTH",
            "needs-ENHANCEDSTATUSCODES",
            "needs-PIPELINING",
            "needs-CHUNKING",
            "needs-8BITMIME",
            "needs-SMTPUTF8",
            "needs-SIZE-limit",
            "needs-pop3-SASL-PLAIN",
            "needs-pop3-TOP",
            "needs-pop3-UIDL",
            "needs-pop3-RESP-CODES",
            "needs-pop3-PIPELINING",
            "needs-imap-SPECIAL-USE",
            "needs-imap-SASL-IR",
            "needs-imap-LITERAL+",
            "needs-imap-UNSELECT",
            "needs-imap-MOVE",
            "needs-imap-CONDSTORE",
            "needs-imap-UIDPLUS",
            "needs-imap-CHILDREN",
        ],
        via_profile: true,
    },
];

/// Every `@needs-pop3-` tag: a server that answers no CAPA advertises none of them.
const POP3_EXTENSIONS: &[&str] = &[
    "needs-pop3-CAPA",
    "needs-pop3-USER",
    "needs-pop3-SASL-PLAIN",
    "needs-pop3-TOP",
    "needs-pop3-UIDL",
    "needs-pop3-PIPELINING",
];

/// Scenarios the embedded default skips: policies that are off in the server's defaults and
/// run in their own `switched_on` jobs.
const OFF_BY_DEFAULT: [&str; 3] = ["pop-before-smtp", "fcrdns", "sender-domain"];

/// Suite runs going on at once. Each has a server of its own; they mostly wait on the network
/// and the servers' deliberate delays, so many more runs than cores is fine. On the project's
/// 2-core machine the 158 runs took 229 s four at a time, 139 s eight and 118 s sixteen at a
/// time; thirty-two were no faster.
fn parallel_runs() -> usize {
    std::env::var("BDD_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(16)
}

/// `BDD_ONLY=name,name`: run only the jobs so named (`baseline`, `profile`, a fault, a variant
/// run, or `on:<tag>`), to try one change quickly.
fn selected(name: &str) -> bool {
    match std::env::var("BDD_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|n| n.trim() == name),
        _ => true,
    }
}

/// One suite run of the self-test and what it must show: `Ok` with a line for the log, or
/// `Err` with why it did not.
type Job = LocalBoxFuture<'static, Result<String, String>>;

#[tokio::main]
async fn main() -> ExitCode {
    let mut jobs: Vec<(String, Job)> = Vec::new();
    let mut failures = Vec::new();
    let baseline_report: Rc<RefCell<Option<Report>>> = Rc::default();

    if selected("baseline") {
        jobs.push((
            "baseline".into(),
            Box::pin(baseline(baseline_report.clone())),
        ));
    }
    for (tag, configure) in [
        ("pop-before-smtp", enable_pop_before_smtp as fn(&mut Config)),
        ("fcrdns", enable_fcrdns),
        ("sender-domain", enable_sender_check),
    ] {
        let name = format!("on:{tag}");
        if selected(&name) {
            jobs.push((name, Box::pin(switched_on(tag, configure))));
        }
    }

    // drop_after_ack loses one message in ten counted over the whole server, so which scenario
    // it hits depends on the order they run in; it is there for `harness load --verify`, and
    // harness/tests/it/load.rs shows that check fail with it.
    let policy_faults = Policy::ALL
        .iter()
        .filter(|p| **p != Policy::DropAfterAck)
        .map(|policy| {
            let policy = *policy;
            let configure: Box<dyn FnOnce(&mut Config) + Send> = Box::new(move |c: &mut Config| {
                c.faults.policy.insert(policy);
                if policy == Policy::PopBeforeSmtpIgnored {
                    // The fault only shows where POP-before-SMTP is configured.
                    enable_pop_before_smtp(c);
                }
                if policy == Policy::RelayNoFcrdns {
                    // Likewise for the reverse DNS check on port 25.
                    enable_fcrdns(c);
                }
                if policy == Policy::RelayNoSenderCheck {
                    enable_sender_check(c);
                }
            });
            (policy.name(), Scope::Exact, configure)
        });
    let configured = CONFIGURED.iter().map(|(name, scope, configure)| {
        let configure: Box<dyn FnOnce(&mut Config) + Send> = Box::new(*configure);
        (*name, *scope, configure)
    });
    let faults: Vec<_> = policy_faults.chain(configured).collect();
    let known_faults: BTreeSet<String> = faults
        .iter()
        .map(|(name, _, _)| (*name).to_owned())
        .collect();
    for (name, scope, configure) in faults {
        if selected(name) {
            jobs.push((name.into(), Box::pin(fault_fails(name, scope, configure))));
        }
    }

    let mut covered = BTreeSet::new();
    for run in VARIANT_RUNS {
        covered.extend(run.variants.iter().copied());
        if selected(run.name) {
            jobs.push((run.name.into(), Box::pin(variant_passes(run))));
        }
    }
    for variant in Variant::ALL {
        if !covered.contains(variant) {
            failures.push(format!(
                "variant {}: no run in VARIANT_RUNS switches it on",
                variant.name()
            ));
        }
    }

    if selected("profile") {
        jobs.push(("profile".into(), Box::pin(through_a_profile())));
    }

    let total = jobs.len();
    let mut results = futures::stream::iter(
        jobs.into_iter()
            .map(|(name, job)| async move { (name, job.await) }),
    )
    .buffer_unordered(parallel_runs());
    let mut passed = 0usize;
    let mut done = 0usize;
    while let Some((name, result)) = results.next().await {
        done += 1;
        match result {
            Ok(line) => {
                println!("[{done}/{total}] {name}: {line}");
                passed += 1;
            }
            Err(why) => {
                println!("[{done}/{total}] {name}: FAILED");
                failures.push(format!("{name}: {why}"));
            }
        }
    }

    if let Some(report) = baseline_report.borrow().as_ref() {
        failures.extend(tag_problems(report, &known_faults));
    }
    for failure in &failures {
        println!("FAILED {failure}");
    }
    println!("{passed} passed, {} failed", failures.len());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every scenario against the embedded default passes, but the ones for policies that are off
/// by default. The report is kept for [`tag_problems`].
async fn baseline(keep: Rc<RefCell<Option<Report>>>) -> Result<String, String> {
    let baseline = run(|_| {}).await;
    let result = judge_baseline(&baseline);
    *keep.borrow_mut() = Some(baseline);
    result
}

fn judge_baseline(baseline: &Report) -> Result<String, String> {
    let counts = baseline.counts();
    let line = format!(
        "{} scenarios, {}",
        baseline.scenarios.len(),
        count_line(baseline)
    );
    let off_by_default = baseline
        .scenarios
        .iter()
        .filter(|r| r.tags.iter().any(|t| OFF_BY_DEFAULT.contains(&t.as_str())))
        .count();
    if baseline.success()
        && counts.warnings == 0
        && counts.skipped == off_by_default
        && counts.not_applicable == 0
    {
        Ok(line)
    } else {
        Err(format!(
            "every scenario but {OFF_BY_DEFAULT:?} must pass, without a warning, against the embedded default ({line})\n{}",
            baseline.render()
        ))
    }
}

/// Every scenario names a fault that makes it fail, and only faults the self-test runs, and
/// says what it checks with exactly one severity tag. Read from the baseline run, which has
/// every scenario.
fn tag_problems(report: &Report, known_faults: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for record in &report.scenarios {
        match Severity::tagged(&record.tags)[..] {
            [_] => {}
            [] => problems.push(format!(
                "{}:{} {}: no severity tag (@must, @should or @quality), so no one can tell a \
                 failure from a warning",
                record.file, record.line, record.scenario
            )),
            ref several => problems.push(format!(
                "{}:{} {}: {} severity tags ({}); a scenario checks one kind of requirement",
                record.file,
                record.line,
                record.scenario,
                several.len(),
                several
                    .iter()
                    .map(|s| format!("@{}", s.tag()))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
        if !record.tags.iter().any(|t| t.starts_with("fault-")) {
            problems.push(format!(
                "{}:{} {}: no @fault- tag, so nothing shows this check can fail",
                record.file, record.line, record.scenario
            ));
        }
        for tag in record.tags.iter().filter_map(|t| t.strip_prefix("fault-")) {
            if !known_faults.contains(tag) {
                problems.push(format!(
                    "{}:{} is tagged @fault-{tag}, but no such fault is exercised",
                    record.file, record.line
                ));
            }
        }
    }
    problems
}

/// With a fault switched on, exactly the scenarios tagged `@fault-<name>` fail or warn (with
/// [`Scope::Broad`], at least those).
async fn fault_fails(
    name: &'static str,
    scope: Scope,
    configure: Box<dyn FnOnce(&mut Config) + Send>,
) -> Result<String, String> {
    let report = run(configure).await;
    let got = caught(&report);
    let expected = tagged(&report, &format!("fault-{name}"));
    if expected.is_empty() {
        Err(format!("no scenario is tagged @fault-{name}"))
    } else if scope == Scope::Broad && got.is_superset(&expected) {
        Ok(format!(
            "the {} covering scenario(s) fail or warn ({} in all: it breaks every session)",
            expected.len(),
            got.len()
        ))
    } else if got == expected {
        let warned = report.warnings().count();
        Ok(format!(
            "the {} covering scenario(s) fail{}, nothing else",
            got.len(),
            if warned > 0 {
                format!(" ({warned} of them SHOULD checks, as warnings)")
            } else {
                String::new()
            }
        ))
    } else {
        let missing: Vec<_> = expected.difference(&got).collect();
        let extra: Vec<_> = got.difference(&expected).collect();
        let mut why = format!(
            "covering scenarios that still passed: {missing:?}; unrelated scenarios that failed or warned: {extra:?}"
        );
        for record in report.failures().chain(report.warnings()) {
            if let Some((_, message, _)) = record.outcome.details() {
                why.push_str(&format!(
                    "\n  {}:{} {}: {message}",
                    record.file,
                    record.line,
                    if matches!(record.outcome, Outcome::Warning { .. }) {
                        "warned"
                    } else {
                        "failed"
                    }
                ));
            }
        }
        Err(why)
    }
}

/// With legal variants switched on, nothing fails or warns, and whatever does not run is
/// tagged with one of `may_skip` (or is off by default, or, through a profile, on a port it
/// leaves out).
async fn variant_passes(variant: &'static VariantRun) -> Result<String, String> {
    let VariantRun {
        name,
        variants,
        may_skip,
        via_profile,
    } = variant;
    let configure = move |c: &mut Config| {
        for variant in *variants {
            c.variants.insert(*variant);
        }
    };
    let report = if *via_profile {
        through_profile(configure).await?
    } else {
        run(configure).await
    };
    let counts = report.counts();
    let line = count_line(&report);
    if counts.failed > 0 || counts.warnings > 0 {
        return Err(format!(
            "a legal server was judged wrong ({line}); fix the harness, not the variant\n{}",
            report.render()
        ));
    }
    let mut unexpected = Vec::new();
    for record in &report.scenarios {
        let ran = matches!(record.outcome, Outcome::Passed);
        let excused = record.tags.iter().any(|t| {
            OFF_BY_DEFAULT.contains(&t.as_str())
                || may_skip.contains(&t.as_str())
                || (*via_profile && LEFT_OUT_OF_PROFILE.contains(&t.as_str()))
        });
        if !ran && !excused {
            unexpected.push(format!(
                "{}:{} {}: {:?}",
                record.file, record.line, record.scenario, record.outcome
            ));
        }
    }
    if unexpected.is_empty() {
        Ok(line)
    } else {
        Err(format!(
            "variant run {name}: scenarios that did not run, without a tag the run allows to skip: {unexpected:#?}"
        ))
    }
}

/// With a policy that is off by default switched on, the scenarios tagged for it pass. (The rest
/// of the suite is not run with it on: a POP3 login would then let the harness's own address
/// send without AUTH, which other scenarios check is refused.)
async fn switched_on(tag: &'static str, configure: fn(&mut Config)) -> Result<String, String> {
    let mut options = RunOptions::new(conform::default_features_dir());
    options.tags = Some(format!("@{tag}"));
    let report = conform::run(TargetSpec::Embedded(Box::new(configure)), &options)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let counts = report.counts();
    if counts.passed == 0 || counts.passed != report.scenarios.len() {
        return Err(report.render());
    }
    Ok(format!(
        "{} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.skipped
    ))
}

/// The ports [`through_profile`] leaves out of its profile.
const LEFT_OUT_OF_PROFILE: [&str; 3] = ["port-submissions", "port-pop3", "port-imap"];

/// The third-party path: the reference server described by a profile file that leaves out the
/// submissions port, port 110 and port 143, with no direct store access: POP3 scenarios add
/// their messages over SMTP and delivery checks read the inboxes over IMAP (port 993) with the
/// profile's accounts. Nothing may fail, the left-out ports' scenarios are not applicable, and
/// every delivery check is carried out (none reported as not verified).
async fn through_a_profile() -> Result<String, String> {
    let report = through_profile(|_| {}).await?;
    let counts = report.counts();
    let line = count_line(&report);
    if counts.failed > 0 || counts.warnings > 0 {
        return Err(report.render());
    }
    for record in &report.scenarios {
        let left_out = record
            .tags
            .iter()
            .any(|t| LEFT_OUT_OF_PROFILE.contains(&t.as_str()));
        let skipped_on_purpose = record
            .tags
            .iter()
            .any(|t| OFF_BY_DEFAULT.contains(&t.as_str()));
        match &record.outcome {
            Outcome::NotApplicable { .. } if left_out => {}
            Outcome::Skipped { .. } if skipped_on_purpose => {}
            Outcome::Passed if !left_out => {}
            other => {
                return Err(format!(
                    "{}:{} {}: unexpected {other:?}",
                    record.file, record.line, record.scenario
                ));
            }
        }
    }
    if counts.not_applicable == 0 || counts.skipped == 0 || counts.passed == 0 {
        return Err(
            "expected passes, skips (policies left out) and not-applicable scenarios".into(),
        );
    }
    Ok(line)
}

/// Runs the suite against the embedded server, configured by `configure`, described by a
/// profile file as a third-party server would be (see [`through_a_profile`]).
async fn through_profile(
    configure: impl Fn(&mut Config) + Copy + Send + 'static,
) -> Result<Report, String> {
    // The server must be told the harness's DNS and MX ports before the run binds them: they
    // are picked by number, and the whole attempt is made again if one was taken in between.
    test_ports::retry_on_addr_in_use(|| profile_attempt(configure))
        .await
        .map_err(|e| format!("{e:#}"))
}

/// One attempt of [`through_profile`], with fresh DNS and MX ports.
async fn profile_attempt(
    configure: impl FnOnce(&mut Config) + Send + 'static,
) -> anyhow::Result<Report> {
    // The server relays through the DNS and to the MX the profile's relay section makes the
    // harness run, as a third-party server configured for the harness would.
    let (dns_port, mx_port) = (test_ports::unused_port()?, test_ports::unused_port()?);
    let embedded = harness::embedded::Embedded::start(move |c| {
        c.relay.dns = Some(([127, 0, 0, 1], dns_port).into());
        c.relay.port = mx_port;
        configure(c);
    })
    .await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("ca.pem"), embedded.server().cert_pem())?;
    let profile = embedded.profile();
    let yaml = format!(
        "name: {}\nhost: 127.0.0.1\ndomain: {}\ntls: {{ ca_file: ca.pem }}\n\
         ports: {{ smtp: {}, submission: {}, pop3s: {}, imaps: {} }}\naccounts:\n{}foreign_recipient: {}\n\
         skip_tags: [\"@pop-before-smtp\"]\n\
         relay: {{ remote_domain: remote.test, dns: \"127.0.0.1:{dns_port}\", \
         mx_addrs: [127.0.0.4, 127.0.0.5], mx_port: {mx_port}{retry} }}\n",
        serde_json::to_string(&format!("{} via a profile", profile.name))?,
        profile.domain,
        profile.ports.smtp.unwrap_or_default(),
        profile.ports.submission.unwrap_or_default(),
        profile.ports.pop3s.unwrap_or_default(),
        profile.ports.imaps.unwrap_or_default(),
        profile
            .accounts
            .iter()
            .map(|a| format!(
                "  - {{ address: {}, password: {} }}\n",
                a.address, a.password
            ))
            .collect::<String>(),
        profile.foreign_recipient,
        retry = profile
            .relay
            .as_ref()
            .and_then(|r| r.retry_within_secs)
            .map(|secs| format!(", retry_within_secs: {secs}"))
            .unwrap_or_default(),
    );
    let path = dir.path().join("profile.yaml");
    std::fs::write(&path, yaml)?;
    let options = RunOptions::new(conform::default_features_dir());
    let report = conform::run(TargetSpec::Profile(path), &options).await;
    embedded.shutdown().await;
    report
}

//! Runs every feature against the embedded reference server, then against the reference server
//! with each fault switched on, and checks that exactly the scenarios tagged
//! `@fault-<name>` fail: every check must be able to fail, and a fault must not break
//! unrelated checks.

use std::collections::BTreeSet;
use std::process::ExitCode;

use harness::conform::{self, RunOptions, TargetSpec};
use harness::report::{Outcome, Report};
use reference_server::config::PopBeforeSmtp;
use reference_server::faults::{CommandFault, FaultAction, Policy};
use reference_server::{Config, Role, TlsMode};

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

fn failed(report: &Report) -> BTreeSet<String> {
    report
        .failures()
        .map(|r| format!("{}:{} {}", r.file, r.line, r.scenario))
        .collect()
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

#[tokio::main]
async fn main() -> ExitCode {
    let (mut passed, mut failures) = (0usize, Vec::new());

    let baseline = run(|_| {}).await;
    let counts = baseline.counts();
    println!(
        "baseline: {} scenarios, {} passed, {} failed, {} skipped, {} not applicable",
        baseline.scenarios.len(),
        counts.passed,
        counts.failed,
        counts.skipped,
        counts.not_applicable
    );
    // The embedded default leaves POP-before-SMTP off, as the server's defaults do, so those
    // scenarios are skipped here and run in `pop_before_smtp_on` below.
    let off_by_default = baseline
        .scenarios
        .iter()
        .filter(|r| {
            r.tags
                .iter()
                .any(|t| t == "pop-before-smtp" || t == "fcrdns" || t == "sender-domain")
        })
        .count();
    if baseline.success() && counts.skipped == off_by_default && counts.not_applicable == 0 {
        passed += 1;
    } else {
        print!("{}", baseline.render());
        failures.push(
            "baseline: every scenario but @pop-before-smtp and @fcrdns must pass against the embedded default"
                .to_owned(),
        );
    }
    match switched_on("@pop-before-smtp", enable_pop_before_smtp).await {
        Ok(()) => passed += 1,
        Err(why) => failures.push(format!("POP-before-SMTP switched on: {why}")),
    }
    match switched_on("@fcrdns", enable_fcrdns).await {
        Ok(()) => passed += 1,
        Err(why) => failures.push(format!("reverse DNS check switched on: {why}")),
    }
    match switched_on("@sender-domain", enable_sender_check).await {
        Ok(()) => passed += 1,
        Err(why) => failures.push(format!("sender domain check switched on: {why}")),
    }
    // drop_after_ack loses one message in ten counted over the whole server, so which scenario
    // it hits depends on the order they run in; it is there for `harness load --verify`, and
    // harness/tests/load.rs shows that check fail with it.
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
    let known_tags: BTreeSet<&str> = faults.iter().map(|(name, _, _)| *name).collect();
    for record in &baseline.scenarios {
        if !record.tags.iter().any(|t| t.starts_with("fault-")) {
            failures.push(format!(
                "{}:{} {}: no @fault- tag, so nothing shows this check can fail",
                record.file, record.line, record.scenario
            ));
        }
        for tag in record.tags.iter().filter_map(|t| t.strip_prefix("fault-")) {
            if !known_tags.contains(tag) {
                failures.push(format!(
                    "{}:{} is tagged @fault-{tag}, but no such fault is exercised",
                    record.file, record.line
                ));
            }
        }
    }

    for (name, scope, configure) in faults {
        let report = run(configure).await;
        let got = failed(&report);
        let expected = tagged(&report, &format!("fault-{name}"));
        if expected.is_empty() {
            failures.push(format!("fault {name}: no scenario is tagged @fault-{name}"));
        } else if scope == Scope::Broad && got.is_superset(&expected) {
            println!(
                "fault {name}: the {} covering scenario(s) fail ({} in all: it breaks every session)",
                expected.len(),
                got.len()
            );
            passed += 1;
        } else if got == expected {
            println!(
                "fault {name}: the {} covering scenario(s) fail, nothing else",
                got.len()
            );
            passed += 1;
        } else {
            let missing: Vec<_> = expected.difference(&got).collect();
            let extra: Vec<_> = got.difference(&expected).collect();
            for record in report.failures() {
                if let Outcome::Failed { message, .. } = &record.outcome {
                    println!(
                        "  fault {name}: {}:{} failed: {message}",
                        record.file, record.line
                    );
                }
            }
            failures.push(format!(
                "fault {name}: covering scenarios that still passed: {missing:?}; unrelated scenarios that failed: {extra:?}"
            ));
        }
    }

    match through_a_profile().await {
        Ok(()) => passed += 1,
        Err(why) => failures.push(format!("run through a target profile: {why}")),
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

/// With a policy that is off by default switched on, the scenarios tagged for it pass. (The rest
/// of the suite is not run with it on: a POP3 login would then let the harness's own address
/// send without AUTH, which other scenarios check is refused.)
async fn switched_on(tag: &str, configure: fn(&mut Config)) -> Result<(), String> {
    let mut options = RunOptions::new(conform::default_features_dir());
    options.tags = Some(tag.into());
    let report = conform::run(TargetSpec::Embedded(Box::new(configure)), &options)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let counts = report.counts();
    println!(
        "{tag} on: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.skipped
    );
    if counts.passed == 0 || counts.passed != report.scenarios.len() {
        return Err(report.render());
    }
    Ok(())
}

/// The third-party path: the reference server described by a profile file that leaves out the
/// submissions port, port 110 and port 143, with no direct store access: POP3 scenarios add
/// their messages over SMTP and delivery checks read the inboxes over IMAP (port 993) with the
/// profile's accounts. Nothing may fail, the left-out ports' scenarios are not applicable, and
/// every delivery check is carried out (none reported as not verified).
async fn through_a_profile() -> Result<(), String> {
    // The server relays through the DNS and to the MX the profile's relay section makes the
    // harness run, as a third-party server configured for the harness would.
    let (dns_port, mx_port) = (free_port()?, free_port()?);
    let embedded = harness::embedded::Embedded::start(move |c| {
        c.relay.dns = Some(([127, 0, 0, 1], dns_port).into());
        c.relay.port = mx_port;
    })
    .await
    .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("ca.pem"), embedded.server().cert_pem())
        .map_err(|e| e.to_string())?;
    let profile = embedded.profile();
    let yaml = format!(
        "name: reference via profile\nhost: 127.0.0.1\ndomain: {}\ntls: {{ ca_file: ca.pem }}\n\
         ports: {{ smtp: {}, submission: {}, pop3s: {}, imaps: {} }}\naccounts:\n{}foreign_recipient: {}\n\
         skip_tags: [\"@pop-before-smtp\"]\n\
         relay: {{ remote_domain: remote.test, dns: \"127.0.0.1:{dns_port}\", \
         mx_addrs: [127.0.0.4, 127.0.0.5], mx_port: {mx_port} }}\n",
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
    );
    let path = dir.path().join("profile.yaml");
    std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
    let options = RunOptions::new(conform::default_features_dir());
    let report = conform::run(TargetSpec::Profile(path), &options)
        .await
        .map_err(|e| format!("{e:#}"))?;
    embedded.shutdown().await;
    let counts = report.counts();
    println!(
        "profile run: {} passed, {} failed, {} skipped, {} not applicable",
        counts.passed, counts.failed, counts.skipped, counts.not_applicable
    );
    if counts.failed > 0 {
        return Err(report.render());
    }
    for record in &report.scenarios {
        let left_out = record
            .tags
            .iter()
            .any(|t| t == "port-submissions" || t == "port-pop3" || t == "port-imap");
        let skipped_on_purpose = record
            .tags
            .iter()
            .any(|t| t == "pop-before-smtp" || t == "fcrdns" || t == "sender-domain");
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
    Ok(())
}

/// A port free on 127.0.0.1 for both UDP and TCP just now.
fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".into())
}

//! Runs every feature against the embedded reference server, then against the reference server
//! with each fault switched on, and checks that exactly the scenarios tagged
//! `@fault-<name>` fail: every check must be able to fail, and a fault must not break
//! unrelated checks.

use std::collections::BTreeSet;
use std::process::ExitCode;

use harness::conform::{self, RunOptions, TargetSpec};
use harness::report::{Outcome, Report};
use reference_server::faults::{CommandFault, FaultAction};
use reference_server::{Config, Role, TlsMode};

type Configure = fn(&mut Config);

/// A misbehaving server: its name (the `@fault-` tag) and how to make it.
const FAULTS: &[(&str, Configure)] = &[
    ("open_relay", |c| c.faults.open_relay = true),
    ("auth_before_tls", |c| c.faults.auth_before_tls = true),
    ("starttls_injection", |c| c.faults.starttls_injection = true),
    ("bare_lf_end_of_data", |c| {
        c.faults.bare_lf_end_of_data = true
    }),
    ("legacy_tls", |c| c.faults.legacy_tls = true),
    ("smtp_without_tls", |c| {
        for listener in &mut c.listeners {
            if listener.role == Role::Smtp {
                listener.tls = Some(TlsMode::None);
            }
        }
    }),
    ("vrfy_refused", |c| {
        c.faults.commands.push(CommandFault {
            at: "VRFY".into(),
            probability: 1.0,
            action: FaultAction::Reply {
                code: 550,
                text: "VRFY refused".into(),
            },
        })
    }),
];

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

async fn run(configure: Configure) -> Report {
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
    if baseline.success() && counts.skipped == 0 && counts.not_applicable == 0 {
        passed += 1;
    } else {
        print!("{}", baseline.render());
        failures.push("baseline: every scenario must pass against the embedded default".to_owned());
    }
    let known_tags: BTreeSet<&str> = FAULTS.iter().map(|(name, _)| *name).collect();
    for record in &baseline.scenarios {
        for tag in record.tags.iter().filter_map(|t| t.strip_prefix("fault-")) {
            if !known_tags.contains(tag) {
                failures.push(format!(
                    "{}:{} is tagged @fault-{tag}, but no such fault is exercised",
                    record.file, record.line
                ));
            }
        }
    }

    for (name, configure) in FAULTS {
        let report = run(*configure).await;
        let got = failed(&report);
        let expected = tagged(&report, &format!("fault-{name}"));
        if expected.is_empty() {
            failures.push(format!("fault {name}: no scenario is tagged @fault-{name}"));
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

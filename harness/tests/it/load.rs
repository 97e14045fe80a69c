//! `harness load` against the embedded reference server and against targets that cannot be
//! loaded: every workload completes work without errors, the figures reach the JSON, budgets are
//! kept, and bad targets stop the run at once with a message that says why. Counts only: nothing
//! here asserts on how fast anything went.

use std::path::PathBuf;
use std::time::Duration;

use harness::load::stats::Summary;
use harness::load::workload::{Kind, Workload};
use harness::load::{self, LoadOptions, Mode};
use harness::spec::TargetSpec;

fn options(workload: Workload, mode: Mode) -> LoadOptions {
    let mut options = LoadOptions::new(workload, mode);
    options.duration = Duration::from_millis(800);
    options.warmup = Duration::ZERO;
    options.progress = false;
    options.timeout = Duration::from_secs(20);
    options.seed = 3;
    options
}

fn closed(kind: Kind, connections: usize) -> LoadOptions {
    options(Workload::builtin(kind), Mode::Closed { connections })
}

fn embedded() -> TargetSpec {
    TargetSpec::Embedded(Box::new(|_| {}))
}

async fn run(target: TargetSpec, options: LoadOptions) -> Summary {
    load::run(target, options).await.expect("load run")
}

fn assert_clean(summary: &Summary, phases: &[&str]) {
    assert!(summary.completed > 0, "{}", summary.render());
    assert_eq!(summary.errors, 0, "{}", summary.render());
    for phase in phases {
        let figures = summary
            .latency_ms
            .get(*phase)
            .unwrap_or_else(|| panic!("no {phase} phase in\n{}", summary.render()));
        assert!(figures.count > 0, "{phase}: {figures:?}");
        assert!(
            figures.p50 <= figures.p99 && figures.p99 <= figures.max,
            "{phase}: {figures:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_workloads_deliver_without_errors() {
    let relay = run(embedded(), closed(Kind::Relay, 4)).await;
    assert_clean(
        &relay,
        &[
            "connect", "greeting", "ehlo", "mail", "rcpt", "data", "data_end", "quit", "session",
        ],
    );
    let mut submission = closed(Kind::Submission, 2);
    submission.per_connection = 3;
    let submission = run(embedded(), submission).await;
    assert_clean(&submission, &["starttls", "tls", "auth", "data_end"]);
    // Several messages per connection: one AUTH for every three messages at most.
    assert!(
        submission.latency_ms["auth"].count * 3 <= submission.completed + 6,
        "{}",
        submission.render()
    );
    let submissions = run(embedded(), closed(Kind::Submissions, 2)).await;
    assert_clean(&submissions, &["tls", "auth", "data_end"]);
    assert!(!submissions.latency_ms.contains_key("starttls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_workloads_read_what_was_seeded() {
    let pop3 = run(embedded(), closed(Kind::Pop3, 3)).await;
    assert_clean(
        &pop3,
        &["tls", "login", "stat", "retr", "dele", "quit", "refill"],
    );
    let imap = run(embedded(), closed(Kind::Imap, 3)).await;
    assert_clean(
        &imap,
        &[
            "tls",
            "login",
            "select",
            "fetch",
            "fetch_body",
            "store",
            "logout",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_hear_every_delivery() {
    let mut idle = options(Workload::builtin(Kind::ImapIdle), Mode::Open { rate: 20.0 });
    idle.idle_clients = 30;
    let summary = run(embedded(), idle).await;
    assert_clean(
        &summary,
        &["setup", "login", "select", "idle", "data_end", "notify"],
    );
    assert_eq!(summary.latency_ms["setup"].count, 30);
    // Every delivery is heard once, by its account's reporting client.
    assert_eq!(summary.completed, summary.latency_ms["data_end"].count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_starts_sessions_at_the_rate_and_records_queueing() {
    let mut open = options(Workload::builtin(Kind::Relay), Mode::Open { rate: 50.0 });
    open.duration = Duration::from_secs(1);
    let summary = run(embedded(), open).await;
    assert_clean(&summary, &["queue", "session"]);
    // 50 intended starts fall in the second, give or take the one at the edge.
    assert!(
        (48..=50).contains(&summary.completed),
        "{}",
        summary.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_budget_is_kept_exactly() {
    let mut budget = closed(Kind::Relay, 4);
    budget.duration = Duration::from_secs(60);
    budget.messages = Some(37);
    let summary = run(embedded(), budget).await;
    assert_eq!(summary.completed, 37, "{}", summary.render());
    assert_eq!(summary.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_acknowledged_message() {
    let mut verified = closed(Kind::Relay, 4);
    verified.verify = true;
    let summary = run(embedded(), verified).await;
    let verify = summary.verify.clone().expect("verify figures");
    // The pre-flight message counts too.
    assert!(verify.acknowledged > summary.completed, "{verify:?}");
    assert_eq!((verify.missing, verify.duplicated), (0, 0), "{verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_server_that_loses_acknowledged_mail() {
    let losing = TargetSpec::Embedded(Box::new(|config| {
        config
            .faults
            .policy
            .insert(reference_server::faults::Policy::DropAfterAck);
    }));
    let mut verified = closed(Kind::Relay, 4);
    verified.verify = true;
    verified.verify_wait = Duration::from_secs(1);
    let summary = run(losing, verified).await;
    // Every message got its 250: the load itself saw nothing wrong.
    assert_eq!(summary.errors, 0, "{}", summary.render());
    let verify = summary.verify.clone().expect("verify figures");
    // One in ten is lost, the pre-flight message (the first) among them.
    assert!(verify.missing >= 1, "{verify:?}");
    assert_eq!(
        verify.missing,
        verify.acknowledged.div_ceil(10),
        "{verify:?}"
    );
    assert!(!verify.missing_examples.is_empty());
    assert!(summary.render().contains("missing"), "{}", summary.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_workload_file_runs_each_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.yaml");
    std::fs::write(
        &path,
        "name: office\nmix:\n  - { workload: submissions, weight: 2, accounts: \"0-49\" }\n  - { workload: imap, weight: 1, accounts: \"50-99\" }\n",
    )
    .unwrap();
    let workload = Workload::from_arg(path.to_str().unwrap()).unwrap();
    let summary = run(
        embedded(),
        options(workload, Mode::Closed { connections: 4 }),
    )
    .await;
    assert_eq!(summary.workload, "office");
    assert_clean(&summary, &["auth", "data_end", "select", "fetch"]);
}

/// A mix of submission, IMAP and POP3 with most sessions broken off on purpose.
fn faulty_mix(dir: &tempfile::TempDir) -> LoadOptions {
    let path = dir.path().join("mix.yaml");
    std::fs::write(
        &path,
        "name: soak\nmix:\n  - { workload: submissions, weight: 2, per_connection: 2, accounts: \"0-39\" }\n  - { workload: imap, weight: 1, accounts: \"40-69\" }\n  - { workload: pop3, weight: 1, accounts: \"70-99\" }\n",
    )
    .unwrap();
    let workload = Workload::from_arg(path.to_str().unwrap()).unwrap();
    let mut options = options(workload, Mode::Open { rate: 100.0 });
    options.duration = Duration::from_secs(2);
    options.client_faults = 0.6;
    options.rss_every = Duration::from_millis(200);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_broken_off_on_purpose_are_aborts_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = faulty_mix(&dir);
    options.verify = true;
    let summary = run(embedded(), options).await;
    let table = summary.render();
    assert_eq!(summary.errors, 0, "{table}");
    assert!(summary.completed > 0, "{table}");
    // About 120 of 200 sessions abort; each kind is picked often enough never to be missing.
    for kind in [
        "mid_data",
        "mid_literal",
        "mid_tls_handshake",
        "mid_command_line",
    ] {
        assert!(
            summary.aborts.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {table}"
        );
    }
    assert!(
        table.contains("client aborts (on purpose, not errors)"),
        "{table}"
    );
    let verify = summary.verify.clone().expect("verify figures");
    assert!(verify.acknowledged > 0 && verify.cut_off > 0, "{verify:?}");
    assert_eq!(
        (verify.missing, verify.duplicated, verify.inconsistent),
        (0, 0, 0),
        "{verify:?}"
    );
    assert_eq!(verify.cut_off_filed, 0, "{verify:?}");
    let rss = summary.server_rss.clone().expect("memory samples");
    assert!(rss.samples.len() >= 2 && rss.max_kib > 0, "{rss:?}");
    let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
    assert!(
        json["aborts"]["mid_literal"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert!(json["server_rss"]["samples"].as_array().unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_up_is_an_error_among_client_aborts() {
    let dir = tempfile::tempdir().unwrap();
    // The pre-flight message meets the fault three times in ten, and the run then refuses the
    // target; a few tries get past it.
    let mut summary = None;
    for _ in 0..10 {
        let hangs_up = TargetSpec::Embedded(Box::new(|config| {
            config
                .faults
                .commands
                .push(reference_server::faults::CommandFault {
                    at: "EOM".into(),
                    probability: 0.3,
                    action: reference_server::faults::FaultAction::Disconnect,
                });
        }));
        let mut options = faulty_mix(&dir);
        // Seeding goes over port 25 and would meet the fault too.
        options.seed = 0;
        match load::run(hangs_up, options).await {
            Ok(done) => {
                summary = Some(done);
                break;
            }
            Err(error) => {
                let error = format!("{error:#}");
                assert!(error.contains("pre-flight"), "{error}");
            }
        }
    }
    let summary = summary.expect("a run past the pre-flight");
    let table = summary.render();
    assert!(summary.aborts.values().sum::<u64>() > 0, "{table}");
    // The server's hang-ups after the message data are still the server's.
    assert!(summary.errors > 0, "{table}");
    assert!(summary.errors_by_phase.contains_key("data_end"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_has_the_documented_keys() {
    let summary = run(embedded(), closed(Kind::Relay, 2)).await;
    let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
    for key in [
        "workload",
        "duration_s",
        "completed",
        "errors",
        "throughput_per_s",
        "latency_ms",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_ms"]["session"].get(key).is_some(), "no {key}");
    }
    assert_eq!(json["workload"], "relay");
    assert!(json["throughput_per_s"].as_f64().unwrap() > 0.0);
}

// ---------------------------------------------------------------------------------------------
// Targets that cannot be loaded

fn profile(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("target.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

async fn refused(options: LoadOptions, path: PathBuf) -> String {
    format!(
        "{:#}",
        load::run(TargetSpec::Profile(path), options)
            .await
            .expect_err("the run should stop")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_stops_the_run_at_once() {
    // A loopback port where nothing listens.
    let nothing = test_ports::HeldPort::new().unwrap();
    let port = nothing.port();
    let dir = tempfile::tempdir().unwrap();
    let path = profile(
        &dir,
        &format!(
            "name: nothing\nhost: 127.0.0.1\ndomain: example.test\ntls: {{ verify: false }}\nports: {{ smtp: {port} }}\nforeign_recipient: x@elsewhere.test\n"
        ),
    );
    let error = refused(closed(Kind::Relay, 50), path.clone()).await;
    assert!(error.contains("pre-flight relay session failed"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    // Workloads that need what the profile lacks are refused before connecting.
    let error = refused(closed(Kind::Imap, 1), path).await;
    assert!(error.contains("needs accounts"), "{error}");
}

/// The reference server on ephemeral ports, and a profile for it with a wrong password or no
/// trusted certificate.
async fn reference_with_profile(
    dir: &tempfile::TempDir,
    password: &str,
    trust: bool,
) -> (reference_server::RunningServer, PathBuf) {
    reference_with_ports(dir, password, trust, true).await
}

async fn reference_with_ports(
    dir: &tempfile::TempDir,
    password: &str,
    trust: bool,
    imap: bool,
) -> (reference_server::RunningServer, PathBuf) {
    let server =
        reference_server::start(reference_server::Config::ephemeral(dir.path().join("data")))
            .await
            .unwrap();
    let port = |role| server.addr(role).unwrap().port();
    use reference_server::Role;
    let ca = if trust {
        server.cert_pem().to_owned()
    } else {
        // Another self-signed certificate: one the server does not use.
        reference_server::tls::load_or_generate(None, &dir.path().join("other"), "localhost")
            .unwrap()
            .cert_pem
    };
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let tls = "{ ca_file: ca.pem, server_name: localhost }";
    let path = profile(
        dir,
        &format!(
            "name: reference\nhost: 127.0.0.1\ndomain: example.test\ntls: {tls}\n\
             ports: {{ smtp: {}, submission: {}, submissions: {}, pop3s: {}{} }}\n\
             accounts:\n  - {{ address: alice@example.test, password: {password} }}\n\
             foreign_recipient: x@elsewhere.test\n",
            port(Role::Smtp),
            port(Role::Submission),
            port(Role::Submissions),
            port(Role::Pop3s),
            if imap {
                format!(", imaps: {}", port(Role::Imaps))
            } else {
                String::new()
            },
        ),
    );
    (server, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_the_run_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = reference_with_profile(&dir, "not-the-password", true).await;
    for kind in [Kind::Submissions, Kind::Pop3, Kind::Imap] {
        let mut options = closed(kind, 20);
        options.seed = 0;
        let error = refused(options, path.clone()).await;
        assert!(
            error.contains("refused the credentials of alice@example.test"),
            "{kind}: {error}"
        );
        // The conversation is shown, password and all being the user's own.
        assert!(error.contains("transcript:"), "{kind}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = reference_with_profile(&dir, "alice-secret", false).await;
    let error = refused(closed(Kind::Submissions, 20), path.clone()).await;
    assert!(error.contains("TLS handshake"), "{error}");
    // With the certificate trusted, the same target takes the load.
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = reference_with_profile(&dir, "alice-secret", true).await;
    let summary = run(TargetSpec::Profile(path), closed(Kind::Submissions, 2)).await;
    assert_clean(&summary, &["tls", "auth"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_over_pop3_when_the_target_has_no_imap() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = reference_with_ports(&dir, "alice-secret", true, false).await;
    let mut verified = closed(Kind::Submissions, 2);
    verified.verify = true;
    let summary = run(TargetSpec::Profile(path), verified).await;
    let verify = summary.verify.clone().expect("verify figures");
    assert!(verify.acknowledged > summary.completed, "{verify:?}");
    assert_eq!((verify.missing, verify.duplicated), (0, 0), "{verify:?}");
}

// ---------------------------------------------------------------------------------------------
// The command line

fn harness() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
}

#[test]
fn runs_from_the_command_line_merge_into_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for n in 0..2 {
        let json = dir.path().join(format!("run{n}.json"));
        let output = harness()
            .args([
                "load",
                "--workload",
                "relay",
                "--connections",
                "2",
                "--duration",
                "500ms",
            ])
            .args(["--warmup", "0s", "--quiet", "--json"])
            .arg(&json)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("phase (ms)"), "{stdout}");
        files.push(json);
    }
    let runs: Vec<Summary> = files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let merged_path = dir.path().join("merged.json");
    let output = harness()
        .args(["report", "merge"])
        .args(&files)
        .arg("--json")
        .arg(&merged_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let merged: Summary =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    assert_eq!(merged.runs, 2);
    assert_eq!(merged.completed, runs[0].completed + runs[1].completed);
    assert_eq!(
        merged.latency_ms["session"].count,
        runs[0].latency_ms["session"].count + runs[1].latency_ms["session"].count
    );
    // A file that is not a load report is named.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"workload\": 3}").unwrap();
    let output = harness()
        .args(["report", "merge"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.json"), "{stderr}");
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    for (args, expected) in [
        (vec!["--workload", "smpt"], "unknown workload `smpt`"),
        (vec!["--workload", "relay", "--size", "4 parsecs"], "--size"),
        (
            vec!["--workload", "relay", "--rate", "5", "--connections", "2"],
            "not both",
        ),
        (
            vec!["--workload", "relay", "--duration", "soon"],
            "--duration",
        ),
        (
            vec!["--workload", "pop3", "--accounts", "9-3"],
            "--accounts",
        ),
    ] {
        let output = harness().arg("load").args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn lost_mail_makes_the_command_fail() {
    let output = harness()
        .args([
            "load",
            "--workload",
            "relay",
            "--connections",
            "2",
            "--duration",
            "500ms",
        ])
        .args([
            "--warmup",
            "0s",
            "--quiet",
            "--verify",
            "--verify-wait",
            "1s",
        ])
        .args(["--fault", "drop_after_ack"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verify: acknowledged"), "{stdout}");
    assert!(stdout.contains("  missing <"), "{stdout}");
}

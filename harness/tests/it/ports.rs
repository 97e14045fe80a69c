//! `harness ports` against the embedded reference server on ephemeral ports: every role as it
//! should be; each policy fault that breaks a port's role shows up as the matching problem;
//! profiles with closed, left-out, mislabelled or untrusted ports; and the command line's exit
//! statuses and JSON. Nothing here asserts on time.

use std::collections::BTreeSet;
use std::path::PathBuf;

use harness::ports::{self, PortReport, PortRole, PortState, PortsOptions, PortsReport, TlsMode};
use harness::spec::TargetSpec;
use reference_server::faults::Policy;
use reference_server::{Config, Role};
use test_ports::HeldPort;

async fn embedded(configure: impl FnOnce(&mut Config) + Send + 'static) -> PortsReport {
    ports::run(
        TargetSpec::Embedded(Box::new(configure)),
        &PortsOptions::default(),
    )
    .await
    .expect("ports run")
}

async fn with_faults(faults: &'static [Policy]) -> PortsReport {
    embedded(move |config| config.faults.policy.extend(faults.iter().copied())).await
}

fn port(report: &PortsReport, role: PortRole) -> &PortReport {
    report
        .ports
        .iter()
        .find(|port| port.role == role)
        .unwrap_or_else(|| panic!("no {} row in\n{}", role.name(), report.render()))
}

/// Every (role, check) the report lists.
fn problems(report: &PortsReport) -> BTreeSet<(&'static str, String)> {
    report
        .ports
        .iter()
        .flat_map(|port| {
            port.problems
                .iter()
                .map(|problem| (port.role.name(), problem.check.clone()))
        })
        .collect()
}

fn expect_problems(report: &PortsReport, expected: &[(&'static str, &str)]) {
    let expected: BTreeSet<(&'static str, String)> = expected
        .iter()
        .map(|(role, check)| (*role, check.to_string()))
        .collect();
    assert_eq!(problems(report), expected, "\n{}", report.render());
    assert!(!report.success(), "{}", report.render());
    for port in report
        .ports
        .iter()
        .filter(|port| port.state != PortState::NotOffered)
    {
        assert_eq!(
            port.role_ok,
            Some(port.problems.is_empty()),
            "{}\n{}",
            port.role.name(),
            report.render()
        );
        for problem in &port.problems {
            assert!(!problem.evidence.is_empty(), "{problem:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_matches_every_role() {
    let report = with_faults(&[]).await;
    let text = report.render();
    assert!(report.success(), "{text}");
    assert_eq!(report.ports.len(), 7, "{text}");
    for role in PortRole::ALL {
        let port = port(&report, role);
        assert_eq!(port.state, PortState::Open, "{text}");
        assert_eq!(port.tls_mode, Some(role.required_tls()), "{text}");
        assert_eq!(port.role_ok, Some(true), "{text}");
        assert!(port.problems.is_empty(), "{text}");
        let accepted = |version: &str| port.tls_versions[version].accepted;
        assert_eq!(accepted("1.2"), Some(true), "{}: {text}", role.name());
        assert_eq!(accepted("1.3"), Some(true), "{}: {text}", role.name());
        assert_eq!(accepted("1.0"), Some(false), "{}: {text}", role.name());
        assert_eq!(accepted("1.1"), Some(false), "{}: {text}", role.name());
        let weak = port.weak_ciphers.as_ref().expect("a weak-suite probe");
        assert_eq!(weak.accepted, Some(false), "{}: {text}", role.name());
        let certificate = port.certificate.as_ref().expect("a certificate");
        assert!(
            certificate
                .alt_names
                .contains(&"DNS:mail.example.test".to_string()),
            "{certificate:?}"
        );
        assert!(certificate.days_left > 0, "{certificate:?}");
        assert_eq!(certificate.verified, Some(true), "{certificate:?}");
        match role.required_tls() {
            TlsMode::Implicit => assert!(port.auth_before_tls.is_none()),
            _ => {
                let auth = port.auth_before_tls.as_ref().expect("login before TLS");
                assert!(!auth.offered, "{auth:?}");
                // The reference server's accounts are the profile's: one attempt, refused.
                assert_eq!(auth.accepted, Some(false), "{auth:?}");
            }
        }
    }
    // The table has a row per role and says that all is well.
    for header in [
        "role",
        "state",
        "versions",
        "certificate",
        "auth before TLS",
    ] {
        assert!(text.contains(header), "{text}");
    }
    assert!(text.contains("submissions"), "{text}");
    assert!(text.contains("no (login refused)"), "{text}");
    assert!(text.contains("mail.example.test +3"), "{text}");
    assert!(
        text.contains("7 open, 0 closed, 0 not offered; every open port matches its role."),
        "{text}"
    );
    assert!(text.contains("subject   CN="), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_relay_is_reported_on_port_25() {
    let report = with_faults(&[Policy::OpenRelay]).await;
    expect_problems(&report, &[("smtp", "relay_refused")]);
    let problem = &port(&report, PortRole::Smtp).problems[0];
    assert!(
        problem
            .evidence
            .contains("RCPT TO:<someone@elsewhere.invalid> -> 250"),
        "{problem:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_before_tls_is_reported() {
    let report = with_faults(&[Policy::AuthBeforeTls]).await;
    expect_problems(
        &report,
        &[
            ("smtp", "auth_offered_before_tls"),
            ("smtp", "auth_accepted_before_tls"),
            ("submission", "auth_offered_before_tls"),
            ("submission", "auth_accepted_before_tls"),
        ],
    );
    let auth = port(&report, PortRole::Submission)
        .auth_before_tls
        .clone()
        .unwrap();
    assert!(auth.offered && auth.accepted == Some(true), "{auth:?}");
    assert!(auth.offered_evidence.contains("AUTH PLAIN"), "{auth:?}");
    assert!(
        auth.accepted_evidence
            .unwrap_or_default()
            .starts_with("235"),
        "{}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_and_imap_logins_before_tls_are_reported() {
    let report = with_faults(&[Policy::Pop3PlaintextAuth, Policy::ImapPlaintextLogin]).await;
    expect_problems(
        &report,
        &[
            ("pop3", "auth_offered_before_tls"),
            ("pop3", "auth_accepted_before_tls"),
            ("imap", "auth_offered_before_tls"),
            ("imap", "auth_accepted_before_tls"),
        ],
    );
    let imap = port(&report, PortRole::Imap)
        .auth_before_tls
        .clone()
        .unwrap();
    assert!(imap.offered_evidence.contains("CAPABILITY"), "{imap:?}");
    assert!(report.render().contains("OFFERED, ACCEPTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tls_versions_are_reported_on_every_tls_port() {
    let report = with_faults(&[Policy::LegacyTls]).await;
    let every: Vec<(&'static str, &str)> = PortRole::ALL
        .iter()
        .map(|role| (role.name(), "legacy_tls"))
        .collect();
    expect_problems(&report, &every);
    let smtp = port(&report, PortRole::Smtp);
    assert_eq!(smtp.tls_versions["1.0"].accepted, Some(true));
    assert_eq!(smtp.tls_versions["1.1"].accepted, Some(true));
    assert_eq!(smtp.problems.len(), 2, "{}", report.render());
    assert!(
        report.render().contains("1.0 1.1 1.2 1.3"),
        "{}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_cipher_suites_are_reported_on_every_tls_port() {
    let report = with_faults(&[Policy::WeakCiphers]).await;
    let every: Vec<(&'static str, &str)> = PortRole::ALL
        .iter()
        .map(|role| (role.name(), "weak_ciphers"))
        .collect();
    expect_problems(&report, &every);
    let imap = port(&report, PortRole::Imap);
    assert_eq!(
        imap.weak_ciphers.as_ref().and_then(|probe| probe.accepted),
        Some(true)
    );
    // The fault chooses the first suite offered, an anonymous one, and the evidence names it.
    assert!(
        imap.problems[0]
            .evidence
            .contains("TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
        "{}",
        report.render()
    );
    // The versions are as without the fault.
    assert_eq!(imap.tls_versions["1.0"].accepted, Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_missing_over_tls_is_reported_on_the_submission_ports() {
    let report = with_faults(&[Policy::AuthNotAdvertised]).await;
    expect_problems(
        &report,
        &[
            ("submission", "auth_offered"),
            ("submissions", "auth_offered"),
        ],
    );
}

/// An SMTP command fault of the embedded server, from its YAML form.
fn command_fault(yaml: &str) -> reference_server::faults::CommandFault {
    serde_saphyr::from_str(yaml).expect("command fault")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_that_turns_clients_away_is_reported() {
    let report = embedded(|config| {
        config.faults.commands.push(command_fault(
            "{ at: CONNECT, action: { reply: { code: 554, text: \"5.3.2 no service here\" } } }",
        ));
    })
    .await;
    expect_problems(
        &report,
        &[
            ("smtp", "greeting"),
            ("submission", "greeting"),
            ("submissions", "greeting"),
        ],
    );
    let smtp = &port(&report, PortRole::Smtp).problems[0];
    assert!(smtp.evidence.contains("554"), "{smtp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_hangs_up_mid_probe_is_reported() {
    let report = embedded(|config| {
        config
            .faults
            .commands
            .push(command_fault("{ at: EHLO, action: disconnect }"));
    })
    .await;
    expect_problems(
        &report,
        &[
            ("smtp", "probe"),
            ("submission", "probe"),
            ("submissions", "probe"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_without_auth_is_reported_on_the_submission_ports() {
    let report = with_faults(&[Policy::MailWithoutAuth]).await;
    expect_problems(
        &report,
        &[
            ("submission", "mail_requires_auth"),
            ("submissions", "mail_requires_auth"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_at_rcpt_instead_of_mail_is_allowed_and_noted() {
    // RFC 6409 lets a submission server refuse the unauthenticated transaction at RCPT (as
    // Postfix does): MAIL accepted, every RCPT refused. On port 25 that same refusal of local
    // mail is a problem.
    let report = embedded(|config| {
        config.faults.policy.insert(Policy::MailWithoutAuth);
        config.faults.commands.push(command_fault(
            "{ at: RCPT, action: { reply: { code: 554, text: \"5.7.1 Access denied\" } } }",
        ));
    })
    .await;
    expect_problems(&report, &[("smtp", "local_delivery")]);
    for role in [PortRole::Submission, PortRole::Submissions] {
        let notes = &port(&report, role).notes;
        assert_eq!(notes.len(), 1, "{}", report.render());
        assert!(
            notes[0]
                .starts_with("refuses the unauthenticated transaction at RCPT, not at MAIL: 554"),
            "{}",
            report.render()
        );
    }
    assert!(
        report.render().contains("\nNotes:\n"),
        "{}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_without_starttls_is_reported() {
    // No policy fault takes STARTTLS away; a listener configured without TLS does.
    let report = embedded(|config| {
        for listener in &mut config.listeners {
            if matches!(listener.role, Role::Smtp | Role::Pop3) {
                listener.tls = Some(reference_server::TlsMode::None);
            }
        }
    })
    .await;
    expect_problems(
        &report,
        &[
            ("smtp", "tls_mode"),
            ("pop3", "tls_mode"),
            // Without TLS at all, the reference server lets POP3 clients log in in the clear.
            ("pop3", "auth_offered_before_tls"),
            ("pop3", "auth_accepted_before_tls"),
        ],
    );
    let smtp = port(&report, PortRole::Smtp);
    assert_eq!(smtp.tls_mode, Some(TlsMode::None));
    assert!(smtp.tls_versions.is_empty() && smtp.certificate.is_none());
    assert!(smtp.problems[0].evidence.starts_with("EHLO: "), "{smtp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let files = reference_server::config::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, certificate.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let report = embedded(move |config| config.tls = Some(files)).await;
    let expected: Vec<(&'static str, &str)> = PortRole::ALL
        .iter()
        .flat_map(|role| {
            [
                (role.name(), "certificate_expired"),
                // The profile trusts this very certificate, but not after its notAfter.
                (role.name(), "certificate_untrusted"),
            ]
        })
        .collect();
    expect_problems(&report, &expected);
    let certificate = port(&report, PortRole::Imaps).certificate.clone().unwrap();
    assert_eq!(certificate.not_after, "2021-01-01T00:00:00Z");
    assert!(certificate.days_left < 0, "{certificate:?}");
}

// ---------------------------------------------------------------------------------------------
// Profiles

/// The reference server on ephemeral ports; [`Reference::profile`] writes a profile for it with
/// the ports, trusted certificate and account a test chooses.
struct Reference {
    server: reference_server::RunningServer,
    dir: tempfile::TempDir,
}

impl Reference {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = reference_server::start(Config::ephemeral(dir.path().join("data")))
            .await
            .unwrap();
        Self { server, dir }
    }

    fn port(&self, role: Role) -> u16 {
        self.server.addr(role).unwrap().port()
    }

    fn profile(&self, ports: &str, ca: &str, account: &str) -> PathBuf {
        std::fs::write(self.dir.path().join("ca.pem"), ca).unwrap();
        let path = self.dir.path().join("target.yaml");
        std::fs::write(
            &path,
            format!(
                "name: reference\nhost: 127.0.0.1\ndomain: example.test\n\
                 tls: {{ ca_file: ca.pem, server_name: localhost }}\nports: {{ {ports} }}\n\
                 accounts:\n  - {{ address: {account}, password: alice-secret }}\n\
                 foreign_recipient: x@elsewhere.test\n"
            ),
        )
        .unwrap();
        path
    }

    fn own_ca(&self) -> String {
        self.server.cert_pem().to_owned()
    }
}

async fn profile_report(path: PathBuf) -> PortsReport {
    ports::run(TargetSpec::Profile(path), &PortsOptions::default())
        .await
        .expect("ports run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_left_out_ports_are_told_apart() {
    let reference = Reference::start().await;
    let closed = HeldPort::new().unwrap();
    let path = reference.profile(
        &format!(
            "smtp: {}, submissions: {}",
            closed.port(),
            reference.port(Role::Submissions)
        ),
        &reference.own_ca(),
        "alice@example.test",
    );
    let report = profile_report(path).await;
    expect_problems(&report, &[("smtp", "open")]);
    let smtp = port(&report, PortRole::Smtp);
    assert_eq!(smtp.state, PortState::Closed);
    assert!(
        smtp.state_detail.as_deref().unwrap().contains("refused"),
        "{smtp:?}"
    );
    assert_eq!(port(&report, PortRole::Submissions).role_ok, Some(true));
    for role in [PortRole::Submission, PortRole::Pop3, PortRole::Imaps] {
        let left_out = port(&report, role);
        assert_eq!(left_out.state, PortState::NotOffered);
        assert_eq!((left_out.port, left_out.role_ok), (None, None));
    }
    let text = report.render();
    assert!(
        text.contains("closed") && text.contains("not offered"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_port_listed_as_implicit_tls_is_reported() {
    let reference = Reference::start().await;
    // The profile says pop3s, but the port is the STLS one.
    let path = reference.profile(
        &format!("pop3s: {}", reference.port(Role::Pop3)),
        &reference.own_ca(),
        "alice@example.test",
    );
    let report = profile_report(path).await;
    expect_problems(&report, &[("pop3s", "tls_mode")]);
    let pop3s = port(&report, PortRole::Pop3s);
    assert_eq!(pop3s.tls_mode, Some(TlsMode::Starttls));
    assert!(pop3s.problems[0].evidence.contains("+OK"), "{pop3s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_and_an_unknown_local_address_are_reported() {
    let reference = Reference::start().await;
    let other = reference_server::tls::load_or_generate(
        None,
        &reference.dir.path().join("other"),
        "localhost",
    )
    .unwrap()
    .cert_pem;
    let path = reference.profile(
        &format!(
            "smtp: {}, imaps: {}",
            reference.port(Role::Smtp),
            reference.port(Role::Imaps)
        ),
        &other,
        "nobody@example.test",
    );
    let report = profile_report(path).await;
    expect_problems(
        &report,
        &[
            ("smtp", "certificate_untrusted"),
            ("smtp", "local_delivery"),
            ("imaps", "certificate_untrusted"),
        ],
    );
    let certificate = port(&report, PortRole::Imaps).certificate.clone().unwrap();
    assert_eq!(certificate.verified, Some(false));
    assert!(certificate.verify_error.is_some());
    assert!(
        report.render().contains("does NOT verify"),
        "{}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_a_profile_is_probed_without_logins_or_trust() {
    let reference = Reference::start().await;
    let closed = HeldPort::new().unwrap();
    // `--host` probes the documented numbers; here the reference server's ephemeral ones.
    let ports = harness::target::Ports {
        smtp: Some(reference.port(Role::Smtp)),
        imaps: Some(reference.port(Role::Imaps)),
        pop3: Some(closed.port()),
        ..Default::default()
    };
    let host = TargetSpec::Host {
        host: "127.0.0.1".into(),
        ports,
    };
    let report = ports::run(host, &PortsOptions::default()).await.unwrap();
    let text = report.render();
    assert!(report.success(), "{text}");
    let smtp = port(&report, PortRole::Smtp);
    assert_eq!(smtp.role_ok, Some(true), "{text}");
    assert_eq!(smtp.auth_before_tls.as_ref().unwrap().accepted, None);
    let imaps = port(&report, PortRole::Imaps);
    assert_eq!(imaps.certificate.as_ref().unwrap().verified, None);
    // Closed, but nothing said it should be open.
    let pop3 = port(&report, PortRole::Pop3);
    assert_eq!(pop3.state, PortState::Closed);
    assert_eq!(pop3.role_ok, None);
    assert!(pop3.problems.is_empty());
    assert!(text.contains("trust     not checked"), "{text}");
    assert!(text.contains("2 open, 1 closed, 4 not offered"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The command line

fn harness() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
}

#[test]
fn the_command_prints_the_table_and_writes_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ports.json");
    let output = harness()
        .args(["ports", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("auth before TLS"), "{stdout}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["target", "host", "ports", "ok"] {
        assert!(value.get(key).is_some(), "{key} in {value}");
    }
    let ports = value["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 7);
    for key in [
        "role",
        "port",
        "documented_port",
        "state",
        "state_detail",
        "tls_mode",
        "tls_versions",
        "certificate",
        "auth_before_tls",
        "role_ok",
        "problems",
    ] {
        assert!(ports[0].get(key).is_some(), "{key} in {}", ports[0]);
    }
    assert_eq!(ports[0]["role"], "smtp");
    assert_eq!(ports[0]["documented_port"], 25);
    assert_eq!(ports[0]["tls_mode"], "starttls");
    assert_eq!(ports[0]["tls_versions"]["1.3"]["accepted"], true);
    for key in [
        "subject",
        "alt_names",
        "issuer",
        "not_after",
        "days_left",
        "verified",
    ] {
        assert!(
            ports[0]["certificate"].get(key).is_some(),
            "{key} in {}",
            ports[0]
        );
    }
}

#[test]
fn a_fault_makes_the_command_fail_with_the_evidence() {
    let output = harness()
        .args(["ports", "--fault", "open_relay"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[relay_refused]"), "{stdout}");
    assert!(stdout.contains("evidence: RCPT TO:<"), "{stdout}");
}

#[test]
fn a_bad_profile_stops_the_command_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yaml");
    let output = harness()
        .args(["ports", "--target"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent.yaml"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    assert!(output.stdout.is_empty());
    // Trust settings that cannot be used: verify is on but no CA is given.
    let path = dir.path().join("target.yaml");
    std::fs::write(
        &path,
        "name: n\nhost: 127.0.0.1\ndomain: d.test\nports: { smtp: 2525 }\n\
         foreign_recipient: x@else.test\n",
    )
    .unwrap();
    let output = harness()
        .args(["ports", "--target"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("target.yaml") && stderr.contains("no CA certificate"),
        "{stderr}"
    );
    let output = harness()
        .args(["ports", "--fault", "no_such_fault"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

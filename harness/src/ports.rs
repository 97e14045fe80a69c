//! `harness ports`: the first look at a server. For each documented port role it finds out
//! whether the port answers, how it does TLS (none, STARTTLS, from the first byte), which TLS
//! versions it accepts, whether it takes anonymous, export or NULL cipher suites, what
//! certificate it shows, whether it lets a client log in before TLS, and whether all that is what
//! the role requires (DESIGN.md, "Ports"). Each mismatch comes with the reply that shows it.

mod cert;
mod client;
mod probe;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rustls::version::{TLS12, TLS13};
use serde::{Deserialize, Serialize};

use crate::clients::tls::TlsClient;
use crate::spec::TargetSpec;
use crate::target::{Ports, TargetProfile};
use client::Protocol;

/// Probe settings.
#[derive(Debug, Clone)]
pub struct PortsOptions {
    /// Longest wait for any one network step (connect, handshake, reply).
    pub timeout: Duration,
}

impl Default for PortsOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

/// A documented port role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortRole {
    /// SMTP relay / MX, port 25.
    Smtp,
    /// Submission over TLS from the first byte, port 465.
    Submissions,
    /// Submission with STARTTLS, port 587.
    Submission,
    /// POP3 with STLS, port 110.
    Pop3,
    /// POP3 over TLS, port 995.
    Pop3s,
    /// IMAP with STARTTLS, port 143.
    Imap,
    /// IMAP over TLS, port 993.
    Imaps,
}

impl PortRole {
    /// Every role, in the order of the table.
    pub const ALL: [PortRole; 7] = [
        Self::Smtp,
        Self::Submissions,
        Self::Submission,
        Self::Pop3,
        Self::Pop3s,
        Self::Imap,
        Self::Imaps,
    ];

    /// The name, as in target profiles.
    pub fn name(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Submissions => "submissions",
            Self::Submission => "submission",
            Self::Pop3 => "pop3",
            Self::Pop3s => "pop3s",
            Self::Imap => "imap",
            Self::Imaps => "imaps",
        }
    }

    /// The port the role is documented on.
    pub fn documented_port(self) -> u16 {
        match self {
            Self::Smtp => 25,
            Self::Submissions => 465,
            Self::Submission => 587,
            Self::Pop3 => 110,
            Self::Pop3s => 995,
            Self::Imap => 143,
            Self::Imaps => 993,
        }
    }

    /// The TLS mode the role requires.
    pub fn required_tls(self) -> TlsMode {
        match self {
            Self::Smtp | Self::Submission | Self::Pop3 | Self::Imap => TlsMode::Starttls,
            Self::Submissions | Self::Pop3s | Self::Imaps => TlsMode::Implicit,
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Self::Smtp | Self::Submissions | Self::Submission => Protocol::Smtp,
            Self::Pop3 | Self::Pop3s => Protocol::Pop3,
            Self::Imap | Self::Imaps => Protocol::Imap,
        }
    }

    fn port_in(self, ports: &Ports) -> Option<u16> {
        match self {
            Self::Smtp => ports.smtp,
            Self::Submissions => ports.submissions,
            Self::Submission => ports.submission,
            Self::Pop3 => ports.pop3,
            Self::Pop3s => ports.pop3s,
            Self::Imap => ports.imap,
            Self::Imaps => ports.imaps,
        }
    }
}

/// Whether anything answers on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// A TCP connection was accepted.
    Open,
    /// The connection was refused or timed out.
    Closed,
    /// The profile leaves the port out: the service is not offered, and not probed.
    NotOffered,
}

/// How a port does TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plaintext, no STARTTLS (STLS) offered.
    None,
    /// Plaintext with STARTTLS (STLS) offered.
    Starttls,
    /// TLS from the first byte (RFC 8314).
    Implicit,
}

impl TlsMode {
    fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starttls => "STARTTLS",
            Self::Implicit => "implicit",
        }
    }
}

/// How a server answered a probe handshake: one offering a single TLS version, or one offering
/// only weak cipher suites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionProbe {
    /// Whether it was accepted; `None` when the probe could not tell (it failed for another
    /// reason, said in `detail`).
    pub accepted: Option<bool>,
    /// What happened: the negotiated version, the alert, the error.
    pub detail: String,
}

/// The certificate a port showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The subject, `CN=..., O=...`.
    pub subject: String,
    /// The subject's common name.
    pub common_name: Option<String>,
    /// subjectAltName entries: `DNS:name`, `IP:address`, ...
    pub alt_names: Vec<String>,
    /// The issuer, formatted as the subject.
    pub issuer: String,
    /// notAfter, RFC 3339 UTC.
    pub not_after: String,
    /// Whole days until notAfter; negative once expired.
    pub days_left: i64,
    /// Whether the profile's trust settings (`tls.ca_file`, `tls.server_name`) accept it;
    /// `None` when they say `verify: false` or there is no profile.
    pub verified: Option<bool>,
    /// Why verification failed.
    pub verify_error: Option<String>,
}

/// Whether a port lets a client log in before TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthBeforeTls {
    /// Whether the plaintext capabilities offer a login.
    pub offered: bool,
    /// The capability that offers it, or the listing that does not.
    pub offered_evidence: String,
    /// Whether a login with the profile's first account was accepted in plaintext; `None` when
    /// there is no account to try (or the attempt failed for another reason).
    pub accepted: Option<bool>,
    /// The reply to that login.
    pub accepted_evidence: Option<String>,
}

/// One way a port differs from what its role requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable name of the check: `open`, `tls_mode`, `legacy_tls`, `weak_ciphers`,
    /// `certificate_untrusted`, `certificate_expired`, `auth_offered_before_tls`,
    /// `auth_accepted_before_tls`, `auth_offered`, `mail_requires_auth`, `local_delivery`,
    /// `relay_refused`, `greeting`, `probe`.
    pub check: String,
    /// What is wrong.
    pub message: String,
    /// What the server said (or did) that shows it.
    pub evidence: String,
}

/// Everything found out about one port role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReport {
    /// The role.
    pub role: PortRole,
    /// The port probed; `None` when not offered.
    pub port: Option<u16>,
    /// The port the role is documented on.
    pub documented_port: u16,
    /// Open, closed or not offered.
    pub state: PortState,
    /// Why a port counts as closed (the connect error).
    pub state_detail: Option<String>,
    /// How the port does TLS, when it is open.
    pub tls_mode: Option<TlsMode>,
    /// Per version (`"1.0"`, `"1.1"`, `"1.2"`, `"1.3"`): accepted or not. Empty without TLS.
    pub tls_versions: BTreeMap<String, VersionProbe>,
    /// Whether a TLS 1.2 ClientHello offering only anonymous, export and NULL cipher suites was
    /// accepted. `None` without TLS.
    #[serde(default)]
    pub weak_ciphers: Option<VersionProbe>,
    /// The certificate, when a handshake got that far.
    pub certificate: Option<Certificate>,
    /// Login before TLS; `None` on ports with TLS from the first byte, and closed ones.
    pub auth_before_tls: Option<AuthBeforeTls>,
    /// Whether the port does what its role requires; `None` when it was not probed (not
    /// offered, or closed without a profile that offers it).
    pub role_ok: Option<bool>,
    /// The mismatches, each with its evidence.
    pub problems: Vec<Problem>,
    /// Mismatches the profile lists as known findings (`scenario: "ports <role>: <check>"`),
    /// with its reason: shown, but they do not fail the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_problems: Vec<(Problem, String)>,
    /// Choices the RFCs leave to the server that the probe saw this port make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PortReport {
    fn new(role: PortRole, port: Option<u16>, state: PortState) -> Self {
        Self {
            role,
            port,
            documented_port: role.documented_port(),
            state,
            state_detail: None,
            tls_mode: None,
            tls_versions: BTreeMap::new(),
            weak_ciphers: None,
            certificate: None,
            auth_before_tls: None,
            role_ok: None,
            problems: Vec::new(),
            known_problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn problem(&mut self, check: &str, message: impl Into<String>, evidence: impl Into<String>) {
        self.problems.push(Problem {
            check: check.to_owned(),
            message: message.into(),
            evidence: evidence.into(),
        });
    }
}

/// What `harness ports` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsReport {
    /// The target's name.
    pub target: String,
    /// The host probed.
    pub host: String,
    /// One entry per role, in table order.
    pub ports: Vec<PortReport>,
    /// Whether some port is open and every port probed does what its role requires.
    pub ok: bool,
}

impl PortsReport {
    /// Whether some port is open and every port probed does what its role requires (the exit
    /// status is 0).
    pub fn success(&self) -> bool {
        self.ok
    }

    /// The table, then the certificates, then the problems with their evidence.
    pub fn render(&self) -> String {
        let mut out = format!("harness ports: {} ({})\n\n", self.target, self.host);
        let header = [
            "role",
            "port",
            "state",
            "TLS",
            "versions",
            "certificate",
            "expires",
            "auth before TLS",
            "role",
        ];
        let rows: Vec<[String; 9]> = self.ports.iter().map(row).collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if index + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:width$}  ");
                }
            }
            text.trim_end().to_owned() + "\n"
        };
        out += &line(&header.map(str::to_owned));
        for row in &rows {
            out += &line(row);
        }
        let mut certificates: Vec<(&Certificate, Vec<String>)> = Vec::new();
        for port in &self.ports {
            let (Some(certificate), Some(number)) = (&port.certificate, port.port) else {
                continue;
            };
            let label = format!("{} {number}", port.role.name());
            match certificates
                .iter_mut()
                .find(|(seen, _)| *seen == certificate)
            {
                Some((_, users)) => users.push(label),
                None => certificates.push((certificate, vec![label])),
            }
        }
        if !certificates.is_empty() {
            out += "\nCertificates:\n";
        }
        for (certificate, users) in certificates {
            let _ = writeln!(out, "  {}:", users.join(", "));
            let _ = writeln!(out, "    subject   {}", certificate.subject);
            if !certificate.alt_names.is_empty() {
                let _ = writeln!(out, "    alt names {}", certificate.alt_names.join(", "));
            }
            let _ = writeln!(out, "    issuer    {}", certificate.issuer);
            let _ = writeln!(
                out,
                "    notAfter  {} ({} days left)",
                certificate.not_after, certificate.days_left
            );
            let verdict = match (certificate.verified, &certificate.verify_error) {
                (None, _) => "not checked (no trust settings, or verify: false)".to_owned(),
                (Some(true), _) => "verifies against the profile's trust settings".to_owned(),
                (Some(false), error) => format!(
                    "does NOT verify against the profile's trust settings: {}",
                    error.as_deref().unwrap_or("?")
                ),
            };
            let _ = writeln!(out, "    trust     {verdict}");
        }
        let problems: Vec<&PortReport> = self
            .ports
            .iter()
            .filter(|port| !port.problems.is_empty())
            .collect();
        if !problems.is_empty() {
            out += "\nProblems:\n";
        }
        for port in problems {
            for problem in &port.problems {
                let _ = writeln!(
                    out,
                    "  {} {} [{}] {}\n      evidence: {}",
                    port.role.name(),
                    port.port.map(|p| p.to_string()).unwrap_or_default(),
                    problem.check,
                    problem.message,
                    problem.evidence
                );
            }
        }
        let known: Vec<&PortReport> = self
            .ports
            .iter()
            .filter(|port| !port.known_problems.is_empty())
            .collect();
        if !known.is_empty() {
            out += "\nKnown findings (listed in the profile; they do not fail the run):\n";
        }
        for port in known {
            for (problem, reason) in &port.known_problems {
                let _ = writeln!(
                    out,
                    "  {} {} [{}] {}\n      evidence: {}\n      why known: {}",
                    port.role.name(),
                    port.port.map(|p| p.to_string()).unwrap_or_default(),
                    problem.check,
                    problem.message,
                    problem.evidence,
                    reason
                );
            }
        }
        let noted: Vec<&PortReport> = self.ports.iter().filter(|p| !p.notes.is_empty()).collect();
        if !noted.is_empty() {
            out += "\nNotes:\n";
        }
        for port in noted {
            for note in &port.notes {
                let _ = writeln!(
                    out,
                    "  {} {}: {note}",
                    port.role.name(),
                    port.port.map(|p| p.to_string()).unwrap_or_default()
                );
            }
        }
        let count = |state| self.ports.iter().filter(|p| p.state == state).count();
        let failing = self
            .ports
            .iter()
            .filter(|p| p.role_ok == Some(false))
            .count();
        let _ = write!(
            out,
            "\n{} open, {} closed, {} not offered; ",
            count(PortState::Open),
            count(PortState::Closed),
            count(PortState::NotOffered)
        );
        out += &if failing == 1 {
            "1 does not match its role.\n".to_owned()
        } else if failing > 1 {
            format!("{failing} do not match their role.\n")
        } else if count(PortState::Open) == 0 {
            "nothing answers.\n".to_owned()
        } else {
            "every open port matches its role.\n".to_owned()
        };
        out
    }

    /// Writes the report as JSON.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

fn row(port: &PortReport) -> [String; 9] {
    let dash = || "-".to_owned();
    let versions = if port.tls_versions.is_empty() {
        dash()
    } else {
        port.tls_versions
            .iter()
            .filter_map(|(version, probe)| match probe.accepted {
                Some(true) => Some(version.clone()),
                Some(false) => None,
                None => Some(format!("{version}?")),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let certificate = port.certificate.as_ref();
    // Names are in the alternative names these days (RFC 9525); CN is the fallback.
    let subject = certificate
        .map(|c| {
            let name = match c.alt_names.split_first() {
                Some((first, [])) => first.clone(),
                Some((first, rest)) => format!("{first} +{}", rest.len()),
                None => c.common_name.clone().unwrap_or_else(|| c.subject.clone()),
            };
            match c.verified {
                Some(false) => format!("{name} (untrusted)"),
                _ => name,
            }
        })
        .unwrap_or_else(dash);
    let expires = certificate
        .map(|c| {
            format!(
                "{} ({}d)",
                &c.not_after[..10.min(c.not_after.len())],
                c.days_left
            )
        })
        .unwrap_or_else(dash);
    let auth = match &port.auth_before_tls {
        None if port.tls_mode == Some(TlsMode::Implicit) => "n/a (TLS)".to_owned(),
        None => dash(),
        Some(auth) => match (auth.offered, auth.accepted) {
            (false, None) => "not offered".to_owned(),
            (false, Some(false)) => "no (login refused)".to_owned(),
            (false, Some(true)) => "ACCEPTED (not offered)".to_owned(),
            (true, None) => "OFFERED".to_owned(),
            (true, Some(false)) => "OFFERED (login refused)".to_owned(),
            (true, Some(true)) => "OFFERED, ACCEPTED".to_owned(),
        },
    };
    let role_ok = match port.role_ok {
        None => dash(),
        Some(true) => "ok".to_owned(),
        Some(false) => {
            let checks: Vec<&str> = port.problems.iter().map(|p| p.check.as_str()).collect();
            format!("MISMATCH: {}", checks.join(", "))
        }
    };
    [
        port.role.name().to_owned(),
        port.port.map(|p| p.to_string()).unwrap_or_else(dash),
        match port.state {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::NotOffered => "not offered",
        }
        .to_owned(),
        port.tls_mode
            .map(|mode| mode.label().to_owned())
            .unwrap_or_else(dash),
        versions,
        subject,
        expires,
        auth,
        role_ok,
    ]
}

/// Probes every port role of the target. An error means the command could not run (an
/// unreadable profile, unusable TLS settings, an embedded server that would not start).
pub async fn run(target: TargetSpec, options: &PortsOptions) -> anyhow::Result<PortsReport> {
    let resolved = target.resolve().await?;
    // Without a profile nothing says a port should be open, which certificate to trust, or who
    // may log in.
    let described = resolved.has_profile();
    let report = probe_all(&resolved.profile, described, options).await;
    let report = resolved.blame(report, "TLS settings");
    resolved.shutdown().await;
    report
}

/// Every role on its documented port: 25, 587, 465, 110, 995, 143, 993.
pub fn documented_ports() -> Ports {
    let port = |role: PortRole| Some(role.documented_port());
    Ports {
        smtp: port(PortRole::Smtp),
        submission: port(PortRole::Submission),
        submissions: port(PortRole::Submissions),
        pop3: port(PortRole::Pop3),
        pop3s: port(PortRole::Pop3s),
        imap: port(PortRole::Imap),
        imaps: port(PortRole::Imaps),
    }
}

/// Moves the problems the profile lists as known findings (`scenario: "ports smtp:
/// weak_ciphers"`) out of the port's problems; a port whose only problems are known does what
/// its role requires as far as the run's verdict goes.
fn set_known_problems_aside(port: &mut PortReport, known: &[crate::target::KnownFinding]) {
    let role = port.role.name();
    let label = |problem: &Problem| format!("ports {role}: {}", problem.check);
    let (listed, unlisted): (Vec<Problem>, Vec<Problem>) = std::mem::take(&mut port.problems)
        .into_iter()
        .partition(|problem| known.iter().any(|k| k.scenario == label(problem)));
    port.problems = unlisted;
    for problem in listed {
        let reason = known
            .iter()
            .find(|k| k.scenario == label(&problem))
            .map(|k| k.reason.clone())
            .unwrap_or_default();
        port.known_problems.push((problem, reason));
    }
    if port.state == PortState::Open && !port.known_problems.is_empty() {
        port.role_ok = Some(port.problems.is_empty());
    }
}

/// `offered`: whether the ports are the profile's (a closed one is then a problem) or merely
/// the documented numbers (a closed one is not offered).
async fn probe_all(
    profile: &TargetProfile,
    offered: bool,
    options: &PortsOptions,
) -> anyhow::Result<PortsReport> {
    // Unusable trust settings stop the command before anything is probed.
    TlsClient::inspecting(&profile.tls, &profile.host, &[&TLS13, &TLS12])?;
    let probes = PortRole::ALL.map(|role| async move {
        match role.port_in(&profile.ports) {
            None => PortReport::new(role, None, PortState::NotOffered),
            Some(port) => probe::probe_port(profile, role, port, offered, options.timeout).await,
        }
    });
    let mut ports = futures::future::join_all(probes).await;
    for port in &mut ports {
        set_known_problems_aside(port, &profile.known_findings);
    }
    let ok = ports.iter().all(|port| port.role_ok != Some(false))
        && ports.iter().any(|port| port.state == PortState::Open);
    Ok(PortsReport {
        target: profile.name.clone(),
        host: profile.host.clone(),
        ports,
        ok,
    })
}

#[cfg(test)]
mod known_tests {
    use super::*;

    #[test]
    fn a_listed_problem_is_set_aside_and_no_longer_fails_the_port() {
        let mut port = PortReport::new(PortRole::Smtp, Some(25), PortState::Open);
        port.problem("weak_ciphers", "accepted an anonymous suite", "ServerHello");
        port.problem("legacy_tls", "accepted TLS 1.0", "ServerHello 0x0301");
        port.role_ok = Some(false);
        let known = [crate::target::KnownFinding {
            scenario: "ports smtp: weak_ciphers".into(),
            reason: "on purpose".into(),
        }];
        set_known_problems_aside(&mut port, &known);
        assert_eq!(port.problems.len(), 1);
        assert_eq!(port.known_problems[0].0.check, "weak_ciphers");
        assert_eq!(port.known_problems[0].1, "on purpose");
        assert_eq!(port.role_ok, Some(false), "legacy_tls is still a problem");
        port.problems.clear();
        port.known_problems.clear();
        port.problem("weak_ciphers", "accepted an anonymous suite", "ServerHello");
        set_known_problems_aside(&mut port, &known);
        assert_eq!(port.role_ok, Some(true));
        let mut other = PortReport::new(PortRole::Submission, Some(587), PortState::Open);
        other.problem("weak_ciphers", "accepted an anonymous suite", "ServerHello");
        set_known_problems_aside(&mut other, &known);
        assert_eq!(other.problems.len(), 1, "listed for smtp only");
    }
}

//! Target profiles: how to reach a third-party mail server and what it hosts (DESIGN.md, "Target
//! profile").

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A mail server under test, as described by a YAML target profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetProfile {
    /// Name used in reports.
    pub name: String,
    /// Host name or IP address the harness connects to.
    pub host: String,
    /// Mail domain the target hosts.
    pub domain: String,
    /// How to verify the target's certificate.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Ports of the services the target offers.
    pub ports: Ports,
    /// Accounts the harness may log in with.
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// An address in a domain the target does not host, for relay checks.
    pub foreign_recipient: String,
    /// Relay to another domain, when the target is expected to relay.
    #[serde(default)]
    pub relay: Option<Relay>,
    /// Scenario tags for policies the target deliberately does not have.
    #[serde(default)]
    pub skip_tags: Vec<String>,
    /// Scenarios that fail on this target because of a real non-conformance of the server,
    /// kept and explained in the report instead of failing the run.
    #[serde(default)]
    pub known_findings: Vec<KnownFinding>,
    /// Count a failed `@should` scenario (a recommendation the server does not follow) as a
    /// failure instead of a warning.
    #[serde(default)]
    pub strict: bool,
    /// Most connections the harness keeps open to the target at once, over all its ports
    /// together: the server's limit per client address, when it has one. Scenarios run side by
    /// side only as far as this allows.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// [`TargetProfile::max_connections`] for a target that does not say.
///
/// Courier's POP3 and IMAP servers take 4 connections per client address by default
/// (`MAXPERIP`), the fewest among common servers' defaults (Dovecot takes 10 per user and
/// address, Postfix 50 per client). No scenario needs more than 4 at once, so every scenario
/// still runs, at the price of running them one at a time; a profile that gives the server's
/// real limit buys the parallelism back.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// A scenario that is known to fail on a target, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFinding {
    /// The scenario's name, exactly as in its feature file.
    pub scenario: String,
    /// What the server does wrong, with the RFC it breaks.
    pub reason: String,
}

/// Certificate verification settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA (or self-signed certificate) to trust; relative to the profile's folder.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to send in SNI and to verify the certificate against; defaults to the host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Whether to verify the certificate at all.
    #[serde(default = "verify_by_default")]
    pub verify: bool,
    /// PEM text of a CA to trust, set in code: the embedded reference server hands over its
    /// generated certificate this way. Not read from YAML.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

fn verify_by_default() -> bool {
    true
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca_file: None,
            server_name: None,
            verify: true,
            ca_pem: None,
        }
    }
}

/// Service ports; an absent port means the service is not offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// SMTP relay / MX (documented port 25).
    pub smtp: Option<u16>,
    /// Message submission with STARTTLS (587).
    pub submission: Option<u16>,
    /// Message submission over implicit TLS (465).
    pub submissions: Option<u16>,
    /// POP3 with STLS (110).
    pub pop3: Option<u16>,
    /// POP3 over implicit TLS (995).
    pub pop3s: Option<u16>,
    /// IMAP with STARTTLS (143).
    pub imap: Option<u16>,
    /// IMAP over implicit TLS (993).
    pub imaps: Option<u16>,
}

impl Ports {
    /// The offered services as `(key, port)`, keyed as in the profile.
    pub fn offered(&self) -> impl Iterator<Item = (&'static str, u16)> {
        [
            ("smtp", self.smtp),
            ("submission", self.submission),
            ("submissions", self.submissions),
            ("pop3", self.pop3),
            ("pop3s", self.pop3s),
            ("imap", self.imap),
            ("imaps", self.imaps),
        ]
        .into_iter()
        .filter_map(|(key, port)| Some((key, port?)))
    }
}

/// A mailbox the harness may log in to.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Mail address, also the login name.
    pub address: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Profiles and targets are printed in errors and logs; the password stays out.
        f.debug_struct("Account")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Relay settings: the harness runs a fake DNS that the target uses as its resolver, serves
/// `remote_domain` there with MX records naming the harness's own SMTP server (the capture
/// sink), and checks what the target delivers to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// Domain the target should relay to; each scenario uses a subdomain of its own.
    pub remote_domain: String,
    /// Where the harness runs its fake DNS (UDP and TCP); the target's resolver must ask it.
    pub dns: SocketAddr,
    /// Addresses the harness's MX listens on: the first is `mx1`, the second `mx2`.
    #[serde(default = "default_mx_addrs")]
    pub mx_addrs: Vec<IpAddr>,
    /// The port the target delivers to (25 for a real MTA).
    #[serde(default = "default_mx_port")]
    pub mx_port: u16,
    /// An address where nothing listens on `mx_port`: the MX that is down.
    #[serde(default = "default_unreachable")]
    pub unreachable: IpAddr,
    /// Whether the target refuses mail on port 25 from clients whose address has no
    /// forward-confirmed reverse DNS (runs the `@fcrdns` scenarios).
    #[serde(default)]
    pub checks_client_dns: bool,
    /// Whether the target refuses MAIL FROM domains on port 25 that have neither MX nor address
    /// records (runs the `@sender-domain` scenarios).
    #[serde(default)]
    pub checks_sender_domain: bool,
    /// Seconds within which the target retries a delivery that failed for now (runs the
    /// `@relay-retry` scenarios, which wait this long, and 15 seconds more, for the retry).
    /// Absent, they are skipped: RFC 5321 4.5.4.1 recommends at least 30 minutes between
    /// attempts, longer than a conformance run should wait, so only a target configured to
    /// retry sooner can show its retries.
    #[serde(default)]
    pub retry_within_secs: Option<u64>,
}

fn default_mx_addrs() -> Vec<IpAddr> {
    vec![[127, 0, 0, 10].into(), [127, 0, 0, 11].into()]
}

fn default_mx_port() -> u16 {
    25
}

fn default_unreachable() -> IpAddr {
    [127, 0, 0, 254].into()
}

/// A target profile that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The file could not be read.
    #[error("cannot read target profile {}: {source}", path.display())]
    Read {
        /// The profile file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The YAML does not describe a profile: bad syntax, an unknown or missing key, a wrong type.
    #[error("invalid target profile {}: {message}", path.display())]
    Parse {
        /// The profile file.
        path: PathBuf,
        /// Line of the problem (1-based), when known.
        line: Option<u64>,
        /// serde-saphyr's message, naming the key and position.
        message: String,
    },
    /// The profile parsed but its values do not make sense.
    #[error("invalid target profile {}: {problem}", path.display())]
    Invalid {
        /// The profile file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
}

/// Reads, parses and validates the target profile at `path`.
pub fn load(path: &Path) -> Result<TargetProfile, TargetError> {
    let text = fs::read_to_string(path).map_err(|source| TargetError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut profile: TargetProfile =
        serde_saphyr::from_str(&text).map_err(|error| TargetError::Parse {
            path: path.to_owned(),
            line: error.location().map(|location| location.line()),
            message: error.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            }),
        })?;
    if let Some(ca_file) = &mut profile.tls.ca_file
        && ca_file.is_relative()
    {
        *ca_file = path.parent().unwrap_or(Path::new("")).join(&*ca_file);
    }
    profile.validate().map_err(|problem| TargetError::Invalid {
        path: path.to_owned(),
        problem,
    })?;
    Ok(profile)
}

impl TargetProfile {
    /// A bare host on `ports`, with nothing else known: no accounts, certificates not checked
    /// (nothing says which to trust), the default connection limit.
    pub fn for_host(host: String, ports: Ports) -> TargetProfile {
        TargetProfile {
            name: host.clone(),
            host: host.clone(),
            domain: host,
            tls: TlsSettings {
                verify: false,
                ..TlsSettings::default()
            },
            ports,
            accounts: Vec::new(),
            foreign_recipient: "harness-ports@relay-check.invalid".into(),
            relay: None,
            skip_tags: Vec::new(),
            known_findings: Vec::new(),
            strict: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// `host:port` for connecting, with an IPv6 host in brackets.
    pub fn addr(&self, port: u16) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.ports.offered().next().is_none() {
            return Err("`ports` lists no service; give at least one port".into());
        }
        if self.max_connections == 0 {
            return Err("`max_connections` is 0; the harness needs at least one connection".into());
        }
        if let Some((key, _)) = self.ports.offered().find(|&(_, port)| port == 0) {
            return Err(format!(
                "`ports.{key}` is 0; give the port the target listens on"
            ));
        }
        if let Some(ca_file) = &self.tls.ca_file
            && !ca_file.is_file()
        {
            return Err(format!(
                "`tls.ca_file` {} does not exist or is not a file",
                ca_file.display()
            ));
        }
        if let Some(relay) = &self.relay
            && (relay.mx_addrs.len() < 2 || relay.mx_port == 0)
        {
            return Err(
                "`relay.mx_addrs` needs two addresses (mx1 and mx2) and `relay.mx_port` a port"
                    .into(),
            );
        }
        if let Some((index, account)) = self
            .accounts
            .iter()
            .enumerate()
            .find(|(_, account)| !account.address.contains('@'))
        {
            return Err(format!(
                "`accounts[{index}].address` {:?} is not a mail address (no '@')",
                account.address
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
name: postfix-dovecot
host: 127.0.0.2
domain: peer.test
tls: { ca_file: certs/peer.pem, server_name: mail.peer.test }
ports: { smtp: 25, submission: 587, submissions: 465, pop3: 110, pop3s: 995, imap: 143, imaps: 993 }
accounts:
  - { address: alice@peer.test, password: secret-alice }
  - { address: bob@peer.test, password: secret-bob }
foreign_recipient: someone@elsewhere.test
relay: { remote_domain: remote.test, dns: 127.0.0.1:5353 }
skip_tags: [\"@pop-before-smtp\"]
";

    fn write_profile(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("certs")).unwrap();
        fs::write(dir.path().join("certs/peer.pem"), "").unwrap();
        let path = dir.path().join("target.yaml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn good_profile_parses() {
        let (dir, path) = write_profile(GOOD);
        let profile = load(&path).unwrap();
        assert_eq!(profile.name, "postfix-dovecot");
        assert_eq!(profile.tls.ca_file, Some(dir.path().join("certs/peer.pem")));
        assert_eq!(profile.tls.server_name.as_deref(), Some("mail.peer.test"));
        assert!(profile.tls.verify);
        assert_eq!(profile.ports.offered().count(), 7);
        assert_eq!(profile.ports.imaps, Some(993));
        assert_eq!(profile.accounts[1].password, "secret-bob");
        assert_eq!(profile.relay.unwrap().remote_domain, "remote.test");
        assert_eq!(profile.skip_tags, ["@pop-before-smtp"]);
        assert!(
            !profile.strict,
            "warnings stay warnings unless the profile says otherwise"
        );
        let (_dir, path) = write_profile(&format!("{GOOD}strict: true\n"));
        assert!(load(&path).unwrap().strict);
        assert_eq!(profile.max_connections, DEFAULT_MAX_CONNECTIONS);
        let (_dir, path) = write_profile(&format!("{GOOD}max_connections: 10\n"));
        assert_eq!(load(&path).unwrap().max_connections, 10);
    }

    #[test]
    fn a_printed_profile_shows_no_password() {
        let (_dir, path) = write_profile(GOOD);
        let profile = load(&path).unwrap();
        let shown = format!("{profile:?}");
        assert!(shown.contains("alice@peer.test"), "{shown}");
        assert!(!shown.contains("secret-alice"), "{shown}");
        assert!(!shown.contains("secret-bob"), "{shown}");
    }

    #[test]
    fn optional_sections_default() {
        let (_dir, path) = write_profile(
            "name: n\nhost: ::1\ndomain: d.test\nports: { smtp: 2525 }\n\
             foreign_recipient: x@else.test\ntls: { verify: false }\n",
        );
        let profile = load(&path).unwrap();
        assert!(!profile.tls.verify);
        assert_eq!(
            profile.ports.offered().collect::<Vec<_>>(),
            [("smtp", 2525)]
        );
        assert!(profile.accounts.is_empty() && profile.relay.is_none());
        assert_eq!(profile.addr(2525), "[::1]:2525");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let (_dir, path) = write_profile(&GOOD.replace("imaps: 993", "imapss: 993"));
        let error = load(&path).unwrap_err();
        let TargetError::Parse { line, .. } = &error else {
            panic!("expected a parse error, got {error}");
        };
        assert_eq!(*line, Some(5));
        let message = error.to_string();
        assert!(message.contains("imapss"), "{message}");
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("target.yaml"), "{message}");
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let (_dir, path) = write_profile(&GOOD.replace("domain: peer.test\n", ""));
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("missing field `domain`"), "{message}");
    }

    #[test]
    fn validation_rejects_nonsense() {
        for (from, to, expected) in [
            ("certs/peer.pem", "certs/absent.pem", "tls.ca_file"),
            ("bob@peer.test", "bob", "accounts[1].address"),
            ("smtp: 25,", "smtp: 0,", "ports.smtp"),
            (
                "name: postfix-dovecot",
                "name: n\nmax_connections: 0",
                "max_connections",
            ),
        ] {
            let (_dir, path) = write_profile(&GOOD.replace(from, to));
            let error = load(&path).unwrap_err();
            assert!(matches!(error, TargetError::Invalid { .. }), "{error}");
            assert!(error.to_string().contains(expected), "{error}");
        }
        let (_dir, path) =
            write_profile("name: n\nhost: h\ndomain: d\nports: {}\nforeign_recipient: x@y\n");
        assert!(load(&path).unwrap_err().to_string().contains("no service"));
    }
}

//! Server configuration: YAML on disk, defaults a newcomer meets, and validation.
//!
//! The file is parsed with `serde-saphyr` and `deny_unknown_fields`, so a typo in a key is an
//! error naming the file, the line and the key rather than a setting silently ignored.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::faults::Faults;
use crate::variants::Variants;

/// The primary hosted domain of the defaults in DESIGN.md.
pub const DEFAULT_DOMAIN: &str = "example.test";
/// The default server hostname, used in the greeting, `Received:` and the certificate.
pub const DEFAULT_HOSTNAME: &str = "mail.example.test";

/// What a listener is for; decides the policy applied to its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Server-to-server relay / MX (port 25): no AUTH needed for local recipients.
    Smtp,
    /// Message submission (port 587, RFC 6409): STARTTLS, then AUTH before MAIL.
    Submission,
    /// Submission over implicit TLS (port 465, RFC 8314).
    Submissions,
    /// POP3 with STLS (port 110, RFC 1939 and RFC 2595).
    Pop3,
    /// POP3 over implicit TLS (port 995, RFC 8314).
    Pop3s,
    /// IMAP with STARTTLS (port 143, RFC 3501 and RFC 2595).
    Imap,
    /// IMAP over implicit TLS (port 993, RFC 8314).
    Imaps,
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SMTP (RFC 5321), on the relay and submission ports.
    Smtp,
    /// POP3 (RFC 1939).
    Pop3,
    /// IMAP4rev1 (RFC 3501).
    Imap,
}

impl Role {
    /// Every role, in port-table order.
    pub const ALL: [Role; 7] = [
        Role::Smtp,
        Role::Submission,
        Role::Submissions,
        Role::Pop3,
        Role::Pop3s,
        Role::Imap,
        Role::Imaps,
    ];

    /// The protocol spoken on the role's port.
    pub fn protocol(self) -> Protocol {
        match self {
            Role::Smtp | Role::Submission | Role::Submissions => Protocol::Smtp,
            Role::Pop3 | Role::Pop3s => Protocol::Pop3,
            Role::Imap | Role::Imaps => Protocol::Imap,
        }
    }

    /// The port the role has on the Internet.
    pub fn standard_port(self) -> u16 {
        match self {
            Role::Smtp => 25,
            Role::Submission => 587,
            Role::Submissions => 465,
            Role::Pop3 => 110,
            Role::Pop3s => 995,
            Role::Imap => 143,
            Role::Imaps => 993,
        }
    }

    /// The unprivileged port used by default on this machine.
    pub fn default_port(self) -> u16 {
        match self {
            Role::Smtp => 2525,
            Role::Submission => 2587,
            Role::Submissions => 2465,
            Role::Pop3 => 2110,
            Role::Pop3s => 2995,
            Role::Imap => 2143,
            Role::Imaps => 2993,
        }
    }

    /// The TLS mode the documented port implies.
    pub fn default_tls(self) -> TlsMode {
        match self {
            Role::Smtp | Role::Submission | Role::Pop3 | Role::Imap => TlsMode::Starttls,
            Role::Submissions | Role::Pop3s | Role::Imaps => TlsMode::Implicit,
        }
    }

    /// Whether sessions on this role must authenticate before MAIL.
    pub fn requires_auth(self) -> bool {
        matches!(self, Role::Submission | Role::Submissions)
    }

    /// The name used in config files and in the listener lines printed at start-up.
    pub fn name(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
            Role::Pop3 => "pop3",
            Role::Pop3s => "pop3s",
            Role::Imap => "imap",
            Role::Imaps => "imaps",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text only; STARTTLS is not offered.
    None,
    /// Plain text with STARTTLS offered (RFC 3207).
    Starttls,
    /// TLS from the first byte (RFC 8314).
    Implicit,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "implicit",
        })
    }
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// The policy applied to sessions on this socket.
    pub role: Role,
    /// Where to listen; port 0 means any free port.
    pub address: SocketAddr,
    /// TLS mode; defaults to what the role's documented port uses.
    #[serde(default)]
    pub tls: Option<TlsMode>,
}

impl Listener {
    /// The TLS mode in force, explicit or implied by the role.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(self.role.default_tls())
    }
}

/// A mailbox owner who can log in.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Full address, also the login name.
    pub address: String,
    /// Plain-text password (test setups).
    #[serde(default)]
    pub password: Option<String>,
    /// An argon2 PHC string (`$argon2id$...`), for configs that should not hold the password.
    #[serde(default)]
    pub password_hash: Option<String>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords stay out of logs and error messages.
        f.debug_struct("Account")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Certificate and key files; when absent a self-signed pair is generated in the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Resource limits; each exceeded limit has its own reply code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted, in octets (advertised with SIZE).
    pub message_size: u64,
    /// Recipients accepted per transaction (further RCPTs get 452).
    pub recipients: usize,
    /// Longest text line in DATA, in octets including CRLF (RFC 5321 4.5.3.1.6).
    pub line_length: usize,
    /// Simultaneous connections over all listeners.
    pub connections: usize,
    /// Simultaneous connections from one client address, so that one client cannot take every
    /// slot of `connections`.
    pub connections_per_address: usize,
    /// Seconds a session may stay silent before it is closed with 421.
    pub idle_timeout_secs: u64,
    /// Seconds a TLS handshake (implicit TLS, or after STARTTLS/STLS) may take.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds from the first byte of a command line to its end (against clients that send a
    /// line a byte at a time, which the idle timeout alone does not stop).
    pub command_timeout_secs: u64,
    /// Seconds from the start of a message's data (SMTP DATA or BDAT, an IMAP literal) to its
    /// end.
    pub data_timeout_secs: u64,
    /// Seconds a whole session may last.
    pub session_timeout_secs: u64,
    /// Error replies a session may provoke before it is disconnected with 421.
    pub max_errors: u32,
    /// Commands one session may send, whatever they are; the next is answered with 421
    /// (SMTP), `-ERR` (POP3) or `BYE` (IMAP) and the session closed.
    pub max_commands: u64,
    /// Commands that carry no mail one session may send in a row (SMTP HELO, EHLO, NOOP, RSET,
    /// VRFY, HELP, STARTTLS; POP3 CAPA, NOOP, RSET, STAT, LIST, UIDL, STLS; IMAP
    /// CAPABILITY, NOOP, CHECK, ID, NAMESPACE), like Postfix's `smtpd_junk_command_limit`.
    /// Mail work starts the count again: SMTP accepting a message, POP3 RETR, TOP or DELE, any
    /// other IMAP command.
    pub max_nonmail_commands: u32,
    /// Delay before answering a failed login, in milliseconds; it doubles with each further
    /// failure for the same account or from the same client address, up to 16 times this.
    pub auth_failure_delay_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_size: 25 * 1024 * 1024,
            recipients: 100,
            line_length: 1000,
            connections: 256,
            connections_per_address: 64,
            idle_timeout_secs: 300,
            tls_handshake_timeout_secs: 30,
            command_timeout_secs: 60,
            data_timeout_secs: 600,
            session_timeout_secs: 4 * 3600,
            max_errors: 10,
            max_commands: 100_000,
            max_nonmail_commands: 20,
            auth_failure_delay_ms: 1000,
        }
    }
}

/// POP3 settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Settings {
    /// Offer APOP (RFC 1939 section 7): the greeting carries a timestamp and accounts with a
    /// plain-text password may log in with its MD5 digest. Off by default: APOP needs the
    /// password stored in clear and MD5 is broken.
    pub apop: bool,
    /// POP-before-SMTP: a successful POP3 login lets SMTP sessions from the same client address
    /// send as if authenticated, for a while. Absent (the default) means off.
    pub pop_before_smtp: Option<PopBeforeSmtp>,
}

/// The POP-before-SMTP window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopBeforeSmtp {
    /// How long after a POP3 login the client address stays authorised, in seconds.
    pub window_secs: u64,
}

/// How the relay uses TLS towards other servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// Use STARTTLS when the next hop offers it, without checking its certificate; fall back to
    /// plain text when it is not offered or the handshake fails (RFC 3207 section 4.1 and RFC 7435
    /// opportunistic security).
    Opportunistic,
    /// Deliver only over TLS: a hop without STARTTLS, or whose handshake fails, is a temporary
    /// failure. The certificate is not checked (there is no trust anchor for MX names without
    /// DANE or MTA-STS).
    Require,
    /// Never use STARTTLS.
    None,
}

/// Relay to other domains, and the DNS checks on mail arriving on port 25.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// The DNS server asked for MX, A, AAAA and PTR records (UDP, then TCP for truncated answers).
    /// Absent: the servers in /etc/resolv.conf. The hosts file is never read and no answer is
    /// cached, so a record changed in the DNS is seen by the next lookup.
    pub dns: Option<SocketAddr>,
    /// The port other domains' servers are reached on: 25, or another for tests.
    pub port: u16,
    /// The local address outgoing connections come from (the one whose PTR names this server);
    /// absent: the system's choice.
    pub source_address: Option<std::net::IpAddr>,
    /// STARTTLS policy towards other servers.
    pub tls: RelayTls,
    /// Delays between attempts after a temporary failure, in seconds; the last one repeats.
    pub retry_secs: Vec<u64>,
    /// How long a message may wait in the queue before it is returned to the sender, in seconds.
    pub max_age_secs: u64,
    /// Seconds to wait for a TCP connection to another server.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each reply of another server (RFC 5321 4.5.3.2 suggests minutes).
    pub command_timeout_secs: u64,
    /// Deliveries in progress at once.
    pub concurrency: usize,
    /// Port 25: refuse mail from a client whose address has no PTR name that resolves back to it
    /// (forward-confirmed reverse DNS).
    pub check_client_dns: bool,
    /// Port 25: refuse a MAIL FROM domain that has neither MX nor address records.
    pub check_sender_domain: bool,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            dns: None,
            port: 25,
            source_address: None,
            tls: RelayTls::Opportunistic,
            // Postfix-like: minutes at first, then hourly, for five days.
            retry_secs: vec![300, 900, 1800, 3600],
            max_age_secs: 5 * 24 * 3600,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            concurrency: 16,
            check_client_dns: false,
            check_sender_domain: false,
        }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's own name: greeting, `Received:`, certificate.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Domains whose mail is delivered here; the first is the primary one.
    pub domains: Vec<String>,
    /// Accounts; each must be in a hosted domain.
    pub accounts: Vec<Account>,
    /// Listening sockets.
    pub listeners: Vec<Listener>,
    /// Certificate files; generated when absent.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// POP3 options.
    #[serde(default)]
    pub pop3: Pop3Settings,
    /// Relay to other domains and DNS checks on port 25.
    #[serde(default)]
    pub relay: RelaySettings,
    /// Misbehaviour on purpose, for testing clients and the harness.
    #[serde(default)]
    pub faults: Faults,
    /// Legal behaviours other than the defaults, for the harness's self-test.
    #[serde(default)]
    pub variants: Variants,
    /// Where the store and generated certificate live; the `--data-dir` flag overrides it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

/// Whether `name` is a DNS host name (RFC 1123 section 2.1), as the greeting, `Received:` and
/// the certificate need: a domain by the SMTP parser's label rules, but of letters, digits and
/// hyphens only, without a final dot, and 253 octets at most.
fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && crate::smtp::command::is_domain(name)
}

fn default_hostname() -> String {
    DEFAULT_HOSTNAME.to_owned()
}

/// A configuration that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML did not match the schema (unknown key, wrong type, missing field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde-saphyr's message, which names the line, column and key.
        message: String,
    },
    /// The values parsed but contradict each other.
    #[error("{path}: invalid configuration: {message}")]
    Invalid {
        /// The file (or `<defaults>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// The defaults of DESIGN.md: `example.test`, alice and bob, the SMTP and POP3 listeners on
    /// 127.0.0.1 at the unprivileged default ports.
    pub fn defaults() -> Config {
        Config {
            hostname: default_hostname(),
            domains: vec![DEFAULT_DOMAIN.to_owned()],
            accounts: ["alice", "bob"]
                .into_iter()
                .map(|user| Account {
                    address: format!("{user}@{DEFAULT_DOMAIN}"),
                    password: Some(format!("{user}-secret")),
                    password_hash: None,
                })
                .collect(),
            listeners: Role::ALL
                .into_iter()
                .map(|role| Listener {
                    role,
                    address: SocketAddr::from(([127, 0, 0, 1], role.default_port())),
                    tls: None,
                })
                .collect(),
            tls: None,
            limits: Limits::default(),
            pop3: Pop3Settings::default(),
            relay: RelaySettings::default(),
            faults: Faults::default(),
            variants: Variants::default(),
            data_dir: None,
        }
    }

    /// The defaults with every listener on an ephemeral port and the given data dir: what
    /// tests and the harness's embedded target run.
    pub fn ephemeral(data_dir: PathBuf) -> Config {
        let mut config = Config::defaults();
        for listener in &mut config.listeners {
            listener.address.set_port(0);
        }
        config.data_dir = Some(data_dir);
        config
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text, path)?;
        Ok(config)
    }

    /// Parses and validates YAML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            serde_saphyr::from_str(text).map_err(|error| ConfigError::Parse {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
        // Relative paths in a config file mean "next to the config file".
        if let Some(base) = path.parent() {
            if let Some(tls) = &mut config.tls {
                tls.cert = base.join(&tls.cert);
                tls.key = base.join(&tls.key);
            }
            if let Some(dir) = &mut config.data_dir {
                *dir = base.join(&*dir);
            }
        }
        config.validate(path)?;
        Ok(config)
    }

    /// Moves every listener to the documented port of its role (25, 587, 465, 110, 995, 143,
    /// 993).
    pub fn use_standard_ports(&mut self) {
        for listener in &mut self.listeners {
            listener.address.set_port(listener.role.standard_port());
        }
    }

    /// Checks relations the schema cannot express.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.domains.is_empty() {
            return Err(invalid("`domains` must name at least one domain".into()));
        }
        if !is_host_name(&self.hostname) {
            return Err(invalid(format!(
                "hostname {:?} is not a host name: dot-separated labels of letters, digits and \
                 hyphens, each 1 to 63 octets, 253 in all",
                self.hostname
            )));
        }
        if self.listeners.is_empty() {
            return Err(invalid(
                "`listeners` must list at least one listener".into(),
            ));
        }
        let domains: BTreeSet<String> = self
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let mut seen = BTreeSet::new();
        for (index, account) in self.accounts.iter().enumerate() {
            let Some((local, domain)) = account.address.rsplit_once('@') else {
                return Err(invalid(format!(
                    "accounts[{index}].address `{}` is not an address (local@domain)",
                    account.address
                )));
            };
            if local.is_empty() || !domains.contains(&domain.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "accounts[{index}].address `{}` is not in a hosted domain ({})",
                    account.address,
                    self.domains.join(", ")
                )));
            }
            if !seen.insert(account.address.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "accounts[{index}].address `{}` appears twice",
                    account.address
                )));
            }
            match (&account.password, &account.password_hash) {
                (Some(_), None) => {}
                (None, Some(hash)) => crate::auth::check_hash_syntax(hash)
                    .map_err(|why| invalid(format!("accounts[{index}].password_hash: {why}")))?,
                _ => {
                    return Err(invalid(format!(
                        "accounts[{index}] needs exactly one of `password` and `password_hash`"
                    )));
                }
            }
        }
        for (index, listener) in self.listeners.iter().enumerate() {
            let role = listener.role;
            if matches!(role, Role::Submissions | Role::Pop3s | Role::Imaps)
                && listener.tls_mode() != TlsMode::Implicit
            {
                return Err(invalid(format!(
                    "listeners[{index}]: role {role} is implicit TLS by definition (RFC 8314)"
                )));
            }
        }
        let limits = &self.limits;
        if limits.auth_failure_delay_ms > 60_000 {
            return Err(invalid(
                "limits.auth_failure_delay_ms must be at most 60000 (it doubles up to 16 times)"
                    .into(),
            ));
        }
        if limits.line_length < 80
            || limits.recipients == 0
            || limits.connections == 0
            || limits.connections_per_address == 0
            || limits.max_errors == 0
            || limits.max_commands == 0
            || limits.max_nonmail_commands == 0
            || limits.idle_timeout_secs == 0
            || limits.tls_handshake_timeout_secs == 0
            || limits.command_timeout_secs == 0
            || limits.data_timeout_secs == 0
            || limits.session_timeout_secs == 0
        {
            return Err(invalid(
                "limits: line_length must be at least 80; recipients, connections, \
                 connections_per_address, max_errors, max_commands, max_nonmail_commands and \
                 every *_timeout_secs at least 1"
                    .into(),
            ));
        }
        if self
            .pop3
            .pop_before_smtp
            .as_ref()
            .is_some_and(|p| p.window_secs == 0)
        {
            return Err(invalid(
                "pop3.pop_before_smtp.window_secs must be at least 1".into(),
            ));
        }
        let relay = &self.relay;
        if relay.retry_secs.is_empty() || relay.retry_secs.contains(&0) {
            return Err(invalid(
                "relay.retry_secs must list at least one delay, each at least 1 second".into(),
            ));
        }
        if relay.port == 0
            || relay.concurrency == 0
            || relay.connect_timeout_secs == 0
            || relay.command_timeout_secs == 0
        {
            return Err(invalid(
                "relay: port, concurrency, connect_timeout_secs and command_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        self.faults.validate().map_err(invalid)?;
        Ok(())
    }

    /// Whether `domain` is hosted here (ASCII case-insensitive).
    pub fn hosts_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The account for an address (case-insensitive), if any.
    pub fn account(&self, address: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.address.eq_ignore_ascii_case(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
domains: [example.test]
accounts:
  - { address: alice@example.test, password: pw }
listeners:
  - { role: smtp, address: 127.0.0.1:0 }
  - { role: submissions, address: 127.0.0.1:0 }
limits:
  message_size: 1000000
";

    #[test]
    fn good_config_parses_with_defaults_filled_in() {
        let config = Config::parse(GOOD, Path::new("good.yaml")).unwrap();
        assert_eq!(config.hostname, DEFAULT_HOSTNAME);
        assert_eq!(config.limits.message_size, 1_000_000);
        assert_eq!(config.limits.recipients, Limits::default().recipients);
        assert_eq!(config.listeners[0].tls_mode(), TlsMode::Starttls);
        assert_eq!(config.listeners[1].tls_mode(), TlsMode::Implicit);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("message_size", "mesage_size");
        let error = Config::parse(&text, Path::new("conf/server.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("conf/server.yaml"), "{error}");
        assert!(error.contains("mesage_size"), "{error}");
        assert!(error.contains("line 8"), "{error}");
    }

    #[test]
    fn account_outside_hosted_domains_is_refused() {
        let text = GOOD.replace("alice@example.test", "alice@other.test");
        let error = Config::parse(&text, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("accounts[0]"), "{error}");
        assert!(error.contains("hosted domain"), "{error}");
    }

    #[test]
    fn a_hostname_that_is_no_host_name_is_refused() {
        let long = vec!["a".repeat(63); 4].join(".");
        for bad in ["", "mail..test", "-mail.test", "mail_1.test", &long] {
            let text = format!("hostname: {bad:?}\n{GOOD}");
            let error = Config::parse(&text, Path::new("x.yaml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is not a host name"), "{bad:?}: {error}");
        }
        let text = format!("hostname: {}\n{GOOD}", vec!["a".repeat(63); 3].join("."));
        Config::parse(&text, Path::new("x.yaml")).unwrap();
    }

    #[test]
    fn submissions_without_implicit_tls_is_refused() {
        let text = GOOD.replace(
            "{ role: submissions, address: 127.0.0.1:0 }",
            "{ role: submissions, address: 127.0.0.1:0, tls: starttls }",
        );
        assert!(Config::parse(&text, Path::new("x.yaml")).is_err());
    }

    #[test]
    fn relay_stanza_parses_and_bad_values_are_refused() {
        let text = format!(
            "{GOOD}relay:\n  dns: 127.0.0.1:5353\n  port: 2525\n  tls: require\n  retry_secs: [1, 5]\n  source_address: 127.0.0.2\n"
        );
        let config = Config::parse(&text, Path::new("r.yaml")).unwrap();
        assert_eq!(config.relay.dns, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(config.relay.port, 2525);
        assert_eq!(config.relay.tls, RelayTls::Require);
        assert_eq!(config.relay.retry_secs, [1, 5]);
        assert_eq!(
            config.relay.max_age_secs,
            5 * 24 * 3600,
            "defaults fill the rest"
        );
        let typo = format!("{GOOD}relay:\n  retries: [1]\n");
        let err = Config::parse(&typo, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.yaml") && err.contains("retries"), "{err}");
        let zero = format!("{GOOD}relay:\n  retry_secs: [0]\n");
        let err = Config::parse(&zero, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("relay.retry_secs"), "{err}");
    }

    #[test]
    fn defaults_validate_and_match_design() {
        let config = Config::defaults();
        config.validate(Path::new("<defaults>")).unwrap();
        let ports: Vec<u16> = config.listeners.iter().map(|l| l.address.port()).collect();
        assert_eq!(ports, [2525, 2587, 2465, 2110, 2995, 2143, 2993]);
        assert!(config.account("ALICE@example.test").is_some());
    }
}

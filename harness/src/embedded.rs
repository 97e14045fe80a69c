//! The embedded default target: the reference server started in-process on ephemeral ports
//! with a temporary data directory.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use reference_server::{Config, Role, RunningServer, Variant};

use reference_server::store::{INBOX, Store, StoreError};

use crate::mailbox::{FoundFuture, MAX_MATCHES, Mailboxes, MatchesFuture, contains_ignoring_case};
use crate::message;
use crate::relay_env::RelayEnv;
use crate::target::{Account, DEFAULT_MAX_CONNECTIONS, Ports, Relay, TargetProfile, TlsSettings};

/// A running embedded reference server; its data directory is removed on drop.
#[derive(Debug)]
pub struct Embedded {
    server: RunningServer,
    relay: Option<Arc<RelayEnv>>,
    _dir: tempfile::TempDir,
}

impl Embedded {
    /// Starts the reference server with the defaults of DESIGN.md on ephemeral ports, after
    /// `configure` has had a chance to change the config (faults, limits, listeners).
    pub async fn start(configure: impl FnOnce(&mut Config)) -> anyhow::Result<Embedded> {
        let dir = tempfile::Builder::new()
            .prefix("harness-embedded-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let mut config = Config::ephemeral(dir.path().to_owned());
        // The scenarios try wrong passwords on purpose; the server's default second-long,
        // doubling delay would only make the run slow. Throttling stays on, but at most 80 ms,
        // far from the 250 ms average that features/security counts as slowed down: here a
        // guesser is stopped by the error limit alone, so `no_error_limit` fails those checks
        // every time rather than depending on how many failures came before.
        config.limits.auth_failure_delay_ms = 5;
        // Relay goes through the harness's DNS to its MX on loopback aliases, and retries
        // within seconds rather than minutes.
        let relay = RelayEnv::start_for(
            &Relay {
                remote_domain: "remote.test".into(),
                dns: SocketAddr::from(([127, 0, 0, 1], 0)),
                mx_addrs: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()],
                mx_port: 0,
                unreachable: [127, 0, 0, 254].into(),
                checks_client_dns: false,
                checks_sender_domain: false,
                retry_within_secs: None,
            },
            "127.0.0.1",
            &config.domains[0],
        )
        .await?;
        config.relay.dns = Some(relay.settings.dns);
        config.relay.port = relay.settings.mx_port;
        config.relay.retry_secs = vec![1];
        config.relay.connect_timeout_secs = 2;
        config.relay.command_timeout_secs = 20;
        configure(&mut config);
        // The variants that are settings (a retry schedule, a connection limit) are applied
        // here already, so that the profile below describes the server as it will run.
        config.variants.clone().apply(&mut config);
        let mut relay = relay;
        relay.settings.checks_client_dns = config.relay.check_client_dns;
        relay.settings.checks_sender_domain = config.relay.check_sender_domain;
        // The harness knows how soon the server it started retries; a first retry later than a
        // minute is not waited for (the `@relay-retry` scenarios are then skipped, as for a
        // third-party target that retries after RFC 5321's 30 minutes).
        relay.settings.retry_within_secs = config
            .relay
            .retry_secs
            .first()
            .copied()
            .filter(|&secs| secs <= 60);
        let server = reference_server::start(config)
            .await
            .context("cannot start the embedded reference server")?;
        Ok(Embedded {
            server,
            relay: Some(Arc::new(relay)),
            _dir: dir,
        })
    }

    /// A target profile describing the running server.
    pub fn profile(&self) -> TargetProfile {
        let config = self.server.config();
        let port = |role| self.server.addr(role).map(|addr| addr.port());
        TargetProfile {
            // A run with faults or variants is named by them, so its column in a matrix says
            // what it is.
            name: {
                let mut name = String::from("embedded reference-server");
                let faults: Vec<&str> = config.faults.policy.iter().map(|p| p.name()).collect();
                if !faults.is_empty() {
                    name.push_str(&format!(" (faults: {})", faults.join(", ")));
                }
                let variants: Vec<&str> = config.variants.iter().map(|v| v.name()).collect();
                if !variants.is_empty() {
                    name.push_str(&format!(" (variants: {})", variants.join(", ")));
                }
                name
            },
            host: "127.0.0.1".into(),
            domain: config.domains[0].clone(),
            tls: TlsSettings {
                ca_pem: Some(self.server.cert_pem().to_owned()),
                // A name, not the address, as a mail client has: it is sent as SNI, which the
                // certificate checks need (see the wrong_certificate_name fault).
                server_name: Some("localhost".into()),
                ..TlsSettings::default()
            },
            ports: Ports {
                smtp: port(Role::Smtp),
                submission: port(Role::Submission),
                submissions: port(Role::Submissions),
                pop3: port(Role::Pop3),
                pop3s: port(Role::Pop3s),
                imap: port(Role::Imap),
                imaps: port(Role::Imaps),
            },
            accounts: config
                .accounts
                .iter()
                .filter_map(|account| {
                    Some(Account {
                        address: account.address.clone(),
                        password: account.password.clone()?,
                    })
                })
                .collect(),
            foreign_recipient: "someone@elsewhere.invalid".into(),
            relay: self.relay.as_ref().map(|r| r.settings.clone()),
            // POP-before-SMTP is off unless the config turns it on.
            skip_tags: if config.pop3.pop_before_smtp.is_none() {
                vec!["@pop-before-smtp".into()]
            } else {
                Vec::new()
            },
            known_findings: Vec::new(),
            strict: false,
            // The harness may count on the limit of a server it started, but for the variant
            // that exists to show that it copes with a limit it was not told.
            max_connections: if config.variants.has(Variant::ConnectionLimit4) {
                DEFAULT_MAX_CONNECTIONS
            } else {
                config.limits.connections_per_address
            },
        }
    }

    /// Direct read access to the server's mailboxes.
    pub fn mailboxes(&self) -> Arc<dyn Mailboxes> {
        Arc::new(StoreMailboxes(self.server.store().clone()))
    }

    /// The harness's DNS and MX for relay scenarios.
    pub fn relay_env(&self) -> Option<Arc<RelayEnv>> {
        self.relay.clone()
    }

    /// The running server.
    pub fn server(&self) -> &RunningServer {
        &self.server
    }

    /// Stops the server and waits for its connections to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(relay) = self.relay.and_then(|r| Arc::try_unwrap(r).ok()) {
            relay.shutdown().await;
        }
    }
}

/// The embedded reference server's store, read directly.
#[derive(Debug, Clone)]
pub struct StoreMailboxes(pub Store);

impl Mailboxes for StoreMailboxes {
    fn find_message<'a>(&'a self, account: &'a str, message_id: &'a str) -> FoundFuture<'a> {
        let found = self
            .newest_first(account, |octets| {
                message::has_message_id(octets, message_id)
            })
            .map(|mut found| found.pop());
        Box::pin(std::future::ready(found))
    }

    fn messages_mentioning<'a>(&'a self, account: &'a str, text: &'a str) -> MatchesFuture<'a> {
        let needle = text.to_ascii_lowercase().into_bytes();
        let found = self.newest_first(account, |octets| contains_ignoring_case(octets, &needle));
        Box::pin(std::future::ready(found))
    }

    fn deliver(&self, account: &str, message: &[u8]) -> Option<Result<(), String>> {
        Some(
            self.0
                .deliver(&[account], message)
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    }
}

impl StoreMailboxes {
    /// The INBOX messages `wanted` picks, newest first, at most [`MAX_MATCHES`]; a message
    /// found by its Message-ID is one of the newest, so older mail is seldom read at all.
    fn newest_first(
        &self,
        account: &str,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>, String> {
        let metas = self.0.messages(account, INBOX).map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        for meta in metas.iter().rev() {
            match self.0.read_message(account, INBOX, meta.uid) {
                Ok(octets) if wanted(&octets) => {
                    found.push(octets);
                    if found.len() == MAX_MATCHES {
                        break;
                    }
                }
                Ok(_) => {}
                // Deleted since the listing (a POP3 QUIT, say): it is simply not there.
                Err(StoreError::NoSuchMessage { .. }) => {}
                Err(other) => return Err(other.to_string()),
            }
        }
        Ok(found)
    }
}

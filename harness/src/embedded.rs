//! The embedded default target: the reference server started in-process on ephemeral ports
//! with a temporary data directory.

use std::sync::Arc;

use anyhow::Context as _;
use reference_server::{Config, Role, RunningServer};

use crate::mailbox::{Mailboxes, StoreMailboxes};
use crate::target::{Account, Ports, TargetProfile, TlsSettings};

/// A running embedded reference server; its data directory is removed on drop.
#[derive(Debug)]
pub struct Embedded {
    server: RunningServer,
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
        // doubling delay would only make the run slow. Throttling stays on.
        config.limits.auth_failure_delay_ms = 20;
        configure(&mut config);
        let server = reference_server::start(config)
            .await
            .context("cannot start the embedded reference server")?;
        Ok(Embedded { server, _dir: dir })
    }

    /// A target profile describing the running server.
    pub fn profile(&self) -> TargetProfile {
        let config = self.server.config();
        let port = |role| self.server.addr(role).map(|addr| addr.port());
        TargetProfile {
            name: "embedded reference-server".into(),
            host: "127.0.0.1".into(),
            domain: config.domains[0].clone(),
            tls: TlsSettings {
                ca_pem: Some(self.server.cert_pem().to_owned()),
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
            relay: None,
            // POP-before-SMTP is off unless the config turns it on.
            skip_tags: if config.pop3.pop_before_smtp.is_none() {
                vec!["@pop-before-smtp".into()]
            } else {
                Vec::new()
            },
        }
    }

    /// Direct read access to the server's mailboxes.
    pub fn mailboxes(&self) -> Arc<dyn Mailboxes> {
        Arc::new(StoreMailboxes(self.server.store().clone()))
    }

    /// The running server.
    pub fn server(&self) -> &RunningServer {
        &self.server
    }

    /// Stops the server and waits for its connections to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

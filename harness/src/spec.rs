//! What `harness conform`, `harness load` and `harness ports` run against, and how each becomes
//! a [`Resolved`] target: one choice, resolved in one place, for all three commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::clients::tls::TlsClient;
use crate::mailbox::{ImapMailboxes, Mailboxes};
use crate::relay_env::RelayEnv;
use crate::target::{Ports, TargetProfile};

/// A change to the embedded reference server's config (faults, variants, limits, listeners).
#[cfg(feature = "embedded")]
pub type Configure = Box<dyn FnOnce(&mut reference_server::Config) + Send>;

/// The server a command runs against.
pub enum TargetSpec {
    /// The reference server in-process on ephemeral ports; the closure may change its config.
    #[cfg(feature = "embedded")]
    Embedded(Configure),
    /// A server described by a target profile file.
    Profile(PathBuf),
    /// A host without a profile, on the given ports (`harness ports --host`): no accounts, so no
    /// login is tried, and certificates are shown but not checked.
    Host {
        /// Host name or address.
        host: String,
        /// The ports to look at.
        ports: Ports,
    },
}

impl TargetSpec {
    /// The embedded reference server with its defaults.
    #[cfg(feature = "embedded")]
    pub fn embedded() -> TargetSpec {
        TargetSpec::Embedded(Box::new(|_| {}))
    }

    /// For the embedded server, runs `first` on its config before the spec's own changes (a
    /// command's needs, such as load's extra accounts, come first so that faults and options
    /// given by the user win); any other target is returned as it is.
    #[cfg(feature = "embedded")]
    pub fn with_embedded_setup(
        self,
        first: impl FnOnce(&mut reference_server::Config) + Send + 'static,
    ) -> TargetSpec {
        match self {
            TargetSpec::Embedded(configure) => TargetSpec::Embedded(Box::new(move |config| {
                first(config);
                configure(config);
            })),
            other => other,
        }
    }

    /// Reads the profile or starts the embedded server.
    pub async fn resolve(self) -> anyhow::Result<Resolved> {
        match self {
            #[cfg(feature = "embedded")]
            TargetSpec::Embedded(configure) => {
                let embedded = crate::embedded::Embedded::start(configure).await?;
                Ok(Resolved {
                    profile: embedded.profile(),
                    source: Source::Embedded(embedded),
                })
            }
            TargetSpec::Profile(path) => {
                // The error names the file and says why; its source would only repeat the why.
                let profile =
                    crate::target::load(&path).map_err(|error| anyhow::anyhow!("{error}"))?;
                Ok(Resolved {
                    profile,
                    source: Source::Profile(path),
                })
            }
            TargetSpec::Host { host, ports } => Ok(Resolved {
                profile: TargetProfile::for_host(host, ports),
                source: Source::Host,
            }),
        }
    }
}

/// Where a resolved target came from.
enum Source {
    #[cfg(feature = "embedded")]
    Embedded(crate::embedded::Embedded),
    Profile(PathBuf),
    Host,
}

/// A target ready to be used: its profile, and the embedded server behind it, which runs until
/// [`Resolved::shutdown`] (or drop).
pub struct Resolved {
    /// How to reach the target and what it hosts.
    pub profile: TargetProfile,
    source: Source,
}

impl Resolved {
    /// Whether this is the reference server started in this process.
    pub fn is_embedded(&self) -> bool {
        match self.source {
            #[cfg(feature = "embedded")]
            Source::Embedded(_) => true,
            Source::Profile(_) | Source::Host => false,
        }
    }

    /// Whether a profile describes the target (a profile file or the embedded server), rather
    /// than a bare host and ports.
    pub fn has_profile(&self) -> bool {
        !matches!(self.source, Source::Host)
    }

    /// Names the profile file and its section `what` in an error that comes from what the file
    /// says; errors about the embedded server or a bare host are left as they are.
    pub fn blame<T>(&self, result: anyhow::Result<T>, what: &str) -> anyhow::Result<T> {
        match &self.source {
            Source::Profile(path) => result.with_context(|| format!("{}: {what}", path.display())),
            _ => result,
        }
    }

    /// The client TLS settings of the profile.
    pub fn tls(&self) -> anyhow::Result<TlsClient> {
        let tls = TlsClient::from_settings(&self.profile.tls, &self.profile.host);
        self.blame(tls.map_err(anyhow::Error::from), "TLS settings")
    }

    /// How delivery checks read the target's mailboxes: the embedded server's store directly,
    /// a third-party target's over IMAP with the profile's accounts (none without IMAP).
    pub fn mailboxes(&self, tls: &TlsClient, timeout: Duration) -> Option<Arc<dyn Mailboxes>> {
        match &self.source {
            #[cfg(feature = "embedded")]
            Source::Embedded(embedded) => Some(embedded.mailboxes()),
            _ => ImapMailboxes::for_profile(&self.profile, tls.clone(), timeout)
                .map(|m| Arc::new(m) as Arc<dyn Mailboxes>),
        }
    }

    /// The harness's DNS and MX for the relay scenarios: the embedded server's, or started
    /// here from the profile's relay section (none without one).
    pub async fn relay_env(&self) -> anyhow::Result<Option<Arc<RelayEnv>>> {
        match &self.source {
            #[cfg(feature = "embedded")]
            Source::Embedded(embedded) => Ok(embedded.relay_env()),
            _ => match &self.profile.relay {
                Some(settings) => {
                    let env = RelayEnv::start(settings, &self.profile).await;
                    Ok(Some(Arc::new(self.blame(env, "relay section")?)))
                }
                None => Ok(None),
            },
        }
    }

    /// Stops the embedded server, if there is one, and waits for its connections to end.
    pub async fn shutdown(self) {
        match self.source {
            #[cfg(feature = "embedded")]
            Source::Embedded(embedded) => embedded.shutdown().await,
            Source::Profile(_) | Source::Host => {}
        }
    }
}

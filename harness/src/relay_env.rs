//! What relay scenarios need around the target: a fake DNS the target resolves through, and the
//! capture sink the DNS names as the MX of the remote domain.
//!
//! The DNS serves, besides each scenario's remote subdomain:
//! - `harness.test`, the domain of the harness's own sender address, with an MX, so a target
//!   that checks sender domains accepts the harness's mail;
//! - `client.harness.test` at 127.0.0.1 and the PTR of 127.0.0.1 naming it, so a target that
//!   checks its clients' reverse DNS accepts the harness's connections from 127.0.0.1, and no
//!   PTR for [`UNNAMED_CLIENT`], the address the `@fcrdns` scenarios connect from;
//! - the target's own domain, with an MX at the target's address when that is an IP address, so
//!   its bounces and sender checks resolve.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;
use fake_dns::{FakeDns, Record, Zones};

use crate::sink::{CaptureSink, SinkOptions};
use crate::target::{Relay, TargetProfile};

/// A loopback address with no PTR record in the harness's DNS.
pub const UNNAMED_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66));

/// The harness's own domain (the `{sender}` address and the EHLO name).
const HARNESS_DOMAIN: &str = "harness.test";

/// The running fake DNS and capture sink.
pub struct RelayEnv {
    /// The DNS the target resolves through.
    pub dns: FakeDns,
    /// The harness's MX.
    pub sink: CaptureSink,
    /// The settings in force (ports and addresses as bound).
    pub settings: Relay,
}

impl std::fmt::Debug for RelayEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayEnv")
            .field("dns", &self.dns.local_addr())
            .field("sink", &self.sink)
            .field("settings", &self.settings)
            .finish()
    }
}

impl RelayEnv {
    /// Starts the DNS at `settings.dns` and the sink on `settings.mx_addrs`, port
    /// `settings.mx_port` (0 for any), and fills in the zones. Returns the settings with the
    /// bound addresses.
    pub async fn start(settings: &Relay, target: &TargetProfile) -> anyhow::Result<RelayEnv> {
        Self::start_for(settings, &target.host, &target.domain).await
    }

    /// [`RelayEnv::start`] for a target known by its host and domain.
    pub async fn start_for(settings: &Relay, host: &str, domain: &str) -> anyhow::Result<RelayEnv> {
        let dns = FakeDns::start(settings.dns, Zones::empty())
            .await
            .with_context(|| format!("cannot start the harness's DNS on {}", settings.dns))?;
        let sink = CaptureSink::start(SinkOptions {
            addrs: settings.mx_addrs.clone(),
            port: settings.mx_port,
            hostname: format!("mx1.{}", settings.remote_domain),
            starttls: true,
        })
        .await
        .with_context(|| {
            format!(
                "cannot start the harness's MX on {:?} port {}",
                settings.mx_addrs, settings.mx_port
            )
        })?;
        let mut bound = settings.clone();
        bound.dns = dns.local_addr();
        bound.mx_port = sink.port();
        let env = RelayEnv {
            dns,
            sink,
            settings: bound,
        };
        env.fill_zones(host, domain)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(env)
    }

    fn fill_zones(&self, host: &str, domain: &str) -> Result<(), fake_dns::ZoneError> {
        let dns = &self.dns;
        let remote = &self.settings.remote_domain;
        dns.add_zone(remote)?;
        self.point(remote, &[(10, "mx1")])?;
        dns.add_zone(HARNESS_DOMAIN)?;
        self.point(HARNESS_DOMAIN, &[(10, "mx1")])?;
        dns.set_records(
            &format!("client.{HARNESS_DOMAIN}"),
            vec![Record::A(Ipv4Addr::LOCALHOST)],
        )?;
        dns.add_zone("127.in-addr.arpa")?;
        dns.set_records(
            &fake_dns::reverse_name(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            vec![Record::Ptr(format!("client.{HARNESS_DOMAIN}."))],
        )?;
        if let Ok(ip) = host.parse::<IpAddr>()
            && !domain.eq_ignore_ascii_case(remote)
        {
            dns.add_zone(domain)?;
            let mail = format!("mail.{domain}");
            dns.set_records(
                domain,
                vec![Record::Mx {
                    preference: 10,
                    exchange: format!("{mail}."),
                }],
            )?;
            dns.set_records(&mail, vec![address(ip)])?;
        }
        Ok(())
    }

    /// The address of a named harness MX: `mx1`, `mx2` or `unreachable`.
    pub fn host_addr(&self, name: &str) -> anyhow::Result<IpAddr> {
        match name {
            "mx1" => Ok(self.settings.mx_addrs[0]),
            "mx2" => Ok(self.settings.mx_addrs[1]),
            "unreachable" => Ok(self.settings.unreachable),
            other => anyhow::bail!("unknown harness MX {other:?}: use mx1, mx2 or unreachable"),
        }
    }

    /// Gives `domain` MX records for the named harness hosts, each `<name>.<domain>` with its
    /// address.
    pub fn point(&self, domain: &str, hosts: &[(u16, &str)]) -> Result<(), fake_dns::ZoneError> {
        let mut mx = Vec::new();
        for &(preference, name) in hosts {
            let host = format!("{name}.{domain}");
            let ip = self
                .host_addr(name)
                .map_err(|e| fake_dns::ZoneError::BadRecord {
                    name: host.clone(),
                    message: e.to_string(),
                })?;
            self.dns.set_records(&host, vec![address(ip)])?;
            mx.push(Record::Mx {
                preference,
                exchange: format!("{host}."),
            });
        }
        self.dns.set_records(domain, mx)
    }

    /// Stops the DNS and the sink.
    pub async fn shutdown(self) {
        self.dns.shutdown().await;
        self.sink.shutdown().await;
    }
}

fn address(ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::A(v4),
        IpAddr::V6(v6) => Record::Aaaa(v6),
    }
}

//! One port's probe: does it answer, how does it do TLS, which versions, which certificate, can
//! a client log in before TLS, and the role's own checks. Every step waits at most the timeout;
//! every mismatch is recorded with the reply that shows it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::SupportedProtocolVersion;
use rustls::version::{TLS12, TLS13};

use super::client::{Client, first_line};
use super::{
    AuthBeforeTls, Certificate, PortReport, PortRole, PortState, TlsMode, VersionProbe, cert,
};
use crate::clients::ClientError;
use crate::clients::legacy_tls::{
    HelloOutcome, LegacyOutcome, LegacyVersion, Offer, probe_hello_at,
};
use crate::clients::tls::{Seen, TlsClient};
use crate::target::TargetProfile;

/// Why a probe stopped before its end.
enum Halt {
    /// What stopped it is in the report already.
    Reported,
    /// The conversation failed: a timeout, a closed connection, a reply that makes no sense.
    Client(ClientError),
}

impl From<ClientError> for Halt {
    fn from(error: ClientError) -> Self {
        Self::Client(error)
    }
}

type Step<T> = Result<T, Halt>;

struct Probe<'a> {
    profile: &'a TargetProfile,
    role: PortRole,
    addr: String,
    timeout: Duration,
    /// Whether the profile describes the target (accounts, domain, trust), rather than a bare
    /// host probed on the documented ports.
    described: bool,
}

/// Probes `role` on `port`. With `described`, the port is the profile's: a closed one is a
/// mismatch, and the profile's accounts and domain are used for the checks.
pub(super) async fn probe_port(
    profile: &TargetProfile,
    role: PortRole,
    port: u16,
    described: bool,
    timeout: Duration,
) -> PortReport {
    let probe = Probe {
        profile,
        role,
        addr: profile.addr(port),
        timeout,
        described,
    };
    let mut report = PortReport::new(role, Some(port), PortState::Open);
    if let Err(Halt::Client(error)) = probe.run(&mut report).await {
        report.problem(
            "probe",
            "the probe could not finish talking to the port",
            error.to_string(),
        );
    }
    report.role_ok = match report.state {
        PortState::Open => Some(report.problems.is_empty()),
        PortState::Closed if described => Some(false),
        PortState::Closed | PortState::NotOffered => None,
    };
    report
}

impl Probe<'_> {
    async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(self.role.protocol(), &self.addr, self.timeout).await
    }

    fn inspecting(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<(TlsClient, Seen), ClientError> {
        TlsClient::inspecting(&self.profile.tls, &self.profile.host, versions)
    }

    async fn run(&self, report: &mut PortReport) -> Step<()> {
        let client = match self.connect().await {
            Ok(client) => client,
            Err(error) => {
                report.state = PortState::Closed;
                report.state_detail = Some(error.to_string());
                if self.described {
                    report.problem(
                        "open",
                        "the profile offers this port but it does not accept connections",
                        error.to_string(),
                    );
                }
                return Ok(());
            }
        };
        if self.role.required_tls() == TlsMode::Implicit {
            match self.implicit(client, report).await? {
                Ok(()) => {}
                Err(tls_failure) => {
                    // Not TLS from the first byte: find out what it is instead.
                    match self.plaintext(self.connect().await?, report).await? {
                        Ok(greeting) => report.problem(
                            "tls_mode",
                            "the role needs TLS from the first byte (RFC 8314), but the port \
                             speaks plaintext",
                            format!("TLS handshake: {tls_failure}; plaintext greeting: {greeting}"),
                        ),
                        Err(greeting_failure) => report.problem(
                            "greeting",
                            "neither a TLS handshake nor a plaintext greeting",
                            format!("TLS handshake: {tls_failure}; plaintext: {greeting_failure}"),
                        ),
                    }
                }
            }
        } else {
            match self.plaintext(client, report).await? {
                Ok(_) => {}
                Err(greeting_failure) => match self.implicit(self.connect().await?, report).await? {
                    Ok(()) => report.problem(
                        "tls_mode",
                        "the role needs a plaintext greeting and STARTTLS, but the port does TLS \
                         from the first byte",
                        format!("no plaintext greeting: {greeting_failure}"),
                    ),
                    Err(tls_failure) => report.problem(
                        "greeting",
                        "neither a plaintext greeting nor a TLS handshake",
                        format!("plaintext: {greeting_failure}; TLS handshake: {tls_failure}"),
                    ),
                },
            }
        }
        self.versions(report).await;
        Ok(())
    }

    /// Reads the greeting; a greeting that turns the client away is recorded and ends the probe.
    async fn welcome(&self, client: &mut Client, report: &mut PortReport) -> Step<String> {
        match client.greeting().await? {
            Ok(greeting) => Ok(greeting),
            Err(refusal) => {
                report.problem("greeting", "the server turns clients away", refusal);
                Err(Halt::Reported)
            }
        }
    }

    /// TLS from the first byte, then the greeting and the checks that run over TLS. `Ok(Err)`:
    /// the handshake failed, with the error.
    async fn implicit(
        &self,
        mut client: Client,
        report: &mut PortReport,
    ) -> Step<Result<(), String>> {
        let (tls, seen) = self.inspecting(&[&TLS13, &TLS12])?;
        match client.handshake(&tls).await {
            Ok(()) => {}
            Err(
                error @ (ClientError::Tls { .. }
                | ClientError::Timeout { .. }
                | ClientError::Closed { .. }
                | ClientError::Io { .. }),
            ) => return Ok(Err(error.to_string())),
            Err(error) => return Err(error.into()),
        }
        report.tls_mode = Some(TlsMode::Implicit);
        self.record_certificate(&seen, report);
        self.welcome(&mut client, report).await?;
        self.over_tls(&mut client, report).await?;
        client.quit().await;
        Ok(Ok(()))
    }

    /// A plaintext greeting, capabilities, login before TLS, the port-25 checks, and, when
    /// STARTTLS is offered, a second session through it. `Ok(Err)`: no plaintext greeting came
    /// (a TLS port, or something else), with the error; `Ok(Ok)`: the greeting.
    async fn plaintext(
        &self,
        mut client: Client,
        report: &mut PortReport,
    ) -> Step<Result<String, String>> {
        let greeting = match client.greeting().await {
            Ok(Ok(greeting)) => greeting,
            Ok(Err(refusal)) => {
                report.problem("greeting", "the server turns clients away", refusal);
                return Err(Halt::Reported);
            }
            Err(
                error @ (ClientError::Timeout { .. }
                | ClientError::MalformedReply { .. }
                | ClientError::Closed { .. }),
            ) => return Ok(Err(error.to_string())),
            Err(error) => return Err(error.into()),
        };
        client.capabilities().await?;
        let mode = if client.offers_starttls() {
            TlsMode::Starttls
        } else {
            TlsMode::None
        };
        report.tls_mode = Some(mode);
        if mode == TlsMode::None && self.role.required_tls() == TlsMode::Starttls {
            report.problem(
                "tls_mode",
                "STARTTLS is not offered; the role requires it",
                client.listing(),
            );
        }
        if let Some(smtp) = client.smtp()
            && self.role == PortRole::Smtp
        {
            self.relay_checks(smtp, report).await?;
        }
        self.login_before_tls(&mut client, report).await?;
        client.quit().await;
        if mode == TlsMode::Starttls {
            self.starttls_session(report).await?;
        }
        Ok(Ok(greeting))
    }

    /// Whether the plaintext capabilities offer a login, and one attempt with the profile's
    /// first account: more could lock the account.
    async fn login_before_tls(&self, client: &mut Client, report: &mut PortReport) -> Step<()> {
        let offered = client.login_offered();
        if let Some(evidence) = &offered {
            report.problem(
                "auth_offered_before_tls",
                "a login is offered before TLS, where the password would travel in the clear",
                evidence.clone(),
            );
        }
        let mut auth = AuthBeforeTls {
            offered: offered.is_some(),
            offered_evidence: offered.unwrap_or_else(|| client.listing()),
            accepted: None,
            accepted_evidence: None,
        };
        if let Some(account) = self.profile.accounts.first() {
            let (accepted, reply) = client.login(account).await?;
            if accepted {
                report.problem(
                    "auth_accepted_before_tls",
                    format!("a login as {} is accepted before TLS", account.address),
                    reply.clone(),
                );
            }
            auth.accepted = Some(accepted);
            auth.accepted_evidence = Some(reply);
        }
        report.auth_before_tls = Some(auth);
        Ok(())
    }

    /// A session through STARTTLS: the certificate, then the checks that run over TLS.
    async fn starttls_session(&self, report: &mut PortReport) -> Step<()> {
        let mut client = self.connect().await?;
        self.welcome(&mut client, report).await?;
        client.capabilities().await?;
        let (tls, seen) = self.inspecting(&[&TLS13, &TLS12])?;
        match client.starttls(&tls).await {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => {
                report.problem("tls_mode", "STARTTLS is offered but refused", refusal);
                return Err(Halt::Reported);
            }
            Err(error @ ClientError::Tls { .. }) => {
                self.record_certificate(&seen, report);
                report.problem(
                    "tls_mode",
                    "the TLS handshake after STARTTLS failed",
                    error.to_string(),
                );
                return Err(Halt::Reported);
            }
            Err(error) => return Err(error.into()),
        }
        self.record_certificate(&seen, report);
        self.over_tls(&mut client, report).await?;
        client.quit().await;
        Ok(())
    }

    /// The checks that run over TLS: the submission ports offer AUTH and refuse MAIL without
    /// it; port 25 reached over TLS gets its relay checks here.
    async fn over_tls(&self, client: &mut Client, report: &mut PortReport) -> Step<()> {
        client.capabilities().await?;
        let listing = client.listing();
        let Some(smtp) = client.smtp() else {
            return Ok(());
        };
        match self.role {
            PortRole::Submission | PortRole::Submissions => {
                if !smtp.has_capability("AUTH") {
                    report.problem(
                        "auth_offered",
                        "AUTH is not offered over TLS; the role requires it",
                        listing,
                    );
                }
                // RFC 6409 lets the server refuse the unauthenticated transaction at MAIL or
                // at RCPT (Postfix does the latter); only a transaction accepted at both is a
                // problem. Nothing is sent: RSET after RCPT.
                let from = self.local_address();
                let reply = smtp.command(&format!("MAIL FROM:<{from}>")).await?;
                if reply.is_positive() {
                    let rcpt = smtp.command(&format!("RCPT TO:<{from}>")).await?;
                    if rcpt.is_positive() {
                        report.problem(
                            "mail_requires_auth",
                            "MAIL and RCPT are accepted before AUTH; the role requires AUTH first",
                            format!(
                                "MAIL FROM:<{from}> -> {}; RCPT TO:<{from}> -> {}",
                                first_line(&reply.to_string()),
                                first_line(&rcpt.to_string())
                            ),
                        );
                    } else {
                        report.note(format!(
                            "refuses the unauthenticated transaction at RCPT, not at MAIL: {}",
                            first_line(&rcpt.to_string())
                        ));
                    }
                    smtp.command("RSET").await?;
                }
            }
            PortRole::Smtp if report.tls_mode == Some(TlsMode::Implicit) => {
                self.relay_checks(smtp, report).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The profile's first account, else its postmaster.
    fn local_address(&self) -> String {
        self.profile
            .accounts
            .first()
            .map(|account| account.address.clone())
            .unwrap_or_else(|| format!("postmaster@{}", self.profile.domain))
    }

    /// Port 25 without AUTH: mail to a local address is accepted, mail to another domain is
    /// refused. Both as bounces (`MAIL FROM:<>`): every MX must take those (RFC 5321 4.5.5),
    /// and the null path names no domain a sender check could refuse. Nothing is sent: RSET
    /// after each RCPT.
    async fn relay_checks(
        &self,
        smtp: &mut crate::clients::smtp::SmtpClient,
        report: &mut PortReport,
    ) -> Step<()> {
        let mut transaction =
            async |recipient: &str| -> Result<Result<String, String>, ClientError> {
                let mail = smtp.command("MAIL FROM:<>").await?;
                if mail.code != 250 {
                    smtp.command("RSET").await?;
                    return Ok(Err(format!(
                        "MAIL FROM:<> -> {}",
                        first_line(&mail.to_string())
                    )));
                }
                let rcpt = smtp.command(&format!("RCPT TO:<{recipient}>")).await?;
                smtp.command("RSET").await?;
                let text = format!("RCPT TO:<{recipient}> -> {}", first_line(&rcpt.to_string()));
                Ok(if rcpt.is_positive() {
                    Ok(text)
                } else {
                    Err(text)
                })
            };
        if self.described {
            let local = self.local_address();
            if let Err(evidence) = transaction(&local).await? {
                report.problem(
                    "local_delivery",
                    format!("mail to the local address {local} is refused without AUTH"),
                    evidence,
                );
            }
        }
        let foreign = self.profile.foreign_recipient.clone();
        if let Ok(evidence) = transaction(&foreign).await? {
            report.problem(
                "relay_refused",
                format!("mail to {foreign}, another domain, is accepted without AUTH (open relay)"),
                evidence,
            );
        }
        Ok(())
    }

    fn record_certificate(&self, seen: &Seen, report: &mut PortReport) {
        let Some(peer) = seen.take() else {
            return;
        };
        let Some(der) = peer.chain.first() else {
            return;
        };
        let summary = match cert::summarize(der) {
            Ok(summary) => summary,
            Err(error) => {
                report.problem(
                    "probe",
                    "the certificate cannot be read",
                    format!("{error} in {} DER bytes", der.len()),
                );
                return;
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            });
        let days_left = cert::days_left(summary.not_after_unix, now);
        if days_left < 0 {
            report.problem(
                "certificate_expired",
                "the certificate has expired",
                format!("notAfter {}", summary.not_after),
            );
        }
        let verify_error = peer.verified.clone().and_then(Result::err);
        if let Some(error) = &verify_error {
            report.problem(
                "certificate_untrusted",
                "the certificate does not verify against the profile's tls settings",
                error.clone(),
            );
        }
        report.certificate = Some(Certificate {
            subject: summary.subject,
            common_name: summary.common_name,
            alt_names: summary.alt_names,
            issuer: summary.issuer,
            not_after: summary.not_after,
            days_left,
            verified: peer.verified.map(|verdict| verdict.is_ok()),
            verify_error,
        });
    }

    /// One handshake per TLS version, on a fresh connection each: 1.2 and 1.3 with rustls
    /// offering that version alone, 1.0 and 1.1 with the hand-built ClientHello.
    async fn versions(&self, report: &mut PortReport) {
        let Some(mode @ (TlsMode::Starttls | TlsMode::Implicit)) = report.tls_mode else {
            return;
        };
        for (name, version) in [("1.2", &TLS12), ("1.3", &TLS13)] {
            let probe = self.modern(mode, version).await;
            report.tls_versions.insert(name.into(), probe);
        }
        for (name, version) in [("1.0", LegacyVersion::Tls10), ("1.1", LegacyVersion::Tls11)] {
            let probe = self.hand_built(mode, Offer::Legacy(version)).await;
            if probe.accepted == Some(true) {
                report.problem(
                    "legacy_tls",
                    format!("TLS {name} is accepted; it is deprecated (RFC 8996)"),
                    format!("{version} ClientHello {}", probe.detail),
                );
            }
            report.tls_versions.insert(name.into(), probe);
        }
        let weak = self.hand_built(mode, Offer::WeakSuites).await;
        match weak.accepted {
            Some(true) => report.problem(
                "weak_ciphers",
                "a ClientHello offering only anonymous, export and NULL cipher suites is \
                 accepted; BCP 195 (RFC 9325 section 4.1) forbids NULL and export suites, and an \
                 anonymous one authenticates no server",
                format!("{} ClientHello {}", Offer::WeakSuites, weak.detail),
            ),
            Some(false) => {}
            None => report.note(format!(
                "could not tell whether anonymous, export or NULL cipher suites are accepted: {}",
                weak.detail
            )),
        }
        report.weak_ciphers = Some(weak);
    }

    /// Connects and, on a STARTTLS port, gets as far as the STARTTLS command.
    async fn before_handshake(&self, mode: TlsMode) -> Result<Result<Client, String>, ClientError> {
        let mut client = self.connect().await?;
        if mode == TlsMode::Starttls {
            if let Err(refusal) = client.greeting().await? {
                return Ok(Err(format!("greeting: {refusal}")));
            }
            client.capabilities().await?;
        }
        Ok(Ok(client))
    }

    async fn modern(
        &self,
        mode: TlsMode,
        version: &'static SupportedProtocolVersion,
    ) -> VersionProbe {
        let attempt = async {
            let (tls, _) = self.inspecting(&[version])?;
            let mut client = match self.before_handshake(mode).await? {
                Ok(client) => client,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if mode == TlsMode::Implicit {
                client.handshake(&tls).await?;
            } else if let Err(refusal) = client.starttls(&tls).await? {
                return Ok(Err(format!("STARTTLS refused: {refusal}")));
            }
            let negotiated = client.tls_protocol_version().unwrap_or_default();
            client.quit().await;
            Ok(Ok(negotiated))
        };
        match attempt.await {
            Ok(Ok(negotiated)) => VersionProbe {
                accepted: Some(true),
                detail: format!("negotiated {negotiated}"),
            },
            Ok(Err(refusal)) => VersionProbe {
                accepted: None,
                detail: refusal,
            },
            Err(ClientError::Tls { source, .. }) => VersionProbe {
                accepted: Some(false),
                detail: source.to_string(),
            },
            Err(error) => VersionProbe {
                accepted: None,
                detail: error.to_string(),
            },
        }
    }

    /// A hand-built ClientHello with `offer`, from the first byte or after STARTTLS (STLS).
    async fn hand_built(&self, mode: TlsMode, offer: Offer) -> VersionProbe {
        let sni = self
            .inspecting(&[&TLS13])
            .ok()
            .and_then(|(tls, _)| tls.sni().map(str::to_owned));
        let attempt = async {
            if mode == TlsMode::Implicit {
                return probe_hello_at(&self.addr, offer, sni.as_deref(), self.timeout)
                    .await
                    .map(Ok);
            }
            match self.before_handshake(mode).await? {
                Ok(mut client) => client.starttls_then_probe(offer, sni.as_deref()).await,
                Err(refusal) => Ok(Err(refusal)),
            }
        };
        match attempt.await {
            Ok(Ok(outcome)) => VersionProbe {
                accepted: Some(matches!(outcome, HelloOutcome::Accepted { .. })),
                detail: match offer {
                    // The suite a legacy version was accepted with says nothing more.
                    Offer::Legacy(_) => LegacyOutcome::from(outcome).to_string(),
                    Offer::WeakSuites | Offer::ForbiddenSuites | Offer::AnonymousSuites => {
                        outcome.to_string()
                    }
                },
            },
            Ok(Err(refusal)) => VersionProbe {
                accepted: None,
                detail: format!("STARTTLS refused: {refusal}"),
            },
            Err(error) => VersionProbe {
                accepted: None,
                detail: error.to_string(),
            },
        }
    }
}

//! Steps of the TLS part of the security suite (features/security/tls.feature): which cipher
//! suites a TLS port accepts and whom its certificate names, on every TLS port, after
//! STARTTLS (STLS) where the port needs it.

use anyhow::{Context as _, anyhow, bail, ensure};
use cucumber::then;

use super::smtp::EHLO_NAME;
use super::{MailWorld, Target};
use crate::clients::imap::ImapClient;
use crate::clients::legacy_tls::{HelloOutcome, Offer, probe_hello_at};
use crate::clients::pop3::Pop3Client;
use crate::clients::smtp::SmtpClient;
use crate::clients::tls::TlsClient;

#[then(regex = r"^the (\w+) port accepts no NULL, export or RC4 cipher suite$")]
async fn no_forbidden_suites(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    match weak_hello(world, &role, Offer::ForbiddenSuites).await? {
        HelloOutcome::Refused { .. } => Ok(()),
        accepted @ HelloOutcome::Accepted { .. } => bail!(
            "the {role} port {accepted}, in answer to a ClientHello that offered only NULL, \
             export and RC4 cipher suites: BCP 195 (RFC 9325 section 4.1) says implementations \
             MUST NOT negotiate them"
        ),
    }
}

#[then(regex = r"^the (\w+) port accepts no anonymous cipher suite$")]
async fn no_anonymous_suites(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    match weak_hello(world, &role, Offer::AnonymousSuites).await? {
        HelloOutcome::Refused { .. } => Ok(()),
        accepted @ HelloOutcome::Accepted { .. } => bail!(
            "the {role} port {accepted}, in answer to a ClientHello that offered only anonymous \
             cipher suites: an anonymous suite authenticates no server, so anyone in the path \
             can read the session (RFC 5246 appendix A.5 allows one only where the application \
             asks for it, as opportunistic TLS between MTAs may)"
        ),
    }
}

/// How the `role` port answers a ClientHello with only the weak suites of `offer`: from the
/// first byte on an implicit-TLS port, after STARTTLS (STLS) on the others.
async fn weak_hello(
    world: &mut MailWorld,
    role: &str,
    offer: Offer,
) -> anyhow::Result<HelloOutcome> {
    let target = world.target()?;
    let sni = target.tls.sni().map(str::to_owned);
    if Target::is_implicit_tls(role) {
        let addr = target.addr(role)?;
        Ok(probe_hello_at(&addr, offer, sni.as_deref(), target.timeout).await?)
    } else {
        starttls_then_probe(world, &target, role, offer, sni.as_deref()).await
    }
}

/// STARTTLS (STLS on pop3) on a plaintext port, then the weak ClientHello of `offer` instead
/// of a handshake.
async fn starttls_then_probe(
    world: &mut MailWorld,
    target: &Target,
    role: &str,
    offer: Offer,
    sni: Option<&str>,
) -> anyhow::Result<HelloOutcome> {
    let addr = target.addr(role)?;
    let timeout = target.timeout;
    match role {
        "smtp" | "submission" => {
            let mut client = target.connect(role).await?;
            let outcome = async {
                client.read_reply().await.context("reading the greeting")?;
                client.ehlo(EHLO_NAME).await?;
                Ok(client.starttls_then_probe(offer, sni).await?)
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            outcome
        }
        "pop3" => {
            let mut client = Pop3Client::connect(&addr, timeout).await?;
            let outcome = async {
                let greeting = client.greeting().await.context("reading the greeting")?;
                ensure!(greeting.ok, "the POP3 greeting was not +OK: {greeting}");
                client
                    .stls_then_probe(offer, sni)
                    .await?
                    .map_err(|response| anyhow!("STLS was refused: {response}"))
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            outcome
        }
        "imap" => {
            let mut client = ImapClient::connect(&addr, timeout).await?;
            let outcome = async {
                client.greeting().await.context("reading the greeting")?;
                client
                    .starttls_then_probe(offer, sni)
                    .await?
                    .map_err(|status| anyhow!("STARTTLS was refused: {status}"))
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            outcome
        }
        other => bail!("the step knows no STARTTLS port called {other}"),
    }
}

#[then(
    regex = r"^the (\w+) port shows a certificate valid for the target's name, with and without SNI$"
)]
async fn certificate_names_the_target(world: &mut MailWorld, role: String) -> anyhow::Result<()> {
    let target = world.target()?;
    if !target.profile.tls.verify {
        world.unverified = Some(
            "the profile says tls.verify: false, so there is nothing to check the certificate \
             against"
                .into(),
        );
        return Ok(());
    }
    let name = target.tls.server_name().to_str().into_owned();
    // A client that sends the name (SNI) is what mail user agents are; many MTAs on port 25
    // send none, and a server that picks its certificate by SNI must then still show one for
    // its own name. An address as the name cannot be sent as SNI at all.
    let ways = if target.tls.sni().is_some() {
        vec![("with SNI", true), ("without SNI", false)]
    } else {
        vec![("(the name is an address, so without SNI)", false)]
    };
    for (how, sni) in ways {
        let tls = target.tls.for_certificate_check(sni);
        handshake(world, &target, &role, &tls)
            .await
            .map_err(|error| {
                anyhow!(
                    "a handshake {how} on the {role} port failed, the certificate checked against \
                     {name:?} (the profile's tls.server_name, else its host): {error}"
                )
            })?;
    }
    Ok(())
}

/// A TLS handshake with `tls` on a port, after STARTTLS (STLS) where the port needs it.
async fn handshake(
    world: &mut MailWorld,
    target: &Target,
    role: &str,
    tls: &TlsClient,
) -> anyhow::Result<()> {
    let addr = target.addr(role)?;
    let timeout = target.timeout;
    match role {
        "submissions" => {
            SmtpClient::connect_tls(&addr, tls, timeout).await?;
            Ok(())
        }
        "pop3s" => {
            Pop3Client::connect_tls(&addr, tls, timeout).await?;
            Ok(())
        }
        "imaps" => {
            ImapClient::connect_tls(&addr, tls, timeout).await?;
            Ok(())
        }
        "smtp" | "submission" => {
            let mut client = SmtpClient::connect(&addr, timeout).await?;
            let result = async {
                client.read_reply().await.context("reading the greeting")?;
                client.ehlo(EHLO_NAME).await?;
                let reply = client.starttls(tls).await?;
                ensure!(reply.code == 220, "STARTTLS was refused: {reply}");
                Ok(())
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            result
        }
        "pop3" => {
            let mut client = Pop3Client::connect(&addr, timeout).await?;
            let result = async {
                let greeting = client.greeting().await.context("reading the greeting")?;
                ensure!(greeting.ok, "the POP3 greeting was not +OK: {greeting}");
                let response = client.stls(tls).await?;
                ensure!(response.ok, "STLS was refused: {response}");
                Ok(())
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            result
        }
        "imap" => {
            let mut client = ImapClient::connect(&addr, timeout).await?;
            let result = async {
                client.greeting().await.context("reading the greeting")?;
                let result = client.starttls(tls).await?;
                ensure!(
                    result.is_ok(),
                    "STARTTLS was refused: {} {}",
                    result.tag,
                    result.tagged
                );
                Ok(())
            }
            .await;
            world
                .other_transcripts
                .push(client.transcript().to_string());
            result
        }
        other => bail!("the step knows no TLS port called {other}"),
    }
}

#[then(
    regex = r"^the imap port's greeting agrees with CAPABILITY about STARTTLS and LOGINDISABLED$"
)]
async fn greeting_capabilities_agree(world: &mut MailWorld) -> anyhow::Result<()> {
    let target = world.target()?;
    let addr = target.addr("imap")?;
    let mut client = ImapClient::connect(&addr, target.timeout).await?;
    let compared = async {
        let greeting = client.greeting().await.context("reading the greeting")?;
        let Some(announced) = greeting.capabilities().map(<[String]>::to_vec) else {
            return Ok(false);
        };
        let result = client.capability().await?;
        ensure!(
            result.is_ok(),
            "CAPABILITY failed: {} {}",
            result.tag,
            result.tagged
        );
        let listed = client.capabilities();
        for name in ["STARTTLS", "LOGINDISABLED"] {
            let has = |list: &[String]| list.iter().any(|own| own.eq_ignore_ascii_case(name));
            let says = |yes: bool| if yes { "lists" } else { "does not list" };
            ensure!(
                has(&announced) == has(listed),
                "the greeting's CAPABILITY code {} {name}, but the CAPABILITY command {} it: a \
                 client that takes the greeting's word (RFC 3501 section 7.1 lets it) {}.\n\
                 greeting:   {}\nCAPABILITY: {}",
                says(has(&announced)),
                says(has(listed)),
                if name == "STARTTLS" {
                    "does not know it can start TLS"
                } else {
                    "thinks LOGIN is allowed and sends the password in clear text"
                },
                announced.join(" "),
                listed.join(" ")
            );
        }
        Ok(true)
    }
    .await;
    world
        .other_transcripts
        .push(client.transcript().to_string());
    if !compared? {
        world.note("the imap greeting carries no CAPABILITY code, so there is nothing to compare");
    }
    Ok(())
}

//! SMTP, POP3 and IMAP behind one face, for the few steps every port's probe takes: greeting,
//! capabilities, STARTTLS (STLS), a login, QUIT (LOGOUT).

use std::time::Duration;

use crate::clients::ClientError;
use crate::clients::imap::{ImapClient, StatusKind};
use crate::clients::legacy_tls::{HelloOutcome, Offer};
use crate::clients::pop3::Pop3Client;
use crate::clients::smtp::SmtpClient;
use crate::clients::tls::TlsClient;
use crate::target::Account;

/// The name the probe gives in EHLO.
pub(super) const EHLO_NAME: &str = "ports.harness.test";

/// Which protocol a port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Smtp,
    Pop3,
    Imap,
}

pub(super) enum Client {
    Smtp(SmtpClient),
    Pop3(Pop3Client),
    Imap(ImapClient),
}

impl Client {
    /// A plaintext connection; nothing read yet.
    pub(super) async fn connect(
        protocol: Protocol,
        addr: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Ok(match protocol {
            Protocol::Smtp => Self::Smtp(SmtpClient::connect(addr, timeout).await?),
            Protocol::Pop3 => Self::Pop3(Pop3Client::connect(addr, timeout).await?),
            Protocol::Imap => Self::Imap(ImapClient::connect(addr, timeout).await?),
        })
    }

    /// A TLS handshake at once, for a port with TLS from the first byte.
    pub(super) async fn handshake(&mut self, tls: &TlsClient) -> Result<(), ClientError> {
        match self {
            Self::Smtp(client) => client.tls_handshake(tls).await,
            Self::Pop3(client) => client.tls_handshake(tls).await,
            Self::Imap(client) => client.tls_handshake(tls).await,
        }
    }

    /// The greeting as received: `Ok` when it is a welcome (220, +OK, * OK or * PREAUTH), `Err`
    /// when it turns the client away.
    pub(super) async fn greeting(&mut self) -> Result<Result<String, String>, ClientError> {
        Ok(match self {
            Self::Smtp(client) => {
                let reply = client.read_reply().await?;
                welcome(reply.code == 220, first_line(&reply.to_string()))
            }
            Self::Pop3(client) => {
                let response = client.greeting().await?;
                welcome(response.ok, response.to_string())
            }
            Self::Imap(client) => {
                let status = client.greeting().await?;
                let ok = matches!(status.kind, StatusKind::Ok | StatusKind::Preauth);
                welcome(ok, format!("* {status}"))
            }
        })
    }

    /// EHLO, CAPA or CAPABILITY, so that the checks below see the capabilities.
    pub(super) async fn capabilities(&mut self) -> Result<(), ClientError> {
        match self {
            Self::Smtp(client) => {
                let reply = client.ehlo(EHLO_NAME).await?;
                if reply.code != 250 {
                    return Err(ClientError::UnexpectedReply {
                        expected: "250 to EHLO",
                        reply,
                    });
                }
            }
            Self::Pop3(client) => {
                client.capa().await?;
            }
            Self::Imap(client) => {
                client.capability().await?;
            }
        }
        Ok(())
    }

    /// The capability listing as shown in evidence.
    pub(super) fn listing(&self) -> String {
        match self {
            Self::Smtp(client) => format!("EHLO: {}", keywords(client.capabilities())),
            Self::Pop3(client) => format!("CAPA: {}", keywords(client.capabilities())),
            Self::Imap(client) => format!("CAPABILITY: {}", client.capabilities().join(" ")),
        }
    }

    /// Whether the capabilities list STARTTLS (STLS for POP3).
    pub(super) fn offers_starttls(&self) -> bool {
        match self {
            Self::Smtp(client) => client.has_capability("STARTTLS"),
            Self::Pop3(client) => client.has_capability("STLS"),
            Self::Imap(client) => client.has_capability("STARTTLS"),
        }
    }

    /// How the capabilities offer a login now, if they do: SMTP AUTH; POP3 USER or SASL; IMAP
    /// an AUTH= mechanism or LOGIN without LOGINDISABLED.
    pub(super) fn login_offered(&self) -> Option<String> {
        match self {
            Self::Smtp(client) => {
                let mechanisms = client.auth_mechanisms();
                client
                    .has_capability("AUTH")
                    .then(|| format!("EHLO lists AUTH {}", mechanisms.join(" ")))
            }
            Self::Pop3(client) => {
                let mut offered = Vec::new();
                if client.has_capability("USER") {
                    offered.push("USER".to_owned());
                }
                // Dovecot lists a bare `SASL` before STLS: no mechanism, so no login offered.
                if client.has_capability("SASL") && !client.sasl_mechanisms().is_empty() {
                    offered.push(format!("SASL {}", client.sasl_mechanisms().join(" ")));
                }
                (!offered.is_empty()).then(|| format!("CAPA lists {}", offered.join(", ")))
            }
            Self::Imap(client) => {
                let mechanisms: Vec<&String> = client
                    .capabilities()
                    .iter()
                    .filter(|name| name.to_ascii_uppercase().starts_with("AUTH="))
                    .collect();
                if !mechanisms.is_empty() {
                    let names: Vec<&str> = mechanisms.iter().map(|name| name.as_str()).collect();
                    Some(format!("CAPABILITY lists {}", names.join(" ")))
                } else if !client.has_capability("LOGINDISABLED") {
                    Some("CAPABILITY lacks LOGINDISABLED".to_owned())
                } else {
                    None
                }
            }
        }
    }

    /// One login with `account`: whether it was accepted, and the reply.
    pub(super) async fn login(&mut self, account: &Account) -> Result<(bool, String), ClientError> {
        Ok(match self {
            Self::Smtp(client) => {
                let reply = client
                    .auth_plain(&account.address, &account.password)
                    .await?;
                (reply.code == 235, first_line(&reply.to_string()))
            }
            Self::Pop3(client) => {
                let response = client
                    .user_pass(&account.address, &account.password)
                    .await?;
                (response.ok, response.to_string())
            }
            Self::Imap(client) => {
                let result = client.login(&account.address, &account.password).await?;
                (result.is_ok(), format!("{} {}", result.tag, result.tagged))
            }
        })
    }

    /// STARTTLS (STLS) and the handshake; `Ok(Err(reply))` when the server refuses the command.
    pub(super) async fn starttls(
        &mut self,
        tls: &TlsClient,
    ) -> Result<Result<(), String>, ClientError> {
        Ok(match self {
            Self::Smtp(client) => {
                let reply = client.starttls(tls).await?;
                (reply.code == 220)
                    .then_some(())
                    .ok_or_else(|| first_line(&reply.to_string()))
            }
            Self::Pop3(client) => {
                let response = client.stls(tls).await?;
                response.ok.then_some(()).ok_or(response.to_string())
            }
            Self::Imap(client) => {
                let result = client.starttls(tls).await?;
                result
                    .is_ok()
                    .then_some(())
                    .ok_or_else(|| format!("{} {}", result.tag, result.tagged))
            }
        })
    }

    /// STARTTLS (STLS), then a ClientHello with `offer` instead of a handshake; `Ok(Err(reply))`
    /// when the server refuses the command. The connection is unusable afterwards.
    pub(super) async fn starttls_then_probe(
        &mut self,
        offer: Offer,
        sni: Option<&str>,
    ) -> Result<Result<HelloOutcome, String>, ClientError> {
        match self {
            Self::Smtp(client) => match client.starttls_then_probe(offer, sni).await {
                Err(ClientError::UnexpectedReply { reply, .. }) => {
                    Ok(Err(first_line(&reply.to_string())))
                }
                outcome => outcome.map(Ok),
            },
            Self::Pop3(client) => Ok(client
                .stls_then_probe(offer, sni)
                .await?
                .map_err(|response| response.to_string())),
            Self::Imap(client) => Ok(client
                .starttls_then_probe(offer, sni)
                .await?
                .map_err(|status| status.to_string())),
        }
    }

    /// The negotiated TLS version, such as `"TLSv1.3"`, when TLS is on.
    pub(super) fn tls_protocol_version(&self) -> Option<String> {
        match self {
            Self::Smtp(client) => client.tls_protocol_version(),
            Self::Pop3(client) => client.tls_protocol_version(),
            Self::Imap(client) => client.tls_protocol_version(),
        }
    }

    /// The SMTP client, for the checks only SMTP ports have.
    pub(super) fn smtp(&mut self) -> Option<&mut SmtpClient> {
        match self {
            Self::Smtp(client) => Some(client),
            _ => None,
        }
    }

    /// QUIT (LOGOUT), ignoring what comes back: the probe is over either way.
    pub(super) async fn quit(mut self) {
        let _ = match &mut self {
            Self::Smtp(client) => client.command("QUIT").await.map(drop),
            Self::Pop3(client) => client.quit().await.map(drop),
            Self::Imap(client) => client.logout().await.map(drop),
        };
    }
}

fn welcome(ok: bool, text: String) -> Result<String, String> {
    if ok { Ok(text) } else { Err(text) }
}

/// The first line of a reply, for evidence that fits on one line.
pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

fn keywords(capabilities: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    capabilities
        .iter()
        .map(|(keyword, parameters)| {
            std::iter::once(keyword.as_str())
                .chain(parameters.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

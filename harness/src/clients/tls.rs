//! TLS client settings: which certificates to trust and which name to expect.

use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, WebPkiSupportedAlgorithms};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;
use crate::target::TlsSettings;

/// A rustls client configuration (TLS 1.2 and 1.3, ring provider) and the server name to expect.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// Wraps a ready configuration, for tests that need an unusual one.
    pub fn new(config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        Self {
            config,
            server_name,
        }
    }

    /// Builds a client from a target's settings: trusts `ca_pem` and `ca_file`, or with
    /// `verify: false` accepts any certificate (handshake signatures are still checked). The
    /// server name is `server_name`, else `host`.
    pub fn from_settings(settings: &TlsSettings, host: &str) -> Result<Self, ClientError> {
        let name = settings.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|error| ClientError::TlsConfig(format!("server name {name:?}: {error}")))?;
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| ClientError::TlsConfig(error.to_string()))?;
        let config = if settings.verify {
            builder
                .with_root_certificates(trusted_roots(settings)?)
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        };
        Ok(Self::new(Arc::new(config), server_name))
    }

    /// A client for looking at a server rather than trusting it: it offers only `versions`,
    /// accepts any certificate (handshake signatures are still checked), and leaves in the
    /// returned [`Seen`] the chain it was shown and whether `settings` would have accepted it.
    /// Unusable settings (verify on without a CA, an unreadable CA) are an error, as for
    /// [`Self::from_settings`].
    pub fn inspecting(
        settings: &TlsSettings,
        host: &str,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Result<(Self, Seen), ClientError> {
        let name = settings.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|error| ClientError::TlsConfig(format!("server name {name:?}: {error}")))?;
        let provider = Arc::new(crypto::ring::default_provider());
        let trusted = if settings.verify {
            let verifier = WebPkiServerVerifier::builder_with_provider(
                Arc::new(trusted_roots(settings)?),
                provider.clone(),
            )
            .build()
            .map_err(|error| ClientError::TlsConfig(error.to_string()))?;
            Some(verifier)
        } else {
            None
        };
        let seen = Seen::default();
        let verifier = Inspector {
            algorithms: provider.signature_verification_algorithms,
            trusted,
            seen: seen.clone(),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|error| ClientError::TlsConfig(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok((Self::new(Arc::new(config), server_name), seen))
    }

    /// The same client for a check on the certificate itself: it never resumes a session (a
    /// resumed handshake shows no certificate) and sends the server name (SNI) only with `sni`.
    /// The certificate is checked against the server name either way.
    pub fn for_certificate_check(&self, sni: bool) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_sni = sni;
        Self::new(Arc::new(config), self.server_name.clone())
    }

    /// The name the certificate is checked against.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// The name to send in SNI: the server name when it is a DNS name, not an IP address.
    pub fn sni(&self) -> Option<&str> {
        match &self.server_name {
            ServerName::DnsName(name) => Some(name.as_ref()),
            _ => None,
        }
    }

    /// The first flight of a handshake with this configuration: a ClientHello's bytes.
    pub(crate) fn client_hello(&self) -> Result<Vec<u8>, ClientError> {
        let mut connection =
            rustls::ClientConnection::new(self.config.clone(), self.server_name.clone())
                .map_err(|error| ClientError::TlsConfig(error.to_string()))?;
        let mut hello = Vec::new();
        while connection.wants_write() {
            connection
                .write_tls(&mut hello)
                .map_err(|error| ClientError::TlsConfig(error.to_string()))?;
        }
        Ok(hello)
    }

    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ClientError> {
        TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|source| ClientError::Tls {
                server_name: self.server_name.to_str().into_owned(),
                source,
            })
    }
}

fn trusted_roots(settings: &TlsSettings) -> Result<RootCertStore, ClientError> {
    let bad_pem = |source: &str, error: rustls_pki_types::pem::Error| {
        ClientError::TlsConfig(format!("reading certificates from {source}: {error}"))
    };
    let mut certificates = Vec::new();
    if let Some(pem) = &settings.ca_pem {
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            certificates.push(certificate.map_err(|error| bad_pem("the inline CA", error))?);
        }
    }
    if let Some(file) = &settings.ca_file {
        let source = file.display().to_string();
        for certificate in CertificateDer::pem_file_iter(file).map_err(|e| bad_pem(&source, e))? {
            certificates.push(certificate.map_err(|error| bad_pem(&source, error))?);
        }
    }
    if certificates.is_empty() {
        return Err(ClientError::TlsConfig(
            "verify is on but no CA certificate was given: set tls.ca_file (a system bundle such \
             as /etc/ssl/certs/ca-certificates.crt will do) or verify: false"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| ClientError::TlsConfig(format!("unusable CA certificate: {error}")))?;
    }
    Ok(roots)
}

/// `"TLSv1.2"`-style name of a negotiated version.
pub(crate) fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// What an inspecting handshake ([`TlsClient::inspecting`]) was shown.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate {
    /// The chain as the server sent it, end entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Whether the trust settings accept it: `None` when they say `verify: false`, else the
    /// verifier's verdict, its error as text.
    pub verified: Option<Result<(), String>>,
}

/// Where an inspecting client leaves what its last handshake was shown.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Option<PeerCertificate>>>);

impl Seen {
    /// What the last handshake was shown, if it got as far as a certificate.
    pub fn take(&self) -> Option<PeerCertificate> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Records the chain and the trust settings' verdict on it, then accepts it, so that a probe
/// can go on to look at a server whose certificate would not be trusted.
#[derive(Debug)]
struct Inspector {
    algorithms: WebPkiSupportedAlgorithms,
    trusted: Option<Arc<WebPkiServerVerifier>>,
    seen: Seen,
}

impl ServerCertVerifier for Inspector {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.trusted.as_ref().map(|verifier| {
            verifier
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|error| error.to_string())
        });
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|certificate| certificate.clone().into_owned())
            .collect();
        *self.seen.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(PeerCertificate { chain, verified });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts any certificate chain but still checks that the handshake was signed with the
/// certificate's key, so `verify: false` skips trust, not cryptography.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_needs_a_ca() {
        let error = TlsClient::from_settings(&TlsSettings::default(), "mail.test").unwrap_err();
        assert!(error.to_string().contains("no CA certificate"), "{error}");
        let not_pem = TlsSettings {
            ca_pem: Some("not a certificate".into()),
            ..TlsSettings::default()
        };
        assert!(TlsClient::from_settings(&not_pem, "mail.test").is_err());
    }

    #[test]
    fn sni_only_for_dns_names() {
        let anything = TlsSettings {
            verify: false,
            ..TlsSettings::default()
        };
        let by_address = TlsClient::from_settings(&anything, "127.0.0.1").unwrap();
        assert_eq!(by_address.sni(), None);
        let named = TlsSettings {
            server_name: Some("mail.test".into()),
            ..anything
        };
        let by_name = TlsClient::from_settings(&named, "127.0.0.1").unwrap();
        assert_eq!(by_name.sni(), Some("mail.test"));
        assert_eq!(by_name.server_name().to_str(), "mail.test");
    }
}

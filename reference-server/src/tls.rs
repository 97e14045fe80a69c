//! The server's certificate and its rustls configuration (ring provider, TLS 1.2 and 1.3 only).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::TlsFiles;

/// Why the TLS set-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("certificate and key do not form a usable TLS identity: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's TLS identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The acceptor's configuration.
    pub config: Arc<ServerConfig>,
    /// Where the certificate is, for clients to trust.
    pub cert_path: PathBuf,
    /// The certificate chain in PEM, for in-process clients.
    pub cert_pem: String,
}

/// Loads the configured certificate, or the one generated earlier in `<data_dir>/tls/`,
/// or generates a self-signed one there for `localhost`, `127.0.0.1`, `::1` and `hostname`.
pub fn load_or_generate(
    files: Option<&TlsFiles>,
    data_dir: &Path,
    hostname: &str,
) -> Result<Identity, TlsError> {
    let loaded = load(files, data_dir, hostname)?;
    let config = server_config(loaded.chain, loaded.key)?;
    Ok(Identity {
        config,
        cert_path: loaded.cert_path,
        cert_pem: loaded.cert_pem,
    })
}

/// [`load_or_generate`] for the `wrong_certificate_name` fault: a client that sends a server
/// name (SNI) gets the certificate as usual; one that sends none gets a certificate for
/// [`WRONG_NAME`], issued by the same issuer name and key as the right one, so that only its
/// name is wrong. Only the generated certificate will do: its issuer is known without parsing it.
pub fn load_or_generate_misnamed(
    files: Option<&TlsFiles>,
    data_dir: &Path,
    hostname: &str,
) -> Result<Identity, TlsError> {
    if let Some(files) = files {
        return Err(TlsError::Pem {
            path: files.cert.clone(),
            message: "the wrong_certificate_name fault needs the generated certificate, not \
                      configured files"
                .into(),
        });
    }
    let loaded = load(files, data_dir, hostname)?;
    let issuer_key = rcgen::KeyPair::try_from(&loaded.key)?;
    // generate() made the certificate from these parameters: the same subject, self-signed.
    let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), issuer_key);
    let wrong_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![WRONG_NAME.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, WRONG_NAME);
    let wrong_cert = params.signed_by(&wrong_key, &issuer)?;
    let provider = rustls::crypto::ring::default_provider();
    let right = CertifiedKey::from_der(loaded.chain, loaded.key, &provider)?;
    let wrong_der = PrivatePkcs8KeyDer::from(wrong_key.serialize_der()).into();
    let wrong = CertifiedKey::from_der(vec![wrong_cert.der().clone()], wrong_der, &provider)?;
    let resolver = MisnamedWithoutSni {
        right: Arc::new(right),
        wrong: Arc::new(wrong),
    };
    let config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Identity {
        config: Arc::new(config),
        cert_path: loaded.cert_path,
        cert_pem: loaded.cert_pem,
    })
}

/// The name on the certificate the `wrong_certificate_name` fault shows.
pub const WRONG_NAME: &str = "wrong.invalid";

/// The `wrong_certificate_name` fault's choice of certificate.
#[derive(Debug)]
struct MisnamedWithoutSni {
    right: Arc<CertifiedKey>,
    wrong: Arc<CertifiedKey>,
}

impl ResolvesServerCert for MisnamedWithoutSni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(_) => self.right.clone(),
            None => self.wrong.clone(),
        })
    }
}

/// A certificate chain and key as read from disk.
struct Loaded {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    cert_pem: String,
}

fn load(files: Option<&TlsFiles>, data_dir: &Path, hostname: &str) -> Result<Loaded, TlsError> {
    let (cert_path, key_path) = match files {
        Some(files) => (files.cert.clone(), files.key.clone()),
        None => {
            let dir = data_dir.join("tls");
            let paths = (dir.join("cert.pem"), dir.join("key.pem"));
            if !paths.0.exists() || !paths.1.exists() {
                generate(&dir, &paths.0, &paths.1, hostname)?;
            }
            paths
        }
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            message: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path,
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        message: format!("no usable private key: {e}"),
    })?;
    Ok(Loaded {
        chain,
        key,
        cert_path,
        cert_pem,
    })
}

/// TLS 1.2 and 1.3 with the ring provider; older versions are not compiled in, so a TLS 1.0
/// or 1.1 ClientHello gets a `protocol_version` alert.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path, hostname: &str) -> Result<(), TlsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let names = vec![
        hostname.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(io(key_path))?;
    // The certificate is written last: its presence means the pair is complete.
    write_private(cert_path, certified.cert.pem().as_bytes()).map_err(io(cert_path))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
    Ok(())
}

/// Writes via a temporary file so a crash never leaves half a key behind; the key is
/// readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The `legacy_tls` fault: if the client's first TLS record is a ClientHello whose version
/// is below TLS 1.2 (TLS 1.3 clients always say 1.2 there), answer with a ServerHello of that
/// version and return true. The ClientHello is only peeked at, so a modern client's handshake
/// proceeds untouched.
pub async fn answer_legacy_hello(tcp: &mut tokio::net::TcpStream) -> std::io::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let head = peek(tcp, 11).await?;
    let Some(version) = legacy_client_version(&head) else {
        return Ok(false);
    };
    tracing::warn!("FAULT legacy_tls: answering a TLS {version:#06x} ClientHello");
    tcp.write_all(&server_hello(version, 0x002f)).await?;
    tcp.shutdown().await?;
    Ok(true)
}

/// The `weak_ciphers` fault: if the client's first TLS record is a ClientHello that offers only
/// anonymous, export or NULL cipher suites, answer with a ServerHello choosing the first of them
/// and return true. Peeked at like [`answer_legacy_hello`].
pub async fn answer_weak_hello(tcp: &mut tokio::net::TcpStream) -> std::io::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let head = peek(tcp, 5).await?;
    let [22, _, _, high, low] = head[..] else {
        return Ok(false);
    };
    let record = peek(tcp, 5 + usize::from(u16::from_be_bytes([high, low]))).await?;
    let Some((version, suite)) = weak_choice(&record) else {
        return Ok(false);
    };
    tracing::warn!("FAULT weak_ciphers: choosing cipher suite {suite:#06x}");
    tcp.write_all(&server_hello(version, suite)).await?;
    tcp.shutdown().await?;
    Ok(true)
}

/// The first `want` bytes the client sent, without taking them; none if it closes first or
/// sends fewer within ten seconds.
async fn peek(tcp: &mut tokio::net::TcpStream, want: usize) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; want];
    let peeked = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let n = tcp.peek(&mut head).await?;
            if n == 0 || n == head.len() {
                return Ok::<usize, std::io::Error>(n);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or(Ok(0))?;
    head.truncate(peeked);
    Ok(head)
}

/// The client_version of a ClientHello record older than TLS 1.2.
fn legacy_client_version(head: &[u8]) -> Option<u16> {
    // record type 22 (handshake), 2 bytes version, 2 bytes length, handshake type 1, 3 bytes
    // length, then client_version.
    let [22, _, _, _, _, 1, _, _, _, major, minor] = *head else {
        return None;
    };
    let version = u16::from_be_bytes([major, minor]);
    (0x0300..0x0303).contains(&version).then_some(version)
}

/// Whether a cipher suite is anonymous (no server authentication), export grade or without
/// encryption (NULL), from the IANA TLS Cipher Suites registry.
fn is_weak_suite(suite: u16) -> bool {
    matches!(
        suite,
        // NULL encryption: RSA, ECDH(E), PSK and ECDH_anon.
        0x0000..=0x0002 | 0x002c..=0x002e | 0x003b | 0x00b0 | 0x00b1 | 0x00b4 | 0x00b5
            | 0x00b8 | 0x00b9 | 0xc001 | 0xc006 | 0xc00b | 0xc010 | 0xc015 | 0xc039..=0xc03b
            // Export grade: RSA_EXPORT, DH(E)_*_EXPORT, KRB5_EXPORT and the EXPORT1024 drafts.
            | 0x0003 | 0x0006 | 0x0008 | 0x000b | 0x000e | 0x0011 | 0x0014 | 0x0026..=0x002b
            | 0x0062..=0x0065
            // Anonymous: DH_anon and ECDH_anon (0x0017 and 0x0019 are export too).
            | 0x0017..=0x001b | 0x0034 | 0x003a | 0x0046 | 0x006c | 0x006d | 0x0089 | 0x009b
            | 0x00a6 | 0x00a7 | 0x00bf | 0x00c5 | 0xc016..=0xc019 | 0xc046 | 0xc047 | 0xc05a
            | 0xc05b | 0xc084 | 0xc085
    )
}

/// For a complete ClientHello record whose every cipher suite (signalling values aside) is weak:
/// the version to answer (at most TLS 1.2) and the suite to choose, the first offered.
fn weak_choice(record: &[u8]) -> Option<(u16, u16)> {
    let [22, _, _, _, _, 1, _, _, _, major, minor, rest @ ..] = record else {
        return None;
    };
    let version = u16::from_be_bytes([*major, *minor]).min(0x0303);
    let rest = rest.get(32..)?; // random
    let (&session_id, rest) = rest.split_first()?;
    let rest = rest.get(usize::from(session_id)..)?;
    let [high, low, rest @ ..] = rest else {
        return None;
    };
    let suites = rest.get(..usize::from(u16::from_be_bytes([*high, *low])))?;
    let offered: Vec<u16> = suites
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        // TLS_EMPTY_RENEGOTIATION_INFO_SCSV and TLS_FALLBACK_SCSV choose nothing.
        .filter(|suite| !matches!(suite, 0x00ff | 0x5600))
        .collect();
    let first = *offered.first()?;
    offered
        .iter()
        .all(|&suite| is_weak_suite(suite))
        .then_some((version, first))
}

/// A ServerHello record of `version` choosing `suite`, without extensions.
fn server_hello(version: u16, suite: u16) -> Vec<u8> {
    let [major, minor] = version.to_be_bytes();
    let mut body = vec![major, minor];
    body.extend((0..32).map(|_| fastrand::u8(..)));
    body.push(0); // no session id
    body.extend(suite.to_be_bytes());
    body.push(0); // null compression
    let mut handshake = vec![2, 0, 0, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![22, major, minor, 0, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pre_tls12_hellos_count_as_legacy() {
        let hello = |major, minor| [22, 3, 1, 0, 100, 1, 0, 0, 96, major, minor];
        assert_eq!(legacy_client_version(&hello(3, 1)), Some(0x0301));
        assert_eq!(legacy_client_version(&hello(3, 2)), Some(0x0302));
        assert_eq!(legacy_client_version(&hello(3, 3)), None);
        assert_eq!(legacy_client_version(b"EHLO x\r\n..."), None);
        let reply = server_hello(0x0302, 0x002f);
        assert_eq!(&reply[..3], &[22, 3, 2]);
        assert_eq!(reply[5], 2, "handshake type ServerHello");
        assert_eq!(&reply[9..11], &[3, 2]);
        assert_eq!(reply.len(), 5 + 4 + 38);
    }

    /// A ClientHello record offering `suites`, as a TLS 1.2 client sends it.
    fn hello(suites: &[u16]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([9; 32]);
        body.extend([4, 1, 2, 3, 4]); // a session id
        body.extend(u16::try_from(2 * suites.len()).unwrap().to_be_bytes());
        body.extend(suites.iter().flat_map(|suite| suite.to_be_bytes()));
        body.extend([1, 0, 0, 0]); // null compression, no extensions
        let mut record = vec![22, 3, 1, 0, body.len() as u8 + 4, 1, 0, 0, body.len() as u8];
        record.extend(body);
        record
    }

    #[test]
    fn only_hellos_without_a_strong_suite_count_as_weak() {
        // DH_anon_WITH_AES_128_CBC_SHA, RSA_EXPORT_WITH_RC4_40_MD5, RSA_WITH_NULL_SHA, SCSV
        let weak = hello(&[0x0034, 0x0003, 0x0002, 0x00ff]);
        assert_eq!(weak_choice(&weak), Some((0x0303, 0x0034)));
        assert_eq!(
            weak_choice(&hello(&[0x00ff, 0xc018])),
            Some((0x0303, 0xc018))
        );
        // ECDHE_RSA_WITH_AES_128_GCM_SHA256 among them: a normal handshake.
        assert_eq!(weak_choice(&hello(&[0x0034, 0xc02f])), None);
        assert_eq!(weak_choice(&hello(&[0x1301])), None);
        assert_eq!(weak_choice(&hello(&[0x00ff])), None);
        assert_eq!(weak_choice(&weak[..weak.len() - 8]), None);
        assert_eq!(weak_choice(b"EHLO x\r\n"), None);
        let reply = server_hello(0x0303, 0x0034);
        assert_eq!(reply[5], 2, "handshake type ServerHello");
        assert_eq!(&reply[9..11], &[3, 3]);
        assert_eq!(&reply[44..46], &[0x00, 0x34]);
    }

    #[tokio::test]
    async fn misnamed_identity_is_wrong_only_without_sni() {
        use tokio_rustls::{TlsAcceptor, TlsConnector};
        let dir = tempfile::tempdir().unwrap();
        let identity = load_or_generate_misnamed(None, dir.path(), "mail.example.test").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes()) {
            roots.add(certificate.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(identity.config.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        let connect = |sni: bool| {
            let mut config = client.clone();
            config.enable_sni = sni;
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls_pki_types::ServerName::try_from("mail.example.test").unwrap();
                TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
            }
        };
        connect(true).await.expect("with SNI the right certificate");
        let error = connect(false).await.unwrap_err().to_string();
        assert!(
            error.contains("not valid for name") && error.contains(WRONG_NAME),
            "{error}"
        );
        let files = TlsFiles {
            cert: dir.path().join("tls/cert.pem"),
            key: dir.path().join("tls/key.pem"),
        };
        assert!(load_or_generate_misnamed(Some(&files), dir.path(), "x").is_err());
    }

    #[test]
    fn generated_identity_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(None, dir.path(), "mail.example.test").unwrap();
        let second = load_or_generate(None, dir.path(), "mail.example.test").unwrap();
        assert_eq!(first.cert_pem, second.cert_pem);
        assert!(first.cert_path.ends_with("tls/cert.pem"));
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let error = load_or_generate(Some(&files), dir.path(), "x").unwrap_err();
        assert!(error.to_string().contains("nope.pem"), "{error}");
    }
}

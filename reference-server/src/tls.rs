//! The server's certificate and its rustls configuration (ring provider, TLS 1.2 and 1.3 only).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    let config = server_config(chain, key)?;
    Ok(Identity {
        config,
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
    let mut head = [0u8; 11];
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
    let Some(version) = legacy_client_version(&head[..peeked]) else {
        return Ok(false);
    };
    tracing::warn!("FAULT legacy_tls: answering a TLS {version:#06x} ClientHello");
    tcp.write_all(&legacy_server_hello(version)).await?;
    tcp.shutdown().await?;
    Ok(true)
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

fn legacy_server_hello(version: u16) -> Vec<u8> {
    let [major, minor] = version.to_be_bytes();
    let mut body = vec![major, minor];
    body.extend((0..32).map(|_| fastrand::u8(..)));
    body.extend([0, 0x00, 0x2f, 0]); // no session id, TLS_RSA_WITH_AES_128_CBC_SHA, null compression
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
        let reply = legacy_server_hello(0x0302);
        assert_eq!(&reply[..3], &[22, 3, 2]);
        assert_eq!(reply[5], 2, "handshake type ServerHello");
        assert_eq!(&reply[9..11], &[3, 2]);
        assert_eq!(reply.len(), 5 + 4 + 38);
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

//! Scripted fake servers and a throwaway certificate for the clients' tests.

use std::future::Future;
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Listens on an ephemeral port and runs `script` on the first connection.
pub(crate) async fn serve_once<F, Fut, T>(script: F) -> (String, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await
    });
    (addr, task)
}

/// Reads until the received bytes end with `suffix`, returning all of them.
pub(crate) async fn read_until(stream: &mut (impl AsyncRead + Unpin), suffix: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    while !received.ends_with(suffix) {
        let mut byte = [0];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        received.push(byte[0]);
    }
    received
}

/// A self-signed certificate for `localhost` and a TLS 1.2/1.3 acceptor serving it.
pub(crate) struct TestCert {
    pub(crate) cert_pem: String,
    pub(crate) acceptor: TlsAcceptor,
}

/// Makes a certificate with the `openssl` command; `None` (with a note) when it is missing.
pub(crate) fn test_cert() -> Option<TestCert> {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        // webpki refuses a CA certificate as the server's own, which is openssl's default.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|output| output.status.success()) {
        eprintln!(
            "note: skipping a TLS test: `openssl req` is not available to make a certificate"
        );
        return None;
    }
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, PrivateKeyDer::from_pem_file(&key).unwrap())
    .unwrap();
    Some(TestCert {
        cert_pem,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

//! Scripted fake servers and a throwaway certificate for the clients' tests.

use std::future::Future;
use std::sync::Arc;

use rustls_pki_types::PrivatePkcs8KeyDer;
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
    /// The certificate, which clients trust as their only root.
    pub(crate) cert_pem: String,
    pub(crate) acceptor: TlsAcceptor,
}

impl TestCert {
    /// Makes a fresh certificate in memory with rcgen: an ECDSA P-256 key, subject
    /// `CN=localhost`, the one name `DNS:localhost`, and `basicConstraints CA:FALSE` (webpki
    /// refuses a CA certificate as the server's own, even when it is also the trust root).
    /// rcgen's default validity (1975 to 4096) holds whatever the clock says.
    pub(crate) fn localhost() -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let cert = params.self_signed(&key).unwrap();
        let key_der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
        TestCert {
            cert_pem: cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }
}

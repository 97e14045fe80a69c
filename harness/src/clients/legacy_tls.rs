//! A probe for TLS 1.0 and 1.1, which rustls cannot speak: it sends a hand-built ClientHello and
//! classifies the first record the server answers with.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::ClientError;
use super::conn::{connect_tcp, is_closed};

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

/// CBC-SHA suites that TLS 1.0/1.1 servers commonly offer, then TLS_EMPTY_RENEGOTIATION_INFO_SCSV.
const CIPHER_SUITES: [u16; 10] = [
    0xc009, // ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    0xc00a, // ECDHE_ECDSA_WITH_AES_256_CBC_SHA
    0xc013, // ECDHE_RSA_WITH_AES_128_CBC_SHA
    0xc014, // ECDHE_RSA_WITH_AES_256_CBC_SHA
    0x0033, // DHE_RSA_WITH_AES_128_CBC_SHA
    0x0039, // DHE_RSA_WITH_AES_256_CBC_SHA
    0x002f, // RSA_WITH_AES_128_CBC_SHA
    0x0035, // RSA_WITH_AES_256_CBC_SHA
    0x000a, // RSA_WITH_3DES_EDE_CBC_SHA
    0x00ff, // EMPTY_RENEGOTIATION_INFO_SCSV
];

/// A protocol version rustls does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyVersion {
    /// TLS 1.0 (RFC 2246), wire version 0x0301.
    Tls10,
    /// TLS 1.1 (RFC 4346), wire version 0x0302.
    Tls11,
}

impl LegacyVersion {
    fn wire(self) -> u16 {
        match self {
            Self::Tls10 => 0x0301,
            Self::Tls11 => 0x0302,
        }
    }
}

impl fmt::Display for LegacyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls10 => "TLS 1.0",
            Self::Tls11 => "TLS 1.1",
        })
    }
}

/// How a server answered a legacy ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyOutcome {
    /// It sent an alert, `(level, description)` as on the wire (2, 70 is fatal
    /// protocol_version), or closed the connection without one (`None`).
    Refused {
        /// The alert, when one came.
        alert: Option<(u8, u8)>,
    },
    /// It answered with a ServerHello for `server_version`.
    Accepted {
        /// The version in the ServerHello, e.g. 0x0301.
        server_version: u16,
    },
}

impl fmt::Display for LegacyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                alert: Some((level, description)),
            } => write!(f, "refused with alert {description} (level {level})"),
            Self::Refused { alert: None } => f.write_str("refused by closing the connection"),
            Self::Accepted { server_version } => {
                write!(
                    f,
                    "accepted with a ServerHello for version {server_version:#06x}"
                )
            }
        }
    }
}

/// Offers only `version` over `stream` (no supported_versions extension) and reports whether the
/// server accepts it. `sni` is a DNS name to send as server_name. The stream is left mid-handshake.
pub async fn probe_legacy_tls(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    version: LegacyVersion,
    sni: Option<&str>,
    timeout: Duration,
) -> Result<LegacyOutcome, ClientError> {
    let deadline = Instant::now() + timeout;
    let while_doing = format!("waiting for the answer to a {version} ClientHello");
    let io_error = |source| ClientError::Io {
        while_doing: while_doing.clone(),
        source,
    };
    let timed_out = || ClientError::Timeout {
        while_doing: while_doing.clone(),
        after: timeout,
    };
    let mut random = [0; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut random)
        .map_err(|_| ClientError::TlsConfig("no random bytes for the ClientHello".into()))?;
    let hello = client_hello(version, sni, &random);
    let write = async {
        stream.write_all(&hello).await?;
        stream.flush().await
    };
    match timeout_at(deadline, write).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(error)) if is_closed(&error) => return Ok(LegacyOutcome::Refused { alert: None }),
        Ok(Err(error)) => return Err(io_error(error)),
        Ok(Ok(())) => {}
    }
    let mut received = Vec::new();
    loop {
        if let Some(outcome) = classify(&received)? {
            return Ok(outcome);
        }
        let mut chunk = [0; 4096];
        let count = match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(count)) => count,
            Ok(Err(error)) if is_closed(&error) => 0,
            Ok(Err(error)) => return Err(io_error(error)),
        };
        if count == 0 {
            if received.is_empty() {
                return Ok(LegacyOutcome::Refused { alert: None });
            }
            return Err(ClientError::MalformedTls {
                reason: "connection closed in the middle of a record".into(),
                bytes: received,
            });
        }
        received.extend_from_slice(&chunk[..count]);
    }
}

/// [`probe_legacy_tls`] on a fresh connection to an implicit-TLS port.
pub async fn probe_legacy_tls_at(
    addr: &str,
    version: LegacyVersion,
    sni: Option<&str>,
    timeout: Duration,
) -> Result<LegacyOutcome, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect_tcp(addr, timeout).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    probe_legacy_tls(&mut stream, version, sni, left).await
}

fn put_u16(out: &mut Vec<u8>, value: usize) {
    let value = u16::try_from(value).expect("ClientHello fields fit in 16 bits");
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    put_u16(out, body.len());
    out.extend_from_slice(body);
}

fn client_hello(version: LegacyVersion, sni: Option<&str>, random: &[u8; 32]) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let mut list = Vec::new();
        put_u16(&mut list, name.len() + 3);
        list.push(0); // host_name
        put_u16(&mut list, name.len());
        list.extend_from_slice(name.as_bytes());
        put_extension(&mut extensions, 0x0000, &list);
    }
    // supported_groups x25519, secp256r1, secp384r1 and uncompressed points, so ECDHE suites
    // are usable.
    put_extension(
        &mut extensions,
        0x000a,
        &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    );
    put_extension(&mut extensions, 0x000b, &[1, 0]);

    let mut body = version.wire().to_be_bytes().to_vec();
    body.extend_from_slice(random);
    body.push(0); // no session id
    put_u16(&mut body, 2 * CIPHER_SUITES.len());
    for suite in CIPHER_SUITES {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    put_u16(&mut body, extensions.len());
    body.extend_from_slice(&extensions);

    let mut record = vec![HANDSHAKE, 3, 1];
    put_u16(&mut record, body.len() + 4);
    record.push(CLIENT_HELLO);
    let length = u32::try_from(body.len()).expect("ClientHello is small");
    record.extend_from_slice(&length.to_be_bytes()[1..]);
    record.extend_from_slice(&body);
    record
}

/// Classifies the first record of the server's answer, or asks for more bytes.
fn classify(bytes: &[u8]) -> Result<Option<LegacyOutcome>, ClientError> {
    let malformed = |reason: String| {
        Err(ClientError::MalformedTls {
            reason,
            bytes: bytes.to_vec(),
        })
    };
    match bytes {
        [] => return Ok(None),
        [ALERT | HANDSHAKE, ..] => {}
        [other, ..] => {
            return malformed(format!(
                "content type {other}, not an alert or handshake record"
            ));
        }
    }
    if bytes.get(1).is_some_and(|&major| major != 3) {
        return malformed("record version is not 3.x".into());
    }
    let [content_type, _, _, high, low, payload @ ..] = bytes else {
        return Ok(None);
    };
    let length = usize::from(u16::from_be_bytes([*high, *low]));
    // An alert is level and description; a ServerHello starts with type, length (3), version.
    let needed = if *content_type == ALERT { 2 } else { 6 };
    if length < needed {
        return malformed(format!("a {length}-byte record is too short"));
    }
    match payload {
        [level, description, ..] if *content_type == ALERT => Ok(Some(LegacyOutcome::Refused {
            alert: Some((*level, *description)),
        })),
        [SERVER_HELLO, _, _, _, high, low, ..] => Ok(Some(LegacyOutcome::Accepted {
            server_version: u16::from_be_bytes([*high, *low]),
        })),
        [kind, ..] if *content_type == HANDSHAKE && *kind != SERVER_HELLO => {
            malformed(format!("handshake message type {kind}, not a ServerHello"))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_an_alert() {
        assert_eq!(
            classify(&[ALERT, 3, 1, 0, 2, 2, 70]).unwrap(),
            Some(LegacyOutcome::Refused {
                alert: Some((2, 70))
            })
        );
        assert_eq!(classify(&[ALERT, 3, 1, 0, 2, 2]).unwrap(), None);
    }

    #[test]
    fn classifies_a_server_hello() {
        let hello = [HANDSHAKE, 3, 2, 0, 42, SERVER_HELLO, 0, 0, 38, 3, 2, 0xaa];
        assert_eq!(
            classify(&hello).unwrap(),
            Some(LegacyOutcome::Accepted {
                server_version: 0x0302
            })
        );
        assert_eq!(classify(&hello[..8]).unwrap(), None);
    }

    #[test]
    fn rejects_what_is_not_tls() {
        let error = classify(b"500 5.5.1 what?\r\n").unwrap_err();
        assert!(
            error.to_string().contains("500 5.5.1 what?\\r\\n"),
            "{error}"
        );
        let certificate = [HANDSHAKE, 3, 3, 0, 6, 11, 0, 0, 2, 3, 3];
        assert!(
            classify(&certificate)
                .unwrap_err()
                .to_string()
                .contains("type 11")
        );
        assert!(classify(&[ALERT, 3, 1, 0, 1, 2]).is_err());
        assert!(classify(&[ALERT, 2, 0]).is_err());
    }

    #[test]
    fn client_hello_offers_only_the_legacy_version() {
        let hello = client_hello(LegacyVersion::Tls11, Some("mail.test"), &[7; 32]);
        assert_eq!(hello[..3], [HANDSHAKE, 3, 1]);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
        assert_eq!(hello[5], CLIENT_HELLO);
        assert_eq!(hello[9..11], [3, 2]);
        assert_eq!(hello[11..43], [7; 32]);
        assert!(hello.windows(9).any(|window| window == b"mail.test"));
        // no supported_versions (43) extension
        assert!(!hello.windows(2).any(|window| window == [0, 43]));
        assert!(hello.windows(2).any(|window| window == [0, 0xff]));
    }

    #[tokio::test]
    async fn rustls_refuses_tls_1_1_on_an_implicit_tls_port() {
        let Some(cert) = crate::clients::test_support::test_cert() else {
            return;
        };
        let (addr, _server) = crate::clients::test_support::serve_once(move |stream| async move {
            let _ = cert.acceptor.accept(stream).await;
        })
        .await;
        let outcome = probe_legacy_tls_at(
            &addr,
            LegacyVersion::Tls11,
            Some("localhost"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        // rustls answers a fatal alert (handshake_failure, 40, as of 0.23).
        assert!(
            matches!(
                outcome,
                LegacyOutcome::Refused {
                    alert: Some((2, _))
                }
            ),
            "{outcome:?}"
        );
    }
}

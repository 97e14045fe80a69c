//! Probes for what rustls will not offer: TLS 1.0 and 1.1, and anonymous, export and NULL cipher
//! suites. Each sends a hand-built ClientHello and classifies the first record the server answers
//! with.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::ClientError;
use super::conn::{connect_tcp, is_closed, slot};

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;

/// CBC-SHA suites that TLS 1.0/1.1 servers commonly offer, then TLS_EMPTY_RENEGOTIATION_INFO_SCSV.
const LEGACY_SUITES: [u16; 10] = [
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

/// Cipher suites that authenticate no server (anonymous), are weakened on purpose (export) or
/// encrypt nothing (NULL), with their IANA names. BCP 195 (RFC 9325 section 4.1) forbids
/// negotiating NULL and export suites; an anonymous one lets a man in the middle read the session
/// whatever certificate the server has.
pub const WEAK_SUITES: [(u16, &str); 24] = [
    (0xc018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
    (0xc019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    (0xc017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x00a6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"),
    (0x00a7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"),
    (0x006c, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"),
    (0x006d, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0x003a, "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (0x001b, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5"),
    (0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA"),
    (0xc010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0xc015, "TLS_ECDH_anon_WITH_NULL_SHA"),
    (0x003b, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
];

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV: secure renegotiation without the extension.
const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// Whether a suite of [`WEAK_SUITES`] is one BCP 195 forbids (RFC 9325 section 4.1: NULL
/// encryption, RC4, export grade: MUST NOT), by its IANA name; the others are anonymous suites
/// with real encryption, which no RFC forbids outright.
pub fn is_forbidden_suite(name: &str) -> bool {
    name.contains("_NULL_") || name.contains("EXPORT") || name.contains("RC4")
}

/// The IANA name of a suite in [`WEAK_SUITES`].
pub fn weak_suite_name(suite: u16) -> Option<&'static str> {
    WEAK_SUITES
        .iter()
        .find(|(code, _)| *code == suite)
        .map(|(_, name)| *name)
}

/// What a hand-built ClientHello offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Only a version rustls does not implement, with the suites such servers commonly take.
    Legacy(LegacyVersion),
    /// TLS 1.2 with only the anonymous, export and NULL suites of [`WEAK_SUITES`]. TLS 1.2 and
    /// not older: what a server accepts at TLS 1.0 and 1.1 is already wrong by version.
    WeakSuites,
    /// TLS 1.2 with only the suites of [`WEAK_SUITES`] that BCP 195 forbids (NULL, export,
    /// RC4: [`is_forbidden_suite`]).
    ForbiddenSuites,
    /// TLS 1.2 with only the anonymous suites of [`WEAK_SUITES`] that are not forbidden too.
    AnonymousSuites,
}

impl Offer {
    fn wire_version(self) -> u16 {
        match self {
            Self::Legacy(version) => version.wire(),
            Self::WeakSuites | Self::ForbiddenSuites | Self::AnonymousSuites => 0x0303,
        }
    }

    fn suites(self) -> Vec<u16> {
        match self {
            Self::Legacy(_) => LEGACY_SUITES.to_vec(),
            Self::WeakSuites | Self::ForbiddenSuites | Self::AnonymousSuites => WEAK_SUITES
                .iter()
                .filter(|(_, name)| match self {
                    Self::ForbiddenSuites => is_forbidden_suite(name),
                    Self::AnonymousSuites => !is_forbidden_suite(name),
                    _ => true,
                })
                .map(|(code, _)| *code)
                .chain([RENEGOTIATION_SCSV])
                .collect(),
        }
    }
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Legacy(version) => write!(f, "{version}"),
            Self::WeakSuites => f.write_str("TLS 1.2 anonymous/export/NULL-only"),
            Self::ForbiddenSuites => f.write_str("TLS 1.2 NULL/export/RC4-only"),
            Self::AnonymousSuites => f.write_str("TLS 1.2 anonymous-only"),
        }
    }
}

/// How a server answered a hand-built ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOutcome {
    /// It sent an alert, `(level, description)` as on the wire, or closed the connection
    /// without one (`None`).
    Refused {
        /// The alert, when one came.
        alert: Option<(u8, u8)>,
    },
    /// It answered with a ServerHello.
    Accepted {
        /// The version in the ServerHello, e.g. 0x0303.
        server_version: u16,
        /// The cipher suite it chose.
        cipher_suite: u16,
    },
}

impl fmt::Display for HelloOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Refused { alert } => LegacyOutcome::Refused { alert }.fmt(f),
            Self::Accepted {
                server_version,
                cipher_suite,
            } => {
                write!(
                    f,
                    "accepted with a ServerHello for version {server_version:#06x} choosing {}",
                    match weak_suite_name(cipher_suite) {
                        Some(name) => format!("{name} ({cipher_suite:#06x})"),
                        None => format!("cipher suite {cipher_suite:#06x}"),
                    }
                )
            }
        }
    }
}

impl From<HelloOutcome> for LegacyOutcome {
    fn from(outcome: HelloOutcome) -> Self {
        match outcome {
            HelloOutcome::Refused { alert } => Self::Refused { alert },
            HelloOutcome::Accepted { server_version, .. } => Self::Accepted { server_version },
        }
    }
}

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
    probe_hello(stream, Offer::Legacy(version), sni, timeout)
        .await
        .map(LegacyOutcome::from)
}

/// Sends a ClientHello with `offer` over `stream` and reports how the server answers. `sni` is a
/// DNS name to send as server_name. The stream is left mid-handshake.
pub async fn probe_hello(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    offer: Offer,
    sni: Option<&str>,
    timeout: Duration,
) -> Result<HelloOutcome, ClientError> {
    let deadline = Instant::now() + timeout;
    let while_doing = format!("waiting for the answer to a {offer} ClientHello");
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
    let hello = client_hello(offer, sni, &random);
    let write = async {
        stream.write_all(&hello).await?;
        stream.flush().await
    };
    match timeout_at(deadline, write).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(error)) if is_closed(&error) => return Ok(HelloOutcome::Refused { alert: None }),
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
                return Ok(HelloOutcome::Refused { alert: None });
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
    probe_hello_at(addr, Offer::Legacy(version), sni, timeout)
        .await
        .map(LegacyOutcome::from)
}

/// [`probe_hello`] on a fresh connection to an implicit-TLS port.
pub async fn probe_hello_at(
    addr: &str,
    offer: Offer,
    sni: Option<&str>,
    timeout: Duration,
) -> Result<HelloOutcome, ClientError> {
    let _slot = slot(addr).await?;
    let deadline = Instant::now() + timeout;
    let mut stream = connect_tcp(addr, timeout).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    probe_hello(&mut stream, offer, sni, left).await
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

fn client_hello(offer: Offer, sni: Option<&str>, random: &[u8; 32]) -> Vec<u8> {
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
    if !matches!(offer, Offer::Legacy(_)) {
        // signature_algorithms, which TLS 1.2 has (RFC 5246 7.4.1.4.1): RSA PKCS#1 and PSS,
        // ECDSA, SHA-256 to SHA-1, so that no server refuses for want of one.
        let schemes: [u16; 8] = [
            0x0804, 0x0401, 0x0403, 0x0805, 0x0501, 0x0503, 0x0201, 0x0203,
        ];
        let mut list = Vec::new();
        put_u16(&mut list, 2 * schemes.len());
        for scheme in schemes {
            list.extend_from_slice(&scheme.to_be_bytes());
        }
        put_extension(&mut extensions, 0x000d, &list);
    }

    let suites = offer.suites();
    let mut body = offer.wire_version().to_be_bytes().to_vec();
    body.extend_from_slice(random);
    body.push(0); // no session id
    put_u16(&mut body, 2 * suites.len());
    for suite in suites {
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
fn classify(bytes: &[u8]) -> Result<Option<HelloOutcome>, ClientError> {
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
    if *content_type == ALERT {
        if length < 2 {
            return malformed(format!("a {length}-byte alert record is too short"));
        }
        return Ok(match payload {
            [level, description, ..] => Some(HelloOutcome::Refused {
                alert: Some((*level, *description)),
            }),
            _ => None,
        });
    }
    match payload {
        [SERVER_HELLO, ..] | [] => {}
        [kind, ..] => {
            return malformed(format!("handshake message type {kind}, not a ServerHello"));
        }
    }
    // A ServerHello: type, length (3), version (2), random (32), session id (1 + up to 32),
    // then the cipher suite.
    let too_short = || malformed(format!("a {length}-byte ServerHello record is too short"));
    if length < 39 {
        return too_short();
    }
    let Some(&session_id) = payload.get(38) else {
        return Ok(None);
    };
    let suite_at = 39 + usize::from(session_id);
    if length < suite_at + 2 {
        return too_short();
    }
    match (payload.get(4..6), payload.get(suite_at..suite_at + 2)) {
        (Some(&[major, minor]), Some(&[high, low])) => Ok(Some(HelloOutcome::Accepted {
            server_version: u16::from_be_bytes([major, minor]),
            cipher_suite: u16::from_be_bytes([high, low]),
        })),
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
            Some(HelloOutcome::Refused {
                alert: Some((2, 70))
            })
        );
        assert_eq!(classify(&[ALERT, 3, 1, 0, 2, 2]).unwrap(), None);
    }

    /// A ServerHello record for `version` with a session id of `session_id` bytes, choosing
    /// `suite`.
    fn server_hello(version: [u8; 2], session_id: u8, suite: u16) -> Vec<u8> {
        let mut body = version.to_vec();
        body.extend([0xaa; 32]);
        body.push(session_id);
        body.extend(std::iter::repeat_n(0x55, session_id.into()));
        body.extend(suite.to_be_bytes());
        body.push(0);
        let mut record = vec![HANDSHAKE, version[0], version[1], 0, body.len() as u8 + 4];
        record.extend([SERVER_HELLO, 0, 0, body.len() as u8]);
        record.extend(body);
        record
    }

    #[test]
    fn classifies_a_server_hello() {
        let hello = server_hello([3, 2], 0, 0x002f);
        assert_eq!(
            classify(&hello).unwrap(),
            Some(HelloOutcome::Accepted {
                server_version: 0x0302,
                cipher_suite: 0x002f
            })
        );
        assert_eq!(
            LegacyOutcome::from(classify(&hello).unwrap().unwrap()),
            LegacyOutcome::Accepted {
                server_version: 0x0302
            }
        );
        for cut in [8, 44, hello.len() - 2] {
            assert_eq!(classify(&hello[..cut]).unwrap(), None, "{cut} bytes");
        }
        let with_session = server_hello([3, 3], 32, 0x0034);
        let outcome = classify(&with_session).unwrap().unwrap();
        assert_eq!(
            outcome,
            HelloOutcome::Accepted {
                server_version: 0x0303,
                cipher_suite: 0x0034
            }
        );
        assert!(
            outcome
                .to_string()
                .contains("TLS_DH_anon_WITH_AES_128_CBC_SHA (0x0034)"),
            "{outcome}"
        );
        assert_eq!(classify(&with_session[..60]).unwrap(), None);
        // A record too short to hold the session id and suite it announces.
        let mut short = with_session.clone();
        short[4] = 60;
        assert!(classify(&short).is_err());
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
        let hello = client_hello(
            Offer::Legacy(LegacyVersion::Tls11),
            Some("mail.test"),
            &[7; 32],
        );
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

    /// The cipher suites a ClientHello record offers.
    fn offered_suites(hello: &[u8]) -> Vec<u16> {
        let session_id = usize::from(hello[43]);
        let at = 44 + session_id;
        let length = usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
        hello[at + 2..at + 2 + length]
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect()
    }

    #[test]
    fn weak_client_hello_offers_only_weak_suites_at_tls_1_2() {
        let hello = client_hello(Offer::WeakSuites, None, &[7; 32]);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
        assert_eq!(hello[9..11], [3, 3]);
        let suites = offered_suites(&hello);
        assert_eq!(suites.last(), Some(&RENEGOTIATION_SCSV));
        assert_eq!(suites.len(), WEAK_SUITES.len() + 1);
        assert!(suites[..WEAK_SUITES.len()].iter().all(|&suite| {
            let name = weak_suite_name(suite).unwrap();
            name.contains("_anon_") || name.contains("EXPORT") || name.contains("_NULL_")
        }));
        // signature_algorithms (13) is there.
        assert!(hello.windows(2).any(|window| window == [0, 13]));
        // The two halves split the weak suites between them: BCP 195's MUST NOT, and the
        // anonymous suites with real encryption.
        let forbidden = offered_suites(&client_hello(Offer::ForbiddenSuites, None, &[7; 32]));
        let anonymous = offered_suites(&client_hello(Offer::AnonymousSuites, None, &[7; 32]));
        assert_eq!(forbidden.len() + anonymous.len(), WEAK_SUITES.len() + 2);
        for (suites, forbidden) in [(&forbidden, true), (&anonymous, false)] {
            assert_eq!(suites.last(), Some(&RENEGOTIATION_SCSV));
            for &suite in &suites[..suites.len() - 1] {
                let name = weak_suite_name(suite).unwrap();
                assert_eq!(is_forbidden_suite(name), forbidden, "{name}");
                assert!(forbidden || name.contains("_anon_"), "{name}");
            }
        }
        assert!(anonymous.contains(&0xc018) && forbidden.contains(&0x0018));
        assert_eq!(
            offered_suites(&client_hello(
                Offer::Legacy(LegacyVersion::Tls10),
                None,
                &[7; 32]
            )),
            LEGACY_SUITES
        );
    }

    #[tokio::test]
    async fn rustls_refuses_weak_suites() {
        let cert = crate::clients::test_support::TestCert::localhost();
        let (addr, _server) = crate::clients::test_support::serve_once(move |stream| async move {
            let _ = cert.acceptor.accept(stream).await;
        })
        .await;
        let outcome = probe_hello_at(
            &addr,
            Offer::WeakSuites,
            Some("localhost"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(
            matches!(
                outcome,
                HelloOutcome::Refused {
                    alert: Some((2, _))
                }
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn rustls_refuses_tls_1_1_on_an_implicit_tls_port() {
        let cert = crate::clients::test_support::TestCert::localhost();
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

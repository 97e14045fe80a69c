//! Credentials: SASL PLAIN/LOGIN payload decoding and password checks.

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{Account, Config};

/// A password a client sent, on its way from a session to the check. `Debug` shows only that
/// there is one, so sessions, events and logs can be printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps what the client sent.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, for the check and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Checks that a configured hash is an argon2 PHC string, so a bad one fails at start-up.
pub fn check_hash_syntax(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm `{}` is not argon2",
            parsed.algorithm.as_str()
        ));
    }
    Ok(())
}

/// Whether `password` is right for `account`. Argon2 is slow on purpose: call this off the
/// async executor.
pub fn verify_password(account: &Account, password: &str) -> bool {
    match (&account.password, &account.password_hash) {
        (Some(expected), _) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
        (None, Some(hash)) => PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        }),
        (None, None) => false,
    }
}

/// Looks up the login and checks the password; the account address on success.
pub fn authenticate(config: &Config, login: &str, password: &str) -> Option<String> {
    let Some(account) = config.account(login) else {
        // Spend what checking a hashed password costs, so that the time a failed login takes
        // does not tell an unknown name from a wrong password.
        if config.accounts.iter().any(|a| a.password_hash.is_some()) {
            let _ = argon2::Argon2::default().verify_password(password.as_bytes(), dummy_hash());
        }
        return None;
    };
    verify_password(account, password).then(|| account.address.clone())
}

/// An argon2 hash of nothing anyone can log in with, made once, with the default parameters.
fn dummy_hash() -> &'static PasswordHash<'static> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static PARSED: std::sync::OnceLock<PasswordHash<'static>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        let hash = HASH.get_or_init(|| {
            let salt = SaltString::from_b64("dW5rbm93bi1hY2NvdW50").expect("a valid salt");
            argon2::Argon2::default()
                .hash_password(b"no account has this password", &salt)
                .expect("argon2 hashes with its default parameters")
                .to_string()
        });
        PasswordHash::new(hash).expect("argon2 output parses")
    })
}

/// Checks an APOP digest (RFC 1939 section 7): MD5 of the greeting's timestamp followed by the
/// password, in lowercase hex. Only accounts with a plain-text password can use it.
pub fn authenticate_apop(
    config: &Config,
    login: &str,
    timestamp: &str,
    digest: &str,
) -> Option<String> {
    use md5::Digest as _;
    let account = config.account(login)?;
    let password = account.password.as_deref()?;
    let mut hasher = md5::Md5::new();
    hasher.update(timestamp.as_bytes());
    hasher.update(password.as_bytes());
    let expected: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    constant_time_eq(expected.as_bytes(), digest.to_ascii_lowercase().as_bytes())
        .then(|| account.address.clone())
}

/// Compares without an early exit on the first differing byte, so timing does not reveal
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a SASL payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Decoded, but not `authzid NUL authcid NUL passwd` with UTF-8 fields.
    #[error("malformed PLAIN message (expected authzid NUL authcid NUL password)")]
    MalformedPlain,
    /// Decoded to something that is not UTF-8.
    #[error("credentials are not UTF-8")]
    NotUtf8,
    /// An authorization identity other than the login was asked for.
    #[error("authorization identity differs from authentication identity")]
    ProxyNotAllowed,
}

/// Decodes a base64 SASL response; `=` is the empty response (RFC 4954 section 4).
pub fn decode_response(text: &str) -> Result<Vec<u8>, SaslError> {
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text.trim()).map_err(|_| SaslError::Base64)
}

/// Decodes a base64 string that must be UTF-8 (the LOGIN mechanism's user name and password).
pub fn decode_text(text: &str) -> Result<String, SaslError> {
    String::from_utf8(decode_response(text)?).map_err(|_| SaslError::NotUtf8)
}

/// Parses an RFC 4616 PLAIN message into (login, password).
pub fn parse_plain(payload: &[u8]) -> Result<(String, String), SaslError> {
    let mut fields = payload.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::MalformedPlain);
    };
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::NotUtf8);
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() {
        return Err(SaslError::MalformedPlain);
    }
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(&authcid) {
        return Err(SaslError::ProxyNotAllowed);
    }
    Ok((authcid, password))
}

/// Base64 for server challenges.
pub fn encode(text: &str) -> String {
    BASE64.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::new("hunter2");
        assert_eq!(password.expose(), "hunter2");
        assert!(!format!("{password:?}").contains("hunter2"));
        let nested = Some((String::from("bob"), password));
        assert!(!format!("{nested:#?}").contains("hunter2"));
    }
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn plain_message_fields() {
        assert_eq!(
            parse_plain(b"\0alice@example.test\0pw").unwrap(),
            ("alice@example.test".into(), "pw".into())
        );
        assert_eq!(
            parse_plain(b"alice@example.test\0alice@example.test\0pw").unwrap(),
            ("alice@example.test".into(), "pw".into())
        );
        assert_eq!(
            parse_plain(b"bob@example.test\0alice@example.test\0pw"),
            Err(SaslError::ProxyNotAllowed)
        );
        assert_eq!(parse_plain(b"alice\0pw"), Err(SaslError::MalformedPlain));
        assert_eq!(parse_plain(b"\0\0pw"), Err(SaslError::MalformedPlain));
        assert_eq!(parse_plain(b"\0a\0b\0c"), Err(SaslError::MalformedPlain));
    }

    #[test]
    fn apop_digest_of_rfc_1939_example() {
        // RFC 1939 section 7: timestamp <1896.697170952@dbc.mtview.ca.us>, secret "tanstaaf".
        let mut config = Config::defaults();
        config.accounts[0].password = Some("tanstaaf".into());
        let timestamp = "<1896.697170952@dbc.mtview.ca.us>";
        let digest = "c4c9334bac560ecc979e58001b3e22fb";
        assert_eq!(
            authenticate_apop(&config, "ALICE@example.test", timestamp, digest).as_deref(),
            Some("alice@example.test")
        );
        assert_eq!(
            authenticate_apop(
                &config,
                "alice@example.test",
                timestamp,
                &digest.to_uppercase()
            )
            .as_deref(),
            Some("alice@example.test")
        );
        assert!(authenticate_apop(&config, "alice@example.test", "<1.2@x>", digest).is_none());
        assert!(authenticate_apop(&config, "bob@example.test", timestamp, digest).is_none());
        config.accounts[0].password = None;
        config.accounts[0].password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$x$y".into());
        assert!(
            authenticate_apop(&config, "alice@example.test", timestamp, digest).is_none(),
            "hashed passwords cannot do APOP"
        );
    }

    #[test]
    fn base64_responses() {
        assert_eq!(decode_response("=").unwrap(), b"");
        assert_eq!(decode_response("AGFAYgBj").unwrap(), b"\0a@b\0c");
        assert_eq!(decode_response("***"), Err(SaslError::Base64));
    }

    #[test]
    fn argon2_and_plain_passwords() {
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        check_hash_syntax(&hash).unwrap();
        assert!(check_hash_syntax("$2b$10$abcdefghijklmnopqrstuv").is_err());
        let hashed = Account {
            address: "a@example.test".into(),
            password: None,
            password_hash: Some(hash),
        };
        assert!(verify_password(&hashed, "s3cret"));
        assert!(!verify_password(&hashed, "s3cre"));
        let plain = Account {
            address: "a@example.test".into(),
            password: Some("pw".into()),
            password_hash: None,
        };
        assert!(verify_password(&plain, "pw"));
        assert!(!verify_password(&plain, "pw "));
    }

    #[test]
    fn an_unknown_name_is_checked_against_a_real_hash() {
        let dummy = dummy_hash();
        assert!(dummy.algorithm.as_str().starts_with("argon2"));
        let argon2 = argon2::Argon2::default();
        assert!(
            argon2
                .verify_password(b"no account has this password", dummy)
                .is_ok()
        );
        assert!(argon2.verify_password(b"s3cret", dummy).is_err());
    }
}

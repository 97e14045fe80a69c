//! POP3 (RFC 1939) with CAPA and response codes (RFC 2449, RFC 3206), STLS (RFC 2595) and
//! SASL PLAIN (RFC 5034, RFC 4616), as a sans-IO session the socket driver in `driver.rs`
//! runs.

pub mod command;
pub(crate) mod driver;
pub mod session;

//! SMTP (RFC 5321) with the submission policies of RFC 6409 and RFC 8314.

pub mod command;
pub mod data;
pub(crate) mod driver;
pub mod session;
mod texts;
pub(crate) mod trace;

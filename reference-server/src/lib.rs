//! The reference mail server: SMTP on the relay, submission and submissions ports with the
//! policies each port means, a durable store, and faults that can be switched on to imitate
//! misconfigured or vulnerable servers.

pub mod access;
pub mod auth;
mod budget;
pub mod clock;
pub mod config;
pub mod faults;
pub mod imap;
pub mod net;
pub mod pop3;
pub mod relay;
pub mod server;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod variants;

pub use config::{Config, Role, TlsMode};
pub use faults::Faults;
pub use server::{BoundListener, RunningServer, ServerError, start, start_with_listeners};
pub use variants::{Variant, Variants};

//! Conformance and load-testing harness for mail servers: protocol clients that keep a
//! transcript of every byte, target profiles, the Gherkin step library, and the runner behind
//! `harness conform`.

pub mod clients;
pub mod conform;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod load;
pub mod mailbox;
pub mod matrix;
pub mod message;
pub mod ports;
pub mod relay_env;
pub mod report;
pub mod sink;
pub mod spec;
pub mod steps;
pub mod target;

//! The harness's integration tests, in one test binary (one link and one copy of the async
//! code they share, instead of one per file): crash safety, load runs, the port audit, reports
//! and the relay sink. The BDD self-test is a binary of its own (`tests/bdd.rs`).

mod crash;
mod load;
mod ports;
mod report;
mod sink;

//! The reference server's integration tests, in one test binary (one link and one copy of the
//! async code they share, instead of one per file): the binary, the three protocols over real
//! sockets, the relay, and the store's properties.

mod binary;
mod imap;
mod pop3;
mod properties;
mod relay;
mod smtp;

//! An authoritative DNS server for mail tests.

//! What the benches in `benches/` share.

use std::time::Duration;

use criterion::Criterion;

/// Criterion with a one-second warm-up and three seconds of measurement: enough for figures
/// that repeat on this machine, short enough to run every bench in a few minutes.
pub fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

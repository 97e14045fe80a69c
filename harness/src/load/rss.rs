//! The server's resident memory over a run, sampled at a fixed interval from
//! `/proc/PID/status`, so that "memory stays flat" under a long load can be judged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::stats::RssSummary;

/// Resident memory of process `pid` in KiB (`VmRSS`), where the OS tells it.
pub(super) fn read_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples one process's resident memory until finished.
pub(super) struct Sampler {
    pid: u32,
    start: Instant,
    samples: Arc<Mutex<Vec<[u64; 2]>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Takes a sample now and then every `every`.
    pub(super) fn start(pid: u32, every: Duration) -> Sampler {
        let start = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
                loop {
                    ticks.tick().await;
                    sample(pid, start, &samples);
                }
            }
        });
        Sampler {
            pid,
            start,
            samples,
            task,
        }
    }

    /// Takes a last sample and sums up; `source` says whose memory it was.
    pub(super) fn finish(self, source: String) -> RssSummary {
        self.task.abort();
        sample(self.pid, self.start, &self.samples);
        let samples = std::mem::take(&mut *self.samples.lock().expect("rss lock"));
        RssSummary::new(source, samples)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sample(pid: u32, start: Instant, samples: &Mutex<Vec<[u64; 2]>>) {
    if let Some(kib) = read_kib(pid) {
        let at = start.elapsed().as_secs();
        samples.lock().expect("rss lock").push([at, kib]);
    }
}

#[cfg(test)]
mod tests {
    use super::read_kib;

    #[test]
    fn this_process_has_resident_memory() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(read_kib(std::process::id()).is_some_and(|kib| kib > 0));
        }
        assert_eq!(read_kib(u32::MAX), None);
    }
}

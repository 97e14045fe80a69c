//! What a load run measured: one HdrHistogram per phase, errors by phase and reply, and the
//! summary written as JSON and merged across runs (`harness report merge`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::phase::{Phase, rank};

/// Highest latency a histogram holds, in microseconds (one hour); longer ones are clamped.
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept: values within 0.1% of each other share a bucket.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        )
    }
}

impl Latencies {
    /// Records one latency; anything over an hour counts as an hour.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.0.saturating_record(micros);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn percentile_ms(&self, percentile: f64) -> f64 {
        micros_to_ms(self.0.value_at_percentile(percentile))
    }

    fn summary(&self) -> PhaseSummary {
        PhaseSummary {
            count: self.count(),
            mean: micros_to_ms(self.0.mean().round() as u64),
            p50: self.percentile_ms(50.0),
            p90: self.percentile_ms(90.0),
            p99: self.percentile_ms(99.0),
            p999: self.percentile_ms(99.9),
            max: micros_to_ms(self.0.max()),
        }
    }

    /// The non-empty buckets as `[value in µs, count]`: exact enough to rebuild the histogram.
    fn buckets(&self) -> Vec<[u64; 2]> {
        self.0
            .iter_recorded()
            .map(|bucket| [bucket.value_iterated_to(), bucket.count_at_value()])
            .collect()
    }

    fn from_buckets(buckets: &[[u64; 2]]) -> Self {
        let mut latencies = Self::default();
        for &[value, count] in buckets {
            let _ = latencies.0.record_n(value.clamp(1, MAX_MICROS), count);
        }
        latencies
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    // Three decimals: a microsecond is the histogram's unit.
    (micros as f64) / 1000.0
}

/// Everything recorded during the measured part of a run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latency per phase name.
    pub phases: BTreeMap<Phase, Latencies>,
    /// Failed operations: phase name, then what came back (a reply code, `-ERR`, `NO`, or a
    /// kind such as `timeout`), then how many times.
    pub errors: BTreeMap<Phase, BTreeMap<String, u64>>,
    /// Messages acknowledged, sessions finished or notifications seen: what throughput counts.
    pub completed: u64,
    /// Sessions the client ended half-way on purpose (`--client-faults`), by how: not errors.
    pub aborts: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Records a phase's latency.
    pub fn record(&mut self, phase: Phase, latency: Duration) {
        self.phases.entry(phase).or_default().record(latency);
    }

    /// Counts one failure.
    pub fn error(&mut self, phase: Phase, what: &str) {
        *self
            .errors
            .entry(phase)
            .or_default()
            .entry(what.to_owned())
            .or_default() += 1;
    }

    /// Counts one session the client ended on purpose.
    pub fn abort(&mut self, kind: &'static str) {
        *self.aborts.entry(kind).or_default() += 1;
    }

    /// Adds another run's figures.
    pub fn merge(&mut self, other: &Stats) {
        for (kind, count) in &other.aborts {
            *self.aborts.entry(kind).or_default() += count;
        }
        for (phase, latencies) in &other.phases {
            self.phases.entry(*phase).or_default().merge(latencies);
        }
        for (phase, kinds) in &other.errors {
            let mine = self.errors.entry(*phase).or_default();
            for (kind, count) in kinds {
                *mine.entry(kind.clone()).or_default() += count;
            }
        }
        self.completed += other.completed;
    }

    /// Failures in all phases.
    pub fn error_count(&self) -> u64 {
        self.errors.values().flat_map(BTreeMap::values).sum()
    }
}

/// Percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// Latencies recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// What imap-mix's checking clients found (RFC-tagged), and how to rerun it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    /// The random seed the clients' choices came from (`--random-seed` repeats them).
    pub random_seed: u64,
    /// Clients sharing the mailboxes.
    pub clients: usize,
    /// The shared mailboxes.
    pub mailboxes: Vec<String>,
    /// Checkpoints at which every client paused and the views were compared.
    pub checkpoints: u64,
    /// Findings against a MUST: the run fails on any.
    pub violations: u64,
    /// Findings against a SHOULD, or an RFC-allowed choice that clients cope with badly.
    pub warnings: u64,
    /// Findings by class.
    pub classes: BTreeMap<String, CheckClass>,
    /// The first few findings of each class, with what led to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<CheckExample>,
    /// The first few commands that failed outright (counted in `errors`), each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// How often one class of finding was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckClass {
    /// `must` or `should`.
    pub level: String,
    /// The RFC and section.
    pub rfc: String,
    /// How many times.
    pub count: u64,
}

/// One finding as a client saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckExample {
    /// `must` or `should`.
    pub level: String,
    /// The class.
    pub class: String,
    /// The RFC and section.
    pub rfc: String,
    /// Which client (0-based).
    pub client: usize,
    /// The command whose responses showed it.
    pub command: String,
    /// What was seen.
    pub detail: String,
    /// The client's last lines on the wire, oldest first.
    pub transcript: Vec<String>,
}

/// Examples kept per class.
pub const EXAMPLES_PER_CLASS: usize = 3;
/// Failed commands kept, with their reasons.
pub const FAILURES_KEPT: usize = 5;

impl CheckSummary {
    /// Whether a MUST was broken.
    pub fn failed(&self) -> bool {
        self.violations > 0
    }

    /// Adds another run's findings (a merge).
    pub fn absorb(&mut self, other: &CheckSummary) {
        self.checkpoints += other.checkpoints;
        self.violations += other.violations;
        self.warnings += other.warnings;
        self.clients += other.clients;
        for (class, counted) in &other.classes {
            let mine = self
                .classes
                .entry(class.clone())
                .or_insert_with(|| CheckClass {
                    count: 0,
                    ..counted.clone()
                });
            mine.count += counted.count;
        }
        for failure in &other.failures {
            if self.failures.len() < FAILURES_KEPT {
                self.failures.push(failure.clone());
            }
        }
        for example in &other.examples {
            let kept = self
                .examples
                .iter()
                .filter(|e| e.class == example.class)
                .count();
            if kept < EXAMPLES_PER_CLASS {
                self.examples.push(example.clone());
            }
        }
    }
}

/// What `--verify` found in the mailboxes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Messages the server acknowledged during the whole run (warm-up included).
    pub acknowledged: u64,
    /// Acknowledged messages not found in any mailbox.
    pub missing: u64,
    /// Acknowledged messages found more than once.
    pub duplicated: u64,
    /// Message-IDs of up to ten missing messages, for looking them up in the server's logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_examples: Vec<String>,
    /// Mailboxes read.
    #[serde(default)]
    pub mailboxes: u64,
    /// Ways the store disagreed with itself: UIDs not unique and ascending, a FETCH 1:* that
    /// does not return EXISTS messages, UIDNEXT not above the highest UID, POP3 and IMAP
    /// counting differently.
    #[serde(default)]
    pub inconsistent: u64,
    /// Up to ten of them, each naming the mailbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inconsistent_examples: Vec<String>,
    /// Messages the client cut off on purpose (mid-DATA, mid-literal).
    #[serde(default)]
    pub cut_off: u64,
    /// Of those, how many the server filed all the same: it must not.
    #[serde(default)]
    pub cut_off_filed: u64,
}

impl VerifySummary {
    /// Whether anything acknowledged was lost or doubled, or the store disagreed with itself.
    pub fn failed(&self) -> bool {
        self.missing > 0 || self.duplicated > 0 || self.inconsistent > 0 || self.cut_off_filed > 0
    }
}

/// The server's resident memory over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssSummary {
    /// Whose memory: `pid N`, or this process with the embedded server.
    pub source: String,
    /// `[seconds since the load started, KiB]`, the first at the start and the last at the end.
    pub samples: Vec<[u64; 2]>,
    /// The first sample, KiB.
    pub first_kib: u64,
    /// The last sample, KiB.
    pub last_kib: u64,
    /// The largest sample, KiB.
    pub max_kib: u64,
    /// Mean of the samples in the first half of the run, KiB.
    pub first_half_mean_kib: u64,
    /// Mean of the samples in the second half, KiB: flat memory keeps it near the first.
    pub second_half_mean_kib: u64,
}

impl RssSummary {
    /// Sums up `[seconds, KiB]` samples in time order.
    pub fn new(source: String, samples: Vec<[u64; 2]>) -> RssSummary {
        let kib = |sample: Option<&[u64; 2]>| sample.map_or(0, |s| s[1]);
        let end = samples.last().map_or(0, |s| s[0]);
        let mean = |half: &[[u64; 2]]| {
            if half.is_empty() {
                0
            } else {
                half.iter().map(|s| s[1]).sum::<u64>() / half.len() as u64
            }
        };
        // Samples at or after half-time are the second half; with one sample both halves
        // are it.
        let split = samples
            .iter()
            .position(|s| s[0] * 2 >= end && s[0] > 0)
            .unwrap_or(samples.len());
        let (first, second) = samples.split_at(split);
        let second = if second.is_empty() { first } else { second };
        let first = if first.is_empty() { second } else { first };
        RssSummary {
            source,
            first_kib: kib(samples.first()),
            last_kib: kib(samples.last()),
            max_kib: samples.iter().map(|s| s[1]).max().unwrap_or(0),
            first_half_mean_kib: mean(first),
            second_half_mean_kib: mean(second),
            samples,
        }
    }

    /// How much the second half's mean is above the first's, in percent.
    pub fn growth_percent(&self) -> f64 {
        if self.first_half_mean_kib == 0 {
            return 0.0;
        }
        (self.second_half_mean_kib as f64 / self.first_half_mean_kib as f64 - 1.0) * 100.0
    }
}

/// The JSON written by `--json` and read by `harness report merge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Workload name (a built-in or the workload file's `name`); `a+b` after merging different
    /// ones.
    pub workload: String,
    /// Target name.
    pub target: String,
    /// `open loop, 200/s` or `closed loop, 20 connections`; joined with `; ` after a merge.
    pub mode: String,
    /// Length of the measured part, in seconds (warm-up excluded); the longest after a merge.
    pub duration_s: f64,
    /// Warm-up before measuring, in seconds.
    pub warmup_s: f64,
    /// Messages acknowledged (SMTP), sessions finished (POP3, IMAP) or new-mail notifications
    /// seen (IMAP IDLE) in the measured part.
    pub completed: u64,
    /// Failed operations in the measured part.
    pub errors: u64,
    /// `completed` per second of the measured part; summed when merging runs that went on at
    /// the same time.
    pub throughput_per_s: f64,
    /// Percentiles per phase, in milliseconds.
    pub latency_ms: BTreeMap<String, PhaseSummary>,
    /// Failures per phase and reply.
    pub errors_by_phase: BTreeMap<String, BTreeMap<String, u64>>,
    /// Sessions the client ended half-way on purpose (`--client-faults`), by how; not errors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aborts: BTreeMap<String, u64>,
    /// `--verify` results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// imap-mix's checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSummary>,
    /// The server's resident memory over the run (`--server-pid`, or the embedded server);
    /// not kept by a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss: Option<RssSummary>,
    /// Peak resident memory of the harness process in KiB (the embedded server included, when
    /// it ran in-process); the largest after a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
    /// Runs merged into this one (1 for a single run).
    #[serde(default = "one")]
    pub runs: u32,
    /// The histograms behind `latency_ms`, as `[value in µs, count]` per non-empty bucket, so
    /// that runs merge exactly.
    pub histograms: BTreeMap<String, Vec<[u64; 2]>>,
}

fn one() -> u32 {
    1
}

impl Summary {
    /// Whether the run had errors, lost or doubled mail (`--verify`) or broke a MUST (imap-mix):
    /// what makes `harness load` exit with 1.
    pub fn failed(&self) -> bool {
        self.errors > 0
            || self.verify.as_ref().is_some_and(VerifySummary::failed)
            || self.check.as_ref().is_some_and(CheckSummary::failed)
    }

    /// Summarises a finished run.
    pub fn new(
        workload: &str,
        target: &str,
        mode: &str,
        measured: Duration,
        warmup: Duration,
        stats: &Stats,
    ) -> Summary {
        let seconds = measured.as_secs_f64();
        Summary {
            workload: workload.to_owned(),
            target: target.to_owned(),
            mode: mode.to_owned(),
            duration_s: round3(seconds),
            warmup_s: round3(warmup.as_secs_f64()),
            completed: stats.completed,
            errors: stats.error_count(),
            throughput_per_s: if seconds > 0.0 {
                round3(stats.completed as f64 / seconds)
            } else {
                0.0
            },
            latency_ms: stats
                .phases
                .iter()
                .map(|(phase, latencies)| (phase.name().to_owned(), latencies.summary()))
                .collect(),
            errors_by_phase: stats
                .errors
                .iter()
                .map(|(phase, kinds)| (phase.name().to_owned(), kinds.clone()))
                .collect(),
            aborts: stats
                .aborts
                .iter()
                .map(|(kind, count)| ((*kind).to_owned(), *count))
                .collect(),
            verify: None,
            check: None,
            server_rss: None,
            peak_rss_kib: None,
            runs: 1,
            histograms: stats
                .phases
                .iter()
                .map(|(phase, latencies)| (phase.name().to_owned(), latencies.buckets()))
                .collect(),
        }
    }

    /// Combines runs that went on at the same time (shards of one load, from several machines):
    /// counts and throughputs add up, histograms merge exactly, the duration is the longest.
    pub fn merge(runs: &[Summary]) -> Result<Summary, String> {
        let Some(first) = runs.first() else {
            return Err("nothing to merge".into());
        };
        let mut phases: BTreeMap<String, Latencies> = BTreeMap::new();
        let mut merged = Summary {
            workload: join_distinct(runs.iter().map(|r| r.workload.as_str()), "+"),
            target: join_distinct(runs.iter().map(|r| r.target.as_str()), "+"),
            mode: join_distinct(runs.iter().map(|r| r.mode.as_str()), "; "),
            duration_s: 0.0,
            warmup_s: first.warmup_s,
            completed: 0,
            errors: 0,
            throughput_per_s: 0.0,
            latency_ms: BTreeMap::new(),
            errors_by_phase: BTreeMap::new(),
            aborts: BTreeMap::new(),
            verify: None,
            check: None,
            server_rss: None,
            peak_rss_kib: None,
            runs: 0,
            histograms: BTreeMap::new(),
        };
        for run in runs {
            merged.duration_s = merged.duration_s.max(run.duration_s);
            merged.warmup_s = merged.warmup_s.max(run.warmup_s);
            merged.completed += run.completed;
            merged.errors += run.errors;
            merged.throughput_per_s = round3(merged.throughput_per_s + run.throughput_per_s);
            merged.runs += run.runs.max(1);
            merged.peak_rss_kib = merged.peak_rss_kib.max(run.peak_rss_kib);
            for (kind, count) in &run.aborts {
                *merged.aborts.entry(kind.clone()).or_default() += count;
            }
            for (phase, kinds) in &run.errors_by_phase {
                let mine = merged.errors_by_phase.entry(phase.clone()).or_default();
                for (kind, count) in kinds {
                    *mine.entry(kind.clone()).or_default() += count;
                }
            }
            if let Some(check) = &run.check {
                match &mut merged.check {
                    Some(mine) => mine.absorb(check),
                    None => merged.check = Some(check.clone()),
                }
            }
            if let Some(verify) = &run.verify {
                let mine = merged.verify.get_or_insert_with(VerifySummary::default);
                mine.acknowledged += verify.acknowledged;
                mine.missing += verify.missing;
                mine.duplicated += verify.duplicated;
                mine.mailboxes += verify.mailboxes;
                mine.inconsistent += verify.inconsistent;
                mine.cut_off += verify.cut_off;
                mine.cut_off_filed += verify.cut_off_filed;
                for example in &verify.missing_examples {
                    if mine.missing_examples.len() < 10 {
                        mine.missing_examples.push(example.clone());
                    }
                }
                for example in &verify.inconsistent_examples {
                    if mine.inconsistent_examples.len() < 10 {
                        mine.inconsistent_examples.push(example.clone());
                    }
                }
            }
            for (phase, buckets) in &run.histograms {
                phases
                    .entry(phase.clone())
                    .or_default()
                    .merge(&Latencies::from_buckets(buckets));
            }
        }
        for (phase, latencies) in &phases {
            merged.latency_ms.insert(phase.clone(), latencies.summary());
            merged.histograms.insert(phase.clone(), latencies.buckets());
        }
        Ok(merged)
    }

    /// The table printed at the end of a run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let runs = if self.runs > 1 {
            format!(" ({} runs merged)", self.runs)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "workload {} against {}{runs}: {}; {:.1} s measured after {:.1} s warm-up",
            self.workload, self.target, self.mode, self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            out,
            "completed {}  throughput {:.1}/s  errors {}",
            self.completed, self.throughput_per_s, self.errors
        );
        let _ = writeln!(
            out,
            "\n{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "phase (ms)", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for (phase, s) in ordered(&self.latency_ms) {
            let _ = writeln!(
                out,
                "{phase:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                s.count,
                ms(s.mean),
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.p999),
                ms(s.max)
            );
        }
        if !self.errors_by_phase.is_empty() {
            let _ = writeln!(out, "\nerrors:");
            for (phase, kinds) in &self.errors_by_phase {
                for (kind, count) in kinds {
                    let _ = writeln!(out, "  {phase:<10} {kind:<40} {count:>9}");
                }
            }
        }
        if !self.aborts.is_empty() {
            let kinds: Vec<String> = self
                .aborts
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            let _ = writeln!(
                out,
                "\nclient aborts (on purpose, not errors): {} ({})",
                self.aborts.values().sum::<u64>(),
                kinds.join(", ")
            );
        }
        if let Some(verify) = &self.verify {
            let _ = writeln!(
                out,
                "\nverify: acknowledged {}, missing {}, duplicated {}",
                verify.acknowledged, verify.missing, verify.duplicated
            );
            for example in &verify.missing_examples {
                let _ = writeln!(out, "  missing {example}");
            }
            let _ = writeln!(
                out,
                "store: {} mailboxes checked, {} inconsistencies",
                verify.mailboxes, verify.inconsistent
            );
            for example in &verify.inconsistent_examples {
                let _ = writeln!(out, "  inconsistent {example}");
            }
            if verify.cut_off > 0 {
                let _ = writeln!(
                    out,
                    "cut off on purpose: {}, filed by the server all the same: {}",
                    verify.cut_off, verify.cut_off_filed
                );
            }
        }
        if let Some(check) = &self.check {
            render_check(&mut out, check);
        }
        if let Some(rss) = &self.server_rss {
            let mib = |kib: u64| kib as f64 / 1024.0;
            let _ = writeln!(
                out,
                "\nserver RSS ({}): first {:.1} MiB, max {:.1} MiB, last {:.1} MiB; mean {:.1} MiB \
                 in the first half, {:.1} MiB in the second ({:+.1}%)",
                rss.source,
                mib(rss.first_kib),
                mib(rss.max_kib),
                mib(rss.last_kib),
                mib(rss.first_half_mean_kib),
                mib(rss.second_half_mean_kib),
                rss.growth_percent()
            );
            let samples: Vec<String> = rss
                .samples
                .iter()
                .map(|[at, kib]| format!("{at}s {:.1}", mib(*kib)))
                .collect();
            let _ = writeln!(out, "  samples (MiB): {}", samples.join(", "));
        }
        if let Some(rss) = self.peak_rss_kib {
            let _ = writeln!(out, "peak RSS {:.1} MiB", rss as f64 / 1024.0);
        }
        out
    }
}

/// Runs of one workload with the same settings against several targets, one after another
/// (`harness load --compare`): what `--json` writes then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The first target's run, then each compared target's, in the order given.
    pub runs: Vec<Summary>,
}

impl Comparison {
    /// The runs side by side: throughput and its ratio to the first run's, errors and findings,
    /// then p50 and p99 of each phase.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Some(first) = self.runs.first() else {
            return out;
        };
        // Columns as wide as the longest name, within reason: a longer name is cut short.
        const NAME_MAX: usize = 28;
        let name = |target: &str| -> String {
            if target.chars().count() <= NAME_MAX {
                target.to_owned()
            } else {
                let cut: String = target.chars().take(NAME_MAX - 1).collect();
                format!("{cut}…")
            }
        };
        let width = self
            .runs
            .iter()
            .map(|r| name(&r.target).chars().count())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            out,
            "\ncomparison: workload {}, {}, {:.1} s measured each, one target after the other",
            first.workload, first.mode, first.duration_s
        );
        let row = |out: &mut String, label: &str, cells: Vec<String>| {
            let _ = write!(out, "{label:<22}");
            for cell in cells {
                let _ = write!(out, " {cell:>width$}");
            }
            let _ = writeln!(out);
        };
        row(
            &mut out,
            "",
            self.runs.iter().map(|r| name(&r.target)).collect(),
        );
        row(
            &mut out,
            "throughput (/s)",
            self.runs
                .iter()
                .map(|r| format!("{:.1}", r.throughput_per_s))
                .collect(),
        );
        row(
            &mut out,
            "  vs the first",
            self.runs
                .iter()
                .map(|r| {
                    if first.throughput_per_s > 0.0 {
                        format!("{:.2}x", r.throughput_per_s / first.throughput_per_s)
                    } else {
                        "-".to_owned()
                    }
                })
                .collect(),
        );
        row(
            &mut out,
            "errors",
            self.runs.iter().map(|r| r.errors.to_string()).collect(),
        );
        if self.runs.iter().any(|r| r.check.is_some()) {
            let counts = |pick: fn(&CheckSummary) -> u64| -> Vec<String> {
                self.runs
                    .iter()
                    .map(|r| {
                        r.check
                            .as_ref()
                            .map_or("-".to_owned(), |c| pick(c).to_string())
                    })
                    .collect()
            };
            row(&mut out, "violations (MUST)", counts(|c| c.violations));
            row(&mut out, "warnings (SHOULD)", counts(|c| c.warnings));
        }
        let mut phases: Vec<&str> = Vec::new();
        for run in &self.runs {
            for (phase, _) in ordered(&run.latency_ms) {
                if !phases.contains(&phase) {
                    phases.push(phase);
                }
            }
        }
        phases.sort_by_key(|phase| rank(phase));
        let _ = writeln!(out, "p50 / p99 (ms)");
        for phase in phases {
            row(
                &mut out,
                &format!("  {phase}"),
                self.runs
                    .iter()
                    .map(|r| {
                        r.latency_ms
                            .get(phase)
                            .map_or("-".to_owned(), |s| format!("{} / {}", ms(s.p50), ms(s.p99)))
                    })
                    .collect(),
            );
        }
        out
    }

    /// Whether any run failed ([`Summary::failed`]).
    pub fn failed(&self) -> bool {
        self.runs.iter().any(Summary::failed)
    }
}

/// imap-mix's findings: the counts by class, then the examples with their transcripts.
fn render_check(out: &mut String, check: &CheckSummary) {
    let _ = writeln!(
        out,
        "\ncheck: {} clients on {}; {} checkpoints; {} violations (MUST), {} warnings (SHOULD)",
        check.clients,
        check.mailboxes.join(", "),
        check.checkpoints,
        check.violations,
        check.warnings
    );
    for (class, counted) in &check.classes {
        let _ = writeln!(
            out,
            "  {:<6} {class:<32} {:<22} {:>7}",
            counted.level, counted.rfc, counted.count
        );
    }
    for example in &check.examples {
        let _ = writeln!(
            out,
            "\n{} {} ({}), client {}, at `{}`:\n  {}",
            example.level.to_uppercase(),
            example.class,
            example.rfc,
            example.client,
            example.command,
            example.detail
        );
        for line in &example.transcript {
            let _ = writeln!(out, "    {line}");
        }
    }
    for failure in &check.failures {
        let _ = writeln!(out, "failed: {failure}");
    }
    let _ = writeln!(
        out,
        "random seed {} (--random-seed {} makes the same choices; the interleaving with the \
         server is the run's own)",
        check.random_seed, check.random_seed
    );
}

/// Phases in table order.
fn ordered<T>(map: &BTreeMap<String, T>) -> Vec<(&str, &T)> {
    let mut rows: Vec<(&str, &T)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    rows.sort_by_key(|(phase, _)| rank(phase));
    rows
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn join_distinct<'a>(values: impl Iterator<Item = &'a str>, separator: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.join(separator)
}

/// Peak resident set size of this process in KiB (`VmHWM`), where the OS tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(latencies_ms: &[u64], completed: u64) -> Stats {
        let mut stats = Stats::default();
        for &ms in latencies_ms {
            stats.record(Phase::Session, Duration::from_millis(ms));
        }
        stats.completed = completed;
        stats
    }

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let summary = Summary::new(
            "relay",
            "t",
            "m",
            Duration::from_secs(10),
            Duration::ZERO,
            &stats(&latencies, 1000),
        );
        let session = &summary.latency_ms["session"];
        assert_eq!(session.count, 1000);
        // Within the histogram's 0.1% precision.
        assert!((session.p50 - 500.0).abs() <= 1.0, "{session:?}");
        assert!((session.p99 - 990.0).abs() <= 1.0, "{session:?}");
        assert!((session.max - 1000.0).abs() <= 1.0, "{session:?}");
        assert_eq!(summary.throughput_per_s, 100.0);
    }

    #[test]
    fn merging_adds_counts_and_throughput_and_keeps_percentiles_exact() {
        let fast: Vec<u64> = vec![1; 900];
        let slow: Vec<u64> = vec![100; 100];
        let a = Summary::new(
            "relay",
            "t",
            "m",
            Duration::from_secs(10),
            Duration::ZERO,
            &stats(&fast, 900),
        );
        let mut b = Summary::new(
            "relay",
            "t",
            "m",
            Duration::from_secs(12),
            Duration::ZERO,
            &stats(&slow, 100),
        );
        b.verify = Some(VerifySummary {
            acknowledged: 100,
            missing: 2,
            duplicated: 1,
            missing_examples: vec!["<x@y>".into()],
            ..VerifySummary::default()
        });
        // Through JSON, as `harness report merge` reads them.
        let a: Summary = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let merged = Summary::merge(&[a, b]).unwrap();
        assert_eq!(merged.completed, 1000);
        assert_eq!(merged.runs, 2);
        assert_eq!(merged.duration_s, 12.0);
        assert!((merged.throughput_per_s - (90.0 + 100.0 / 12.0)).abs() < 0.01);
        let session = &merged.latency_ms["session"];
        assert_eq!(session.count, 1000);
        assert!((session.p50 - 1.0).abs() < 0.01, "{session:?}");
        assert!((session.p99 - 100.0).abs() < 0.1, "{session:?}");
        let verify = merged.verify.unwrap();
        assert_eq!(
            (verify.acknowledged, verify.missing, verify.duplicated),
            (100, 2, 1)
        );
    }

    #[test]
    fn errors_are_counted_by_phase_and_reply() {
        let mut stats = Stats::default();
        stats.error(Phase::Rcpt, "451");
        stats.error(Phase::Rcpt, "451");
        stats.error(Phase::Connect, "timeout");
        assert_eq!(stats.error_count(), 3);
        let summary = Summary::new(
            "relay",
            "t",
            "m",
            Duration::from_secs(1),
            Duration::ZERO,
            &stats,
        );
        assert_eq!(summary.errors, 3);
        assert_eq!(summary.errors_by_phase["rcpt"]["451"], 2);
        let table = summary.render();
        assert!(table.contains("rcpt"), "{table}");
        assert!(table.contains("timeout"), "{table}");
    }

    #[test]
    fn table_lists_phases_in_protocol_order() {
        let mut stats = Stats::default();
        for phase in [Phase::Session, Phase::Rcpt, Phase::Connect, Phase::Mail] {
            stats.record(phase, Duration::from_millis(1));
        }
        let table = Summary::new(
            "relay",
            "t",
            "m",
            Duration::from_secs(1),
            Duration::ZERO,
            &stats,
        )
        .render();
        let at = |phase: &str| table.find(&format!("\n{phase} ")).unwrap();
        assert!(at("connect") < at("mail"));
        assert!(at("mail") < at("rcpt"));
        assert!(at("rcpt") < at("session"));
    }

    #[test]
    fn a_comparison_shows_the_runs_side_by_side_with_the_ratio() {
        let fast: Vec<u64> = vec![2; 400];
        let slow: Vec<u64> = vec![8; 100];
        let a = Summary::new(
            "imap-mix",
            "reference-server",
            "m",
            Duration::from_secs(10),
            Duration::ZERO,
            &stats(&fast, 400),
        );
        let mut b = Summary::new(
            "imap-mix",
            "a peer whose name is much longer than a column",
            "m",
            Duration::from_secs(10),
            Duration::ZERO,
            &stats(&slow, 100),
        );
        let comparison = Comparison {
            runs: vec![a.clone(), b.clone()],
        };
        assert!(!comparison.failed());
        let table = comparison.render();
        let line = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in {table}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("throughput")[2..], ["40.0", "10.0"]);
        assert_eq!(line("  vs the first")[3..], ["1.00x", "0.25x"]);
        assert_eq!(
            line("  session")[1..],
            ["2.00", "/", "2.00", "8.00", "/", "8.00"]
        );
        assert!(table.contains("a peer whose name is much l…"), "{table}");
        // No imap-mix findings in these runs: no rows for them.
        assert!(!table.contains("violations"), "{table}");

        b.errors = 1;
        assert!(Comparison { runs: vec![a, b] }.failed());
    }

    #[test]
    fn rss_halves_are_split_at_half_time() {
        let rss = RssSummary::new(
            "t".into(),
            vec![[0, 100], [10, 110], [20, 120], [30, 130], [40, 140]],
        );
        assert_eq!((rss.first_kib, rss.last_kib, rss.max_kib), (100, 140, 140));
        assert_eq!(rss.first_half_mean_kib, 105);
        assert_eq!(rss.second_half_mean_kib, 130);
        assert!((rss.growth_percent() - 23.8).abs() < 0.1);
        let one = RssSummary::new("t".into(), vec![[0, 50]]);
        assert_eq!(
            (one.first_half_mean_kib, one.second_half_mean_kib),
            (50, 50)
        );
    }
}

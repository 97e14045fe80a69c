//! Results of a conformance run: one record per scenario, a readable summary per feature, and
//! JSON and JUnit files for CI.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How one scenario ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step passed.
    Passed,
    /// A step failed.
    Failed {
        /// The step that failed, as written in the feature.
        step: String,
        /// What was expected and what came.
        message: String,
        /// The bytes exchanged with the server, rendered for reading.
        transcript: String,
    },
    /// Not run: the target lacks a capability the scenario needs, or its profile skips it.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not run: the target does not offer the service at all.
    NotApplicable {
        /// Which service is missing.
        reason: String,
    },
    /// A step failed, and the target's profile lists the failure as a known finding: a real
    /// non-conformance of that server, explained, which does not fail the run.
    KnownFinding {
        /// The profile's explanation.
        finding: String,
        /// The step that failed.
        step: String,
        /// What was expected and what came.
        message: String,
        /// The bytes exchanged with the server.
        transcript: String,
    },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
            Outcome::NotApplicable { .. } => "not applicable",
            Outcome::KnownFinding { .. } => "known finding",
        }
    }

    /// The step, message and transcript of a failure, known or not.
    pub fn failure(&self) -> Option<(&str, &str, &str)> {
        match self {
            Outcome::Failed {
                step,
                message,
                transcript,
            }
            | Outcome::KnownFinding {
                step,
                message,
                transcript,
                ..
            } => Some((step, message, transcript)),
            _ => None,
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Feature name.
    pub feature: String,
    /// Feature file, relative to the features directory when possible.
    pub file: String,
    /// Scenario name.
    pub scenario: String,
    /// Line of the scenario in its file.
    pub line: usize,
    /// Scenario and feature tags, without `@`.
    pub tags: Vec<String>,
    /// The result.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What the scenario observed about choices the RFCs leave to the server (for example at
    /// which command a policy refusal came), for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Quality figures the scenario measured (a notification latency, say): reported, never
    /// a reason to fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// The runner's identity for the scenario (feature path, line); not reported.
    #[serde(skip)]
    pub key: (std::path::PathBuf, usize),
}

/// A quality figure a scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured, e.g. "new mail reported during IDLE".
    pub name: String,
    /// The figure.
    pub value: f64,
    /// Its unit, e.g. "ms".
    pub unit: String,
}

impl Eq for Measurement {}

/// Counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
    /// Scenarios skipped for a missing capability or by the profile.
    pub skipped: usize,
    /// Scenarios for services the target does not offer.
    pub not_applicable: usize,
    /// Failures the target's profile lists as known findings.
    #[serde(default)]
    pub known_findings: usize,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::NotApplicable { .. } => self.not_applicable += 1,
            Outcome::KnownFinding { .. } => self.known_findings += 1,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The target's name.
    pub target: String,
    /// Every scenario selected by the tag filter, in file order.
    pub scenarios: Vec<Record>,
}

impl Report {
    /// Sorts records into file and line order (scenarios run concurrently).
    pub fn new(target: String, mut scenarios: Vec<Record>) -> Report {
        scenarios.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Report { target, scenarios }
    }

    /// Totals over all scenarios.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for record in &self.scenarios {
            counts.add(&record.outcome);
        }
        counts
    }

    /// True when something ran and nothing failed: the exit status of `harness conform`.
    pub fn success(&self) -> bool {
        let counts = self.counts();
        counts.failed == 0 && counts.passed > 0
    }

    /// The failed records.
    pub fn failures(&self) -> impl Iterator<Item = &Record> {
        self.scenarios
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }

    /// The human-readable summary: failures with transcripts, then a line per feature.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for record in self.failures() {
            if let Outcome::Failed {
                step,
                message,
                transcript,
            } = &record.outcome
            {
                let _ = writeln!(
                    out,
                    "FAILED {} :: {} ({}:{})\n  step: {step}\n  {}\n  transcript:\n{}",
                    record.feature,
                    record.scenario,
                    record.file,
                    record.line,
                    message.replace('\n', "\n  "),
                    indent(transcript, "    "),
                );
            }
        }
        let mut features: BTreeMap<&str, (Counts, Vec<&Record>)> = BTreeMap::new();
        for record in &self.scenarios {
            let entry = features.entry(&record.file).or_default();
            entry.0.add(&record.outcome);
            entry.1.push(record);
        }
        let _ = writeln!(out, "Target: {}", self.target);
        for (file, (counts, records)) in &features {
            let name = records.first().map_or("", |r| r.feature.as_str());
            let _ = writeln!(out, "{file}: {name}\n  {}", format_counts(counts));
            for record in records {
                match &record.outcome {
                    Outcome::Skipped { reason } | Outcome::NotApplicable { reason } => {
                        let _ = writeln!(
                            out,
                            "    {} {}: {reason}",
                            record.outcome.label(),
                            record.scenario
                        );
                    }
                    Outcome::KnownFinding {
                        finding, message, ..
                    } => {
                        let _ = writeln!(
                            out,
                            "    known finding {} ({}:{}): {}\n      {}",
                            record.scenario,
                            record.file,
                            record.line,
                            finding.replace('\n', "\n      "),
                            message.replace('\n', "\n      ")
                        );
                    }
                    Outcome::Passed | Outcome::Failed { .. } => {}
                }
                for note in &record.notes {
                    let _ = writeln!(out, "    note {}: {note}", record.scenario);
                }
                for m in &record.measurements {
                    let _ = writeln!(
                        out,
                        "    measured {}: {} {} {}",
                        record.scenario, m.name, m.value, m.unit
                    );
                }
            }
        }
        let _ = writeln!(out, "Total: {}", format_counts(&self.counts()));
        out
    }

    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Json<'a> {
            target: &'a str,
            counts: Counts,
            scenarios: &'a [Record],
        }
        let json = Json {
            target: &self.target,
            counts: self.counts(),
            scenarios: &self.scenarios,
        };
        let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// Writes a JUnit XML report: one test suite per feature file, skipped and not applicable
    /// scenarios as `<skipped message=...>` so CI shows them with their reason.
    pub fn write_junit(&self, path: &Path) -> std::io::Result<()> {
        let mut features: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for record in &self.scenarios {
            features.entry(&record.file).or_default().push(record);
        }
        let counts = self.counts();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            escape(&self.target),
            self.scenarios.len(),
            counts.failed,
            counts.skipped + counts.not_applicable + counts.known_findings
        );
        for (file, records) in features {
            let mut suite = Counts::default();
            records.iter().for_each(|r| suite.add(&r.outcome));
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
                escape(file),
                records.len(),
                suite.failed,
                suite.skipped + suite.not_applicable + suite.known_findings
            );
            for record in records {
                let _ = write!(
                    xml,
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    escape(&record.feature),
                    escape(&record.scenario)
                );
                match &record.outcome {
                    Outcome::Passed => xml.push_str("/>\n"),
                    Outcome::Failed {
                        step,
                        message,
                        transcript,
                    } => {
                        let _ = writeln!(
                            xml,
                            ">\n      <failure message=\"{}\">{}</failure>\n      <system-out>{}</system-out>\n    </testcase>",
                            escape(message),
                            escape(&format!("step: {step}\n{message}")),
                            escape(transcript)
                        );
                    }
                    Outcome::Skipped { reason } | Outcome::NotApplicable { reason } => {
                        let _ = writeln!(
                            xml,
                            ">\n      <skipped message=\"{}: {}\"/>\n    </testcase>",
                            record.outcome.label(),
                            escape(reason)
                        );
                    }
                    Outcome::KnownFinding {
                        finding,
                        step,
                        message,
                        transcript,
                    } => {
                        let _ = writeln!(
                            xml,
                            ">\n      <skipped message=\"known finding: {}\"/>\n      <system-out>{}</system-out>\n    </testcase>",
                            escape(finding),
                            escape(&format!("step: {step}\n{message}\n\n{transcript}"))
                        );
                    }
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        std::fs::write(path, xml)
    }
}

fn format_counts(counts: &Counts) -> String {
    let mut text = format!(
        "{} passed, {} failed, {} skipped, {} not applicable",
        counts.passed, counts.failed, counts.skipped, counts.not_applicable
    );
    if counts.known_findings > 0 {
        let plural = if counts.known_findings == 1 { "" } else { "s" };
        let _ = write!(text, ", {} known finding{plural}", counts.known_findings);
    }
    text
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// XML text and attribute escaping; control characters other than tab and newline are not
/// allowed in XML 1.0 at all, so they are shown as `\xNN`.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &str, line: usize, outcome: Outcome) -> Record {
        Record {
            feature: "SMTP basics".into(),
            file: "smtp/basics.feature".into(),
            scenario: scenario.into(),
            line,
            tags: vec!["smtp".into()],
            outcome,
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Default::default(),
        }
    }

    fn sample() -> Report {
        Report::new(
            "embedded".into(),
            vec![
                record(
                    "relay <denied>",
                    9,
                    Outcome::Failed {
                        step: "Then the reply code is 554".into(),
                        message: "expected 554, got 250".into(),
                        transcript: "C: RCPT TO:<x@y>\\r\\n\nS: 250 ok\\r\\n".into(),
                    },
                ),
                record("greeting", 3, Outcome::Passed),
                record(
                    "utf8",
                    12,
                    Outcome::Skipped {
                        reason: "no SMTPUTF8".into(),
                    },
                ),
            ],
        )
    }

    #[test]
    fn counts_order_and_exit_status() {
        let report = sample();
        assert_eq!(report.scenarios[0].line, 3);
        assert_eq!(
            report.counts(),
            Counts {
                passed: 1,
                failed: 1,
                skipped: 1,
                not_applicable: 0,
                known_findings: 0,
            }
        );
        assert!(!report.success());
        let only_skips = Report::new(
            "x".into(),
            vec![record("a", 1, Outcome::Skipped { reason: "r".into() })],
        );
        assert!(
            !only_skips.success(),
            "a run where nothing ran must not pass"
        );
    }

    #[test]
    fn summary_shows_failure_with_transcript_and_skip_reason() {
        let text = sample().render();
        assert!(
            text.contains("FAILED SMTP basics :: relay <denied>"),
            "{text}"
        );
        assert!(text.contains("C: RCPT TO:<x@y>"), "{text}");
        assert!(text.contains("skipped utf8: no SMTPUTF8"), "{text}");
        assert!(
            text.contains("Total: 1 passed, 1 failed, 1 skipped, 0 not applicable"),
            "{text}"
        );
    }

    #[test]
    fn junit_and_json_are_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let report = sample();
        report.write_junit(&dir.path().join("j.xml")).unwrap();
        let xml = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
        assert!(xml.contains("name=\"relay &lt;denied&gt;\""), "{xml}");
        assert!(
            xml.contains("<skipped message=\"skipped: no SMTPUTF8\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        report.write_json(&dir.path().join("r.json")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap())
                .unwrap();
        assert_eq!(json["counts"]["failed"], 1);
        assert_eq!(json["scenarios"][1]["status"], "failed");
        assert_eq!(json["scenarios"][1]["message"], "expected 554, got 250");
    }
}

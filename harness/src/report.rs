//! Results of a conformance run: one record per scenario, a readable summary per feature, and
//! JSON and JUnit files for CI.
//!
//! Every scenario says what it checks with one severity tag (`@must`, `@should`, `@quality`),
//! and a failed step means something different for each: a broken MUST fails the run, a missed
//! SHOULD is a warning that does not (unless the target profile says `strict: true`), and a
//! quality figure is measured and reported, never judged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a scenario checks, named by its severity tag.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `@must`: an RFC MUST, MUST NOT or REQUIRED. A failed step fails the run. A scenario
    /// without a severity tag is judged as one, so that a missing tag never softens a verdict.
    #[default]
    Must,
    /// `@should`: a SHOULD, RECOMMENDED or recommended practice. A failed step is a warning.
    Should,
    /// `@quality`: a measured figure (a notification latency, say), reported and never a reason
    /// to fail; a MUST the scenario checks on the way still fails it.
    Quality,
}

impl Severity {
    /// Every severity, strictest first.
    pub const ALL: [Severity; 3] = [Severity::Must, Severity::Should, Severity::Quality];

    /// The tag that names it, without `@`.
    pub fn tag(self) -> &'static str {
        match self {
            Severity::Must => "must",
            Severity::Should => "should",
            Severity::Quality => "quality",
        }
    }

    /// How reports show it.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Must => "MUST",
            Severity::Should => "SHOULD",
            Severity::Quality => "quality",
        }
    }

    /// The severity tags among `tags` (given without `@`), in their order: a scenario must
    /// have exactly one.
    pub fn tagged(tags: &[String]) -> Vec<Severity> {
        tags.iter()
            .filter_map(|tag| Severity::ALL.into_iter().find(|s| s.tag() == tag))
            .collect()
    }

    /// A scenario's severity: its first severity tag, or [`Severity::Must`] without one.
    pub fn of(tags: &[String]) -> Severity {
        Severity::tagged(tags).first().copied().unwrap_or_default()
    }
}

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
    /// A step of a `@should` scenario failed: the target does not follow a recommendation.
    /// Reported apart from failures, and not a reason for a non-zero exit status.
    Warning {
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
            Outcome::Warning { .. } => "warning",
            Outcome::Skipped { .. } => "skipped",
            Outcome::NotApplicable { .. } => "not applicable",
            Outcome::KnownFinding { .. } => "known finding",
        }
    }

    /// The step, message and transcript of a step that failed: a failure, a warning or a
    /// known finding.
    pub fn details(&self) -> Option<(&str, &str, &str)> {
        match self {
            Outcome::Failed {
                step,
                message,
                transcript,
            }
            | Outcome::Warning {
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

    /// What a failed step means for a scenario of `severity`: a `@should` scenario's failure
    /// is a warning, unless the target profile is `strict`. Every other outcome stays as it is
    /// (a `@quality` scenario only fails on a MUST it checks on the way).
    pub fn judged(self, severity: Severity, strict: bool) -> Outcome {
        match self {
            Outcome::Failed {
                step,
                message,
                transcript,
            } if severity == Severity::Should && !strict => Outcome::Warning {
                step,
                message,
                transcript,
            },
            other => other,
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
    /// What the scenario checks, from its severity tag.
    #[serde(default)]
    pub severity: Severity,
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
    /// `@should` scenarios that failed: warnings, not failures.
    #[serde(default)]
    pub warnings: usize,
    /// Scenarios skipped for a missing capability or by the profile.
    pub skipped: usize,
    /// Scenarios for services the target does not offer.
    pub not_applicable: usize,
    /// Failures the target's profile lists as known findings.
    #[serde(default)]
    pub known_findings: usize,
}

impl Counts {
    /// Counts one more outcome.
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Warning { .. } => self.warnings += 1,
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
    /// Whether the target profile said `strict: true`: failed `@should` scenarios were counted
    /// as failures, not warnings.
    #[serde(default)]
    pub strict: bool,
    /// Every scenario selected by the tag filter, in file order.
    pub scenarios: Vec<Record>,
}

impl Report {
    /// Sorts records into file and line order (scenarios run concurrently).
    pub fn new(target: String, mut scenarios: Vec<Record>) -> Report {
        scenarios.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Report {
            target,
            strict: false,
            scenarios,
        }
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
    /// Warnings do not count against it.
    pub fn success(&self) -> bool {
        let counts = self.counts();
        counts.failed == 0 && counts.passed + counts.warnings > 0
    }

    /// The failed records.
    pub fn failures(&self) -> impl Iterator<Item = &Record> {
        self.scenarios
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }

    /// The records of `@should` scenarios that failed.
    pub fn warnings(&self) -> impl Iterator<Item = &Record> {
        self.scenarios
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Warning { .. }))
    }

    /// The human-readable summary: failures, then warnings, each with its transcript; a line
    /// per feature; the quality figures measured; the totals and what they mean for the exit
    /// status.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for record in self.failures().chain(self.warnings()) {
            let Some((step, message, transcript)) = record.outcome.details() else {
                continue;
            };
            let heading = match record.outcome {
                Outcome::Warning { .. } => "WARNING",
                _ => "FAILED",
            };
            let _ = writeln!(
                out,
                "{heading} [{}] {} :: {} ({}:{})\n  step: {step}\n  {}\n  transcript:\n{}",
                record.severity.label(),
                record.feature,
                record.scenario,
                record.file,
                record.line,
                message.replace('\n', "\n  "),
                indent(transcript, "    "),
            );
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
                    Outcome::Warning { message, .. } => {
                        let _ = writeln!(
                            out,
                            "    warning {} ({}:{}): {}",
                            record.scenario,
                            record.file,
                            record.line,
                            message.lines().next().unwrap_or_default()
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
            }
        }
        let measured: Vec<&Record> = self
            .scenarios
            .iter()
            .filter(|r| !r.measurements.is_empty())
            .collect();
        if !measured.is_empty() {
            let _ = writeln!(
                out,
                "Quality figures (measured and reported, never a failure):"
            );
            for record in measured {
                for m in &record.measurements {
                    let _ = writeln!(
                        out,
                        "  {}: {} {} ({}:{} {})",
                        m.name,
                        format_value(m.value),
                        m.unit,
                        record.file,
                        record.line,
                        record.scenario
                    );
                }
            }
        }
        let counts = self.counts();
        if self.strict {
            let _ = writeln!(
                out,
                "Strict: the target profile says `strict: true`, so a failed SHOULD check is a \
                 failure."
            );
        } else if counts.warnings > 0 {
            let _ = writeln!(
                out,
                "Warnings are SHOULD checks (recommended practice) the target does not meet: \
                 reported, not failures (`strict: true` in the target profile makes them failures)."
            );
        }
        let _ = writeln!(out, "Total: {}", format_counts(&counts));
        out
    }

    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Json<'a> {
            target: &'a str,
            strict: bool,
            counts: Counts,
            scenarios: &'a [Record],
        }
        let json = Json {
            target: &self.target,
            strict: self.strict,
            counts: self.counts(),
            scenarios: &self.scenarios,
        };
        let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// Writes a JUnit XML report: one test suite per feature file, skipped and not applicable
    /// scenarios as `<skipped message=...>` so CI shows them with their reason. A warning is a
    /// passed test case (it is not a failure) whose `warning` property and system-out say what
    /// went wrong; every test case names its severity in a property, and its measured figures
    /// in more.
    pub fn write_junit(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.junit())
    }

    /// The JUnit XML text [`Report::write_junit`] writes.
    pub fn junit(&self) -> String {
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
            let _ = writeln!(
                xml,
                "    <properties>\n      <property name=\"warnings\" value=\"{}\"/>\n      \
                 <property name=\"strict\" value=\"{}\"/>\n    </properties>",
                suite.warnings, self.strict
            );
            for record in records {
                let _ = writeln!(
                    xml,
                    "    <testcase classname=\"{}\" name=\"{}\">",
                    escape(&record.feature),
                    escape(&record.scenario)
                );
                xml.push_str("      <properties>\n");
                let mut property = |name: &str, value: &str| {
                    let _ = writeln!(
                        xml,
                        "        <property name=\"{}\" value=\"{}\"/>",
                        escape(name),
                        escape(value)
                    );
                };
                property("severity", record.severity.tag());
                if let Outcome::Warning { message, .. } = &record.outcome {
                    property("warning", message);
                }
                for m in &record.measurements {
                    property(
                        &format!("measured: {}", m.name),
                        &format!("{} {}", format_value(m.value), m.unit),
                    );
                }
                xml.push_str("      </properties>\n");
                match &record.outcome {
                    Outcome::Passed => {}
                    Outcome::Failed {
                        step,
                        message,
                        transcript,
                    } => {
                        let _ = writeln!(
                            xml,
                            "      <failure message=\"{}\">{}</failure>\n      <system-out>{}</system-out>",
                            escape(message),
                            escape(&format!("step: {step}\n{message}")),
                            escape(transcript)
                        );
                    }
                    Outcome::Warning {
                        step,
                        message,
                        transcript,
                    } => {
                        let _ = writeln!(
                            xml,
                            "      <system-out>{}</system-out>",
                            escape(&format!(
                                "WARNING (a SHOULD check, not a failure)\nstep: {step}\n{message}\n\n{transcript}"
                            ))
                        );
                    }
                    Outcome::Skipped { reason } | Outcome::NotApplicable { reason } => {
                        let _ = writeln!(
                            xml,
                            "      <skipped message=\"{}: {}\"/>",
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
                            "      <skipped message=\"known finding: {}\"/>\n      <system-out>{}</system-out>",
                            escape(finding),
                            escape(&format!("step: {step}\n{message}\n\n{transcript}"))
                        );
                    }
                }
                xml.push_str("    </testcase>\n");
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

/// Counts as a report line, e.g. "3 passed, 1 failed, 2 warnings, 0 skipped, 0 not
/// applicable"; known findings only when there are some.
pub fn format_counts(counts: &Counts) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut text = format!(
        "{} passed, {} failed, {} warning{}, {} skipped, {} not applicable",
        counts.passed,
        counts.failed,
        counts.warnings,
        plural(counts.warnings),
        counts.skipped,
        counts.not_applicable
    );
    if counts.known_findings > 0 {
        let _ = write!(
            text,
            ", {} known finding{}",
            counts.known_findings,
            plural(counts.known_findings)
        );
    }
    text
}

/// A measured figure for reading: whole numbers as they are, others to three decimals at
/// most.
pub fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
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
            tags: vec!["smtp".into(), "must".into()],
            severity: Severity::Must,
            outcome,
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Default::default(),
        }
    }

    fn failed(step: &str, message: &str) -> Outcome {
        Outcome::Failed {
            step: step.into(),
            message: message.into(),
            transcript: "C: RCPT TO:<x@y>\\r\\n\nS: 250 ok\\r\\n".into(),
        }
    }

    fn warned(scenario: &str, line: usize) -> Record {
        record(
            scenario,
            line,
            failed("Then the reply code is 500", "expected 500, got 502"),
        )
        .with_tags(&["smtp", "should"])
        .judged(false)
    }

    impl Record {
        /// The record as `conform` leaves it: the outcome judged by its own severity.
        fn judged(mut self, strict: bool) -> Record {
            let severity = Severity::of(&self.tags);
            self.severity = severity;
            self.outcome = self.outcome.judged(severity, strict);
            self
        }
    }

    fn sample() -> Report {
        Report::new(
            "embedded".into(),
            vec![
                record(
                    "relay <denied>",
                    9,
                    failed("Then the reply code is 554", "expected 554, got 250"),
                ),
                record("greeting", 3, Outcome::Passed),
                record(
                    "utf8",
                    12,
                    Outcome::Skipped {
                        reason: "no SMTPUTF8".into(),
                    },
                ),
                warned("unknown command <500>", 15),
            ],
        )
    }

    #[test]
    fn severity_comes_from_the_tags_and_defaults_to_must() {
        let tags = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert_eq!(Severity::of(&tags(&["smtp", "should"])), Severity::Should);
        assert_eq!(Severity::of(&tags(&["quality", "imap"])), Severity::Quality);
        assert_eq!(Severity::of(&tags(&["smtp"])), Severity::Must);
        assert_eq!(
            Severity::tagged(&tags(&["must", "rfc5321-4.2.4", "should"])),
            [Severity::Must, Severity::Should]
        );
        // Only whole tags count: @shoulder or @must-not-relay name no severity.
        assert!(Severity::tagged(&tags(&["shoulder", "must-not-relay"])).is_empty());
    }

    #[test]
    fn a_failed_should_is_a_warning_unless_strict() {
        let failure = || failed("Then x", "expected 1, got 2");
        assert!(matches!(
            failure().judged(Severity::Should, false),
            Outcome::Warning { step, message, .. } if step == "Then x" && message == "expected 1, got 2"
        ));
        assert!(matches!(
            failure().judged(Severity::Should, true),
            Outcome::Failed { .. }
        ));
        // A MUST fails; a quality scenario fails only on a MUST inside it, which is a failure.
        for severity in [Severity::Must, Severity::Quality] {
            for strict in [false, true] {
                assert!(matches!(
                    failure().judged(severity, strict),
                    Outcome::Failed { .. }
                ));
            }
        }
        // Nothing else changes.
        let skipped = Outcome::Skipped { reason: "r".into() };
        assert_eq!(skipped.clone().judged(Severity::Should, false), skipped);
        assert_eq!(
            Outcome::Passed.judged(Severity::Should, false),
            Outcome::Passed
        );
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
                warnings: 1,
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
        // Warnings never fail a run, even when nothing else passed.
        let only_warnings = Report::new("x".into(), vec![warned("a", 1), warned("b", 2)]);
        assert_eq!(only_warnings.counts().warnings, 2);
        assert!(only_warnings.success());
        // With strict: true the same results are failures.
        let strict = Report::new(
            "x".into(),
            vec![
                record("a", 1, failed("Then x", "m"))
                    .with_tags(&["should"])
                    .judged(true),
            ],
        );
        assert!(!strict.success());
    }

    impl Record {
        fn with_tags(mut self, tags: &[&str]) -> Record {
            self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
            self
        }
    }

    #[test]
    fn summary_shows_failures_and_warnings_apart_with_transcripts_and_skip_reasons() {
        let text = sample().render();
        assert!(
            text.contains("FAILED [MUST] SMTP basics :: relay <denied>"),
            "{text}"
        );
        assert!(
            text.contains("WARNING [SHOULD] SMTP basics :: unknown command <500>"),
            "{text}"
        );
        assert!(
            text.find("FAILED").unwrap() < text.find("WARNING").unwrap(),
            "failures first: {text}"
        );
        assert!(text.contains("C: RCPT TO:<x@y>"), "{text}");
        assert!(text.contains("skipped utf8: no SMTPUTF8"), "{text}");
        assert!(
            text.contains(
                "warning unknown command <500> (smtp/basics.feature:15): expected 500, got 502"
            ),
            "{text}"
        );
        assert!(text.contains("not failures (`strict: true`"), "{text}");
        assert!(
            text.ends_with("Total: 1 passed, 1 failed, 1 warning, 1 skipped, 0 not applicable\n"),
            "{text}"
        );
        let mut strict = sample();
        strict.strict = true;
        assert!(strict.render().contains("Strict: the target profile"));
    }

    #[test]
    fn measurements_are_listed_as_quality_figures() {
        let mut idle = record("IDLE hears of new mail", 20, Outcome::Passed);
        idle.severity = Severity::Quality;
        idle.measurements.push(Measurement {
            name: "new mail reported during IDLE".into(),
            value: 12.5,
            unit: "ms".into(),
        });
        let report = Report::new("t".into(), vec![idle]);
        let text = report.render();
        assert!(
            text.contains(
                "Quality figures (measured and reported, never a failure):\n  new mail reported \
                 during IDLE: 12.5 ms (smtp/basics.feature:20 IDLE hears of new mail)"
            ),
            "{text}"
        );
        let xml = report.junit();
        assert!(
            xml.contains(
                "<property name=\"measured: new mail reported during IDLE\" value=\"12.5 ms\"/>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<property name=\"severity\" value=\"quality\"/>"));
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.12349), "0.123");
        assert_eq!(format_value(2.5), "2.5");
    }

    #[test]
    fn junit_passes_a_warning_and_fails_a_failure() {
        let xml = sample().junit();
        assert!(xml.contains("name=\"relay &lt;denied&gt;\""), "{xml}");
        assert!(
            xml.contains("<skipped message=\"skipped: no SMTPUTF8\"/>"),
            "{xml}"
        );
        // Four test cases, one failure: the warning is not counted as one.
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        let warning = xml
            .split("<testcase classname=\"SMTP basics\" name=\"unknown command &lt;500&gt;\">")
            .nth(1)
            .and_then(|rest| rest.split("</testcase>").next())
            .expect("the warning's test case");
        assert!(!warning.contains("<failure"), "{warning}");
        assert!(!warning.contains("<skipped"), "{warning}");
        assert!(
            warning.contains("<property name=\"severity\" value=\"should\"/>"),
            "{warning}"
        );
        assert!(
            warning.contains("<property name=\"warning\" value=\"expected 500, got 502\"/>"),
            "{warning}"
        );
        assert!(
            warning.contains("<system-out>WARNING (a SHOULD check, not a failure)\nstep: Then the reply code is 500"),
            "{warning}"
        );
        assert!(
            xml.contains("<property name=\"warnings\" value=\"1\"/>"),
            "{xml}"
        );
    }

    #[test]
    fn json_has_counts_severity_and_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let report = sample();
        report.write_json(&dir.path().join("r.json")).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap())
                .unwrap();
        assert_eq!(json["counts"]["failed"], 1);
        assert_eq!(json["counts"]["warnings"], 1);
        assert_eq!(json["strict"], false);
        assert_eq!(json["scenarios"][1]["status"], "failed");
        assert_eq!(json["scenarios"][1]["severity"], "must");
        assert_eq!(json["scenarios"][1]["message"], "expected 554, got 250");
        assert_eq!(json["scenarios"][3]["status"], "warning");
        assert_eq!(json["scenarios"][3]["severity"], "should");
        assert_eq!(json["scenarios"][3]["step"], "Then the reply code is 500");
        // A report written before severities existed still reads, as MUSTs.
        let old: Report = serde_json::from_str(
            r#"{"target": "t", "scenarios": [{"feature": "f", "file": "a.feature",
                "scenario": "s", "line": 1, "tags": [], "status": "passed"}]}"#,
        )
        .unwrap();
        assert_eq!(old.scenarios[0].severity, Severity::Must);
        assert!(!old.strict);
    }
}

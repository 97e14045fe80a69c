//! The conformance matrix: one row per scenario, grouped by area, one column per target run,
//! written as a self-contained HTML page or as Markdown. Each row says whether the scenario is a
//! MUST, a SHOULD or a quality figure; failures, warnings and known findings link to their step,
//! message and transcript further down the same document, and measured figures stand in their
//! cells.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::report::{Counts, Outcome, Record, Report, Severity, format_value};

/// Areas in the order the matrix shows them, with their titles. A feature folder not listed
/// here comes after these, titled by its folder name.
const AREAS: [(&str, &str); 9] = [
    ("smtp", "SMTP"),
    ("submission", "Submission"),
    ("relay", "Relay"),
    ("pop3", "POP3"),
    ("imap", "IMAP"),
    ("auth", "Authentication"),
    ("tls", "TLS"),
    ("dns", "DNS"),
    ("security", "Security"),
];

/// Reads a report written by `harness conform --json`.
pub fn read_json(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a report written by `harness conform --json`",
            path.display()
        )
    })
}

/// Which format a report file gets, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.html` or `.htm`.
    Html,
    /// `.md` or `.markdown`.
    Markdown,
}

impl Format {
    /// The format for `path`, or an error naming the extensions understood.
    pub fn from_path(path: &Path) -> anyhow::Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("html" | "htm") => Ok(Format::Html),
            Some("md" | "markdown") => Ok(Format::Markdown),
            _ => anyhow::bail!(
                "{}: a report file must end in .html or .md (the extension picks the format)",
                path.display()
            ),
        }
    }
}

/// One scenario across every run.
#[derive(Debug)]
struct Row<'a> {
    area: String,
    file: &'a str,
    line: usize,
    scenario: &'a str,
    rfc_tags: Vec<&'a str>,
    /// What the scenario checks (from the first run that has it).
    severity: Severity,
    /// One cell per run; `None` when that run did not select the scenario.
    cells: Vec<Option<&'a Record>>,
}

/// Several runs side by side.
#[derive(Debug)]
pub struct Matrix<'a> {
    columns: Vec<String>,
    counts: Vec<Counts>,
    rows: Vec<Row<'a>>,
}

impl<'a> Matrix<'a> {
    /// Lines the runs up by scenario (feature file and scenario name).
    pub fn new(reports: &'a [Report]) -> Matrix<'a> {
        let mut columns: Vec<String> = Vec::new();
        for report in reports {
            let mut name = report.target.clone();
            let mut n = 2;
            while columns.contains(&name) {
                name = format!("{} ({n})", report.target);
                n += 1;
            }
            columns.push(name);
        }
        let mut rows: BTreeMap<(usize, String, &str, &str), Row<'a>> = BTreeMap::new();
        for (column, report) in reports.iter().enumerate() {
            for record in &report.scenarios {
                let area = record
                    .file
                    .split(['/', '\\'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let order = AREAS
                    .iter()
                    .position(|(key, _)| *key == area)
                    .unwrap_or(AREAS.len());
                let row = rows
                    .entry((order, area.clone(), &record.file, &record.scenario))
                    .or_insert_with(|| Row {
                        area,
                        file: &record.file,
                        line: record.line,
                        scenario: &record.scenario,
                        rfc_tags: record
                            .tags
                            .iter()
                            .filter(|t| t.starts_with("rfc"))
                            .map(String::as_str)
                            .collect(),
                        severity: record.severity,
                        cells: vec![None; reports.len()],
                    });
                row.cells[column] = Some(record);
            }
        }
        let mut rows: Vec<Row<'a>> = rows.into_values().collect();
        // Within an area: by file, then in the order the scenarios stand in their file.
        rows.sort_by(|a, b| {
            let order = |r: &Row<'_>| AREAS.iter().position(|(k, _)| *k == r.area);
            (order(a).unwrap_or(AREAS.len()), &a.area, a.file, a.line).cmp(&(
                order(b).unwrap_or(AREAS.len()),
                &b.area,
                b.file,
                b.line,
            ))
        });
        Matrix {
            columns,
            counts: reports.iter().map(Report::counts).collect(),
            rows,
        }
    }

    fn areas(&self) -> Vec<(&str, Vec<&Row<'a>>)> {
        let mut areas: Vec<(&str, Vec<&Row<'a>>)> = Vec::new();
        for row in &self.rows {
            match areas.last_mut() {
                Some((area, rows)) if *area == row.area => rows.push(row),
                _ => areas.push((&row.area, vec![row])),
            }
        }
        areas
    }

    /// Counts per area and run, for the summary table.
    fn area_counts(&self) -> Vec<(&str, Vec<Counts>)> {
        self.areas()
            .into_iter()
            .map(|(area, rows)| {
                let mut counts = vec![Counts::default(); self.columns.len()];
                for row in rows {
                    for (column, cell) in row.cells.iter().enumerate() {
                        if let Some(record) = cell {
                            counts[column].add(&record.outcome);
                        }
                    }
                }
                (area, counts)
            })
            .collect()
    }

    /// The matrix as one self-contained HTML page (no scripts, no external resources).
    pub fn html(&self) -> String {
        let mut out = String::new();
        let title = format!("Conformance matrix: {}", self.columns.join(" vs "));
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            html(&title),
            html(&title)
        );
        out.push_str(
            "<p class=\"legend\"><span class=\"passed\">passed</span> \
             <span class=\"failed\">failed</span> \
             <span class=\"warning\">warning (a SHOULD not met)</span> \
             <span class=\"known\">known finding</span> \
             <span class=\"skipped\">skipped</span> \
             <span class=\"na\">not applicable</span> \
             <span class=\"absent\">not run</span> \
             &mdash; a failed, warning or known-finding cell links to its step, message and \
             transcript. Each scenario is a MUST (its failure fails the run), a SHOULD (a \
             warning) or a quality figure (measured, never failed).</p>\n",
        );
        // Summary: totals per run, then per area.
        out.push_str("<h2>Summary</h2>\n<table class=\"summary\">\n<thead><tr><th>area</th>");
        for column in &self.columns {
            let _ = write!(out, "<th>{}</th>", html(column));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (area, counts) in self.area_counts() {
            let _ = write!(
                out,
                "<tr><td><a href=\"#area-{}\">{}</a></td>",
                html(area),
                html(area_title(area))
            );
            for c in &counts {
                let _ = write!(out, "<td>{}</td>", html(&short_counts(c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("<tr class=\"total\"><td>all</td>");
        for c in &self.counts {
            let _ = write!(out, "<td>{}</td>", html(&short_counts(c)));
        }
        out.push_str("</tr>\n</tbody>\n</table>\n");

        let mut failures: Vec<(String, &Row<'a>, usize, &Record)> = Vec::new();
        for (area, rows) in self.areas() {
            let _ = write!(
                out,
                "<h2 id=\"area-{}\">{}</h2>\n<table class=\"matrix\">\n<thead><tr><th>scenario</th>",
                html(area),
                html(area_title(area))
            );
            for column in &self.columns {
                let _ = write!(out, "<th>{}</th>", html(column));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                let _ = write!(
                    out,
                    "<tr><td class=\"scenario\">{} <span class=\"sev sev-{}\">{}</span>\
                     <div class=\"where\">{}:{}{}</div></td>",
                    html(row.scenario),
                    row.severity.tag(),
                    row.severity.label(),
                    html(row.file),
                    row.line,
                    if row.rfc_tags.is_empty() {
                        String::new()
                    } else {
                        format!(" &middot; {}", html(&row.rfc_tags.join(" ")))
                    }
                );
                for (column, cell) in row.cells.iter().enumerate() {
                    let Some(record) = cell else {
                        out.push_str("<td class=\"absent\">not run</td>");
                        continue;
                    };
                    let (class, label) = class_and_label(&record.outcome);
                    let _ = write!(out, "<td class=\"{class}\">");
                    if record.outcome.details().is_some() {
                        let anchor = anchor(column, row);
                        let _ = write!(out, "<a href=\"#{anchor}\">{label}</a>");
                        failures.push((anchor, row, column, record));
                    } else {
                        out.push_str(label);
                    }
                    if let Some(reason) = reason(&record.outcome) {
                        let _ = write!(out, "<div class=\"why\">{}</div>", html(reason));
                    }
                    for note in &record.notes {
                        let _ = write!(out, "<div class=\"note\">{}</div>", html(note));
                    }
                    for m in &record.measurements {
                        let _ = write!(
                            out,
                            "<div class=\"measured\">measured: {} {} {}</div>",
                            html(&m.name),
                            format_value(m.value),
                            html(&m.unit)
                        );
                    }
                    out.push_str("</td>");
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        if !failures.is_empty() {
            out.push_str("<h2 id=\"failures\">Failures, warnings and known findings</h2>\n");
            for (anchor, row, column, record) in failures {
                let Some((step, message, transcript)) = record.outcome.details() else {
                    continue;
                };
                let (class, label) = class_and_label(&record.outcome);
                let _ = write!(
                    out,
                    "<section class=\"failure\" id=\"{anchor}\">\n<h3><span class=\"{class}\">{label}</span> {} &mdash; {}</h3>\n\
                     <p class=\"where\">{}:{} &middot; {}</p>\n",
                    html(&self.columns[column]),
                    html(row.scenario),
                    html(row.file),
                    row.line,
                    row.severity.label()
                );
                if let Outcome::KnownFinding { finding, .. } = &record.outcome {
                    let _ = writeln!(out, "<p class=\"finding\">{}</p>", html(finding));
                }
                let _ = write!(
                    out,
                    "<p><b>step:</b> {}</p>\n<pre class=\"message\">{}</pre>\n\
                     <details open><summary>transcript</summary><pre>{}</pre></details>\n\
                     </section>\n",
                    html(step),
                    html(message),
                    html(transcript)
                );
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// The per-area summary as a Markdown table (what the README shows).
    pub fn markdown_summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| area | {} |", self.columns.join(" | "));
        let _ = writeln!(out, "| --- |{}", " --- |".repeat(self.columns.len()));
        for (area, counts) in self.area_counts() {
            let cells: Vec<String> = counts.iter().map(short_counts).collect();
            let _ = writeln!(out, "| {} | {} |", area_title(area), cells.join(" | "));
        }
        let cells: Vec<String> = self.counts.iter().map(short_counts).collect();
        let _ = writeln!(out, "| **all** | {} |", cells.join(" | "));
        out
    }

    /// The scenarios that did not pass in every run, as a Markdown table: what a reader of a
    /// comparison wants first. Failures and warnings are named by their message's first line;
    /// each row says whether the scenario is a MUST, a SHOULD or a quality figure.
    pub fn markdown_differences(&self) -> String {
        let mut out = String::new();
        let headers: Vec<String> = self.columns.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| area | scenario | {} |", headers.join(" | "));
        let _ = writeln!(out, "| --- | --- |{}", " --- |".repeat(self.columns.len()));
        let mut any = false;
        // Known findings are long and often shared by several scenarios: each is told once,
        // under the table, and the cells refer to it.
        let mut findings: Vec<&str> = Vec::new();
        for row in &self.rows {
            let all_passed = row
                .cells
                .iter()
                .all(|cell| matches!(cell, Some(r) if r.outcome == Outcome::Passed && r.notes.is_empty()));
            if all_passed {
                continue;
            }
            any = true;
            let cells: Vec<String> = row
                .cells
                .iter()
                .map(|cell| {
                    let Some(record) = cell else {
                        return "not run".to_string();
                    };
                    let (_, label) = class_and_label(&record.outcome);
                    let mut text = label.to_string();
                    let detail = match &record.outcome {
                        Outcome::Skipped { reason } | Outcome::NotApplicable { reason } => {
                            Some(reason.as_str())
                        }
                        Outcome::KnownFinding { finding, .. } => {
                            let number = match findings.iter().position(|f| f == finding) {
                                Some(index) => index + 1,
                                None => {
                                    findings.push(finding);
                                    findings.len()
                                }
                            };
                            let _ = write!(text, " [{number}]");
                            None
                        }
                        Outcome::Failed { message, .. } | Outcome::Warning { message, .. } => {
                            message.lines().next()
                        }
                        Outcome::Passed => None,
                    };
                    if let Some(detail) = detail {
                        let _ = write!(text, ": {}", md(detail));
                    }
                    for note in &record.notes {
                        let _ = write!(text, "<br>_{}_", md(note));
                    }
                    text
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} <sub>{}:{} {}</sub> | {} |",
                area_title(&row.area),
                md(row.scenario),
                md(row.file),
                row.line,
                row.severity.label(),
                cells.join(" | ")
            );
        }
        if !any {
            let _ = writeln!(
                out,
                "| | (every scenario passed in every run) |{}",
                " |".repeat(self.columns.len())
            );
        }
        if !findings.is_empty() {
            out.push('\n');
        }
        for (index, finding) in findings.iter().enumerate() {
            let _ = writeln!(out, "{}. known finding: {}", index + 1, md(finding));
        }
        out
    }

    /// The quality figures every run measured, as a Markdown table (one row per scenario and
    /// figure, one column per run); empty when no run measured anything.
    pub fn markdown_measurements(&self) -> String {
        let mut figures: Vec<(&Row<'a>, &str)> = Vec::new();
        for row in &self.rows {
            for record in row.cells.iter().flatten() {
                for m in &record.measurements {
                    if !figures
                        .iter()
                        .any(|(r, n)| std::ptr::eq(*r, row) && *n == m.name)
                    {
                        figures.push((row, &m.name));
                    }
                }
            }
        }
        if figures.is_empty() {
            return String::new();
        }
        let mut out = String::from("Quality figures (measured and reported, never a failure):\n\n");
        let headers: Vec<String> = self.columns.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| scenario | figure | {} |", headers.join(" | "));
        let _ = writeln!(out, "| --- | --- |{}", " --- |".repeat(self.columns.len()));
        for (row, name) in figures {
            let cells: Vec<String> = row
                .cells
                .iter()
                .map(|cell| {
                    cell.and_then(|r| r.measurements.iter().find(|m| m.name == name))
                        .map_or_else(
                            || "-".to_owned(),
                            |m| format!("{} {}", format_value(m.value), md(&m.unit)),
                        )
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} <sub>{}:{}</sub> | {} | {} |",
                md(row.scenario),
                md(row.file),
                row.line,
                md(name),
                cells.join(" | ")
            );
        }
        out
    }

    /// The whole matrix as Markdown: the summary, a table per area, then the failures,
    /// warnings and known findings with their transcripts.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Conformance matrix: {}\n\n{}",
            md(&self.columns.join(" vs ")),
            self.markdown_summary()
        );
        let measured = self.markdown_measurements();
        if !measured.is_empty() {
            let _ = writeln!(out, "{measured}");
        }
        let mut failures: Vec<(String, &Row<'a>, usize, &Record)> = Vec::new();
        for (area, rows) in self.areas() {
            let _ = writeln!(out, "## {}\n", area_title(area));
            let headers: Vec<String> = self.columns.iter().map(|c| md(c)).collect();
            let _ = writeln!(out, "| scenario | {} |", headers.join(" | "));
            let _ = writeln!(out, "| --- |{}", " --- |".repeat(self.columns.len()));
            for row in rows {
                let mut cells = Vec::new();
                for (column, cell) in row.cells.iter().enumerate() {
                    let Some(record) = cell else {
                        cells.push("not run".to_string());
                        continue;
                    };
                    let (_, label) = class_and_label(&record.outcome);
                    let mut cell = if record.outcome.details().is_some() {
                        let anchor = anchor(column, row);
                        failures.push((anchor.clone(), row, column, record));
                        format!("**[{label}](#{anchor})**")
                    } else {
                        label.to_string()
                    };
                    if let Some(reason) = reason(&record.outcome) {
                        let _ = write!(cell, ": {}", md(reason));
                    }
                    for note in &record.notes {
                        let _ = write!(cell, "<br>_{}_", md(note));
                    }
                    for m in &record.measurements {
                        let _ = write!(
                            cell,
                            "<br>measured: {} {} {}",
                            md(&m.name),
                            format_value(m.value),
                            md(&m.unit)
                        );
                    }
                    cells.push(cell);
                }
                let _ = writeln!(
                    out,
                    "| {} <br><sub>{}:{} {}</sub> | {} |",
                    md(row.scenario),
                    md(row.file),
                    row.line,
                    row.severity.label(),
                    cells.join(" | ")
                );
            }
            out.push('\n');
        }
        if !failures.is_empty() {
            out.push_str("## Failures, warnings and known findings\n\n");
            for (anchor, row, column, record) in failures {
                let Some((step, message, transcript)) = record.outcome.details() else {
                    continue;
                };
                let (_, label) = class_and_label(&record.outcome);
                let _ = writeln!(
                    out,
                    "<a id=\"{anchor}\"></a>\n### {label}: {} / {}\n\n`{}:{}` {}\n",
                    md(&self.columns[column]),
                    md(row.scenario),
                    row.file,
                    row.line,
                    row.severity.label()
                );
                if let Outcome::KnownFinding { finding, .. } = &record.outcome {
                    let _ = writeln!(out, "> {}\n", finding.replace('\n', " "));
                }
                let fence = fence_for(&[step, message, transcript]);
                let _ = writeln!(
                    out,
                    "step: {}\n\n{fence}\n{message}\n{fence}\n\n<details><summary>transcript</summary>\n\n{fence}\n{transcript}\n{fence}\n\n</details>\n",
                    md(step)
                );
            }
        }
        out
    }

    /// Writes the matrix to `path` in the format its extension names.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = match Format::from_path(path)? {
            Format::Html => self.html(),
            Format::Markdown => self.markdown(),
        };
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em; color: #1d1d1f; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; font-size: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #c8c8cc; padding: 0.3em 0.55em; vertical-align: top; text-align: left; font-size: 0.9em; }
thead th { background: #f0f0f3; position: sticky; top: 0; }
td.scenario { max-width: 34em; }
.where { color: #666; font-size: 0.8em; font-family: ui-monospace, monospace; }
.why, .note { font-size: 0.8em; margin-top: 0.2em; max-width: 30em; }
.note { font-style: italic; color: #334; }
.passed { background: #dff3e2; } .failed { background: #f9d6d5; } .known { background: #fde8c8; }
.warning { background: #ffe48a; }
.sev { font-size: 0.7em; font-weight: bold; padding: 0 0.35em; border-radius: 0.3em; vertical-align: middle; }
.sev-must { background: #e8e8ee; color: #333; } .sev-should { background: #fff3c4; color: #6a5200; } .sev-quality { background: #dcecff; color: #1d4f91; }
.measured { font-size: 0.8em; margin-top: 0.2em; font-family: ui-monospace, monospace; }
.skipped { background: #f4f1d8; } .na { background: #ececec; color: #555; } .absent { background: #fff; color: #999; }
.legend span { padding: 0.1em 0.5em; border: 1px solid #c8c8cc; }
tr.total td { font-weight: bold; }
.failure { border-top: 2px solid #c8c8cc; margin-top: 1em; }
.failure h3 span { padding: 0.1em 0.4em; }
.finding { background: #fde8c8; padding: 0.4em; }
pre { background: #f7f7f9; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; font-size: 0.85em; }
";

fn short_counts(c: &Counts) -> String {
    let mut parts = vec![format!("{} passed", c.passed)];
    if c.failed > 0 {
        parts.push(format!("{} failed", c.failed));
    }
    if c.warnings > 0 {
        let plural = if c.warnings == 1 { "" } else { "s" };
        parts.push(format!("{} warning{plural}", c.warnings));
    }
    if c.known_findings > 0 {
        let plural = if c.known_findings == 1 { "" } else { "s" };
        parts.push(format!("{} known finding{plural}", c.known_findings));
    }
    if c.skipped > 0 {
        parts.push(format!("{} skipped", c.skipped));
    }
    if c.not_applicable > 0 {
        parts.push(format!("{} n/a", c.not_applicable));
    }
    parts.join(", ")
}

fn area_title(area: &str) -> &str {
    AREAS
        .iter()
        .find(|(key, _)| *key == area)
        .map_or(area, |(_, title)| title)
}

fn class_and_label(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Passed => ("passed", "passed"),
        Outcome::Failed { .. } => ("failed", "failed"),
        Outcome::Warning { .. } => ("warning", "warning"),
        Outcome::Skipped { .. } => ("skipped", "skipped"),
        Outcome::NotApplicable { .. } => ("na", "not applicable"),
        Outcome::KnownFinding { .. } => ("known", "known finding"),
    }
}

fn reason(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Skipped { reason } | Outcome::NotApplicable { reason } => Some(reason),
        _ => None,
    }
}

/// A stable anchor for a failure cell: run column and scenario position.
fn anchor(column: usize, row: &Row<'_>) -> String {
    let file: String = row
        .file
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("f{column}-{file}-{}", row.line)
}

/// HTML text and attribute escaping: the same rules as XML's (control characters shown as
/// `\xNN`).
fn html(text: &str) -> String {
    crate::report::escape(text)
}

/// Text for a Markdown table cell: no line breaks, pipes and markup characters escaped, HTML
/// made inert.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '|' | '*' | '_' | '`' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// A code fence longer than any run of backticks in the texts it will enclose.
fn fence_for(texts: &[&str]) -> String {
    let longest = texts
        .iter()
        .flat_map(|t| t.split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::Measurement;

    fn record(file: &str, scenario: &str, line: usize, outcome: Outcome) -> Record {
        Record {
            feature: "F".into(),
            file: file.into(),
            scenario: scenario.into(),
            line,
            tags: vec!["smtp".into(), "rfc5321-4.5.2".into()],
            severity: Severity::Must,
            outcome,
            notes: Vec::new(),
            measurements: Vec::new(),
            key: Default::default(),
        }
    }

    fn failed(transcript: &str) -> Outcome {
        Outcome::Failed {
            step: "Then the reply code is 554".into(),
            message: "expected 554, got 250".into(),
            transcript: transcript.into(),
        }
    }

    fn two_runs() -> Vec<Report> {
        let mut noted = record(
            "submission/port587.feature",
            "MAIL before AUTH",
            7,
            Outcome::Passed,
        );
        noted.notes.push("refused at RCPT, not at MAIL".into());
        let warned = |outcome: Outcome| Record {
            severity: Severity::Should,
            ..record("smtp/commands.feature", "unknown <command>", 30, outcome)
        };
        let idle = |ms: f64| {
            let mut idle = record(
                "imap/sync.feature",
                "IDLE hears new mail",
                40,
                Outcome::Passed,
            );
            idle.severity = Severity::Quality;
            idle.measurements.push(Measurement {
                name: "new mail reported during IDLE".into(),
                value: ms,
                unit: "ms".into(),
            });
            idle
        };
        vec![
            Report::new(
                "reference".into(),
                vec![
                    record("pop3/login.feature", "USER before STLS", 4, Outcome::Passed),
                    record("smtp/data.feature", "dot <stuffing>", 9, Outcome::Passed),
                    record(
                        "submission/port587.feature",
                        "MAIL before AUTH",
                        7,
                        Outcome::Passed,
                    ),
                    warned(Outcome::Passed),
                    idle(3.0),
                ],
            ),
            Report::new(
                "postfix & dovecot".into(),
                vec![
                    record(
                        "pop3/login.feature",
                        "USER before STLS",
                        4,
                        Outcome::NotApplicable {
                            reason: "no pop3 port".into(),
                        },
                    ),
                    record(
                        "smtp/data.feature",
                        "dot <stuffing>",
                        9,
                        failed("C: DATA\nS: 354 <go>"),
                    ),
                    noted,
                    record(
                        "smtp/data.feature",
                        "bare LF",
                        20,
                        Outcome::KnownFinding {
                            finding: "Postfix 3.7 accepts <LF>.<LF>".into(),
                            step: "Then one message".into(),
                            message: "two messages".into(),
                            transcript: "C: x".into(),
                        },
                    ),
                    warned(Outcome::Warning {
                        step: "Then the reply code is 500".into(),
                        message: "expected 500, got 502".into(),
                        transcript: "C: FROB\nS: 502 <no>".into(),
                    }),
                    idle(61250.5),
                ],
            ),
        ]
    }

    #[test]
    fn rows_follow_areas_and_cells_line_up_by_run() {
        let reports = two_runs();
        let matrix = Matrix::new(&reports);
        let order: Vec<(&str, &str)> = matrix
            .rows
            .iter()
            .map(|r| (r.area.as_str(), r.scenario))
            .collect();
        assert_eq!(
            order,
            [
                ("smtp", "unknown <command>"),
                ("smtp", "dot <stuffing>"),
                ("smtp", "bare LF"),
                ("submission", "MAIL before AUTH"),
                ("pop3", "USER before STLS"),
                ("imap", "IDLE hears new mail"),
            ]
        );
        // "bare LF" is only in the second run.
        assert!(matrix.rows[2].cells[0].is_none());
        assert!(matrix.rows[2].cells[1].is_some());
        assert_eq!(matrix.rows[0].severity, Severity::Should);
    }

    #[test]
    fn html_escapes_links_failures_and_shows_reasons_and_notes() {
        let reports = two_runs();
        let page = Matrix::new(&reports).html();
        assert!(page.contains("<th>postfix &amp; dovecot</th>"), "{page}");
        assert!(page.contains("dot &lt;stuffing&gt;"));
        assert!(!page.contains("dot <stuffing>"));
        let link = "href=\"#f1-smtp-data-feature-9\"";
        assert!(page.contains(link), "{page}");
        assert!(page.contains("<section class=\"failure\" id=\"f1-smtp-data-feature-9\">"));
        assert!(page.contains("S: 354 &lt;go&gt;"));
        assert!(page.contains("no pop3 port"));
        assert!(page.contains("refused at RCPT, not at MAIL"));
        assert!(page.contains("Postfix 3.7 accepts &lt;LF&gt;.&lt;LF&gt;"));
        assert!(page.contains("<td class=\"absent\">not run</td>"));
        assert!(
            page.contains("2 passed, 1 failed, 1 warning, 1 known finding, 1 n/a"),
            "{page}"
        );
        // A warning has a cell of its own class, linked to its details like a failure.
        let warning =
            "<td class=\"warning\"><a href=\"#f1-smtp-commands-feature-30\">warning</a></td>";
        assert!(page.contains(warning), "{page}");
        assert!(page.contains("<section class=\"failure\" id=\"f1-smtp-commands-feature-30\">"));
        assert!(page.contains("S: 502 &lt;no&gt;"));
        assert!(page.contains("<span class=\"sev sev-should\">SHOULD</span>"));
        assert!(page.contains("<span class=\"sev sev-quality\">quality</span>"));
        assert!(
            page.contains(
                "<div class=\"measured\">measured: new mail reported during IDLE 61250.5 ms</div>"
            ),
            "{page}"
        );
    }

    #[test]
    fn markdown_has_summary_tables_and_failure_sections() {
        let reports = two_runs();
        let text = Matrix::new(&reports).markdown();
        assert!(
            text.contains("| area | reference | postfix & dovecot |"),
            "{text}"
        );
        assert!(
            text.contains("| SMTP | 2 passed | 0 passed, 1 failed, 1 warning, 1 known finding |"),
            "{text}"
        );
        assert!(
            text.contains("**[failed](#f1-smtp-data-feature-9)**"),
            "{text}"
        );
        assert!(text.contains("<a id=\"f1-smtp-data-feature-9\"></a>"));
        assert!(text.contains("not applicable: no pop3 port"));
        assert!(text.contains("<br>_refused at RCPT, not at MAIL_"));
        assert!(text.contains("dot &lt;stuffing&gt;"));
        assert!(
            text.contains("**[warning](#f1-smtp-commands-feature-30)**"),
            "{text}"
        );
        assert!(text.contains("### warning: postfix &amp; dovecot / unknown &lt;command&gt;"));
        assert!(text.contains("<br>measured: new mail reported during IDLE 3 ms"));
        assert!(text.contains("Quality figures (measured and reported, never a failure)"));
    }

    #[test]
    fn differences_list_only_rows_that_did_not_pass_everywhere() {
        let reports = two_runs();
        let text = Matrix::new(&reports).markdown_differences();
        assert!(
            text.contains(
                "| SMTP | dot &lt;stuffing&gt; <sub>smtp/data.feature:9 MUST</sub> | passed | failed: expected 554, got 250 |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| SMTP | bare LF <sub>smtp/data.feature:20 MUST</sub> | not run | known finding [1] |"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n1. known finding: Postfix 3.7 accepts &lt;LF&gt;.&lt;LF&gt;\n"),
            "{text}"
        );
        assert!(
            text.contains("passed<br>_refused at RCPT, not at MAIL_"),
            "{text}"
        );
        assert!(
            text.contains(
                "| SMTP | unknown &lt;command&gt; <sub>smtp/commands.feature:30 SHOULD</sub> | passed | warning: expected 500, got 502 |"
            ),
            "{text}"
        );
        // The measured IDLE scenario passed in both runs: not a difference.
        assert!(!text.contains("IDLE"), "{text}");
        assert_eq!(text.lines().count(), 2 + 5 + 2, "{text}");
        let clean = vec![Report::new(
            "t".into(),
            vec![record("smtp/a.feature", "a", 1, Outcome::Passed)],
        )];
        assert!(
            Matrix::new(&clean)
                .markdown_differences()
                .contains("every scenario passed")
        );
    }

    #[test]
    fn measurements_get_a_table_with_a_column_per_run() {
        let reports = two_runs();
        let text = Matrix::new(&reports).markdown_measurements();
        assert!(
            text.contains(
                "| IDLE hears new mail <sub>imap/sync.feature:40</sub> | new mail reported during IDLE | 3 ms | 61250.5 ms |"
            ),
            "{text}"
        );
        let none = vec![Report::new(
            "t".into(),
            vec![record("smtp/a.feature", "a", 1, Outcome::Passed)],
        )];
        assert_eq!(Matrix::new(&none).markdown_measurements(), "");
    }

    #[test]
    fn same_target_twice_gets_distinct_columns_and_format_follows_extension() {
        let reports = vec![
            Report::new("t".into(), Vec::new()),
            Report::new("t".into(), Vec::new()),
        ];
        assert_eq!(Matrix::new(&reports).columns, ["t", "t (2)"]);
        assert_eq!(
            Format::from_path(Path::new("a.HTML")).unwrap(),
            Format::Html
        );
        assert_eq!(
            Format::from_path(Path::new("a.md")).unwrap(),
            Format::Markdown
        );
        let error = Format::from_path(Path::new("report.txt")).unwrap_err();
        assert!(error.to_string().contains("report.txt"), "{error}");
    }

    #[test]
    fn json_round_trips_through_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let reports = two_runs();
        reports[1].write_json(&path).unwrap();
        let back = read_json(&path).unwrap();
        assert_eq!(back.target, "postfix & dovecot");
        assert_eq!(back.scenarios, reports[1].scenarios);
        std::fs::write(&path, "{\"not\": 1}").unwrap();
        let error = read_json(&path).unwrap_err();
        assert!(format!("{error:#}").contains("r.json"), "{error:#}");
    }
}

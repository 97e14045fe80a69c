//! `harness conform --report` and `harness report matrix` from the command line, against the
//! embedded reference server with and without a fault, and what a failed SHOULD check (a
//! warning) does to the output and the exit status.

use std::path::Path;
use std::process::{Command, Output};

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the scenarios that cover `open_relay`, with the fault switched on or not.
fn conform(dir: &Path, name: &str, fault: bool) -> Output {
    let mut command = harness();
    command.args(["conform", "--tags", "@fault-open_relay"]);
    if fault {
        command.args(["--fault", "open_relay"]);
    }
    for ext in ["json", "html", "md", "xml"] {
        let flag = match ext {
            "json" => "--json",
            "xml" => "--junit",
            _ => "--report",
        };
        command.arg(flag).arg(dir.join(format!("{name}.{ext}")));
    }
    command.output().expect("run harness")
}

#[test]
fn one_run_writes_html_and_markdown_matrices_and_runs_combine() {
    let dir = tempfile::tempdir().unwrap();
    let good = conform(dir.path(), "good", false);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let bad = conform(dir.path(), "bad", true);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));

    let page = std::fs::read_to_string(dir.path().join("bad.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(
        page.contains("embedded reference-server (faults: open_relay)"),
        "the column names the fault"
    );
    // A failed cell links to the failure, which carries the transcript.
    let link = page
        .split("<a href=\"#")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|anchor| !anchor.starts_with("area-"))
        .expect("a link from a failed cell");
    let section = format!("<section class=\"failure\" id=\"{link}\">");
    let failure = page
        .split(&section)
        .nth(1)
        .unwrap_or_else(|| panic!("no {section} in the page"));
    assert!(
        failure.contains("<summary>transcript</summary>"),
        "{failure}"
    );
    assert!(failure.contains("C: RCPT TO:"), "{failure}");
    let markdown = std::fs::read_to_string(dir.path().join("bad.md")).unwrap();
    assert!(markdown.contains("**[failed](#"), "{markdown}");
    assert!(markdown.contains("## Failures"), "{markdown}");

    // Two runs side by side: one column each, the clean run passes where the other fails.
    let combined = dir.path().join("both.html");
    let output = harness()
        .args(["report", "matrix"])
        .arg(dir.path().join("good.json"))
        .arg(dir.path().join("bad.json"))
        .arg("--out")
        .arg(&combined)
        .arg("--summary")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains(
            "| area | embedded reference-server | embedded reference-server (faults: open_relay) |"
        ),
        "{summary}"
    );
    let good_counts = |s: &str| s.contains("passed") && !s.contains("failed");
    let total = summary
        .lines()
        .find(|l| l.starts_with("| **all** |"))
        .expect("a total row");
    let cells: Vec<&str> = total.split('|').map(str::trim).collect();
    assert!(good_counts(cells[2]), "{total}");
    assert!(cells[3].contains("failed"), "{total}");
    let page = std::fs::read_to_string(&combined).unwrap();
    assert!(
        page.contains("<td class=\"passed\">passed</td><td class=\"failed\">"),
        "{page}"
    );

    // The JUnit file of the failing run counts its failures.
    let junit = std::fs::read_to_string(dir.path().join("bad.xml")).unwrap();
    assert!(junit.contains("<failure message="), "{junit}");
}

#[test]
fn a_should_check_that_fails_warns_and_exits_zero() {
    // unknown_command_502 breaks only "An unrecognized command gets 500", a SHOULD of RFC 5321
    // section 4.2.4: the run reports a warning, apart from failures, and still exits 0.
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, page) = (
        dir.path().join("w.json"),
        dir.path().join("w.xml"),
        dir.path().join("w.html"),
    );
    let output = harness()
        .args([
            "conform",
            "--tags",
            "@fault-unknown_command_502",
            "--fault",
            "unknown_command_502",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--report")
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("WARNING [SHOULD] Each SMTP command and its error replies :: An unrecognized command gets 500"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout.contains("Total: 0 passed, 0 failed, 1 warning, 0 skipped, 0 not applicable"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["counts"]["warnings"], 1);
    assert_eq!(report["counts"]["failed"], 0);
    assert_eq!(report["scenarios"][0]["status"], "warning");
    assert_eq!(report["scenarios"][0]["severity"], "should");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(
        xml.contains("<property name=\"warning\" value=\"expected reply code 500"),
        "{xml}"
    );
    assert!(xml.contains("<system-out>WARNING (a SHOULD check"), "{xml}");

    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<td class=\"warning\"><a href=\"#"), "{html}");
    assert!(html.contains("1 warning"), "{html}");
}

#[test]
fn bad_report_names_and_inputs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // An unknown extension is refused before anything runs.
    let output = harness()
        .args(["conform", "--report"])
        .arg(dir.path().join("report.txt"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("report.txt"), "{}", text(&output));
    assert!(
        !text(&output).contains("Total:"),
        "nothing ran: {}",
        text(&output)
    );

    // A file that is not a conform report is named.
    let other = dir.path().join("load.json");
    std::fs::write(&other, "{\"workload\": \"relay\"}").unwrap();
    let output = harness()
        .args(["report", "matrix"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("load.json is not a report written by `harness conform --json`"),
        "{}",
        text(&output)
    );
    let missing = dir.path().join("missing.json");
    let output = harness()
        .args(["report", "matrix"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("missing.json"), "{}", text(&output));
}

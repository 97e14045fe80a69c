//! The real `fake-dns` binary on an ephemeral port, queried with `dig`: start-up line, demo
//! zone, reload on SIGHUP, and a bad file on reload keeping the old zones.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const ZONES: &str = "zones:\n  example.test:\n    records:\n      \"@\": { MX: [\"10 mail\"] }\n      mail: { A: [127.0.0.1] }\n";

/// The running binary, killed when the test ends however it ends.
struct Server {
    child: Child,
    port: u16,
    stderr: Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(zones: Option<&Path>) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fake-dns"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(zones) = zones {
            command.arg("--zones").arg(zones);
        }
        let mut child = command.spawn().expect("the binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let address = line
            .strip_prefix("fake-dns: listening on ")
            .and_then(|rest| rest.trim_end().strip_suffix(" (udp+tcp)"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let port = address
            .parse::<std::net::SocketAddr>()
            .expect("an address")
            .port();
        assert_ne!(port, 0);
        let (sender, stderr) = channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            port,
            stderr,
        }
    }

    fn dig(&self, args: &[&str]) -> String {
        let output = Command::new("dig")
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string(), "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("dig runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for a log line containing `needle` and returns it.
    fn log_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        panic!("no log line containing {needle:?} within 10 s");
    }
}

fn have_dig() -> bool {
    let found = Command::new("dig")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("skipped: `dig` is not installed (apt-get install dnsutils)");
    }
    found
}

#[test]
fn reload_on_sighup_and_keep_old_zones_on_a_bad_file() {
    if !have_dig() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zones.yaml");
    std::fs::write(&path, ZONES).unwrap();
    let server = Server::start(Some(&path));

    assert_eq!(
        server.dig(&["+short", "mail.example.test", "A"]).trim(),
        "127.0.0.1"
    );
    assert_eq!(
        server.dig(&["+short", "+tcp", "example.test", "MX"]).trim(),
        "10 mail.example.test."
    );
    let nx = server.dig(&["missing.example.test", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains(" aa"), "authoritative: {nx}");
    let refused = server.dig(&["example.org", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");

    std::fs::write(&path, ZONES.replace("127.0.0.1", "127.0.0.9")).unwrap();
    server.hangup();
    server.log_line("reloaded zones");
    assert_eq!(
        server.dig(&["+short", "mail.example.test", "A"]).trim(),
        "127.0.0.9"
    );

    std::fs::write(&path, ZONES.replace("127.0.0.1", "127.0.0.999")).unwrap();
    server.hangup();
    let error = server.log_line("reload failed");
    assert!(error.contains("zones.yaml"), "{error}");
    assert!(error.contains("line 5"), "{error}");
    assert!(error.contains("127.0.0.999"), "{error}");
    assert_eq!(
        server.dig(&["+short", "mail.example.test", "A"]).trim(),
        "127.0.0.9",
        "the old zones stay after a bad reload"
    );
}

#[test]
fn demo_zone_without_a_file() {
    if !have_dig() {
        return;
    }
    let server = Server::start(None);
    assert_eq!(
        server.dig(&["+short", "example.test", "MX"]).trim(),
        "10 mail.example.test."
    );
    assert_eq!(
        server.dig(&["+short", "mail.example.test", "A"]).trim(),
        "127.0.0.1"
    );
    let nodata = server.dig(&["mail.example.test", "AAAA"]);
    assert!(nodata.contains("status: NOERROR"), "{nodata}");
    assert!(nodata.contains("ANSWER: 0"), "{nodata}");
    assert!(nodata.contains("AUTHORITY: 1"), "{nodata}");
}

#[test]
fn bad_file_at_start_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, ZONES.replace("MX:", "MXX:")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fake-dns"))
        .args(["--listen", "127.0.0.1:0", "--zones"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("MXX"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(output.stdout.is_empty(), "no listening line on failure");
}

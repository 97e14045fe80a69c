//! Black-box tests of the `reference-server` binary: started on ephemeral ports, addresses read
//! from its output, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reference_server::store::{INBOX, Store};

const CONFIG: &str = "\
domains: [example.test]
accounts:
  - { address: alice@example.test, password: alice-secret }
listeners:
  - { role: smtp, address: \"127.0.0.1:0\" }
  - { role: submission, address: \"127.0.0.1:0\" }
";

/// The running binary; killed on drop if a test fails half-way.
struct Server {
    child: Child,
    smtp: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Server {
    let config = dir.join("server.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reference-server"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start reference-server");
    let stdout = child.stdout.take().unwrap();
    let mut smtp = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening smtp ") {
            smtp = Some(addr.split(' ').next().unwrap().parse().unwrap());
        }
        if line == "ready" {
            break;
        }
    }
    Server {
        child,
        smtp: smtp.expect("no `listening smtp` line"),
    }
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(client.reply().starts_with("220 "));
        client
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn send(&mut self, text: &str) -> String {
        self.writer.write_all(text.as_bytes()).unwrap();
        self.reply()
    }
}

fn terminate(server: &mut Server) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_lets_a_message_in_flight_finish_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());

    let mut idle = Client::connect(server.smtp);
    assert!(idle.send("EHLO idle.test\r\n").starts_with("250"));

    let mut busy = Client::connect(server.smtp);
    busy.send("EHLO busy.test\r\n");
    assert!(busy.send("MAIL FROM:<a@b.test>\r\n").starts_with("250"));
    assert!(
        busy.send("RCPT TO:<alice@example.test>\r\n")
            .starts_with("250")
    );
    assert!(busy.send("DATA\r\n").starts_with("354"));
    busy.writer
        .write_all(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .unwrap();

    terminate(&mut server);
    // The idle session is told, the one inside DATA is allowed to finish.
    assert!(
        idle.reply().starts_with("421 4.3.2"),
        "idle session not told of shutdown"
    );
    let done = busy.send("second half\r\n.\r\n");
    assert!(
        done.starts_with("250 2.0.0"),
        "message in flight refused: {done}"
    );
    assert!(busy.reply().starts_with("421 4.3.2"));
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");

    let store = Store::open(&dir.path().join("data")).unwrap();
    let messages = store.messages("alice@example.test", INBOX).unwrap();
    assert_eq!(messages.len(), 1);
    let stored = store
        .read_message("alice@example.test", INBOX, messages[0].uid)
        .unwrap();
    assert!(stored.ends_with(b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"));

    // A restart on the same data dir serves the same store and certificate.
    let cert = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
    let mut again = start(dir.path());
    let mut client = Client::connect(again.smtp);
    assert!(client.send("QUIT\r\n").starts_with("221"));
    assert_eq!(
        std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap(),
        cert
    );
    terminate(&mut again);
    assert!(again.child.wait().unwrap().success());
}

#[test]
fn a_typo_in_the_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.yaml");
    std::fs::write(&config, CONFIG.replace("listeners:", "listners:")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reference-server"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("typo.yaml"), "{stderr}");
    assert!(stderr.contains("listners"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

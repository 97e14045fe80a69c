//! The IMAP listener over real sockets: greeting and capabilities per port policy, LOGIN and
//! AUTHENTICATE, literals, STARTTLS, mailboxes and messages, and several sessions on one
//! mailbox seeing each other's changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reference_server::config::{Listener, TlsMode};
use reference_server::{Config, Role, RunningServer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A line client over any stream.
struct Client<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line))
            .await
            .expect("a reply within 10 s")
            .unwrap();
        line
    }

    async fn send(&mut self, bytes: &str) {
        self.stream
            .get_mut()
            .write_all(bytes.as_bytes())
            .await
            .unwrap();
    }

    /// Sends a tagged command and returns every line up to and including the tagged reply.
    async fn command(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}\r\n")).await;
        self.until_tagged(tag).await
    }

    async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            assert!(!line.is_empty(), "connection closed; got {lines:?}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    Client {
        stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
    }
}

/// The defaults plus IMAP listeners: STARTTLS, implicit TLS, and one without TLS.
async fn server(dir: &std::path::Path) -> RunningServer {
    server_with(dir, |_| {}).await
}

/// [`server`] with changes to its configuration.
async fn server_with(dir: &std::path::Path, configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::ephemeral(dir.to_owned());
    for (role, tls) in [
        (Role::Imap, None),
        (Role::Imaps, None),
        (Role::Imap, Some(TlsMode::None)),
    ] {
        config.listeners.push(Listener {
            role,
            address: "127.0.0.1:0".parse().unwrap(),
            tls,
        });
    }
    config.limits.auth_failure_delay_ms = 10;
    configure(&mut config);
    reference_server::start(config).await.unwrap()
}

fn listener(server: &RunningServer, role: Role, tls: TlsMode) -> SocketAddr {
    server
        .listeners()
        .iter()
        .find(|l| l.role == role && l.tls == tls)
        .unwrap()
        .addr
}

fn tls_connector(server: &RunningServer) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn port_143_disables_login_until_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::Starttls)).await;
    let greeting = client.line().await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );
    assert!(greeting.contains(" STARTTLS") && greeting.contains(" LOGINDISABLED"));
    assert!(!greeting.contains("AUTH="), "{greeting}");
    let login = client
        .command("a1", "LOGIN alice@example.test alice-secret")
        .await;
    assert!(login[0].starts_with("a1 NO [PRIVACYREQUIRED]"), "{login:?}");
    let auth = client.command("a2", "AUTHENTICATE PLAIN").await;
    assert!(auth[0].starts_with("a2 NO [PRIVACYREQUIRED]"), "{auth:?}");

    // Bytes sent with STARTTLS, before the handshake, are never executed.
    client
        .send("a3 STARTTLS\r\na4 LOGIN alice@example.test alice-secret\r\n")
        .await;
    let started = client.until_tagged("a3").await;
    assert!(started[0].starts_with("a3 OK"), "{started:?}");
    let tcp = client.stream.into_inner();
    let tls = tls_connector(&server)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tls),
    };
    let caps = client.command("b1", "CAPABILITY").await;
    assert_eq!(
        caps.len(),
        2,
        "the injected LOGIN must not have been answered: {caps:?}"
    );
    assert!(
        caps[0].contains("AUTH=PLAIN") && !caps[0].contains("STARTTLS"),
        "{caps:?}"
    );
    assert!(!caps[0].contains("LOGINDISABLED"), "{caps:?}");
    let login = client
        .command("b2", "LOGIN alice@example.test alice-secret")
        .await;
    assert!(login[0].starts_with("b2 OK"), "{login:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn port_993_is_tls_from_the_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let tcp = TcpStream::connect(listener(&server, Role::Imaps, TlsMode::Implicit))
        .await
        .unwrap();
    let tls = tls_connector(&server)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut client = Client {
        stream: BufReader::new(tls),
    };
    let greeting = client.line().await;
    assert!(
        greeting.contains("AUTH=PLAIN") && !greeting.contains("STARTTLS"),
        "{greeting}"
    );
    // SASL-IR: credentials with the command.
    let auth = client
        .command(
            "a1",
            "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=",
        )
        .await;
    assert!(auth[0].starts_with("a1 OK [CAPABILITY"), "{auth:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn logins_literals_and_refusals_on_a_plain_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::None)).await;
    client.line().await;

    let wrong = client.command("a1", "LOGIN alice@example.test wrong").await;
    assert!(
        wrong[0].starts_with("a1 NO [AUTHENTICATIONFAILED]"),
        "{wrong:?}"
    );
    // AUTHENTICATE with a continuation, cancelled, then with bad base64.
    client.send("a2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(client.line().await, "+ \r\n");
    client.send("*\r\n").await;
    assert!(client.line().await.starts_with("a2 BAD"));
    client.send("a3 AUTHENTICATE PLAIN\r\n").await;
    client.line().await;
    client.send("!!!\r\n").await;
    assert!(client.line().await.starts_with("a3 BAD"));
    // A synchronising literal for the password.
    client.send("a4 LOGIN alice@example.test {12}\r\n").await;
    assert!(client.line().await.starts_with("+ "));
    client.send("alice-secret\r\n").await;
    let login = client.until_tagged("a4").await;
    assert!(login[0].starts_with("a4 OK"), "{login:?}");

    let unknown = client.command("a5", "XYZZY").await;
    assert!(unknown[0].starts_with("a5 BAD"), "{unknown:?}");
    let missing = client.command("a6", "SELECT Nope").await;
    assert!(missing[0].starts_with("a6 NO [NONEXISTENT]"), "{missing:?}");
    let namespace = client.command("a7", "NAMESPACE").await;
    assert_eq!(namespace[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    let logout = client.command("a8", "LOGOUT").await;
    assert!(
        logout[0].starts_with("* BYE") && logout[1].starts_with("a8 OK"),
        "{logout:?}"
    );
    assert_eq!(client.line().await, "", "closed after LOGOUT");
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_literal_is_refused_without_losing_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = connect(listener(&server, Role::Imap, TlsMode::None)).await;
    client.line().await;
    let size = 26 * 1024 * 1024;
    client
        .send(&format!("a1 APPEND INBOX {{{size}}}\r\n"))
        .await;
    let refused = client.line().await;
    assert!(refused.starts_with("a1 NO [TOOBIG]"), "{refused}");
    let noop = client.command("a2", "NOOP").await;
    assert!(noop[0].starts_with("a2 OK"), "{noop:?}");
    server.shutdown().await;
}

/// A logged-in client on the listener without TLS.
async fn logged_in(server: &RunningServer, user: &str, password: &str) -> Client<TcpStream> {
    let mut client = connect(listener(server, Role::Imap, TlsMode::None)).await;
    client.line().await;
    let login = client
        .command("l", &format!("LOGIN {user} {password}"))
        .await;
    assert!(login.last().unwrap().starts_with("l OK"), "{login:?}");
    client
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l.trim_end() == wanted)
}

#[tokio::test]
async fn mailboxes_append_and_fetch_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut c = logged_in(&server, "alice@example.test", "alice-secret").await;

    let list = c.command("a1", "LIST \"\" *").await;
    assert!(
        has(&list, "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\""),
        "{list:?}"
    );
    assert!(
        has(&list, "* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
        "{list:?}"
    );
    let created = c.command("a2", "CREATE Work/2026/Q4").await;
    assert!(created[0].starts_with("a2 OK"), "{created:?}");
    let again = c.command("a3", "CREATE Work").await;
    assert!(again[0].starts_with("a3 NO [ALREADYEXISTS]"), "{again:?}");
    let top = c.command("a4", "LIST \"\" %").await;
    assert!(
        has(&top, "* LIST (\\HasChildren) \"/\" \"Work\""),
        "{top:?}"
    );
    assert!(!top.iter().any(|l| l.contains("Work/2026")), "{top:?}");
    let delete = c.command("a5", "DELETE Work").await;
    assert!(delete[0].starts_with("a5 NO"), "{delete:?}");
    let renamed = c.command("a6", "RENAME Work/2026 Archive").await;
    assert!(renamed[0].starts_with("a6 OK"), "{renamed:?}");
    let below = c.command("a7", "LIST Archive/ *").await;
    assert!(
        has(&below, "* LIST (\\HasNoChildren) \"/\" \"Archive/Q4\""),
        "{below:?}"
    );

    let message = "From: bob@example.test\r\nSubject: caf\u{e9}\r\n\r\n.dot line\r\nbody\r\n";
    c.send(&format!(
        "a8 APPEND Archive/Q4 (\\Flagged) {{{}}}\r\n",
        message.len()
    ))
    .await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&format!("{message}\r\n")).await;
    let appended = c.until_tagged("a8").await;
    assert!(appended[0].starts_with("a8 OK [APPENDUID "), "{appended:?}");
    let uid: Vec<&str> = appended[0].split([' ', ']']).collect();
    assert_eq!(uid[4], "1", "{appended:?}");
    let missing = c.command("a9", "APPEND Nope {1+}\r\nx").await;
    assert!(missing[0].starts_with("a9 NO [TRYCREATE]"), "{missing:?}");

    let status = c
        .command("b1", "STATUS Archive/Q4 (MESSAGES UNSEEN UIDNEXT RECENT)")
        .await;
    assert_eq!(
        status[0].trim_end(),
        "* STATUS \"Archive/Q4\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2 RECENT 1)"
    );
    let select = c.command("b2", "SELECT Archive/Q4").await;
    assert!(
        has(&select, "* 1 EXISTS") && has(&select, "* 1 RECENT"),
        "{select:?}"
    );
    assert!(
        has(&select, "* OK [UNSEEN 1] First unseen message"),
        "{select:?}"
    );
    assert!(
        select.last().unwrap().starts_with("b2 OK [READ-WRITE]"),
        "{select:?}"
    );
    let peek = c
        .command("b3", "FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[])")
        .await;
    let head = format!(
        "* 1 FETCH (FLAGS (\\Flagged \\Recent) RFC822.SIZE {} BODY[] {{{}}}\r\n",
        message.len(),
        message.len()
    );
    assert_eq!(peek[0], head, "{peek:?}");
    let body: String = peek[1..peek.len() - 2].concat();
    assert_eq!(body, message, "the octets come back as they were appended");
    assert_eq!(peek[peek.len() - 2], ")\r\n");
    // A fetch without PEEK sets \Seen and says so.
    let read = c.command("b4", "UID FETCH 1 (BODY[HEADER])").await;
    assert!(
        read.iter()
            .any(|l| l.contains("FLAGS (\\Flagged \\Seen \\Recent)")),
        "{read:?}"
    );
    let flags = c.command("b5", "STORE 1 -FLAGS (\\Flagged)").await;
    assert_eq!(flags[0].trim_end(), "* 1 FETCH (FLAGS (\\Seen \\Recent))");
    let silent = c.command("b6", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(silent[0].starts_with("b6 OK"), "{silent:?}");
    let bad = c.command("b7", "FETCH 2 FLAGS").await;
    assert!(bad[0].starts_with("b7 BAD"), "{bad:?}");
    let copied = c.command("b8", "COPY 1 INBOX").await;
    assert!(copied[0].starts_with("b8 OK [COPYUID "), "{copied:?}");
    let expunged = c.command("b9", "EXPUNGE").await;
    assert_eq!(expunged[0], "* 1 EXPUNGE\r\n", "{expunged:?}");
    let closed = c.command("c1", "CLOSE").await;
    assert!(closed[0].starts_with("c1 OK"), "{closed:?}");
    let nothing = c.command("c2", "FETCH 1 FLAGS").await;
    assert!(nothing[0].starts_with("c2 BAD"), "{nothing:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn two_sessions_see_each_others_changes_and_idle_hears_new_mail() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut a = logged_in(&server, "alice@example.test", "alice-secret").await;
    let mut b = logged_in(&server, "alice@example.test", "alice-secret").await;
    for (tag, message) in [
        ("p1", "Subject: one\r\n\r\n1\r\n"),
        ("p2", "Subject: two\r\n\r\n2\r\n"),
    ] {
        let done = a
            .command(
                tag,
                &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
            )
            .await;
        assert!(done[0].starts_with(&format!("{tag} OK")), "{done:?}");
    }
    let sa = a.command("a1", "SELECT INBOX").await;
    assert!(has(&sa, "* 2 RECENT"), "{sa:?}");
    let sb = b.command("b1", "SELECT INBOX").await;
    assert!(
        has(&sb, "* 2 EXISTS") && has(&sb, "* 0 RECENT"),
        "\\Recent goes to one session: {sb:?}"
    );

    // A flag change in one session is an untagged FETCH in the other.
    a.command("a2", "STORE 2 +FLAGS (\\Deleted)").await;
    let noop = b.command("b2", "NOOP").await;
    assert!(
        has(&noop, "* 2 FETCH (UID 2 FLAGS (\\Deleted))"),
        "{noop:?}"
    );
    // An expunge waits while a FETCH by number runs, and comes with the next NOOP; until then
    // the session can still read the message (RFC 2180 4.1.1).
    a.command("a3", "EXPUNGE").await;
    let fetch = b.command("b3", "FETCH 1:* (UID BODY.PEEK[TEXT])").await;
    assert!(
        !fetch.iter().any(|l| l.ends_with(" EXPUNGE\r\n")),
        "{fetch:?}"
    );
    assert!(
        has(&fetch, "* 2 FETCH (UID 2 BODY[TEXT] {3}"),
        "the expunged message is still readable: {fetch:?}"
    );
    assert!(fetch.last().unwrap().starts_with("b3 OK"), "{fetch:?}");
    // A STORE to it is harmless.
    let store = b.command("b3s", "STORE 2 +FLAGS (\\Seen)").await;
    assert!(store.last().unwrap().starts_with("b3s OK"), "{store:?}");
    // A COPY takes it along rather than silently leaving it out (RFC 2180 4.4).
    let copy = b.command("b3c", "COPY 1:2 Trash").await;
    assert!(
        copy.last().unwrap().starts_with("b3c OK [COPYUID "),
        "{copy:?}"
    );
    let status = b.command("b3t", "STATUS Trash (MESSAGES)").await;
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("* STATUS ") && l.contains("(MESSAGES 2)")),
        "{status:?}"
    );
    // The expunge is reported at the first command that allows it (here COPY or STATUS).
    let noop = b.command("b4", "NOOP").await;
    let told = [copy, status, noop].concat();
    assert!(has(&told, "* 2 EXPUNGE"), "{told:?}");

    // IDLE hears a message another session appends, and its flags changing.
    b.send("b5 IDLE\r\n").await;
    assert!(b.line().await.starts_with("+ "));
    let message = "Subject: three\r\n\r\n3\r\n";
    a.command(
        "a4",
        &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
    )
    .await;
    assert_eq!(b.line().await, "* 2 EXISTS\r\n");
    // Whichever session hears of it first gets \Recent.
    let recent = b.line().await;
    assert!(
        recent == "* 0 RECENT\r\n" || recent == "* 1 RECENT\r\n",
        "{recent}"
    );
    a.command("a5", "NOOP").await;
    a.command("a6", "STORE 1 +FLAGS (\\Answered)").await;
    assert_eq!(b.line().await, "* 1 FETCH (UID 1 FLAGS (\\Answered))\r\n");
    b.send("DONE\r\n").await;
    assert!(b.line().await.starts_with("b5 OK"));

    // MOVE: the mover sees EXPUNGE, the other session too.
    let moved = a.command("a7", "UID MOVE 1 Trash").await;
    assert!(moved[0].starts_with("* OK [COPYUID "), "{moved:?}");
    assert!(has(&moved, "* 1 EXPUNGE"), "{moved:?}");
    let noop = b.command("b6", "NOOP").await;
    assert!(has(&noop, "* 1 EXPUNGE"), "{noop:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn condstore_subscriptions_and_the_smaller_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut c = logged_in(&server, "bob@example.test", "bob-secret").await;
    for n in 1..=3 {
        let message = format!("Subject: m{n}\r\n\r\nbody {n}\r\n");
        let done = c
            .command(
                "p",
                &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
            )
            .await;
        assert!(done[0].starts_with("p OK"), "{done:?}");
    }
    let enable = c.command("a1", "ENABLE CONDSTORE").await;
    assert_eq!(enable[0], "* ENABLED CONDSTORE\r\n");
    let select = c.command("a2", "SELECT INBOX").await;
    let highest: u64 = select
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok())
        .expect("HIGHESTMODSEQ at SELECT");
    let store = c.command("a3", "STORE 2 +FLAGS (\\Seen)").await;
    assert!(store[0].contains("MODSEQ ("), "{store:?}");
    let since = c
        .command("a4", &format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})"))
        .await;
    assert_eq!(since.len(), 2, "only message 2 changed: {since:?}");
    assert!(since[0].starts_with("* 2 FETCH"), "{since:?}");
    let conditional = c
        .command(
            "a5",
            &format!("UID STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)"),
        )
        .await;
    assert!(
        conditional
            .last()
            .unwrap()
            .starts_with("a5 OK [MODIFIED 2]"),
        "{conditional:?}"
    );
    let search = c
        .command("a6", &format!("SEARCH MODSEQ {}", highest + 1))
        .await;
    assert!(
        search[0].starts_with("* SEARCH 1 2 3 (MODSEQ "),
        "{search:?}"
    );
    let status = c
        .command("a7", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
        .await;
    assert!(
        status[0].starts_with("* STATUS \"INBOX\" (HIGHESTMODSEQ "),
        "{status:?}"
    );

    let uid_expunge = c
        .command("b1", "UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        .await;
    assert!(
        uid_expunge.last().unwrap().starts_with("b1 OK"),
        "{uid_expunge:?}"
    );
    let only_three = c.command("b2", "UID EXPUNGE 3").await;
    assert_eq!(only_three[0], "* 3 EXPUNGE\r\n", "{only_three:?}");
    assert_eq!(only_three.len(), 2, "message 1 stays: {only_three:?}");
    let unselect = c.command("b3", "UNSELECT").await;
    assert!(unselect[0].starts_with("b3 OK"), "{unselect:?}");
    let examine = c.command("b4", "EXAMINE INBOX").await;
    assert!(
        has(&examine, "* 2 EXISTS"),
        "UNSELECT expunged nothing: {examine:?}"
    );
    assert!(
        examine.last().unwrap().starts_with("b4 OK [READ-ONLY]"),
        "{examine:?}"
    );
    let refused = c.command("b5", "EXPUNGE").await;
    assert!(refused[0].starts_with("b5 NO"), "{refused:?}");

    c.command("c1", "CREATE Lists/Rust").await;
    let sub = c.command("c2", "SUBSCRIBE Lists/Rust").await;
    assert!(sub[0].starts_with("c2 OK"), "{sub:?}");
    let lsub = c.command("c3", "LSUB \"\" Lists/%").await;
    assert!(has(&lsub, "* LSUB () \"/\" \"Lists/Rust\""), "{lsub:?}");
    let parents = c.command("c4", "LSUB \"\" %").await;
    assert!(
        has(&parents, "* LSUB (\\Noselect) \"/\" \"Lists\""),
        "{parents:?}"
    );
    assert!(has(&parents, "* LSUB () \"/\" \"Sent\""), "{parents:?}");
    let unsub = c.command("c5", "UNSUBSCRIBE Lists/Rust").await;
    assert!(unsub[0].starts_with("c5 OK"), "{unsub:?}");
    let id = c.command("c6", "ID NIL").await;
    assert!(id[0].starts_with("* ID ("), "{id:?}");
    let search_charset = c.command("c7", "SEARCH CHARSET KOI8-R ALL").await;
    assert!(
        search_charset[0].starts_with("c7 NO [BADCHARSET"),
        "{search_charset:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn deleting_a_selected_mailbox_and_many_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut a = logged_in(&server, "alice@example.test", "alice-secret").await;
    let mut b = logged_in(&server, "alice@example.test", "alice-secret").await;
    a.command("a1", "CREATE Mine").await;
    a.command("a2", "SELECT Mine").await;
    let own = a.command("a3", "DELETE Mine").await;
    assert_eq!(
        own,
        ["a3 OK DELETE completed\r\n"],
        "no BYE for its own DELETE"
    );
    let unselected = a.command("a4", "FETCH 1 FLAGS").await;
    assert!(unselected[0].starts_with("a4 BAD"), "{unselected:?}");

    // Another session deletes the mailbox this one has selected: BYE, after the tagged reply.
    a.command("a5", "CREATE Shared").await;
    b.command("b1", "SELECT Shared").await;
    a.command("a6", "DELETE Shared").await;
    b.send("b2 NOOP\r\n").await;
    let first = b.line().await;
    assert!(first.starts_with("* BYE"), "{first}");
    assert_eq!(b.line().await, "b2 OK NOOP completed\r\n");
    assert_eq!(b.line().await, "", "the connection closes");

    // INBOX is case-insensitive as a parent too.
    a.command("a7", "CREATE inbox/Sub").await;
    let list = a.command("a8", "LIST \"\" INBOX/*").await;
    assert!(
        has(&list, "* LIST (\\HasNoChildren) \"/\" \"INBOX/Sub\""),
        "{list:?}"
    );

    // NO is an ordinary answer: many of them do not end the session.
    for n in 0..20 {
        let missing = a.command(&format!("n{n}"), "SELECT Nope").await;
        assert!(missing[0].starts_with(&format!("n{n} NO")), "{missing:?}");
    }
    let still = a.command("a9", "NOOP").await;
    assert!(still[0].starts_with("a9 OK"), "{still:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_fetch_comes_whole_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut c = logged_in(&server, "alice@example.test", "alice-secret").await;
    let line = "x".repeat(998);
    let body = format!("Subject: big\r\n\r\n{}", format!("{line}\r\n").repeat(600));
    for n in 0..4 {
        let done = c
            .command(
                &format!("p{n}"),
                &format!("APPEND INBOX {{{}+}}\r\n{body}", body.len()),
            )
            .await;
        assert!(
            done.last().unwrap().starts_with(&format!("p{n} OK")),
            "{done:?}"
        );
    }
    c.command("a1", "SELECT INBOX").await;
    let fetch = c.command("a2", "FETCH 1:* (BODY.PEEK[])").await;
    let heads: Vec<&String> = fetch
        .iter()
        .filter(|l| l.contains(" FETCH (BODY[] {"))
        .collect();
    assert_eq!(heads.len(), 4, "every message, about 2.4 MB in all");
    for head in heads {
        assert!(head.ends_with(&format!("{{{}}}\r\n", body.len())), "{head}");
    }
    let total: usize = fetch.iter().map(String::len).sum();
    assert!(total > 4 * body.len(), "{total}");
    assert_eq!(fetch.last().unwrap(), "a2 OK FETCH completed\r\n");
    let after = c.command("a3", "NOOP").await;
    assert_eq!(after, ["a3 OK NOOP completed\r\n"]);
    server.shutdown().await;
}

#[tokio::test]
async fn examine_peeks_at_recent_and_new_keywords_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut a = logged_in(&server, "bob@example.test", "bob-secret").await;
    let mut b = logged_in(&server, "bob@example.test", "bob-secret").await;
    let message = "Subject: k\r\n\r\nk\r\n";
    a.command(
        "p",
        &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
    )
    .await;
    let examine = a.command("a1", "EXAMINE INBOX").await;
    assert!(has(&examine, "* 1 RECENT"), "{examine:?}");
    let select = b.command("b1", "SELECT INBOX").await;
    assert!(
        has(&select, "* 1 RECENT"),
        "EXAMINE took nothing away: {select:?}"
    );
    let store = b.command("b2", "STORE 1 +FLAGS ($Important)").await;
    assert!(
        store[0].starts_with("* FLAGS (") && store[0].contains("$Important"),
        "{store:?}"
    );
    assert!(
        store.iter().any(|l| l.contains("FETCH (FLAGS ($Important")),
        "{store:?}"
    );
    let noop = a.command("a2", "NOOP").await;
    assert!(
        noop.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("$Important")),
        "{noop:?}"
    );
    // A keyword another session sets is announced before a FETCH uses it, even before the
    // next NOOP (RFC 3501 7.2.6).
    b.command("b3", "STORE 1 +FLAGS ($Later)").await;
    let fetch = a.command("a2f", "FETCH 1 FLAGS").await;
    let announced = fetch
        .iter()
        .position(|l| l.starts_with("* FLAGS (") && l.contains("$Later"));
    let used = fetch.iter().position(|l| l.contains("FETCH (FLAGS ("));
    assert!(
        matches!((announced, used), (Some(a), Some(u)) if a < u),
        "{fetch:?}"
    );
    let bad_name = a.command("a3", "CREATE \"Entw\u{fc}rfe\"").await;
    assert!(
        bad_name[0].starts_with("a3 NO") || bad_name[0].starts_with("a3 BAD"),
        "{bad_name:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn commands_carrying_no_mail_are_limited_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let limit = Config::defaults().limits.max_nonmail_commands;
    let mut client = logged_in(&server, "alice@example.test", "alice-secret").await;
    for round in 0..2 {
        for n in 0..limit {
            let verb = ["NOOP", "CAPABILITY", "NAMESPACE", "ID NIL"][n as usize % 4];
            let reply = client.command(&format!("n{round}.{n}"), verb).await;
            assert!(reply.last().unwrap().contains(" OK "), "{verb}: {reply:?}");
        }
        // Reading a mailbox is mail work: the count starts again.
        if round == 0 {
            let select = client.command("s", "SELECT INBOX").await;
            assert!(select.last().unwrap().starts_with("s OK"), "{select:?}");
        }
    }
    client.send("over NOOP\r\n").await;
    let bye = client.line().await;
    assert_eq!(
        bye,
        format!(
            "* BYE Too many commands that carry no mail (limit {limit} in a row); closing connection\r\n"
        )
    );
    assert_eq!(client.line().await, "", "the server closes the connection");
}

#[tokio::test]
async fn idle_does_not_outlive_the_session_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(dir.path(), |c| c.limits.session_timeout_secs = 2).await;
    let mut client = logged_in(&server, "alice@example.test", "alice-secret").await;
    let select = client.command("s", "SELECT INBOX").await;
    assert!(select.last().unwrap().starts_with("s OK"), "{select:?}");
    client.send("i IDLE\r\n").await;
    assert!(client.line().await.starts_with("+ "));
    // Within the limit the session is all IDLE, and the limit still ends it.
    let bye = client.line().await;
    assert_eq!(
        bye,
        "* BYE Session time limit reached, closing connection\r\n"
    );
    assert_eq!(client.line().await, "", "the server closes the connection");
}

#[tokio::test]
async fn an_append_literal_with_nul_or_in_literal8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let mut client = logged_in(&server, "alice@example.test", "alice-secret").await;
    let before = client.command("s1", "STATUS INBOX (MESSAGES)").await;
    let message = "Subject: x\r\n\r\na\0b\r\n";
    let nul = client
        .command(
            "a1",
            &format!("APPEND INBOX {{{}+}}\r\n{message}", message.len()),
        )
        .await;
    // The parser refuses NUL in a literal (RFC 3501 CHAR8).
    assert!(nul.last().unwrap().starts_with("a1 BAD "), "{nul:?}");
    // A literal8 may carry NUL; without BINARY it is refused whatever it holds.
    let binary = client
        .command("a2", "APPEND INBOX ~{14+}\r\nSubject: y\r\n\r\n")
        .await;
    assert!(
        binary
            .last()
            .unwrap()
            .starts_with("a2 BAD BINARY is not offered"),
        "{binary:?}"
    );
    let after = client.command("s2", "STATUS INBOX (MESSAGES)").await;
    assert_eq!(before[0], after[0], "nothing was stored");
}

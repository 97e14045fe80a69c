//! Behaviour of the store through its public API, on a real directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;

use proptest::prelude::*;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use super::*;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// A store in a fresh directory with alice and bob; the directory lives as long as the guard.
fn store_with_accounts() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    store.ensure_account(ALICE).expect("alice");
    store.ensure_account(BOB).expect("bob");
    (dir, store)
}

/// Blob files (not directories, not temp files) under the data directory.
fn blob_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in fs::read_dir(data_dir.join(BLOB_DIR)).expect("read blobs") {
        let sub = sub.expect("entry").path();
        for file in fs::read_dir(&sub).expect("read blob subdir") {
            out.push(file.expect("entry").path());
        }
    }
    out
}

/// Hashes of the bodies kept in the database, ascending.
fn inline_bodies(store: &Store) -> Vec<String> {
    store
        .conn()
        .expect("conn")
        .prepare("SELECT hash FROM bodies ORDER BY hash")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .expect("list bodies")
}

/// Bodies stored anywhere: rows of the `bodies` table and blob files.
fn stored_bodies(data_dir: &Path, store: &Store) -> usize {
    inline_bodies(store).len() + blob_files(data_dir).len()
}

/// A body one octet too large to be kept in the database, starting with `tag`.
fn large_body(tag: &str) -> Vec<u8> {
    let mut body = tag.as_bytes().to_vec();
    body.resize(bodies::INLINE_MAX + 1, b'x');
    body
}

fn uids(store: &Store, account: &str) -> Vec<u32> {
    store
        .messages(account, INBOX)
        .expect("messages")
        .iter()
        .map(|m| m.uid)
        .collect()
}

#[test]
fn store_handle_is_send_sync_and_errors_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StoreError>();
}

#[test]
fn ensure_account_is_idempotent_and_case_insensitive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.ensure_account("Alice@Example.Test").expect("first");
    let before = store.mailbox_status(ALICE, INBOX).expect("status");
    store.ensure_account(ALICE).expect("second, other case");
    store.ensure_account("ALICE@EXAMPLE.TEST").expect("third");
    assert_eq!(store.mailbox_status(ALICE, INBOX).expect("status"), before);
    let delivered = store.deliver(&[ALICE], b"x").expect("deliver");
    assert_eq!(delivered[0].account, "Alice@Example.Test");
    let count: i64 = store
        .conn()
        .expect("conn")
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 1);
}

#[test]
fn invalid_addresses_are_refused() {
    let (_dir, store) = store_with_accounts();
    for bad in ["", "a\r\nb@example.test", "a\0@example.test"] {
        assert!(
            matches!(store.ensure_account(bad), Err(StoreError::InvalidAddress(a)) if a == bad),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn new_account_has_empty_inbox_with_initial_counters() {
    let (_dir, store) = store_with_accounts();
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(status.uidnext, 1);
    assert_eq!(status.exists, 0);
    assert_eq!(status.highest_modseq, 1);
    assert!(status.uidvalidity >= 1);
    assert!(store.messages(ALICE, INBOX).expect("messages").is_empty());
}

#[test]
fn inbox_name_is_case_insensitive_other_names_are_not() {
    let (_dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"hi").expect("deliver");
    assert_eq!(store.read_message(ALICE, "inbox", 1).expect("read"), b"hi");
    assert_eq!(
        store.mailbox_status(ALICE, "InBoX").expect("status").exists,
        1
    );
    store.create_mailbox(ALICE, "Archive").expect("create");
    assert!(matches!(
        store.mailbox_status(ALICE, "archive"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

#[test]
fn lookups_tell_missing_account_mailbox_and_message_apart() {
    let (_dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"one").expect("deliver");
    let err = store
        .messages("nobody@example.test", INBOX)
        .expect_err("no account");
    assert!(
        matches!(&err, StoreError::NoSuchAccount(a) if a == "nobody@example.test"),
        "{err}"
    );
    let err = store.messages(ALICE, "Nope").expect_err("no mailbox");
    assert!(
        matches!(&err, StoreError::NoSuchMailbox { account, mailbox } if account == ALICE && mailbox == "Nope"),
        "{err}"
    );
    let err = store.read_message(ALICE, INBOX, 2).expect_err("no message");
    assert!(
        matches!(&err, StoreError::NoSuchMessage { uid: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("UID 2"), "{err}");
}

#[test]
fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (before, status_before) = {
        let store = Store::open(dir.path()).expect("open");
        store.ensure_account(ALICE).expect("alice");
        store.deliver(&[ALICE], b"first\r\n").expect("deliver 1");
        store.deliver(&[ALICE], b"second\r\n").expect("deliver 2");
        (
            store.messages(ALICE, INBOX).expect("messages"),
            store.mailbox_status(ALICE, INBOX).expect("status"),
        )
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.messages(ALICE, INBOX).expect("messages"), before);
    assert_eq!(
        store.mailbox_status(ALICE, INBOX).expect("status"),
        status_before
    );
    assert_eq!(
        store.read_message(ALICE, INBOX, 1).expect("read 1"),
        b"first\r\n"
    );
    assert_eq!(
        store.read_message(ALICE, INBOX, 2).expect("read 2"),
        b"second\r\n"
    );
    // A UID is never reused, also across restarts.
    let third = store.deliver(&[ALICE], b"third").expect("deliver 3");
    assert_eq!(third[0].uid, 3);
}

#[test]
fn uidvalidity_is_stable_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let store = Store::open(dir.path()).expect("open");
        store.ensure_account(ALICE).expect("alice");
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .uidvalidity
    };
    let store = Store::open(dir.path()).expect("reopen");
    store.ensure_account(ALICE).expect("ensure again");
    assert_eq!(
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .uidvalidity,
        first
    );
}

#[test]
fn recreated_mailbox_gets_a_larger_uidvalidity_and_fresh_uids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.ensure_account(ALICE).expect("alice");
    store.create_mailbox(ALICE, "Archive").expect("create");
    let first = store.mailbox_status(ALICE, "Archive").expect("status");
    store.delete_mailbox(ALICE, "Archive").expect("delete");
    assert!(matches!(
        store.mailbox_status(ALICE, "Archive"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    drop(store);
    // Reopen in between: the counter lives in the database, not in memory.
    let store = Store::open(dir.path()).expect("reopen");
    store.create_mailbox(ALICE, "Archive").expect("recreate");
    let second = store.mailbox_status(ALICE, "Archive").expect("status");
    assert!(
        second.uidvalidity > first.uidvalidity,
        "{second:?} vs {first:?}"
    );
    assert_eq!(second.uidnext, 1);
    // Distinct mailboxes never share a UIDVALIDITY either.
    store.ensure_account(BOB).expect("bob");
    let alice = store
        .mailbox_status(ALICE, INBOX)
        .expect("alice")
        .uidvalidity;
    let bob = store.mailbox_status(BOB, INBOX).expect("bob").uidvalidity;
    assert_eq!(
        BTreeSet::from([alice, bob, first.uidvalidity, second.uidvalidity]).len(),
        4
    );
}

#[test]
fn mailbox_creation_and_deletion_errors() {
    let (_dir, store) = store_with_accounts();
    store.create_mailbox(ALICE, "Archive").expect("create");
    assert!(matches!(
        store.create_mailbox(ALICE, "Archive"),
        Err(StoreError::MailboxExists { .. })
    ));
    assert!(matches!(
        store.create_mailbox(ALICE, "inbox"),
        Err(StoreError::MailboxExists { mailbox, .. }) if mailbox == INBOX
    ));
    assert!(matches!(
        store.create_mailbox(ALICE, ""),
        Err(StoreError::InvalidMailboxName(_))
    ));
    assert!(matches!(
        store.create_mailbox("nobody@example.test", "Archive"),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert!(matches!(
        store.delete_mailbox(ALICE, "Inbox"),
        Err(StoreError::CannotDeleteInbox { .. })
    ));
    assert!(matches!(
        store.delete_mailbox(ALICE, "Missing"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    // Bob's mailbox of the same name is independent of alice's.
    store.create_mailbox(BOB, "Archive").expect("bob's archive");
}

#[test]
fn uids_ascend_per_mailbox_and_are_independent_across_mailboxes() {
    let (_dir, store) = store_with_accounts();
    let mut got = Vec::new();
    for (i, recipients) in [&[ALICE][..], &[BOB], &[ALICE, BOB], &[ALICE], &[BOB]]
        .iter()
        .enumerate()
    {
        got.extend(
            store
                .deliver(recipients, format!("m{i}").as_bytes())
                .expect("deliver"),
        );
    }
    let uids_of = |account: &str| -> Vec<u32> {
        got.iter()
            .filter(|d| d.account == account)
            .map(|d| d.uid)
            .collect()
    };
    assert_eq!(uids_of(ALICE), vec![1, 2, 3]);
    assert_eq!(uids_of(BOB), vec![1, 2, 3]);
    assert_eq!(uids(&store, ALICE), vec![1, 2, 3]);
    assert_eq!(uids(&store, BOB), vec![1, 2, 3]);
    assert_eq!(store.read_message(ALICE, INBOX, 3).expect("read"), b"m3");
    assert_eq!(store.read_message(BOB, INBOX, 3).expect("read"), b"m4");
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!((status.uidnext, status.exists), (4, 3));
}

#[test]
fn modseq_rises_with_each_delivery() {
    let (_dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"a").expect("deliver");
    store.deliver(&[ALICE], b"b").expect("deliver");
    let messages = store.messages(ALICE, INBOX).expect("messages");
    assert_eq!(
        messages.iter().map(|m| m.modseq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .highest_modseq,
        3
    );
}

#[test]
fn metadata_describes_the_stored_message() {
    let (_dir, store) = store_with_accounts();
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    store.deliver(&[ALICE], b"abc").expect("deliver");
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    let meta = &store.messages(ALICE, INBOX).expect("messages")[0];
    assert_eq!(meta.size, 3);
    assert_eq!(
        meta.blob,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!((before..=after).contains(&meta.internal_date), "{meta:?}");
    assert!(meta.flags.is_empty());
}

#[test]
fn flags_are_reported_sorted_per_message() {
    let (_dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"a").expect("deliver");
    store.deliver(&[ALICE], b"b").expect("deliver");
    {
        // No public API sets flags yet; write rows as IMAP STORE will.
        let conn = store.conn().expect("conn");
        conn.execute_batch(
            "INSERT INTO message_flags (message_id, flag)
               SELECT id, '\\Seen' FROM messages WHERE uid = 2;
             INSERT INTO message_flags (message_id, flag)
               SELECT id, '\\Answered' FROM messages WHERE uid = 2;",
        )
        .expect("insert flags");
    }
    let messages = store.messages(ALICE, INBOX).expect("messages");
    assert!(messages[0].flags.is_empty());
    assert_eq!(messages[1].flags, vec!["\\Answered", "\\Seen"]);
}

#[test]
fn unknown_recipient_fails_and_inserts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.ensure_account(ALICE).expect("alice");
    store.ensure_account(BOB).expect("bob");
    store.deliver(&[BOB], b"earlier").expect("earlier delivery");
    let alice_before = store.mailbox_status(ALICE, INBOX).expect("status");
    let bob_before = store.mailbox_status(BOB, INBOX).expect("status");

    // Refused whether its body would be a row or a file.
    for body in [b"never stored".to_vec(), large_body("never stored")] {
        let err = store
            .deliver(&[ALICE, "ghost@example.test", BOB], &body)
            .expect_err("unknown recipient");
        assert!(
            matches!(&err, StoreError::NoSuchAccount(a) if a == "ghost@example.test"),
            "{err}"
        );
        assert!(err.to_string().contains("ghost@example.test"), "{err}");
    }

    assert_eq!(
        store.mailbox_status(ALICE, INBOX).expect("status"),
        alice_before
    );
    assert_eq!(
        store.mailbox_status(BOB, INBOX).expect("status"),
        bob_before
    );
    let rows: i64 = store
        .conn()
        .expect("conn")
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 1);
    assert_eq!(
        stored_bodies(dir.path(), &store),
        1,
        "refused body left a body behind"
    );
    // The next real delivery takes the UID the refused one would have had.
    let delivered = store.deliver(&[ALICE], b"later").expect("later delivery");
    assert_eq!(delivered[0].uid, alice_before.uidnext);
}

#[test]
fn duplicate_recipients_get_one_copy_each() {
    let (_dir, store) = store_with_accounts();
    let delivered = store
        .deliver(
            &[ALICE, BOB, "ALICE@example.test", ALICE, "Bob@Example.Test"],
            b"dup",
        )
        .expect("deliver");
    assert_eq!(
        delivered,
        vec![
            Delivered {
                account: ALICE.to_owned(),
                mailbox: INBOX.to_owned(),
                uid: 1
            },
            Delivered {
                account: BOB.to_owned(),
                mailbox: INBOX.to_owned(),
                uid: 1
            },
        ]
    );
    assert_eq!(
        store.mailbox_status(ALICE, INBOX).expect("status").exists,
        1
    );
    assert_eq!(store.mailbox_status(BOB, INBOX).expect("status").exists, 1);
}

#[test]
fn no_recipients_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.deliver(&[], b"orphan").expect("deliver"), Vec::new());
    assert_eq!(
        store.deliver(&[], &large_body("orphan")).expect("deliver"),
        Vec::new()
    );
    assert_eq!(stored_bodies(dir.path(), &store), 0);
}

#[test]
fn read_message_returns_the_exact_octets() {
    let (_dir, store) = store_with_accounts();
    let mut message: Vec<u8> = (0..=255u8).collect();
    message.extend_from_slice(b"bare CR\r bare LF\n CRLF\r\n trailing CR\r");
    message.extend((0..=255u8).rev());
    store.deliver(&[ALICE], &message).expect("deliver");
    store.deliver(&[ALICE], b"").expect("deliver empty");
    assert_eq!(store.read_message(ALICE, INBOX, 1).expect("read"), message);
    assert_eq!(store.read_message(ALICE, INBOX, 2).expect("read"), b"");
    let metas = store.messages(ALICE, INBOX).expect("messages");
    assert_eq!(metas[0].size, message.len() as u64);
    assert_eq!(metas[1].size, 0);
}

#[test]
fn identical_messages_share_one_blob_file() {
    let (dir, store) = store_with_accounts();
    let body = large_body("Subject: same\r\n\r\n");
    store.deliver(&[ALICE, BOB], &body).expect("first");
    store.deliver(&[ALICE], &body).expect("second");
    store
        .deliver(&[BOB], &large_body("different"))
        .expect("third");
    let files = blob_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    let alice = store.messages(ALICE, INBOX).expect("messages");
    assert_eq!(alice[0].blob, alice[1].blob);
    assert!(names.contains(&alice[0].blob), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "temp file left: {names:?}"
    );
    assert!(inline_bodies(&store).is_empty());
}

#[test]
fn damaged_blob_is_reported_not_served() {
    let (dir, store) = store_with_accounts();
    store
        .deliver(&[ALICE], &large_body("precious"))
        .expect("deliver");
    let files = blob_files(dir.path());
    fs::write(&files[0], b"tampered").expect("tamper");
    let err = store.read_message(ALICE, INBOX, 1).expect_err("corruption");
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
}

#[test]
fn small_bodies_are_kept_in_the_database_and_survive_reopening() {
    let (dir, store) = store_with_accounts();
    let mut largest = b"Subject: big\r\n\r\n".to_vec();
    largest.resize(bodies::INLINE_MAX, b'y');
    store.deliver(&[ALICE], b"small").expect("deliver small");
    store.deliver(&[ALICE], &largest).expect("deliver largest");
    store
        .append(ALICE, "Sent", b"appended", &[], None)
        .expect("append");
    assert!(
        blob_files(dir.path()).is_empty(),
        "no file for a small body"
    );
    let mut expected = vec![
        blobs::sha256_hex(b"small"),
        blobs::sha256_hex(&largest),
        blobs::sha256_hex(b"appended"),
    ];
    expected.sort();
    assert_eq!(inline_bodies(&store), expected);
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.read_message(ALICE, INBOX, 1).expect("read"), b"small");
    assert_eq!(store.read_message(ALICE, INBOX, 2).expect("read"), largest);
    assert_eq!(
        store.read_message(ALICE, "Sent", 1).expect("read"),
        b"appended"
    );
}

#[test]
fn large_bodies_stay_files() {
    let (dir, store) = store_with_accounts();
    let body = large_body("Subject: big\r\n\r\n");
    store.deliver(&[ALICE], &body).expect("deliver");
    store
        .append(ALICE, "Sent", &large_body("appended"), &[], None)
        .expect("append");
    assert!(inline_bodies(&store).is_empty());
    let hash = blobs::sha256_hex(&body);
    let files = blob_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.contains(&dir.path().join(BLOB_DIR).join(&hash[..2]).join(&hash)),
        "{files:?}"
    );
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.read_message(ALICE, INBOX, 1).expect("read"), body);
    assert_eq!(
        store.read_message(ALICE, "Sent", 1).expect("read"),
        large_body("appended")
    );
}

#[test]
fn identical_small_bodies_share_one_row() {
    let (dir, store) = store_with_accounts();
    let body = b"Subject: same\r\n\r\nsame body\r\n";
    store.deliver(&[ALICE, BOB], body).expect("first");
    store.deliver(&[ALICE], body).expect("second");
    store
        .accept(&incoming(&[BOB], &["carol@b.test"], body))
        .expect("third, also queued");
    store
        .append(ALICE, "Sent", body, &[], None)
        .expect("fourth, appended");
    store.deliver(&[BOB], b"different").expect("fifth");
    let alice = store.messages(ALICE, INBOX).expect("messages");
    assert_eq!(alice[0].blob, alice[1].blob);
    let mut expected = vec![alice[0].blob.clone(), blobs::sha256_hex(b"different")];
    expected.sort();
    assert_eq!(inline_bodies(&store), expected);
    assert!(blob_files(dir.path()).is_empty());
    for uid in [1, 2, 3] {
        let want: &[u8] = if uid == 3 { b"different" } else { body };
        assert_eq!(store.read_message(BOB, INBOX, uid).expect("read"), want);
    }
}

#[test]
fn damaged_inline_body_is_reported_not_served_and_repaired_by_the_next_copy() {
    let (dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"precious").expect("deliver");
    store
        .accept(&incoming(&[], &["carol@b.test"], b"precious"))
        .expect("queue");
    let hash = blobs::sha256_hex(b"precious");
    let changed = store
        .conn()
        .expect("conn")
        .execute("UPDATE bodies SET data = x'7461' WHERE hash = ?1", [&hash])
        .expect("tamper");
    assert_eq!(changed, 1);
    let err = store.read_message(ALICE, INBOX, 1).expect_err("corruption");
    assert!(
        matches!(&err, StoreError::CorruptBlob { path, reason }
            if *path == dir.path().join(DB_FILE) && reason.contains(&hash)),
        "{err}"
    );
    let job = &store.outbound_queue().expect("queue")[0];
    let err = store.outbound_body(&job.blob).expect_err("corruption");
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
    // Storing the same body again rewrites the damaged row, as put does for a damaged file.
    store.deliver(&[BOB], b"precious").expect("deliver again");
    assert_eq!(
        store.read_message(ALICE, INBOX, 1).expect("read"),
        b"precious"
    );
    assert_eq!(inline_bodies(&store), [hash]);
}

#[test]
fn bodies_named_in_the_database_stay_within_the_blob_directory() {
    let (_dir, store) = store_with_accounts();
    let err = store
        .outbound_body("../../etc/passwd")
        .expect_err("not a hash");
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
}

// ---- schema version 4 ----

#[test]
fn migration_from_version_3_reads_bodies_from_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob_dir = blobs::BlobDir::open(dir.path().join(BLOB_DIR)).expect("blob dir");
    // Small bodies: version 3 kept every body in a file, whatever its size.
    let mail = blob_dir.put(b"old mail").expect("blob");
    let relayed = blob_dir.put(b"old relay").expect("blob");
    {
        // A database exactly as version 3 of the server left it.
        let raw = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
        for step in [schema::V1, schema::V2, schema::V3] {
            raw.execute_batch(step).expect("old schema");
        }
        raw.execute_batch(&format!(
            "INSERT INTO store_state (id, next_uidvalidity) VALUES (1, 100);
             INSERT INTO accounts (id, address) VALUES (1, 'alice@example.test');
             INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext, highest_modseq)
                VALUES (1, 1, 'INBOX', 42, 2, 2);
             INSERT INTO messages (id, mailbox_id, uid, modseq, internal_date, size, blob)
                VALUES (1, 1, 1, 2, 1000, 8, '{mail}');
             INSERT INTO outbound (id, queue_id, sender, blob, size, arrived)
                VALUES (1, 'Q0', 'alice@example.test', '{relayed}', 9, 1000);
             INSERT INTO outbound_recipients (message_id, recipient, domain, next_attempt)
                VALUES (1, 'carol@b.test', 'b.test', 0);"
        ))
        .expect("v3 data");
        raw.pragma_update(None, "user_version", 3).expect("version");
    }

    let store = Store::open(dir.path()).expect("open migrates");
    let version: i64 = store
        .conn()
        .expect("conn")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, schema::VERSION);
    assert!(inline_bodies(&store).is_empty(), "migration moves no body");
    assert_eq!(
        store.read_message(ALICE, INBOX, 1).expect("read"),
        b"old mail"
    );
    let job = &store.outbound_queue().expect("queue")[0];
    assert_eq!(job.blob, relayed);
    assert_eq!(store.outbound_body(&job.blob).expect("body"), b"old relay");
    // The same body arriving again goes to the database; both copies read back.
    store.deliver(&[ALICE], b"old mail").expect("deliver");
    assert_eq!(inline_bodies(&store), std::slice::from_ref(&mail));
    for uid in [1, 2] {
        assert_eq!(
            store.read_message(ALICE, INBOX, uid).expect("read"),
            b"old mail"
        );
    }
    assert_eq!(blob_files(dir.path()).len(), 2, "old files stay");
    drop(store);
    // Reopening a version 4 file changes nothing.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.messages(ALICE, INBOX).expect("messages").len(), 2);
    assert_eq!(inline_bodies(&store), [mail]);
}

#[test]
fn concurrent_deliveries_get_unique_ascending_uids() {
    const THREADS: usize = 8;
    const EACH: usize = 12;
    let (_dir, store) = store_with_accounts();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        // Every other thread also writes to bob, so transactions interleave.
                        let recipients: &[&str] = if t % 2 == 0 { &[ALICE] } else { &[ALICE, BOB] };
                        let body = format!("thread {t} message {i}");
                        let delivered =
                            store.deliver(recipients, body.as_bytes()).expect("deliver");
                        (delivered[0].uid, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        let mine = handle.join().expect("thread panicked");
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "one thread's UIDs must ascend: {mine:?}"
        );
        all.extend(mine);
    }
    let total = THREADS * EACH;
    let distinct: BTreeSet<u32> = all.iter().map(|(uid, _)| *uid).collect();
    assert_eq!(distinct.len(), total, "a UID was handed out twice");
    let expected: Vec<u32> = (1..=u32::try_from(total).expect("small")).collect();
    assert_eq!(uids(&store, ALICE), expected, "a delivery was lost");
    for (uid, body) in &all {
        assert_eq!(
            store.read_message(ALICE, INBOX, *uid).expect("read"),
            body.as_bytes()
        );
    }
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(status.uidnext, expected.len() as u32 + 1);
    assert_eq!(
        store.mailbox_status(BOB, INBOX).expect("status").exists as usize,
        THREADS / 2 * EACH
    );
}

#[test]
fn two_handles_on_one_directory_share_the_uid_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open(dir.path()).expect("open a");
    let b = Store::open(dir.path()).expect("open b");
    a.ensure_account(ALICE).expect("alice");
    b.ensure_account(ALICE).expect("alice again");
    let first = a.deliver(&[ALICE], b"from a").expect("a");
    let second = b.deliver(&[ALICE], b"from b").expect("b");
    assert_eq!((first[0].uid, second[0].uid), (1, 2));
    assert_eq!(uids(&a, ALICE), vec![1, 2]);
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).expect("create"));
    let raw = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
    raw.pragma_update(None, "user_version", 99)
        .expect("bump version");
    drop(raw);
    let err = Store::open(dir.path()).expect_err("newer schema must be refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("99") && text.contains("newer"), "{text}");
    assert!(text.contains(DB_FILE), "error must name the file: {text}");
}

#[test]
fn poisoned_lock_is_an_error_not_a_panic() {
    let (_dir, store) = store_with_accounts();
    let clone = store.clone();
    let joined = thread::spawn(move || {
        let _guard = clone.inner.conn.lock();
        panic!("deliberate panic while holding the store's connection");
    })
    .join();
    assert!(joined.is_err());
    assert!(matches!(
        store.deliver(&[ALICE], b"x"),
        Err(StoreError::LockPoisoned)
    ));
    // Reads have their own connections and go on.
    assert_eq!(store.mailbox_status(ALICE, INBOX).unwrap().exists, 0);
}

#[test]
fn a_reader_a_thread_panicked_with_is_used_again() {
    let (_dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"x").expect("deliver");
    for slot in 0..super::readers::READERS {
        let clone = store.clone();
        let joined = thread::spawn(move || {
            let snapshot = clone.inner.readers.snapshot_of(slot).expect("snapshot");
            let count: i64 = snapshot
                .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
                .expect("count");
            assert_eq!(count, 1);
            panic!("deliberate panic while reading");
        })
        .join();
        assert!(joined.is_err());
    }
    // Every reader is poisoned; each is taken again, and none is stuck in the snapshot it had.
    store.deliver(&[ALICE], b"y").expect("deliver");
    for _ in 0..2 * super::readers::READERS {
        assert_eq!(
            store.mailbox_status(ALICE, INBOX).expect("status").exists,
            2
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_octets_round_trip(message in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_dir, store) = store_with_accounts();
        let delivered = store.deliver(&[ALICE, BOB], &message).expect("deliver");
        for d in delivered {
            prop_assert_eq!(store.read_message(&d.account, &d.mailbox, d.uid).expect("read"), message.clone());
        }
    }
}

#[test]
fn expunge_removes_only_present_uids_and_never_reuses_them() {
    let (_dir, store) = store_with_accounts();
    for body in [&b"one\r\n"[..], b"two\r\n", b"three\r\n"] {
        store.deliver(&[ALICE, BOB], body).expect("deliver");
    }
    let before = store.mailbox_status(ALICE, INBOX).expect("status");
    let removed = store
        .expunge(ALICE, "inbox", &[3, 1, 1, 7])
        .expect("expunge");
    assert_eq!(removed, [1, 3], "absent UID 7 ignored, duplicates once");
    assert_eq!(uids(&store, ALICE), [2]);
    assert_eq!(uids(&store, BOB), [1, 2, 3], "other accounts untouched");
    let after = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(after.exists, 1);
    assert_eq!(after.uidnext, before.uidnext, "UIDNEXT never goes back");
    assert_eq!(after.highest_modseq, before.highest_modseq + 2);
    assert!(matches!(
        store.read_message(ALICE, INBOX, 1),
        Err(StoreError::NoSuchMessage { uid: 1, .. })
    ));
    // A second expunge of the same UIDs (another session got there first) is not an error.
    assert!(
        store
            .expunge(ALICE, INBOX, &[1, 3])
            .expect("again")
            .is_empty()
    );
    let delivered = store.deliver(&[ALICE], b"four\r\n").expect("deliver");
    assert_eq!(
        delivered[0].uid, 4,
        "an expunged UID is never handed out again"
    );
    assert_eq!(
        store.read_message(ALICE, INBOX, 2).expect("kept"),
        b"two\r\n"
    );
}

#[test]
fn expunge_in_a_missing_mailbox_is_an_error() {
    let (_dir, store) = store_with_accounts();
    assert!(matches!(
        store.expunge("nobody@example.test", INBOX, &[1]),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert!(matches!(
        store.expunge(ALICE, "Nope", &[1]),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    assert!(
        store
            .expunge(ALICE, "Nope", &[])
            .expect("nothing to do")
            .is_empty()
    );
}

// ---- IMAP: helpers ----

fn strings(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|f| (*f).to_owned()).collect()
}

/// Appends `count` messages with no flags to a mailbox of alice; returns their UIDs.
fn append_n(store: &Store, mailbox: &str, count: usize) -> Vec<u32> {
    (0..count)
        .map(|i| {
            store
                .append(ALICE, mailbox, format!("m{i}").as_bytes(), &[], Some(1000))
                .expect("append")
                .uid
        })
        .collect()
}

/// Every change waiting in a receiver, stopping when it is empty or closed; panics on lag.
fn drain(rx: &mut broadcast::Receiver<Change>) -> Vec<Change> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(change) => out.push(change),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return out,
            Err(TryRecvError::Lagged(n)) => panic!("receiver lagged by {n} after {out:?}"),
        }
    }
}

fn names(store: &Store) -> Vec<String> {
    store
        .list_mailboxes(ALICE)
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect()
}

fn flags_of(store: &Store, mailbox: &str) -> Vec<(u32, Vec<String>)> {
    store
        .messages(ALICE, mailbox)
        .expect("messages")
        .into_iter()
        .map(|m| (m.uid, m.flags))
        .collect()
}

fn modseqs(changes: &[Change]) -> Vec<u64> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Appended { modseq, .. }
            | Change::FlagsChanged { modseq, .. }
            | Change::Expunged { modseq, .. } => Some(*modseq),
            Change::Deleted => None,
        })
        .collect()
}

// ---- schema version 2 ----

#[test]
fn migration_from_version_1_keeps_data_and_adds_version_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = blobs::BlobDir::open(dir.path().join(BLOB_DIR))
        .expect("blob dir")
        .put(b"old mail")
        .expect("blob");
    {
        // A database exactly as version 1 of the server left it.
        let raw = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
        raw.execute_batch(schema::V1).expect("v1 schema");
        raw.execute_batch(&format!(
            "INSERT INTO store_state (id, next_uidvalidity) VALUES (1, 100);
             INSERT INTO accounts (id, address) VALUES (1, 'Alice@Example.Test');
             INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext, highest_modseq)
                VALUES (1, 1, 'INBOX', 42, 4, 6), (2, 1, 'Sent', 43, 1, 1);
             INSERT INTO messages (id, mailbox_id, uid, modseq, internal_date, size, blob)
                VALUES (1, 1, 1, 2, 1000, 8, '{blob}'), (2, 1, 3, 5, 2000, 8, '{blob}');
             INSERT INTO message_flags (message_id, flag) VALUES (2, '\\Seen');
             INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (1, 2, 6);"
        ))
        .expect("v1 data");
        raw.pragma_update(None, "user_version", 1).expect("version");
    }

    let store = Store::open(dir.path()).expect("open migrates");
    let version: i64 = store
        .conn()
        .expect("conn")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, schema::VERSION);
    assert!(
        store.outbound_queue().expect("queue table").is_empty(),
        "version 3 adds an empty outbound queue"
    );
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(
        status,
        MailboxStatus {
            uidvalidity: 42,
            uidnext: 4,
            exists: 2,
            highest_modseq: 6
        }
    );
    assert_eq!(
        flags_of(&store, INBOX),
        vec![(1, vec![]), (3, strings(&["\\Seen"]))]
    );
    assert_eq!(
        store.read_message(ALICE, INBOX, 3).expect("read"),
        b"old mail"
    );
    assert_eq!(
        store.expunged_since(ALICE, INBOX, 0).expect("expunged"),
        [2]
    );
    assert_eq!(store.subscriptions(ALICE).expect("subs"), [INBOX]);
    assert_eq!(
        store.list_mailboxes(ALICE).expect("list")[1],
        MailboxInfo {
            name: "Sent".into(),
            special_use: None,
            subscribed: false,
            has_children: false
        }
    );

    // The next ensure_account completes the account; the old Sent gets the attribute.
    store.ensure_account(ALICE).expect("ensure");
    let list = store.list_mailboxes(ALICE).expect("list");
    let sent = list.iter().find(|m| m.name == "Sent").expect("Sent");
    assert_eq!(sent.special_use, Some(SpecialUse::Sent));
    assert_eq!(
        store
            .mailbox_status(ALICE, "Sent")
            .expect("status")
            .uidvalidity,
        43
    );
    assert_eq!(names(&store), ["Drafts", INBOX, "Junk", "Sent", "Trash"]);
    let drafts = store.mailbox_status(ALICE, "Drafts").expect("drafts");
    assert_eq!(drafts.uidvalidity, 100, "the v1 counter goes on");
    assert_eq!(store.deliver(&[ALICE], b"new").expect("deliver")[0].uid, 4);
    drop(store);
    // Reopening a version 2 file changes nothing.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.messages(ALICE, INBOX).expect("messages").len(), 3);
}

// ---- accounts, mailboxes, subscriptions ----

#[test]
fn ensure_account_creates_subscribed_special_use_mailboxes_once() {
    let (_dir, store) = store_with_accounts();
    let list = store.list_mailboxes(ALICE).expect("list");
    let expected = [
        ("Drafts", Some(SpecialUse::Drafts)),
        (INBOX, None),
        ("Junk", Some(SpecialUse::Junk)),
        ("Sent", Some(SpecialUse::Sent)),
        ("Trash", Some(SpecialUse::Trash)),
    ];
    assert_eq!(
        list.iter()
            .map(|m| (m.name.as_str(), m.special_use))
            .collect::<Vec<_>>(),
        expected
    );
    assert!(list.iter().all(|m| m.subscribed && !m.has_children));
    let before: Vec<u32> = expected
        .iter()
        .map(|(name, _)| {
            store
                .mailbox_status(ALICE, name)
                .expect("status")
                .uidvalidity
        })
        .collect();
    store.ensure_account(ALICE).expect("again");
    assert_eq!(store.list_mailboxes(ALICE).expect("list"), list);
    let after: Vec<u32> = expected
        .iter()
        .map(|(name, _)| {
            store
                .mailbox_status(ALICE, name)
                .expect("status")
                .uidvalidity
        })
        .collect();
    assert_eq!(before, after);

    // A renamed special mailbox keeps serving; a deleted one comes back.
    store
        .rename_mailbox(ALICE, "Sent", "Sent Items")
        .expect("rename");
    store.delete_mailbox(ALICE, "Trash").expect("delete");
    store.ensure_account(ALICE).expect("again");
    assert_eq!(
        names(&store),
        ["Drafts", INBOX, "Junk", "Sent Items", "Trash"]
    );
    let list = store.list_mailboxes(ALICE).expect("list");
    assert_eq!(list[3].special_use, Some(SpecialUse::Sent));
    assert!(list[3].subscribed, "the subscription moved with the rename");
    assert_eq!(list[4].special_use, Some(SpecialUse::Trash));
}

#[test]
fn special_use_parses_and_prints_rfc_6154_names() {
    for name in [
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ] {
        let parsed = SpecialUse::parse(name).expect(name);
        assert_eq!(parsed.as_str(), name);
        assert_eq!(SpecialUse::parse(&name.to_lowercase()), Some(parsed));
    }
    assert_eq!(SpecialUse::parse("\\Important"), None);
    assert_eq!(SpecialUse::parse("Sent"), None);
}

#[test]
fn subscriptions_may_name_missing_mailboxes_and_survive_deletion() {
    let (_dir, store) = store_with_accounts();
    store
        .subscribe(ALICE, "Lists/rust")
        .expect("subscribe missing");
    store
        .subscribe(ALICE, "Lists/rust")
        .expect("subscribe twice");
    store.subscribe(ALICE, "inbox").expect("INBOX in any case");
    store.unsubscribe(ALICE, "Junk").expect("unsubscribe");
    assert_eq!(
        store.subscriptions(ALICE).expect("subs"),
        ["Drafts", INBOX, "Lists/rust", "Sent", "Trash"]
    );
    assert!(
        !store.list_mailboxes(ALICE).expect("list")[2].subscribed,
        "Junk"
    );
    let err = store
        .unsubscribe(ALICE, "Junk")
        .expect_err("not subscribed");
    assert!(
        matches!(&err, StoreError::NotSubscribed { account, mailbox } if account == ALICE && mailbox == "Junk"),
        "{err}"
    );
    store.delete_mailbox(ALICE, "Drafts").expect("delete");
    assert!(
        store
            .subscriptions(ALICE)
            .expect("subs")
            .contains(&"Drafts".to_owned())
    );
    assert!(matches!(
        store.subscribe(ALICE, "a//b"),
        Err(StoreError::InvalidMailboxName(_))
    ));
    assert!(matches!(
        store.subscribe("nobody@example.test", "x"),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert!(matches!(
        store.subscriptions("nobody@example.test"),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert_eq!(
        store.subscriptions(BOB).expect("bob").len(),
        5,
        "bob untouched"
    );
}

#[test]
fn create_with_parents_fills_in_the_hierarchy() {
    let (_dir, store) = store_with_accounts();
    store
        .create_mailbox_with_parents(ALICE, "Work/2024/Q1")
        .expect("create");
    store
        .create_mailbox_with_parents(ALICE, "Work/2025/")
        .expect("trailing delimiter declares children");
    let list = store.list_mailboxes(ALICE).expect("list");
    let work: Vec<(&str, bool)> = list
        .iter()
        .filter(|m| m.name.starts_with("Work"))
        .map(|m| (m.name.as_str(), m.has_children))
        .collect();
    assert_eq!(
        work,
        [
            ("Work", true),
            ("Work/2024", true),
            ("Work/2024/Q1", false),
            ("Work/2025", false)
        ]
    );
    assert!(matches!(
        store.create_mailbox_with_parents(ALICE, "Work/2024"),
        Err(StoreError::MailboxExists { mailbox, .. }) if mailbox == "Work/2024"
    ));
    store
        .create_mailbox_with_parents(ALICE, "INBOX/sub")
        .expect("below INBOX");
    assert_eq!(names(&store).iter().filter(|n| *n == INBOX).count(), 1);
    for bad in ["", "/a", "a//b", "a/\nb", "//"] {
        assert!(
            matches!(
                store.create_mailbox_with_parents(ALICE, bad),
                Err(StoreError::InvalidMailboxName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        store.create_mailbox(ALICE, "a/"),
        Err(StoreError::InvalidMailboxName(_))
    ));
    assert!(matches!(
        store.create_mailbox_with_parents("nobody@example.test", "x/y"),
        Err(StoreError::NoSuchAccount(_))
    ));
}

#[test]
fn mailbox_with_children_cannot_be_deleted() {
    let (_dir, store) = store_with_accounts();
    store
        .create_mailbox_with_parents(ALICE, "Work/Old")
        .expect("create");
    let err = store.delete_mailbox(ALICE, "Work").expect_err("children");
    assert!(
        matches!(&err, StoreError::HasChildren { account, mailbox } if account == ALICE && mailbox == "Work"),
        "{err}"
    );
    assert!(err.to_string().contains("Work"), "{err}");
    // A sibling whose name merely starts the same is no child.
    store.create_mailbox(ALICE, "Workshop").expect("create");
    store.delete_mailbox(ALICE, "Work/Old").expect("child");
    store.delete_mailbox(ALICE, "Work").expect("now childless");
    assert!(names(&store).contains(&"Workshop".to_owned()));
}

#[test]
fn rename_moves_children_and_keeps_uidvalidity_and_messages() {
    let (_dir, store) = store_with_accounts();
    store
        .create_mailbox_with_parents(ALICE, "Work/2024/Q1")
        .expect("create");
    store.create_mailbox(ALICE, "Workshop").expect("sibling");
    store.subscribe(ALICE, "Work/2024").expect("subscribe");
    append_n(&store, "Work/2024", 2);
    let before = store.mailbox_status(ALICE, "Work/2024").expect("status");
    let child = store.mailbox_status(ALICE, "Work/2024/Q1").expect("status");
    let messages = store.messages(ALICE, "Work/2024").expect("messages");

    store
        .rename_mailbox(ALICE, "Work/2024", "Archive/Old")
        .expect("rename");
    assert_eq!(
        names(&store),
        [
            "Archive",
            "Archive/Old",
            "Archive/Old/Q1",
            "Drafts",
            INBOX,
            "Junk",
            "Sent",
            "Trash",
            "Work",
            "Workshop"
        ]
    );
    assert_eq!(
        store.mailbox_status(ALICE, "Archive/Old").expect("status"),
        before
    );
    assert_eq!(
        store
            .mailbox_status(ALICE, "Archive/Old/Q1")
            .expect("status")
            .uidvalidity,
        child.uidvalidity
    );
    assert_eq!(
        store.messages(ALICE, "Archive/Old").expect("messages"),
        messages
    );
    let subs = store.subscriptions(ALICE).expect("subs");
    assert!(subs.contains(&"Archive/Old".to_owned()) && !subs.contains(&"Work/2024".to_owned()));
    assert!(matches!(
        store.mailbox_status(ALICE, "Work/2024"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

#[test]
fn rename_errors() {
    let (_dir, store) = store_with_accounts();
    store
        .create_mailbox_with_parents(ALICE, "a/x")
        .expect("create");
    store.create_mailbox(ALICE, "b/x").expect("b/x without b");
    let before = names(&store);

    let err = store
        .rename_mailbox(ALICE, "nope", "c")
        .expect_err("missing");
    assert!(
        matches!(&err, StoreError::NoSuchMailbox { mailbox, .. } if mailbox == "nope"),
        "{err}"
    );
    let err = store
        .rename_mailbox(ALICE, "a", "Sent")
        .expect_err("target");
    assert!(
        matches!(&err, StoreError::MailboxExists { mailbox, .. } if mailbox == "Sent"),
        "{err}"
    );
    let err = store
        .rename_mailbox(ALICE, "a", "b")
        .expect_err("child clash");
    assert!(
        matches!(&err, StoreError::MailboxExists { mailbox, .. } if mailbox == "b/x"),
        "{err}"
    );
    let err = store
        .rename_mailbox(ALICE, "a", "inbox")
        .expect_err("INBOX");
    assert!(
        matches!(&err, StoreError::MailboxExists { mailbox, .. } if mailbox == INBOX),
        "{err}"
    );
    let err = store
        .rename_mailbox(ALICE, "a", "a/x/y")
        .expect_err("into itself");
    assert!(
        matches!(&err, StoreError::RenameIntoItself { from, to, .. } if from == "a" && to == "a/x/y"),
        "{err}"
    );
    assert!(matches!(
        store.rename_mailbox(ALICE, "a", "c/"),
        Err(StoreError::InvalidMailboxName(_))
    ));
    assert!(matches!(
        store.rename_mailbox("nobody@example.test", "a", "c"),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert_eq!(names(&store), before, "failed renames change nothing");
    // A name that merely starts like an existing one is no clash.
    store.rename_mailbox(ALICE, "b/x", "a/xy").expect("rename");
    assert!(names(&store).contains(&"a/xy".to_owned()));
}

#[test]
fn renaming_inbox_moves_its_messages_to_a_new_mailbox() {
    let (_dir, store) = store_with_accounts();
    for body in [&b"one"[..], b"two", b"three"] {
        store.deliver(&[ALICE], body).expect("deliver");
    }
    store.expunge(ALICE, INBOX, &[2]).expect("expunge");
    store
        .store_flags(ALICE, INBOX, &[3], FlagOp::Add, &strings(&["\\Seen"]), None)
        .expect("flag");
    store
        .create_mailbox_with_parents(ALICE, "INBOX/keep")
        .expect("child");
    let inbox_before = store.mailbox_status(ALICE, INBOX).expect("status");
    let old_messages = store.messages(ALICE, INBOX).expect("messages");
    let mut rx = store.watch(ALICE, INBOX).expect("watch");

    store
        .rename_mailbox(ALICE, "Inbox", "Old/Mail")
        .expect("rename");

    let moved = store.messages(ALICE, "Old/Mail").expect("messages");
    assert_eq!(moved.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    for (new, old) in moved.iter().zip(&old_messages) {
        assert_eq!(
            (&new.flags, new.internal_date, &new.blob),
            (&old.flags, old.internal_date, &old.blob)
        );
    }
    assert_eq!(
        store.read_message(ALICE, "Old/Mail", 2).expect("read"),
        b"three"
    );
    let target = store.mailbox_status(ALICE, "Old/Mail").expect("status");
    assert!(target.uidvalidity > inbox_before.uidvalidity);
    assert_eq!(target.uidnext, 3);
    let inbox = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(inbox.exists, 0);
    assert_eq!(inbox.uidvalidity, inbox_before.uidvalidity);
    assert_eq!(inbox.uidnext, inbox_before.uidnext);
    assert_eq!(inbox.highest_modseq, inbox_before.highest_modseq + 2);
    assert!(
        names(&store).contains(&"INBOX/keep".to_owned()),
        "children stay"
    );
    assert!(names(&store).contains(&"Old".to_owned()), "parent created");
    assert_eq!(
        drain(&mut rx),
        [
            Change::Expunged {
                uid: 1,
                modseq: inbox_before.highest_modseq + 1
            },
            Change::Expunged {
                uid: 3,
                modseq: inbox_before.highest_modseq + 2
            }
        ],
        "INBOX is emptied, not deleted"
    );
    assert_eq!(store.deliver(&[ALICE], b"four").expect("deliver")[0].uid, 4);
    assert!(matches!(
        store.rename_mailbox(ALICE, INBOX, "Old/Mail"),
        Err(StoreError::MailboxExists { .. })
    ));
}

// ---- APPEND ----

#[test]
fn append_stores_flags_and_date_and_returns_appenduid() {
    let (dir, store) = store_with_accounts();
    let sent = store.mailbox_status(ALICE, "Sent").expect("status");
    let got = store
        .append(
            ALICE,
            "Sent",
            b"Subject: x\r\n\r\nbody\r\n",
            &strings(&["\\seen", "\\Recent", "$Label", "$label"]),
            Some(1_234_567),
        )
        .expect("append");
    assert_eq!(
        got,
        AppendResult {
            uidvalidity: sent.uidvalidity,
            uid: 1
        }
    );
    let meta = &store.messages(ALICE, "Sent").expect("messages")[0];
    assert_eq!(meta.flags, strings(&["$Label", "\\Seen"]));
    assert_eq!(meta.internal_date, 1_234_567);
    assert_eq!(meta.modseq, sent.highest_modseq + 1);
    assert_eq!(
        store.read_message(ALICE, "Sent", 1).expect("read"),
        b"Subject: x\r\n\r\nbody\r\n"
    );
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let second = store.append(ALICE, "sent", b"x", &[], None);
    assert!(
        matches!(second, Err(StoreError::NoSuchMailbox { .. })),
        "only INBOX is case-insensitive"
    );
    store
        .append(ALICE, "Sent", b"x", &[], None)
        .expect("append");
    let meta = &store.messages(ALICE, "Sent").expect("messages")[1];
    assert!(meta.internal_date >= before);
    assert_eq!(stored_bodies(dir.path(), &store), 2);
}

#[test]
fn refused_append_stores_nothing() {
    let (dir, store) = store_with_accounts();
    let before = store.mailbox_status(ALICE, INBOX).expect("status");
    let err = store
        .append(ALICE, INBOX, b"x", &strings(&["\\Seen", "\\Bogus"]), None)
        .expect_err("bad flag");
    assert!(
        matches!(&err, StoreError::InvalidFlag { account, mailbox, flag }
            if account == ALICE && mailbox == INBOX && flag == "\\Bogus"),
        "{err}"
    );
    assert!(matches!(
        store.append(ALICE, INBOX, b"x", &strings(&["a b"]), None),
        Err(StoreError::InvalidFlag { .. })
    ));
    let err = store
        .append(ALICE, "Nope", b"x", &[], None)
        .expect_err("mailbox");
    assert!(
        matches!(&err, StoreError::NoSuchMailbox { mailbox, .. } if mailbox == "Nope"),
        "{err}"
    );
    assert!(matches!(
        store.append("nobody@example.test", INBOX, b"x", &[], None),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert!(matches!(
        store.append(ALICE, "Nope", &large_body("x"), &[], None),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    assert_eq!(store.mailbox_status(ALICE, INBOX).expect("status"), before);
    assert_eq!(stored_bodies(dir.path(), &store), 0);
}

// ---- STORE ----

#[test]
fn store_flags_changes_only_what_changes_with_one_modseq_each() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 4);
    let base = store
        .mailbox_status(ALICE, INBOX)
        .expect("status")
        .highest_modseq;

    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[3, 1, 9, 1],
            FlagOp::Add,
            &strings(&["\\Seen", "$Work"]),
            None,
        )
        .expect("add");
    assert_eq!(
        got.changed,
        [
            MessageFlags {
                uid: 1,
                flags: strings(&["$Work", "\\Seen"]),
                modseq: base + 1
            },
            MessageFlags {
                uid: 3,
                flags: strings(&["$Work", "\\Seen"]),
                modseq: base + 2
            }
        ]
    );
    assert!(got.unchanged.is_empty() && got.failed_modified.is_empty());

    // Adding what is there, in another case, changes nothing and takes no mod-sequence.
    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 2],
            FlagOp::Add,
            &strings(&["\\SEEN", "$work"]),
            None,
        )
        .expect("add again");
    assert_eq!(got.changed.len(), 1);
    assert_eq!(got.changed[0].uid, 2);
    assert_eq!(got.changed[0].modseq, base + 3);
    assert_eq!(
        got.unchanged,
        [MessageFlags {
            uid: 1,
            flags: strings(&["$Work", "\\Seen"]),
            modseq: base + 1
        }]
    );

    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 2, 3, 4],
            FlagOp::Remove,
            &strings(&["$WORK"]),
            None,
        )
        .expect("remove");
    assert_eq!(
        got.changed
            .iter()
            .map(|c| (c.uid, c.modseq))
            .collect::<Vec<_>>(),
        [(1, base + 4), (2, base + 5), (3, base + 6)]
    );
    assert_eq!(got.unchanged.len(), 1);

    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 4],
            FlagOp::Replace,
            &strings(&["\\Flagged", "\\Recent"]),
            None,
        )
        .expect("replace");
    assert_eq!(got.changed.len(), 2);
    assert_eq!(
        flags_of(&store, INBOX),
        [
            (1, strings(&["\\Flagged"])),
            (2, strings(&["\\Seen"])),
            (3, strings(&["\\Seen"])),
            (4, strings(&["\\Flagged"]))
        ]
    );
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(status.highest_modseq, base + 8);
    let metas = store.messages(ALICE, INBOX).expect("messages");
    assert_eq!(
        metas.iter().map(|m| m.modseq).collect::<Vec<_>>(),
        [base + 7, base + 5, base + 6, base + 8]
    );
    // Replacing with the same set is no change.
    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[1],
            FlagOp::Replace,
            &strings(&["\\flagged"]),
            None,
        )
        .expect("same");
    assert!(got.changed.is_empty());
    assert_eq!(
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .highest_modseq,
        base + 8
    );
}

#[test]
fn store_flags_unchangedsince_skips_messages_modified_later() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 3);
    let seen = strings(&["\\Seen"]);
    let after_append = store
        .mailbox_status(ALICE, INBOX)
        .expect("status")
        .highest_modseq;
    store
        .store_flags(ALICE, INBOX, &[2], FlagOp::Add, &strings(&["$x"]), None)
        .expect("touch 2");
    let got = store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 2, 3],
            FlagOp::Add,
            &seen,
            Some(after_append),
        )
        .expect("conditional");
    assert_eq!(got.failed_modified, [2]);
    assert_eq!(
        got.changed.iter().map(|c| c.uid).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(
        flags_of(&store, INBOX)[1].1,
        strings(&["$x"]),
        "2 untouched"
    );
    // UNCHANGEDSINCE 0 fails for every message (RFC 7162 3.1.3), even a no-op.
    let got = store
        .store_flags(ALICE, INBOX, &[1, 3], FlagOp::Add, &seen, Some(0))
        .expect("zero");
    assert_eq!(got.failed_modified, [1, 3]);
    assert!(got.changed.is_empty() && got.unchanged.is_empty());
}

#[test]
fn store_flags_errors() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 1);
    let before = store.messages(ALICE, INBOX).expect("messages");
    assert!(matches!(
        store.store_flags(
            ALICE,
            "Nope",
            &[1],
            FlagOp::Add,
            &strings(&["\\Seen"]),
            None
        ),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    assert!(matches!(
        store.store_flags(ALICE, INBOX, &[1], FlagOp::Add, &strings(&["\\Seen", "(x"]), None),
        Err(StoreError::InvalidFlag { flag, .. }) if flag == "(x"
    ));
    assert_eq!(store.messages(ALICE, INBOX).expect("messages"), before);
}

// ---- COPY and MOVE ----

#[test]
fn copy_gives_new_ascending_uids_and_keeps_flags_and_bodies() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 4);
    store
        .store_flags(
            ALICE,
            INBOX,
            &[2, 4],
            FlagOp::Add,
            &strings(&["\\Seen"]),
            None,
        )
        .expect("flag");
    append_n(&store, "Trash", 1);
    let trash = store.mailbox_status(ALICE, "Trash").expect("status");
    let source_before = store.messages(ALICE, INBOX).expect("messages");

    let got = store
        .copy_messages(ALICE, "inbox", &[4, 2, 7, 1], "Trash")
        .expect("copy");
    assert_eq!(
        got,
        CopyResult {
            uidvalidity: trash.uidvalidity,
            pairs: vec![(1, 2), (2, 3), (4, 4)]
        }
    );
    let copied = store.messages(ALICE, "Trash").expect("messages");
    assert_eq!(
        copied.iter().map(|m| (m.uid, m.modseq)).collect::<Vec<_>>(),
        [
            (1, copied[0].modseq),
            (2, trash.highest_modseq + 1),
            (3, trash.highest_modseq + 2),
            (4, trash.highest_modseq + 3)
        ]
    );
    for (&(src, dst), new) in got.pairs.iter().zip(&copied[1..]) {
        let old = &source_before[src as usize - 1];
        assert_eq!(new.uid, dst);
        assert_eq!(
            (&new.flags, new.internal_date, &new.blob, new.size),
            (&old.flags, old.internal_date, &old.blob, old.size)
        );
    }
    assert_eq!(
        store.messages(ALICE, INBOX).expect("messages"),
        source_before,
        "a copy leaves the source alone"
    );

    // Copying into the source mailbox itself appends new copies.
    let got = store
        .copy_messages(ALICE, INBOX, &[1, 2], INBOX)
        .expect("self");
    assert_eq!(got.pairs, [(1, 5), (2, 6)]);
    assert_eq!(flags_of(&store, INBOX)[5], (6, strings(&["\\Seen"])));

    // Nothing to copy: nothing changes.
    let status = store.mailbox_status(ALICE, "Trash").expect("status");
    assert!(
        store
            .copy_messages(ALICE, INBOX, &[99], "Trash")
            .expect("none")
            .pairs
            .is_empty()
    );
    assert_eq!(
        store.mailbox_status(ALICE, "Trash").expect("status"),
        status
    );
}

#[test]
fn copy_and_move_errors_change_nothing() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 2);
    let before = store.mailbox_status(ALICE, INBOX).expect("status");
    for result in [
        store.copy_messages(ALICE, INBOX, &[1], "Nope"),
        store.move_messages(ALICE, INBOX, &[1], "Nope"),
    ] {
        let err = result.expect_err("no destination");
        assert!(
            matches!(&err, StoreError::NoSuchMailbox { mailbox, .. } if mailbox == "Nope"),
            "{err}"
        );
    }
    assert!(matches!(
        store.move_messages(ALICE, "Nope", &[1], INBOX),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    assert!(matches!(
        store.copy_messages("nobody@example.test", INBOX, &[1], "Trash"),
        Err(StoreError::NoSuchAccount(_))
    ));
    assert_eq!(store.mailbox_status(ALICE, INBOX).expect("status"), before);
}

#[test]
fn move_copies_and_expunges_in_one_step_and_uids_are_not_reused() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 3);
    let source = store.mailbox_status(ALICE, INBOX).expect("status");
    let mut inbox_rx = store.watch(ALICE, INBOX).expect("watch");
    let mut trash_rx = store.watch(ALICE, "Trash").expect("watch");

    let got = store
        .move_messages(ALICE, INBOX, &[3, 1], "Trash")
        .expect("move");
    assert_eq!(got.pairs, [(1, 1), (3, 2)]);
    assert_eq!(
        store
            .mailbox_status(ALICE, "Trash")
            .expect("status")
            .uidvalidity,
        got.uidvalidity
    );
    assert_eq!(flags_of(&store, INBOX), [(2, vec![])]);
    let after = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(after.highest_modseq, source.highest_modseq + 2);
    assert_eq!(
        store
            .expunged_since(ALICE, INBOX, source.highest_modseq)
            .expect("vanished"),
        [1, 3]
    );
    assert_eq!(
        drain(&mut inbox_rx),
        [
            Change::Expunged {
                uid: 1,
                modseq: source.highest_modseq + 1
            },
            Change::Expunged {
                uid: 3,
                modseq: source.highest_modseq + 2
            }
        ]
    );
    let appended = drain(&mut trash_rx);
    assert!(
        matches!(
            appended.as_slice(),
            [
                Change::Appended { uid: 1, .. },
                Change::Appended { uid: 2, .. }
            ]
        ),
        "{appended:?}"
    );
    assert_eq!(
        store
            .append(ALICE, INBOX, b"new", &[], None)
            .expect("append")
            .uid,
        4,
        "the moved UID 3 is not handed out again"
    );

    // Moving within one mailbox renumbers the messages.
    let got = store
        .move_messages(ALICE, INBOX, &[2], INBOX)
        .expect("self move");
    assert_eq!(got.pairs, [(2, 5)]);
    assert_eq!(
        store
            .messages(ALICE, INBOX)
            .expect("messages")
            .iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>(),
        [4, 5]
    );
    let changes = drain(&mut inbox_rx);
    assert!(
        matches!(
            changes.as_slice(),
            [
                Change::Appended { uid: 4, .. },
                Change::Appended { uid: 5, .. },
                Change::Expunged { uid: 2, .. }
            ]
        ),
        "{changes:?}"
    );
    let seqs = modseqs(&changes);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{changes:?}");
}

// ---- EXPUNGE ----

#[test]
fn expunge_deleted_removes_only_deleted_messages() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 5);
    store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 2, 4, 5],
            FlagOp::Add,
            &strings(&["\\deleted"]),
            None,
        )
        .expect("flag");
    let before = store.mailbox_status(ALICE, INBOX).expect("status");

    let removed = store
        .expunge_deleted(ALICE, INBOX, Some(&[5, 3, 2]))
        .expect("uid expunge");
    assert_eq!(removed, [2, 5], "3 is not \\Deleted, 1 and 4 are not named");
    let removed = store.expunge_deleted(ALICE, INBOX, None).expect("expunge");
    assert_eq!(removed, [1, 4]);
    assert!(
        store
            .expunge_deleted(ALICE, INBOX, None)
            .expect("again")
            .is_empty()
    );
    let after = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(after.exists, 1);
    assert_eq!(after.uidnext, before.uidnext);
    assert_eq!(after.highest_modseq, before.highest_modseq + 4);
    assert_eq!(
        store
            .expunged_since(ALICE, INBOX, before.highest_modseq)
            .expect("vanished"),
        [1, 2, 4, 5]
    );
    assert_eq!(
        store
            .append(ALICE, INBOX, b"x", &[], None)
            .expect("append")
            .uid,
        6
    );
    assert!(matches!(
        store.expunge_deleted(ALICE, "Nope", None),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

// ---- reads for CONDSTORE/QRESYNC and SELECT ----

/// An INBOX of four messages; then, after the returned mod-sequence, \Seen set on UID 3, UID 2
/// expunged and UID 5 appended.
fn inbox_changed_after_a_mark() -> (tempfile::TempDir, Store, u64) {
    let (dir, store) = store_with_accounts();
    append_n(&store, INBOX, 4);
    let mark = store
        .mailbox_status(ALICE, INBOX)
        .expect("status")
        .highest_modseq;
    store
        .store_flags(ALICE, INBOX, &[3], FlagOp::Add, &strings(&["\\Seen"]), None)
        .expect("flag");
    store.expunge(ALICE, INBOX, &[2]).expect("expunge");
    append_n(&store, INBOX, 1);
    (dir, store, mark)
}

#[test]
fn changes_since_reads_what_the_separate_reads_give_at_one_moment() {
    let (_dir, store, mark) = inbox_changed_after_a_mark();

    // Looked at first, then claimed: the peek leaves the new messages \Recent for the claim.
    let peeked = store
        .changes_since(ALICE, INBOX, mark, false)
        .expect("changes");
    let changes = store
        .changes_since(ALICE, INBOX, mark, true)
        .expect("changes");
    assert_eq!(peeked, changes);
    assert_eq!(
        changes.changed,
        store
            .messages_changed_since(ALICE, INBOX, mark)
            .expect("changed")
    );
    assert_eq!(changes.expunged, [2]);
    assert_eq!(
        changes.highest_modseq,
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .highest_modseq
    );
    assert!(!changes.recent.is_empty());
    // Claimed once only.
    assert!(
        store
            .changes_since(ALICE, INBOX, mark, true)
            .expect("again")
            .recent
            .is_empty()
    );
    assert!(matches!(
        store.changes_since(ALICE, "Nope", 0, true),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

#[test]
fn messages_with_uids_reads_only_those_present() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 6);
    store.expunge(ALICE, INBOX, &[4]).expect("expunge");
    let all = store.messages(ALICE, INBOX).expect("messages");
    let some = store
        .messages_with_uids(ALICE, INBOX, &[6, 2, 3, 4, 99, 2])
        .expect("some");
    assert_eq!(some.iter().map(|m| m.uid).collect::<Vec<_>>(), [2, 3, 6]);
    assert!(some.iter().all(|m| all.contains(m)));
    assert!(
        store
            .messages_with_uids(ALICE, INBOX, &[])
            .expect("none")
            .is_empty()
    );
}

#[test]
fn changes_since_a_modseq_are_listed() {
    let (_dir, store, mark) = inbox_changed_after_a_mark();

    let changed = store
        .messages_changed_since(ALICE, INBOX, mark)
        .expect("changed");
    assert_eq!(
        changed
            .iter()
            .map(|m| (m.uid, m.flags.clone()))
            .collect::<Vec<_>>(),
        [(3, strings(&["\\Seen"])), (5, vec![])]
    );
    assert!(changed.iter().all(|m| m.modseq > mark));
    assert_eq!(
        store.expunged_since(ALICE, INBOX, mark).expect("expunged"),
        [2]
    );
    assert!(
        store
            .expunged_since(ALICE, INBOX, mark + 2)
            .expect("later")
            .is_empty()
    );
    assert_eq!(
        store.messages_changed_since(ALICE, INBOX, 0).expect("all"),
        store.messages(ALICE, INBOX).expect("messages")
    );
    assert!(matches!(
        store.messages_changed_since(ALICE, "Nope", 0),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    assert!(matches!(
        store.expunged_since(ALICE, "Nope", 0),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

#[test]
fn mailbox_counts_report_unseen_messages() {
    let (_dir, store) = store_with_accounts();
    assert_eq!(
        store.mailbox_counts(ALICE, INBOX).expect("counts"),
        MailboxCounts {
            exists: 0,
            unseen: 0,
            first_unseen_uid: None
        }
    );
    append_n(&store, INBOX, 4);
    store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 3],
            FlagOp::Add,
            &strings(&["\\seen"]),
            None,
        )
        .expect("seen");
    store
        .store_flags(
            ALICE,
            INBOX,
            &[2],
            FlagOp::Add,
            &strings(&["\\Flagged"]),
            None,
        )
        .expect("flagged");
    assert_eq!(
        store.mailbox_counts(ALICE, "inbox").expect("counts"),
        MailboxCounts {
            exists: 4,
            unseen: 2,
            first_unseen_uid: Some(2)
        }
    );
    store
        .store_flags(
            ALICE,
            INBOX,
            &[2, 4],
            FlagOp::Add,
            &strings(&["\\Seen"]),
            None,
        )
        .expect("seen");
    assert_eq!(
        store.mailbox_counts(ALICE, INBOX).expect("counts"),
        MailboxCounts {
            exists: 4,
            unseen: 0,
            first_unseen_uid: None
        }
    );
    assert!(matches!(
        store.mailbox_counts(ALICE, "Nope"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

// ---- \Recent ----

#[test]
fn recent_is_claimed_by_exactly_one_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.ensure_account(ALICE).expect("alice");
    store.deliver(&[ALICE], b"1").expect("deliver");
    store.deliver(&[ALICE], b"2").expect("deliver");
    let other_session = store.clone();
    // Counting (IMAP STATUS) and peeking (EXAMINE) take nothing away.
    assert_eq!(store.peek_recent(ALICE, INBOX).expect("peek"), [1, 2]);
    assert_eq!(store.recent_count(ALICE, INBOX).expect("count"), 2);
    assert_eq!(store.recent_count(ALICE, INBOX).expect("count"), 2);
    assert_eq!(store.claim_recent(ALICE, INBOX).expect("claim"), [1, 2]);
    assert_eq!(store.recent_count(ALICE, INBOX).expect("count"), 0);
    assert!(
        other_session
            .claim_recent(ALICE, "inbox")
            .expect("claim")
            .is_empty()
    );
    store.deliver(&[ALICE], b"3").expect("deliver");
    store.expunge(ALICE, INBOX, &[1]).expect("expunge");
    assert_eq!(
        other_session.claim_recent(ALICE, INBOX).expect("claim"),
        [3]
    );
    assert!(store.claim_recent(ALICE, INBOX).expect("claim").is_empty());
    assert!(matches!(
        store.claim_recent(ALICE, "Nope"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
    store.deliver(&[ALICE], b"4").expect("deliver");
    drop((store, other_session));

    // After a restart nothing that arrived before is recent; new arrivals are.
    let store = Store::open(dir.path()).expect("reopen");
    assert!(store.claim_recent(ALICE, INBOX).expect("claim").is_empty());
    store.deliver(&[ALICE], b"5").expect("deliver");
    assert_eq!(store.claim_recent(ALICE, INBOX).expect("claim"), [5]);
    // A mailbox created since the start: all of its messages are new.
    store.create_mailbox(ALICE, "New").expect("create");
    store
        .copy_messages(ALICE, INBOX, &[2, 3], "New")
        .expect("copy");
    assert_eq!(store.claim_recent(ALICE, "New").expect("claim"), [1, 2]);
}

// ---- change notifications ----

#[test]
fn every_mutation_notifies_the_watchers_of_its_mailbox() {
    let (_dir, store) = store_with_accounts();
    let mut rx = store.watch(ALICE, INBOX).expect("watch");
    let base = store
        .mailbox_status(ALICE, INBOX)
        .expect("status")
        .highest_modseq;
    store.deliver(&[ALICE, BOB], b"1").expect("deliver");
    store.append(ALICE, INBOX, b"2", &[], None).expect("append");
    store
        .store_flags(
            ALICE,
            INBOX,
            &[1, 2],
            FlagOp::Add,
            &strings(&["\\Deleted"]),
            None,
        )
        .expect("flags");
    store
        .copy_messages(ALICE, INBOX, &[1], INBOX)
        .expect("copy");
    store
        .expunge_deleted(ALICE, INBOX, Some(&[1]))
        .expect("expunge deleted");
    store.expunge(ALICE, INBOX, &[2]).expect("expunge");
    let deleted = strings(&["\\Deleted"]);
    assert_eq!(
        drain(&mut rx),
        [
            Change::Appended {
                uid: 1,
                modseq: base + 1
            },
            Change::Appended {
                uid: 2,
                modseq: base + 2
            },
            Change::FlagsChanged {
                uid: 1,
                flags: deleted.clone(),
                modseq: base + 3
            },
            Change::FlagsChanged {
                uid: 2,
                flags: deleted,
                modseq: base + 4
            },
            Change::Appended {
                uid: 3,
                modseq: base + 5
            },
            Change::Expunged {
                uid: 1,
                modseq: base + 6
            },
            Change::Expunged {
                uid: 2,
                modseq: base + 7
            },
        ]
    );
    assert_eq!(
        store
            .mailbox_status(ALICE, INBOX)
            .expect("status")
            .highest_modseq,
        base + 7
    );
    // A no-op changes nothing and says nothing.
    store.expunge(ALICE, INBOX, &[1]).expect("gone already");
    store
        .store_flags(
            ALICE,
            INBOX,
            &[3],
            FlagOp::Remove,
            &strings(&["\\Seen"]),
            None,
        )
        .expect("no-op");
    assert!(drain(&mut rx).is_empty());
}

#[test]
fn concurrent_watchers_get_every_change_in_commit_order() {
    const WRITERS: usize = 4;
    const EACH: usize = 10;
    let (_dir, store) = store_with_accounts();
    let mut first = store.watch(ALICE, INBOX).expect("watch");
    let mut second = store.clone().watch(ALICE, "INBOX").expect("watch");
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    let uid = store
                        .append(ALICE, INBOX, format!("{t}/{i}").as_bytes(), &[], None)
                        .expect("append")
                        .uid;
                    store
                        .store_flags(
                            ALICE,
                            INBOX,
                            &[uid],
                            FlagOp::Add,
                            &strings(&["\\Seen"]),
                            None,
                        )
                        .expect("flag");
                    if i % 3 == 0 {
                        store.expunge(ALICE, INBOX, &[uid]).expect("expunge");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer panicked");
    }
    let a = drain(&mut first);
    let b = drain(&mut second);
    assert_eq!(a, b, "both watchers see the same sequence");
    let seqs = modseqs(&a);
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    let base = 1;
    assert_eq!(
        seqs,
        ((base + 1)..=status.highest_modseq).collect::<Vec<_>>(),
        "every mod-sequence once, in order: nothing lost or reordered"
    );
    let mut present = BTreeSet::new();
    for change in &a {
        match change {
            Change::Appended { uid, .. } => assert!(present.insert(*uid)),
            Change::Expunged { uid, .. } => assert!(present.remove(uid)),
            Change::FlagsChanged { uid, .. } => assert!(present.contains(uid)),
            Change::Deleted => panic!("not deleted"),
        }
    }
    assert_eq!(
        present.into_iter().collect::<Vec<_>>(),
        uids(&store, ALICE),
        "replaying the changes gives the mailbox's UIDs"
    );
}

#[test]
fn a_lagging_watcher_is_told_and_can_resync() {
    let (_dir, store) = store_with_accounts();
    append_n(&store, INBOX, 1);
    let mut rx = store.watch(ALICE, INBOX).expect("watch");
    // Doubling by copies: 1 + 2 + ... + 1024 appends, more than the channel holds.
    for _ in 0..11 {
        let all = uids(&store, ALICE);
        store
            .copy_messages(ALICE, INBOX, &all, INBOX)
            .expect("copy");
    }
    match rx.try_recv() {
        Err(TryRecvError::Lagged(n)) => assert!(n > 0),
        other => panic!("expected Lagged, got {other:?}"),
    }
    // After the lag the newest changes are still there, ending with the last one made.
    let rest = drain(&mut rx);
    assert_eq!(rest.len(), watch::WATCH_CAPACITY);
    let status = store.mailbox_status(ALICE, INBOX).expect("status");
    assert_eq!(
        rest.last(),
        Some(&Change::Appended {
            uid: status.uidnext - 1,
            modseq: status.highest_modseq
        })
    );
}

#[test]
fn watchers_of_other_mailboxes_hear_nothing() {
    let (_dir, store) = store_with_accounts();
    let mut sent = store.watch(ALICE, "Sent").expect("watch");
    let mut bob = store.watch(BOB, INBOX).expect("watch");
    store.deliver(&[ALICE], b"x").expect("deliver");
    store
        .store_flags(ALICE, INBOX, &[1], FlagOp::Add, &strings(&["\\Seen"]), None)
        .expect("flag");
    store
        .copy_messages(ALICE, INBOX, &[1], "Trash")
        .expect("copy");
    store.expunge(ALICE, INBOX, &[1]).expect("expunge");
    store.create_mailbox(ALICE, "Other").expect("create");
    store
        .rename_mailbox(ALICE, "Other", "Renamed")
        .expect("rename");
    store.delete_mailbox(ALICE, "Renamed").expect("delete");
    assert!(matches!(sent.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(bob.try_recv(), Err(TryRecvError::Empty)));
    // Still connected: a change to the watched mailbox arrives.
    store
        .append(ALICE, "Sent", b"y", &[], None)
        .expect("append");
    assert!(matches!(
        drain(&mut sent).as_slice(),
        [Change::Appended { uid: 1, .. }]
    ));
}

#[test]
fn deleting_or_renaming_a_watched_mailbox_ends_its_watch() {
    let (_dir, store) = store_with_accounts();
    store
        .create_mailbox_with_parents(ALICE, "Work/Sub")
        .expect("create");
    store.create_mailbox(ALICE, "Gone").expect("create");
    let mut work = store.watch(ALICE, "Work").expect("watch");
    let mut sub = store.watch(ALICE, "Work/Sub").expect("watch");
    let mut gone = store.watch(ALICE, "Gone").expect("watch");
    store.rename_mailbox(ALICE, "Work", "Job").expect("rename");
    store.delete_mailbox(ALICE, "Gone").expect("delete");
    for rx in [&mut work, &mut sub, &mut gone] {
        assert_eq!(rx.try_recv(), Ok(Change::Deleted));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }
    // The renamed mailbox can be watched again under its new name.
    let mut job = store.watch(ALICE, "Job").expect("watch");
    append_n(&store, "Job", 1);
    assert_eq!(drain(&mut job).len(), 1);
    assert!(matches!(
        store.watch(ALICE, "Work"),
        Err(StoreError::NoSuchMailbox { .. })
    ));
}

#[test]
fn senders_of_unwatched_mailboxes_are_dropped() {
    let (_dir, store) = store_with_accounts();
    let rx = store.watch(ALICE, INBOX).expect("watch");
    let trash = store.watch(ALICE, "Trash").expect("watch");
    assert_eq!(store.inner.watchers.len(), 2);
    drop(rx);
    // The next change to an unwatched mailbox drops its sender ...
    store.deliver(&[ALICE], b"x").expect("deliver");
    assert_eq!(store.inner.watchers.len(), 1);
    // ... and so does the next watch, for mailboxes nobody changed.
    drop(trash);
    let _sent = store.watch(ALICE, "Sent").expect("watch");
    assert_eq!(store.inner.watchers.len(), 1);
}

// ---- invariants under random operations ----

/// Mailboxes the random operations use.
const MAILBOXES: [&str; 3] = [INBOX, "Archive", "Trash"];

/// Flags the random operations use, in several cases.
const FLAG_POOL: [&str; 6] = [
    "\\Seen",
    "\\seen",
    "\\Deleted",
    "\\Flagged",
    "$Label",
    "$LABEL",
];

#[derive(Debug, Clone)]
enum Op {
    Deliver,
    Append {
        mailbox: usize,
        flags: Vec<usize>,
    },
    Store {
        mailbox: usize,
        picks: Vec<usize>,
        op: FlagOp,
        flags: Vec<usize>,
        /// How far below HIGHESTMODSEQ to put UNCHANGEDSINCE.
        unchanged_since_back: Option<u64>,
    },
    Copy {
        from: usize,
        to: usize,
        picks: Vec<usize>,
    },
    Move {
        from: usize,
        to: usize,
        picks: Vec<usize>,
    },
    Expunge {
        mailbox: usize,
        picks: Vec<usize>,
    },
    ExpungeDeleted {
        mailbox: usize,
        only: Option<Vec<usize>>,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let mailbox = 0..MAILBOXES.len();
    // Indices into the mailbox's current UIDs; large ones name UIDs that are not there.
    let picks = proptest::collection::vec(0usize..12, 0..6);
    let flags = proptest::collection::vec(0..FLAG_POOL.len(), 0..3);
    let flag_op = prop_oneof![
        Just(FlagOp::Add),
        Just(FlagOp::Remove),
        Just(FlagOp::Replace)
    ];
    prop_oneof![
        Just(Op::Deliver),
        (mailbox.clone(), flags.clone()).prop_map(|(mailbox, flags)| Op::Append { mailbox, flags }),
        (
            mailbox.clone(),
            picks.clone(),
            flag_op,
            flags,
            proptest::option::of(0u64..4)
        )
            .prop_map(
                |(mailbox, picks, op, flags, unchanged_since_back)| Op::Store {
                    mailbox,
                    picks,
                    op,
                    flags,
                    unchanged_since_back
                }
            ),
        (mailbox.clone(), mailbox.clone(), picks.clone()).prop_map(|(from, to, picks)| Op::Copy {
            from,
            to,
            picks
        }),
        (mailbox.clone(), mailbox.clone(), picks.clone()).prop_map(|(from, to, picks)| Op::Move {
            from,
            to,
            picks
        }),
        (mailbox.clone(), picks.clone())
            .prop_map(|(mailbox, picks)| Op::Expunge { mailbox, picks }),
        (mailbox, proptest::option::of(picks))
            .prop_map(|(mailbox, only)| Op::ExpungeDeleted { mailbox, only }),
    ]
}

/// What the store should hold, per mailbox: UID -> (lower-cased flags, modseq).
#[derive(Debug, Default, Clone)]
struct ModelBox {
    messages: std::collections::BTreeMap<u32, (BTreeSet<String>, u64)>,
    uidnext: u32,
    highest_modseq: u64,
}

impl ModelBox {
    fn append(&mut self, flags: BTreeSet<String>) -> u32 {
        let uid = self.uidnext;
        self.uidnext += 1;
        self.highest_modseq += 1;
        self.messages.insert(uid, (flags, self.highest_modseq));
        uid
    }

    fn expunge(&mut self, uids: &BTreeSet<u32>) -> Vec<u32> {
        let mut removed = Vec::new();
        for uid in uids {
            if self.messages.remove(uid).is_some() {
                self.highest_modseq += 1;
                removed.push(*uid);
            }
        }
        removed
    }

    /// The UIDs picked by indices into the current UIDs; indices past the end pick absent UIDs.
    fn pick(&self, picks: &[usize]) -> Vec<u32> {
        let uids: Vec<u32> = self.messages.keys().copied().collect();
        picks
            .iter()
            .map(|&i| uids.get(i).copied().unwrap_or(self.uidnext + i as u32))
            .collect()
    }
}

fn lower(flags: &[String]) -> BTreeSet<String> {
    flags.iter().map(|f| f.to_ascii_lowercase()).collect()
}

fn pool(indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| FLAG_POOL[i].to_owned()).collect()
}

/// Checks the store against the model and the invariants every mailbox must keep.
fn check_invariants(
    store: &Store,
    model: &[ModelBox],
    uidvalidity: &[u32],
    ever_assigned: &[u32],
) -> Result<(), TestCaseError> {
    for (i, name) in MAILBOXES.iter().enumerate() {
        let status = store.mailbox_status(ALICE, name).expect("status");
        let metas = store.messages(ALICE, name).expect("messages");
        let counts = store.mailbox_counts(ALICE, name).expect("counts");
        prop_assert_eq!(
            status.uidvalidity,
            uidvalidity[i],
            "UIDVALIDITY of {}",
            name
        );
        prop_assert!(
            metas.windows(2).all(|w| w[0].uid < w[1].uid),
            "UIDs ascend in {}",
            name
        );
        prop_assert!(
            status.uidnext > ever_assigned[i],
            "UIDNEXT of {} above every UID",
            name
        );
        prop_assert!(
            metas
                .iter()
                .all(|m| m.uid < status.uidnext && m.modseq <= status.highest_modseq)
        );
        prop_assert_eq!(status.exists as usize, metas.len());
        prop_assert_eq!(counts.exists as usize, metas.len());
        let unseen: Vec<u32> = metas
            .iter()
            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
            .map(|m| m.uid)
            .collect();
        prop_assert_eq!(counts.unseen as usize, unseen.len());
        prop_assert_eq!(counts.first_unseen_uid, unseen.first().copied());
        for m in &metas {
            let mut sorted = m.flags.clone();
            flags::sort(&mut sorted);
            prop_assert_eq!(&sorted, &m.flags, "flags sorted");
        }
        let expunged = store.expunged_since(ALICE, name, 0).expect("expunged");
        prop_assert!(
            expunged
                .iter()
                .all(|uid| metas.binary_search_by_key(uid, |m| m.uid).is_err())
        );

        let want = &model[i];
        prop_assert_eq!(status.uidnext, want.uidnext);
        prop_assert_eq!(status.highest_modseq, want.highest_modseq);
        let got: Vec<(u32, BTreeSet<String>, u64)> = metas
            .iter()
            .map(|m| (m.uid, lower(&m.flags), m.modseq))
            .collect();
        let expected: Vec<(u32, BTreeSet<String>, u64)> = want
            .messages
            .iter()
            .map(|(uid, (flags, modseq))| (*uid, flags.clone(), *modseq))
            .collect();
        prop_assert_eq!(got, expected, "messages of {}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op_strategy(), 1..30)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.ensure_account(ALICE).expect("alice");
        store.create_mailbox(ALICE, "Archive").expect("archive");
        let mut model: Vec<ModelBox> = Vec::new();
        let mut uidvalidity = Vec::new();
        let mut watchers = Vec::new();
        for name in MAILBOXES {
            let status = store.mailbox_status(ALICE, name).expect("status");
            model.push(ModelBox { uidnext: status.uidnext, highest_modseq: status.highest_modseq, ..ModelBox::default() });
            uidvalidity.push(status.uidvalidity);
            watchers.push(store.watch(ALICE, name).expect("watch"));
        }
        let mut ever_assigned = vec![0u32; MAILBOXES.len()];

        for op in ops {
            match op {
                Op::Deliver => {
                    let uid = store.deliver(&[ALICE], b"d").expect("deliver")[0].uid;
                    prop_assert_eq!(uid, model[0].append(BTreeSet::new()));
                    ever_assigned[0] = ever_assigned[0].max(uid);
                }
                Op::Append { mailbox, flags } => {
                    let flags = pool(&flags);
                    let got = store.append(ALICE, MAILBOXES[mailbox], b"a", &flags, None).expect("append");
                    prop_assert!(got.uid > ever_assigned[mailbox], "UID not reused");
                    prop_assert_eq!(got.uid, model[mailbox].append(lower(&flags)));
                    ever_assigned[mailbox] = got.uid;
                }
                Op::Store { mailbox, picks, op, flags, unchanged_since_back } => {
                    let uids = model[mailbox].pick(&picks);
                    let since = unchanged_since_back.map(|back| model[mailbox].highest_modseq.saturating_sub(back));
                    let given = lower(&pool(&flags));
                    let got = store
                        .store_flags(ALICE, MAILBOXES[mailbox], &uids, op, &pool(&flags), since)
                        .expect("store");
                    let mine = &mut model[mailbox];
                    let mut changed = Vec::new();
                    let mut failed = Vec::new();
                    for uid in uids.iter().copied().collect::<BTreeSet<u32>>() {
                        let Some((current, modseq)) = mine.messages.get_mut(&uid) else { continue };
                        if since.is_some_and(|s| *modseq > s) {
                            failed.push(uid);
                            continue;
                        }
                        let new: BTreeSet<String> = match op {
                            FlagOp::Add => current.union(&given).cloned().collect(),
                            FlagOp::Remove => current.difference(&given).cloned().collect(),
                            FlagOp::Replace => given.clone(),
                        };
                        if new != *current {
                            mine.highest_modseq += 1;
                            *current = new;
                            *modseq = mine.highest_modseq;
                            changed.push((uid, *modseq));
                        }
                    }
                    prop_assert_eq!(got.failed_modified, failed);
                    prop_assert_eq!(got.changed.iter().map(|c| (c.uid, c.modseq)).collect::<Vec<_>>(), changed);
                }
                Op::Copy { from, to, ref picks } | Op::Move { from, to, ref picks } => {
                    let moving = matches!(op, Op::Move { .. });
                    let uids = model[from].pick(picks);
                    let got = if moving {
                        store.move_messages(ALICE, MAILBOXES[from], &uids, MAILBOXES[to])
                    } else {
                        store.copy_messages(ALICE, MAILBOXES[from], &uids, MAILBOXES[to])
                    }
                    .expect("copy or move");
                    prop_assert_eq!(got.uidvalidity, uidvalidity[to]);
                    let sources: Vec<(u32, BTreeSet<String>)> = uids
                        .iter()
                        .copied()
                        .collect::<BTreeSet<u32>>()
                        .into_iter()
                        .filter_map(|uid| model[from].messages.get(&uid).map(|(f, _)| (uid, f.clone())))
                        .collect();
                    let mut pairs = Vec::new();
                    for (uid, flags) in &sources {
                        pairs.push((*uid, model[to].append(flags.clone())));
                    }
                    prop_assert_eq!(&got.pairs, &pairs);
                    if let Some(&(_, last)) = pairs.last() {
                        prop_assert!(pairs.first().is_some_and(|&(_, first)| first > ever_assigned[to]), "UID not reused");
                        ever_assigned[to] = last;
                    }
                    if moving {
                        let gone: BTreeSet<u32> = sources.iter().map(|(uid, _)| *uid).collect();
                        model[from].expunge(&gone);
                    }
                }
                Op::Expunge { mailbox, picks } => {
                    let uids = model[mailbox].pick(&picks);
                    let got = store.expunge(ALICE, MAILBOXES[mailbox], &uids).expect("expunge");
                    let want = model[mailbox].expunge(&uids.into_iter().collect());
                    prop_assert_eq!(got, want);
                }
                Op::ExpungeDeleted { mailbox, only } => {
                    let only = only.map(|picks| model[mailbox].pick(&picks));
                    let got = store
                        .expunge_deleted(ALICE, MAILBOXES[mailbox], only.as_deref())
                        .expect("expunge deleted");
                    let deleted: BTreeSet<u32> = model[mailbox]
                        .messages
                        .iter()
                        .filter(|(uid, (flags, _))| {
                            flags.contains("\\deleted") && only.as_ref().is_none_or(|o| o.contains(uid))
                        })
                        .map(|(uid, _)| *uid)
                        .collect();
                    prop_assert_eq!(got, model[mailbox].expunge(&deleted));
                }
            }
            check_invariants(&store, &model, &uidvalidity, &ever_assigned)?;
        }

        // Each watcher saw its mailbox's changes with strictly increasing mod-sequences, and
        // replaying them gives the mailbox's UIDs.
        for (i, rx) in watchers.iter_mut().enumerate() {
            let changes = drain(rx);
            let seqs = modseqs(&changes);
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?}", changes);
            let mut present = BTreeSet::new();
            for change in &changes {
                match change {
                    Change::Appended { uid, .. } => { present.insert(*uid); }
                    Change::Expunged { uid, .. } => { present.remove(uid); }
                    Change::FlagsChanged { .. } | Change::Deleted => {}
                }
            }
            prop_assert_eq!(present, model[i].messages.keys().copied().collect::<BTreeSet<u32>>());
        }
    }
}

#[test]
fn the_uid_reuse_fault_hands_out_expunged_uids_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.ensure_account(ALICE).expect("alice");
    store.deliver(&[ALICE], b"1").expect("deliver");
    store.deliver(&[ALICE], b"2").expect("deliver");
    store.expunge(ALICE, INBOX, &[2]).expect("expunge");
    assert_eq!(
        store
            .append(ALICE, INBOX, b"3", &[], None)
            .expect("append")
            .uid,
        3,
        "a correct store never reuses a UID"
    );
    store.set_reuse_uids(true);
    store.expunge(ALICE, INBOX, &[3]).expect("expunge");
    assert_eq!(
        store
            .append(ALICE, INBOX, b"4", &[], None)
            .expect("append")
            .uid,
        2,
        "with the fault, the UID after the highest one left"
    );
}

// ---- outbound queue ----

fn incoming<'a>(local: &'a [&'a str], remote: &'a [&'a str], message: &'a [u8]) -> Incoming<'a> {
    Incoming {
        sender: ALICE,
        local,
        remote,
        message,
        queue_id: "Q1",
    }
}

fn queued(store: &Store) -> Vec<(String, String, u32)> {
    store
        .outbound_queue()
        .expect("queue")
        .into_iter()
        .flat_map(|job| {
            job.recipients
                .into_iter()
                .map(move |r| (job.domain.clone(), r.address, r.attempts))
        })
        .collect()
}

#[test]
fn accept_files_local_copies_and_queues_remote_recipients_together() {
    let (dir, store) = store_with_accounts();
    let remote = ["carol@b.test", "Carol@B.test", "dave@c.test"];
    let accepted = store
        .accept(&incoming(&[BOB], &remote, b"hello"))
        .expect("accept");
    assert_eq!(accepted.delivered.len(), 1);
    assert_eq!(accepted.queued, 2, "a recipient named twice is queued once");
    assert_eq!(uids(&store, BOB), [1]);
    drop(store);
    // The queue is durable.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        queued(&store),
        [
            ("b.test".into(), "carol@b.test".into(), 0),
            ("c.test".into(), "dave@c.test".into(), 0)
        ]
    );
    let job = &store.outbound_queue().expect("queue")[0];
    assert_eq!(job.sender, ALICE);
    assert_eq!(job.queue_id, "Q1");
    assert_eq!(store.outbound_body(&job.blob).expect("body"), b"hello");
}

#[test]
fn queued_bodies_read_back_whether_rows_or_files() {
    let (dir, store) = store_with_accounts();
    let large = large_body("Subject: big\r\n\r\n");
    store
        .accept(&incoming(&[], &["carol@b.test"], b"small"))
        .expect("small");
    store
        .accept(&incoming(&[], &["dave@c.test"], &large))
        .expect("large");
    assert_eq!(inline_bodies(&store), [blobs::sha256_hex(b"small")]);
    assert_eq!(blob_files(dir.path()).len(), 1);
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let bodies: Vec<(String, Vec<u8>)> = store
        .outbound_queue()
        .expect("queue")
        .into_iter()
        .map(|job| {
            let body = store.outbound_body(&job.blob).expect("body");
            (job.domain, body)
        })
        .collect();
    assert_eq!(
        bodies,
        [
            ("b.test".into(), b"small".to_vec()),
            ("c.test".into(), large)
        ]
    );
}

#[test]
fn accept_with_an_unknown_local_account_queues_nothing() {
    let (_dir, store) = store_with_accounts();
    let err = store
        .accept(&incoming(&["nobody@example.test"], &["carol@b.test"], b"x"))
        .expect_err("unknown account");
    assert!(matches!(err, StoreError::NoSuchAccount(_)), "{err}");
    assert!(queued(&store).is_empty());
    assert_eq!(store.next_outbound_due().expect("due"), None);
}

#[test]
fn due_jobs_group_recipients_by_message_and_domain() {
    let (_dir, store) = store_with_accounts();
    let remote = ["a@b.test", "b@b.test", "c@c.test"];
    store.accept(&incoming(&[], &remote, b"m")).expect("accept");
    let due = store.due_outbound(now_ms() + 1, 100).expect("due");
    let shape: Vec<(String, usize)> = due
        .iter()
        .map(|j| (j.domain.clone(), j.recipients.len()))
        .collect();
    assert_eq!(shape, [("b.test".into(), 2), ("c.test".into(), 1)]);
    assert!(
        store
            .due_outbound(now_ms() - 60_000, 100)
            .expect("due")
            .is_empty(),
        "nothing is due before it was queued"
    );
}

#[test]
fn settling_retries_removes_and_bounces_in_one_step() {
    let (_dir, store) = store_with_accounts();
    store
        .accept(&incoming(&[], &["a@b.test", "c@c.test"], b"m"))
        .expect("accept");
    let id = store.outbound_queue().expect("queue")[0].message_id;
    let later = now_ms() + 3_600_000;
    store
        .settle_outbound(
            id,
            &[(
                "a@b.test",
                Settle::Retry {
                    at_ms: later,
                    error: "451 try later".into(),
                },
            )],
            None,
        )
        .expect("retry");
    let queue = store.outbound_queue().expect("queue");
    assert_eq!(
        queue[0].domain, "c.test",
        "the queue lists the earliest due first"
    );
    let job = &queue[1];
    assert_eq!(job.recipients[0].attempts, 1);
    assert_eq!(job.recipients[0].next_attempt, later);
    assert_eq!(
        job.recipients[0].last_error.as_deref(),
        Some("451 try later")
    );
    assert_eq!(store.due_outbound(now_ms(), 10).expect("due").len(), 1);

    // c@c.test fails for good: its bounce reaches alice's INBOX in the same transaction.
    let dsn = Incoming {
        sender: "",
        local: &[ALICE],
        remote: &[],
        message: b"bounce",
        queue_id: "Q2",
    };
    store
        .settle_outbound(id, &[("c@c.test", Settle::Done)], Some(&dsn))
        .expect("bounce");
    assert_eq!(uids(&store, ALICE), [1]);
    assert_eq!(
        store.read_message(ALICE, INBOX, 1).expect("read"),
        b"bounce"
    );
    assert_eq!(queued(&store).len(), 1);
    store
        .settle_outbound(id, &[("a@b.test", Settle::Done)], None)
        .expect("done");
    assert!(queued(&store).is_empty());
    let rows: i64 = store
        .conn()
        .expect("conn")
        .query_row("SELECT count(*) FROM outbound", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0, "the message row goes with its last recipient");
}

#[test]
fn expunged_messages_stay_readable_while_the_mailbox_is_watched() {
    let (_dir, store) = store_with_accounts();
    let large = large_body("ghost");
    store
        .append(ALICE, INBOX, b"small", &strings(&["$Label"]), None)
        .expect("append");
    store
        .append(ALICE, INBOX, &large, &[], None)
        .expect("append");
    store
        .append(ALICE, INBOX, b"unwatched", &[], None)
        .expect("append");
    let watch = store.watch(ALICE, INBOX).expect("watch");
    assert_eq!(
        store.expunge(ALICE, INBOX, &[1, 2]).expect("expunge"),
        [1, 2]
    );
    assert!(store.messages(ALICE, INBOX).expect("list").len() == 1);
    let ghosts = store
        .expunged_messages(ALICE, INBOX, &[1, 2, 3, 9])
        .expect("ghosts");
    let uids: Vec<u32> = ghosts.iter().map(|m| m.uid).collect();
    assert_eq!(
        uids,
        [1, 2],
        "only the expunged ones, not a live or unknown UID"
    );
    assert_eq!(ghosts[0].flags, strings(&["$Label"]));
    assert_eq!(ghosts[1].size, large.len() as u64);
    assert_eq!(
        store.read_expunged(ALICE, INBOX, 1).expect("inline"),
        b"small"
    );
    assert_eq!(store.read_expunged(ALICE, INBOX, 2).expect("file"), large);
    assert!(matches!(
        store.read_expunged(ALICE, INBOX, 3),
        Err(StoreError::NoSuchMessage { uid: 3, .. })
    ));
    // A COPY naming one takes it along, with its flags; an unknown UID is still ignored.
    let copied = store
        .copy_messages(ALICE, INBOX, &[1, 3, 9], INBOX)
        .expect("copy");
    assert_eq!(copied.pairs, [(1, 4), (3, 5)]);
    let copies = store.messages(ALICE, INBOX).expect("list");
    assert_eq!(copies[1].flags, strings(&["$Label"]));
    assert_eq!(store.read_message(ALICE, INBOX, 4).expect("copy"), b"small");
    // Once nobody has the mailbox selected, nobody can still list them: the next expunge
    // drops them, and keeps nothing of its own.
    drop(watch);
    store.expunge(ALICE, INBOX, &[3, 4, 5]).expect("expunge");
    assert!(
        store
            .expunged_messages(ALICE, INBOX, &[1, 2, 3])
            .expect("ghosts")
            .is_empty()
    );
}

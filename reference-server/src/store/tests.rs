//! Behaviour of the store through its public API, on a real directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;

use proptest::prelude::*;

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

    let err = store
        .deliver(&[ALICE, "ghost@example.test", BOB], b"never stored")
        .expect_err("unknown recipient");
    assert!(
        matches!(&err, StoreError::NoSuchAccount(a) if a == "ghost@example.test"),
        "{err}"
    );
    assert!(err.to_string().contains("ghost@example.test"), "{err}");

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
        blob_files(dir.path()).len(),
        1,
        "refused body left a blob file"
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
    assert!(blob_files(dir.path()).is_empty());
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
    let body = b"Subject: same\r\n\r\nsame body\r\n";
    store.deliver(&[ALICE, BOB], body).expect("first");
    store.deliver(&[ALICE], body).expect("second");
    store.deliver(&[BOB], b"different").expect("third");
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
}

#[test]
fn damaged_blob_is_reported_not_served() {
    let (dir, store) = store_with_accounts();
    store.deliver(&[ALICE], b"precious").expect("deliver");
    let files = blob_files(dir.path());
    fs::write(&files[0], b"tampered").expect("tamper");
    let err = store.read_message(ALICE, INBOX, 1).expect_err("corruption");
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
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
    assert!(matches!(
        store.mailbox_status(ALICE, INBOX),
        Err(StoreError::LockPoisoned)
    ));
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

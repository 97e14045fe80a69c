//! Message bodies as content-addressed files: `<root>/<first 2 hex>/<sha-256 hex>`.
//!
//! Naming a file by its hash lets every recipient of a message, and every later copy of it, share
//! one file, and makes a half-written file impossible to mistake for a whole one: a body only ever
//! appears under its final name by an atomic rename after it was fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::error::{IoContext, StoreError};

/// Length of a SHA-256 digest in lowercase hex.
const HASH_HEX_LEN: usize = 64;

/// Prefix of temporary files, so a crash's leftovers are recognisable and never look like a blob.
const TEMP_PREFIX: &str = ".tmp-";

/// Makes temporary names unique among threads of this process; the pid covers other processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory holding message bodies.
#[derive(Debug)]
pub(super) struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// Opens `root`, creating it (durably) if needed.
    pub(super) fn open(root: PathBuf) -> Result<BlobDir, StoreError> {
        create_dir_durably(&root)?;
        Ok(BlobDir { root })
    }

    /// Stores `data` durably and returns its SHA-256 in lowercase hex.
    ///
    /// When this returns, the file and its directory entry are on disk.
    pub(super) fn put(&self, data: &[u8]) -> Result<String, StoreError> {
        let hash = sha256_hex(data);
        let dir = self.root.join(&hash[..2]);
        create_dir_durably(&dir)?;
        let path = dir.join(&hash);
        match fs::metadata(&path) {
            // A length mismatch can only mean damage from outside; rewriting repairs it.
            // The directory is synced anyway: another writer may have renamed the file in but
            // not yet made the entry durable, and our 250 must not depend on its progress.
            Ok(meta) if meta.is_file() && meta.len() == data.len() as u64 => {
                sync_dir(&dir)?;
                return Ok(hash);
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        }
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{hash}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = write_synced(&temp, data).and_then(|()| fs::rename(&temp, &path).at(&path))
        {
            // Best effort: the temp name is ours alone, and the original error is the one to report.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(&dir)?;
        Ok(hash)
    }

    /// Reads the blob stored under `hash`, checking that its content still has that hash.
    pub(super) fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(hash)?;
        let data = fs::read(&path).at(&path)?;
        let actual = sha256_hex(&data);
        if actual != hash {
            return Err(StoreError::CorruptBlob {
                path,
                reason: format!("content hashes to {actual}"),
            });
        }
        Ok(data)
    }

    /// The file a blob lives in; refuses names that are not a hash, since they come from the
    /// database and must never point outside the blob directory.
    fn path_of(&self, hash: &str) -> Result<PathBuf, StoreError> {
        let well_formed = hash.len() == HASH_HEX_LEN
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(StoreError::CorruptBlob {
                path: self.root.clone(),
                reason: format!("database names blob {hash:?}, which is not a SHA-256 hex digest"),
            });
        }
        Ok(self.root.join(&hash[..2]).join(hash))
    }
}

/// SHA-256 of `data` in lowercase hex.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(HASH_HEX_LEN);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Writes `data` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .at(path)?;
    file.write_all(data).at(path)?;
    file.sync_all().at(path)
}

/// Creates `dir` if missing and fsyncs its parent, so the new entry survives a crash.
fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    match fs::create_dir(dir) {
        Ok(()) => match dir.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        },
        // Another thread or process may have created it first; that is just as good.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).at(dir),
    }
}

/// Fsyncs a directory, making renames and creations inside it durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Other platforms cannot open a directory as a file; their rename is as durable as it gets.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in fs::read_dir(root).expect("read root") {
            let sub = sub.expect("entry").path();
            for file in fs::read_dir(&sub).expect("read subdir") {
                out.push(file.expect("entry").path());
            }
        }
        out
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn put_lays_out_by_prefix_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blobs = BlobDir::open(tmp.path().join("blobs")).expect("open");
        let hash = blobs.put(b"abc").expect("put");
        let files = files_under(&tmp.path().join("blobs"));
        assert_eq!(files, vec![tmp.path().join("blobs/ba").join(&hash)]);
        assert_eq!(blobs.get(&hash).expect("get"), b"abc");
    }

    #[test]
    fn put_repairs_a_truncated_blob() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blobs = BlobDir::open(tmp.path().to_path_buf()).expect("open");
        let hash = blobs.put(b"hello world").expect("put");
        let path = blobs.path_of(&hash).expect("path");
        fs::write(&path, b"hello").expect("truncate");
        assert!(matches!(
            blobs.get(&hash),
            Err(StoreError::CorruptBlob { .. })
        ));
        blobs.put(b"hello world").expect("put again");
        assert_eq!(blobs.get(&hash).expect("get"), b"hello world");
    }

    #[test]
    fn get_refuses_names_that_are_not_hashes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blobs = BlobDir::open(tmp.path().to_path_buf()).expect("open");
        let err = blobs.get("../../etc/passwd").expect_err("must refuse");
        assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
    }
}

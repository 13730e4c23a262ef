//! One process per SQLite database file.
//!
//! `serve` holds an exclusive `flock` on a sidecar file, `<database>.lock`, for as long as its
//! store is open; a second process on the same database cannot take it and refuses to start.
//! The kernel drops the lock when the holder exits, however it exits (SIGKILL included), so a
//! crash never leaves a stale lock behind; the process id written into the file only serves
//! the refusal message.
//!
//! Why a sidecar and not SQLite's own locking: `PRAGMA locking_mode = EXCLUSIVE` would keep
//! every other connection out, readers included, so `abort-bot audit` (which opens the
//! database read-only beside a running `serve`) could not read it. SQLite never looks at the
//! sidecar, so readers are not blocked and SQLite's own locks work as always. Locking the
//! database file itself with `flock` would also leave readers alone on a local disk, but on
//! NFS Linux emulates `flock` with the same byte-range locks SQLite takes, and the two would
//! collide.
//!
//! Within one process the lock is shared: every store opened on the same file takes the
//! same lock (SQLite itself is fine with several connections in one process, and the rule is
//! about processes). It is released when the last of them closes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::StoreError;

/// The locks this process holds, by canonical lock file path.
static HELD: LazyLock<Mutex<HashMap<PathBuf, Weak<ProcessLock>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long to wait for a lock this same process is releasing (its last store closing).
const OWN_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// An exclusive lock on a database file for this process; released when dropped.
pub(super) struct ProcessLock {
    key: PathBuf,
    file: Option<File>,
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        // Close (and so unlock) before forgetting the entry: a store opening meanwhile
        // sees the entry and waits instead of finding the file locked by this very process.
        drop(self.file.take());
        if held.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            held.remove(&self.key);
        }
    }
}

/// The sidecar lock file of a database file.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock on `db` for this process, or says which process holds it. The flag is
/// true when the lock was taken just now (no store of this process had the file open):
/// whatever the file records as in progress was left by a process that is gone.
pub(super) fn acquire(db: &Path) -> Result<(Arc<ProcessLock>, bool), StoreError> {
    let path = lock_path(db);
    let io = |what: &str, e: std::io::Error| {
        StoreError::Sqlite(format!(
            "cannot {what} the lock file {}: {e}",
            path.display()
        ))
    };
    let deadline = Instant::now() + OWN_RELEASE_WAIT;
    loop {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open", e))?;
        let key = std::fs::canonicalize(&path).map_err(|e| io("resolve", e))?;
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
            return Ok((lock, false));
        }
        match file.try_lock() {
            Ok(()) => {
                // Only for the message a second process prints.
                let pid = format!("{}\n", std::process::id());
                file.set_len(0).map_err(|e| io("write", e))?;
                file.write_all(pid.as_bytes()).map_err(|e| io("write", e))?;
                let lock = Arc::new(ProcessLock {
                    key: key.clone(),
                    file: Some(file),
                });
                held.insert(key, Arc::downgrade(&lock));
                return Ok((lock, true));
            }
            // This process's last store on the file is closing right now: wait for it.
            Err(TryLockError::WouldBlock)
                if held.contains_key(&key) && Instant::now() < deadline =>
            {
                drop(held);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    database: db.display().to_string(),
                    holder: holder_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", e)),
        }
    }
}

/// The process id the holder wrote, if it did.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

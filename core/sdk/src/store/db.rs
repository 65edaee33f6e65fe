//! Connections: pinned pragmas, the reader pool, busy retries and quarantine of corrupt files.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use super::error::{Result, StoreError};

/// How long SQLite's own busy handler waits for a lock before returning `SQLITE_BUSY` to us.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn open_connection(path: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::CannotOpen => {
            StoreError::CannotOpen(std::io::Error::other("sqlite could not open the file"))
        }
        e => e.into(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Sets the pragmas every connection must run with. `journal_mode` is persistent in the file and
/// is set by the writer only.
pub(crate) fn apply_pragmas(
    conn: &Connection,
    writer: bool,
    durability: super::Durability,
) -> Result<()> {
    if writer {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::PragmaMismatch {
                pragma: "journal_mode",
                expected: "wal".into(),
                found: mode,
            });
        }
    }
    // FULL: a commit is on stable storage when it returns (survives power loss); NORMAL in WAL
    // mode: a commit is in the WAL file when it returns (survives a process kill), flushed at
    // checkpoints. See `Durability`.
    conn.pragma_update(None, "synchronous", durability.synchronous().0)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Freed pages are zeroed, so deleted ciphertext and destroyed wrapped keys do not linger in
    // the main file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if !writer {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    verify_pragmas(conn, durability)
}

/// Asserts the pinned pragmas; any drift is a typed error instead of silently weaker guarantees.
pub(crate) fn verify_pragmas(conn: &Connection, durability: super::Durability) -> Result<()> {
    let check = |pragma: &'static str, expected: &str| -> Result<()> {
        let found: String = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| {
            let v: rusqlite::types::Value = r.get(0)?;
            Ok(match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t.to_ascii_lowercase(),
                _ => String::new(),
            })
        })?;
        if found == expected {
            Ok(())
        } else {
            Err(StoreError::PragmaMismatch {
                pragma,
                expected: expected.into(),
                found,
            })
        }
    };
    check("journal_mode", "wal")?;
    check("synchronous", durability.synchronous().1)?;
    check("foreign_keys", "1")?;
    check("secure_delete", "1")?;
    check("busy_timeout", &BUSY_TIMEOUT.as_millis().to_string())?;
    Ok(())
}

/// Runs `f`, retrying while the store is busy, for at most `budget`. SQLite's busy handler
/// already waits [`BUSY_TIMEOUT`] per attempt; this loop covers the cases it does not (a busy
/// `BEGIN IMMEDIATE` after a WAL restart, a busy `COMMIT`), so "database is locked" does not
/// reach the caller.
pub(crate) fn with_retry<T>(budget: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if e.is_busy() && start.elapsed() < budget => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// Moves a corrupt database and its `-wal`/`-shm` aside under a timestamped name. Never deletes.
pub(crate) fn quarantine(path: &Path) -> Result<PathBuf> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let base = path.as_os_str().to_owned();
    let mut n = 0u32;
    let target = loop {
        let mut t = base.clone();
        t.push(format!(".corrupt-{millis}"));
        if n > 0 {
            t.push(format!("-{n}"));
        }
        let t = PathBuf::from(t);
        if !t.exists() {
            break t;
        }
        n += 1;
    };
    std::fs::rename(path, &target).map_err(StoreError::CannotOpen)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = base.clone();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut t = target.clone().into_os_string();
            t.push(suffix);
            std::fs::rename(&side, PathBuf::from(t)).map_err(StoreError::CannotOpen)?;
        }
    }
    Ok(target)
}

/// A few read-only connections; readers never wait for the writer in WAL mode.
#[derive(Debug)]
pub(crate) struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    available: Condvar,
}

impl ReaderPool {
    pub(crate) fn new(conns: Vec<Connection>) -> Self {
        Self {
            idle: Mutex::new(conns),
            available: Condvar::new(),
        }
    }

    pub(crate) fn get(&self) -> PooledReader<'_> {
        let mut idle = lock(&self.idle);
        loop {
            if let Some(conn) = idle.pop() {
                return PooledReader {
                    pool: self,
                    conn: Some(conn),
                };
            }
            idle = self
                .available
                .wait(idle)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// A reader borrowed from the pool, returned on drop.
pub(crate) struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a pooled reader holds its connection until dropped")
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            lock(&self.pool.idle).push(c);
            self.pool.available.notify_one();
        }
    }
}

/// Locks a mutex, recovering from poisoning: the guarded connection is still consistent because
/// SQLite rolls back an unfinished transaction when its `Transaction` is dropped.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether an error means the file itself is corrupt (only then is it quarantined).
pub(crate) fn is_corruption(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt { .. })
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

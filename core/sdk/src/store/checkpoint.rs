//! WAL checkpoints off the commit path.
//!
//! SQLite's auto-checkpoint runs inside the commit that pushes the WAL past its threshold: that
//! one commit copies the WAL into the main file and flushes both, milliseconds on flash storage,
//! and sets the tail latency of `finish()`. The writer connection instead gets a WAL hook that
//! only notes how many pages the WAL holds (installing it replaces SQLite's auto-checkpoint);
//! once the WAL passes [`CHECKPOINT_PAGES`] a maintenance thread runs a `PASSIVE` checkpoint on a
//! connection of its own, which never blocks the writer or the readers.
//!
//! * The thread starts on first need, so opening a store starts no thread, and it is stopped
//!   and joined by [`Checkpointer::stop`] and on drop.
//! * If the WAL still grows past [`INLINE_CHECKPOINT_PAGES`] (the thread cannot keep up or
//!   could not start), the writer checkpoints inline after its commit, as SQLite would have:
//!   the WAL stays bounded either way.
//! * Every checkpoint, background or explicit ([`super::Store::checkpoint`]), runs under one
//!   lock, so a `TRUNCATE` checkpoint after an erasure never races the background one.
//! * Durability is unchanged: a checkpoint copies only committed frames, and with
//!   `synchronous=NORMAL` or `FULL` SQLite flushes the WAL before and the database after it.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use super::db::{self, lock};
use super::Durability;

/// WAL size (pages) from which the background thread is asked to checkpoint; SQLite's own
/// auto-checkpoint threshold.
pub(crate) const CHECKPOINT_PAGES: i32 = 1000;

/// WAL size (pages) from which the writer checkpoints inline after its commit.
/// (While the writer commits back to back a passive checkpoint never catches up with it, so the
/// WAL only restarts from its beginning after a checkpoint that holds the writer; most frames
/// are then already copied.)
pub(crate) const INLINE_CHECKPOINT_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// Size the WAL file is truncated back to when it restarts, so a burst does not keep its disk
/// space (SQLite `journal_size_limit`, bytes).
pub(crate) const WAL_SIZE_LIMIT: i64 = 4 << 20;

thread_local! {
    /// Pages in the WAL after the last commit on this thread's writer connection. The hook runs
    /// synchronously inside `COMMIT`, on the committing thread, so the writer reads it right
    /// after its own commit.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_size(_wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Replaces the writer's auto-checkpoint with the size-noting hook.
pub(crate) fn install_hook(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.wal_hook(Some(note_wal_size));
    Ok(())
}

/// Pages in the WAL as of this thread's last commit on a hooked connection (0 when none since
/// the last call).
pub(crate) fn take_wal_pages() -> i32 {
    WAL_PAGES.with(|p| p.replace(0))
}

#[derive(Debug, Default)]
struct Signal {
    pending: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Held while any checkpoint runs.
    running: Mutex<()>,
    background: AtomicU64,
    inline: AtomicU64,
}

/// Counters of checkpoints run, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints the maintenance thread ran.
    pub background: u64,
    /// Checkpoints the writer ran inline because the WAL passed the hard limit.
    pub inline: u64,
    /// Whether the maintenance thread is running.
    pub thread_running: bool,
}

/// Starts, feeds and stops the maintenance thread of one store.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    path: PathBuf,
    durability: Durability,
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(crate) fn new(path: PathBuf, durability: Durability) -> Self {
        Self {
            path,
            durability,
            shared: Arc::new(Shared::default()),
            worker: Mutex::new(None),
        }
    }

    /// Called by the writer right after a commit, with the writer connection still held.
    pub(crate) fn after_commit(&self, writer: &Connection) {
        let pages = take_wal_pages();
        if pages < CHECKPOINT_PAGES {
            return;
        }
        let started = self.ensure_thread();
        if started {
            let mut s = lock(&self.shared.signal);
            if !s.pending {
                s.pending = true;
                self.shared.wake.notify_one();
            }
        }
        if pages >= INLINE_CHECKPOINT_PAGES || !started {
            // The WAL must stay bounded even when the thread is behind or absent. A busy
            // result (readers on old snapshots) is not an error: the next commit tries again.
            let _running = lock(&self.shared.running);
            if writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .is_ok()
            {
                self.shared.inline.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` while no background checkpoint runs.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _running = lock(&self.shared.running);
        f()
    }

    /// Whether the thread runs, starting it if needed; `false` if it cannot be started.
    fn ensure_thread(&self) -> bool {
        let mut worker = lock(&self.worker);
        if worker.is_some() {
            return true;
        }
        lock(&self.shared.signal).stop = false;
        let shared = self.shared.clone();
        let path = self.path.clone();
        let durability = self.durability;
        let spawned = std::thread::Builder::new()
            .name("vitalcore-checkpoint".into())
            .spawn(move || run(&path, durability, &shared));
        match spawned {
            Ok(handle) => {
                *worker = Some(handle);
                true
            }
            Err(_) => false,
        }
    }

    /// Stops and joins the thread (it finishes a checkpoint in progress first). It starts again
    /// on the next need.
    pub(crate) fn stop(&self) {
        let handle = lock(&self.worker).take();
        if let Some(handle) = handle {
            {
                let mut s = lock(&self.shared.signal);
                s.stop = true;
                self.shared.wake.notify_one();
            }
            // A panic in the thread has nothing to hand back: its checkpoint simply did not run.
            let _ = handle.join();
        }
    }

    pub(crate) fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            background: self.shared.background.load(Ordering::Relaxed),
            inline: self.shared.inline.load(Ordering::Relaxed),
            thread_running: lock(&self.worker).is_some(),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(path: &std::path::Path, durability: Durability, shared: &Shared) {
    // Without its connection the thread has nothing to do; the writer's inline fallback keeps
    // the WAL bounded.
    let Ok(conn) = db::open_connection(path, false) else {
        return;
    };
    if conn
        .pragma_update(None, "synchronous", durability.synchronous().0)
        .is_err()
    {
        return;
    }
    loop {
        {
            let mut s = lock(&shared.signal);
            while !s.pending && !s.stop {
                s = shared
                    .wake
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if s.stop {
                return;
            }
            s.pending = false;
        }
        let _running = lock(&shared.running);
        if conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .is_ok()
        {
            shared.background.fetch_add(1, Ordering::Relaxed);
        }
    }
}

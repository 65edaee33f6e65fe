//! Runs blocking work on its own thread and awaits it as a runtime-free future.
//!
//! uniffi drives exported `async fn`s from the host's executor (Kotlin coroutines, Swift
//! tasks, asyncio), so there is no Rust runtime to spawn on. Work that blocks (analysis, a
//! keystore round trip, later the sync HTTP call) goes to a thread; the future only waits
//! for its result, so the host's event loop or main thread never blocks.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug, thiserror::Error)]
pub(crate) enum OffloadError {
    #[error("could not start a worker thread")]
    Spawn,
    #[error("the background task panicked")]
    Panicked,
}

type Outcome<T> = Result<T, OffloadError>;

#[derive(Debug)]
struct Slot<T> {
    outcome: Option<Outcome<T>>,
    waker: Option<Waker>,
}

/// Future of [`offload`]. Dropping it does not stop the worker; its result is discarded.
#[derive(Debug)]
pub(crate) struct Offloaded<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// Starts `work` on a new thread. A panic inside `work` is caught on that thread and
/// becomes [`OffloadError::Panicked`]: it must not unwind through the host's executor.
pub(crate) fn offload<T, F>(work: F) -> Offloaded<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        outcome: None,
        waker: None,
    }));
    let worker_slot = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("vitalcore-offload".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .map_err(|_| OffloadError::Panicked);
            let waker = {
                let mut s = lock(&worker_slot);
                s.outcome = Some(outcome);
                s.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
    if spawned.is_err() {
        lock(&slot).outcome = Some(Err(OffloadError::Spawn));
    }
    Offloaded { slot }
}

// The slot is only ever held for a few assignments, none of which can panic, so a poisoned
// lock still holds consistent data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T> Future for Offloaded<T> {
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.slot);
        match s.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    // A minimal executor, so the test does not depend on the code under test being polled
    // by any particular runtime.
    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn result_arrives_after_the_worker_finishes() {
        let out = block_on(offload(|| {
            std::thread::sleep(std::time::Duration::from_millis(30));
            std::thread::current().name().map(str::to_owned)
        }));
        assert_eq!(out.unwrap().as_deref(), Some("vitalcore-offload"));
    }

    #[test]
    fn a_panicking_worker_becomes_an_error() {
        let out: Outcome<()> = block_on(offload(|| panic!("boom")));
        assert!(matches!(out, Err(OffloadError::Panicked)));
    }
}

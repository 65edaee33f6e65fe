//! [`Vitalcore`]: the object an app holds. It owns the encrypted store and the active model,
//! hands out health-check sessions and background captures, and answers history queries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use crate::capture::{Capture, CaptureConfig};
use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::keys::KeyProvider;
use crate::kind::CheckKind;
use crate::prediction::Predictor;
use crate::session::CheckSession;
use crate::store::{Purpose, Store, StoreConfig, SubjectId};

/// The engine. `Send + Sync`: open it once and share it (`Arc<Vitalcore>`) across threads.
///
/// Opening does no network I/O and starts no thread; work happens only in the calls the app
/// makes (a background [`Capture`] runs one worker thread, from `start_capture` until it is
/// closed or dropped).
#[derive(Debug)]
pub struct Vitalcore {
    pub(crate) inner: Arc<Inner>,
}

/// State shared by the engine, its sessions and its captures.
#[derive(Debug)]
pub(crate) struct Inner {
    pub config: Config,
    pub store: Arc<Store>,
    pub subject: SubjectId,
    pub purpose: Purpose,
    /// Consent, sync and user-rights state (`user.rs`).
    pub user: crate::user::UserState,
    predictor: RwLock<Option<Arc<dyn Predictor>>>,
    pub models: Arc<crate::models::ModelRegistry>,
    life: Mutex<Life>,
    idle: Condvar,
    interrupts: AtomicU64,
}

#[derive(Debug, Default)]
struct Life {
    shut: bool,
    in_flight: usize,
}

/// Marks an operation that must complete before [`Vitalcore::shutdown`] returns.
#[derive(Debug)]
pub(crate) struct Op<'a> {
    inner: &'a Inner,
    interrupts_at_start: u64,
}

impl Op<'_> {
    /// Fails with [`EngineError::Interrupted`] if [`Vitalcore::interrupt`] was called since
    /// the operation started.
    pub fn check_interrupt(&self) -> Result<()> {
        if self.inner.interrupts.load(Ordering::SeqCst) != self.interrupts_at_start {
            Err(EngineError::Interrupted)
        } else {
            Ok(())
        }
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let mut life = lock(&self.inner.life);
        life.in_flight -= 1;
        if life.in_flight == 0 {
            self.inner.idle.notify_all();
        }
    }
}

/// Locks a mutex, recovering from poisoning: every critical section of the engine leaves its
/// data consistent before it can panic, so a panicking thread does not make the rest unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Starts an operation, or fails with [`EngineError::ShutDown`].
    pub fn begin(&self) -> Result<Op<'_>> {
        let mut life = lock(&self.life);
        if life.shut {
            return Err(EngineError::ShutDown);
        }
        life.in_flight += 1;
        Ok(Op {
            inner: self,
            interrupts_at_start: self.interrupts.load(Ordering::SeqCst),
        })
    }

    pub fn is_shut(&self) -> bool {
        lock(&self.life).shut
    }

    pub fn predictor(&self) -> Option<Arc<dyn Predictor>> {
        self.predictor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Vitalcore {
    /// Opens the engine: creates the data directory if needed, opens (or creates) the
    /// encrypted store with the key from `keys`, and activates the model (an installed update cached
    /// in the data directory, else the bundled default). No network, no thread.
    ///
    /// Errors: [`EngineError::InvalidConfig`], or the store's errors (wrong key, corrupt file
    /// moved aside, schema too new...).
    pub fn open(config: Config, keys: &dyn KeyProvider) -> Result<Self> {
        config.validate()?;
        let subject = SubjectId::new(config.subject_id())
            .map_err(|_| EngineError::InvalidConfig("subject must be 1..=256 bytes"))?;
        let purpose = crate::privacy::purpose_from_name(config.purpose_name()).map_err(|_| {
            EngineError::InvalidConfig("outbox purpose must be [a-z0-9_]{1,32} or research:<study>")
        })?;
        std::fs::create_dir_all(config.data_dir()).map_err(crate::store::StoreError::CannotOpen)?;
        let store = Store::open(
            StoreConfig::new(config.store_path())
                .raw_retention(config.get_raw_retention())
                .durability(config.get_durability()),
            keys,
        )?;
        let models = crate::models_engine::open_registry(&config)?;
        let predictor: Arc<dyn Predictor> = Arc::new(crate::models_engine::RegistryPredictor {
            registry: Arc::clone(&models),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store: Arc::new(store),
                subject,
                purpose,
                user: crate::user::UserState::default(),
                predictor: RwLock::new(Some(predictor)),
                models,
                life: Mutex::new(Life::default()),
                idle: Condvar::new(),
                interrupts: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Starts a health check of `kind`. Nothing is stored until [`CheckSession::finish`].
    pub fn start_check(&self, kind: CheckKind) -> Result<Arc<CheckSession>> {
        if self.inner.is_shut() {
            return Err(EngineError::ShutDown);
        }
        Ok(Arc::new(CheckSession::new(self.inner.clone(), kind)))
    }

    /// Starts a background capture: samples pushed to the returned handle are cut into
    /// windows whose features are stored. Stops when the handle is closed or dropped.
    pub fn start_capture(&self, config: CaptureConfig) -> Result<Arc<Capture>> {
        if self.inner.is_shut() {
            return Err(EngineError::ShutDown);
        }
        Capture::start(self.inner.clone(), config).map(Arc::new)
    }

    /// Installs (or with `None`, removes) the predictor serving checks. Internal seam for the
    /// model registry and for tests.
    #[allow(dead_code)]
    pub(crate) fn set_predictor(&self, p: Option<Arc<dyn Predictor>>) {
        *self
            .inner
            .predictor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = p;
    }

    /// Makes every operation in progress (a `finish`, a capture window) stop at its next
    /// step boundary with [`EngineError::Interrupted`], committing nothing; sessions stay
    /// open and can be finished again. Operations started afterwards are not affected.
    pub fn interrupt(&self) {
        self.inner.interrupts.fetch_add(1, Ordering::SeqCst);
    }

    /// Refuses new work, waits for operations in progress (a `finish` completes or fails as a
    /// whole), checkpoints the store and joins its maintenance thread. Idempotent. Every
    /// later call fails with [`EngineError::ShutDown`].
    pub fn shutdown(&self) -> Result<()> {
        let mut life = lock(&self.inner.life);
        life.shut = true;
        while life.in_flight > 0 {
            life = self
                .inner
                .idle
                .wait(life)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(life);
        let checkpointed = self.inner.store.checkpoint();
        self.inner.store.stop_maintenance();
        checkpointed?;
        Ok(())
    }

    /// Whether [`Vitalcore::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shut()
    }
}

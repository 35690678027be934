//! The epoch ticker: the thread that advances the engine's epoch every period, which is what
//! lets CPU and wall-clock deadlines fire inside a running instance (each store's deadline
//! callback, `execute.rs`). It ticks only while instances live, and for a second after the last
//! one goes: an idle host (a `warden mcp` waiting for its editor, a server between requests)
//! would otherwise wake a thousand times a second for nothing. Every store holds a [`Ticking`]
//! for its life; the first one taken after the ticker went idle wakes it before the store's
//! instance runs, so no instance ever runs without ticks.
//!
//! The ticker says it is going to sleep (`parked`) and then looks for live instances; a new
//! instance counts itself live and then looks whether the ticker sleeps. Both use sequentially
//! consistent order, so at least one of them sees the other: the ticker stays awake, or the
//! instance wakes it (a wake-up before the sleep is kept by `thread::park` and ends it at once).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::Engine;

/// How long the ticker goes on after the last instance ended before it sleeps: long enough that
/// back-to-back tasks never wait for it, short enough that an idle host is quiet at once.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// What the ticker and the instances share.
#[derive(Debug, Default)]
struct Shared {
    /// Stores alive now.
    live: AtomicUsize,
    /// The ticker sleeps (or is about to): a new instance must wake it.
    parked: AtomicBool,
    /// The engine is being dropped: the ticker ends.
    stop: AtomicBool,
    /// Ticks so far (for tests and figures).
    ticks: AtomicU64,
    /// The ticker's thread, to wake it.
    thread: OnceLock<std::thread::Thread>,
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The ticker of one engine; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    period: Duration,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A live instance's hold on the ticker: ticks go on while one exists.
#[derive(Debug)]
pub struct Ticking(Arc<Shared>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Start ticking `engine` every `period`, sleeping after `idle_after` without instances.
    pub(crate) fn start(engine: Engine, period: Duration, idle_after: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let idle_ticks = (idle_after.as_nanos() / period.as_nanos().max(1)).max(1);
        let ticker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                let mut idle = 0u128;
                while !ticker.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    engine.increment_epoch();
                    ticker.ticks.fetch_add(1, Ordering::Relaxed);
                    if ticker.live.load(Ordering::SeqCst) > 0 {
                        idle = 0;
                        continue;
                    }
                    idle += 1;
                    if idle < idle_ticks {
                        continue;
                    }
                    ticker.parked.store(true, Ordering::SeqCst);
                    if ticker.live.load(Ordering::SeqCst) == 0
                        && !ticker.stop.load(Ordering::SeqCst)
                    {
                        // Until an instance (or the engine's drop) wakes it; a spurious
                        // wake-up only ticks once more and sleeps again.
                        std::thread::park();
                    }
                    ticker.parked.store(false, Ordering::SeqCst);
                    idle = 0;
                }
            })
            .ok();
        if let Some(t) = &thread {
            let _ = shared.thread.set(t.thread().clone());
        }
        EpochTicker {
            period,
            shared,
            thread,
        }
    }

    /// The period of a tick.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// Ticks so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }

    /// A hold for one live instance, waking the ticker if it sleeps. Take it before the
    /// instance runs; drop it with the instance's store.
    pub(crate) fn ticking(&self) -> Ticking {
        self.shared.live.fetch_add(1, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            self.shared.wake();
        }
        Ticking(self.shared.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

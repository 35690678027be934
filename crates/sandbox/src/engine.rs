//! The one wasmtime [`Engine`] a host runs: its configuration (pooling allocator, epoch
//! interruption, stack limit), the epoch ticker that drives CPU and wall-clock deadlines, the
//! on-disk cache of compiled components, so that a task costs an instantiation, not a compilation,
//! and the bounds on compiling: what the bytes must be, what they may cost ([`crate::complexity`]),
//! how many compiles run at once and for how long.
//!
//! Defaults (see [`EngineConfig::default`]): 1,000 concurrent instances, 4 GiB of linear memory
//! per instance at most (a policy sets the real limit), 512 KiB of wasm stack, a 1 ms epoch tick,
//! components of at most 64 MiB within [`CompileLimits::default`], one compile at a time for at
//! most 60 s, no compiled-component cache unless a directory is given, and the pages an instance
//! wrote (up to [`KEEP_RESIDENT`] a slot) reset in place for the next, not unmapped.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::complexity::{CompileLimits, Complexity, Limit, TooComplex};

mod ticker;

use ticker::EpochTicker;
pub use ticker::{IDLE_AFTER, Ticking};

/// The default [`EngineConfig::memory_keep_resident`]: 256 KiB a slot (256 MiB for 1,000 slots).
pub const KEEP_RESIDENT: usize = 256 << 10;

/// Errors while building the engine or compiling a component.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    /// The component is larger than the host accepts.
    #[error(
        "component is {size} bytes, over the host's limit of {limit} bytes; rebuild it in release mode or raise `max_component_size`"
    )]
    TooLarge {
        /// Size of the offered component.
        size: usize,
        /// The host's limit.
        limit: usize,
    },
    /// The bytes are not a WebAssembly component at all (not wasm, or a core module).
    #[error(
        "not a WebAssembly component: {what}; build agents with `cargo build --target wasm32-wasip2`"
    )]
    NotAComponent {
        /// What the bytes are instead.
        what: &'static str,
    },
    /// The bytes are a WebAssembly component, but not a valid one.
    #[error(
        "not a valid wasm component: {0}; build agents with `cargo build --target wasm32-wasip2`"
    )]
    Invalid(String),
    /// Compiling the component would cost more than the host's compile limits allow.
    #[error("refused to compile the component: {0}")]
    TooComplex(TooComplex),
    /// The compile ran past the host's deadline (on an overloaded host, or a shape the static
    /// limits do not bound).
    #[error(
        "compiling the component took longer than the host's limit of {limit:?} (`compile_timeout`); the host may be overloaded: try again, or raise the limit"
    )]
    CompileTimeout {
        /// The deadline.
        limit: Duration,
    },
    /// The compiled-component cache could not be used.
    #[error("compiled-component cache at {dir}: {detail}")]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// How the host's engine is set up. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled components are cached (created with mode 0700). `None`: no disk cache.
    pub cache_dir: Option<PathBuf>,
    /// How many instances may be live at once; further runs wait for a free slot.
    pub max_instances: u32,
    /// The largest linear memory any policy may grant, in bytes.
    pub max_memory: u64,
    /// The largest table any policy may grant, in elements.
    pub max_table_elements: u32,
    /// Maximum wasm stack per instance, in bytes; deeper recursion kills the instance.
    pub max_stack: usize,
    /// Period of the epoch ticker: the granularity of CPU and wall-clock limits.
    pub epoch_tick: Duration,
    /// How long the ticker goes on without a live instance before it sleeps (the next instance
    /// wakes it): [`IDLE_AFTER`].
    pub epoch_idle_after: Duration,
    /// Largest component accepted, in bytes, checked before compiling.
    pub max_component_size: usize,
    /// Bytes of each slot's linear memory kept resident between instances: the pages the last
    /// instance wrote, up to this much, are reset to the module's initial contents in place
    /// instead of being handed back to the kernel, so the next instance in the slot takes no
    /// page faults on them (each copy-on-write fault costs a TLB flush on every core running a
    /// host thread). Trades idle memory — at most this much per slot ever used — for faster
    /// instances; nothing of one instance's memory survives into the next either way.
    pub memory_keep_resident: usize,
    /// How many instance slots' memory is decommitted in one batch.
    pub decommit_batch_size: usize,
    /// Map a module's initial memory copy-on-write from its image instead of copying it.
    pub memory_init_cow: bool,
    /// Find the pages an instance wrote with Linux's `PAGEMAP_SCAN` (6.7 and later), so that only
    /// those are reset and kept resident. Where the kernel lacks it nothing is kept resident:
    /// resetting the whole `memory_keep_resident` at every teardown costs more than it saves.
    pub memory_pagemap_scan: bool,
    /// What one component may ask of the compiler, checked before compiling (a cache hit was
    /// checked when it was compiled: the cache is keyed by these limits too). The per-component
    /// instance, memory and table counts also size the instance pool.
    pub compile: CompileLimits,
    /// How many compiles run at once; further loads that miss the cache wait. One compile
    /// already uses every core, so more only multiply the peak memory.
    pub max_concurrent_compiles: usize,
    /// How long the host waits for one compile before refusing the component. Cranelift cannot
    /// be interrupted, so a compile past its deadline finishes on its own thread (bounded by
    /// `compile`) and holds its compile slot until then. `None`: wait as long as it takes.
    pub compile_timeout: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            max_instances: 1_000,
            max_memory: 4 << 30,
            max_table_elements: 1_000_000,
            max_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            epoch_idle_after: IDLE_AFTER,
            max_component_size: 64 << 20,
            memory_keep_resident: KEEP_RESIDENT,
            decommit_batch_size: 16,
            memory_init_cow: true,
            memory_pagemap_scan: true,
            compile: CompileLimits::default(),
            max_concurrent_compiles: 1,
            compile_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// The shared engine, its ticker and its compiled-component cache. Cheap to share behind `Arc`.
pub struct WardenEngine {
    engine: Engine,
    config: EngineConfig,
    ticker: EpochTicker,
    compiles: Arc<CompileSlots>,
}

impl std::fmt::Debug for WardenEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WardenEngine")
            .field("config", &self.config)
            .finish()
    }
}

impl WardenEngine {
    /// Build the engine and start its epoch ticker.
    ///
    /// # Errors
    ///
    /// [`EngineError::Config`] when wasmtime rejects the settings (for example a pool too large
    /// for the machine's address space).
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances;
        let per_component = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let scan =
            config.memory_pagemap_scan && PoolingAllocationConfig::is_pagemap_scan_available();
        let keep_resident = if config.memory_pagemap_scan && !scan {
            0
        } else {
            config.memory_keep_resident
        };
        // A Rust component has a handful of core instances (the module plus shims) but one memory.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            // The same bounds the compile limits check at load: a component the pool could not
            // instantiate is refused before it is compiled, not at every run.
            .max_core_instances_per_component(per_component(config.compile.max_core_instances))
            .max_memories_per_component(per_component(config.compile.max_memories))
            .max_tables_per_component(per_component(config.compile.max_tables))
            .max_memory_size(config.max_memory as usize)
            .table_elements(config.max_table_elements as usize)
            // Written pages stay mapped, reset in place: no faults for the slot's next instance.
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(16 << 10)
            .decommit_batch_size(config.decommit_batch_size)
            .max_unused_warm_slots(64)
            .pagemap_scan(if scan { Enabled::Yes } else { Enabled::No });

        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack)
            .async_stack_size(config.max_stack + (1 << 20))
            .memory_init_cow(config.memory_init_cow)
            .wasm_backtrace_max_frames(None)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick, config.epoch_idle_after);
        let compiles = Arc::new(CompileSlots::new(config.max_concurrent_compiles.max(1)));
        Ok(WardenEngine {
            engine,
            config,
            ticker,
            compiles,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Period of the epoch ticker.
    pub fn epoch_tick(&self) -> Duration {
        self.ticker.period()
    }

    /// How many times the epoch ticker has ticked: it stops ticking while no instance lives
    /// (after [`EngineConfig::epoch_idle_after`]).
    pub fn epoch_ticks(&self) -> u64 {
        self.ticker.ticks()
    }

    /// A live instance's hold on the epoch ticker, which ticks (and so enforces deadlines) while
    /// one exists: every store takes one before its instance runs and keeps it for its life.
    pub fn ticking(&self) -> Ticking {
        self.ticker.ticking()
    }

    /// Compile `bytes` into a component, through the disk cache when one is configured.
    ///
    /// The size bound is checked before anything else reads the bytes; then what they are (a
    /// binary component, or WebAssembly text, parsed within `compile.max_text_size`); then,
    /// unless the cache holds the component, what compiling it costs ([`crate::complexity`]),
    /// before it is compiled in a compile slot, under the deadline.
    ///
    /// # Errors
    ///
    /// [`EngineError::TooLarge`], [`EngineError::NotAComponent`], [`EngineError::Invalid`],
    /// [`EngineError::TooComplex`], [`EngineError::CompileTimeout`], or [`EngineError::Cache`]
    /// when the cache directory cannot be created or written.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        let limit = self.config.max_component_size;
        if bytes.len() > limit {
            return Err(EngineError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let binary = binary(bytes, &self.config.compile)?;
        let invalid = |e: wasmtime::Error| EngineError::Invalid(format!("{e:#}"));
        let engine = self.engine.clone();
        let Some(dir) = &self.config.cache_dir else {
            crate::complexity::check(&binary, &self.config.compile)?;
            let binary = binary.into_owned();
            let slot = self.compiles.acquire();
            return self
                .bounded(slot, move || Component::new(&engine, &binary))?
                .map_err(invalid);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(&binary)));
        if path.exists() {
            // The file was written by this host (below) in a 0700 directory; a file that fails to
            // load (truncated, older engine) is recompiled and replaced.
            if let Ok(component) = self.load_cached(&path) {
                return Ok(component);
            }
        }
        crate::complexity::check(&binary, &self.config.compile)?;
        let slot = self.compiles.acquire();
        // A load of the same component may have compiled it while this one waited for a slot.
        if let Ok(component) = self.load_cached(&path) {
            return Ok(component);
        }
        let binary = binary.into_owned();
        let compiled = self
            .bounded(slot, move || engine.precompile_component(&binary))?
            .map_err(invalid)?;
        store_cached(dir, &path, &compiled)?;
        self.load_cached(&path)
            .or_else(|_| self.load_compiled(&compiled))
    }

    /// What compiling `bytes` would cost, as [`crate::complexity::check`] counts it, without
    /// compiling: for `warden inspect`.
    ///
    /// # Errors
    ///
    /// As [`WardenEngine::compile`], short of compiling.
    pub fn complexity(&self, bytes: &[u8]) -> Result<Complexity, EngineError> {
        let limit = self.config.max_component_size;
        if bytes.len() > limit {
            return Err(EngineError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        crate::complexity::check(&binary(bytes, &self.config.compile)?, &self.config.compile)
    }

    /// Run `work` (a compile) holding `slot`, waiting at most `compile_timeout` for it.
    fn bounded<T: Send + 'static>(
        &self,
        slot: CompileSlot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let Some(limit) = self.config.compile_timeout else {
            let _slot = slot;
            return Ok(work());
        };
        let (done, result) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("warden-compile".into())
            .spawn(move || {
                // The slot is released when the compile ends, not when the caller stops
                // waiting: compiles past their deadline still count against the bound.
                let _slot = slot;
                let _ = done.send(work());
            })
            .map_err(|e| EngineError::Config(format!("cannot start a compile thread: {e}")))?;
        match result.recv_timeout(limit) {
            Ok(value) => Ok(value),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(target: "warden::load", ?limit, "compile past its deadline; refused");
                Err(EngineError::CompileTimeout { limit })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(EngineError::Invalid(
                "the compiler stopped without a result".into(),
            )),
        }
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        // A component cached under higher limits must be checked again under lower ones.
        self.config.compile.hash(&mut engine_hash);
        let mut sha = Sha256::new();
        sha.update(engine_hash.finish().to_le_bytes());
        sha.update(bytes);
        sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[allow(unsafe_code)]
    fn load_compiled(&self, compiled: &[u8]) -> Result<Component, EngineError> {
        // SAFETY: `compiled` is what `precompile_component` of this engine just returned.
        unsafe { Component::deserialize(&self.engine, compiled) }
            .map_err(|e| EngineError::Invalid(format!("{e:#}")))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> Result<Component, EngineError> {
        // SAFETY: `deserialize_file` trusts its input to be wasmtime's own output. Cache files
        // are written only by `store_cached` into a directory created 0700 by this host, and are
        // keyed by the engine's compatibility hash and the component's SHA-256.
        unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| EngineError::Invalid(format!("{e:#}")))
    }
}

/// The binary form of `bytes`: a binary component as it is, WebAssembly text parsed (within
/// `limits.max_text_size`), anything else refused as not a component. The engine's own text
/// support is never reached: it would report random bytes as text that is not valid UTF-8.
fn binary<'b>(bytes: &'b [u8], limits: &CompileLimits) -> Result<Cow<'b, [u8]>, EngineError> {
    let binary = if bytes.starts_with(b"\0asm") {
        Cow::Borrowed(bytes)
    } else if looks_like_text(bytes) {
        let size = bytes.len() as u64;
        if size > limits.max_text_size {
            return Err(EngineError::TooComplex(TooComplex {
                limit: Limit::TextSize,
                found: size,
                max: limits.max_text_size,
                place: None,
            }));
        }
        let parsed = wat::parse_bytes(bytes).map_err(|e| {
            EngineError::Invalid(format!("WebAssembly text that does not parse: {e}"))
        })?;
        Cow::Owned(parsed.into_owned())
    } else {
        return Err(EngineError::NotAComponent {
            what: "the bytes start with neither the WebAssembly header (`\\0asm`) nor WebAssembly text",
        });
    };
    // The header's version and layer fields: 0x0d/1 is a component, 1/0 a core module.
    match binary.get(4..8) {
        Some([0x01, 0x00, 0x00, 0x00]) => Err(EngineError::NotAComponent {
            what: "it is a core WebAssembly module, not a component (built for wasm32-wasip1 or wasm32-unknown-unknown?)",
        }),
        _ => Ok(binary),
    }
}

/// UTF-8 whose first line that is not blank or a `;;` comment opens an s-expression.
fn looks_like_text(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(";;"))
        .is_some_and(|l| l.starts_with('('))
}

/// A counting semaphore for compiles: blocking, since loading is synchronous.
struct CompileSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One compile slot, given back when dropped.
struct CompileSlot(Arc<CompileSlots>);

impl CompileSlots {
    fn new(slots: usize) -> Self {
        CompileSlots {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    fn acquire(self: &Arc<Self>) -> CompileSlot {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        CompileSlot(self.clone())
    }
}

impl Drop for CompileSlot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

fn store_cached(dir: &Path, path: &Path, compiled: &[u8]) -> Result<(), EngineError> {
    let cache_err = |detail: String| EngineError::Cache {
        dir: dir.to_path_buf(),
        detail,
    };
    create_private_dir(dir).map_err(|e| cache_err(format!("cannot create: {e}")))?;
    // Write to a unique temporary name, then rename: concurrent hosts never see a torn file.
    // Unique per process *and* per write: two threads of one host may store the same component
    // at once (each then renames its own file; the later rename wins, with the same bytes).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("component")
    ));
    std::fs::write(&tmp, compiled).map_err(|e| cache_err(format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| cache_err(format!("cannot rename: {e}")))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests;

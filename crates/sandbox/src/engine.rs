//! The one wasmtime [`Engine`] a host runs: its configuration (pooling allocator, epoch
//! interruption, stack limit), the epoch ticker that drives CPU and wall-clock deadlines, and the
//! on-disk cache of compiled components, so that a task costs an instantiation, not a compilation.
//!
//! Defaults (see [`EngineConfig::default`]): 1,000 concurrent instances, 4 GiB of linear memory
//! per instance at most (a policy sets the real limit), 512 KiB of wasm stack, a 1 ms epoch tick,
//! components of at most 64 MiB, no compiled-component cache unless a directory is given.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
    /// The bytes are not a valid WebAssembly component.
    #[error(
        "not a valid wasm component: {0}; build agents with `cargo build --target wasm32-wasip2`"
    )]
    Invalid(String),
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
    /// Largest component accepted, in bytes, checked before compiling.
    pub max_component_size: usize,
    /// Bytes of each linear memory kept resident (zeroed, not returned to the OS) between
    /// instances: trades idle memory for faster instantiation and teardown.
    pub memory_keep_resident: usize,
    /// How many instance slots' memory is decommitted in one batch.
    pub decommit_batch_size: usize,
    /// Map a module's initial memory copy-on-write from its image instead of copying it.
    pub memory_init_cow: bool,
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
            max_component_size: 64 << 20,
            memory_keep_resident: 0,
            decommit_batch_size: 16,
            memory_init_cow: true,
        }
    }
}

/// The shared engine, its ticker and its compiled-component cache. Cheap to share behind `Arc`.
pub struct WardenEngine {
    engine: Engine,
    config: EngineConfig,
    ticker: EpochTicker,
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
        // A Rust component has a handful of core instances (the module plus shims) but one memory.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_core_instances_per_component(32)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_memory_size(config.max_memory as usize)
            .table_elements(config.max_table_elements as usize)
            // Keeping a little memory resident makes the next instance's first touches cheap
            // and its teardown a memset instead of an madvise; figures in benches/.
            .linear_memory_keep_resident(config.memory_keep_resident)
            .table_keep_resident(16 << 10)
            .decommit_batch_size(config.decommit_batch_size)
            .max_unused_warm_slots(64);

        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack)
            .async_stack_size(config.max_stack + (1 << 20))
            .memory_init_cow(config.memory_init_cow)
            .wasm_backtrace_max_frames(None)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(WardenEngine {
            engine,
            config,
            ticker,
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
        self.ticker.period
    }

    /// Compile `bytes` into a component, through the disk cache when one is configured.
    ///
    /// The size bound is checked before anything else reads the bytes.
    ///
    /// # Errors
    ///
    /// [`EngineError::TooLarge`], [`EngineError::Invalid`], or [`EngineError::Cache`] when the
    /// cache directory cannot be created or written.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        let limit = self.config.max_component_size;
        if bytes.len() > limit {
            return Err(EngineError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(|e| EngineError::Invalid(format!("{e:#}")));
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if path.exists() {
            // The file was written by this host (below) in a 0700 directory; a file that fails to
            // load (truncated, older engine) is recompiled and replaced.
            if let Ok(component) = self.load_cached(&path) {
                return Ok(component);
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| EngineError::Invalid(format!("{e:#}")))?;
        store_cached(dir, &path, &compiled)?;
        self.load_cached(&path).or_else(|_| {
            Component::new(&self.engine, bytes).map_err(|e| EngineError::Invalid(format!("{e:#}")))
        })
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut sha = Sha256::new();
        sha.update(engine_hash.finish().to_le_bytes());
        sha.update(bytes);
        sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
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

fn store_cached(dir: &Path, path: &Path, compiled: &[u8]) -> Result<(), EngineError> {
    let cache_err = |detail: String| EngineError::Cache {
        dir: dir.to_path_buf(),
        detail,
    };
    create_private_dir(dir).map_err(|e| cache_err(format!("cannot create: {e}")))?;
    // Write to a unique temporary name, then rename: concurrent hosts never see a torn file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
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

/// Increments the engine's epoch every `period` until dropped.
struct EpochTicker {
    period: Duration,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    engine.increment_epoch();
                }
            })
            .ok();
        EpochTicker {
            period,
            stop,
            thread,
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_component_is_refused_before_compiling() {
        let engine = WardenEngine::new(EngineConfig {
            max_component_size: 16,
            max_instances: 4,
            ..EngineConfig::default()
        })
        .unwrap();
        let err = engine.compile(&[0u8; 17]).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::TooLarge {
                    size: 17,
                    limit: 16
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_refused_with_a_clear_error() {
        let engine = WardenEngine::new(EngineConfig {
            max_instances: 4,
            ..EngineConfig::default()
        })
        .unwrap();
        let err = engine.compile(b"\0asm garbage").unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{err}");
    }

    #[test]
    fn cache_round_trips_and_survives_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let engine = WardenEngine::new(EngineConfig {
            cache_dir: Some(dir.path().join("cache")),
            max_instances: 4,
            ..EngineConfig::default()
        })
        .unwrap();
        // The engine accepts the text format too (the `wat` feature), which keeps this test small.
        let bytes = b"(component)".to_vec();
        engine.compile(&bytes).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().unwrap().path();
        std::fs::write(&path, b"corrupt").unwrap();
        engine.compile(&bytes).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), b"corrupt");
    }
}

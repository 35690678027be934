//! The static bound on what compiling a component may cost the host, checked before the compiler
//! sees it: one pass of `wasmparser` over the component validates it (with the features the
//! engine enables), counts what compile time and memory grow with, and refuses the first count
//! over its limit with a [`TooComplex`] that names the limit.
//!
//! Compile cost is not proportional to size: 6.6 MB of tiny functions took 25 s and 3.2 GiB to
//! compile, and 170 KB of locals read after many branch merges 8 s and 1.5 GiB (cranelift's SSA
//! construction works in the product of the two). So each shape that costs more than linearly,
//! or much per byte, has its own limit. Counts are summed over every module of the component,
//! and instantiations are counted with nested components expanded (wasmtime flattens them), so
//! nesting cannot multiply work past a limit. The walk itself is in `complexity/walk.rs`.

use std::fmt;

use serde::Serialize;
use wasmparser::WasmFeatures;

use crate::engine::EngineError;

mod walk;

/// Defines [`CompileLimits`] (one field per limit, with its default) and [`Limit`] (one variant
/// per field) from one table, so that a limit, its name in messages and its default never drift.
macro_rules! compile_limits {
    ($( $(#[doc = $doc:literal])* $variant:ident $field:ident = $default:expr, $what:literal; )*) => {
        /// What the host lets one component ask of the compiler. Every count is summed over all
        /// the component's core modules unless it says "of one function".
        ///
        /// The defaults admit the agents built from Rust with room to spare (a real 5 MB agent
        /// has some 7,000 functions, 3.4 MB of code, 90 locals and 630 blocks in its largest
        /// function), and bound the worst compile they admit to a few seconds and a few hundred
        /// MiB on a 2-core machine (figures in `docs/architecture.md`).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        pub struct CompileLimits {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl Default for CompileLimits {
            fn default() -> Self {
                CompileLimits { $( $field: $default, )* }
            }
        }

        impl CompileLimits {
            /// No limit at all: for measuring what the limits prevent (`warden-bench`), never
            /// for a host that loads components it did not write.
            pub fn unbounded() -> Self {
                CompileLimits { $( $field: u64::MAX, )* }
            }
        }

        /// One of the [`CompileLimits`], as a refusal names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Limit {
            $( #[doc = concat!("`", stringify!($field), "`: ", $what, ".")] $variant, )*
        }

        impl Limit {
            /// The [`CompileLimits`] field that sets it.
            pub fn field(self) -> &'static str {
                match self { $( Limit::$variant => stringify!($field), )* }
            }

            /// What it counts, in words.
            pub fn what(self) -> &'static str {
                match self { $( Limit::$variant => $what, )* }
            }

            /// Its value in `limits`.
            pub fn of(self, limits: &CompileLimits) -> u64 {
                match self { $( Limit::$variant => limits.$field, )* }
            }

            /// Set its value in `limits`.
            pub fn set(self, limits: &mut CompileLimits, value: u64) {
                match self { $( Limit::$variant => limits.$field = value, )* }
            }

            /// Every limit.
            pub const ALL: &[Limit] = &[ $( Limit::$variant, )* ];
        }
    };
}

compile_limits! {
    /// Core modules defined, at any depth. Default 32.
    Modules max_modules = 32, "core modules";
    /// Components nested inside the component, at any depth. Default 32.
    Components max_components = 32, "nested components";
    /// How deep components nest inside one another. Default 4.
    ComponentDepth max_component_depth = 4, "levels of nested components";
    /// Core instances one instantiation creates, nested components expanded; the instance pool
    /// allows the same number per component. Default 32.
    CoreInstances max_core_instances = 32, "core instances (nesting expanded)";
    /// Linear memories one instantiation defines (the pool allows as many). Default 2.
    Memories max_memories = 2, "linear memories per instantiation";
    /// Tables one instantiation defines (the pool allows as many). Default 8.
    Tables max_tables = 8, "tables per instantiation";
    /// Component-level items (types, imports, exports, aliases, canonical functions,
    /// instances), nested components expanded. Default 100,000.
    ComponentItems max_component_items = 100_000, "component items (nesting expanded)";
    /// Functions defined: each costs some 5 KiB and 40 µs to compile, however small.
    /// Default 40,000.
    Functions max_functions = 40_000, "functions";
    /// Bytes of function bodies. Default 8 MiB.
    CodeBytes max_code_bytes = 8 << 20, "bytes of code";
    /// Bytes of one function body: one function is compiled on one core, in one piece.
    /// Default 512 KiB.
    FunctionSize max_function_size = 512 << 10, "bytes of one function body";
    /// Locals of one function, parameters included (compilers emit tens; one local costs about
    /// as much as its uses). Default 2,000.
    Locals max_locals = 2_000, "locals of one function";
    /// Blocks (`block`, `loop`, `if`, `else`, `try_table`) of one function: each costs some
    /// 2.5 KiB until its function is compiled. Default 20,000.
    FunctionBlocks max_function_blocks = 20_000, "blocks of one function";
    /// Blocks of all functions together. Default 400,000.
    Blocks max_blocks = 400_000, "blocks in all functions";
    /// How deep blocks nest in one function (compilers nest a block per arm of a `match`).
    /// Default 10,000.
    BlockDepth max_block_depth = 10_000, "levels of nested blocks";
    /// Targets of one `br_table` (cranelift's own limit is 65,520). Default 20,000.
    BrTableTargets max_br_table_targets = 20_000, "targets of one br_table";
    /// Locals × blocks of one function: SSA construction looks variables up through merge
    /// points, so its time and memory grow with the product. Default 4,000,000.
    FunctionLocalMerges max_function_local_merges = 4_000_000, "locals × blocks of one function";
    /// Locals × blocks summed over all functions. Default 20,000,000.
    LocalMerges max_local_merges = 20_000_000, "locals × blocks of all functions";
    /// Values on the operand stack at once in one function: each is live until consumed, and
    /// register allocation slows with how many are live together. Default 5,000.
    StackHeight max_stack_height = 5_000, "values on the operand stack of one function";
    /// Core types. Default 100,000.
    Types max_types = 100_000, "core types";
    /// Core imports. Default 100,000.
    Imports max_imports = 100_000, "core imports";
    /// Core exports. Default 100,000.
    Exports max_exports = 100_000, "core exports";
    /// Globals. Default 10,000.
    Globals max_globals = 10_000, "globals";
    /// Data segments. Default 10,000.
    DataSegments max_data_segments = 10_000, "data segments";
    /// Bytes of data sections. Default 32 MiB.
    DataBytes max_data_bytes = 32 << 20, "bytes of data";
    /// Element segments. Default 10,000.
    ElementSegments max_element_segments = 10_000, "element segments";
    /// Items of all element segments (table entries to initialise). Default 1,000,000.
    ElementItems max_element_items = 1_000_000, "element items";
    /// Bytes of custom sections (names, producers, debug information). Default 32 MiB.
    CustomBytes max_custom_bytes = 32 << 20, "bytes of custom sections";
    /// Largest WebAssembly *text* accepted (hand-written test components, parsed to binary
    /// first; its parser costs far more per byte than the binary's). Default 1 MiB.
    TextSize max_text_size = 1 << 20, "bytes of WebAssembly text";
}

/// A component refused because one count passed its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TooComplex {
    /// Which limit.
    pub limit: Limit,
    /// The count where it passed the limit (counting stops there).
    pub found: u64,
    /// The limit's value.
    pub max: u64,
    /// Where, for a limit of one function: `defined function 12 of core module 0`.
    pub place: Option<String>,
}

impl fmt::Display for TooComplex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.found, self.limit.what())?;
        if let Some(place) = &self.place {
            write!(f, " in {place}")?;
        }
        write!(
            f,
            " is over the host's limit of {} (`{}`): compile time and memory grow with this \
             count, not with the file's size; split the agent, or raise the limit in the host's \
             engine configuration",
            self.max,
            self.limit.field()
        )
    }
}

impl std::error::Error for TooComplex {}

/// What a component asks of the compiler, as counted: the quantities [`CompileLimits`] bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Complexity {
    /// Core modules.
    pub modules: u64,
    /// Nested components.
    pub components: u64,
    /// Deepest component nesting (0: none nested).
    pub component_depth: u64,
    /// Core instances of one instantiation, nesting expanded.
    pub core_instances: u64,
    /// Memories one instantiation defines.
    pub memories: u64,
    /// Tables one instantiation defines.
    pub tables: u64,
    /// Component items, nesting expanded.
    pub component_items: u64,
    /// Functions defined.
    pub functions: u64,
    /// Bytes of function bodies.
    pub code_bytes: u64,
    /// Blocks in all functions.
    pub blocks: u64,
    /// Largest function body, in bytes.
    pub largest_function: u64,
    /// Most locals in one function.
    pub most_locals: u64,
    /// Most blocks in one function.
    pub most_blocks: u64,
    /// Deepest block nesting.
    pub deepest_blocks: u64,
    /// Largest `br_table`.
    pub largest_br_table: u64,
    /// Largest locals × blocks of one function.
    pub most_local_merges: u64,
    /// Locals × blocks of all functions.
    pub local_merges: u64,
    /// Most values on the operand stack of one function.
    pub highest_stack: u64,
    /// Core types.
    pub types: u64,
    /// Core imports.
    pub imports: u64,
    /// Core exports.
    pub exports: u64,
    /// Globals.
    pub globals: u64,
    /// Data segments.
    pub data_segments: u64,
    /// Bytes of data sections.
    pub data_bytes: u64,
    /// Element segments.
    pub element_segments: u64,
    /// Element items.
    pub element_items: u64,
    /// Bytes of custom sections.
    pub custom_bytes: u64,
}

/// The WebAssembly features the engine compiles: what wasmtime 48 enables by default with the
/// crate features Warden builds it with (`Config::features`: the 3.0 set without GC, exceptions
/// and threads, plus the component model). Validating with them refuses here what the compiler
/// would refuse later.
pub fn engine_features() -> WasmFeatures {
    let mut features = WasmFeatures::WASM3;
    features.remove(WasmFeatures::GC_TYPES | WasmFeatures::EXCEPTIONS | WasmFeatures::THREADS);
    features | WasmFeatures::COMPONENT_MODEL
}

/// Validate `bytes` (a binary component) and count what compiling it would cost.
///
/// # Errors
///
/// [`EngineError::TooComplex`] at the first count over its limit (counting stops there, so a
/// refusal costs little), [`EngineError::Invalid`] when the component does not validate.
pub fn check(bytes: &[u8], limits: &CompileLimits) -> Result<Complexity, EngineError> {
    walk::walk(bytes, limits)
}

#[cfg(test)]
mod tests;

//! The random capability (`[random] secure` in a policy, `wasi:random/random` in WIT,
//! `warden_guest::random`), plus the always-linked insecure random that seeds hash maps.
//!
//! Both are wasmtime-wasi's implementations behind one check: a single request for more than
//! [`MAX_RANDOM_BYTES`] kills the instance with `out-of-scope` (capability `random`), instead of
//! the anonymous trap wasmtime-wasi would raise.

use wasmtime::component::HasData;
use wasmtime_wasi::p2::bindings::random::{insecure, random};
use wasmtime_wasi::random::WasiRandomCtx;

use crate::gate::{self, KillSwitch};

/// Largest single request for random bytes.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Marker type that links the gated random interfaces into a `Linker`.
pub struct GatedRandom;

impl HasData for GatedRandom {
    type Data<'a> = GatedRandomView<'a>;
}

/// wasmtime-wasi's random context with this instance's kill switch.
pub struct GatedRandomView<'a> {
    /// wasmtime-wasi's context.
    pub inner: &'a mut WasiRandomCtx,
    /// Where violations go.
    pub kill: &'a KillSwitch,
}

impl GatedRandomView<'_> {
    fn check(&self, len: u64) -> wasmtime::Result<()> {
        gate::check(self.kill, len <= MAX_RANDOM_BYTES, "random", || {
            format!("asked for {len} random bytes at once; the limit is {MAX_RANDOM_BYTES}")
        })
    }
}

impl random::Host for GatedRandomView<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.check(len)?;
        random::Host::get_random_bytes(self.inner, len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        random::Host::get_random_u64(self.inner)
    }
}

impl insecure::Host for GatedRandomView<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.check(len)?;
        insecure::Host::get_insecure_random_bytes(self.inner, len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        insecure::Host::get_insecure_random_u64(self.inner)
    }
}

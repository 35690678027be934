//! The file capability (`[fs]` in a policy, `wasi:filesystem` in WIT, `std::fs` in a guest).
//!
//! Config: [`FsScope`], the policy's [`crate::policy::FsGrant`] bound to a workspace folder.
//! Per-instance state: [`FsState`], with the [`Overlay`] its writable mounts are staged in.
//! Host implementation: [`GatedFsView`]. Only the static-prefix folders of the policy's patterns
//! are preopened; every path-naming call is walked the way the kernel will walk it
//! ([`resolve`]) and checked against the patterns, and a miss (or a walk out of the folder, by
//! whatever route) kills the instance. A writable mount is preopened on its
//! staging folder, which the overlay fills from the workspace on demand (see [`overlay`]).

mod guard;
mod host;
pub mod overlay;
pub mod resolve;
mod scope;
#[cfg(unix)]
mod streams;

pub use host::{FsState, GatedFs, GatedFsView};
pub use overlay::{Need, Overlay, Staged};
pub use scope::{Access, FsScope, MountError, MountPoint};

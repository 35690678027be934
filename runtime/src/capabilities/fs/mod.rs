//! The file capability (`[fs]` in a policy, `wasi:filesystem` in WIT, `std::fs` in a guest).
//!
//! Config: [`FsScope`], the policy's [`crate::policy::FsGrant`] bound to a workspace folder.
//! Per-instance state: [`FsState`]. Host implementation: [`GatedFsView`]. Only the static-prefix
//! folders of the policy's patterns are preopened; every path-naming call is checked against the
//! patterns (after `..` and symlinks are resolved), and a miss kills the instance.

mod host;
mod scope;

pub use host::{FsState, GatedFs, GatedFsView};
pub use scope::{Access, FsScope, MountError, MountPoint};

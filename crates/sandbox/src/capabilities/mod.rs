//! One module per capability. Each has the same parts in the same order: its config (built from
//! the validated policy), its per-instance state, its host implementation, its tests. The module
//! name matches the policy section, the WIT interface and the guest-sdk module.

pub mod agents;
pub mod fs;
pub mod human;
pub mod memory;
pub mod model;
pub mod net;
pub mod random;
pub mod tools;

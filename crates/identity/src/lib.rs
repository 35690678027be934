//! Who is acting, and what vouches for it: ed25519 keys and detached signatures of agents and
//! policies ([`keys`]), user identity tokens ([`token`]), the user a run acts for ([`user`]),
//! per-task credentials the host mints ([`credential`]) and host-held secrets ([`secrets`]).
//!
//! This crate knows the policy types and nothing of the sandbox or the ledger: the sandbox
//! consumes its types at the call (secrets injected into a granted request, credentials handed to
//! a tool, the user's grant intersected with the policy), the ledger signs with its keys.
#![deny(missing_docs)]

pub mod credential;
pub mod keys;
pub mod secrets;
pub mod token;
pub mod user;

pub use keys::{IdentityError, SecretKey};
use warden_policy as policy;
use warden_policy::bounded;

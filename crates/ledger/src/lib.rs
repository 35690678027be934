//! What the host keeps: the state store ([`store`]: tasks and their traces, trust records,
//! pending actions, audit checkpoints), the hash-chained audit log ([`audit`]), the trust
//! ladder's rules ([`trust`]), signed approvals of irreversible actions ([`approval`]) and the
//! data directory that holds them all ([`ledger`]); a reviewer's part on the ladder, signed
//! ([`review`]).
//!
//! It knows the policy types and the identity crate's keys, and nothing of the sandbox: the
//! host glue above hands it what a run did, and what to run once an action is approved.
#![deny(missing_docs)]

pub mod approval;
pub mod audit;
pub mod ledger;
pub mod review;
pub mod store;
pub mod trust;

pub use ledger::{Ledger, LedgerError};
use warden_identity::keys as identity;
use warden_policy as policy;
use warden_policy::bounded;

//! The trust ladder: how an agent earns autonomy by a clean history and loses it at once.
//!
//! An agent is known by its publisher key and name ([`agent_id`]); the level it earned belongs to
//! the module hash it earned it with, and a new build starts again at level 1 unless its policy
//! says `trust.inherit = true`. [`Ladder::after_task`] applies one task's verdict: a clean success
//! extends the streak and, after `trust.promote_after` of them, moves the agent up a level; an
//! agent error breaks the streak; a kill, a violation, a call to an API that does not exist or a
//! reported regression drops it to level 1 and holds it there until a reviewer who looked at the
//! trace that demoted it reinstates it ([`Ladder::reinstate`]).

use sha2::{Digest, Sha256};

use crate::policy::trust::{ASSISTIVE, AUTONOMOUS};
use crate::store::{TrustRecord, now_ms};

/// The trust identity of an agent: `<publisher key>/<name>`, or `unsigned/<name>`.
pub fn agent_id(publisher: Option<&str>, name: &str) -> String {
    format!("{}/{name}", publisher.unwrap_or("unsigned"))
}

/// What one task says about the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Completed without a violation.
    Clean,
    /// The agent returned an error: no demotion, but the streak starts over.
    AgentError,
    /// Killed, a violation, an unknown API or a reported regression: demotion to level 1.
    Demote(String),
}

/// A change of standing, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TrustChange {
    /// Moved up a level.
    Promoted {
        /// The level before.
        from: u8,
        /// The level now.
        to: u8,
    },
    /// Dropped to level 1 and held for review.
    Demoted {
        /// The level before.
        from: u8,
        /// Why.
        reason: String,
    },
    /// A new module hash started over at level 1.
    Reset {
        /// The hash the old level belonged to.
        previous_hash: String,
        /// The level it had.
        previous_level: u8,
    },
    /// A reviewer restored the level held before the demotion.
    Reinstated {
        /// The restored level.
        to: u8,
        /// Who.
        by: String,
    },
}

impl TrustChange {
    /// The audit record kind of this change.
    pub fn kind(&self) -> &'static str {
        match self {
            TrustChange::Promoted { .. } => "trust-promoted",
            TrustChange::Demoted { .. } => "trust-demoted",
            TrustChange::Reset { .. } => "trust-reset",
            TrustChange::Reinstated { .. } => "trust-reinstated",
        }
    }
}

/// Why a reinstatement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    /// The agent is not held.
    #[error("agent {0} is not demoted; there is nothing to reinstate")]
    NotHeld(String),
    /// The review code does not match the trace that demoted the agent.
    #[error(
        "the review code does not match the trace that demoted {0}; run `warden trust review` and pass the code it prints"
    )]
    NotReviewed(String),
}

/// The ladder's rules, applied to [`TrustRecord`]s.
pub struct Ladder;

impl Ladder {
    /// The record to run with: `existing` if it belongs to `module_hash` (or the policy lets a
    /// new build inherit), otherwise a fresh level-1 record, with the change to audit.
    pub fn for_module(
        existing: Option<TrustRecord>,
        agent_id: &str,
        module_hash: &str,
        inherit: bool,
    ) -> (TrustRecord, Option<TrustChange>) {
        match existing {
            None => (TrustRecord::new(agent_id, module_hash), None),
            Some(r) if r.module_hash == module_hash => (r, None),
            Some(mut r) if inherit => {
                r.module_hash = module_hash.to_owned();
                (r, None)
            }
            Some(r) => {
                let change = TrustChange::Reset {
                    previous_hash: r.module_hash.clone(),
                    previous_level: r.level,
                };
                let mut fresh = TrustRecord::new(agent_id, module_hash);
                // A held agent stays held: a rebuild is not a way around review.
                if r.held {
                    fresh.held = true;
                    fresh.demoted_by_task = r.demoted_by_task;
                    fresh.demoted_reason = r.demoted_reason;
                }
                (fresh, Some(change))
            }
        }
    }

    /// Apply one task's `verdict` to `record`; returns the change of level, if any.
    pub fn after_task(
        record: &mut TrustRecord,
        verdict: &Verdict,
        promote_after: u32,
        task: u64,
    ) -> Option<TrustChange> {
        record.updated_ms = now_ms();
        match verdict {
            Verdict::Clean => {
                record.streak = record.streak.saturating_add(1);
                if !record.held && record.streak >= promote_after && record.level < AUTONOMOUS {
                    let from = record.level;
                    record.level += 1;
                    record.streak = 0;
                    return Some(TrustChange::Promoted {
                        from,
                        to: record.level,
                    });
                }
                None
            }
            Verdict::AgentError => {
                record.streak = 0;
                None
            }
            Verdict::Demote(reason) => {
                let from = record.level;
                if !record.held {
                    record.level_before = record.level;
                }
                record.level = ASSISTIVE;
                record.streak = 0;
                record.held = true;
                record.demoted_by_task = Some(task);
                record.demoted_reason = Some(reason.clone());
                record.reviewed_by = None;
                Some(TrustChange::Demoted {
                    from,
                    reason: reason.clone(),
                })
            }
        }
    }

    /// The code `warden trust review` prints for the trace that demoted an agent; reinstating
    /// needs it, so a reviewer cannot reinstate without having been shown that trace.
    pub fn review_code(record: &TrustRecord, trace: &serde_json::Value) -> String {
        let mut h = Sha256::new();
        h.update(b"warden-trust-review-v1\n");
        h.update(record.agent_id.as_bytes());
        h.update(b"\n");
        h.update(record.demoted_by_task.unwrap_or(0).to_string().as_bytes());
        h.update(b"\n");
        h.update(trace.to_string().as_bytes());
        let digest = h.finalize();
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Restore a held agent to the level it had before its demotion.
    ///
    /// # Errors
    ///
    /// [`TrustError`] when it is not held or `code` is not the review code of the trace that
    /// demoted it.
    pub fn reinstate(
        record: &mut TrustRecord,
        trace: &serde_json::Value,
        code: &str,
        reviewer: &str,
    ) -> Result<TrustChange, TrustError> {
        if !record.held {
            return Err(TrustError::NotHeld(record.agent_id.clone()));
        }
        if Ladder::review_code(record, trace) != code.trim() {
            return Err(TrustError::NotReviewed(record.agent_id.clone()));
        }
        record.held = false;
        record.level = record.level_before.max(ASSISTIVE);
        record.streak = 0;
        record.reviewed_by = Some(reviewer.to_owned());
        record.updated_ms = now_ms();
        Ok(TrustChange::Reinstated {
            to: record.level,
            by: reviewer.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_after_n_clean_runs_and_demotion_on_a_violation() {
        let mut r = TrustRecord::new("unsigned/a", "h1");
        for _ in 0..2 {
            assert_eq!(Ladder::after_task(&mut r, &Verdict::Clean, 3, 1), None);
        }
        assert_eq!(
            Ladder::after_task(&mut r, &Verdict::Clean, 3, 3),
            Some(TrustChange::Promoted { from: 1, to: 2 })
        );
        // An agent error breaks the streak.
        Ladder::after_task(&mut r, &Verdict::Clean, 3, 4);
        Ladder::after_task(&mut r, &Verdict::AgentError, 3, 5);
        Ladder::after_task(&mut r, &Verdict::Clean, 3, 6);
        Ladder::after_task(&mut r, &Verdict::Clean, 3, 7);
        assert_eq!(r.level, 2);
        let change = Ladder::after_task(&mut r, &Verdict::Demote("killed".into()), 3, 8);
        assert!(matches!(change, Some(TrustChange::Demoted { from: 2, .. })));
        assert_eq!((r.level, r.held, r.demoted_by_task), (1, true, Some(8)));
        // Held: clean runs do not promote.
        for t in 9..20 {
            assert_eq!(Ladder::after_task(&mut r, &Verdict::Clean, 3, t), None);
        }
        assert_eq!(r.level, 1);
    }

    #[test]
    fn reinstatement_needs_the_review_code() {
        let mut r = TrustRecord::new("unsigned/a", "h1");
        r.level = 3;
        Ladder::after_task(&mut r, &Verdict::Demote("out-of-scope".into()), 3, 4);
        let trace = serde_json::json!({"events": [{"call": "open_at /etc/passwd"}]});
        assert_eq!(
            Ladder::reinstate(&mut r, &trace, "000000000000", "alice"),
            Err(TrustError::NotReviewed("unsigned/a".into()))
        );
        let code = Ladder::review_code(&r, &trace);
        assert_eq!(
            Ladder::reinstate(&mut r, &trace, &code, "alice"),
            Ok(TrustChange::Reinstated {
                to: 3,
                by: "alice".into()
            })
        );
        assert!(!r.held);
        assert_eq!(
            Ladder::reinstate(&mut r, &trace, &code, "alice"),
            Err(TrustError::NotHeld("unsigned/a".into()))
        );
    }

    #[test]
    fn a_new_build_starts_over_unless_it_inherits() {
        let mut old = TrustRecord::new("k/a", "h1");
        old.level = 3;
        let (r, change) = Ladder::for_module(Some(old.clone()), "k/a", "h1", false);
        assert_eq!((r.level, change), (3, None));
        let (r, change) = Ladder::for_module(Some(old.clone()), "k/a", "h2", false);
        assert_eq!(r.level, 1);
        assert!(matches!(
            change,
            Some(TrustChange::Reset {
                previous_level: 3,
                ..
            })
        ));
        let (r, change) = Ladder::for_module(Some(old.clone()), "k/a", "h2", true);
        assert_eq!((r.level, r.module_hash.as_str(), change), (3, "h2", None));
        old.held = true;
        let (r, _) = Ladder::for_module(Some(old), "k/a", "h2", false);
        assert!(r.held, "a rebuild does not escape review");
    }
}

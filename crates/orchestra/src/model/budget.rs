//! The model budget of a task ([`Budget`]): tokens and money, shared through an `Arc` so that
//! a tree of agent calls can draw on one.
//!
//! Before a request is sent its cost is estimated: prompt tokens ≈ ⌈bytes of all messages ÷ 4⌉
//! (the host's layers included), completion tokens = `max_tokens`, priced at the model's input
//! and output prices (no cache discount: the estimate errs high). That estimate is *held* on the
//! [`Budget`] while the call is in flight, so calls running at once (a tree of agents sharing one
//! budget) cannot together pass it. If what is spent, plus what is held, plus this estimate
//! would pass either the token or the money budget, nothing is sent: the call fails with
//! [`ModelFailure::BudgetExceeded`](warden_sandbox::capabilities::model::ModelFailure::BudgetExceeded) and the session reports the escalation `budget-cap`.
//!
//! After the call the hold is replaced by the real usage and cost ([`warden_policy::Price::cost`]
//! of the provider's `usage`). A call whose prompt held more tokens than ¼ of its bytes can
//! therefore end a little over the budget; the next call is then refused. A failed call charges
//! nothing (the provider reported no usage). A call abandoned mid-flight (its task killed or out
//! of time) charges its whole estimate, since the provider may have billed it, and is recorded
//! as [`CallOutcome::Abandoned`](super::CallOutcome::Abandoned) with that estimate as its usage.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Tokens and money that one task (or a tree of agent calls) may spend on models. Shared through
/// an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Budget {
    tokens: u64,
    micro_usd: u64,
    drawn: Mutex<Drawn>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Drawn {
    spent_tokens: u64,
    spent_micro_usd: u64,
    held_tokens: u64,
    held_micro_usd: u64,
}

/// What a budget has spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spent {
    /// Prompt + completion tokens.
    pub tokens: u64,
    /// Millionths of a US dollar.
    pub micro_usd: u64,
}

impl Budget {
    /// A budget of `tokens` (prompt + completion) and `micro_usd` (millionths of a US dollar).
    pub fn new(tokens: u64, micro_usd: u64) -> Arc<Budget> {
        Arc::new(Budget {
            tokens,
            micro_usd,
            drawn: Mutex::new(Drawn::default()),
        })
    }

    /// The token limit.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The money limit, in millionths of a US dollar.
    pub fn micro_usd(&self) -> u64 {
        self.micro_usd
    }

    /// What was spent so far (calls still in flight not included).
    pub fn spent(&self) -> Spent {
        let d = *self.lock();
        Spent {
            tokens: d.spent_tokens,
            micro_usd: d.spent_micro_usd,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Drawn> {
        // A panic elsewhere cannot leave `Drawn` half-updated: every update is a few additions.
        self.drawn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold `tokens` and `micro_usd` for a call about to be sent, or say why not.
    pub(crate) fn hold(&self, tokens: u64, micro_usd: u64) -> Result<Hold<'_>, String> {
        let mut d = self.lock();
        let used_tokens = d.spent_tokens.saturating_add(d.held_tokens);
        let used_usd = d.spent_micro_usd.saturating_add(d.held_micro_usd);
        let over_tokens = used_tokens.saturating_add(tokens) > self.tokens;
        let over_usd = used_usd.saturating_add(micro_usd) > self.micro_usd;
        if over_tokens || over_usd {
            return Err(format!(
                "this call could use {tokens} tokens and {micro_usd} µUSD; the task has used \
                 {used_tokens} of its {} tokens and {used_usd} of its {} µUSD",
                self.tokens, self.micro_usd
            ));
        }
        d.held_tokens += tokens;
        d.held_micro_usd += micro_usd;
        Ok(Hold {
            budget: self,
            tokens,
            micro_usd,
            settled: false,
        })
    }
}

/// An estimate held on a budget while its call is in flight.
#[derive(Debug)]
pub(crate) struct Hold<'a> {
    budget: &'a Budget,
    tokens: u64,
    micro_usd: u64,
    settled: bool,
}

impl Hold<'_> {
    /// Replace the hold with what the call really spent.
    pub(crate) fn settle(mut self, tokens: u64, micro_usd: u64) {
        let mut d = self.budget.lock();
        d.held_tokens -= self.tokens;
        d.held_micro_usd -= self.micro_usd;
        d.spent_tokens = d.spent_tokens.saturating_add(tokens);
        d.spent_micro_usd = d.spent_micro_usd.saturating_add(micro_usd);
        self.settled = true;
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // Abandoned in flight: the provider may have billed it, so the estimate is spent.
            let (tokens, micro_usd) = (self.tokens, self.micro_usd);
            let mut d = self.budget.lock();
            d.held_tokens -= tokens;
            d.held_micro_usd -= micro_usd;
            d.spent_tokens = d.spent_tokens.saturating_add(tokens);
            d.spent_micro_usd = d.spent_micro_usd.saturating_add(micro_usd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_settle_release_or_are_spent() {
        let b = Budget::new(100, 1_000);
        let h = b.hold(60, 600).unwrap();
        let e = b.hold(50, 1).unwrap_err();
        assert!(e.contains("has used 60 of its 100 tokens"), "{e}");
        h.settle(20, 100);
        assert_eq!(
            b.spent(),
            Spent {
                tokens: 20,
                micro_usd: 100
            }
        );
        assert!(b.hold(81, 1).is_err(), "tokens: 20 + 81 > 100");
        assert!(b.hold(1, 901).is_err(), "money: 100 + 901 > 1000");
        drop(b.hold(80, 900).unwrap());
        assert_eq!(
            b.spent(),
            Spent {
                tokens: 100,
                micro_usd: 1_000
            },
            "an abandoned hold is spent"
        );
        assert!(b.hold(0, 0).is_ok(), "exactly at the limit is not over it");
        assert_eq!((b.tokens(), b.micro_usd()), (100, 1_000));
    }
}

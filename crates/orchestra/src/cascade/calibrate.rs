//! Calibrating a stated confidence against the agent's own history.
//!
//! A stated confidence falls in one of ten bins (`[0, 0.1)`, …, `[0.9, 1]`). For each agent and
//! bin the host counts how many of the outcomes stated with that confidence were verified. The
//! calibrated value is the bin's verified rate, pulled towards the stated value by two
//! pseudo-outcomes at the stated value: `(verified + 2·stated) / (n + 2)`. With no history it is
//! the stated value; an agent whose confident answers keep failing is trusted less than it says,
//! and one that is right more often than it says is trusted more.

use serde::{Deserialize, Serialize};

/// Pseudo-outcomes at the stated value: how much history it takes to move the estimate.
const PRIOR: f64 = 2.0;

/// One agent's history in one bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    /// Outcomes stated in this bin.
    pub stated: u64,
    /// Of those, verified.
    pub verified: u64,
}

/// The bin (0..=9) of a stated confidence; out-of-range and NaN values are clamped.
pub fn bin_of(stated: f64) -> u8 {
    let s = if stated.is_nan() {
        0.0
    } else {
        stated.clamp(0.0, 1.0)
    };
    ((s * 10.0).floor() as u8).min(9)
}

/// The calibrated confidence of `stated`, given the agent's history in its bin.
pub fn calibrated(stated: f64, history: Bin) -> f64 {
    let s = if stated.is_nan() {
        0.0
    } else {
        stated.clamp(0.0, 1.0)
    };
    let verified = history.verified.min(history.stated) as f64;
    (verified + PRIOR * s) / (history.stated as f64 + PRIOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_clamp_and_floor() {
        for (stated, bin) in [
            (0.0, 0),
            (0.05, 0),
            (0.1, 1),
            (0.95, 9),
            (1.0, 9),
            (7.0, 9),
            (-1.0, 0),
            (f64::NAN, 0),
        ] {
            assert_eq!(bin_of(stated), bin, "{stated}");
        }
    }

    #[test]
    fn no_history_keeps_the_stated_value_and_history_moves_it() {
        assert!((calibrated(0.9, Bin::default()) - 0.9).abs() < 1e-9);
        // Confident and usually wrong: trusted much less than it says.
        let wrong = calibrated(
            0.95,
            Bin {
                stated: 10,
                verified: 1,
            },
        );
        assert!(wrong < 0.3, "{wrong}");
        // Modest and always right: trusted more than it says.
        let right = calibrated(
            0.4,
            Bin {
                stated: 10,
                verified: 10,
            },
        );
        assert!(right > 0.8, "{right}");
        // A corrupt history (more verified than stated) is bounded.
        assert!(
            calibrated(
                0.5,
                Bin {
                    stated: 1,
                    verified: 9
                }
            ) <= 1.0
        );
    }
}

//! `[clocks]`: which clocks an agent may read ([`ClockGrant`]).
//!
//! Deny by default: without a grant the clock is not available to the agent.

use super::raw::{RawClocks, Table};

/// The clock grant. Both default to false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockGrant {
    /// `clocks.wall`: may read the wall clock (date and time of day).
    pub wall: bool,
    /// `clocks.monotonic`: may read the monotonic clock (elapsed time).
    pub monotonic: bool,
}

impl ClockGrant {
    pub(crate) fn from_raw(raw: Option<Table<RawClocks>>) -> ClockGrant {
        let Table(raw) = raw.unwrap_or(Table(RawClocks {
            wall: None,
            monotonic: None,
        }));
        ClockGrant {
            wall: raw.wall.unwrap_or(false),
            monotonic: raw.monotonic.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_only_when_written_true() {
        let cases = [
            (
                None,
                None,
                ClockGrant {
                    wall: false,
                    monotonic: false,
                },
            ),
            (
                Some(true),
                None,
                ClockGrant {
                    wall: true,
                    monotonic: false,
                },
            ),
            (
                None,
                Some(true),
                ClockGrant {
                    wall: false,
                    monotonic: true,
                },
            ),
            (
                Some(false),
                Some(false),
                ClockGrant {
                    wall: false,
                    monotonic: false,
                },
            ),
        ];
        for (wall, monotonic, expected) in cases {
            assert_eq!(
                ClockGrant::from_raw(Some(Table(RawClocks { wall, monotonic }))),
                expected
            );
        }
        assert_eq!(ClockGrant::from_raw(None), ClockGrant::default());
    }
}

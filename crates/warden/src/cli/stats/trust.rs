//! Promotions and demotions on the trust ladder over time, from the audit log's
//! `trust-promoted` and `trust-demoted` records: per agent and per day (UTC).

use std::collections::BTreeMap;

use serde::Serialize;
use warden::audit::AuditRecord;

/// One agent's changes of standing on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustDay {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The agent.
    pub agent: String,
    /// Promotions that day.
    pub promotions: u64,
    /// Demotions that day.
    pub demotions: u64,
}

/// A change of standing: `Some(true)` a promotion, `Some(false)` a demotion.
pub fn change(r: &AuditRecord) -> Option<bool> {
    match r.kind.as_str() {
        "trust-promoted" => Some(true),
        "trust-demoted" => Some(false),
        _ => None,
    }
}

/// The changes in `records`, per day and agent, oldest day first.
pub fn timeline(records: &[AuditRecord]) -> Vec<TrustDay> {
    let mut days: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for r in records {
        let Some(up) = change(r) else { continue };
        let agent = r.agent.clone().unwrap_or_else(|| "-".into());
        let slot = days.entry((day(r.time_ms), agent)).or_default();
        if up {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    days.into_iter()
        .map(|((day, agent), (promotions, demotions))| TrustDay {
            day,
            agent,
            promotions,
            demotions,
        })
        .collect()
}

/// The UTC date of a Unix time in milliseconds, `YYYY-MM-DD` (the civil-from-days algorithm of
/// H. Hinnant's date library).
pub fn day(ms: u64) -> String {
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, agent: &str, time_ms: u64) -> AuditRecord {
        AuditRecord {
            seq: 1,
            time_ms,
            kind: kind.into(),
            task: Some(1),
            agent: Some(agent.into()),
            user: None,
            detail: serde_json::Value::Null,
            prev: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn days_are_utc_dates() {
        for (ms, want) in [
            (0, "1970-01-01"),
            (86_399_999, "1970-01-01"),
            (86_400_000, "1970-01-02"),
            (951_782_400_000, "2000-02-29"),
            (1_709_164_800_000, "2024-02-29"),
            (1_735_689_599_000, "2024-12-31"),
            (1_735_689_600_000, "2025-01-01"),
        ] {
            assert_eq!(day(ms), want, "{ms}");
        }
    }

    #[test]
    fn changes_per_agent_and_day() {
        const DAY: u64 = 86_400_000;
        let records = vec![
            record("trust-promoted", "ask", 2 * DAY),
            record("task-ended", "ask", 2 * DAY),
            record("trust-promoted", "ask", 2 * DAY + 5),
            record("trust-demoted", "ask", 3 * DAY),
            record("trust-reset", "ask", 3 * DAY),
            record("trust-demoted", "implementer", 2 * DAY),
        ];
        let got = timeline(&records);
        let rows: Vec<(&str, &str, u64, u64)> = got
            .iter()
            .map(|d| (d.day.as_str(), d.agent.as_str(), d.promotions, d.demotions))
            .collect();
        assert_eq!(
            rows,
            [
                ("1970-01-03", "ask", 2, 0),
                ("1970-01-03", "implementer", 0, 1),
                ("1970-01-04", "ask", 0, 1),
            ]
        );
        assert!(timeline(&[]).is_empty());
    }
}

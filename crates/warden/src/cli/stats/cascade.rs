//! The cascade's figures: decision quality from a cascade's saved stages (verified on the first
//! try, or after rework) and its escalations by trigger from the audit log's `task-escalated`
//! records (every pause counts, also one a person resumed since).

use serde::Deserialize;
use warden::audit::AuditRecord;
use warden::orchestra::cascade::StageNote;

/// How a verified cascade got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Its one implementation passed the gate.
    FirstTry,
    /// A gate failed before the final pass, or the implementer ran more than once (the fast
    /// path's change was not confident, or the team tried again).
    Rework,
}

/// The part of a saved `CascadeState` the figures read (lenient: a field added later is
/// ignored).
#[derive(Debug, Deserialize)]
struct Saved {
    #[serde(default)]
    stages: Vec<StageNote>,
}

/// The stages of a saved position (JSON text); `None` when it does not parse.
pub fn saved_stages(text: &str) -> Option<Vec<StageNote>> {
    serde_json::from_str::<Saved>(text).ok().map(|s| s.stages)
}

/// The quality of a cascade whose stages are `stages`; `None` unless its last gate passed (it
/// was not verified, or not yet).
pub fn quality(stages: &[StageNote]) -> Option<Quality> {
    let gates: Vec<&str> = stages
        .iter()
        .filter(|s| s.agent == "gate")
        .map(|s| s.outcome.as_str())
        .collect();
    if gates.last() != Some(&"passed") {
        return None;
    }
    let implementations = stages.iter().filter(|s| s.agent == "implementer").count();
    if gates.len() > 1 || implementations > 1 {
        Some(Quality::Rework)
    } else {
        Some(Quality::FirstTry)
    }
}

/// The trigger of a `task-escalated` record of the cascade `task`, if `r` is one.
pub fn escalation(r: &AuditRecord) -> Option<(u64, String)> {
    if r.kind != "task-escalated" {
        return None;
    }
    let trigger = r.detail["outcome"]["trigger"].as_str()?;
    Some((r.task?, trigger.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stages(list: &[(&str, &str)]) -> Vec<StageNote> {
        list.iter()
            .map(|(agent, outcome)| StageNote {
                agent: (*agent).into(),
                outcome: (*outcome).into(),
                detail: None,
            })
            .collect()
    }

    #[test]
    fn first_try_or_rework_from_the_stages() {
        use Quality::*;
        let done = [
            ("documenter", "completed"),
            ("validator", "completed"),
            ("memory-curator", "completed"),
        ];
        let with_done = |head: &[(&'static str, &'static str)]| {
            let mut v = head.to_vec();
            v.extend_from_slice(&done);
            stages(&v)
        };
        let table: Vec<(Vec<StageNote>, Option<Quality>)> = vec![
            // The fast path passed.
            (
                with_done(&[
                    ("router", "completed"),
                    ("implementer", "completed"),
                    ("gate", "passed"),
                ]),
                Some(FirstTry),
            ),
            // The team alone (fast_path = false), first change passed.
            (
                with_done(&[
                    ("planner", "completed"),
                    ("skeptic", "completed"),
                    ("tester", "completed"),
                    ("implementer", "completed"),
                    ("gate", "passed"),
                ]),
                Some(FirstTry),
            ),
            // The fast path failed the gate, the team passed.
            (
                with_done(&[
                    ("router", "completed"),
                    ("implementer", "completed"),
                    ("gate", "failed"),
                    ("planner", "completed"),
                    ("implementer", "completed"),
                    ("gate", "passed"),
                ]),
                Some(Rework),
            ),
            // The fast path was not confident: no gate ran on it, but it was done twice.
            (
                with_done(&[
                    ("router", "completed"),
                    ("implementer", "completed"),
                    ("planner", "completed"),
                    ("implementer", "completed"),
                    ("gate", "passed"),
                ]),
                Some(Rework),
            ),
            // Not verified: the last gate failed, or none ran.
            (
                stages(&[("implementer", "completed"), ("gate", "failed")]),
                None,
            ),
            (
                stages(&[("router", "completed"), ("planner", "completed")]),
                None,
            ),
            (stages(&[]), None),
        ];
        for (s, want) in table {
            assert_eq!(quality(&s), want, "{s:?}");
        }
    }

    #[test]
    fn saved_positions_are_read_leniently() {
        let text = json!({"request": "r", "phase": "done", "future_field": 1,
            "stages": [{"agent": "gate", "outcome": "passed"}]})
        .to_string();
        assert_eq!(saved_stages(&text).unwrap().len(), 1);
        assert_eq!(saved_stages("{}").unwrap().len(), 0);
        assert!(saved_stages("not json").is_none());
    }

    #[test]
    fn escalations_come_from_task_escalated_records() {
        let record = |kind: &str, task: Option<u64>, detail: serde_json::Value| AuditRecord {
            seq: 1,
            time_ms: 0,
            kind: kind.into(),
            task,
            agent: Some("cascade".into()),
            user: None,
            detail,
            prev: String::new(),
            hash: String::new(),
        };
        let escalated = json!({"status": "escalated", "outcome": {"trigger": "budget"}});
        assert_eq!(
            escalation(&record("task-escalated", Some(7), escalated.clone())),
            Some((7, "budget".into()))
        );
        assert_eq!(
            escalation(&record("task-ended", Some(7), escalated.clone())),
            None
        );
        assert_eq!(escalation(&record("task-escalated", None, escalated)), None);
        assert_eq!(
            escalation(&record(
                "task-escalated",
                Some(7),
                json!({"status": "escalated"})
            )),
            None
        );
    }
}

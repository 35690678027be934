//! Host attacks of the `audit` class: a host killed with SIGKILL mid-stream (so no closing
//! checkpoint signs its last records), then its data directory attacked by someone who can write
//! it but does not hold the host key: the log's unsigned tail cut off, the log and its anchor
//! rolled back together, the unsigned tail rewritten with its chain recomputed, task rows deleted
//! from the store, the log cut back to the furthest record the store vouches for and that
//! record's newline taken off (so it looks like a write a kill cut short, which a host would otherwise cut and
//! record), a journal planted for a host that is gone ending a task otherwise than the log says. `warden audit verify` must fail and write nothing (`contained:detected`), and
//! where the log itself was changed a host must refuse to start on it (which would sign it).

use std::path::Path;

#[path = "../ledger/killed.rs"]
mod killed;

use killed::{
    cut_after_last_checkpoint, data_files, edit_store, killed_batch, rewrite_unsigned_tail,
    roll_back_log_and_anchor, warden,
};

/// What an attack does to the data directory, and whether it changed the log (so that a host
/// must refuse to start on it).
type Attack = (fn(&Path), bool);

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    let attack: Attack = match name {
        "audit-crash-cut-unsigned-tail" => (
            |d| {
                cut_after_last_checkpoint(d);
            },
            true,
        ),
        "audit-crash-roll-back-log-and-anchor" => (
            |d| {
                roll_back_log_and_anchor(d);
            },
            true,
        ),
        "audit-crash-rewrite-unsigned-tail" => (|d| rewrite_unsigned_tail(d, "killed"), true),
        "audit-crash-strip-newline-of-vouched-record" => (strip_newline_of_vouched, true),
        "audit-crash-delete-task-rows" => (
            |d| {
                edit_store(
                    d,
                    "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks ORDER BY id DESC LIMIT 5 OFFSET 10)",
                );
            },
            false,
        ),
        "audit-crash-forged-journal-end" => (forge_journal_end, false),
        _ => return None,
    };
    let outcome = tokio::task::spawn_blocking(move || attempt(attack))
        .await
        .expect("the attack runs");
    Some(vec![outcome])
}

fn attempt((attack, log_changed): Attack) -> String {
    let host = killed_batch(60);
    let data = host.copy("attacked");
    attack(&data);
    let before = data_files(&data);
    let (code, out, err) = warden(&data, &["audit", "verify"]);
    if data_files(&data) != before {
        return "breach:verify-wrote-to-the-data-directory".into();
    }
    if code == 0 {
        return format!("breach:verify-passed:{}", out.lines().next().unwrap_or(""));
    }
    if !err.contains("FAILED verification") {
        return format!("breach:verify-failed-otherwise:{err}");
    }
    if log_changed {
        let (code, _, _) = warden(&data, &["task", "list"]);
        if code == 0 {
            return "breach:a-host-started-on-the-damaged-log".into();
        }
        if data_files(&data)["audit.log"] != before["audit.log"] {
            return "breach:the-refused-start-wrote-to-the-log".into();
        }
        return "contained:detected,host-refused-to-start".into();
    }
    "contained:detected".into()
}

/// Cut the log back to the furthest record the store's task commits (or the killed host's
/// journal lines) vouch for, and take off
/// that record's newline: a torn write, to a host that did not check what the store vouches for
/// before cutting one. (A record no row vouches for can be cut this way, as it could be cut
/// whole: that is the unsigned tail's known limit; this attack targets one the store covers.)
fn strip_newline_of_vouched(data: &Path) {
    // The store's rows vouch for records, and so do the lines of the journal the killed host
    // left (the rows it had not yet written to the store).
    let stored: Option<i64> = rusqlite::Connection::open(data.join("state.db"))
        .unwrap()
        .query_row("SELECT max(audit_seq) FROM tasks", [], |r| r.get(0))
        .unwrap();
    let journaled = std::fs::read_dir(data.join("journal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".journal"))
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["head"]["seq"].as_i64())
                .collect::<Vec<_>>()
        })
        .max();
    let vouched = stored
        .into_iter()
        .chain(journaled)
        .max()
        .expect("the killed host vouched for some record");
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    // Records are numbered from 1, one a line: keep lines 1..=vouched, less the last newline.
    let end: usize = text
        .split_inclusive('\n')
        .take(usize::try_from(vouched).unwrap())
        .map(str::len)
        .sum();
    std::fs::write(&log, &text[..end - 1]).unwrap();
}

/// Plant a journal for a host that is gone, ending a task the log says completed as `failed`
/// (its trace and the log head it vouches for copied from the real ones): the next start would
/// write it into the store, and verify must see that the log says otherwise.
fn forge_journal_end(data: &Path) {
    let (id, trace): (u64, String) = rusqlite::Connection::open(data.join("state.db"))
        .unwrap()
        .query_row(
            "SELECT id, trace FROM tasks WHERE status = 'completed' ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let text = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(text.lines().rfind(|l| !l.is_empty()).unwrap()).unwrap();
    let line = serde_json::json!({
        "end": {
            "id": id,
            "status": "failed",
            "outcome": {"status": "failed"},
            "trace": serde_json::from_str::<serde_json::Value>(&trace).unwrap(),
            "staging": "none",
            "staging_path": null,
            "ended_ms": 1,
            "trust": null,
        },
        "head": {"seq": last["seq"], "hash": last["hash"]},
    });
    std::fs::create_dir_all(data.join("journal")).unwrap();
    std::fs::write(data.join("journal/1-1.journal"), format!("{line}\n")).unwrap();
}

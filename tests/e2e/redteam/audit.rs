//! Host attacks of the `audit` class: a host killed with SIGKILL mid-stream (so no closing
//! checkpoint signs its last records), then its data directory attacked by someone who can write
//! it but does not hold the host key: the log's unsigned tail cut off, the log and its anchor
//! rolled back together, the unsigned tail rewritten with its chain recomputed, task rows deleted
//! from the store. `warden audit verify` must fail and write nothing (`contained:detected`), and
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
        "audit-crash-delete-task-rows" => (
            |d| {
                edit_store(
                    d,
                    "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks ORDER BY id DESC LIMIT 5 OFFSET 10)",
                );
            },
            false,
        ),
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

//! A host killed with SIGKILL mid-stream, then its data directory attacked: `warden audit verify`
//! compares the log with the state store (read-only, changing no byte), so what no signed
//! checkpoint covered after the crash cannot be cut, rolled back or rewritten unnoticed, and a
//! host will not start on such a log. With nothing cut, the crash verifies clean, before and
//! after the next start signs what the killed host left unsigned; a line torn by the kill is
//! reported by verify and cut, kept aside and recorded by the next start.

use super::killed_host::{
    KilledHost, cut_after_last_checkpoint, data_files, edit_store, killed_batch, lines,
    rewrite_unsigned_tail, roll_back_log_and_anchor, warden,
};

/// `warden audit verify` on `data`, checked to have written nothing: exit code and output.
fn verify(data: &std::path::Path) -> (i32, String) {
    let before = data_files(data);
    let (code, out, err) = warden(data, &["audit", "verify"]);
    let after = data_files(data);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|f| before.get(*f) != after.get(*f))
        .collect();
    assert!(
        changed.is_empty(),
        "verify changed {changed:?} in {}",
        data.display()
    );
    (code, out + &err)
}

fn host() -> KilledHost {
    killed_batch(60)
}

#[test]
fn a_crash_with_nothing_cut_verifies_before_and_after_the_next_start() {
    let host = host();
    let data = host.copy("clean");
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("follow the newest signed checkpoint"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    // The next start signs what the killed host left unsigned, saying so in the log.
    let (code, _, err) = warden(&data, &["task", "list"]);
    assert_eq!(code, 0, "{err}");
    let tail = lines(&data);
    assert!(
        tail[tail.len() - 2].contains("\"audit-recovered\""),
        "{}",
        tail[tail.len() - 2]
    );
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("follow the newest signed checkpoint"),
        "{out}"
    );
    assert!(!out.contains("left running"), "{out}");
}

#[test]
fn a_crash_mid_write_verifies_with_a_note_and_the_next_start_cuts_and_records_the_torn_line() {
    let host = host();
    let data = host.copy("torn");
    // What a kill between two pages of a batch's write leaves: part of a record.
    let fragment = br#"{"seq":100000,"time_ms":1,"kind":"task-ended","task":7,"agent":"hel"#;
    let log = data.join("audit.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let offset = bytes.len();
    bytes.extend_from_slice(fragment);
    std::fs::write(&log, &bytes).unwrap();
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{} bytes of an incomplete line", fragment.len())),
        "{out}"
    );
    // The next start saves the fragment aside, cuts it and records that it did.
    let (code, _, err) = warden(&data, &["task", "list"]);
    assert_eq!(code, 0, "{err}");
    let saved = data.join(format!("audit.torn-{offset}"));
    assert_eq!(std::fs::read(&saved).unwrap(), fragment);
    assert!(
        lines(&data)
            .iter()
            .any(|l| l.contains("\"audit-torn-tail-discarded\"")
                && l.contains(&format!("\"offset\":{offset}"))),
        "no record of the cut"
    );
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("incomplete line"), "{out}");
}

#[test]
fn a_crash_then_the_logs_unsigned_tail_cut_off_is_caught() {
    let host = host();
    let data = host.copy("cut");
    let kept = cut_after_last_checkpoint(&data);
    assert!(kept < lines(&host.data).len(), "nothing was cut");
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "a cut log verified: {out}");
    assert!(
        out.contains("in the state store, but the audit log")
            && out.contains(&format!("ending at record {kept}"))
            && out.contains(&format!("so the log was cut after record {kept}")),
        "{out}"
    );
    // Nor does a host start on it (which would sign the cut log), and the log is left as it is.
    let before = data_files(&data);
    let (code, _, err) = warden(&data, &["task", "list"]);
    assert_ne!(code, 0, "a host started on a cut log");
    assert!(err.contains("vouch for it up to record"), "{err}");
    assert_eq!(data_files(&data)["audit.log"], before["audit.log"]);
}

#[test]
fn a_crash_then_the_log_and_its_anchor_rolled_back_together_is_caught() {
    let host = host();
    let data = host.copy("rolled-back");
    roll_back_log_and_anchor(&data);
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "a rolled-back log verified: {out}");
    assert!(out.contains("truncated or rolled back"), "{out}");
}

#[test]
fn a_crash_then_the_unsigned_tail_rewritten_with_its_chain_recomputed_is_caught() {
    let host = host();
    let data = host.copy("rewritten");
    rewrite_unsigned_tail(&data, "killed");
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "a rewritten log verified: {out}");
    assert!(out.contains("the state store"), "{out}");
}

#[test]
fn task_rows_deleted_from_the_store_are_caught() {
    let host = host();
    let data = host.copy("rows-deleted");
    let victim = host.reported[10];
    assert_eq!(
        edit_store(&data, &format!("DELETE FROM tasks WHERE id = {victim}")),
        1
    );
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("the state store has no task {victim}")),
        "{out}"
    );
    // And a task whose outcome was changed in the store.
    let data = host.copy("outcome-edited");
    let victim = host.reported[5];
    edit_store(
        &data,
        &format!("UPDATE tasks SET status = 'agent-error' WHERE id = {victim}"),
    );
    let (code, out) = verify(&data);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "task {victim} is `agent-error` in the state store"
        )),
        "{out}"
    );
}

//! Tests of the audit log: writing, verifying, tampering, reading the tail.

use super::*;
use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn host() -> VerifyingKey {
    key(1).verifying_key()
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::new("task-finished")
        .task(i as u64)
        .agent("hello")
        .user("alice")
        .detail(json!({"n": i, "outcome": "completed"}))
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(LOG_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A log of 10 records and a checkpoint (seq 11), anchored at size 10.
fn clean_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    for i in 0..10 {
        log.append(event(i)).unwrap();
    }
    log.checkpoint().unwrap();
    dir
}

/// A copy of `dir` (log and anchor) with its lines edited.
fn tampered(dir: &Path, edit: impl FnOnce(&mut Vec<String>)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let mut l = lines(dir);
    edit(&mut l);
    std::fs::write(copy.path().join(LOG_FILE), l.join("\n") + "\n").unwrap();
    std::fs::copy(dir.join(ANCHOR_FILE), copy.path().join(ANCHOR_FILE)).unwrap();
    copy
}

fn verify_dir(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let anchor = read_anchor(dir).unwrap();
    verify(&dir.join(LOG_FILE), &host(), anchor.as_ref())
}

/// Rewrites lines `from..` as an attacker without the key would: new prev, new hash.
fn rechain(l: &mut [String], from: usize) {
    for i in from..l.len() {
        let prev: AuditRecord = serde_json::from_str(&l[i - 1]).unwrap();
        let mut record: AuditRecord = serde_json::from_str(&l[i]).unwrap();
        record.prev = prev.hash;
        let text = serde_json::to_string(&record).unwrap();
        let hash = line_hash(record.prev.as_bytes(), text.as_bytes()).unwrap();
        l[i] = format!("{}{hash}\"}}", &text[..text.len() - 66]);
    }
}

/// Changes the last digit of a line's hash.
fn flip_hash(line: &str) -> String {
    let at = line.len() - 3;
    let digit = if &line[at..=at] == "0" { "1" } else { "0" };
    format!("{}{digit}{}", &line[..at], &line[at + 1..])
}

#[test]
fn a_log_written_from_many_threads_verifies_with_and_without_its_anchor() {
    fn shared<T: Send + Sync>() {}
    shared::<AuditLog>();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), key(1), 16).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append(event(t * 100 + i)).unwrap();
                    if i == 25 {
                        log.checkpoint().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let last = log.checkpoint().unwrap();
    let (seq, head) = log.head();
    let anchor = read_anchor(dir.path()).unwrap().unwrap();
    assert_eq!(anchor, last);
    assert_eq!(last.size + 1, seq);
    for anchor in [None, Some(&anchor)] {
        let report = verify(log.path(), &host(), anchor).unwrap();
        assert_eq!(report.records, seq);
        assert_eq!(report.head, head);
        assert_eq!(report.last_checkpoint, Some(last.size));
        // 9 on demand, and one after each event whose seq is a multiple of 16.
        assert!(report.checkpoints >= 400 / 16, "{report:?}");
        assert_eq!(report.records, 400 + report.checkpoints);
    }
}

#[test]
fn reopening_continues_the_chain() {
    let dir = clean_log();
    let (seq, head) = AuditLog::open(dir.path(), key(1), 0).unwrap().head();
    assert_eq!(seq, 11);
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    assert_eq!(log.head(), (seq, head.clone()));
    assert_eq!(log.append(event(99)).unwrap(), 12);
    let record = read_tail(log.path(), 1).unwrap().remove(0);
    assert_eq!((record.seq, record.prev), (12, head));
    log.checkpoint().unwrap();
    assert_eq!(verify_dir(dir.path()).unwrap().records, 13);
}

/// Two writers on one data directory (a host and the CLI, say), each with its own handle and
/// in-memory head, appending and checkpointing in turn and from threads: one valid chain.
#[test]
fn two_writers_on_one_log_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
    let b = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
    for i in 0..20 {
        let log = if i % 3 == 0 { &a } else { &b };
        log.append(event(i)).unwrap();
        if i % 7 == 0 {
            log.checkpoint().unwrap();
        }
    }
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|log| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    log.append(event(i)).unwrap();
                    if i % 50 == 0 {
                        log.checkpoint().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    b.checkpoint().unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.records - report.checkpoints, 420);
}

#[test]
fn each_tampering_is_detected_at_the_first_bad_record() {
    let dir = clean_log();
    let clean = verify_dir(dir.path()).unwrap();
    assert_eq!((clean.records, clean.checkpoints), (11, 1));
    type Edit = fn(&mut Vec<String>);
    let cases: [(&str, Edit, Option<u64>, &str); 6] = [
        (
            "a detail edited",
            |l| l[2] = l[2].replace("\"n\":2", "\"n\":20"),
            Some(3),
            "record 3 (line 3) was edited",
        ),
        (
            "a hash edited",
            |l| l[0] = flip_hash(&l[0]),
            Some(1),
            "record 1 (line 1) was edited",
        ),
        (
            "a record deleted",
            |l| {
                l.remove(4);
            },
            Some(5),
            "line 5 holds record 6 where record 5 belongs",
        ),
        (
            "two records swapped",
            |l| l.swap(1, 2),
            Some(2),
            "line 2 holds record 3 where record 2 belongs",
        ),
        (
            "an edit with the chain recomputed",
            |l| {
                l[3] = l[3].replace("alice", "mallory");
                rechain(l, 3);
            },
            Some(10),
            "record 10 (line 10) is not the record the anchor signed",
        ),
        (
            "a line that is not a record",
            |l| l[6] = "{\"seq\":7".into(),
            Some(7),
            "line 7 of the audit log is not a valid record",
        ),
    ];
    for (name, edit, line, says) in cases {
        let copy = tampered(dir.path(), edit);
        let e = verify_dir(copy.path()).expect_err(name);
        assert_eq!(e.line(), line, "{name}: {e}");
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
}

#[test]
fn an_edit_with_the_chain_recomputed_is_caught_by_the_checkpoint() {
    let dir = clean_log();
    let copy = tampered(dir.path(), |l| {
        l[3] = l[3].replace("alice", "mallory");
        rechain(l, 3);
    });
    let e = verify(&copy.path().join(LOG_FILE), &host(), None).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::CheckpointMismatch {
                line: 11,
                seq: 11,
                ..
            }
        ),
        "{e}"
    );
    // Re-signing the checkpoint needs a key; any other key is refused.
    let copy = tampered(dir.path(), |l| {
        l[3] = l[3].replace("alice", "mallory");
        rechain(l, 3);
        let mut record: AuditRecord = serde_json::from_str(&l[10]).unwrap();
        let head: AuditRecord = serde_json::from_str(&l[9]).unwrap();
        record.detail = serde_json::to_value(Checkpoint::sign(&key(2), 10, &head.hash)).unwrap();
        l[10] = serde_json::to_string(&record).unwrap();
        rechain(l, 10);
    });
    let log = copy.path().join(LOG_FILE);
    let e = verify(&log, &host(), None).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::ForeignKey {
                line: 11,
                seq: 11,
                ..
            }
        ),
        "{e}"
    );
    // The anchor, which was not rewritten, catches it before the checkpoint does.
    let e = verify_dir(copy.path()).unwrap_err();
    assert!(
        matches!(e, VerifyError::RolledBack { line: 10, seq: 10 }),
        "{e}"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let dir = clean_log();
    let other = AuditLog::open(dir.path(), key(2), 0).unwrap();
    other.append(event(11)).unwrap();
    other.checkpoint().unwrap();
    let e = verify(other.path(), &host(), None).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::ForeignKey {
                line: 13,
                seq: 13,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not the host key"), "{e}");
    // Its twin: under the key that signed it the last checkpoint is fine, the first is not.
    let e = verify(other.path(), &key(2).verifying_key(), None).unwrap_err();
    assert_eq!(e.seq(), Some(11), "{e}");
    // The anchor it wrote is refused too.
    let e = verify_dir(dir.path()).unwrap_err();
    assert!(matches!(e, VerifyError::BadAnchor { .. }), "{e}");
}

#[test]
fn truncation_is_caught_by_the_anchor_only() {
    let dir = clean_log();
    let copy = tampered(dir.path(), |l| l.truncate(8));
    let log = copy.path().join(LOG_FILE);
    // The chain alone cannot tell a cut log from a short one…
    assert_eq!(verify(&log, &host(), None).unwrap().records, 8);
    // …the anchor can, and so can opening it for writing.
    let e = verify_dir(copy.path()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Truncated {
                records: 8,
                anchored: 10
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("truncated or rolled back"), "{e}");
    let e = AuditLog::open(copy.path(), key(1), 0).err().unwrap();
    assert!(
        matches!(
            e,
            AuditError::BehindAnchor {
                records: 8,
                anchored: 10,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_rolled_back_log_is_caught_by_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    log.checkpoint().unwrap();
    let older = std::fs::read(log.path()).unwrap();
    for i in 5..10 {
        log.append(event(i)).unwrap();
    }
    log.checkpoint().unwrap();
    drop(log);
    assert!(verify_dir(dir.path()).is_ok());

    // Put back the older copy: a valid chain, just shorter than the anchor.
    let rolled = tampered(dir.path(), |_| {});
    std::fs::write(rolled.path().join(LOG_FILE), &older).unwrap();
    let e = verify_dir(rolled.path()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Truncated {
                records: 6,
                anchored: 11
            }
        ),
        "{e}"
    );

    // And grow it past the anchor with other records: the anchored record differs.
    let forked = tempfile::tempdir().unwrap();
    std::fs::write(forked.path().join(LOG_FILE), &older).unwrap();
    let fork = AuditLog::open(forked.path(), key(1), 0).unwrap();
    for i in 0..8 {
        fork.append(event(100 + i)).unwrap();
    }
    std::fs::copy(fork.path(), rolled.path().join(LOG_FILE)).unwrap();
    let e = verify_dir(rolled.path()).unwrap_err();
    assert!(
        matches!(e, VerifyError::RolledBack { line: 11, seq: 11 }),
        "{e}"
    );
}

#[test]
fn a_torn_last_line_is_saved_aside_cut_and_recorded_when_the_log_is_next_opened() {
    let dir = clean_log();
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap();
    let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    // What a process killed between the pages of a group commit's write leaves: whole
    // records of the batch, then part of one.
    let torn = b"{\"seq\":12,\"time_ms\":1";
    file.write_all(torn).unwrap();
    // Verify reports it (a reviewer who looks before any writer opens the log sees it)...
    let e = verify_dir(dir.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Torn { line: 12 }), "{e}");
    // ...and the next writer cuts it, keeping the bytes and saying so in the chain.
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    let saved = dir.path().join(format!("audit.torn-{before}"));
    assert_eq!(std::fs::read(&saved).unwrap(), torn);
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.records, 12);
    let notice: AuditRecord = serde_json::from_str(lines(dir.path()).last().unwrap()).unwrap();
    assert_eq!(notice.kind, TORN_TAIL_KIND);
    assert_eq!(notice.seq, 12);
    assert_eq!(notice.detail["offset"], before);
    assert_eq!(notice.detail["bytes"], torn.len());
    let digest = crate::policy::keys::to_hex(&Sha256::digest(torn));
    assert_eq!(notice.detail["sha256"], digest);
    assert_eq!(notice.detail["saved_to"], saved.display().to_string());
    // The chain goes on from there.
    log.append(event(12)).unwrap();
    assert_eq!(verify_dir(dir.path()).unwrap().records, 13);

    // A complete last line that is not a record is damage, not a torn write: refused, kept.
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap();
    file.write_all(b"{\"seq\":14,\"time_ms\":1\n").unwrap();
    let e = AuditLog::open(dir.path(), key(1), 0).err().unwrap();
    assert!(matches!(e, AuditError::Damaged { .. }), "{e}");
    assert!(e.to_string().contains("warden audit verify"), "{e}");
    assert!(matches!(
        verify_dir(dir.path()).unwrap_err(),
        VerifyError::Unparsable { line: 14, .. }
    ));
    assert!(lines(dir.path()).last().unwrap().ends_with(":1"));
}

#[test]
fn a_writer_that_finds_another_process_torn_line_cuts_it_before_its_own_records() {
    let dir = clean_log();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    log.append(event(10)).unwrap();
    // Another process sharing the directory appends whole records, then is killed mid-write.
    let other = AuditLog::open(dir.path(), key(1), 0).unwrap();
    other.append(event(11)).unwrap();
    drop(other);
    let end = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap()
        .write_all(&[b'{'; 5000])
        .unwrap();
    // The first writer's next append and checkpoint go on after the cut and its record.
    let seq = log.append(event(12)).unwrap();
    assert_eq!(seq, 15);
    log.checkpoint().unwrap();
    let l = lines(dir.path());
    let kinds: Vec<String> = l[12..]
        .iter()
        .map(|line| serde_json::from_str::<AuditRecord>(line).unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "task-finished",
            TORN_TAIL_KIND,
            "task-finished",
            CHECKPOINT_KIND
        ]
    );
    assert_eq!(
        std::fs::read(dir.path().join(format!("audit.torn-{end}")))
            .unwrap()
            .len(),
        5000
    );
    assert_eq!(verify_dir(dir.path()).unwrap().records, 16);

    // A checkpoint that finds one records the cut first and signs a head covering it.
    OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap()
        .write_all(b"{\"seq\"")
        .unwrap();
    let other = AuditLog::open(dir.path(), key(1), 0).unwrap();
    drop(other);
    OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap()
        .write_all(b"{\"seq\"")
        .unwrap();
    let checkpoint = log.checkpoint().unwrap();
    assert_eq!(checkpoint.size, 18);
    assert_eq!(verify_dir(dir.path()).unwrap().records, 19);
}

#[cfg(target_os = "linux")]
#[test]
fn append_fails_closed_when_the_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with ENOSPC, through the real open and append path.
    std::os::unix::fs::symlink("/dev/full", dir.path().join(LOG_FILE)).unwrap();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    let e = log.append(event(0)).unwrap_err();
    assert!(
        matches!(
            &e,
            AuditError::Io {
                action: "write",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(log.head(), (0, GENESIS.to_string()));
    let e = log.append(event(1)).unwrap_err();
    assert!(matches!(e, AuditError::Broken { .. }), "{e}");
    assert!(log.checkpoint().is_err());
}

#[cfg(unix)]
#[test]
fn a_log_removed_or_replaced_while_open_takes_no_more_records() {
    let dir = clean_log();
    let path = dir.path().join(LOG_FILE);
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let e = log.append(event(0)).unwrap_err();
    assert!(matches!(e, AuditError::Detached { .. }), "{e}");
    assert!(matches!(
        log.append(event(1)).unwrap_err(),
        AuditError::Broken { .. }
    ));

    // Replaced by a rename keeps the old file linked elsewhere: the checkpoint notices.
    let dir = clean_log();
    let path = dir.path().join(LOG_FILE);
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    std::fs::rename(&path, dir.path().join("audit.old")).unwrap();
    std::fs::write(&path, b"").unwrap();
    let e = log.checkpoint().unwrap_err();
    assert!(matches!(e, AuditError::Detached { .. }), "{e}");
    // Its twin: the log left in place takes records and checkpoints.
    let dir = clean_log();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    log.append(event(0)).unwrap();
    log.checkpoint().unwrap();
}

#[test]
fn the_checkpoint_kind_is_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), key(1), 0).unwrap();
    let e = log.append(AuditEvent::new(CHECKPOINT_KIND)).unwrap_err();
    assert!(matches!(e, AuditError::ReservedKind), "{e}");
    assert_eq!(log.append(AuditEvent::new("checkpoints")).unwrap(), 1);
}

#[test]
fn records_are_written_in_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), key(1), 2).unwrap();
    assert_eq!(read_anchor(dir.path()).unwrap(), None);
    log.append(AuditEvent::new("started")).unwrap();
    log.append(event(1)).unwrap();
    let l = lines(dir.path());
    assert_eq!(l.len(), 3, "a checkpoint follows record 2");
    let first: AuditRecord = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(
        (first.seq, first.prev.as_str(), first.task),
        (1, GENESIS, None)
    );
    assert!(l[0].starts_with("{\"seq\":1,\"time_ms\":"), "{}", l[0]);
    assert!(l[0].contains(",\"kind\":\"started\",\"task\":null,\"agent\":null,\"user\":null,\"detail\":null,\"prev\":\""));
    let body = format!("{}}}", &l[0][..l[0].len() - HASH_SUFFIX_LEN]);
    let hash = Sha256::digest(format!("warden-audit-v1\n{GENESIS}\n{body}"));
    assert_eq!(first.hash, hex(&hash));
    let checkpoint: Checkpoint =
        serde_json::from_value(serde_json::from_str::<AuditRecord>(&l[2]).unwrap().detail).unwrap();
    let second: AuditRecord = serde_json::from_str(&l[1]).unwrap();
    assert_eq!((checkpoint.size, &checkpoint.head), (2, &second.hash));
    assert_eq!(checkpoint.key, hex(host().as_bytes()));
    assert_eq!(read_anchor(dir.path()).unwrap(), Some(checkpoint));
}

#[test]
fn tail_returns_the_last_complete_records_in_order() {
    let dir = clean_log();
    let log = dir.path().join(LOG_FILE);
    let seqs = |n| {
        read_tail(&log, n)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(3), [9, 10, 11]);
    assert_eq!(seqs(100).len(), 11);
    assert!(seqs(0).is_empty());
    // A line still being written is not shown.
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"{\"seq\":12")
        .unwrap();
    assert_eq!(seqs(2), [10, 11]);
    // Over many read-back chunks.
    let big = tempfile::tempdir().unwrap();
    let writer = AuditLog::open(big.path(), key(1), 0).unwrap();
    for i in 0..2000 {
        writer.append(event(i)).unwrap();
    }
    let tail = read_tail(writer.path(), 500).unwrap();
    assert_eq!((tail.len(), tail[0].seq, tail[499].seq), (500, 1501, 2000));
}

#[test]
fn follow_reports_appended_records_until_told_to_stop() {
    let dir = clean_log();
    let log = Arc::new(AuditLog::open(dir.path(), key(1), 0).unwrap());
    let from = std::fs::metadata(log.path()).unwrap().len();
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..5 {
                std::thread::sleep(Duration::from_millis(5));
                log.append(event(i)).unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    follow(
        log.path(),
        from,
        |r| {
            seen.push(r.seq);
            seen.len() < 3
        },
        Duration::from_millis(1),
    )
    .unwrap();
    writer.join().unwrap();
    assert_eq!(seen, [12, 13, 14]);
    // A log that shrinks under the follower is an error, not a hang.
    std::fs::write(log.path(), b"").unwrap();
    let e = follow(log.path(), from, |_| true, Duration::from_millis(1)).unwrap_err();
    assert!(matches!(e, AuditError::Record { .. }), "{e}");
}

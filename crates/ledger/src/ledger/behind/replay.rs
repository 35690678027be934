//! Reading journals back: the ones stopped hosts left, written into the store when a ledger
//! opens ([`replay`]), and any journal's task beginnings for `warden audit verify`
//! ([`journaled`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::super::{LedgerError, owner_alive};
use super::{Entry, JOURNAL_DIR, LineIn, Numbered, old_path, split};
use sha2::{Digest, Sha256};

use crate::policy::keys::to_hex;
use crate::store::{BegunRow, EndedRow, LogHead, SqliteStore, StoreWitness, TaskWitness};

/// The longest journal line read back (a task's end with its whole trace is far smaller).
const MAX_LINE: u64 = 64 << 20;

/// The journals in `journal_dir`, by owner: (owner, its files, set-aside one first).
fn journals(journal_dir: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let mut owners: Vec<String> = std::fs::read_dir(journal_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".journal")
                        .or_else(|| name.strip_suffix(".journal.old"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    owners.sort();
    owners.dedup();
    owners
        .into_iter()
        .map(|owner| {
            let current = journal_dir.join(format!("{owner}.journal"));
            let files = [old_path(&current), current]
                .into_iter()
                .filter(|p| p.exists())
                .collect();
            (owner, files)
        })
        .collect()
}

/// Read `path`'s entries. A last line without its newline was cut short by a kill (its task
/// was never acknowledged) and is left out.
fn read_journal(path: &Path) -> Result<Vec<Numbered>, LedgerError> {
    let corrupt = |line: usize, why: String| LedgerError::JournalCorrupt {
        path: path.to_path_buf(),
        line,
        why,
    };
    let file = File::open(path).map_err(|source| LedgerError::Journal {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut buf = Vec::new();
    for line in 1.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| LedgerError::Journal {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if n as u64 > MAX_LINE {
                return Err(corrupt(
                    line,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            tracing::warn!(target: "warden::ledger", path = %path.display(), line, "left out a journal line a kill cut short");
            break;
        }
        let entry = serde_json::from_slice::<LineIn>(&buf)
            .map_err(|e| e.to_string())
            .and_then(LineIn::entry)
            .map_err(|why| corrupt(line, why))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Write the journals of processes that are gone (`owners` holds the live ones' locks) into
/// `store` and delete them; how many entries. One process at a time (`replay.lock`), so two
/// opening at once do not write a journal twice over newer rows.
///
/// # Errors
///
/// [`LedgerError::JournalCorrupt`] for a line that is not a journal entry (nothing of that
/// journal is deleted), or the store's error.
pub(in crate::ledger) fn replay(
    dir: &Path,
    owners: &Path,
    store: &SqliteStore,
) -> Result<usize, LedgerError> {
    let journal_dir = dir.join(JOURNAL_DIR);
    let lock = File::create(journal_dir.join("replay.lock"))
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|source| LedgerError::Journal {
            path: journal_dir.join("replay.lock"),
            source,
        })?;
    let marks = store.journal_marks()?;
    let mut total = 0;
    for (owner, files) in journals(&journal_dir) {
        if owner_alive(owners, &owner) {
            continue;
        }
        // The lines the store holds already are not written again.
        let held = marks.get(&owner).copied().unwrap_or(0);
        let mut entries = Vec::new();
        for file in &files {
            entries.extend(read_journal(file)?.into_iter().filter(|(n, _)| *n > held));
        }
        for chunk in entries.chunks(512) {
            let (begins, ends) = split(chunk.iter().map(|(_, e)| e));
            let upto = chunk.iter().map(|(n, _)| *n).max();
            store.put_behind(&begins, &owner, &ends, upto)?;
        }
        total += entries.len();
        for file in files.iter().rev() {
            let _ = std::fs::remove_file(file);
        }
        store.forget_journal(&owner)?;
        if !entries.is_empty() {
            tracing::warn!(target: "warden::ledger", owner, entries = entries.len(), "wrote the task rows a stopped host left in its journal");
        }
    }
    drop(lock);
    Ok(total)
}

/// Whether a journal in data directory `dir` (of a live host, or of a stopped one whose rows
/// the next start writes) holds task `id`'s beginning among the lines the store does not hold
/// yet (`marks`: how many each journal's store holds). Unreadable journals hold nothing.
pub(in crate::ledger) fn journaled(dir: &Path, id: u64, marks: &BTreeMap<String, u64>) -> bool {
    journals(&dir.join(JOURNAL_DIR))
        .iter()
        .any(|(owner, files)| {
            let held = marks.get(owner).copied().unwrap_or(0);
            files
                .iter()
                .filter_map(|f| read_journal(f).ok())
                .flatten()
                .any(|(n, e)| n > held && matches!(e, Entry::Begin(t, _) if t.id == id))
        })
}

/// The task rows the journals in `dir` hold beyond what the store holds (its
/// [`StoreWitness::journal_marks`]), laid over the store's `witness` as they will stand once
/// written: a beginning the store lacks is a `running` row of its journal's owner, an end
/// is written over its row (status, staging, trace, the head it vouches for). A journal deleted
/// meanwhile (its host's writer caught up) holds nothing.
///
/// # Errors
///
/// [`LedgerError::JournalCorrupt`] for a damaged line.
pub(in crate::ledger) fn overlay(
    dir: &Path,
    witness: &mut StoreWitness,
) -> Result<(), LedgerError> {
    let mut at: HashMap<u64, usize> = witness
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id, i))
        .collect();
    // The lines the store holds are its rows already: an edit of those rows must show.
    let marks = witness.journal_marks.clone();
    each_unwritten(dir, &marks, |owner, entry| match entry {
        Entry::Begin(t, head) => {
            at.entry(t.id).or_insert_with(|| {
                witness.tasks.push(TaskWitness {
                    id: t.id,
                    status: "running".into(),
                    owner: owner.to_owned(),
                    staging: "none".into(),
                    trace_sha256: None,
                    log_head: Some(head),
                    parent: t.parent,
                });
                witness.tasks.len() - 1
            });
        }
        Entry::End(e, head) => {
            if let Some(&i) = at.get(&e.id) {
                let row = &mut witness.tasks[i];
                row.status = e.status;
                row.staging = e.staging;
                row.trace_sha256 = Some(to_hex(&Sha256::digest(e.trace.get().as_bytes())));
                row.log_head = Some(head);
            }
        }
    })?;
    witness.tasks.sort_by_key(|t| t.id);
    Ok(())
}

/// Each entry of the journals in `dir` past what the store holds of them (`marks`), with its
/// journal's owner, in each journal's order. A journal emptied or deleted meanwhile (its host's
/// writer caught up) holds nothing.
fn each_unwritten(
    dir: &Path,
    marks: &BTreeMap<String, u64>,
    mut each: impl FnMut(&str, Entry),
) -> Result<(), LedgerError> {
    for (owner, files) in journals(&dir.join(JOURNAL_DIR)) {
        let held = marks.get(&owner).copied().unwrap_or(0);
        for file in &files {
            let entries = match read_journal(file) {
                Err(LedgerError::Journal { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                other => other?,
            };
            for (_, entry) in entries.into_iter().filter(|(n, _)| *n > held) {
                each(&owner, entry);
            }
        }
    }
    Ok(())
}

/// A task's lines in the journals beyond what the store holds: its beginning and its end.
pub(in crate::ledger) type Unwritten = (Option<BegunRow>, Option<EndedRow>);

/// The lines the journals in `dir` (every host's, live or gone) hold beyond what the store
/// holds (`marks`, read before the journals: a line the store took meanwhile is only laid over
/// its own row again, which changes nothing), by task. A journal emptied or deleted meanwhile
/// (its host's writer caught up) holds nothing.
///
/// # Errors
///
/// [`LedgerError::JournalCorrupt`] for a damaged line.
pub(in crate::ledger) fn unwritten(
    dir: &Path,
    marks: &BTreeMap<String, u64>,
) -> Result<HashMap<u64, Unwritten>, LedgerError> {
    let mut rows: HashMap<u64, Unwritten> = HashMap::new();
    each_unwritten(dir, marks, |_, entry| match entry {
        Entry::Begin(t, _) => {
            let id = t.id;
            rows.entry(id).or_default().0 = Some(t);
        }
        Entry::End(e, _) => {
            let id = e.id;
            rows.entry(id).or_default().1 = Some(e);
        }
    })?;
    Ok(rows)
}

/// The furthest log head any journal line in `dir` vouches for: the log must still reach it
/// when a ledger opens, as it must reach the store's.
///
/// # Errors
///
/// [`LedgerError::JournalCorrupt`] for a damaged line.
pub(in crate::ledger) fn newest_head(dir: &Path) -> Result<Option<LogHead>, LedgerError> {
    let mut newest: Option<LogHead> = None;
    for (_, files) in journals(&dir.join(JOURNAL_DIR)) {
        for file in &files {
            for (_, entry) in read_journal(file)? {
                let (Entry::Begin(_, head) | Entry::End(_, head)) = entry;
                if newest.as_ref().is_none_or(|n| head.seq > n.seq) {
                    newest = Some(head);
                }
            }
        }
    }
    Ok(newest)
}

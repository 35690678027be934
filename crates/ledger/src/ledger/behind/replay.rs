//! Reading journals back: the ones stopped hosts left, written into the store when a ledger
//! opens ([`replay`]), and any journal's task beginnings for `warden audit verify`
//! ([`journaled`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::super::{LedgerError, owner_alive};
use super::{Entry, JOURNAL_DIR, old_path, split};
use crate::store::SqliteStore;

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
fn read_journal(path: &Path) -> Result<Vec<Entry>, LedgerError> {
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
        let entry = serde_json::from_slice(&buf).map_err(|e| corrupt(line, e.to_string()))?;
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
    let mut total = 0;
    for (owner, files) in journals(&journal_dir) {
        if owner_alive(owners, &owner) {
            continue;
        }
        let mut entries = Vec::new();
        for file in &files {
            entries.extend(read_journal(file)?);
        }
        for chunk in entries.chunks(512) {
            let (begins, ends) = split(chunk);
            store.put_behind(&begins, &owner, &ends)?;
        }
        total += entries.len();
        for file in files.iter().rev() {
            let _ = std::fs::remove_file(file);
        }
        if !entries.is_empty() {
            tracing::warn!(target: "warden::ledger", owner, entries = entries.len(), "wrote the task rows a stopped host left in its journal");
        }
    }
    drop(lock);
    Ok(total)
}

/// Whether a journal in data directory `dir` (of a live host, or of a stopped one whose rows
/// the next start writes) holds task `id`'s beginning. Unreadable journals hold nothing.
pub(in crate::ledger) fn journaled(dir: &Path, id: u64) -> bool {
    journals(&dir.join(JOURNAL_DIR))
        .iter()
        .flat_map(|(_, files)| files)
        .filter_map(|f| read_journal(f).ok())
        .flatten()
        .any(|e| matches!(e, Entry::Begin(t) if t.id == id))
}

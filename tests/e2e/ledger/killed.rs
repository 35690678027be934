//! A host killed mid-stream, for the tests that attack what it left behind (the ledger tests and
//! the red-team suite's `audit` class): a `warden batch` stopped with SIGKILL, so no closing
//! checkpoint was signed, and the tools an attacker with write access to the data directory
//! would use on it (cut the log, put back an older anchor, edit or delete store rows, rewrite the
//! unsigned tail of the log with its chain recomputed).
#![allow(
    dead_code,
    reason = "shared by two test binaries, each of which uses part of it"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use warden::audit::{AuditEvent, AuditLog, AuditRecord, Checkpoint};
use warden_tests::{agent, root, warden_bin};

/// Records between signed checkpoints in these hosts: small, so a kill leaves a signed prefix
/// and an unsigned tail.
pub const CHECKPOINT_EVERY: u64 = 40;

/// A data directory left by a killed host; removed on drop.
pub struct KilledHost {
    dir: tempfile::TempDir,
    /// The data directory (`--data-dir`).
    pub data: PathBuf,
    /// The tasks the host reported done before it was killed; the rows of the first half are in
    /// the state store (not only in the host's journal), for the attacks that edit them.
    pub reported: Vec<u64>,
}

/// Runs `warden batch` over a stream of `hello` tasks, kills it with SIGKILL once it has
/// reported `tasks` of them, and returns what it left: a signed prefix and, after the last
/// checkpoint, an unsigned tail holding at least one `task-ended` record. (A kill that lands
/// while a checkpoint is being signed, its fsyncs being the slow part, leaves no such tail;
/// the batch is then run again.)
pub fn killed_batch(tasks: usize) -> KilledHost {
    for _ in 0..10 {
        let host = killed_batch_once(tasks);
        let l = lines(&host.data);
        let last = checkpoints(&host.data).last().copied();
        if last.is_some_and(|at| l[at + 1..].iter().any(|r| r.contains("\"task-ended\""))) {
            return host;
        }
    }
    panic!("ten killed batches in a row left no unsigned task-ended record");
}

fn killed_batch_once(tasks: usize) -> KilledHost {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let batch = dir.path().join("tasks.jsonl");
    let hello = agent("hello");
    let policy = root().join("policies/hello.toml");
    let mut text = String::new();
    // Far more than are waited for: the host must still be busy when it is killed.
    for i in 0..tasks + 20_000 {
        text.push_str(
            &json!({"agent": hello, "policy": policy, "input": format!("n{i}")}).to_string(),
        );
        text.push('\n');
    }
    std::fs::write(&batch, text).unwrap();
    let mut child = warden_command(dir.path(), &data)
        .arg("batch")
        .arg(&batch)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = Vec::new();
    while reported.len() < tasks {
        let line = lines.next().expect("the batch reports tasks").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        reported.push(v["task"].as_u64().unwrap());
    }
    // A task's row reaches the store a few ms after its end (its journal line holds it first):
    // wait for the first half's, the host still busy with the rest of the stream.
    let half = &reported[..tasks / 2];
    let waited = std::time::Instant::now();
    while stored(&data, half) < half.len() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(10),
            "the store never held the rows of the first {} tasks reported",
            half.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SIGKILL: no chance to flush, checkpoint or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    KilledHost {
        dir,
        data,
        reported,
    }
}

impl KilledHost {
    /// A copy of the data directory to attack, beside the original.
    pub fn copy(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        copy_dir(&self.data, &to);
        to
    }
}

fn warden_command(dir: &Path, data: &Path) -> Command {
    let config = dir.join("warden.toml");
    if !config.exists() {
        std::fs::write(
            &config,
            format!("[host]\ncheckpoint_every = {CHECKPOINT_EVERY}\n"),
        )
        .unwrap();
    }
    let mut command = Command::new(warden_bin());
    command
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"));
    command
}

/// Runs `warden <args>` on the data directory `data`: exit code, stdout, stderr.
pub fn warden(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = warden_command(data.parent().unwrap(), data)
        .args(args)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The bytes of the files that hold the log and the store, to show a command changed nothing.
pub fn data_files(data: &Path) -> BTreeMap<String, Vec<u8>> {
    ["audit.log", "audit.anchor", "state.db", "state.db-wal"]
        .into_iter()
        .filter_map(|f| Some((f.to_string(), std::fs::read(data.join(f)).ok()?)))
        .collect()
}

/// The log's lines.
pub fn lines(data: &Path) -> Vec<String> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(data: &Path, lines: &[String]) {
    std::fs::write(data.join("audit.log"), lines.join("\n") + "\n").unwrap();
}

/// The 0-based line numbers of the checkpoint records.
fn checkpoints(data: &Path) -> Vec<usize> {
    lines(data)
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"kind\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect()
}

/// Cuts the log right after its last checkpoint: every record no signature covers is gone,
/// the anchor still matches. Returns how many records are left.
pub fn cut_after_last_checkpoint(data: &Path) -> usize {
    let keep = checkpoints(data).last().expect("a checkpoint") + 1;
    write_lines(data, &lines(data)[..keep]);
    keep
}

/// Cuts the log after its second-to-last checkpoint and makes that checkpoint the anchor: a log
/// and anchor rolled back together, as a backup of both would be. Returns the records left.
pub fn roll_back_log_and_anchor(data: &Path) -> usize {
    let all = checkpoints(data);
    let at = all[all.len() - 2];
    let l = lines(data);
    let record: AuditRecord = serde_json::from_str(&l[at]).unwrap();
    let checkpoint: Checkpoint = serde_json::from_value(record.detail).unwrap();
    std::fs::write(
        data.join("audit.anchor"),
        serde_json::to_string(&checkpoint).unwrap() + "\n",
    )
    .unwrap();
    write_lines(data, &l[..=at]);
    at + 1
}

/// Rewrites the records after the last checkpoint as someone without the host key can: cut
/// them off, then append them again through the ordinary writer (so the chain is whole), with
/// the first `task-ended` record's status changed to `changed_to`.
pub fn rewrite_unsigned_tail(data: &Path, changed_to: &str) {
    let l = lines(data);
    let keep = cut_after_last_checkpoint(data);
    let stranger = warden::identity::SecretKey::generate().unwrap();
    let log = AuditLog::open(data, stranger.signing_key().clone(), 0).unwrap();
    let mut changed = false;
    for line in &l[keep..] {
        let r: AuditRecord = serde_json::from_str(line).unwrap();
        let mut detail = r.detail;
        if r.kind == "task-ended" && !changed {
            detail["status"] = json!(changed_to);
            changed = true;
        }
        let mut event = AuditEvent::new(r.kind).detail(detail);
        event.task = r.task;
        event.agent = r.agent;
        event.user = r.user;
        log.append(event).unwrap();
    }
    assert!(changed, "no task-ended record after the last checkpoint");
}

/// How many of the tasks `ids` have their row in `data`'s state store (read-only, beside a
/// live host).
fn stored(data: &Path, ids: &[u64]) -> usize {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        data.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return 0;
    };
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    db.query_row(
        &format!("SELECT COUNT(*) FROM tasks WHERE id IN ({list})"),
        [],
        |row| row.get::<_, usize>(0),
    )
    .unwrap_or(0)
}

/// Runs one SQL statement on the store, as someone editing `state.db` would.
pub fn edit_store(data: &Path, sql: &str) -> usize {
    rusqlite::Connection::open(data.join("state.db"))
        .unwrap()
        .execute(sql, [])
        .unwrap()
}

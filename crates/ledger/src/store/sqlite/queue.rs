//! The durable queue in `state.db`: the `queue` table holds each `queued` task's work beside
//! its row in `tasks` ([`crate::store::QueuedTask`]); a row and its work are written, started
//! and ended together, each in one transaction. A resume of an escalated task keeps its work
//! in the same table beside its row, which stays `escalated`.

use rusqlite::{Connection, TransactionBehavior, params};

use super::SqliteStore;
use crate::store::{QueueStore, QueuedEnd, QueuedTask, StoreError, TaskRecord, now_ms};

/// The table (created with the others, `schema.rs`).
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS queue (
    task INTEGER PRIMARY KEY, user TEXT NOT NULL, work TEXT NOT NULL, queued_ms INTEGER NOT NULL
);
";

/// The audit head a commit records: seq and the hash's first 8 bytes (see `sqlite.rs`).
type Head = (Option<u64>, Option<i64>);

impl QueueStore for SqliteStore {
    fn enqueue_task(&self, task: &TaskRecord, work: &str) -> Result<u64, StoreError> {
        enqueue(&mut self.conn(), task, work, self.head_now())
    }

    fn queued_tasks(&self, limit: usize) -> Result<Vec<QueuedTask>, StoreError> {
        queued(&self.conn(), limit)
    }

    fn start_queued_task(&self, task: &TaskRecord, owner: &str) -> Result<(), StoreError> {
        start(&mut self.conn(), task, owner, self.head_now())
    }

    fn end_queued_task(
        &self,
        end: &QueuedEnd,
        audit: &dyn Fn() -> Result<(), String>,
    ) -> Result<bool, StoreError> {
        finish(&mut self.conn(), end, &|| self.head_now(), audit)
    }

    fn queue_resume(&self, task: u64, user: &str, work: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO queue (task, user, work, queued_ms)
                 SELECT id, ?2, ?3, ?4 FROM tasks WHERE id = ?1 AND status = 'escalated'",
            )?
            .execute(params![task, user, work, now_ms()])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn take_resume(&self, task: u64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "DELETE FROM queue WHERE task = ?1
                 AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND status = 'queued')",
            )?
            .execute([task])?;
        Ok(n > 0)
    }
}

fn enqueue(
    conn: &mut Connection,
    t: &TaskRecord,
    work: &str,
    head: Head,
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let now = now_ms();
    tx.prepare_cached(&format!(
        "INSERT INTO tasks (id, agent, agent_id, module_hash, user, level, grant_json, status, staging, started_ms, owner, audit_seq, audit_head, parent)
         VALUES (({}), ?1, ?2, ?3, ?4, ?5, ?6, 'queued', 'none', ?7, '', ?8, ?9, NULL)",
        super::tasks::NEXT_ID
    ))?
    .execute(params![
        t.agent,
        t.agent_id,
        t.module_hash,
        t.user,
        t.level,
        t.grant.to_string(),
        now,
        head.0,
        head.1
    ])?;
    let id = tx.last_insert_rowid() as u64;
    tx.prepare_cached("INSERT INTO queue (task, user, work, queued_ms) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, t.user, work, now])?;
    tx.commit()?;
    Ok(id)
}

fn queued(conn: &Connection, limit: usize) -> Result<Vec<QueuedTask>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT q.task, q.user, q.work, q.queued_ms, t.status = 'escalated' FROM queue q
         JOIN tasks t ON t.id = q.task
         WHERE t.status IN ('queued', 'escalated') ORDER BY q.task LIMIT {limit}"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(QueuedTask {
            id: r.get(0)?,
            user: r.get(1)?,
            work: r.get(2)?,
            queued_ms: r.get(3)?,
            resume: r.get(4)?,
        })
    })?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

fn not_queued(id: u64) -> StoreError {
    StoreError::NotFound(format!(
        "task {id} is not queued (it started, ended or was cancelled already)"
    ))
}

fn start(conn: &mut Connection, t: &TaskRecord, owner: &str, head: Head) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx
        .prepare_cached(
            "UPDATE tasks SET agent = ?2, agent_id = ?3, module_hash = ?4, level = ?5, grant_json = ?6, status = 'running', started_ms = ?7, owner = ?8, audit_seq = ?9, audit_head = ?10
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![
            t.id,
            t.agent,
            t.agent_id,
            t.module_hash,
            t.level,
            t.grant.to_string(),
            t.started_ms,
            owner,
            head.0,
            head.1
        ])?;
    if n == 0 {
        return Err(not_queued(t.id));
    }
    tx.execute("DELETE FROM queue WHERE task = ?1", [t.id])?;
    tx.commit()?;
    Ok(())
}

fn finish(
    conn: &mut Connection,
    end: &QueuedEnd,
    head: &dyn Fn() -> Head,
    audit: &dyn Fn() -> Result<(), String>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let queued: bool = tx
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE id = ?1 AND status = 'queued'")?
        .query_row([end.id], |r| r.get::<_, i64>(0))?
        > 0;
    if !queued {
        return Ok(false);
    }
    audit().map_err(|why| StoreError::Audit {
        what: format!("task {} {}", end.id, end.status),
        why,
    })?;
    // Read after the audit record was written, so the row vouches for it.
    let (seq, hash) = head();
    tx.prepare_cached(
        "UPDATE tasks SET status = ?2, outcome = ?3, trace = ?4, ended_ms = ?5, audit_seq = ?6, audit_head = ?7 WHERE id = ?1",
    )?
    .execute(params![
        end.id,
        end.status,
        end.outcome.to_string(),
        serde_json::json!({"events": [], "dropped": 0}).to_string(),
        now_ms(),
        seq,
        hash
    ])?;
    tx.execute("DELETE FROM queue WHERE task = ?1", [end.id])?;
    tx.commit()?;
    Ok(true)
}

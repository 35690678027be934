//! Task rows as the run path writes them: several tasks' starts in one transaction, several
//! tasks' ends (each with its agent's trust record) in another, so a group commit
//! ([`crate::ledger`]) costs one commit for however many tasks it carries; and the rows a
//! ledger writes behind (`put_behind`), whose ids it reserved before (`reserve_ids`).
//!
//! Ids: a ledger hands out ids from a block it reserved (`task_ids.hi`), so every other insert
//! takes the next id above both the highest row and the highest reservation ([`NEXT_ID`]).

use rusqlite::{Connection, params};

use super::super::{LogHead, StoreError, TaskEnd, TaskRecord, TrustRecord};
use super::behind::{BegunRow, EndedRow};
use super::kept;

/// Insert `tasks` as `running` rows of process `owner`, vouching for the log up to `head`, in
/// one transaction; their ids, in order.
pub(super) fn begin(
    conn: &Connection,
    tasks: &[&TaskRecord],
    owner: &str,
    (seq, hash): (Option<u64>, Option<i64>),
) -> Result<Vec<u64>, StoreError> {
    in_transaction(conn, |tx| {
        let mut ids = Vec::with_capacity(tasks.len());
        let mut insert = tx.prepare_cached(
            &format!("INSERT INTO tasks (id, agent, agent_id, module_hash, user, level, grant_json, status, staging, started_ms, owner, audit_seq, audit_head, parent)
             VALUES (({NEXT_ID}), ?1, ?2, ?3, ?4, ?5, ?6, 'running', 'none', ?7, ?8, ?9, ?10, ?11)"),
        )?;
        for t in tasks {
            let id = insert.insert(params![
                t.agent,
                t.agent_id,
                t.module_hash,
                t.user,
                t.level,
                t.grant.to_string(),
                t.started_ms,
                owner,
                seq,
                hash,
                t.parent
            ])?;
            ids.push(id as u64);
        }
        Ok(ids)
    })
}

/// The id a new row takes: above every row and every id a ledger reserved.
pub(super) const NEXT_ID: &str = "SELECT max(coalesce((SELECT max(id) FROM tasks), 0), coalesce((SELECT hi FROM task_ids WHERE one = 1), 0)) + 1";

/// Reserve `n` ids for rows written behind; the first of them (the rest follow it).
pub(super) fn reserve_ids(conn: &Connection, n: u64) -> Result<u64, StoreError> {
    in_transaction(conn, |tx| {
        let first: u64 = tx.prepare_cached(NEXT_ID)?.query_row([], |r| r.get(0))?;
        tx.prepare_cached(
            "INSERT INTO task_ids (one, hi) VALUES (1, ?1) ON CONFLICT(one) DO UPDATE SET hi = excluded.hi",
        )?
        .execute([first + n - 1])?;
        Ok(first)
    })
}

/// Give back the ids above `used` of a reservation that ended at `hi`, unless another ledger
/// reserved more since (then its reservation stands, and ours are a gap).
pub(super) fn release_ids(conn: &Connection, used: u64, hi: u64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE task_ids SET hi = ?1 WHERE one = 1 AND hi = ?2")?
        .execute(params![used, hi])?;
    Ok(())
}

/// Write rows a ledger kept behind its journal: `begins` (ids set, `running`, of `owner`),
/// then `ends`, each vouching for the log head its journal line names, and with `mark` how many
/// of the journal's lines the store now holds, in one transaction. A line written again changes
/// nothing: a row already there is left as it is, an end is written over a `running` row only,
/// and a trust record only with its end.
pub(super) fn put_behind(
    conn: &Connection,
    begins: &[(&BegunRow, &LogHead)],
    owner: &str,
    ends: &[(&EndedRow, &LogHead)],
    mark: Option<u64>,
) -> Result<(), StoreError> {
    // A task begun and ended within the batch is inserted as it ended: one row written, not
    // two (unless its row is there already, from a journal replayed before).
    let mut ended: std::collections::HashMap<u64, (&EndedRow, &LogHead)> =
        ends.iter().map(|(e, h)| (e.id, (*e, *h))).collect();
    // The ends written now (not those a replay finds written before).
    let mut applied = std::collections::HashSet::new();
    in_transaction(conn, |tx| {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO tasks (id, agent, agent_id, module_hash, user, level, grant_json, status, outcome, trace, staging, staging_path, started_ms, ended_ms, owner, audit_seq, audit_head, parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        for (t, begun_at) in begins {
            let end = ended.get(&t.id).map(|(e, _)| *e);
            let (seq, hash) = kept(ended.get(&t.id).map_or(*begun_at, |(_, h)| *h));
            let inserted = insert.execute(params![
                t.id,
                t.agent,
                t.agent_id,
                t.module_hash,
                t.user,
                t.level,
                t.grant.get(),
                end.map_or("running", |e| e.status.as_str()),
                end.map(|e| e.outcome.get()),
                end.map(|e| e.trace.get()),
                end.map_or("none", |e| e.staging.as_str()),
                end.and_then(|e| e.staging_path.as_deref()),
                t.started_ms,
                end.map(|e| e.ended_ms),
                owner,
                seq,
                hash,
                t.parent
            ])?;
            if inserted == 1 && end.is_some() {
                ended.remove(&t.id);
                applied.insert(t.id);
            }
        }
        drop(insert);
        // An end is written over a running row only: written again (a journal replayed after
        // its rows were written, and changed since: a reviewer applied its staging) it changes
        // nothing, and nor does its trust record.
        let mut update = tx.prepare_cached(&format!("{END_ROW} AND status = 'running'"))?;
        for (end, head) in ends.iter().filter(|(e, _)| ended.contains_key(&e.id)) {
            if update.execute(end_params(end, kept(head)))? == 1 {
                applied.insert(end.id);
            }
        }
        drop(update);
        // Several ends of one agent: the last one's trust record is the one that stands.
        let mut last: Vec<&TrustRecord> = Vec::new();
        for (end, _) in ends.iter().filter(|(e, _)| applied.contains(&e.id)) {
            let Some(trust) = &end.trust else { continue };
            match last.iter_mut().find(|t| t.agent_id == trust.agent_id) {
                Some(t) => *t = trust,
                None => last.push(trust),
            }
        }
        last.into_iter().try_for_each(|t| put_trust_in(tx, t))?;
        if let Some(n) = mark {
            tx.prepare_cached(
                "INSERT INTO journal_marks (owner, n) VALUES (?1, ?2)
                 ON CONFLICT(owner) DO UPDATE SET n = max(n, excluded.n)",
            )?
            .execute(params![owner, n])?;
        }
        Ok(())
    })
}

/// Close `ends` (status, outcome, trace, staging; the trust record when given), vouching for
/// the log up to `head`, in one transaction.
pub(super) fn end(
    conn: &Connection,
    ends: &[TaskEnd],
    (seq, hash): (Option<u64>, Option<i64>),
) -> Result<(), StoreError> {
    // Serialized as the journal's ends are, to share their statement's parameters.
    let rows = ends
        .iter()
        .map(EndedRow::of)
        .collect::<Result<Vec<_>, _>>()?;
    in_transaction(conn, |tx| {
        let mut update = tx.prepare_cached(END_ROW)?;
        for end in &rows {
            update.execute(end_params(end, (seq, hash)))?;
        }
        for end in ends {
            // Several ends of one agent in a batch: each overwrites the one before, in order,
            // as separate commits would.
            if let Some(trust) = &end.trust {
                put_trust_in(tx, trust)?;
            }
        }
        Ok(())
    })
}

/// A task's end written over its row.
const END_ROW: &str = "UPDATE tasks SET status = ?2, outcome = ?3, trace = ?4, staging = ?5, staging_path = ?6, ended_ms = ?7, audit_seq = ?8, audit_head = ?9 WHERE id = ?1";

/// [`END_ROW`]'s parameters for `end`.
fn end_params(
    end: &EndedRow,
    (seq, hash): (Option<u64>, Option<i64>),
) -> impl rusqlite::Params + '_ {
    (
        end.id,
        end.status.as_str(),
        end.outcome.get(),
        end.trace.get(),
        end.staging.as_str(),
        end.staging_path.as_deref(),
        end.ended_ms,
        seq,
        hash,
    )
}

/// Run `f` in one write transaction (taking the write lock at once, so two processes never
/// deadlock upgrading a read), committed if it succeeds and rolled back if not. The three
/// statements are cached: `Connection::transaction` parses them again every time.
fn in_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    match f(conn).and_then(|v| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(v)
    }) {
        Ok(v) => Ok(v),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn
                    .prepare_cached("ROLLBACK")
                    .and_then(|mut s| s.execute([]));
            }
            Err(e)
        }
    }
}

pub(super) fn put_trust_in(conn: &Connection, record: &TrustRecord) -> Result<(), StoreError> {
    let text = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO trust (agent_id, record) VALUES (?1, ?2)
         ON CONFLICT(agent_id) DO UPDATE SET record = excluded.record",
    )?
    .execute(params![record.agent_id, text])?;
    Ok(())
}

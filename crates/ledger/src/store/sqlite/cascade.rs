//! The cascade's tables of `state.db`: each cascade task's saved position (so a paused task
//! resumes in another process) and each agent's calibration history (stated confidences per bin,
//! and how many of them were verified).

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::StoreError;

/// The tables (created with the others, `schema.rs`).
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS cascades (
    task INTEGER PRIMARY KEY, state TEXT NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration (
    agent TEXT NOT NULL, bin INTEGER NOT NULL, stated INTEGER NOT NULL, verified INTEGER NOT NULL,
    PRIMARY KEY (agent, bin)
);
";

pub(super) fn put(conn: &Connection, task: u64, state: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO cascades (task, state, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(task) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
    )?
    .execute(params![task, state, crate::store::now_ms()])?;
    Ok(())
}

pub(super) fn get(conn: &Connection, task: u64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT state FROM cascades WHERE task = ?1")?
        .query_row([task], |r| r.get(0))
        .optional()?)
}

pub(super) fn history(conn: &Connection, agent: &str) -> Result<[(u64, u64); 10], StoreError> {
    let mut bins = [(0, 0); 10];
    let mut stmt =
        conn.prepare_cached("SELECT bin, stated, verified FROM calibration WHERE agent = ?1")?;
    let rows = stmt.query_map([agent], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (bin, stated, verified) = row?;
        let slot = usize::try_from(bin)
            .ok()
            .and_then(|b| bins.get_mut(b))
            .ok_or_else(|| StoreError::Corrupt(format!("calibration bin {bin} of `{agent}`")))?;
        *slot = (stated.max(0) as u64, verified.max(0) as u64);
    }
    Ok(bins)
}

pub(super) fn add(
    conn: &Connection,
    agent: &str,
    bin: u8,
    verified: bool,
) -> Result<(), StoreError> {
    if bin > 9 {
        return Err(StoreError::Corrupt(format!("calibration bin {bin}")));
    }
    conn.prepare_cached(
        "INSERT INTO calibration (agent, bin, stated, verified) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT(agent, bin) DO UPDATE SET stated = stated + 1, verified = verified + excluded.verified",
    )?
    .execute(params![agent, bin, i64::from(verified)])?;
    Ok(())
}

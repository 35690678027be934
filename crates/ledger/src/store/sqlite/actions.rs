//! Reading the actions of a whole task tree: the task a user started and every task its agents
//! called below it, found through `tasks_by_parent` and their actions through `actions_by_task`
//! (`StateStore::tree_actions`), so the read costs the tree's size, not the host's history.

use rusqlite::{Connection, params};

use super::{ACTION_COLUMNS, action_row};
use crate::store::{ActionRecord, StoreError, TREE_DEPTH, TREE_TASKS};

/// The query: `?1` the root, `?2` the status, `?3` the owner or NULL, `?4` the time (ms) the
/// actions must expire after or NULL, `?5` the depth bound; the tree-size bound and `limit` are
/// written into the text (see [`crate::store::sqlite`] on `LIMIT`). The owner is checked on the root: the tasks below it act for the user who started it.
/// `CROSS JOIN` keeps SQLite from turning the recursive step around (scanning every task's
/// parent and looking each up in the tree), which its statistics can make look cheaper.
fn sql(limit: usize) -> String {
    format!(
        "WITH RECURSIVE tree(id, depth) AS ( \
             SELECT id, 0 FROM tasks WHERE id = ?1 AND (?3 IS NULL OR user = ?3) \
             UNION ALL \
             SELECT tasks.id, tree.depth + 1 FROM tree CROSS JOIN tasks ON tasks.parent = tree.id \
             WHERE tree.depth < ?5 \
             LIMIT {TREE_TASKS} \
         ) \
         SELECT {ACTION_COLUMNS} FROM actions \
         WHERE task IN (SELECT id FROM tree) AND status = ?2 \
         AND (?4 IS NULL OR expires_ms > ?4) \
         ORDER BY id LIMIT {limit}"
    )
}

/// The actions in `status` of `root`'s tree, oldest first, at most `limit` (see
/// `StateStore::tree_actions`).
pub(super) fn in_tree(
    conn: &Connection,
    root: u64,
    status: &str,
    unexpired_at: Option<u64>,
    owner: Option<&str>,
    limit: usize,
) -> Result<Vec<ActionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql(limit))?;
    let rows = stmt.query_map(
        params![root, status, owner, unexpired_at, TREE_DEPTH,],
        action_row,
    )?;
    rows.map(|r| r.map_err(StoreError::from)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, SqliteStore};

    /// The tree query finds the tree through `tasks_by_parent` and its actions through
    /// `actions_by_task`, and scans neither table: its cost does not grow with the host's
    /// history. Checked without statistics (as the host runs) and with statistics of empty
    /// tables, which once made SQLite scan every task's parent for the recursive step.
    #[test]
    fn the_tree_query_uses_the_indexes_and_scans_no_table() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path(), Durability::Process).unwrap());
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        let plan = || -> Vec<String> {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", sql(10)))
                .unwrap();
            stmt.query_map(params![1, "pending", "alice", 5_000, TREE_DEPTH], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        for analyzed in [false, true] {
            if analyzed {
                conn.execute_batch("ANALYZE").unwrap();
            }
            let plan = plan();
            let uses = |what: &str| plan.iter().any(|p| p.contains(what));
            assert!(uses("SEARCH tasks USING INTEGER PRIMARY KEY"), "{plan:?}");
            assert!(uses("INDEX tasks_by_parent (parent=?)"), "{plan:?}");
            assert!(
                uses("INDEX actions_by_task (task=? AND status=?)"),
                "{plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|p| p.starts_with("SCAN actions") || p.starts_with("SCAN tasks")),
                "{plan:?}"
            );
        }
    }

    /// The action queries a served call runs are compiled once: their limits are in their
    /// text (a bound `LIMIT` made SQLite recompile one at every call).
    #[test]
    fn the_action_queries_are_compiled_once_not_at_every_run() {
        use crate::store::StateStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        for (id, owner) in [(1, None), (2, Some("alice")), (3, Some("bob")), (4, None)] {
            store.task_actions(id, "pending", owner, 7).unwrap();
            store
                .tree_actions(id, "pending", Some(5), owner, 7)
                .unwrap();
        }
        let conn = store.conn();
        for sql in [super::super::task_actions_sql(7), sql(7)] {
            let stmt = conn.prepare_cached(&sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "recompiled at every run: {sql}"
            );
        }
        // What the rule guards against: a bound `LIMIT` recompiles the statement at every run.
        let bound = "SELECT id FROM tasks ORDER BY id LIMIT ?1";
        for _ in 0..3 {
            let mut stmt = conn.prepare_cached(bound).unwrap();
            stmt.query_map([5], |r| r.get::<_, i64>(0)).unwrap().count();
        }
        let stmt = conn.prepare_cached(bound).unwrap();
        assert!(stmt.get_status(rusqlite::StatementStatus::RePrepare) >= 2);
    }
}

//! The tables of `state.db`, and the columns later versions added, put into databases made by
//! earlier ones when they are opened (their older rows keep the new columns empty).

use rusqlite::Connection;

/// The tasks table, as a new database gets it.
const TASKS: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL, agent_id TEXT NOT NULL, module_hash TEXT NOT NULL,
    user TEXT NOT NULL, level INTEGER NOT NULL, grant_json TEXT NOT NULL,
    status TEXT NOT NULL, audit_seq INTEGER, audit_head INTEGER, outcome TEXT, trace TEXT,
    staging TEXT NOT NULL, staging_path TEXT,
    started_ms INTEGER NOT NULL, ended_ms INTEGER,
    owner TEXT NOT NULL DEFAULT '',
    parent INTEGER
);
";

/// The columns added to `tasks` since the first version, each with the statements that add it:
/// the owner process, the audit log's head, and the caller of a task started by an agent call.
const ADDED: [(&str, &str); 3] = [
    (
        "owner",
        "ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    ),
    (
        "audit_seq",
        "ALTER TABLE tasks ADD COLUMN audit_seq INTEGER; ALTER TABLE tasks ADD COLUMN audit_head INTEGER",
    ),
    ("parent", "ALTER TABLE tasks ADD COLUMN parent INTEGER"),
];

/// Indexes (on columns that exist once [`ADDED`] ran) and the other tables; `actions_by_task`
/// serves a task's pending actions (`task_actions`) without scanning the others'; `tasks_running`
/// holds only the rows still `running`, so a ledger's open finds the ones to recover without
/// reading every task the store ever held (a scan that grew the startup with the history); `task_ids`
/// holds the highest task id a ledger has reserved for rows it writes behind (`tasks.rs`),
/// `journal_marks` how many lines of each ledger's journal the store holds.
const REST: &str = "
CREATE INDEX IF NOT EXISTS tasks_by_parent ON tasks (parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_running ON tasks (owner) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS trust (
    agent_id TEXT PRIMARY KEY, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task INTEGER NOT NULL, agent TEXT NOT NULL, user TEXT NOT NULL, tool TEXT NOT NULL,
    params TEXT NOT NULL, hash TEXT NOT NULL, status TEXT NOT NULL,
    created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    approver TEXT, result TEXT
);
CREATE INDEX IF NOT EXISTS actions_by_task ON actions (task, status);
CREATE TABLE IF NOT EXISTS task_ids (
    one INTEGER PRIMARY KEY CHECK (one = 1), hi INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_marks (
    owner TEXT PRIMARY KEY, n INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, head TEXT NOT NULL, key TEXT NOT NULL, signature TEXT NOT NULL
);
";

/// Create the tables a new database lacks and add the columns an older one lacks.
pub(super) fn create_or_migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TASKS)?;
    for (column, sql) in ADDED {
        if !has_column(conn, column) {
            conn.execute_batch(sql)?;
        }
    }
    conn.execute_batch(REST)?;
    conn.execute_batch(super::cascade::TABLES)?;
    conn.execute_batch(super::queue::TABLES)
}

/// Whether the tasks table has `column` (databases made by older versions lack some).
pub(super) fn has_column(conn: &Connection, column: &str) -> bool {
    conn.prepare(&format!("SELECT {column} FROM tasks LIMIT 0"))
        .is_ok()
}

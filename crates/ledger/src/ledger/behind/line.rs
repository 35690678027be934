//! A journal line: what it holds as written ([`LineOut`]) and read back ([`LineIn`]), the row
//! the run path hands in ([`Line`]) and the owned entry the writer and a replay work from
//! ([`Entry`]).

use serde::{Deserialize, Serialize};

use crate::store::{BegunRow, EndedRow, LogHead, StoreError, TaskEnd, TaskRecord};

/// One journal line, owned (replay, the writer's queue), with the log head it vouches for.
#[derive(Debug, Clone)]
pub(in crate::ledger) enum Entry {
    Begin(BegunRow, LogHead),
    End(EndedRow, LogHead),
}

/// An entry and its number in its journal (from 1, across emptied and set-aside files).
pub(in crate::ledger) type Numbered = (u64, Entry);

/// What a journal line holds, as written: a task's beginning (`running`, its id reserved) or its
/// end (with its agent's trust record), and the audit log's head when it was written (after an
/// end's records, so covering them). The rows' JSON columns are written as they are stored.
#[derive(Serialize)]
pub(super) struct LineOut<'a> {
    n: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    begin: Option<&'a BegunRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<&'a EndedRow>,
    head: &'a LogHead,
}

/// [`LineOut`], read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LineIn {
    n: u64,
    begin: Option<BegunRow>,
    end: Option<EndedRow>,
    head: LogHead,
}

impl LineIn {
    pub(super) fn entry(self) -> Result<Numbered, String> {
        match (self.begin, self.end) {
            (Some(task), None) => Ok((self.n, Entry::Begin(task, self.head))),
            (None, Some(end)) => Ok((self.n, Entry::End(end, self.head))),
            _ => Err("a line holds exactly one of `begin` and `end`".into()),
        }
    }
}

/// A row for the journal, borrowed (the run path writes it without cloning).
pub(in crate::ledger) enum Line<'a> {
    /// A task's row as it begins (`running`, its id reserved).
    Begin(&'a TaskRecord),
    /// A task's end, with its agent's trust record.
    End(&'a TaskEnd),
}

impl Line<'_> {
    /// The line's row, its JSON columns serialized (once: the writer stores this text).
    pub(super) fn entry(&self, head: &LogHead) -> Result<Entry, StoreError> {
        Ok(match *self {
            Line::Begin(t) => Entry::Begin(BegunRow::of(t)?, head.clone()),
            Line::End(e) => Entry::End(EndedRow::of(e)?, head.clone()),
        })
    }
}

impl Entry {
    /// The line as written: number `n` in its journal.
    pub(super) fn out(&self, n: u64) -> LineOut<'_> {
        match self {
            Entry::Begin(t, head) => LineOut {
                n,
                begin: Some(t),
                end: None,
                head,
            },
            Entry::End(e, head) => LineOut {
                n,
                begin: None,
                end: Some(e),
                head,
            },
        }
    }
}

//! What the durable queue keeps of a job ([`StoredWork`]): beside a queued task's row, or beside
//! an escalated cascade's row for a resume a person asked for, so that a restarted server runs
//! it as it was admitted (`ServerState::resume_queued`).

use std::path::PathBuf;

use serde_json::Value;

use super::Job;
use crate::serve::work::Work;

/// What a queued row stores to run its task after a restart: the work and the roles its user
/// held (re-checked against the roles file then; never a wider grant than they give now).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredWork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<String>,
    #[serde(default)]
    pub workspace: Option<PathBuf>,
    pub roles: Vec<String>,
    /// A resume of this escalated cascade (its row stays `escalated` meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<u64>,
    /// The resume's note for the next stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl StoredWork {
    pub(crate) fn of(job: &Job) -> Self {
        let (mut agent, mut input, mut cascade, mut resume, mut note) =
            (None, Value::Null, None, None, None);
        match &job.work {
            Work::Agent { name, input: i } => (agent, input) = (Some(name.clone()), i.clone()),
            Work::Cascade { request } => cascade = Some(request.clone()),
            Work::Resume { task, note: n } => (resume, note) = (Some(*task), n.clone()),
        }
        StoredWork {
            agent,
            input,
            cascade,
            workspace: job.workspace.clone(),
            roles: job.user.roles.clone(),
            resume,
            note,
        }
    }

    pub(super) fn work(self) -> Result<(Work, Option<PathBuf>), String> {
        match (self.agent, self.cascade, self.resume) {
            (Some(name), None, None) => Ok((
                Work::Agent {
                    name,
                    input: self.input,
                },
                self.workspace,
            )),
            (None, Some(request), None) => Ok((Work::Cascade { request }, self.workspace)),
            (None, None, Some(task)) => Ok((
                Work::Resume {
                    task,
                    note: self.note,
                },
                None,
            )),
            _ => Err("the stored work names neither one agent, one cascade nor one resume".into()),
        }
    }
}

//! Multi-round tool calls on MCP 2026-07-28 (SEP-2322, "input-required results"): the stateless
//! era lets no server send the client a request, so a run that asks its person
//! (`warden:agent/human`, elicitation) or uses the client's model (sampling) **pauses**: its
//! instance stays in memory, its host call waiting on a channel ([`Pauser`]), and the
//! `tools/call` answers an `InputRequiredResult` — the question as an `inputRequests` entry and a
//! `requestState` that names the waiting run (`mrtr/state.rs`: a random id, the round, and an HMAC
//! binding them to the caller and the tool). The client's next `tools/call` of the same tool with
//! `inputResponses` and that state hands the answer over (`AgentTools::resume`) and waits again,
//! for the run's end (the usual result) or its next question (the next round).
//!
//! The answers a call carries (`inputResponses`, on the first call too) answer the questions
//! asked while that call waits, by key; a question with no answer (or an answer of the wrong
//! kind) pauses the run. Bounds: [`MAX_PAUSED`] runs in all and [`MAX_PAUSED_PER_USER`] per user
//! wait at once (past them the agent is answered `unavailable`); each question waits at most
//! [`PAUSE_TIMEOUT`] — and never past the task's wall-clock limit, which keeps running while it
//! waits, nor (sampling) the model's timeout. A paused run holds its worker and counts against
//! its user's running cap, as any running task. A state that fails its check, names a round the
//! run has left, or a pause that is gone, is a JSON-RPC error (-32602) and touches no run.

#![allow(deprecated)] // Sampling (SEP-2577): the 2026-07-28 era still defines it.

pub(crate) mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::{
    CreateMessageResult, ElicitResult, InputRequest, InputRequiredResult, InputResponses,
};
use tokio::sync::{mpsc, oneshot};

use rmcp::RoleServer;
use rmcp::model::CallToolResponse;
use rmcp::service::RequestContext;
use state::{Named, StateKey};

use super::AgentTools;
use crate::serve::Caller;

/// Longest a paused run waits for one answer.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(300);

/// Most runs paused at once on one server.
pub const MAX_PAUSED: usize = 256;

/// Most runs of one user paused at once.
pub const MAX_PAUSED_PER_USER: usize = 16;

/// The longest key an agent may give its question (`x-warden-input-key`).
const MAX_KEY: usize = 64;

/// A client's answer, of the kind the question asked for.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The answer to `elicitation/create`.
    Elicited(ElicitResult),
    /// The answer to `sampling/createMessage`.
    Sampled(Box<CreateMessageResult>),
}

/// What the run is told when a question is not answered: why.
pub(crate) type Answered = Result<Reply, String>;

/// One question of a paused run, on its way to the client.
pub(crate) struct Ask {
    key: String,
    request: Box<InputRequest>,
    answer: oneshot::Sender<Answered>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Ask {
    /// The client's `response` as the answer to this question, if it is of the right kind.
    fn reply_of(&self, response: &serde_json::Value) -> Answered {
        let wrong = |kind: &str, e: serde_json::Error| {
            let e: String = e.to_string().chars().take(200).collect();
            format!("the response to `{}` is not {kind}: {e}", self.key)
        };
        match &*self.request {
            InputRequest::Elicitation(_) => serde_json::from_value(response.clone())
                .map(Reply::Elicited)
                .map_err(|e| wrong("an elicitation result (`action`, `content`)", e)),
            InputRequest::CreateMessage(_) => serde_json::from_value(response.clone())
                .map(|r| Reply::Sampled(Box::new(r)))
                .map_err(|e| wrong("a sampling result (`role`, `content`, `model`)", e)),
            _ => Err(format!("`{}` asks for nothing Warden serves", self.key)),
        }
    }

    /// Answer the run (false: it no longer waits).
    pub(crate) fn answer(self, answered: Answered) -> bool {
        self.answer.send(answered).is_ok()
    }

    /// Whether the run stopped waiting for this answer (it timed out, or ended).
    fn abandoned(&self) -> bool {
        self.answer.is_closed()
    }

    /// Answer it from `responses` when they hold a fitting answer under its key (used up), or
    /// give it back.
    pub(crate) fn answer_from(self, responses: &mut InputResponses) -> Result<(), Ask> {
        match responses.get(&self.key).map(|r| self.reply_of(r)) {
            Some(Ok(reply)) => {
                responses.remove(&self.key);
                self.answer(Ok(reply));
                Ok(())
            }
            _ => Err(self),
        }
    }

    fn requests(&self) -> rmcp::model::InputRequests {
        [(self.key.clone(), (*self.request).clone())].into()
    }
}

/// The run's side of a pausable call: its questions go to whichever `tools/call` waits for it.
#[derive(Clone)]
pub struct Pauser {
    asks: mpsc::Sender<Ask>,
    asked: Arc<AtomicU32>,
    timeout: Duration,
}

impl std::fmt::Debug for Pauser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pauser")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Pauser {
    /// A pauser whose questions each wait at most `timeout`, and the receiving end of its
    /// questions (held by the waiting call, then by the pause).
    pub(crate) fn new(timeout: Duration) -> (Pauser, mpsc::Receiver<Ask>) {
        // One question at a time: a run's host calls are sequential.
        let (asks, receiver) = mpsc::channel(1);
        let pauser = Pauser {
            asks,
            asked: Arc::default(),
            timeout,
        };
        (pauser, receiver)
    }

    /// The key of the run's next question: the agent's own (`x-warden-input-key`, taken out of
    /// `schema` when given) or `<kind>-<n>` (`n` counting this run's questions).
    pub(crate) fn key(
        &self,
        kind: &str,
        schema: Option<&mut serde_json::Map<String, serde_json::Value>>,
    ) -> String {
        let n = self.asked.fetch_add(1, Ordering::Relaxed) + 1;
        schema
            .and_then(|s| s.remove(INPUT_KEY))
            .and_then(|k| k.as_str().filter(|k| valid_key(k)).map(str::to_owned))
            .unwrap_or_else(|| format!("{kind}-{n}"))
    }

    /// Put `request` to the client under `key` and wait for its answer.
    ///
    /// # Errors
    ///
    /// Why there is no answer (no call to carry it, no answer within the timeout, the pause gone).
    pub(crate) async fn ask(&self, key: String, request: InputRequest) -> Answered {
        let (answer, answered) = oneshot::channel();
        let asked = async {
            self.asks
                .send(Ask {
                    key,
                    request: Box::new(request),
                    answer,
                })
                .await
                .map_err(|_| {
                    "the call that would carry the question to the client has ended".to_owned()
                })?;
            answered.await.map_err(|_| {
                "the pause ended before the client answered (too many runs waiting, or the server is stopping)".to_owned()
            })?
        };
        tokio::time::timeout(self.timeout, asked)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the client did not answer within the pause timeout ({} s)",
                    self.timeout.as_secs()
                ))
            })
    }
}

/// The schema keyword an agent names its question's key with (taken out before the client sees
/// the schema, on both eras).
pub const INPUT_KEY: &str = "x-warden-input-key";

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A run waiting for the client's answer, between two calls.
#[derive(Debug)]
pub(crate) struct Paused {
    id: u128,
    round: u32,
    subject: String,
    tool: String,
    /// The waiting run's task.
    pub(crate) task: u64,
    /// The question it waits on.
    pub(crate) ask: Ask,
    /// Its later questions.
    pub(crate) asks: mpsc::Receiver<Ask>,
    expires: Instant,
}

impl Paused {
    /// The pause's id and its next round, for pausing again after an answer.
    pub(crate) fn next(&self) -> (u128, u32) {
        (self.id, self.round + 1)
    }
}

/// The paused runs of one server, and the key of their states.
#[derive(Debug)]
pub(crate) struct Pauses {
    key: StateKey,
    paused: Mutex<HashMap<u128, Paused>>,
    timeout: Duration,
}

impl Default for Pauses {
    fn default() -> Self {
        Pauses::with_timeout(PAUSE_TIMEOUT)
    }
}

/// Where a pause continues: a new one (`None`) or the next round of one.
pub(crate) type Continues = Option<(u128, u32)>;

impl Pauses {
    /// No runs paused; each question waits at most `timeout`.
    pub(crate) fn with_timeout(timeout: Duration) -> Pauses {
        Pauses {
            key: StateKey::generate(),
            paused: Mutex::default(),
            timeout,
        }
    }

    /// A pauser for a new call's run, waiting at most this server's pause timeout.
    pub(crate) fn pauser(&self) -> (Pauser, mpsc::Receiver<Ask>) {
        Pauser::new(self.timeout)
    }

    /// Keep task `task`'s run waiting on `ask` for `subject` calling `tool`, and the result that
    /// asks the client. Gives `ask` and `asks` back when too many runs already wait.
    pub(crate) fn pause(
        &self,
        subject: &str,
        tool: &str,
        task: u64,
        continues: Continues,
        ask: Ask,
        asks: mpsc::Receiver<Ask>,
    ) -> Result<InputRequiredResult, (Ask, mpsc::Receiver<Ask>)> {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        paused.retain(|_, p| p.expires > now);
        let full = |paused: &HashMap<u128, Paused>| {
            paused.len() >= MAX_PAUSED
                || paused.values().filter(|p| p.subject == subject).count() >= MAX_PAUSED_PER_USER
        };
        if full(&paused) {
            // Runs that stopped waiting (timed out, ended) make room first.
            paused.retain(|_, p| !p.ask.abandoned());
            if full(&paused) {
                return Err((ask, asks));
            }
        }
        let (id, round) = continues.unwrap_or_else(|| (self.key.fresh_id(), 0));
        let result = InputRequiredResult::new(
            Some(ask.requests()),
            Some(self.key.seal(Named { id, round }, subject, tool)),
        );
        paused.insert(
            id,
            Paused {
                id,
                round,
                subject: subject.to_owned(),
                tool: tool.to_owned(),
                task,
                ask,
                asks,
                // A grace past the run's own timeout, so that a late call learns the run's end.
                expires: now + self.timeout + Duration::from_secs(60),
            },
        );
        Ok(result)
    }

    /// Take the pause `state` names for `subject` calling `tool`, for its answer.
    ///
    /// # Errors
    ///
    /// -32602 when the state fails its check, names another round, or no pause (answered,
    /// expired, or from before a restart).
    pub(crate) fn take(&self, state: &str, subject: &str, tool: &str) -> Result<Paused, ErrorData> {
        let named = self.key.open(state, subject, tool).map_err(|e| {
            ErrorData::invalid_params(
                format!("{e}; call the tool again without `requestState` to start over"),
                None,
            )
        })?;
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let gone = || {
            ErrorData::invalid_params(
                "`requestState` names no paused run: it was answered already, its pause expired, or the server restarted; call the tool again without `requestState` to start over",
                None,
            )
        };
        match paused.get(&named.id) {
            Some(p) if p.round == named.round && p.subject == subject && p.tool == tool => {
                paused.remove(&named.id).ok_or_else(gone)
            }
            _ => Err(gone()),
        }
    }

    /// Keep `paused` waiting on the same question (its answer was missing): the same result again.
    pub(crate) fn keep(&self, paused: Paused) -> InputRequiredResult {
        let named = Named {
            id: paused.id,
            round: paused.round,
        };
        let result = InputRequiredResult::new(
            Some(paused.ask.requests()),
            Some(self.key.seal(named, &paused.subject, &paused.tool)),
        );
        self.paused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(paused.id, paused);
        result
    }
}

/// A call waiting for a pausable run: the run's questions, the answers the call carries, and
/// the pause the run continues if it asks again.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The run's questions.
    pub(crate) asks: mpsc::Receiver<Ask>,
    /// The answers the call carries, each used once.
    pub(crate) responses: InputResponses,
    /// The pause this call resumed, if any.
    pub(crate) continues: Continues,
}

impl AgentTools {
    /// A call with `requestState`: hand its answer to the run the state names, then wait for the
    /// run's end or next question ([`AgentTools::answer`]). A missing answer asks again; a
    /// wrong one is an error and the run keeps waiting.
    pub(super) async fn resume(
        &self,
        caller: &Caller,
        tool: &str,
        output_schema: Option<&serde_json::Value>,
        state: &str,
        mut responses: InputResponses,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let paused = self.pauses.take(state, &caller.user.subject, tool)?;
        let continues = Some(paused.next());
        // A run that stopped waiting (its question timed out, or it ended) needs no answer: what
        // it does next, or its end, is the result.
        if !paused.ask.abandoned() {
            let reply = match responses
                .get(&paused.ask.key)
                .map(|r| paused.ask.reply_of(r))
            {
                Some(Ok(reply)) => reply,
                None => return Ok(self.pauses.keep(paused).into()),
                Some(Err(wrong)) => {
                    self.pauses.keep(paused);
                    return Err(ErrorData::invalid_params(wrong, None));
                }
            };
            responses.remove(&paused.ask.key);
            paused.ask.answer(Ok(reply));
        }
        let Paused { asks, task, .. } = paused;
        let waiting = Waiting {
            asks,
            responses,
            continues,
        };
        // Its task was submitted by an earlier call: its pending actions are read.
        self.answer(
            caller,
            tool,
            output_schema,
            task,
            None,
            context,
            Some(waiting),
        )
        .await
    }
}

#[cfg(test)]
mod tests;

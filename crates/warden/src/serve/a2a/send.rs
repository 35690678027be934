//! `SendMessage`'s request as a submission: which agent (the endpoint's, or the `skill`
//! metadata's), the input (the message's parts), the workspace (the `workspace` metadata); and
//! what is refused (continuing a task, push notifications, file parts).

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::wire::{Code, Part, RpcError, SendParams};
use super::{Call, push_refused};
use crate::serve::work::{Submission, Work};

impl Call {
    /// Admit, store and start the task `p` asks for; its id, and the ledger's count of held
    /// actions if it started at once. `now` for a caller that waits for its end
    /// ([`crate::serve::ServerState::run_now_counted`]).
    pub(super) async fn submit(
        &self,
        p: SendParams,
        now: bool,
    ) -> Result<(u64, Option<u64>), RpcError> {
        if p.configuration
            .as_ref()
            .is_some_and(|c| c.task_push_notification_config.is_some())
        {
            return Err(push_refused());
        }
        let message = &p.message;
        if message.task_id.is_some() {
            return Err(RpcError::new(
                Code::Unsupported,
                "one-message",
                "a task here takes one message and cannot be continued: send a new message without `taskId` (an escalated task is resumed with `warden task resume`)",
            ));
        }
        if message.role != "ROLE_USER" {
            return Err(RpcError::new(
                Code::InvalidParams,
                "bad-role",
                "a message sent to an agent has the role ROLE_USER",
            ));
        }
        let name = self.agent_named(&p)?;
        let input = input_of(&message.parts)?;
        let workspace = match metadata(&p, "workspace") {
            None => None,
            Some(Value::String(dir)) => Some(PathBuf::from(dir)),
            Some(_) => {
                return Err(RpcError::new(
                    Code::InvalidParams,
                    "bad-workspace",
                    "the `workspace` metadata is a folder's path, as a string",
                ));
            }
        };
        let work = Work::Agent { name, input };
        let submission = Submission {
            work,
            workspace,
            client: None,
        };
        Ok(match now {
            true => self.state.run_now_counted(&self.caller, submission).await?,
            false => (self.state.submit(&self.caller, submission).await?, None),
        })
    }

    /// The agent a message is for: the endpoint's, or its `skill` metadata's (both must agree).
    fn agent_named(&self, p: &SendParams) -> Result<String, RpcError> {
        let skill = match metadata(p, "skill") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(RpcError::new(
                    Code::InvalidParams,
                    "bad-skill",
                    "the `skill` metadata is an agent's name, as a string",
                ));
            }
        };
        match (&self.agent, skill) {
            (Some(a), Some(s)) if *a != s => Err(RpcError::new(
                Code::InvalidParams,
                "bad-skill",
                format!(
                    "this endpoint is the agent `{}`; the message names the skill `{}`",
                    a,
                    crate::terminal::line(&s)
                ),
            )),
            (Some(a), _) => Ok(a.clone()),
            (None, Some(s)) => Ok(s),
            (None, None) => Err(RpcError::new(
                Code::InvalidParams,
                "no-skill",
                "name the agent: put {\"skill\": NAME} in the message's (or the request's) metadata, or send to /a2a/NAME; the card's skills are the agents you may use",
            )),
        }
    }
}

/// The request's or the message's metadata `key` (the request's first).
fn metadata<'a>(p: &'a SendParams, key: &str) -> Option<&'a Value> {
    let of = |m: &'a Option<Map<String, Value>>| m.as_ref().and_then(|m| m.get(key));
    of(&p.metadata).or_else(|| of(&p.message.metadata))
}

/// A message's parts as a task input: one `data` part is its JSON (whole numbers written as
/// floats made integers again); text parts are their text (joined by newlines) as a JSON string.
/// Files (`raw`, `url`) are not accepted.
pub(super) fn input_of(parts: &[Part]) -> Result<Value, RpcError> {
    if parts.iter().any(|p| p.raw.is_some() || p.url.is_some()) {
        return Err(RpcError::new(
            Code::ContentType,
            "bad-part",
            "file parts (`raw`, `url`) are not accepted: send the input as text, or as one data part",
        ));
    }
    let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
    let data: Vec<&Value> = parts.iter().filter_map(|p| p.data.as_ref()).collect();
    match (texts.as_slice(), data.as_slice()) {
        ([], [one]) => Ok(integral((*one).clone())),
        (texts, []) if !texts.is_empty() => Ok(Value::String(texts.join("\n"))),
        _ => Err(RpcError::new(
            Code::InvalidParams,
            "bad-parts",
            "a message holds the task input as text parts, or as exactly one data part (not both, not none)",
        )),
    }
}

/// `value` with every float that is a whole number within ±2^53 made an integer: a data part is a
/// protobuf `Value`, whose one number type is a double, so clients built on protobuf send `1000`
/// as `1000.0`, which an agent's contract (or its `u32`) would refuse.
pub(super) fn integral(value: Value) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}

//! `roll-call`: the smallest agent that calls another. It greets each name of its task by calling
//! the `hello` agent, through the host, and returns the greetings in order. It needs no
//! capability but `[agents] call = ["hello"]`.
//!
//! Task: a JSON list of names (`["ann", "bo"]`), at most 8. Returns a JSON list of greetings.
//! A name `hello` refuses comes back as `"(no greeting: …)"`; a call the host refuses (the task
//! tree's limits) ends the task as `failed`, with the host's reason.

use warden_guest::agents::{self, CallError};
use warden_guest::{Agent, AgentError, Description};

/// The contract's input and output: a list of names, a list of greetings.
type Names = Vec<String>;

/// The most names one task may hold: one call each, within the host's fan-out (8 by default).
const MAX_NAMES: usize = 8;

struct RollCall;

impl Agent for RollCall {
    fn describe() -> Description {
        Description::new(
            "roll-call",
            env!("CARGO_PKG_VERSION"),
            "Greets each name it is given, through the hello agent.",
        )
        .input::<Names>()
        .output::<Names>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let names: Names = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        if names.len() > MAX_NAMES {
            return Err(AgentError::invalid_input(format!(
                "{} names; at most {MAX_NAMES}",
                names.len()
            )));
        }
        let mut greetings = Vec::with_capacity(names.len());
        for name in &names {
            let input = serde_json::to_string(name).map_err(AgentError::failed)?;
            // Only `hello`'s result (or error) comes back: never its logs or its trace.
            let greeting = match agents::call("hello", &input) {
                Ok(greeting) => greeting,
                // `hello`'s own error (an empty name, say): part of the answer.
                Err(CallError::Failed(why)) => format!("(no greeting: {why})"),
                // The host refused the call, or `hello` broke a rule: this task cannot go on.
                Err(other) => return Err(AgentError::failed(format!("calling hello: {other:?}"))),
            };
            greetings.push(greeting);
        }
        serde_json::to_string(&greetings).map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(RollCall);

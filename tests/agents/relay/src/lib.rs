//! `relay`: the trivial caller. Its task is handed, unread, to the agent `hello` (through the
//! host: `[agents] call = ["hello"]` in its policy), and `hello`'s output is its own; a call that
//! fails is its failure. The task `null` is answered `null` without a call, so a benchmark can
//! time the caller's own run apart from the hop. Not for production: the agent-call benchmark's
//! caller (`WARDEN_BENCH_ONLY=calls`), as small as an agent that calls can be.

use warden_guest::{Agent, AgentError, Description, agents};

struct Relay;

impl Agent for Relay {
    fn describe() -> Description {
        Description::new(
            "relay",
            env!("CARGO_PKG_VERSION"),
            "Hands its task to `hello` and returns hello's output.",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        if task == "null" {
            return Ok(task);
        }
        agents::call("hello", &task).map_err(|e| AgentError::failed(format!("{e:?}")))
    }
}

warden_guest::export_agent!(Relay);

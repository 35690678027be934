//! `hello`: the smallest useful agent. It needs no capability, so its policy grants none.
//!
//! Task: a JSON string (`"world"`) or object (`{"name": "world"}`).

use serde::Deserialize;
use warden_guest::schemars::{self, JsonSchema};
use warden_guest::{Agent, AgentError, Description};

/// The contract's input: a name, or an object naming one.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Task {
    Name(String),
    Named { name: String },
}

struct Hello;

impl Agent for Hello {
    fn describe() -> Description {
        Description::new(
            "hello",
            env!("CARGO_PKG_VERSION"),
            "Greets the name it is given.",
        )
        .input::<Task>()
        .output::<String>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let name = match serde_json::from_str(&task).map_err(AgentError::invalid_input)? {
            Task::Name(name) | Task::Named { name } => name,
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(AgentError::invalid_input(
                "expected a name, got an empty one",
            ));
        }
        Ok(format!("hello, {name}"))
    }
}

warden_guest::export_agent!(Hello);

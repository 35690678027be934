//! `hello`: the smallest useful agent. It needs no capability, so its policy grants none.

use warden_guest::{Agent, AgentError, Description};

struct Hello;

impl Agent for Hello {
    fn describe() -> Description {
        Description::new("hello", env!("CARGO_PKG_VERSION"), "Greets the name it is given.")
            .accepts("a name (text)")
            .returns("a greeting (text)")
    }

    fn run(task: String) -> Result<String, AgentError> {
        let name = task.trim();
        if name.is_empty() {
            return Err(AgentError::invalid_input("expected a name, got an empty task"));
        }
        Ok(format!("hello, {name}"))
    }
}

warden_guest::export_agent!(Hello);

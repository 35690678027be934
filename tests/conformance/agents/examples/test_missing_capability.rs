//! `test_missing_capability`: Needs the calling client's model (sampling): refused (-32021) when the client did not declare `sampling`. A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::model::Chat;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_missing_capability",
            "Needs the calling client's model (sampling): refused (-32021) when the client did not declare `sampling`.",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        let mut prompt = kit::argument(&task, "prompt");
        if prompt.is_empty() {
            prompt = "Say ok.".into();
        }
        let reply = Chat::new(kit::CALLER_MODEL, 16)
            .user(&prompt)
            .send()
            .map_err(|e| AgentError::failed(format!("sampling failed: {e:?}")))?;
        Ok(kit::content(&[kit::text(&format!(
            "LLM response: {}",
            reply.text
        ))]))
    }
}

warden_guest::export_agent!(Fixture);

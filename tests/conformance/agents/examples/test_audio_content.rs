//! `test_audio_content`: Returns a WAV file (1 ms of silence). A fixture of the MCP conformance suite (see the package's docs).

use conformance_agents as kit;
use warden_guest::{Agent, AgentError, Description};

struct Fixture;

impl Agent for Fixture {
    fn describe() -> Description {
        kit::describe(
            "test_audio_content",
            "Returns a WAV file (1 ms of silence).",
        )
    }

    fn run(_task: String) -> Result<String, AgentError> {
        Ok(kit::content(&[kit::audio(kit::SILENCE_WAV, "audio/wav")]))
    }
}

warden_guest::export_agent!(Fixture);

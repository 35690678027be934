//! `fetch`: GETs a URL and returns its status, size and first line.
//!
//! Task: `{"url": "http://127.0.0.1:8080/status"}`. Its policy's `[net] allow` names the hosts
//! it may reach; any other host kills it at the request.

use serde::{Deserialize, Serialize};
use warden_guest::schemars::{self, JsonSchema};
use warden_guest::{Agent, AgentError, Description, http};

/// The contract's input.
#[derive(Deserialize, JsonSchema)]
struct Task {
    /// `http://` or `https://` URL on an allowed host.
    url: String,
}

/// The contract's output.
#[derive(Serialize, JsonSchema)]
struct Fetched {
    /// The HTTP status.
    status: u16,
    /// The body's size.
    bytes: u64,
    /// The body's first line.
    first_line: String,
}

struct Fetch;

impl Agent for Fetch {
    fn describe() -> Description {
        Description::new(
            "fetch",
            env!("CARGO_PKG_VERSION"),
            "Fetches a URL from an allowed host.",
        )
        .input::<Task>()
        .output::<Fetched>()
    }

    fn run(task: String) -> Result<String, AgentError> {
        let task: Task = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        let response = http::get(&task.url).map_err(AgentError::failed)?;
        let text = response.text();
        let first_line = text.lines().next().unwrap_or("");
        serde_json::to_string(&Fetched {
            status: response.status,
            bytes: response.body.len() as u64,
            first_line: first_line.to_string(),
        })
        .map_err(AgentError::failed)
    }
}

warden_guest::export_agent!(Fetch);

//! `fetch`: GETs a URL and returns its status, size and first line.
//!
//! Task: `{"url": "http://127.0.0.1:8080/status"}`. Its policy's `[net] allow` names the hosts
//! it may reach; any other host kills it at the request.

use serde::Deserialize;
use warden_guest::{Agent, AgentError, Description, http};

#[derive(Deserialize)]
struct Task {
    url: String,
}

struct Fetch;

impl Agent for Fetch {
    fn describe() -> Description {
        Description::new(
            "fetch",
            env!("CARGO_PKG_VERSION"),
            "Fetches a URL from an allowed host.",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        let task: Task = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        let response = http::get(&task.url).map_err(AgentError::failed)?;
        let text = response.text();
        let first_line = text.lines().next().unwrap_or("");
        Ok(serde_json::json!({
            "status": response.status,
            "bytes": response.body.len(),
            "first_line": first_line,
        })
        .to_string())
    }
}

warden_guest::export_agent!(Fetch);

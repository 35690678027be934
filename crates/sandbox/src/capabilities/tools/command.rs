//! Host tools run as commands: no shell, an empty environment, the call's input on stdin, a
//! deadline and a bound on what they may print. Used for reversible tools at the call and, after
//! a signed approval, for irreversible ones.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::HostTool;

/// Longest a host tool may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output a host tool may return.
pub const TOOL_OUTPUT_LIMIT: usize = 1024 * 1024;

/// Run a host tool: its command with no shell and an empty environment, `input` on stdin, its
/// stdout (at most [`TOOL_OUTPUT_LIMIT`]) the result. A non-zero exit, a timeout or too much
/// output is an error.
///
/// # Errors
///
/// A sentence saying what went wrong.
pub fn perform(tool: &HostTool, input: &str) -> Result<String, String> {
    let mut child = Command::new(&tool.command[0])
        .args(&tool.command[1..])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", tool.command[0]))?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = (&mut stdout)
            .take(TOOL_OUTPUT_LIMIT as u64 + 1)
            .read_to_end(&mut out);
        read.map(|_| out)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{}` ran past {}s and was stopped",
                tool.name,
                TOOL_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let out = reader
        .join()
        .map_err(|_| "the output reader failed".to_string())?
        .map_err(|e| e.to_string())?;
    if out.len() > TOOL_OUTPUT_LIMIT {
        return Err(format!("`{}` wrote more than 1 MiB", tool.name));
    }
    if !status.success() {
        return Err(format!("`{}` failed ({status})", tool.name));
    }
    String::from_utf8(out).map_err(|_| format!("`{}` wrote output that is not UTF-8", tool.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn perform_runs_the_command_with_input_on_stdin_and_no_environment() {
        let tool = HostTool {
            name: "t".into(),
            irreversible: true,
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                "read x; echo \"got $x env=${HOME:-none}\"".into(),
            ],
            approval_ttl: Duration::from_secs(60),
        };
        assert_eq!(perform(&tool, "hello\n").unwrap(), "got hello env=none\n");
        let failing = HostTool {
            command: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
            ..tool.clone()
        };
        assert!(perform(&failing, "").unwrap_err().contains("failed"));
        let missing = HostTool {
            command: vec!["/nonexistent/tool".into()],
            ..tool
        };
        assert!(perform(&missing, "").unwrap_err().contains("cannot start"));
    }
}

//! The real local model for end-to-end tests: one llama.cpp server (SmolLM2-135M, from
//! `scripts/model-server.py` in the venv `scripts/setup` makes) per test process, started on first
//! use on a free port of 127.0.0.1.
//!
//! The server runs until its stdin pipe closes. This process holds the pipe's other end for as
//! long as it lives and never closes it, so the operating system closes it when the test process
//! exits, however it exits: a crashed or killed test run leaves no server behind.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to load the model and listen.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest "listening …" line read from the server.
const MAX_LINE: u64 = 256;

/// A running server and the pipe that keeps it alive.
struct ModelServer {
    url: String,
    // Never read or dropped: holding them keeps the server's stdin open until this process ends.
    _child: Child,
    _stdin: ChildStdin,
}

/// The venv `scripts/setup` creates for the local model.
pub fn venv() -> PathBuf {
    crate::root().join(".venv-model")
}

/// The OpenAI-compatible base URL of this test process's model server
/// (`http://127.0.0.1:<port>/v1`), starting the server on first use.
///
/// # Panics
///
/// If the venv is missing (run `scripts/setup`), or the server does not start or does not say
/// where it listens within two minutes; the message names the server's log file.
pub fn url() -> &'static str {
    static SERVER: OnceLock<ModelServer> = OnceLock::new();
    &SERVER.get_or_init(start).url
}

fn start() -> ModelServer {
    let python = venv().join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: the model tests need the local model server; run scripts/setup",
        venv().display()
    );
    let log_path =
        std::env::temp_dir().join(format!("warden-model-server-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let mut child = Command::new(&python)
        .arg(crate::root().join("scripts/model-server.py"))
        .args(["--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout.take(MAX_LINE)).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => panic!("reading the model server's stdout failed: {e}"),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "the model server did not start within {START_TIMEOUT:?}; its log: {}",
                log_path.display()
            )
        }
    };
    let Some(base) = line
        .strip_prefix("listening ")
        .map(str::trim)
        .filter(|b| b.starts_with("http://127.0.0.1:"))
    else {
        let status = child.try_wait().ok().flatten();
        panic!(
            "the model server said {line:?} instead of `listening http://127.0.0.1:<port>` (exit: {status:?}); its log: {}",
            log_path.display()
        );
    };
    ModelServer {
        url: format!("{base}/v1"),
        _child: child,
        _stdin: stdin,
    }
}

//! The byte streams under `warden mcp` (`warden::mcp::stdio`), looked at from outside through
//! `/proc`: over pipes (what `std::process` and Python's SDK, whose stdio client the tests
//! beside this one run, give a child) and over socketpairs (what Node's `child_process` gives
//! the MCP clients written in TypeScript) the server holds a descriptor of its own on each
//! stream for tokio's reactor, leaves its standard descriptors blocking, and answers calls;
//! with an output that is a regular file or an input that is neither a pipe nor a stream socket
//! it falls back to tokio's blocking streams and still answers. A line over the limit is dropped
//! without being kept whole, and the same connection goes on.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Host, warden};

pub(super) const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"transport-test","version":"0"}}}"#;
pub(super) const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn call(id: u64, input: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "hello", "arguments": {"input": input}}})
    .to_string()
}

/// `warden mcp` for `host` on the given standard streams (killed when the test ends).
pub(super) fn spawn(host: &Host, stdin: Stdio, stdout: Stdio) -> (Child, tempfile::TempDir) {
    let workspace = tempfile::tempdir().unwrap();
    let child = Command::new(warden())
        .args(host.warden_args(&[
            "mcp",
            "--workspace",
            &workspace.path().display().to_string(),
        ]))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, workspace)
}

/// The answer to request `id` on `from` (notifications skipped).
pub(super) fn answer(from: &mut impl BufRead, id: u64) -> Value {
    loop {
        let mut line = String::new();
        assert!(from.read_line(&mut line).unwrap() > 0, "the server closed");
        let msg: Value = serde_json::from_str(&line).unwrap();
        if msg["id"] == id {
            return msg;
        }
    }
}

pub(super) fn send(to: &mut impl Write, line: &str) {
    to.write_all(line.as_bytes()).unwrap();
    to.write_all(b"\n").unwrap();
    to.flush().unwrap();
}

/// Initialize, then call `hello` and check its answer.
fn handshake_and_call(to: &mut impl Write, from: &mut impl BufRead) {
    send(to, INITIALIZE);
    assert_eq!(answer(from, 0)["result"]["serverInfo"]["name"], "warden");
    send(to, INITIALIZED);
    send(to, &call(1, "transport"));
    let result = answer(from, 1);
    assert_eq!(
        result["result"]["structuredContent"]["output"], "hello, transport",
        "{result}"
    );
}

/// What descriptor `fd` of process `pid` names (`pipe:[N]`, `socket:[N]`, a path).
fn target(pid: u32, fd: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .display()
        .to_string()
}

/// Whether descriptor `fd` of process `pid` is non-blocking (`flags` in its fdinfo, octal).
fn nonblocking(pid: u32, fd: u32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    flags & 0o4000 != 0
}

/// The descriptors of `pid` other than its standard ones that name what its `fd` names.
fn others_on(pid: u32, fd: u32) -> Vec<u32> {
    let same = target(pid, fd);
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u32>().ok())
        .filter(|&n| n > 2 && std::fs::read_link(format!("/proc/{pid}/fd/{n}")).is_ok())
        .filter(|&n| target(pid, n) == same)
        .collect()
}

#[test]
fn over_pipes_each_stream_has_a_non_blocking_descriptor_of_its_own() {
    let host = Host::new();
    let (mut child, _ws) = spawn(&host, Stdio::piped(), Stdio::piped());
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    handshake_and_call(&mut to, &mut from);
    let pid = child.id();
    for fd in [0, 1] {
        assert!(target(pid, fd).starts_with("pipe:"), "{}", target(pid, fd));
        let own = others_on(pid, fd);
        assert!(
            own.iter().any(|&n| nonblocking(pid, n)),
            "a non-blocking reopen of fd {fd}: {own:?}"
        );
        assert!(!nonblocking(pid, fd), "fd {fd} itself stays blocking");
    }
    drop(to);
    assert!(child.wait().unwrap().success());
}

#[test]
fn over_socketpairs_the_sockets_are_driven_without_changing_their_flags() {
    let host = Host::new();
    let (their_in, mut to) = UnixStream::pair().unwrap();
    let (their_out, ours) = UnixStream::pair().unwrap();
    let (mut child, _ws) = spawn(
        &host,
        std::os::fd::OwnedFd::from(their_in).into(),
        std::os::fd::OwnedFd::from(their_out).into(),
    );
    let mut from = BufReader::new(ours);
    handshake_and_call(&mut to, &mut from);
    send(&mut to, &call(2, "again"));
    assert_eq!(
        answer(&mut from, 2)["result"]["structuredContent"]["output"],
        "hello, again"
    );
    let pid = child.id();
    for fd in [0, 1] {
        assert!(
            target(pid, fd).starts_with("socket:"),
            "{}",
            target(pid, fd)
        );
        assert!(!others_on(pid, fd).is_empty(), "a duplicate of fd {fd}");
        // The duplicate shares the socket's flags: had it set O_NONBLOCK, fd 0/1 would show it.
        assert!(!nonblocking(pid, fd), "fd {fd} stays blocking");
    }
    to.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_file_as_output_falls_back_to_a_blocking_stream_and_is_answered() {
    let host = Host::new();
    let out = tempfile::NamedTempFile::new().unwrap();
    let (mut child, _ws) = spawn(&host, Stdio::piped(), out.reopen().unwrap().into());
    let mut to = child.stdin.take().unwrap();
    send(&mut to, INITIALIZE);
    send(&mut to, INITIALIZED);
    send(&mut to, &call(1, "file"));
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let text = std::fs::read_to_string(out.path()).unwrap();
        if text.contains("hello, file") {
            break text;
        }
        assert!(Instant::now() < deadline, "no answer in the file: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answered.lines().count() >= 2, "{answered}");
    assert!(others_on(pid, 1).is_empty(), "no reopen of a regular file");
    assert!(
        !others_on(pid, 0).is_empty(),
        "the input pipe is still on the reactor"
    );
    drop(to);
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_input_that_is_no_pipe_nor_stream_falls_back_to_a_blocking_stream_and_is_answered() {
    let host = Host::new();
    let (their_in, to) = UnixDatagram::pair().unwrap();
    let (mut child, _ws) = spawn(
        &host,
        std::os::fd::OwnedFd::from(their_in).into(),
        Stdio::piped(),
    );
    let mut from = BufReader::new(child.stdout.take().unwrap());
    let send = |line: &str| to.send(format!("{line}\n").as_bytes()).unwrap();
    send(INITIALIZE);
    assert_eq!(
        answer(&mut from, 0)["result"]["serverInfo"]["name"],
        "warden"
    );
    send(INITIALIZED);
    send(&call(1, "datagram"));
    assert_eq!(
        answer(&mut from, 1)["result"]["structuredContent"]["output"],
        "hello, datagram"
    );
    assert!(
        others_on(child.id(), 0).is_empty(),
        "nothing on the reactor"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Peak resident memory of `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_line_over_the_limit_is_dropped_unkept_and_the_connection_goes_on() {
    let host = Host::new();
    let (mut child, _ws) = spawn(&host, Stdio::piped(), Stdio::piped());
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    handshake_and_call(&mut to, &mut from);
    let pid = child.id();
    let before = peak_kib(pid);
    // Four times the limit, as the start of a request that never fits.
    let limit = warden::mcp::stdio::MAX_LINE;
    let chunk = vec![b' '; 1 << 20];
    to.write_all(br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"pad":""#)
        .unwrap();
    for _ in 0..(4 * limit / chunk.len()) {
        to.write_all(&chunk).unwrap();
    }
    to.write_all(b"\"}}\n").unwrap();
    send(&mut to, &call(8, "after"));
    // Everything up to id 8's answer: the oversized request itself is never answered.
    let next = loop {
        let mut line = String::new();
        assert!(from.read_line(&mut line).unwrap() > 0, "the server closed");
        let msg: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(msg["id"], 7, "an answer to the dropped line: {msg}");
        if msg["id"] == 8 {
            break msg;
        }
    };
    assert_eq!(
        next["result"]["structuredContent"]["output"], "hello, after",
        "{next}"
    );
    let grew = peak_kib(pid).saturating_sub(before) * 1024;
    assert!(
        (grew as usize) < limit + limit / 2,
        "the server kept {grew} bytes of a {} byte line (limit {limit})",
        4 * limit
    );
    drop(to);
    assert!(child.wait().unwrap().success());
}

//! The MCP figures (`WARDEN_BENCH_ONLY=mcp`): a `tools/call` round trip of the trivial agent
//! (`hello`) over stdio (`warden mcp`, its standard streams pipes as Python's SDK gives them,
//! then socketpairs as Node's `child_process` does) and over streamable HTTP (`/mcp` on
//! `warden serve`), each against a no-work JSON-RPC floor server driven by the same client on
//! the same streams (the floor answers every `tools/call` with a fixed result: its round trip
//! is the transport's and the client's own cost). Warden's cost is its p50 minus the floor's p50. And the startup of `warden mcp` to
//! its first answered call, with a warm compile cache. The stdio floor is this binary run again
//! as a child (`WARDEN_BENCH_MCP_FLOOR=1`), as `warden mcp` is; the HTTP floor is an axum route
//! on loopback in this process.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::{agent_path, percentile, us};

const CALL: &str = r#"{"jsonrpc":"2.0","id":ID,"method":"tools/call","params":{"name":"hello","arguments":{"input":"bench"}}}"#;

fn call(id: u64) -> String {
    CALL.replace("ID", &id.to_string())
}

fn initialize(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "warden-bench", "version": "0"}}})
    .to_string()
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The no-work floor over stdio: one JSON-RPC answer per request line, nothing else.
pub fn floor_stdio() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if let Some(answer) = floor_answer(&line) {
            writeln!(out, "{answer}")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The floor's answer to one message (`None` for a notification).
fn floor_answer(line: &str) -> Option<String> {
    let msg: Value = serde_json::from_str(line).ok()?;
    let id = msg.get("id")?.clone();
    let result = match msg["method"].as_str() {
        Some("initialize") => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "floor", "version": "0"}})
        }
        _ => json!({"content": [{"type": "text", "text": "\"hello, bench\""}],
            "structuredContent": {"task": 0, "status": "completed", "output": "hello, bench"},
            "isError": false}),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
}

/// A JSON-RPC peer on a child's stdin/stdout.
struct StdioPeer {
    child: Child,
    input: Box<dyn Write>,
    output: BufReader<Box<dyn Read>>,
}

/// What a child's standard streams are: pipes (Python's SDK, shells) or socketpairs (Node's
/// `child_process`, which MCP clients written in TypeScript use).
#[derive(Clone, Copy)]
enum Streams {
    Pipes,
    Sockets,
}

impl StdioPeer {
    fn spawn(cmd: Command) -> anyhow::Result<Self> {
        Self::spawn_on(cmd, Streams::Pipes)
    }

    fn spawn_on(mut cmd: Command, streams: Streams) -> anyhow::Result<Self> {
        cmd.stderr(Stdio::null());
        match streams {
            Streams::Pipes => {
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting the server")?;
                let input = Box::new(child.stdin.take().context("stdin")?);
                let output: Box<dyn Read> = Box::new(child.stdout.take().context("stdout")?);
                Ok(StdioPeer {
                    child,
                    input,
                    output: BufReader::new(output),
                })
            }
            Streams::Sockets => {
                let (their_in, ours_in) = UnixStream::pair()?;
                let (their_out, ours_out) = UnixStream::pair()?;
                let child = cmd
                    .stdin(std::os::fd::OwnedFd::from(their_in))
                    .stdout(std::os::fd::OwnedFd::from(their_out))
                    .spawn()
                    .context("starting the server")?;
                let output: Box<dyn Read> = Box::new(ours_out);
                Ok(StdioPeer {
                    child,
                    input: Box::new(ours_in),
                    output: BufReader::new(output),
                })
            }
        }
    }

    /// Send `line`; if it is a request, read until its answer (skipping notifications).
    fn exchange(&mut self, line: &str, answered: bool) -> anyhow::Result<Value> {
        writeln!(self.input, "{line}")?;
        self.input.flush()?;
        if !answered {
            return Ok(Value::Null);
        }
        loop {
            let mut text = String::new();
            ensure!(self.output.read_line(&mut text)? > 0, "the server closed");
            let msg: Value = serde_json::from_str(&text)?;
            if msg.get("id").is_some() {
                return Ok(msg);
            }
        }
    }

    fn handshake(&mut self) -> anyhow::Result<()> {
        self.exchange(&initialize(0), true)?;
        self.exchange(INITIALIZED, false)?;
        Ok(())
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check_answer(msg: &Value) -> anyhow::Result<()> {
    let output = &msg["result"]["structuredContent"]["output"];
    ensure!(output == "hello, bench", "not hello's answer: {msg}");
    Ok(())
}

fn stats(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "  {label:<34} p50 {:>9.1} µs   p99 {:>9.1} µs",
        us(p50),
        us(p99)
    );
    p50
}

fn stdio_round_trips(peer: &mut StdioPeer, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..(n + n / 10) {
        let t = Instant::now();
        let answer = peer.exchange(&call(i as u64 + 1), true)?;
        let took = t.elapsed();
        check_answer(&answer)?;
        if i >= n / 10 {
            samples.push(took);
        }
    }
    Ok(samples)
}

/// A host with `hello` in an agents directory; `warden` with it and `args`.
fn warden(host: &Path, args: &[&str]) -> anyhow::Result<Command> {
    let dir = host.join("agents");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(agent_path("hello")?, dir.join("hello.wasm"))?;
    std::fs::write(dir.join("hello.toml"), "[agent]\nname = \"hello\"\n")?;
    let config = host.join("warden.toml");
    std::fs::write(
        &config,
        format!("[agents]\ndir = {:?}\n", dir.display().to_string()),
    )?;
    let mut cmd = Command::new(warden_bin()?);
    cmd.arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(host.join("data"))
        .args(args)
        .current_dir(host);
    Ok(cmd)
}

fn warden_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("warden");
    if !path.is_file() {
        bail!(
            "{} is missing: cargo build --release -p warden --bin warden",
            path.display()
        );
    }
    Ok(path)
}

/// POST `body` to `path` on `sender`; the answer's JSON-RPC message (the one `data:` line of an
/// event stream, or a JSON body) and its headers.
async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: &str,
    headers: &[(&str, &str)],
    body: String,
) -> anyhow::Result<(Value, http::HeaderMap)> {
    let mut req = hyper::Request::post("/mcp")
        .header("host", authority)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    sender.ready().await?;
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let head = res.headers().clone();
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    ensure!(status.is_success(), "{status}: {text}");
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|l| l.contains("\"id\""))
        .unwrap_or(text.trim());
    Ok((serde_json::from_str(json).unwrap_or(Value::Null), head))
}

async fn http_round_trips(
    addr: &str,
    token: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    let (_, head) = post(&mut sender, addr, &headers, initialize(0)).await?;
    let session = head
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(s) = &session {
        headers.push(("mcp-session-id", s));
    }
    headers.push(("mcp-protocol-version", "2025-11-25"));
    let _ = post(&mut sender, addr, &headers, INITIALIZED.to_string()).await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..(n + n / 10) {
        let t = Instant::now();
        let (answer, _) = post(&mut sender, addr, &headers, call(i as u64 + 1)).await?;
        let took = t.elapsed();
        check_answer(&answer)?;
        if i >= n / 10 {
            samples.push(took);
        }
    }
    Ok(samples)
}

async fn floor_http() -> anyhow::Result<String> {
    async fn answer(body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        match floor_answer(&body) {
            Some(a) => ([("content-type", "application/json")], a).into_response(),
            None => axum::http::StatusCode::ACCEPTED.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let app = axum::Router::new().route("/mcp", axum::routing::post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Print the MCP figures.
pub async fn mcp_figures(quick: bool) -> anyhow::Result<()> {
    let n = if quick { 50 } else { 1000 };
    let host = tempfile::tempdir()?;
    println!("MCP tools/call round trip of hello ({n} calls each, after a tenth as warm-up):");

    for (streams, label) in [(Streams::Pipes, "pipes"), (Streams::Sockets, "socketpairs")] {
        let mut floor = StdioPeer::spawn_on(
            {
                let mut c = Command::new(std::env::current_exe()?);
                c.env("WARDEN_BENCH_MCP_FLOOR", "1");
                c
            },
            streams,
        )?;
        floor.handshake()?;
        let floor_stdio = stats(
            &format!("stdio ({label}), floor"),
            stdio_round_trips(&mut floor, n)?,
        );
        drop(floor);
        // A folder of its own: the server refuses a workspace that holds its data directory or
        // agents folder (both are in `host`).
        let workspace = host.path().join("ws");
        std::fs::create_dir_all(&workspace)?;
        let mut served = StdioPeer::spawn_on(
            warden(
                host.path(),
                &["mcp", "--workspace", &workspace.display().to_string()],
            )?,
            streams,
        )?;
        served.handshake()?;
        let warden_stdio = stats(
            &format!("stdio ({label}), warden mcp"),
            stdio_round_trips(&mut served, n)?,
        );
        drop(served);
        println!(
            "  Warden's cost over stdio ({label}) (p50 - floor p50): {:.1} µs",
            us(warden_stdio.saturating_sub(floor_stdio))
        );
    }
    let workspace = host.path().join("ws");
    std::fs::create_dir_all(&workspace)?;

    let floor_addr = floor_http().await?;
    let floor_h = stats("http, floor", http_round_trips(&floor_addr, None, n).await?);
    let (addr, token, _server) = serve(host.path())?;
    let warden_h = stats(
        "http, warden serve /mcp",
        http_round_trips(&addr, Some(&token), n).await?,
    );
    println!(
        "  Warden's cost over HTTP (p50 - floor p50): {:.1} µs",
        us(warden_h.saturating_sub(floor_h))
    );

    let mut starts = Vec::new();
    for _ in 0..if quick { 3 } else { 20 } {
        let t = Instant::now();
        let mut peer = StdioPeer::spawn(warden(
            host.path(),
            &["mcp", "--workspace", &workspace.display().to_string()],
        )?)?;
        peer.handshake()?;
        check_answer(&peer.exchange(&call(1), true)?)?;
        starts.push(t.elapsed());
    }
    stats("startup to first answered call", starts);
    Ok(())
}

/// `warden serve` on a free port: its address, development token, and the child (killed on drop).
fn serve(host: &Path) -> anyhow::Result<(String, String, KillOnDrop)> {
    let err = host.join("serve-stderr");
    let mut child = warden(host, &["serve", "--listen", "127.0.0.1:0"])?
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err)?)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let guard = KillOnDrop(child);
    let addr = line
        .trim()
        .strip_prefix("listening http://")
        .with_context(|| format!("warden serve did not start: {line}"))?
        .to_owned();
    let token = std::fs::read_to_string(&err)?
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("v4.public."))
        .context("no development token")?
        .to_owned();
    Ok((addr, token, guard))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! The server figures (`WARDEN_BENCH_ONLY=serve`): the real `warden serve` binary on loopback
//! with an agents directory holding `hello`, driven over HTTP/1 keep-alive connections.
//!
//! 1. Startup to first answer, warm compile cache: spawn → the `listening` line → the first
//!    `POST /v1/tasks` answered `202` → that task seen completed (`GET /v1/tasks/{id}`); the
//!    server is started once beforehand so the cache and the data directory exist.
//! 2. Round trip of a trivial task through the API, sequential: `POST /v1/tasks` + polling its
//!    row until it has ended (the client polls every 100 µs) — p50 / p99; and the `202` alone.
//!    Then the same round trip on a server logging JSON lines at `info` and exporting every span
//!    over OTLP/HTTP to a collector on loopback (one that answers every export at once): what
//!    the observability costs a request.
//! 3. Throughput with N concurrent clients, each submitting and waiting in a loop. The server
//!    always keeps a ledger (a task is stored before it is acknowledged), so "without the ledger"
//!    is measured in process beside it: the same runs of `hello`, N at a time, on a runtime
//!    without and with a ledger.
//!
//! Build the binary first: `cargo build --release -p warden --bin warden`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden::Runtime;

use super::{agent_path, load, percentile, throughput, us};

/// Concurrent clients for the throughput figure.
const CLIENTS: usize = 16;

fn warden_bin() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let bin = target.join("release/warden");
    if !bin.is_file() {
        bail!(
            "{} is missing: cargo build --release -p warden --bin warden",
            bin.display()
        );
    }
    Ok(bin)
}

/// The host: an agents directory with `hello`, its config, a data and a cache directory.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A host whose `warden.toml` ends with `extra`.
    fn new(extra: &str) -> anyhow::Result<Host> {
        let dir = tempfile::tempdir()?;
        let agents = dir.path().join("agents");
        std::fs::create_dir_all(&agents)?;
        std::fs::copy(agent_path("hello")?, agents.join("hello.wasm"))?;
        std::fs::write(agents.join("hello.toml"), "[agent]\nname = \"hello\"\n")?;
        std::fs::write(
            dir.path().join("warden.toml"),
            format!(
                "[agents]\ndir = {:?}\n[server]\nmax_queued = 4096\nper_user = {}\n{extra}",
                agents.display().to_string(),
                CLIENTS * 2
            ),
        )?;
        Ok(Host { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A running server: its process, address and development token.
struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `warden serve` on `host`; returns it once it printed `listening`, and how long that took.
fn spawn(host: &Host) -> anyhow::Result<(Server, Duration)> {
    let started = Instant::now();
    let stderr = std::fs::File::create(host.path("stderr"))?;
    let mut child = Command::new(warden_bin()?)
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_LOG")
        .arg("--config")
        .arg(host.path("warden.toml"))
        .arg("--data-dir")
        .arg(host.path("data"))
        .arg("--cache-dir")
        .arg(host.path("cache"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("warden serve")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let listening = started.elapsed();
    let addr = line
        .trim()
        .strip_prefix("listening http://")
        .with_context(|| format!("not a listening line: {line:?}"))?
        .to_owned();
    let err = std::fs::read_to_string(host.path("stderr"))?;
    let token = err
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("v4.public."))
        .context("no development token printed")?
        .to_owned();
    Ok((Server { child, addr, token }, listening))
}

/// One keep-alive HTTP/1 connection to the server.
struct Client {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: String,
    token: String,
}

impl Client {
    async fn connect(server: &Server) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(&server.addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Client {
            send,
            addr: server.addr.clone(),
            token: server.token.clone(),
        })
    }

    async fn call(&mut self, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
        self.send.ready().await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let answer = self.send.send_request(req).await?;
        let status = answer.status().as_u16();
        let bytes = answer.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes)?))
    }

    /// `hello` through a caller that waits for its end (A2A's blocking `SendMessage`, which
    /// starts it at once: `ServerState::run_now`); fails unless it completed.
    async fn send_message(&mut self) -> anyhow::Result<()> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": "m", "role": "ROLE_USER",
                "parts": [{"data": {"name": "bench"}}]}}})
        .to_string();
        self.send.ready().await?;
        let req = hyper::Request::post("/a2a/hello")
            .header("host", &self.addr)
            .header("content-type", "application/json")
            .header("a2a-version", "1.0")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))?;
        let answer = self.send.send_request(req).await?;
        let status = answer.status().as_u16();
        let v: Value = serde_json::from_slice(&answer.into_body().collect().await?.to_bytes())?;
        let state = &v["result"]["task"]["status"]["state"];
        ensure!(
            status == 200 && state == "TASK_STATE_COMPLETED",
            "SendMessage answered {status}: {v}"
        );
        Ok(())
    }

    /// Submit `hello`; its id (retrying a `429` after a millisecond).
    async fn submit(&mut self) -> anyhow::Result<u64> {
        let body = json!({"agent": "hello", "input": {"name": "bench"}}).to_string();
        loop {
            let (status, v) = self.call("POST", "/v1/tasks", &body).await?;
            match status {
                202 => return v["task"].as_u64().context("no task id"),
                429 => tokio::time::sleep(Duration::from_millis(1)).await,
                _ => bail!("submit answered {status}: {v}"),
            }
        }
    }

    /// Poll task `id` until it has ended, `pause` between polls; fails unless it completed.
    async fn wait(&mut self, id: u64, pause: Pause) -> anyhow::Result<()> {
        loop {
            let (status, row) = self.call("GET", &format!("/v1/tasks/{id}"), "").await?;
            ensure!(status == 200, "task {id}: {status} {row}");
            match row["status"].as_str() {
                Some("running") | Some("queued") => pause.wait().await,
                Some("completed") => return Ok(()),
                _ => bail!("task {id} did not complete: {row}"),
            }
        }
    }
}

/// How a client waits between two polls.
#[derive(Clone, Copy)]
enum Pause {
    /// 100 µs on the client's own thread (a timer would round up to a millisecond).
    Spin,
    /// A millisecond on the runtime's timer, leaving the cores to the server.
    Timer,
}

impl Pause {
    async fn wait(self) {
        match self {
            Pause::Spin => std::thread::sleep(Duration::from_micros(100)),
            Pause::Timer => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Figure 1: startup to the first answered task, warm cache, `runs` times.
async fn startup(host: &Host, runs: usize) -> anyhow::Result<()> {
    // Cold once: compile `hello` into the cache, create the data directory and the dev issuer.
    {
        let (server, _) = spawn(host)?;
        let mut c = Client::connect(&server).await?;
        let id = c.submit().await?;
        c.wait(id, Pause::Spin).await?;
    }
    let (mut listening, mut acked, mut done) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (server, up) = spawn(host)?;
        let mut c = Client::connect(&server).await?;
        let id = c.submit().await?;
        let ack = t.elapsed();
        c.wait(id, Pause::Spin).await?;
        let end = t.elapsed();
        listening.push(up);
        acked.push(ack);
        done.push(end);
        drop(server);
    }
    for v in [&mut listening, &mut acked, &mut done] {
        v.sort();
    }
    println!(
        "serve startup, warm compile cache (n={runs}; median / min): `listening` {:.1} / {:.1} ms; first 202 {:.1} / {:.1} ms; first task completed {:.1} / {:.1} ms",
        ms(percentile(&listening, 0.5)),
        ms(listening[0]),
        ms(percentile(&acked, 0.5)),
        ms(acked[0]),
        ms(percentile(&done, 0.5)),
        ms(done[0]),
    );
    Ok(())
}

/// Figure 2: sequential round trips through the API.
async fn round_trip(server: &Server, n: usize, label: &str) -> anyhow::Result<()> {
    let mut c = Client::connect(server).await?;
    for _ in 0..(n / 10).max(20) {
        let id = c.submit().await?;
        c.wait(id, Pause::Spin).await?;
    }
    let (mut acks, mut trips) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let id = c.submit().await?;
        acks.push(t.elapsed());
        c.wait(id, Pause::Spin).await?;
        trips.push(t.elapsed());
    }
    acks.sort();
    trips.sort();
    println!(
        "HTTP round trip of `hello`{label} (POST /v1/tasks + polling its row until completed, one keep-alive client, n={n}): p50 {:.0} µs, p99 {:.0} µs; the 202 alone p50 {:.0} µs, p99 {:.0} µs",
        us(percentile(&trips, 0.5)),
        us(percentile(&trips, 0.99)),
        us(percentile(&acks, 0.5)),
        us(percentile(&acks, 0.99)),
    );
    if label.is_empty() {
        parts(&mut c, n).await?;
    }
    Ok(())
}

/// Figure 2b: sequential round trips of a caller that waits in the request (A2A's blocking
/// `SendMessage`): no `202`, no polling; the task starts at once when a worker is free.
async fn waiting_round_trip(server: &Server, n: usize) -> anyhow::Result<()> {
    let mut c = Client::connect(server).await?;
    for _ in 0..(n / 10).max(20) {
        c.send_message().await?;
    }
    let mut trips = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.send_message().await?;
        trips.push(t.elapsed());
    }
    trips.sort();
    println!(
        "HTTP round trip of `hello` for a caller that waits (A2A blocking SendMessage, one keep-alive client, n={n}): p50 {:.0} µs, p99 {:.0} µs",
        us(percentile(&trips, 0.5)),
        us(percentile(&trips, 0.99)),
    );
    Ok(())
}

/// What a request costs before any task: `GET /health` (no token) and `GET /v1/tasks/{id}` (the
/// token verified, one row read), each p50 over `n`.
async fn parts(c: &mut Client, n: usize) -> anyhow::Result<()> {
    let id = c.submit().await?;
    c.wait(id, Pause::Spin).await?;
    let mut p50 = Vec::new();
    for path in ["/health".to_owned(), format!("/v1/tasks/{id}")] {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let (status, _) = c.call("GET", &path, "").await?;
            samples.push(t.elapsed());
            ensure!(status == 200, "{path}: {status}");
        }
        samples.sort();
        p50.push(us(percentile(&samples, 0.5)));
    }
    println!(
        "  (a request alone, p50: GET /health {:.0} µs; GET /v1/tasks/{{id}}, token verified + row read, {:.0} µs)",
        p50[0], p50[1]
    );
    Ok(())
}

/// Figure 3: tasks per second with `CLIENTS` clients, each submitting and waiting in a loop.
async fn http_throughput(server: &Server, seconds: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = Client::connect(server).await?;
        clients.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let id = c.submit().await?;
                c.wait(id, Pause::Timer).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "HTTP throughput (`hello`, {CLIENTS} concurrent clients, ledger on): {:.0} tasks/s ({total} in {secs:.2} s)",
        total as f64 / secs
    );
    Ok(())
}

/// Everything `WARDEN_BENCH_ONLY=serve` prints; `runtime` (no ledger) gives the in-process
/// comparison.
pub async fn serve_figures(runtime: &Runtime, quick: bool) -> anyhow::Result<()> {
    let host = Host::new("")?;
    startup(&host, if quick { 3 } else { 10 }).await?;
    let (server, _) = spawn(&host)?;
    let n = if quick { 200 } else { 2_000 };
    round_trip(&server, n, "").await?;
    waiting_round_trip(&server, n).await?;
    drop(server);
    // The same with JSON logs at `info`, then with every span exported to a collector on
    // loopback (logs at the default `warn`), then both.
    let exports = Arc::new(AtomicU64::new(0));
    let sink = otlp_sink(exports.clone())?;
    let logs = "[log]\nformat = \"json\"\nlevel = \"info\"\n";
    let otlp = format!("[telemetry]\notlp = \"http://{sink}\"\n");
    for (label, extra) in [
        (", JSON logs at info", logs.to_owned()),
        (", OTLP export", otlp.clone()),
        (", JSON logs at info + OTLP export", format!("{logs}{otlp}")),
    ] {
        let observed = Host::new(&extra)?;
        let before = exports.load(Ordering::Relaxed);
        let (server, _) = spawn(&observed)?;
        round_trip(&server, n, label).await?;
        drop(server);
        println!(
            "  (the collector received {} exports; the log has {} lines)",
            exports.load(Ordering::Relaxed) - before,
            std::fs::read_to_string(observed.path("stderr"))?
                .lines()
                .count()
        );
    }
    let (server, _) = spawn(&host)?;
    let secs = if quick { 1.0 } else { 5.0 };
    http_throughput(&server, secs).await?;
    drop(server);
    // In process, beside it: the same runs with and without the ledger, as many at a time.
    let bare = Arc::new(load(runtime, "hello", "")?);
    throughput(bare, secs, CLIENTS).await?;
    let data = tempfile::tempdir()?;
    let ledger = Arc::new(warden::ledger::Ledger::open(data.path(), 1024)?);
    let with = Arc::new(load(&runtime.clone().with_ledger(ledger), "hello", "")?);
    print!("with ledger: ");
    throughput(with, secs, CLIENTS).await?;
    Ok(())
}

/// A collector on loopback that answers every OTLP/HTTP export `200` (one request per
/// connection, as the exporter sends them) and counts them; returns its address.
fn otlp_sink(exports: Arc<AtomicU64>) -> anyhow::Result<std::net::SocketAddr> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_ok() {
                        exports.fetch_add(1, Ordering::Relaxed);
                        let _ = reader
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    }
                    break;
                }
            }
        }
    });
    Ok(addr)
}

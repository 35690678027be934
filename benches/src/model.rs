//! The model figures (`WARDEN_BENCH_ONLY=model`):
//!
//! (a) what the host adds to one model call beyond the provider's own time: a session's call to
//!     the stub provider (which answers at once) against a bare hyper request of the same body
//!     to the same stub, medians of interleaved samples (goal: under 50 µs);
//! (b) with `WARDEN_MODEL_URL` (an OpenAI-compatible llama.cpp server), the prefix-cache hit
//!     rate over 20 consecutive calls of one agent (goal: ≥ 80 % of prompt tokens cached from
//!     the second call on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use warden::capabilities::model::{ChatMessage, ChatRequest, ChatRole, ModelSession};
use warden::policy::HostConfig;
use warden_orchestra::model::stub::StubProvider;
use warden_orchestra::{Models, SessionScope};

fn tls() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    ))
}

fn models(url: &str) -> anyhow::Result<Models> {
    let text = format!(
        "[[model]]\nname = \"small\"\nurl = \"{url}\"\nid = \"smollm2\"\ntimeout = \"120 s\"\n\
         price = {{ input = 0.15, cached = 0.075, output = 0.6 }}\n"
    );
    let config = HostConfig::parse("bench.toml", &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Models::from_config(&config, tls()?)?)
}

/// An agent with the stable layers a real one has: rules and a few tools.
fn scope() -> SessionScope {
    let tool = |name: &str, what: &str| (name.to_owned(), what.to_owned());
    SessionScope {
        agent: "ask".into(),
        rules: "Answer in English, in one short sentence. Say so when you do not know. \
                Never invent file names, numbers or quotations."
            .into(),
        memory: String::new(),
        tools: vec![
            tool("search", "Search the project's documents for a phrase."),
            tool("read", "Read one document of the project by its path."),
            tool("calc", "Evaluate an arithmetic expression exactly."),
            tool("clock", "Tell the current date and time in UTC."),
        ],
        tokens: u64::MAX,
        micro_usd: u64::MAX,
        observer: None,
        client: None,
    }
}

fn request(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "small".into(),
        knowledge: None,
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: question.into(),
        }],
        max_tokens,
        temperature: Some(0.0),
        json_schema: None,
    }
}

/// One POST of `body` to `addr` on a fresh connection, as plainly as hyper allows.
async fn bare(addr: std::net::SocketAddr, body: bytes::Bytes) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    let request = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(bytes)
    };
    tokio::pin!(conn);
    tokio::pin!(exchange);
    loop {
        tokio::select! {
            r = &mut exchange => { anyhow::ensure!(!r?.is_empty(), "empty reply"); return Ok(()) }
            c = &mut conn => c?,
        }
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// (a): the host's share of a call, against the stub.
async fn host_overhead(n: usize) -> anyhow::Result<()> {
    let stub = StubProvider::start().await?;
    let session = models(&stub.url())?.session(scope());
    // The body the session sends, captured once, so the bare request carries the same bytes.
    session
        .chat(request("What is the capital of France?", 32))
        .await?;
    let body = stub.requests()[0].body.clone();
    let (mut with_host, mut plain, mut host_side) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + n / 10 {
        // Alternate which goes first, so neither always meets a warmer stub.
        let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
        for turn in [i % 2, 1 - i % 2] {
            let t = Instant::now();
            if turn == 0 {
                session
                    .chat(request("What is the capital of France?", 32))
                    .await?;
                a = t.elapsed();
            } else {
                bare(stub.addr(), body.clone()).await?;
                b = t.elapsed();
            }
        }
        if i >= n / 10 {
            with_host.push(a);
            plain.push(b);
        }
        if i % 1000 == 0 {
            stub.clear_requests();
        }
    }
    for c in session.calls().iter().skip(1 + n / 10) {
        host_side.push(Duration::from_micros(c.elapsed_us - c.provider_us));
    }
    let (a, b, h) = (
        median(&mut with_host),
        median(&mut plain),
        median(&mut host_side),
    );
    println!(
        "model call to a stub answering at once, n={n}: session.chat p50 {:.1} µs, bare hyper request p50 {:.1} µs \
         → the host adds {:+.1} µs (goal < 50 µs); outside the provider exchange (elapsed − provider time) p50 {:.1} µs",
        us(a),
        us(b),
        us(a) - us(b),
        us(h)
    );
    Ok(())
}

/// (b): the prefix-cache hit rate of one agent's consecutive calls to a real server.
async fn cache_hit_rate(url: &str, calls: usize) -> anyhow::Result<()> {
    let session = models(url)?.session(scope());
    let questions = [
        "What is the capital of France?",
        "How many legs has a spider?",
        "What colour is the sky on a clear day?",
        "Name a prime number below ten.",
        "What is water made of?",
    ];
    let (mut prompt, mut cached) = (0u64, 0u64);
    let mut per_call = Vec::new();
    for i in 0..calls {
        let q = format!("{} (question {})", questions[i % questions.len()], i + 1);
        let reply = session
            .chat(request(&q, 16))
            .await
            .with_context(|| format!("call {}", i + 1))?;
        let u = reply.usage;
        per_call.push(format!("{}/{}", u.cached_tokens, u.prompt_tokens));
        if i > 0 {
            prompt += u.prompt_tokens;
            cached += u.cached_tokens;
        }
    }
    let spend = session.spend();
    let calls_us: Vec<u64> = session.calls().iter().map(|c| c.elapsed_us).collect();
    println!(
        "prefix cache, {calls} consecutive calls of one agent ({url}): {:.1} % of prompt tokens cached from the \
         second call on ({cached}/{prompt}; goal ≥ 80 %); overall {:.1} %; per call cached/prompt: {}; \
         median call {:.0} ms",
        100.0 * cached as f64 / prompt.max(1) as f64,
        100.0 * spend.cache_hit_rate(),
        per_call.join(" "),
        {
            let mut v = calls_us.clone();
            v.sort();
            v[v.len() / 2] as f64 / 1e3
        }
    );
    Ok(())
}

/// Both figures; (b) only with `WARDEN_MODEL_URL`.
pub async fn model_figures(quick: bool) -> anyhow::Result<()> {
    host_overhead(if quick { 500 } else { 5_000 }).await?;
    match std::env::var("WARDEN_MODEL_URL") {
        Ok(url) => cache_hit_rate(&url, 20).await?,
        Err(_) => {
            println!("prefix cache: set WARDEN_MODEL_URL to a llama.cpp server to measure it")
        }
    }
    Ok(())
}

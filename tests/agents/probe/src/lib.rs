//! `probe`: a test agent that performs the one operation its task names, so the end-to-end
//! tests can exercise every capability and limit, inside and outside a grant. Not for production.
//!
//! Task: `{"op": "<op>", ...}`; see `run` for the operations and their fields.

use std::hint::black_box;

use serde::Deserialize;
use warden_guest::{Agent, AgentError, Description, agents, http, log, memory, model, tools};
use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

mod residue;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Task {
    op: String,
    path: String,
    text: String,
    target: String,
    url: String,
    name: String,
    input: String,
    bytes: u64,
    depth: u64,
    write: bool,
    /// Another task to run after this one succeeds (to test what survives a later kill).
    then: Option<Box<Task>>,
    header: String,
    value: String,
    /// `model` ops: the model's name, completion tokens (8 when absent; 0 is sent as 0), a JSON
    /// Schema, knowledge, the temperature as text (so that `NaN` and `inf` can be sent), and how
    /// many times the user message is repeated (1 when absent). `bytes` pads the message with
    /// `x` to that many bytes; `depth` repeats the model's name that many times (a long name).
    model: String,
    max_tokens: Option<u32>,
    schema: String,
    knowledge: String,
    temperature: String,
    messages: u64,
    /// `mem-*` ops: the entry's namespace, key, tags, ttl, visibility; a tag to list by.
    namespace: String,
    key: String,
    tags: Vec<String>,
    ttl: Option<u64>,
    general: bool,
    tag: Option<String>,
}

/// A memory entry as a `mem-*` op returns it.
fn entry_json(e: &memory::Entry) -> serde_json::Value {
    serde_json::json!({
        "namespace": e.namespace, "key": e.key, "text": e.text, "tags": e.tags,
        "version": e.version, "expires_ms": e.expires_ms, "general": e.general,
    })
}

/// The `mem-*` ops: `mem-put` (the version, or the host's refusal as a failure), `mem-get` (the
/// entry as JSON, or `none`; repeated `depth` times), `mem-list` (a JSON array), `mem-flood`
/// (`depth` writes to `key-<i>`: how many the host took, and its first refusal).
fn memory_op(t: &Task) -> Result<String, AgentError> {
    match t.op.as_str() {
        "mem-put" => memory::put_entry(&memory::Write {
            namespace: t.namespace.clone(),
            key: t.key.clone(),
            text: t.text.clone(),
            tags: t.tags.clone(),
            ttl_secs: t.ttl,
            general: t.general,
        })
        .map(|v| format!("version {v}"))
        .map_err(fail),
        "mem-get" => {
            let mut found = None;
            for _ in 0..t.depth.max(1) {
                found = black_box(memory::get(&t.namespace, &t.key));
            }
            Ok(found.map_or_else(|| "none".into(), |e| entry_json(&e).to_string()))
        }
        "mem-flood" => {
            for i in 0..t.depth {
                let write = memory::Write {
                    namespace: t.namespace.clone(),
                    key: format!("{}-{i}", t.key),
                    text: t.text.clone(),
                    tags: t.tags.clone(),
                    ttl_secs: t.ttl,
                    general: t.general,
                };
                if let Err(e) = memory::put_entry(&write) {
                    return Ok(format!("wrote {i}, then: {e}"));
                }
            }
            Ok(format!("wrote {}", t.depth))
        }
        "mem-list" => {
            let all: Vec<_> = memory::entries(&t.namespace, t.tag.as_deref())
                .iter()
                .map(entry_json)
                .collect();
            Ok(serde_json::Value::Array(all).to_string())
        }
        other => Err(AgentError::invalid_input(format!("unknown op `{other}`"))),
    }
}

/// One model call of a `model` op.
fn chat(t: &Task) -> Result<model::Reply, model::ModelError> {
    let mut text = t.text.clone();
    let pad = usize::try_from(t.bytes).unwrap_or(usize::MAX);
    if text.len() < pad {
        text.push_str(&"x".repeat(pad - text.len()));
    }
    let name = t.model.repeat(usize::try_from(t.depth).unwrap_or(1).max(1));
    let mut chat = model::Chat::new(&name, t.max_tokens.unwrap_or(8));
    for _ in 0..t.messages.max(1) {
        chat = chat.user(&text);
    }
    if !t.temperature.is_empty() {
        // Whatever the text says, `NaN` included: the host must refuse what is out of range.
        chat = chat.temperature(t.temperature.parse().unwrap_or(f32::NAN));
    }
    if !t.schema.is_empty() {
        chat = chat.json_schema(&t.schema);
    }
    if !t.knowledge.is_empty() {
        chat = chat.knowledge(&t.knowledge);
    }
    chat.send()
}

fn model_error(e: model::ModelError) -> AgentError {
    fail(match e {
        model::ModelError::BudgetExceeded(m) => format!("budget-exceeded: {m}"),
        model::ModelError::InvalidRequest(m) => format!("invalid-request: {m}"),
        model::ModelError::Provider(m) => format!("provider: {m}"),
    })
}

struct Probe;

/// `call-error` by name, as the `call` ops report it.
fn call_error_kind(e: &agents::CallError) -> (&'static str, &str) {
    match e {
        agents::CallError::InvalidInput(m) => ("invalid-input", m),
        agents::CallError::Refused(m) => ("refused", m),
        agents::CallError::Failed(m) => ("failed", m),
        agents::CallError::Killed(m) => ("killed", m),
        agents::CallError::ContractBreach(m) => ("contract-breach", m),
        agents::CallError::Escalated(m) => ("escalated", m),
    }
}

/// Call `name` on `input`: `{"ok": result}` or `{"error": kind, "message": …}` (the caller
/// completes either way, so a test sees what came back).
fn call_once(name: &str, input: &str) -> serde_json::Value {
    match agents::call(name, input) {
        Ok(out) => serde_json::json!({ "ok": out }),
        Err(e) => {
            let (kind, message) = call_error_kind(&e);
            serde_json::json!({ "error": kind, "message": message })
        }
    }
}

/// Call `name` `times` times on `input`; how many came back ok, and each error kind's count
/// with its first message.
fn call_many(name: &str, input: &str, times: u64) -> String {
    let mut ok = 0u64;
    let mut errors = serde_json::Map::new();
    for _ in 0..times {
        match agents::call(name, input) {
            Ok(_) => ok += 1,
            Err(e) => {
                let (kind, message) = call_error_kind(&e);
                let entry = errors
                    .entry(kind)
                    .or_insert_with(|| serde_json::json!({ "count": 0, "first": message }));
                entry["count"] = (entry["count"].as_u64().unwrap_or(0) + 1).into();
            }
        }
    }
    serde_json::json!({ "ok": ok, "errors": errors }).to_string()
}

fn fail(e: impl std::fmt::Display) -> AgentError {
    AgentError::failed(e)
}

/// Deep recursion that uses the wasm stack, not the guest's shadow stack in linear memory.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    1 + recurse(black_box(depth - 1)) + black_box(depth) % 2
}

/// Nest `depth` folders named `d` below `root` (as deep as the host lets it), then walk the
/// tree for ever: every level's metadata and listing, each named by its full path, so every call
/// makes the host resolve a path as deep as the tree. Ends when the host stops it.
fn deep_tree(root: &str, depth: u64) -> Result<String, AgentError> {
    let mut levels = vec![std::path::PathBuf::from(root)];
    for _ in 0..depth {
        let next = levels[levels.len() - 1].join("d");
        if std::fs::create_dir(&next).is_err() {
            break;
        }
        levels.push(next);
    }
    if levels.len() == 1 {
        return Err(fail(format!("could not create any folder below {root}")));
    }
    loop {
        for level in &levels {
            black_box(std::fs::metadata(level).map_err(fail)?);
            black_box(std::fs::read_dir(level).map_err(fail)?.count());
        }
    }
}

/// Make `count` files in the folder `dir`, then list it for ever: each listing is the host's work.
fn many_files(dir: &str, count: u64) -> Result<String, AgentError> {
    for i in 0..count {
        std::fs::write(format!("{dir}/f{i}"), "").map_err(fail)?;
    }
    loop {
        black_box(std::fs::read_dir(dir).map_err(fail)?.count());
    }
}

/// Read the file at `path` (in the first preopened folder) through non-blocking stream reads,
/// over and over, for ever.
fn stream_read(path: &str) -> Result<String, AgentError> {
    let raw = |e: wasip2::filesystem::types::ErrorCode| fail(format!("{e:?}"));
    let file = first_preopen()?
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(raw)?;
    loop {
        let stream = file.read_via_stream(0).map_err(raw)?;
        loop {
            match stream.read(64 * 1024) {
                Ok(bytes) if bytes.is_empty() => stream.subscribe().block(),
                Ok(bytes) => {
                    black_box(bytes);
                }
                Err(_) => break,
            }
        }
    }
}

/// Make a chain of `count` symlinks in `dir` (a folder of the first preopened folder): `c0` ->
/// `.`, each next one to the one before; then look up a path through the whole chain for ever,
/// through the raw WASI bindings, ignoring the errors the host gives past what it follows.
fn link_chain(dir: &str, count: u64) -> Result<String, AgentError> {
    let root = first_preopen()?;
    let raw = |e: wasip2::filesystem::types::ErrorCode| fail(format!("{e:?}"));
    root.symlink_at(".", &format!("{dir}/c0")).map_err(raw)?;
    for i in 1..count {
        root.symlink_at(&format!("c{}", i - 1), &format!("{dir}/c{i}"))
            .map_err(raw)?;
    }
    let last = format!("c{}", count.saturating_sub(1));
    let through = format!("{dir}/{}", [last.as_str(); 8].join("/"));
    loop {
        let _ = black_box(root.stat_at(PathFlags::SYMLINK_FOLLOW, &through));
    }
}

/// The first preopened folder, through the raw WASI bindings (so paths reach the host unchanged).
fn first_preopen() -> Result<wasip2::filesystem::types::Descriptor, AgentError> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .next()
        .map(|(d, _)| d)
        .ok_or_else(|| fail("no preopened folder"))
}

impl Agent for Probe {
    fn describe() -> Description {
        Description::new(
            "probe",
            env!("CARGO_PKG_VERSION"),
            "Does what its task says (tests only).",
        )
    }

    fn run(task: String) -> Result<String, AgentError> {
        let t: Task = serde_json::from_str(&task).map_err(AgentError::invalid_input)?;
        perform(t)
    }
}

fn perform(t: Task) -> Result<String, AgentError> {
    let result = perform_one(&t)?;
    match t.then {
        Some(next) => perform(*next),
        None => Ok(result),
    }
}

fn perform_one(t: &Task) -> Result<String, AgentError> {
    {
        match t.op.as_str() {
            "echo" => Ok(t.text.clone()),
            "read" => std::fs::read_to_string(&t.path).map_err(fail),
            "write" => std::fs::write(&t.path, &t.text)
                .map(|()| "written".into())
                .map_err(fail),
            "list" => {
                let mut names: Vec<String> = std::fs::read_dir(&t.path)
                    .map_err(fail)?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                Ok(names.join(","))
            }
            "raw-open" => {
                let dir = first_preopen()?;
                let (oflags, flags) = if t.write {
                    (OpenFlags::CREATE, DescriptorFlags::WRITE)
                } else {
                    (OpenFlags::empty(), DescriptorFlags::READ)
                };
                dir.open_at(PathFlags::SYMLINK_FOLLOW, &t.path, oflags, flags)
                    .map(|_| "opened".into())
                    .map_err(|e| fail(format!("{e:?}")))
            }
            "raw-symlink" => {
                let dir = first_preopen()?;
                dir.symlink_at(&t.target, &t.path)
                    .map(|()| "linked".into())
                    .map_err(|e| fail(format!("{e:?}")))
            }
            "raw-link" => {
                let dir = first_preopen()?;
                dir.link_at(PathFlags::empty(), &t.path, &dir, &t.target)
                    .map(|()| "linked".into())
                    .map_err(|e| fail(format!("{e:?}")))
            }
            "raw-truncate" => {
                let dir = first_preopen()?;
                dir.open_at(
                    PathFlags::empty(),
                    &t.path,
                    OpenFlags::TRUNCATE,
                    DescriptorFlags::READ,
                )
                .map(|_| "truncated".into())
                .map_err(|e| fail(format!("{e:?}")))
            }
            "raw-read-abs" => {
                // Name an absolute host path from the first preopened folder.
                let dir = first_preopen()?;
                let f = dir
                    .open_at(
                        PathFlags::empty(),
                        &t.path,
                        OpenFlags::empty(),
                        DescriptorFlags::READ,
                    )
                    .map_err(|e| fail(format!("{e:?}")))?;
                let (bytes, _) = f.read(64, 0).map_err(|e| fail(format!("{e:?}")))?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            "handles" => {
                // Open the same file again and again, keeping every handle.
                let mut kept = Vec::new();
                for _ in 0..t.depth {
                    kept.push(std::fs::File::open(&t.path).map_err(fail)?);
                }
                Ok(format!("{} handles", kept.len()))
            }
            "raw-moved" => {
                // Open the folder `path` (making what is missing of it), rename it to `target`,
                // then create `text` relative to the descriptor, which moved with the folder.
                let root = first_preopen()?;
                let raw = |e: wasip2::filesystem::types::ErrorCode| fail(format!("{e:?}"));
                let mut made = String::new();
                for part in t.path.split('/') {
                    made = if made.is_empty() {
                        part.to_string()
                    } else {
                        format!("{made}/{part}")
                    };
                    if root.stat_at(PathFlags::empty(), &made).is_err() {
                        root.create_directory_at(&made).map_err(raw)?;
                    }
                }
                let dir = root
                    .open_at(
                        PathFlags::empty(),
                        &t.path,
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
                    )
                    .map_err(raw)?;
                root.rename_at(&t.path, &root, &t.target).map_err(raw)?;
                dir.open_at(
                    PathFlags::empty(),
                    &t.text,
                    OpenFlags::CREATE,
                    DescriptorFlags::WRITE,
                )
                .map(|_| "created".into())
                .map_err(raw)
            }
            "raw-rename" => {
                let dir = first_preopen()?;
                dir.rename_at(&t.path, &dir, &t.target)
                    .map(|()| "renamed".into())
                    .map_err(|e| fail(format!("{e:?}")))
            }
            "http" => http::get(&t.url)
                .map(|r| format!("{} {}", r.status, r.text()))
                .map_err(fail),
            "http-follow" => {
                // Follow one redirect by hand, as a guest must: the new request is checked anew.
                let first = http::get(&t.url).map_err(fail)?;
                let location = first
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .ok_or_else(|| fail(format!("no redirect (status {})", first.status)))?;
                http::get(&location)
                    .map(|r| format!("{} {}", r.status, r.text()))
                    .map_err(fail)
            }
            "http-header" => http::request("GET", &t.url, &[(&t.header, &t.value)], &[])
                .map(|r| format!("{} {}", r.status, r.text()))
                .map_err(fail),
            "tool" => tools::call(&t.name, &t.input).map_err(fail),
            "model" => chat(t).map(|r| r.text).map_err(model_error),
            // Call until the host refuses, then return normally: the budget must still end the
            // task escalated.
            "model-loop" => loop {
                if let Err(e) = chat(t) {
                    return Ok(format!("stopped: {}", model_error(e)));
                }
            },
            // Agent calls: one call; the same call `depth` times (a fan-out bomb); and a bomb
            // that calls `name` (itself, by its policy) `depth` times with this very task, so
            // every callee does the same (recursion × fan-out).
            "call" => Ok(call_once(&t.name, &t.input).to_string()),
            "call-many" => Ok(call_many(&t.name, &t.input, t.depth)),
            "bomb" => {
                let again = serde_json::json!({ "op": "bomb", "name": t.name, "depth": t.depth });
                Ok(call_many(&t.name, &again.to_string(), t.depth))
            }
            "log" => {
                log::info(&"x".repeat(t.bytes as usize));
                Ok("logged".into())
            }
            "print" => {
                let line = "y".repeat(1023) + "\n";
                for _ in 0..t.bytes.div_ceil(1024) {
                    print!("{line}");
                }
                Ok("printed".into())
            }
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "spin-calls" => loop {
                black_box(wasip2::random::insecure::get_insecure_random_u64());
            },
            // Busy for `depth` µs, then a nap that parks the task, for ever: its polls are
            // short (under the CPU account's 50 µs), and their CPU must be charged all the same.
            "spin-naps" => loop {
                let until = std::time::Instant::now() + std::time::Duration::from_micros(t.depth);
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                std::thread::sleep(std::time::Duration::from_micros(100));
            },
            "alloc" => {
                let mut v: Vec<u8> = Vec::new();
                v.try_reserve_exact(t.bytes as usize).map_err(fail)?;
                v.resize(t.bytes as usize, 1);
                Ok(format!("allocated {}", black_box(v).len()))
            }
            "recurse" => Ok(recurse(t.depth).to_string()),
            "tool-loop" => {
                let mut bytes = 0;
                for _ in 0..t.depth {
                    bytes += tools::call(&t.name, &t.input).map_err(fail)?.len();
                }
                Ok(bytes.to_string())
            }
            "random-loop" => {
                let mut x = 0u64;
                for _ in 0..t.depth {
                    x ^= wasip2::random::insecure::get_insecure_random_u64();
                }
                Ok(black_box(x).to_string())
            }
            "clock" => Ok(format!("{:?}", std::time::SystemTime::now())),
            "random" => Ok(format!(
                "{} random bytes",
                warden_guest::random::bytes(t.bytes).len()
            )),
            "env" => Ok(format!(
                "{} vars, {} args",
                std::env::vars().count(),
                std::env::args().count()
            )),
            "panic" => panic!("probe was asked to panic"),
            "exit" => std::process::exit(3),
            "output" => Ok("z".repeat(t.bytes as usize)),
            "escapes" => {
                // Terminal control sequences: clear screen, set title, hyperlink, bell.
                let nasty = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\\r\u{9b}31m";
                for _ in 0..t.depth {
                    print!("{nasty}");
                    eprint!("{nasty}");
                }
                log::warn(nasty);
                Ok(nasty.to_string())
            }
            "log-big" => {
                log::info(&"L".repeat(t.bytes as usize));
                Ok("logged".into())
            }
            "tool-big" => {
                let input = "T".repeat(t.bytes as usize);
                tools::call(&t.name, &input)
                    .map(|out| out.len().to_string())
                    .map_err(fail)
            }
            "deep-tree" => deep_tree(&t.path, t.depth),
            "many-files" => many_files(&t.path, t.depth),
            "stream-read" => stream_read(&t.path),
            "link-chain" => link_chain(&t.path, t.depth),
            "mem-put" | "mem-get" | "mem-list" | "mem-flood" => memory_op(t),
            // The secret is `text`; `plant` puts `bytes` of it in one heap block too.
            "plant" => residue::plant(&t.text, t.bytes).map_err(fail),
            "scan" => residue::scan(&t.text).map_err(fail),
            other => Err(AgentError::invalid_input(format!("unknown op `{other}`"))),
        }
    }
}

warden_guest::export_agent!(Probe);

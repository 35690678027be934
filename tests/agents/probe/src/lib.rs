//! `probe`: a test agent that performs the one operation its task names, so the end-to-end
//! tests can exercise every capability and limit, inside and outside a grant. Not for production.
//!
//! Task: `{"op": "<op>", ...}`; see `run` for the operations and their fields.

use std::hint::black_box;

use serde::Deserialize;
use warden_guest::{Agent, AgentError, Description, http, log, tools};
use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

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
}

struct Probe;

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
            "raw-rename" => {
                let dir = first_preopen()?;
                dir.rename_at(&t.path, &dir, &t.target)
                    .map(|()| "renamed".into())
                    .map_err(|e| fail(format!("{e:?}")))
            }
            "http" => http::get(&t.url)
                .map(|r| format!("{} {}", r.status, r.text()))
                .map_err(fail),
            "tool" => tools::call(&t.name, &t.input).map_err(fail),
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
            other => Err(AgentError::invalid_input(format!("unknown op `{other}`"))),
        }
    }
}

warden_guest::export_agent!(Probe);

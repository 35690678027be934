//! Class `residue`: a secret one task leaves in its agent's linear memory, looked for by the
//! next task that gets the same instance slot. The host keeps a slot's dirtied pages resident
//! between instances and resets them in place (`EngineConfig::memory_keep_resident`,
//! `memory_pagemap_scan`) instead of handing them back to the kernel; whatever an agent wrote —
//! static storage, its stack, small heap blocks, a heap block far past what is kept resident —
//! must be gone when the next instance starts, whether that instance is the same agent's or
//! another's. Each attack runs on a host of its own with **one** instance slot, so every task
//! reuses the slot of the one before.
//!
//! The probe's `plant` writes the secret (masked, so the task's own text is not it) and `scan`
//! counts where it lies in the whole of linear memory. Before each attack, planting and
//! scanning in one task must find it (the scanner works; else `inconclusive:<what>`, which fails
//! the suite); then the attack's scan must find nothing: `contained:no-residue`, or `breach:<what>`.

use std::sync::Arc;

use serde_json::json;
use warden::capabilities::tools::ToolRegistry;
use warden::{Outcome, RunOptions, Runtime};
use warden_sandbox::EngineConfig;
use warden_tests::{agent, policy, probe, target_dir};

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run_attack(name: &str) -> Option<Vec<String>> {
    let verdict = match name {
        // A few KiB, all inside what the slot keeps resident and resets in place.
        "residue-same-agent" => residue(16 << 10, false).await,
        // 8 MiB: most of it past what is kept resident, so handed back to the kernel.
        "residue-past-resident" => residue(8 << 20, false).await,
        // The next task is another agent's (another module in the same slot).
        "residue-other-agent" => residue(16 << 10, true).await,
        _ => return None,
    };
    Some(vec![verdict])
}

/// A host with one instance slot.
fn one_slot() -> Runtime {
    let config = EngineConfig {
        cache_dir: Some(target_dir().join("warden-test-cache")),
        max_instances: 1,
        ..EngineConfig::default()
    };
    Runtime::new(config, ToolRegistry::with_builtins()).expect("engine builds")
}

/// The probe's component with a custom section appended: the same code as another module.
fn another_module(bytes: &[u8]) -> Vec<u8> {
    let name = b"warden-redteam-other";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    let mut out = bytes.to_vec();
    out.push(0); // a custom section
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

async fn output(loaded: &warden::LoadedAgent, task: &str) -> Result<String, String> {
    let options = RunOptions {
        workspace: None,
        user: None,
        on_begin: None,
        queued: None,
        client: None,
    };
    let report = loaded
        .run(task, &options)
        .await
        .map_err(|e| format!("breach:the run could not start: {e}"))?;
    match report.outcome {
        Outcome::Completed { output } => Ok(output),
        other => Err(format!(
            "breach:the probe ended {}",
            warden::outcome_name(&other)
        )),
    }
}

/// How many copies a `scan` output reports.
fn found(output: &str) -> Option<u64> {
    output
        .strip_prefix("found ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

async fn residue(big: u64, other_agent: bool) -> String {
    let runtime = one_slot();
    let bytes = std::fs::read(agent("probe")).expect("probe is built");
    let planter = Arc::new(
        runtime
            .load(&bytes, policy("probe", "[limits]\nmemory = \"64 MiB\"\n"))
            .expect("probe loads"),
    );
    let scanner = match other_agent {
        true => Arc::new(
            runtime
                .load(&another_module(&bytes), policy("other", ""))
                .expect("the second probe loads"),
        ),
        false => planter.clone(),
    };
    for round in 0..3 {
        let secret = format!("warden-residue-{round}-q7Zk2LmW9x");
        let plant = probe("plant", &[("text", json!(secret)), ("bytes", json!(big))]);
        let scan = probe("scan", &[("text", json!(secret))]);
        // The scanner sees what its own task planted.
        let both = probe(
            "plant",
            &[
                ("text", json!(secret)),
                ("bytes", json!(big)),
                ("then", serde_json::from_str(&scan).unwrap()),
            ],
        );
        match output(&planter, &both).await.map(|o| found(&o)) {
            Ok(Some(n)) if n > 0 => {}
            Ok(n) => return format!("inconclusive:the scan missed what its task planted ({n:?})"),
            Err(e) => return e,
        }
        if let Err(e) = output(&planter, &plant).await {
            return e;
        }
        match output(&scanner, &scan).await {
            Ok(out) if found(&out) == Some(0) => {}
            Ok(out) => return format!("breach:the next task read the secret ({out})"),
            Err(e) => return e,
        }
    }
    "contained:no-residue".into()
}

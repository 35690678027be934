//! End-to-end: what loading refuses, and how fast. A component whose compile would cost the host
//! more than its limits allow is refused before compiling, in well under a second even at the
//! size that once took 25 s and 3 GiB; bytes that are not wasm are named so; and an agent that
//! imports raw sockets loads and is killed at its first socket call, exactly as `warden inspect`
//! says (it was refused by wasmtime's "resource implementation is missing").

use std::time::{Duration, Instant};

use warden::complexity::Limit;
use warden::imports::{ImportError, ImportVerdict};
use warden::{EngineError, KillReason, LoadError, RunOptions};
use warden_tests::{AGENTS, agent, killed, policy, root, runtime};

#[path = "../redteam/complex.rs"]
mod complex;

/// Each kind of costly component, at a size past its limit, and the limit that refuses it.
const COSTLY: &[(&str, Limit)] = &[
    // The evaluation's component: 6.6 MB, 600,000 functions.
    ("many-functions:600000", Limit::Functions),
    ("huge-function:600000", Limit::FunctionSize),
    ("bulky-functions:9000000", Limit::CodeBytes),
    ("many-blocks:25000", Limit::FunctionBlocks),
    ("many-blocks:20000x21", Limit::Blocks),
    ("deep-nesting:12000", Limit::BlockDepth),
    ("br-table:30000", Limit::BrTableTargets),
    ("many-locals:2000", Limit::Locals),
    ("live-values:10000", Limit::StackHeight),
    ("merge-locals:10000", Limit::Locals),
    ("merges:2001", Limit::FunctionLocalMerges),
    ("merges:2000x6", Limit::LocalMerges),
    ("many-modules:40", Limit::Modules),
    ("many-instances:40", Limit::CoreInstances),
    ("nested-components:10", Limit::CoreInstances),
    ("nested-instances:20", Limit::ComponentItems),
];

#[tokio::test(flavor = "multi_thread")]
async fn components_costly_to_compile_are_refused_fast() {
    for (spec, limit) in COSTLY {
        let bytes = complex::generate(spec).unwrap();
        let started = Instant::now();
        let err = runtime().load(&bytes, policy("costly", "")).unwrap_err();
        let took = started.elapsed();
        match &err {
            LoadError::Engine(EngineError::TooComplex(refusal)) => {
                assert_eq!(refusal.limit, *limit, "{spec}: {err}");
            }
            other => panic!("{spec}: expected a too-complex refusal, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains(limit.field()), "{spec}: {text}");
        assert!(
            took < Duration::from_millis(500),
            "{spec} ({} bytes) took {took:?} to refuse",
            bytes.len()
        );
    }
    let evaluated = complex::generate("many-functions:600000").unwrap();
    assert!(evaluated.len() > 6_500_000, "{}", evaluated.len());
}

#[test]
fn the_largest_admitted_costly_components_compile() {
    // The twins: the same shapes at their limits load as far as their exports (they are no
    // agents), so the limits refuse only what passes them.
    for spec in [
        "many-functions:1000",
        "many-blocks:20000",
        "deep-nesting:10000",
        "br-table:20000",
        "merges:2000",
    ] {
        let bytes = complex::generate(spec).unwrap();
        runtime()
            .engine()
            .complexity(&bytes)
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        match runtime().load(&bytes, policy("admitted", "")) {
            Err(LoadError::Exports { .. }) => {}
            other => panic!("{spec}: expected to compile, got {:?}", other.err()),
        }
    }
}

#[test]
fn real_agents_are_well_within_the_compile_limits() {
    let limits = &runtime().engine().config().compile;
    for name in AGENTS {
        let bytes = std::fs::read(agent(name)).unwrap();
        let found = runtime().engine().complexity(&bytes).unwrap();
        // "Well within": a tenth of each limit of size (a real agent is far from them all).
        for (count, limit) in [
            (found.functions, limits.max_functions),
            (found.code_bytes, limits.max_code_bytes),
            (found.blocks, limits.max_blocks),
            (found.largest_function, limits.max_function_size),
            (found.local_merges, limits.max_local_merges),
        ] {
            assert!(count * 10 < limit, "{name}: {count} of {limit}: {found:?}");
        }
    }
}

#[test]
fn bytes_that_are_not_wasm_are_not_a_component() {
    let cases: [&[u8]; 3] = [
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01 not an agent \x80\x81",
        b"#!/bin/sh\necho not an agent\n",
        b"(module)",
    ];
    for bytes in cases {
        let err = runtime().load(bytes, policy("nonwasm", "")).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, LoadError::Engine(EngineError::NotAComponent { .. })),
            "{text}"
        );
        assert!(text.contains("not a WebAssembly component"), "{text}");
        assert!(!text.contains("utf-8"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_imports_load_and_kill_on_first_call_as_inspect_says() {
    let cases = [
        ("sockets-tcp.wat", "wasi:sockets/tcp-create-socket@0.2.0"),
        ("sockets-lookup.wat", "wasi:sockets/instance-network@0.2.0"),
    ];
    for (file, called) in cases {
        let bytes = std::fs::read(root().join("tests/redteam/wat").join(file)).unwrap();
        let agent = runtime()
            .load(&bytes, policy("sockets", ""))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for import in agent.imports() {
            let want = if import.name.starts_with("wasi:sockets/network@") {
                ImportVerdict::TypesOnly
            } else {
                ImportVerdict::KillsOnFirstCall
            };
            assert_eq!(import.verdict, want, "{file}: {}", import.name);
        }
        let report = agent.run("\"x\"", &RunOptions::default()).await.unwrap();
        let (capability, _) = killed(&report, KillReason::NotGranted);
        assert_eq!(capability, called, "{file}");

        // Strict: refused at load, in Warden's words, and the verdicts say so before loading.
        let strict = policy("sockets", "strict = true");
        let component = runtime().engine().compile(&bytes).unwrap();
        let reports = warden::imports::report(runtime().engine().engine(), &component, &strict);
        assert!(
            reports
                .iter()
                .any(|r| matches!(r.verdict, ImportVerdict::Refused(_))),
            "{file}"
        );
        match runtime().load(&bytes, strict) {
            Err(LoadError::Import {
                refusal: ImportError::NotGranted { name, .. },
                ..
            }) => assert!(name.starts_with("wasi:sockets/"), "{name}"),
            other => panic!("{file}: expected a strict refusal, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_known_interface_with_a_member_the_host_lacks_is_refused_in_wardens_words() {
    let bytes = br#"(component
        (import "wasi:io/error@0.2.0" (instance
            (export "error" (type (sub resource)))
            (export "open-backdoor" (func)))))"#;
    match runtime().load(bytes, policy("mismatch", "")) {
        Err(LoadError::Import {
            refusal: ImportError::Mismatch { name, detail },
            ..
        }) => {
            assert_eq!(name, "wasi:io/error@0.2.0");
            assert!(detail.contains("open-backdoor"), "{detail}");
        }
        other => panic!("expected a mismatch refusal, got {:?}", other.err()),
    }
}

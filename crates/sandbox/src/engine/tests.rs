//! The engine's bounds on compiling (what the bytes must be, what they may cost, one compile at
//! a time under a deadline) and its cache, each with its twin.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn oversized_component_is_refused_before_compiling() {
    let engine = WardenEngine::new(EngineConfig {
        max_component_size: 16,
        max_instances: 4,
        ..EngineConfig::default()
    })
    .unwrap();
    let err = engine.compile(&[0u8; 17]).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::TooLarge {
                size: 17,
                limit: 16
            }
        ),
        "{err}"
    );
}

#[test]
fn garbage_is_refused_with_a_clear_error() {
    let engine = WardenEngine::new(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })
    .unwrap();
    let err = engine.compile(b"\0asm garbage").unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err}");
}

fn small_engine(config: EngineConfig) -> WardenEngine {
    WardenEngine::new(EngineConfig {
        max_instances: 4,
        ..config
    })
    .unwrap()
}

#[test]
fn what_is_not_a_component_is_named_so() {
    let engine = small_engine(EngineConfig::default());
    let cases: [(&[u8], &str); 4] = [
        // Not UTF-8, no header: once reported as text that is not valid UTF-8.
        (
            b"\xff\xfe\x00\x01 random bytes \x80",
            "neither the WebAssembly header",
        ),
        (b"hello, I am an agent", "neither the WebAssembly header"),
        (b"(module)", "core WebAssembly module"),
        (b"\0asm\x01\0\0\0", "core WebAssembly module"),
    ];
    for (bytes, why) in cases {
        match engine.compile(bytes) {
            Err(e @ EngineError::NotAComponent { .. }) => {
                let text = e.to_string();
                assert!(text.starts_with("not a WebAssembly component"), "{text}");
                assert!(text.contains(why), "{text}");
            }
            other => panic!("{bytes:?}: expected not-a-component, got {other:?}"),
        }
    }
    // Their twins: a binary component, and text that opens with a comment.
    let binary = wat::parse_str("(component)").unwrap();
    engine.compile(&binary).unwrap();
    engine
        .compile(b";; a hand-written component\n\n(component)")
        .unwrap();
}

#[test]
fn text_is_parsed_only_up_to_its_limit() {
    let mut config = EngineConfig::default();
    let text = b"(component)".to_vec();
    config.compile.max_text_size = text.len() as u64;
    small_engine(config.clone()).compile(&text).unwrap();
    config.compile.max_text_size -= 1;
    let err = small_engine(config).compile(&text).unwrap_err();
    assert!(
        matches!(&err, EngineError::TooComplex(r) if r.limit == Limit::TextSize),
        "{err}"
    );
}

#[test]
fn a_costly_component_is_refused_before_compiling_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let bytes = wat::parse_str("(component (core module (func) (func) (func)))").unwrap();
    let mut config = EngineConfig {
        cache_dir: Some(cache.clone()),
        ..EngineConfig::default()
    };
    config.compile.max_functions = 2;
    let err = small_engine(config.clone()).compile(&bytes).unwrap_err();
    assert!(matches!(err, EngineError::TooComplex(_)), "{err}");
    assert!(!cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none());

    // Compiled and cached under a higher limit, it is still refused under the lower one:
    // the cache is keyed by the limits.
    config.compile.max_functions = 3;
    small_engine(config.clone()).compile(&bytes).unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    small_engine(config.clone()).compile(&bytes).unwrap();
    config.compile.max_functions = 2;
    let err = small_engine(config).compile(&bytes).unwrap_err();
    assert!(matches!(err, EngineError::TooComplex(_)), "{err}");
}

#[test]
fn a_compile_past_its_deadline_is_refused() {
    let bytes = wat::parse_str("(component (core module (func) (func)))").unwrap();
    let slow = small_engine(EngineConfig {
        compile_timeout: Some(Duration::from_nanos(1)),
        ..EngineConfig::default()
    });
    let err = slow.compile(&bytes).unwrap_err();
    assert!(matches!(err, EngineError::CompileTimeout { .. }), "{err}");
    // The twin: the default deadline, and none at all.
    small_engine(EngineConfig::default())
        .compile(&bytes)
        .unwrap();
    small_engine(EngineConfig {
        compile_timeout: None,
        ..EngineConfig::default()
    })
    .compile(&bytes)
    .unwrap();
}

#[test]
fn compile_slots_admit_one_at_a_time() {
    let slots = Arc::new(CompileSlots::new(1));
    let first = slots.acquire();
    let entered = Arc::new(AtomicBool::new(false));
    let (s, e) = (slots.clone(), entered.clone());
    let second = std::thread::spawn(move || {
        let _slot = s.acquire();
        e.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !entered.load(Ordering::SeqCst),
        "a second compile ran beside the first"
    );
    drop(first);
    second.join().unwrap();
    assert!(entered.load(Ordering::SeqCst));
}

#[test]
fn cache_round_trips_and_survives_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = WardenEngine::new(EngineConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..EngineConfig::default()
    })
    .unwrap();
    // The engine accepts WebAssembly text too, which keeps this test small.
    let bytes = b"(component)".to_vec();
    engine.compile(&bytes).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let path = files[0].as_ref().unwrap().path();
    std::fs::write(&path, b"corrupt").unwrap();
    engine.compile(&bytes).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), b"corrupt");
}

#[test]
fn threads_storing_the_same_component_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = cache.join("abc.cwasm");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| super::store_cached(&cache, &path, b"compiled bytes")))
            .collect();
        for h in handles {
            h.join().unwrap().expect("every concurrent store succeeds");
        }
    });
    assert_eq!(std::fs::read(&path).unwrap(), b"compiled bytes");
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("abc.cwasm")]);
}

/// Waits (at most 10 s) until `done` holds, checking every 5 ms.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `engine`'s ticker is still now: no tick over 30 ms (thirty periods).
fn still(engine: &WardenEngine) -> bool {
    let before = engine.epoch_ticks();
    std::thread::sleep(Duration::from_millis(30));
    engine.epoch_ticks() == before
}

/// The ticker sleeps once no instance has lived for its idle time, ticks again as soon as one
/// holds it (past the idle time too, for as long as it is held), and sleeps again after.
#[test]
fn the_epoch_ticks_only_while_an_instance_lives() {
    let engine = small_engine(EngineConfig {
        epoch_tick: Duration::from_millis(1),
        epoch_idle_after: Duration::from_millis(20),
        ..EngineConfig::default()
    });
    eventually("an engine without instances stops ticking", || {
        still(&engine)
    });
    let held = engine.ticking();
    let woken = engine.epoch_ticks();
    eventually("an instance wakes the ticker", || {
        engine.epoch_ticks() >= woken + 5
    });
    std::thread::sleep(Duration::from_millis(60));
    assert!(!still(&engine), "ticks go on past the idle time while held");
    let second = engine.ticking();
    drop(held);
    assert!(!still(&engine), "one instance still lives");
    drop(second);
    eventually("the last instance gone, the ticker sleeps again", || {
        still(&engine)
    });
}

//! Every compile limit, each with its twin: a component whose count is exactly the limit is
//! admitted, and the same component under a limit one lower is refused, naming that limit and
//! the count. Then the expansion of nested components, and validation.

use super::{CompileLimits, Limit, check};
use crate::engine::EngineError;

fn component(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap_or_else(|e| panic!("test WAT does not parse: {e}\n{wat}"))
}

/// A core module inside a component.
fn module(body: &str) -> String {
    format!("(component (core module {body}))")
}

/// (limit, the count the component has, the component).
fn cases() -> Vec<(Limit, u64, String)> {
    use Limit::*;
    let three_instances =
        "(core module $m) (core instance (instantiate $m)) (core instance (instantiate $m))";
    vec![
        (
            Modules,
            3,
            "(component (core module) (core module) (core module))".into(),
        ),
        (
            Components,
            3,
            "(component (component) (component (component)))".into(),
        ),
        (
            ComponentDepth,
            2,
            "(component (component (component)))".into(),
        ),
        (
            // Two instances in a component instantiated three times: six once expanded.
            CoreInstances,
            6,
            format!(
                "(component (component $c {three_instances}) (instance (instantiate $c)) \
                 (instance (instantiate $c)) (instance (instantiate $c)))"
            ),
        ),
        (
            Memories,
            2,
            "(component (core module $m (memory 1)) (core instance (instantiate $m)) \
             (core instance (instantiate $m)))"
                .into(),
        ),
        (
            Tables,
            2,
            "(component (core module $m (table 1 funcref)) (core instance (instantiate $m)) \
             (core instance (instantiate $m)))"
                .into(),
        ),
        (
            ComponentItems,
            3,
            "(component (type (func)) (type (func)) (type (func)))".into(),
        ),
        (Functions, 3, module("(func) (func) (func)")),
        // Each body's size and body (no locals, `end`), as the code section header counts.
        (CodeBytes, 6, module("(func) (func)")),
        (FunctionSize, 4, module("(func (result i32) i32.const 1)")),
        (Locals, 4, module("(func (param i32) (local i32 i64 i64))")),
        (
            FunctionBlocks,
            4,
            module("(func (block) (loop) (if (i32.const 0) (then) (else)))"),
        ),
        (
            Blocks,
            5,
            module("(func (block) (block)) (func (block) (block) (block))"),
        ),
        (BlockDepth, 3, module("(func (block (block (block))))")),
        (
            BrTableTargets,
            3,
            module("(func (block (block (br_table 0 1 0 1 (i32.const 0)))))"),
        ),
        (
            FunctionLocalMerges,
            6,
            module("(func (param i32) (local i32 i32) (block) (block))"),
        ),
        (
            LocalMerges,
            7,
            module("(func (local i32) (block)) (func (param i32) (local i32 i32) (block) (block))"),
        ),
        (
            StackHeight,
            3,
            module("(func (result i32) i32.const 1 i32.const 2 i32.const 3 i32.add i32.add)"),
        ),
        (Types, 2, module("(type (func)) (type (func (param i32)))")),
        (
            Imports,
            2,
            module(r#"(import "a" "b" (func)) (import "a" "c" (global i32))"#),
        ),
        (
            Exports,
            2,
            module(r#"(func (export "a")) (func (export "b"))"#),
        ),
        (
            Globals,
            2,
            module("(global i32 (i32.const 0)) (global i32 (i32.const 1))"),
        ),
        (
            DataSegments,
            2,
            module(r#"(memory 1) (data (i32.const 0) "ab") (data (i32.const 8) "cd")"#),
        ),
        (
            DataBytes,
            4,
            module(r#"(memory 1) (data (i32.const 0) "ab") (data (i32.const 8) "cd")"#),
        ),
        (
            ElementSegments,
            2,
            module(
                "(table 4 funcref) (func) (elem (i32.const 0) func 0) (elem (i32.const 1) func 0 0)",
            ),
        ),
        (
            ElementItems,
            3,
            module(
                "(table 4 funcref) (func) (elem (i32.const 0) func 0) (elem (i32.const 1) func 0 0)",
            ),
        ),
        (CustomBytes, 4, module(r#"(@custom "x" "abcd")"#)),
    ]
}

#[test]
fn every_limit_admits_its_count_and_refuses_one_more() {
    let cases = cases();
    for (limit, count, wat) in &cases {
        let bytes = component(wat);
        let mut limits = CompileLimits::default();
        limit.set(&mut limits, *count);
        if let Err(e) = check(&bytes, &limits) {
            panic!("{limit:?}: at its limit of {count} the component must pass: {e}\n{wat}");
        }
        limit.set(&mut limits, count - 1);
        match check(&bytes, &limits) {
            Err(EngineError::TooComplex(refusal)) => {
                assert_eq!(refusal.limit, *limit, "{wat}");
                assert_eq!(refusal.found, *count, "{limit:?}: {wat}");
                assert_eq!(refusal.max, count - 1);
                let text = refusal.to_string();
                assert!(text.contains(limit.field()), "{text}");
            }
            other => panic!("{limit:?}: one under the count must refuse, got {other:?}\n{wat}"),
        }
    }
    // Every limit the walk checks has its case (the text size is checked before the walk).
    for limit in Limit::ALL {
        assert!(
            *limit == Limit::TextSize || cases.iter().any(|(l, _, _)| l == limit),
            "{limit:?} has no case"
        );
    }
}

#[test]
fn nested_components_are_counted_expanded() {
    let two = "(core module $m) (core instance (instantiate $m)) (core instance (instantiate $m))";
    let cases = [
        // Reached by an outer alias: 2 per $c, 2 $c per $d, 3 $d.
        (
            12,
            format!(
                "(component (component $c {two}) \
                   (component $d (alias outer 1 $c (component $c2)) \
                     (instance (instantiate $c2)) (instance (instantiate $c2))) \
                   (instance (instantiate $d)) (instance (instantiate $d)) (instance (instantiate $d)))"
            ),
        ),
        // Imported by a nested component: counted as the widest component seen before it.
        (
            4,
            format!(
                "(component (component $c {two}) \
                   (component $d (import \"x\" (component $x)) \
                     (instance (instantiate $x)) (instance (instantiate $x))) \
                   (instance (instantiate $d (with \"x\" (component $c)))))"
            ),
        ),
        // A module imported by a nested component, instantiated three times.
        (
            3,
            "(component (core module $m) \
               (component $d (import \"m\" (core module $x)) \
                 (core instance (instantiate $x)) (core instance (instantiate $x)) \
                 (core instance (instantiate $x))) \
               (instance (instantiate $d (with \"m\" (core module $m)))))"
                .to_string(),
        ),
        // Never instantiated: defining a component creates no instance.
        (0, format!("(component (component $c {two}))")),
    ];
    for (want, wat) in cases {
        let found = check(&component(&wat), &CompileLimits::default())
            .unwrap_or_else(|e| panic!("{e}\n{wat}"));
        assert_eq!(found.core_instances, want, "{wat}");
    }
    // Nesting multiplies: 10 instances of a component of 10 instances passes a limit of 32.
    let ten = (0..10)
        .map(|_| "(core instance (instantiate $m))")
        .collect::<String>();
    let outer = (0..10)
        .map(|_| "(instance (instantiate $c))")
        .collect::<String>();
    let wat = format!("(component (component $c (core module $m) {ten}) {outer})");
    match check(&component(&wat), &CompileLimits::default()) {
        Err(EngineError::TooComplex(r)) => assert_eq!(r.limit, Limit::CoreInstances),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn invalid_components_and_disabled_features_are_refused_as_invalid() {
    let cases = [
        // A function that returns nothing where it promises an i32.
        module("(func (result i32))"),
        // Threads are not enabled in the engine: no shared memory.
        module("(memory 1 1 shared)"),
        // Nor exceptions.
        module("(tag)"),
    ];
    for wat in cases {
        let err = check(&component(&wat), &CompileLimits::default()).unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{wat}: {err}");
    }
    // Their valid twins pass.
    for wat in [
        module("(func (result i32) i32.const 0)"),
        module("(memory 1 1)"),
    ] {
        check(&component(&wat), &CompileLimits::default()).unwrap();
    }
}

//! Components that cost the host's compiler much more than their size: the attack class
//! "compile". Each is generated on demand from a spec such as `many-functions:600000`, small on
//! disk and built to hit one place where compile time or memory grows faster than the input:
//! the count of functions, one huge function, nesting, `br_table`, locals, live values, the
//! merge points of locals, modules, and components instantiated inside components.
//!
//! Shared by the red-team runner (which expects every one to be refused before compiling) and
//! `warden-bench` (which compiles the largest ones the host still admits and measures them).

use wasm_encoder::{
    BlockType, CodeSection, Component, ComponentInstanceSection, Function, FunctionSection,
    InstanceSection, Module, ModuleArg, ModuleSection, NestedComponentSection, TypeSection,
    ValType,
};

/// Build the component `spec` names, or `None` for another spec: `<kind>:<n>`, or
/// `<kind>:<n>x<copies>` for a kind of one function, to hold that many copies of it; specs of
/// single-module kinds joined by `+` make one component of all their modules. The kinds:
///
/// | kind | what `n` counts |
/// |---|---|
/// | `many-functions` | tiny functions (11 bytes each) |
/// | `huge-function` | bytes of one straight-line function over 16 locals |
/// | `bulky-functions` | bytes of functions of 64 KiB of arithmetic |
/// | `many-blocks` | blocks in a row in one function, each a branch target |
/// | `deep-nesting` | nested blocks in one function |
/// | `br-table` | targets of one `br_table` over 1,000 nested blocks |
/// | `many-locals` | locals of one function, each used in a loop |
/// | `live-values` | values live at once on one function's operand stack |
/// | `merge-locals` | locals read after `n / 2` merge points |
/// | `merges` | merge points before 1,999 locals are read |
/// | `many-modules` | small core modules |
/// | `many-instances` | instances of one core module |
/// | `nested-components` | instances of the component inside, at each of 4 levels |
/// | `nested-instances` | the same with no module inside: component instances alone |
pub fn generate(spec: &str) -> Option<Vec<u8>> {
    if spec.contains('+') {
        let modules = spec.split('+').map(module).collect::<Option<Vec<_>>>()?;
        return Some(instantiated(&modules));
    }
    let (kind, n) = spec.split_once(':')?;
    let n = n.split('x').next()?.parse().ok()?;
    match kind {
        "many-modules" => Some(many_modules(n)),
        "many-instances" => Some(many_instances(n)),
        "nested-components" => Some(nested_components(4, n, true)),
        "nested-instances" => Some(nested_components(4, n, false)),
        _ => Some(instantiated(&[module(spec)?])),
    }
}

/// The module of a single-module `spec`.
fn module(spec: &str) -> Option<Module> {
    let (kind, n) = spec.split_once(':')?;
    let (n, copies) = match n.split_once('x') {
        Some((n, copies)) => (n.parse().ok()?, copies.parse().ok()?),
        None => (n.parse().ok()?, 1),
    };
    let one = |f: fn(u32) -> Function| copied(f(n), copies);
    Some(match kind {
        "many-functions" => many_functions(n),
        "huge-function" => one(huge_function),
        "bulky-functions" => bulky_functions(n),
        "deep-nesting" => one(deep_nesting),
        "many-blocks" => one(many_blocks),
        "br-table" => one(br_table),
        "many-locals" => one(many_locals),
        "live-values" => one(live_values),
        "merge-locals" => one(|n| merge_locals(n, n / 2)),
        "merges" => one(|n| merge_locals(1_999, n)),
        _ => return None,
    })
}

/// A component holding `modules` and instantiating each once.
fn instantiated(modules: &[Module]) -> Vec<u8> {
    let mut component = Component::new();
    for module in modules {
        component.section(&ModuleSection(module));
    }
    let mut instances = InstanceSection::new();
    for i in 0..modules.len() as u32 {
        instances.instantiate(i, Vec::<(&str, ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

/// A module with one function of type `(param i32) (result i32)`.
fn single(body: Function) -> Module {
    copied(body, 1)
}

/// A module with `copies` functions of type `(param i32) (result i32)`, all `body`.
fn copied(body: Function, copies: u32) -> Module {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..copies {
        funcs.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    module
}

fn many_functions(n: u32) -> Module {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..n {
        funcs.function(0);
        let mut f = Function::new([]);
        f.instructions()
            .i32_const(i as i32)
            .i32_const(1)
            .i32_add()
            .end();
        code.function(&f);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    module
}

/// Straight-line arithmetic over 16 locals seeded from the parameter and all summed into the
/// result, `n` bytes long: nothing folds to a constant and nothing is dead.
fn huge_function(n: u32) -> Function {
    let mut f = Function::new([(16, ValType::I64)]);
    for l in 1..=16 {
        f.instructions()
            .local_get(0)
            .i64_extend_i32_u()
            .i64_const(i64::from(l))
            .i64_mul()
            .local_set(l);
    }
    let mut i = 0u32;
    while (f.byte_len() as u32) < n.saturating_sub(64) {
        let (a, b, c) = (1 + i % 16, 1 + (i * 7 + 3) % 16, 1 + (i * 5 + 1) % 16);
        f.instructions()
            .local_get(a)
            .local_get(b)
            .i64_add()
            .local_set(c);
        i += 1;
    }
    f.instructions().local_get(1);
    for l in 2..=16 {
        f.instructions().local_get(l).i64_xor();
    }
    f.instructions().i32_wrap_i64().end();
    f
}

fn bulky_functions(total: u32) -> Module {
    const EACH: u32 = 64 << 10;
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    let body = huge_function(EACH);
    for _ in 0..(total / EACH).max(1) {
        funcs.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    module
}

fn deep_nesting(n: u32) -> Function {
    let mut f = Function::new([]);
    for _ in 0..n {
        f.instructions().block(BlockType::Empty);
    }
    f.instructions().local_get(0).br_if(n.saturating_sub(1));
    for _ in 0..n {
        f.instructions().end();
    }
    f.instructions().local_get(0).end();
    f
}

fn many_blocks(n: u32) -> Function {
    let mut f = Function::new([]);
    for _ in 0..n {
        f.instructions()
            .block(BlockType::Empty)
            .local_get(0)
            .br_if(0)
            .end();
    }
    f.instructions().local_get(0).end();
    f
}

fn br_table(n: u32) -> Function {
    let depth = 1_000u32;
    let mut f = Function::new([]);
    for _ in 0..depth {
        f.instructions().block(BlockType::Empty);
    }
    f.instructions()
        .local_get(0)
        .br_table((0..n).map(|i| (i * 7) % depth), 0);
    for i in 0..depth {
        f.instructions()
            .end()
            .local_get(0)
            .i32_const(i as i32)
            .i32_add()
            .drop();
    }
    f.instructions().local_get(0).end();
    f
}

fn many_locals(n: u32) -> Function {
    let mut f = Function::new([(n, ValType::I64)]);
    f.instructions().loop_(BlockType::Empty);
    for l in 1..=n {
        f.instructions()
            .local_get(l)
            .i64_const(1)
            .i64_add()
            .local_set(l);
    }
    f.instructions()
        .local_get(0)
        .br_if(0)
        .end()
        .local_get(0)
        .end();
    f
}

fn live_values(n: u32) -> Function {
    let mut f = Function::new([]);
    for _ in 0..n {
        f.instructions().local_get(0);
    }
    for _ in 1..n {
        f.instructions().i32_add();
    }
    f.instructions().end();
    f
}

/// Every local written, then `merges` merge points, then every local read: an SSA builder
/// that looks each variable up through each merge point does locals × merges work.
fn merge_locals(locals: u32, merges: u32) -> Function {
    let mut f = Function::new([(locals, ValType::I32)]);
    for l in 1..=locals {
        f.instructions().local_get(0).local_set(l);
    }
    for _ in 0..merges {
        f.instructions()
            .block(BlockType::Empty)
            .local_get(0)
            .br_if(0)
            .local_get(0)
            .i32_const(1)
            .i32_add()
            .local_set(1)
            .end();
    }
    for l in 1..=locals {
        f.instructions().local_get(l).local_set(0);
    }
    f.instructions().local_get(0).end();
    f
}

fn many_modules(n: u32) -> Vec<u8> {
    let module = single(huge_function(64));
    let mut component = Component::new();
    for _ in 0..n {
        component.section(&ModuleSection(&module));
    }
    component.finish()
}

fn many_instances(n: u32) -> Vec<u8> {
    let mut component = Component::new();
    component.section(&ModuleSection(&single(huge_function(64))));
    let mut instances = InstanceSection::new();
    for _ in 0..n {
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

/// `depth` levels of components, each instantiating the one inside it `width` times: the
/// innermost component (with a module, or empty) is instantiated `width ^ depth` times once
/// everything is flattened.
fn nested_components(depth: u32, width: u32, with_module: bool) -> Vec<u8> {
    let mut inner = Component::new();
    if with_module {
        inner.section(&ModuleSection(&single(huge_function(64))));
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        inner.section(&instances);
    }
    for _ in 0..depth {
        let mut outer = Component::new();
        outer.section(&NestedComponentSection(&inner));
        let mut instances = ComponentInstanceSection::new();
        for _ in 0..width {
            instances.instantiate(
                0,
                Vec::<(&str, wasm_encoder::ComponentExportKind, u32)>::new(),
            );
        }
        outer.section(&instances);
        inner = outer;
    }
    inner.finish()
}

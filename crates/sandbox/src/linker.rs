//! Builds the linker of one loaded agent: the baseline interfaces, the capabilities its policy
//! grants (each through its gate), and for every known capability it imports without a grant, a
//! kill stub for each function and a never-constructed type for each of its own resources (also
//! when the interface has only types, as `wasi:sockets/network`: else wasmtime refuses the load).
//! Nothing else exists in the linker, so nothing else can be reached.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceType};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi_http::WasiHttp;
use wasmtime_wasi_io::bindings::wasi::io;

use crate::bindings::warden::agent::{agents, human, log, memory, model, tools, types};
use crate::capabilities::fs::GatedFs;
use crate::capabilities::random::GatedRandom;
use crate::gate::{KillReason, Violation};
use crate::imports::Capability;
use crate::instance::{HasIo, InstanceState};
use crate::policy::Policy;

fn rng(s: &mut InstanceState) -> &mut wasmtime_wasi::random::WasiRandomCtx {
    s.wasi.random()
}

/// The host type behind resources of interfaces that are stubbed out. No value of it is ever
/// created: every constructor and method of such an interface kills the instance.
struct NotGranted;

/// Build the linker for `component` under `policy`; `stubs` are the imports to bind to kill stubs.
///
/// # Errors
///
/// wasmtime's error if an interface cannot be defined (a host bug, not a guest error).
pub fn build(
    engine: &Engine,
    component: &Component,
    policy: &Policy,
    stubs: &[String],
) -> wasmtime::Result<Linker<InstanceState>> {
    let mut l = Linker::<InstanceState>::new(engine);

    // Baseline: harmless, empty or captured.
    io::error::add_to_linker::<InstanceState, HasIo>(&mut l, |s| &mut s.table)?;
    io::poll::add_to_linker::<InstanceState, HasIo>(&mut l, |s| &mut s.table)?;
    io::streams::add_to_linker::<InstanceState, HasIo>(&mut l, |s| &mut s.table)?;
    let cli = <InstanceState as wasmtime_wasi::cli::WasiCliView>::cli;
    cli::exit::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::environment::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::stdin::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::stdout::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::stderr::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::terminal_input::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::terminal_output::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::terminal_stdin::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::terminal_stdout::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    cli::terminal_stderr::add_to_linker::<InstanceState, WasiCli>(&mut l, cli)?;
    random::insecure::add_to_linker::<InstanceState, GatedRandom>(
        &mut l,
        InstanceState::gated_random,
    )?;
    random::insecure_seed::add_to_linker::<InstanceState, WasiRandom>(&mut l, rng)?;
    log::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    types::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;

    // Capabilities, each only when granted.
    if Capability::Fs.granted_by(policy) {
        filesystem::types::add_to_linker::<InstanceState, GatedFs>(
            &mut l,
            InstanceState::gated_fs,
        )?;
        filesystem::preopens::add_to_linker::<InstanceState, GatedFs>(
            &mut l,
            InstanceState::gated_fs,
        )?;
    }
    if Capability::Net.granted_by(policy) {
        use wasmtime_wasi_http::p2::bindings::{LinkOptions, http};
        let opts = LinkOptions::default();
        http::types::add_to_linker::<InstanceState, WasiHttp>(&mut l, &(&opts).into(), |s| {
            wasmtime_wasi_http::WasiHttpView::http(s)
        })?;
        crate::capabilities::net::add_gated_handler(&mut l, InstanceState::gated_net)?;
    }
    if Capability::Tools.granted_by(policy) {
        tools::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    }
    if Capability::Agents.granted_by(policy) {
        agents::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    }
    if Capability::Memory.granted_by(policy) {
        memory::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    }
    if Capability::Human.granted_by(policy) {
        human::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    }
    if Capability::Model.granted_by(policy) {
        model::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut l, |s| s)?;
    }
    let clk = <InstanceState as wasmtime_wasi::clocks::WasiClocksView>::clocks;
    if Capability::WallClock.granted_by(policy) {
        clocks::wall_clock::add_to_linker::<InstanceState, WasiClocks>(&mut l, clk)?;
    }
    if Capability::MonotonicClock.granted_by(policy) {
        clocks::monotonic_clock::add_to_linker::<InstanceState, WasiClocks>(&mut l, clk)?;
    }
    if Capability::SecureRandom.granted_by(policy) {
        random::random::add_to_linker::<InstanceState, GatedRandom>(
            &mut l,
            InstanceState::gated_random,
        )?;
    }

    // Known but not granted: every function kills the instance on its first call. Resources
    // that such an interface merely uses from a linked one (an `input-stream` in `wasi:http`)
    // keep their real type; only its own resources get the never-constructed stub type.
    let linked_resources: Vec<ResourceType> = component
        .component_type()
        .imports(engine)
        .filter(|(name, _)| !stubs.iter().any(|s| s == name))
        .filter_map(|(_, item)| match item.ty {
            ComponentItem::ComponentInstance(i) => Some(i),
            _ => None,
        })
        .flat_map(|i| {
            i.exports(engine)
                .filter_map(|(_, e)| match e.ty {
                    ComponentItem::Resource(r) => Some(r),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, item) in component.component_type().imports(engine) {
        if !stubs.iter().any(|s| s == name) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut inst = l.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let interface = name.to_string();
                    let func = export.to_string();
                    inst.func_new(export, move |store, _, _, _| {
                        Err(store.data().kill.kill(Violation::new(
                            KillReason::NotGranted,
                            interface.clone(),
                            format!("called `{func}` but the policy does not grant `{interface}`"),
                        )))
                    })?;
                }
                ComponentItem::Resource(r) if !linked_resources.contains(&r) => {
                    inst.resource(export, ResourceType::host::<NotGranted>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(l)
}

//! Load-time enforcement: what a component imports, compared with what the host knows and what
//! the policy grants, before any guest code runs.
//!
//! Every import falls in one class:
//! - **baseline**: harmless interfaces every Rust component imports whether it uses them or not
//!   (`wasi:io`, the `wasi:cli` stdio/env/exit/terminal family, insecure random, `warden:agent/log`).
//!   The host satisfies them with empty, captured implementations: no env, no args, no stdin,
//!   stdout/stderr captured and capped.
//! - **capability**: an interface that reaches something (files, network, clocks, secure random,
//!   tools, models, sockets). Linked only when the policy grants it.
//! - **unknown**: anything else, including other versions of known packages. Refused at load with
//!   the import's name: the agent asked for an API that does not exist here.
//!
//! [`report`] gives each import one [`ImportVerdict`] (granted, types only, kills on first call,
//! refused at load); the load acts on exactly those verdicts and `warden inspect` prints them.
//! A capability without a grant is linked to stubs: its functions kill on their first call, and
//! its own resources get a type no value ever has, also when the interface carries only types
//! (`wasi:sockets/network`), so that every known interface links and none is refused by wasmtime.

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::policy::Policy;

/// A capability that a policy can grant, as the host links it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `wasi:filesystem/*`, granted by `[fs]`.
    Fs,
    /// `wasi:http/*`, granted by `[net] allow`.
    Net,
    /// `warden:agent/tools`, granted by `[tools] allow`.
    Tools,
    /// `warden:agent/model`, granted by `[model] allow`.
    Model,
    /// `warden:agent/agents`, granted by `[agents] call`.
    Agents,
    /// `warden:agent/memory`, granted by `[memory] read` or `write`.
    Memory,
    /// `wasi:clocks/wall-clock`, granted by `[clocks] wall`.
    WallClock,
    /// `wasi:clocks/monotonic-clock`, granted by `[clocks] monotonic`.
    MonotonicClock,
    /// `wasi:random/random`, granted by `[random] secure`.
    SecureRandom,
    /// `warden:agent/human`, granted by `[human] ask`.
    Human,
    /// `wasi:sockets/*`: raw sockets are never granted by this version; use `[net]` (HTTP).
    Sockets,
}

impl Capability {
    /// The policy key that grants this capability.
    pub fn policy_key(self) -> &'static str {
        match self {
            Capability::Fs => "fs.read / fs.write",
            Capability::Net => "net.allow",
            Capability::Tools => "tools.allow",
            Capability::Model => "model.allow",
            Capability::Agents => "agents.call",
            Capability::Memory => "memory.read / memory.write",
            Capability::WallClock => "clocks.wall",
            Capability::MonotonicClock => "clocks.monotonic",
            Capability::SecureRandom => "random.secure",
            Capability::Human => "human.ask",
            Capability::Sockets => "raw sockets cannot be granted; use net.allow for HTTP",
        }
    }

    /// Whether `policy` grants this capability.
    pub fn granted_by(self, policy: &Policy) -> bool {
        match self {
            Capability::Fs => !policy.fs.is_empty(),
            Capability::Net => !policy.net.is_empty(),
            Capability::Tools => !policy.tools.is_empty(),
            Capability::Model => !policy.model.is_empty(),
            Capability::Agents => !policy.agents.is_empty(),
            Capability::Memory => !policy.memory.is_empty(),
            Capability::WallClock => policy.clocks.wall,
            Capability::MonotonicClock => policy.clocks.monotonic,
            Capability::SecureRandom => policy.random.secure,
            Capability::Human => policy.human.ask,
            Capability::Sockets => false,
        }
    }
}

/// The class of one import name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "class", content = "capability")]
pub enum ImportClass {
    /// Always linked, harmless.
    Baseline,
    /// Linked only when granted.
    Capability(Capability),
    /// Not provided by this host.
    Unknown,
}

/// Classify an import name such as `wasi:io/streams@0.2.12`.
pub fn classify(name: &str) -> ImportClass {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, v),
        None => return ImportClass::Unknown,
    };
    let Some((package, interface)) = path.split_once('/') else {
        return ImportClass::Unknown;
    };
    let compatible = match package {
        // The host implements WASI 0.2.x; wasmtime links any 0.2 minor version to it.
        p if p.starts_with("wasi:") => version.starts_with("0.2.") && !version.contains('-'),
        "warden:agent" => version.starts_with("0.2.") && !version.contains('-'),
        _ => false,
    };
    if !compatible {
        return ImportClass::Unknown;
    }
    use Capability::*;
    use ImportClass::{Baseline, Capability as Cap, Unknown};
    match (package, interface) {
        ("wasi:io", "error" | "poll" | "streams") => Baseline,
        (
            "wasi:cli",
            "environment" | "exit" | "stdin" | "stdout" | "stderr" | "terminal-input"
            | "terminal-output" | "terminal-stdin" | "terminal-stdout" | "terminal-stderr",
        ) => Baseline,
        ("wasi:random", "insecure" | "insecure-seed") => Baseline,
        ("wasi:random", "random") => Cap(SecureRandom),
        ("wasi:clocks", "wall-clock") => Cap(WallClock),
        ("wasi:clocks", "monotonic-clock") => Cap(MonotonicClock),
        ("wasi:filesystem", "types" | "preopens") => Cap(Fs),
        ("wasi:http", "types" | "outgoing-handler") => Cap(Net),
        (
            "wasi:sockets",
            "network" | "instance-network" | "tcp" | "tcp-create-socket" | "udp"
            | "udp-create-socket" | "ip-name-lookup",
        ) => Cap(Sockets),
        ("warden:agent", "log" | "types") => Baseline,
        ("warden:agent", "tools") => Cap(Tools),
        ("warden:agent", "model") => Cap(Model),
        ("warden:agent", "agents") => Cap(Agents),
        ("warden:agent", "memory") => Cap(Memory),
        ("warden:agent", "human") => Cap(Human),
        _ => Unknown,
    }
}

impl ImportClass {
    /// The class as `warden inspect` prints it.
    pub fn describe(self) -> String {
        match self {
            ImportClass::Baseline => "baseline".to_string(),
            ImportClass::Capability(c) => format!("capability ({})", c.policy_key()),
            ImportClass::Unknown => "UNKNOWN to this host".to_string(),
        }
    }
}

/// What loading does with one import. [`report`] decides it, [`check`] (the load) acts on it
/// and `warden inspect` prints it: one decision, so the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "detail")]
pub enum ImportVerdict {
    /// Linked to the host's implementation: a baseline interface, or a granted capability.
    Granted,
    /// An interface of a capability that carries only types: it needs no grant. Its resources,
    /// if the capability is not granted, are linked to a type no value ever has.
    TypesOnly,
    /// A capability the policy does not grant: every function is linked to a stub that kills
    /// the instance on its first call.
    KillsOnFirstCall,
    /// The component is refused at load, for this reason.
    Refused(ImportError),
}

impl std::fmt::Display for ImportVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportVerdict::Granted => f.write_str("granted"),
            ImportVerdict::TypesOnly => f.write_str("types only: no grant needed"),
            ImportVerdict::KillsOnFirstCall => f.write_str("kills on first call"),
            ImportVerdict::Refused(ImportError::NotGranted { .. }) => {
                f.write_str("refused at load (strict)")
            }
            ImportVerdict::Refused(_) => f.write_str("refused at load"),
        }
    }
}

/// One import of a component, as `warden inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Full import name.
    pub name: String,
    /// Its class.
    pub class: ImportClass,
    /// Whether it has functions (an import that only carries types needs no grant).
    pub has_functions: bool,
    /// Whether the policy grants it (baseline and function-less imports count as granted).
    pub granted: bool,
    /// What loading does with it.
    pub verdict: ImportVerdict,
}

impl ImportReport {
    /// Whether the linker binds this import to stubs: a known capability the policy does not
    /// grant, with functions (kill stubs) or only types (its own resources get a type that no
    /// value has, so that even a types-only interface such as `wasi:sockets/network` links).
    pub fn stubbed(&self, policy: &Policy) -> bool {
        matches!(self.class, ImportClass::Capability(c) if !c.granted_by(policy))
            && !matches!(self.verdict, ImportVerdict::Refused(_))
    }
}

/// Why a component was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "refusal")]
pub enum ImportError {
    /// The component imports an interface this host does not provide at all.
    #[error(
        "`{name}` is not an interface this host provides (it provides wasi 0.2.x and warden:agent 0.2.x); the agent calls an API that does not exist"
    )]
    Unknown {
        /// The import's name.
        name: String,
    },
    /// `strict = true` and the component imports a capability the policy does not grant.
    #[error(
        "`{name}` is not granted by the policy (strict mode); grant it with `{key}` or remove its use from the agent"
    )]
    NotGranted {
        /// The import's name.
        name: String,
        /// The policy key that would grant it.
        key: &'static str,
    },
    /// The component imports the same interface twice, under two versions.
    #[error(
        "`{name}` is imported twice (also as `{other}`); a component gets one copy of each interface"
    )]
    Duplicate {
        /// The second import.
        name: String,
        /// The first.
        other: String,
    },
    /// The component imports something that is not an interface (a bare function or a component).
    #[error("`{name}` is a top-level {kind} import; agents may only import interfaces")]
    NotAnInterface {
        /// The import's name.
        name: String,
        /// What it is.
        kind: &'static str,
    },
    /// The component was built against an older version of Warden's own interface.
    #[error(
        "`{name}` is from warden:agent 0.1, which this host no longer speaks (0.2 carries contracts, agent calls and memory); rebuild the agent against the current warden-guest: `cargo build --release --target wasm32-wasip2`"
    )]
    Outdated {
        /// The import's name.
        name: String,
    },
    /// The component imports a known interface with members, or member types, that this host's
    /// implementation of it does not have.
    #[error(
        "`{name}` does not match this host's implementation of the interface ({detail}); the agent calls an API that does not exist here: build it against wasi 0.2.x and warden:agent 0.2.x"
    )]
    Mismatch {
        /// The import's name.
        name: String,
        /// What does not match.
        detail: String,
    },
}

impl ImportError {
    /// Whether the refusal is an import of an API that does not exist (which demotes the agent
    /// on the trust ladder), rather than a policy or packaging mismatch.
    pub fn is_unknown_api(&self) -> bool {
        matches!(
            self,
            ImportError::Unknown { .. }
                | ImportError::NotAnInterface { .. }
                | ImportError::Mismatch { .. }
        )
    }
}

/// Inspect every import of `component` against `policy`, and decide what loading does with it.
pub fn report(engine: &Engine, component: &Component, policy: &Policy) -> Vec<ImportReport> {
    let mut seen: Vec<String> = Vec::new();
    component
        .component_type()
        .imports(engine)
        .map(|(name, item)| {
            let class = classify(name);
            let has_functions = match &item.ty {
                ComponentItem::ComponentInstance(inst) => inst
                    .exports(engine)
                    .any(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_))),
                _ => true,
            };
            let granted = match class {
                ImportClass::Baseline => true,
                ImportClass::Capability(c) => !has_functions || c.granted_by(policy),
                ImportClass::Unknown => false,
            };
            let verdict = decide(name, &item.ty, class, has_functions, policy, &seen);
            seen.push(name.to_string());
            ImportReport {
                name: name.to_string(),
                class,
                has_functions,
                granted,
                verdict,
            }
        })
        .collect()
}

/// The verdict on import `name`, after the imports named in `seen`.
fn decide(
    name: &str,
    ty: &ComponentItem,
    class: ImportClass,
    has_functions: bool,
    policy: &Policy,
    seen: &[String],
) -> ImportVerdict {
    use ImportVerdict::*;
    // Two versions of one interface would be linked to one implementation; no honest
    // component needs that, so it is refused rather than reasoned about.
    let unversioned = name.split('@').next().unwrap_or(name);
    if let Some(other) = seen
        .iter()
        .find(|o| o.split('@').next() == Some(unversioned))
    {
        return Refused(ImportError::Duplicate {
            name: name.to_string(),
            other: other.clone(),
        });
    }
    if class == ImportClass::Unknown
        && name.starts_with("warden:agent/")
        && name
            .split_once('@')
            .is_some_and(|(_, v)| v.starts_with("0.1."))
    {
        return Refused(ImportError::Outdated {
            name: name.to_string(),
        });
    }
    if class == ImportClass::Unknown {
        return Refused(ImportError::Unknown {
            name: name.to_string(),
        });
    }
    let kind = match ty {
        ComponentItem::ComponentInstance(_) => None,
        ComponentItem::ComponentFunc(_) | ComponentItem::CoreFunc(_) => Some("function"),
        ComponentItem::Module(_) => Some("module"),
        ComponentItem::Component(_) => Some("component"),
        ComponentItem::Type(_) | ComponentItem::Resource(_) => Some("type"),
    };
    if let Some(kind) = kind {
        return Refused(ImportError::NotAnInterface {
            name: name.to_string(),
            kind,
        });
    }
    match class {
        ImportClass::Capability(_) if !has_functions => TypesOnly,
        ImportClass::Capability(c) if !c.granted_by(policy) => match policy.agent.strict {
            true => Refused(ImportError::NotGranted {
                name: name.to_string(),
                key: c.policy_key(),
            }),
            false => KillsOnFirstCall,
        },
        _ => Granted,
    }
}

/// Check `component`'s imports against `policy`: the load-time half of enforcement, acting on
/// the verdicts of [`report`].
///
/// Returns the names of imports that must be bound to stubs (known capabilities the policy
/// does not grant, in non-strict mode; see [`ImportReport::stubbed`]).
///
/// # Errors
///
/// The first [`ImportError`] found.
pub fn check(
    engine: &Engine,
    component: &Component,
    policy: &Policy,
) -> Result<Vec<String>, ImportError> {
    let reports = report(engine, component, policy);
    if let Some(refusal) = reports.iter().find_map(|r| match &r.verdict {
        ImportVerdict::Refused(why) => Some(why.clone()),
        _ => None,
    }) {
        return Err(refusal);
    }
    Ok(reports
        .into_iter()
        .filter(|r| r.stubbed(policy))
        .map(|r| r.name)
        .collect())
}

/// The import a link failure is about, as Warden's refusal: the linker holds every interface
/// the verdicts promised, so a failure means the component's view of one of them (a member, or
/// a member's type) is not the host's. `None` when the failure names no import.
pub fn mismatch(engine: &Engine, component: &Component, error: &str) -> Option<ImportError> {
    component
        .component_type()
        .imports(engine)
        .find(|(name, _)| error.contains(&format!("`{name}`")))
        .map(|(name, _)| ImportError::Mismatch {
            name: name.to_string(),
            detail: error
                .split_once("linker: ")
                .map_or(error, |(_, why)| why)
                .to_string(),
        })
}

#[cfg(test)]
mod tests;

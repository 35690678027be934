//! Load-time enforcement: what a component imports, compared with what the host knows and what
//! the policy grants, before any guest code runs.
//!
//! Every import falls in one class:
//! - **baseline**: harmless interfaces every Rust component imports whether it uses them or not
//!   (`wasi:io`, the `wasi:cli` stdio/env/exit/terminal family, insecure random, `warden:agent/log`).
//!   The host satisfies them with empty, captured implementations: no env, no args, no stdin,
//!   stdout/stderr captured and capped.
//! - **capability**: an interface that reaches something (files, network, clocks, secure random,
//!   tools, sockets). Linked only when the policy grants it.
//! - **unknown**: anything else, including other versions of known packages. Refused at load with
//!   the import's name: the agent asked for an API that does not exist here.

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
    /// `wasi:clocks/wall-clock`, granted by `[clocks] wall`.
    WallClock,
    /// `wasi:clocks/monotonic-clock`, granted by `[clocks] monotonic`.
    MonotonicClock,
    /// `wasi:random/random`, granted by `[random] secure`.
    SecureRandom,
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
            Capability::WallClock => "clocks.wall",
            Capability::MonotonicClock => "clocks.monotonic",
            Capability::SecureRandom => "random.secure",
            Capability::Sockets => "(raw sockets cannot be granted; use net.allow for HTTP)",
        }
    }

    /// Whether `policy` grants this capability.
    pub fn granted_by(self, policy: &Policy) -> bool {
        match self {
            Capability::Fs => !policy.fs.is_empty(),
            Capability::Net => !policy.net.is_empty(),
            Capability::Tools => !policy.tools.is_empty(),
            Capability::WallClock => policy.clocks.wall,
            Capability::MonotonicClock => policy.clocks.monotonic,
            Capability::SecureRandom => policy.random.secure,
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
        "warden:agent" => version.starts_with("0.1.") && !version.contains('-'),
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
        _ => Unknown,
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
}

/// Why a component was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The component imports an interface this host does not provide at all.
    #[error(
        "`{name}` is not an interface this host provides (it provides wasi 0.2.x and warden:agent 0.1.x); the agent calls an API that does not exist"
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
}

impl ImportError {
    /// Whether the refusal is an import of an API that does not exist (which demotes the agent
    /// on the trust ladder), rather than a policy or packaging mismatch.
    pub fn is_unknown_api(&self) -> bool {
        matches!(
            self,
            ImportError::Unknown { .. } | ImportError::NotAnInterface { .. }
        )
    }
}

/// Inspect every import of `component` against `policy`.
pub fn report(engine: &Engine, component: &Component, policy: &Policy) -> Vec<ImportReport> {
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
            ImportReport {
                name: name.to_string(),
                class,
                has_functions,
                granted,
            }
        })
        .collect()
}

/// Check `component`'s imports against `policy`: the load-time half of enforcement.
///
/// Returns the names of imports that must be bound to kill stubs (known capabilities the policy
/// does not grant, in non-strict mode).
///
/// # Errors
///
/// The first [`ImportError`] found.
pub fn check(
    engine: &Engine,
    component: &Component,
    policy: &Policy,
) -> Result<Vec<String>, ImportError> {
    let mut stubs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        // Two versions of one interface would be linked to one implementation; no honest
        // component needs that, so it is refused rather than reasoned about.
        let unversioned = name.split('@').next().unwrap_or(name);
        if let Some(other) = seen
            .iter()
            .find(|o| o.split('@').next() == Some(unversioned))
        {
            return Err(ImportError::Duplicate {
                name: name.to_string(),
                other: other.to_string(),
            });
        }
        seen.push(name);
        let kind = match &item.ty {
            ComponentItem::ComponentInstance(_) => None,
            ComponentItem::ComponentFunc(_) | ComponentItem::CoreFunc(_) => Some("function"),
            ComponentItem::Module(_) => Some("module"),
            ComponentItem::Component(_) => Some("component"),
            ComponentItem::Type(_) | ComponentItem::Resource(_) => Some("type"),
        };
        let class = classify(name);
        if class == ImportClass::Unknown {
            return Err(ImportError::Unknown {
                name: name.to_string(),
            });
        }
        if let Some(kind) = kind {
            return Err(ImportError::NotAnInterface {
                name: name.to_string(),
                kind,
            });
        }
        let ImportClass::Capability(cap) = class else {
            continue;
        };
        let has_functions = match &item.ty {
            ComponentItem::ComponentInstance(inst) => inst
                .exports(engine)
                .any(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_))),
            _ => true,
        };
        if !has_functions || cap.granted_by(policy) {
            continue;
        }
        if policy.agent.strict {
            return Err(ImportError::NotGranted {
                name: name.to_string(),
                key: cap.policy_key(),
            });
        }
        stubs.push(name.to_string());
    }
    Ok(stubs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        use Capability::*;
        let cases = [
            ("wasi:io/streams@0.2.12", ImportClass::Baseline),
            ("wasi:cli/stdout@0.2.6", ImportClass::Baseline),
            ("wasi:cli/environment@0.2.0", ImportClass::Baseline),
            ("warden:agent/log@0.1.0", ImportClass::Baseline),
            ("wasi:random/insecure-seed@0.2.4", ImportClass::Baseline),
            (
                "wasi:random/random@0.2.4",
                ImportClass::Capability(SecureRandom),
            ),
            ("wasi:filesystem/types@0.2.12", ImportClass::Capability(Fs)),
            (
                "wasi:filesystem/preopens@0.2.12",
                ImportClass::Capability(Fs),
            ),
            (
                "wasi:http/outgoing-handler@0.2.12",
                ImportClass::Capability(Net),
            ),
            ("wasi:sockets/tcp@0.2.0", ImportClass::Capability(Sockets)),
            (
                "wasi:clocks/wall-clock@0.2.0",
                ImportClass::Capability(WallClock),
            ),
            ("warden:agent/tools@0.1.0", ImportClass::Capability(Tools)),
            // Unknown: other versions, other packages, made-up interfaces, no version.
            ("wasi:http/types@0.3.0-rc-2025-09-16", ImportClass::Unknown),
            ("wasi:io/streams@0.3.0", ImportClass::Unknown),
            ("wasi:io/streams@0.2.0-rc", ImportClass::Unknown),
            ("wasi:filesystem/magic@0.2.0", ImportClass::Unknown),
            ("warden:agent/secrets@0.1.0", ImportClass::Unknown),
            ("warden:agent/log@0.2.0", ImportClass::Unknown),
            ("acme:evil/backdoor@1.0.0", ImportClass::Unknown),
            ("wasi:io/streams", ImportClass::Unknown),
            ("streams", ImportClass::Unknown),
            ("", ImportClass::Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
    }
}

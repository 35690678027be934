//! The guest SDK: everything an agent author needs to write a Warden agent in Rust.
//!
//! An agent is a type that implements [`Agent`], exported with [`export_agent!`], built with
//! `cargo build --target wasm32-wasip2`. Inside the sandbox it can only use what its policy grants:
//!
//! | module | capability | policy section |
//! |---|---|---|
//! | [`log`] | structured log records into the host's trace | always granted (bounded by `limits.output`) |
//! | [`tools`] | host-registered actions | `[tools] allow` |
//! | [`http`] | outbound HTTP (`wasi:http`) | `[net] allow` |
//! | [`model`] | language-model calls through the host | `[model] allow` |
//! | [`agents`] | calls to other agents, through the host | `[agents] call` |
//! | [`memory`] | the curated memory | `[memory] read` / `[memory] write` |
//! | `std::fs` | files (`wasi:filesystem`) | `[fs] read` / `[fs] write` |
//! | [`random`] | secure random bytes (`wasi:random/random`) | `[random] secure` |
//! | `std::time` | clocks (`wasi:clocks`) | `[clocks] wall` / `[clocks] monotonic` |
//!
//! Using a capability outside the grant does not return an error: the host kills the instance at
//! that call. Design agents to ask only for what their policy names.
//!
//! # Example
//!
//! ```ignore
//! use warden_guest::{Agent, AgentError, Description};
//!
//! struct Echo;
//!
//! impl Agent for Echo {
//!     fn describe() -> Description {
//!         Description::new("echo", env!("CARGO_PKG_VERSION"), "Returns its input.")
//!     }
//!     fn run(task: String) -> Result<String, AgentError> {
//!         Ok(task)
//!     }
//! }
//!
//! warden_guest::export_agent!(Echo);
//! ```
#![deny(missing_docs)]

pub mod agents;
pub mod http;
pub mod human;
pub mod log;
pub mod memory;
pub mod model;
pub mod random;
pub mod tools;

/// Raw bindings generated from `wit/world.wit`. Prefer the typed wrappers in this crate.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "agent",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_agent_world",
        default_bindings_module: "warden_guest::bindings",
    });
}

pub use bindings::warden::agent::types::{AgentError, Description};
/// Re-exported so that an agent can derive `JsonSchema` for its input and output types.
pub use schemars;

/// The JSON Schema (draft 2020-12, as JSON text) of `T`: what an agent author derives instead of
/// writing a schema by hand (`#[derive(serde::Deserialize, schemars::JsonSchema)]`).
pub fn schema_of<T: schemars::JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).unwrap_or_else(|_| "{}".to_string())
}

impl Description {
    /// A description whose contract accepts and returns any JSON (`{}`).
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        Description {
            name: name.to_string(),
            version: version.to_string(),
            summary: summary.to_string(),
            input_schema: "{}".to_string(),
            output_schema: "{}".to_string(),
        }
    }

    /// The contract's input is `T`: every task must match `T`'s derived JSON Schema.
    pub fn input<T: schemars::JsonSchema>(self) -> Self {
        self.input_schema(&schema_of::<T>())
    }

    /// The contract's output is `T`: every result must match `T`'s derived JSON Schema (a result
    /// that is not JSON is checked as a JSON string, so `String` fits a text result).
    pub fn output<T: schemars::JsonSchema>(self) -> Self {
        self.output_schema(&schema_of::<T>())
    }

    /// The JSON Schema (as JSON text) every task must match.
    pub fn input_schema(mut self, schema: &str) -> Self {
        self.input_schema = schema.to_string();
        self
    }

    /// The JSON Schema (as JSON text) every result must match.
    pub fn output_schema(mut self, schema: &str) -> Self {
        self.output_schema = schema.to_string();
        self
    }
}

impl AgentError {
    /// The task is not what the agent accepts.
    pub fn invalid_input(why: impl std::fmt::Display) -> Self {
        AgentError::InvalidInput(why.to_string())
    }

    /// The agent could not complete the task.
    pub fn failed(why: impl std::fmt::Display) -> Self {
        AgentError::Failed(why.to_string())
    }
}

/// A Warden agent: a description of itself and one entry point.
///
/// Every call to [`Agent::run`] happens in a fresh instance: no state survives between tasks.
pub trait Agent {
    /// Describe the agent. Called without a task; must not use capabilities.
    fn describe() -> Description;

    /// Run one task. `task` is the task's input (usually JSON), exactly as the host received it.
    ///
    /// # Errors
    ///
    /// Return [`AgentError::InvalidInput`] for a task the agent does not accept and
    /// [`AgentError::Failed`] when it could not complete one.
    fn run(task: String) -> Result<String, AgentError>;
}

/// Export a type implementing [`Agent`] as the component's `describe` and `run`.
///
/// Use it once, at the top level of the agent's crate: `warden_guest::export_agent!(MyAgent);`
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        #[doc(hidden)]
        struct __WardenAgentExport;

        impl $crate::bindings::Guest for __WardenAgentExport {
            fn describe() -> $crate::Description {
                <$agent as $crate::Agent>::describe()
            }

            fn run(task: ::std::string::String) -> ::std::result::Result<::std::string::String, $crate::AgentError> {
                <$agent as $crate::Agent>::run(task)
            }
        }

        $crate::bindings::__export_agent_world!(__WardenAgentExport with_types_in $crate::bindings);
    };
}
